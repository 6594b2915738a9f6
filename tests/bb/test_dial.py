"""Finding and connecting to a remote server (worker/s2s_dial.c) against
a real DNS server (dnsmasq, dnslab.py) and real sockets on loopback
addresses: tests/dialtool runs the dialer on a loop like a worker's and
prints how each dial ended.  What is checked is what the s2s layer (and
so a user whose stanza goes to that domain) gets: which server was
connected to, with direct TLS or not, or which RFC 6120 condition.

RFC 6120 3.2 (SRV, priority then RFC 2782 weights, "." target, A/AAAA
fallback on 5269), XEP-0368 (_xmpps-server mixed with _xmpp-server,
direct TLS for its targets, "." means no fallback), RFC 8305 (IPv6 first,
a refused address moves on at once, a silent one after the stagger).

Each run uses loopback addresses 127.A.B.x derived from its pid (other
tests run in parallel) and ::1.  A "black hole" is a listener with a
backlog of 0 whose queue is already full: Linux drops further SYNs, so
the connect() neither succeeds nor fails.
"""
import os
import select
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dnslab import DnsLab, blackhole_dns  # noqa: E402
from harness import BUILDDIR, run_tests  # noqa: E402

DIALTOOL = os.path.join(BUILDDIR, "tests", "dialtool")
PID = os.getpid()
NET = "127.%d.%d." % (20 + (PID >> 8) % 200, PID % 256)
_SOCKETS = []


def addr(n):
    return NET + str(n)


def _sock(host):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return s


def listener(host, port=0, backlog=16):
    s = _sock(host)
    s.bind((host, port))
    s.listen(backlog)
    _SOCKETS.append(s)
    return s.getsockname()[1]


def closed_port(*hosts):
    """A port on which nothing listens on any of hosts (connect is
    refused)."""
    for _ in range(50):
        s = _sock(hosts[0])
        s.bind((hosts[0], 0))
        port = s.getsockname()[1]
        s.close()
        ok = True
        for h in hosts[1:]:
            t = _sock(h)
            try:
                t.bind((h, port))
            except OSError:
                ok = False
            t.close()
        if ok:
            return port
    raise AssertionError("no common free port")


def black_hole(host, port=0):
    """A listener that takes no more connections and refuses none."""
    s = _sock(host)
    s.bind((host, port))
    s.listen(0)
    _SOCKETS.append(s)
    port = s.getsockname()[1]
    c = _sock(host)
    c.setblocking(False)
    c.connect_ex((host, port))
    _, w, _ = select.select([], [c], [], 10)
    assert w and c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0, \
        "could not fill the backlog of %s:%d" % (host, port)
    _SOCKETS.append(c)
    return port


def close_all():
    while _SOCKETS:
        _SOCKETS.pop().close()


def dial(lab_server, domain, *opts, n=1, cancel=False, parallel=False):
    cmd = [DIALTOOL, "-o", "s2s.dns_servers=" + lab_server]
    for o in opts:
        cmd += ["-o", o]
    if n > 1:
        cmd += ["-n", str(n)]
    if cancel:
        cmd.append("-c")
    if parallel:
        cmd.append("-p")
    cmd.append(domain)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, "dialtool %s: exit %d\n%s%s" % (
        domain, r.returncode, r.stdout, r.stderr)
    # sanitizers write to stderr; the dialer logs nothing at info here
    assert "ERROR: " not in r.stderr and "runtime error" not in r.stderr, \
        r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == n, lines
    return lines


def ok_line(host, port, tls, peer):
    return "ok host=%s port=%d tls=%d peer=%s" % (host, port, tls, peer)


def peer(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def test_srv_priority():
    """The lowest priority first; a refused target moves on to the
    next priority, never to a higher one first."""
    p10, p20 = listener(addr(10)), listener(addr(11))
    dead = closed_port(addr(12))
    try:
        with DnsLab() as lab:
            lab.srv("_xmpp-server._tcp.prio.test", "p20.prio.test", p20, 20)
            lab.srv("_xmpp-server._tcp.prio.test", "p5.prio.test", dead, 5)
            lab.srv("_xmpp-server._tcp.prio.test", "p10.prio.test", p10, 10)
            lab.host("p5.prio.test", addr(12))
            lab.host("p10.prio.test", addr(10))
            lab.host("p20.prio.test", addr(11))
            lab.start()
            assert dial(lab.server, "prio.test") == [
                ok_line("p10.prio.test", p10, 0, peer(addr(10), p10))]
            # targets are looked up in priority order (the next one
            # already while an attempt is pending: it is not connected)
            qs = [q.split()[1] for q in lab.queries() if q.startswith("A]")]
            assert qs[1:] == ["p5.prio.test", "p10.prio.test",
                              "p20.prio.test"][:len(qs) - 1], qs
    finally:
        close_all()


def test_srv_weights():
    """RFC 2782 within one priority: weight 3 against weight 1 is picked
    about three times in four (200 dials; the bounds are six standard
    deviations wide), and both are picked."""
    pa, pb = listener(addr(20), backlog=256), listener(addr(21), backlog=256)
    try:
        with DnsLab() as lab:
            lab.srv("_xmpp-server._tcp.w.test", "a.w.test", pa, 0, 1)
            lab.srv("_xmpp-server._tcp.w.test", "b.w.test", pb, 0, 3)
            lab.host("a.w.test", addr(20))
            lab.host("b.w.test", addr(21))
            lab.start()
            lines = dial(lab.server, "w.test", n=200)
            na = lines.count(ok_line("a.w.test", pa, 0, peer(addr(20), pa)))
            nb = lines.count(ok_line("b.w.test", pb, 0, peer(addr(21), pb)))
            assert na + nb == 200, lines
            assert 110 <= nb <= 185, (na, nb)
            # the same, 100 dials at once on one loop: each ends once
            lines = dial(lab.server, "w.test", n=100, parallel=True)
            na = lines.count(ok_line("a.w.test", pa, 0, peer(addr(20), pa)))
            nb = lines.count(ok_line("b.w.test", pb, 0, peer(addr(21), pb)))
            assert na + nb == 100 and na > 0 and nb > 0, lines
    finally:
        close_all()


def test_xmpps_direct_tls():
    """XEP-0368: an _xmpps-server target is connected with direct TLS;
    both services are one RFC 2782 set ordered by priority."""
    ptls, pplain = listener(addr(30)), listener(addr(31))
    dead = closed_port(addr(32))
    try:
        with DnsLab() as lab:
            # only xmpps
            lab.srv("_xmpps-server._tcp.t1.test", "tls.t1.test", ptls, 0)
            lab.host("tls.t1.test", addr(30))
            # xmpps first by priority
            lab.srv("_xmpps-server._tcp.t2.test", "tls.t2.test", ptls, 5)
            lab.srv("_xmpp-server._tcp.t2.test", "plain.t2.test", pplain, 10)
            lab.host("tls.t2.test", addr(30))
            lab.host("plain.t2.test", addr(31))
            # xmpp first by priority
            lab.srv("_xmpps-server._tcp.t3.test", "tls.t3.test", ptls, 10)
            lab.srv("_xmpp-server._tcp.t3.test", "plain.t3.test", pplain, 5)
            lab.host("tls.t3.test", addr(30))
            lab.host("plain.t3.test", addr(31))
            # the xmpps target refuses: the xmpp one, without TLS
            lab.srv("_xmpps-server._tcp.t4.test", "tls.t4.test", dead, 1)
            lab.srv("_xmpp-server._tcp.t4.test", "plain.t4.test", pplain, 2)
            lab.host("tls.t4.test", addr(32))
            lab.host("plain.t4.test", addr(31))
            lab.start()
            assert dial(lab.server, "t1.test") == [
                ok_line("tls.t1.test", ptls, 1, peer(addr(30), ptls))]
            assert dial(lab.server, "t2.test") == [
                ok_line("tls.t2.test", ptls, 1, peer(addr(30), ptls))]
            assert dial(lab.server, "t3.test") == [
                ok_line("plain.t3.test", pplain, 0, peer(addr(31), pplain))]
            assert dial(lab.server, "t4.test") == [
                ok_line("plain.t4.test", pplain, 0, peer(addr(31), pplain))]
    finally:
        close_all()


def test_dot_target():
    """A "." target: the service is not offered.  Alone, the dial ends
    with remote-server-not-found and no A/AAAA fallback (a server does
    listen on the domain's address on 5269); "." for xmpps beside real
    xmpp targets: those are used."""
    listener(addr(40), 5269)
    p = listener(addr(41))
    try:
        with DnsLab() as lab:
            lab.srv("_xmpp-server._tcp.dot.test", ".")
            lab.host("dot.test", addr(40))
            lab.srv("_xmpps-server._tcp.dots.test", ".")
            lab.host("dots.test", addr(40))
            lab.srv("_xmpps-server._tcp.half.test", ".")
            lab.srv("_xmpp-server._tcp.half.test", "x.half.test", p, 0)
            lab.host("x.half.test", addr(41))
            lab.start()
            for dom in ("dot.test", "dots.test"):
                [line] = dial(lab.server, dom)
                assert line.startswith("error remote-server-not-found "), line
                assert "no XMPP service" in line, line
            assert "A] dot.test " not in "".join(lab.queries())
            assert dial(lab.server, "half.test") == [
                ok_line("x.half.test", p, 0, peer(addr(41), p))]
    finally:
        close_all()


def test_no_srv_fallback():
    """No SRV records: the domain's own address on 5269, STARTTLS."""
    listener(addr(50), 5269)
    try:
        with DnsLab() as lab:
            lab.host("plain.test", addr(50))
            lab.start()
            assert dial(lab.server, "plain.test") == [
                ok_line("plain.test", 5269, 0, peer(addr(50), 5269))]
    finally:
        close_all()


def test_nxdomain():
    with DnsLab() as lab:
        lab.start()
        [line] = dial(lab.server, "nowhere.test")
        assert line == ("error remote-server-not-found nowhere.test: "
                        "nowhere.test: no such domain"), line


def test_refused_then_next_address():
    """IPv6 first; it refuses, so the IPv4 address is tried at once.
    Both refusing: remote-server-not-found naming both tries."""
    port = closed_port(addr(60), "::1")
    listener(addr(60), port)
    dead = closed_port(addr(61), "::1")
    try:
        with DnsLab() as lab:
            lab.srv("_xmpp-server._tcp.two.test", "x.two.test", port, 0)
            lab.host("x.two.test", "::1", addr(60))
            lab.srv("_xmpp-server._tcp.none.test", "x.none.test", dead, 0)
            lab.host("x.none.test", "::1", addr(61))
            lab.start()
            assert dial(lab.server, "two.test") == [
                ok_line("x.two.test", port, 0, peer(addr(60), port))]
            [line] = dial(lab.server, "none.test")
            assert line.startswith("error remote-server-not-found none.test: "
                                   "2 addresses tried (2 failed, 0 timed "
                                   "out)"), line
    finally:
        close_all()


def test_black_hole_stagger():
    """The IPv6 address takes the SYN and never answers: after
    s2s.connect_stagger the IPv4 one is tried and wins.  The first
    attempt's s2s.connect_timeout (300 s) is longer than dialtool waits
    for any dial (120 s): without the stagger this fails."""
    port = closed_port(addr(70), "::1")
    black_hole("::1", port)
    listener(addr(70), port)
    try:
        with DnsLab() as lab:
            lab.srv("_xmpp-server._tcp.bh.test", "x.bh.test", port, 0)
            lab.host("x.bh.test", "::1", addr(70))
            lab.start()
            assert dial(lab.server, "bh.test",
                        "s2s.connect_timeout=300s") == [
                ok_line("x.bh.test", port, 0, peer(addr(70), port))]
    finally:
        close_all()


def test_parallel_black_hole():
    """50 dials at once, each with a silent IPv6 attempt pending when
    its IPv4 one connects: all end once, every silent attempt closed
    (sanitizers: nothing used after it was freed, nothing leaked)."""
    port = closed_port(addr(75), "::1")
    black_hole("::1", port)
    listener(addr(75), port, backlog=128)
    try:
        with DnsLab() as lab:
            lab.srv("_xmpp-server._tcp.pbh.test", "x.pbh.test", port, 0)
            lab.host("x.pbh.test", "::1", addr(75))
            lab.start()
            lines = dial(lab.server, "pbh.test", "s2s.connect_timeout=300s",
                         "s2s.connect_stagger=10ms", n=50, parallel=True)
            assert lines == [ok_line("x.pbh.test", port, 0,
                                     peer(addr(75), port))] * 50, lines
    finally:
        close_all()


def test_all_time_out():
    """Every address silent: remote-server-timeout once each attempt's
    s2s.connect_timeout is over."""
    port = closed_port(addr(80), "::1")
    black_hole("::1", port)
    black_hole(addr(80), port)
    try:
        with DnsLab() as lab:
            lab.srv("_xmpp-server._tcp.slow.test", "x.slow.test", port, 0)
            lab.host("x.slow.test", "::1", addr(80))
            lab.start()
            [line] = dial(lab.server, "slow.test", "s2s.connect_timeout=1s")
            assert line.startswith("error remote-server-timeout slow.test: "
                                   "2 addresses tried (0 failed, 2 timed "
                                   "out)"), line
    finally:
        close_all()


def test_dns_timeout():
    """A DNS server that never answers: remote-server-timeout after
    s2s.dns_timeout."""
    with blackhole_dns() as bh:
        [line] = dial(bh.server, "b.test", "s2s.dns_timeout=600ms")
        assert line.startswith("error remote-server-timeout b.test: "), line
        assert "DNS timed out" in line, line


def test_cancel():
    """A cancelled dial never calls back (and leaks nothing: dialtool
    runs under the sanitizers)."""
    port = black_hole("::1")
    try:
        with DnsLab() as lab:
            lab.host("c.test", "::1")
            lab.srv("_xmpp-server._tcp.c.test", "c.test", port, 0)
            lab.start()
            assert dial(lab.server, "c.test", cancel=True) == ["cancelled"]
    finally:
        close_all()


def test_bad_dns_servers():
    """s2s.dns_servers takes numeric addresses only; the config check
    (config_check, which xmppd -t and reloads run) names the bad entry."""
    r = subprocess.run([DIALTOOL, "-o", "s2s.dns_servers=127.0.0.1 ns.test",
                        "x.test"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r
    assert "'s2s.dns_servers': 'ns.test': not an IPv4 address" in r.stderr, \
        r.stderr


if __name__ == "__main__":
    run_tests([test_srv_priority, test_srv_weights, test_xmpps_direct_tls,
               test_dot_target, test_no_srv_fallback, test_nxdomain,
               test_refused_then_next_address, test_black_hole_stagger,
               test_parallel_black_hole,
               test_all_time_out, test_dns_timeout, test_cancel,
               test_bad_dns_servers])

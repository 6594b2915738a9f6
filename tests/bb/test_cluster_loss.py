"""Losses in a cluster, as its users see them (issue 15, "Tests"): three
xmppd nodes on three NATS servers (tests/bb/clusterlab.py), users on
different nodes, and what each must notice, or must not:

  * kill -9 of a whole node: its users' contacts on the other nodes see
    them unavailable within node_timeout + 3 s; their sessions leave
    the other nodes' `xmppctl sessions`; a message sent afterwards to
    such a full JID is stored offline and arrives at the next login, on
    another node;
  * kill -9 of the recipient's node while 300 numbered messages flow:
    every number either reached the old stream before it died (read to
    EOF) or comes from offline storage at the next login on a third
    node: none missing (duplicates allowed, counted and printed);
  * a NATS server restarted while messages flow between two nodes:
    every message arrives, none twice;
  * a partition of n3 for 3 x node_timeout (network namespaces, root
    only: skipped otherwise): n1's users see n3's unavailable; healed,
    every node's session list is the same again within 15 s and
    messages flow both ways.

Users and passwords are imlib's.  Exits 77 without nats-server
(clusterlab's skips).  Needs XMPPD_TEST_PGCONN.
"""
import os
import re
import signal
import socket
import ssl
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_tests  # noqa: E402
from clusterlab import Lab, LabSkip, skippable, wait_until  # noqa: E402
from imlib import IM, PW, checked, subscribe_both  # noqa: E402

SETTLE = 0.6        # a directory scan (100 ms) and NATS, with room
OFFLINE = ("<delay xmlns='urn:xmpp:delay' from='localhost' stamp='[^']+'>"
           "Offline Storage</delay>")


def add_users(lab):
    for u, p in PW.items():
        lab.add_user("%s@localhost" % u, p)


def session_jids(node):
    r = node.ctl("sessions", "--json")
    return sorted(re.findall(r'"jid": "([^"]+)"', getattr(r, "stdout", r)))


def listed(lab, *ims, gone=(), nodes=None, timeout=10):
    want = {im.jid for im in ims}
    for node in nodes if nodes is not None else lab.live_nodes():
        def ok(node=node):
            have = set(session_jids(node))
            return (want <= have and not (set(gone) & have),
                    "%s lists %s" % (node.name, sorted(have)))
        wait_until(ok, timeout, "the sessions in every node's list")
    time.sleep(SETTLE)


def on(lab, i, user, resource, roster=True, presence="<presence/>"):
    c = lab.nodes[i].connect()
    lab.clients.append(c)
    im = IM(lab.nodes[i], user, resource, name="%s/%s@n%d" % (user, resource, i + 1),
            client=c)
    if roster:
        got = im.roster_get()
        assert "type='result'" in got, got
    if presence:
        im.send(presence)
    return im


def gone(to, frm):
    return "<presence to='%s' from='%s' type='unavailable'/>" % (to, frm)


def offline_numbers(im, prefix, want, quiet=4.0, limit=60.0):
    """The numbers of the offline messages (body PREFIX<n>) that come
    to im, until every one of want came or nothing came for `quiet`
    seconds; (numbers in arrival order, other stanzas)."""
    got, other = [], []
    rx = re.compile(r"<message [^>]*>.*?<body>%s(\d+)</body>.*</message>" % re.escape(prefix),
                    re.S)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and not set(want) <= set(got):
        try:
            st = im.next(timeout=quiet)
        except AssertionError:
            break
        m = rx.fullmatch(st)
        if m:
            assert re.search(OFFLINE, st), "not from offline storage: %s" % st
            got.append(int(m.group(1)))
        else:
            other.append(st)
    return got, other


class Reader(threading.Thread):
    """Reads a client's socket to EOF (or an error), in the background,
    keeping every byte: what the stream received before its node died."""

    def __init__(self, client):
        super().__init__(daemon=True)
        self.c = client
        self.data = bytearray(client.buf)
        self.eof = threading.Event()
        self.why = None

    def run(self):
        self.c.sock.settimeout(0.5)
        while True:
            try:
                chunk = self.c.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                continue
            except (ssl.SSLError, OSError) as e:
                self.why = repr(e)
                break
            if not chunk:
                self.why = "EOF"
                break
            self.data += chunk
        self.eof.set()

    def numbers(self, prefix):
        return [int(n) for n in re.findall(r"<body>%s(\d+)</body>" % re.escape(prefix),
                                           self.data.decode(errors="replace"))]


def accounting(total, first, second, bounced=()):
    """(missing, duplicates) of numbers 0..total-1 over two deliveries."""
    seen = {}
    for n in list(first) + list(second):
        seen[n] = seen.get(n, 0) + 1
    missing = [n for n in range(total) if n not in seen and n not in bounced]
    dups = sum(c - 1 for c in seen.values() if c > 1)
    return missing, dups


# ---------------------------------------------------------------------------

@skippable
@checked
def test_node_killed_contacts_see_it():
    """kill -9 of n2, where romeo is: juliet (n1) and nurse (n3), his
    contacts, get his unavailable within node_timeout + 3 s; n1 and n3
    list him no more; juliet's message to his full JID afterwards is
    stored and reaches him at his login on n3."""
    with Lab(nodes=3, nats=3) as lab:
        add_users(lab)
        lab.wait_converged(15)
        j = on(lab, 0, "juliet", "j")
        r = on(lab, 1, "romeo", "r")
        n = on(lab, 2, "nurse", "n")
        listed(lab, j, r, n)
        subscribe_both(j, r)
        subscribe_both(n, r)
        for x in (j, n):
            x.drain(0.3)
        t0 = time.monotonic()
        lab.nodes[1].kill9()
        limit = lab.node_timeout_s + 3
        for x in (j, n):
            x.expect(gone(x.bare, "romeo@localhost/r"), timeout=limit - (time.monotonic() - t0))
        print("# unavailable seen %.2fs after kill -9 (node_timeout %.1fs)"
              % (time.monotonic() - t0, lab.node_timeout_s), flush=True)
        for node in (lab.nodes[0], lab.nodes[2]):
            wait_until(lambda node=node: ("romeo@localhost/r" not in session_jids(node),
                                          session_jids(node)),
                       max(0.5, limit - (time.monotonic() - t0)),
                       "%s drops romeo's session" % node.name)
        time.sleep(SETTLE)
        j.send("<message to='romeo@localhost/r' type='chat' id='k1'><body>after</body></message>")
        j.quiet(1.0, re.compile("<message .*", re.S))   # no error: stored
        r2 = on(lab, 2, "romeo", "back")
        # stored with the full JID it was sent to, or with the bare JID
        # when it went to romeo's dead node first and came back as
        # undelivered (RFC 6121 8.5.3.2.1: handled as sent to the bare
        # JID): juliet's node may see n2 down after the others do
        r2.expect(re.compile("<message to='romeo@localhost(?:/r)?' " + re.escape(
            "type='chat' id='k1' from='juliet@localhost/j'><body>after</body>")
                             + OFFLINE + "</message>"))
        # and his contacts see him back
        for x in (j, n):
            x.expect("<presence to='%s' from='romeo@localhost/back'/>" % x.bare)


@skippable
def test_node_killed_while_messages_flow():
    """juliet on n1 sends 300 numbered messages to romeo/b on n2 as fast
    as her stream takes them; n2 is killed -9 among them.  Every number
    reached romeo's old stream or comes from offline storage at his
    next login (on n3)."""
    total = 300
    with Lab(nodes=3, nats=3, overrides={"im.offline_quota": "2000"}) as lab:
        add_users(lab)
        lab.wait_converged(15)
        j = on(lab, 0, "juliet", "a")
        r = on(lab, 1, "romeo", "b")
        listed(lab, j, r)
        r.drain(0.3)
        j.drain(0.3)
        reader = Reader(r.c)
        reader.start()
        victim = lab.nodes[1]
        pids = victim.pids()        # the master first
        at_kill = []

        def killer():
            # SIGKILL to every process of n2 at once as soon as romeo's
            # stream has a tenth of the messages: the rest are then on
            # their way (n1's bridge, NATS, n2's bridge, queue, socket)
            deadline = time.monotonic() + 20
            while len(reader.numbers("f")) < total // 10 and time.monotonic() < deadline:
                time.sleep(0.0005)
            at_kill.append(len(reader.numbers("f")))
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        k = threading.Thread(target=killer, daemon=True)
        k.start()
        # In batches of ten, as fast as the stream takes them, a
        # millisecond apart: all at once, the 300 cross in a few ms and
        # the kill would come after the flow, proving nothing.
        for i in range(0, total, 10):
            j.c.send("".join("<message to='romeo@localhost/b' type='chat' id='f%d'>"
                             "<body>f%d</body></message>" % (n, n)
                             for n in range(i, min(total, i + 10))))
            time.sleep(0.001)
        k.join(30)
        victim.kill9()
        assert reader.eof.wait(10), "romeo's old stream did not end"
        old = reader.numbers("f")
        for node in (lab.nodes[0], lab.nodes[2]):
            wait_until(lambda node=node: ("romeo@localhost/b" not in session_jids(node),
                                          session_jids(node)),
                       lab.node_timeout_s + 5, "%s drops romeo's session" % node.name)
        time.sleep(2.0)     # what was on its way to n2 is handed back
        r2 = on(lab, 2, "romeo", "c")
        offline, other = offline_numbers(r2, "f", set(range(total)) - set(old))
        # bounces to juliet (an error instead of silence) are counted
        bounced = []
        while True:
            try:
                st = j.next(timeout=0.5)
            except AssertionError:
                break
            m = re.search(r"id='f(\d+)'[^>]*type='error'|type='error'[^>]*id='f(\d+)'", st)
            if m:
                bounced.append(int(m.group(1) or m.group(2)))
        missing, dups = accounting(total, old, offline, bounced)
        report = ("sent %d (kill when %d received); old stream %d (%s), "
                  "offline %d, bounced %d, duplicates %d, missing %d%s"
                  % (total, at_kill[0], len(old), reader.why, len(offline),
                     len(bounced), dups, len(missing),
                     (": " + " ".join(map(str, missing[:60]))) if missing else ""))
        print("# " + report, flush=True)
        assert not bounced, "messages bounced, not stored: %s" % report
        assert not missing, "messages lost: %s" % report


@skippable
def test_node_killed_slow_reader():
    """The same accounting when the recipient reads slowly: romeo/b on
    n2 reads nothing while juliet (n1) sends 300 numbered messages of
    3 KB as fast as her stream takes them (n2's kernel send buffer kept
    small, c2s.send_buffer, so that most wait in n2's worker for
    romeo's socket); n2 is killed -9 with them waiting.  romeo's old
    stream is then read to EOF, he logs in on n3: every number is in
    one or the other.  A frame that n2 acknowledged when it was queued
    to its worker, not once it was written to romeo's socket, would be
    lost here (worker/settle.h)."""
    total = 300
    pad = "x" * 3000
    with Lab(nodes=3, nats=3, overrides={"im.offline_quota": "2000"},
             node_overrides={1: {"c2s.send_buffer": "16k"}}) as lab:
        add_users(lab)
        lab.wait_converged(15)
        j = on(lab, 0, "juliet", "a")
        r = on(lab, 1, "romeo", "b")
        listed(lab, j, r)
        r.drain(0.3)
        j.drain(0.3)
        r.c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        for i in range(0, total, 10):
            j.c.send("".join("<message to='romeo@localhost/b' type='chat' id='s%d'>"
                             "<body>s%d %s</body></message>" % (n, n, pad)
                             for n in range(i, min(total, i + 10))))
        time.sleep(1.5)     # n1 -> NATS -> n2's bridge -> n2's worker
        lab.nodes[1].kill9()
        reader = Reader(r.c)
        reader.start()
        assert reader.eof.wait(10), "romeo's old stream did not end"
        old = [int(x) for x in re.findall(r"<body>s(\d+) ",
                                          reader.data.decode(errors="replace"))]
        for node in (lab.nodes[0], lab.nodes[2]):
            wait_until(lambda node=node: ("romeo@localhost/b" not in session_jids(node),
                                          session_jids(node)),
                       lab.node_timeout_s + 5, "%s drops romeo's session" % node.name)
        time.sleep(2.0)
        r2 = on(lab, 2, "romeo", "c")
        got, other = [], []
        rx = re.compile(r"<message [^>]*>.*?<body>s(\d+) x+</body>.*</message>", re.S)
        while not set(range(total)) <= set(got) | set(old):
            try:
                st = r2.next(timeout=4.0)
            except AssertionError:
                break
            m = rx.fullmatch(st)
            if m and re.search(OFFLINE, st):
                got.append(int(m.group(1)))
            else:
                other.append(st[:200])
        bounced = [int(x) for x in re.findall(r"<message [^>]*id='s(\d+)'[^>]*type='error'",
                                              j.c.buf.decode(errors="replace") +
                                              "".join(t for _, t in j.q))]
        try:
            while True:
                st = j.next(timeout=0.5)
                m = re.search(r"id='s(\d+)'", st)
                if m and "type='error'" in st:
                    bounced.append(int(m.group(1)))
        except AssertionError:
            pass
        missing, dups = accounting(total, old, got)
        report = ("sent %d; old stream %d (%s), offline %d, bounced to juliet %d, "
                  "duplicates %d, missing %d%s"
                  % (total, len(old), reader.why, len(got), len(bounced), dups, len(missing),
                     (": %d..%d" % (missing[0], missing[-1])) if missing else ""))
        print("# slow reader: " + report, flush=True)
        assert not missing, "messages lost: %s" % report


@skippable
def test_nats_restart_while_messages_flow():
    """NATS server s1 (n1's first) stopped and started again while juliet
    (n1) and romeo (n2) write to each other: every message arrives, none
    twice, and the cluster converges without restarting xmppd."""
    total = 200
    with Lab(nodes=3, nats=3) as lab:
        add_users(lab)
        lab.wait_converged(15)
        # one stream sends, another reads (a TLS socket is not written
        # and read from two threads)
        j = on(lab, 0, "juliet", "a")
        r = on(lab, 1, "romeo", "b")
        js = on(lab, 0, "juliet", "s", presence=None)
        rs = on(lab, 1, "romeo", "s", presence=None)
        listed(lab, j, r, js, rs)
        for x in (j, r, js, rs):
            x.drain(0.3)
        rj, rr = Reader(j.c), Reader(r.c)
        rj.start()
        rr.start()

        def flow(im, to, prefix):
            for i in range(total):
                im.c.send("<message to='%s' type='chat' id='%s%d'><body>%s%d</body></message>"
                          % (to, prefix, i, prefix, i))
                time.sleep(0.015)
        ts = [threading.Thread(target=flow, args=(js, "romeo@localhost/b", "jr"), daemon=True),
              threading.Thread(target=flow, args=(rs, "juliet@localhost/a", "rj"), daemon=True)]
        for t in ts:
            t.start()
        time.sleep(0.8)
        lab.nats.stop(0)
        time.sleep(1.0)
        lab.nats.start(0)
        for t in ts:
            t.join(30)
        # all of them, within a bound
        wait_until(lambda: (len(set(rr.numbers("jr"))) == total and
                            len(set(rj.numbers("rj"))) == total,
                            "romeo has %d, juliet %d" % (len(set(rr.numbers("jr"))),
                                                          len(set(rj.numbers("rj"))))),
                   30, "every message")
        time.sleep(1.0)
        for name, rd, prefix in (("romeo", rr, "jr"), ("juliet", rj, "rj")):
            got = rd.numbers(prefix)
            dup = len(got) - len(set(got))
            print("# %s got %d of %d, %d twice" % (name, len(set(got)), total, dup), flush=True)
            assert dup == 0, "%s got %d messages twice" % (name, dup)
        sts = lab.wait_converged(15)
        # n1's link did go through the restart (it moved to another
        # server of its list, or came back to s1)
        assert sts["n1"].get("reconnects", 0) >= 1, sts["n1"]
        for rd in (rj, rr):
            assert rd.why is None, "a stream ended: %s" % rd.why


@skippable
@checked
def test_partition_heals():
    """n3 cut off (its hub port down) for 3 x node_timeout: juliet on n1
    sees nurse (n3) unavailable; healed, all three nodes list the same
    sessions within 15 s and messages go both ways between n1 and n3."""
    with Lab(nodes=3, nats=3, netns=True) as lab:
        add_users(lab)
        lab.wait_converged(20)
        j = on(lab, 0, "juliet", "j")
        r = on(lab, 1, "romeo", "r")
        n = on(lab, 2, "nurse", "n")
        listed(lab, j, r, n)
        subscribe_both(j, n)
        j.drain(0.3)
        t0 = time.monotonic()
        lab.netns.partition(2)
        try:
            j.expect(gone(j.bare, "nurse@localhost/n"), timeout=lab.node_timeout_s + 3)
            print("# unavailable seen %.2fs after the cut" % (time.monotonic() - t0), flush=True)
            for node in lab.nodes[:2]:
                wait_until(lambda node=node: ("nurse@localhost/n" not in session_jids(node),
                                              session_jids(node)),
                           5, "%s drops nurse's session" % node.name)
            left = 3 * lab.node_timeout_s - (time.monotonic() - t0)
            if left > 0:
                time.sleep(left)
        finally:
            lab.netns.heal(2)
        t1 = time.monotonic()
        want = sorted([j.jid, r.jid, n.jid])

        def same():
            lists = [session_jids(node) for node in lab.nodes]
            return (all(x == want for x in lists), lists)
        wait_until(same, 15, "every node's session list equal after the heal")
        print("# lists equal %.2fs after the heal" % (time.monotonic() - t1), flush=True)
        lab.wait_converged(15)
        time.sleep(SETTLE)
        # Not asserted (presence replay after a heal is a later slice of
        # the plan): does juliet see nurse available again by herself?
        try:
            j.expect(re.compile("<presence [^>]*from='nurse@localhost/n'(?![^>]*type=)[^>]*/?>.*",
                                re.S), timeout=3)
            print("# after the heal juliet saw nurse available again", flush=True)
        except AssertionError:
            print("# after the heal juliet still sees nurse unavailable (no presence replay)",
                  flush=True)
        j.drain(0.5)
        n.drain(0.5)
        j.send("<message to='nurse@localhost/n' type='chat' id='h1'><body>healed?</body></message>")
        n.expect(re.compile("<message [^>]*id='h1'[^>]*from='juliet@localhost/j'>"
                            "<body>healed\\?</body></message>"), timeout=5)
        n.send("<message to='juliet@localhost/j' type='chat' id='h2'><body>yes</body></message>")
        j.expect(re.compile("<message [^>]*id='h2'[^>]*from='nurse@localhost/n'>"
                            "<body>yes</body></message>"), timeout=5)


if __name__ == "__main__":
    ALL = [test_node_killed_contacts_see_it, test_node_killed_while_messages_flow,
           test_node_killed_slow_reader,
           test_nats_restart_while_messages_flow, test_partition_heals]
    run_tests([t for t in ALL if len(sys.argv) < 2 or t.__name__ in sys.argv[1:]])

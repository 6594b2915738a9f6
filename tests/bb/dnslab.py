"""A DNS server for black-box tests: dnsmasq (Debian's dnsmasq-base, the
binary without the system service) in the foreground on 127.0.0.1 and a
free port, answering only from the records the test gives it.

    from dnslab import DnsLab
    with DnsLab() as dns:
        dns.srv("_xmpp-server._tcp.b.test", "xmpp.b.test", 5269, prio=10)
        dns.srv("_xmpps-server._tcp.c.test", ".")   # service not offered
        dns.host("xmpp.b.test", "127.0.3.4", "::1")
        dns.start()
        ... config row: s2s.dns_servers = dns.server  ("127.0.0.1:PORT")

Every name under the zones in `local` (default "test") is answered from
these records only: a name with no record gets NXDOMAIN, nothing is ever
forwarded.  Records are fixed at start() (dnsmasq reads its command line
once): a test that needs other records starts another DnsLab.  stop()
(or leaving the with block, or the interpreter's exit) kills the
process; every wait is bounded.

Also here: blackhole_dns(), a UDP/TCP port that takes DNS queries and
never answers (for the resolver's timeout).
"""
import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"

_LIVE = []


def _kill_all():
    for lab in list(_LIVE):
        lab.stop()


atexit.register(_kill_all)


def _free_udp_tcp_port(addr="127.0.0.1"):
    """A port free for both UDP and TCP on addr (dnsmasq binds both)."""
    for _ in range(50):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind((addr, 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind((addr, port))
        except OSError:
            t.close()
            continue
        u.close()
        t.close()
        return port
    raise RuntimeError("no free port for the DNS lab")


class DnsLab:
    def __init__(self, local=("test",), addr="127.0.0.1", port=None):
        self.addr = addr
        self.fixed_port = port      # e.g. 53 on a lab address (fedlab.py)
        self.local = list(local)
        self.args = []
        self.port = None
        self.proc = None
        self.dir = None

    # ---- records (before start) ----------------------------------------

    def srv(self, name, target, port=5269, prio=0, weight=0):
        """An SRV record: name is "_service._proto.domain"; target "."
        (or "") is the RFC 2782 "service decidedly not available"."""
        if target in (".", ""):
            self.args.append("--srv-host=%s" % name)
        else:
            self.args.append("--srv-host=%s,%s,%d,%d,%d" %
                             (name, target, port, prio, weight))
        return self

    def host(self, name, *addrs):
        """A and AAAA records for name (any mix of IPv4 and IPv6)."""
        for a in addrs:
            self.args.append("--host-record=%s,%s" % (name, a))
        return self

    # ---- process --------------------------------------------------------

    @property
    def server(self):
        """The value for s2s.dns_servers."""
        return "%s:%d" % (self.addr, self.port)

    def start(self, timeout=10.0):
        self.dir = tempfile.mkdtemp(prefix="xmppd-dnslab-")
        self.log = os.path.join(self.dir, "dnsmasq.log")
        for _ in range(5):
            self.port = self.fixed_port or _free_udp_tcp_port(self.addr)
            cmd = [DNSMASQ, "--keep-in-foreground", "--conf-file=/dev/null",
                   "--no-resolv", "--no-hosts", "--no-poll",
                   "--port=%d" % self.port,
                   "--listen-address=%s" % self.addr, "--bind-interfaces",
                   "--pid-file=", "--log-facility=%s" % self.log,
                   "--log-queries", "--local-ttl=0", "--cache-size=0"]
            if os.geteuid() == 0:
                # never root; nobody exists on every Debian system
                cmd.append("--user=nobody")
                os.chmod(self.dir, 0o777)
            cmd += ["--local=/%s/" % z for z in self.local]
            cmd += self.args
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE)
            _LIVE.append(self)
            if self._wait_ready(timeout):
                return self
            self.stop()
        raise RuntimeError("dnsmasq did not start")

    def _wait_ready(self, timeout):
        """Up when it answers a query (an NXDOMAIN is an answer)."""
        deadline = time.monotonic() + timeout
        q = (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
             b"\x05probe\x04test\x00\x00\x01\x00\x01")
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(0.2)
            try:
                s.sendto(q, (self.addr, self.port))
                data, _ = s.recvfrom(512)
                if data[:2] == b"\x12\x34":
                    return True
            except OSError:
                time.sleep(0.05)
            finally:
                s.close()
        return False

    def queries(self):
        """The names asked so far, as dnsmasq logged them."""
        try:
            with open(self.log) as f:
                return [l.split("query[", 1)[1] for l in f if "query[" in l]
        except OSError:
            return []

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
            if self.proc.stderr:
                self.proc.stderr.close()
            self.proc = None
        if self in _LIVE:
            _LIVE.remove(self)
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


class blackhole_dns:
    """A DNS "server" (UDP and TCP on 127.0.0.1) that never answers:
    s2s.dns_servers = bh.server makes every lookup time out.  The TCP
    socket listens but is never accepted from."""

    def __init__(self, addr="127.0.0.1"):
        port = _free_udp_tcp_port(addr)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((addr, port))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind((addr, port))
        self.tcp.listen(1)
        self.server = "%s:%d" % (addr, port)

    def close(self):
        self.udp.close()
        self.tcp.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


if __name__ == "__main__":
    # self-check: python3 tests/bb/dnslab.py
    with DnsLab() as lab:
        lab.srv("_xmpp-server._tcp.b.test", "x.b.test", 5270, prio=5)
        lab.srv("_xmpps-server._tcp.c.test", ".")
        lab.host("x.b.test", "127.0.0.9", "::1")
        lab.start()
        print("dnsmasq on", lab.server)
        import pycares, select
        ch = pycares.Channel(servers=[lab.addr], udp_port=lab.port,
                             tcp_port=lab.port)
        got = []
        ch.query("_xmpp-server._tcp.b.test", pycares.QUERY_TYPE_SRV,
                 lambda r, e: got.append((r, e)))
        ch.query("x.b.test", pycares.QUERY_TYPE_AAAA,
                 lambda r, e: got.append((r, e)))
        ch.query("nx.test", pycares.QUERY_TYPE_A,
                 lambda r, e: got.append((r, e)))
        for _ in range(20):
            r, w = ch.getsock()
            if not r and not w:
                break
            rs, ws, _ = select.select(r, w, [], 0.5)
            for fd in rs:
                ch.process_fd(fd, pycares.ARES_SOCKET_BAD)
            for fd in ws:
                ch.process_fd(pycares.ARES_SOCKET_BAD, fd)
        for r in got:
            print(r)
        print(lab.queries())
    print("stopped")

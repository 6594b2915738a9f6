"""Outgoing server-to-server links (RFC 6120 section 13 as the initiating
entity, RFC 7590, XEP-0178, XEP-0220), black box with exact XML: a local
user's stanza to another domain makes xmppd dial a fake remote server
(fakeserver.py) found through DNS (dnslab.py: dnsmasq with SRV records), STARTTLS,
authenticate with SASL EXTERNAL or dialback, and carry the stanza; a link
that cannot be set up bounces what waited with the RFC's condition.
Needs XMPPD_TEST_PGCONN.
"""
import base64
import contextlib
import os
import re
import signal
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, Server, run_tests, wait_for  # noqa: E402
from fakeserver import (NS_SASL, STARTTLS_REQUIRED, FakeServer,  # noqa: E402
                        TestCA, features_auth)
from dnslab import DnsLab  # noqa: E402

STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
USERS = [("juliet@localhost", "r0m30!"), ("nurse@localhost", "s3cret")]
REMOTE = "remote.test"

_CA = None


def ca():
    global _CA
    if _CA is None:
        _CA = TestCA()
    return _CA


def our_header(local="localhost", remote=REMOTE):
    return ("<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
            "xmlns:stream='http://etherx.jabber.org/streams' "
            "xmlns:db='jabber:server:dialback' from='%s' to='%s' "
            "version='1.0' xml:lang='en'>" % (local, remote))


@contextlib.contextmanager
def remote(cert=None, listening=True, settings=None, direct_tls=False):
    """A fake REMOTE server and a DNS server whose SRV record for it
    (_xmpp-server._tcp) points at the fake's port; yields the fake and
    the overrides for xmppd (s2s.dns_servers, the test CA).  With
    listening False the port is closed: connections are refused."""
    fake = FakeServer(cert=cert)
    if not listening:
        fake.close()
    dns = DnsLab()
    dns.srv("_xmpp%s-server._tcp.%s" % ("s" if direct_tls else "", REMOTE),
            "xmpp.%s" % REMOTE, fake.port)
    dns.host("xmpp.%s" % REMOTE, "127.0.0.1")
    dns.start()
    o = {"s2s.ca_file": ca().cert, "s2s.dns_servers": dns.server}
    o.update(settings or {})
    try:
        yield fake, o
    finally:
        fake.close()
        dns.stop()


def login(s, user="juliet", resource="r"):
    c = Client(s.port)
    c.login(user, dict(USERS)["%s@localhost" % user], resource=resource)
    return c


def message(to, mid, body, frm="juliet@localhost/r"):
    return ("<message to='%s' id='%s' type='chat'><body>%s</body></message>"
            % (to, mid, body), frm)


def send_message(c, to, mid, body):
    c.send("<message to='%s' id='%s' type='chat'><body>%s</body></message>"
           % (to, mid, body))


def wire_message(to, mid, body, frm="juliet@localhost/r"):
    """The message as xmppd writes it on the s2s stream (a regex: the
    sender's archive adds its XEP-0359 stanza-id)."""
    return (re.escape("<message to='%s' id='%s' type='chat' from='%s'><body>%s</body>"
                      % (to, mid, frm, body)) +
            "(<stanza-id xmlns='urn:xmpp:sid:0' id='[0-9]+' by='%s'/>)?</message>"
            % re.escape(frm.split("/")[0]))


def bounce(to, mid, etype, cond, frm="juliet@localhost/r"):
    return ("<message from='%s' id='%s' to='%s' type='error'>"
            "<error type='%s'><%s xmlns='%s'/></error></message>"
            % (to, mid, frm, etype, cond, STANZAS))


class Incoming(Client):
    """REMOTE's stream to xmppd's s2s port (the incoming side, s2s_in.c),
    through STARTTLS without a client certificate."""

    def __init__(self, s):
        Client.__init__(self, s.s2s_port)
        self.header()
        self.read_until("<stream:features>.*?</stream:features>")
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.read_until("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.wrap_tls()
        self.header()
        self.read_until("<stream:features>.*?</stream:features>")

    def header(self):
        self.send("<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
                  "xmlns:stream='http://etherx.jabber.org/streams' "
                  "xmlns:db='jabber:server:dialback' from='%s' to='localhost' "
                  "version='1.0'>" % REMOTE)
        self.id = re.search("id='([^']+)'", self.read_until(
            "<stream:stream [^>]*>")).group(1)


def tls_and_features(peer, features):
    """xmppd's header, STARTTLS, its header again, our features."""
    assert peer.read_header() == our_header()
    peer.send_header(REMOTE, features=STARTTLS_REQUIRED)
    peer.expect_next("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    peer.proceed_tls()
    assert peer.read_header() == our_header()
    peer.send_header(REMOTE, features=features)


# The features after SASL: dialback still offered, as Prosody does (what
# lets a second of our domains ride the stream: the last features count).
AFTER_SASL = features_auth(external=False, dialback=True)


def external(peer, after=AFTER_SASL):
    tls_and_features(peer, features_auth(external=True, dialback=True))
    peer.expect_next("<auth xmlns='%s' mechanism='EXTERNAL'>%s</auth>"
                     % (NS_SASL, base64.b64encode(b"localhost").decode()))
    peer.send("<success xmlns='%s'/>" % NS_SASL)
    assert peer.read_header() == our_header()
    peer.send_header(REMOTE, features=after)


def test_external_and_link_reuse():
    """A valid certificate: STARTTLS, SASL EXTERNAL (authzid = our domain,
    XEP-0178), then the message; a second one reuses the link."""
    with remote(cert=ca().issue(REMOTE)) as (fake, o), \
            Server(workers=1, users=USERS, overrides=o) as s:
        c = login(s)
        send_message(c, "romeo@%s" % REMOTE, "m1", "hi")
        peer = fake.accept()
        external(peer)
        peer.expect_next_re(wire_message("romeo@%s" % REMOTE, "m1", "hi"))
        send_message(c, "romeo@%s/balcony" % REMOTE, "m2", "again")
        peer.expect_next_re(wire_message("romeo@%s/balcony" % REMOTE, "m2",
                                      "again"))
        assert peer.sni == REMOTE
        assert re.search(r"s2s localhost -> remote.test \S+: up \(EXTERNAL, TLS\)",
                         s.log_text()), s.log_text()[-2000:]


def test_dialback_when_certificate_not_trusted():
    """A self-signed certificate: no EXTERNAL even if offered, dialback
    (XEP-0220) with a 64-hex XEP-0185 key; type='valid' opens the link."""
    cert = ca().issue(REMOTE, self_signed=True)
    with remote(cert=cert) as (fake, o), \
            Server(workers=1, users=USERS, overrides=o, s2s=True) as s:
        c = login(s)
        send_message(c, "romeo@%s" % REMOTE, "m1", "hi")
        peer = fake.accept()
        tls_and_features(peer, features_auth(external=True, dialback=True))
        m = peer.read_until("<db:result from='localhost' to='remote.test'>"
                            "([0-9a-f]{64})</db:result>")
        assert m.start() == 0
        peer.send("<db:result from='%s' to='localhost' type='valid'/>" % REMOTE)
        peer.expect_next_re(wire_message("romeo@%s" % REMOTE, "m1", "hi"))
        assert "certificate not valid for remote.test" in s.log_text()
        # the key is XEP-0185's for (remote, local, the id the fake gave
        # our stream): xmppd's authoritative side says so, and refuses it
        # for another stream id
        key = m.group(1).decode()
        v = Incoming(s)
        v.send("<db:verify from='%s' to='localhost' id='%s'>%s</db:verify>"
               % (REMOTE, peer.stream_id, key))
        assert v.read_until("<db:verify [^>]*/>") == (
            "<db:verify from='localhost' to='%s' id='%s' type='valid'/>"
            % (REMOTE, peer.stream_id))
        v.send("<db:verify from='%s' to='localhost' id='%s'>%s</db:verify>"
               % (REMOTE, peer.stream_id + "x", key))
        assert v.read_until("<db:verify [^>]*/>") == (
            "<db:verify from='localhost' to='%s' id='%sx' type='invalid'/>"
            % (REMOTE, peer.stream_id))


def test_verify_for_the_incoming_side():
    """XEP-0220 2.3 through the owner of the outgoing link: REMOTE offers
    a dialback key on its stream to us; xmppd opens (or uses) its link to
    REMOTE, sends <db:verify/> with our incoming stream's id there (before
    authenticating the link), and the answer decides the incoming one."""
    with remote(cert=ca().issue(REMOTE)) as (fake, o), \
            Server(workers=2, users=USERS, overrides=o, s2s=True) as s:
        inc = Incoming(s)
        inc.send("<db:result from='%s' to='localhost'>k3y</db:result>" % REMOTE)
        peer = fake.accept()
        tls_and_features(peer, features_auth(external=True, dialback=True))
        peer.expect_next("<db:verify from='localhost' to='%s' id='%s'>k3y"
                         "</db:verify>" % (REMOTE, inc.id))
        peer.expect_next("<auth xmlns='%s' mechanism='EXTERNAL'>%s</auth>"
                         % (NS_SASL, base64.b64encode(b"localhost").decode()))
        peer.send("<db:verify from='%s' to='localhost' id='%s' type='valid'/>"
                  % (REMOTE, inc.id))
        assert inc.read_until("<db:result [^>]*/>") == (
            "<db:result from='localhost' to='%s' type='valid'/>" % REMOTE)
        # a second key on another stream: the link is reused, invalid
        inc2 = Incoming(s)
        inc2.send("<db:result from='%s' to='localhost'>bad</db:result>" % REMOTE)
        peer.expect("<db:verify from='localhost' to='%s' id='%s'>bad"
                    "</db:verify>" % (REMOTE, inc2.id))
        peer.send("<db:verify from='%s' to='localhost' id='%s' type='invalid'/>"
                  % (REMOTE, inc2.id))
        got = inc2.read_until("<db:result [^>]*/>")
        assert got == ("<db:result from='localhost' to='%s' type='invalid'/>"
                       % REMOTE), got
        assert len(fake.peers) == 1


def test_dialback_invalid_bounces():
    """The receiving server finds our key invalid: the waiting message
    comes back remote-server-not-found and the stream is closed."""
    cert = ca().issue(REMOTE, self_signed=True)
    with remote(cert=cert) as (fake, o), \
            Server(workers=1, users=USERS, overrides=o) as s:
        c = login(s)
        send_message(c, "romeo@%s" % REMOTE, "m1", "hi")
        peer = fake.accept()
        tls_and_features(peer, features_auth(external=False, dialback=True))
        peer.read_until("<db:result from='localhost' to='remote.test'>[0-9a-f]{64}</db:result>")
        peer.send("<db:result from='%s' to='localhost' type='invalid'/>" % REMOTE)
        c.read_until(re.escape(bounce("romeo@%s" % REMOTE, "m1", "cancel",
                                      "remote-server-not-found")))
        peer.expect_next("</stream:stream>")
        assert peer.is_closed()


def test_pkix_policy_refuses_dialback():
    """s2s.auth = pkix: a certificate that does not validate is the end
    of it, no dialback; s2s.dialback_domains makes an exception."""
    cert = ca().issue(REMOTE, self_signed=True)
    with remote(cert=cert, settings={"s2s.auth": "pkix"}) as (fake, o), \
            Server(workers=1, users=USERS,
                   overrides=o) as s:
        c = login(s)
        send_message(c, "romeo@%s" % REMOTE, "m1", "hi")
        peer = fake.accept()
        tls_and_features(peer, features_auth(external=True, dialback=True))
        peer.expect_next("</stream:stream>")
        c.read_until(re.escape(bounce("romeo@%s" % REMOTE, "m1", "cancel",
                                      "remote-server-not-found")))
        assert "certificate not valid and s2s.auth is pkix" in s.log_text()
    with remote(cert=cert, settings={"s2s.auth": "pkix",
                                          "s2s.dialback_domains": REMOTE}) as (fake, o), \
            Server(workers=1, users=USERS,
                   overrides=o) as s:
        c = login(s)
        send_message(c, "romeo@%s" % REMOTE, "m1", "hi")
        peer = fake.accept()
        tls_and_features(peer, features_auth(external=False, dialback=True))
        peer.read_until("<db:result from='localhost' to='remote.test'>[0-9a-f]{64}</db:result>")


def test_no_starttls_offered():
    """RFC 7590: a peer without STARTTLS is refused (s2s.require_tls)."""
    with remote(cert=ca().issue(REMOTE)) as (fake, o), \
            Server(workers=1, users=USERS, overrides=o) as s:
        c = login(s)
        send_message(c, "romeo@%s" % REMOTE, "m1", "hi")
        peer = fake.accept()
        assert peer.read_header() == our_header()
        peer.send_header(REMOTE, features=features_auth(external=False))
        peer.expect_next("</stream:stream>")
        c.read_until(re.escape(bounce("romeo@%s" % REMOTE, "m1", "cancel",
                                      "remote-server-not-found")))
        assert "no STARTTLS offered (s2s.require_tls)" in s.log_text()


def test_remote_down():
    """Connection refused: remote-server-not-found; an IQ result is not
    bounced (no error loops) but an IQ get is."""
    with remote(listening=False) as (fake, o), \
            Server(workers=1, users=USERS, overrides=o) as s:
        c = login(s)
        send_message(c, "romeo@%s" % REMOTE, "m1", "hi")
        c.read_until(re.escape(bounce("romeo@%s" % REMOTE, "m1", "cancel",
                                      "remote-server-not-found")))
        c.send("<iq to='%s' id='r1' type='result'/>" % REMOTE)
        c.send("<iq to='%s' id='q1' type='get'><ping xmlns='urn:xmpp:ping'/></iq>"
               % REMOTE)
        got = c.read_until("<iq [^>]*id='q1'[^>]*>.*?</iq>")
        assert got == ("<iq from='%s' id='q1' to='juliet@localhost/r' type='error'>"
                       "<error type='cancel'><remote-server-not-found xmlns='%s'/>"
                       "</error></iq>" % (REMOTE, STANZAS)), got
        # the result sent before it got nothing back
        assert "'r1'" not in c.buf.decode(errors="replace")
        assert "'r1'" not in got


def test_nxdomain():
    """No such domain (NXDOMAIN from DNS): remote-server-not-found."""
    with remote() as (fake, o), \
            Server(workers=1, users=USERS, overrides=o) as s:
        c = login(s)
        send_message(c, "romeo@nowhere.test", "m1", "hi")
        c.read_until(re.escape(bounce("romeo@nowhere.test", "m1", "cancel",
                                      "remote-server-not-found")))
        assert "s2s localhost -> nowhere.test" in s.log_text()


def test_black_hole_times_out():
    """A server that accepts and says nothing: after s2s.link_timeout the
    waiting stanzas come back remote-server-timeout (type wait)."""
    with remote(settings={"s2s.link_timeout": "2s"}) as (fake, o), \
            Server(workers=1, users=USERS,
                   overrides=o) as s:
        c = login(s)
        send_message(c, "romeo@%s" % REMOTE, "m1", "hi")
        send_message(c, "romeo@%s" % REMOTE, "m2", "there")
        peer = fake.accept()
        peer.read_header()
        c.read_until(re.escape(bounce("romeo@%s" % REMOTE, "m1", "wait",
                                      "remote-server-timeout")), timeout=15)
        c.read_until(re.escape(bounce("romeo@%s" % REMOTE, "m2", "wait",
                                      "remote-server-timeout")), timeout=15)
        assert "2 stanzas bounced with <remote-server-timeout/>" in s.log_text()


def test_pending_queue_bound():
    """While the link is set up at most s2s.max_queue_bytes wait; the
    next stanza is bounced resource-constraint (wait); the ones that
    waited go out in order once the link is up."""
    body = "x" * 1500
    with remote(cert=ca().issue(REMOTE), settings={"s2s.max_queue_bytes": "4K"}) as (fake, o), \
            Server(workers=1, users=USERS,
                   overrides=o) as s:
        c = login(s)
        for i in range(3):
            send_message(c, "romeo@%s" % REMOTE, "m%d" % i, body)
        c.read_until(re.escape(bounce("romeo@%s" % REMOTE, "m2", "wait",
                                      "resource-constraint")))
        peer = fake.accept()
        external(peer)
        peer.expect_next_re(wire_message("romeo@%s" % REMOTE, "m0", body) +
                            wire_message("romeo@%s" % REMOTE, "m1", body))


def test_idle_link_closed_and_reopened():
    """s2s.out_idle_timeout: an idle link ends with </stream:stream>; the
    next stanza opens a new one."""
    with remote(cert=ca().issue(REMOTE), settings={"s2s.out_idle_timeout": "1s"}) as (fake, o), \
            Server(workers=1, users=USERS,
                   overrides=o) as s:
        c = login(s)
        send_message(c, "romeo@%s" % REMOTE, "m1", "hi")
        peer = fake.accept()
        external(peer)
        peer.expect_next_re(wire_message("romeo@%s" % REMOTE, "m1", "hi"))
        peer.expect_next("</stream:stream>", timeout=15)
        peer.send("</stream:stream>")
        assert peer.is_closed()
        send_message(c, "romeo@%s" % REMOTE, "m2", "back")
        peer2 = fake.accept()
        external(peer2)
        peer2.expect_next_re(wire_message("romeo@%s" % REMOTE, "m2", "back"))


def test_other_workers_use_the_owner():
    """Three workers, several senders: every stanza for the remote domain
    goes over one link (the owner's), whichever worker the sender is on."""
    with remote(cert=ca().issue(REMOTE)) as (fake, o), \
            Server(workers=3, users=USERS, overrides=o) as s:
        clients = [login(s, resource="r%d" % i) for i in range(6)]
        send_message(clients[0], "romeo@%s" % REMOTE, "a0", "first")
        peer = fake.accept()
        external(peer)
        peer.expect_next_re(wire_message("romeo@%s" % REMOTE, "a0", "first",
                                      frm="juliet@localhost/r0"))
        for i, c in enumerate(clients[1:], 1):
            send_message(c, "romeo@%s" % REMOTE, "a%d" % i, "n%d" % i)
            peer.expect_next_re(wire_message("romeo@%s" % REMOTE, "a%d" % i,
                                          "n%d" % i,
                                          frm="juliet@localhost/r%d" % i))
        assert len(fake.peers) == 1
        slots = set(re.findall(r"w(\d+)[^\n]*juliet@localhost/r\d", s.log_text()))
        assert slots, "sessions not in the log"


def test_direct_tls():
    """XEP-0368: an _xmpps-server target gets TLS first, ALPN
    xmpp-server and SNI the remote domain, then our stream header; no
    STARTTLS in between."""
    with remote(cert=ca().issue(REMOTE), direct_tls=True) as (fake, o), \
            Server(workers=1, users=USERS, overrides=o) as s:
        c = login(s)
        send_message(c, "romeo@%s" % REMOTE, "m1", "hi")
        peer = fake.accept()
        assert peer.direct_tls(alpn=["xmpp-server"]) == "xmpp-server"
        assert peer.sni == REMOTE
        assert peer.read_header() == our_header()
        peer.send_header(REMOTE, features=features_auth(external=True))
        peer.expect_next("<auth xmlns='%s' mechanism='EXTERNAL'>%s</auth>"
                         % (NS_SASL, base64.b64encode(b"localhost").decode()))
        peer.send("<success xmlns='%s'/>" % NS_SASL)
        assert peer.read_header() == our_header()
        peer.send_header(REMOTE, features="<stream:features/>")
        peer.expect_next_re(wire_message("romeo@%s" % REMOTE, "m1", "hi"))


def test_tls_failure_and_stream_error():
    """A handshake that fails, then a peer that ends the stream with a
    stream error: both bounce what waited (remote-server-not-found)."""
    with remote(cert=ca().issue(REMOTE)) as (fake, o), \
            Server(workers=1, users=USERS, overrides=o) as s:
        c = login(s)
        send_message(c, "romeo@%s" % REMOTE, "m1", "hi")
        peer = fake.accept()
        assert peer.read_header() == our_header()
        peer.send_header(REMOTE, features=STARTTLS_REQUIRED)
        peer.expect_next("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        peer.send("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        peer.sock.settimeout(10)
        assert peer.sock.recv(65536)[:1] == b"\x16"     # a ClientHello
        peer.send("this is not a TLS record at all")
        c.read_until(re.escape(bounce("romeo@%s" % REMOTE, "m1", "cancel",
                                      "remote-server-not-found")))
        send_message(c, "romeo@%s" % REMOTE, "m2", "again")
        peer2 = fake.accept()
        assert peer2.read_header() == our_header()
        peer2.send_header(REMOTE, features="<stream:error><host-unknown "
                          "xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                          "</stream:error></stream:stream>")
        c.read_until(re.escape(bounce("romeo@%s" % REMOTE, "m2", "cancel",
                                      "remote-server-not-found")))
        assert "stream error <host-unknown/> from the peer" in s.log_text()


def test_peer_closes_then_new_link():
    """The remote server ends the stream (</stream:stream>): we close
    ours, and the next stanza goes over a new link."""
    with remote(cert=ca().issue(REMOTE)) as (fake, o), \
            Server(workers=1, users=USERS, overrides=o) as s:
        c = login(s)
        send_message(c, "romeo@%s" % REMOTE, "m1", "hi")
        peer = fake.accept()
        external(peer)
        peer.expect_next_re(wire_message("romeo@%s" % REMOTE, "m1", "hi"))
        peer.send("</stream:stream>")
        peer.expect_next("</stream:stream>")
        send_message(c, "romeo@%s" % REMOTE, "m2", "later")
        peer2 = fake.accept()
        external(peer2)
        peer2.expect_next_re(wire_message("romeo@%s" % REMOTE, "m2", "later"))
        assert peer.is_closed()



def test_failed_write_to_a_reset_link_in_its_own_send():
    """A stanza for a link whose peer reset the connection (a TCP RST
    the worker has not handled yet) is written to it directly, and that
    write fails: the worker must not crash (conn_send used to close the
    connection there, freeing the link under the code writing to it),
    and what the dead link had not written, this stanza last, goes over
    a new link in order.  The peer reads nothing (a small receive
    buffer) and the kernel holds at most tcp_wmem's maximum: more than
    CONN_OUT_EAGER (256 KiB) stays in our output buffer, so that
    conn_send writes at once; the worker is held (SIGSTOP) while the
    stanza and the RST arrive in that order."""
    with open("/proc/sys/net/ipv4/tcp_wmem") as f:
        wmem = int(f.read().split()[2])
    body = "x" * 65536
    n = (wmem + (1 << 20)) // len(body) + 1
    with remote(cert=ca().issue(REMOTE),
                settings={"c2s.max_output_bytes": str(8 * n * len(body)),
                          "s2s.max_queue_bytes": str(4 * n * len(body))}) \
            as (fake, o), \
            Server(workers=1, users=USERS, overrides=o) as s:
        # inherited by the accepted socket: the kernel takes little
        fake.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c = login(s)
        to = "romeo@%s" % REMOTE
        send_message(c, to, "m0", "hi")
        peer = fake.accept()
        external(peer)
        peer.expect_next_re(wire_message(to, "m0", "hi"))
        # more than the kernel takes, under out_cap: every message is
        # written to the connection at once; headlines (not archived)
        for i in range(1, n + 1):
            c.send("<message to='%s' id='b%d' type='headline'><body>%s"
                   "</body></message>" % (to, i, body))
        c.send("<iq type='get' id='sync' to='localhost'>"
               "<ping xmlns='urn:xmpp:ping'/></iq>")
        c.read_until("<iq [^>]*id='sync'[^>]*type='result'[^>]*/>",
                     timeout=30)
        pid = s.worker_pids()[0]
        os.kill(pid, signal.SIGSTOP)
        try:
            # the client's stanza first, then the RST: one epoll turn
            # handles them in that order
            c.send("<message to='%s' id='last' type='headline'><body>"
                   "after the reset</body></message>" % to)
            time.sleep(0.3)
            peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 struct.pack("ii", 1, 0))
            peer.close()
            time.sleep(0.3)
        finally:
            os.kill(pid, signal.SIGCONT)
        fake.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        peer2 = fake.accept(timeout=20)
        external(peer2)
        # what the kernel had taken is lost unknown to us; the rest,
        # at least CONN_OUT_EAGER of it, comes again in its order
        peer2.read_until(re.escape(
            "<message to='%s' id='last' type='headline' from='juliet@"
            "localhost/r'><body>after the reset</body></message>" % to),
            timeout=30)
        got = re.findall(r"<message to='%s' id='([^']+)'" % re.escape(to),
                         peer2.received.decode())
        first = n + 1 - (len(got) - 1)
        assert got == ["b%d" % i for i in range(first, n + 1)] + ["last"], got
        assert (n - first + 1) * len(body) >= 256 << 10, got
        # the worker that wrote it lives on: no crash, no restart
        assert not re.search(r"worker [0-9]+ \(pid [0-9]+\) (exited|killed)",
                             s.log_text())
        assert s.worker_pids() == [pid]


NS_SM = "urn:xmpp:sm:3"
SM_FEATURES = "<stream:features><sm xmlns='%s'/></stream:features>" % NS_SM
POLICY = ("<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:"
          "xmpp-streams'/></stream:error></stream:stream>")


def external_sm(peer):
    """EXTERNAL, the restarted stream offers XEP-0198: xmppd enables it
    first thing."""
    tls_and_features(peer, features_auth(external=True, dialback=True))
    peer.expect_next("<auth xmlns='%s' mechanism='EXTERNAL'>%s</auth>"
                     % (NS_SASL, base64.b64encode(b"localhost").decode()))
    peer.send("<success xmlns='%s'/>" % NS_SASL)
    assert peer.read_header() == our_header()
    peer.send_header(REMOTE, features=SM_FEATURES.replace(
        "</stream:features>", "<dialback xmlns='urn:xmpp:features:dialback'>"
        "<errors/></dialback></stream:features>"))
    peer.expect_next("<enable xmlns='%s'/>" % NS_SM)
    peer.send("<enabled xmlns='%s'/>" % NS_SM)


R = re.escape("<r xmlns='%s'/>" % NS_SM)


def test_stream_management_resend():
    """XEP-0198 on an outgoing link: stanzas the peer acknowledged are
    forgotten; those it did not when it ends the stream (here a
    <policy-violation/>, as a rate limit would) go once more over a new
    link; a stanza that a second link also leaves unacknowledged is
    bounced, with resource-constraint for the peer's policy-violation
    (not remote-server-not-found: that server was reached)."""
    with remote(cert=ca().issue(REMOTE)) as (fake, o), \
            Server(workers=1, users=USERS, overrides=o) as s:
        c = login(s)
        to = "romeo@%s" % REMOTE
        send_message(c, to, "m1", "one")
        peer = fake.accept()
        external_sm(peer)
        peer.expect_next_re(wire_message(to, "m1", "one") + R)
        peer.send("<a xmlns='%s' h='1'/>" % NS_SM)
        send_message(c, to, "m2", "two")
        peer.expect_next_re(wire_message(to, "m2", "two") + R)
        send_message(c, to, "m3", "three")
        peer.expect_next_re(wire_message(to, "m3", "three") + R)
        # <r/> asked from us: nothing comes our way on this stream
        peer.send("<r xmlns='%s'/>" % NS_SM)
        peer.expect_next("<a xmlns='%s' h='0'/>" % NS_SM)
        peer.send(POLICY)
        assert peer.is_closed(timeout=5)
        wait_for(lambda: "2 not acknowledged go over a new link"
                 in s.log_text() or "2 stanzas not acknowledged"
                 in s.log_text())
        peer2 = fake.accept()
        external_sm(peer2)
        # m1 was acknowledged: not again; m2 and m3 in their order
        peer2.expect_next_re(wire_message(to, "m2", "two") +
                             "(%s)?" % R + wire_message(to, "m3", "three") + R)
        peer2.send("<a xmlns='%s' h='2'/>" % NS_SM)
        # m4 unacknowledged on this link, then on a third: bounced
        send_message(c, to, "m4", "four")
        peer2.expect_next_re(wire_message(to, "m4", "four") + R)
        peer2.send(POLICY)
        peer3 = fake.accept()
        external_sm(peer3)
        peer3.expect_next_re(wire_message(to, "m4", "four") + R)
        peer3.send(POLICY)
        c.read_until(re.escape(bounce(to, "m4", "wait",
                                      "resource-constraint")))
        assert "bounced with <resource-constraint/>" in s.log_text()
        # the link after that works as ever
        send_message(c, to, "m5", "five")
        peer4 = fake.accept()
        external_sm(peer4)
        peer4.expect_next_re(wire_message(to, "m5", "five") + R)
        for p in (peer2, peer3):
            assert p.is_closed()


def test_shutdown_closes_links():
    """SIGTERM: a link that is up ends with </stream:stream> (no stream
    error: the remote server sees a clean close, as from Prosody)."""
    with remote(cert=ca().issue(REMOTE)) as (fake, o), \
            Server(workers=1, users=USERS, overrides=o) as s:
        c = login(s)
        send_message(c, "romeo@%s" % REMOTE, "m1", "hi")
        peer = fake.accept()
        external(peer)
        peer.expect_next_re(wire_message("romeo@%s" % REMOTE, "m1", "hi"))
        s.stop()
        peer.expect_next("</stream:stream>")
        assert peer.is_closed()


def test_owner_killed():
    """kill -9 of the worker that owns the link: the other worker's
    client stays online; a stanza it sends while the owner is dead waits
    in the owner's queue, and the respawned owner dials again and
    delivers it over a new link."""
    with remote(cert=ca().issue(REMOTE)) as (fake, o), \
            Server(workers=2, users=USERS, overrides=o) as s:
        first = login(s, resource="r0")
        send_message(first, "romeo@%s" % REMOTE, "k0", "before")
        peer = fake.accept()
        external(peer)
        peer.expect_next_re(wire_message("romeo@%s" % REMOTE, "k0", "before",
                                         frm="juliet@localhost/r0"))
        owner = int(re.search(r" w(\d+) debug: s2s localhost -> remote.test: "
                              "connecting", s.log_text()).group(1))
        other = None
        for i in range(1, 17):
            c = login(s, resource="r%d" % i)
            w = int(re.search(r" w(\d+) info: c\d+ \S+: bound "
                              "juliet@localhost/r%d\n" % i,
                              s.log_text()).group(1))
            if w != owner:
                other, res = c, "r%d" % i
                break
        assert other is not None, "no session on the other worker"
        pid = s.status()["workers"][owner]["pid"]
        os.kill(pid, signal.SIGKILL)
        send_message(other, "romeo@%s" % REMOTE, "k1", "after")
        assert peer.is_closed(10)
        wait_for(lambda: (s.status_ok() or {}).get("workers") and
                 s.status()["workers"][owner]["pid"] != pid,
                 what="owner respawned")
        peer2 = fake.accept(timeout=30)
        external(peer2)
        peer2.expect_next_re(wire_message("romeo@%s" % REMOTE, "k1", "after",
                                          frm="juliet@localhost/" + res))
        # the other worker's client was never disturbed
        other.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        other.read_until("<iq [^>]*id='p1'[^>]*type='result'[^>]*/>")


def test_shutdown_unavailable_to_remote():
    """SIGTERM: a remote contact (here one the user sent directed
    presence to, RFC 6121 4.6.3) gets <presence type='unavailable'/> from
    the user's full JID over the link before our </stream:stream>; a
    local user online at the same time gets nothing about her (she is
    disconnected by the same shutdown)."""
    with remote(cert=ca().issue(REMOTE)) as (fake, o), \
            Server(workers=1, users=USERS, overrides=o) as s:
        c = login(s)
        c.send("<presence/>")
        n = login(s, user="nurse")
        n.send("<presence/>")
        c.send("<presence to='romeo@%s'/>" % REMOTE)
        peer = fake.accept()
        external(peer)
        peer.expect_next("<presence to='romeo@%s' from='juliet@localhost/r'/>"
                         % REMOTE)
        # nurse's own presence comes back to her; then quiet
        n.read_until("<presence to='nurse@localhost' from='nurse@localhost/r'/>")
        os.kill(s.master_pid, signal.SIGTERM)
        got = n.read_until("<system-shutdown .*?</stream:stream>")
        assert "unavailable" not in got, got
        c.read_until("<system-shutdown ")
        for cl in (c, n):
            cl.send("</stream:stream>")
        peer.expect_next("<presence to='romeo@%s' from='juliet@localhost/r' "
                         "type='unavailable'/>" % REMOTE)
        peer.expect_next("</stream:stream>")
        peer.send("</stream:stream>")
        assert peer.is_closed()


def test_own_stanza_ids_stay_home():
    """XEP-0359/XEP-0313: the sender's archive stamps its own
    <stanza-id by='juliet@localhost'/> (the sent carbon carries it, for
    her other resource); the message leaves for the other server without
    it, while a stanza-id by another entity (not ours to remove, XEP-0359
    rule 1) goes on untouched."""
    with remote(cert=ca().issue(REMOTE)) as (fake, o), \
            Server(workers=1, users=USERS, overrides=o) as s:
        c = login(s)
        other = login(s, resource="o")
        other.send("<iq type='set' id='cb'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
        other.read_until("<iq [^>]*id='cb'[^>]*/>")
        c.send("<message to='romeo@%s' id='s1' type='chat'><body>hi</body>"
               "<stanza-id xmlns='urn:xmpp:sid:0' id='x1' by='romeo@%s'/>"
               "</message>" % (REMOTE, REMOTE))
        peer = fake.accept()
        external(peer)
        peer.expect_next("<message to='romeo@%s' id='s1' type='chat' "
                         "from='juliet@localhost/r'><body>hi</body>"
                         "<stanza-id xmlns='urn:xmpp:sid:0' id='x1' by='romeo@%s'/>"
                         "</message>" % (REMOTE, REMOTE))
        carbon = other.read_until("<message .*?</message></forwarded></sent></message>")
        assert re.search("<stanza-id xmlns='urn:xmpp:sid:0' id='[0-9]+' "
                         "by='juliet@localhost'/>", carbon), carbon


def test_unsolicited_sasl_success_is_no_authentication():
    """A peer (or whoever sits on the path) that answers our header with
    a <success/> we never asked for, skipping STARTTLS and the
    authentication: the link is not up; the stream ends with
    <undefined-condition/>, the waiting message comes back
    remote-server-not-found and never goes out in clear (RFC 7590,
    s2s.require_tls)."""
    with remote(cert=ca().issue(REMOTE)) as (fake, o), \
            Server(workers=1, users=USERS, overrides=o) as s:
        c = login(s)
        send_message(c, "romeo@%s" % REMOTE, "m1", "secret")
        peer = fake.accept()
        assert peer.read_header() == our_header()
        peer.send_header(REMOTE)
        peer.send("<success xmlns='%s'/>" % NS_SASL)
        peer.expect_next("<stream:error><undefined-condition "
                         "xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                         "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>"
                         "SASL &lt;success/&gt; without &lt;auth/&gt;</text>"
                         "</stream:error></stream:stream>")
        c.read_until(re.escape(bounce("romeo@%s" % REMOTE, "m1", "cancel",
                                      "remote-server-not-found")))
        # had the link come up, the message would follow a new header
        peer.send_header(REMOTE, features="<stream:features/>")
        assert peer.is_closed()
        assert b"secret" not in peer.received
        assert ": up (" not in s.log_text()


def test_unsolicited_sasl_failure_no_dialback_in_clear():
    """A SASL <failure/> we did not ask for before STARTTLS must not start
    dialback in clear (which a forged type='valid' would then complete):
    the stream ends, the message is bounced, nothing leaves in clear."""
    with remote(cert=ca().issue(REMOTE)) as (fake, o), \
            Server(workers=1, users=USERS, overrides=o) as s:
        c = login(s)
        send_message(c, "romeo@%s" % REMOTE, "m1", "secret")
        peer = fake.accept()
        assert peer.read_header() == our_header()
        peer.send_header(REMOTE)
        peer.send("<failure xmlns='%s'><not-authorized/></failure>" % NS_SASL)
        peer.expect_next("<stream:error><undefined-condition "
                         "xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                         "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>"
                         "SASL &lt;failure/&gt; without &lt;auth/&gt;</text>"
                         "</stream:error></stream:stream>")
        c.read_until(re.escape(bounce("romeo@%s" % REMOTE, "m1", "cancel",
                                      "remote-server-not-found")))
        peer.send("<db:result from='%s' to='localhost' type='valid'/>" % REMOTE)
        assert peer.is_closed()
        assert b"secret" not in peer.received
        assert b"db:result" not in peer.received
        assert ": up (" not in s.log_text()


def test_unsolicited_proceed():
    """<proceed/> when we sent no <starttls/> (here: on the TLS stream,
    after SASL EXTERNAL has started): the stream ends with
    <undefined-condition/> and the message is bounced, no second TLS
    handshake is started inside the first."""
    with remote(cert=ca().issue(REMOTE)) as (fake, o), \
            Server(workers=1, users=USERS, overrides=o) as s:
        c = login(s)
        send_message(c, "romeo@%s" % REMOTE, "m1", "hi")
        peer = fake.accept()
        tls_and_features(peer, features_auth(external=True, dialback=True))
        peer.expect_next("<auth xmlns='%s' mechanism='EXTERNAL'>%s</auth>"
                         % (NS_SASL, base64.b64encode(b"localhost").decode()))
        peer.send("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        peer.expect_next("<stream:error><undefined-condition "
                         "xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                         "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>"
                         "TLS &lt;proceed/&gt; without &lt;starttls/&gt;</text>"
                         "</stream:error></stream:stream>")
        c.read_until(re.escape(bounce("romeo@%s" % REMOTE, "m1", "cancel",
                                      "remote-server-not-found")))
        assert peer.is_closed()


def test_verifications_leave_links_for_stanzas():
    """Dialback requests on incoming streams make the owner open links to
    the domains they name (XEP-0220 2.3); an unauthenticated stream
    naming many domains whose servers say nothing must not take every
    outgoing link (s2s.max_links): links opened only to verify are held
    to half of it, the next request is answered at once with
    <resource-constraint/>, and a local user's message still gets its
    link."""
    silent = FakeServer()
    fake = FakeServer(cert=ca().issue(REMOTE))
    dns = DnsLab()
    dns.srv("_xmpp-server._tcp.%s" % REMOTE, "xmpp.%s" % REMOTE, fake.port)
    dns.host("xmpp.%s" % REMOTE, "127.0.0.1")
    names = ["a%d.test" % i for i in range(1, 5)]
    for d in names:
        dns.srv("_xmpp-server._tcp." + d, "xmpp.silent.test", silent.port)
    dns.host("xmpp.silent.test", "127.0.0.1")
    dns.start()
    o = {"s2s.ca_file": ca().cert, "s2s.dns_servers": dns.server,
         "s2s.max_links": "4"}
    try:
        with Server(workers=1, users=USERS, overrides=o, s2s=True) as s:
            c = login(s)
            inc = Incoming(s)
            inc.send("".join("<db:result from='%s' to='localhost'>k</db:result>"
                             % d for d in names))
            for d in names[2:]:
                got = inc.read_until("<db:result from='localhost' to='%s'.*?"
                                     "</db:result>" % re.escape(d))
                assert got == ("<db:result from='localhost' to='%s' type='error'>"
                               "<error type='wait'><resource-constraint xmlns='%s'/>"
                               "</error></db:result>" % (d, STANZAS)), got
            for d in names[:2]:
                wait_for(lambda: "localhost -> %s: connecting" % d in s.log_text(),
                         what="the link to " + d)
            send_message(c, "romeo@%s" % REMOTE, "m1", "hi")
            peer = fake.accept()
            external(peer)
            peer.expect_next_re(wire_message("romeo@%s" % REMOTE, "m1", "hi"))
    finally:
        silent.close()
        fake.close()
        dns.stop()



def test_certificate_eku():
    """The receiving server's certificate needs serverAuth in its
    extendedKeyUsage, or none (RFC 5280 4.2.1.12): serverAuth alone gives
    EXTERNAL; clientAuth alone (a client's certificate) is not valid for
    EXTERNAL and the link falls back to dialback, the reason in the log."""
    with remote(cert=ca().issue(REMOTE, eku="serverAuth")) as (fake, o), \
            Server(workers=1, users=USERS, overrides=o) as s:
        c = login(s)
        send_message(c, "romeo@%s" % REMOTE, "m1", "hi")
        peer = fake.accept()
        external(peer)
        peer.expect_next_re(wire_message("romeo@%s" % REMOTE, "m1", "hi"))
    with remote(cert=ca().issue(REMOTE, eku="clientAuth")) as (fake, o), \
            Server(workers=1, users=USERS, overrides=o, s2s=True) as s:
        c = login(s)
        send_message(c, "romeo@%s" % REMOTE, "m1", "hi")
        peer = fake.accept()
        tls_and_features(peer, features_auth(external=True, dialback=True))
        m = peer.read_until("<db:result from='localhost' to='remote.test'>"
                            "([0-9a-f]{64})</db:result>")
        assert m.start() == 0
        peer.send("<db:result from='%s' to='localhost' type='valid'/>" % REMOTE)
        peer.expect_next_re(wire_message("romeo@%s" % REMOTE, "m1", "hi"))
        assert ("certificate not valid for remote.test: its extendedKeyUsage "
                "has no serverAuth" in s.log_text()), s.log_text()[-2000:]
# ---- XEP-0220 multiplexing: one stream to REMOTE for our domains ----

SECOND = "second.test"
USERS2 = USERS + [("romeo@%s" % SECOND, "m0nt4gue")]
NS_STANZAS_DB = "urn:ietf:params:xml:ns:xmpp-stanzas"


def login_on(s, user, password, domain, resource="r"):
    """A client of our second host (stream to='domain')."""
    c = Client(s.port)
    c.open(to=domain)
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    c.read_until("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    c.wrap_tls()
    c.open(to=domain)
    assert c.auth_scram(user, password).startswith("<success")
    c.open(to=domain)
    c.bind(resource)
    return c


def external_as(peer, local, after=AFTER_SASL):
    """external() for the stream of another of our domains."""
    assert peer.read_header() == our_header(local)
    peer.send_header(REMOTE, to=local, features=STARTTLS_REQUIRED)
    peer.expect_next("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    peer.proceed_tls()
    assert peer.read_header() == our_header(local)
    peer.send_header(REMOTE, to=local,
                     features=features_auth(external=True, dialback=True))
    peer.expect_next("<auth xmlns='%s' mechanism='EXTERNAL'>%s</auth>"
                     % (NS_SASL, base64.b64encode(local.encode()).decode()))
    peer.send("<success xmlns='%s'/>" % NS_SASL)
    assert peer.read_header() == our_header(local)
    peer.send_header(REMOTE, to=local, features=after)


def second_result(peer):
    """The <db:result/> for (SECOND, REMOTE) on the stream of (localhost,
    REMOTE): its key is XEP-0185's for that stream's id (checked below
    against our authoritative side)."""
    m = peer.read_until("<db:result from='%s' to='%s'>([0-9a-f]{64})"
                        "</db:result>" % (SECOND, REMOTE))
    assert m.start() == 0, m.string
    return m.group(1).decode()


def own_link(fake, to, mid, body):
    """The second domain's link of its own: the fake remote accepts it,
    SASL EXTERNAL as SECOND, and the message mid from romeo@SECOND/r
    is the first thing on it.  Returns that stream."""
    peer2 = fake.accept()
    external_as(peer2, SECOND)
    peer2.expect_next_re(wire_message(to, mid, body,
                                      frm="romeo@%s/r" % SECOND))
    return peer2


def multiplexed_setup(s, fake):
    """juliet@localhost's message makes the link (EXTERNAL); then
    romeo@SECOND's message asks for (SECOND, REMOTE) on that same
    stream.  Returns the clients, the peer, and the key sent."""
    c = login(s)
    r = login_on(s, "romeo", "m0nt4gue", SECOND)
    to = "nurse@%s" % REMOTE
    send_message(c, to, "m1", "one")
    peer = fake.accept()
    external(peer)
    peer.expect_next_re(wire_message(to, "m1", "one"))
    send_message(r, to, "m2", "two")
    key = second_result(peer)
    return c, r, peer, key


def test_multiplexing_valid():
    """XEP-0220 "Multiplexing Sender Domains": a second of our domains to
    the same remote domain rides the stream that is up: <db:result/> on
    it, the stanza waits for type='valid', then goes on the same stream;
    both domains' stanzas keep using that one connection.  The key is
    the one our authoritative side confirms for that stream id, and
    refuses for another domain."""
    with remote(cert=ca().issue(REMOTE)) as (fake, o), \
            Server(workers=2, users=USERS2, s2s=True,
                   overrides=dict(o, hosts="localhost %s" % SECOND)) as s:
        c, r, peer, key = multiplexed_setup(s, fake)
        to = "nurse@%s" % REMOTE
        v = Incoming(s)
        v.send("<db:verify from='%s' to='%s' id='%s'>%s</db:verify>"
               % (REMOTE, SECOND, peer.stream_id, key))
        assert v.read_until("<db:verify [^>]*/>") == (
            "<db:verify from='%s' to='%s' id='%s' type='valid'/>"
            % (SECOND, REMOTE, peer.stream_id))
        v.send("<db:verify from='%s' to='localhost' id='%s'>%s</db:verify>"
               % (REMOTE, peer.stream_id, key))
        assert v.read_until("<db:verify [^>]*/>") == (
            "<db:verify from='localhost' to='%s' id='%s' type='invalid'/>"
            % (REMOTE, peer.stream_id))
        peer.send("<db:result from='%s' to='%s' type='valid'/>"
                  % (REMOTE, SECOND))
        peer.expect_next_re(wire_message(to, "m2", "two",
                                         frm="romeo@%s/r" % SECOND))
        send_message(c, to, "m3", "three")
        peer.expect_next_re(wire_message(to, "m3", "three"))
        send_message(r, to, "m4", "four")
        peer.expect_next_re(wire_message(to, "m4", "four",
                                         frm="romeo@%s/r" % SECOND))
        # an answer no pair waits for (again, or for a domain never
        # asked) authorizes nothing and leaves the stream as it is
        peer.send("<db:result from='%s' to='%s' type='valid'/>"
                  "<db:result from='%s' to='third.test' type='valid'/>"
                  % (REMOTE, SECOND, REMOTE))
        send_message(c, to, "m5", "five")
        peer.expect_next_re(wire_message(to, "m5", "five"))
        assert "<db:result type='valid'/> for third.test that no pair " \
            "waits for: ignored" in s.log_text()
        assert len(fake.peers) == 1, len(fake.peers)
        assert re.search(r"s2s %s -> %s \S+: up \(dialback on the stream "
                         r"of localhost -> %s\), 1 stanzas waiting"
                         % (SECOND, REMOTE, REMOTE), s.log_text())


def test_multiplexing_invalid_gets_own_link():
    """type='invalid' for the second domain: its stanza goes over a link
    of its own, the way it would without multiplexing; the first
    stream stays and carries its domain's stanzas."""
    with remote(cert=ca().issue(REMOTE)) as (fake, o), \
            Server(workers=1, users=USERS2,
                   overrides=dict(o, hosts="localhost %s" % SECOND)) as s:
        c, r, peer, _ = multiplexed_setup(s, fake)
        to = "nurse@%s" % REMOTE
        peer.send("<db:result from='%s' to='%s' type='invalid'/>"
                  % (REMOTE, SECOND))
        peer2 = own_link(fake, to, "m2", "two")
        send_message(c, to, "m3", "three")
        peer.expect_next_re(wire_message(to, "m3", "three"))
        send_message(r, to, "m4", "four")
        peer2.expect_next_re(wire_message(to, "m4", "four",
                                          frm="romeo@%s/r" % SECOND))
        assert "not carried on the stream of localhost -> remote.test " \
            "(the peer found our key invalid)" in s.log_text()


def test_multiplexing_error_then_own_link_fails_bounces():
    """type='error' (XEP-0220 dialback error) for the second domain:
    a link of its own; that one cannot be set up either (the peer
    closes it): the waiting message comes back to its sender with
    remote-server-not-found, exact XML; the first domain's stream is
    untouched."""
    with remote(cert=ca().issue(REMOTE)) as (fake, o), \
            Server(workers=1, users=USERS2,
                   overrides=dict(o, hosts="localhost %s" % SECOND)) as s:
        c, r, peer, _ = multiplexed_setup(s, fake)
        to = "nurse@%s" % REMOTE
        peer.send("<db:result from='%s' to='%s' type='error'><error "
                  "type='cancel'><item-not-found xmlns='%s'/></error>"
                  "</db:result>" % (REMOTE, SECOND, NS_STANZAS_DB))
        peer2 = fake.accept()
        assert peer2.read_header() == our_header(SECOND)
        peer2.close()
        r.read_until(re.escape(bounce(to, "m2", "cancel",
                                      "remote-server-not-found",
                                      frm="romeo@%s/r" % SECOND)))
        send_message(c, to, "m3", "three")
        peer.expect_next_re(wire_message(to, "m3", "three"))


def test_multiplexing_stream_killed_no_more():
    """A server that does not take a second domain on a stream and ends
    it with a stream error: what waited goes over new links, and that
    remote domain is not asked to multiplex again (one link each)."""
    with remote(cert=ca().issue(REMOTE)) as (fake, o), \
            Server(workers=1, users=USERS2,
                   overrides=dict(o, hosts="localhost %s" % SECOND)) as s:
        c, r, peer, _ = multiplexed_setup(s, fake)
        to = "nurse@%s" % REMOTE
        peer.send("<stream:error><invalid-from xmlns='urn:ietf:params:xml:"
                  "ns:xmpp-streams'/></stream:error></stream:stream>")
        assert peer.is_closed()
        peer2 = fake.accept()
        peer2.expect_next(our_header(SECOND))
        peer2.send_header(REMOTE, to=SECOND, features=STARTTLS_REQUIRED)
        peer2.expect_next("<starttls xmlns='urn:ietf:params:xml:ns:"
                          "xmpp-tls'/>")
        peer2.proceed_tls()
        assert peer2.read_header() == our_header(SECOND)
        peer2.send_header(REMOTE, to=SECOND, features=features_auth(
            external=True, dialback=True))
        peer2.expect_next("<auth xmlns='%s' mechanism='EXTERNAL'>%s</auth>"
                          % (NS_SASL, base64.b64encode(SECOND.encode())
                             .decode()))
        peer2.send("<success xmlns='%s'/>" % NS_SASL)
        assert peer2.read_header() == our_header(SECOND)
        peer2.send_header(REMOTE, to=SECOND, features=AFTER_SASL)
        peer2.expect_next_re(wire_message(to, "m2", "two",
                                          frm="romeo@%s/r" % SECOND))
        send_message(c, to, "m3", "three")
        peer3 = fake.accept()
        external(peer3)
        peer3.expect_next_re(wire_message(to, "m3", "three"))
        assert "no multiplexing to remote.test" in s.log_text()


def test_multiplexing_not_under_pkix():
    """s2s.auth = pkix: a second pair on a stream could only be
    authenticated by dialback (SASL is once per stream), which the
    policy forbids: the second domain gets a link of its own, with
    EXTERNAL, and no <db:result/> is sent on the first."""
    with remote(cert=ca().issue(REMOTE)) as (fake, o), \
            Server(workers=1, users=USERS2,
                   overrides=dict(o, hosts="localhost %s" % SECOND,
                                  **{"s2s.auth": "pkix"})) as s:
        c = login(s)
        r = login_on(s, "romeo", "m0nt4gue", SECOND)
        to = "nurse@%s" % REMOTE
        send_message(c, to, "m1", "one")
        peer = fake.accept()
        external(peer)
        peer.expect_next_re(wire_message(to, "m1", "one"))
        send_message(r, to, "m2", "two")
        own_link(fake, to, "m2", "two")
        send_message(c, to, "m3", "three")
        # the next thing on the first stream is m3: no <db:result/>
        peer.expect_next_re(wire_message(to, "m3", "three"))


def test_multiplexing_waits_for_the_link_being_set_up():
    """The second domain's message comes while the first domain's link
    is still being set up: it waits for that link, and once the link is
    up its <db:result/> goes on the same stream (one connection)."""
    with remote(cert=ca().issue(REMOTE)) as (fake, o), \
            Server(workers=1, users=USERS2,
                   overrides=dict(o, hosts="localhost %s" % SECOND)) as s:
        c = login(s)
        r = login_on(s, "romeo", "m0nt4gue", SECOND)
        to = "nurse@%s" % REMOTE
        send_message(c, to, "m1", "one")
        peer = fake.accept()
        send_message(r, to, "m2", "two")
        external(peer)
        peer.expect_next_re(wire_message(to, "m1", "one"))
        second_result(peer)
        peer.send("<db:result from='%s' to='%s' type='valid'/>"
                  % (REMOTE, SECOND))
        peer.expect_next_re(wire_message(to, "m2", "two",
                                         frm="romeo@%s/r" % SECOND))
        assert len(fake.peers) == 1, len(fake.peers)


def test_multiplexing_carrier_fails_setup():
    """The link the second domain waits for cannot be set up (the peer
    closes it): the first domain's message is bounced, the second's goes
    over a link of its own, and when that one fails too it is bounced
    with remote-server-not-found: exact XML to both senders."""
    with remote(cert=ca().issue(REMOTE)) as (fake, o), \
            Server(workers=1, users=USERS2,
                   overrides=dict(o, hosts="localhost %s" % SECOND)) as s:
        c = login(s)
        r = login_on(s, "romeo", "m0nt4gue", SECOND)
        to = "nurse@%s" % REMOTE
        send_message(c, to, "m1", "one")
        peer = fake.accept()
        send_message(r, to, "m2", "two")
        assert peer.read_header() == our_header()
        wait_for(lambda: "s2s localhost -> remote.test: connected" in
                 s.log_text(), what="the first link connected")
        peer.close()
        c.read_until(re.escape(bounce(to, "m1", "cancel",
                                      "remote-server-not-found")))
        peer2 = fake.accept()
        assert peer2.read_header() == our_header(SECOND)
        peer2.close()
        r.read_until(re.escape(bounce(to, "m2", "cancel",
                                      "remote-server-not-found",
                                      frm="romeo@%s/r" % SECOND)))


def test_multiplexed_stream_dies_each_stanza_by_its_domain():
    """A stream carrying two of our domains (XEP-0198 on) ends with the
    peer's <policy-violation/>: what it had not acknowledged, of both
    domains, goes once more, each stanza by its own sender's domain --
    the first one given back (romeo's) makes a link from SECOND, and
    juliet's rides it (<db:result from='localhost'/> there)."""
    with remote(cert=ca().issue(REMOTE)) as (fake, o), \
            Server(workers=1, users=USERS2,
                   overrides=dict(o, hosts="localhost %s" % SECOND)) as s:
        c = login(s)
        r = login_on(s, "romeo", "m0nt4gue", SECOND)
        to = "nurse@%s" % REMOTE
        send_message(c, to, "m1", "one")
        peer = fake.accept()
        external_sm(peer)
        peer.expect_next_re(wire_message(to, "m1", "one") + R)
        peer.send("<a xmlns='%s' h='1'/>" % NS_SM)
        send_message(r, to, "m2", "two")
        second_result(peer)
        peer.send("<db:result from='%s' to='%s' type='valid'/>"
                  % (REMOTE, SECOND))
        peer.expect_next_re(wire_message(to, "m2", "two",
                                         frm="romeo@%s/r" % SECOND) + R)
        send_message(c, to, "m3", "three")
        peer.expect_next_re(wire_message(to, "m3", "three") + R)
        peer.send(POLICY)
        assert peer.is_closed()
        peer2 = own_link(fake, to, "m2", "two")
        m = peer2.read_until("<db:result from='localhost' to='%s'>"
                             "([0-9a-f]{64})</db:result>" % REMOTE)
        assert m.start() == 0, m.string
        peer2.send("<db:result from='%s' to='localhost' type='valid'/>"
                   % REMOTE)
        peer2.expect_next_re(wire_message(to, "m3", "three"))
        assert len(fake.peers) == 2


def test_ack_timeout():
    """XEP-0198 on an outgoing link whose peer never answers our <r/>:
    after s2s.ack_timeout the link is taken for dead and closed; the
    unacknowledged message goes once more over a new link; when that
    one is silent too, it comes back to its sender with
    remote-server-timeout, exact XML."""
    with remote(cert=ca().issue(REMOTE),
                settings={"s2s.ack_timeout": "1s"}) as (fake, o), \
            Server(workers=1, users=USERS, overrides=o) as s:
        c = login(s)
        to = "romeo@%s" % REMOTE
        send_message(c, to, "m1", "one")
        peer = fake.accept()
        external_sm(peer)
        peer.expect_next_re(wire_message(to, "m1", "one") + R)
        assert peer.is_closed(timeout=10)
        peer2 = fake.accept()
        external_sm(peer2)
        peer2.expect_next_re(wire_message(to, "m1", "one") + R)
        assert peer2.is_closed(timeout=10)
        c.read_until(re.escape(bounce(to, "m1", "wait",
                                      "remote-server-timeout")))
        assert re.search(r"s2s localhost -> remote.test \S+: no XEP-0198 "
                         r"<a/> within s2s.ack_timeout", s.log_text())


def test_ack_answered_in_time_keeps_link():
    """The same short s2s.ack_timeout with a peer that answers: the link
    stays and carries the next message (the timeout is per <r/>)."""
    with remote(cert=ca().issue(REMOTE),
                settings={"s2s.ack_timeout": "1s"}) as (fake, o), \
            Server(workers=1, users=USERS, overrides=o) as s:
        c = login(s)
        to = "romeo@%s" % REMOTE
        send_message(c, to, "m1", "one")
        peer = fake.accept()
        external_sm(peer)
        peer.expect_next_re(wire_message(to, "m1", "one") + R)
        peer.send("<a xmlns='%s' h='1'/>" % NS_SM)
        time.sleep(2.5)     # more than s2s.ack_timeout, nothing asked
        send_message(c, to, "m2", "two")
        peer.expect_next_re(wire_message(to, "m2", "two") + R)
        peer.send("<a xmlns='%s' h='2'/>" % NS_SM)
        assert len(fake.peers) == 1
        assert "s2s.ack_timeout" not in s.log_text()


def multiplexed_stream_dropped(drop):
    """The peer drops the shared stream while our <db:result/> for the
    second domain waits (drop(peer)): the second domain's stanza goes
    over a link of its own, and the remote is not asked to multiplex
    again: the first domain's next stanza takes a new connection of its
    own, no <db:result/> for it on the second domain's stream (which
    offers dialback)."""
    with remote(cert=ca().issue(REMOTE)) as (fake, o), \
            Server(workers=1, users=USERS2,
                   overrides=dict(o, hosts="localhost %s" % SECOND)) as s:
        c, r, peer, _ = multiplexed_setup(s, fake)
        to = "nurse@%s" % REMOTE
        drop(peer)
        peer2 = own_link(fake, to, "m2", "two")
        send_message(c, to, "m3", "three")
        peer3 = fake.accept()
        external(peer3)
        peer3.expect_next_re(wire_message(to, "m3", "three"))
        send_message(r, to, "m4", "four")
        peer2.expect_next_re(wire_message(to, "m4", "four",
                                          frm="romeo@%s/r" % SECOND))
        assert len(fake.peers) == 3, len(fake.peers)
        assert "no multiplexing to remote.test" in s.log_text()


def test_multiplexing_peer_closes_no_more():
    """A bare </stream:stream> for our multiplexed <db:result/> (no
    stream error): as with an error, not asked to multiplex again."""
    def drop(peer):
        peer.send("</stream:stream>")
        assert peer.is_closed()
    multiplexed_stream_dropped(drop)


def test_multiplexing_tcp_close_no_more():
    """The connection closed for our multiplexed <db:result/> (no
    stream error, no closing tag): not asked to multiplex again."""
    multiplexed_stream_dropped(lambda peer: peer.close())


def test_multiplexing_needs_dialback_on_the_last_features():
    """A peer that offers dialback before TLS but not on the stream
    restarted after SASL EXTERNAL: the last features count, so no
    <db:result/> for the second domain on that stream; the second domain
    gets a link of its own, the first stream carries only its own."""
    before_tls = ("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:"
                  "xmpp-tls'><required/></starttls><dialback xmlns='urn:"
                  "xmpp:features:dialback'><errors/></dialback>"
                  "</stream:features>")
    with remote(cert=ca().issue(REMOTE)) as (fake, o), \
            Server(workers=1, users=USERS2,
                   overrides=dict(o, hosts="localhost %s" % SECOND)) as s:
        c = login(s)
        r = login_on(s, "romeo", "m0nt4gue", SECOND)
        to = "nurse@%s" % REMOTE
        send_message(c, to, "m1", "one")
        peer = fake.accept()
        assert peer.read_header() == our_header()
        peer.send_header(REMOTE, features=before_tls)
        peer.expect_next("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        peer.proceed_tls()
        assert peer.read_header() == our_header()
        peer.send_header(REMOTE, features=features_auth(external=True,
                                                        dialback=False))
        peer.expect_next("<auth xmlns='%s' mechanism='EXTERNAL'>%s</auth>"
                         % (NS_SASL, base64.b64encode(b"localhost").decode()))
        peer.send("<success xmlns='%s'/>" % NS_SASL)
        assert peer.read_header() == our_header()
        peer.send_header(REMOTE, features="<stream:features/>")
        peer.expect_next_re(wire_message(to, "m1", "one"))
        send_message(r, to, "m2", "two")
        own_link(fake, to, "m2", "two")
        # nothing was asked on the first stream: its next bytes are m3
        send_message(c, to, "m3", "three")
        peer.expect_next_re(wire_message(to, "m3", "three"))


def test_multiplexed_pair_deadline_from_its_request():
    """s2s.link_timeout for a multiplexed pair counts from its
    <db:result/>, not from when the pair was made: the second domain's
    stanza comes while the first link is being set up, the peer takes 3
    of the 4 seconds to send its features, then answers the second
    <db:result/> 2.5 s later (5.5 s after the pair was made, 2.5 s
    after it was asked): delivered, no remote-server-timeout bounce."""
    with remote(cert=ca().issue(REMOTE),
                settings={"s2s.link_timeout": "4s"}) as (fake, o), \
            Server(workers=1, users=USERS2,
                   overrides=dict(o, hosts="localhost %s" % SECOND)) as s:
        c = login(s)
        r = login_on(s, "romeo", "m0nt4gue", SECOND)
        to = "nurse@%s" % REMOTE
        send_message(c, to, "m1", "one")
        peer = fake.accept()
        send_message(r, to, "m2", "two")
        time.sleep(3)
        external(peer)
        peer.expect_next_re(wire_message(to, "m1", "one"))
        second_result(peer)
        time.sleep(2.5)
        peer.send("<db:result from='%s' to='%s' type='valid'/>"
                  % (REMOTE, SECOND))
        peer.expect_next_re(wire_message(to, "m2", "two",
                                         frm="romeo@%s/r" % SECOND))
        assert "remote-server-timeout" not in s.log_text() and \
            "not set up in time" not in s.log_text(), s.log_text()[-2000:]
        assert len(fake.peers) == 1, len(fake.peers)


if __name__ == "__main__":
    run_tests([test_external_and_link_reuse,
               test_dialback_when_certificate_not_trusted,
               test_verify_for_the_incoming_side,
               test_dialback_invalid_bounces,
               test_pkix_policy_refuses_dialback,
               test_no_starttls_offered,
               test_remote_down,
               test_nxdomain,
               test_black_hole_times_out,
               test_pending_queue_bound,
               test_idle_link_closed_and_reopened,
               test_other_workers_use_the_owner,
               test_owner_killed,
               test_shutdown_closes_links,
               test_shutdown_unavailable_to_remote,
               test_own_stanza_ids_stay_home,
               test_peer_closes_then_new_link,
               test_failed_write_to_a_reset_link_in_its_own_send,
               test_direct_tls,
               test_tls_failure_and_stream_error,
               test_unsolicited_sasl_success_is_no_authentication,
               test_unsolicited_sasl_failure_no_dialback_in_clear,
               test_unsolicited_proceed,
               test_verifications_leave_links_for_stanzas,
               test_stream_management_resend,
               test_certificate_eku,
               test_multiplexing_valid,
               test_multiplexing_invalid_gets_own_link,
               test_multiplexing_error_then_own_link_fails_bounces,
               test_multiplexing_stream_killed_no_more,
               test_multiplexing_not_under_pkix,
               test_multiplexing_waits_for_the_link_being_set_up,
               test_multiplexing_carrier_fails_setup,
               test_multiplexed_stream_dies_each_stanza_by_its_domain,
               test_ack_timeout,
               test_ack_answered_in_time_keeps_link,
               test_multiplexing_peer_closes_no_more,
               test_multiplexing_tcp_close_no_more,
               test_multiplexing_needs_dialback_on_the_last_features,
               test_multiplexed_pair_deadline_from_its_request])

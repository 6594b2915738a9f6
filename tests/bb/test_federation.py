"""xmppd federating with servers we did not write: Prosody 0.12 and
ejabberd 23.01 (Debian's), in the federation lab (tests/bb/fedlab.py;
tests/bb/test_fedlab.py shows the lab right with the anchors alone).

For each anchor, both ways: a user on xmppd and a user on the anchor
(slixmpp clients) subscribe to each other (RFC 6121: request, approval
both ways, roster pushes ending at 'both', the roster stored on each
server), see each other online and exchange messages both ways --
with valid certificates from the lab CA (SASL EXTERNAL, XEP-0178) and
with self-signed ones (Server Dialback, XEP-0220).  The anchors' own
logs say which authentication each link used.

Then, with each anchor, what RFC 6121 promises across servers: presence
broadcast (available, unavailable) both ways, probes at login both ways,
a message to an offline xmppd user stored and delivered at login, and
XEP-0191 blocking of the remote user (<service-unavailable/> back to
him, nothing to the blocker).

And what a user notices when things go wrong: the remote server is down
(a <remote-server-not-found/> error for the message), silent (accepts
and says nothing: <remote-server-timeout/> after s2s.link_timeout), a
remote server forges a `from` of another domain (<invalid-from/>, the
stanza reaches no one), the worker holding the outgoing link is killed
with SIGKILL (workers=2: the other worker's user stays connected, what
she sends meanwhile is delivered after the respawn or bounced, never
lost, and the link comes back).
Needs XMPPD_TEST_PGCONN and root (the anchors run as their own users).
"""
import asyncio
import os
import re
import signal
import socket
import ssl
import sys
import xml.etree.ElementTree as ET

from cryptography.x509.oid import ExtendedKeyUsageOID

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Client, run_tests, stream_error_re,  # noqa: E402
                     wait_for)
from fakeserver import FakeServer, features_auth  # noqa: E402
from fedlab import (Lab, ProsodyServer, EjabberdServer, User,  # noqa: E402
                    befriend, converse, run_async)

TEXT = "Federated <&> 'quotes' \u00fcn\u00efc\u00f6d\u00e9 \u2665"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_STREAMS = "http://etherx.jabber.org/streams"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
STARTTLS_FEATURES = ("<stream:features><starttls xmlns='%s'><required/>"
                     "</starttls></stream:features>" % NS_TLS)
DIALBACK_FEATURE = ("<dialback xmlns='urn:xmpp:features:dialback'><errors/>"
                    "</dialback>")
EXTERNAL_FEATURE = ("<mechanisms xmlns='%s'><mechanism>EXTERNAL</mechanism>"
                    "</mechanisms>" % NS_SASL)


def federate(anchor_cls, secure, xmppd_cert=None, anchor_eku=None):
    """carol@xmppd.test and dave@ANCHOR befriend and talk, carol first,
    then dave first; returns the anchor's log.  anchor_eku: the
    extendedKeyUsage of the anchor's certificate (default serverAuth and
    clientAuth)."""
    with Lab() as lab:
        x = lab.xmppd("xmppd.test", secure=secure, cert_kind=xmppd_cert,
                      users=[("carol@xmppd.test", "c4rol-pw")])
        if anchor_eku is not None:
            lab.eku = anchor_eku
        name = "%s.test" % anchor_cls.kind
        a = anchor_cls(lab, name, secure=secure, users=[("dave", "d4ve-pw")])
        lab.start()

        async def scenario():
            c = await User(x, "carol", "c4rol-pw").online()
            d = await User(a, "dave", "d4ve-pw").online()
            try:
                await befriend(c, d)
                await converse(c, d, TEXT)
                await converse(d, c, "from %s: %s" % (name, TEXT))
            finally:
                await c.offline()
                await d.offline()
        run_async(scenario())
        return a.log_text(), x.log_text()


def ejabberd_accepted(elog, mech):
    return [re.search(r"Accepted %s s2s %s authentication %s -> %s"
                      % (d, mech, re.escape(f), re.escape(t)), elog)
            for d, f, t in (("inbound", "xmppd.test", "ejabberd.test"),
                            ("outbound", "ejabberd.test", "xmppd.test"))]


def test_prosody_external():
    """xmppd <-> Prosody, valid certificates (xmppd's with XmppAddr too):
    Prosody validates xmppd's certificate on both streams, no dialback."""
    plog, xlog = federate(ProsodyServer, True, xmppd_cert="full")
    assert plog.count("certificate identity validation result: valid") >= 2, plog[-3000:]
    # XEP-0198 acks on s2s both ways (Prosody's mod_smacks): our link
    # enables it, Prosody's link to us enables it on our incoming stream
    assert re.search(r"s2s xmppd\.test -> prosody\.test \S+: up \(EXTERNAL, "
                     r"TLS, XEP-0198\)", xlog), xlog[-3000:]
    assert plog.count("Enabling stream management") >= 2, plog[-3000:]
    assert "falling back to dialback" not in plog, plog[-3000:]
    assert "Incoming s2s connection xmppd.test->prosody.test complete" in plog, plog[-3000:]
    assert "Outgoing s2s connection prosody.test->xmppd.test complete" in plog, plog[-3000:]


def test_ejabberd_external():
    """xmppd <-> ejabberd, valid certificates: EXTERNAL both ways."""
    elog, _ = federate(EjabberdServer, True)
    assert all(ejabberd_accepted(elog, "EXTERNAL")), elog[-3000:]


def test_serverauth_only_certificates():
    """Prosody and ejabberd with a certificate whose extendedKeyUsage is
    serverAuth alone, what Let's Encrypt issues since 2025: their
    streams to xmppd still authenticate by SASL EXTERNAL (an initiating
    server presents its server certificate; OpenSSL's "sslclient"
    purpose would refuse it)."""
    plog, xlog = federate(ProsodyServer, True, xmppd_cert="full",
                          anchor_eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    assert ("s2s stream from prosody.test to xmppd.test authenticated "
            "(SASL EXTERNAL)" in xlog), xlog[-3000:]
    assert "Outgoing s2s connection prosody.test->xmppd.test complete" in plog, plog[-3000:]
    assert "falling back to dialback" not in plog, plog[-3000:]
    elog, xlog = federate(EjabberdServer, True,
                          anchor_eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    assert ("s2s stream from ejabberd.test to xmppd.test authenticated "
            "(SASL EXTERNAL)" in xlog), xlog[-3000:]
    assert all(ejabberd_accepted(elog, "EXTERNAL")), elog[-3000:]


def test_prosody_dialback():
    """xmppd <-> Prosody, self-signed certificates: dialback both ways,
    Prosody verifying xmppd's key and xmppd Prosody's.  Prosody 0.12
    never "falls back" here (no one offers it EXTERNAL for a certificate
    that does not validate): its log shows the dialback itself."""
    plog, xlog = federate(ProsodyServer, False)
    # Prosody -> xmppd: xmppd's certificate is refused, Prosody sends a
    # dialback key and xmppd (asking Prosody's authoritative side over its
    # own link) answers valid
    assert "certificate chain validation result: invalid" in plog, plog[-3000:]
    assert "Initiating dialback..." in plog, plog[-3000:]
    assert "sent dialback key on outgoing s2s stream" in plog, plog[-3000:]
    assert ("connection prosody.test->xmppd.test is now authenticated for "
            "xmppd.test" in plog), plog[-3000:]
    assert ("s2s stream authorized for prosody.test -> xmppd.test (dialback)"
            in xlog), xlog[-3000:]
    # xmppd -> Prosody: Prosody verifies xmppd's key as the receiving server
    assert "verified dialback key... it is valid" in plog, plog[-3000:]
    assert "Incoming s2s connection xmppd.test->prosody.test complete" in plog, plog[-3000:]
    assert re.search(r"s2s xmppd\.test -> prosody\.test \S+: up \(dialback, TLS\)",
                     xlog), xlog[-3000:]
    assert "EXTERNAL" not in xlog, xlog[-3000:]


def test_ejabberd_dialback():
    """xmppd <-> ejabberd, self-signed certificates: dialback both ways."""
    elog, _ = federate(EjabberdServer, False)
    assert all(ejabberd_accepted(elog, "dialback")), elog[-3000:]


async def expect_error(u, to, condition, timeout=60):
    """u sends a chat message to `to`; it comes back as an error of
    `condition` (RFC 6120 8.3), from `to`, with the id sent."""
    got = asyncio.Queue()
    u.add_event_handler("message_error", got.put_nowait)
    m = u.make_message(mto=to, mbody="anyone there?", mtype="chat")
    m["id"] = "probe-1"
    m.send()
    err = await asyncio.wait_for(got.get(), timeout)
    assert err["id"] == "probe-1", err
    assert err["from"].bare == to, err
    assert err["error"]["condition"] == condition, err
    return err


def test_remote_down():
    """down.test has SRV and A records but nothing listens there: the
    message bounces with <remote-server-not-found/>."""
    with Lab() as lab:
        x = lab.xmppd("xmppd.test", users=[("carol@xmppd.test", "c4rol-pw")])
        # a port that was free a moment ago on an address nobody uses
        lab.record("down.test", "%s.250" % lab.net, 1)
        lab.start()

        async def scenario():
            c = await User(x, "carol", "c4rol-pw").online()
            try:
                await expect_error(c, "eve@down.test", "remote-server-not-found")
                assert re.search(r"s2s xmppd\.test -> down\.test(?: \S+)?: .*: 1 "
                                 r"stanzas bounced with <remote-server-not-found/>",
                                 x.log_text()), x.log_text()[-3000:]
            finally:
                await c.offline()
        run_async(scenario())


def test_remote_silent():
    """slow.test accepts TCP connections and never says a word: the
    message bounces with <remote-server-timeout/> (after the setup
    timeout, set short here), and the next one too."""
    with Lab() as lab:
        sink = socket.socket()
        sink.bind(("%s.251" % lab.net, 0))
        sink.listen(16)           # accepted by the kernel, never read
        try:
            x = lab.xmppd("xmppd.test",
                          users=[("carol@xmppd.test", "c4rol-pw")],
                          overrides={"s2s.link_timeout": "3s"})
            lab.record("slow.test", "%s.251" % lab.net, sink.getsockname()[1])
            lab.start()

            async def scenario():
                c = await User(x, "carol", "c4rol-pw").online()
                try:
                    await expect_error(c, "eve@slow.test", "remote-server-timeout")
                    # the whole-setup deadline did it (not a connect timeout:
                    # the TCP connection was accepted)
                    assert re.search(
                        r"s2s xmppd\.test -> slow\.test(?: \S+)?: not set up in time "
                        r"\(s2s\.link_timeout\): 1 stanzas bounced with "
                        r"<remote-server-timeout/>", x.log_text()), x.log_text()[-3000:]
                finally:
                    await c.offline()
            run_async(scenario())
        finally:
            sink.close()


class RemotePeer(Client):
    """A server of the test's own for `domain`, on an incoming s2s stream
    to lab xmppd x: it says what the test tells it to, byte by byte."""

    def __init__(self, x, domain):
        Client.__init__(self, x.s2s_port, host=x.addr, timeout=15)
        self.x = x
        self.domain = domain
        self.id = None

    def open(self):
        """Our header, xmppd's (exact), its features (returned)."""
        self.send("<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
                  "xmlns:stream='%s' xmlns:db='jabber:server:dialback' "
                  "from='%s' to='%s' version='1.0'>"
                  % (NS_STREAMS, self.domain, self.x.domain))
        hdr = self.read_until(
            r"<\?xml version='1.0'\?><stream:stream xmlns='jabber:server' "
            r"xmlns:stream='http://etherx.jabber.org/streams' "
            r"xmlns:db='jabber:server:dialback' id='[0-9a-f]{24}' "
            r"from='%s' to='%s' version='1.0'>"
            % (re.escape(self.x.domain), re.escape(self.domain)))
        self.id = re.search(r"id='([0-9a-f]+)'", hdr).group(1)
        return self.read_until("<stream:features>.*?</stream:features>")

    def starttls(self, cert=None):
        """STARTTLS (showing cert if any); the features after it."""
        assert self.open() == STARTTLS_FEATURES
        self.send("<starttls xmlns='%s'/>" % NS_TLS)
        self.read_until("<proceed xmlns='%s'/>" % NS_TLS)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.x.lab.ca_file)
        ctx.load_verify_locations(self.x.cert_file)
        if cert:
            ctx.load_cert_chain(*cert)
        self.sock.settimeout(self.timeout)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=self.x.domain)
        self.buf = b""
        return self.open()

    def external(self, cert):
        """STARTTLS with a certificate of the lab CA, SASL EXTERNAL
        (XEP-0178), the restarted stream."""
        feats = self.starttls(cert)
        assert EXTERNAL_FEATURE in feats, feats
        self.send("<auth xmlns='%s' mechanism='EXTERNAL'>=</auth>" % NS_SASL)
        got = self.read_until("<success xmlns='%s'/>|<failure .*?</failure>"
                              % NS_SASL)
        assert got == "<success xmlns='%s'/>" % NS_SASL, got
        feats = self.open()
        # XEP-0198 offered once authenticated (acks only)
        assert feats == ("<stream:features><sm xmlns='urn:xmpp:sm:3'/>"
                         "</stream:features>"), feats

    def dialback(self, fake):
        """XEP-0220 as the originating server, and as our own
        authoritative server on fake (a FakeServer for our domain that
        xmppd finds through the lab's DNS): xmppd asks it <db:verify/>
        with this stream's id, it says valid, xmppd says valid here."""
        feats = self.starttls()
        assert DIALBACK_FEATURE in feats and "EXTERNAL" not in feats, feats
        self.send("<db:result from='%s' to='%s'>k3y-of-%s</db:result>"
                  % (self.domain, self.x.domain, self.domain))
        auth = fake.accept(timeout=30)
        auth.read_header()
        auth.send_header(self.domain, features=STARTTLS_FEATURES)
        auth.expect_next("<starttls xmlns='%s'/>" % NS_TLS)
        auth.proceed_tls()
        auth.read_header()
        auth.send_header(self.domain, features=features_auth(
            external=False, dialback=True))
        auth.read_until(re.escape(
            "<db:verify from='%s' to='%s' id='%s'>k3y-of-%s</db:verify>"
            % (self.x.domain, self.domain, self.id, self.domain)))
        auth.send("<db:verify from='%s' to='%s' id='%s' type='valid'/>"
                  % (self.domain, self.x.domain, self.id))
        got = self.read_until("<db:result [^>]*/>")
        assert got == ("<db:result from='%s' to='%s' type='valid'/>"
                       % (self.x.domain, self.domain)), got
        return auth


def forged_from(how):
    """evil.test authenticates (how: "external" with a valid certificate
    of its own, "dialback" with our fake authoritative server for it),
    says one true thing, then sends a message from someone@prosody.test
    to an xmppd user: the stream ends with <invalid-from/> (RFC 6120
    4.9.3.9) and the user gets nothing of it (the next message carol
    gets is the real one from Prosody's user)."""
    with Lab() as lab:
        o = {"s2s.dialback_domains": "evil.test"}   # xmppd is pkix otherwise
        x = lab.xmppd("xmppd.test", users=[("carol@xmppd.test", "c4rol-pw")],
                      overrides=o)
        p = ProsodyServer(lab, "prosody.test", users=[("dave", "d4ve-pw")])
        fake = None
        if how == "dialback":
            fake = FakeServer(addr="%s.252" % lab.net,
                              cert=lab.cert("evil.test", "self"), timeout=30)
            lab.record("evil.test", fake.addr, fake.port)
        lab.start()

        async def scenario():
            c = await User(x, "carol", "c4rol-pw").online()
            d = await User(p, "dave", "d4ve-pw").online()
            e = RemotePeer(x, "evil.test")
            try:
                if how == "external":
                    await asyncio.to_thread(e.external,
                                            lab.cert("evil.test", "srv"))
                else:
                    await asyncio.to_thread(e.dialback, fake)
                e.send("<message from='mallory@evil.test/x' "
                       "to='carol@xmppd.test/lab' type='chat' id='e1'>"
                       "<body>from evil.test itself</body></message>")
                m = await c.next_message(30)
                assert (str(m["from"]), m["id"], m["body"]) == (
                    "mallory@evil.test/x", "e1", "from evil.test itself"), m
                e.send("<message from='someone@prosody.test/x' "
                       "to='carol@xmppd.test/lab' type='chat' id='e2'>"
                       "<body>forged</body></message>")
                got = await asyncio.to_thread(e.read_all_until_close)
                assert re.fullmatch(stream_error_re("invalid-from"), got), got
                assert re.search(r"stanza from prosody\.test: the stream is "
                                 r"not authenticated for that domain\n",
                                 x.log_text()), x.log_text()[-3000:]
                d.send_message(mto="carol@xmppd.test/lab", mbody="the real one",
                               mtype="chat")
                m = await c.next_message(30)
                assert (str(m["from"]), m["body"]) == (
                    "dave@prosody.test/lab", "the real one"), m
            finally:
                e.close()
                await c.offline()
                await d.offline()
        try:
            run_async(scenario())
        finally:
            if fake is not None:
                fake.close()


def test_forged_from_external():
    forged_from("external")


def test_forged_from_dialback():
    forged_from("dialback")


def bound_worker(x, full):
    """The worker that bound `full` (xmppd's log)."""
    m = re.search(r" w(\d+) info: c\d+ \S+: bound %s\n" % re.escape(full),
                  x.log_text())
    return int(m.group(1)) if m else None


def test_owner_killed():
    """workers=2: kill -9 of the worker that holds the outgoing link to
    Prosody while carol, on the other worker, talks to dave there: her
    client stays connected, what she sends while the owner is dead
    reaches dave after the respawn (or comes back to her as an error,
    never lost silently), dave's answers reach her, and the link to
    prosody.test comes back."""
    with Lab() as lab:
        x = lab.xmppd("xmppd.test", workers=2,
                      users=[("carol@xmppd.test", "c4rol-pw")])
        p = ProsodyServer(lab, "prosody.test", users=[("dave", "d4ve-pw")])
        lab.start()
        D = "dave@prosody.test"

        async def scenario():
            d = await User(p, "dave", "d4ve-pw").online()
            users = [d]
            try:
                first = await User(x, "carol", "c4rol-pw", resource="r0").online()
                users.append(first)
                first.send_message(mto=D, mbody="before", mtype="chat")
                m = await d.next_message(30)
                assert m["body"] == "before", m
                owner = int(re.search(
                    r" w(\d+) debug: s2s xmppd\.test -> prosody\.test: "
                    r"connecting", x.log_text()).group(1))
                other = None
                for i in range(1, 17):
                    u = await User(x, "carol", "c4rol-pw",
                                   resource="r%d" % i).online()
                    users.append(u)
                    w = bound_worker(x, "carol@xmppd.test/r%d" % i)
                    assert w is not None, x.log_text()[-2000:]
                    if w != owner:
                        other = u
                        break
                assert other is not None, "no session on the other worker"
                gone = []
                other.add_event_handler("disconnected", gone.append)
                errors = asyncio.Queue()
                other.add_event_handler("message_error", errors.put_nowait)
                pid = x.status()["workers"][owner]["pid"]
                os.kill(pid, signal.SIGKILL)
                sent = ["while the owner is dead %d" % i for i in range(3)]
                for body in sent:
                    other.send_message(mto=D, mbody=body, mtype="chat")
                await asyncio.to_thread(
                    wait_for, lambda: (x.status_ok() or {}).get("workers") and
                    x.status()["workers"][owner]["pid"] != pid,
                    what="owner respawned")
                # each arrives at dave or comes back to carol as an error
                got, bounced = [], []
                while len(got) + len(bounced) < len(sent):
                    t1 = asyncio.ensure_future(d.next_message(90))
                    t2 = asyncio.ensure_future(errors.get())
                    done, pending = await asyncio.wait(
                        {t1, t2}, timeout=90,
                        return_when=asyncio.FIRST_COMPLETED)
                    for t in pending:
                        t.cancel()
                    assert done, "lost: %r (got %r, bounced %r)" % (
                        sent, got, bounced)
                    for t in done:
                        mm = t.result()
                        (got if t is t1 else bounced).append(mm["body"])
                assert sorted(got + bounced) == sorted(sent), (got, bounced)
                assert got == [b for b in sent if b in got], got  # in order
                print("owner killed: %d delivered after the respawn, %d "
                      "bounced" % (len(got), len(bounced)), flush=True)
                # the link is back: a message after the respawn and an
                # answer the other way
                other.send_message(mto=D, mbody="after", mtype="chat")
                m = await d.next_message(60)
                assert (str(m["from"]), m["body"]) == (str(other.boundjid), "after"), m
                d.send_message(mto=other.boundjid, mbody="still there?", mtype="chat")
                m = await other.next_message(60)
                assert (str(m["from"]), m["body"]) == (
                    "dave@prosody.test/lab", "still there?"), m
                await other.plugin["xep_0199"].ping(jid="xmppd.test", timeout=10)
                assert gone == [], "carol on the other worker was disconnected"
                assert len(re.findall(r" w%d info: s2s xmppd\.test -> prosody\.test "
                                      r"\S+: up " % owner, x.log_text())) >= 2, \
                    x.log_text()[-3000:]
            finally:
                for u in users:
                    await u.offline()
        run_async(scenario(), timeout=300)


def presence_and_storage(anchor_cls):
    """carol@xmppd.test and dave on the anchor, friends (RFC 6121):
    available and unavailable broadcast both ways; probes at login both
    ways (the one who logs in second sees the other online at once);
    a message from dave to carol offline is stored and delivered at her
    login (XEP-0203 delay from xmppd.test); carol blocks dave (XEP-0191):
    his message comes back <service-unavailable/> and carol gets nothing
    of it (the next message she gets is the one after she unblocks)."""
    with Lab() as lab:
        x = lab.xmppd("xmppd.test", users=[("carol@xmppd.test", "c4rol-pw")])
        name = "%s.test" % anchor_cls.kind
        a = anchor_cls(lab, name, users=[("dave", "d4ve-pw")])
        lab.start()
        C, D = "carol@xmppd.test", "dave@%s" % name

        def carol():
            return User(x, "carol", "c4rol-pw")

        def dave():
            return User(a, "dave", "d4ve-pw")

        async def scenario():
            c = await carol().online()
            d = await dave().online()
            live = [c, d]
            try:
                await befriend(c, d)
                # broadcast: dave leaves, carol sees it; carol leaves, dave sees it
                await d.offline()
                await c.until(lambda: c.presence_from(D, "unavailable"), 30,
                              "unavailable from %s" % D)
                await c.offline()
                # probes: carol first, then dave (dave's server probes
                # xmppd; carol sees dave's initial presence)
                c = await carol().online()
                d = await dave().online()
                live = [c, d]
                await d.until(lambda: d.presence_from(C, "available"), 30,
                              "%s online (probe answered by xmppd)" % C)
                await c.until(lambda: c.presence_from(D, "available"), 30,
                              "%s online (broadcast)" % D)
                await c.offline()
                await d.until(lambda: d.presence_from(C, "unavailable"), 30,
                              "unavailable from %s" % C)
                await d.offline()
                # and dave first, then carol (xmppd probes the anchor)
                d = await dave().online()
                c = await carol().online()
                live = [c, d]
                await c.until(lambda: c.presence_from(D, "available"), 30,
                              "%s online (probe answered by %s)" % (D, name))
                await d.until(lambda: d.presence_from(C, "available"), 30,
                              "%s online (broadcast)" % C)
                # offline storage
                await c.offline()
                live = [d]
                d.send_message(mto=C, mbody="while you were away", mtype="chat")
                await asyncio.to_thread(
                    wait_for, lambda: x.db.psql(
                        "SELECT count(*) FROM offline_messages",
                        x.db.conninfo).strip() == "1",
                    timeout=30, what="the message stored")
                c = await carol().online()
                live = [c, d]
                m = await c.next_message(30)
                assert (str(m["from"]), m["body"]) == (
                    "%s/lab" % D, "while you were away"), m
                delay = m.xml.find("{urn:xmpp:delay}delay")
                assert delay is not None and delay.get("from") == "xmppd.test", m
                # blocking
                iq = c.Iq(stype="set")
                iq.append(ET.fromstring("<block xmlns='urn:xmpp:blocking'>"
                                        "<item jid='%s'/></block>" % D))
                await iq.send(timeout=10)
                await expect_error(d, C, "service-unavailable")
                iq = c.Iq(stype="set")
                iq.append(ET.fromstring("<unblock xmlns='urn:xmpp:blocking'>"
                                        "<item jid='%s'/></unblock>" % D))
                await iq.send(timeout=10)
                d.send_message(mto=C, mbody="unblocked now", mtype="chat")
                m = await c.next_message(30)
                assert (str(m["from"]), m["body"]) == (
                    "%s/lab" % D, "unblocked now"), m
            finally:
                for u in live:
                    await u.offline()
        run_async(scenario(), timeout=240)


def test_prosody_presence_storage_blocking():
    presence_and_storage(ProsodyServer)


def test_ejabberd_presence_storage_blocking():
    presence_and_storage(EjabberdServer)


def outgoing_connections(x, a):
    """TCP connections to the anchor's s2s port (our outgoing links: the
    anchor's own links go to xmppd's port; the source address is the
    kernel's choice, 127.0.0.1), counted with ss."""
    import subprocess
    out = subprocess.run(["ss", "-Htn", "state", "established", "dst",
                          "%s:%d" % (a.addr, a.s2s_port)],
                         capture_output=True, text=True, timeout=10).stdout
    return len([l for l in out.splitlines() if l.strip()])


def multiplexing(anchor_cls, secure):
    """xmppd with two hosts (xmppd.test, xmppd2.test; the second's DNS
    records name the same server): carol@xmppd.test and erin@xmppd2.test
    both talk with dave@ANCHOR.  Returns (anchor log, xmppd log, our
    outgoing connections to the anchor counted with ss)."""
    with Lab() as lab:
        x = lab.xmppd("xmppd.test", secure=secure,
                      users=[("carol@xmppd.test", "c4rol-pw"),
                             ("erin@xmppd2.test", "3rin-pw")],
                      overrides={"hosts": "xmppd.test xmppd2.test"})
        lab.record("xmppd2.test", x.addr, x.s2s_port)
        name = "%s.test" % anchor_cls.kind
        a = anchor_cls(lab, name, secure=secure, users=[("dave", "d4ve-pw")])
        lab.start()

        async def scenario():
            c = await User(x, "carol", "c4rol-pw").online()
            e = await User(x, "erin", "3rin-pw", domain="xmppd2.test").online()
            d = await User(a, "dave", "d4ve-pw").online()
            try:
                await converse(c, d, TEXT)
                await converse(e, d, "from xmppd2: " + TEXT)
                await converse(c, d, "carol again")
                await converse(e, d, "erin again")
            finally:
                await c.offline()
                await e.offline()
                await d.offline()
        run_async(scenario())
        return a.log_text(), x.log_text(), outgoing_connections(x, a)


def test_prosody_multiplexing():
    """XEP-0220 sender multiplexing against Prosody 0.12 (dialback, self-signed
    certificates): the second of our domains is asked for on the stream
    of the first (<db:result from='xmppd2.test'/> there), Prosody
    verifies it with xmppd2.test's authoritative side (us) and says
    valid; every message of both users reaches dave, both answers come
    back, and ONE TCP connection carried both domains (ss)."""
    plog, xlog, n = multiplexing(ProsodyServer, False)
    assert re.search(r"s2s xmppd2\.test -> prosody\.test \S+: up \(dialback "
                     r"on the stream of xmppd\.test -> prosody\.test\)",
                     xlog), xlog[-3000:]
    assert len(re.findall(r"s2s xmppd2?\.test -> prosody\.test \S+: up \("
                          r"dialback, ", xlog)) == 1, xlog[-3000:]
    assert ("connection xmppd.test->prosody.test is now authenticated for "
            "xmppd2.test" in plog), plog[-3000:]
    assert n == 1, n



def test_ejabberd_multiplexing():
    """The same against ejabberd 23.01 (dialback): it verifies the
    second domain's key with our authoritative side over a link of its
    own to xmppd2.test and answers valid; one TCP connection from us."""
    elog, xlog, n = multiplexing(EjabberdServer, False)
    assert re.search(r"s2s xmppd2\.test -> ejabberd\.test \S+: up \(dialback "
                     r"on the stream of xmppd\.test -> ejabberd\.test\)",
                     xlog), xlog[-3000:]
    assert "Accepted inbound s2s dialback authentication xmppd2.test -> " \
        "ejabberd.test" in elog, elog[-3000:]
    assert n == 1, n


if __name__ == "__main__":
    run_tests([test_prosody_external, test_ejabberd_external,
               test_prosody_dialback, test_ejabberd_dialback,
               test_remote_down, test_remote_silent, test_forged_from_external,
               test_forged_from_dialback,
               test_owner_killed, test_prosody_presence_storage_blocking,
               test_ejabberd_presence_storage_blocking,
               test_serverauth_only_certificates,
               test_prosody_multiplexing, test_ejabberd_multiplexing])

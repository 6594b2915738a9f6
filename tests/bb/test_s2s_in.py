"""Incoming server-to-server streams (RFC 6120 section 13, RFC 7590,
XEP-0178 SASL EXTERNAL, XEP-0220 dialback, XEP-0368 direct TLS), black
box with exact XML: a Python "remote server" connects to xmppd's s2s
port, with certificates from a test CA (openssl) that xmppd trusts
through s2s.ca_file.  Needs XMPPD_TEST_PGCONN (local users receive).
"""
import base64
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Client, Server, run_tests, stream_error_re,  # noqa: E402
                     wait_for)
from imlib import (USERS, connect_on, item_rx, login,  # noqa: E402
                   push_rx)
from dnslab import DnsLab  # noqa: E402
from test_component import GW, SECRET, Comp  # noqa: E402

NS_STREAMS = "http://etherx.jabber.org/streams"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
REMOTE = "remote.example"

# Our header on an s2s stream, exactly (the id is random hex).
HEADER = (r"<\?xml version='1.0'\?><stream:stream xmlns='jabber:server' "
          r"xmlns:stream='http://etherx.jabber.org/streams' "
          r"xmlns:db='jabber:server:dialback' id='(?P<id>[0-9a-f]{24})' "
          r"from='localhost' to='%s' version='1.0'>")
# ... from one of our domains (ours, theirs)
HEADER_OF = HEADER.replace("from='localhost'", "from='%s'")
FEATURES = "<stream:features>.*?</stream:features>"
STARTTLS_FEATURES = ("<stream:features><starttls xmlns='%s'><required/>"
                     "</starttls></stream:features>" % NS_TLS)
DIALBACK_FEATURE = ("<dialback xmlns='urn:xmpp:features:dialback'><errors/>"
                    "</dialback>")
TOO_MANY_ERROR = ("<stream:error><policy-violation xmlns='urn:ietf:params:"
                  "xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:"
                  "ns:xmpp-streams'>too many streams from your domain</text>"
                  "</stream:error></stream:stream>")
EXTERNAL_FEATURE = ("<mechanisms xmlns='%s'><mechanism>EXTERNAL</mechanism>"
                    "</mechanisms>" % NS_SASL)

NS_SM = "urn:xmpp:sm:3"
SM_FEATURE = "<sm xmlns='%s'/>" % NS_SM
_PKI = None
EKUS = ("serverAuth", "clientAuth", "serverAuth, clientAuth", "codeSigning",
        "emailProtection, codeSigning")


def pki():
    """A test CA and certificates it signed for remote.example and
    other.example (made once per run)."""
    global _PKI
    if _PKI is not None:
        return _PKI
    d = tempfile.mkdtemp(prefix="xmppd-s2s-pki-")

    def run(*a):
        subprocess.run(a, check=True, capture_output=True, cwd=d)

    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
        "ec_paramgen_curve:P-256", "-days", "30", "-nodes", "-subj",
        "/CN=xmppd test CA", "-keyout", "ca.key", "-out", "ca.pem",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign")
    out = {"ca": os.path.join(d, "ca.pem")}
    for name in (REMOTE, "other.example", "localhost"):
        run("openssl", "req", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=" + name,
            "-keyout", name + ".key", "-out", name + ".csr")
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write("subjectAltName=DNS:%s\n" % name)
        run("openssl", "x509", "-req", "-in", name + ".csr", "-CA", "ca.pem",
            "-CAkey", "ca.key", "-CAcreateserial", "-days", "30",
            "-extfile", name + ".ext", "-out", name + ".pem")
        out[name] = (os.path.join(d, name + ".pem"),
                     os.path.join(d, name + ".key"))
    # remote.example again, with an extendedKeyUsage each (the key
    # "eku:VALUE"): what a public CA issues today (serverAuth only),
    # clientAuth only, both, and purposes that are not a server's
    for eku in EKUS:
        stem = "remote-" + eku.replace(",", "").replace(" ", "-")
        run("openssl", "req", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=" + REMOTE,
            "-keyout", stem + ".key", "-out", stem + ".csr")
        with open(os.path.join(d, stem + ".ext"), "w") as f:
            f.write("subjectAltName=DNS:%s\nextendedKeyUsage=%s\n"
                    % (REMOTE, eku))
        run("openssl", "x509", "-req", "-in", stem + ".csr", "-CA", "ca.pem",
            "-CAkey", "ca.key", "-CAcreateserial", "-days", "30",
            "-extfile", stem + ".ext", "-out", stem + ".pem")
        out["eku:" + eku] = (os.path.join(d, stem + ".pem"),
                             os.path.join(d, stem + ".key"))
    _PKI = out
    return out


def server(overrides=None, users=True, **kw):
    # no query ever leaves the machine: a DNS server that is not there
    # unless the test brings one (dnslab)
    o = {"s2s.ca_file": pki()["ca"], "s2s.verify_timeout": "1s",
         "s2s.dns_servers": "127.0.0.1:1"}
    o.update(overrides or {})
    return Server(s2s=True, users=USERS if users else (), overrides=o, **kw)


class Peer(Client):
    """Another server's side of an incoming s2s stream."""

    def __init__(self, s, tls_port=False, cert=REMOTE, alpn=None):
        Client.__init__(self, s.s2s_tls_port if tls_port else s.s2s_port)
        self.cert = cert
        self.id = None
        if tls_port:
            self.tls(alpn=alpn)

    def tls(self, alpn=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if alpn:
            ctx.set_alpn_protocols(alpn)
        if self.cert is not None:
            ctx.load_cert_chain(*pki()[self.cert])
        self.sock.settimeout(self.timeout)
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        self.buf = b""

    def header(self, frm=REMOTE, to="localhost", ns="jabber:server",
               version="1.0"):
        attrs = ""
        if frm is not None:
            attrs += " from='%s'" % frm
        if to is not None:
            attrs += " to='%s'" % to
        if version is not None:
            attrs += " version='%s'" % version
        self.send("<?xml version='1.0'?><stream:stream xmlns='%s' "
                  "xmlns:stream='%s' xmlns:db='jabber:server:dialback'%s>"
                  % (ns, NS_STREAMS, attrs))

    def open(self, frm=REMOTE, to="localhost"):
        """Our header, theirs (exact), their features (returned)."""
        self.header(frm=frm, to=to)
        rx = HEADER_OF % (re.escape(to), re.escape(frm))
        m = re.match(rx, self.read_until(rx))
        self.id = m.group("id")
        return self.read_until(FEATURES)

    def starttls(self, frm=REMOTE, to="localhost"):
        self.send("<starttls xmlns='%s'/>" % NS_TLS)
        self.read_until("<proceed xmlns='%s'/>" % NS_TLS)
        self.tls()
        return self.open(frm, to)

    def external(self, authzid=None):
        data = "=" if authzid is None else base64.b64encode(
            authzid.encode()).decode()
        self.send("<auth xmlns='%s' mechanism='EXTERNAL'>%s</auth>"
                  % (NS_SASL, data))
        return self.read_until("<success xmlns='%s'/>|<failure .*?</failure>"
                               % NS_SASL)

    def authenticated(self):
        """STARTTLS, SASL EXTERNAL, the restarted stream."""
        self.open()
        feats = self.starttls()
        assert EXTERNAL_FEATURE in feats, feats
        got = self.external()
        assert got == "<success xmlns='%s'/>" % NS_SASL, got
        feats = self.open()
        assert feats == "<stream:features>%s</stream:features>" % SM_FEATURE, \
            feats

    def expect_next(self, text):
        """The next bytes on the stream are exactly text."""
        got = self.read_until(r"(?s)^.{%d}" % len(text.encode()))
        assert got == text, (got, text)

    def expect_error(self, condition):
        got = self.read_all_until_close()
        assert re.search(stream_error_re(condition), got), got
        return got


def log_has(s, text):
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if text in s.log_text():
            return True
        time.sleep(0.05)
    raise AssertionError("log lacks %r" % text)


# ---- the stream header (RFC 6120 4.7, 4.8, 4.9) ----

def test_header_errors():
    with server(users=False) as s:
        for kw, cond in ((dict(ns="jabber:client"), "invalid-namespace"),
                         (dict(to="elsewhere.example"), "host-unknown"),
                         (dict(to=None), "host-unknown"),
                         (dict(version=None), "unsupported-version"),
                         (dict(frm="not a domain@x/y"), "invalid-from")):
            p = Peer(s)
            p.header(**kw)
            p.expect_error(cond)
            p.close()


def test_starttls_required_first():
    with server(users=False) as s:
        p = Peer(s)
        assert p.open() == STARTTLS_FEATURES
        # RFC 7590: nothing but STARTTLS before TLS
        p.send("<db:result from='%s' to='localhost'>abc</db:result>" % REMOTE)
        p.expect_error("policy-violation")
        log_has(s, "before STARTTLS")
        p = Peer(s)
        p.open()
        p.send("<message from='a@%s' to='romeo@localhost'><body>x</body>"
               "</message>" % REMOTE)
        p.expect_error("policy-violation")


def test_direct_tls_alpn():
    with server(users=False, overrides={}) as s:
        p = Peer(s, tls_port=True, alpn=["xmpp-server"])
        assert p.sock.selected_alpn_protocol() == "xmpp-server"
        feats = p.open()
        assert feats == ("<stream:features>%s%s</stream:features>"
                         % (EXTERNAL_FEATURE, DIALBACK_FEATURE)), feats


# ---- SASL EXTERNAL (XEP-0178) ----

def test_external_and_stanzas_inward():
    with server() as s:
        romeo = login(s, "romeo", "r")
        p = Peer(s)
        p.authenticated()
        p.send("<message from='juliet@%s/balcony' to='romeo@localhost/r' "
               "type='chat' id='m1'><body>hi from afar</body></message>"
               % REMOTE)
        romeo.expect("<message from='juliet@%s/balcony' to='romeo@localhost/r'"
                     " type='chat' id='m1'><body>hi from afar</body></message>"
                     % REMOTE)
        # an IQ to a local user's bare JID is answered by us, back over
        # federation's outgoing side: here only that the stream stays up
        # a forged 'from' ends the stream (RFC 6120 4.9.3.9)
        p.send("<message from='mallory@evil.example' to='romeo@localhost'>"
               "<body>x</body></message>")
        p.expect_error("invalid-from")
        log_has(s, "not authenticated for that domain")
        romeo.quiet(0.3, want=re.compile(".*mallory.*"))


def test_external_refused():
    with server(users=False) as s:
        # a certificate for another domain: no EXTERNAL offered, and
        # asking for it fails with <not-authorized/>
        p = Peer(s, cert="other.example")
        p.open()
        feats = p.starttls()
        assert feats == ("<stream:features>%s</stream:features>"
                         % DIALBACK_FEATURE), feats
        got = p.external()
        assert got == ("<failure xmlns='%s'><not-authorized/></failure>"
                       % NS_SASL), got
        # no certificate at all
        p = Peer(s, cert=None)
        p.open()
        p.starttls()
        assert p.external() == ("<failure xmlns='%s'><not-authorized/>"
                                "</failure>" % NS_SASL)
        # an authzid other than the stream's 'from' (XEP-0178 section 3)
        p = Peer(s)
        p.open()
        p.starttls()
        got = p.external(authzid="evil.example")
        assert got == ("<failure xmlns='%s'><invalid-authzid/></failure>"
                       % NS_SASL), got
        # the same authzid as 'from' is fine
        got = p.external(authzid=REMOTE)
        assert got == "<success xmlns='%s'/>" % NS_SASL, got


def test_stanza_before_auth():
    with server(users=False) as s:
        p = Peer(s)
        p.open()
        p.starttls()
        p.send("<message from='a@%s' to='romeo@localhost'><body>x</body>"
               "</message>" % REMOTE)
        p.expect_error("not-authorized")


def test_addressing_errors():
    with server() as s:
        for stanza, cond in (
                ("<message from='a@%s' to='romeo@nowhere.example'>"
                 "<body>x</body></message>" % REMOTE, "host-unknown"),
                ("<message to='romeo@localhost'><body>x</body></message>",
                 "improper-addressing"),
                ("<message from='a@%s'><body>x</body></message>" % REMOTE,
                 "improper-addressing"),
                # malformed too (no type): host-unknown, not a bounce
                # from a domain we do not serve (fuzz_s2s)
                ("<iq from='a@%s' to='nowhere.example' id='q'/>" % REMOTE,
                 "host-unknown")):
            p = Peer(s)
            p.authenticated()
            p.send(stanza)
            p.expect_error(cond)


# ---- dialback (XEP-0220) ----

def dialback_valid(p, remote, link, to, key):
    """p, a stream from REMOTE, asks dialback for REMOTE -> to with key
    (XEP-0220); our <db:verify/> reaches the fake remote's authoritative
    side on link (opened by remote.handshake() when None), exactly, is
    answered valid, and p gets <db:result type='valid'/>.  Returns the
    link."""
    p.send("<db:result from='%s' to='%s'>%s</db:result>" % (REMOTE, to, key))
    if link is None:
        link = remote.handshake()
    got = link.read_until("<db:verify [^>]*>[^<]*</db:verify>")
    assert got == ("<db:verify from='%s' to='%s' id='%s'>%s</db:verify>"
                   % (to, REMOTE, p.id, key)), got
    link.send("<db:verify from='%s' to='%s' id='%s' type='valid'/>"
              % (REMOTE, to, p.id))
    got = p.read_until("<db:result [^>]*/>")
    assert got == ("<db:result from='%s' to='%s' type='valid'/>"
                   % (to, REMOTE)), got
    return link


def dialback_stream(s):
    p = Peer(s, cert=None)
    p.open()
    feats = p.starttls()
    assert feats == "<stream:features>%s</stream:features>" % DIALBACK_FEATURE
    return p


def test_dialback_verify_authoritative():
    with server(users=False) as s:
        p = dialback_stream(s)
        # a key we never made
        p.send("<db:verify from='%s' to='localhost' id='abc123'>%s"
               "</db:verify>" % (REMOTE, "0" * 64))
        got = p.read_until("<db:verify .*?/>")
        assert got == ("<db:verify from='localhost' to='%s' id='abc123' "
                       "type='invalid'/>" % REMOTE), got
        # not our domain: XEP-0220 2.4 item-not-found
        p.send("<db:verify from='%s' to='elsewhere.example' id='abc'>k"
               "</db:verify>" % REMOTE)
        got = p.read_until("<db:verify .*?</db:verify>")
        assert got == ("<db:verify from='elsewhere.example' to='%s' id='abc' "
                       "type='error'><error type='cancel'><item-not-found "
                       "xmlns='%s'/></error></db:verify>"
                       % (REMOTE, NS_STANZAS)), got


def test_dialback_result_errors():
    with server(users=False,
                overrides={"s2s.blocked_domains": "bad.example"}) as s:
        p = dialback_stream(s)
        p.send("<db:result from='%s' to='elsewhere.example'>k</db:result>"
               % REMOTE)
        got = p.read_until("<db:result .*?</db:result>")
        assert got == ("<db:result from='elsewhere.example' to='%s' "
                       "type='error'><error type='cancel'><item-not-found "
                       "xmlns='%s'/></error></db:result>"
                       % (REMOTE, NS_STANZAS)), got
        p.send("<db:result from='bad.example' to='localhost'>k</db:result>")
        got = p.read_until("<db:result .*?</db:result>")
        assert got == ("<db:result from='localhost' to='bad.example' "
                       "type='error'><error type='cancel'><forbidden "
                       "xmlns='%s'/></error></db:result>" % NS_STANZAS), got
        # remote.example cannot be asked (no such server): an error
        # answer, never silence; stanzas stay refused
        p.send("<db:result from='%s' to='localhost'>k</db:result>" % REMOTE)
        got = p.read_until("<db:result .*?</db:result>", timeout=15)
        assert re.fullmatch(
            "<db:result from='localhost' to='%s' type='error'><error "
            "type='(wait|cancel)'><(remote-server-timeout|remote-server-not-"
            "found|remote-connection-failed) xmlns='%s'/></error></db:result>"
            % (REMOTE, NS_STANZAS), got), got
        p.send("<message from='a@%s' to='romeo@localhost'><body>x</body>"
               "</message>" % REMOTE)
        p.expect_error("not-authorized")


def test_dialback_policy_pkix():
    with server(users=False, overrides={"s2s.auth": "pkix"}) as s:
        p = Peer(s, cert=None)
        p.open()
        feats = p.starttls()
        assert feats == "<stream:features></stream:features>", feats
        p.send("<db:result from='%s' to='localhost'>k</db:result>" % REMOTE)
        got = p.read_until("<db:result .*?</db:result>")
        assert "<forbidden xmlns='%s'/>" % NS_STANZAS in got, got


# ---- limits ----

def test_limits():
    with server(overrides={"s2s.max_incoming_per_domain": "1",
                           "s2s.max_stanza_rate": "5",
                           "s2s.max_stanza_size": "10K"},
                workers=1) as s:
        romeo = login(s, "romeo", "r")
        p = Peer(s)
        p.authenticated()
        # a second stream from remote.example: refused when it
        # authenticates (not at its header: see
        # test_unauthenticated_from_takes_no_place)
        q = Peer(s)
        q.open()
        q.starttls()
        q.send("<auth xmlns='%s' mechanism='EXTERNAL'>=</auth>" % NS_SASL)
        assert q.read_all_until_close() == TOO_MANY_ERROR
        # a burst of four times the rate: nothing is dropped, the stream
        # is not ended; xmppd stops reading it until its bucket refills
        p.send("".join("<message from='a@%s/x' to='romeo@localhost/r' "
                       "id='r%d'><body>%d</body></message>" % (REMOTE, i, i)
                       for i in range(20)))
        for i in range(20):
            romeo.expect("<message from='a@%s/x' to='romeo@localhost/r' "
                         "id='r%d'><body>%d</body></message>" % (REMOTE, i, i),
                         timeout=30)
        log_has(s, "over s2s.max_stanza_rate (5/s): reading paced")
        assert "too many stanzas" not in s.log_text()
        # the same stream still carries stanzas
        p.send("<message from='a@%s/x' to='romeo@localhost/r' id='after'>"
               "<body>after</body></message>" % REMOTE)
        romeo.expect("<message from='a@%s/x' to='romeo@localhost/r' "
                     "id='after'><body>after</body></message>" % REMOTE,
                     timeout=30)
        p.send("<message from='a@%s' to='romeo@localhost'><body>%s</body>"
               "</message>" % (REMOTE, "x" * 12000))
        p.expect_error("policy-violation")


def test_stream_management():
    """XEP-0198 on an incoming stream, acknowledgements only: offered
    once authenticated, <enabled/> without id/resume, h counts every
    stanza received (routed or bounced)."""
    with server(workers=1) as s:
        romeo = login(s, "romeo", "r")
        p = Peer(s)
        p.authenticated()
        p.send("<enable xmlns='%s'/>" % NS_SM)
        p.expect_next("<enabled xmlns='%s'/>" % NS_SM)
        p.send("<r xmlns='%s'/>" % NS_SM)
        p.expect_next("<a xmlns='%s' h='0'/>" % NS_SM)
        for i in range(3):
            p.send("<message from='a@%s/x' to='romeo@localhost/r' id='s%d'>"
                   "<body>%d</body></message>" % (REMOTE, i, i))
        # one for nobody: bounced to the sender, handled all the same
        p.send("<message from='a@%s/x' to='nobody@localhost' id='s3' "
               "type='chat'><body>3</body></message>" % REMOTE)
        p.send("<r xmlns='%s'/>" % NS_SM)
        p.expect_next("<a xmlns='%s' h='4'/>" % NS_SM)
        for i in range(3):
            romeo.expect("<message from='a@%s/x' to='romeo@localhost/r' "
                         "id='s%d'><body>%d</body></message>" % (REMOTE, i, i))
        # a second <enable/>: failed, the stream goes on
        p.send("<enable xmlns='%s'/>" % NS_SM)
        p.expect_next("<failed xmlns='%s'><unexpected-request xmlns='%s'/>"
                      "</failed>" % (NS_SM, NS_STANZAS))
        p.send("<r xmlns='%s'/>" % NS_SM)
        p.expect_next("<a xmlns='%s' h='4'/>" % NS_SM)
        # not offered, and refused, before authentication (dialback)
        q = Peer(s, cert=None)
        q.open()
        feats = q.starttls()
        assert SM_FEATURE not in feats, feats
        q.send("<enable xmlns='%s'/>" % NS_SM)
        q.expect_next("<failed xmlns='%s'><unexpected-request xmlns='%s'/>"
                      "</failed>" % (NS_SM, NS_STANZAS))


def test_max_incoming():
    with server(users=False, overrides={"s2s.max_incoming": "1"},
                workers=1) as s:
        p = Peer(s)
        p.open()
        q = Peer(s)
        got = q.read_all_until_close()
        assert re.search(stream_error_re("resource-constraint"), got), got
        log_has(s, "too many server-to-server streams")
        # the stream already there goes on
        feats = p.starttls()
        assert EXTERNAL_FEATURE in feats, feats


def test_auth_timeout():
    """s2s.auth_timeout bounds the whole way to authorization: a stream
    idle before TLS, one whose TLS handshake never starts after
    <proceed/>, and one with TLS and a valid certificate that never
    authenticates are all ended."""
    with server(users=False, overrides={"s2s.auth_timeout": "1s"}) as s:
        p = Peer(s)
        p.open()
        p.expect_error("connection-timeout")
        # <proceed/>, then no ClientHello: the connection is closed (the
        # error cannot be written in the middle of a handshake: closed
        # after the closing grace, 5 s)
        p = Peer(s)
        p.open()
        p.send("<starttls xmlns='%s'/>" % NS_TLS)
        p.read_until("<proceed xmlns='%s'/>" % NS_TLS)
        p.read_all_until_close(timeout=30)
        # TLS and EXTERNAL offered, never used
        p = Peer(s)
        p.open()
        feats = p.starttls()
        assert EXTERNAL_FEATURE in feats, feats
        p.expect_error("connection-timeout")
        wait_for(lambda: s.log_text().count("no authentication in time")
                 >= 3, what="three 'no authentication in time' lines")


# ---- both directions: a fake remote server that xmppd also dials ----

class RemoteListener:
    """remote.example's listening side, for the link xmppd opens to it
    (found through dnslab's SRV record): STARTTLS with the test CA's
    certificate, dialback only; the key xmppd sends is checked with
    xmppd itself over a second incoming stream (<db:verify/>: xmppd is
    the authoritative server for its own keys)."""

    def __init__(self, local="localhost"):
        self.s = None       # the xmppd under test
        self.local = local  # our domain the link is from
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(4)
        self.port = self.lsock.getsockname()[1]
        self.c = None

    def accept(self, timeout=15):
        c = self.handshake(timeout)
        self.authorize(c)

    def handshake(self, timeout=15):
        """xmppd's link up to our features after TLS (dialback offered)."""
        self.lsock.settimeout(timeout)
        sock, _ = self.lsock.accept()
        c = Client.__new__(Client)
        c.sock, c.buf, c.timeout = sock, b"", 10.0
        hdr = c.read_until("<stream:stream [^>]*>")
        assert ("from='%s'" % self.local in hdr and
                "to='%s'" % REMOTE in hdr), hdr
        self._header(c, "i1")
        c.send("<stream:features><starttls xmlns='%s'><required/></starttls>"
               "</stream:features>" % NS_TLS)
        c.read_until("<starttls xmlns='%s'/>" % NS_TLS)
        c.send("<proceed xmlns='%s'/>" % NS_TLS)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*pki()[REMOTE])
        c.sock.settimeout(10)
        c.sock = ctx.wrap_socket(c.sock, server_side=True)
        c.buf = b""
        c.read_until("<stream:stream [^>]*>")
        self._header(c, "i2")
        c.send("<stream:features>%s</stream:features>" % DIALBACK_FEATURE)
        self.c = c
        return c

    def authorize(self, c):
        """xmppd's <db:result/>, checked with xmppd as the authoritative
        server, then answered valid."""
        lo = self.local
        m = re.match("<db:result from='%s' to='%s'>([0-9a-f]{64})"
                     "</db:result>" % (re.escape(lo), REMOTE),
                     c.read_until("<db:result [^>]*>[^<]*</db:result>"))
        assert m, c.buf
        # ask the authoritative server (xmppd) whether the key is its own
        v = Peer(self.s, cert=None)
        v.open(to=lo)
        v.starttls(to=lo)
        v.send("<db:verify from='%s' to='%s' id='i2'>%s</db:verify>"
               % (REMOTE, lo, m.group(1)))
        got = v.read_until("<db:verify [^>]*/>")
        assert got == ("<db:verify from='%s' to='%s' id='i2' "
                       "type='valid'/>" % (lo, REMOTE)), got
        # the same key for another stream id is not valid
        v.send("<db:verify from='%s' to='%s' id='i1'>%s</db:verify>"
               % (REMOTE, lo, m.group(1)))
        got = v.read_until("<db:verify [^>]*/>")
        assert got.endswith("type='invalid'/>"), got
        v.close()
        c.send("<db:result from='%s' to='%s' type='valid'/>" % (REMOTE, lo))
        self.c = c

    def _header(self, c, sid):
        c.send("<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
               "xmlns:stream='%s' xmlns:db='jabber:server:dialback' "
               "id='%s' from='%s' to='%s' version='1.0'>"
               % (NS_STREAMS, sid, REMOTE, self.local))

    def expect(self, want):
        """The next stanza xmppd sends over its link, exactly."""
        got = self.c.read_until(r"<(presence|message|iq)\b[^>]*/>|"
                                r"<(presence|message|iq)\b[^>]*[^/]>.*?</\2>")
        if isinstance(want, str):
            assert got == want, "got %r, want %r" % (got, want)
        else:
            assert want.fullmatch(got), "got %r, want %r" % (got, want)

    def close(self):
        self.lsock.close()
        if self.c is not None:
            self.c.close()


def test_federated_subscription_and_presence():
    """RFC 6121 with a contact on another server: romeo (ours) and
    juliet@remote.example subscribe to each other, presence flows both
    ways, probes are answered from the roster, logout tells the remote
    contact."""
    with DnsLab(local=("example",)) as dns:
        remote = RemoteListener()
        dns.srv("_xmpp-server._tcp." + REMOTE, "xmpp." + REMOTE, remote.port)
        dns.host("xmpp." + REMOTE, "127.0.0.1")
        dns.start()
        with server(overrides={"s2s.dns_servers": dns.server}) as s:
            remote.s = s
            romeo = login(s, "romeo", "r")
            jul = "juliet@" + REMOTE
            # our side first (roster push, ask), then out over the link
            romeo.send("<presence to='%s' type='subscribe'/>" % jul)
            romeo.expect(push_rx(None, item_rx(jul, "none", ask=True)))
            remote.accept()
            remote.expect("<presence to='%s' type='subscribe' "
                          "from='romeo@localhost'/>" % jul)
            p = Peer(s)
            p.authenticated()
            # juliet approves: romeo's roster says 'to', juliet's
            # presence follows from her server
            p.send("<presence from='%s' to='romeo@localhost' "
                   "type='subscribed'/>" % jul)
            romeo.expect(push_rx(None, item_rx(jul, "to")))
            romeo.expect("<presence from='%s' to='romeo@localhost' "
                         "type='subscribed'/>" % jul)
            p.send("<presence from='%s/balcony' to='romeo@localhost'>"
                   "<show>away</show></presence>" % jul)
            romeo.expect("<presence from='%s/balcony' to='romeo@localhost'>"
                         "<show>away</show></presence>" % jul)
            # juliet asks in turn; romeo approves: 'both', and romeo's
            # presence goes to her
            p.send("<presence from='%s' to='romeo@localhost' "
                   "type='subscribe' id='s1'/>" % jul)
            romeo.expect("<presence from='%s' to='romeo@localhost' "
                         "type='subscribe' id='s1'/>" % jul)
            romeo.send("<presence to='%s' type='subscribed'/>" % jul)
            romeo.expect(push_rx(None, item_rx(jul, "both")))
            remote.expect("<presence to='%s' type='subscribed' "
                          "from='romeo@localhost'/>" % jul)
            remote.expect("<presence to='%s' from='romeo@localhost/r'/>"
                          % jul)
            # a probe from a subscriber: the available resource answers
            p.send("<presence from='%s' to='romeo@localhost' type='probe'/>"
                   % jul)
            remote.expect("<presence to='%s' from='romeo@localhost/r'/>"
                          % jul)
            # from someone not subscribed: unsubscribed (RFC 6121 4.3.2)
            p.send("<presence from='nurse@%s' to='romeo@localhost' "
                   "type='probe'/>" % REMOTE)
            remote.expect("<presence from='romeo@localhost' to='nurse@%s' "
                          "type='unsubscribed'/>" % REMOTE)
            # a message both ways
            romeo.send("<message to='%s' type='chat' id='m1'><body>hello"
                       "</body></message>" % jul)
            # (the sender's archive id rides along: XEP-0359 says a
            # receiver trusts only its own archive's 'by')
            remote.expect(re.compile(
                "<message to='%s' type='chat' id='m1' from='romeo@localhost/r'>"
                "<body>hello</body>(<stanza-id xmlns='urn:xmpp:sid:0' "
                "id='[0-9]+' by='romeo@localhost'/>)?</message>"
                % re.escape(jul)))
            p.send("<message from='%s/balcony' to='romeo@localhost/r' "
                   "type='chat' id='m2'><body>hi</body></message>" % jul)
            romeo.expect(re.compile(
                "<message from='%s/balcony' to='romeo@localhost/r' "
                "type='chat' id='m2'><body>hi</body>(<stanza-id "
                "xmlns='urn:xmpp:sid:0' id='[0-9]+' by='romeo@localhost'/>)?"
                "</message>" % re.escape(jul)))
            # an IQ without a type: bad-request back over the link
            p.send("<iq from='%s/balcony' to='romeo@localhost' id='q1'/>"
                   % jul)
            remote.expect(re.compile(
                "<iq (?=[^>]*from='romeo@localhost')(?=[^>]*id='q1')"
                "(?=[^>]*to='%s/balcony')(?=[^>]*type='error')[^>]*>"
                "<error type='modify'><bad-request xmlns='%s'/></error></iq>"
                % (re.escape(jul), NS_STANZAS)))
            # the server answers for itself (disco#info of the domain)
            p.send("<iq type='get' from='%s/balcony' to='localhost' id='q2'>"
                   "<query xmlns='http://jabber.org/protocol/disco#info'/>"
                   "</iq>" % jul)
            remote.expect(re.compile(
                "<iq (?=[^>]*from='localhost')(?=[^>]*id='q2')"
                "(?=[^>]*to='%s/balcony')(?=[^>]*type='result')[^>]*>"
                "<query xmlns='http://jabber.org/protocol/disco#info'>"
                "<identity category='server' .*</query></iq>"
                % re.escape(jul)))
            # logout: the remote contact is told
            romeo.close()
            remote.expect("<presence to='%s' from='romeo@localhost/r' "
                          "type='unavailable'/>" % jul)
            remote.close()


def test_remote_sender_offline_and_blocking():
    """Messages from another server are stored for an offline user and
    delivered at login; a blocked remote JID (XEP-0191) reaches no one."""
    with server() as s:
        p = Peer(s)
        p.authenticated()
        p.send("<message from='juliet@%s/balcony' to='romeo@localhost' "
               "type='chat' id='o1'><body>stored</body></message>" % REMOTE)
        wait_for(lambda: s.db.psql("SELECT count(*) FROM offline_messages",
                                   s.db.conninfo).strip() == "1",
                 what="the message stored")
        romeo = login(s, "romeo", "r")
        romeo.expect(re.compile(
            "<message from='juliet@%s/balcony' to='romeo@localhost' "
            "type='chat' id='o1'><body>stored</body>(<stanza-id [^>]*/>)?"
            "<delay xmlns='urn:xmpp:delay' from='localhost' stamp='[^']+'>"
            "Offline Storage</delay></message>" % re.escape(REMOTE)))
        romeo.send("<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'>"
                   "<item jid='juliet@%s'/></block></iq>" % REMOTE)
        romeo.expect("<iq from='romeo@localhost' id='b1' to='romeo@localhost/r' "
                     "type='result'/>")
        romeo.drain()
        p.send("<message from='juliet@%s/balcony' to='romeo@localhost/r' "
               "type='chat' id='o2'><body>blocked</body></message>"
               "<presence from='juliet@%s/balcony' to='romeo@localhost'/>"
               % (REMOTE, REMOTE))
        p.send("<message from='nurse@%s' to='romeo@localhost/r' id='o3'>"
               "<body>not blocked</body></message>" % REMOTE)
        romeo.expect(re.compile("<message from='nurse@%s' [^>]*id='o3'>"
                                "<body>not blocked</body>.*</message>"
                                % re.escape(REMOTE)))
        romeo.quiet(0.3, want=re.compile(".*juliet.*"))


def test_dialback_result_valid():
    """A remote server authenticates its stream by dialback: xmppd asks
    remote.example's authoritative server (over its own outgoing link,
    found through DNS) and accepts stanzas from that domain only."""
    with DnsLab(local=("example",)) as dns:
        remote = RemoteListener()
        dns.srv("_xmpp-server._tcp." + REMOTE, "xmpp." + REMOTE, remote.port)
        dns.host("xmpp." + REMOTE, "127.0.0.1")
        dns.start()
        with server(overrides={"s2s.dns_servers": dns.server}) as s:
            remote.s = s
            romeo = login(s, "romeo", "r")
            p = dialback_stream(s)
            c = dialback_valid(p, remote, None, "localhost", "k3y-of-remote")
            p.send("<message from='juliet@%s' to='romeo@localhost/r' "
                   "id='d1'><body>by dialback</body></message>" % REMOTE)
            romeo.expect(re.compile(
                "<message from='juliet@%s' to='romeo@localhost/r' id='d1'>"
                "<body>by dialback</body>(<stanza-id [^>]*/>)?</message>"
                % re.escape(REMOTE)))
            # another stream whose key the authoritative server denies
            q = dialback_stream(s)
            q.send("<db:result from='%s' to='localhost'>bad-key</db:result>"
                   % REMOTE)
            got = c.read_until("<db:verify [^>]*>[^<]*</db:verify>")
            assert got == ("<db:verify from='localhost' to='%s' id='%s'>"
                           "bad-key</db:verify>" % (REMOTE, q.id)), got
            c.send("<db:verify from='%s' to='localhost' id='%s' "
                   "type='invalid'/>" % (REMOTE, q.id))
            got = q.read_until("<db:result [^>]*/>")
            assert got == ("<db:result from='localhost' to='%s' "
                           "type='invalid'/>" % REMOTE), got
            q.send("<message from='juliet@%s' to='romeo@localhost/r'>"
                   "<body>x</body></message>" % REMOTE)
            q.expect_error("not-authorized")
            # a domain this stream is not authorized for
            p.send("<message from='mallory@other.example' "
                   "to='romeo@localhost/r'><body>x</body></message>")
            p.expect_error("invalid-from")
            remote.close()


def test_idle_stream_closed():
    with server(users=False, overrides={"s2s.in_idle_timeout": "1s"}) as s:
        p = Peer(s)
        p.authenticated()
        got = p.read_all_until_close(timeout=10)
        assert got == "</stream:stream>", got
        log_has(s, "s2s stream idle, closed")


def test_dialback_pair_limit():
    with server(users=False, overrides={"s2s.max_domain_pairs": "1"}) as s:
        p = dialback_stream(s)
        # both in one write: the first is still being verified when the
        # second is read
        p.send("<db:result from='%s' to='localhost'>k1</db:result>"
               "<db:result from='second.example' to='localhost'>k2"
               "</db:result>" % REMOTE)
        got = p.read_until("<db:result from='localhost' "
                           "to='second.example'.*?</db:result>")
        assert got == ("<db:result from='localhost' to='second.example' "
                       "type='error'><error type='wait'><resource-constraint"
                       " xmlns='%s'/></error></db:result>" % NS_STANZAS), got


def test_our_own_domain_refused():
    """Another server claiming a domain we serve (here with a certificate
    that names it, as a wildcard or a shared hoster's certificate may):
    its stream ends with <invalid-from/> before any feature, so it can
    never speak for our users; a <db:result/> for it is refused with
    <forbidden/> and asks no one."""
    with server() as s:
        romeo = login(s, "romeo", "r")
        p = Peer(s, cert="localhost")
        p.header(frm="localhost")
        got = p.expect_error("invalid-from")
        assert "<stream:features>" not in got, got
        log_has(s, "claims a domain served here")
        p = dialback_stream(s)
        p.send("<db:result from='localhost' to='localhost'>k</db:result>")
        got = p.read_until("<db:result .*?</db:result>")
        assert got == ("<db:result from='localhost' to='localhost' "
                       "type='error'><error type='cancel'><forbidden "
                       "xmlns='%s'/></error></db:result>" % NS_STANZAS), got
        romeo.quiet(0.3, want=re.compile(".*forged.*"))
        assert "verification asked" not in s.log_text()


# ---- s2s.max_incoming_per_domain across workers ----

def peer_on(s, worker, **kw):
    """An incoming s2s connection accepted by the given worker."""
    return connect_on(s, worker, make=lambda: Peer(s, **kw))


def refused_at_external(q):
    """The stream's SASL EXTERNAL is answered with the end of the stream:
    s2s.max_incoming_per_domain, exactly."""
    q.open()
    q.starttls()
    q.send("<auth xmlns='%s' mechanism='EXTERNAL'>=</auth>" % NS_SASL)
    got = q.read_all_until_close()
    assert got == TOO_MANY_ERROR, got


def test_max_incoming_per_domain_across_workers():
    """s2s.max_incoming_per_domain = 1 with two workers: a second stream
    from remote.example on the OTHER worker gets <policy-violation/> when
    it authenticates (counted per worker, it would pass); another domain
    is not held back; a closed stream frees its place for the other
    worker, and a worker killed with its stream (kill -9) frees it too
    once the master has swept the dead worker's counts."""
    with server(users=False, workers=2,
                overrides={"s2s.max_incoming_per_domain": "1"}) as s:
        p = peer_on(s, 0)
        p.authenticated()
        q = peer_on(s, 1)
        refused_at_external(q)
        wait_for(lambda: re.search(
            r"w1 info: c\d+ [^:]+:\d+: %s has 1 streams here "
            r"\(s2s.max_incoming_per_domain\)" % re.escape(REMOTE),
            s.log_text()), what="the refusal's log line from worker 1")
        # another domain on the same worker meanwhile: welcome
        o = peer_on(s, 1, cert="other.example")
        o.open(frm="other.example")
        o.starttls(frm="other.example")
        assert o.external() == "<success xmlns='%s'/>" % NS_SASL
        # the stream on worker 0 ends: worker 1 takes remote.example now
        p.send("</stream:stream>")
        p.read_all_until_close()
        r = peer_on(s, 1)
        r.authenticated()
        # ... and worker 0 refuses a second one again
        q = peer_on(s, 0)
        refused_at_external(q)
        # worker 1 dies with its stream: the master's sweep frees it
        old = s.status()["workers"][1]["pid"]
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: (lambda st: st is not None and
                          st["workers"][1]["pid"] not in (0, old))(
                              s.status_ok()), what="worker 1 respawned")
        r.read_all_until_close()
        o.read_all_until_close()
        t = peer_on(s, 0)
        t.authenticated()


def test_unauthenticated_from_takes_no_place():
    """(Review h-rev 26adea7.)  s2s.max_incoming_per_domain counts a
    stream once it is authenticated, for the domain it proved, not the
    header's unauthenticated 'from': a stream claiming
    from='remote.example' that never authenticates takes none of
    remote.example's places, and the real remote.example gets in."""
    with server(users=False, workers=1,
                overrides={"s2s.max_incoming_per_domain": "1"}) as s:
        squatter = Peer(s, cert=None)
        squatter.open(frm=REMOTE)          # never authenticates
        real = Peer(s)                     # remote.example's certificate
        real.header(frm=REMOTE)
        got = real.read_until("<stream:features>.*?</stream:features>|"
                              "<stream:error>.*?</stream:error>")
        assert "too many streams from your domain" not in got, \
            "the real %s was refused: %r" % (REMOTE, got)
        real.starttls()
        got = real.external()
        assert got == "<success xmlns='%s'/>" % NS_SASL, got
        feats = real.open()
        assert feats == "<stream:features>%s</stream:features>" % \
            SM_FEATURE, feats
        # the real one holds the place now: a second authenticated
        # remote.example is refused, at its authentication
        refused_at_external(Peer(s))
        log_has(s, "%s has 1 streams here (s2s.max_incoming_per_domain)"
                % REMOTE)
        squatter.close()


# ---- our components' domains toward other servers ----

def test_component_domain_dialback_both_ways():
    """gw.localhost is a connected XEP-0114 component of ours; we are its
    authoritative server toward other servers.  Out: the component's
    message to juliet@remote.example leaves over a link FROM gw.localhost
    with dialback, whose key remote.example verifies with us (an
    incoming stream to gw.localhost: <db:verify/> valid; another stream
    id: invalid).  In: remote.example's dialback for (gw.localhost,
    remote.example) is checked over that link and answered valid, and its
    message to bot@gw.localhost reaches the component; the pair does not
    cover our users' domain.  Once the component is gone, a message to it
    comes back service-unavailable over the link.  All exact XML."""
    with DnsLab(local=("example",)) as dns:
        remote = RemoteListener(local=GW)
        dns.srv("_xmpp-server._tcp." + REMOTE, "xmpp." + REMOTE, remote.port)
        dns.host("xmpp." + REMOTE, "127.0.0.1")
        dns.start()
        with server(overrides={"s2s.dns_servers": dns.server},
                    components={GW: SECRET}) as s:
            remote.s = s
            comp = Comp(s).login()
            jul = "juliet@" + REMOTE
            # out: the link's local domain is the component's
            comp.c.send("<message from='bot@%s' to='%s' id='g1'>"
                        "<body>to remote</body></message>" % (GW, jul))
            remote.accept()
            remote.expect("<message from='bot@%s' to='%s' id='g1'>"
                          "<body>to remote</body></message>" % (GW, jul))
            # in: dialback for the component's domain
            p = Peer(s, cert=None)
            p.open(to=GW)
            feats = p.starttls(to=GW)
            assert feats == ("<stream:features>%s</stream:features>"
                             % DIALBACK_FEATURE), feats
            dialback_valid(p, remote, remote.c, GW, "k3y-for-gw")
            p.send("<message from='%s/balcony' to='bot@%s' id='g2'>"
                   "<body>to the gateway</body></message>" % (jul, GW))
            got = comp.expect(re.compile("<message .*?</message>"))
            assert got == ("<message from='%s/balcony' to='bot@%s' id='g2'>"
                           "<body>to the gateway</body></message>"
                           % (jul, GW)), got
            # the component leaves: a stanza for it is bounced to the
            # remote sender over the link, nothing is lost silently
            comp.close()
            wait_for(lambda: "component %s disconnected" % GW in s.log_text(),
                     what="the component gone")
            p.send("<message from='%s/balcony' to='bot@%s' id='g3'>"
                   "<body>anyone?</body></message>" % (jul, GW))
            remote.expect("<message from='bot@%s' id='g3' to='%s/balcony' "
                          "type='error'><error type='cancel'>"
                          "<service-unavailable xmlns='%s'/></error>"
                          "</message>" % (GW, jul, NS_STANZAS))
            # (gw.localhost, remote.example) says nothing of localhost
            p.send("<message from='%s' to='romeo@localhost'><body>x</body>"
                   "</message>" % jul)
            got = p.expect_error("invalid-from")
            assert ("<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>the "
                    "stream is not authorized for this pair of domains</text>"
                    in got), got
            remote.close()


def test_component_domain_external_and_claims():
    """SASL EXTERNAL on a stream to the component's domain (its 'to'):
    remote.example's valid certificate authenticates it, and its
    messages reach the component, to its domain, and (configured with
    subdomains) to a name under it over a stream to that name (not the
    first stream: SASL covers its 'to' only).  A remote server claiming the
    component's domain as its own (stream 'from', or a <db:result/>
    'from') is refused like a claim on our hosts."""
    with server(components={GW: (SECRET, True)}) as s:
        comp = Comp(s).login()
        p = Peer(s)
        feats = p.open(to=GW)
        assert feats == STARTTLS_FEATURES, feats
        feats = p.starttls(to=GW)
        assert EXTERNAL_FEATURE in feats, feats
        got = p.external()
        assert got == "<success xmlns='%s'/>" % NS_SASL, got
        feats = p.open(to=GW)
        assert feats == "<stream:features>%s</stream:features>" % SM_FEATURE, feats
        p.send("<message from='juliet@%s/b' to='bot@%s' id='e1'><body>by "
               "EXTERNAL</body></message>" % (REMOTE, GW))
        got = comp.expect(re.compile("<message .*?</message>"))
        assert got == ("<message from='juliet@%s/b' to='bot@%s' id='e1'>"
                       "<body>by EXTERNAL</body></message>" % (REMOTE, GW)), got
        # a name under it is another domain: EXTERNAL on this stream
        # covers only its 'to' (RFC 6120 13.7.1), so a stream of its own
        # (or a dialback pair on this one) carries it
        p.send("<message from='juliet@%s/b' to='room@muc.%s' id='e0'>"
               "<body>sub</body></message>" % (REMOTE, GW))
        p.expect_error("invalid-from")
        p = Peer(s)
        p.open(to="muc." + GW)
        p.starttls(to="muc." + GW)
        got = p.external()
        assert got == "<success xmlns='%s'/>" % NS_SASL, got
        p.open(to="muc." + GW)
        p.send("<message from='juliet@%s/b' to='room@muc.%s' id='e2'>"
               "<body>sub</body></message>" % (REMOTE, GW))
        got = comp.expect(re.compile("<message .*?</message>"))
        assert got == ("<message from='juliet@%s/b' to='room@muc.%s' id='e2'>"
                       "<body>sub</body></message>" % (REMOTE, GW)), got
        # claims on the component's domain
        q = Peer(s)
        q.header(frm=GW)
        got = q.expect_error("invalid-from")
        assert "<stream:features>" not in got, got
        log_has(s, "s2s stream from %s claims a domain served here" % GW)
        q = dialback_stream(s)
        q.send("<db:result from='%s' to='localhost'>k</db:result>" % GW)
        got = q.read_until("<db:result .*?</db:result>")
        assert got == ("<db:result from='localhost' to='%s' type='error'>"
                       "<error type='cancel'><forbidden xmlns='%s'/></error>"
                       "</db:result>" % (GW, NS_STANZAS)), got
        # a domain that is neither ours nor a component's
        q = Peer(s)
        q.header(to="elsewhere.localhost")
        q.expect_error("host-unknown")



# ---- what one authentication covers, and its bounds ----

def b_user(s, user="bob", password="bob-pw", resource="r"):
    """A client of our second host b.localhost (raw: exact reads)."""
    c = Client(s.port)
    c.open(to=B_HOST)
    c.send("<starttls xmlns='%s'/>" % NS_TLS)
    c.read_until("<proceed xmlns='%s'/>" % NS_TLS)
    c.wrap_tls()
    c.open(to=B_HOST)
    got = c.auth_plain(user, password)
    assert got.startswith("<success"), got
    c.open(to=B_HOST)
    assert c.bind(resource) == "%s@%s/%s" % (user, B_HOST, resource)
    return c


B_HOST = "b.localhost"


def test_external_covers_the_stream_to_only():
    """SASL EXTERNAL authenticates remote.example toward the stream's
    'to' (localhost) only (RFC 6120 13.7.1, XEP-0178): a stanza on that
    stream to our other host b.localhost ends it with <invalid-from/>
    (RFC 6120 4.9.3.9: that 'from' is not validated for that 'to'), and
    nothing reaches bob@b.localhost.  With a <db:result/> for
    (b.localhost, remote.example) on the same stream first (XEP-0220
    2.4), verified with remote.example's authoritative server, it is
    delivered."""
    with DnsLab(local=("example",)) as dns:
        remote = RemoteListener(local=B_HOST)
        dns.srv("_xmpp-server._tcp." + REMOTE, "xmpp." + REMOTE, remote.port)
        dns.host("xmpp." + REMOTE, "127.0.0.1")
        dns.start()
        with server(overrides={"s2s.dns_servers": dns.server,
                               "hosts": "localhost " + B_HOST}) as s:
            remote.s = s
            s.add_user("bob@" + B_HOST, "bob-pw")
            romeo = login(s, "romeo", "r")
            bob = b_user(s)
            p = Peer(s)
            p.authenticated()
            p.send("<message from='juliet@%s/x' to='bob@%s/r' id='bad'>"
                   "<body>not for this stream</body></message>"
                   % (REMOTE, B_HOST))
            p.expect_error("invalid-from")
            log_has(s, "stanza %s -> %s: that pair is not authorized on "
                    "this stream" % (REMOTE, B_HOST))
            # the same stream's own pair still works (another stream)
            p = Peer(s)
            p.authenticated()
            p.send("<message from='juliet@%s/x' to='romeo@localhost/r' "
                   "id='a1'><body>to A</body></message>" % REMOTE)
            romeo.expect("<message from='juliet@%s/x' to='romeo@localhost/r'"
                         " id='a1'><body>to A</body></message>" % REMOTE)
            # dialback for the other host on the same stream
            dialback_valid(p, remote, None, B_HOST, "k3y-for-b")
            p.send("<message from='juliet@%s/x' to='bob@%s/r' id='ok'>"
                   "<body>now for b</body></message>" % (REMOTE, B_HOST))
            # bob's first stanza is this one: 'bad' never came
            got = bob.read_until("<message .*?</message>")
            assert re.fullmatch(
                "<message from='juliet@%s/x' to='bob@%s/r' id='ok'>"
                "<body>now for b</body>(<stanza-id [^>]*/>)?</message>"
                % (re.escape(REMOTE), re.escape(B_HOST)), got), got
            remote.close()


def test_external_certificate_eku():
    """The initiating server's certificate and its extendedKeyUsage
    (RFC 5280 4.2.1.12): serverAuth alone (what public CAs issue since
    Let's Encrypt dropped clientAuth), clientAuth alone, or both
    validate for SASL EXTERNAL; a certificate for other purposes only
    does not: EXTERNAL is not offered, asking for it gets
    <not-authorized/> with the reason in the log, and dialback is still
    offered (s2s.auth dialback)."""
    with server(users=False) as s:
        for eku in ("serverAuth", "clientAuth", "serverAuth, clientAuth"):
            p = Peer(s, cert="eku:" + eku)
            p.open()
            feats = p.starttls()
            assert feats == ("<stream:features>%s%s</stream:features>"
                             % (EXTERNAL_FEATURE, DIALBACK_FEATURE)), \
                (eku, feats)
            got = p.external()
            assert got == "<success xmlns='%s'/>" % NS_SASL, (eku, got)
            p.close()
        for eku in ("codeSigning", "emailProtection, codeSigning"):
            p = Peer(s, cert="eku:" + eku)
            p.open()
            feats = p.starttls()
            assert feats == ("<stream:features>%s</stream:features>"
                             % DIALBACK_FEATURE), (eku, feats)
            got = p.external()
            assert got == ("<failure xmlns='%s'><not-authorized/></failure>"
                           % NS_SASL), (eku, got)
            p.close()
        log_has(s, "s2s peer certificate not trusted: its extendedKeyUsage "
                "has neither serverAuth nor clientAuth")
        log_has(s, "SASL EXTERNAL refused: its extendedKeyUsage has "
                "neither serverAuth nor clientAuth")


def open_without_from(p):
    """A stream header without 'from' (RFC 6120 4.7.1), STARTTLS, and
    the restarted stream: our header then has no 'to'."""
    rx = (HEADER % "").replace(" to=''", "")
    for step in range(2):
        p.header(frm=None)
        m = re.match(rx, p.read_until(rx))
        p.id = m.group("id")
        feats = p.read_until(FEATURES)
        if step == 0:
            assert feats == STARTTLS_FEATURES, feats
            p.send("<starttls xmlns='%s'/>" % NS_TLS)
            p.read_until("<proceed xmlns='%s'/>" % NS_TLS)
            p.tls()
    assert feats == "<stream:features>%s</stream:features>" % \
        DIALBACK_FEATURE, feats


def test_max_incoming_per_domain_without_from():
    """Streams whose header has no 'from' count for
    s2s.max_incoming_per_domain once their first pair is authorized by
    dialback, for that pair's domain, once per stream: with a limit of 1
    a second such stream from remote.example gets the header check's
    <policy-violation/> when its pair is verified; when the first one
    ends, its place is free again."""
    with DnsLab(local=("example",)) as dns:
        remote = RemoteListener()
        dns.srv("_xmpp-server._tcp." + REMOTE, "xmpp." + REMOTE, remote.port)
        dns.host("xmpp." + REMOTE, "127.0.0.1")
        dns.start()
        with server(overrides={"s2s.dns_servers": dns.server,
                               "s2s.max_incoming_per_domain": "1"},
                    workers=1) as s:
            remote.s = s
            romeo = login(s, "romeo", "r")
            link = None

            def dialback(p, key):
                nonlocal link
                p.send("<db:result from='%s' to='localhost'>%s</db:result>"
                       % (REMOTE, key))
                if link is None:
                    link = remote.handshake()
                got = link.read_until("<db:verify [^>]*>[^<]*</db:verify>")
                assert got == ("<db:verify from='localhost' to='%s' id='%s'>"
                               "%s</db:verify>" % (REMOTE, p.id, key)), got
                link.send("<db:verify from='%s' to='localhost' id='%s' "
                          "type='valid'/>" % (REMOTE, p.id))

            p = Peer(s, cert=None)
            open_without_from(p)
            dialback(p, "key-p")
            got = p.read_until("<db:result [^>]*/>")
            assert got == ("<db:result from='localhost' to='%s' "
                           "type='valid'/>" % REMOTE), got
            # the same pair again: answered at once, not counted again
            p.send("<db:result from='%s' to='localhost'>key-p</db:result>"
                   % REMOTE)
            got = p.read_until("<db:result [^>]*/>")
            assert got == ("<db:result from='localhost' to='%s' "
                           "type='valid'/>" % REMOTE), got
            q = Peer(s, cert=None)
            open_without_from(q)
            dialback(q, "key-q")
            got = q.read_all_until_close()
            assert got == ("<stream:error><policy-violation xmlns='urn:ietf:"
                           "params:xml:ns:xmpp-streams'/><text xmlns='urn:"
                           "ietf:params:xml:ns:xmpp-streams'>too many "
                           "streams from your domain</text></stream:error>"
                           "</stream:stream>"), got
            log_has(s, "%s has 1 streams here (s2s.max_incoming_per_domain)"
                    % REMOTE)
            # the first stream carries stanzas all along
            p.send("<message from='juliet@%s' to='romeo@localhost/r' "
                   "id='p1'><body>still here</body></message>" % REMOTE)
            romeo.expect(re.compile(
                "<message from='juliet@%s' to='romeo@localhost/r' id='p1'>"
                "<body>still here</body>(<stanza-id [^>]*/>)?</message>"
                % re.escape(REMOTE)))
            # it ends: uncounted once, a new stream is welcome
            p.send("</stream:stream>")
            p.read_all_until_close()
            r = Peer(s, cert=None)
            open_without_from(r)
            dialback(r, "key-r")
            got = r.read_until("<db:result [^>]*/>")
            assert got == ("<db:result from='localhost' to='%s' "
                           "type='valid'/>" % REMOTE), got
            remote.close()


def test_dialback_request_limit():
    """s2s.max_dialback_requests: each <db:result/> with a key makes us
    ask another server; an invalid or failed answer frees its pair, so a
    stream could ask for ever.  Past the limit the stream ends with
    <policy-violation/>."""
    with server(users=False,
                overrides={"s2s.max_dialback_requests": "2"}) as s:
        p = dialback_stream(s)
        for i in range(2):
            p.send("<db:result from='%s' to='localhost'>k%d</db:result>"
                   % (REMOTE, i))
            got = p.read_until("<db:result .*?</db:result>", timeout=15)
            assert got.startswith("<db:result from='localhost' to='%s' "
                                  "type='error'>" % REMOTE), got
        p.send("<db:result from='%s' to='localhost'>k2</db:result>" % REMOTE)
        got = p.read_all_until_close()
        assert got == ("<stream:error><policy-violation xmlns='urn:ietf:"
                       "params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:"
                       "params:xml:ns:xmpp-streams'>too many dialback "
                       "requests on this stream</text></stream:error>"
                       "</stream:stream>"), got
        log_has(s, "2 dialback requests on one stream "
                "(s2s.max_dialback_requests)")


def test_ack_requests_paced():
    """<r/> answered with <a/> costs a token of s2s.max_stanza_rate like
    a stanza: a flood is read at that pace (nothing dropped, every <r/>
    answered, the stream not ended)."""
    with server(users=False, overrides={"s2s.max_stanza_rate": "5"},
                workers=1) as s:
        p = Peer(s)
        p.authenticated()
        p.send("<enable xmlns='%s'/>" % NS_SM)
        p.expect_next("<enabled xmlns='%s'/>" % NS_SM)
        p.send("<r xmlns='%s'/>" % NS_SM * 20)
        for _ in range(20):
            p.expect_next("<a xmlns='%s' h='0'/>" % NS_SM)
        log_has(s, "over s2s.max_stanza_rate (5/s): reading paced")

if __name__ == "__main__":
    run_tests([test_header_errors, test_starttls_required_first,
               test_direct_tls_alpn, test_external_and_stanzas_inward,
               test_external_refused, test_stanza_before_auth,
               test_addressing_errors, test_dialback_verify_authoritative,
               test_dialback_result_errors, test_dialback_policy_pkix,
               test_limits, test_auth_timeout,
               test_federated_subscription_and_presence,
               test_remote_sender_offline_and_blocking,
               test_dialback_result_valid, test_idle_stream_closed,
               test_dialback_pair_limit, test_max_incoming,
               test_our_own_domain_refused,
               test_stream_management,
               test_max_incoming_per_domain_across_workers,
               test_component_domain_dialback_both_ways,
               test_component_domain_external_and_claims,
               test_external_covers_the_stream_to_only,
               test_external_certificate_eku,
               test_max_incoming_per_domain_without_from,
               test_unauthenticated_from_takes_no_place,
               test_dialback_request_limit,
               test_ack_requests_paced])

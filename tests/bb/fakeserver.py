"""A fake remote XMPP server for federation tests: a listener on a
loopback address speaking jabber:server as the receiving entity (RFC 6120
section 13), driven step by step by the test so that every byte xmppd
sends can be asserted exactly.  A test CA (openssl, made once per run)
signs certificates for the fake domains; xmppd trusts it through
s2s.ca_file.

    ca = TestCA()
    srv = FakeServer("127.0.0.1", cert=ca.issue("remote.test"))
    ... xmppd dials it ...
    peer = srv.accept()            # a FakePeer, one TCP connection
    hdr = peer.read_header()       # xmppd's stream header, exact text
    peer.send_header("remote.test", features=STARTTLS_REQUIRED)
    peer.expect("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    peer.proceed_tls()             # <proceed/>, then the server handshake

Every wait is bounded (timeout per read); close() closes all sockets.
"""
import os
import re
import secrets
import socket
import ssl
import subprocess
import tempfile
import time

NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_STREAMS = "http://etherx.jabber.org/streams"
NS_DB = "jabber:server:dialback"

STARTTLS_REQUIRED = ("<stream:features><starttls xmlns='%s'><required/>"
                     "</starttls></stream:features>" % NS_TLS)


def features_auth(external=True, dialback=True):
    f = "<stream:features>"
    if external:
        f += ("<mechanisms xmlns='%s'><mechanism>EXTERNAL</mechanism>"
              "</mechanisms>" % NS_SASL)
    if dialback:
        f += "<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>"
    return f + "</stream:features>"


class TestCA:
    """A CA and the certificates it issues (EC P-256, openssl CLI)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="xmppd-ca-")
        self.cert = os.path.join(self.dir, "ca.pem")
        self.key = os.path.join(self.dir, "ca.key")
        self._run("req", "-x509", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:P-256", "-days", "2", "-nodes",
                  "-subj", "/CN=xmppd test CA", "-keyout", self.key,
                  "-out", self.cert)

    def _run(self, *args):
        subprocess.run(("openssl",) + args, check=True, capture_output=True,
                       timeout=60)

    def issue(self, cn, san=None, self_signed=False, eku=None):
        """(cert, key) paths for cn; san is the subjectAltName value
        (default DNS:cn); self_signed skips the CA (dialback tests); eku
        an extendedKeyUsage value ("serverAuth", ...; default none)."""
        name = "%s-%s" % (cn.replace("*", "star"), secrets.token_hex(3))
        cert = os.path.join(self.dir, name + ".pem")
        key = os.path.join(self.dir, name + ".key")
        san = san or "DNS:%s" % cn
        if self_signed:
            self._run("req", "-x509", "-newkey", "ec", "-pkeyopt",
                      "ec_paramgen_curve:P-256", "-days", "2", "-nodes",
                      "-subj", "/CN=%s" % cn, "-addext",
                      "subjectAltName=%s" % san, "-keyout", key, "-out", cert)
            return cert, key
        csr = os.path.join(self.dir, name + ".csr")
        ext = os.path.join(self.dir, name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\n" % san)
            if eku is not None:
                f.write("extendedKeyUsage=%s\n" % eku)
        self._run("req", "-new", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=%s" % cn,
                  "-keyout", key, "-out", csr)
        self._run("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey",
                  self.key, "-CAcreateserial", "-days", "2", "-extfile", ext,
                  "-out", cert)
        return cert, key


class FakePeer:
    """One connection xmppd opened to the fake server."""

    def __init__(self, sock, cert, timeout):
        self.sock = sock
        self.cert = cert
        self.timeout = timeout
        self.buf = b""
        self.received = b""     # every byte, decrypted

    def _recv(self, left):
        self.sock.settimeout(max(left, 0.01))
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return None
        except (ConnectionResetError, ssl.SSLError):
            chunk = b""
        self.received += chunk
        return chunk

    def read_until(self, pattern, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        rx = re.compile(pattern.encode() if isinstance(pattern, str) else pattern, re.S)
        while True:
            m = rx.search(self.buf)
            if m:
                self.buf = self.buf[m.end():]
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("fake server: timeout waiting for %r; got %r"
                                     % (pattern, self.buf[-500:]))
            chunk = self._recv(left)
            if chunk is None:
                continue
            if not chunk:
                raise AssertionError("fake server: closed waiting for %r; got %r"
                                     % (pattern, self.buf[-500:]))
            self.buf += chunk

    def expect(self, text, timeout=None):
        """The next bytes are exactly text."""
        m = self.read_until(re.escape(text), timeout)
        return m.group(0).decode()

    def expect_next(self, text, timeout=None):
        """The very next bytes (nothing before them) are exactly text."""
        before = self.buf
        m = self.read_until(re.escape(text), timeout)
        assert m.start() == 0, "fake server: unexpected %r before %r" % (
            (before + b"")[:m.start()], text)
        return m.group(0).decode()

    def expect_next_re(self, pattern, timeout=None):
        """The very next bytes match the regex pattern."""
        before = self.buf
        m = self.read_until(pattern, timeout)
        assert m.start() == 0, "fake server: unexpected %r before %r" % (
            before[:m.start()], pattern)
        return m

    def read_header(self):
        m = self.read_until(r"<\?xml version='1.0'\?><stream:stream [^>]*>")
        return m.group(0).decode()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def send_header(self, domain, to=None, features=None, stream_id=None):
        self.stream_id = stream_id or secrets.token_hex(8)
        t = " to='%s'" % to if to else ""
        self.send("<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
                  "xmlns:stream='%s' xmlns:db='%s' from='%s'%s id='%s' "
                  "version='1.0'>%s" % (NS_STREAMS, NS_DB, domain, t,
                                        self.stream_id, features or ""))

    def proceed_tls(self, client_ca=None):
        self.send("<proceed xmlns='%s'/>" % NS_TLS)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*self.cert)
        self.sni = None

        def sni(sock, name, c):
            self.sni = name
        ctx.sni_callback = sni
        if client_ca:
            ctx.load_verify_locations(client_ca)
            ctx.verify_mode = ssl.CERT_OPTIONAL
        self.sock.settimeout(self.timeout)
        self.sock = ctx.wrap_socket(self.sock, server_side=True)
        assert self.buf == b"", "bytes in clear after <starttls/>: %r" % self.buf

    def direct_tls(self, alpn=None):
        """XEP-0368: TLS first; returns the protocol ALPN selected (we
        offer alpn, e.g. ["xmpp-server"])."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*self.cert)
        if alpn:
            ctx.set_alpn_protocols(alpn)
        self.sni = None

        def sni(sock, name, c):
            self.sni = name
        ctx.sni_callback = sni
        self.sock.settimeout(self.timeout)
        self.sock = ctx.wrap_socket(self.sock, server_side=True)
        return self.sock.selected_alpn_protocol()

    def is_closed(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = self._recv(deadline - time.monotonic())
            if chunk is None:
                continue
            if not chunk:
                return True
            self.buf += chunk
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class FakeServer:
    """A listener for xmppd's outgoing connections."""

    def __init__(self, addr="127.0.0.1", port=0, cert=None, timeout=10.0):
        self.addr = addr
        self.cert = cert
        self.timeout = timeout
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((addr, port))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.peers = []

    def accept(self, timeout=None):
        self.lsock.settimeout(timeout or self.timeout)
        try:
            s, _ = self.lsock.accept()
        except socket.timeout:
            raise AssertionError("fake server: xmppd did not connect")
        p = FakePeer(s, self.cert, self.timeout)
        self.peers.append(p)
        return p

    def close(self):
        for p in self.peers:
            p.close()
        self.lsock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

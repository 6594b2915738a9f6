"""TLS records, black box: after a TLS 1.3 handshake xmppd seals and
opens records itself (worker/tls13.c).  Checked against real TLS stacks:
Python's ssl (OpenSSL) for all three TLS 1.3 suites and for TLS 1.2
(which stays with OpenSSL), stanzas that span many records both ways,
OpenSSL's s_client asking for KeyUpdate, a tampered record (the client
must get bad_record_mac and nobody else may notice), close_notify, and
the OpenSSL-only fallback (tls.own_record_layer = no).  Needs
XMPPD_TEST_PGCONN.
"""
import os
import random
import re
import select
import shutil
import socket
import ssl
import string
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Client, Server, run_tests,  # noqa: E402
                     stream_header, test_certificate, wait_for)

USERS = [("alice@localhost", "wonder1and"), ("bob@localhost", "bu1lder!")]
SUITES = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
          "TLS_CHACHA20_POLY1305_SHA256"]


def body_text(n, seed):
    rnd = random.Random(seed)
    return "".join(rnd.choice(string.ascii_letters + string.digits + " ")
                   for _ in range(n))


def ping(c, ident):
    c.send("<iq type='get' id='%s' to='localhost'><ping xmlns='urn:xmpp:ping'/>"
           "</iq>" % ident)
    c.read_until("<iq[^>]*id='%s'[^>]*/>|<iq[^>]*id='%s'[^>]*></iq>"
                 % (ident, ident))


def message(c, to, body, ident):
    c.send("<message to='%s' type='chat' id='%s'><body>%s</body></message>"
           % (to, ident, body))


def expect_message(c, ident, body, timeout=10):
    got = c.read_until("<message[^>]*id='%s'[^>]*>.*?</message>" % ident,
                       timeout=timeout)
    text = re.search("<body>(.*)</body>", got, re.S).group(1)
    assert text == body, "body of %s: %d bytes, want %d" % (
        ident, len(text), len(body))


def tls12_login(port, user, password, resource):
    """Like Client.login, but the TLS handshake may not pass TLS 1.2."""
    c = Client(port)
    c.open()
    c.starttls(max_version=ssl.TLSVersion.TLSv1_2)
    assert c.sock.version() == "TLSv1.2", c.sock.version()
    got = c.auth_scram(user, password)
    assert got.startswith("<success"), got
    c.open()
    return c, c.bind(resource)


def test_suites_and_large_stanzas():
    """Each TLS 1.3 suite: login, a 200 KB message each way (13 records),
    20 pipelined 30 KB messages, SCRAM-PLUS over tls-server-end-point."""
    for suite in SUITES:
        with Server(workers=2, users=USERS,
                    overrides={"tls.ciphersuites": suite}) as s:
            a, b = Client(s.port), Client(s.port)
            ja = a.login("alice", "wonder1and", resource="a")
            jb = b.login("bob", "bu1lder!", resource="b")
            assert a.sock.cipher()[0] == suite, a.sock.cipher()
            big = body_text(200 * 1024, suite)
            message(a, jb, big, "big1")
            expect_message(b, "big1", big)
            message(b, ja, big[::-1], "big2")
            expect_message(a, "big2", big[::-1])
            bodies = [body_text(30 * 1024, i) for i in range(20)]
            a.send("".join("<message to='%s' type='chat' id='m%d'><body>%s"
                           "</body></message>" % (jb, i, t)
                           for i, t in enumerate(bodies)))
            for i, t in enumerate(bodies):
                expect_message(b, "m%d" % i, t)
            ping(a, "p1")
            log = s.log_text()
            assert re.search(r"TLSv1\.3 %s \(xmppd records\)" % suite, log), \
                "no takeover for %s" % suite
            # Channel binding taken before OpenSSL's state was freed.
            c = Client(s.port)
            c.open()
            c.starttls()
            from harness import tls_server_end_point
            got = c.auth_scram("alice", "wonder1and", plus="tls-server-end-point",
                               cb_data=tls_server_end_point(c.sock))
            assert got.startswith("<success"), got
            for x in (a, b, c):
                x.close()


def hkdf_expand_label(hash_name, secret, label, context, length):
    """RFC 8446 7.1, for length <= the hash length (one HMAC block)."""
    import hmac
    import struct
    full = b"tls13 " + label
    info = (struct.pack(">H", length) + bytes([len(full)]) + full +
            bytes([len(context)]) + context)
    return hmac.new(secret, info + b"\x01", hash_name).digest()[:length]


def test_scram_plus_tls_exporter():
    """SCRAM-SHA-256-PLUS with tls-exporter (RFC 9266) on each suite: the
    client derives the binding itself from its key log (RFC 8446 7.5),
    so this checks the server's value byte for byte."""
    import hashlib
    import tempfile
    for suite in SUITES:
        with Server(workers=1, users=USERS,
                    overrides={"tls.ciphersuites": suite}) as s, \
                tempfile.TemporaryDirectory() as tmp:
            c = Client(s.port)
            c.open()
            c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            c.read_until("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            ctx.keylog_filename = os.path.join(tmp, "keys")
            c.sock = ctx.wrap_socket(c.sock, server_hostname="localhost")
            c.buf = b""
            feats = c.open()
            assert "<channel-binding type='tls-exporter'/>" in feats, feats
            secret = None
            with open(ctx.keylog_filename) as f:
                for line in f:
                    if line.startswith("EXPORTER_SECRET "):
                        secret = bytes.fromhex(line.split()[2])
            assert secret is not None
            h = "sha384" if suite.endswith("SHA384") else "sha256"
            empty = hashlib.new(h, b"").digest()
            derived = hkdf_expand_label(h, secret, b"EXPORTER-Channel-Binding",
                                        empty, len(secret))
            cb = hkdf_expand_label(h, derived, b"exporter", empty, 32)
            got = c.auth_scram("alice", "wonder1and", plus="tls-exporter",
                               cb_data=cb)
            assert got.startswith("<success"), (suite, got)
            c.close()
            # A wrong binding fails: the check is real.
            c = Client(s.port)
            c.open()
            c.starttls()
            got = c.auth_scram("alice", "wonder1and", plus="tls-exporter",
                               cb_data=cb)
            assert got.startswith("<failure"), (suite, got)
            c.close()


def test_tls12_stays_with_openssl():
    """A TLS 1.2 client and a TLS 1.3 client talk to each other."""
    with Server(workers=1, users=USERS) as s:
        old, jold = tls12_login(s.port, "alice", "wonder1and", "old")
        new = Client(s.port)
        jnew = new.login("bob", "bu1lder!", resource="new")
        big = body_text(100 * 1024, 12)
        message(old, jnew, big, "x1")
        expect_message(new, "x1", big)
        message(new, jold, "hello 1.2", "x2")
        expect_message(old, "x2", "hello 1.2")
        log = s.log_text()
        assert re.search(r"TLSv1\.2 \S+\n", log), log[-2000:]
        assert "(xmppd records)" in log
        old.close()
        new.close()


def s_client(port, extra=(), msg=True):
    """openssl s_client; with msg, it prints each TLS message it sees."""
    return subprocess.Popen(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
         "-starttls", "xmpp", "-xmpphost", "localhost", "-tls1_3"]
        + (["-msg"] if msg else []) + list(extra),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT)


def read_proc_until(p, pattern, buf, timeout=10):
    deadline = time.monotonic() + timeout
    rx = re.compile(pattern, re.S)
    while not rx.search(buf[0]):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("timeout waiting for %r; got %r"
                                 % (pattern, buf[0][-1500:]))
        r, _, _ = select.select([p.stdout], [], [], left)
        if r:
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError("s_client ended waiting for %r; got %r"
                                     % (pattern, buf[0][-1500:]))
            buf[0] += chunk.decode(errors="replace")
    m = rx.search(buf[0])
    buf[0] = buf[0][m.end():]
    return m.group(0)


def test_key_update_with_openssl_s_client():
    """s_client's K asks us to update our keys too, k does not; both
    directions must go on decrypting after each one."""
    if shutil.which("openssl") is None:
        raise AssertionError("openssl(1) is needed (Debian package openssl)")
    import base64
    with Server(workers=1, users=USERS) as s:
        p = s_client(s.port)
        buf = [""]
        try:
            read_proc_until(p, r"Verify return code", buf)
            p.stdin.write(stream_header().encode())
            p.stdin.flush()
            read_proc_until(p, r"</stream:features>", buf)
            for cmd in ("K", "k", "K"):
                p.stdin.write(b"%s\n" % cmd.encode())
                p.stdin.flush()
                read_proc_until(p, r">>> TLS 1.3, Handshake \[length 0005\]"
                                   r", KeyUpdate", buf)
                if cmd == "K":
                    read_proc_until(p, r"<<< TLS 1.3, Handshake \[length "
                                       r"0005\], KeyUpdate", buf)
                time.sleep(0.1)
            auth = base64.b64encode(b"\0alice\0wonder1and").decode()
            p.stdin.write(("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                           "mechanism='PLAIN'>%s</auth>\n" % auth).encode())
            p.stdin.flush()
            read_proc_until(p, r"<success xmlns='urn:ietf:params:xml:ns:"
                               r"xmpp-sasl'", buf)
        finally:
            p.kill()
            p.wait()
        log = s.log_text()
        assert log.count("TLS KeyUpdate (update requested)") == 2, log[-3000:]
        assert log.count("TLS KeyUpdate\n") == 1, log[-3000:]


def test_max_fragment_length_stays_with_openssl():
    """A client that negotiated max_fragment_length 512 (RFC 6066) keeps
    OpenSSL's record layer, which honours it: a 4 KB message still
    arrives (s_client rejects records over 512 bytes)."""
    import base64
    with Server(workers=1, users=USERS) as s:
        p = s_client(s.port, ["-maxfraglen", "512"], msg=False)
        buf = [""]
        try:
            read_proc_until(p, r"Verify return code", buf)
            p.stdin.write(stream_header().encode())
            p.stdin.flush()
            read_proc_until(p, r"</stream:features>", buf)
            auth = base64.b64encode(b"\0alice\0wonder1and").decode()
            p.stdin.write(("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                           "mechanism='PLAIN'>%s</auth>\n" % auth).encode())
            p.stdin.flush()
            read_proc_until(p, r"<success xmlns='urn:ietf:params:xml:ns:"
                               r"xmpp-sasl'", buf)
            p.stdin.write(stream_header().encode())
            p.stdin.write(b"<iq type='set' id='b1'><bind xmlns='urn:ietf:"
                          b"params:xml:ns:xmpp-bind'><resource>m</resource>"
                          b"</bind></iq>\n")
            p.stdin.flush()
            read_proc_until(p, r"<jid>alice@localhost/m</jid>", buf)
            body = body_text(4096, 9)
            p.stdin.write(("<message to='alice@localhost/m' id='mf'><body>"
                           "%s</body></message>\n" % body).encode())
            p.stdin.flush()
            got = read_proc_until(p, r"<message[^>]*id='mf'.*?</message>",
                                  buf)
            assert body in got.replace("\n", ""), got[:300]
        finally:
            p.kill()
            p.wait()
        log = s.log_text()
        assert re.search(r"TLSv1\.3 TLS_\S+\n", log), log[-2000:]
        assert "(xmppd records)" not in log


def record_headers(wire):
    """[(content type, length)] of the TLS records in wire, which must
    hold whole records only."""
    recs, off = [], 0
    while off + 5 <= len(wire):
        recs.append((wire[off], int.from_bytes(wire[off + 3:off + 5], "big")))
        off += 5 + recs[-1][1]
    assert off == len(wire), "not whole records: %r" % recs
    return recs


class MemTLS:
    """A TLS 1.3 client over memory BIOs, so that the test can see and
    change the records on the wire."""

    def __init__(self, port, tls12=False, keylog=None, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:      # before connect: the window follows it
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            # A small MSS keeps the server's send buffer small too (the
            # kernel sizes it in segments): its writes soon stop.
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
        self.sock.settimeout(5)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(stream_header().encode())
        buf = b""
        while b"</stream:features>" not in buf:
            buf += self.sock.recv(65536)
        self.sock.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        while b"<proceed" not in buf:
            buf += self.sock.recv(65536)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if tls12:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        else:
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        if keylog:
            ctx.keylog_filename = keylog
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname="localhost")
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.pump()
        self.sock.sendall(self.out.read())

    def close_stream(self):
        """Send </stream:stream>; return every byte until the TCP close."""
        self.sock.sendall(self.records(stream_header()))
        self.read_until("</stream:features>")
        self.sock.sendall(self.records("</stream:stream>"))
        self.sock.settimeout(5)
        wire = b""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return wire
            wire += chunk

    def pump(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        self.inc.write(chunk)

    def records(self, text):
        self.obj.write(text.encode())
        return self.out.read()

    def read_until(self, pattern, timeout=5):
        deadline = time.monotonic() + timeout
        got = ""
        while not re.search(pattern, got):
            if time.monotonic() > deadline:
                raise AssertionError("timeout: %r" % got)
            try:
                got += self.obj.read(65536).decode()
            except ssl.SSLWantReadError:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed; got %r" % got)
                self.inc.write(chunk)
        return got


def test_tampered_record_and_close_notify():
    with Server(workers=1, users=USERS) as s:
        bystander = Client(s.port)
        jb = bystander.login("bob", "bu1lder!", resource="by")
        # One flipped bit in the ciphertext: bad_record_mac, then closed.
        t = MemTLS(s.port)
        wire = bytearray(t.records(stream_header()))
        wire[len(wire) // 2] ^= 0x01
        t.sock.sendall(bytes(wire))
        err = None
        try:
            t.read_until("never")
        except ssl.SSLError as e:
            err = e
        except ConnectionError as e:
            err = e
        assert err is not None and "BAD_RECORD_MAC" in str(err).upper(), err
        assert wait_for(lambda: "record did not authenticate: sending alert 20"
                        in s.log_text(), what="the alert in the log")
        # A record with an unknown outer type gets unexpected_message.
        t = MemTLS(s.port)
        wire = bytearray(t.records(stream_header()))
        wire[0] = 22
        t.sock.sendall(bytes(wire))
        try:
            t.read_until("never")
            raise AssertionError("not closed")
        except (ssl.SSLError, ConnectionError) as e:
            assert "UNEXPECTED_MESSAGE" in str(e).upper(), e
        # We close the stream: close_notify precedes the TCP close.
        t = MemTLS(s.port)
        wire = t.close_stream()
        t.inc.write(wire)
        t.inc.write_eof()
        # The last record holds 2 bytes + content type + tag: the alert.
        recs = record_headers(wire)
        assert recs and recs[-1][1] == 2 + 1 + 16, recs
        got = ""
        try:
            while True:
                data = t.obj.read(65536)
                if not data:
                    break   # close_notify read: a clean TLS close
                got += data.decode()
        except ssl.SSLZeroReturnError:
            pass        # the same, said differently
        # Without close_notify the EOF is ragged: SSLEOFError above.
        assert got.endswith("</stream:stream>"), got
        # close_notify: the server closes the connection, quietly.
        t = MemTLS(s.port)
        t.sock.sendall(t.records(stream_header()))
        t.read_until("</stream:features>")
        try:
            t.obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        t.sock.sendall(t.out.read())
        t.sock.settimeout(5)
        rest = b""
        while True:
            chunk = t.sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        assert wait_for(lambda: "TLS close_notify" in s.log_text(),
                        what="close_notify in the log")
        # Nobody else noticed.
        ping(bystander, "still")
        message(bystander, jb, "to myself", "self1")
        expect_message(bystander, "self1", "to myself")
        bystander.close()


def test_tls12_close_notify():
    """On the OpenSSL path too (TLS 1.2), our stream close is followed by
    close_notify: the last record before the TCP close is an alert."""
    with Server(workers=1, users=USERS) as s:
        t = MemTLS(s.port, tls12=True)
        assert t.obj.version() == "TLSv1.2", t.obj.version()
        recs = record_headers(t.close_stream())
        assert recs and recs[-1][0] == 21, recs     # TLS 1.2: type visible


class TrafficKey:
    """One direction's traffic key and sequence number (RFC 8446 5.3,
    7.2, 7.3; TLS_AES_128_GCM_SHA256); gen counts KeyUpdates."""

    def __init__(self, secret):
        self.gen = -1
        self.set(secret)

    def set(self, secret):
        self.secret = secret
        self.key = hkdf_expand_label("sha256", secret, b"key", b"", 16)
        self.iv = hkdf_expand_label("sha256", secret, b"iv", b"", 12)
        self.seq = 0
        self.gen += 1

    def update(self):
        self.set(hkdf_expand_label("sha256", self.secret, b"traffic upd",
                                   b"", 32))

    def nonce(self):
        n = bytes(a ^ b for a, b in zip(self.iv, self.seq.to_bytes(12, "big")))
        self.seq += 1
        return n


class Crafted:
    """Records sealed by the test itself with the client's traffic keys
    (from its key log; TLS_AES_128_GCM_SHA256), so that it can send what
    no TLS library sends: bad input for the server's record layer.  The
    server's records are opened with its keys from the same key log, so
    the test sees each one: its key generation, type and content."""

    def __init__(self, port, tmp, rcvbuf=None):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        self.AESGCM = AESGCM
        keylog = os.path.join(tmp, "keys-%d" % time.monotonic_ns())
        self.t = MemTLS(port, keylog=keylog, rcvbuf=rcvbuf)
        secrets = {}
        with open(keylog) as f:
            for line in f:
                if not line.startswith("#"):
                    label, _, secret = line.split()
                    secrets[label] = bytes.fromhex(secret)
        self.rekey(secrets["CLIENT_TRAFFIC_SECRET_0"])
        self.rd = TrafficKey(secrets["SERVER_TRAFFIC_SECRET_0"])
        self.wire = b""     # the server's bytes, not yet a whole record
        self.app = ""       # the server's application data, not yet read
        self.got = []       # the server's records: (gen, type, content)
        self.eof = False

    def receive(self, timeout=5):
        """One recv(); opens the whole records.  False at the TCP close."""
        self.t.sock.settimeout(timeout)
        try:
            chunk = self.t.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.wire += chunk
        while len(self.wire) >= 5:
            n = int.from_bytes(self.wire[3:5], "big")
            if len(self.wire) < 5 + n:
                break
            header, body = self.wire[:5], self.wire[5:5 + n]
            self.wire = self.wire[5 + n:]
            gen = self.rd.gen
            inner = self.AESGCM(self.rd.key).decrypt(self.rd.nonce(), body,
                                                    header).rstrip(b"\0")
            ctype, content = inner[-1], inner[:-1]
            self.got.append((gen, ctype, content))
            if ctype == 23:
                self.app += content.decode()
            if ctype == 22 and content[:1] == b"\x18":
                self.rd.update()
        return True

    def read_app(self, pattern, timeout=10):
        """The server's application data up to and including pattern."""
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.app, re.S):
            left = deadline - time.monotonic()
            if left <= 0 or not self.receive(left):
                raise AssertionError("waiting for %r: %r" % (
                    pattern, self.app[-500:]))
        m = re.search(pattern, self.app, re.S)
        got, self.app = self.app[:m.end()], self.app[m.end():]
        return got

    def until_close(self, timeout=10):
        """Every record of the server until it closes the connection."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("not closed; last records %r"
                                     % self.got[-3:])
            try:
                self.receive(left)
            except socket.timeout:
                pass
        assert self.wire == b"", "a torn record at the close"
        return self.got

    def login(self, user, password, resource):
        """SASL PLAIN and bind, all in crafted records; the full JID."""
        import base64
        self.send_text(stream_header())
        self.read_app("</stream:features>")
        auth = base64.b64encode(b"\0%s\0%s" % (user.encode(),
                                               password.encode())).decode()
        self.send_text("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                       "mechanism='PLAIN'>%s</auth>" % auth)
        self.read_app("<success[^>]*/>|<success.*?</success>")
        self.send_text(stream_header())
        self.read_app("</stream:features>")
        self.send_text("<iq type='set' id='bind1'><bind xmlns='urn:ietf:"
                       "params:xml:ns:xmpp-bind'><resource>%s</resource>"
                       "</bind></iq>" % resource)
        return re.search("<jid>(.*?)</jid>", self.read_app("</iq>")).group(1)

    def rekey(self, secret):
        self.secret = secret
        self.key = hkdf_expand_label("sha256", secret, b"key", b"", 16)
        self.iv = hkdf_expand_label("sha256", secret, b"iv", b"", 12)
        self.seq = 0

    def update(self):       # RFC 8446 7.2
        self.rekey(hkdf_expand_label("sha256", self.secret, b"traffic upd",
                                     b"", 32))

    def seal(self, content, ctype):
        """One record under our key (content may not pass 16 KB)."""
        inner = content + bytes([ctype])
        header = bytes([23, 3, 3]) + (len(inner) + 16).to_bytes(2, "big")
        nonce = bytes(a ^ b for a, b in
                      zip(self.iv, self.seq.to_bytes(12, "big")))
        self.seq += 1
        return header + self.AESGCM(self.key).encrypt(nonce, inner, header)

    def send(self, content, ctype):
        self.t.sock.sendall(self.seal(content, ctype))

    def send_text(self, text):
        """Application data in as many 16 KB records as it takes."""
        data = text.encode()
        self.t.sock.sendall(b"".join(self.seal(data[i:i + 16384], 23)
                                     for i in range(0, len(data), 16384)))

    def closed(self, timeout=5):
        """True when the server closes the TCP connection."""
        self.t.sock.settimeout(timeout)
        try:
            while True:
                if not self.t.sock.recv(65536):
                    return True
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True


def test_crafted_records_get_their_alerts():
    """RFC 8446: a KeyUpdate split over two records is honoured; each
    malformed record gets its exact alert, logged with a reason, and the
    connection closes; another client's session is not disturbed."""
    import tempfile
    cases = [
        # (records as (content, type), reason logged, alert)
        ([(b"\x18\x00\x00\x01\x02", 22)], "bad KeyUpdate request_update", 47),
        ([(b"\x18\x00\x00\x01\x00\x00", 22)],
         "KeyUpdate does not end its record", 10),
        ([(b"\x18\x00", 22), (b"<x/>", 23)],
         "record inside a split KeyUpdate", 10),
        ([(b"\x18\x00\x00\x02\x00", 22)], "bad KeyUpdate", 50),
        ([(b"\x01\x00\x00\x00", 22)],
         "handshake message after the handshake", 10),
        ([(b"", 22)], "empty handshake record", 10),
        ([(b"", 21)], "empty alert", 10),
        ([(b"\x02", 21)], "bad alert", 50),
        ([(b"x" * 16385, 23)], "record too long", 22),
        ([(b"x", 20)], "bad content type", 10),
    ]
    with Server(workers=1, users=USERS, overrides={
            "tls.ciphersuites": "TLS_AES_128_GCM_SHA256"}) as s, \
            tempfile.TemporaryDirectory() as tmp:
        bystander = Client(s.port)
        jb = bystander.login("bob", "bu1lder!", resource="by")
        for records, reason, alert in cases:
            c = Crafted(s.port, tmp)
            for content, ctype in records:
                c.send(content, ctype)
            assert c.closed(), reason
            want = "TLS: %s: sending alert %d" % (reason, alert)
            assert wait_for(lambda: want in s.log_text(), what=want)
        # A KeyUpdate in two records, then data under the new key: the
        # server reads it (answers the stream header), no alert.
        c = Crafted(s.port, tmp)
        c.send(b"\x18\x00", 22)
        c.send(b"\x00\x01\x00", 22)
        c.update()
        c.send(stream_header().encode(), 23)
        c.t.read_until("</stream:features>")
        assert not c.closed(0.3)
        message(bystander, jb, "still here", "b1")
        expect_message(bystander, "b1", "still here")
        bystander.close()


KEY_UPDATE_REQUESTED = b"\x18\x00\x00\x01\x01"


def test_key_update_flood():
    """KeyUpdate(update_requested) in a row without application data:
    tls.max_key_updates of them are answered, the next one gets
    unexpected_message, after the answers already sealed (the alert is
    never skipped because sealed bytes wait); application data between
    them resets the count; another client notices nothing."""
    import tempfile
    limit = 8
    with Server(workers=1, users=USERS, overrides={
            "tls.ciphersuites": "TLS_AES_128_GCM_SHA256",
            "tls.max_key_updates": str(limit)}) as s, \
            tempfile.TemporaryDirectory() as tmp:
        bystander = Client(s.port)
        jb = bystander.login("bob", "bu1lder!", resource="by")
        # Interleaved with data: never too many.
        c = Crafted(s.port, tmp)
        c.login("alice", "wonder1and", "ku")
        for i in range(3 * limit):
            c.send(KEY_UPDATE_REQUESTED, 22)
            c.update()
            c.send(b" ", 23)
        c.send_text("<iq type='get' id='after'><ping xmlns='urn:xmpp:ping'/>"
                    "</iq>")
        c.read_app("id='after'")
        updates = sum(1 for _, t, m in c.got if t == 22)
        assert updates == 3 * limit, updates
        # A flood, in one write: the server reads it in one go.
        c = Crafted(s.port, tmp)
        c.send_text(stream_header())
        c.read_app("</stream:features>")
        flood = b""
        for i in range(10 * limit):
            flood += c.seal(KEY_UPDATE_REQUESTED, 22)
            c.update()
        c.t.sock.sendall(flood)
        got = c.until_close()
        updates = [g for g, t, m in got if t == 22]
        assert len(updates) == limit, len(updates)
        assert got[-1][1:] == (21, b"\x02\x0a"), got[-3:]
        want = "TLS: too many KeyUpdates without data: sending alert 10"
        assert wait_for(lambda: want in s.log_text(), what=want)
        ping(bystander, "still")
        message(bystander, jb, "fine", "k1")
        expect_message(bystander, "k1", "fine")
        bystander.close()


def test_alert_after_pending_output():
    """Sealed bytes wait when a record does not authenticate: a
    KeyUpdate answer not yet written, or the client's own messages when
    it does not read (the server's writes stalled).  The client still
    gets every record sealed before, then bad_record_mac, then the
    close (RFC 8446 section 6); another client notices nothing."""
    import tempfile
    with Server(workers=1, users=USERS, overrides={
            "tls.ciphersuites": "TLS_AES_128_GCM_SHA256"}) as s, \
            tempfile.TemporaryDirectory() as tmp:
        bystander = Client(s.port)
        jb = bystander.login("bob", "bu1lder!", resource="by")
        # In one write: a KeyUpdate asking for ours (sealed, waiting for
        # the end of the loop turn), then a bad record: both arrive.
        c = Crafted(s.port, tmp)
        c.send_text(stream_header())
        c.read_app("</stream:features>")
        both = c.seal(KEY_UPDATE_REQUESTED, 22)
        c.update()
        bad = bytearray(c.seal(b"<x/>", 23))
        bad[-1] ^= 1
        c.t.sock.sendall(both + bytes(bad))
        got = c.until_close()
        assert [r[1:] for r in got[-2:]] == [
            (22, b"\x18\x00\x00\x01\x00"), (21, b"\x02\x14")], got[-2:]
        # The socket does not take what waits: the connection stays
        # until it does.
        c = Crafted(s.port, tmp, rcvbuf=4096)
        ja = c.login("alice", "wonder1and", "slow")
        # Messages to itself until the server's writes stop (the log
        # says so), then a record that does not authenticate.
        port = c.t.sock.getsockname()[1]
        stalled = "127.0.0.1:%d: TLS output waits for the socket" % port
        for i in range(25):
            c.send_text("<message to='%s' type='chat' id='s%d'><body>%s"
                        "</body></message>" % (ja, i, body_text(40 * 1024, i)))
            ping(bystander, "b%d" % i)   # the worker got past it
            if stalled in s.log_text():
                break
        assert stalled in s.log_text(), "the output never stalled"
        c.send_text("<message to='%s' type='chat' id='last'><body>%s</body>"
                    "</message>" % (ja, body_text(40 * 1024, 99)))
        ping(bystander, "last")
        bad = bytearray(c.seal(b"<x/>", 23))
        bad[-1] ^= 1
        c.t.sock.sendall(bytes(bad))
        want = "TLS: record did not authenticate: sending alert 20"
        assert wait_for(lambda: want in s.log_text(), what=want)
        lingers = "TLS alert waits for sealed bytes to be written"
        assert wait_for(lambda: lingers in s.log_text(), what=lingers)
        got = c.until_close()
        assert got[-1][1:] == (21, b"\x02\x14"), got[-1]
        assert all(t == 23 for _, t, _ in got[:-1]), \
            [t for _, t, _ in got if t != 23]
        ping(bystander, "still")
        message(bystander, jb, "fine", "p1")
        expect_message(bystander, "p1", "fine")
        bystander.close()


def test_user_canceled_closes():
    """user_canceled (RFC 8446 6.1) is a closure alert: the server logs
    it and closes with its own close_notify, no fatal alert.  After a
    client's fatal alert, no close_notify."""
    import tempfile
    with Server(workers=1, users=USERS, overrides={
            "tls.ciphersuites": "TLS_AES_128_GCM_SHA256"}) as s, \
            tempfile.TemporaryDirectory() as tmp:
        c = Crafted(s.port, tmp)
        c.send_text(stream_header())
        c.read_app("</stream:features>")
        c.send(b"\x01\x5a", 21)
        got = c.until_close()
        assert got[-1][1:] == (21, b"\x01\x00"), got[-1]
        assert not any(t == 21 for _, t, _ in got[:-1]), got
        want = "TLS user_canceled from the client: closing"
        assert wait_for(lambda: want in s.log_text(), what=want)
        assert "sending alert" not in s.log_text()
        # A fatal alert from the client: closed at once, and nothing
        # more from us, not even close_notify (RFC 8446 section 6).
        c = Crafted(s.port, tmp)
        c.send_text(stream_header())
        c.read_app("</stream:features>")
        c.send(b"\x02\x28", 21)
        got = c.until_close()
        assert all(t == 23 for _, t, _ in got), got[-1]
        assert wait_for(lambda: "TLS alert 40 from the client"
                        in s.log_text(), what="the alert in the log")


def test_records_per_key_counts_every_record():
    """With tls.records_per_key = 1 every record of ours goes under a
    fresh key: a KeyUpdate comes before the alert as before data."""
    import tempfile
    with Server(workers=1, users=USERS, overrides={
            "tls.ciphersuites": "TLS_AES_128_GCM_SHA256",
            "tls.records_per_key": "1"}) as s, \
            tempfile.TemporaryDirectory() as tmp:
        c = Crafted(s.port, tmp)
        c.send_text(stream_header())
        c.read_app("</stream:features>")
        c.send(b"x", 20)
        got = c.until_close()
        assert got[-1][1:] == (21, b"\x02\x0a"), got[-1]
        per_key = {}
        for gen, t, m in got:
            if t != 22:
                per_key[gen] = per_key.get(gen, 0) + 1
        assert max(per_key.values()) == 1, per_key
        assert len(per_key) >= 2, per_key


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def test_partial_record_memory():
    """Connections that each hold the first bytes of a 16 KB record
    cost what they hold, not a 16 KB buffer each: the worker's RSS grows
    by less than 2 KB per connection (a whole record buffer before).
    XMPPD_TLS_PARTIAL_CONNS sets the count (150); the figures go to
    stdout."""
    n = int(os.environ.get("XMPPD_TLS_PARTIAL_CONNS", "150"))
    with Server(workers=1, users=USERS, overrides={
            "c2s.max_connections_per_ip": "0"}) as s:
        pid = s.worker_pids()[0]
        barrier = Client(s.port)
        barrier.login("bob", "bu1lder!", resource="b")
        before = rss_kb(pid)
        conns = []
        for i in range(n):
            t = MemTLS(s.port)
            t.sock.sendall(t.records(stream_header()))
            conns.append(t)
        for t in conns:
            t.read_until("</stream:features>")
        ping(barrier, "idle")
        idle = rss_kb(pid)
        # A record header saying 16 KB follows, and 10 bytes of it.
        for t in conns:
            t.sock.sendall(bytes([23, 3, 3, 0x40, 0x11]) + b"0123456789")
        ping(barrier, "partial")     # read after all the partial records
        partial = rss_kb(pid)
        print("# %d connections: idle %.1f KB each, +%.2f KB each with a "
              "partial record" % (n, (idle - before) / n,
                                  (partial - idle) / n), flush=True)
        assert partial - idle < 2 * n, (before, idle, partial)
        for t in conns:
            t.sock.close()
        barrier.close()


def test_openssl_only_when_switched_off():
    with Server(workers=1, users=USERS,
                overrides={"tls.own_record_layer": "no"}) as s:
        a = Client(s.port)
        ja = a.login("alice", "wonder1and", resource="x")
        big = body_text(64 * 1024, 3)
        message(a, ja, big, "own")
        expect_message(a, "own", big)
        log = s.log_text()
        assert re.search(r"TLSv1\.3 TLS_\S+\n", log), log[-2000:]
        assert "(xmppd records)" not in log
        a.close()


if __name__ == "__main__":
    test_certificate()
    run_tests([test_suites_and_large_stanzas, test_scram_plus_tls_exporter,
               test_tls12_stays_with_openssl,
               test_key_update_with_openssl_s_client,
               test_max_fragment_length_stays_with_openssl,
               test_tampered_record_and_close_notify, test_tls12_close_notify,
               test_crafted_records_get_their_alerts,
               test_key_update_flood, test_alert_after_pending_output,
               test_user_canceled_closes,
               test_records_per_key_counts_every_record,
               test_partial_record_memory,
               test_openssl_only_when_switched_off])

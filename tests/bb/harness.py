"""Black-box harness: start the real xmppd on free loopback ports with a
temporary config, talk to it with raw sockets and xmppctl, stop it.

Everything is bounded: every wait has a deadline, every process started
here is killed at the end (even when a test fails).
"""
import base64
import hashlib
import hmac
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

BUILDDIR = os.environ.get("XMPPD_BUILDDIR", os.getcwd())
SRCDIR = os.environ.get("XMPPD_SRCDIR", os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))
XMPPD = os.path.join(BUILDDIR, "xmppd")
XMPPCTL = os.path.join(BUILDDIR, "xmppctl")

NS_STREAMS = "http://etherx.jabber.org/streams"


def stanza_id_rx(by):
    """A regex for the <stanza-id/> (XEP-0359) the message archive
    (worker/mam.c) adds to every archived message delivered to the
    account by, as the last child; test_mam.py checks it exactly."""
    return "<stanza-id xmlns='urn:xmpp:sid:0' id='[0-9]+' by='%s'/>" % re.escape(by)

NS_STREAM_ERR = "urn:ietf:params:xml:ns:xmpp-streams"


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred, timeout=10.0, step=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive for our purposes
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


_CERT = None


def test_certificate():
    """A self-signed EC certificate for localhost, made once per run."""
    global _CERT
    if _CERT is None:
        d = tempfile.mkdtemp(prefix="xmppd-cert-")
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-days", "30", "-nodes",
                        "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=DNS:localhost", "-keyout", key,
                        "-out", cert], check=True, capture_output=True)
        _CERT = (cert, key)
    return _CERT


def pg_conninfo():
    ci = os.environ.get("XMPPD_TEST_PGCONN")
    if not ci:
        raise AssertionError("XMPPD_TEST_PGCONN is not set: run the tests "
                             "through scripts/check, which starts PostgreSQL")
    return ci


def conninfo_with_db(ci, dbname):
    ci = re.sub(r"\bdbname=\S+", "", ci).strip()
    return "%s dbname=%s" % (ci, dbname)


class Database:
    """A fresh PostgreSQL database for one server, dropped at the end."""

    def __init__(self):
        self.admin = pg_conninfo()
        self.name = "xmppd_t_%s" % secrets.token_hex(6)
        self.psql("CREATE DATABASE %s" % self.name)
        self.conninfo = conninfo_with_db(self.admin, self.name)

    def psql(self, sql, conninfo=None):
        r = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                            "-d", conninfo or self.admin, "-c", sql],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise AssertionError("psql %r failed: %s" % (sql, r.stderr))
        return r.stdout

    def drop(self):
        try:
            self.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % self.name)
        except AssertionError:
            pass


class Server:
    """One xmppd instance in its own temporary directory."""

    def __init__(self, workers=2, overrides=None, config_text="",
                 foreground=True, preexec_fn=None, db=False, users=(),
                 components=None, s2s=False):
        self.dir = tempfile.mkdtemp(prefix="xmppd-test-")
        cert, key = test_certificate()
        self.db = Database() if db or users else None
        self.users = list(users)
        self.port = free_port()
        self.tls_port = free_port()
        # the HTTP front gets a free port of its own too (never 5280:
        # tests run side by side)
        self.http_port = free_port()
        # federation's listeners: off (never 5269: tests run side by
        # side) unless the test asks, then on free ports
        self.s2s_port = free_port() if s2s else 0
        self.s2s_tls_port = free_port() if s2s else 0
        self.config = os.path.join(self.dir, "xmppd.conf")
        self.log = os.path.join(self.dir, "xmppd.log")
        self.pid_file = os.path.join(self.dir, "xmppd.pid")
        self.control = os.path.join(self.dir, "control.sock")
        self.workers = workers
        self.foreground = foreground
        self.preexec_fn = preexec_fn
        self.overrides = {
            "c2s.addresses": "127.0.0.1",
            "c2s.port": str(self.port),
            "c2s.tls_port": str(self.tls_port),
            "http.addresses": "127.0.0.1",
            "http.port": str(self.http_port),
            "s2s.addresses": "127.0.0.1",
            "s2s.port": str(self.s2s_port),
            "s2s.tls_port": str(self.s2s_tls_port),
            "pid_file": self.pid_file,
            "control.socket": self.control,
            "log_file": self.log,
            "log_level": "debug",
            "user": "",
            "workers": str(workers),
            "shutdown_timeout": "3s",
            "tls.certificate": cert,
            "tls.key": key,
            "sasl.throttle_delay": "0",
            "db.conninfo": self.db.conninfo if self.db else "host=127.0.0.1 port=1 dbname=none connect_timeout=1",
        }
        # XEP-0114 components (worker/component.c): components={domain:
        # secret or (secret, subdomains)} writes the secrets file and
        # binds the component listener on a free port (s.component_port);
        # otherwise the listener stays off (never 5347: tests run side
        # by side).
        self.component_port = 0
        self.components_file = os.path.join(self.dir, "components")
        if components is not None:
            self.component_port = free_port()
            self.write_components(components)
            self.overrides.update({
                "component.secrets_file": self.components_file,
                "component.addresses": "127.0.0.1",
                "component.port": str(self.component_port),
            })
        else:
            self.overrides["component.port"] = "0"
        if overrides:
            self.overrides.update(overrides)
        self.write_config(config_text)
        self.proc = None
        self.master_pid = None

    def write_components(self, components):
        """(Re)write the components' secrets file, mode 0600: one
        "domain secret [subdomains]" line each."""
        lines = []
        for domain, v in components.items():
            secret, sub = (v, False) if isinstance(v, str) else v
            lines.append("%s %s%s\n" % (domain, secret, " subdomains" if sub else ""))
        tmp = self.components_file + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("# written by the test harness\n" + "".join(lines))
        os.replace(tmp, self.components_file)

    def write_config(self, text):
        with open(self.config, "w") as f:
            f.write(text)

    def args(self):
        a = [XMPPD, "-c", self.config]
        if os.environ.get("XMPPD_TEST_VALGRIND"):
            # Every xmppd process under memcheck (a build without
            # sanitizers); check_stderr fails the test on any report.
            a = ["valgrind", "--quiet", "--trace-children=yes",
                 "--leak-check=full", "--show-leak-kinds=definite",
                 "--log-file=" + os.path.join(self.dir, "valgrind.%p")] + a
        if self.foreground:
            a.append("-f")
        for k, v in self.overrides.items():
            a += ["-o", "%s=%s" % (k, v)]
        return a

    def ctl_config(self, *args, input=None, check=True):
        """xmppctl with this server's config and overrides (account work)."""
        a = [XMPPCTL, "-c", self.config]
        for k, v in self.overrides.items():
            a += ["-o", "%s=%s" % (k, v)]
        r = subprocess.run(a + list(args), input=input, capture_output=True,
                           text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError("xmppctl %s failed: %s" % (args, r.stderr))
        return r

    def add_user(self, jid, password):
        self.ctl_config("user", "add", jid, input=password + "\n")

    def start(self, wait=True):
        try:
            return self._start(wait)
        except BaseException:
            self.stop()     # no processes or databases left behind
            raise

    def _start(self, wait):
        if self.db is not None and not getattr(self, "_migrated", False):
            self.ctl_config("db", "migrate")
            for jid, password in self.users:
                self.add_user(jid, password)
            self._migrated = True
        # stdout/stderr to a file: sanitizer reports land there (a pipe
        # nobody reads could also fill and block the server).
        self.stderr_path = os.path.join(self.dir, "xmppd.stderr")
        self._stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(self.args(), stdin=subprocess.DEVNULL,
                                     stdout=self._stderr,
                                     stderr=subprocess.STDOUT,
                                     preexec_fn=self.preexec_fn)
        if not wait:
            return self
        if self.foreground:
            self.master_pid = self.proc.pid
        else:
            self.proc.wait(timeout=10)
            self.master_pid = wait_for(self.read_pid_file, what="pid file")
        wait_for(lambda: self.status_ok(), what="all workers up")
        if self.db is not None:
            # Logins made before a worker's database link is up wait
            # for it; tests still start from a settled server.
            wait_for(lambda: self.log_text().count("database link up") >= self.workers,
                     what="database links up")
        return self

    def read_pid_file(self):
        try:
            with open(self.pid_file) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def ctl(self, *args, check=False):
        r = subprocess.run([XMPPCTL, "-s", self.control] + list(args),
                           capture_output=True, text=True, timeout=20)
        if check and r.returncode != 0:
            raise AssertionError("xmppctl %s failed: %s" % (args, r.stderr))
        return r

    def status(self):
        """{'master': {...}, 'workers': [{...}, ...]} from xmppctl status."""
        r = self.ctl("status")
        if r.returncode != 0:
            return None
        out = {"workers": []}
        for line in r.stdout.splitlines():
            kind, *fields = line.split("\t")
            d = dict(f.split("=", 1) for f in fields)
            for k, v in d.items():
                if re.fullmatch(r"-?\d+", v):
                    d[k] = int(v)
            if kind == "master":
                out["master"] = d
            elif kind == "worker":
                out["workers"].append(d)
        return out

    def status_ok(self):
        st = self.status()
        if not st or len(st["workers"]) != self.workers:
            return None
        if not all(w["pid"] > 0 and pid_alive(w["pid"]) for w in st["workers"]):
            return None
        return st

    def worker_pids(self):
        return [w["pid"] for w in self.status()["workers"]]

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        pids = []
        try:
            st = self.status()
            if st:
                pids = [w["pid"] for w in st["workers"] if w["pid"] > 0]
        except Exception:
            pass
        if self.master_pid and pid_alive(self.master_pid):
            os.kill(self.master_pid, signal.SIGTERM)
            try:
                wait_for(lambda: not pid_alive(self.master_pid), timeout=15,
                         what="master exit")
            except AssertionError:
                os.kill(self.master_pid, signal.SIGKILL)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            if getattr(self, "_stderr", None):
                self._stderr.close()
        for p in pids:
            if pid_alive(p):
                os.kill(p, signal.SIGKILL)
        if self.db is not None:
            self.db.drop()
            self.db = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        if exc[0] is not None:
            print("---- xmppd log (%s) ----" % self.log)
            print(self.log_text()[-6000:])
        self.check_stderr()
        if exc[0] is None:
            # Passed: nothing to look at; a failure keeps its directory.
            shutil.rmtree(self.dir, ignore_errors=True)

    def check_stderr(self):
        """A sanitizer report or a crash message from any xmppd process
        fails the test that ran it."""
        try:
            with open(self.stderr_path, errors="replace") as f:
                text = f.read()
        except (OSError, AttributeError):
            return
        # A daemon's stderr is its log file.
        text += self.log_text()
        if "Sanitizer" in text or "runtime error" in text:
            raise AssertionError("xmppd reported:\n" + text[-8000:])
        for name in sorted(os.listdir(self.dir)):
            if name.startswith("valgrind."):
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    report = f.read()
                if report.strip():
                    raise AssertionError("valgrind (%s):\n%s" % (name, report[-8000:]))


class Client:
    """A raw TCP client that sends literal XML and reads replies."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.timeout = timeout

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def read_until(self, pattern, timeout=None):
        """Read until the regex pattern (bytes) matches the buffer; return
        the matched text and consume through it."""
        deadline = time.monotonic() + (timeout or self.timeout)
        rx = re.compile(pattern.encode() if isinstance(pattern, str) else pattern, re.S)
        while True:
            m = rx.search(self.buf)
            if m:
                self.buf = self.buf[m.end():]
                return m.group(0).decode()
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timeout waiting for %r; got %r" % (pattern, self.buf[-500:]))
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise AssertionError("connection closed waiting for %r; got %r" % (pattern, self.buf[-500:]))
            self.buf += chunk

    def read_all_until_close(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("server did not close; got %r" % self.buf[-500:])
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                data, self.buf = self.buf, b""
                return data.decode(errors="replace")
            self.buf += chunk

    def is_closed(self, timeout=0.5):
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        if chunk:
            self.buf += chunk
            return False
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # ---- TLS, SASL and binding, each step asserting the exact XML ----

    _tls_contexts = {}

    def wrap_tls(self, alpn=None, max_version=None):
        # One context per ALPN choice and version cap: making one loads
        # the system CA store, which costs more than the handshake itself.
        key = (tuple(alpn or ()), max_version)
        ctx = Client._tls_contexts.get(key)
        if ctx is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            if alpn:
                ctx.set_alpn_protocols(alpn)
            if max_version is not None:
                ctx.maximum_version = max_version
            Client._tls_contexts[key] = ctx
        self.sock.settimeout(self.timeout)
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        self.buf = b""

    def open(self, to="localhost"):
        """Send our stream header; return the features element text."""
        self.send(stream_header(to))
        self.read_until(SERVER_HEADER)
        return self.read_until("<stream:features>.*?</stream:features>|<stream:features/>")

    def starttls(self, max_version=None):
        """STARTTLS, then the new stream; max_version caps the TLS
        version offered (ssl.TLSVersion)."""
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.read_until("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.wrap_tls(max_version=max_version)
        return self.open()

    def auth_plain(self, user, password, authzid=""):
        msg = ("%s\0%s\0%s" % (authzid, user, password)).encode()
        self.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>"
                  % base64.b64encode(msg).decode())
        return self.read_until("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>|"
                               "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'></success>|"
                               "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>.*?</failure>")

    def auth_scram(self, user, password, hash_name="sha256", plus=None,
                   cb_data=None, tamper_proof=False, nonce=None):
        """SCRAM (RFC 5802) from scratch; plus = 'tls-exporter' or
        'tls-server-end-point' for the -PLUS variants; nonce: the
        client nonce (random when None)."""
        mech = "SCRAM-SHA-256" if hash_name == "sha256" else "SCRAM-SHA-1"
        gs2 = "n,,"
        if plus:
            mech += "-PLUS"
            gs2 = "p=%s,," % plus
        nonce = nonce or secrets.token_urlsafe(18)
        first_bare = "n=%s,r=%s" % (user.replace("=", "=3D").replace(",", "=2C"), nonce)
        self.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='%s'>%s</auth>"
                  % (mech, base64.b64encode((gs2 + first_bare).encode()).decode()))
        got = self.read_until("<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>[^<]*</challenge>|"
                              "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>.*?</failure>")
        if got.startswith("<failure"):
            return got
        server_first = base64.b64decode(re.search(">([^<]*)<", got).group(1)).decode()
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        assert attrs["r"].startswith(nonce)
        salt = base64.b64decode(attrs["s"])
        it = int(attrs["i"])
        salted = hashlib.pbkdf2_hmac(hash_name, password.encode(), salt, it)
        client_key = hmac.new(salted, b"Client Key", hash_name).digest()
        stored_key = hashlib.new(hash_name, client_key).digest()
        cbind = gs2.encode() + (cb_data or b"")
        final_bare = "c=%s,r=%s" % (base64.b64encode(cbind).decode(), attrs["r"])
        auth_msg = ",".join([first_bare, server_first, final_bare]).encode()
        sig = hmac.new(stored_key, auth_msg, hash_name).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        if tamper_proof:
            proof = bytes([proof[0] ^ 1]) + proof[1:]
        final = final_bare + ",p=" + base64.b64encode(proof).decode()
        self.send("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>%s</response>"
                  % base64.b64encode(final.encode()).decode())
        got = self.read_until("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>[^<]*</success>|"
                              "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>.*?</failure>")
        if got.startswith("<success"):
            server_key = hmac.new(salted, b"Server Key", hash_name).digest()
            v = base64.b64decode(re.search(">([^<]*)<", got).group(1)).decode()
            want = base64.b64encode(hmac.new(server_key, auth_msg, hash_name).digest()).decode()
            assert v == "v=" + want, (v, want)
        return got

    def bind(self, resource=None):
        r = "<resource>%s</resource>" % resource if resource is not None else ""
        self.send("<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>%s</bind></iq>" % r)
        got = self.read_until("<iq type='result' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                              "<jid>[^<]+</jid></bind></iq>")
        return re.search("<jid>([^<]+)</jid>", got).group(1)

    def login(self, user, password, resource=None, mech="SCRAM-SHA-256"):
        """STARTTLS, SASL, restart, bind: returns the bound full JID."""
        self.open()
        self.starttls()
        if mech == "PLAIN":
            got = self.auth_plain(user, password)
        else:
            got = self.auth_scram(user, password,
                                  "sha1" if mech == "SCRAM-SHA-1" else "sha256")
        assert got.startswith("<success"), got
        feats = self.open()
        assert "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>" in feats, feats
        return self.bind(resource)


def tls_server_end_point(sock):
    """RFC 5929 channel binding data: SHA-256 of the server certificate
    (our test certificate is signed with ECDSA-SHA256)."""
    return hashlib.sha256(sock.getpeercert(binary_form=True)).digest()


def stream_header(to="localhost", version="1.0", extra=""):
    v = " version='%s'" % version if version is not None else ""
    t = " to='%s'" % to if to is not None else ""
    return ("<?xml version='1.0'?><stream:stream%s%s xmlns='jabber:client' "
            "xmlns:stream='%s'%s>" % (t, v, NS_STREAMS, extra))


# Our stream header as the server sends it.
SERVER_HEADER = (r"<\?xml version='1.0'\?><stream:stream xmlns='jabber:client' "
                 r"xmlns:stream='http://etherx.jabber.org/streams' id='[0-9a-f]{24}'"
                 r" from='(?P<from>[^']*)' version='1.0' xml:lang='en'>")


def stream_error_re(condition):
    return ("<stream:error><%s xmlns='%s'/>(<text xmlns='%s'>[^<]*</text>)?"
            "</stream:error></stream:stream>" % (condition, re.escape(NS_STREAM_ERR),
                                                 re.escape(NS_STREAM_ERR)))


def run_tests(tests):
    """Run test functions in order; print TAP-ish lines; exit 1 on failure."""
    import sys
    import traceback
    failed = 0
    for t in tests:
        start = time.monotonic()
        try:
            t()
            print("ok - %s (%.2fs)" % (t.__name__, time.monotonic() - start), flush=True)
        except Exception:
            failed += 1
            print("FAIL - %s" % t.__name__, flush=True)
            traceback.print_exc()
    print("%d/%d passed" % (len(tests) - failed, len(tests)))
    sys.exit(1 if failed else 0)

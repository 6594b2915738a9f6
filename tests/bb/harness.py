"""Black-box harness: start the real xmppd on free loopback ports with a
temporary config, talk to it with raw sockets and xmppctl, stop it.

Everything is bounded: every wait has a deadline, every process started
here is killed at the end (even when a test fails).
"""
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

BUILDDIR = os.environ.get("XMPPD_BUILDDIR", os.getcwd())
SRCDIR = os.environ.get("XMPPD_SRCDIR", os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))
XMPPD = os.path.join(BUILDDIR, "xmppd")
XMPPCTL = os.path.join(BUILDDIR, "xmppctl")

NS_STREAMS = "http://etherx.jabber.org/streams"
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


class Server:
    """One xmppd instance in its own temporary directory."""

    def __init__(self, workers=2, overrides=None, config_text="",
                 foreground=True, preexec_fn=None):
        self.dir = tempfile.mkdtemp(prefix="xmppd-test-")
        self.port = free_port()
        self.tls_port = free_port()
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
            "pid_file": self.pid_file,
            "control.socket": self.control,
            "log_file": self.log,
            "log_level": "debug",
            "user": "",
            "workers": str(workers),
            "shutdown_timeout": "3s",
        }
        if overrides:
            self.overrides.update(overrides)
        self.write_config(config_text)
        self.proc = None
        self.master_pid = None

    def write_config(self, text):
        with open(self.config, "w") as f:
            f.write(text)

    def args(self):
        a = [XMPPD, "-c", self.config]
        if self.foreground:
            a.append("-f")
        for k, v in self.overrides.items():
            a += ["-o", "%s=%s" % (k, v)]
        return a

    def start(self, wait=True):
        self.proc = subprocess.Popen(self.args(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE,
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
            if self.proc.stdout:
                self.proc.stdout.close()
        for p in pids:
            if pid_alive(p):
                os.kill(p, signal.SIGKILL)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        if exc[0] is not None:
            print("---- xmppd log (%s) ----" % self.log)
            print(self.log_text()[-6000:])


class Client:
    """A raw TCP client that sends literal XML and reads replies."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
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

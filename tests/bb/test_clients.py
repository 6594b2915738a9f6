"""Real XMPP clients we did not write, against the real xmppd and a real
PostgreSQL: slixmpp (Python), go-sendxmpp (Go, go-xmpp), libstrophe (C,
tests/bb/clients/strophe_echo.c, built here with gcc) and aioxmpp
(Python, a second independent stack).  Needs XMPPD_TEST_PGCONN.

Every wait is bounded; each test stops its clients and its server.  Each
slixmpp/aioxmpp test runs in its own asyncio loop (asyncio.run).

Note on slixmpp 1.8.3 and channel binding: out of the box it offers only
tls-unique (undefined in TLS 1.3) for SCRAM-*-PLUS, which xmppd refuses
("unsupported channel binding type"), then falls back to SCRAM-SHA-256
with the gs2 flag "y" ("client supports channel binding, thinks the
server does not"), which a server that advertises -PLUS must refuse
(RFC 5802 section 6), so its third attempt ends in <policy-violation/>.
The slixmpp clients here are configured as a client without channel
binding (gs2 flag "n"), and force SCRAM-SHA-256.
"""
import asyncio
import atexit
import logging
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, run_tests  # noqa: E402

import slixmpp  # noqa: E402

# The libraries' own logs (slixmpp prints "No appropriate login method."
# on a failed login) only with XMPPD_TEST_CLIENT_DEBUG=1.
logging.basicConfig(level=logging.DEBUG if os.environ.get(
    "XMPPD_TEST_CLIENT_DEBUG") else logging.CRITICAL)

HERE = os.path.dirname(os.path.abspath(__file__))
USERS = [("juliet@localhost", "r0m30!"), ("romeo@localhost", "jul13t?"),
         ("nurse@localhost", "s3cret")]
PW = dict(USERS)
# Markup, quotes, an ampersand and non-ASCII: each library escapes and
# parses them, the server passes them through.
TRICKY = "Wherefore art thou, Romeo? <3 & 'quotes' \"too\" \u00fcn\u00efc\u00f6d\u00e9 \u2665"
TEST_TIMEOUT = 60


class running:
    """'with running(server)': like 'with server', but a server whose
    start() fails (e.g. times out) is stopped too instead of leaking its
    processes and database; start=False for a server already started."""

    def __init__(self, server, start=True):
        self.s = server
        self.start = start

    def __enter__(self):
        if self.start:
            try:
                self.s.start()
            except BaseException:
                self.s.__exit__(*sys.exc_info())
                raise
        return self.s

    def __exit__(self, *exc):
        return self.s.__exit__(*exc)


def run_async(coro, timeout=TEST_TIMEOUT):
    """Run one test's coroutine in a fresh event loop, bounded."""
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


def wait_log(s, pattern, timeout=5.0):
    """Wait until the server log matches pattern (regex); return the match."""
    deadline = time.monotonic() + timeout
    rx = re.compile(pattern)
    while True:
        m = rx.search(s.log_text())
        if m:
            return m
        if time.monotonic() > deadline:
            raise AssertionError("server log never matched %r; tail:\n%s"
                                 % (pattern, s.log_text()[-3000:]))
        time.sleep(0.05)


# ---- slixmpp ------------------------------------------------------------

class Slix(slixmpp.ClientXMPP):
    """A slixmpp client that records what a user would see: session
    start, auth failures, received messages, how the stream ended."""

    def __init__(self, jid, password, mech="SCRAM-SHA-256"):
        super().__init__(jid, password, sasl_mech=mech)
        # self-signed test certificate
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        # No channel binding (see the module docstring): gs2 flag "n".
        fm = self["feature_mechanisms"]
        default_creds = fm.sasl_callback

        def creds(required, optional):
            r = default_creds(required, optional)
            if "channel_binding" in r:
                r["channel_binding"] = None
            return r
        fm.sasl_callback = creds
        self.register_plugin("xep_0030")  # disco
        self.register_plugin("xep_0199")  # ping
        self.messages = asyncio.Queue()
        self.session = asyncio.Event()
        self.failures = []
        self.ended = None
        self.add_event_handler("session_start", self._on_session)
        self.add_event_handler("failed_auth", self.failures.append)
        self.add_event_handler("failed_all_auth",
                               lambda e: self.failures.append("all"))
        self.add_event_handler("message", self.messages.put_nowait)
        self.add_event_handler("disconnected", self._on_disconnected)

    def _on_session(self, event):
        self.send_presence()
        self.session.set()

    def _on_disconnected(self, reason):
        self.ended = reason

    def ssl_object(self):
        return self.transport.get_extra_info("ssl_object")

    def local_port(self):
        return self.transport.get_extra_info("sockname")[1]

    async def online(self, port, direct_tls=False, timeout=10):
        """Connect, log in, bind, send presence; then a ping round trip
        so that the presence is processed before anyone routes to us."""
        self.connect(("127.0.0.1", port), use_ssl=direct_tls)
        deadline = time.monotonic() + timeout
        while not self.session.is_set():
            if self.failures:
                raise AssertionError("slixmpp %s: authentication failed: %r"
                                     % (self.boundjid, self.failures))
            if time.monotonic() > deadline:
                raise AssertionError("slixmpp %s: no session after %ss"
                                     % (self.requested_jid, timeout))
            await asyncio.sleep(0.02)
        rtt = await self["xep_0199"].ping(jid="localhost", timeout=5)
        assert rtt is not None

    async def next_message(self, timeout=10):
        try:
            while True:
                msg = await asyncio.wait_for(self.messages.get(), timeout)
                if msg["type"] != "error":
                    return msg
                raise AssertionError("slixmpp got an error message: %s" % msg)
        except asyncio.TimeoutError:
            raise AssertionError("slixmpp %s: no message within %ss"
                                 % (self.boundjid, timeout)) from None

    async def stop(self):
        """Close the stream; True when the server answered with its own
        </stream:stream> (clean close) before the 3 s deadline."""
        self.cancel_connection_attempt()
        if self.transport is None:
            return False
        try:
            await asyncio.wait_for(self.disconnect(wait=3), 5)
        except asyncio.TimeoutError:
            pass
        self.abort()
        return self.ended == "End of stream"


async def stop_all(*clients):
    for c in clients:
        if c is not None:
            try:
                await c.stop()
            except Exception:
                pass


def check_slix_login(s, x, user, direct_tls):
    """The session used SCRAM-SHA-256 over TLS 1.2+: slixmpp's state and
    the server's log line for this very connection agree."""
    assert x["feature_mechanisms"].mech.name == "SCRAM-SHA-256", \
        x["feature_mechanisms"].mech.name
    tls = x.ssl_object()
    assert tls is not None and tls.version() in ("TLSv1.2", "TLSv1.3"), tls
    port = x.local_port()
    wait_log(s, r"127\.0\.0\.1:%d: authenticated as %s \(SCRAM-SHA-256\)"
             % (port, re.escape(user)))
    wait_log(s, r"127\.0\.0\.1:%d: connected%s\n"
             % (port, r" \(direct TLS\)" if direct_tls else ""))


async def slix_login_and_ping(s, direct_tls):
    x = Slix("juliet@localhost/slix", PW["juliet@localhost"])
    try:
        await x.online(s.tls_port if direct_tls else s.port,
                       direct_tls=direct_tls)
        assert str(x.boundjid) == "juliet@localhost/slix", x.boundjid
        check_slix_login(s, x, "juliet@localhost", direct_tls)
        # server IQs through slixmpp's own plugins: disco#info, ping
        info = await x["xep_0030"].get_info(jid="localhost", timeout=5)
        features = info["disco_info"]["features"]
        assert "urn:xmpp:ping" in features, features
        assert await x["xep_0199"].ping(jid="localhost", timeout=5) is not None
    finally:
        clean = await x.stop()
    assert clean, "server did not close the stream cleanly: %r" % x.ended


def test_slixmpp_starttls_scram_sha256():
    with running(Server(workers=1, users=USERS[:1])) as s:
        run_async(slix_login_and_ping(s, direct_tls=False))


def test_slixmpp_direct_tls():
    with running(Server(workers=1, users=USERS[:1])) as s:
        run_async(slix_login_and_ping(s, direct_tls=True))


def test_slixmpp_wrong_password():
    """What a slixmpp user sees with a wrong password: failed_auth with
    not-authorized, and no session."""
    with running(Server(workers=1, users=USERS[:1])) as s:
        async def body():
            x = Slix("juliet@localhost/slix", "wrong")
            try:
                x.connect(("127.0.0.1", s.port))
                deadline = time.monotonic() + 10
                while not x.failures and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                assert x.failures, "no failed_auth event"
                first = x.failures[0]
                assert first["condition"] == "not-authorized", first
                assert not x.session.is_set()
            finally:
                await x.stop()
        run_async(body())


# ---- go-sendxmpp -> slixmpp ---------------------------------------------

async def go_sendxmpp(s, body, to, direct_tls=False, timeout=20):
    args = ["go-sendxmpp", "-u", "romeo@localhost", "-p", PW["romeo@localhost"],
            "-j", "127.0.0.1:%d" % (s.tls_port if direct_tls else s.port),
            "-n", "--timeout", "10"]
    if direct_tls:
        args.append("-t")
    args.append(to)
    p = await asyncio.create_subprocess_exec(
        *args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(p.communicate(body.encode()), timeout)
    except asyncio.TimeoutError:
        p.kill()
        await p.wait()
        raise AssertionError("go-sendxmpp did not finish within %ss" % timeout)
    assert p.returncode == 0, "go-sendxmpp exited %d: %s" % (p.returncode, out)


def test_go_sendxmpp_to_slixmpp():
    if shutil.which("go-sendxmpp") is None:
        raise AssertionError("go-sendxmpp is not installed")
    with running(Server(workers=2, users=USERS[:2])) as s:
        async def body():
            x = Slix("juliet@localhost/slix", PW["juliet@localhost"])
            try:
                await x.online(s.port)
                for direct_tls, text in ((False, "STARTTLS: " + TRICKY),
                                         (True, "direct TLS: " + TRICKY)):
                    # to the bare JID: the server picks our resource
                    await go_sendxmpp(s, text + "\n", "juliet@localhost",
                                      direct_tls=direct_tls)
                    msg = await x.next_message(timeout=10)
                    assert msg["from"].bare == "romeo@localhost", msg
                    assert msg["from"].resource, msg
                    # a bare-JID 'to' stays bare (RFC 6121 8.5.2.1.1)
                    assert msg["to"] == "juliet@localhost", msg
                    assert msg["body"] == text, (msg["body"], text)
                # nothing else arrived (no duplicates)
                await asyncio.sleep(0.3)
                assert x.messages.empty(), x.messages.get_nowait()
            finally:
                await x.stop()
        run_async(body())
        log = s.log_text()
        assert len(re.findall(r"connected \(direct TLS\)\n", log)) == 1, log[-3000:]
        assert len(re.findall(r"authenticated as romeo@localhost", log)) == 2, log[-3000:]


# ---- slixmpp <-> libstrophe ---------------------------------------------

_STROPHE = None


def strophe_echo_binary():
    """Build tests/bb/clients/strophe_echo.c once per run into a temp dir."""
    global _STROPHE
    if _STROPHE is None:
        d = tempfile.mkdtemp(prefix="xmppd-strophe-")
        atexit.register(shutil.rmtree, d, True)
        out = os.path.join(d, "strophe_echo")
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libstrophe"],
                               capture_output=True, text=True, timeout=30)
        assert flags.returncode == 0, "libstrophe not found: %s" % flags.stderr
        r = subprocess.run(["gcc", "-std=c99", "-D_POSIX_C_SOURCE=200809L",
                            "-Wall", "-Wextra", "-Werror", "-O1", "-o", out,
                            os.path.join(HERE, "clients", "strophe_echo.c")]
                           + flags.stdout.split(),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, "cannot build strophe_echo: %s" % r.stderr
        _STROPHE = out
    return _STROPHE


class Strophe:
    """strophe_echo as an asyncio subprocess; lines read with deadlines."""

    def __init__(self, proc):
        self.proc = proc
        self.lines = []

    @classmethod
    async def start(cls, jid, password, port, seconds=30, max_msgs=1,
                    direct_tls=False):
        args = [strophe_echo_binary(), jid, password, "127.0.0.1", str(port),
                str(seconds), str(max_msgs)]
        if direct_tls:
            args.append("direct")
        p = await asyncio.create_subprocess_exec(
            *args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        return cls(p)

    async def line(self, prefix, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("strophe_echo: no %r line; got %r"
                                     % (prefix, self.lines))
            try:
                raw = await asyncio.wait_for(self.proc.stdout.readline(), left)
            except asyncio.TimeoutError:
                continue
            if not raw:
                err = await self.proc.stderr.read()
                raise AssertionError("strophe_echo ended before %r; got %r; "
                                     "stderr %r" % (prefix, self.lines, err))
            text = raw.decode("utf-8").rstrip("\n")
            self.lines.append(text)
            if text.startswith(prefix):
                return text

    async def wait(self, timeout=10):
        """Wait for the exit; the rest of its output goes to self.lines."""
        try:
            rest = await asyncio.wait_for(self.proc.stdout.read(), timeout)
            rc = await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            self.kill()
            raise AssertionError("strophe_echo did not exit within %ss; got %r"
                                 % (timeout, self.lines)) from None
        self.lines += rest.decode("utf-8").splitlines()
        return rc

    def kill(self):
        if self.proc.returncode is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass


async def slix_to_strophe(s, strophe_direct, slix_direct):
    strophe = x = None
    try:
        strophe = await Strophe.start("romeo@localhost/strophe",
                                      PW["romeo@localhost"],
                                      s.tls_port if strophe_direct else s.port,
                                      max_msgs=1, direct_tls=strophe_direct)
        ready = await strophe.line("READY ", timeout=15)
        assert ready == "READY romeo@localhost/strophe secure=1", ready
        x = Slix("juliet@localhost/slix", PW["juliet@localhost"])
        await x.online(s.tls_port if slix_direct else s.port,
                       direct_tls=slix_direct)
        x.send_message(mto="romeo@localhost/strophe", mbody=TRICKY,
                       mtype="chat")
        got = await strophe.line("MSG ", timeout=10)
        assert got == "MSG juliet@localhost/slix " + TRICKY, got
        msg = await x.next_message(timeout=10)
        assert str(msg["from"]) == "romeo@localhost/strophe", msg
        assert msg["body"] == "echo: " + TRICKY, msg["body"]
        assert msg["type"] == "chat", msg
        # strophe_echo leaves after one answer, closing its stream
        rc = await strophe.wait(timeout=10)
        assert rc == 0, (rc, strophe.lines)
        assert strophe.lines[-1] == "EXIT answered=1", strophe.lines
    finally:
        if strophe is not None:
            strophe.kill()
            await strophe.proc.wait()
        await stop_all(x)


def test_slixmpp_to_libstrophe():
    with running(Server(workers=2, users=USERS[:2])) as s:
        run_async(slix_to_strophe(s, strophe_direct=False, slix_direct=True))
        run_async(slix_to_strophe(s, strophe_direct=True, slix_direct=False))
        log = s.log_text()
        assert len(re.findall(r"bound romeo@localhost/strophe\n", log)) == 2, log[-3000:]


# ---- aioxmpp <-> slixmpp ------------------------------------------------

def test_aioxmpp_with_slixmpp():
    import aioxmpp
    import aioxmpp.dispatcher

    with running(Server(workers=2, users=USERS[:2])) as s:
        async def body():
            x = None
            client = aioxmpp.PresenceManagedClient(
                aioxmpp.JID.fromstr("romeo@localhost/aio"),
                aioxmpp.make_security_layer(PW["romeo@localhost"],
                                            no_verify=True),
                override_peer=[("127.0.0.1", s.port,
                                aioxmpp.connector.STARTTLSConnector())])
            inbox = asyncio.Queue()
            disp = client.summon(aioxmpp.dispatcher.SimpleMessageDispatcher)
            disp.register_callback(aioxmpp.MessageType.CHAT, None,
                                   inbox.put_nowait)
            try:
                async with client.connected() as stream:
                    assert str(client.local_jid) == "romeo@localhost/aio"
                    x = Slix("juliet@localhost/slix", PW["juliet@localhost"])
                    await x.online(s.port)
                    msg = aioxmpp.Message(
                        to=aioxmpp.JID.fromstr("juliet@localhost/slix"),
                        type_=aioxmpp.MessageType.CHAT)
                    msg.body[None] = TRICKY
                    await stream.send(msg)
                    got = await x.next_message(timeout=10)
                    assert str(got["from"]) == "romeo@localhost/aio", got
                    assert got["body"] == TRICKY, got["body"]
                    got.reply("re: " + got["body"]).send()
                    try:
                        back = await asyncio.wait_for(inbox.get(), 10)
                    except asyncio.TimeoutError:
                        raise AssertionError("aioxmpp got no reply") from None
                    assert str(back.from_) == "juliet@localhost/slix", back
                    assert back.body.any() == "re: " + TRICKY, back.body
            finally:
                await stop_all(x)
        run_async(body())
        wait_log(s, r"authenticated as romeo@localhost \(SCRAM-SHA-(1|256)\)")


if __name__ == "__main__":
    run_tests([
        test_slixmpp_starttls_scram_sha256,
        test_slixmpp_direct_tls,
        test_slixmpp_wrong_password,
        test_go_sendxmpp_to_slixmpp,
        test_slixmpp_to_libstrophe,
        test_aioxmpp_with_slixmpp,
    ])

"""A worker crash loses no message that xmppd accepted (issue 11).

Two workers.  Stream-management clients (XEP-0198, resume='true') are
placed on worker 0; senders on worker 1 send numbered chat messages to
them without pause.  Worker 0 is killed with SIGKILL in the middle of
the flow, with stanzas written and not acknowledged, others in the
queue.  The receivers' connections drop; each reconnects (to whichever
worker the kernel picks) and resumes its session with the h it counted:
the respawned worker adopted the sessions from the shared journal
(shm/smstore.c), so resumption must succeed.  Then every message sent
is accounted for: delivered (once or more: a stanza written but not
acknowledged is sent again after resumption), or stored offline and
delivered at the next login, or bounced to its sender with an error --
none missing.  The test asserts that every receiver resumed (the goal
the issue names), not only that nothing was lost.  A second test kills
the worker of a session that was already detached, with messages sent
to it before and after the kill: all come, in order, at <resume/>.

Needs XMPPD_TEST_PGCONN.
"""
import os
import re
import signal
import socket
import ssl
import sys
import threading
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, Server, run_tests, wait_for  # noqa: E402
from imlib import connect_on  # noqa: E402

SM = "urn:xmpp:sm:3"
CLIENT = "jabber:client"
N_RECV = 4
N_SEND = 2
SEND_EVERY = 0.01           # seconds between two messages of a sender
RECV = ["r%d" % i for i in range(N_RECV)]
SEND = ["s%d" % i for i in range(N_SEND)]
USERS = [("%s@localhost" % u, "pw-" + u) for u in RECV + SEND]
STREAM_OPEN = ("<stream:stream xmlns='jabber:client' "
               "xmlns:stream='http://etherx.jabber.org/streams'>")


class Stanzas:
    """Top-level elements of a stream, parsed as they arrive (ElementTree's
    pull parser over a stream opened by hand: what the raw client read
    before is fed first)."""

    def __init__(self, leftover):
        self.p = ET.XMLPullParser(events=("start", "end"))
        self.p.feed(STREAM_OPEN)
        self.depth = 0
        self.ready = []
        self.feed(leftover)

    def feed(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.p.feed(data)
        for ev, el in self.p.read_events():
            if ev == "start":
                self.depth += 1
            else:
                self.depth -= 1
                if self.depth == 1:
                    self.ready.append(el)

    def take(self):
        out, self.ready = self.ready, []
        return out


def local(el):
    return el.tag.split("}", 1)[-1]


def ns(el):
    return el.tag[1:].split("}", 1)[0] if el.tag.startswith("{") else ""


def pw(user):
    return "pw-" + user


def authed(c, user):
    c.open()
    c.starttls()
    got = c.auth_scram(user, pw(user))
    assert got.startswith("<success"), got
    return c.open()


class Receiver(threading.Thread):
    """One stream-management client: counts what it handles (h), answers
    each <r/>, records the ids of the messages it gets; when its
    connection drops it reconnects and resumes (or, if the server says
    <failed/>, logs in anew with presence, which brings what was stored
    offline)."""

    def __init__(self, server, user):
        super().__init__(daemon=True)
        self.s = server
        self.user = user
        self.jid = None
        self.previd = None
        self.h = 0
        self.got = {}               # message id -> times received
        self.phase = "live"         # live, resumed, fresh
        self.by_phase = {"live": set(), "resumed": set(), "fresh": set()}
        self.drops = 0
        self.resumed = 0
        self.failed_resume = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.c = None
        self.stanzas = None
        self.error = None

    # ---- connection set-up, in the thread that reads ----
    def login(self, client):
        feats = authed(client, self.user)
        assert "<sm xmlns='%s'/>" % SM in feats, feats
        self.jid = client.bind("phone")
        client.send("<enable xmlns='%s' resume='true'/>" % SM)
        got = client.read_until("<enabled [^>]*/>|<failed .*?</failed>")
        m = re.search("id='([^']+)'", got)
        assert got.startswith("<enabled ") and m, got
        self.previd = m.group(1)
        self.h = 0
        self.attach(client)

    def attach(self, client):
        self.c = client
        self.stanzas = Stanzas(client.buf)
        client.buf = b""

    def resume(self):
        """A new connection, to whichever worker; <resume/> with our h."""
        client = Client(self.s.port, timeout=20)
        authed(client, self.user)
        client.send("<resume xmlns='%s' previd='%s' h='%d'/>" % (SM, self.previd, self.h))
        got = client.read_until("<resumed [^>]*/>|<failed .*?</failed>", timeout=20)
        if got.startswith("<resumed "):
            # the id the client holds, also from a worker that adopted
            # the session after the crash (XEP-0198 section 5)
            assert "previd='%s'" % self.previd in got, got
            self.resumed += 1
            self.phase = "resumed"
            self.attach(client)
            return
        self.failed_resume.append(got)
        client.close()
        client = Client(self.s.port, timeout=20)
        self.login(client)
        self.phase = "fresh"
        # initial presence: offline messages come after it
        client.send("<presence/>")

    # ---- the loop ----
    def handle(self, el):
        if ns(el) == SM and local(el) == "r":
            self.c.send("<a xmlns='%s' h='%d'/>" % (SM, self.h))
            return
        if ns(el) == SM:
            return
        if ns(el) == CLIENT and local(el) in ("message", "presence", "iq"):
            self.h = (self.h + 1) % (1 << 32)
        if ns(el) == CLIENT and local(el) == "message" and el.get("type") != "error":
            mid = el.get("id")
            with self.lock:
                self.got[mid] = self.got.get(mid, 0) + 1
                self.by_phase[self.phase].add(mid)

    def read_some(self):
        try:
            self.c.sock.settimeout(0.2)
            data = self.c.sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            return True
        except (ConnectionResetError, ssl.SSLError, OSError):
            data = b""
        if not data:
            return False
        self.stanzas.feed(data)
        for el in self.stanzas.take():
            self.handle(el)
        return True

    def run(self):
        try:
            while not self.stop.is_set():
                if self.read_some():
                    continue
                # the worker died under us (or the stream ended)
                self.drops += 1
                self.c.close()
                self.resume()
        except Exception as e:      # reported by the main thread
            self.error = e

    def received(self):
        with self.lock:
            return set(self.got)

    def finish(self):
        """Acknowledge all, close the stream cleanly (the session ends,
        nothing unacknowledged is left)."""
        self.stop.set()
        self.join(10)
        assert not self.is_alive()
        self.c.send("<a xmlns='%s' h='%d'/>" % (SM, self.h))
        self.c.send("</stream:stream>")
        self.c.read_all_until_close(timeout=10)
        self.c.close()


class Sender(threading.Thread):
    """Sends numbered chat messages round-robin to the receivers' full
    JIDs until told to stop; collects the error bounces it gets."""

    def __init__(self, client, user, targets):
        super().__init__(daemon=True)
        self.user = user
        self.c = client
        self.targets = targets
        self.sent = {}              # id -> receiver user
        self.bounced = set()
        self.stop = threading.Event()
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.error = None
        self.c.login(self.user, pw(self.user), resource="desk")
        self.stanzas = Stanzas(self.c.buf)
        self.c.buf = b""

    def poll(self, wait):
        try:
            self.c.sock.settimeout(wait)
            data = self.c.sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            return
        assert data, "the sender's stream closed"
        self.stanzas.feed(data)
        for el in self.stanzas.take():
            if local(el) == "message" and el.get("type") == "error":
                with self.lock:
                    self.bounced.add(el.get("id"))

    def run(self):
        try:
            k = 0
            while not self.stop.is_set():
                to = self.targets[k % len(self.targets)]
                mid = "%s-%d" % (self.user, k)
                with self.lock:
                    self.sent[mid] = to
                self.c.send("<message to='%s@localhost/phone' id='%s' type='chat'>"
                            "<body>%s</body></message>" % (to, mid, mid))
                k += 1
                self.poll(SEND_EVERY)
            # bounces may still come: keep reading until told to leave
            while not self.done.is_set():
                self.poll(0.1)
        except Exception as e:
            self.error = e

    def bounced_ids(self):
        with self.lock:
            return set(self.bounced)


def offline_fetch(s, user, want, timeout=30):
    """Log in anew with presence; collect the offline messages until every
    id of want arrived (or the timeout).  Returns the ids received."""
    c = Client(s.port, timeout=10)
    c.login(user, pw(user), resource="check")
    c.send("<presence/>")
    st = Stanzas(c.buf)
    c.buf = b""
    got = set()
    end = time.monotonic() + timeout
    while not want <= got and time.monotonic() < end:
        try:
            c.sock.settimeout(0.2)
            data = c.sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            continue
        if not data:
            break
        st.feed(data)
        for el in st.take():
            if local(el) == "message" and el.get("type") != "error":
                got.add(el.get("id"))
    c.close()
    return got


def test_kill_worker_mid_flow():
    with Server(workers=2, users=USERS) as s:
        receivers = []
        for u in RECV:
            r = Receiver(s, u)
            r.login(connect_on(s, 0))
            receivers.append(r)
        # the senders on worker 1
        senders = [Sender(connect_on(s, 1), u, RECV) for u in SEND]
        for r in receivers:
            r.start()
        for snd in senders:
            snd.start()

        # the flow is on: each receiver has messages, written and acked
        wait_for(lambda: all(len(r.received()) >= 15 for r in receivers),
                 timeout=60, what="messages flowing to every receiver")
        pid = s.status()["workers"][0]["pid"]
        os.kill(pid, signal.SIGKILL)
        before = {r.user: len(r.received()) for r in receivers}
        # every receiver notices, resumes, and gets new messages after it
        wait_for(lambda: all(r.drops >= 1 and (r.resumed >= 1 or r.failed_resume)
                             for r in receivers) or any(r.error for r in receivers),
                 timeout=60, what="receivers reconnected")
        for r in receivers:
            assert r.error is None, "%s: %r" % (r.user, r.error)
        wait_for(lambda: all(len(r.received()) >= before[r.user] + 15 for r in receivers),
                 timeout=60, what="messages flowing again")
        for snd in senders:
            snd.stop.set()
        time.sleep(SEND_EVERY * 5)

        def sent_to(u):
            out = set()
            for snd in senders:
                with snd.lock:
                    out |= set(m for m, t in snd.sent.items() if t == u)
            return out

        def bounced():
            out = set()
            for snd in senders:
                out |= snd.bounced_ids()
            return out

        # everything in flight arrives (or bounces)
        def settled():
            b = bounced()
            return all(sent_to(r.user) <= r.received() | b for r in receivers)
        try:
            wait_for(settled, timeout=30, what="in-flight messages")
        except AssertionError:
            pass        # the rest must be in offline storage: checked below
        for r in receivers:
            assert r.error is None, "%s: %r" % (r.user, r.error)
            r.finish()

        # what did not arrive live must be in offline storage
        offline = {}
        for r in receivers:
            missing = sent_to(r.user) - r.received() - bounced()
            offline[r.user] = offline_fetch(s, r.user, missing) if missing else set()
        for snd in senders:
            snd.done.set()
            snd.join(10)
            assert snd.error is None, "%s: %r" % (snd.user, snd.error)

        total = lost = dup = 0
        b = bounced()
        report = []
        for r in receivers:
            sent = sent_to(r.user)
            total += len(sent)
            missing = sent - r.received() - offline[r.user] - b
            lost += len(missing)
            dup += sum(n - 1 for n in r.got.values() if n > 1)
            report.append("%s: sent %d, live %d, after resume %d, fresh login %d, "
                          "offline %d, bounced %d, missing %d%s, resumed %d, "
                          "failed resumptions %r"
                          % (r.user, len(sent), len(r.by_phase["live"]),
                             len(r.by_phase["resumed"]), len(r.by_phase["fresh"]),
                             len(offline[r.user] & sent), len(b & sent),
                             len(missing), " " + repr(sorted(missing)[:10]) if missing else "",
                             r.resumed, r.failed_resume))
        print("\n".join(report))
        for line in s.log_text().splitlines():
            if "sent again" in line or "adopted" in line or "kept" in line:
                print(line)
        print("%d messages, %d missing, %d delivered twice" % (total, lost, dup))
        assert lost == 0, "\n".join(report)
        # the goal: resumption after the crash, as if only TCP dropped
        for r in receivers:
            assert r.resumed >= 1 and not r.failed_resume, \
                "%s did not resume: %r" % (r.user, r.failed_resume)
        assert "adopted after a crash" in s.log_text()


def test_kill_worker_with_detached_session():
    """A session already waiting for <resume/> (its TCP connection gone)
    when its worker is killed: messages sent to it before and after the
    crash all come, in order, at the resumption."""
    with Server(workers=2, users=USERS) as s:
        snd = connect_on(s, 1)
        sj = snd.login("s0", pw("s0"), resource="desk")
        r = Receiver(s, "r0")
        r.login(connect_on(s, 0))
        r.c.sock.close()
        wait_for(lambda: "kept for resumption" in s.log_text(), what="detached")
        for k in range(5):
            snd.send("<message to='%s' id='d%d' type='chat'><body>%d</body></message>"
                     % (r.jid, k, k))
        os.kill(s.status()["workers"][0]["pid"], signal.SIGKILL)
        for k in range(5, 10):
            snd.send("<message to='%s' id='d%d' type='chat'><body>%d</body></message>"
                     % (r.jid, k, k))
        wait_for(lambda: "r0@localhost/phone adopted after a crash" in s.log_text(),
                 what="adopted")
        c = Client(s.port)
        authed(c, "r0")
        c.send("<resume xmlns='%s' previd='%s' h='0'/>" % (SM, r.previd))
        got = c.read_until("<resumed [^>]*/>|<failed .*?</failed>")
        assert got == "<resumed xmlns='%s' h='0' previd='%s'/>" % (SM, r.previd), got
        for k in range(10):
            m = c.read_until("<message [^>]*>.*?</message>")
            assert "id='d%d'" % k in m and "from='%s'" % sj in m, (k, m)
        c.send("<r xmlns='%s'/>" % SM)
        assert c.read_until("<a [^>]*/>") == "<a xmlns='%s' h='0'/>" % SM
        c.send("<a xmlns='%s' h='10'/>" % SM)
        c.send("</stream:stream>")
        c.read_all_until_close()
        # and the sender got no error for any of them
        assert not snd.is_closed(0.2) and "type='error'" not in snd.buf.decode(), snd.buf


if __name__ == "__main__":
    run_tests([test_kill_worker_mid_flow, test_kill_worker_with_detached_session])

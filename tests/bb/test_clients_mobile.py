"""Issue 11 with real clients we did not write: stream management with
resumption (XEP-0198: slixmpp and aioxmpp, each with its own
implementation), carbons (XEP-0280), client state indication
(XEP-0352) and the message archive (XEP-0313 with XEP-0059 paging and
XEP-0359 stanza ids) through slixmpp's plugins, and profanity (carbons
and MAM in its own UI, driven in tmux).  Each test asserts what the
user of that client would notice.  Needs XMPPD_TEST_PGCONN.

The TCP connection of a stream-management client goes through
clients/cutproxy.py, a loopback proxy that can throw away what is in
flight and reset both sides at once, as a phone changing networks.

XMPPD_TEST_AGAINST=prosody runs the same client code against Debian's
Prosody (clients/prosody.py) instead of xmppd: a development aid to
tell a mistake in a test from a bug in the server, not part of the
suite.  Checks of xmppd's own choices (which worker, the log, xmppctl)
are skipped there.
"""
import asyncio
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import slixmpp

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "clients"))
from harness import Server, run_tests  # noqa: E402
from cutproxy import CutProxy  # noqa: E402
from test_clients import Slix, running, run_async, stop_all  # noqa: E402

logging.basicConfig(level=logging.DEBUG if os.environ.get(
    "XMPPD_TEST_CLIENT_DEBUG") else logging.CRITICAL)

AGAINST = os.environ.get("XMPPD_TEST_AGAINST", "xmppd")
PROSODY = AGAINST == "prosody"
# Prosody 0.12 offers SCRAM-SHA-1 and PLAIN only.
MECH = "SCRAM-SHA-1" if PROSODY else "SCRAM-SHA-256"

USERS = [("juliet@localhost", "r0m30!"), ("romeo@localhost", "jul13t?"),
         ("nurse@localhost", "s3cret")]
PW = dict(USERS)
NS_SID = "urn:xmpp:sid:0"
NS_CARBONS = "urn:xmpp:carbons:2"


def server(workers=2, users=USERS, sm_max=None):
    """xmppd (or Prosody, see the module docstring); sm_max: seconds a
    detached stream-management session waits for its client."""
    if PROSODY:
        from prosody import Prosody
        return Prosody(users=users, sm_max=sm_max or 300)
    return Server(workers=workers, users=users, overrides={
        "sm.max_resume_s": str(sm_max)} if sm_max else None)


def xmppd_only():
    return not PROSODY


async def until(pred, timeout=10, what="condition"):
    """Bounded wait in the event loop."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s"
                                 % (timeout, what() if callable(what) else what))
        await asyncio.sleep(0.02)


class Mobile(Slix):
    """A slixmpp client with the issue's plugins, recording in order
    every stanza it receives ('inbox': (kind, stanza)) and the events a
    user would notice."""

    def __init__(self, jid, password, plugins=()):
        super().__init__(jid, password, mech=MECH)
        for p in plugins:
            self.register_plugin(p)
        if "xep_0198" in plugins:
            self._keep_unacked_on_resume()
        self.inbox = []
        self.sessions_started = 0
        self.resumed = 0
        self.sm_enabled = 0
        self.sm_failed = []
        self.disconnects = 0
        self.add_event_handler("session_start", self._count_start)
        self.add_event_handler("session_resumed", self._count_resumed)
        self.add_event_handler("sm_enabled", self._count_sm)
        self.add_event_handler("sm_failed", self.sm_failed.append)
        self.add_event_handler("disconnected", self._count_disc)
        self.add_event_handler("message",
                               lambda m: self.inbox.append(("message", m)))
        self.add_event_handler("presence",
                               lambda p: self.inbox.append(("presence", p)))

    def _keep_unacked_on_resume(self):
        """slixmpp 1.8.3's xep_0198 empties its queue of unacknowledged
        stanzas when it sends <resume/> (its out filter treats Resume
        like Enable), so what it sent into a dead link is lost by the
        client itself and never re-sent after <resumed/>.  Keep the
        queue across <resume/> so that the test checks the server's side
        of it: the h of <resumed/> says which of them the server had
        handled, slixmpp re-sends the rest, each arrives once."""
        from slixmpp.plugins.xep_0198 import stanza as smst
        sm = self["xep_0198"]
        plain = sm._handle_outgoing

        def keep(st):
            if isinstance(st, smst.Resume):
                saved = list(sm.unacked_queue)
                out = plain(st)
                sm.unacked_queue.extend(saved)
                return out
            return plain(st)
        self.del_filter("out_sync", plain)
        self.add_filter("out_sync", keep)

    def _count_start(self, _):
        self.sessions_started += 1

    def _count_resumed(self, _):
        self.resumed += 1

    def _count_sm(self, _):
        self.sm_enabled += 1

    def _count_disc(self, _):
        self.disconnects += 1

    def bodies(self, frm=None):
        return [m["body"] for k, m in self.inbox if k == "message"
                and m["body"] and m["type"] != "error"
                and (frm is None or m["from"].bare == frm)]

    def errors(self):
        return [m for k, m in self.inbox
                if k in ("message", "presence") and m["type"] == "error"]

    async def wait_bodies(self, want, frm=None, timeout=15):
        await until(lambda: set(want) <= set(self.bodies(frm)), timeout,
                    "%s to receive %r (has %r)" % (self.boundjid, want,
                                                   self.bodies(frm)))


def stanza_ids(msg, by):
    return [e.get("id") for e in msg.xml.findall("{%s}stanza-id" % NS_SID)
            if e.get("by") == by]


def sessions(s, jid):
    """xmppctl --json sessions JID: {full JID: worker slot}."""
    r = s.ctl("--json", "sessions", jid)
    if r.returncode != 0:
        return {}
    return {x["jid"]: x["worker"] for x in json.loads(r.stdout)["sessions"]}


async def subscribe_both(a, b):
    """a and b subscribe to each other through the protocol (slixmpp
    answers subscription requests by itself)."""
    a.auto_authorize = b.auto_authorize = True
    a.auto_subscribe = b.auto_subscribe = True
    a.send_presence(pto=b.boundjid.bare, ptype="subscribe")
    subs = None
    for _ in range(100):
        await a.get_roster(timeout=5)
        await b.get_roster(timeout=5)
        subs = (a.client_roster[b.boundjid.bare]["subscription"],
                b.client_roster[a.boundjid.bare]["subscription"])
        if subs == ("both", "both"):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("no mutual subscription: %r" % (subs,))


# ---- XEP-0198 with slixmpp -------------------------------------------------

async def slix_sm_cycles(s, placements):
    """juliet/phone (slixmpp, xep_0198) talks to romeo/desk through the
    proxy.  For each placement (the worker the reconnection lands on;
    None: wherever): a few messages flow live, then the link goes dead
    while both sides keep sending, then it is reset, romeo sends more
    while juliet is away, and juliet's slixmpp reconnects and resumes.
    What juliet and romeo see: every message exactly once and in order,
    one session (no new login), no error, nothing in offline storage."""
    proxy = await CutProxy(s.port, server=None if PROSODY else s).start()
    phone = desk = None
    try:
        if xmppd_only():
            proxy.place(0)
        phone = Mobile("juliet@localhost/phone", PW["juliet@localhost"],
                       plugins=["xep_0198"])
        await phone.online(proxy.port)
        await until(lambda: phone.sm_enabled, 10, "sm_enabled")
        sm = phone["xep_0198"]
        assert sm.sm_id, "the server did not allow resumption: no id"
        desk = Mobile("romeo@localhost/desk", PW["romeo@localhost"])
        await desk.online(s.port)
        sent_to_phone, sent_to_desk = [], []
        n = 0
        for cycle, worker in enumerate(placements):
            # live
            for i in range(3):
                n += 1
                body = "live %d.%d" % (cycle, i)
                desk.send_message(mto="juliet@localhost/phone", mbody=body,
                                  mtype="chat")
                sent_to_phone.append(body)
            await phone.wait_bodies(sent_to_phone, "romeo@localhost")
            # the radio link dies: both sides keep sending into the void
            before = proxy.discarded["down"]
            proxy.blackhole()
            for i in range(5):
                body = "into the void %d.%d" % (cycle, i)
                desk.send_message(mto="juliet@localhost/phone", mbody=body,
                                  mtype="chat")
                sent_to_phone.append(body)
                back = "unheard reply %d.%d" % (cycle, i)
                phone.send_message(mto="romeo@localhost/desk", mbody=back,
                                   mtype="chat")
                sent_to_desk.append(back)
            # Not an assertion, only to make it likely that the server
            # wrote them to the dead socket before the reset: the
            # proxy saw bytes for them going down.
            deadline = time.monotonic() + 3
            while (proxy.discarded["down"] - before < 5 * 150
                   and time.monotonic() < deadline):
                await asyncio.sleep(0.02)
            disc = phone.disconnects
            proxy.cut()
            proxy.restore()
            await until(lambda: phone.disconnects > disc, 10,
                        "slixmpp to notice the reset")
            # while juliet's phone is away
            for i in range(4):
                body = "while away %d.%d" % (cycle, i)
                desk.send_message(mto="juliet@localhost/phone", mbody=body,
                                  mtype="chat")
                sent_to_phone.append(body)
            assert await desk["xep_0199"].ping(jid="localhost", timeout=5) is not None
            # back: slixmpp resumes by itself on the next connection
            resumed = phone.resumed
            if xmppd_only():
                proxy.place(worker)
            phone.connect(("127.0.0.1", proxy.port))
            await until(lambda: phone.resumed > resumed or phone.sm_failed,
                        20, "session_resumed")
            assert not phone.sm_failed, "resumption failed: %s" % phone.sm_failed
            assert phone.sessions_started == 1, \
                "slixmpp had to log in again (%d sessions)" % phone.sessions_started
            assert str(phone.boundjid) == "juliet@localhost/phone", phone.boundjid
            if xmppd_only() and worker is not None:
                on = sessions(s, "juliet@localhost")
                assert on.get("juliet@localhost/phone") == worker, \
                    "resumed session not on worker %d: %r" % (worker, on)
            # a marker after everything: once it is in, nothing older
            # can still come
            mark = "after resumption %d" % cycle
            desk.send_message(mto="juliet@localhost/phone", mbody=mark,
                              mtype="chat")
            sent_to_phone.append(mark)
            await phone.wait_bodies([mark], "romeo@localhost")
            got = phone.bodies("romeo@localhost")
            assert got == sent_to_phone, \
                "juliet's phone, cycle %d: sent %r\nreceived %r" % (
                    cycle, sent_to_phone, got)
            mark = "reply after resumption %d" % cycle
            phone.send_message(mto="romeo@localhost/desk", mbody=mark,
                               mtype="chat")
            sent_to_desk.append(mark)
            await desk.wait_bodies([mark], "juliet@localhost")
            got = desk.bodies("juliet@localhost")
            assert got == sent_to_desk, \
                "romeo's desk, cycle %d: sent %r\nreceived %r" % (
                    cycle, sent_to_desk, got)
        assert not phone.errors() and not desk.errors(), \
            (phone.errors(), desk.errors())
        # acknowledged by the server: nothing left to resend
        phone["xep_0198"].request_ack()
        await until(lambda: not phone["xep_0198"].unacked_queue, 10,
                    "the server to acknowledge everything juliet sent")
        print("# proxy threw away %(down)d bytes going down, %(up)d going up"
              % proxy.discarded)
        return proxy.placed_on
    finally:
        await stop_all(phone, desk)
        await proxy.close()


def test_slixmpp_sm_resume():
    """Resumption on the worker that held the session, then on the
    other one (placements forced through the proxy)."""
    with running(server(workers=2, users=USERS[:2])) as s:
        placed = run_async(slix_sm_cycles(s, [0, 1, 1, 0]), timeout=150)
        if xmppd_only():
            assert placed == [0, 0, 1, 1, 0], placed
            out = s.ctl_config("--json", "user", "show", "juliet@localhost").stdout
            assert json.loads(out)["offline"] == 0, \
                "something went to offline storage:\n" + out


def test_slixmpp_sm_resume_after_worker_crash():
    """The worker holding juliet's phone session is killed (kill -9)
    while romeo's messages flow to it; slixmpp sees its connection drop,
    reconnects and resumes as if only its TCP connection had dropped
    (session_resumed, no new login): on the other worker the first time,
    on the respawned worker the second time.  Every message romeo sent
    arrives exactly once, in order; romeo sees no error."""
    if PROSODY:
        print("# a worker crash is xmppd's: nothing to do with Prosody")
        return
    import signal
    with running(server(workers=2, users=USERS[:2])) as s:
        async def body():
            proxy = await CutProxy(s.port, server=s).start()
            phone = desk = None
            try:
                proxy.place(0)
                phone = Mobile("juliet@localhost/phone", PW["juliet@localhost"],
                               plugins=["xep_0198"])
                await phone.online(proxy.port)
                await until(lambda: phone.sm_enabled, 10, "sm_enabled")
                sent = []
                # crash the phone's worker, resume on the other; then
                # crash that one, resume on the first (respawned).  The
                # sender is on the worker that stays.
                for cycle, (victim, other) in enumerate([(0, 1), (1, 0)]):
                    if desk is not None:
                        assert not desk.errors(), desk.errors()
                        await stop_all(desk)
                    proxy.place(other)
                    desk = Mobile("romeo@localhost/desk%d" % cycle,
                                  PW["romeo@localhost"])
                    await desk.online(proxy.port)
                    for i in range(3):
                        sent.append("live %d.%d" % (cycle, i))
                        desk.send_message(mto="juliet@localhost/phone",
                                          mbody=sent[-1], mtype="chat")
                    await phone.wait_bodies(sent, "romeo@localhost")
                    on = sessions(s, "juliet@localhost")
                    assert on.get("juliet@localhost/phone") == victim, on
                    pid = s.worker_pids()[victim]
                    disc = phone.disconnects
                    for i in range(10):
                        if i == 5:
                            # some of them reached the phone: kill now
                            await until(lambda: len(phone.bodies()) > len(sent) - 5,
                                        10, "the first messages to arrive")
                            os.kill(pid, signal.SIGKILL)
                        sent.append("around the crash %d.%d" % (cycle, i))
                        desk.send_message(mto="juliet@localhost/phone",
                                          mbody=sent[-1], mtype="chat")
                    await until(lambda: phone.disconnects > disc, 10,
                                "slixmpp to notice its worker died")
                    await until(lambda: (lambda st: st and st["workers"][victim]["pid"]
                                         not in (0, pid))(s.status_ok()), 15,
                                "the worker to be respawned")
                    for i in range(3):
                        sent.append("after the crash %d.%d" % (cycle, i))
                        desk.send_message(mto="juliet@localhost/phone",
                                          mbody=sent[-1], mtype="chat")
                    resumed = phone.resumed
                    proxy.place(other)
                    phone.connect(("127.0.0.1", proxy.port))
                    await until(lambda: phone.resumed > resumed or phone.sm_failed,
                                20, "session_resumed")
                    assert not phone.sm_failed, \
                        "resumption after the crash failed: %s" % phone.sm_failed
                    assert phone.sessions_started == 1, phone.sessions_started
                    sent.append("marker %d" % cycle)
                    desk.send_message(mto="juliet@localhost/phone",
                                      mbody=sent[-1], mtype="chat")
                    await phone.wait_bodies([sent[-1]], "romeo@localhost")
                    got = phone.bodies("romeo@localhost")
                    assert got == sent, "cycle %d: sent %r\nreceived %r" % (
                        cycle, sent, got)
                    on = sessions(s, "juliet@localhost")
                    assert on.get("juliet@localhost/phone") == other, on
                    print("# cycle %d: %s" % (cycle, " | ".join([
                        ln for ln in s.log_text().splitlines()
                        if "resumed juliet" in ln or "adopt" in ln][-3:])))
                assert not desk.errors(), desk.errors()
            finally:
                await stop_all(phone, desk)
                await proxy.close()
        run_async(body(), timeout=120)


def test_slixmpp_sm_gone_for_good():
    """juliet's phone loses its link for good (it never resumes): what
    romeo sent into the dead link and while it was away is not lost.
    When the server gives up on the session (sm max, here 2 s), the
    messages go to offline storage, and juliet's next login, without
    stream management, gets each of them once, in order; romeo never
    sees an error."""
    with running(server(workers=2, users=USERS[:2], sm_max=2)) as s:
        async def body():
            proxy = await CutProxy(s.port).start()
            phone = desk = again = None
            try:
                phone = Mobile("juliet@localhost/phone", PW["juliet@localhost"],
                               plugins=["xep_0198"])
                await phone.online(proxy.port)
                await until(lambda: phone.sm_enabled, 10, "sm_enabled")
                desk = Mobile("romeo@localhost/desk", PW["romeo@localhost"])
                await desk.online(s.port)
                await subscribe_both(phone, desk)
                desk.send_message(mto="juliet@localhost/phone", mbody="live",
                                  mtype="chat")
                await phone.wait_bodies(["live"])
                proxy.blackhole()
                lost = []
                for i in range(4):
                    lost.append("into the void %d" % i)
                    desk.send_message(mto="juliet@localhost/phone",
                                      mbody=lost[-1], mtype="chat")
                assert await desk["xep_0199"].ping(jid="localhost", timeout=5)
                proxy.cut()
                for i in range(3):
                    lost.append("while away %d" % i)
                    desk.send_message(mto="juliet@localhost/phone",
                                      mbody=lost[-1], mtype="chat")
                # the phone never comes back: romeo sees juliet go
                # offline when the server gives up on the session
                await until(lambda: [p for k, p in desk.inbox
                                     if k == "presence"
                                     and p["from"] == "juliet@localhost/phone"
                                     and p["type"] == "unavailable"], 30,
                            "romeo to see juliet/phone go offline")
                phone.abort()
                again = Mobile("juliet@localhost/phone", PW["juliet@localhost"])
                await again.online(s.port)
                await again.wait_bodies(lost, "romeo@localhost")
                mark = "after the new login"
                desk.send_message(mto="juliet@localhost/phone", mbody=mark,
                                  mtype="chat")
                await again.wait_bodies([mark], "romeo@localhost")
                got = again.bodies("romeo@localhost")
                assert got == lost + [mark], "sent %r\nreceived %r" % (
                    lost + [mark], got)
                assert not desk.errors(), desk.errors()
            finally:
                await stop_all(phone, desk, again)
                await proxy.close()
        run_async(body(), timeout=90)


# ---- XEP-0198 with aioxmpp -------------------------------------------------

def test_aioxmpp_sm_resume():
    """aioxmpp's own stream management: it notices the reset, reconnects
    by itself and resumes (on_stream_resumed, never
    on_stream_destroyed); what was sent to it while the link was dead
    or gone arrives exactly once, in order."""
    import aioxmpp
    import aioxmpp.dispatcher

    with running(server(workers=2, users=USERS[:2])) as s:
        async def body():
            proxy = await CutProxy(s.port, server=None if PROSODY else s).start()
            desk = None
            client = aioxmpp.PresenceManagedClient(
                aioxmpp.JID.fromstr("juliet@localhost/aio"),
                aioxmpp.make_security_layer(PW["juliet@localhost"],
                                            no_verify=True),
                override_peer=[("127.0.0.1", proxy.port,
                                aioxmpp.connector.STARTTLSConnector())])
            client.backoff_start = __import__("datetime").timedelta(seconds=0.2)
            client.resumption_timeout = 300
            got = []
            events = []
            disp = client.summon(aioxmpp.dispatcher.SimpleMessageDispatcher)
            disp.register_callback(aioxmpp.MessageType.CHAT, None,
                                   lambda m: got.append(m.body.any()))
            client.on_stream_suspended.connect(lambda *a: events.append("suspended"))
            client.on_stream_resumed.connect(lambda *a: events.append("resumed"))
            client.on_stream_destroyed.connect(lambda *a: events.append("destroyed"))
            client.on_stream_established.connect(lambda *a: events.append("established"))
            sent = []
            try:
                if xmppd_only():
                    proxy.place(0)
                async with client.connected():
                    assert client.stream.sm_enabled, "no stream management"
                    assert client.stream.sm_resumable, "not resumable"
                    desk = Mobile("romeo@localhost/desk", PW["romeo@localhost"])
                    await desk.online(s.port)
                    for cycle, worker in enumerate([1, 0]):
                        for i in range(3):
                            sent.append("live %d.%d" % (cycle, i))
                            desk.send_message(mto="juliet@localhost/aio",
                                              mbody=sent[-1], mtype="chat")
                        await until(lambda: got == sent, 10,
                                    "aioxmpp to get %r (has %r)" % (sent, got))
                        proxy.blackhole()
                        for i in range(4):
                            sent.append("void %d.%d" % (cycle, i))
                            desk.send_message(mto="juliet@localhost/aio",
                                              mbody=sent[-1], mtype="chat")
                        assert await desk["xep_0199"].ping(jid="localhost",
                                                           timeout=5) is not None
                        if xmppd_only():
                            proxy.place(worker)
                        proxy.cut()
                        proxy.restore()
                        for i in range(3):
                            sent.append("away %d.%d" % (cycle, i))
                            desk.send_message(mto="juliet@localhost/aio",
                                              mbody=sent[-1], mtype="chat")
                        await until(lambda: events.count("resumed") == cycle + 1
                                    or "destroyed" in events, 30,
                                    "aioxmpp to resume (events %r)" % events)
                        assert "destroyed" not in events, events
                        sent.append("marker %d" % cycle)
                        desk.send_message(mto="juliet@localhost/aio",
                                          mbody=sent[-1], mtype="chat")
                        await until(lambda: sent[-1] in got, 15,
                                    "aioxmpp to get the marker (has %r)" % got)
                        assert got == sent, "sent %r\nreceived %r" % (sent, got)
                        if xmppd_only():
                            on = sessions(s, "juliet@localhost")
                            assert on.get("juliet@localhost/aio") == worker, on
                    assert str(client.local_jid) == "juliet@localhost/aio"
                    assert events == ["established", "suspended", "resumed",
                                      "suspended", "resumed"], events
                    assert not desk.errors(), desk.errors()
            finally:
                await stop_all(desk)
                await proxy.close()
            return proxy.placed_on
        placed = run_async(body(), timeout=120)
        if xmppd_only():
            assert placed == [0, 1, 0], placed


# ---- XEP-0280 with slixmpp -------------------------------------------------

def test_slixmpp_carbons():
    """Two resources of juliet with carbons on (slixmpp xep_0280): what
    romeo sends to one shows on the other as a received carbon; what one
    sends shows on the other as a sent carbon.  A resource without
    carbons sees neither."""
    with running(server(workers=2, users=USERS)) as s:
        async def body():
            phone = laptop = old = romeo = None
            try:
                phone = Mobile("juliet@localhost/phone", PW["juliet@localhost"],
                               plugins=["xep_0280"])
                laptop = Mobile("juliet@localhost/laptop", PW["juliet@localhost"],
                                plugins=["xep_0280"])
                old = Mobile("juliet@localhost/old", PW["juliet@localhost"])
                romeo = Mobile("romeo@localhost/desk", PW["romeo@localhost"])
                carbons = {"phone": [], "laptop": []}
                for name, c in (("phone", phone), ("laptop", laptop)):
                    c.add_event_handler(
                        "carbon_received",
                        lambda m, n=name: carbons[n].append(("received", m)))
                    c.add_event_handler(
                        "carbon_sent",
                        lambda m, n=name: carbons[n].append(("sent", m)))
                for c in (phone, laptop, old, romeo):
                    await c.online(s.port)
                for c in (phone, laptop):
                    info = await c["xep_0030"].get_info(jid="localhost", timeout=5)
                    features = info["disco_info"]["features"]
                    assert NS_CARBONS in features, \
                        "the server does not list %s: %r" % (NS_CARBONS, features)
                    r = await c["xep_0280"].enable(timeout=5)
                    assert r["type"] == "result", r

                # romeo -> juliet/phone: phone gets it, laptop a carbon
                romeo.send_message(mto="juliet@localhost/phone",
                                   mbody="to the phone", mtype="chat")
                await phone.wait_bodies(["to the phone"], "romeo@localhost")
                await until(lambda: carbons["laptop"], 10, "a carbon on the laptop")
                kind, m = carbons["laptop"][0]
                assert kind == "received", carbons["laptop"]
                assert m["from"] == "juliet@localhost", m["from"]
                fwd = m["carbon_received"]
                assert str(fwd["from"]) == "romeo@localhost/desk", fwd
                assert str(fwd["to"]) == "juliet@localhost/phone", fwd
                assert fwd["body"] == "to the phone", fwd
                # juliet/laptop -> romeo: romeo gets it, phone a sent carbon
                laptop.send_message(mto="romeo@localhost/desk",
                                    mbody="from the laptop", mtype="chat")
                await romeo.wait_bodies(["from the laptop"], "juliet@localhost")
                await until(lambda: carbons["phone"], 10, "a carbon on the phone")
                kind, m = carbons["phone"][0]
                assert kind == "sent", carbons["phone"]
                fwd = m["carbon_sent"]
                assert str(fwd["from"]) == "juliet@localhost/laptop", fwd
                assert str(fwd["to"]) == "romeo@localhost/desk", fwd
                assert fwd["body"] == "from the laptop", fwd
                # a marker to each: after it, nothing else can be on its way
                for c in (phone, laptop, old):
                    romeo.send_message(mto=str(c.boundjid), mbody="marker",
                                       mtype="headline")
                for c in (phone, laptop, old):
                    await c.wait_bodies(["marker"], "romeo@localhost")
                assert len(carbons["laptop"]) == 1, carbons["laptop"]
                assert len(carbons["phone"]) == 1, carbons["phone"]
                # the resource without carbons saw none of it
                assert old.bodies() == ["marker"], old.bodies()
                assert not [m for k, m in old.inbox if k == "message"
                            and (m.xml.find("{%s}received" % NS_CARBONS) is not None
                                 or m.xml.find("{%s}sent" % NS_CARBONS) is not None)]
                # disabled: no more carbons
                r = await laptop["xep_0280"].disable(timeout=5)
                assert r["type"] == "result", r
                romeo.send_message(mto="juliet@localhost/phone",
                                   mbody="not for the laptop", mtype="chat")
                await phone.wait_bodies(["not for the laptop"])
                romeo.send_message(mto="juliet@localhost/laptop",
                                   mbody="marker 2", mtype="headline")
                await laptop.wait_bodies(["marker 2"])
                assert len(carbons["laptop"]) == 1, carbons["laptop"]
                for c in (phone, laptop, old, romeo):
                    assert not c.errors(), c.errors()
            finally:
                await stop_all(phone, laptop, old, romeo)
        run_async(body())


def test_slixmpp_carbons_survive_resumption():
    """juliet's phone (slixmpp, xep_0198 and xep_0280) enables carbons
    once; its connection is reset and it resumes on the other worker
    without asking again: what romeo sends to juliet's laptop meanwhile
    and afterwards still shows on the phone as received carbons, and
    what the laptop sends as sent carbons, each once."""
    with running(server(workers=2, users=USERS[:2])) as s:
        async def body():
            proxy = await CutProxy(s.port, server=None if PROSODY else s).start()
            phone = laptop = romeo = None
            try:
                if xmppd_only():
                    proxy.place(0)
                phone = Mobile("juliet@localhost/phone", PW["juliet@localhost"],
                               plugins=["xep_0198", "xep_0280"])
                carbons = []
                phone.add_event_handler(
                    "carbon_received",
                    lambda m: carbons.append(("received", m["carbon_received"]["body"])))
                phone.add_event_handler(
                    "carbon_sent",
                    lambda m: carbons.append(("sent", m["carbon_sent"]["body"])))
                await phone.online(proxy.port)
                await until(lambda: phone.sm_enabled, 10, "sm_enabled")
                r = await phone["xep_0280"].enable(timeout=5)
                assert r["type"] == "result", r
                laptop = Mobile("juliet@localhost/laptop", PW["juliet@localhost"])
                romeo = Mobile("romeo@localhost/desk", PW["romeo@localhost"])
                await laptop.online(s.port)
                await romeo.online(s.port)
                want = []

                async def exchange(tag):
                    romeo.send_message(mto="juliet@localhost/laptop",
                                       mbody="to the laptop " + tag, mtype="chat")
                    want.append(("received", "to the laptop " + tag))
                    await laptop.wait_bodies(["to the laptop " + tag])
                    laptop.send_message(mto="romeo@localhost/desk",
                                        mbody="from the laptop " + tag,
                                        mtype="chat")
                    want.append(("sent", "from the laptop " + tag))
                    await romeo.wait_bodies(["from the laptop " + tag])

                await exchange("before")
                await until(lambda: len(carbons) == len(want), 10,
                            lambda: "carbons before: %r" % carbons)
                disc = phone.disconnects
                proxy.cut()
                await until(lambda: phone.disconnects > disc, 10, "the reset")
                await exchange("while away")
                resumed = phone.resumed
                if xmppd_only():
                    proxy.place(1)
                phone.connect(("127.0.0.1", proxy.port))
                await until(lambda: phone.resumed > resumed or phone.sm_failed,
                            20, "session_resumed")
                assert not phone.sm_failed, phone.sm_failed
                await exchange("after")
                # a marker straight to the phone: after it, no carbon of
                # the exchanges above can still be on its way
                romeo.send_message(mto="juliet@localhost/phone",
                                   mbody="marker", mtype="chat")
                await phone.wait_bodies(["marker"])
                await until(lambda: len(carbons) >= len(want), 10,
                            lambda: "carbons: %r" % carbons)
                assert carbons == want, "carbons on the phone: %r\nwanted %r" % (
                    carbons, want)
            finally:
                await stop_all(phone, laptop, romeo)
                await proxy.close()
        run_async(body(), timeout=90)


# ---- XEP-0313 with slixmpp -------------------------------------------------

def test_slixmpp_mam_paging():
    """After a conversation, a fresh resource of juliet pages through the
    archive with slixmpp's xep_0313 (RSM pages of 7): the whole
    conversation in order, both directions, each archived message with
    the stanza-id juliet's client saw live."""
    with running(server(workers=2, users=USERS[:2])) as s:
        async def body():
            phone = romeo = fresh = None
            try:
                phone = Mobile("juliet@localhost/phone", PW["juliet@localhost"],
                               plugins=["xep_0359"])
                romeo = Mobile("romeo@localhost/desk", PW["romeo@localhost"],
                               plugins=["xep_0359"])
                await phone.online(s.port)
                await romeo.online(s.port)
                convo = []        # (from bare, body)
                live_ids = {}     # body -> stanza-id juliet saw
                for i in range(10):
                    t = "romeo says %d <&>" % i
                    romeo.send_message(mto="juliet@localhost/phone", mbody=t,
                                       mtype="chat")
                    convo.append(("romeo@localhost", t))
                    await phone.wait_bodies([t])
                    t2 = "juliet answers %d" % i
                    phone.send_message(mto="romeo@localhost/desk", mbody=t2,
                                       mtype="chat")
                    convo.append(("juliet@localhost", t2))
                    await romeo.wait_bodies([t2])
                for k, m in phone.inbox:
                    if k == "message" and m["body"]:
                        ids = stanza_ids(m, "juliet@localhost")
                        assert len(ids) == 1, ("live message without one "
                                               "stanza-id by juliet", m)
                        live_ids[m["body"]] = ids[0]
                assert len(live_ids) == 10, live_ids
                await stop_all(phone)
                phone = None

                fresh = Mobile("juliet@localhost/fresh", PW["juliet@localhost"],
                               plugins=["xep_0313", "xep_0359"])
                await fresh.online(s.port)
                pages = []
                results = []
                it = fresh["xep_0313"].retrieve(
                    with_jid=slixmpp.JID("romeo@localhost"), iterator=True,
                    rsm={"max": 7})
                async for page in it:
                    batch = page["mam"]["results"]
                    fin = page.xml.find("{urn:xmpp:mam:2}fin")
                    pages.append((len(batch), fin.get("complete")))
                    results += batch
                    assert len(pages) < 10, pages
                # 20 messages in pages of 7; a last empty page may follow
                # (slixmpp asks once more unless the server counts)
                assert [n for n, _ in pages if n] == [7, 7, 6], (
                    "pages (results, fin complete): %r -- slixmpp's RSM "
                    "iterator stops silently on an error answer: see the "
                    "wire with XMPPD_TEST_CLIENT_DEBUG=1" % pages)
                assert pages[0][1] in (None, "false"), pages
                assert pages[2][1] == "true", pages
                seen = []
                for r in results:
                    res = r["mam_result"]
                    fwd = res["forwarded"]["stanza"]
                    seen.append((fwd["from"].bare, fwd["body"]))
                    if fwd["from"].bare == "romeo@localhost":
                        assert res["id"] == live_ids[fwd["body"]], \
                            (fwd["body"], res["id"], live_ids[fwd["body"]])
                    assert res["forwarded"]["delay"]["stamp"] is not None
                assert seen == convo, "archive:\n%r\nconversation:\n%r" % (seen, convo)
                # all archive ids distinct
                ids = [r["mam_result"]["id"] for r in results]
                assert len(set(ids)) == len(ids), ids
                # backwards, newest first (RSM <before/>), with iterate()
                back = [m["mam_result"]["forwarded"]["stanza"]["body"]
                        async for m in fresh["xep_0313"].iterate(
                            with_jid=slixmpp.JID("romeo@localhost"),
                            reverse=True, rsm={"max": 6})]
                assert back == [b for _, b in reversed(convo)], back
            finally:
                await stop_all(phone, romeo, fresh)
        run_async(body(), timeout=90)


# ---- XEP-0352 with slixmpp -------------------------------------------------

def test_slixmpp_csi():
    """juliet's phone (slixmpp xep_0352) goes inactive; romeo changes
    his presence five times.  The phone is not woken for that churn:
    when it says it is active again it gets romeo's latest presence
    only.  While inactive, a message with a body still arrives (and
    romeo's presence, if held, comes before it, the latest one).  One
    worker, so that when the nurse (active) has seen romeo's last
    presence, the server has dealt with juliet's copy too."""
    with running(server(workers=1, users=USERS)) as s:
        async def body():
            phone = romeo = nurse = None
            try:
                phone = Mobile("juliet@localhost/phone", PW["juliet@localhost"],
                               plugins=["xep_0352"])
                csi = []
                phone.add_event_handler("csi_enabled", csi.append)
                romeo = Mobile("romeo@localhost/desk", PW["romeo@localhost"])
                await phone.online(s.port)
                assert csi, "the server did not offer CSI"
                await romeo.online(s.port)
                await subscribe_both(phone, romeo)
                # a witness of romeo's broadcasts
                nurse = Mobile("nurse@localhost/desk", PW["nurse@localhost"])
                await nurse.online(s.port)
                await subscribe_both(nurse, romeo)

                def romeos():
                    return [p for k, p in phone.inbox if k == "presence"
                            and p["from"] == "romeo@localhost/desk"]

                for rounds in range(2):
                    phone["xep_0352"].send_inactive()
                    assert await phone["xep_0199"].ping(jid="localhost", timeout=5)
                    n = len(romeos())
                    for i, show in enumerate(["away", "xa", "dnd", "chat", "away"]):
                        romeo.send_presence(pshow=show,
                                            pstatus="round %d churn %d" % (rounds, i))
                    # the server has broadcast the last one to romeo's
                    # contacts (one loop over his roster, once the
                    # database answered): the nurse, active, has it
                    last = "round %d churn 4" % rounds
                    await until(lambda: [p for k, p in nurse.inbox
                                         if k == "presence"
                                         and p["status"] == last], 10,
                                "the nurse to see romeo's presence")
                    if rounds == 0:
                        # the phone says it is active again
                        phone["xep_0352"].send_active()
                        assert await phone["xep_0199"].ping(jid="localhost",
                                                            timeout=5)
                    # a message with a body: at once, even to an
                    # inactive phone (round 1); everything romeo sent
                    # before it is before it in the stream
                    mark = "wake up %d" % rounds
                    romeo.send_message(mto="juliet@localhost/phone",
                                       mbody=mark, mtype="chat")
                    await phone.wait_bodies([mark])
                    at = [i for i, (k, m) in enumerate(phone.inbox)
                          if k == "message" and m["body"] == mark][0]
                    got = [p for k, p in phone.inbox[:at]
                           if k == "presence"
                           and p["from"] == "romeo@localhost/desk"][n:]
                    seen = [(p["show"], p["status"]) for p in got]
                    latest = ("away", "round %d churn 4" % rounds)
                    if PROSODY:
                        # Prosody's csi_simple holds but does not merge
                        assert seen and seen[-1] == latest, seen
                    else:
                        assert seen == [latest], \
                            "round %d: romeo's presences reaching the phone: %r" % (
                                rounds, seen)
                phone["xep_0352"].send_active()
                assert not phone.errors() and not romeo.errors()
            finally:
                await stop_all(phone, romeo, nurse)
        run_async(body())


# ---- profanity in tmux -----------------------------------------------------

class Profanity:
    """Debian's profanity in a tmux session of its own (own tmux socket,
    no user configuration), with a fresh home: an account file with the
    password, the test certificate trusted (tls.policy=trust), debug log
    (libstrophe's SENT:/RECV: lines: the wire).  screen() is what the
    user sees."""

    def __init__(self, jid, password, port, resource="profanity",
                 host="127.0.0.1"):
        if shutil.which("profanity") is None or shutil.which("tmux") is None:
            raise AssertionError("profanity and tmux are needed (Debian "
                                 "packages profanity, tmux)")
        self.home = tempfile.mkdtemp(prefix="xmppd-profanity-")
        self.sock = "xmppd-test-%d-%s" % (os.getpid(), os.path.basename(self.home))
        data = os.path.join(self.home, "data", "profanity")
        conf = os.path.join(self.home, "config", "profanity")
        os.makedirs(data)
        os.makedirs(conf)
        with open(os.path.join(data, "accounts"), "w") as f:
            f.write("[%s]\nenabled=true\njid=%s\nserver=%s\nport=%d\n"
                    "resource=%s\npassword=%s\ntls.policy=trust\n"
                    % (jid, jid, host, port, resource, password))
        with open(os.path.join(conf, "profrc"), "w") as f:
            f.write("[connection]\nautoping=0\n[ui]\nsplash=false\n"
                    "[notifications]\nmessage=false\n")
        self.logfile = os.path.join(data, "logs", "profanity.log")
        env = ("env -i PATH=/usr/bin:/bin HOME=%s XDG_DATA_HOME=%s/data "
               "XDG_CONFIG_HOME=%s/config TERM=xterm-256color LANG=C.UTF-8"
               % (self.home, self.home, self.home))
        self.tmux("new-session", "-d", "-s", "prof", "-x", "220", "-y", "50",
                  "%s profanity -l DEBUG -a %s" % (env, jid))

    def tmux(self, *args):
        r = subprocess.run(["tmux", "-L", self.sock, "-f", "/dev/null"] + list(args),
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise AssertionError("tmux %s: %s" % (args, r.stderr))
        return r.stdout

    def screen(self):
        return "\n".join(ln.rstrip() for ln in self.tmux(
            "capture-pane", "-p", "-J", "-t", "prof").splitlines())

    def type(self, line):
        self.tmux("send-keys", "-t", "prof", "-l", line)
        self.tmux("send-keys", "-t", "prof", "Enter")

    def wire(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    async def shows(self, pattern, timeout=15):
        rx = re.compile(pattern, re.M)
        await until(lambda: rx.search(self.screen()), timeout,
                    lambda: "profanity to show %r; screen:\n%s" % (
                        pattern, self.screen()))

    def close(self, failed):
        try:
            self.tmux("kill-server")
        except AssertionError:
            pass
        if failed:
            print("---- profanity's log, the end (%s) ----" % self.logfile)
            print(self.wire()[-6000:])
        else:
            shutil.rmtree(self.home, ignore_errors=True)


async def profanity_logged_in(s, carbons=True):
    """profanity started for juliet, logged in, carbons asked for:
    what its user sees at login has no carbons error (unless told not
    to look: the MAM test leaves carbons to the carbons test)."""
    prof = Profanity("juliet@localhost", PW["juliet@localhost"], s.port)
    await prof.shows(r"juliet@localhost/profanity logged in successfully", 20)
    if not carbons:
        return prof
    await until(lambda: "Message carbons enabled" in prof.wire()
                or "Error enabling carbons" in prof.wire(), 10,
                "profanity to hear about carbons")
    assert "Server error enabling message carbons" not in prof.screen(), \
        prof.screen()
    assert "Message carbons enabled" in prof.wire(), \
        [ln for ln in prof.wire().splitlines() if "carbons" in ln]
    return prof


def test_profanity_carbons():
    """profanity logs in without "Server error enabling message
    carbons"; in its chat window with romeo, what juliet's phone sends to
    romeo and what romeo sends to the phone show up (carbons)."""
    with running(server(workers=2, users=USERS[:2])) as s:
        async def body():
            phone = romeo = prof = None
            failed = True
            try:
                phone = Mobile("juliet@localhost/phone", PW["juliet@localhost"])
                romeo = Mobile("romeo@localhost/desk", PW["romeo@localhost"])
                await phone.online(s.port)
                await romeo.online(s.port)
                prof = await profanity_logged_in(s)
                prof.type("/msg romeo@localhost")
                await prof.shows(r"^ romeo@localhost ")
                phone.send_message(mto="romeo@localhost/desk",
                                   mbody="sent from the phone", mtype="chat")
                await romeo.wait_bodies(["sent from the phone"])
                await prof.shows(r"- me: sent from the phone$")
                romeo.send_message(mto="juliet@localhost/phone",
                                   mbody="received by the phone", mtype="chat")
                await phone.wait_bodies(["received by the phone"])
                await prof.shows(r"- romeo@localhost/desk: received by the phone$")
                assert not phone.errors() and not romeo.errors()
                failed = False
            finally:
                await stop_all(phone, romeo)
                if prof is not None:
                    prof.close(failed)
        run_async(body(), timeout=90)


def test_profanity_mam():
    """juliet's phone and romeo talk before profanity starts; in
    profanity, /mam on, then opening the chat window with romeo shows
    that conversation, fetched from the archive, in order."""
    with running(server(workers=2, users=USERS[:2])) as s:
        async def body():
            phone = romeo = prof = None
            failed = True
            try:
                phone = Mobile("juliet@localhost/phone", PW["juliet@localhost"])
                romeo = Mobile("romeo@localhost/desk", PW["romeo@localhost"])
                await phone.online(s.port)
                await romeo.online(s.port)
                history = []
                for i in range(3):
                    t = "before profanity %d: romeo" % i
                    romeo.send_message(mto="juliet@localhost/phone", mbody=t,
                                       mtype="chat")
                    await phone.wait_bodies([t])
                    history.append("romeo@localhost/desk: " + t)
                    t = "before profanity %d: juliet" % i
                    phone.send_message(mto="romeo@localhost/desk", mbody=t,
                                       mtype="chat")
                    await romeo.wait_bodies([t])
                    history.append("me: " + t)
                await stop_all(phone, romeo)
                phone = romeo = None

                prof = await profanity_logged_in(s, carbons=False)
                prof.type("/mam on")
                await prof.shows(r"Message Archive Management enabled")
                prof.type("/msg romeo@localhost")
                await until(lambda: history[-1] in prof.screen()
                            or "Server doesn't support MAM" in prof.screen(),
                            20, lambda: "the history in profanity:\n"
                            + prof.screen())
                screen = prof.screen()
                assert "Server doesn't support MAM" not in screen, screen
                lines = [ln.split(" - ", 1)[1] for ln in screen.splitlines()
                         if re.match(r"\d\d:\d\d:\d\d - ", ln)]
                shown = [ln for ln in lines if ln in history]
                if PROSODY:
                    # profanity 0.13.1 asks again with <after/> misplaced
                    # in <query/> (not in an RSM <set/>); Prosody ignores
                    # it and sends the whole archive again, shown twice
                    shown = shown[:len(history)]
                assert shown == history, \
                    "history in profanity's window:\n%s" % screen
                failed = False
            finally:
                await stop_all(phone, romeo)
                if prof is not None:
                    prof.close(failed)
        run_async(body(), timeout=90)


if __name__ == "__main__":
    run_tests([
        test_slixmpp_sm_resume,
        test_slixmpp_sm_resume_after_worker_crash,
        test_slixmpp_sm_gone_for_good,
        test_aioxmpp_sm_resume,
        test_slixmpp_carbons,
        test_slixmpp_carbons_survive_resumption,
        test_slixmpp_mam_paging,
        test_slixmpp_csi,
        test_profanity_carbons,
        test_profanity_mam,
    ])

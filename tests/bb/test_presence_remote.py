"""RFC 6121 with contacts that are not local accounts, black box with
exact XML.  An external component (XEP-0114, gw.localhost) stands in for
a remote server: it sees exactly the stanzas a remote server would get
(subscription stanzas stamped with the user's bare JID, probes from the
bare JID, broadcasts, unavailable), and what it sends takes the paths of
stanzas arriving from another server (route_stanza with a trusted
'from' on a domain we do not host).  Covered: outbound subscribe,
subscribed, unsubscribe, unsubscribed with roster pushes and stored
state (3.1.2, 3.2.2, 3.3.2, 3.4), inbound ones through the contact's
state machine (3.1.3, 3.1.6, 3.2.3, 3.3.3), pre-approval, a component
domain JID as a contact, probes at initial presence and probes from the
remote side answered per 4.3.2 (available, none available, no
subscription, no account, blocked), broadcast and unavailable at logout
and at a lost connection (4.4, 4.5), directed presence and its
unavailable (4.6), roster removal (2.5.2), offline storage and blocking
(XEP-0191) for a remote sender, and the unavailable a remote contact
gets when the worker holding the session is killed, on two workers.
Needs XMPPD_TEST_PGCONN.
"""
import hashlib
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, Server, run_tests  # noqa: E402
from imlib import (STANZAS, USERS, _STANZA, _nested_end, item_rx, login,  # noqa: E402
                   placed, push_rx)
from test_component import comp_connect_on  # noqa: E402

NS_STREAMS = "http://etherx.jabber.org/streams"
GW, SECRET = "gw.localhost", "s3cr3t-gw"
BOT = "bot@" + GW


class Remote:
    """The component: what a remote server would see and send.  Stanzas
    are queued in arrival order; expect() takes the first that matches
    exactly (or a compiled regex)."""

    def __init__(self, server, client=None):
        self.c = client or Client(server.component_port)
        self.c.send("<stream:stream xmlns='jabber:component:accept' "
                    "xmlns:stream='%s' to='%s'>" % (NS_STREAMS, GW))
        head = self.c.read_until("id='([0-9a-f]{32})'>")
        sid = re.search("id='([0-9a-f]{32})'", head).group(1)
        self.c.send("<handshake>%s</handshake>"
                    % hashlib.sha1((sid + SECRET).encode()).hexdigest())
        got = self.c.read_until("<handshake/>")
        assert got == "<handshake/>", got
        self.q = []

    def send(self, text):
        self.c.send(text)

    def _split(self):
        while True:
            m = _STANZA.match(self.c.buf)
            if not m:
                return
            end = _nested_end(self.c.buf, m)
            if end is None:
                return
            self.q.append(self.c.buf[m.start(1):end].decode())
            self.c.buf = self.c.buf[end:]

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            return
        self.c.sock.settimeout(max(left, 0.001))
        try:
            chunk = self.c.sock.recv(65536)
        except (TimeoutError, OSError):
            return
        if not chunk:
            raise AssertionError("component stream closed; queued %r" % self.q)
        self.c.buf += chunk

    def expect(self, want, timeout=5.0):
        rx = want if isinstance(want, re.Pattern) else re.compile(re.escape(want))
        deadline = time.monotonic() + timeout
        while True:
            self._split()
            for i, st in enumerate(self.q):
                if rx.fullmatch(st):
                    del self.q[i]
                    return st
            if time.monotonic() >= deadline:
                raise AssertionError("component: no stanza matching %r within %.1fs;"
                                     " queued %r" % (rx.pattern, timeout, self.q))
            self._fill(deadline)

    def expect_seq(self, *wants, timeout=5.0):
        """These arrive next, in this order, nothing else before them."""
        for want in wants:
            deadline = time.monotonic() + timeout
            while not self.q and time.monotonic() < deadline:
                self._fill(deadline)
                self._split()
            assert self.q, "component: nothing arrived, wanted %r" % want
            got = self.q.pop(0)
            assert got == want, "component: got %r\n  wanted %r" % (got, want)

    def quiet(self, secs=0.5):
        deadline = time.monotonic() + secs
        while time.monotonic() < deadline:
            self._fill(deadline)
        self._split()
        assert not self.q, "component: expected nothing, got %r" % self.q

    def close(self):
        self.c.close()


class running:
    def __init__(self, s):
        self.s = s

    def __enter__(self):
        try:
            self.s.start()
        except BaseException:
            self.s.stop()
            raise
        return self.s

    def __exit__(self, *exc):
        if exc[0] is not None:
            print("---- xmppd log (%s) ----" % self.s.log)
            print(self.s.log_text()[-8000:])
        self.s.stop()


def server(workers=2):
    return running(Server(workers=workers, users=USERS, components={GW: SECRET}))


def out_sub(type_, frm, to, id_=None, body=""):
    """A client's subscription stanza as routed to the remote side:
    'to' (the contact's bare JID), type, id as the client wrote them,
    then 'from' stamped with the user's bare JID (3.1.2)."""
    i = " id='%s'" % id_ if id_ else ""
    if body:
        return "<presence to='%s' type='%s'%s from='%s'>%s</presence>" % (
            to, type_, i, frm, body)
    return "<presence to='%s' type='%s'%s from='%s'/>" % (to, type_, i, frm)


def built(frm, to, type_):
    """A presence the server builds itself: from, to, type."""
    return "<presence from='%s' to='%s' type='%s'/>" % (frm, to, type_)


def relayed(to, frm, type_=None, body=""):
    t = " type='%s'" % type_ if type_ else ""
    if body:
        return "<presence to='%s'%s from='%s'>%s</presence>" % (to, t, frm, body)
    return "<presence to='%s'%s from='%s'/>" % (to, t, frm)


def gone(to, frm):
    return "<presence to='%s' from='%s' type='unavailable'/>" % (to, frm)


def roster_has(im, item):
    got = im.roster_get()
    assert re.search(item, got), "roster of %s: %r lacks %r" % (im.bare, got, item)


def roster_lacks(im, jid):
    got = im.roster_get()
    assert "jid='%s'" % jid not in got, "roster of %s: %r has %s" % (im.bare, got, jid)


# ---------------------------------------------------------------------------

def test_outbound_subscribe():
    """3.1.2: the user's server pushes the item with ask='subscribe'
    before routing the request, stamped with the bare JID, to the
    remote contact; 3.1.6: the contact's subscribed makes it 'to', and
    its presence is then delivered; an unasked subscribed is ignored."""
    with server() as s:
        gw = Remote(s)
        j = login(s, "juliet", "balcony", worker=0)
        j2 = login(s, "juliet", "bed", worker=1)
        j.drain(0.3)
        j2.drain(0.3)
        j.send("<presence to='%s' type='subscribe' id='s1'><status>hi</status>"
               "</presence>" % BOT)
        for im in (j, j2):
            im.expect(push_rx(1, item_rx(BOT, "none", ask=True)))
        gw.expect_seq(out_sub("subscribe", "juliet@localhost", BOT, "s1",
                              "<status>hi</status>"))
        roster_has(j, item_rx(BOT, "none", ask=True))
        # a full JID in 'to' is the contact's bare JID (3.1.2)
        j.send("<presence to='%s/res' type='subscribe' id='s2'/>" % BOT)
        gw.expect_seq(out_sub("subscribe", "juliet@localhost", BOT, "s2"))

        # an unasked approval from another contact: ignored (3.1.6)
        gw.send(built("other@" + GW, "juliet@localhost", "subscribed"))
        # the contact approves: push 'to', the stanza reaches each
        # resource, then its presence does
        gw.send("<presence from='%s' to='juliet@localhost' type='subscribed' id='a1'/>"
                % BOT)
        for im in (j, j2):
            im.expect(push_rx(2, item_rx(BOT, "to")))
            im.expect("<presence from='%s' to='juliet@localhost' type='subscribed' "
                      "id='a1'/>" % BOT)
        gw.send("<presence from='%s/x' to='juliet@localhost'><show>dnd</show></presence>"
                % BOT)
        for im in (j, j2):
            im.expect("<presence from='%s/x' to='juliet@localhost'><show>dnd</show>"
                      "</presence>" % BOT)
            im.quiet(0.3, re.compile(".*other@.*"))
        roster_has(j, item_rx(BOT, "to"))
        roster_lacks(j, "other@" + GW)
        gw.quiet(0.3)


def test_domain_contact_and_probes():
    """A component's domain JID is a contact like any other (3.1.2);
    with 'to' the user's initial presence probes it from the bare JID
    (4.2.2) and its answer is delivered; presence to contacts with
    'to' only is not broadcast."""
    with server() as s:
        gw = Remote(s)
        j = login(s, "juliet", "balcony")
        j.send("<presence to='%s' type='subscribe'/>" % GW)
        j.expect(push_rx(1, item_rx(GW, "none", ask=True)))
        gw.expect_seq(out_sub("subscribe", "juliet@localhost", GW))
        gw.send(built(GW, "juliet@localhost", "subscribed"))
        j.expect(push_rx(2, item_rx(GW, "to")))
        j.expect(built(GW, "juliet@localhost", "subscribed"))
        j.close()
        gw.quiet(0.5)   # 'to' only: no unavailable for it
        j = login(s, "juliet", "window", presence=None)
        j.send("<presence><status>back</status></presence>")
        gw.expect_seq(built("juliet@localhost", GW, "probe"))
        gw.send("<presence from='%s' to='juliet@localhost'/>" % GW)
        j.expect("<presence from='%s' to='juliet@localhost'/>" % GW)
        gw.quiet(0.3)
        j.close()


def test_inbound_subscribe_and_broadcast():
    """3.1.3: a request from a remote contact reaches the user's
    resources whole; 3.1.5: approving it pushes 'from', routes
    subscribed from the bare JID and then the user's presence; later
    presence is broadcast to it (4.4.2), unavailable at logout and at a
    lost connection (4.5.2)."""
    with server() as s:
        gw = Remote(s)
        j = login(s, "juliet", "balcony", worker=0,
                  presence="<presence><show>chat</show></presence>")
        j2 = login(s, "juliet", "bed", worker=1)
        j.drain(0.3)
        j2.drain(0.3)
        gw.send("<presence from='%s/x' to='juliet@localhost/balcony' type='subscribe' "
                "id='q1'><status>may I?</status><nick xmlns='http://jabber.org/"
                "protocol/nick'>Bot</nick></presence>" % BOT)
        want = ("<presence from='%s' to='juliet@localhost' type='subscribe' id='q1'>"
                "<status>may I?</status><nick xmlns='http://jabber.org/protocol/nick'>"
                "Bot</nick></presence>" % BOT)
        j.expect(want)
        j2.expect(want)
        roster_lacks(j, BOT)    # a pending request is not a roster item
        j.send("<presence to='%s' type='subscribed' id='ok1'/>" % BOT)
        for im in (j, j2):
            im.expect(push_rx(1, item_rx(BOT, "from")))
        gw.expect_seq(out_sub("subscribed", "juliet@localhost", BOT, "ok1"))
        # then the presence of each available resource (3.1.5)
        gw.expect(relayed(BOT, "juliet@localhost/balcony", body="<show>chat</show>"))
        gw.expect(relayed(BOT, "juliet@localhost/bed"))
        gw.quiet(0.3)
        roster_has(j2, item_rx(BOT, "from"))
        # broadcast, once per contact, to the bare JID
        j.send("<presence><show>away</show></presence>")
        gw.expect_seq(relayed(BOT, "juliet@localhost/balcony", body="<show>away</show>"))
        # logout, and a lost connection
        j.close()
        gw.expect_seq(gone(BOT, "juliet@localhost/balcony"))
        j2.abort()
        gw.expect_seq(gone(BOT, "juliet@localhost/bed"))
        # a repeated request with 'from' already: answered subscribed
        # at once, the user not bothered (3.1.3)
        j = login(s, "juliet", "b3")
        gw.expect_seq(relayed(BOT, "juliet@localhost/b3"))
        gw.send(built(BOT, "juliet@localhost", "subscribe"))
        gw.expect_seq(built("juliet@localhost", BOT, "subscribed"))
        j.quiet(0.3, re.compile(".*type='subscribe'.*"))
        j.close()


def test_pending_while_offline():
    """3.1.3: a request from a remote contact to an offline user is
    stored and delivered at her initial presence."""
    with server() as s:
        gw = Remote(s)
        gw.send("<presence from='%s' to='romeo@localhost' type='subscribe' id='p1'>"
                "<status>later</status></presence>" % BOT)
        time.sleep(0.5)
        r = login(s, "romeo", "orchard", presence=None)
        r.quiet(0.3)
        r.send("<presence/>")
        r.expect("<presence from='%s' to='romeo@localhost' type='subscribe' id='p1'>"
                 "<status>later</status></presence>" % BOT)
        # refused: unsubscribed goes out, nothing stays pending
        r.send("<presence to='%s' type='unsubscribed'/>" % BOT)
        gw.expect_seq(out_sub("unsubscribed", "romeo@localhost", BOT))
        r.close()
        r = login(s, "romeo", "garden")
        r.quiet(0.5, re.compile(".*type='subscribe'.*"))
        r.close()


def test_inbound_probes():
    """4.3.2: a probe from a remote contact with 'from' gets the last
    presence of each available resource, unavailable from the bare JID
    when none is available; without a subscription, or to an account
    that does not exist, unsubscribed; from a blocked JID, nothing."""
    with server() as s:
        gw = Remote(s)
        j = login(s, "juliet", "balcony", worker=0,
                  presence="<presence><status>here</status></presence>")
        j2 = login(s, "juliet", "bed", worker=1)
        gw.send(built(BOT, "juliet@localhost", "subscribe"))
        j.expect(built(BOT, "juliet@localhost", "subscribe"))
        j.send("<presence to='%s' type='subscribed'/>" % BOT)
        gw.expect_seq(out_sub("subscribed", "juliet@localhost", BOT))
        gw.expect(relayed(BOT, "juliet@localhost/balcony", body="<status>here</status>"))
        gw.expect(relayed(BOT, "juliet@localhost/bed"))
        gw.quiet(0.3)

        gw.send("<presence from='%s/x' to='juliet@localhost' type='probe'/>" % BOT)
        gw.expect(relayed(BOT + "/x", "juliet@localhost/balcony",
                          body="<status>here</status>"))
        gw.expect(relayed(BOT + "/x", "juliet@localhost/bed"))
        gw.quiet(0.3)
        # no subscription: unsubscribed, to the bare JID
        gw.send(built("eve@" + GW, "juliet@localhost", "probe"))
        gw.expect_seq(built("juliet@localhost", "eve@" + GW, "unsubscribed"))
        gw.send(built(BOT, "nobody@localhost", "probe"))
        gw.expect_seq(built("nobody@localhost", BOT, "unsubscribed"))
        # nothing reaches the user's clients
        for im in (j, j2):
            im.quiet(0.3, re.compile(".*type='probe'.*"))
        # none available: unavailable from the bare JID
        j.close()
        gw.expect_seq(gone(BOT, "juliet@localhost/balcony"))
        j2.close()
        gw.expect_seq(gone(BOT, "juliet@localhost/bed"))
        gw.send(built(BOT, "juliet@localhost", "probe"))
        gw.expect_seq(built("juliet@localhost", BOT, "unavailable"))
        # blocked (XEP-0191): no answer at all, no broadcast either
        j = login(s, "juliet", "b3")
        gw.expect_seq(relayed(BOT, "juliet@localhost/b3"))
        j.send("<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'>"
               "<item jid='%s'/></block></iq>" % BOT)
        j.expect(re.compile("<iq [^>]*id='b1'[^>]*type='result'[^>]*/>"))
        gw.expect_seq(gone(BOT, "juliet@localhost/b3"))
        gw.send(built(BOT, "juliet@localhost", "probe"))
        j.send("<presence><show>xa</show></presence>")
        gw.quiet(0.5)
        j.close()
        gw.quiet(0.3)


def test_cancel_and_unsubscribe():
    """3.2.2: the user cancels the contact's subscription: unsubscribed
    then unavailable from each available resource; 3.3.3: the contact
    unsubscribes: push, delivered, unavailable to it; 3.2.3 inbound
    unsubscribed: push, delivered; 2.5.2: removing the item sends
    unsubscribe and unsubscribed."""
    with server() as s:
        gw = Remote(s)
        j = login(s, "juliet", "balcony")
        # both ways with bot
        j.send("<presence to='%s' type='subscribe'/>" % BOT)
        j.expect(push_rx(1, item_rx(BOT, "none", ask=True)))
        gw.expect_seq(out_sub("subscribe", "juliet@localhost", BOT))
        gw.send(built(BOT, "juliet@localhost", "subscribed"))
        j.expect(push_rx(2, item_rx(BOT, "to")))
        gw.send(built(BOT, "juliet@localhost", "subscribe"))
        j.expect(built(BOT, "juliet@localhost", "subscribe"))
        j.send("<presence to='%s' type='subscribed'/>" % BOT)
        j.expect(push_rx(3, item_rx(BOT, "both")))
        gw.expect_seq(out_sub("subscribed", "juliet@localhost", BOT),
                      relayed(BOT, "juliet@localhost/balcony"))
        j.drain(0.3)

        # 3.2.2: juliet cancels bot's subscription to her
        j.send("<presence to='%s' type='unsubscribed'/>" % BOT)
        j.expect(push_rx(4, item_rx(BOT, "to")))
        gw.expect_seq(out_sub("unsubscribed", "juliet@localhost", BOT),
                      gone(BOT, "juliet@localhost/balcony"))
        # no more broadcasts to it
        j.send("<presence><show>away</show></presence>")
        gw.quiet(0.5)
        # 3.2.3: bot cancels juliet's subscription to it
        gw.send(built(BOT, "juliet@localhost", "unsubscribed"))
        j.expect(push_rx(5, item_rx(BOT, "none")))
        j.expect(built(BOT, "juliet@localhost", "unsubscribed"))
        roster_has(j, item_rx(BOT, "none"))

        # 3.3.3: an inbound unsubscribe from a subscriber
        gw.send(built(BOT, "juliet@localhost", "subscribe"))
        j.expect(built(BOT, "juliet@localhost", "subscribe"))
        j.send("<presence to='%s' type='subscribed'/>" % BOT)
        j.expect(push_rx(6, item_rx(BOT, "from")))
        gw.expect_seq(out_sub("subscribed", "juliet@localhost", BOT),
                      relayed(BOT, "juliet@localhost/balcony", body="<show>away</show>"))
        gw.send(built(BOT, "juliet@localhost", "unsubscribe"))
        j.expect(push_rx(7, item_rx(BOT, "none")))
        j.expect(built(BOT, "juliet@localhost", "unsubscribe"))
        gw.expect_seq(gone(BOT, "juliet@localhost/balcony"))

        # 3.3.2 outbound unsubscribe, then 2.5.2 remove with 'from'
        j.send("<presence to='%s' type='subscribe'/>" % BOT)
        j.expect(push_rx(8, item_rx(BOT, "none", ask=True)))
        gw.expect_seq(out_sub("subscribe", "juliet@localhost", BOT))
        j.send("<presence to='%s' type='unsubscribe'/>" % BOT)
        j.expect(push_rx(9, item_rx(BOT, "none")))
        gw.expect_seq(out_sub("unsubscribe", "juliet@localhost", BOT))
        gw.send(built(BOT, "juliet@localhost", "subscribe"))
        j.expect(built(BOT, "juliet@localhost", "subscribe"))
        j.send("<presence to='%s' type='subscribed'/>" % BOT)
        j.expect(push_rx(10, item_rx(BOT, "from")))
        gw.expect_seq(out_sub("subscribed", "juliet@localhost", BOT),
                      relayed(BOT, "juliet@localhost/balcony", body="<show>away</show>"))
        got = j.roster_set("<item jid='%s' subscription='remove'/>" % BOT)
        assert "type='result'" in got, got
        j.expect(push_rx(11, "<item jid='%s' subscription='remove'/>" % re.escape(BOT)))
        gw.expect_seq(built("juliet@localhost", BOT, "unsubscribed"),
                      gone(BOT, "juliet@localhost/balcony"))
        gw.quiet(0.3)
        roster_lacks(j, BOT)
        j.close()


def test_preapproval():
    """3.4: subscribed without a pending request is a pre-approval (an
    item with approved='true', nothing routed); the contact's later
    request is answered subscribed at once, followed by the user's
    presence, and the user sees a push to 'from', not the request."""
    with server() as s:
        gw = Remote(s)
        j = login(s, "juliet", "balcony")
        j.send("<presence to='%s' type='subscribed'/>" % BOT)
        j.expect(push_rx(1, item_rx(BOT, "none", approved=True)))
        gw.quiet(0.5)
        gw.send(built(BOT, "juliet@localhost", "subscribe"))
        gw.expect_seq(built("juliet@localhost", BOT, "subscribed"),
                      relayed(BOT, "juliet@localhost/balcony"))
        j.expect(push_rx(2, item_rx(BOT, "from")))
        j.quiet(0.3, re.compile(".*type='subscribe'.*"))
        j.close()
        gw.expect_seq(gone(BOT, "juliet@localhost/balcony"))


def test_directed_presence():
    """4.6: directed presence to a remote JID is routed and remembered;
    at logout the JID gets unavailable, unless the user already sent it
    directed unavailable."""
    with server() as s:
        gw = Remote(s)
        j = login(s, "juliet", "balcony")
        j.send("<presence to='%s/a'><status>psst</status></presence>" % BOT)
        gw.expect_seq(relayed(BOT + "/a", "juliet@localhost/balcony",
                              body="<status>psst</status>"))
        j.send("<presence to='carol@%s'/>" % GW)
        gw.expect_seq(relayed("carol@" + GW, "juliet@localhost/balcony"))
        j.send("<presence to='carol@%s' type='unavailable'/>" % GW)
        gw.expect_seq(relayed("carol@" + GW, "juliet@localhost/balcony", "unavailable"))
        j.close()
        gw.expect_seq(gone(BOT + "/a", "juliet@localhost/balcony"))
        gw.quiet(0.5)


def test_messages_offline_and_blocking():
    """8.5: a message from a remote sender to an offline user is stored
    and delivered at login; a blocked remote sender's message is
    answered service-unavailable (XEP-0191) and its presence dropped."""
    with server() as s:
        gw = Remote(s)
        gw.send("<message from='%s/x' to='romeo@localhost' id='m1' type='chat'>"
                "<body>stored</body></message>" % BOT)
        time.sleep(0.5)
        r = login(s, "romeo", "orchard")
        r.expect(re.compile(re.escape("<message from='%s/x' to='romeo@localhost' id='m1' "
                                      "type='chat'><body>stored</body>" % BOT)
                            + "<delay xmlns='urn:xmpp:delay' from='localhost' "
                            "stamp='[^']+'>Offline Storage</delay></message>"))
        r.send("<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'>"
               "<item jid='%s'/></block></iq>" % GW)
        r.expect(re.compile("<iq [^>]*id='b1'[^>]*type='result'[^>]*/>"))
        r.expect(re.compile("<iq id='[^']+' type='set'><block xmlns='urn:xmpp:blocking'>"
                            "<item jid='%s'/></block></iq>" % re.escape(GW)))
        gw.send("<message from='%s/x' to='romeo@localhost' id='m2' type='chat'>"
                "<body>blocked</body></message>" % BOT)
        gw.expect("<message from='romeo@localhost' id='m2' to='%s/x' type='error'>"
                  "<error type='cancel'><service-unavailable xmlns='%s'/></error>"
                  "</message>" % (BOT, STANZAS))
        gw.send("<presence from='%s/x' to='romeo@localhost'/>" % BOT)
        r.quiet(0.5)
        r.close()


def test_worker_killed():
    """4.5.2: a worker killed with SIGKILL: the remote contact of a
    session it held gets unavailable (the master sweeps, a live worker
    broadcasts), like a local contact."""
    with server() as s:
        gw = Remote(s, client=comp_connect_on(s, 1))
        j = login(s, "juliet", "a", worker=0)
        assert placed(s, 2) == [1, 1]
        j.send("<presence to='%s' type='subscribed'/>" % BOT)
        j.expect(push_rx(1, item_rx(BOT, "none", approved=True)))
        gw.send(built(BOT, "juliet@localhost", "subscribe"))
        gw.expect_seq(built("juliet@localhost", BOT, "subscribed"),
                      relayed(BOT, "juliet@localhost/a"))
        os.kill(s.status()["workers"][0]["pid"], signal.SIGKILL)
        gw.expect_seq(gone(BOT, "juliet@localhost/a"), timeout=10)
        gw.quiet(0.3)
        j.abort()


def test_shutdown_tells_remote_contacts():
    """Stopping the server (SIGTERM): the remote contact gets the user's
    unavailable from her full JID before the component's stream ends
    with <system-shutdown/>; the local contact (romeo, subscribed too)
    is disconnected by the same shutdown and gets no presence of her."""
    with server(workers=1) as s:
        gw = Remote(s)
        j = login(s, "juliet", "balcony")
        r = login(s, "romeo", "court")
        gw.send(built(BOT, "juliet@localhost", "subscribe"))
        j.expect(built(BOT, "juliet@localhost", "subscribe"))
        j.send("<presence to='%s' type='subscribed'/>" % BOT)
        j.expect(push_rx(1, item_rx(BOT, "from")))
        gw.expect_seq(out_sub("subscribed", "juliet@localhost", BOT),
                      relayed(BOT, "juliet@localhost/balcony"))
        r.send("<presence to='juliet@localhost' type='subscribe'/>")
        j.expect("<presence to='juliet@localhost' type='subscribe' "
                 "from='romeo@localhost'/>")
        j.send("<presence to='romeo@localhost' type='subscribed'/>")
        r.expect(re.compile(".*from='juliet@localhost/balcony'.*"))
        r.drain(0.3)
        os.kill(s.master_pid, signal.SIGTERM)
        for im in (j, r):
            got = im.c.read_until("<system-shutdown .*?</stream:stream>")
            assert "unavailable" not in got, got
            im.c.send("</stream:stream>")
        gw.expect_seq(gone(BOT, "juliet@localhost/balcony"))
        rest = gw.c.read_all_until_close(10)
        assert rest.startswith("<stream:error><system-shutdown "), rest


if __name__ == "__main__":
    run_tests([test_outbound_subscribe, test_domain_contact_and_probes,
               test_inbound_subscribe_and_broadcast, test_pending_while_offline,
               test_inbound_probes, test_cancel_and_unsubscribe, test_preapproval,
               test_directed_presence, test_messages_offline_and_blocking,
               test_worker_killed, test_shutdown_tells_remote_contacts])

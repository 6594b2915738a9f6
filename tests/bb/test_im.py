"""RFC 6121 black box with exact XML: rosters (get/set/remove, versioning,
pushes to interested resources on any worker), the subscription state
machine (section 3, Appendix A, pre-approval, pending requests),
presence (initial broadcast, probes, directed presence, unavailable at
logout and when a worker dies), message rules (section 8.5) and offline
storage (XEP-0160), across a crash and a restart.  Needs
XMPPD_TEST_PGCONN.  Helpers: imlib.py.
"""
import datetime
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, run_tests, wait_for  # noqa: E402
from imlib import (USERS, RestartableServer, Server, checked,  # noqa: E402
                   error_rx, item_rx, login, placed, push_rx, soft,
                   soft_expect, subscribe_both)


class running:
    """'with running(server)': a server whose start() fails is stopped
    too; the log tail is printed when the body fails."""

    def __init__(self, server):
        self.s = server

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


def server(**kw):
    kw.setdefault("users", USERS)
    kw.setdefault("workers", 1)
    return running(Server(**kw))


def pres(frm, to, type_=None, body="", id_=None):
    """A presence as xmppd writes one it built itself: from, to, type."""
    i = " id='%s'" % id_ if id_ else ""
    t = " type='%s'" % type_ if type_ else ""
    if body:
        return "<presence from='%s'%s to='%s'%s>%s</presence>" % (frm, i, to, t, body)
    return "<presence from='%s'%s to='%s'%s/>" % (frm, i, to, t)


def relayed(to, frm, type_=None, body=""):
    """A client's presence relayed by xmppd: 'to' first (added in front
    of the stored text), the client's attributes, then the stamped
    'from'."""
    t = " type='%s'" % type_ if type_ else ""
    if body:
        return "<presence to='%s'%s from='%s'>%s</presence>" % (to, t, frm, body)
    return "<presence to='%s'%s from='%s'/>" % (to, t, frm)


def gone(to, frm):
    """The unavailable presence xmppd builds itself (logout, lost
    connection, dead worker, subscription cancelled)."""
    return "<presence to='%s' from='%s' type='unavailable'/>" % (to, frm)


def sub_stanza(type_, frm, to):
    """A subscription stanza the client sent as <presence to='..'
    type='..'/>, as delivered: stamped with the sender's bare JID."""
    return "<presence to='%s' type='%s' from='%s'/>" % (to, type_, frm)


def closing(*clients):
    for c in clients:
        try:
            c.close()
        except Exception:
            pass


# ---------------------------------------------------------------------------

def test_stream_features():
    """RFC 6121 2.6.1 and 3.4: a server that supports roster versioning
    and pre-approval MUST advertise <ver xmlns='urn:xmpp:features:rosterver'/>
    and <sub xmlns='urn:xmpp:features:pre-approval'/>."""
    with server(users=USERS[:1]) as s:
        c = Client(s.port)
        c.open()
        c.starttls()
        assert c.auth_scram("juliet", "r0m30!").startswith("<success")
        feats = c.open()
        soft("<ver xmlns='urn:xmpp:features:rosterver'/>" in feats,
             "RFC 6121 2.6.1: roster versioning is not advertised: %s" % feats)
        soft("<sub xmlns='urn:xmpp:features:pre-approval'/>" in feats,
             "RFC 6121 3.4: pre-approval is not advertised: %s" % feats)


def test_subscription_handshake():
    """RFC 6121 3.1: juliet subscribes to romeo, romeo approves; then
    romeo subscribes to juliet and she approves (both)."""
    with server() as s:
        j = login(s, "juliet", "balcony")
        r = login(s, "romeo", "orchard",
                  presence="<presence><status>In the orchard</status></presence>")
        j.quiet(0.3)
        r.quiet(0.3)

        # 3.1.1/3.1.2: the user's push with ask='subscribe' (no 'to' yet)
        j.send("<presence to='romeo@localhost' type='subscribe'/>")
        j.expect(push_rx(1, item_rx("romeo@localhost", "none", ask=True)))
        # 3.1.3: the contact gets the request, stamped with the user's
        # bare JID; nothing enters the contact's roster yet.
        r.expect(sub_stanza("subscribe", "juliet@localhost", "romeo@localhost"))
        r.quiet(0.3)

        # 3.1.5: the contact approves: push subscription='from'
        r.send("<presence to='juliet@localhost' type='subscribed'/>")
        r.expect(push_rx(1, item_rx("juliet@localhost", "from")))
        # 3.1.6: the user: push subscription='to', the subscribed, then
        # the contact's current presence (3.1.5 last step).
        subscribed = sub_stanza("subscribed", "romeo@localhost", "juliet@localhost")
        push_to = push_rx(2, item_rx("romeo@localhost", "to"))
        presence = relayed("juliet@localhost", "romeo@localhost/orchard",
                           body="<status>In the orchard</status>")
        j.expect_order(subscribed, presence, soft_order="3.1.5/3.1.6: the contact's "
                       "presence must follow the subscribed")
        j.expect(push_to)
        j.quiet(0.3)
        r.quiet(0.3)

        # Mutual: romeo subscribes to juliet, she approves.
        r.send("<presence to='juliet@localhost' type='subscribe'/>")
        r.expect(push_rx(2, item_rx("juliet@localhost", "from", ask=True)))
        j.expect(sub_stanza("subscribe", "romeo@localhost", "juliet@localhost"))
        j.quiet(0.3)    # juliet's item did not change: no push
        j.send("<presence to='romeo@localhost' type='subscribed'/>")
        j.expect(push_rx(3, item_rx("romeo@localhost", "both")))
        r.expect_order(sub_stanza("subscribed", "juliet@localhost", "romeo@localhost"),
                       relayed("romeo@localhost", "juliet@localhost/balcony"),
                       soft_order="3.1.5/3.1.6: the contact's presence must follow "
                       "the subscribed")
        r.expect(push_rx(3, item_rx("juliet@localhost", "both")))
        j.quiet(0.3)
        r.quiet(0.3)

        # The stored rosters agree.
        got = j.roster_get()
        assert j.roster_result_rx(3, [item_rx("romeo@localhost", "both")]).fullmatch(got), got
        got = r.roster_get()
        assert r.roster_result_rx(3, [item_rx("juliet@localhost", "both")]).fullmatch(got), got

        # With both: presence changes reach the contact (4.4.2).
        j.send("<presence><show>away</show></presence>")
        r.expect(relayed("romeo@localhost", "juliet@localhost/balcony", body="<show>away</show>"))
        j.quiet(0.3)
        closing(j, r)


def test_subscription_transitions():
    """Appendix A: the transitions the server decides on its own."""
    with server() as s:
        j = login(s, "juliet", "balcony")
        r = login(s, "romeo", "orchard")
        n = login(s, "nurse", "x")
        m = login(s, "mercutio", "m")

        # juliet -> romeo: juliet 'to', romeo 'from'
        j.send("<presence to='romeo@localhost' type='subscribe'/>")
        r.expect(sub_stanza("subscribe", "juliet@localhost", "romeo@localhost"))
        r.send("<presence to='juliet@localhost' type='subscribed'/>")
        j.expect(push_rx(2, item_rx("romeo@localhost", "to")))
        r.expect(push_rx(1, item_rx("juliet@localhost", "from")))
        j.drain()
        r.drain()

        # A.3.1 / 3.1.3: subscribe when the contact is already 'from':
        # the contact's server answers for him; romeo is not bothered,
        # and juliet's server ignores a subscribed without a pending
        # request (3.1.6): no push, no stanza.
        j.send("<presence to='romeo@localhost' type='subscribe'/>")
        r.quiet(0.5)
        j.quiet(0.5, re.compile("<iq .*|<presence [^>]*type='subscribed'.*"))
        j.drain()

        # A.2.2 / 3.2: romeo cancels juliet's subscription (unsubscribed
        # from 'from'): romeo's push 'none', juliet's push 'none', juliet
        # gets the unsubscribed and unavailable from romeo's resource.
        r.send("<presence to='juliet@localhost' type='unsubscribed'/>")
        r.expect(push_rx(2, item_rx("juliet@localhost", "none")))
        j.expect(push_rx(3, item_rx("romeo@localhost", "none")))
        j.expect(sub_stanza("unsubscribed", "romeo@localhost", "juliet@localhost"))
        j.expect(gone("juliet@localhost", "romeo@localhost/orchard"))
        r.quiet(0.3)
        j.quiet(0.3)

        # The contact adds the requester to his roster before approving
        # (2.3 then 3.1.5): name and group are kept, no 'ask'.  The request
        # was addressed to a full JID: it is stamped with the bare JID
        # (3.1.2).
        t = login(s, "tybalt", "t")
        t.send("<presence to='romeo@localhost/orchard' type='subscribe'/>")
        t.expect(push_rx(1, item_rx("romeo@localhost", "none", ask=True)))
        r.expect(sub_stanza("subscribe", "tybalt@localhost", "romeo@localhost"))
        got = r.roster_set("<item jid='tybalt@localhost' name='Prince of Cats'>"
                           "<group>Capulets</group></item>")
        assert got == r.empty_result(r.last_id), got
        r.expect(push_rx(3, item_rx("tybalt@localhost", "none", name="Prince of Cats",
                                    groups=["Capulets"])))
        r.send("<presence to='tybalt@localhost' type='subscribed'/>")
        r.expect(push_rx(4, item_rx("tybalt@localhost", "from", name="Prince of Cats",
                                    groups=["Capulets"])))
        t.expect(sub_stanza("subscribed", "romeo@localhost", "tybalt@localhost"))
        t.expect(push_rx(2, item_rx("romeo@localhost", "to")))
        t.expect(relayed("tybalt@localhost", "romeo@localhost/orchard"))
        t.quiet(0.3)
        r.quiet(0.3)

        # Denying a request (unsubscribed with a pending inbound request):
        # nurse's push loses ask; romeo's roster is untouched.
        n.send("<presence to='romeo@localhost' type='subscribe'/>")
        n.expect(push_rx(1, item_rx("romeo@localhost", "none", ask=True)))
        r.expect(sub_stanza("subscribe", "nurse@localhost", "romeo@localhost"))
        r.send("<presence to='nurse@localhost' type='unsubscribed'/>")
        n.expect(sub_stanza("unsubscribed", "romeo@localhost", "nurse@localhost"))
        n.expect(push_rx(2, item_rx("romeo@localhost", "none")))
        r.quiet(0.3)
        n.quiet(0.3)

        # Both, then juliet unsubscribes (A.2.1 'unsubscribe' from both):
        # juliet 'from', romeo 'to'; romeo gets the unsubscribe, juliet
        # unavailable from romeo (3.3.3).
        subscribe_both(j, r)
        j.send("<presence to='romeo@localhost' type='unsubscribe'/>")
        j.expect(push_rx(None, item_rx("romeo@localhost", "from")))
        r.expect(sub_stanza("unsubscribe", "juliet@localhost", "romeo@localhost"))
        r.expect(push_rx(None, item_rx("juliet@localhost", "to")))
        j.expect(gone("juliet@localhost", "romeo@localhost/orchard"))
        j.quiet(0.3)
        r.quiet(0.3)

        # Pre-approval (3.4): romeo approves mercutio before any request:
        # nothing is routed to mercutio; romeo's push has approved='true'.
        r.send("<presence to='mercutio@localhost' type='subscribed'/>")
        got = r.expect(push_rx(None, r"<item [^>]*jid='mercutio@localhost'[^>]*/>"))
        soft(push_rx(None, item_rx("mercutio@localhost", "none", approved=True)).fullmatch(got),
             "RFC 6121 3.4 (pre-approval): the contact's push must carry "
             "approved='true'; got %s" % got)
        m.quiet(0.5)
        # ...and mercutio's later request is approved without romeo.
        m.send("<presence to='romeo@localhost' type='subscribe'/>")
        m.expect(push_rx(1, item_rx("romeo@localhost", "none", ask=True)))
        m.expect(pres("romeo@localhost", "mercutio@localhost", "subscribed"))
        m.expect(push_rx(2, item_rx("romeo@localhost", "to")))
        m.expect(relayed("mercutio@localhost", "romeo@localhost/orchard"))
        r.expect(push_rx(None, item_rx("mercutio@localhost", "from")))
        r.quiet(0.3, re.compile("<presence .*"))
        m.quiet(0.3)

        # Cancelling a pre-approval (3.4: unsubscribed to a pre-approved
        # contact): the approval is gone, the next request reaches juliet.
        b = login(s, "benvolio", "b")
        j.send("<presence to='benvolio@localhost' type='subscribed'/>")
        got = j.expect(push_rx(None, r"<item [^>]*jid='benvolio@localhost'[^>]*/>"))
        j.send("<presence to='benvolio@localhost' type='unsubscribed'/>")
        b.quiet(0.5)
        soft_expect(j, push_rx(None, item_rx("benvolio@localhost", "none")),
                    "RFC 6121 3.4 (pre-approval): cancelling it must push the item "
                    "without approved='true'")
        b.send("<presence to='juliet@localhost' type='subscribe'/>")
        b.expect(push_rx(None, item_rx("juliet@localhost", "none", ask=True)))
        j.expect(sub_stanza("subscribe", "benvolio@localhost", "juliet@localhost"))
        b.quiet(0.3, re.compile("<presence [^>]*type='subscribed'.*"))
        del got

        # Roster remove with 'both' (2.5.2): juliet and nurse both; juliet
        # removes nurse: juliet's push 'remove'; nurse gets unsubscribe
        # and unsubscribed, unavailable from juliet, and ends at 'none'.
        subscribe_both(j, n)
        got = j.roster_set("<item jid='nurse@localhost' subscription='remove'/>")
        assert got == j.empty_result(j.last_id), got
        j.expect(push_rx(None, item_rx("nurse@localhost", "remove")))
        n.expect(pres("juliet@localhost", "nurse@localhost", "unsubscribe"))
        n.expect(pres("juliet@localhost", "nurse@localhost", "unsubscribed"))
        n.expect(gone("nurse@localhost", "juliet@localhost/balcony"))
        n.expect_order(push_rx(None, item_rx("juliet@localhost", "to")),
                       push_rx(None, item_rx("juliet@localhost", "none")))
        got = n.roster_get()
        assert n.roster_result_rx(None, [item_rx("juliet@localhost", "none"),
                                         item_rx("romeo@localhost", "none")]).fullmatch(got), got
        got = j.roster_get()
        assert "nurse@localhost" not in got, got
        closing(j, r, n, m)


def test_resubscribe_after_removal():
    """RFC 6121 3.1.5 after 2.5.2: juliet removed romeo; romeo's new
    request reaches her and her approval is routed to him (not stored as
    a pre-approval, 3.4): both rosters show the subscription."""
    with server() as s:
        j = login(s, "juliet", "balcony")
        r = login(s, "romeo", "orchard")
        subscribe_both(j, r)
        j.drain()
        r.drain()
        got = j.roster_set("<item jid='romeo@localhost' subscription='remove'/>")
        assert got == j.empty_result(j.last_id), got
        j.expect(push_rx(None, item_rx("romeo@localhost", "remove")))
        r.expect(pres("juliet@localhost", "romeo@localhost", "unsubscribed"))
        r.expect(push_rx(None, item_rx("juliet@localhost", "none")))
        j.drain()
        r.drain()
        r.send("<presence to='juliet@localhost' type='subscribe'/>")
        r.expect(push_rx(None, item_rx("juliet@localhost", "none", ask=True)))
        j.expect(sub_stanza("subscribe", "romeo@localhost", "juliet@localhost"))
        j.send("<presence to='romeo@localhost' type='subscribed'/>")
        j.expect(push_rx(None, item_rx("romeo@localhost", "from")))
        r.expect(sub_stanza("subscribed", "juliet@localhost", "romeo@localhost"))
        r.expect(push_rx(None, item_rx("juliet@localhost", "to")))
        r.expect(relayed("romeo@localhost", "juliet@localhost/balcony"))
        got = j.roster_get()
        assert j.roster_result_rx(None, [item_rx("romeo@localhost", "from")]).fullmatch(got), got
        got = r.roster_get()
        assert r.roster_result_rx(None, [item_rx("juliet@localhost", "to")]).fullmatch(got), got
        closing(j, r)


# RFC 6121 Appendix A, one state of one side as (subscription, pending
# out, pending in); the other side's state mirrors it.
A_STATES = {
    "None": ("none", False, False), "None + Pending Out": ("none", True, False),
    "None + Pending In": ("none", False, True),
    "None + Pending Out/In": ("none", True, True), "To": ("to", False, False),
    "To + Pending In": ("to", False, True), "From": ("from", False, False),
    "From + Pending Out": ("from", True, False), "Both": ("both", False, False),
}
# A.2.1 (the user's server, outbound) and A.3.1 (the contact's server,
# inbound): the new state for each state and stanza; "" is "no state
# change".
A_OUT = {
    "subscribe": {"None": "None + Pending Out", "None + Pending Out": "",
                  "None + Pending In": "None + Pending Out/In",
                  "None + Pending Out/In": "", "To": "", "To + Pending In": "",
                  "From": "From + Pending Out", "From + Pending Out": "", "Both": ""},
    "unsubscribe": {"None": "", "None + Pending Out": "None", "None + Pending In": "",
                    "None + Pending Out/In": "None + Pending In", "To": "None",
                    "To + Pending In": "None + Pending In", "From": "",
                    "From + Pending Out": "From", "Both": "From"},
    "subscribed": {"None": "", "None + Pending Out": "", "None + Pending In": "From",
                   "None + Pending Out/In": "From + Pending Out", "To": "",
                   "To + Pending In": "Both", "From": "", "From + Pending Out": "",
                   "Both": ""},
    "unsubscribed": {"None": "", "None + Pending Out": "", "None + Pending In": "None",
                     "None + Pending Out/In": "None + Pending Out", "To": "",
                     "To + Pending In": "To", "From": "None",
                     "From + Pending Out": "None + Pending Out", "Both": "To"},
}
A_IN = {
    "subscribe": {"None": "None + Pending In", "None + Pending Out": "None + Pending Out/In",
                  "None + Pending In": "", "None + Pending Out/In": "",
                  "To": "To + Pending In", "To + Pending In": "", "From": "",
                  "From + Pending Out": "", "Both": ""},
    "unsubscribe": {"None": "", "None + Pending Out": "", "None + Pending In": "None",
                    "None + Pending Out/In": "None + Pending Out", "To": "",
                    "To + Pending In": "To", "From": "None",
                    "From + Pending Out": "None + Pending Out", "Both": "To"},
    "subscribed": {"None": "", "None + Pending Out": "To", "None + Pending In": "",
                   "None + Pending Out/In": "To + Pending In", "To": "",
                   "To + Pending In": "", "From": "", "From + Pending Out": "Both",
                   "Both": ""},
    "unsubscribed": {"None": "", "None + Pending Out": "None", "None + Pending In": "",
                     "None + Pending Out/In": "None + Pending In", "To": "None",
                     "To + Pending In": "None + Pending In", "From": "",
                     "From + Pending Out": "From", "Both": "From"},
}
A_MIRROR = {"None": "None", "None + Pending Out": "None + Pending In",
            "None + Pending In": "None + Pending Out",
            "None + Pending Out/In": "None + Pending Out/In", "To": "From",
            "To + Pending In": "From + Pending Out", "From": "To",
            "From + Pending Out": "To + Pending In", "Both": "Both"}
# How to reach each state of the user u (c the contact) from None/None:
# (sender, type) steps, each one a transition of the same tables.
A_PATHS = {
    "None": [], "None + Pending Out": [("u", "subscribe")],
    "None + Pending In": [("c", "subscribe")],
    "None + Pending Out/In": [("u", "subscribe"), ("c", "subscribe")],
    "To": [("u", "subscribe"), ("c", "subscribed")],
    "To + Pending In": [("u", "subscribe"), ("c", "subscribed"), ("c", "subscribe")],
    "From": [("c", "subscribe"), ("u", "subscribed")],
    "From + Pending Out": [("c", "subscribe"), ("u", "subscribed"), ("u", "subscribe")],
    "Both": [("u", "subscribe"), ("c", "subscribed"), ("c", "subscribe"),
             ("u", "subscribed")],
}


def _item_state(im, other, got):
    """(subscription, ask, approved) of other's item in a roster result;
    no item is ('none', False, False)."""
    m = re.search(r"<item\b(?=[^>]* jid='%s')([^>]*)" % re.escape(other), got)
    if not m:
        return ("none", False, False)
    a = m.group(1)
    sub = re.search(r"subscription='([^']*)'", a)
    return (sub.group(1) if sub else "none", "ask='subscribe'" in a,
            "approved='true'" in a)


def _settle(u, c):
    """Barrier: one worker, one database pipeline in order; a roster get
    from each side, twice, comes after the whole chain a subscription
    stanza starts (the sender's step, the receiver's, an automatic
    reply).  Returns both visible states."""
    for _ in range(2):
        gu = u.roster_get()
        gc = c.roster_get()
    u.q = []
    c.q = []
    return _item_state(u, c.bare, gu), _item_state(c, u.bare, gc)


def _visible(state, approved=False):
    sub, out, _ = A_STATES[state]
    return (sub, out, approved)


def _check_table(u, c, reset, how):
    """Every row of A.2.1 and A.3.1: for each state of u, reached from
    None/None after reset(), each stanza u sends moves u by A.2.1 and c
    (in the mirrored state) by A.3.1; c's sending is exercised by the
    paths that reach the states."""
    bad = []
    for state in A_STATES:
        for typ in A_OUT:
            reset()
            got = _settle(u, c)
            if got != (_visible("None"), _visible("None")):
                bad.append("%s: reset left %r" % (how, got))
                continue
            ust, cst = "None", "None"
            for who, t in A_PATHS[state]:
                x = u if who == "u" else c
                y = c if who == "u" else u
                x.send("<presence to='%s' type='%s'/>" % (y.bare, t))
                _settle(u, c)
                xs, ys = (ust, cst) if who == "u" else (cst, ust)
                xs, ys = A_OUT[t][xs] or xs, A_IN[t][ys] or ys
                ust, cst = (xs, ys) if who == "u" else (ys, xs)
            assert ust == state and cst == A_MIRROR[state], (state, ust, cst)
            got = _settle(u, c)
            if got != (_visible(ust), _visible(cst)):
                bad.append("%s: reaching %s: got %r" % (how, state, got))
                continue
            u.send("<presence to='%s' type='%s'/>" % (c.bare, typ))
            want_u = A_OUT[typ][ust] or ust
            want_c = A_IN[typ][cst] or cst
            # 3.4: subscribed with no request pending is a pre-approval.
            pre = typ == "subscribed" and not A_STATES[ust][2] and \
                A_STATES[ust][0] in ("none", "to")
            got = _settle(u, c)
            want = (_visible(want_u, pre), _visible(want_c))
            if got != want:
                bad.append("%s: %s, user sends %s: want %r, got %r"
                           % (how, state, typ, want, got))
    assert not bad, "%d of %d rows wrong:\n  %s" % (
        len(bad), len(A_STATES) * len(A_OUT), "\n  ".join(bad))


def test_appendix_a_after_removal():
    """RFC 6121 Appendix A, every row of A.2.1 and A.3.1, from states
    reached after both sides removed each other (2.5.2) or after
    unsubscribe/unsubscribed cycles (3.2, 3.3), not from fresh accounts."""
    with server() as s:
        u = login(s, "juliet", "balcony")
        c = login(s, "romeo", "orchard")
        subscribe_both(u, c)

        def remove_both():
            for x, y in ((u, c), (c, u)):
                x.roster_set("<item jid='%s' subscription='remove'/>" % y.bare)

        def cycle():
            for x, y in ((u, c), (c, u)):
                for t in ("unsubscribe", "unsubscribed"):
                    x.send("<presence to='%s' type='%s'/>" % (y.bare, t))

        _check_table(u, c, remove_both, "after removal")
        _check_table(u, c, cycle, "after unsubscribe/unsubscribed")
        closing(u, c)


def test_pending_request_offline():
    """RFC 6121 3.1.3: a request to an offline contact is stored and
    delivered at each of its initial presences until answered; one
    cancelled by unsubscribe before that is not delivered."""
    with server() as s:
        j = login(s, "juliet", "balcony")
        n = login(s, "nurse", "x")
        j.send("<presence to='benvolio@localhost' type='subscribe' id='sub1'>"
               "<status>Juliet here</status></presence>")
        j.expect(push_rx(1, item_rx("benvolio@localhost", "none", ask=True)))
        n.send("<presence to='benvolio@localhost' type='subscribe'/>")
        n.expect(push_rx(1, item_rx("benvolio@localhost", "none", ask=True)))
        n.send("<presence to='benvolio@localhost' type='unsubscribe'/>")
        n.expect(push_rx(2, item_rx("benvolio@localhost", "none")))
        time.sleep(0.3)

        req = ("<presence to='benvolio@localhost' type='subscribe' id='sub1' "
               "from='juliet@localhost'><status>Juliet here</status></presence>")
        for round_ in range(2):
            b = login(s, "benvolio", "r%d" % round_, presence=None)
            got = b.roster_get()
            # Not in his roster: a pending request is not a roster item.
            assert b.roster_result_rx(None, []).fullmatch(got), got
            b.quiet(0.3)    # nothing before initial presence
            b.send("<presence/>")
            b.expect(req)
            b.quiet(0.5, re.compile(".*nurse@localhost.*"))
            b.close()
            time.sleep(0.2)

        b = login(s, "benvolio", "r2", presence=None)
        b.send("<presence/>")
        b.expect(req)
        b.send("<presence to='juliet@localhost' type='subscribed'/>")
        b.expect(push_rx(None, item_rx("juliet@localhost", "from")))
        j.expect(sub_stanza("subscribed", "benvolio@localhost", "juliet@localhost"))
        j.expect(push_rx(2, item_rx("benvolio@localhost", "to")))
        b.close()
        time.sleep(0.2)
        # Answered: not delivered again.
        b = login(s, "benvolio", "r3")
        b.quiet(0.5, re.compile("<presence [^>]*type='subscribe'.*"))
        closing(j, n, b)


def test_pushes_across_workers():
    """RFC 6121 2.1.6: pushes go to every interested resource (one that
    asked for the roster), on either worker, and only to those."""
    with server(workers=2) as s:
        a = login(s, "juliet", "a", worker=0)
        b = login(s, "juliet", "b", worker=1)
        # Resources that never asked for the roster, one per worker.
        c0 = login(s, "juliet", "c0", roster=False, worker=0)
        c1 = login(s, "juliet", "c1", roster=False, worker=1)
        assert placed(s, 4) == [2, 2], placed(s, 4)
        for x in (a, b, c0, c1):
            x.drain(0.3)

        got = a.roster_set("<item jid='nurse@localhost' name='Nurse'><group>Servants</group></item>")
        assert got == a.empty_result(a.last_id), got
        item = item_rx("nurse@localhost", "none", name="Nurse", groups=["Servants"])
        a.expect(push_rx(1, item))
        b.expect(push_rx(1, item))
        got = b.roster_set("<item jid='romeo@localhost'/>")
        assert got == b.empty_result(b.last_id), got
        a.expect(push_rx(2, item_rx("romeo@localhost", "none")))
        b.expect(push_rx(2, item_rx("romeo@localhost", "none")))
        got = b.roster_set("<item jid='nurse@localhost' subscription='remove'/>")
        a.expect(push_rx(3, item_rx("nurse@localhost", "remove")))
        b.expect(push_rx(3, item_rx("nurse@localhost", "remove")))
        # A subscription change pushes too, on both workers.
        r = login(s, "romeo", "orchard")
        a.send("<presence to='romeo@localhost' type='subscribe'/>")
        r.expect(sub_stanza("subscribe", "juliet@localhost", "romeo@localhost"))
        a.expect(push_rx(4, item_rx("romeo@localhost", "none", ask=True)))
        b.expect(push_rx(4, item_rx("romeo@localhost", "none", ask=True)))
        for x in (c0, c1):
            x.quiet(0.5, re.compile("<iq .*"))
        a.quiet(0.2, re.compile("<iq .*"))
        b.quiet(0.2, re.compile("<iq .*"))
        # c0 becomes interested: from now on it gets them.
        c0.roster_get()
        r.send("<presence to='juliet@localhost' type='subscribed'/>")
        for x in (a, b, c0):
            x.expect(push_rx(5, item_rx("romeo@localhost", "to")))
        c1.quiet(0.5, re.compile("<iq .*"))
        closing(a, b, c0, c1, r)


def test_roster_versioning():
    """RFC 6121 2.6: ver='' gets the full roster with its version; the
    current version gets an empty result; an older one an empty result
    then the changes as pushes (a removed item as subscription='remove'),
    to the requesting resource only, oldest change first."""
    with server() as s:
        a = login(s, "juliet", "a", roster=False, presence=None)
        id_ = "v0"
        a.send("<iq type='get' id='%s'><query xmlns='jabber:iq:roster' ver=''/></iq>" % id_)
        got = a.expect(re.compile("<iq [^>]*id='v0'.*"))
        assert a.roster_result_rx(None, []).fullmatch(got), got
        for contact in ("romeo@localhost", "nurse@localhost", "tybalt@localhost"):
            assert a.roster_set("<item jid='%s'/>" % contact) == a.empty_result(a.last_id)
        for v in (1, 2, 3):
            a.expect(push_rx(v, r".*"))
        a.send("<iq type='get' id='v1'><query xmlns='jabber:iq:roster' ver=''/></iq>")
        got = a.expect(re.compile("<iq [^>]*id='v1'.*"))
        full = a.roster_result_rx(3, [item_rx("nurse@localhost", "none"),
                                      item_rx("romeo@localhost", "none"),
                                      item_rx("tybalt@localhost", "none")])
        assert full.fullmatch(got), got
        # Current version: empty result.
        a.send("<iq type='get' id='v2'><query xmlns='jabber:iq:roster' ver='3'/></iq>")
        got = a.expect(re.compile("<iq [^>]*id='v2'.*"))
        assert got == a.empty_result("v2"), got
        a.quiet(0.3)
        # Unknown or future versions: the full roster.
        for i, v in enumerate(("999", "abc")):
            a.send("<iq type='get' id='vx%d'><query xmlns='jabber:iq:roster' ver='%s'/></iq>" % (i, v))
            got = a.expect(re.compile("<iq [^>]*id='vx%d'.*" % i))
            assert full.fullmatch(got), (v, got)
        # Changes: remove tybalt (ver 4), rename romeo (ver 5).
        a.roster_set("<item jid='tybalt@localhost' subscription='remove'/>")
        a.roster_set("<item jid='romeo@localhost' name='Romeo'/>")
        a.expect(push_rx(4, item_rx("tybalt@localhost", "remove")))
        a.expect(push_rx(5, item_rx("romeo@localhost", "none", name="Romeo")))
        a.quiet(0.2)

        # A second resource with version 3: empty result, then pushes of
        # the two changes in the order they were made; nurse unchanged.
        b = login(s, "juliet", "b", roster=False, presence=None)
        b.send("<iq type='get' id='w1'><query xmlns='jabber:iq:roster' ver='3'/></iq>")
        b.expect(b.empty_result("w1"))
        first = b.last_seq
        b.expect_order(push_rx(4, item_rx("tybalt@localhost", "remove")),
                       push_rx(5, item_rx("romeo@localhost", "none", name="Romeo")),
                       soft_order="RFC 6121 2.6.3: interim pushes must come in "
                       "version order (a client that stores ver=5 and drops before "
                       "the ver=4 push never learns of that change)")
        assert b.last_seq > first
        b.quiet(0.3)
        # ...and juliet/a, which did not ask, gets no copy of them.
        try:
            a.quiet(0.5)
        except AssertionError as e:
            soft(False, "RFC 6121 2.6.3: the interim pushes answering juliet/b's "
                 "versioned get also went to juliet/a: %s" % str(e).splitlines()[0])
            a.drain(0.1)
        # Full roster now: tybalt is gone (no tombstone in a full result).
        got = b.roster_get(ver="")
        assert b.roster_result_rx(5, [item_rx("nurse@localhost", "none"),
                                      item_rx("romeo@localhost", "none", name="Romeo")]
                                  ).fullmatch(got), got
        # An item re-added after its removal comes back as a new item.
        a.roster_set("<item jid='tybalt@localhost'><group>Capulets</group></item>")
        b.expect(push_rx(6, item_rx("tybalt@localhost", "none", groups=["Capulets"])))
        c = login(s, "juliet", "c", roster=False, presence=None)
        c.send("<iq type='get' id='x1'><query xmlns='jabber:iq:roster' ver='5'/></iq>")
        c.expect(c.empty_result("x1"))
        c.expect(push_rx(6, item_rx("tybalt@localhost", "none", groups=["Capulets"])))
        c.quiet(0.3)

        # A tombstone must survive an inbound subscription request from
        # the removed contact: a client at version 6 still has to learn
        # that nurse was removed at version 7.
        a.roster_set("<item jid='nurse@localhost' subscription='remove'/>")
        a.expect(push_rx(7, item_rx("nurse@localhost", "remove")))
        n = login(s, "nurse", "x")
        n.send("<presence to='juliet@localhost' type='subscribe'/>")
        n.expect(push_rx(None, item_rx("juliet@localhost", "none", ask=True)))
        time.sleep(0.3)
        d = login(s, "juliet", "d", roster=False, presence=None)
        d.send("<iq type='get' id='y1'><query xmlns='jabber:iq:roster' ver='6'/></iq>")
        got = d.expect(re.compile("<iq [^>]*id='y1'.*"))
        if got == d.empty_result("y1"):
            soft_expect(d, push_rx(7, item_rx("nurse@localhost", "remove")),
                        "RFC 6121 2.6.3: after juliet removed nurse (ver 7) and nurse "
                        "then sent juliet a subscribe, a client at ver 6 gets no push "
                        "of the removal (the tombstone was reset by xmppd_sub)")
        else:   # a full roster is fine too, if nurse is not in it
            soft("nurse@localhost" not in got,
                 "RFC 6121 2.6.3: a client at ver 6 is told nurse is still there: %s" % got)
        closing(a, b, c, d, n)


def test_roster_set_errors():
    """RFC 6121 2.3.3 and 2.5.3: the errors of roster sets."""
    with server(overrides={"im.roster_max_items": "2"}) as s:
        a = login(s, "juliet", "a")
        me = a.jid

        def err(etype, cond, to="juliet@localhost"):
            return error_rx("iq", to, a.last_id, me, etype, cond)

        got = a.roster_set("<item jid='nurse@localhost'/><item jid='romeo@localhost'/>")
        assert err("modify", "bad-request").fullmatch(got), got
        got = a.roster_set("<item jid='nurse@localhost'><group>A</group><group>A</group></item>")
        assert err("modify", "bad-request").fullmatch(got), got
        got = a.roster_set("<item jid='nurse@localhost'><group></group></item>")
        assert err("modify", "not-acceptable").fullmatch(got), got
        got = a.roster_set("<item jid='nurse@localhost'><group/></item>")
        assert err("modify", "not-acceptable").fullmatch(got), got
        got = a.roster_set("<item name='no jid'/>")
        assert err("modify", "bad-request").fullmatch(got), got
        got = a.roster_set("<item jid='a@b@c'/>")
        assert err("modify", "jid-malformed").fullmatch(got), got
        got = a.roster_set("<item jid='nobody@localhost' subscription='remove'/>")
        assert (err("cancel", "item-not-found").fullmatch(got) or
                err("modify", "item-not-found").fullmatch(got)), got
        got = a.roster_set("<item jid='nurse@localhost'/>", to="romeo@localhost")
        assert err("auth", "forbidden", to="romeo@localhost").fullmatch(got), got
        a.quiet(0.3)    # no push for any of them

        # 2.1.2.5: the client's subscription value (other than remove) is
        # ignored; 'ask' too.
        got = a.roster_set("<item jid='nurse@localhost' subscription='both' ask='subscribe'/>")
        assert got == a.empty_result(a.last_id), got
        a.expect(push_rx(1, item_rx("nurse@localhost", "none")))
        got = a.roster_set("<item jid='romeo@localhost'/>")
        assert got == a.empty_result(a.last_id), got
        a.expect(push_rx(2, item_rx("romeo@localhost", "none")))
        # A third item is one too many (im.roster_max_items = 2).
        got = a.roster_set("<item jid='tybalt@localhost'/>")
        assert err("cancel", "not-acceptable").fullmatch(got), got
        a.quiet(0.3)
        # Updating an existing item at the limit is fine.
        got = a.roster_set("<item jid='romeo@localhost' name='R'/>")
        assert got == a.empty_result(a.last_id), got
        a.expect(push_rx(3, item_rx("romeo@localhost", "none", name="R")))
        got = a.roster_get()
        assert a.roster_result_rx(3, [item_rx("nurse@localhost", "none"),
                                      item_rx("romeo@localhost", "none", name="R")]
                                  ).fullmatch(got), got
        # Markup in names and groups comes back escaped, unchanged.
        got = a.roster_set("<item jid='romeo@localhost' name='R &amp; &apos;J&apos; &lt;3'>"
                           "<group>Montagues &amp; friends</group><group>&lt;b&gt;</group></item>")
        assert got == a.empty_result(a.last_id), got
        got = a.expect(push_rx(4, ".*"))
        m = re.search("name='([^']*)'", got)
        assert m and m.group(1).replace("&#39;", "&apos;").replace(">", "&gt;") in (
            "R &amp; &apos;J&apos; &lt;3",), got
        assert "<group>Montagues &amp; friends</group><group>&lt;b&gt;</group>" in got or \
            "<group>Montagues &amp; friends</group><group>&lt;b></group>" in got, got
        got = a.roster_get()
        assert "<group>Montagues &amp; friends</group>" in got and "&lt;3" in got, got
        closing(a)


def test_roster_max_groups():
    """im.roster_max_groups: an item with one group more than the setting
    gets <not-acceptable/> type modify (RFC 6121 2.3.3, a configured
    limit), is not stored or pushed, and the refusal is logged; at the
    limit it is stored."""
    with server(overrides={"im.roster_max_groups": "2"}) as s:
        a = login(s, "juliet", "a")
        got = a.roster_set("<item jid='nurse@localhost'><group>A</group>"
                           "<group>B</group><group>C</group></item>")
        assert error_rx("iq", "juliet@localhost", a.last_id, a.jid, "modify",
                        "not-acceptable").fullmatch(got), got
        got = a.roster_get()
        assert a.roster_result_rx(None, []).fullmatch(got), got
        assert ("roster item refused: more than 2 groups (im.roster_max_groups)"
                in s.log_text())
        got = a.roster_set("<item jid='nurse@localhost'><group>A</group>"
                           "<group>B</group></item>")
        assert got == a.empty_result(a.last_id), got
        a.expect(push_rx(1, item_rx("nurse@localhost", "none", groups=("A", "B"))))
        closing(a)


def test_probes():
    """RFC 6121 4.2/4.3: at initial presence the server probes the
    contacts (to/both) and answers with the last presence of each
    available resource; the account's other resources and the new
    resource itself get the initial presence (4.2.2)."""
    with server(workers=2) as s:
        j = login(s, "juliet", "balcony")
        r = login(s, "romeo", "orchard",
                  presence="<presence><show>chat</show><status>Shall I hear more?</status></presence>")
        subscribe_both(j, r)
        # A second, available resource of romeo; a third never available.
        r2 = login(s, "romeo", "garden", presence="<presence><show>away</show></presence>")
        r3 = login(s, "romeo", "hidden", presence=None)
        j.expect(relayed("juliet@localhost", "romeo@localhost/garden", body="<show>away</show>"))
        r.expect(relayed("romeo@localhost", "romeo@localhost/garden", body="<show>away</show>"))
        j.close()
        r.expect(gone("romeo@localhost", "juliet@localhost/balcony"))
        r2.expect(gone("romeo@localhost", "juliet@localhost/balcony"))
        r3.quiet(0.3)

        # juliet comes back: probes answered without romeo doing anything
        j = login(s, "juliet", "window", presence=None)
        j.send("<presence><status>Ay me!</status></presence>")
        j.expect(relayed("juliet@localhost/window", "romeo@localhost/orchard",
                         body="<show>chat</show><status>Shall I hear more?</status>"))
        j.expect(relayed("juliet@localhost/window", "romeo@localhost/garden",
                         body="<show>away</show>"))
        # 4.2.2: the new resource gets its own presence back too.
        soft(j.echo_seen(2.0),
             "RFC 6121 4.2.2: initial presence must also go to the resource "
             "that sent it ('including the resource that generated the "
             "presence notification')")
        j.quiet(0.5, re.compile(".*romeo@localhost/hidden.*"))
        for x in (r, r2):
            x.expect(relayed("romeo@localhost", "juliet@localhost/window",
                             body="<status>Ay me!</status>"))
        r3.quiet(0.3)
        # Another resource of juliet coming online: the first one sees it.
        j2 = login(s, "juliet", "bed")
        j.expect(relayed("juliet@localhost", "juliet@localhost/bed"))
        soft(j2.echo_seen(2.0),
             "RFC 6121 4.2.2: juliet/bed did not get its own initial presence")
        closing(j, j2, r, r2, r3)


def test_directed_presence():
    """RFC 6121 4.6: directed presence, and unavailable to its
    recipients when the sender logs out or goes unavailable."""
    with server(workers=2) as s:
        n = login(s, "nurse", "x")
        n2 = login(s, "nurse", "y")
        t = login(s, "tybalt", "t")
        j = login(s, "juliet", "balcony")
        for x in (n, n2, t):
            x.drain(0.3)
        j.send("<presence to='nurse@localhost/x'><status>psst</status></presence>")
        n.expect(relayed("nurse@localhost/x", "juliet@localhost/balcony",
                         body="<status>psst</status>"))
        n2.quiet(0.3)
        j.send("<presence to='tybalt@localhost'/>")
        t.expect(relayed("tybalt@localhost", "juliet@localhost/balcony"))
        j.close()
        n.expect(gone("nurse@localhost/x", "juliet@localhost/balcony"),
                 timeout=3)
        t.expect(gone("tybalt@localhost", "juliet@localhost/balcony"),
                 timeout=3)
        n2.quiet(0.3)

        # Unavailable broadcast without logout reaches them too; and a
        # dropped connection (no </stream:stream>) as well.
        j = login(s, "juliet", "b2")
        j.send("<presence to='nurse@localhost/y'/>")
        n2.expect(relayed("nurse@localhost/y", "juliet@localhost/b2"))
        j.send("<presence type='unavailable'><status>gone</status></presence>")
        n2.expect("<presence to='nurse@localhost/y' type='unavailable' "
                  "from='juliet@localhost/b2'><status>gone</status></presence>")
        j.close()
        n2.quiet(0.3)
        j = login(s, "juliet", "b3")
        j.send("<presence to='tybalt@localhost/t'/>")
        t.expect(relayed("tybalt@localhost/t", "juliet@localhost/b3"))
        j.abort()
        t.expect(gone("tybalt@localhost/t", "juliet@localhost/b3"), timeout=3)
        closing(n, n2, t)


def test_max_directed_presence():
    """im.max_directed_presence = 1: a session remembers one target of
    directed presence; the second still gets the presence but not the
    unavailable at logout (logged at info).  With one worker, nurse's
    marker message to tybalt comes after any unavailable juliet's
    logout sent him."""
    with server(overrides={"im.max_directed_presence": "1"}) as s:
        n = login(s, "nurse", "x")
        t = login(s, "tybalt", "t")
        j = login(s, "juliet", "balcony")
        for x in (n, t):
            x.drain(0.3)
        j.send("<presence to='nurse@localhost/x'/>")
        n.expect(relayed("nurse@localhost/x", "juliet@localhost/balcony"))
        j.send("<presence to='tybalt@localhost/t'/>")
        t.expect(relayed("tybalt@localhost/t", "juliet@localhost/balcony"))
        j.close()
        n.expect(gone("nurse@localhost/x", "juliet@localhost/balcony"), timeout=3)
        n.send("<message to='tybalt@localhost/t' id='mark' type='chat'>"
               "<body>after</body></message>")
        got = t.next()
        assert re.fullmatch("<message [^>]*id='mark'.*</message>", got), got
        assert ("juliet@localhost/balcony: directed presence to "
                "tybalt@localhost/t not remembered (im.max_directed_presence "
                "= 1)" in s.log_text())
        closing(n, t)


def test_logout_ends_with_stream_close():
    """A session that logs out gets nothing after our </stream:stream>
    (not its own unavailable); its other resource does get it."""
    with server(workers=1) as s:
        a = login(s, "juliet", "a")
        b = login(s, "juliet", "b")
        a.drain(0.3)
        b.drain(0.3)
        a.send("</stream:stream>")
        rest = a.c.read_all_until_close(timeout=5)
        a.closed = True
        a.c.close()
        assert rest.rstrip().endswith("</stream:stream>"), rest
        b.expect(gone("juliet@localhost", "juliet@localhost/a"), timeout=3)
        closing(b)


def test_negative_priority():
    """RFC 6121 8.5.2.1.1: a resource with negative priority gets no
    message to the bare JID; with no other resource the message is
    stored, and delivered only at an initial presence with non-negative
    priority (XEP-0160)."""
    with server() as s:
        r = login(s, "romeo", "orchard")
        neg = login(s, "juliet", "neg", presence="<presence><priority>-1</priority></presence>")
        time.sleep(0.2)
        r.send("<message to='juliet@localhost' type='chat' id='n1'><body>hello?</body></message>")
        neg.quiet(0.5)
        r.quiet(0.3)    # stored, no error
        # To the full JID it is delivered (priority is for bare JIDs).
        r.send("<message to='juliet@localhost/neg' type='chat' id='n2'><body>you there</body></message>")
        neg.expect("<message to='juliet@localhost/neg' type='chat' id='n2' "
                   "from='romeo@localhost/orchard'><body>you there</body></message>")
        # A second negative resource's initial presence does not fetch it.
        neg2 = login(s, "juliet", "neg2", presence="<presence><priority>-5</priority></presence>")
        neg2.quiet(0.5, re.compile("<message .*"))
        pos = login(s, "juliet", "pos", presence="<presence><priority>0</priority></presence>")
        got = pos.expect(re.compile("<message to='juliet@localhost' type='chat' id='n1' "
                                    "from='romeo@localhost/orchard'><body>hello\\?</body>"
                                    "<delay xmlns='urn:xmpp:delay' from='localhost' "
                                    "stamp='[^']+'>Offline Storage</delay></message>"))
        neg.quiet(0.3, re.compile("<message .*"))
        neg2.quiet(0.1, re.compile("<message .*"))
        # Now to the bare JID: pos only.
        r.send("<message to='juliet@localhost' type='chat' id='n3'><body>now</body></message>")
        pos.expect(re.compile("<message [^>]*id='n3'.*"))
        neg.quiet(0.3, re.compile("<message .*"))
        del got
        closing(r, neg, neg2, pos)


def msg(to, id_, frm, body, type_="chat"):
    t = " type='%s'" % type_ if type_ else ""
    return "<message to='%s'%s id='%s' from='%s'><body>%s</body></message>" % (
        to, t, id_, frm, body)


def test_message_rules():
    """RFC 6121 8.5.2 and 8.5.3 for messages."""
    with server(workers=2) as s:
        r = login(s, "romeo", "orchard")
        hi = login(s, "juliet", "hi", presence="<presence><priority>5</priority></presence>")
        lo = login(s, "juliet", "lo", presence="<presence><priority>1</priority></presence>")
        neg = login(s, "juliet", "neg", presence="<presence><priority>-1</priority></presence>")
        time.sleep(0.3)
        R = "romeo@localhost/orchard"
        # Highest priority only (8.5.2.1.1).
        r.send("<message to='juliet@localhost' type='chat' id='m1'><body>1</body></message>")
        hi.expect(msg("juliet@localhost", "m1", R, "1"))
        for x in (lo, neg):
            x.quiet(0.3, re.compile("<message .*"))
        r.send("<message to='juliet@localhost' id='m1b'><body>1b</body></message>")
        hi.expect(msg("juliet@localhost", "m1b", R, "1b", None))
        lo.quiet(0.3, re.compile("<message .*"))
        # Equal priorities: both (the server MAY pick one; xmppd sends to all).
        lo.send("<presence><priority>5</priority></presence>")
        time.sleep(0.3)
        r.send("<message to='juliet@localhost' type='chat' id='m2'><body>2</body></message>")
        hi.expect(msg("juliet@localhost", "m2", R, "2"))
        lo.expect(msg("juliet@localhost", "m2", R, "2"))
        neg.quiet(0.3, re.compile("<message .*"))
        # Headline: every non-negative resource.
        lo.send("<presence><priority>2</priority></presence>")
        time.sleep(0.3)
        r.send("<message to='juliet@localhost' type='headline' id='m3'><body>3</body></message>")
        hi.expect(msg("juliet@localhost", "m3", R, "3", "headline"))
        lo.expect(msg("juliet@localhost", "m3", R, "3", "headline"))
        neg.quiet(0.3, re.compile("<message .*"))
        # Headline to a resource not online: silently ignored (8.5.3.2.1),
        # not spread over the others as if sent to the bare JID.
        r.send("<message to='juliet@localhost/gone' type='headline' id='m3b'><body>3b</body></message>")
        r.send("<message to='juliet@localhost/gone' type='chat' id='m3c'><body>3c</body></message>")
        hi.expect(re.compile("<message [^>]*id='m3c'.*", re.S))
        for x in (hi, lo, neg, r):
            x.quiet(0.3, re.compile(".*id='m3b'.*", re.S))
        # Groupchat to the bare JID: service-unavailable.
        r.send("<message to='juliet@localhost' type='groupchat' id='m4'><body>4</body></message>")
        r.expect(error_rx("message", "juliet@localhost", "m4", R, "cancel", "service-unavailable"))
        for x in (hi, lo, neg):
            x.quiet(0.2, re.compile("<message .*"))
        # Full JID not online, other resources online: bare JID rules.
        r.send("<message to='juliet@localhost/gone' type='chat' id='m5'><body>5</body></message>")
        hi.expect(msg("juliet@localhost/gone", "m5", R, "5"))
        lo.quiet(0.3, re.compile("<message .*"))
        neg.quiet(0.1, re.compile("<message .*"))
        r.quiet(0.2)
        # Groupchat to an offline full JID: an error too (8.5.3.2.1).
        r.send("<message to='juliet@localhost/gone' type='groupchat' id='m6'><body>6</body></message>")
        r.expect(error_rx("message", "juliet@localhost/gone", "m6", R, "cancel",
                          "service-unavailable"))
        # To an online full JID: exactly that resource, whatever its priority.
        r.send("<message to='juliet@localhost/lo' type='chat' id='m7'><body>7</body></message>")
        lo.expect(msg("juliet@localhost/lo", "m7", R, "7"))
        hi.quiet(0.3, re.compile("<message .*"))
        closing(r, hi, lo, neg)


DELAY = re.compile(r"<delay xmlns='urn:xmpp:delay' from='localhost' stamp='([^']+)'>"
                   r"Offline Storage</delay>")


def offline_msg_rx(to, id_, frm, body, type_="chat"):
    t = " type='%s'" % type_ if type_ else ""
    return re.compile(re.escape("<message to='%s'%s id='%s' from='%s'><body>%s</body>"
                                % (to, t, id_, frm, body)) + DELAY.pattern + "</message>")


def check_stamp(st, t0, t1):
    stamp = DELAY.search(st).group(1)
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", stamp)
    assert m, stamp
    t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc).timestamp()
    assert t0 - 2 <= t <= t1 + 2, (stamp, t0, t1)


def test_offline_storage():
    """XEP-0160 / RFC 6121 8.5.2.2.1: messages to an offline account are
    stored, delivered with <delay/> after the next initial presence, in
    order, then deleted; over im.offline_quota and to a nonexistent
    account: service-unavailable."""
    with server(overrides={"im.offline_quota": "3"}) as s:
        r = login(s, "romeo", "orchard")
        R = "romeo@localhost/orchard"
        t0 = time.time()
        r.send("<message to='juliet@localhost' type='chat' id='o1'><body>one</body></message>")
        r.send("<message to='juliet@localhost' id='o2'><body>two</body></message>")
        r.send("<message to='juliet@localhost/balcony' type='chat' id='o3'><body>three</body></message>")
        r.quiet(0.5)
        # Not stored: headline (dropped), groupchat and error.
        r.send("<message to='juliet@localhost' type='headline' id='h1'><body>news</body></message>")
        r.send("<message to='juliet@localhost' type='groupchat' id='g1'><body>gc</body></message>")
        r.expect(error_rx("message", "juliet@localhost", "g1", R, "cancel", "service-unavailable"))
        # The quota is full: the fourth is refused.
        r.send("<message to='juliet@localhost' type='chat' id='o4'><body>four</body></message>")
        r.expect(error_rx("message", "juliet@localhost", "o4", R, "cancel", "service-unavailable"))
        # No such account.
        r.send("<message to='nobody@localhost' type='chat' id='x1'><body>hi</body></message>")
        r.expect(error_rx("message", "nobody@localhost", "x1", R, "cancel", "service-unavailable"))
        r.quiet(0.3)
        t1 = time.time()

        j = login(s, "juliet", "balcony", presence=None)
        j.quiet(0.5)    # nothing before initial presence
        j.send("<presence/>")
        got = j.expect_order(offline_msg_rx("juliet@localhost", "o1", R, "one"),
                             offline_msg_rx("juliet@localhost", "o2", R, "two", None),
                             offline_msg_rx("juliet@localhost/balcony", "o3", R, "three"))
        for st in got:
            check_stamp(st, t0, t1)
        j.quiet(0.5, re.compile("<message .*"))
        j.close()
        time.sleep(0.3)

        # Delivered means deleted: not again; and room for new ones.
        j = login(s, "juliet", "balcony2")
        j.quiet(0.8, re.compile("<message .*"))
        j.close()
        time.sleep(0.3)
        for i in range(3):
            r.send("<message to='juliet@localhost' type='chat' id='p%d'><body>p%d</body></message>"
                   % (i, i))
        r.quiet(0.5)
        j = login(s, "juliet", "balcony3")
        j.expect_order(*[offline_msg_rx("juliet@localhost", "p%d" % i, R, "p%d" % i)
                         for i in range(3)])
        j.close()
        time.sleep(0.3)
        # A resource that is bound but has not sent presence is not
        # available (RFC 6121 4.1): the message to the bare JID is stored,
        # and comes with its initial presence.
        j = login(s, "juliet", "balcony4", presence=None)
        r.send("<message to='juliet@localhost' type='chat' id='u1'><body>unavail</body></message>")
        j.quiet(0.5, re.compile("<message .*"))
        r.quiet(0.1)
        j.send("<presence/>")
        j.expect(offline_msg_rx("juliet@localhost", "u1", R, "unavail"))
        closing(r, j)


def test_worker_crash():
    """A worker killed with SIGKILL: its sessions' contacts get
    unavailable within 2 s (the master sweeps, a live worker broadcasts);
    messages to the dead session's account are then stored and
    delivered at the next login."""
    with server(workers=2) as s:
        a = login(s, "juliet", "a", worker=0)
        b = login(s, "romeo", "b", worker=1)
        assert placed(s, 2) == [1, 1]
        subscribe_both(a, b)
        pid = s.status()["workers"][0]["pid"]
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        b.expect(gone("romeo@localhost", "juliet@localhost/a"), timeout=2.0)
        assert time.monotonic() - t0 <= 2.0
        b.send("<message to='juliet@localhost' type='chat' id='c1'><body>Are you there?</body></message>")
        b.quiet(1.0)    # stored: no error
        wait_for(lambda: s.status_ok() and pid not in s.worker_pids(), timeout=15,
                 what="worker respawned")
        # The respawned worker's database link
        wait_for(lambda: s.log_text().count("database link up") >= 3, timeout=10,
                 what="respawned worker's database link")
        a.abort()
        a = login(s, "juliet", "a2")
        a.expect(offline_msg_rx("juliet@localhost", "c1", "romeo@localhost/b", "Are you there?"))
        # Presence works again both ways.
        b.expect(relayed("romeo@localhost", "juliet@localhost/a2"))
        a.expect(relayed("juliet@localhost/a2", "romeo@localhost/b"))
        closing(a, b)


def test_restart():
    """Offline messages and rosters survive a restart of xmppd on the
    same database."""
    srv = RestartableServer(workers=2, users=USERS)
    with running(srv) as s:
        r = login(s, "romeo", "orchard")
        j = login(s, "juliet", "balcony")
        subscribe_both(j, r)
        j.close()
        r.expect(gone("romeo@localhost", "juliet@localhost/balcony"))
        r.send("<message to='juliet@localhost' type='chat' id='s1'><body>before</body></message>")
        r.send("<message to='juliet@localhost' type='chat' id='s2'><body>the restart</body></message>")
        r.quiet(0.5)
        s.stop_processes()
        r.closed = True
        r.c.close()
        s.start()
        j = login(s, "juliet", "balcony", presence=None)
        got = j.roster_get()
        assert j.roster_result_rx(None, [item_rx("romeo@localhost", "both")]).fullmatch(got), got
        j.send("<presence/>")
        R = "romeo@localhost/orchard"
        j.expect_order(offline_msg_rx("juliet@localhost", "s1", R, "before"),
                       offline_msg_rx("juliet@localhost", "s2", R, "the restart"))
        closing(j)


if __name__ == "__main__":
    tests = [checked(t) for t in [test_stream_features, test_subscription_handshake,
             test_subscription_transitions, test_resubscribe_after_removal,
             test_appendix_a_after_removal, test_pending_request_offline,
             test_pushes_across_workers, test_roster_versioning,
             test_roster_set_errors, test_roster_max_groups, test_probes,
             test_directed_presence, test_max_directed_presence,
             test_logout_ends_with_stream_close,
             test_negative_priority, test_message_rules, test_offline_storage,
             test_worker_crash, test_restart]]
    only = os.environ.get("IM_ONLY")
    if only:
        tests = [t for t in tests if re.search(only, t.__name__)]
    run_tests(tests)

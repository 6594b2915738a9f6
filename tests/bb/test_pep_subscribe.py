"""Explicit XEP-0060 subscriptions on PEP nodes (worker/pep.c,
worker/pep_notify.c, db/schema/011-pep-subscribe.sql), black box with
exact XML: subscribe (6.1) with every refusal (invalid-jid, item-not-found,
nodeid-required, the access models, subscription options, the
pep.max_subscriptions limit), the result without subid and the last item
with <delay/>; unsubscribe (6.2) and not-subscribed; the requester's and
the owner's subscription lists, the owner's subscriptions set (8.8.2);
events to subscribers: a bare JID's resources on both workers (not
priority < 0), a full JID's one resource, once per session also when the
presence-based recipients (caps) already got it, replyto only for
contacts; no more after unsubscribe; delete tells them and removes the
subscriptions, so does the subscriber's account going; a subscriber the
access model no longer admits loses it and is told (subscription
'none'); a subscriber on another server (a component stands in) gets the
result, the last item and the events through route_stanza;
<configuration/> events with notify_config.  Needs XMPPD_TEST_PGCONN.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_tests  # noqa: E402
from imlib import USERS, Server  # noqa: E402
from test_pep_notify import (J, R, TUNE, TUNE2, TUNE_NS, WANTS_TUNE,  # noqa: E402
                             any_event, event_rx, item_body, join, owner_set, pair, pub)
from test_pep_store import (ERRORS, OWNER, PUBSUB, STANZAS, config_form, error,  # noqa: E402
                            error_rx, form, ps)
from test_storage import sql  # noqa: E402

N = "nurse@localhost"
NODE = "urn:example:feed"


def ask(im, body, iq_id, iq_type="set", to=J):
    im.send("<iq to='%s' type='%s' id='%s'>%s</iq>" % (to, iq_type, iq_id, body))
    return im.expect(re.compile("<iq [^>]*id='%s'[^>]*?(/>|>.*?</iq>)" % re.escape(iq_id),
                                re.S))


def sub(node, jid):
    return ps("<subscribe node='%s' jid='%s'/>" % (node, jid))


def unsub(node, jid):
    return ps("<unsubscribe node='%s' jid='%s'/>" % (node, jid))


def subscribed(im, iq_id, node, jid, frm=J):
    return ("<iq from='%s' id='%s' to='%s' type='result'>%s</iq>"
            % (frm, iq_id, im.jid, ps("<subscription node='%s' jid='%s' "
                                      "subscription='subscribed'/>" % (node, jid))))


def empty(im, iq_id, frm=J):
    return "<iq from='%s' id='%s' to='%s' type='result'/>" % (frm, iq_id, im.jid)


def test_subscribe_refusals():
    """Each refusal of subscribe and unsubscribe, exact; nothing stored."""
    with Server(workers=2, users=USERS,
                overrides={"pep.max_subscriptions": "1"}) as s:
        pair(s, J, R, "both", "both", groups=("Friends",))
        jp = join(s, "juliet", "pub", WANTS_TUNE, worker=0)
        ro = join(s, "romeo", "a", None, worker=1)
        nu = join(s, "nurse", "n", None, worker=0)
        jp.expect(pub(jp, TUNE_NS, TUNE, "s1"))
        jp.expect(pub(jp, "pres", TUNE, "p", iq_id="p2"))
        jp.expect(pub(jp, "ros", TUNE, "r", [("pubsub#access_model", "roster"),
                                            ("pubsub#roster_groups_allowed", "Family")],
                      iq_id="p3"))
        jp.expect(pub(jp, "white", TUNE, "w", [("pubsub#access_model", "whitelist")],
                      iq_id="p4"))
        jp.expect(pub(jp, "open", TUNE, "o", [("pubsub#access_model", "open")],
                      iq_id="p5"))
        # 6.1.3.1: the jid is not the sender's
        assert re.fullmatch(error_rx(J, "e1", ro.jid, "modify", "bad-request", "invalid-jid"),
                            ask(ro, sub(TUNE_NS, N), "e1"))
        assert re.fullmatch(error_rx(J, "e2", ro.jid, "modify", "bad-request", "invalid-jid"),
                            ask(ro, sub(TUNE_NS, "romeo@localhost@x"), "e2"))
        # 6.1.3.10: no such node; no node at all
        assert ask(ro, sub("nothing", R), "e3") == error(J, "e3", ro.jid, "cancel",
                                                         "item-not-found")
        assert re.fullmatch(error_rx(J, "e4", ro.jid, "modify", "bad-request",
                                     "nodeid-required"),
                            ask(ro, ps("<subscribe jid='%s'/>" % R), "e4"))
        # 6.1.3.2-4: the access models, as for items
        assert ask(nu, sub("pres", N), "e5") == error(
            J, "e5", nu.jid, "auth", "not-authorized", "presence-subscription-required")
        assert ask(ro, sub("ros", R), "e6") == error(
            J, "e6", ro.jid, "auth", "not-authorized", "not-in-roster-group")
        assert ask(ro, sub("white", ro.jid), "e7") == error(
            J, "e7", ro.jid, "cancel", "not-allowed", "closed-node")
        # subscription options are not offered (6.3)
        unsupported = ("<iq from='%s' id='%s' to='%s' type='error'><error type='cancel'>"
                       "<feature-not-implemented xmlns='%s'/><text xmlns='%s'>subscription "
                       "options</text><unsupported xmlns='%s' feature='subscription-options'/>"
                       "</error></iq>")
        assert ask(ro, ps("<subscribe node='pres' jid='%s'/><options><x xmlns='jabber:x:data' "
                          "type='submit'/></options>" % R), "e8") == \
            unsupported % (J, "e8", ro.jid, STANZAS, STANZAS, ERRORS)
        assert ask(ro, ps("<options node='pres' jid='%s'/>" % R), "e9", "get") == \
            unsupported % (J, "e9", ro.jid, STANZAS, STANZAS, ERRORS)
        # 6.2.3.2: not subscribed; 6.2.3.3: not the sender's jid
        assert ask(ro, unsub("pres", R), "u1") == error(
            J, "u1", ro.jid, "cancel", "unexpected-request", "not-subscribed",
            "no such subscription")
        assert ask(ro, unsub("pres", N), "u2") == error(
            J, "u2", ro.jid, "auth", "forbidden", None,
            "subscription jid is not the requester's")
        assert ask(ro, unsub("nothing", R), "u3") == error(J, "u3", ro.jid, "cancel",
                                                           "item-not-found")
        assert sql(s, "SELECT count(*) FROM pubsub_subscriptions") == "0"
        # pep.max_subscriptions (1): the second subscriber of a node is
        # refused (6.1.3.9), the first may subscribe again
        ro.drain()
        assert ask(ro, sub("open", R), "m1") == subscribed(ro, "m1", "open", R)
        assert ask(nu, sub("open", N), "m2") == error(
            J, "m2", nu.jid, "wait", "policy-violation", "too-many-subscriptions",
            "pep.max_subscriptions (1) of the node reached")
        assert ask(ro, sub("open", R), "m3") == subscribed(ro, "m3", "open", R)
        assert sql(s, "SELECT string_agg(jid, ',') FROM pubsub_subscriptions") == R
        assert "pep: %s (%s) refused: policy-violation: pep.max_subscriptions (1)" \
            % (nu.jid, J) in s.log_text()


def test_subscribe_and_events():
    """A stranger subscribes its bare JID to an open node: the result, the
    last item with <delay/> to each of its resources (priority >= 0, both
    workers); every event of the node then, without replyto; the lists;
    unsubscribe stops them."""
    with Server(workers=2, users=USERS) as s:
        jp = join(s, "juliet", "pub", WANTS_TUNE, worker=0)
        n1 = join(s, "nurse", "one", None, worker=0)
        n2 = join(s, "nurse", "two", None, worker=1)
        n3 = join(s, "nurse", "low", None, worker=1, priority=-1)
        jp.expect(pub(jp, NODE, TUNE, "i1", [("pubsub#access_model", "open"),
                                            ("pubsub#notify_retract", "1"),
                                            ("pubsub#max_items", "10")]))
        for im in (jp, n1, n2, n3):
            im.drain()
        n1.send("<iq to='%s' type='set' id='s1'>%s</iq>" % (J, sub(NODE, N)))
        _, last = n1.expect_order(subscribed(n1, "s1", NODE, N),
                                  event_rx(n1.jid, NODE, item_body(NODE, "i1", TUNE),
                                           delay=True))
        n2.expect(event_rx(n2.jid, NODE, item_body(NODE, "i1", TUNE), delay=True))
        n3.quiet(0.3, want=any_event())
        # the lists: the requester's own, the owner's
        assert ask(n2, ps("<subscriptions/>"), "l1", "get") == \
            "<iq from='%s' id='l1' to='%s' type='result'>%s</iq>" % (J, n2.jid, ps(
                "<subscriptions><subscription node='%s' jid='%s' subscription='subscribed'/>"
                "</subscriptions>" % (NODE, N)))
        assert ask(jp, ps("<subscriptions node='%s'/>" % NODE, OWNER), "l2", "get") == \
            "<iq from='%s' id='l2' to='%s' type='result'>%s</iq>" % (J, jp.jid, ps(
                "<subscriptions node='%s'><subscription jid='%s' subscription='subscribed'/>"
                "</subscriptions>" % (NODE, N), OWNER))
        # a publish: both resources, no replyto (nurse has no presence
        # subscription to juliet, XEP-0163 4.3.1)
        jp.expect(pub(jp, NODE, TUNE2, "i2", iq_id="p2"))
        body = item_body(NODE, "i2", TUNE2)
        n1.expect(event_rx(n1.jid, NODE, body))
        n2.expect(event_rx(n2.jid, NODE, body))
        # a retract (notify_retract) and a purge
        owner_set(jp, ps("<retract node='%s'><item id='i1'/></retract>" % NODE), "r1")
        retract = "<items node='%s'><retract id='i1'/></items>" % NODE
        n1.expect(event_rx(n1.jid, NODE, retract))
        n2.expect(event_rx(n2.jid, NODE, retract))
        owner_set(jp, ps("<purge node='%s'/>" % NODE, OWNER), "u1")
        n2.expect(event_rx(n2.jid, NODE, "<purge node='%s'/>" % NODE))
        n1.expect(event_rx(n1.jid, NODE, "<purge node='%s'/>" % NODE))
        for im in (n1, n2, n3):
            im.quiet(0.2, want=any_event())
        # unsubscribe: no more
        assert ask(n2, unsub(NODE, N), "x1") == empty(n2, "x1")
        assert ask(n2, ps("<subscriptions/>"), "l3", "get") == \
            "<iq from='%s' id='l3' to='%s' type='result'>%s</iq>" % (
                J, n2.jid, ps("<subscriptions/>"))
        jp.expect(pub(jp, NODE, TUNE, "i3", iq_id="p3"))
        for im in (n1, n2, n3):
            im.quiet(0.5, want=any_event())


def test_dedup_and_full_jid():
    """A contact with caps interest that also subscribed its bare JID gets
    each event once per session (with replyto); its resource without caps
    gets one through the subscription; a full-JID subscriber's other
    resources get nothing; the owner subscribed too: once."""
    with Server(workers=2, users=USERS) as s:
        pair(s, J, R, "both", "both")
        pair(s, J, N, "both", "both")
        jp = join(s, "juliet", "pub", WANTS_TUNE, worker=0)
        jn = join(s, "juliet", "nocaps", None, worker=1)
        ra = join(s, "romeo", "a", WANTS_TUNE, worker=1)
        rb = join(s, "romeo", "b", None, worker=0)
        n1 = join(s, "nurse", "one", None, worker=1)
        n2 = join(s, "nurse", "two", None, worker=0)
        jp.expect(pub(jp, TUNE_NS, TUNE, "t1"))
        for im in (jp, jn, ra, rb, n1, n2):
            im.drain()
        assert ask(ra, sub(TUNE_NS, R), "s1") == subscribed(ra, "s1", TUNE_NS, R)
        assert ask(n1, sub(TUNE_NS, n1.jid), "s2") == subscribed(n1, "s2", TUNE_NS, n1.jid)
        assert ask(jp, sub(TUNE_NS, J), "s3") == subscribed(jp, "s3", TUNE_NS, J)
        for im in (jp, jn, ra, rb, n1, n2):
            im.drain()
        jp.expect(pub(jp, TUNE_NS, TUNE2, "t2", iq_id="p2"))
        body = item_body(TUNE_NS, "t2", TUNE2)
        for im in (jp, jn, ra, rb, n1):
            im.expect(event_rx(im.jid, TUNE_NS, body, jp.jid))
        for im in (jp, jn, ra, rb, n1, n2):
            im.quiet(0.4, want=any_event())


def test_delete_and_account_removal():
    """Deleting the node sends <delete/> to its subscribers and removes
    their subscriptions; a subscriber's account going removes its
    subscriptions (bare and full)."""
    with Server(workers=2, users=USERS) as s:
        jp = join(s, "juliet", "pub", WANTS_TUNE, worker=0)
        nu = join(s, "nurse", "n", None, worker=1)
        be = join(s, "benvolio", "b", None, worker=0)
        jp.expect(pub(jp, NODE, TUNE, "i1", [("pubsub#access_model", "open")]))
        jp.expect(pub(jp, "other", TUNE, "o1", [("pubsub#access_model", "open")],
                      iq_id="p2"))
        assert ask(nu, sub(NODE, N), "s1") == subscribed(nu, "s1", NODE, N)
        assert ask(be, sub(NODE, be.jid), "s2") == subscribed(be, "s2", NODE, be.jid)
        assert ask(be, sub("other", "benvolio@localhost"), "s3") == \
            subscribed(be, "s3", "other", "benvolio@localhost")
        assert ask(be, sub("other", be.jid), "s4") == subscribed(be, "s4", "other", be.jid)
        for im in (jp, nu, be):
            im.drain()
        owner_set(jp, ps("<delete node='%s'/>" % NODE, OWNER), "d1")
        nu.expect(event_rx(nu.jid, NODE, "<delete node='%s'/>" % NODE))
        be.expect(event_rx(be.jid, NODE, "<delete node='%s'/>" % NODE))
        assert sql(s, "SELECT string_agg(jid, ',' ORDER BY jid) FROM pubsub_subscriptions") \
            == "benvolio@localhost,%s" % be.jid
        # a node of that name again: no subscriber from before
        jp.expect(pub(jp, NODE, TUNE, "i2", [("pubsub#access_model", "open")], iq_id="p3"))
        for im in (nu, be):
            im.quiet(0.3, want=any_event())
        sql(s, "DELETE FROM accounts WHERE username = 'benvolio'")
        assert sql(s, "SELECT count(*) FROM pubsub_subscriptions") == "0"


def test_owner_manages_subscriptions():
    """8.8.2: the owner subscribes a JID and removes it; the subscriber
    gets events meanwhile; only none and subscribed; owner-only."""
    with Server(workers=2, users=USERS,
                overrides={"pep.max_subscriptions": "2"}) as s:
        jp = join(s, "juliet", "pub", WANTS_TUNE, worker=0)
        nu = join(s, "nurse", "n", None, worker=1)
        jp.expect(pub(jp, NODE, TUNE, "i1", [("pubsub#access_model", "open")]))
        setsubs = ("<subscriptions node='%s'>%s</subscriptions>")
        one = "<subscription jid='%s' subscription='%s'/>"
        owner_set(jp, ps(setsubs % (NODE, one % (N, "subscribed")), OWNER), "o1")
        # 8.8.4: the affected JID is told
        nu.expect(sub_none(nu, NODE, N, "subscribed"))
        jp.expect(pub(jp, NODE, TUNE2, "i2", iq_id="p2"))
        nu.expect(event_rx(nu.jid, NODE, item_body(NODE, "i2", TUNE2)))
        # past pep.max_subscriptions: nothing changes
        assert ask(jp, ps(setsubs % (NODE, one % ("a@localhost", "subscribed") +
                                     one % ("b@localhost", "subscribed")), OWNER),
                   "o2", to=J) == error(J, "o2", jp.jid, "wait", "policy-violation",
                                        "too-many-subscriptions",
                                        "pep.max_subscriptions (2) of the node reached")
        assert ask(jp, ps(setsubs % (NODE, one % (N, "pending")), OWNER), "o3") == \
            error(J, "o3", jp.jid, "modify", "not-acceptable", None,
                  "subscription state not offered")
        assert ask(nu, ps(setsubs % (NODE, one % (N, "none")), OWNER), "o4") == \
            error(J, "o4", nu.jid, "auth", "forbidden", None,
                  "owner request of another account")
        assert ask(jp, ps(setsubs % ("nothing", one % (N, "none")), OWNER), "o5",
                   to=J) == error(J, "o5", jp.jid, "cancel", "item-not-found")
        owner_set(jp, ps(setsubs % (NODE, one % (N, "none")), OWNER), "o6")
        nu.expect(sub_none(nu, NODE, N))
        assert sql(s, "SELECT count(*) FROM pubsub_subscriptions") == "0"
        # setting a state a JID already has tells nobody
        owner_set(jp, ps(setsubs % (NODE, one % (N, "none")), OWNER), "o7")
        nu.quiet(0.3, want=re.compile(".*<subscription .*", re.S))
        jp.expect(pub(jp, NODE, TUNE, "i3", iq_id="p3"))
        nu.quiet(0.3, want=any_event())


def sub_none(im, node, jid, state="none"):
    return re.compile(re.escape("<message from='%s' to='%s' type='headline' id='" % (J, im.jid))
                      + r"pep-[0-9a-f-]+" + re.escape(
                          "'><event xmlns='%s#event'><subscription node='%s' jid='%s' "
                          "subscription='%s'/></event></message>" % (PUBSUB, node, jid, state)))


def test_subscriptions_end_with_access():
    """Section 4.5: a subscriber the node no longer admits loses the
    subscription and is told (subscription='none'): the access model
    changes (open -> presence), the contact cancels its presence
    subscription, the owner makes a whitelist member an outcast."""
    with Server(workers=2, users=USERS) as s:
        pair(s, J, R, "both", "both")
        jp = join(s, "juliet", "pub", WANTS_TUNE, worker=0)
        ro = join(s, "romeo", "a", None, worker=1)
        nu = join(s, "nurse", "n", None, worker=0)
        jp.expect(pub(jp, NODE, TUNE, "i1", [("pubsub#access_model", "open")]))
        jp.expect(pub(jp, "wl", TUNE, "w1", [("pubsub#access_model", "whitelist")],
                      iq_id="p2"))
        owner_set(jp, ps("<affiliations node='wl'><affiliation jid='%s' "
                         "affiliation='member'/></affiliations>" % N, OWNER), "a1")
        assert ask(nu, sub(NODE, N), "s1") == subscribed(nu, "s1", NODE, N)
        assert ask(ro, sub(NODE, ro.jid), "s2") == subscribed(ro, "s2", NODE, ro.jid)
        assert ask(nu, sub("wl", nu.jid), "s3") == subscribed(nu, "s3", "wl", nu.jid)
        for im in (jp, ro, nu):
            im.drain()
        # open -> presence: nurse (no subscription) goes, romeo stays
        owner_set(jp, ps("<configure node='%s'>%s</configure>" % (NODE, form(
            PUBSUB + "#node_config", [("pubsub#access_model", "presence")])), OWNER), "c1")
        nu.expect(sub_none(nu, NODE, N))
        assert sql(s, "SELECT string_agg(jid, ',' ORDER BY jid) FROM pubsub_subscriptions") \
            == "%s,%s" % (nu.jid, ro.jid)
        ro.quiet(0.3, want=any_event())
        # romeo cancels his presence subscription to juliet: his goes
        ro.send("<presence to='%s' type='unsubscribe'/>" % J)
        ro.expect(sub_none(ro, NODE, ro.jid))
        assert sql(s, "SELECT string_agg(jid, ',') FROM pubsub_subscriptions") == nu.jid
        # an outcast of the whitelist node
        owner_set(jp, ps("<affiliations node='wl'><affiliation jid='%s' "
                         "affiliation='outcast'/></affiliations>" % N, OWNER), "a2")
        nu.expect(sub_none(nu, "wl", nu.jid))
        assert sql(s, "SELECT count(*) FROM pubsub_subscriptions") == "0"
        assert "pep: %s's subscription to %s node wl ended" % (nu.jid, J) in s.log_text()


def test_remote_subscriber():
    """A JID on another server (a component stands in for it: what a
    remote server would get) subscribes: the result and the last item go
    back through route_stanza, then each event, once, to the subscribed
    JID; unsubscribe stops them."""
    from test_presence_remote import GW, SECRET, Remote
    bot = "bot@" + GW
    with Server(workers=2, users=USERS, components={GW: SECRET}) as s:
        jp = join(s, "juliet", "pub", WANTS_TUNE, worker=0)
        jp.expect(pub(jp, NODE, TUNE, "i1", [("pubsub#access_model", "open")]))
        r = Remote(s)
        r.send("<iq from='%s/x' to='%s' type='set' id='rs1'>%s</iq>" % (bot, J, sub(NODE, bot)))
        r.expect("<iq from='%s' id='rs1' to='%s/x' type='result'>%s</iq>" % (
            J, bot, ps("<subscription node='%s' jid='%s' subscription='subscribed'/>"
                       % (NODE, bot))))
        msg = (re.escape("<message from='%s' to='%s' type='headline' id='" % (J, bot))
               + r"pep-[0-9a-f-]+" + re.escape("'><event xmlns='%s#event'>%s</event>"
                                               % (PUBSUB, item_body(NODE, "%s", "%s"))))
        r.expect(re.compile(msg.replace(re.escape("%s"), "%s") % ("i1", re.escape(TUNE))
                            + r"<delay xmlns='urn:xmpp:delay' stamp='[0-9T:Z-]+'/></message>"))
        jp.expect(pub(jp, NODE, TUNE2, "i2", iq_id="p2"))
        r.expect(re.compile(msg.replace(re.escape("%s"), "%s") % ("i2", re.escape(TUNE2))
                            + "</message>"))
        r.quiet(0.3)
        r.send("<iq from='%s/x' to='%s' type='set' id='rs2'>%s</iq>" % (bot, J, unsub(NODE, bot)))
        r.expect("<iq from='%s' id='rs2' to='%s/x' type='result'/>" % (J, bot))
        jp.expect(pub(jp, NODE, TUNE, "i3", iq_id="p3"))
        r.quiet(0.5)


def test_config_notification():
    """notify_config: a configuration change sends <configuration/> with
    the form (deliver_payloads) to subscribers and interested sessions;
    without notify_config nothing."""
    with Server(workers=2, users=USERS) as s:
        jp = join(s, "juliet", "pub", WANTS_TUNE, worker=0)
        nu = join(s, "nurse", "n", None, worker=1)
        jp.expect(pub(jp, TUNE_NS, TUNE, "i1", [("pubsub#access_model", "open")]))
        assert ask(nu, sub(TUNE_NS, N), "s1") == subscribed(nu, "s1", TUNE_NS, N)
        for im in (jp, nu):
            im.drain()
        cfg = lambda fields: ps("<configure node='%s'>%s</configure>" % (  # noqa: E731
            TUNE_NS, form(PUBSUB + "#node_config", fields)), OWNER)
        owner_set(jp, cfg([("pubsub#title", "quiet")]), "c1")
        for im in (jp, nu):
            im.quiet(0.3, want=any_event())
        owner_set(jp, cfg([("pubsub#notify_config", "1"), ("pubsub#title", "Songs")]), "c2")
        # the allowed roster groups are the owner's: not in the form
        # recipients get (REVIEW-13b G6)
        x = re.sub("<field var='pubsub#roster_groups_allowed'[^>]*/>", "", config_form(
            {"access_model": "open", "notify_config": "1", "title": "Songs"})) \
            .replace("type='form'", "type='result'", 1).replace("<value/>", "<value></value>")
        body = "<configuration node='%s'>%s</configuration>" % (TUNE_NS, x)
        nu.expect(event_rx(nu.jid, TUNE_NS, body))
        jp.expect(event_rx(jp.jid, TUNE_NS, body))
        owner_set(jp, cfg([("pubsub#roster_groups_allowed", "Secret Family")]), "c4")
        got = nu.expect(event_rx(nu.jid, TUNE_NS, body))
        assert "Secret" not in got
        jp.expect(event_rx(jp.jid, TUNE_NS, body))
        # without payloads: the bare <configuration/>
        owner_set(jp, cfg([("pubsub#deliver_payloads", "0")]), "c3")
        nu.expect(event_rx(nu.jid, TUNE_NS, "<configuration node='%s'/>" % TUNE_NS))


def test_subscriptions_per_jid():
    """REVIEW-13b G2: one subscriber (its bare JID and made-up resources)
    holds at most pep.max_subscriptions_per_jid of a node, so another
    contact can still subscribe.  Subscriber JIDs do not count against
    the owner's pep.max_account_bytes (REVIEW-13c H1: strangers on an
    open node would otherwise fill it and stop the owner's publishing)."""
    with Server(workers=1, users=USERS,
                overrides={"pep.max_subscriptions": "5",
                           "pep.max_subscriptions_per_jid": "2"}) as s:
        pair(s, J, R, "both", "both")
        pair(s, J, N, "both", "both")
        jp = join(s, "juliet", "pub", None)
        jp.expect(pub(jp, TUNE_NS, TUNE, "s1"))
        ro = join(s, "romeo", "a", None)
        nu = join(s, "nurse", "a", None)
        bytes0 = int(sql(s, "SELECT xmppd_pep_account_bytes(xmppd_account_id("
                         "'juliet', 'localhost'))"))
        for i in range(2):
            jid = "%s/ghost%d" % (R, i)
            assert ask(ro, sub(TUNE_NS, jid), "g%d" % i) == subscribed(ro, "g%d" % i,
                                                                        TUNE_NS, jid)
        assert ask(ro, sub(TUNE_NS, R), "g2") == error(
            J, "g2", ro.jid, "wait", "policy-violation", "too-many-subscriptions",
            "pep.max_subscriptions_per_jid (2) of the subscriber reached")
        # an existing one may be asked again
        assert ask(ro, sub(TUNE_NS, R + "/ghost1"), "g3") == subscribed(
            ro, "g3", TUNE_NS, R + "/ghost1")
        assert ask(nu, sub(TUNE_NS, N), "n1") == subscribed(nu, "n1", TUNE_NS, N)
        assert sql(s, "SELECT string_agg(jid, ' ' ORDER BY jid) FROM pubsub_subscriptions") \
            == "%s %s/ghost0 %s/ghost1" % (N, R, R)
        assert int(sql(s, "SELECT xmppd_pep_account_bytes(xmppd_account_id("
                       "'juliet', 'localhost'))")) == bytes0
        assert "pep: %s (%s) refused: policy-violation: pep.max_subscriptions_per_jid (2)" \
            % (ro.jid, J) in s.log_text()
    # a full quota does not stop a subscriber, and subscribers do not
    # fill the quota: the owner can still publish what fits
    with Server(workers=1, users=USERS,
                overrides={"pep.max_account_bytes": "64K"}) as s:
        jp = join(s, "juliet", "pub", None)
        jp.expect(pub(jp, NODE, TUNE, "s1", [("pubsub#access_model", "open")]))
        nu = join(s, "nurse", "a", None)
        acc = "xmppd_pep_account_bytes(xmppd_account_id('juliet', 'localhost'))"
        # the node's items made to take all of the quota
        sql(s, "UPDATE pubsub_nodes SET item_bytes = item_bytes + %d - %s"
            % (64 * 1024, acc))
        assert ask(nu, sub(NODE, N), "q1") == subscribed(nu, "q1", NODE, N)
        assert sql(s, "SELECT %s" % acc) == str(64 * 1024)


def test_last_item_without_payload():
    """REVIEW-13b G6: subscribing to a node with deliver_payloads off
    sends the last item's id without its payload (XEP-0060 7.1.2.1)."""
    with Server(workers=1, users=USERS) as s:
        jp = join(s, "juliet", "pub", None)
        jp.expect(pub(jp, NODE, TUNE, "i1", [("pubsub#access_model", "open"),
                                            ("pubsub#deliver_payloads", "0")]))
        nu = join(s, "nurse", "one", None)
        nu.send("<iq to='%s' type='set' id='s1'>%s</iq>" % (J, sub(NODE, N)))
        nu.expect_order(subscribed(nu, "s1", NODE, N),
                        event_rx(nu.jid, NODE, "<items node='%s'><item id='i1'/></items>"
                                 % NODE, delay=True))
        nu.quiet(0.3, want=any_event())


def test_subscribe_racing_prune():
    """REVIEW-13b G6: a subscribe that passed its access check while the
    contact's presence subscription goes does not survive the prune:
    the prune waits for the subscribing transaction (held open here in
    psql) and then removes its row and tells the JID."""
    import subprocess
    from harness import wait_for
    with Server(workers=1, users=USERS) as s:
        pair(s, J, R, "both", "both")
        jp = join(s, "juliet", "pub", None)
        jp.expect(pub(jp, NODE, TUNE, "i1"))        # access model presence
        ro = join(s, "romeo", "a", None)
        for im in (jp, ro):
            im.drain()
        a = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                              "-d", s.db.conninfo], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        try:
            a.stdin.write("BEGIN; SELECT status FROM xmppd_pep_subscribe('juliet', "
                          "'localhost', '%s', '%s', '%s', 1000, 16);\n"
                          % (NODE, R, R))
            a.stdin.flush()
            assert a.stdout.readline().strip() == "ok"
            # romeo ends his presence subscription: juliet's side prunes
            ro.send("<presence to='%s' type='unsubscribe'/>" % J)
            jp.expect(re.compile("<iq [^>]*type='set'[^>]*><query xmlns='jabber:iq:roster'"
                                 "[^>]*><item [^>]*jid='%s'[^>]*subscription='to'.*" % R,
                                 re.S))
            waiting = ("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                       "current_database() AND wait_event_type = 'Lock' AND "
                       "query LIKE '%xmppd_pep_sub_prune%'")
            wait_for(lambda: sql(s, waiting) == "1", timeout=5,
                     what="the prune waiting for the subscribe")
            a.stdin.write("COMMIT;\n")
            a.stdin.close()
            assert a.wait(timeout=10) == 0
        finally:
            if a.poll() is None:
                a.kill()
                a.wait()
        ro.expect(sub_none(ro, NODE, R))
        assert sql(s, "SELECT count(*) FROM pubsub_subscriptions") == "0"


if __name__ == "__main__":
    only = sys.argv[1:]
    run_tests([f for n, f in sorted(globals().items(), key=lambda kv: 0)
               if n.startswith("test_") and callable(f) and (not only or n in only)])

"""XEP-0163 across servers, black box with exact XML.  An external
component (XEP-0114, gw.localhost) stands in for a remote server, as in
test_presence_remote.py: what it sends takes the paths of stanzas
arriving from another server, and it sees exactly what a remote server
would get.  Covered: a remote contact's presence with XEP-0115 caps ->
our disco#info query from the account's bare JID -> its answer -> the
account's last items (with <delay/>) to that full JID; live events with
replyto; a known ver needs no query; a caps answer that does not match
(poisoning) and a forged answer are not used; an error bounce
(cancel / <gone/>) ends the events, other errors do not, and nothing
answers an error; unavailable ends them; 'to'-only contacts and JIDs
without interest get nothing; the cap pep.max_remote_recipients;
last items when the account approves the contact; pubsub requests from a
remote JID get the access-model answers of a local requester (items,
publish forbidden, disco); a remote PEP service's headline events to the
bare JID reach every resource with priority >= 0 and are not stored
offline or archived.  test_over_s2s_streams runs the main path over
real s2s streams (fakeserver.py for xmppd's outgoing link, test_s2s_in's
Peer for the incoming one, SASL EXTERNAL both ways), exact XML.
Needs XMPPD_TEST_PGCONN.
"""
import base64
import hashlib
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, run_tests, wait_for  # noqa: E402
from imlib import USERS, checked  # noqa: E402
from test_caps import metric, synced  # noqa: E402
from test_pep_notify import (EVENT, TUNE, TUNE2, TUNE_NS, WANTS_NOTHING,  # noqa: E402
                             WANTS_TUNE, any_event, item_body, join, pub, roster)
from test_pep_store import ERRORS, PUBSUB, STANZAS, items_of, ps  # noqa: E402
from test_presence_remote import GW, SECRET, Remote, running  # noqa: E402
from test_storage import sql  # noqa: E402
from dnslab import DnsLab  # noqa: E402
from fakeserver import FakeServer, STARTTLS_REQUIRED, features_auth  # noqa: E402
from test_s2s_in import NS_SASL, Peer, pki  # noqa: E402

DISCO = "http://jabber.org/protocol/disco#info"
CAPS_NODE = "https://gw.localhost/caps"
J = "juliet@localhost"
BOT = "bot@" + GW
BOTX = BOT + "/x"


def rcaps(features, name="Remote"):
    feats = ["http://jabber.org/protocol/disco#info"] + features
    s = "client/pc//%s<" % name + "".join(f + "<" for f in sorted(feats))
    ver = base64.b64encode(hashlib.sha1(s.encode()).digest()).decode()
    inner = "<identity category='client' name='%s' type='pc'/>" % name + "".join(
        "<feature var='%s'/>" % f for f in feats)
    return ver, inner


def rpresence(frm, ver, to=J):
    return ("<presence from='%s' to='%s'><c xmlns='http://jabber.org/protocol/caps' "
            "hash='sha-1' node='%s' ver='%s'/></presence>" % (frm, to, CAPS_NODE, ver))


def query_rx(frm, to, ver):
    """Our disco#info query over s2s: exact, the id aside."""
    return re.compile(re.escape("<iq from='%s' to='%s' type='get' id='" % (frm, to))
                      + r"(pepr-1-0-[0-9a-f]+-[0-9a-f]{16})"
                      + re.escape("'><query xmlns='%s' node='%s#%s'/></iq>"
                                  % (DISCO, CAPS_NODE, ver)))


def expect_query(gw, frm, to, ver):
    rx = query_rx(frm, to, ver)
    return rx.fullmatch(gw.expect(rx)).group(1)


def answer(gw, frm, to, iq_id, ver, inner):
    gw.send("<iq from='%s' to='%s' type='result' id='%s'><query xmlns='%s' node='%s#%s'>"
            "%s</query></iq>" % (frm, to, iq_id, DISCO, CAPS_NODE, ver, inner))


def event_rx(to, body, replyto=None, delay=False, frm=J):
    """An event as the remote server gets it (attributes as built)."""
    tail = ""
    if replyto:
        tail = ("<addresses xmlns='http://jabber.org/protocol/address'>"
                "<address type='replyto' jid='%s'/></addresses>" % replyto)
    rx = (re.escape("<message from='%s' to='%s' type='headline' id='" % (frm, to))
          + r"(pep-[0-9a-f-]+)"
          + re.escape("'><event xmlns='%s'>%s</event>%s" % (EVENT, body, tail)))
    if delay:
        rx += r"<delay xmlns='urn:xmpp:delay' stamp='\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ'/>"
    return re.compile(rx + re.escape("</message>"))


def quiet(gw, secs=0.5):
    """Nothing but presence (juliet's broadcasts and probes) reaches the
    remote side for secs."""
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        gw._fill(deadline)
    gw._split()
    gw.q = [st for st in gw.q if not st.startswith("<presence ")]
    assert not gw.q, "remote: expected nothing, got %r" % gw.q


def server(workers=2, overrides=None):
    return running(Server(workers=workers, users=USERS, components={GW: SECRET},
                          overrides=overrides))


def rows(s, jid=None):
    where = " WHERE full_jid = '%s'" % jid if jid else ""
    return int(sql(s, "SELECT count(*) FROM pep_remote_presence%s" % where).strip())


def bot_online(s, gw, ver, inner, frm=BOTX):
    """frm sends presence with caps to juliet, is asked and answers."""
    gw.send(rpresence(frm, ver))
    iq_id = expect_query(gw, J, frm, ver)
    before = metric(s, "xmppd_caps_verified")
    answer(gw, frm, J, iq_id, ver, inner)
    wait_for(lambda: metric(s, "xmppd_caps_verified") == before + 1, what="verified")


# ---------------------------------------------------------------------------

def test_remote_recipient_lifecycle():
    """The fake peer's presence with caps -> our disco#info over s2s
    (exact) -> its answer -> the last item to its full JID with <delay/>;
    a publish reaches it with replyto; an error bounce of type cancel
    removes it (the next publish does not go, and nothing answers the
    error); its next presence with a known ver needs no query and gets
    the last item again; unavailable stops the events."""
    with server() as s:
        gw = Remote(s)
        roster(s, J, BOT, "both")
        jp = join(s, "juliet", "pub", WANTS_TUNE, worker=0)
        jp.expect(pub(jp, TUNE_NS, TUNE, "s1"))
        ver, inner = rcaps(WANTS_TUNE)
        bot_online(s, gw, ver, inner)
        gw.expect(event_rx(BOTX, item_body(TUNE_NS, "s1", TUNE), delay=True))
        quiet(gw, 0.5)
        assert rows(s, BOTX) == 1
        # a publish on the other worker reaches it, with replyto
        jq = join(s, "juliet", "pub2", None, worker=1)
        jq.expect(pub(jq, TUNE_NS, TUNE2, "s2", iq_id="p2"))
        st = gw.expect(event_rx(BOTX, item_body(TUNE_NS, "s2", TUNE2), jq.jid))
        ev_id = event_rx(BOTX, item_body(TUNE_NS, "s2", TUNE2), jq.jid).fullmatch(st).group(1)
        quiet(gw, 0.3)
        # a wait error is ignored: still a recipient
        gw.send("<message from='%s' to='%s' type='error' id='%s'><error type='wait'>"
                "<resource-constraint xmlns='%s'/></error></message>"
                % (BOTX, J, ev_id, STANZAS))
        jp.expect(pub(jp, TUNE_NS, TUNE, "s3", iq_id="p3"))
        st = gw.expect(event_rx(BOTX, item_body(TUNE_NS, "s3", TUNE), jp.jid))
        ev_id = event_rx(BOTX, item_body(TUNE_NS, "s3", TUNE), jp.jid).fullmatch(st).group(1)
        # the bounce (XEP-0060 12.3): cancel -> no more events
        gw.send("<message from='%s' to='%s' type='error' id='%s'><error type='cancel'>"
                "<service-unavailable xmlns='%s'/></error></message>"
                % (BOTX, J, ev_id, STANZAS))
        wait_for(lambda: rows(s, BOTX) == 0, what="row deleted")
        quiet(gw, 0.5)           # no error in return
        jp.expect(pub(jp, TUNE_NS, TUNE2, "s4", iq_id="p4"))
        quiet(gw, 0.5)
        # back: the ver is known, no query; the last item at once
        gw.send(rpresence(BOTX, ver))
        gw.expect(event_rx(BOTX, item_body(TUNE_NS, "s4", TUNE2), delay=True))
        quiet(gw, 0.3)
        # the same presence again: nothing new
        gw.send(rpresence(BOTX, ver))
        quiet(gw, 0.5)
        # unavailable: no more events
        gw.send("<presence from='%s' to='%s' type='unavailable'/>" % (BOTX, J))
        wait_for(lambda: rows(s, BOTX) == 0, what="row deleted")
        jp.expect(pub(jp, TUNE_NS, TUNE, "s5", iq_id="p5"))
        quiet(gw, 0.5)
        # a <gone/> bounce ends it too
        gw.send(rpresence(BOTX, ver))
        gw.expect(event_rx(BOTX, item_body(TUNE_NS, "s5", TUNE), delay=True))
        jp.expect(pub(jp, TUNE_NS, TUNE2, "s6", iq_id="p6"))
        st = gw.expect(event_rx(BOTX, item_body(TUNE_NS, "s6", TUNE2), jp.jid))
        ev_id = event_rx(BOTX, item_body(TUNE_NS, "s6", TUNE2), jp.jid).fullmatch(st).group(1)
        gw.send("<message from='%s' to='%s' type='error' id='%s'><error type='modify'>"
                "<gone xmlns='%s'/></error></message>" % (BOTX, J, ev_id, STANZAS))
        wait_for(lambda: rows(s, BOTX) == 0, what="row deleted")
        jp.expect(pub(jp, TUNE_NS, TUNE, "s7", iq_id="p7"))
        quiet(gw, 0.5)
        log = s.log_text()
        assert "bounced (cancel): no more events" in log, log[-3000:]
        assert "bounced (gone): no more events" in log, log[-3000:]


def test_who_gets_nothing():
    """A remote JID whose caps lack NODE+notify, a 'to'-only contact and a
    stranger get no events; a stranger's presence is not recorded; the
    'to' contact granted a subscription gets the last item at once; caps
    changed to ones with NODE+notify bring the last item, once."""
    with server(workers=1) as s:
        gw = Remote(s)
        roster(s, J, BOT, "both")
        roster(s, J, "to@" + GW, "to")
        jp = join(s, "juliet", "pub", WANTS_TUNE)
        jp.expect(pub(jp, TUNE_NS, TUNE, "s1"))
        ver0, inner0 = rcaps(WANTS_NOTHING, name="Bored")
        bot_online(s, gw, ver0, inner0)
        ver, inner = rcaps(WANTS_TUNE)
        bot_online(s, gw, ver, inner, frm="to@%s/t" % GW)
        gw.send(rpresence("eve@%s/e" % GW, ver))
        quiet(gw, 0.5)           # no query for a stranger, no last items
        assert rows(s, "eve@%s/e" % GW) == 0
        assert rows(s, "to@%s/t" % GW) == 1
        jp.expect(pub(jp, TUNE_NS, TUNE2, "s2", iq_id="p2"))
        quiet(gw, 0.5)
        # the 'to' contact asks for a subscription and is granted it:
        # its last items now
        gw.send("<presence from='to@%s' to='%s' type='subscribe'/>" % (GW, J))
        jp.expect("<presence from='to@%s' to='%s' type='subscribe'/>" % (GW, J))
        jp.send("<presence to='to@%s' type='subscribed'/>" % GW)
        gw.expect(re.compile(re.escape("<presence to='to@%s' type='subscribed' from='%s'/>"
                                       % (GW, J))))
        gw.expect(event_rx("to@%s/t" % GW, item_body(TUNE_NS, "s2", TUNE2), delay=True))
        quiet(gw, 0.3)
        # bot's caps change to a ver (known) whose notify set adds the
        # tune: the last tune now, once
        gw.send(rpresence(BOTX, ver))
        gw.expect(event_rx(BOTX, item_body(TUNE_NS, "s2", TUNE2), delay=True))
        gw.send(rpresence(BOTX, ver))
        quiet(gw, 0.5)


def test_poisoned_and_forged_answers():
    """A caps answer that does not hash to the ver is not used (no last
    items, no events, one log line) and the next JID with that ver is
    asked again; an answer with a made-up id, or from another JID than
    the one asked, is ignored."""
    with server(workers=1) as s:
        gw = Remote(s)
        roster(s, J, BOT, "both")
        roster(s, J, "ann@" + GW, "both")
        jp = join(s, "juliet", "pub", WANTS_TUNE)
        jp.expect(pub(jp, TUNE_NS, TUNE, "s1"))
        ver, inner = rcaps(WANTS_TUNE, name="Poison")
        gw.send(rpresence(BOTX, ver))
        iq_id = expect_query(gw, J, BOTX, ver)
        # another JID answers the query meant for bot: ignored
        answer(gw, "ann@%s/a" % GW, J, iq_id, ver, inner)
        # a made-up id: ignored
        answer(gw, BOTX, J, "pepr-1-0-1234-0123456789abcdef", ver, inner)
        # the lie: features that do not hash to ver
        before = metric(s, "xmppd_caps_mismatch")
        answer(gw, BOTX, J, iq_id, ver, inner.replace(TUNE_NS + "+notify",
                                                      "urn:xmpp:x+notify"))
        wait_for(lambda: metric(s, "xmppd_caps_mismatch") == before + 1, what="mismatch")
        quiet(gw, 0.5)
        jp.expect(pub(jp, TUNE_NS, TUNE2, "s2", iq_id="p2"))
        quiet(gw, 0.5)
        log = s.log_text()
        assert "refused (hash differs): not cached" in log, log[-3000:]
        assert "not a query of ours to it, ignored" in log, log[-3000:]
        # ann with the same ver is asked; her true answer counts
        before = metric(s, "xmppd_caps_verified")
        gw.send(rpresence("ann@%s/a" % GW, ver))
        iq2 = expect_query(gw, J, "ann@%s/a" % GW, ver)
        answer(gw, "ann@%s/a" % GW, J, iq2, ver, inner)
        wait_for(lambda: metric(s, "xmppd_caps_verified") == before + 1, what="verified")
        gw.expect(event_rx("ann@%s/a" % GW, item_body(TUNE_NS, "s2", TUNE2), delay=True))


def test_recipient_cap():
    """pep.max_remote_recipients: past it a new full JID is not recorded
    (one log line) and gets no events; when one goes, another may come."""
    with server(workers=1, overrides={"pep.max_remote_recipients": "1"}) as s:
        gw = Remote(s)
        roster(s, J, BOT, "both")
        jp = join(s, "juliet", "pub", WANTS_TUNE)
        jp.expect(pub(jp, TUNE_NS, TUNE, "s0", iq_id="p0"))
        ver, inner = rcaps(WANTS_TUNE)
        bot_online(s, gw, ver, inner)
        gw.expect(event_rx(BOTX, item_body(TUNE_NS, "s0", TUNE), delay=True))
        gw.send(rpresence(BOT + "/y", ver))
        wait_for(lambda: "remote recipients of juliet@localhost full "
                 "(pep.max_remote_recipients 1): bot@gw.localhost/y gets no events"
                 in s.log_text(), what="log line")
        jp.expect(pub(jp, TUNE_NS, TUNE, "s1"))
        gw.expect(event_rx(BOTX, item_body(TUNE_NS, "s1", TUNE), jp.jid))
        quiet(gw, 0.5)
        assert rows(s) == 1
        gw.send("<presence from='%s' to='%s' type='unavailable'/>" % (BOTX, J))
        wait_for(lambda: rows(s) == 0, what="row deleted")
        gw.send(rpresence(BOT + "/y", ver))
        gw.expect(event_rx(BOT + "/y", item_body(TUNE_NS, "s1", TUNE), delay=True))


def test_remote_requester_access():
    """pubsub requests from a remote JID to a local account's PEP get the
    answers a local requester gets: items by access model (checked against
    the roster by the requester's bare JID), publish forbidden, disco#info
    as for a contact or a stranger."""
    with server(workers=1) as s:
        gw = Remote(s)
        jp = join(s, "juliet", "pub", None)
        jp.expect(pub(jp, TUNE_NS, TUNE, "s1"))
        get = ("<iq from='%s' to='%s' type='get' id='%s'>%s</iq>"
               % (BOTX, J, "%s", ps("<items node='%s'/>" % TUNE_NS)))
        gw.send(get % "i1")
        gw.expect_seq("<iq from='%s' id='i1' to='%s' type='error'><error type='auth'>"
                      "<not-authorized xmlns='%s'/><presence-subscription-required "
                      "xmlns='%s'/></error></iq>" % (J, BOTX, STANZAS, ERRORS))
        roster(s, J, BOT, "from")
        gw.send(get % "i2")
        gw.expect_seq("<iq from='%s' id='i2' to='%s' type='result'>%s</iq>"
                      % (J, BOTX, items_of(TUNE_NS, [("s1", TUNE)])))
        gw.send("<iq from='%s' to='%s' type='set' id='i3'>%s</iq>"
                % (BOTX, J, ps("<publish node='x'><item id='1'>%s</item></publish>" % TUNE)))
        st = gw.expect(re.compile("<iq from='%s' id='i3' to='%s' type='error'>.*</iq>"
                                  % (re.escape(J), re.escape(BOTX))))
        assert "<error type='auth'><forbidden xmlns='%s'/>" % STANZAS in st, st
        # disco#info: a contact sees the pep identity; a stranger nothing
        gw.send("<iq from='%s' to='%s' type='get' id='d1'><query xmlns='%s'/></iq>"
                % (BOTX, J, DISCO))
        st = gw.expect(re.compile("<iq from='%s' id='d1' to='%s' type='result'>.*</iq>"
                                  % (re.escape(J), re.escape(BOTX))))
        assert "<identity category='pubsub' type='pep'/>" in st, st
        gw.send("<iq from='eve@%s/e' to='%s' type='get' id='d2'><query xmlns='%s'/></iq>"
                % (GW, J, DISCO))
        gw.expect_seq("<iq from='%s' id='d2' to='eve@%s/e' type='error'><error type='cancel'>"
                      "<service-unavailable xmlns='%s'/></error></iq>" % (J, GW, STANZAS))


def test_remote_events_to_local_resources():
    """A remote PEP service's headline event to a local bare JID reaches
    every available resource with priority >= 0 (RFC 6121 8.5.2.1.1), not
    one with a negative priority; to a full JID only that resource; with
    no resource online it is dropped: not stored offline, not archived,
    no error back."""
    with server() as s:
        gw = Remote(s)
        a = join(s, "juliet", "a", None, worker=0)
        b = join(s, "juliet", "b", None, worker=1)
        c = join(s, "juliet", "c", None, worker=0, priority=-1)
        ev = ("<message from='%s' to='%s' type='headline' id='e1'><event xmlns='%s'>"
              "<items node='%s'><item id='r1'>%s</item></items></event></message>")
        gw.send(ev % (BOT, J, EVENT, TUNE_NS, TUNE))
        for im in (a, b):
            im.expect(ev % (BOT, J, EVENT, TUNE_NS, TUNE))
        c.quiet(0.5, want=any_event())
        gw.send(ev % (BOT, b.jid, EVENT, TUNE_NS, TUNE))
        b.expect(ev % (BOT, b.jid, EVENT, TUNE_NS, TUNE))
        a.quiet(0.3, want=any_event())
        for im in (a, b, c):
            im.close()
        time.sleep(0.3)
        gw.send(ev % (BOT, J, EVENT, TUNE_NS, TUNE))
        quiet(gw, 0.5)
        assert sql(s, "SELECT count(*) FROM offline_messages").strip() == "0"
        assert sql(s, "SELECT count(*) FROM mam_messages").strip() == "0"


def ecaps2(features, name="Remote2"):
    """XEP-0390 sha-256 ver and disco#info of features (section 4.1)."""
    def unit(x):
        return x.encode() + b"\x1f"
    feats = [DISCO] + features
    data = (b"".join(sorted(unit(f) for f in feats)) + b"\x1c" + unit("client")
            + unit("pc") + unit("") + unit(name) + b"\x1e" + b"\x1c" + b"\x1c")
    ver = base64.b64encode(hashlib.sha256(data).digest()).decode()
    inner = "<identity category='client' name='%s' type='pc'/>" % name + "".join(
        "<feature var='%s'/>" % f for f in feats)
    return ver, inner


def test_xep0390_and_query_bound():
    """A remote JID with XEP-0390 caps is asked node
    urn:xmpp:caps#sha-256.VER and gets the last item once verified;
    pep.remote_caps_queries_per_minute bounds the queries a worker sends:
    past it an unknown ver is not asked (one log line), its JID gets no
    events."""
    with server(workers=1, overrides={"pep.remote_caps_queries_per_minute": "1"}) as s:
        gw = Remote(s)
        roster(s, J, BOT, "both")
        roster(s, J, "ann@" + GW, "both")
        jp = join(s, "juliet", "pub", WANTS_TUNE)
        jp.expect(pub(jp, TUNE_NS, TUNE, "s1"))
        ver, inner = ecaps2(WANTS_TUNE)
        gw.send("<presence from='%s' to='%s'><c xmlns='urn:xmpp:caps'><hash "
                "xmlns='urn:xmpp:hashes:2' algo='sha-256'>%s</hash></c></presence>"
                % (BOTX, J, ver))
        qnode = "urn:xmpp:caps#sha-256.%s" % ver
        rx = re.compile(re.escape("<iq from='%s' to='%s' type='get' id='" % (J, BOTX))
                        + r"(pepr-2-1-[0-9a-f]+-[0-9a-f]{16})"
                        + re.escape("'><query xmlns='%s' node='%s'/></iq>" % (DISCO, qnode)))
        iq_id = rx.fullmatch(gw.expect(rx)).group(1)
        gw.send("<iq from='%s' to='%s' type='result' id='%s'><query xmlns='%s' node='%s'>"
                "%s</query></iq>" % (BOTX, J, iq_id, DISCO, qnode, inner))
        gw.expect(event_rx(BOTX, item_body(TUNE_NS, "s1", TUNE), delay=True))
        assert sql(s, "SELECT caps_algo FROM pep_remote_presence") == "0390:sha-256"
        # a second unknown ver within the minute: not asked
        ver2, _ = rcaps(WANTS_TUNE, name="Other")
        gw.send(rpresence("ann@%s/a" % GW, ver2))
        wait_for(lambda: "caps queries to other servers in a minute" in s.log_text(),
                 what="log line")
        quiet(gw, 0.5)
        jp.expect(pub(jp, TUNE_NS, TUNE2, "s2", iq_id="p2"))
        gw.expect(event_rx(BOTX, item_body(TUNE_NS, "s2", TUNE2), jp.jid))
        quiet(gw, 0.5)


# ---- review 13b: budgets and bounds of remote recipients (h-fixremote) ------

def test_remote_caps_budget_is_the_domains():
    """G3: new vers answered by JIDs of another server are charged to
    that server (caps_cache.account 'remote:DOMAIN',
    caps.max_new_per_domain_hour), never to the local account: past the
    domain's budget its next unknown ver is not asked (one log line), and
    the account's own new client is still asked for its caps."""
    ov = {"caps.max_new_per_account_hour": "2", "caps.max_new_per_domain_hour": "2"}
    with server(workers=1, overrides=ov) as s:
        gw = Remote(s)
        roster(s, J, BOT, "to")
        for i in range(2):
            ver, inner = rcaps(WANTS_TUNE, name="Mint%d" % i)
            bot_online(s, gw, ver, inner, frm=BOT + "/m%d" % i)
        assert sql(s, "SELECT string_agg(account, ' ') FROM caps_cache").strip() == \
            "remote:gw.localhost remote:gw.localhost"
        ver, _ = rcaps(WANTS_TUNE, name="Mint2")
        gw.send(rpresence(BOT + "/m2", ver))
        wait_for(lambda: "pep: caps of bot@gw.localhost/m2: 2 new caps vers from "
                 "gw.localhost cached in the last hour (caps.max_new_per_domain_hour): "
                 "%s not queried" % ver in s.log_text(), what="log line")
        quiet(gw, 0.5)
        # juliet's own new client: asked (join fails when it is not)
        join(s, "juliet", "new", ["urn:example:x+notify"])
        assert "max_new_per_account_hour" not in s.log_text()


def test_evicted_remote_entry_keeps_its_events():
    """G7: remote rows hold no entry of the shared caps table; when
    local churn evicts their ver, events still reach them (caps_cache's
    names decide), with no presence from them in between."""
    import test_caps as tc
    ov = {"caps.table_size": "16", "caps.max_changes_per_minute": "1000",
          "caps.max_new_per_account_hour": "1000"}
    with server(workers=1, overrides=ov) as s:
        gw = Remote(s)
        roster(s, J, BOT, "both")
        jp = join(s, "juliet", "pub", None)
        jp.expect(pub(jp, TUNE_NS, TUNE, "s1"))
        ver, inner = rcaps(WANTS_TUNE)
        bot_online(s, gw, ver, inner)
        gw.expect(event_rx(BOTX, item_body(TUNE_NS, "s1", TUNE), delay=True))
        r = tc.login(s, "romeo", "mint")
        before = metric(s, "xmppd_caps_verified")
        for i in range(17):
            v, inn = tc.made_ver("Mint%d" % i)
            r.send(tc.presence(v))
            q = "%s#%s" % (tc.NODE, v)
            tc.answer(r, tc.expect_query(r, q), q, inn)
            synced(r)
        # 18 vers verified in a table of 16: the bot's (held by nobody)
        # went first
        assert metric(s, "xmppd_caps_verified") == before + 17
        for n, (tune, item) in enumerate([(TUNE2, "s2"), (TUNE, "s3")]):
            jp.expect(pub(jp, TUNE_NS, tune, item, iq_id="p%d" % n))
            gw.expect(event_rx(BOTX, item_body(TUNE_NS, item, tune), jp.jid))
        quiet(gw, 0.3)


def test_remote_rows_expire_and_are_bounded_per_jid():
    """G5: one remote bare JID holds at most pep.max_remote_resources
    rows of an account (one log line, no events to the others); a row
    past pep.remote_presence_ttl gets no events until any presence from
    its full JID (here one without caps) renews it."""
    ov = {"pep.max_remote_resources": "2"}
    with server(workers=1, overrides=ov) as s:
        gw = Remote(s)
        roster(s, J, BOT, "both")
        jp = join(s, "juliet", "pub", None)
        jp.expect(pub(jp, TUNE_NS, TUNE, "s1"))
        ver, inner = rcaps(WANTS_TUNE)
        bot_online(s, gw, ver, inner)
        gw.expect(event_rx(BOTX, item_body(TUNE_NS, "s1", TUNE), delay=True))
        gw.send(rpresence(BOT + "/y", ver))
        gw.expect(event_rx(BOT + "/y", item_body(TUNE_NS, "s1", TUNE), delay=True))
        gw.send(rpresence(BOT + "/z", ver))
        wait_for(lambda: "remote recipients of juliet@localhost full "
                 "(pep.max_remote_resources of its bare JID 2): bot@gw.localhost/z "
                 "gets no events" in s.log_text(), what="log line")
        assert rows(s) == 2 and rows(s, BOT + "/z") == 0
        sql(s, "UPDATE pep_remote_presence SET updated_at = now() - interval '25 hours' "
            "WHERE full_jid = '%s'" % (BOT + "/y"))
        jp.expect(pub(jp, TUNE_NS, TUNE2, "s2", iq_id="p2"))
        gw.expect(event_rx(BOTX, item_body(TUNE_NS, "s2", TUNE2), jp.jid))
        quiet(gw, 0.5)
        gw.send("<presence from='%s/y' to='%s'/>" % (BOT, J))
        wait_for(lambda: sql(s, "SELECT count(*) FROM pep_remote_presence WHERE "
                             "updated_at > now() - interval '1 hour'").strip() == "2",
                 what="row renewed")
        jp.expect(pub(jp, TUNE_NS, TUNE, "s3", iq_id="p3"))
        for to in (BOTX, BOT + "/y"):
            gw.expect(event_rx(to, item_body(TUNE_NS, "s3", TUNE), jp.jid))
        quiet(gw, 0.3)


def test_stale_rows_probed():
    """Review 13c H2: a remote contact whose presence did not change for
    half of pep.remote_presence_ttl while the account stayed online is
    probed from the account's bare JID (worker 0's housekeeping, here
    its first turn after a restart of worker 0); its answer renews the
    row, so its events do not stop at the expiry."""
    import signal
    from harness import Client
    from imlib import connect_on
    with server(workers=2) as s:
        gw = Remote(s, client=connect_on(s, 1, make=lambda: Client(s.component_port)))
        roster(s, J, BOT, "both")
        jp = join(s, "juliet", "pub", None, worker=1)
        jp.expect(pub(jp, TUNE_NS, TUNE, "s1"))
        ver, inner = rcaps(WANTS_TUNE)
        bot_online(s, gw, ver, inner)
        gw.expect(event_rx(BOTX, item_body(TUNE_NS, "s1", TUNE), delay=True))
        sql(s, "UPDATE pep_remote_presence SET updated_at = now() - interval '13 hours'")
        # juliet's login probe is in the queue: only a new one counts
        gw._fill(time.monotonic() + 0.3)
        gw._split()
        gw.q = []
        old = s.status()["workers"][0]["pid"]
        os.kill(old, signal.SIGKILL)
        probe = "<presence from='%s' to='%s' type='probe'/>" % (J, BOT)
        assert gw.expect(probe) == probe
        wait_for(lambda: "pep: 1 contacts on other servers probed" in s.log_text(),
                 what="log line")
        gw.send(rpresence(BOTX, ver))
        wait_for(lambda: sql(s, "SELECT count(*) FROM pep_remote_presence WHERE "
                             "updated_at > now() - interval '1 hour'").strip() == "1",
                 what="row renewed by the answer")
        jp.expect(pub(jp, TUNE_NS, TUNE2, "s2", iq_id="p2"))
        gw.expect(event_rx(BOTX, item_body(TUNE_NS, "s2", TUNE2), jp.jid))


def test_remote_subscriber_gets_each_event_once():
    """G12: a remote full JID that is a presence-based recipient (caps
    with +notify) and also an explicit subscriber gets each event once."""
    with server(workers=2) as s:
        gw = Remote(s)
        roster(s, J, BOT, "both")
        jp = join(s, "juliet", "pub", None, worker=0)
        jp.expect(pub(jp, TUNE_NS, TUNE, "s1"))
        ver, inner = rcaps(WANTS_TUNE)
        bot_online(s, gw, ver, inner)
        gw.expect(event_rx(BOTX, item_body(TUNE_NS, "s1", TUNE), delay=True))
        gw.send("<iq from='%s' to='%s' type='set' id='rs1'>%s</iq>" % (
            BOTX, J, ps("<subscribe node='%s' jid='%s'/>" % (TUNE_NS, BOTX))))
        gw.expect("<iq from='%s' id='rs1' to='%s' type='result'>%s</iq>" % (
            J, BOTX, ps("<subscription node='%s' jid='%s' subscription='subscribed'/>"
                        % (TUNE_NS, BOTX))))
        gw.expect(event_rx(BOTX, item_body(TUNE_NS, "s1", TUNE), delay=True))
        jp.expect(pub(jp, TUNE_NS, TUNE2, "s2", iq_id="p2"))
        gw.expect(event_rx(BOTX, item_body(TUNE_NS, "s2", TUNE2), jp.jid))
        quiet(gw, 0.8)


def test_parked_resolutions_bounded_per_server():
    """G11: rows waiting for another's caps answer are bounded by
    pep.remote_parked_max, a quarter of it per remote server; refusals
    are logged once a minute, not once each."""
    with server(workers=1, overrides={"pep.remote_parked_max": "4"}) as s:
        gw = Remote(s)
        roster(s, J, BOT, "both")
        jp = join(s, "juliet", "pub", None)
        jp.expect(pub(jp, TUNE_NS, TUNE, "s1"))
        ver, inner = rcaps(WANTS_TUNE)
        gw.send(rpresence(BOTX, ver))
        iq_id = expect_query(gw, J, BOTX, ver)
        for r in ("a", "b", "c"):
            gw.send(rpresence(BOT + "/" + r, ver))
        wait_for(lambda: rows(s) == 4, what="rows")
        line = ("pep: caps of bot@gw.localhost/a not resolved: 1 wait (a quarter "
                "of pep.remote_parked_max for one server; 0 more refused")
        wait_for(lambda: line in s.log_text(), what="log line")
        time.sleep(0.3)
        assert s.log_text().count("not resolved:") == 1
        answer(gw, BOTX, J, iq_id, ver, inner)
        gw.expect(event_rx(BOTX, item_body(TUNE_NS, "s1", TUNE), delay=True))
        quiet(gw, 0.5)


# ---- over real s2s streams (fakeserver.py, test_s2s_in.Peer) ----------------

RX = "remote.example"           # test_s2s_in's certificates
ROMEO = "romeo@%s/x" % RX


def out_header():
    return ("<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
            "xmlns:stream='http://etherx.jabber.org/streams' "
            "xmlns:db='jabber:server:dialback' from='localhost' to='%s' "
            "version='1.0' xml:lang='en'>" % RX)


def outgoing_link(fake):
    """xmppd dials remote.example: STARTTLS, SASL EXTERNAL (as
    test_s2s_out.py external()), the restarted stream."""
    peer = fake.accept()
    assert peer.read_header() == out_header()
    peer.send_header(RX, features=STARTTLS_REQUIRED)
    peer.expect_next("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    peer.proceed_tls()
    assert peer.read_header() == out_header()
    peer.send_header(RX, features=features_auth(external=True, dialback=True))
    peer.expect_next("<auth xmlns='%s' mechanism='EXTERNAL'>%s</auth>"
                     % (NS_SASL, base64.b64encode(b"localhost").decode()))
    peer.send("<success xmlns='%s'/>" % NS_SASL)
    assert peer.read_header() == out_header()
    peer.send_header(RX, features=features_auth(external=False, dialback=True))
    return peer


def next_on(peer, pattern):
    """The next stanza other than presence (juliet's broadcasts and
    probes) on xmppd's stream matches pattern exactly: the match."""
    m = peer.read_until(pattern)
    skipped = m.string[:m.start()].decode()
    assert re.fullmatch(r"(<presence [^>]*?(/>|>.*?</presence>))*", skipped, re.S), \
        "before %r: %r" % (pattern, skipped)
    return m


def test_over_s2s_streams():
    """The same path on real s2s streams, exact XML: romeo@remote.example
    sends presence with caps over an incoming stream (SASL EXTERNAL);
    xmppd dials remote.example and asks for his caps from juliet's bare
    JID; his answer comes back on the incoming stream; the last item
    (with <delay/>) and a live event go out on the outgoing one; his
    cancel bounce ends it, with no error in return."""
    fake = FakeServer(cert=pki()[RX])
    dns = DnsLab(local=("example",))
    dns.srv("_xmpp-server._tcp.%s" % RX, "xmpp.%s" % RX, fake.port)
    dns.host("xmpp.%s" % RX, "127.0.0.1")
    dns.start()
    o = {"s2s.ca_file": pki()["ca"], "s2s.dns_servers": dns.server}
    try:
        with running(Server(workers=2, users=USERS, s2s=True, overrides=o)) as s:
            roster(s, J, "romeo@" + RX, "both")
            jp = join(s, "juliet", "pub", WANTS_TUNE, worker=0)
            jp.expect(pub(jp, TUNE_NS, TUNE, "s1"))
            inc = Peer(s)
            inc.authenticated()
            ver, inner = rcaps(WANTS_TUNE, name="S2S")
            inc.send("<presence from='%s' to='%s'><c xmlns='http://jabber.org/protocol/caps' "
                     "hash='sha-1' node='%s' ver='%s'/></presence>" % (ROMEO, J, CAPS_NODE, ver))
            peer = outgoing_link(fake)
            rx = query_rx(J, ROMEO, ver)
            iq_id = next_on(peer, rx.pattern).group(1).decode()
            inc.send("<iq from='%s' to='%s' type='result' id='%s'><query xmlns='%s' "
                     "node='%s#%s'>%s</query></iq>" % (ROMEO, J, iq_id, DISCO, CAPS_NODE,
                                                       ver, inner))
            last = event_rx(ROMEO, item_body(TUNE_NS, "s1", TUNE), delay=True)
            next_on(peer, last.pattern)
            jp.expect(pub(jp, TUNE_NS, TUNE2, "s2", iq_id="p2"))
            live = event_rx(ROMEO, item_body(TUNE_NS, "s2", TUNE2), jp.jid)
            ev_id = next_on(peer, live.pattern).group(1).decode()
            inc.send("<message from='%s' to='%s' type='error' id='%s'><error type='cancel'>"
                     "<item-not-found xmlns='%s'/></error></message>"
                     % (ROMEO, J, ev_id, STANZAS))
            wait_for(lambda: rows(s, ROMEO) == 0, what="row deleted")
            jp.expect(pub(jp, TUNE_NS, TUNE, "s3", iq_id="p3"))
            # his items request over s2s: the answer of a from/both
            # contact, on the outgoing stream
            inc.send("<iq from='%s' to='%s' type='get' id='g1'>%s</iq>"
                     % (ROMEO, J, ps("<items node='%s'/>" % TUNE_NS)))
            next_on(peer, re.escape("<iq from='%s' id='g1' to='%s' type='result'>%s</iq>"
                                    % (J, ROMEO, items_of(TUNE_NS, [("s3", TUNE)]))))
            # nothing more on the outgoing stream: a ping of ours shows
            # what comes next
            jp.send("<message to='romeo@%s' id='m1' type='chat'><body>hi</body></message>"
                    % RX)
            next_on(peer, r"<message to='romeo@remote\.example' id='m1' type='chat' "
                                r"from='juliet@localhost/pub'><body>hi</body>"
                                r"(<stanza-id [^>]*/>)?</message>")
    finally:
        fake.close()
        dns.stop()


if __name__ == "__main__":
    only = sys.argv[1:]
    run_tests([checked(t) for t in [
        test_remote_recipient_lifecycle, test_who_gets_nothing,
        test_poisoned_and_forged_answers, test_recipient_cap,
        test_remote_requester_access, test_remote_events_to_local_resources,
        test_xep0390_and_query_bound, test_over_s2s_streams,
        test_remote_caps_budget_is_the_domains,
        test_evicted_remote_entry_keeps_its_events,
        test_remote_rows_expire_and_are_bounded_per_jid,
        test_remote_subscriber_gets_each_event_once,
        test_parked_resolutions_bounded_per_server, test_stale_rows_probed]
        if not only or t.__name__ in only])

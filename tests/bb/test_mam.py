"""XEP-0313 message archive management (urn:xmpp:mam:2 and #extended),
XEP-0359 stanza ids and XEP-0059 paging, black box with exact XML:
archiving on both sides with a server-assigned <stanza-id/> (forged ones
removed, origin-id kept), what is not archived, paging forward and
backward to the end, the with/start/end/before-id/after-id/ids filters,
the form, errors for bad queries, preferences (always, never, roster),
offline messages archived once, two devices, metadata, disco on the
account, `xmppctl archive purge|expire`, retention expiry by the server,
account deletion, and slixmpp's xep_0313 plugin retrieving history; a
room's archive rows (written by hand until worker/muc.c drives them)
purged, expired by xmppctl and by the server.
Needs XMPPD_TEST_PGCONN.
"""
import asyncio
import datetime
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, Server, run_tests, wait_for  # noqa: E402

MAM = "urn:xmpp:mam:2"
RSM = "http://jabber.org/protocol/rsm"
SID = "urn:xmpp:sid:0"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
USERS = [("juliet@localhost", "pw1"), ("romeo@localhost", "pw2"),
         ("nurse@localhost", "pw3")]
PW = dict((j.split("@")[0], p) for j, p in USERS)

_RESULT = re.compile(r"<message to='[^']*' from='[^']*' id='(\d+)'><result "
                     r"xmlns='urn:xmpp:mam:2'(?: queryid='[^']*')? id='(\d+)'>.*?"
                     r"</forwarded></result></message>", re.S)


def login(s, user, resource, presence=True):
    c = Client(s.port)
    c.jid = c.login(user, PW[user], resource=resource)
    c.bare = "%s@localhost" % user
    if presence:
        c.send("<presence/>")
        c.read_until("<presence [^>]*/>|<presence [^>]*>.*?</presence>")
    return c


def stamp(archive_id):
    ms = int(archive_id) >> 21
    t = datetime.datetime.fromtimestamp(ms // 1000, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (ms % 1000)


def result_xml(c, queryid, archive_id, stored):
    """A result message exactly as the server sends it: stored is the
    archived message as sent on the wire (jabber:client, no xmlns)."""
    assert stored.startswith("<message ")
    return ("<message to='%s' from='%s' id='%s'><result xmlns='%s' queryid='%s' "
            "id='%s'><forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' "
            "stamp='%s'/><message xmlns='jabber:client' %s</forwarded></result></message>"
            % (c.jid, c.bare, archive_id, MAM, queryid, archive_id, stamp(archive_id),
               stored[len("<message "):]))


def fin_xml(c, iq_id, ids, complete, count=None):
    s = "<set xmlns='%s'" % RSM
    if ids or count is not None:
        s += ">"
        if ids:
            s += "<first>%s</first><last>%s</last>" % (ids[0], ids[-1])
        if count is not None:
            s += "<count>%d</count>" % count
        s += "</set>"
    else:
        s += "/>"
    return ("<iq from='%s' id='%s' to='%s' type='result'><fin xmlns='%s' complete='%s' "
            "stable='true'>%s</fin></iq>" % (c.bare, iq_id, c.jid, MAM,
                                             "true" if complete else "false", s))


def error_xml(c, iq_id, etype, cond, frm=None):
    return ("<iq from='%s' id='%s' to='%s' type='error'><error type='%s'><%s xmlns='%s'/>"
            "</error></iq>" % (frm or c.bare, iq_id, c.jid, etype, cond, STANZAS))


def form(**fields):
    out = "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>" \
          "<value>%s</value></field>" % MAM
    for k, v in fields.items():
        vals = v if isinstance(v, list) else [v]
        out += "<field var='%s'>%s</field>" % (k.replace("_", "-"),
                                               "".join("<value>%s</value>" % x for x in vals))
    return out + "</x>"


def rsm(mx=None, after=None, before=None):
    out = "<set xmlns='%s'>" % RSM
    if mx is not None:
        out += "<max>%d</max>" % mx
    if after is not None:
        out += "<after>%s</after>" % after
    if before is not None:
        out += "<before>%s</before>" % before if before else "<before/>"
    return out + "</set>"


_n = [0]


def query(c, inner="", queryid=None, to=None):
    """Send a query; return (the result messages, their archive ids, the
    answer IQ, the IQ id)."""
    _n[0] += 1
    iq_id = "q%d" % _n[0]
    queryid = queryid or "f%d" % _n[0]
    c.send("<iq type='set' id='%s'%s><query xmlns='%s' queryid='%s'>%s</query></iq>"
           % (iq_id, " to='%s'" % to if to else "", MAM, queryid, inner))
    got = c.read_until("\\A.*?<iq [^>]*id='%s'(?:[^>]*/>|.*?</iq>)" % iq_id)
    iq = re.search("<iq [^>]*id='%s'(?:[^>]*/>|.*?</iq>)$" % iq_id, got, re.S).group(0)
    results = _RESULT.findall(got)
    msgs = [m.group(0) for m in _RESULT.finditer(got)]
    for outer, inner_id in results:
        assert outer == inner_id, got
    return msgs, [r[1] for r in results], iq, iq_id


def chat(frm, to_jid, ident, body="hi", extra=""):
    frm.send("<message to='%s' id='%s' type='chat'><body>%s</body>%s</message>"
             % (to_jid, ident, body, extra))


def received(c, ident):
    return c.read_until("<message [^>]*id='%s'.*?</message>" % ident)


def stanza_id_of(msg, by):
    m = re.search("<stanza-id xmlns='%s' id='(\\d+)' by='%s'/>" % (SID, by), msg)
    assert m, msg
    return m.group(1)


def test_archive_quotes_and_backslashes():
    """A message whose text and attributes hold the characters PostgreSQL's
    array literals quote (" and \\), sent to a JID the server prepares
    (Romeo@LOCALHOST): each account's archive returns it exactly as that
    account saw it, with its own stanza-id."""
    with Server(workers=1, users=USERS) as s:
        j = login(s, "juliet", "r")
        r = login(s, "romeo", "o")
        body = 'say "hi" \\ twice: \\\\ "" \\"'
        chat(j, "Romeo@LOCALHOST", 'q"1\\', body,
             "<thread>t\\\"</thread>")
        got = r.read_until("<message [^>]*id='q[^']*'.*?</message>")
        assert "to='romeo@localhost'" in got and "twice" in got, got
        sid = stanza_id_of(got, "romeo@localhost")
        msgs, ids, iq, iq_id = query(r, queryid="rq")
        assert ids == [sid], (ids, msgs)
        assert msgs[0] == result_xml(r, "rq", sid, got), msgs[0]
        # Juliet's: the same message, with her archive id instead
        msgs, ids, iq, iq_id = query(j, queryid="jq")
        assert len(ids) == 1 and ids[0] != sid, (ids, msgs)
        mine = got.replace("id='%s' by='romeo@localhost'" % sid,
                           "id='%s' by='juliet@localhost'" % ids[0])
        assert mine != got
        assert msgs[0] == result_xml(j, "jq", ids[0], mine), msgs[0]


def test_archive_both_sides():
    with Server(workers=1, users=USERS) as s:
        j = login(s, "juliet", "r")
        r = login(s, "romeo", "o")
        # Not archived: chat states alone, errors, headlines, groupchat,
        # a no-store hint; all delivered.
        j.send("<message to='romeo@localhost/o' id='cs' type='chat'><active "
               "xmlns='http://jabber.org/protocol/chatstates'/></message>")
        j.send("<message to='romeo@localhost/o' id='hl' type='headline'><body>news</body></message>")
        j.send("<message to='romeo@localhost/o' id='ns' type='chat'><body>secret</body>"
               "<no-store xmlns='urn:xmpp:hints'/></message>")
        for ident in ("cs", "hl", "ns"):
            received(r, ident)
        # nor a message to the server itself (answered with an error)
        j.send("<message to='localhost' id='srv' type='chat'><body>hello server</body></message>")
        got = j.read_until("<message [^>]*id='srv'.*?</message>")
        assert "type='error'" in got and "<service-unavailable " in got, got
        # Archived, with forged stanza-ids (by one of our accounts)
        # removed, a foreign one and the origin-id kept.
        extra = ("<stanza-id xmlns='%s' id='forged1' by='romeo@localhost'/>"
                 "<stanza-id xmlns='%s' id='forged2' by='juliet@LOCALHOST'/>"
                 "<stanza-id xmlns='%s' id='theirs' by='muc.example.net'/>"
                 "<origin-id xmlns='%s' id='o-1'/>" % (SID, SID, SID, SID))
        chat(j, "romeo@localhost", "m1", "Wherefore art thou", extra)
        got = received(r, "m1")
        sid1 = stanza_id_of(got, "romeo@localhost")
        sent1 = ("<message to='romeo@localhost' id='m1' type='chat' from='%s'><body>"
                 "Wherefore art thou</body><stanza-id xmlns='%s' id='theirs' "
                 "by='muc.example.net'/><origin-id xmlns='%s' id='o-1'/></message>"
                 % (j.jid, SID, SID))
        want1 = sent1[:-len("</message>")] + \
            "<stanza-id xmlns='%s' id='%s' by='romeo@localhost'/></message>" % (SID, sid1)
        assert got == want1, got
        chat(r, j.jid, "m2", "By a name")
        got2 = received(j, "m2")
        sid2 = stanza_id_of(got2, "juliet@localhost")
        sent2 = "<message to='%s' id='m2' type='chat' from='%s'><body>By a name</body></message>" \
            % (j.jid, r.jid)
        assert got2 == sent2[:-len("</message>")] + \
            "<stanza-id xmlns='%s' id='%s' by='juliet@localhost'/></message>" % (SID, sid2), got2
        # Juliet's archive: her message as sent (no stanza-id of ours),
        # then Romeo's as she received it.
        msgs, ids, iq, iq_id = query(j, queryid="jq")
        assert len(ids) == 2 and ids[1] == sid2 and int(ids[0]) < int(ids[1]), (ids, msgs)
        # (the sender's copy carries the sender's own archive id, as a
        # sent carbon would)
        def with_sid(stored, sid, by):
            return stored[:-len("</message>")] + \
                "<stanza-id xmlns='%s' id='%s' by='%s'/></message>" % (SID, sid, by)
        assert msgs[0] == result_xml(j, "jq", ids[0], with_sid(sent1, ids[0], j.bare)), msgs[0]
        assert msgs[1] == result_xml(j, "jq", sid2, got2), msgs[1]
        assert iq == fin_xml(j, iq_id, ids, True), iq
        # Romeo's: the same two, the first with the id he was given.
        msgs, ids, iq, iq_id = query(r, queryid="rq")
        assert ids[0] == sid1 and len(ids) == 2, (ids, msgs)
        assert msgs[0] == result_xml(r, "rq", sid1, want1), msgs[0]
        assert msgs[1] == result_xml(r, "rq", ids[1], with_sid(sent2, ids[1], r.bare)), msgs[1]
        assert iq == fin_xml(r, iq_id, ids, True), iq
        # A message to oneself is archived once.
        chat(j, "juliet@localhost/r", "self", "note to self")
        got = received(j, "self")
        sid = stanza_id_of(got, "juliet@localhost")
        _, ids, _, _ = query(j, form(**{"with": "juliet@localhost"}))
        assert ids == [sid], ids


def test_paging_both_ways():
    with Server(workers=1, users=USERS, overrides={"mam.max_page": "5"}) as s:
        j = login(s, "juliet", "r")
        r = login(s, "romeo", "o")
        for i in range(7):
            chat(j, "romeo@localhost/o", "p%d" % i, "line %d" % i)
        for i in range(7):
            received(r, "p%d" % i)
        msgs, all_ids, iq, _ = query(j, rsm(mx=10))
        # mam.max_page cuts the page to 5: not complete
        assert len(all_ids) == 5 and iq.endswith("complete='false' stable='true'><set xmlns='%s'>"
                                                 "<first>%s</first><last>%s</last></set></fin></iq>"
                                                 % (RSM, all_ids[0], all_ids[4])), iq
        _, rest, _, _ = query(j, rsm(mx=5, after=all_ids[4]))
        ids = all_ids + rest
        assert len(ids) == 7 and ids == sorted(ids, key=int), ids
        for k, m in enumerate(msgs):
            assert "<body>line %d</body>" % k in m, m
        # forward, 3 at a time, to the end
        pages = []
        after = None
        for want, complete in ((ids[0:3], False), (ids[3:6], False), (ids[6:7], True)):
            _, got, iq, iq_id = query(j, rsm(mx=3, after=after))
            assert got == want, (got, want)
            assert iq == fin_xml(j, iq_id, want, complete), iq
            after = got[-1]
            pages.append(got)
        # backward from the end (empty <before/>), to the start
        before = ""
        for want, complete in ((ids[4:7], False), (ids[1:4], False), (ids[0:1], True)):
            _, got, iq, iq_id = query(j, rsm(mx=3, before=before))
            assert got == want, (got, want)
            assert iq == fin_xml(j, iq_id, want, complete), iq
            before = got[0]
        # flipped page: same page, newest first
        _, got, iq, iq_id = query(j, rsm(mx=3, before="") + "<flip-page/>")
        assert got == ids[6:3:-1], got
        assert iq == fin_xml(j, iq_id, ids[4:7], False), iq
        # max 0: the count only
        msgs, got, iq, iq_id = query(j, rsm(mx=0))
        assert msgs == [] and iq == fin_xml(j, iq_id, [], True, count=7), iq
        # after past the end: empty, complete
        _, got, iq, iq_id = query(j, rsm(mx=3, after=ids[6]))
        assert got == [] and iq == fin_xml(j, iq_id, [], True), iq
        # unknown ids: item-not-found
        for bad in (rsm(after="123"), rsm(before="nope"), rsm(after=str(int(ids[0]) + 1))):
            _, got, iq, iq_id = query(j, bad)
            assert got == [] and iq == error_xml(j, iq_id, "cancel", "item-not-found"), iq
        # an id in another account's archive is not in this one
        _, rids, _, _ = query(r, rsm(mx=1))
        _, got, iq, iq_id = query(j, rsm(after=rids[0]))
        assert iq == error_xml(j, iq_id, "cancel", "item-not-found"), iq


def test_filters_and_errors():
    with Server(workers=1, users=USERS) as s:
        j = login(s, "juliet", "r")
        r = login(s, "romeo", "o")
        n = login(s, "nurse", "n")
        chat(j, "romeo@localhost/o", "a0")         # to Romeo's full JID
        received(r, "a0")
        chat(j, "romeo@localhost", "a1")           # to his bare JID
        received(r, "a1")
        chat(j, "nurse@localhost/n", "a2")
        received(n, "a2")
        chat(r, j.jid, "a3")
        received(j, "a3")
        chat(n, j.jid, "a4")
        received(j, "a4")
        r2 = login(s, "romeo", "other")
        chat(r2, j.jid, "a5")
        received(j, "a5")
        _, ids, _, _ = query(j)
        assert len(ids) == 6, ids
        # with, bare: every resource of the contact
        _, got, iq, iq_id = query(j, form(**{"with": "romeo@localhost"}))
        assert got == [ids[0], ids[1], ids[3], ids[5]], got
        assert iq == fin_xml(j, iq_id, got, True), iq
        # with, full: that resource only
        _, got, _, _ = query(j, form(**{"with": "romeo@localhost/o"}))
        assert got == [ids[0], ids[3]], got
        _, got, _, _ = query(j, form(**{"with": "Nurse@LocalHost"}))
        assert got == [ids[2], ids[4]], got
        # start / end (inclusive, by the archive's time)
        ms = [int(i) >> 21 for i in ids]
        _, got, _, _ = query(j, form(start=stamp(ids[2])))
        assert got == [i for i, m in zip(ids, ms) if m >= ms[2]], got
        _, got, _, _ = query(j, form(end=stamp(ids[2])))
        assert got == [i for i, m in zip(ids, ms) if m <= ms[2]], got
        _, got, _, _ = query(j, form(start="2000-01-01T00:00:00+02:00", end="2000-02-01T00:00:00Z"))
        assert got == [], got
        # #extended: after-id / before-id (exclusive), ids
        _, got, iq, iq_id = query(j, form(after_id=ids[1], before_id=ids[4]))
        assert got == ids[2:4] and iq == fin_xml(j, iq_id, ids[2:4], True), (got, iq)
        _, got, _, _ = query(j, form(ids=[ids[3], ids[0]]))
        assert got == [ids[0], ids[3]], got
        _, got, _, _ = query(j, form(ids=[ids[3]], **{"with": "nurse@localhost"}))
        assert got == [], got
        for bad in (form(ids=[ids[0], "424242"]), form(after_id="x"), form(before_id="1")):
            _, got, iq, iq_id = query(j, bad)
            assert iq == error_xml(j, iq_id, "cancel", "item-not-found"), iq
        # bad forms: bad-request; unknown fields: feature-not-implemented
        bad_type = "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'>" \
                   "<value>urn:xmpp:mam:1</value></field></x>"
        for bad in (bad_type, form(start="yesterday"), form(end="2010-13-01T00:00:00Z"),
                    form(**{"with": "@bad"}), rsm(after=""), "<set xmlns='%s'><max>x</max></set>" % RSM):
            _, got, iq, iq_id = query(j, bad)
            assert iq == error_xml(j, iq_id, "modify", "bad-request"), (bad, iq)
        for bad in (form(**{"include-groupchat": "true"}), form(fulltext="thou"),
                    "<set xmlns='%s'><index>2</index></set>" % RSM):
            _, got, iq, iq_id = query(j, bad)
            assert iq == error_xml(j, iq_id, "cancel", "feature-not-implemented"), (bad, iq)
        # another account's archive: forbidden
        _, got, iq, iq_id = query(j, to="romeo@localhost")
        assert got == [] and iq == error_xml(j, iq_id, "auth", "forbidden", frm="romeo@localhost"), iq
        # the form on get
        j.send("<iq type='get' id='form1'><query xmlns='%s'/></iq>" % MAM)
        got = j.read_until("<iq [^>]*id='form1'.*?</iq>")
        assert got == (
            "<iq from='juliet@localhost' id='form1' to='%s' type='result'><query xmlns='%s'>"
            "<x xmlns='jabber:x:data' type='form'><field type='hidden' var='FORM_TYPE'>"
            "<value>%s</value></field><field type='jid-single' var='with'/>"
            "<field type='text-single' var='start'/><field type='text-single' var='end'/>"
            "<field type='text-single' var='before-id'/><field type='text-single' var='after-id'/>"
            "<field type='list-multi' var='ids'><validate xmlns='http://jabber.org/protocol/"
            "xdata-validate' datatype='xs:string'><open/></validate></field></x></query></iq>"
            % (j.jid, MAM, MAM)), got
        # metadata (#extended)
        j.send("<iq type='get' id='md'><metadata xmlns='%s'/></iq>" % MAM)
        got = j.read_until("<iq [^>]*id='md'.*?</iq>")
        assert got == ("<iq from='juliet@localhost' id='md' to='%s' type='result'><metadata "
                       "xmlns='%s'><start id='%s' timestamp='%s'/><end id='%s' timestamp='%s'/>"
                       "</metadata></iq>" % (j.jid, MAM, ids[0], stamp(ids[0]), ids[5],
                                             stamp(ids[5]))), got
        # disco#info on the domain (as profanity asks) ...
        j.send("<iq type='get' id='d0' to='localhost'><query "
               "xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        got = j.read_until("<iq [^>]*id='d0'.*?</iq>")
        assert ("<feature var='urn:xmpp:mam:2'/><feature var='urn:xmpp:mam:2#extended'/>"
                "<feature var='urn:xmpp:sid:0'/>") in got, got
        # ... and on the account's bare JID (as Conversations asks)
        j.send("<iq type='get' id='d1' to='juliet@localhost'><query "
               "xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        got = j.read_until("<iq [^>]*id='d1'.*?</iq>")
        assert got == ("<iq from='juliet@localhost' id='d1' to='%s' type='result'><query "
                       "xmlns='http://jabber.org/protocol/disco#info'><identity category='account' "
                       "type='registered'/><identity category='pubsub' type='pep'/><feature "
                       "var='urn:xmpp:mam:2'/><feature var='urn:xmpp:mam:2#extended'/><feature "
                       "var='urn:xmpp:sid:0'/>%s</query></iq>" % (j.jid, PEP_FEATURES)), got


# what PEP (worker/pep.c) adds to the account's disco#info, after MAM's
PEP_FEATURES = "".join("<feature var='http://jabber.org/protocol/pubsub%s'/>" % f for f in [
    ""] + ["#" + x for x in (
        "access-presence auto-create auto-subscribe config-node config-node-max "
        "create-and-configure create-nodes delete-items delete-nodes "
        "filtered-notifications item-ids last-published manage-subscriptions member-affiliation "
        "modify-affiliations multi-items outcast-affiliation persistent-items "
        "presence-notifications presence-subscribe publish "
        "publish-options purge-nodes retract-items retrieve-affiliations retrieve-default "
        "retrieve-items retrieve-subscriptions subscribe pubsub-on-a-jid rsm").split()])
# ... and pep_compat.c (XEP-0402 compat, XEP-0398)
PEP_FEATURES += ("<feature var='urn:xmpp:bookmarks:1#compat'/>"
                 "<feature var='urn:xmpp:bookmarks:1#compat-pep'/>"
                 "<feature var='urn:xmpp:pep-vcard-conversion:0'/>")


def error_text_xml(c, iq_id, etype, cond, text):
    return ("<iq from='%s' id='%s' to='%s' type='error'><error type='%s'><%s xmlns='%s'/>"
            "<text xmlns='%s'>%s</text></error></iq>"
            % (c.bare, iq_id, c.jid, etype, cond, STANZAS, STANZAS, text))


def test_bounded_queries():
    """mam.max_query_ids: more ids in one query get policy-violation
    with a text; mam.max_scan_rows: a count-only query counts at most
    that many (XEP-0059 2.7: approximate), and `with` a full JID reads at
    most that many of the conversation: a page found full before is
    answered, one not found gets resource-constraint with a text."""
    with Server(workers=1, users=USERS,
                overrides={"mam.max_query_ids": "3", "mam.max_scan_rows": "100"}) as s:
        j = login(s, "juliet", "r")
        r = login(s, "romeo", "o")
        n = login(s, "nurse", "n")
        for i in range(104):
            chat(j, "romeo@localhost/o", "b%d" % i, "line %d" % i)
        received(r, "b103")
        chat(j, "nurse@localhost/n", "c0")
        received(n, "c0")
        chat(j, "romeo@localhost/other", "c1")      # offline resource: bare
        _, ids, _, _ = query(j, rsm(mx=3))
        assert len(ids) == 3, ids
        # ids: 3 are answered, 4 refused with the reason
        _, got, iq, iq_id = query(j, form(ids=ids))
        assert got == ids and iq == fin_xml(j, iq_id, ids, True), (got, iq)
        _, got, iq, iq_id = query(j, form(ids=ids + ["1"]))
        assert got == [] and iq == error_text_xml(
            j, iq_id, "modify", "policy-violation", "A query names at most 3 archive ids"), iq
        # counts: exact below the cap, the cap above it
        msgs, got, iq, iq_id = query(j, rsm(mx=0))
        assert msgs == [] and iq == fin_xml(j, iq_id, [], True, count=100), iq
        msgs, got, iq, iq_id = query(j, form(**{"with": "nurse@localhost"}) + rsm(mx=0))
        assert msgs == [] and iq == fin_xml(j, iq_id, [], True, count=1), iq
        msgs, got, iq, iq_id = query(j, form(**{"with": "nurse@localhost/n"}) + rsm(mx=0))
        assert msgs == [] and iq == fin_xml(j, iq_id, [], True, count=1), iq
        msgs, got, iq, iq_id = query(j, form(**{"with": "nobody@localhost"}) + rsm(mx=0))
        assert msgs == [] and iq == fin_xml(j, iq_id, [], True, count=0), iq
        # with a full JID: the page is found within the rows read
        msgs, got, iq, iq_id = query(j, form(**{"with": "romeo@localhost/o"}) + rsm(mx=5))
        assert got[:3] == ids and len(got) == 5, got
        assert iq == fin_xml(j, iq_id, got, False), iq
        for k, m in enumerate(msgs):
            assert "<body>line %d</body>" % k in m, m
        # ... a resource with nothing in the first 100 rows: refused
        _, got, iq, iq_id = query(j, form(**{"with": "romeo@localhost/other"}))
        assert got == [] and iq == error_text_xml(
            j, iq_id, "wait", "resource-constraint",
            "Too many messages to search: ask with the bare JID, or with "
            "start and end"), iq
        # ... found in the last 100: a page, not claimed complete
        _, got, iq, iq_id = query(j, form(**{"with": "romeo@localhost/other"}) + rsm(before=""))
        assert len(got) == 1 and iq == fin_xml(j, iq_id, got, False), iq
        # ... and below the cap, complete
        _, got, iq, iq_id = query(j, form(**{"with": "nurse@localhost/n"}))
        assert len(got) == 1 and iq == fin_xml(j, iq_id, got, True), iq
        # the bare JID: an index range, never refused
        _, got, iq, iq_id = query(j, form(**{"with": "romeo@localhost"}) + rsm(mx=1, before=""))
        assert len(got) == 1 and iq == fin_xml(j, iq_id, got, False), iq


def prefs(c, iq_id, default=None, always=(), never=()):
    if default is None:
        c.send("<iq type='get' id='%s'><prefs xmlns='%s'/></iq>" % (iq_id, MAM))
    else:
        c.send("<iq type='set' id='%s'><prefs xmlns='%s' default='%s'><always>%s</always>"
               "<never>%s</never></prefs></iq>"
               % (iq_id, MAM, default, "".join("<jid>%s</jid>" % x for x in always),
                  "".join("<jid>%s</jid>" % x for x in never)))
    return c.read_until("<iq [^>]*id='%s'(?:[^>]*/>|.*?</iq>)" % iq_id)


def prefs_xml(c, iq_id, default, always=(), never=()):
    def lst(name, jids):
        if not jids:
            return "<%s/>" % name
        return "<%s>%s</%s>" % (name, "".join("<jid>%s</jid>" % x for x in jids), name)
    return ("<iq from='%s' id='%s' to='%s' type='result'><prefs xmlns='%s' default='%s'>%s%s"
            "</prefs></iq>" % (c.bare, iq_id, c.jid, MAM, default, lst("always", always),
                               lst("never", never)))


def test_preferences():
    with Server(workers=1, users=USERS) as s:
        j = login(s, "juliet", "r")
        r = login(s, "romeo", "o")
        n = login(s, "nurse", "n")
        assert prefs(j, "g1") == prefs_xml(j, "g1", "always"), "default"
        # default never, Romeo always
        got = prefs(j, "s1", "never", always=["romeo@localhost"])
        assert got == prefs_xml(j, "s1", "never", always=["romeo@localhost"]), got
        assert prefs(j, "g2") == prefs_xml(j, "g2", "never", always=["romeo@localhost"])
        chat(r, j.jid, "x1")
        received(j, "x1")
        chat(n, j.jid, "x2")
        received(j, "x2")
        chat(j, "nurse@localhost/n", "x3")
        received(n, "x3")
        chat(j, "romeo@localhost/o", "x4")
        received(r, "x4")
        msgs, ids, _, _ = query(j)
        assert len(msgs) == 2 and "id='x1'" in msgs[0] and "id='x4'" in msgs[1], msgs
        # the other side's archive follows its own preferences (always)
        _, ids, _, _ = query(n)
        assert len(ids) == 2, ids
        # default always, never the nurse's full JID: her other resources
        # and Romeo are archived
        got = prefs(j, "s2", "always", never=["nurse@localhost/n"])
        assert got == prefs_xml(j, "s2", "always", never=["nurse@localhost/n"]), got
        chat(n, j.jid, "y1")
        received(j, "y1")
        n2 = login(s, "nurse", "m")
        chat(n2, j.jid, "y2")
        received(j, "y2")
        msgs, _, _, _ = query(j, form(**{"with": "nurse@localhost"}))
        assert len(msgs) == 1 and "id='y2'" in msgs[0], msgs
        # roster: only contacts in the roster
        j.send("<iq type='set' id='ro'><query xmlns='jabber:iq:roster'><item "
               "jid='romeo@localhost'/></query></iq>")
        j.read_until("<iq [^>]*id='ro'[^>]*/>")
        got = prefs(j, "s3", "roster")
        assert got == prefs_xml(j, "s3", "roster"), got
        chat(r, j.jid, "z1")
        received(j, "z1")
        chat(n, j.jid, "z2")
        received(j, "z2")
        msgs, _, _, _ = query(j, form(start=stamp(int(query(j, rsm(mx=1, before=""))[1][0]))))
        assert [m for m in msgs if "id='z" in m] and all("id='z2'" not in m for m in msgs), msgs
        assert any("id='z1'" in m for m in msgs), msgs
        # bad preferences
        j.send("<iq type='set' id='s4'><prefs xmlns='%s' default='sometimes'/></iq>" % MAM)
        got = j.read_until("<iq [^>]*id='s4'.*?</iq>")
        assert got == error_xml(j, "s4", "modify", "bad-request"), got
        j.send("<iq type='get' id='s5' to='romeo@localhost'><prefs xmlns='%s'/></iq>" % MAM)
        got = j.read_until("<iq [^>]*id='s5'.*?</iq>")
        assert got == error_xml(j, "s5", "auth", "forbidden", frm="romeo@localhost"), got


def test_offline_and_two_devices():
    with Server(workers=2, users=USERS) as s:
        j = login(s, "juliet", "r")
        chat(j, "romeo@localhost", "off1", "while you slept")
        r = login(s, "romeo", "o", presence=False)
        r.send("<presence/>")
        got = received(r, "off1")
        sid = stanza_id_of(got, "romeo@localhost")
        assert "<delay xmlns='urn:xmpp:delay' from='localhost'" in got, got
        # two devices: one message to the bare JID, one copy each, one
        # stanza-id, archived once
        r2 = login(s, "romeo", "phone")
        chat(j, "romeo@localhost", "both", "to both")
        a = received(r, "both")
        b = received(r2, "both")
        assert a == b, (a, b)
        sid2 = stanza_id_of(a, "romeo@localhost")

        def archived():
            _, ids, _, _ = query(r2)
            return ids if len(ids) >= 2 else None
        ids = wait_for(archived, what="archive written")
        assert ids == [sid, sid2], ids


def test_ctl_purge_expire_and_account_deletion():
    with Server(workers=1, users=USERS) as s:
        j = login(s, "juliet", "r")
        r = login(s, "romeo", "o")
        for i in range(3):
            chat(j, "romeo@localhost/o", "c%d" % i)
            received(r, "c%d" % i)
        old = (946684800000 << 21) | 1      # 2000-01-01
        s.db.psql("INSERT INTO mam_messages SELECT id, %d, 'nurse@localhost', "
                  "'nurse@localhost/n', false, '<message from=''nurse@localhost/n''>"
                  "<body>old</body></message>' FROM accounts WHERE username = 'juliet'"
                  % old, conninfo=s.db.conninfo)
        _, ids, _, _ = query(j)
        assert len(ids) == 4 and ids[0] == str(old), ids
        res = s.ctl_config("archive", "expire", "--before", "2001-01-01")
        assert res.stdout == "1 messages older than 2001-01-01 deleted from the archives\n", res.stdout
        _, ids, _, _ = query(j)
        assert len(ids) == 3, ids
        res = s.ctl_config("archive", "expire", "--before", "someday", check=False)
        assert res.returncode == 1 and res.stderr.startswith("xmppctl: archive expire: not a date"), \
            res.stderr
        res = s.ctl_config("archive", "purge", "romeo@localhost")
        assert res.stdout == "3 messages deleted from the archive of romeo@localhost\n", res.stdout
        msgs, ids, iq, iq_id = query(r)
        assert ids == [] and iq == fin_xml(r, iq_id, [], True), iq
        res = s.ctl_config("archive", "purge", "tybalt@localhost", check=False)
        assert res.returncode == 1 and res.stderr == "xmppctl: no account tybalt@localhost\n", res.stderr
        # deleting the account deletes its archive
        res = s.ctl_config("user", "del", "juliet@localhost")
        count = s.db.psql("SELECT count(*) FROM mam_messages", conninfo=s.db.conninfo)
        assert count.strip() == "0", count


def test_retention_expiry():
    with Server(workers=2, users=USERS) as s:
        j = login(s, "juliet", "r")
        r = login(s, "romeo", "o")
        chat(j, "romeo@localhost/o", "new")
        received(r, "new")
        old = (946684800000 << 21) | 7
        s.db.psql("INSERT INTO mam_messages SELECT id, %d + n, 'nurse@localhost', "
                  "'nurse@localhost/n', false, '<message><body>old</body></message>' "
                  "FROM accounts, generate_series(0, 2499) n WHERE username = 'juliet'"
                  % old, conninfo=s.db.conninfo)
        s.write_config("mam {\n retention_days = 30\n}\n")
        os.kill(s.master_pid, signal.SIGHUP)

        def left():
            n = s.db.psql("SELECT count(*) FROM mam_messages", conninfo=s.db.conninfo).strip()
            return n == "2" and n
        wait_for(left, timeout=20, what="old messages expired")
        _, ids, _, _ = query(j)
        assert len(ids) == 1, ids
        assert "archive expiry: " in s.log_text()


def room_rows(s, room, first_id, n, nick="witch"):
    """n archive rows of room (made here) from first_id on, by hand: the
    room's side of the archive is written by worker/muc_archive.c."""
    s.db.psql("INSERT INTO muc_rooms (service, name, config, created_by) "
              "VALUES ('conference.localhost', '%s', '', 'juliet@localhost') "
              "ON CONFLICT DO NOTHING" % room, conninfo=s.db.conninfo)
    s.db.psql("INSERT INTO muc_messages SELECT r.id, %d + n, '%s', "
              "'juliet@localhost', '<message from=''%s@conference.localhost/%s'' "
              "type=''groupchat''><body>old</body></message>' FROM muc_rooms r, "
              "generate_series(0, %d) n WHERE r.name = '%s'"
              % (first_id, nick, room, nick, n - 1, room), conninfo=s.db.conninfo)


def room_count(s, room):
    return s.db.psql("SELECT count(*) FROM muc_messages m JOIN muc_rooms r ON "
                     "r.id = m.room_id WHERE r.name = '%s'" % room,
                     conninfo=s.db.conninfo).strip()


def test_room_archive_ctl_and_expiry():
    """A room's archive (muc_messages) goes with `xmppctl archive purge
    ROOM` and `archive expire`, and the server expires it by itself past
    muc.archive_retention_days, 1000 rows at a time, leaving the recent
    ones and the personal archives alone."""
    off = "mam {\n retention_days = 0\n}\nmuc {\n archive_retention_days = 0\n}\n"
    with Server(workers=2, users=USERS, config_text=off) as s:
        old = (946684800000 << 21) | 7          # 2000-01-01
        later = (1104537600000 << 21) | 7       # 2005-01-01
        now = (int(time.time() * 1000) << 21) | 7
        room_rows(s, "coven", later, 2500)
        room_rows(s, "coven", now, 2)
        room_rows(s, "other", old, 3)
        room_rows(s, "third", old, 1)
        res = s.ctl_config("archive", "purge", "other@conference.localhost")
        assert res.stdout == ("3 messages deleted from the archive of room "
                              "other@conference.localhost\n"), res.stdout
        assert room_count(s, "other") == "0" and room_count(s, "coven") == "2502"
        res = s.ctl_config("archive", "purge", "nobody@conference.localhost", check=False)
        assert res.returncode == 1 and \
            res.stderr == "xmppctl: no account nobody@conference.localhost\n", res.stderr
        res = s.ctl_config("archive", "expire", "--before", "2001-01-01")
        assert res.stdout == "1 messages older than 2001-01-01 deleted from the archives\n", \
            res.stdout
        assert room_count(s, "third") == "0" and room_count(s, "coven") == "2502"
        s.write_config("muc {\n archive_retention_days = 30\n}\n"
                       "mam {\n retention_days = 0\n}\n")
        os.kill(s.master_pid, signal.SIGHUP)

        def left():
            n = room_count(s, "coven")
            return n == "2" and n
        wait_for(left, timeout=20, what="old room messages expired")
        assert "room messages older than 30 days deleted" in s.log_text()


def test_slixmpp_history():
    """slixmpp's xep_0313 plugin (with xep_0059 paging, 5 a page) gets
    the whole conversation, in order, both ways; xep_0030 finds the
    feature on the account's bare JID."""
    import ssl
    import slixmpp
    with Server(workers=2, users=USERS) as s:
        j = login(s, "juliet", "r")
        r = login(s, "romeo", "o")
        for i in range(12):
            chat(j, "romeo@localhost/o", "h%d" % i, "history %d" % i)
        for i in range(12):
            received(r, "h%d" % i)
        out = {}

        class Bot(slixmpp.ClientXMPP):
            def __init__(self):
                super().__init__("romeo@localhost/slix", PW["romeo"],
                                 sasl_mech="SCRAM-SHA-256")
                self.ssl_context.check_hostname = False
                self.ssl_context.verify_mode = ssl.CERT_NONE
                fm = self["feature_mechanisms"]
                default_creds = fm.sasl_callback

                def creds(required, optional):
                    got = default_creds(required, optional)
                    if "channel_binding" in got:
                        got["channel_binding"] = None
                    return got
                fm.sasl_callback = creds
                for p in ("xep_0030", "xep_0059", "xep_0313"):
                    self.register_plugin(p)
                self.done = asyncio.Event()
                self.add_event_handler("session_start", self.start)

            async def start(self, _):
                try:
                    info = await self["xep_0030"].get_info(jid="romeo@localhost", timeout=10)
                    out["features"] = info["disco_info"]["features"]
                    for reverse in (False, True):
                        bodies = []
                        async for msg in self["xep_0313"].iterate(
                                jid=slixmpp.JID("romeo@localhost"),
                                with_jid=slixmpp.JID("juliet@localhost"),
                                reverse=reverse, rsm={"max": 5}):
                            bodies.append(msg["mam_result"]["forwarded"]["stanza"]["body"])
                        out["reverse" if reverse else "forward"] = bodies
                except Exception as e:  # noqa: BLE001
                    out["error"] = repr(e)
                self.done.set()

        async def run():
            bot = Bot()
            bot.connect(("127.0.0.1", s.port))
            try:
                await asyncio.wait_for(bot.done.wait(), 30)
            finally:
                bot.abort()

        asyncio.run(run())
        assert "error" not in out, out
        assert "urn:xmpp:mam:2" in out.get("features", ()), out
        want = ["history %d" % i for i in range(12)]
        assert out.get("forward") == want, out
        assert out.get("reverse") == want[::-1], out


def test_archive_waits_for_postgresql():
    """PostgreSQL down: messages are delivered with their stanza-ids at
    once; the archive rows wait in the worker (bounded by mam.queue_rows,
    what is past it counted in the log) and are written when it is
    back."""
    from test_pgdown import PgProxy, pg_target, proxied_server, running
    proxy = PgProxy(pg_target()).start()
    try:
        s = proxied_server(proxy, workers=1, users=USERS, overrides={"mam.queue_rows": "100"})
        with running(s):
            wait_for(lambda: "database link up" in s.log_text(), what="link up")
            j = login(s, "juliet", "r")
            r = login(s, "romeo", "o")
            mark = len(s.log_text())
            proxy.stop()
            wait_for(lambda: "database unavailable" in s.log_text()[mark:], what="link down")
            sids = []
            for i in range(60):     # 120 rows: 100 held, 20 not archived
                chat(j, "romeo@localhost/o", "d%d" % i, "down %d" % i)
                sids.append(stanza_id_of(received(r, "d%d" % i), "romeo@localhost"))
            wait_for(lambda: re.search(r"error: archive: \d+ messages delivered but not archived "
                                       r"\(too many waiting; 100 rows waiting for PostgreSQL, "
                                       r"mam.queue_rows = 100\)", s.log_text()[mark:]),
                     what="the loud line")
            assert re.search(r"warn: archive: \d+ messages wait for PostgreSQL", s.log_text()[mark:])
            proxy.start()

            def archived():
                try:
                    _, ids, iq, _ = query(r)
                except AssertionError:
                    return None
                return ids if "type='result'" in iq and len(ids) == 50 else None
            ids = wait_for(archived, timeout=30, what="archive written after the outage")
            assert ids == sids[:50], (ids, sids)
            # the same in /metrics (xmppctl stats --openmetrics)

            def metric(name):
                out = s.ctl("stats", "--openmetrics").stdout
                return sum(float(v) for v in re.findall(
                    r"^%s\{worker=\"\d+\"\} (\S+)$" % name, out, re.M))
            wait_for(lambda: metric("xmppd_mam_waiting_messages") == 0, what="nothing waits")
            assert metric("xmppd_mam_archived_messages_total") == 100
            assert metric("xmppd_mam_dropped_messages_total") == 20
    finally:
        proxy.close()


def test_with_carbons_two_devices():
    """XEP-0280 with XEP-0313: juliet's phone and laptop both have carbons
    on.  A message to the phone reaches the laptop as a received carbon
    with the same <stanza-id/>; a message the phone sends reaches the
    laptop as a sent carbon carrying juliet's archive id of it.  The
    laptop's archive query then returns exactly those two ids: nothing
    twice, nothing missing."""
    carbons = "urn:xmpp:carbons:2"
    fwd = "urn:xmpp:forward:0"
    with Server(workers=2, users=USERS) as s:
        phone = login(s, "juliet", "phone")
        laptop = login(s, "juliet", "laptop")
        for c in (phone, laptop):
            c.send("<iq type='set' id='cb'><enable xmlns='%s'/></iq>" % carbons)
            c.read_until("<iq [^>]*id='cb'[^>]*/>")
        r = login(s, "romeo", "o")
        chat(r, phone.jid, "in1", "to the phone")
        got = received(phone, "in1")
        sid_in = stanza_id_of(got, "juliet@localhost")
        inner = ("<message xmlns='jabber:client' to='%s' id='in1' type='chat' from='%s'>"
                 "<body>to the phone</body><stanza-id xmlns='%s' id='%s' by='juliet@localhost'/>"
                 "</message>" % (phone.jid, r.jid, SID, sid_in))
        want = ("<message from='juliet@localhost' to='%s' type='chat'><received xmlns='%s'>"
                "<forwarded xmlns='%s'>%s</forwarded></received></message>"
                % (laptop.jid, carbons, fwd, inner))
        got = laptop.read_until("<message from='juliet@localhost' to='%s' type='chat'>"
                                "<received .*?</received></message>" % re.escape(laptop.jid))
        assert got == want, got
        chat(phone, "romeo@localhost/o", "out1", "from the phone")
        got_r = received(r, "out1")
        stanza_id_of(got_r, "romeo@localhost")
        assert got_r.count("<stanza-id ") == 1, got_r    # juliet's id went
        got = laptop.read_until("<message from='juliet@localhost' to='%s' type='chat'>"
                                "<sent .*?</sent></message>" % re.escape(laptop.jid))
        sid_out = stanza_id_of(got, "juliet@localhost")
        inner = ("<message xmlns='jabber:client' to='romeo@localhost/o' id='out1' type='chat' "
                 "from='%s'><body>from the phone</body><stanza-id xmlns='%s' id='%s' "
                 "by='juliet@localhost'/></message>" % (phone.jid, SID, sid_out))
        assert got == ("<message from='juliet@localhost' to='%s' type='chat'><sent xmlns='%s'>"
                       "<forwarded xmlns='%s'>%s</forwarded></sent></message>"
                       % (laptop.jid, carbons, fwd, inner)), got

        def archived():
            _, ids, _, _ = query(laptop)
            return ids if len(ids) >= 2 else None
        ids = wait_for(archived, what="archive written")
        # (as a set: the two ids come from two workers, and ids made in
        # the same millisecond on two workers sort by worker slot)
        assert sorted(ids) == sorted([sid_in, sid_out]), (ids, sid_in, sid_out)


if __name__ == "__main__":
    run_tests([test_archive_both_sides, test_paging_both_ways, test_filters_and_errors,
               test_preferences, test_offline_and_two_devices,
               test_ctl_purge_expire_and_account_deletion, test_retention_expiry,
               test_slixmpp_history, test_archive_waits_for_postgresql,
               test_with_carbons_two_devices, test_bounded_queries,
               test_room_archive_ctl_and_expiry])

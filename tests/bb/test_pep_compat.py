"""XEP-0402 bookmarks and their XEP-0048 views (worker/pep_compat.c),
black box with exact XML: a XEP-0402 publish read back as private XML
(#compat) and as the PEP node storage:bookmarks (#compat-pep); private
and #compat-pep sets diffed into publishes and retracts (an unchanged
bookmark is not republished: it keeps its place and its <extensions/>);
the node's XEP-0402 options; the errors; leftover private bookmarks
migrated at first access; pep.bookmarks_compat = no.  Needs
XMPPD_TEST_PGCONN.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, Server, run_tests  # noqa: E402
from imlib import connect_on  # noqa: E402
from test_pep_store import (OWNER, PASSWORDS, USERS, J, R, config_form, error,  # noqa: E402
                            items_of, iq, login, ps, publish, published, result)

STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
ERRORS = "http://jabber.org/protocol/pubsub#errors"
PRIVATE = "jabber:iq:private"
BM2 = "urn:xmpp:bookmarks:1"
LEGACY = "storage:bookmarks"
COUNCIL = "council@conference.localhost"
ORCHARD = "orchard@conference.localhost"
# Conversations' persistentWhitelistAccessMaxItems, the options XEP-0402
# section 5 asks for, plus notify_delete / notify_retract
CONVERSATIONS = [("pubsub#persist_items", "true"), ("pubsub#max_items", "max"),
                 ("pubsub#send_last_published_item", "never"),
                 ("pubsub#access_model", "whitelist"),
                 ("pubsub#notify_delete", "true"), ("pubsub#notify_retract", "true")]
COUNCIL_0402 = ("<conference xmlns='%s' name='Council &amp; Co' autojoin='true'>"
                "<nick>Juliet</nick><extensions><state xmlns='urn:example:bm'/>"
                "</extensions></conference>" % BM2)


def query(inner):
    return "<query xmlns='%s'>%s</query>" % (PRIVATE, inner)


def storage(*confs):
    if not confs:
        return "<storage xmlns='%s'/>" % LEGACY
    return "<storage xmlns='%s'>%s</storage>" % (LEGACY, "".join(confs))


def conf(jid, autojoin="false", name=None, nick=None, password=None):
    n = " name='%s'" % name if name is not None else ""
    inner = ("<nick>%s</nick>" % nick if nick is not None else "") + \
        ("<password>%s</password>" % password if password is not None else "")
    head = "<conference jid='%s' autojoin='%s'%s" % (jid, autojoin, n)
    return head + ("/>" if not inner else ">%s</conference>" % inner)


def error_text(frm, iq_id, to, etype, cond, text, app=None):
    a = "<%s xmlns='%s'/>" % (app, ERRORS) if app else ""
    return ("<iq from='%s' id='%s' to='%s' type='error'><error type='%s'><%s xmlns='%s'/>"
            "<text xmlns='%s'>%s</text>%s</error></iq>"
            % (frm, iq_id, to, etype, cond, STANZAS, STANZAS, text, a))


def login_on(s, user, worker, resource):
    c = connect_on(s, worker)
    jid = c.login(user, PASSWORDS[user], resource=resource)
    return c, jid


ORCHARD_0402 = ("<conference xmlns='%s' name='Orchard'><nick>J</nick>"
                "<password>p&amp;w</password></conference>" % BM2)


def test_bookmarks_compat():
    with Server(workers=2, users=USERS) as s:
        a, ja = login_on(s, "juliet", 0, "phone")     # a XEP-0402 client
        b, jb = login_on(s, "juliet", 1, "laptop")    # a XEP-0048 client
        got = iq(a, publish(BM2, COUNCIL_0402, COUNCIL, CONVERSATIONS), "b1", "set")
        assert got == result(J, "b1", ja, published(BM2, COUNCIL)), got
        # #compat: the private XML view, from the other worker
        council = conf(COUNCIL, "true", "Council &amp; Co", "Juliet")
        got = iq(b, query(storage()), "b2", "get")
        assert got == result(J, "b2", jb, query(storage(council))), got
        # #compat-pep: the PEP view, item 'current'
        got = iq(b, ps("<items node='%s'/>" % LEGACY), "b3", "get")
        assert got == result(J, "b3", jb, items_of(LEGACY, [("current", storage(council))])), got
        # a private set: council unchanged, orchard new -> council is not
        # republished (it stays first and keeps its <extensions/>)
        orchard = conf(ORCHARD, "false", "Orchard", "J", "p&amp;w")
        got = iq(b, query(storage(council, orchard)), "b4", "set")
        assert got == result(J, "b4", jb), got
        got = iq(a, ps("<items node='%s'/>" % BM2), "b5", "get")
        assert got == result(J, "b5", ja, items_of(BM2, [(COUNCIL, COUNCIL_0402),
                                                         (ORCHARD, ORCHARD_0402)])), got
        # the node keeps XEP-0402's options (and Conversations' extras)
        got = iq(a, ps("<configure node='%s'/>" % BM2, OWNER), "b6", "get")
        assert got == result(J, "b6", ja, ps("<configure node='%s'>%s</configure>" % (
            BM2, config_form({"access_model": "whitelist", "max_items": "max",
                              "send_last_published_item": "never",
                              "notify_delete": "1", "notify_retract": "1"})), OWNER)), got
        # a changed bookmark is republished (it goes last), keeping its
        # extensions; one left out is retracted
        council2 = conf(COUNCIL, "false", "Council", "Juliet")
        got = iq(b, query(storage(council2)), "b7", "set")
        assert got == result(J, "b7", jb), got
        got = iq(a, ps("<items node='%s'/>" % BM2), "b8", "get")
        assert got == result(J, "b8", ja, items_of(BM2, [(COUNCIL, (
            "<conference xmlns='%s' name='Council'><nick>Juliet</nick><extensions>"
            "<state xmlns='urn:example:bm'/></extensions></conference>" % BM2))])), got
        # #compat-pep publish syncs the same way
        got = iq(b, publish(LEGACY, storage(orchard), "current"), "b9", "set")
        assert got == result(J, "b9", jb, published(LEGACY, "current")), got
        got = iq(a, ps("<items node='%s'/>" % BM2), "b10", "get")
        assert got == result(J, "b10", ja, items_of(BM2, [(ORCHARD, ORCHARD_0402)])), got
        got = iq(a, query(storage()), "b11", "get")
        assert got == result(J, "b11", ja, query(storage(orchard))), got
        # an empty <storage/> retracts them all
        assert iq(b, query(storage()), "b12", "set") == result(J, "b12", jb)
        got = iq(a, ps("<items node='%s'/>" % BM2), "b13", "get")
        assert got == result(J, "b13", ja, items_of(BM2, [])), got
        got = iq(b, ps("<items node='%s'/>" % LEGACY), "b14", "get")
        assert got == result(J, "b14", jb, items_of(LEGACY, [("current", storage())])), got


def test_node_made_by_a_legacy_client():
    """A XEP-0048 client's first set creates the node with XEP-0402's
    options; a room named twice keeps the later one; <url/> bookmarks
    have no XEP-0402 form."""
    with Server(workers=1, users=USERS) as s:
        b, jb = login(s, "romeo")
        got = iq(b, query(storage(conf(COUNCIL, "1", "First"), "<url name='x' url='http://x/'/>",
                                  conf(COUNCIL, "true", "Second", "Romeo"))), "n1", "set")
        assert got == result(R, "n1", jb), got
        got = iq(b, ps("<configure node='%s'/>" % BM2, OWNER), "n2", "get")
        assert got == result(R, "n2", jb, ps("<configure node='%s'>%s</configure>" % (
            BM2, config_form({"access_model": "whitelist", "max_items": "max",
                              "send_last_published_item": "never"})), OWNER)), got
        got = iq(b, ps("<items node='%s'/>" % BM2), "n3", "get")
        assert got == result(R, "n3", jb, items_of(BM2, [(COUNCIL, (
            "<conference xmlns='%s' name='Second' autojoin='true'><nick>Romeo</nick>"
            "</conference>" % BM2))])), got
        # the node is whitelist: another account cannot read it
        a, ja = login(s, "juliet")
        got = iq(a, ps("<items node='%s'/>" % BM2), "n4", "get", to=R)
        assert got == error(R, "n4", ja, "cancel", "not-allowed", "closed-node"), got


def test_errors():
    with Server(workers=1, users=USERS) as s:
        a, ja = login(s, "juliet")
        b, jb = login(s, "romeo")
        # a conference without a room JID, or with a full JID
        for i, c in enumerate(("<conference xmlns='%s' name='x'/>" % LEGACY,
                               conf("room@conference.localhost/nick"),
                               conf("not a jid@"))):
            got = iq(a, query("<storage xmlns='%s'>%s</storage>" % (LEGACY, c)), "e%d" % i, "set")
            assert got == error_text(J, "e%d" % i, ja, "modify", "not-acceptable",
                                     "a conference without a room JID"), got
        assert "bookmarks of %s refused: a conference without a room JID" % ja in s.log_text()
        # nothing was stored
        got = iq(a, query(storage()), "e5", "get")
        assert got == result(J, "e5", ja, query(storage())), got
        # #compat-pep takes only <storage/>
        got = iq(a, publish(LEGACY, "<x xmlns='urn:x'/>", "current"), "e6", "set")
        assert got == error_text(J, "e6", ja, "modify", "bad-request",
                                 "the storage:bookmarks node takes &lt;storage "
                                 "xmlns='storage:bookmarks'/&gt;", "invalid-payload"), got
        # another element beside <storage/>
        got = iq(a, query(storage() + "<x xmlns='%s'/>" % LEGACY), "e7", "set")
        assert got == error(J, "e7", ja, "modify", "not-acceptable"), got
        # another account's bookmarks: forbidden (private), and its
        # storage:bookmarks node is not a view for others
        got = iq(b, query(storage()), "e8", "get", to=J)
        assert got == error(J, "e8", jb, "auth", "forbidden"), got
        got = iq(b, ps("<items node='%s'/>" % LEGACY), "e9", "get", to=J)
        assert got == error(J, "e9", jb, "cancel", "item-not-found"), got
        # more bookmarks than pep.max_items would lose some: refused whole
        many = storage(*[conf("r%d@conference.localhost" % k) for k in range(257)])
        got = iq(a, query(many), "e10", "set")
        assert got == error_text(J, "e10", ja, "modify", "not-acceptable",
                                 "more bookmarks than pep.max_items"), got
        got = iq(a, query(storage()), "e11", "get")
        assert got == result(J, "e11", ja, query(storage())), got


def test_migration_at_first_access():
    """Bookmarks left in private XML storage (written before the
    compat, or while it was off) move to urn:xmpp:bookmarks:1 at the
    first compat read; the private row goes."""
    with Server(workers=1, users=USERS) as s:
        legacy = storage(conf(COUNCIL, "true", "Council", "Juliet"))
        s.db.psql("INSERT INTO private_storage (account_id, namespace, element) VALUES "
                  "(xmppd_account_id('juliet', 'localhost'), '%s', $q$%s$q$)" % (LEGACY, legacy),
                  s.db.conninfo)
        a, ja = login(s, "juliet")
        # a XEP-0402 read before any compat access sees no node yet
        got = iq(a, ps("<items node='%s'/>" % BM2), "m1", "get")
        assert got == error(J, "m1", ja, "cancel", "item-not-found"), got
        got = iq(a, query(storage()), "m2", "get")
        assert got == result(J, "m2", ja, query(legacy)), got
        assert "bookmarks of juliet@localhost migrated from private XML storage to " \
               "urn:xmpp:bookmarks:1 (1)" in s.log_text()
        got = iq(a, ps("<items node='%s'/>" % BM2), "m3", "get")
        assert got == result(J, "m3", ja, items_of(BM2, [(COUNCIL, (
            "<conference xmlns='%s' name='Council' autojoin='true'><nick>Juliet</nick>"
            "</conference>" % BM2))])), got
        assert s.db.psql("SELECT count(*) FROM private_storage WHERE namespace = '%s'"
                         % LEGACY, s.db.conninfo).strip() == "0"


def test_compat_off():
    """pep.bookmarks_compat = no: private XML keeps storage:bookmarks
    as sent (private.c), and the PEP node storage:bookmarks is a plain
    node."""
    with Server(workers=1, users=USERS, overrides={"pep.bookmarks_compat": "no"}) as s:
        a, ja = login(s, "juliet")
        verbatim = ("<storage xmlns='storage:bookmarks'><conference name='N' "
                    "jid='%s'/><url url='http://x/'/></storage>" % COUNCIL)
        assert iq(a, query(verbatim), "o1", "set") == result(J, "o1", ja)
        got = iq(a, query(storage()), "o2", "get")
        assert got == result(J, "o2", ja, query(verbatim)), got
        got = iq(a, ps("<items node='%s'/>" % BM2), "o3", "get")
        assert got == error(J, "o3", ja, "cancel", "item-not-found"), got
        got = iq(a, publish(LEGACY, "<x xmlns='urn:x'/>", "i1"), "o4", "set")
        assert got == result(J, "o4", ja, published(LEGACY, "i1")), got
        got = iq(a, ps("<items node='%s'/>" % LEGACY), "o5", "get")
        assert got == result(J, "o5", ja, items_of(LEGACY, [("i1", "<x xmlns='urn:x'/>")])), got


if __name__ == "__main__":
    only = sys.argv[1:]
    run_tests([f for n, f in sorted(globals().items(), key=lambda kv: 0)
               if n.startswith("test_") and callable(f) and (not only or n in only)])

"""XEP-0402 bookmarks and their XEP-0048 views (worker/pep_compat.c),
black box with exact XML: a XEP-0402 publish read back as private XML
(#compat) and as the PEP node storage:bookmarks (#compat-pep); private
and #compat-pep sets diffed into publishes and retracts (an unchanged
bookmark is not republished: it keeps its place and its <extensions/>);
the node's XEP-0402 options; the errors; leftover private bookmarks
migrated at first access; pep.bookmarks_compat = no.  Needs
XMPPD_TEST_PGCONN.
"""
import base64
import hashlib
import os
import re
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, Server, run_tests, wait_for  # noqa: E402
from imlib import connect_on  # noqa: E402
from test_pep_store import (OWNER, PASSWORDS, USERS, J, R, config_form, error,  # noqa: E402
                            items_of, iq, login, ps, publish, published, result,
                            subscribe_from)

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


def test_store_all_or_nothing():
    """A private XML set whose bookmarks pass the account's PEP quota part
    way is refused whole: nothing of it is stored (not the first
    bookmarks, and the old ones stay)."""
    with Server(workers=1, users=USERS, overrides={"pep.max_account_bytes": "64K"}) as s:
        a, ja = login(s, "juliet")
        orchard = conf(ORCHARD, "false", "Orchard", "J", "p&amp;w")
        assert iq(a, query(storage(orchard)), "s1", "set") == result(J, "s1", ja)
        big = [conf("r%d@conference.localhost" % k, name="n" * 10000) for k in range(8)]
        got = iq(a, query(storage(orchard, *big)), "s2", "set")
        assert got == error_text(J, "s2", ja, "modify", "not-acceptable",
                                 "PEP storage quota of the account reached"), got
        got = iq(a, ps("<items node='%s'/>" % BM2), "s3", "get")
        assert got == result(J, "s3", ja, items_of(BM2, [(ORCHARD, ORCHARD_0402)])), got
        got = iq(a, query(storage()), "s4", "get")
        assert got == result(J, "s4", ja, query(storage(orchard))), got


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


# ---- XEP-0084 avatars, XEP-0398 conversion, XEP-0153 presence ---------------

DATA = "urn:xmpp:avatar:data"
META = "urn:xmpp:avatar:metadata"
UPDATE = "vcard-temp:x:update"
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 192     # 48K: XEP-0084 sizes
B64 = base64.b64encode(IMAGE).decode()
SHA = hashlib.sha1(IMAGE).hexdigest()


def metadata(*infos):
    if not infos:
        return "<metadata xmlns='%s'/>" % META
    return "<metadata xmlns='%s'>%s</metadata>" % (META, "".join(infos))


def info(sha, url=None):
    u = " url='%s'" % url if url else ""
    return ("<info bytes='%d' id='%s' height='64' type='image/png' width='64'%s/>"
            % (len(IMAGE), sha, u))


def presence_of(c, frm, marker):
    """The next presence from frm that carries marker (a <status/>)."""
    return c.read_until("<presence [^>]*from='%s'[^>]*>(?:(?!</presence>).)*%s.*?</presence>"
                        % (re.escape(frm), re.escape(marker)))


def with_photo(sha):
    return "<x xmlns='%s'><photo>%s</photo></x>" % (UPDATE, sha)


def test_avatar_conversion():
    with Server(workers=2, users=USERS) as s:
        a, ja = login_on(s, "juliet", 0, "phone")
        b, jb = login_on(s, "juliet", 1, "laptop")
        r, jr = login(s, "romeo")
        # a available first (its own presence comes back), then b
        a.send("<presence/>")
        a.read_until("<presence [^>]*from='%s'/>" % re.escape(ja))
        b.send("<presence/>")
        a.read_until("<presence [^>]*from='%s'/>" % re.escape(jb))
        # XEP-0084: data first, then metadata (an info with a url first:
        # the one without url is converted)
        got = iq(a, publish(DATA, "<data xmlns='%s'>%s</data>" % (DATA, B64), SHA), "v1", "set")
        assert got == result(J, "v1", ja, published(DATA, SHA)), got
        other = "0" * 40
        got = iq(a, publish(META, metadata(info(other, "https://x.example/a.png"),
                                           info(SHA)), SHA), "v2", "set")
        assert got == result(J, "v2", ja, published(META, SHA)), got
        wait_for(lambda: "avatar of %s: vCard PHOTO %s" % (J, SHA) in s.log_text(),
                 what="the conversion")
        # XEP-0153 clients see it: the vCard PHOTO, readable by anyone
        got = iq(r, "<vCard xmlns='vcard-temp'/>", "v3", "get", to=J)
        assert got == result(J, "v3", jr, "<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png"
                                          "</TYPE><BINVAL>%s</BINVAL></PHOTO></vCard>" % B64), got
        # and the hash in presence: own broadcast (session on this worker) ...
        a.send("<presence><status>s1</status></presence>")
        got = presence_of(b, ja, "s1")
        assert got == "<presence to='%s' from='%s'><status>s1</status>%s</presence>" % (
            J, ja, with_photo(SHA)), got
        # ... the other worker's session learns it by a frame (bounded wait)
        for k in range(50):
            b.send("<presence><status>t%d</status></presence>" % k)
            got = presence_of(a, jb, "t%d<" % k)
            if "<photo>" in got:
                break
        assert got == "<presence to='%s' from='%s'><status>t%d</status>%s</presence>" % (
            J, jb, k, with_photo(SHA)), got
        # an empty <photo/> is left alone; an empty <x/> gets the hash
        a.send("<presence><status>s2</status><x xmlns='%s'><photo/></x></presence>" % UPDATE)
        got = presence_of(b, ja, "s2")
        assert got == ("<presence to='%s' from='%s'><status>s2</status><x xmlns='%s'><photo/>"
                       "</x></presence>" % (J, ja, UPDATE)), got
        a.send("<presence><status>s3</status><x xmlns='%s'/></presence>" % UPDATE)
        got = presence_of(b, ja, "s3")
        assert got == "<presence to='%s' from='%s'><status>s3</status>%s</presence>" % (
            J, ja, with_photo(SHA)), got
        # directed presence (a MUC join) too
        a.send("<presence to='%s'><status>d1</status></presence>" % jr)
        got = presence_of(r, ja, "d1")
        assert got == "<presence to='%s' from='%s'><status>d1</status>%s</presence>" % (
            jr, ja, with_photo(SHA)), got
        # a new session knows the hash from its bind
        c, jc = login_on(s, "juliet", 1, "tablet")
        iq(c, "<query xmlns='jabber:iq:roster'/>", "v4", "get")
        c.send("<presence><status>c1</status></presence>")
        got = presence_of(a, jc, "c1")
        assert got == "<presence to='%s' from='%s'><status>c1</status>%s</presence>" % (
            J, jc, with_photo(SHA)), got
        # data whose SHA-1 is not the id: not converted, vCard unchanged
        bad = "1" * 40
        iq(a, publish(DATA, "<data xmlns='%s'>%s</data>" % (DATA, B64), bad), "v5", "set")
        iq(a, publish(META, metadata(info(bad)), bad), "v6", "set")
        wait_for(lambda: "avatar of %s not converted: the data of item %s is not base64 of "
                         "an image with that SHA-1" % (J, bad) in s.log_text(),
                 what="the refusal")
        got = iq(r, "<vCard xmlns='vcard-temp'/>", "v7", "get", to=J)
        assert "<BINVAL>%s</BINVAL>" % B64 in got, got[:300]
        # an empty <metadata/> (no avatar) removes the PHOTO and the hash
        iq(a, publish(META, metadata(), "none"), "v8", "set")
        wait_for(lambda: "avatar of %s: vCard PHOTO removed" % J in s.log_text(),
                 what="the removal")
        got = iq(r, "<vCard xmlns='vcard-temp'/>", "v9", "get", to=J)
        assert got == result(J, "v9", jr, "<vCard xmlns='vcard-temp'/>"), got
        a.send("<presence><status>s4</status></presence>")
        got = presence_of(b, ja, "s4")
        assert got == "<presence to='%s' from='%s'><status>s4</status></presence>" % (J, ja), got
        # the other worker's session is told "none" too (bounded wait)
        for k in range(50):
            b.send("<presence><status>u%d</status></presence>" % k)
            got = presence_of(a, jb, "u%d<" % k)
            if "<photo>" not in got:
                break
        assert got == "<presence to='%s' from='%s'><status>u%d</status></presence>" % (
            J, jb, k), got


# a XEP-0153 client's vCard (under im.vcard_max_size)
SMALL = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
SMALL_SHA = hashlib.sha1(SMALL).hexdigest()
VCARD_PHOTO = ("<vCard xmlns='vcard-temp'><FN>Juliet</FN><PHOTO><TYPE>image/png</TYPE>"
               "<BINVAL>%s</BINVAL></PHOTO></vCard>" % base64.b64encode(SMALL).decode())


def test_vcard_photo_hash_in_presence():
    """A XEP-0153 client setting its vCard PHOTO: the hash follows in
    the account's presence (the server computes it)."""
    with Server(workers=1, users=USERS) as s:
        a, ja = login(s, "juliet", "phone")
        b, jb = login(s, "juliet", "laptop")
        b.send("<presence/>")
        b.read_until("<presence [^>]*from='%s'/>" % re.escape(jb))
        assert iq(a, VCARD_PHOTO, "w1", "set") == result(J, "w1", ja)
        a.send("<presence><status>p1</status></presence>")
        got = presence_of(b, ja, "p1")
        assert got == "<presence to='%s' from='%s'><status>p1</status>%s</presence>" % (
            J, ja, with_photo(SMALL_SHA)), got


def test_bind_loads_blocklist_and_hash():
    """One statement at bind brings both the blocklist and the vCard
    hash: a new session of an account with both filters by each."""
    with Server(workers=1, users=USERS) as s:
        a, ja = login(s, "juliet", "phone")
        b, jb = login(s, "juliet", "laptop")
        b.send("<presence/>")
        b.read_until("<presence [^>]*from='%s'/>" % re.escape(jb))
        assert iq(a, VCARD_PHOTO, "k1", "set") == result(J, "k1", ja)
        blocked = "tybalt@localhost"
        assert iq(a, "<block xmlns='urn:xmpp:blocking'><item jid='%s'/></block>" % blocked,
                  "k2", "set") == result(J, "k2", ja)
        c, jc = login(s, "juliet", "tablet")
        # the bind statement answered before this IQ's (one connection)
        iq(c, "<query xmlns='jabber:iq:roster'/>", "k3", "get")
        c.send("<presence><status>c1</status></presence>")
        got = presence_of(b, jc, "c1")
        assert got == "<presence to='%s' from='%s'><status>c1</status>%s</presence>" % (
            J, jc, with_photo(SMALL_SHA)), got
        c.send("<message to='%s' id='k4' type='chat'><body>x</body></message>" % blocked)
        got = c.read_until("<message [^>]*id='k4'.*?</message>")
        assert got == ("<message from='%s' id='k4' to='%s' type='error'><error type='cancel'>"
                       "<not-acceptable xmlns='%s'/><blocked xmlns='urn:xmpp:blocking:errors'/>"
                       "</error></message>" % (blocked, jc, STANZAS)), got


def test_vcard_conversion_off():
    with Server(workers=1, users=USERS, overrides={"pep.vcard_conversion": "no"}) as s:
        a, ja = login(s, "juliet", "phone")
        b, jb = login(s, "juliet", "laptop")
        b.send("<presence/>")
        b.read_until("<presence [^>]*from='%s'/>" % re.escape(jb))
        assert iq(a, VCARD_PHOTO, "f1", "set") == result(J, "f1", ja)
        a.send("<presence><status>p1</status></presence>")
        got = presence_of(b, ja, "p1")
        assert got == "<presence to='%s' from='%s'><status>p1</status></presence>" % (J, ja), got
        # the metadata publish is stored, and the vCard is the client's
        iq(a, publish(DATA, "<data xmlns='%s'>%s</data>" % (DATA, B64), SHA), "f2", "set")
        iq(a, publish(META, metadata(info(SHA)), SHA), "f3", "set")
        got = iq(a, ps("<items node='%s'/>" % META), "f4", "get")
        assert got == result(J, "f4", ja, items_of(META, [(SHA, metadata(info(SHA)))])), got
        got = iq(a, "<vCard xmlns='vcard-temp'/>", "f5", "get")
        assert got == result(J, "f5", ja, VCARD_PHOTO), got
        assert "avatar of" not in s.log_text()


def test_nick():
    """XEP-0172: a nick is a PEP item like any other; a contact with a
    presence subscription reads it, a stranger does not."""
    with Server(workers=1, users=USERS) as s:
        a, ja = login(s, "juliet")
        b, jb = login(s, "romeo")
        c, jc = login(s, "nurse")
        subscribe_from(s, "juliet", R)
        nick = "<nick xmlns='http://jabber.org/protocol/nick'>Jules &amp; co</nick>"
        node = "http://jabber.org/protocol/nick"
        got = iq(a, publish(node, nick), "k1", "set")
        m = re.match(re.escape("<iq from='%s' id='k1' to='%s' type='result'><pubsub xmlns="
                               "'http://jabber.org/protocol/pubsub'><publish node='%s'><item id='"
                               % (J, ja, node)) + "([^']+)'/></publish></pubsub></iq>$", got)
        assert m, got
        got = iq(b, ps("<items node='%s'/>" % node), "k2", "get", to=J)
        assert got == result(J, "k2", jb, items_of(node, [(m.group(1), nick)])), got
        got = iq(c, ps("<items node='%s'/>" % node), "k3", "get", to=J)
        assert got == error(J, "k3", jc, "auth", "not-authorized",
                            "presence-subscription-required"), got




def test_features_follow_settings():
    """The account's disco#info (its own and a contact's) lists
    urn:xmpp:bookmarks:1#compat and #compat-pep only with
    pep.bookmarks_compat, urn:xmpp:pep-vcard-conversion:0 only with
    pep.vcard_conversion (a client that sees #compat skips its own
    fallback); a reload turns them back on."""
    from test_pep_store import INFO, PEP_FEATURES
    compat = ("<feature var='urn:xmpp:bookmarks:1#compat'/>"
              "<feature var='urn:xmpp:bookmarks:1#compat-pep'/>")
    conv = "<feature var='urn:xmpp:pep-vcard-conversion:0'/>"
    assert PEP_FEATURES.endswith(compat + conv)
    base = PEP_FEATURES[:-len(compat + conv)]

    def infos(s, tag):
        a, ja = login(s, "juliet", tag)
        b, jb = login(s, "romeo", tag)
        own = iq(a, "<query xmlns='%s'/>" % INFO, "o" + tag, "get", to=J)
        other = iq(b, "<query xmlns='%s'/>" % INFO, "c" + tag, "get", to=J)
        head = own[:own.index("<query")]
        assert head == "<iq from='%s' id='o%s' to='%s' type='result'>" % (J, tag, ja), own
        assert other == own.replace("id='o%s' to='%s'" % (tag, ja),
                                    "id='c%s' to='%s'" % (tag, jb)), other
        return own[len(head):]

    cases = (("pep {\n bookmarks_compat = no\n}\n", base + conv),
             ("pep {\n vcard_conversion = no\n}\n", base + compat),
             ("pep {\n bookmarks_compat = no\n vcard_conversion = no\n}\n", base))
    for n, (text, features) in enumerate(cases):
        with Server(workers=1, users=USERS, config_text=text) as s:
            subscribe_from(s, "juliet", R)
            got = infos(s, "a")
            assert got.endswith(features + "</query></iq>"), got
            for f in (compat, conv):
                for one in re.findall("<feature var='[^']*'/>", f):
                    assert (one in got) == (one in features), (one, got)
            if n < 2:
                continue
            # RELOAD: on again without a restart
            s.write_config("")
            os.kill(s.master_pid, signal.SIGHUP)
            wait_for(lambda: (lambda x: x and all(w["generation"] == 2 for w in x["workers"]))(
                s.status()), what="reloaded")
            again = infos(s, "b")
            assert again == got[:-len(base + "</query></iq>")] + PEP_FEATURES + \
                "</query></iq>", again


if __name__ == "__main__":
    only = sys.argv[1:]
    run_tests([f for n, f in sorted(globals().items(), key=lambda kv: 0)
               if n.startswith("test_") and callable(f) and (not only or n in only)])

"""XEP-0163 personal eventing storage, black box with exact XML: publish
(auto-create, generated ids, overwrite, trim), publish-options as
preconditions (XEP-0060 7.1.5) including the XEP-0384 OMEMO sequence,
items (all, by id, max_items), retract, purge, delete, create,
configure, default, affiliations, the access models of items requests,
disco#info/#items on an account's bare JID and the domain, the pep.*
limits, a restart, account deletion.  Notifications: test_pep_notify.py.  Needs
XMPPD_TEST_PGCONN.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, Server, run_tests, wait_for  # noqa: E402
from test_pgdown import PgProxy, pg_target, proxied_server, running  # noqa: E402
from test_storage import restart, sql  # noqa: E402

STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
PUBSUB = "http://jabber.org/protocol/pubsub"
OWNER = PUBSUB + "#owner"
ERRORS = PUBSUB + "#errors"
USERS = [("juliet@localhost", "r0m30!"), ("romeo@localhost", "jul13t?"),
         ("nurse@localhost", "s3cret")]
PASSWORDS = dict((j.split("@")[0], p) for j, p in USERS)
J = "juliet@localhost"
R = "romeo@localhost"

TUNE = "<tune xmlns='http://jabber.org/protocol/tune'><artist>Yes</artist></tune>"
DEVLIST = "eu.siacs.conversations.axolotl.devicelist"


def login(s, user, resource="r"):
    c = Client(s.port)
    jid = c.login(user, PASSWORDS[user], resource=resource)
    return c, jid


def iq(c, body, iq_id, iq_type, to=None):
    t = " to='%s'" % to if to else ""
    c.send("<iq%s type='%s' id='%s'>%s</iq>" % (t, iq_type, iq_id, body))
    return c.read_until("<iq [^>]*id='%s'[^>]*?(/>|>.*?</iq>)" % iq_id)


def result(frm, iq_id, to, payload=None):
    head = "<iq from='%s' id='%s' to='%s' type='result'" % (frm, iq_id, to)
    return head + ("/>" if payload is None else ">%s</iq>" % payload)


def error(frm, iq_id, to, etype, cond, app=None, text=None):
    t = "<text xmlns='%s'>%s</text>" % (STANZAS, text) if text else ""
    a = "<%s xmlns='%s'/>" % (app, ERRORS) if app else ""
    return ("<iq from='%s' id='%s' to='%s' type='error'><error type='%s'>"
            "<%s xmlns='%s'/>%s%s</error></iq>" % (frm, iq_id, to, etype, cond,
                                                   STANZAS, t, a))


def error_rx(frm, iq_id, to, etype, cond, app):
    """An error with any <text/> (the reason, for people)."""
    return re.compile(re.escape(
        "<iq from='%s' id='%s' to='%s' type='error'><error type='%s'><%s xmlns='%s'/>"
        % (frm, iq_id, to, etype, cond, STANZAS)) + "(<text xmlns='%s'>[^<]*</text>)?"
        % re.escape(STANZAS) + re.escape("<%s xmlns='%s'/></error></iq>" % (app, ERRORS)))


def ps(inner, ns=PUBSUB):
    return "<pubsub xmlns='%s'>%s</pubsub>" % (ns, inner)


def form(form_type, fields):
    f = "<field var='FORM_TYPE' type='hidden'><value>%s</value></field>" % form_type
    for k, v in fields:
        f += "<field var='%s'><value>%s</value></field>" % (k, v)
    return "<x xmlns='jabber:x:data' type='submit'>%s</x>" % f


def options(fields):
    return "<publish-options>%s</publish-options>" % form(PUBSUB + "#publish-options", fields)


def publish(node, payload, item_id=None, opts=None):
    i = " id='%s'" % item_id if item_id else ""
    return ps("<publish node='%s'><item%s>%s</item></publish>%s"
              % (node, i, payload, options(opts) if opts else ""))


def published(node, item_id):
    return ps("<publish node='%s'><item id='%s'/></publish>" % (node, item_id))


def items_of(node, items):
    if not items:
        return ps("<items node='%s'/>" % node)
    return ps("<items node='%s'>%s</items>" % (node, "".join(
        "<item id='%s'>%s</item>" % (i, p) for i, p in items)))


def config_form(values, groups=()):
    """The configure form xmppd sends, with values (a dict by short name)."""
    d = {"access_model": "presence", "max_items": "1", "persist_items": "1",
         "send_last_published_item": "on_sub_and_presence",
         "notify_retract": "0", "notify_delete": "0", "notify_config": "0",
         "deliver_notifications": "1", "deliver_payloads": "1",
         "notification_type": "headline", "title": "", "type": "",
         "itemreply": "none"}
    d.update(values)
    spec = [
        ("access_model", "list-single", "Who may subscribe and retrieve items",
         "open presence roster whitelist"),
        ("max_items", "text-single", "Max # of items to persist", None),
        ("persist_items", "boolean", "Persist items to storage", None),
        ("send_last_published_item", "list-single", "When to send the last published item",
         "never on_sub on_sub_and_presence"),
        ("notify_retract", "boolean",
         "Notify subscribers when items are removed from the node", None),
        ("notify_delete", "boolean", "Notify subscribers when the node is deleted", None),
        ("notify_config", "boolean",
         "Notify subscribers when the node configuration changes", None),
        ("deliver_notifications", "boolean", "Deliver event notifications", None),
        ("deliver_payloads", "boolean", "Deliver payloads with event notifications", None),
        ("notification_type", "list-single", "Message type of event notifications",
         "headline normal"),
        ("title", "text-single", "A friendly name for the node", None),
        ("type", "text-single", "The type of node data, usually specified by the "
         "namespace of the payload", None),
        ("itemreply", "list-single", "Whom to address replies to", "none owner publisher"),
    ]
    out = ("<x xmlns='jabber:x:data' type='form'><field var='FORM_TYPE' type='hidden'>"
           "<value>%s#node_config</value></field>" % PUBSUB)
    for name, ftype, label, opts in spec:
        v = d[name]
        out += "<field var='pubsub#%s' type='%s' label='%s'>" % (name, ftype, label)
        out += "<value>%s</value>" % v if v != "" else "<value/>"
        if opts:
            out += "".join("<option><value>%s</value></option>" % o for o in opts.split())
        out += "</field>"
    out += ("<field var='pubsub#roster_groups_allowed' type='list-multi' "
            "label='Roster groups allowed to subscribe'")
    out += (">%s</field>" % "".join("<value>%s</value>" % g for g in groups)) if groups else "/>"
    out += ("<field var='pubsub#publish_model' type='list-single' label='Who may publish'>"
            "<value>publishers</value></field><field var='pubsub#max_payload_size' "
            "type='text-single' label='Max payload size in bytes (read-only)'>"
            "<value>262144</value></field></x>")
    return out


# ---- store ----------------------------------------------------------------

def test_publish_items_retract():
    with Server(workers=1, users=USERS) as s:
        a, ja = login(s, "juliet")
        # auto-create, generated id (XEP-0060 7.1.2)
        got = iq(a, publish("tune", TUNE), "p1", "set")
        m = re.fullmatch(re.escape("<iq from='%s' id='p1' to='%s' type='result'><pubsub "
                                   "xmlns='%s'><publish node='tune'><item id='" % (J, ja, PUBSUB))
                         + "([^']+)" + re.escape("'/></publish></pubsub></iq>"), got)
        assert m, got
        gen = m.group(1)
        assert iq(a, ps("<items node='tune'/>"), "i1", "get") == \
            result(J, "i1", ja, items_of("tune", [(gen, TUNE)]))
        # default max_items 1: a second item replaces the first
        assert iq(a, publish("tune", TUNE, "current"), "p2", "set") == \
            result(J, "p2", ja, published("tune", "current"))
        assert iq(a, publish("tune", "<x xmlns='urn:a'>2</x>", "current"), "p3", "set") == \
            result(J, "p3", ja, published("tune", "current"))
        assert iq(a, ps("<items node='tune'/>"), "i2", "get") == \
            result(J, "i2", ja, items_of("tune", [("current", "<x xmlns='urn:a'>2</x>")]))
        # max_items=3 keeps the newest three, oldest first
        for k in range(5):
            got = iq(a, publish("multi", "<n xmlns='urn:n'>%d</n>" % k, "i%d" % k,
                                [("pubsub#max_items", "3")]), "m%d" % k, "set")
            assert got == result(J, "m%d" % k, ja, published("multi", "i%d" % k)), got
        three = [("i%d" % k, "<n xmlns='urn:n'>%d</n>" % k) for k in (2, 3, 4)]
        assert iq(a, ps("<items node='multi'/>"), "i3", "get") == \
            result(J, "i3", ja, items_of("multi", three))
        # by ids (one unknown), max_items, bad max_items
        assert iq(a, ps("<items node='multi'><item id='i3'/><item id='nope'/></items>"),
                  "i4", "get") == result(J, "i4", ja, items_of("multi", three[1:2]))
        assert iq(a, ps("<items node='multi'><item id='nope'/></items>"), "i5", "get") == \
            result(J, "i5", ja, items_of("multi", []))
        assert iq(a, ps("<items node='multi' max_items='2'/>"), "i6", "get") == \
            result(J, "i6", ja, items_of("multi", three[1:]))
        assert iq(a, ps("<items node='multi' max_items='0'/>"), "i7", "get") == \
            error(J, "i7", ja, "modify", "bad-request",
                  text="max_items not a positive integer")
        assert iq(a, ps("<items node='none'/>"), "i8", "get") == \
            error(J, "i8", ja, "cancel", "item-not-found")
        assert iq(a, ps("<items/>"), "i9", "get") == \
            error(J, "i9", ja, "modify", "bad-request", "nodeid-required",
                  "items without a node")
        # overwrite moves the item last
        assert iq(a, publish("multi", "<n xmlns='urn:n'>again</n>", "i2"), "m9", "set") == \
            result(J, "m9", ja, published("multi", "i2"))
        assert iq(a, ps("<items node='multi'/>"), "i10", "get") == \
            result(J, "i10", ja, items_of("multi", three[1:] + [
                ("i2", "<n xmlns='urn:n'>again</n>")]))
        # retract
        assert iq(a, ps("<retract node='multi' notify='true'><item id='i3'/></retract>"),
                  "r1", "set") == result(J, "r1", ja)
        assert iq(a, ps("<retract node='multi'><item id='i3'/></retract>"), "r2", "set") == \
            error(J, "r2", ja, "cancel", "item-not-found")
        assert iq(a, ps("<retract node='nonode'><item id='i3'/></retract>"), "r3", "set") == \
            error(J, "r3", ja, "cancel", "item-not-found")
        assert iq(a, ps("<retract node='multi'/>"), "r4", "set") == \
            error(J, "r4", ja, "modify", "bad-request", "item-required",
                  "retract without an item id")
        assert iq(a, ps("<retract><item id='x'/></retract>"), "r5", "set") == \
            error(J, "r5", ja, "modify", "bad-request", "nodeid-required",
                  "retract without a node")
        assert iq(a, ps("<items node='multi'/>"), "i11", "get") == \
            result(J, "i11", ja, items_of("multi", [three[2], ("i2", "<n xmlns='urn:n'>again</n>")]))


def test_publish_errors():
    with Server(workers=1, users=USERS,
                overrides={"pep.max_item_size": "1K", "pep.max_nodes": "2"}) as s:
        a, ja = login(s, "juliet")
        b, jb = login(s, "romeo")
        assert iq(b, publish("tune", TUNE), "e1", "set", to=J) == \
            error(J, "e1", jb, "auth", "forbidden",
                  text="publish to another account&apos;s PEP".replace("&apos;", "'"))
        assert iq(a, ps("<publish><item>%s</item></publish>" % TUNE), "e2", "set") == \
            error(J, "e2", ja, "modify", "bad-request", "nodeid-required",
                  "publish without a node")
        assert iq(a, ps("<publish node='n'/>"), "e3", "set") == \
            error(J, "e3", ja, "modify", "bad-request", "item-required",
                  "publish without an item")
        assert iq(a, ps("<publish node='n'><item id='a'/></publish>"), "e4", "set") == \
            error(J, "e4", ja, "modify", "bad-request", "invalid-payload",
                  "an item needs exactly one payload element")
        assert iq(a, ps("<publish node='n'><item id='a'><a xmlns='urn:a'/><b xmlns='urn:b'/>"
                        "</item></publish>"), "e5", "set") == \
            error(J, "e5", ja, "modify", "bad-request", "invalid-payload",
                  "an item needs exactly one payload element")
        assert iq(a, ps("<publish node='n'><item id='a'>%s</item><item id='b'>%s</item>"
                        "</publish>" % (TUNE, TUNE)), "e6", "set") == \
            error(J, "e6", ja, "modify", "bad-request", "invalid-payload",
                  "more than one item")
        big = "<b xmlns='urn:big'>%s</b>" % ("x" * 1100)
        assert iq(a, publish("n", big), "e7", "set") == \
            error(J, "e7", ja, "modify", "not-acceptable", "payload-too-big",
                  "1123 bytes (pep.max_item_size 1024)")
        assert ("refused: not-acceptable: 1123 bytes (pep.max_item_size 1024)"
                in s.log_text())
        # pep.max_nodes = 2
        assert iq(a, publish("n1", TUNE, "a"), "e8", "set") == \
            result(J, "e8", ja, published("n1", "a"))
        assert iq(a, publish("n2", TUNE, "a"), "e9", "set") == \
            result(J, "e9", ja, published("n2", "a"))
        assert iq(a, publish("n3", TUNE, "a"), "e10", "set") == \
            error(J, "e10", ja, "cancel", "not-allowed", "max-nodes-exceeded",
                  "pep.max_nodes reached")
        assert iq(a, ps("<create node='n3'/>"), "e11", "set") == \
            error(J, "e11", ja, "cancel", "not-allowed", "max-nodes-exceeded",
                  "pep.max_nodes reached")
        # an existing node still takes items
        assert iq(a, publish("n2", TUNE, "b"), "e12", "set") == \
            result(J, "e12", ja, published("n2", "b"))


def test_account_bytes():
    with Server(workers=1, users=USERS,
                overrides={"pep.max_account_bytes": "64K", "pep.max_item_size": "40K"}) as s:
        a, ja = login(s, "juliet")
        blob = "<b xmlns='urn:b'>%s</b>" % ("y" * 30000)
        assert iq(a, publish("a", blob, "1"), "q1", "set") == result(J, "q1", ja, published("a", "1"))
        assert iq(a, publish("b", blob, "1"), "q2", "set") == result(J, "q2", ja, published("b", "1"))
        assert iq(a, publish("c", blob, "1"), "q3", "set") == \
            ("<iq from='%s' id='q3' to='%s' type='error'><error type='modify'><not-acceptable "
             "xmlns='%s'/><text xmlns='%s'>PEP storage quota of the account reached</text>"
             "</error></iq>" % (J, ja, STANZAS, STANZAS))
        # replacing an item of the same size fits
        assert iq(a, publish("b", blob, "1"), "q4", "set") == result(J, "q4", ja, published("b", "1"))


def test_purge_delete_create():
    with Server(workers=1, users=USERS) as s:
        a, ja = login(s, "juliet")
        b, jb = login(s, "romeo")
        iq(a, publish("n", TUNE, "1", [("pubsub#max_items", "max")]), "c0", "set")
        iq(a, publish("n", TUNE, "2"), "c1", "set")
        assert iq(b, ps("<purge node='n'/>", OWNER), "c2", "set", to=J) == \
            error(J, "c2", jb, "auth", "forbidden",
                  text="owner request of another account")
        assert iq(a, ps("<purge node='nope'/>", OWNER), "c3", "set") == \
            error(J, "c3", ja, "cancel", "item-not-found")
        assert iq(a, ps("<purge node='n'/>", OWNER), "c4", "set") == result(J, "c4", ja)
        assert iq(a, ps("<items node='n'/>"), "c5", "get") == result(J, "c5", ja, items_of("n", []))
        assert iq(b, ps("<delete node='n'/>", OWNER), "c6", "set", to=J) == \
            error(J, "c6", jb, "auth", "forbidden",
                  text="owner request of another account")
        assert iq(a, ps("<delete node='n'/>", OWNER), "c7", "set") == result(J, "c7", ja)
        assert iq(a, ps("<delete node='n'/>", OWNER), "c8", "set") == \
            error(J, "c8", ja, "cancel", "item-not-found")
        assert iq(a, ps("<items node='n'/>"), "c9", "get") == \
            error(J, "c9", ja, "cancel", "item-not-found")
        # create
        assert iq(a, ps("<create node='new'/>"), "c10", "set") == result(J, "c10", ja)
        assert iq(a, ps("<create node='new'/>"), "c11", "set") == \
            error(J, "c11", ja, "cancel", "conflict", text="the node exists")
        assert iq(a, ps("<create/>"), "c12", "set") == \
            error(J, "c12", ja, "modify", "not-acceptable", "nodeid-required",
                  "instant nodes not offered")
        assert iq(a, ps("<create node='auth'/><configure>%s</configure>" % form(
            PUBSUB + "#node_config", [("pubsub#access_model", "authorize")])), "c13", "set") == \
            error(J, "c13", ja, "modify", "not-acceptable", "unsupported-access-model",
                  "access model authorize not offered")
        assert iq(b, ps("<create node='x'/>"), "c14", "set", to=J) == \
            error(J, "c14", jb, "auth", "forbidden", text="create on another account")
        # create and configure
        assert iq(a, ps("<create node='cc'/><configure>%s</configure>" % form(
            PUBSUB + "#node_config", [("pubsub#access_model", "open"),
                                      ("pubsub#max_items", "10")])), "c15", "set") == \
            result(J, "c15", ja)
        assert iq(a, ps("<configure node='cc'/>", OWNER), "c16", "get") == \
            result(J, "c16", ja, ps("<configure node='cc'>%s</configure>" % config_form(
                {"access_model": "open", "max_items": "10"}), OWNER))


def test_configure():
    with Server(workers=1, users=USERS) as s:
        a, ja = login(s, "juliet")
        b, jb = login(s, "romeo")
        assert iq(a, ps("<default/>", OWNER), "d1", "get") == \
            result(J, "d1", ja, ps("<default>%s</default>" % config_form({}), OWNER))
        for k in range(3):
            iq(a, publish("n", "<n xmlns='urn:n'>%d</n>" % k, str(k),
                          [("pubsub#max_items", "5")]), "pp%d" % k, "set")
        assert iq(a, ps("<configure node='n'/>", OWNER), "f1", "get") == \
            result(J, "f1", ja, ps("<configure node='n'>%s</configure>" % config_form(
                {"max_items": "5"}), OWNER))
        assert iq(a, ps("<configure node='zz'/>", OWNER), "f2", "get") == \
            error(J, "f2", ja, "cancel", "item-not-found")
        assert iq(b, ps("<configure node='n'/>", OWNER), "f3", "get", to=J) == \
            error(J, "f3", jb, "auth", "forbidden", text="owner request of another account")
        # a partial form (Gajim) keeps the rest
        assert iq(a, ps("<configure node='n'>%s</configure>" % form(
            PUBSUB + "#node_config", [("pubsub#access_model", "whitelist")]), OWNER),
            "f4", "set") == result(J, "f4", ja)
        want = config_form({"max_items": "5", "access_model": "whitelist"})
        assert iq(a, ps("<configure node='n'/>", OWNER), "f5", "get") == \
            result(J, "f5", ja, ps("<configure node='n'>%s</configure>" % want, OWNER))
        # the full form sent back (Conversations, profanity), one value
        # changed: lower max_items trims to the newest two
        full = want.replace("type='form'", "type='submit'").replace(
            "<value>5</value>", "<value>2</value>")
        assert iq(a, ps("<configure node='n'>%s</configure>" % full, OWNER), "f6", "set") == \
            result(J, "f6", ja)
        assert iq(a, ps("<items node='n'/>"), "f7", "get") == \
            result(J, "f7", ja, items_of("n", [("1", "<n xmlns='urn:n'>1</n>"),
                                              ("2", "<n xmlns='urn:n'>2</n>")]))
        # cancel; bad values; max_items above pep.max_items; unknown fields ignored
        assert iq(a, ps("<configure node='n'><x xmlns='jabber:x:data' type='cancel'/>"
                        "</configure>", OWNER), "f8", "set") == result(J, "f8", ja)
        for i, (var, val, why) in enumerate([
                ("pubsub#max_items", "257", "bad value of pubsub#max_items"),
                ("pubsub#max_items", "0", "bad value of pubsub#max_items"),
                ("pubsub#persist_items", "maybe", "bad value of pubsub#persist_items"),
                ("pubsub#access_model", "authorize", "access model authorize not offered")]):
            got = iq(a, ps("<configure node='n'>%s</configure>" % form(
                PUBSUB + "#node_config", [(var, val)]), OWNER), "g%d" % i, "set")
            assert got == error(J, "g%d" % i, ja, "modify", "not-acceptable", text=why), got
            assert "refused: not-acceptable: %s" % why in s.log_text()
        # a form of another FORM_TYPE
        got = iq(a, ps("<configure node='n'>%s</configure>" % form(
            PUBSUB + "#publish-options", [("pubsub#max_items", "3")]), OWNER), "g9", "set")
        assert got == error(J, "g9", ja, "modify", "bad-request",
                            text="not a submitted pubsub#node_config form"), got
        assert iq(a, ps("<configure node='n'>%s</configure>" % form(
            PUBSUB + "#node_config", [("x-unknown#thing", "1"), ("pubsub#title", "T")]),
            OWNER), "f9", "set") == result(J, "f9", ja)
        assert iq(a, ps("<configure node='n'/>", OWNER), "f10", "get") == \
            result(J, "f10", ja, ps("<configure node='n'>%s</configure>" % config_form(
                {"max_items": "2", "access_model": "whitelist", "title": "T"}), OWNER))
        assert iq(a, ps("<configure node='n'/>", OWNER), "f11", "set") == \
            error(J, "f11", ja, "modify", "bad-request", text="no data form")


# ---- publish-options ------------------------------------------------------

def test_publish_options():
    with Server(workers=1, users=USERS) as s:
        a, ja = login(s, "juliet")
        po = [("pubsub#access_model", "open"), ("pubsub#persist_items", "true"),
              ("pubsub#max_items", "max")]
        assert iq(a, publish("po", TUNE, "1", po), "o1", "set") == \
            result(J, "o1", ja, published("po", "1"))
        assert iq(a, ps("<configure node='po'/>", OWNER), "o2", "get") == \
            result(J, "o2", ja, ps("<configure node='po'>%s</configure>" % config_form(
                {"access_model": "open", "max_items": "max"}), OWNER))
        # the same options in other spellings match: 1 / true, 256 = max
        for i, opts in enumerate([[("pubsub#persist_items", "1")],
                                  [("pubsub#max_items", "256")],
                                  [("pubsub#max_items", "max"), ("pubsub#access_model", "open")]]):
            got = iq(a, publish("po", TUNE, "k%d" % i, opts), "o3%d" % i, "set")
            assert got == result(J, "o3%d" % i, ja, published("po", "k%d" % i)), got
        # mismatches
        for i, (opts, field) in enumerate([
                ([("pubsub#max_items", "255")], "max_items"),
                ([("pubsub#access_model", "presence")], "access_model"),
                ([("pubsub#persist_items", "0")], "persist_items")]):
            got = iq(a, publish("po", TUNE, "x", opts), "o4%d" % i, "set")
            assert got == error(J, "o4%d" % i, ja, "cancel", "conflict", "precondition-not-met",
                                "pubsub#%s differs from the node&apos;s configuration"
                                .replace("&apos;", "'") % field), got
        got = iq(a, publish("po", TUNE, "x", [("pubsub#frobnicate", "1")]), "o5", "set")
        assert got == error(J, "o5", ja, "cancel", "conflict", "precondition-not-met",
                            "unknown field pubsub#frobnicate"), got
        wrong = ps("<publish node='po'><item>%s</item></publish><publish-options>%s"
                   "</publish-options>" % (TUNE, form(PUBSUB + "#node_config",
                                                      [("pubsub#access_model", "open")])))
        assert iq(a, wrong, "o6", "set") == \
            error(J, "o6", ja, "modify", "bad-request",
                  text="not a submitted pubsub#publish-options form")
        # a value a node cannot have, authorize: not met either
        for i, (opts, why) in enumerate([
                ([("pubsub#max_items", "lots")], "bad value of pubsub#max_items"),
                ([("pubsub#access_model", "authorize")], "access model authorize not offered")]):
            got = iq(a, publish("po", TUNE, "x", opts), "o8%d" % i, "set")
            assert got == error(J, "o8%d" % i, ja, "cancel", "conflict", "precondition-not-met",
                                why), got
        # nothing was stored by the refused publishes
        got = iq(a, ps("<items node='po'><item id='x'/></items>"), "o7", "get")
        assert got == result(J, "o7", ja, items_of("po", [])), got


def test_omemo_sequence():
    """XEP-0384: the devicelist node exists with the default access model
    (presence); the client publishes with access_model=open, gets
    precondition-not-met, fetches the configure form, submits it with
    open, publishes again.  Bundles with max_items=max keep every
    device's item."""
    with Server(workers=2, users=USERS) as s:
        a, ja = login(s, "juliet", "phone")
        dl1 = "<list xmlns='eu.siacs.conversations.axolotl'><device id='1111'/></list>"
        dl2 = ("<list xmlns='eu.siacs.conversations.axolotl'><device id='1111'/>"
               "<device id='2222'/></list>")
        assert iq(a, publish(DEVLIST, dl1, "current"), "x1", "set") == \
            result(J, "x1", ja, published(DEVLIST, "current"))
        got = iq(a, publish(DEVLIST, dl2, "current", [("pubsub#access_model", "open")]),
                 "x2", "set")
        assert got == error(J, "x2", ja, "cancel", "conflict", "precondition-not-met",
                            "pubsub#access_model differs from the node's configuration"), got
        cur = config_form({})
        assert iq(a, ps("<configure node='%s'/>" % DEVLIST, OWNER), "x3", "get") == \
            result(J, "x3", ja, ps("<configure node='%s'>%s</configure>" % (DEVLIST, cur), OWNER))
        submit = cur.replace("type='form'", "type='submit'").replace(
            "<value>presence</value>", "<value>open</value>", 1)
        assert iq(a, ps("<configure node='%s'>%s</configure>" % (DEVLIST, submit), OWNER),
                  "x4", "set") == result(J, "x4", ja)
        assert iq(a, publish(DEVLIST, dl2, "current", [("pubsub#access_model", "open")]),
                  "x5", "set") == result(J, "x5", ja, published(DEVLIST, "current"))
        # a stranger (no subscription) reads the open devicelist
        c, jc = login(s, "nurse")
        assert iq(c, ps("<items node='%s'/>" % DEVLIST), "x6", "get", to=J) == \
            result(J, "x6", jc, items_of(DEVLIST, [("current", dl2)]))
        # OMEMO 2 bundles: one item per device, max_items=max
        bopts = [("pubsub#max_items", "max"), ("pubsub#access_model", "open")]
        b1 = "<bundle xmlns='urn:xmpp:omemo:2'><spk id='1'>AAAA</spk></bundle>"
        b2 = "<bundle xmlns='urn:xmpp:omemo:2'><spk id='2'>BBBB</spk></bundle>"
        assert iq(a, publish("urn:xmpp:omemo:2:bundles", b1, "1111", bopts), "x7", "set") == \
            result(J, "x7", ja, published("urn:xmpp:omemo:2:bundles", "1111"))
        d, jd = login(s, "juliet", "laptop")
        assert iq(d, publish("urn:xmpp:omemo:2:bundles", b2, "2222", bopts), "x8", "set") == \
            result(J, "x8", jd, published("urn:xmpp:omemo:2:bundles", "2222"))
        assert iq(c, ps("<items node='urn:xmpp:omemo:2:bundles'/>"), "x9", "get", to=J) == \
            result(J, "x9", jc, items_of("urn:xmpp:omemo:2:bundles",
                                         [("1111", b1), ("2222", b2)]))
        # a missing bundle reads as item-not-found (Conversations: not "PEP broken")
        assert iq(c, ps("<items node='%s.bundles:3333'/>" % "eu.siacs.conversations.axolotl"),
                  "x10", "get", to=J) == error(J, "x10", jc, "cancel", "item-not-found")


# ---- access -----------------------------------------------------------------

def subscribe_from(s, owner, contact):
    """contact gets a presence subscription to owner (from on owner's side)."""
    s.db.psql("INSERT INTO roster_items (account_id, contact, subscription, groups) "
              "SELECT id, '%s', 'from', '{Friends}' FROM accounts WHERE username = '%s'"
              % (contact, owner), conninfo=s.db.conninfo)


def test_access_models():
    with Server(workers=1, users=USERS) as s:
        a, ja = login(s, "juliet")
        b, jb = login(s, "romeo")
        c, jc = login(s, "nurse")
        subscribe_from(s, "juliet", R)
        for node, model in (("pres", "presence"), ("ros", "roster"), ("wl", "whitelist"),
                            ("op", "open")):
            got = iq(a, publish(node, TUNE, "1", [("pubsub#access_model", model)]),
                     "a" + node, "set")
            assert got == result(J, "a" + node, ja, published(node, "1")), got
        one = items_of
        # romeo (from) reads presence; nurse does not
        assert iq(b, ps("<items node='pres'/>"), "b1", "get", to=J) == \
            result(J, "b1", jb, one("pres", [("1", TUNE)]))
        assert iq(c, ps("<items node='pres'/>"), "b2", "get", to=J) == \
            error(J, "b2", jc, "auth", "not-authorized", "presence-subscription-required")
        # roster: in no allowed group yet
        assert iq(b, ps("<items node='ros'/>"), "b3", "get", to=J) == \
            error(J, "b3", jb, "auth", "not-authorized", "not-in-roster-group")
        assert iq(a, ps("<configure node='ros'>%s</configure>" % form(
            PUBSUB + "#node_config", [("pubsub#roster_groups_allowed", "Friends")]), OWNER),
            "b4", "set") == result(J, "b4", ja)
        assert iq(b, ps("<items node='ros'/>"), "b5", "get", to=J) == \
            result(J, "b5", jb, one("ros", [("1", TUNE)]))
        assert iq(c, ps("<items node='ros'/>"), "b6", "get", to=J) == \
            error(J, "b6", jc, "auth", "not-authorized", "not-in-roster-group")
        # whitelist: members only
        assert iq(b, ps("<items node='wl'/>"), "b7", "get", to=J) == \
            error(J, "b7", jb, "cancel", "not-allowed", "closed-node")
        assert iq(a, ps("<affiliations node='wl'><affiliation jid='%s' affiliation='member'/>"
                        "</affiliations>" % R, OWNER), "b8", "set") == result(J, "b8", ja)
        assert iq(a, ps("<affiliations node='wl'/>", OWNER), "b9", "get") == \
            result(J, "b9", ja, ps("<affiliations node='wl'><affiliation jid='%s' "
                                   "affiliation='owner'/><affiliation jid='%s' "
                                   "affiliation='member'/></affiliations>" % (J, R), OWNER))
        assert iq(b, ps("<items node='wl'/>"), "b10", "get", to=J) == \
            result(J, "b10", jb, one("wl", [("1", TUNE)]))
        assert iq(a, ps("<affiliations node='wl'><affiliation jid='%s' affiliation='owner'/>"
                        "</affiliations>" % R, OWNER), "b11", "set") == \
            error(J, "b11", ja, "modify", "not-acceptable", text="a PEP node has one owner")
        # open: anyone; an outcast nobody
        assert iq(c, ps("<items node='op'/>"), "b12", "get", to=J) == \
            result(J, "b12", jc, one("op", [("1", TUNE)]))
        assert iq(a, ps("<affiliations node='op'><affiliation jid='%s' affiliation='outcast'/>"
                        "</affiliations>" % "nurse@localhost", OWNER), "b13", "set") == \
            result(J, "b13", ja)
        assert iq(c, ps("<items node='op'/>"), "b14", "get", to=J) == \
            error(J, "b14", jc, "auth", "forbidden")
        # the requester's own affiliations (XEP-0060 5.7)
        assert iq(b, ps("<affiliations/>"), "b15", "get", to=J) == \
            result(J, "b15", jb, ps("<affiliations><affiliation affiliation='member' "
                                    "node='wl'/></affiliations>"))
        assert iq(b, ps("<subscriptions/>"), "b16", "get", to=J) == \
            result(J, "b16", jb, ps("<subscriptions/>"))
        # retract by another account
        assert iq(b, ps("<retract node='op'><item id='1'/></retract>"), "b17", "set", to=J) == \
            error(J, "b17", jb, "auth", "forbidden", text="retract of another account's item")
        # non-existent account
        assert iq(b, ps("<items node='op'/>"), "b18", "get", to="ghost@localhost") == \
            error("ghost@localhost", "b18", jb, "cancel", "service-unavailable")


# ---- disco ------------------------------------------------------------------

FEATURES = ["access-presence", "auto-create", "auto-subscribe", "config-node",
            "config-node-max", "create-and-configure", "create-nodes", "delete-items",
            "delete-nodes", "filtered-notifications", "item-ids", "last-published",
            "manage-subscriptions", "member-affiliation", "modify-affiliations", "multi-items",
            "outcast-affiliation", "persistent-items", "presence-notifications",
            "presence-subscribe", "publish", "publish-options",
            "purge-nodes", "retract-items", "retrieve-affiliations", "retrieve-default",
            "retrieve-items", "retrieve-subscriptions", "subscribe", "pubsub-on-a-jid",
            "rsm"]
PEP_FEATURES = "<feature var='%s'/>" % PUBSUB + "".join(
    "<feature var='%s#%s'/>" % (PUBSUB, f) for f in FEATURES)
# worker/pep_compat.c (XEP-0402 compat, XEP-0398), after caps_ext in ext.c
PEP_FEATURES += ("<feature var='urn:xmpp:bookmarks:1#compat'/>"
                 "<feature var='urn:xmpp:bookmarks:1#compat-pep'/>"
                 "<feature var='urn:xmpp:pep-vcard-conversion:0'/>")
PEP_ID = "<identity category='pubsub' type='pep'/>"
INFO = "http://jabber.org/protocol/disco#info"
ITEMS = "http://jabber.org/protocol/disco#items"


def test_disco():
    with Server(workers=2, users=USERS) as s:
        a, ja = login(s, "juliet")
        b, jb = login(s, "romeo")
        c, jc = login(s, "nurse")
        own = iq(a, "<query xmlns='%s'/>" % INFO, "d1", "get", to=J)
        assert own.startswith(result(J, "d1", ja, "<query xmlns='%s'><identity category="
                                                  "'account' type='registered'/>%s" % (INFO, PEP_ID))[:-len("</iq>")]), own
        assert PEP_FEATURES + "</query></iq>" in own, own
        # a contact with a subscription gets the same; a stranger and a
        # non-existent account get service-unavailable
        subscribe_from(s, "juliet", R)
        got = iq(b, "<query xmlns='%s'/>" % INFO, "d2", "get", to=J)
        assert got == own.replace("id='d1'", "id='d2'").replace("to='%s'" % ja, "to='%s'" % jb), got
        assert iq(c, "<query xmlns='%s'/>" % INFO, "d3", "get", to=J) == \
            error(J, "d3", jc, "cancel", "service-unavailable")
        assert iq(c, "<query xmlns='%s'/>" % INFO, "d4", "get", to="ghost@localhost") == \
            error("ghost@localhost", "d4", jc, "cancel", "service-unavailable")
        # disco#items lists what the requester may read
        iq(a, publish("pres", TUNE, "1"), "p1", "set")
        iq(a, publish("op", TUNE, "1", [("pubsub#access_model", "open")]), "p2", "set")
        iq(a, publish("wl", TUNE, "1", [("pubsub#access_model", "whitelist")]), "p3", "set")
        q = "<query xmlns='%s'/>" % ITEMS

        def listing(*nodes):
            return "<query xmlns='%s'>%s</query>" % (ITEMS, "".join(
                "<item jid='%s' node='%s'/>" % (J, n) for n in nodes))
        assert iq(a, q, "d5", "get", to=J) == result(J, "d5", ja, listing("op", "pres", "wl"))
        assert iq(b, q, "d6", "get", to=J) == result(J, "d6", jb, listing("op", "pres"))
        assert iq(c, q, "d7", "get", to=J) == result(J, "d7", jc, listing("op"))
        assert iq(c, q, "d8", "get", to="ghost@localhost") == \
            error("ghost@localhost", "d8", jc, "cancel", "service-unavailable")
        # a node's disco#info
        assert iq(c, "<query xmlns='%s' node='op'/>" % INFO, "d9", "get", to=J) == \
            result(J, "d9", jc, "<query xmlns='%s' node='op'><identity category='pubsub' "
                                "type='leaf'/><feature var='%s'/><x xmlns='jabber:x:data' "
                                "type='result'><field var='FORM_TYPE' type='hidden'><value>"
                                "%s#meta-data</value></field><field var='pubsub#owner' "
                                "type='jid-list'><value>%s</value></field><field "
                                "var='pubsub#access_model'><value>open</value></field><field "
                                "var='pubsub#title'><value/></field><field var='pubsub#type'>"
                                "<value/></field></x></query>" % (INFO, PUBSUB, PUBSUB, J))
        assert iq(c, "<query xmlns='%s' node='op'/>" % ITEMS, "d9b", "get", to=J) == \
            result(J, "d9b", jc, "<query xmlns='%s' node='op'/>" % ITEMS)
        assert iq(c, "<query xmlns='%s' node='wl'/>" % INFO, "d10", "get", to=J) == \
            error(J, "d10", jc, "cancel", "item-not-found")
        # the domain lists pubsub/pep and publish-options (profanity)
        dom = iq(a, "<query xmlns='%s'/>" % INFO, "d11", "get", to="localhost")
        assert ("<identity category='server' type='im' name='xmppd'/>%s" % PEP_ID) in dom, dom
        assert "<feature var='%s#publish-options'/>" % PUBSUB in dom, dom


# ---- persistence ------------------------------------------------------------

def test_restart_and_account_deletion():
    with Server(workers=1, users=USERS) as s:
        a, ja = login(s, "juliet")
        assert iq(a, publish("tune", TUNE, "t"), "s1", "set") == \
            result(J, "s1", ja, published("tune", "t"))
        a.close()
        restart(s)
        a, ja = login(s, "juliet")
        assert iq(a, ps("<items node='tune'/>"), "s2", "get") == \
            result(J, "s2", ja, items_of("tune", [("t", TUNE)]))
        a.close()
        s.ctl_config("user", "del", J)
        out = s.db.psql("SELECT count(*) FROM pubsub_nodes UNION ALL "
                        "SELECT count(*) FROM pubsub_items", conninfo=s.db.conninfo)
        assert re.findall(r"^\s*(\d+)\s*$", out, re.M) == ["0", "0"], out


def test_database_down():
    """PostgreSQL away: every PEP request gets a wait error at once; back
    up: answered again, the items kept."""
    proxy = PgProxy(pg_target()).start()
    try:
        s = proxied_server(proxy, workers=1, users=USERS)
        with running(s):
            a, ja = login(s, "juliet")
            assert iq(a, publish("tune", TUNE, "t"), "w1", "set") == \
                result(J, "w1", ja, published("tune", "t"))
            mark = len(s.log_text())
            proxy.stop()
            wait_for(lambda: "database unavailable" in s.log_text()[mark:],
                     what="the worker to see the link down")
            for i, (body, t, to) in enumerate((
                    (publish("tune", TUNE, "u"), "set", None),
                    (ps("<items node='tune'/>"), "get", None),
                    (ps("<configure node='tune'/>", OWNER), "get", None),
                    ("<query xmlns='%s'/>" % ITEMS, "get", J))):
                got = iq(a, body, "w2%d" % i, t, to=to)
                assert got == error(J, "w2%d" % i, ja, "wait", "resource-constraint"), got
            mark = len(s.log_text())
            proxy.start()
            wait_for(lambda: "database link up" in s.log_text()[mark:], timeout=20,
                     what="the link back up")
            assert iq(a, ps("<items node='tune'/>"), "w3", "get") == \
                result(J, "w3", ja, items_of("tune", [("t", TUNE)]))
    finally:
        proxy.close()


def test_payload_namespaces():
    """A payload keeps its namespace whatever it is (also one the server
    might have used internally); a payload root in no namespace is
    invalid-payload (XEP-0060 7.1.3.5), a descendant in none stays so."""
    with Server(workers=1, users=USERS) as s:
        a, ja = login(s, "juliet")
        spoof = ("<items xmlns='urn:xmppd:no-namespace' node='spoof'>"
                 "<item id='fake'/></items>")
        assert iq(a, publish("n", spoof, "1"), "s1", "set") == \
            result(J, "s1", ja, published("n", "1"))
        assert iq(a, ps("<items node='n'/>"), "s2", "get") == \
            result(J, "s2", ja, items_of("n", [("1", spoof)]))
        assert iq(a, publish("n", "<x xmlns=''/>", "2"), "s3", "set") == \
            error(J, "s3", ja, "modify", "bad-request", "invalid-payload",
                  "the payload element has no namespace")
        assert "refused: bad-request: the payload element has no namespace" in s.log_text()
        inner = "<a xmlns='urn:a'><b xmlns=''><c/></b><d/></a>"
        assert iq(a, ps("<publish node='m'><item id='3'>%s</item></publish>" % inner),
                  "s4", "set") == result(J, "s4", ja, published("m", "3"))
        assert iq(a, ps("<items node='m'/>"), "s5", "get") == \
            result(J, "s5", ja, items_of("m", [("3", inner)]))


def test_long_names():
    """Node names and item ids are bounded by pep.max_id_length (a client
    error, not a database one); both count against the account's quota."""
    with Server(workers=1, users=USERS,
                overrides={"pep.max_account_bytes": "64K"}) as s:
        a, ja = login(s, "juliet")
        node_err = "node name longer than pep.max_id_length"
        for k, node in enumerate(["n" * 1025, "x" * 4000]):
            assert iq(a, publish(node, TUNE, "1"), "l%d" % k, "set") == \
                error(J, "l%d" % k, ja, "modify", "not-acceptable", text=node_err)
        assert iq(a, ps("<create node='%s'/>" % ("c" * 1025)), "l2", "set") == \
            error(J, "l2", ja, "modify", "not-acceptable", text=node_err)
        assert iq(a, ps("<items node='%s'/>" % ("c" * 1025)), "l3", "get") == \
            error(J, "l3", ja, "modify", "not-acceptable", text=node_err)
        assert iq(a, publish("i", TUNE, "i" * 1025), "l4", "set") == \
            error(J, "l4", ja, "modify", "not-acceptable",
                  text="item id longer than pep.max_id_length")
        assert "refused: not-acceptable: " + node_err in s.log_text()
        assert "pep query failed" not in s.log_text()   # no internal-server-error
        # at the bound: stored and read back
        node = "N" * 1024
        assert iq(a, publish(node, TUNE, "I" * 1024), "l5", "set") == \
            result(J, "l5", ja, published(node, "I" * 1024))
        assert iq(a, ps("<items node='%s'/>" % node), "l6", "get") == \
            result(J, "l6", ja, items_of(node, [("I" * 1024, TUNE)]))
        # ids count: the quota holds what the bytes say, then refuses
        assert iq(a, ps("<purge node='%s'/>" % node, OWNER), "l7", "set") == \
            result(J, "l7", ja)
        cfg = "<configure>%s</configure>" % form(PUBSUB + "#node_config",
                                                 [("pubsub#max_items", "max")])
        assert iq(a, ps("<create node='big'/>" + cfg), "l8", "set") == result(J, "l8", ja)
        payload = "<x xmlns='y'/>"
        per_item = 1000 + len(payload)
        used = len(node) + len("big")
        fits = (64 * 1024 - used) // per_item
        for i in range(fits + 1):
            iid = "%04d" % i + "i" * 996
            got = iq(a, publish("big", payload, iid), "b%d" % i, "set")
            if i < fits:
                assert got == result(J, "b%d" % i, ja, published("big", iid)), got
            else:
                assert got == ("<iq from='%s' id='b%d' to='%s' type='error'><error "
                               "type='modify'><not-acceptable xmlns='%s'/><text xmlns="
                               "'%s'>PEP storage quota of the account reached</text>"
                               "</error></iq>" % (J, i, ja, STANZAS, STANZAS)), got
        # a node name counts too: a new node past the quota is refused
        # and not left behind
        assert iq(a, ps("<create node='%s'/>" % ("z" * 1000)), "l9", "set") == \
            error(J, "l9", ja, "modify", "not-acceptable",
                  text="PEP storage quota of the account reached")
        assert iq(a, publish("z" * 1000, payload, "1"), "l10", "set") == \
            ("<iq from='%s' id='l10' to='%s' type='error'><error type='modify'>"
             "<not-acceptable xmlns='%s'/><text xmlns='%s'>PEP storage quota of the "
             "account reached</text></error></iq>" % (J, ja, STANZAS, STANZAS))
        got = iq(a, "<query xmlns='http://jabber.org/protocol/disco#items'/>", "l11", "get",
                 to=J)
        assert "z" * 1000 not in got and "node='big'" in got, got


def test_affiliations_duplicate_jid():
    """The same JID twice in one owner affiliations set (XEP-0060 8.9.2
    does not say which wins): bad-request, nothing changed."""
    with Server(workers=1, users=USERS) as s:
        a, ja = login(s, "juliet")
        assert iq(a, publish("n", TUNE, "1"), "d1", "set") == result(J, "d1", ja, published("n", "1"))
        assert iq(a, ps("<affiliations node='n'><affiliation jid='%s' affiliation='member'/>"
                        "<affiliation jid='%s/x' affiliation='outcast'/></affiliations>"
                        % (R, R), OWNER), "d2", "set") == \
            error(J, "d2", ja, "modify", "bad-request",
                  text="the same JID twice in an affiliations set")
        assert "refused: bad-request: the same JID twice in an affiliations set" in s.log_text()
        assert iq(a, ps("<affiliations node='n'/>", OWNER), "d3", "get") == \
            result(J, "d3", ja, ps("<affiliations node='n'><affiliation jid='%s' "
                                   "affiliation='owner'/></affiliations>" % J, OWNER))


def test_request_errors():
    """Each malformed request the parser refuses: its exact error, with
    the reason as <text/> and in the log; the stored node is unchanged."""
    with Server(workers=1, users=USERS, overrides={"pep.max_items": "2"}) as s:
        a, ja = login(s, "juliet")
        assert iq(a, publish("n", TUNE, "1"), "q0", "set") == result(J, "q0", ja, published("n", "1"))

        def refused(body, iq_id, iq_type, etype, cond, app, text, ns=PUBSUB):
            got = iq(a, ps(body, ns), iq_id, iq_type)
            if app is not None and app.startswith("<"):
                want = ("<iq from='%s' id='%s' to='%s' type='error'><error type='%s'>"
                        "<%s xmlns='%s'/><text xmlns='%s'>%s</text>%s</error></iq>"
                        % (J, iq_id, ja, etype, cond, STANZAS, STANZAS, text, app))
            else:
                want = error(J, iq_id, ja, etype, cond, app, text)
            assert got == want, got
            assert "refused: %s: %s" % (cond, text) in s.log_text()

        # items (section 6.5): ids must be <item id=''/>, at most pep.max_items of them
        refused("<items node='n'><item/></items>", "q1", "get", "modify", "bad-request",
                None, "an item without an id")
        refused("<items node='n'><item id='1'/><item id='2'/><item id='3'/></items>", "q2",
                "get", "modify", "bad-request", None, "too many item ids")
        # owner requests (section 8)
        refused("<subscribe node='n'/>", "q3", "get", "modify", "bad-request", None,
                "not an owner request we know", OWNER)
        refused("<purge/>", "q4", "set", "modify", "bad-request", "nodeid-required",
                "owner request without a node", OWNER)
        # affiliations set (section 8.9.2)
        affs = "<affiliations node='n'>%s</affiliations>"
        refused(affs % ("<affiliation jid='%s'/>" % R), "q5", "set", "modify", "bad-request",
                None, "affiliation without jid or affiliation", OWNER)
        refused(affs % "<affiliation jid='a@b@c' affiliation='member'/>", "q6", "set",
                "modify", "bad-request", None, "affiliation of a bad JID", OWNER)
        refused(affs % ("<affiliation jid='%s' affiliation='publisher'/>" % R), "q7", "set",
                "modify", "not-acceptable", None, "affiliation not offered", OWNER)
        many = "".join("<affiliation jid='u%d@localhost' affiliation='member'/>" % k
                       for k in range(65))
        refused(affs % many, "q8", "set", "modify", "not-acceptable", None,
                "too many affiliations", OWNER)
        # the pubsub element (section 5, 6.1, 6.3)
        refused("", "q9", "get", "modify", "bad-request", None, "empty pubsub element")
        refused("<frobnicate node='n'/>", "q10", "set", "modify", "bad-request", None,
                "not a pubsub request we know")
        refused("<publish node='n'/>", "q11", "get", "modify", "bad-request", None,
                "not a pubsub request we know")
        refused("<subscribe node='n' jid='%s'/>" % R, "q12", "set", "modify", "bad-request",
                "invalid-jid", "subscription jid is not the requester's")
        refused("<subscribe jid='%s'/>" % ja, "q13", "set", "modify", "bad-request",
                "nodeid-required", "subscription without a node")
        refused("<options node='n' jid='%s'/>" % ja, "q14", "get", "cancel",
                "feature-not-implemented",
                "<unsupported xmlns='%s' feature='subscription-options'/>" % ERRORS,
                "subscription options")
        # unsubscribe without a subscription (test_pep_subscribe has the rest)
        got = iq(a, ps("<unsubscribe node='n' jid='%s'/>" % ja), "q16", "set")
        assert got == error(J, "q16", ja, "cancel", "unexpected-request", "not-subscribed",
                              "no such subscription"), got
        # none of it touched the node
        assert iq(a, ps("<items node='n'/>"), "q17", "get") == \
            result(J, "q17", ja, ps("<items node='n'><item id='1'>%s</item></items>" % TUNE))
        assert iq(a, ps("<affiliations node='n'/>", OWNER), "q18", "get") == \
            result(J, "q18", ja, ps("<affiliations node='n'><affiliation jid='%s' "
                                    "affiliation='owner'/></affiliations>" % J, OWNER))


def test_items_reply_bound():
    """An items reply holds the newest items that fit in half of
    c2s.max_output_bytes (XEP-0060 6.5.4: some items), never none."""
    with Server(workers=1, users=USERS,
                overrides={"c2s.max_output_bytes": "64K"}) as s:
        a, ja = login(s, "juliet")
        cfg = "<configure>%s</configure>" % form(PUBSUB + "#node_config",
                                                 [("pubsub#max_items", "max")])
        assert iq(a, ps("<create node='big'/>" + cfg), "r0", "set") == result(J, "r0", ja)
        blob = "<b xmlns='urn:b'>%s</b>" % ("y" * 10000)
        for i in range(1, 6):
            assert iq(a, publish("big", blob, str(i)), "r%d" % i, "set") == \
                result(J, "r%d" % i, ja, published("big", str(i)))
        fits = (64 * 1024 // 2) // (len(blob) + 1 + 16)
        assert 1 < fits < 5
        newest = [(str(i), blob) for i in range(6 - fits, 6)]
        assert iq(a, ps("<items node='big'/>"), "g1", "get") == \
            result(J, "g1", ja, items_of("big", newest))
        assert iq(a, ps("<items node='big' max_items='2'/>"), "g2", "get") == \
            result(J, "g2", ja, items_of("big", newest[-2:]))
        assert iq(a, ps("<items node='big'><item id='1'/><item id='2'/></items>"), "g3",
                  "get") == result(J, "g3", ja, items_of("big", [("1", blob), ("2", blob)]))
        # one item larger than the bound still comes
        huge = "<b xmlns='urn:b'>%s</b>" % ("z" * 40000)
        assert iq(a, publish("huge", huge, "h"), "r9", "set") == \
            result(J, "r9", ja, published("huge", "h"))
        assert iq(a, ps("<items node='huge'/>"), "g4", "get") == \
            result(J, "g4", ja, items_of("huge", [("h", huge)]))


def test_blocked_requester():
    """XEP-0191 3.5: an entity the account blocks gets service-unavailable
    for every PEP IQ (as if there were no account); others are served."""
    with Server(workers=2, users=USERS) as s:
        a, ja = login(s, "juliet")
        b, jb = login(s, "romeo")
        c, jc = login(s, "nurse", resource="bad")
        d, jd = login(s, "nurse", resource="good")
        subscribe_from(s, "juliet", R)
        assert iq(a, publish("op", TUNE, "1", [("pubsub#access_model", "open")]), "p1",
                  "set") == result(J, "p1", ja, published("op", "1"))
        reads = [("<query xmlns='%s'/>" % INFO, "info"),
                 ("<query xmlns='%s'/>" % ITEMS, "items"),
                 ("<query xmlns='%s' node='op'/>" % INFO, "node"),
                 (ps("<items node='op'/>"), "get"),
                 (ps("<affiliations/>"), "affs"),
                 (ps("<subscribe node='op' jid='%s'/>" % R), "sub")]
        before = {}
        for body, k in reads:
            before[k] = iq(b, body, "b-" + k, "get" if k != "sub" else "set", to=J)
        assert before["get"] == result(J, "b-get", jb, items_of("op", [("1", TUNE)]))
        assert "type='result'" in before["info"] and "type='result'" in before["node"]
        got = iq(a, "<block xmlns='urn:xmpp:blocking'><item jid='%s'/><item jid='%s'/>"
                 "</block>" % (R, jc), "bl", "set")
        assert "type='result'" in got, got
        for body, k in reads:
            assert iq(b, body, "a-" + k, "get" if k != "sub" else "set", to=J) == \
                error(J, "a-" + k, jb, "cancel", "service-unavailable")
        assert "pep: %s (%s) refused: service-unavailable: blocked by the account" % (jb, J) \
            in s.log_text()
        # a full-JID block is that resource only
        assert iq(c, ps("<items node='op'/>"), "c1", "get", to=J) == \
            error(J, "c1", jc, "cancel", "service-unavailable")
        assert iq(d, ps("<items node='op'/>"), "c2", "get", to=J) == \
            result(J, "c2", jd, items_of("op", [("1", TUNE)]))
        # the owner is never blocked from their own service
        assert iq(a, ps("<items node='op'/>"), "c3", "get") == \
            result(J, "c3", ja, items_of("op", [("1", TUNE)]))


def test_affiliations_bounded():
    """pep.max_affiliations per node: a change that would pass it gets
    policy-violation and changes nothing; removals and changes of present
    JIDs pass; the JIDs count against pep.max_account_bytes."""
    with Server(workers=1, users=USERS,
                overrides={"pep.max_affiliations": "3", "pep.max_account_bytes": "64K"}) as s:
        a, ja = login(s, "juliet")
        assert iq(a, ps("<create node='wl'/>"), "c1", "set") == result(J, "c1", ja)

        def affs(*pairs):
            return ps("<affiliations node='wl'>%s</affiliations>" % "".join(
                "<affiliation jid='%s' affiliation='%s'/>" % p for p in pairs), OWNER)

        def listed(*pairs):
            return result(J, "l", ja, affs((J, "owner"), *pairs))
        m = ["m%d@localhost" % k for k in range(5)]
        assert iq(a, affs((m[0], "member"), (m[1], "member"), (m[2], "outcast")), "a1", "set") \
            == result(J, "a1", ja)
        got = iq(a, affs((m[3], "member")), "a2", "set")
        assert got == error(J, "a2", ja, "modify", "policy-violation",
                            text="at most 3 affiliations per node"), got
        assert "pep: %s: affiliations refused: pep.max_affiliations (3) reached" % ja \
            in s.log_text()
        # all or nothing: a request that removes one and adds two
        got = iq(a, affs((m[0], "none"), (m[3], "member"), (m[4], "member")), "a3", "set")
        assert got == error(J, "a3", ja, "modify", "policy-violation",
                            text="at most 3 affiliations per node"), got
        assert iq(a, ps("<affiliations node='wl'/>", OWNER), "l", "get") == \
            listed((m[0], "member"), (m[1], "member"), (m[2], "outcast"))
        # changing one present, and swapping one for another, pass
        assert iq(a, affs((m[2], "member"), (m[1], "none"), (m[3], "member")), "a4", "set") \
            == result(J, "a4", ja)
        assert iq(a, ps("<affiliations node='wl'/>", OWNER), "l", "get") == \
            listed((m[0], "member"), (m[2], "member"), (m[3], "member"))
        # the quota: long JIDs on another node fill it
        counted = int(sql(s, "SELECT xmppd_pep_account_bytes(id) FROM accounts "
                          "WHERE username = 'juliet'"))
        assert counted == len("wl") + len(m[0]) + len(m[2]) + len(m[3]), counted
        refused = None
        for k in range(40):
            assert iq(a, ps("<create node='n%d'/>" % k), "n%d" % k, "set") == \
                result(J, "n%d" % k, ja)
            got = iq(a, ps("<affiliations node='n%d'>%s</affiliations>" % (k, "".join(
                "<affiliation jid='%s%d-%d@localhost' affiliation='member'/>"
                % ("u" * 1000, k, i) for i in range(3))), OWNER), "f%d" % k, "set")
            if got != result(J, "f%d" % k, ja):
                refused = k
                assert got == error(J, "f%d" % k, ja, "modify", "not-acceptable",
                                    text="PEP storage quota of the account reached"), got
                break
        assert refused is not None and refused > 10, refused
        assert int(sql(s, "SELECT xmppd_pep_account_bytes(id) FROM accounts "
                       "WHERE username = 'juliet'")) <= 64 << 10
        assert sql(s, "SELECT count(*) FROM pubsub_affiliations f JOIN pubsub_nodes n "
                   "ON n.id = f.node_id WHERE n.node = 'n%d'" % refused) == "0"


def test_deleted_account_loses_affiliations():
    """A deleted account's JID loses its affiliations on other accounts'
    nodes: whoever registers the name again cannot read a whitelist node
    the old account was a member of."""
    with Server(workers=1, users=USERS) as s:
        a, ja = login(s, "juliet")
        assert iq(a, publish("wl", TUNE, "1", [("pubsub#access_model", "whitelist")]),
                  "p1", "set") == result(J, "p1", ja, published("wl", "1"))
        assert iq(a, ps("<affiliations node='wl'><affiliation jid='%s' affiliation='member'/>"
                        "</affiliations>" % R, OWNER), "a1", "set") == result(J, "a1", ja)
        b, jb = login(s, "romeo")
        assert iq(b, ps("<items node='wl'/>"), "r1", "get", to=J) == \
            result(J, "r1", jb, items_of("wl", [("1", TUNE)]))
        b.close()
        s.ctl_config("user", "del", R)
        s.add_user(R, PASSWORDS["romeo"])
        b, jb = login(s, "romeo")
        assert iq(b, ps("<items node='wl'/>"), "r2", "get", to=J) == \
            error(J, "r2", jb, "cancel", "not-allowed", "closed-node")
        assert iq(a, ps("<affiliations node='wl'/>", OWNER), "a2", "get") == \
            result(J, "a2", ja, ps("<affiliations node='wl'><affiliation jid='%s' "
                                   "affiliation='owner'/></affiliations>" % J, OWNER))


RSM = "http://jabber.org/protocol/rsm"


def rsm_page(node, items, first_last, count, index=0):
    """An items result page with its XEP-0059 <set/>, items newest first;
    index: the first's place in the set (0: the newest)."""
    inner = ps("<items node='%s'/>" % node) if not items else items_of(node, items)
    fl = "<first index='%d'>%s</first><last>%s</last>" % ((index,) + first_last) \
        if first_last else ""
    return inner[:-len("</pubsub>")] + "<set xmlns='%s'>%s<count>%d</count></set></pubsub>" \
        % (RSM, fl, count)


def rsm_ask(node, set_inner, items_inner=""):
    body = "<items node='%s'>%s</items>" % (node, items_inner) if items_inner else \
        "<items node='%s'/>" % node
    return ps(body + "<set xmlns='%s'>%s</set>" % (RSM, set_inner))


def test_items_rsm():
    """XEP-0060 6.5.4 with XEP-0059: pages newest first with first, last
    and count; after pages to older items, before to newer ones, an empty
    before gives the oldest; max 0 the count only; with item ids; the
    errors (unknown after/before item-not-found, a bad max, after and
    before together and an empty after bad-request, index
    feature-not-implemented); the access model as for items; a reply
    bounded by half of c2s.max_output_bytes is a shorter page and the
    client pages the rest."""
    with Server(workers=1, users=USERS,
                overrides={"c2s.max_output_bytes": "64K"}) as s:
        a, ja = login(s, "juliet")
        c, jc = login(s, "nurse")
        cfg = "<configure>%s</configure>" % form(PUBSUB + "#node_config",
                                                 [("pubsub#max_items", "max")])
        assert iq(a, ps("<create node='feed'/>" + cfg), "c0", "set") == result(J, "c0", ja)
        it = {str(i): "<e xmlns='urn:e'>%d&amp;</e>" % i for i in range(1, 6)}
        for i in range(1, 6):
            assert iq(a, publish("feed", it[str(i)], str(i)), "p%d" % i, "set") == \
                result(J, "p%d" % i, ja, published("feed", str(i)))

        def page(*ids):
            return [(i, it[i]) for i in ids]

        def ask(iq_id, set_inner, items_inner=""):
            return iq(a, rsm_ask("feed", set_inner, items_inner), iq_id, "get")
        assert ask("r1", "<max>2</max>") == result(J, "r1", ja, rsm_page(
            "feed", page("5", "4"), ("5", "4"), 5))
        assert ask("r2", "<max>2</max><after>4</after>") == result(J, "r2", ja, rsm_page(
            "feed", page("3", "2"), ("3", "2"), 5, 2))
        assert ask("r3", "<max>2</max><after>2</after>") == result(J, "r3", ja, rsm_page(
            "feed", page("1"), ("1", "1"), 5, 4))
        assert ask("r4", "<max>2</max><after>1</after>") == result(J, "r4", ja, rsm_page(
            "feed", [], None, 5))
        assert ask("r5", "<max>2</max><before/>") == result(J, "r5", ja, rsm_page(
            "feed", page("2", "1"), ("2", "1"), 5, 3))
        assert ask("r6", "<max>2</max><before>2</before>") == result(J, "r6", ja, rsm_page(
            "feed", page("4", "3"), ("4", "3"), 5, 1))
        assert ask("r7", "<max>2</max><before>4</before>") == result(J, "r7", ja, rsm_page(
            "feed", page("5"), ("5", "5"), 5))
        assert ask("r8", "<max>0</max>") == result(J, "r8", ja, rsm_page("feed", [], None, 5))
        assert ask("r9", "") == result(J, "r9", ja, rsm_page(
            "feed", page("5", "4", "3", "2", "1"), ("5", "1"), 5))
        assert ask("r10", "<max>1</max>", "<item id='1'/><item id='3'/>") == \
            result(J, "r10", ja, rsm_page("feed", page("3"), ("3", "3"), 2))
        # without <set/> the reply is as before: oldest first, no <set/>
        assert iq(a, ps("<items node='feed' max_items='2'/>"), "r11", "get") == \
            result(J, "r11", ja, items_of("feed", page("4", "5")))
        # errors
        assert ask("e1", "<max>2</max><after>nope</after>") == error(
            J, "e1", ja, "cancel", "item-not-found",
            text="no such item for RSM after or before")
        assert ask("e2", "<before>gone</before>") == error(
            J, "e2", ja, "cancel", "item-not-found",
            text="no such item for RSM after or before")
        for n, bad in enumerate(("<max>x</max>", "<max>-1</max>", "<max/>",
                                 "<after>1</after><before>2</before>", "<after/>",
                                 "<max>1</max><max>2</max>", "<last>1</last>")):
            iq_id = "b%d" % n
            got = ask(iq_id, bad)
            assert re.fullmatch(re.escape(
                "<iq from='%s' id='%s' to='%s' type='error'><error type='modify'>"
                "<bad-request xmlns='%s'/>" % (J, iq_id, ja, STANZAS))
                + "<text xmlns='%s'>[^<]+</text></error></iq>" % re.escape(STANZAS),
                got), (bad, got)
        got = ask("e3", "<index>1</index>")
        assert got == ("<iq from='%s' id='e3' to='%s' type='error'><error type='cancel'>"
                       "<feature-not-implemented xmlns='%s'/><text xmlns='%s'>RSM index "
                       "not offered</text></error></iq>" % (J, ja, STANZAS, STANZAS)), got
        assert "refused: feature-not-implemented: RSM index not offered" in s.log_text()
        # the access model: a stranger, presence node
        assert iq(c, rsm_ask("feed", "<max>1</max>"), "e4", "get", to=J) == error(
            J, "e4", jc, "auth", "not-authorized", "presence-subscription-required")
        # bounded by output: a shorter page, the rest by after
        assert iq(a, ps("<create node='big'/>" + cfg), "c1", "set") == result(J, "c1", ja)
        blob = "<b xmlns='urn:b'>%s</b>" % ("y" * 10000)
        for i in range(1, 6):
            assert iq(a, publish("big", blob, "b%d" % i), "q%d" % i, "set") == \
                result(J, "q%d" % i, ja, published("big", "b%d" % i))
        fits = (64 * 1024 // 2) // (len(blob) + 2 + 16)
        assert 1 < fits < 5
        seen, after, n = [], "", 0
        while len(seen) < 5 and n < 10:
            n += 1
            got = iq(a, rsm_ask("big", "<max>5</max>" + after), "g%d" % n, "get")
            ids = re.findall("<item id='(b[0-9])'>", got)
            assert ids and len(ids) <= fits, got
            assert got == result(J, "g%d" % n, ja, rsm_page(
                "big", [(i, blob) for i in ids], (ids[0], ids[-1]), 5, len(seen))), got
            seen += ids
            after = "<after>%s</after>" % ids[-1]
        assert seen == ["b5", "b4", "b3", "b2", "b1"], seen
        assert n > 1


if __name__ == "__main__":
    only = sys.argv[1:]
    run_tests([f for n, f in sorted(globals().items(), key=lambda kv: 0)
               if n.startswith("test_") and callable(f) and (not only or n in only)])

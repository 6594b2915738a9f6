"""Per-account storage, black box with exact XML: XEP-0054 vcard-temp and
XEP-0049 private XML storage, read back from the same session, from other
sessions (on either worker), after a server restart on the same database,
and answered with a `wait` error while PostgreSQL is away.  Needs
XMPPD_TEST_PGCONN.
"""
import os
import re
import select
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Client, Server, pid_alive, run_tests, stanza_id_rx,  # noqa: E402
                     wait_for)
from test_pgdown import PgProxy, pg_target, proxied_server, running  # noqa: E402
from imlib import connect_on  # noqa: E402

STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
USERS = [("juliet@localhost", "r0m30!"), ("romeo@localhost", "jul13t?"),
         ("nurse@localhost", "s3cret")]
PASSWORDS = dict((j.split("@")[0], p) for j, p in USERS)

VCARD = ("<vCard xmlns='vcard-temp' version='3.0'><FN>Juliet Capulet</FN>"
         "<N><FAMILY>Capulet</FAMILY><GIVEN>Juliet</GIVEN><MIDDLE/></N>"
         "<NICKNAME>J &amp; R &lt;3</NICKNAME><DESC>Verona \u2014 1597</DESC>"
         "<PHOTO><TYPE>image/png</TYPE><BINVAL>iVBORw0KGgo=</BINVAL></PHOTO>"
         "</vCard>")
VCARD2 = "<vCard xmlns='vcard-temp'><FN>Juliet</FN></vCard>"
EMPTY_VCARD = "<vCard xmlns='vcard-temp'/>"
BOOKMARKS = ("<storage xmlns='storage:bookmarks'><conference "
             "jid='council@conference.localhost' autojoin='true' "
             "name='Council &amp; Co'><nick>Juliet</nick></conference></storage>")
PRIVATE = "jabber:iq:private"
# a namespace private.c keeps itself (storage:bookmarks goes to PEP with
# pep.bookmarks_compat, worker/pep_compat.c)
PREFS = "<prefs xmlns='exodus:prefs'><p>1</p></prefs>"


# ---- helpers ------------------------------------------------------------

def login(s, user, resource):
    c = Client(s.port)
    jid = c.login(user, PASSWORDS[user], resource=resource)
    return c, jid


def iq(c, body, iq_id, iq_type, to=None):
    """Send an IQ; return the reply with that id (exact text)."""
    t = " to='%s'" % to if to else ""
    c.send("<iq%s type='%s' id='%s'>%s</iq>" % (t, iq_type, iq_id, body))
    return c.read_until("<iq [^>]*id='%s'[^>]*?(/>|>.*?</iq>)" % iq_id)


def result(frm, iq_id, to, payload=None):
    head = "<iq from='%s' id='%s' to='%s' type='result'" % (frm, iq_id, to)
    return head + ("/>" if payload is None else ">%s</iq>" % payload)


def error(frm, iq_id, to, etype, cond):
    return ("<iq from='%s' id='%s' to='%s' type='error'><error type='%s'>"
            "<%s xmlns='%s'/></error></iq>" % (frm, iq_id, to, etype, cond, STANZAS))


def query(inner=""):
    if not inner:
        return "<query xmlns='%s'/>" % PRIVATE
    return "<query xmlns='%s'>%s</query>" % (PRIVATE, inner)


def on_two_workers(s):
    """juliet and romeo logged in on different workers."""
    for attempt in range(20):
        a, ja = login(s, "juliet", "a%d" % attempt)
        b, jb = login(s, "romeo", "b%d" % attempt)
        counts = wait_for(lambda: (lambda st: [w["connections"] for w in st["workers"]]
                                   if sum(w["connections"] for w in st["workers"]) == 2
                                   else None)(s.status()), what="connection counts")
        if counts == [1, 1]:
            return a, ja, b, jb
        a.close()
        b.close()
        wait_for(lambda: sum(w["connections"] for w in s.status()["workers"]) == 0,
                 what="connections gone")
    raise AssertionError("could not place two clients on two workers")


def restart(s):
    """SIGTERM the master and start the same Server again: same config,
    same database (Server.stop() would drop it)."""
    mark = len(s.log_text())
    os.kill(s.master_pid, signal.SIGTERM)
    wait_for(lambda: not pid_alive(s.master_pid), timeout=15, what="master exit")
    s.proc.wait(timeout=5)
    s.start()
    wait_for(lambda: s.log_text()[mark:].count("database link up") >= s.workers,
             what="database links up after the restart")


# ---- vcard-temp ---------------------------------------------------------

def test_vcard_set_get():
    with Server(workers=2, users=USERS) as s:
        a, ja, b, jb = on_two_workers(s)
        # Set without 'to' (one's own vCard), read back in the same session.
        assert iq(a, VCARD, "v1", "set") == result("juliet@localhost", "v1", ja)
        got = iq(a, EMPTY_VCARD, "v2", "get")
        assert got == result("juliet@localhost", "v2", ja, VCARD), got
        # From another user on the other worker (XEP-0054 section 3.3).
        got = iq(b, EMPTY_VCARD, "v3", "get", to="juliet@localhost")
        assert got == result("juliet@localhost", "v3", jb, VCARD), got
        # A set with 'to' = one's own bare JID is the same; it replaces.
        got = iq(a, VCARD2, "v4", "set", to="juliet@localhost")
        assert got == result("juliet@localhost", "v4", ja), got
        got = iq(b, EMPTY_VCARD, "v5", "get", to="juliet@localhost")
        assert got == result("juliet@localhost", "v5", jb, VCARD2), got
        # Another session of the same account, on whichever worker.
        c, jc = login(s, "juliet", "garden")
        got = iq(c, EMPTY_VCARD, "v6", "get")
        assert got == result("juliet@localhost", "v6", jc, VCARD2), got


def test_vcard_missing():
    with Server(workers=1, users=USERS) as s:
        a, ja = login(s, "juliet", "balcony")
        b, jb = login(s, "romeo", "street")
        # One's own, never set: an empty vCard (section 3.1).
        got = iq(b, EMPTY_VCARD, "m1", "get")
        assert got == result("romeo@localhost", "m1", jb, EMPTY_VCARD), got
        # Someone else's, never set, and an account that does not exist:
        # the same error for both (section 3.3, against harvesting).
        got = iq(a, EMPTY_VCARD, "m2", "get", to="romeo@localhost")
        assert got == error("romeo@localhost", "m2", ja, "cancel",
                            "service-unavailable"), got
        got = iq(a, EMPTY_VCARD, "m3", "get", to="nobody@localhost")
        assert got == error("nobody@localhost", "m3", ja, "cancel",
                            "service-unavailable"), got


def test_vcard_forbidden_and_limits():
    with Server(workers=1, users=USERS) as s:
        a, ja = login(s, "juliet", "balcony")
        b, jb = login(s, "romeo", "street")
        assert iq(b, VCARD2, "f0", "set") == result("romeo@localhost", "f0", jb)
        # Someone else's vCard, or a missing account's: forbidden (3.2).
        got = iq(a, VCARD, "f1", "set", to="romeo@localhost")
        assert got == error("romeo@localhost", "f1", ja, "auth", "forbidden"), got
        got = iq(a, VCARD, "f2", "set", to="nobody@localhost")
        assert got == error("nobody@localhost", "f2", ja, "auth", "forbidden"), got
        # More than 64 KiB serialized (the stanza itself is within the
        # 256 KiB stanza limit): not-acceptable, and nothing changes.
        big = "<vCard xmlns='vcard-temp'><PHOTO><BINVAL>%s</BINVAL></PHOTO></vCard>" % (
            "A" * (70 << 10))
        got = iq(b, big, "f3", "set")
        assert got == error("romeo@localhost", "f3", jb, "modify", "not-acceptable"), got
        got = iq(a, EMPTY_VCARD, "f4", "get", to="romeo@localhost")
        assert got == result("romeo@localhost", "f4", ja, VCARD2), got
        # Just under the limit is fine.
        fill = (64 << 10) - len("<vCard xmlns='vcard-temp'><FN></FN></vCard>")
        ok = "<vCard xmlns='vcard-temp'><FN>%s</FN></vCard>" % ("z" * fill)
        assert iq(b, ok, "f5", "set") == result("romeo@localhost", "f5", jb)
        got = iq(b, EMPTY_VCARD, "f6", "get")
        assert got == result("romeo@localhost", "f6", jb, ok), got


# ---- private XML storage ------------------------------------------------

def test_private_round_trip():
    with Server(workers=2, users=USERS) as s:
        a, ja = login(s, "juliet", "balcony")
        got = iq(a, query(BOOKMARKS), "p1", "set")
        assert got == result("juliet@localhost", "p1", ja), got
        got = iq(a, query("<storage xmlns='storage:bookmarks'/>"), "p2", "get")
        assert got == result("juliet@localhost", "p2", ja, query(BOOKMARKS)), got
        # A namespace never stored: the query as sent (XEP-0049 2.3).
        asked = query("<prefs xmlns='exodus:prefs'/>")
        got = iq(a, asked, "p3", "get")
        assert got == result("juliet@localhost", "p3", ja, asked), got
        # Several elements of one namespace, with nested namespaces.
        multi = ("<a xmlns='urn:example:multi'>1</a><b xmlns='urn:example:multi'>"
                 "<x xmlns='jabber:x:data' type='submit'/></b>")
        got = iq(a, query(multi), "p4", "set", to="juliet@localhost")
        assert got == result("juliet@localhost", "p4", ja), got
        # From another session (either worker); a set replaces.
        c, jc = login(s, "juliet", "garden")
        got = iq(c, query("<a xmlns='urn:example:multi'/>"), "p5", "get")
        assert got == result("juliet@localhost", "p5", jc, query(multi)), got
        repl = "<storage xmlns='storage:bookmarks'/>"
        assert iq(c, query(repl), "p6", "set") == result("juliet@localhost", "p6", jc)
        got = iq(a, query(repl), "p7", "get")
        assert got == result("juliet@localhost", "p7", ja, query(repl)), got


def test_private_errors():
    with Server(workers=1, users=USERS) as s:
        a, ja = login(s, "juliet", "balcony")
        b, jb = login(s, "romeo", "street")
        assert iq(b, query(BOOKMARKS), "e0", "set") == result("romeo@localhost", "e0", jb)
        # Another account's data, read or write: forbidden.
        for i, t in enumerate(("get", "set")):
            got = iq(a, query(BOOKMARKS), "e1%d" % i, t, to="romeo@localhost")
            assert got == error("romeo@localhost", "e1%d" % i, ja, "auth",
                                "forbidden"), got
        # No element, an element without a namespace of its own (it is in
        # jabber:iq:private), in the stanza's namespace, in two
        # namespaces: not-acceptable, get and set alike.
        bad = ["", "   ", "<prefs/>", "<prefs xmlns='jabber:client'/>",
               "<prefs xmlns=''/>",
               "<a xmlns='urn:example:a'/><b xmlns='urn:example:b'/>"]
        n = 0
        for inner in bad:
            for t in ("get", "set"):
                n += 1
                got = iq(a, query(inner), "e2%d" % n, t)
                assert got == error("juliet@localhost", "e2%d" % n, ja, "modify",
                                    "not-acceptable"), (inner, t, got)
        # Too large: not-acceptable, and romeo's data is untouched.
        big = "<big xmlns='urn:example:big'>%s</big>" % ("B" * (70 << 10))
        got = iq(a, query(big), "e3", "set")
        assert got == error("juliet@localhost", "e3", ja, "modify", "not-acceptable"), got
        got = iq(b, query("<storage xmlns='storage:bookmarks'/>"), "e4", "get")
        assert got == result("romeo@localhost", "e4", jb, query(BOOKMARKS)), got


def test_private_namespace_quota():
    with Server(workers=1, users=USERS) as s:
        a, ja = login(s, "nurse", "r")
        for i in range(100):
            got = iq(a, query("<d xmlns='urn:example:q%d'>%d</d>" % (i, i)), "q%d" % i, "set")
            assert got == result("nurse@localhost", "q%d" % i, ja), got
        got = iq(a, query("<d xmlns='urn:example:q100'/>"), "q100", "set")
        assert got == error("nurse@localhost", "q100", ja, "modify", "not-acceptable"), got
        # Replacing a namespace already held is still allowed.
        got = iq(a, query("<d xmlns='urn:example:q7'>new</d>"), "q7b", "set")
        assert got == result("nurse@localhost", "q7b", ja), got
        got = iq(a, query("<d xmlns='urn:example:q7'/>"), "q7c", "get")
        assert got == result("nurse@localhost", "q7c", ja,
                             query("<d xmlns='urn:example:q7'>new</d>")), got


# ---- the limits are settings ---------------------------------------------

def test_vcard_max_size_setting():
    """im.vcard_max_size set low: one byte over gets <not-acceptable/>
    type modify (and is logged), nothing changes; exactly at the limit
    is stored."""
    with Server(workers=1, users=USERS,
                overrides={"im.vcard_max_size": "1K"}) as s:
        b, jb = login(s, "romeo", "street")
        assert iq(b, VCARD2, "v0", "set") == result("romeo@localhost", "v0", jb)
        fill = 1024 - len("<vCard xmlns='vcard-temp'><FN></FN></vCard>")
        at = "<vCard xmlns='vcard-temp'><FN>%s</FN></vCard>" % ("z" * fill)
        over = "<vCard xmlns='vcard-temp'><FN>%s</FN></vCard>" % ("z" * (fill + 1))
        got = iq(b, over, "v1", "set")
        assert got == error("romeo@localhost", "v1", jb, "modify", "not-acceptable"), got
        got = iq(b, EMPTY_VCARD, "v2", "get")
        assert got == result("romeo@localhost", "v2", jb, VCARD2), got
        assert iq(b, at, "v3", "set") == result("romeo@localhost", "v3", jb)
        got = iq(b, EMPTY_VCARD, "v4", "get")
        assert got == result("romeo@localhost", "v4", jb, at), got
        assert "vCard of romeo@localhost refused: 1025 bytes " \
               "(im.vcard_max_size = 1024)" in s.log_text()


def test_private_max_size_setting():
    """im.private_max_size set low: the same for private XML."""
    with Server(workers=1, users=USERS,
                overrides={"im.private_max_size": "1K"}) as s:
        b, jb = login(s, "romeo", "street")
        fill = 1024 - len("<big xmlns='urn:example:big'></big>")
        at = "<big xmlns='urn:example:big'>%s</big>" % ("B" * fill)
        over = "<big xmlns='urn:example:big'>%s</big>" % ("B" * (fill + 1))
        got = iq(b, query(over), "p1", "set")
        assert got == error("romeo@localhost", "p1", jb, "modify", "not-acceptable"), got
        asked = query("<big xmlns='urn:example:big'/>")
        got = iq(b, asked, "p2", "get")
        assert got == result("romeo@localhost", "p2", jb, asked), got   # nothing stored
        assert iq(b, query(at), "p3", "set") == result("romeo@localhost", "p3", jb)
        got = iq(b, asked, "p4", "get")
        assert got == result("romeo@localhost", "p4", jb, query(at)), got
        assert "private XML of romeo@localhost refused: 1025 bytes " \
               "(im.private_max_size = 1024)" in s.log_text()


def test_private_max_namespaces_setting():
    """im.private_max_namespaces = 2: a third namespace is refused with
    <not-acceptable/> type modify (logged) and not stored; replacing a
    namespace already held still works."""
    with Server(workers=1, users=USERS,
                overrides={"im.private_max_namespaces": "2"}) as s:
        b, jb = login(s, "romeo", "street")
        got = iq(b, query("<big xmlns='urn:example:big'/>"), "n0", "set")
        assert got == result("romeo@localhost", "n0", jb), got
        got = iq(b, query(PREFS), "n1", "set")
        assert got == result("romeo@localhost", "n1", jb), got
        got = iq(b, query("<d xmlns='urn:example:third'/>"), "n2", "set")
        assert got == error("romeo@localhost", "n2", jb, "modify", "not-acceptable"), got
        got = iq(b, query("<d xmlns='urn:example:third'/>"), "n3", "get")
        assert got == result("romeo@localhost", "n3", jb,
                             query("<d xmlns='urn:example:third'/>")), got
        got = iq(b, query("<prefs xmlns='exodus:prefs'/>"), "n4", "set")
        assert got == result("romeo@localhost", "n4", jb), got
        assert "private XML of romeo@localhost: namespace urn:example:third " \
               "refused (im.private_max_namespaces = 2)" in s.log_text()


# ---- persistence and database failures ----------------------------------

def test_survives_restart():
    with Server(workers=2, users=USERS) as s:
        a, ja = login(s, "juliet", "balcony")
        assert iq(a, VCARD, "r1", "set") == result("juliet@localhost", "r1", ja)
        assert iq(a, query(BOOKMARKS), "r2", "set") == result("juliet@localhost", "r2", ja)
        a.close()
        restart(s)
        b, jb = login(s, "romeo", "street")
        got = iq(b, EMPTY_VCARD, "r3", "get", to="juliet@localhost")
        assert got == result("juliet@localhost", "r3", jb, VCARD), got
        a, ja = login(s, "juliet", "balcony")
        got = iq(a, query("<storage xmlns='storage:bookmarks'/>"), "r4", "get")
        assert got == result("juliet@localhost", "r4", ja, query(BOOKMARKS)), got


def test_database_down():
    """Link down: an immediate wait error; link lost while the query is
    out: the same, once the loss is seen; back up: answers again."""
    proxy = PgProxy(pg_target()).start()
    try:
        s = proxied_server(proxy, workers=1, users=USERS)
        with running(s):
            a, ja = login(s, "juliet", "balcony")
            assert iq(a, VCARD2, "d1", "set") == result("juliet@localhost", "d1", ja)
            mark = len(s.log_text())
            proxy.stop()
            wait_for(lambda: "database unavailable" in s.log_text()[mark:],
                     what="the worker to see the link down")
            for i, (body, t) in enumerate(((EMPTY_VCARD, "get"), (VCARD, "set"),
                                           (query(BOOKMARKS), "set"),
                                           (query("<storage xmlns='storage:bookmarks'/>"), "get"))):
                got = iq(a, body, "d2%d" % i, t)
                assert got == error("juliet@localhost", "d2%d" % i, ja, "wait",
                                    "resource-constraint"), got
            mark = len(s.log_text())
            proxy.start()
            wait_for(lambda: "database link up" in s.log_text()[mark:], timeout=20,
                     what="the link back up")
            got = iq(a, EMPTY_VCARD, "d3", "get")
            assert got == result("juliet@localhost", "d3", ja, VCARD2), got
            # A query in flight when the link goes: answered, not lost.
            proxy.freeze()
            a.send("<iq type='get' id='d4'>%s</iq>" % EMPTY_VCARD)
            time.sleep(0.3)
            assert b"id='d4'" not in a.buf
            proxy.stop()
            got = a.read_until("<iq [^>]*id='d4'[^>]*?(/>|>.*?</iq>)")
            assert got == error("juliet@localhost", "d4", ja, "wait",
                                "resource-constraint"), got
    finally:
        proxy.close()


# ---- stored stanzas that do not read back --------------------------------

def sql(s, text):
    return s.db.psql(text, s.db.conninfo).strip()


def test_offline_unreadable_kept():
    """An offline row that does not read back as a stanza is not dropped:
    the messages around it are delivered, it is logged with its row id at
    error level and moved to offline_unreadable, unchanged, for the
    operator."""
    with Server(workers=1, users=USERS) as s:
        r, jr = login(s, "romeo", "orchard")
        count = "SELECT count(*) FROM offline_messages"
        r.send("<message to='juliet@localhost' type='chat' id='u1'><body>one</body></message>")
        wait_for(lambda: sql(s, count) == "1", what="u1 stored")
        bad = [
            # What a version before the xml: fix stored for <xml:x/>.
            "<message to='juliet@localhost' type='chat' id='old' from='%s'>"
            "<x xmlns='http://www.w3.org/XML/1998/namespace'/></message>" % jr,
            "<message to='juliet@localhost' id='cut'><body>cut off",
            "<vCard xmlns='vcard-temp'/>",
        ]
        ids = [sql(s, "INSERT INTO offline_messages (account_id, sender, stanza) "
                      "VALUES (xmppd_account_id('juliet', 'localhost'), $q$%s$q$, "
                      "$q$%s$q$) RETURNING id" % (jr, text)) for text in bad]
        r.send("<message to='juliet@localhost' type='chat' id='u2'><body>two</body></message>")
        wait_for(lambda: sql(s, count) == "5", what="u2 stored")

        j, jj = login(s, "juliet", "balcony")
        j.send("<presence/>")
        j.read_until("<message to='juliet@localhost' type='chat' id='u1' from='%s'>"
                     "<body>one</body>%s<delay " % (re.escape(jr), stanza_id_rx(jj.split("/")[0])))
        j.read_until("<message to='juliet@localhost' type='chat' id='u2' from='%s'>"
                     "<body>two</body>%s<delay " % (re.escape(jr), stanza_id_rx(jj.split("/")[0])))
        wait_for(lambda: sql(s, count) == "0", what="delivered rows removed")
        aside = sql(s, "SELECT id, stanza = ANY(ARRAY[$q$%s$q$]), reason <> '' "
                       "FROM offline_unreadable ORDER BY id" % "$q$, $q$".join(bad))
        assert aside.split("\n") == ["%s|t|t" % i for i in ids], aside
        log = s.log_text()
        for i in ids:
            assert re.search(r" error: .*offline message %s of juliet@localhost "
                             r"unreadable \(.+\): moved to offline_unreadable\n" % i,
                             log), log[-3000:]


def test_stored_xml_unreadable_answered():
    """A stored vCard or private XML that no longer reads back: the get
    is answered (internal-server-error), the row stays as it is, and
    the log says whose it is."""
    with Server(workers=1, users=USERS) as s:
        a, ja = login(s, "juliet", "balcony")
        b, jb = login(s, "romeo", "street")
        assert iq(a, VCARD2, "x1", "set") == result("juliet@localhost", "x1", ja)
        assert iq(a, query(PREFS), "x2", "set") == result("juliet@localhost", "x2", ja)
        cut = "<vCard xmlns='vcard-temp'><FN>cut"
        old = "<prefs xmlns='exodus:prefs'><x xmlns='%s'/></prefs>" % (
            "http://www.w3.org/XML/1998/namespace")
        acc = "xmppd_account_id('juliet', 'localhost')"
        sql(s, "UPDATE vcards SET vcard = $q$%s$q$ WHERE account_id = %s" % (cut, acc))
        sql(s, "UPDATE private_storage SET element = $q$%s$q$ WHERE account_id = %s"
               % (old, acc))
        got = iq(a, EMPTY_VCARD, "x3", "get")
        assert got == error("juliet@localhost", "x3", ja, "cancel",
                            "internal-server-error"), got
        got = iq(b, EMPTY_VCARD, "x4", "get", to="juliet@localhost")
        assert got == error("juliet@localhost", "x4", jb, "cancel",
                            "internal-server-error"), got
        got = iq(a, query("<prefs xmlns='exodus:prefs'/>"), "x5", "get")
        assert got == error("juliet@localhost", "x5", ja, "cancel",
                            "internal-server-error"), got
        assert sql(s, "SELECT vcard FROM vcards WHERE account_id = %s" % acc) == cut
        assert sql(s, "SELECT element FROM private_storage WHERE account_id = %s"
                      % acc) == old
        log = s.log_text()
        for id_, frm in (("x3", ja), ("x4", jb), ("x5", ja)):
            assert re.search(r" error: .*IQ get reply for %s \(id %s, asked of "
                             r"juliet@localhost\) unreadable \(.+\): stored data "
                             r"kept, answered internal-server-error\n"
                             % (re.escape(frm), id_), log), log[-3000:]


class Psql:
    """A psql session kept open, so that a transaction can be held
    between steps.  ask() sends statements that print one line and waits
    (bounded) for it; errors come back too (stderr is merged)."""

    def __init__(self, s):
        self.p = subprocess.Popen(
            ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
             "-d", s.db.conninfo],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1)

    def ask(self, text, timeout=30):
        self.p.stdin.write(text + "\n")
        self.p.stdin.flush()
        ready, _, _ = select.select([self.p.stdout], [], [], timeout)
        assert ready, "psql gave no answer to %r in %ds" % (text, timeout)
        return self.p.stdout.readline().strip()

    def close(self):
        try:
            self.p.stdin.close()
            self.p.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.p.kill()
            self.p.wait()


def test_offline_late_commit_kept():
    """Delivery removes exactly the rows it read and sent.  A message
    whose row got its id before an already committed one, but committed
    only after the delivery read the store (another worker's INSERT in
    flight), is not removed unread: it stays, and the next login gets it."""
    stanza = ("<message to='juliet@localhost' type='chat' "
              "from='romeo@localhost/x' id='%s'><body>%s</body></message>")
    insert = ("INSERT INTO offline_messages (account_id, sender, stanza) "
              "VALUES (xmppd_account_id('juliet', 'localhost'), "
              "'romeo@localhost/x', $q$%s$q$) RETURNING id;")
    count = "SELECT count(*) FROM offline_messages WHERE stanza LIKE '%%id=''%s''%%'"
    waiting = ("SELECT count(*) FROM pg_locks WHERE NOT granted AND "
               "relation = 'offline_unreadable'::regclass")
    with Server(workers=1, users=USERS) as s:
        early = Psql(s)
        lock = Psql(s)
        try:
            # 'early' has its id but has not committed; 'late' has.
            early_id = early.ask("BEGIN; " + insert % (stanza % ("early", "one")))
            late_id = sql(s, insert % (stanza % ("late", "two")))
            assert int(early_id) < int(late_id), (early_id, late_id)
            # Hold the removal after delivery until 'early' has committed.
            assert lock.ask("BEGIN; LOCK offline_unreadable IN ACCESS "
                            "EXCLUSIVE MODE; SELECT 1;") == "1"
            j, jj = login(s, "juliet", "balcony")
            j.send("<presence/>")
            j.read_until("<message to='juliet@localhost' type='chat' "
                         "from='romeo@localhost/x' id='late'><body>two</body>")
            wait_for(lambda: sql(s, waiting) == "1", what="removal waiting")
            assert early.ask("COMMIT; SELECT 1;") == "1"
            assert lock.ask("COMMIT; SELECT 1;") == "1"
            wait_for(lambda: sql(s, count % "late") == "0", what="'late' removed")
            assert sql(s, count % "early") == "1"
        finally:
            early.close()
            lock.close()
        j2, jj2 = login(s, "juliet", "window")
        j2.send("<presence/>")
        j2.read_until("<message to='juliet@localhost' type='chat' "
                      "from='romeo@localhost/x' id='early'><body>one</body>")
        wait_for(lambda: sql(s, count % "early") == "0", what="'early' removed")


# ---- a message stored after the recipient's login read the storage ------

STORE_WAITING = ("SELECT count(*) FROM pg_locks WHERE NOT granted AND "
                 "relation = 'offline_messages'::regclass")
OFFLINE_COUNT = "SELECT count(*) FROM offline_messages"


def nudges(s):
    """xmppd_offline_nudges_total over the workers (xmppctl stats)."""
    r = s.ctl("stats", "--openmetrics")
    text = getattr(r, "stdout", r)
    return sum(int(v) for v in re.findall(
        r"^xmppd_offline_nudges_total\{[^}]*\} (\d+)$", text, re.M))


def login_on(s, worker, user, resource):
    c = connect_on(s, worker)
    return c, c.login(user, PASSWORDS[user], resource=resource)


def store_held(s, lock, sender, body_id):
    """Hold every INSERT into offline_messages (SHARE mode: reads go
    through) and have sender write to juliet, who is offline: the store
    waits on the lock."""
    assert lock.ask("BEGIN; LOCK offline_messages IN SHARE MODE; "
                    "SELECT 1;") == "1"
    sender.send("<message to='juliet@localhost' type='chat' id='%s'>"
                "<body>late</body></message>" % body_id)
    wait_for(lambda: sql(s, STORE_WAITING) == "1", what="the store waiting")


def juliet_read_storage(s):
    """juliet logs in on worker 1, initial presence: her read of the
    storage is answered before her roster get, which worker 1's database
    link sends after it (one link, answered in order): the read found
    nothing."""
    j, jj = login_on(s, 1, "juliet", "balcony")
    j.send("<presence/>")
    got = iq(j, "<query xmlns='jabber:iq:roster'/>", "r1", "get")
    assert "type='result'" in got, got
    assert b"<message" not in j.buf, j.buf
    return j, jj


def test_offline_store_after_login_read():
    """romeo (worker 0) writes to juliet while she is offline; the row
    commits only after juliet logged in on worker 1 and her initial
    presence read the storage (the INSERT held by a table lock that lets
    reads through).  The storing worker finds her session once the row
    is committed and nudges it: she gets the message in this session,
    with its XEP-0203 delay, and the row goes -- not at her next login."""
    with Server(workers=2, users=USERS) as s:
        r, jr = login_on(s, 0, "romeo", "orchard")
        lock = Psql(s)
        try:
            store_held(s, lock, r, "late1")
            j, jj = juliet_read_storage(s)
            assert lock.ask("COMMIT; SELECT 1;") == "1"
        finally:
            lock.close()
        j.read_until("<message to='juliet@localhost' type='chat' id='late1' "
                     "from='%s'><body>late</body>%s<delay xmlns='urn:xmpp:"
                     "delay' from='localhost' stamp='[^']+'>Offline Storage"
                     "</delay></message>"
                     % (re.escape(jr), stanza_id_rx("juliet@localhost")),
                     timeout=10)
        wait_for(lambda: sql(s, OFFLINE_COUNT) == "0", what="the row removed")
        assert re.search(r"juliet@localhost/balcony told to read its offline "
                         r"storage again\n", s.log_text())
        assert nudges(s) == 1


def test_offline_nudge_for_gone_session():
    """The same race, but juliet's session is gone when the nudge reaches
    its worker (worker 1 stopped, SIGSTOP, while her connection closes
    and the row commits; the table still listed her, so worker 0 sent
    the nudge): the nudge finds no session and does nothing else --
    worker 1 runs on, the row stays, and her next login gets it."""
    with Server(workers=2, users=USERS) as s:
        r, jr = login_on(s, 0, "romeo", "orchard")
        lock = Psql(s)
        w1 = s.worker_pids()[1]
        stopped = False
        try:
            store_held(s, lock, r, "late2")
            j, jj = juliet_read_storage(s)
            os.kill(w1, signal.SIGSTOP)
            stopped = True
            j.close()
            assert lock.ask("COMMIT; SELECT 1;") == "1"
            wait_for(lambda: re.search(
                r"juliet@localhost/balcony told to read its offline storage "
                r"again\n", s.log_text()), what="the nudge sent")
        finally:
            if stopped:
                os.kill(w1, signal.SIGCONT)
            lock.close()
        wait_for(lambda: re.search(r"offline nudge for c\d+ \(gen \d+\): no "
                                   r"such session\n", s.log_text()),
                 what="the nudge dropped")
        assert s.worker_pids()[1] == w1
        assert sql(s, OFFLINE_COUNT) == "1"
        j2, _ = login(s, "juliet", "window")
        j2.send("<presence/>")
        j2.read_until("<message to='juliet@localhost' type='chat' id='late2' "
                      "from='%s'><body>late</body>" % re.escape(jr))
        wait_for(lambda: sql(s, OFFLINE_COUNT) == "0", what="the row removed")


# xmppd_account_id as a test makes it for the next test: the read of
# juliet's offline storage (the only query with a window over the rows)
# waits, once it runs, for advisory lock 4242 -- after its snapshot is
# taken.  VOLATILE: the planner does not call it while planning; it is
# called per row, so a row of another account must be there to read.
HELD_READ = """CREATE OR REPLACE FUNCTION xmppd_account_id(p_user text,
  p_domain text) RETURNS bigint LANGUAGE plpgsql VOLATILE AS $f$
BEGIN
  IF p_user = 'juliet' AND current_query() LIKE '%OVER (ORDER BY id)%' THEN
    PERFORM pg_advisory_lock_shared(4242);
    PERFORM pg_advisory_unlock_shared(4242);
  END IF;
  RETURN (SELECT id FROM accounts WHERE username = p_user
          AND domain = p_domain);
END $f$"""
READ_WAITING = ("SELECT count(*) FROM pg_locks WHERE NOT granted AND "
                "locktype = 'advisory'")


def test_offline_nudge_during_read():
    """The nudge reaches juliet's session while her first read of the
    storage is still running, a read whose snapshot was taken before the
    row committed (it waits inside the database, after its snapshot, until
    the nudge was handled): the session reads once more after it, and she
    gets the message in this session -- the nudge is not lost."""
    with Server(workers=2, users=USERS) as s:
        r, jr = login_on(s, 0, "romeo", "orchard")
        sql(s, "INSERT INTO offline_messages (account_id, sender, stanza) "
               "VALUES (xmppd_account_id('nurse', 'localhost'), "
               "'romeo@localhost/x', $q$<message to='nurse@localhost' "
               "from='romeo@localhost/x'><body>x</body></message>$q$)")
        sql(s, HELD_READ)
        lock = Psql(s)
        hold = Psql(s)
        try:
            store_held(s, lock, r, "late3")
            assert hold.ask("SELECT pg_advisory_lock(4242), 1;") == "|1"
            j, jj = login_on(s, 1, "juliet", "balcony")
            j.send("<presence/>")
            wait_for(lambda: sql(s, READ_WAITING) == "1",
                     what="her read waiting, its snapshot taken")
            assert lock.ask("COMMIT; SELECT 1;") == "1"
            wait_for(lambda: re.search(
                r"c\d+: nudged during a read of its offline storage: one "
                r"more read after it\n", s.log_text()),
                what="the nudge handled during the read")
            assert hold.ask("SELECT pg_advisory_unlock(4242);") == "t"
        finally:
            lock.close()
            hold.close()
        j.read_until("<message to='juliet@localhost' type='chat' id='late3' "
                     "from='%s'><body>late</body>%s<delay xmlns='urn:xmpp:"
                     "delay' from='localhost' stamp='[^']+'>Offline Storage"
                     "</delay></message>"
                     % (re.escape(jr), stanza_id_rx("juliet@localhost")),
                     timeout=10)
        wait_for(lambda: sql(s, OFFLINE_COUNT) == "1", what="her row removed")


if __name__ == "__main__":
    run_tests([test_vcard_set_get, test_vcard_missing,
               test_vcard_forbidden_and_limits, test_private_round_trip,
               test_private_errors, test_private_namespace_quota,
               test_vcard_max_size_setting, test_private_max_size_setting,
               test_private_max_namespaces_setting,
               test_survives_restart, test_database_down,
               test_offline_unreadable_kept,
               test_stored_xml_unreadable_answered,
               test_offline_late_commit_kept,
               test_offline_store_after_login_read,
               test_offline_nudge_for_gone_session,
               test_offline_nudge_during_read])

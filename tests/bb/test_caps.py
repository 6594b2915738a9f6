"""XEP-0115 entity capabilities (and XEP-0390), black box with exact XML:
an unknown ver gets the server's disco#info query (from the account's bare
JID, node NODE#VER); a matching answer is cached for every worker and in
PostgreSQL (no query for the same ver on the other worker, nor after a
restart); a poisoned answer is not cached, is logged in one line, and the
next client with that ver is asked again; XEP-0390's <c/> is handled the
same way.  What was verified shows in /metrics (xmppd_caps_*).  Needs
XMPPD_TEST_PGCONN.
"""
import base64
import hashlib
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_tests, wait_for  # noqa: E402
from imlib import USERS, Server, checked, login  # noqa: E402
from test_storage import restart, sql  # noqa: E402

DISCO = "http://jabber.org/protocol/disco#info"
NODE = "http://example.org/caps-test"

# XEP-0115 section 5.2: this disco#info hashes to this ver (the XEP's text)
EXODUS = ("<identity category='client' name='Exodus 0.9.1' type='pc'/>"
          "<feature var='http://jabber.org/protocol/caps'/>"
          "<feature var='http://jabber.org/protocol/disco#info'/>"
          "<feature var='http://jabber.org/protocol/disco#items'/>"
          "<feature var='http://jabber.org/protocol/muc'/>")
EXODUS_VER = "QgayPKawpkPSDYmwT/WM94uAlu0="

# A client following PEP nodes
PEPPY = ("<identity category='client' name='Peppy' type='pc'/>"
         "<feature var='http://jabber.org/protocol/disco#info'/>"
         "<feature var='urn:xmpp:avatar:metadata+notify'/>"
         "<feature var='eu.siacs.conversations.axolotl.devicelist+notify'/>")
PEPPY_S = "client/pc//Peppy<" + "".join(sorted(
    f + "<" for f in ["http://jabber.org/protocol/disco#info",
                      "urn:xmpp:avatar:metadata+notify",
                      "eu.siacs.conversations.axolotl.devicelist+notify"]))
PEPPY_VER = base64.b64encode(hashlib.sha1(PEPPY_S.encode()).digest()).decode()


def presence(ver, node=NODE, hash_="sha-1"):
    return ("<presence><c xmlns='http://jabber.org/protocol/caps' hash='%s' "
            "node='%s' ver='%s'/></presence>" % (hash_, node, ver))


def query_rx(im, qnode):
    """The server's disco#info query to im: exact, the id aside."""
    return re.compile(re.escape("<iq from='%s' to='%s' type='get' id='" % (im.bare, im.jid))
                      + r"(caps-[0-9a-z-]+)"
                      + re.escape("'><query xmlns='%s' node='%s'/></iq>" % (DISCO, qnode)))


def expect_query(im, qnode):
    st = im.expect(query_rx(im, qnode))
    return query_rx(im, qnode).fullmatch(st).group(1)


def answer(im, iq_id, qnode, inner):
    im.send("<iq type='result' to='%s' id='%s'><query xmlns='%s' node='%s'>%s"
            "</query></iq>" % (im.bare, iq_id, DISCO, qnode, inner))


def metric(s, name):
    out = s.ctl("stats", "--openmetrics").stdout
    return sum(float(v) for v in re.findall(
        r"^%s_total\{worker=\"\d+\"\} (\S+)$" % name, out, re.M))


def synced(im):
    """Everything im sent before was handled: a ping to the server
    answered (the stream is processed in order)."""
    im.send("<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    im.expect("<iq from='localhost' id='sync' to='%s' type='result'/>" % im.jid)


def test_unknown_ver_queried_and_verified():
    """Unknown ver: the exact query from the bare JID; the right answer is
    verified, cached in PostgreSQL with its +notify nodes, and a second
    session with that ver on the other worker is not asked."""
    with Server(workers=2, users=USERS) as s:
        j = login(s, "juliet", "balcony", presence=presence(PEPPY_VER), worker=0)
        qnode = "%s#%s" % (NODE, PEPPY_VER)
        iq_id = expect_query(j, qnode)
        answer(j, iq_id, qnode, PEPPY)
        wait_for(lambda: metric(s, "xmppd_caps_verified") == 1, what="verified")
        assert metric(s, "xmppd_caps_queries") == 1
        assert metric(s, "xmppd_caps_mismatch") == 0
        wait_for(lambda: sql(s, "SELECT algo || ' ' || ver || ' ' || notify::text "
                             "FROM caps_cache") != "", what="caps_cache row")
        row = sql(s, "SELECT algo || ' ' || ver || ' ' || notify::text FROM caps_cache")
        assert row == ("0115:sha-1 %s {urn:xmpp:avatar:metadata,"
                       "eu.siacs.conversations.axolotl.devicelist}" % PEPPY_VER), row
        # the same ver on worker 1: known from shared memory, no query
        r = login(s, "romeo", "orchard", presence=presence(PEPPY_VER), worker=1)
        synced(r)
        r.quiet(0.3, want=query_rx(r, qnode))
        assert metric(s, "xmppd_caps_queries") == 1
        # and a second resource on worker 0 as well
        j2 = login(s, "juliet", "window", presence=presence(PEPPY_VER), worker=0)
        synced(j2)
        j2.quiet(0.3, want=query_rx(j2, qnode))
        assert metric(s, "xmppd_caps_queries") == 1


def test_xep0115_example_ver():
    """The XEP-0115 section 5.2 example verifies as the XEP prints it."""
    with Server(workers=1, users=USERS) as s:
        node = "http://code.google.com/p/exodus"
        j = login(s, "juliet", "balcony", presence=presence(EXODUS_VER, node=node))
        qnode = "%s#%s" % (node, EXODUS_VER)
        answer(j, expect_query(j, qnode), qnode, EXODUS)
        wait_for(lambda: metric(s, "xmppd_caps_verified") == 1, what="verified")


def test_poisoned_answer_not_cached():
    """An answer that does not hash to the ver: not cached, one log line,
    and the next client with that ver is asked again (and its right
    answer is taken)."""
    with Server(workers=2, users=USERS) as s:
        j = login(s, "juliet", "balcony", presence=presence(PEPPY_VER), worker=0)
        qnode = "%s#%s" % (NODE, PEPPY_VER)
        iq_id = expect_query(j, qnode)
        answer(j, iq_id, qnode, PEPPY + "<feature var='urn:xmpp:tune+notify'/>")
        wait_for(lambda: metric(s, "xmppd_caps_mismatch") == 1, what="mismatch counted")
        line = ("caps answer of juliet@localhost/balcony for sha-1 %s refused "
                "(hash differs): not cached" % PEPPY_VER)
        assert s.log_text().count(line) == 1, s.log_text()[-2000:]
        assert metric(s, "xmppd_caps_verified") == 0
        assert sql(s, "SELECT count(*) FROM caps_cache") == "0"
        # an ill-formed answer (a duplicate feature): the same
        j2 = login(s, "juliet", "window", presence=presence(PEPPY_VER), worker=1)
        iq2 = expect_query(j2, qnode)
        answer(j2, iq2, qnode, PEPPY + "<feature var='urn:xmpp:avatar:metadata+notify'/>")
        wait_for(lambda: metric(s, "xmppd_caps_mismatch") == 2, what="mismatch counted")
        assert "(duplicate feature): not cached" in s.log_text()
        # romeo, another client with the ver, is asked and answers right
        r = login(s, "romeo", "orchard", presence=presence(PEPPY_VER), worker=0)
        iq3 = expect_query(r, qnode)
        answer(r, iq3, qnode, PEPPY)
        wait_for(lambda: metric(s, "xmppd_caps_verified") == 1, what="verified")
        assert metric(s, "xmppd_caps_queries") == 3


def test_answer_only_from_own_resources():
    """An answer with our id from another account is ignored: the ver
    stays unknown and the next client is asked."""
    with Server(workers=1, users=USERS) as s:
        j = login(s, "juliet", "balcony", presence=presence(PEPPY_VER))
        qnode = "%s#%s" % (NODE, PEPPY_VER)
        iq_id = expect_query(j, qnode)
        r = login(s, "romeo", "orchard")
        answer_to = ("<iq type='result' to='juliet@localhost' id='%s'><query xmlns='%s' "
                     "node='%s'>%s</query></iq>" % (iq_id, DISCO, qnode, PEPPY))
        r.send(answer_to)
        synced(r)
        assert metric(s, "xmppd_caps_verified") == 0
        assert metric(s, "xmppd_caps_mismatch") == 0


def test_survives_restart():
    """After a restart the ver is known from PostgreSQL: no query."""
    with Server(workers=2, users=USERS) as s:
        j = login(s, "juliet", "balcony", presence=presence(PEPPY_VER))
        qnode = "%s#%s" % (NODE, PEPPY_VER)
        answer(j, expect_query(j, qnode), qnode, PEPPY)
        wait_for(lambda: sql(s, "SELECT count(*) FROM caps_cache") == "1",
                 what="caps_cache row")
        j.close()
        restart(s)
        r = login(s, "romeo", "orchard", presence=presence(PEPPY_VER))
        synced(r)
        # the caps_cache lookup is asynchronous: its answer makes the
        # query or not; last_used is touched by that same statement
        wait_for(lambda: sql(s, "SELECT count(*) FROM caps_cache WHERE "
                             "last_used = current_date") == "1", what="lookup")
        r.quiet(0.5, want=query_rx(r, qnode))
        assert metric(s, "xmppd_caps_queries") == 0


def test_no_c_and_legacy():
    """Presence without <c/>, and legacy <c/> without hash: no query."""
    with Server(workers=1, users=USERS) as s:
        j = login(s, "juliet", "balcony")
        j.send("<presence><c xmlns='http://jabber.org/protocol/caps' node='%s' "
               "ver='1.0' ext='a b'/></presence>" % NODE)
        synced(j)
        j.quiet(0.3, want=re.compile("<iq .*"))
        assert metric(s, "xmppd_caps_queries") == 0


def test_xep0390():
    """XEP-0390 <c/>: node urn:xmpp:caps#sha-256.VER, its own hash input."""
    def unit(s):
        return s.encode() + b"\x1f"
    feats = sorted(unit(f) for f in [DISCO, "urn:xmpp:avatar:metadata+notify"])
    ident = unit("client") + unit("pc") + unit("") + unit("Peppy2") + b"\x1e"
    data = b"".join(feats) + b"\x1c" + ident + b"\x1c" + b"\x1c"
    ver = base64.b64encode(hashlib.sha256(data).digest()).decode()
    inner = ("<identity category='client' name='Peppy2' type='pc'/>"
             "<feature var='%s'/><feature var='urn:xmpp:avatar:metadata+notify'/>" % DISCO)
    with Server(workers=1, users=USERS) as s:
        j = login(s, "juliet", "balcony", presence=(
            "<presence><c xmlns='urn:xmpp:caps'><hash xmlns='urn:xmpp:hashes:2' "
            "algo='sha-256'>%s</hash></c></presence>" % ver))
        qnode = "urn:xmpp:caps#sha-256.%s" % ver
        answer(j, expect_query(j, qnode), qnode, inner)
        wait_for(lambda: metric(s, "xmppd_caps_verified") == 1, what="verified")
        wait_for(lambda: sql(s, "SELECT algo FROM caps_cache") == "0390:sha-256",
                 what="caps_cache row")


def fake_ver(i):
    return base64.b64encode(hashlib.sha1(b"made-up %d" % i).digest()).decode()


def test_made_up_vers_do_not_fill_the_table():
    """A client announcing made-up vers and never answering: each new ver
    replaces its own query (one unknown ver per session), past
    caps.max_changes_per_minute no more queries (one log line), every
    presence is still routed, and another client's real ver is asked at
    once (it was "caps table full" for everyone until restart)."""
    with Server(workers=1, users=USERS, overrides={
            "caps.table_size": "16", "caps.max_changes_per_minute": "5"}) as s:
        w = login(s, "juliet", "window")
        j = login(s, "juliet", "balcony")
        for i in range(5):
            j.send(presence(fake_ver(i)))
            expect_query(j, "%s#%s" % (NODE, fake_ver(i)))
        for i in range(5, 40):
            j.send(presence(fake_ver(i)))
        # the last presence was routed (to the other resource), its caps
        # not resolved
        w.expect(presence(fake_ver(39)).replace(
            "<presence>", "<presence to='juliet@localhost' "
            "from='juliet@localhost/balcony'>"))
        synced(j)
        j.quiet(0.3, want=re.compile("<iq .*"))
        assert metric(s, "xmppd_caps_queries") == 5
        line = ("caps of juliet@localhost/balcony change more than 5 times a "
                "minute: not resolved until the minute is over")
        assert s.log_text().count(line) == 1, s.log_text()[-2000:]
        r = login(s, "romeo", "orchard", presence=presence(PEPPY_VER))
        qnode = "%s#%s" % (NODE, PEPPY_VER)
        answer(r, expect_query(r, qnode), qnode, PEPPY)
        wait_for(lambda: metric(s, "xmppd_caps_verified") == 1, what="verified")
        assert "caps table full" not in s.log_text()


def test_unasked_answers_ignored():
    """Only the answer to our query counts: from exactly the full JID
    asked, with its id and its node.  A made-up self-consistent answer,
    the right answer from another resource of the account, and an
    answer naming another node are all dropped; nothing is cached."""
    with Server(workers=1, users=USERS) as s:
        j = login(s, "juliet", "balcony", presence=presence(PEPPY_VER))
        qnode = "%s#%s" % (NODE, PEPPY_VER)
        iq_id = expect_query(j, qnode)
        # never asked: a ver of its own making, with a plausible id
        made = "%s#%s" % (NODE, EXODUS_VER)
        answer(j, "caps-0-1-%s" % iq_id.split("-")[-1], made, EXODUS)
        answer(j, iq_id.rsplit("-", 1)[0] + "-999", made, EXODUS)
        # the right id, but a node (and ver) not asked
        answer(j, iq_id, made, EXODUS)
        # the right answer from juliet's other resource
        w = login(s, "juliet", "window")
        answer(w, iq_id, qnode, PEPPY)
        synced(j)
        synced(w)
        assert metric(s, "xmppd_caps_verified") == 0
        assert metric(s, "xmppd_caps_mismatch") == 0
        assert sql(s, "SELECT count(*) FROM caps_cache") == "0"
        # the asked resource answers: taken, once
        answer(j, iq_id, qnode, PEPPY)
        wait_for(lambda: metric(s, "xmppd_caps_verified") == 1, what="verified")
        answer(j, iq_id, qnode, PEPPY)
        synced(j)
        assert metric(s, "xmppd_caps_verified") == 1
        wait_for(lambda: sql(s, "SELECT count(*) FROM caps_cache") == "1",
                 what="caps_cache row")
        assert sql(s, "SELECT ver FROM caps_cache") == PEPPY_VER


def test_known_vers_rate_limited():
    """Switching between two known vers counts against
    caps.max_changes_per_minute too (each change makes PEP send last
    items): past it one log line, and no more changes applied."""
    with Server(workers=1, users=USERS,
                overrides={"caps.max_changes_per_minute": "3"}) as s:
        r = login(s, "romeo", "orchard", presence=presence(PEPPY_VER))
        qnode = "%s#%s" % (NODE, PEPPY_VER)
        answer(r, expect_query(r, qnode), qnode, PEPPY)
        wait_for(lambda: metric(s, "xmppd_caps_verified") == 1, what="verified")
        node = "http://code.google.com/p/exodus"
        r.send(presence(EXODUS_VER, node=node))
        enode = "%s#%s" % (node, EXODUS_VER)
        answer(r, expect_query(r, enode), enode, EXODUS)
        wait_for(lambda: metric(s, "xmppd_caps_verified") == 2, what="verified")
        line = ("caps of romeo@localhost/orchard change more than 3 times a "
                "minute: not resolved until the minute is over")
        assert line not in s.log_text()
        # both known now: a third change is within the limit, the rest not
        for i in range(10):
            r.send(presence(PEPPY_VER) if i % 2 == 0 else
                   presence(EXODUS_VER, node=node))
        synced(r)
        r.quiet(0.3, want=re.compile("<iq .*"))
        assert metric(s, "xmppd_caps_queries") == 2
        assert s.log_text().count(line) == 1, s.log_text()[-2000:]


def test_unanswered_query_times_out():
    """A client that never answers holds the ver for caps.query_timeout
    at most: then the next client with the ver is asked (and answers),
    and the silent one is not asked again meanwhile."""
    with Server(workers=1, users=USERS,
                overrides={"caps.query_timeout": "1s"}) as s:
        qnode = "%s#%s" % (NODE, PEPPY_VER)
        j = login(s, "juliet", "balcony", presence=presence(PEPPY_VER))
        expect_query(j, qnode)
        r = login(s, "romeo", "orchard", presence=presence(PEPPY_VER))
        answer(r, expect_query(r, qnode), qnode, PEPPY)
        wait_for(lambda: metric(s, "xmppd_caps_verified") == 1, what="verified")
        synced(j)
        j.quiet(0.3, want=query_rx(j, qnode))
        assert metric(s, "xmppd_caps_queries") == 2


def made_ver(name, feats=()):
    """A self-consistent caps ver of the client's own making (what an
    attacker can mint at will) and the disco#info that answers it."""
    feats = sorted([DISCO] + list(feats))
    v = "client/pc//%s<%s" % (name, "".join(f + "<" for f in feats))
    ver = base64.b64encode(hashlib.sha1(v.encode()).digest()).decode()
    inner = ("<identity category='client' type='pc' name='%s'/>" % name
             + "".join("<feature var='%s'/>" % f for f in feats))
    return ver, inner


def test_one_account_cannot_fill_the_table():
    """Review F1: verified entries no live session holds are evicted
    first, so a session minting and answering vers does not fill the
    shared table (it was: nobody new got caps for a day); the new vers of
    one account are bounded per hour (caps.max_new_per_account_hour, one
    log line, all its sessions); an honest client's ver is asked while
    the minting session is online and after it left."""
    with Server(workers=1, users=USERS, overrides={
            "caps.table_size": "16", "caps.max_changes_per_minute": "1000",
            "caps.max_new_per_account_hour": "20"}) as s:
        j = login(s, "juliet", "balcony")
        # 20 made-up vers, each asked and answered right: more than the
        # table holds, each one asked at once
        for i in range(20):
            ver, inner = made_ver("Evil %d" % i)
            j.send(presence(ver))
            qnode = "%s#%s" % (NODE, ver)
            answer(j, expect_query(j, qnode), qnode, inner)
            synced(j)
        wait_for(lambda: metric(s, "xmppd_caps_verified") == 20, what="verified")
        wait_for(lambda: sql(s, "SELECT count(*) FROM caps_cache") == "20",
                 what="caps_cache rows")
        assert sql(s, "SELECT DISTINCT account FROM caps_cache") == "juliet@localhost"
        # the 21st: not asked, one line; nor on another resource
        ver, inner = made_ver("Evil 20")
        j.send(presence(ver))
        synced(j)
        line = ("caps of juliet@localhost/balcony: 20 new caps vers of the "
                "account cached in the last hour (caps.max_new_per_account_"
                "hour): sha-1 %s not queried" % ver)
        wait_for(lambda: line in s.log_text(), what="budget line")
        j.quiet(0.3, want=query_rx(j, "%s#%s" % (NODE, ver)))
        w = login(s, "juliet", "window", presence=presence(made_ver("Evil 21")[0]))
        synced(w)
        wait_for(lambda: "caps of juliet@localhost/window: 20 new caps vers"
                 in s.log_text(), what="budget line of the other resource")
        w.quiet(0.3, want=re.compile("<iq .*"))
        assert metric(s, "xmppd_caps_queries") == 20
        # romeo, honest, while juliet is online: asked and verified
        r = login(s, "romeo", "orchard", presence=presence(PEPPY_VER))
        qnode = "%s#%s" % (NODE, PEPPY_VER)
        answer(r, expect_query(r, qnode), qnode, PEPPY)
        wait_for(lambda: metric(s, "xmppd_caps_verified") == 21, what="verified")
        # juliet leaves; a new honest ver is asked too
        j.close()
        w.close()
        node = "http://code.google.com/p/exodus"
        r2 = login(s, "romeo", "garden", presence=presence(EXODUS_VER, node=node))
        enode = "%s#%s" % (node, EXODUS_VER)
        answer(r2, expect_query(r2, enode), enode, EXODUS)
        wait_for(lambda: metric(s, "xmppd_caps_verified") == 22, what="verified")
        assert "caps table full" not in s.log_text()


def test_notify_names_bounded():
    """Review F2: the +notify names kept of a ver (in the shared table and
    in caps_cache alike): none longer than a node name may be
    (pep.max_id_length), at most caps.max_notify_bytes in all; one log
    line for the rest."""
    with Server(workers=1, users=USERS, overrides={
            "pep.max_id_length": "64", "caps.max_notify_bytes": "1K"}) as s:
        long_name = "urn:example:" + "l" * 88                 # 100 bytes
        names = ["urn:example:%02d:%s" % (i, "n" * 45) for i in range(20)]  # 60
        feats = [long_name + "+notify"] + [n + "+notify" for n in names]
        ver, inner = made_ver("Many", feats)
        # in the answer: the long name first, then the 20 in order
        inner = ("<identity category='client' type='pc' name='Many'/>"
                 "<feature var='%s'/>" % DISCO
                 + "".join("<feature var='%s'/>" % f for f in feats))
        j = login(s, "juliet", "balcony", presence=presence(ver))
        qnode = "%s#%s" % (NODE, ver)
        answer(j, expect_query(j, qnode), qnode, inner)
        wait_for(lambda: sql(s, "SELECT count(*) FROM caps_cache") == "1",
                 what="caps_cache row")
        # 17 x 60 = 1020 bytes fit in 1K
        assert sql(s, "SELECT notify::text FROM caps_cache") == \
            "{%s}" % ",".join(names[:17])
        line = ("caps sha-1 %s lists more than 128 +notify nodes or 1024 "
                "bytes of names (or names longer than a node name may be): "
                "the rest are ignored" % ver)
        assert s.log_text().count(line) == 1, s.log_text()[-2000:]


def test_caps_cache_rows_bounded():
    """Review F2: caps_cache keeps at most caps.cache_max_rows rows (the
    least recently used go) and none unused for caps.cache_retention;
    worker 0 deletes them hourly, the first time at start."""
    with Server(workers=1, users=USERS, overrides={
            "caps.cache_max_rows": "100", "caps.cache_retention": "240h"}) as s:
        # 120 rows used 0..5 days ago, 5 used 9 days ago, 5 used 11 days ago
        sql(s, "INSERT INTO caps_cache (algo, ver, notify, last_used) "
            "SELECT '0115:sha-1', 'r' || i, '{}', current_date - (i % 6) "
            "FROM generate_series(1, 120) i")
        sql(s, "INSERT INTO caps_cache (algo, ver, notify, last_used) "
            "SELECT '0115:sha-1', 'nine' || i, '{}', current_date - 9 "
            "FROM generate_series(1, 5) i")
        sql(s, "INSERT INTO caps_cache (algo, ver, notify, last_used) "
            "SELECT '0115:sha-1', 'old' || i, '{}', current_date - 11 "
            "FROM generate_series(1, 5) i")
        restart(s)
        wait_for(lambda: sql(s, "SELECT count(*) FROM caps_cache") == "100",
                 what="caps_cache cleaned")
        # the most recently used stay: every row of 0..3 days (80), and
        # 20 of the 4-day-old ones; none of 5, 9 or 11 days
        assert sql(s, "SELECT count(*) FROM caps_cache WHERE "
                   "last_used >= current_date - 3") == "80"
        assert sql(s, "SELECT count(*) FROM caps_cache WHERE "
                   "last_used = current_date - 4") == "20"
        assert sql(s, "SELECT count(*) FROM caps_cache WHERE "
                   "last_used < current_date - 4") == "0"
    with Server(workers=1, users=USERS, overrides={
            "caps.cache_retention": "240h"}) as s:
        sql(s, "INSERT INTO caps_cache (algo, ver, notify, last_used) "
            "SELECT '0115:sha-1', 'v' || i, '{}', current_date - i "
            "FROM generate_series(8, 12) i")
        restart(s)
        # unused more than 10 days: gone; 10 days or less: kept
        wait_for(lambda: sql(s, "SELECT string_agg(ver, ',' ORDER BY ver) "
                             "FROM caps_cache") == "v10,v8,v9",
                 what="caps_cache retention")


def test_resumption_sends_no_last_items():
    """Review F5: an XEP-0198 resumption (here on the other worker) keeps
    the session's caps but is no new available presence: no last item is
    sent again.  The first stanza after <resumed/> is the answer to an
    items request made after it through the same database link (the
    last items would be read before it, and were, before the fix); a
    publish afterwards still reaches the resumed session (caps kept)."""
    from imlib import connect_on
    from test_sm import USERS as SM_USERS, authed, resume, sm_login
    pubsub = "http://jabber.org/protocol/pubsub"
    sm = "urn:xmpp:sm:3"
    jid = "juliet@localhost/b"

    def event(item):
        return re.compile(
            re.escape("<message from='juliet@localhost' to='%s' type='headline' "
                      "id='" % jid) + "pep-[0-9a-f-]+" + re.escape(
                "'><event xmlns='%s#event'><items node='tiny'><item id='%s'>"
                "<t xmlns='urn:example:t'/></item></items></event>" % (pubsub, item))
            + "(<addresses xmlns='http://jabber.org/protocol/address'><address "
            "type='replyto' jid='juliet@localhost/a'/></addresses>)?"
            "(<delay xmlns='urn:xmpp:delay' stamp='[0-9TZ:-]+'/>)?</message>")

    def upto(c, rx):
        """Everything c read up to and with rx (a regex text)."""
        return c.read_until(r"\A.*?" + rx)

    with Server(workers=2, users=SM_USERS) as s:
        a = connect_on(s, 0)
        a.login("juliet", "pw1", resource="a")
        a.send("<iq type='set' id='pt'><pubsub xmlns='%s'><publish node='tiny'>"
               "<item id='1'><t xmlns='urn:example:t'/></item></publish></pubsub>"
               "</iq>" % pubsub)
        a.read_until("<iq [^>]*id='pt'[^>]*type='result'")
        ver, inner = made_ver("R", ["tiny+notify"])
        b = connect_on(s, 0)
        b, _, smid = sm_login(s, "juliet", "b", client=b)
        b.send(presence(ver))
        got = upto(b, "<iq [^>]*type='get' id='caps-[^']*'>.*?</iq>")
        qid = re.search("id='(caps-[^']*)'", got).group(1)
        qnode = "%s#%s" % (NODE, ver)
        b.send("<iq type='result' to='juliet@localhost' id='%s'><query xmlns='%s' "
               "node='%s'>%s</query></iq>" % (qid, DISCO, qnode, inner))
        # the last item, once (the caps are new), with its <delay/>
        got += upto(b, event("1").pattern)
        assert "<delay " in got
        b.send("<iq type='get' id='s1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        got += upto(b, re.escape("<iq from='localhost' id='s1' to='%s' type='result'/>"
                                 % jid))
        # ack all b read, and see the ack taken (its <r/> answered after it)
        h = len(re.findall(r"<(?:iq|message|presence)[ />]", got))
        b.send("<a xmlns='%s' h='%d'/><r xmlns='%s'/>" % (sm, h, sm))
        b.read_until("<a xmlns='%s' h='\\d+'/>" % sm)
        b.sock.close()
        wait_for(lambda: "kept for resumption" in s.log_text(), what="detached")
        n = connect_on(s, 1)
        authed(n, "juliet")
        got = resume(n, smid, h)
        assert re.fullmatch("<resumed xmlns='%s' h='\\d+' previd='%s'/>"
                            % (sm, re.escape(smid)), got), got
        n.send("<iq type='get' id='it1'><pubsub xmlns='%s'><items node='tiny'/>"
               "</pubsub></iq>" % pubsub)
        want = ("<iq from='juliet@localhost' id='it1' to='%s' type='result'>"
                "<pubsub xmlns='%s'><items node='tiny'><item id='1'>"
                "<t xmlns='urn:example:t'/></item></items></pubsub></iq>" % (jid, pubsub))
        got = upto(n, re.escape(want))
        assert got.replace("<r xmlns='%s'/>" % sm, "") == want, got
        # the caps were kept: a new item is told at once (no <delay/>)
        a.send("<iq type='set' id='p2'><pubsub xmlns='%s'><publish node='tiny'>"
               "<item id='2'><t xmlns='urn:example:t'/></item></publish></pubsub>"
               "</iq>" % pubsub)
        got = upto(n, "<message .*?</message>")
        assert got.replace("<r xmlns='%s'/>" % sm, "") and \
            event("2").fullmatch(got.replace("<r xmlns='%s'/>" % sm, "")), got
        assert "<delay " not in got, got

def test_legacy_c_does_no_harm():
    """A legacy XEP-0115 <c/> (no hash attribute, section "Legacy
    Format") cannot be verified: it is passed on to contacts unchanged
    but resolves nothing -- no query, no caps_cache row, no PEP events
    for it (as no caps), and none of the session's
    caps.max_changes_per_minute: a hashed ver announced after 12 legacy
    ones is still asked and applied; a session with hashed caps keeps
    them when a legacy <c/> follows."""
    from test_pep_notify import (J, R, TUNE, TUNE_NS, WANTS_TUNE, any_event,  # noqa: E402
                                 event_rx, item_body, join, pair, pub, show_caps)
    with Server(workers=1, users=USERS,
                overrides={"caps.max_changes_per_minute": "3"}) as s:
        pair(s, J, R, "both", "both")
        jp = join(s, "juliet", "pub", WANTS_TUNE)
        ro = join(s, "romeo", "a", None)
        jp.drain()

        def legacy(ver):
            return ("<c xmlns='http://jabber.org/protocol/caps' node='%s' ver='%s' "
                    "ext='a b'/>" % (NODE, ver))
        ro.send("<presence>%s</presence>" % legacy("1.0"))
        jp.expect("<presence to='%s' from='%s'>%s</presence>" % (J, ro.jid, legacy("1.0")))
        synced(ro)
        ro.quiet(0.3, want=re.compile("<iq .*"))
        assert metric(s, "xmppd_caps_queries") == 1     # juliet's ver only
        jp.expect(pub(jp, TUNE_NS, TUNE, "t1"))
        jp.expect(event_rx(jp.jid, TUNE_NS, item_body(TUNE_NS, "t1", TUNE), replyto=jp.jid))
        ro.quiet(0.3, want=any_event())
        for i in range(12):
            ro.send("<presence>%s</presence>" % legacy("1.%d" % i))
        synced(ro)
        ro.quiet(0.3, want=re.compile("<iq .*"))
        assert sql(s, "SELECT count(*) FROM caps_cache WHERE ver LIKE '1.%'") == "0"
        assert "change more than 3 times" not in s.log_text()
        # a hashed ver now: asked, applied, the last item and events come
        show_caps(s, ro, WANTS_TUNE + ["urn:example:legacy+notify"])
        ro.expect(event_rx(ro.jid, TUNE_NS, item_body(TUNE_NS, "t1", TUNE), delay=True))
        jp.expect(pub(jp, TUNE_NS, TUNE, "t2", iq_id="p2"))
        ro.expect(event_rx(ro.jid, TUNE_NS, item_body(TUNE_NS, "t2", TUNE), replyto=jp.jid))
        # a legacy <c/> after it leaves its caps as they are
        ro.send("<presence>%s</presence>" % legacy("2.0"))
        synced(ro)
        jp.expect(pub(jp, TUNE_NS, TUNE, "t3", iq_id="p3"))
        ro.expect(event_rx(ro.jid, TUNE_NS, item_body(TUNE_NS, "t3", TUNE), replyto=jp.jid))
        ro.quiet(0.3, want=re.compile("<iq .*"))


if __name__ == "__main__":
    run_tests([checked(t) for t in [
        test_unknown_ver_queried_and_verified, test_xep0115_example_ver,
        test_poisoned_answer_not_cached, test_answer_only_from_own_resources,
        test_survives_restart, test_no_c_and_legacy, test_xep0390,
        test_made_up_vers_do_not_fill_the_table, test_unasked_answers_ignored,
        test_known_vers_rate_limited, test_unanswered_query_times_out,
        test_one_account_cannot_fill_the_table, test_notify_names_bounded,
        test_caps_cache_rows_bounded, test_resumption_sends_no_last_items,
        test_legacy_c_does_no_harm]])

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


if __name__ == "__main__":
    run_tests([checked(t) for t in [
        test_unknown_ver_queried_and_verified, test_xep0115_example_ver,
        test_poisoned_answer_not_cached, test_answer_only_from_own_resources,
        test_survives_restart, test_no_c_and_legacy, test_xep0390]])

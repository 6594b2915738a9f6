"""XEP-0191 blocking command, black box with exact XML: the block list,
pushes to every resource on any worker, outbound stanzas to a blocked
JID refused with <blocked/>, inbound ones dropped or answered, offline
storage refused, presence withheld.  Needs XMPPD_TEST_PGCONN.
"""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, Server, run_tests  # noqa: E402

NS = "urn:xmpp:blocking"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
USERS = [("juliet@localhost", "pw1"), ("romeo@localhost", "pw2"),
         ("tybalt@localhost", "pw3")]


def drain(c, t=0.4):
    end = time.monotonic() + t
    while time.monotonic() < end:
        try:
            c.sock.settimeout(0.05)
            d = c.sock.recv(65536)
            if not d:
                break
            c.buf += d
        except OSError:
            pass
    out, c.buf = c.buf.decode(), b""
    return out


def test_block_list_and_pushes():
    with Server(workers=2, users=USERS) as s:
        a = Client(s.port)
        a.login("juliet", "pw1", resource="one")
        b = Client(s.port)
        b.login("juliet", "pw1", resource="two")
        a.send("<iq type='get' id='g1'><blocklist xmlns='%s'/></iq>" % NS)
        got = a.read_until("<iq [^>]*id='g1'.*?</iq>")
        assert "<blocklist xmlns='%s'></blocklist>" % NS in got or \
            "<blocklist xmlns='%s'/>" % NS in got, got
        a.send("<iq type='set' id='b1'><block xmlns='%s'><item jid='tybalt@localhost'/></block></iq>" % NS)
        a.read_until("<iq [^>]*id='b1'[^>]*type='result'/>")
        push = "<block xmlns='%s'><item jid='tybalt@localhost'/></block>" % NS
        a.read_until(push)
        b.read_until(push)   # every resource, on whichever worker
        a.send("<iq type='get' id='g2'><blocklist xmlns='%s'/></iq>" % NS)
        got = a.read_until("<iq [^>]*id='g2'.*?</iq>")
        assert "<item jid='tybalt@localhost'/>" in got, got
        a.send("<iq type='set' id='u1'><unblock xmlns='%s'/></iq>" % NS)
        a.read_until("<iq [^>]*id='u1'[^>]*type='result'/>")
        b.read_until("<unblock xmlns='%s'></unblock>|<unblock xmlns='%s'/>" % (NS, NS))
        a.send("<iq type='set' id='e1'><block xmlns='%s'/></iq>" % NS)
        got = a.read_until("<iq [^>]*id='e1'.*?</iq>")
        assert "<bad-request xmlns='%s'/>" % STANZAS in got, got


def test_blocked_traffic():
    with Server(workers=2, users=USERS) as s:
        j = Client(s.port)
        jj = j.login("juliet", "pw1", resource="r")
        t = Client(s.port)
        tj = t.login("tybalt", "pw3", resource="sword")
        j.send("<presence/>")
        t.send("<presence/>")
        j.send("<iq type='set' id='b1'><block xmlns='%s'><item jid='tybalt@localhost'/></block></iq>" % NS)
        j.read_until("<iq [^>]*id='b1'[^>]*type='result'/>")
        time.sleep(0.2)
        # Outbound to a blocked JID: not-acceptable with <blocked/>, from
        # the blocked JID to the sender (XEP-0191 3.6, RFC 6120 8.3.1).
        j.send("<message to='tybalt@localhost/sword' id='m1' type='chat'><body>x</body></message>")
        got = j.read_until("<message [^>]*id='m1'.*?</message>")
        assert got == ("<message from='tybalt@localhost/sword' id='m1' to='%s' type='error'>"
                       "<error type='cancel'><not-acceptable xmlns='%s'/><blocked "
                       "xmlns='urn:xmpp:blocking:errors'/></error></message>"
                       % (jj, STANZAS)), got
        j.send("<iq to='tybalt@localhost' id='q1' type='get'><query "
               "xmlns='jabber:iq:version'/></iq>")
        got = j.read_until("<iq [^>]*id='q1'.*?</iq>")
        assert got == ("<iq from='tybalt@localhost' id='q1' to='%s' type='error'>"
                       "<error type='cancel'><not-acceptable xmlns='%s'/><blocked "
                       "xmlns='urn:xmpp:blocking:errors'/></error></iq>"
                       % (jj, STANZAS)), got
        # Inbound from a blocked JID: service-unavailable to the sender,
        # nothing to the user.
        t.send("<message to='juliet@localhost/r' id='m2' type='chat'><body>y</body></message>")
        got = t.read_until("<message [^>]*id='m2'.*?</message>")
        assert got == ("<message from='juliet@localhost/r' id='m2' to='%s' type='error'>"
                       "<error type='cancel'><service-unavailable xmlns='%s'/></error>"
                       "</message>" % (tj, STANZAS)), got
        assert "<body>y</body>" not in drain(j)
        # Offline storage refuses a blocked sender too.
        j.send("</stream:stream>")
        j.read_all_until_close()
        time.sleep(0.3)
        t.send("<message to='juliet@localhost' id='m3' type='chat'><body>z</body></message>")
        got = t.read_until("<message [^>]*id='m3'.*?</message>")
        assert got == ("<message from='juliet@localhost' id='m3' to='%s' type='error'>"
                       "<error type='cancel'><service-unavailable xmlns='%s'/></error>"
                       "</message>" % (tj, STANZAS)), got
        # Unblocked, messages flow again.
        j = Client(s.port)
        j.login("juliet", "pw1", resource="r")
        j.send("<iq type='set' id='u1'><unblock xmlns='%s'><item jid='tybalt@localhost'/></unblock></iq>" % NS)
        j.read_until("<iq [^>]*id='u1'[^>]*type='result'/>")
        time.sleep(0.2)
        t.send("<message to='juliet@localhost/r' id='m4' type='chat'><body>w</body></message>")
        got = j.read_until("<message [^>]*id='m4'.*?</message>")
        assert "from='%s'" % tj in got, got


def block_iq(c, iq_id, jids, name="block"):
    items = "".join("<item jid='%s'/>" % j for j in jids)
    c.send("<iq type='set' id='%s'><%s xmlns='%s'>%s</%s></iq>"
           % (iq_id, name, NS, items, name))
    return c.read_until("<iq [^>]*id='%s'[^>]*?(/>|>.*?</iq>)" % iq_id)


def blocklist(c, iq_id):
    c.send("<iq type='get' id='%s'><blocklist xmlns='%s'/></iq>" % (iq_id, NS))
    got = c.read_until("<iq [^>]*id='%s'.*?</iq>" % iq_id)
    return sorted(re.findall("<item jid='([^']*)'/>", got))


def test_blocklist_max_items():
    """im.blocklist_max_items bounds the stored blocklist: a block that
    would go over it is refused whole with <not-acceptable/> type cancel
    (XEP-0191 names no condition; the same answer as a full roster) and
    logged; re-blocking a JID already there, or a block after an
    unblock, is fine."""
    with Server(workers=1, users=USERS,
                overrides={"im.blocklist_max_items": "2"}) as s:
        j = Client(s.port)
        jj = j.login("juliet", "pw1", resource="r")

        def refused(iq_id):
            return ("<iq from='juliet@localhost' id='%s' to='%s' type='error'>"
                    "<error type='cancel'><not-acceptable xmlns='%s'/></error>"
                    "</iq>" % (iq_id, jj, STANZAS))

        ok = "<iq from='juliet@localhost' id='%s' to='" + jj + "' type='result'/>"
        assert block_iq(j, "b1", ["a@example.net", "b@example.net"]) == ok % "b1"
        got = block_iq(j, "b2", ["c@example.net"])
        assert got == refused("b2"), got
        # One new JID with one already blocked is still one too many.
        got = block_iq(j, "b3", ["a@example.net", "c@example.net"])
        assert got == refused("b3"), got
        assert blocklist(j, "g1") == ["a@example.net", "b@example.net"]
        assert "block by juliet@localhost refused: more than 2 blocked JIDs " \
               "(im.blocklist_max_items)" in s.log_text()
        assert block_iq(j, "b4", ["a@example.net"]) == ok % "b4"
        assert block_iq(j, "u1", ["b@example.net"], "unblock") == ok % "u1"
        assert block_iq(j, "b5", ["c@example.net"]) == ok % "b5"
        assert blocklist(j, "g2") == ["a@example.net", "c@example.net"]


def test_blocklist_all_items_enforced():
    """Every stored item is enforced: the sessions' copies used to stop
    at 1000 JIDs while the database took more, so the 1001st blocked JID
    still got through."""
    fillers = ["f%04d@example.net" % i for i in range(1000)]
    with Server(workers=1, users=USERS,
                overrides={"im.blocklist_max_items": "1001"}) as s:
        j = Client(s.port)
        jj = j.login("juliet", "pw1", resource="r")
        t = Client(s.port)
        tj = t.login("tybalt", "pw3", resource="sword")
        got = block_iq(j, "b1", fillers + ["tybalt@localhost"])
        assert got == ("<iq from='juliet@localhost' id='b1' to='%s' type='result'/>"
                       % jj), got
        j.read_until("<item jid='tybalt@localhost'/></block>")  # push applied
        t.send("<message to='juliet@localhost/r' id='m1' type='chat'><body>y</body></message>")
        got = t.read_until("<message [^>]*id='m1'.*?</message>")
        assert got == ("<message from='juliet@localhost/r' id='m1' to='%s' type='error'>"
                       "<error type='cancel'><service-unavailable xmlns='%s'/></error>"
                       "</message>" % (tj, STANZAS)), got
        assert block_iq(j, "b2", ["x@example.net"]).endswith(
            "<not-acceptable xmlns='%s'/></error></iq>" % STANZAS)
        # A session that loads the list at bind has all of it too.
        j2 = Client(s.port)
        j2.login("juliet", "pw1", resource="r2")
        j2.send("<iq type='get' id='g1'><blocklist xmlns='%s'/></iq>" % NS)
        j2.read_until("<iq [^>]*id='g1'.*?</iq>")
        t.send("<message to='juliet@localhost/r2' id='m2' type='chat'><body>z</body></message>")
        got = t.read_until("<message [^>]*id='m2'.*?</message>")
        assert "<service-unavailable xmlns='%s'/>" % STANZAS in got, got


def test_block_and_unblock_presence():
    """XEP-0191 3.3/3.4: a blocked subscriber gets unavailable from each
    available resource; once unblocked it gets their current presence
    again; a blocked JID that is no subscriber gets nothing, neither at
    block (it would learn which resources are online) nor at unblock.
    The resources sit on both workers."""
    from imlib import USERS as IM_USERS, login, subscribe_both
    with Server(workers=2, users=IM_USERS) as s:
        j1 = login(s, "juliet", "one", worker=0)
        j2 = login(s, "juliet", "two", worker=1)
        r = login(s, "romeo", "r")
        t = login(s, "nurse", "t")
        subscribe_both(j1, r)
        j1.send("<presence><show>away</show></presence>")
        j2.send("<presence><status>here</status></presence>")
        def pres(res, rest):
            return re.compile("<presence (?=[^>]*from='juliet@localhost/%s')[^>]*%s"
                              % (res, rest))
        r.expect(pres("one", "><show>away</show></presence>"))
        r.expect(pres("two", "><status>here</status></presence>"))
        r.drain()
        j1.send("<iq type='set' id='b1'><block xmlns='%s'><item jid='romeo@localhost'/>"
                "<item jid='nurse@localhost'/></block></iq>" % NS)
        j1.expect(re.compile("<iq [^>]*id='b1'[^>]*type='result'/>"))
        for res in ("one", "two"):
            r.expect(pres(res, "type='unavailable'/>"))
        j1.send("<iq type='set' id='u1'><unblock xmlns='%s'/></iq>" % NS)
        j1.expect(re.compile("<iq [^>]*id='u1'[^>]*type='result'/>"))
        r.expect(pres("one", "><show>away</show></presence>"))
        r.expect(pres("two", "><status>here</status></presence>"))
        # the nurse was blocked but has no subscription: nothing
        end = time.monotonic() + 0.6
        while time.monotonic() < end and not t.closed:
            t._fill(end)
        t._split()
        assert not any("juliet" in x[1] for x in t.q), t.q


if __name__ == "__main__":
    run_tests([test_block_and_unblock_presence, test_block_list_and_pushes, test_blocked_traffic,
               test_blocklist_max_items, test_blocklist_all_items_enforced])

"""XEP-0352 Client State Indication, black box with exact XML: the stream
feature after authentication only, the nonzas' errors, what an inactive
session holds (presence, latest per contact; chat states; receipts;
carbons of those) and what goes at once after what is held (a message
with a body), the flush on <active/> and on anything the client sends
(in order, before the answer), the csi.max_held bound, held stanzas
rerouted when the session ends, the counters in /metrics; then
slixmpp's xep_0352 plugin.  Needs XMPPD_TEST_PGCONN.
"""
import asyncio
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, Server, run_tests, stream_error_re, wait_for  # noqa: E402
from imlib import PW, USERS, checked, exact, login, subscribe_both  # noqa: E402

NS = "urn:xmpp:csi:0"
INACTIVE = "<inactive xmlns='%s'/>" % NS
ACTIVE = "<active xmlns='%s'/>" % NS
CS = "<composing xmlns='http://jabber.org/protocol/chatstates'/>"


def ping(im, id_="p"):
    """A round trip; on an inactive session it also flushes."""
    im.send("<iq to='localhost' type='get' id='%s'><ping xmlns='urn:xmpp:ping'/></iq>" % id_)
    return "<iq from='localhost' id='%s' to='%s' type='result'/>" % (id_, im.jid)


def counter(s, name):
    r = s.ctl("stats", "--openmetrics")
    assert r.returncode == 0, r.stderr
    return sum(float(v) for v in re.findall(r"^%s_total\{[^}]*\} (\S+)$" % name,
                                            r.stdout, re.M))


def test_feature_and_errors():
    with Server(workers=1, users=USERS) as s:
        c = Client(s.port)
        feats = c.open()
        assert NS not in feats, feats       # not before authentication
        c.send(INACTIVE)
        c.read_until(stream_error_re("not-authorized"))
        c.close()
        c = Client(s.port)
        c.open()
        c.starttls()
        assert c.auth_scram("juliet", PW["juliet"]).startswith("<success")
        feats = c.open()
        assert "<csi xmlns='%s'/>" % NS in feats, feats
        c.bind("r")
        c.send(INACTIVE + ACTIVE)           # no answer to either
        c.send("<iq to='localhost' type='get' id='q'><ping xmlns='urn:xmpp:ping'/></iq>")
        got = c.read_until("<iq [^>]*id='q'[^>]*/>")
        assert got.startswith("<iq from='localhost' id='q'"), got
        c.send("<csi xmlns='%s'/>" % NS)
        c.read_until(stream_error_re("unsupported-stanza-type"))
        c.close()


@checked
def test_hold_merge_and_flush():
    with Server(workers=2, users=USERS) as s:
        j = login(s, "juliet", "j", worker=0)
        r = login(s, "romeo", "r", worker=1)
        n = login(s, "nurse", "n")
        subscribe_both(j, r)
        subscribe_both(j, n)
        j.send(INACTIVE)
        j.expect(exact(ping(j, "p0")))
        held0 = counter(s, "xmppd_csi_held_stanzas")
        spared0 = counter(s, "xmppd_csi_writes_spared")
        # held: two presence updates of romeo (only the latest stays), a
        # chat state, a receipt, nurse's presence
        r.send("<presence><show>away</show></presence>")
        r.send("<presence><show>xa</show></presence>")
        r.send("<message to='juliet@localhost/j' id='c1' type='chat'>%s</message>" % CS)
        r.send("<message to='juliet@localhost/j' id='c2'><received "
               "xmlns='urn:xmpp:receipts' id='x'/></message>")
        n.send("<presence><show>dnd</show></presence>")
        r.expect(exact(ping(r, "p1")))
        n.expect(exact(ping(n, "p2")))
        # (presence is broadcast after a roster query: wait until all
        # five are held)
        wait_for(lambda: counter(s, "xmppd_csi_held_stanzas") - held0 == 5,
                 what="five stanzas held")
        j.quiet(0.3)
        # a message with a body goes at once, after what is held, in order
        r.send("<message to='juliet@localhost/j' id='b1' type='chat'><body>now</body></message>")
        body = exact("<message to='juliet@localhost/j' id='b1' type='chat' from='romeo@localhost/r'>"
                     "<body>now</body></message>")
        j.expect_order(
            exact("<message to='juliet@localhost/j' id='c1' type='chat' from='romeo@localhost/r'>%s</message>" % CS),
            exact("<message to='juliet@localhost/j' id='c2' from='romeo@localhost/r'><received "
                  "xmlns='urn:xmpp:receipts' id='x'/></message>"),
            body)
        seq_body = j.last_seq
        for p in ("<presence to='juliet@localhost' from='romeo@localhost/r'><show>xa</show></presence>",
                  "<presence to='juliet@localhost' from='nurse@localhost/n'><show>dnd</show></presence>"):
            j.expect(exact(p))
            assert j.last_seq < seq_body, "held presence came after the message"
        j.quiet(0.3, want=re.compile("<presence .*<show>away</show>.*"))
        assert counter(s, "xmppd_csi_held_stanzas") - held0 == 5
        # one merged away, four written ahead of the message
        assert counter(s, "xmppd_csi_writes_spared") - spared0 == 5
        # <active/>: what is held goes first, then the ping's answer
        r.send("<presence><show>chat</show></presence>")
        wait_for(lambda: counter(s, "xmppd_csi_held_stanzas") - held0 == 6,
                 what="the presence held")
        j.quiet(0.2)
        j.send(ACTIVE)
        j.expect_order(
            exact("<presence to='juliet@localhost' from='romeo@localhost/r'><show>chat</show></presence>"),
            exact(ping(j, "p4")))
        # active again: nothing is held
        r.send("<message to='juliet@localhost/j' id='c3' type='chat'>%s</message>" % CS)
        j.expect(exact("<message to='juliet@localhost/j' id='c3' type='chat' "
                       "from='romeo@localhost/r'>%s</message>" % CS))
        # inactive; anything the client sends flushes first (a ping here)
        j.send(INACTIVE)
        j.expect(exact(ping(j, "p5")))
        r.send("<message to='juliet@localhost/j' id='c4' type='chat'>%s</message>" % CS)
        r.expect(exact(ping(r, "p6")))
        j.quiet(0.4)
        j.expect_order(
            exact("<message to='juliet@localhost/j' id='c4' type='chat' "
                  "from='romeo@localhost/r'>%s</message>" % CS),
            exact(ping(j, "p7")))
        # subscription requests and IQs are never held
        r.send("<presence to='juliet@localhost' type='unsubscribe'/>")
        j.expect(re.compile("<presence from='romeo@localhost' to='juliet@localhost' type='unsubscribe'/>|"
                            "<iq id='[^']+' type='set'><query xmlns='jabber:iq:roster'.*</iq>"))
        for im in (j, r, n):
            im.close()


@checked
def test_bound_carbons_and_session_end():
    with Server(workers=2, users=USERS, overrides={"csi.max_held": "2"}) as s:
        j = login(s, "juliet", "j", worker=0)
        r = login(s, "romeo", "r", worker=1)
        j.send(INACTIVE)
        j.expect(exact(ping(j, "p0")))
        # csi.max_held = 2: the third held stanza writes all three
        for i in (1, 2):
            r.send("<message to='juliet@localhost/j' id='h%d' type='chat'>%s</message>" % (i, CS))
        r.expect(exact(ping(r, "p1")))
        j.quiet(0.4)
        r.send("<message to='juliet@localhost/j' id='h3' type='chat'>%s</message>" % CS)
        j.expect_order(*[exact("<message to='juliet@localhost/j' id='h%d' type='chat' "
                               "from='romeo@localhost/r'>%s</message>" % (i, CS))
                         for i in (1, 2, 3)])
        # a carbon of a chat state is held too; of a body, not
        j.send("<iq type='set' id='cb'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
        j.expect(exact(j.empty_result("cb")))
        j2 = login(s, "juliet", "j2", worker=1)
        r.send("<message to='juliet@localhost/j2' id='k1' type='chat'>%s</message>" % CS)
        j2.expect(re.compile("<message [^>]*id='k1'.*</message>"))
        r.expect(exact(ping(r, "p2")))
        j.quiet(0.4, want=re.compile("<message .*"))
        r.send("<message to='juliet@localhost/j2' id='k2' type='chat'><body>b</body></message>")
        fwd = ("<message from='juliet@localhost' to='juliet@localhost/j' type='chat'><received "
               "xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message "
               "xmlns='jabber:client' to='juliet@localhost/j2' id='%s' type='chat' "
               "from='romeo@localhost/r'>%s</message></forwarded></received></message>")
        j.expect_order(exact(fwd % ("k1", CS)), exact(fwd % ("k2", "<body>b</body>")))
        # the session ends while a chat state to its full JID is held:
        # it goes on as if sent to the bare JID (the other resource)
        r.send("<message to='juliet@localhost/j' id='g1' type='chat'>%s</message>" % CS)
        r.expect(exact(ping(r, "p3")))
        j2.drain(0.3)
        j.abort()
        j2.expect(exact("<message to='juliet@localhost' id='g1' type='chat' "
                        "from='romeo@localhost/r'>%s</message>" % CS))
        for im in (j2, r):
            im.close()


def test_slixmpp_xep_0352():
    """slixmpp's plugin sees the feature and sends <inactive/>; a chat
    state for it waits (xep_0085 reports it), the message with a body
    after it brings both, in order."""
    from test_clients import Slix, run_async, stop_all
    with Server(workers=1, users=USERS) as s:
        async def body():
            x = Slix("juliet@localhost/slix", PW["juliet"])
            x.register_plugin("xep_0352")
            x.register_plugin("xep_0085")
            seen = asyncio.Queue()
            x.add_event_handler("chatstate_composing",
                                lambda m: seen.put_nowait(("composing", m["id"])))
            x.add_event_handler("message",
                                lambda m: seen.put_nowait(("message", m["id"])))
            try:
                await x.online(s.port)
                assert x["xep_0352"].enabled, "slixmpp saw no csi feature"
                x["xep_0352"].send_inactive()
                await x["xep_0199"].ping(jid="localhost", timeout=5)
                held0 = counter(s, "xmppd_csi_held_stanzas")
                r = login(s, "romeo", "r")
                r.send("<message to='juliet@localhost/slix' id='z1' type='chat'>%s</message>" % CS)
                r.expect(exact(ping(r, "p1")))
                await asyncio.sleep(0.5)
                assert seen.empty(), "a chat state reached an inactive client"
                assert counter(s, "xmppd_csi_held_stanzas") - held0 == 1
                r.send("<message to='juliet@localhost/slix' id='z2' type='chat'><body>wake</body></message>")
                got = [await asyncio.wait_for(seen.get(), 10) for _ in range(2)]
                assert got == [("composing", "z1"), ("message", "z2")], got
                x["xep_0352"].send_active()
                r.close()
            finally:
                await stop_all(x)
        run_async(body())


if __name__ == "__main__":
    run_tests([
        test_feature_and_errors,
        test_hold_merge_and_flush,
        test_bound_carbons_and_session_end,
        test_slixmpp_xep_0352,
    ])

"""XEP-0198 Stream Management 1.6, black box with exact XML: the stream
feature, <enable/> with and without resumption and its errors, <r/> and
<a/>, the server's ack requests, <handled-count-too-high/>, detached
sessions that keep receiving, resumption on the same worker and on the
other one (connections placed with connect_on), expiry to offline
storage, a clean close ending the session at once, resumption racing
with a new login of the same resource.  Needs XMPPD_TEST_PGCONN.
"""
import os
import re
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, Server, run_tests, stream_error_re, wait_for  # noqa: E402
from imlib import RestartableServer, connect_on, placed_counts  # noqa: E402

SM = "urn:xmpp:sm:3"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"
USERS = [("juliet@localhost", "pw1"), ("romeo@localhost", "pw2"),
         ("tybalt@localhost", "pw3")]
PW = dict((j.split("@")[0], p) for j, p in USERS)


def failed(cond, h=None):
    hattr = " h='%d'" % h if h is not None else ""
    return "<failed xmlns='%s'%s><%s xmlns='%s'/></failed>" % (SM, hattr, cond, STANZAS)


def authed(c, user):
    """STARTTLS and SASL, no binding: the features of the new stream."""
    c.open()
    c.starttls()
    got = c.auth_scram(user, PW[user])
    assert got.startswith("<success"), got
    return c.open()


def enable(c, resume=True, max_s=None):
    attrs = " resume='true'" if resume else ""
    if max_s is not None:
        attrs += " max='%d'" % max_s
    c.send("<enable xmlns='%s'%s/>" % (SM, attrs))
    got = c.read_until("<enabled [^>]*/>|<failed .*?</failed>")
    m = re.search("id='([^']+)'", got)
    return got, m.group(1) if m else None


def sm_login(s, user, resource, resume=True, client=None):
    c = client or Client(s.port)
    feats = authed(c, user)
    assert "<sm xmlns='%s'/>" % SM in feats, feats
    jid = c.bind(resource)
    got, smid = enable(c, resume)
    assert got.startswith("<enabled "), got
    return c, jid, smid


def ack_requests(c, h, t=0.5):
    """Answer every <r/> that comes within t seconds with <a h/>."""
    end = time.monotonic() + t
    while time.monotonic() < end:
        try:
            c.read_until("<r xmlns='%s'/>" % SM, timeout=max(0.05, end - time.monotonic()))
        except AssertionError:
            return
        c.send("<a xmlns='%s' h='%d'/>" % (SM, h))


def msg(frm_client, to, mid, body):
    frm_client.send("<message to='%s' id='%s' type='chat'><body>%s</body></message>"
                    % (to, mid, body))


def msg_rx(mid, body):
    # XEP-0359: the archive's <stanza-id/> (mam.c) comes after the body
    return ("<message [^>]*id='%s'[^>]*><body>%s</body>"
            "(<stanza-id [^>]*/>|<delay [^>]*>[^<]*</delay>)*"
            "</message>" % (mid, body))


def resume(c, previd, h):
    c.send("<resume xmlns='%s' previd='%s' h='%d'/>" % (SM, previd, h))
    return c.read_until("<resumed [^>]*/>|<failed .*?</failed>|<stream:error>.*?</stream:stream>")


def test_feature_enable_acks():
    with Server(workers=1, users=USERS) as s:
        c = Client(s.port)
        feats = authed(c, "juliet")
        # offered once authenticated, with binding (section 2)
        assert "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>" in feats, feats
        assert "<sm xmlns='%s'/>" % SM in feats, feats
        # before binding: unexpected-request (section 3)
        got, _ = enable(c)
        assert got == failed("unexpected-request"), got
        jid = c.bind("balcony")
        got, smid = enable(c, resume=False)
        assert got == "<enabled xmlns='%s'/>" % SM, got
        # twice: unexpected-request, the stream goes on
        got, _ = enable(c)
        assert got == failed("unexpected-request"), got
        c.send("<r xmlns='%s'/>" % SM)
        got = c.read_until("<a [^>]*/>")
        assert got == "<a xmlns='%s' h='0'/>" % SM, got
        # one stanza handled: h=1; the server asks for an ack of its
        # answer once it is written (one request at a time)
        c.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>")
        got = c.read_until("<iq [^>]*id='r1'.*?(/>|</iq>)")
        assert "type='result'" in got, got
        got = c.read_until("<r xmlns='%s'/>" % SM)
        c.send("<r xmlns='%s'/>" % SM)
        got = c.read_until("<a [^>]*/>")
        assert got == "<a xmlns='%s' h='1'/>" % SM, got
        c.send("<a xmlns='%s' h='1'/>" % SM)
        # an h beyond what was sent: undefined-condition with
        # <handled-count-too-high/> (section 4)
        c.send("<a xmlns='%s' h='5'/>" % SM)
        got = c.read_all_until_close()
        assert got.endswith("<stream:error><undefined-condition xmlns='%s'/>"
                            "<handled-count-too-high xmlns='%s' h='5' send-count='1'/>"
                            "</stream:error></stream:stream>" % (STREAMS, SM)), got
        assert jid == "juliet@localhost/balcony"


def test_misuse():
    with Server(workers=1, users=USERS) as s:
        # <enable/> and <resume/> before authentication (sections 3, 5)
        c = Client(s.port)
        c.open()
        c.starttls()
        got, _ = enable(c)
        assert got == failed("unexpected-request"), got
        got = resume(c, "abc", 0)
        assert got == failed("unexpected-request"), got
        # <r/> without stream management: not a known element
        c2 = Client(s.port)
        authed(c2, "juliet")
        c2.bind("r")
        c2.send("<r xmlns='%s'/>" % SM)
        got = c2.read_all_until_close()
        assert re.search(stream_error_re("unsupported-stanza-type"), got), got
        # <resume/> after binding: unexpected-request
        c3 = Client(s.port)
        authed(c3, "juliet")
        c3.bind("r3")
        got = resume(c3, "abc", 0)
        assert got == failed("unexpected-request"), got
        # an unknown previd: item-not-found
        c4 = Client(s.port)
        authed(c4, "juliet")
        got = resume(c4, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 0)
        assert got == failed("item-not-found"), got
        # the stream goes on: the client may bind instead
        assert c4.bind("after").endswith("/after")


def test_enabled_max():
    with Server(workers=1, users=USERS, overrides={"sm.max_resume_s": "120"}) as s:
        c = Client(s.port)
        authed(c, "juliet")
        c.bind("a")
        got, smid = enable(c, max_s=60)
        assert got == "<enabled xmlns='%s' id='%s' resume='true' max='60'/>" % (SM, smid), got
        assert len(smid) >= 22, smid
        d = Client(s.port)
        authed(d, "juliet")
        d.bind("b")
        got, smid2 = enable(d, max_s=100000)
        assert got == "<enabled xmlns='%s' id='%s' resume='true' max='120'/>" % (SM, smid2), got
        assert smid2 != smid


def detach_and_send(s, who_user, resource, sender, to_full, mids):
    """who enables resumption, acks nothing, its TCP connection drops;
    sender's messages go to the detached session."""


def collect_ids(c, prefix, n, timeout=10):
    """Read until n distinct message ids starting with prefix were seen;
    returns the ids in arrival order (with repeats)."""
    deadline = time.monotonic() + timeout
    rx = re.compile("<message [^>]*id='(%s[0-9]+)'" % prefix)
    while True:
        ids = rx.findall(c.buf.decode(errors="replace"))
        if len(set(ids)) >= n:
            return ids
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("only %r; got %r" % (ids, c.buf[-800:]))
        c.sock.settimeout(left)
        try:
            chunk = c.sock.recv(65536)
        except OSError:
            continue
        if not chunk:
            raise AssertionError("closed with only %r" % ids)
        c.buf += chunk


def test_max_unacked_ends_and_stores():
    """A client that never acknowledges: the server asks (<r/>), and one
    stanza past sm.max_unacked ends the stream with <policy-violation/>;
    every message, written or not, goes to offline storage."""
    with Server(workers=1, users=USERS, overrides={"sm.max_unacked": "10"}) as s:
        r = Client(s.port)
        r.login("romeo", "pw2", resource="garden")
        j, jj, _ = sm_login(s, "juliet", "balcony", resume=False)
        for i in range(12):
            msg(r, jj, "u%d" % i, "n%d" % i)
        got = j.read_all_until_close()
        # asked once: at most one request outstanding
        assert got.count("<r xmlns='%s'/>" % SM) == 1, got
        assert got.endswith("<stream:error><policy-violation xmlns='%s'/><text xmlns='%s'>"
                            "too many unacknowledged stanzas</text></stream:error>"
                            "</stream:stream>" % (STREAMS, STREAMS)), got
        assert len(re.findall("<message ", got)) == 10, got
        assert "sm.max_unacked" in s.log_text()
        j2 = Client(s.port)
        j2.login("juliet", "pw1", resource="later")
        j2.send("<presence/>")
        ids = collect_ids(j2, "u", 12)
        assert sorted(ids) == sorted("u%d" % i for i in range(12)), ids
        assert "<error" not in r.buf.decode()


def test_resume_same_worker():
    with Server(workers=1, users=USERS) as s:
        r = Client(s.port)
        rj = r.login("romeo", "pw2", resource="garden")
        j, jj, smid = sm_login(s, "juliet", "balcony")
        j.send("<presence/>")
        msg(r, jj, "m1", "one")
        j.read_until(msg_rx("m1", "one"))
        # the TCP connection drops without a closing of the stream
        j.sock.close()
        wait_for(lambda: "session juliet@localhost/balcony kept for resumption" in s.log_text(),
                 what="detached")
        msg(r, jj, "m2", "two")
        msg(r, "juliet@localhost", "m3", "three")
        time.sleep(0.3)
        # no error came back, no unavailable was broadcast
        n = Client(s.port)
        authed(n, "juliet")
        got = resume(n, smid, 0)
        # h: the client's presence was handled
        assert got == "<resumed xmlns='%s' h='1' previd='%s'/>" % (SM, smid), got
        got = n.read_until("^.*?" + msg_rx("m3", "three"))
        # re-sent in order after h=0: m1, then what came while detached
        assert re.findall("id='(m\\d)'", got) == ["m1", "m2", "m3"], got
        # the stream goes on with the same full JID
        msg(r, jj, "m4", "four")
        got = n.read_until(msg_rx("m4", "four"))
        assert "to='%s'" % jj in got, got
        n.send("<message to='%s' id='b1' type='chat'><body>back</body></message>" % rj)
        got = r.read_until(msg_rx("b1", "back"))
        assert "from='%s'" % jj in got, got
        assert "<error" not in r.buf.decode()


def test_resume_order_and_ack():
    """The journal after the client's h, in order; what h acknowledged is
    not sent again."""
    with Server(workers=1, users=USERS) as s:
        r = Client(s.port)
        r.login("romeo", "pw2", resource="garden")
        j, jj, smid = sm_login(s, "juliet", "balcony")
        for i in range(1, 4):
            msg(r, jj, "m%d" % i, "b%d" % i)
        for i in range(1, 4):
            j.read_until(msg_rx("m%d" % i, "b%d" % i))
        j.sock.close()
        wait_for(lambda: "kept for resumption" in s.log_text(), what="detached")
        msg(r, jj, "m4", "b4")
        time.sleep(0.2)
        n = Client(s.port)
        authed(n, "juliet")
        # the client had handled m1 (h=1)
        got = resume(n, smid, 1)
        assert got == "<resumed xmlns='%s' h='0' previd='%s'/>" % (SM, smid), got
        data = n.read_until("^.*?" + msg_rx("m4", "b4"))
        assert "m1" not in data
        order = re.findall("id='(m\\d)'", data)
        assert order == ["m2", "m3", "m4"], data
        # the server asks for an ack of what it sent again
        n.read_until("<r xmlns='%s'/>" % SM)
        n.send("<a xmlns='%s' h='4'/>" % SM)
        n.send("<r xmlns='%s'/>" % SM)
        assert n.read_until("<a [^>]*/>") == "<a xmlns='%s' h='0'/>" % SM


def test_resume_attached_old_connection():
    """The old TCP connection not yet noticed dead: it gets <conflict/>
    and the new one takes the session (section 5)."""
    with Server(workers=1, users=USERS) as s:
        j, jj, smid = sm_login(s, "juliet", "balcony")
        n = Client(s.port)
        authed(n, "juliet")
        got = resume(n, smid, 0)
        assert got == "<resumed xmlns='%s' h='0' previd='%s'/>" % (SM, smid), got
        got = j.read_all_until_close()
        assert re.search(stream_error_re("conflict"), got), got
        n.send("<r xmlns='%s'/>" % SM)
        assert n.read_until("<a [^>]*/>") == "<a xmlns='%s' h='0'/>" % SM


def test_unanswered_ping_detaches():
    """A network gone silent: the XEP-0199 ping goes unanswered, the
    resumable session is kept (not ended with <connection-timeout/>)
    and the client resumes it."""
    with Server(workers=1, users=USERS, overrides={"c2s.idle_timeout": "1s"}) as s:
        j, jj, smid = sm_login(s, "juliet", "balcony")
        j.read_until("<iq from='localhost' id='ping-[0-9]+' to='%s' type='get'>"
                     "<ping xmlns='urn:xmpp:ping'/></iq>" % re.escape(jj), timeout=10)
        wait_for(lambda: "no answer to ping" in s.log_text(), what="ping timeout")
        wait_for(lambda: "kept for resumption" in s.log_text(), what="detached")
        got = j.read_all_until_close()
        assert "connection-timeout" not in got, got
        n = Client(s.port)
        authed(n, "juliet")
        got = resume(n, smid, 0)
        # the ping itself is re-sent: it was never acknowledged
        assert got == "<resumed xmlns='%s' h='0' previd='%s'/>" % (SM, smid), got
        n.read_until("<ping xmlns='urn:xmpp:ping'/></iq>")


def test_resume_errors():
    with Server(workers=1, users=USERS) as s:
        j, jj, smid = sm_login(s, "juliet", "balcony")
        j.sock.close()
        wait_for(lambda: "kept for resumption" in s.log_text(), what="detached")
        # someone else's session: item-not-found, never handed over
        t = Client(s.port)
        authed(t, "tybalt")
        got = resume(t, smid, 0)
        assert got == failed("item-not-found"), got
        assert "of another account's session refused" in s.log_text()
        # h beyond what was sent (nothing): handled-count-too-high
        k = Client(s.port)
        authed(k, "juliet")
        got = resume(k, smid, 3)
        assert got.startswith("<stream:error><undefined-condition xmlns='%s'/>"
                              "<handled-count-too-high xmlns='%s' h='3' send-count='0'/>"
                              % (STREAMS, SM)), got
        # the session is still there for the right client
        n = Client(s.port)
        authed(n, "juliet")
        got = resume(n, smid, 0)
        assert got == "<resumed xmlns='%s' h='0' previd='%s'/>" % (SM, smid), got
        # resumed once: the old id names no detached session now... but
        # the same session, so resuming again takes it over again
        n.send("</stream:stream>")
        n.read_all_until_close()
        # a clean close ends the session: no resumption
        m = Client(s.port)
        authed(m, "juliet")
        got = resume(m, smid, 0)
        assert got == failed("item-not-found"), got


def test_clean_close_and_expiry_go_offline():
    """Unacknowledged messages of a session that ends (a clean close, or
    a detached session expiring) go to offline storage; an IQ request
    to an expired session is answered with an error."""
    with Server(workers=1, users=USERS, overrides={"sm.max_resume_s": "2"}) as s:
        r = Client(s.port)
        rj = r.login("romeo", "pw2", resource="garden")
        j, jj, smid = sm_login(s, "juliet", "balcony")
        j.send("<presence/>")
        msg(r, jj, "c1", "unacked")
        j.read_until(msg_rx("c1", "unacked"))
        # a clean close: XEP-0198 section 5, no resumption; c1 was not
        # acknowledged: it is stored
        j.send("</stream:stream>")
        j.read_all_until_close()
        wait_for(lambda: "stanzas unacknowledged: routed as undelivered" in s.log_text(),
                 what="journal rerouted")
        j2, jj2, smid2 = sm_login(s, "juliet", "balcony")
        j2.send("<presence/>")
        got = j2.read_until(msg_rx("c1", "unacked"))
        assert "urn:xmpp:delay" in got, got
        # both stanzas (its own presence, c1) acknowledged: nothing
        # left to reroute from this session
        j2.send("<a xmlns='%s' h='2'/>" % SM)
        time.sleep(0.2)
        j2.sock.close()
        wait_for(lambda: s.log_text().count("kept for resumption") >= 1, what="detached")
        msg(r, jj2, "e1", "while-detached")
        r.send("<iq to='%s' id='q1' type='get'><query xmlns='jabber:iq:version'/></iq>" % jj2)
        got = r.read_until("<iq [^>]*id='q1'.*?</iq>", timeout=10)
        assert got == ("<iq from='%s' id='q1' to='%s' type='error'><error type='cancel'>"
                       "<service-unavailable xmlns='%s'/></error></iq>" % (jj2, rj, STANZAS)), got
        assert "detached session juliet@localhost/balcony expired after 2s" in s.log_text()
        # expired: the id names nothing any more
        k = Client(s.port)
        authed(k, "juliet")
        got = resume(k, smid2, 0)
        assert got == failed("item-not-found"), got
        k.close()
        j3 = Client(s.port)
        j3.login("juliet", "pw1", resource="later")
        j3.send("<presence/>")
        got = j3.read_until(msg_rx("e1", "while-detached"))
        assert "urn:xmpp:delay" in got, got


def test_resume_other_worker():
    with Server(workers=2, users=USERS) as s:
        r = Client(s.port)
        rj = r.login("romeo", "pw2", resource="garden")
        j = connect_on(s, 0)
        j, jj, smid = sm_login(s, "juliet", "balcony", client=j)
        j.send("<presence/>")
        msg(r, jj, "x1", "before")
        j.read_until(msg_rx("x1", "before"))
        j.sock.close()
        wait_for(lambda: "kept for resumption" in s.log_text(), what="detached")
        msg(r, jj, "x2", "detached")
        time.sleep(0.2)
        # another account asking the owner for it: item-not-found
        t = connect_on(s, 1)
        authed(t, "tybalt")
        got = resume(t, smid, 0)
        assert got == failed("item-not-found"), got
        assert re.search("resumption of juliet@localhost/balcony asked by w1 for "
                         "tybalt@localhost: refused", s.log_text()), s.log_text()[-2000:]
        n = connect_on(s, 1)
        authed(n, "juliet")
        got = resume(n, smid, 1)
        assert got == "<resumed xmlns='%s' h='1' previd='%s'/>" % (SM, smid), got
        got = n.read_until(msg_rx("x2", "detached"))
        assert "to='%s'" % jj in got, got
        assert "handed over to w1" in s.log_text()
        # the session-table entry moved: messages reach the new worker
        msg(r, jj, "x3", "after")
        n.read_until(msg_rx("x3", "after"))
        n.send("<message to='%s' id='b1' type='chat'><body>back</body></message>" % rj)
        got = r.read_until(msg_rx("b1", "back"))
        assert "from='%s'" % jj in got, got
        n.send("<r xmlns='%s'/>" % SM)
        assert n.read_until("<a [^>]*/>") == "<a xmlns='%s' h='2'/>" % SM
        # the id of <enabled/> still names the session after the move:
        # drop again, resume back on the first worker
        n.send("<a xmlns='%s' h='3'/>" % SM)
        time.sleep(0.2)
        n.sock.close()
        wait_for(lambda: s.log_text().count("kept for resumption") >= 2, what="detached")
        msg(r, jj, "x4", "again")
        time.sleep(0.2)
        k = connect_on(s, 0)
        authed(k, "juliet")
        got = resume(k, smid, 3)
        assert got == "<resumed xmlns='%s' h='2' previd='%s'/>" % (SM, smid), got
        got = k.read_until(msg_rx("x4", "again"))
        assert "to='%s'" % jj in got, got
        msg(r, jj, "x5", "last")
        k.read_until(msg_rx("x5", "last"))
        assert "<error" not in r.buf.decode()


def test_resume_keeps_state():
    """After a resumption on the other worker the session is still an
    interested resource (roster pushes reach it: RFC 6121 2.1.6) and
    still blocks what it blocked (XEP-0191)."""
    with Server(workers=2, users=USERS) as s:
        t = Client(s.port)
        tj = t.login("tybalt", "pw3", resource="sword")
        j = connect_on(s, 0)
        j, jj, smid = sm_login(s, "juliet", "balcony", client=j)
        j.send("<iq type='get' id='rg'><query xmlns='jabber:iq:roster'/></iq>")
        j.read_until("<iq [^>]*id='rg'.*?</iq>")
        j.send("<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'>"
               "<item jid='tybalt@localhost'/></block></iq>")
        j.read_until("<iq [^>]*id='b1'[^>]*type='result'/>")
        j.read_until("<item jid='tybalt@localhost'/></block></iq>")
        j.sock.close()
        wait_for(lambda: "kept for resumption" in s.log_text(), what="detached")
        n = connect_on(s, 1)
        authed(n, "juliet")
        got = resume(n, smid, 2)
        assert got.startswith("<resumed "), got
        assert "handed over to w1" in s.log_text()
        time.sleep(0.3)     # the blocklist is loaded again on the new worker
        # a roster push from another resource's change
        o = Client(s.port)
        o.login("juliet", "pw1", resource="desk")
        o.send("<iq type='set' id='rs'><query xmlns='jabber:iq:roster'>"
               "<item jid='nurse@localhost' name='Nurse'/></query></iq>")
        o.read_until("<iq [^>]*id='rs'[^>]*type='result'/>")
        got = n.read_until("<iq [^>]*type='set'><query xmlns='jabber:iq:roster'[^>]*>"
                           "<item [^>]*jid='nurse@localhost'[^>]*/></query></iq>")
        # blocked still
        t.send("<message to='%s' id='bl' type='chat'><body>x</body></message>" % jj)
        got = t.read_until("<message [^>]*id='bl'.*?</message>")
        assert "<service-unavailable xmlns='%s'/>" % STANZAS in got, got
        assert "<body>x</body>" not in n.buf.decode()


def test_resume_keeps_carbons():
    """XEP-0280 carbons are a property of the session: after a resumption
    on the other worker the resumed session still gets sent and received
    copies, without enabling them again."""
    with Server(workers=2, users=USERS) as s:
        r = Client(s.port)
        rj = r.login("romeo", "pw2", resource="garden")
        j = connect_on(s, 0)
        j, jj, smid = sm_login(s, "juliet", "balcony", client=j)
        j.send("<iq type='set' id='c1'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
        j.read_until("<iq [^>]*id='c1'[^>]*type='result'/>")
        j.sock.close()
        wait_for(lambda: "kept for resumption" in s.log_text(), what="detached")
        n = connect_on(s, 1)
        authed(n, "juliet")
        got = resume(n, smid, 1)
        assert got.startswith("<resumed "), got
        assert "handed over to w1" in s.log_text()
        d = Client(s.port)
        dj = d.login("juliet", "pw1", resource="desk")
        d.send("<presence/>")
        d.send("<message to='%s' id='s1' type='chat'><body>sent</body></message>" % rj)
        r.read_until(msg_rx("s1", "sent"))
        got = n.read_until("<message [^>]*>\\s*<sent xmlns='urn:xmpp:carbons:2'>.*?</message>\\s*"
                           "</forwarded></sent></message>")
        assert "id='s1'" in got and "<body>sent</body>" in got, got
        r.send("<message to='%s' id='r1' type='chat'><body>received</body></message>" % dj)
        d.read_until(msg_rx("r1", "received"))
        got = n.read_until("<message [^>]*>\\s*<received xmlns='urn:xmpp:carbons:2'>.*?"
                           "</message>\\s*</forwarded></received></message>")
        assert "id='r1'" in got and "<body>received</body>" in got, got


def test_handover_forwards_frames():
    """A frame that reaches the old owner after it handed the session
    over (the session table still names it) is forwarded to the new
    owner and arrives after the re-sent journal: workers are stopped
    and continued to hold that moment open."""
    import signal
    with Server(workers=3, users=USERS,
                overrides={"sm.handover_timeout": "30s"}) as s:
        r = connect_on(s, 2)
        r.login("romeo", "pw2", resource="garden")
        j = connect_on(s, 0)
        j, jj, smid = sm_login(s, "juliet", "balcony", client=j)
        j.send("<presence/>")
        j.sock.close()
        wait_for(lambda: "kept for resumption" in s.log_text(), what="detached")
        msg(r, jj, "f1", "journaled")
        time.sleep(0.3)
        n = connect_on(s, 1)
        authed(n, "juliet")
        pids = [w["pid"] for w in s.status()["workers"]]
        os.kill(pids[0], signal.SIGSTOP)        # the owner
        try:
            n.send("<resume xmlns='%s' previd='%s' h='0'/>" % (SM, smid))
            wait_for(lambda: "resumption: asking w0 for the session" in s.log_text(),
                     what="SM_TAKE sent")
            time.sleep(0.2)
            os.kill(pids[1], signal.SIGSTOP)    # the taker
            try:
                os.kill(pids[0], signal.SIGCONT)
                wait_for(lambda: "handed over to w1" in s.log_text(), what="SM_GIVE sent")
                # the table still names w0: this goes there, and on
                msg(r, jj, "f2", "forwarded")
                time.sleep(0.5)
            finally:
                os.kill(pids[1], signal.SIGCONT)
        finally:
            os.kill(pids[0], signal.SIGCONT)
        got = n.read_until("^<resumed [^>]*/>")
        assert got == "<resumed xmlns='%s' h='1' previd='%s'/>" % (SM, smid), got
        data = n.read_until("^.*?" + msg_rx("f2", "forwarded"))
        assert re.findall("id='(f\\d)'", data) == ["f1", "f2"], data
        assert "urn:xmpp:delay" not in data, data


def test_handover_timeout_and_late_give():
    """The owner of the session does not answer in sm.handover_timeout
    (its worker is stopped): the client gets <failed/>; when the owner
    answers later, the session ends the expiry way and its message goes
    to offline storage, not lost."""
    import signal
    with Server(workers=2, users=USERS, overrides={"sm.handover_timeout": "1s"}) as s:
        r = connect_on(s, 1)
        r.login("romeo", "pw2", resource="garden")
        j = connect_on(s, 0)
        j, jj, smid = sm_login(s, "juliet", "balcony", client=j)
        j.sock.close()
        wait_for(lambda: "kept for resumption" in s.log_text(), what="detached")
        msg(r, jj, "t1", "held")
        time.sleep(0.3)
        n = connect_on(s, 1)
        authed(n, "juliet")
        pid0 = s.status()["workers"][0]["pid"]
        os.kill(pid0, signal.SIGSTOP)
        try:
            got = resume(n, smid, 0)
        finally:
            os.kill(pid0, signal.SIGCONT)
        assert got == failed("item-not-found"), got
        assert "did not answer in time (sm.handover_timeout)" in s.log_text()
        wait_for(lambda: "handed over after its resumption was given up" in s.log_text(),
                 what="late hand-over")
        # the client may bind after <failed/>: a new session
        assert n.bind("balcony") == jj
        n.send("<presence/>")
        got = n.read_until(msg_rx("t1", "held"))
        assert "urn:xmpp:delay" in got, got


def test_resume_race_with_login():
    """A new login of the same resource and a resumption: whichever binds
    second wins, the other ends with <conflict/> or <failed/>; exactly
    one session holds the JID; a message to it reaches that one."""
    with Server(workers=2, users=USERS) as s:
        r = Client(s.port)
        r.login("romeo", "pw2", resource="garden")
        # 1. the login first: the detached session is replaced, the
        #    resumption fails
        j, jj, smid = sm_login(s, "juliet", "balcony")
        j.sock.close()
        wait_for(lambda: "kept for resumption" in s.log_text(), what="detached")
        l1 = Client(s.port)
        assert l1.login("juliet", "pw1", resource="balcony") == jj
        time.sleep(0.3)
        n = Client(s.port)
        authed(n, "juliet")
        got = resume(n, smid, 0)
        assert got == failed("item-not-found"), got
        msg(r, jj, "y1", "to-login")
        l1.read_until(msg_rx("y1", "to-login"))
        # 2. the resumption first: the login then replaces it
        l1.send("</stream:stream>")
        l1.read_all_until_close()
        j, jj, smid = sm_login(s, "juliet", "balcony")
        j.sock.close()
        wait_for(lambda: s.log_text().count("kept for resumption") >= 2, what="detached")
        n = Client(s.port)
        authed(n, "juliet")
        got = resume(n, smid, 0)
        assert got.startswith("<resumed "), got
        l2 = Client(s.port)
        assert l2.login("juliet", "pw1", resource="balcony") == jj
        got = n.read_all_until_close()
        assert re.search(stream_error_re("conflict"), got), got
        msg(r, jj, "y2", "to-login2")
        l2.read_until(msg_rx("y2", "to-login2"))
        # 3. at once, many times: exactly one holds the JID
        l2.send("</stream:stream>")
        l2.read_all_until_close()
        for round_ in range(6):
            j, jj, smid = sm_login(s, "juliet", "balcony")
            j.sock.close()
            wait_for(lambda: s.log_text().count("kept for resumption") >= 3 + round_,
                     what="detached")
            a = Client(s.port)
            authed(a, "juliet")
            b = Client(s.port)
            feats_b = authed(b, "juliet")
            assert feats_b
            out = {}

            def do_resume():
                out["a"] = resume(a, smid, 0)

            def do_login():
                b.send("<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:"
                       "xmpp-bind'><resource>balcony</resource></bind></iq>")
                out["b"] = b.read_until("<iq type='result' id='bind1'>.*?</iq>")
            t1 = threading.Thread(target=do_resume)
            t2 = threading.Thread(target=do_login)
            t1.start()
            t2.start()
            t1.join(10)
            t2.join(10)
            time.sleep(0.5)
            alive = []
            for c in (a, b):
                c.is_closed(0.3)
                if c is a and not out["a"].startswith("<resumed "):
                    continue
                if b"</stream:stream>" not in c.buf and not c.is_closed(0.1):
                    alive.append(c)
            assert len(alive) == 1, (out, a.buf, b.buf)
            holder = alive[0]
            msg(r, jj, "z%d" % round_, "race")
            holder.read_until(msg_rx("z%d" % round_, "race"))
            holder.send("</stream:stream>")
            holder.read_all_until_close()
            for c in (a, b):
                c.close()


def test_ctl_sessions_sm_field():
    """xmppctl sessions: the sm field says -, on, resumable, detached Ns."""
    import json
    with Server(workers=2, users=USERS) as s:
        a = Client(s.port)
        aj = a.login("romeo", "pw2", resource="plain")
        b, bj, _ = sm_login(s, "juliet", "acks", resume=False)
        c, cj, _ = sm_login(s, "juliet", "mobile")
        d, dj, _ = sm_login(s, "tybalt", "gone")
        d.sock.close()
        wait_for(lambda: "session tybalt@localhost/gone kept for resumption" in s.log_text(),
                 what="detached")

        def rows():
            r = s.ctl("--json", "sessions")
            assert r.returncode == 0, r.stderr
            return dict((x["jid"], x["sm"]) for x in json.loads(r.stdout)["sessions"])
        got = rows()
        assert got[aj] == "-" and got[bj] == "on" and got[cj] == "resumable", got
        assert re.fullmatch("detached [0-9]+s", got[dj]), got
        r = s.ctl("sessions")
        assert r.stdout.splitlines()[0].split()[-2:] == ["IDLE", "SM"], r.stdout
        line = [x for x in r.stdout.splitlines() if x.startswith(dj + " ")]
        assert len(line) == 1 and re.search("detached [0-9]+s$", line[0]), r.stdout


def test_slixmpp_resumes():
    """slixmpp's xep_0198 plugin (software we did not write): enable with
    resumption, the TCP connection drops, a message arrives meanwhile,
    slixmpp reconnects and resumes: it gets the message, its session
    (the same full JID) goes on."""
    import asyncio
    import logging
    import ssl
    import slixmpp
    logging.basicConfig(level=logging.DEBUG if os.environ.get(
        "XMPPD_TEST_CLIENT_DEBUG") else logging.CRITICAL)

    class Slix(slixmpp.ClientXMPP):
        def __init__(self, jid, password):
            super().__init__(jid, password, sasl_mech="SCRAM-SHA-256")
            self.ssl_context.check_hostname = False
            self.ssl_context.verify_mode = ssl.CERT_NONE
            fm = self["feature_mechanisms"]
            default_creds = fm.sasl_callback

            def creds(required, optional):
                r = default_creds(required, optional)
                if "channel_binding" in r:
                    r["channel_binding"] = None     # test_clients.py
                return r
            fm.sasl_callback = creds
            self.register_plugin("xep_0198")
            self.messages = asyncio.Queue()
            self.started = asyncio.Event()
            self.resumed = asyncio.Event()
            self.add_event_handler("session_start", lambda e: (self.send_presence(),
                                                                self.started.set()))
            self.add_event_handler("session_resumed", lambda e: self.resumed.set())
            self.add_event_handler("message", self.messages.put_nowait)

    async def body(s):
        r = Client(s.port)
        r.login("romeo", "pw2", resource="garden")
        x = Slix("juliet@localhost/phone", "pw1")
        x.connect(("127.0.0.1", s.port))
        await asyncio.wait_for(x.started.wait(), 10)
        await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(
            None, lambda: wait_for(lambda: "stream management enabled with resumption"
                                   in s.log_text(), what="enabled")), 10)
        full = str(x.boundjid)
        assert full == "juliet@localhost/phone", full
        msg(r, full, "s1", "first")
        m = await asyncio.wait_for(x.messages.get(), 10)
        assert m["id"] == "s1" and m["body"] == "first", m
        # the network goes away under slixmpp's feet
        x.transport.abort()
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: wait_for(lambda: "kept for resumption" in s.log_text(),
                                   what="detached"))
        msg(r, full, "s2", "while-away")
        await asyncio.sleep(0.3)
        x.connect(("127.0.0.1", s.port))
        await asyncio.wait_for(x.resumed.wait(), 15)
        m = await asyncio.wait_for(x.messages.get(), 10)
        assert m["id"] == "s2" and m["body"] == "while-away", m
        assert str(x.boundjid) == full
        x.send_message(mto="romeo@localhost/garden", mbody="still here", mtype="chat")
        got = await asyncio.get_running_loop().run_in_executor(
            None, lambda: r.read_until("<message [^>]*>.*?</message>"))
        assert "from='%s'" % full in got and "<body>still here</body>" in got, got
        assert "resumed juliet@localhost/phone" in s.log_text()
        x.disconnect()
        await asyncio.sleep(0.2)

    with Server(workers=1, users=USERS) as s:
        asyncio.run(asyncio.wait_for(body(s), 60))


BAD_FORMAT_A = ("<stream:error><bad-format xmlns='%s'/>"
                "<text xmlns='%s'>&lt;a/&gt; without a valid h</text>"
                "</stream:error></stream:stream>" % (STREAMS, STREAMS))


def five_answers(c):
    """Five IQ results: the server has sent five stanzas."""
    for i in range(5):
        c.send("<iq type='get' id='p%d'><query xmlns='jabber:iq:roster'/></iq>" % i)
        got = c.read_until("<iq [^>]*id='p%d'.*?(/>|</iq>)" % i)
        assert "type='result'" in got, got


def test_h_unsigned_int_forms():
    """h is an xs:unsignedInt (XEP-0198 schema): a leading '+', leading
    zeros and surrounding whitespace are that number; an <a h/> going
    back below the last acknowledged value (modulo 2^32: more than was
    sent) is <handled-count-too-high/> in an undefined-condition stream
    error, with h and send-count (section 4)."""
    with Server(workers=1, users=USERS) as s:
        c, _, _ = sm_login(s, "juliet", "balcony")
        five_answers(c)
        for h in ["+3", " 3 ", "0003", "&#9;+05&#10;", " +5 ", "000000000005"]:
            c.send("<a xmlns='%s' h='%s'/>" % (SM, h))
        # the stream goes on: the server's own count answers <r/>
        c.send("<r xmlns='%s'/>" % SM)
        got = c.read_until("<a [^>]*/>")
        assert got == "<a xmlns='%s' h='5'/>" % SM, got
        # 5 was taken: 4 now goes backwards
        c.send("<a xmlns='%s' h='4'/>" % SM)
        got = c.read_all_until_close()
        assert got.endswith("<stream:error><undefined-condition xmlns='%s'/>"
                            "<handled-count-too-high xmlns='%s' h='4' send-count='5'/>"
                            "</stream:error></stream:stream>" % (STREAMS, SM)), got
        assert "acknowledged 4 stanzas, 5 were sent" in s.log_text()
        # <resume h/> takes the same forms
        c, jid, smid = sm_login(s, "juliet", "garden")
        five_answers(c)
        c.sock.close()
        wait_for(lambda: "kept for resumption" in s.log_text(), what="detached")
        n = Client(s.port)
        authed(n, "juliet")
        n.send("<resume xmlns='%s' previd='%s' h=' +0004 '/>" % (SM, smid))
        got = n.read_until("<resumed [^>]*/>|<failed .*?</failed>")
        assert got == "<resumed xmlns='%s' h='5' previd='%s'/>" % (SM, smid), got
        # the fifth answer comes again: the client had handled four
        got = n.read_until("<iq [^>]*id='p[0-9]'.*?(/>|</iq>)")
        assert "id='p4'" in got and "type='result'" in got, got
        n.send("<a xmlns='%s' h='5'/>" % SM)
        n.send("<r xmlns='%s'/>" % SM)
        got = n.read_until("<a [^>]*/>")
        assert got == "<a xmlns='%s' h='5'/>" % SM, got


def test_h_not_unsigned_int():
    """A sign '-', hex, an empty value or more than 4294967295: <a/>
    ends the stream with <bad-format/>, <resume/> gets <failed> with
    <bad-request/> and the stream goes on."""
    bad = ["-1", "0x5", "", "4294967296", "-0", "+", " ", "5 5", "+-5"]
    with Server(workers=1, users=USERS) as s:
        for h in bad:
            c, _, _ = sm_login(s, "juliet", "balcony")
            c.send("<a xmlns='%s' h='%s'/>" % (SM, h))
            got = c.read_all_until_close()
            assert got.endswith(BAD_FORMAT_A), (h, got)
        j, _, smid = sm_login(s, "juliet", "garden")
        j.sock.close()
        wait_for(lambda: "kept for resumption" in s.log_text(), what="detached")
        k = Client(s.port)
        authed(k, "juliet")
        for h in bad:
            k.send("<resume xmlns='%s' previd='%s' h='%s'/>" % (SM, smid, h))
            got = k.read_until("<failed .*?</failed>")
            assert got == failed("bad-request"), (h, got)
        # the largest h there is, for a session that sent nothing
        got = resume(k, smid, 4294967295)
        assert got.startswith("<stream:error><undefined-condition xmlns='%s'/>"
                              "<handled-count-too-high xmlns='%s' h='4294967295' "
                              "send-count='0'/>" % (STREAMS, SM)), got
def test_stop_stores_journals_and_archive():
    """SIGTERM with a detached SM session and an attached one, both
    holding unacknowledged messages, and a burst just sent to the
    attached one (archived in batches): after a start on the same
    database each recipient gets every message from offline storage,
    and the archive holds every message for both sides."""
    s = RestartableServer(workers=2, users=USERS)
    s.start()
    try:
        r = connect_on(s, 1)
        r.login("romeo", "pw2", resource="garden")
        j, jj, _ = sm_login(s, "juliet", "balcony", client=connect_on(s, 0))
        t, tj, _ = sm_login(s, "tybalt", "street", client=connect_on(s, 1))
        j.send("<presence/>")
        t.send("<presence/>")
        N = 30
        jids = ["j%d" % i for i in range(N)]
        tids = ["t%d" % i for i in range(N)]
        for mid in jids[:N // 2]:
            msg(r, jj, mid, "to-" + mid)
        for mid in jids[:N // 2]:
            j.read_until(msg_rx(mid, "to-" + mid))
        # read, never acknowledged; then the connection drops
        j.sock.close()
        wait_for(lambda: "kept for resumption" in s.log_text(), what="detached")
        for mid in jids[N // 2:]:
            msg(r, jj, mid, "to-" + mid)
        for mid in tids:
            msg(r, tj, mid, "to-" + mid)
        t.read_until(msg_rx(tids[-1], "to-" + tids[-1]), timeout=10)
        # the last of romeo's messages has been routed: stop now
        s.stop_processes()
        r.close()
        t.close()
        with open(s.log + ".1", errors="replace") as f:
            log = f.read()
        assert "shutdown_drain_timeout" not in log, log[-3000:]
        s.start()
        for user, pw, ids in (("juliet", "pw1", jids), ("tybalt", "pw3", tids)):
            c = Client(s.port)
            c.login(user, pw, resource="later")
            c.send("<presence/>")
            for mid in ids:
                got = c.read_until(msg_rx(mid, "to-" + mid), timeout=10)
                assert "urn:xmpp:delay" in got, got
            c.close()
        rows = s.db.psql("SELECT a.username || ' ' || (CASE WHEN m.outgoing THEN 't' ELSE 'f' END) || ' ' || "
                         "substring(m.stanza from 'id=.([jt][0-9]+).') "
                         "FROM mam_messages m JOIN accounts a ON a.id = m.account_id",
                         conninfo=s.db.conninfo).split("\n")
        rows = sorted(x for x in rows if x)
        want = sorted(["romeo t %s" % m for m in jids + tids] +
                      ["juliet f %s" % m for m in jids] +
                      ["tybalt f %s" % m for m in tids])
        assert rows == want, (len(rows), len(want),
                              sorted(set(want) - set(rows))[:10],
                              sorted(set(rows) - set(want))[:10])
    finally:
        s.stop()


def test_reload_keeps_workers_and_sessions():
    """SIGHUP reloads without restarting a worker: the same worker pids,
    and a detached SM session keeps its journal and resumes with every
    message."""
    with Server(workers=2, users=USERS) as s:
        pids = s.worker_pids()
        gen = s.status()["master"]["generation"]
        r = Client(s.port)
        r.login("romeo", "pw2", resource="garden")
        j, jj, smid = sm_login(s, "juliet", "balcony")
        j.send("<presence/>")
        msg(r, jj, "h1", "before")
        j.read_until(msg_rx("h1", "before"))
        j.sock.close()
        wait_for(lambda: "kept for resumption" in s.log_text(), what="detached")
        msg(r, jj, "h2", "detached")
        os.kill(s.master_pid, signal.SIGHUP)
        wait_for(lambda: s.status_ok() and
                 all(w["generation"] > gen for w in s.status()["workers"]),
                 what="workers running the reloaded config")
        msg(r, jj, "h3", "after")
        assert s.worker_pids() == pids, (pids, s.worker_pids())
        n = Client(s.port)
        authed(n, "juliet")
        got = resume(n, smid, 0)
        # h: its initial presence
        assert got == "<resumed xmlns='%s' h='1' previd='%s'/>" % (SM, smid), got
        for mid, body in (("h1", "before"), ("h2", "detached"), ("h3", "after")):
            n.read_until(msg_rx(mid, body))
        n.close()
        r.close()


def test_resume_sends_pending_last_items():
    """Review 13b G8: last PEP items still waiting for a slow client's
    output when its link drops are not lost: after <resumed/> the
    session gets every node's last item (some may come twice)."""
    import socket
    from test_pep_notify import BLOB, CAPS_NODE, caps, roster
    ov = {"c2s.max_output_bytes": "64K", "c2s.send_buffer": "4K"}
    with Server(workers=1, users=USERS, overrides=ov) as s:
        roster(s, "juliet@localhost", "romeo@localhost", "both")
        roster(s, "romeo@localhost", "juliet@localhost", "both")
        r = Client(s.port)
        r.login("romeo", "pw2", resource="pub")
        nodes = ["urn:example:big%02d" % i for i in range(12)]
        for i, node in enumerate(nodes):
            r.send("<iq type='set' id='p%d'><pubsub xmlns='http://jabber.org/protocol/"
                   "pubsub'><publish node='%s'><item id='i%d'>%s</item></publish>"
                   "</pubsub></iq>" % (i, node, i, BLOB))
            r.read_until("<iq [^>]*id='p%d'[^>]*type='result'" % i)
        feats = [n + "+notify" for n in nodes]
        ver, inner = caps(feats)
        j = Client(s.port)
        j.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        j, jj, smid = sm_login(s, "juliet", "phone", client=j)
        j.send("<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
               "node='%s' ver='%s'/></presence>" % (CAPS_NODE, ver))
        qnode = "%s#%s" % (CAPS_NODE, ver)
        got = j.read_until("<iq [^>]*><query xmlns='http://jabber.org/protocol/disco#info' "
                           "node='%s'/></iq>" % re.escape(qnode))
        iq_id = re.search("id='([^']+)'", got).group(1)
        j.send("<iq type='result' to='juliet@localhost' id='%s'><query xmlns='http://"
               "jabber.org/protocol/disco#info' node='%s'>%s</query></iq>" % (iq_id, qnode, inner))
        # the first page is out, the rest wait for juliet to read: she
        # does not, and her link drops
        time.sleep(1)
        j.sock.close()
        wait_for(lambda: "session juliet@localhost/phone kept for resumption" in s.log_text(),
                 what="detached")
        n = Client(s.port)
        authed(n, "juliet")
        got = resume(n, smid, 0)
        assert got.startswith("<resumed xmlns='%s' h='" % SM), got
        seen = set()
        deadline = time.monotonic() + 20
        while seen != set(nodes) and time.monotonic() < deadline:
            got = n.read_until("<message [^>]*type='headline'[^>]*><event xmlns='http://"
                               "jabber.org/protocol/pubsub#event'><items node='([^']+)'>"
                               "<item id='i\\d+'>.*?</message>", timeout=20)
            seen.add(re.search("<items node='([^']+)'>", got).group(1))
            if "<r xmlns" in n.buf.decode(errors="replace"):
                n.send("<a xmlns='%s' h='0'/>" % SM)
        assert seen == set(nodes), sorted(set(nodes) - seen)
        assert "resumed with last PEP items not all sent: sending them again" in s.log_text()
        n.close()
        r.close()


if __name__ == "__main__":
    run_tests([test_feature_enable_acks, test_misuse, test_enabled_max,
               test_max_unacked_ends_and_stores,
               test_resume_same_worker, test_resume_order_and_ack,
               test_resume_attached_old_connection, test_unanswered_ping_detaches,
               test_resume_errors,
               test_clean_close_and_expiry_go_offline, test_resume_other_worker,
               test_resume_keeps_state, test_resume_keeps_carbons,
               test_handover_forwards_frames,
               test_handover_timeout_and_late_give,
               test_resume_race_with_login, test_ctl_sessions_sm_field,
               test_slixmpp_resumes,
               test_h_unsigned_int_forms, test_h_not_unsigned_int,
               test_stop_stores_journals_and_archive,
               test_reload_keeps_workers_and_sessions,
               test_resume_sends_pending_last_items])

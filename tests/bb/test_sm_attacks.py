"""XEP-0198 stream management under attack, black box with exact XML:
clients that never acknowledge filling a worker's journal pool
(sm.pool_bytes_per_worker) must not end other users' sessions; garbage
h and previd values get the XEP's answers; concurrent resumptions,
kicked and limit-bound detached sessions, CSI-held stanzas across a
resumption.  Needs XMPPD_TEST_PGCONN.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, Server, run_tests, wait_for  # noqa: E402
import imlib  # noqa: E402
from imlib import connect_on  # noqa: E402
from test_csi import INACTIVE, counter, ping  # noqa: E402
from test_sm import (SM, STREAMS, authed, collect_ids, failed, msg,  # noqa: E402
                     msg_rx, resume, sm_login)
import test_sm  # noqa: E402

USERS = [("juliet@localhost", "pw1"), ("romeo@localhost", "pw2"),
         ("tybalt@localhost", "pw3"), ("mallory@localhost", "pw4")]
test_sm.PW["mallory"] = "pw4"

BLOCK_DATA = 248            # shm/ipc.h IPC_SM_BLOCK_DATA
POOL_BLOCKS = 256           # 64K of 256-byte blocks
SESSION_BYTES = 16 * 1024   # sm.max_unacked_bytes
POLICY = ("<stream:error><policy-violation xmlns='%s'/><text xmlns='%s'>"
          "too many unacknowledged stanzas</text></stream:error>"
          "</stream:stream>" % (STREAMS, STREAMS))


def blocks(n):
    return (n + BLOCK_DATA - 1) // BLOCK_DATA


def pool_full(detach):
    """One account whose sessions never acknowledge fills the worker's
    pool to the last block (then drops its connections: detach).  A
    message then comes for another user's session: that user keeps its
    stream and gets the message; the attacker's largest journal ends
    instead (<policy-violation/>, or a detached session ends and cannot
    be resumed), its stanzas go to offline storage, the operator reads
    why in the log, and the sender gets no error."""
    with Server(workers=1, users=USERS,
                overrides={"sm.pool_bytes_per_worker": "64K",
                           "sm.max_unacked_bytes": "16K"}) as s:
        r = Client(s.port)
        r.login("romeo", "pw2", resource="garden")
        j, jj, _ = sm_login(s, "juliet", "balcony", resume=False)
        ms = []
        for i in range(4):
            c, jid, smid = sm_login(s, "mallory", "r%d" % i, resume=detach)
            ms.append([c, jid, 0, [], smid])    # client, jid, bytes, ids
        used = 0
        # a probe sets the body size so that each stanza is 4 blocks
        msg(r, ms[0][1], "m000", "p" * 700)
        got = ms[0][0].read_until("<message .*?</message>")
        body = 700 + (4 * BLOCK_DATA - 120) - len(got.encode())
        ms[0][2] += len(got.encode()) + 8
        ms[0][3].append("m000")
        used += blocks(len(got.encode()))
        n = 1
        for m in ms:
            while (m[2] + 4 * BLOCK_DATA + 8 <= SESSION_BYTES and
                   used + 4 <= POOL_BLOCKS):
                mid = "m%03d" % n
                n += 1
                msg(r, m[1], mid, "x" * body)
                got = m[0].read_until("<message [^>]*id='%s'.*?</message>" % mid)
                L = len(got.encode())
                assert 3 * BLOCK_DATA < L <= 4 * BLOCK_DATA, L
                m[2] += L + 8
                m[3].append(mid)
                used += 4
        assert used == POOL_BLOCKS, used
        assert "pool full" not in s.log_text()
        if detach:
            for m in ms:
                m[0].sock.close()
            wait_for(lambda: s.log_text().count("kept for resumption") == 4,
                     what="detached")
        # the pool is full: a message for juliet
        msg(r, jj, "v1", "hello")
        got = j.read_until("<message [^>]*id='v1'.*?</message>")
        assert "<body>hello</body>" in got, got
        j.send("<r xmlns='%s'/>" % SM)
        got = j.read_until("<a [^>]*/>")
        assert got == "<a xmlns='%s' h='0'/>" % SM, got
        wait_for(lambda: "ending the largest journal" in s.log_text(),
                 what="eviction logged")
        line = [x for x in s.log_text().splitlines()
                if "ending the largest journal" in x][0]
        assert "(sm.pool_bytes_per_worker)" in line, line
        k = re.search(r"mallory@localhost/r(\d)", line)
        assert k, line
        victim = ms[int(k.group(1))]
        if detach:
            wait_for(lambda: "c%s: detached session %s ends: <policy-violation/>"
                     % (re.search(r"ending the largest journal, c(\d+)", line).group(1),
                        victim[1]) in s.log_text(), what="detached session ended")
            t = Client(s.port)
            authed(t, "mallory")
            got = resume(t, victim[4], 0)
            assert got == failed("item-not-found"), got
        else:
            got = victim[0].read_all_until_close()
            assert got.endswith(POLICY), got[-400:]
        # its stanzas, acknowledged by no one, are stored for mallory
        later = Client(s.port)
        later.login("mallory", "pw4", resource="later")
        later.send("<presence/>")
        ids = collect_ids(later, "m", len(victim[3]))
        assert sorted(set(ids)) == sorted(victim[3]), (ids, victim[3])
        # the other sessions go on, the sender saw no error
        for m in ms:
            if m is not victim and not detach:
                m[0].send("<r xmlns='%s'/>" % SM)
                got = m[0].read_until("<a [^>]*/>")
                assert got == "<a xmlns='%s' h='0'/>" % SM, got
        assert "<error" not in r.buf.decode()


def test_pool_full_ends_the_largest_journal():
    pool_full(detach=False)


def test_pool_full_ends_the_largest_detached():
    pool_full(detach=True)


def test_garbage_h():
    """<a h/> that is not a plain decimal 32-bit count ends the stream
    with <bad-format/>; <resume/> with one gets <bad-request/>, a garbage
    previd <item-not-found/>."""
    bad = ["", "-1", "4294967296", "99999999999", "1e3", "0x1", "abc"]
    with Server(workers=1, users=USERS) as s:
        for h in bad:
            c, _, _ = sm_login(s, "juliet", "balcony")
            c.send("<a xmlns='%s' h='%s'/>" % (SM, h))
            got = c.read_all_until_close()
            assert got.endswith("<stream:error><bad-format xmlns='%s'/>"
                                "<text xmlns='%s'>&lt;a/&gt; without a valid h"
                                "</text></stream:error></stream:stream>"
                                % (STREAMS, STREAMS)), (h, got)
        # <resume/> with such an h: bad-request, the stream goes on
        k = Client(s.port)
        authed(k, "juliet")
        for h in bad:
            k.send("<resume xmlns='%s' previd='x' h='%s'/>" % (SM, h))
            got = k.read_until("<failed .*?</failed>")
            assert got == failed("bad-request"), (h, got)
        # previd garbage: item-not-found, whatever the bytes
        for p in ["", "x" * 4000, "AAAA", "%00", "&lt;&amp;"]:
            got = resume(k, p, 0)
            assert got == failed("item-not-found"), (p, got)


def test_same_previd_three_at_once():
    """Three connections of the account resume one detached session at
    once, two on the other worker: each gets <resumed/> or <failed/>,
    and at the end exactly one stream holds the session, which gets
    the next message once."""
    with Server(workers=2, users=USERS) as s:
        r = Client(s.port)
        r.login("romeo", "pw2", resource="garden")
        j = connect_on(s, 0)
        j, jj, smid = sm_login(s, "juliet", "balcony", client=j)
        msg(r, jj, "x1", "before")
        j.read_until(msg_rx("x1", "before"))
        j.sock.close()
        wait_for(lambda: "kept for resumption" in s.log_text(), what="detached")
        cs = [connect_on(s, 1), connect_on(s, 1), connect_on(s, 0)]
        for c in cs:
            authed(c, "juliet")
        for c in cs:
            c.send("<resume xmlns='%s' previd='%s' h='0'/>" % (SM, smid))
        resumed = []
        for c in cs:
            got = c.read_until("<resumed [^>]*/>|<failed .*?</failed>")
            if got.startswith("<resumed "):
                assert got == "<resumed xmlns='%s' h='0' previd='%s'/>" % (SM, smid), got
                resumed.append(c)
            else:
                assert got == failed("item-not-found"), got
        # every answer is in: each take-over is done; all but the last
        # holder were told <conflict/>
        assert resumed
        holders = []
        for c in resumed:
            got = c.read_until("<message [^>]*id='x1'.*?</message>")
            c.send("<r xmlns='%s'/>" % SM)
            got = c.read_until("<a [^>]*/>|<stream:error>.*?</stream:stream>")
            if got.startswith("<a "):
                assert got == "<a xmlns='%s' h='0'/>" % SM, got
                holders.append(c)
            else:
                assert "<conflict xmlns='%s'/>" % STREAMS in got, got
        assert len(holders) == 1, len(holders)
        msg(r, jj, "x2", "after")
        holders[0].read_until(msg_rx("x2", "after"))
        holders[0].send("<r xmlns='%s'/>" % SM)
        got = holders[0].read_until("(?s).*?<a xmlns='%s' h='0'/>" % SM)
        assert "<message" not in got, got     # once
        assert "<error" not in r.buf.decode()


def test_passwd_kick_ends_detached():
    """`xmppctl user passwd --kick` ends a detached session too: its
    previd names nothing any more and what it held goes to offline
    storage."""
    with Server(workers=1, users=USERS) as s:
        r = Client(s.port)
        r.login("romeo", "pw2", resource="garden")
        j, jj, smid = sm_login(s, "juliet", "balcony")
        msg(r, jj, "k1", "before")
        j.read_until(msg_rx("k1", "before"))
        j.sock.close()
        wait_for(lambda: "kept for resumption" in s.log_text(), what="detached")
        msg(r, jj, "k2", "while")
        s.ctl_config("user", "passwd", "juliet@localhost", "--kick", input="new-pw\n")
        wait_for(lambda: "detached session ends: <reset/>" in s.log_text(),
                 what="detached session kicked")
        old = test_sm.PW["juliet"]
        test_sm.PW["juliet"] = "new-pw"
        try:
            k = Client(s.port)
            authed(k, "juliet")
            got = resume(k, smid, 0)
            assert got == failed("item-not-found"), got
        finally:
            test_sm.PW["juliet"] = old
        n = Client(s.port)
        n.login("juliet", "new-pw", resource="later")
        n.send("<presence/>")
        ids = collect_ids(n, "k", 2)
        assert sorted(set(ids)) == ["k1", "k2"], ids


def test_detached_sessions_make_room():
    """An account at c2s.max_sessions_per_account whose sessions all
    wait for <resume/> (a phone that reconnects without its previd):
    a new login binds, the session detached longest ends (on the other
    worker or on this one), its previd names nothing any more and its
    journal goes to offline storage; the others still resume."""
    with Server(workers=2, users=USERS,
                overrides={"c2s.max_sessions_per_account": "3"}) as s:
        r = Client(s.port)
        r.login("romeo", "pw2", resource="garden")
        ids = {}
        for i, w in enumerate([0, 1, 0]):
            c, jid, smid = sm_login(s, "juliet", "p%d" % i, client=connect_on(s, w))
            msg(r, jid, "z%d" % i, "n%d" % i)
            c.read_until(msg_rx("z%d" % i, "n%d" % i))
            c.sock.close()
            wait_for(lambda: s.log_text().count("kept for resumption") == i + 1,
                     what="detached")
            ids[i] = smid
        # bound on w1: p0 (w0) ends
        a = connect_on(s, 1)
        assert a.login("juliet", "pw1", resource="new1") == "juliet@localhost/new1"
        assert re.search(r"juliet@localhost has c2s.max_sessions_per_account sessions: "
                         r"juliet@localhost/p0 \(w0 c\d+\), waiting for <resume/> for "
                         r"\d+s, ends to make room", s.log_text()), s.log_text()[-3000:]
        wait_for(lambda: "juliet@localhost/p0" in s.log_text() and
                 re.search("detached session ends: <conflict/>", s.log_text()),
                 what="p0 ended")
        k = Client(s.port)
        authed(k, "juliet")
        assert resume(k, ids[0], 1) == failed("item-not-found")
        # bound on w1 again: p1, on w1 itself, ends
        b = connect_on(s, 1)
        assert b.login("juliet", "pw1", resource="new2") == "juliet@localhost/new2"
        assert re.search(r"sessions: juliet@localhost/p1 \(w1 c\d+\)", s.log_text())
        k = Client(s.port)
        authed(k, "juliet")
        assert resume(k, ids[1], 1) == failed("item-not-found")
        # p2 still resumes
        k = Client(s.port)
        authed(k, "juliet")
        got = resume(k, ids[2], 1)
        assert got == "<resumed xmlns='%s' h='0' previd='%s'/>" % (SM, ids[2]), got
        # no room left, nothing waits: refused as before
        d = Client(s.port)
        authed(d, "juliet")
        d.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
               "<resource>new3</resource></bind></iq>")
        got = d.read_until("<iq [^>]*id='b'.*?</iq>")
        assert "<resource-constraint " in got, got
        # the journals of p0 and p1 were stored
        a.send("<presence/>")
        got = collect_ids(a, "z", 2)
        assert sorted(set(got)) == ["z0", "z1"], got
        assert "<error" not in r.buf.decode()


def csi_held_resumed(workers):
    """A session made inactive (XEP-0352) holds a contact's presence
    update; its connection drops; at <resume/> (on its worker, or on the
    other one) the update comes with the journal, not dropped."""
    with Server(workers=2, users=imlib.USERS) as s:
        j = imlib.login(s, "juliet", "j", worker=0)
        r = imlib.login(s, "romeo", "r")
        imlib.subscribe_both(j, r)
        j.drain()
        j.c.send("<enable xmlns='%s' resume='true'/>" % SM)
        got = j.c.read_until("<enabled [^>]*/>")
        smid = re.search("id='([^']+)'", got).group(1)
        j.c.send(INACTIVE)
        j.c.send("<iq to='localhost' type='get' id='p0'><ping xmlns='urn:xmpp:ping'/></iq>")
        j.c.read_until("<iq from='localhost' id='p0'[^>]*/>")
        held0 = counter(s, "xmppd_csi_held_stanzas")
        r.send("<presence><show>away</show></presence>")
        r.expect(imlib.exact(ping(r, "pr")))
        wait_for(lambda: counter(s, "xmppd_csi_held_stanzas") - held0 == 1,
                 what="presence held")
        j.c.sock.close()
        wait_for(lambda: "kept for resumption" in s.log_text(), what="detached")
        k = connect_on(s, workers)
        k.open()
        k.starttls()
        assert k.auth_scram("juliet", imlib.PW["juliet"]).startswith("<success")
        k.open()
        got = resume(k, smid, 1)
        assert got.startswith("<resumed "), got
        got = k.read_until("<presence [^>]*from='romeo@localhost/r'[^>]*>.*?</presence>")
        assert "<show>away</show>" in got, got


def test_csi_held_resumed_same_worker():
    csi_held_resumed(0)


def test_csi_held_resumed_other_worker():
    csi_held_resumed(1)


if __name__ == "__main__":
    run_tests([test_pool_full_ends_the_largest_journal,
               test_pool_full_ends_the_largest_detached, test_garbage_h,
               test_same_previd_three_at_once, test_passwd_kick_ends_detached,
               test_detached_sessions_make_room,
               test_csi_held_resumed_same_worker,
               test_csi_held_resumed_other_worker])

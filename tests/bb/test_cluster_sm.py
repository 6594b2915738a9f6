"""XEP-0198 stream resumption across the nodes of a cluster (issue 15
slice 8), three xmppd nodes on three NATS servers (tests/bb/clusterlab.py):

  * a session made resumable on n1, dropped with stanzas unacknowledged,
    resumes on n3: <resumed/> with the right h, the unacknowledged
    stanzas (and the one sent while detached) come again once each, in
    order, and every node lists the session on n3 afterwards;
  * the same previd, held by the client after the move (XEP-0198 gives
    no new id at <resumed/>), resumes the session again on a third node
    (n2), then, while that stream is still attached, on n1 (the old
    stream gets <conflict/>), and fails on every node once the session
    is closed (a clean close ends it: XEP-0198 section 5);
  * forged previds (a changed MAC, smstore's part alone) fail;
  * a journal of about 800 KB (more than a NATS batch of the bridge,
    less than a frame) crosses in one SM_GIVE;
  * a session whose node is killed (kill -9) cannot be resumed:
    item-not-found within a bounded time, not a hang; the client binds
    anew, and the messages sent to the dead session meanwhile are in
    offline storage;
  * messages from another node that the client read but never
    acknowledged (<a h/>) are not lost with its node: killed -9, they
    come from offline storage at the next login, and those it did
    acknowledge do not come twice;
  * such held messages do not make the sending node keep the others
    sent after them (the ack names the held ones), and after
    cluster.hold_time they are acknowledged anyway (nothing kept);
  * a journal handed to another worker of the same node (a resumption
    there) keeps its messages held until the client acknowledges them,
    not only for sm.forward_time: killed -9 long after, the node's
    unacknowledged messages come from offline storage;
  * messages an inactive client's CSI queue (XEP-0352) keeps on its
    node are held too: killed -9, they come from offline storage;
  * so are the unacknowledged messages of a journal that a respawned
    worker adopted after its predecessor was killed: the node killed
    -9 afterwards, they come from offline storage.

Exits 77 without nats-server (clusterlab's skips).  Needs
XMPPD_TEST_PGCONN.
"""
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_tests  # noqa: E402
from clusterlab import Lab, skippable, wait_until  # noqa: E402

SM = "urn:xmpp:sm:3"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
PW = {"juliet": "jul1et-pw", "romeo": "r0meo-pw"}
WORKERS = 2     # so the bridge's slot, in `xmppctl sessions`, is 2


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


def connect(lab, i):
    c = lab.nodes[i].connect(timeout=10)
    lab.clients.append(c)
    return c


def sm_login(lab, i, user, resource):
    c = connect(lab, i)
    feats = authed(c, user)
    assert "<sm xmlns='%s'/>" % SM in feats, feats
    jid = c.bind(resource)
    c.send("<enable xmlns='%s' resume='true'/>" % SM)
    got = c.read_until("<enabled [^>]*/>|<failed .*?</failed>")
    m = re.search("id='([^']+)'", got)
    assert m, got
    return c, jid, m.group(1)


def available_sm_login(lab, i, user, resource):
    """Like sm_login, but available first (its own presence read), so
    that what comes after <enabled/> is the messages alone and h counts
    them."""
    c = connect(lab, i)
    authed(c, user)
    jid = c.bind(resource)
    c.send("<presence/>")
    c.read_until("<presence [^>]*from='%s'[^>]*/?>" % re.escape(jid))
    c.send("<enable xmlns='%s' resume='true'/>" % SM)
    got = c.read_until("<enabled [^>]*/>")
    return c, jid, re.search("id='([^']+)'", got).group(1)


def resume(c, previd, h, timeout=None):
    c.send("<resume xmlns='%s' previd='%s' h='%d'/>" % (SM, previd, h))
    return c.read_until("<resumed [^>]*/>|<failed .*?</failed>|"
                        "<stream:error>.*?</stream:stream>", timeout=timeout)


def msg(frm, to, mid, body="x"):
    frm.send("<message to='%s' id='%s' type='chat'><body>%s</body></message>"
             % (to, mid, body))


def msg_rx(mid):
    return "<message [^>]*id='%s'[^>]*>.*?</message>" % mid


def read_ids(c, n, prefix, timeout=15):
    """The ids of the next n messages c receives (ids starting with
    prefix), in order."""
    out = []
    for _ in range(n):
        got = c.read_until(msg_rx("%s[^']*" % re.escape(prefix)), timeout=timeout)
        out.append(re.search("id='([^']+)'", got).group(1))
    return out


def more_ids(c, prefix, t=0.8):
    """Ids of messages that come within t seconds more (none expected)."""
    out = []
    end = time.monotonic() + t
    while time.monotonic() < end:
        try:
            got = c.read_until(msg_rx("%s[^']*" % re.escape(prefix)),
                               timeout=max(0.05, end - time.monotonic()))
        except AssertionError as e:
            if "closed" in str(e):
                raise
            break
        out.append(re.search("id='([^']+)'", got).group(1))
    return out


def sessions(node):
    """{full JID: (worker slot, sm field)} from xmppctl sessions --json."""
    r = node.ctl("sessions", "--json")
    try:
        data = json.loads(r.stdout)
    except ValueError:
        return {}
    rows = data.get("sessions", data) if isinstance(data, dict) else data
    out = {}
    for row in rows:
        if isinstance(row, dict) and "jid" in row:
            # (the node holding it, its worker there, its XEP-0198 state)
            out[row["jid"]] = (row.get("node"), int(row.get("worker", -1)),
                               row.get("sm"))
    return out


def wait_held_on(lab, jid, holder, timeout=10):
    """Every running node lists jid as held by node holder (its "node"
    field), resumable there."""
    def check():
        for k, node in enumerate(lab.nodes):
            if not node.running:
                continue
            row = sessions(node).get(jid)
            if row is None:
                return False, "%s does not list %s" % (node.name, jid)
            want = lab.nodes[holder].name
            if row[0] != want or not 0 <= row[1] < WORKERS:
                return False, "%s: %s is %r (not %s's)" % (node.name, jid, row, want)
            if k == holder and row[2] != "resumable":
                return False, "%s: %s is %r" % (node.name, jid, row)
        return True, None
    wait_until(check, timeout, "%s listed on node %d everywhere" % (jid, holder))


def detached(node, n):
    """node's log says n sessions were kept for resumption."""
    wait_until(lambda: (node.log_text().count("kept for resumption") >= n, None),
               10, "%s: a session detached" % node.name)


def offline_rows(lab):
    return lab.db.psql("SELECT stanza FROM offline_messages", conninfo=lab.db.conninfo)


def forged(previd):
    """The same previd with one character of its MAC changed."""
    i = len(previd) - 2
    ch = "A" if previd[i] != "A" else "B"
    return previd[:i] + ch + previd[i + 1:]


def new_lab():
    return Lab(nodes=3, nats=3, workers=WORKERS,
               overrides={"sm.max_unacked_bytes": "1008K"})


def users(lab):
    for u, pw in PW.items():
        lab.add_user("%s@localhost" % u, pw)
    lab.wait_converged(15)


@skippable
def test_resume_on_another_node():
    with new_lab() as lab:
        users(lab)
        r = lab.client(1, "romeo", PW["romeo"], "garden")
        j, jj, smid = sm_login(lab, 0, "juliet", "balcony")
        assert "." in smid, "a cluster previd names its node: %s" % smid
        j.send("<presence/>")
        wait_held_on(lab, jj, 0)
        for i in range(1, 6):
            msg(r, jj, "m%d" % i)
        assert read_ids(j, 5, "m") == ["m1", "m2", "m3", "m4", "m5"]
        # handled: her own presence, m1 and m2; m3..m5 not acknowledged
        j.send("<a xmlns='%s' h='3'/>" % SM)
        time.sleep(0.3)
        j.sock.close()
        detached(lab.nodes[0], 1)
        msg(r, jj, "m6", "while detached")
        time.sleep(0.5)

        # forgeries, on the node that would ask n1
        f = connect(lab, 2)
        authed(f, "juliet")
        assert resume(f, forged(smid), 2) == failed("item-not-found")
        assert resume(f, smid.split(".")[0], 2) == failed("item-not-found")
        assert "a previd no node of ours made" in lab.nodes[2].log_text()

        # the resumption on n3
        n = connect(lab, 2)
        authed(n, "juliet")
        got = resume(n, smid, 3)
        assert got == "<resumed xmlns='%s' h='1' previd='%s'/>" % (SM, smid), got
        got = read_ids(n, 4, "m")
        assert got == ["m3", "m4", "m5", "m6"], got
        assert more_ids(n, "m") == [], "a stanza came twice"
        assert re.search("handed over to w[0-9]+ c[0-9]+",
                         lab.nodes[0].log_text()), "n1 gave the session"
        wait_held_on(lab, jj, 2)
        # stanzas both ways after the move
        msg(r, jj, "m7")
        assert read_ids(n, 1, "m") == ["m7"]
        msg(n, r.jid, "b1", "back")
        got = r.read_until(msg_rx("b1"))
        assert "from='%s'" % jj in got, got
        n.send("<r xmlns='%s'/>" % SM)
        assert n.read_until("<a [^>]*/>") == "<a xmlns='%s' h='2'/>" % SM

        # the previd still names the session (XEP-0198 gives no new id
        # at <resumed/>): dropped on n3, it resumes on n2, which asks
        # the node holding it now (from the directory), not n1
        n.send("<a xmlns='%s' h='8'/>" % SM)    # up to m7
        time.sleep(0.3)
        n.sock.close()
        detached(lab.nodes[2], 1)
        msg(r, jj, "m8")
        time.sleep(0.5)
        k = connect(lab, 1)
        authed(k, "juliet")
        got = resume(k, smid, 8)
        assert got == "<resumed xmlns='%s' h='2' previd='%s'/>" % (SM, smid), got
        assert read_ids(k, 1, "m") == ["m8"]
        assert more_ids(k, "m") == []
        wait_held_on(lab, jj, 1)

        # resumed again while attached (a client that lost its socket
        # before the server did), back on n1, the node that made the
        # id: n1 asks n2 (from the directory), the old stream gets
        # <conflict/> (XEP-0198 section 5), as between two workers
        k.send("<a xmlns='%s' h='9'/>" % SM)
        time.sleep(0.3)
        z = connect(lab, 0)
        authed(z, "juliet")
        got = resume(z, smid, 9)
        assert got == "<resumed xmlns='%s' h='2' previd='%s'/>" % (SM, smid), got
        got = k.read_until("<stream:error>.*?</stream:stream>")
        assert "<conflict " in got, got
        wait_held_on(lab, jj, 0)
        msg(r, jj, "m9")
        assert read_ids(z, 1, "m") == ["m9"]

        # a clean close ends the session: the previd is no longer good
        z.send("<a xmlns='%s' h='10'/>" % SM)
        z.send("</stream:stream>")
        z.read_all_until_close(timeout=5)
        wait_until(lambda: (all(jj not in sessions(x) for x in lab.nodes), None),
                   10, "the closed session left every node's list")
        for i in (0, 1, 2):
            again = connect(lab, i)
            authed(again, "juliet")
            assert resume(again, smid, 10) == failed("item-not-found"), i
        assert "<error" not in r.buf.decode()


@skippable
def test_large_journal_crosses():
    """About 800 KB unacknowledged: one SM_GIVE larger than a batch of
    the bridge (256 KB) crosses NATS (max_payload 2 MB in the lab)."""
    with new_lab() as lab:
        users(lab)
        r = lab.client(1, "romeo", PW["romeo"], "garden")
        j, jj, smid = sm_login(lab, 0, "juliet", "big")
        j.send("<presence/>")
        wait_held_on(lab, jj, 0)
        body = "y" * 10000
        count = 80
        for i in range(count):
            msg(r, jj, "L%d" % i, body)
        assert read_ids(j, count, "L", timeout=30) == ["L%d" % i for i in range(count)]
        j.sock.close()
        detached(lab.nodes[0], 1)
        n = connect(lab, 2)
        authed(n, "juliet")
        got = resume(n, smid, 0, timeout=20)
        assert got == "<resumed xmlns='%s' h='1' previd='%s'/>" % (SM, smid), got
        assert read_ids(n, count, "L", timeout=30) == ["L%d" % i for i in range(count)]
        # the journal: her own presence and the count messages
        assert re.search(r"handed over to w[0-9]+ c[0-9]+ \(%d stanzas\)" % (count + 1),
                         lab.nodes[0].log_text())


@skippable
def test_node_killed_item_not_found():
    with new_lab() as lab:
        users(lab)
        r = lab.client(1, "romeo", PW["romeo"], "garden")
        j, jj, smid = sm_login(lab, 0, "juliet", "doomed")
        j.send("<presence/>")
        wait_held_on(lab, jj, 0)
        msg(r, jj, "k1")
        assert read_ids(j, 1, "k") == ["k1"]
        j.sock.close()
        detached(lab.nodes[0], 1)
        lab.nodes[0].kill9()
        # sent while n1 is dead, before and after the others know it
        msg(r, jj, "k2")
        t0 = time.monotonic()
        n = connect(lab, 2)
        authed(n, "juliet")
        got = resume(n, smid, 1, timeout=15)
        took = time.monotonic() - t0
        assert got == failed("item-not-found"), got
        # sm.handover_timeout (5s) at most, plus the login
        assert took < 9, "resumption of a dead node's session took %.1fs" % took
        wait_until(lambda: (lab.state_of(2, "n1") == "down" and
                            jj not in sessions(lab.nodes[2]), None),
                   15, "n3 takes n1 for down and drops its session")
        msg(r, jj, "k3")
        # now at once: the node's tag names a node that is down
        t0 = time.monotonic()
        got = resume(n, smid, 1, timeout=5)
        assert got == failed("item-not-found"), got
        assert time.monotonic() - t0 < 2
        # what was sent meanwhile is in offline storage (k2 came back
        # from n2's bridge, k3 was routed by the bare JID after the
        # sweep; the store is asynchronous: wait for both rows before
        # the login that fetches them)
        wait_until(lambda: (all("id='%s'" % k in offline_rows(lab) for k in ("k2", "k3")),
                            offline_rows(lab)), 10, "k2 and k3 in offline storage")
        # the client binds anew and gets them
        jid = n.bind("again")
        assert jid.startswith("juliet@localhost/"), jid
        n.send("<presence/>")
        got = []
        end = time.monotonic() + 20
        while len(got) < 2 and time.monotonic() < end:
            try:
                got.append(n.read_until(msg_rx("k[23]"), timeout=1))
            except AssertionError as e:
                if "closed" in str(e):
                    raise
        ids = sorted(re.search("id='([^']+)'", g).group(1) for g in got)
        assert ids == ["k2", "k3"], "offline storage gave %s" % ids
        # from offline storage (XEP-0203 stamp), not routed live
        assert all("urn:xmpp:delay" in g for g in got), got
        assert "<error" not in r.buf.decode()


@skippable
def test_node_killed_unacked_not_lost():
    total, acked = 60, 20
    with new_lab() as lab:
        users(lab)
        r = lab.client(0, "romeo", PW["romeo"], "garden")
        j, jj, previd = available_sm_login(lab, 1, "juliet", "phone")
        wait_held_on(lab, jj, 1)
        for i in range(total):
            msg(r, jj, "u%d" % i)
        assert read_ids(j, total, "u") == ["u%d" % i for i in range(total)]
        # the client acknowledges the first 20 only (a phone that went
        # to sleep before its next <a/>)
        j.send("<a xmlns='%s' h='%d'/>" % (SM, acked))
        time.sleep(1.5)     # n2 tells n1 that those are done with
        want = ["u%d" % i for i in range(acked, total)]
        offline_after_kill(lab, 1, want, "again")
        assert "<error" not in r.buf.decode()


def kept_for(node, name):
    st = node.cluster_status() or {}
    for e in st.get("nodes", ()):
        if e.get("name") == name:
            return e.get("kept_bytes")
    return None


@skippable
def test_held_frames_kept_alone():
    total = 40
    with Lab(nodes=3, nats=3, workers=WORKERS,
             overrides={"sm.max_unacked_bytes": "1008K",
                        "cluster.hold_time": "6s"}) as lab:
        users(lab)
        r = lab.client(0, "romeo", PW["romeo"], "garden")
        phone, jp, _ = available_sm_login(lab, 1, "juliet", "phone")
        desk = lab.client(1, "juliet", PW["juliet"], "desk")
        wait_held_on(lab, jp, 1)
        wait_until(lambda: (desk.jid in sessions(lab.nodes[0]), None), 10,
                   "n1 knows juliet's desk")
        big = "d" * 2000
        # small ones to the phone (which never acknowledges), big ones
        # to the desk (which reads them), interleaved
        for i in range(total):
            if i % 2 == 0:
                msg(r, jp, "p%d" % i)
            else:
                msg(r, desk.jid, "d%d" % i, big)
        assert read_ids(phone, total // 2, "p") == ["p%d" % i for i in range(0, total, 2)]
        assert read_ids(desk, total // 2, "d") == ["d%d" % i for i in range(1, total, 2)]
        # n1 keeps the phone's (a few hundred bytes each) and none of
        # the desk's 2 KB ones sent after them
        n2 = lab.nodes[1].name
        wait_until(lambda: (kept_for(lab.nodes[0], n2) is not None and
                            0 < kept_for(lab.nodes[0], n2) < 8000,
                            kept_for(lab.nodes[0], n2)), 5,
                   "n1 keeping only the phone's messages")
        # cluster.hold_time later: acknowledged anyway, nothing kept
        wait_until(lambda: (kept_for(lab.nodes[0], n2) == 0,
                            kept_for(lab.nodes[0], n2)), 15,
                   "the held messages acknowledged after cluster.hold_time")
        assert "held past cluster.hold_time" in lab.nodes[1].log_text()
        assert "<error" not in r.buf.decode()


def listed_everywhere(lab, jid, timeout=10):
    wait_until(lambda: (all(jid in sessions(n) for n in lab.nodes if n.running),
                        None), timeout, "%s listed on every node" % jid)


def offline_after_kill(lab, node, want, resource):
    """Kill node -9; every id of want reaches offline storage; juliet,
    logging in on another node, gets exactly those (with a delay)."""
    lab.nodes[node].kill9()
    wait_until(lambda: (all("id='%s'" % k in offline_rows(lab) for k in want),
                        offline_rows(lab)),
               lab.node_timeout_s + 15, "the held messages in offline storage")
    other = 2 if node != 2 else 0
    n = lab.client(other, "juliet", PW["juliet"], resource)
    n.send("<presence/>")
    got = []
    while True:
        try:
            st = n.read_until(msg_rx("[a-z][0-9]+"), timeout=3)
        except AssertionError as e:
            if "closed" in str(e):
                raise
            break
        assert "urn:xmpp:delay" in st, st
        got.append(re.search("id='([^']+)'", st).group(1))
    assert sorted(got, key=lambda k: int(k[1:])) == want, \
        "offline storage gave %s, not %s" % (got, want)


@skippable
def test_handed_journal_held_until_acked():
    """A resumption on another worker of the same node: tokens are per
    worker, so the old worker lends the journal's frames to the new one
    (worker/settle.h) and keeps them held until the client acknowledges
    there.  sm.forward_time is 2 s here: the kill comes well after it,
    when a hold for forward_time alone would have let them go."""
    total = 20
    with Lab(nodes=3, nats=3, workers=WORKERS,
             overrides={"sm.max_unacked_bytes": "1008K",
                        "sm.forward_time": "2s"}) as lab:
        users(lab)
        r = lab.client(0, "romeo", PW["romeo"], "garden")
        j, jj, previd = available_sm_login(lab, 1, "juliet", "phone")
        wait_held_on(lab, jj, 1)
        first = sessions(lab.nodes[1])[jj][1]
        want = ["h%d" % i for i in range(total)]
        for i in range(total):
            msg(r, jj, "h%d" % i)
        assert read_ids(j, total, "h") == want
        # resumed (h 0: nothing acknowledged) until a connection lands
        # on the other worker of n2 (SO_REUSEPORT picks it)
        moved = False
        for _ in range(16):
            k = connect(lab, 1)
            authed(k, "juliet")
            got = resume(k, previd, 0)
            assert got.startswith("<resumed "), got
            assert read_ids(k, total, "h") == want
            wait_held_on(lab, jj, 1)
            if sessions(lab.nodes[1])[jj][1] != first:
                moved = True
                break
        assert moved, "no resumption landed on n2's other worker"
        assert re.search("handed over to w%d" % (1 - first),
                         lab.nodes[1].log_text()), "not handed between workers"
        time.sleep(4)       # sm.forward_time (2 s) and more
        offline_after_kill(lab, 1, want, "again")
        assert "<error" not in r.buf.decode()


@skippable
def test_node_killed_csi_held_not_lost():
    """Receipts for an inactive client (XEP-0352: nothing it has to see
    now) wait in its node's CSI queue; that node holds their frames
    until written, so killed -9 with them queued, the sending node gets
    them back and stores them offline."""
    total = 30
    with new_lab() as lab:
        users(lab)
        r = lab.client(0, "romeo", PW["romeo"], "garden")
        j = connect(lab, 1)
        authed(j, "juliet")
        jj = j.bind("phone")
        j.send("<presence/>")
        j.read_until("<presence [^>]*from='%s'[^>]*/?>" % re.escape(jj))
        j.send("<inactive xmlns='urn:xmpp:csi:0'/>")
        listed_everywhere(lab, jj)
        time.sleep(0.6)     # her availability follows the bind
        want = ["c%d" % i for i in range(total)]
        for i in range(total):
            r.send("<message to='%s' id='c%d' type='chat'><received "
                   "xmlns='urn:xmpp:receipts' id='m%d'/></message>"
                   % (jj, i, i))
        assert more_ids(j, "c", 1.5) == [], "CSI wrote them at once"
        time.sleep(1.0)     # n2 would have told n1 by now if done
        offline_after_kill(lab, 1, want, "again")
        assert "<error" not in r.buf.decode()


def worker_pid(node, slot):
    st = node.status() or {"workers": []}
    for w in st["workers"]:
        if w.get("slot") == slot and w.get("pid", 0) > 0:
            return w["pid"]
    return None


@skippable
def test_adopted_journal_held():
    """A worker killed -9 with a journal of 20 unacknowledged messages
    from another node: its successor adopts the journal (detached,
    resumable) and holds those messages' frames on (worker/settle.h
    adoption), so the node killed -9 afterwards gives them back to
    their sending node, which stores them offline.  Ten more sent while
    the worker was stopped, before the kill, are read by the successor
    in its first turn and held as well."""
    total = 20
    with new_lab() as lab:
        users(lab)
        r = lab.client(0, "romeo", PW["romeo"], "garden")
        j, jj, previd = available_sm_login(lab, 1, "juliet", "phone")
        wait_held_on(lab, jj, 1)
        want = ["a%d" % i for i in range(total)]
        for i in range(total):
            msg(r, jj, "a%d" % i)
        assert read_ids(j, total, "a") == want
        slot = sessions(lab.nodes[1])[jj][1]
        pid = worker_pid(lab.nodes[1], slot)
        assert pid, "juliet's worker"
        # more come while the worker is stopped: queued for it, read by
        # its successor right after the adoption (its first turn)
        os.kill(pid, 19)
        more = ["a%d" % i for i in range(total, total + 10)]
        for k in more:
            msg(r, jj, k)
        time.sleep(1.0)
        want += more
        os.kill(pid, 9)
        wait_until(lambda: ("adopted after a crash" in lab.nodes[1].log_text(),
                            None), 20, "the journal adopted")
        assert "stanzas of adopted journals hold frames" in \
            lab.nodes[1].log_text()
        time.sleep(1.5)     # the new worker's first reports are out
        offline_after_kill(lab, 1, want, "again")
        assert "<error" not in r.buf.decode()


TESTS = [test_resume_on_another_node, test_large_journal_crosses,
         test_node_killed_item_not_found, test_node_killed_unacked_not_lost,
         test_held_frames_kept_alone, test_handed_journal_held_until_acked,
         test_node_killed_csi_held_not_lost, test_adopted_journal_held]

if __name__ == "__main__":
    run_tests([t for t in TESTS if len(sys.argv) < 2 or t.__name__ in sys.argv[1:]])

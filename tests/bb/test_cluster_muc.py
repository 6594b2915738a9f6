"""Group chat across the nodes of a cluster (issue 15 slice 7,
docs/DESIGN.md "Cluster"): three xmppd nodes on three NATS servers
(tests/bb/clusterlab.py), one room whose owner is one node (the
rendezvous owner of its JID among the member list the nodes keep in
the NATS key-value bucket), occupants on all three:

  * joining: each occupant sees the others' presence;
  * groupchat both ways: every occupant gets exactly one copy;
  * private messages between occupants on different nodes;
  * the subject, the history a late joiner on another node gets, and a
    query of the room's archive (XEP-0313) from another node;
  * the owner node killed (kill -9 of all its processes): within
    cluster.node_timeout + cluster.lease_time + a few seconds another
    node answers for the room, the surviving occupants are still in it
    (XEP-0045 has no "rejoin" message; the room is the same room, read
    again from PostgreSQL) and see the dead node's occupant leave with
    status 333 ("left due to a technical problem", XEP-0045 section
    7.14 / Table 5);
  * the owner node restarted at once: its new run takes the room back,
    the others stay in it and see the old run's occupant leave;
  * a partition of the owner node (network namespaces, root only): it
    stops answering for the room before another node takes over, so the
    room's archive holds every accepted message once, in one order.

Exits 77 without nats-server (clusterlab's skips).  Needs
XMPPD_TEST_PGCONN.
"""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_tests  # noqa: E402
from clusterlab import Lab, LabSkip, skippable, wait_until  # noqa: E402

SERVICE = "conference.localhost"
NS_MUC = "http://jabber.org/protocol/muc"
NS_USER = NS_MUC + "#user"
NS_OWNER = NS_MUC + "#owner"
NS_MAM = "urn:xmpp:mam:2"
USERS = [("alice", "al1ce-pw"), ("bob", "b0b-pw"), ("carol", "car0l-pw"),
         ("dave", "d4ve-pw")]
LEASE = "3s"
TIMING = {"cluster.lease_time": LEASE}

M64 = (1 << 64) - 1


# ---- the owner of a room: cluster/members.c's rendezvous score ----------

def _score(name, key):
    h = 0xcbf29ce484222325
    for b in name.encode() + b"\xff" + key.encode():
        h = ((h ^ b) * 0x100000001b3) & M64
    h ^= h >> 33
    h = (h * 0xff51afd7ed558ccd) & M64
    h ^= h >> 33
    h = (h * 0xc4ceb9fe1a85ec53) & M64
    h ^= h >> 33
    return h


def owner_of(room_jid, members):
    best = None
    for m in sorted(members):
        s = _score(m, room_jid)
        if best is None or s > best[0]:
            best = (s, m)
    return best[1]


def room_owned_by(node, members, prefix="lounge"):
    for i in range(1000):
        rj = "%s%d@%s" % (prefix, i, SERVICE)
        if owner_of(rj, members) == node:
            return rj
    raise AssertionError("no room name for %s" % node)


# ---- stanzas ------------------------------------------------------------

_TAG = re.compile(rb"<(/?)([A-Za-z_][\w:.-]*)(?:\s[^>]*?)?(/?)>", re.S)


def next_stanza(c, timeout=5.0):
    """The next top-level element of c's stream (text), or None."""
    deadline = time.monotonic() + timeout
    while True:
        depth, start = 0, None
        for m in _TAG.finditer(c.buf):
            if start is None:
                start = m.start()
            if m.group(1):
                depth -= 1
            elif not m.group(3):
                depth += 1
            if depth == 0:
                out = c.buf[start:m.end()].decode()
                c.buf = c.buf[m.end():]
                return out
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        c.sock.settimeout(left)
        try:
            chunk = c.sock.recv(65536)
        except OSError:
            continue
        if not chunk:
            return None
        c.buf += chunk


def collect(c, secs):
    out, end = [], time.monotonic() + secs
    while time.monotonic() < end:
        st = next_stanza(c, max(0.05, end - time.monotonic()))
        if st is not None:
            out.append(st)
    return out


def expect(c, pred, what, timeout=10.0):
    """The first stanza for which pred holds; the others read on the
    way are kept in c.seen."""
    deadline = time.monotonic() + timeout
    seen = c.__dict__.setdefault("seen", [])
    for i, st in enumerate(seen):
        if pred(st):
            del seen[i]
            return st
    while time.monotonic() < deadline:
        st = next_stanza(c, deadline - time.monotonic())
        if st is None:
            break
        if pred(st):
            return st
        seen.append(st)
    raise AssertionError("%s: waited for %s; got %r" % (c.jid, what, seen[-8:]))


def is_presence(rj, nick, typ=None):
    def p(st):
        if not st.startswith("<presence") or "from='%s/%s'" % (rj, nick) not in st:
            return False
        return ("type='unavailable'" in st) == (typ == "unavailable")
    return p


def is_gc(rj, nick, body):
    return lambda st: (st.startswith("<message") and "type='groupchat'" in st and
                       "from='%s/%s'" % (rj, nick) in st and
                       "<body>%s</body>" % body in st)


def join(c, rj, nick, timeout=20.0, history=""):
    """Enter (retrying while the cluster answers resource-constraint:
    no owner yet); returns the self-presence."""
    deadline = time.monotonic() + timeout
    while True:
        c.send("<presence to='%s/%s'><x xmlns='%s'>%s</x></presence>"
               % (rj, nick, NS_MUC, history))
        st = expect(c, lambda s: s.startswith("<presence") and
                    "from='%s/%s'" % (rj, nick) in s and
                    ("status code='110'" in s or "type='error'" in s),
                    "self-presence in %s" % rj, timeout=10)
        if "type='error'" not in st:
            return st
        assert "resource-constraint" in st, st
        assert time.monotonic() < deadline, "no owner for %s: %s" % (rj, st)
        time.sleep(0.5)


def configure(c, rj, fields):
    xs = "".join("<field var='%s'><value>%s</value></field>" % kv for kv in fields.items())
    c.send("<iq to='%s' type='set' id='cfg'><query xmlns='%s'><x xmlns='jabber:x:data' "
           "type='submit'><field var='FORM_TYPE'><value>%s#roomconfig</value></field>%s"
           "</x></query></iq>" % (rj, NS_OWNER, NS_MUC, xs))
    st = expect(c, lambda s: s.startswith("<iq") and "id='cfg'" in s, "config result")
    assert "type='result'" in st, st


def say(c, rj, body, timeout=20.0):
    """A groupchat message, sent again while the room answers
    resource-constraint (no owner now) or nothing within 3 s (a frame
    to an owner node that died on the way is dropped by the bridge, see
    NOTES); returns when c got its echo.  Each attempt has its own id,
    as a client keeps them: a late error to an earlier attempt (a frame
    handed back after a cut) must not pass for the answer to a later
    one that the room accepted.  c.said[body] records the attempts."""
    deadline = time.monotonic() + timeout
    tries = c.__dict__.setdefault("said", {}).setdefault(body, [])
    while True:
        sid = body if not tries else "%s.%d" % (body, len(tries))
        c.send("<message to='%s' type='groupchat' id='%s'><body>%s</body></message>"
               % (rj, sid, body))
        try:
            st = expect(c, lambda s: s.startswith("<message") and
                        (("<body>%s</body>" % body in s and "type='error'" not in s) or
                         ("type='error'" in s and "id='%s'" % sid in s)),
                        "echo of %s" % body, timeout=3.0)
        except AssertionError:
            tries.append("none")
            assert time.monotonic() < deadline, "%s: no echo (%s)" % (body, tries)
            continue
        if "type='error'" not in st:
            tries.append("ok")
            return st
        tries.append("err")
        assert "resource-constraint" in st, st
        assert time.monotonic() < deadline, "%s not accepted: %s" % (body, st)
        time.sleep(0.5)


def one_copy(c, rj, nick, body, secs=0.8):
    """c gets body from nick exactly once."""
    match = is_gc(rj, nick, body)
    expect(c, match, "%s from %s" % (body, nick))
    c.seen += collect(c, secs)
    extra = [st for st in c.seen if match(st)]
    c.seen = [st for st in c.seen if not match(st)]
    assert not extra, "%s got %s twice: %r" % (c.jid, body, extra)


def mam_bodies(c, rj, qid, timeout=20.0):
    """The bodies in the room's archive, asked again while the room
    answers resource-constraint (moving between nodes)."""
    deadline = time.monotonic() + timeout
    while True:
        c.send("<iq to='%s' type='set' id='%s'><query xmlns='%s' queryid='%s'/></iq>"
               % (rj, qid, NS_MAM, qid))
        out = []
        while True:
            st = expect(c, lambda s: ("queryid='%s'" % qid in s) or
                        (s.startswith("<iq") and "id='%s'" % qid in s), "archive " + qid)
            if st.startswith("<iq"):
                break
            out += re.findall(r"<body>([^<]*)</body>", st)
            # kept for a failure's report: which attempt (the message's
            # id) each archived copy is, and its archive id
            c.__dict__.setdefault("mam_raw", []).append(
                (re.findall(r"<message [^>]*id='([^']*)'", st),
                 re.findall(r"<result [^>]*id='([^']*)'", st),
                 re.findall(r"<body>([^<]*)</body>", st)))
        if "type='result'" in st:
            return out
        assert "resource-constraint" in st and time.monotonic() < deadline, st
        time.sleep(0.5)


def members_line(lab, want):
    rx = re.compile(r"cluster: members epoch (\d+): ([^\n]*)")
    for n in lab.nodes:
        if not n.running:
            continue
        for m in rx.finditer(n.log_text()):
            if m.group(2).split() == want:
                return int(m.group(1))
    return None


def wait_members(lab, want, timeout):
    wait_until(lambda: (members_line(lab, want) is not None, "no members line %s" % want),
               timeout, "the member list %s" % " ".join(want), step=0.2)
    time.sleep(1.5)     # every node reads it within a key-value round


def session_jids(node):
    st = node.ctl("sessions", "--json")
    return set(re.findall(r'"jid": "([^"]+)"', getattr(st, "stdout", st)))


def wait_sessions(lab, clients):
    """Every running node lists every client's session: a stanza from a
    session the room's node has not heard of yet would find its sender
    gone (the directory event and the frame travel on two subjects)."""
    want = set(c.jid for c in clients)
    for n in lab.nodes:
        if n.running:
            wait_until(lambda: (want <= session_jids(n), session_jids(n)), 10,
                       "%s lists %s" % (n.name, sorted(want)))


def lab_users(lab):
    for u, pw in USERS:
        lab.add_user("%s@localhost" % u, pw)


# ---- tests --------------------------------------------------------------

@skippable
def test_room_across_nodes_and_owner_killed():
    with Lab(nodes=3, nats=3, overrides=TIMING) as lab:
        lab_users(lab)
        lab.wait_converged(15)
        wait_members(lab, ["n1", "n2", "n3"], 30)
        rj = room_owned_by("n3", ["n1", "n2", "n3"])
        a = lab.client(0, "alice", "al1ce-pw", "a")
        b = lab.client(1, "bob", "b0b-pw", "b")
        c = lab.client(2, "carol", "car0l-pw", "c")
        wait_sessions(lab, [a, b, c])
        # create (alice on n1, the room on n3), archived and persistent
        st = join(a, rj, "Alice")
        assert "status code='201'" in st, st
        configure(a, rj, {"muc#roomconfig_persistentroom": "1",
                          "muc#roomconfig_enablearchiving": "1"})
        # each sees the others' presence
        join(b, rj, "Bob")
        expect(b, is_presence(rj, "Alice"), "Alice's presence")
        expect(a, is_presence(rj, "Bob"), "Bob's presence")
        join(c, rj, "Carol")
        expect(c, is_presence(rj, "Alice"), "Alice's presence")
        expect(c, is_presence(rj, "Bob"), "Bob's presence")
        expect(a, is_presence(rj, "Carol"), "Carol's presence")
        expect(b, is_presence(rj, "Carol"), "Carol's presence")
        # the subject (a moderator's, from n1) reaches everyone
        a.send("<message to='%s' type='groupchat'><subject>Cluster talk</subject></message>" % rj)
        for x in (a, b, c):
            expect(x, lambda s: "<subject>Cluster talk</subject>" in s, "the subject")
        # groupchat both ways, one copy each
        say(a, rj, "from-n1")
        say(c, rj, "from-n3")
        for x in (b, c):
            one_copy(x, rj, "Alice", "from-n1")
        for x in (a, b):
            one_copy(x, rj, "Carol", "from-n3")
        # private messages between occupants on different nodes
        b.send("<message to='%s/Carol' type='chat'><body>psst-b-c</body></message>" % rj)
        expect(c, lambda s: "from='%s/Bob'" % rj in s and "psst-b-c" in s, "Bob's PM")
        c.send("<message to='%s/Alice' type='chat'><body>psst-c-a</body></message>" % rj)
        expect(a, lambda s: "from='%s/Carol'" % rj in s and "psst-c-a" in s, "Carol's PM")
        # a late joiner on n2 gets the history and the subject; it enters
        # at once after logging in, as clients do (its stanza may reach
        # the room's node before the directory event of its session)
        d = lab.client(1, "dave", "d4ve-pw", "d")
        join(d, rj, "Dave")
        for body, nick in (("from-n1", "Alice"), ("from-n3", "Carol")):
            st = expect(d, is_gc(rj, nick, body), "history " + body)
            assert "urn:xmpp:delay" in st, st
        expect(d, lambda s: "<subject>Cluster talk</subject>" in s, "the subject")
        # the room's archive, asked from n2
        got = mam_bodies(d, rj, "q1")
        assert got == ["from-n1", "from-n3"], got

        # ---- the owner node dies -----------------------------------------
        killed = time.monotonic()
        lab.nodes[2].kill9()
        limit = lab.node_timeout_s + 3.0 + 6.0      # node_timeout + lease + rounds
        # the survivors see Carol leave (333: a technical problem)
        for x in (a, b, d):
            st = expect(x, is_presence(rj, "Carol", "unavailable"),
                        "Carol leaving", timeout=limit + 5)
            assert "status code='333'" in st, st
        took = time.monotonic() - killed
        print("# Carol's exit seen %.1fs after the kill" % took)
        assert took < limit + 5, took
        # the room answers again, from n1 or n2, and everyone is still in it
        say(a, rj, "after-takeover", timeout=limit)
        for x in (b, d):
            one_copy(x, rj, "Alice", "after-takeover")
        say(b, rj, "after-2")
        one_copy(a, rj, "Bob", "after-2")
        got = mam_bodies(a, rj, "q2")
        assert got == ["from-n1", "from-n3", "after-takeover", "after-2"], got
        wait_members(lab, ["n1", "n2"], 5)


@skippable
def test_owner_node_restarts():
    """The owner node killed and started again at once (back before the
    others drop it from the member list): it takes its rooms back with
    its new run, the occupants on the other nodes are still in them and
    see its old run's occupant leave (333), and its user enters again."""
    with Lab(nodes=3, nats=3, overrides=TIMING) as lab:
        lab_users(lab)
        lab.wait_converged(15)
        wait_members(lab, ["n1", "n2", "n3"], 30)
        rj = room_owned_by("n3", ["n1", "n2", "n3"], prefix="again")
        a = lab.client(0, "alice", "al1ce-pw", "a")
        b = lab.client(1, "bob", "b0b-pw", "b")
        c = lab.client(2, "carol", "car0l-pw", "c")
        wait_sessions(lab, [a, b, c])
        join(a, rj, "Alice")
        configure(a, rj, {"muc#roomconfig_persistentroom": "1"})
        join(b, rj, "Bob")
        join(c, rj, "Carol")
        for x in (a, b):
            expect(x, is_presence(rj, "Carol"), "Carol's presence")
        # the room writes each change after making it (018-muc.sql): a
        # kill within milliseconds of Carol's entry could lose its row,
        # and nobody would know she had been in (as on one node)
        time.sleep(1)
        lab.nodes[2].kill9()
        lab.nodes[2].restart()
        for x in (a, b):
            st = expect(x, is_presence(rj, "Carol", "unavailable"), "Carol leaving",
                        timeout=30)
            assert "status code='333'" in st, st
        say(a, rj, "after-restart", timeout=30)
        one_copy(b, rj, "Alice", "after-restart")
        for x in (a, b):
            gone = [st for st in x.seen if is_presence(rj, "Alice", "unavailable")(st) or
                    is_presence(rj, "Bob", "unavailable")(st)]
            assert not gone, gone
        c2 = lab.client(2, "carol", "car0l-pw", "c2")
        wait_sessions(lab, [c2])
        join(c2, rj, "Carol")
        expect(a, is_presence(rj, "Carol"), "Carol back")
        say(c2, rj, "carol-back")
        one_copy(a, rj, "Carol", "carol-back")
        one_copy(b, rj, "Carol", "carol-back")


# The cut node's occupant runs inside that node's namespace (the test's
# own clients reach the nodes through the hub, which the cut takes
# away): it enters, says "joined", waits for "go" on stdin, then sends a
# groupchat message every 250 ms for SECS seconds and prints, for each,
# "ok BODY" (the room's echo) or "err BODY CONDITION".
INSIDE = r"""
import re, sys, time
sys.path.insert(0, sys.argv[1])
import harness, test_cluster_muc as t
host, port, rj, secs = sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
c = harness.Client(port, host=host, timeout=5)
c.jid = c.login("carol", "car0l-pw", "c")
t.join(c, rj, "Carol")
print("joined", flush=True)
sys.stdin.readline()
end, i = time.monotonic() + secs, 0
while time.monotonic() < end:
    body = "cut-c%d" % i
    i += 1
    c.send("<message to='%s' type='groupchat' id='%s'><body>%s</body></message>" % (rj, body, body))
    try:
        st = t.expect(c, lambda s: ("id='%s'" % body in s and "type='error'" in s) or
                      ("<body>%s</body>" % body in s), "answer", timeout=4)
    except AssertionError:
        print("none %s" % body, flush=True)
        continue
    if "type='error'" in st:
        m = re.search(r"<([a-z-]+) xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'", st)
        print("err %s %s" % (body, m.group(1) if m else "?"), flush=True)
    else:
        print("ok %s" % body, flush=True)
    time.sleep(0.25)
print("done", flush=True)
"""


@skippable
def test_partitioned_owner_stops_first():
    """The owner node cut off (its namespace's bridge port down): it
    stops acting as owner when its lease lapses (its NATS server loses
    the JetStream quorum), before the others take the room (they wait
    node_timeout + lease_time from the lease's last change).  Messages
    are sent on both sides meanwhile: the room's archive (PostgreSQL,
    which both sides still reach) holds each accepted one once, the cut
    side's all before the majority's: one order, never two owners.  The
    majority's occupant stays in the room throughout: the cut owner lost
    her session with her node's heartbeats, which does not say she left
    (it used to write her out, and the majority's owner then refused
    her with not-acceptable); after the heal the room, back on n3, still
    has her."""
    import subprocess
    if os.geteuid() != 0:
        raise LabSkip("partitions need root (network namespaces)")
    with Lab(nodes=3, nats=3, netns=True, overrides=TIMING) as lab:
        lab_users(lab)
        lab.wait_converged(20)
        wait_members(lab, ["n1", "n2", "n3"], 30)
        rj = room_owned_by("n3", ["n1", "n2", "n3"], prefix="cut")
        a = lab.client(0, "alice", "al1ce-pw", "a")
        wait_sessions(lab, [a])
        join(a, rj, "Alice")
        configure(a, rj, {"muc#roomconfig_persistentroom": "1",
                          "muc#roomconfig_enablearchiving": "1"})
        n3 = lab.nodes[2]
        inside = subprocess.Popen(
            lab.netns.exec_prefix(2) + [sys.executable, "-c", INSIDE,
                                        os.path.dirname(os.path.abspath(__file__)),
                                        n3.addr, str(n3.port), rj, "14"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert inside.stdout.readline().strip() == "joined"
            expect(a, is_presence(rj, "Carol"), "Carol's presence")
            say(a, rj, "before-cut")
            lab.netns.partition(2)
            cut = time.monotonic()
            inside.stdin.write("go\n")
            inside.stdin.flush()
            # the majority side: the room comes back there
            say(a, rj, "majority-1", timeout=45)
            took = time.monotonic() - cut
            print("# alice's attempts: %s" % " ".join(a.said["majority-1"]))
            out = inside.communicate(timeout=30)[0].split("\n")
        finally:
            if inside.poll() is None:
                inside.kill()
        print("# the majority's room answered %.1fs after the cut" % took)
        lines = [l.split() for l in out if l.startswith(("ok", "err", "none"))]
        print("# the cut side: %s" % " ".join("%s:%s" % (l[0], l[1]) for l in lines))
        accepted_c = [l[1] for l in lines if l[0] == "ok"]
        first_refused = next((k for k, l in enumerate(lines) if l[0] != "ok"), None)
        assert first_refused is not None, "the cut owner never stopped: %r" % lines
        assert all(l[0] != "ok" for l in lines[first_refused:]), \
            "the cut owner accepted after it stopped: %r" % lines
        assert all(l[2] == "resource-constraint" for l in lines if l[0] == "err"), lines
        lab.netns.heal(2)
        healed = time.monotonic()
        # the NATS routes and JetStream come back (JetStream elects its
        # stream leader again: measured 9.5-22.7 s from the heal until
        # every node's list has n3, on a loaded machine; no lease can be
        # renewed meanwhile), the member list takes n3 back and the room
        # moves again; until then the room answers resource-constraint
        # (wait), by design, as a user's client would see and retry.
        # The 60 s waits are about 2.5 times the longest measured.
        lab.wait_converged(60)
        for node in lab.nodes:     # each has read the list with n3 back
            wait_until(lambda node=node: (
                (node.cluster_status() or {}).get("members") == ["n1", "n2", "n3"],
                (node.cluster_status() or {}).get("members")), 60,
                "%s's member list with n3 back" % node.name)
        print("# n3 in every member list again %.1fs after the heal"
              % (time.monotonic() - healed))
        # the room went back to n3, which reads it again: alice (whose
        # session n3 lost with n1 during the cut) is still in it
        say(a, rj, "after-heal", timeout=60)
        print("# the room answered alice %.1fs after the heal"
              % (time.monotonic() - healed))
        got = mam_bodies(a, rj, "qp", timeout=30.0)
        assert len(got) == len(set(got)), "doubled: %r (alice's attempts: %r; archive: %r)" % (
            got, getattr(a, "said", {}), getattr(a, "mam_raw", []))
        # one order: the cut owner's messages all before the majority's
        assert got == ["before-cut"] + accepted_c + ["majority-1",
                                                     "after-heal"], got
        # each attempt answered once: the first went to n3 as it was
        # cut, came back to n1 at its DOWN and was answered there
        # (resource-constraint); the copy NATS still held for n3 (the
        # route's TCP buffer outlives the cut) must not reach n3's room
        # after the heal (it did before cluster/xfer.c's refusal: bounced
        # there, or echoed and archived a second time when n3 owned the
        # room again).  A bounce from n3 right after the heal does not
        # always reach alice (2 runs before the fix passed this), an echo
        # does; the archive check above is the other half.
        a.seen += collect(a, 1.0)
        # (the stanza's own id: not a forwarded one's in an archive result)
        again = [st for st in a.seen
                 if re.match(r"<message [^>]*id='majority-1'", st)]
        assert not again, "the first attempt answered again: %r" % again


if __name__ == "__main__":
    ALL = [test_room_across_nodes_and_owner_killed, test_owner_node_restarts,
           test_partitioned_owner_stops_first]
    run_tests([t for t in ALL if len(sys.argv) < 2 or t.__name__ in sys.argv[1:]])

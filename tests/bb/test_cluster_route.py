"""Stanzas between users on different nodes of a cluster (issue 15
slices 4-5: the session directory and the frames between nodes),
three xmppd nodes on three NATS servers (tests/bb/clusterlab.py):

  * every node's session list holds every session of the cluster;
  * messages to full and to bare JIDs reach users on other nodes, in
    both directions, stamped with the sender's full JID;
  * every stanza sent to another node is acknowledged once handled
    (`xmppctl cluster status --json`: nothing kept, frames counted both
    ways, each node's directory holds the others' sessions);
  * a session that ends on one node leaves the others' lists;
  * the same full JID bound on two nodes that could not tell each
    other (one bridge frozen for less than node_timeout): when they
    can, exactly one of the two streams ends with <conflict/> and every
    node lists one session for that JID.

Exits 77 without nats-server (clusterlab's skips).  Needs
XMPPD_TEST_PGCONN.
"""
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_tests  # noqa: E402
from clusterlab import Lab, skippable, wait_until  # noqa: E402

USERS = [("alice", "al1ce-pw"), ("bob", "b0b-pw"), ("carol", "car0l-pw")]


def session_jids(node):
    st = node.ctl("sessions", "--json")
    out = getattr(st, "stdout", st)
    return sorted(re.findall(r'"jid": "([^"]+)"', out))


def message(a, b, to, body):
    a.send("<message to='%s' type='chat'><body>%s</body></message>" % (to, body))
    got = b.read_until("<message\\b[^>]*>(?:(?!</message>).)*<body>%s</body>.*?</message>"
                       % re.escape(body), timeout=5)
    assert "from='%s'" % a.jid in got, got


@skippable
def test_messages_across_nodes():
    with Lab(nodes=3, nats=3) as lab:
        for u, pw in USERS:
            lab.add_user("%s@localhost" % u, pw)
        lab.wait_converged(15)
        cl = [lab.client(i, u, pw, "r%d" % i) for i, (u, pw) in enumerate(USERS)]
        for c in cl:
            c.send("<presence/>")
        want = sorted(c.jid for c in cl)
        for node in lab.nodes:
            wait_until(lambda: (session_jids(node) == want,
                                session_jids(node)), 10,
                       "every node lists the cluster's three sessions")
        for i, a in enumerate(cl):
            for j, b in enumerate(cl):
                if i == j:
                    continue
                message(a, b, b.jid, "full %d to %d" % (i, j))
                message(a, b, b.jid.split("/")[0], "bare %d to %d" % (i, j))
        def settled(node):
            st = node.cluster_status() or {}
            others = [e for e in st.get("nodes", ()) if e.get("state") != "self"]
            bad = [(e["name"], e.get("kept_bytes"), e.get("frames_sent"),
                    e.get("frames_received"), e.get("directory"))
                   for e in others
                   if e.get("kept_bytes") != 0 or not e.get("frames_sent")
                   or not e.get("frames_received") or e.get("directory") != 1]
            return (len(others) == 2 and not bad, bad or others)
        for node in lab.nodes:
            wait_until(lambda: settled(node), 10,
                       "all acknowledged, traffic counted, directories full")
        # the member list (rooms' owners) holds the three, and each node
        # may own rooms (its lease is renewed)
        for node in lab.nodes:
            wait_until(lambda node=node: (
                (node.cluster_status() or {}).get("members") == ["n1", "n2", "n3"]
                and (node.cluster_status() or {}).get("owner") is True,
                node.cluster_status()), 15, "the member list on every node")
        cl[1].close()
        rest = sorted([cl[0].jid, cl[2].jid])
        for node in (lab.nodes[0], lab.nodes[2]):
            wait_until(lambda: (session_jids(node) == rest,
                                session_jids(node)), 10,
                       "bob's session left the other nodes' lists")


@skippable
def test_same_jid_bound_on_two_nodes_at_once():
    with Lab(nodes=2, nats=1, node_timeout="4s") as lab:
        lab.add_user("alice@localhost", "al1ce-pw")
        lab.wait_converged(15)
        bridge = lab.nodes[0].bridge_pid()
        os.kill(bridge, signal.SIGSTOP)     # n1 tells nothing, hears nothing
        try:
            a1 = lab.client(0, "alice", "al1ce-pw", "same")
            a2 = lab.client(1, "alice", "al1ce-pw", "same")
            assert a1.jid == a2.jid == "alice@localhost/same"
            time.sleep(0.5)
        finally:
            os.kill(bridge, signal.SIGCONT)
        ended = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not ended:
            for c in (a1, a2):
                try:
                    c.read_until("conflict", timeout=0.2)
                    ended.append(c)
                except AssertionError:
                    pass
        assert len(ended) == 1, "%d streams ended with conflict" % len(ended)
        for node in lab.nodes:
            wait_until(lambda: (session_jids(node) == ["alice@localhost/same"],
                                session_jids(node)), 10,
                       "one session for the JID on every node")


def befriend(lab, a, b):
    """a and b (bare JIDs, local parts of accounts) subscribed both ways,
    written in the shared database before they log in."""
    for x, y in ((a, b), (b, a)):
        lab.db.psql("INSERT INTO roster_items (account_id, contact, subscription) "
                    "SELECT id, '%s@localhost', 'both' FROM accounts "
                    "WHERE username = '%s'" % (y, x), lab.db.conninfo)


@skippable
def test_presence_again_after_a_frozen_node():
    with Lab(nodes=3, nats=3) as lab:
        lab.add_user("alice@localhost", "al1ce-pw")
        lab.add_user("carol@localhost", "car0l-pw")
        befriend(lab, "alice", "carol")
        lab.wait_converged(15)
        a = lab.client(0, "alice", "al1ce-pw", "a")
        c = lab.client(2, "carol", "car0l-pw", "c")
        a.send("<presence/>")
        a.read_until("<presence[^>]*from='alice@localhost/a'", timeout=5)
        time.sleep(0.5)     # alice's session is in n3's table
        c.send("<presence><show>dnd</show></presence>")
        a.read_until("<presence[^>]*from='carol@localhost/c'[^>]*>\\s*<show>dnd", timeout=5)
        lab.nodes[2].freeze()
        try:
            a.read_until("<presence[^>]*from='carol@localhost/c'[^>]*type='unavailable'",
                         timeout=15)
        finally:
            lab.nodes[2].thaw()
        got = a.read_until("<presence[^>]*from='carol@localhost/c'[^>]*>\\s*<show>dnd",
                           timeout=20)
        assert "unavailable" not in got.split("<presence")[-1], got


TUNE_NS = "http://jabber.org/protocol/tune"
CAPS_NODE = "http://example.org/cluster-test"


def show_caps(c, features):
    """c sends presence with XEP-0115 caps for features and answers its
    server's disco#info query for them."""
    import base64
    import hashlib
    feats = sorted(["http://jabber.org/protocol/disco#info"] + features)
    ver = base64.b64encode(hashlib.sha1(
        ("client/pc//T<" + "".join(f + "<" for f in feats)).encode()).digest()).decode()
    c.send("<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
           "node='%s' ver='%s'/></presence>" % (CAPS_NODE, ver))
    q = c.read_until("<iq[^>]*type='get'[^>]*>.*?</iq>", timeout=10)
    qid = re.search("id='([^']+)'", q).group(1)
    frm = re.search("from='([^']+)'", q).group(1)
    c.send("<iq type='result' id='%s' to='%s'><query xmlns='http://jabber.org/"
           "protocol/disco#info' node='%s#%s'><identity category='client' "
           "type='pc' name='T'/>%s</query></iq>"
           % (qid, frm, CAPS_NODE, ver, "".join("<feature var='%s'/>" % f for f in feats)))


@skippable
def test_pep_event_to_a_contact_on_another_node():
    with Lab(nodes=2, nats=1) as lab:
        lab.add_user("alice@localhost", "al1ce-pw")
        lab.add_user("bob@localhost", "b0b-pw")
        befriend(lab, "alice", "bob")
        lab.wait_converged(15)
        a = lab.client(0, "alice", "al1ce-pw", "a")
        b = lab.client(1, "bob", "b0b-pw", "b")
        b2 = lab.client(1, "bob", "b0b-pw", "nocaps")
        b2.send("<presence/>")
        show_caps(b, [TUNE_NS + "+notify"])
        a.send("<presence/>")
        time.sleep(1.0)     # presence and caps settled, directories too
        a.send("<iq type='set' id='p1'><pubsub xmlns='http://jabber.org/"
               "protocol/pubsub'><publish node='%s'><item id='t1'><tune "
               "xmlns='%s'><artist>Yes</artist></tune></item></publish>"
               "</pubsub></iq>" % (TUNE_NS, TUNE_NS))
        a.read_until("<iq[^>]*id='p1'[^>]*type='result'|<iq[^>]*type='result'[^>]*id='p1'",
                     timeout=5)
        got = b.read_until("<message[^>]*from='alice@localhost'[^>]*type='headline'"
                           ".*?<artist>Yes</artist>.*?</message>", timeout=10)
        assert "to='bob@localhost/b'" in got, got
        try:
            extra = b2.read_until("<artist>Yes</artist>", timeout=1.5)
        except AssertionError:
            extra = None
        assert extra is None, "a session without +notify caps got it: %r" % extra


@skippable
def test_component_on_one_node_reached_from_another():
    import hashlib
    import tempfile
    from harness import Client, free_port
    d = tempfile.mkdtemp(prefix="xmppd-comp-")
    secrets = os.path.join(d, "components")
    with open(secrets, "w") as f:
        f.write("gw.localhost s3cr3t-gw\n")
    os.chmod(secrets, 0o600)
    ports = [free_port(), free_port()]
    per_node = {k: {"component.secrets_file": secrets,
                    "component.addresses": "127.0.0.1",
                    "component.port": str(ports[k])} for k in range(2)}
    with Lab(nodes=2, nats=1, node_overrides=per_node) as lab:
        lab.add_user("bob@localhost", "b0b-pw")
        lab.wait_converged(15)
        comp = Client(ports[0])
        comp.send("<stream:stream xmlns='jabber:component:accept' xmlns:stream="
                  "'http://etherx.jabber.org/streams' to='gw.localhost'>")
        head = comp.read_until("id='([0-9a-f]{32})'>")
        sid = re.search("id='([0-9a-f]{32})'", head).group(1)
        comp.send("<handshake>%s</handshake>"
                  % hashlib.sha1((sid + "s3cr3t-gw").encode()).hexdigest())
        comp.read_until("<handshake/>")
        b = lab.client(1, "bob", "b0b-pw", "b")
        time.sleep(0.5)     # the component's entry reaches n2
        b.send("<message to='bot@gw.localhost' id='m1'><body>hi bot</body></message>")
        got = comp.read_until("<message[^>]*>.*?</message>", timeout=5)
        assert "from='bob@localhost/b'" in got and "hi bot" in got, got
        comp.send("<message from='bot@gw.localhost/x' to='bob@localhost/b' id='c1'>"
                  "<body>hello bob</body></message>")
        b.read_until("<message from='bot@gw.localhost/x'[^>]*>.*?hello bob", timeout=5)
        comp.close()
        time.sleep(1.0)     # its entry leaves n2's table
        b.send("<message to='bot@gw.localhost' id='m2'><body>still there?</body></message>")
        err = b.read_until("<message[^>]*type='error'.*?</message>", timeout=5)
        assert "service-unavailable" in err, err


@skippable
def test_message_during_a_bridge_respawn():
    with Lab(nodes=2, nats=1) as lab:
        lab.add_user("alice@localhost", "al1ce-pw")
        lab.add_user("bob@localhost", "b0b-pw")
        lab.wait_converged(15)
        a = lab.client(0, "alice", "al1ce-pw", "a")
        b = lab.client(1, "bob", "b0b-pw", "b")
        b.send("<presence/>")
        time.sleep(0.5)
        old = lab.nodes[0].bridge_pid()
        os.kill(old, signal.SIGKILL)
        a.send("<message to='bob@localhost/b' type='chat' id='r1'>"
               "<body>through the respawn</body></message>")
        got = b.read_until("<message[^>]*>.*?through the respawn.*?</message>",
                           timeout=15)
        assert "from='alice@localhost/a'" in got, got
        assert "Offline Storage" not in got, got
        wait_until(lambda: (lab.nodes[0].bridge_pid() not in (None, old),
                            lab.nodes[0].bridge_pid()), 10, "a new bridge")


if __name__ == "__main__":
    run_tests([test_messages_across_nodes,
               test_same_jid_bound_on_two_nodes_at_once,
               test_presence_again_after_a_frozen_node,
               test_pep_event_to_a_contact_on_another_node,
               test_component_on_one_node_reached_from_another,
               test_message_during_a_bridge_respawn])

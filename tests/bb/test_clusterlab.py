"""Self-test of the cluster lab (tests/bb/clusterlab.py): the parts that
do not need the cluster bridge.  A NATS cluster of three Debian
nats-server processes forms (routes, a JetStream meta leader, the 2 MB
payload limit) and a killed server rejoins; three xmppd nodes with the
cluster block share one database and each serves its own clients;
kill9 leaves no process of a node, freeze stops it answering and thaw
brings it back, restart serves again; the network namespaces carry TCP
between nodes and partition/heal cut and restore it (root only).

Skips (passes with a "# skip:" line) without nats-server, and the
namespace tests without root.  Needs XMPPD_TEST_PGCONN.
"""
import os
import re
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SERVER_HEADER, pid_alive, run_tests, stream_header  # noqa: E402
import clusterlab  # noqa: E402
from clusterlab import Lab, NatsCluster, NetnsLab, skippable  # noqa: E402


@skippable
def test_nats_cluster_forms():
    """Three servers: each has a route to both others, all name the same
    JetStream meta leader (one of them), and the payload limit is the
    2 MB the bridge's batches need (the default is 1 MB)."""
    with NatsCluster(3) as nats:
        nats.start_all()
        leader = nats.wait_ready(timeout=30)
        assert leader in ("s1", "s2", "s3"), leader
        for i in range(3):
            rz = nats.monitor(i, "routez")
            assert rz["num_routes"] == 2, rz
            varz = nats.monitor(i, "varz")
            assert varz["server_name"] == nats.sname(i), varz["server_name"]
            assert varz["max_payload"] == 2 * 1024 * 1024, varz["max_payload"]
            jz = nats.monitor(i, "jsz")
            assert jz["meta_cluster"]["cluster_size"] == 3, jz["meta_cluster"]
            assert jz["meta_cluster"]["leader"] == leader, jz["meta_cluster"]
        # server i first, then the others, each once
        urls = nats.urls(first=1)
        assert urls[0] == nats.url(1) and sorted(urls) == sorted(nats.urls()), urls


@skippable
def test_nats_server_rejoins():
    """A server killed (SIGKILL) drops out of the others' routes; started
    again on the same ports and store it is routed to both again."""
    with NatsCluster(3) as nats:
        nats.up()
        nats.kill(1)
        assert not nats.running(1)
        clusterlab.wait_until(
            lambda: (all(nats.monitor(i, "routez")["num_routes"] == 1 for i in (0, 2)), "routes"),
            10, "s1 and s3 to lose their route to s2")
        nats.start(1)
        nats.wait_ready(timeout=30)
        for i in range(3):
            assert nats.monitor(i, "routez")["num_routes"] == 2


@skippable
def test_nats_port_taken():
    """A client port taken after the lab chose it (another test's): the
    lab's up() sees that server exit and starts the cluster again on
    new ports, which forms."""
    with NatsCluster(3) as nats:
        taken = nats.client_ports[1]
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", taken))
            s.listen(1)
            nats.up()
        finally:
            s.close()
        assert taken not in nats.client_ports, (taken, nats.client_ports)
        assert "address already in use" in clusterlab._tail(nats.log_path(1), 100000)
        assert all(nats.monitor(i, "routez")["num_routes"] == 2 for i in range(3))


def message_on_node(lab, i, a, b):
    """a and b (logged-in clients on node i): a message from a to b's
    full JID arrives, stamped from a."""
    body = "hello on n%d" % (i + 1)
    a.send("<message to='%s' type='chat' id='m%d'><body>%s</body></message>"
           % (b.jid, i, body))
    got = b.read_until("<message\\b[^>]*>(?:(?!</message>).)*<body>%s</body>.*?</message>"
                       % re.escape(body))
    assert "from='%s'" % a.jid in got, got


@skippable
def test_nodes_serve_their_clients():
    """Three nodes with the cluster block (no bridge needed): accounts
    added once are usable on every node (one shared database), two users
    log in on each node and a message passes between them there."""
    with Lab(nodes=3, nats=3) as lab:
        lab.add_user("alice@localhost", "al1ce-pw")
        lab.add_user("bob@localhost", "b0b-pw")
        ports = {n.port for n in lab.nodes}
        assert len(ports) == 3, ports
        assert len({n.control for n in lab.nodes}) == 3
        for i in range(3):
            a = lab.client(i, "alice", "al1ce-pw", "a%d" % i)
            b = lab.client(i, "bob", "b0b-pw", "b%d" % i)
            assert a.jid == "alice@localhost/a%d" % i, a.jid
            message_on_node(lab, i, a, b)
        # every node's configuration names its own local NATS server first
        for i, n in enumerate(lab.nodes):
            assert n.overrides["cluster.servers"].split(", ")[0] == lab.nats.url(i)
            assert n.overrides["cluster.node"] == "n%d" % (i + 1)
        st = os.stat(lab.secret_file)
        assert st.st_mode & 0o777 == 0o600 and st.st_size == 64, st


def header_within(node, seconds):
    """Does node answer a new stream with its header within seconds?"""
    try:
        c = node.connect(timeout=seconds)
    except OSError:
        return False
    try:
        c.send(stream_header())
        c.read_until(SERVER_HEADER, timeout=seconds)
        return True
    except (AssertionError, OSError):
        return False
    finally:
        c.close()


@skippable
def test_kill9_freeze_restart():
    """kill9 takes every process of the node (master and workers, and the
    bridge once there is one) and nothing of it is left, its port
    refuses; the other nodes go on.  freeze: no answer; thaw: answers.
    restart: the node serves again on the same port and database."""
    with Lab(nodes=3, nats=3) as lab:
        lab.add_user("carol@localhost", "c4rol-pw")
        n3 = lab.nodes[2]
        pids = n3.pids()
        assert n3.master_pid in pids and len(pids) >= 1 + lab.workers, pids
        assert set(n3.worker_pids()) <= set(pids), (n3.worker_pids(), pids)
        bp = n3.bridge_pid()
        assert bp is None or (bp in pids and bp != n3.master_pid
                              and bp not in n3.worker_pids()), (bp, pids)
        if clusterlab.cluster_status_known() is None:
            assert bp is not None, "the bridge is not among %r" % pids
        c = lab.client(2, "carol", "c4rol-pw", "k")
        killed = n3.kill9()
        assert set(pids) <= set(killed), (pids, killed)
        assert not any(pid_alive(p) for p in killed), killed
        assert c.is_closed(timeout=5), "carol's connection outlived her node"
        try:
            socket.create_connection(("127.0.0.1", n3.port), timeout=2).close()
            raise AssertionError("node 3's port still accepts")
        except ConnectionRefusedError:
            pass
        # the others are untouched
        for n in lab.nodes[:2]:
            assert n.status_ok(), n.name
        n3.restart()
        assert not set(n3.pids()) & set(killed)
        lab.client(2, "carol", "c4rol-pw", "again")

        n2 = lab.nodes[1]
        assert header_within(n2, 2)
        frozen = n2.freeze()
        try:
            assert frozen and all(_state(p) == "T" for p in frozen), frozen
            assert not header_within(n2, 1.0), "a frozen node answered"
        finally:
            n2.thaw()
        assert header_within(n2, 5), "node 2 did not answer after thaw"


def _state(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0]


@skippable
def test_netns_partition_and_heal():
    """Two node namespaces reach each other over the hub's bridge (TCP),
    and the root side reaches both; partition(0) cuts node 0 off (from
    node 1 and from the root side) and leaves the others connected;
    heal(0) restores it."""
    with NetnsLab(3) as ns:
        listeners = [ns.listen(k, 7000) for k in range(3)]
        try:
            assert ns.tcp_ok(1, 0, 7000), "n2 -> n1"
            assert ns.tcp_ok(0, 1, 7000), "n1 -> n2"
            assert ns.tcp_ok(None, 0, 7000), "root -> n1"
            ns.partition(0)
            assert not ns.tcp_ok(1, 0, 7000), "n2 -> n1 across the partition"
            assert not ns.tcp_ok(0, 2, 7000), "n1 -> n3 across the partition"
            assert not ns.tcp_ok(None, 0, 7000), "root -> n1 across the partition"
            assert ns.tcp_ok(1, 2, 7000), "n2 -> n3 (both on the healthy side)"
            ns.heal(0)
            # the first SYN after heal may be lost: TCP retries after 1 s
            clusterlab.wait_until(lambda: (ns.tcp_ok(1, 0, 7000, timeout=3), "no"), 10,
                                  "n2 -> n1 after heal")
            # n1's ARP entry for n3 failed during the cut: a connect gets
            # EHOSTUNREACH at once until it is resolved again (~1 s)
            clusterlab.wait_until(lambda: (ns.tcp_ok(0, 2, 7000, timeout=3), "no"), 10,
                                  "n1 -> n3 after heal")
        finally:
            for p in listeners:
                p.kill()
                p.wait()
            names = list(ns.ns) + [ns.hub]
    left = clusterlab._run(["ip", "netns", "list"]).stdout
    assert not any(n in left.split() for n in names), left


@skippable
def test_netns_lab_nodes():
    """The lab in namespaces: each NATS server in its node's namespace
    forms the cluster across the hub's bridge, each xmppd there reaches
    the database through its Unix socket and serves a client from the
    root side; a partition of node 1 cuts that client's way in, heal
    restores it."""
    with Lab(nodes=3, nats=3, netns=True) as lab:
        lab.add_user("dave@localhost", "d4ve-pw")
        for i in range(3):
            assert lab.nodes[i].addr == lab.netns.addr(i)
            c = lab.client(i, "dave", "d4ve-pw", "ns%d" % i)
            assert c.jid == "dave@localhost/ns%d" % i, c.jid
        assert "host=/" in lab.conninfo, lab.conninfo
        n1 = lab.nodes[0]
        lab.netns.partition(0)
        try:
            assert not header_within(n1, 1.0), "reached a partitioned node"
            # its NATS server lost nothing it can tell yet (plan section
            # 1): only that it is still running is checked here
            assert lab.nats.running(0)
        finally:
            lab.netns.heal(0)
        clusterlab.wait_until(lambda: (header_within(n1, 1.0), "no header"), 10,
                              "node 1 reachable after heal")
        lab.nats.wait_ready(timeout=30)


if __name__ == "__main__":
    only = sys.argv[1:]
    tests = [test_nats_cluster_forms, test_nats_server_rejoins, test_nats_port_taken,
             test_nodes_serve_their_clients, test_kill9_freeze_restart,
             test_netns_partition_and_heal, test_netns_lab_nodes]
    run_tests([t for t in tests if not only or t.__name__ in only])

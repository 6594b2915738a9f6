"""The cluster lab (issue 15, docs/plans/issue15-cluster.md section 3):
a cluster of Debian's nats-server processes and several xmppd nodes on
this one machine, sharing one PostgreSQL database, for the black-box
tests of the cluster.

    from clusterlab import Lab, skippable
    @skippable
    def test_x():
        with Lab(nodes=3, nats=3) as lab:      # NATS up, every node up
            lab.add_user("alice@localhost", "pw")
            a = lab.client(0, "alice", "pw", "r")   # logged in on n1
            lab.wait_converged(15)              # needs the cluster bridge
            lab.nodes[2].kill9(); lab.nodes[2].restart()
            lab.nats.stop(0); lab.nats.start(0)

Indices are 0-based everywhere: lab.nodes[0] is node "n1", whose
cluster.servers lists NATS server 0 ("s1") first; lab.nats.stop(0)
stops s1.

Pieces (each usable alone):
  NatsCluster(n)  n nats-server processes on free 127.0.0.1 client,
                  route and monitor ports, one NATS cluster (routes),
                  JetStream on, max_payload 2MB; wait_ready() polls the
                  monitor's /routez and /jsz; stop/kill/start(i).
  ClusterNode     an xmppd node: tests/bb/harness.py's Server with the
                  cluster block in its overrides, every process of it
                  tracked (pids, kill9, freeze/thaw, bridge_pid).
  NetnsLab        network namespaces for partitions (root only): a hub
                  namespace with a bridge, one namespace per node with
                  a veth into it, a root-side veth for the test's
                  clients; partition(k)/heal(k) take node k's bridge
                  port down/up.
  Lab             all of it as a context manager.

Failure policy: every wait has a deadline and says what it waited for;
whatever the lab started (processes, namespaces, the database) is
stopped or removed in finally and at interpreter exit, even when a test
fails; a failed test gets the tails of every log.  Temporary
directories are removed unless XMPPD_KEEP_TMP is set.  What this
machine lacks (nats-server; root or `ip netns` for NetnsLab) raises
LabSkip, which @skippable turns into a "# skip:" line (harness tests
have no skip status: the test passes, loudly).
"""
import atexit
import functools
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import free_port, pid_alive  # noqa: E402

# Debian installs it in /usr/sbin (the plan says /usr/bin: both looked at)
NATS_SERVER = next((p for p in (shutil.which("nats-server"),
                                "/usr/sbin/nats-server",
                                "/usr/bin/nats-server")
                    if p and os.access(p, os.X_OK)), None)

KEEP_TMP = bool(os.environ.get("XMPPD_KEEP_TMP"))

_LIVE = []


@atexit.register
def _stop_all():
    for thing in list(_LIVE):
        try:
            thing.close()
        except Exception as e:      # the others still get stopped
            print("clusterlab: cleanup: %s" % e)


def _sigterm(signum, frame):
    # make check's or a CI runner's SIGTERM: unwind, so that the finally
    # blocks and atexit stop nats-server, xmppd and the namespaces
    raise SystemExit(128 + signum)


if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _sigterm)


class NatsDied(AssertionError):
    """A nats-server of the lab exited while the lab waited for it."""


class LabSkip(Exception):
    """This machine cannot run the lab (a missing program, not root)."""


def skippable(fn):
    """A test that prints '# skip: NAME: why' and passes when the lab
    raises LabSkip (run_tests has no skip status)."""
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        try:
            return fn(*a, **kw)
        except LabSkip as e:
            print("# skip: %s: %s" % (fn.__name__, e), flush=True)
    return wrapper


def wait_until(pred, timeout, what, step=0.05):
    """harness.wait_for, but pred returns (ok, why) and a timeout names
    the last why: what was still wrong."""
    deadline = time.monotonic() + timeout
    why = "never checked"
    while True:
        ok, why = pred()
        if ok:
            return ok
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s: %s"
                                 % (timeout, what, why))
        time.sleep(step)


def _run(args, check=True, timeout=30, **kw):
    r = subprocess.run(args, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError("%s failed (%d): %s%s" % (
            " ".join(args), r.returncode, r.stdout[-2000:], r.stderr[-2000:]))
    return r


def _tail(path, n=4000):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return ""


def _wait_gone(pids, timeout, what):
    harness.wait_for(lambda: not any(pid_alive(p) for p in pids),
                     timeout=timeout, what=what)


# ---- processes -----------------------------------------------------------

def _ppids():
    """{pid: ppid} of every process, from /proc/*/stat (the ppid is the
    second field after the parenthesised comm, which may hold spaces)."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue            # gone meanwhile
        if rest[0] != "Z":
            out[int(name)] = int(rest[1])
    return out


def descendants(root):
    """root and every live process below it."""
    ppids = _ppids()
    if root not in ppids:
        return []
    kids = {}
    for pid, ppid in ppids.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def _proc_names(pid):
    """(comm, cmdline) of pid, "" for what cannot be read."""
    names = []
    for f in ("comm", "cmdline"):
        try:
            with open("/proc/%d/%s" % (pid, f), "rb") as fh:
                names.append(fh.read().replace(b"\0", b" ").decode(
                    errors="replace").strip())
        except OSError:
            names.append("")
    return tuple(names)


def _run_state(pid):
    """The state letter of /proc/PID/stat (R, S, T...), None if gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _start_time(pid):
    """Field 22 of /proc/PID/stat (clock ticks since boot): with the pid,
    it names one process, never a later one that reuses the pid."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _signal_all(pids, sig):
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


# ---- NATS ----------------------------------------------------------------

def _http_json(url, timeout=1.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.loads(r.read().decode())
    except (OSError, ValueError):
        return None


class NatsCluster:
    """n nats-server processes forming one NATS cluster with JetStream.

    hosts: the address of each server (default 127.0.0.1 for all, on
    free ports); netns: the namespace each one runs in (NetnsLab), None
    for this one.  Server i is "s<i+1>"; its files are in
    <dir>/s<i+1>.conf, .log and js<i+1>/."""

    def __init__(self, n=3, dir=None, hosts=None, netns=None, name=None):
        if NATS_SERVER is None:
            raise LabSkip("nats-server is not installed "
                          "(apt-get install nats-server)")
        self.n = n
        self.own_dir = dir is None
        self.dir = dir or tempfile.mkdtemp(prefix="xmppd-nats-")
        os.makedirs(self.dir, exist_ok=True)
        self.hosts = list(hosts or ["127.0.0.1"] * n)
        self.netns = list(netns or [None] * n)
        self.name = name or "lab%s" % secrets.token_hex(3)
        self._pick_ports()
        self.procs = [None] * n
        self._logs = [None] * n
        for i in range(n):
            self._write_config(i)
        _LIVE.append(self)

    def _pick_ports(self):
        self.client_ports = [free_port() for _ in range(self.n)]
        self.route_ports = [free_port() for _ in range(self.n)]
        self.http_ports = [free_port() for _ in range(self.n)]

    def sname(self, i):
        return "s%d" % (i + 1)

    def conf_path(self, i):
        return os.path.join(self.dir, self.sname(i) + ".conf")

    def log_path(self, i):
        return os.path.join(self.dir, self.sname(i) + ".log")

    def _write_config(self, i):
        h = self.hosts[i]
        routes = ", ".join("nats-route://%s:%d" % (self.hosts[j], self.route_ports[j])
                           for j in range(self.n) if j != i)
        text = [
            "server_name: %s" % self.sname(i),
            "listen: %s:%d" % (h, self.client_ports[i]),
            "http: %s:%d" % (h, self.http_ports[i]),
            # a batch of frames is up to IPC_FRAME_MAX plus a header: more
            # than the default 1 MB (plan section 1)
            "max_payload: 2MB",
            'jetstream { store_dir: "%s", max_memory_store: 64MB, '
            "max_file_store: 256MB }" % os.path.join(self.dir, "js%d" % (i + 1)),
        ]
        if self.n > 1:
            # JetStream in a cluster refuses to start without routes
            text.append("cluster { name: %s, listen: %s:%d, routes: [ %s ] }"
                        % (self.name, h, self.route_ports[i], routes))
        with open(self.conf_path(i), "w") as f:
            f.write("\n".join(text) + "\n")

    def url(self, i):
        return "nats://%s:%d" % (self.hosts[i], self.client_ports[i])

    def urls(self, first=0):
        """Every server's nats:// URL, server `first` first, then the
        others in order."""
        order = [first] + [j for j in range(self.n) if j != first]
        return [self.url(j) for j in order]

    def monitor(self, i, path, timeout=1.0):
        """GET http://host:monitor/path as JSON; None when it does not
        answer."""
        return _http_json("http://%s:%d/%s" % (self.hosts[i], self.http_ports[i],
                                               path.lstrip("/")), timeout)

    # ---- processes --------------------------------------------------------

    def start(self, i):
        """Start server i (again): same ports, config and store dir."""
        if self.running(i):
            raise AssertionError("%s is already running" % self.sname(i))
        cmd = [NATS_SERVER, "-c", self.conf_path(i)]
        if self.netns[i]:
            cmd = ["ip", "netns", "exec", self.netns[i]] + cmd
        log = open(self.log_path(i), "ab")
        log.write(b"==== clusterlab: start %s ====\n" % self.sname(i).encode())
        log.flush()
        self._logs[i] = log
        self.procs[i] = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)

    def start_all(self):
        for i in range(self.n):
            if not self.running(i):
                self.start(i)
        return self

    def running(self, i):
        p = self.procs[i]
        return p is not None and p.poll() is None

    def pid(self, i):
        return self.procs[i].pid if self.running(i) else None

    def _end(self, i, sig, timeout):
        p = self.procs[i]
        if p is None:
            return
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.procs[i] = None
        if self._logs[i]:
            self._logs[i].close()
            self._logs[i] = None

    def stop(self, i, timeout=10):
        """SIGTERM (a clean shutdown), then wait; SIGKILL past timeout."""
        self._end(i, signal.SIGTERM, timeout)

    def kill(self, i):
        """SIGKILL: the server dies the way a machine does."""
        self._end(i, signal.SIGKILL, 5)

    def stop_all(self):
        for i in range(self.n):
            try:
                self.stop(i)
            except Exception as e:
                print("clusterlab: stopping %s: %s" % (self.sname(i), e))

    # ---- readiness --------------------------------------------------------

    def ready_state(self, i):
        """(True, leader) when server i has a route to every other server
        and knows the JetStream meta leader; else (False, why)."""
        if not self.running(i):
            return False, "%s is not running" % self.sname(i)
        rz = self.monitor(i, "routez")
        if rz is None:
            return False, "%s: no /routez answer" % self.sname(i)
        # one route per peer; a route counted twice while two solicit each
        # other at once is settled by the server soon after
        peers = {r.get("remote_id") for r in rz.get("routes") or ()}
        if self.n > 1 and (rz.get("num_routes") != self.n - 1 or len(peers) != self.n - 1):
            return False, "%s: %s routes" % (self.sname(i), rz.get("num_routes"))
        jz = self.monitor(i, "jsz")
        leader = ((jz or {}).get("meta_cluster") or {}).get("leader")
        if self.n > 1 and not leader:
            return False, "%s: no JetStream meta leader yet" % self.sname(i)
        return True, leader or self.sname(i)

    def wait_ready(self, timeout=30, which=None):
        """Every server (or those in which) routed to all the others,
        with one meta leader known to all; returns the leader.  A server
        that exits meanwhile raises NatsDied at once."""
        which = [i for i in (which if which is not None else range(self.n))]
        leaders = {}

        def check():
            for i in which:
                p = self.procs[i]
                if p is not None and p.poll() is not None:
                    raise NatsDied("%s exited (status %s); its log ends:\n%s" % (
                        self.sname(i), p.returncode, _tail(self.log_path(i), 800)))
            for i in which:
                ok, v = self.ready_state(i)
                if not ok:
                    return False, v
                leaders[i] = v
            if len(set(leaders[i] for i in which)) != 1:
                return False, "meta leaders differ: %r" % leaders
            return True, None
        wait_until(check, timeout, "the NATS cluster", step=0.1)
        return leaders[which[0]]

    def up(self, timeout=30, tries=3):
        """start_all() and wait_ready().  A port free_port() chose can be
        taken before nats-server binds it (tests run side by side): a
        server that exits with "address already in use" gets the whole
        cluster new ports and another try."""
        for t in range(tries):
            self.start_all()
            try:
                return self.wait_ready(timeout)
            except NatsDied as e:
                if t == tries - 1 or "address already in use" not in str(e):
                    raise
                print("clusterlab: a port was taken (%s): new ports"
                      % str(e).split(";")[0])
                self.stop_all()
                self._pick_ports()
                for i in range(self.n):
                    self._write_config(i)

    def print_logs(self):
        for i in range(self.n):
            print("---- nats %s log tail (%s) ----" % (self.sname(i), self.log_path(i)))
            print(_tail(self.log_path(i), 3000))

    def close(self):
        self.stop_all()
        if self in _LIVE:
            _LIVE.remove(self)
        if self.own_dir and not KEEP_TMP:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            self.print_logs()
        self.close()
        return False


# ---- xmppd nodes ---------------------------------------------------------

def cluster_status_known():
    """None when this xmppctl knows `cluster status`; else why not (the
    output, which says unknown command).  Needs no running server:
    xmppctl checks its command before it connects."""
    r = _run([harness.XMPPCTL, "-s", "/nonexistent/clusterlab.sock",
              "cluster", "status", "--json"], check=False)
    out = (r.stdout + r.stderr).strip()
    if "unknown command" in out:
        return "xmppctl has no 'cluster status' yet (%s)" % out.splitlines()[0]
    return None


class ClusterNode(harness.Server):
    """One xmppd node of the lab: harness.Server with the cluster block.

    lab: gives the shared database's conninfo, the cluster name, the
    secret file and the NATS cluster; index: 0 for "n1"; addr: the
    address its listeners bind (127.0.0.1, or its namespace's);
    netns: the namespace its processes run in (None: this one)."""

    def __init__(self, lab, index, workers=2, overrides=None, addr="127.0.0.1",
                 netns=None, heartbeat="500ms", node_timeout="2s"):
        self.lab = lab
        self.index = index
        self.name = "n%d" % (index + 1)
        self.addr = addr
        self.netns = netns
        self.node_timeout = duration_s(node_timeout)
        o = {
            "db.conninfo": lab.conninfo,
            "cluster.servers": ", ".join(lab.nats.urls(first=index % lab.nats.n)),
            "cluster.node": self.name,
            "cluster.name": lab.cluster_name,
            "cluster.secret_file": lab.secret_file,
            "cluster.heartbeat_interval": heartbeat,
            "cluster.node_timeout": node_timeout,
        }
        if addr != "127.0.0.1":
            o.update({"c2s.addresses": addr, "http.addresses": addr,
                      "s2s.addresses": addr})
        o.update(overrides or {})
        super().__init__(workers=workers, overrides=o)
        self.running = False
        self._log_mark = 0
        # {pid: start time} of every process of this node seen so far:
        # finds a child the master no longer parents (the master died)
        # and never a stranger that took a dead one's pid
        self._seen = {}

    def args(self):
        a = super().args()
        return (["ip", "netns", "exec", self.netns] + a) if self.netns else a

    # ---- start and stop ---------------------------------------------------

    def status_ok(self):
        """Every worker up.  A bridge row (slot nworkers when the
        cluster is on) is not a worker: harness.Server.status keeps
        only rows named worker, and a worker row that says it is the
        bridge is left out here too."""
        st = self.status()
        if not st:
            return None
        ws = [w for w in st["workers"] if not _is_bridge_row(w)
              and w.get("slot", 0) < self.workers]
        if len(ws) != self.workers:
            return None
        if not all(w["pid"] > 0 and pid_alive(w["pid"]) for w in ws):
            return None
        return st

    def start(self, wait=True):
        self._log_mark = len(self.log_text())
        super().start(wait)
        self.running = True
        if wait:
            # the shared database (the lab's, not harness.Server's own):
            # the same settled start harness.Server waits for
            harness.wait_for(lambda: self.log_text()[self._log_mark:].count(
                "database link up") >= self.workers, what="%s: database links up"
                % self.name)
        self.pids()
        return self

    def stop(self):
        """A clean stop (SIGTERM to the master), then SIGKILL to whatever
        of this node is still alive (a bridge that outlives its master
        would otherwise stay)."""
        if getattr(self, "_frozen", None):
            self.thaw()         # a stopped master would not see SIGTERM
        self.pids()
        try:
            super().stop()
        finally:
            _signal_all(self._seen_alive(), signal.SIGKILL)
            self.running = False
            self._seen = {}

    def restart(self):
        """Stop if running, then start again on the same ports, config
        and database."""
        if self.running:
            self.stop()
        return self.start()

    # ---- processes --------------------------------------------------------

    def pids(self):
        """The master and every process below it."""
        if not self.master_pid or not pid_alive(self.master_pid):
            return []
        pids = descendants(self.master_pid)
        for p in pids:
            self._seen[p] = _start_time(p)
        return pids

    def _seen_alive(self):
        """The processes of this node ever seen by pids() that are still
        the same processes and alive."""
        return [p for p, t in self._seen.items()
                if t is not None and _start_time(p) == t and pid_alive(p)]

    def kill9(self, timeout=10):
        """SIGKILL every process of the node at once, the way a machine
        dies: SIGSTOP first (the master first, so it forks no
        replacement while we look), until no new process shows up, then
        SIGKILL all; waits until none is left."""
        stopped = set()
        for _ in range(20):
            now = set(self.pids()) | set(self._seen_alive())
            new = now - stopped
            if not new:
                break
            if self.master_pid in new:
                _signal_all([self.master_pid], signal.SIGSTOP)
            _signal_all(sorted(new), signal.SIGSTOP)
            stopped |= new
        _signal_all(sorted(stopped), signal.SIGKILL)
        if self.proc is not None:
            try:
                self.proc.wait(timeout)     # the master is our child: reap it
            except subprocess.TimeoutExpired:
                pass
        _wait_gone(stopped, timeout, "%s: every process gone after SIGKILL" % self.name)
        if getattr(self, "_stderr", None):
            self._stderr.close()
            self._stderr = None
        self.running = False
        self._seen = {}
        return sorted(stopped)

    def freeze(self):
        """SIGSTOP every process: a frozen machine (its sockets stay open,
        nothing answers)."""
        pids = self.pids()
        _signal_all([self.master_pid], signal.SIGSTOP)
        _signal_all(pids, signal.SIGSTOP)
        self._frozen = pids
        # a signal is delivered later: return once all of them are stopped
        harness.wait_for(lambda: all(_run_state(p) in ("T", "t", None) for p in pids),
                         timeout=5, what="%s: every process stopped" % self.name)
        return pids

    def thaw(self):
        pids = set(getattr(self, "_frozen", ())) | set(self.pids())
        _signal_all(sorted(pids), signal.SIGCONT)
        self._frozen = []

    def worker_pids(self):
        st = self.status()
        return [w["pid"] for w in (st or {"workers": []})["workers"]
                if not _is_bridge_row(w) and w.get("slot", 0) < self.workers]

    def bridge_pid(self):
        """The cluster bridge's pid, or None.  In order: a row of
        `xmppctl status` that is the bridge (kind "bridge", or a worker
        row at slot nworkers, the contract's bridge slot); a child of the
        master whose comm or cmdline says bridge (if the bridge sets its
        process title: comm, or a cmdline unlike the master's); else
        the one child of the master that is no worker (None if there
        is not exactly one: workers only, or a child we cannot tell)."""
        rows = self._status_rows()
        for kind, d in rows:
            if kind == "bridge" or (kind == "worker" and (
                    _is_bridge_row(d) or d.get("slot") == self.workers)):
                pid = d.get("pid", 0)
                if pid > 0 and pid_alive(pid):
                    return pid
        if not self.master_pid:
            return None
        ppids = _ppids()
        children = [p for p, pp in ppids.items() if pp == self.master_pid]
        # comm, or a cmdline the bridge rewrote: the unchanged cmdline
        # is the master's, whose path may say bridge (a worktree's)
        master_cmd = _proc_names(self.master_pid)[1]
        for p in children:
            comm, cmd = _proc_names(p)
            if "bridge" in comm or (cmd != master_cmd and "bridge" in cmd):
                return p
        workers = {d.get("pid") for k, d in rows if k == "worker"}
        others = [p for p in children if p not in workers]
        return others[0] if len(others) == 1 else None

    def _status_rows(self):
        """Every line of `xmppctl status` as (kind, {field: value})."""
        r = self.ctl("status")
        rows = []
        if r.returncode != 0:
            return rows
        for line in r.stdout.splitlines():
            kind, *fields = line.split("\t")
            d = dict(f.split("=", 1) for f in fields if "=" in f)
            for k, v in d.items():
                if re.fullmatch(r"-?\d+", v):
                    d[k] = int(v)
            rows.append((kind, d))
        return rows

    # ---- the cluster's view -----------------------------------------------

    def cluster_status(self):
        """`xmppctl cluster status --json` as a dict, None when it fails
        (no answer, not JSON)."""
        r = self.ctl("cluster", "status", "--json")
        if r.returncode != 0:
            return None
        try:
            return json.loads(r.stdout)
        except ValueError:
            return None

    def connect(self, timeout=5.0):
        return harness.Client(self.port, host=self.addr, timeout=timeout)


def _is_bridge_row(d):
    return any(str(d.get(k, "")) == "bridge" for k in ("kind", "role", "type", "name"))


def duration_s(s):
    """Seconds of a config duration (500ms, 2s, 1m)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)?", str(s).strip())
    if not m:
        raise ValueError("not a duration: %r" % s)
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600,
                                None: 0.001}[m.group(2)]


# ---- network namespaces --------------------------------------------------

class NetnsLab:
    """Network namespaces for partitions (plan section 1: as root, netns,
    veth and a Linux bridge work here; tc netem does not).

        hub  xlab<pid>: bridge br0, ports p1..pN (node k+1) and proot
        node k: namespace xn<k+1><pid>, eth0 = 10.77.X.<k+1>/24 into p<k+1>
        root: veth xr<pid> = 10.77.X.254/24 into proot (the test's clients)

    X is a /24 no route of this machine uses yet (labs side by side).
    partition(k): p<k+1> down: node k cut from everyone, both directions,
    silently (no RST, no ICMP); heal(k): up.  Raises LabSkip when not
    root or `ip netns` does not work."""

    def __init__(self, n=3):
        if os.geteuid() != 0:
            raise LabSkip("network namespaces need root")
        if shutil.which("ip") is None or _run(["ip", "netns", "list"], check=False).returncode:
            raise LabSkip("'ip netns' does not work here")
        self.n = n
        self.tag = str(os.getpid())
        self.hub = "xlab" + self.tag
        self.ns = ["xn%d%s" % (k + 1, self.tag) for k in range(n)]
        self.root_if = "xr" + self.tag
        self.x = self._free_subnet()
        self.made = False
        _LIVE.append(self)
        try:
            self._make()
        except BaseException:
            self.close()
            raise

    def _free_subnet(self):
        used = _run(["ip", "-4", "route", "show"]).stdout
        first = 20 + os.getpid() % 200
        for x in [first] + random.sample(range(1, 250), 60):
            if "10.77.%d." % x not in used:
                return x
        raise LabSkip("no free 10.77.X.0/24 for the lab")

    def addr(self, k):
        return "10.77.%d.%d" % (self.x, k + 1)

    @property
    def root_addr(self):
        return "10.77.%d.254" % self.x

    def port(self, k):
        return "p%d" % (k + 1)

    def _ip(self, *args, ns=None):
        return _run(["ip"] + (["-n", ns] if ns else []) + list(args))

    def _make(self):
        for ns in [self.hub] + self.ns:
            _run(["ip", "netns", "del", ns], check=False)   # a reused pid's leftover
            _run(["ip", "netns", "add", ns])
            self._ip("link", "set", "lo", "up", ns=ns)
        self.made = True
        self._ip("link", "add", "br0", "type", "bridge", ns=self.hub)
        self._ip("link", "set", "br0", "up", ns=self.hub)
        for k, ns in enumerate(self.ns):
            a, b = "xv%da%s" % (k + 1, self.tag), "xv%db%s" % (k + 1, self.tag)
            self._ip("link", "add", a, "type", "veth", "peer", "name", b)
            self._ip("link", "set", a, "netns", ns)
            self._ip("link", "set", a, "name", "eth0", ns=ns)
            self._ip("addr", "add", self.addr(k) + "/24", "dev", "eth0", ns=ns)
            self._ip("link", "set", "eth0", "up", ns=ns)
            self._plug(b, self.port(k))
        peer = "xrb" + self.tag
        self._ip("link", "add", self.root_if, "type", "veth", "peer", "name", peer)
        self._plug(peer, "proot")
        self._ip("addr", "add", self.root_addr + "/24", "dev", self.root_if)
        self._ip("link", "set", self.root_if, "up")

    def _plug(self, ifname, port):
        """Move ifname into the hub as port `port` of br0."""
        self._ip("link", "set", ifname, "netns", self.hub)
        self._ip("link", "set", ifname, "name", port, ns=self.hub)
        self._ip("link", "set", port, "master", "br0", ns=self.hub)
        self._ip("link", "set", port, "up", ns=self.hub)

    def exec_prefix(self, k):
        return ["ip", "netns", "exec", self.ns[k]]

    def partition(self, k):
        """Cut node k from the others and from the test's clients."""
        self._ip("link", "set", self.port(k), "down", ns=self.hub)

    def heal(self, k):
        self._ip("link", "set", self.port(k), "up", ns=self.hub)

    # ---- probes for the self-test ---------------------------------------

    def listen(self, k, port):
        """A TCP server in node k's namespace on addr(k):port that writes
        'hi' to every connection; returns the Popen (stop it)."""
        code = ("import socket,sys\n"
                "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                "s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16)\n"
                "print('ready', flush=True)\n"
                "while True:\n"
                "    c, _ = s.accept(); c.sendall(b'hi'); c.close()\n")
        p = subprocess.Popen(self.exec_prefix(k) + ["/usr/bin/python3", "-c", code,
                                                    self.addr(k), str(port)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        if p.stdout.readline().strip() != "ready":
            p.kill()
            p.wait()
            raise AssertionError("listener in %s did not start" % self.ns[k])
        return p

    def tcp_ok(self, src, dst, port, timeout=1.0):
        """Can namespace src (None: the root side) open a TCP connection
        to node dst's port and read 'hi' within timeout seconds?"""
        code = ("import socket,sys\n"
                "try:\n"
                "    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))\n"
                "    print('ok' if c.recv(2) == b'hi' else 'bad')\n"
                "except OSError as e:\n"
                "    print('fail', e)\n")
        cmd = (self.exec_prefix(src) if src is not None else []) + [
            "/usr/bin/python3", "-c", code, self.addr(dst), str(port), str(timeout)]
        r = _run(cmd, check=False, timeout=timeout + 10)
        return r.stdout.strip() == "ok"

    def close(self):
        if self.made:
            _run(["ip", "link", "del", self.root_if], check=False)
            for ns in self.ns + [self.hub]:
                _run(["ip", "netns", "del", ns], check=False)
            self.made = False
        if self in _LIVE:
            _LIVE.remove(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# ---- the lab -------------------------------------------------------------

def pg_socket_conninfo(conninfo):
    """conninfo with host= the PostgreSQL server's Unix socket directory
    (asked of the server itself): the same database, reachable from a
    network namespace that cannot reach 127.0.0.1 of this one (the
    socket is a file: namespaces share the filesystem)."""
    r = _run(["psql", "-X", "-q", "-At", "-d", conninfo, "-c",
              "SELECT current_setting('unix_socket_directories'), "
              "current_setting('port')"])
    dirs, port = r.stdout.strip().split("|")
    sockdir = dirs.split(",")[0].strip()
    if not sockdir:
        raise LabSkip("PostgreSQL listens on no Unix socket")
    ci = re.sub(r"\b(host|hostaddr|port)=\S+", "", conninfo).strip()
    return "host=%s port=%s %s" % (sockdir, port, ci)


class Lab:
    """NATS servers, one shared database and xmppd nodes, started in
    __enter__ and stopped, whatever happens, in __exit__.

    nodes, nats: how many of each (nats >= 1; node i lists server
    i mod nats first); workers: per node;
    overrides: config rows for every node (e.g. a longer node_timeout),
    node_overrides: {index: rows} for one; netns=True: node k and
    NATS server k run in namespace k of a NetnsLab (nats == nodes),
    clients reach them from the root side; addrs: without netns, the
    address node k's listeners bind (each on a loopback address of its
    own, as the federation lab places servers: its DNS names them),
    default 127.0.0.1 for all."""

    def __init__(self, nodes=3, nats=3, workers=2, overrides=None,
                 node_overrides=None, netns=False, heartbeat="500ms",
                 node_timeout="2s", addrs=None):
        if netns and nats != nodes:
            raise ValueError("netns: one NATS server per node")
        if addrs is not None and (netns or len(addrs) != nodes):
            raise ValueError("addrs: one per node, and not with netns")
        self.addrs = list(addrs) if addrs is not None else None
        self.dir = tempfile.mkdtemp(prefix="xmppd-clusterlab-")
        self.cluster_name = "t" + secrets.token_hex(4)
        self.secret_file = os.path.join(self.dir, "cluster.key")
        fd = os.open(self.secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(64))
        self.n_nodes = nodes
        self.n_nats = nats
        self.workers = workers
        self.overrides = dict(overrides or {})
        self.node_overrides = dict(node_overrides or {})
        self.heartbeat = heartbeat
        self.node_timeout_s = duration_s(self.overrides.get(
            "cluster.node_timeout", node_timeout))
        self.node_timeout = node_timeout
        self.use_netns = netns
        self.netns = None
        self.nats = None
        self.db = None
        self.nodes = []
        self.clients = []
        self.closed = False
        _LIVE.append(self)

    # ---- start ------------------------------------------------------------

    def start(self):
        try:
            self._start()
        except BaseException:
            self.close(failed=True)
            raise
        return self

    def _start(self):
        if self.use_netns:
            self.netns = NetnsLab(self.n_nodes)
            self.nats = NatsCluster(self.n_nats, dir=os.path.join(self.dir, "nats"),
                                    hosts=[self.netns.addr(k) for k in range(self.n_nats)],
                                    netns=self.netns.ns, name=self.cluster_name)
        else:
            self.nats = NatsCluster(self.n_nats, dir=os.path.join(self.dir, "nats"),
                                    name=self.cluster_name)
        self.nats.up()
        self.db = harness.Database()
        self.conninfo = (pg_socket_conninfo(self.db.conninfo) if self.use_netns
                         else self.db.conninfo)
        for k in range(self.n_nodes):
            o = dict(self.overrides)
            o.update(self.node_overrides.get(k, {}))
            self.nodes.append(ClusterNode(
                self, k, workers=self.workers, overrides=o,
                addr=(self.netns.addr(k) if self.netns else
                      self.addrs[k] if self.addrs else "127.0.0.1"),
                netns=self.netns.ns[k] if self.netns else None,
                heartbeat=self.heartbeat, node_timeout=self.node_timeout))
        self.nodes[0].ctl_config("db", "migrate")
        for node in self.nodes:
            node.start()

    # ---- users and clients -------------------------------------------------

    def add_user(self, jid, password):
        """An account in the shared database (once for every node)."""
        self.nodes[0].add_user(jid, password)

    def client(self, i, user, password, resource=None):
        """A harness.Client logged in (STARTTLS, SCRAM, bind) on node i
        as user (the localpart of an account add_user made); c.jid is
        the bound full JID; closed with the lab."""
        c = self.nodes[i].connect()
        self.clients.append(c)
        c.jid = c.login(user, password, resource)
        return c

    # ---- the cluster's view -------------------------------------------------

    def status(self, i):
        return self.nodes[i].cluster_status()

    def live_nodes(self):
        return [n for n in self.nodes if n.running]

    def converged(self, nodes=None):
        """(statuses, None) when every node in nodes (default: the
        running ones) has its link up and lists every one of them as up
        (itself as self) with the incarnation that node gives itself;
        else (None, why)."""
        nodes = nodes if nodes is not None else self.live_nodes()
        sts = {}
        for n in nodes:
            st = n.cluster_status()
            if st is None:
                return None, "%s: no cluster status" % n.name
            if not st.get("enabled") or st.get("link") != "up":
                return None, "%s: enabled=%s link=%s" % (n.name, st.get("enabled"),
                                                         st.get("link"))
            sts[n.name] = st
        for name, st in sts.items():
            seen = {e.get("name"): e for e in st.get("nodes", ())}
            for other in nodes:
                e = seen.get(other.name)
                want = "self" if other.name == name else "up"
                if e is None:
                    return None, "%s does not list %s" % (name, other.name)
                if e.get("state") != want:
                    return None, "%s sees %s %s" % (name, other.name, e.get("state"))
                if e.get("incarnation") != sts[other.name].get("incarnation"):
                    return None, "%s has %s at incarnation %s, it says %s" % (
                        name, other.name, e.get("incarnation"),
                        sts[other.name].get("incarnation"))
        return sts, None

    def wait_converged(self, timeout=15, nodes=None):
        """Wait until converged(nodes); returns {node name: status}."""
        got = {}

        def check():
            sts, why = self.converged(nodes)
            got["sts"] = sts
            return sts is not None, why
        wait_until(check, timeout, "the cluster to converge", step=0.1)
        return got["sts"]

    def state_of(self, viewer, name):
        """The state node `viewer` (index) gives node `name`, or None."""
        st = self.status(viewer)
        for e in (st or {}).get("nodes", ()):
            if e.get("name") == name:
                return e.get("state")
        return None

    # ---- stop ---------------------------------------------------------------

    def print_logs(self):
        for n in self.nodes:
            print("---- xmppd %s log tail (%s) ----" % (n.name, n.log))
            print(n.log_text()[-4000:])
        if self.nats:
            self.nats.print_logs()

    def close(self, failed=False):
        if self.closed:
            return
        self.closed = True
        errors = []
        for c in self.clients:
            c.close()
        if failed:
            self.print_logs()
        for n in self.nodes:
            try:
                n.stop()
            except Exception as e:
                errors.append("stopping %s: %s" % (n.name, e))
        if self.nats:
            self.nats.close()
        if self.netns:
            self.netns.close()
        if self.db:
            self.db.drop()
        for n in self.nodes:
            try:
                n.check_stderr()
            except AssertionError as e:
                errors.append("%s: %s" % (n.name, e))
        if not KEEP_TMP:
            for n in self.nodes:
                shutil.rmtree(n.dir, ignore_errors=True)
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print("clusterlab: kept %s and %s" % (self.dir, " ".join(n.dir for n in self.nodes)))
        if self in _LIVE:
            _LIVE.remove(self)
        if errors and not failed:
            raise AssertionError("; ".join(errors))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close(failed=exc[0] is not None)
        return False

"""GET /metrics against the real Prometheus, black box: Debian's
prometheus package (2.42), unpacked by scripts/get-prometheus and never
installed; scripts/check sets XMPPD_TEST_PROMETHEUS_DIR to the directory
holding its `prometheus` and `promtool`.

- `promtool check metrics` lints the Prometheus text form (names,
  units, types, help) and finds nothing.  promtool 2.42 reads only the
  text format 0.0.4 (its linter cannot parse `# UNIT` or the `info`
  type), so the OpenMetrics form is proven by the server itself:
- a Prometheus server on a free loopback port scrapes xmppd every
  second; it must negotiate OpenMetrics (its metadata then carries the
  `info` type and the units, which the 0.0.4 text cannot express),
  ingest every sample without an error, and its queries must show what
  two users logging in and chatting did.  A worker killed with -9 does
  not make any counter go backwards, except those docs/METRICS.md says
  start again, which Prometheus must then see as counter resets.

Without XMPPD_TEST_PROMETHEUS_DIR the binaries are looked for in the
cache scripts/get-prometheus fills and in PATH; if they are not there
the test SKIPS (exit 77) and says so loudly.  Needs XMPPD_TEST_PGCONN.
"""
import ctypes
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (SRCDIR, Client, Server, free_port, pid_alive,  # noqa: E402
                     run_tests, wait_for)
from test_metrics import USERS, chat, http_get  # noqa: E402

N_MESSAGES = 20
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,"
                     "application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def find_prometheus():
    """The directory holding prometheus and promtool, or None."""
    env = os.environ.get("XMPPD_TEST_PROMETHEUS_DIR")
    if env:
        for b in ("prometheus", "promtool"):
            p = os.path.join(env, b)
            if not os.access(p, os.X_OK):
                # set but wrong: a failure, never a skip
                print("FAIL: XMPPD_TEST_PROMETHEUS_DIR=%s has no executable "
                      "%s (scripts/get-prometheus prints the right one)"
                      % (env, b), flush=True)
                sys.exit(1)
        return env
    home = os.environ.get("XDG_CACHE_HOME",
                          os.path.expanduser("~/.cache"))
    candidates = sorted(
        glob.glob("/var/cache/xmppd-test/prometheus/*/usr/bin") +
        glob.glob(os.path.join(home, "xmppd-test/prometheus/*/usr/bin")))
    for d in reversed(candidates):
        if all(os.access(os.path.join(d, b), os.X_OK)
               for b in ("prometheus", "promtool")):
            return d
    a, b = shutil.which("prometheus"), shutil.which("promtool")
    if a and b and os.path.dirname(a) == os.path.dirname(b):
        return os.path.dirname(a)
    return None


PROM_DIR = find_prometheus()
if PROM_DIR is None:
    msg = ("\n" + "*" * 72 + "\nSKIP test_prometheus: XMPPD_TEST_PROMETHEUS_DIR "
           "is not set and no prometheus/promtool\nwas found (cache of "
           "scripts/get-prometheus, PATH).  Run\n  export "
           "XMPPD_TEST_PROMETHEUS_DIR=$(scripts/get-prometheus)\nor "
           "scripts/check, which does.\n" + "*" * 72)
    print(msg, flush=True)
    print(msg, file=sys.stderr, flush=True)
    sys.exit(77)
PROMTOOL = os.path.join(PROM_DIR, "promtool")
PROMETHEUS = os.path.join(PROM_DIR, "prometheus")


def metrics_doc():
    """{family name as scraped (counters with _total): (type, meaning)}
    from the table of docs/METRICS.md; `a_total` / `_b_total` rows name
    two families."""
    out = {}
    with open(os.path.join(SRCDIR, "docs", "METRICS.md")) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) != 4 or not cells[0].startswith("`xmppd_"):
                continue
            names = re.findall(r"`([a-z_]+)`", cells[0])
            first = names[0]
            for n in names[1:]:
                # `xmppd_db_link_ups_total` / `_downs_total`
                stem = first[:first.rfind("_", 0, len(first) -
                                          len("_total"))]
                names[names.index(n)] = stem + n
            for n in names:
                out[n] = (cells[1], cells[3])
    return out


# ---- a Prometheus server -------------------------------------------------

def _pdeathsig():
    # Prometheus dies with the test process, whatever ends it
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Prometheus:
    """prometheus on a free 127.0.0.1 port scraping xmppd's HTTP port
    (job xmppd) and itself (job prometheus) every second, its storage in
    a temporary directory; stopped (SIGTERM, then SIGKILL) at the end."""

    def __init__(self, target_port):
        self.dir = tempfile.mkdtemp(prefix="xmppd-prometheus-")
        self.target_port = target_port
        self.proc = None
        self.port = None
        self.log = os.path.join(self.dir, "prometheus.log")

    def config(self):
        return """global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: xmppd
    static_configs:
      - targets: ['127.0.0.1:%d']
  - job_name: prometheus
    static_configs:
      - targets: ['127.0.0.1:%d']
""" % (self.target_port, self.port)

    def start(self):
        # the free port could be taken before prometheus binds it: a few
        # tries
        for _ in range(3):
            self.port = free_port()
            cfg = os.path.join(self.dir, "prometheus.yml")
            with open(cfg, "w") as f:
                f.write(self.config())
            r = subprocess.run([PROMTOOL, "check", "config", cfg],
                               capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, r.stdout + r.stderr
            self._logf = open(self.log, "ab")
            self.proc = subprocess.Popen(
                [PROMETHEUS, "--config.file=" + cfg,
                 "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
                 "--web.listen-address=127.0.0.1:%d" % self.port,
                 "--web.console.templates=" + self.dir,
                 "--web.console.libraries=" + self.dir],
                stdin=subprocess.DEVNULL, stdout=self._logf,
                stderr=subprocess.STDOUT, preexec_fn=_pdeathsig)
            try:
                wait_for(self.ready, timeout=30, step=0.2,
                         what="prometheus ready")
                return self
            except AssertionError:
                self.stop()
                if "address already in use" not in self.log_text():
                    raise AssertionError("prometheus did not start:\n" +
                                         self.log_text()[-3000:])
        raise AssertionError("prometheus found no free port")

    def ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("prometheus exited (%d):\n%s" % (
                self.proc.returncode, self.log_text()[-3000:]))
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/-/ready"
                                        % self.port, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def api(self, path, **params):
        url = "http://127.0.0.1:%d/api/v1/%s?%s" % (
            self.port, path, urllib.parse.urlencode(params))
        with urllib.request.urlopen(url, timeout=10) as r:
            doc = json.loads(r.read().decode())
        assert doc["status"] == "success", doc
        return doc["data"]

    def query(self, q):
        """{frozenset(labels without __name__): value} of an instant
        query."""
        data = self.api("query", query=q)
        assert data["resultType"] == "vector", data
        return {frozenset((k, v) for k, v in r["metric"].items()
                          if k != "__name__"): float(r["value"][1])
                for r in data["result"]}

    def value(self, q):
        """The one value of a query (sum(...) and the like), or None."""
        r = self.query(q)
        assert len(r) <= 1, (q, r)
        return next(iter(r.values())) if r else None

    def wait_value(self, q, want, timeout=30):
        """Wait until query q has the value want; the last value seen is
        in the failure."""
        last = []

        def check():
            v = self.value(q)
            last[:] = [v]
            return v == want
        try:
            wait_for(check, timeout=timeout, step=0.25, what=q)
        except AssertionError:
            raise AssertionError("%s: want %r, Prometheus has %r" % (
                q, want, last[0] if last else None))

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        if getattr(self, "_logf", None):
            self._logf.close()
            self._logf = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        if exc[0] is not None:
            print("---- prometheus log (%s) ----" % self.log)
            print(self.log_text()[-4000:])
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---- the tests -------------------------------------------------------------

def busy_server_text(s):
    """/metrics (Prometheus text 0.0.4) after logins, a failed login and
    a bounce, so that the families shown only once seen are there."""
    a = Client(s.port)
    a.login("juliet", "r0m30!", resource="balcony")
    a.send("<presence/>")
    a.send("<message to='nobody@localhost' type='chat' id='b1'>"
           "<body>hello?</body></message>")
    a.read_until("<service-unavailable")
    c = Client(s.port)
    c.open()
    c.starttls()
    assert "<not-authorized/>" in c.auth_plain("romeo", "wrong")
    status, ctype, text, _ = http_get(s, "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    for fam in ("xmppd_login_failures_total", "xmppd_stanza_errors_total"):
        assert "\n" + fam + "{" in text, fam
    a.close()
    c.close()
    return text


def test_promtool_lints_clean():
    with Server(workers=2, users=USERS) as s:
        text = busy_server_text(s)
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=text,
                           capture_output=True, text=True, timeout=60)
        # promtool prints one line per finding and exits 3 on findings,
        # 1 when it cannot parse
        assert r.returncode == 0 and r.stdout == "" and r.stderr == "", \
            "promtool check metrics (exit %d):\n%s%s" % (
                r.returncode, r.stdout, r.stderr)
        # the same over the control socket's OpenMetrics text has the
        # same families (promtool cannot read OpenMetrics itself)
        om = s.ctl("stats", "--openmetrics").stdout
        fams = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
        om_fams = set(re.findall(r"^# TYPE (\S+) ", om, re.M))
        assert {re.sub(r"_(total|info)$", "", f) for f in fams} == om_fams


def test_metrics_documented():
    """Every family /metrics shows is a row of docs/METRICS.md with its
    type, and every row is shown; label values come from fixed sets (no
    JIDs, addresses or other unbounded values)."""
    doc = metrics_doc()
    with Server(workers=2, users=USERS) as s:
        text = busy_server_text(s)
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    om_type = {k: ("info" if k.endswith("_info") else v)
               for k, v in types.items()}
    # the cluster families appear only with cluster.servers set
    # (tests/bb/test_cluster_bridge.py checks those against the table)
    doc = {k: v for k, v in doc.items() if not k.startswith("xmppd_cluster_")}
    assert set(om_type) == set(doc), (
        "shown, not documented: %s; documented, not shown: %s" % (
            sorted(set(om_type) - set(doc)), sorted(set(doc) - set(om_type))))
    for name, t in om_type.items():
        assert doc[name][0] == t, (name, t, doc[name])
    values = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            for k, v in re.findall(r'([a-z_]+)="([^"]*)"', line):
                values.setdefault(k, set()).add(v)
    # the label names of the table, nothing else (no jid, address, ...)
    assert set(values) == {"worker", "listener", "tls_version",
                           "authenticated", "mechanism", "reason", "kind",
                           "condition", "le", "version", "openssl"}, values
    assert values["worker"] == {"0", "1"}, values["worker"]
    assert values["authenticated"] == {"true", "false"}
    # the client's names (a JID, the 127.0.0.1 it came from) are nowhere
    for k, vs in values.items():
        for v in vs:
            assert "@" not in v and "127.0.0.1" not in v and \
                "juliet" not in v and "nobody" not in v, (k, v)


def test_prometheus_scrapes_openmetrics():
    with Server(workers=2, users=USERS) as s, \
            Prometheus(s.http_port) as p:
        p.wait_value('up{job="xmppd"}', 1.0)
        p.wait_value('up{job="prometheus"}', 1.0)
        # nothing has happened yet: Prometheus's own requests are not
        # client traffic
        wait_for(lambda: (p.value('count_over_time(up{job="xmppd"}[1m])')
                          or 0) >= 3, timeout=30, what="3 scrapes")
        p.wait_value("sum(xmppd_logins_total)", 0.0)
        p.wait_value("sum(xmppd_received_bytes_total)", 0.0)
        p.wait_value("sum(xmppd_connections_accepted_total)", 0.0)

        a = Client(s.port)
        ja = a.login("juliet", "r0m30!", resource="balcony")
        b = Client(s.port)
        jb = b.login("romeo", "jul13t?", resource="garden",
                     mech="SCRAM-SHA-1")
        c = Client(s.port)
        c.open()
        c.starttls()
        assert "<not-authorized/>" in c.auth_plain("romeo", "wrong")
        c.close()
        chat(a, ja, b, jb, N_MESSAGES)
        chat(b, jb, a, ja, N_MESSAGES)

        # what the two users did, as Prometheus has it
        p.wait_value('sum(xmppd_logins_total{mechanism="SCRAM-SHA-256"})',
                     1.0)
        p.wait_value('sum(xmppd_logins_total{mechanism="SCRAM-SHA-1"})',
                     1.0)
        p.wait_value("sum(xmppd_logins_total)", 2.0)
        p.wait_value('sum(xmppd_login_failures_total{mechanism="PLAIN",'
                     'reason="not-authorized"})', 1.0)
        p.wait_value('sum(xmppd_stanzas_received_total{kind="message"})',
                     2.0 * N_MESSAGES)
        p.wait_value('sum(xmppd_stanzas_sent_total{kind="message"})',
                     2.0 * N_MESSAGES)
        p.wait_value("sum(xmppd_sessions)", 2.0)
        p.wait_value('sum(xmppd_connections{authenticated="true",'
                     'tls_version="TLSv1.3"})', 2.0)
        p.wait_value("sum(xmppd_db_up)", 2.0)
        p.wait_value("count(xmppd_worker_up == 1)", 2.0)
        assert p.value("xmppd_build_info") == 1.0
        assert p.value("sum(xmppd_session_binds_total)") == 2.0

        # OpenMetrics negotiated: only its parser gives the info type
        # and units in the metadata
        meta = p.api("metadata")
        assert meta["xmppd_build"][0]["type"] == "info", meta.get(
            "xmppd_build")
        assert meta["xmppd_db_query_duration_seconds"][0]["unit"] == \
            "seconds", meta["xmppd_db_query_duration_seconds"]
        assert meta["xmppd_received_bytes"][0] == {
            "type": "counter", "unit": "bytes",
            "help": meta["xmppd_received_bytes"][0]["help"]}
        # ... and ingested without errors: the target is up with no
        # error, it took every sample we render, and Prometheus's own
        # counters of refused samples are 0
        t = [t for t in p.api("targets")["activeTargets"]
             if t["labels"]["job"] == "xmppd"]
        assert len(t) == 1 and t[0]["health"] == "up" and \
            t[0]["lastError"] == "", t
        status, _, om, _ = http_get(s, "/metrics", PROMETHEUS_ACCEPT)
        assert status == 200
        nsamples = sum(1 for line in om.splitlines()
                       if line and not line.startswith("#"))
        p.wait_value('scrape_samples_scraped{job="xmppd"}', float(nsamples))
        assert p.value('scrape_samples_post_metric_relabeling'
                       '{job="xmppd"}') == float(nsamples)
        for refused in ("prometheus_target_scrapes_sample_duplicate_"
                        "timestamp_total",
                        "prometheus_target_scrapes_sample_out_of_order_total",
                        "prometheus_target_scrapes_sample_out_of_bounds_total",
                        "prometheus_target_scrapes_exceeded_sample_limit_total",
                        "prometheus_target_scrapes_exemplar_out_of_order_total"):
            p.wait_value('sum(%s{job="prometheus"})' % refused, 0.0)
        a.close()
        b.close()
        p.wait_value("sum(xmppd_sessions)", 0.0)


def test_counters_across_a_killed_worker():
    """kill -9 of a worker: no counter goes backwards in Prometheus
    (resets() over the whole run is 0), except the ones docs/METRICS.md
    says start again with the new worker, and those Prometheus sees as a
    reset."""
    # not the cluster's: shown only with cluster.servers set
    doc = {k: v for k, v in metrics_doc().items()
           if not k.startswith("xmppd_cluster_")}
    counters = sorted(n for n, (t, _) in doc.items() if t == "counter")
    restarting = {n for n in counters if "resets at a respawn" in doc[n][1]
                  or "starts again" in doc[n][1]}
    with Server(workers=2, users=USERS) as s, \
            Prometheus(s.http_port) as p:
        p.wait_value('up{job="xmppd"}', 1.0)
        a = Client(s.port)
        ja = a.login("juliet", "r0m30!", resource="balcony")
        b = Client(s.port)
        jb = b.login("romeo", "jul13t?", resource="garden")
        chat(a, ja, b, jb, N_MESSAGES)
        p.wait_value("sum(xmppd_sessions)", 2.0)
        p.wait_value('sum(xmppd_stanzas_received_total{kind="message"})',
                     float(N_MESSAGES))
        # the victim: a worker holding a session (it accepted at least
        # one connection)
        sessions = p.query("xmppd_sessions")
        slot = next(dict(k)["worker"] for k, v in sorted(
            sessions.items(), key=lambda kv: -kv[1]) if v > 0)
        before = {n: p.query('%s{worker="%s"}' % (n, slot))
                  for n in counters}
        victim = s.worker_pids()[int(slot)]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: not pid_alive(victim), what="worker gone")
        wait_for(lambda: (lambda st: st and st["workers"][int(slot)]["pid"]
                          not in (0, victim) and s.status_ok())(s.status()),
                 timeout=30, what="worker respawned")
        p.wait_value('xmppd_worker_restarts_total{worker="%s"}' % slot, 1.0)
        p.wait_value('xmppd_worker_up{worker="%s"}' % slot, 1.0)
        # the victim's sessions are gone, the other worker's stay
        p.wait_value('sum(xmppd_sessions)', 2.0 - sum(
            v for k, v in sessions.items() if dict(k)["worker"] == slot))
        # two more scrapes after the one that saw the respawn
        seen = p.value('timestamp(xmppd_worker_restarts_total{worker="%s"})'
                       % slot)
        wait_for(lambda: p.value('timestamp(xmppd_worker_up{worker="%s"})'
                                 % slot) >= seen + 2,
                 timeout=30, what="scrapes of the new worker")
        backwards = []
        for n in counters:
            r = p.query('resets(%s[10m])' % n)
            if not r:
                # a family shown only once seen (failures, bounces)
                assert not before[n] and "only series seen" in doc[n][1], n
                continue
            went_down = {dict(k).get("worker"): v for k, v in r.items()
                         if v > 0}
            if n in restarting:
                # the killed worker's count was not 0: its successor
                # starts lower, and Prometheus saw a reset
                if any(v > 0 for v in before[n].values()):
                    assert went_down.get(slot, 0) >= 1, (n, r, before[n])
            elif went_down:
                backwards.append((n, went_down))
        assert not backwards, "counters that went backwards after a " \
            "kill -9 (not documented as starting again): %s" % backwards
        a.close()
        b.close()


if __name__ == "__main__":
    run_tests([
        test_promtool_lints_clean,
        test_metrics_documented,
        test_prometheus_scrapes_openmetrics,
        test_counters_across_a_killed_worker,
    ])

"""Metrics and health, black box: what a monitoring system scrapes
(GET /metrics over HTTP, and `xmppctl stats --openmetrics` from the
master) parsed by prometheus_client's OpenMetrics and Prometheus text
parsers (Debian python3-prometheus-client); counters a user would see
move after logins, messages, a failed login, a killed worker and a
database going away; GET /health as a load balancer sees it.  Needs
XMPPD_TEST_PGCONN.
"""
import http.client
import json
import os
import re
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, Server, XMPPCTL, pid_alive, run_tests, wait_for  # noqa: E402
from test_pgdown import PgProxy, pg_target, proxied_server, running  # noqa: E402

from prometheus_client.openmetrics.parser import \
    text_string_to_metric_families as om_parse  # noqa: E402
from prometheus_client.parser import \
    text_string_to_metric_families as prom_parse  # noqa: E402

USERS = [("juliet@localhost", "r0m30!"), ("romeo@localhost", "jul13t?")]
N_MESSAGES = 25


OPENMETRICS_CT = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def openmetrics_text(s):
    r = s.ctl("stats", "--openmetrics")
    assert r.returncode == 0, r.stderr
    return r.stdout


def http_get(s, path, accept=None, host="127.0.0.1", timeout=10):
    """(status, content type, body text, headers) of one GET."""
    c = http.client.HTTPConnection(host, s.http_port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Accept": accept} if accept else {})
        r = c.getresponse()
        return (r.status, r.getheader("Content-Type"), r.read().decode(),
                r)
    finally:
        c.close()


def http_openmetrics(s):
    # what Prometheus sends
    status, ctype, body, _ = http_get(
        s, "/metrics", "application/openmetrics-text;version=1.0.0,"
        "application/openmetrics-text;version=0.0.1;q=0.75,"
        "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
    assert status == 200, (status, body)
    assert ctype == OPENMETRICS_CT, ctype
    return body


def scrape(s, via="http"):
    """{(sample name, frozenset(labels)): value} through the real parser;
    the families' types are checked on the way."""
    text = http_openmetrics(s) if via == "http" else openmetrics_text(s)
    assert text.endswith("# EOF\n"), text[-200:]
    out = {}
    types = {}
    for fam in om_parse(text):
        types[fam.name] = fam.type
        for smp in fam.samples:
            out[(smp.name, frozenset(smp.labels.items()))] = smp.value
    # the types a scraper relies on
    assert types["xmppd_logins"] == "counter", types
    assert types["xmppd_connections"] == "gauge", types
    assert types["xmppd_db_query_duration_seconds"] == "histogram", types
    assert types["xmppd_build"] == "info", types
    assert types["xmppd_received_bytes"] == "counter", types
    return out


def total(samples, name, **labels):
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items()
               if n == name and want <= set(ls))


def chat(a, ja, b, jb, n):
    # available first: a message to a bare JID with no available
    # resource is stored offline
    for c in (a, b):
        c.send("<presence/>")
    a.send("<iq type='get' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>")
    a.read_until("id='sync'")
    b.send("<iq type='get' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>")
    b.read_until("id='sync'")
    for i in range(n):
        a.send("<message to='%s' type='chat' id='m%d'><body>hi %d</body>"
               "</message>" % (jb.split("/")[0], i, i))
    for i in range(n):
        b.read_until("<body>hi %d</body>" % i)


def test_openmetrics_and_counters():
    with Server(workers=2, users=USERS) as s:
        before = scrape(s)
        a = Client(s.port)
        ja = a.login("juliet", "r0m30!", resource="balcony")
        b = Client(s.port)
        jb = b.login("romeo", "jul13t?", resource="garden",
                     mech="SCRAM-SHA-1")
        chat(a, ja, b, jb, N_MESSAGES)
        after = scrape(s)
        # the master's rendering (control socket) is the same function
        # over the same memory: the same counters
        master = scrape(s, via="ctl")
        assert total(master, "xmppd_logins_total") == \
            total(after, "xmppd_logins_total")

        def moved(name, **labels):
            return total(after, name, **labels) - total(before, name, **labels)

        assert moved("xmppd_logins_total", mechanism="SCRAM-SHA-256") >= 1
        assert moved("xmppd_logins_total", mechanism="SCRAM-SHA-1") >= 1
        assert moved("xmppd_stanzas_received_total", kind="message") \
            >= N_MESSAGES
        assert moved("xmppd_stanzas_sent_total", kind="message") \
            >= N_MESSAGES
        assert moved("xmppd_received_bytes_total") > 0
        assert total(after, "xmppd_sessions") == 2, after
        assert total(after, "xmppd_connections", authenticated="true",
                     tls_version="TLSv1.3", listener="starttls") == 2
        assert total(after, "xmppd_db_up") == 2
        assert moved("xmppd_db_query_duration_seconds_count") >= 2
        assert total(after, "xmppd_worker_up") == 2
        assert total(after, "xmppd_worker_resident_memory_bytes") > 0
        assert total(after, "xmppd_build_info") == 1
        # without an Accept naming OpenMetrics: Prometheus text 0.0.4
        status, ctype, body, _ = http_get(s, "/metrics")
        assert status == 200, (status, body)
        assert ctype.startswith("text/plain; version=0.0.4"), ctype
        assert "# EOF" not in body and "# UNIT" not in body
        prom = {}
        for fam in prom_parse(body):
            for smp in fam.samples:
                prom[(smp.name, frozenset(smp.labels.items()))] = smp.value
        assert total(prom, "xmppd_logins_total") >= \
            total(after, "xmppd_logins_total") >= 2, prom
        assert total(prom, "xmppd_stanzas_received_total",
                     kind="message") >= N_MESSAGES

        # the human and JSON forms show the same figures
        r = s.ctl("stats")
        assert r.returncode == 0, r.stderr
        assert re.search(r"^sessions\s+2\s", r.stdout, re.M), r.stdout
        # every family of /metrics has its line: logins by mechanism (one
        # each), CPU, database latency, the queues' refusals, the HTTP
        # front
        for row in (r"  SCRAM-SHA-1\s+1\s", r"  SCRAM-SHA-256\s+1\s",
                    r"CPU seconds\s+\d+\.\d\d\s",
                    r"database query time, mean \(ms\)\s+\d+\.\d\d\s",
                    r"database link downs\s+0\s",
                    r"queue refused frames\s+0\s",
                    r"HTTP connections\s+\d+\s",
                    r"HTTP responses\s+[1-9]\d*\s"):
            assert re.search("^" + row, r.stdout, re.M), (row, r.stdout)
        r = s.ctl("stats", "--json")
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        logins = sum(x["value"] for x in doc["samples"]
                     if x["name"] == "xmppd_logins_total")
        assert logins == total(after, "xmppd_logins_total") or \
            logins >= total(after, "xmppd_logins_total"), (logins, after)
        a.close()
        b.close()
        wait_for(lambda: total(scrape(s), "xmppd_sessions") == 0,
                 what="sessions gauge back to 0")
        wait_for(lambda: total(scrape(s), "xmppd_connections") == 0,
                 what="connections gauge back to 0")


def test_failed_login_by_mechanism_and_reason():
    with Server(workers=1, users=USERS) as s:
        c = Client(s.port)
        c.open()
        c.starttls()
        got = c.auth_plain("juliet", "wrong")
        assert "<not-authorized/>" in got, got
        c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
               "mechanism='X-NOPE'/>")
        c.read_until("<invalid-mechanism/>")
        m = scrape(s)
        assert total(m, "xmppd_login_failures_total", mechanism="PLAIN",
                     reason="not-authorized") == 1, m
        assert total(m, "xmppd_login_failures_total", mechanism="none",
                     reason="invalid-mechanism") == 1, m
        assert total(m, "xmppd_logins_total") == 0
        c.close()


def test_offline_and_bounces():
    """A message to an account with no session is stored, then delivered
    when it comes online; one to an account that does not exist bounces
    with <service-unavailable/>: each shows in its counter."""
    with Server(workers=1, users=USERS) as s:
        before = scrape(s)
        a = Client(s.port)
        a.login("juliet", "r0m30!", resource="balcony")
        a.send("<presence/>")
        a.send("<message to='romeo@localhost' type='chat' id='o1'>"
               "<body>while you were out</body></message>")
        a.send("<message to='nobody@localhost' type='chat' id='b1'>"
               "<body>hello?</body></message>")
        a.read_until("id='b1'[^>]*type='error'|type='error'[^>]*id='b1'")
        a.read_until("<service-unavailable")
        wait_for(lambda: total(scrape(s), "xmppd_offline_stored_messages_total")
                 > total(before, "xmppd_offline_stored_messages_total"),
                 what="offline_stored moved")
        b = Client(s.port)
        b.login("romeo", "jul13t?", resource="garden")
        b.send("<presence/>")
        b.read_until("<body>while you were out</body>")
        after = scrape(s)
        assert total(after, "xmppd_offline_delivered_messages_total") == \
            total(before, "xmppd_offline_delivered_messages_total") + 1
        assert total(after, "xmppd_stanza_errors_total",
                     condition="service-unavailable") >= \
            total(before, "xmppd_stanza_errors_total",
                  condition="service-unavailable") + 1, after
        r = s.ctl("stats")
        assert re.search(r"^stanza errors by worker, condition:\n"
                         r"  worker 0  service-unavailable\s+1$",
                         r.stdout, re.M), r.stdout
        a.close()
        b.close()


def health(s):
    """xmppctl health: exit 0 when ready, 1 with the reason when not."""
    r = s.ctl("health")
    out = r.stdout.strip()
    assert r.returncode == (0 if out == "ready" else 1), (r, out)
    assert out == "ready" or out.startswith("unavailable: "), out
    # the protocol's form, for the callers' checks
    return "health\tready\tready" if out == "ready" else \
        "health\tunavailable\t" + out[len("unavailable: "):]


def http_health(s, host="127.0.0.1", timeout=10):
    status, ctype, body, r = http_get(s, "/health", host=host,
                                      timeout=timeout)
    assert ctype.startswith("text/plain"), ctype
    assert r.getheader("Cache-Control") == "no-store"
    return status, body.strip()


class ControlConn:
    """One control-socket connection asking `health` again and again: a
    respawned worker is without its database link only for as long as a
    connect takes, shorter than starting xmppctl."""

    def __init__(self, s):
        import socket
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(s.control)
        self.f = self.sock.makefile("rb")
        self.sock.sendall(b"VERSION\txmppctl\t1\n")
        assert self.f.readline().startswith(b"VERSION\txmppd\t1")

    def health(self):
        self.sock.sendall(b"health\n")
        line = self.f.readline().decode()
        assert self.f.readline() == b"OK\n"
        return line.strip()

    def close(self):
        self.f.close()
        self.sock.close()


def test_killed_worker_health_and_restarts():
    with Server(workers=2, users=USERS) as s:
        wait_for(lambda: "\tready\t" in health(s), what="ready")
        assert http_health(s) == (200, "ready")
        before = scrape(s)
        # the master held (SIGSTOP) so that it cannot respawn: worker 0
        # answers GET /health for the whole server, and says so.  The
        # dead worker's listening socket stays open in the master (it
        # carries over to the respawned worker), so the kernel still
        # hands it some connections, which nobody accepts until then:
        # those are given up and tried again (a new source port).
        victim = s.worker_pids()[1]

        def health_503():
            try:
                r = http_health(s, timeout=0.5)
            except (TimeoutError, OSError):
                return None
            return r if r[0] == 503 else None
        os.kill(s.master_pid, signal.SIGSTOP)
        try:
            os.kill(victim, signal.SIGKILL)
            status, body = wait_for(health_503, what="/health 503")
            assert body == "worker 1 is restarting", body
        finally:
            os.kill(s.master_pid, signal.SIGCONT)
        wait_for(lambda: http_health(s)[0] == 200, timeout=20,
                 what="ready again after the respawn")
        mid = scrape(s)
        assert total(mid, "xmppd_worker_restarts_total", worker="1") == \
            total(before, "xmppd_worker_restarts_total", worker="1") + 1
        before = mid
        victim = s.worker_pids()[1]
        cc = ControlConn(s)
        os.kill(victim, signal.SIGKILL)
        # the master respawns within its back-off; until the new worker
        # has its database link /health names what is missing
        seen = wait_for(lambda: (lambda h: h if "unavailable" in h else None)(
            cc.health()), what="health unavailable", step=0)
        cc.close()
        assert re.search(r"worker 1 (is restarting|is starting|has no "
                         r"database link)", seen), seen
        wait_for(lambda: "\tready\t" in health(s), timeout=20,
                 what="ready again after the respawn")
        after = scrape(s)
        assert total(after, "xmppd_worker_restarts_total", worker="1") == \
            total(before, "xmppd_worker_restarts_total", worker="1") + 1
        assert not pid_alive(victim)


def test_database_down_health():
    proxy = PgProxy(pg_target()).start()
    try:
        s = proxied_server(proxy, workers=2, users=USERS)
        with running(s):
            wait_for(lambda: "\tready\t" in health(s), what="ready")
            proxy.stop()
            h = wait_for(lambda: (lambda h: h if "unavailable" in h
                                  else None)(health(s)),
                         what="health unavailable")
            assert "database" in h, h
            status, body = http_health(s)
            assert status == 503, (status, body)
            assert re.fullmatch(r"worker [01] has no database link: .+",
                                body), body
            # for scripts: one JSON document, exit status 1
            r = s.ctl("--json", "health")
            doc = json.loads(r.stdout)
            assert r.returncode == 1 and doc["ready"] is False, (r, doc)
            assert re.fullmatch(r"worker [01] has no database link: .+",
                                doc["reason"]), doc
            m = scrape(s)
            assert total(m, "xmppd_db_up") < 2, m
            assert total(m, "xmppd_db_link_downs_total") >= 1, m
            proxy.start()
            wait_for(lambda: "\tready\t" in health(s), timeout=30,
                     what="ready after the database is back")
            assert http_health(s) == (200, "ready")
            r = s.ctl("health", "--json")
            assert r.returncode == 0, r
            assert json.loads(r.stdout) == {"ready": True,
                                            "reason": "ready"}, r.stdout
    finally:
        proxy.close()


def test_worker_without_tls_not_ready():
    """A worker that comes up without its certificate (the file gone
    when it was respawned) refuses every login while tls.required is
    yes: /health says so instead of ready, and is ready again once a
    worker has its certificate."""
    import shutil
    import tempfile
    from harness import test_certificate
    d = tempfile.mkdtemp(prefix="xmppd-tls-")
    try:
        cert, key = test_certificate()
        mine = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        shutil.copy(cert, mine[0])
        shutil.copy(key, mine[1])
        with Server(workers=2, users=USERS,
                    overrides={"tls.certificate": mine[0],
                               "tls.key": mine[1]}) as s:
            wait_for(lambda: http_health(s) == (200, "ready"), what="ready")
            os.rename(mine[0], mine[0] + ".away")
            victim = s.worker_pids()[1]
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: victim not in s.worker_pids() and
                     all(p > 0 for p in s.worker_pids()),
                     timeout=20, what="worker 1 respawned")
            # (first "worker 1 is starting", 503 too, on a loaded machine)
            status, body = wait_for(
                lambda: (lambda h: h if h[0] == 503 and
                         h[1] != "worker 1 is starting" else None)(
                    http_health(s)), what="/health 503, worker 1 up")
            assert body == "worker 1 has no TLS certificate loaded " \
                "(tls.certificate; its log says why)", body
            assert "\tunavailable\tworker 1 has no TLS" in health(s)
            # the file back and the worker respawned: ready again
            os.rename(mine[0] + ".away", mine[0])
            victim = s.worker_pids()[1]
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: http_health(s) == (200, "ready"), timeout=20,
                     what="ready with the certificate back")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_systemd_watchdog():
    """With WATCHDOG_USEC set (systemd's WatchdogSec), the master sends
    WATCHDOG=1 to NOTIFY_SOCKET at half the interval, and goes on doing so
    while a worker is stopped (SIGSTOP): a stuck worker is the master's
    business, not a reason for systemd to restart the service."""
    import socket
    import tempfile
    d = tempfile.mkdtemp(prefix="xmppd-notify-")
    path = os.path.join(d, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    old = {k: os.environ.get(k) for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    os.environ["NOTIFY_SOCKET"] = path
    os.environ["WATCHDOG_USEC"] = "400000"      # 0.4 s: one every 0.2 s
    try:
        with Server(workers=1) as s:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

            def next_watchdog():
                while True:
                    msg = sock.recv(256)
                    if msg == b"WATCHDOG=1":
                        return msg
            next_watchdog()
            w = s.worker_pids()[0]
            os.kill(w, signal.SIGSTOP)
            try:
                for _ in range(3):
                    next_watchdog()
            finally:
                os.kill(w, signal.SIGCONT)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        sock.close()
        os.unlink(path)
        os.rmdir(d)


def test_health_for_anyone_metrics_for_admins():
    """A load balancer is rarely on an admin address: /health answers
    any peer of the listener, /metrics only the admin addresses."""
    with Server(workers=1, users=USERS,
                overrides={"http.addresses": "127.0.0.1 ::1",
                           "http.admin_addresses": "::1/128"}) as s:
        wait_for(lambda: http_health(s)[0] == 200, what="ready")
        assert http_health(s, host="127.0.0.1") == (200, "ready")
        status, _, _, _ = http_get(s, "/metrics", host="127.0.0.1")
        assert status == 403
        status, _, body, _ = http_get(s, "/metrics", host="::1")
        assert status == 200 and "xmppd_build_info" in body


def test_http_front_metrics():
    """The HTTP front counts itself: open HTTP connections of each
    worker (a gauge) and responses by status code, bad requests
    answered by the parser included."""
    import socket
    with Server(workers=1, users=USERS) as s:
        before = scrape(s)
        # one connection kept open after a 404
        held = http.client.HTTPConnection("127.0.0.1", s.http_port,
                                          timeout=10)
        held.request("GET", "/no-such-page")
        r = held.getresponse()
        r.read()
        assert r.status == 404
        # a request line no parser accepts: 400, and the connection ends
        raw = socket.create_connection(("127.0.0.1", s.http_port),
                                       timeout=10)
        raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        got = b""
        while True:
            d = raw.recv(4096)
            if not d:
                break
            got += d
        raw.close()
        assert got.startswith(b"HTTP/1.1 400 "), got
        after = scrape(s)

        def moved(code):
            return (total(after, "xmppd_http_responses_total", code=code) -
                    total(before, "xmppd_http_responses_total", code=code))
        assert moved("404") == 1, moved("404")
        assert moved("400") == 1, moved("400")
        # the scrape before this one
        assert moved("200") == 1, moved("200")
        # the held connection and the scraper's own (the earlier
        # scrapers' connections end when the worker sees them closed)
        wait_for(lambda: total(scrape(s), "xmppd_http_connections",
                               worker="0") == 2,
                 what="the held HTTP connection and the scraper's")
        held.close()
        wait_for(lambda: total(scrape(s), "xmppd_http_connections",
                               worker="0") == 1,
                 what="the held HTTP connection no longer counted")


def test_unknown_stats_argument():
    with Server(workers=1) as s:
        r = s.ctl("stats", "--bogus")
        assert r.returncode == 2, r
        assert "unknown argument '--bogus'" in r.stderr, r.stderr


if __name__ == "__main__":
    run_tests([
        test_openmetrics_and_counters,
        test_failed_login_by_mechanism_and_reason,
        test_offline_and_bounces,
        test_killed_worker_health_and_restarts,
        test_database_down_health,
        test_worker_without_tls_not_ready,
        test_systemd_watchdog,
        test_health_for_anyone_metrics_for_admins,
        test_http_front_metrics,
        test_unknown_stats_argument,
    ])

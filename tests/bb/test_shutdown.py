"""Stopping a server that holds many sessions, black box.

SIGTERM with a few hundred available sessions whose rosters are full of
each other: every stream gets <system-shutdown/>, the server exits
promptly (no SIGKILL escalation), and the log says it in a few summary
lines, not one line per session (at 100,000 sessions that was 100,000
lines and a missed shutdown_timeout).  Sessions come from xmppd-bench
--idle-hold; needs XMPPD_TEST_PGCONN.
"""
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Client, pid_alive, run_tests, stream_error_re,  # noqa: E402
                     wait_for)
from test_bench import BENCH, PASSWORD, bench_server  # noqa: E402

SESSIONS = 400
CONTACTS = 10       # each account is subscribed both ways to 2 * CONTACTS others
EXIT_LIMIT = 20.0   # seconds: generous; a stuck worker would need SIGKILL


def give_rosters(s, n, k):
    """user i <-> user i +- 1..k (mod n), subscription both."""
    s.db.psql("INSERT INTO roster_items (account_id, contact, subscription) "
              "SELECT a.id, 'user' || ((substr(a.username, 5)::int - 1 + d + %d) "
              "%% %d + 1) || '@localhost', 'both' FROM accounts a, "
              "generate_series(-%d, %d) d WHERE d <> 0"
              % (n, n, k, k), s.db.conninfo)


def drain(c, quiet=0.5):
    """Read until the server has said nothing for `quiet` seconds."""
    c.buf = b""
    while not c.is_closed(quiet) and c.buf:
        c.buf = b""


def test_sigterm_many_sessions():
    s = bench_server(SESSIONS, workers=2,
                     overrides={"shutdown_timeout": "30s"})
    bench = None
    try:
        give_rosters(s, SESSIONS, CONTACTS)
        bench = subprocess.Popen(
            [BENCH, "--host", "127.0.0.1", "--port", str(s.port),
             "--domain", "localhost", "--password", PASSWORD,
             "-n", str(SESSIONS), "-r", "0", "--idle-hold", "120"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # One more resource of user1, watched from here: its contacts
        # are all online.
        me = Client(s.port, timeout=10)
        me.login("user1", PASSWORD, resource="watch")
        me.send("<presence/>")
        wait_for(lambda: s.log_text().count(": bound user") >= SESSIONS + 1,
                 timeout=60, what="%d sessions bound" % (SESSIONS + 1))
        time.sleep(1.0)     # initial presence broadcasts settle
        drain(me)
        mark = len(s.log_text())
        t0 = time.monotonic()
        os.kill(s.master_pid, signal.SIGTERM)
        wait_for(lambda: not pid_alive(s.master_pid), timeout=EXIT_LIMIT,
                 what="master exit")
        took = time.monotonic() - t0
        # The stream ends with <system-shutdown/>; no contact's
        # unavailable comes first (they were all disconnected too).
        rest = me.read_all_until_close()
        assert re.search(stream_error_re("system-shutdown") + "$", rest), rest
        assert "type='unavailable'" not in rest, rest
        s.proc.wait(timeout=5)
        assert s.proc.returncode == 0, s.proc.returncode
        log = s.log_text()[mark:]
        assert "SIGKILL" not in log, log[-3000:]
        # Nothing per session: a few lines per process at most.
        lines = [ln for ln in log.splitlines() if " debug: " not in ln]
        assert len(lines) < 30, "%d lines after SIGTERM:\n%s" % (
            len(lines), "\n".join(lines[:40]))
        for bad in ("not broadcast", "system-shutdown", "broadcasting unavailable"):
            n = log.count(bad)
            assert n <= 2, "%d lines with %r" % (n, bad)
        print("stopped %d sessions in %.2fs; the log said:\n%s"
              % (SESSIONS + 1, took, "\n".join(lines)))
    finally:
        if bench is not None and bench.poll() is None:
            bench.kill()
            bench.wait(timeout=10)
        s.stop()
        s.check_stderr()


if __name__ == "__main__":
    run_tests([test_sigterm_many_sessions])

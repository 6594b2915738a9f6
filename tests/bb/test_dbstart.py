"""Logins in the first moments after xmppd starts, black box.

A worker's PostgreSQL link needs a few round trips (connect, startup,
the schema check) before it is up.  A login that arrives meanwhile must
wait for it and succeed, not get <temporary-auth-failure/>: that answer
is for a database known to be down (tests/bb/test_pgdown.py).  Needs
XMPPD_TEST_PGCONN.
"""
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, Server, run_tests  # noqa: E402
from test_pgdown import PgProxy, pg_target, proxied_server, running  # noqa: E402

USERS = [("juliet@localhost", "r0m30!")]
STALL = 1.5         # seconds the database link is held up in the slow test


def first_client(s, timeout=10.0):
    """A connection made as soon as the server's port accepts one."""
    deadline = time.monotonic() + 15
    while True:
        try:
            return Client(s.port, timeout=timeout)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise AssertionError("the port never accepted") from None
            time.sleep(0.002)


def login_all(s, clients, mechs):
    """Log every client in at once (one thread each); return the answers
    to <auth/> (or the exception text)."""
    got = [None] * len(clients)

    def one(i):
        c = clients[i]
        try:
            c.open()
            c.starttls()
            if mechs[i] == "PLAIN":
                got[i] = c.auth_plain("juliet", "r0m30!")
            else:
                got[i] = c.auth_scram("juliet", "r0m30!")
            if got[i].startswith("<success"):
                feats = c.open()
                assert "urn:ietf:params:xml:ns:xmpp-bind" in feats, feats
                c.bind("r%d" % i)
        except Exception as e:      # reported below, with the others
            got[i] = "%s: %s" % (type(e).__name__, e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return got


def start_now(s):
    """Start without waiting for anything (harness.Server.start() would
    wait for every 'database link up')."""
    s.start(wait=False)
    s.master_pid = s.proc.pid


def start_and_log_in_four(s):
    """Start s and log in four clients (SCRAM and PLAIN) the moment the
    port accepts; every one must succeed."""
    start_now(s)
    clients = [first_client(s)]
    clients += [Client(s.port, timeout=10) for _ in range(3)]
    got = login_all(s, clients, ["SCRAM-SHA-256", "PLAIN"] * 2)
    for c in clients:
        c.close()
    assert all(g.startswith("<success") for g in got), got


def test_login_right_after_start():
    """The first logins, sent as soon as the port accepts, succeed."""
    s = Server(workers=2, users=USERS)
    with running(s, start=False):
        start_and_log_in_four(s)
        assert "SASL failure" not in s.log_text()


def connected_before_link_up(log):
    """Workers that logged a client connection before their database
    link came up."""
    early = set()
    up = set()
    for m in re.finditer(r"\bw(\d+) (?:debug: c\d+ 127\.0\.0\.1:\d+: "
                         r"(connected)|info: database link up)", log):
        w = int(m.group(1))
        if m.group(2) and w not in up:
            early.add(w)
        elif not m.group(2):
            up.add(w)
    return early


def test_login_waits_for_slow_db_link():
    """The database is slow to accept connections (a proxy holds each
    new one for STALL seconds): logins that reach a worker before its
    link is up wait and then succeed; nothing is refused.  Deterministic
    version of the test above."""
    proxy = PgProxy(pg_target()).start()
    try:
        s = proxied_server(proxy, workers=2, users=USERS)
        with running(s, start=False):
            s.ctl_config("db", "migrate")
            s.add_user(*USERS[0])
            s._migrated = True      # harness: do not migrate again
            proxy.delay = STALL     # the master's check and each link
            start_and_log_in_four(s)
            log = s.log_text()
            assert "SASL failure" not in log, log[-3000:]
            # the test did what it says: some login reached a worker
            # before that worker's link was up
            assert connected_before_link_up(log), log[-3000:]
    finally:
        proxy.close()


if __name__ == "__main__":
    run_tests([test_login_right_after_start, test_login_waits_for_slow_db_link])

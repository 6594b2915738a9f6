"""An offline backlog larger than c2s.max_output_bytes arrives whole in
one login (issue 9, item 4): delivery is paced, a batch at a time, the
next one once the connection's output has drained, oldest first, each
stored message once, and the rows are removed once written.  A client
that stops reading in the middle is cut off by the output bound without
losing any of it: what it was not written stays stored, in its place,
and the next login gets the rest, none twice.  And the queries waiting
for a hung PostgreSQL are bounded in bytes (db.max_queue_bytes): a
message to store past the bound is bounced with <resource-constraint/>
(wait) at once, every message is stored or bounced, none vanishes.
Needs XMPPD_TEST_PGCONN.

Bounds, not timings: every wait is bounded, no assertion is about time.
"""
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, Server, stream_error_re, wait_for, run_tests  # noqa: E402
from imlib import PW, USERS  # noqa: E402
from test_pgdown import PgProxy, pg_target, proxied_server, running  # noqa: E402

BODY = 200 * 1000           # ~200 KB per message, under max_stanza_size
N = 30                      # 6 MB stored: 90 times the output bound
COUNT = "SELECT count(*) FROM offline_messages"
_MSG = re.compile(rb"<message [^>]*id='([ml]\d+)'[^>]*>.*?</message>", re.S)


def sql(s, text):
    return s.db.psql(text, s.db.conninfo).strip()


def message(to, mid, body=BODY):
    return ("<message to='%s' id='%s' type='chat'><body>%s</body></message>"
            % (to, mid, ("%s " % mid).ljust(body, "x")))


def plain_login(c, user, resource):
    c.open()
    got = c.auth_scram(user, PW[user])
    assert got.startswith("<success"), got
    c.open()
    return c.bind(resource)


def slow_client(port):
    """A client whose receive buffer is small from the start (set before
    connect, so the window stays small): the server's side fills soon."""
    c = Client.__new__(Client)
    c.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.sock.settimeout(5.0)
    c.sock.connect(("127.0.0.1", port))
    c.buf = b""
    c.timeout = 5.0
    return c


def sync(c, jid, iq_id):
    """An IQ answered only after everything sent before it was routed."""
    c.send("<iq to='localhost' id='%s' type='get'><ping xmlns='urn:xmpp:ping'/>"
           "</iq>" % iq_id)
    c.read_until("<iq from='localhost' id='%s' to='%s' type='result'/>"
                 % (iq_id, re.escape(jid)), timeout=60)


def store_backlog(s, n=N, body=BODY):
    """romeo sends n messages to juliet, who is offline."""
    r = Client(s.port)
    rj = plain_login(r, "romeo", "snd")
    for i in range(n):
        r.send(message("juliet@localhost", "m%d" % i, body))
    sync(r, rj, "stored")
    wait_for(lambda: sql(s, COUNT) == str(n), timeout=60, what="backlog stored")
    return r, rj


def read_session(c, want):
    """Read until `want` whole messages arrived, the stream closed or
    nothing came for 10 s; the ids in order."""
    quiet_since = time.monotonic()
    while len(_MSG.findall(c.buf)) < want and \
            time.monotonic() - quiet_since < 10:
        size = len(c.buf)
        if c.is_closed(timeout=0.5):
            break
        if len(c.buf) != size:
            quiet_since = time.monotonic()
    return [m.decode() for m in _MSG.findall(c.buf)]


def test_backlog_in_one_login():
    """A client that reads normally gets all N stored messages in one
    login, in order, each once, with its roster answered meanwhile; the
    table is empty afterwards."""
    with Server(workers=1, users=USERS,
                overrides={"c2s.max_output_bytes": "64K",
                           "tls.required": "no"}) as s:
        r, _ = store_backlog(s)
        j = Client(s.port)
        jid = plain_login(j, "juliet", "balcony")
        j.send("<presence/><iq type='get' id='ro'><query xmlns='jabber:iq:roster'/></iq>")
        ids = read_session(j, N)
        assert ids == ["m%d" % i for i in range(N)], ids
        assert re.search(rb"<iq [^>]*id='ro'[^>]*type='result'", j.buf), \
            "roster not answered"
        assert not re.search(stream_error_re("policy-violation").encode(), j.buf), \
            "closed for output"
        assert j.buf.count(b"urn:xmpp:delay") == N, "one <delay/> per message"
        wait_for(lambda: sql(s, COUNT) == "0", timeout=30, what="rows removed")
        # still open and working
        sync(j, jid, "alive")
        assert re.search(r"c\d+: \d+ offline messages delivered", s.log_text())
        j.close()
        r.close()


def stopped_reader(n, body, cycles=1, live_body=None):
    """A client that stops reading after a few stored messages is closed
    by the output bound once more comes for it; what it was not written
    stays stored, in order, and a later login gets the rest: every
    message arrives exactly once over the logins.  Up to `cycles` such
    logins (until one had stored messages taken back), then one that
    reads all.  Returns how many stored messages were taken back."""
    with Server(workers=1, users=USERS,
                overrides={"c2s.max_output_bytes": "64K",
                           # the kernel's autotuning would let a client
                           # that never reads take megabytes
                           "c2s.send_buffer": "16K",
                           "im.offline_quota": str(n + 1000),
                           "tls.required": "no"}) as s:
        r, rj = store_backlog(s, n, body)
        every, live = [], 0

        def kept():
            return sum(int(x) for x in re.findall(
                r"(\d+) offline messages left stored", s.log_text()))

        for cycle in range(cycles):
            j = slow_client(s.port)
            jid = plain_login(j, "juliet", "slow%d" % cycle)
            before = int(sql(s, COUNT))
            j.send("<presence/>")
            read = len(read_session(j, 3))
            assert read >= 3
            # it stops reading: delivery stops once the kernel's buffers
            # are full (the count of rows left stops falling) ...
            left, same = sql(s, COUNT), 0
            for _ in range(600):
                if same >= 10:
                    break
                time.sleep(0.1)
                now = sql(s, COUNT)
                same, left = (same + 1, left) if now == left else (0, now)
            assert int(left) > 0, "all delivered before the client stopped"
            # c2s.send_buffer bounds what the kernel took for it
            # (autotuning would have let it take megabytes)
            assert (before - int(left) - read) * body <= 512 * 1024, \
                "%d messages taken by the kernel" % (before - int(left) - read)
            # ... then live messages for it, until the output bound
            # closes it
            closes = s.log_text().count("bytes of output unread")
            for _ in range(1000):
                if s.log_text().count("bytes of output unread") > closes:
                    break
                r.send(message(jid, "l%d" % live, live_body or body))
                live += 1
                sync(r, rj, "sent%d" % live)
            data = j.read_all_until_close(timeout=60).encode()
            every += [m.decode() for m in _MSG.findall(data)]
            assert re.search(stream_error_re("policy-violation").encode(), data), \
                "not closed for output: %r" % data[-300:]
            j.close()
            if kept() > 0:
                break
        # the next login: the rest
        k = Client(s.port)
        plain_login(k, "juliet", "back")
        k.send("<presence/>")
        rest = read_session(k, n + live - len(every))
        print("  %d in %d cut-off logins, %d in the last; %d stored messages "
              "taken back unwritten" % (len(every), cycle + 1, len(rest), kept()))
        every += rest
        dup = sorted(set(x for x in every if every.count(x) > 1))
        assert not dup, "delivered twice: %s" % dup
        missing = sorted(set(["m%d" % i for i in range(n)] +
                             ["l%d" % i for i in range(live)]) - set(every))
        assert not missing, "lost: %s" % missing
        stored = [x for x in every if x.startswith("m")]
        assert stored == ["m%d" % i for i in range(n)], "out of order: %s" % stored
        wait_for(lambda: sql(s, COUNT) == "0", timeout=30, what="rows removed")
        k.close()
        r.close()
        return kept()


def test_stopped_reader_keeps_the_rest():
    """Large stored messages: one in the output at a time."""
    stopped_reader(N, BODY)


def test_stopped_reader_small_messages():
    """Small stored messages: several whole ones wait in the output when
    it overflows; they are taken back and stay stored, in their place
    (not stored again after the rest)."""
    # Whether whole stored messages wait in the output at the overflow
    # depends on how the paced fetches and the live messages interleave
    # (the worker's database link also carries the archive's batches,
    # and the kernel's send buffer still grows now and then): one live
    # message larger than the output bound overflows it at once, while
    # the batch is still waiting; up to six cut-off logins until one
    # had some.
    assert stopped_reader(3000, 4000, cycles=6) > 0, \
        "none was taken back"


def test_available_again_gets_new_ones():
    """A session that goes unavailable and available again gets what
    was stored meanwhile (a second delivery in the same session), and
    not again what it already had."""
    with Server(workers=1, users=USERS, overrides={"tls.required": "no"}) as s:
        r = Client(s.port)
        rj = plain_login(r, "romeo", "snd")
        r.send(message("juliet@localhost", "m0", 100))
        sync(r, rj, "s0")
        wait_for(lambda: sql(s, COUNT) == "1", what="m0 stored")
        j = Client(s.port)
        jid = plain_login(j, "juliet", "balcony")
        j.send("<presence/>")
        j.read_until("<message [^>]*id='m0'")
        wait_for(lambda: sql(s, COUNT) == "0", what="m0 removed")
        j.send("<presence type='unavailable'/>")
        sync(j, jid, "gone")
        r.send(message("juliet@localhost", "m1", 100))
        sync(r, rj, "s1")
        wait_for(lambda: sql(s, COUNT) == "1", what="m1 stored")
        j.buf = b""
        j.send("<presence/>")
        got = j.read_until("<message [^>]*id='m[0-9]+'")
        assert "id='m1'" in got, got
        wait_for(lambda: sql(s, COUNT) == "0", what="m1 removed")
        sync(j, jid, "end")
        assert b"id='m0'" not in j.buf, "m0 again"
        j.close()
        r.close()


_BOUNCE = re.compile(rb"<message [^>]*id='(m\d+)'[^>]*type='error'[^>]*>.*?"
                     rb"<error type='wait'><([a-z-]+) xmlns='urn:ietf:params:"
                     rb"xml:ns:xmpp-stanzas'/>.*?</message>", re.S)
STORED_IDS = ("SELECT substring(stanza from 'id=''(m[0-9]+)''') "
              "FROM offline_messages")


def test_db_queue_bounded_in_bytes():
    """PostgreSQL hangs while n large messages come for an offline account:
    at most db.max_queue_bytes of them wait for it, the others are
    bounced at once with <resource-constraint/> (wait, RFC 6120
    8.3.3.18); once it answers again each message is stored or bounced,
    exactly once."""
    n, bound = 30, 1 << 20
    proxy = PgProxy(pg_target()).start()
    try:
        s = proxied_server(proxy, workers=1, users=USERS,
                           overrides={"db.max_queue_bytes": "1M",
                                      "tls.required": "no"})
        with running(s):
            r = Client(s.port, timeout=10)
            rj = plain_login(r, "romeo", "snd")
            proxy.freeze()
            for i in range(n):
                r.send(message("juliet@localhost", "m%d" % i))
            # a ping, answered by the server (no database) after it routed
            # all of them: the refusals come before its answer
            r.send("<iq to='localhost' id='routed' type='get'>"
                   "<ping xmlns='urn:xmpp:ping'/></iq>")
            for _ in range(600):
                if b"id='routed'" in r.buf:
                    break
                try:
                    r.sock.settimeout(0.1)
                    r.buf += r.sock.recv(1 << 20)
                except socket.timeout:
                    pass
            refused = [m.decode() for m, cond in _BOUNCE.findall(r.buf)
                       if cond == b"resource-constraint"]
            proxy.thaw()
            assert refused, "nothing refused: the queue is not bounded"
            # a message waits with its copy: at most bound / size of them
            assert n - len(refused) <= bound // BODY + 1, refused

            def accounted():
                stored = sql(s, STORED_IDS).split()
                try:
                    r.sock.settimeout(0.2)
                    r.buf += r.sock.recv(1 << 20)
                except socket.timeout:
                    pass
                bounced = [m.decode() for m, _ in _BOUNCE.findall(r.buf)]
                return stored, bounced

            for _ in range(300):
                stored, bounced = accounted()
                if len(stored) + len(bounced) >= n:
                    break
                time.sleep(0.1)
            every = stored + bounced
            dup = sorted(set(x for x in every if every.count(x) > 1))
            assert not dup, "stored and bounced, or twice: %s" % dup
            missing = set("m%d" % i for i in range(n)) - set(every)
            assert not missing, "neither stored nor bounced: %s" % sorted(missing)
            assert re.search(r"warn: database queue full: \d+ bytes waiting for "
                             r"PostgreSQL \(db.max_queue_bytes is %d\)" % bound,
                             s.log_text())
            print("  %d stored, %d bounced (%d at once: resource-constraint)"
                  % (len(stored), len(bounced), len(refused)))
            r.close()
    finally:
        proxy.close()


if __name__ == "__main__":
    run_tests([test_backlog_in_one_login, test_stopped_reader_keeps_the_rest,
               test_stopped_reader_small_messages,
               test_available_again_gets_new_ones,
               test_db_queue_bounded_in_bytes])

"""A recipient that does not read, and a worker that does not drain its
queue, cost a bounded number of bytes, and every message sent to them is
accounted for exactly once: delivered (the recipient read it whole),
stored offline (the account gets it at its next login) or bounced to
its sender with an error carrying the message's id.

- slow reader, sender on another worker and on the same worker: the
  recipient's output passes c2s.max_output_bytes; its stream ends with
  <policy-violation/> and what it left unread is stored offline.
- stopped worker: the sender's outbox to it passes queue.outbox_bytes;
  messages past the bound bounce with <resource-constraint/> (wait), and
  the sender's worker does not grow with what it was asked to send.

Bounds, not timings: every wait is bounded, no assertion is about time.
"""
import os
import re
import signal
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, Server, stream_error_re, wait_for, run_tests  # noqa: E402
from imlib import IM, PW, USERS, login, connect_on  # noqa: E402

# Freed memory must leave the process's accounting soon for RSS to mean
# anything: a small ASan quarantine (the default holds 256 MB of it).
os.environ["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "") +
                              ":quarantine_size_mb=4").lstrip(":")

BODY = 200 * 1000           # ~200 KB per message, under max_stanza_size
N = 80                      # 16 MB in all
N_STOPPED = 120             # 24 MB: more than the kernel holds for a queue
# What a sender's worker may grow by: queue.outbox_bytes (1M here), the
# archive rows on their way to PostgreSQL (mam.queue_bytes, 1M here: each
# message is archived for its sender and its recipient), the queries the
# database link holds while PostgreSQL is slow (db.max_queue_bytes, 2M
# here: under a loaded machine the archive's inserts waited there, 16 MB
# by default), a few stanzas being parsed and routed, the 4 MB
# quarantine and allocator slack.  Without the byte bounds the outbox
# alone held 16 MB or more, and the archive's batches as much again.
MEM_BOUND_KB = 14 * 1024
ARCHIVE_BOUND = "1M"
DB_QUEUE_BOUND = "2M"
_MSG = re.compile(r"<message [^>]*id='(m\d+)'[^>]*>.*?</message>", re.S)
_BOUNCE = re.compile(r"<message [^>]*id='(m\d+)'[^>]*type='error'[^>]*>"
                     r".*?</message>", re.S)


def vmrss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def message(to, i):
    return ("<message to='%s' id='m%d' type='chat'><body>%s</body></message>"
            % (to, i, ("%d " % i).ljust(BODY, "x")))


def send_all(sender, to, n):
    """Send n large messages, then an IQ the server answers only after it
    has routed all of them (one stream is handled in order)."""
    for i in range(n):
        sender.c.send(message(to, i))
    sender.send("<iq to='localhost' id='sync' type='get'><ping xmlns='urn:xmpp:ping'/></iq>")
    sender.expect("<iq from='localhost' id='sync' to='%s' type='result'/>" % sender.jid,
                  timeout=60)


def bounced(sender, cond, etype):
    """Ids of the error replies the sender has (each once)."""
    ids = []
    rest = []
    for seq, st in sender.q:
        m = _BOUNCE.fullmatch(st)
        if m and ("<error type='%s'><%s " % (etype, cond)) in st:
            ids.append(m.group(1))
        else:
            rest.append((seq, st))
    sender.q = rest
    return ids


def plain_login(c, user, resource):
    """SASL and bind without TLS (tls.required = no): what the server
    writes goes to the socket as it is, none of it held in TLS records."""
    c.open()
    got = c.auth_scram(user, PW[user])
    assert got.startswith("<success"), got
    c.open()
    return c.bind(resource)


def slow_reader(same_worker):
    with Server(workers=2, users=USERS,
                overrides={"c2s.max_output_bytes": "256K",
                           "queue.outbox_bytes": "1M",
                           "mam.queue_bytes": ARCHIVE_BOUND,
                           "db.max_queue_bytes": DB_QUEUE_BOUND,
                           "tls.required": "no"}) as s:
        # the recipient: logged in, then it stops reading (a small
        # receive buffer, so that the server's side fills sooner)
        jc = connect_on(s, 0 if same_worker else 1)
        jc.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        jid = plain_login(jc, "juliet", "slow")
        assert jid == "juliet@localhost/slow", jid
        r = login(s, "romeo", "snd", worker=0)
        pid = s.worker_pids()[0]
        before = vmrss_kb(pid)
        send_all(r, jid, N)
        # the slow reader's session ends: romeo's is the only one left
        wait_for(lambda: s.status()["master"]["sessions"] == 1, timeout=60,
                 what="the slow reader's session gone")
        grown = vmrss_kb(pid) - before
        # what it had been sent before the close, read now
        data = jc.read_all_until_close(timeout=60)
        ended_well = re.search(stream_error_re("policy-violation"), data)
        delivered = _MSG.findall(data)
        # The rest: offline, fetched at the next login (or live, if
        # still in flight).  A backlog larger than the bound ends that
        # session the same way, what it did not read is stored again,
        # and the next login gets the rest: log in until all is there.
        later = []
        ids_bounced = []

        def collect_bounces():
            r._fill(time.monotonic() + 0.05)
            r._split()
            ids_bounced.extend(bounced(r, "recipient-unavailable", "cancel") +
                               bounced(r, "service-unavailable", "cancel") +
                               bounced(r, "resource-constraint", "wait"))

        def total():
            return len(delivered) + len(later) + len(ids_bounced)

        for attempt in range(40):
            if total() >= N:
                break
            c = Client(s.port)
            plain_login(c, "juliet", "back%d" % attempt)
            c.send("<presence/>")
            # until closed, everything is there, or nothing comes for 5 s
            closed = False
            quiet_since = time.monotonic()
            while not closed and total() + c.buf.count(b"</message>") < N \
                    and time.monotonic() - quiet_since < 5:
                size = len(c.buf)
                closed = c.is_closed(timeout=0.2)
                if len(c.buf) != size:
                    quiet_since = time.monotonic()
                collect_bounces()
            if not closed:
                c.send("</stream:stream>")
            got = c.read_all_until_close(timeout=30)
            c.close()
            new = _MSG.findall(got)
            later.extend(new)
            if not new and not closed:
                break       # nothing more is stored
        collect_bounces()
        every = delivered + later + ids_bounced
        missing = sorted(set("m%d" % i for i in range(N)) - set(every),
                         key=lambda x: int(x[1:]))
        dup = sorted(set(x for x in every if every.count(x) > 1))
        print("  %s worker: %d read before the close, %d later (offline), "
              "%d bounced; sender's worker grew %d KB"
              % ("same" if same_worker else "other", len(delivered),
                 len(later), len(ids_bounced), grown))
        assert not missing, "neither delivered, stored nor bounced: %s" % missing
        assert not dup, "delivered twice: %s" % dup
        assert len(every) == N, len(every)
        assert later, "nothing was stored: the cap was not reached"
        # RFC 6120 4.9.3.17, after the last whole stanza it was sent
        assert ended_well, "no <policy-violation/>: %r" % data[-300:]
        # The sender's worker held at most its caps' worth at a time (plus
        # the sanitizers' 4 MB quarantine), not the 16 MB it was sent.
        # Not asserted when it is the recipient's worker too: that one
        # also holds the messages on their way to offline storage.
        if not same_worker:
            assert grown < MEM_BOUND_KB, "sender's worker grew by %d KB" % grown
        r.close()


def test_slow_reader_other_worker():
    slow_reader(same_worker=False)


def test_slow_reader_same_worker():
    slow_reader(same_worker=True)


def test_stopped_worker_outbox_bound():
    # the recipient reads; its own output bound is not what is tested
    with Server(workers=2, users=USERS,
                overrides={"queue.outbox_bytes": "1M",
                           "mam.queue_bytes": ARCHIVE_BOUND,
                           "c2s.max_output_bytes": "256M"}) as s:
        j = login(s, "juliet", "rcv", worker=1)
        r = login(s, "romeo", "snd", worker=0)
        j.drain()
        r.drain()
        spid, rpid = s.worker_pids()
        before = vmrss_kb(spid)
        os.kill(rpid, signal.SIGSTOP)
        try:
            send_all(r, j.jid, N_STOPPED)
            grown = vmrss_kb(spid) - before
        finally:
            os.kill(rpid, signal.SIGCONT)
        got = []
        ids_bounced = []

        def accounted():
            j._fill(time.monotonic() + 0.2)
            j._split()
            for _, st in j.q:
                m = _MSG.fullmatch(st)
                if m:
                    got.append(m.group(1))
            j.q = []
            r._fill(time.monotonic() + 0.05)
            r._split()
            ids_bounced.extend(bounced(r, "resource-constraint", "wait"))
            return len(got) + len(ids_bounced) >= N_STOPPED
        try:
            wait_for(accounted, timeout=90, what="every message accounted for")
        except AssertionError:
            pass
        every = got + ids_bounced
        print("  %d delivered, %d bounced with resource-constraint; sender's "
              "worker grew %d KB" % (len(got), len(ids_bounced), grown))
        missing = sorted(set("m%d" % i for i in range(N_STOPPED)) - set(every),
                         key=lambda x: int(x[1:]))
        assert not missing, "neither delivered nor bounced: %s" % missing
        assert len(every) == N_STOPPED and len(set(every)) == N_STOPPED, every
        assert ids_bounced, "nothing bounced: the outbox took all 24 MB"
        assert grown < MEM_BOUND_KB, "sender's worker grew by %d KB" % grown
        assert "queue.outbox_bytes" in s.log_text()
        j.close()
        r.close()

N_BARE = 500                # 10 MB of 20 KB messages to the bare JID
BATCH = 10                  # 200 KB at a time: under the readers' cap
_ID = re.compile(rb"<message [^>]*id='(m\d+|end)'")


def read_until_end(im, out, seen, done):
    """Collect what im is sent until the message with id 'end' (bounded),
    counting messages in seen[0]; pings are answered so that the reader
    stays."""
    im.c.sock.settimeout(0.2)
    data = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and b"id='end'" not in data:
        try:
            ch = im.c.sock.recv(1 << 20)
        except (socket.timeout, TimeoutError):
            continue
        except OSError:
            break
        if not ch:
            break
        seen[0] += (data[-9:] + ch).count(b"</message>")
        data += ch
        for p in re.findall(rb"id='(ping-\d+)'", ch):
            im.c.send("<iq to='localhost' id='%s' type='result'/>"
                      % p.decode())
    out.append(data)
    done.set()


def test_bare_jid_slow_reader_no_duplicates():
    """Chat to the bare JID reaches three resources of equal priority;
    one stops reading and is cut.  The two readers get every message
    exactly once: the copies the slow one left unread are not delivered
    again (the others have theirs), and routing them back while another
    send was in progress did not repeat or skip a resource."""
    with Server(workers=1, users=USERS,
                overrides={"c2s.max_output_bytes": "256K",
                           "tls.required": "no"}) as s:
        b = login(s, "juliet", "b")
        c = login(s, "juliet", "c")
        cs = Client(s.port)
        cs.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow = IM(s, "juliet", "slow", client=cs)
        slow.send("<presence/>")
        r = login(s, "romeo", "snd")
        wait_for(lambda: s.status()["master"]["sessions"] == 4,
                 what="four sessions")
        b.drain()
        c.drain()
        r.drain()
        got = {"b": [], "c": []}
        seen = {"b": [0], "c": [0]}
        done = {"b": threading.Event(), "c": threading.Event()}
        ts = [threading.Thread(target=read_until_end,
                               args=(x, got[k], seen[k], done[k]))
              for k, x in (("b", b), ("c", c))]
        for t in ts:
            t.start()
        # in batches the readers take whole before the next: only the
        # one that does not read passes its cap
        for i in range(N_BARE):
            r.c.send("<message to='juliet@localhost' id='m%d' type='chat'>"
                     "<body>%s</body></message>" % (i, "x" * 20000))
            if (i + 1) % BATCH == 0:
                wait_for(lambda: min(seen["b"][0], seen["c"][0]) >= i + 1 or
                         done["b"].is_set() or done["c"].is_set(),
                         timeout=60, what="the readers' batch")
        r.send("<iq to='localhost' id='sync' type='get'>"
               "<ping xmlns='urn:xmpp:ping'/></iq>")
        r.expect("<iq from='localhost' id='sync' to='%s' type='result'/>"
                 % r.jid, timeout=60)
        cut = "127.0.0.1:%d: stream error <policy-violation/>" % \
            cs.sock.getsockname()[1]
        wait_for(lambda: cut in s.log_text(), timeout=60,
                 what="the slow reader cut")
        # behind everything else on both readers' streams
        r.c.send("<message to='juliet@localhost' id='end' type='chat'>"
                 "<body>end</body></message>")
        for t in ts:
            t.join(150)
        want = ["m%d" % i for i in range(N_BARE)] + ["end"]
        for k in ("b", "c"):
            ids = [x.decode() for x in _ID.findall(b"".join(got[k]))]
            dup = sorted(set(x for x in ids if ids.count(x) > 1))
            print("  %s: %d copies, %d distinct, %d repeated %s"
                  % (k, len(ids), len(set(ids)), len(dup), dup[:5]))
            assert not dup, "%s got these more than once: %s" % (k, dup[:10])
            assert ids == want, "%s: missing %s" % (
                k, sorted(set(want) - set(ids))[:10])
        cs.close()
        r.close()


# 6 MB: the kernel takes up to 4 MB (tcp_wmem), the server holds the
# rest, under the 8M cap (no overflow: the connection ends by a reset)
N_RESET = 300


def test_reset_reader_keeps_unwritten():
    """A recipient that never reads and then resets its connection
    (SO_LINGER 0): the messages still queued for it at the server are
    stored offline, not lost with the connection.  What the kernel held
    is gone with the reset; what the server held is the newest part, so
    the offline store holds a tail of the messages, each once, ending
    with the last one sent."""
    with Server(workers=1, users=USERS,
                overrides={"c2s.max_output_bytes": "8M",
                           "tls.required": "no"}) as s:
        jc = Client(s.port)
        jc.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        assert plain_login(jc, "juliet", "slow") == "juliet@localhost/slow"
        jc.send("<presence/>")
        r = login(s, "romeo", "snd")
        wait_for(lambda: s.status()["master"]["sessions"] == 2,
                 what="two sessions")
        for i in range(N_RESET):
            r.c.send("<message to='juliet@localhost/slow' id='m%d' "
                     "type='chat'><body>%s</body></message>"
                     % (i, ("%d " % i).ljust(20000, "x")))
        r.send("<iq to='localhost' id='sync' type='get'>"
               "<ping xmlns='urn:xmpp:ping'/></iq>")
        r.expect("<iq from='localhost' id='sync' to='%s' type='result'/>"
                 % r.jid, timeout=60)
        port = jc.sock.getsockname()[1]
        jc.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                           struct.pack("ii", 1, 0))
        jc.sock.close()
        taken = re.compile(r"127\.0\.0\.1:%d: (\d+) pieces not written"
                           % port)
        wait_for(lambda: taken.search(s.log_text()), timeout=60,
                 what="the reset connection's output taken back")
        pieces = int(taken.search(s.log_text()).group(1))

        def stored():
            out = s.db.psql("SELECT o.stanza FROM offline_messages o JOIN "
                            "accounts a ON a.id = o.account_id WHERE "
                            "a.username = 'juliet'", s.db.conninfo)
            return re.findall(r"<message [^>]*id='(m\d+)'", out)
        wait_for(lambda: len(stored()) >= pieces, timeout=60,
                 what="%d messages stored" % pieces)
        ids = sorted(int(x[1:]) for x in stored())
        print("  %d of %d messages taken back and stored offline"
              % (len(ids), N_RESET))
        assert ids, "nothing stored"
        assert len(ids) == pieces, (pieces, ids)
        assert ids == list(range(ids[0], N_RESET)), ids
        assert not re.search(r"<message [^>]*type='error'",
                             "".join(st for _, st in r.q)), r.q
        r.close()


if __name__ == "__main__":
    run_tests([test_slow_reader_other_worker, test_slow_reader_same_worker,
               test_stopped_worker_outbox_bound,
               test_bare_jid_slow_reader_no_duplicates,
               test_reset_reader_keeps_unwritten])

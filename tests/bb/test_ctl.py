"""xmppctl for the operator's day (issue 10): `sessions` lists who is
online from the shared session table (JID, worker, address, TLS version,
SASL mechanism, since, idle) with --json; `kick` ends a full JID's
session or every session of a bare JID with the stream error and text
the client sees, leaving the others alone; `user del` ends the deleted
account's sessions and `user passwd --kick` the changed one's; `user
show`; exit codes 0/1/2 with a one-line error before the usage.
Needs XMPPD_TEST_PGCONN.
"""
import datetime
import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (XMPPCTL, Client, Server, pid_alive,  # noqa: E402
                     run_tests, stream_error_re, wait_for)

NS_ERR = "urn:ietf:params:xml:ns:xmpp-streams"
USERS = [("alice@localhost", "alice-pw"), ("bob@localhost", "bob-pw"),
         ("carol@localhost", "carol-pw")]
PING = "<iq type='get' id='%s'><ping xmlns='urn:xmpp:ping'/></iq>"


def login(srv, jid, password, resource, mech="SCRAM-SHA-256"):
    c = Client(srv.port)
    full = c.login(jid.split("@")[0], password, resource=resource, mech=mech)
    return c, full


def sessions_json(srv, *args):
    r = srv.ctl("--json", "sessions", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def still_online(c, tag):
    """The stream still answers: a ping comes back."""
    c.send(PING % tag)
    c.read_until("<iq [^>]*id='%s'[^>]*/>|<iq [^>]*id='%s'[^>]*>.*?</iq>" % (tag, tag))


def stream_error_text(c, condition):
    got = c.read_until(stream_error_re(condition))
    m = re.search("<text xmlns='%s'>([^<]*)</text>" % re.escape(NS_ERR), got)
    assert c.is_closed(timeout=5), "stream not closed after the error"
    return m.group(1) if m else None


def test_sessions_two_workers():
    """Two clients on the two workers, each line right; --json parses;
    filters by full JID, bare JID and domain."""
    with Server(workers=2, users=USERS) as srv:
        t0 = int(time.time())
        clients = []
        try:
            a, a_full = login(srv, "alice@localhost", "alice-pw", "desk")
            clients.append(a)
            # SO_REUSEPORT picks the worker: log bob in (bounded) until
            # one of his sessions lives on the other worker.
            a_worker = sessions_json(srv, a_full)["sessions"][0]["worker"]
            b = b_full = None
            for i in range(24):
                c, full = login(srv, "bob@localhost", "bob-pw", "r%d" % i,
                                mech="PLAIN")
                w = sessions_json(srv, full)["sessions"][0]["worker"]
                if w != a_worker:
                    b, b_full = c, full
                    clients.append(c)
                    break
                c.close()
            assert b is not None, "no connection landed on the other worker"
            # a resource that needs JSON escaping
            odd = 'q"uo\\te \u00e9'
            o, o_full = login(srv, "carol@localhost", "carol-pw", odd)
            clients.append(o)
            assert o_full == "carol@localhost/" + odd, o_full

            doc = sessions_json(srv)
            rows = {s["jid"]: s for s in doc["sessions"]}
            assert set(rows) == {a_full, b_full, o_full}, rows
            assert doc["total"] == 3 and doc["shown"] == 3, doc
            now = int(time.time())
            for full, client, mech in ((a_full, a, "SCRAM-SHA-256"),
                                       (b_full, b, "PLAIN")):
                s = rows[full]
                host, port = client.sock.getsockname()[:2]
                assert s["address"] == host and s["port"] == port, (s, host, port)
                want_tls = {"TLSv1.3": "TLSv1.3", "TLSv1.2": "TLSv1.2"}[client.sock.version()]
                assert s["tls"] == want_tls, s
                assert s["mechanism"] == mech, s
                assert t0 - 1 <= s["since"] <= now, (s, t0, now)
                assert 0 <= s["idle"] <= now - t0 + 1, s
                assert s["sm"] == "-", s    # no <enable/>
            assert {rows[a_full]["worker"], rows[b_full]["worker"]} == {0, 1}, rows

            # the human listing: a header, one line each, the total
            r = srv.ctl("sessions")
            assert r.returncode == 0, r.stderr
            lines = r.stdout.splitlines()
            assert lines[0].split() == ["JID", "WORKER", "ADDRESS", "TLS",
                                        "MECHANISM", "SINCE", "IDLE", "SM"], lines
            assert lines[-1] == "3 sessions", lines
            line_a = [x for x in lines if x.startswith(a_full + " ")]
            assert len(line_a) == 1, lines
            assert "127.0.0.1:%d" % a.sock.getsockname()[1] in line_a[0]
            assert "SCRAM-SHA-256" in line_a[0]

            # filters
            assert [s["jid"] for s in sessions_json(srv, "alice@localhost")["sessions"]] == [a_full]
            assert [s["jid"] for s in sessions_json(srv, b_full)["sessions"]] == [b_full]
            assert sessions_json(srv, "localhost")["total"] == 3
            assert sessions_json(srv, "ALICE@LocalHost")["total"] == 1
            assert sessions_json(srv, "other.example")["total"] == 0
            assert sessions_json(srv, "nobody@localhost") == {
                "sessions": [], "total": 0, "shown": 0}
        finally:
            for c in clients:
                c.close()


def test_idle_counts_from_client_bytes():
    """idle is the time since the client last sent something."""
    with Server(workers=1, users=USERS) as srv:
        a, a_full = login(srv, "alice@localhost", "alice-pw", "idle")
        try:
            # wait (bounded) until the session has been idle 2 s
            deadline = time.monotonic() + 10
            while sessions_json(srv, a_full)["sessions"][0]["idle"] < 2:
                assert time.monotonic() < deadline, "idle never grew"
                time.sleep(0.2)
            before = sessions_json(srv, a_full)["sessions"][0]["idle"]
            sent = time.time()
            still_online(a, "p-idle")
            after = sessions_json(srv, a_full)["sessions"][0]["idle"]
            # counted from the ping, not from the bind (whole seconds)
            assert after <= int(time.time() - sent) + 1 < before + int(time.time() - sent), \
                (before, after)
        finally:
            a.close()


def test_kick_full_and_bare():
    with Server(workers=2, users=USERS) as srv:
        a1, a1_full = login(srv, "alice@localhost", "alice-pw", "one")
        a2, a2_full = login(srv, "alice@localhost", "alice-pw", "two")
        b, b_full = login(srv, "bob@localhost", "bob-pw", "bob")
        try:
            r = srv.ctl("kick", a1_full, "spamming", "<the> & room")
            assert r.returncode == 0, r.stderr
            assert r.stdout.splitlines()[-1] == "1 session kicked", r.stdout
            assert stream_error_text(a1, "policy-violation") == \
                "spamming &lt;the&gt; &amp; room"
            still_online(a2, "p1")
            still_online(b, "p2")
            assert {s["jid"] for s in sessions_json(srv)["sessions"]} == {a2_full, b_full}
            assert re.search(r"%s kicked by the operator \(xmppctl, uid %d\) with "
                             r"<policy-violation/>: spamming <the> & room"
                             % (re.escape(a1_full), os.geteuid()), srv.log_text())

            # bare JID, --reset, no reason: <reset/> without a text
            a3, a3_full = login(srv, "alice@localhost", "alice-pw", "three")
            r = srv.ctl("kick", "--reset", "alice@localhost")
            assert r.returncode == 0, r.stderr
            assert r.stdout.splitlines()[-1] == "2 sessions kicked", r.stdout
            assert stream_error_text(a2, "reset") is None
            assert stream_error_text(a3, "reset") is None
            still_online(b, "p3")
            assert [s["jid"] for s in sessions_json(srv)["sessions"]] == [b_full]

            # nobody left to kick
            r = srv.ctl("kick", "alice@localhost")
            assert r.returncode == 1, r
            assert r.stderr == "xmppctl: no session for alice@localhost\n", r.stderr
            a3.close()
        finally:
            for c in (a1, a2, b):
                c.close()


def test_user_del_ends_sessions():
    with Server(workers=2, users=USERS) as srv:
        a, _ = login(srv, "alice@localhost", "alice-pw", "x")
        b, b_full = login(srv, "bob@localhost", "bob-pw", "y")
        # a login in progress: authenticated before the delete, bound after
        late = Client(srv.port)
        late.open()
        late.starttls()
        assert late.auth_scram("alice", "alice-pw").startswith("<success")
        late.open()
        try:
            r = srv.ctl_config("user", "del", "alice@localhost")
            assert r.stdout == "deleted alice@localhost\n1 live session ended\n", r.stdout
            assert stream_error_text(a, "not-authorized") == "account deleted"
            still_online(b, "p1")
            assert late.bind("late") == "alice@localhost/late"
            assert stream_error_text(late, "not-authorized") == "account deleted"
            assert "kick of alice@localhost/late: bound while its account was deleted" \
                in srv.log_text()
            c = Client(srv.port)
            c.open()
            c.starttls()
            got = c.auth_scram("alice", "alice-pw")
            assert got.startswith("<failure"), got
            c.close()
            r = srv.ctl_config("user", "show", "alice@localhost", check=False)
            assert r.returncode == 1 and r.stderr == \
                "xmppctl: no such user alice@localhost\n", r
        finally:
            a.close()
            b.close()
            late.close()


def test_passwd_kick():
    with Server(workers=2, users=USERS) as srv:
        a, _ = login(srv, "alice@localhost", "alice-pw", "x")
        b, _ = login(srv, "bob@localhost", "bob-pw", "y")
        try:
            # without --kick the session stays
            r = srv.ctl_config("user", "passwd", "bob@localhost", input="bob-pw2\n")
            assert r.stdout == "", r.stdout
            still_online(b, "p1")
            r = srv.ctl_config("user", "passwd", "alice@localhost", "--kick",
                               input="alice-new\n")
            assert r.stdout == "1 live session ended\n", r.stdout
            assert stream_error_text(a, "reset") == "password changed"
            still_online(b, "p2")
            a2, full = login(srv, "alice@localhost", "alice-new", "again")
            assert full == "alice@localhost/again"
            a2.close()
        finally:
            a.close()
            b.close()


def test_user_show_and_json_listings():
    with Server(workers=1, users=USERS) as srv:
        a, a_full = login(srv, "alice@localhost", "alice-pw", "show")
        try:
            for i, contact in enumerate(("bob@localhost", "carol@localhost")):
                a.send("<iq type='set' id='r%d'><query xmlns='jabber:iq:roster'>"
                       "<item jid='%s'/></query></iq>" % (i, contact))
                a.read_until("<iq [^>]*id='r%d' [^>]*type='result'[^>]*/>" % i)
            a.send("<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'>"
                   "<item jid='spam@example.com'/></block></iq>")
            a.read_until("<iq [^>]*id='b1' [^>]*type='result'[^>]*/>")
            a.send("<iq type='set' id='v1'><vCard xmlns='vcard-temp'><FN>Alice</FN>"
                   "</vCard></iq>")
            a.read_until("<iq [^>]*id='v1' [^>]*type='result'[^>]*/>")
            # carol is offline: two messages wait for her
            for i in range(2):
                a.send("<message to='carol@localhost' type='chat' id='m%d'>"
                       "<body>hi %d</body></message>" % (i, i))
            deadline = time.monotonic() + 10
            while json.loads(srv.ctl_config("--json", "user", "show",
                                            "carol@localhost").stdout)["offline"] < 2:
                assert time.monotonic() < deadline, "offline messages not stored"
                time.sleep(0.1)
            carol = json.loads(srv.ctl_config("--json", "user", "show",
                                              "carol@localhost").stdout)
            assert carol["offline"] == 2 and carol["roster"] == 0, carol
            assert carol["vcard"] is False and carol["sessions"] == [], carol
            r = srv.ctl_config("--json", "user", "show", "alice@localhost")
            doc = json.loads(r.stdout)
            assert doc["jid"] == "alice@localhost" and doc["exists"] is True
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["created"]), doc
            assert doc["roster"] == 2 and doc["blocklist"] == 1, doc
            assert doc["offline"] == 0 and doc["vcard"] is True, doc
            assert doc["server"] == "running"
            assert [s["jid"] for s in doc["sessions"]] == [a_full], doc
            r = srv.ctl_config("user", "show", "alice@localhost")
            assert "roster: 2\n" in r.stdout and "blocklist: 1\n" in r.stdout, r.stdout
            assert "sessions: 1\n" in r.stdout and a_full in r.stdout, r.stdout

            doc = json.loads(srv.ctl_config("--json", "user", "list").stdout)
            assert doc == {"users": [u for u, _ in sorted(USERS)], "total": 3}, doc
            st = json.loads(srv.ctl("status", "--json").stdout)
            assert st["master"]["workers"] == 1 and len(st["workers"]) == 1, st
            assert st["workers"][0]["pid"] > 0, st
            bans = json.loads(srv.ctl("--json", "bans").stdout)
            assert bans == {"bans": [], "total": 0, "shown": 0}, bans
        finally:
            a.close()
        r = srv.ctl("stop")
        assert r.returncode == 0 and r.stdout == "", r
        wait_for(lambda: not pid_alive(srv.master_pid), timeout=15,
                 what="master exit")
        # the server is down: the account's data, and say so
        r = srv.ctl_config("user", "show", "bob@localhost")
        assert r.stdout.endswith("sessions: server not running\n"), r.stdout
        doc = json.loads(srv.ctl_config("--json", "user", "show", "bob@localhost").stdout)
        assert doc["sessions"] is None and doc["server"] == "not running", doc
        r = srv.ctl_config("user", "del", "carol@localhost")
        assert r.stdout == ("deleted carol@localhost\n"
                            "server not running: no live sessions to end\n"), r.stdout


def test_usage_errors():
    with Server(workers=1) as srv:
        cases = [
            (("frobnicate",), "xmppctl: unknown command 'frobnicate'"),
            ((), "xmppctl: no command given"),
            (("kick",), "xmppctl: kick needs a JID"),
            (("kick", "nouser.example"), "xmppctl: invalid JID 'nouser.example': no user@ part"),
            (("kick", "a@localhost", "--frob"), "xmppctl: kick: unknown option '--frob'"),
            (("sessions", "a@localhost", "b@localhost"),
             "xmppctl: sessions takes at most one JID or domain"),
            (("status", "extra"), "xmppctl: status takes no arguments"),
            (("unban",), "xmppctl: unban needs one address or JID"),
            (("--bogus", "status"), "xmppctl: unknown option '--bogus'"),
        ]
        for args, first in cases:
            r = srv.ctl(*args)
            assert r.returncode == 2, (args, r)
            lines = r.stderr.splitlines()
            assert lines[0] == first, (args, lines[:2])
            assert lines[1].startswith("usage: xmppctl"), (args, lines[:2])
            assert r.stdout == "", (args, r.stdout)
        r = srv.ctl("kick", "ghost@localhost/x")
        assert (r.returncode, r.stderr) == (1, "xmppctl: no session for ghost@localhost/x\n"), r
        for args in (("user",), ("user", "frob", "a@localhost"), ("user", "show"),
                     ("db",), ("db", "migrate", "now")):
            r = srv.ctl_config(*args, check=False)
            assert r.returncode == 2 and len(r.stderr.splitlines()[0]) > 9, (args, r)
            assert r.stderr.splitlines()[1].startswith("usage:"), (args, r.stderr)
        # the error names the word that is wrong, not the JID after it
        r = srv.ctl_config("user", "frob", "a@localhost", check=False)
        assert r.stderr.splitlines()[0] == \
            "xmppctl: unknown user command 'frob'", r.stderr
        r = srv.ctl("help")
        assert r.returncode == 0 and "exit status: 0 success" in r.stdout, r
    # the server stopped: the control socket is gone
    r = srv.ctl("sessions")
    assert r.returncode == 1 and r.stderr.startswith("xmppctl: no xmppd listening on"), r


def test_root_uses_daemon_role():
    """As root, with no role in db.conninfo, xmppctl connects as the
    configured daemon user (here `nobody`, which has no role: the error
    says so and what to do); a role named in db.conninfo is used as is."""
    if os.geteuid() != 0:
        print("# skipped: needs root")
        return
    with Server(workers=1, users=USERS[:1]) as srv:
        ci = srv.overrides["db.conninfo"]
        no_role = " ".join(kv for kv in ci.split() if not kv.startswith("user="))
        r = srv.ctl_config("-o", "user=nobody", "-o", "db.conninfo=" + no_role,
                           "user", "list", check=False)
        assert r.returncode == 1, r
        assert len(r.stderr.splitlines()) == 1, r.stderr
        assert 'role "nobody" does not exist' in r.stderr, r.stderr
        assert "runuser -u xmppd -- xmppctl" in r.stderr, r.stderr
        assert "user=ROLE in db.conninfo" in r.stderr, r.stderr
        r = srv.ctl_config("-o", "user=nobody", "user", "list")
        assert r.stdout == "alice@localhost\n", r.stdout


def control_as(path, uid, gid, lines):
    """The control socket's answer to lines, sent by uid:gid in a child."""
    script = ("import socket,sys\n"
              "s=socket.socket(socket.AF_UNIX)\n"
              "s.settimeout(20)\n"
              "s.connect(sys.argv[1])\n"
              "s.sendall(sys.argv[2].encode())\n"
              "s.shutdown(socket.SHUT_WR)\n"
              "d=b''\n"
              "while True:\n"
              "    b=s.recv(65536)\n"
              "    if not b: break\n"
              "    d+=b\n"
              "sys.stdout.write(d.decode())\n")
    r = subprocess.run([sys.executable, "-c", script, path,
                        "VERSION\txmppctl\t1\n" + "".join(l + "\n" for l in lines)],
                       capture_output=True, text=True, timeout=30, user=uid,
                       group=gid)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_sessions_and_kick_need_privilege():
    """A local user who may open the socket (its group or mode) but is
    neither root nor the daemon user sees status, not the sessions with
    their client addresses, and kicks no one."""
    if os.geteuid() != 0:
        print("# skipped: needs root")
        return
    nobody = pwd.getpwnam("nobody").pw_uid
    nogroup = grp.getgrnam("nogroup").gr_gid
    with Server(workers=1, users=USERS[:1],
                overrides={"control.group": "nogroup"}) as srv:
        os.chmod(srv.dir, 0o711)
        a, a_full = login(srv, "alice@localhost", "alice-pw", "priv")
        try:
            got = control_as(srv.control, nobody, nogroup, ["status"])
            assert "\nmaster\tpid=" in got and got.endswith("OK\n"), got
            for line in ("sessions", "sessions\talice@localhost", "bans",
                         "kick\talice@localhost\tpolicy-violation\tx"):
                got = control_as(srv.control, nobody, nogroup, [line])
                name = line.split("\t")[0]
                assert got.split("\n")[1] == ("ERROR\tpermission denied: "
                    "'%s' needs root or the daemon user" % name), got
                assert "127.0.0.1" not in got and "alice" not in got, got
            still_online(a, "priv1")
            assert sessions_json(srv)["total"] == 1
        finally:
            a.close()


def test_client_that_does_not_read():
    """A control client that sends commands and never reads its answers
    does not stop the master: other clients are still answered, and its
    answers wait for it, complete."""
    with Server(workers=1) as srv:
        s = socket.socket(socket.AF_UNIX)
        s.connect(srv.control)
        try:
            s.sendall(b"VERSION\txmppctl\t1\n")
            s.setblocking(False)
            chunk = b"help\n" * 1000
            sent = 0
            for _ in range(2000):       # until the master stops reading
                try:
                    sent += s.send(chunk)
                except BlockingIOError:
                    break
            assert sent > 0, sent
            r = srv.ctl("status")
            assert r.returncode == 0 and "master\tpid=" in r.stdout, r
            s.setblocking(True)
            s.settimeout(20)
            got = b""
            while len(got) < 64 * 1024:
                got += s.recv(65536)
            assert got.startswith(b"VERSION\txmppd\t1\ncommands\tstatus\t"), got[:200]
            assert got.count(b"\nOK\n") >= 100, got[:200]
        finally:
            s.close()
        r = srv.ctl("status")
        assert r.returncode == 0, r


def test_json_valid_whatever_the_server_sends():
    """--json output is valid UTF-8 JSON even when a field holds bytes
    that are not UTF-8 or control characters (a stand-in server sends
    them: xmppd's JIDs cannot hold either)."""
    d = tempfile.mkdtemp(prefix="xmppctl-json-")
    path = os.path.join(d, "fake.sock")
    raw = b"a@b/\xff\xc0\xed\xa0\x80\xf4\x90\x80\x80x\x01\x7f\"\\y \xc3\xa9"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)
    srv.settimeout(20)

    def serve():
        c, _ = srv.accept()
        with c:
            f = c.makefile("rb")
            f.readline()
            c.sendall(b"VERSION\txmppd\t1\n")
            f.readline()
            c.sendall(b"session\tjid=" + raw + b"\tworker=0\taddress=::1\tport=5\t"
                      b"tls=TLSv1.3\tmechanism=PLAIN\tsince=0\tidle=0\n"
                      b"sessions\ttotal=1\tshown=1\nOK\n")
    t = threading.Thread(target=serve)
    t.start()
    try:
        r = subprocess.run([XMPPCTL, "-s", path, "--json", "sessions"],
                           capture_output=True, timeout=20)
    finally:
        t.join(timeout=20)
        srv.close()
        shutil.rmtree(d)
    assert r.returncode == 0, r
    got = json.loads(r.stdout.decode("utf-8"))
    assert got["sessions"][0]["jid"] == raw.decode("utf-8", "replace"), got
    assert got["sessions"][0]["port"] == 5 and got["total"] == 1, got


def test_kick_reason_must_be_xml_text():
    """A reason that is not well-formed UTF-8 or not XML character data
    (a surrogate, an overlong form, past U+10FFFF, U+FFFF) is refused
    before anyone is kicked: it would make the client's stream invalid."""
    with Server(workers=1, users=USERS[:1]) as srv:
        a, a_full = login(srv, "alice@localhost", "alice-pw", "r")
        try:
            for bad in (b"\xed\xa0\x80", b"\xe0\x80\xaf", b"\xf4\x90\x80\x80",
                        b"\xef\xbf\xbf", b"ok \xc3"):
                r = srv.ctl("kick", a_full, b"why " + bad)
                assert (r.returncode, r.stderr) == (1, "xmppctl: the text must be "
                    "UTF-8 without control characters, under 1024 bytes\n"), (bad, r)
            still_online(a, "t1")
            r = srv.ctl("kick", a_full, "caf\u00e9 \U0001F600")
            assert r.returncode == 0, r
            assert stream_error_text(a, "policy-violation") == "caf\u00e9 \U0001F600"
        finally:
            a.close()


def connected_at(srv, c):
    """The wall-clock time the worker logged c's connection."""
    port = c.sock.getsockname()[1]
    pat = r"(\S+)Z w\d+ debug: c\d+ 127\.0\.0\.1:%d: connected" % port
    m = wait_for(lambda: re.search(pat, srv.log_text()), what="connected line")
    return datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def test_no_bind_after_c2s_timeout():
    """A connection binds within c2s.timeout of connecting or never
    (user del's late-login watch lasts that long): an authenticated
    client that binds just after gets <connection-timeout/>, not a
    session, also before the worker's once-a-second timeout sweep (a
    second client keeps the worker awake, so the sweeps fall anywhere)."""
    with Server(workers=1, users=USERS[:2], overrides={"c2s.timeout": "1s"}) as srv:
        busy, _ = login(srv, "bob@localhost", "bob-pw", "busy")
        try:
            for n in range(4):
                late = Client(srv.port)
                try:
                    late.open()
                    late.starttls()
                    assert late.auth_scram("alice", "alice-pw").startswith("<success")
                    late.open()
                    t = connected_at(srv, late) + 1.03
                    for k in range(100):    # bounded: 1 s at most
                        if time.time() >= t:
                            break
                        still_online(busy, "b%d_%d" % (n, k))
                        time.sleep(0.01)
                    late.send("<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:"
                              "xml:ns:xmpp-bind'><resource>l%d</resource></bind></iq>" % n)
                    got = late.read_until(stream_error_re("connection-timeout") +
                                          "|<jid>[^<]*</jid>")
                    assert "<jid>" not in got, (n, got)
                finally:
                    late.close()
            assert [s["jid"] for s in sessions_json(srv)["sessions"]] == \
                ["bob@localhost/busy"]
        finally:
            busy.close()


def test_user_del_unprivileged_changes_nothing():
    """`user del` (and `passwd --kick`) by a user who may reach the
    database and open the control socket but may not end sessions
    fails before the account changes: it never leaves a deleted
    account's session online."""
    if os.geteuid() != 0:
        print("# skipped: needs root")
        return
    nobody = pwd.getpwnam("nobody").pw_uid
    nogroup = grp.getgrnam("nogroup").gr_gid
    with Server(workers=1, users=USERS[:1],
                overrides={"control.group": "nogroup"}) as srv:
        os.chmod(srv.dir, 0o711)
        os.chmod(srv.config, 0o644)
        a, a_full = login(srv, "alice@localhost", "alice-pw", "stay")
        try:
            base = [XMPPCTL, "-c", srv.config] + sum(
                (["-o", "%s=%s" % kv] for kv in srv.overrides.items()), [])
            for args, inp in ((["user", "del", "alice@localhost"], None),
                              (["user", "passwd", "alice@localhost", "--kick"], "other-pw\n")):
                r = subprocess.run(base + args, input=inp, capture_output=True, text=True,
                                   timeout=60, user=nobody, group=nogroup)
                assert r.returncode == 1, (args, r)
                assert r.stdout == "", (args, r.stdout)
                assert r.stderr == "xmppctl: permission denied: 'sessions' needs root " \
                    "or the daemon user\n", (args, r.stderr)
            still_online(a, "s1")
            b, _ = login(srv, "alice@localhost", "alice-pw", "again")
            b.close()
        finally:
            a.close()


def test_user_del_many_accounts_all_watched():
    """Deleting more accounts than before in one go (a purge of spam
    accounts, here 70 in well under c2s.timeout) still ends a login in
    progress for the first one when it binds after the last delete."""
    users = [("spam%02d@localhost" % i, "pw-%02d" % i) for i in range(70)]
    with Server(workers=1, users=users[:1], overrides={"c2s.timeout": "5m"}) as srv:
        for jid, pw in users[1:]:
            srv.add_user(jid, pw)
        late = Client(srv.port)
        try:
            late.open()
            late.starttls()
            assert late.auth_scram("spam00", "pw-00").startswith("<success")
            late.open()
            for jid, _ in users:
                r = srv.ctl_config("user", "del", jid)
                assert r.stdout.startswith("deleted %s\n" % jid), r.stdout
            assert late.bind("late") == "spam00@localhost/late"
            assert stream_error_text(late, "not-authorized") == "account deleted"
        finally:
            late.close()


def test_user_del_watch_after_c2s_timeout_lowered():
    """A login that connected while c2s.timeout was 30s keeps that long
    to bind after a reload lowers it to 1s: `user del`'s watch lasts as
    long, and ends it when it binds after the new, shorter timeout."""
    with Server(workers=1, users=USERS[:1], config_text="c2s.timeout = 30s\n") as srv:
        late = Client(srv.port)
        try:
            late.open()
            late.starttls()
            assert late.auth_scram("alice", "alice-pw").startswith("<success")
            late.open()
            srv.write_config("c2s.timeout = 1s\n")
            r = srv.ctl("reload")
            assert r.returncode == 0 and "changed\tc2s.timeout" in r.stdout, r
            wait_for(lambda: all(w["generation"] == 2 for w in srv.status()["workers"]),
                     what="workers on generation 2")
            r = srv.ctl_config("user", "del", "alice@localhost")
            assert r.stdout == "deleted alice@localhost\n0 live sessions ended\n", r.stdout
            time.sleep(1 + 1 + 1.5)     # past a watch of the new c2s.timeout
            assert late.bind("late") == "alice@localhost/late"
            assert stream_error_text(late, "not-authorized") == "account deleted"
        finally:
            late.close()


def test_unprivileged_clients_do_not_lock_out_root():
    """A socket-group member holding every control connection open (and
    idle) does not keep root out: root's xmppctl still gets an answer;
    another unprivileged xmppctl is told why in one line."""
    if os.geteuid() != 0:
        print("# skipped: needs root")
        return
    nobody = pwd.getpwnam("nobody").pw_uid
    nogroup = grp.getgrnam("nogroup").gr_gid
    with Server(workers=1, overrides={"control.group": "nogroup"}) as srv:
        os.chmod(srv.dir, 0o711)
        script = ("import socket,sys,time\n"
                  "ss=[]\n"
                  "for i in range(40):\n"
                  "    s=socket.socket(socket.AF_UNIX)\n"
                  "    s.connect(sys.argv[1])\n"
                  "    ss.append(s)\n"
                  "print('held', flush=True)\n"
                  "sys.stdin.read()\n")
        holder = subprocess.Popen([sys.executable, "-c", script, srv.control],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, user=nobody, group=nogroup)
        try:
            assert holder.stdout.readline() == "held\n"
            # another unprivileged user is told, in one line
            r = subprocess.run([XMPPCTL, "-s", srv.control, "status"], capture_output=True,
                               text=True, timeout=20, user=nobody, group=nogroup)
            assert (r.returncode, r.stderr) == (1, "xmppctl: too many control clients\n"), r
            r = srv.ctl("status")
            assert r.returncode == 0 and "master\tpid=" in r.stdout, r
            r = srv.ctl("sessions")
            assert r.returncode == 0, r
        finally:
            holder.stdin.close()
            holder.wait(timeout=20)


def test_user_del_of_gone_account_ends_its_sessions():
    """An account deleted behind xmppctl's back (in SQL, or by a user
    del whose kick failed) but still online: `user del` says there is no
    such user (exit 1) and still ends the live sessions, so running it
    again is the way out."""
    with Server(workers=1, users=USERS[:2]) as srv:
        a, _ = login(srv, "alice@localhost", "alice-pw", "ghost")
        b, _ = login(srv, "bob@localhost", "bob-pw", "b")
        try:
            srv.db.psql("DELETE FROM accounts WHERE username = 'alice'",
                        conninfo=srv.db.conninfo)
            r = srv.ctl_config("user", "del", "alice@localhost", check=False)
            assert (r.returncode, r.stderr) == (1, "xmppctl: no such user "
                                                "alice@localhost\n"), r
            assert r.stdout == "1 live session ended\n", r.stdout
            assert stream_error_text(a, "not-authorized") == "account deleted"
            still_online(b, "g1")
            r = srv.ctl_config("user", "passwd", "ghost@localhost", input="x\n", check=False)
            assert (r.returncode, r.stderr, r.stdout) == (
                1, "xmppctl: no such user ghost@localhost\n", ""), r
        finally:
            a.close()
            b.close()


if __name__ == "__main__":
    run_tests([test_sessions_two_workers, test_idle_counts_from_client_bytes,
               test_kick_full_and_bare, test_user_del_ends_sessions,
               test_passwd_kick, test_user_show_and_json_listings,
               test_usage_errors, test_root_uses_daemon_role,
               test_sessions_and_kick_need_privilege,
               test_client_that_does_not_read,
               test_json_valid_whatever_the_server_sends,
               test_kick_reason_must_be_xml_text,
               test_no_bind_after_c2s_timeout,
               test_user_del_unprivileged_changes_nothing,
               test_user_del_many_accounts_all_watched,
               test_user_del_watch_after_c2s_timeout_lowered,
               test_unprivileged_clients_do_not_lock_out_root,
               test_user_del_of_gone_account_ends_its_sessions])

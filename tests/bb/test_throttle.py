"""Login throttling shared by all workers (issue 9 item 5): failed
authentications are counted per source address and per account over
every connection and worker; a banned address is refused even with the
right password while other addresses log in; a reload changes the
thresholds; the log lines match the fail2ban filters in etc/fail2ban;
xmppctl lists and lifts bans.
Needs XMPPD_TEST_PGCONN.
"""
import base64
import hashlib
import hmac
import os
import re
import secrets
import signal
import socket
import ssl
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Client, Server, run_tests, stream_error_re,  # noqa: E402
                     stream_header, wait_for)

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
USERS = [("juliet@localhost", "r0m30!"), ("romeo@localhost", "jul13t?")]
SRCDIR = os.environ.get("XMPPD_SRCDIR",
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BANNED_TEXT = (r"<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Too many \((\d+)\) "
               r"failed authentications from this IP address \(127\.0\.0\.1\)\. The "
               r"address will be unblocked at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</text>")


def sasl_failure(cond):
    return "<failure xmlns='%s'><%s/>" % (SASL, cond)


def tls_client(port, host="127.0.0.1"):
    c = Client(port, host=host)
    c.open()
    c.starttls()
    return c


def fail_once(port, user="nobody", host="127.0.0.1"):
    """One connection, one wrong password; returns what the server said."""
    c = tls_client(port, host=host)
    try:
        return c.auth_plain(user, "wrong")
    finally:
        c.close()


def fail_in_parallel(port, n, user_of=lambda i: "nobody%d" % i):
    """n connections at once, one wrong password each."""
    got = [None] * n
    errors = []

    def run(i):
        try:
            got[i] = fail_once(port, user_of(i))
        except Exception as e:      # reported by the caller
            errors.append(e)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    return got


def assert_banned(port):
    """A new stream from 127.0.0.1 ends at its header with a
    policy-violation stream error that says when the ban ends."""
    c = Client(port)
    c.send(stream_header())
    rest = c.read_all_until_close()
    assert "<stream:features" not in rest, rest
    assert re.search(stream_error_re("policy-violation"), rest), rest
    m = re.search(BANNED_TEXT, rest)
    assert m, rest
    return int(m.group(1))


def assert_auth_banned(c, user="juliet", password="r0m30!"):
    """The right password on a stream opened before the ban: the same
    stream error, never <success/>."""
    c.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" % (
        SASL, base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()))
    rest = c.read_all_until_close()
    assert "<success" not in rest, rest
    assert re.search(stream_error_re("policy-violation"), rest), rest
    assert re.search(BANNED_TEXT, rest), rest


def tls_handshake(port, host="127.0.0.1"):
    """A TLS handshake on the direct TLS port: True when it completes,
    False when the server closes the connection instead."""
    sock = socket.create_connection((host, port), timeout=5.0)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
    except socket.timeout:
        raise AssertionError("TLS handshake neither done nor refused")
    except (ssl.SSLError, ConnectionError):
        return False
    finally:
        sock.close()
    return True


def filter_regex(name):
    """The failregex of an etc/fail2ban filter, <HOST> (an address) or
    <SUBNET> (an address or ADDRESS/CIDR) made a group."""
    with open(os.path.join(SRCDIR, "etc", "fail2ban", "filter.d", name)) as f:
        text = f.read()
    m = re.search(r"^failregex\s*=\s*(.+)$", text, re.M)
    assert m, name
    return re.compile(m.group(1).strip()
                      .replace("<HOST>", r"(?P<host>[0-9A-Fa-f:.]+)")
                      .replace("<SUBNET>", r"(?P<host>[0-9A-Fa-f:.]+(?:/\d+)?)"))


def fail2ban_hosts(log, name):
    """Hosts the filter finds, fail2ban-style: the timestamp is cut first."""
    rx = filter_regex(name)
    hosts = []
    for line in log.splitlines():
        line = re.sub(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "", line)
        m = rx.search(line)
        if m:
            hosts.append(m.group("host"))
    return hosts


def test_address_ban_counts_all_connections_and_workers():
    overrides = {"c2s.addresses": "127.0.0.1 ::1",
                 "sasl.max_failures_per_address": "6",
                 "sasl.max_failures_per_account": "0",
                 "sasl.max_failures": "3"}
    with Server(workers=2, users=USERS, overrides=overrides) as s:
        # Five connections at once, one guess each: no connection reaches
        # sasl.max_failures and each worker sees only some of them.
        got = fail_in_parallel(s.port, 5)
        assert all(g.startswith(sasl_failure("not-authorized")) for g in got), got
        # Below the threshold the right password still goes in ...
        c = Client(s.port)
        assert c.login("juliet", "r0m30!").startswith("juliet@localhost/")
        c.close()
        # ... and the sixth failure in total bans the address: the right
        # password from it no longer goes in, on a stream opened before
        # the ban or on a new one.
        before = tls_client(s.port)
        assert fail_once(s.port).startswith(sasl_failure("not-authorized"))
        assert_auth_banned(before)
        assert assert_banned(s.port) == 6
        # On the direct TLS port a banned address gets no handshake: it
        # is closed before one costs anything (nothing can be said in
        # clear there); another address gets one.
        assert not tls_handshake(s.tls_port)
        assert tls_handshake(s.tls_port, host="::1")
        wait_for(lambda: re.search(r"refused before TLS: 127\.0\.0\.1 banned for \d+ s "
                                   r"more \(6 failed authentications\)", s.log_text()),
                 what="refusal before TLS logged")
        # Another address logs in while 127.0.0.1 is banned.
        c = Client(s.port, host="::1")
        assert c.login("romeo", "jul13t?").startswith("romeo@localhost/")
        c.close()
        wait_for(lambda: "login failures from 127.0.0.1: banned" in s.log_text(),
                 what="ban logged")
        log = s.log_text()
        assert re.search(r" w\d warn: login failures from 127\.0\.0\.1: banned for 3600 s "
                         r"\(6 failures in \d+ s\)", log), log[-3000:]
        fails = re.findall(r"authentication failed for nobody\d?@localhost from 127\.0\.0\.1 "
                           r"\(PLAIN\): not-authorized", log)
        assert len(fails) == 6, fails
        # The sample fail2ban filters find the address in those lines.
        assert fail2ban_hosts(log, "xmppd.conf") == ["127.0.0.1"] * 6
        assert fail2ban_hosts(log, "xmppd-ban.conf") == ["127.0.0.1"]
        # xmppctl lists the ban and lifts it; then the address logs in.
        r = s.ctl("bans", check=True)
        assert re.search(r"^ban\tkind=address\tkey=127\.0\.0\.1\tfailures=6\t"
                         r"remaining=\d+$", r.stdout, re.M), r.stdout
        assert "bans\ttotal=1\tshown=1" in r.stdout, r.stdout
        assert s.ctl("unban", "::1").returncode != 0      # nothing to lift
        r = s.ctl("unban", "127.0.0.1", check=True)
        assert r.stdout.startswith("unbanned\t127.0.0.1"), r.stdout
        assert "bans\ttotal=0" in s.ctl("bans", check=True).stdout
        c = Client(s.port)
        assert c.login("juliet", "r0m30!").startswith("juliet@localhost/")
        c.close()
        assert tls_handshake(s.tls_port)


def test_ipv6_ban_names_the_prefix():
    """xmppd bans an IPv6 /64: the ban line names the prefix where the
    fail2ban filter takes the host, so the firewall drops the same /64."""
    overrides = {"c2s.addresses": "127.0.0.1 ::1",
                 "sasl.max_failures_per_address": "2",
                 "sasl.max_failures_per_account": "0"}
    with Server(workers=2, users=USERS, overrides=overrides) as s:
        for _ in range(2):
            got = fail_once(s.port, host="::1")
            assert got.startswith(sasl_failure("not-authorized")), got
        wait_for(lambda: "banned for 3600 s" in s.log_text(), what="ban logged")
        log = s.log_text()
        assert re.search(r" w\d warn: login failures from ::/64: banned for 3600 s "
                         r"\(2 failures in \d+ s, the last from ::1\)", log), log[-3000:]
        assert fail2ban_hosts(log, "xmppd-ban.conf") == ["::/64"]
        # The per-failure filter still names each failing address.
        assert fail2ban_hosts(log, "xmppd.conf") == ["::1"] * 2
        # IPv4 is unaffected by the IPv6 prefix's ban.
        c = Client(s.port)
        assert c.login("juliet", "r0m30!").startswith("juliet@localhost/")
        c.close()


def test_full_table_fails_closed():
    """When every slot of the shared table is an active ban, a new
    address cannot be counted: its guesses are refused (no password
    check) instead of going on uncounted, and a warning says so."""
    overrides = {"sasl.max_failures_per_address": "1",
                 "sasl.max_failures_per_account": "0",
                 "sasl.throttle_table_size": "64",
                 "sasl.throttle_delay": "0"}
    with Server(workers=2, users=USERS, overrides=overrides) as s:
        # No user named (an empty one is a counted malformed-request):
        # only the addresses take slots, so the table ends all bans.
        bans = 0
        for i in range(2, 250):
            c = client_from(s.port, "127.0.0.%d" % i)
            got = auth_from(c, "", "wrong")
            c.close()
            assert (got.startswith(sasl_failure("malformed-request")) or
                    got.startswith(sasl_failure("temporary-auth-failure"))), got
            if i >= 65:
                m = re.search(r"bans\ttotal=(\d+)", s.ctl("bans", check=True).stdout)
                bans = int(m.group(1))
                if bans == 64:
                    break
        assert bans == 64, bans
        # Full of bans: a new address's guess is not checked ...
        for host in ("127.0.0.250", "127.0.0.251"):
            c = client_from(s.port, host)
            got = auth_from(c, "", "wrong")
            assert got.startswith(sasl_failure("temporary-auth-failure")), got
            c.close()
        # ... none of the bans was lost to make room ...
        assert "bans\ttotal=64" in s.ctl("bans", check=True).stdout
        # ... and the operator is told.
        assert re.search(r" w\d warn: throttle table full: \S+ cannot be counted and is "
                         r"treated as throttled \(sasl.throttle_table_size = 64\)",
                         s.log_text()), s.log_text()[-3000:]


def scram_first(c, user):
    """SCRAM-SHA-256 up to the server's challenge."""
    nonce = secrets.token_urlsafe(18)
    first_bare = "n=%s,r=%s" % (user, nonce)
    c.send("<auth xmlns='%s' mechanism='SCRAM-SHA-256'>%s</auth>"
           % (SASL, base64.b64encode(("n,," + first_bare).encode()).decode()))
    got = c.read_until("<challenge xmlns='%s'>[^<]*</challenge>" % SASL)
    return first_bare, base64.b64decode(re.search(">([^<]*)<", got).group(1)).decode()


def scram_final(c, first_bare, server_first, password):
    """Send the right proof; return all the server says until it closes."""
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(),
                                 base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    final_bare = "c=biws,r=%s" % attrs["r"]
    auth_msg = ",".join([first_bare, server_first, final_bare]).encode()
    sig = hmac.new(stored_key, auth_msg, "sha256").digest()
    proof = bytes(a ^ b for a, b in zip(client_key, sig))
    c.send("<response xmlns='%s'>%s</response>" % (SASL, base64.b64encode(
        (final_bare + ",p=" + base64.b64encode(proof).decode()).encode()).decode()))
    return c.read_all_until_close()


def test_ban_stops_logins_in_flight():
    overrides = {"sasl.max_failures_per_address": "3",
                 "sasl.max_failures_per_account": "0"}
    with Server(workers=2, users=USERS, overrides=overrides) as s:
        # A login that got its challenge before the ban ...
        c = tls_client(s.port)
        first_bare, server_first = scram_first(c, "juliet")
        got = fail_in_parallel(s.port, 3)
        assert all(g.startswith(sasl_failure("not-authorized")) for g in got), got
        # ... is refused when it sends the right proof after it.
        rest = scram_final(c, first_bare, server_first, "r0m30!")
        assert "<success" not in rest, rest
        assert re.search(BANNED_TEXT, rest), rest
        assert re.search(stream_error_re("policy-violation"), rest), rest


def test_reload_changes_thresholds():
    conf = ("sasl.max_failures_per_address = %s\n"
            "sasl.max_failures_per_account = 0\n")
    with Server(workers=2, users=USERS, config_text=conf % "0") as s:
        # Off: four failures, and the right password still goes in.
        for _ in range(4):
            assert fail_once(s.port).startswith(sasl_failure("not-authorized"))
        c = Client(s.port)
        assert c.login("juliet", "r0m30!").startswith("juliet@localhost/")
        c.close()
        # A reload turns the ban on at 5: the failures so far count.
        s.write_config(conf % "5")
        os.kill(s.master_pid, signal.SIGHUP)
        wait_for(lambda: (lambda x: x["master"]["generation"] == 2 and
                          all(w["generation"] == 2 for w in x["workers"]))(s.status()),
                 what="generation 2 everywhere")
        assert fail_once(s.port).startswith(sasl_failure("not-authorized"))
        assert assert_banned(s.port) == 5


def client_from(port, source):
    """A Client whose connection comes from another loopback address."""
    c = Client.__new__(Client)
    c.sock = socket.create_connection(("127.0.0.1", port), timeout=5.0,
                                      source_address=(source, 0))
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.buf = b""
    c.timeout = 5.0
    return c


def auth_from(c, user, password):
    """STARTTLS on c, then one PLAIN attempt; returns the answer, the
    stream left open."""
    c.open()
    c.starttls()
    return c.auth_plain(user, password)


def test_account_throttle_does_not_lock_the_owner_out():
    overrides = {"c2s.addresses": "127.0.0.1 ::1",
                 "sasl.max_failures_per_address": "0",
                 "sasl.max_failures_per_account": "3",
                 "sasl.account_throttle_time": "1h",
                 "sasl.throttle_delay": "20ms"}
    with Server(workers=2, users=USERS, overrides=overrides) as s:
        got = fail_in_parallel(s.port, 2, user_of=lambda i: "juliet")
        assert all(g.startswith(sasl_failure("not-authorized")) for g in got), got
        # The domain's case does not make another account to guess at.
        c = Client(s.port)
        c.open("LOCALHOST")
        c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        c.read_until("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        c.wrap_tls()
        c.open("LOCALHOST")
        assert c.auth_plain("juliet", "wrong").startswith(sasl_failure("not-authorized"))
        c.close()
        wait_for(lambda: "login failures for juliet@localhost: account throttled for "
                 "3600 s (3 failures in" in s.log_text(), what="throttle logged")
        # The throttled account takes no more guesses from the address
        # that failed at it: not even the right password is checked ...
        for password in ("wrong", "r0m30!"):
            c = tls_client(s.port)
            got = c.auth_plain("juliet", password)
            assert got.startswith(sasl_failure("temporary-auth-failure")), got
            # ... which is no password guess: the stream stays open.
            assert not c.is_closed(timeout=0.3)
            c.close()
        # The owner, from an address that has not failed at the account,
        # logs in while 127.0.0.1 keeps failing against it.
        c = Client(s.port, host="::1")
        assert c.login("juliet", "r0m30!").startswith("juliet@localhost/")
        c.close()
        # Another address gets one guess at the throttled account, then
        # it is shut out of that account as well.
        c = client_from(s.port, "127.0.0.2")
        got = auth_from(c, "juliet", "wrong")
        assert got.startswith(sasl_failure("not-authorized")), got
        c.close()
        c = client_from(s.port, "127.0.0.2")
        got = auth_from(c, "juliet", "r0m30!")
        assert got.startswith(sasl_failure("temporary-auth-failure")), got
        c.close()
        # The owner still gets in; other accounts are not affected.
        c = Client(s.port, host="::1")
        assert c.login("juliet", "r0m30!").startswith("juliet@localhost/")
        c.close()
        c = Client(s.port)
        assert c.login("romeo", "jul13t?").startswith("romeo@localhost/")
        c.close()
        log = s.log_text()
        checked = re.findall(r"authentication failed for juliet@localhost from "
                             r"(\S+) \(PLAIN\): not-authorized", log, re.I)
        assert checked == ["127.0.0.1"] * 3 + ["127.0.0.2"], checked
        assert re.search(r"login failures for juliet@localhost: 127\.0\.0\.2 refused "
                         r"for this account for 3600 s", log), log[-3000:]


if __name__ == "__main__":
    run_tests([test_address_ban_counts_all_connections_and_workers,
               test_ban_stops_logins_in_flight,
               test_reload_changes_thresholds,
               test_account_throttle_does_not_lock_the_owner_out,
               test_ipv6_ban_names_the_prefix,
               test_full_table_fails_closed])

"""Black-box tests of the per-account and per-address limits (issue 9,
item 3): one account or one address must not be able to take the server.

- c2s.max_sessions_per_account: the next bind of an account at its limit
  gets <resource-constraint/> (RFC 6120 7.6.2.1) while other accounts
  still log in; taking over the same full JID still works; counted in the
  shared session table, so sessions on different workers add up.
- c2s.max_connections_per_ip: counted across all workers; one more
  connection gets <policy-violation/> (RFC 6120 4.9.3.18) and is closed,
  while another address (::1) still gets in; a killed worker's
  connections stop counting.
- One account cannot take the long-JID pool of the session table.
- Both limits change on SIGHUP without a restart.
Needs XMPPD_TEST_PGCONN.
"""
import os
import re
import signal
import socket
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Client, SERVER_HEADER, Server, pid_alive,  # noqa: E402
                     run_tests, stream_error_re, stream_header, wait_for)

STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
USERS = [("juliet@localhost", "r0m30!"), ("romeo@localhost", "jul13t?")]
FEATURES = ("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
            "<required/></starttls></stream:features>")
REFUSED_TEXT = "too many connections from your address"


def reload_to(s, text, generation):
    """Write the config file, SIGHUP the master, wait for every worker."""
    s.write_config(text)
    os.kill(s.master_pid, signal.SIGHUP)
    wait_for(lambda: (lambda x: x["master"]["generation"] == generation and
                      all(w["generation"] == generation for w in x["workers"]))(s.status()),
             what="generation %d everywhere" % generation)


def authenticated(s, user, password):
    """A client authenticated and restarted, not yet bound."""
    c = Client(s.port)
    c.open()
    c.starttls()
    assert c.auth_plain(user, password).startswith("<success")
    feats = c.open()
    assert "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>" in feats, feats
    return c


def bind_reply(c, resource, ident):
    c.send("<iq type='set' id='%s'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
           "<resource>%s</resource></bind></iq>" % (ident, resource))
    return c.read_until("<iq [^>]*id='%s'.*?</iq>" % ident)


def assert_resource_constraint(got):
    assert re.search("type='error'><error type='wait'><resource-constraint xmlns='%s'/>"
                     "<text xmlns='%s'>too many sessions for this account</text>"
                     "</error></iq>$" % (STANZAS, STANZAS), got), got


def test_sessions_per_account():
    with Server(workers=2, users=USERS,
                config_text="c2s.max_sessions_per_account = 3\n") as s:
        # Three sessions, spread over the workers by SO_REUSEPORT.
        sessions = {}
        for r in ("r0", "r1", "r2"):
            c = Client(s.port)
            assert c.login("juliet", "r0m30!", resource=r) == "juliet@localhost/" + r
            sessions[r] = c
        # The fourth is refused, and the stream stays usable.
        d = authenticated(s, "juliet", "r0m30!")
        assert_resource_constraint(bind_reply(d, "r3", "b4"))
        assert re.search(r"cannot bind juliet@localhost/r3: account has reached its "
                         r"session limit \(c2s.max_sessions_per_account = 3\)",
                         s.log_text()), s.log_text()[-2000:]
        # Another account is not affected.
        e = Client(s.port)
        assert e.login("romeo", "jul13t?", resource="r0") == "romeo@localhost/r0"
        # Taking over the same full JID is not refused by the limit.
        t = Client(s.port)
        assert t.login("juliet", "r0m30!", resource="r1") == "juliet@localhost/r1"
        old = sessions["r1"].read_all_until_close()
        assert re.search(stream_error_re("conflict"), old), old
        sessions["r1"] = t
        # A logout frees a place (the worker removes the entry on close).
        assert s.status()["master"]["sessions"] == 4
        sessions.pop("r0").close()
        wait_for(lambda: s.status()["master"]["sessions"] == 3,
                 what="r0 gone from the session table")
        f = authenticated(s, "juliet", "r0m30!")
        assert "<jid>juliet@localhost/r3</jid>" in bind_reply(f, "r3", "b5")
        g = authenticated(s, "juliet", "r0m30!")
        assert_resource_constraint(bind_reply(g, "r4", "b6"))
        # SIGHUP: a higher limit lets the same client bind now.
        reload_to(s, "c2s.max_sessions_per_account = 4\n", 2)
        assert "<jid>juliet@localhost/r4</jid>" in bind_reply(g, "r4", "b7")
        h = authenticated(s, "juliet", "r0m30!")
        assert_resource_constraint(bind_reply(h, "r5", "b8"))
        for c in list(sessions.values()) + [d, e, f, g, h]:
            c.close()


def test_more_sessions_than_the_route_buffer():
    """c2s.max_sessions_per_account above 64: every session of the
    account is reached by what goes to all of them (here the XEP-0191
    block push), not only the first 64 the router used to list."""
    n = 70
    with Server(workers=2, users=USERS,
                overrides={"c2s.max_sessions_per_account": str(n)}) as s:
        clients = []
        for i in range(n):
            c = authenticated(s, "juliet", "r0m30!")
            got = bind_reply(c, "r%d" % i, "bind%d" % i)
            assert "type='result'" in got, got
            clients.append(c)
        clients[0].send("<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'>"
                        "<item jid='x@example.net'/></block></iq>")
        push = "<block xmlns='urn:xmpp:blocking'><item jid='x@example.net'/></block>"
        for i, c in enumerate(clients):
            got = c.read_until(re.escape(push))
            assert push in got, (i, got)


def test_long_resources_cannot_take_the_pool():
    """A 16-record table has 16 long-JID entries, one per account: a
    second long resource of the same account gets a generated resource
    (RFC 6120 7.7: the server may override it) instead of an entry, and
    other accounts still get theirs."""
    long_res = "x" * 200
    with Server(workers=2, users=USERS, overrides={"session_table_size": "16"}) as s:
        a = Client(s.port)
        assert a.login("juliet", "r0m30!", resource=long_res) == "juliet@localhost/" + long_res
        b = Client(s.port)
        jb = b.login("juliet", "r0m30!", resource=long_res + "y")
        assert re.match("juliet@localhost/[0-9a-f]{16}$", jb), jb
        assert "resource of 201 bytes overridden: no long-JID entry for it" \
            in s.log_text()
        c = Client(s.port)
        assert c.login("romeo", "jul13t?", resource=long_res) == "romeo@localhost/" + long_res
        for x in (a, b, c):
            x.close()


def refused(port, host="127.0.0.1"):
    """Connect and send a stream header: True if the server answered
    with its header and <policy-violation/> and closed."""
    c = Client(port, host=host)
    try:
        c.send(stream_header())
    except OSError:
        pass
    rest = c.read_all_until_close()
    c.close()
    if "<stream:features>" in rest:
        return False
    assert re.match(SERVER_HEADER + stream_error_re("policy-violation") + "$", rest), rest
    assert REFUSED_TEXT in rest, rest
    return True


def open_stream(port, host="127.0.0.1"):
    c = Client(port, host=host)
    c.send(stream_header())
    c.read_until(SERVER_HEADER)
    c.read_until(FEATURES)
    return c


def per_worker(s, total):
    """Open connections per worker once `total` are counted."""
    st = wait_for(lambda: (lambda x: x if sum(w["connections"] for w in x["workers"]) == total
                           else None)(s.status()), what="%d connections counted" % total)
    return [w["connections"] for w in st["workers"]]


def spread(s, port, limit):
    """`limit` streams from 127.0.0.1 on more than one worker (the kernel
    picks the worker: reconnect until both have some; bounded)."""
    clients = [open_stream(port) for _ in range(limit)]
    for _ in range(40):
        by_slot = per_worker(s, limit)
        if min(by_slot) > 0:
            return clients, by_slot
        clients.pop().close()
        per_worker(s, limit - 1)
        clients.append(open_stream(port))
    raise AssertionError("connections never spread over the workers")


def test_connections_per_address():
    limit = 4
    with Server(workers=2, overrides={"c2s.addresses": "127.0.0.1 ::1"},
                config_text="c2s.max_connections_per_ip = %d\n" % limit) as s:
        clients, by_slot = spread(s, s.port, limit)
        # Each worker holds fewer than the limit: only a count shared by
        # the workers refuses the next ones, whichever worker they reach.
        assert max(by_slot) < limit, by_slot
        # One entry per (address, worker) in the shared table.
        m = s.status()["master"]
        assert (m["addresses"], m["address_capacity"]) == (2, 2 * 65536), m
        for _ in range(6):
            assert refused(s.port)
        assert len(re.findall(r"stream error <policy-violation/>: %s "
                              r"\(c2s.max_connections_per_ip = %d\)" % (REFUSED_TEXT, limit),
                              s.log_text())) == 6
        # The direct TLS port counts the same address: closed at once.
        raw = socket.create_connection(("127.0.0.1", s.tls_port), timeout=5)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            ctx.wrap_socket(raw, server_hostname="localhost").close()
            raise AssertionError("TLS handshake over the limit succeeded")
        except (ssl.SSLError, OSError):
            raw.close()
        # Another address is not affected.
        v6 = open_stream(s.port, host="::1")
        assert s.status()["master"]["addresses"] == 3
        # A closed connection makes room again.
        clients.pop().close()
        wait_for(lambda: not refused_or_keep(s, clients), what="a place after a close")
        assert refused(s.port)
        # SIGHUP: a higher limit applies to the next connections.
        reload_to(s, "c2s.max_connections_per_ip = %d\n" % (limit + 2), 2)
        clients.append(open_stream(s.port))
        clients.append(open_stream(s.port))
        assert refused(s.port)
        for c in clients + [v6]:
            c.close()


def refused_or_keep(s, clients):
    """Try one more stream: keep it when accepted; True when refused."""
    c = Client(s.port)
    try:
        c.send(stream_header())
        got = c.read_until("<stream:features>.*?</stream:features>|</stream:stream>")
    except (AssertionError, OSError):
        got = ""
    if got.startswith("<stream:features>"):
        clients.append(c)
        return False
    c.close()
    return True


def test_killed_worker_connections_stop_counting():
    limit = 6
    with Server(workers=2, config_text="c2s.max_connections_per_ip = %d\n" % limit) as s:
        clients, by_slot = spread(s, s.port, limit)
        assert refused(s.port)
        st = s.status()
        victim = 0
        old_pid = st["workers"][victim]["pid"]
        os.kill(old_pid, signal.SIGKILL)
        wait_for(lambda: (lambda x: x and x["workers"][victim]["pid"] not in (0, old_pid)
                          and pid_alive(x["workers"][victim]["pid"]))(s.status()),
                 what="slot respawned")
        alive = [c for c in clients if not c.is_closed(timeout=0.2)]
        assert len(alive) == limit - by_slot[victim], (len(alive), by_slot)
        # The master dropped the dead worker's entry with its count.
        assert s.status()["master"]["addresses"] == 1
        # Exactly the dead worker's connections are free again.
        more = [open_stream(s.port) for _ in range(by_slot[victim])]
        assert refused(s.port)
        for c in alive + more:
            c.close()


if __name__ == "__main__":
    run_tests([test_sessions_per_account, test_more_sessions_than_the_route_buffer,
               test_long_resources_cannot_take_the_pool,
               test_connections_per_address,
               test_killed_worker_connections_stop_counting])

"""Black-box tests of the HTTP/1.1 front (worker/http.c, httpconn.c),
over real sockets on 127.0.0.1 and ::1, plain and TLS, with Python's
http.client where a real client fits and raw bytes for bad requests:

- routes: 200 with Date, Server and Content-Length; HEAD gives the GET's
  headers and no body; 404 for an unknown path; 405 with Allow;
- keep-alive: several requests on one connection (HTTP/1.1 by default,
  HTTP/1.0 with Connection: keep-alive), Connection: close honoured,
  HTTP/1.0 closes by default; pipelined requests answered in order;
  chunked request bodies accepted;
- every refusal: 400, 413, 414, 431, 505 on the wire and one info line
  with the peer address in the log; the connection then closes;
- admin routes answer 403 to peers outside http.admin_addresses (IPv4
  and IPv6 prefixes);
- http.max_connections (503), http.request_timeout (408),
  http.idle_timeout (closed), with bounded waits;
- HTTPS on http.tls_port with the c2s certificate;
- the c2s listener keeps working while HTTP requests are in flight;
- admin addresses and limits follow a reload; http.port = 0 listens on
  nothing;
- xmppd -t refuses http.tls_port without a certificate.
"""
import http.client
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (XMPPD, Client, Server, free_port,  # noqa: E402
                     run_tests, test_certificate, wait_for)

LIVE = "/health/live"       # the front's own route (liveness, any peer)
ADMIN = "/metrics"          # an admin route (http.admin_addresses only)


def http_server(workers=1, config_text="", **over):
    overrides = {"http.addresses": "127.0.0.1 ::1"}
    overrides.update(over)
    return Server(workers=workers, overrides=overrides, config_text=config_text)


def connect(port, host="127.0.0.1"):
    return socket.create_connection((host, port), timeout=10)


def read_response(f, head=False):
    """(status, {lower-case header: value}, body) of one response."""
    line = f.readline()
    assert line.startswith(b"HTTP/1.1 "), line
    status = int(line.split()[1])
    headers = {}
    while True:
        h = f.readline()
        assert h.endswith(b"\r\n"), h
        if h == b"\r\n":
            break
        name, value = h.decode().split(":", 1)
        assert name.lower() not in headers, name
        headers[name.lower()] = value.strip()
    n = int(headers["content-length"])
    body = b"" if head else f.read(n)
    assert len(body) == (0 if head else n)
    return status, headers, body


def at_eof(sock):
    """True when the server closed the connection (bounded by the
    socket's timeout: the test fails rather than waits forever)."""
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except ConnectionResetError:
        return True


def raw_request(port, data, host="127.0.0.1"):
    """Send raw bytes, read one response and check that the server then
    closes: the answer to a request it refuses."""
    with connect(port, host) as sock:
        sock.sendall(data)
        f = sock.makefile("rb")
        resp = read_response(f)
        assert at_eof(sock)
        return resp


def refusal_logged(s, status, sockname=None):
    pat = r" info: h\d+ %s: %d: " % (
        re.escape(sockname) if sockname else r"\S+", status)
    wait_for(lambda: re.search(pat, s.log_text()), what="log line %s" % pat)


def test_routes():
    with http_server() as s:
        c = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=10)
        c.request("GET", LIVE)
        r = c.getresponse()
        assert (r.status, r.read()) == (200, b"ok\n")
        assert r.getheader("Content-Length") == "3"
        assert r.getheader("Content-Type").startswith("text/plain")
        assert r.getheader("Server").startswith("xmppd/")
        assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT",
                            r.getheader("Date")), r.getheader("Date")
        # HEAD: the GET's headers, no body
        c.request("HEAD", LIVE)
        r = c.getresponse()
        assert (r.status, r.read()) == (200, b"")
        assert r.getheader("Content-Length") == "3"
        # a query string does not change the route
        c.request("GET", LIVE + "?verbose=1")
        r = c.getresponse()
        assert (r.status, r.read()) == (200, b"ok\n")
        c.request("GET", "/no/such/thing")
        r = c.getresponse()
        assert r.status == 404 and r.getheader("Content-Length") == str(len(r.read()))
        c.request("POST", LIVE, body=b"x=1")
        r = c.getresponse()
        r.read()
        assert r.status == 405
        assert r.getheader("Allow") == "GET, HEAD"
        c.request("DELETE", LIVE)
        r = c.getresponse()
        r.read()
        assert r.status == 405
        # all of it over one connection, and over IPv6 too
        c6 = http.client.HTTPConnection("::1", s.http_port, timeout=10)
        c6.request("GET", LIVE)
        r = c6.getresponse()
        assert (r.status, r.read()) == (200, b"ok\n")
        c.close()
        c6.close()
        refusal_logged(s, 404)
        refusal_logged(s, 405)


def test_keep_alive():
    with http_server() as s:
        c = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=10)
        c.request("GET", LIVE)
        r = c.getresponse()
        r.read()
        sock = c.sock
        for i in range(5):
            c.request("GET", LIVE if i % 2 == 0 else "/missing")
            r = c.getresponse()
            r.read()
            assert r.status == (200 if i % 2 == 0 else 404)
            assert r.getheader("Connection") is None
        assert c.sock is sock, "the connection was not kept"
        c.close()
        # Connection: close is honoured: answered, then closed
        with connect(s.http_port) as sock:
            sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % LIVE.encode())
            status, h, body = read_response(sock.makefile("rb"))
            assert (status, body, h["connection"]) == (200, b"ok\n", "close")
            assert at_eof(sock)
        # HTTP/1.0 closes by default ...
        with connect(s.http_port) as sock:
            sock.sendall(b"GET %s HTTP/1.0\r\n\r\n" % LIVE.encode())
            status, h, body = read_response(sock.makefile("rb"))
            assert (status, body, h["connection"]) == (200, b"ok\n", "close")
            assert at_eof(sock)
        # ... and stays open when it asks for keep-alive
        with connect(s.http_port) as sock:
            f = sock.makefile("rb")
            for _ in range(3):
                sock.sendall(b"GET %s HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                             % LIVE.encode())
                status, h, body = read_response(f)
                assert (status, h["connection"]) == (200, "keep-alive")


def test_pipelining_and_chunked():
    with http_server() as s:
        with connect(s.http_port, "::1") as sock:
            reqs = (b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n"
                    b"GET /first-missing HTTP/1.1\r\nHost: a\r\n\r\n"
                    b"HEAD %s HTTP/1.1\r\nHost: a\r\n\r\n"
                    b"POST %s HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
                    b"GET /second-missing HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                    % (LIVE.encode(), LIVE.encode(), LIVE.encode()))
            sock.sendall(reqs)
            f = sock.makefile("rb")
            got = [read_response(f), read_response(f), read_response(f, head=True),
                   read_response(f), read_response(f)]
            assert [g[0] for g in got] == [200, 404, 200, 405, 404], [g[0] for g in got]
            assert got[0][2] == b"ok\n" and got[2][1]["content-length"] == "3"
            assert at_eof(sock)
        # the order of 404 lines in the log is the order of the requests
        log = s.log_text()
        assert log.index("GET /first-missing") < log.index("GET /second-missing")
        # Many pipelined requests sent before reading any answer: their
        # responses (far more than the front keeps unwritten) all come,
        # in order, once the client reads.
        n = 3000
        with connect(s.http_port) as sock:
            data = b"".join(b"GET /health/live?n=%d HTTP/1.1\r\nHost: p\r\n\r\n" % i
                            if i % 100 else b"GET /gap-%d HTTP/1.1\r\nHost: p\r\n\r\n" % i
                            for i in range(n))
            # sent from a thread: the server stops reading while its
            # answers are unread, so one thread doing both could block
            sender = threading.Thread(target=sock.sendall, args=(data,))
            sender.start()
            f = sock.makefile("rb")
            got = [read_response(f)[0] for _ in range(n)]
            sender.join(timeout=10)
            assert not sender.is_alive()
            assert got == [200 if i % 100 else 404 for i in range(n)]
        log = s.log_text()
        assert [int(m) for m in re.findall(r"GET /gap-(\d+)", log)] == list(range(0, n, 100))


def test_bad_requests():
    big = 2048
    with http_server(**{"http.max_header_size": "2K", "http.max_url_size": "1K",
                        "http.max_body_size": "1K"}) as s:
        cases = [
            (400, b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n"),
            (400, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 40),
            (400, b"GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"),
            (505, b"GET %s HTTP/2.0\r\n\r\n" % LIVE.encode()),
            (505, b"GET %s HTTP/3.1\r\nHost: x\r\n\r\n" % LIVE.encode()),
            (414, b"GET /" + b"a" * 1500 + b" HTTP/1.1\r\n\r\n"),
            # over the header limit while still in the request line
            (414, b"GET /" + b"a" * 3 * big + b" HTTP/1.1\r\n\r\n"),
            (431, b"GET / HTTP/1.1\r\nX-Big: " + b"b" * big + b"\r\n\r\n"),
            (431, b"GET / HTTP/1.1\r\n" + b"X-A: 1\r\n" * 300 + b"\r\n"),
            (413, b"POST %s HTTP/1.1\r\nContent-Length: 1025\r\n\r\n" % LIVE.encode()),
            (413, b"POST %s HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"400\r\n" % LIVE.encode() + b"z" * 1024 + b"\r\n1\r\nz\r\n0\r\n\r\n"),
        ]
        for want, data in cases:
            with connect(s.http_port) as sock:
                name = "%s:%d" % sock.getsockname()[:2]
                sock.sendall(data)
                status, h, body = read_response(sock.makefile("rb"))
                assert status == want, (want, status, data[:60])
                assert h["connection"] == "close" and body.startswith(b"%d " % want)
                assert at_eof(sock)
            refusal_logged(s, want, name)
        # a body just under the limit is read whole (405: the route is GET)
        with connect(s.http_port) as sock:
            sock.sendall(b"POST %s HTTP/1.1\r\nHost: a\r\nContent-Length: 1024\r\n\r\n"
                         % LIVE.encode() + b"y" * 1024
                         + b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % LIVE.encode())
            f = sock.makefile("rb")
            assert read_response(f)[0] == 405
            assert read_response(f)[:3:2] == (200, b"ok\n")
        # the server is fine after all of it
        c = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=10)
        c.request("GET", LIVE)
        assert c.getresponse().status == 200


def test_smuggling():
    """What a proxy in front could read otherwise is refused with 400
    and the connection closes (RFC 9112 5.1, 5.2, 6.1, 6.3): whitespace
    in or before a header name, obs-fold (even after an empty value),
    Content-Length with Transfer-Encoding, two Content-Lengths, a
    Transfer-Encoding whose last coding is not chunked, a bare CR, a NUL,
    a chunk size over 64 bits; an HTTP/1.1 request without Host or one
    with two."""
    post = b"POST %s HTTP/1.1\r\nHost: a\r\n" % LIVE.encode()
    cases = [
        post + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        b"GET %s HTTP/1.1\r\n Host: a\r\n\r\n" % LIVE.encode(),
        b"GET %s HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n" % LIVE.encode(),
        b"GET %s HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n" % LIVE.encode(),
        post + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
        post + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        post + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        post + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nxy",
        post + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        post + b"X: a\rTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        post + b"X: a\0b\r\n\r\n",
        post + b"Transfer-Encoding: chunked\r\n\r\n1FFFFFFFFFFFFFFFF\r\n",
        # RFC 9112 3.2: no Host in HTTP/1.1, two Hosts
        b"GET %s HTTP/1.1\r\nX: y\r\n\r\n" % LIVE.encode(),
        b"GET %s HTTP/1.1\r\n\r\n" % LIVE.encode(),
        b"GET %s HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n" % LIVE.encode(),
        b"GET %s HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n" % LIVE.encode(),
    ]
    with http_server() as s:
        for data in cases:
            with connect(s.http_port) as sock:
                name = "%s:%d" % sock.getsockname()[:2]
                sock.sendall(data)
                status, h, body = read_response(sock.makefile("rb"))
                assert (status, h.get("connection")) == (400, "close"), (status, data)
                assert at_eof(sock), data
            refusal_logged(s, 400, name)
        # trailers of a chunked body are dropped, not taken for the path
        # or headers of the request: GET then 405 for POST, in order
        with connect(s.http_port) as sock:
            sock.sendall(b"GET %s?q=1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n" % LIVE.encode()
                         + post + b"Transfer-Encoding: chunked\r\n\r\n"
                         b"1\r\nx\r\n0\r\nT: 1\r\n\r\n"
                         b"GET %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % LIVE.encode())
            f = sock.makefile("rb")
            got = [read_response(f) for _ in range(3)]
            assert [g[0] for g in got] == [200, 405, 200], [g[0] for g in got]
            assert got[0][2] == b"ok\n"
            assert at_eof(sock)
        # Transfer-Encoding in HTTP/1.0: answered, then closed even with
        # keep-alive asked (RFC 9112 6.1)
        with connect(s.http_port) as sock:
            sock.sendall(b"GET %s HTTP/1.0\r\nConnection: keep-alive\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" % LIVE.encode())
            status, h, body = read_response(sock.makefile("rb"))
            assert (status, h.get("connection"), body) == (200, "close", b"ok\n")
            assert at_eof(sock)

def test_https_flood_fair():
    """One HTTPS client pipelining requests as fast as it can (and
    reading the answers) does not keep the worker from its XMPP
    clients: streams open meanwhile.  (The front once read a TLS
    connection until OpenSSL ran dry, which a fast client never lets
    happen.)  The client is openssl s_client fed by yes(1): C, fast
    enough to keep the server's socket from running dry."""
    tls_port = free_port()
    with http_server(**{"http.tls_port": str(tls_port)}) as s:
        req = "GET %s HTTP/1.1\r\nHost: f\r\n\r" % LIVE
        flood = subprocess.Popen(
            "yes '%s' | exec openssl s_client -quiet -connect 127.0.0.1:%d"
            % (req, tls_port), shell=True, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            start_new_session=True)
        got = [0]

        def drain():
            while True:
                data = flood.stdout.read1(1 << 20)
                if not data:
                    return
                got[0] += len(data)
        th = threading.Thread(target=drain, daemon=True)
        th.start()
        try:
            # 100 answers' worth of bytes: the flood is on
            wait_for(lambda: got[0] > 20000, timeout=30, what="the flood going")
            for _ in range(3):
                c = Client(s.port)
                assert "starttls" in c.open()
                c.close()
            assert flood.poll() is None, "the flood ended early"
            before = got[0]
            wait_for(lambda: got[0] > before, what="the flood still answered")
        finally:
            os.killpg(flood.pid, signal.SIGKILL)
            flood.wait()
            th.join(timeout=10)


def test_admin_addresses():
    # loopback is not an admin address here: 403 over IPv4 and IPv6
    with http_server(**{"http.admin_addresses": "192.0.2.0/24 2001:db8::/32"}) as s:
        for host in ("127.0.0.1", "::1"):
            c = http.client.HTTPConnection(host, s.http_port, timeout=10)
            c.request("GET", ADMIN)
            r = c.getresponse()
            assert (r.status, r.read()) == (403, b"403 Forbidden\n"), host
            # liveness is for load balancers, wherever they are
            c.request("GET", LIVE)
            r = c.getresponse()
            assert (r.status, r.read()) == (200, b"ok\n"), host
            # the refusal keeps the connection: a 404 next on it
            c.request("GET", "/nothing")
            assert c.getresponse().status == 404
            c.close()
        refusal_logged(s, 403)
    # an IPv4-mapped entry is the IPv4 address it maps (peers are
    # matched that way): 127.0.0.1 is let in
    with http_server(**{"http.admin_addresses": "::ffff:127.0.0.0/104"}) as s:
        for host, want in (("127.0.0.1", 200), ("::1", 403)):
            c = http.client.HTTPConnection(host, s.http_port, timeout=10)
            c.request("GET", ADMIN)
            assert c.getresponse().status == want, host
            c.close()
    # IPv6 loopback only: ::1 is let in, 127.0.0.1 is not
    with http_server(**{"http.admin_addresses": "::1/128"}) as s:
        for host, want in (("::1", 200), ("127.0.0.1", 403)):
            c = http.client.HTTPConnection(host, s.http_port, timeout=10)
            c.request("GET", ADMIN)
            assert c.getresponse().status == want, host
            c.close()


def test_https():
    cert, _ = test_certificate()
    ctx = ssl.create_default_context(cafile=cert)
    ctx.check_hostname = False
    tls_port = free_port()
    with http_server(**{"http.tls_port": str(tls_port)}) as s:
        for host in ("127.0.0.1", "::1"):
            c = http.client.HTTPSConnection(host, tls_port, timeout=10, context=ctx)
            for _ in range(3):
                c.request("GET", LIVE)
                r = c.getresponse()
                assert (r.status, r.read()) == (200, b"ok\n")
            c.request("GET", "/nope")
            assert c.getresponse().status == 404
            c.close()
        # a refusal over TLS: status, then closed
        with ctx.wrap_socket(connect(tls_port), server_hostname="localhost") as t:
            t.sendall(b"GET / HTTP/1.1\r\nX: " + b"q" * 9000 + b"\r\n\r\n")
            assert read_response(t.makefile("rb"))[0] == 431
            assert at_eof(t)
        # plain HTTP still answers beside it
        c = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=10)
        c.request("GET", LIVE)
        assert c.getresponse().status == 200


def test_connection_limit():
    with http_server(**{"http.max_connections": "2"}) as s:
        keep = []
        for _ in range(2):
            c = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=10)
            c.request("GET", LIVE)
            assert c.getresponse().read() == b"ok\n"
            keep.append(c)
        with connect(s.http_port) as sock:
            name = "%s:%d" % sock.getsockname()[:2]
            sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % LIVE.encode())
            status, h, body = read_response(sock.makefile("rb"))
            assert (status, h["connection"]) == (503, "close")
            assert at_eof(sock)
        refusal_logged(s, 503, name)
        # one closes: room for another
        keep.pop().close()

        def served():
            c = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=10)
            c.request("GET", LIVE)
            ok = c.getresponse().status == 200
            c.close()
            return ok
        wait_for(served, what="a connection served once one closed")
        for c in keep:
            c.close()


def test_timeouts():
    with http_server(**{"http.request_timeout": "1s", "http.idle_timeout": "1s"}) as s:
        # slow request: 408, then closed
        with connect(s.http_port) as sock:
            name = "%s:%d" % sock.getsockname()[:2]
            sock.sendall(b"GET %s HTTP/1.1\r\nHost: sl" % LIVE.encode())
            status, h, body = read_response(sock.makefile("rb"))
            assert (status, h["connection"]) == (408, "close")
            assert at_eof(sock)
        refusal_logged(s, 408, name)
        # idle keep-alive connection: closed without a word
        with connect(s.http_port) as sock:
            sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % LIVE.encode())
            f = sock.makefile("rb")
            assert read_response(f)[0] == 200
            assert f.read() == b""
        # a connection that never sends a byte is closed too
        with connect(s.http_port) as sock:
            assert sock.recv(100) == b""


def test_c2s_alongside():
    with http_server(workers=2) as s:
        half = connect(s.http_port)
        half.sendall(b"GET %s HTTP/1.1\r\nHo" % LIVE.encode())
        c = Client(s.port)
        feats = c.open()
        assert "starttls" in feats, feats
        c.starttls()
        h = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=10)
        h.request("GET", LIVE)
        assert h.getresponse().status == 200
        half.sendall(b"st: x\r\n\r\n")
        assert read_response(half.makefile("rb"))[0] == 200
        half.close()
        c.close()
        h.close()


def test_reload_and_off():
    # limits and admin addresses follow SIGHUP; port 0 is no listener
    with http_server(config_text="http.admin_addresses = 192.0.2.1\n") as s:
        c = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=10)
        c.request("GET", ADMIN)
        assert c.getresponse().status == 403
        c.close()
        s.write_config("http.admin_addresses = 127.0.0.0/8\n"
                       "http.max_url_size = 256\n")
        os.kill(s.master_pid, signal.SIGHUP)
        wait_for(lambda: all(w["generation"] == 2 for w in s.status()["workers"]),
                 what="generation 2 in every worker")
        c = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=10)
        c.request("GET", ADMIN)
        r = c.getresponse()
        assert r.status == 200 and b"xmppd_build_info" in r.read()
        c.request("GET", "/" + "x" * 300)
        assert c.getresponse().status == 414
        c.close()
    with http_server(**{"http.port": "0"}) as s:
        try:
            socket.create_connection(("127.0.0.1", s.http_port), timeout=5).close()
            raise AssertionError("http.port = 0 still listens")
        except ConnectionRefusedError:
            pass


def test_config_check():
    cert, key = test_certificate()
    s = http_server()
    base = [XMPPD, "-t", "-c", s.config]
    over = []
    for k, v in s.overrides.items():
        over += ["-o", "%s=%s" % (k, v)]
    r = subprocess.run(base + over + ["-o", "tls.certificate=", "-o", "tls.key=",
                                      "-o", "tls.required=no", "-o", "c2s.tls_port=0",
                                      "-o", "http.tls_port=5281"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "'http.tls_port' is 5281 but 'tls.certificate' is empty" in r.stderr, r.stderr
    r = subprocess.run(base + over + ["-o", "http.admin_addresses=127.0.0.1/33"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "'http.admin_addresses': '127.0.0.1/33'" in r.stderr, r.stderr
    r = subprocess.run(base + over + ["-o", "http.port=%s" % s.port],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "'http.port' and 'c2s.port'" in r.stderr, r.stderr
    r = subprocess.run(base + over + ["-o", "http.port=0"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

def test_no_descriptor_leak():
    """Connections cut in the middle of a request by a reload (SIGHUP)
    or a worker's crash leave no descriptor behind: the master's and
    the worker's counts in /proc/PID/fd come back to what they were."""
    def nfds(pid):
        return len(os.listdir("/proc/%d/fd" % pid))

    def served():
        c = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=10)
        c.request("GET", LIVE)
        ok = c.getresponse().read() == b"ok\n"
        c.close()
        return ok

    def half_requests(n):
        socks = [connect(s.http_port) for _ in range(n)]
        for sock in socks:
            sock.sendall(b"GET %s HTTP/1.1\r\nHo" % LIVE.encode())
        return socks

    with http_server() as s:
        assert served()
        wpid = s.worker_pids()[0]
        master_fds, worker_fds = nfds(s.master_pid), nfds(wpid)
        # reload with requests half sent: they complete, then all closes
        socks = half_requests(20)
        wait_for(lambda: nfds(wpid) >= worker_fds + 20, what="20 connections in")
        s.write_config("http.max_url_size = 2K\n")
        os.kill(s.master_pid, signal.SIGHUP)
        wait_for(lambda: all(w["generation"] == 2 for w in s.status()["workers"]),
                 what="generation 2")
        for sock in socks:
            sock.sendall(b"st: a\r\nConnection: close\r\n\r\n")
            assert read_response(sock.makefile("rb"))[:3:2] == (200, b"ok\n")
            assert at_eof(sock)
            sock.close()
        assert s.worker_pids() == [wpid]
        wait_for(lambda: nfds(wpid) == worker_fds,
                 what="worker back to %d descriptors" % worker_fds)
        assert nfds(s.master_pid) == master_fds
        # the worker dies with requests half sent: the clients see the
        # end, the master and the new worker hold what they held
        socks = half_requests(20)
        wait_for(lambda: nfds(wpid) >= worker_fds + 20, what="20 connections in")
        os.kill(wpid, signal.SIGKILL)
        for sock in socks:
            assert at_eof(sock)
            sock.close()
        wait_for(lambda: s.worker_pids()[0] not in (0, wpid) and s.status_ok(),
                 what="a new worker")
        wait_for(served, what="the new worker serving")
        wpid = s.worker_pids()[0]
        wait_for(lambda: nfds(wpid) == worker_fds,
                 what="new worker with %d descriptors" % worker_fds)
        wait_for(lambda: nfds(s.master_pid) == master_fds,
                 what="master back to %d descriptors" % master_fds)


if __name__ == "__main__":
    run_tests([test_routes, test_keep_alive, test_pipelining_and_chunked,
               test_bad_requests, test_smuggling, test_admin_addresses, test_https,
               test_https_flood_fair,
               test_connection_limit, test_timeouts, test_c2s_alongside,
               test_reload_and_off, test_no_descriptor_leak,
               test_config_check])

"""Helpers for the RFC 6121 black-box tests (test_im.py): a logged-in
client that splits the server's output into stanzas, waits for exact
stanzas in any order (or checks their order), answers roster pushes and
server pings like a real client, and asserts silence.  Every wait is
bounded.
"""
import os
import re
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Client, Server, pid_alive, wait_for  # noqa: E402

STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_ROSTER = "jabber:iq:roster"
PW = {"juliet": "r0m30!", "romeo": "jul13t?", "nurse": "s3cret",
      "benvolio": "b3nv0l10", "mercutio": "qu33nMab", "tybalt": "pr1nce0fcats"}
USERS = [("%s@localhost" % u, p) for u, p in PW.items()]

# One top-level element at the start of the buffer.
_STANZA = re.compile(
    rb"\s*(<(message|presence|iq)\b(?:[^>'\"]|'[^']*'|\"[^\"]*\")*?"
    rb"(?:/>|>.*?</\2>)|<stream:error>.*?</stream:error>|</stream:stream>)",
    re.S)
_TAG = re.compile(rb"<(/?)(message|presence|iq)\b(?:[^>'\"]|'[^']*'|\"[^\"]*\")*?(/?)>")


def _nested_end(buf, m):
    """End of the stanza _STANZA matched at the start of buf, counting
    elements of the same name inside it (a XEP-0280 carbon or a XEP-0297
    forward carries a <message/> in a <message/>); None: not all here."""
    name = m.group(2)
    if name is None:
        return m.end()
    depth = 0
    for t in _TAG.finditer(buf, m.start(1)):
        if t.group(2) != name:
            continue
        if t.group(1):
            depth -= 1
        elif not t.group(3):
            depth += 1
        elif depth == 0:
            return t.end()      # <name .../> at the top
        if depth == 0:
            return t.end()
    return None


_PING = re.compile(r"<iq from='localhost' id='([^']+)' to='[^']+' type='get'>"
                   r"<ping xmlns='urn:xmpp:ping'/></iq>")
_SID = re.compile(r"<stanza-id xmlns='urn:xmpp:sid:0' id='([0-9]+)' by='([^']+)'/>(?=</message>|<delay )")
_PUSH = re.compile(r"<iq id='([^']+)' type='set'><query xmlns='jabber:iq:roster'")


# Findings that do not stop a test (so that one run shows every problem);
# the test fails at its end if there are any (see checked()).
SOFT = []


def soft(cond, what):
    if not cond:
        SOFT.append(what)
    return cond


def soft_expect(im, want, what, timeout=2.0):
    """expect(), but a miss is recorded instead of raised."""
    try:
        return im.expect(want, timeout)
    except AssertionError as e:
        SOFT.append("%s\n    (%s)" % (what, str(e).splitlines()[0]))
        return None


def checked(fn):
    """Run a test; fail at its end with every soft finding."""
    def run():
        del SOFT[:]
        fn()
        if SOFT:
            found = list(SOFT)
            del SOFT[:]
            raise AssertionError("%d finding(s):\n  - %s" % (len(found), "\n  - ".join(found)))
    run.__name__ = fn.__name__
    return run


def exact(text):
    return re.compile(re.escape(text))


def _want_rx(want):
    # A matcher object with fullmatch(text) (test_muc.py's XML trees)
    # is used as it is, like a compiled regex.
    if isinstance(want, re.Pattern) or hasattr(want, "fullmatch"):
        return want
    return exact(want)


def _show(want):
    if isinstance(want, re.Pattern):
        return want.pattern
    return want if isinstance(want, str) else repr(want)


def item_rx(jid, sub, ask=False, approved=False, name=None, groups=()):
    """A roster <item/> with exactly these attributes, in any order
    (groups in the given order)."""
    attrs = [("jid", jid), ("subscription", sub)]
    if ask:
        attrs.append(("ask", "subscribe"))
    if approved:
        attrs.append(("approved", "true"))
    if name is not None:
        attrs.append(("name", name))
    look = "".join("(?=[^>]* %s='%s')" % (k, re.escape(v)) for k, v in attrs)
    body = "(?: [a-z]+='[^']*'){%d}" % len(attrs)
    if groups:
        tail = ">%s</item>" % "".join("<group>%s</group>" % re.escape(g)
                                      for g in groups)
    else:
        tail = "(?:/>|></item>)"
    return "<item%s%s%s" % (look, body, tail)


def push_rx(ver, item):
    """A roster push (RFC 6121 2.1.6) as xmppd sends it: no from/to."""
    v = r"\d+" if ver is None else str(ver)
    return re.compile(r"<iq id='push-[^']+' type='set'><query xmlns='jabber:iq:roster' "
                      r"ver='%s'>%s</query></iq>" % (v, item))


def error_rx(kind, frm, id_, to, etype, cond):
    return exact("<%s from='%s' id='%s' to='%s' type='error'><error type='%s'>"
                 "<%s xmlns='%s'/></error></%s>" % (kind, frm, id_, to, etype, cond,
                                                    STANZAS, kind))


_OWN_PRESENCE = re.compile(r"<presence(?![^>]*\bto=)(?![^>]*type='(probe|error|subscribe"
                           r"|subscribed|unsubscribe|unsubscribed)')")


class IM:
    """A logged-in client.  Stanzas are queued in arrival order; expect()
    takes the first queued one that matches (exactly, or a regex)."""

    def __init__(self, server, user, resource, name=None, client=None):
        self.server = server
        self.user = user
        self.bare = "%s@localhost" % user
        self.c = client or Client(server.port)
        self.jid = self.c.login(user, PW[user], resource=resource)
        assert self.jid == "%s/%s" % (self.bare, resource), self.jid
        self.name = name or self.jid
        self.q = []             # (seq, text)
        self.stanza_ids = []    # archive ids taken out of messages
        self.echoes = 0         # own presence echoes still to come
        self.seq = 0
        self.closed = False
        self.n = 0

    # ---- I/O ----
    def send(self, text):
        # RFC 6121 4.2.2 / 4.5.2: the server sends the session's own
        # broadcast presence back to it too; those echoes are swallowed
        # here (and counted) so that tests see only what others send.
        if _OWN_PRESENCE.match(text):
            self.echoes += 1
        self.c.send(text)

    def _split(self):
        while True:
            m = _STANZA.match(self.c.buf)
            if not m:
                return
            end = _nested_end(self.c.buf, m)
            if end is None:
                return
            st = self.c.buf[m.start(1):end].decode()
            self.c.buf = self.c.buf[end:]
            # XEP-0359: the archive id (worker/mam.c) on every archived
            # message delivered to this account, checked exactly by
            # test_mam.py; recorded and taken out here so that these
            # tests keep to the RFC 6121 routing they are about.
            sid = _SID.search(st)
            if sid and sid.group(2) == self.bare:
                self.stanza_ids.append(sid.group(1))
                st = st[:sid.start()] + st[sid.end():]
            p = _PING.fullmatch(st)
            if p:           # the server's idle ping: answer, do not queue
                self.send("<iq to='localhost' id='%s' type='result'/>" % p.group(1))
                continue
            if self.echoes > 0 and st.startswith(
                    "<presence to='%s' from='%s'" % (self.bare, self.jid)):
                self.echoes -= 1
                continue
            p = _PUSH.match(st)
            if p and not self.closed:   # RFC 6121 2.1.6: clients answer pushes
                try:
                    self.send("<iq type='result' id='%s'/>" % p.group(1))
                except OSError:
                    pass
            self.seq += 1
            self.q.append((self.seq, st))

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0 or self.closed:
            if self.closed:
                time.sleep(max(0, min(left, 0.05)))
            return
        self.c.sock.settimeout(max(left, 0.001))
        try:
            chunk = self.c.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return
        except (ConnectionResetError, OSError):
            chunk = b""
        if not chunk:
            self.closed = True
            return
        self.c.buf += chunk

    def _fail(self, what):
        self._split()
        raise AssertionError("%s: %s\n  queued: %r\n  unparsed: %r"
                             % (self.name, what, [t for _, t in self.q],
                                self.c.buf[-500:]))

    def expect(self, want, timeout=5.0):
        """The first queued stanza matching want (text or regex), waiting
        up to timeout; returns its text.  self.last_seq is its place."""
        rx = _want_rx(want)
        deadline = time.monotonic() + timeout
        while True:
            self._split()
            for i, (seq, st) in enumerate(self.q):
                if rx.fullmatch(st):
                    del self.q[i]
                    self.last_seq = seq
                    return st
            if time.monotonic() >= deadline or (self.closed and not self.c.buf):
                self._fail("no stanza matching %r within %.1fs%s"
                           % (_show(want), timeout,
                              " (connection closed)" if self.closed else ""))
            self._fill(deadline)

    def expect_order(self, *wants, timeout=5.0, soft_order=None):
        """Each of wants arrives, and in this order (others may come in
        between).  soft_order: a wrong order is a soft finding with this
        description instead of a failure."""
        got = []
        for w in wants:
            st = self.expect(w, timeout)
            got.append((self.last_seq, st))
        if [s for s, _ in got] != sorted(s for s, _ in got):
            if soft_order:
                SOFT.append("%s: %s: arrived as\n      %s" % (
                    self.name, soft_order, "\n      ".join(t for _, t in sorted(got))))
                return [t for _, t in got]
            raise AssertionError("%s: wrong order: expected\n    %s\n  arrived as\n    %s"
                                 % (self.name, "\n    ".join(_show(w) for w in wants),
                                    "\n    ".join(t for _, t in sorted(got))))
        return [t for _, t in got]

    def next(self, timeout=5.0):
        """The next stanza, whatever it is."""
        deadline = time.monotonic() + timeout
        while True:
            self._split()
            if self.q:
                self.last_seq, st = self.q.pop(0)
                return st
            if time.monotonic() >= deadline or self.closed:
                self._fail("nothing arrived within %.1fs" % timeout)
            self._fill(deadline)

    def quiet(self, secs=0.5, want=None):
        """Nothing (or nothing matching want) arrives for secs; already
        queued stanzas count."""
        deadline = time.monotonic() + secs
        while time.monotonic() < deadline and not self.closed:
            self._fill(deadline)
        self._split()
        if want is None:
            bad = [t for _, t in self.q]
        else:
            rx = _want_rx(want)
            bad = [t for _, t in self.q if rx.fullmatch(t)]
        if bad:
            raise AssertionError("%s: expected nothing%s, got %r"
                                 % (self.name, "" if want is None else
                                    " matching %r" % _show(want), bad))

    def echo_seen(self, secs=2.0):
        """True once every own presence sent has come back (4.2.2)."""
        deadline = time.monotonic() + secs
        self._split()
        while self.echoes > 0 and time.monotonic() < deadline and not self.closed:
            self._fill(deadline)
            self._split()
        return self.echoes == 0

    def drain(self, secs=0.3):
        """Forget whatever arrives within secs."""
        deadline = time.monotonic() + secs
        while time.monotonic() < deadline and not self.closed:
            self._fill(deadline)
        self._split()
        self.q = []

    def close(self):
        """Close the stream properly (a logout)."""
        if not self.closed:
            try:
                self.send("</stream:stream>")
                self.c.read_all_until_close(timeout=5)
            except (AssertionError, OSError):
                pass
        self.closed = True
        self.c.close()

    def abort(self):
        """Drop the TCP connection without closing the stream."""
        self.closed = True
        self.c.close()

    # ---- roster and presence ----
    def _id(self, prefix):
        self.n += 1
        return "%s%d" % (prefix, self.n)

    def roster_get(self, ver=None, timeout=5.0):
        """Send a roster get; returns the whole result stanza."""
        id_ = self._id("rg")
        v = "" if ver is None else " ver='%s'" % ver
        self.send("<iq type='get' id='%s'><query xmlns='%s'%s/></iq>" % (id_, NS_ROSTER, v))
        return self.expect(re.compile("<iq [^>]*id='%s'[^>]*(?:/>|>.*?</iq>)" % id_), timeout)

    def roster_set(self, item_xml, to=None, timeout=5.0):
        """Send a roster set; returns the reply stanza (result or error)."""
        id_ = self._id("rs")
        t = "" if to is None else " to='%s'" % to
        self.send("<iq type='set' id='%s'%s><query xmlns='%s'>%s</query></iq>"
                  % (id_, t, NS_ROSTER, item_xml))
        self.last_id = id_
        return self.expect(re.compile("<iq [^>]*id='%s'[^>]*(?:/>|>.*?</iq>)" % id_), timeout)

    def roster_result_rx(self, ver, items):
        """Regex of the full roster result xmppd answers a get with (the
        'from' is the account's bare JID, allowed by RFC 6120 8.1.2.1)."""
        head = "<iq from='%s' id='[^']+' to='%s' type='result'>" % (
            re.escape(self.bare), re.escape(self.jid))
        v = r"\d+" if ver is None else str(ver)
        if items:
            q = "<query xmlns='jabber:iq:roster' ver='%s'>%s</query>" % (v, "".join(items))
        else:
            q = "<query xmlns='jabber:iq:roster' ver='%s'(?:/>|></query>)" % v
        return re.compile(head + q + "</iq>")

    def empty_result(self, id_):
        return "<iq from='%s' id='%s' to='%s' type='result'/>" % (self.bare, id_, self.jid)


def login(server, user, resource, roster=True, presence="<presence/>", name=None,
          worker=None):
    """Log in (on the given worker when told); request the roster
    (becoming an interested resource) and send initial presence unless
    told not to."""
    client = connect_on(server, worker) if worker is not None else None
    im = IM(server, user, resource, name=name, client=client)
    if roster:
        got = im.roster_get()
        assert "type='result'" in got, got
    if presence:
        im.send(presence)
    return im


def subscribe_both(a, b):
    """Make a and b (both online, both interested) subscribed to each
    other through the protocol; forget the noise it makes."""
    for x, y in ((a, b), (b, a)):
        x.send("<presence to='%s' type='subscribe'/>" % y.bare)
        y.expect(re.compile("<presence [^>]*type='subscribe'[^>]*/>"))
        y.send("<presence to='%s' type='subscribed'/>" % x.bare)
        x.expect(re.compile("<presence [^>]*type='subscribed'[^>]*/>"))
    a.expect(push_rx(None, item_rx(b.bare, "both")))
    b.expect(push_rx(None, item_rx(a.bare, "both")))
    time.sleep(0.2)
    a.drain()
    b.drain()


def placed(server, n_expected, timeout=10.0):
    """Per-worker connection counts once n_expected connections count."""
    def counts():
        st = server.status()
        if st is None:
            return None
        c = [w["connections"] for w in st["workers"]]
        return c if sum(c) == n_expected else None
    return wait_for(counts, timeout=timeout, what="%d connections counted" % n_expected)


def connect_on(server, worker, tries=40, make=None):
    """A TCP connection accepted by the given worker (index in status):
    SO_REUSEPORT spreads connections by a hash of the address pair, so
    connect until one lands there.  make() opens one (any object with
    close()); a client connection by default."""
    for _ in range(tries):
        before = placed(server, sum(placed_counts(server)))
        c = make() if make is not None else Client(server.port)
        after = placed(server, sum(before) + 1)
        if after[worker] > before[worker]:
            return c
        c.close()
        wait_for(lambda: sum(placed_counts(server)) == sum(before),
                 what="misplaced connection gone")
    raise AssertionError("could not place a connection on worker %d" % worker)


def placed_counts(server):
    st = server.status()
    return [w["connections"] for w in st["workers"]] if st else []


class RestartableServer(Server):
    """A Server that can be stopped and started again on the same
    database (Server.stop drops it)."""

    def stop_processes(self):
        pids = []
        st = self.status()
        if st:
            pids = [w["pid"] for w in st["workers"] if w["pid"] > 0]
        os.kill(self.master_pid, signal.SIGTERM)
        wait_for(lambda: not pid_alive(self.master_pid), timeout=15, what="master exit")
        self.proc.wait(timeout=5)
        if getattr(self, "_stderr", None):
            self._stderr.close()
        self.proc = None
        for p in pids:
            wait_for(lambda: not pid_alive(p), timeout=10, what="worker %d exit" % p)
        # start() waits for "database link up" lines: count only new ones.
        with open(self.log, "a"):
            pass
        os.rename(self.log, self.log + ".1")

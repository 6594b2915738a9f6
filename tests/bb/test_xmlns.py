"""Whatever xmppd accepts, it writes out well-formed and namespace-correct
(Namespaces in XML 1.0 section 3), seen by a real parser on the bytes a
recipient receives: elements and attributes in the reserved XML namespace
(<xml:x/>, xml:foo) in a message, in a presence broadcast to every
subscribed contact, through offline storage (delivered, not dropped), and
in a vCard (set answered, read back).  Every received byte after login
goes through Python's expat (xml.etree XMLPullParser) as a client's
stream parser would; a parse error fails the test.  Also a real slixmpp
recipient, the client of the report.  Stored stanzas that do not read
back: test_pending_subscription_request here, test_storage.py for
offline messages, vCards and private XML.  Needs XMPPD_TEST_PGCONN.
"""
import os
import re
import sys
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_tests, wait_for  # noqa: E402
from imlib import USERS, Server, login, subscribe_both  # noqa: E402
from test_im import running  # noqa: E402

NS_XML = "http://www.w3.org/XML/1998/namespace"
C = "{jabber:client}"
X = "{%s}" % NS_XML
VC = "{vcard-temp}"
STREAM_OPEN = (b"<stream:stream xmlns='jabber:client' "
               b"xmlns:stream='http://etherx.jabber.org/streams'>")


class Wire:
    """The stanzas a logged-in client receives, parsed by a real XML
    parser from the raw bytes, in the stream's context (the server's
    stream header was read at login; the same default namespace is
    opened here)."""

    def __init__(self, im):
        im.drain(0.1)
        self.im = im
        self.c = im.c
        self.p = ET.XMLPullParser(events=("start", "end"))
        self.p.feed(STREAM_OPEN)
        self.depth = 0
        self.stanzas = []
        self.raw = b""
        leftover, self.c.buf = self.c.buf, b""
        self._feed(leftover)

    def _feed(self, data):
        self.raw += data
        try:
            self.p.feed(data)
            events = list(self.p.read_events())
        except ET.ParseError as e:
            raise AssertionError("%s: the client's parser fails: %s\n  bytes: %r"
                                 % (self.im.name, e, self.raw[-600:]))
        for ev, el in events:
            if ev == "start":
                self.depth += 1
            else:
                self.depth -= 1
                if self.depth == 1:
                    self.stanzas.append(el)

    def expect(self, pred, what, timeout=5.0):
        """The first received stanza for which pred is true."""
        deadline = time.monotonic() + timeout
        while True:
            for i, el in enumerate(self.stanzas):
                if pred(el):
                    del self.stanzas[i]
                    return el
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("%s: no %s within %.1fs; got %r"
                                     % (self.im.name, what, timeout, self.raw[-600:]))
            self.c.sock.settimeout(left)
            try:
                chunk = self.c.sock.recv(65536)
            except (TimeoutError, OSError):
                continue
            if not chunk:
                raise AssertionError("%s: connection closed waiting for %s; got %r"
                                     % (self.im.name, what, self.raw[-600:]))
            self._feed(chunk)

    def send(self, text):
        self.c.send(text)


def by_id(tag, id_):
    return lambda el: el.tag == C + tag and el.get("id") == id_


def check_xml_x(parent, foo):
    """parent has <xml:x xml:foo=FOO><y xmlns='urn:y' xml:lang='en'/></xml:x>."""
    x = parent.find(X + "x")
    assert x is not None, ET.tostring(parent)
    assert x.get(X + "foo") == foo, ET.tostring(parent)
    y = x.find("{urn:y}y")
    assert y is not None and y.get(X + "lang") == "en", ET.tostring(parent)


XML_X = "<xml:x xml:foo='%s'><y xmlns='urn:y' xml:lang='en'/></xml:x>"


def test_message():
    """A message carrying <xml:x/> and xml:foo reaches the recipient
    parseable, and the stream goes on."""
    with running(Server(workers=2, users=USERS)) as s:
        r = login(s, "romeo", "orchard")
        j = login(s, "juliet", "balcony")
        w = Wire(j)
        r.send("<message to='juliet@localhost' type='chat' id='m1' xml:foo='bar'>"
               "<body>hi</body>" + XML_X % "1" + "</message>")
        m = w.expect(by_id("message", "m1"), "message m1")
        assert m.get(X + "foo") == "bar", ET.tostring(m)
        assert m.findtext(C + "body") == "hi", ET.tostring(m)
        check_xml_x(m, "1")
        # Text inside an xml: element stays in jabber:client.
        r.send("<message to='juliet@localhost' type='chat' id='m2'><xml:x>"
               "<body>inner</body></xml:x><body>after</body></message>")
        m = w.expect(by_id("message", "m2"), "message m2")
        assert m.find(X + "x").findtext(C + "body") == "inner", ET.tostring(m)
        assert m.findtext(C + "body") == "after", ET.tostring(m)


def test_presence_broadcast():
    """A presence carrying them reaches every subscribed contact
    parseable."""
    with running(Server(workers=2, users=USERS)) as s:
        j = login(s, "juliet", "balcony")
        r = login(s, "romeo", "orchard")
        n = login(s, "nurse", "kitchen")
        subscribe_both(j, r)
        subscribe_both(j, n)
        wires = [Wire(r), Wire(n)]
        j.send("<presence xml:foo='p'><status>here</status>" + XML_X % "2"
               + "</presence>")
        for w in wires:
            p = w.expect(lambda el: el.tag == C + "presence" and
                         el.get("from") == j.jid and el.find(X + "x") is not None,
                         "juliet's presence")
            assert p.get(X + "foo") == "p", ET.tostring(p)
            assert p.findtext(C + "status") == "here", ET.tostring(p)
            check_xml_x(p, "2")


def test_offline_storage():
    """Through offline storage: stored, delivered with <delay/>, not
    dropped; then gone from storage."""
    with running(Server(workers=1, users=USERS)) as s:
        r = login(s, "romeo", "orchard")
        r.send("<message to='juliet@localhost' type='chat' id='o1' xml:foo='off'>"
               "<body>while you were out</body>" + XML_X % "3" + "</message>")
        r.send("<message to='juliet@localhost' type='chat' id='o2'>"
               "<body>second</body></message>")
        count = "SELECT count(*) FROM offline_messages"
        wait_for(lambda: s.db.psql(count, s.db.conninfo).strip() == "2",
                 what="two messages stored")
        j = login(s, "juliet", "balcony", presence=None)
        w = Wire(j)
        w.send("<presence/>")
        m = w.expect(by_id("message", "o1"), "offline message o1")
        assert m.get(X + "foo") == "off", ET.tostring(m)
        assert m.findtext(C + "body") == "while you were out", ET.tostring(m)
        check_xml_x(m, "3")
        assert m.find("{urn:xmpp:delay}delay") is not None, ET.tostring(m)
        w.expect(by_id("message", "o2"), "offline message o2")
        wait_for(lambda: s.db.psql(count, s.db.conninfo).strip() == "0",
                 what="delivered messages removed")
        assert "unreadable" not in s.log_text()


def test_vcard():
    """A vCard set carrying them is answered, and reads back, for its
    owner and for others."""
    with running(Server(workers=2, users=USERS)) as s:
        j = login(s, "juliet", "balcony")
        r = login(s, "romeo", "orchard")
        wj, wr = Wire(j), Wire(r)
        wj.send("<iq type='set' id='v1'><vCard xmlns='vcard-temp' xml:foo='v'>"
                "<FN>Juliet</FN>" + XML_X % "4" + "</vCard></iq>")
        res = wj.expect(by_id("iq", "v1"), "vCard set answer")
        assert res.get("type") == "result", ET.tostring(res)
        for w, to, id_ in ((wj, None, "v2"), (wr, "juliet@localhost", "v3")):
            t = " to='%s'" % to if to else ""
            w.send("<iq type='get' id='%s'%s><vCard xmlns='vcard-temp'/></iq>" % (id_, t))
            res = w.expect(by_id("iq", id_), "vCard get answer")
            assert res.get("type") == "result", ET.tostring(res)
            vc = res.find(VC + "vCard")
            assert vc is not None and vc.get(X + "foo") == "v", ET.tostring(res)
            assert vc.findtext(VC + "FN") == "Juliet", ET.tostring(res)
            check_xml_x(vc, "4")


def test_pending_subscription_request():
    """A subscription request stored for an offline account (RFC 6121
    3.1.3) carrying them comes at login parseable; one stored in the form
    a version before the fix wrote is not sent raw to break the client:
    it is logged and stays stored."""
    with running(Server(workers=1, users=USERS)) as s:
        r = login(s, "romeo", "orchard")
        n = login(s, "nurse", "kitchen")
        for im, foo in ((r, "5"), (n, "6")):
            im.send("<presence to='juliet@localhost' type='subscribe'>"
                    "<xml:x xml:foo='%s'/></presence>" % foo)
        pending = ("SELECT count(*) FROM roster_items WHERE pending_in AND "
                   "account_id = xmppd_account_id('juliet', 'localhost')")
        wait_for(lambda: s.db.psql(pending, s.db.conninfo).strip() == "2",
                 what="two requests stored")
        old = s.db.psql(
            "UPDATE roster_items SET pending_stanza = replace(pending_stanza, "
            "$q$<xml:x xml:foo='6'/>$q$, $q$<x xmlns='%s' xml:foo='6'/>$q$) "
            "WHERE contact = 'nurse@localhost' RETURNING pending_stanza" % NS_XML,
            s.db.conninfo).strip()
        assert "<x xmlns='%s'" % NS_XML in old, old
        j = login(s, "juliet", "balcony", presence=None)
        w = Wire(j)
        w.send("<presence/>")
        p = w.expect(lambda el: el.tag == C + "presence" and
                     el.get("type") == "subscribe", "romeo's request")
        assert p.get("from") == "romeo@localhost", ET.tostring(p)
        assert p.find(X + "x").get(X + "foo") == "5", ET.tostring(p)
        wait_for(lambda: re.search(
            r" error: .*pending subscription request of juliet@localhost from "
            r"nurse@localhost unreadable \(.+\): kept in roster_items\n",
            s.log_text()), what="the unreadable request logged")
        # Everything sent before the answer parsed; the request stays.
        w.send("<iq type='get' id='ping1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        w.expect(by_id("iq", "ping1"), "ping answer")
        assert not [el for el in w.stanzas if el.get("from") == "nurse@localhost"]
        kept = s.db.psql("SELECT pending_stanza FROM roster_items WHERE contact = "
                         "'nurse@localhost' AND pending_in", s.db.conninfo).strip()
        assert kept == old, kept


def test_slixmpp_recipient():
    """The client of the report: slixmpp gets the message, with its
    <xml:x/>, and its stream stays up (it printed "Parse error" and was
    disconnected)."""
    from test_clients import Slix, run_async, stop_all
    with running(Server(workers=1, users=USERS)) as s:
        r = login(s, "romeo", "orchard")

        async def go():
            x = Slix("juliet@localhost/slix", "r0m30!")
            try:
                await x.online(s.port)
                r.send("<message to='juliet@localhost/slix' type='chat' id='s1' "
                       "xml:foo='bar'><body>hi</body>" + XML_X % "7" + "</message>")
                msg = await x.next_message()
                assert msg["body"] == "hi", msg
                assert msg.xml.get(X + "foo") == "bar", msg
                check_xml_x(msg.xml, "7")
                assert await x["xep_0199"].ping(jid="localhost", timeout=5) is not None
                assert x.ended is None, x.ended
            finally:
                await stop_all(x)
        run_async(go())


if __name__ == "__main__":
    run_tests([test_message, test_presence_broadcast, test_offline_storage,
               test_vcard, test_pending_subscription_request,
               test_slixmpp_recipient])

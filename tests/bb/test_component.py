"""External components (XEP-0114 1.6), black box with exact XML: the
handshake (good secret, wrong secret, unknown domain, a domain already
connected on either worker), stanzas both ways between users on two
workers and a component, 'from' checking, stanzas to a component that
is not connected, subdomains, a subscription request from a component,
disco#items, reload adding and removing components, and a component we
did not write (slixmpp's ComponentXMPP) echoing messages.
Needs XMPPD_TEST_PGCONN.
"""
import hashlib
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Client, Server, run_tests, stream_error_re,  # noqa: E402
                     wait_for)
from imlib import connect_on, login  # noqa: E402

NS_STREAMS = "http://etherx.jabber.org/streams"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
USERS = [("juliet@localhost", "r0m30!"), ("romeo@localhost", "jul13t?")]
GW, SECRET = "gw.localhost", "s3cr3t-gw"


def comp_header(to):
    return ("<stream:stream xmlns='jabber:component:accept' "
            "xmlns:stream='%s' to='%s'>" % (NS_STREAMS, to))


def our_header_rx(domain):
    return ("<\\?xml version='1.0'\\?><stream:stream xmlns:stream='%s' "
            "xmlns='jabber:component:accept' from='%s' id='([0-9a-f]{32})'>"
            % (re.escape(NS_STREAMS), re.escape(domain)))


def error_header_rx():
    """The header that precedes a stream error sent before ours."""
    return ("<\\?xml version='1.0'\\?><stream:stream xmlns='jabber:component:accept'"
            " xmlns:stream='%s' id='[0-9a-f]+' from='localhost' version='1.0'"
            " xml:lang='en'>" % re.escape(NS_STREAMS))


class Comp:
    """A component connection speaking XEP-0114 by hand."""

    def __init__(self, server, domain=GW, client=None):
        self.c = client or Client(server.component_port)
        self.domain = domain

    def open(self):
        self.c.send(comp_header(self.domain))
        head = self.c.read_until(our_header_rx(self.domain))
        self.id = re.fullmatch(our_header_rx(self.domain), head).group(1)
        return self.id

    def handshake(self, secret):
        digest = hashlib.sha1((self.id + secret).encode()).hexdigest()
        self.c.send("<handshake>%s</handshake>" % digest)

    def login(self, secret=SECRET):
        self.open()
        self.handshake(secret)
        got = self.c.read_until("<handshake/>")
        assert got == "<handshake/>", got
        return self

    def expect(self, text, timeout=5.0):
        """Read through text (exact), or a compiled regex."""
        pat = re.escape(text) if isinstance(text, str) else text.pattern
        return self.c.read_until(pat, timeout=timeout)

    def close(self):
        self.c.close()


def comp_connect_on(server, worker):
    """A component connection accepted by the given worker."""
    return connect_on(server, worker,
                      make=lambda: Client(server.component_port))


def stanza_error(kind, frm, to, etype, cond, id_=None):
    return ("<%s from='%s'%s to='%s' type='error'><error type='%s'><%s xmlns='%s'/>"
            "</error></%s>" % (kind, frm, " id='%s'" % id_ if id_ else "", to,
                               etype, cond, STANZAS, kind))


def test_handshake_good_and_wrong():
    with Server(workers=1, components={GW: SECRET}) as s:
        comp = Comp(s).login()
        assert "component %s connected" % GW in s.log_text()
        comp.close()
        # a wrong secret: <not-authorized/>, the stream ends
        bad = Comp(s)
        bad.open()
        bad.handshake("not-the-secret")
        got = bad.c.read_all_until_close()
        assert re.fullmatch(stream_error_re("not-authorized"), got), got
        assert "component %s: wrong handshake" % GW in s.log_text()
        # a stanza before the handshake: <not-authorized/> too
        early = Comp(s)
        early.open()
        early.c.send("<message from='a@%s' to='juliet@localhost'/>" % GW)
        got = early.c.read_all_until_close()
        assert re.fullmatch(stream_error_re("not-authorized"), got), got


def test_unknown_domain():
    with Server(workers=1, components={GW: SECRET}) as s:
        c = Client(s.component_port)
        c.send(comp_header("other.localhost"))
        got = c.read_all_until_close()
        assert re.fullmatch(error_header_rx() + stream_error_re("host-unknown"), got), got
        # a hosted domain is not a component's
        c = Client(s.component_port)
        c.send(comp_header("localhost"))
        got = c.read_all_until_close()
        assert re.fullmatch(error_header_rx() + stream_error_re("host-unknown"), got), got


def test_conflict_on_both_workers():
    with Server(workers=2, components={GW: SECRET}) as s:
        first = Comp(s, client=comp_connect_on(s, 0)).login()
        for w in (1, 0):
            dup = Comp(s, client=comp_connect_on(s, w))
            dup.open()
            dup.handshake(SECRET)
            got = dup.c.read_all_until_close()
            assert re.fullmatch(stream_error_re("conflict"), got), (w, got)
        # the first one still works
        first.c.send("<iq from='%s' to='localhost' id='p1' type='get'>"
                     "<ping xmlns='urn:xmpp:ping'/></iq>" % GW)
        first.expect("<iq from='localhost' id='p1' to='%s' type='result'/>" % GW)
        # once it leaves, the domain is free again, on the other worker
        first.c.send("</stream:stream>")
        first.c.read_all_until_close()
        wait_for(lambda: "component %s disconnected" % GW in s.log_text(),
                 what="component gone")
        Comp(s, client=comp_connect_on(s, 1)).login()


def test_routing_both_ways_across_workers():
    with Server(workers=2, users=USERS, components={GW: SECRET}) as s:
        comp = Comp(s, client=comp_connect_on(s, 0)).login()
        j = login(s, "juliet", "balcony", worker=0)
        r = login(s, "romeo", "garden", worker=1)
        for im in (j, r):
            im.send("<message to='bot@%s' id='m-%s'><body>hi from %s</body></message>"
                    % (GW, im.bare, im.bare))
            # the sender's archive id (XEP-0359, by the sender's account)
            # stays home: it is for her sent carbon, not the component
            comp.expect(re.compile(re.escape(
                "<message to='bot@%s' id='m-%s' from='%s'><body>hi from %s</body>"
                "</message>" % (GW, im.bare, im.jid, im.bare))))
        # component -> users, on either worker
        for im in (j, r):
            comp.c.send("<message from='bot@%s/x' to='%s' id='c1'><body>hello</body>"
                        "</message>" % (GW, im.jid))
            im.expect("<message from='bot@%s/x' to='%s' id='c1'><body>hello</body>"
                      "</message>" % (GW, im.jid))
            # an IQ from the component and its answer
            comp.c.send("<iq from='%s' to='%s' id='v1' type='get'>"
                        "<query xmlns='jabber:iq:version'/></iq>" % (GW, im.jid))
            im.expect("<iq from='%s' to='%s' id='v1' type='get'>"
                      "<query xmlns='jabber:iq:version'/></iq>" % (GW, im.jid))
            im.send("<iq to='%s' id='v1' type='result'><query xmlns='jabber:iq:version'>"
                    "<name>test</name></query></iq>" % GW)
            comp.expect("<iq to='%s' id='v1' type='result' from='%s'><query "
                        "xmlns='jabber:iq:version'><name>test</name></query></iq>"
                        % (GW, im.jid))
        # disco#items of the host lists the component (and the MUC
        # service, XEP-0045, the server's own)
        j.send("<iq to='localhost' id='d1' type='get'>"
               "<query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
        j.expect("<iq from='localhost' id='d1' to='%s' type='result'><query xmlns="
                 "'http://jabber.org/protocol/disco#items'><item jid='%s'/>"
                 "<item jid='conference.localhost' name='Chatrooms'/></query></iq>"
                 % (j.jid, GW))
        # a subscription request from the component reaches the user
        # through her subscription state (RFC 6121 3.1.3)
        comp.c.send("<presence from='bot@%s' to='romeo@localhost' type='subscribe'/>" % GW)
        r.expect("<presence from='bot@%s' to='romeo@localhost' type='subscribe'/>" % GW)


def test_invalid_from_and_gone():
    with Server(workers=2, users=USERS, components={GW: SECRET}) as s:
        j = login(s, "juliet", "balcony", worker=1)
        # nobody connected for the domain: service-unavailable
        j.send("<message to='bot@%s' id='n1' type='chat'><body>x</body></message>" % GW)
        j.expect(stanza_error("message", "bot@%s" % GW, j.jid, "cancel",
                              "service-unavailable", "n1"))
        j.send("<iq to='%s' id='n2' type='get'><query xmlns='jabber:iq:version'/></iq>" % GW)
        j.expect(stanza_error("iq", GW, j.jid, "cancel", "service-unavailable", "n2"))
        comp = Comp(s, client=comp_connect_on(s, 0)).login()
        # no 'to': improper-addressing
        comp.c.send("<message from='bot@%s'><body>x</body></message>" % GW)
        got = comp.c.read_all_until_close()
        assert re.fullmatch(stream_error_re("improper-addressing"), got), got
        wait_for(lambda: "component %s disconnected" % GW in s.log_text(),
                 what="component gone")
        comp = Comp(s, client=comp_connect_on(s, 0)).login()
        # a 'from' outside its domain: invalid-from, and nothing reached juliet
        comp.c.send("<message from='romeo@localhost' to='%s'><body>forged</body></message>"
                    % j.jid)
        got = comp.c.read_all_until_close()
        assert re.fullmatch(stream_error_re("invalid-from"), got), got
        j.quiet(0.5)
        wait_for(lambda: s.log_text().count("component %s disconnected" % GW) == 2,
                 what="component gone")
        # gone again: messages bounce
        j.send("<message to='bot@%s' id='n3' type='chat'><body>x</body></message>" % GW)
        j.expect(stanza_error("message", "bot@%s" % GW, j.jid, "cancel",
                              "service-unavailable", "n3"))


def test_subdomains():
    comps = {"muc.localhost": ("m-secret", True), GW: SECRET}
    with Server(workers=1, users=USERS[:1], components=comps) as s:
        muc = Comp(s, "muc.localhost").login("m-secret")
        gw = Comp(s).login()
        j = login(s, "juliet", "balcony")
        j.send("<message to='room@chat.muc.localhost' id='s1'><body>a</body></message>")
        muc.expect(re.compile(re.escape(
            "<message to='room@chat.muc.localhost' id='s1' from='%s'><body>a</body>"
            "</message>" % j.jid)))
        muc.c.send("<message from='room@chat.muc.localhost/nick' to='%s' id='s2'>"
                   "<body>b</body></message>" % j.jid)
        j.expect("<message from='room@chat.muc.localhost/nick' to='%s' id='s2'>"
                 "<body>b</body></message>" % j.jid)
        # component to component
        gw.c.send("<message from='%s' to='muc.localhost' id='s3'/>" % GW)
        muc.expect("<message from='%s' to='muc.localhost' id='s3'/>" % GW)
        # gw has no subdomains: a name under it is not its own
        gw.c.send("<message from='x.%s' to='%s' id='s4'/>" % (GW, j.jid))
        got = gw.c.read_all_until_close()
        assert re.fullmatch(stream_error_re("invalid-from"), got), got
        # and nothing routes to a name under it
        j.send("<message to='a@x.%s' id='s5'><body>c</body></message>" % GW)
        j.expect(stanza_error("message", "a@x.%s" % GW, j.jid, "cancel",
                              "remote-server-not-found", "s5"))


def test_reload_adds_and_removes():
    with Server(workers=2, components={GW: SECRET}) as s:
        comp = Comp(s).login()
        c = Client(s.component_port)
        c.send(comp_header("new.localhost"))
        got = c.read_all_until_close()
        assert "<host-unknown " in got, got
        s.write_components({"new.localhost": "n3w"})
        res = s.ctl("reload")
        assert res.returncode == 0, res.stderr
        got = comp.c.read_all_until_close()
        assert re.fullmatch(stream_error_re("host-gone"), got), got
        # both workers read the new list
        for w in (0, 1):
            n = Comp(s, "new.localhost", client=comp_connect_on(s, w)).login("n3w")
            n.c.send("</stream:stream>")
            n.c.read_all_until_close()
            wait_for(lambda: s.log_text().count("component new.localhost disconnected")
                     == w + 1, what="component gone")
        # a secrets file others may read is refused; the list stays
        os.chmod(s.components_file, 0o644)
        res = s.ctl("reload")
        assert "group or others" in res.stdout + res.stderr, (res.stdout, res.stderr)
        Comp(s, "new.localhost").login("n3w")


def test_limits():
    with Server(workers=1, users=USERS[:1], components={GW: SECRET},
                overrides={"component.timeout": "1s",
                           "component.max_stanza_size": "10K"}) as s:
        # no handshake in component.timeout: connection-timeout
        slow = Comp(s)
        slow.open()
        got = slow.c.read_all_until_close(timeout=10)
        assert re.fullmatch(stream_error_re("connection-timeout"), got), got
        # a stanza over component.max_stanza_size: policy-violation
        comp = Comp(s).login()
        comp.c.send("<message from='%s' to='juliet@localhost'><body>%s</body></message>"
                    % (GW, "x" * 12000))
        got = comp.c.read_all_until_close()
        assert re.fullmatch(stream_error_re("policy-violation"), got), got
        # a second handshake after the first
        comp = Comp(s).login()
        comp.handshake(SECRET)
        got = comp.c.read_all_until_close()
        assert re.fullmatch(stream_error_re("policy-violation"), got), got


SLIX_ECHO = r'''
import asyncio, sys
import slixmpp
from slixmpp.componentxmpp import ComponentXMPP

class Echo(ComponentXMPP):
    def __init__(self, jid, secret, port):
        ComponentXMPP.__init__(self, jid, secret, "127.0.0.1", port)
        self.add_event_handler("session_start", self.started)
        self.add_event_handler("message", self.message)

    def started(self, event):
        print("started", flush=True)

    def message(self, msg):
        if msg["type"] in ("chat", "normal"):
            msg.reply("echo: %s" % msg["body"]).send()

xmpp = Echo(sys.argv[1], sys.argv[2], int(sys.argv[3]))
xmpp.connect()
xmpp.loop.run_until_complete(asyncio.wait_for(xmpp.disconnected, 60))
'''


def test_slixmpp_component_echo():
    with Server(workers=2, users=USERS, components={GW: SECRET}) as s:
        script = os.path.join(s.dir, "echo.py")
        with open(script, "w") as f:
            f.write(SLIX_ECHO)
        out = open(os.path.join(s.dir, "slixmpp.out"), "w")
        p = subprocess.Popen(["/usr/bin/python3", script, GW, SECRET,
                              str(s.component_port)], stdout=out,
                             stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: "component %s connected" % GW in s.log_text(),
                     timeout=20, what="slixmpp connected")
            for user, res, w in (("juliet", "balcony", 0), ("romeo", "garden", 1)):
                im = login(s, user, res, worker=w)
                im.send("<message to='echo@%s' id='e-%s' type='chat'><body>ping %s"
                        "</body></message>" % (GW, user, user))
                im.expect(re.compile("<message [^>]*from='echo@%s' [^>]*>.*<body>echo: "
                                     "ping %s</body>.*</message>" % (re.escape(GW), user),
                                     re.S), timeout=10)
        finally:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            out.close()


def test_malformed_iq_from_component():
    """RFC 6120 8.2.3: an IQ from a component without a type (or without
    an id) is answered <bad-request/> and goes nowhere else; the worker
    serving it is not brought down (an untyped IQ to the server's domain
    used to crash it), and the component's next IQ is answered."""
    with Server(workers=1, users=USERS, components={GW: SECRET}) as s:
        comp = Comp(s).login()
        comp.c.send("<iq from='%s' to='localhost' id='t1'>"
                    "<ping xmlns='urn:xmpp:ping'/></iq>" % GW)
        comp.expect(stanza_error("iq", "localhost", GW, "modify",
                                 "bad-request", "t1"))
        comp.c.send("<iq from='%s' to='localhost' type='get'>"
                    "<ping xmlns='urn:xmpp:ping'/></iq>" % GW)
        comp.expect(stanza_error("iq", "localhost", GW, "modify",
                                 "bad-request"))
        comp.c.send("<iq from='%s' to='localhost' id='t3' type='get'>"
                    "<ping xmlns='urn:xmpp:ping'/></iq>" % GW)
        comp.expect("<iq from='localhost' id='t3' to='%s' type='result'/>" % GW)
        assert "malformed <iq/> from component" in s.log_text()


if __name__ == "__main__":
    run_tests([test_handshake_good_and_wrong, test_unknown_domain,
               test_conflict_on_both_workers, test_routing_both_ways_across_workers,
               test_invalid_from_and_gone, test_subdomains,
               test_reload_adds_and_removes, test_limits,
               test_slixmpp_component_echo,
               test_malformed_iq_from_component])

"""XEP-0280 Message Carbons 1.0 (urn:xmpp:carbons:2, rules:0), black box
with exact XML: enable/disable and their errors, the disco features,
received and sent copies to every other carbons-enabled resource on any
worker (two workers, two and three resources), the eligibility rules
(chat, normal with a body, bounces from a bare JID; not headline,
groupchat, <private/>, <no-copy/>, bodiless normal, MUC invitations to
the bare JID), a message to the bare JID delivered to several resources,
offline storage (no copy), blocking (no copy), messages between
resources of one account; then slixmpp's xep_0280 plugin.
Needs XMPPD_TEST_PGCONN.
"""
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, run_tests  # noqa: E402
from imlib import USERS, STANZAS, checked, connect_on, exact, login  # noqa: E402

NS = "urn:xmpp:carbons:2"
FWD = "urn:xmpp:forward:0"


def enable(im, id_="on"):
    im.send("<iq type='set' id='%s'><enable xmlns='%s'/></iq>" % (id_, NS))
    im.expect(exact(im.empty_result(id_)))


def disable(im, id_="off"):
    im.send("<iq type='set' id='%s'><disable xmlns='%s'/></iq>" % (id_, NS))
    im.expect(exact(im.empty_result(id_)))


def carbon(kind, account, to, inner, type_="chat"):
    """The copy a resource gets: from the account's bare JID, to its
    full JID, the original's type, the message wrapped per XEP-0297."""
    t = "" if type_ is None else " type='%s'" % type_
    return ("<message from='%s' to='%s'%s><%s xmlns='%s'><forwarded xmlns='%s'>"
            "%s</forwarded></%s></message>" % (account, to, t, kind, NS, FWD,
                                               inner, kind))


def msg(frm, to, id_, body="hi", type_="chat", extra=""):
    """A message as the server forwards it (jabber:client declared, as
    inside <forwarded/>)."""
    t = "" if type_ is None else " type='%s'" % type_
    b = "" if body is None else "<body>%s</body>" % body
    # the client's attributes in its order, then the 'from' the server
    # stamps
    return ("<message xmlns='jabber:client' to='%s' id='%s'%s from='%s'>%s%s"
            "</message>" % (to, id_, t, frm, b, extra))


def plain(text):
    """The same message as the recipient itself gets it."""
    return text.replace(" xmlns='jabber:client'", "", 1)


def no_message(im, secs):
    """No message arrives for secs (presence may: siblings' broadcasts)."""
    im.quiet(secs, want=re.compile("<message .*", re.S))


def ping(im, id_="p"):
    """A round trip: everything routed before it has been handled."""
    im.send("<iq to='localhost' type='get' id='%s'><ping xmlns='urn:xmpp:ping'/></iq>" % id_)
    im.expect(re.compile("<iq from='localhost' id='%s' to='[^']+' type='result'/>" % id_))


@checked
def test_enable_disable_and_errors():
    with Server(workers=1, users=USERS) as s:
        a = login(s, "juliet", "a")
        a.send("<iq to='localhost' type='get' id='d1'><query "
               "xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        got = a.expect(re.compile("<iq from='localhost' id='d1'.*</iq>"))
        assert "<feature var='urn:xmpp:carbons:2'/><feature var='urn:xmpp:carbons:rules:0'/>" in got, got
        # Sections 4, 5, 10.1: enable and disable, twice each: results.
        enable(a, "e1")
        enable(a, "e2")
        disable(a, "x1")
        disable(a, "x2")
        # Addressed to the own bare JID explicitly: the same.
        a.send("<iq to='juliet@localhost' type='set' id='e3'><enable xmlns='%s'/></iq>" % NS)
        a.expect(exact(a.empty_result("e3")))
        # Another account's carbons: not-allowed (section 5 example).
        a.send("<iq to='romeo@localhost' type='set' id='e4'><enable xmlns='%s'/></iq>" % NS)
        a.expect(exact("<iq from='romeo@localhost' id='e4' to='juliet@localhost/a' "
                       "type='error'><error type='cancel'><not-allowed xmlns='%s'/>"
                       "</error></iq>" % STANZAS))
        # A get is no request to enable anything.
        a.send("<iq type='get' id='e5'><enable xmlns='%s'/></iq>" % NS)
        a.expect(exact("<iq from='juliet@localhost' id='e5' to='juliet@localhost/a' "
                       "type='error'><error type='modify'><bad-request xmlns='%s'/>"
                       "</error></iq>" % STANZAS))
        a.close()


@checked
def test_received_and_sent_copies_across_workers():
    """Two workers: juliet/a and juliet/b on different workers, both with
    carbons; juliet/c without; romeo on either."""
    with Server(workers=2, users=USERS) as s:
        a = login(s, "juliet", "a", worker=0)
        b = login(s, "juliet", "b", worker=1)
        c = login(s, "juliet", "c")
        r = login(s, "romeo", "r")
        enable(a)
        enable(b)
        ping(r)
        # Section 7: to a full JID; the other carbons-enabled resource
        # gets a received copy, the one without carbons nothing.
        r.send("<message to='juliet@localhost/a' id='m1' type='chat'><body>hi</body></message>")
        m1 = msg("romeo@localhost/r", "juliet@localhost/a", "m1")
        a.expect(exact(plain(m1)))
        b.expect(exact(carbon("received", "juliet@localhost", "juliet@localhost/b", m1)))
        # Section 8: sent from the resource without carbons: both others
        # get a sent copy (whether or not the sender has them on).
        c.send("<message to='romeo@localhost/r' id='m2' type='chat'><body>yo</body></message>")
        m2 = msg("juliet@localhost/c", "romeo@localhost/r", "m2", "yo")
        r.expect(exact(plain(m2)))
        a.expect(exact(carbon("sent", "juliet@localhost", "juliet@localhost/a", m2)))
        b.expect(exact(carbon("sent", "juliet@localhost", "juliet@localhost/b", m2)))
        # From a: b gets the sent copy, a nothing back (section 8).
        a.send("<message to='romeo@localhost' id='m3' type='chat'><body>3</body></message>")
        m3 = msg("juliet@localhost/a", "romeo@localhost", "m3", "3")
        r.expect(exact(plain(m3)))
        b.expect(exact(carbon("sent", "juliet@localhost", "juliet@localhost/b", m3)))
        # Normal with a body: eligible; the wrapper has no type either.
        r.send("<message to='juliet@localhost/b' id='m4'><body>n</body></message>")
        m4 = msg("romeo@localhost/r", "juliet@localhost/b", "m4", "n", None)
        b.expect(exact(plain(m4)))
        a.expect(exact(carbon("received", "juliet@localhost", "juliet@localhost/a", m4, None)))
        # A chat state without body is chat: copied (section 6).
        cs = "<composing xmlns='http://jabber.org/protocol/chatstates'/>"
        r.send("<message to='juliet@localhost/a' id='m5' type='chat'>%s</message>" % cs)
        m5 = msg("romeo@localhost/r", "juliet@localhost/a", "m5", None, extra=cs)
        a.expect(exact(plain(m5)))
        b.expect(exact(carbon("received", "juliet@localhost", "juliet@localhost/b", m5)))
        ping(r, "p2")
        ping(a, "p3")
        ping(b, "p4")
        for im in (a, b, c):
            no_message(im, 0.3)
        # Disabled: b gets no more copies, a still does.
        disable(b)
        r.send("<message to='juliet@localhost/c' id='m6' type='chat'><body>6</body></message>")
        m6 = msg("romeo@localhost/r", "juliet@localhost/c", "m6", "6")
        c.expect(exact(plain(m6)))
        a.expect(exact(carbon("received", "juliet@localhost", "juliet@localhost/a", m6)))
        ping(r, "p5")
        no_message(b, 0.5)
        for im in (a, b, c, r):
            im.close()


@checked
def test_not_eligible():
    with Server(workers=2, users=USERS) as s:
        a = login(s, "juliet", "a", worker=0,
                  presence="<presence><priority>1</priority></presence>")
        b = login(s, "juliet", "b", worker=1)
        r = login(s, "romeo", "r")
        enable(a)
        enable(b)
        ping(r)
        cases = [
            # headline, groupchat, bodiless normal (a receipt)
            "<message to='juliet@localhost/a' id='n1' type='headline'><body>h</body></message>",
            "<message to='juliet@localhost/a' id='n2' type='groupchat'><body>g</body></message>",
            "<message to='juliet@localhost/a' id='n3'><received xmlns='urn:xmpp:receipts' id='x'/></message>",
            # <private/> (section 9) and the XEP-0334 hint
            "<message to='juliet@localhost/a' id='n4' type='chat'><body>p</body>"
            "<private xmlns='urn:xmpp:carbons:2'/></message>",
            "<message to='juliet@localhost/a' id='n5' type='chat'><body>p</body>"
            "<no-copy xmlns='urn:xmpp:hints'/></message>",
            # a MUC invitation to the bare JID (from a MUC service)
            "<message to='juliet@localhost' id='n6'><body>join us</body>"
            "<x xmlns='http://jabber.org/protocol/muc#user'><invite from='romeo@localhost'/></x></message>",
        ]
        for i, text in enumerate(cases):
            r.send(text)
            a.expect(re.compile("<message [^>]*id='n%d'.*</message>" % (i + 1)))
        ping(r, "p2")
        no_message(b, 0.5)
        # sent side: private and no-copy make no sent copy either
        a.send("<message to='romeo@localhost/r' id='s1' type='chat'><body>p</body>"
               "<private xmlns='urn:xmpp:carbons:2'/></message>")
        a.send("<message to='romeo@localhost/r' id='s2' type='chat'><body>p</body>"
               "<no-copy xmlns='urn:xmpp:hints'/></message>")
        a.send("<message to='romeo@localhost/r' id='s3' type='headline'><body>p</body></message>")
        r.expect(re.compile("<message [^>]*id='s1'.*</message>"))
        r.expect(re.compile("<message [^>]*id='s2'.*</message>"))
        r.expect(re.compile("<message [^>]*id='s3'.*</message>"))
        ping(a, "p3")
        no_message(b, 0.5)
        # A bounce from a bare JID answers an eligible message: b gets
        # the sent copy of the message and the received copy of its
        # error (section 6, rule 3).
        a.send("<message to='nobody@localhost' id='s4' type='chat'><body>?</body></message>")
        s4 = msg("juliet@localhost/a", "nobody@localhost", "s4", "?")
        b.expect(exact(carbon("sent", "juliet@localhost", "juliet@localhost/b", s4)))
        err = ("<message xmlns='jabber:client' from='nobody@localhost' id='s4' "
               "to='juliet@localhost/a' type='error'><error type='cancel'>"
               "<service-unavailable xmlns='%s'/></error></message>" % STANZAS)
        a.expect(exact(plain(err)))
        b.expect(exact(carbon("received", "juliet@localhost", "juliet@localhost/b", err, "error")))
        for im in (a, b, r):
            im.close()


@checked
def test_private_removed_before_delivery():
    """Section 9: the receiving server removes <private/> before it
    delivers the message; the recipient's message is otherwise exactly
    what was sent, and neither side makes a copy.  Recipient on the
    other worker from the sender, and on the same one."""
    with Server(workers=2, users=USERS) as s:
        a = login(s, "juliet", "a", worker=0)
        b = login(s, "juliet", "b", worker=1)
        r = login(s, "romeo", "r", worker=1)
        r2 = login(s, "romeo", "r2", worker=0)
        for i, im in enumerate((a, b, r, r2)):
            enable(im, "on%d" % i)
        ping(r)
        hint = "<no-copy xmlns='urn:xmpp:hints'/>"
        thread = "<thread>t1</thread>"
        r.send("<message to='juliet@localhost/a' id='v1' type='chat'><body>p</body>"
               "<private xmlns='urn:xmpp:carbons:2'/>%s%s</message>" % (hint, thread))
        a.expect(exact(plain(msg("romeo@localhost/r", "juliet@localhost/a", "v1",
                                 "p", extra=hint + thread))))
        # private alone, recipient on the sender's worker
        r.send("<message to='juliet@localhost/b' id='v2' type='chat'>"
               "<private xmlns='urn:xmpp:carbons:2'/><body>q</body></message>")
        b.expect(exact(plain(msg("romeo@localhost/r", "juliet@localhost/b", "v2",
                                 "q"))))
        ping(r, "p2")
        ping(a, "p3")
        ping(b, "p4")
        ping(r2, "p5")
        for im in (a, b, r2):
            no_message(im, 0.3)
        for im in (a, b, r, r2):
            im.close()


@checked
def test_bare_jid_to_several_resources():
    """Three resources on two workers: a and b share the highest
    priority and get the original; c (priority -1, carbons) a copy; d
    (priority 0, carbons, lower than 5) a copy."""
    with Server(workers=2, users=USERS) as s:
        a = login(s, "juliet", "a", worker=0, presence="<presence><priority>5</priority></presence>")
        b = login(s, "juliet", "b", worker=1, presence="<presence><priority>5</priority></presence>")
        c = login(s, "juliet", "c", worker=0, presence="<presence><priority>-1</priority></presence>")
        r = login(s, "romeo", "r")
        for im in (a, b, c):
            enable(im)
        for im in (a, b, c):
            im.drain(0.3)
        ping(r)
        r.send("<message to='juliet@localhost' id='m1' type='chat'><body>all</body></message>")
        m1 = msg("romeo@localhost/r", "juliet@localhost", "m1", "all")
        a.expect(exact(plain(m1)))
        b.expect(exact(plain(m1)))
        c.expect(exact(carbon("received", "juliet@localhost", "juliet@localhost/c", m1)))
        ping(r, "p2")
        for im in (a, b, c):
            no_message(im, 0.4)
        for im in (a, b, c, r):
            im.close()


@checked
def test_offline_blocking_and_own_account():
    with Server(workers=2, users=USERS) as s:
        # No available resource: the message is stored, no copy; it is
        # delivered (once) with the next initial presence.
        a = login(s, "juliet", "a", worker=0, presence=None)
        enable(a)
        r = login(s, "romeo", "r")
        r.send("<message to='juliet@localhost' id='o1' type='chat'><body>later</body></message>")
        ping(r)
        no_message(a, 0.5)
        a.send("<presence/>")
        a.expect(re.compile("<message to='juliet@localhost' id='o1' type='chat' "
                            "from='romeo@localhost/r'><body>later</body><delay "
                            "xmlns='urn:xmpp:delay' from='localhost' stamp='[^']+'>"
                            "Offline Storage</delay></message>"))
        no_message(a, 0.3)
        # Between resources of one account: the recipient gets the
        # original, other carbons-enabled ones a received copy, the
        # sender nothing (no sent copies).
        b = login(s, "juliet", "b", worker=1)
        c = login(s, "juliet", "c")
        enable(b)
        enable(c)
        a.drain(0.3)
        a.send("<message to='juliet@localhost/b' id='w1' type='chat'><body>me</body></message>")
        w1 = msg("juliet@localhost/a", "juliet@localhost/b", "w1", "me")
        b.expect(exact(plain(w1)))
        c.expect(exact(carbon("received", "juliet@localhost", "juliet@localhost/c", w1)))
        ping(a)
        no_message(a, 0.4)
        no_message(b, 0.2)
        no_message(c, 0.2)
        # Blocking: a blocked contact's message is refused and makes no
        # copy (XEP-0191 and XEP-0280 together).
        t = login(s, "tybalt", "t")
        a.send("<iq type='set' id='bl'><block xmlns='urn:xmpp:blocking'><item "
               "jid='tybalt@localhost'/></block></iq>")
        a.expect(exact(a.empty_result("bl")))
        for im in (a, b, c):
            im.expect(re.compile("<iq id='bpush[^']*' type='set'><block .*</iq>"))
        t.send("<message to='juliet@localhost/a' id='t1' type='chat'><body>x</body></message>")
        t.expect(exact("<message from='juliet@localhost/a' id='t1' to='tybalt@localhost/t' "
                       "type='error'><error type='cancel'><service-unavailable xmlns='%s'/>"
                       "</error></message>" % STANZAS))
        ping(t)
        for im in (a, b, c):
            no_message(im, 0.4)
        for im in (a, b, c, r, t):
            im.close()


# ---- slixmpp ---------------------------------------------------------------

def test_slixmpp_xep_0280():
    """slixmpp's xep_0280 plugin enables carbons and sees a message to
    another resource as carbon_received, its own resource's message to
    romeo as carbon_sent (the plugin checks that the copy comes from
    the account's bare JID)."""
    from test_clients import Slix, run_async, stop_all
    with Server(workers=2, users=USERS) as s:
        async def body():
            x = Slix("juliet@localhost/slix", dict(USERS)["juliet@localhost"])
            x.register_plugin("xep_0280")
            got = {"received": asyncio.Queue(), "sent": asyncio.Queue()}
            x.add_event_handler("carbon_received", got["received"].put_nowait)
            x.add_event_handler("carbon_sent", got["sent"].put_nowait)
            try:
                await x.online(s.port)
                await x["xep_0280"].enable(timeout=5)
                other = login(s, "juliet", "phone")
                r = login(s, "romeo", "r")
                r.send("<message to='juliet@localhost/phone' id='k1' type='chat'><body>to phone</body></message>")
                other.expect(re.compile("<message [^>]*id='k1'.*</message>"))
                m = await asyncio.wait_for(got["received"].get(), 10)
                fwd = m["carbon_received"]
                assert str(fwd["from"]) == "romeo@localhost/r", fwd
                assert fwd["body"] == "to phone", fwd
                other.send("<message to='romeo@localhost/r' id='k2' type='chat'><body>from phone</body></message>")
                r.expect(re.compile("<message [^>]*id='k2'.*</message>"))
                m = await asyncio.wait_for(got["sent"].get(), 10)
                fwd = m["carbon_sent"]
                assert str(fwd["to"]) == "romeo@localhost/r", fwd
                assert fwd["body"] == "from phone", fwd
                await x["xep_0280"].disable(timeout=5)
                other.close()
                r.close()
            finally:
                await stop_all(x)
        run_async(body())


# ---- profanity (Debian's, in tmux) -------------------------------------------

class Profanity:
    """profanity for one account in a tmux server of its own, with a
    fresh home (account file with the password, the test certificate
    trusted) and a debug log; screen() is what its user sees."""

    def __init__(self, jid, password, port):
        for tool in ("profanity", "tmux"):
            if shutil.which(tool) is None:
                raise AssertionError("%s is needed (Debian package %s)" % (tool, tool))
        self.home = tempfile.mkdtemp(prefix="xmppd-prof-")
        self.sock = "xmppd-prof-%d" % os.getpid()
        data = os.path.join(self.home, "data", "profanity")
        conf = os.path.join(self.home, "config", "profanity")
        os.makedirs(data)
        os.makedirs(conf)
        with open(os.path.join(data, "accounts"), "w") as f:
            f.write("[%s]\nenabled=true\njid=%s\nserver=127.0.0.1\nport=%d\n"
                    "resource=prof\npassword=%s\ntls.policy=trust\n"
                    % (jid, jid, port, password))
        with open(os.path.join(conf, "profrc"), "w") as f:
            f.write("[connection]\nautoping=0\n[ui]\nsplash=false\n")
        self.log = os.path.join(data, "logs", "profanity.log")
        self.tmux("new-session", "-d", "-s", "p", "-x", "200", "-y", "50",
                  "env -i PATH=/usr/bin:/bin HOME={0} XDG_DATA_HOME={0}/data "
                  "XDG_CONFIG_HOME={0}/config TERM=xterm-256color LANG=C.UTF-8 "
                  "profanity -l DEBUG -a {1}".format(self.home, jid))

    def tmux(self, *args):
        return subprocess.run(["tmux", "-L", self.sock, "-f", "/dev/null"] + list(args),
                              capture_output=True, text=True, timeout=10,
                              check=True).stdout

    def screen(self):
        return "\n".join(ln.rstrip() for ln in self.tmux(
            "capture-pane", "-p", "-J", "-t", "p").splitlines())

    def wire(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def type(self, line):
        self.tmux("send-keys", "-t", "p", "-l", line)
        self.tmux("send-keys", "-t", "p", "Enter")

    def shows(self, pattern, timeout=20):
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while not rx.search(self.screen()):
            if time.monotonic() > deadline:
                raise AssertionError("profanity never showed %r; screen:\n%s"
                                     % (pattern, self.screen()))
            time.sleep(0.2)

    def close(self):
        try:
            self.tmux("kill-server")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.home, ignore_errors=True)


def test_profanity():
    """Debian's profanity enables carbons at login: no "Server error
    enabling message carbons: service-unavailable" any more, and what
    juliet's other resource sends and receives shows in profanity's
    chat window with romeo."""
    with Server(workers=2, users=USERS) as s:
        prof = Profanity("juliet@localhost", dict(USERS)["juliet@localhost"], s.port)
        try:
            prof.shows(r"juliet@localhost/prof logged in successfully")
            deadline = time.monotonic() + 15
            while "<enable xmlns=\"urn:xmpp:carbons:2\"" not in prof.wire():
                assert time.monotonic() < deadline, "profanity sent no carbons enable"
                time.sleep(0.2)
            phone = login(s, "juliet", "phone")
            r = login(s, "romeo", "r")
            ping(phone)
            time.sleep(1)
            assert "Server error enabling message carbons" not in prof.screen(), prof.screen()
            assert "carbons" not in prof.screen().lower(), prof.screen()
            prof.type("/msg romeo@localhost")
            prof.shows(r"romeo@localhost")
            phone.send("<message to='romeo@localhost/r' id='pp1' type='chat'>"
                       "<body>sent from the phone</body></message>")
            r.expect(re.compile("<message [^>]*id='pp1'.*</message>"))
            prof.shows(r"me: sent from the phone$")
            r.send("<message to='juliet@localhost/phone' id='pp2' type='chat'>"
                   "<body>for the phone</body></message>")
            phone.expect(re.compile("<message [^>]*id='pp2'.*</message>"))
            prof.shows(r"romeo@localhost/r: for the phone$")
            phone.close()
            r.close()
        except BaseException:
            print("---- profanity's log (end) ----\n%s" % prof.wire()[-4000:])
            raise
        finally:
            prof.close()


if __name__ == "__main__":
    run_tests([
        test_enable_disable_and_errors,
        test_received_and_sent_copies_across_workers,
        test_not_eligible,
        test_private_removed_before_delivery,
        test_bare_jid_to_several_resources,
        test_offline_blocking_and_own_account,
        test_slixmpp_xep_0280,
        test_profanity,
    ])

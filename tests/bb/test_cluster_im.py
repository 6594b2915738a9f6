"""Instant messaging across the nodes of a cluster, as its users see it
(issue 15, "Tests"): three xmppd nodes on three NATS servers
(tests/bb/clusterlab.py), the clients of one conversation on different
nodes, and each test asserting what the single-node tests (test_im.py,
test_carbons.py, test_blocking.py, test_mam.py) assert on one node:

  * RFC 6121 3.1 subscription between users on two nodes: the requests,
    the roster pushes to every interested resource of both accounts on
    every node, the available presence both ways, unavailable at logout;
  * presence broadcast to contacts on two other nodes, and the probes
    answered from there; directed presence and its unavailable;
  * a roster push to the resources of one account on three nodes;
  * XEP-0280 carbons (received and sent) to a resource on another node;
  * XEP-0191 block pushes to other nodes; a blocked contact refused
    from whatever node it writes;
  * RFC 6121 8.5.2 bare-JID messages over resources on two nodes;
  * RFC 6120 7.7.2.2 resource conflict across nodes;
  * XEP-0313: both archives hold a message between nodes;
  * XEP-0160 offline storage delivered at a login on another node; a
    message stored before the directory showed the login reaches that
    session (im.offline_watch), within im.offline_watch_max;
  * an IQ to a full JID on another node answered back.

Users and passwords are imlib's.  Exits 77 without nats-server
(clusterlab's skips).  Needs XMPPD_TEST_PGCONN.
"""
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_tests  # noqa: E402
from clusterlab import Lab, skippable, wait_until  # noqa: E402
from imlib import (IM, PW, STANZAS, checked, error_rx, exact,  # noqa: E402
                   item_rx, push_rx, subscribe_both)

NS_CARBONS = "urn:xmpp:carbons:2"
NS_FWD = "urn:xmpp:forward:0"
NS_BLOCK = "urn:xmpp:blocking"
NS_MAM = "urn:xmpp:mam:2"

# What the directory takes to carry a change to the other nodes: the
# bridge scans its table every 100 ms (cluster/bridge_route.c), NATS
# adds a millisecond.  Used only after a change that `xmppctl sessions`
# does not show (availability, priority, carbons, interest).
SETTLE = 0.6


def lab3():
    lab = Lab(nodes=3, nats=3)
    return lab


def add_users(lab):
    for u, p in PW.items():
        lab.add_user("%s@localhost" % u, p)


def session_jids(node):
    r = node.ctl("sessions", "--json")
    return sorted(re.findall(r'"jid": "([^"]+)"', getattr(r, "stdout", r)))


def listed(lab, *ims, gone=()):
    """Every running node lists the sessions of ims (and none of gone)."""
    want = {im.jid for im in ims}
    for node in lab.live_nodes():
        def ok(node=node):
            have = set(session_jids(node))
            return (want <= have and not (set(gone) & have),
                    "%s lists %s" % (node.name, sorted(have)))
        wait_until(ok, 10, "the sessions in every node's list")
    time.sleep(SETTLE)


def on(lab, i, user, resource, roster=True, presence="<presence/>"):
    """user logged in on node i (index) with resource: imlib's login,
    on that node."""
    c = lab.nodes[i].connect()
    lab.clients.append(c)
    im = IM(lab.nodes[i], user, resource, name="%s/%s@n%d" % (user, resource, i + 1),
            client=c)
    if roster:
        got = im.roster_get()
        assert "type='result'" in got, got
    if presence:
        im.send(presence)
    return im


def relayed(to, frm, type_=None, body=""):
    """A client's presence as xmppd relays it (test_im.py's)."""
    t = " type='%s'" % type_ if type_ else ""
    if body:
        return "<presence to='%s'%s from='%s'>%s</presence>" % (to, t, frm, body)
    return "<presence to='%s'%s from='%s'/>" % (to, t, frm)


def gone(to, frm):
    return "<presence to='%s' from='%s' type='unavailable'/>" % (to, frm)


def sub_stanza(type_, frm, to):
    return "<presence to='%s' type='%s' from='%s'/>" % (to, type_, frm)


def msg(to, id_, frm, body, type_="chat"):
    t = " type='%s'" % type_ if type_ else ""
    return "<message to='%s'%s id='%s' from='%s'><body>%s</body></message>" % (
        to, t, id_, frm, body)


ANY_MESSAGE = re.compile("<message .*", re.S)


def no_message(im, secs=0.4):
    im.quiet(secs, ANY_MESSAGE)


# ---------------------------------------------------------------------------

@skippable
@checked
def test_subscription_across_nodes():
    """RFC 6121 3.1 with juliet on n1 and n2, romeo on n2 and n3."""
    with lab3() as lab:
        add_users(lab)
        lab.wait_converged(15)
        ja = on(lab, 0, "juliet", "a")
        jb = on(lab, 1, "juliet", "b")
        rr = on(lab, 1, "romeo", "r", presence="<presence><status>orchard</status></presence>")
        rs = on(lab, 2, "romeo", "s")
        listed(lab, ja, jb, rr, rs)
        for x in (ja, jb, rr, rs):
            x.drain(0.3)

        # 3.1.2: juliet's request; her push (ask) to both her resources,
        # the request to both of romeo's, on whatever node.
        ja.send("<presence to='romeo@localhost' type='subscribe'/>")
        for j in (ja, jb):
            j.expect(push_rx(1, item_rx("romeo@localhost", "none", ask=True)))
        for r in (rr, rs):
            r.expect(sub_stanza("subscribe", "juliet@localhost", "romeo@localhost"))
        # 3.1.5: romeo/s (n3) approves.
        rs.send("<presence to='juliet@localhost' type='subscribed'/>")
        for r in (rr, rs):
            r.expect(push_rx(1, item_rx("juliet@localhost", "from")))
        for j in (ja, jb):
            j.expect(sub_stanza("subscribed", "romeo@localhost", "juliet@localhost"))
            j.expect(push_rx(2, item_rx("romeo@localhost", "to")))
            # 3.1.6: the contact's presence, from each available resource
            j.expect(relayed("juliet@localhost", "romeo@localhost/r",
                             body="<status>orchard</status>"))
            j.expect(relayed("juliet@localhost", "romeo@localhost/s"))
        # And back: romeo/r (n2) subscribes, juliet/b (n2) approves.
        rr.send("<presence to='juliet@localhost' type='subscribe'/>")
        for r in (rr, rs):
            r.expect(push_rx(2, item_rx("juliet@localhost", "from", ask=True)))
        for j in (ja, jb):
            j.expect(sub_stanza("subscribe", "romeo@localhost", "juliet@localhost"))
        jb.send("<presence to='romeo@localhost' type='subscribed'/>")
        for j in (ja, jb):
            j.expect(push_rx(3, item_rx("romeo@localhost", "both")))
        for r in (rr, rs):
            r.expect(sub_stanza("subscribed", "juliet@localhost", "romeo@localhost"))
            r.expect(push_rx(3, item_rx("juliet@localhost", "both")))
            r.expect(relayed("romeo@localhost", "juliet@localhost/a"))
            r.expect(relayed("romeo@localhost", "juliet@localhost/b"))
        # Stored rosters agree, read from a third node's session.
        time.sleep(0.3)
        for x in (ja, jb, rr, rs):
            x.drain(0.2)
        # A presence change of juliet/a on n1 reaches romeo on n2 and n3.
        ja.send("<presence><show>away</show></presence>")
        for r in (rr, rs):
            r.expect(relayed("romeo@localhost", "juliet@localhost/a", body="<show>away</show>"))
        # juliet/a logs out: unavailable to romeo's resources on n2, n3.
        ja.close()
        for r in (rr, rs):
            r.expect(gone("romeo@localhost", "juliet@localhost/a"), timeout=3)
        # romeo/s logs out on n3: juliet/b on n2 sees it.
        rs.close()
        jb.expect(gone("juliet@localhost", "romeo@localhost/s"), timeout=3)
        rr.quiet(0.3, re.compile(".*juliet@localhost/b.*", re.S))


@skippable
@checked
def test_broadcast_and_probes_two_nodes():
    """RFC 6121 4.2-4.4: juliet on n1; romeo on n2 and nurse on n3 are
    her contacts (both): they get her initial presence and changes, she
    gets theirs as probe answers, and her logout."""
    with lab3() as lab:
        add_users(lab)
        lab.wait_converged(15)
        j = on(lab, 0, "juliet", "a")
        r = on(lab, 1, "romeo", "r", presence="<presence><show>chat</show></presence>")
        n = on(lab, 2, "nurse", "n", presence="<presence><status>busy</status></presence>")
        listed(lab, j, r, n)
        subscribe_both(j, r)
        subscribe_both(j, n)
        j.close()
        for x in (r, n):
            x.expect(gone(x.bare, "juliet@localhost/a"), timeout=3)
        listed(lab, r, n, gone=("juliet@localhost/a",))
        # juliet back on n1: her contacts' presence comes from n2 and n3
        # (probes answered there), hers goes to them.
        j = on(lab, 0, "juliet", "w", presence=None)
        j.send("<presence><status>Ay me</status></presence>")
        j.expect(relayed("juliet@localhost/w", "romeo@localhost/r", body="<show>chat</show>"))
        j.expect(relayed("juliet@localhost/w", "nurse@localhost/n", body="<status>busy</status>"))
        for x in (r, n):
            x.expect(relayed(x.bare, "juliet@localhost/w", body="<status>Ay me</status>"))
        j.send("<presence><show>dnd</show></presence>")
        for x in (r, n):
            x.expect(relayed(x.bare, "juliet@localhost/w", body="<show>dnd</show>"))
        # Going unavailable without logout: both see it.
        j.send("<presence type='unavailable'/>")
        for x in (r, n):
            x.expect(relayed(x.bare, "juliet@localhost/w", "unavailable"), timeout=3)
        # Logins in a row, initial presence at once after the bind:
        # the contacts' presence comes every time (their nodes answer
        # the probes before their directory knows the new session).
        j.close()       # unavailable already: nothing more to see
        for i in range(8):
            q = on(lab, i % 2 * 2, "juliet", "q%d" % i, roster=False)
            q.expect(relayed(q.jid, "romeo@localhost/r", body="<show>chat</show>"))
            q.expect(relayed(q.jid, "nurse@localhost/n", body="<status>busy</status>"))
            q.close()
            for x in (r, n):
                x.expect(gone(x.bare, q.jid), timeout=3)
        j = on(lab, 0, "juliet", "w")
        # A non-contact on n2 gets none of it.
        t = on(lab, 1, "tybalt", "t")
        listed(lab, t)
        j.send("<presence/>")
        for x in (r, n):
            x.expect(relayed(x.bare, "juliet@localhost/w"))
        t.quiet(0.5, re.compile(".*juliet@localhost.*", re.S))


@skippable
@checked
def test_directed_presence_across_nodes():
    """RFC 6121 4.6: directed presence from n1 to a full JID on n2 and a
    bare JID on n3 (no subscription), unavailable to both at logout."""
    with lab3() as lab:
        add_users(lab)
        lab.wait_converged(15)
        n = on(lab, 1, "nurse", "x")
        n2 = on(lab, 2, "nurse", "y")
        t = on(lab, 2, "tybalt", "t")
        j = on(lab, 0, "juliet", "balcony")
        listed(lab, n, n2, t, j)
        for x in (n, n2, t):
            x.drain(0.3)
        j.send("<presence to='nurse@localhost/x'><status>psst</status></presence>")
        n.expect(relayed("nurse@localhost/x", "juliet@localhost/balcony",
                         body="<status>psst</status>"))
        n2.quiet(0.3)
        j.send("<presence to='tybalt@localhost'/>")
        t.expect(relayed("tybalt@localhost", "juliet@localhost/balcony"))
        j.close()
        n.expect(gone("nurse@localhost/x", "juliet@localhost/balcony"), timeout=3)
        t.expect(gone("tybalt@localhost", "juliet@localhost/balcony"), timeout=3)
        n2.quiet(0.3)


@skippable
@checked
def test_roster_push_three_nodes():
    """RFC 6121 2.1.6: a roster set on n1 is pushed to the account's
    interested resources on n1, n2 and n3, not to one that never asked
    for the roster."""
    with lab3() as lab:
        add_users(lab)
        lab.wait_converged(15)
        a = on(lab, 0, "juliet", "a")
        b = on(lab, 1, "juliet", "b")
        c = on(lab, 2, "juliet", "c")
        d = on(lab, 1, "juliet", "d", roster=False)
        listed(lab, a, b, c, d)
        for x in (a, b, c, d):
            x.drain(0.3)
        got = a.roster_set("<item jid='benvolio@localhost' name='Ben'><group>Kin</group></item>")
        assert "type='result'" in got, got
        item = item_rx("benvolio@localhost", "none", name="Ben", groups=("Kin",))
        for x in (a, b, c):
            x.expect(push_rx(1, item))
        d.quiet(0.5, re.compile(".*jabber:iq:roster.*", re.S))
        # Removal from n3: pushed to n1 and n2.
        got = c.roster_set("<item jid='benvolio@localhost' subscription='remove'/>")
        assert "type='result'" in got, got
        for x in (a, b, c):
            x.expect(push_rx(2, item_rx("benvolio@localhost", "remove")))
        d.quiet(0.3, re.compile(".*jabber:iq:roster.*", re.S))


def carbon(kind, account, to, inner, type_="chat"):
    t = "" if type_ is None else " type='%s'" % type_
    return ("<message from='%s' to='%s'%s><%s xmlns='%s'><forwarded xmlns='%s'>"
            "%s</forwarded></%s></message>" % (account, to, t, kind, NS_CARBONS, NS_FWD,
                                               inner, kind))


def fwd(frm, to, id_, body):
    """A message inside <forwarded/> (test_carbons.py's msg)."""
    return ("<message xmlns='jabber:client' to='%s' id='%s' type='chat' from='%s'>"
            "<body>%s</body></message>" % (to, id_, frm, body))


def plain(text):
    return text.replace(" xmlns='jabber:client'", "", 1)


def enable_carbons(im):
    im.send("<iq type='set' id='on'><enable xmlns='%s'/></iq>" % NS_CARBONS)
    im.expect(exact(im.empty_result("on")))


@skippable
@checked
def test_carbons_across_nodes():
    """XEP-0280: juliet/a1 on n1, juliet/a2 on n2 with carbons on, romeo
    on n3.  A message to a1 is copied 'received' to a2; one a1 sends is
    copied 'sent' to a2; with a2's carbons off, nothing."""
    with lab3() as lab:
        add_users(lab)
        lab.wait_converged(15)
        a1 = on(lab, 0, "juliet", "a1")
        a2 = on(lab, 1, "juliet", "a2")
        r = on(lab, 2, "romeo", "r")
        enable_carbons(a2)
        listed(lab, a1, a2, r)
        for x in (a1, a2, r):
            x.drain(0.3)
        r.send("<message to='juliet@localhost/a1' id='m1' type='chat'><body>hi</body></message>")
        m1 = fwd("romeo@localhost/r", "juliet@localhost/a1", "m1", "hi")
        a1.expect(exact(plain(m1)))
        a2.expect(exact(carbon("received", "juliet@localhost", "juliet@localhost/a2", m1)))
        a1.send("<message to='romeo@localhost/r' id='m2' type='chat'><body>yo</body></message>")
        m2 = fwd("juliet@localhost/a1", "romeo@localhost/r", "m2", "yo")
        r.expect(exact(plain(m2)))
        a2.expect(exact(carbon("sent", "juliet@localhost", "juliet@localhost/a2", m2)))
        # a1 has carbons off: a message a2 sends gets no copy to a1.
        a2.send("<message to='romeo@localhost/r' id='m3' type='chat'><body>3</body></message>")
        r.expect(exact(plain(fwd("juliet@localhost/a2", "romeo@localhost/r", "m3", "3"))))
        no_message(a1)
        # Off on a2 (n2): n3's router must learn it too.
        a2.send("<iq type='set' id='off'><disable xmlns='%s'/></iq>" % NS_CARBONS)
        a2.expect(exact(a2.empty_result("off")))
        time.sleep(SETTLE)
        r.send("<message to='juliet@localhost/a1' id='m4' type='chat'><body>4</body></message>")
        a1.expect(exact(plain(fwd("romeo@localhost/r", "juliet@localhost/a1", "m4", "4"))))
        no_message(a2)


@skippable
@checked
def test_blocking_across_nodes():
    """XEP-0191: juliet/one (n1) blocks tybalt; juliet/two (n2) gets the
    push; tybalt's message to either resource is refused with
    service-unavailable whether he writes from n1, n2 or n3; offline
    storage refuses him too; unblocked, his messages arrive again."""
    with lab3() as lab:
        add_users(lab)
        lab.wait_converged(15)
        one = on(lab, 0, "juliet", "one")
        two = on(lab, 1, "juliet", "two")
        two.send("<iq type='get' id='g1'><blocklist xmlns='%s'/></iq>" % NS_BLOCK)
        two.expect(re.compile("<iq [^>]*id='g1'[^>]*type='result'.*", re.S))
        ts = [on(lab, i, "tybalt", "t%d" % (i + 1)) for i in range(3)]
        listed(lab, one, two, *ts)
        for x in [one, two] + ts:
            x.drain(0.3)
        one.send("<iq type='set' id='b1'><block xmlns='%s'><item jid='tybalt@localhost'/>"
                 "</block></iq>" % NS_BLOCK)
        one.expect(re.compile("<iq [^>]*id='b1'[^>]*type='result'/>"))
        push = re.compile("<iq [^>]*type='set'[^>]*><block xmlns='%s'><item "
                          "jid='tybalt@localhost'/></block></iq>" % NS_BLOCK)
        two.expect(push)
        time.sleep(SETTLE)
        for t in ts:
            for target in ("juliet@localhost/one", "juliet@localhost/two"):
                id_ = "x%s%s" % (t.jid[-1], target[-1])
                t.send("<message to='%s' id='%s' type='chat'><body>hey</body></message>"
                       % (target, id_))
                t.expect(error_rx("message", target, id_, t.jid, "cancel",
                                  "service-unavailable"))
        for x in (one, two):
            no_message(x)
        # Blocked contacts see no presence of juliet either.
        # Offline: refused as well, from n3.
        one.close()
        two.close()
        listed(lab, *ts, gone=("juliet@localhost/one", "juliet@localhost/two"))
        ts[2].send("<message to='juliet@localhost' id='off1' type='chat'><body>z</body></message>")
        ts[2].expect(error_rx("message", "juliet@localhost", "off1", ts[2].jid, "cancel",
                              "service-unavailable"))
        # Unblocked on n2: tybalt on n1 gets through to n2.
        two = on(lab, 1, "juliet", "two")
        two.send("<iq type='set' id='u1'><unblock xmlns='%s'><item jid='tybalt@localhost'/>"
                 "</unblock></iq>" % NS_BLOCK)
        two.expect(re.compile("<iq [^>]*id='u1'[^>]*type='result'/>"))
        listed(lab, two)
        ts[0].send("<message to='juliet@localhost/two' type='chat' id='ok1'><body>w</body></message>")
        two.expect(msg("juliet@localhost/two", "ok1", ts[0].jid, "w"))


@skippable
@checked
def test_bare_jid_rules_across_nodes():
    """RFC 6121 8.5.2 as test_im.py's test_message_rules asserts it on
    one node: juliet/hi on n2 (priority 5), juliet/lo on n3 (1),
    juliet/neg on n1 (-1); romeo writes from n1."""
    with lab3() as lab:
        add_users(lab)
        lab.wait_converged(15)
        r = on(lab, 0, "romeo", "orchard")
        hi = on(lab, 1, "juliet", "hi", presence="<presence><priority>5</priority></presence>")
        lo = on(lab, 2, "juliet", "lo", presence="<presence><priority>1</priority></presence>")
        neg = on(lab, 0, "juliet", "neg", presence="<presence><priority>-1</priority></presence>")
        listed(lab, r, hi, lo, neg)
        for x in (r, hi, lo, neg):
            x.drain(0.3)
        R = "romeo@localhost/orchard"
        # Highest priority only (8.5.2.1.1).
        r.send("<message to='juliet@localhost' type='chat' id='m1'><body>1</body></message>")
        hi.expect(msg("juliet@localhost", "m1", R, "1"))
        for x in (lo, neg):
            no_message(x, 0.4)
        # Equal priorities: both (xmppd sends to all, as on one node).
        lo.send("<presence><priority>5</priority></presence>")
        time.sleep(SETTLE)
        r.send("<message to='juliet@localhost' type='chat' id='m2'><body>2</body></message>")
        hi.expect(msg("juliet@localhost", "m2", R, "2"))
        lo.expect(msg("juliet@localhost", "m2", R, "2"))
        no_message(neg, 0.3)
        # lo above hi now: lo only.
        lo.send("<presence><priority>7</priority></presence>")
        time.sleep(SETTLE)
        r.send("<message to='juliet@localhost' type='chat' id='m2b'><body>2b</body></message>")
        lo.expect(msg("juliet@localhost", "m2b", R, "2b"))
        for x in (hi, neg):
            no_message(x, 0.3)
        # Headline: every non-negative resource.
        lo.send("<presence><priority>2</priority></presence>")
        time.sleep(SETTLE)
        r.send("<message to='juliet@localhost' type='headline' id='m3'><body>3</body></message>")
        hi.expect(msg("juliet@localhost", "m3", R, "3", "headline"))
        lo.expect(msg("juliet@localhost", "m3", R, "3", "headline"))
        no_message(neg, 0.3)
        # Full JID not online, others online: bare JID rules (to hi on n2).
        r.send("<message to='juliet@localhost/gone' type='chat' id='m5'><body>5</body></message>")
        hi.expect(msg("juliet@localhost/gone", "m5", R, "5"))
        no_message(lo, 0.3)
        # To an online full JID: exactly that resource, whatever its priority.
        r.send("<message to='juliet@localhost/lo' type='chat' id='m7'><body>7</body></message>")
        lo.expect(msg("juliet@localhost/lo", "m7", R, "7"))
        hi.quiet(0.3, ANY_MESSAGE)
        # hi logs out on n2: the bare JID goes to lo on n3 now.
        hi.close()
        listed(lab, r, lo, neg, gone=("juliet@localhost/hi",))
        r.send("<message to='juliet@localhost' type='chat' id='m8'><body>8</body></message>")
        lo.expect(msg("juliet@localhost", "m8", R, "8"))
        no_message(neg, 0.3)


@skippable
@checked
def test_resource_conflict_across_nodes():
    """RFC 6120 7.7.2.2 with the default policy (the new session wins):
    juliet/x bound on n1, then on n2: n1's stream ends with <conflict/>,
    n2's binds as juliet/x, and every node lists it once, at n2."""
    with lab3() as lab:
        add_users(lab)
        lab.wait_converged(15)
        old = on(lab, 0, "juliet", "x")
        r = on(lab, 2, "romeo", "r")
        listed(lab, old, r)
        old.drain(0.3)
        new = on(lab, 1, "juliet", "x")
        assert new.jid == "juliet@localhost/x", new.jid
        got = old.c.read_all_until_close(timeout=5)
        assert re.search("<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                         "(<text [^>]*>[^<]*</text>)?</stream:error></stream:stream>", got), got
        old.closed = True
        for node in lab.nodes:
            wait_until(lambda node=node: (session_jids(node).count("juliet@localhost/x") == 1,
                                          session_jids(node)), 10,
                       "%s lists juliet/x once" % node.name)
        time.sleep(SETTLE)
        # The new session gets what is sent to the full JID, from n3.
        r.send("<message to='juliet@localhost/x' type='chat' id='c1'><body>c</body></message>")
        new.expect(msg("juliet@localhost/x", "c1", "romeo@localhost/r", "c"))
        # n2's is the one: on n2 it is a local session, n1 and n3 see the
        # bridge's slot (a remote entry).
        st = lab.nodes[1].ctl("sessions", "--json").stdout
        m = re.search(r'\{[^{}]*"jid": "juliet@localhost/x"[^{}]*\}', st)
        assert m and re.search(r'"worker": [01]\b', m.group(0)), st


@skippable
def test_conflict_race_across_nodes():
    """Two clients bind juliet/x on n1 and n2 at the same moment (both
    logged in up to the bind, then both bind): at most one keeps the
    resource and every node lists the same single holder, whose stream
    gets what is sent to juliet/x; the other's stream ends with
    <conflict/> or it was given another resource."""
    with lab3() as lab:
        add_users(lab)
        lab.wait_converged(15)
        r = on(lab, 2, "romeo", "r")
        listed(lab, r)
        for round_ in range(3):
            res = "x%d" % round_
            cs = []
            for i in (0, 1):
                c = lab.nodes[i].connect()
                lab.clients.append(c)
                c.open()
                c.starttls()
                assert c.auth_scram("juliet", PW["juliet"]).startswith("<success"), i
                c.open()
                cs.append(c)
            for c in cs:
                c.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                       "<resource>%s</resource></bind></iq>" % res)
            jids = []
            for c in cs:
                got = c.read_until("<iq [^>]*id='b'.*?</iq>", timeout=5)
                m = re.search("<jid>([^<]+)</jid>", got)
                jids.append(m.group(1) if m else None)
            full = "juliet@localhost/%s" % res
            holders = []
            for c in cs:
                c.send("<presence/>")
            time.sleep(2.0)     # the directory's events meet; the loser goes
            for i, c in enumerate(cs):
                if jids[i] != full:
                    continue
                try:    # TLS: one record a read; read on to the error
                    c.read_until("<conflict ", timeout=1.0)
                    continue
                except (AssertionError, OSError):
                    pass
                if c.is_closed(0.2):
                    continue
                holders.append(i)
            assert len(holders) == 1, "round %d: %s bound %s, live holders %s" % (
                round_, res, jids, holders)
            for node in lab.nodes:
                wait_until(lambda node=node: (session_jids(node).count(full) == 1,
                                              session_jids(node)), 10,
                           "%s lists %s once" % (node.name, full))
            time.sleep(SETTLE)
            r.send("<message to='%s' type='chat' id='cr%d'><body>race</body></message>"
                   % (full, round_))
            cs[holders[0]].read_until("<message [^>]*id='cr%d'" % round_, timeout=5)
            for c in cs:
                c.close()
            listed(lab, r, gone=(full,))


def mam_bodies(im, qid):
    """The bodies of the messages in im's archive (a XEP-0313 query)."""
    im.send("<iq type='set' id='%s'><query xmlns='%s' queryid='%s'/></iq>" % (qid, NS_MAM, qid))
    bodies = []
    while True:
        st = im.expect(re.compile("<message [^>]*><result xmlns='%s' queryid='%s'.*|"
                                  "<iq [^>]*id='%s'.*" % (NS_MAM, qid, qid), re.S))
        if st.startswith("<iq"):
            assert "type='result'" in st and "complete='true'" in st, st
            return bodies
        bodies += re.findall("<body>([^<]*)</body>", st)


@skippable
@checked
def test_mam_both_archives():
    """XEP-0313: a message from romeo on n1 to juliet on n2 is in both
    archives, read from sessions on n3 (the database is shared), once."""
    with lab3() as lab:
        add_users(lab)
        lab.wait_converged(15)
        r = on(lab, 0, "romeo", "r")
        j = on(lab, 1, "juliet", "j")
        listed(lab, r, j)
        r.send("<message to='juliet@localhost/j' type='chat' id='a1'><body>archived-1</body></message>")
        j.expect(msg("juliet@localhost/j", "a1", "romeo@localhost/r", "archived-1"))
        j.send("<message to='romeo@localhost' type='chat' id='a2'><body>archived-2</body></message>")
        r.expect(msg("romeo@localhost", "a2", "juliet@localhost/j", "archived-2"))
        time.sleep(1.0)     # archive writes are batched
        r3 = on(lab, 2, "romeo", "q")
        j3 = on(lab, 2, "juliet", "q")
        for x in (r3, j3):
            got = mam_bodies(x, "f1")
            assert got == ["archived-1", "archived-2"], (x.name, got)


@skippable
@checked
def test_offline_storage_any_node():
    """XEP-0160: juliet has no session anywhere; romeo's messages from
    n1 (bare and full JID) are stored and come at her login on n3,
    with <delay/>, in order; then not again."""
    with lab3() as lab:
        add_users(lab)
        lab.wait_converged(15)
        r = on(lab, 0, "romeo", "r")
        j = on(lab, 1, "juliet", "tmp")
        listed(lab, r, j)
        j.close()
        listed(lab, r, gone=("juliet@localhost/tmp",))
        r.send("<message to='juliet@localhost' type='chat' id='o1'><body>one</body></message>")
        r.send("<message to='juliet@localhost/tmp' type='chat' id='o2'><body>two</body></message>")
        r.quiet(0.8)
        j = on(lab, 2, "juliet", "back")
        delay = ("<delay xmlns='urn:xmpp:delay' from='localhost' stamp='[^']+'>"
                 "Offline Storage</delay>")
        j.expect_order(
            re.compile(re.escape("<message to='juliet@localhost' type='chat' id='o1' "
                                 "from='romeo@localhost/r'><body>one</body>") + delay
                       + "</message>"),
            re.compile(re.escape("<message to='juliet@localhost/tmp' type='chat' id='o2' "
                                 "from='romeo@localhost/r'><body>two</body>") + delay
                       + "</message>"))
        j.close()
        # delivered rows are deleted once written (offline.c): a login
        # after the logout is done (as test_im.py's, which waits too)
        listed(lab, r, gone=("juliet@localhost/back",))
        j = on(lab, 0, "juliet", "again")
        no_message(j, 0.8)


OFFLINE_DELAY = ("<delay xmlns='urn:xmpp:delay' from='localhost' "
                 "stamp='[^']+'>Offline Storage</delay>")


@skippable
@checked
def test_offline_watch_bounded():
    """juliet and nurse log in on n2 while n2's bridge is stopped
    (SIGSTOP), so n1's directory does not show them; romeo on n1 writes
    to both: n1 stores both messages.  Its worker watches juliet's
    account (im.offline_watch) and, once n2's bridge runs again and the
    directory shows her session, nudges it: she gets the message in this
    session, with its <delay/>.  With im.offline_watch_max = 1 nurse's
    account is not watched (logged): her message waits for her next
    login, which gets it."""
    with Lab(nodes=3, nats=3, workers=1, node_timeout="6s",
             overrides={"im.offline_watch_max": "1"}) as lab:
        add_users(lab)
        lab.wait_converged(15)
        r = on(lab, 0, "romeo", "r")
        listed(lab, r)
        bridge = lab.nodes[1].bridge_pid()
        assert bridge, "no bridge pid for n2"
        os.kill(bridge, signal.SIGSTOP)
        try:
            j = on(lab, 1, "juliet", "j")
            n = on(lab, 1, "nurse", "n")
            for x in (j, n):
                # after her initial presence's read of the storage, on
                # the same database link: that read found nothing
                assert "type='result'" in x.roster_get()
            r.send("<message to='juliet@localhost' type='chat' id='w1'>"
                   "<body>one</body></message>")
            r.send("<message to='nurse@localhost' type='chat' id='w2'>"
                   "<body>two</body></message>")
            wait_until(lambda: (re.search(
                r"offline message for nurse@localhost: not watched for a "
                r"late session \(1 accounts watched already, "
                r"im.offline_watch_max\)\n", lab.nodes[0].log_text()),
                "n1's log"), 10, "nurse's account not watched")
            no_message(j, 0.2)
        finally:
            os.kill(bridge, signal.SIGCONT)
        j.expect(re.compile(re.escape(
            "<message to='juliet@localhost' type='chat' id='w1' "
            "from='romeo@localhost/r'><body>one</body>") + OFFLINE_DELAY
            + "</message>"), timeout=10)
        # by then n1's directory shows nurse too (the same scan of n2's
        # table carried both logins) and ticks went by: no nudge for her
        no_message(n, 2.5)
        n.close()
        listed(lab, r, j, gone=("nurse@localhost/n",))
        n = on(lab, 2, "nurse", "again")
        n.expect(re.compile(re.escape(
            "<message to='nurse@localhost' type='chat' id='w2' "
            "from='romeo@localhost/r'><body>two</body>") + OFFLINE_DELAY
            + "</message>"), timeout=10)


@skippable
@checked
def test_iq_to_full_jid_on_other_node():
    """RFC 6120 8.2.3 / XEP-0199 / XEP-0092: romeo on n1 asks juliet's
    client on n2; her answers come back to him; an IQ to a resource
    bound nowhere is answered service-unavailable."""
    with lab3() as lab:
        add_users(lab)
        lab.wait_converged(15)
        r = on(lab, 0, "romeo", "r")
        j = on(lab, 1, "juliet", "j")
        listed(lab, r, j)
        for x in (r, j):
            x.drain(0.3)
        r.send("<iq to='juliet@localhost/j' type='get' id='v1'>"
               "<query xmlns='jabber:iq:version'/></iq>")
        got = j.expect(re.compile("<iq [^>]*id='v1'.*", re.S))
        assert "from='romeo@localhost/r'" in got and "type='get'" in got, got
        j.send("<iq to='romeo@localhost/r' type='result' id='v1'><query xmlns='jabber:iq:version'>"
               "<name>Balcony</name><version>1.0</version></query></iq>")
        got = r.expect(re.compile("<iq [^>]*id='v1'.*", re.S))
        assert "from='juliet@localhost/j'" in got and "type='result'" in got and \
            "<name>Balcony</name>" in got, got
        r.send("<iq to='juliet@localhost/j' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        got = j.expect(re.compile("<iq [^>]*id='p1'.*", re.S))
        assert "from='romeo@localhost/r'" in got, got
        j.send("<iq to='romeo@localhost/r' type='result' id='p1'/>")
        got = r.expect(re.compile("<iq [^>]*id='p1'[^>]*/>"))
        assert "from='juliet@localhost/j'" in got and "type='result'" in got, got
        r.send("<iq to='juliet@localhost/nowhere' type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>")
        r.expect(re.compile("<iq from='juliet@localhost/nowhere' id='p2' to='romeo@localhost/r' "
                            "type='error'>(<ping xmlns='urn:xmpp:ping'/>)?<error type='cancel'>"
                            "<service-unavailable xmlns='%s'/></error></iq>" % STANZAS))


@skippable
@checked
def test_reply_to_a_fresh_session():
    """A client that just logged in on n1 asks juliet's client on n2 at
    once (XEP-0092 version, a chat message), as real clients do right
    after login (disco, caps): juliet's immediate answers reach it, five
    logins in a row.  The answers are routed on n2, to a full JID that
    n2's directory may not know yet."""
    with lab3() as lab:
        add_users(lab)
        lab.wait_converged(15)
        j = on(lab, 1, "juliet", "j")
        listed(lab, j)
        j.drain(0.3)
        for i in range(5):
            r = on(lab, 0, "romeo", "fresh%d" % i, roster=False)
            r.send("<iq to='juliet@localhost/j' type='get' id='v%d'>"
                   "<query xmlns='jabber:iq:version'/></iq>" % i)
            got = j.expect(re.compile("<iq [^>]*id='v%d'.*" % i, re.S))
            j.send("<iq to='%s' type='result' id='v%d'><query xmlns='jabber:iq:version'>"
                   "<name>Balcony</name><version>1.0</version></query></iq>" % (r.jid, i))
            r.send("<message to='juliet@localhost/j' type='chat' id='q%d'><body>q</body></message>"
                   % i)
            j.expect(re.compile("<message [^>]*id='q%d'.*" % i, re.S))
            j.send("<message to='%s' type='chat' id='a%d'><body>a</body></message>" % (r.jid, i))
            got = r.expect(re.compile("<iq [^>]*id='v%d'.*" % i, re.S))
            assert "type='result'" in got, got
            r.expect(msg(r.jid, "a%d" % i, "juliet@localhost/j", "a"))
            r.close()
            j.drain(0.2)
            j.q = [t for t in j.q if "type='error'" not in t[1]]


if __name__ == "__main__":
    ALL = [test_subscription_across_nodes, test_broadcast_and_probes_two_nodes,
               test_directed_presence_across_nodes, test_roster_push_three_nodes,
               test_carbons_across_nodes, test_blocking_across_nodes,
               test_bare_jid_rules_across_nodes, test_resource_conflict_across_nodes,
               test_mam_both_archives, test_offline_storage_any_node,
               test_offline_watch_bounded,
               test_iq_to_full_jid_on_other_node, test_reply_to_a_fresh_session,
           test_conflict_race_across_nodes]
    run_tests([t for t in ALL if len(sys.argv) < 2 or t.__name__ in sys.argv[1:]])

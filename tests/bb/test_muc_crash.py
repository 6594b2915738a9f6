"""XEP-0045 rooms across worker crashes (docs/DESIGN.md "Group chat"):
a room's owner worker killed with SIGKILL comes back with the room and
its occupants, who go on talking without rejoining; a worker holding an
occupant's connection killed makes that occupant leave for the others
with status 333, and the user can rejoin; a session found gone at
fan-out leaves the same way.  Three workers; rooms chosen by their
owner slot (FNV-1a of the room JID, as muc_owner_slot).
Needs XMPPD_TEST_PGCONN.
"""
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, run_tests, wait_for  # noqa: E402
from imlib import IM, USERS, checked, connect_on, exact  # noqa: E402

MUC = "http://jabber.org/protocol/muc"
USER = MUC + "#user"
SERVICE = "conference.localhost"


def owner_slot(room_jid, workers):
    h = 2166136261
    for ch in room_jid.encode():
        h = ((h ^ ch) * 16777619) & 0xffffffff
    return h % workers


def room_on(slot, workers, prefix):
    for i in range(1000):
        jid = "%s%d@%s" % (prefix, i, SERVICE)
        if owner_slot(jid, workers) == slot:
            return jid
    raise AssertionError("no room name for slot %d" % slot)


def on(server, worker, user, resource):
    im = IM(server, user, resource, client=connect_on(server, worker))
    im.send("<presence/>")
    return im


def oid_of(text):
    i = text.index("<occupant-id xmlns='urn:xmpp:occupant-id:0' id='")
    return text[i:text.index("/>", i) + 2]


def create(im, room, nick):
    """Enter a new room, then accept the default configuration (an
    instant room, XEP-0045 10.1.2)."""
    im.send("<presence to='%s/%s'><x xmlns='%s'/></presence>" % (room, nick, MUC))
    p = im.next()
    assert "<status code='201'/>" in p and "<status code='110'/>" in p, p
    im.expect(exact("<message to='%s' type='groupchat' from='%s'><subject/></message>"
                    % (im.jid, room)))
    im.send("<iq to='%s' type='set' id='inst'><query xmlns='%s#owner'>"
            "<x xmlns='jabber:x:data' type='submit'/></query></iq>" % (room, MUC))
    im.expect(exact("<iq type='result' from='%s' to='%s' id='inst'/>" % (room, im.jid)))
    return oid_of(p)


def enter(im, room, nick, others):
    """Enter an existing room: the others' presence first (any order),
    then the self-presence; the subject last."""
    im.send("<presence to='%s/%s'><x xmlns='%s'/></presence>" % (room, nick, MUC))
    for _ in range(others):
        p = im.next()
        assert p.startswith("<presence to='%s' from='%s/" % (im.jid, room)), p
    p = im.next()
    assert "<status code='110'/>" in p, p
    im.expect(exact("<message to='%s' type='groupchat' from='%s'><subject/></message>"
                    % (im.jid, room)))
    return oid_of(p)


def groupchat(room, nick, to, id_, body, oid):
    """A groupchat message as the room sends it: the occupant id, then
    the room's archive id (XEP-0359)."""
    return re.compile(
        re.escape("<message to='%s' type='groupchat' id='%s' from='%s/%s'><body>%s</body>%s"
                  % (to, id_, room, nick, body, oid)) +
        "<stanza-id xmlns='urn:xmpp:sid:0' id='[0-9]+' by='%s'/></message>" % re.escape(room))


@checked
def test_owner_crash_keeps_room_and_occupants():
    with Server(workers=3, users=USERS) as s:
        room = room_on(2, 3, "keep")
        j = on(s, 0, "juliet", "balcony")
        r = on(s, 1, "romeo", "garden")
        create(j, room, "Jul")
        roid = enter(r, room, "Rom", 1)
        j.next()        # Rom's presence
        pid = s.worker_pids()[2]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: s.worker_pids()[2] not in (0, pid), what="w2 respawned")
        # no rejoin: the respawned owner reads the room and both
        # occupants back and delivers as before
        r.send("<message to='%s' type='groupchat' id='m1'><body>still here</body></message>"
               % room)
        r.expect(groupchat(room, "Rom", r.jid, "m1", "still here", roid), timeout=10)
        j.expect(groupchat(room, "Rom", j.jid, "m1", "still here", roid), timeout=10)
        # roles and affiliations came back too: the owner may kick
        j.send("<iq to='%s' type='set' id='k1'><query xmlns='%s#admin'>"
               "<item nick='Rom' role='none'/></query></iq>" % (room, MUC))
        kicked = r.expect(exact(
            "<presence to='%s' from='%s/Rom' type='unavailable'><x xmlns='%s'>"
            "<item affiliation='none' role='none' jid='%s'><actor nick='Jul'/></item>"
            "<status code='110'/><status code='307'/></x>%s</presence>"
            % (r.jid, room, USER, r.jid, roid)))
        assert kicked
        j.expect(exact("<iq type='result' from='%s' to='%s' id='k1'/>" % (room, j.jid)))


@checked
def test_occupant_worker_crash_leaves():
    with Server(workers=3, users=USERS) as s:
        room = room_on(2, 3, "gone")
        j = on(s, 0, "juliet", "balcony")
        r = on(s, 1, "romeo", "garden")
        joid = create(j, room, "Jul")
        enter(r, room, "Rom", 1)
        j.next()
        os.kill(s.worker_pids()[0], signal.SIGKILL)
        # her session ended with its worker: she leaves as at a
        # disconnection (no 333: that is for sessions the room finds
        # gone or that bounce what it sends)
        r.expect(exact("<presence to='%s' from='%s/Jul' type='unavailable'><x xmlns='%s'>"
                       "<item affiliation='owner' role='none'/></x>"
                       "%s</presence>" % (r.jid, room, USER, joid)), timeout=10)
        # the user comes back and enters again; the room knows her
        # as its owner still
        time.sleep(0.5)
        j2 = on(s, 0, "juliet", "balcony2")
        j2.send("<presence to='%s/Jul'><x xmlns='%s'/></presence>" % (room, MUC))
        j2.next()       # Rom's presence
        p = j2.next()
        assert "affiliation='owner' role='moderator'" in p and \
            "<status code='110'/>" in p, p
        r.expect(exact("<presence to='%s' from='%s/Jul'><x xmlns='%s'>"
                       "<item affiliation='owner' role='moderator'/></x>%s</presence>"
                       % (r.jid, room, USER, joid)))


@checked
def test_lost_connection_leaves():
    """A client whose connection is cut without an unavailable presence
    leaves the room: its server sends the room the unavailable of its
    directed presence (RFC 6121 4.6.3)."""
    with Server(workers=2, users=USERS) as s:
        room = "lost@%s" % SERVICE
        j = on(s, 0, "juliet", "balcony")
        r = on(s, 1, "romeo", "garden")
        create(j, room, "Jul")
        roid = enter(r, room, "Rom", 1)
        j.next()
        r.abort()
        # juliet is a moderator (the owner): she sees the real JID
        j.expect(exact("<presence to='%s' from='%s/Rom' type='unavailable'><x xmlns='%s'>"
                       "<item affiliation='none' role='none' jid='%s'/></x>%s</presence>"
                       % (j.jid, room, USER, r.jid, roid)), timeout=10)


@checked
def test_worker_with_three_occupants_and_a_moderator_dies():
    """Three occupants, one a moderator (an admin), on a worker that is
    killed: the room's owner worker tells the fourth, on it, that each
    left, and is not taken down with them (the sessions are found gone
    while the room is telling about another)."""
    with Server(workers=2, users=USERS) as s:
        room = room_on(1, 2, "three")
        j = on(s, 1, "juliet", "balcony")
        create(j, room, "Jul")
        j.send("<iq to='%s' type='set' id='a1'><query xmlns='%s#admin'>"
               "<item jid='nurse@localhost' affiliation='admin'/></query></iq>"
               % (room, MUC))
        j.expect(exact("<iq type='result' from='%s' to='%s' id='a1'/>" % (room, j.jid)))
        others = []
        for n, (user, nick) in enumerate([("romeo", "Rom"), ("nurse", "Nur"),
                                          ("benvolio", "Ben")]):
            im = on(s, 0, user, "r%d" % n)
            enter(im, room, nick, 1 + n)
            j.next()
            others.append(im)
        pids = s.worker_pids()
        os.kill(pids[0], signal.SIGKILL)
        gone = set()
        for _ in range(3):
            p = j.next(timeout=10)
            m = re.match(r"<presence to='%s' from='%s/(\w+)' type='unavailable'>"
                         % (re.escape(j.jid), re.escape(room)), p)
            assert m and "<status code='333'/>" not in p, p
            gone.add(m.group(1))
        assert gone == {"Rom", "Nur", "Ben"}, gone
        assert s.worker_pids()[1] == pids[1], "the room's worker died too"
        # and the room still answers
        j.send("<message to='%s' type='groupchat' id='m1'><body>alone</body></message>" % room)
        assert "<body>alone</body>" in j.next()


if __name__ == "__main__":
    run_tests([
        test_owner_crash_keeps_room_and_occupants,
        test_occupant_worker_crash_leaves,
        test_lost_connection_leaves,
        test_worker_with_three_occupants_and_a_moderator_dies,
    ])

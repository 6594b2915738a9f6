"""Multi-user chat (XEP-0045) with real clients we did not write:
slixmpp's xep_0045 plugin (create and configure a room, join, talk, the
history on joining, kick and ban by a moderator, the ban list) and
profanity in tmux (join a room, see its history, see others' messages,
send).  Each test asserts what the user of that client would notice.
Needs XMPPD_TEST_PGCONN.

XMPPD_TEST_AGAINST=prosody runs the same client code against Debian's
Prosody 0.12 with its MUC component (see test_clients_mobile.py and
clients/prosody.py): a development aid, not part of the suite.
"""
import asyncio
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "clients"))
from harness import run_tests  # noqa: E402
from test_clients import running, run_async, stop_all  # noqa: E402
from test_clients_mobile import Mobile, Profanity, PROSODY, until  # noqa: E402
import test_muc  # noqa: E402

from slixmpp.exceptions import PresenceError  # noqa: E402

USERS = [("juliet@localhost", "r0m30!"), ("romeo@localhost", "jul13t?"),
         ("nurse@localhost", "s3cret")]
PW = dict(USERS)
ROOM = "coven@conference.localhost"


def server():
    """xmppd with two workers (the occupants spread over them), or
    Prosody with its MUC."""
    if PROSODY:
        from prosody import Prosody
        p = Prosody(users=USERS)
        with open(p.config, "a") as f:
            f.write(test_muc.PROSODY_MUC)
        return p
    from harness import Server
    return Server(workers=2, users=USERS)


async def join(c, room, nick, **kw):
    """xep_0045's join_muc_wait, a missing answer named as such (it
    raises a bare TimeoutError)."""
    try:
        return await c["xep_0045"].join_muc_wait(room, nick, timeout=10, **kw)
    except asyncio.TimeoutError:
        raise AssertionError("%s: no self-presence and subject from %s within 10s"
                             % (c.boundjid, room)) from None


class Occupant(Mobile):
    """A slixmpp client with xep_0045 that records, per room, the
    groupchat messages and the room presences it gets."""

    def __init__(self, jid, password):
        super().__init__(jid, password, plugins=("xep_0004", "xep_0045", "xep_0082"))
        self.groupchat = []         # Message stanzas, in order
        self.room_presences = []    # Presence stanzas from room JIDs
        self.add_event_handler("groupchat_message", self.groupchat.append)
        self.add_event_handler("groupchat_presence", self.room_presences.append)

    def said(self, nick):
        """Bodies said by nick in ROOM, live (no <delay/>), in order."""
        return [m["body"] for m in self.groupchat
                if m["from"].bare == ROOM and m["from"].resource == nick
                and m.get_plugin("delay", check=True) is None and m["body"]]

    def left_with(self, nick, code):
        return [p for p in self.room_presences
                if p["from"].resource == nick and p["type"] == "unavailable"
                and code in p["muc"]["status_codes"]]

    async def create_room(self, room, nick, fields=None):
        """Join (the room is created, locked: 201), then submit the
        configuration (an instant room when fields is None)."""
        pres, subject, occupants, hist = await join(self, room, nick, maxstanzas=0)
        assert 201 in pres["muc"]["status_codes"], pres
        assert pres["muc"]["affiliation"] == "owner" and pres["muc"]["role"] == "moderator", pres
        form = self["xep_0004"].make_form(ftype="submit")
        form.add_field(var="FORM_TYPE", value=test_muc.ROOMCONFIG, ftype="hidden")
        for k, v in (fields or {}).items():
            form.add_field(var=k, value=v)
        await self["xep_0045"].set_room_config(room, form)


def test_slixmpp_muc():
    """juliet creates a room with slixmpp and configures it; romeo and
    the nurse join (the nurse asks for the last 10 messages and gets
    what juliet and romeo said, in order, with <delay/>); they talk;
    juliet kicks the nurse (she sees herself kicked: 307, romeo sees her
    go), then bans romeo by JID (301); romeo cannot come back
    (forbidden); the ban list names him."""
    with running(server()) as s:
        async def body():
            j = r = n = None
            try:
                j = Occupant("juliet@localhost/phone", PW["juliet@localhost"])
                r = Occupant("romeo@localhost/desk", PW["romeo@localhost"])
                n = Occupant("nurse@localhost/tablet", PW["nurse@localhost"])
                for c in (j, r, n):
                    await c.online(s.port)
                await j.create_room(ROOM, "Juliet", {"muc#roomconfig_roomname": "Coven"})
                pres, subject, occupants, hist = await join(r, ROOM, "Romeo")
                assert pres["muc"]["role"] == "participant", pres
                # (slixmpp's list has the own presence too)
                assert [o["from"].resource for o in occupants] == ["Juliet", "Romeo"], occupants
                j.send_message(mto=ROOM, mbody="O Romeo, Romeo", mtype="groupchat")
                await until(lambda: r.said("Juliet") == ["O Romeo, Romeo"], 10,
                            lambda: "romeo to see juliet's message: %r" % r.groupchat)
                r.send_message(mto=ROOM, mbody="I take thee at thy word", mtype="groupchat")
                await until(lambda: j.said("Romeo") == ["I take thee at thy word"], 10,
                            lambda: "juliet to see romeo's answer: %r" % j.groupchat)
                # the sender sees its own message reflected (7.4)
                await until(lambda: r.said("Romeo") == ["I take thee at thy word"], 10,
                            "romeo's own message reflected")
                pres, subject, occupants, hist = await join(n, ROOM, "Nurse", maxstanzas=10)
                got = [(m["from"].resource, m["body"]) for m in hist]
                assert got == [("Juliet", "O Romeo, Romeo"),
                               ("Romeo", "I take thee at thy word")], got
                assert sorted(o["from"].resource for o in occupants) == \
                    ["Juliet", "Nurse", "Romeo"], occupants
                await until(lambda: [p for p in j.room_presences
                                     if p["from"].resource == "Nurse"], 10,
                            "juliet to see the nurse enter")
                # kick (8.2)
                await j["xep_0045"].set_role(ROOM, "Nurse", "none", reason="Get thee gone")
                await until(lambda: n.left_with("Nurse", 307), 10, "the nurse to see 307")
                await until(lambda: r.left_with("Nurse", 307), 10,
                            "romeo to see the nurse kicked")
                assert n.left_with("Nurse", 307)[0]["muc"]["item"]["reason"] == "Get thee gone"
                # ban (9.1)
                await j["xep_0045"].set_affiliation(ROOM, "outcast", jid="romeo@localhost",
                                                    reason="Banished")
                await until(lambda: r.left_with("Romeo", 301), 10, "romeo to see 301")
                try:
                    await r["xep_0045"].join_muc_wait(ROOM, "Romeo", timeout=10)
                    raise AssertionError("a banned user entered the room")
                except PresenceError as e:
                    assert e.condition == "forbidden", e.presence
                except asyncio.TimeoutError:
                    # slixmpp takes a presence error as the answer to its
                    # join only when it echoes <x xmlns='...muc'/>, as the
                    # XEP's example does ("Banned Users"); Prosody 0.12 does not
                    if not PROSODY:
                        raise AssertionError(
                            "slixmpp saw no answer to the banned user's join: the "
                            "error presence needs the <x xmlns='%s'/> of the join "
                            "(XEP-0045's example in \"Banned Users\")" % test_muc.NS_MUC) from None
                outcasts = await j["xep_0045"].get_affiliation_list(ROOM, "outcast")
                assert [str(x) for x in outcasts] == ["romeo@localhost"], outcasts
                # the nurse (kicked, not banned) may come back
                await join(n, ROOM, "Nurse", maxstanzas=0)
                for c in (j, r, n):
                    assert not [m for m in c.groupchat if m["type"] == "error"], c.groupchat
            finally:
                await stop_all(j, r, n)
        run_async(body(), timeout=90)


def test_profanity_muc():
    """romeo (slixmpp) owns a room and says three things; juliet in
    profanity joins it with /join: her room window shows that history,
    then what romeo says next; what she types reaches romeo as a
    groupchat message from her nick."""
    with running(server()) as s:
        async def body():
            r = prof = None
            failed = True
            try:
                r = Occupant("romeo@localhost/desk", PW["romeo@localhost"])
                await r.online(s.port)
                await r.create_room(ROOM, "Romeo")
                hist = ["before profanity %d" % i for i in range(3)]
                for t in hist:
                    r.send_message(mto=ROOM, mbody=t, mtype="groupchat")
                await until(lambda: r.said("Romeo") == hist, 10, "romeo's own messages back")
                prof = Profanity("juliet@localhost", PW["juliet@localhost"], s.port)
                await prof.shows(r"juliet@localhost/profanity logged in successfully", 20)
                prof.type("/join %s nick Juliet" % ROOM)
                for t in hist:
                    # (the room window has the occupant list on its
                    # right: no end-of-line anchor)
                    await prof.shows(r" - Romeo: %s(\s|$)" % re.escape(t), 20)
                await until(lambda: [p for p in r.room_presences
                                     if p["from"].resource == "Juliet"], 10,
                            "romeo to see juliet enter")
                r.send_message(mto=ROOM, mbody="Lady, by yonder blessed moon", mtype="groupchat")
                await prof.shows(r" - Romeo: Lady, by yonder blessed moon(\s|$)", 15)
                prof.type("O, swear not by the moon")
                await until(lambda: r.said("Juliet") == ["O, swear not by the moon"], 15,
                            lambda: "romeo to get juliet's line; profanity shows:\n"
                            + prof.screen())
                screen = prof.screen()
                assert "Error" not in screen and "error" not in screen, screen
                failed = False
            finally:
                await stop_all(r)
                if prof is not None:
                    prof.close(failed)
        run_async(body(), timeout=120)


if __name__ == "__main__":
    only = sys.argv[1:]
    run_tests([t for t in [test_slixmpp_muc, test_profanity_muc]
               if not only or t.__name__ in only])

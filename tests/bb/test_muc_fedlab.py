"""A room of xmppd's MUC service joined over federation, in the lab
(tests/bb/fedlab.py): dave@prosody.test (Debian's Prosody 0.12) enters
lab@conference.xmppd.test, created by carol@xmppd.test; each sees the
other's presence in the room, dave gets what carol said before he came
as history, they exchange groupchat messages both ways (each reflected
to its sender too, XEP-0045 7.4), erin@xmppd.test enters later and gets
all of it in the history, dave gets a private message
from erin, dave leaves and the others see it.  All users are slixmpp
with its xep_0045 plugin.  Needs XMPPD_TEST_PGCONN.

The service's domain, conference.xmppd.test, is served by xmppd's s2s:
it gets the lab's DNS records of xmppd and a name in xmppd's
certificate (as a component's domain would).
"""
import asyncio
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_tests  # noqa: E402

try:
    import fedlab  # noqa: E402
    from fedlab import Lab, ProsodyServer, User, run_async  # noqa: E402
except ImportError as e:           # slixmpp missing
    fedlab = None
    MISSING = str(e)

MUC = "conference.xmppd.test"
ROOM = "lab@" + MUC
# The same scenario with the room on Prosody and the xmppd users as the
# remote occupants (xmppd's s2s carrying MUC traffic the other way).
P_MUC = "conference.prosody.test"
ROOMCONFIG = "http://jabber.org/protocol/muc#roomconfig"


if fedlab is not None:
    class Occupant(User):
        """A lab user with xep_0045, recording the room's messages and
        presences it gets."""

        def __init__(self, server, localpart, password, room, resource="lab"):
            super().__init__(server, localpart, password, resource)
            self.room = room
            for p in ("xep_0004", "xep_0045", "xep_0082"):
                self.register_plugin(p)
            self.groupchat = []
            self.room_presences = []
            self.private = []
            self.add_event_handler("groupchat_message", self._on_gc)
            self.add_event_handler("groupchat_presence", self._on_rp)
            self.add_event_handler("message", self._on_msg)

        def _on_gc(self, m):
            self.groupchat.append(m)
            self.changed.set()

        def _on_rp(self, p):
            self.room_presences.append(p)
            self.changed.set()

        def _on_msg(self, m):
            if m["type"] == "chat" and m["from"].bare == self.room:
                self.private.append(m)
                self.changed.set()

        def said(self, nick):
            """What nick said in the room, live (no <delay/>), in order."""
            return [m["body"] for m in self.groupchat
                    if m["from"].bare == self.room and m["from"].resource == nick
                    and m.get_plugin("delay", check=True) is None and m["body"]]

        def sees(self, nick, ptype="available"):
            return [p for p in self.room_presences
                    if p["from"].bare == self.room and p["from"].resource == nick
                    and p["type"] == ptype]


async def join(u, nick, **kw):
    """join_muc_wait, a missing answer named as such."""
    try:
        return await u["xep_0045"].join_muc_wait(u.room, nick, timeout=20, **kw)
    except asyncio.TimeoutError:
        raise AssertionError("%s: no self-presence and subject from %s within 20s"
                             % (u.boundjid, u.room)) from None


def muc_over_federation(x, p, room=ROOM):
    """carol (creator) and erin on x, dave on p; the room is room."""
    ROOM = room

    async def scenario():
        carol = await Occupant(x, "carol", "c4rol-pw", ROOM).online()
        dave = await Occupant(p, "dave", "d4ve-pw", ROOM).online()
        erin = await Occupant(x, "erin", "3rin-pw", ROOM).online()
        try:
            # carol creates the room (201) and accepts the default
            # configuration (instant room, XEP-0045 10.1.2)
            pres, _, _, _ = await join(carol, "Carol", maxstanzas=0)
            assert 201 in pres["muc"]["status_codes"], pres
            form = carol["xep_0004"].make_form(ftype="submit")
            form.add_field(var="FORM_TYPE", value=ROOMCONFIG, ftype="hidden")
            await carol["xep_0045"].set_room_config(ROOM, form)
            carol.send_message(mto=ROOM, mbody="Before you came", mtype="groupchat")
            await carol.until(lambda: carol.said("Carol") == ["Before you came"], 20,
                              "carol's first message reflected")
            # dave enters from prosody.test: he sees carol, himself (110),
            # the history (what carol said before, <delay/> from the
            # room) and the subject; carol sees him
            pres, subject, occupants, hist = await join(dave, "Dave", maxstanzas=20)
            assert 110 in pres["muc"]["status_codes"], pres
            assert pres["muc"]["role"] == "participant", pres
            assert sorted(o["from"].resource for o in occupants) == ["Carol", "Dave"], occupants
            got = [(m["from"].resource, m["body"], m["delay"]["from"].bare) for m in hist]
            assert got == [("Carol", "Before you came", ROOM)], got
            await carol.until(lambda: carol.sees("Dave"), 20, "dave's presence in the room")
            # groupchat both ways, each reflected to its sender
            carol.send_message(mto=ROOM, mbody="Welcome, Prosody", mtype="groupchat")
            await dave.until(lambda: dave.said("Carol") == ["Welcome, Prosody"], 20,
                             "carol's message at dave (xmppd room -> prosody)")
            dave.send_message(mto=ROOM, mbody="Greetings from afar", mtype="groupchat")
            await carol.until(lambda: carol.said("Dave") == ["Greetings from afar"], 20,
                              "dave's message at carol (prosody -> xmppd room)")
            await dave.until(lambda: dave.said("Dave") == ["Greetings from afar"], 20,
                             "dave's own message reflected to him over s2s")
            await carol.until(lambda: carol.said("Carol") == ["Before you came",
                                                              "Welcome, Prosody"], 20,
                              "carol's own message reflected")
            # erin enters later: the history has both, in order, from
            # the occupant JIDs, with <delay/> from the room (7.2 "Discussion History")
            pres, subject, occupants, hist = await join(erin, "Erin", maxstanzas=20)
            got = [(m["from"].resource, m["body"], m["delay"]["from"].bare) for m in hist]
            assert got == [("Carol", "Before you came", ROOM),
                           ("Carol", "Welcome, Prosody", ROOM),
                           ("Dave", "Greetings from afar", ROOM)], got
            await dave.until(lambda: dave.sees("Erin"), 20, "erin's presence at dave")
            # a private message (7.5) from erin to dave's occupant JID
            erin.send_message(mto=ROOM + "/Dave", mbody="psst", mtype="chat")
            await dave.until(lambda: [m for m in dave.private
                                      if m["from"] == ROOM + "/Erin" and m["body"] == "psst"],
                             20, "erin's private message at dave")
            # dave leaves: carol and erin see it (7.14)
            dave["xep_0045"].leave_muc(ROOM, "Dave")
            await carol.until(lambda: carol.sees("Dave", "unavailable"), 20,
                              "dave leaving, at carol")
            await erin.until(lambda: erin.sees("Dave", "unavailable"), 20,
                             "dave leaving, at erin")
            errors = [m for u in (carol, dave, erin) for m in u.groupchat if m["type"] == "error"]
            assert not errors, errors
        finally:
            for u in (carol, dave, erin):
                await u.offline()
    run_async(scenario(), timeout=180)


if fedlab is not None:
    class ProsodyWithMuc(ProsodyServer):
        """Prosody with its MUC component on conference.<domain>."""

        def _write_config(self):
            super()._write_config()
            with open(self.config, "a") as f:
                f.write('Component "conference.%s" "muc"\n'
                        '    restrict_room_creation = false\n' % self.domain)


def test_xmppd_users_in_prosody_room():
    """The other direction: the room on Prosody's MUC, carol and erin
    of xmppd in it with dave of Prosody (xmppd's s2s carries directed
    presence to the room and the room's traffic back)."""
    if fedlab is None:
        print("# skip: %s" % MISSING)
        return
    if shutil.which("prosody") is None:
        print("# skip: prosody is not installed")
        return
    with Lab() as lab:
        x = lab.xmppd("xmppd.test", workers=2,
                      users=[("carol@xmppd.test", "c4rol-pw"), ("erin@xmppd.test", "3rin-pw")])
        p = ProsodyWithMuc(lab, "prosody.test", users=[("dave", "d4ve-pw")])
        p.cert_file, p.key_file = lab.cert("prosody.test", "srv", also=(P_MUC,))
        lab.record(P_MUC, p.addr, p.s2s_port)
        lab.start()
        try:
            muc_over_federation(x, p, "lab@" + P_MUC)
        except BaseException:
            print("---- xmppd log ----\n" + x.log_text()[-6000:])
            print("---- prosody log ----\n" + p.log_text()[-6000:])
            raise


def test_prosody_user_in_xmppd_room():
    """The issue's case: the room on xmppd, a Prosody user in it."""
    if fedlab is None:
        print("# skip: %s" % MISSING)
        return
    if shutil.which("prosody") is None:
        print("# skip: prosody is not installed")
        return
    with Lab() as lab:
        x = lab.xmppd("xmppd.test", workers=2,
                      users=[("carol@xmppd.test", "c4rol-pw"), ("erin@xmppd.test", "3rin-pw")])
        # the MUC service's domain: in xmppd's certificate and in the
        # lab's DNS, as xmppd's own
        x.cert_file, x.key_file = lab.cert("xmppd.test", "srv", also=(MUC,))
        x.overrides["tls.certificate"] = x.cert_file
        x.overrides["tls.key"] = x.key_file
        lab.record(MUC, x.addr, x.s2s_port)
        p = ProsodyServer(lab, "prosody.test", users=[("dave", "d4ve-pw")])
        lab.start()
        try:
            muc_over_federation(x, p)
        except BaseException:
            print("---- xmppd log ----\n" + x.log_text()[-6000:])
            print("---- prosody log ----\n" + p.log_text()[-6000:])
            raise
        xlog = x.log_text()
        assert "refused" not in xlog, xlog[-3000:]


if __name__ == "__main__":
    only = sys.argv[1:]
    run_tests([t for t in [test_prosody_user_in_xmppd_room, test_xmppd_users_in_prosody_room]
               if not only or t.__name__ in only])

"""PEP (XEP-0163) across servers with a real peer, in the federation lab
(tests/bb/fedlab.py): carol@xmppd.test and dave@prosody.test (Debian's
Prosody 0.12 with mod_pep), then dave@ejabberd.test (ejabberd 23.01 with
mod_pubsub plugins flat, pep and mod_caps), both on slixmpp with xep_0115 caps whose
features hold tune+notify, become mutual contacts; each publishes a
tune (XEP-0118) and the other's client gets it as a PEP event from the
publisher's bare JID; then each reconnects and gets the other's last
tune again (xmppd: remote caps over s2s, pep_remote_presence, last
items to a remote full JID; Prosody: our events and our caps answers).
Each skips when its server or slixmpp is missing.  Needs XMPPD_TEST_PGCONN.
"""
import asyncio
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_tests  # noqa: E402

EJABBERD_PEP = ("  mod_caps: {}\n"
                "  mod_pubsub:\n"
                "    plugins:\n"
                "      - flat\n"
                "      - pep\n")

try:
    import fedlab  # noqa: E402
    from fedlab import (Lab, ProsodyServer, EjabberdServer, User,  # noqa: E402
                        befriend, run_async)
except ImportError as e:           # slixmpp missing
    fedlab = None
    MISSING = str(e)

NS_TUNE = "http://jabber.org/protocol/tune"


if fedlab is not None:
    class PepUser(User):
        """A lab user whose caps ask for tunes (tune+notify) from its
        first presence, recording the PEP events it gets."""

        def __init__(self, server, localpart, password, resource="lab"):
            super().__init__(server, localpart, password, resource)
            for p in ("xep_0004", "xep_0060", "xep_0115", "xep_0163", "xep_0118"):
                self.register_plugin(p)
            self["xep_0030"].add_feature(NS_TUNE + "+notify")
            self.events = []
            self.add_event_handler("pubsub_publish", self._on_publish)

        def _on_publish(self, msg):
            items = msg["pubsub_event"]["items"]
            item = items["item"]
            tune = item.xml.find("{%s}tune" % NS_TUNE)
            artist = tune.findtext("{%s}artist" % NS_TUNE) if tune is not None else None
            self.events.append((msg["from"].bare, items["node"], item["id"], artist))
            self.changed.set()

        async def online(self, timeout=20):
            self.connect(address=(self.home.addr, self.home.c2s_port))
            await asyncio.wait_for(self.session.wait(), timeout)
            # <c/> is in a presence only once update_caps gave the ver
            await self["xep_0115"].update_caps(broadcast=False)
            await self.get_roster()
            self.send_presence()
            return self

        def tunes_from(self, bare):
            return [e for e in self.events if e[0] == bare and e[1] == NS_TUNE]


def pep_both_ways(lab, x, p):
    """carol@xmppd and dave@peer: tunes both ways, then last items."""
    async def scenario():
        c = await PepUser(x, "carol", "c4rol-pw").online()
        d = await PepUser(p, "dave", "d4ve-pw").online()
        C, D = c.boundjid.bare, d.boundjid.bare
        try:
            await befriend(c, d)
            # presence again once both sides have 'both' (the first ones
            # crossed the approvals: Prosody registers a contact's full
            # JID only from a presence that reaches it with from/both)
            c.send_presence()
            d.send_presence()
            await asyncio.sleep(1.0)
            await c["xep_0118"].publish_tune(artist="Carol's band", title="t1")
            await d.until(lambda: [e for e in d.tunes_from(C) if e[3] == "Carol's band"],
                          30, "carol's tune at dave (xmppd -> prosody)")
            # xmppd holds dave's full JID as a remote recipient
            got = x.db.psql("SELECT full_jid, caps_algo FROM pep_remote_presence",
                            conninfo=x.db.conninfo).split()
            assert got == ["%s|0115:sha-1" % d.boundjid.full], got
            await d["xep_0118"].publish_tune(artist="Dave's band", title="t2")
            await c.until(lambda: [e for e in c.tunes_from(D) if e[3] == "Dave's band"],
                          30, "dave's tune at carol (prosody -> xmppd)")
            # reconnect: each gets the other's last tune again (dave
            # stays online meanwhile: ejabberd sends no PEP of an
            # offline account, ignore_pep_from_offline)
            await d.offline()
            d2 = await PepUser(p, "dave", "d4ve-pw", resource="lab2").online()
            try:
                await d2.until(lambda: [e for e in d2.tunes_from(C)
                                        if e[3] == "Carol's band"],
                               30, "carol's last tune at dave's new resource")
                await c.offline()
                c2 = await PepUser(x, "carol", "c4rol-pw", resource="lab2").online()
                try:
                    await c2.until(lambda: [e for e in c2.tunes_from(D)
                                            if e[3] == "Dave's band"],
                                   30, "dave's last tune at carol's new resource")
                finally:
                    await c2.offline()
            finally:
                await d2.offline()
        finally:
            await c.offline()
            await d.offline()
    run_async(scenario(), timeout=180)


def test_prosody_pep_both_ways():
    if fedlab is None:
        print("# skip: %s" % MISSING)
        return
    if shutil.which("prosody") is None:
        print("# skip: prosody is not installed")
        return
    with Lab() as lab:
        x = lab.xmppd("xmppd.test", workers=2, users=[("carol@xmppd.test", "c4rol-pw")])
        p = ProsodyServer(lab, "prosody.test", users=[("dave", "d4ve-pw")],
                          modules=("pep",))
        lab.start()
        try:
            pep_both_ways(lab, x, p)
        except BaseException:
            print("---- xmppd log ----\n" + x.log_text()[-6000:])
            print("---- prosody log ----\n" + p.log_text()[-6000:])
            raise
        xlog = x.log_text()
        assert "refused" not in xlog, xlog[-3000:]


def test_ejabberd_pep_both_ways():
    if fedlab is None:
        print("# skip: %s" % MISSING)
        return
    if shutil.which("ejabberdctl") is None:
        print("# skip: ejabberd is not installed")
        return
    with Lab() as lab:
        x = lab.xmppd("xmppd.test", workers=2, users=[("carol@xmppd.test", "c4rol-pw")])
        e = EjabberdServer(lab, "ejabberd.test", users=[("dave", "d4ve-pw")],
                           modules=EJABBERD_PEP)
        lab.start()
        try:
            pep_both_ways(lab, x, e)
        except BaseException:
            print("---- xmppd log ----\n" + x.log_text()[-6000:])
            print("---- ejabberd log ----\n" + e.log_text()[-6000:])
            raise
        xlog = x.log_text()
        assert "refused" not in xlog, xlog[-3000:]


if __name__ == "__main__":
    only = sys.argv[1:]
    run_tests([t for t in [test_prosody_pep_both_ways, test_ejabberd_pep_both_ways]
               if not only or t.__name__ in only])

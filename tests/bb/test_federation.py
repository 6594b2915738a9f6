"""xmppd federating with servers we did not write: Prosody 0.12 and
ejabberd 23.01 (Debian's), in the federation lab (tests/bb/fedlab.py;
tests/bb/test_fedlab.py shows the lab right with the anchors alone).

For each anchor, both ways: a user on xmppd and a user on the anchor
(slixmpp clients) subscribe to each other (RFC 6121: request, approval
both ways, roster pushes ending at 'both', the roster stored on each
server), see each other online and exchange messages both ways --
with valid certificates from the lab CA (SASL EXTERNAL, XEP-0178) and
with self-signed ones (Server Dialback, XEP-0220).  The anchors' own
logs say which authentication each link used.

Then what a user notices when the remote server is down (a
<remote-server-not-found/> error for the message), silent (accepts and
says nothing: <remote-server-timeout/>).
Needs XMPPD_TEST_PGCONN and root (the anchors run as their own users).
"""
import asyncio
import os
import re
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_tests  # noqa: E402
from fedlab import (Lab, ProsodyServer, EjabberdServer, User,  # noqa: E402
                    befriend, converse, run_async)

TEXT = "Federated <&> 'quotes' \u00fcn\u00efc\u00f6d\u00e9 \u2665"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def federate(anchor_cls, secure, xmppd_cert=None):
    """carol@xmppd.test and dave@ANCHOR befriend and talk, carol first,
    then dave first; returns the anchor's log."""
    with Lab() as lab:
        x = lab.xmppd("xmppd.test", secure=secure, cert_kind=xmppd_cert,
                      users=[("carol@xmppd.test", "c4rol-pw")])
        name = "%s.test" % anchor_cls.kind
        a = anchor_cls(lab, name, secure=secure, users=[("dave", "d4ve-pw")])
        lab.start()

        async def scenario():
            c = await User(x, "carol", "c4rol-pw").online()
            d = await User(a, "dave", "d4ve-pw").online()
            try:
                await befriend(c, d)
                await converse(c, d, TEXT)
                await converse(d, c, "from %s: %s" % (name, TEXT))
            finally:
                await c.offline()
                await d.offline()
        run_async(scenario())
        return a.log_text(), x.log_text()


def ejabberd_accepted(elog, mech):
    return [re.search(r"Accepted %s s2s %s authentication %s -> %s"
                      % (d, mech, re.escape(f), re.escape(t)), elog)
            for d, f, t in (("inbound", "xmppd.test", "ejabberd.test"),
                            ("outbound", "ejabberd.test", "xmppd.test"))]


def test_prosody_external():
    """xmppd <-> Prosody, valid certificates (xmppd's with XmppAddr too):
    Prosody validates xmppd's certificate on both streams, no dialback."""
    plog, _ = federate(ProsodyServer, True, xmppd_cert="full")
    assert plog.count("certificate identity validation result: valid") >= 2, plog[-3000:]
    assert "falling back to dialback" not in plog, plog[-3000:]
    assert "Incoming s2s connection xmppd.test->prosody.test complete" in plog, plog[-3000:]
    assert "Outgoing s2s connection prosody.test->xmppd.test complete" in plog, plog[-3000:]


def test_ejabberd_external():
    """xmppd <-> ejabberd, valid certificates: EXTERNAL both ways."""
    elog, _ = federate(EjabberdServer, True)
    assert all(ejabberd_accepted(elog, "EXTERNAL")), elog[-3000:]


def test_prosody_dialback():
    """xmppd <-> Prosody, self-signed certificates: dialback both ways,
    Prosody verifying xmppd's key and xmppd Prosody's."""
    plog, _ = federate(ProsodyServer, False)
    assert "falling back to dialback" in plog, plog[-3000:]
    assert "verified dialback key... it is valid" in plog, plog[-3000:]
    assert "Incoming s2s connection xmppd.test->prosody.test complete" in plog, plog[-3000:]


def test_ejabberd_dialback():
    """xmppd <-> ejabberd, self-signed certificates: dialback both ways."""
    elog, _ = federate(EjabberdServer, False)
    assert all(ejabberd_accepted(elog, "dialback")), elog[-3000:]


async def expect_error(u, to, condition, timeout=60):
    """u sends a chat message to `to`; it comes back as an error of
    `condition` (RFC 6120 8.3), from `to`, with the id sent."""
    got = asyncio.Queue()
    u.add_event_handler("message_error", got.put_nowait)
    m = u.make_message(mto=to, mbody="anyone there?", mtype="chat")
    m["id"] = "probe-1"
    m.send()
    err = await asyncio.wait_for(got.get(), timeout)
    assert err["id"] == "probe-1", err
    assert err["from"].bare == to, err
    assert err["error"]["condition"] == condition, err
    return err


def test_remote_down():
    """down.test has SRV and A records but nothing listens there: the
    message bounces with <remote-server-not-found/>."""
    with Lab() as lab:
        x = lab.xmppd("xmppd.test", users=[("carol@xmppd.test", "c4rol-pw")])
        # a port that was free a moment ago on an address nobody uses
        lab.record("down.test", "%s.250" % lab.net, 1)
        lab.start()

        async def scenario():
            c = await User(x, "carol", "c4rol-pw").online()
            try:
                await expect_error(c, "eve@down.test", "remote-server-not-found")
            finally:
                await c.offline()
        run_async(scenario())


def test_remote_silent():
    """slow.test accepts TCP connections and never says a word: the
    message bounces with <remote-server-timeout/> (after the setup
    timeout, set short here), and the next one too."""
    with Lab() as lab:
        sink = socket.socket()
        sink.bind(("%s.251" % lab.net, 0))
        sink.listen(16)           # accepted by the kernel, never read
        try:
            x = lab.xmppd("xmppd.test",
                          users=[("carol@xmppd.test", "c4rol-pw")],
                          overrides={"s2s.connect_timeout": "2s",
                                     "s2s.link_timeout": "3s",
                                     "s2s.auth_timeout": "3s"})
            lab.record("slow.test", "%s.251" % lab.net, sink.getsockname()[1])
            lab.start()

            async def scenario():
                c = await User(x, "carol", "c4rol-pw").online()
                try:
                    await expect_error(c, "eve@slow.test", "remote-server-timeout")
                finally:
                    await c.offline()
            run_async(scenario())
        finally:
            sink.close()


if __name__ == "__main__":
    run_tests([test_prosody_external, test_ejabberd_external,
               test_prosody_dialback, test_ejabberd_dialback,
               test_remote_down, test_remote_silent])

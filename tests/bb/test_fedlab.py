"""The federation lab (tests/bb/fedlab.py) with the anchors alone:
Prosody and ejabberd, each for its own domain, on its own address, found
through the lab's DNS, federate with each other -- first with valid
certificates from the lab CA (SASL EXTERNAL, XEP-0178), then with
self-signed ones (Server Dialback, XEP-0220).  No xmppd here: this shows
the lab is right, so that a failure of tests/bb/test_federation.py is
xmppd's.

A Prosody user and an ejabberd user (slixmpp clients) subscribe to each
other (RFC 6121: request, approval both ways, roster pushes to 'both',
the roster on each server), see each other online and exchange
messages both ways.  Each test also checks, in the servers' own logs,
that the link was authenticated the way the test says.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_tests  # noqa: E402
from fedlab import (Lab, ProsodyServer, EjabberdServer, User,  # noqa: E402
                    befriend, converse, run_async)

TEXT = "Across the wire <&> 'quotes' \u00fcn\u00efc\u00f6d\u00e9 \u2665"


def federate(secure):
    with Lab() as lab:
        p = ProsodyServer(lab, "prosody.test", secure=secure,
                          users=[("alice", "al1ce-pw")])
        e = EjabberdServer(lab, "ejabberd.test", secure=secure,
                           users=[("bob", "b0b-pw")])
        lab.start()

        async def scenario():
            a = await User(p, "alice", "al1ce-pw").online()
            b = await User(e, "bob", "b0b-pw").online()
            try:
                await befriend(a, b)
                await converse(a, b, TEXT)
                await converse(b, a, "and back " + TEXT)
            finally:
                await a.offline()
                await b.offline()
        run_async(scenario())
        return p.log_text(), e.log_text()      # before the lab goes


def accepted(elog, mech):
    """ejabberd's own lines for the two links: its inbound stream from
    Prosody and its outbound one to Prosody, authenticated by mech."""
    return [re.search(r"Accepted %s s2s %s authentication %s -> %s"
                      % (d, mech, re.escape(f), re.escape(t)), elog)
            for d, f, t in (("inbound", "prosody.test", "ejabberd.test"),
                            ("outbound", "ejabberd.test", "prosody.test"))]


def test_anchors_external():
    """Valid certificates (SAN dNSName + SRV-ID from the lab CA): both
    directions authenticated by certificate, no dialback."""
    plog, elog = federate(secure=True)
    assert all(accepted(elog, "EXTERNAL")), elog[-3000:]
    assert not any(accepted(elog, "dialback")), elog[-3000:]
    # Prosody validated ejabberd's certificate on both streams
    assert plog.count("certificate identity validation result: valid") >= 2, plog[-3000:]
    assert "falling back to dialback" not in plog, plog[-3000:]


def test_anchors_dialback():
    """Self-signed certificates that neither trusts: the servers fall
    back to Server Dialback both ways, and still federate over TLS."""
    plog, elog = federate(secure=False)
    assert all(accepted(elog, "dialback")), elog[-3000:]
    assert not any(accepted(elog, "EXTERNAL")), elog[-3000:]
    assert "certificate error(s) at depth 0: self-signed certificate" in plog, plog[-3000:]
    assert "falling back to dialback" in plog, plog[-3000:]
    # Prosody as the authoritative server answered ejabberd's db:verify
    assert "verified dialback key... it is valid" in plog, plog[-3000:]
    assert "Stream encrypted" in plog, plog[-3000:]


if __name__ == "__main__":
    run_tests([test_anchors_external, test_anchors_dialback])

#!/usr/bin/python3
"""A real client against the packaged server (scripts/test-deb).

    login.py PORT JID PASSWORD CAFILE

slixmpp connects to 127.0.0.1:PORT with STARTTLS, verifies the server's
certificate against CAFILE (the self-signed one setup-local made) for
the JID's domain, logs in with SCRAM-SHA-256, binds, sends a message to
its own full JID and waits for it.  Exits 0 and prints one line on
success; otherwise 1 with the reason.  Every wait is bounded.
"""
import asyncio
import logging
import ssl
import sys

import slixmpp

logging.basicConfig(level=logging.CRITICAL)
TIMEOUT = 20


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, cafile):
        super().__init__(jid, password, sasl_mech="SCRAM-SHA-256")
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.check_hostname = True
        self.ssl_context = ctx
        # No channel binding: slixmpp 1.8 offers only tls-unique, which
        # TLS 1.3 does not define (tests/bb/test_clients.py).
        fm = self["feature_mechanisms"]
        default_creds = fm.sasl_callback

        def creds(required, optional):
            r = default_creds(required, optional)
            if "channel_binding" in r:
                r["channel_binding"] = None
            return r
        fm.sasl_callback = creds
        self.session = asyncio.Event()
        self.failed = asyncio.Event()
        self.messages = asyncio.Queue()
        self.add_event_handler("session_start", lambda e: self.session.set())
        self.add_event_handler("failed_all_auth", lambda e: self.failed.set())
        self.add_event_handler("message", self.messages.put_nowait)


async def main(port, jid, password, cafile):
    c = Client(jid, password, cafile)
    c.connect(("127.0.0.1", port))
    done, _ = await asyncio.wait(
        [asyncio.ensure_future(c.session.wait()),
         asyncio.ensure_future(c.failed.wait())],
        timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    if c.failed.is_set():
        raise SystemExit("login.py: authentication failed for %s" % jid)
    if not c.session.is_set():
        raise SystemExit("login.py: no session for %s within %ss" % (jid, TIMEOUT))
    tls = c.transport.get_extra_info("ssl_object")
    if tls is None:
        raise SystemExit("login.py: the session is not encrypted")
    body = "hello from the package test"
    c.send_message(mto=c.boundjid.full, mbody=body, mtype="chat")
    try:
        while True:
            msg = await asyncio.wait_for(c.messages.get(), TIMEOUT)
            if msg["type"] == "error":
                raise SystemExit("login.py: error message: %s" % msg)
            if msg["body"] == body:
                break
    except asyncio.TimeoutError:
        raise SystemExit("login.py: own message not received within %ss" % TIMEOUT)
    print("login.py: %s logged in over %s, certificate verified, message "
          "delivered" % (c.boundjid.full, tls.version()))
    try:
        await asyncio.wait_for(c.disconnect(wait=3), 5)
    except asyncio.TimeoutError:
        pass
    c.abort()


if __name__ == "__main__":
    if len(sys.argv) != 5:
        raise SystemExit("usage: login.py PORT JID PASSWORD CAFILE")
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]))

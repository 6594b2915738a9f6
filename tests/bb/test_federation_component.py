"""An external component (XEP-0114) on xmppd, reached from servers we
did not write: Prosody 0.12 and ejabberd 23.01 (Debian's), in the
federation lab (tests/bb/fedlab.py).

xmppd serves xmppd.test and a component serves comp.xmppd.test: the
component is a connection of the test's own, speaking XEP-0114 byte by
byte (the handshake of tests/bb/test_component.py), so what xmppd writes
to it is checked exactly.  The lab's DNS names xmppd's s2s port for
comp.xmppd.test and xmppd's certificate covers it (dNSName and SRV-ID).
With each anchor, a user there (a slixmpp client) and the component:

  * a chat message from the user to bot@comp.xmppd.test reaches the
    component with the user's full JID as 'from', exactly; the
    component's answer reaches the user, from bot@comp.xmppd.test;
  * a disco#info IQ from the user to comp.xmppd.test reaches the
    component, and its result (identity and feature) comes back;
  * a presence subscription from the user to bot@comp.xmppd.test
    reaches the component (from the user's bare JID); its approval
    reaches the user (his roster: subscription 'to');
  * the anchor authenticated the component's domain on both links
    (SASL EXTERNAL with the lab CA's certificate; the anchor's log
    and xmppd's say so), or, with self-signed certificates, by
    dialback both ways (the anchors' and xmppd's logs say so);
  * with the component gone, the user's IQ to it comes back as
    <service-unavailable/> (cancel) from comp.xmppd.test, and his
    message too (component.c; RFC 6120 8.3.3.19: the service is not
    offered now).  XEP-0114 leaves the condition to the server;
    Prosody answers the same for a component that is not connected.
Needs XMPPD_TEST_PGCONN and root (the anchors run as their own users).
"""
import asyncio
import os
import re
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_tests, wait_for  # noqa: E402
from fedlab import (Lab, ProsodyServer, EjabberdServer, User,  # noqa: E402
                    run_async)
from test_component import Comp  # noqa: E402

COMP, SECRET = "comp.xmppd.test", "c0mp-s3cr3t"
BOT = "bot@" + COMP
TEXT = "To a component <&> 'quotes' \u00fcn\u00efc\u00f6d\u00e9 \u2665"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_DISCO = "http://jabber.org/protocol/disco#info"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

# A top-level stanza at the start of what the component has not read yet
# (nothing may come before it: read_until searches, so anchor it).
# Compared as canonical XML: the attributes keep the order the anchor
# sent them in (Prosody: to before from).
STANZA_RX = (r"\A(<(message|presence|iq)\b[^>]*/>|"
             r"<(message|presence|iq)\b[^>]*[^/]>.*?</\3>)")


def esc(s):
    return (s.replace("&", "&amp;").replace("<", "&lt;")
            .replace(">", "&gt;").replace("'", "&apos;"))


def c14n(text):
    """Canonical XML (attribute order and quoting do not count)."""
    return ET.canonicalize(xml_data=text)


def seen_by_client(stanza):
    """What the slixmpp client received, as canonical XML.  slixmpp
    writes it without the stream's jabber:client namespace; an xml:lang
    'en' on it is the language of the anchor's stream (Prosody's client
    gets it, ejabberd's not) and is left out."""
    text = c14n(str(stanza))
    head = text[:text.index(">")]
    return head.replace(' xml:lang="en"', "", 1) + text[len(head):]


async def comp_next(comp, timeout=30):
    """The next stanza xmppd writes to the component (blocking read in
    a thread: the anchors' clients keep running)."""
    return await asyncio.to_thread(comp.c.read_until, STANZA_RX, timeout)


async def comp_send(comp, text):
    await asyncio.to_thread(comp.c.send, text)


def component_scenario(anchor_cls, secure):
    """The scenario of the module docstring with one anchor; returns
    (anchor's log, xmppd's log)."""
    with Lab() as lab:
        x = lab.xmppd("xmppd.test", secure=secure, workers=2,
                      components={COMP: SECRET})
        name = "%s.test" % anchor_cls.kind
        a = anchor_cls(lab, name, secure=secure, users=[("dave", "d4ve-pw")])
        lab.start()
        D = "dave@%s" % name
        DF = D + "/lab"

        async def scenario():
            comp = await asyncio.to_thread(lambda: Comp(x, COMP).login(SECRET))
            d = await User(a, "dave", "d4ve-pw").online()
            try:
                # a message to the component, and its answer
                m = d.make_message(mto=BOT, mbody=TEXT, mtype="chat")
                m["id"] = "cm-1"
                m.send()
                got = await comp_next(comp, 60)
                assert c14n(got) == c14n(
                    "<message from='%s' to='%s' type='chat' id='cm-1' "
                    "xml:lang='en'><body>%s</body></message>"
                    % (DF, BOT, esc(TEXT))), got
                await comp_send(comp, "<message from='%s' to='%s' type='chat' "
                                "id='cr-1'><body>re: %s</body></message>"
                                % (BOT, DF, esc(TEXT)))
                r = await d.next_message(30)
                assert seen_by_client(r) == c14n(
                    "<message from='%s' to='%s' "
                    "type='chat' id='cr-1'><body>re: %s</body></message>"
                    % (BOT, DF, esc(TEXT))), str(r)

                # disco#info to the component's domain, and its result
                iq = d.Iq(stype="get", sto=COMP)
                iq["id"] = "ci-1"
                iq.append(ET.fromstring("<query xmlns='%s'/>" % NS_DISCO))
                pending = asyncio.ensure_future(iq.send(timeout=30))
                got = await comp_next(comp, 30)
                assert c14n(got) == c14n(
                    "<iq from='%s' to='%s' type='get' id='ci-1' "
                    "xml:lang='en'><query xmlns='%s'/></iq>"
                    % (DF, COMP, NS_DISCO)), got
                info = ("<query xmlns='%s'><identity category='gateway' "
                        "type='xmpp' name='Lab bot'/><feature var='%s'/>"
                        "</query>" % (NS_DISCO, NS_DISCO))
                await comp_send(comp, "<iq from='%s' to='%s' type='result' "
                                "id='ci-1'>%s</iq>" % (COMP, DF, info))
                res = await pending
                assert seen_by_client(res) == c14n(
                    "<iq from='%s' to='%s' "
                    "type='result' id='ci-1'>%s</iq>" % (COMP, DF, info)), \
                    str(res)

                # a subscription request to the component's JID, approved
                d.send_presence(pto=BOT, ptype="subscribe")
                got = await comp_next(comp, 30)
                p = ET.fromstring(got)
                p.attrib.pop("id", None)    # the anchor's, if it adds one
                assert (p.tag, p.attrib, list(p)) == (
                    "presence", {"from": D, "to": BOT, "type": "subscribe",
                                 XML_LANG: "en"}, []), got
                await comp_send(comp, "<presence from='%s' to='%s' "
                                "type='subscribed'/>" % (BOT, D))
                await d.until(lambda: d.presence_from(BOT, "subscribed"), 30,
                              "<presence type='subscribed'/> from %s" % BOT)
                await d.until(lambda: d.subscription(BOT) == "to", 30,
                              "roster push: %s subscription to" % BOT)

                # the component leaves: the IQ and the message come back
                comp.close()
                await asyncio.to_thread(
                    wait_for, lambda: "component %s disconnected" % COMP
                    in x.log_text(), timeout=20, what="component gone")
                iq = d.Iq(stype="get", sto=COMP)
                iq["id"] = "ci-2"
                iq.append(ET.fromstring("<query xmlns='%s'/>" % NS_DISCO))
                try:
                    res = await iq.send(timeout=30)
                    raise AssertionError("an answer from a component that "
                                         "is gone: %s" % res)
                except Exception as e:      # slixmpp.exceptions.IqError
                    if not hasattr(e, "iq"):
                        raise
                    assert seen_by_client(e.iq) == c14n(
                        "<iq from='%s' to='%s' "
                        "type='error' id='ci-2'><error type='cancel'>"
                        "<service-unavailable xmlns='%s'/></error></iq>"
                        % (COMP, DF, NS_STANZAS)), str(e.iq)
                errors = asyncio.Queue()
                d.add_event_handler("message_error", errors.put_nowait)
                m = d.make_message(mto=BOT, mbody="still there?", mtype="chat")
                m["id"] = "cm-2"
                m.send()
                err = await asyncio.wait_for(errors.get(), 30)
                assert seen_by_client(err) == c14n(
                    "<message from='%s' to='%s' "
                    "type='error' id='cm-2'><error type='cancel'>"
                    "<service-unavailable xmlns='%s'/></error></message>"
                    % (BOT, DF, NS_STANZAS)), str(err)
            finally:
                comp.close()
                await d.offline()
        run_async(scenario(), timeout=240)
        return a.log_text(), x.log_text()


def xmppd_links(xlog, remote, how):
    """xmppd's own account of the component domain's links with remote."""
    out = re.search(r"s2s %s -> %s \S+: up \(%s, TLS" % (
        re.escape(COMP), re.escape(remote), how), xlog)
    inc = re.search(r"s2s stream (?:from %s to %s authenticated "
                    r"\(SASL EXTERNAL\)|authorized for %s -> %s \(dialback\))"
                    % (re.escape(remote), re.escape(COMP), re.escape(remote),
                       re.escape(COMP)), xlog)
    return out, inc


def test_prosody_component_external():
    """Prosody, valid certificates: Prosody validates xmppd's certificate
    for comp.xmppd.test on its incoming and outgoing streams."""
    plog, xlog = component_scenario(ProsodyServer, True)
    assert "Incoming s2s connection %s->prosody.test complete" % COMP in plog, \
        plog[-3000:]
    assert "Outgoing s2s connection prosody.test->%s complete" % COMP in plog, \
        plog[-3000:]
    assert "falling back to dialback" not in plog, plog[-3000:]
    assert all(xmppd_links(xlog, "prosody.test", "EXTERNAL")), xlog[-3000:]


def test_ejabberd_component_external():
    """ejabberd, valid certificates: EXTERNAL both ways for the
    component's domain."""
    elog, xlog = component_scenario(EjabberdServer, True)
    for d, f, t in (("inbound", COMP, "ejabberd.test"),
                    ("outbound", "ejabberd.test", COMP)):
        assert re.search(r"Accepted %s s2s EXTERNAL authentication %s -> %s"
                         % (d, re.escape(f), re.escape(t)), elog), elog[-3000:]
    assert all(xmppd_links(xlog, "ejabberd.test", "EXTERNAL")), xlog[-3000:]


def test_prosody_component_dialback():
    """Prosody, self-signed certificates: the component's domain is
    authenticated by dialback both ways."""
    plog, xlog = component_scenario(ProsodyServer, False)
    assert ("connection prosody.test->%s is now authenticated for %s"
            % (COMP, COMP)) in plog, plog[-3000:]
    assert "verified dialback key... it is valid" in plog, plog[-3000:]
    assert all(xmppd_links(xlog, "prosody.test", "dialback")), xlog[-3000:]


def test_ejabberd_component_dialback():
    """ejabberd, self-signed certificates: dialback both ways for the
    component's domain."""
    elog, xlog = component_scenario(EjabberdServer, False)
    for d, f, t in (("inbound", COMP, "ejabberd.test"),
                    ("outbound", "ejabberd.test", COMP)):
        assert re.search(r"Accepted %s s2s dialback authentication %s -> %s"
                         % (d, re.escape(f), re.escape(t)), elog), elog[-3000:]
    assert all(xmppd_links(xlog, "ejabberd.test", "dialback")), xlog[-3000:]


if __name__ == "__main__":
    run_tests([test_prosody_component_external, test_ejabberd_component_external,
               test_prosody_component_dialback, test_ejabberd_component_dialback])

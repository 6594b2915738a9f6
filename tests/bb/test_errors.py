"""The exact errors for input the audit of issue 9 found answered wrongly,
black box with exact XML: encodings other than UTF-8 (RFC 6120 11.6),
stream headers in the wrong namespace or with the wrong default
namespace (4.8, 4.9.3.10) or the wrong root element (4.9.3.1), and SCRAM
client-first messages with a long client nonce (lib/scram.h limits).
Needs XMPPD_TEST_PGCONN.
"""
import base64
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (NS_STREAMS, SERVER_HEADER, Client, Server,  # noqa: E402
                     run_tests, stream_error_re, stream_header)

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
USERS = [("juliet@localhost", "r0m30!")]
FEATURES = "<stream:features>.*?</stream:features>"
# What lib/scram.h documents (SCRAM_NONCE_MAX, SCRAM_MESSAGE_MAX).
SCRAM_NONCE_MAX = 1024
SCRAM_MESSAGE_MAX = 8192


def header(default_ns="jabber:client", stream_ns=NS_STREAMS, name="stream",
           decl="<?xml version='1.0'?>"):
    d = " xmlns='%s'" % default_ns if default_ns is not None else ""
    return ("%s<stream:%s to='localhost' version='1.0'%s xmlns:stream='%s'>"
            % (decl, name, d, stream_ns))


def stream_error_exchange(s, data, cond, split=False):
    """Send data on a new connection (split: its first byte alone): the
    whole answer must be our stream header, then exactly the stream
    error cond, then the close."""
    c = Client(s.port)
    if split:
        in_two(c, data)
    else:
        c.send(data)
    rest = c.read_all_until_close()
    c.close()
    assert re.fullmatch(SERVER_HEADER + stream_error_re(cond), rest, re.S), (cond, data, rest)
    assert "stream error <%s/>" % cond in s.log_text(), cond


def in_two(c, data):
    """The first byte alone, and after a pause (so that the server reads
    it alone) the rest."""
    c.send(data[:1])
    time.sleep(0.5)
    c.send(data[1:])


def accepted(s, data, split=False):
    c = Client(s.port)
    if split:
        in_two(c, data.encode() if isinstance(data, str) else data)
    else:
        c.send(data)
    c.read_until(SERVER_HEADER)
    c.read_until(FEATURES)
    c.close()


def test_unsupported_encoding():
    """11.6: UTF-8 only; another encoding in the XML declaration or a
    UTF-16 stream is <unsupported-encoding/>, not parsed as UTF-8."""
    with Server(workers=1) as s:
        for enc in ("UTF-16", "ISO-8859-1", "US-ASCII"):
            stream_error_exchange(
                s, header(decl="<?xml version='1.0' encoding='%s'?>" % enc),
                "unsupported-encoding")
        text = header()
        stream_error_exchange(s, b"\xff\xfe" + text.encode("utf-16-le"),
                              "unsupported-encoding")
        stream_error_exchange(s, b"\xfe\xff" + text.encode("utf-16-be"),
                              "unsupported-encoding")
        stream_error_exchange(s, text.encode("utf-16-be"), "unsupported-encoding")
        # The byte order mark (or the NUL) split over two reads: the
        # first byte alone tells nothing yet (4.9.3.22).
        stream_error_exchange(s, b"\xff\xfe" + text.encode("utf-16-le"),
                              "unsupported-encoding", split=True)
        stream_error_exchange(s, b"\xfe\xff" + text.encode("utf-16-be"),
                              "unsupported-encoding", split=True)
        stream_error_exchange(s, text.encode("utf-16-be"),
                              "unsupported-encoding", split=True)
        stream_error_exchange(s, text.encode("utf-16-le"),
                              "unsupported-encoding", split=True)
        # A lone first byte that turns out to be UTF-8 after all.
        accepted(s, header(decl=""), split=True)
        accepted(s, header(), split=True)
        stream_error_exchange(s, b"\xff" + header().encode(), "not-well-formed",
                              split=True)
        # UTF-8, declared in any case, or not declared, is fine.
        accepted(s, header(decl="<?xml version='1.0' encoding='UTF-8'?>"))
        accepted(s, header(decl="<?xml version='1.0' encoding='utf-8'?>"))
        accepted(s, header(decl=""))


def test_stream_namespaces():
    """4.8.1/4.9.3.10: the root element must be in the stream namespace,
    and on this client port the default namespace must be jabber:client;
    4.9.3.1: a root element that is not <stream/> cannot be processed."""
    with Server(workers=1) as s:
        stream_error_exchange(s, header(default_ns="jabber:server"), "invalid-namespace")
        stream_error_exchange(s, header(default_ns=None), "invalid-namespace")
        stream_error_exchange(s, header(default_ns="urn:other"), "invalid-namespace")
        stream_error_exchange(s, header(stream_ns="http://etherx.jabber.org/streams/"),
                              "invalid-namespace")
        stream_error_exchange(s, "<stream to='localhost' version='1.0' "
                              "xmlns='jabber:client'>", "invalid-namespace")
        stream_error_exchange(s, header(name="features"), "bad-format")
        # The default namespace is checked on the restarted stream too.
        c = Client(s.port)
        c.open()
        c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        c.read_until("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        c.wrap_tls()
        c.send(header(default_ns="jabber:server"))
        rest = c.read_all_until_close()
        assert re.fullmatch(SERVER_HEADER + stream_error_re("invalid-namespace"),
                            rest, re.S), rest
        accepted(s, stream_header())


def scram_first(user, nonce):
    msg = "n,,n=%s,r=%s" % (user, nonce)
    return ("<auth xmlns='%s' mechanism='SCRAM-SHA-256'>%s</auth>"
            % (SASL, base64.b64encode(msg.encode()).decode()))


def sasl_answer(s, auth):
    c = Client(s.port)
    c.open()
    c.starttls()
    c.send(auth)
    got = c.read_until("<challenge xmlns='%s'>[^<]*</challenge>|"
                       "<failure xmlns='%s'>.*?</failure>" % (SASL, SASL))
    c.close()
    return got


def test_scram_long_nonce():
    """A client nonce up to SCRAM_NONCE_MAX logs in; a longer one, up to
    8 KB, is the client's malformed-request (lib/scram.h), never a
    server-side temporary-auth-failure; text that is not base64 is
    incorrect-encoding."""
    with Server(workers=1, users=USERS) as s:
        c = Client(s.port)
        c.open()
        c.starttls()
        got = c.auth_scram("juliet", "r0m30!", nonce="N" * SCRAM_NONCE_MAX)
        assert got.startswith("<success xmlns='%s'>" % SASL), got
        c.close()
        for n in (SCRAM_NONCE_MAX + 1, 2000, 4096):
            got = sasl_answer(s, scram_first("juliet", "N" * n))
            assert got == ("<failure xmlns='%s'><malformed-request/><text>malformed "
                           "message</text></failure>" % SASL), (n, got)
        # 8 KB of nonce: the message passes SCRAM_MESSAGE_MAX.
        got = sasl_answer(s, scram_first("juliet", "N" * SCRAM_MESSAGE_MAX))
        assert got == ("<failure xmlns='%s'><malformed-request/><text>message too "
                       "large</text></failure>" % SASL), got
        got = sasl_answer(s, "<auth xmlns='%s' mechanism='SCRAM-SHA-256'>"
                          "bix,bj1qdWxpZXQ=</auth>" % SASL)
        assert got == "<failure xmlns='%s'><incorrect-encoding/></failure>" % SASL, got
        assert "temporary-auth-failure" not in s.log_text()


def test_error_addressing():
    """RFC 6120 8.3.1: an error the server returns for the client's
    stanza goes to the client's full JID, from the stanza's 'to', even
    when the stanza is answered before routing stamps its 'from'."""
    stanzas = "urn:ietf:params:xml:ns:xmpp-stanzas"
    with Server(workers=1, users=USERS) as s:
        c = Client(s.port)
        jid = c.login("juliet", "r0m30!", resource="one")
        c.send("<iq type='set' id='b2'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
               "<resource>two</resource></bind></iq>")
        got = c.read_until("<iq [^>]*id='b2'.*?</iq>")
        assert got == ("<iq id='b2' to='%s' type='error'><error type='cancel'>"
                       "<not-allowed xmlns='%s'/><text xmlns='%s'>one resource per "
                       "stream</text></error></iq>" % (jid, stanzas, stanzas)), got
        c.send("<iq type='get' id='b3' to='localhost'><session "
               "xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
        got = c.read_until("<iq [^>]*id='b3'.*?</iq>")
        assert got == ("<iq from='localhost' id='b3' to='%s' type='error'><error "
                       "type='modify'><bad-request xmlns='%s'/></error></iq>"
                       % (jid, stanzas)), got
        c.send("<iq type='bogus' id='b4' to='romeo@localhost'/>")
        got = c.read_until("<iq [^>]*id='b4'.*?</iq>")
        assert got == ("<iq from='romeo@localhost' id='b4' to='%s' type='error'><error "
                       "type='modify'><bad-request xmlns='%s'/></error></iq>"
                       % (jid, stanzas)), got

    # RFC 6121 2.3.3 / RFC 6120 8.3.1: a subscription refused because the
    # roster is full comes back from the contact, with the request's id,
    # to the resource that sent it.
    with Server(workers=1, users=USERS + [("romeo@localhost", "x"), ("nurse@localhost", "y")],
                overrides={"im.roster_max_items": "1"}) as s:
        c = Client(s.port)
        jid = c.login("juliet", "r0m30!", resource="one")
        c.send("<iq type='set' id='r1'><query xmlns='jabber:iq:roster'>"
               "<item jid='nurse@localhost'/></query></iq>")
        c.read_until("<iq [^>]*id='r1'[^>]*type='result'/>")
        c.send("<presence to='romeo@localhost' type='subscribe' id='s1'>"
               "<status>hi</status></presence>")
        got = c.read_until("<presence [^>]*type='error'.*?</presence>")
        assert got == ("<presence from='romeo@localhost' id='s1' to='%s' type='error'>"
                       "<error type='cancel'><not-acceptable xmlns='%s'/></error>"
                       "</presence>" % (jid, stanzas)), got


if __name__ == "__main__":
    run_tests([test_unsupported_encoding, test_stream_namespaces,
               test_scram_long_nonce, test_error_addressing])

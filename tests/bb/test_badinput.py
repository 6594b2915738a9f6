"""A catalogue of bad input, black box: each case sends one kind of bad
(or tricky) input at one stage of a stream and checks the exact answer on
the wire, naming the section of the RFC (or XEP) that defines it.  Every
case runs twice, over STARTTLS on the c2s port and over direct TLS
(XEP-0368), on a server with two workers.  After each case: no worker was
restarted (same pids, no restart counted), and two bystanders, one on
each worker, still get answers, so the other worker's users for certain.
Needs XMPPD_TEST_PGCONN.
"""
import base64
import os
import re
import select
import signal
import ssl
import sys
import time
import xml.parsers.expat

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Client, Server, run_tests, stream_error_re,  # noqa: E402
                     stream_header, wait_for, NS_STREAMS)
from imlib import connect_on  # noqa: E402

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
USERS = [("juliet@localhost", "r0m30!"), ("romeo@localhost", "jul13t?"),
         ("nurse@localhost", "s3cret"), ("mallory@localhost", "m4ll0ry")]
HDR = stream_header()
BIND_NS = "urn:ietf:params:xml:ns:xmpp-bind"


# ---- what a case expects ----------------------------------------------

def stream_err(cond):
    """The stream ends with this stream error (RFC 6120 4.9.3)."""
    return ("stream", cond)


def sasl_fail(cond):
    """A SASL <failure/> with this condition (RFC 6120 6.5); the stream
    stays open."""
    return ("sasl", cond)


def stanza_err(kind, etype, cond, ident):
    """A stanza error (RFC 6120 8.3) for the stanza with this id, from the
    address it was sent to, to the sender (8.3.1: from and to swapped)."""
    return ("stanza", kind, etype, cond, ident)


def closed():
    """Nothing XMPP can say (a broken TLS layer): the connection closes."""
    return ("closed",)


class Case:
    def __init__(self, name, ref, stage, send, expect, check=None):
        self.name = name        # short name
        self.ref = ref          # the section that defines the answer
        self.stage = stage      # 'header', 'stream', 'authed', 'bound', 'tls'
        self.send = send        # bytes or str, or a function of the context
        self.expect = expect
        self.check = check      # extra check: fn(ctx, got) -> None


def b64(s):
    return base64.b64encode(s if isinstance(s, bytes) else s.encode()).decode()


def auth(mech, payload=None):
    body = "" if payload is None else payload
    return "<auth xmlns='%s' mechanism='%s'>%s</auth>" % (SASL, mech, body)


def msg(ident, to, inner="<body>x</body>", extra=""):
    return "<message to='%s' id='%s' type='chat'%s>%s</message>" % (to, ident, extra, inner)


def iq(ident, inner, typ="get", to=None, extra=""):
    t = " to='%s'" % to if to else ""
    return "<iq type='%s' id='%s'%s%s>%s</iq>" % (typ, ident, t, extra, inner)


LONG = "a" * 1100
# Under the 64K input limit, but every <p:b/> is written out with its own
# declaration of the 32K URI (its parent is in another namespace): ~160 MB.
AMPLIFY = "<q xmlns='urn:q' xmlns:p='urn:%s'>%s</q>" % ("u" * 32000, "<p:b/>" * 5000)
CASES = [
    # ---- stream header (RFC 6120 4.7, 4.8, 4.9.3, 11) ----
    Case("stream ns wrong", "RFC 6120 4.9.3.10", "header",
         "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
         "xmlns='jabber:client' xmlns:stream='urn:example:wrong'>",
         stream_err("invalid-namespace")),
    Case("content ns jabber:server on c2s", "RFC 6120 4.9.3.10, 11.2", "header",
         "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
         "xmlns='jabber:server' xmlns:stream='%s'>" % NS_STREAMS,
         stream_err("invalid-namespace")),
    Case("no content ns", "RFC 6120 4.9.3.10, 11.2", "header",
         "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
         "xmlns:stream='%s'>" % NS_STREAMS,
         stream_err("invalid-namespace")),
    Case("content ns made up", "RFC 6120 4.9.3.10", "header",
         "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
         "xmlns='urn:example:chat' xmlns:stream='%s'>" % NS_STREAMS,
         stream_err("invalid-namespace")),
    Case("unknown host", "RFC 6120 4.9.3.6", "header",
         stream_header(to="nowhere.example"), stream_err("host-unknown")),
    Case("major version 2", "RFC 6120 4.7.5, 4.9.3.25", "header",
         stream_header(version="2.0"), stream_err("unsupported-version")),
    Case("encoding UTF-16 declared", "RFC 6120 11.6, 4.9.3.22", "header",
         HDR.replace("<?xml version='1.0'?>", "<?xml version='1.0' encoding='UTF-16'?>"),
         stream_err("unsupported-encoding")),
    Case("encoding ISO-8859-1 declared", "RFC 6120 11.6, 4.9.3.22", "header",
         HDR.replace("<?xml version='1.0'?>", "<?xml version='1.0' encoding='ISO-8859-1'?>"),
         stream_err("unsupported-encoding")),
    Case("UTF-16 byte order mark", "RFC 6120 11.6, 4.9.3.22", "header",
         b"\xff\xfe" + HDR.encode("utf-16-le"), stream_err("unsupported-encoding")),
    Case("DOCTYPE", "RFC 6120 11.1, 4.9.3.18", "header",
         "<?xml version='1.0'?><!DOCTYPE stream:stream>" + HDR[len("<?xml version='1.0'?>"):],
         stream_err("restricted-xml")),
    Case("internal subset with entity", "RFC 6120 11.1", "header",
         "<?xml version='1.0'?><!DOCTYPE s [<!ENTITY x 'y'>]>" + HDR[len("<?xml version='1.0'?>"):],
         stream_err("restricted-xml")),
    Case("billion laughs", "RFC 6120 11.1", "header",
         "<?xml version='1.0'?><!DOCTYPE s [<!ENTITY a 'aaaaaaaaaa'>"
         "<!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'><!ENTITY c '&b;&b;&b;&b;&b;&b;&b;&b;'>]>"
         + HDR[len("<?xml version='1.0'?>"):], stream_err("restricted-xml")),
    Case("comment before stream", "RFC 6120 11.1", "header",
         "<?xml version='1.0'?><!-- hi -->" + HDR[len("<?xml version='1.0'?>"):],
         stream_err("restricted-xml")),
    Case("processing instruction", "RFC 6120 11.1", "header",
         "<?xml version='1.0'?><?xml-stylesheet href='x'?>" + HDR[len("<?xml version='1.0'?>"):],
         stream_err("restricted-xml")),
    Case("bytes that are not XML", "RFC 6120 4.9.3.13", "header",
         "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", stream_err("not-well-formed")),
    Case("root is not stream", "RFC 6120 4.9.3.10", "header",
         "<?xml version='1.0'?><message xmlns='jabber:client'>",
         stream_err("invalid-namespace")),
    Case("bad UTF-8 in header", "RFC 6120 11.6, 4.9.3.13", "header",
         HDR.replace("to='localhost'", "to='local\xc3host'").encode("latin-1"),
         stream_err("not-well-formed")),
    Case("attribute too long in header", "RFC 6120 4.9.3.18", "header",
         HDR.replace("to='localhost'", "to='localhost' junk='%s'" % ("z" * 300000)),
         stream_err("policy-violation")),

    # ---- XML inside an open stream (RFC 6120 4.9.3.13, 11) ----
    Case("comment in stream", "RFC 6120 11.1", "stream",
         "<!-- hello -->", stream_err("restricted-xml")),
    Case("PI in stream", "RFC 6120 11.1", "stream",
         "<?pi data?>", stream_err("restricted-xml")),
    Case("undeclared entity", "RFC 6120 11.1, 4.9.3.13", "bound",
         msg("e1", "romeo@localhost", "<body>&nbsp;</body>"),
         stream_err("not-well-formed")),
    Case("invalid UTF-8 byte", "RFC 6120 11.6", "bound",
         msg("u1", "romeo@localhost", "<body>\xff</body>").encode("latin-1"),
         stream_err("not-well-formed")),
    Case("overlong UTF-8", "RFC 6120 11.6, RFC 3629 3", "bound",
         b"<message to='romeo@localhost' id='u2'><body>\xc0\xaf</body></message>",
         stream_err("not-well-formed")),
    Case("UTF-8 surrogate", "RFC 6120 11.6, RFC 3629 3", "bound",
         b"<message to='romeo@localhost' id='u3'><body>\xed\xa0\x80</body></message>",
         stream_err("not-well-formed")),
    Case("C0 control character", "RFC 6120 11.6, XML 1.0 2.2", "bound",
         msg("u4", "romeo@localhost", "<body>a\x01b</body>"), stream_err("not-well-formed")),
    Case("character reference to U+0001", "XML 1.0 4.1 WFC Legal Character", "bound",
         msg("u5", "romeo@localhost", "<body>&#1;</body>"), stream_err("not-well-formed")),
    Case("character reference to a surrogate", "XML 1.0 4.1", "bound",
         msg("u6", "romeo@localhost", "<body>&#xD800;</body>"), stream_err("not-well-formed")),
    Case("mismatched end tag", "XML 1.0 3 WFC Element Type Match", "bound",
         "<message to='romeo@localhost' id='t1'><body>x</bodx></message>",
         stream_err("not-well-formed")),
    Case("unbound prefix", "RFC 6120 4.9.3.2", "bound",
         msg("n1", "romeo@localhost", "<foo:bar/>"), stream_err("bad-namespace-prefix")),
    Case("duplicate attribute", "XML 1.0 3.1 WFC Unique Att Spec", "bound",
         "<message to='romeo@localhost' to='nurse@localhost' id='d1'/>",
         stream_err("not-well-formed")),
    Case("duplicate attribute through namespaces", "Namespaces in XML 6.3", "bound",
         msg("d2", "romeo@localhost", "<x xmlns='urn:t' xmlns:a='urn:n' xmlns:b='urn:n' a:k='1' b:k='2'/>"),
         stream_err("not-well-formed")),
    Case("prefix xml bound elsewhere", "Namespaces in XML 3", "bound",
         msg("r1", "romeo@localhost", "<x xmlns='urn:t' xmlns:xml='urn:other'/>"),
         stream_err("not-well-formed")),
    Case("prefix xmlns declared", "Namespaces in XML 3", "bound",
         msg("r2", "romeo@localhost", "<x xmlns='urn:t' xmlns:xmlns='urn:other'/>"),
         stream_err("not-well-formed")),
    Case("default ns is the xml namespace", "Namespaces in XML 3", "bound",
         msg("r3", "romeo@localhost", "<x xmlns='http://www.w3.org/XML/1998/namespace'/>"),
         stream_err("not-well-formed")),
    Case("xmlns namespace bound to a prefix", "Namespaces in XML 3", "bound",
         msg("r4", "romeo@localhost", "<x xmlns='urn:t' xmlns:p='http://www.w3.org/2000/xmlns/'/>"),
         stream_err("not-well-formed")),
    Case("XML declaration inside the stream", "XML 1.0 2.8", "bound",
         "<?xml version='1.0'?>", stream_err("not-well-formed")),
    Case("too many attributes on one element", "RFC 6120 13.12, 4.9.3.18", "bound",
         msg("at", "romeo@localhost", "<z xmlns='urn:z' %s/>" % " ".join("a%d='1'" % i for i in range(200))),
         stream_err("policy-violation")),
    Case("stanza over the size limit", "RFC 6120 13.12, 4.9.3.18", "bound",
         msg("big", "romeo@localhost", "<body>%s</body>" % ("x" * 70000)),
         stream_err("policy-violation")),
    Case("namespace URI declared again on every element, before auth",
         "RFC 6120 13.12, 4.9.3.18", "stream", iq("amp1", AMPLIFY),
         stream_err("policy-violation")),
    Case("namespace URI declared again on every element",
         "RFC 6120 13.12, 4.9.3.18", "bound", msg("amp2", "romeo@localhost", AMPLIFY),
         stream_err("policy-violation")),
    Case("unfinished tag over the size limit", "RFC 6120 13.12", "stream",
         "<message a='" + "y" * 70000, stream_err("policy-violation")),
    Case("nesting too deep", "RFC 6120 13.12, 4.9.3.18", "bound",
         "<message to='romeo@localhost' id='deep'>" + "<x xmlns='urn:d'>" * 2000,
         stream_err("policy-violation")),
    Case("too many attributes", "RFC 6120 13.12, 4.9.3.18", "bound",
         "<message to='romeo@localhost' id='attrs'>" + "<x xmlns='urn:a' %s/>" %
         " ".join("a%d='1'" % i for i in range(5000)) + "</message>",
         stream_err("policy-violation")),
    Case("unknown top-level element", "RFC 6120 4.9.3.24", "bound",
         "<foo/>", stream_err("unsupported-stanza-type")),
    Case("top-level element in another namespace", "RFC 6120 4.9.3.10", "bound",
         "<message xmlns='urn:example:other' to='romeo@localhost'/>",
         stream_err("unsupported-stanza-type")),
    Case("stanza before authentication", "RFC 6120 4.9.3.15, 6.4.1", "stream",
         msg("pre", "romeo@localhost"), stream_err("not-authorized")),
    Case("iq before bind", "RFC 6120 7.1, 4.9.3.15", "authed",
         iq("prebind", "<ping xmlns='urn:xmpp:ping'/>", to="localhost"),
         stream_err("not-authorized")),
    Case("spoofed from", "RFC 6120 4.9.3.9, 8.1.2.1", "bound",
         "<message from='romeo@localhost/x' to='nurse@localhost' id='sp'><body>x</body></message>",
         stream_err("invalid-from")),
    Case("spoofed from on another host part", "RFC 6120 4.9.3.9", "bound",
         "<presence from='mallory@example.net/x'/>", stream_err("invalid-from")),

    Case("raw U+FFFF", "XML 1.0 2.2 Char", "bound",
         msg("u7", "romeo@localhost", "<body>\uffff</body>"), stream_err("not-well-formed")),
    Case("UTF-8 past U+10FFFF", "RFC 3629 3", "bound",
         b"<message to='romeo@localhost' id='u8'><body>\xf4\x90\x80\x80</body></message>",
         stream_err("not-well-formed")),
    Case("truncated UTF-8 sequence", "RFC 3629 3", "bound",
         b"<message to='romeo@localhost' id='u9'><body>\xe2\x82</body></message>",
         stream_err("not-well-formed")),
    Case("NUL byte", "XML 1.0 2.2 Char", "bound",
         b"<message to='romeo@localhost' id='u10'><body>a\x00b</body></message>",
         stream_err("not-well-formed")),
    Case("element name starting with a digit", "XML 1.0 2.3", "bound",
         msg("n2", "romeo@localhost", "<1x xmlns='urn:t'/>"), stream_err("not-well-formed")),
    Case("attribute without quotes", "XML 1.0 3.1", "bound",
         "<message to=romeo@localhost id='q1'/>", stream_err("not-well-formed")),
    Case("'<' in an attribute value", "XML 1.0 3.1 WFC No < in Attribute Values", "bound",
         "<message to='romeo@localhost' id='q2<'/>", stream_err("not-well-formed")),
    Case("stream closed inside a stanza", "XML 1.0 3 WFC Element Type Match", "bound",
         "<message to='romeo@localhost' id='q3'><body>x</stream:stream>",
         stream_err("not-well-formed")),
    Case("a second stream header inside the stream", "RFC 6120 4.9.3.24", "bound",
         stream_header()[len("<?xml version='1.0'?>"):], stream_err("unsupported-stanza-type")),
    Case("many namespace declarations, written out well-formed", "Namespaces in XML 3", "bound",
         msg("ns", "{self}", "<body>x</body><z xmlns='urn:z' %s %s/>" % (
             " ".join("xmlns:p%d='urn:p%d'" % (i, i) for i in range(300)),
             " ".join("p%d:a='%d'" % (i, i) for i in range(0, 300, 6)))),
         ("echo-wellformed", "ns")),
    Case("generated prefix taken by the client", "Namespaces in XML 3", "bound",
         msg("gp", "{self}", "<body>x</body><z xmlns='urn:z' xmlns:ns1='urn:q' xmlns:ns0='urn:r' "
             "ns1:a='1' ns0:b='2'><ns1:y ns0:c='3' xmlns:ns2='urn:s' ns2:d='4'/></z>"),
         ("echo-wellformed", "gp")),
    Case("whitespace, tabs and newlines in attributes", "XML 1.0 3.3.3", "bound",
         msg("ws", "{self}", "<body>x</body><z xmlns='urn:z' a='&#9;&#10;&#13;\t\n' b='&lt;&amp;&quot;&apos;'/>"),
         ("echo-wellformed", "ws")),
    Case("100 KB of whitespace between stanzas", "RFC 6120 4.6.1", "bound",
         " " * 100000 + "\n", ("silence", "none")),
    Case("the client's own stream error", "RFC 6120 4.9.1.1", "bound",
         "<stream:error><undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
         "</stream:error>", ("stream-end",)),
    Case("closing the stream", "RFC 6120 4.4", "bound",
         "</stream:stream>", ("stream-end",)),

    # ---- STARTTLS (RFC 6120 5) and TLS records ----
    Case("starttls again inside TLS", "RFC 6120 5.4.2.2", "stream",
         "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
         ("tls-failure",)),
    Case("garbage instead of a TLS record", "RFC 8446 5.1", "tls",
         b"\x17\x03\x03\x00\x10" + b"\x00" * 16, closed()),
    Case("plaintext XML in a TLS record stream", "RFC 8446 5", "tls",
         b"<message/>", closed()),

    # ---- SASL (RFC 6120 6.5, RFC 4616, RFC 5802) ----
    Case("unknown mechanism", "RFC 6120 6.5.6", "stream",
         auth("X-UNKNOWN"), sasl_fail("invalid-mechanism")),
    Case("no mechanism attribute", "RFC 6120 6.5.6", "stream",
         "<auth xmlns='%s'>AA==</auth>" % SASL, sasl_fail("invalid-mechanism")),
    Case("PLAIN not base64", "RFC 6120 6.5.2", "stream",
         auth("PLAIN", "%%%"), sasl_fail("incorrect-encoding")),
    Case("PLAIN base64 with bad padding", "RFC 6120 6.4.2, 6.5.2", "stream",
         auth("PLAIN", "AGp1bGlldAByMG0zMCE"), sasl_fail("incorrect-encoding")),
    Case("PLAIN without NULs", "RFC 4616 2, RFC 6120 6.5.8", "stream",
         auth("PLAIN", b64("julietr0m30!")), sasl_fail("malformed-request")),
    Case("PLAIN wrong password", "RFC 6120 6.5.10", "stream",
         auth("PLAIN", b64("\0juliet\0wrong")), sasl_fail("not-authorized")),
    Case("PLAIN authzid of another account", "RFC 6120 6.5.6", "stream",
         auth("PLAIN", b64("romeo@localhost\0juliet\0r0m30!")), sasl_fail("invalid-authzid")),
    Case("PLAIN NUL inside the password", "RFC 4616 2", "stream",
         auth("PLAIN", b64("\0juliet\0r0m\x0030!")), sasl_fail("malformed-request")),
    Case("PLAIN bad UTF-8 user", "RFC 4616 2", "stream",
         auth("PLAIN", b64(b"\0jul\xffiet\0r0m30!")), sasl_fail("malformed-request")),
    Case("PLAIN huge", "RFC 6120 13.12", "stream",
         auth("PLAIN", b64("\0juliet\0" + "p" * 40000)), sasl_fail("malformed-request")),
    Case("abort", "RFC 6120 6.4.4, 6.5.1", "stream",
         "<abort xmlns='%s'/>" % SASL, sasl_fail("aborted")),
    Case("response without auth", "RFC 6120 6.4.3", "stream",
         "<response xmlns='%s'>AA==</response>" % SASL, sasl_fail("malformed-request")),
    Case("SCRAM gs2 header bad", "RFC 5802 7", "stream",
         auth("SCRAM-SHA-256", b64("x,,n=juliet,r=abcdef")), sasl_fail("malformed-request")),
    Case("SCRAM without nonce", "RFC 5802 7", "stream",
         auth("SCRAM-SHA-256", b64("n,,n=juliet")), sasl_fail("malformed-request")),
    Case("SCRAM 8 KB nonce", "RFC 5802 5.1, lib/scram.h", "stream",
         auth("SCRAM-SHA-256", b64("n,,n=juliet,r=" + "N" * 8192)),
         ("sasl-challenge-or", "malformed-request")),
    Case("SCRAM 64 KB nonce", "RFC 6120 13.12", "stream",
         auth("SCRAM-SHA-256", b64("n,,n=juliet,r=" + "N" * 40000)),
         sasl_fail("malformed-request")),
    Case("SCRAM bad name escape", "RFC 5802 5.1", "stream",
         auth("SCRAM-SHA-256", b64("n,,n=jul=2Xiet,r=abcdef")), sasl_fail("malformed-request")),
    Case("SCRAM y flag while PLUS is offered (downgrade)", "RFC 5802 6", "stream",
         lambda ctx: ctx.scram_downgrade(), sasl_fail("not-authorized")),
    Case("SCRAM final with another nonce", "RFC 5802 5.1", "stream",
         lambda ctx: ctx.scram_final_tampered("nonce"), sasl_fail("not-authorized")),
    Case("SCRAM final not base64", "RFC 6120 6.5.2", "stream",
         lambda ctx: ctx.scram_final_tampered("b64"), sasl_fail("incorrect-encoding")),
    Case("auth after success", "RFC 6120 6.4.6, 4.9.3.18", "authed",
         auth("PLAIN", b64("\0juliet\0r0m30!")), stream_err("policy-violation")),

    # ---- binding (RFC 6120 7) ----
    Case("bind: resource over 1023 bytes", "RFC 6120 7.7.2.1, RFC 7622 3.4", "authed",
         iq("b1", "<bind xmlns='%s'><resource>%s</resource></bind>" % (BIND_NS, LONG), "set"),
         stanza_err("iq", "modify", "bad-request", "b1")),
    Case("bind: resource with a prohibited character", "RFC 6120 7.7.2.1, RFC 7622 3.4", "authed",
         iq("b2", "<bind xmlns='%s'><resource>a\u202eb</resource></bind>" % BIND_NS, "set"),
         stanza_err("iq", "modify", "bad-request", "b2")),
    Case("bind: get instead of set", "RFC 6120 7.1, 4.9.3.15", "authed",
         iq("b3", "<bind xmlns='%s'/>" % BIND_NS, "get"),
         stream_err("not-authorized")),
    Case("bind: two resources", "RFC 6120 7.7.2.1, 8.2.3", "authed",
         iq("b4", "<bind xmlns='%s'><resource>a</resource><resource>b</resource></bind>" % BIND_NS, "set"),
         stanza_err("iq", "modify", "bad-request", "b4")),

    # ---- addresses (RFC 7622, RFC 6120 8.3.3.8) ----
    Case("to with two @", "RFC 7622 3.2, RFC 6120 8.3.3.8", "bound",
         msg("j1", "a@b@localhost"), stanza_err("message", "modify", "jid-malformed", "j1")),
    Case("to with empty localpart", "RFC 7622 3.3", "bound",
         msg("j2", "@localhost"), stanza_err("message", "modify", "jid-malformed", "j2")),
    Case("to with a localpart over 1023 bytes", "RFC 7622 3.3", "bound",
         msg("j3", LONG + "@localhost"), stanza_err("message", "modify", "jid-malformed", "j3")),
    Case("to with a prohibited localpart character", "RFC 7622 3.3.1", "bound",
         msg("j4", "a:b@localhost"), stanza_err("message", "modify", "jid-malformed", "j4")),
    Case("to with empty resource", "RFC 7622 3.4", "bound",
         msg("j5", "romeo@localhost/"), stanza_err("message", "modify", "jid-malformed", "j5")),
    Case("to with a space in the domain", "RFC 7622 3.2", "bound",
         msg("j6", "romeo@local host"), stanza_err("message", "modify", "jid-malformed", "j6")),
    Case("to with an empty domain", "RFC 7622 3.2", "bound",
         msg("j7", "romeo@"), stanza_err("message", "modify", "jid-malformed", "j7")),
    Case("iq to a malformed address", "RFC 6120 8.3.3.8", "bound",
         iq("j8", "<ping xmlns='urn:xmpp:ping'/>", to="x@y@z"),
         stanza_err("iq", "modify", "jid-malformed", "j8")),

    # ---- stanzas (RFC 6120 8, RFC 6121) ----
    Case("iq without id", "RFC 6120 8.1.3, 8.2.3", "bound",
         "<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
         ("stanza-noid", "iq", "modify", "bad-request")),
    Case("iq without type", "RFC 6120 8.2.3", "bound",
         "<iq id='nt' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
         stanza_err("iq", "modify", "bad-request", "nt")),
    Case("iq with an unknown type", "RFC 6120 8.2.3", "bound",
         iq("ut", "<ping xmlns='urn:xmpp:ping'/>", typ="fetch", to="localhost"),
         stanza_err("iq", "modify", "bad-request", "ut")),
    Case("iq get with two children", "RFC 6120 8.2.3", "bound",
         iq("two", "<ping xmlns='urn:xmpp:ping'/><x xmlns='y'/>", to="localhost"),
         stanza_err("iq", "modify", "bad-request", "two")),
    Case("iq set with no child", "RFC 6120 8.2.3", "bound",
         iq("none", "", typ="set", to="localhost"),
         stanza_err("iq", "modify", "bad-request", "none")),
    Case("iq get for an unknown namespace", "RFC 6120 8.4", "bound",
         iq("unk", "<query xmlns='urn:example:nothing'/>", to="localhost"),
         stanza_err("iq", "cancel", "service-unavailable", "unk")),
    Case("presence with an unknown type", "RFC 6120 8.2.2, RFC 6121 4.7.1", "bound",
         "<presence type='bogus' id='pt'/>", ("stanza-own", "presence", "modify", "bad-request", "pt")),
    Case("message to an unknown account", "RFC 6121 8.5.1", "bound",
         msg("nx", "nobody@localhost"), stanza_err("message", "cancel", "service-unavailable", "nx")),
    Case("message to another server", "RFC 6120 10.4.3 (no federation)", "bound",
         msg("rs", "someone@example.net"),
         stanza_err("message", "cancel", "remote-server-not-found", "rs")),
    Case("error stanza to an unknown account gets no error back", "RFC 6120 8.3.1", "bound",
         "<message to='nobody@localhost' id='noerr' type='error'><error type='cancel'>"
         "<item-not-found xmlns='%s'/></error></message>" % STANZAS, ("silence", "noerr")),
    Case("iq result nobody asked for", "RFC 6120 8.2.3", "bound",
         "<iq type='result' id='stray' to='localhost'/>", ("silence", "stray")),
    Case("element in the xml namespace", "Namespaces in XML 3 (written out well-formed)", "bound",
         msg("xx", "{self}", "<body>hi</body><xml:x xml:lang='en'>t</xml:x>"),
         ("echo-wellformed", "xx")),
    Case("attributes in other namespaces and xml:lang", "Namespaces in XML 3", "bound",
         msg("xy", "{self}", "<body xml:lang='fr' xmlns:a='urn:a' a:k='1'>x</body>"
             "<z xmlns='urn:z' xmlns:b='urn:a' b:k='2'><q xmlns=''/></z>"),
         ("echo-wellformed", "xy")),
    Case("CDATA and escapes", "XML 1.0 2.7", "bound",
         msg("cd", "{self}", "<body><![CDATA[<b>&]]> ]]&gt; \"'</body>"),
         ("echo-wellformed", "cd")),

    # ---- storage payloads (RFC 6121 2, XEP-0054, XEP-0049, XEP-0191) ----
    Case("roster set with two items", "RFC 6121 2.3.3", "bound",
         iq("rs2", "<query xmlns='jabber:iq:roster'><item jid='a@localhost'/><item jid='b@localhost'/></query>", "set"),
         stanza_err("iq", "modify", "bad-request", "rs2")),
    Case("roster set with an empty group", "RFC 6121 2.3.3", "bound",
         iq("rsg", "<query xmlns='jabber:iq:roster'><item jid='a@localhost'><group></group></item></query>", "set"),
         stanza_err("iq", "modify", "not-acceptable", "rsg")),
    Case("roster set with a duplicate group", "RFC 6121 2.3.3", "bound",
         iq("rsd", "<query xmlns='jabber:iq:roster'><item jid='a@localhost'><group>g</group><group>g</group></item></query>", "set"),
         stanza_err("iq", "modify", "bad-request", "rsd")),
    Case("roster set with a malformed jid", "RFC 6121 2.3.3, RFC 6120 8.3.3.8", "bound",
         iq("rsj", "<query xmlns='jabber:iq:roster'><item jid='a@b@c'/></query>", "set"),
         stanza_err("iq", "modify", "jid-malformed", "rsj")),
    Case("roster set with an over-long name", "RFC 6121 2.3.3", "bound",
         iq("rsn", "<query xmlns='jabber:iq:roster'><item jid='a@localhost' name='%s'/></query>" % ("n" * 5000), "set"),
         stanza_err("iq", "modify", "not-acceptable", "rsn")),
    Case("roster get for another account", "RFC 6121 2.1.5, RFC 6120 8.3.3.6", "bound",
         iq("rsa", "<query xmlns='jabber:iq:roster'/>", to="romeo@localhost"),
         stanza_err("iq", "auth", "forbidden", "rsa")),
    Case("private storage in a reserved namespace", "XEP-0049 3", "bound",
         iq("ps", "<query xmlns='jabber:iq:private'><x xmlns='jabber:client'/></query>", "set"),
         stanza_err("iq", "modify", "not-acceptable", "ps")),
    Case("private storage without a child", "XEP-0049 3", "bound",
         iq("ps0", "<query xmlns='jabber:iq:private'/>", "set"),
         stanza_err("iq", "modify", "not-acceptable", "ps0")),
    Case("vCard of another account set", "XEP-0054 3.2", "bound",
         iq("vc", "<vCard xmlns='vcard-temp'><FN>x</FN></vCard>", "set", to="romeo@localhost"),
         stanza_err("iq", "auth", "forbidden", "vc")),
    Case("vCard set with xml-namespace element reads back", "XEP-0054, Namespaces in XML 3", "bound",
         lambda ctx: ctx.vcard_roundtrip(), ("done",)),
    Case("block a malformed jid", "XEP-0191 3.3", "bound",
         iq("bl", "<block xmlns='urn:xmpp:blocking'><item jid='a@b@c'/></block>", "set"),
         stanza_err("iq", "modify", "jid-malformed", "bl")),
    Case("block with no item", "XEP-0191 3.3", "bound",
         iq("bl0", "<block xmlns='urn:xmpp:blocking'/>", "set"),
         stanza_err("iq", "modify", "bad-request", "bl0")),
]


# ---- running a case ------------------------------------------------------

class Ctx:
    """One attacker connection over one transport."""

    def __init__(self, server, transport):
        self.s = server
        self.transport = transport
        self.c = None
        self.jid = None

    def connect(self):
        if self.transport == "starttls":
            self.c = Client(self.s.port)
            self.c.open()
            self.c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            self.c.read_until("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            self.c.wrap_tls()
        else:
            self.c = Client(self.s.tls_port)
            self.c.wrap_tls(alpn=["xmpp-client"])

    def reach(self, stage):
        self.connect()
        if stage in ("header", "tls"):
            return
        self.c.open()
        if stage == "stream":
            return
        got = self.c.auth_plain("mallory", "m4ll0ry")
        assert got.startswith("<success"), got
        self.c.open()
        if stage == "authed":
            return
        self.jid = self.c.bind("cat")

    def raw_send(self, data, below_tls=False):
        if isinstance(data, str):
            data = data.encode()
        try:
            if below_tls:
                # Straight into the TCP stream, under the TLS layer.
                os.write(self.c.sock.fileno(), data)
            else:
                self.c.send(data)
        except (OSError, ssl.SSLError):
            # The server may answer and close before it has read all of
            # a long bad input: what it said is still to be read.
            pass

    def wait_tcp_close(self, timeout=10.0):
        """EOF (or reset) on the TCP connection, whatever TLS says."""
        fd = self.c.sock.fileno()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                continue
            try:
                if not os.read(fd, 65536):
                    return
            except ConnectionResetError:
                return
        raise AssertionError("server did not close the connection")

    # -- SCRAM helpers for the cases that need a live exchange --
    def scram_first(self, gs2="n,,"):
        nonce = "catnonce1234567890"
        first = "n=juliet,r=" + nonce
        self.c.send(auth("SCRAM-SHA-256", b64(gs2 + first)))
        got = self.c.read_until("<challenge xmlns='%s'>[^<]*</challenge>|<failure xmlns='%s'>.*?</failure>"
                                % (SASL, SASL))
        return gs2, first, got

    def scram_downgrade(self):
        # A client that saw -PLUS offered and says "y" is being attacked
        # (RFC 5802 6): the server must refuse at once.
        self.c.send(auth("SCRAM-SHA-256", b64("y,,n=juliet,r=catnonce1234567890")))

    def scram_final_tampered(self, how):
        gs2, first, got = self.scram_first()
        server_first = base64.b64decode(re.search(">([^<]*)<", got).group(1)).decode()
        r = dict(kv.split("=", 1) for kv in server_first.split(","))["r"]
        if how == "nonce":
            final = "c=%s,r=%s,p=%s" % (b64(gs2), r + "X", b64(b"\0" * 32))
            self.c.send("<response xmlns='%s'>%s</response>" % (SASL, b64(final)))
        else:
            self.c.send("<response xmlns='%s'>@@not base64@@</response>" % SASL)

    def vcard_roundtrip(self):
        self.c.send(iq("vs", "<vCard xmlns='vcard-temp'><FN>Mal</FN><xml:x>t</xml:x>"
                       "<NOTE xml:lang='en'>n</NOTE></vCard>", "set"))
        got = self.c.read_until("<iq [^>]*id='vs'.*?(/>|</iq>)", timeout=5)
        assert "type='result'" in got, got
        self.c.send(iq("vg", "<vCard xmlns='vcard-temp'/>", "get"))
        got = self.c.read_until("<iq [^>]*id='vg'.*?</iq>", timeout=5)
        parse_ok(got)
        assert "<FN>Mal</FN>" in got and "xml:lang='en'" in got, got


def parse_ok(text):
    """The bytes parse as XML with namespaces (the stream prefix bound)."""
    p = xml.parsers.expat.ParserCreate(namespace_separator=" ")
    p.Parse("<w xmlns:stream='%s' xmlns='jabber:client'>%s</w>" % (NS_STREAMS, text), True)


def check_answer(ctx, case):
    c = ctx.c
    exp = case.expect
    kind = exp[0]
    if kind == "stream":
        rest = c.read_all_until_close(timeout=10)
        assert re.search(stream_error_re(exp[1]), rest), "want <%s/> stream error, got %r" % (exp[1], rest[-400:])
    elif kind == "sasl":
        got = c.read_until("<failure xmlns='%s'>.*?</failure>|<failure xmlns='%s'/>|<success|"
                           "<challenge|<stream:error>.*?</stream:stream>" % (SASL, SASL), timeout=10)
        assert got.startswith("<failure xmlns='%s'><%s/>" % (SASL, exp[1])), \
            "want SASL <%s/>, got %r" % (exp[1], got)
        assert not c.is_closed(timeout=0.2), "stream closed after a SASL failure"
    elif kind == "sasl-challenge-or":
        got = c.read_until("<failure xmlns='%s'>.*?</failure>|<challenge xmlns='%s'>[^<]*</challenge>|"
                           "<stream:error>.*?</stream:stream>" % (SASL, SASL), timeout=10)
        assert got.startswith("<challenge") or got.startswith(
            "<failure xmlns='%s'><%s/>" % (SASL, exp[1])), got
    elif kind == "stanza":
        _, k, etype, cond, ident = exp
        got = c.read_until("<%s [^>]*id='%s'.*?</%s>|<stream:error>.*?</stream:stream>"
                           % (k, re.escape(ident), k), timeout=10)
        if ctx.jid is not None:
            rx = ("<%s from='[^']+' id='%s' to='%s' type='error'>(.*?)<error type='%s'>"
                  "<%s xmlns='%s'/>(<text xmlns='%s'[^>]*>[^<]*</text>)?</error></%s>"
                  % (k, re.escape(ident), re.escape(ctx.jid), etype, cond, STANZAS, STANZAS, k))
        else:      # before bind: no addresses on the stream yet
            rx = ("<%s (from='[^']+' )?id='%s'( to='[^']+')? type='error'>(.*?)<error type='%s'>"
                  "<%s xmlns='%s'/>(<text xmlns='%s'[^>]*>[^<]*</text>)?</error></%s>"
                  % (k, re.escape(ident), etype, cond, STANZAS, STANZAS, k))
        assert re.fullmatch(rx, got, re.S), "want %s %s/%s for id %s, got %r" % (k, etype, cond, ident, got[:600])
        parse_ok(got)
    elif kind == "stanza-own":
        # A stanza with no 'to' is handled for the sender's own account
        # (RFC 6120 8.1.1.1): the error comes from the bare JID or from
        # no address, always to the sender (8.3.1).
        _, k, etype, cond, ident = exp
        got = c.read_until("<%s [^>]*id='%s'.*?</%s>|<stream:error>.*?</stream:stream>"
                           % (k, re.escape(ident), k), timeout=10)
        rx = ("<%s (from='%s' )?id='%s' to='%s' type='error'>(.*?)<error type='%s'>"
              "<%s xmlns='%s'/>(<text xmlns='%s'[^>]*>[^<]*</text>)?</error></%s>"
              % (k, re.escape(ctx.jid.split("/")[0]), re.escape(ident), re.escape(ctx.jid),
                 etype, cond, STANZAS, STANZAS, k))
        assert re.fullmatch(rx, got, re.S), "want %s %s/%s for id %s, got %r" % (k, etype, cond, ident, got[:600])
    elif kind == "tls-failure":
        # RFC 6120 5.4.2.2: a <failure/> in the TLS namespace, then the
        # stream ends.
        rest = c.read_all_until_close(timeout=10)
        assert rest.startswith("<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>"), rest
    elif kind == "stanza-noid":
        _, k, etype, cond = exp
        got = c.read_until("<%s [^>]*type='error'.*?</%s>|<stream:error>.*?</stream:stream>" % (k, k), timeout=10)
        assert "<error type='%s'><%s xmlns='%s'/>" % (etype, cond, STANZAS) in got, got
    elif kind == "silence":
        c.send(iq("after", "<ping xmlns='urn:xmpp:ping'/>", to="localhost"))
        got = c.read_until("<iq [^>]*id='after'[^>]*/>", timeout=10)
        assert "type='error'" not in got, (got, c.buf)
        # Everything read before the ping's answer is what the case caused.
        assert "id='%s'" % exp[1] not in got
    elif kind == "echo-wellformed":
        got = c.read_until("<message [^>]*id='%s'.*?</message>|<stream:error>.*?</stream:stream>"
                           % exp[1], timeout=10)
        assert got.startswith("<message"), got
        parse_ok(got)
        assert "type='error'" not in got, got
    elif kind == "stream-end":
        rest = c.read_all_until_close(timeout=10)
        assert rest.endswith("</stream:stream>") and "<stream:error>" not in rest, rest
    elif kind == "closed":
        ctx.wait_tcp_close()
    elif kind == "done":
        pass
    else:
        raise AssertionError("unknown expectation %r" % (exp,))


def run_case(s, transport, case):
    ctx = Ctx(s, transport)
    ctx.reach(case.stage)
    try:
        if callable(case.send):
            case.send(ctx)
        else:
            data = case.send
            if isinstance(data, str) and "{self}" in data:
                data = data.replace("{self}", ctx.jid)
            ctx.raw_send(data, below_tls=case.stage == "tls")
        check_answer(ctx, case)
    finally:
        ctx.c.close()


class Bystanders:
    """A logged-in client on each worker, and the worker pids."""

    def __init__(self, s):
        self.s = s
        self.clients = []
        for w, (user, pw) in enumerate([("juliet", "r0m30!"), ("romeo", "jul13t?")]):
            c = connect_on(s, w)
            jid = c.login(user, pw, resource="bystander")
            c.send("<presence/>")
            self.clients.append((c, jid))
        st = s.status()
        self.pids = [w["pid"] for w in st["workers"]]
        self.n = 0

    def still_fine(self, what):
        st = self.s.status()
        pids = [w["pid"] for w in st["workers"]]
        assert pids == self.pids, "%s: a worker was restarted (%s -> %s)" % (what, self.pids, pids)
        for c, jid in self.clients:
            self.n += 1
            c.send(iq("by%d" % self.n, "<ping xmlns='urn:xmpp:ping'/>", to="localhost"))
            c.read_until("<iq from='localhost' id='by%d' to='%s' type='result'/>" % (self.n, re.escape(jid)),
                         timeout=10)
        (a, ja), (b, jb) = self.clients
        self.n += 1
        a.send(msg("bym%d" % self.n, jb))
        b.read_until("<message [^>]*id='bym%d'" % self.n, timeout=10)


def catalogue(transport):
    overrides = {"c2s.max_stanza_size": "64K", "c2s.timeout": "20s",
                 "sasl.max_failures": "100",
                 # Each case fails on purpose; test_throttle.py covers bans.
                 "sasl.max_failures_per_address": "0", "sasl.max_failures_per_account": "0"}
    with Server(workers=2, users=USERS, overrides=overrides) as s:
        by = Bystanders(s)
        failures = []
        only = os.environ.get("CATALOGUE_ONLY")
        for case in CASES:
            if only and not re.search(only, case.name):
                continue
            what = "%s [%s] (%s)" % (case.name, transport, case.ref)
            try:
                run_case(s, transport, case)
            except Exception as e:  # noqa: BLE001 - collect them all
                failures.append("%s: %s" % (what, str(e)[:700]))
            try:
                by.still_fine(what)
            except Exception as e:  # noqa: BLE001
                raise AssertionError("after %s: %s\nearlier failures:\n%s"
                                     % (what, e, "\n".join(failures)))
        assert len(CASES) >= 60
        assert by.n > 0
        if failures:
            raise AssertionError("%d of %d cases failed over %s:\n  - %s"
                                 % (len(failures), len(CASES), transport, "\n  - ".join(failures)))


def test_depth_and_attribute_limits_are_settings():
    """c2s.max_depth and c2s.max_attributes bound what one stanza may
    hold, and a reload changes them without a restart."""
    def nested(c, ident, levels):
        c.send(msg(ident, c.jid, "<body>x</body>" + "<x xmlns='urn:d'>" * (levels - 1)
                   + "</x>" * (levels - 1)))

    def attrs(c, ident, n):
        c.send(msg(ident, c.jid, "<z xmlns='urn:a' %s/>" % " ".join("a%d='1'" % i for i in range(n))))

    with Server(workers=1, users=USERS[:1], config_text="c2s {\n max_depth = 8\n max_attributes = 8\n}\n") as s:
        for probe, fits, over in ((nested, 8, 9), (attrs, 8, 9)):
            c = Client(s.port)
            c.jid = c.login("juliet", "r0m30!", resource="lim")
            probe(c, "fits", fits)
            got = c.read_until("<message [^>]*id='fits'.*?</message>|<stream:error>.*?</stream:stream>")
            assert got.startswith("<message"), got
            probe(c, "over", over)
            rest = c.read_all_until_close()
            assert re.search(stream_error_re("policy-violation"), rest), rest
        s.write_config("c2s {\n max_depth = 16\n max_attributes = 16\n}\n")
        os.kill(s.master_pid, signal.SIGHUP)
        wait_for(lambda: (lambda x: x and all(w["generation"] == 2 for w in x["workers"]))(s.status()),
                 what="reloaded")
        c = Client(s.port)
        c.jid = c.login("juliet", "r0m30!", resource="lim2")
        nested(c, "deeper", 9)
        attrs(c, "wider", 9)
        c.read_until("<message [^>]*id='deeper'.*?</message>")
        c.read_until("<message [^>]*id='wider'.*?</message>")


def test_catalogue_over_starttls():
    catalogue("starttls")


def test_catalogue_over_direct_tls():
    catalogue("direct")


if __name__ == "__main__":
    run_tests([test_depth_and_attribute_limits_are_settings,
               test_catalogue_over_starttls, test_catalogue_over_direct_tls])

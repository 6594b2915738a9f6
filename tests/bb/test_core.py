"""RFC 6120 core, black box with exact XML: STARTTLS, SASL (PLAIN,
SCRAM-SHA-1/256, -PLUS with tls-server-end-point), binding, routing
between clients on the same and on different workers, server IQs and the
stanza and stream errors the server emits.  Needs XMPPD_TEST_PGCONN.
"""
import base64
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Client, Server, run_tests, stanza_id_rx, stream_error_re,  # noqa: E402
                     stream_header, tls_server_end_point, wait_for)

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
USERS = [("juliet@localhost", "r0m30!"), ("romeo@localhost", "jul13t?"),
         ("nurse@localhost", "s3cret")]


def sasl_failure(cond):
    return "<failure xmlns='%s'><%s/>" % (SASL, cond)


def stanza_error(kind, etype, cond):
    return ("<%s from='[^']*'( id='[^']*')? to='[^']*' type='error'><error type='%s'>"
            "<%s xmlns='%s'/></error></%s>" % (kind, etype, cond, STANZAS, kind))


def test_starttls_required():
    with Server(workers=1, users=USERS[:1]) as s:
        c = Client(s.port)
        feats = c.open()
        assert feats == ("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
                         "<required/></starttls></stream:features>"), feats
        # A client that tries to authenticate in clear is refused.
        c.send("<auth xmlns='%s' mechanism='PLAIN'>AGp1bGlldAB4</auth>" % SASL)
        c.read_until(sasl_failure("encryption-required"))
        feats = c.starttls()
        assert "<mechanism>SCRAM-SHA-256</mechanism>" in feats
        assert "<mechanism>PLAIN</mechanism>" in feats
        assert "<mechanism>SCRAM-SHA-256-PLUS</mechanism>" in feats
        assert "starttls" not in feats


def test_login_mechanisms():
    with Server(workers=1, users=USERS[:1]) as s:
        for mech in ("PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"):
            c = Client(s.port)
            jid = c.login("juliet", "r0m30!", resource="balcony", mech=mech)
            assert jid == "juliet@localhost/balcony", jid
            c.send("</stream:stream>")
            assert c.read_all_until_close().endswith("</stream:stream>")


def test_scram_plus_server_end_point():
    with Server(workers=1, users=USERS[:1]) as s:
        c = Client(s.port)
        c.open()
        c.starttls()
        got = c.auth_scram("juliet", "r0m30!", plus="tls-server-end-point",
                           cb_data=tls_server_end_point(c.sock))
        assert got.startswith("<success"), got
        # Wrong binding data: not-authorized.
        c = Client(s.port)
        c.open()
        c.starttls()
        got = c.auth_scram("juliet", "r0m30!", plus="tls-server-end-point",
                           cb_data=b"\0" * 32)
        assert got.startswith(sasl_failure("not-authorized")), got


def test_sasl_failures():
    with Server(workers=1, users=USERS[:1], overrides={"sasl.max_failures": "3"}) as s:
        c = Client(s.port)
        c.open()
        c.starttls()
        assert c.auth_plain("juliet", "wrong").startswith(sasl_failure("not-authorized"))
        assert c.auth_scram("juliet", "r0m30!", tamper_proof=True).startswith(
            sasl_failure("not-authorized"))
        # Mechanism negotiation is not a password guess: it does not count.
        c.send("<auth xmlns='%s' mechanism='DIGEST-MD5'/>" % SASL)
        c.read_until(sasl_failure("invalid-mechanism"))
        assert not c.is_closed(timeout=0.3)
        # The third counted failure closes the stream with policy-violation.
        assert c.auth_scram("juliet", "nope", hash_name="sha1").startswith(
            sasl_failure("not-authorized"))
        rest = c.read_all_until_close()
        assert re.search(stream_error_re("policy-violation"), rest), rest

        c = Client(s.port)
        c.open()
        c.starttls()
        c.send("<auth xmlns='%s' mechanism='PLAIN'>!!!notbase64</auth>" % SASL)
        c.read_until(sasl_failure("incorrect-encoding"))
        c.send("<auth xmlns='%s' mechanism='SCRAM-SHA-256'/>" % SASL)
        c.read_until("<challenge xmlns='%s'></challenge>|<challenge xmlns='%s'/>" % (SASL, SASL))
        c.send("<abort xmlns='%s'/>" % SASL)
        c.read_until(sasl_failure("aborted"))
        # authzid of another account
        got = c.auth_plain("juliet", "r0m30!", authzid="romeo@localhost")
        assert got.startswith(sasl_failure("invalid-authzid")), got
        # malformed SCRAM client-first
        c.send("<auth xmlns='%s' mechanism='SCRAM-SHA-1'>%s</auth>"
               % (SASL, base64.b64encode(b"x,,n=juliet,r=abc").decode()))
        got = c.read_until("<failure xmlns='%s'>.*?</failure>" % SASL)
        assert got.startswith(sasl_failure("malformed-request")), got


def test_unknown_user_looks_like_wrong_password():
    with Server(workers=1, users=USERS[:1]) as s:
        c = Client(s.port)
        c.open()
        c.starttls()
        assert c.auth_scram("nobody", "x").startswith(sasl_failure("not-authorized"))


def test_stanza_before_auth_and_bind():
    with Server(workers=1, users=USERS[:1]) as s:
        c = Client(s.port)
        c.open()
        c.starttls()
        c.send("<message to='romeo@localhost'><body>hi</body></message>")
        rest = c.read_all_until_close()
        assert re.search(stream_error_re("not-authorized"), rest), rest
        c = Client(s.port)
        c.open()
        c.starttls()
        assert c.auth_plain("juliet", "r0m30!").startswith("<success")
        c.open()
        c.send("<message to='romeo@localhost'><body>hi</body></message>")
        rest = c.read_all_until_close()
        assert re.search(stream_error_re("not-authorized"), rest), rest


def two_clients(s, res_a="a", res_b="b"):
    a = Client(s.port)
    ja = a.login("juliet", "r0m30!", resource=res_a)
    b = Client(s.port)
    jb = b.login("romeo", "jul13t?", resource=res_b)
    for c in (a, b):
        c.send("<presence/>")
    return a, ja, b, jb


def slot_of(s, n_expected):
    """Per-worker connection counts once n_expected are counted."""
    return wait_for(lambda: (lambda st: [w["connections"] for w in st["workers"]]
                             if sum(w["connections"] for w in st["workers"]) == n_expected
                             else None)(s.status()), what="connection counts")


def exchange(a, ja, b, jb):
    # full JID
    a.send("<message to='%s' type='chat' id='m1'><body>Wherefore art thou?</body></message>" % jb)
    got = b.read_until("<message [^>]*id='m1'[^>]*>.*?</message>")
    assert re.fullmatch(re.escape("<message to='%s' type='chat' id='m1' from='%s'><body>"
                                  "Wherefore art thou?</body>" % (jb, ja))
                        + stanza_id_rx(jb.split("/")[0]) + "</message>", got), got
    # bare JID, after presence: highest priority resource
    time.sleep(0.1)
    b.send("<message to='juliet@localhost' type='chat' id='m2'><body>Here &amp; now</body></message>")
    got = a.read_until("<message [^>]*id='m2'[^>]*>.*?</message>")
    assert "from='%s'" % jb in got and "<body>Here &amp; now</body>" in got, got
    # IQ round trip between clients
    a.send("<iq to='%s' type='get' id='v1'><query xmlns='jabber:iq:version'/></iq>" % jb)
    got = b.read_until("<iq [^>]*id='v1'[^>]*>.*?</iq>")
    assert "from='%s'" % ja in got, got
    b.send("<iq to='%s' type='result' id='v1'><query xmlns='jabber:iq:version'><name>b</name></query></iq>" % ja)
    got = a.read_until("<iq [^>]*id='v1'[^>]*>.*?</iq>")
    assert "<name>b</name>" in got and "from='%s'" % jb in got, got


def test_routing_across_workers():
    """Clients forced onto different workers (one open connection holds a
    worker's place in the SO_REUSEPORT hash; we keep connecting until the
    two land on different workers) still talk."""
    with Server(workers=2, users=USERS) as s:
        for attempt in range(20):
            a, ja, b, jb = two_clients(s, "a%d" % attempt, "b%d" % attempt)
            counts = slot_of(s, 2)
            if counts == [1, 1]:
                break
            a.close()
            b.close()
            wait_for(lambda: sum(w["connections"] for w in s.status()["workers"]) == 0)
        else:
            raise AssertionError("could not place two clients on two workers")
        exchange(a, ja, b, jb)
        st = s.status()
        assert all(w["stanzas_out"] > 0 for w in st["workers"]), st


def test_routing_same_worker():
    with Server(workers=1, users=USERS) as s:
        a, ja, b, jb = two_clients(s)
        exchange(a, ja, b, jb)


def test_server_iqs():
    with Server(workers=1, users=USERS[:1]) as s:
        c = Client(s.port)
        jid = c.login("juliet", "r0m30!", resource="r")
        c.send("<iq to='localhost' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        got = c.read_until("<iq [^>]*id='p1'[^>]*/>")
        assert got == "<iq from='localhost' id='p1' to='%s' type='result'/>" % jid, got
        c.send("<iq to='localhost' type='get' id='d1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        got = c.read_until("<iq [^>]*id='d1'.*?</iq>")
        assert "<identity category='server' type='im' name='xmppd'/>" in got, got
        assert "<feature var='urn:xmpp:ping'/>" in got
        c.send("<iq type='get' id='t1' to='localhost'><time xmlns='urn:xmpp:time'/></iq>")
        got = c.read_until("<iq [^>]*id='t1'.*?</iq>")
        assert re.search("<tzo>\\+00:00</tzo><utc>\\d{4}-\\d\\d-\\d\\dT[0-9:.]+Z</utc>", got), got
        c.send("<iq type='get' id='ver' to='localhost'><query xmlns='jabber:iq:version'/></iq>")
        got = c.read_until("<iq [^>]*id='ver'.*?</iq>")
        assert "<name>xmppd</name>" in got, got
        c.send("<iq type='get' id='u1' to='localhost'><query xmlns='urn:example:nothing'/></iq>")
        got = c.read_until("<iq [^>]*id='u1'.*?</iq>")
        assert got == ("<iq from='localhost' id='u1' to='%s' type='error'><error type='cancel'>"
                       "<service-unavailable xmlns='%s'/></error></iq>" % (jid, STANZAS)), got
        # bad-request: IQ get with two payloads; without a payload
        c.send("<iq type='get' id='b1' to='localhost'><ping xmlns='urn:xmpp:ping'/><x xmlns='y'/></iq>")
        got = c.read_until("<iq [^>]*id='b1'.*?</iq>")
        assert "<bad-request xmlns='%s'/>" % STANZAS in got and "type='modify'" in got, got
        c.send("<iq type='set' id='b2' to='localhost'/>")
        got = c.read_until("<iq [^>]*id='b2'.*?</iq>")
        assert "<bad-request xmlns='%s'/>" % STANZAS in got, got


def test_stanza_errors():
    with Server(workers=1, users=USERS) as s:
        c = Client(s.port)
        jid = c.login("juliet", "r0m30!", resource="r")
        # A message to an account that does not exist (an offline full JID
        # of one that does is stored: test_im.py).
        c.send("<message to='nobody@localhost/nowhere' type='chat' id='x1'><body>hi</body></message>")
        got = c.read_until("<message [^>]*id='x1'.*?</message>")
        assert re.fullmatch(stanza_error("message", "cancel", "service-unavailable"), got), got
        c.send("<iq to='romeo@localhost/nowhere' type='get' id='x2'><ping xmlns='urn:xmpp:ping'/></iq>")
        got = c.read_until("<iq [^>]*id='x2'.*?</iq>")
        assert got == ("<iq from='romeo@localhost/nowhere' id='x2' to='%s' type='error'>"
                       "<error type='cancel'><service-unavailable xmlns='%s'/></error></iq>"
                       % (jid, STANZAS)), got
        c.send("<message to='someone@example.net' id='x3'><body>hi</body></message>")
        got = c.read_until("<message [^>]*id='x3'.*?</message>")
        assert re.fullmatch(stanza_error("message", "cancel", "remote-server-not-found"), got), got
        c.send("<message to='a@b@c' id='x4'><body>hi</body></message>")
        got = c.read_until("<message [^>]*id='x4'.*?</message>")
        assert re.fullmatch(stanza_error("message", "modify", "jid-malformed"), got), got
        c.send("<presence type='bogus' id='x5'/>")
        got = c.read_until("<presence [^>]*id='x5'.*?</presence>")
        assert "<bad-request xmlns='%s'/>" % STANZAS in got, got
        # Spoofed from: invalid-from stream error.
        c.send("<message from='romeo@localhost/x' to='juliet@localhost'><body>hi</body></message>")
        rest = c.read_all_until_close()
        assert re.search(stream_error_re("invalid-from"), rest), rest


def test_resource_conflict():
    with Server(workers=2, users=USERS[:1]) as s:
        a = Client(s.port)
        a.login("juliet", "r0m30!", resource="same")
        b = Client(s.port)
        jb = b.login("juliet", "r0m30!", resource="same")
        assert jb == "juliet@localhost/same"
        rest = a.read_all_until_close()
        assert re.search(stream_error_re("conflict"), rest), rest
        b.send("<iq to='localhost' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        b.read_until("<iq from='localhost' id='p' to='juliet@localhost/same' type='result'/>")


def test_direct_tls():
    with Server(workers=1, users=USERS[:1]) as s:
        c = Client(s.tls_port)
        c.wrap_tls(alpn=["xmpp-client"])
        assert c.sock.selected_alpn_protocol() == "xmpp-client"
        feats = c.open()
        assert "starttls" not in feats and "<mechanism>PLAIN</mechanism>" in feats
        assert c.auth_scram("juliet", "r0m30!").startswith("<success")
        c.open()
        assert c.bind("d") == "juliet@localhost/d"


def test_generated_resource():
    with Server(workers=1, users=USERS[:1]) as s:
        c = Client(s.port)
        jid = c.login("juliet", "r0m30!")
        assert re.fullmatch("juliet@localhost/[0-9a-f]{16}", jid), jid


def test_limits_and_timeouts():
    with Server(workers=1, users=USERS[:1],
                overrides={"c2s.timeout": "1s", "c2s.max_stanza_size": "10K",
                           "c2s.idle_timeout": "1s"}) as s:
        # No authentication within c2s.timeout: connection-timeout.
        c = Client(s.port)
        c.open()
        t0 = time.monotonic()
        rest = c.read_all_until_close(timeout=5)
        assert re.search(stream_error_re("connection-timeout"), rest), rest
        assert time.monotonic() - t0 < 4
        # A stanza over c2s.max_stanza_size: policy-violation.
        c = Client(s.port)
        jid = c.login("juliet", "r0m30!", resource="big")
        c.send("<message to='juliet@localhost'><body>%s</body></message>" % ("x" * 12000))
        rest = c.read_all_until_close()
        assert re.search(stream_error_re("policy-violation"), rest), rest
        # An unfinished start tag is buffered by the parser: it counts too,
        # before authentication as well as after.
        c = Client(s.port)
        c.login("juliet", "r0m30!", resource="tag")
        c.send("<message to='juliet@localhost' a='" + "x" * 12000)
        rest = c.read_all_until_close()
        assert re.search(stream_error_re("policy-violation"), rest), rest
        c = Client(s.port)
        c.send("<?xml version='1.0'?><stream:stream to='localhost' a='" + "y" * 12000)
        rest = c.read_all_until_close()
        assert re.search(stream_error_re("policy-violation"), rest), rest
        # Unknown top-level element: unsupported-stanza-type.
        c = Client(s.port)
        c.login("juliet", "r0m30!", resource="odd")
        c.send("<foo/>")
        rest = c.read_all_until_close()
        assert re.search(stream_error_re("unsupported-stanza-type"), rest), rest
        # Idle client: the server pings; an answer keeps it, silence drops it.
        c = Client(s.port)
        jid = c.login("juliet", "r0m30!", resource="idle")
        got = c.read_until("<iq from='localhost' id='[^']+' to='%s' type='get'>"
                           "<ping xmlns='urn:xmpp:ping'/></iq>" % re.escape(jid), timeout=5)
        pid = re.search("id='([^']+)'", got).group(1)
        c.send("<iq to='localhost' id='%s' type='result'/>" % pid)
        c.send(" ")   # whitespace keepalive is fine between stanzas
        c.read_until("<ping xmlns='urn:xmpp:ping'/>", timeout=5)
        rest = c.read_all_until_close(timeout=40)
        assert re.search(stream_error_re("connection-timeout"), rest), rest


def test_bind_rules():
    # 16 sessions of one account fill the table: no per-account limit.
    with Server(workers=1, users=USERS[:1], overrides={"session_table_size": "16",
                                                       "c2s.max_sessions_per_account": "0"}) as s:
        c = Client(s.port)
        jid = c.login("juliet", "r0m30!", resource="one")
        c.send("<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
        c.read_until("<iq type='result' id='s1'/>")
        c.send("<iq type='set' id='b2'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
               "<resource>two</resource></bind></iq>")
        got = c.read_until("<iq [^>]*id='b2'.*?</iq>")
        assert "<not-allowed xmlns='%s'/>" % STANZAS in got, got
        # A resource that resourceprep refuses: bad-request.
        d = Client(s.port)
        d.open()
        d.starttls()
        assert d.auth_plain("juliet", "r0m30!").startswith("<success")
        d.open()
        d.send("<iq type='set' id='b3'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
               "<resource>bad\ue000private</resource></bind></iq>")
        got = d.read_until("<iq [^>]*id='b3'.*?</iq>")
        assert "<bad-request xmlns='%s'/>" % STANZAS in got, got
        # A full session table: resource-constraint for the next bind.
        clients = [c]
        for i in range(15):
            x = Client(s.port)
            x.login("juliet", "r0m30!", resource="r%d" % i)
            clients.append(x)
        y = Client(s.port)
        y.open()
        y.starttls()
        assert y.auth_plain("juliet", "r0m30!").startswith("<success")
        y.open()
        y.send("<iq type='set' id='b4'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        got = y.read_until("<iq [^>]*id='b4'.*?</iq>")
        assert "<error type='wait'><resource-constraint xmlns='%s'/>" % STANZAS in got, got


def test_idle_stream_parks_and_resumes():
    """An idle stream frees its parser (2 s of silence) and gets a new
    one, primed with its stream header, when bytes come again: what the
    client sees must not change, whatever prefix its header used."""
    with Server(workers=1, users=USERS[:2]) as s:
        a = Client(s.port)
        ja = a.login("juliet", "r0m30!", resource="idle")
        b = Client(s.port)
        b.open()
        b.starttls()
        assert b.auth_plain("romeo", "jul13t?").startswith("<success")
        # A header with another prefix for the streams namespace.
        b.send("<s:stream xmlns:s='http://etherx.jabber.org/streams' "
               "xmlns='jabber:client' to='localhost' version='1.0'>")
        b.read_until("</stream:features>")
        jb = b.bind("prefixed")
        for c in (a, b):
            c.send("<presence/>")
        wait_for(lambda: "idle streams parked" in s.log_text(), timeout=6,
                 what="parsers parked")
        time.sleep(1.2)
        # A stanza split over two writes after the pause.
        b.send("<message to='%s' type='chat' id='k1'><bo" % ja)
        time.sleep(0.2)
        b.send("dy>after the pause</body></message>")
        got = a.read_until("<message [^>]*id='k1'.*?</message>")
        assert "<body>after the pause</body>" in got and "from='%s'" % jb in got, got
        a.send("<iq to='localhost' type='get' id='p9'><ping xmlns='urn:xmpp:ping'/></iq>")
        a.read_until("<iq from='localhost' id='p9' to='%s' type='result'/>" % ja)
        # Restricted XML is still refused after a resume.
        time.sleep(3.2)
        b.send("<!-- no -->")
        rest = b.read_all_until_close()
        assert re.search(stream_error_re("restricted-xml"), rest), rest


def test_stream_error_on_empty_root_closes_once():
    """A stream error raised by a root element that is also its own end
    (a self-closing stream header, or a stanza where the header should
    be) closes our stream once: the client gets well-formed XML, not a
    second </stream:stream> (found by fuzz/fuzz_xml.c)."""
    with Server(workers=1) as s:
        for send, cond in [
            (stream_header(to="nowhere.example")[:-1] + "/>", "host-unknown"),
            ("<?xml version='1.0'?><presence xmlns='jabber:client'/>",
             "invalid-namespace"),
        ]:
            c = Client(s.port)
            c.send(send)
            rest = c.read_all_until_close(timeout=10)
            c.close()
            assert re.search(stream_error_re(cond), rest), rest
            assert rest.count("</stream:stream>") == 1 and \
                rest.endswith("</stream:stream>"), rest


if __name__ == "__main__":
    run_tests([test_starttls_required, test_login_mechanisms,
               test_scram_plus_server_end_point, test_sasl_failures,
               test_unknown_user_looks_like_wrong_password,
               test_stanza_before_auth_and_bind, test_routing_same_worker,
               test_routing_across_workers, test_server_iqs, test_stanza_errors,
               test_resource_conflict, test_direct_tls, test_generated_resource,
               test_limits_and_timeouts, test_bind_rules,
               test_idle_stream_parks_and_resumes,
               test_stream_error_on_empty_root_closes_once])

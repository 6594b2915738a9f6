"""Hostile-client tests of issue 11's extensions (XEP-0313 MAM, XEP-0280
carbons, XEP-0352 CSI with XEP-0198): each one a bug found in review,
asserting what the attacker or the user sees on the wire.
Needs XMPPD_TEST_PGCONN.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, run_tests  # noqa: E402
from harness import Client, wait_for  # noqa: E402
from imlib import connect_on  # noqa: E402
from test_csi import INACTIVE, counter  # noqa: E402
from test_sm import authed, resume, sm_login  # noqa: E402
from test_mam import MAM, USERS, chat, error_xml, fin_xml, form, login, prefs, prefs_xml, \
    query, received, stanza_id_of  # noqa: E402


def test_mam_repeated_ids_field():
    """A form naming the ids field more than once (XEP-0004: a field's
    var is unique in a form) is bad-request; it used to write past the
    ids array (heap overflow in the worker)."""
    with Server(workers=1, users=USERS) as s:
        j = login(s, "juliet", "r")
        r = login(s, "romeo", "o")
        chat(r, "juliet@localhost", "m1", "one")
        sid = stanza_id_of(received(j, "m1"), "juliet@localhost")
        # 1000 ids (the most one field may name), the same ones again
        # and again: well under c2s.max_stanza_size
        values = "".join("<value>%d</value>" % (i % 9 + 1) for i in range(1000))
        x = ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' "
             "type='hidden'><value>%s</value></field>" % MAM +
             "".join("<field var='ids'>%s</field>" % values for _ in range(12)) +
             "</x>")
        msgs, ids, iq, iq_id = query(j, x)
        assert msgs == [] and iq == error_xml(j, iq_id, "modify", "bad-request"), (msgs, iq)
        # the same with 'with' twice (first a full JID, then another bare
        # JID): refused, not a mix of both
        x2 = form(**{"with": "romeo@localhost/o"})[:-len("</x>")] + \
            "<field var='with'><value>nurse@localhost</value></field></x>"
        msgs, ids, iq, iq_id = query(j, x2)
        assert msgs == [] and iq == error_xml(j, iq_id, "modify", "bad-request"), (msgs, iq)
        # the worker is alive and the archive answers
        msgs, ids, iq, iq_id = query(j, form(ids=[sid]))
        assert ids == [sid] and iq == fin_xml(j, iq_id, ids, True), (ids, iq)


def csi_held_then_resume(workers, resume_on, drop):
    """What an inactive session held when it is resumed is written after
    <resumed/>, in order, before what comes next (XEP-0352 + XEP-0198):
    whether its TCP connection dropped first (detached; nothing else came
    for it meanwhile) or is still open (a phone that changed networks:
    the server has not noticed yet).  It used to be dropped (presence) or
    rerouted behind later messages (chat states)."""
    with Server(workers=workers, users=USERS) as s:
        r = Client(s.port)
        rj = r.login("romeo", "pw2", resource="garden")
        j = connect_on(s, 0) if workers > 1 else None
        j, jj, smid = sm_login(s, "juliet", "balcony", client=j)
        j.send(INACTIVE)
        held0 = counter(s, "xmppd_csi_held_stanzas")
        # held: a directed presence and a chat state
        r.send("<presence to='%s' id='p1'><show>away</show></presence>" % jj)
        r.send("<message to='%s' id='c1' type='chat'><composing "
               "xmlns='http://jabber.org/protocol/chatstates'/></message>" % jj)
        wait_for(lambda: counter(s, "xmppd_csi_held_stanzas") >= held0 + 2,
                 what="presence and chat state held")
        if drop:
            j.sock.close()
            wait_for(lambda: "kept for resumption" in s.log_text(), what="detached")
        n = connect_on(s, resume_on) if workers > 1 else Client(s.port)
        authed(n, "juliet")
        got = resume(n, smid, 0)
        assert got == "<resumed xmlns='urn:xmpp:sm:3' h='0' previd='%s'/>" % smid, got
        r.send("<message to='%s' id='m2' type='chat'><body>later</body></message>" % jj)
        got = n.read_until("^.*?<message [^>]*id='m2'.*?</message>")
        assert re.findall("<(presence|message) [^>]*id='(\\w+)'", got) == \
            [("presence", "p1"), ("message", "c1"), ("message", "m2")], got
        assert ("<presence to='%s' id='p1' from='%s'><show>away</show></presence>"
                % (jj, rj)) in got, got
        assert "<error" not in r.buf.decode()


def test_csi_held_kept_across_resumption():
    csi_held_then_resume(1, 0, drop=True)


def test_csi_held_kept_across_resumption_other_worker():
    csi_held_then_resume(2, 1, drop=True)


def test_csi_held_kept_resuming_over_open_connection():
    csi_held_then_resume(1, 0, drop=False)


def test_csi_held_kept_resuming_over_open_connection_other_worker():
    csi_held_then_resume(2, 1, drop=False)


def test_blocked_contact_cannot_wrap_in_fake_carbon():
    """XEP-0191: a blocked contact's message is not delivered.  Wrapped
    in a XEP-0280 <received/> (which only the account's own bare JID may
    send) it used to pass: the block looked only at the forwarded
    message's 'from', which the sender writes."""
    with Server(workers=1, users=USERS) as s:
        j = login(s, "juliet", "r")
        r = login(s, "romeo", "o")
        n = login(s, "nurse", "n")
        j.send("<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'>"
               "<item jid='romeo@localhost'/></block></iq>")
        j.read_until("<iq [^>]*id='b1'[^>]*/>")
        fake = ("<message to='%s' id='fake' type='chat'><received xmlns='urn:xmpp:carbons:2'>"
                "<forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' "
                "from='nurse@localhost/n' to='%s' type='chat'><body>meet me</body>"
                "</message></forwarded></received></message>" % (j.jid, j.jid))
        r.send(fake)
        got = r.read_until("<message [^>]*id='fake'[^>]*type='error'.*?</message>")
        assert "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>" in got, got
        # the same to the bare JID
        r.send(fake.replace("to='%s' id='fake'" % j.jid, "to='juliet@localhost' id='fake'"))
        got = r.read_until("<message [^>]*id='fake'[^>]*type='error'.*?</message>")
        chat(n, j.jid, "mark", "after")
        got = j.read_until("^.*?<message [^>]*id='mark'.*?</message>")
        assert "fake" not in got and "meet me" not in got, got


def test_ctl_expire_far_future_date():
    """`xmppctl archive expire --before DATE` with a date past what an
    archive id can hold (2109) deletes every message; the cutoff used to
    overflow (ms << 21 in bigint): nothing deleted for 2200, only the
    messages before 2020 for 2300, while saying 'older than 2300'."""
    with Server(workers=1, users=USERS) as s:
        j = login(s, "juliet", "r")
        r = login(s, "romeo", "o")
        for i in range(2):
            chat(j, "romeo@localhost/o", "c%d" % i)
            received(r, "c%d" % i)

        def archived():
            return s.db.psql("SELECT count(*) FROM mam_messages",
                             conninfo=s.db.conninfo).strip() == "4"
        wait_for(archived, what="4 rows archived")
        res = s.ctl_config("archive", "expire", "--before", "2200-01-01")
        assert res.stdout == "4 messages older than 2200-01-01 deleted from the archives\n", \
            res.stdout
        for i in range(2, 4):
            chat(j, "romeo@localhost/o", "c%d" % i)
            received(r, "c%d" % i)
        wait_for(archived, what="4 rows archived again")
        res = s.ctl_config("archive", "expire", "--before", "2300-06-01T00:00:00Z")
        assert res.stdout == ("4 messages older than 2300-06-01T00:00:00Z deleted from the "
                              "archives\n"), res.stdout
        # a date before 1970 deletes nothing
        res = s.ctl_config("archive", "expire", "--before", "1900-01-01")
        assert res.stdout == "0 messages older than 1900-01-01 deleted from the archives\n", \
            res.stdout


def test_mam_prefs_jid_limit():
    """Archive preferences name at most mam.max_prefs_jids JIDs (each
    archived message is checked against them in PostgreSQL): a set with
    more is refused with <not-acceptable/> and the stored preferences
    stay.  There was no limit but the stanza size (thousands of JIDs,
    slowing every archive batch of the worker)."""
    with Server(workers=1, users=USERS, overrides={"mam.max_prefs_jids": "3"}) as s:
        j = login(s, "juliet", "r")
        assert prefs(j, "p1", "always", always=["a@x", "b@x"], never=["c@x"]) == \
            prefs_xml(j, "p1", "always", always=["a@x", "b@x"], never=["c@x"])
        got = prefs(j, "p2", "never", always=["a@x", "b@x"], never=["c@x", "d@x"])
        assert got == error_xml(j, "p2", "cancel", "not-acceptable"), got
        assert "archive preferences of juliet@localhost refused: 4 JIDs" in s.log_text()
        assert prefs(j, "p3") == prefs_xml(j, "p3", "always", always=["a@x", "b@x"],
                                           never=["c@x"])
        # thousands, well under the stanza size: refused as well
        many = ["u%d@example.org" % i for i in range(4000)]
        got = prefs(j, "p4", "roster", always=many)
        assert got == error_xml(j, "p4", "cancel", "not-acceptable"), got


def resumed_session_sends(workers, resume_on):
    """A session resumed with XEP-0198 is filtered like one that bound:
    what it sends is archived for it (XEP-0313) and copied to its
    account's carbons-enabled sessions (XEP-0280) although it did not
    enable carbons itself.  Resumption never ran the bind-time hooks:
    both were missing after it."""
    with Server(workers=workers, users=USERS) as s:
        r = Client(s.port)
        rj = r.login("romeo", "pw2", resource="garden")
        phone = Client(s.port)
        phone.login("juliet", "pw1", resource="phone")
        phone.send("<iq type='set' id='c1'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
        phone.read_until("<iq [^>]*id='c1'[^>]*type='result'/>")
        j = connect_on(s, 0) if workers > 1 else None
        j, jj, smid = sm_login(s, "juliet", "balcony", client=j)
        j.sock.close()
        wait_for(lambda: "kept for resumption" in s.log_text(), what="detached")
        n = connect_on(s, resume_on) if workers > 1 else Client(s.port)
        authed(n, "juliet")
        got = resume(n, smid, 0)
        assert got.startswith("<resumed "), got
        n.send("<message to='%s' id='s1' type='chat'><body>after resuming</body></message>" % rj)
        got = r.read_until("<message [^>]*id='s1'.*?</message>")
        # the carbon for the phone, naming the sender's archive id
        got = phone.read_until("<message from='juliet@localhost' [^>]*><sent "
                               "xmlns='urn:xmpp:carbons:2'>.*?</sent></message>")
        assert "id='s1'" in got and "<body>after resuming</body>" in got, got
        sid = stanza_id_of(got, "juliet@localhost")
        # and the archive has it
        n.jid, n.bare = jj, "juliet@localhost"

        def archived():
            _, ids, _, _ = query(n)
            return ids or None
        assert wait_for(archived, what="archived") == [sid]


def test_resumed_session_archived_and_copied():
    resumed_session_sends(1, 0)


def test_resumed_session_archived_and_copied_other_worker():
    resumed_session_sends(2, 1)


def test_mam_archives_private_messages():
    """A message with XEP-0280 <private/> makes no carbons, but it is a
    conversation message like any other: archived for its sender and its
    recipient (XEP-0313 section 5.1.1), with the same stanza-id as the
    message delivered.  Any carbons-namespace child used to keep it out of
    both archives (only <sent/> and <received/> wrappers are copies)."""
    with Server(workers=1, users=USERS) as s:
        j = login(s, "juliet", "r")
        r = login(s, "romeo", "o")
        chat(j, "romeo@localhost", "p1", "private words",
             "<private xmlns='urn:xmpp:carbons:2'/>")
        got = received(r, "p1")
        sid = stanza_id_of(got, "romeo@localhost")

        def archived(c, n):
            def f():
                _, ids, _, _ = query(c)
                return ids if len(ids) >= n else None
            return f
        ids = wait_for(archived(r, 1), what="archived for romeo")
        assert ids == [sid], ids
        ids = wait_for(archived(j, 1), what="archived for juliet")
        assert len(ids) == 1, ids


def test_mam_impossible_dates():
    """start/end naming a day the month does not have (XEP-0082 dates are
    xs:dateTime: February 31st is not one) are bad-request; they used to
    be taken as a later day (timegm normalizes 2024-02-31 to March 2nd),
    so a client got a page for a range it never asked for.  February
    29th of a leap year is a date."""
    with Server(workers=1, users=USERS) as s:
        j = login(s, "juliet", "r")
        for field, when in (("start", "2024-02-31T00:00:00Z"),
                            ("end", "2023-02-29T10:00:00Z"),
                            ("start", "2024-04-31T23:59:59.999+02:00"),
                            ("end", "2024-06-31T00:00:00Z")):
            msgs, ids, iq, iq_id = query(j, form(**{field: when}))
            assert msgs == [] and iq == error_xml(j, iq_id, "modify", "bad-request"), \
                (when, msgs, iq)
        msgs, ids, iq, iq_id = query(j, form(start="2024-02-29T00:00:00Z"))
        assert ids == [] and iq == fin_xml(j, iq_id, [], True), iq


if __name__ == "__main__":
    run_tests([test_mam_impossible_dates, test_mam_archives_private_messages,
               test_resumed_session_archived_and_copied,
               test_resumed_session_archived_and_copied_other_worker,
               test_mam_prefs_jid_limit, test_ctl_expire_far_future_date,
               test_blocked_contact_cannot_wrap_in_fake_carbon,
               test_mam_repeated_ids_field, test_csi_held_kept_across_resumption,
               test_csi_held_kept_across_resumption_other_worker,
               test_csi_held_kept_resuming_over_open_connection,
               test_csi_held_kept_resuming_over_open_connection_other_worker])

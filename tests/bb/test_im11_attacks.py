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
from test_mam import MAM, USERS, chat, error_xml, fin_xml, form, login, query, \
    received, stanza_id_of  # noqa: E402


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


if __name__ == "__main__":
    run_tests([test_mam_repeated_ids_field])

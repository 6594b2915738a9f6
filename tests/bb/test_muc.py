"""XEP-0045 Multi-User Chat (1.35), black box with exact XML, section by
section with the XEP's examples as the checklist (references give the
section's title where 7.2's numbering moved between versions): entering a
room (the order of what the new occupant gets, the status codes), the
errors on entry, history requests, groupchat reflection with the room's
XEP-0359 stanza-id, private messages, nickname changes, presence
changes, exit, subject, kick, ban, voice, the member/admin/owner lists,
the configuration form, reserved rooms, destruction with an alternate
venue, disco#info and disco#items of the service and of a room,
mediated invitations and declines, XEP-0249 direct invitations,
XEP-0410 self-ping, XEP-0421 occupant ids, the room's own archive
(XEP-0313 with XEP-0059 paging), messages from non-occupants, and the
muc.* limits.  Needs XMPPD_TEST_PGCONN.

"Exact XML" here is exact up to the order of attributes and of sibling
elements, which carry no meaning in XMPP: every element, attribute and
text must be there and nothing else (see X below); ids, timestamps and
occupant ids are wildcards, checked by their own tests.

Where the XEP leaves a behaviour optional, the test takes what Prosody
0.12 and ejabberd do and says so.  XMPPD_TEST_AGAINST=prosody runs the
same file against Debian's Prosody 0.12 with its MUC component
(clients/prosody.py): a development aid to tell a wrong expectation from
a bug in xmppd, not part of the suite; the tests of xmppd's own settings
(muc.*) are skipped there.
"""
import os
import re
import signal
import sys
import time
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "clients"))
from harness import Client, Server, run_tests, stream_header, wait_for  # noqa: E402
from imlib import IM, PW, STANZAS, checked, connect_on  # noqa: E402

AGAINST = os.environ.get("XMPPD_TEST_AGAINST", "xmppd")
PROSODY = AGAINST == "prosody"

SERVICE = "conference.localhost"
NS_MUC = "http://jabber.org/protocol/muc"
NS_USER = NS_MUC + "#user"
NS_ADMIN = NS_MUC + "#admin"
NS_OWNER = NS_MUC + "#owner"
NS_DATA = "jabber:x:data"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_SID = "urn:xmpp:sid:0"
NS_OID = "urn:xmpp:occupant-id:0"
NS_DELAY = "urn:xmpp:delay"
NS_MAM = "urn:xmpp:mam:2"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_PING = "urn:xmpp:ping"
NS_CONF = "jabber:x:conference"
ROOMCONFIG = NS_MUC + "#roomconfig"
ROOMINFO = NS_MUC + "#roominfo"

# xmppd's settings for the limits (lib/config.c rows of the MUC work).
SET_MAX_OCCUPANTS = "muc.max_occupants"
SET_MSG_RATE = "muc.messages_per_minute"
SET_MAX_ROOMS = "muc.max_rooms"
SET_MAX_HISTORY = "muc.history_max"

USERS = [("%s@localhost" % u, p) for u, p in PW.items()]
# XEP-0421: every presence and message from an occupant carries it.
# (Prosody 0.12 leaves it out of some presences, e.g. the 303 one of a
# nick change: optional when running against it)
OID = "<occupant-id%s xmlns='%s' id='@@'/>" % (" _opt='1'" if PROSODY else "", NS_OID)
# XEP-0359: the room stamps its own id on every groupchat message it
# archives (XEP-0313 section 5.1.1 with a MUC archive).
SID = "<stanza-id xmlns='%s' id='@@' by='%%s'/>" % NS_SID

XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"


# ---- matching XML trees ------------------------------------------------------
#
# Templates are XML with three wildcards in attribute values and text:
#   @@     any text (possibly empty)
#   @TS@   an XEP-0082 timestamp
#   @?@    (a whole attribute value) this attribute may be absent
#   @?@v   this attribute may be absent; when present, it matches v
# and an attribute _opt='1' on an element: that element may be absent.

def _parse(text):
    try:
        return ET.fromstring("<w xmlns='jabber:client'>%s</w>" % text)[0]
    except ET.ParseError:
        return None


def _vrx(t):
    parts = re.split(r"(@@|@TS@)", t)
    return re.compile("".join(".*" if p == "@@" else _TS if p == "@TS@"
                              else re.escape(p) for p in parts), re.S)


def _attrs_match(t, a):
    aa = dict(a.attrib)
    if PROSODY:
        aa.pop(XML_LANG, None)
    for k, v in t.attrib.items():
        if k == "_opt":
            continue
        if v.startswith("@?@"):
            got = aa.pop(k, None)
            if got is not None and v != "@?@" and not _vrx(v[3:]).fullmatch(got):
                return False
            continue
        if k not in aa or not _vrx(v).fullmatch(aa.pop(k)):
            return False
    return not aa


def _same(t, a):
    if t.tag != a.tag or not _attrs_match(t, a):
        return False
    if not _vrx((t.text or "").strip()).fullmatch((a.text or "").strip()):
        return False
    return _children(list(t), list(a))


def _children(ts, avail):
    """Every template child matches its own actual child (any order);
    optional ones may match none; no actual child is left over."""
    if not ts:
        return not avail
    first, rest = ts[0], ts[1:]
    for i, c in enumerate(avail):
        if _same(first, c) and _children(rest, avail[:i] + avail[i + 1:]):
            return True
    return first.attrib.get("_opt") == "1" and _children(rest, avail)


class X:
    """One stanza as a template (see above); usable wherever imlib's
    expect() takes a regex."""

    def __init__(self, xml):
        self.xml = xml
        self.tree = _parse(xml)
        assert self.tree is not None, "bad template: %s" % xml

    def fullmatch(self, text):
        a = _parse(text)
        return text if a is not None and _same(self.tree, a) else None

    def __repr__(self):
        return self.xml


class Err:
    """An error stanza (RFC 6120 8.3): kind, from, to, id, type='error',
    <error type=etype> with the condition (and the XEP's 'by' when the
    server adds it, optional text); the original payload may be echoed
    (8.3.1: MAY) and is ignored."""

    def __init__(self, kind, frm, to, id_, etype, cond, echo=None):
        self.want = (kind, frm, to, id_, etype, cond)
        self.echo = echo    # a child the error must carry ({ns}name)

    def fullmatch(self, text):
        kind, frm, to, id_, etype, cond = self.want
        a = _parse(text)
        if a is None or a.tag != "{jabber:client}%s" % kind:
            return None
        if (a.get("from"), a.get("to"), a.get("type")) != (frm, to, "error"):
            return None
        if id_ is not None and a.get("id") != id_:
            return None
        if self.echo is not None and a.find(self.echo) is None:
            return None
        errs = a.findall("{jabber:client}error")
        if len(errs) != 1 or errs[0].get("type") != etype:
            return None
        e = errs[0]
        # 'by' (RFC 6120 8.3.2): the room (XEP-0045's examples) or the
        # service (Prosody, for a room that does not exist yet)
        if e.get("by") not in (None, frm.split("/")[0], frm, SERVICE):
            return None
        conds = [c.tag for c in e if c.tag != "{%s}text" % STANZAS]
        ok = ["{%s}%s" % (STANZAS, c) for c in (cond if isinstance(cond, tuple) else (cond,))]
        return text if len(conds) == 1 and conds[0] in ok else None

    def __repr__(self):
        return "<%s from='%s' to='%s' id='%s' type='error'><error type='%s'><%s/>" % self.want


def join_err(rj_nick, to, id_, etype, cond):
    """An error to a join (7.2 "Password-Protected Rooms" to "Locked Room"): from the occupant JID asked
    for, echoing the join's <x xmlns='...muc'/> as every example of the
    XEP does; slixmpp's xep_0045 (test_muc_clients.py) needs that echo to
    tell the error is the answer to its join.  (Prosody 0.12 does not
    echo it: not required when running against it.)"""
    return Err("presence", rj_nick, to, id_, etype, cond,
               echo=None if PROSODY else "{%s}x" % NS_MUC)


def tree(text):
    t = _parse(text)
    assert t is not None, text
    return t


def not_prosody(why):
    """Runs against xmppd only: skipped with XMPPD_TEST_AGAINST=prosody
    (the suite always runs it)."""
    def deco(fn):
        def run():
            if PROSODY:
                print("# skip %s against Prosody: %s" % (fn.__name__, why))
                return
            fn()
        run.__name__ = fn.__name__
        run.__doc__ = fn.__doc__
        return run
    return deco


xmppd_only = not_prosody("xmppd's own settings")


def test_matcher_rejects():
    """The templates can fail: a missing occupant id, an extra or wrong
    attribute, a missing or extra status code, a wrong order of the
    entering stanzas are all misses (no server needed)."""
    want = occ_pres(room("c"), "N", "a@localhost/r", item("none", "participant"), (110,))
    good = ("<presence to='a@localhost/r' from='c@%s/N'><x xmlns='%s'><status code='110'/>"
            "<item role='participant' affiliation='none'/></x><occupant-id xmlns='%s' id='x'/>"
            "</presence>" % (SERVICE, NS_USER, NS_OID))
    assert want.fullmatch(good)
    own = good.replace("<item ", "<item jid='a@localhost/r' ")
    assert want.fullmatch(own), "its own JID may be there"
    bad = [good.replace("<item ", "<item jid='b@localhost/r' "),
           good.replace("<status code='110'/>", ""),
           good.replace("<status code='110'/>", "<status code='110'/><status code='100'/>"),
           good.replace("role='participant'", "role='visitor'"),
           good.replace(" to=", " type='unavailable' to="),
           good.replace("<presence ", "<presence id='z' ")]
    if not PROSODY:
        bad.append(good.replace("<occupant-id xmlns='%s' id='x'/>" % NS_OID, ""))
    for b in bad:
        assert not want.fullmatch(b), b
    e = join_err(room("c") + "/N", "a@localhost/r", "e", "auth", "forbidden")
    ok = ("<presence from='c@%s/N' to='a@localhost/r' id='e' type='error'><x xmlns='%s'/>"
          "<error type='auth' by='c@%s'><forbidden xmlns='%s'/></error></presence>"
          % (SERVICE, NS_MUC, SERVICE, STANZAS))
    assert e.fullmatch(ok)
    assert not e.fullmatch(ok.replace("forbidden", "not-allowed"))
    assert not e.fullmatch(ok.replace("type='auth'", "type='cancel'"))
    if not PROSODY:
        assert not e.fullmatch(ok.replace("<x xmlns='%s'/>" % NS_MUC, "")), "no echo"


# ---- servers and users -------------------------------------------------------

PROSODY_MUC = """
Component "conference.localhost" "muc"
    modules_enabled = { "muc_mam" }
    restrict_room_creation = false
    muc_room_locking = true
    max_history_messages = 50
"""


def server(overrides=None):
    """xmppd with two workers (occupants of one room spread over them),
    or Prosody with its MUC (see the module docstring)."""
    if PROSODY:
        from prosody import Prosody
        p = Prosody(users=USERS)
        with open(p.config, "a") as f:
            f.write(PROSODY_MUC)
        return p
    return Server(workers=2, users=USERS, overrides=overrides)


class LooseClient(Client):
    """Prosody's login (the harness's checks are xmppd's exact bytes)."""

    def login(self, user, password, resource=None, mech=None):
        self.send(stream_header())
        self.read_until("</stream:features>")
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.read_until("<proceed [^>]*/>")
        self.wrap_tls()
        self.send(stream_header())
        self.read_until("</stream:features>")
        got = self.auth_scram(user, password, "sha1")
        assert got.startswith("<success"), got
        self.send(stream_header())
        self.read_until("</stream:features>")
        self.send("<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:"
                  "xmpp-bind'><resource>%s</resource></bind></iq>" % resource)
        got = self.read_until("<iq [^>]*id='bind1'.*?</iq>")
        return re.search("<jid>([^<]+)</jid>", got).group(1)


def user(s, name, res="r"):
    """A logged-in, available user with nothing queued."""
    im = IM(s, name, res, client=LooseClient(s.port) if PROSODY else None)
    im.send("<presence/>")
    if PROSODY:
        im.drain(0.3)
    else:
        assert im.echo_seen(), "%s: no presence echo" % im.jid
    return im


def room(name):
    return "%s@%s" % (name, SERVICE)


def ping(im, id_="pg"):
    """A round trip to the own server: what was routed before is done."""
    im.send("<iq to='localhost' type='get' id='%s'><ping xmlns='%s'/></iq>" % (id_, NS_PING))
    im.expect(re.compile(r"<iq [^>]*id='%s'[^>]*/>" % id_))


# ---- the stanzas of the XEP ------------------------------------------------

def item(aff, role, jid=None, nick=None, inner=""):
    a = "<item affiliation='%s' role='%s'%s%s" % (
        aff, role, " jid='%s'" % jid if jid else "", " nick='%s'" % nick if nick else "")
    return a + (">%s</item>" % inner if inner else "/>")


def actor(nick, jid=None):
    """9.1/8.2: the <actor/> of a kick, ban or role change.  Its real
    JID only to those who may see it (moderators, or everyone in a
    non-anonymous room), and there optional: Prosody adds it, the XEP's
    examples of kicking name only the nick."""
    return "<actor%s nick='%s'/>" % (" jid='@?@%s'" % jid if jid else "", nick)


# 9.3-10.7: an affiliation change broadcast; the XEP's examples have no
# actor, Prosody names the owner who made it: optional.
OPT_ACTOR = "<actor _opt='1' nick='Juliet' jid='@?@%s'/>"
# What the XEP shows and Prosody 0.12 leaves out (the reason in a ban
# list, 9.2): optional when running against Prosody.
P_OPT = " _opt='1'" if PROSODY else ""


def occ_pres(rj, nick, to, it, codes=(), ptype=None, inner="", oid=True, x_extra=""):
    """A presence the room sends about occupant nick of rj to 'to'."""
    t = " type='%s'" % ptype if ptype else ""
    st = "".join("<status code='%d'/>" % c for c in codes)
    if 110 in codes and " jid=" not in it:
        # Its own presence (110) in a semi-anonymous room: the XEP's
        # examples (7.2 "Presence Broadcast") leave the real JID out, Prosody puts it in:
        # either, but if there, it is the occupant's own.
        it = it.replace("<item ", "<item jid='@?@%s' " % to, 1)
    return X("<presence from='%s/%s' to='%s'%s>%s<x xmlns='%s'>%s%s%s</x>%s</presence>"
             % (rj, nick, to, t, inner, NS_USER, it, st, x_extra, OID if oid else ""))


def gc(rj, nick, to, body, id_="@?@", extra="", sid=True):
    """A groupchat message from occupant nick as every occupant gets it
    (7.4): the sender's id kept, the room's stanza-id, the occupant id."""
    i = "" if id_ is None else " id='%s'" % id_
    return X("<message from='%s/%s'%s to='%s' type='groupchat'><body>%s</body>%s%s%s"
             "</message>" % (rj, nick, i, to, body, extra, SID % rj if sid else "", OID))


def history(rj, nick, to, body):
    """A message of the discussion history (7.2 "Discussion History"): as it was sent, with
    <delay/> from the room (XEP-0203; 'from' is the room JID).
    In a non-anonymous room Prosody adds the sender's real JID in a
    muc#user <x/>: optional."""
    return gc(rj, nick, to, body, extra="<delay xmlns='%s' from='%s' stamp='@TS@'/><x _opt='1' "
              "xmlns='%s'><item affiliation='@@' jid='@@' role='@@'/></x>" % (NS_DELAY, rj, NS_USER))


def subject_msg(rj, to, text=None, nick=None, oid=False):
    """7.2 "Room Subject": the subject, always sent last on entering,
    an empty <subject/> when none was set."""
    frm = "%s/%s" % (rj, nick) if nick else rj
    s = "<subject>%s</subject>" % text if text else "<subject/>"
    # Prosody and ejabberd stamp the time the subject was set: optional
    d = "<delay _opt='1' xmlns='%s' from='%s' stamp='@TS@'/>" % (NS_DELAY, rj)
    return X("<message from='%s' id='@?@' to='%s' type='groupchat'>%s%s%s</message>"
             % (frm, to, s, d, OID if oid else ""))


def subject_change(rj, nick, to, text, id_):
    """8.1: a subject change as every occupant gets it, from the
    changer's occupant JID.  Prosody drops the id and adds no occupant
    id to subject messages: both optional here (XEP-0421 asks for it on
    messages, the id is kept by ejabberd)."""
    return X("<message from='%s/%s' id='@?@%s' to='%s' type='groupchat'><subject>%s</subject>"
             "<occupant-id _opt='1' xmlns='%s' id='@@'/></message>"
             % (rj, nick, id_, to, text, NS_OID))


def join_stanza(rj, nick, inner="", id_=None):
    i = " id='%s'" % id_ if id_ else ""
    return ("<presence to='%s/%s'%s><x xmlns='%s'>%s</x></presence>"
            % (rj, nick, i, NS_MUC, inner))


def form_submit(fields, ftype="submit"):
    out = ("<x xmlns='%s' type='%s'><field var='FORM_TYPE'><value>%s</value></field>"
           % (NS_DATA, ftype, ROOMCONFIG))
    for k, v in fields.items():
        vals = v if isinstance(v, (list, tuple)) else [v]
        out += "<field var='%s'>%s</field>" % (k, "".join("<value>%s</value>" % x for x in vals))
    return out + "</x>"


def iq(im, to, typ, payload, id_, want=None, timeout=5.0):
    """Send an IQ; return the answer (the exact result when told)."""
    im.send("<iq to='%s' type='%s' id='%s'>%s</iq>" % (to, typ, id_, payload))
    if want is not None:
        return im.expect(want, timeout)
    return im.expect(re.compile(r"<iq [^>]*id='%s'.*" % id_, re.S), timeout)


def result(frm, to, id_, payload=None):
    if payload is None:
        return X("<iq from='%s' id='%s' to='%s' type='result'/>" % (frm, id_, to))
    return X("<iq from='%s' id='%s' to='%s' type='result'>%s</iq>" % (frm, id_, to, payload))


def denied(im, rj, payload, id_):
    """An admin IQ set from someone without the privilege: forbidden,
    type auth (ejabberd; the XEP's word for missing privileges) or
    not-allowed, type cancel (Prosody): either."""
    got = iq(im, rj, "set", payload, id_)
    assert Err("iq", rj, im.jid, id_, "auth", "forbidden").fullmatch(got) or \
        Err("iq", rj, im.jid, id_, "cancel", "not-allowed").fullmatch(got), got


def configure(owner, rj, fields, id_="cfg"):
    iq(owner, rj, "set", "<query xmlns='%s'>%s</query>" % (NS_OWNER, form_submit(fields)),
       id_, result(rj, owner.jid, id_))


NON_ANON = {"muc#roomconfig_whois": "anyone"}


def create(owner, name, nick, config=None, codes=(110, 201)):
    """10.1.2/10.1.3: the first join creates the room, locked: the owner
    gets its presence with 110 and 201 and the (empty) subject; the owner
    then submits the configuration (an empty submit accepts the default,
    the instant room of 10.1.2), which unlocks it."""
    rj = room(name)
    owner.send(join_stanza(rj, nick))
    owner.expect(occ_pres(rj, nick, owner.jid, item("owner", "moderator", owner.jid),
                          codes))
    owner.expect(subject_msg(rj, owner.jid))
    configure(owner, rj, config or {}, "create-" + name)
    owner.drain(0.3)     # 104 on the configuration change: not what this is about
    return rj


def enter(im, rj, nick, it, codes=(110,), others=(), hist=(), subject=None,
          subject_nick=None, inner=""):
    """7.2 "Presence Broadcast" to "Room Subject": what a new occupant gets, in this order: the others'
    presence (among themselves in any order: the XEP names none), its
    own (status codes), the history (in order), the subject."""
    im.send(join_stanza(rj, nick, inner))
    got = []
    for w in others:
        got.append((im.expect(w), im.last_seq))
    seq = [(w, st, q) for w, (st, q) in zip(others, got)]
    ordered = [occ_pres(rj, nick, im.jid, it, codes)] + list(hist) + \
        [subject_msg(rj, im.jid, subject, subject_nick)]
    for w in ordered:
        st = im.expect(w)
        seq.append((w, st, im.last_seq))
    qs = [q for _, _, q in seq]
    n = len(others)
    ok = all(q < qs[n] for q in qs[:n]) and qs[n:] == sorted(qs[n:])
    assert ok, "%s: wrong order on entering: arrived as\n    %s" % (
        im.jid, "\n    ".join(st for _, st, _ in sorted(seq, key=lambda x: x[2])))
    return [st for _, st, _ in seq]


def say(im, rj, body, id_):
    im.send("<message to='%s' type='groupchat' id='%s'><body>%s</body></message>"
            % (rj, id_, body))


def leave(im, rj, nick):
    im.send("<presence to='%s/%s' type='unavailable'/>" % (rj, nick))


# ---- 6: discovery ---------------------------------------------------------

def disco(im, to, ns, id_, node=None):
    n = " node='%s'" % node if node else ""
    return tree(iq(im, to, "get", "<query xmlns='%s'%s/>" % (ns, n), id_))


def features(t):
    return set(f.get("var") for f in t.iter("{%s}feature" % NS_DISCO_INFO))


def form_fields(x):
    """{var: [values]} of a data form element."""
    return dict((f.get("var"), [v.text or "" for v in f.findall("{%s}value" % NS_DATA)])
                for f in x.findall("{%s}field" % NS_DATA) if f.get("var"))


@checked
def test_disco_service():
    """6.1, 6.2: the domain lists the service; the service is a
    conference/text entity with the muc feature."""
    with server() as s:
        j = user(s, "juliet")
        t = disco(j, "localhost", NS_DISCO_ITEMS, "d1")
        assert SERVICE in [i.get("jid") for i in t.iter("{%s}item" % NS_DISCO_ITEMS)], \
            ET.tostring(t)
        t = disco(j, SERVICE, NS_DISCO_INFO, "d2")
        assert t.get("type") == "result" and t.get("from") == SERVICE, ET.tostring(t)
        ids = [(i.get("category"), i.get("type")) for i in t.iter("{%s}identity" % NS_DISCO_INFO)]
        assert ids == [("conference", "text")], ids
        assert NS_MUC in features(t), features(t)
        j.close()


@checked
def test_disco_items_public_rooms_only():
    """6.3: disco#items of the service lists the public rooms (with
    their names) and not the hidden ones."""
    with server() as s:
        j = user(s, "juliet")
        create(j, "agora", "Juliet", {"muc#roomconfig_publicroom": "1",
                                      "muc#roomconfig_roomname": "The Agora"})
        create(j, "crypt", "Juliet", {"muc#roomconfig_publicroom": "0"})
        r = user(s, "romeo")
        t = disco(r, SERVICE, NS_DISCO_ITEMS, "i1")
        items = [(i.get("jid"), i.get("name")) for i in t.iter("{%s}item" % NS_DISCO_ITEMS)]
        assert items == [(room("agora"), "The Agora")], items
        j.close()
        r.close()


@checked
def test_disco_room_info():
    """6.4: a room's disco#info: conference identity named after the
    room, the muc feature, one of each pair of room-type features as
    configured, MAM, stanza ids, occupant ids, self-ping optimisation;
    the muc#roominfo form (XEP-0128) with the description, subject and
    the occupant count."""
    with server() as s:
        j = user(s, "juliet")
        rj = create(j, "agora", "Juliet", {
            "muc#roomconfig_roomname": "The Agora",
            "muc#roomconfig_roomdesc": "Talk of Verona",
            "muc#roomconfig_publicroom": "1", "muc#roomconfig_persistentroom": "1",
            "muc#roomconfig_moderatedroom": "0", "muc#roomconfig_membersonly": "0",
            "muc#roomconfig_passwordprotectedroom": "0", "muc#roomconfig_whois": "anyone"})
        j.send("<message to='%s' type='groupchat' id='s1'><subject>Plague</subject></message>" % rj)
        j.expect(subject_change(rj, "Juliet", j.jid, "Plague", "s1"))
        r = user(s, "romeo")
        t = disco(r, rj, NS_DISCO_INFO, "ri")
        ids = [(i.get("category"), i.get("type"), i.get("name"))
               for i in t.iter("{%s}identity" % NS_DISCO_INFO)]
        assert ids == [("conference", "text", "The Agora")], ids
        f = features(t)
        for want in (NS_MUC, "muc_public", "muc_persistent", "muc_unmoderated", "muc_open",
                     "muc_unsecured", "muc_nonanonymous", NS_MAM, NS_SID, NS_OID,
                     NS_MUC + "#self-ping-optimization"):
            assert want in f, (want, f)
        for bad in ("muc_hidden", "muc_temporary", "muc_moderated", "muc_membersonly",
                    "muc_passwordprotected", "muc_semianonymous"):
            assert bad not in f, (bad, f)
        forms = [x for x in t.iter("{%s}x" % NS_DATA)]
        assert len(forms) == 1 and forms[0].get("type") == "result", ET.tostring(t)
        ff = form_fields(forms[0])
        assert ff["FORM_TYPE"] == [ROOMINFO], ff
        assert ff["muc#roominfo_description"] == ["Talk of Verona"], ff
        # optional in 6.4 (the XEP's example has it); ejabberd has it, Prosody
        # 0.12 not
        if not PROSODY:
            assert ff.get("muc#roominfo_subject") == ["Plague"], ff
        assert ff["muc#roominfo_occupants"] == ["1"], ff
        j.close()
        r.close()


# ---- 7.2: entering a room ------------------------------------------------

@checked
def test_create_instant_room():
    """10.1.1, 10.1.2: the first join makes the user owner and moderator,
    with 110 and 201; the room is locked (others get item-not-found,
    7.2 "Locked Room") until the owner accepts the default configuration; then
    others enter."""
    with server() as s:
        j = user(s, "juliet")
        r = user(s, "romeo")
        rj = room("coven")
        j.send(join_stanza(rj, "Juliet"))
        j.expect_order(occ_pres(rj, "Juliet", j.jid, item("owner", "moderator", j.jid),
                                (110, 201)),
                       subject_msg(rj, j.jid))
        # 7.2 "Locked Room" (10.1.1: "MUST NOT allow entry")
        r.send(join_stanza(rj, "Romeo", id_="lk"))
        r.expect(join_err(rj + "/Romeo", r.jid, "lk", "cancel", "item-not-found"))
        # 10.1.2: an empty submit accepts the default configuration
        iq(j, rj, "set", "<query xmlns='%s'><x xmlns='%s' type='submit'/></query>"
           % (NS_OWNER, NS_DATA), "inst", result(rj, j.jid, "inst"))
        j.drain(0.3)
        enter(r, rj, "Romeo", item("none", "participant"),
              others=[occ_pres(rj, "Juliet", r.jid, item("owner", "moderator"))])
        # semi-anonymous by default (Prosody and ejabberd): the moderator
        # sees the real JID, the participant did not (above)
        j.expect(occ_pres(rj, "Romeo", j.jid, item("none", "participant", r.jid)))
        j.close()
        r.close()


@checked
def test_create_reserved_room():
    """10.1.3: the owner asks for the configuration form of the locked
    room, gets a muc#roomconfig form, submits it; others enter; the
    cancel (type='cancel') of another new room destroys it."""
    with server() as s:
        j = user(s, "juliet")
        rj = room("reserved")
        j.send(join_stanza(rj, "Juliet"))
        j.expect(occ_pres(rj, "Juliet", j.jid, item("owner", "moderator", j.jid), (110, 201)))
        j.expect(subject_msg(rj, j.jid))
        t = tree(iq(j, rj, "get", "<query xmlns='%s'/>" % NS_OWNER, "f1"))
        assert (t.get("type"), t.get("from")) == ("result", rj), ET.tostring(t)
        x = t.find("{%s}query/{%s}x" % (NS_OWNER, NS_DATA))
        assert x is not None and x.get("type") == "form", ET.tostring(t)
        ff = form_fields(x)
        assert ff["FORM_TYPE"] == [ROOMCONFIG], ff
        for var in ("muc#roomconfig_roomname", "muc#roomconfig_roomdesc",
                    "muc#roomconfig_persistentroom", "muc#roomconfig_publicroom",
                    "muc#roomconfig_membersonly", "muc#roomconfig_moderatedroom",
                    "muc#roomconfig_passwordprotectedroom", "muc#roomconfig_roomsecret",
                    "muc#roomconfig_whois", "muc#roomconfig_changesubject") + (
                        () if PROSODY else (   # XEP 15.5.3 fields Prosody 0.12 lacks
                            "muc#roomconfig_maxusers", "muc#roomconfig_allowinvites")):
            if PROSODY and var == "muc#roomconfig_passwordprotectedroom":
                continue
            assert var in ff, (var, sorted(ff))
        configure(j, rj, {"muc#roomconfig_roomname": "Reserved"}, "f2")
        j.drain(0.3)
        r = user(s, "romeo")
        enter(r, rj, "Romeo", item("none", "participant"),
              others=[occ_pres(rj, "Juliet", r.jid, item("owner", "moderator"))])
        # cancel the creation of another room: it is gone (a later join
        # creates it anew: 201 again)
        r2 = room("cancelled")
        j.send(join_stanza(r2, "Juliet"))
        j.expect(occ_pres(r2, "Juliet", j.jid, item("owner", "moderator", j.jid), (110, 201)))
        j.expect(subject_msg(r2, j.jid))
        iq(j, r2, "set", "<query xmlns='%s'><x xmlns='%s' type='cancel'/></query>"
           % (NS_OWNER, NS_DATA), "f3", result(r2, j.jid, "f3"))
        # 10.1.3: "the service MUST destroy the room": it is not there
        # for disco (6.4) any more.  (Prosody 0.12 keeps it, locked.)
        if not PROSODY:
            iq(r, r2, "get", "<query xmlns='%s'/>" % NS_DISCO_INFO, "f4",
               Err("iq", r2, r.jid, "f4", "cancel", "item-not-found"))
        j.close()
        r.close()


# The room's archive (muc#roomconfig_enablearchiving, Prosody's name)
# is not XEP-0045's public logging: neither server sends 170 for it
LOGGED = (110, 100)


@checked
def test_enter_order_and_status_codes():
    """7.2 "Entering a Room" in a non-anonymous (100), logged (170) room: the new
    occupant gets the others' presence, then its own with 110, 100 and
    170, then the history (<delay/> from the room), then the
    subject; the others get its presence with its real JID."""
    with server() as s:
        j = user(s, "juliet")
        n = user(s, "nurse")
        r = user(s, "romeo")
        rj = create(j, "coven", "Juliet", dict(NON_ANON, **{
            "muc#roomconfig_enablearchiving": "1"}))
        enter(n, rj, "Nurse", item("none", "participant", n.jid), LOGGED,
              others=[occ_pres(rj, "Juliet", n.jid, item("owner", "moderator", j.jid))])
        j.expect(occ_pres(rj, "Nurse", j.jid, item("none", "participant", n.jid)))
        j.send("<message to='%s' type='groupchat' id='s1'><subject>Fire burn</subject>"
               "</message>" % rj)
        for o in (j, n):
            o.expect(subject_change(rj, "Juliet", o.jid, "Fire burn", "s1"))
        say(j, rj, "one", "h1")
        for o in (j, n):
            o.expect(gc(rj, "Juliet", o.jid, "one", "h1"))
        say(n, rj, "two", "h2")
        for o in (j, n):
            o.expect(gc(rj, "Nurse", o.jid, "two", "h2"))
        enter(r, rj, "Romeo", item("none", "participant", r.jid), LOGGED,
              others=[occ_pres(rj, "Juliet", r.jid, item("owner", "moderator", j.jid)),
                      occ_pres(rj, "Nurse", r.jid, item("none", "participant", n.jid))],
              hist=[history(rj, "Juliet", r.jid, "one"), history(rj, "Nurse", r.jid, "two")],
              subject="Fire burn", subject_nick="Juliet")
        for o in (j, n):
            o.expect(occ_pres(rj, "Romeo", o.jid, item("none", "participant", r.jid)))
        for o in (j, n, r):
            o.close()


@checked
def test_semi_anonymous_jids():
    """7.2 "Semi-Anonymous Rooms": in a semi-anonymous room only moderators see real
    JIDs; the participant's own presence has 110 and no 100."""
    with server() as s:
        j = user(s, "juliet")
        n = user(s, "nurse")
        r = user(s, "romeo")
        rj = create(j, "semi", "Juliet", {"muc#roomconfig_whois": "moderators"})
        enter(n, rj, "Nurse", item("none", "participant"),
              others=[occ_pres(rj, "Juliet", n.jid, item("owner", "moderator"))])
        j.expect(occ_pres(rj, "Nurse", j.jid, item("none", "participant", n.jid)))
        enter(r, rj, "Romeo", item("none", "participant"),
              others=[occ_pres(rj, "Juliet", r.jid, item("owner", "moderator")),
                      occ_pres(rj, "Nurse", r.jid, item("none", "participant"))])
        j.expect(occ_pres(rj, "Romeo", j.jid, item("none", "participant", r.jid)))
        n.expect(occ_pres(rj, "Romeo", n.jid, item("none", "participant")))
        for o in (j, n, r):
            o.close()


@checked
def test_enter_errors():
    """7.2 "Password-Protected Rooms" (not-authorized), "Members-Only
    Rooms" (registration-required), "Banned Users" (forbidden), "Nickname
    Conflict" (conflict), each from the occupant JID asked for; the right
    password and a member get in."""
    with server() as s:
        j = user(s, "juliet")
        r = user(s, "romeo")
        b = user(s, "benvolio")
        pw = create(j, "locked", "Juliet", {"muc#roomconfig_passwordprotectedroom": "1",
                                            "muc#roomconfig_roomsecret": "cauldronburn"})
        r.send(join_stanza(pw, "Romeo", id_="e1"))
        r.expect(join_err(pw + "/Romeo", r.jid, "e1", "auth", "not-authorized"))
        r.send(join_stanza(pw, "Romeo", "<password>wrong</password>", "e2"))
        r.expect(join_err(pw + "/Romeo", r.jid, "e2", "auth", "not-authorized"))
        enter(r, pw, "Romeo", item("none", "participant"), inner="<password>cauldronburn</password>",
              others=[occ_pres(pw, "Juliet", r.jid, item("owner", "moderator"))])
        # "Nickname Conflict": the nick is taken (a different user)
        b.send(join_stanza(pw, "Romeo", "<password>cauldronburn</password>", "e3"))
        b.expect(join_err(pw + "/Romeo", b.jid, "e3", "cancel", "conflict"))
        # "Members-Only Rooms"
        mo = create(j, "members", "Juliet", {"muc#roomconfig_membersonly": "1"})
        b.send(join_stanza(mo, "Ben", id_="e4"))
        b.expect(join_err(mo + "/Ben", b.jid, "e4", "auth", "registration-required"))
        iq(j, mo, "set", "<query xmlns='%s'>%s</query>" % (NS_ADMIN, item_aff("member", b.bare)),
           "m1", result(mo, j.jid, "m1"))
        enter(b, mo, "Ben", item("member", "participant"),
              others=[occ_pres(mo, "Juliet", b.jid, item("owner", "moderator"))])
        # "Banned Users", in an open room (in a members-only one Prosody answers
        # registration-required first: an outcast is no member)
        op = create(j, "open", "Juliet")
        iq(j, op, "set", "<query xmlns='%s'>%s</query>" % (NS_ADMIN, item_aff("outcast", r.bare)),
           "m2", result(op, j.jid, "m2"))
        r.send(join_stanza(op, "Romeo", id_="e5"))
        r.expect(join_err(op + "/Romeo", r.jid, "e5", "auth", "forbidden"))
        for o in (j, r, b):
            o.close()


def item_aff(aff, jid, inner=""):
    return ("<item affiliation='%s' jid='%s'%s" % (aff, jid, ">%s</item>" % inner if inner
                                                    else "/>"))


@not_prosody("Prosody 0.12 has no muc#roomconfig_maxusers")
@checked
def test_enter_room_full_maxusers():
    """7.2 "Max Users": a room at its muc#roomconfig_maxusers refuses the next
    user with service-unavailable (type wait)."""
    with server() as s:
        j = user(s, "juliet")
        r = user(s, "romeo")
        n = user(s, "nurse")
        rj = create(j, "small", "Juliet", {"muc#roomconfig_maxusers": "2"})
        enter(r, rj, "Romeo", item("none", "participant"),
              others=[occ_pres(rj, "Juliet", r.jid, item("owner", "moderator"))])
        n.send(join_stanza(rj, "Nurse", id_="full"))
        n.expect(join_err(rj + "/Nurse", n.jid, "full", "wait", "service-unavailable"))
        for o in (j, r, n):
            o.close()


@not_prosody("Prosody 0.12 answers service-unavailable")
@checked
def test_nick_required():
    """7.2 (the example "Service Denies Access Because No Nickname Is
    Specified"): a join to the bare room JID is jid-malformed,
    type modify.  (Prosody 0.12 answers service-unavailable instead: it
    predates that text.)"""
    with server() as s:
        j = user(s, "juliet")
        rj = create(j, "coven", "Juliet")
        r = user(s, "romeo")
        r.send("<presence to='%s' id='nn'><x xmlns='%s'/></presence>" % (rj, NS_MUC))
        r.expect(join_err(rj, r.jid, "nn", "modify", "jid-malformed"))
        j.close()
        r.close()


# ---- 7.2 "Discussion History" ------------------------------------------------------

def room_with_history(s, n=4):
    j = user(s, "juliet")
    rj = create(j, "hist", "Juliet")
    for i in range(n):
        say(j, rj, "line %d" % i, "h%d" % i)
        j.expect(gc(rj, "Juliet", j.jid, "line %d" % i, "h%d" % i))
    return j, rj


def entered_history(im, rj, nick, inner):
    """Join with a history request; return the bodies of the history
    messages received before the subject."""
    im.send(join_stanza(rj, nick, inner))
    im.expect(occ_pres(rj, nick, im.jid, item("none", "participant"), (110,)))
    im.expect(occ_pres(rj, "Juliet", im.jid, item("owner", "moderator")))
    bodies = []
    while True:
        st = im.next()
        if X("<message from='%s' id='@?@' to='%s' type='groupchat'><subject/>"
             "<delay _opt='1' xmlns='%s' from='%s' stamp='@TS@'/></message>"
             % (rj, im.jid, NS_DELAY, rj)).fullmatch(st):
            return bodies
        t = tree(st)
        assert t.find("{%s}delay" % NS_DELAY) is not None, st
        bodies.append(t.findtext("{jabber:client}body"))


@checked
def test_history_maxstanzas_maxchars():
    """7.2 "Managing Discussion History": maxstanzas='2' gives the last two; maxchars='0' none;
    no <history/>: all (below the room's default of at least 4)."""
    with server() as s:
        j, rj = room_with_history(s)
        r = user(s, "romeo")
        assert entered_history(r, rj, "Romeo", "<history maxstanzas='2'/>") == \
            ["line 2", "line 3"]
        leave(r, rj, "Romeo")
        r.expect(occ_pres(rj, "Romeo", r.jid, item("none", "none"), (110,), "unavailable"))
        assert entered_history(r, rj, "Romeo", "<history maxchars='0'/>") == []
        leave(r, rj, "Romeo")
        r.expect(occ_pres(rj, "Romeo", r.jid, item("none", "none"), (110,), "unavailable"))
        assert entered_history(r, rj, "Romeo", "") == ["line %d" % i for i in range(4)]
        j.close()
        r.close()


@checked
def test_history_seconds_since():
    """7.2 "Managing Discussion History": seconds='N' and since='T' (XEP-0082) give only what was
    said in that window."""
    with server() as s:
        j, rj = room_with_history(s, 2)
        time.sleep(2.2)
        mid = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        time.sleep(1.1)
        say(j, rj, "late", "late")
        j.expect(gc(rj, "Juliet", j.jid, "late", "late"))
        r = user(s, "romeo")
        assert entered_history(r, rj, "Romeo", "<history seconds='2'/>") == ["late"]
        leave(r, rj, "Romeo")
        r.expect(occ_pres(rj, "Romeo", r.jid, item("none", "none"), (110,), "unavailable"))
        assert entered_history(r, rj, "Romeo", "<history since='%s'/>" % mid) == ["late"]
        leave(r, rj, "Romeo")
        r.expect(occ_pres(rj, "Romeo", r.jid, item("none", "none"), (110,), "unavailable"))
        assert entered_history(r, rj, "Romeo", "<history since='1970-01-01T00:00:00Z'/>") == \
            ["line 0", "line 1", "late"]
        j.close()
        r.close()


# ---- 7.4 - 7.7: talking ---------------------------------------------------

def two_in_room(s, name="coven", config=None, inner=""):
    """juliet creates the room (owner, moderator), romeo enters it
    (participant): semi-anonymous unless config says whois=anyone."""
    j = user(s, "juliet")
    r = user(s, "romeo")
    rj = create(j, name, "Juliet", config)
    na = (config or {}).get("muc#roomconfig_whois") == "anyone"
    enter(r, rj, "Romeo", item("none", "participant", r.jid if na else None), inner=inner,
          codes=(110, 100) if na else (110,),
          others=[occ_pres(rj, "Juliet", r.jid, item("owner", "moderator",
                                                     j.jid if na else None))])
    j.expect(occ_pres(rj, "Romeo", j.jid, item("none", "participant", r.jid)))
    return j, r, rj


@checked
def test_groupchat_reflection_and_stanza_id():
    """7.4: a groupchat message goes to every occupant, the sender too,
    from the sender's occupant JID, its id kept, with the room's
    <stanza-id by='room'/> (XEP-0359; the same id for all) and the
    occupant id; a forged stanza-id by the room is removed (XEP-0359
    section 5)."""
    with server() as s:
        j, r, rj = two_in_room(s)
        r.send("<message to='%s' type='groupchat' id='g1'><body>Wherefore</body>"
               "<stanza-id xmlns='%s' id='forged' by='%s'/></message>" % (rj, NS_SID, rj))
        got = [o.expect(gc(rj, "Romeo", o.jid, "Wherefore", "g1")) for o in (j, r)]
        ids = [tree(g).find("{%s}stanza-id" % NS_SID).get("id") for g in got]
        assert ids[0] == ids[1] and ids[0] != "forged", ids
        # a second message has another id
        say(j, rj, "Deny thy father", "g2")
        got = r.expect(gc(rj, "Juliet", r.jid, "Deny thy father", "g2"))
        assert tree(got).find("{%s}stanza-id" % NS_SID).get("id") != ids[0]
        j.close()
        r.close()


@checked
def test_message_from_non_occupant():
    """7.4: a groupchat message from someone not in the room:
    not-acceptable (type cancel as in Prosody), nobody gets it;
    a type='chat' message to the bare room JID: the same (Prosody)."""
    with server() as s:
        j = user(s, "juliet")
        rj = create(j, "coven", "Juliet")
        b = user(s, "benvolio")
        say(b, rj, "let me in", "no1")
        b.expect(Err("message", rj, b.jid, "no1", "cancel", "not-acceptable"))
        j.quiet(0.5, re.compile("<message .*", re.S))
        j.close()
        b.close()


@checked
def test_private_messages():
    """7.5: a chat message to an occupant JID goes to that occupant's
    real JID, from the sender's occupant JID (7.5: with the muc#user <x/>
    kept, the occupant id added); to a nick not in the room:
    item-not-found (7.5); from a
    non-occupant: not-acceptable."""
    with server() as s:
        j, r, rj = two_in_room(s)
        r.send("<message to='%s/Juliet' type='chat' id='p1'><body>psst</body>"
               "<x xmlns='%s'/></message>" % (rj, NS_USER))
        # (a private message is archived by the recipient's own server:
        # Prosody's stanza-id by the account; xmppd's is taken out by imlib)
        j.expect(X("<message from='%s/Romeo' id='p1' to='%s' type='chat'><body>psst</body>"
                   "<x xmlns='%s'/>%s<stanza-id _opt='1' xmlns='%s' id='@@' by='%s'/></message>"
                   % (rj, j.jid, NS_USER, OID, NS_SID, j.bare)))
        r.send("<message to='%s/Nobody' type='chat' id='p2'><body>?</body></message>" % rj)
        r.expect(Err("message", rj + "/Nobody", r.jid, "p2", "cancel", "item-not-found"))
        b = user(s, "benvolio")
        b.send("<message to='%s/Juliet' type='chat' id='p3'><body>hi</body></message>" % rj)
        b.expect(Err("message", rj + "/Juliet", b.jid, "p3", "cancel", "not-acceptable"))
        j.quiet(0.5, re.compile("<message .*", re.S))
        for o in (j, r, b):
            o.close()


@checked
def test_iq_to_occupant_forwarded():
    """An IQ to an occupant JID (here XEP-0092 software version) reaches
    that occupant's client from the asker's occupant JID (its real JID
    stays hidden in a semi-anonymous room), and the answer comes back
    from the occupant JID with the asker's own id (Prosody and ejabberd
    route IQs between occupants this way; clients use it for versions
    and pings of other occupants)."""
    with server() as s:
        j, r, rj = two_in_room(s)
        r.send("<iq to='%s/Juliet' type='get' id='ver1'><query xmlns='jabber:iq:version'/></iq>"
               % rj)
        got = j.expect(X("<iq from='%s/Romeo' id='@@' to='%s' type='get'><query "
                         "xmlns='jabber:iq:version'/></iq>" % (rj, j.jid)))
        fid = tree(got).get("id")
        j.send("<iq to='%s/Romeo' type='result' id='%s'><query xmlns='jabber:iq:version'>"
               "<name>Balcony</name><version>1.0</version></query></iq>" % (rj, fid))
        r.expect(X("<iq from='%s/Juliet' id='ver1' to='%s' type='result'><query "
                   "xmlns='jabber:iq:version'><name>Balcony</name><version>1.0</version>"
                   "</query></iq>" % (rj, r.jid)))
        j.close()
        r.close()


@checked
def test_private_message_not_carbon_copied():
    """XEP-0280 section 6: a message "sent by a MUC room or service ...
    this also includes private messages from MUC participants" is not
    eligible for carbons: juliet's other carbons-enabled resource gets no
    copy of a private message to her occupant; an ordinary chat message
    still is copied (the rule is about the room only)."""
    with server() as s:
        j, r, rj = two_in_room(s)
        j2 = user(s, "juliet", "other")
        for im, id_ in ((j, "cb1"), (j2, "cb2")):
            iq(im, im.bare, "set", "<enable xmlns='urn:xmpp:carbons:2'/>", id_,
               X("<iq from='@?@%s' id='%s' to='%s' type='result'/>" % (im.bare, id_, im.jid)))
        r.send("<message to='%s/Juliet' type='chat' id='pc1'><body>for you alone</body>"
               "<x xmlns='%s'/></message>" % (rj, NS_USER))
        j.expect(re.compile(".*<body>for you alone</body>.*", re.S))
        r.send("<message to='%s' type='chat' id='pc2'><body>direct</body></message>" % j.jid)
        j.expect(re.compile(".*<body>direct</body>.*", re.S))
        j2.expect(re.compile(".*<received xmlns='urn:xmpp:carbons:2'>.*<body>direct</body>.*",
                             re.S))
        j2.quiet(0.5, re.compile(".*for you alone.*", re.S))
        for o in (j, j2, r):
            o.close()


@checked
def test_nick_change():
    """7.6: unavailable from the old nick with 303 and the new nick in
    the item (110 too for the occupant), then available from the new
    one; a nick in use: conflict (type cancel)."""
    with server() as s:
        j, r, rj = two_in_room(s)
        r.send("<presence to='%s/Romy'/>" % rj)
        r.expect_order(occ_pres(rj, "Romeo", r.jid, item("none", "participant", nick="Romy"),
                                (303, 110), "unavailable"),
                       occ_pres(rj, "Romy", r.jid, item("none", "participant"), (110,)))
        j.expect_order(occ_pres(rj, "Romeo", j.jid, item("none", "participant", r.jid, "Romy"),
                                (303,), "unavailable"),
                       occ_pres(rj, "Romy", j.jid, item("none", "participant", r.jid)))
        j.send("<presence to='%s/Romy' id='nc'/>" % rj)
        j.expect(Err("presence", rj + "/Romy", j.jid, "nc", "cancel", "conflict"))
        # the new nick is the one that talks
        say(r, rj, "by any other name", "nm")
        j.expect(gc(rj, "Romy", j.jid, "by any other name", "nm"))
        j.close()
        r.close()


@checked
def test_presence_change():
    """7.7: a new show/status goes to every occupant with the item."""
    with server() as s:
        j, r, rj = two_in_room(s)
        r.send("<presence to='%s/Romeo'><show>away</show><status>at Mantua</status>"
               "</presence>" % rj)
        inner = "<show>away</show><status>at Mantua</status>"
        j.expect(occ_pres(rj, "Romeo", j.jid, item("none", "participant", r.jid), inner=inner))
        r.expect(occ_pres(rj, "Romeo", r.jid, item("none", "participant"), (110,), inner=inner))
        j.close()
        r.close()


@checked
def test_exit():
    """7.14: the occupant leaving gets its own unavailable presence with
    110 (role none), the others without 110, the status text kept; a
    disconnect without unavailable presence is an exit too (RFC 6121
    4.6.4: the server sends unavailable for it)."""
    with server() as s:
        j, r, rj = two_in_room(s)
        r.send("<presence to='%s/Romeo' type='unavailable'><status>parting</status></presence>"
               % rj)
        st = "<status>parting</status>"
        r.expect(occ_pres(rj, "Romeo", r.jid, item("none", "none"), (110,), "unavailable", st))
        j.expect(occ_pres(rj, "Romeo", j.jid, item("none", "none", r.jid), (), "unavailable", st))
        enter(r, rj, "Romeo", item("none", "participant"),
              others=[occ_pres(rj, "Juliet", r.jid, item("owner", "moderator"))])
        j.expect(occ_pres(rj, "Romeo", j.jid, item("none", "participant", r.jid)))
        r.abort()
        # (Prosody says why in a <status/>)
        j.expect(occ_pres(rj, "Romeo", j.jid, item("none", "none", r.jid), (), "unavailable",
                          "<status _opt='1'>@@</status>"))
        j.close()


# ---- 8: moderator use cases ---------------------------------------------

@checked
def test_subject_change_and_permission():
    """8.1: a moderator changes the subject: every occupant gets it from
    the moderator's occupant JID; a participant when the room says
    muc#roomconfig_changesubject=0: forbidden (type auth); allowed
    when 1."""
    with server() as s:
        j, r, rj = two_in_room(s, config={"muc#roomconfig_changesubject": "0"})
        j.send("<message to='%s' type='groupchat' id='s1'><subject>Cauldron</subject>"
               "</message>" % rj)
        for o in (j, r):
            o.expect(subject_change(rj, "Juliet", o.jid, "Cauldron", "s1"))
        r.send("<message to='%s' type='groupchat' id='s2'><subject>Mine</subject></message>" % rj)
        r.expect(Err("message", rj, r.jid, "s2", "auth", "forbidden"))
        j.quiet(0.5, re.compile(".*<subject>Mine.*", re.S))
        configure(j, rj, {"muc#roomconfig_changesubject": "1"}, "cs")
        r.drain(0.3)
        j.drain(0.3)
        r.send("<message to='%s' type='groupchat' id='s3'><subject>Ours</subject></message>" % rj)
        for o in (j, r):
            o.expect(subject_change(rj, "Romeo", o.jid, "Ours", "s3"))
        j.close()
        r.close()


@checked
def test_kick():
    """8.2: a moderator kicks by nick with a reason: the kicked gets
    unavailable with 307 and 110, the actor (Prosody and ejabberd name
    the actor's nick) and the reason; the others without 110; the
    moderator's IQ gets a result; a participant kicking: forbidden
    (type auth, 8.2 Example); kicking the owner: not-allowed."""
    with server() as s:
        j, r, rj = two_in_room(s)
        n = user(s, "nurse")
        enter(n, rj, "Nurse", item("none", "participant"),
              others=[occ_pres(rj, "Juliet", n.jid, item("owner", "moderator")),
                      occ_pres(rj, "Romeo", n.jid, item("none", "participant"))])
        j.expect(occ_pres(rj, "Nurse", j.jid, item("none", "participant", n.jid)))
        r.expect(occ_pres(rj, "Nurse", r.jid, item("none", "participant")))
        # a participant may not kick
        denied(r, rj, "<query xmlns='%s'><item nick='Nurse' role='none'/></query>" % NS_ADMIN,
               "k0")
        why = actor("Juliet") + "<reason>Avaunt</reason>"
        mwhy = actor("Juliet", j.jid) + "<reason>Avaunt</reason>"
        j.send("<iq to='%s' type='set' id='k1'><query xmlns='%s'><item nick='Romeo' role='none'>"
               "<reason>Avaunt</reason></item></query></iq>" % (rj, NS_ADMIN))
        r.expect(occ_pres(rj, "Romeo", r.jid, item("none", "none", inner=why), (110, 307),
                          "unavailable"))
        n.expect(occ_pres(rj, "Romeo", n.jid, item("none", "none", inner=why), (307,),
                          "unavailable"))
        j.expect(occ_pres(rj, "Romeo", j.jid, item("none", "none", r.jid, inner=mwhy), (307,),
                          "unavailable"))
        j.expect(result(rj, j.jid, "k1"))
        # gone: romeo's messages are refused now
        say(r, rj, "still here?", "k2")
        r.expect(Err("message", rj, r.jid, "k2", "cancel", "not-acceptable"))
        # nobody kicks the owner (8.2: not-allowed, type cancel)
        iq(j, rj, "set", "<query xmlns='%s'>%s</query>" % (NS_ADMIN, item_aff("admin", n.bare)),
           "k3", result(rj, j.jid, "k3"))
        n.drain(0.5)
        iq(n, rj, "set", "<query xmlns='%s'><item nick='Juliet' role='none'/></query>" % NS_ADMIN,
           "k4", Err("iq", rj, n.jid, "k4", "cancel", "not-allowed"))
        for o in (j, r, n):
            o.close()


@checked
def test_voice_in_moderated_room():
    """8.3-8.5: in a moderated room a user without affiliation enters
    as visitor and may not talk (forbidden, 7.4); a moderator grants
    voice (role participant, broadcast to all), the user talks, the
    moderator revokes it (visitor again); the voice list (8.5)."""
    with server() as s:
        j = user(s, "juliet")
        r = user(s, "romeo")
        rj = create(j, "stage", "Juliet", {"muc#roomconfig_moderatedroom": "1"})
        enter(r, rj, "Romeo", item("none", "visitor"),
              others=[occ_pres(rj, "Juliet", r.jid, item("owner", "moderator"))])
        j.expect(occ_pres(rj, "Romeo", j.jid, item("none", "visitor", r.jid)))
        say(r, rj, "may I?", "v1")
        r.expect(Err("message", rj, r.jid, "v1", "auth", "forbidden"))
        iq(j, rj, "set", "<query xmlns='%s'><item nick='Romeo' role='participant'/></query>"
           % NS_ADMIN, "v2", result(rj, j.jid, "v2"))
        r.expect(occ_pres(rj, "Romeo", r.jid, item("none", "participant", inner=actor("Juliet")),
                          (110,)))
        j.expect(occ_pres(rj, "Romeo", j.jid,
                          item("none", "participant", r.jid, inner=actor("Juliet", j.jid))))
        say(r, rj, "thanks", "v3")
        j.expect(gc(rj, "Romeo", j.jid, "thanks", "v3"))
        r.expect(gc(rj, "Romeo", r.jid, "thanks", "v3"))
        t = tree(iq(j, rj, "get", "<query xmlns='%s'><item role='participant'/></query>"
                    % NS_ADMIN, "v4"))
        got = [(i.get("nick"), i.get("role")) for i in t.iter("{%s}item" % NS_ADMIN)]
        assert got == [("Romeo", "participant")], got
        iq(j, rj, "set", "<query xmlns='%s'><item nick='Romeo' role='visitor'/></query>"
           % NS_ADMIN, "v5", result(rj, j.jid, "v5"))
        r.expect(occ_pres(rj, "Romeo", r.jid, item("none", "visitor", inner=actor("Juliet")),
                          (110,)))
        say(r, rj, "again?", "v6")
        r.expect(Err("message", rj, r.jid, "v6", "auth", "forbidden"))
        j.close()
        r.close()


# ---- 9, 10: admin and owner use cases ------------------------------------

@checked
def test_ban():
    """9.1: an admin bans by bare JID with a reason: the occupant gets
    unavailable with 301 (and 110), affiliation outcast; the ban list
    (9.2) has the JID with the reason; the banned user cannot enter
    ("Banned Users": forbidden); removing the ban lets it in again."""
    with server() as s:
        j, r, rj = two_in_room(s)
        why = actor("Juliet") + "<reason>Treason</reason>"
        mwhy = actor("Juliet", j.jid) + "<reason>Treason</reason>"
        j.send("<iq to='%s' type='set' id='b1'><query xmlns='%s'>%s</query></iq>"
               % (rj, NS_ADMIN, item_aff("outcast", r.bare, "<reason>Treason</reason>")))
        r.expect(occ_pres(rj, "Romeo", r.jid, item("outcast", "none", inner=why), (110, 301),
                          "unavailable"))
        j.expect(occ_pres(rj, "Romeo", j.jid, item("outcast", "none", r.jid, inner=mwhy), (301,),
                          "unavailable"))
        j.expect(result(rj, j.jid, "b1"))
        iq(j, rj, "get", "<query xmlns='%s'><item affiliation='outcast'/></query>" % NS_ADMIN,
           "b2", result(rj, j.jid, "b2", "<query xmlns='%s'>%s</query>" % (
               NS_ADMIN, "<item affiliation='outcast' jid='%s' role='@?@'><reason%s>Treason"
               "</reason></item>" % (r.bare, P_OPT))))
        r.send(join_stanza(rj, "Romeo", id_="b3"))
        r.expect(join_err(rj + "/Romeo", r.jid, "b3", "auth", "forbidden"))
        iq(j, rj, "set", "<query xmlns='%s'>%s</query>" % (NS_ADMIN, item_aff("none", r.bare)),
           "b4", result(rj, j.jid, "b4"))
        enter(r, rj, "Romeo", item("none", "participant"),
              others=[occ_pres(rj, "Juliet", r.jid, item("owner", "moderator"))])
        # a participant may not ban (9.1)
        denied(r, rj, "<query xmlns='%s'>%s</query>" % (NS_ADMIN, item_aff("outcast", j.bare)),
               "b5")
        j.close()
        r.close()


@checked
def test_member_list():
    """9.3-9.5: the admin adds a member (the member, in the room, gets
    its affiliation change broadcast), gets the member list, removes
    the member; in a members-only room removal kicks it out with 321."""
    with server() as s:
        j, r, rj = two_in_room(s, config=NON_ANON)
        iq(j, rj, "set", "<query xmlns='%s'>%s</query>" % (NS_ADMIN, item_aff("member", r.bare)),
           "m1", result(rj, j.jid, "m1"))
        for o in (j, r):
            o.expect(occ_pres(rj, "Romeo", o.jid, item("member", "participant", r.jid,
                                                       inner=OPT_ACTOR % j.jid),
                              (110,) if o is r else ()))
        iq(j, rj, "get", "<query xmlns='%s'><item affiliation='member'/></query>" % NS_ADMIN,
           "m2", result(rj, j.jid, "m2", "<query xmlns='%s'><item affiliation='member' jid='%s' "
                        "role='@?@' nick='@?@'/></query>" % (NS_ADMIN, r.bare)))
        configure(j, rj, {"muc#roomconfig_membersonly": "1"}, "mo")
        j.drain(0.3)
        r.drain(0.3)
        iq(j, rj, "set", "<query xmlns='%s'>%s</query>" % (NS_ADMIN, item_aff("none", r.bare)),
           "m3", result(rj, j.jid, "m3"))
        r.expect(occ_pres(rj, "Romeo", r.jid, item("none", "none", r.jid, inner=OPT_ACTOR % j.jid),
                          (110, 321), "unavailable"))
        j.expect(occ_pres(rj, "Romeo", j.jid, item("none", "none", r.jid, inner=OPT_ACTOR % j.jid),
                          (321,), "unavailable"))
        iq(j, rj, "get", "<query xmlns='%s'><item affiliation='member'/></query>" % NS_ADMIN,
           "m4", result(rj, j.jid, "m4", "<query xmlns='%s'/>" % NS_ADMIN))
        j.close()
        r.close()


@checked
def test_admin_and_owner_lists():
    """10.3-10.8: the owner grants ownership and administration, the
    lists show them, an admin gets moderator (10.6: SHOULD; Prosody and
    ejabberd do), an admin may not edit the owner list (forbidden),
    and the only owner cannot be removed (10.4: conflict in
    Prosody and ejabberd... the XEP: MUST NOT remove the last owner)."""
    with server() as s:
        j, r, rj = two_in_room(s, config=NON_ANON)
        n = user(s, "nurse")
        iq(j, rj, "set", "<query xmlns='%s'>%s</query>" % (NS_ADMIN, item_aff("admin", r.bare)),
           "a1", result(rj, j.jid, "a1"))
        for o in (j, r):
            o.expect(occ_pres(rj, "Romeo", o.jid, item("admin", "moderator", r.jid,
                                                       inner=OPT_ACTOR % j.jid),
                              (110,) if o is r else ()))
        iq(j, rj, "get", "<query xmlns='%s'><item affiliation='admin'/></query>" % NS_ADMIN,
           "a2", result(rj, j.jid, "a2", "<query xmlns='%s'><item affiliation='admin' jid='%s' "
                        "role='@?@' nick='@?@'/></query>" % (NS_ADMIN, r.bare)))
        iq(j, rj, "get", "<query xmlns='%s'><item affiliation='owner'/></query>" % NS_ADMIN,
           "a3", result(rj, j.jid, "a3", "<query xmlns='%s'><item affiliation='owner' jid='%s' "
                        "role='@?@' nick='@?@'/></query>" % (NS_ADMIN, j.bare)))
        # an admin may not make owners (10.3: only owners)
        denied(r, rj, "<query xmlns='%s'>%s</query>" % (NS_ADMIN, item_aff("owner", n.bare)),
               "a4")
        # the last owner stays (10.4)
        iq(j, rj, "set", "<query xmlns='%s'>%s</query>" % (NS_ADMIN, item_aff("member", j.bare)),
           "a5", Err("iq", rj, j.jid, "a5", "cancel", "conflict"))
        iq(j, rj, "set", "<query xmlns='%s'>%s</query>" % (NS_ADMIN, item_aff("owner", n.bare)),
           "a6", result(rj, j.jid, "a6"))
        iq(j, rj, "get", "<query xmlns='%s'><item affiliation='owner'/></query>" % NS_ADMIN,
           "a7", result(rj, j.jid, "a7", "<query xmlns='%s'><item affiliation='owner' jid='%s' "
                        "role='@?@' nick='@?@'/><item affiliation='owner' jid='%s' role='@?@' "
                        "nick='@?@'/></query>" % (NS_ADMIN, j.bare, n.bare)))
        # 10.4: owners see the owner list; a participant may not (forbidden)
        for o in (j, r, n):
            o.close()


@checked
def test_config_change_notifications():
    """10.2.1: a configuration change that is not about privacy gives
    the occupants a message with 104; making the room non-anonymous
    gives 172 (Prosody and ejabberd send these as a groupchat message
    from the room); the archive switched off is a plain change (104)."""
    with server() as s:
        j, r, rj = two_in_room(s)

        def note(o, code):
            return X("<message from='%s' id='@?@' to='%s' type='groupchat'><x xmlns='%s'>"
                     "<status code='%d'/></x></message>" % (rj, o.jid, NS_USER, code))
        configure(j, rj, {"muc#roomconfig_roomname": "Renamed"}, "c1")
        r.expect(note(r, 104))
        configure(j, rj, NON_ANON, "c2")
        r.expect(X("<message from='%s' id='@?@' to='%s' type='groupchat'><x xmlns='%s'>"
                   "<status _opt='1' code='104'/><status code='172'/></x></message>"
                   % (rj, r.jid, NS_USER)))
        # archiving off: a change, but not XEP-0045's public logging:
        # 104 (xmppd); Prosody 0.12 (mod_muc_mam) says 171 for it,
        # though it sends no 170 on entering an archived room: either
        configure(j, rj, {"muc#roomconfig_enablearchiving": "0"}, "c3")
        got = r.expect(re.compile("<message .*", re.S))
        assert note(r, 104).fullmatch(got) or note(r, 171).fullmatch(got), got
        j.close()
        r.close()


@checked
def test_destroy_with_alternate_venue():
    """10.9: the owner destroys the room with an alternate venue and a
    reason: every occupant gets unavailable (affiliation and role none)
    with <destroy jid=...><reason/></destroy>; the owner's IQ a result;
    the room is gone (a join creates a new one: 201); a non-owner
    destroying: forbidden."""
    with server() as s:
        j, r, rj = two_in_room(s)
        iq(r, rj, "set", "<query xmlns='%s'><destroy/></query>" % NS_OWNER, "d0",
           Err("iq", rj, r.jid, "d0", "auth", "forbidden"))
        alt = room("newcoven")
        j.send("<iq to='%s' type='set' id='d1'><query xmlns='%s'><destroy jid='%s'>"
               "<reason>Macbeth doth come</reason></destroy></query></iq>" % (rj, NS_OWNER, alt))
        d = "<destroy jid='%s'><reason>Macbeth doth come</reason></destroy>" % alt
        r.expect(occ_pres(rj, "Romeo", r.jid, item("none", "none"), (110,), "unavailable",
                          x_extra=d))
        j.expect(occ_pres(rj, "Juliet", j.jid, item("owner", "none"), (110,), "unavailable",
                          x_extra=d))
        j.expect(result(rj, j.jid, "d1"))
        r.send(join_stanza(rj, "Romeo"))
        r.expect(occ_pres(rj, "Romeo", r.jid, item("owner", "moderator", r.jid), (110, 201)))
        j.close()
        r.close()


# ---- 7.8: invitations ---------------------------------------------------

@checked
def test_mediated_invitation_and_decline():
    """7.8.2: an occupant invites through the room: the invitee's bare
    JID gets a message from the room with <invite from='inviter'/> (a
    non-anonymous room: the inviter's real JID), the reason, and the
    password of a protected room (the room adds it); a decline goes back
    to the inviter from the room with the decliner's JID (the XEP's
    example has the bare JID, Prosody the full one: either)."""
    with server() as s:
        j, r, rj = two_in_room(s, config={"muc#roomconfig_passwordprotectedroom": "1",
                                          "muc#roomconfig_roomsecret": "cauldron",
                                          "muc#roomconfig_whois": "anyone"},
                               inner="<password>cauldron</password>")
        n = user(s, "nurse")
        r.send("<message to='%s' id='i1'><x xmlns='%s'><invite to='%s'><reason>Come, nurse"
               "</reason></invite></x></message>" % (rj, NS_USER, n.bare))
        # Prosody and ejabberd add a body for clients without MUC, and
        # Prosody an XEP-0249 <x/> too: both optional; the invitee's own
        # archive may add its stanza-id (Prosody; imlib removes xmppd's)
        n.expect(X("<message from='%s' id='@?@' to='%s'><x xmlns='%s'><invite from='%s'>"
                   "<reason>Come, nurse</reason></invite><password>cauldron</password></x>"
                   "<body _opt='1'>@@</body><x _opt='1' xmlns='%s' jid='%s' reason='@?@' "
                   "password='@?@'>@@</x><stanza-id _opt='1' xmlns='%s' id='@@' by='%s'/>"
                   "</message>" % (rj, n.bare, NS_USER, r.jid, NS_CONF, rj, NS_SID, n.bare)))
        n.send("<message to='%s' id='i2'><x xmlns='%s'><decline to='%s'><reason>Busy"
               "</reason></decline></x></message>" % (rj, NS_USER, r.jid))
        r.expect(X("<message from='%s' id='@?@' to='%s'><x xmlns='%s'><decline from='%s'>"
                   "<reason>Busy</reason></decline></x><body _opt='1'>@@</body>"
                   "<stanza-id _opt='1' xmlns='%s' id='@@' by='%s'/></message>"
                   % (rj, r.jid, NS_USER, n.bare + "@@", NS_SID, r.bare)))
        for o in (j, r, n):
            o.close()


@checked
def test_members_only_invitation_needs_permission():
    """7.8.2/9.3: in a members-only room where occupants may not invite
    (muc#roomconfig_allowinvites=0), a participant's invitation is
    forbidden; an admin's makes the invitee a member (Prosody and
    ejabberd), who can then enter."""
    with server() as s:
        j = user(s, "juliet")
        r = user(s, "romeo")
        n = user(s, "nurse")
        rj = create(j, "inner", "Juliet", {"muc#roomconfig_membersonly": "1",
                                           "muc#roomconfig_allowinvites": "0"})
        iq(j, rj, "set", "<query xmlns='%s'>%s</query>" % (NS_ADMIN, item_aff("member", r.bare)),
           "m1", result(rj, j.jid, "m1"))
        enter(r, rj, "Romeo", item("member", "participant"),
              others=[occ_pres(rj, "Juliet", r.jid, item("owner", "moderator"))])
        r.send("<message to='%s' id='i1'><x xmlns='%s'><invite to='%s'/></x></message>"
               % (rj, NS_USER, n.bare))
        r.expect(Err("message", rj, r.jid, "i1", "auth", "forbidden"))
        j.drain(0.3)
        j.send("<message to='%s' id='i2'><x xmlns='%s'><invite to='%s'/></x></message>"
               % (rj, NS_USER, n.bare))
        n.expect(re.compile("<message [^>]*from='%s'.*<invite .*" % re.escape(rj), re.S))
        enter(n, rj, "Nurse", item("member", "participant"),
              others=[occ_pres(rj, "Juliet", n.jid, item("owner", "moderator")),
                      occ_pres(rj, "Romeo", n.jid, item("member", "participant"))])
        for o in (j, r, n):
            o.close()


@checked
def test_direct_invitation_passes_through():
    """XEP-0249: a direct invitation is a message between the users; the
    server passes it unchanged (from stamped) and the room is not
    involved."""
    with server() as s:
        j = user(s, "juliet")
        rj = room("coven")
        n = user(s, "nurse")
        j.send("<message to='%s' id='di'><x xmlns='%s' jid='%s' password='cauldron' "
               "reason='Hie you' continue='true' thread='e0ffe42b'/></message>"
               % (n.bare, NS_CONF, rj))
        # (Prosody's personal archive adds its stanza-id by the account;
        # xmppd's is taken out by imlib)
        n.expect(X("<message from='%s' id='di' to='%s'><x xmlns='%s' jid='%s' password='cauldron' "
                   "reason='Hie you' continue='true' thread='e0ffe42b'/><stanza-id _opt='1' "
                   "xmlns='%s' id='@@' by='%s'/></message>"
                   % (j.jid, n.bare, NS_CONF, rj, NS_SID, n.bare)))
        j.close()
        n.close()


# ---- XEP-0410, XEP-0421 --------------------------------------------------

@checked
def test_self_ping():
    """XEP-0410 section 3: a ping to one's own occupant JID is answered
    by the service (a result from the occupant JID) while joined; after
    leaving, or with someone else's nick, not-acceptable (type
    cancel); the pinged occupant's client never sees the ping
    (self-ping-optimization)."""
    with server() as s:
        j, r, rj = two_in_room(s)
        iq(r, rj + "/Romeo", "get", "<ping xmlns='%s'/>" % NS_PING, "sp1",
           result(rj + "/Romeo", r.jid, "sp1"))
        b = user(s, "benvolio")
        iq(b, rj + "/Romeo", "get", "<ping xmlns='%s'/>" % NS_PING, "sp2",
           Err("iq", rj + "/Romeo", b.jid, "sp2", "cancel", "not-acceptable"))
        # neither ping reached romeo's client
        r.quiet(0.5, re.compile(".*urn:xmpp:ping.*", re.S))
        leave(r, rj, "Romeo")
        r.expect(occ_pres(rj, "Romeo", r.jid, item("none", "none"), (110,), "unavailable"))
        iq(r, rj + "/Romeo", "get", "<ping xmlns='%s'/>" % NS_PING, "sp3",
           Err("iq", rj + "/Romeo", r.jid, "sp3", "cancel", "not-acceptable"))
        for o in (j, r, b):
            o.close()


def oid_of(text):
    return tree(text).find("{%s}occupant-id" % NS_OID).get("id")


@checked
def test_occupant_id():
    """XEP-0421: one opaque id per user per room, the same in its
    presence and messages as every occupant sees them and across nick
    changes and rejoins from another resource; different users have
    different ids; a forged <occupant-id/> from the client is replaced
    (section 4)."""
    with server() as s:
        j, r, rj = two_in_room(s, config=NON_ANON)
        r.send("<message to='%s' type='groupchat' id='o1'><body>forge</body>"
               "<occupant-id xmlns='%s' id='juliets'/></message>" % (rj, NS_OID))
        a = oid_of(j.expect(gc(rj, "Romeo", j.jid, "forge", "o1")))
        b = oid_of(r.expect(gc(rj, "Romeo", r.jid, "forge", "o1")))
        assert a == b and a != "juliets", (a, b)
        say(j, rj, "mine", "o2")
        jo = oid_of(r.expect(gc(rj, "Juliet", r.jid, "mine", "o2")))
        assert jo != a, jo
        r.send("<presence to='%s/Romy'/>" % rj)
        p = j.expect(occ_pres(rj, "Romy", j.jid, item("none", "participant", r.jid)))
        assert oid_of(p) == a
        r2 = user(s, "romeo", "other")
        enter(r2, rj, "Romeo2", item("none", "participant", r2.jid), (110, 100),
              others=[occ_pres(rj, "Juliet", r2.jid, item("owner", "moderator", j.jid)),
                      occ_pres(rj, "Romy", r2.jid, item("none", "participant", r.jid))],
              hist=[history(rj, "Romeo", r2.jid, "forge"), history(rj, "Juliet", r2.jid, "mine")])
        p = j.expect(occ_pres(rj, "Romeo2", j.jid, item("none", "participant", r2.jid)))
        assert oid_of(p) == a, "same bare JID, same occupant id"
        for o in (j, r, r2):
            o.close()


# ---- XEP-0313 on rooms -----------------------------------------------------

_RES = re.compile(r"<message [^>]*>\s*<result xmlns='urn:xmpp:mam:2'.*", re.S)


def mam_query(im, rj, qid, rsm="", form=""):
    """A query to the room's archive; returns ([(archive id, inner
    message tree)], fin tree)."""
    im.send("<iq to='%s' type='set' id='%s'><query xmlns='%s' queryid='%s'>%s%s</query></iq>"
            % (rj, qid, NS_MAM, qid, form, rsm))
    out = []
    while True:
        st = im.next()
        t = tree(st)
        if t.tag == "{jabber:client}iq":
            assert t.get("id") == qid and t.get("type") == "result", st
            assert t.get("from") == rj, st
            return out, t.find("{%s}fin" % NS_MAM)
        assert t.get("from") == rj and t.get("to") == im.jid, st
        res = t.find("{%s}result" % NS_MAM)
        assert res is not None and res.get("queryid") == qid, st
        fwd = res.find("{urn:xmpp:forward:0}forwarded")
        # XEP-0297: the delay of archiving, then the message as the
        # room sent it (groupchat, with its occupant id)
        assert fwd is not None and fwd.find("{%s}delay" % NS_DELAY) is not None, st
        m = fwd.find("{jabber:client}message")
        assert m is not None and m.get("type") == "groupchat", st
        assert m.find("{%s}occupant-id" % NS_OID) is not None, st
        out.append((res.get("id"), m))


def bodies(res):
    return [m.findtext("{jabber:client}body") for _, m in res]


@checked
def test_room_mam_paging():
    """XEP-0313 section 4 on a room JID: an occupant queries the room's
    archive, pages of 2 forward with RSM (XEP-0059) until complete; each
    result is from the room, the forwarded message from the sender's
    occupant JID (semi-anonymous: no real JID); the archive ids are the
    stanza-ids the occupants got (XEP-0359)."""
    with server() as s:
        j, r, rj = two_in_room(s)
        sids = []
        for i in range(5):
            say(j, rj, "m%d" % i, "mm%d" % i)
            got = r.expect(gc(rj, "Juliet", r.jid, "m%d" % i, "mm%d" % i))
            sids.append(tree(got).find("{%s}stanza-id" % NS_SID).get("id"))
        j.drain(0.3)
        seen, after, pages = [], None, 0
        while True:
            rsm = "<set xmlns='%s'><max>2</max>%s</set>" % (
                NS_RSM, "<after>%s</after>" % after if after else "")
            res, fin = mam_query(r, rj, "q%d" % pages, rsm)
            pages += 1
            assert len(res) <= 2, bodies(res)
            for aid, m in res:
                assert m.get("from") == rj + "/Juliet", ET.tostring(m)
            seen += res
            last = fin.find("{%s}set/{%s}last" % (NS_RSM, NS_RSM))
            if fin.get("complete") == "true":
                break
            assert last is not None and pages < 5, ET.tostring(fin)
            after = last.text
        assert bodies(seen) == ["m%d" % i for i in range(5)], bodies(seen)
        assert [a for a, _ in seen] == sids
        assert pages == 3, pages
        # backwards: the last page first (<before/>)
        res, fin = mam_query(r, rj, "qb", "<set xmlns='%s'><max>2</max><before/></set>" % NS_RSM)
        assert bodies(res) == ["m3", "m4"], bodies(res)
        j.close()
        r.close()


@checked
def test_room_mam_members_only_forbidden():
    """XEP-0313 section 4 / XEP-0045 members-only: a non-member querying
    a members-only room's archive gets forbidden (type auth); a member
    gets the messages."""
    with server() as s:
        j = user(s, "juliet")
        rj = create(j, "inner", "Juliet", {"muc#roomconfig_membersonly": "1"})
        say(j, rj, "secret", "x1")
        j.expect(gc(rj, "Juliet", j.jid, "secret", "x1"))
        b = user(s, "benvolio")
        iq(b, rj, "set", "<query xmlns='%s' queryid='f'/>" % NS_MAM, "q1",
           Err("iq", rj, b.jid, "q1", "auth", "forbidden"))
        iq(j, rj, "set", "<query xmlns='%s'>%s</query>" % (NS_ADMIN, item_aff("member", b.bare)),
           "m1", result(rj, j.jid, "m1"))
        res, fin = mam_query(b, rj, "q2")
        assert bodies(res) == ["secret"], bodies(res)
        j.close()
        b.close()


# ---- rooms kept, rooms gone, a worker crash --------------------------------

@not_prosody("restarts xmppd")
@checked
def test_persistent_room_survives_restart():
    """A persistent room (muc#roomconfig_persistentroom=1) is still there
    after a restart of the server, empty, with its configuration, its
    affiliations, its subject and its history; a temporary one (the
    default, 10.1.2) is gone once its last occupant left (XEP-0045
    section 4: 'destroyed if the last occupant exits')."""
    from test_storage import restart
    with server() as s:
        j = user(s, "juliet")
        rj = create(j, "keep", "Juliet", {"muc#roomconfig_persistentroom": "1",
                                          "muc#roomconfig_roomname": "Kept",
                                          "muc#roomconfig_publicroom": "1"})
        iq(j, rj, "set", "<query xmlns='%s'>%s</query>" % (NS_ADMIN, item_aff("member", "romeo@localhost")),
           "m1", result(rj, j.jid, "m1"))
        j.send("<message to='%s' type='groupchat' id='s1'><subject>Kept</subject></message>" % rj)
        j.expect(subject_change(rj, "Juliet", j.jid, "Kept", "s1"))
        say(j, rj, "remember me", "k1")
        j.expect(gc(rj, "Juliet", j.jid, "remember me", "k1"))
        tmp = create(j, "fleeting", "Juliet")
        leave(j, tmp, "Juliet")
        j.expect(occ_pres(tmp, "Juliet", j.jid, item("owner", "none", j.jid), (110,), "unavailable"))
        # gone at once: disco#info of it is item-not-found (6.4)
        iq(j, tmp, "get", "<query xmlns='%s'/>" % NS_DISCO_INFO, "t1",
           Err("iq", tmp, j.jid, "t1", "cancel", "item-not-found"))
        j.close()
        restart(s)
        r = user(s, "romeo")
        t = disco(r, SERVICE, NS_DISCO_ITEMS, "i1")
        items = [(i.get("jid"), i.get("name")) for i in t.iter("{%s}item" % NS_DISCO_ITEMS)]
        assert items == [(rj, "Kept")], items
        enter(r, rj, "Romeo", item("member", "participant"),
              hist=[history(rj, "Juliet", r.jid, "remember me")],
              subject="Kept", subject_nick="Juliet")
        r.close()


def room_owned_by(slot, workers, prefix):
    """A room JID whose owner worker (DESIGN.md "Group chat": FNV-1a of
    the room JID, mod the worker count) is slot."""
    for i in range(1000):
        rj = room("%s%d" % (prefix, i))
        h = 2166136261
        for c in rj.lower().encode():
            h = ((h ^ c) * 16777619) & 0xffffffff
        if h % workers == slot:
            return rj
    raise AssertionError("no room name for slot %d" % slot)


def crash_scenario(room_slot):
    """juliet on worker 0, romeo on worker 1, the room owned by
    room_slot; worker 1 is killed.  juliet sees romeo leave (status 333,
    "removed for technical reasons", optional), the room goes on, romeo
    logged in again re-enters."""
    with server() as s:
        j = IM(s, "juliet", "r", client=connect_on(s, 0))
        j.send("<presence/>")
        assert j.echo_seen()
        r = IM(s, "romeo", "r", client=connect_on(s, 1))
        r.send("<presence/>")
        assert r.echo_seen()
        name = room_owned_by(room_slot, 2, "sturdy").split("@")[0]
        rj = create(j, name, "Juliet", {"muc#roomconfig_persistentroom": "1"})
        enter(r, rj, "Romeo", item("none", "participant"),
              others=[occ_pres(rj, "Juliet", r.jid, item("owner", "moderator"))])
        j.expect(occ_pres(rj, "Romeo", j.jid, item("none", "participant", r.jid)))
        os.kill(s.status()["workers"][1]["pid"], signal.SIGKILL)
        j.expect(occ_pres(rj, "Romeo", j.jid, item("none", "none", r.jid), (), "unavailable",
                          "<status _opt='1'>@@</status>",
                          x_extra="<status _opt='1' code='333'/>"), timeout=15)
        wait_for(s.status_ok, timeout=20, what="the killed worker respawned")
        say(j, rj, "still here", "c1")
        j.expect(gc(rj, "Juliet", j.jid, "still here", "c1"))
        r2 = user(s, "romeo", "again")
        enter(r2, rj, "Romeo", item("none", "participant"),
              others=[occ_pres(rj, "Juliet", r2.jid, item("owner", "moderator"))],
              hist=[history(rj, "Juliet", r2.jid, "still here")])
        j.expect(occ_pres(rj, "Romeo", j.jid, item("none", "participant", r2.jid)))
        j.close()
        r2.close()


@not_prosody("kills an xmppd worker")
@checked
def test_worker_crash_occupant():
    """The issue: a worker crash must not lose the room, and occupants on
    other workers see the crashed worker's occupants leave.  Here the
    killed worker held an occupant; the room lives on the other one."""
    crash_scenario(room_slot=0)


@not_prosody("kills an xmppd worker")
@checked
def test_worker_crash_occupant_and_room():
    """The same, when the killed worker held both the occupant and the
    room (its owner worker): juliet, on the surviving worker, must still
    see romeo leave."""
    crash_scenario(room_slot=1)


# ---- xmppd's limits (muc.* settings) --------------------------------------



@xmppd_only
@checked
def test_limit_occupants_per_room():
    """muc.max_occupants: a room at the server's limit refuses the next
    user with service-unavailable type wait (7.2 "Max Users"), whatever the
    room's own maxusers."""
    with server({SET_MAX_OCCUPANTS: "2"}) as s:
        j, r, rj = two_in_room(s)
        n = user(s, "nurse")
        n.send(join_stanza(rj, "Nurse", id_="f1"))
        n.expect(join_err(rj + "/Nurse", n.jid, "f1", "wait", "service-unavailable"))
        j.quiet(0.5, re.compile(".*Nurse.*", re.S))
        leave(r, rj, "Romeo")
        r.expect(occ_pres(rj, "Romeo", r.jid, item("none", "none"), (110,), "unavailable"))
        enter(n, rj, "Nurse", item("none", "participant"),
              others=[occ_pres(rj, "Juliet", n.jid, item("owner", "moderator"))])
        for o in (j, r, n):
            o.close()


@xmppd_only
@checked
def test_limit_message_rate():
    """muc.messages_per_minute: an occupant sending faster gets
    resource-constraint (type wait) for the excess; what it sent within
    the rate reaches the room; later it may talk again.  (40 a minute:
    a burst of 4, then one every 1.5 s.)"""
    with server({SET_MSG_RATE: "40"}) as s:
        j, r, rj = two_in_room(s)
        for i in range(10):
            say(r, rj, "spam %d" % i, "sp%d" % i)
        errs = 0
        ok = 0
        deadline = time.monotonic() + 5
        while errs + ok < 10 and time.monotonic() < deadline:
            st = r.next()
            if Err("message", rj, r.jid, None, "wait", "resource-constraint").fullmatch(st):
                errs += 1
            elif gc(rj, "Romeo", r.jid, "@@").fullmatch(st):
                ok += 1
        assert errs >= 5 and ok >= 1 and errs + ok == 10, (errs, ok)
        time.sleep(1.5)
        say(r, rj, "calm", "calm")
        j.expect(gc(rj, "Romeo", j.jid, "calm", "calm"))
        j.close()
        r.close()


@xmppd_only
@checked
def test_limit_rooms():
    """muc.max_rooms: past the number of rooms of the service, a join
    that would create one gets resource-constraint, type wait (as
    Prosody's muc_max_rooms answers); joining an existing room still
    works."""
    with server({SET_MAX_ROOMS: "2"}) as s:
        j = user(s, "juliet")
        r1 = create(j, "one", "Juliet")
        create(j, "two", "Juliet")
        j.send(join_stanza(room("three"), "Juliet", id_="r3"))
        j.expect(join_err(room("three") + "/Juliet", j.jid, "r3", "wait", "resource-constraint"))
        r = user(s, "romeo")
        enter(r, r1, "Romeo", item("none", "participant"),
              others=[occ_pres(r1, "Juliet", r.jid, item("owner", "moderator"))])
        j.close()
        r.close()


@xmppd_only
@checked
def test_limit_history():
    """muc.history_max: the history sent on entering is at most that
    many messages (the last ones), whatever maxstanzas asks ("Managing Discussion History":
    the service may send less than asked)."""
    with server({SET_MAX_HISTORY: "3"}) as s:
        j, rj = room_with_history(s, 5)
        r = user(s, "romeo")
        assert entered_history(r, rj, "Romeo", "<history maxstanzas='100'/>") == \
            ["line 2", "line 3", "line 4"]
        j.close()
        r.close()


@xmppd_only
@checked
def test_service_name_setting():
    """muc.service: the service lives at <name>.<domain>."""
    with server({"muc.service": "rooms"}) as s:
        j = user(s, "juliet")
        t = disco(j, "localhost", NS_DISCO_ITEMS, "d1")
        jids = [i.get("jid") for i in t.iter("{%s}item" % NS_DISCO_ITEMS)]
        assert "rooms.localhost" in jids and SERVICE not in jids, jids
        rj = "coven@rooms.localhost"
        j.send(join_stanza(rj, "Juliet"))
        j.expect(occ_pres(rj, "Juliet", j.jid, item("owner", "moderator", j.jid), (110, 201)))
        j.close()


@xmppd_only
@checked
def test_voice_request():
    """7.13 "Requesting Voice": a visitor in a moderated room sends the
    muc#request form; the moderators get the approval form with its
    nick and real JID; a moderator's form with muc#request_allow true
    makes it a participant (8.6 "Granting Voice to a Visitor", with
    the moderator as actor), and its messages then reach the room."""
    with server() as s:
        j = user(s, "juliet")
        r = user(s, "romeo")
        rj = create(j, "stage", "Juliet", {"muc#roomconfig_moderatedroom": "1"})
        enter(r, rj, "Romeo", item("none", "visitor"),
              others=[occ_pres(rj, "Juliet", r.jid, item("owner", "moderator"))])
        j.expect(occ_pres(rj, "Romeo", j.jid, item("none", "visitor", r.jid)))
        r.send("<message to='%s'><x xmlns='jabber:x:data' type='submit'>"
               "<field var='FORM_TYPE'><value>%s</value></field>"
               "<field var='muc#role'><value>participant</value></field></x></message>"
               % (rj, NS_MUC + "#request"))
        form = j.expect(re.compile(r"<message to='%s' from='%s'><x xmlns='jabber:x:data' "
                                   r"type='form'>.*</message>" % (re.escape(j.jid),
                                                                  re.escape(rj)), re.S))
        assert "<field var='muc#roomnick' type='text-single' label='Room Nickname'>" \
               "<value>Romeo</value>" in form, form
        assert "<value>%s</value>" % r.jid in form, form   # moderators see it
        j.send("<message to='%s'><x xmlns='jabber:x:data' type='submit'>"
               "<field var='FORM_TYPE'><value>%s</value></field>"
               "<field var='muc#roomnick'><value>Romeo</value></field>"
               "<field var='muc#request_allow'><value>true</value></field></x></message>"
               % (rj, NS_MUC + "#request"))
        p = r.expect(re.compile(r"<presence to='%s' from='%s/Romeo'>.*role='participant'.*"
                                % (re.escape(r.jid), re.escape(rj)), re.S))
        assert "<actor nick='Juliet'/>" in p and "<status code='110'/>" in p, p
        j.expect(re.compile(r"<presence to='%s' from='%s/Romeo'>.*role='participant'.*"
                            % (re.escape(j.jid), re.escape(rj)), re.S))
        say(r, rj, "thank you", "v1")
        j.expect(gc(rj, "Romeo", j.jid, "thank you", "v1"))
        # a participant asking for nothing it lacks: bad-request
        r.send("<message to='%s' id='v2'><x xmlns='jabber:x:data' type='submit'>"
               "<field var='FORM_TYPE'><value>%s</value></field>"
               "<field var='muc#role'><value>participant</value></field></x></message>"
               % (rj, NS_MUC + "#request"))
        r.expect(Err("message", rj, r.jid, "v2", "modify", "bad-request"))
        j.close()
        r.close()


@xmppd_only
@checked
def test_deleted_account_loses_affiliation():
    """An account deleted (xmppctl user del) loses its affiliations in
    every room, as ejabberd's mod_muc does: whoever registers the name
    again enters as nobody in particular, not as the old admin."""
    from test_storage import restart
    with server() as s:
        j = user(s, "juliet")
        rj = create(j, "club", "Juliet", {"muc#roomconfig_persistentroom": "1"})
        iq(j, rj, "set", "<query xmlns='%s'>%s</query>" % (NS_ADMIN, item_aff("admin", "romeo@localhost")),
           "a1", result(rj, j.jid, "a1"))
        leave(j, rj, "Juliet")
        j.close()
        s.ctl_config("user", "del", "romeo@localhost")
        s.add_user("romeo@localhost", PW["romeo"])
        restart(s)      # the room is read afresh from the database
        r = user(s, "romeo")
        enter(r, rj, "Romeo", item("none", "participant"))
        r.close()


@xmppd_only
@checked
def test_admin_set_all_or_nothing():
    """An admin set is done whole or not at all: two items that together
    would leave the room without an owner get conflict (10.8 "the last
    owner"), and neither is done."""
    with server() as s:
        j = user(s, "juliet")
        rj = create(j, "pair", "Juliet")
        iq(j, rj, "set", "<query xmlns='%s'>%s</query>" % (NS_ADMIN, item_aff("owner", "romeo@localhost")),
           "o1", result(rj, j.jid, "o1"))
        iq(j, rj, "set", "<query xmlns='%s'>%s%s</query>" % (
            NS_ADMIN, item_aff("admin", "romeo@localhost"), item_aff("admin", "juliet@localhost")),
           "o2", Err("iq", rj, j.jid, "o2", "cancel", "conflict"))
        got = tree(iq(j, rj, "get", "<query xmlns='%s'><item affiliation='owner'/></query>"
                      % NS_ADMIN, "o3"))
        owners = sorted(i.get("jid") for i in got.iter("{%s}item" % NS_ADMIN))
        assert owners == ["juliet@localhost", "romeo@localhost"], owners
        j.close()


if __name__ == "__main__":
    only = sys.argv[1:]
    tests = [f for n, f in list(globals().items()) if n.startswith("test_") and callable(f)]
    run_tests([t for t in tests if not only or t.__name__ in only])

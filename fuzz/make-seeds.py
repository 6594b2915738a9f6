#!/usr/bin/python3
"""fuzz/make-seeds.py - write the binary seed files of fuzz/corpus/ that
cannot be copied from tests/: SASL exchanges (sasl), queue datagrams
(frame), TLS 1.3 record scripts (tls13), HTTP requests (http) and the
XEP-0198 hand-over payloads, previds and h values (sm).  The files are committed;
run this again only when a harness's input format changes:

    /usr/bin/python3 fuzz/make-seeds.py

The formats are described at the top of each fuzz/fuzz_<target>.c."""
import base64
import hashlib
import hmac
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- sasl: flags byte, client-first, 0xff, client-final ----------------
SALT = b"fuzz-salt-16byte"
CB = b"\x42" * 32


def scram_final(hname, first_bare, server_first, without_proof):
    h = getattr(hashlib, hname)
    sp = hashlib.pbkdf2_hmac(hname, b"pencil", SALT, 1)
    ck = hmac.new(sp, b"Client Key", h).digest()
    sk = h(ck).digest()
    auth = b",".join([first_bare, server_first, without_proof])
    sig = hmac.new(sk, auth, h).digest()
    proof = bytes(a ^ b for a, b in zip(ck, sig))
    return without_proof + b",p=" + base64.b64encode(proof)


def sasl_seed(name, flags, gs2, bare, cb=None, good=True):
    hname = "sha256" if flags & 1 else "sha1"
    cnonce = bare.rsplit(b",r=", 1)[1]
    nonce = cnonce + b"fuzzsrvnonce"
    server_first = (b"r=" + nonce + b",s=" + base64.b64encode(SALT) +
                    b",i=1")
    cbind = gs2 + (cb or b"")
    without = b"c=" + base64.b64encode(cbind) + b",r=" + nonce
    final = (scram_final(hname, bare, server_first, without) if good
             else without + b",p=" + base64.b64encode(b"\0" * 20))
    write("sasl", name, bytes([flags]) + gs2 + bare + b"\xff" + final)


sasl_seed("scram-sha1", 0x00, b"n,,", b"n=user,r=fyko+d2lbbFgONRv9qkxdawL")
sasl_seed("scram-sha256", 0x01, b"n,,", b"n=user,r=rOprNGfwEbeRWgbNEkqO")
sasl_seed("scram-sha256-autoproof", 0x11, b"n,,", b"n=user,r=abc")
sasl_seed("scram-bad-proof", 0x01, b"n,,", b"n=user,r=abc", good=False)
sasl_seed("scram-y-flag", 0x05, b"y,,", b"n=user,r=abc")
sasl_seed("scram-authzid", 0x01, b"n,a=user@example.com,",
          b"n=user,r=abc")
sasl_seed("scram-escaped-name", 0x01, b"n,,", b"n=us=2Cer=3D,r=abc")
sasl_seed("scram-extension", 0x01, b"n,,", b"m=ext,n=user,r=abc")
sasl_seed("scram-plus-exporter", 0x07, b"p=tls-exporter,,",
          b"n=user,r=abc", cb=CB)
sasl_seed("scram-plus-endpoint", 0x0b, b"p=tls-server-end-point,,",
          b"n=user,r=abc", cb=CB)
sasl_seed("scram-plus-autoproof", 0x17, b"p=tls-exporter,,",
          b"n=user,r=abc", cb=CB)
write("sasl", "scram-first-only", b"\x01n,,n=user,r=abc")
write("sasl", "plain", b"\x20\x00user\x00pencil")
write("sasl", "plain-authzid", b"\x20user@example.com\x00user\x00pencil")
write("sasl", "plain-wrong", b"\x20\x00user\x00pencil2")
write("sasl", "plain-utf8", b"\x20\x00j\xc3\xbcliet\x00p\xc3\xa4ss")


# ---- frame: mode byte, then records of <u16 length><bytes> -------------
def ipc_version():
    with open(os.path.join(HERE, "..", "shm", "ipc.h")) as f:
        for line in f:
            if line.startswith("#define IPC_VERSION "):
                return int(line.split()[2])
    raise SystemExit("IPC_VERSION not found in shm/ipc.h")


IPC_VERSION = ipc_version()


def frame(ftype, payload, src=1, flags=0, conn=7, gen=0x3fffffff, node=0,
          node_slot=0):
    return struct.pack("<BBBBIHBBII", 0x58, IPC_VERSION, ftype, flags,
                       len(payload), src, node, node_slot, conn,
                       gen) + payload


def records(*recs):
    return b"".join(struct.pack("<H", len(r)) + r for r in recs)


def ops(*codes):
    """gen naming the fields to read: 0 u8, 1 u16, 2 u32, 3 u64, 4 data,
    5 str, 6 rest, 7 stop."""
    g = 0
    for i, c in enumerate(codes + (7,)):
        g |= c << (3 * i)
    return g & 0xffffffff


def fdata(b):
    return struct.pack("<I", len(b)) + b


stanza = b"<message to='juliet@example.com'><body>hi</body></message>"
write("frame", "raw-stanza", b"\x00" + records(frame(1, stanza, gen=ops(6))))
write("frame", "raw-fields", b"\x00" + records(frame(
    3, struct.pack("<BHIQ", 1, 2, 3, 4) + fdata(b"user@example.com/r"),
    gen=ops(0, 1, 2, 3, 5))))
write("frame", "raw-two-per-dgram", b"\x00" + records(
    frame(1, stanza, gen=ops(6)) + frame(5, b"kick", gen=ops(4))))
write("frame", "raw-chunks", b"\x00" + records(
    frame(1, stanza[:20], flags=1, gen=ops(6)),
    frame(1, stanza[20:], gen=ops(6))))
write("frame", "raw-bad-then-good", b"\x00" + records(
    frame(1, b"x", src=9), frame(1, stanza, gen=ops(6))))
# slot 1 is the harness's cluster bridge: a frame from it may name a
# node; the same from slot 0 (a local worker) is dropped
write("frame", "raw-bridge-node", b"\x00" + records(
    frame(1, stanza, node=3, node_slot=1, gen=ops(6)),
    frame(1, stanza, src=0, node=3, node_slot=1, gen=ops(6))))
write("frame", "raw-truncated", b"\x00" + records(frame(1, stanza)[:-3]))
write("frame", "raw-empty-dgram", b"\x00" + records(b""))
write("frame", "round-trip", b"\x01" + records(b"\x00\x00" + stanza,
                                              b"\x04\x01kick"))
write("frame", "round-trip-chunked", b"\x01" + records(
    b"\x00\xff" + bytes(range(256)) * 2, b"\x01\x00x"))


# ---- tls13: suite byte, then operations (see fuzz_tls13.c) -------------
def op(kind, arg=0, data=None, extra=b""):
    b = bytes([kind | arg << 3]) + extra
    if data is not None:
        b += bytes([len(data)]) + data
    return b


APP = b"<message to='juliet@example.com'><body>hi</body></message>"
tls_seeds = {
    "app": op(0, 0, APP) + op(6),
    "app-pieces": op(0, 0, APP) + op(0, 0, APP) + op(6, 1),
    "key-update": op(0, 0, b"one") + op(2) + op(0, 0, b"two") + op(6),
    "key-update-requested": op(2, 1) + op(0, 0, APP) + op(6) +
    op(7, 0, b"reply"),
    "key-update-split": op(2, 3) + op(0, 0, APP) + op(6, 2),
    "server-sends-much": op(7, 31, APP) + op(0, 0, b"x") + op(6),
    "padding": op(1, 5, APP) + op(1, 31, b"") + op(6),
    "full-record": op(0, 27, APP[:35]) + op(6, 30),
    "record-overflow": op(0, 28, APP[:50]) + op(6),
    "close-notify": op(0, 0, b"bye") + op(3, 0, b"\x01\x00") + op(6),
    "user-canceled": op(3, 0, b"\x01\x5a") + op(6),
    "fatal-alert": op(3, 0, b"\x02\x28") + op(6),
    "raw-junk": op(4, 0, b"\x16\x03\x03\x00\x05hello") + op(6),
    "bad-inner-type": op(5, 0, b"hello", extra=b"\x63") + op(6),
    "handshake-not-keyupdate": op(5, 0, b"\x04\x00\x00\x00",
                                  extra=b"\x16") + op(6),
}
for suite in range(3):
    for name, ops_ in tls_seeds.items():
        if suite == 0 or name in ("app", "key-update-requested",
                                  "server-sends-much"):
            write("tls13", "%s-%d" % (name, suite), bytes([suite]) + ops_)


# ---- http: flags byte, chunk size - 1, then what a client sends -------
# flags: 1 small limits, 2 peer outside http.admin_addresses, 4 over
# http.max_connections, 8 TLS (fuzz/fuzz_http.c)
http_seeds = {
    "get-live": (0, 0, b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"),
    "head-and-404": (0, 6, b"HEAD /health/live HTTP/1.1\r\n\r\n"
                     b"GET /nope?a=b HTTP/1.1\r\nHost: y\r\n\r\n"),
    "pipelined-echo": (0, 2, b"POST /echo/a?q=1 HTTP/1.1\r\nHost: h\r\n"
                       b"Content-Length: 5\r\n\r\nhello"
                       b"PUT /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"3\r\nabc\r\n0\r\n\r\n"
                       b"DELETE /echo/x HTTP/1.1\r\nConnection: close\r\n\r\n"),
    "http10-keep-alive": (0, 3, b"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                          b"GET /echo HTTP/1.0\r\n\r\n"),
    "expect-continue": (0, 9, b"POST /echo HTTP/1.1\r\nExpect: 100-continue\r\n"
                        b"Content-Length: 2\r\n\r\nok"),
    "status-codes": (0, 12, b"GET /status?204 HTTP/1.1\r\n\r\n"
                     b"GET /status?304 HTTP/1.1\r\n\r\n"
                     b"GET /status?99 HTTP/1.1\r\n\r\n"
                     b"GET /status?503c HTTP/1.1\r\n\r\n"),
    "405-allow": (0, 0, b"OPTIONS /health/live HTTP/1.1\r\n\r\n"),
    "admin-403": (2, 0, b"GET /health/live HTTP/1.1\r\n\r\n"),
    "over-limit-503": (4, 0, b"GET /health/live HTTP/1.1\r\n\r\n"),
    "tls-echo": (8, 1, b"GET /echo HTTP/1.1\r\n\r\n"),
    "small-431": (1, 30, b"GET / HTTP/1.1\r\n" + b"X-A: 1\r\n" * 200 + b"\r\n"),
    "small-414": (1, 50, b"GET /" + b"u" * 300 + b" HTTP/1.1\r\n\r\n"),
    "small-413-chunked": (1, 7, b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"40\r\n" + b"z" * 64 + b"\r\n1\r\nz\r\n0\r\n\r\n"),
    "505": (0, 0, b"GET / HTTP/2.0\r\n\r\n"),
    "400-bad-header": (0, 0, b"GET / HTTP/1.1\r\nno colon\r\n\r\n"),
    "upgrade": (0, 4, b"GET /echo HTTP/1.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\n\r\n\x81\x85junk"),
    "absolute-form": (0, 0, b"GET http://example.com/echo/abs?x HTTP/1.1\r\n\r\n"
                      b"OPTIONS * HTTP/1.1\r\n\r\n"),
    "metrics-both-formats": (0, 5, b"GET /metrics HTTP/1.1\r\nAccept: "
                             b"application/openmetrics-text;version=1.0.0\r\n\r\n"
                             b"HEAD /metrics HTTP/1.1\r\n\r\n"
                             b"GET /metrics HTTP/1.1\r\n\r\n"),
    "health-any-peer": (2, 0, b"GET /health HTTP/1.1\r\n\r\n"
                        b"GET /metrics HTTP/1.1\r\n\r\n"),
}
for name, (flags, chunk, data) in http_seeds.items():
    write("http", name, bytes([flags, chunk]) + data)


# ---- sm: mode byte, then a payload or a text (see fuzz_sm.c) -----------
SM_GIVE_HEAD = "<IIIIIIIhBBq32IIIII"   # struct ipc_sm_give, 184 bytes


def sm_take(h, previd, bare):
    return struct.pack("<IHH", h, len(previd), len(bare)) + previd + bare


def sm_give(status=0, jid=b"", presence=b"", directed=(), stanzas=(),
            h_in=3, h_acked=5, h_sent=7, available=1):
    words = [0] * 32
    words[7] = 2
    head = struct.pack(SM_GIVE_HEAD, status, 12, 1, h_in, h_acked, h_sent,
                       300, 5, available, 2, 1733450000000, *words,
                       len(jid), len(presence), len(directed),
                       len(stanzas))
    if status != 0:
        return head
    body = jid + presence
    body += b"".join(struct.pack("<H", len(d)) + d for d in directed)
    body += b"".join(struct.pack("<I", len(s)) + s for s in stanzas)
    return head + body


PREVID = b"AAABAAAAAQAAAGJ6c1f0S2lYVf8rZ1xvBQ"   # 35 characters, no record
JID = b"juliet@example.com/balcony"
PRES = b"<presence><priority>5</priority></presence>"
MSG = (b"<message from='romeo@example.com/orchard' to='juliet@example.com'"
       b" type='chat'><body>wherefore</body></message>")
sm_seeds = {
    "take": b"\x00" + sm_take(5, PREVID, b"juliet@example.com"),
    "take-max-h": b"\x00" + sm_take(0xffffffff, PREVID, b"a@b"),
    "take-short": b"\x00" + sm_take(5, PREVID, b"juliet@example.com")[:-1],
    "give": b"\x01" + sm_give(jid=JID, presence=PRES,
                              directed=[b"<presence to='nurse@example.com'/>"],
                              stanzas=[MSG, MSG + b" ", b"<iq type='get' id='x'/>"]),
    "give-empty-journal": b"\x01" + sm_give(jid=JID, available=0),
    "give-not-found": b"\x01" + sm_give(status=1),
    "give-too-high": b"\x01" + sm_give(status=2, h_sent=9),
    "give-too-big": b"\x01" + sm_give(status=3),
    "give-trailing": b"\x01" + sm_give(jid=JID, stanzas=[MSG]) + b"\x00",
    "give-count-beyond": b"\x01" + sm_give(jid=JID, stanzas=[MSG])[:-4],
    "done": b"\x02",
    "done-payload": b"\x02x",
    "previd-garbage": b"\x03" + PREVID,
    "previd-long": b"\x03" + PREVID * 3,
    "previd-empty": b"\x03",
    "previd-issued": b"\x03\x01\x00",
    "previd-issued-1": b"\x03\x01\x01",
    "previd-freed": b"\x03\x01\x03",
    "previd-last-bits": b"\x03\x01\x00\x22\x01",
    "previd-longer": b"\x03\x01\x02\x23\x41",
    "previd-shorter": b"\x03\x01\x00\xff\x00",
    "previd-case": b"\x03\x01\x01\x00\x20\x05\x20",
    # cluster previds (byte 2 with bit 7: the issued id joined with a
    # node tag and a MAC): unchanged, a MAC byte changed, the '.' gone,
    # one character longer
    "previd-cluster": b"\x03\x01\x80",
    "previd-cluster-mac": b"\x03\x01\x81\x30\x01",
    "previd-cluster-dot": b"\x03\x01\x82\x23\x01",
    "previd-cluster-longer": b"\x03\x01\x80\x34\x41",
    "build": b"\x05" + bytes([len(PRES)]) + PRES + bytes([len(MSG)]) + MSG
             + b"\x03abc\x00",
}
for h in [b"5", b"+5", b" 5 ", b"\t\n+0005\r ", b"0", b"4294967295",
          b"004294967295", b"4294967296", b"-1", b"-0", b"0x5", b"",
          b" ", b"+", b"5 5", b"1e3", b"5.0", b"99999999999999999999"]:
    name = "h-" + (h.decode().strip().replace(" ", "_") or "empty")
    if h != h.strip():
        name += "-ws"
    sm_seeds[name] = b"\x04" + h
for name, data in sm_seeds.items():
    write("sm", name, data)


# ---- dirwire: a session directory batch (cluster/dirwire.h) -----------
def dir_hdr(kind, seq, count, node=b"node-2", last=0, part=0,
            inc=0x0102030405060708):
    return (struct.pack("<IBBBBQQII", 0x58445231, 1, kind, last, len(node),
                        inc, seq, part, count) + node)


def dir_rec(op, jid, conn=7, gen=3, rslot=1, flags=1, avail=1, prio=0,
            since=1765000000, caps=b""):
    return (struct.pack("<BBBBhIIqHB", op, rslot, flags, avail, prio, conn,
                        gen, since, len(jid), len(caps)) + jid + caps)


A = b"alice@example.org/phone"
B = b"bob@example.org/b\xc3\xbcro"
dir_seeds = {
    "events-one": dir_hdr(1, 1, 1) + dir_rec(1, A),
    "events-set-del": dir_hdr(1, 41, 2) + dir_rec(1, A) + dir_rec(2, B, flags=0, avail=0),
    "events-caps": dir_hdr(1, 9, 1) + dir_rec(1, A, caps=b"q07IKJEyjvHSyhy//CH0CxmKi8w="),
    "snapshot": dir_hdr(2, 40, 2, last=1) + dir_rec(1, A, prio=-5) + dir_rec(1, B, avail=0),
    "snapshot-del": dir_hdr(2, 40, 1, last=1) + dir_rec(2, A),
    "unprepared": dir_hdr(1, 1, 1) + dir_rec(1, b"Alice@Example.org/phone"),
    "count-high": dir_hdr(1, 1, 3) + dir_rec(1, A),
    "trailing": dir_hdr(1, 1, 1) + dir_rec(1, A) + b"\x00",
    "empty": dir_hdr(1, 1, 0),
}
for name, data in dir_seeds.items():
    write("dirwire", name, data)


# ---- relay: a frame batch or ack between nodes (cluster/relay.h) ------
def relay_hdr(kind, seq, count, node=b"n1", inc=0x1111, peer=0x2222):
    return (struct.pack("<IBBBBQQQII", 0x58464231, 1, kind, len(node), 0,
                        inc, peer, seq, count, 1) + node)


relay_seeds = {
    "frames-one": relay_hdr(1, 1, 1) + frame(1, b"<message to='a@x/r'/>"),
    "frames-two": relay_hdr(1, 7, 2) + frame(1, b"<message/>") + frame(2, b"<presence/>"),
    # acks: received, claim, then (from, to) holes within (seq, claim]
    "ack": relay_hdr(2, 41, 0) + struct.pack("<QQ", 45, 41),
    "ack-holes": relay_hdr(2, 41, 2) + struct.pack("<QQQQQQ", 60, 58, 43, 43,
                                                   50, 52),
    "ack-holes-unordered": relay_hdr(2, 41, 2) + struct.pack(
        "<QQQQQQ", 60, 58, 50, 52, 43, 43),
    "refused": relay_hdr(3, 41, 0) + struct.pack("<QQ", 41, 41),
    "frames-more": relay_hdr(1, 1, 1) + frame(1, b"<message/>", flags=1),
    "frames-short": relay_hdr(1, 1, 2) + frame(1, b"<message/>"),
}
for name, data in relay_seeds.items():
    write("relay", name, data)
# ---- cluster_hb: op bytes; 0x48+ takes one 120-byte heartbeat ----------
def heartbeat(node, inc, cluster=b"xmppd", flags=0, version=None, workers=2,
              sessions=3, dir_seq=0):
    return (b"XHB" + bytes([1, flags, len(node), len(cluster), 0]) +
            struct.pack("<QIIQQ", inc, IPC_VERSION if version is None else version,
                        workers, sessions, dir_seq) +
            node.ljust(32, b"\0") + cluster.ljust(32, b"\0") +
            struct.pack("<QQ", 0x0123456789abcdef, 7))


HB = 0x48
write("cluster_hb", "join-suspect-down",
      bytes([HB]) + heartbeat(b"n2", 1) + b"\x14\x14\x14")
write("cluster_hb", "restart-leave",
      bytes([HB]) + heartbeat(b"n2", 1) + bytes([HB]) + heartbeat(b"n2", 2) +
      bytes([HB]) + heartbeat(b"n2", 2, flags=1) + b"\x01")
write("cluster_hb", "incompatible",
      bytes([HB]) + heartbeat(b"n3", 5, version=IPC_VERSION + 1) +
      bytes([HB]) + heartbeat(b"n4", 6, cluster=b"other") + b"\x3f")
write("cluster_hb", "claim-and-link-lost",
      bytes([HB]) + heartbeat(b"self", 9) + bytes([HB]) +
      heartbeat(b"a-b_C", 7) + b"\x3f\x3f")
write("cluster_hb", "short", b"\x43XHB\x01\x00\x02\x05")
write("cluster_hb", "many",
      b"".join(bytes([HB]) + heartbeat(b"m%d" % i, i + 1) for i in range(70)))
# a forgotten node: down (two ticks past the timeout), then silent long
# enough to be freed (op & 2 forgets), and a new name taking a place
write("cluster_hb", "forget",
      bytes([HB]) + heartbeat(b"n2", 1) + b"\x3e\x3e\x3e\x3e" +
      bytes([HB]) + heartbeat(b"n5", 3) + b"\x02")
write("cluster_hb", "full-then-forget",
      b"".join(bytes([HB]) + heartbeat(b"m%d" % i, i + 1) for i in range(63)) +
      b"\x3e" * 4 + bytes([HB]) + heartbeat(b"late", 99))


# ---- cluster_fence: op < 0x40 moves the clock, else (op - 0x40) bytes --
def fence_stamp(node, run, seq, sent_ms):
    return node + bytes([len(node)]) + struct.pack("<QQQ", run, seq, sent_ms)


NOW = 1800000000000
def fenced(payload, *stamp):
    m = payload + fence_stamp(*stamp)
    return bytes([0x40 + len(m)]) + m


write("cluster_fence", "fresh-and-replay",
      fenced(b"sync", b"n2", 5, 1, NOW) + fenced(b"sync", b"n2", 5, 1, NOW) +
      fenced(b"", b"n2", 5, 2, NOW))
write("cluster_fence", "reorder-restart",
      fenced(b"x", b"n2", 5, 10, NOW) + fenced(b"x", b"n2", 5, 8, NOW) +
      fenced(b"x", b"n2", 9, 1, NOW) + fenced(b"x", b"n2", 5, 11, NOW))
write("cluster_fence", "old-clock",
      fenced(b"hb", b"n3", 5, 1, NOW - 3600000) + b"\x3f" +
      fenced(b"hb", b"a-b_C", 5, 1, NOW + 63000))
write("cluster_fence", "bad-names",
      fenced(b"", b"n.2", 1, 1, NOW) + bytes([0x40 + 25]) + b"\0" * 25)


# ---- pep_event: IPC_FRAME_PEP_EVENT's payload (worker/pep_wire.h) -----
def pep_event(owner, head, tail, node, bare):
    return (bytes([owner]) + struct.pack("<I", len(head)) + head +
            struct.pack("<I", len(tail)) + tail + node + b"\0" + bare)


PEP_HEAD = b"<message from='juliet@x' to='"
PEP_TAIL = (b"' type='headline' id='pep-1'><event xmlns='http://jabber.org/"
            b"protocol/pubsub#event'><items node='urn:xmpp:tune'><item id='1'/>"
            b"</items></event></message>")
write("pep_event", "tune", pep_event(0, PEP_HEAD, PEP_TAIL, b"urn:xmpp:tune",
                                      b"romeo@x"))
write("pep_event", "own", pep_event(1, PEP_HEAD, PEP_TAIL,
                                     b"urn:xmpp:avatar:metadata", b"juliet@x"))
write("pep_event", "nul-in-head", pep_event(0, b"<message\0to='", PEP_TAIL,
                                             b"n", b"romeo@x"))
write("pep_event", "full-jid", pep_event(0, PEP_HEAD, PEP_TAIL, b"n",
                                          b"romeo@x/r"))
write("pep_event", "short", pep_event(0, PEP_HEAD, PEP_TAIL, b"n", b"")[:20])


# ---- muc_fanout: IPC_FRAME_MUC_FANOUT's payload (shm/ipc.h) -----------
def muc_fanout(text, rcpts, count=None):
    out = struct.pack("<II", len(text), len(rcpts) if count is None else count)
    out += text
    for conn, gen, jid in rcpts:
        out += struct.pack("<III", conn, gen, len(jid)) + jid
    return out


MUC_TEXT = (b"<message from='room@muc.x/nick' type='groupchat' id='m1'>"
            b"<body>hi</body></message>")
write("muc_fanout", "one", muc_fanout(MUC_TEXT, [(1, 1, b"a@x/r")]))
write("muc_fanout", "three", muc_fanout(
    b"<presence from='room@muc.x/n'/>",
    [(1, 1, b"a@x/r"), (2, 7, b"b@x/phone"), (9, 3, b"c@y/\xc3\xa9")]))
write("muc_fanout", "count-past-end", muc_fanout(MUC_TEXT, [(1, 1, b"a@x/r")],
                                                 count=2))
write("muc_fanout", "nul-in-jid", muc_fanout(MUC_TEXT, [(1, 1, b"a@x\0/r")]))
write("muc_fanout", "trailing", muc_fanout(MUC_TEXT, [(1, 1, b"a@x/r")]) + b"x")

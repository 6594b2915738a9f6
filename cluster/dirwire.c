/*
 * dirwire.c - encoding and checking of the session directory's batches
 * (dirwire.h).  Failure policy: a batch that fails any check is refused
 * whole by the caller (which asks the sender for a snapshot instead);
 * nothing here allocates except through the caller's buf and arena.
 */
#include "dirwire.h"
#include "ipc.h"
#include "jid.h"
#include "wire.h"

#include <string.h>

#define DIR_WIRE_VERSION 1u
#define DIR_HDR_FIXED 32u           /* header bytes besides the name */

/* Header: magic u32, version u8, kind u8, last u8, name length u8,
 * incarnation u64, seq u64, part u32, count u32, then the name. */
int dir_put_hdr(struct buf *b, const struct dir_batch_hdr *h)
{
	uint8_t fixed[DIR_HDR_FIXED];
	size_t n = strnlen(h->node, sizeof(h->node));
	if (n == 0 || n > DIR_NODE_MAX)
		return -1;
	wire_put_u32(fixed, DIR_WIRE_MAGIC);
	fixed[4] = DIR_WIRE_VERSION;
	fixed[5] = h->kind;
	fixed[6] = h->last;
	fixed[7] = (uint8_t)n;
	wire_put_u64(fixed + 8, h->incarnation);
	wire_put_u64(fixed + 16, h->seq);
	wire_put_u32(fixed + 24, h->part);
	wire_put_u32(fixed + 28, h->count);
	if (buf_append(b, fixed, sizeof(fixed)) < 0 ||
	    buf_append(b, h->node, n) < 0)
		return -1;
	return 0;
}

void dir_set_count(struct buf *b, size_t hdr_off, uint32_t count)
{
	wire_put_u32((uint8_t *)b->data + hdr_off + 28, count);
}

/* Record: op, rslot, flags, available (u8 each), priority i16, conn_id
 * u32, gen u32, since i64, jid length u16, caps length u8, the JID, the
 * caps ver. */
int dir_put_rec(struct buf *b, const struct dir_rec *r)
{
	uint8_t fixed[DIR_REC_FIXED];
	if (r->jid_len == 0 || r->jid_len > IPC_JID_MAX ||
	    r->caps_len > DIR_CAPS_MAX)
		return -1;
	fixed[0] = r->op;
	fixed[1] = r->rslot;
	fixed[2] = r->flags;
	fixed[3] = r->available;
	wire_put_u16(fixed + 4, (uint16_t)r->priority);
	wire_put_u32(fixed + 6, r->conn_id);
	wire_put_u32(fixed + 10, r->gen);
	wire_put_u64(fixed + 14, (uint64_t)r->since);
	wire_put_u16(fixed + 22, r->jid_len);
	fixed[24] = r->caps_len;
	if (buf_append(b, fixed, sizeof(fixed)) < 0 ||
	    buf_append(b, r->jid, r->jid_len) < 0 ||
	    (r->caps_len > 0 && buf_append(b, r->caps, r->caps_len) < 0))
		return -1;
	return 0;
}

int dir_read_begin(struct dir_reader *r, const void *data, size_t len,
		   const char **error_r)
{
	const uint8_t *p = data;
	memset(r, 0, sizeof(*r));
	if (len < DIR_HDR_FIXED || wire_get_u32(p) != DIR_WIRE_MAGIC) {
		*error_r = "not a directory batch";
		return -1;
	}
	if (p[4] != DIR_WIRE_VERSION) {
		*error_r = "directory batch of another version";
		return -1;
	}
	r->hdr.kind = p[5];
	r->hdr.last = p[6];
	if ((r->hdr.kind != DIR_KIND_EVENTS &&
	     r->hdr.kind != DIR_KIND_SNAPSHOT) || r->hdr.last > 1) {
		*error_r = "unknown directory batch kind";
		return -1;
	}
	size_t n = p[7];
	if (len < DIR_HDR_FIXED + n || !wire_name_ok(p + DIR_HDR_FIXED, n)) {
		*error_r = "bad node name in a directory batch";
		return -1;
	}
	memcpy(r->hdr.node, p + DIR_HDR_FIXED, n);
	r->hdr.node[n] = '\0';
	r->hdr.incarnation = wire_get_u64(p + 8);
	r->hdr.seq = wire_get_u64(p + 16);
	r->hdr.part = wire_get_u32(p + 24);
	r->hdr.count = wire_get_u32(p + 28);
	/* each record takes at least DIR_REC_FIXED + 1 bytes */
	if (r->hdr.count > (len - DIR_HDR_FIXED - n) / (DIR_REC_FIXED + 1)) {
		*error_r = "directory batch shorter than its count";
		return -1;
	}
	r->p = p;
	r->len = len;
	r->off = DIR_HDR_FIXED + n;
	r->left = r->hdr.count;
	return 0;
}

/* base64 (XEP-0115 ver): letters, digits, '+', '/', '='. */
static bool caps_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '+' ||
		      s[i] == '/' || s[i] == '='))
			return false;
	return true;
}

/* A session's JID as the sender's table holds it: a full JID with a
 * localpart, already in its prepared form (so every node compares the
 * same bytes), no NUL; or a connected XEP-0114 component's entry
 * (worker/component.c: "DOMAIN/xmppd-component-...", no localpart), so
 * that stanzas for it reach it from any node. */
static bool jid_ok(struct arena *a, const char *s, size_t n)
{
	struct jid j;
	const char *error;
	char *z;
	if (n == 0 || n > IPC_JID_MAX || memchr(s, '\0', n) != NULL)
		return false;
	if ((z = arena_alloc(a, n + 1)) == NULL)
		return false;
	memcpy(z, s, n);
	z[n] = '\0';
	if (jid_parse(a, z, &j, &error) < 0 || j.resource == NULL ||
	    (j.local == NULL &&
	     strncmp(j.resource, "xmppd-component-", 16) != 0))
		return false;
	const char *full = jid_full(a, &j);
	return full != NULL && strcmp(full, z) == 0;
}

int dir_read_next(struct dir_reader *r, struct arena *a, struct dir_rec *rec,
		  const char **error_r)
{
	if (r->left == 0) {
		if (r->off != r->len) {
			*error_r = "bytes after a directory batch's records";
			return -1;
		}
		return 0;
	}
	if (r->len - r->off < DIR_REC_FIXED) {
		*error_r = "directory record cut short";
		return -1;
	}
	const uint8_t *p = r->p + r->off;
	memset(rec, 0, sizeof(*rec));
	rec->op = p[0];
	rec->rslot = p[1];
	rec->flags = p[2];
	rec->available = p[3];
	rec->priority = (int16_t)wire_get_u16(p + 4);
	rec->conn_id = wire_get_u32(p + 6);
	rec->gen = wire_get_u32(p + 10);
	rec->since = (int64_t)wire_get_u64(p + 14);
	rec->jid_len = wire_get_u16(p + 22);
	rec->caps_len = p[24];
	if ((rec->op != DIR_OP_SET && rec->op != DIR_OP_DEL) ||
	    rec->rslot >= IPC_MAX_SLOTS || rec->available > 1 ||
	    (rec->flags & ~IPC_SESSION_F_CARBONS) != 0 ||
	    rec->caps_len > DIR_CAPS_MAX ||
	    (rec->op == DIR_OP_DEL && rec->caps_len != 0) ||
	    (r->hdr.kind == DIR_KIND_SNAPSHOT && rec->op != DIR_OP_SET) ||
	    rec->priority < -128 || rec->priority > 127) {
		*error_r = "bad directory record";
		return -1;
	}
	if (r->len - r->off - DIR_REC_FIXED <
	    (size_t)rec->jid_len + rec->caps_len) {
		*error_r = "directory record cut short";
		return -1;
	}
	rec->jid = (const char *)p + DIR_REC_FIXED;
	rec->caps = rec->caps_len > 0 ? rec->jid + rec->jid_len : NULL;
	if (!jid_ok(a, rec->jid, rec->jid_len) ||
	    !caps_ok(rec->caps != NULL ? rec->caps : "", rec->caps_len)) {
		*error_r = "bad JID or caps in a directory record";
		return -1;
	}
	r->off += DIR_REC_FIXED + rec->jid_len + rec->caps_len;
	r->left--;
	return 1;
}

/* FNV-1a over the fields a SET says, in wire order. */
uint64_t dir_rec_digest(const struct dir_rec *rec)
{
	uint8_t fixed[DIR_REC_FIXED];
	uint64_t h = 0xcbf29ce484222325ull;
	fixed[0] = 0;
	fixed[1] = rec->rslot;
	fixed[2] = rec->flags;
	fixed[3] = rec->available;
	wire_put_u16(fixed + 4, (uint16_t)rec->priority);
	wire_put_u32(fixed + 6, rec->conn_id);
	wire_put_u32(fixed + 10, rec->gen);
	wire_put_u64(fixed + 14, (uint64_t)rec->since);
	wire_put_u16(fixed + 22, rec->jid_len);
	fixed[24] = rec->caps_len;
	for (size_t i = 0; i < sizeof(fixed); i++)
		h = (h ^ fixed[i]) * 0x100000001b3ull;
	for (size_t i = 0; i < rec->jid_len; i++)
		h = (h ^ (uint8_t)rec->jid[i]) * 0x100000001b3ull;
	for (size_t i = 0; i < rec->caps_len; i++)
		h = (h ^ (uint8_t)rec->caps[i]) * 0x100000001b3ull;
	return h;
}

enum dir_verdict dir_events_verdict(bool synced, uint64_t known_incarnation,
				    uint64_t last_seq,
				    const struct dir_batch_hdr *h,
				    uint32_t *skip_r)
{
	*skip_r = 0;
	if (!synced || h->incarnation != known_incarnation)
		return DIR_RESYNC;
	if (h->count == 0 || h->seq == 0)
		return DIR_STALE;
	if (h->seq - 1 > last_seq)         /* a gap (seq >= 1) */
		return DIR_RESYNC;
	uint64_t skip = last_seq - (h->seq - 1);    /* already applied */
	if (skip >= h->count)
		return DIR_STALE;
	*skip_r = (uint32_t)skip;
	return DIR_APPLY;
}

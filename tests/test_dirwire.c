/*
 * test_dirwire.c - the session directory's messages between cluster
 * nodes (cluster/dirwire.c): what one node writes another reads back
 * exactly; anything else is refused; the sequence rules that keep a
 * stale or duplicated batch from undoing a newer state.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "arena.h"
#include "buf.h"
#include "ipc.h"
#include "cluster/dirwire.h"

static struct dir_rec rec(uint8_t op, const char *jid, uint32_t conn,
			  uint32_t gen)
{
	struct dir_rec r = {
		.op = op, .rslot = 1, .flags = op == DIR_OP_SET ?
			IPC_SESSION_F_CARBONS : 0,
		.available = op == DIR_OP_SET, .priority = -5,
		.conn_id = conn, .gen = gen, .since = 1765000000,
		.jid_len = (uint16_t)strlen(jid), .jid = jid,
	};
	return r;
}

static void batch(struct buf *b, uint8_t kind, uint64_t seq,
		  const struct dir_rec *recs, unsigned n)
{
	struct dir_batch_hdr h = {
		.kind = kind, .last = kind == DIR_KIND_SNAPSHOT,
		.incarnation = 0x0102030405060708ull, .seq = seq, .part = 0,
		.count = 0,
	};
	strcpy(h.node, "node-2");
	buf_init(b, 0);
	cr_assert_eq(dir_put_hdr(b, &h), 0);
	for (unsigned i = 0; i < n; i++)
		cr_assert_eq(dir_put_rec(b, &recs[i]), 0);
	dir_set_count(b, 0, n);
}

Test(dirwire, round_trip)
{
	struct dir_rec in[3] = {
		rec(DIR_OP_SET, "alice@example.org/phone", 7, 3),
		rec(DIR_OP_DEL, "bob@example.org/b\xc3\xbc" "ro", 9, 1),
		rec(DIR_OP_SET, "carol@example.org/x", 1, 1),
	};
	in[2].caps = "q07IKJEyjvHSyhy//CH0CxmKi8w=";
	in[2].caps_len = (uint8_t)strlen(in[2].caps);
	struct buf b;
	struct arena a;
	struct dir_reader r;
	struct dir_rec out;
	const char *error = NULL;
	batch(&b, DIR_KIND_EVENTS, 41, in, 3);
	arena_init(&a, 4096);
	cr_assert_eq(dir_read_begin(&r, buf_head(&b), buf_used(&b), &error),
		     0, "%s", error);
	cr_expect_str_eq(r.hdr.node, "node-2");
	cr_expect_eq(r.hdr.incarnation, 0x0102030405060708ull);
	cr_expect_eq(r.hdr.seq, 41);
	cr_expect_eq(r.hdr.count, 3);
	for (unsigned i = 0; i < 3; i++) {
		cr_assert_eq(dir_read_next(&r, &a, &out, &error), 1, "%s",
			     error);
		cr_expect_eq(out.op, in[i].op);
		cr_expect_eq(out.rslot, 1);
		cr_expect_eq(out.flags, in[i].flags);
		cr_expect_eq(out.available, in[i].available);
		cr_expect_eq(out.priority, -5);
		cr_expect_eq(out.conn_id, in[i].conn_id);
		cr_expect_eq(out.gen, in[i].gen);
		cr_expect_eq(out.since, 1765000000);
		cr_expect_eq(out.jid_len, in[i].jid_len);
		cr_expect_eq(memcmp(out.jid, in[i].jid, out.jid_len), 0);
		cr_expect_eq(out.caps_len, in[i].caps_len);
		cr_expect_eq(dir_rec_digest(&out), dir_rec_digest(&in[i]));
	}
	cr_expect_eq(dir_read_next(&r, &a, &out, &error), 0);
	/* the byte order is the wire's, not the host's: seq 41 is 29 00.. */
	cr_expect_eq(((const uint8_t *)buf_head(&b))[16], 41);
	buf_free(&b);
	arena_free(&a);
}

/* The digest changes with any field a SET says. */
Test(dirwire, digest_covers_every_field)
{
	struct dir_rec base = rec(DIR_OP_SET, "alice@example.org/phone", 7, 3);
	uint64_t d = dir_rec_digest(&base);
	struct dir_rec v;
	v = base; v.rslot = 0; cr_expect_neq(dir_rec_digest(&v), d);
	v = base; v.flags = 0; cr_expect_neq(dir_rec_digest(&v), d);
	v = base; v.available = 0; cr_expect_neq(dir_rec_digest(&v), d);
	v = base; v.priority = 5; cr_expect_neq(dir_rec_digest(&v), d);
	v = base; v.conn_id = 8; cr_expect_neq(dir_rec_digest(&v), d);
	v = base; v.gen = 4; cr_expect_neq(dir_rec_digest(&v), d);
	v = base; v.since++; cr_expect_neq(dir_rec_digest(&v), d);
	v = base; v.jid = "alice@example.org/phonf";
	cr_expect_neq(dir_rec_digest(&v), d);
	v = base; v.caps = "x"; v.caps_len = 1;
	cr_expect_neq(dir_rec_digest(&v), d);
}

static const char *read_error(const struct dir_rec *recs, unsigned n,
			      uint8_t kind, void (*spoil)(struct buf *))
{
	static char msg[128];
	struct buf b;
	struct arena a;
	struct dir_reader r;
	struct dir_rec out;
	const char *error = NULL;
	int rc;
	batch(&b, kind, 1, recs, n);
	if (spoil != NULL)
		spoil(&b);
	arena_init(&a, 4096);
	if (dir_read_begin(&r, buf_head(&b), buf_used(&b), &error) == 0)
		while ((rc = dir_read_next(&r, &a, &out, &error)) == 1)
			;
	snprintf(msg, sizeof(msg), "%s", error != NULL ? error : "(none)");
	buf_free(&b);
	arena_free(&a);
	return msg;
}

static void bad_magic(struct buf *b) { b->data[0] ^= 1; }
static void bad_version(struct buf *b) { b->data[4] = 2; }
static void bad_kind(struct buf *b) { b->data[5] = 3; }
static void bad_name(struct buf *b) { b->data[32] = '.'; }
static void count_high(struct buf *b) { dir_set_count(b, 0, 2); }
static void count_huge(struct buf *b) { dir_set_count(b, 0, 0xffffffffu); }
static void count_low(struct buf *b) { dir_set_count(b, 0, 0); }
static void cut(struct buf *b) { b->len--; }
static void bad_op(struct buf *b) { b->data[38] = 3; }
static void bad_slot(struct buf *b) { b->data[39] = IPC_MAX_SLOTS; }
static void bad_flags(struct buf *b) { b->data[40] = 0x04; }
static void bad_avail(struct buf *b) { b->data[41] = 2; }
static void bad_prio(struct buf *b) { b->data[43] = 0x01; }

/* A batch is read only as it was written; each defect has its reason. */
Test(dirwire, refusals)
{
	struct dir_rec one = rec(DIR_OP_SET, "alice@example.org/phone", 7, 3);
	cr_expect_str_eq(read_error(&one, 1, DIR_KIND_EVENTS, NULL), "(none)");
	cr_expect_str_eq(read_error(&one, 1, DIR_KIND_EVENTS, bad_magic),
			 "not a directory batch");
	cr_expect_str_eq(read_error(&one, 1, DIR_KIND_EVENTS, bad_version),
			 "directory batch of another version");
	cr_expect_str_eq(read_error(&one, 1, DIR_KIND_EVENTS, bad_kind),
			 "unknown directory batch kind");
	cr_expect_str_eq(read_error(&one, 1, DIR_KIND_EVENTS, bad_name),
			 "bad node name in a directory batch");
	cr_expect_str_eq(read_error(&one, 1, DIR_KIND_EVENTS, count_high),
			 "directory batch shorter than its count");
	cr_expect_str_eq(read_error(&one, 1, DIR_KIND_EVENTS, count_huge),
			 "directory batch shorter than its count");
	cr_expect_str_eq(read_error(&one, 1, DIR_KIND_EVENTS, count_low),
			 "bytes after a directory batch's records");
	cr_expect_str_eq(read_error(&one, 1, DIR_KIND_EVENTS, cut),
			 "directory record cut short");
	cr_expect_str_eq(read_error(&one, 1, DIR_KIND_EVENTS, bad_op),
			 "bad directory record");
	cr_expect_str_eq(read_error(&one, 1, DIR_KIND_EVENTS, bad_slot),
			 "bad directory record");
	cr_expect_str_eq(read_error(&one, 1, DIR_KIND_EVENTS, bad_flags),
			 "bad directory record");
	cr_expect_str_eq(read_error(&one, 1, DIR_KIND_EVENTS, bad_avail),
			 "bad directory record");
	cr_expect_str_eq(read_error(&one, 1, DIR_KIND_EVENTS, bad_prio),
			 "bad directory record");
	struct dir_rec del = rec(DIR_OP_DEL, "alice@example.org/phone", 7, 3);
	cr_expect_str_eq(read_error(&del, 1, DIR_KIND_SNAPSHOT, NULL),
			 "bad directory record");
	static const char *const bad_jids[] = {
		"example.org/phone",            /* no localpart */
		"gw.example.org/xmppd-compone", /* not a component's entry */
		"alice@example.org",            /* no resource */
		"Alice@example.org/phone",      /* not prepared */
		"alice@EXAMPLE.org/phone",
		"alice@@example.org/phone",
		"alice@example.org/ph\0ne",
	};
	for (size_t i = 0; i < sizeof(bad_jids) / sizeof(bad_jids[0]); i++) {
		struct dir_rec r = rec(DIR_OP_SET, bad_jids[i], 1, 1);
		if (i == 6)
			r.jid_len = 23;
		cr_expect_str_eq(read_error(&r, 1, DIR_KIND_EVENTS, NULL),
				 "bad JID or caps in a directory record",
				 "%s", bad_jids[i]);
	}
	/* a component's entry (worker/component.c) travels */
	struct dir_rec comp = rec(DIR_OP_SET, "gw.example.org/xmppd-component-0-7-1",
				  7, 1);
	cr_expect_str_eq(read_error(&comp, 1, DIR_KIND_EVENTS, NULL), "(none)");
	one.caps = "abc def";
	one.caps_len = 7;
	cr_expect_str_eq(read_error(&one, 1, DIR_KIND_EVENTS, NULL),
			 "bad JID or caps in a directory record");
}

static enum dir_verdict verdict(bool synced, uint64_t inc, uint64_t last,
				uint64_t h_inc, uint64_t seq, uint32_t count,
				uint32_t *skip)
{
	struct dir_batch_hdr h = { .kind = DIR_KIND_EVENTS,
		.incarnation = h_inc, .seq = seq, .count = count };
	return dir_events_verdict(synced, inc, last, &h, skip);
}

/* The order rules: the next batch applies; one already seen does not;
 * one overlapping applies its new part; a gap, another run of the node
 * or no snapshot yet asks for a snapshot. */
Test(dirwire, sequence_verdicts)
{
	uint32_t skip = 99;
	cr_expect_eq(verdict(true, 5, 10, 5, 11, 3, &skip), DIR_APPLY);
	cr_expect_eq(skip, 0);
	cr_expect_eq(verdict(true, 5, 10, 5, 9, 3, &skip), DIR_APPLY);
	cr_expect_eq(skip, 2);
	cr_expect_eq(verdict(true, 5, 10, 5, 8, 3, &skip), DIR_STALE);
	cr_expect_eq(verdict(true, 5, 10, 5, 1, 10, &skip), DIR_STALE);
	cr_expect_eq(verdict(true, 5, 10, 5, 12, 1, &skip), DIR_RESYNC);
	cr_expect_eq(verdict(true, 5, 10, 6, 11, 1, &skip), DIR_RESYNC);
	cr_expect_eq(verdict(false, 5, 10, 5, 11, 1, &skip), DIR_RESYNC);
	cr_expect_eq(verdict(true, 5, 10, 5, 11, 0, &skip), DIR_STALE);
	cr_expect_eq(verdict(true, 5, 10, 5, 0, 4, &skip), DIR_STALE);
	cr_expect_eq(verdict(true, 5, 0, 5, 1, 1, &skip), DIR_APPLY);
	cr_expect_eq(verdict(true, 5, UINT64_MAX - 1, 5, UINT64_MAX, 1, &skip),
		     DIR_APPLY);
	cr_expect_eq(verdict(true, 5, 10, 5, UINT64_MAX, 2, &skip),
		     DIR_RESYNC);
}

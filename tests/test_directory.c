/*
 * test_directory.c - the cluster's session directory (cluster/
 * directory.c): a follower's session table ends equal to what the
 * followed node holds, however the events between them are lost,
 * repeated or cut by a restart, and a snapshot changes only what
 * differs.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "buf.h"
#include "ipc.h"
#include "cluster/directory.h"

/* ---- a fake session table: (node, JID) -> record --------------------- */

#define FAKE_MAX 512

struct fake_row {
	unsigned node;
	char jid[64];
	struct dir_rec rec;
};

struct fake_table {
	struct fake_row rows[FAKE_MAX];
	unsigned n;
	unsigned sets, dels;
};

static struct fake_row *fake_find(struct fake_table *t, unsigned node,
				  const char *jid, size_t len)
{
	for (unsigned i = 0; i < t->n; i++)
		if (t->rows[i].node == node && strlen(t->rows[i].jid) == len &&
		    memcmp(t->rows[i].jid, jid, len) == 0)
			return &t->rows[i];
	return NULL;
}

static void fake_set(void *ctx, unsigned node, const struct dir_rec *rec)
{
	struct fake_table *t = ctx;
	struct fake_row *r = fake_find(t, node, rec->jid, rec->jid_len);
	if (r == NULL) {
		cr_assert_lt(t->n, FAKE_MAX);
		r = &t->rows[t->n++];
	}
	r->node = node;
	snprintf(r->jid, sizeof(r->jid), "%.*s", (int)rec->jid_len, rec->jid);
	r->rec = *rec;
	r->rec.jid = r->jid;
	r->rec.caps = NULL;
	r->rec.caps_len = 0;
	t->sets++;
}

static void fake_del(void *ctx, unsigned node, const struct dir_rec *rec)
{
	struct fake_table *t = ctx;
	struct fake_row *r = fake_find(t, node, rec->jid, rec->jid_len);
	cr_assert_not_null(r, "del of %.*s, not in the table",
			   (int)rec->jid_len, rec->jid);
	cr_assert_eq(r->rec.conn_id, rec->conn_id);
	*r = t->rows[--t->n];
	t->dels++;
}

struct cmp_ctx {
	struct fake_table *t;
	unsigned node, seen;
};

static void cmp_one(void *ctx, const struct dir_rec *rec)
{
	struct cmp_ctx *c = ctx;
	struct fake_row *r = fake_find(c->t, c->node, rec->jid, rec->jid_len);
	cr_assert_not_null(r, "%.*s missing on the follower",
			   (int)rec->jid_len, rec->jid);
	cr_expect_eq(r->rec.conn_id, rec->conn_id, "%s", r->jid);
	cr_expect_eq(r->rec.gen, rec->gen, "%s", r->jid);
	cr_expect_eq(r->rec.available, rec->available, "%s", r->jid);
	cr_expect_eq(r->rec.priority, rec->priority, "%s", r->jid);
	c->seen++;
}

/* The follower's table holds exactly node's sessions as l holds them. */
static void expect_same(struct dir_local *l, struct fake_table *t,
			unsigned node)
{
	struct cmp_ctx c = { t, node, 0 };
	unsigned rows = 0;
	dir_local_foreach(l, cmp_one, &c);
	for (unsigned i = 0; i < t->n; i++)
		rows += t->rows[i].node == node;
	cr_expect_eq(rows, c.seen, "the follower has %u, the node %u", rows,
		     c.seen);
}

/* ---- plumbing ------------------------------------------------------- */

struct world {
	struct dir_local l;
	struct dir_peer p;
	struct fake_table t;
	struct dir_ops ops;
	struct arena a;
	unsigned asks;
};

static void world_init(struct world *w, uint64_t inc)
{
	memset(w, 0, sizeof(*w));
	cr_assert_eq(dir_local_init(&w->l, "n2", inc), 0);
	dir_peer_init(&w->p, 2, 1 << 20);
	w->ops.ctx = &w->t;
	w->ops.set = fake_set;
	w->ops.del = fake_del;
	arena_init(&w->a, 8192);
}

static void world_free(struct world *w)
{
	dir_peer_forget(&w->p, &w->ops);
	dir_local_free(&w->l);
	arena_free(&w->a);
}

static void deliver(struct world *w, const void *data, size_t len)
{
	struct dir_reader r;
	enum dir_action act;
	const char *error = NULL;
	cr_assert_eq(dir_read_begin(&r, data, len, &error), 0, "%s", error);
	cr_assert_geq(dir_peer_batch(&w->p, &w->ops, &r, &w->a, &act, &error),
		      0, "%s", error);
	arena_reset(&w->a);
	if (act == DIR_ASK_SNAPSHOT)
		w->asks++;
}

static int emit_part(void *ctx, const void *part, size_t len)
{
	deliver(ctx, part, len);
	return 0;
}

static void answer_snapshot(struct world *w, size_t part_bytes)
{
	cr_assert_eq(dir_local_snapshot(&w->l, part_bytes, emit_part, w), 0);
}

static enum dir_action heartbeat(struct world *w)
{
	enum dir_action a = dir_peer_heartbeat(&w->p, &w->ops,
					       w->l.incarnation, w->l.seq,
					       dir_local_count(&w->l),
					       dir_local_digest(&w->l));
	if (a == DIR_ASK_SNAPSHOT)
		w->asks++;
	return a;
}

static char jids[64][48];

static struct dir_rec session(unsigned i, uint8_t op, uint32_t conn,
			      int avail)
{
	snprintf(jids[i], sizeof(jids[i]), "user%u@example.org/r%u", i % 17,
		 i);
	struct dir_rec r = {
		.op = op, .rslot = (uint8_t)(i % 2), .available = (uint8_t)avail,
		.priority = (int16_t)(i % 5), .conn_id = conn, .gen = 1,
		.since = 1765000000 + i, .jid_len = (uint16_t)strlen(jids[i]),
		.jid = jids[i],
	};
	return r;
}

static void change(struct world *w, struct dir_rec rec)
{
	cr_assert_geq(dir_local_change(&w->l, &rec), 0);
}

static void publish(struct world *w, bool lose)
{
	if (!dir_local_pending(&w->l))
		return;
	if (!lose)
		deliver(w, buf_head(&w->l.out), buf_used(&w->l.out));
	dir_local_sent(&w->l);
}

/* ---- tests ---------------------------------------------------------- */

/* First contact: the heartbeat asks for a snapshot, the snapshot fills
 * the table, later events keep it equal. */
Test(directory, snapshot_then_events)
{
	struct world w;
	world_init(&w, 77);
	for (unsigned i = 0; i < 10; i++)
		change(&w, session(i, DIR_OP_SET, 100 + i, 1));
	dir_local_sent(&w.l);           /* before the follower existed */
	cr_expect_eq(heartbeat(&w), DIR_ASK_SNAPSHOT);
	answer_snapshot(&w, 200);       /* several parts */
	expect_same(&w.l, &w.t, 2);
	cr_expect_eq(w.t.n, 10);
	change(&w, session(3, DIR_OP_SET, 103, 0));     /* unavailable */
	change(&w, session(4, DIR_OP_DEL, 104, 0));
	change(&w, session(11, DIR_OP_SET, 111, 1));
	publish(&w, false);
	expect_same(&w.l, &w.t, 2);
	cr_expect_eq(heartbeat(&w), DIR_NOTHING);
	cr_expect_eq(w.asks, 1);
	world_free(&w);
	cr_expect_eq(w.t.n, 0, "forget removes every session of the node");
}

/* A lost batch shows as a gap at the next one: a snapshot, applied by
 * difference (unchanged sessions are not written again). */
Test(directory, gap_resync_by_difference)
{
	struct world w;
	world_init(&w, 5);
	heartbeat(&w);
	answer_snapshot(&w, 4096);
	for (unsigned i = 0; i < 20; i++)
		change(&w, session(i, DIR_OP_SET, i + 1, 1));
	publish(&w, false);
	cr_expect_eq(w.t.n, 20);
	change(&w, session(5, DIR_OP_DEL, 6, 0));
	publish(&w, true);              /* lost */
	change(&w, session(6, DIR_OP_SET, 7, 0));
	unsigned asks = w.asks;
	publish(&w, false);             /* shows the gap */
	cr_expect_eq(w.asks, asks + 1);
	unsigned sets = w.t.sets, dels = w.t.dels;
	answer_snapshot(&w, 4096);
	expect_same(&w.l, &w.t, 2);
	cr_expect_eq(w.t.dels - dels, 1, "only the ended one removed");
	cr_expect_eq(w.t.sets - sets, 1, "only the changed one written");
	world_free(&w);
}

/* A node that restarted: its old run's sessions leave the table at its
 * first heartbeat, then the new run's snapshot comes. */
Test(directory, new_run_forgets_the_old)
{
	struct world w;
	world_init(&w, 1);
	heartbeat(&w);
	for (unsigned i = 0; i < 5; i++)
		change(&w, session(i, DIR_OP_SET, i + 1, 1));
	answer_snapshot(&w, 4096);
	cr_expect_eq(w.t.n, 5);
	dir_local_free(&w.l);
	cr_assert_eq(dir_local_init(&w.l, "n2", 2), 0);
	change(&w, session(9, DIR_OP_SET, 50, 1));
	/* an event of the new run before its heartbeat: not followed yet */
	publish(&w, false);
	cr_expect_eq(w.t.n, 5);
	cr_expect_eq(heartbeat(&w), DIR_ASK_SNAPSHOT);
	cr_expect_eq(w.t.n, 0, "the old run's sessions are gone");
	answer_snapshot(&w, 4096);
	expect_same(&w.l, &w.t, 2);
	cr_expect_eq(w.t.n, 1);
	world_free(&w);
}

/* Events during a snapshot are held and applied after it, in order. */
struct captured {
	struct buf parts[8];
	unsigned n;
};

static int capture_part(void *ctx, const void *part, size_t len)
{
	struct captured *c = ctx;
	cr_assert_lt(c->n, 8);
	buf_init(&c->parts[c->n], 0);
	buf_append(&c->parts[c->n++], part, len);
	return 0;
}

Test(directory, events_during_snapshot_are_held)
{
	struct world w;
	struct captured c = { .n = 0 };
	world_init(&w, 9);
	for (unsigned i = 0; i < 4; i++)
		change(&w, session(i, DIR_OP_SET, i + 1, 1));
	dir_local_sent(&w.l);
	cr_expect_eq(heartbeat(&w), DIR_ASK_SNAPSHOT);
	/* the snapshot is taken as of seq 4 ... */
	cr_assert_eq(dir_local_snapshot(&w.l, 150, capture_part, &c), 0);
	cr_assert_gt(c.n, 1);
	/* ... events 5 and 6 overtake it */
	change(&w, session(2, DIR_OP_DEL, 3, 0));
	change(&w, session(7, DIR_OP_SET, 8, 1));
	publish(&w, false);
	cr_expect_eq(w.t.n, 0, "held, not applied");
	for (unsigned k = 0; k < c.n; k++) {
		deliver(&w, buf_head(&c.parts[k]), buf_used(&c.parts[k]));
		buf_free(&c.parts[k]);
	}
	expect_same(&w.l, &w.t, 2);
	cr_expect_eq(w.t.n, 4);
	cr_expect_eq(w.p.seq, 6);
	cr_expect_eq(w.asks, 1);
	world_free(&w);
}

/* Equal numbers but other contents, twice: a snapshot. */
Test(directory, digest_mismatch_asks_again)
{
	struct world w;
	world_init(&w, 3);
	heartbeat(&w);
	change(&w, session(1, DIR_OP_SET, 1, 1));
	publish(&w, false);
	answer_snapshot(&w, 4096);
	cr_expect_eq(heartbeat(&w), DIR_NOTHING);
	/* the follower's table lost it some other way */
	struct fake_row *r = fake_find(&w.t, 2, jids[1], strlen(jids[1]));
	cr_assert_not_null(r);
	/* simulate: the node changed a session without an event number */
	dir_local_sent(&w.l);
	struct dir_rec other = session(1, DIR_OP_SET, 1, 0);
	cr_assert_eq(dir_local_change(&w.l, &other), 1);
	w.l.seq--;                      /* the event got no number */
	dir_local_sent(&w.l);
	cr_expect_eq(heartbeat(&w), DIR_NOTHING, "one may be a race");
	cr_expect_eq(heartbeat(&w), DIR_ASK_SNAPSHOT);
	answer_snapshot(&w, 4096);
	expect_same(&w.l, &w.t, 2);
	world_free(&w);
}

/* Random changes over a link that loses a batch in five and repeats one
 * in seven, with heartbeats and snapshots answered (some lost too):
 * at the end, after the link is clean for a few heartbeats, the
 * follower's table equals the node's sessions. */
Test(directory, converges_over_a_bad_link)
{
	struct world w;
	unsigned seed = 12345;
	world_init(&w, 42);
	for (unsigned round = 0; round < 3000; round++) {
		seed = seed * 1103515245u + 12345u;
		unsigned i = (seed >> 8) % 64, what = (seed >> 20) % 4;
		if (what == 0)
			change(&w, session(i, DIR_OP_DEL, i + 1, 0));
		else
			change(&w, session(i, DIR_OP_SET, i + 1, what == 1 ? 0
					   : 1));
		if (round % 3 == 0) {
			bool lose = round < 2700 && (seed >> 4) % 5 == 0;
			struct buf dup;
			bool again = (seed >> 12) % 7 == 0;
			buf_init(&dup, 0);
			if (again && dir_local_pending(&w.l))
				buf_append(&dup, buf_head(&w.l.out),
					   buf_used(&w.l.out));
			publish(&w, lose);
			if (buf_used(&dup) > 0)
				deliver(&w, buf_head(&dup), buf_used(&dup));
			buf_free(&dup);
		}
		if (round % 10 == 0 && heartbeat(&w) == DIR_NOTHING &&
		    w.p.syncing && (seed >> 16) % 3 == 0) {
			/* a request lost earlier: the timer asks again */
		}
		if (w.p.syncing && (round < 2700 ? (seed >> 18) % 4 != 0
					        : true)) {
			publish(&w, false);     /* held while syncing */
			answer_snapshot(&w, 300);
		}
	}
	for (int k = 0; k < 4; k++) {
		publish(&w, false);
		heartbeat(&w);
		if (w.p.syncing)
			answer_snapshot(&w, 300);
	}
	expect_same(&w.l, &w.t, 2);
	cr_expect(w.p.synced && !w.p.syncing);
	cr_expect_eq(dir_peer_digest(&w.p), dir_local_digest(&w.l));
	cr_expect_gt(w.asks, 3, "the link did lose batches");
	world_free(&w);
}

/* A scan of the session table: sessions still there are not told
 * again, changed ones are, and those no longer there end. */
static struct dir_rec scan_rec(const char *jid, uint32_t conn, int avail)
{
	struct dir_rec r = {
		.op = DIR_OP_SET, .rslot = 0, .available = (uint8_t)avail,
		.conn_id = conn, .gen = 1, .since = 1765000000,
		.jid_len = (uint16_t)strlen(jid), .jid = jid,
	};
	return r;
}

Test(directory, table_scan)
{
	struct world w;
	world_init(&w, 11);
	struct dir_rec a = scan_rec("a@x.org/1", 1, 1);
	struct dir_rec b = scan_rec("b@x.org/1", 2, 1);
	struct dir_rec c = scan_rec("c@x.org/1", 3, 0);
	heartbeat(&w);
	answer_snapshot(&w, 4096);
	dir_local_scan_begin(&w.l);
	change(&w, a);
	change(&w, b);
	cr_assert_eq(dir_local_scan_end(&w.l), 0);
	publish(&w, false);
	cr_expect_eq(w.t.n, 2);
	uint64_t seq = w.l.seq;
	/* the next scan: a unchanged, b gone, c new, then a changed */
	dir_local_scan_begin(&w.l);
	change(&w, a);
	change(&w, c);
	cr_assert_eq(dir_local_scan_end(&w.l), 0);
	cr_expect_eq(w.l.seq, seq + 2, "c new and b ended: two events");
	publish(&w, false);
	expect_same(&w.l, &w.t, 2);
	cr_expect_null(fake_find(&w.t, 2, "b@x.org/1", 9));
	a.available = 0;
	dir_local_scan_begin(&w.l);
	change(&w, a);
	change(&w, c);
	cr_assert_eq(dir_local_scan_end(&w.l), 0);
	cr_expect_eq(w.l.seq, seq + 3);
	publish(&w, false);
	expect_same(&w.l, &w.t, 2);
	cr_expect_eq(fake_find(&w.t, 2, "a@x.org/1", 9)->rec.available, 0);
	cr_expect_eq(heartbeat(&w), DIR_NOTHING);
	world_free(&w);
}

/* Review 15 C10: a snapshot holding more sessions than the bound is
 * dropped part-way (our memory does not grow with it), its other parts
 * are ignored, nothing reaches the table, and no request goes out at
 * once (the same answer would come); the next snapshot within the
 * bound is applied. */
static unsigned too_big_refused;

static int emit_part_lenient(void *ctx, const void *part, size_t len)
{
	struct world *w = ctx;
	struct dir_reader r;
	enum dir_action act;
	const char *error = NULL;
	cr_assert_eq(dir_read_begin(&r, part, len, &error), 0, "%s", error);
	if (dir_peer_batch(&w->p, &w->ops, &r, &w->a, &act, &error) < 0) {
		cr_expect_not_null(strstr(error, "dropped"), "%s", error);
		too_big_refused++;
	}
	arena_reset(&w->a);
	if (act == DIR_ASK_SNAPSHOT)
		w->asks++;
	return 0;
}

Test(directory, snapshot_past_its_bound_is_dropped)
{
	struct world w;
	world_init(&w, 77);
	for (unsigned i = 0; i < 40; i++)
		change(&w, session(i, DIR_OP_SET, 100 + i, 1));
	dir_local_sent(&w.l);
	cr_expect_eq(heartbeat(&w), DIR_ASK_SNAPSHOT);
	dir_peer_bound(&w.p, 10);
	cr_assert_eq(dir_local_snapshot(&w.l, 200, emit_part_lenient, &w), 0);
	cr_expect_eq(too_big_refused, 1, "refused once, the rest ignored");
	cr_expect_eq(w.t.n, 0, "nothing of it in the table");
	cr_expect_null(w.p.incoming, "what was received is freed");
	cr_expect(w.p.syncing, "still waiting for a snapshot");
	cr_expect_eq(w.p.snaps_dropped, 1);
	cr_expect_eq(w.asks, 1, "no request at once");
	/* asked again later, within the bound now */
	dir_peer_bound(&w.p, 50);
	answer_snapshot(&w, 200);
	expect_same(&w.l, &w.t, 2);
	cr_expect_eq(w.t.n, 40);
	world_free(&w);
}

/*
 * test_muc_fan.c - a room stanza's fan-out groups (worker/muc_fan.c):
 * one frame per destination worker, where a worker of another cluster
 * node is its own destination behind the bridge's slot, and the groups
 * are forgotten (buffers kept within a bound) between stanzas.
 */
#include <criterion/criterion.h>
#include <string.h>
#include "worker/muc_fan.h"

static struct muc_fan fan;

static void teardown(void)
{
	muc_fan_free(&fan);
}

TestSuite(muc_fan, .fini = teardown, .timeout = 10);

#define BRIDGE 4        /* workers 0..3, the bridge at slot 4 */

/* Recipients on local workers 1 and 2 and on two workers of node 2 and
 * one of node 5: five frames, each with its own recipients. */
Test(muc_fan, one_group_per_worker_of_the_cluster)
{
	struct { uint16_t slot; uint8_t node, rslot; } to[] = {
		{ 1, 0, 0 }, { BRIDGE, 2, 0 }, { 2, 0, 0 }, { BRIDGE, 2, 1 },
		{ 1, 0, 0 }, { BRIDGE, 5, 0 }, { BRIDGE, 2, 0 },
		{ BRIDGE, 2, 1 }, { BRIDGE, 2, 0 },
	};
	unsigned want[][4] = {  /* slot, node, rslot, count */
		{ 1, 0, 0, 2 }, { BRIDGE, 2, 0, 3 }, { 2, 0, 0, 1 },
		{ BRIDGE, 2, 1, 2 }, { BRIDGE, 5, 0, 1 },
	};

	for (size_t i = 0; i < sizeof(to) / sizeof(to[0]); i++) {
		struct muc_fan_group *g = muc_fan_group(&fan, to[i].slot,
							to[i].node,
							to[i].rslot);
		cr_assert_not_null(g);
		cr_assert_eq(g->slot, to[i].slot);
		cr_assert_eq(g->node, to[i].node);
		cr_assert_eq(g->rslot, to[i].rslot);
		if (g->count == 0)
			cr_assert_eq(buf_used(&g->frame), 0, "a new group "
				     "holds another's bytes");
		buf_append(&g->frame, "r", 1);
		g->count++;
	}
	cr_assert_eq(fan.n, 5, "%u groups", fan.n);
	for (unsigned i = 0; i < fan.n; i++) {
		struct muc_fan_group *g = &fan.groups[i];
		cr_assert_eq(g->slot, want[i][0]);
		cr_assert_eq(g->node, want[i][1]);
		cr_assert_eq(g->rslot, want[i][2]);
		cr_assert_eq(g->count, want[i][3], "group %u: %u", i,
			     g->count);
		cr_assert_eq(buf_used(&g->frame), want[i][3]);
	}
}

/* A local worker's slot number and a remote worker's slot number are
 * not the same destination: slot 1 here is not worker 1 of node 2. */
Test(muc_fan, local_and_remote_slot_numbers_differ)
{
	struct muc_fan_group *a = muc_fan_group(&fan, 1, 0, 0);
	cr_assert_not_null(a);
	a->count = 1;
	struct muc_fan_group *b = muc_fan_group(&fan, BRIDGE, 2, 1);
	cr_assert_not_null(b);
	cr_assert_eq(b->count, 0);
	cr_assert_eq(fan.n, 2);
}

Test(muc_fan, bad_destinations_refused)
{
	cr_assert_null(muc_fan_group(&fan, IPC_MAX_SLOTS, 0, 0));
	cr_assert_null(muc_fan_group(&fan, BRIDGE, IPC_MAX_NODES, 0));
	cr_assert_null(muc_fan_group(&fan, BRIDGE, 2, IPC_MAX_SLOTS));
	cr_assert_null(muc_fan_group(&fan, 1, 0, 3), "local with an rslot");
	/* one node's sessions sit at one slot: the same (node, rslot) at
	 * another slot is a broken record, not a second group */
	cr_assert_not_null(muc_fan_group(&fan, BRIDGE, 2, 0));
	cr_assert_null(muc_fan_group(&fan, BRIDGE + 1, 2, 0));
	cr_assert_eq(fan.n, 1);
}

/* After a stanza the groups are forgotten: the next stanza starts with
 * none, and buffers over the bound are given back. */
Test(muc_fan, reset_forgets_groups_and_big_buffers)
{
	static char big[4096];
	struct muc_fan_group *g = muc_fan_group(&fan, 1, 0, 0);

	buf_append(&g->frame, big, sizeof(big));
	g->count = 9;
	g = muc_fan_group(&fan, BRIDGE, 3, 2);
	buf_append(&g->frame, "x", 1);
	g->count = 1;
	muc_fan_reset(&fan, 1024);
	cr_assert_eq(fan.n, 0);
	cr_assert_null(fan.groups[0].frame.data, "a big buffer kept");
	cr_assert_not_null(fan.groups[1].frame.data);
	g = muc_fan_group(&fan, BRIDGE, 3, 2);
	cr_assert_eq(g->count, 0);
	cr_assert_eq(buf_used(&g->frame), 0);
	cr_assert_eq(fan.n, 1);
}

/* Many destinations (every worker of many nodes) grow the array; every
 * group stays findable. */
Test(muc_fan, many_destinations)
{
	for (unsigned node = 1; node < 20; node++)
		for (unsigned s = 0; s < 8; s++) {
			struct muc_fan_group *g = muc_fan_group(
				&fan, BRIDGE, (uint8_t)node, (uint8_t)s);
			cr_assert_not_null(g);
			g->count++;
		}
	cr_assert_eq(fan.n, 19 * 8);
	for (unsigned i = 0; i < fan.n; i++)
		cr_assert_eq(fan.groups[i].count, 1);
	struct muc_fan_group *g = muc_fan_group(&fan, BRIDGE, 7, 3);
	cr_assert_eq(g->count, 1, "an existing group made anew");
}

/* ---- the frame's bytes: what a worker writes, the receiver reads ---- */

static const char text[] = "<message from='room@muc.x/nick' type='groupchat'>"
			   "<body>hi</body></message>";

/* Three recipients written, the frame taken: it reads back to the same
 * text and the same recipients, in order, and the group starts over. */
Test(muc_fan, frame_reads_back_what_was_put)
{
	const char *jids[] = { "a@x/1", "b@x/phone", "c@x/r" };
	struct muc_fan_group *g = muc_fan_group(&fan, 1, 0, 0);
	struct muc_fan_reader r;
	struct muc_fan_rcpt rc;
	const char *error = NULL;
	size_t len;

	for (uint32_t i = 0; i < 3; i++)
		cr_assert_eq(muc_fan_put(g, text, strlen(text), 10 + i, 20 + i,
					 jids[i], strlen(jids[i])), 0);
	const char *f = muc_fan_take(g, &len);
	cr_assert_not_null(f);
	cr_assert_eq(g->count, 0);
	cr_assert_eq(muc_fan_read(&r, f, len, &error), 0, "%s", error);
	cr_assert_eq(r.count, 3);
	cr_assert_eq(r.text_len, strlen(text));
	cr_assert_eq(memcmp(r.text, text, r.text_len), 0);
	for (uint32_t i = 0; i < 3; i++) {
		cr_assert_eq(muc_fan_next(&r, &rc), 1);
		cr_assert_eq(rc.conn_id, 10 + i);
		cr_assert_eq(rc.gen, 20 + i);
		cr_assert_str_eq(rc.jid, jids[i]);
	}
	cr_assert_eq(muc_fan_next(&r, &rc), 0);

	/* the next stanza's frame holds only its own recipient */
	cr_assert_eq(muc_fan_put(g, text, strlen(text), 1, 1, "d@x/r", 5), 0);
	f = muc_fan_take(g, &len);
	cr_assert_eq(muc_fan_read(&r, f, len, &error), 0, "%s", error);
	cr_assert_eq(r.count, 1);
}

/* A frame that is not whole is refused before any recipient is read: a
 * recipient cut, a JID with a NUL (it would reach a client cut short),
 * trailing bytes, no recipients. */
Test(muc_fan, broken_frames_are_refused_whole)
{
	struct muc_fan_group *g = muc_fan_group(&fan, 1, 0, 0);
	struct muc_fan_reader r;
	const char *error;
	size_t len;
	char bad[512];

	cr_assert_eq(muc_fan_put(g, text, strlen(text), 1, 1, "a@x/1", 5), 0);
	cr_assert_eq(muc_fan_put(g, text, strlen(text), 2, 2, "b@x/1", 5), 0);
	const char *f = muc_fan_take(g, &len);
	cr_assert_leq(len + 1, sizeof(bad));
	memcpy(bad, f, len);

	for (size_t cut = 0; cut < len; cut++) {
		error = NULL;
		cr_assert_eq(muc_fan_read(&r, bad, cut, &error), -1,
			     "%zu of %zu bytes read", cut, len);
		cr_assert_not_null(error);
	}
	bad[len] = 'x';
	cr_assert_eq(muc_fan_read(&r, bad, len + 1, &error), -1);
	cr_assert_str_eq(error, "bytes after the last recipient");
	bad[len - 2] = '\0';            /* in the last JID */
	cr_assert_eq(muc_fan_read(&r, bad, len, &error), -1);
	cr_assert_str_eq(error, "bad recipient JID");

	struct ipc_muc_fanout h = { (uint32_t)strlen(text), 0 };
	memcpy(bad, &h, sizeof(h));
	memcpy(bad + sizeof(h), text, h.text_len);
	cr_assert_eq(muc_fan_read(&r, bad, sizeof(h) + h.text_len, &error),
		     -1);
	cr_assert_str_eq(error, "no recipients");

	/* nor does the writer take what the reader would refuse */
	cr_assert_eq(muc_fan_put(g, text, strlen(text), 1, 1, "a\0b", 3), -1);
	cr_assert_eq(muc_fan_put(g, "x", 1, 1, 1, "a@x/1", 5), -1);
	cr_assert_eq(muc_fan_put(g, text, strlen(text), 1, 1, "", 0), -1);
}

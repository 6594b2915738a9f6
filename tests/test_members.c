/*
 * test_members.c - the cluster's member list and room ownership
 * (cluster/members.c): the stored value reads back exactly and nothing
 * else reads; each room has one owner, the same on every node for an
 * epoch; a member leaving moves only its own rooms; the coordinator
 * removes a member only after its lease stood still for node_timeout +
 * lease.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "cluster/members.h"

static struct members three(void)
{
	struct members ms = { .epoch = 7 };
	cr_assert_eq(members_add(&ms, "n3", 0x33), 0);
	cr_assert_eq(members_add(&ms, "n1", 0x11), 0);
	cr_assert_eq(members_add(&ms, "n2", 0x22), 0);
	return ms;
}

Test(members, value_round_trip)
{
	struct members ms = three(), back;
	char text[MEMBERS_TEXT_MAX];
	int n = members_format(&ms, text, sizeof(text));
	cr_assert_gt(n, 0);
	cr_expect_str_eq(text, "epoch 7\n"
			 "n1 0000000000000011\n"
			 "n2 0000000000000022\n"
			 "n3 0000000000000033\n");
	cr_assert_eq(members_parse(&back, text, (size_t)n), 0);
	cr_expect_eq(back.epoch, 7);
	cr_expect_eq(back.n, 3);
	cr_expect_str_eq(back.m[2].name, "n3");
	cr_expect_eq(back.m[2].incarnation, 0x33);
	cr_expect_eq(members_parse(&back, "epoch 0\n", 8), 0);
	cr_expect_eq(back.n, 0);
}

Test(members, value_refusals)
{
	static const char *const bad[] = {
		"", "epoch\n", "epoch 7", "epoch 07\n", "epoch x\n",
		"epoch 99999999999999999999\n",
		"epoch 1\nn1 11\n",                     /* short run */
		"epoch 1\nn1 000000000000001G\n",
		"epoch 1\nn1 00000000000000011\n",
		"epoch 1\nn1 0000000000000011",         /* no newline */
		"epoch 1\nn2 0000000000000011\nn1 0000000000000011\n",
		"epoch 1\nn1 0000000000000011\nn1 0000000000000011\n",
		"epoch 1\nn.1 0000000000000011\n",
		"epoch 1\n 0000000000000011\n",
		"Epoch 1\n",
	};
	struct members ms;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(members_parse(&ms, bad[i], strlen(bad[i])), -1,
			     "%s", bad[i]);
}

/* One owner per room, spread over the members; a member leaving moves
 * its rooms only, and they spread over the others. */
Test(members, rendezvous_owner)
{
	struct members ms = three(), two = three();
	unsigned count[3] = { 0 }, moved = 0, moved_to[3] = { 0 };
	char room[64];
	members_remove(&two, "n2");
	for (unsigned r = 0; r < 3000; r++) {
		int n = snprintf(room, sizeof(room), "room%u@conference.x", r);
		int o = members_owner(&ms, room, (size_t)n);
		cr_assert(o >= 0 && o < 3);
		count[o]++;
		int o2 = members_owner(&two, room, (size_t)n);
		const char *before = ms.m[o].name, *after = two.m[o2].name;
		if (strcmp(before, "n2") != 0) {
			cr_expect_str_eq(after, before, "%s moved", room);
		} else {
			moved++;
			moved_to[members_find(&ms, after)]++;
		}
	}
	for (unsigned i = 0; i < 3; i++)
		cr_expect(count[i] > 800 && count[i] < 1200, "member %u: %u",
			  i, count[i]);
	cr_expect_eq(moved, count[1]);
	cr_expect(moved_to[0] > moved / 3 && moved_to[2] > moved / 3,
		  "%u and %u", moved_to[0], moved_to[2]);
	struct members none = { .epoch = 1 };
	cr_expect_eq(members_owner(&none, "r@c", 3), -1);
}

static struct member_view view(const char *name, uint64_t inc, bool up,
			       int64_t changed)
{
	struct member_view v = { .incarnation = inc, .up = up,
		.lease_seen = true, .lease_changed_ms = changed };
	snprintf(v.name, sizeof(v.name), "%s", name);
	return v;
}

Test(members, coordinator_is_lowest_up)
{
	struct members ms = three();
	struct member_view v[3] = {
		view("n1", 0x11, true, 0), view("n2", 0x22, true, 0),
		view("n3", 0x33, true, 0),
	};
	cr_expect(members_is_coordinator(&ms, v, 3, "n1"));
	cr_expect(!members_is_coordinator(&ms, v, 3, "n2"));
	v[0].up = false;                        /* n1 is down */
	cr_expect(members_is_coordinator(&ms, v, 3, "n2"));
	cr_expect(!members_is_coordinator(&ms, v, 3, "n3"));
	/* a node not yet a member may coordinate an empty cluster */
	struct members none = { .epoch = 0 };
	cr_expect(members_is_coordinator(&none, v, 3, "n9"));
}

Test(members, leave_only_after_timeout_plus_lease)
{
	struct members ms = three(), next;
	struct member_view v[3] = {
		view("n1", 0x11, true, 10000), view("n2", 0x22, true, 10000),
		view("n3", 0x33, false, 1000),  /* lease stood at 1000 */
	};
	/* node_timeout 3000 + lease 5000: n3 may still act until 9000 */
	cr_expect(!members_next(&ms, v, 3, 9000, 3000, 5000, &next));
	cr_expect(members_next(&ms, v, 3, 9001, 3000, 5000, &next));
	cr_expect_eq(next.epoch, 8);
	cr_expect_eq(next.n, 2);
	cr_expect_eq(members_find(&next, "n3"), -1);
	/* no view of a member: not judged */
	cr_expect(!members_next(&ms, v, 2, 100000, 3000, 5000, &next) ||
		  members_find(&next, "n3") >= 0);
}

/* A key-value outage (a JetStream leader election: our own calls fail,
 * nobody's renewal goes through) does not count against anyone: after
 * it, every lease looks as old as the outage is long, the coordinator's
 * own too; without the rule every member would leave at once. */
Test(members, outage_does_not_count)
{
	struct members ms = three(), next;
	struct member_view v[3] = {
		view("n1", 0x11, true, 1000), view("n2", 0x22, true, 1000),
		view("n3", 0x33, true, 1000),
	};
	for (unsigned i = 0; i < 3; i++)
		v[i].judged_from_ms = 20000;    /* our calls failed till then */
	cr_expect(!members_next(&ms, v, 3, 21000, 3000, 5000, &next));
	cr_expect(!members_next(&ms, v, 3, 28000, 3000, 5000, &next));
	/* a member still silent node_timeout + lease after the store came
	 * back leaves; the ones that renewed meanwhile stay */
	v[0].lease_changed_ms = v[1].lease_changed_ms = 27000;
	cr_expect(members_next(&ms, v, 3, 28001, 3000, 5000, &next));
	cr_expect_eq(next.n, 2);
	cr_expect_eq(members_find(&next, "n3"), -1);
}

Test(members, join_and_new_run)
{
	struct members ms = three(), next;
	struct member_view v[4] = {
		view("n1", 0x11, true, 5000), view("n2", 0x22, true, 5000),
		view("n3", 0x34, true, 5000),   /* restarted: another run */
		view("n0", 0x01, true, 5000),   /* new */
	};
	cr_expect(members_next(&ms, v, 4, 6000, 3000, 5000, &next));
	cr_expect_eq(next.n, 4);
	cr_expect_str_eq(next.m[0].name, "n0");
	cr_expect_eq(next.m[members_find(&next, "n3")].incarnation, 0x34);
	cr_expect_eq(next.epoch, 8);
	/* nothing new: no change, same epoch */
	struct members again;
	cr_expect(!members_next(&next, v, 4, 6000, 3000, 5000, &again));
	/* up but its lease is stale: does not join */
	struct members ms2 = three();
	struct member_view late = view("n5", 0x5, true, 1000);
	cr_expect(!members_next(&ms2, &late, 1, 6000, 3000, 5000, &next));
}

/* Review 15 C10: a lease value reads back; a recorded renewal put back
 * later is not a renewal (an older count of the same run, or sent
 * longer ago than the allowed clock skew); a new run starts its own
 * count. */
Test(members, lease_value_and_replays)
{
	struct lease_value v = { 0xabcdef0123456789ull, 7, 1800000000000LL };
	struct lease_value back, prev;
	char text[MEMBERS_LEASE_TEXT_MAX];
	int n = members_lease_format(&v, text, sizeof(text));
	cr_assert_gt(n, 0);
	cr_expect_str_eq(text, "abcdef0123456789 7 1800000000000\n");
	cr_assert_eq(members_lease_parse(&back, text, (size_t)n), 0);
	cr_expect_eq(back.incarnation, v.incarnation);
	cr_expect_eq(back.count, 7);
	cr_expect_eq(back.sent_ms, v.sent_ms);
	cr_expect_lt(members_lease_parse(&back, text, (size_t)n - 1), 0);
	cr_expect_lt(members_lease_parse(&back, "abcdef0123456789 0 1\n",
					 21), 0);
	cr_expect_lt(members_lease_parse(&back, "0123 7 1\n", 9), 0);
	cr_expect_lt(members_lease_parse(&back, "abcdef0123456789 7 -1\n",
					 22), 0);

	int64_t now = v.sent_ms + 500;
	cr_expect(members_lease_fresh(NULL, &v, now, 60000));
	prev = v;
	cr_expect(!members_lease_fresh(&prev, &v, now, 60000),
		  "the same renewal again");
	v.count = 6;
	cr_expect(!members_lease_fresh(&prev, &v, now, 60000),
		  "an earlier renewal");
	v.count = 8;
	cr_expect(members_lease_fresh(&prev, &v, now, 60000));
	cr_expect(!members_lease_fresh(NULL, &v, now + 61000, 60000),
		  "recorded a minute ago, to a reader that knew nothing");
	v.incarnation = 0x1111;
	v.count = 1;
	cr_expect(members_lease_fresh(&prev, &v, now, 60000), "a new run");
}

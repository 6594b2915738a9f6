/*
 * test_fence.c - the replay fence of the cluster's NATS messages
 * (cluster/fence.c): a stamp reads back as written and a damaged one is
 * refused; a fresh message is taken, the same message again is refused
 * (a replayed "leaving" heartbeat, P.sync or P.reann), a few out of
 * order across subjects are taken once each; a node restarted (a new
 * run) is taken, its earlier run's messages are refused from then on;
 * a run we meet for the first time must be stamped near our clock.
 * And the whole envelope as the bridge builds it (payload, stamp, MAC
 * of lib/secret.c): a flipped bit anywhere is refused.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "cluster/fence.h"
#include "lib/secret.h"

#define NOW 1800000000000LL         /* our wall clock, ms */
#define SKEW 60000

static struct fence_stamp stamp(const char *node, uint64_t run, uint64_t seq,
				int64_t sent_ms)
{
	struct fence_stamp st;
	memset(&st, 0, sizeof(st));
	strcpy(st.node, node);
	st.run = run;
	st.seq = seq;
	st.sent_ms = sent_ms;
	return st;
}

static struct fence f;

static enum fence_verdict hear(const char *node, uint64_t run, uint64_t seq,
			       int64_t sent_ms)
{
	struct fence_stamp st = stamp(node, run, seq, sent_ms);
	return fence_check(&f, &st, NOW);
}

Test(fence, stamp_round_trip)
{
	uint8_t msg[64 + FENCE_TRAILER_MAX];
	struct fence_stamp st = stamp("node-1", 77, 5, NOW), back;
	const char *error = NULL;
	size_t plen = 0;
	memcpy(msg, "payload", 7);
	size_t n = 7 + fence_put(msg + 7, &st);
	cr_assert_eq(n, 7 + 6 + FENCE_FIXED);
	cr_assert_eq(fence_take(msg, n, &back, &plen, &error), 0);
	cr_expect_eq(plen, 7);
	cr_expect_str_eq(back.node, "node-1");
	cr_expect_eq(back.run, 77);
	cr_expect_eq(back.seq, 5);
	cr_expect_eq(back.sent_ms, NOW);
	/* a message of the old format (no stamp) or a bad name */
	cr_expect_lt(fence_take(msg, 7, &back, &plen, &error), 0);
	msg[7 + 2] = '.';
	cr_expect_lt(fence_take(msg, n, &back, &plen, &error), 0);
	cr_expect_str_eq(error, "bad sender name in the replay stamp");
	msg[7 + 2] = 'd';
	msg[7 + 6] = 40;        /* name length past the message */
	cr_expect_lt(fence_take(msg, n, &back, &plen, &error), 0);
	msg[7 + 6] = 6;
	struct fence_stamp zero = stamp("node-1", 77, 0, NOW);
	n = 7 + fence_put(msg + 7, &zero);
	cr_expect_lt(fence_take(msg, n, &back, &plen, &error), 0);
}

Test(fence, a_replayed_message_is_refused_a_fresh_one_taken)
{
	fence_init(&f, SKEW);
	cr_expect_eq(hear("a", 100, 1, NOW), FENCE_OK);
	cr_expect_eq(hear("a", 100, 2, NOW), FENCE_OK);
	/* the recorded "leaving" heartbeat, or P.sync, sent again */
	cr_expect_eq(hear("a", 100, 2, NOW), FENCE_REPLAY);
	cr_expect_eq(hear("a", 100, 1, NOW), FENCE_REPLAY);
	cr_expect_eq(hear("a", 100, 3, NOW), FENCE_OK);
	/* another sender has a fence of its own */
	cr_expect_eq(hear("b", 100, 1, NOW), FENCE_OK);
	cr_expect_eq(hear("b", 100, 1, NOW), FENCE_REPLAY);
}

Test(fence, out_of_order_within_the_window_once_each)
{
	fence_init(&f, SKEW);
	cr_expect_eq(hear("a", 100, 10, NOW), FENCE_OK);
	cr_expect_eq(hear("a", 100, 12, NOW), FENCE_OK);
	cr_expect_eq(hear("a", 100, 11, NOW), FENCE_OK);    /* late */
	cr_expect_eq(hear("a", 100, 11, NOW), FENCE_REPLAY);
	cr_expect_eq(hear("a", 100, 12 + FENCE_WINDOW, NOW), FENCE_OK);
	/* what fell out of the window cannot be told from a replay */
	cr_expect_eq(hear("a", 100, 12, NOW), FENCE_REPLAY);
	cr_expect_eq(hear("a", 100, 13, NOW), FENCE_OK);
	/* a jump of more than the window forgets the rest */
	cr_expect_eq(hear("a", 100, 1000, NOW), FENCE_OK);
	cr_expect_eq(hear("a", 100, 999, NOW), FENCE_OK);
	cr_expect_eq(hear("a", 100, 999, NOW), FENCE_REPLAY);
}

Test(fence, a_restart_with_a_new_run_is_taken_the_old_run_refused)
{
	fence_init(&f, SKEW);
	cr_expect_eq(hear("a", 100, 500, NOW - 5000), FENCE_OK);
	/* restarted: its seq starts again at 1 */
	cr_expect_eq(hear("a", 200, 1, NOW), FENCE_OK);
	cr_expect_eq(hear("a", 200, 2, NOW), FENCE_OK);
	/* the old run's messages, even ones never heard, are over */
	cr_expect_eq(hear("a", 100, 501, NOW), FENCE_OLD_RUN);
	cr_expect_eq(hear("a", 100, 500, NOW), FENCE_OLD_RUN);
}

Test(fence, a_new_run_must_be_stamped_near_our_clock)
{
	fence_init(&f, SKEW);
	/* recorded an hour ago, replayed to a node that never heard it */
	cr_expect_eq(hear("a", 100, 7, NOW - 3600000), FENCE_CLOCK);
	cr_expect_eq(hear("a", 100, 7, NOW + SKEW + 1), FENCE_CLOCK);
	cr_expect_eq(hear("a", 100, 8, NOW - SKEW), FENCE_OK);
	/* within a run known to us, the stamp's age does not matter (a
	 * message held back while the link was down still counts) */
	cr_expect_eq(hear("a", 100, 9, NOW - 3600000), FENCE_OK);
	/* a newer run too must be near our clock */
	cr_expect_eq(hear("a", 300, 1, NOW - 3600000), FENCE_CLOCK);
	cr_expect_eq(hear("a", 100, 10, NOW), FENCE_OK);
}

Test(fence, a_full_table_forgets_the_one_heard_least_lately)
{
	char name[16];
	fence_init(&f, SKEW);
	for (unsigned i = 0; i < FENCE_PEERS + 1; i++) {
		snprintf(name, sizeof(name), "n%u", i);
		struct fence_stamp st = stamp(name, 100, 1, NOW);
		cr_assert_eq(fence_check(&f, &st, NOW + i), FENCE_OK);
	}
	cr_expect_eq(f.n, FENCE_PEERS);
	/* n0 was forgotten: its copy passes the clock check again (the
	 * window of a forgotten node is the clock's), n1.. are kept */
	struct fence_stamp st = stamp("n2", 100, 1, NOW);
	cr_expect_eq(fence_check(&f, &st, NOW), FENCE_REPLAY);
}

Test(fence, the_envelope_a_flipped_bit_is_refused)
{
	unsigned char key[SECRET_KEY_BYTES];
	uint8_t msg[32 + FENCE_TRAILER_MAX + SECRET_MAC_BYTES];
	const char *subject = "xmppd.c.sync.b";
	struct fence_stamp st = stamp("a", 100, 1, NOW), back;
	const char *error = NULL;
	size_t slen = 0, plen = 0;
	memset(key, 7, sizeof(key));
	secret_cluster_seed(key);
	memcpy(msg, "a", 1);
	size_t n = 1 + fence_put(msg + 1, &st);
	cr_assert_eq(secret_cluster_mac(subject, msg, n, msg + n), 0);
	n += SECRET_MAC_BYTES;
	cr_assert_eq(secret_cluster_check(subject, msg, n, &slen), 0);
	cr_assert_eq(fence_take(msg, slen, &back, &plen, &error), 0);
	cr_expect_eq(plen, 1);
	for (size_t i = 0; i < n; i++) {
		msg[i] ^= 1;
		cr_expect_lt(secret_cluster_check(subject, msg, n, &slen), 0,
			     "bit flipped at byte %zu taken", i);
		msg[i] ^= 1;
	}
	/* the same message on another node's subject */
	cr_expect_lt(secret_cluster_check("xmppd.c.sync.c", msg, n, &slen), 0);
}

/* The snapshot subject's fence checks every message's stamp, not only
 * a new run's: a part never taken (dropped at a full queue) and
 * recorded off NATS is refused once it is older than the skew, where
 * the window alone would take it as fresh (review REVIEW-lend2 N5). */
Test(fence, clock_always_refuses_an_old_part_of_a_known_run)
{
	fence_init(&f, SKEW);
	f.clock_always = 1;
	cr_expect_eq(hear("a", 100, 1, NOW), FENCE_OK);
	cr_expect_eq(hear("a", 100, 3, NOW - SKEW - 1), FENCE_CLOCK);
	cr_expect_eq(hear("a", 100, 3, NOW), FENCE_OK);
	fence_init(&f, SKEW);
	cr_expect_eq(hear("a", 100, 1, NOW), FENCE_OK);
	cr_expect_eq(hear("a", 100, 3, NOW - SKEW - 1), FENCE_OK,
		     "without it, only a new run's stamp is checked");
}

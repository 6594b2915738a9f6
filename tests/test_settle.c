/*
 * test_settle.c - a worker's account of the frames other nodes sent it
 * (worker/settle.c): a frame is done with when its last holder lets go,
 * in any order; the report names every token before base as done and
 * the ranges beyond it; a new bridge's numbering forgets the old holds.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "buf.h"
#include "ipc.h"
#include "worker/settle.h"

struct report {
	struct ipc_settled h;
	uint32_t r[64][2];
};

/* The report, as the bridge would read it; 0 if nothing to say. */
static int take_report(struct settle *s, struct report *out)
{
	struct buf b;
	size_t used;
	buf_init(&b, 0);
	int rc = settle_report(s, &b, &used);
	cr_assert_geq(rc, 0);
	memset(out, 0, sizeof(*out));
	if (rc == 1) {
		cr_assert_geq(buf_used(&b), sizeof(out->h));
		memcpy(out, buf_head(&b), buf_used(&b));
		cr_assert_eq(buf_used(&b),
			     sizeof(out->h) + out->h.nranges * 8u);
		settle_reported(s, used);
	}
	buf_free(&b);
	return rc;
}

/* A frame routed to nobody who keeps it is done with at once. */
Test(settle, unheld_frames_are_done_at_once)
{
	struct settle s;
	struct report r;
	settle_init(&s, false);
	for (uint32_t t = 100; t < 105; t++) {
		settle_begin(&s, t);
		settle_end(&s);
	}
	cr_assert_eq(settle_pending(&s), 0);
	cr_assert_eq(take_report(&s, &r), 1);
	cr_expect_eq(r.h.flags, IPC_SETTLED_BASE);
	cr_expect_eq(r.h.base, 105);
	cr_expect_eq(r.h.last, 104);
	cr_expect_eq(r.h.nranges, 0);
	cr_expect_eq(take_report(&s, &r), 0, "nothing new: no report");
	settle_free(&s);
}

/* A slow reader holds frame 10; 11 and 12 go to readers that keep up.
 * Base stays at 10, the report names 11..12 so that the sender frees
 * them; once 10 is written, base moves past all three. */
Test(settle, a_held_frame_does_not_hold_later_ones)
{
	struct settle s;
	struct report r;
	struct settle_hold slow, fast;
	settle_init(&s, false);
	settle_begin(&s, 10);
	settle_hold(&s, &slow);
	settle_end(&s);
	cr_assert_eq(slow.token, 10);
	settle_begin(&s, 11);
	settle_hold(&s, &fast);
	settle_end(&s);
	settle_begin(&s, 12);
	settle_end(&s);
	cr_assert_eq(settle_pending(&s), 2);
	settle_release(&s, &fast);
	cr_assert_eq(fast.token, 0, "a released hold is cleared");
	settle_release(&s, &fast);          /* twice: nothing more */
	cr_assert_eq(take_report(&s, &r), 1);
	cr_expect_eq(r.h.base, 10);
	cr_expect_eq(r.h.last, 12);
	cr_assert_eq(r.h.nranges, 1);
	cr_expect_eq(r.r[0][0], 11);
	cr_expect_eq(r.r[0][1], 12);
	settle_release(&s, &slow);
	cr_assert_eq(take_report(&s, &r), 1);
	cr_expect_eq(r.h.base, 13);
	cr_expect_eq(r.h.nranges, 0);
	cr_assert_eq(settle_pending(&s), 0);
	settle_free(&s);
}

/* A frame for two holders (a room's stanza for two occupants) is done
 * with when both let go. */
Test(settle, every_holder_must_let_go)
{
	struct settle s;
	struct report r;
	struct settle_hold a, b;
	settle_init(&s, false);
	settle_begin(&s, 1);
	settle_hold(&s, &a);
	settle_hold(&s, &b);
	settle_end(&s);
	settle_release(&s, &a);
	cr_assert_eq(settle_pending(&s), 1);
	cr_assert_eq(take_report(&s, &r), 1);
	cr_expect_eq(r.h.base, 1);
	settle_release(&s, &b);
	cr_assert_eq(take_report(&s, &r), 1);
	cr_expect_eq(r.h.base, 2);
	settle_free(&s);
}

/* A new worker process says so first (the bridge frees what its
 * predecessor read); tokens it never saw (read by that predecessor) are
 * skipped and reported done. */
Test(settle, fresh_worker_and_skipped_tokens)
{
	struct settle s;
	struct report r;
	struct settle_hold h;
	settle_init(&s, true);
	cr_assert_eq(take_report(&s, &r), 1);
	cr_expect_eq(r.h.flags, IPC_SETTLED_FRESH, "no base before a token");
	settle_begin(&s, 50);
	settle_hold(&s, &h);
	settle_end(&s);
	settle_begin(&s, 53);           /* 51, 52: not ours */
	settle_end(&s);
	cr_assert_eq(take_report(&s, &r), 1);
	cr_expect_eq(r.h.flags, IPC_SETTLED_BASE);
	cr_expect_eq(r.h.base, 50);
	cr_assert_eq(r.h.nranges, 1);
	cr_expect_eq(r.r[0][0], 51);
	cr_expect_eq(r.r[0][1], 53);
	settle_release(&s, &h);
	cr_assert_eq(take_report(&s, &r), 1);
	cr_expect_eq(r.h.base, 54);
	settle_free(&s);
}

/* A new bridge numbers from elsewhere: holds of the old numbering are
 * ignored when released (they must not free a new frame that happens
 * to carry the same number). */
Test(settle, a_new_bridge_forgets_old_holds)
{
	struct settle s;
	struct report r;
	struct settle_hold old, now;
	settle_init(&s, false);
	settle_begin(&s, 7);
	settle_hold(&s, &old);
	settle_end(&s);
	settle_begin(&s, 0x80000007u);      /* the new bridge's first */
	settle_hold(&s, &now);
	settle_end(&s);
	settle_release(&s, &old);
	cr_assert_eq(settle_pending(&s), 1);
	cr_assert_eq(take_report(&s, &r), 1);
	cr_expect_eq(r.h.base, 0x80000007u);
	settle_release(&s, &now);
	cr_assert_eq(settle_pending(&s), 0);
	settle_free(&s);
}

/* Outside a frame from another node nothing is held. */
Test(settle, no_frame_no_hold)
{
	struct settle s;
	struct settle_hold h;
	settle_init(&s, false);
	settle_hold(&s, &h);
	cr_expect_eq(h.token, 0);
	settle_begin(&s, 0);            /* a local frame */
	settle_hold(&s, &h);
	cr_expect_eq(h.token, 0);
	settle_end(&s);
	settle_free(&s);
}

/* Tokens wrap after 2^32. */
Test(settle, tokens_wrap)
{
	struct settle s;
	struct report r;
	struct settle_hold h;
	settle_init(&s, false);
	settle_begin(&s, 0xfffffffeu);
	settle_hold(&s, &h);
	settle_end(&s);
	settle_begin(&s, 0xffffffffu);
	settle_end(&s);
	settle_begin(&s, 1);            /* the bridge skips 0 */
	settle_end(&s);
	cr_assert_eq(take_report(&s, &r), 1);
	cr_expect_eq(r.h.base, 0xfffffffeu);
	cr_assert_eq(r.h.nranges, 1);
	cr_expect_eq(r.r[0][0], 0xffffffffu);
	cr_expect_eq(r.r[0][1], 1);
	settle_release(&s, &h);
	cr_assert_eq(take_report(&s, &r), 1);
	cr_expect_eq(r.h.base, 2);
	settle_free(&s);
}

/* A stanza taken back (a connection closed before writing it) keeps its
 * frame held until it is routed again; what routing it takes (offline
 * storage's write) holds the same frame. */
Test(settle, routed_again_under_its_frame)
{
	struct settle s;
	struct report r;
	struct settle_hold out, moved, stored;
	settle_init(&s, false);
	settle_begin(&s, 9);
	settle_hold(&s, &out);          /* in a connection's output */
	settle_end(&s);
	moved = out;                    /* taken back: the hold moves */
	out.token = 0;
	struct settle_at was = settle_enter(&s, &moved);
	settle_hold(&s, &stored);       /* the offline row being written */
	settle_leave(&s, was);
	cr_expect_eq(s.cur, 0);
	cr_expect_eq(stored.token, 9);
	settle_release(&s, &moved);
	cr_assert_eq(settle_pending(&s), 1, "held until the row is written");
	cr_assert_eq(take_report(&s, &r), 1);
	cr_expect_eq(r.h.base, 9);
	settle_release(&s, &stored);
	cr_assert_eq(take_report(&s, &r), 1);
	cr_expect_eq(r.h.base, 10);
	/* a hold of an older numbering enters nothing */
	struct settle_hold stale = { 9, s.epoch + 1 };
	was = settle_enter(&s, &stale);
	cr_expect_eq(s.cur, 0);
	settle_leave(&s, was);
	settle_free(&s);
}

/* A keeper's list (a connection's output): holds by end offset, done
 * with from the oldest as the socket takes them; the ones taken back
 * (past an offset) split off to be routed again. */
Test(settle, keeper_list)
{
	struct settle s;
	struct settle_list l = { 0 }, taken;
	struct settle_held *e;
	settle_init(&s, false);
	for (uint32_t t = 1; t <= 4; t++) {
		settle_begin(&s, t);
		settle_list_hold(&s, &l, 100 * t);      /* ends 100..400 */
		settle_end(&s);
	}
	settle_list_hold(&s, &l, 500);              /* no frame: nothing */
	cr_assert_eq(settle_pending(&s), 4);
	/* 250 bytes written: frames 1 and 2 done */
	while ((e = settle_list_first(&l)) != NULL && e->key <= 250)
		settle_list_release_first(&s, &l);
	cr_assert_eq(settle_pending(&s), 2);
	/* taken back from 300 on: frame 4 moves, frame 3 stays */
	settle_list_split(&l, 300, &taken);
	cr_assert_eq(taken.n, 1);
	cr_expect_eq(taken.v[0].key, 400);
	cr_expect_eq(taken.v[0].h.token, 4);
	settle_list_release_all(&s, &l);
	cr_assert_eq(settle_pending(&s), 1, "the taken one still held");
	settle_list_free(&s, &taken);
	cr_assert_eq(settle_pending(&s), 0);
	settle_list_free(&s, &l);
	settle_free(&s);
}

/* A frame handed to another worker of this node (an s2s link's owner,
 * an XEP-0198 journal handed over) stays held by its giver, under a
 * lend id, until the taker says it is done with it; the taker's holds
 * (a stanza waiting for its link, written later) are on the borrowed
 * frame, and its return names the id. */
Test(settle, lent_frame_held_until_returned)
{
	struct settle giver, taker;
	struct report r;
	struct settle_hold waiting;
	struct buf b;
	uint16_t slot;
	settle_init(&giver, false);
	settle_init(&taker, false);
	buf_init(&b, 0);
	settle_begin(&giver, 7);
	uint32_t id = settle_lend(&giver, 2, 1000);
	settle_end(&giver);
	cr_assert_neq(id, 0);
	cr_assert_eq(settle_pending(&giver), 1, "held while lent");
	cr_assert_eq(settle_lent_pending(&giver), 1);
	/* the taker routes it and keeps it (a link not up yet) */
	settle_begin_borrowed(&taker, 1, id);
	settle_hold(&taker, &waiting);
	settle_end(&taker);
	cr_assert_neq(waiting.token, 0);
	cr_assert_eq(settle_returns(&taker, &slot, &b), 0, "still held");
	/* written later under the same frame: a second hold, then the
	 * first goes; done only when the last goes */
	struct settle_hold written;
	struct settle_at was = settle_enter(&taker, &waiting);
	settle_hold(&taker, &written);
	settle_leave(&taker, was);
	settle_release(&taker, &waiting);
	cr_assert_eq(settle_returns(&taker, &slot, &b), 0);
	settle_release(&taker, &written);
	cr_assert_eq(settle_returns(&taker, &slot, &b), 1);
	cr_expect_eq(slot, 1);
	cr_assert_eq(buf_used(&b), sizeof(uint32_t));
	uint32_t got;
	memcpy(&got, buf_head(&b), sizeof(got));
	cr_expect_eq(got, id);
	/* a return from another slot, or for another id, is ignored */
	settle_returned(&giver, 3, id);
	settle_returned(&giver, 2, id + 1);
	cr_assert_eq(settle_pending(&giver), 1);
	settle_returned(&giver, 2, id);
	cr_assert_eq(settle_pending(&giver), 0);
	cr_assert_eq(settle_lent_pending(&giver), 0);
	cr_assert_eq(take_report(&giver, &r), 1);
	cr_expect_eq(r.h.base, 8);
	buf_free(&b);
	settle_free(&giver);
	settle_free(&taker);
}

/* Nothing routed: nothing to lend (a local stanza handed on holds
 * nothing and costs no return). */
Test(settle, nothing_to_lend)
{
	struct settle s;
	settle_init(&s, false);
	cr_expect_eq(settle_lend(&s, 1, 0), 0);
	settle_begin(&s, 0);
	cr_expect_eq(settle_lend(&s, 1, 0), 0);
	settle_end(&s);
	cr_expect_eq(settle_lent_pending(&s), 0);
	settle_free(&s);
}

/* A journal's holds lent whole (one id for all), returned out of order
 * with other lends; a lend never returned (the taker died) goes after
 * the bound. */
Test(settle, lent_lists_and_expiry)
{
	struct settle s;
	struct settle_list l = { 0 };
	settle_init(&s, false);
	for (uint32_t t = 1; t <= 3; t++) {
		settle_begin(&s, t);
		settle_list_hold(&s, &l, t);
		settle_end(&s);
	}
	uint32_t a = settle_lend_list(&s, 4, &l, 0);
	cr_assert_neq(a, 0);
	cr_assert_eq(settle_list_first(&l), NULL, "moved");
	settle_begin(&s, 4);
	uint32_t b = settle_lend(&s, 5, 10);
	settle_end(&s);
	settle_begin(&s, 5);
	uint32_t c = settle_lend(&s, 4, 20);
	settle_end(&s);
	cr_assert_eq(settle_pending(&s), 5);
	settle_returned(&s, 5, b);
	cr_assert_eq(settle_pending(&s), 4);
	cr_assert_eq(settle_lent_expire(&s, 1000, 995), 1, "a, the oldest");
	cr_assert_eq(settle_pending(&s), 1);
	settle_returned(&s, 4, a);      /* late: nothing left to release */
	settle_returned(&s, 4, c);
	cr_assert_eq(settle_pending(&s), 0);
	cr_assert_eq(settle_lent_pending(&s), 0);
	cr_assert_eq(settle_list_first(&l), NULL);
	settle_free(&s);
}

/* A borrowed frame lent on again (a chain of two takers) is returned
 * to the first giver only once the second taker is done. */
Test(settle, borrowed_lent_on)
{
	struct settle mid;
	struct buf b;
	uint16_t slot;
	settle_init(&mid, false);
	buf_init(&b, 0);
	settle_begin_borrowed(&mid, 1, 77);
	uint32_t id = settle_lend(&mid, 3, 0);
	settle_end(&mid);
	cr_assert_neq(id, 0);
	cr_assert_eq(settle_returns(&mid, &slot, &b), 0, "lent on");
	settle_returned(&mid, 3, id);
	cr_assert_eq(settle_returns(&mid, &slot, &b), 1);
	cr_expect_eq(slot, 1);
	uint32_t got;
	memcpy(&got, buf_head(&b), sizeof(got));
	cr_expect_eq(got, 77);
	buf_free(&b);
	settle_free(&mid);
}

/* A respawned worker adopting its predecessor's XEP-0198 journals holds
 * the frames from other nodes they keep: its first report names the
 * adopted span (FRESH, ADOPTED) and, inside it, only what nobody holds;
 * a hold released while others are still being adopted does not free
 * the span's head early; later tokens go on from the span. */
Test(settle, adopted_journals_hold_their_frames)
{
	struct settle s;
	struct report r;
	struct settle_list a = { 0 }, b = { 0 };
	settle_init(&s, true);
	settle_adopt_span(&s, 14);
	settle_adopt_span(&s, 10);
	settle_adopt_span(&s, 12);
	settle_adopt_begin(&s);
	settle_adopt_hold(&s, &a, 1, 10);
	settle_adopt_hold(&s, &a, 2, 12);
	settle_list_release_first(&s, &a);      /* 10: rerouted at once */
	settle_adopt_hold(&s, &b, 7, 10);       /* another journal's 10 */
	settle_adopt_hold(&s, &b, 8, 14);
	settle_adopt_end(&s);
	cr_assert_eq(settle_pending(&s), 3, "10 (b), 12 (a), 14 (b)");
	cr_assert_eq(take_report(&s, &r), 1);
	cr_expect_eq(r.h.flags, IPC_SETTLED_FRESH | IPC_SETTLED_ADOPTED |
				IPC_SETTLED_BASE);
	cr_expect_eq(r.h.base, 10);
	cr_expect_eq(r.h.last, 14);
	cr_assert_eq(r.h.nranges, 2);
	cr_expect_eq(r.r[0][0], 11);
	cr_expect_eq(r.r[0][1], 11);
	cr_expect_eq(r.r[1][0], 13);
	cr_expect_eq(r.r[1][1], 13);
	/* the client acknowledges b's; then a's ends */
	settle_list_release_all(&s, &b);
	settle_list_release_all(&s, &a);
	cr_assert_eq(take_report(&s, &r), 1);
	cr_expect_eq(r.h.flags, IPC_SETTLED_BASE, "fresh once");
	cr_expect_eq(r.h.base, 15);
	/* the new process's own frames follow */
	settle_begin(&s, 20);
	settle_end(&s);
	cr_assert_eq(take_report(&s, &r), 1);
	cr_expect_eq(r.h.base, 21);
	settle_list_free(&s, &a);
	settle_list_free(&s, &b);
	settle_free(&s);
}

/* Nothing adopted: a plain fresh report. */
Test(settle, nothing_adopted)
{
	struct settle s;
	struct report r;
	settle_init(&s, true);
	settle_adopt_begin(&s);
	settle_adopt_end(&s);
	cr_assert_eq(take_report(&s, &r), 1);
	cr_expect_eq(r.h.flags, IPC_SETTLED_FRESH);
	settle_free(&s);
}

/* The datagram the previous process died in comes again (shm/queue.c
 * gives the new process one more go at it): its tokens are behind the
 * adopted span's end.  They are routed under their own token, held on
 * where the ring still has them, and the adopted holds stay (before,
 * a token behind looked like a new bridge's numbering and every
 * adopted hold was dropped). */
Test(settle, redispatched_datagram_after_adoption)
{
	struct settle s;
	struct report r;
	struct settle_list j = { 0 };
	struct settle_hold again;
	settle_init(&s, true);
	settle_adopt_span(&s, 10);
	settle_adopt_span(&s, 14);
	settle_adopt_begin(&s);
	settle_adopt_hold(&s, &j, 1, 10);
	settle_adopt_hold(&s, &j, 2, 14);
	settle_adopt_end(&s);
	cr_assert_eq(take_report(&s, &r), 1);
	cr_expect_eq(r.h.flags, IPC_SETTLED_FRESH | IPC_SETTLED_ADOPTED |
				IPC_SETTLED_BASE);
	settle_begin(&s, 13);           /* once more: journaled again */
	settle_hold(&s, &again);
	settle_end(&s);
	cr_expect_eq(again.token, 13);
	settle_begin(&s, 14);
	settle_end(&s);
	cr_assert_eq(settle_pending(&s), 3, "10, 13, 14 held");
	settle_begin(&s, 15);           /* then the queue goes on */
	settle_end(&s);
	settle_list_release_all(&s, &j);
	settle_release(&s, &again);
	cr_assert_eq(settle_pending(&s), 0);
	cr_assert_eq(take_report(&s, &r), 1);
	cr_expect_eq(r.h.base, 16);
	/* past the first forward read, a token far behind is a new
	 * bridge's numbering again */
	uint32_t epoch = s.epoch;
	settle_begin(&s, 3);
	settle_end(&s);
	cr_expect_eq(s.epoch, epoch + 1);
	settle_list_free(&s, &j);
	settle_free(&s);
}

/* One frame held for hours (a client that neither reads nor
 * acknowledges) must not keep a place in the ring for every later
 * frame: once read more than hold_time ago it is let go (as the bridge
 * lets go of it), counted, and its holder's late release changes
 * nothing.  Frames read later stay held. */
Test(settle, held_past_hold_time_let_go)
{
	struct settle s;
	struct report r;
	struct settle_hold old, young;
	settle_init(&s, false);
	settle_begin(&s, 1);
	settle_hold(&s, &old);
	settle_end(&s);
	cr_expect_eq(settle_tick(&s, 0, 1000), 0);
	for (uint32_t t = 2; t <= 50; t++) {
		settle_begin(&s, t);
		if (t == 30)
			settle_hold(&s, &young);
		settle_end(&s);
	}
	cr_expect_eq(settle_tick(&s, 500, 1000), 0, "not yet");
	cr_expect_eq(settle_tick(&s, 1000, 1000), 1, "1, read at 0");
	cr_expect_eq(s.forced, 1);
	cr_expect_eq(settle_pending(&s), 1, "30, read at 500, stays");
	cr_assert_eq(take_report(&s, &r), 1);
	cr_expect_eq(r.h.base, 30);
	settle_release(&s, &old);
	cr_expect_eq(settle_pending(&s), 1);
	cr_expect_eq(settle_tick(&s, 1500, 1000), 1, "30 in its turn");
	cr_expect_eq(settle_pending(&s), 0);
	settle_release(&s, &young);
	settle_free(&s);
}

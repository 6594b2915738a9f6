/*
 * settle.h - frames from other nodes, held until this node is done with
 * them (issue 15, docs/DESIGN.md "Cluster", "Settlement").
 *
 * The bridge numbers each frame another node sent that it hands this
 * worker (the header's token).  The sending node keeps the frame until
 * this node acknowledges it, and hands it back as undelivered if this
 * node dies first.  So a frame is done with only when losing this node
 * would no longer lose it: written to the client's socket, acknowledged
 * by an XEP-0198 client (<a h/>), or routed on (offline storage, an
 * error, another worker).  While a frame is being routed (settle_begin
 * .. settle_end), whoever keeps it takes a hold (settle_hold): a
 * connection's output until written past it (conn.c), an XEP-0198
 * journal until the client's h covers it (sm.c).  The frame is done
 * with when its last hold is released; the worker tells the bridge
 * once per loop turn (settle_report: IPC_FRAME_SETTLED).
 *
 * Holds released after the numbering started over (a new bridge, whose
 * tokens start elsewhere) carry the old epoch and are ignored: the new
 * bridge never gave those frames.  Failure policy: out of memory for a
 * hold settles the frame at once (the pre-token behaviour: done with
 * once handled), with a log line.
 */
#ifndef XMPPD_SETTLE_H
#define XMPPD_SETTLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

/* What a holder keeps: 0 token = nothing held. */
struct settle_hold {
	uint32_t token;
	uint32_t epoch;
};

struct settle_range {
	uint32_t from, to;
};

/* A frame this worker handed another worker of this node, held here
 * until that worker says it is done with it (settle_lend). */
struct settle_lent;
/* A frame another worker of this node lent us (settle_begin_borrowed). */
struct settle_borrow {
	uint16_t slot;          /* the lender */
	uint32_t id;            /* its lend id (the frame's token) */
	uint32_t refs;          /* 0: a free entry */
	uint32_t next_free;     /* free list: index + 1, 0 ends it */
};
struct settle_return {
	uint16_t slot;
	uint32_t id;
};

/* Where routing is: the frame being routed (a token of ours, or a
 * borrowed frame's index + 1), saved by settle_enter. */
struct settle_at {
	uint32_t cur, borrow;
};

struct settle {
	uint32_t cur;           /* token of the frame being routed, or 0 */
	uint32_t cur_borrow;    /* or the borrowed frame's index + 1 */
	bool started;           /* a token was seen (base, next valid) */
	bool fresh;             /* report IPC_SETTLED_FRESH (a new worker) */
	bool dirty;             /* something to report */
	uint32_t epoch;         /* numbering runs seen (a new bridge) */
	uint32_t base;          /* tokens before it are done with */
	uint32_t next;          /* one past the last token read */
	/* holds per token from base to next, a ring */
	uint32_t *refs;
	size_t cap, head, n;
	/* tokens done with since the last report, at or after base then */
	struct settle_range *done;
	size_t ndone, done_cap;
	uint64_t held_total;    /* holds ever taken (tests, metrics) */
	uint64_t forced;        /* held frames let go (settle_tick, or the
				   ring's hard bound) */
	/* when tokens were read, coarsely: the next token once a second
	 * (settle_tick), oldest first */
	struct settle_mark {
		uint32_t token;
		int64_t ms;
	} *marks;
	size_t nmarks, marks_cap;
	/* adoption of a dead predecessor's journals (settle_adopt_*) */
	bool adopt_any, adopting, adopted_report;
	bool behind_ok;         /* nothing read ahead yet: a token behind
				   is the re-dispatched datagram */
	uint32_t adopt_lo, adopt_hi;
	/* lent to other workers, in the order of their ids */
	struct settle_lent *lent;
	size_t nlent, lent_cap, lent_live;
	uint32_t next_lend;
	/* borrowed from other workers; free entries chained */
	struct settle_borrow *borrow;
	size_t nborrow, borrow_cap;
	uint32_t borrow_free;
	/* borrowed frames done with, to tell their lenders */
	struct settle_return *ret;
	size_t nret, ret_cap;
};

void settle_init(struct settle *s, bool fresh);
void settle_free(struct settle *s);
/* A frame with token (0: not from another node) is being routed. */
void settle_begin(struct settle *s, uint32_t token);
/* ... and routed: done with unless somebody took a hold. */
void settle_end(struct settle *s);
/* Keep the frame being routed, if any (h->token 0 if none). */
void settle_hold(struct settle *s, struct settle_hold *h);
/* Done with what h kept; h is cleared.  A cleared h is a no-op. */
void settle_release(struct settle *s, struct settle_hold *h);
/* The holds of one keeper in the order of their keys (a connection's
 * output offsets, an XEP-0198 journal's h): released from the oldest
 * as the keeper gets done with them. */
struct settle_held {
	uint64_t key;
	struct settle_hold h;
};
struct settle_list {
	struct settle_held *v;
	unsigned n, cap, head;  /* live entries: v[head .. n-1] */
};

/* Hold the frame being routed, if any, under key (the largest yet). */
void settle_list_hold(struct settle *s, struct settle_list *l, uint64_t key);
/* The oldest hold, or NULL. */
struct settle_held *settle_list_first(struct settle_list *l);
/* Release the oldest (a no-op on a hold moved away: its token 0). */
void settle_list_release_first(struct settle *s, struct settle_list *l);
/* Move the holds with a key above `above` to *out (a new list). */
void settle_list_split(struct settle_list *l, uint64_t above,
		       struct settle_list *out);
void settle_list_release_all(struct settle *s, struct settle_list *l);
/* Release all and free the list's memory. */
void settle_list_free(struct settle *s, struct settle_list *l);

/* Route again, later, what h keeps (a stanza taken back to be routed
 * elsewhere): holds taken meanwhile are on its frame.  Returns the
 * frame that was being routed, for settle_leave. */
struct settle_at settle_enter(struct settle *s, const struct settle_hold *h);
void settle_leave(struct settle *s, struct settle_at was);
/* A frame is being routed (one of ours or a borrowed one). */
bool settle_routing(const struct settle *s);

/* ---- lending to another worker of this node ----------------------------
 * Tokens are per worker: a frame from another node that one worker
 * hands another (a stanza for the owner of an outgoing s2s link, an
 * XEP-0198 journal handed over) cannot be held by the taker under the
 * giver's token.  So the giver lends it: it keeps a hold under a lend
 * id, which the frame to the taker carries in its header's token field
 * (between two local workers; frame_check_route); the taker routes that
 * frame as a borrowed one (holds taken meanwhile are on it), and when
 * its last hold goes it tells the giver (IPC_FRAME_LENT_DONE, ids, once
 * per loop turn), which releases its hold.  A taker that dies with the
 * frame never answers: the giver lets go after cluster.hold_time, the
 * bridge's own bound for a held frame (settle_lent_expire). */

/* Lend the frame being routed to slot: its id for the frame's token,
 * or 0 (nothing being routed, or no memory: then nothing is held). */
uint32_t settle_lend(struct settle *s, uint16_t slot, int64_t now_ms);
/* Lend the holds of l (moved: l is left empty): an id, or 0 (l had
 * none, or no memory: l keeps them). */
uint32_t settle_lend_list(struct settle *s, uint16_t slot,
			  struct settle_list *l, int64_t now_ms);
/* slot is done with id. */
void settle_returned(struct settle *s, uint16_t slot, uint32_t id);
/* The frame never left (the send failed): a list's holds go back to l,
 * a single frame's are released (l NULL). */
void settle_lend_undo(struct settle *s, uint32_t id, struct settle_list *l);
/* Let go of lends older than max_ms: how many. */
size_t settle_lent_expire(struct settle *s, int64_t now_ms, int64_t max_ms);
/* Lends not returned (tests, xmppctl). */
size_t settle_lent_pending(const struct settle *s);
/* Route a frame slot lent us with id (instead of settle_begin). */
void settle_begin_borrowed(struct settle *s, uint16_t slot, uint32_t id);
/* The lend ids of one lender done with, for IPC_FRAME_LENT_DONE: 1 with
 * *slot_r and out (u32 ids) set, 0 none left. */
int settle_returns(struct settle *s, uint16_t *slot_r, struct buf *out);
/* Those ids could not be sent: kept for the next settle_returns. */
void settle_returns_again(struct settle *s, uint16_t slot,
			  const struct buf *ids);
/* The token of the frame being routed if it is one of ours (not a
 * borrowed one), else 0: what an XEP-0198 journal keeps with the
 * stanza, for adoption. */
uint32_t settle_token(const struct settle *s);

/* ---- adoption --------------------------------------------------------
 * A respawned worker adopts its predecessor's XEP-0198 journals
 * (sm_adopt), whose stanzas may be frames from other nodes that the
 * bridge still keeps for the dead process.  Before it reads anything:
 * settle_adopt_span for every token the journals carry, then
 * settle_adopt_begin, settle_adopt_hold for each as its session is
 * adopted (into the journal's keeper list), and settle_adopt_end.  The
 * first report then says FRESH and ADOPTED with base .. last the
 * adopted span: the bridge frees what the old process read outside it,
 * and inside it what the report's ranges name (nobody holds them). */
void settle_adopt_span(struct settle *s, uint32_t token);
void settle_adopt_begin(struct settle *s);
void settle_adopt_hold(struct settle *s, struct settle_list *l, uint64_t key,
		       uint32_t token);
void settle_adopt_end(struct settle *s);

/* Once a second: frames read more than hold_ms ago and still held are
 * let go (counted in forced), as the bridge lets go of them after
 * cluster.hold_time: a client that neither reads nor acknowledges
 * must not keep a place in the ring for every frame read after its
 * own.  Returns how many were let go. */
size_t settle_tick(struct settle *s, int64_t now_ms, int64_t hold_ms);

/* Tokens read and not done with (xmppctl, tests). */
size_t settle_pending(const struct settle *s);
/* The IPC_FRAME_SETTLED payload (struct ipc_settled and ranges, at most
 * IPC_SETTLED_RANGES_MAX) if there is news: 1 with out filled and
 * *used_r set, 0 nothing to say, -1 no memory.  Once it was queued the
 * caller calls settle_reported with *used_r: the rest waits. */
int settle_report(struct settle *s, struct buf *out, size_t *used_r);
void settle_reported(struct settle *s, size_t used);

#endif

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

struct settle {
	uint32_t cur;           /* token of the frame being routed, or 0 */
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
uint32_t settle_enter(struct settle *s, const struct settle_hold *h);
void settle_leave(struct settle *s, uint32_t was);
/* Tokens read and not done with (xmppctl, tests). */
size_t settle_pending(const struct settle *s);
/* The IPC_FRAME_SETTLED payload (struct ipc_settled and ranges, at most
 * IPC_SETTLED_RANGES_MAX) if there is news: 1 with out filled and
 * *used_r set, 0 nothing to say, -1 no memory.  Once it was queued the
 * caller calls settle_reported with *used_r: the rest waits. */
int settle_report(struct settle *s, struct buf *out, size_t *used_r);
void settle_reported(struct settle *s, size_t used);

#endif

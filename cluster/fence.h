/*
 * fence.h - replay fencing of the cluster's NATS messages (review 15
 * C10).  The MAC (lib/secret.h) proves a message was made by a node of
 * the cluster, not when: a recorded "leaving" heartbeat, P.sync or
 * P.reann replayed later would still be taken.  So every message a
 * bridge publishes carries, inside what the MAC covers, a trailer:
 *
 *   payload | sender name (n bytes) | n (1) | run (8) | seq (8) |
 *   sent_ms (8)                                    [then the MAC, 16]
 *
 * run: the sending bridge's start, wall-clock microseconds (a bridge
 * restart, or the node's, makes a larger one); seq: its messages
 * counted from 1 across every subject; sent_ms: its wall clock.  The
 * receiver keeps, per sender name, the newest run and a 64-message
 * window under its highest seq (as IPsec's anti-replay window: a few
 * messages arriving out of order across subjects pass, a copy does
 * not).  A message of an older run is refused; the first message of a
 * run we do not know yet (a new node, a restart, our own restart) must
 * be stamped within the allowed clock skew of our clock, so a message
 * recorded long ago cannot open a run of its own.  One check per
 * message, whatever its subject: the stanza batches' own sequence
 * numbers (xfer.c) stay what they are for (acks, resends), nothing is
 * counted twice.
 * Pure functions; the unit tests (tests/test_fence.c) drive them.
 */
#ifndef XMPPD_CLUSTER_FENCE_H
#define XMPPD_CLUSTER_FENCE_H

#include <stddef.h>
#include <stdint.h>

#define FENCE_NAME_MAX 32
#define FENCE_FIXED 25              /* n, run, seq, sent_ms */
#define FENCE_TRAILER_MAX (FENCE_NAME_MAX + FENCE_FIXED)
#define FENCE_WINDOW 64             /* messages of reordering allowed */
#define FENCE_PEERS 128             /* senders remembered (nodes: 64) */

struct fence_stamp {
	char node[FENCE_NAME_MAX + 1];
	uint64_t run, seq;
	int64_t sent_ms;
};

/* What we accepted last of one sender. */
struct fence_peer {
	char node[FENCE_NAME_MAX + 1];
	uint64_t run, top, mask;    /* mask bit i: top - i was taken */
	int64_t heard_ms;           /* our wall clock, for the eviction */
};

struct fence {
	struct fence_peer p[FENCE_PEERS];
	unsigned n;
	int64_t skew_ms;            /* cluster.clock_skew */
	/* every message's stamp within skew_ms of our clock, not only a
	 * new run's: for a subject whose messages a sender numbers in a
	 * window we may never see whole (snapshot parts, some dropped at
	 * a full queue), so that a recorded one is not good for ever */
	int clock_always;
};

enum fence_verdict {
	FENCE_OK = 0,
	FENCE_REPLAY,               /* seq taken already, or below the window */
	FENCE_OLD_RUN,              /* an earlier run of that node */
	FENCE_CLOCK,                /* a new run stamped too far from now */
};

/* Write the trailer of st at out (FENCE_TRAILER_MAX bytes of room);
 * returns its length. */
size_t fence_put(uint8_t *out, const struct fence_stamp *st);

/* The trailer at the end of msg (len bytes, MAC already taken off):
 * the payload's length in *payload_r, 0; -1 with a static reason for a
 * message without a well-formed one. */
int fence_take(const uint8_t *msg, size_t len, struct fence_stamp *st,
	       size_t *payload_r, const char **error_r);

void fence_init(struct fence *f, int64_t skew_ms);

/* Accept st (remember it) or refuse it; now_ms is our wall clock. */
enum fence_verdict fence_check(struct fence *f, const struct fence_stamp *st,
			       int64_t now_ms);

const char *fence_verdict_text(enum fence_verdict v);

/* The wall clock in ms and in µs (the runs' and stamps' clock). */
int64_t fence_wall_ms(void);
uint64_t fence_wall_us(void);

#endif

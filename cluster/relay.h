/*
 * relay.h - frames from one node's workers to another node's workers,
 * over NATS, with none lost silently (issue 15, docs/DESIGN.md
 * "Cluster").  NATS core delivers at most once: a message may be lost
 * in a reconnect, a slow consumer's overflow, or with the node it went
 * to.  So the sending bridge numbers the frames it sends each peer (one
 * sequence per pair of runs: this node's and the peer's incarnation),
 * keeps each until the peer acknowledges it, sends again what stays
 * unacknowledged, and when the peer is gone (down, or a new run of it)
 * hands every frame it still keeps back to its own workers as
 * undelivered: another resource, offline storage or an error, as for a
 * session that vanished.  The receiver takes frames in order only, once:
 * a duplicate is dropped, a gap waits for the sender to send again.
 *
 * The wire: a batch header, then whole frames (struct ipc_frame_header
 * and payload, as on the local queues: the nodes run the same binary on
 * the same architecture, which the heartbeat checks).  An ack is a
 * header (seq: every frame up to it is done with), then what the
 * receiver knows beyond it (struct relay_sack): the frames that arrived,
 * and which of them it is still not done with -- a frame held for a
 * slow reader or an XEP-0198 client's ack must not keep every later one
 * unacknowledged (and resent) behind it.
 */
#ifndef XMPPD_RELAY_H
#define XMPPD_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "ipc.h"

#define RELAY_MAGIC 0x58464231u     /* "XFB1" */
#define RELAY_NODE_MAX 32

enum relay_kind {
	RELAY_FRAMES = 1,           /* seq = the first frame's number */
	RELAY_ACK = 2,              /* seq = every frame up to it done with;
				       count = holes (struct relay_sack) */
	RELAY_REFUSED = 3,          /* an ack (the same body) that also says:
				       frames of this stream after
				       `received` were refused, because we
				       thought the sender gone (it may have
				       handed them back): start a new
				       stream with them (xfer.c) */
};

/* Holes an ack names at most. */
#define RELAY_SACK_MAX 256u

struct relay_range {
	uint64_t from, to;          /* inclusive */
};

/* An ack's body: u64 received, u64 claim, then count holes (u64 from,
 * u64 to), sorted, within (seq, claim]. */
struct relay_sack {
	uint64_t received;          /* every frame up to it arrived: never
				       sent again */
	uint64_t claim;             /* every frame in (seq, claim] is done
				       with, but those in the holes */
	uint32_t nholes;
	struct relay_range holes[RELAY_SACK_MAX];
};

struct relay_hdr {
	uint8_t kind;               /* enum relay_kind */
	char node[RELAY_NODE_MAX + 1];  /* the sender, NUL-terminated */
	uint64_t incarnation;       /* the sender's run */
	uint64_t peer_incarnation;  /* the run of the receiver it means */
	uint64_t seq;
	uint32_t count;             /* frames that follow (ack: 0) */
	uint32_t stream;            /* the sender's sequence for this peer,
				       from 1, one more each time it starts
				       over within its run (the peer went
				       down or restarted in its view; the
				       peer may not have noticed) */
};

int relay_put_hdr(struct buf *b, const struct relay_hdr *h);
void relay_set_count(struct buf *b, size_t hdr_off, uint32_t count);

struct relay_reader {
	const uint8_t *p;
	size_t len, off;
	uint32_t left;
	struct relay_hdr hdr;
};

/* 0 with r->hdr, or -1 with *error_r. */
int relay_read_begin(struct relay_reader *r, const void *data, size_t len,
		     const char **error_r);
/* An ack's body (r->hdr.kind RELAY_ACK): 0, or -1 with *error_r (holes
 * out of order or outside (seq, claim], claim below seq, received below
 * claim). */
int relay_read_sack(const struct relay_reader *r, struct relay_sack *s,
		    const char **error_r);
/* Append an ack's body (count in the header must be s->nholes). */
int relay_put_sack(struct buf *b, const struct relay_sack *s);
/* The next frame (header checked as the local queues check it, no
 * F_MORE, the payload whole): 1, 0 at the exact end, -1 with *error_r. */
int relay_read_next(struct relay_reader *r, struct ipc_frame_header *hdr,
		    const void **frame_r, size_t *frame_len_r,
		    const char **error_r);

/* ---- the sending side: one per peer ---------------------------------- */

struct relay_item {
	struct relay_item *next;
	uint64_t seq;
	size_t len;
	unsigned char data[];       /* the whole frame */
};

struct relay_out {
	uint64_t peer_incarnation;  /* the run these frames are for */
	uint32_t stream;            /* this sequence's number (relay_hdr) */
	uint64_t next_seq;          /* the next frame's number (from 1) */
	uint64_t acked;             /* every frame up to it was acked */
	uint64_t received;          /* every frame up to it arrived (the
				       kept ones wait to be done with, they
				       are not sent again) */
	size_t bytes, max_bytes;    /* kept; the bound (cluster.retain_bytes) */
	unsigned count;
	int64_t progress_ms;        /* when acked last moved */
	struct relay_item *head, *tail;
};

void relay_out_init(struct relay_out *o, uint64_t peer_incarnation,
		    size_t max_bytes);
/* Keep a copy of frame (numbered *seq_r).  -1: past max_bytes or out of
 * memory; the caller bounces it to its sender (resource-constraint). */
int relay_out_add(struct relay_out *o, const void *frame, size_t len,
		  int64_t now_ms, uint64_t *seq_r);
/* The peer has every frame up to upto: free them.  An ack beyond what
 * was sent, or for another run, is ignored (-1); 0 otherwise. */
int relay_out_ack(struct relay_out *o, uint64_t peer_incarnation,
		  uint32_t stream, uint64_t upto, int64_t now_ms);
/* The same with an ack's body: frames it says are done with are freed
 * out of order, frames it says arrived are not sent again. */
int relay_out_sack(struct relay_out *o, uint64_t peer_incarnation,
		   uint32_t stream, uint64_t upto, const struct relay_sack *s,
		   int64_t now_ms);
/* Hand every frame still kept to each (oldest first), free them, and
 * start a new sequence (stream + 1) for peer_incarnation (the peer
 * restarted, or is down: 0). */
void relay_out_reset(struct relay_out *o, uint64_t peer_incarnation,
		     void (*each)(void *ctx, const void *frame, size_t len),
		     void *ctx);
/* Frames to publish again: nothing acked for resend_ms while some that
 * did not arrive are waiting.  Returns the oldest of those (walk
 * ->next), or NULL. */
const struct relay_item *relay_out_resend_due(struct relay_out *o,
					      int64_t now_ms,
					      int64_t resend_ms);

/* ---- the receiving side: one per peer -------------------------------- */

struct relay_in {
	uint64_t peer_incarnation;  /* the sender's run we follow */
	uint32_t stream;            /* its sequence we follow */
	uint64_t delivered;         /* frames up to it were handed on */
	uint64_t settled;           /* ... and up to it done with: what an
				       ack says (<= delivered) */
	/* beyond settled: done with up to claim (<= delivered) but for the
	 * holes (xfer_settle) */
	uint64_t claim;
	uint32_t nholes;
	struct relay_range holes[RELAY_SACK_MAX];
	/* we thought the sender gone since we last took its stream: it may
	 * have thought us gone too and handed back what it kept for us,
	 * while NATS still holds copies (a route's TCP buffer across a
	 * partition delivers them after the heal): frames of that stream
	 * are refused until it starts a new one */
	bool refusing;
};

enum relay_verdict {
	RELAY_TAKE = 0,             /* hand on the frames from *skip_r on */
	RELAY_DUPLICATE,            /* all seen: drop, ack again */
	RELAY_GAP,                  /* some missing before: drop, ack what
				       we have; the sender sends again */
	RELAY_NOT_FOR_US,           /* meant for another run of this node:
				       drop, no ack */
	RELAY_OTHER_RUN,            /* from a run of the peer other than
				       the one its heartbeats announce:
				       drop, no ack */
	RELAY_REFUSED_STREAM,       /* of the stream we stopped taking
				       (in->refusing): drop, answer
				       RELAY_REFUSED */
};

/* Follow run peer_incarnation of the peer (from its heartbeat): its
 * sequence starts again. */
void relay_in_reset(struct relay_in *in, uint64_t peer_incarnation);
/* What to do with frames batch h from a peer; self_incarnation is this
 * node's run.  A later stream of the peer's starts over (*restarted_r
 * set: what was handed on of the earlier one is no longer counted, and
 * refusing ends); an earlier one is stale (RELAY_OTHER_RUN); the one
 * followed while refusing is RELAY_REFUSED_STREAM.  After handing frames on, the
 * caller sets in->delivered to the last one's number. */
enum relay_verdict relay_in_verdict(struct relay_in *in,
				    uint64_t self_incarnation,
				    const struct relay_hdr *h,
				    uint32_t *skip_r, bool *restarted_r);

#endif

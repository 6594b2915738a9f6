/*
 * xfer.h - the bridge's cross-node stanza traffic (issue 15,
 * docs/DESIGN.md "Cluster"): frames the workers of this node send to
 * sessions on other nodes, and frames other nodes send to ours.  One
 * relay pair (relay.h) per peer node: frames are batched per peer each
 * loop turn (one NATS message per peer, up to the batch bound), kept
 * until acknowledged, sent again while unacknowledged, and handed back
 * as undelivered when the peer is gone or restarted.  Incoming frames
 * are handed on in order, once; a local queue that refuses one stops the
 * batch there, unacknowledged, and the peer sends the rest again.
 *
 * NATS, the queues and the node table are the caller's (struct
 * xfer_ops), so the tests run three nodes in one process.
 */
#ifndef XMPPD_XFER_H
#define XMPPD_XFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "ipc.h"
#include "relay.h"

struct xfer_ops {
	void *ctx;
	/* a batch for node (its subject P.n.<name>): 0, or -1 (not sent:
	 * it is sent again from what is kept) */
	int (*publish)(void *ctx, unsigned node, const void *data, size_t len);
	/* an ack for node (P.ack.<name>) */
	void (*publish_ack)(void *ctx, unsigned node, const void *data,
			    size_t len);
	/* frame number seq from node, for our local slot hdr->node_slot:
	 * 0 handed on and done with (acknowledged now), 1 handed on, done
	 * with later (the caller says when: xfer_settle), or -1 (the queue
	 * is full: the frame comes again later) */
	int (*deliver)(void *ctx, unsigned from_node, uint64_t seq,
		       const struct ipc_frame_header *hdr, const void *frame,
		       size_t len);
	/* a frame we could not get to node (it went down or restarted
	 * before acknowledging it): treat as for a vanished session */
	void (*undelivered)(void *ctx, unsigned node, const void *frame,
			    size_t len);
	/* node started its sequence to us over (it thought us gone): what
	 * was handed on of the earlier one is no longer to be settled
	 * (may be NULL) */
	void (*in_reset)(void *ctx, unsigned node);
};

struct xfer_peer {
	bool known;                 /* we follow a run of this node */
	uint32_t streams;           /* sequences started to it in this run
				       of ours (the next is streams + 1) */
	struct relay_out out;
	struct relay_in in;
	struct buf batch;           /* frames to publish this turn */
	uint32_t batch_count;
	uint64_t batch_first;       /* the first one's number */
	bool ack_due;
	bool refuse_due;            /* answer its stream with RELAY_REFUSED */
	uint64_t batches_out, batches_in, resent, dups, gaps, refused;
	uint64_t frames_out, frames_in;
};

struct xfer {
	char self[RELAY_NODE_MAX + 1];
	uint64_t self_incarnation;
	size_t batch_max;           /* bytes of one published batch */
	size_t retain_max;          /* bytes kept per peer */
	int64_t resend_ms;
	struct xfer_ops ops;
	struct xfer_peer peers[IPC_MAX_NODES];
};

void xfer_init(struct xfer *x, const char *self, uint64_t incarnation,
	       size_t batch_max, size_t retain_max, int64_t resend_ms,
	       const struct xfer_ops *ops);
void xfer_free(struct xfer *x);
/* node's heartbeat announces run incarnation: a run other than the one
 * we follow hands back what the old one never acknowledged. */
void xfer_peer_run(struct xfer *x, unsigned node, uint64_t incarnation);
/* node's bridge restarted (new incarnation, the node's sessions still
 * there): what is kept for it is sent again on a new stream to the new
 * run rather than handed back. */
void xfer_peer_rerun(struct xfer *x, unsigned node, uint64_t incarnation,
		     int64_t now_ms);
/* node is down: hand back everything kept for it; forget it.  What it
 * sent us on the stream we followed is refused from now on (it may
 * have handed that back to its senders when it thought us gone): it
 * sends what it still keeps again on a new stream (RELAY_REFUSED). */
void xfer_peer_down(struct xfer *x, unsigned node);
/* A frame (header and payload) of a local worker for node.  0, or -1:
 * node unknown or down, or its bound reached (the caller bounces it). */
int xfer_send(struct xfer *x, unsigned node, const void *frame, size_t len,
	      int64_t now_ms);
/* End of a loop turn: publish the batches filled, the acks due, and
 * what waited unacknowledged for resend_ms. */
void xfer_flush(struct xfer *x, int64_t now_ms);
/* A message on our P.n subject (from node) or our P.ack subject.  -1
 * with *error_r: not well formed (dropped; the caller logs). */
int xfer_receive(struct xfer *x, unsigned from_node, const void *data,
		 size_t len, int64_t now_ms, const char **error_r);
/* Frames of node up to upto are done with (written to their sessions,
 * or routed on), and so are those in (upto, claim] but the holes
 * (sorted ranges of frames still held; at most RELAY_SACK_MAX): the
 * next ack says so.  Beyond what was handed on, or behind what was
 * said, nothing changes; holes out of order end the list there (claim
 * with it). */
void xfer_settle(struct xfer *x, unsigned node, uint64_t upto,
		 const struct relay_range *holes, uint32_t nholes,
		 uint64_t claim);
/* Frames of node handed on (the highest number) and done with. */
uint64_t xfer_delivered(const struct xfer *x, unsigned node);
/* Frames waiting for the next xfer_flush (any peer). */
bool xfer_pending(const struct xfer *x);
/* Bytes and frames kept for node (metrics, xmppctl). */
size_t xfer_kept_bytes(const struct xfer *x, unsigned node);

#endif

/*
 * queue.h - per-slot worker queues over SOCK_DGRAM socketpairs.
 *
 * The master makes one socketpair per slot before forking; slot i reads
 * queue_set.fds[i].recv, every process may send to slot i on
 * fds[i].send.  (Socketpairs are not bound to a path, so
 * net.unix.max_dgram_qlen does not stall them.)  Senders batch frames
 * per destination into datagrams of up to IPC_DGRAM_MAX bytes and flush
 * once per loop turn; payloads over IPC_FRAG_MAX are split into chunks
 * flagged IPC_FRAME_F_MORE and reassembled per source slot by the
 * receiver.  A destination whose socket is full keeps frames in an
 * outbox bounded in frames and in bytes (queue.outbox_frames,
 * queue.outbox_bytes); past a bound queue_send fails with QUEUE_ERR_FULL
 * so the caller can bounce the stanza with resource-constraint.
 * A malformed datagram or frame is logged and dropped.
 */
#ifndef XMPPD_QUEUE_H
#define XMPPD_QUEUE_H

#include <stddef.h>
#include <stdint.h>
#include "ipc.h"

struct queue_fds {
	int recv;           /* read by the slot's worker */
	int send;           /* written by anyone sending to the slot */
};

struct queue_set {
	unsigned nslots;
	struct queue_fds fds[IPC_MAX_SLOTS];
};

/* Master: make nslots socketpairs (non-blocking, close-on-exec, large
 * buffers). */
int queue_set_create(struct queue_set *qs, unsigned nslots,
		     const char **error_r);
/* Worker `slot` after fork: close the recv ends of other slots. */
void queue_set_child(struct queue_set *qs, unsigned slot);
void queue_set_close(struct queue_set *qs);

struct queue;   /* one process's sending and receiving state */

typedef void queue_frame_cb(const struct ipc_frame_header *hdr,
			    const void *payload, size_t len, void *ctx);

/* outbox bounds per destination; 0 picks the default (65536 frames,
 * 4 MiB).  An empty outbox always takes one valid frame. */
struct queue *queue_new(struct queue_set *qs, unsigned my_slot,
			unsigned outbox_max_frames, size_t outbox_max_bytes);
/* The cluster bridge's slot (an nslots beyond the workers'): only frames
 * to or from it may carry node fields.  Until it is set, none may
 * (frame_check_route).  Every process of a node with a cluster, the
 * bridge included, sets it. */
void queue_set_bridge(struct queue *q, unsigned bridge_slot);
/* New bounds (config reload); frames already queued stay. */
void queue_set_limits(struct queue *q, unsigned outbox_max_frames,
		      size_t outbox_max_bytes);
void queue_free(struct queue **q);

/* The error string of queue_send when an outbox bound would be passed
 * (compare with strcmp). */
#define QUEUE_ERR_FULL "outbox full"

/* Append one frame (payload may be any size up to IPC_FRAME_MAX) to the
 * batch for dst_slot.  0, or -1 with error when the outbox is full
 * (QUEUE_ERR_FULL; the destination's socket is tried first) or the frame
 * is invalid. */
int queue_send(struct queue *q, unsigned dst_slot, uint8_t type,
	       uint32_t conn_id, uint32_t gen, const void *payload,
	       size_t len, const char **error_r);
/* The same for a session on another node (issue 15): dst_slot is the
 * cluster bridge's, node and node_slot name the node and its worker
 * (frame_check_route: refused with node fields to any other slot, and
 * node 0 needs node_slot 0, which is what queue_send sends). */
int queue_send_node(struct queue *q, unsigned dst_slot, uint8_t node,
		    uint8_t node_slot, uint8_t type, uint32_t conn_id,
		    uint32_t gen, const void *payload, size_t len,
		    const char **error_r);
/* The bridge handing a worker a frame from another node: the same,
 * with its token (ipc.h, cluster/bridge_route.c). */
int queue_send_token(struct queue *q, unsigned dst_slot, uint8_t node,
		     uint8_t node_slot, uint8_t type, uint32_t conn_id,
		     uint32_t gen, uint32_t token, const void *payload,
		     size_t len, const char **error_r);
/* Send pending batches; frames that do not fit stay in the outbox.
 * Returns 1 when everything went out, 0 when some destination is full
 * (call again when queue_want_write() fds are writable), -1 on error. */
int queue_flush(struct queue *q);
/* Destinations with frames waiting: fills fds (up to max), returns count. */
int queue_pending_fds(struct queue *q, int *fds, unsigned max);
/* Frames waiting for dst_slot (batch + outbox). */
size_t queue_backlog(struct queue *q, unsigned dst_slot);
/* Bytes (headers included) waiting for dst_slot. */
size_t queue_backlog_bytes(struct queue *q, unsigned dst_slot);

/* Where the reader notes that it is dispatching a datagram it has not
 * taken off the socket yet: a word in shared memory that outlives the
 * worker (struct ipc_worker_stats.queue_dispatching), so its respawn
 * knows the head datagram was being dispatched when it died.  NULL: a
 * private word (tests). */
void queue_set_dispatch_flag(struct queue *q, _Atomic uint32_t *flag);
/* Read every datagram waiting on my slot's recv fd (up to max_dgrams,
 * 0 = until EAGAIN), calling cb for each complete frame in order.
 * Returns frames delivered, or -1 on a socket error. */
int queue_receive(struct queue *q, queue_frame_cb *cb, void *ctx,
		  unsigned max_dgrams);
/* Drop a partial reassembly from src_slot (when that worker died). */
void queue_forget_source(struct queue *q, unsigned src_slot);

#endif

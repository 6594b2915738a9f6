/*
 * muc_fan.h - the fan-out frames of one room stanza, one per destination
 * worker: a local worker's slot, or a worker of another cluster node
 * (reached through the bridge's slot, its node and worker slot in the
 * frame header), so that each worker anywhere gets the stanza once with
 * its recipients (IPC_FRAME_MUC_FANOUT, muc.c), and the frame read
 * back by the worker that gets it.  Pure bookkeeping over buffers: no
 * worker state, no sending (tests/test_muc_fan.c, and the fuzzer
 * fuzz/fuzz_muc_fanout.c on the reader).
 * Failure policy: no memory or a destination out of range answers NULL
 * or -1; the caller sends that recipient its own stanza instead.  A
 * frame that is not one muc_fan_put writes is refused whole, with a
 * reason, before any recipient is read.
 */
#ifndef XMPPD_MUC_FAN_H
#define XMPPD_MUC_FAN_H

#include <stdint.h>
#include "ipc.h"
#include "../lib/buf.h"

/* One destination worker's frame being built. */
struct muc_fan_group {
	uint16_t slot;              /* queue slot: a worker, or the bridge */
	uint8_t node;               /* 0: this node; else the node index */
	uint8_t rslot;              /* the worker slot on node (node 0: 0) */
	uint32_t count;             /* recipients in frame */
	int failed;                 /* a write to frame ran out of memory */
	struct buf frame;           /* ipc_muc_fanout, text, recipients */
};

struct muc_fan {
	struct muc_fan_group *groups;   /* groups[0 .. n) are in use; the
					   rest keep their buffers */
	unsigned n, cap;
	/* group index + 1 by destination (0: none): [0][slot] for a local
	 * worker, [node][rslot] for a worker of another node */
	uint16_t where[IPC_MAX_NODES][IPC_MAX_SLOTS];
};

/* The group of (slot, node, rslot), made empty (count 0, frame empty)
 * when new; NULL when out of range or out of memory.  The pointer is
 * good until the next call (the array may move). */
struct muc_fan_group *muc_fan_group(struct muc_fan *f, uint16_t slot,
				    uint8_t node, uint8_t rslot);
/* Forget every group (their buffers are kept for the next stanza, up
 * to keep_bytes each). */
void muc_fan_reset(struct muc_fan *f, size_t keep_bytes);
void muc_fan_free(struct muc_fan *f);

/* Add a recipient (its connection and full JID, jid_len 1 ..
 * IPC_JID_MAX) to g's frame; the first one writes text, the stanza
 * without 'to' (muc_fan_read's rules).  0, or -1 when the recipient
 * cannot go in this frame (bad JID or text). */
int muc_fan_put(struct muc_fan_group *g, const char *text, size_t text_len,
		uint32_t conn_id, uint32_t gen, const char *jid,
		size_t jid_len);
/* g's frame, ready to send (its header counts its recipients), and g
 * empty for the next; NULL (and g empty) when a write failed. */
const char *muc_fan_take(struct muc_fan_group *g, size_t *len_r);

/* Reading an IPC_FRAME_MUC_FANOUT payload. */
struct muc_fan_reader {
	const char *text;           /* the stanza without 'to': starts
				       '<', no NUL */
	uint32_t text_len;          /* > 0 */
	uint32_t count;             /* recipients, > 0 */
	const char *next;           /* the next recipient */
	uint32_t left;              /* recipients not read yet */
};
struct muc_fan_rcpt {
	uint32_t conn_id, gen;
	char jid[IPC_JID_MAX + 1];  /* no NUL inside, 1 .. IPC_JID_MAX */
};
/* Check the whole payload: 0, or -1 and a reason (short, a length past
 * the end, NUL in the text or a JID, no recipients, bytes after the
 * last one). */
int muc_fan_read(struct muc_fan_reader *r, const void *p, size_t len,
		 const char **error_r);
/* The next recipient of a checked payload: 1, or 0 after the last. */
int muc_fan_next(struct muc_fan_reader *r, struct muc_fan_rcpt *out);

#endif

/*
 * muc_fan.h - the fan-out frames of one room stanza, one per destination
 * worker: a local worker's slot, or a worker of another cluster node
 * (reached through the bridge's slot, its node and worker slot in the
 * frame header), so that each worker anywhere gets the stanza once with
 * its recipients (IPC_FRAME_MUC_FANOUT, muc.c).  Pure bookkeeping over
 * buffers: no worker state, no sending (tests/test_muc_fan.c).
 * Failure policy: no memory or a destination out of range answers NULL;
 * the caller sends that recipient its own stanza instead.
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

#endif

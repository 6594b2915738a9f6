/*
 * muc_fan.c - a room stanza's fan-out frames, one per destination
 * worker of the cluster (muc_fan.h).  A destination is found in O(1)
 * through the where[][] index, so a big room costs one look-up per
 * occupant whatever the number of workers and nodes.  Failure policy:
 * NULL on no memory or a bad destination; nothing logged here.
 */
#include <stdlib.h>
#include <string.h>
#include "muc_fan.h"

/* The where[][] cell of a destination: a remote worker is known by its
 * node and its slot there; its queue slot is always the bridge's. */
static uint16_t *muc_fan_cell(struct muc_fan *f, uint16_t slot,
			      uint8_t node, uint8_t rslot)
{
	if (node >= IPC_MAX_NODES || slot >= IPC_MAX_SLOTS ||
	    rslot >= IPC_MAX_SLOTS || (node == 0 && rslot != 0))
		return NULL;
	return &f->where[node][node == 0 ? slot : rslot];
}

static int muc_fan_grow(struct muc_fan *f)
{
	unsigned cap = f->cap != 0 ? f->cap * 2 : 8;
	struct muc_fan_group *g;

	if (cap > IPC_MAX_NODES * IPC_MAX_SLOTS)
		return -1;
	g = realloc(f->groups, cap * sizeof(*g));
	if (g == NULL)
		return -1;
	for (unsigned i = f->cap; i < cap; i++)
		buf_init(&g[i].frame, 0);
	f->groups = g;
	f->cap = cap;
	return 0;
}

struct muc_fan_group *muc_fan_group(struct muc_fan *f, uint16_t slot,
				    uint8_t node, uint8_t rslot)
{
	uint16_t *cell = muc_fan_cell(f, slot, node, rslot);
	struct muc_fan_group *g;

	if (cell == NULL)
		return NULL;
	if (*cell != 0) {
		g = &f->groups[*cell - 1];
		/* one node's sessions all sit at the bridge's slot */
		return g->slot == slot ? g : NULL;
	}
	if (f->n == f->cap && muc_fan_grow(f) < 0)
		return NULL;
	g = &f->groups[f->n++];
	g->slot = slot;
	g->node = node;
	g->rslot = node != 0 ? rslot : 0;
	g->count = 0;
	g->frame.len = g->frame.off = 0;
	*cell = (uint16_t)f->n;
	return g;
}

void muc_fan_reset(struct muc_fan *f, size_t keep_bytes)
{
	for (unsigned i = 0; i < f->n; i++) {
		struct muc_fan_group *g = &f->groups[i];
		uint16_t *cell = muc_fan_cell(f, g->slot, g->node, g->rslot);

		if (cell != NULL)
			*cell = 0;
		g->count = 0;
		if (g->frame.cap > keep_bytes)
			buf_free(&g->frame);    /* one big room keeps nothing */
		else
			g->frame.len = g->frame.off = 0;
	}
	f->n = 0;
}

void muc_fan_free(struct muc_fan *f)
{
	for (unsigned i = 0; i < f->cap; i++)
		buf_free(&f->groups[i].frame);
	free(f->groups);
	memset(f, 0, sizeof(*f));
}

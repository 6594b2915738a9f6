/*
 * table.c - the node-table rules of the bridge: a heartbeat creates or
 * refreshes a node's entry, silence moves it to SUSPECT then DOWN, our
 * own lost link marks everyone DOWN.  Pure functions over struct
 * ipc_cluster (the bridge is the single writer; each entry is written
 * inside shm_cluster_write_begin/end), so the unit tests drive them
 * with a private struct and a fake clock.
 * Failure policy: nothing fails; a 65th node is not added (FULL) unless
 * the entry of a node gone for cluster.node_forget was freed.
 */
#include "cluster.h"
#include "../shm/cluster.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

uint32_t cluster_node_next_state(uint32_t state, int64_t age_ms,
				 uint64_t interval_ms, uint64_t timeout_ms)
{
	if (state != IPC_NODE_UP && state != IPC_NODE_SUSPECT)
		return state;
	if (age_ms >= (int64_t)timeout_ms)
		return IPC_NODE_DOWN;
	if (age_ms >= 2 * (int64_t)interval_ms)
		return IPC_NODE_SUSPECT;
	return state;
}

/* The entry of name (1 .. nnodes-1), or -1. */
static int table_find(const struct ipc_cluster *c, const char *name)
{
	uint32_t n = atomic_load_explicit(&c->nnodes, memory_order_relaxed);
	for (uint32_t i = 1; i < n && i < IPC_MAX_NODES; i++)
		if (strcmp(c->nodes[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* A FREE entry (cluster_table_forget), or -1. */
static int table_free_place(const struct ipc_cluster *c)
{
	for (uint32_t i = 1; i < IPC_MAX_NODES; i++)
		if (c->nodes[i].state == IPC_NODE_FREE)
			return (int)i;
	return -1;
}

static int table_compatible(const struct ipc_cluster *c,
			    const struct cluster_hb *hb)
{
	return hb->ipc_version == IPC_VERSION &&
	       strcmp(hb->cluster, c->name) == 0;
}

/* The state and event of a known entry hearing hb. */
static enum cluster_event table_refresh_event(const struct ipc_cluster *c,
					      struct ipc_cluster_node *n,
					      const struct cluster_hb *hb,
					      uint32_t *state_r)
{
	int restarted = n->incarnation != hb->incarnation;
	if (!table_compatible(c, hb)) {
		*state_r = IPC_NODE_INCOMPATIBLE;
		return n->state != IPC_NODE_INCOMPATIBLE || restarted ?
			CLUSTER_EV_INCOMPATIBLE : CLUSTER_EV_NONE;
	}
	if (hb->flags & CLUSTER_HB_F_LEAVING) {
		*state_r = IPC_NODE_DOWN;
		/* a late copy of the same farewell says nothing new */
		return n->state == IPC_NODE_DOWN && !restarted ?
			CLUSTER_EV_NONE : CLUSTER_EV_LEFT;
	}
	*state_r = IPC_NODE_UP;
	if (restarted)
		return CLUSTER_EV_RESTARTED;
	return n->state == IPC_NODE_DOWN ||
	       n->state == IPC_NODE_INCOMPATIBLE ? CLUSTER_EV_BACK :
	       CLUSTER_EV_NONE;
}

static void table_write(struct ipc_cluster_node *n,
			const struct cluster_hb *hb, uint32_t state,
			int64_t now_ms, int restarted)
{
	shm_cluster_write_begin(n);
	if (n->name[0] == '\0')
		snprintf(n->name, sizeof(n->name), "%s", hb->node);
	if (restarted && n->incarnation != 0)
		n->restarts++;
	n->state = state;
	n->incarnation = hb->incarnation;
	n->last_hb_ms = now_ms;
	n->workers = hb->workers;
	n->sessions = hb->sessions;
	n->dir_seq = hb->dir_seq;
	n->ipc_version = hb->ipc_version;
	n->node_run = hb->node_run;
	shm_cluster_write_end(n);
}

enum cluster_event cluster_table_heard(struct ipc_cluster *c,
				       const struct cluster_hb *hb,
				       uint64_t self_incarnation,
				       int64_t now_ms, unsigned *index_r)
{
	if (strcmp(hb->node, c->nodes[0].name) == 0) {
		*index_r = 0;
		/* NoEcho keeps our own away; the same incarnation can only
		 * be a copy of ours, another one is a second process */
		return hb->incarnation == self_incarnation ? CLUSTER_EV_NONE :
			CLUSTER_EV_CLAIM;
	}
	int i = table_find(c, hb->node);
	if (i < 0) {
		uint32_t n = atomic_load_explicit(&c->nnodes,
						  memory_order_relaxed);
		int freed = n >= IPC_MAX_NODES ? table_free_place(c) : -1;
		if (n >= IPC_MAX_NODES && freed < 0)
			return CLUSTER_EV_FULL;
		if (freed > 0)
			n = (uint32_t)freed;
		uint32_t state = table_compatible(c, hb) ?
			((hb->flags & CLUSTER_HB_F_LEAVING) ? IPC_NODE_DOWN :
			 IPC_NODE_UP) : IPC_NODE_INCOMPATIBLE;
		table_write(&c->nodes[n], hb, state, now_ms, 0);
		/* published after the entry: a reader of nnodes sees it
		 * whole (its seq is even again) */
		if (freed < 0)
			atomic_store_explicit(&c->nnodes, n + 1,
					      memory_order_release);
		*index_r = n;
		if (state == IPC_NODE_INCOMPATIBLE)
			return CLUSTER_EV_INCOMPATIBLE;
		return state == IPC_NODE_DOWN ? CLUSTER_EV_LEFT :
			CLUSTER_EV_JOINED;
	}
	struct ipc_cluster_node *n = &c->nodes[i];
	uint32_t state;
	enum cluster_event ev = table_refresh_event(c, n, hb, &state);
	table_write(n, hb, state, now_ms, n->incarnation != hb->incarnation);
	*index_r = (unsigned)i;
	return ev;
}

unsigned cluster_table_tick(struct ipc_cluster *c, int64_t now_ms,
			    uint64_t interval_ms, uint64_t timeout_ms,
			    int link_lost, cluster_change_cb *cb, void *ctx)
{
	uint32_t nn = atomic_load_explicit(&c->nnodes, memory_order_relaxed);
	unsigned changed = 0;

	for (uint32_t i = 1; i < nn && i < IPC_MAX_NODES; i++) {
		struct ipc_cluster_node *n = &c->nodes[i];
		int64_t age = now_ms - n->last_hb_ms;
		uint32_t next = cluster_node_next_state(n->state, age,
							interval_ms, timeout_ms);
		enum cluster_event ev = next == IPC_NODE_DOWN ?
			CLUSTER_EV_DOWN : CLUSTER_EV_SUSPECT;
		if (link_lost && (n->state == IPC_NODE_UP ||
				  n->state == IPC_NODE_SUSPECT)) {
			next = IPC_NODE_DOWN;
			ev = CLUSTER_EV_LINK_LOST;
		}
		if (next == n->state)
			continue;
		shm_cluster_write_begin(n);
		n->state = next;
		shm_cluster_write_end(n);
		changed++;
		if (cb != NULL)
			cb(i, ev, n, age, ctx);
	}
	return changed;
}

unsigned cluster_table_forget(struct ipc_cluster *c, int64_t now_ms,
			      uint64_t forget_ms, cluster_in_use_cb *in_use,
			      cluster_change_cb *forgotten, void *ctx)
{
	uint32_t nn = atomic_load_explicit(&c->nnodes, memory_order_relaxed);
	unsigned freed = 0;
	for (uint32_t i = 1; i < nn && i < IPC_MAX_NODES; i++) {
		struct ipc_cluster_node *n = &c->nodes[i];
		int64_t age = now_ms - n->last_hb_ms;
		if ((n->state != IPC_NODE_DOWN &&
		     n->state != IPC_NODE_INCOMPATIBLE) ||
		    age < (int64_t)forget_ms ||
		    (in_use != NULL && in_use(i, ctx)))
			continue;
		if (forgotten != NULL)
			forgotten(i, CLUSTER_EV_NONE, n, age, ctx);
		shm_cluster_write_begin(n);
		/* every field but the seqlock: a reader sees a FREE entry
		 * with no name, never half of the old node */
		memset((char *)n + offsetof(struct ipc_cluster_node, state), 0,
		       sizeof(*n) - offsetof(struct ipc_cluster_node, state));
		shm_cluster_write_end(n);
		freed++;
	}
	return freed;
}

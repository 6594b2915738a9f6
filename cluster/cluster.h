/*
 * cluster.h - the cluster of xmppd nodes over NATS (issue 15): the
 * per-node bridge process (bridge.c: one more slot after the workers,
 * the only process that links libnats), its heartbeat record (hb.c) and
 * the node-table rules (table.c: who is up, suspect, down or
 * incompatible).  hb.c and table.c are pure (no NATS, no sockets), so
 * the unit tests and the fuzz harness run them as they are.
 * Failure policy: a heartbeat that does not parse is refused (counted,
 * logged at debug: it is network input); the table never fails (a full
 * table ignores the 65th node with a rate-limited warning).
 */
#ifndef XMPPD_CLUSTER_H
#define XMPPD_CLUSTER_H

#include <stddef.h>
#include <stdint.h>
#include "ipc.h"

struct worker_boot;

/* ---- heartbeat (hb.c) ---------------------------------------------------
 * Published on xmppd.<cluster>.hb every cluster.heartbeat_interval.
 * Fixed 120 bytes, little-endian:
 *   0  "XHB"            3  format (1)       4  flags (bit 0: leaving)
 *   5  node name length 6  cluster name length   7  0
 *   8  incarnation u64  16 IPC_VERSION u32  20 workers u32
 *   24 sessions u64     32 dir_seq u64
 *   40 node name (32 bytes, zero-padded)   72 cluster name (32, same)
 *   104 dir_digest u64 (the XOR of its sessions' directory digests,
 *       cluster/dirwire.h; sessions is their count)
 *   112 node_run u64 (the node's master's run: a new incarnation with
 *       the same node_run is a bridge respawn, the sessions still there)
 * A format other than 1 is refused: nodes of another format are older
 * or newer binaries, which the IPC_VERSION check would refuse anyway. */
#define CLUSTER_HB_SIZE 120u
#define CLUSTER_HB_FORMAT 1u
#define CLUSTER_NAME_MAX 32u

enum cluster_hb_flags {
	CLUSTER_HB_F_LEAVING = 0x01,    /* the node is stopping: mark it
					   down now, not at node_timeout */
};

struct cluster_hb {
	char node[CLUSTER_NAME_MAX + 1];
	char cluster[CLUSTER_NAME_MAX + 1];
	uint8_t flags;                  /* enum cluster_hb_flags */
	uint64_t incarnation;           /* never 0 */
	uint32_t ipc_version;
	uint32_t workers;
	uint64_t sessions;
	uint64_t dir_seq;
	uint64_t dir_digest;
	uint64_t node_run;
};

/* hb into out (CLUSTER_HB_SIZE bytes).  Names longer than
 * CLUSTER_NAME_MAX are cut (config.c allows at most 32). */
void cluster_hb_encode(const struct cluster_hb *hb,
		       uint8_t out[CLUSTER_HB_SIZE]);
/* 0 and *hb, or -1 and a static reason (short, unknown format, bad
 * flags, bad name, zero incarnation, worker count out of range,
 * trailing bytes). */
int cluster_hb_parse(const void *data, size_t len, struct cluster_hb *hb,
		     const char **error_r);

/* ---- node table (table.c) ----------------------------------------------- */

enum cluster_event {
	CLUSTER_EV_NONE = 0,
	CLUSTER_EV_JOINED,              /* a node heard for the first time */
	CLUSTER_EV_RESTARTED,           /* a known name, a new incarnation */
	CLUSTER_EV_BACK,                /* a DOWN node heard again */
	CLUSTER_EV_LEFT,                /* its heartbeat said "leaving" */
	CLUSTER_EV_INCOMPATIBLE,        /* another IPC_VERSION or cluster
					   name (once per incarnation) */
	CLUSTER_EV_CLAIM,               /* our own name, another incarnation:
					   another process claims our name */
	CLUSTER_EV_FULL,                /* IPC_MAX_NODES nodes: not added */
	CLUSTER_EV_SUSPECT,             /* tick: silent 2 intervals */
	CLUSTER_EV_DOWN,                /* tick: silent node_timeout */
	CLUSTER_EV_LINK_LOST,           /* tick: our link down node_timeout:
					   this node is marked DOWN */
};

/* The state a node in `state` moves to, silent for age_ms (now minus its
 * last heartbeat): UP -> SUSPECT after 2 intervals, UP/SUSPECT -> DOWN
 * after timeout.  Other states do not move with time. */
uint32_t cluster_node_next_state(uint32_t state, int64_t age_ms,
				 uint64_t interval_ms, uint64_t timeout_ms);

/* A parsed heartbeat of another node, heard at now_ms: create or refresh
 * its entry (c->nodes[0] is us: self_incarnation is ours).  Returns the
 * event to log, *index_r the entry (unchanged for FULL and CLAIM). */
enum cluster_event cluster_table_heard(struct ipc_cluster *c,
				       const struct cluster_hb *hb,
				       uint64_t self_incarnation,
				       int64_t now_ms, unsigned *index_r);

typedef void cluster_change_cb(unsigned index, enum cluster_event ev,
			       const struct ipc_cluster_node *node,
			       int64_t age_ms, void *ctx);
/* Move silent nodes by cluster_node_next_state; with link_lost (our own
 * link down longer than timeout) every UP or SUSPECT node goes DOWN (we
 * cannot know: the directory slice resyncs at reconnect).  cb gets each
 * change (may be NULL).  Returns how many changed. */
unsigned cluster_table_tick(struct ipc_cluster *c, int64_t now_ms,
			    uint64_t interval_ms, uint64_t timeout_ms,
			    int link_lost, cluster_change_cb *cb, void *ctx);

/* Review 15 C10: entries of nodes gone for long are freed, or 63 names
 * heard once would fill the table for good.  An entry DOWN or
 * INCOMPATIBLE and not heard for forget_ms becomes FREE (name cleared)
 * when in_use(index, ctx) says nothing refers to it any more (session
 * records, frames kept or being settled: the bridge knows); forgotten
 * gets each (may be NULL).  A FREE place is taken again only when the
 * table is full (cluster_table_heard): an index stays one node's as
 * long as there is room.  Returns how many were freed. */
typedef int cluster_in_use_cb(unsigned index, void *ctx);
unsigned cluster_table_forget(struct ipc_cluster *c, int64_t now_ms,
			      uint64_t forget_ms, cluster_in_use_cb *in_use,
			      cluster_change_cb *forgotten, void *ctx);

/* ---- the bridge process (bridge.c, built with libnats) ------------------ */

/* Runs the bridge in its slot; exits 0 after IPC_CMD_QUIT, 2 on a
 * configuration error (the master does not respawn it), 1 otherwise. */
_Noreturn void cluster_bridge_main(struct worker_boot *boot);

#endif

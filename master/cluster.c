/*
 * cluster.c - the master's view of the cluster for the control line
 * `cluster` (xmppctl cluster status): this node, the NATS link, and each
 * node of the shared node table, read with the table's seqlock
 * (shm/cluster.h).  The master only reads: the bridge writes the table.
 * Failure policy: an entry that cannot be read consistently (its writer
 * died mid-update) is skipped; nothing else can fail.
 */
#include "master.h"
#include "metrics.h"
#include "util.h"
#include "../shm/cluster.h"
#include "../cluster/members.h"

#include <stdatomic.h>

/* This node's bound resources now, from the workers' gauges (the copy in
 * nodes[0] is only as fresh as the bridge's last heartbeat). */
static uint64_t cluster_local_sessions(struct master *m)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < m->nworkers; i++)
		n += METRIC_GET(shm_worker_stats(&m->shm, i)->sessions);
	return n;
}

/* The bridge runs: its slot has a pid.  While it is being respawned the
 * link is down whatever the table last said. */
static int cluster_bridge_running(const struct master *m)
{
	return m->nslots > m->nworkers && m->slots[m->nworkers].pid > 0;
}

static void cluster_node_line(struct master *m, unsigned i, int64_t now,
			      struct buf *out)
{
	struct ipc_cluster_node n;
	if (!shm_cluster_read_node(&m->shm.hdr->cluster, i, &n) ||
	    n.state == IPC_NODE_FREE)
		return;
	int64_t age = i == 0 || n.last_hb_ms == 0 ? 0 : now - n.last_hb_ms;
	buf_appendf(out, "node\tname=%s\tstate=%s\tincarnation=%016llx\t"
		    "sessions=%llu\tworkers=%u\theartbeat_age_ms=%lld\t"
		    "directory=%llu\tkept_bytes=%llu\tframes_out=%llu\t"
		    "frames_in=%llu\tresent=%llu\n",
		    n.name, shm_cluster_state_name(n.state),
		    (unsigned long long)n.incarnation, (unsigned long long)
		    (i == 0 ? cluster_local_sessions(m) : n.sessions),
		    i == 0 ? m->nworkers : n.workers,
		    (long long)(age < 0 ? 0 : age),
		    (unsigned long long)n.directory,
		    (unsigned long long)n.kept_bytes,
		    (unsigned long long)n.frames_out,
		    (unsigned long long)n.frames_in,
		    (unsigned long long)n.resent);
}

void master_cluster_status(struct master *m, struct buf *out)
{
	struct ipc_cluster *c = &m->shm.hdr->cluster;
	struct ipc_cluster_node self;
	char server[IPC_CLUSTER_URL];

	if (!c->enabled || !shm_cluster_read_node(c, 0, &self)) {
		buf_appendf(out, "cluster\tenabled=0\nOK\n");
		return;
	}
	int up = cluster_bridge_running(m) && METRIC_GET(c->link_up);
	shm_cluster_read_server(c, server, sizeof(server));
	buf_appendf(out, "cluster\tenabled=1\tname=%s\tnode=%s\t"
		    "incarnation=%016llx\tlink=%s\tserver=%s\treconnects=%llu\t"
		    "bridge_pid=%d\n", c->name, self.name,
		    (unsigned long long)self.incarnation, up ? "up" : "down",
		    server, (unsigned long long)METRIC_GET(c->reconnects),
		    cluster_bridge_running(m) ? (int)m->slots[m->nworkers].pid :
		    0);
	uint32_t nn = atomic_load_explicit(&c->nnodes, memory_order_acquire);
	int64_t now = time_now_ms();
	/* the member list (key-value bucket) and whether this node may act
	 * as an owner now (its lease) */
	static struct members ms;
	if (shm_cluster_read_members(c, &ms, NULL)) {
		buf_appendf(out, "members\tepoch=%llu\towner=%s\tnames=",
			    (unsigned long long)ms.epoch,
			    shm_cluster_owner_ok(c, now,
						 m->cfg->cluster_lease_time) ?
			    "yes" : "no");
		for (unsigned i = 0; i < ms.n; i++)
			buf_appendf(out, "%s%s", i ? "," : "", ms.m[i].name);
		buf_appendf(out, "\n");
	}
	/* how our own changes are read (dirfeed.c), and snapshots lost */
	buf_appendf(out, "feed\twalks=%llu\tlogged=%llu\tlapped=%llu\t"
		    "snapshot_parts_dropped=%llu\n",
		    (unsigned long long)METRIC_GET(c->dir_walks),
		    (unsigned long long)METRIC_GET(c->dir_logged),
		    (unsigned long long)METRIC_GET(c->dir_lapped),
		    (unsigned long long)METRIC_GET(c->snap_dropped));
	for (unsigned i = 0; i < nn && i < IPC_MAX_NODES; i++)
		cluster_node_line(m, i, now, out);
	buf_appendf(out, "OK\n");
}

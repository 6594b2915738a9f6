/*
 * muc_cluster.c - where a room lives when several nodes serve the domain
 * (issue 15, docs/DESIGN.md "Cluster"): the room's owner node is the
 * member with the highest rendezvous score for its JID in the member
 * list the bridge's key-value thread keeps in shared memory
 * (cluster/members.c, cluster/kv.c); inside that node, the worker its
 * hash picks among that node's workers, as on a single node.
 *
 * No owner is answered (the caller bounces resource-constraint, type
 * wait) while the cluster has no member list yet, while this node would
 * own the room but its lease is not renewed (the minority side of a
 * partition: another node is about to take the room over) or the list
 * does not have this run of it yet (a restart), and for
 * MUC_HANDOVER_MS after a member list moved the room between two live
 * nodes (the old owner may still be finishing what it accepted under
 * the old list, which it read up to one key-value round earlier).
 *
 * An occupant session missing from the session table is taken for
 * ended only when the table can know (muc_absence_known): a member
 * node we do not hear (a partition: its sessions were swept from our
 * table, they may well live on the other side) keeps its occupants
 * until the member list drops it; the room's owner after that removes
 * them (333).  Otherwise an owner cut off with a minority would write
 * the majority's occupants out of PostgreSQL before its lease lapsed,
 * and the majority's next owner would read a room without them.
 * Failure policy: nothing here fails; an unreadable list is "no owner".
 */
#include "muc_int.h"
#include "../cluster/members.h"
#include "../shm/cluster.h"
#include "session.h"
#include "util.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#define MUC_HANDOVER_MS 2500        /* > two key-value rounds (1 s each) */

/* This worker's copy of the member list, and the one before it. */
static struct {
	uint32_t seq;               /* the shm seqlock value it was read at */
	int valid;
	struct members cur, prev;
	int64_t changed_ms;         /* when cur replaced prev (monotonic) */
} mc;

uint32_t muc_room_hash(const char *room_bare)
{
	uint32_t h = 2166136261u;
	for (const char *p = room_bare; *p != '\0'; p++)
		h = (h ^ (uint8_t)tolower((unsigned char)*p)) * 16777619u;
	return h;
}

int muc_cluster_on(const struct worker *w)
{
	return w->shm->hdr->cluster.enabled != 0 && w->nslots > w->nworkers;
}

const char *muc_node_self(const struct worker *w)
{
	return muc_cluster_on(w) ? w->shm->hdr->cluster.nodes[0].name : "";
}

/* Refresh the copy when the shared list moved; the current copy. */
const struct members *muc_members(struct worker *w, uint64_t *epoch_r)
{
	static struct members fresh;
	struct ipc_cluster *c = &w->shm->hdr->cluster;
	uint32_t seq = shm_cluster_members_seq(c);
	int64_t changed;
	if ((!mc.valid || seq != mc.seq) && (seq & 1u) == 0 &&
	    shm_cluster_read_members(c, &fresh, &changed)) {
		if (!mc.valid || fresh.epoch != mc.cur.epoch) {
			/* the window counts from when the node read the new
			 * list, not from when this worker first looked */
			mc.prev = mc.cur;
			mc.cur = fresh;
			mc.changed_ms = mc.valid ? changed : 0;
		}
		mc.seq = seq;
		mc.valid = 1;
	}
	if (epoch_r != NULL)
		*epoch_r = mc.valid ? mc.cur.epoch : 0;
	return &mc.cur;
}

/* The node table index of a node name, or -1. */
static int muc_node_index(const struct worker *w, const char *name)
{
	const struct ipc_cluster *c = &w->shm->hdr->cluster;
	struct ipc_cluster_node n;
	uint32_t nn = c->nnodes;
	for (uint32_t i = 0; i < nn && i < IPC_MAX_NODES; i++)
		if (shm_cluster_read_node(c, i, &n) &&
		    strcmp(n.name, name) == 0)
			return (int)i;
	return -1;
}

/* Did the room just move between two nodes that are both still members
 * (a node joined)?  Then wait until the old owner has surely seen it. */
static int muc_in_handover(const char *room, size_t len, int64_t now)
{
	if (mc.changed_ms == 0 || now - mc.changed_ms >= MUC_HANDOVER_MS ||
	    mc.prev.n == 0)
		return 0;
	int was = members_owner(&mc.prev, room, len);
	int is = members_owner(&mc.cur, room, len);
	return was >= 0 && is >= 0 &&
	       strcmp(mc.prev.m[was].name, mc.cur.m[is].name) != 0 &&
	       members_find(&mc.cur, mc.prev.m[was].name) >= 0;
}

/* The list has this run of our node (our bridge's incarnation): a node
 * that restarted under its name acts as owner only once the coordinator
 * took its new run in, a round or two after its start, by when the
 * directory snapshots of the other nodes' sessions have come (a room
 * read before would take their occupants for gone). */
static int muc_list_knows_us(const struct worker *w, const struct member *m)
{
	struct ipc_cluster_node self;
	return shm_cluster_read_node(&w->shm->hdr->cluster, 0, &self) &&
	       self.incarnation != 0 && self.incarnation == m->incarnation;
}

int muc_where(struct worker *w, const char *room, struct muc_where *r)
{
	uint32_t h = muc_room_hash(room);
	memset(r, 0, sizeof(*r));
	if (!muc_cluster_on(w)) {
		r->slot = w->nworkers > 0 ? h % w->nworkers : 0;
		return 0;
	}
	const struct members *ms = muc_members(w, NULL);
	size_t len = strlen(room);
	int64_t now = time_now_ms();
	int o = members_owner(ms, room, len);
	if (o < 0 || muc_in_handover(room, len, now))
		return -1;
	int idx = muc_node_index(w, ms->m[o].name);
	if (idx == 0) {
		if (!shm_cluster_owner_ok(&w->shm->hdr->cluster, now,
					  w->cfg->cluster_lease_time) ||
		    !muc_list_knows_us(w, &ms->m[o]))
			return -1;      /* fenced: not ours to act on */
		r->slot = w->nworkers > 0 ? h % w->nworkers : 0;
		return 0;
	}
	struct ipc_cluster_node n;
	if (idx < 0 || !shm_cluster_read_node(&w->shm->hdr->cluster,
					       (unsigned)idx, &n) ||
	    n.workers == 0 ||
	    (n.state != IPC_NODE_UP && n.state != IPC_NODE_SUSPECT))
		return -1;      /* a member we do not hear (down, not yet, or
				   of another version: never routed to) */
	r->slot = w->nworkers;  /* the bridge's */
	r->node = (uint8_t)idx;
	r->rslot = (uint8_t)(h % n.workers);
	return 0;
}

int muc_where_here(struct worker *w, const char *room)
{
	struct muc_where r;
	return muc_where(w, room, &r) == 0 && r.node == 0 &&
	       r.slot == w->slot;
}

void muc_home_set(struct worker *w, char *home, unsigned node)
{
	struct ipc_cluster_node n;
	if (!muc_cluster_on(w))
		home[0] = '\0';
	else if (node == 0)
		snprintf(home, IPC_NODE_NAME, "%s", muc_node_self(w));
	else if (node < IPC_MAX_NODES &&
		 shm_cluster_read_node(&w->shm->hdr->cluster, node, &n))
		snprintf(home, IPC_NODE_NAME, "%s", n.name);
}

const char *muc_node_of(struct worker *w, const char *jid,
			const char *home)
{
	static char name[IPC_NODE_NAME];
	struct session_info s;
	if (!muc_cluster_on(w))
		return "";
	if (shm_session_get(w->shm->sessions, jid, &s) == 1) {
		snprintf(name, sizeof(name), "%s", muc_node_self(w));
		muc_home_set(w, name, s.node);
		return name;
	}
	/* out of the table: where it was, not here (a row rewritten
	 * meanwhile must not turn a cut-off node's occupant into ours) */
	return home != NULL && home[0] != '\0' ? home : muc_node_self(w);
}

int muc_absence_known(struct worker *w, const char *home)
{
	struct ipc_cluster_node n;
	if (!muc_cluster_on(w) || strcmp(home, muc_node_self(w)) == 0)
		return 1;       /* our own table is the truth */
	if (members_find(muc_members(w, NULL), home) < 0)
		return 1;       /* left the cluster (or a row of no node) */
	int idx = muc_node_index(w, home);
	/* heard, and its directory complete in our table (the count its
	 * heartbeat gives is the count we hold: not while a snapshot is
	 * awaited after a heal or a restart) */
	return idx > 0 &&
	       shm_cluster_read_node(&w->shm->hdr->cluster, (unsigned)idx,
				     &n) &&
	       (n.state == IPC_NODE_UP || n.state == IPC_NODE_SUSPECT) &&
	       n.directory == n.sessions;
}

int muc_members_array(struct worker *w, char *buf, size_t size)
{
	const struct members *ms = muc_members(w, NULL);
	size_t off = 0;
	int n = snprintf(buf, size, "{");
	if (n < 0 || (size_t)n >= size)
		return -1;
	off = (size_t)n;
	for (unsigned i = 0; i < ms->n; i++) {
		/* names are [A-Za-z0-9_-]: nothing to quote */
		n = snprintf(buf + off, size - off, "%s%s", i > 0 ? "," : "",
			     ms->m[i].name);
		if (n < 0 || (size_t)n >= size - off)
			return -1;
		off += (size_t)n;
	}
	n = snprintf(buf + off, size - off, "}");
	return n < 0 || (size_t)n >= size - off ? -1 : 0;
}

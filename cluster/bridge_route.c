/*
 * bridge_route.c - the bridge's part of "a session on another node is
 * one more kind of another worker" (issue 15, docs/DESIGN.md
 * "Cluster"): the session directory (directory.c) between this node's
 * session table and the others', and the stanza frames between this
 * node's workers and the others' (xfer.c).
 *
 * Our sessions: every ROUTE_SCAN_MS the bridge reads the records the
 * session table's change log names (dirfeed.c), compares them with
 * what it told the others, and publishes the differences as numbered
 * events on P.dir (the log is written under the table's lock by
 * whoever changes a local session: a worker, the master's sweep after
 * a crash; a table rebuilt after a dead lock holder, or a log that
 * lapped the bridge, costs one full walk).  Their sessions: events
 * and snapshots from each other node enter and leave our table as
 * remote entries (slot = the bridge's, node = their index).
 *
 * Frames: a worker sends a frame for a remote entry to the bridge's
 * slot with the node and its worker in the header; it goes out in that
 * node's next batch, is kept until acknowledged, and comes back to the
 * worker that sent it as undelivered if the node goes away first.
 * Frames from other nodes go to the worker named in them.
 *
 * Failure policy: bad input from another node is dropped and logged at
 * most every few seconds (it comes again, or a snapshot repairs it);
 * a frame that cannot be sent is handed back as undelivered, never
 * dropped; a full session table refuses a remote entry with a log line
 * (its node's users are then unreachable from here until there is
 * room, which the table's size setting governs).
 */
#include "bridge_int.h"
#include "secret.h"
#include "frame.h"
#include "log.h"
#include "queue.h"
#include "session.h"
#include "util.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROUTE_SCAN_MS 100           /* our sessions vs the table */
/* A full walk of the table regardless of the log: a safety net only
 * (the log and a walk give the same result, tests/test_directory.c);
 * at 4,000,000 slots a walk costs the bridge 30-50 ms (bench/dirfeed),
 * so once a minute is under 0.1% of its core where every 5 s was 0.7%
 * (docs/PERFORMANCE.md "The change log instead of the scan"). */
#define ROUTE_FULL_SCAN_MS 60000
#define ROUTE_SNAP_PART (64u * 1024u)   /* bytes of a snapshot part */
#define ROUTE_BATCH_MAX (256u * 1024u)  /* bytes of a frames batch */
#define ROUTE_RESEND_MS 1000        /* unacknowledged this long: again */
#define ROUTE_HELD_MAX (16u << 20)  /* events held during a snapshot */
#define ROUTE_ASK_AGAIN_MS 2000     /* no snapshot this long: ask again */
#define ROUTE_LOG_EVERY_MS 5000
#define ROUTE_REANN_ASKS 3          /* re-announce requests after a heal */
#define ROUTE_REANN_QUIET_MS 10000  /* one re-announce per asker in this */
#define ROUTE_SNAP_SLACK 1024       /* sessions a snapshot may hold beyond
				       the count its heartbeat announced */

static int64_t route_logged_ms;

static void route_settled(struct bridge *b, unsigned w, const void *data,
			  size_t len);
static void route_reannounce(struct bridge *b, unsigned idx);
static void route_unsettle_node(struct bridge *b, unsigned node);

static int route_log_ok(struct bridge *b)
{
	if (route_logged_ms != 0 &&
	    b->now_ms - route_logged_ms < ROUTE_LOG_EVERY_MS)
		return 0;
	route_logged_ms = b->now_ms;
	return 1;
}

/* ---- frames of our own for our workers, never dropped ------------------
 * Hand-backs, unavailable broadcasts (SWEPT) and re-announces come in
 * bursts (a node's loss hands back up to cluster.retain_bytes and one
 * SWEPT per session at once): what a worker's outbox refuses waits here
 * and is offered again each loop turn, in order. */
struct route_later {
	struct route_later *next;
	unsigned dst;
	uint8_t type, node;
	uint32_t gen;
	size_t len;
	char data[];
};

static int route_to_worker(struct bridge *b, unsigned dst, uint8_t type,
			   uint8_t node, uint32_t gen, const void *data,
			   size_t len)
{
	const char *error;
	if (b->later_head == NULL &&
	    queue_send_node(b->q, dst, node, 0, type, 0, gen, data, len,
			    &error) == 0)
		return 0;
	struct route_later *l = malloc(sizeof(*l) + len);
	if (l == NULL) {
		log_error("cluster: frame type %u for w%u lost: out of memory",
			  type, dst);
		return -1;
	}
	l->next = NULL;
	l->dst = dst;
	l->type = type;
	l->node = node;
	l->gen = gen;
	l->len = len;
	if (len > 0)
		memcpy(l->data, data, len);
	if (b->later_tail != NULL)
		b->later_tail->next = l;
	else
		b->later_head = l;
	b->later_tail = l;
	return 0;
}

/* Each turn: what waits goes out while the outboxes take it. */
static void route_later_flush(struct bridge *b)
{
	const char *error;
	struct route_later *l;
	while ((l = b->later_head) != NULL) {
		if (queue_send_node(b->q, l->dst, l->node, 0, l->type, 0,
				    l->gen, l->data, l->len, &error) < 0) {
			if (strcmp(error, QUEUE_ERR_FULL) == 0)
				return;         /* next turn */
			log_error("cluster: frame type %u for w%u lost: %s",
				  l->type, l->dst, error);
		}
		b->later_head = l->next;
		if (b->later_head == NULL)
			b->later_tail = NULL;
		free(l);
	}
}

/* The node table index of a node we hear from, or 0 (unknown, down,
 * incompatible: its messages are dropped until its heartbeat says). */
static unsigned route_node(const struct bridge *b, const char *name)
{
	unsigned n = METRIC_GET(b->cl->nnodes);
	for (unsigned i = 1; i < n && i < IPC_MAX_NODES; i++) {
		const struct ipc_cluster_node *e = &b->cl->nodes[i];
		if ((e->state == IPC_NODE_UP || e->state == IPC_NODE_SUSPECT) &&
		    strcmp(e->name, name) == 0)
			return i;
	}
	return 0;
}

static void route_publish(struct bridge *b, const char *subject,
			  const void *data, size_t len)
{
	natsStatus s = bridge_publish(b, subject, data, len);
	if (s != NATS_OK && route_log_ok(b)) {
		log_warn("cluster: publish %s (%zu bytes): %s", subject, len,
			 natsStatus_GetText(s));
	}
}

static void route_subject(const struct bridge *b, char *out, size_t size,
			  const char *what, const char *node)
{
	snprintf(out, size, "%s.%s.%s", b->prefix, what, node);
}

/* ---- the session table, from the directory --------------------------- */

static void route_info(struct session_info *info, unsigned node,
		       const struct dir_rec *rec, unsigned bridge_slot)
{
	memset(info, 0, offsetof(struct session_info, jid));
	info->slot = (uint16_t)bridge_slot;
	info->node = (uint8_t)node;
	info->rslot = rec->rslot;
	info->conn_id = rec->conn_id;
	info->gen = rec->gen;
	info->priority = rec->priority;
	info->available = rec->available;
	info->flags = rec->flags;
	info->since = rec->since;
	memcpy(info->jid, rec->jid, rec->jid_len);
	info->jid[rec->jid_len] = '\0';
}

/* Does session a (on node an) win over b (on node bn): the later bind
 * (RFC 6120 section 7.7.2.2: the server ends the older session), the
 * higher node name when they bound in the same second. */
static int route_newer(const struct bridge *b, const struct session_info *x,
		       unsigned xn, const struct session_info *y, unsigned yn)
{
	if (x->since != y->since)
		return x->since > y->since;
	const char *xname = xn == 0 ? b->cfg->cluster_node : b->cl->nodes[xn].name;
	const char *yname = yn == 0 ? b->cfg->cluster_node : b->cl->nodes[yn].name;
	return strcmp(xname, yname) > 0;
}

/* The same full JID bound on two nodes at once (each bind saw no
 * holder: the events crossed).  Every node decides alike: the newer
 * binding stays.  If it is the other node's, ours ends with
 * <conflict/> and the entry becomes theirs; if ours, theirs is ignored
 * here and ended there when our event reaches that node.  Two other
 * nodes' sessions: the newer one's entry. */
static void route_conflict(struct bridge *b, unsigned node,
			   const struct session_info *info,
			   const struct session_info *old)
{
	static const char reason[] = "conflict";
	const char *error;
	if (!route_newer(b, info, node, old, old->node))
		return;         /* the holder stays; its node ends theirs */
	if (old->node == 0) {
		shm_session_del(b->shm->sessions, old->jid, old->slot,
				old->conn_id, old->gen);
		if (queue_send(b->q, old->slot, IPC_FRAME_KICK, old->conn_id,
			       old->gen, reason, sizeof(reason) - 1,
			       &error) < 0)
			log_error("cluster: kick of %s on w%u failed: %s",
				  old->jid, old->slot, error);
		log_info("cluster: %s bound again on node %s: the session "
			 "here ends (conflict)", old->jid,
			 b->cl->nodes[node].name);
	} else {
		shm_session_remove_remote(b->shm->sessions, old->node,
					  old->rslot, old->jid, old->conn_id,
					  old->gen);
	}
	if (shm_session_insert_remote(b->shm->sessions, info, NULL,
				      &error) != 0 && route_log_ok(b))
		log_error("cluster: %s of node %s not entered after a "
			  "conflict", info->jid, b->cl->nodes[node].name);
}

static void route_table_set(void *ctx, unsigned node,
			    const struct dir_rec *rec)
{
	struct bridge *b = ctx;
	static struct session_info info, old;
	const char *error = NULL;
	route_info(&info, node, rec, b->slot);
	int r = shm_session_insert_remote(b->shm->sessions, &info, &old,
					  &error);
	if (r < 0 && route_log_ok(b))
		log_error("cluster: %s of node %s not entered: %s", info.jid,
			  b->cl->nodes[node].name, error);
	else if (r == 2)
		route_conflict(b, node, &info, &old);
}

static void route_table_del(void *ctx, unsigned node,
			    const struct dir_rec *rec)
{
	struct bridge *b = ctx;
	char jid[IPC_JID_MAX + 1];
	memcpy(jid, rec->jid, rec->jid_len);
	jid[rec->jid_len] = '\0';
	if (shm_session_remove_remote(b->shm->sessions, (uint8_t)node,
				      rec->rslot, jid, rec->conn_id,
				      rec->gen) != 1)
		return;
	/* The JID moved between nodes (a resumption on another node, a
	 * login there after a logout here): the new holder's event may
	 * have come first and been refused while this entry held the JID
	 * (route_table_set: 2); what we hold of it is entered now. */
	unsigned n = METRIC_GET(b->cl->nnodes);
	for (unsigned i = 1; i < n && i < IPC_MAX_NODES; i++) {
		const struct dir_rec *other;
		if (i == node || (other = dir_peer_find(&b->peers[i], jid,
							rec->jid_len)) == NULL)
			continue;
		route_table_set(b, i, other);
		break;
	}
}

/* ---- our sessions, told to the others -------------------------------- */

/* What changed in our sessions, told: from the table's change log, or
 * a full walk (walk, or when the log cannot say). */
static void route_scan_walk(struct bridge *b, bool walk)
{
	char subject[128];
	const char *error = NULL;
	uint64_t lapped = b->feed.lapped;
	if (dir_feed_update(&b->feed, &b->dir, b->shm->sessions, walk,
			    &error) < 0 && route_log_ok(b))
		log_error("cluster: telling our sessions: %s (the next "
			  "look walks the table)", error);
	METRIC_SET(b->cl->dir_walks, b->feed.walks);
	METRIC_SET(b->cl->dir_logged, b->feed.logged);
	METRIC_SET(b->cl->dir_lapped, b->feed.lapped);
	if (b->feed.lapped != lapped && route_log_ok(b))
		log_info("cluster: the session change log lost changes "
			 "(more than its %u entries, cluster.change_log, "
			 "between two reads, or a table rebuilt): walked the "
			 "table (%" PRIu64 " times so far)",
			 shm_session_log_size(b->shm->sessions),
			 b->feed.lapped);
	if (!dir_local_pending(&b->dir))
		return;
	snprintf(subject, sizeof(subject), "%s.dir", b->prefix);
	route_publish(b, subject, buf_head(&b->dir.out),
		      buf_used(&b->dir.out));
	dir_local_sent(&b->dir);
}

static void route_scan(struct bridge *b)
{
	route_scan_walk(b, false);
}

struct route_snap {
	struct bridge *b;
	char subject[128];
};

static int route_snap_part(void *ctx, const void *part, size_t len)
{
	struct route_snap *s = ctx;
	route_publish(s->b, s->subject, part, len);
	return 0;
}

static void route_snapshot_to(struct bridge *b, const char *name)
{
	struct route_snap s = { .b = b };
	route_scan(b);          /* what is pending goes first */
	route_subject(b, s.subject, sizeof(s.subject), "snap", name);
	if (dir_local_snapshot(&b->dir, ROUTE_SNAP_PART, route_snap_part,
			       &s) < 0 && route_log_ok(b))
		log_error("cluster: snapshot for %s failed", name);
}

/* The asker's place: its own, a free one, else the one answered least
 * lately (only nodes of the cluster can sign a request). */
static struct route_asker *route_asker(struct bridge *b, const char *name)
{
	struct route_asker *old = &b->askers[0];
	for (unsigned i = 0; i < IPC_MAX_NODES; i++) {
		struct route_asker *a = &b->askers[i];
		if (strcmp(a->node, name) == 0)
			return a;
		if (a->node[0] == '\0' || a->answered_ms < old->answered_ms)
			old = a;
	}
	if (old->due)
		b->askers_due--;
	memset(old, 0, sizeof(*old));
	snprintf(old->node, sizeof(old->node), "%s", name);
	return old;
}

/* Someone asks for our sessions (payload: its node name, which must be
 * the sender's).  A full snapshot costs us the whole directory: one a
 * cluster.sync_interval per asker (review 15 C10), a request inside it
 * answered when it ends (route_askers_due). */
static void route_sync_asked(struct bridge *b, const char *data, int len,
			     const struct fence_stamp *st)
{
	char name[DIR_NODE_MAX + 1];
	if (len <= 0 || len > DIR_NODE_MAX)
		return;
	memcpy(name, data, (size_t)len);
	name[len] = '\0';
	/* answered even before its heartbeat reached us: it heard ours */
	if (strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		   "0123456789-_") != (size_t)len || strcmp(name, st->node) != 0)
		return;
	struct route_asker *a = route_asker(b, name);
	if (a->answered_ms != 0 && b->now_ms - a->answered_ms <
	    (int64_t)b->cfg->cluster_sync_interval) {
		if (!a->due)
			b->askers_due++;
		a->due = 1;
		return;
	}
	a->answered_ms = b->now_ms;
	route_snapshot_to(b, name);
}

/* The requests that came inside their interval, once it ended. */
static void route_askers_due(struct bridge *b)
{
	for (unsigned i = 0; i < IPC_MAX_NODES && b->askers_due > 0; i++) {
		struct route_asker *a = &b->askers[i];
		if (!a->due || b->now_ms - a->answered_ms <
		    (int64_t)b->cfg->cluster_sync_interval)
			continue;
		a->due = 0;
		b->askers_due--;
		a->answered_ms = b->now_ms;
		route_snapshot_to(b, a->node);
	}
}

/* ---- their sessions --------------------------------------------------- */

static void route_ask(struct bridge *b, unsigned idx)
{
	char subject[128];
	const char *self = b->cfg->cluster_node;
	route_subject(b, subject, sizeof(subject), "sync",
		      b->cl->nodes[idx].name);
	route_publish(b, subject, self, strlen(self));
	b->asked_ms[idx] = b->now_ms;
}

static const struct dir_ops *route_ops(struct bridge *b)
{
	static struct dir_ops ops;
	ops.ctx = b;
	ops.set = route_table_set;
	ops.del = route_table_del;
	return &ops;
}

struct route_prune_ctx {
	struct bridge *b;
	unsigned idx;
	unsigned removed;
};

/* Stays: the snapshot holds it. */
static int route_prune_keep(const struct session_info *info, void *ctx)
{
	struct route_prune_ctx *p = ctx;
	return dir_peer_holds(&p->b->peers[p->idx], info->jid,
			      strlen(info->jid), info->rslot, info->conn_id,
			      info->gen);
}

static void route_prune_gone(const struct session_info *info, void *ctx)
{
	struct route_prune_ctx *p = ctx;
	(void)info;
	p->removed++;
}

/* After a snapshot: entries of the node the snapshot does not hold are
 * from before it (an earlier bridge of ours, an event lost): out, in
 * one pass over the table. */
static void route_prune(struct bridge *b, unsigned idx)
{
	struct route_prune_ctx p = { b, idx, 0 };
	shm_session_sweep_node_keep(b->shm->sessions, (uint8_t)idx,
				    route_prune_keep, route_prune_gone, &p);
	if (p.removed > 0)
		log_info("cluster: %u stale sessions of node %s removed",
			 p.removed, b->cl->nodes[idx].name);
}

static void route_dir_batch(struct bridge *b, const void *data, size_t len)
{
	struct dir_reader r;
	enum dir_action act = DIR_NOTHING;
	const char *error = NULL;
	unsigned idx;
	if (dir_read_begin(&r, data, len, &error) < 0 ||
	    (idx = route_node(b, r.hdr.node)) == 0) {
		if (error != NULL && route_log_ok(b))
			log_warn("cluster: directory batch refused: %s", error);
		return;
	}
	uint64_t snapshots = b->peers[idx].snapshots;
	if (dir_peer_batch(&b->peers[idx], route_ops(b), &r, &b->scratch,
			   &act, &error) < 0 && route_log_ok(b))
		log_warn("cluster: directory batch of %s refused: %s",
			 r.hdr.node, error);
	arena_reset(&b->scratch);
	if (b->peers[idx].snapshots != snapshots) {
		route_prune(b, idx);
		if (b->reann_due[idx]) {
			b->reann_due[idx] = 0;
			route_reannounce(b, idx);
		}
	}
	if (act == DIR_ASK_SNAPSHOT)
		route_ask(b, idx);
}

/* The node with the lowest name among those up (and us) tells the
 * contacts of a lost node's users: one node does it, whichever that
 * is; two in a moment of disagreement send a second unavailable,
 * which changes nothing for a client. */
static int route_we_tell(const struct bridge *b)
{
	const char *self = b->cfg->cluster_node;
	unsigned n = METRIC_GET(b->cl->nnodes);
	for (unsigned i = 1; i < n && i < IPC_MAX_NODES; i++) {
		const struct ipc_cluster_node *e = &b->cl->nodes[i];
		if ((e->state == IPC_NODE_UP || e->state == IPC_NODE_SUSPECT) &&
		    strcmp(e->name, self) < 0)
			return 0;
	}
	return 1;
}

struct route_down_ctx {
	struct bridge *b;
	int tell;
	unsigned told;
};

static uint32_t route_hash(const char *s, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * 16777619u;
	return h;
}

/* One of a lost node's sessions leaves our table; its contacts hear
 * unavailable (whether or not we saw it available) from one of our
 * workers (the one its bare JID hashes to,
 * IPC_FRAME_SWEPT as for a crashed worker's sessions). */
static void route_down_del(void *ctx, unsigned node,
			   const struct dir_rec *rec)
{
	struct route_down_ctx *d = ctx;
	route_table_del(d->b, node, rec);
	/* available or not as far as we know: a presence change may not
	 * have reached our table when the node died (stanzas travel faster
	 * than its directory scan), and an unavailable from a resource a
	 * contact never saw available changes nothing for it */
	if (!d->tell)
		return;
	const char *slash = memchr(rec->jid, '/', rec->jid_len);
	size_t bare = slash != NULL ? (size_t)(slash - rec->jid) : rec->jid_len;
	unsigned w = route_hash(rec->jid, bare) % d->b->nworkers;
	if (route_to_worker(d->b, w, IPC_FRAME_SWEPT, 0, 0, rec->jid,
			    rec->jid_len) == 0)
		d->told++;
}

static void route_down_swept(const struct session_info *info, void *ctx)
{
	struct route_down_ctx *d = ctx;
	if (!d->tell)
		return;
	size_t len = strlen(info->jid), bare = strcspn(info->jid, "/");
	unsigned w = route_hash(info->jid, bare) % d->b->nworkers;
	if (route_to_worker(d->b, w, IPC_FRAME_SWEPT, 0, 0, info->jid,
			    len) == 0)
		d->told++;
}

void bridge_route_down(struct bridge *b, unsigned idx)
{
	if (idx == 0 || idx >= IPC_MAX_NODES)
		return;
	struct route_down_ctx d = { b, route_we_tell(b), 0 };
	struct dir_ops ops = { &d, NULL, route_down_del };
	uint32_t had = dir_peer_count(&b->peers[idx]);
	/* what was on its way there comes back first: by the time the
	 * workers read it, the node's sessions are out of the table */
	xfer_peer_down(&b->xfer, idx);
	route_unsettle_node(b, idx);
	b->peer_lost[idx] = 1;
	dir_peer_forget(&b->peers[idx], &ops);
	/* what the directory did not know of: entries an earlier bridge of
	 * ours entered, the node gone before its snapshot came */
	shm_session_sweep_node(b->shm->sessions, (uint8_t)idx,
			       route_down_swept, &d);
	b->asked_ms[idx] = 0;
	log_info("cluster: node %s's %u sessions left the table%s",
		 b->cl->nodes[idx].name, had,
		 d.tell ? " (we tell their contacts)" : "");
}

/* A node we had marked down is back with the same run (a partition
 * healed, our link came back): its users saw ours go unavailable and
 * ours saw its users go.  Once its sessions are in our table again
 * (its snapshot), our workers send their available sessions' presence
 * again to the contacts we host; that node does the same for its users
 * when it sees us back. */
static void route_reannounce(struct bridge *b, unsigned idx)
{
	log_info("cluster: node %s is back: our users' presence goes to "
		 "their contacts again", b->cl->nodes[idx].name);
	/* to its users' sessions only: nobody else lost ours */
	for (unsigned w = 0; w < b->nworkers; w++)
		route_to_worker(b, w, IPC_FRAME_REANNOUNCE, (uint8_t)idx, 0,
				NULL, 0);
}

/* The sessions a snapshot of a node may hold: what its heartbeat
 * announced, with room for those that logged in since (a quarter more
 * and ROUTE_SNAP_SLACK), and never more than cluster.snapshot_max. */
static uint32_t route_snap_bound(const struct bridge *b, uint64_t announced)
{
	uint64_t max = b->cfg->cluster_snapshot_max;
	uint64_t bound = announced + announced / 4 + ROUTE_SNAP_SLACK;
	return (uint32_t)(bound < max ? bound : max);
}

void bridge_route_heard(struct bridge *b, unsigned idx,
			enum cluster_event ev, const struct cluster_hb *hb)
{
	struct dir_peer *p = &b->peers[idx];
	uint64_t prev_run = b->peer_run[idx];
	if (ev == CLUSTER_EV_LEFT) {
		bridge_route_down(b, idx);
		return;
	}
	b->peer_run[idx] = hb->node_run;
	/* the same node run under a new incarnation: its bridge restarted,
	 * its users are still connected */
	int same_run = prev_run != 0 && prev_run == hb->node_run;
	if (p->incarnation != 0 && p->incarnation != hb->incarnation &&
	    same_run) {
		/* we still hold its sessions: they stay; what we kept for
		 * it goes to the new run; a snapshot brings the table up to
		 * date by difference */
		route_unsettle_node(b, idx);
		xfer_peer_rerun(&b->xfer, idx, hb->incarnation, b->now_ms);
		dir_peer_rebase(p, hb->incarnation);
		log_info("cluster: node %s's bridge restarted: its sessions "
			 "stay", b->cl->nodes[idx].name);
	} else if (p->incarnation != 0 && p->incarnation != hb->incarnation) {
		/* restarted within node_timeout: its old run is gone */
		struct route_down_ctx d = { b, route_we_tell(b), 0 };
		struct dir_ops ops = { &d, NULL, route_down_del };
		xfer_peer_down(&b->xfer, idx);
		route_unsettle_node(b, idx);
		dir_peer_forget(p, &ops);
		shm_session_sweep_node(b->shm->sessions, (uint8_t)idx,
				       route_down_swept, &d);
	}
	if (b->xfer.peers[idx].known &&
	    b->xfer.peers[idx].in.peer_incarnation != hb->incarnation)
		route_unsettle_node(b, idx);
	xfer_peer_run(&b->xfer, idx, hb->incarnation);
	/* we had marked it down (its sessions left our table, their
	 * contacts were told), and it is the same node run: nobody logs in
	 * again, so presence goes again both ways */
	int revived = b->peer_lost[idx] && (ev == CLUSTER_EV_BACK ||
					    same_run);
	b->peer_lost[idx] = 0;
	if (revived) {
		/* ours to its users once its sessions are in our table;
		 * theirs to ours: we ask (it may never have lost us), with
		 * the next few heartbeats too (a request can be lost; it
		 * answers one a few seconds) */
		b->reann_due[idx] = 1;
		b->reann_ask[idx] = ROUTE_REANN_ASKS;
	}
	if (b->reann_ask[idx] > 0) {
		char subject[128];
		const char *self = b->cfg->cluster_node;
		b->reann_ask[idx]--;
		route_subject(b, subject, sizeof(subject), "reann",
			      b->cl->nodes[idx].name);
		route_publish(b, subject, self, strlen(self));
	}
	dir_peer_bound(p, route_snap_bound(b, hb->sessions));
	enum dir_action act = dir_peer_heartbeat(p, route_ops(b),
						 hb->incarnation, hb->dir_seq,
						 (uint32_t)hb->sessions,
						 hb->dir_digest);
	if (act == DIR_ASK_SNAPSHOT ||
	    (p->syncing && b->now_ms - b->asked_ms[idx] > ROUTE_ASK_AGAIN_MS))
		route_ask(b, idx);
}

/* ---- frames ------------------------------------------------------------ */

/* A frame that cannot reach its node goes back to the worker that sent
 * it as undelivered: a stanza to a vanished session (conn 0: no
 * session), which the worker routes by the bare JID's rules (another
 * resource, offline storage, or an error to the sender); a stanza for a
 * component gets service-unavailable back to its sender.  Pushes and
 * probes for sessions that are gone are dropped, as for a session that
 * ended on this node. */
static void route_handback(void *ctx, unsigned node, const void *frame,
			      size_t len)
{
	struct bridge *b = ctx;
	struct ipc_frame_header h;
	size_t size;
	const char *error;
	if (frame_parse_header(frame, len, &h, &size, &error) < 0 ||
	    node >= IPC_MAX_NODES)
		return;
	/* a component's stanza bounces there (conn 0: not connected) */
	if (h.type != IPC_FRAME_STANZA && h.type != IPC_FRAME_BARE_STANZA &&
	    h.type != IPC_FRAME_COMPONENT && h.type != IPC_FRAME_MUC) {
		log_debug("cluster: frame type %u for node %s dropped: the "
			  "node is gone", h.type, b->cl->nodes[node].name);
		return;
	}
	unsigned w = h.src_slot < b->nworkers ? h.src_slot : 0;
	/* conn 0, IPC_GEN_HANDBACK and the node: the worker skips that
	 * node's sessions; a stanza to route by its 'to' comes back as
	 * undelivered too (routed again, it would come straight back) */
	/* a room's stanza for an owner node that went away: undelivered
	 * too, routed again by the room's 'to' (the room's new owner, or
	 * <resource-constraint/> until there is one: muc_cluster.c) */
	uint8_t type = h.type == IPC_FRAME_BARE_STANZA ||
		       h.type == IPC_FRAME_MUC ? IPC_FRAME_STANZA : h.type;
	route_to_worker(b, w, type, (uint8_t)node,
			node != 0 ? IPC_GEN_HANDBACK : 0,
			(const char *)frame + IPC_FRAME_HDR_SIZE,
			len - IPC_FRAME_HDR_SIZE);
}

/* A frame for node waits while this bridge is younger than
 * node_timeout and the table (kept from the bridge before us) shows the
 * node up: its first heartbeat is on its way. */
static int route_waits(const struct bridge *b, unsigned node)
{
	const struct ipc_cluster_node *e = &b->cl->nodes[node];
	return (e->state == IPC_NODE_UP || e->state == IPC_NODE_SUSPECT) &&
	       b->now_ms - b->started_ms < (int64_t)b->cfg->cluster_node_timeout;
}

struct route_held {
	struct route_held *next;
	size_t len;
	unsigned char *frame;
};

static int route_hold(struct bridge *b, unsigned char *f, size_t len)
{
	struct route_held *h = malloc(sizeof(*h));
	if (h == NULL)
		return -1;
	h->next = NULL;
	h->len = len;
	h->frame = f;
	if (b->held_tail != NULL)
		b->held_tail->next = h;
	else
		b->held_head = h;
	b->held_tail = h;
	return 0;
}

/* Each tick: held frames go out once their node is heard, or back when
 * it was not heard in time. */
static void route_release(struct bridge *b)
{
	struct route_held **pp = &b->held_head, *h;
	b->held_tail = NULL;
	while ((h = *pp) != NULL) {
		struct ipc_frame_header hdr;
		memcpy(&hdr, h->frame, sizeof(hdr));
		if (!b->xfer.peers[hdr.node].known && route_waits(b, hdr.node)) {
			b->held_tail = h;
			pp = &h->next;
			continue;
		}
		if (xfer_send(&b->xfer, hdr.node, h->frame, h->len,
			      b->now_ms) < 0)
			route_handback(b, hdr.node, h->frame, h->len);
		*pp = h->next;
		free(h->frame);
		free(h);
	}
}

void bridge_route_frame(struct bridge *b, const struct ipc_frame_header *hdr,
			const void *payload, size_t len)
{
	if (hdr->type == IPC_FRAME_SETTLED) {
		route_settled(b, hdr->src_slot, payload, len);
		return;
	}
	unsigned char *f = malloc(IPC_FRAME_HDR_SIZE + len);
	if (f == NULL) {
		log_error("cluster: out of memory for a frame to node %u",
			  hdr->node);
		return;
	}
	struct ipc_frame_header h = *hdr;
	h.len = (uint32_t)len;
	h.flags = 0;
	memcpy(f, &h, IPC_FRAME_HDR_SIZE);
	memcpy(f + IPC_FRAME_HDR_SIZE, payload, len);
	if (hdr->node != 0 && !b->xfer.peers[hdr->node].known &&
	    route_waits(b, hdr->node)) {
		/* a node the table shows up whose heartbeat this (new)
		 * bridge has not heard yet: the frame waits for it */
		if (route_hold(b, f, IPC_FRAME_HDR_SIZE + len) == 0)
			return;         /* f is kept */
	}
	if (hdr->node == 0 ||
	    xfer_send(&b->xfer, hdr->node, f, IPC_FRAME_HDR_SIZE + len,
		      b->now_ms) < 0) {
		b->frames_dropped++;
		route_handback(b, hdr->node, f, IPC_FRAME_HDR_SIZE + len);
	}
	free(f);
}

static int route_publish_frames(void *ctx, unsigned node, const void *data,
				size_t len)
{
	struct bridge *b = ctx;
	char subject[128];
	route_subject(b, subject, sizeof(subject), "n",
		      b->cl->nodes[node].name);
	route_publish(b, subject, data, len);
	return 0;
}

static void route_publish_ack(void *ctx, unsigned node, const void *data,
			      size_t len)
{
	struct bridge *b = ctx;
	char subject[128];
	route_subject(b, subject, sizeof(subject), "ack",
		      b->cl->nodes[node].name);
	route_publish(b, subject, data, len);
}

/* ---- settlement: acknowledged once done with --------------------------
 * A frame from another node is acknowledged to its sender only when the
 * worker it went to is done with it (worker/settle.h: written to the
 * socket, acknowledged by an XEP-0198 client, or routed on): a node that
 * dies with frames in its workers' queues, connections' output or
 * journals has not acknowledged them, and their sender hands them back
 * as undelivered.  Each frame given a worker carries a token (the
 * header's), one more each time, from a random start per bridge run
 * (a worker's tokens of an earlier bridge then name nothing here).  The
 * worker says which tokens it is done with, in any order; the FIFO per
 * worker frees its head as it gets done.  A node's ack is the number
 * below its oldest frame not done with at any worker, and the holes
 * beyond it (relay.h): one slow reader does not hold every later frame
 * back. */

static int fifo_push(struct route_fifo *f, unsigned node, uint64_t seq)
{
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 256;
		struct route_pending *v = malloc(cap * sizeof(*v));
		if (v == NULL)
			return -1;
		for (size_t i = 0; i < f->n; i++)
			v[i] = f->v[(f->head + i) % f->cap];
		free(f->v);
		f->v = v;
		f->cap = cap;
		f->head = 0;
	}
	f->v[(f->head + f->n) % f->cap] = (struct route_pending){
		(uint8_t)node, 0, seq };
	f->n++;
	return 0;
}

static struct route_pending *fifo_at(struct route_fifo *f, size_t i)
{
	return &f->v[(f->head + i) % f->cap];
}

/* The token the next frame for f gets (never 0: 0 is no token). */
static uint32_t fifo_next_token(struct route_fifo *f)
{
	return f->head_token + (uint32_t)f->n;
}

/* ---- node's frames not done with, by number (the ack's holes) ---- */

static int open_add(struct bridge *b, unsigned node, uint64_t seq,
		    unsigned w, uint32_t token)
{
	struct route_openlist *l = &b->open[node];
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct route_open *v = realloc(l->v, cap * sizeof(*v));
		if (v == NULL)
			return -1;
		l->v = v;
		l->cap = cap;
	}
	/* a node's numbers come in order: appended, the list stays sorted */
	l->v[l->n++] = (struct route_open){ seq, b->now_ms, token,
					    (uint16_t)w };
	return 0;
}

static void open_remove(struct bridge *b, unsigned node, uint64_t seq)
{
	struct route_openlist *l = &b->open[node];
	size_t lo = 0, hi = l->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (l->v[mid].seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < l->n && l->v[lo].seq == seq) {
		memmove(&l->v[lo], &l->v[lo + 1],
			(l->n - lo - 1) * sizeof(*l->v));
		l->n--;
	}
}

/* Entries i .. j-1 of f are done with. */
static void fifo_mark(struct bridge *b, struct route_fifo *f, size_t i,
		      size_t j)
{
	for (; i < j && i < f->n; i++) {
		struct route_pending *p = fifo_at(f, i);
		if (p->done)
			continue;
		p->done = 1;
		if (p->node != 0 && b->unsettled[p->node] > 0) {
			b->unsettled[p->node]--;
			b->settle_due[p->node] = 1;
			open_remove(b, p->node, p->seq);
		}
	}
}

static void fifo_pop(struct route_fifo *f)
{
	while (f->n > 0 && fifo_at(f, 0)->done) {
		f->head = (f->head + 1) % f->cap;
		f->n--;
		f->head_token++;
	}
}

/* Worker w's account (struct ipc_settled). */
static void route_settled(struct bridge *b, unsigned w, const void *data,
			  size_t len)
{
	struct ipc_settled h;
	struct route_fifo *f;
	if (w >= b->nworkers || len < sizeof(h))
		return;
	memcpy(&h, data, sizeof(h));
	if (h.nranges > IPC_SETTLED_RANGES_MAX ||
	    len != sizeof(h) + (size_t)h.nranges * 8u) {
		if (route_log_ok(b))
			log_warn("cluster: worker %u: malformed settlement", w);
		return;
	}
	f = &b->fifo[w];
	/* a new process in the slot: what the old one had read and held
	 * died with it (its sessions were swept; the rest of its queue the
	 * new one reads), but for what the XEP-0198 journals it adopted
	 * hold: inside the adopted span [base, last] only the ranges are
	 * done with (a span not of this numbering: all, as before) */
	if ((h.flags & IPC_SETTLED_FRESH) && f->read_known) {
		uint32_t upto = f->last_read - f->head_token;
		/* the span as distances from our head: its start may be
		 * behind it (those frames were forced already), its end
		 * past the old process's last report (read in the turn it
		 * died in, or by the new one before this report) */
		int32_t lo = (int32_t)(h.base - f->head_token);
		int32_t hi = (int32_t)(h.last - f->head_token);
		bool adopted = (h.flags & IPC_SETTLED_ADOPTED) &&
			       (h.flags & IPC_SETTLED_BASE) && hi >= 0 &&
			       (size_t)hi < f->n && lo <= hi;
		if (adopted) {
			fifo_mark(b, f, 0, lo > 0 ? (size_t)lo : 0);
			if (upto < f->n && upto > (uint32_t)hi)
				fifo_mark(b, f, (size_t)hi + 1,
					  (size_t)upto + 1);
		} else if (upto < f->n) {
			fifo_mark(b, f, 0, (size_t)upto + 1);
		}
		f->read_known = false;
	}
	if (h.flags & IPC_SETTLED_BASE) {
		uint32_t upto = h.base - f->head_token;
		if (upto <= f->n)
			fifo_mark(b, f, 0, upto);
		f->last_read = h.last;
		f->read_known = true;
	}
	const unsigned char *r = (const unsigned char *)data + sizeof(h);
	for (uint32_t k = 0; k < h.nranges; k++, r += 8) {
		uint32_t from, to;
		memcpy(&from, r, 4);
		memcpy(&to, r + 4, 4);
		uint32_t lo = from - f->head_token, hi = to - f->head_token;
		if ((int32_t)lo < 0)
			lo = 0;
		if ((int32_t)hi < 0 || lo > hi)
			continue;
		fifo_mark(b, f, lo, (size_t)hi + 1);
	}
	fifo_pop(f);
}

/* Ranges of consecutive numbers in node's list. */
static size_t open_ranges(const struct route_openlist *l)
{
	size_t r = 0;
	for (size_t i = 0; i < l->n; i++)
		if (i == 0 || l->v[i].seq != l->v[i - 1].seq + 1)
			r++;
	return r;
}

/* The oldest frame of node not done with is, from now on: a client that
 * neither reads nor acknowledges for cluster.hold_time, or more held
 * ranges than an ack can name, must not make its sender keep every
 * stanza for this node (cluster.retain_bytes, then refusals) nor our
 * FIFOs grow without end. */
static void open_force_oldest(struct bridge *b, unsigned node)
{
	const struct route_open e = b->open[node].v[0];
	struct route_fifo *f = &b->fifo[e.w];
	uint32_t i = e.token - f->head_token;
	if (i < f->n && fifo_at(f, i)->node == node &&
	    fifo_at(f, i)->seq == e.seq) {
		fifo_mark(b, f, i, (size_t)i + 1);
		fifo_pop(f);
	} else {
		open_remove(b, node, e.seq);    /* not in the FIFO: a bug */
	}
	b->forced++;
}

/* Work out node's ack: the lowest frame not done with, the holes. */
static void route_settle_node(struct bridge *b, unsigned node)
{
	struct route_openlist *l = &b->open[node];
	int64_t old = b->now_ms - (int64_t)b->cfg->cluster_hold_time;
	uint64_t forced = b->forced;
	struct relay_range holes[RELAY_SACK_MAX];
	uint32_t nholes = 0;
	while (l->n > 0 && l->v[0].since_ms <= old)
		open_force_oldest(b, node);
	/* forcing the oldest ends a range only when it stood alone */
	for (size_t r = open_ranges(l); r > RELAY_SACK_MAX && l->n > 0;) {
		bool alone = l->n == 1 || l->v[1].seq != l->v[0].seq + 1;
		open_force_oldest(b, node);
		r -= alone;
	}
	static int64_t logged_ms;
	if (b->forced != forced && (logged_ms == 0 ||
				    b->now_ms - logged_ms >= ROUTE_LOG_EVERY_MS)) {
		logged_ms = b->now_ms;
		log_info("cluster: %llu frames from %s held past cluster."
			 "hold_time or past the ack's %u ranges: acknowledged "
			 "anyway (%llu so far)",
			 (unsigned long long)(b->forced - forced),
			 b->cl->nodes[node].name, RELAY_SACK_MAX,
			 (unsigned long long)b->forced);
	}
	uint64_t delivered = xfer_delivered(&b->xfer, node);
	uint64_t upto = l->n > 0 ? l->v[0].seq - 1 : delivered;
	for (size_t i = 0; i < l->n; i++) {
		if (nholes > 0 && holes[nholes - 1].to + 1 == l->v[i].seq) {
			holes[nholes - 1].to = l->v[i].seq;
			continue;
		}
		holes[nholes++] = (struct relay_range){ l->v[i].seq,
							l->v[i].seq };
	}
	xfer_settle(&b->xfer, node, upto, holes, nholes, delivered);
}

/* Before the acks go: the nodes whose frames got done with. */
static void route_settle_flush(struct bridge *b)
{
	/* a held frame's time runs out with nothing else happening */
	if (b->now_ms >= b->next_expiry_ms) {
		b->next_expiry_ms = b->now_ms + 1000;
		int64_t old = b->now_ms - (int64_t)b->cfg->cluster_hold_time;
		for (unsigned node = 1; node < IPC_MAX_NODES; node++)
			if (b->open[node].n > 0 &&
			    b->open[node].v[0].since_ms <= old)
				b->settle_due[node] = 1;
	}
	for (unsigned node = 1; node < IPC_MAX_NODES; node++)
		if (b->settle_due[node]) {
			b->settle_due[node] = 0;
			route_settle_node(b, node);
		}
}

/* A new run of node, or none: what waits from the old one is no longer
 * counted (the workers still handle it; its ack would mean nothing). */
static void route_unsettle_node(struct bridge *b, unsigned node)
{
	for (unsigned w = 0; w < b->nworkers; w++) {
		struct route_fifo *f = &b->fifo[w];
		for (size_t i = 0; i < f->n; i++) {
			struct route_pending *p = &f->v[(f->head + i) % f->cap];
			if (p->node == node)
				p->node = 0;
		}
	}
	b->unsettled[node] = 0;
	b->settle_due[node] = 0;
	b->open[node].n = 0;
}

/* Frame types a node sends another: to sessions, rooms, components and
 * XEP-0198 hand-overs.  The node's own (SWEPT, REANNOUNCE, SETTLED,
 * federation links, tests) never come from the network: a NATS client
 * that could publish them would run a worker's internal operations
 * (send to other servers in our name, broadcast unavailable). */
static int route_crosses(uint8_t type)
{
	switch (type) {
	case IPC_FRAME_SWEPT:
	case IPC_FRAME_TEST:
	case IPC_FRAME_S2S_OUT:
	case IPC_FRAME_S2S_VERIFY:
	case IPC_FRAME_S2S_VERIFIED:
	case IPC_FRAME_SETTLED:
	case IPC_FRAME_REANNOUNCE:
	case IPC_FRAME_LENT_DONE:
		return 0;
	default:
		return type > 0 && type < IPC_FRAME_TYPE_MAX;
	}
}

/* A frame from node from for one of our workers. */
static int route_deliver(void *ctx, unsigned from, uint64_t seq,
			 const struct ipc_frame_header *hdr, const void *frame,
			 size_t len)
{
	struct bridge *b = ctx;
	const char *error;
	if (!route_crosses(hdr->type)) {
		if (route_log_ok(b))
			log_warn("cluster: frame type %u from %s refused: it "
				 "never crosses nodes", hdr->type,
				 b->cl->nodes[from].name);
		return 0;       /* acknowledged and dropped */
	}
	if (hdr->node_slot >= b->nworkers) {
		if (route_log_ok(b))
			log_warn("cluster: frame from %s for worker %u: we "
				 "have %u", b->cl->nodes[from].name,
				 hdr->node_slot, b->nworkers);
		return 0;       /* acknowledged and dropped: it is wrong */
	}
	/* node and node_slot now say where it came from: the worker's
	 * reply (worker_send_reply) goes back there through us */
	struct route_fifo *f = &b->fifo[hdr->node_slot];
	if (fifo_next_token(f) == 0) {          /* 0 is no token */
		if (f->n == 0)
			f->head_token = 1;
		else if (fifo_push(f, 0, 0) == 0)
			fifo_at(f, f->n - 1)->done = 1;
		else
			return -1;
	}
	uint32_t token = fifo_next_token(f);
	if (fifo_push(f, from, seq) < 0)
		return -1;      /* no memory now: the frame comes again */
	if (queue_send_token(b->q, hdr->node_slot, (uint8_t)from,
			     (uint8_t)hdr->src_slot, hdr->type,
			     hdr->conn_id, hdr->gen, token,
			     (const char *)frame + IPC_FRAME_HDR_SIZE,
			     len - IPC_FRAME_HDR_SIZE, &error) < 0) {
		f->n--;         /* not given: its token goes to the next */
		if (strcmp(error, QUEUE_ERR_FULL) != 0 && route_log_ok(b))
			log_warn("cluster: frame from %s not queued: %s",
				 b->cl->nodes[from].name, error);
		return -1;      /* comes again */
	}
	METRIC_INC(b->stats->frames_out);
	if (open_add(b, from, seq, hdr->node_slot, token) < 0) {
		/* no memory to list it: done with as queued (before) */
		fifo_at(f, f->n - 1)->done = 1;
		fifo_pop(f);
		return 0;
	}
	b->unsettled[from]++;
	return 1;
}

static void route_frames(struct bridge *b, const void *data, size_t len)
{
	struct relay_reader r;
	const char *error = NULL;
	unsigned idx;
	if (relay_read_begin(&r, data, len, &error) < 0 ||
	    (idx = route_node(b, r.hdr.node)) == 0) {
		if (error != NULL && route_log_ok(b))
			log_warn("cluster: frames batch refused: %s", error);
		return;
	}
	if (xfer_receive(&b->xfer, idx, data, len, b->now_ms, &error) < 0 &&
	    route_log_ok(b))
		log_warn("cluster: frames batch of %s refused: %s", r.hdr.node,
			 error);
}

/* A node that had lost us asks for our users' presence again: now if
 * its sessions are in our table, else after its snapshot. */
static void route_reann_asked(struct bridge *b, const char *data, int len,
			      const struct fence_stamp *st)
{
	char name[DIR_NODE_MAX + 1];
	unsigned idx;
	if (len <= 0 || len > DIR_NODE_MAX)
		return;
	memcpy(name, data, (size_t)len);
	name[len] = '\0';
	if (strcmp(name, st->node) != 0 || (idx = route_node(b, name)) == 0)
		return;
	/* the asker repeats its request: one re-announce is enough */
	if (b->reann_done_ms[idx] != 0 &&
	    b->now_ms - b->reann_done_ms[idx] < ROUTE_REANN_QUIET_MS)
		return;
	b->reann_done_ms[idx] = b->now_ms;
	if (b->peers[idx].synced && !b->peers[idx].syncing)
		route_reannounce(b, idx);
	else
		b->reann_due[idx] = 1;
}

/* node started over its sequence to us (it had thought us gone) */
static void route_in_reset(void *ctx, unsigned node)
{
	route_unsettle_node(ctx, node);
}

/* ---- the bridge's calls ------------------------------------------------ */

void bridge_route_msg(struct bridge *b, enum bridge_subject subject,
		      natsMsg *msg)
{
	const char *data = natsMsg_GetData(msg);
	int raw = natsMsg_GetDataLength(msg);
	const char *error = "empty";
	struct fence_stamp st;
	size_t plen = 0;
	METRIC_INC(b->cl->msgs_in);
	METRIC_ADD(b->cl->bytes_in, raw > 0 ? (uint64_t)raw : 0);
	/* anything not made with the cluster's secret is not ours, a copy
	 * of something we took already is not news */
	memset(&st, 0, sizeof(st));
	if (raw <= 0 || data == NULL ||
	    bridge_open(subject == BRIDGE_SUBJ_SNAP ? &b->snap_fence :
			&b->fence, natsMsg_GetSubject(msg), data, (size_t)raw,
			&plen, &st, &error) < 0 || plen == 0) {
		METRIC_INC(b->cl->msgs_refused);
		if (route_log_ok(b))
			log_warn("cluster: message on %s%s%s refused: %s",
				 natsMsg_GetSubject(msg),
				 st.node[0] ? " from " : "", st.node,
				 error);
		natsMsg_Destroy(msg);
		return;
	}
	int len = (int)plen;
	switch (subject) {
	case BRIDGE_SUBJ_DIR:
	case BRIDGE_SUBJ_SNAP:
		route_dir_batch(b, data, (size_t)len);
		break;
	case BRIDGE_SUBJ_SYNC:
		route_sync_asked(b, data, len, &st);
		break;
	case BRIDGE_SUBJ_REANN:
		route_reann_asked(b, data, len, &st);
		break;
	case BRIDGE_SUBJ_FRAMES:
	case BRIDGE_SUBJ_ACK:
		route_frames(b, data, (size_t)len);
		break;
	default:
		break;
	}
	natsMsg_Destroy(msg);
}

/* The traffic figures of each node we follow, for xmppctl and metrics. */
static void route_figures(struct bridge *b)
{
	unsigned n = METRIC_GET(b->cl->nnodes);
	for (unsigned i = 1; i < n && i < IPC_MAX_NODES; i++) {
		struct ipc_cluster_node *e = &b->cl->nodes[i];
		const struct xfer_peer *p = &b->xfer.peers[i];
		shm_cluster_write_begin(e);
		e->kept_bytes = p->out.bytes;
		e->frames_out = p->frames_out;
		e->frames_in = p->frames_in;
		e->resent = p->resent;
		e->directory = dir_peer_count(&b->peers[i]);
		shm_cluster_write_end(e);
	}
}

void bridge_route_tick(struct bridge *b)
{
	/* held frames first: released, they are frames about to go, and
	 * the directory's changes below must then come before them too */
	if (b->held_head != NULL)
		route_release(b);
	/* our sessions' changes, from the change log: only when a local
	 * session changed, at most every ROUTE_SCAN_MS (events batch up)
	 * -- but at once when frames are about to go: a session that just
	 * bound and sent something must be in the other node's table
	 * before its stanza, or the answer finds no session; and a full
	 * walk once in ROUTE_FULL_SCAN_MS regardless */
	uint64_t changes = shm_session_changes(b->shm->sessions);
	int due = b->now_ms >= b->next_scan_ms;
	bool walk = b->now_ms - b->last_scan_ms >= ROUTE_FULL_SCAN_MS;
	if ((changes != b->scan_changes &&
	     (due || xfer_pending(&b->xfer))) || walk) {
		b->scan_changes = changes;
		if (walk)
			b->last_scan_ms = b->now_ms;
		route_scan_walk(b, walk);
	}
	if (due) {
		route_figures(b);
		b->next_scan_ms = b->now_ms + ROUTE_SCAN_MS;
	}
	if (b->later_head != NULL)
		route_later_flush(b);
	if (b->askers_due > 0)
		route_askers_due(b);
	route_settle_flush(b);
	xfer_flush(&b->xfer, b->now_ms);
}

uint32_t bridge_route_count(const struct bridge *b)
{
	return dir_local_count(&b->dir);
}

uint64_t bridge_route_digest(const struct bridge *b)
{
	return dir_local_digest(&b->dir);
}

uint64_t bridge_route_seq(const struct bridge *b)
{
	return b->dir.seq;
}

/* ---- node-table entries freed (review 15 C10) --------------------------- */

static int route_session_of(const struct session_info *info, void *ctx)
{
	return info->node == *(const unsigned *)ctx;
}

int bridge_route_refers(const struct bridge *b, unsigned idx)
{
	if (b->xfer.peers[idx].known || b->xfer.peers[idx].out.bytes != 0 ||
	    b->unsettled[idx] != 0 || dir_peer_count(&b->peers[idx]) != 0 ||
	    b->peers[idx].syncing)
		return 1;
	for (unsigned w = 0; w < IPC_MAX_SLOTS; w++) {
		const struct route_fifo *f = &b->fifo[w];
		for (size_t i = 0; i < f->n; i++)
			if (f->v[(f->head + i) % f->cap].node == idx)
				return 1;
	}
	for (const struct route_held *h = b->held_head; h != NULL; h = h->next)
		if (h->len >= sizeof(struct ipc_frame_header) &&
		    ((const struct ipc_frame_header *)(const void *)
		     h->frame)->node == idx)
			return 1;
	for (const struct route_later *l = b->later_head; l != NULL;
	     l = l->next)
		if (l->node == idx)
			return 1;
	/* the session table last: one pass over it */
	return shm_session_foreach(b->shm->sessions, route_session_of,
				   &idx) != 0;
}

void bridge_route_forgot(struct bridge *b, unsigned idx)
{
	struct xfer_peer *x = &b->xfer.peers[idx];
	/* what we knew of that node's run, so the next node given this
	 * place starts as a stranger (its incarnation differs, so xfer
	 * and the directory take it as a new run anyway) */
	b->peer_run[idx] = 0;
	b->peer_lost[idx] = 0;
	b->settle_due[idx] = 0;
	b->open[idx].n = 0;
	b->reann_due[idx] = 0;
	b->reann_ask[idx] = 0;
	b->reann_done_ms[idx] = 0;
	b->asked_ms[idx] = 0;
	b->peers[idx].incarnation = 0;
	b->peers[idx].snapshots = 0;
	b->peers[idx].snaps_dropped = 0;
	x->batches_out = x->batches_in = x->resent = x->dups = 0;
	x->gaps = x->refused = x->frames_out = x->frames_in = 0;
}

static void route_subscribe(struct bridge *b, enum bridge_subject subj,
			    const char *subject)
{
	natsStatus s = natsConnection_Subscribe(&b->subs[subj], b->nc, subject,
						bridge_on_msg,
						(void *)(intptr_t)subj);
	if (s == NATS_OK)
		s = natsSubscription_SetPendingLimits(b->subs[subj], -1, -1);
	if (s != NATS_OK)
		log_fatal("cluster: subscribe(%s): %s", subject,
			  natsStatus_GetText(s));
}

void bridge_route_init(struct bridge *b)
{
	static const struct {
		enum bridge_subject subj;
		const char *what;
		int own;        /* .<our node> after it */
	} subs[] = {
		{ BRIDGE_SUBJ_DIR, "dir", 0 },
		{ BRIDGE_SUBJ_SYNC, "sync", 1 },
		{ BRIDGE_SUBJ_SNAP, "snap", 1 },
		{ BRIDGE_SUBJ_FRAMES, "n", 1 },
		{ BRIDGE_SUBJ_ACK, "ack", 1 },
		{ BRIDGE_SUBJ_REANN, "reann", 1 },
	};
	struct xfer_ops ops = {
		b, route_publish_frames, route_publish_ack, route_deliver,
		route_handback, route_in_reset,
	};
	char subject[128];
	snprintf(b->prefix, sizeof(b->prefix), "xmppd.%s",
		 b->cfg->cluster_name);
	if (dir_local_init(&b->dir, b->cfg->cluster_node, b->incarnation) < 0)
		log_fatal("cluster: out of memory");
	dir_feed_init(&b->feed, b->nworkers);
	for (unsigned i = 0; i < IPC_MAX_NODES; i++) {
		dir_peer_init(&b->peers[i], i, ROUTE_HELD_MAX);
		dir_peer_bound(&b->peers[i], b->cfg->cluster_snapshot_max);
	}
	xfer_init(&b->xfer, b->cfg->cluster_node, b->incarnation,
		  ROUTE_BATCH_MAX, (size_t)b->cfg->cluster_retain_bytes,
		  ROUTE_RESEND_MS, &ops);
	arena_init(&b->scratch, 16384);
	/* tokens start apart for each run of the bridge: what a worker
	 * still holds of the previous run's names nothing in ours */
	for (unsigned w = 0; w < IPC_MAX_SLOTS; w++)
		b->fifo[w].head_token = (uint32_t)(b->incarnation >> 32) ^
					(uint32_t)b->incarnation ^
					(w * 0x9e3779b9u);
	b->started_ms = b->now_ms;
	/* the table is the bridge before us's: its heartbeat times are
	 * as old as our respawn took; a node up then gets a whole
	 * node_timeout to be heard by us before it counts as down */
	unsigned nn = METRIC_GET(b->cl->nnodes);
	for (unsigned i = 1; i < nn && i < IPC_MAX_NODES; i++) {
		struct ipc_cluster_node *e = &b->cl->nodes[i];
		if (e->state != IPC_NODE_UP && e->state != IPC_NODE_SUSPECT)
			continue;
		shm_cluster_write_begin(e);
		e->last_hb_ms = b->now_ms;
		e->state = IPC_NODE_UP;
		shm_cluster_write_end(e);
	}
	/* what the table holds of other nodes is from an earlier bridge of
	 * ours: it stays (stanzas still reach those sessions) until each
	 * node's first snapshot, which replaces it (route_pruned) */
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		if (subs[i].own)
			route_subject(b, subject, sizeof(subject), subs[i].what,
				      b->cfg->cluster_node);
		else
			snprintf(subject, sizeof(subject), "%s.%s", b->prefix,
				 subs[i].what);
		route_subscribe(b, subs[i].subj, subject);
	}
}

void bridge_route_stop(struct bridge *b)
{
	for (unsigned i = 0; i < BRIDGE_SUBJ_MAX; i++)
		if (b->subs[i] != NULL)
			natsSubscription_Destroy(b->subs[i]);
	xfer_free(&b->xfer);
	dir_local_free(&b->dir);
	for (unsigned w = 0; w < IPC_MAX_SLOTS; w++)
		free(b->fifo[w].v);
	for (unsigned n = 0; n < IPC_MAX_NODES; n++)
		free(b->open[n].v);
	while (b->held_head != NULL) {
		struct route_held *h = b->held_head;
		b->held_head = h->next;
		free(h->frame);
		free(h);
	}
	while (b->later_head != NULL) {
		struct route_later *l = b->later_head;
		b->later_head = l->next;
		free(l);
	}
	/* the table keeps the other nodes' sessions: the next bridge's
	 * snapshots replace them */
	for (unsigned i = 0; i < IPC_MAX_NODES; i++)
		dir_peer_free(&b->peers[i]);
	arena_free(&b->scratch);
}

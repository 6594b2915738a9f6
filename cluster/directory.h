/*
 * directory.h - the cluster's session directory (issue 15,
 * docs/DESIGN.md "Cluster"): every node holds every session of the
 * cluster in its session table, and this is the bookkeeping that keeps
 * the other nodes' part of it right.
 *
 * Each node tells the others about its own sessions (struct dir_local):
 * one event per change, numbered in a sequence per run (incarnation),
 * sent in batches; on request, a snapshot of all of them as of a
 * number.  Each node follows each other node (struct dir_peer): events
 * are applied in order and once; a gap, a lost snapshot, another run,
 * or a heartbeat whose count and digest disagree with what we hold asks
 * for a snapshot, and the table is brought to it by difference (only
 * what changed is written).  Events that arrive while a snapshot is
 * being received are held and applied after it.
 *
 * The code only keeps maps and decides; what changes the session table
 * is the caller's (struct dir_ops), and so is sending (the bridge
 * publishes the batches these functions fill).
 */
#ifndef XMPPD_DIRECTORY_H
#define XMPPD_DIRECTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "buf.h"
#include "dirwire.h"

struct dir_map;
struct dir_entry;

/* How the directory changes this node's session table. */
struct dir_ops {
	void *ctx;
	/* node's session rec is now like this (enter or replace) */
	void (*set)(void *ctx, unsigned node, const struct dir_rec *rec);
	/* node's session rec ended (jid, rslot, conn_id, gen) */
	void (*del)(void *ctx, unsigned node, const struct dir_rec *rec);
};

/* ---- following another node ------------------------------------------ */

enum dir_action {
	DIR_NOTHING = 0,
	DIR_ASK_SNAPSHOT,           /* send that node a snapshot request */
};

struct dir_peer {
	unsigned node;              /* its index in the node table */
	uint64_t incarnation;       /* the run we follow (0: none yet) */
	uint64_t seq;               /* its last event we applied */
	bool synced;                /* we applied a snapshot of this run */
	bool syncing;               /* we asked for one */
	uint64_t snap_seq;          /* the snapshot being received: as of */
	uint32_t next_part;         /* its next part's number */
	struct dir_map *have;       /* what the table holds of the node */
	struct dir_map *incoming;   /* the snapshot being received */
	struct buf held;            /* event batches held while syncing */
	size_t held_max;
	uint64_t hb_seq;            /* the seq of its previous heartbeat */
	unsigned mismatches;        /* heartbeats in a row that disagreed */
	uint64_t snapshots;         /* snapshots applied (for metrics) */
	uint32_t snap_max;          /* sessions a snapshot may hold (0: any;
				       dir_peer_bound) */
	uint64_t snaps_dropped;     /* snapshots past snap_max */
};

/* next_part of a snapshot dropped for its size: its other parts are
 * ignored until a part 0 (the answer to our next request) */
#define DIR_PART_DROPPED UINT32_MAX

void dir_peer_init(struct dir_peer *p, unsigned node, size_t held_max);
/* The node is down, or we stop following it: every session of it
 * leaves the table (ops->del each), and nothing is known of it. */
void dir_peer_forget(struct dir_peer *p, const struct dir_ops *ops);
/* The most sessions a snapshot of the node may hold (review 15 C10: an
 * endless snapshot must not grow our memory without bound): one that
 * passes it is dropped with an error, the node stays "syncing" and
 * the caller asks again later (not at once: the same answer would
 * come). */
void dir_peer_bound(struct dir_peer *p, uint32_t max_sessions);
/* Its heartbeat: its run, its last event's number, its sessions'
 * count and digest (XOR of dir_rec_digest). */
enum dir_action dir_peer_heartbeat(struct dir_peer *p,
				   const struct dir_ops *ops,
				   uint64_t incarnation, uint64_t seq,
				   uint32_t count, uint64_t digest);
/* A batch (events or snapshot part) from it, already begun with
 * dir_read_begin into r.  -1 with *error_r: the batch was bad (nothing
 * of it applied; the caller logs and the answer is a snapshot). */
int dir_peer_batch(struct dir_peer *p, const struct dir_ops *ops,
		   struct dir_reader *r, struct arena *a,
		   enum dir_action *action_r, const char **error_r);
/* The node's bridge restarted (a new incarnation, the same node run):
 * its sessions are still there, so what we hold stays (and the table
 * with it) and a snapshot of the new run is compared with it. */
void dir_peer_rebase(struct dir_peer *p, uint64_t incarnation);
/* Free what we hold of the node without touching the table (the
 * bridge stops; the table keeps the entries). */
void dir_peer_free(struct dir_peer *p);
/* Whether we hold the node's session jid as (rslot, conn_id, gen). */
bool dir_peer_holds(const struct dir_peer *p, const char *jid, size_t len,
		    uint8_t rslot, uint32_t conn_id, uint32_t gen);
/* The node's session jid as we hold it, or NULL (valid until the next
 * change of what we hold of the node). */
const struct dir_rec *dir_peer_find(const struct dir_peer *p, const char *jid,
				    size_t len);
/* Sessions of the node we hold, and their digest. */
uint32_t dir_peer_count(const struct dir_peer *p);
uint64_t dir_peer_digest(const struct dir_peer *p);

/* ---- this node's own sessions ---------------------------------------- */

struct dir_local {
	char node[DIR_NODE_MAX + 1];
	uint64_t incarnation;
	uint64_t seq;               /* the last event's number */
	struct dir_map *have;
	struct buf out;             /* the events batch being filled */
	uint32_t out_count;
	uint32_t scan;              /* the current scan's mark */
	bool scanning;              /* between scan_begin and scan_end */
	struct dir_entry **at;      /* by session table record: the entry
				       last seen there (dir_local_change_at),
				       so a record that changed tells what
				       ended there */
	size_t at_len;
};

int dir_local_init(struct dir_local *l, const char *node,
		   uint64_t incarnation);
void dir_local_free(struct dir_local *l);
/* A session of ours is now rec (SET) / ended (DEL: only if we hold it
 * with the same rslot, conn_id and gen).  Appends an event to l->out.
 * 1 changed, 0 nothing to say (a SET equal to what we hold, a stale
 * DEL), -1 out of memory (the caller resyncs everyone: see
 * dir_local_snapshot). */
int dir_local_change(struct dir_local *l, const struct dir_rec *rec);
/* The same for a session seen at record index of the session table
 * (rec->op SET): what we last saw at that record, if another full JID,
 * ended (DEL; during a scan, left to scan_end, as it may be further
 * on), and rec's JID seen at another record moved here.  index < 0:
 * dir_local_change. */
int dir_local_change_at(struct dir_local *l, const struct dir_rec *rec,
			int32_t index);
/* Record index holds none of our sessions now: what we last saw there
 * ended (DEL).  1 told, 0 nothing known there, -1 out of memory. */
int dir_local_gone_at(struct dir_local *l, int32_t index);
/* A full comparison with the session table: scan_begin, then a SET
 * dir_local_change for each session the table holds, then scan_end,
 * which ends (DEL) every session not set since scan_begin.  -1: out of
 * memory (as dir_local_change). */
void dir_local_scan_begin(struct dir_local *l);
int dir_local_scan_end(struct dir_local *l);
/* A scan that could not finish: nothing ends for it. */
void dir_local_scan_abort(struct dir_local *l);
/* The events batch to publish (l->out, header included) if any: true,
 * and l->out is emptied by the next change after the caller sent it
 * (call dir_local_sent). */
bool dir_local_pending(const struct dir_local *l);
void dir_local_sent(struct dir_local *l);
/* Every session of ours as snapshot parts of at most part_bytes each,
 * as of l->seq; emit sends one part (0, or -1: stop). */
int dir_local_snapshot(struct dir_local *l, size_t part_bytes,
		       int (*emit)(void *ctx, const void *part, size_t len),
		       void *ctx);
/* Each session we hold (the bridge's periodic check against the
 * session table). */
void dir_local_foreach(struct dir_local *l,
		       void (*cb)(void *ctx, const struct dir_rec *rec),
		       void *ctx);
uint32_t dir_local_count(const struct dir_local *l);
uint64_t dir_local_digest(const struct dir_local *l);

#endif

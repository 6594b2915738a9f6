/*
 * session.h - the shared session table: full JID -> (worker slot,
 * connection id, generation, priority, availability).
 *
 * Fixed capacity, records addressed by index, one robust process-shared
 * mutex.  A holder killed mid-update is detected (EOWNERDEAD) and the
 * next locker rebuilds the free lists and hash chains from the records'
 * state words, so the table stays consistent.  Failure policy: a full
 * table or an over-long JID answers -1 with an error, never corrupts.
 *
 * Remote entries (issue 15): sessions of other cluster nodes, written
 * only by this node's cluster bridge with the _remote functions; their
 * slot is the bridge's, node/rslot say where they live, conn_id/gen are
 * that node's.  Look-ups (get, list, foreach) return them like any
 * other, so bare-JID rules, carbons and conflicts see the whole
 * cluster.  The functions that take an owner (slot, conn_id, gen) --
 * set_presence, set_flags, flags, touch, set_caps, del -- and the slot
 * sweeps act on local entries (node 0) only.
 */
#ifndef XMPPD_SESSION_H
#define XMPPD_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include "ipc.h"

struct shm_table;   /* process-local handle over the shared area */

struct session_info {
	uint16_t slot;              /* a local worker, or the cluster
				       bridge's slot for a remote entry */
	uint8_t node;               /* 0: this node; else the node table
				       index of the node that holds it */
	uint8_t rslot;              /* that node's worker slot (node 0: 0) */
	uint32_t conn_id;
	uint32_t gen;
	int16_t priority;
	uint8_t available;
	int64_t since;
	int64_t active;             /* unix time of the client's last bytes */
	uint8_t peer_addr[16];      /* see struct ipc_session */
	uint16_t peer_port;
	uint8_t peer_family;        /* 0, 4 or 6 */
	uint8_t mech;               /* enum ipc_mech */
	uint16_t tls_version;       /* 0: plain TCP */
	uint8_t flags;              /* enum ipc_session_flags; put takes
				       F_CARBONS and F_DETACHED from it (the
				       table keeps F_SIBLING_CARBONS) */
	uint16_t caps_idx;          /* shm/caps.h entry + 1 (0: none) and */
	uint16_t caps_gen;          /* its gen's low bits (see ipc.h) */
	int32_t index;              /* record index (out only: get, list,
				       foreach), for shm_session_touch */
	char jid[IPC_JID_MAX + 1];  /* full JID */
};

/* Bytes needed for a table of `capacity` records (no change log). */
size_t shm_session_size(uint32_t capacity);
/* The same with a change log of log_entries (rounded up to a power of
 * two, at most SHM_SESSION_LOG_MAX; 0: no log). */
size_t shm_session_size_log(uint32_t capacity, uint32_t log_entries);
/* Initialise a table in mem (size from shm_session_size). */
int shm_session_init(void *mem, size_t size, uint32_t capacity,
		     const char **error_r);
/* The same with a change log (size from shm_session_size_log). */
int shm_session_init_log(void *mem, size_t size, uint32_t capacity,
			 uint32_t log_entries, const char **error_r);
/* Open a handle on an initialised table (checks magic/version). */
struct shm_table *shm_session_attach(void *mem, const char **error_r);
void shm_session_detach(struct shm_table **t);

/* Why shm_session_put_limited refused an entry. */
enum session_refusal {
	SESSION_REFUSED_NONE = 0,
	SESSION_REFUSED_INVALID,    /* bad JID, or the lock failed */
	SESSION_REFUSED_FULL,       /* no free record */
	SESSION_REFUSED_ACCOUNT,    /* the bare JID has max_per_bare sessions */
	SESSION_REFUSED_LONG,       /* no long-JID entry: the pool is full,
				       or the bare JID holds its share */
};

/* The same session: slot, node, rslot, conn_id and gen all equal. */
static inline int session_same(const struct session_info *a,
			       const struct session_info *b)
{
	return a->slot == b->slot && a->node == b->node &&
	       a->rslot == b->rslot && a->conn_id == b->conn_id &&
	       a->gen == b->gen;
}

/* Insert or replace the full JID in info->jid (a local entry: info->node
 * must be 0, else -1).  If a session with the
 * same full JID existed, it is replaced and copied to *old_r (when not
 * NULL) and 1 is returned; 0 for a new entry; -1 when full or invalid. */
int shm_session_put(struct shm_table *t, const struct session_info *info,
		    struct session_info *old_r, const char **error_r);
/* The same, but a new full JID is refused when its bare JID already has
 * max_per_bare entries (0: no limit); replacing the same full JID is
 * never refused by that limit.  The count is taken under the table lock
 * with the insert, so two workers binding at once cannot both pass.
 * Whatever max_per_bare is, one bare JID holds at most
 * shm_session_long_share() long-JID entries, so no account can exhaust
 * the pool.  why_r (may be NULL) says why -1 was returned. */
int shm_session_put_limited(struct shm_table *t,
			    const struct session_info *info,
			    unsigned max_per_bare, struct session_info *old_r,
			    enum session_refusal *why_r, const char **error_r);
/* Long-JID entries (full JIDs of IPC_JID_INLINE bytes or more) one bare
 * JID may hold: a sixteenth of the pool, at least 1. */
uint32_t shm_session_long_share(struct shm_table *t);
/* 1 found (copied to info_r), 0 not found, -1 error. */
int shm_session_get(struct shm_table *t, const char *full_jid,
		    struct session_info *info_r);
/* Resources of a bare JID: up to max copies to out; returns the number
 * found (may exceed max), or -1. */
int shm_session_list(struct shm_table *t, const char *bare_jid,
		     struct session_info *out, unsigned max);
/* Update priority/availability of an entry owned by (slot,conn,gen). */
int shm_session_set_presence(struct shm_table *t, const char *full_jid,
			     uint16_t slot, uint32_t conn_id, uint32_t gen,
			     int16_t priority, uint8_t available);
/* Set then clear bits of the flags of an entry owned by (slot, conn,
 * gen) (F_CARBONS, F_DETACHED; F_SIBLING_CARBONS is the table's own):
 * 1 done, 0 absent or owned by another session, -1 error.  The table
 * keeps F_SIBLING_CARBONS of every entry of the bare JID true under the
 * same lock hold: set while another entry of it has F_CARBONS. */
int shm_session_set_flags(struct shm_table *t, const char *full_jid,
			  uint16_t slot, uint32_t conn_id, uint32_t gen,
			  uint8_t set, uint8_t clear);
/* The flags of record index while it is USED and owned by (slot,
 * conn_id, gen), else 0: a relaxed load without the lock (the owner's
 * message path: no lookup).  A change racing with it is seen by the
 * next call. */
uint8_t shm_session_flags(struct shm_table *t, int32_t index, uint16_t slot,
			  uint32_t conn_id, uint32_t gen);
/* The client of record index (from shm_session_get) sent bytes at unix
 * time now: a relaxed store without the lock, done only while the
 * record is USED and owned by (slot, conn_id, gen).  A record freed and
 * reused between that check and the store gets a wrong `active` for at
 * most a second (its own worker's next touch corrects it); nothing but
 * the idle time shown by xmppctl reads it. */
void shm_session_touch(struct shm_table *t, int32_t index, uint16_t slot,
		       uint32_t conn_id, uint32_t gen, int64_t now);
/* Set the entity capabilities of record index (shm/caps.h entry + 1
 * and its gen's low 16 bits; 0, 0: none) while it is USED and owned by
 * (slot, conn_id, gen): the owner check and the one-word store under
 * the table lock, so a take-over never keeps the old owner's caps; only
 * the owning worker writes them.  Readers (PEP fan-out on any worker)
 * load the word lock-free and check its gen against the caps entry. */
void shm_session_set_caps(struct shm_table *t, int32_t index, uint16_t slot,
			  uint32_t conn_id, uint32_t gen, uint16_t caps_idx,
			  uint16_t caps_gen);
/* Remove full_jid only if owned by (slot, conn_id, gen): 1 removed,
 * 0 absent or owned by another session, -1 error. */
int shm_session_del(struct shm_table *t, const char *full_jid,
		    uint16_t slot, uint32_t conn_id, uint32_t gen);
/* Remove every local entry of a slot; cb (may be NULL) sees each
 * removed one after the lock is released.  Returns the count removed.
 * Remote entries are never swept by slot: the bridge's slot holds the
 * other nodes' sessions, still true when the bridge dies (its respawn
 * resyncs them); they go with shm_session_sweep_node. */
int shm_session_sweep_slot(struct shm_table *t, uint16_t slot,
			   void (*cb)(const struct session_info *, void *),
			   void *ctx);
/* The same, but an entry for which keep(entry, ctx) answers 1 stays
 * (called under the table lock: it must not call into the table), and
 * cb does not see it: a resumable XEP-0198 session of a dead worker,
 * which its respawn adopts (smstore_keeps). */
int shm_session_sweep_slot_keep(struct shm_table *t, uint16_t slot,
				int (*keep)(const struct session_info *,
					    void *),
				void (*cb)(const struct session_info *, void *),
				void *ctx);
/* Enter another node's session (the cluster bridge, from that node's
 * directory): info->jid, node (1 .. IPC_MAX_NODES - 1), rslot, conn_id,
 * gen, priority, available, flags (F_CARBONS), since, and slot = the
 * bridge's slot.  0 new entry; 1 replaced the same node's entry for
 * that full JID (a later event of that node: presence, flags, or a new
 * connection there), copied to old_r; 2 nothing changed: the JID is
 * held by a local session or another node's, copied to old_r (a bind
 * race between nodes, for the caller to settle); -1 error (bad JID or
 * node, table or long-JID pool full).  The account and long-JID share
 * limits are the holder's node's to apply, not ours: the directory
 * mirrors what is, so only a full table refuses. */
int shm_session_insert_remote(struct shm_table *t,
			      const struct session_info *info,
			      struct session_info *old_r,
			      const char **error_r);
/* Remove full_jid only if it is node's entry from (rslot, conn_id,
 * gen): 1 removed, 0 absent or another session's (a stale event), -1
 * error. */
int shm_session_remove_remote(struct shm_table *t, uint8_t node,
			      uint8_t rslot, const char *full_jid,
			      uint32_t conn_id, uint32_t gen);
/* Remove every entry of node (not 0); cb (may be NULL) sees each
 * removed one (full JID, available: what the unavailable broadcast
 * needs) after the lock is released.  Returns the count removed. */
int shm_session_sweep_node(struct shm_table *t, uint8_t node,
			   void (*cb)(const struct session_info *, void *),
			   void *ctx);
/* The same, but entries keep() says 1 for stay (one pass). */
int shm_session_sweep_node_keep(struct shm_table *t, uint8_t node,
				int (*keep)(const struct session_info *,
					    void *),
				void (*cb)(const struct session_info *, void *),
				void *ctx);
/* A number that moves whenever a local session is entered, ends, or
 * changes presence or carbons (or the table is rebuilt): the cluster
 * bridge compares this node's sessions with what it told the others
 * only when it moved. */
uint64_t shm_session_changes(struct shm_table *t);

/* ---- the change log (ipc.h): what the cluster bridge reads instead of
 * walking the whole table --------------------------------------------- */

#define SHM_SESSION_LOG_MAX (1u << 24)

/* Where a reader of the log is. */
struct shm_session_cursor {
	uint64_t pos;               /* the next entry to read */
	uint32_t recoveries;        /* the table's, when the reader began */
};

/* Begin reading at the log's head, before a full walk of the table:
 * every change made from here on (during the walk too) is read after
 * it.  0, or -1 when the table has no log. */
int shm_session_log_start(struct shm_table *t,
			  struct shm_session_cursor *c);
/* Up to max record indices changed since c (in the order of the
 * changes; one index may come several times), c moved past them:
 * returns how many (0: nothing new), or -1 when changes were lost to
 * the reader -- the ring lapped it, or the table was rebuilt after a
 * dead lock holder (whose last change may not be logged) -- and it
 * must start again (shm_session_log_start, then a full walk). */
int shm_session_log_read(struct shm_table *t, struct shm_session_cursor *c,
			 int32_t *out, unsigned max);
/* Record index as it is now: 1 USED (copied to info_r), 0 free or out
 * of range, -1 the lock failed. */
int shm_session_at(struct shm_table *t, int32_t index,
		   struct session_info *info_r);
/* Entries of the log (0: none). */
uint32_t shm_session_log_size(struct shm_table *t);

/* Entries in use, capacity, and recoveries after a dead lock holder. */
void shm_session_usage(struct shm_table *t, uint32_t *used_r,
		       uint32_t *capacity_r, uint32_t *recoveries_r);
/* Walk all entries (for xmppctl sessions); stops when cb returns != 0. */
int shm_session_foreach(struct shm_table *t,
			int (*cb)(const struct session_info *, void *),
			void *ctx);
/* Check every invariant (chains, free lists, counts); 0 ok, -1 with
 * error (tests and `xmppctl` diagnostics). */
int shm_session_verify(struct shm_table *t, const char **error_r);

/* Test hook: when set, called while the lock is held in the middle of
 * an insert (after the record is claimed, before it is linked). */
extern void (*shm_session_test_hook)(void);

#endif

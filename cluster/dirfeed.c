/*
 * dirfeed.c - this node's sessions into dir_local (dirfeed.h).  A walk
 * copies every used record of the table (O(capacity), the cost that
 * stopped the design at millions: docs/PERFORMANCE.md "Cluster"); the
 * log costs one locked copy per change.  Reading a record's *current*
 * state, not the change itself, makes the two agree: an index read
 * twice, or read after later changes, gives the same answer, and
 * dir_local_change_at tells what left a record that another session
 * took.  Failure policy: an unreadable table or no memory returns -1
 * and the next update walks; nothing here logs.
 */
#include "dirfeed.h"

#include <string.h>

/* Indices read from the log per lock-free read (a 1 KiB buffer). */
#define FEED_READ 256u

void dir_feed_init(struct dir_feed *f, unsigned nworkers)
{
	memset(f, 0, sizeof(*f));
	f->nworkers = nworkers;
}

/* A local worker session of the table as the directory tells it. */
static bool feed_rec(const struct dir_feed *f, const struct session_info *info,
		     struct dir_rec *rec)
{
	if (info->node != 0 || info->slot >= f->nworkers)
		return false;   /* another node's, or not a worker's */
	*rec = (struct dir_rec){
		.op = DIR_OP_SET, .rslot = (uint8_t)info->slot,
		.flags = info->flags & IPC_SESSION_F_CARBONS,
		.available = info->available ? 1 : 0,
		.priority = info->priority, .conn_id = info->conn_id,
		.gen = info->gen, .since = info->since,
		.jid_len = (uint16_t)strlen(info->jid), .jid = info->jid,
	};
	return true;
}

struct feed_walk {
	struct dir_feed *f;
	struct dir_local *l;
	bool oom;
};

static int feed_walk_one(const struct session_info *info, void *ctx)
{
	struct feed_walk *w = ctx;
	struct dir_rec rec;
	if (feed_rec(w->f, info, &rec) &&
	    dir_local_change_at(w->l, &rec, info->index) < 0)
		w->oom = true;
	return 0;
}

/* The log's position first: what changes during the walk is read
 * again after it (reading a record twice is harmless). */
static int feed_walk(struct dir_feed *f, struct dir_local *l,
		     struct shm_table *t, const char **error_r)
{
	struct feed_walk w = { f, l, false };
	struct shm_session_cursor cur;
	bool logged = shm_session_log_start(t, &cur) == 0;
	f->started = false;
	dir_local_scan_begin(l);
	if (shm_session_foreach(t, feed_walk_one, &w) < 0) {
		/* an unreadable table: tell nothing rather than every
		 * session ended */
		dir_local_scan_abort(l);
		*error_r = "session table unreadable";
		return -1;
	}
	if (dir_local_scan_end(l) < 0)
		w.oom = true;
	f->walks++;
	if (w.oom) {
		*error_r = "out of memory telling our sessions";
		return -1;
	}
	f->cur = cur;
	f->started = logged;
	return 0;
}

/* Record index changed: what holds it now. */
static int feed_one(struct dir_feed *f, struct dir_local *l,
		    struct shm_table *t, int32_t index,
		    struct session_info *info)
{
	struct dir_rec rec;
	int r = shm_session_at(t, index, info);
	if (r < 0)
		return -1;
	if (r == 1 && feed_rec(f, info, &rec))
		return dir_local_change_at(l, &rec, index) < 0 ? -2 : 0;
	return dir_local_gone_at(l, index) < 0 ? -2 : 0;
}

/* At most a log's worth per call: writers faster than this reader
 * would otherwise keep it here; what is left waits for the next call
 * (or costs a walk if the ring laps it meanwhile). */
static int feed_log(struct dir_feed *f, struct dir_local *l,
		    struct shm_table *t, const char **error_r)
{
	int32_t idx[FEED_READ];
	uint64_t budget = shm_session_log_size(t);
	int n = 0;
	while (budget > 0 &&
	       (n = shm_session_log_read(t, &f->cur, idx, FEED_READ)) > 0) {
		f->logged += (unsigned)n;
		budget -= budget < (unsigned)n ? budget : (unsigned)n;
		for (int i = 0; i < n; i++) {
			if (i > 0 && idx[i] == idx[i - 1])
				continue;       /* read once is enough */
			int rc = feed_one(f, l, t, idx[i], &f->info);
			if (rc == 0)
				continue;
			f->started = false;
			*error_r = rc == -1 ? "session table unreadable" :
				   "out of memory telling our sessions";
			return -1;
		}
	}
	if (n < 0) {                    /* lost changes */
		f->lapped++;
		return feed_walk(f, l, t, error_r);
	}
	return 0;
}

int dir_feed_update(struct dir_feed *f, struct dir_local *l,
		    struct shm_table *t, bool walk, const char **error_r)
{
	if (walk || !f->started)
		return feed_walk(f, l, t, error_r);
	return feed_log(f, l, t, error_r);
}

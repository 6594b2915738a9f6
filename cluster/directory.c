/*
 * directory.c - the cluster's session directory bookkeeping
 * (directory.h).  Failure policy: out of memory while following a node
 * drops what we know of it and asks for a snapshot again (the table is
 * then brought back by difference); a bad batch is refused whole.
 * Nothing here logs; the caller logs with the node's name.
 */
#include "directory.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a map of sessions by full JID ---------------------------------- */

struct dir_entry {
	struct dir_entry *next;
	uint64_t hash;
	uint64_t digest;
	uint32_t mark;              /* dir_local: the scan that saw it */
	int32_t index;              /* dir_local: its session table record
				       (l->at[index] is this), or -1 */
	struct dir_rec rec;         /* jid and caps point into text */
	char text[];
};

struct dir_map {
	struct dir_entry **buckets;
	size_t nbuckets;            /* a power of two */
	uint32_t count;
	uint64_t digest;            /* XOR of the entries' digests */
};

static uint64_t jid_hash(const char *jid, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)jid[i]) * 0x100000001b3ull;
	return h;
}

static struct dir_map *map_new(void)
{
	struct dir_map *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return NULL;
	m->nbuckets = 64;
	m->buckets = calloc(m->nbuckets, sizeof(*m->buckets));
	if (m->buckets == NULL) {
		free(m);
		return NULL;
	}
	return m;
}

static void map_free(struct dir_map *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->nbuckets; i++) {
		struct dir_entry *e = m->buckets[i];
		while (e != NULL) {
			struct dir_entry *next = e->next;
			free(e);
			e = next;
		}
	}
	free(m->buckets);
	free(m);
}

static struct dir_entry **map_find(struct dir_map *m, const char *jid,
				   size_t len, uint64_t hash)
{
	struct dir_entry **pp = &m->buckets[hash & (m->nbuckets - 1)];
	for (; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->hash == hash && (*pp)->rec.jid_len == len &&
		    memcmp((*pp)->rec.jid, jid, len) == 0)
			return pp;
	return pp;
}

static void map_grow(struct dir_map *m)
{
	size_t n = m->nbuckets * 2;
	struct dir_entry **b = calloc(n, sizeof(*b));
	if (b == NULL)
		return;             /* longer chains, still right */
	for (size_t i = 0; i < m->nbuckets; i++) {
		struct dir_entry *e = m->buckets[i];
		while (e != NULL) {
			struct dir_entry *next = e->next;
			e->next = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
			e = next;
		}
	}
	free(m->buckets);
	m->buckets = b;
	m->nbuckets = n;
}

static bool rec_equal(const struct dir_rec *a, const struct dir_rec *b)
{
	return a->rslot == b->rslot && a->flags == b->flags &&
	       a->available == b->available && a->priority == b->priority &&
	       a->conn_id == b->conn_id && a->gen == b->gen &&
	       a->since == b->since && a->caps_len == b->caps_len &&
	       (a->caps_len == 0 || memcmp(a->caps, b->caps, a->caps_len) == 0);
}

/* The entry for rec's JID: rec now (SET), marked mark, *e_r (may be
 * NULL) the entry (a replacement keeps the old one's index).  1
 * changed, 0 equal, -1 out of memory (the map is unchanged). */
static int map_set_mark(struct dir_map *m, const struct dir_rec *rec,
			uint32_t mark, struct dir_entry **e_r)
{
	uint64_t hash = jid_hash(rec->jid, rec->jid_len);
	struct dir_entry **pp = map_find(m, rec->jid, rec->jid_len, hash);
	if (*pp != NULL && rec_equal(&(*pp)->rec, rec)) {
		(*pp)->mark = mark;
		if (e_r != NULL)
			*e_r = *pp;
		return 0;
	}
	struct dir_entry *e = malloc(sizeof(*e) + rec->jid_len +
				     rec->caps_len + 1);
	if (e == NULL)
		return -1;
	e->hash = hash;
	e->rec = *rec;
	e->rec.op = DIR_OP_SET;
	memcpy(e->text, rec->jid, rec->jid_len);
	if (rec->caps_len > 0)
		memcpy(e->text + rec->jid_len, rec->caps, rec->caps_len);
	e->text[rec->jid_len + rec->caps_len] = '\0';
	e->rec.jid = e->text;
	e->rec.caps = rec->caps_len > 0 ? e->text + rec->jid_len : NULL;
	e->digest = dir_rec_digest(&e->rec);
	e->mark = mark;
	e->index = -1;
	if (*pp != NULL) {              /* replace in place */
		struct dir_entry *old = *pp;
		e->index = old->index;
		e->next = old->next;
		m->digest ^= old->digest;
		free(old);
	} else {
		e->next = NULL;
		m->count++;
	}
	*pp = e;
	m->digest ^= e->digest;
	if (m->count > m->nbuckets)
		map_grow(m);
	if (e_r != NULL)
		*e_r = e;
	return 1;
}

static int map_set(struct dir_map *m, const struct dir_rec *rec)
{
	return map_set_mark(m, rec, 0, NULL);
}

/* Remove rec's JID if it is the same session (rslot, conn_id, gen). */
static bool map_del(struct dir_map *m, const struct dir_rec *rec)
{
	uint64_t hash = jid_hash(rec->jid, rec->jid_len);
	struct dir_entry **pp = map_find(m, rec->jid, rec->jid_len, hash);
	struct dir_entry *e = *pp;
	if (e == NULL || e->rec.rslot != rec->rslot ||
	    e->rec.conn_id != rec->conn_id || e->rec.gen != rec->gen)
		return false;
	*pp = e->next;
	m->digest ^= e->digest;
	m->count--;
	free(e);
	return true;
}

static struct dir_entry *map_get(struct dir_map *m, const struct dir_rec *rec)
{
	return *map_find(m, rec->jid, rec->jid_len,
			 jid_hash(rec->jid, rec->jid_len));
}

static void map_foreach(struct dir_map *m,
			void (*cb)(void *ctx, const struct dir_rec *rec),
			void *ctx)
{
	for (size_t i = 0; i < m->nbuckets; i++)
		for (struct dir_entry *e = m->buckets[i]; e != NULL;
		     e = e->next)
			cb(ctx, &e->rec);
}

/* ---- following another node ----------------------------------------- */

void dir_peer_init(struct dir_peer *p, unsigned node, size_t held_max)
{
	memset(p, 0, sizeof(*p));
	p->node = node;
	p->held_max = held_max;
	buf_init(&p->held, 0);
}

void dir_peer_bound(struct dir_peer *p, uint32_t max_sessions)
{
	p->snap_max = max_sessions;
}

struct each_del {
	const struct dir_ops *ops;
	unsigned node;
};

static void del_one(void *ctx, const struct dir_rec *rec)
{
	struct each_del *d = ctx;
	d->ops->del(d->ops->ctx, d->node, rec);
}

static void stop_sync(struct dir_peer *p)
{
	map_free(p->incoming);
	p->incoming = NULL;
	p->syncing = false;
	buf_free(&p->held);
	buf_init(&p->held, 0);
}

void dir_peer_forget(struct dir_peer *p, const struct dir_ops *ops)
{
	struct each_del d = { ops, p->node };
	if (p->have != NULL)
		map_foreach(p->have, del_one, &d);
	map_free(p->have);
	p->have = NULL;
	stop_sync(p);
	p->incarnation = 0;
	p->seq = 0;
	p->synced = false;
	p->mismatches = 0;
	p->hb_seq = 0;
}

static enum dir_action ask(struct dir_peer *p)
{
	stop_sync(p);
	p->syncing = true;
	p->next_part = 0;
	p->mismatches = 0;
	return DIR_ASK_SNAPSHOT;
}

void dir_peer_rebase(struct dir_peer *p, uint64_t incarnation)
{
	stop_sync(p);
	p->incarnation = incarnation;
	p->seq = 0;
	p->synced = false;
	p->mismatches = 0;
	p->hb_seq = 0;
}

void dir_peer_free(struct dir_peer *p)
{
	map_free(p->have);
	p->have = NULL;
	stop_sync(p);
}

bool dir_peer_holds(const struct dir_peer *p, const char *jid, size_t len,
		    uint8_t rslot, uint32_t conn_id, uint32_t gen)
{
	if (p->have == NULL)
		return false;
	const struct dir_entry *e =
		*map_find(p->have, jid, len, jid_hash(jid, len));
	return e != NULL && e->rec.rslot == rslot && e->rec.conn_id == conn_id &&
	       e->rec.gen == gen;
}

const struct dir_rec *dir_peer_find(const struct dir_peer *p, const char *jid,
				    size_t len)
{
	if (p->have == NULL)
		return NULL;
	const struct dir_entry *e =
		*map_find(p->have, jid, len, jid_hash(jid, len));
	return e != NULL ? &e->rec : NULL;
}

uint32_t dir_peer_count(const struct dir_peer *p)
{
	return p->have != NULL ? p->have->count : 0;
}

uint64_t dir_peer_digest(const struct dir_peer *p)
{
	return p->have != NULL ? p->have->digest : 0;
}

enum dir_action dir_peer_heartbeat(struct dir_peer *p,
				   const struct dir_ops *ops,
				   uint64_t incarnation, uint64_t seq,
				   uint32_t count, uint64_t digest)
{
	uint64_t prev_hb = p->hb_seq;
	if (incarnation != p->incarnation) {
		/* a new run: the old one's sessions are gone with it */
		dir_peer_forget(p, ops);
		p->incarnation = incarnation;
		p->hb_seq = seq;
		return ask(p);
	}
	p->hb_seq = seq;
	if (p->syncing)
		return DIR_NOTHING;     /* the caller re-asks on its timer */
	if (!p->synced)
		return ask(p);
	if (seq == p->seq) {
		if (count == dir_peer_count(p) && digest == dir_peer_digest(p)) {
			p->mismatches = 0;
			return DIR_NOTHING;
		}
		/* equal numbers, other contents: an event was applied
		 * differently or lost with its number; twice in a row so a
		 * heartbeat racing an event does not count */
		return ++p->mismatches >= 2 ? ask(p) : DIR_NOTHING;
	}
	/* behind: events in flight, or lost (no later one came to show a
	 * gap).  Behind the same number two heartbeats running: lost. */
	if (seq > p->seq && prev_hb == seq)
		return ++p->mismatches >= 2 ? ask(p) : DIR_NOTHING;
	return DIR_NOTHING;
}

/* Apply an events batch's records from skip on. */
static int apply_events(struct dir_peer *p, const struct dir_ops *ops,
			struct dir_reader *r, struct arena *a, uint32_t skip,
			const char **error_r)
{
	struct dir_rec rec;
	uint32_t i = 0;
	int rc;
	/* check the whole batch first: a bad one changes nothing */
	struct dir_reader check = *r;
	while ((rc = dir_read_next(&check, a, &rec, error_r)) == 1)
		;
	arena_reset(a);
	if (rc < 0)
		return -1;
	while (dir_read_next(r, a, &rec, error_r) == 1) {
		if (i++ < skip)
			continue;
		if (rec.op == DIR_OP_SET) {
			if (map_set(p->have, &rec) < 0)
				return -2;
			ops->set(ops->ctx, p->node, &rec);
		} else if (map_del(p->have, &rec)) {
			ops->del(ops->ctx, p->node, &rec);
		}
		arena_reset(a);
	}
	p->seq = r->hdr.seq + r->hdr.count - 1;
	return 0;
}

/* Hold an events batch until the snapshot is in: [u32 length][bytes]. */
static int hold(struct dir_peer *p, const struct dir_reader *r)
{
	uint32_t n = (uint32_t)r->len;
	if (buf_used(&p->held) + sizeof(n) + r->len > p->held_max)
		return -1;
	if (buf_append(&p->held, &n, sizeof(n)) < 0 ||
	    buf_append(&p->held, r->p, r->len) < 0)
		return -1;
	return 0;
}

static int events(struct dir_peer *p, const struct dir_ops *ops,
		  struct dir_reader *r, struct arena *a,
		  enum dir_action *action_r, const char **error_r)
{
	uint32_t skip;
	if (r->hdr.incarnation != p->incarnation)
		return 0;       /* a run its heartbeats do not announce */
	if (p->syncing) {
		if (hold(p, r) < 0)
			*action_r = ask(p);     /* too much: start over */
		return 0;
	}
	switch (dir_events_verdict(p->synced, p->incarnation, p->seq, &r->hdr,
				   &skip)) {
	case DIR_STALE:
		return 0;
	case DIR_RESYNC:
		*action_r = ask(p);
		return 0;
	case DIR_APPLY:
		break;
	}
	int rc = apply_events(p, ops, r, a, skip, error_r);
	if (rc == -2) {                 /* out of memory */
		dir_peer_forget(p, ops);
		*error_r = "out of memory";
		return -1;
	}
	if (rc < 0)
		*action_r = ask(p);
	return rc;
}

struct diff_ctx {
	struct dir_peer *p;
	const struct dir_ops *ops;
	struct dir_map *other;
};

/* in have, not in the snapshot: ended */
static void diff_gone(void *ctx, const struct dir_rec *rec)
{
	struct diff_ctx *d = ctx;
	const struct dir_entry *e = map_get(d->other, rec);
	if (e == NULL || e->rec.rslot != rec->rslot ||
	    e->rec.conn_id != rec->conn_id || e->rec.gen != rec->gen)
		d->ops->del(d->ops->ctx, d->p->node, rec);
}

/* in the snapshot: new or changed */
static void diff_new(void *ctx, const struct dir_rec *rec)
{
	struct diff_ctx *d = ctx;
	const struct dir_entry *e = d->other != NULL ? map_get(d->other, rec)
						     : NULL;
	if (e == NULL || !rec_equal(&e->rec, rec))
		d->ops->set(d->ops->ctx, d->p->node, rec);
}

/* The snapshot is whole: bring the table to it, then the held events. */
static int snapshot_done(struct dir_peer *p, const struct dir_ops *ops,
			 struct arena *a, enum dir_action *action_r,
			 const char **error_r)
{
	struct diff_ctx gone = { p, ops, p->incoming };
	struct diff_ctx fresh = { p, ops, p->have };
	if (p->have != NULL)
		map_foreach(p->have, diff_gone, &gone);
	map_foreach(p->incoming, diff_new, &fresh);
	map_free(p->have);
	p->have = p->incoming;
	p->incoming = NULL;
	p->seq = p->snap_seq;
	p->synced = true;
	p->syncing = false;
	p->mismatches = 0;
	p->snapshots++;
	struct buf held = p->held;
	buf_init(&p->held, 0);
	size_t off = 0;
	int rc = 0;
	while (rc == 0 && buf_used(&held) - off >= sizeof(uint32_t)) {
		uint32_t n;
		struct dir_reader r;
		memcpy(&n, buf_head(&held) + off, sizeof(n));
		off += sizeof(n);
		if (dir_read_begin(&r, buf_head(&held) + off, n, error_r) == 0)
			rc = events(p, ops, &r, a, action_r, error_r);
		off += n;
		if (p->syncing)         /* the held events asked again */
			break;
	}
	buf_free(&held);
	return rc;
}

/* Past snap_max: what we have of it goes, we stay syncing (asked
 * again later by the caller), the rest of its parts are ignored. */
static int snapshot_too_big(struct dir_peer *p, const char **error_r)
{
	map_free(p->incoming);
	p->incoming = NULL;
	p->next_part = DIR_PART_DROPPED;
	p->snaps_dropped++;
	*error_r = "snapshot holds more sessions than its node announced "
		   "(heartbeat + margin, or cluster.snapshot_max): dropped, "
		   "asked again later";
	return -1;
}

static int snapshot_part(struct dir_peer *p, const struct dir_ops *ops,
			 struct dir_reader *r, struct arena *a,
			 enum dir_action *action_r, const char **error_r)
{
	struct dir_rec rec;
	int rc;
	if (!p->syncing || r->hdr.incarnation != p->incarnation)
		return 0;               /* not asked for, or an old answer */
	if (p->next_part == DIR_PART_DROPPED && r->hdr.part != 0)
		return 0;               /* the rest of one we dropped */
	if (r->hdr.part != p->next_part) {
		if (r->hdr.part == 0) { /* an answer to a later request */
			map_free(p->incoming);
			p->incoming = NULL;
		} else {                /* a part lost: ask again */
			*action_r = ask(p);
			return 0;
		}
	}
	if (r->hdr.part == 0) {
		map_free(p->incoming);
		if ((p->incoming = map_new()) == NULL) {
			*error_r = "out of memory";
			*action_r = ask(p);
			return -1;
		}
		p->snap_seq = r->hdr.seq;
	} else if (r->hdr.seq != p->snap_seq) {
		*action_r = ask(p);
		return 0;
	}
	while ((rc = dir_read_next(r, a, &rec, error_r)) == 1) {
		if (map_set(p->incoming, &rec) < 0) {
			*error_r = "out of memory";
			rc = -1;
			break;
		}
		arena_reset(a);
		if (p->snap_max != 0 && p->incoming->count > p->snap_max)
			return snapshot_too_big(p, error_r);
	}
	if (rc < 0) {
		*action_r = ask(p);
		return -1;
	}
	p->next_part = r->hdr.part + 1;
	if (!r->hdr.last)
		return 0;
	return snapshot_done(p, ops, a, action_r, error_r);
}

int dir_peer_batch(struct dir_peer *p, const struct dir_ops *ops,
		   struct dir_reader *r, struct arena *a,
		   enum dir_action *action_r, const char **error_r)
{
	*action_r = DIR_NOTHING;
	if (p->have == NULL && (p->have = map_new()) == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	if (r->hdr.kind == DIR_KIND_SNAPSHOT)
		return snapshot_part(p, ops, r, a, action_r, error_r);
	return events(p, ops, r, a, action_r, error_r);
}

/* ---- this node's own sessions --------------------------------------- */

int dir_local_init(struct dir_local *l, const char *node,
		   uint64_t incarnation)
{
	memset(l, 0, sizeof(*l));
	snprintf(l->node, sizeof(l->node), "%s", node);
	l->incarnation = incarnation;
	buf_init(&l->out, 0);
	return (l->have = map_new()) != NULL ? 0 : -1;
}

void dir_local_free(struct dir_local *l)
{
	map_free(l->have);
	l->have = NULL;
	free(l->at);
	l->at = NULL;
	l->at_len = 0;
	buf_free(&l->out);
}

/* Append rec to the events batch being filled. */
static int local_event(struct dir_local *l, const struct dir_rec *rec)
{
	if (l->out_count == 0) {
		struct dir_batch_hdr h = {
			.kind = DIR_KIND_EVENTS, .incarnation = l->incarnation,
			.seq = l->seq + 1,
		};
		memcpy(h.node, l->node, sizeof(h.node));
		buf_free(&l->out);
		buf_init(&l->out, 0);
		if (dir_put_hdr(&l->out, &h) < 0)
			return -1;
	}
	if (dir_put_rec(&l->out, rec) < 0)
		return -1;
	l->seq++;
	dir_set_count(&l->out, 0, ++l->out_count);
	return 1;
}

/* e is no longer known at its record (it moved, or ends). */
static void local_unindex(struct dir_local *l, struct dir_entry *e)
{
	if (e->index >= 0 && (size_t)e->index < l->at_len &&
	    l->at[e->index] == e)
		l->at[e->index] = NULL;
	e->index = -1;
}

int dir_local_change(struct dir_local *l, const struct dir_rec *rec)
{
	struct dir_entry *e;
	int rc;
	if (rec->op == DIR_OP_SET) {
		rc = map_set_mark(l->have, rec, l->scan, &e);
		if (rc == 1 && e->index >= 0)   /* the old one was freed */
			l->at[e->index] = e;
	} else {
		e = map_get(l->have, rec);
		if (e != NULL && e->rec.rslot == rec->rslot &&
		    e->rec.conn_id == rec->conn_id && e->rec.gen == rec->gen)
			local_unindex(l, e);
		rc = map_del(l->have, rec) ? 1 : 0;
	}
	if (rc <= 0)
		return rc;
	return local_event(l, rec);
}

/* at[] covers index (doubling, at least 1024). */
static int local_at_room(struct dir_local *l, int32_t index)
{
	size_t n = l->at_len > 0 ? l->at_len : 1024;
	if ((size_t)index < l->at_len)
		return 0;
	while (n <= (size_t)index)
		n *= 2;
	struct dir_entry **at = realloc(l->at, n * sizeof(*at));
	if (at == NULL)
		return -1;
	memset(at + l->at_len, 0, (n - l->at_len) * sizeof(*at));
	l->at = at;
	l->at_len = n;
	return 0;
}

/* Tell e's end (DEL) and forget it. */
static int local_drop(struct dir_local *l, struct dir_entry *e)
{
	struct dir_entry **pp = map_find(l->have, e->rec.jid, e->rec.jid_len,
					 e->hash);
	local_unindex(l, e);
	e->rec.op = DIR_OP_DEL;
	e->rec.caps_len = 0;
	int rc = local_event(l, &e->rec);
	*pp = e->next;
	l->have->digest ^= e->digest;
	l->have->count--;
	free(e);
	return rc;
}

int dir_local_change_at(struct dir_local *l, const struct dir_rec *rec,
			int32_t index)
{
	struct dir_entry *e, *old;
	int rc = 0;
	if (index < 0 || rec->op != DIR_OP_SET)
		return dir_local_change(l, rec);
	if (local_at_room(l, index) < 0)
		return -1;
	old = l->at[index];
	if (old != NULL && (old->rec.jid_len != rec->jid_len ||
			    memcmp(old->rec.jid, rec->jid, rec->jid_len) != 0)) {
		/* another session holds the record now: old ended (a
		 * scan leaves that to scan_end, in case old is further on) */
		if (l->scanning)
			local_unindex(l, old);
		else if (local_drop(l, old) < 0)
			rc = -1;
	}
	e = map_get(l->have, rec);
	if (e != NULL && e->index != index)
		local_unindex(l, e);    /* moved here from another record */
	int set = map_set_mark(l->have, rec, l->scan, &e);
	if (set < 0)
		return -1;
	e->index = index;
	l->at[index] = e;
	if (set == 1 && local_event(l, rec) < 0)
		return -1;
	return rc < 0 ? -1 : set;
}

int dir_local_gone_at(struct dir_local *l, int32_t index)
{
	if (index < 0 || (size_t)index >= l->at_len || l->at[index] == NULL)
		return 0;
	return local_drop(l, l->at[index]) < 0 ? -1 : 1;
}

void dir_local_scan_begin(struct dir_local *l)
{
	l->scan++;
	l->scanning = true;
}

void dir_local_scan_abort(struct dir_local *l)
{
	/* the mark is not taken back: entries it marked must not count
	 * as seen by the next scan */
	l->scanning = false;
}

int dir_local_scan_end(struct dir_local *l)
{
	int rc = 0;
	l->scanning = false;
	for (size_t i = 0; i < l->have->nbuckets; i++) {
		struct dir_entry **pp = &l->have->buckets[i];
		while (*pp != NULL) {
			struct dir_entry *e = *pp;
			if (e->mark == l->scan) {
				pp = &e->next;
				continue;
			}
			/* not in the table any more: it ended */
			local_unindex(l, e);
			e->rec.op = DIR_OP_DEL;
			e->rec.caps_len = 0;
			if (local_event(l, &e->rec) < 0)
				rc = -1;
			*pp = e->next;
			l->have->digest ^= e->digest;
			l->have->count--;
			free(e);
		}
	}
	return rc;
}

bool dir_local_pending(const struct dir_local *l)
{
	return l->out_count > 0;
}

void dir_local_sent(struct dir_local *l)
{
	l->out_count = 0;
	buf_free(&l->out);
	buf_init(&l->out, 0);
}

struct snap_ctx {
	struct dir_local *l;
	size_t part_bytes;
	struct buf b;
	uint32_t part, count;
	int (*emit)(void *ctx, const void *part, size_t len);
	void *ctx;
	int failed;
};

static void snap_start(struct snap_ctx *s)
{
	struct dir_batch_hdr h = {
		.kind = DIR_KIND_SNAPSHOT, .incarnation = s->l->incarnation,
		.seq = s->l->seq, .part = s->part,
	};
	memcpy(h.node, s->l->node, sizeof(h.node));
	buf_free(&s->b);
	buf_init(&s->b, 0);
	s->count = 0;
	if (dir_put_hdr(&s->b, &h) < 0)
		s->failed = 1;
}

static void snap_flush(struct snap_ctx *s, bool last)
{
	if (s->failed)
		return;
	dir_set_count(&s->b, 0, s->count);
	((uint8_t *)s->b.data)[s->b.off + 6] = last;    /* header 'last' */
	if (s->emit(s->ctx, buf_head(&s->b), buf_used(&s->b)) < 0)
		s->failed = 1;
	s->part++;
	if (!last)
		snap_start(s);
}

static void snap_one(void *ctx, const struct dir_rec *rec)
{
	struct snap_ctx *s = ctx;
	if (s->failed)
		return;
	if (s->count > 0 && buf_used(&s->b) + DIR_REC_FIXED + rec->jid_len +
	    rec->caps_len > s->part_bytes)
		snap_flush(s, false);
	if (!s->failed && dir_put_rec(&s->b, rec) < 0)
		s->failed = 1;
	s->count++;
}

int dir_local_snapshot(struct dir_local *l, size_t part_bytes,
		       int (*emit)(void *ctx, const void *part, size_t len),
		       void *ctx)
{
	struct snap_ctx s = { .l = l, .part_bytes = part_bytes, .emit = emit,
			      .ctx = ctx };
	buf_init(&s.b, 0);
	snap_start(&s);
	map_foreach(l->have, snap_one, &s);
	snap_flush(&s, true);
	buf_free(&s.b);
	return s.failed ? -1 : 0;
}

void dir_local_foreach(struct dir_local *l,
		       void (*cb)(void *ctx, const struct dir_rec *rec),
		       void *ctx)
{
	map_foreach(l->have, cb, ctx);
}

uint32_t dir_local_count(const struct dir_local *l)
{
	return l->have->count;
}

uint64_t dir_local_digest(const struct dir_local *l)
{
	return l->have->digest;
}

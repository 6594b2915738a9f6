/*
 * muc.c - the multi-user chat service (XEP-0045): where its stanzas go,
 * the rooms a worker owns, reading and writing them, and fan-out.
 * What a room does with a stanza is muc_room.c's.
 *
 * The service of each hosted domain HOST is SERVICE.HOST (muc.service).
 * route.c and s2s_in.c hand every stanza to such a domain to
 * service_stanza on the worker that has it.  Stanzas to the service
 * itself (disco) are answered there.  A stanza to a room goes to the
 * room's owner worker, muc_owner_slot(room JID) (IPC_FRAME_MUC when
 * that is another one): a room's live state (occupants, roles,
 * affiliations, configuration, subject) is in that worker's memory
 * only, so no lock is taken on the message path, and every change of a
 * room is made in one place in the order its stanzas arrived.
 * docs/DESIGN.md "Group chat" says why and what it costs.  With the
 * cluster on, the room's owner worker is on the room's owner node
 * (muc_cluster.c: the member list's rendezvous owner), reached through
 * the cluster bridge; docs/DESIGN.md "Cluster" says how it moves.
 *
 * A room is read from PostgreSQL when the first stanza for it reaches
 * its owner (its row, affiliations and occupants, one pipelined round
 * trip; stanzas arriving meanwhile wait, up to MUC_PENDING_MAX), so a
 * worker that crashed and was respawned finds its rooms and their
 * occupants again: the occupants written by this run of the server
 * whose sessions are still in the session table (or on other servers)
 * stay in, and notice nothing.  Every change is written as it is made
 * (muc_db_*, fire and forget on the worker's pipelined link).
 *
 * Fan-out: a stanza for every occupant is serialized once without
 * 'to'; the occupants' sessions are looked up in the session table and
 * grouped by worker; each other worker gets one IPC_FRAME_MUC_FANOUT
 * with the text and its recipients, and puts each recipient's JID in
 * as it writes (muc_frame_fanout).  A session no longer in the table
 * leaves the room (status 333); so does one whose worker crashed
 * (IPC_FRAME_SWEPT -> session_swept -> IPC_FRAME_MUC_GONE to the
 * rooms' owners, found in muc_occupants).
 *
 * Failure policy: a stanza that cannot reach the owner (its queue is
 * full) is bounced with resource-constraint (wait); a room that cannot
 * be read (database down) answers what waited for it with
 * internal-server-error (wait) and is read again by the next stanza;
 * a failed write is logged with the room and what was lost.
 */
#include "muc_int.h"
#include "muc_fan.h"
#include "ext.h"
#include "jid.h"
#include "log.h"
#include "queue.h"
#include "iq.h"
#include "server.h"
#include "s2s.h"
#include "session.h"
#include "stanza.h"
#include "../db/db.h"
#include "../cluster/members.h"
#include "../shm/cluster.h"
#include "util.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const struct ext muc_ext;

#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"

unsigned muc_owner_slot(const struct worker *w, const char *room_bare)
{
	return w->nworkers > 0 ? muc_room_hash(room_bare) % w->nworkers : 0;
}

/* The depth of MUC handling on this worker (see muc_later below). */
static unsigned muc_depth;
static void muc_settle_later(struct worker *w);

/* ---- the service's domains ------------------------------------------- */

/* The host whose service domain is, or NULL. */
static const char *muc_host_of(const struct worker *w, const char *domain)
{
	const char *s = w->cfg->muc_service;
	size_t n = strlen(s);
	if (n == 0 || strncmp(domain, s, n) != 0 || domain[n] != '.')
		return NULL;
	return stream_hosted(w, domain + n + 1) ? domain + n + 1 : NULL;
}

int muc_serves_domain(const struct worker *w, const char *domain)
{
	return muc_host_of(w, domain) != NULL;
}

static unsigned muc_domain_items(const struct worker *w, const char *host,
				 struct buf *out)
{
	if (w->cfg->muc_service[0] == '\0' || host == NULL)
		return 0;
	buf_appendf(out, "<item jid='%s.", w->cfg->muc_service);
	xml_escape(out, host, strlen(host), 1);
	buf_appendf(out, "' name='Chatrooms'/>");
	return 1;
}

const char *muc_boot(const struct worker *w)
{
	static char boot[32];
	if (boot[0] == '\0')
		snprintf(boot, sizeof(boot), "%" PRId64,
			 (int64_t)((uint64_t)w->shm->hdr->master_started << 22 ^
				   (uint64_t)w->shm->hdr->master_pid));
	return boot;
}

/* ---- sending ----------------------------------------------------------- */

void muc_route_text(struct worker *w, const char *text, size_t len)
{
	struct arena a;
	const char *error;
	arena_init(&a, 2048);
	struct xml_node *st = stanza_parse(&a, text, len, &error);
	if (st == NULL)
		log_error("muc: own stanza unreadable: %s", error);
	else
		route_stanza(w, &a, st);
	arena_free(&a);
}

/* text with " to='to'" after its element name, into out. */
static void muc_splice(struct buf *out, const char *text, size_t len,
		       const char *to)
{
	size_t i = 1;
	while (i < len && text[i] != ' ' && text[i] != '>' && text[i] != '/')
		i++;
	buf_append(out, text, i);
	buf_appendf(out, " to='");
	xml_escape(out, to, strlen(to), 1);
	buf_append(out, "'", 1);
	buf_append(out, text + i, len - i);
}

/* Write text to a local connection with to put in; 0, or -1 when the
 * connection is not there (the caller routes it by JID). */
static int muc_write_local(struct worker *w, uint32_t conn_id, uint32_t gen,
			   const char *text, size_t len, const char *to)
{
	/* one buffer for every recipient (no allocation per occupant);
	 * conn_send copies what it keeps */
	static struct buf out;
	struct conn *c = conn_lookup(w, conn_id, gen);
	if (c == NULL || !c->bound)
		return -1;
	if (out.data == NULL)
		buf_init(&out, 0);
	out.len = out.off = 0;
	muc_splice(&out, text, len, to);
	if (!ext_stanza_out_text(c, buf_head(&out), buf_used(&out)))
		conn_send(c, buf_head(&out), buf_used(&out));
	if (out.cap > 64 * 1024)
		buf_free(&out);
	return 0;
}

void muc_send_one(struct worker *w, const char *text, size_t len,
		  const char *to, int remote)
{
	struct session_info s;
	struct buf out;
	const char *error;
	int found = !remote &&
		    shm_session_get(w->shm->sessions, to, &s) == 1;
	if (found && s.slot == w->slot &&
	    muc_write_local(w, s.conn_id, s.gen, text, len, to) == 0)
		return;
	buf_init(&out, 0);
	muc_splice(&out, text, len, to);
	/* straight to the session's worker, not parsed and routed again
	 * (a newcomer gets every occupant's presence this way) */
	if (!found || s.slot == w->slot ||
	    worker_send_session(w, &s, IPC_FRAME_STANZA, buf_head(&out),
				buf_used(&out), &error) < 0)
		muc_route_text(w, buf_head(&out), buf_used(&out));
	buf_free(&out);
}

/* The frames being built, one per other worker of the cluster
 * (muc_fanout). */
static struct muc_fan muc_fan;

/* A fan-out frame is sent once its recipients take this much (a few
 * thousand JIDs), below IPC_FRAME_MAX with the text. */
#define MUC_FANOUT_FLUSH (256u * 1024u)
/* A frame buffer kept for the next stanza up to this size. */
#define MUC_FANOUT_KEEP (512u * 1024u)

/* Send g's frame: to a local worker, or through the cluster bridge to
 * a worker of another node (g->node, g->rslot in the header). */
static void muc_fan_send(struct worker *w, struct muc_fan_group *g)
{
	uint32_t count = g->count;
	size_t len;
	const char *error;
	const char *f = muc_fan_take(g, &len);
	if (f == NULL) {
		log_error("muc: fan-out of %u to w%u not sent: out of memory",
			  count, g->slot);
		return;
	}
	if (len > IPC_FRAME_MAX ||
	    worker_send_node(w, g->slot, g->node, g->rslot,
			     IPC_FRAME_MUC_FANOUT, 0, 0, f, len, &error) < 0)
		log_warn("muc: fan-out of %u to w%u (node %u) not sent: %s",
			 count, g->slot, g->node,
			 len > IPC_FRAME_MAX ? "too large" : error);
}

/* Add recipient (s, jid) to its worker's frame; -1 when it has none (no
 * memory): the caller sends it its own stanza. */
static int muc_fan_add(struct worker *w, const struct session_info *s,
		       const char *jid, const char *text, size_t len)
{
	struct muc_fan_group *g = muc_fan_group(&muc_fan, s->slot, s->node,
						s->rslot);
	if (g == NULL || muc_fan_put(g, text, len, s->conn_id, s->gen, jid,
				     strlen(jid)) < 0)
		return -1;
	/* a frame stays under IPC_FRAME_MAX: once its recipients (not the
	 * text, which every frame carries once) pass MUC_FANOUT_FLUSH, or
	 * the next could not fit, it goes and the next recipients start
	 * another */
	struct buf *f = &g->frame;
	size_t recs = buf_used(f) - sizeof(struct ipc_muc_fanout) - len;
	if (recs >= MUC_FANOUT_FLUSH ||
	    buf_used(f) + sizeof(struct ipc_muc_recipient) + IPC_JID_MAX >
	    IPC_FRAME_MAX)
		muc_fan_send(w, g);
	return 0;
}

/* Where an occupant's session is (slot, node, rslot, conn_id, gen of
 * s; nothing else is filled from the cache): the cached place, or the
 * table's (0), or gone (-1). */
static int muc_fan_where(struct worker *w, const struct muc_dest *d,
			 struct session_info *s)
{
	struct muc_sess *ms = d->sess;
	if (ms != NULL && ms->where_ms != 0 &&
	    w->now_ms - ms->where_ms < MUC_RECHECK_MS) {
		s->slot = ms->slot;
		s->node = ms->node;
		s->rslot = ms->rslot;
		s->conn_id = ms->conn_id;
		s->gen = ms->gen;
		return 0;
	}
	if (shm_session_get(w->shm->sessions, d->jid, s) != 1)
		return -1;
	if (ms != NULL) {
		/* one look-up per session every few seconds, not one per
		 * message: the table's lock is every worker's */
		if (ms->where_ms == 0 || ms->node != s->node)
			muc_home_set(w, ms->home, s->node);
		ms->slot = s->slot;
		ms->node = s->node;
		ms->rslot = s->rslot;
		ms->conn_id = s->conn_id;
		ms->gen = s->gen;
		ms->where_ms = w->now_ms != 0 ? w->now_ms : 1;
	}
	return 0;
}

void muc_fanout(struct worker *w, const char *text, size_t len,
		const struct muc_dest *dest, unsigned n, unsigned *gone,
		unsigned *ngone)
{
	struct session_info s;
	unsigned ng = 0;
	for (unsigned i = 0; i < n; i++) {
		const struct muc_dest *d = &dest[i];
		if (d->remote) {
			muc_send_one(w, text, len, d->jid, 1);
			continue;
		}
		if (muc_fan_where(w, d, &s) < 0) {
			if (gone != NULL)
				gone[ng] = i;
			ng++;
			continue;
		}
		if (s.slot >= w->nslots || s.slot >= IPC_MAX_SLOTS) {
			/* a worker count that changed under the table */
			muc_send_one(w, text, len, d->jid, 0);
			continue;
		}
		if (s.slot == w->slot) {
			if (muc_write_local(w, s.conn_id, s.gen, text, len,
					    d->jid) < 0) {
				if (d->sess != NULL)
					d->sess->where_ms = 0;  /* look again */
				muc_send_one(w, text, len, d->jid, 0);
			}
			continue;
		}
		/* another worker, here or on another node: one frame each */
		if (muc_fan_add(w, &s, d->jid, text, len) < 0)
			muc_send_one(w, text, len, d->jid, 0);
	}
	for (unsigned i = 0; i < muc_fan.n; i++)
		if (muc_fan.groups[i].count > 0)
			muc_fan_send(w, &muc_fan.groups[i]);
	muc_fan_reset(&muc_fan, MUC_FANOUT_KEEP);
	if (ngone != NULL)
		*ngone = ng;
}

/* A fan-out frame from a room's owner: each recipient gets the text
 * with its JID as 'to'; one whose connection is gone here is routed by
 * its JID (moved with XEP-0198, or answered with an error that tells
 * the room). */
static void muc_frame_fanout(struct worker *w, const char *p, size_t len)
{
	struct muc_fan_reader r;
	struct muc_fan_rcpt rc;
	const char *error;
	if (muc_fan_read(&r, p, len, &error) < 0) {
		/* every worker of the cluster writes them: our bug */
		log_error("muc: fan-out frame (%zu bytes) refused: %s", len,
			  error);
		muc_settle_later(w);
		return;
	}
	while (muc_fan_next(&r, &rc) == 1) {
		muc_depth++;    /* rooms wait while these are written */
		if (muc_write_local(w, rc.conn_id, rc.gen, r.text, r.text_len,
				    rc.jid) < 0)
			muc_send_one(w, r.text, r.text_len, rc.jid, 0);
		muc_depth--;
	}
	muc_settle_later(w);
}

/* ---- the rooms this worker owns ---------------------------------------- */

#define MUC_TABLE_SIZE 4096u    /* chains; rooms are not bounded by it */
static struct muc_room *muc_table[MUC_TABLE_SIZE];
static unsigned muc_nrooms;

static unsigned muc_hash(const char *jid)
{
	return fnv1a(jid) % MUC_TABLE_SIZE;
}

/* Rooms are handled one stanza at a time per worker, not only per room:
 * a write may end a slow reader's stream, whose unavailable presence is
 * routed at once (presence.c, when the database cannot take it) to
 * other rooms of this worker, while the fan-out buffers and the
 * occupants being walked are in use.  While muc_depth > 0 a stanza for
 * any room waits in that room (muc_hold) and the room is listed in
 * muc_later; the outermost handler settles them when it is done. */
static struct muc_room **muc_later;
static unsigned muc_nlater, muc_later_cap;

static void muc_later_add(struct muc_room *r)
{
	if (r->later)
		return;
	if (muc_nlater == muc_later_cap) {
		unsigned cap = muc_later_cap ? muc_later_cap * 2 : 16;
		struct muc_room **m = realloc(muc_later, cap * sizeof(*m));
		if (m == NULL) {
			log_error("muc %s: out of memory: its waiting stanzas "
				  "go with its next one", r->jid);
			return;
		}
		muc_later = m;
		muc_later_cap = cap;
	}
	r->later = 1;
	r->refs++;
	muc_later[muc_nlater++] = r;
}

static void muc_replay(struct worker *w, struct muc_room *r);

void muc_busy_enter(void)
{
	muc_depth++;
}

void muc_busy_leave(struct worker *w)
{
	muc_depth--;
	muc_settle_later(w);
}

/* The outermost handler is done: the rooms that waited settle. */
static void muc_settle_later(struct worker *w)
{
	while (muc_depth == 0 && muc_nlater > 0) {
		struct muc_room *r = muc_later[--muc_nlater];
		r->later = 0;
		if (!r->dead)
			muc_replay(w, r);
		muc_room_unref(r);
	}
}

static struct muc_room *muc_find(const char *jid)
{
	for (struct muc_room *r = muc_table[muc_hash(jid)]; r != NULL;
	     r = r->next)
		if (strcmp(r->jid, jid) == 0)
			return r;
	return NULL;
}

static void muc_room_free(struct muc_room *r)
{
	for (unsigned i = 0; i < r->nocc; i++)
		muc_occ_free(r->occ[i]);
	free(r->occ);
	for (unsigned i = 0; i < r->naffs; i++) {
		free(r->affs[i].jid);
		free(r->affs[i].nick);
		free(r->affs[i].reason);
	}
	free(r->affs);
	for (unsigned i = 0; i < r->npend; i++)
		free(r->pend[i].text);
	free(r->pend);
	for (unsigned i = 0; i < MUC_LEFT_MAX; i++)
		free(r->left[i].bare);
	for (unsigned i = 0; i < r->ninvited; i++) {
		free(r->invited[i].invitee);
		free(r->invited[i].inviter);
	}
	for (unsigned i = 0; i < r->ngone; i++)
		free(r->gone[i]);
	free(r->gone);
	for (unsigned i = 0; i < r->nfwd; i++) {
		free(r->fwd[i].from);
		free(r->fwd[i].id);
		free(r->fwd[i].to_nick);
		free(r->fwd[i].from_nick);
		free(r->fwd[i].sent_to);
	}
	muc_config_free(&r->cf);
	free(r->subject);
	free(r->subject_by);
	free(r->salt);
	free(r->creator);
	free(r->jid);
	free(r);
}

void muc_room_unref(struct muc_room *r)
{
	if (--r->refs == 0 && r->dead)
		muc_room_free(r);
}

static void muc_unlink(struct muc_room *r)
{
	struct muc_room **pp = &muc_table[muc_hash(r->jid)];
	while (*pp != NULL && *pp != r)
		pp = &(*pp)->next;
	if (*pp == r) {
		*pp = r->next;
		muc_nrooms--;
	}
	r->dead = 1;
	if (r->refs == 0)
		muc_room_free(r);
}

void muc_room_drop(struct worker *w, struct muc_room *r)
{
	if (r->id != 0)
		muc_db_room_del(w, r);
	muc_unlink(r);
}

static struct muc_room *muc_room_new(struct worker *w, const char *jid)
{
	struct muc_room *r = calloc(1, sizeof(*r));
	if (r == NULL || (r->jid = strdup(jid)) == NULL ||
	    (r->subject = strdup("")) == NULL ||
	    (r->subject_by = strdup("")) == NULL ||
	    (r->salt = strdup("")) == NULL) {
		if (r != NULL) {
			free(r->jid);
			free(r->subject);
			free(r->subject_by);
			free(r);
		}
		return NULL;
	}
	char *at = strchr(r->jid, '@');
	r->w = w;
	r->service = at + 1;
	unsigned h = muc_hash(jid);
	r->next = muc_table[h];
	muc_table[h] = r;
	muc_nrooms++;
	return r;
}

/* ---- reading a room ----------------------------------------------------- */

const char *muc_room_name(const struct muc_room *r, char *buf, size_t size)
{
	size_t n = (size_t)(r->service - 1 - r->jid);
	if (n >= size)
		n = size - 1;
	memcpy(buf, r->jid, n);
	buf[n] = '\0';
	return buf;
}

static const char muc_load_room_sql[] =
	"SELECT id, config, subject, subject_by, salt, locked FROM muc_rooms "
	"WHERE service = $1 AND name = $2";
static const char muc_load_affs_sql[] =
	"SELECT a.jid, a.affiliation, a.nick, a.reason FROM muc_affiliations a "
	"JOIN muc_rooms r ON r.id = a.room_id "
	"WHERE r.service = $1 AND r.name = $2";
/* One node: rows of an earlier run are stale (their sessions ended with
 * it, and so did every occupant's). */
static const char muc_load_occ_sql[] =
	"WITH stale AS (DELETE FROM muc_occupants o USING muc_rooms r "
	" WHERE r.id = o.room_id AND r.service = $1 AND r.name = $2 "
	" AND o.node = $4 AND o.boot <> $3) "
	"SELECT o.jid, o.nick, o.role, o.presence, o.node, false "
	"FROM muc_occupants o JOIN muc_rooms r ON r.id = o.room_id "
	"WHERE r.service = $1 AND r.name = $2 "
	"AND NOT (o.node = $4 AND o.boot <> $3) "
	"ORDER BY o.nick";
/* A cluster: every row is read, with whether its node's run is over (our
 * earlier runs, or another node's run that muc_node_runs no longer
 * has): the other occupants are alive and must see those leave
 * (muc_loaded_node); the session table says which of the rest are
 * still there (muc_room_loaded). */
static const char muc_load_occ_cluster_sql[] =
	"SELECT o.jid, o.nick, o.role, o.presence, o.node, "
	" (o.node = $4 AND o.boot <> $3) OR (o.boot <> 0 AND o.boot IS "
	" DISTINCT FROM (SELECT boot FROM muc_node_runs n "
	" WHERE n.node = o.node)) "
	"FROM muc_occupants o JOIN muc_rooms r ON r.id = o.room_id "
	"WHERE r.service = $1 AND r.name = $2 "
	"ORDER BY o.nick";

static void muc_replay(struct worker *w, struct muc_room *r);

static void muc_fail_pending(struct worker *w, struct muc_room *r)
{
	for (unsigned i = 0; i < r->npend; i++) {
		struct arena a;
		const char *error;
		arena_init(&a, 1024);
		struct xml_node *st = stanza_parse(&a, r->pend[i].text,
						   r->pend[i].len, &error);
		if (st != NULL && stanza_may_bounce(st)) {
			struct buf out;
			buf_init(&out, 0);
			stanza_error_xml(&out, st, NULL, "wait",
					 "internal-server-error",
					 "the room could not be read");
			muc_route_text(w, buf_head(&out), buf_used(&out));
			buf_free(&out);
		}
		arena_free(&a);
		free(r->pend[i].text);
	}
	r->npend = 0;
}

static void muc_loaded_room(void *ctx, const PGresult *res,
			    const char *error)
{
	struct muc_room *r = ctx;
	if (r->dead || res == NULL) {
		if (res == NULL && !r->dead) {
			log_error("muc %s: not read: %s", r->jid, error);
			r->load_failed = 1;
		}
		return;             /* muc_loaded_occ decides */
	}
	if (PQntuples(res) == 0)
		return;
	struct worker *w = r->w;
	r->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	r->exists = 1;
	r->locked = strcmp(PQgetvalue(res, 0, 5), "t") == 0;
	const char *text = PQgetvalue(res, 0, 1);
	if (muc_config_from_text(&r->cf, w->cfg, text, strlen(text)) < 0)
		log_error("muc %s: configuration unreadable: defaults", r->jid);
	char *s = strdup(PQgetvalue(res, 0, 2));
	char *b = strdup(PQgetvalue(res, 0, 3));
	char *salt = strdup(PQgetvalue(res, 0, 4));
	if (s != NULL && b != NULL && salt != NULL) {
		free(r->subject);
		free(r->subject_by);
		free(r->salt);
		r->subject = s;
		r->subject_by = b;
		r->salt = salt;
	} else {
		free(s);
		free(b);
		free(salt);
	}
}

static void muc_loaded_affs(void *ctx, const PGresult *res,
			    const char *error)
{
	struct muc_room *r = ctx;
	if (r->dead || !r->exists)
		return;
	if (res == NULL) {
		/* a room without its affiliations would lift its bans and
		 * take its owners' rights: not loaded at all */
		log_error("muc %s: affiliations not read: %s", r->jid, error);
		r->load_failed = 1;
		return;
	}
	int n = PQntuples(res);
	r->affs = calloc((size_t)n + 1, sizeof(*r->affs));
	if (r->affs == NULL) {
		r->load_failed = 1;
		return;
	}
	for (int i = 0; i < n; i++) {
		struct muc_affil *a = &r->affs[r->naffs];
		if (muc_aff_parse(PQgetvalue(res, i, 1), &a->aff) < 0)
			continue;
		a->jid = strdup(PQgetvalue(res, i, 0));
		a->nick = strdup(PQgetvalue(res, i, 2));
		a->reason = strdup(PQgetvalue(res, i, 3));
		if (a->jid == NULL || a->nick == NULL || a->reason == NULL) {
			free(a->jid);
			free(a->nick);
			free(a->reason);
			continue;
		}
		r->naffs++;
	}
}

/* A session of a node that left the cluster, or of a run of a node that
 * is over (it restarted): it leaves with 333 (removed for a technical
 * problem), not as a session that ended. */
static void muc_loaded_node(struct worker *w, struct muc_room *r,
			    const char *jid, const char *node, int run_over)
{
	if (muc_cluster_on(w) &&
	    (run_over || members_find(muc_members(w, NULL), node) < 0))
		muc_room_gone(w, r, jid, MUC_GONE_LEFT);
}

static void muc_loaded_occ(void *ctx, const PGresult *res,
			   const char *error)
{
	struct muc_room *r = ctx;
	struct worker *w = r->w;
	if (r->dead) {
		muc_room_unref(r);
		return;
	}
	if (res == NULL || r->load_failed) {
		if (res == NULL)
			log_error("muc %s: occupants not read: %s", r->jid,
				  error);
		muc_fail_pending(w, r);
		muc_unlink(r);      /* read again by the next stanza */
		muc_room_unref(r);
		return;
	}
	int n = PQntuples(res);
	for (int i = 0; i < n && r->exists; i++) {
		const char *jid = PQgetvalue(res, i, 0);
		const char *nick = PQgetvalue(res, i, 1);
		enum muc_role role;
		if (muc_role_parse(PQgetvalue(res, i, 2), &role) < 0)
			continue;
		struct muc_occ *o = NULL;
		for (unsigned k = 0; k < r->nocc; k++)
			if (strcmp(r->occ[k]->nick, nick) == 0)
				o = r->occ[k];
		if (o == NULL) {
			if (r->nocc == r->occ_cap) {
				unsigned cap = r->occ_cap ? r->occ_cap * 2 : 8;
				struct muc_occ **m = realloc(r->occ, cap *
							     sizeof(*m));
				if (m == NULL)
					break;
				r->occ = m;
				r->occ_cap = cap;
			}
			o = calloc(1, sizeof(*o));
			if (o == NULL ||
			    (o->nick = strdup(nick)) == NULL ||
			    (o->bare = strndup(jid, strcspn(jid, "/"))) ==
			    NULL) {
				if (o != NULL)
					muc_occ_free(o);
				break;
			}
			o->role = role;
			const char *at = strchr(o->bare, '@');
			o->remote = !stream_hosted(w, at != NULL ? at + 1 :
						   o->bare);
			r->occ[r->nocc++] = o;
		}
		struct muc_sess *m = realloc(o->sess, (o->nsess + 1) *
					     sizeof(*m));
		if (m == NULL)
			break;
		o->sess = m;
		memset(&m[o->nsess], 0, sizeof(m[o->nsess]));
		m[o->nsess].jid = strdup(jid);
		m[o->nsess].presence = strdup(PQgetvalue(res, i, 3));
		if (m[o->nsess].jid == NULL || m[o->nsess].presence == NULL) {
			free(m[o->nsess].jid);
			free(m[o->nsess].presence);
			break;
		}
		o->last = o->nsess++;
		if (o->remote) {
			/* another server's user: no node of ours holds its
			 * session, its row only names the owner that wrote
			 * it.  That node's exit ends nothing: kept, and the
			 * row is ours now (home "": this node), so that
			 * nobody takes it for an occupant of a node that
			 * left (muc_check_orphans) */
			if (muc_cluster_on(w) &&
			    strcmp(PQgetvalue(res, i, 4), muc_node_self(w)))
				muc_db_occupant_put(w, r, o, &o->sess[o->last]);
			continue;
		}
		snprintf(o->sess[o->last].home, sizeof(o->sess[o->last].home),
			 "%s", PQgetvalue(res, i, 4));
		muc_loaded_node(w, r, jid, PQgetvalue(res, i, 4),
				strcmp(PQgetvalue(res, i, 5), "t") == 0);
	}
	r->state = MUC_READY;
	/* the load's reference is held until the replay is done: leaving
	 * sessions may empty and drop the room on the way */
	if (r->exists)
		muc_room_loaded(w, r);
	muc_replay(w, r);
	muc_room_unref(r);
}

static void muc_load(struct worker *w, struct muc_room *r)
{
	char name[JID_PART_MAX + 1];
	const char *params[4] = { r->service, muc_room_name(r, name, sizeof(name)),
				  muc_boot(w), muc_node_self(w) };
	r->state = MUC_LOADING;
	if (muc_config_default(&r->cf, w->cfg) < 0 || w->db == NULL ||
	    db_query(w->db, muc_load_room_sql, 2, params, NULL, NULL, 0,
		     muc_loaded_room, r) < 0 ||
	    db_query(w->db, muc_load_affs_sql, 2, params, NULL, NULL, 0,
		     muc_loaded_affs, r) < 0 ||
	    db_query(w->db, muc_cluster_on(w) ? muc_load_occ_cluster_sql :
		     muc_load_occ_sql, 4, params, NULL, NULL, 0,
		     muc_loaded_occ, r) < 0) {
		/* the answers that were queued still come: r stays until
		 * then, out of the table */
		log_warn("muc %s: database unavailable", r->jid);
		muc_fail_pending(w, r);
		db_cancel(w->db, r);
		muc_unlink(r);
		return;
	}
	r->refs++;
}

/* ---- creating a room ---------------------------------------------------- */

/* The row and its creator's owner affiliation, unless the service has
 * muc.max_rooms or the creator muc.max_rooms_per_account (0: none). */
static const char muc_create_sql[] =
	"WITH n AS (SELECT (SELECT count(*) FROM muc_rooms WHERE service = $1) "
	" AS rooms, (SELECT count(*) FROM muc_affiliations "
	" WHERE jid = $7 AND affiliation = 'owner') AS owned), "
	"r AS (INSERT INTO muc_rooms (service, name, config, public, "
	" persistent, title, created_by, locked) "
	" SELECT $1, $2, $3, $4, $5, $6, $7, true FROM n "
	" WHERE n.rooms < $8 AND ($9 = 0 OR n.owned < $9) "
	" ON CONFLICT DO NOTHING RETURNING id, salt), "
	"a AS (INSERT INTO muc_affiliations (room_id, jid, affiliation) "
	" SELECT id, $7, 'owner' FROM r) "
	"SELECT r.id, r.salt, n.rooms >= $8 FROM n LEFT JOIN r ON true";

static void muc_created(void *ctx, const PGresult *res, const char *error)
{
	struct muc_room *r = ctx;
	struct worker *w = r->w;
	if (r->dead) {
		muc_room_unref(r);
		return;
	}
	muc_room_unref(r);      /* not dead: it stays */
	r->state = MUC_READY;
	if (res == NULL || PQntuples(res) == 0 || PQgetisnull(res, 0, 0)) {
		/* the creator's join is answered by muc_room_stanza: the
		 * room does not exist, and created_now says why (-3 the
		 * service is full, -1 the creator owns too many) */
		if (res == NULL)
			log_error("muc %s: not created: %s", r->jid, error);
		r->created_now = res == NULL ? -2 :
				 PQntuples(res) > 0 &&
				 strcmp(PQgetvalue(res, 0, 2), "t") == 0 ? -3 :
				 -1;
		muc_replay(w, r);
		return;
	}
	r->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	char *salt = strdup(PQgetvalue(res, 0, 1));
	if (salt != NULL) {
		free(r->salt);
		r->salt = salt;
	}
	r->exists = 1;
	r->created_now = 1;
	muc_replay(w, r);
}

void muc_db_create(struct worker *w, struct muc_room *r)
{
	char name[JID_PART_MAX + 1], max[16], per[16];
	const char *bare = NULL;
	struct buf cf;
	buf_init(&cf, 0);
	muc_config_to_text(&r->cf, &cf);
	buf_append(&cf, "", 1);
	char *creator_bare = strndup(r->creator, strcspn(r->creator, "/"));
	bare = creator_bare;
	snprintf(max, sizeof(max), "%u", w->cfg->muc_max_rooms);
	snprintf(per, sizeof(per), "%u", w->cfg->muc_max_rooms_per_account);
	const char *params[9] = {
		r->service, muc_room_name(r, name, sizeof(name)), buf_head(&cf),
		r->cf.public_list ? "t" : "f", r->cf.persistent ? "t" : "f",
		r->cf.name, bare, max, per,
	};
	r->state = MUC_CREATING;
	if (bare == NULL || w->db == NULL ||
	    db_query(w->db, muc_create_sql, 9, params, NULL, NULL, 0,
		     muc_created, r) < 0) {
		r->state = MUC_READY;
		r->created_now = -2;
	} else {
		r->refs++;
	}
	free(creator_bare);
	buf_free(&cf);
	if (r->state == MUC_READY)
		muc_replay(w, r);
}

/* ---- writing a room's changes ------------------------------------------- */

struct muc_write {
	char what[24];
	char room[1];
};

static void muc_written(void *ctx, const PGresult *res, const char *error)
{
	struct muc_write *m = ctx;
	if (res == NULL)
		log_error("muc %s: %s not written: %s", m->room, m->what,
			  error);
	free(m);
}

static void muc_write(struct worker *w, struct muc_room *r, const char *what,
		      const char *sql, int n, const char *const *params)
{
	size_t len = strlen(r->jid);
	struct muc_write *m = malloc(sizeof(*m) + len);
	if (m == NULL) {
		log_error("muc %s: %s not written: out of memory", r->jid,
			  what);
		return;
	}
	snprintf(m->what, sizeof(m->what), "%s", what);
	memcpy(m->room, r->jid, len + 1);
	if (w->db == NULL ||
	    db_query(w->db, sql, n, params, NULL, NULL, 0, muc_written, m) <
	    0) {
		log_error("muc %s: %s not written: database unavailable",
			  r->jid, what);
		free(m);
	}
}

static void muc_id_text(const struct muc_room *r, char *buf, size_t size)
{
	snprintf(buf, size, "%lld", r->id);
}

void muc_db_occupant_put(struct worker *w, struct muc_room *r,
			 const struct muc_occ *o, const struct muc_sess *s)
{
	char id[24];
	if (r->id == 0)
		return;
	muc_id_text(r, id, sizeof(id));
	const char *node = muc_node_of(w, s->jid, s->home);
	const char *params[7] = { id, s->jid, o->nick, muc_role_name(o->role),
				  s->presence, muc_boot(w), node };
	/* the run is that of the node holding the session: ours, or the
	 * one that node registered (muc_node_runs), so that its own
	 * start-up clean-up recognizes the row */
	if (strcmp(node, muc_node_self(w)) == 0)
		muc_write(w, r, "occupant", "INSERT INTO muc_occupants "
			  "(room_id, jid, nick, role, presence, boot, node) "
			  "VALUES ($1, $2, $3, $4, $5, $6, $7) "
			  "ON CONFLICT (room_id, jid) DO UPDATE SET nick = $3, "
			  "role = $4, presence = $5, boot = $6, node = $7", 7,
			  params);
	else {
		/* 0: that node's run is not registered yet (it is starting):
		 * the row is then judged by membership and the session
		 * table only, never as "a run that is over" */
		params[5] = node;
		muc_write(w, r, "occupant", "INSERT INTO muc_occupants "
			  "(room_id, jid, nick, role, presence, boot, node) "
			  "VALUES ($1, $2, $3, $4, $5, COALESCE((SELECT boot "
			  "FROM muc_node_runs WHERE node = $6), 0), $6) "
			  "ON CONFLICT (room_id, jid) DO UPDATE SET nick = $3, "
			  "role = $4, presence = $5, boot = EXCLUDED.boot, "
			  "node = $6", 6, params);
	}
}

void muc_db_occupant_del(struct worker *w, struct muc_room *r,
			 const char *jid)
{
	char id[24];
	if (r->id == 0)
		return;
	muc_id_text(r, id, sizeof(id));
	const char *params[2] = { id, jid };
	muc_write(w, r, "occupant's exit", "DELETE FROM muc_occupants WHERE "
		  "room_id = $1 AND jid = $2", 2, params);
}

void muc_db_affil_put(struct worker *w, struct muc_room *r,
		      const struct muc_affil *a)
{
	char id[24];
	if (r->id == 0)
		return;
	muc_id_text(r, id, sizeof(id));
	const char *params[5] = { id, a->jid, muc_aff_name(a->aff), a->nick,
				  a->reason };
	muc_write(w, r, "affiliation", "INSERT INTO muc_affiliations (room_id, "
		  "jid, affiliation, nick, reason) VALUES ($1, $2, $3, $4, $5) "
		  "ON CONFLICT (room_id, jid) DO UPDATE SET affiliation = $3, "
		  "nick = $4, reason = $5", 5, params);
}

void muc_db_affil_del(struct worker *w, struct muc_room *r, const char *jid)
{
	char id[24];
	if (r->id == 0)
		return;
	muc_id_text(r, id, sizeof(id));
	const char *params[2] = { id, jid };
	muc_write(w, r, "affiliation removal", "DELETE FROM muc_affiliations "
		  "WHERE room_id = $1 AND jid = $2", 2, params);
}

void muc_db_config(struct worker *w, struct muc_room *r)
{
	char id[24];
	struct buf cf;
	if (r->id == 0)
		return;
	muc_id_text(r, id, sizeof(id));
	buf_init(&cf, 0);
	muc_config_to_text(&r->cf, &cf);
	buf_append(&cf, "", 1);
	const char *params[6] = { id, buf_head(&cf),
				  r->cf.public_list ? "t" : "f",
				  r->cf.persistent ? "t" : "f", r->cf.name,
				  r->locked ? "t" : "f" };
	muc_write(w, r, "configuration", "UPDATE muc_rooms SET config = $2, "
		  "public = $3, persistent = $4, title = $5, locked = $6 "
		  "WHERE id = $1", 6, params);
	buf_free(&cf);
}

void muc_db_subject(struct worker *w, struct muc_room *r)
{
	char id[24];
	if (r->id == 0)
		return;
	muc_id_text(r, id, sizeof(id));
	const char *params[3] = { id, r->subject, r->subject_by };
	muc_write(w, r, "subject", "UPDATE muc_rooms SET subject = $2, "
		  "subject_by = $3 WHERE id = $1", 3, params);
}

void muc_db_room_del(struct worker *w, struct muc_room *r)
{
	char id[24];
	muc_id_text(r, id, sizeof(id));
	const char *params[1] = { id };
	muc_write(w, r, "room removal", "DELETE FROM muc_rooms WHERE id = $1",
		  1, params);
}

/* ---- stanzas to a room -------------------------------------------------- */

static void muc_hold(struct worker *w, struct muc_room *r,
		     const struct xml_node *st)
{
	struct buf text;
	if (r->npend >= MUC_PENDING_MAX) {
		struct buf out;
		buf_init(&out, 0);
		if (stanza_may_bounce(st)) {
			stanza_error_xml(&out, st, NULL, "wait",
					 "resource-constraint",
					 "the room is being read");
			muc_route_text(w, buf_head(&out), buf_used(&out));
		}
		buf_free(&out);
		return;
	}
	struct muc_pending *p = realloc(r->pend, (r->npend + 1) * sizeof(*p));
	if (p == NULL)
		return;
	r->pend = p;
	buf_init(&text, 0);
	if (xml_serialize(&text, st, NS_CLIENT) < 0) {
		buf_free(&text);
		return;
	}
	p[r->npend].len = buf_used(&text);
	buf_append(&text, "", 1);
	p[r->npend++].text = text.data;
}

void muc_create(struct worker *w, struct muc_room *r,
		const struct xml_node *st)
{
	muc_hold(w, r, st);
	muc_config_free(&r->cf);
	if (muc_config_default(&r->cf, w->cfg) < 0) {
		r->created_now = -2;
		muc_replay(w, r);
		return;
	}
	muc_db_create(w, r);
}

void muc_room_forget(struct worker *w, struct muc_room *r)
{
	(void)w;
	if (!r->exists && r->state == MUC_READY && r->npend == 0 && !r->busy &&
	    r->nocc == 0)
		muc_unlink(r);
}

/* A stanza for a room this worker owns. */
static void muc_owned(struct worker *w, struct arena *a, struct xml_node *st,
		      const struct jid *to, const char *room)
{
	struct muc_room *r = muc_find(room);
	if (r == NULL) {
		if ((r = muc_room_new(w, room)) == NULL) {
			log_error("muc %s: out of memory", room);
			return;
		}
		muc_hold(w, r, st);
		muc_load(w, r);
		return;
	}
	/* a room busy with a stanza gets this one after it: a write may
	 * end a slow reader's stream on the way, whose unavailable comes
	 * back here while the room walks its occupants */
	if (r->state != MUC_READY || r->busy > 0 || muc_depth > 0) {
		muc_hold(w, r, st);
		if (r->state == MUC_READY)
			muc_later_add(r);
		return;
	}
	r->refs++;
	r->busy++;
	muc_depth++;
	muc_room_stanza(w, r, a, st, to);
	muc_depth--;
	r->busy--;
	muc_replay(w, r);
	muc_room_unref(r);
	muc_settle_later(w);
}

/* What waited for r, in order; r may go away on the way. */
/* The room settles: the sessions found gone leave, then what waited
 * for it is handled, in order, until nothing is left (each step may
 * add to the other).  Each runs with the room busy, so that a stanza
 * arriving meanwhile (nested: a write that ends a slow reader) waits. */
static void muc_replay(struct worker *w, struct muc_room *r)
{
	if (r->busy > 0 || muc_depth > 0) {
		/* the stanza being handled (this room's or another's)
		 * settles it after it */
		if (r->state == MUC_READY && (r->npend > 0 || r->ngone > 0))
			muc_later_add(r);
		return;
	}
	r->refs++;
	while (!r->dead) {
		if (r->ngone > 0) {
			r->busy++;
			muc_depth++;
			muc_room_leave_gone(w, r);
			muc_depth--;
			r->busy--;
			continue;
		}
		if (r->npend == 0 || r->state != MUC_READY)
			break;
		struct muc_pending *p = r->pend;
		unsigned n = r->npend;
		r->pend = NULL;
		r->npend = 0;
		for (unsigned i = 0; i < n; i++) {
			struct arena a;
			const char *error;
			struct jid to;
			arena_init(&a, 2048);
			struct xml_node *st = stanza_parse(&a, p[i].text,
							   p[i].len, &error);
			const char *t = st != NULL ? xml_attr(st, "to") : NULL;
			if (t != NULL && jid_parse(&a, t, &to, &error) == 0) {
				if (r->dead) {
					;   /* dropped with the room */
				} else if (r->state == MUC_READY) {
					r->busy++;
					muc_depth++;
					muc_room_stanza(w, r, &a, st, &to);
					muc_depth--;
					r->busy--;
				} else {
					muc_hold(w, r, st);
				}
			}
			arena_free(&a);
			free(p[i].text);
		}
		free(p);
	}
	if (r->dead && r->npend > 0) {
		/* the room went (destroyed, or left empty) with stanzas
		 * waiting: they are for the room of that name as it is now
		 * (a join creates it again, anything else is answered
		 * item-not-found), not dropped */
		struct muc_pending *p = r->pend;
		unsigned n = r->npend;
		r->pend = NULL;
		r->npend = 0;
		for (unsigned i = 0; i < n; i++) {
			struct arena a;
			const char *error, *t, *room;
			struct jid to;
			arena_init(&a, 2048);
			struct xml_node *st = stanza_parse(&a, p[i].text,
							   p[i].len, &error);
			if (st != NULL && (t = xml_attr(st, "to")) != NULL &&
			    jid_parse(&a, t, &to, &error) == 0 &&
			    (room = jid_bare(&a, &to)) != NULL)
				muc_owned(w, &a, st, &to, room);
			arena_free(&a);
			free(p[i].text);
		}
		free(p);
	}
	if (!r->dead)
		muc_room_forget(w, r);
	muc_room_unref(r);
}

/* Section 6: the service itself. */
static void muc_service_iq(struct worker *w, struct arena *a,
			   struct xml_node *st, const char *service);

void muc_bounce(struct worker *w, const struct xml_node *st,
		const char *type, const char *cond, const char *text)
{
	struct buf out;
	if (!stanza_may_bounce(st) || xml_attr(st, "from") == NULL)
		return;
	buf_init(&out, 0);
	stanza_error_xml(&out, st, NULL, type, cond, text);
	muc_route_text(w, buf_head(&out), buf_used(&out));
	buf_free(&out);
}

static void muc_service_stanza(struct worker *w, struct arena *a,
			       struct xml_node *st, const struct jid *to)
{
	const char *error;
	if (to->local == NULL) {
		if (strcmp(st->name, "iq") == 0 && to->resource == NULL)
			muc_service_iq(w, a, st, to->domain);
		else if (strcmp(st->name, "presence") != 0)
			muc_bounce(w, st, "cancel", "service-unavailable",
				   NULL);
		return;
	}
	/* room names are compared as prepared (case-folded) */
	const char *room = jid_bare(a, to);
	struct muc_where where;
	if (room == NULL)
		return;
	if (muc_where(w, room, &where) < 0) {
		/* a cluster without an owner for it now (starting, fenced,
		 * handing over): the sender tries again (RFC 6120 8.3.3.18:
		 * resource-constraint, type wait) */
		log_info("muc %s: no owner node now: refused", room);
		muc_bounce(w, st, "wait", "resource-constraint",
			   "the room is moving to another node: try again");
		return;
	}
	if (where.node == 0 && where.slot == w->slot) {
		muc_owned(w, a, st, to, room);
		return;
	}
	struct buf text;
	buf_init(&text, xml_out_cap(w->cfg->max_stanza_size));
	if (xml_serialize(&text, st, NS_CLIENT) < 0 ||
	    worker_send_node(w, where.slot, where.node, where.rslot,
			     IPC_FRAME_MUC, 0, 0, buf_head(&text),
			     buf_used(&text), &error) < 0) {
		log_info("muc %s: to w%u (node %u): refused", room,
			 where.slot, where.node);
		muc_bounce(w, st, "wait", "resource-constraint", NULL);
	}
	buf_free(&text);
}

/* ---- a stanza that overtook its sender's session ----------------------
 *
 * Another node's directory event announcing a session and that
 * session's first stanza travel on two NATS subjects, delivered by two
 * threads of our bridge: the stanza may come first (a client that enters
 * its rooms right after logging in on another node).  The room would take
 * the sender for gone.  Such a stanza waits here until the session is in
 * the table, at most MUC_EARLY_MS (then it is handled anyway), and so do
 * the sender's later ones, in order.  Looked at every tick (1 s). */
#define MUC_EARLY_MAX 256
#define MUC_EARLY_MS 3000

struct muc_early {
	char *text;
	size_t len;
	char *from;
	int64_t since;
};
static struct muc_early muc_early[MUC_EARLY_MAX];
static unsigned muc_nearly;

static void muc_frame_stanza(struct worker *w, const char *p, size_t len,
			     unsigned from_node, int retry);

/* 1: the stanza from another node must wait (its sender unknown yet, or
 * an earlier one of the same sender waits) and was kept. */
static int muc_early_keep(struct worker *w, struct arena *a,
			  const struct xml_node *st, const char *p, size_t len)
{
	const char *from = xml_attr(st, "from");
	struct session_info s;
	struct jid j;
	const char *error;
	int queued = 0;
	if (from == NULL || jid_parse(a, from, &j, &error) < 0 ||
	    j.resource == NULL || !stream_hosted(w, j.domain))
		return 0;
	for (unsigned i = 0; i < muc_nearly && !queued; i++)
		queued = strcmp(muc_early[i].from, from) == 0;
	if ((!queued && shm_session_get(w->shm->sessions, from, &s) == 1) ||
	    muc_nearly == MUC_EARLY_MAX)
		return 0;
	struct muc_early *e = &muc_early[muc_nearly];
	if ((e->text = malloc(len)) == NULL ||
	    (e->from = strdup(from)) == NULL) {
		free(e->text);
		return 0;
	}
	memcpy(e->text, p, len);
	e->len = len;
	e->since = time_now_ms();
	muc_nearly++;
	return 1;
}

/* Each tick: what may go now goes, in arrival order. */
static void muc_early_run(struct worker *w, int64_t now_ms)
{
	unsigned kept = 0;
	struct session_info s;
	for (unsigned i = 0; i < muc_nearly; i++) {
		struct muc_early e = muc_early[i];
		/* a sender whose earlier stanza still waits keeps waiting */
		int wait = 0;
		for (unsigned k = 0; k < kept && !wait; k++)
			wait = strcmp(muc_early[k].from, e.from) == 0;
		if (!wait && now_ms - e.since < MUC_EARLY_MS &&
		    shm_session_get(w->shm->sessions, e.from, &s) != 1)
			wait = 1;
		if (wait) {
			muc_early[kept++] = e;
			continue;
		}
		muc_frame_stanza(w, e.text, e.len, 0, 1);
		free(e.text);
		free(e.from);
	}
	muc_nearly = kept;
}

/* An IPC_FRAME_MUC: a stanza for a room of this worker (from_node: the
 * node it came from, 0 for ours). */
static void muc_frame_stanza(struct worker *w, const char *p, size_t len,
			     unsigned from_node, int retry)
{
	struct arena a;
	const char *error;
	struct jid to;
	arena_init(&a, 2048);
	struct xml_node *st = stanza_parse(&a, p, len, &error);
	const char *t = st != NULL ? xml_attr(st, "to") : NULL;
	const char *room;
	if (t == NULL || jid_parse(&a, t, &to, &error) < 0 ||
	    to.local == NULL || (room = jid_bare(&a, &to)) == NULL)
		log_error("muc: stanza frame unreadable");
	else if (muc_cluster_on(w) && from_node != 0 && !retry &&
		 muc_where_here(w, room) && muc_early_keep(w, &a, st, p, len))
		;       /* kept until its sender is known */
	else if (muc_cluster_on(w) && !muc_where_here(w, room))
		/* sent under another member list than ours, or we lost our
		 * lease since: never passed on again (no loops between
		 * nodes that disagree for a moment) */
		muc_bounce(w, st, "wait", "resource-constraint",
			   "the room is moving to another node: try again");
	else
		muc_owned(w, &a, st, &to, room);
	arena_free(&a);
}

/* IPC_FRAME_MUC_GONE: "room\0jid". */
static void muc_frame_gone(struct worker *w, const char *p, size_t len)
{
	char room[IPC_JID_MAX + 1], jid[IPC_JID_MAX + 1];
	const char *z = memchr(p, '\0', len);
	if (z == NULL || (size_t)(z - p) > IPC_JID_MAX ||
	    len - (size_t)(z - p) - 1 > IPC_JID_MAX)
		return;
	memcpy(room, p, (size_t)(z - p));
	room[z - p] = '\0';
	memcpy(jid, z + 1, len - (size_t)(z - p) - 1);
	jid[len - (size_t)(z - p) - 1] = '\0';
	if (muc_cluster_on(w) && !muc_where_here(w, room))
		return;         /* not ours now: its owner reads it anyway */
	struct muc_room *r = muc_find(room);
	if (r == NULL) {
		/* not in memory (this worker was respawned: it died with
		 * the occupant's): read it now, so that the others hear of
		 * the exit without waiting for the next stanza (the load
		 * finds the session gone) */
		if ((r = muc_room_new(w, room)) != NULL)
			muc_load(w, r);
		return;
	}
	if (r->state == MUC_READY) {
		/* a session of another node, swept with that node (it left
		 * the cluster or restarted): 333, as muc_loaded_node */
		unsigned si;
		struct muc_occ *o = muc_room_by_jid(r, jid, &si);
		struct session_info alive;
		if (muc_cluster_on(w) && o != NULL && !o->remote &&
		    shm_session_get(w->shm->sessions, jid, &alive) == 1 &&
		    alive.node == o->sess[si].node)
			return;     /* a stale row's nudge, the session lives */
		if (o != NULL && o->remote)
			return;     /* another server's user: no node of ours
				       held it (its row named the owner that
				       wrote it, muc_loaded_occ) */
		muc_room_gone(w, r, jid, o == NULL || o->sess[si].node == 0);
		muc_replay(w, r);
	}
}

static int muc_worker_frame(struct worker *w,
			    const struct ipc_frame_header *hdr,
			    const char *payload, size_t len)
{
	switch (hdr->type) {
	case IPC_FRAME_MUC:
		muc_frame_stanza(w, payload, len, hdr->node, 0);
		return 1;
	case IPC_FRAME_MUC_FANOUT:
		muc_frame_fanout(w, payload, len);
		return 1;
	case IPC_FRAME_MUC_GONE:
		muc_frame_gone(w, payload, len);
		return 1;
	default:
		return 0;
	}
}

/* ---- a swept session ---------------------------------------------------- */

static const char muc_swept_sql[] =
	"SELECT r.name || '@' || r.service FROM muc_occupants o "
	"JOIN muc_rooms r ON r.id = o.room_id WHERE o.jid = $1 "
	"AND (o.node <> $3 OR o.boot = $2)";

struct muc_swept {
	struct worker *w;
	char jid[1];
};

/* An occupant's exit ("room\0jid") to its room's owner, wherever that
 * is; a room without an owner now learns it when its next owner reads
 * it (the session is no longer in the table). */
static void muc_send_gone(struct worker *w, const char *room,
			  const char *p, size_t len, const char **error_r)
{
	struct muc_where where;
	if (muc_where(w, room, &where) < 0)
		return;
	if (where.node == 0 && where.slot == w->slot)
		muc_frame_gone(w, p, len);
	else if (queue_send_node(w->q, where.slot, where.node, where.rslot,
				 IPC_FRAME_MUC_GONE, 0, 0, p, len,
				 error_r) < 0)
		log_warn("muc %s: an exit not sent to w%u (node %u): %s",
			 room, where.slot, where.node, *error_r);
}

static void muc_swept_rooms(void *ctx, const PGresult *res,
			    const char *error)
{
	struct muc_swept *s = ctx;
	struct worker *w = s->w;
	const char *qerr;
	if (res == NULL) {
		log_error("muc: rooms of %s (gone with its worker) not "
			  "read: %s", s->jid, error);
		free(s);
		return;
	}
	size_t jl = strlen(s->jid);
	for (int i = 0; i < PQntuples(res); i++) {
		const char *room = PQgetvalue(res, i, 0);
		size_t rl = strlen(room);
		struct buf p;
		buf_init(&p, 0);
		buf_append(&p, room, rl + 1);
		buf_append(&p, s->jid, jl);
		muc_send_gone(w, room, buf_head(&p), buf_used(&p), &qerr);
		buf_free(&p);
	}
	free(s);
}

static void muc_session_swept(struct worker *w, const char *jid)
{
	if (w->cfg->muc_service[0] == '\0' || w->db == NULL)
		return;
	size_t n = strlen(jid);
	struct muc_swept *s = malloc(sizeof(*s) + n);
	if (s == NULL)
		return;
	s->w = w;
	memcpy(s->jid, jid, n + 1);
	const char *params[3] = { jid, muc_boot(w), muc_node_self(w) };
	if (db_query(w->db, muc_swept_sql, 3, params, NULL, NULL, 0,
		     muc_swept_rooms, s) < 0) {
		log_error("muc: rooms of %s (gone with its worker) not read: "
			  "database unavailable", jid);
		free(s);
	}
}

/* ---- the service's IQs (disco, section 6) ------------------------------ */

struct muc_items {
	struct iq_pending *p;
};

static const char muc_items_sql[] =
	"SELECT name, title FROM muc_rooms WHERE service = $1 AND public "
	"ORDER BY name LIMIT 1000";

static void muc_items_result(void *ctx, const PGresult *res,
			     const char *error)
{
	struct iq_pending *p = ctx;
	if (res == NULL) {
		log_error("muc %s: room list not read: %s", p->to, error);
		iq_reply_error(&p, "wait", "internal-server-error");
		return;
	}
	struct buf out;
	buf_init(&out, 0);
	buf_appendf(&out, "<query xmlns='" NS_DISCO_ITEMS "'>");
	for (int i = 0; i < PQntuples(res); i++) {
		const char *name = PQgetvalue(res, i, 0);
		const char *title = PQgetvalue(res, i, 1);
		buf_appendf(&out, "<item jid='");
		xml_escape(&out, name, strlen(name), 1);
		buf_append(&out, "@", 1);
		xml_escape(&out, p->to, strlen(p->to), 1);
		buf_appendf(&out, "' name='");
		if (title[0] == '\0')
			xml_escape(&out, name, strlen(name), 1);
		else
			xml_escape(&out, title, strlen(title), 1);
		buf_appendf(&out, "'/>");
	}
	buf_appendf(&out, "</query>");
	buf_append(&out, "", 1);
	iq_reply_result(&p, buf_head(&out));
	buf_free(&out);
}

static void muc_service_iq(struct worker *w, struct arena *a,
			   struct xml_node *st, const char *service)
{
	const char *type = xml_attr(st, "type");
	struct xml_node *q = xml_first_element(st);
	(void)a;
	if (type == NULL || (strcmp(type, "get") != 0 &&
			     strcmp(type, "set") != 0))
		return;         /* results and errors: nothing asked */
	if (strcmp(type, "get") == 0 && q != NULL &&
	    xml_is(q, NS_DISCO_INFO, "query") && xml_attr(q, "node") == NULL) {
		struct iq_pending *p = iq_pending_new(w, st);
		if (p != NULL)
			iq_reply_result(&p, "<query xmlns='" NS_DISCO_INFO "'>"
				"<identity category='conference' type='text' "
				"name='Chatrooms'/>"
				"<feature var='" NS_DISCO_INFO "'/>"
				"<feature var='" NS_DISCO_ITEMS "'/>"
				"<feature var='" NS_MUC "'/>"
				"<feature var='urn:xmpp:ping'/>"
				"<feature var='urn:xmpp:occupant-id:0'/>"
				"</query>");
		return;
	}
	if (strcmp(type, "get") == 0 && q != NULL &&
	    xml_is(q, NS_DISCO_ITEMS, "query") && xml_attr(q, "node") == NULL) {
		struct iq_pending *p = iq_pending_new(w, st);
		const char *params[1] = { service };
		if (p == NULL)
			return;
		if (w->db == NULL ||
		    db_query(w->db, muc_items_sql, 1, params, NULL, NULL, 0,
			     muc_items_result, p) < 0)
			iq_reply_error(&p, "wait", "internal-server-error");
		return;
	}
	if (strcmp(type, "get") == 0 && q != NULL &&
	    xml_is(q, "urn:xmpp:ping", "ping")) {
		struct iq_pending *p = iq_pending_new(w, st);
		if (p != NULL)
			iq_reply_result(&p, NULL);
		return;
	}
	muc_bounce(w, st, "cancel", "service-unavailable", NULL);
}

/* ---- start-up ----------------------------------------------------------- */

/* Worker 0, once: this node's run is registered (rooms owned elsewhere
 * write it into the rows of our sessions), and the occupants of this
 * node's earlier runs are gone (their sessions ended with it), and so
 * are the temporary rooms they kept.  Other nodes' occupants stay:
 * their sessions live on.  Without a cluster the node is '' and this is
 * "every earlier run"; in a cluster only the temporary rooms this
 * clean-up emptied go (a room another node is creating has no
 * occupant row yet). */
static const char muc_cleanup_sql[] =
	"WITH run AS (INSERT INTO muc_node_runs (node, boot) VALUES ($2, $1) "
	" ON CONFLICT (node) DO UPDATE SET boot = $1), "
	"o AS (DELETE FROM muc_occupants WHERE node = $2 AND boot <> $1 "
	" RETURNING room_id) "
	"DELETE FROM muc_rooms r WHERE NOT persistent AND NOT EXISTS "
	"(SELECT 1 FROM muc_occupants o WHERE o.room_id = r.id AND "
	" NOT (o.node = $2 AND o.boot <> $1)) "
	"AND ($2 = '' OR r.id IN (SELECT room_id FROM o))";
/* A cluster: the run is registered and nothing deleted.  The occupants
 * of our earlier runs are in rooms whose other occupants are alive: the
 * rooms' owners remove them so that those see them leave (the other
 * nodes' bridges sweep our old run's sessions, and muc_check_orphans
 * catches what that missed). */
static const char muc_register_sql[] =
	"INSERT INTO muc_node_runs (node, boot) VALUES ($2, $1) "
	"ON CONFLICT (node) DO UPDATE SET boot = $1";

/* Rooms with occupants on nodes no longer members (the nodes that
 * left): their new owners read them at once, so that the others see
 * those occupants leave without waiting for the room's next stanza. */
static const char muc_orphans_sql[] =
	"SELECT DISTINCT r.name || '@' || r.service, o.jid "
	"FROM muc_occupants o JOIN muc_rooms r ON r.id = o.room_id "
	"LEFT JOIN muc_node_runs n ON n.node = o.node "
	"WHERE o.node <> ALL($1::text[]) OR "
	" (o.boot <> 0 AND o.boot IS DISTINCT FROM n.boot) "
	"LIMIT 10000";

/* ctx: NULL for the clean-up, non-NULL for a cluster's registration */
static void muc_cleaned(void *ctx, const PGresult *res, const char *error)
{
	if (res != NULL && ctx != NULL)
		return;         /* registered: nothing was removed */
	if (res == NULL)
		log_warn("muc: stale occupants not removed: %s", error);
	else if (strtol(PQcmdTuples((PGresult *)res), NULL, 10) > 0)
		log_info("muc: %s empty temporary rooms of an earlier run "
			 "removed", PQcmdTuples((PGresult *)res));
}

static int muc_cleanup_done;
static uint64_t muc_orphans_epoch;  /* the member list last looked at */
static int64_t muc_orphans_again;   /* a second look at it, then (0: none) */
#define MUC_ORPHANS_AGAIN_MS 5000   /* a restarted node registers its run
				       about when its new run joins the
				       list: what the first look missed */

static void muc_orphans(void *ctx, const PGresult *res, const char *error)
{
	struct worker *w = ctx;
	const char *qerr;
	if (res == NULL) {
		log_warn("muc: rooms of nodes that left not read: %s", error);
		muc_orphans_epoch = 0;      /* again next tick */
		return;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		const char *room = PQgetvalue(res, i, 0);
		const char *jid = PQgetvalue(res, i, 1);
		struct muc_where where;
		/* ours (this node's) only: every node does its own */
		if (muc_where(w, room, &where) < 0 || where.node != 0)
			continue;
		struct buf p;
		buf_init(&p, 0);
		buf_append(&p, room, strlen(room) + 1);
		buf_append(&p, jid, strlen(jid));
		muc_send_gone(w, room, buf_head(&p), buf_used(&p), &qerr);
		buf_free(&p);
	}
	if (PQntuples(res) > 0)
		log_info("muc: %d occupants of nodes that left: their rooms "
			 "told", PQntuples(res));
}

/* Worker 0: when the member list changed (and once more a little
 * later), the rooms we own with occupants of a node that left or of a
 * run that is over. */
static void muc_check_orphans(struct worker *w, int64_t now_ms)
{
	uint64_t epoch;
	char list[IPC_MAX_NODES * IPC_NODE_NAME + 4];
	muc_members(w, &epoch);
	int again = muc_orphans_again != 0 && now_ms >= muc_orphans_again;
	if (epoch == 0 || (epoch == muc_orphans_epoch && !again) ||
	    muc_members_array(w, list, sizeof(list)) < 0)
		return;
	const char *params[1] = { list };
	if (db_query(w->db, muc_orphans_sql, 1, params, NULL, NULL, 0,
		     muc_orphans, w) < 0)
		return;
	muc_orphans_again = again ? 0 : now_ms + MUC_ORPHANS_AGAIN_MS;
	muc_orphans_epoch = epoch;
}

/* Rooms read and left empty (persistent ones; temporary ones went when
 * emptied) are forgotten after MUC_IDLE_MS: a worker's memory holds the
 * rooms in use, not every room ever touched.  The next stanza reads it
 * again. */
#define MUC_IDLE_MS (5 * 60 * 1000)
static int64_t muc_next_sweep;

static void muc_sweep_idle(int64_t now_ms)
{
	unsigned n = 0;
	for (unsigned h = 0; h < MUC_TABLE_SIZE; h++) {
		struct muc_room *r = muc_table[h], *next;
		for (; r != NULL; r = next) {
			next = r->next;
			if (r->state != MUC_READY || r->nocc > 0 ||
			    r->npend > 0 || r->refs > 0)
				r->idle_since = 0;
			else if (r->idle_since == 0)
				r->idle_since = now_ms;
			else if (now_ms - r->idle_since >= MUC_IDLE_MS) {
				muc_unlink(r);
				n++;
			}
		}
	}
	if (n > 0)
		log_debug("muc: %u idle rooms forgotten, %u in memory", n,
			  muc_nrooms);
}

/* A new member list may have moved rooms this worker holds to another
 * node: they are forgotten (everything of a room is in PostgreSQL), so
 * that if one comes back it is read again, not served from a memory
 * that missed what its other owner did.  All of them go when we lost
 * our lease (another node may take them over meanwhile) or missed a
 * list (an epoch skipped: a room may have been elsewhere in between).
 * A room busy now (loading, stanzas waiting) is looked at again next
 * tick. */
static uint64_t muc_moved_epoch;

static void muc_forget_moved(struct worker *w, int64_t now_ms)
{
	uint64_t epoch;
	unsigned n = 0, busy = 0;
	muc_members(w, &epoch);
	int fenced = !shm_cluster_owner_ok(&w->shm->hdr->cluster, now_ms,
					   w->cfg->cluster_lease_time);
	if (epoch == muc_moved_epoch && (!fenced || muc_nrooms == 0))
		return;
	int all = fenced || (muc_moved_epoch != 0 &&
			     epoch != muc_moved_epoch + 1);
	for (unsigned h = 0; h < MUC_TABLE_SIZE; h++) {
		struct muc_room *r = muc_table[h], *next;
		for (; r != NULL; r = next) {
			next = r->next;
			if (!all && muc_where_here(w, r->jid))
				continue;
			if (r->state != MUC_READY || r->npend > 0 ||
			    r->refs > 0) {
				busy++;
				continue;
			}
			muc_unlink(r);
			n++;
		}
	}
	if (n > 0)
		log_info("muc: %u rooms forgotten (members epoch %llu%s)", n,
			 (unsigned long long)epoch, fenced ?
			 ", our lease lapsed" : "");
	if (busy == 0)
		muc_moved_epoch = epoch;
}

static void muc_tick(struct worker *w, int64_t now_ms)
{
	if (muc_cluster_on(w)) {
		muc_early_run(w, now_ms);
		muc_forget_moved(w, now_ms);
	}
	if (now_ms >= muc_next_sweep) {
		muc_next_sweep = now_ms + 60000;
		muc_sweep_idle(now_ms);
	}
	if (w->slot != 0 || w->db == NULL || !db_is_up(w->db) ||
	    w->cfg->muc_service[0] == '\0')
		return;
	if (muc_cleanup_done) {
		if (muc_cluster_on(w))
			muc_check_orphans(w, now_ms);
		return;
	}
	/* A respawned worker 0 does this again: the boot is the same,
	 * only rows of another run go. */
	const char *params[2] = { muc_boot(w), muc_node_self(w) };
	if (db_query(w->db, muc_cluster_on(w) ? muc_register_sql :
		     muc_cleanup_sql, 2, params, NULL, NULL, 0,
		     muc_cleaned, muc_cluster_on(w) ? w : NULL) == 0)
		muc_cleanup_done = 1;
}

/* ---- the extension (ext.h) --------------------------------------------- */

static const char *const muc_config_keys[] = {
	"muc.service", "muc.max_rooms", "muc.max_occupants",
	"muc.max_rooms_per_account", "muc.create", "muc.history_default",
	"muc.history_max", "muc.messages_per_minute",
	"muc.max_subject_bytes", "muc.max_nick_bytes",
	"muc.max_presence_bytes", "muc.max_affiliations",
	"muc.archive_retention_days", NULL,
};
static const char *const muc_schema[] = { "018-muc.sql",
					  "019-muc-archive.sql",
					  "020-muc-node.sql", NULL };

const struct ext muc_ext = {
	.name = "muc",
	.config_keys = muc_config_keys,
	.schema = muc_schema,
	.service_serves = muc_serves_domain,
	.service_stanza = muc_service_stanza,
	.domain_items = muc_domain_items,
	.session_swept = muc_session_swept,
	.worker_frame = muc_worker_frame,
	.tick = muc_tick,
};

/*
 * offline.c - XEP-0160 offline messages: a chat or normal message for an
 * account with no available resource is stored in PostgreSQL (up to
 * im.offline_quota per account) and delivered with a XEP-0203 <delay/>
 * after the account's next initial presence with non-negative priority,
 * oldest first, then removed.  Delivery is paced: a batch of rows at a
 * time, stopping once the connection's pending output passes half of
 * c2s.max_output_bytes; the next batch is fetched when that output has
 * drained (conn_flush -> the output_drained hook), so a backlog larger than the
 * output bound arrives whole in one login instead of closing it.  A row
 * is removed only once its bytes were written to the socket (exact ids),
 * so a crash in between delivers twice rather than never; a row taken
 * back unwritten from a slow reader (conn.c) stays stored, in its place,
 * instead of being stored again.
 * Stored rows are read by store_read_stanza() (store.h); a row that does
 * not read back is logged with its id at error level and moved to
 * offline_unreadable for the operator, never deleted unread.
 * A message can be stored after its account's session read the
 * storage: the decision to store was taken when no available resource
 * was in the session table, and meanwhile the account logged in -- on
 * another worker (the INSERT commits after the new session's first
 * fetch) or, in a cluster, on another node, which this node's table
 * shows only a directory scan later (0.1-0.25 s, cluster/
 * bridge_route.c).  The row would wait for the next login.  So the
 * storing side looks again once the row is committed (offline_stored):
 * the account's best available resource with priority >= 0 in the
 * shared session table (local or another node's) gets a nudge
 * (IPC_FRAME_OFFLINE_NUDGE) and reads the storage again, rows after
 * those already handed out (a fetch in flight is followed by one
 * more).  One shared-memory lookup per stored message; nothing on the
 * login path.  In a cluster an account with no such resource at
 * commit time is watched for im.offline_watch (a bounded list per
 * worker, im.offline_watch_max; looked up again every tick) for a
 * session the directory shows late; on a single node the table is
 * right at once, so no watch.  Past the bound, or a directory later
 * than the watch, the message waits for the next login, as before.
 * Failure policy: a message that cannot be stored is answered with an
 * error to its sender (service-unavailable when the account is unknown or
 * full, internal-server-error/wait when the database is unavailable,
 * resource-constraint/wait when too much already waits for it:
 * db.max_queue_bytes).
 */
#include "worker.h"
#include "ext.h"
#include "../db/db.h"
#include "jid.h"
#include "log.h"
#include "server.h"
#include "session.h"
#include "stanza.h"
#include "store.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct offline_job {
	struct worker *w;
	char *user;             /* "user\0domain" (jid_split_account) */
	const char *domain;     /* points into user's buffer */
	char *text;             /* the message, serialized */
	uint32_t conn_id, gen;  /* delivery: the session */
	/* a frame from another node being stored: its sender keeps it
	 * until the row is written (worker/settle.h) */
	struct settle_hold hold;
};

static void offline_job_free(struct offline_job *j)
{
	if (j != NULL) {
		settle_release(&j->w->settle, &j->hold);
		free(j->user);
		free(j->text);
		free(j);
	}
}

static struct offline_job *offline_job_new(struct worker *w, const char *bare)
{
	struct offline_job *j = calloc(1, sizeof(*j));
	const char *domain;
	if (j == NULL || (j->user = jid_split_account(bare, &domain)) == NULL) {
		free(j);
		return NULL;
	}
	j->w = w;
	j->domain = domain;
	return j;
}

/* Answer the stored copy's sender with an error. */
static void offline_bounce(struct worker *w, const char *text,
			   const char *type, const char *cond)
{
	struct arena a;
	struct buf out;
	const char *error;
	arena_init(&a, 1024);
	buf_init(&out, 0);
	struct xml_node *st = stanza_parse(&a, text, strlen(text), &error);
	if (st != NULL && stanza_may_bounce(st) &&
	    stanza_error_xml(&out, st, NULL, type, cond, NULL) == 0 &&
	    buf_append(&out, "", 1) == 0 &&
	    (st = stanza_parse(&a, buf_head(&out), buf_used(&out) - 1,
			       &error)) != NULL)
		route_stanza(w, &a, st);
	buf_free(&out);
	arena_free(&a);
}

static const char offline_store_sql[] =
	"WITH a AS (SELECT xmppd_account_id($1, $2) AS acc), "
	"ins AS (INSERT INTO offline_messages (account_id, sender, stanza) "
	"SELECT acc, $3, $4 FROM a WHERE acc IS NOT NULL AND (SELECT count(*) "
	"FROM offline_messages o WHERE o.account_id = a.acc) < $5::int "
	"AND NOT EXISTS (SELECT 1 FROM blocklist b, a WHERE b.account_id = "
	"a.acc AND b.jid IN ($3, split_part($3, '/', 1), split_part("
	"split_part($3, '/', 1), '@', 2))) "
	"RETURNING id) SELECT (SELECT acc FROM a) IS NOT NULL, "
	"(SELECT id FROM ins)";

static void offline_late_look(struct worker *w, const char *user,
			      const char *domain);

static void offline_stored(void *ctx, const PGresult *res, const char *error)
{
	struct offline_job *j = ctx;
	if (res == NULL || PQntuples(res) != 1) {
		log_warn("offline message for %s@%s not stored: %s", j->user,
			 j->domain, error ? error : "no row");
		offline_bounce(j->w, j->text, "wait", "internal-server-error");
	} else if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		offline_bounce(j->w, j->text, "cancel", "service-unavailable");
	} else if (PQgetisnull(res, 0, 1)) {
		log_info("offline message for %s@%s refused (storage full or "
			 "sender blocked)", j->user, j->domain);
		offline_bounce(j->w, j->text, "cancel", "service-unavailable");
	} else {
		METRIC_INC(j->w->stats->offline_stored);
		offline_late_look(j->w, j->user, j->domain);
	}
	offline_job_free(j);
}

static void offline_store(struct worker *w, struct xml_node *st,
			  const char *bare)
{
	const char *type = xml_attr(st, "type");
	const char *from = xml_attr(st, "from");
	struct buf text;
	char quota[16];
	if (type != NULL && strcmp(type, "normal") != 0 &&
	    strcmp(type, "chat") != 0)
		return;         /* headline, groupchat, error: not stored */
	struct offline_job *j = offline_job_new(w, bare);
	buf_init(&text, xml_out_cap(w->cfg->max_stanza_size));
	if (j == NULL || from == NULL ||
	    xml_serialize(&text, st, NS_CLIENT) < 0 ||
	    buf_append(&text, "", 1) < 0) {
		buf_free(&text);
		offline_job_free(j);
		return;
	}
	j->text = text.data;
	if (w->cfg->offline_quota == 0) {
		offline_bounce(w, j->text, "cancel", "service-unavailable");
		offline_job_free(j);
		return;
	}
	snprintf(quota, sizeof(quota), "%u", w->cfg->offline_quota);
	const char *params[5] = { j->user, j->domain, from, j->text, quota };
	int r = w->db == NULL ? -1 : db_query(w->db, offline_store_sql, 5,
					      params, NULL, NULL, 0,
					      offline_stored, j);
	if (r == DB_QUERY_FULL) {
		/* RFC 6120 8.3.3.18: the server is busy; try again later */
		log_debug("offline message for %s@%s refused: database queue "
			 "full (db.max_queue_bytes)", j->user, j->domain);
		offline_bounce(w, j->text, "wait", "resource-constraint");
		offline_job_free(j);
	} else if (r < 0) {
		offline_bounce(w, j->text, "wait", "internal-server-error");
		offline_job_free(j);
	} else {
		settle_hold(&w->settle, &j->hold);  /* until offline_stored */
	}
}

/* ---- delivery ------------------------------------------------------- */

/* Rows per fetch; a fetch also stops at its byte budget (at least one
 * row), so a batch holds at most about half of c2s.max_output_bytes. */
#define OFFLINE_BATCH_ROWS 100

/* The oldest stored rows after $3, as many as fit in $4 bytes (the first
 * always), at most $5. */
static const char offline_fetch_sql[] =
	"SELECT id, stanza, to_char(stored_at AT TIME ZONE 'UTC', "
	"'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM (SELECT id, stanza, "
	"stored_at, sum(octet_length(stanza)) OVER (ORDER BY id) - "
	"octet_length(stanza) AS before FROM offline_messages "
	"WHERE account_id = xmppd_account_id($1, $2) AND id > $3::bigint "
	"ORDER BY id LIMIT $5::int) m WHERE before < $4::bigint ORDER BY id";
/* Exactly the rows written ($3) go -- never a range, since a row with a
 * lower id may commit after a fetch; the unreadable ones ($4, reasons
 * $5) move to offline_unreadable.  Rows neither written nor unreadable
 * (taken back, connection lost, out of memory) stay for the next
 * login. */
static const char offline_delete_sql[] =
	"WITH r AS (SELECT * FROM unnest($4::bigint[], $5::text[]) "
	"AS r(id, reason)), "
	"bad AS (DELETE FROM offline_messages o USING r WHERE o.account_id = "
	"xmppd_account_id($1, $2) AND o.id = r.id RETURNING o.id, "
	"o.account_id, o.sender, o.stanza, o.stored_at, r.reason), "
	"aside AS (INSERT INTO offline_unreadable (id, account_id, sender, "
	"stanza, stored_at, reason) SELECT * FROM bad) "
	"DELETE FROM offline_messages WHERE account_id = "
	"xmppd_account_id($1, $2) AND id = ANY($3::bigint[])";

/* What became of one stored row. */
enum offline_outcome {
	OFFLINE_SENT,
	OFFLINE_UNREADABLE,     /* the bytes are no stanza: move aside */
	OFFLINE_NOT_SENT,       /* out of memory: keep for the next login */
	OFFLINE_LATER,          /* out is too full for it now */
};

/* Half of c2s.max_output_bytes: past it a batch stops. */
static size_t offline_room(const struct conn *c)
{
	return (size_t)(c->w->cfg->c2s_max_output_bytes / 2);
}

/* Remember that row id ends at out_total (removed once written). */
static int offline_sent_add(struct conn *c, long long id)
{
	if (c->offline_nsent == c->offline_sent_cap) {
		unsigned cap = c->offline_sent_cap ? c->offline_sent_cap * 2 : 16;
		struct offline_sent *s = realloc(c->offline_sent,
						 cap * sizeof(*s));
		if (s == NULL)
			return -1;
		c->offline_sent = s;
		c->offline_sent_cap = cap;
	}
	struct offline_sent *s = &c->offline_sent[c->offline_nsent++];
	s->id = id;
	s->end = c->out_total;
	s->taken = 0;
	return 0;
}

/* The stored message with a XEP-0203 <delay/> added, if out has room:
 * out empty, or under half of c2s.max_output_bytes with it, so that it
 * never makes out overflow. */
static enum offline_outcome offline_send_one(struct conn *c, const char *text,
					     size_t len, const char *stamp,
					     long long id, const char **error_r)
{
	struct arena a;
	struct buf out;
	enum offline_outcome ret = OFFLINE_NOT_SENT;
	arena_init(&a, 2048);
	buf_init(&out, xml_out_cap(c->w->cfg->max_stanza_size));
	struct xml_node *st = store_read_stanza(&a, text, len, error_r);
	struct xml_node *d = st ? xml_add_child(&a, st, "urn:xmpp:delay",
						"delay") : NULL;
	size_t used = buf_used(&c->out);
	if (st == NULL) {
		ret = OFFLINE_UNREADABLE;
	} else if (d != NULL && xml_set_attr(&a, d, "from", c->domain) == 0 &&
		   xml_set_attr(&a, d, "stamp", stamp) == 0 &&
		   xml_add_text(&a, d, "Offline Storage", 15) == 0) {
		if (xml_serialize(&out, st, NS_CLIENT) != 0) {
			/* stored under a larger limit, or before one */
			*error_r = "larger written out than c2s.max_stanza_size "
				   "allows";
			ret = OFFLINE_UNREADABLE;
		} else if (used > 0 && used + buf_used(&out) > offline_room(c)) {
			ret = OFFLINE_LATER;
		} else if (offline_sent_add(c, id) == 0) {
			/* unwritten if the connection closes in conn_send */
			c->offline_sent[c->offline_nsent - 1].end = UINT64_MAX;
			conn_send(c, buf_head(&out), buf_used(&out));
			if (c->closed) {
				ret = OFFLINE_LATER;    /* offline_conn_gone */
			} else {
				c->offline_sent[c->offline_nsent - 1].end =
					c->out_total;
				ret = OFFLINE_SENT;
			}
		}
	}
	buf_free(&out);
	arena_free(&a);
	return ret;
}

static void offline_deleted(void *ctx, const PGresult *res, const char *error)
{
	struct offline_job *j = ctx;
	if (res == NULL)
		log_warn("offline messages of %s@%s not removed (they will "
			 "come again): %s", j->user, j->domain, error);
	offline_job_free(j);
}

/* Append s to a PostgreSQL array literal being built in out. */
static void offline_array_add(struct buf *out, const char *s, int quote)
{
	buf_append(out, buf_used(out) > 1 ? "," : "", buf_used(out) > 1);
	if (!quote) {
		buf_append(out, s, strlen(s));
		return;
	}
	buf_append(out, "\"", 1);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			buf_append(out, "\\", 1);
		buf_append(out, s, 1);
	}
	buf_append(out, "\"", 1);
}

static struct offline_job *offline_job_conn(struct conn *c)
{
	char bare[IPC_JID_MAX + 1];
	snprintf(bare, sizeof(bare), "%.*s", (int)strcspn(c->jid, "/"), c->jid);
	struct offline_job *j = offline_job_new(c->w, bare);
	if (j != NULL) {
		j->conn_id = c->id;
		j->gen = c->gen;
	}
	return j;
}

/* Remove the rows of c written whole (all of them but those taken back
 * when gone), and move the unreadable ones (bad, why: array literals
 * or NULL) aside. */
static void offline_remove(struct conn *c, int gone, const char *bad,
			   const char *why)
{
	uint64_t written = c->out_total - buf_used(&c->out);
	struct buf done;
	char id[24];
	unsigned k = 0, ndone = 0;
	buf_init(&done, 0);
	buf_append(&done, "{", 1);
	for (unsigned i = 0; i < c->offline_nsent; i++) {
		struct offline_sent *s = &c->offline_sent[i];
		if (!s->taken && s->end <= written) {
			snprintf(id, sizeof(id), "%lld", s->id);
			offline_array_add(&done, id, 0);
			ndone++;
		} else if (!gone && !s->taken) {
			c->offline_sent[k++] = *s;      /* not written yet */
		}
	}
	c->offline_nsent = k;
	struct offline_job *j = NULL;
	if ((ndone > 0 || bad != NULL) && buf_append(&done, "}", 2) == 0 &&
	    (j = offline_job_conn(c)) != NULL) {
		const char *params[5] = { j->user, j->domain, buf_head(&done),
					  bad ? bad : "{}", why ? why : "{}" };
		if (c->w->db == NULL ||
		    db_query(c->w->db, offline_delete_sql, 5, params, NULL,
			     NULL, 0, offline_deleted, j) < 0)
			offline_deleted(j, NULL, "database unavailable");
	} else if (ndone > 0) {
		log_warn("c%u: %u offline messages delivered but not removed "
			 "(out of memory): they will come again", c->id, ndone);
	}
	buf_free(&done);
}

static void offline_fetch(struct conn *c);

static void offline_fetched(void *ctx, const PGresult *res, const char *error)
{
	struct offline_job *j = ctx;
	struct conn *c = conn_lookup(j->w, j->conn_id, j->gen);
	int n = res ? PQntuples(res) : 0;
	if (res == NULL)
		log_warn("offline messages of %s@%s: %s", j->user, j->domain,
			 error);
	int again = 0;
	if (c != NULL) {
		c->offline_fetching = 0;
		again = c->offline_again;
		c->offline_again = 0;
	}
	if (c != NULL && n == 0 && res != NULL && c->offline_count > 0 &&
	    !again)
		log_info("c%u: %u offline messages delivered", c->id,
			 c->offline_count);
	if (c == NULL || !c->bound || c->want_close || c->out_shed || n == 0) {
		offline_job_free(j);
		/* a nudge came while this read was on its way: its row may
		 * have committed after the read began (rows here set
		 * offline_pending below, whose fetch comes later anyway) */
		if (again && res != NULL && c != NULL && c->bound &&
		    !c->closed && !c->want_close && !c->out_shed)
			offline_fetch(c);
		return;
	}
	/* Array literals: unreadable ids and their reasons. */
	struct buf bad, why;
	int sent = 0, nbad = 0, i;
	buf_init(&bad, 0);
	buf_init(&why, 0);
	buf_append(&bad, "{", 1);
	buf_append(&why, "{", 1);
	for (i = 0; i < n && !c->closed && !c->want_close && !c->out_shed;
	     i++) {
		const char *id = PQgetvalue(res, i, 0), *reason = NULL;
		enum offline_outcome o = offline_send_one(c,
			PQgetvalue(res, i, 1), (size_t)PQgetlength(res, i, 1),
			PQgetvalue(res, i, 2), strtoll(id, NULL, 10), &reason);
		if (o == OFFLINE_LATER)
			break;  /* this row and the rest: next batch */
		c->offline_after = strtoll(id, NULL, 10);
		switch (o) {
		case OFFLINE_SENT:
			sent++;
			break;
		case OFFLINE_UNREADABLE:
			log_error("offline message %s of %s@%s unreadable (%s): "
				  "moved to offline_unreadable", id, j->user,
				  j->domain, reason);
			offline_array_add(&bad, id, 0);
			offline_array_add(&why, reason, 1);
			nbad++;
			break;
		default:
			log_warn("offline message %s of %s@%s not sent (out of "
				 "memory): kept", id, j->user, j->domain);
			break;
		}
		if (buf_used(&c->out) >= offline_room(c))
			break;  /* the rest once out has drained */
	}
	c->offline_count += (unsigned)sent;
	METRIC_ADD(c->w->stats->offline_delivered, (uint64_t)sent);
	log_debug("c%u: %d offline messages in this batch", j->conn_id, sent);
	offline_job_free(j);
	if (!c->closed) {
		int ok = buf_append(&bad, "}", 2) == 0 &&
			 buf_append(&why, "}", 2) == 0;
		offline_remove(c, 0, ok && nbad > 0 ? buf_head(&bad) : NULL,
			       ok && nbad > 0 ? buf_head(&why) : NULL);
		/* more may be stored: fetch again once out has drained (an
		 * empty fetch ends it) */
		c->offline_pending = !c->want_close && !c->out_shed;
		conn_flush(c);
	}
	buf_free(&bad);
	buf_free(&why);
}

static void offline_fetch(struct conn *c)
{
	char after[24], budget[24], rows[16];
	size_t used = buf_used(&c->out), room = offline_room(c);
	struct offline_job *j = offline_job_conn(c);
	if (j == NULL)
		return;
	snprintf(after, sizeof(after), "%lld", c->offline_after);
	snprintf(budget, sizeof(budget), "%zu", used < room ? room - used : 1);
	snprintf(rows, sizeof(rows), "%d", OFFLINE_BATCH_ROWS);
	const char *params[5] = { j->user, j->domain, after, budget, rows };
	if (c->w->db == NULL ||
	    db_query(c->w->db, offline_fetch_sql, 5, params, NULL, NULL, 0,
		     offline_fetched, j) < 0) {
		log_warn("offline messages of %s@%s not fetched (database "
			 "unavailable or busy): they stay for the next login",
			 j->user, j->domain);
		offline_job_free(j);
	} else {
		c->offline_fetching = 1;
	}
}

static void offline_resume(struct conn *c)
{
	c->offline_pending = 0;
	if (c->closed || !c->bound || c->want_close || c->out_shed ||
	    c->offline_fetching)
		return;
	offline_remove(c, 0, NULL, NULL);
	offline_fetch(c);
}

static int offline_taken_back(struct conn *c, uint64_t end)
{
	for (unsigned i = 0; i < c->offline_nsent; i++) {
		if (c->offline_sent[i].end == end && !c->offline_sent[i].taken) {
			c->offline_sent[i].taken = 1;
			return 1;
		}
	}
	return 0;
}

static void offline_conn_gone(struct conn *c)
{
	c->offline_pending = 0;
	if (c->jid != NULL)
		offline_remove(c, 1, NULL, NULL);
	c->offline_nsent = 0;
}

static void offline_deliver(struct conn *c)
{
	/* one delivery at a time; a later one (available again after
	 * unavailable) starts after the rows already handed out */
	if (c->offline_fetching || c->offline_pending)
		return;
	offline_fetch(c);
}

/* ---- a row stored after its session read the storage ----------------
 * (see the header comment) */

/* A message for c's account was stored after c read the storage (or
 * may have been): read it again, unless c takes no stored messages now
 * (its next initial presence reads the storage).  A detached XEP-0198
 * session has no socket to write them to: the row waits for the
 * account's next initial presence. */
static void offline_nudged(struct conn *c)
{
	if (c->closed || c->want_close || c->out_shed || c->detached ||
	    !c->available || c->priority < 0)
		return;
	if (c->offline_fetching) {
		/* that read may have begun before the row committed */
		log_debug("c%u: nudged during a read of its offline storage: "
			  "one more read after it", c->id);
		c->offline_again = 1;
	} else {
		offline_deliver(c);     /* or the pending one reads it */
	}
}

/* The resource a bare-JID message would go to now: available, priority
 * >= 0, the highest (on a tie the newest: the login most likely to have
 * raced the store).  1 and *out set, or 0.  O(the account's sessions):
 * one hash chain of the shared table (shm_session_list). */
static int offline_target(struct worker *w, const char *bare,
			  struct session_info *out)
{
	struct session_info *heap;
	int n, best = -1;
	struct session_info *res = route_sessions(w, bare, &n, &heap);
	for (int i = 0; i < n; i++) {
		const struct session_info *s = &res[i];
		if (!s->available || s->priority < 0)
			continue;
		if (best < 0 || s->priority > res[best].priority ||
		    (s->priority == res[best].priority &&
		     s->since > res[best].since))
			best = i;
	}
	if (best >= 0)
		*out = res[best];
	route_sessions_done(heap);
	return best >= 0;
}

/* Tell session s (here, on another worker, or on another node through
 * the bridge) to read its storage again. */
static void offline_nudge(struct worker *w, const struct session_info *s)
{
	const char *error;
	METRIC_INC(w->stats->offline_nudges);
	log_debug("%s told to read its offline storage again%s", s->jid,
		  s->node ? " (on another node)" : "");
	if (s->node == 0 && s->slot == w->slot) {
		struct conn *c = conn_lookup(w, s->conn_id, s->gen);
		if (c != NULL && c->bound)
			offline_nudged(c);
		return;
	}
	if (worker_send_session(w, s, IPC_FRAME_OFFLINE_NUDGE, "", 0,
				&error) < 0)
		log_info("offline nudge for %s not sent (%s): the message "
			 "waits for its next login", s->jid, error);
}

/* Accounts watched in a cluster: the bare JID, a hash of it (compared
 * first) and until when.  One entry per account, in no order: a store
 * for a watched account moves its deadline; the tick walks them all.
 * Grown up to im.offline_watch_max. */
struct offline_watch {
	char *bare;
	uint32_t hash;
	int64_t until_ms;
};
static struct offline_watch *offline_watches;
static unsigned offline_nwatch, offline_watch_cap;
static int64_t offline_watch_logged_ms;

static void offline_watch_drop(unsigned i)
{
	free(offline_watches[i].bare);
	offline_watches[i] = offline_watches[--offline_nwatch];
}

/* Watch bare (or move its deadline).  Past im.offline_watch_max the
 * account is not watched: its message waits for the next login
 * (logged at most every few seconds). */
static void offline_watch_add(struct worker *w, const char *bare)
{
	const struct config *cfg = w->cfg;
	uint32_t h = fnv1a(bare);
	int64_t now = time_now_ms(), until = now + (int64_t)cfg->offline_watch;
	for (unsigned i = 0; i < offline_nwatch; i++) {
		if (offline_watches[i].hash == h &&
		    strcmp(offline_watches[i].bare, bare) == 0) {
			offline_watches[i].until_ms = until;
			return;
		}
	}
	if (offline_nwatch >= cfg->offline_watch_max) {
		if (now - offline_watch_logged_ms >= 5000) {
			offline_watch_logged_ms = now;
			log_info("offline message for %s: not watched for a late "
				 "session (%u accounts watched already, "
				 "im.offline_watch_max)", bare, offline_nwatch);
		}
		return;
	}
	if (offline_nwatch == offline_watch_cap) {
		unsigned cap = offline_watch_cap ? offline_watch_cap * 2 : 64;
		struct offline_watch *n = realloc(offline_watches,
						  cap * sizeof(*n));
		if (n == NULL)
			return;
		offline_watches = n;
		offline_watch_cap = cap;
	}
	char *copy = strdup(bare);
	if (copy == NULL)
		return;
	offline_watches[offline_nwatch++] = (struct offline_watch){
		.bare = copy, .hash = h, .until_ms = until,
	};
}

/* The row of user@domain is committed: if a resource that would have
 * read the storage at its initial presence is there now, it may have
 * read before the row committed -- nudge it (a nudge too many costs a
 * query that finds nothing).  Else, in a cluster only, watch the
 * account: another node's session may not be in our table yet.  On a
 * single node the table is written in the same turn as the session's
 * initial presence, before its read: no resource now means its read
 * comes after the commit. */
static void offline_late_look(struct worker *w, const char *user,
			      const char *domain)
{
	char bare[IPC_JID_MAX + 1];
	struct session_info s;
	int len = snprintf(bare, sizeof(bare), "%s@%s", user, domain);
	if (len < 0 || (size_t)len >= sizeof(bare))
		return;
	if (offline_target(w, bare, &s))
		offline_nudge(w, &s);
	else if (config_cluster_on(w->cfg) && w->cfg->offline_watch > 0)
		offline_watch_add(w, bare);
}

/* Once a second: each watched account's first available resource gets
 * a nudge and the account is no longer watched; so does one whose time
 * is up. */
static void offline_tick(struct worker *w, int64_t now_ms)
{
	struct session_info s;
	unsigned i = 0;
	if (w->cfg->offline_watch == 0) {
		while (offline_nwatch > 0)
			offline_watch_drop(offline_nwatch - 1);
		return;
	}
	while (i < offline_nwatch) {
		struct offline_watch *e = &offline_watches[i];
		if (offline_target(w, e->bare, &s)) {
			offline_nudge(w, &s);
			offline_watch_drop(i);
		} else if (e->until_ms <= now_ms) {
			offline_watch_drop(i);
		} else {
			i++;
		}
	}
}

/* IPC_FRAME_OFFLINE_NUDGE from another worker or node.  A session gone
 * meanwhile: 0, so that route_frame forwards the frame where the
 * session moved (XEP-0198) or drops it; the row stays stored. */
static int offline_worker_frame(struct worker *w,
				const struct ipc_frame_header *hdr,
				const char *payload, size_t len)
{
	(void)payload;
	(void)len;
	if (hdr->type != IPC_FRAME_OFFLINE_NUDGE)
		return 0;
	struct conn *c = conn_lookup(w, hdr->conn_id, hdr->gen);
	if (c == NULL || !c->bound) {
		log_debug("offline nudge for c%u (gen %u): no such session",
			  hdr->conn_id, hdr->gen);
		return 0;
	}
	offline_nudged(c);
	return 1;
}

/* ---- the extension (ext.h) ------------------------------------------- */

/* Section 8.5.2.2.1: chat and normal for an account with no resource
 * that takes them are stored (or answered with an error). */
static int offline_undelivered(struct worker *w, struct xml_node *st,
			       const char *bare)
{
	offline_store(w, st, bare);
	return 1;
}

/* Delivered after the account's next initial presence with
 * non-negative priority. */
static void offline_presence(struct conn *c, const struct xml_node *st,
			     int initial)
{
	(void)st;
	if (initial && c->priority >= 0)
		offline_deliver(c);
}

static void offline_drained(struct conn *c)
{
	if (c->offline_pending)
		offline_resume(c);      /* fetches the next batch */
}

/* A stored message taken back unwritten stays stored, in its place. */
static int offline_taken(struct conn *c, uint64_t end)
{
	return c->offline_nsent > 0 && offline_taken_back(c, end);
}

static void offline_gone(struct conn *c)
{
	if (c->offline_nsent > 0)
		offline_conn_gone(c);
}

static void offline_free(struct conn *c)
{
	free(c->offline_sent);
}

static const char *const offline_disco[] = { "msgoffline", NULL };
static const char *const offline_config[] = {
	"im.offline_quota", "im.offline_watch", "im.offline_watch_max", NULL,
};
static const char *const offline_schema[] = {
	"002-im.sql", "004-offline-unreadable.sql", NULL,
};

const struct ext offline_ext = {
	.name = "offline",
	.disco_features = offline_disco,
	.config_keys = offline_config,
	.schema = offline_schema,
	.presence_changed = offline_presence,
	.message_undelivered = offline_undelivered,
	.output_drained = offline_drained,
	.taken_back = offline_taken,
	.session_gone = offline_gone,
	.conn_free = offline_free,
	.tick = offline_tick,
	.worker_frame = offline_worker_frame,
};

/*
 * caps_ext.c - the `caps` extension: XEP-0115 entity capabilities (and
 * XEP-0390) of local sessions, resolved through the cache shared by all
 * workers (shm/caps.h), backed by PostgreSQL (caps_cache, 008-caps.sql).
 *
 * An available presence with a <c/> (presence_changed): a VERIFIED ver
 * applies at once (the session record's caps_idx/caps_gen, read by PEP
 * fan-out on any worker); an unknown one is looked up in caps_cache,
 * else the session is asked, from the account's bare JID, for
 * disco#info node='NODE#VER' (XEP-0115 section 6.2) and parked; the
 * session keeps that one query (id naming slot, conn, gen and a
 * sequence number; the ref asked).  The answer reaches the account's
 * bare JID (iq_result_to_account, on the asked client's worker) and
 * counts only from exactly the full JID asked, with that id and node;
 * it is verified (caps.c) and, when it matches, stored VERIFIED in shm
 * and PostgreSQL; verified_epoch wakes the sessions parked on every
 * worker (loop_turn).  One unknown ver per session (a new one frees the
 * old PENDING entry); caps.max_changes_per_minute bounds ver changes,
 * new or known; the tick touches live sessions' entries and resolves
 * again those whose entry was evicted.  A mismatching or
 * ill-formed answer is never cached: one log line, the entry INVALID,
 * that session not asked again for 10x caps.query_timeout (another
 * client with the ver is asked: a liar cannot block a ver).  Presence
 * without <c/> keeps the caps.  XEP-0198 resumption keeps them (the
 * saved word) as the old set, without caps_changed: no last items again.
 * A session holds its entry (shm_caps_ref) while it uses it, so entries
 * no live session holds are evicted first; an account may have
 * caps.max_new_per_account_hour new vers cached (counted in caps_cache
 * by the lookup that precedes each query).  The record's caps word is
 * what the session holds, cleared when its caps drop to none.
 * Failure policy: any failure (database down, table full) leaves the
 * session without caps (no PEP notifications, XEP-0060 section 9.2),
 * logged at info; the session goes on.
 */
#include "caps.h"
#include "worker.h"
#include "ext.h"
#include "server.h"
#include "stanza.h"
#include "log.h"
#include "../db/db.h"
#include "../shm/caps.h"
#include "../shm/session.h"
#include "../shm/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum caps_conn_state {
	CC_NONE = 0,
	CC_DB,          /* caps_cache lookup in flight */
	CC_PARKED,      /* the entry is PENDING: waiting for an answer */
	CC_APPLIED,     /* idx/gen set in the session record */
	CC_BAD,         /* this session's answer did not match */
};

/* Per session (c->caps), freed in conn_free. */
struct caps_conn {
	struct conn *c;
	struct caps_ref ref;    /* the last <c/> it sent */
	int has_ref;
	enum caps_conn_state state;
	uint32_t idx;           /* applied entry */
	uint16_t gen16;
	/* idx's slot is held (shm_caps_ref) and is what the session record's
	 * caps word names; 0: no caps, the word is 0 (F11: own worker and
	 * the others see the same). */
	int held;
	int retry;              /* table full / entry lost: tick retries */
	int budget_logged;      /* caps.max_new_per_account_hour, logged */
	int64_t bad_until;      /* CC_BAD: not asked again before (ms) */
	uint64_t *hashes;       /* applied +notify hashes (old set) */
	unsigned nhashes;
	struct caps_conn *pnext, *pprev;    /* parked list */
	int parked;
	struct caps_conn *anext, *aprev;    /* all of this worker's */
	/* The one disco#info query out to this session: an answer counts
	 * only from exactly c->jid with this id and this node. */
	int q_active;
	uint32_t q_seq;
	int64_t q_sent_ms;
	struct caps_ref q_ref;
	/* The PENDING entry this session was handed (ASK): freed when it
	 * sends another ver or leaves before answering (one per session). */
	int has_pend;
	uint32_t pend_idx, pend_gen;
	/* caps.max_changes_per_minute: ver changes in the window */
	int64_t win_start;
	unsigned win_changes;
	int rate_logged;
	int has_deferred;               /* a <c/> past the limit: later */
	struct caps_ref deferred;
};

/* This process's (worker's) parked sessions and what it last saw. */
static struct caps_conn *caps_parked;
static struct caps_conn *caps_all;
static uint64_t caps_seen_evictions;
static int64_t caps_touch_ms;
static int64_t caps_full_log_ms;        /* "table full" lines: 1/minute */
static unsigned caps_full_quiet;
static uint64_t caps_seen_epoch;
static uint32_t caps_query_seq;
static int64_t caps_cleanup_ms;

/* Rows (n, recent, found): found not NULL when the ver is cached (its
 * names n, one row each, or one NULL); else one row with the count of
 * new vers account $3 had cached in the last hour. */
const char caps_lookup_sql[] =
	"WITH u AS (UPDATE caps_cache SET last_used = current_date "
	"WHERE algo = $1 AND ver = $2 RETURNING notify), "
	"r AS (SELECT count(*) AS recent FROM caps_cache "
	"WHERE account = $3 AND verified_at > now() - interval '1 hour' "
	"AND NOT EXISTS (SELECT 1 FROM u)) "
	"SELECT x.n, r.recent, x.found FROM r LEFT JOIN "
	"(SELECT n, true AS found FROM u "
	"LEFT JOIN LATERAL unnest(u.notify) AS n ON true) x ON true";
static const char caps_insert_sql[] =
	"INSERT INTO caps_cache (algo, ver, notify, account) "
	"VALUES ($1, $2, $3, $4) "
	"ON CONFLICT (algo, ver) DO UPDATE SET last_used = current_date";
/* caps.cache_retention (whole days) and caps.cache_max_rows (LRU) */
static const char caps_cleanup_sql[] =
	"DELETE FROM caps_cache WHERE last_used < current_date - $1::int "
	"OR (algo, ver) IN (SELECT algo, ver FROM caps_cache "
	"ORDER BY last_used DESC, verified_at DESC OFFSET $2::bigint)";

/* The caps_cache key's algo column: "0115:sha-1", "0390:sha-256". */
void caps_db_algo(const struct caps_ref *r, char *out, size_t size)
{
	snprintf(out, size, "%s:%s", r->v2 ? "0390" : "0115",
		 caps_algo_name(r->algo));
}

static void caps_park(struct caps_conn *cc)
{
	if (cc->parked)
		return;
	cc->pnext = caps_parked;
	cc->pprev = NULL;
	if (caps_parked != NULL)
		caps_parked->pprev = cc;
	caps_parked = cc;
	cc->parked = 1;
}

static void caps_unpark(struct caps_conn *cc)
{
	if (!cc->parked)
		return;
	if (cc->pprev != NULL)
		cc->pprev->pnext = cc->pnext;
	else
		caps_parked = cc->pnext;
	if (cc->pnext != NULL)
		cc->pnext->pprev = cc->pprev;
	cc->pnext = cc->pprev = NULL;
	cc->parked = 0;
}

static struct caps_conn *caps_conn_get(struct conn *c)
{
	if (c->caps == NULL) {
		c->caps = calloc(1, sizeof(*c->caps));
		if (c->caps != NULL) {
			struct caps_conn *cc = c->caps;
			cc->c = c;
			cc->anext = caps_all;
			if (caps_all != NULL)
				caps_all->aprev = cc;
			caps_all = cc;
		}
	}
	return c->caps;
}

/* The session no longer waits for its own query: forget it and free
 * the PENDING entry it was handed (when nobody answered it meanwhile). */
static void caps_drop_query(struct worker *w, struct caps_conn *cc)
{
	cc->q_active = 0;
	if (cc->has_pend && w->shm->caps != NULL)
		shm_caps_abandon(w->shm->caps, cc->pend_idx, cc->pend_gen);
	cc->has_pend = 0;
}

/* The session no longer has caps: the slot given back, the record's
 * word cleared (so PEP fan-out on any worker agrees with this worker),
 * the old set forgotten (caps found again count as new). */
static void caps_none(struct conn *c, struct caps_conn *cc)
{
	cc->state = CC_NONE;
	if (!cc->held)
		return;
	cc->held = 0;
	if (c->w->shm->caps != NULL)
		shm_caps_unref(c->w->shm->caps, cc->idx, cc->gen16);
	shm_session_set_caps(c->w->shm->sessions, c->sess_index,
			     (uint16_t)c->w->slot, c->id, c->gen, 0, 0);
	free(cc->hashes);
	cc->hashes = NULL;
	cc->nhashes = 0;
	ext_session_changed(c);
}

/* Entry idx/gen becomes the session's caps: the slot held, the record,
 * the saved word, and (unless restored: XEP-0198 resumption is no new
 * presence) the extensions told (old set -> new set). */
static void caps_apply(struct conn *c, struct caps_conn *cc, uint32_t idx,
		       uint32_t gen, int restored)
{
	struct shm_caps *t = c->w->shm->caps;
	caps_unpark(cc);
	if (cc->held && cc->idx == idx && cc->gen16 == (uint16_t)gen &&
	    shm_caps_touch(t, idx, (uint16_t)gen, c->w->now_ms)) {
		cc->state = CC_APPLIED;
		return;         /* the same entry */
	}
	uint64_t *now = calloc(IPC_CAPS_NOTIFY_MAX, sizeof(*now));
	int n = now != NULL ? shm_caps_read(t, idx, (uint16_t)gen, now,
					    IPC_CAPS_NOTIFY_MAX) : -1;
	if (n < 0 || !shm_caps_ref(t, idx, (uint16_t)gen, c->w->now_ms)) {
		/* evicted or reused meanwhile: the tick resolves again */
		free(now);
		caps_none(c, cc);
		cc->retry = cc->has_ref;
		return;
	}
	if (cc->held)
		shm_caps_unref(t, cc->idx, cc->gen16);
	cc->held = 1;
	cc->retry = 0;
	cc->state = CC_APPLIED;
	cc->idx = idx;
	cc->gen16 = (uint16_t)gen;
	shm_session_set_caps(c->w->shm->sessions, c->sess_index,
			     (uint16_t)c->w->slot, c->id, c->gen,
			     (uint16_t)(idx + 1), (uint16_t)gen);
	ext_session_changed(c);
	uint64_t *old = cc->hashes;
	unsigned nold = cc->nhashes;
	cc->hashes = now;
	cc->nhashes = (unsigned)n;
	if (!restored)
		for (unsigned i = 0; i < ext_hooks.n_caps_changed; i++)
			ext_hooks.caps_changed[i].e->caps_changed(
				c, old, nold, now, (unsigned)n);
	free(old);
}

/* Send the disco#info query for cc->ref to the session, from its bare
 * JID; the id names the asking session (worker slot, conn id and gen)
 * and a sequence number, and cc keeps what was asked: the answer is
 * checked against it (caps_iq_result). */
static void caps_send_query(struct conn *c, struct caps_conn *cc)
{
	char node[CAPS_NODE_MAX + CAPS_VER_MAX + 64];
	struct buf out;
	struct arena a;
	const char *error;
	if (caps_query_node(&cc->ref, node, sizeof(node)) < 0)
		return;
	buf_init(&out, 0);
	buf_appendf(&out, "<iq from='");
	xml_escape(&out, c->user, strlen(c->user), 1);
	buf_appendf(&out, "@");
	xml_escape(&out, c->domain, strlen(c->domain), 1);
	buf_appendf(&out, "' to='");
	xml_escape(&out, c->jid, strlen(c->jid), 1);
	cc->q_active = 1;
	cc->q_seq = ++caps_query_seq;
	cc->q_sent_ms = c->w->now_ms;
	cc->q_ref = cc->ref;
	buf_appendf(&out, "' type='get' id='caps-%u-%u-%u-%u'><query xmlns='"
		    NS_DISCO_INFO "' node='", (unsigned)c->w->slot, c->id,
		    c->gen, cc->q_seq);
	xml_escape(&out, node, strlen(node), 1);
	buf_appendf(&out, "'/></iq>");
	buf_append(&out, "", 1);
	arena_init(&a, 1024);
	struct xml_node *st = stanza_parse(&a, buf_head(&out),
					   buf_used(&out) - 1, &error);
	if (st == NULL) {
		log_error("caps query unreadable: %s", error);
	} else {
		METRIC_INC(c->w->stats->caps_queries);
		route_stanza(c->w, &a, st);
	}
	arena_free(&a);
	buf_free(&out);
}

/* The keyed hashes of query's +notify names into out (n of them). */
static unsigned caps_hashes(struct shm_caps *t, const char *const *names,
			    const size_t *lens, unsigned n, uint64_t *out)
{
	for (unsigned i = 0; i < n; i++)
		out[i] = shm_caps_hash(t, names[i], lens[i]);
	return n;
}

/* ---- caps_cache (PostgreSQL) ---------------------------------------- */

struct caps_db_req {
	struct worker *w;
	uint32_t conn_id, gen;
	struct caps_ref ref;
};

static void caps_db_result(void *ctx, const PGresult *res, const char *error)
{
	struct caps_db_req *q = ctx;
	struct worker *w = q->w;
	struct conn *c = conn_lookup(w, q->conn_id, q->gen);
	struct caps_conn *cc = c != NULL ? c->caps : NULL;
	if (cc == NULL || cc->state != CC_DB ||
	    memcmp(&cc->ref, &q->ref, sizeof(q->ref)) != 0) {
		free(q);
		return;         /* gone, or it sent another <c/> since */
	}
	if (res != NULL && PQntuples(res) > 0 && PQnfields(res) == 3 &&
	    !PQgetisnull(res, 0, 2)) {
		int n = PQntuples(res);
		uint64_t *h = calloc(IPC_CAPS_NOTIFY_MAX, sizeof(*h));
		uint64_t total = 0;
		unsigned k = 0;
		for (int i = 0; h != NULL && i < n &&
		     k < IPC_CAPS_NOTIFY_MAX; i++) {
			if (PQgetisnull(res, i, 0))
				continue;
			const char *s = PQgetvalue(res, i, 0);
			size_t len = strlen(s);
			/* the bounds of caps_answer (a row from before them,
			 * or settings lowered since) */
			if (len > w->cfg->pep_max_id_length ||
			    total + len > w->cfg->caps_max_notify_bytes)
				continue;
			total += len;
			h[k++] = shm_caps_hash(w->shm->caps, s, len);
		}
		uint32_t idx, gen;
		int64_t idle = (int64_t)w->cfg->caps_idle_timeout;
		if (h != NULL && shm_caps_verified(w->shm->caps, q->ref.algo,
						   (uint8_t)q->ref.v2,
						   q->ref.ver, h, k, w->now_ms,
						   idle, &idx, &gen) == 0)
			caps_apply(c, cc, idx, gen, 0);
		else
			caps_none(c, cc);
		free(h);
		free(q);
		return;
	}
	long long recent = res != NULL && PQntuples(res) > 0 &&
		PQnfields(res) == 3 && !PQgetisnull(res, 0, 1) ?
		atoll(PQgetvalue(res, 0, 1)) : 0;
	if (recent >= (long long)w->cfg->caps_max_new_per_account_hour) {
		/* F1/F2: one account cannot mint vers without end */
		if (!cc->budget_logged)
			log_info("caps of %s: %lld new caps vers of the "
				 "account cached in the last hour "
				 "(caps.max_new_per_account_hour): %s %s not "
				 "queried", c->jid,
				 recent, caps_algo_name(q->ref.algo),
				 q->ref.ver);
		cc->budget_logged = 1;
		caps_drop_query(w, cc);
		caps_none(c, cc);
		free(q);
		return;
	}
	if (res == NULL)
		log_info("caps_cache lookup failed (%s): asking the client",
			 error != NULL ? error : "database down");
	cc->state = CC_PARKED;
	caps_park(cc);
	caps_send_query(c, cc);
	free(q);
}

static void caps_db_lookup(struct conn *c, struct caps_conn *cc)
{
	char algo[32];
	struct caps_db_req *q = calloc(1, sizeof(*q));
	caps_db_algo(&cc->ref, algo, sizeof(algo));
	size_t alen = strlen(c->user) + strlen(c->domain) + 2;
	char *account = malloc(alen);
	if (account != NULL)
		snprintf(account, alen, "%s@%s", c->user, c->domain);
	const char *params[3] = { algo, cc->ref.ver, account };
	if (q != NULL) {
		q->w = c->w;
		q->conn_id = c->id;
		q->gen = c->gen;
		q->ref = cc->ref;
	}
	cc->state = CC_DB;
	if (q == NULL || account == NULL || c->w->db == NULL ||
	    db_query(c->w->db, caps_lookup_sql, 3, params, NULL, NULL, 0,
		     caps_db_result, q) < 0) {
		free(account);
		free(q);
		cc->state = CC_PARKED;
		caps_park(cc);
		caps_send_query(c, cc);
		return;
	}
	free(account);
}

static void caps_db_ignore(void *ctx, const PGresult *res, const char *error)
{
	(void)ctx;
	(void)res;
	if (error != NULL)
		log_info("caps_cache write failed: %s", error);
}

/* A text[] literal of the names: {"a","b"} with \ and " escaped. */
static void caps_db_store(struct worker *w, const struct caps_ref *r,
			  const char *account, const char *const *names,
			  const size_t *lens, unsigned n)
{
	struct buf lit;
	char algo[32];
	buf_init(&lit, 0);
	buf_append(&lit, "{", 1);
	for (unsigned i = 0; i < n; i++) {
		buf_append(&lit, i ? ",\"" : "\"", i ? 2 : 1);
		for (size_t k = 0; k < lens[i]; k++) {
			if (names[i][k] == '"' || names[i][k] == '\\')
				buf_append(&lit, "\\", 1);
			buf_append(&lit, &names[i][k], 1);
		}
		buf_append(&lit, "\"", 1);
	}
	buf_append(&lit, "}", 2);       /* with the NUL */
	caps_db_algo(r, algo, sizeof(algo));
	const char *params[4] = { algo, r->ver, buf_head(&lit), account };
	if (w->db != NULL)
		db_query(w->db, caps_insert_sql, 4, params, NULL, NULL, 0,
			 caps_db_ignore, NULL);
	buf_free(&lit);
}

/* ---- resolving a session's ver --------------------------------------- */

static void caps_resolve(struct conn *c, struct caps_conn *cc)
{
	uint32_t idx, gen;
	int64_t timeout = (int64_t)c->w->cfg->caps_query_timeout;
	int v = shm_caps_begin(c->w->shm->caps, cc->ref.algo,
			       (uint8_t)cc->ref.v2, cc->ref.ver, c->w->now_ms,
			       timeout,
			       (int64_t)c->w->cfg->caps_idle_timeout,
			       &idx, &gen);
	switch (v) {
	case SHM_CAPS_KNOWN:
		caps_apply(c, cc, idx, gen, 0);
		break;
	case SHM_CAPS_ASK:
		caps_unpark(cc);
		cc->has_pend = 1;
		cc->pend_idx = idx;
		cc->pend_gen = gen;
		caps_db_lookup(c, cc);
		break;
	case SHM_CAPS_WAIT:
		cc->state = CC_PARKED;
		caps_park(cc);
		break;
	default:                /* BAD (not asked again yet), FULL, -1 */
		caps_unpark(cc);
		if (cc->state != CC_APPLIED)
			caps_none(c, cc);
		if (v != SHM_CAPS_FULL)
			break;
		cc->retry = 1;          /* the tick asks the table again */
		if (c->w->now_ms - caps_full_log_ms < 60000) {
			caps_full_quiet++;      /* a flood: one line a minute */
			break;
		}
		log_info("caps table full: %s %s of %s not cached (%u more "
			 "in the last minute)", caps_algo_name(cc->ref.algo),
			 cc->ref.ver, c->jid, caps_full_quiet);
		caps_full_log_ms = c->w->now_ms;
		caps_full_quiet = 0;
		break;
	}
}

/* Whether cc may resolve one more ver now (caps.max_changes_per_minute,
 * new and known vers alike: PEP resends last items on each change). */
static int caps_rate_ok(struct conn *c, struct caps_conn *cc)
{
	int64_t now = c->w->now_ms;
	if (now - cc->win_start >= 60000) {
		cc->win_start = now;
		cc->win_changes = 0;
	}
	if (cc->win_changes < c->w->cfg->caps_max_changes_per_minute) {
		cc->win_changes++;
		return 1;
	}
	return 0;
}

/* The session announced r: resolve it, within the rate limit (past it
 * the newest <c/> waits for the next minute, caps_tick). */
static void caps_change(struct conn *c, struct caps_conn *cc,
			const struct caps_ref *r)
{
	if (!caps_rate_ok(c, cc)) {
		cc->deferred = *r;
		cc->has_deferred = 1;
		if (!cc->rate_logged) {
			cc->rate_logged = 1;
			log_info("caps of %s change more than %u times a "
				 "minute: not resolved until the minute is "
				 "over", c->jid,
				 c->w->cfg->caps_max_changes_per_minute);
		}
		return;
	}
	cc->has_deferred = 0;
	if (cc->has_ref && memcmp(&cc->ref, r, sizeof(*r)) != 0)
		caps_drop_query(c->w, cc);      /* one unknown ver at a time */
	cc->ref = *r;
	cc->has_ref = 1;
	if (cc->state == CC_BAD)
		cc->state = CC_NONE;
	caps_resolve(c, cc);
}

static void caps_presence(struct conn *c, const struct xml_node *st,
			  int initial)
{
	struct caps_ref r;
	(void)initial;
	if (!c->available || c->w->shm->caps == NULL ||
	    !caps_parse_presence(st, &r))
		return;         /* no <c/>: the caps stay (pep-plan 1.7) */
	struct caps_conn *cc = caps_conn_get(c);
	if (cc == NULL)
		return;
	if (cc->has_ref && memcmp(&cc->ref, &r, sizeof(r)) == 0) {
		cc->has_deferred = 0;   /* back to what it has */
		if (cc->state != CC_BAD && cc->state != CC_NONE)
			return;         /* known, or on its way */
		if (cc->state == CC_BAD && c->w->now_ms < cc->bad_until)
			return;
	}
	caps_change(c, cc, &r);
}

/* F2: the names kept of a ver (in shm and caps_cache alike): none
 * longer than a PEP node name may be (pep.max_id_length), at most
 * caps.max_notify_bytes in all; *more_r set when some were dropped. */
static unsigned caps_names_bound(struct worker *w, const char **names,
				 size_t *lens, unsigned n, int *more_r)
{
	uint64_t total = 0;
	unsigned k = 0;
	for (unsigned i = 0; i < n; i++) {
		if (lens[i] > w->cfg->pep_max_id_length ||
		    total + lens[i] > w->cfg->caps_max_notify_bytes) {
			*more_r = 1;
			continue;
		}
		total += lens[i];
		names[k] = names[i];
		lens[k++] = lens[i];
	}
	return k;
}

/* The session's query got an error or timed out: it is not asked again
 * for 10x caps.query_timeout; its PENDING entry is freed, so the next
 * client with the ver is asked. */
static void caps_query_failed(struct worker *w, struct caps_conn *cc)
{
	caps_drop_query(w, cc);
	if (cc->state != CC_APPLIED) {
		caps_unpark(cc);
		cc->state = CC_BAD;
		cc->bad_until = w->now_ms +
			10 * (int64_t)w->cfg->caps_query_timeout;
	}
}

/* ---- answers to the account's bare JID ------------------------------- */

static void caps_mismatch(struct worker *w, struct caps_conn *cc,
			  const struct caps_ref *r, const char *why)
{
	log_info("caps answer of %s for %s %s refused (%s): not cached",
		 cc->c->jid, caps_algo_name(r->algo), r->ver, why);
	METRIC_INC(w->stats->caps_mismatch);
	shm_caps_invalid(w->shm->caps, r->algo, (uint8_t)r->v2, r->ver,
			 w->now_ms);
	cc->has_pend = 0;               /* INVALID now: anyone may take it */
	if (cc->has_ref && memcmp(&cc->ref, r, sizeof(*r)) == 0 &&
	    cc->state != CC_APPLIED) {
		caps_unpark(cc);
		cc->state = CC_BAD;
		cc->bad_until = w->now_ms +
			10 * (int64_t)w->cfg->caps_query_timeout;
	}
}

static int caps_store(struct worker *w, const struct xml_node *q,
		      const struct caps_ref *r, const char *account,
		      uint32_t *idx_r, uint32_t *gen_r);

/* The answer q of cc's session to its query for r (checked). */
static void caps_answer(struct worker *w, struct caps_conn *cc,
			const struct xml_node *q, const struct caps_ref *r)
{
	uint32_t idx, gen;
	if (shm_caps_lookup(w->shm->caps, r->algo, (uint8_t)r->v2, r->ver,
			    &idx, &gen) == IPC_CAPS_VERIFIED) {
		cc->has_pend = 0;
		if (cc->parked)
			caps_resolve(cc->c, cc);
		return;         /* another client answered first */
	}
	const char *error = NULL;
	int ok = caps_verify(q, r, &error);
	if (ok != 1) {
		caps_mismatch(w, cc, r, ok < 0 ? error : "hash differs");
		return;
	}
	cc->has_pend = 0;
	struct conn *c = cc->c;
	char account[IPC_JID_MAX + 2];
	snprintf(account, sizeof(account), "%s@%s", c->user, c->domain);
	caps_store(w, q, r, account, &idx, &gen);
}

/* A verified answer q for r into shm and caps_cache (the row counted
 * against account's budget of new vers): 0, or -1 (table full,
 * logged). */
static int caps_store(struct worker *w, const struct xml_node *q,
		      const struct caps_ref *r, const char *account,
		      uint32_t *idx_r, uint32_t *gen_r)
{
	const char *names[IPC_CAPS_NOTIFY_MAX];
	size_t lens[IPC_CAPS_NOTIFY_MAX];
	uint64_t h[IPC_CAPS_NOTIFY_MAX];
	int more;
	unsigned n = caps_notify_names(q, names, lens, IPC_CAPS_NOTIFY_MAX,
				       &more);
	n = caps_names_bound(w, names, lens, n, &more);
	if (more)
		log_info("caps %s %s lists more than %u +notify nodes or "
			 "%llu bytes of names (or names longer than a node "
			 "name may be): the rest are ignored",
			 caps_algo_name(r->algo), r->ver,
			 IPC_CAPS_NOTIFY_MAX,
			 (unsigned long long)w->cfg->caps_max_notify_bytes);
	caps_hashes(w->shm->caps, names, lens, n, h);
	if (shm_caps_verified(w->shm->caps, r->algo, (uint8_t)r->v2, r->ver,
			      h, n, w->now_ms,
			      (int64_t)w->cfg->caps_idle_timeout, idx_r,
			      gen_r) < 0) {
		log_info("caps %s %s verified but not cached: table full",
			 caps_algo_name(r->algo), r->ver);
		return -1;
	}
	METRIC_INC(w->stats->caps_verified);
	caps_db_store(w, r, account, names, lens, n);
	return 0;
}

int caps_answer_remote(struct worker *w, const struct xml_node *q,
		       const struct caps_ref *r, const char *from,
		       const char *account, uint32_t *idx_r, uint32_t *gen_r)
{
	const char *error = NULL;
	if (w->shm->caps == NULL)
		return -1;
	if (shm_caps_lookup(w->shm->caps, r->algo, (uint8_t)r->v2, r->ver,
			    idx_r, gen_r) == IPC_CAPS_VERIFIED)
		return 1;
	int ok = caps_verify(q, r, &error);
	if (ok != 1) {
		log_info("caps answer of %s for %s %s refused (%s): not cached",
			 from, caps_algo_name(r->algo), r->ver,
			 ok < 0 ? error : "hash differs");
		METRIC_INC(w->stats->caps_mismatch);
		shm_caps_invalid(w->shm->caps, r->algo, (uint8_t)r->v2, r->ver,
				 w->now_ms);
		return 0;
	}
	return caps_store(w, q, r, account, idx_r, gen_r) == 0 ? 1 : -1;
}

/* A result or error IQ to an account's bare JID.  It is an answer to
 * our query only when its id names a session of this worker (slot,
 * conn id, gen: the answer comes from the asked client's own stream,
 * so it is handled on that client's worker, where the query was made)
 * with a query out under that sequence number, it comes from exactly
 * the full JID asked, and (a result) names the node asked.  Anything
 * else is dropped (debug log): nothing is cached unasked. */
static void caps_iq_result(struct worker *w, const struct xml_node *st,
			   const char *bare)
{
	const char *id = xml_attr(st, "id");
	const char *from = xml_attr(st, "from");
	const char *type = xml_attr(st, "type");
	unsigned slot, conn_id, gen, seq;
	char tail;
	(void)bare;
	if (id == NULL || strncmp(id, "caps-", 5) != 0 || from == NULL ||
	    type == NULL || w->shm->caps == NULL)
		return;
	if (sscanf(id, "caps-%u-%u-%u-%u%c", &slot, &conn_id, &gen, &seq,
		   &tail) != 4 || slot != (unsigned)w->slot) {
		log_debug("caps answer of %s with id %s: not ours, dropped",
			  from, id);
		return;
	}
	struct conn *c = conn_lookup(w, conn_id, gen);
	struct caps_conn *cc = c != NULL ? c->caps : NULL;
	if (cc == NULL || !cc->q_active || cc->q_seq != seq ||
	    c->jid == NULL || strcmp(from, c->jid) != 0) {
		log_debug("caps answer of %s with id %s: no such query out, "
			  "dropped", from, id);
		return;
	}
	struct caps_ref r = cc->q_ref;
	if (strcmp(type, "error") == 0) {
		log_info("caps query to %s answered with an error", from);
		caps_query_failed(w, cc);
		return;
	}
	const struct xml_node *q = xml_child(st, NS_DISCO_INFO, "query");
	const char *node = q != NULL ? xml_attr(q, "node") : NULL;
	char want[CAPS_NODE_MAX + CAPS_VER_MAX + 64];
	if (node == NULL || caps_query_node(&r, want, sizeof(want)) < 0 ||
	    strcmp(node, want) != 0) {
		log_debug("caps answer of %s with id %s: not the node asked, "
			  "dropped", from, id);
		return;
	}
	cc->q_active = 0;
	caps_answer(w, cc, q, &r);
}

/* ---- waking parked sessions ------------------------------------------ */

static void caps_rerun_parked(void)
{
	struct caps_conn *cc = caps_parked, *next;
	for (; cc != NULL; cc = next) {
		next = cc->pnext;
		if (cc->q_active)
			continue;       /* its own query: answer or timeout */
		caps_resolve(cc->c, cc);
	}
}

static int caps_loop_turn(struct worker *w, int64_t now_ms)
{
	(void)now_ms;
	if (w->shm->caps == NULL || caps_parked == NULL)
		return -1;
	uint64_t e = shm_caps_epoch(w->shm->caps);
	if (e != caps_seen_epoch) {
		caps_seen_epoch = e;
		caps_rerun_parked();
	}
	return -1;
}

/* Entry of an applied session gone (evicted, reused): resolve its ver
 * again (shared memory, caps_cache, else a query). */
static void caps_reresolve(struct conn *c, struct caps_conn *cc)
{
	caps_none(c, cc);
	if (cc->has_ref)        /* else restored from a saved word only */
		caps_resolve(c, cc);
}

static void caps_tick(struct worker *w, int64_t now_ms)
{
	struct caps_conn *cc, *next;
	if (w->shm->caps == NULL)
		return;
	int64_t timeout = (int64_t)w->cfg->caps_query_timeout;
	uint64_t ev = shm_caps_evictions(w->shm->caps);
	int touch = ev != caps_seen_evictions ||
		    now_ms - caps_touch_ms >= 60000;
	if (touch) {
		caps_seen_evictions = ev;
		caps_touch_ms = now_ms;
	}
	for (cc = caps_all; cc != NULL; cc = next) {
		next = cc->anext;
		if (cc->q_active && now_ms - cc->q_sent_ms >= timeout) {
			log_debug("caps query to %s timed out", cc->c->jid);
			caps_query_failed(w, cc);
		}
		if (cc->has_deferred && now_ms - cc->win_start >= 60000) {
			struct caps_ref r = cc->deferred;
			caps_change(cc->c, cc, &r);
		}
		/* live sessions keep their entries from LRU eviction; one
		 * whose entry went anyway is resolved again */
		if (touch && cc->held &&
		    !shm_caps_touch(w->shm->caps, cc->idx, cc->gen16, now_ms))
			caps_reresolve(cc->c, cc);
		else if (touch && cc->retry && cc->has_ref &&
			 (cc->state == CC_NONE ||
			  cc->state == CC_APPLIED)) {
			cc->retry = 0;  /* table was full: once a minute */
			caps_resolve(cc->c, cc);
		}
	}
	/* queries that timed out: the next parked client is asked */
	caps_rerun_parked();
	/* housekeeping only on an up link and never while stopping: a
	 * query waiting for the link would hold the stop drain */
	if (w->slot == 0 && w->db != NULL && db_is_up(w->db) &&
	    !w->stopping && now_ms - caps_cleanup_ms > 3600 * 1000) {
		char days[32], rows[32];
		snprintf(days, sizeof(days), "%llu", (unsigned long long)
			 (w->cfg->caps_cache_retention / 86400000));
		snprintf(rows, sizeof(rows), "%u",
			 w->cfg->caps_cache_max_rows);
		const char *params[2] = { days, rows };
		caps_cleanup_ms = now_ms;
		db_query(w->db, caps_cleanup_sql, 2, params, NULL, NULL, 0,
			 caps_db_ignore, NULL);
	}
}

/* ---- the session's lifetime ------------------------------------------- */

static void caps_conn_free(struct conn *c)
{
	struct caps_conn *cc = c->caps;
	if (cc == NULL)
		return;
	caps_unpark(cc);
	caps_drop_query(c->w, cc);
	if (cc->held && c->w->shm->caps != NULL)
		shm_caps_unref(c->w->shm->caps, cc->idx, cc->gen16);
	if (cc->aprev != NULL)
		cc->aprev->anext = cc->anext;
	else
		caps_all = cc->anext;
	if (cc->anext != NULL)
		cc->anext->aprev = cc->aprev;
	free(c->caps->hashes);
	free(c->caps);
	c->caps = NULL;
}

static uint32_t caps_session_save(const struct conn *c)
{
	const struct caps_conn *cc = c->caps;
	if (cc == NULL || !cc->held)
		return 0;
	return (cc->idx + 1) << 16 | cc->gen16;
}

/* Resumed (XEP-0198, any worker): the caps the session had, as its
 * old set: no caps_changed (review F5: no last items again; XEP-0163
 * sends them on a new available presence, and a resumption is none). */
static void caps_session_restore(struct conn *c, uint32_t word)
{
	struct session_info s;
	if (word == 0 || c->w->shm->caps == NULL)
		return;
	struct caps_conn *cc = caps_conn_get(c);
	if (cc == NULL || c->jid == NULL)
		return;
	if (shm_session_get(c->w->shm->sessions, c->jid, &s) == 1)
		c->sess_index = s.index;
	cc->state = CC_NONE;
	caps_apply(c, cc, (word >> 16) - 1, word & 0xffff, 1);
}

int caps_session_wants(struct worker *w, const struct session_info *s,
		       const char *node)
{
	if (s->caps_idx == 0 || w->shm->caps == NULL)
		return 0;
	uint64_t h = shm_caps_hash(w->shm->caps, node, strlen(node));
	return shm_caps_wants(w->shm->caps, (uint32_t)s->caps_idx - 1,
			      s->caps_gen, h);
}

int caps_conn_wants(struct conn *c, const char *node)
{
	const struct caps_conn *cc = c->caps;
	if (cc == NULL || !cc->held || c->w->shm->caps == NULL)
		return 0;
	uint64_t h = shm_caps_hash(c->w->shm->caps, node, strlen(node));
	return shm_caps_wants(c->w->shm->caps, cc->idx, cc->gen16, h);
}

/* ---- the extension (ext.h) ------------------------------------------- */

static const char *const caps_config[] = {
	"caps.table_size", "caps.query_timeout",
	"caps.max_changes_per_minute", "caps.idle_timeout",
	"caps.max_new_per_account_hour", "caps.max_notify_bytes",
	"caps.cache_max_rows", "caps.cache_retention", NULL,
};
static const char *const caps_schema[] = { "008-caps.sql",
					   "014-caps-bounds.sql", NULL };

const struct ext caps_ext = {
	.name = "caps",
	.config_keys = caps_config,
	.schema = caps_schema,
	.presence_changed = caps_presence,
	.iq_result_to_account = caps_iq_result,
	.loop_turn = caps_loop_turn,
	.tick = caps_tick,
	.conn_free = caps_conn_free,
	.session_save = caps_session_save,
	.session_restore = caps_session_restore,
};

/*
 * pep_remote.c - the `pep_remote` extension: XEP-0163 recipients on
 * other servers (pep-plan slice 4; docs/DESIGN.md "Personal eventing:
 * remote recipients").
 *
 * A full JID on a domain we do not host that sends available presence
 * with XEP-0115 (or XEP-0390) caps to an account's bare JID, and that
 * the account's roster holds with a subscription (to, from or both; not
 * blocked), is one row of pep_remote_presence (012-pep-remote.sql),
 * capped per account by pep.max_remote_recipients (one log line when
 * full).  Its unavailable, a presence error (from the full JID: that
 * row; from the bare JID: all of them), a subscription gone to 'none'
 * and a bounced event delete rows.  Events (pep_notify.c) go to a row
 * only while the contact has from/both and the node's access model
 * admits it, decided by the same query as for local contacts, and only
 * when its ver is VERIFIED in the shared caps table with NODE+notify.
 *
 * Caps of a new or changed row: a VERIFIED ver is used at once, else
 * caps_cache, else a disco#info query node='NODE#VER' from the
 * account's bare JID to that full JID (route_stanza, over s2s).  The
 * query id carries the algorithm, the time and a SipHash MAC (keyed
 * from the shared table's secret) of the asked JID, the asking account
 * and the node, so the answer is checked on whichever worker the
 * remote server's stream delivers it: an answer counts only from
 * exactly the JID asked, to the account that asked, for that node,
 * within caps.query_timeout; it is verified as a local client's
 * (caps_answer_remote: hash check, never cached when it does not
 * match).  Queries per worker are bounded by
 * pep.remote_caps_queries_per_minute; a ver another worker or client
 * is being asked about waits (parked, bounded) for its answer.  When a
 * ver becomes VERIFIED, the rows holding it get their owners' last
 * items (with <delay/>); a changed ver gets those of the nodes new in
 * its notify set.  When the account grants the contact a subscription,
 * the contact's rows get the last items.
 *
 * Bounces (XEP-0060 section 12.3): an error message from a remote full
 * JID to the account's bare JID whose id is a PEP event id ("pep-")
 * deletes that row when the error type is cancel or the condition
 * <gone/>; other errors are ignored.  Nothing answers an error.
 * Failure policy: best effort; a database failure loses a row update or
 * last items (logged at info), never stored items; a row that should
 * have gone is dropped by its next unavailable or bounce.
 */
#include "worker.h"
#include "../db/db.h"
#include "../shm/caps.h"
#include "../shm/session.h"
#include "../shm/metrics.h"
#include "caps.h"
#include "config.h"
#include "ext.h"
#include "log.h"
#include "pep.h"
#include "pubsub.h"
#include "server.h"
#include "stanza.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define PR_DOMAINS 64            /* domains counted per rate window */

/* A row whose caps are being resolved, or whose last items go out. */
struct pr_job {
	struct worker *w;
	char user[IPC_JID_MAX + 1], domain[IPC_JID_MAX + 1];
	char full[IPC_JID_MAX + 1];
	struct caps_ref ref;
	int has_old;                    /* changed: the previous caps */
	int quiet;                      /* resolve only: no last items */
	struct caps_ref old;
	int64_t deadline;               /* parked */
};

/* rows waiting for another's answer (pep.remote_parked_max) */
static struct pr_job **pr_parked;
static unsigned pr_nparked, pr_parked_cap;
static int64_t pr_park_log_ms;          /* refusals: one line a minute */
static unsigned pr_park_quiet;
static int64_t pr_win_start;            /* rate window of queries */
static unsigned pr_win_count;
static int pr_rate_logged;
/* queries per remote domain in the window (G3: a quarter each) */
static struct { uint64_t h; unsigned n; } pr_dom[PR_DOMAINS];
static unsigned pr_ndom;
static int64_t pr_budget_log_ms;        /* caps.max_new_per_domain_hour */
static int64_t pr_full_log_ms;          /* "full": one line a minute */
static unsigned pr_full_quiet;
static int64_t pr_expire_ms;            /* worker 0: expired rows */

/* The domain of a JID (no resource). */
static void pr_domain_of(const char *jid, char *out, size_t size)
{
	const char *at = strchr(jid, '@');
	const char *d = at != NULL ? at + 1 : jid;
	size_t n = strcspn(d, "/");
	if (n >= size)
		n = size - 1;
	memcpy(out, d, n);
	out[n] = '\0';
}

/* The budget key of a remote domain in caps_cache.account. */
static void pr_budget_key(const char *jid, char *out, size_t size)
{
	char d[IPC_JID_MAX + 1];
	pr_domain_of(jid, d, sizeof(d));
	snprintf(out, size, "remote:%s", d);
}

/* A share of a per-worker bound one remote domain may use. */
static unsigned pr_share(unsigned bound)
{
	return bound / 4 > 0 ? bound / 4 : 1;
}

/* The reverse: 0, or -1 for a key this build does not know. */
static int pr_key_parse(const char *key, const char *ver,
			struct caps_ref *r)
{
	memset(r, 0, sizeof(*r));
	if (strncmp(key, "0115:", 5) == 0)
		r->v2 = 0;
	else if (strncmp(key, "0390:", 5) == 0)
		r->v2 = 1;
	else
		return -1;
	r->algo = caps_algo_parse(key + 5);
	if (r->algo == CAPS_ALGO_NONE || strlen(ver) > CAPS_VER_MAX)
		return -1;
	strcpy(r->ver, ver);
	return 0;
}

/* Split a bare JID into user and domain (0), or -1. */
static int pr_split(const char *bare, char *user, char *domain)
{
	const char *at = strchr(bare, '@');
	size_t n = strcspn(bare, "/");
	if (at == NULL || (size_t)(at - bare) > IPC_JID_MAX ||
	    n > IPC_JID_MAX || bare[n] != '\0')
		return -1;
	memcpy(user, bare, (size_t)(at - bare));
	user[at - bare] = '\0';
	strcpy(domain, at + 1);
	return 0;
}

/* Route a stanza we built (from a local bare JID to a remote JID). */
static void pr_route_text(struct worker *w, const char *text, size_t len)
{
	struct arena a;
	const char *error;
	arena_init(&a, 1024);
	struct xml_node *st = stanza_parse(&a, text, len, &error);
	if (st == NULL)
		log_error("pep: remote stanza unreadable: %s", error);
	else
		route_stanza(w, &a, st);
	arena_free(&a);
}

/* ---- query ids ------------------------------------------------------- */

/* The MAC of a query: who was asked (full), for whom (owner), which
 * node, which algorithm, when.  Keyed from the caps table's secret, so
 * every worker checks it and nobody outside can forge one. */
static void pr_mac(struct worker *w, const char *full, const char *owner,
		   const char *node, const char *head, char out[17])
{
	struct shm_caps *t = w->shm->caps;
	unsigned char key[crypto_shorthash_KEYBYTES];
	unsigned char mac[crypto_shorthash_BYTES];
	uint64_t k[2] = { shm_caps_hash(t, "pep-remote-mac-1", 16),
			  shm_caps_hash(t, "pep-remote-mac-2", 16) };
	struct buf b;
	memcpy(key, k, sizeof(key) < sizeof(k) ? sizeof(key) : sizeof(k));
	buf_init(&b, 0);
	buf_appendf(&b, "%s\n%s\n%s\n%s", full, owner, node, head);
	crypto_shorthash(mac, (const unsigned char *)buf_head(&b),
			 buf_used(&b), key);
	buf_free(&b);
	for (unsigned i = 0; i < 8; i++)
		snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

/* Whether a query to full may go out now
 * (pep.remote_caps_queries_per_minute per worker, a quarter of it per
 * remote domain: one server cannot take all). */
static int pr_rate_ok(struct worker *w, const char *full)
{
	char d[IPC_JID_MAX + 1];
	unsigned limit = w->cfg->pep_remote_caps_queries_per_minute;
	if (w->now_ms - pr_win_start >= 60000) {
		pr_win_start = w->now_ms;
		pr_win_count = 0;
		pr_rate_logged = 0;
		pr_ndom = 0;
	}
	pr_domain_of(full, d, sizeof(d));
	uint64_t h = w->shm->caps != NULL ?
		     shm_caps_hash(w->shm->caps, d, strlen(d)) : 0;
	unsigned k = 0;
	while (k < pr_ndom && pr_dom[k].h != h)
		k++;
	if (k == pr_ndom && pr_ndom < PR_DOMAINS) {
		pr_dom[pr_ndom].h = h;
		pr_dom[pr_ndom++].n = 0;
	}
	int dom_ok = k == PR_DOMAINS || pr_dom[k].n < pr_share(limit);
	if (pr_win_count < limit && dom_ok) {
		pr_win_count++;
		if (k < PR_DOMAINS)
			pr_dom[k].n++;
		return 1;
	}
	if (!pr_rate_logged) {
		pr_rate_logged = 1;
		log_info("pep: %s caps queries to other servers in a minute "
			 "(pep.remote_caps_queries_per_minute %u, a quarter "
			 "of it for %s): not asking until it is over",
			 dom_ok ? "all" : "a server's share of", limit, d);
	}
	return 0;
}

/* The disco#info query for j's caps, from the account's bare JID. */
static void pr_send_query(struct worker *w, const struct pr_job *j)
{
	char node[CAPS_NODE_MAX + CAPS_VER_MAX + 64], head[64], mac[17];
	char owner[2 * IPC_JID_MAX + 2];
	struct buf out;
	if (caps_query_node(&j->ref, node, sizeof(node)) < 0)
		return;
	snprintf(owner, sizeof(owner), "%s@%s", j->user, j->domain);
	snprintf(head, sizeof(head), "pepr-%d-%d-%llx", (int)j->ref.algo,
		 j->ref.v2, (unsigned long long)w->now_ms);
	pr_mac(w, j->full, owner, node, head, mac);
	buf_init(&out, 0);
	buf_appendf(&out, "<iq from='");
	xml_escape(&out, owner, strlen(owner), 1);
	buf_appendf(&out, "' to='");
	xml_escape(&out, j->full, strlen(j->full), 1);
	buf_appendf(&out, "' type='get' id='%s-%s'><query xmlns='"
		    NS_DISCO_INFO "' node='", head, mac);
	xml_escape(&out, node, strlen(node), 1);
	buf_appendf(&out, "'/></iq>");
	METRIC_INC(w->stats->caps_queries);
	pr_route_text(w, buf_head(&out), buf_used(&out));
	buf_free(&out);
}

/* ---- last items ------------------------------------------------------ */

static const char pr_last_sql[] =
	"SELECT full_jid, caps_algo, caps_ver, service, node, item_id, "
	"payload, stamp, more FROM xmppd_pep_remote_last($1, $2, $3, $4, $5, "
	"$6, $7::bigint)";

/* A last-items query: the old caps (changed ver: only new nodes). */
struct pr_last {
	struct worker *w;
	int has_old;
	struct caps_ref old;
};

/* Whether the row's caps (VERIFIED) list node+notify, and (old given)
 * the old caps did not. */
static int pr_wants(struct worker *w, const char *key, const char *ver,
		    const char *node, const struct caps_ref *old, int cached)
{
	struct caps_ref r;
	uint32_t idx, gen;
	struct shm_caps *t = w->shm->caps;
	if (t == NULL || pr_key_parse(key, ver, &r) < 0)
		return 0;
	/* G7: remote rows hold no entry; one evicted since is decided
	 * by caps_cache's names (cached) */
	if (shm_caps_lookup(t, r.algo, (uint8_t)r.v2, r.ver, &idx, &gen) !=
	    IPC_CAPS_VERIFIED)
		return cached;
	uint64_t h = shm_caps_hash(t, node, strlen(node));
	if (!shm_caps_wants(t, idx, (uint16_t)gen, h))
		return 0;
	/* in use: not evicted as idle (local sessions' entries are
	 * touched by caps_ext.c's tick) */
	shm_caps_touch(t, idx, (uint16_t)gen, w->now_ms);
	if (old != NULL && shm_caps_lookup(t, old->algo, (uint8_t)old->v2,
					   old->ver, &idx, &gen) ==
	    IPC_CAPS_VERIFIED && shm_caps_wants(t, idx, (uint16_t)gen, h))
		return 0;
	return 1;
}

int pep_remote_wants(struct worker *w, const char *key, const char *ver,
		     const char *node, int cached)
{
	return pr_wants(w, key, ver, node, NULL, cached);
}

void pep_remote_route(struct worker *w, const char *text, size_t len)
{
	pr_route_text(w, text, len);
}

static void pr_last_result(void *ctx, const PGresult *res,
			   const char *error)
{
	struct pr_last *l = ctx;
	struct buf b;
	if (res == NULL) {
		log_info("pep: last items to other servers lost: %s",
			 error != NULL ? error : "database unavailable");
		free(l);
		return;
	}
	buf_init(&b, 0);
	for (int i = 0; i < PQntuples(res); i++) {
		const char *full = PQgetvalue(res, i, 0);
		if (strcmp(PQgetvalue(res, i, 8), "t") == 0 &&
		    (i + 1 == PQntuples(res) ||
		     strcmp(PQgetvalue(res, i + 1, 0), full) != 0))
			log_info("pep: last items to %s cut at "
				 "pep.max_last_items_bytes", full);
		if (!pr_wants(l->w, PQgetvalue(res, i, 1),
			      PQgetvalue(res, i, 2), PQgetvalue(res, i, 4),
			      l->has_old ? &l->old : NULL, 1))
			continue;
		if (pep_notify_last_text(&b, l->w, PQgetvalue(res, i, 3), full,
					 PQgetvalue(res, i, 4),
					 PQgetvalue(res, i, 5),
					 PQgetvalue(res, i, 6),
					 PQgetvalue(res, i, 7)) == 0)
			pr_route_text(l->w, buf_head(&b), buf_used(&b));
	}
	buf_free(&b);
	free(l);
}

/* Last items to the rows that match: by caps (r), by account and full
 * JID, by account and bare JID (NULL: any). */
static void pr_last(struct worker *w, const struct caps_ref *r,
		    const char *user, const char *domain, const char *full,
		    const char *bare, const struct caps_ref *old)
{
	char key[32];
	struct pr_last *l = calloc(1, sizeof(*l));
	if (l == NULL)
		return;
	l->w = w;
	if (old != NULL) {
		l->has_old = 1;
		l->old = *old;
	}
	if (r != NULL)
		caps_db_algo(r, key, sizeof(key));
	char max[24];
	snprintf(max, sizeof(max), "%llu",
		 (unsigned long long)w->cfg->pep_max_last_items_bytes);
	const char *params[7] = { r != NULL ? key : NULL,
				  r != NULL ? r->ver : NULL, user, domain,
				  full, bare, max };
	if (w->db == NULL || db_query(w->db, pr_last_sql, 7, params, NULL,
				      NULL, 0, pr_last_result, l) < 0) {
		log_info("pep: last items to other servers not sent: database "
			 "unavailable");
		free(l);
	}
}

/* j's caps are VERIFIED: its last items. */
static void pr_known(struct pr_job *j)
{
	if (j->quiet)
		return;
	pr_last(j->w, &j->ref, j->user, j->domain, j->full, NULL,
		j->has_old ? &j->old : NULL);
}

/* ---- resolving a row's caps ------------------------------------------ */

/* Park j (takes j): at most pep.remote_parked_max per worker, a
 * quarter of them for one remote domain (G11). */
static void pr_park(struct pr_job *j)
{
	struct worker *w = j->w;
	unsigned max = w->cfg->pep_remote_parked_max, same = 0;
	char d[IPC_JID_MAX + 1], e[IPC_JID_MAX + 1];
	pr_domain_of(j->full, d, sizeof(d));
	for (unsigned i = 0; i < pr_nparked; i++) {
		pr_domain_of(pr_parked[i]->full, e, sizeof(e));
		same += strcmp(d, e) == 0;
	}
	const char *why = pr_nparked >= max ? "pep.remote_parked_max" :
			  same >= pr_share(max) ?
			  "a quarter of pep.remote_parked_max for one server" :
			  NULL;
	if (why == NULL && pr_nparked == pr_parked_cap) {
		unsigned cap = pr_parked_cap > 0 ? 2 * pr_parked_cap : 16;
		struct pr_job **p = realloc(pr_parked, cap * sizeof(*p));
		if (p == NULL)
			why = "no memory";
		else {
			pr_parked = p;
			pr_parked_cap = cap;
		}
	}
	if (why != NULL) {
		if (w->now_ms - pr_park_log_ms >= 60000) {
			log_info("pep: caps of %s not resolved: %u wait "
				 "(%s; %u more refused in the last minute)",
				 j->full, pr_nparked, why, pr_park_quiet);
			pr_park_log_ms = w->now_ms;
			pr_park_quiet = 0;
		} else {
			pr_park_quiet++;
		}
		free(j);
		return;
	}
	j->deadline = w->now_ms + (int64_t)w->cfg->caps_query_timeout;
	pr_parked[pr_nparked++] = j;
}


static void pr_cache_result(void *ctx, const PGresult *res,
			    const char *error)
{
	struct pr_job *j = ctx;
	struct worker *w = j->w;
	(void)error;
	int found = res != NULL && PQntuples(res) > 0 &&
		    PQnfields(res) == 3 && !PQgetisnull(res, 0, 2);
	if (found && w->shm->caps != NULL) {
		uint64_t h[IPC_CAPS_NOTIFY_MAX];
		unsigned k = 0;
		uint32_t idx, gen;
		for (int i = 0; i < PQntuples(res) && k < IPC_CAPS_NOTIFY_MAX;
		     i++)
			if (!PQgetisnull(res, i, 0))
				h[k++] = shm_caps_hash(w->shm->caps,
						       PQgetvalue(res, i, 0),
						       strlen(PQgetvalue(res, i,
									 0)));
		if (shm_caps_verified(w->shm->caps, j->ref.algo,
				      (uint8_t)j->ref.v2, j->ref.ver, h, k,
				      w->now_ms,
				      (int64_t)w->cfg->caps_idle_timeout,
				      &idx, &gen) == 0) {
			pr_known(j);
			free(j);
			return;
		}
	}
	long long recent = !found && res != NULL && PQntuples(res) > 0 &&
		PQnfields(res) == 3 && !PQgetisnull(res, 0, 1) ?
		atoll(PQgetvalue(res, 0, 1)) : 0;
	int budget_ok = found ||
		recent < (long long)w->cfg->caps_max_new_per_domain_hour;
	if (!budget_ok) {
		char d[IPC_JID_MAX + 1];
		pr_domain_of(j->full, d, sizeof(d));
		if (pr_budget_log_ms == 0 ||
		    w->now_ms - pr_budget_log_ms >= 3600000) {
			pr_budget_log_ms = w->now_ms;
			log_info("pep: caps of %s: %lld new caps vers from %s "
				 "cached in the last hour "
				 "(caps.max_new_per_domain_hour): %s not "
				 "queried", j->full, recent, d, j->ref.ver);
		}
	}
	if (budget_ok && pr_rate_ok(w, j->full)) {
		pr_send_query(w, j);
		pr_park(j);     /* the answer may come on another worker */
	} else {
		uint32_t idx, gen;
		if (shm_caps_lookup(w->shm->caps, j->ref.algo,
				    (uint8_t)j->ref.v2, j->ref.ver, &idx,
				    &gen) == IPC_CAPS_PENDING)
			shm_caps_abandon(w->shm->caps, idx, gen);
		free(j);
	}
}

/* Resolve j's caps (takes j). */
static void pr_resolve(struct pr_job *j)
{
	struct worker *w = j->w;
	uint32_t idx, gen;
	char key[32];
	if (w->shm->caps == NULL) {
		free(j);
		return;
	}
	int v = shm_caps_begin(w->shm->caps, j->ref.algo, (uint8_t)j->ref.v2,
			       j->ref.ver, w->now_ms,
			       (int64_t)w->cfg->caps_query_timeout,
			       (int64_t)w->cfg->caps_idle_timeout, &idx, &gen);
	switch (v) {
	case SHM_CAPS_KNOWN:
		pr_known(j);
		free(j);
		return;
	case SHM_CAPS_ASK: {
		caps_db_algo(&j->ref, key, sizeof(key));
		char budget[IPC_JID_MAX + 16];
		pr_budget_key(j->full, budget, sizeof(budget));
		const char *params[3] = { key, j->ref.ver, budget };
		if (w->db != NULL &&
		    db_query(w->db, caps_lookup_sql, 3, params, NULL, NULL, 0,
			     pr_cache_result, j) == 0)
			return;
		pr_cache_result(j, NULL, "database unavailable");
		return;
	}
	case SHM_CAPS_WAIT:
		pr_park(j);
		return;
	default:
		log_debug("pep: caps of %s not resolved (%d)", j->full, v);
		free(j);
		return;
	}
}

static const char pr_expire_sql[] =
	"DELETE FROM pep_remote_presence WHERE updated_at < now() - "
	"$1::bigint * interval '1 millisecond'";
static void pr_ignore(void *ctx, const PGresult *res, const char *error);

/* Rows half-way to pep.remote_presence_ttl (review 13c H2): a contact
 * whose presence did not change while its account stayed online (a
 * resumed session sends no new probes) would drop out of the events.
 * Worker 0 probes it from the account's bare JID (RFC 6121 4.3), at
 * most PR_REFRESH_MAX_S bare JIDs a turn; the answers renew the rows as
 * any presence does, and a resource that is gone answers nothing and
 * expires. */
#define PR_REFRESH_MAX_S "500"
static const char pr_refresh_sql[] =
	"SELECT DISTINCT a.username || '@' || a.domain, r.bare_jid "
	"FROM pep_remote_presence r JOIN accounts a ON a.id = r.account_id "
	"WHERE r.updated_at < now() - $1::bigint / 2 * interval "
	"'1 millisecond' LIMIT " PR_REFRESH_MAX_S;

static void pr_refresh_result(void *ctx, const PGresult *res,
			      const char *error)
{
	struct worker *w = ctx;
	if (res == NULL) {
		log_info("pep: remote recipients not probed: %s",
			 error != NULL ? error : "database unavailable");
		return;
	}
	struct buf b;
	buf_init(&b, 0);
	int probed = 0;
	for (int i = 0; i < PQntuples(res); i++) {
		const char *account = PQgetvalue(res, i, 0);
		int n, online = 0;
		struct session_info *heap;
		struct session_info *ss = route_sessions(w, account, &n, &heap);
		for (int k = 0; k < n && !online; k++)
			online = ss[k].available;
		route_sessions_done(heap);
		if (!online)
			continue;       /* its next login probes anyway */
		buf_consume(&b, buf_used(&b));
		const char *to = PQgetvalue(res, i, 1);
		buf_appendf(&b, "<presence from='");
		xml_escape(&b, account, strlen(account), 1);
		buf_appendf(&b, "' to='");
		xml_escape(&b, to, strlen(to), 1);
		buf_appendf(&b, "' type='probe'/>");
		pr_route_text(w, buf_head(&b), buf_used(&b));
		probed++;
	}
	buf_free(&b);
	if (probed > 0)
		log_info("pep: %d contacts on other servers probed: their "
			 "presence is half-way to pep.remote_presence_ttl",
			 probed);
}

/* Parked rows whose ver became VERIFIED get their last items; those
 * waiting past caps.query_timeout are dropped (their next presence
 * tries again). */
static void pr_tick(struct worker *w, int64_t now_ms)
{
	unsigned k = 0;
	for (unsigned i = 0; i < pr_nparked; i++) {
		struct pr_job *j = pr_parked[i];
		uint32_t idx, gen;
		int st = w->shm->caps != NULL ?
			 shm_caps_lookup(w->shm->caps, j->ref.algo,
					 (uint8_t)j->ref.v2, j->ref.ver, &idx,
					 &gen) : -1;
		if (st == IPC_CAPS_VERIFIED) {
			pr_known(j);
			free(j);
		} else if (now_ms >= j->deadline || st == IPC_CAPS_INVALID) {
			log_debug("pep: caps of %s not known in time", j->full);
			free(j);
		} else {
			pr_parked[k++] = j;
		}
	}
	pr_nparked = k;
	/* G5: worker 0 deletes rows past pep.remote_presence_ttl (their
	 * unavailable was lost); events skip them already */
	if (w->slot == 0 && w->db != NULL && db_is_up(w->db) &&
	    !w->stopping && now_ms - pr_expire_ms > 300000) {
		char ttl[24];
		snprintf(ttl, sizeof(ttl), "%llu",
			 (unsigned long long)w->cfg->pep_remote_presence_ttl);
		const char *params[1] = { ttl };
		pr_expire_ms = now_ms;
		db_query(w->db, pr_expire_sql, 1, params, NULL, NULL, 0,
			 pr_ignore, NULL);
		db_query(w->db, pr_refresh_sql, 1, params, NULL, NULL, 0,
			 pr_refresh_result, w);
	}
}

/* ---- presence from other servers --------------------------------------- */

static const char pr_upsert_sql[] =
	"SELECT status, old_algo, old_ver FROM xmppd_pep_remote_presence("
	"$1, $2, $3, $4, $5, $6, $7::int, $8::int, $9::bigint)";
/* G5: a presence without caps renews the row (pep.remote_presence_ttl) */
static const char pr_renew_sql[] =
	"UPDATE pep_remote_presence SET updated_at = now() WHERE account_id = "
	"xmppd_account_id($1, $2) AND full_jid = $3";
static const char pr_gone_sql[] =
	"DELETE FROM pep_remote_presence WHERE account_id = "
	"xmppd_account_id($1, $2) AND (full_jid = $3 OR bare_jid = $3)";
static const char pr_bare_gone_sql[] =
	"DELETE FROM pep_remote_presence WHERE account_id = "
	"xmppd_account_id($1, $2) AND bare_jid = $3";

static void pr_ignore(void *ctx, const PGresult *res, const char *error)
{
	(void)ctx;
	(void)res;
	if (error != NULL)
		log_info("pep: remote recipients not updated: %s", error);
}

static void pr_upsert_result(void *ctx, const PGresult *res,
			     const char *error)
{
	struct pr_job *j = ctx;
	if (res == NULL || PQntuples(res) != 1) {
		log_info("pep: remote recipient %s of %s@%s not recorded: %s",
			 j->full, j->user, j->domain, res == NULL && error ?
			 error : "no answer");
		free(j);
		return;
	}
	const char *status = PQgetvalue(res, 0, 0);
	if (strcmp(status, "full") == 0 || strcmp(status, "full-jid") == 0) {
		struct worker *w = j->w;
		if (w->now_ms - pr_full_log_ms >= 60000) {
			int all = strcmp(status, "full") == 0;
			log_info("pep: remote recipients of %s@%s full (%s %u): "
				 "%s gets no events (%u more in the last "
				 "minute)", j->user, j->domain,
				 all ? "pep.max_remote_recipients" :
				 "pep.max_remote_resources of its bare JID",
				 all ? w->cfg->pep_max_remote_recipients :
				 w->cfg->pep_max_remote_resources, j->full,
				 pr_full_quiet);
			pr_full_log_ms = w->now_ms;
			pr_full_quiet = 0;
		} else {
			pr_full_quiet++;
		}
	} else if (strcmp(status, "changed") == 0) {
		j->has_old = pr_key_parse(PQgetvalue(res, 0, 1),
					  PQgetvalue(res, 0, 2), &j->old) == 0;
		pr_resolve(j);
		return;
	} else if (strcmp(status, "new") == 0) {
		pr_resolve(j);
		return;
	} else if (strcmp(status, "same") == 0 && j->w->shm->caps != NULL) {
		/* its ver left the shared table (evicted while no local
		 * session used it): known again, no last items twice */
		uint32_t idx, gen;
		if (shm_caps_lookup(j->w->shm->caps, j->ref.algo,
				    (uint8_t)j->ref.v2, j->ref.ver, &idx,
				    &gen) != IPC_CAPS_VERIFIED) {
			j->quiet = 1;
			pr_resolve(j);
			return;
		}
	}
	free(j);
}

/* 0 when from is a full JID on another domain (bare into out). */
static int pr_remote_jid(struct worker *w, const char *from, char *bare,
			 size_t size)
{
	const char *at = strchr(from, '@');
	size_t n = strcspn(from, "/");
	if (at == NULL || (size_t)(at - from) > n || n >= size)
		return -1;
	memcpy(bare, from, n);
	bare[n] = '\0';
	return stream_hosted(w, bare + (at - from) + 1) ? -1 : 0;
}

static void pr_presence(struct worker *w, const struct xml_node *st,
			const char *bare)
{
	const char *from = xml_attr(st, "from");
	const char *type = xml_attr(st, "type");
	char fbare[IPC_JID_MAX + 1];
	char user[IPC_JID_MAX + 1], domain[IPC_JID_MAX + 1];
	if (from == NULL || strlen(from) > IPC_JID_MAX ||
	    pr_remote_jid(w, from, fbare, sizeof(fbare)) < 0 ||
	    pr_split(bare, user, domain) < 0 || w->db == NULL)
		return;
	if (type != NULL) {
		if (strcmp(type, "unavailable") != 0 &&
		    strcmp(type, "error") != 0)
			return;
		const char *params[3] = { user, domain, from };
		db_query(w->db, pr_gone_sql, 3, params, NULL, NULL, 0,
			 pr_ignore, NULL);
		return;
	}
	struct caps_ref r;
	if (strchr(from, '/') == NULL || w->cfg->pep_max_remote_recipients == 0)
		return;
	if (!caps_parse_presence(st, &r)) {
		/* no <c/>: the caps stay (pep-plan 1.7), the row is renewed */
		const char *params[3] = { user, domain, from };
		db_query(w->db, pr_renew_sql, 3, params, NULL, NULL, 0,
			 pr_ignore, NULL);
		return;
	}
	struct pr_job *j = calloc(1, sizeof(*j));
	if (j == NULL)
		return;
	j->w = w;
	strcpy(j->user, user);
	strcpy(j->domain, domain);
	strcpy(j->full, from);
	j->ref = r;
	char key[32], max[16], maxres[16], ttl[24];
	caps_db_algo(&r, key, sizeof(key));
	snprintf(max, sizeof(max), "%u", w->cfg->pep_max_remote_recipients);
	snprintf(maxres, sizeof(maxres), "%u",
		 w->cfg->pep_max_remote_resources);
	snprintf(ttl, sizeof(ttl), "%llu",
		 (unsigned long long)w->cfg->pep_remote_presence_ttl);
	const char *params[9] = { user, domain, from, fbare, key, r.ver, max,
				  maxres, ttl };
	if (db_query(w->db, pr_upsert_sql, 9, params, NULL, NULL, 0,
		     pr_upsert_result, j) < 0) {
		log_info("pep: remote recipient %s of %s not recorded: "
			 "database unavailable", from, bare);
		free(j);
	}
}

/* ---- answers to our caps queries --------------------------------------- */

static void pr_iq_result(struct worker *w, const struct xml_node *st,
			 const char *bare)
{
	const char *id = xml_attr(st, "id");
	const char *from = xml_attr(st, "from");
	const char *type = xml_attr(st, "type");
	int algo, v2, used = 0;
	unsigned long long t;
	if (id == NULL || strncmp(id, "pepr-", 5) != 0 || from == NULL ||
	    type == NULL || w->shm->caps == NULL)
		return;
	if (sscanf(id, "pepr-%d-%d-%llx-%n", &algo, &v2, &t, &used) != 3 ||
	    used == 0 || strlen(id + used) != 16 ||
	    (v2 != 0 && v2 != 1) || algo < CAPS_SHA1 || algo > CAPS_SHA512) {
		log_debug("pep: answer of %s with id %s: not ours", from, id);
		return;
	}
	const struct xml_node *q = xml_child(st, NS_DISCO_INFO, "query");
	const char *node = q != NULL ? xml_attr(q, "node") : NULL;
	char head[64], mac[17];
	struct caps_ref r;
	if (strcmp(type, "error") == 0) {
		/* an error need not carry the query: nothing to check it
		 * against, so it changes nothing (the PENDING entry times
		 * out and the ver is asked of the next JID that has it) */
		log_info("pep: caps query to %s answered with an error", from);
		return;
	}
	if (node == NULL ||
	    caps_node_parse(node, (enum caps_algo)algo, v2, &r) < 0) {
		log_info("pep: caps answer of %s: not the node asked", from);
		return;
	}
	snprintf(head, sizeof(head), "%.*s", used - 1, id);
	pr_mac(w, from, bare, node, head, mac);
	if (sodium_memcmp(mac, id + used, 16) != 0) {
		log_info("pep: caps answer of %s with id %s: not a query of "
			 "ours to it, ignored", from, id);
		return;
	}
	/* the id's time is the sending worker's loop clock (monotonic,
	 * one for the machine; another worker's loop turn may have
	 * started a moment before the query was sent) */
	if ((int64_t)t > w->now_ms + 5000 ||
	    w->now_ms - (int64_t)t > (int64_t)w->cfg->caps_query_timeout) {
		log_info("pep: caps answer of %s came too late, ignored", from);
		return;
	}
	/* verified here; the rows parked on this worker for the ver get
	 * their last items now, those parked on other workers (the one
	 * that sent the query, when the answer came through another
	 * worker's stream) at their next tick */
	/* G3: charged to the remote domain (caps.max_new_per_domain_hour),
	 * never to the local account */
	uint32_t idx, gen;
	char budget[IPC_JID_MAX + 16];
	pr_budget_key(from, budget, sizeof(budget));
	if (caps_answer_remote(w, q, &r, from, budget, &idx, &gen) == 1)
		pr_tick(w, w->now_ms);  /* this worker's at once */
}

/* ---- bounces, subscriptions -------------------------------------------- */

static void pr_message(struct worker *w, struct xml_node *st,
		       const char *bare)
{
	const char *type = xml_attr(st, "type");
	if (type == NULL || strcmp(type, "error") != 0)
		return;
	const char *id = xml_attr(st, "id");
	const char *from = xml_attr(st, "from");
	char fbare[IPC_JID_MAX + 1];
	char user[IPC_JID_MAX + 1], domain[IPC_JID_MAX + 1];
	if (id == NULL || strncmp(id, "pep-", 4) != 0 || from == NULL ||
	    strlen(from) > IPC_JID_MAX || strchr(from, '/') == NULL ||
	    pr_remote_jid(w, from, fbare, sizeof(fbare)) < 0 ||
	    pr_split(bare, user, domain) < 0 || w->db == NULL)
		return;
	const struct xml_node *e = xml_child(st, NULL, "error");
	const char *etype = e != NULL ? xml_attr(e, "type") : NULL;
	int gone = e != NULL && xml_child(e, NS_STANZAS, "gone") != NULL;
	if (!gone && (etype == NULL || strcmp(etype, "cancel") != 0)) {
		log_debug("pep: event %s to %s bounced (%s): ignored", id,
			  from, etype != NULL ? etype : "no type");
		return;
	}
	log_info("pep: event %s to %s of %s bounced (%s): no more events to "
		 "it", id, from, bare, gone ? "gone" : "cancel");
	const char *params[3] = { user, domain, from };
	db_query(w->db, pr_gone_sql, 3, params, NULL, NULL, 0, pr_ignore,
		 NULL);
}

static void pr_subscription(struct worker *w, const char *bare,
			    const char *contact, const struct pg_result *res,
			    int col, int approved_col)
{
	char user[IPC_JID_MAX + 1], domain[IPC_JID_MAX + 1];
	char cbare[IPC_JID_MAX + 1];
	(void)approved_col;
	if (res == NULL || PQntuples(res) < 1 || strlen(contact) > IPC_JID_MAX ||
	    pr_remote_jid(w, contact, cbare, sizeof(cbare)) < 0 ||
	    pr_split(bare, user, domain) < 0 || w->db == NULL)
		return;
	const char *sub = PQgetvalue(res, 0, col);
	if (strcmp(sub, "none") == 0) {
		const char *params[3] = { user, domain, contact };
		db_query(w->db, pr_bare_gone_sql, 3, params, NULL, NULL, 0,
			 pr_ignore, NULL);
		return;
	}
	if (pep_notify_gained(res, col))
		pr_last(w, NULL, user, domain, NULL, contact, NULL);
}

/* ---- the extension (ext.h) --------------------------------------------- */

static const char *const pr_config[] = {
	"pep.max_remote_recipients", "pep.remote_caps_queries_per_minute",
	"caps.max_new_per_domain_hour", "pep.remote_presence_ttl",
	"pep.max_remote_resources", "pep.remote_parked_max",
	NULL,
};
static const char *const pr_schema[] = { "012-pep-remote.sql",
					 "017-pep-remote-bounds.sql", NULL };

const struct ext pep_remote_ext = {
	.name = "pep_remote",
	.config_keys = pr_config,
	.schema = pr_schema,
	.presence_to_account = pr_presence,
	.iq_result_to_account = pr_iq_result,
	.message_to_account = pr_message,
	.subscription_changed = pr_subscription,
	.tick = pr_tick,
};

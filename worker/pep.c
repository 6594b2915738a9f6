/*
 * pep.c - XEP-0163 personal eventing: every account's bare JID is an
 * XEP-0060 service (worker/pubsub.c parses the requests), its nodes and
 * items in PostgreSQL (db/schema/007-pep.sql, one locking statement per
 * request).  Defaults of a new node are XEP-0163 section 5's
 * (pubsub_form_defaults); publish auto-creates with publish-options as
 * preconditions (XEP-0060 section 7.1.5).  Only the owner publishes,
 * retracts, configures; reads follow the node's access model (open,
 * presence = a contact with from/both, roster = and in an allowed group,
 * whitelist = member affiliation).  Disco#info and #items of the bare
 * JID for anyone but the account itself are answered here (server.c
 * answers the account's own node-less disco#info).
 * pep_event() is the one place where a publish, retract, purge,
 * delete or configuration change is complete (node configuration, item
 * id, payload): its events go out from there (worker/pep_notify.c), to
 * the presence-based recipients and to the explicit subscribers.
 * Subscriptions (subscribe, unsubscribe, the owner's set;
 * 011-pep-subscribe.sql): one per JID and node, no subid, no options,
 * at most pep.max_subscriptions per node and
 * pep.max_subscriptions_per_jid per node and subscriber bare JID
 * (016-pep-sub-bounds.sql); subscriber JIDs are not in the owner's
 * pep.max_account_bytes (subscribers choose them).
 * Failure policy: every get and set is answered; a database failure
 * answers a stanza error (pep_fail) and the stream goes on; a refused
 * request logs one line with its reason.
 */
#include "worker.h"
#include "../db/db.h"
#include "config.h"
#include "ext.h"
#include "iq.h"
#include "jid.h"
#include "log.h"
#include "pep.h"
#include "pubsub.h"
#include "server.h"
#include "stanza.h"

#include <stdio.h>
#include <string.h>

#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"
/* The request in flight (in the iq_pending's arena). */
struct pep_req {
	const char *bare;               /* the service: the account */
	const char *user, *domain;
	const char *requester;          /* bare JID of the sender */
	struct pubsub_req r;
	const char *payload;            /* publish: serialized */
	const char *item_id;            /* publish: given or generated */
	void (*then)(struct iq_pending *, struct pep_req *);   /* pep_gate */
	void (*result)(struct iq_pending *, struct pep_req *,  /* pep_query */
		       const PGresult *);
	int status;     /* pep_run: the statement's first row is a status */
};

static unsigned pep_ids;                /* this worker's item id counter */

/* ---- notifications (pep_notify.c) ---------------------------------- */

/* A change is stored: its events go out (XEP-0163 section 4, XEP-0060
 * section 7.1.2.1, 7.2.2.1, 8.4.2, 8.5.2).  The IQ result is already
 * routed when this runs. */
static void pep_event(struct worker *w, const struct pep_event *ev)
{
	pep_notify_event(w, ev);
	pep_notify_subscribers(w, ev);
}

/* ---- replies ------------------------------------------------------- */

void pep_db_fail(struct iq_pending **p, const char *what, const char *error)
{
	struct db *db = (*p)->w->db;
	if (error == NULL || db == NULL || !db_is_up(db)) {
		iq_reply_error(p, "wait", "resource-constraint");
		return;
	}
	log_error("%s query failed: %s", what, error);
	iq_reply_error(p, "cancel", "internal-server-error");
}

static void pep_fail(struct iq_pending **p, const char *error)
{
	pep_db_fail(p, "pep", error);
}

/* The IQ error e with the pubsub#errors element, and a <text/> why. */
static void pep_error(struct iq_pending **p, enum pubsub_error e,
		      const char *why)
{
	const struct pubsub_error_desc *d = pubsub_error_of(e);
	struct buf out;
	buf_init(&out, 0);
	buf_appendf(&out, "<error type='%s'><%s xmlns='" NS_STANZA_ERR "'/>",
		    d->type, d->cond);
	if (why != NULL) {
		buf_appendf(&out, "<text xmlns='" NS_STANZA_ERR "'>");
		xml_escape(&out, why, strlen(why), 0);
		buf_appendf(&out, "</text>");
	}
	if (d->app != NULL)
		buf_appendf(&out, "%s", d->app);
	buf_appendf(&out, "</error>");
	buf_append(&out, "", 1);
	if (why != NULL)
		log_info("pep: %s (%s) refused: %s: %s", (*p)->from, (*p)->to,
			 d->cond, why);
	iq_reply_error_xml(p, buf_head(&out));
	buf_free(&out);
}

static void pep_attr(struct buf *out, const char *name, const char *v)
{
	buf_appendf(out, " %s='", name);
	xml_escape(out, v, strlen(v), 1);
	buf_append(out, "'", 1);
}

static void pep_reply(struct iq_pending **p, struct buf *out)
{
	if (buf_append(out, "", 1) < 0)
		iq_reply_error(p, "wait", "resource-constraint");
	else
		iq_reply_result(p, buf_head(out));
	buf_free(out);
}

/* ---- the database ------------------------------------------------ */

/* Every query's answer: a failed one is answered here, else it goes to
 * the result function pep_query was given (res is never NULL there). */
static int pep_status_error(struct iq_pending **p, const PGresult *res);

static void pep_result(void *ctx, const PGresult *res, const char *error)
{
	struct iq_pending *p = ctx;
	struct pep_req *q = p->data;
	if (res == NULL) {
		pep_fail(&p, error);
		return;
	}
	if (q->status && pep_status_error(&p, res))
		return;
	q->result(p, q, res);
}

typedef void pep_result_fn(struct iq_pending *, struct pep_req *,
			   const PGresult *);

static void pep_query_as(struct iq_pending *p, const char *sql, int n,
			 const char *const *params, pep_result_fn *result,
			 int status)
{
	struct pep_req *q = p->data;
	q->result = result;
	q->status = status;
	if (p->w->db == NULL ||
	    db_query(p->w->db, sql, n, params, NULL, NULL, 0, pep_result,
		     p) < 0)
		pep_fail(&p, NULL);
}

static void pep_query(struct iq_pending *p, const char *sql, int n,
		      const char *const *params, pep_result_fn *result)
{
	pep_query_as(p, sql, n, params, result, 0);
}

/* An xmppd_pep_* statement, whose first row is a status: result runs
 * on "ok" only (pep_status_error answers the others). */
static void pep_run(struct iq_pending *p, const char *sql, int n,
		    const char *const *params, pep_result_fn *result)
{
	pep_query_as(p, sql, n, params, result, 1);
}

/* The common statuses of the xmppd_pep_* functions: 1 when answered. */
static int pep_status_error(struct iq_pending **p, const PGresult *res)
{
	if (PQntuples(res) < 1) {
		pep_fail(p, "no status row");
		return 1;
	}
	const char *s = PQgetvalue(res, 0, 0);
	if (strcmp(s, "precondition") == 0) {       /* publish: the field */
		char why[160];
		snprintf(why, sizeof(why), "pubsub#%.100s differs from the "
			 "node's configuration", PQgetvalue(res, 0, 1));
		pep_error(p, PUBSUB_E_PRECONDITION, why);
		return 1;
	}
	if (strcmp(s, "account-bytes") == 0) {
		log_info("pep: %s refused: pep.max_account_bytes (%llu) "
			 "reached", (*p)->from, (unsigned long long)
			 (*p)->w->cfg->pep_max_account_bytes);
		iq_reply_error_text(p, "modify", "not-acceptable",
				    "PEP storage quota of the account "
				    "reached");
		return 1;
	}
	if (strcmp(s, "max-affiliations") == 0) {   /* owner affiliations */
		/* a local bound of the service on what it keeps, as
		 * XEP-0060's too-many-subscriptions: policy-violation */
		char text[96];
		unsigned max = (*p)->w->cfg->pep_max_affiliations;
		snprintf(text, sizeof(text), "at most %u affiliations per "
			 "node", max);
		log_info("pep: %s: affiliations refused: pep.max_affiliations "
			 "(%u) reached", (*p)->from, max);
		iq_reply_error_text(p, "modify", "policy-violation", text);
		return 1;
	}
	if (strcmp(s, "max-jid") == 0) {    /* subscribe (REVIEW-13b G2) */
		char why[120];
		snprintf(why, sizeof(why), "pep.max_subscriptions_per_jid "
			 "(%u) of the subscriber reached",
			 (*p)->w->cfg->pep_max_subscriptions_per_jid);
		pep_error(p, PUBSUB_E_TOO_MANY_SUBS, why);
		return 1;
	}
	if (strcmp(s, "max-subs") == 0) {   /* subscribe, subscriptions set */
		char why[120];
		snprintf(why, sizeof(why), "pep.max_subscriptions (%u) of the "
			 "node reached", (*p)->w->cfg->pep_max_subscriptions);
		pep_error(p, PUBSUB_E_TOO_MANY_SUBS, why);
		return 1;
	}
	struct { const char *status; enum pubsub_error e; const char *why; }
	map[] = {
		{ "not-subscribed", PUBSUB_E_NOT_SUBSCRIBED,
		  "no such subscription" },
		{ "no-account", PUBSUB_E_SERVICE_UNAVAILABLE, NULL },
		{ "no-node", PUBSUB_E_ITEM_NOT_FOUND, NULL },
		{ "no-item", PUBSUB_E_ITEM_NOT_FOUND, NULL },
		{ "rsm-no-item", PUBSUB_E_ITEM_NOT_FOUND,
		  "no such item for RSM after or before" },
		{ "exists", PUBSUB_E_CONFLICT, "the node exists" },
		{ "max-nodes", PUBSUB_E_MAX_NODES, "pep.max_nodes reached" },
		{ "presence", PUBSUB_E_PRESENCE_REQUIRED, NULL },
		{ "roster", PUBSUB_E_NOT_IN_GROUP, NULL },
		{ "whitelist", PUBSUB_E_CLOSED_NODE, NULL },
		{ "outcast", PUBSUB_E_FORBIDDEN, NULL },
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(s, map[i].status) == 0) {
			pep_error(p, map[i].e, map[i].why);
			return 1;
		}
	if (strcmp(s, "ok") != 0) {
		pep_fail(p, "unknown status");
		return 1;
	}
	return 0;
}

/* The ids a publish trimmed (text[] literal lit) into ev, from arena a:
 * every one of them is told as a <retract/> (REVIEW-13b G10), as long as
 * their <retract id=''/> elements stay within half of
 * c2s.max_stanza_size (what a client may send us in one stanza bounds
 * one event we send; max_bytes); the ids past it are logged, not told.
 * -1: unreadable. */
static int pep_trimmed(struct arena *a, const char *lit, uint64_t max_bytes,
		       struct pep_event *ev)
{
	size_t n = 1;
	ev->ntrimmed = 0;
	for (const char *s = lit; *s != '\0'; s++)
		n += *s == ',';
	const char **ids = arena_alloc(a, n * sizeof(*ids));
	int got = ids != NULL ? pubsub_form_array(a, lit, ids, (int)n) : -1;
	if (got < 0)
		return -1;
	ev->trimmed = ids;
	uint64_t bytes = 0;
	int told = 0;
	for (; told < got; told++) {
		/* <retract id='...'/>, escaping at most 6 bytes a byte */
		bytes += 16 + 6 * (uint64_t)strlen(ids[told]);
		if (bytes > max_bytes)
			break;
	}
	ev->ntrimmed = told;
	if (told < got)
		log_warn("pep: %s node %s: %d trimmed items told as retracts, "
			 "%d not (half of c2s.max_stanza_size, %llu bytes, "
			 "bounds one event)", ev->owner, ev->node, told,
			 got - told, (unsigned long long)max_bytes);
	return 0;
}

/* The configuration text[] and groups text[] columns into cfg. */
static int pep_config_of(struct arena *a, const PGresult *res, int col,
			 int gcol, struct pubsub_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	if (pubsub_form_array(a, PQgetvalue(res, 0, col), cfg->v,
			      PUBSUB_F_COUNT) != PUBSUB_F_COUNT)
		return -1;
	int n = pubsub_form_array(a, PQgetvalue(res, 0, gcol), cfg->groups,
				  PUBSUB_MAX_GROUPS);
	if (n < 0)
		return -1;
	cfg->ngroups = (unsigned)n;
	cfg->groups_set = 1;
	return 0;
}

static void pep_service(const struct config *cfg, struct pubsub_service *s,
			const char *bare)
{
	memset(s, 0, sizeof(*s));
	s->jid = bare;
	s->owner_only_publish = 1;
	s->lim.max_items = cfg->pep_max_items;
	s->lim.max_item_size = cfg->pep_max_item_size;
	s->max_ids = cfg->pep_max_items;     /* more ids than items: no use */
	s->max_id_length = (size_t)cfg->pep_max_id_length;
}

/* The fields given as a text[] literal, and the groups (NULL: none
 * given), in a's memory. */
static int pep_cfg_params(struct arena *a, const struct pubsub_config *cfg,
			  const char **v_r, const char **g_r)
{
	struct buf b;
	buf_init(&b, 0);
	if (pubsub_form_array_literal(&b, cfg->v, PUBSUB_F_COUNT) < 0 ||
	    buf_append(&b, "", 1) < 0)
		return buf_free(&b), -1;
	*v_r = arena_strdup(a, buf_head(&b));
	buf_consume(&b, buf_used(&b));
	*g_r = NULL;
	if (cfg->groups_set) {
		if (pubsub_form_array_literal(&b, cfg->groups, cfg->ngroups) < 0 ||
		    buf_append(&b, "", 1) < 0)
			return buf_free(&b), -1;
		*g_r = arena_strdup(a, buf_head(&b));
	}
	buf_free(&b);
	return *v_r == NULL || (cfg->groups_set && *g_r == NULL) ? -1 : 0;
}

/* ---- publish ------------------------------------------------------- */

static const char pep_publish_sql[] =
	"SELECT status, detail, created, trimmed, config, roster_groups, "
	"subscribers FROM xmppd_pep_publish($1, $2, $3, $4, $5, $6, $7::text[], "
	"$8::text[], $9::int, $10::int, $11::bigint)";

static void pep_publish_result(struct iq_pending *p, struct pep_req *q,
			       const PGresult *res)
{
	struct pep_event ev;
	memset(&ev, 0, sizeof(ev));
	ev.kind = PEP_EV_ITEM;
	ev.owner = q->bare;
	ev.publisher = p->from;
	ev.node = q->r.node;
	ev.item_id = q->item_id;
	ev.payload = q->payload;
	if (!PQgetisnull(res, 0, 6))
		ev.subscribers = PQgetvalue(res, 0, 6);
	if (pep_trimmed(&p->arena, PQgetvalue(res, 0, 3),
			p->w->cfg->max_stanza_size / 2, &ev) < 0)
		log_warn("pep: %s node %s: trimmed items unreadable; no "
			 "retract told", q->bare, q->r.node);
	/* the item is stored: the result whatever follows */
	int told = pep_config_of(&p->arena, res, 4, 5, &ev.cfg) == 0;
	if (!told)
		log_error("pep: %s node %s: stored, but its configuration is "
			  "unreadable; no events told", q->bare, q->r.node);
	struct buf out;
	buf_init(&out, 0);
	buf_appendf(&out, "<pubsub xmlns='" NS_PUBSUB "'><publish");
	pep_attr(&out, "node", q->r.node);
	buf_appendf(&out, "><item");
	pep_attr(&out, "id", q->item_id);
	buf_appendf(&out, "/></publish></pubsub>");
	/* the result first, then the events (the event's data lives in
	 * p's arena, freed after); an empty result when memory is short
	 * (XEP-0060 section 7.1.2 allows it: the item is stored) */
	iq_reply_result_keep(p, buf_append(&out, "", 1) == 0 ?
			     buf_head(&out) : NULL);
	buf_free(&out);
	if (told)
		pep_event(p->w, &ev);
	pep_compat_published(p->w, q->bare, q->r.node, q->payload);
	iq_pending_free(&p);
}

static void pep_publish(struct iq_pending *p, struct pep_req *q)
{
	const struct config *cfg = p->w->cfg;
	struct buf text;
	buf_init(&text, 0);
	if (xml_serialize(&text, q->r.payload, PEP_NO_NS) < 0 ||
	    buf_append(&text, "", 1) < 0) {
		buf_free(&text);
		iq_reply_error(&p, "wait", "resource-constraint");
		return;
	}
	if (buf_used(&text) - 1 > cfg->pep_max_item_size) {
		char why[120];
		snprintf(why, sizeof(why), "%zu bytes (pep.max_item_size %llu)",
			 buf_used(&text) - 1,
			 (unsigned long long)cfg->pep_max_item_size);
		buf_free(&text);
		pep_error(&p, PUBSUB_E_PAYLOAD_TOO_BIG, why);
		return;
	}
	q->payload = arena_strdup(&p->arena, buf_head(&text));
	buf_free(&text);
	q->item_id = q->r.item_id;
	if (q->item_id == NULL) {
		/* section 7.1.2: the service makes one, unique per node */
		char id[48];
		snprintf(id, sizeof(id), "%llx-%x-%x",
			 (unsigned long long)p->w->now_ms, p->w->slot,
			 ++pep_ids);
		q->item_id = arena_strdup(&p->arena, id);
	}
	const char *pre, *groups;
	char max_nodes[16], max_items[16], max_bytes[24];
	snprintf(max_nodes, sizeof(max_nodes), "%u", cfg->pep_max_nodes);
	snprintf(max_items, sizeof(max_items), "%u", cfg->pep_max_items);
	snprintf(max_bytes, sizeof(max_bytes), "%llu",
		 (unsigned long long)cfg->pep_max_account_bytes);
	if (q->payload == NULL || q->item_id == NULL ||
	    pep_cfg_params(&p->arena, &q->r.cfg, &pre, &groups) < 0) {
		iq_reply_error(&p, "wait", "resource-constraint");
		return;
	}
	const char *params[11] = { q->user, q->domain, q->r.node, q->item_id,
		q->payload, p->from, pre, groups, max_nodes, max_items,
		max_bytes };
	pep_run(p, pep_publish_sql, 11, params, pep_publish_result);
}

/* ---- items --------------------------------------------------------- */

static const char pep_items_sql[] =
	"SELECT status, config, item_id, payload FROM xmppd_pep_items($1, $2, "
	"$3, $4, $5::text[], $6::int, $7::bigint)";

/* <pubsub><items node='N'> with the rows after the status row (item_id
 * in column 2, payload in 3) into out; the number of rows. */
static int pep_items_text(struct buf *out, const struct pep_req *q,
			  const PGresult *res)
{
	buf_appendf(out, "<pubsub xmlns='" NS_PUBSUB "'><items");
	pep_attr(out, "node", q->r.node);
	int n = PQntuples(res);
	if (n <= 1) {
		buf_appendf(out, "/>");
		return n;
	}
	buf_appendf(out, ">");
	for (int i = 1; i < n; i++) {
		buf_appendf(out, "<item");
		pep_attr(out, "id", PQgetvalue(res, i, 2));
		buf_appendf(out, ">%s</item>", PQgetvalue(res, i, 3));
	}
	buf_appendf(out, "</items>");
	return n;
}

static void pep_items_result(struct iq_pending *p, struct pep_req *q,
			     const PGresult *res)
{
	struct buf out;
	buf_init(&out, 0);
	pep_items_text(&out, q, res);
	buf_appendf(&out, "</pubsub>");
	pep_reply(&p, &out);
}

/* XEP-0059 RSM on items (section 6.5.4; 015-pep-subs-flag.sql): the
 * page newest first, <set/> with first (its index: its place in the
 * set, 0 = the newest), last (none on an empty page) and count. */
static const char pep_items_rsm_sql[] =
	"SELECT status, config, item_id, payload, total, pos FROM "
	"xmppd_pep_items_rsm($1, $2, $3, $4, $5::text[], $6::int, $7::bigint, "
	"$8::int, $9, $10)";

static void pep_items_rsm_result(struct iq_pending *p, struct pep_req *q,
				 const PGresult *res)
{
	struct buf out;
	buf_init(&out, 0);
	int n = pep_items_text(&out, q, res);
	buf_appendf(&out, "<set xmlns='" NS_RSM "'>");
	if (n > 1) {
		const char *ends[2] = { PQgetvalue(res, 1, 2),
					PQgetvalue(res, n - 1, 2) };
		buf_appendf(&out, "<first index='%s'>", PQgetvalue(res, 1, 5));
		xml_escape(&out, ends[0], strlen(ends[0]), 0);
		buf_appendf(&out, "</first><last>");
		xml_escape(&out, ends[1], strlen(ends[1]), 0);
		buf_appendf(&out, "</last>");
	}
	buf_appendf(&out, "<count>%s</count></set></pubsub>",
		    PQgetvalue(res, 0, 4));
	pep_reply(&p, &out);
}

static void pep_items(struct iq_pending *p, struct pep_req *q)
{
	const char *ids = NULL;
	char last[16];
	snprintf(last, sizeof(last), "%u", q->r.max_items ? q->r.max_items :
		 p->w->cfg->pep_max_items);
	if (q->r.nids > 0) {
		struct buf b;
		buf_init(&b, 0);
		if (pubsub_form_array_literal(&b, q->r.ids, q->r.nids) == 0 &&
		    buf_append(&b, "", 1) == 0)
			ids = arena_strdup(&p->arena, buf_head(&b));
		buf_free(&b);
		if (ids == NULL) {
			iq_reply_error(&p, "wait", "resource-constraint");
			return;
		}
	}
	/* the reply, newest items first, stays well within what a client
	 * may leave unread (docs/DESIGN.md) */
	char max_bytes[24];
	snprintf(max_bytes, sizeof(max_bytes), "%llu", (unsigned long long)
		 (p->w->cfg->c2s_max_output_bytes / 2));
	const char *params[10] = { q->user, q->domain, q->r.node, q->requester,
				   ids, last, max_bytes, NULL, q->r.rsm_after,
				   q->r.rsm_before };
	if (!q->r.rsm) {
		pep_run(p, pep_items_sql, 7, params, pep_items_result);
		return;
	}
	char max[16];
	snprintf(max, sizeof(max), "%u", q->r.rsm_max_set ? q->r.rsm_max :
		 p->w->cfg->pep_max_items);
	params[7] = max;
	pep_run(p, pep_items_rsm_sql, 10, params, pep_items_rsm_result);
}

/* ---- retract, purge, delete --------------------------------------- */

static const char pep_remove_sql[] =
	"SELECT status, config, roster_groups, subscribers FROM "
	"xmppd_pep_remove($1, $2, $3, $4, $5)";

static void pep_remove_result(struct iq_pending *p, struct pep_req *q,
			      const PGresult *res)
{
	struct pep_event ev;
	memset(&ev, 0, sizeof(ev));
	ev.kind = q->r.op == PUBSUB_OP_RETRACT ? PEP_EV_RETRACT :
		  q->r.op == PUBSUB_OP_PURGE ? PEP_EV_PURGE : PEP_EV_DELETE;
	ev.owner = q->bare;
	ev.publisher = p->from;
	ev.node = q->r.node;
	ev.item_id = q->r.item_id;
	ev.notify = q->r.notify;
	if (!PQgetisnull(res, 0, 3))
		ev.subscribers = PQgetvalue(res, 0, 3);
	if (pep_config_of(&p->arena, res, 1, 2, &ev.cfg) < 0) {
		pep_fail(&p, "unreadable node configuration");
		return;
	}
	iq_reply_result_keep(p, NULL);
	pep_event(p->w, &ev);
	iq_pending_free(&p);
}

static void pep_remove(struct iq_pending *p, struct pep_req *q,
		       const char *op)
{
	const char *params[5] = { q->user, q->domain, q->r.node, op,
				  q->r.item_id };
	pep_run(p, pep_remove_sql, 5, params, pep_remove_result);
}

/* ---- create, configure, default ----------------------------------- */

static const char pep_configure_sql[] =
	"SELECT status, trimmed, config, roster_groups, subscribers FROM "
	"xmppd_pep_configure($1, $2, $3, $4::boolean, $5::text[], $6::text[], "
	"$7::int, $8::int, $9::bigint)";

static void pep_configure_result(struct iq_pending *p, struct pep_req *q,
				 const PGresult *res)
{
	/* items trimmed by a lower max_items are not retracted events; a
	 * configuration change tells <configuration/> with notify_config
	 * (section 8.2.5.3; not for a create) */
	struct pep_event ev;
	struct pubsub_service svc;
	memset(&ev, 0, sizeof(ev));
	if (q->r.op != PUBSUB_OP_CONFIGURE_SET ||
	    pep_config_of(&p->arena, res, 2, 3, &ev.cfg) < 0) {
		iq_reply_result(&p, NULL);
		return;
	}
	pep_service(p->w->cfg, &svc, q->bare);
	ev.kind = PEP_EV_CONFIG;
	if (!PQgetisnull(res, 0, 4))
		ev.subscribers = PQgetvalue(res, 0, 4);
	ev.owner = q->bare;
	ev.publisher = p->from;
	ev.node = q->r.node;
	ev.lim = &svc.lim;
	iq_reply_result_keep(p, NULL);
	pep_event(p->w, &ev);
	/* subscribers the new model does not admit go (section 4.5) */
	pep_notify_sub_prune(p->w, q->bare, q->r.node, NULL);
	iq_pending_free(&p);
}

static void pep_configure(struct iq_pending *p, struct pep_req *q,
			  int create)
{
	const struct config *cfg = p->w->cfg;
	const char *v, *groups;
	char max_nodes[16], max_items[16], max_bytes[24];
	if (pep_cfg_params(&p->arena, &q->r.cfg, &v, &groups) < 0) {
		iq_reply_error(&p, "wait", "resource-constraint");
		return;
	}
	snprintf(max_nodes, sizeof(max_nodes), "%u", cfg->pep_max_nodes);
	snprintf(max_items, sizeof(max_items), "%u", cfg->pep_max_items);
	snprintf(max_bytes, sizeof(max_bytes), "%llu",
		 (unsigned long long)cfg->pep_max_account_bytes);
	const char *params[9] = { q->user, q->domain, q->r.node,
		create ? "true" : "false", v, groups, max_nodes, max_items,
		max_bytes };
	pep_run(p, pep_configure_sql, 9, params, pep_configure_result);
}

static void pep_form_reply(struct iq_pending **p, const char *wrapper,
			   const char *node, const struct pubsub_config *c)
{
	struct pubsub_service s;
	struct buf out;
	pep_service((*p)->w->cfg, &s, "");
	buf_init(&out, 0);
	buf_appendf(&out, "<pubsub xmlns='" NS_PUBSUB_OWNER "'><%s", wrapper);
	if (node != NULL)
		pep_attr(&out, "node", node);
	buf_appendf(&out, ">");
	pubsub_form_render(&out, c, &s.lim);
	buf_appendf(&out, "</%s></pubsub>", wrapper);
	pep_reply(p, &out);
}

static const char pep_config_get_sql[] =
	"SELECT xmppd_pep_config(n), n.roster_groups FROM pubsub_nodes n "
	"WHERE n.service = $1 AND n.node = $2";

static void pep_config_get_result(struct iq_pending *p, struct pep_req *q,
				  const PGresult *res)
{
	struct pubsub_config c;
	if (PQntuples(res) == 0)
		pep_error(&p, PUBSUB_E_ITEM_NOT_FOUND, NULL);
	else if (pep_config_of(&p->arena, res, 0, 1, &c) < 0)
		pep_fail(&p, "unreadable node configuration");
	else
		pep_form_reply(&p, "configure", q->r.node, &c);
}

/* ---- lists: subscriptions, affiliations --------------------------- */

/* The requester's subscriptions: its bare JID's and its full JIDs'. */
static const char pep_subs_sql[] =
	"SELECT n.node, s.jid FROM pubsub_subscriptions s JOIN pubsub_nodes n "
	"ON n.id = s.node_id WHERE n.service = $1 AND split_part(s.jid, '/', "
	"1) = $2 AND ($3::text IS NULL OR n.node = $3) ORDER BY n.node, s.jid";

static const char pep_affs_sql[] =
	"SELECT n.node, CASE WHEN n.service = $2 THEN 'owner' "
	"ELSE a.affiliation END FROM pubsub_nodes n LEFT JOIN "
	"pubsub_affiliations a ON a.node_id = n.id AND a.jid = $2 "
	"WHERE n.service = $1 AND ($3::text IS NULL OR n.node = $3) AND "
	"(n.service = $2 OR a.affiliation IS NOT NULL) ORDER BY n.node";

static void pep_list_result(struct iq_pending *p, struct pep_req *q,
			    const PGresult *res)
{
	int subs = q->r.op == PUBSUB_OP_SUBSCRIPTIONS;
	const char *list = subs ? "subscriptions" : "affiliations";
	struct buf out;
	buf_init(&out, 0);
	buf_appendf(&out, "<pubsub xmlns='" NS_PUBSUB "'><%s", list);
	if (q->r.node != NULL)
		pep_attr(&out, "node", q->r.node);
	int n = PQntuples(res);
	buf_appendf(&out, n == 0 ? "/>" : ">");
	for (int i = 0; i < n; i++) {
		buf_appendf(&out, subs ? "<subscription" : "<affiliation");
		pep_attr(&out, subs ? "node" : "affiliation",
			 PQgetvalue(res, i, subs ? 0 : 1));
		if (subs) {
			/* one subscription per JID: no subid (6.1.6) */
			pep_attr(&out, "jid", PQgetvalue(res, i, 1));
			buf_appendf(&out, " subscription='subscribed'");
		} else
			pep_attr(&out, "node", PQgetvalue(res, i, 0));
		buf_appendf(&out, "/>");
	}
	if (n > 0)
		buf_appendf(&out, "</%s>", list);
	buf_appendf(&out, "</pubsub>");
	pep_reply(&p, &out);
}

/* Owner affiliations (section 8.9): the node's row (0 rows: no node),
 * with each affiliation (jid NULL: none). */
static const char pep_owner_affs_sql[] =
	"SELECT a.jid, a.affiliation FROM pubsub_nodes n LEFT JOIN "
	"pubsub_affiliations a ON a.node_id = n.id WHERE n.service = $1 AND "
	"n.node = $2 ORDER BY a.jid";

static const char pep_owner_subs_sql[] =
	"SELECT s.jid, s.subid FROM pubsub_nodes n LEFT JOIN "
	"pubsub_subscriptions s ON s.node_id = n.id WHERE n.service = $1 AND "
	"n.node = $2 ORDER BY s.jid";

static void pep_owner_list_result(struct iq_pending *p, struct pep_req *q,
				  const PGresult *res)
{
	if (PQntuples(res) == 0) {
		pep_error(&p, PUBSUB_E_ITEM_NOT_FOUND, NULL);
		return;
	}
	int subs = q->r.op == PUBSUB_OP_OWNER_SUBSCRIPTIONS_GET;
	const char *list = subs ? "subscriptions" : "affiliations";
	struct buf out;
	buf_init(&out, 0);
	buf_appendf(&out, "<pubsub xmlns='" NS_PUBSUB_OWNER "'><%s", list);
	pep_attr(&out, "node", q->r.node);
	buf_appendf(&out, ">");
	if (!subs) {
		buf_appendf(&out, "<affiliation");
		pep_attr(&out, "jid", q->bare);
		buf_appendf(&out, " affiliation='owner'/>");
	}
	for (int i = 0; i < PQntuples(res); i++) {
		if (PQgetisnull(res, i, 0))
			continue;
		buf_appendf(&out, subs ? "<subscription" : "<affiliation");
		pep_attr(&out, "jid", PQgetvalue(res, i, 0));
		if (subs)
			buf_appendf(&out, " subscription='subscribed'");
		else
			pep_attr(&out, "affiliation", PQgetvalue(res, i, 1));
		buf_appendf(&out, "/>");
	}
	buf_appendf(&out, "</%s></pubsub>", list);
	pep_reply(&p, &out);
}

/* One row, the status of xmppd_pep_affs_set (013-pep-fixes.sql): 'ok',
 * 'no-node', 'max-affiliations', 'account-bytes' (nothing changed). */
static const char pep_owner_affs_set_sql[] =
	"SELECT xmppd_pep_affs_set($1, $2, $3, $4::text[], $5::text[], "
	"$6::int, $7::bigint)";

static void pep_owner_set_result(struct iq_pending *p, struct pep_req *q,
				 const PGresult *res)
{
	(void)res;
	/* an outcast, or a whitelist member no more: its subscriptions
	 * go */
	pep_notify_sub_prune(p->w, q->bare, q->r.node, NULL);
	iq_reply_result(&p, NULL);
}

static void pep_owner_affs_set(struct iq_pending *p, struct pep_req *q)
{
	const char *jids[PUBSUB_MAX_AFFS], *affs[PUBSUB_MAX_AFFS];
	for (unsigned i = 0; i < q->r.naffs; i++) {
		if (strcmp(q->r.affs[i].jid, q->bare) == 0) {
			pep_error(&p, PUBSUB_E_NOT_ACCEPTABLE,
				  "the owner's affiliation is fixed");
			return;
		}
		jids[i] = q->r.affs[i].jid;
		affs[i] = q->r.affs[i].affiliation;
	}
	struct buf a, b;
	buf_init(&a, 0);
	buf_init(&b, 0);
	const char *ja = NULL, *fa = NULL;
	if (pubsub_form_array_literal(&a, jids, q->r.naffs) == 0 &&
	    buf_append(&a, "", 1) == 0 &&
	    pubsub_form_array_literal(&b, affs, q->r.naffs) == 0 &&
	    buf_append(&b, "", 1) == 0) {
		ja = arena_strdup(&p->arena, buf_head(&a));
		fa = arena_strdup(&p->arena, buf_head(&b));
	}
	buf_free(&a);
	buf_free(&b);
	if (ja == NULL || fa == NULL) {
		iq_reply_error(&p, "wait", "resource-constraint");
		return;
	}
	char maxa[16], maxb[24];
	snprintf(maxa, sizeof(maxa), "%u", p->w->cfg->pep_max_affiliations);
	snprintf(maxb, sizeof(maxb), "%llu", (unsigned long long)
		 p->w->cfg->pep_max_account_bytes);
	const char *params[7] = { q->user, q->domain, q->r.node, ja, fa,
				  maxa, maxb };
	pep_run(p, pep_owner_affs_set_sql, 7, params, pep_owner_set_result);
}

/* ---- subscribe, unsubscribe (sections 6.1, 6.2, 8.8.2) ------------- */

static const char pep_subscribe_sql[] =
	"SELECT status, item_id, payload, stamp FROM xmppd_pep_subscribe($1, "
	"$2, $3, $4, $5, $6::int, $7::int)";

static void pep_subscribe_result(struct iq_pending *p, struct pep_req *q,
				 const PGresult *res)
{
	struct buf out;
	buf_init(&out, 0);
	buf_appendf(&out, "<pubsub xmlns='" NS_PUBSUB "'><subscription");
	pep_attr(&out, "node", q->r.node);
	pep_attr(&out, "jid", q->r.jid);
	buf_appendf(&out, " subscription='subscribed'/></pubsub>");
	if (buf_append(&out, "", 1) < 0) {
		buf_free(&out);
		iq_reply_error(&p, "wait", "resource-constraint");
		return;
	}
	/* the result, then the last item (section 6.1.7) */
	iq_reply_result_keep(p, buf_head(&out));
	buf_free(&out);
	if (!PQgetisnull(res, 0, 1))
		pep_notify_sub_last(p->w, q->bare, q->r.jid, q->r.node,
				    PQgetvalue(res, 0, 1),
				    /* NULL: deliver_payloads is off */
				    PQgetisnull(res, 0, 2) ? NULL :
				    PQgetvalue(res, 0, 2),
				    PQgetvalue(res, 0, 3));
	iq_pending_free(&p);
}

static void pep_subscribe(struct iq_pending *p, struct pep_req *q)
{
	char max[16], max_jid[16];
	snprintf(max, sizeof(max), "%u", p->w->cfg->pep_max_subscriptions);
	snprintf(max_jid, sizeof(max_jid), "%u",
		 p->w->cfg->pep_max_subscriptions_per_jid);
	const char *params[7] = { q->user, q->domain, q->r.node, q->requester,
				  q->r.jid, max, max_jid };
	pep_run(p, pep_subscribe_sql, 7, params, pep_subscribe_result);
}

static const char pep_unsubscribe_sql[] =
	"SELECT status FROM xmppd_pep_unsubscribe($1, $2, $3, $4)";

/* unsubscribe, owner subscriptions set: "ok" is an empty result */
static void pep_empty_result(struct iq_pending *p, struct pep_req *q,
			     const PGresult *res)
{
	(void)q;
	(void)res;
	iq_reply_result(&p, NULL);
}

static const char pep_subs_set_sql[] =
	"SELECT status, jid, state FROM xmppd_pep_subs_set($1, $2, "
	"$3::text[], $4::text[], $5::int)";

/* owner subscriptions set: each JID whose subscription changed is told
 * (XEP-0060 section 8.8.4), then the empty result */
static void pep_owner_subs_result(struct iq_pending *p, struct pep_req *q,
				  const PGresult *res)
{
	for (int i = 1; i < PQntuples(res); i++)
		pep_notify_sub_state(p->w, q->bare, q->r.node,
				     PQgetvalue(res, i, 1),
				     PQgetvalue(res, i, 2));
	iq_reply_result(&p, NULL);
}

static void pep_owner_subs_set(struct iq_pending *p, struct pep_req *q)
{
	const char *jids[PUBSUB_MAX_AFFS], *subs[PUBSUB_MAX_AFFS];
	for (unsigned i = 0; i < q->r.naffs; i++) {
		jids[i] = q->r.affs[i].jid;
		subs[i] = q->r.affs[i].affiliation;
	}
	struct buf a, b;
	buf_init(&a, 0);
	buf_init(&b, 0);
	const char *ja = NULL, *sa = NULL;
	if (pubsub_form_array_literal(&a, jids, q->r.naffs) == 0 &&
	    buf_append(&a, "", 1) == 0 &&
	    pubsub_form_array_literal(&b, subs, q->r.naffs) == 0 &&
	    buf_append(&b, "", 1) == 0) {
		ja = arena_strdup(&p->arena, buf_head(&a));
		sa = arena_strdup(&p->arena, buf_head(&b));
	}
	buf_free(&a);
	buf_free(&b);
	if (ja == NULL || sa == NULL) {
		iq_reply_error(&p, "wait", "resource-constraint");
		return;
	}
	char max[16];
	snprintf(max, sizeof(max), "%u", p->w->cfg->pep_max_subscriptions);
	const char *params[5] = { q->bare, q->r.node, ja, sa, max };
	pep_run(p, pep_subs_set_sql, 5, params, pep_owner_subs_result);
}

/* ---- XEP-0191: a requester the account blocks -------------------- */

/* Whether the account $1@$2 blocks any of $3..$6: the requester's forms
 * of XEP-0191 section 3.4 (jid_block_forms, as blocking.c matches). */
static const char pep_blocked_sql[] =
	"SELECT EXISTS (SELECT 1 FROM blocklist b WHERE b.account_id = "
	"xmppd_account_id($1, $2) AND b.jid IN ($3, $4, $5, $6))";

static void pep_blocked_result(struct iq_pending *p, struct pep_req *q,
			       const PGresult *res)
{
	if (PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
		log_info("pep: %s (%s) refused: service-unavailable: blocked "
			 "by the account", p->from, p->to);
		iq_reply_error(&p, "cancel", "service-unavailable");
		return;
	}
	q->then(p, q);
}

/* XEP-0191 section 3.5: an IQ from an entity the account blocks gets
 * <service-unavailable/>, the answer for no account, whatever it asks.
 * The account itself goes on at once; others after one query. */
static void pep_gate(struct iq_pending *p, struct pep_req *q,
		     void (*run)(struct iq_pending *, struct pep_req *))
{
	if (strcmp(q->requester, q->bare) == 0) {
		run(p, q);
		return;
	}
	size_t size = 2 * (strlen(p->from) + 1);
	char *buf = arena_alloc(&p->arena, size);
	const char *forms[JID_BLOCK_FORMS];
	if (buf == NULL || jid_block_forms(p->from, buf, size, forms) < 0) {
		iq_reply_error(&p, "wait", "resource-constraint");
		return;
	}
	q->then = run;
	const char *params[2 + JID_BLOCK_FORMS] = { q->user, q->domain,
		forms[0], forms[1], forms[2], forms[3] };
	pep_query(p, pep_blocked_sql, 6, params, pep_blocked_result);
}

/* ---- the IQ -------------------------------------------------------- */

static struct pep_req *pep_req_new(struct iq_pending *p, const char *bare)
{
	struct pep_req *q = arena_zalloc(&p->arena, sizeof(*q));
	const char *at = strchr(bare, '@');
	if (q == NULL || at == NULL)
		return NULL;
	q->bare = arena_strdup(&p->arena, bare);
	q->user = arena_strndup(&p->arena, bare, (size_t)(at - bare));
	q->domain = arena_strdup(&p->arena, at + 1);
	q->requester = iq_bare(p, p->from);
	if (q->bare == NULL || q->user == NULL || q->domain == NULL ||
	    q->requester == NULL)
		return NULL;
	p->data = q;
	return q;
}

static void pep_iq_run(struct iq_pending *p, struct pep_req *q);

static void pep_iq(struct worker *w, struct xml_node *st, const char *bare)
{
	const char *type = xml_attr(st, "type");
	if (type == NULL || (strcmp(type, "get") != 0 &&
			     strcmp(type, "set") != 0))
		return;
	struct iq_pending *p = iq_pending_new(w, st);
	if (p == NULL)
		return;
	struct pep_req *q = pep_req_new(p, bare);
	if (q == NULL || p->payload == NULL) {
		iq_reply_error(&p, "wait", "resource-constraint");
		return;
	}
	pep_gate(p, q, pep_iq_run);
}

static void pep_iq_run(struct iq_pending *p, struct pep_req *q)
{
	struct worker *w = p->w;
	const char *type = p->type;
	struct pubsub_service svc;
	enum pubsub_error e;
	const char *why;
	pep_service(w->cfg, &svc, q->bare);
	if (pubsub_parse(&p->arena, p->payload, strcmp(type, "set") == 0,
			 &svc, q->requester, &q->r, &e, &why) < 0) {
		pep_error(&p, e, why);
		return;
	}
	/* XEP-0402 #compat-pep: the owner's storage:bookmarks node */
	if ((q->r.op == PUBSUB_OP_ITEMS || q->r.op == PUBSUB_OP_PUBLISH) &&
	    strcmp(q->requester, q->bare) == 0 &&
	    pep_compat_pep(p, q->bare, q->r.node,
			   q->r.op == PUBSUB_OP_PUBLISH, q->r.payload))
		return;
	const char *params[3] = { q->bare, q->requester, q->r.node };
	switch (q->r.op) {
	case PUBSUB_OP_PUBLISH:
		pep_publish(p, q);
		break;
	case PUBSUB_OP_ITEMS:
		pep_items(p, q);
		break;
	case PUBSUB_OP_RETRACT:
		pep_remove(p, q, "retract");
		break;
	case PUBSUB_OP_PURGE:
		pep_remove(p, q, "purge");
		break;
	case PUBSUB_OP_DELETE:
		pep_remove(p, q, "delete");
		break;
	case PUBSUB_OP_CREATE:
		pep_configure(p, q, 1);
		break;
	case PUBSUB_OP_CONFIGURE_SET:
		if (q->r.cancel)
			iq_reply_result(&p, NULL);
		else
			pep_configure(p, q, 0);
		break;
	case PUBSUB_OP_CONFIGURE_GET: {
		const char *cp[2] = { q->bare, q->r.node };
		pep_query(p, pep_config_get_sql, 2, cp, pep_config_get_result);
		break;
	}
	case PUBSUB_OP_DEFAULT: {
		struct pubsub_config c;
		pubsub_form_defaults(&c);
		pep_form_reply(&p, "default", NULL, &c);
		break;
	}
	case PUBSUB_OP_SUBSCRIPTIONS:
		pep_query(p, pep_subs_sql, 3, params, pep_list_result);
		break;
	case PUBSUB_OP_AFFILIATIONS:
		pep_query(p, pep_affs_sql, 3, params, pep_list_result);
		break;
	case PUBSUB_OP_OWNER_AFFILIATIONS_GET: {
		const char *op[2] = { q->bare, q->r.node };
		pep_query(p, pep_owner_affs_sql, 2, op, pep_owner_list_result);
		break;
	}
	case PUBSUB_OP_OWNER_SUBSCRIPTIONS_GET: {
		const char *op[2] = { q->bare, q->r.node };
		pep_query(p, pep_owner_subs_sql, 2, op, pep_owner_list_result);
		break;
	}
	case PUBSUB_OP_OWNER_AFFILIATIONS_SET:
		pep_owner_affs_set(p, q);
		break;
	case PUBSUB_OP_SUBSCRIBE:
		pep_subscribe(p, q);
		break;
	case PUBSUB_OP_UNSUBSCRIBE: {
		const char *up[4] = { q->user, q->domain, q->r.node, q->r.jid };
		pep_run(p, pep_unsubscribe_sql, 4, up,
			pep_empty_result);
		break;
	}
	case PUBSUB_OP_OWNER_SUBSCRIPTIONS_SET:
		pep_owner_subs_set(p, q);
		break;
	default:
		pep_error(&p, PUBSUB_E_BAD_REQUEST, "unknown request");
		break;
	}
}

/* ---- disco on the account's bare JID (XEP-0163 section 6) --------- */

/* Node-less disco#info by others: one row, the account exists, the
 * requester has a presence subscription (from/both). */
static const char pep_info_sql[] =
	"SELECT a.id IS NOT NULL, EXISTS (SELECT 1 FROM roster_items r "
	"WHERE r.account_id = a.id AND r.contact = $3 AND NOT r.removed AND "
	"r.subscription IN ('from', 'both')) FROM (SELECT "
	"xmppd_account_id($1, $2) AS id) a";

/* disco#info of a node: 0 rows no node, else its refusal for $4 and
 * what the meta-data form shows. */
static const char pep_node_info_sql[] =
	"SELECT xmppd_pep_refusal(n, $4), n.access_model, n.title, n.type "
	"FROM pubsub_nodes n WHERE "
	"n.account_id = xmppd_account_id($1, $2) AND n.node = $3";

/* disco#items: the account exists, then the nodes $3 may read. */
static const char pep_items_list_sql[] =
	"SELECT a.id IS NOT NULL, n.node, n.title FROM (SELECT "
	"xmppd_account_id($1, $2) AS id) a LEFT JOIN pubsub_nodes n ON "
	"n.account_id = a.id AND xmppd_pep_refusal(n, $3) IS NULL "
	"ORDER BY n.node";

static void pep_info_result(struct iq_pending *p, struct pep_req *q,
			    const PGresult *res)
{
	(void)q;
	if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 0), "t") != 0 ||
	    strcmp(PQgetvalue(res, 0, 1), "t") != 0) {
		/* no account, or no subscription: the same answer */
		iq_reply_error(&p, "cancel", "service-unavailable");
		return;
	}
	struct buf out;
	buf_init(&out, 0);
	server_account_info(p->w->cfg, &out);
	pep_reply(&p, &out);
}

static void pep_node_info_result(struct iq_pending *p, struct pep_req *q,
				 const PGresult *res)
{
	if (PQntuples(res) != 1 || !PQgetisnull(res, 0, 0)) {
		iq_reply_error(&p, "cancel", "item-not-found");
		return;
	}
	struct buf out;
	buf_init(&out, 0);
	if (xml_is(p->payload, NS_DISCO_ITEMS, "query")) {
		/* the items of a leaf node are not listed (v1) */
		buf_appendf(&out, "<query xmlns='" NS_DISCO_ITEMS "'");
		pep_attr(&out, "node", q->r.node);
		buf_appendf(&out, "/>");
		pep_reply(&p, &out);
		return;
	}
	buf_appendf(&out, "<query xmlns='" NS_DISCO_INFO "'");
	pep_attr(&out, "node", q->r.node);
	buf_appendf(&out, "><identity category='pubsub' type='leaf'/>"
		    "<feature var='" NS_PUBSUB "'/>");
	if (xml_is(p->payload, NS_DISCO_INFO, "query")) {
		/* XEP-0060 section 5.4: the node's meta-data */
		static const char *const vars[] = { "pubsub#access_model",
			"pubsub#title", "pubsub#type" };
		buf_appendf(&out, "<x xmlns='" NS_XDATA "' type='result'>"
			    "<field var='FORM_TYPE' type='hidden'><value>"
			    NS_PUBSUB "#meta-data</value></field><field "
			    "var='pubsub#owner' type='jid-list'><value>");
		xml_escape(&out, q->bare, strlen(q->bare), 0);
		buf_appendf(&out, "</value></field>");
		for (int i = 0; i < 3; i++) {
			const char *v = PQgetvalue(res, 0, i + 1);
			buf_appendf(&out, "<field var='%s'><value>", vars[i]);
			xml_escape(&out, v, strlen(v), 0);
			buf_appendf(&out, "</value></field>");
		}
		buf_appendf(&out, "</x>");
	}
	buf_appendf(&out, "</query>");
	pep_reply(&p, &out);
}

static void pep_items_list_result(struct iq_pending *p, struct pep_req *q,
				  const PGresult *res)
{
	if (PQntuples(res) < 1 || strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		iq_reply_error(&p, "cancel", "service-unavailable");
		return;
	}
	struct buf out;
	int any = 0;
	buf_init(&out, 0);
	buf_appendf(&out, "<query xmlns='" NS_DISCO_ITEMS "'");
	for (int i = 0; i < PQntuples(res); i++) {
		if (PQgetisnull(res, i, 1))
			continue;
		buf_appendf(&out, any ? "<item" : "><item");
		any = 1;
		pep_attr(&out, "jid", q->bare);
		pep_attr(&out, "node", PQgetvalue(res, i, 1));
		if (PQgetvalue(res, i, 2)[0] != '\0')
			pep_attr(&out, "name", PQgetvalue(res, i, 2));
		buf_appendf(&out, "/>");
	}
	buf_appendf(&out, any ? "</query>" : "/>");
	pep_reply(&p, &out);
}

static void pep_disco_run(struct iq_pending *p, struct pep_req *q);

static void pep_disco(struct worker *w, struct xml_node *st, const char *bare)
{
	const char *type = xml_attr(st, "type");
	if (type == NULL || strcmp(type, "get") != 0) {
		if (type != NULL && strcmp(type, "set") == 0) {
			struct iq_pending *p = iq_pending_new(w, st);
			if (p != NULL)
				iq_reply_error(&p, "cancel",
					       "service-unavailable");
		}
		return;
	}
	struct iq_pending *p = iq_pending_new(w, st);
	if (p == NULL)
		return;
	struct pep_req *q = pep_req_new(p, bare);
	if (q == NULL || p->payload == NULL) {
		iq_reply_error(&p, "wait", "resource-constraint");
		return;
	}
	pep_gate(p, q, pep_disco_run);
}

static void pep_disco_run(struct iq_pending *p, struct pep_req *q)
{
	q->r.node = xml_attr(p->payload, "node");
	if (xml_is(p->payload, NS_DISCO_ITEMS, "query")) {
		if (q->r.node != NULL) {
			const char *np[4] = { q->user, q->domain, q->r.node,
					      q->requester };
			pep_query(p, pep_node_info_sql, 4, np,
				  pep_node_info_result);
			return;
		}
		const char *ip[3] = { q->user, q->domain, q->requester };
		pep_query(p, pep_items_list_sql, 3, ip, pep_items_list_result);
	} else if (q->r.node != NULL) {
		const char *np[4] = { q->user, q->domain, q->r.node,
				      q->requester };
		pep_query(p, pep_node_info_sql, 4, np, pep_node_info_result);
	} else {
		const char *ip[3] = { q->user, q->domain, q->requester };
		pep_query(p, pep_info_sql, 3, ip, pep_info_result);
	}
}

/* ---- the extension (ext.h) ------------------------------------------- */

/* A roster item of account bare changed: the last items of a new
 * presence subscription (pep_notify.c); a contact without from/both any
 * more loses the subscriptions the access models no longer admit. */
static void pep_subscription_changed(struct worker *w, const char *bare,
				     const char *contact,
				     const struct pg_result *res, int col,
				     int approved_col)
{
	pep_notify_subscription(w, bare, contact, res, col, approved_col);
	if (res == NULL || PQntuples(res) < 1)
		return;
	const char *sub = PQgetvalue(res, 0, col);
	if (strcmp(sub, "from") != 0 && strcmp(sub, "both") != 0)
		pep_notify_sub_prune(w, bare, NULL, contact);
}

#define F(x) NS_PUBSUB "#" x
/* The pubsub features PEP offers (XEP-0060 section 10, XEP-0163
 * section 6).  Notifications (pep_notify.c) give auto-subscribe,
 * filtered-notifications, last-published, presence-notifications and
 * presence-subscribe; explicit subscriptions (h-pepsub) subscribe,
 * manage-subscriptions (and config-node notifications, which have no
 * feature of their own). */
static const char *const pep_features[] = {
	NS_PUBSUB, F("access-presence"), F("auto-create"), F("auto-subscribe"),
	F("config-node"), F("config-node-max"), F("create-and-configure"),
	F("create-nodes"), F("delete-items"), F("delete-nodes"),
	F("filtered-notifications"), F("item-ids"), F("last-published"),
	F("manage-subscriptions"), F("member-affiliation"),
	F("modify-affiliations"), F("multi-items"),
	F("outcast-affiliation"), F("persistent-items"),
	F("presence-notifications"), F("presence-subscribe"), F("publish"),
	F("publish-options"), F("purge-nodes"), F("retract-items"),
	F("retrieve-affiliations"), F("retrieve-default"),
	F("retrieve-items"), F("retrieve-subscriptions"), F("subscribe"),
	F("pubsub-on-a-jid"), F("rsm"), NULL,
};
#undef F
static const char *const pep_identities[] = {
	"<identity category='pubsub' type='pep'/>", NULL,
};
static const struct ext_iq pep_iqs[] = {
	{ NS_PUBSUB, "pubsub", EXT_IQ_GET | EXT_IQ_SET, pep_iq },
	{ NS_PUBSUB_OWNER, "pubsub", EXT_IQ_GET | EXT_IQ_SET, pep_iq },
	{ NS_DISCO_INFO, "query", EXT_IQ_GET | EXT_IQ_SET, pep_disco },
	{ NS_DISCO_ITEMS, "query", EXT_IQ_GET | EXT_IQ_SET, pep_disco },
	{ NULL, NULL, 0, NULL },
};
static const char *const pep_config[] = {
	"pep.max_nodes", "pep.max_items", "pep.max_item_size",
	"pep.max_account_bytes", "pep.max_id_length", "pep.max_subscriptions",
	"pep.max_affiliations", "pep.max_last_items_bytes",
	"pep.max_subscriptions_per_jid", NULL,
};
static const char *const pep_schema[] = { "007-pep.sql", "009-pep-notify.sql",
					   "011-pep-subscribe.sql",
					   "013-pep-fixes.sql",
					   "015-pep-subs-flag.sql",
					   "016-pep-sub-bounds.sql", NULL };

const struct ext pep_ext = {
	.name = "pep",
	.disco_features = pep_features,
	.account_features = pep_features,
	.disco_identities = pep_identities,
	.account_identities = pep_identities,
	.iq = pep_iqs,
	.config_keys = pep_config,
	.schema = pep_schema,
	.caps_changed = pep_notify_caps_changed,
	.subscription_changed = pep_subscription_changed,
	.output_drained = pep_notify_drained,
	.conn_free = pep_notify_conn_free,
	.frame = pep_notify_last_frame,
	.worker_frame = pep_notify_worker_frame,    /* issue 15 */
	.session_save = pep_notify_session_save,       /* review 13b G8 */
	.session_restore = pep_notify_session_restore,
};

/* ---- changes made on the account's behalf (pep.h; pep_compat.c) ---- */

int pep_stored_event(struct worker *w, struct arena *a, int retract,
		     const char *owner, const char *publisher,
		     const char *node, const char *item_id,
		     const char *payload, const char *trimmed,
		     const char *config, const char *groups)
{
	struct pep_event ev;
	memset(&ev, 0, sizeof(ev));
	ev.kind = retract ? PEP_EV_RETRACT : PEP_EV_ITEM;
	ev.owner = owner;
	ev.publisher = publisher;
	ev.node = node;
	ev.item_id = item_id;
	ev.payload = retract ? NULL : payload;
	ev.notify = retract;            /* as a client's notify='true' */
	if (trimmed != NULL &&
	    pep_trimmed(a, trimmed, w->cfg->max_stanza_size / 2, &ev) < 0)
		log_warn("pep: %s node %s: trimmed items unreadable; no "
			 "retract told", owner, node);
	if (pubsub_form_array(a, config, ev.cfg.v, PUBSUB_F_COUNT) !=
	    PUBSUB_F_COUNT)
		return -1;
	int n = pubsub_form_array(a, groups, ev.cfg.groups,
				  PUBSUB_MAX_GROUPS);
	if (n < 0)
		return -1;
	ev.cfg.ngroups = (unsigned)n;
	ev.cfg.groups_set = 1;
	pep_event(w, &ev);
	return 0;
}

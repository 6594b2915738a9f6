/*
 * private.c - XEP-0049 private XML storage: elements an account keeps on
 * the server, one row per namespace in `private_storage`.  Only the
 * account itself may get or set (section 2.3: <forbidden/>).  The query
 * holds one or more elements, all in one namespace of their own (not
 * jabber:client, not jabber:iq:private), else <not-acceptable/>; so do
 * sets over the size or namespace caps.  A set replaces the namespace's
 * elements; a get of a namespace never stored returns the query as sent.
 * Failure policy: every get and set is answered; a database failure
 * answers a stanza error (private_fail) and the stream goes on.
 */
#include "worker.h"
#include "../db/db.h"
#include "ext.h"
#include "iq.h"
#include "log.h"

#include <stdio.h>
#include <string.h>

#define NS_PRIVATE "jabber:iq:private"

static const char private_get_sql[] =
	"SELECT element FROM private_storage "
	"WHERE account_id = xmppd_account_id($1, $2) AND namespace = $3";

/* One row: does the account exist, was the element stored (false: the
 * account already holds $5 other namespaces). */
static const char private_set_sql[] =
	"WITH a AS (SELECT xmppd_account_id($1, $2) AS id), "
	"ins AS (INSERT INTO private_storage (account_id, namespace, element) "
	"SELECT a.id, $3, $4 FROM a WHERE a.id IS NOT NULL AND "
	"((SELECT count(*) FROM private_storage s WHERE s.account_id = a.id) "
	"< $5::int OR EXISTS (SELECT 1 FROM private_storage s "
	"WHERE s.account_id = a.id AND s.namespace = $3)) "
	"ON CONFLICT (account_id, namespace) DO UPDATE "
	"SET element = EXCLUDED.element RETURNING 1) "
	"SELECT a.id IS NOT NULL, EXISTS (SELECT 1 FROM ins) FROM a";

/* What the callback needs besides the pending IQ (in its arena). */
struct private_req {
	const char *user;       /* the account's localpart */
	const char *domain;
	const char *ns;         /* the stored elements' namespace */
};

/* Namespaces that are not an element's "own" (XEP-0049 section 2.3): an
 * element in them is part of the query or the stanza, not private data. */
static int private_ns_ok(const char *ns)
{
	static const char *const reserved[] = {
		"", NS_CLIENT, "jabber:server", NS_PRIVATE, NS_STREAMS,
	};
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
		if (strcmp(ns, reserved[i]) == 0)
			return 0;
	return 1;
}

/* The one namespace of the query's elements, or NULL (not acceptable):
 * none, one of the reserved ones, or more than one namespace. */
static const char *private_query_ns(const struct xml_node *query)
{
	const struct xml_node *e = xml_first_element(query);
	if (e == NULL || !private_ns_ok(e->ns))
		return NULL;
	for (const struct xml_node *n = e; n != NULL; n = xml_next_element(n))
		if (strcmp(n->ns, e->ns) != 0)
			return NULL;
	return e->ns;
}

/* RFC 6120 section 8.3.3.18: a link that is down or a full queue means
 * the server "lacks the system resources necessary to service the
 * request" for now: <resource-constraint/>, type wait, so the client
 * retries later.  An error PostgreSQL reported on a live link is our own
 * fault: <internal-server-error/> (8.3.3.8), whose type is cancel. */
static void private_fail(struct iq_pending **p, const char *error)
{
	struct db *db = (*p)->w->db;
	if (error == NULL || db == NULL || !db_is_up(db)) {
		iq_reply_error(p, "wait", "resource-constraint");
		return;
	}
	log_error("private storage query failed: %s", error);
	iq_reply_error(p, "cancel", "internal-server-error");
}

static void private_reply_stored(struct iq_pending **p, const char *stored)
{
	struct buf out;
	buf_init(&out, 0);
	if (buf_appendf(&out, "<query xmlns='" NS_PRIVATE "'>%s</query>",
			stored) < 0 || buf_append(&out, "", 1) < 0)
		iq_reply_error(p, "wait", "resource-constraint");
	else
		iq_reply_result(p, buf_head(&out));
	buf_free(&out);
}

static void private_get_result(void *ctx, const PGresult *res,
			       const char *error)
{
	struct iq_pending *p = ctx;
	if (res == NULL)
		private_fail(&p, error);
	else if (PQntuples(res) > 0)
		private_reply_stored(&p, PQgetvalue(res, 0, 0));
	else
		iq_reply_node(&p, p->payload);  /* nothing stored: as sent */
}

static void private_set_result(void *ctx, const PGresult *res,
			       const char *error)
{
	struct iq_pending *p = ctx;
	if (res == NULL)
		private_fail(&p, error);
	else if (PQntuples(res) != 1)
		private_fail(&p, "unexpected result shape");
	else if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
		iq_reply_error(&p, "cancel", "service-unavailable");
	else if (strcmp(PQgetvalue(res, 0, 1), "t") != 0) {
		const struct private_req *r = p->data;
		log_info("private XML of %s@%s: namespace %s refused "
			 "(im.private_max_namespaces = %u)", r->user,
			 r->domain, r->ns, p->w->cfg->private_max_namespaces);
		iq_reply_error(&p, "modify", "not-acceptable");
	} else
		iq_reply_result(&p, NULL);
}

static void private_query(struct iq_pending *p, const char *sql, int n,
			  const char *const *params, db_callback *cb)
{
	if (p->w->db == NULL ||
	    db_query(p->w->db, sql, n, params, NULL, NULL, 0, cb, p) < 0)
		private_fail(&p, NULL);
}

/* The query's elements, serialized one after the other. */
static int private_serialize(struct buf *out, const struct xml_node *query)
{
	for (const struct xml_node *e = xml_first_element(query); e != NULL;
	     e = xml_next_element(e))
		if (xml_serialize(out, e, NS_PRIVATE) < 0)
			return -1;
	return buf_append(out, "", 1);
}

static void private_set(struct iq_pending *p, struct private_req *r)
{
	const struct config *cfg = p->w->cfg;
	struct buf text;
	char max_ns[16];
	buf_init(&text, 0);
	snprintf(max_ns, sizeof(max_ns), "%u", cfg->private_max_namespaces);
	if (private_serialize(&text, p->payload) < 0)
		iq_reply_error(&p, "wait", "resource-constraint");
	else if (buf_used(&text) - 1 > cfg->private_max_size) {
		log_info("private XML of %s@%s refused: %zu bytes "
			 "(im.private_max_size = %llu)", r->user, r->domain,
			 buf_used(&text) - 1,
			 (unsigned long long)cfg->private_max_size);
		iq_reply_error(&p, "modify", "not-acceptable");
	} else {
		const char *params[5] = { r->user, r->domain, r->ns,
					  buf_head(&text), max_ns };
		private_query(p, private_set_sql, 5, params,
			      private_set_result);
	}
	buf_free(&text);
}

/* 0, or an error already answered. */
static int private_check(struct iq_pending **p, const char *bare)
{
	const char *from_bare = iq_bare(*p, (*p)->from);
	if (from_bare == NULL || (*p)->payload == NULL) {
		iq_reply_error(p, "wait", "resource-constraint");
		return -1;
	}
	if (strcmp(from_bare, bare) != 0) {
		iq_reply_error(p, "auth", "forbidden");
		return -1;
	}
	if (private_query_ns((*p)->payload) == NULL) {
		iq_reply_error(p, "modify", "not-acceptable");
		return -1;
	}
	return 0;
}

static struct private_req *private_req_new(struct iq_pending *p,
					   const char *bare)
{
	struct private_req *r = arena_zalloc(&p->arena, sizeof(*r));
	const char *at = strchr(bare, '@');
	if (r == NULL || at == NULL)
		return NULL;
	r->user = arena_strndup(&p->arena, bare, (size_t)(at - bare));
	r->domain = arena_strdup(&p->arena, at + 1);
	r->ns = private_query_ns(p->payload);
	if (r->user == NULL || r->domain == NULL)
		return NULL;
	p->data = r;
	return r;
}

static void private_iq(struct worker *w, struct xml_node *st,
		       const char *bare)
{
	const char *type = xml_attr(st, "type");
	if (type == NULL || (strcmp(type, "get") != 0 &&
			     strcmp(type, "set") != 0))
		return;         /* results and errors: nothing to answer */
	struct iq_pending *p = iq_pending_new(w, st);
	if (p == NULL || private_check(&p, bare) < 0)
		return;
	struct private_req *r = private_req_new(p, bare);
	if (r == NULL) {
		iq_reply_error(&p, "wait", "resource-constraint");
		return;
	}
	if (strcmp(type, "set") == 0) {
		private_set(p, r);
		return;
	}
	const char *params[3] = { r->user, r->domain, r->ns };
	private_query(p, private_get_sql, 3, params, private_get_result);
}

/* ---- the extension (ext.h) ------------------------------------------- */

static const char *const private_disco[] = { NS_PRIVATE, NULL };
static const struct ext_iq private_iqs[] = {
	{ NS_PRIVATE, "query", EXT_IQ_GET | EXT_IQ_SET, private_iq },
	{ NULL, NULL, 0, NULL },
};
static const char *const private_config[] = {
	"im.private_max_size", "im.private_max_namespaces", NULL,
};
static const char *const private_schema[] = { "002-im.sql", NULL };

const struct ext private_ext = {
	.name = "private",
	.disco_features = private_disco,
	.iq = private_iqs,
	.config_keys = private_config,
	.schema = private_schema,
};

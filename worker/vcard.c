/*
 * vcard.c - XEP-0054 vcard-temp: an account's vCard, kept as the
 * serialized <vCard/> element in `vcards`.  Anyone may read any
 * account's vCard (XEP-0054 section 3.3); only the account itself may
 * set it (section 3.2, <forbidden/>).  A missing vCard is an empty
 * <vCard/> for its owner (section 3.1); for anyone else it is the same
 * <service-unavailable/> whether the account exists or not (section
 * 3.3: one condition for both, against directory harvesting).
 * Failure policy: every get and set is answered; a database failure
 * answers a stanza error (vcard_fail) and the stream goes on.
 */
#include "worker.h"
#include "../db/db.h"
#include "ext.h"
#include "iq.h"
#include "log.h"
#include "pep.h"

#include <string.h>

#define NS_VCARD "vcard-temp"

#define VCARD_EMPTY "<vCard xmlns='" NS_VCARD "'/>"

static const char vcard_get_sql[] =
	"SELECT vcard FROM vcards WHERE account_id = xmppd_account_id($1, $2)";

/* No row is written when the account does not exist (any more). */
static const char vcard_set_sql[] =
	"INSERT INTO vcards (account_id, vcard) "
	"SELECT a.id, $3 FROM (SELECT xmppd_account_id($1, $2) AS id) a "
	"WHERE a.id IS NOT NULL "
	"ON CONFLICT (account_id) DO UPDATE "
	"SET vcard = EXCLUDED.vcard, updated_at = now()";

/* What the callback needs besides the pending IQ (in its arena). */
struct vcard_req {
	const char *user;       /* the account's localpart */
	const char *domain;
	int own;                /* the requester asks for its own account */
};

/* RFC 6120 section 8.3.3.18: a link that is down or a full queue means
 * the server "lacks the system resources necessary to service the
 * request" for now: <resource-constraint/>, type wait, so the client
 * retries later.  An error PostgreSQL reported on a live link is our own
 * fault: <internal-server-error/> (8.3.3.8), whose type is cancel. */
static void vcard_fail(struct iq_pending **p, const char *error)
{
	struct db *db = (*p)->w->db;
	if (error == NULL || db == NULL || !db_is_up(db)) {
		iq_reply_error(p, "wait", "resource-constraint");
		return;
	}
	log_error("vCard query failed: %s", error);
	iq_reply_error(p, "cancel", "internal-server-error");
}

static void vcard_get_result(void *ctx, const PGresult *res,
			     const char *error)
{
	struct iq_pending *p = ctx;
	struct vcard_req *r = p->data;
	if (res == NULL)
		vcard_fail(&p, error);
	else if (PQntuples(res) > 0)
		iq_reply_result(&p, PQgetvalue(res, 0, 0));
	else if (r->own)
		iq_reply_result(&p, VCARD_EMPTY);
	else
		iq_reply_error(&p, "cancel", "service-unavailable");
}

static void vcard_set_result(void *ctx, const PGresult *res,
			     const char *error)
{
	struct iq_pending *p = ctx;
	if (res == NULL)
		vcard_fail(&p, error);
	else if (strcmp(PQcmdTuples((PGresult *)res), "0") == 0)
		iq_reply_error(&p, "cancel", "service-unavailable");
	else {
		/* XEP-0398: the sessions' presence hash follows the PHOTO */
		const char *bare = iq_bare(p, p->from);
		iq_reply_result_keep(p, NULL);
		if (bare != NULL)
			pep_compat_vcard_set(p->w, bare, p->payload);
		iq_pending_free(&p);
	}
}

static struct vcard_req *vcard_req_new(struct iq_pending *p, const char *bare)
{
	struct vcard_req *r = arena_zalloc(&p->arena, sizeof(*r));
	const char *at = strchr(bare, '@');
	const char *from_bare = iq_bare(p, p->from);
	if (r == NULL || at == NULL || from_bare == NULL)
		return NULL;
	r->user = arena_strndup(&p->arena, bare, (size_t)(at - bare));
	r->domain = arena_strdup(&p->arena, at + 1);
	r->own = strcmp(from_bare, bare) == 0;
	if (r->user == NULL || r->domain == NULL)
		return NULL;
	p->data = r;
	return r;
}

static void vcard_query(struct iq_pending *p, const char *sql, int n,
			const char *const *params, db_callback *cb)
{
	if (p->w->db == NULL ||
	    db_query(p->w->db, sql, n, params, NULL, NULL, 0, cb, p) < 0)
		vcard_fail(&p, NULL);
}

static void vcard_set(struct iq_pending *p, struct vcard_req *r)
{
	struct buf text;
	if (!r->own) {
		iq_reply_error(&p, "auth", "forbidden");
		return;
	}
	buf_init(&text, 0);
	if (xml_serialize(&text, p->payload, NS_CLIENT) < 0 ||
	    buf_append(&text, "", 1) < 0)
		iq_reply_error(&p, "wait", "resource-constraint");
	else if (buf_used(&text) - 1 > p->w->cfg->vcard_max_size) {
		log_info("vCard of %s@%s refused: %zu bytes (im.vcard_max_size "
			 "= %llu)", r->user, r->domain, buf_used(&text) - 1,
			 (unsigned long long)p->w->cfg->vcard_max_size);
		iq_reply_error(&p, "modify", "not-acceptable");
	} else {
		const char *params[3] = { r->user, r->domain, buf_head(&text) };
		vcard_query(p, vcard_set_sql, 3, params, vcard_set_result);
	}
	buf_free(&text);
}

static void vcard_iq(struct worker *w, struct xml_node *st,
		     const char *bare)
{
	const char *type = xml_attr(st, "type");
	if (type == NULL || (strcmp(type, "get") != 0 &&
			     strcmp(type, "set") != 0))
		return;         /* results and errors: nothing to answer */
	struct iq_pending *p = iq_pending_new(w, st);
	if (p == NULL)
		return;
	struct vcard_req *r = vcard_req_new(p, bare);
	if (r == NULL || p->payload == NULL) {
		iq_reply_error(&p, "wait", "resource-constraint");
		return;
	}
	if (strcmp(type, "set") == 0) {
		vcard_set(p, r);
		return;
	}
	const char *params[2] = { r->user, r->domain };
	vcard_query(p, vcard_get_sql, 2, params, vcard_get_result);
}

/* ---- the extension (ext.h) ------------------------------------------- */

static const char *const vcard_disco[] = { NS_VCARD, NULL };
static const struct ext_iq vcard_iqs[] = {
	{ NS_VCARD, "vCard", EXT_IQ_GET | EXT_IQ_SET, vcard_iq },
	{ NULL, NULL, 0, NULL },
};
static const char *const vcard_config[] = {
	"im.vcard_max_size", NULL,
};
static const char *const vcard_schema[] = { "002-im.sql", NULL };

const struct ext vcard_ext = {
	.name = "vcard",
	.disco_features = vcard_disco,
	.iq = vcard_iqs,
	.config_keys = vcard_config,
	.schema = vcard_schema,
};

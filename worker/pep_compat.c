/*
 * pep_compat.c - XEP-0402 bookmarks compatibility: the urn:xmpp:bookmarks:1
 * PEP items (item id = room JID, <conference/> payload) are the one store
 * of an account's group chat bookmarks, and the XEP-0048 views are made
 * from them:
 *   #compat      jabber:iq:private get of <storage xmlns='storage:bookmarks'/>
 *                (XEP-0049) returns <storage/> built from the items; a set
 *                diffs into publishes and retracts (unchanged items are
 *                not republished, so no event: XEP-0402 section 6);
 *   #compat-pep  items of the account's own node storage:bookmarks return
 *                one item 'current' holding that <storage/>; a publish
 *                there is synced the same way.
 * A sync creates the urn:xmpp:bookmarks:1 node, or sets on it, the
 * options of XEP-0402 section 5 (persist_items, max_items=max,
 * send_last_published_item=never, access_model=whitelist), then stores
 * with the statements of a client's publish and retract
 * (xmppd_pep_publish, xmppd_pep_remove) and tells each change through
 * pep_event() (pep.h), so notifications follow as for a client.
 * Bookmarks an older server version left in private XML storage migrate
 * at first access: a compat get that finds no urn:xmpp:bookmarks:1 node
 * but a storage:bookmarks row syncs that row, and every sync deletes the
 * row (the PEP items are the truth from then on).
 * Payloads are re-serialized from the parsed tree (xml_escape), never
 * copied; <url/> bookmarks of XEP-0048 have no XEP-0402 form and are not
 * kept (as Prosody's mod_bookmarks); a bookmark's <extensions/> is kept
 * when a legacy client rewrites it.
 * pep.bookmarks_compat = no hands storage:bookmarks back to private.c
 * (a separate store) and the node storage:bookmarks to plain PEP.
 * Failure policy: every request is answered; a database failure answers
 * wait/resource-constraint (link down) or internal-server-error, with a
 * log line; a refused request (bad JID, too many bookmarks) logs one
 * line and answers modify/not-acceptable (private) or the pubsub error.
 */
#include "worker.h"
#include "../db/db.h"
#include "config.h"
#include "ext.h"
#include "iq.h"
#include "jid.h"
#include "log.h"
#include "pep.h"
#include "pep_compat_form.h"
#include "pubsub.h"
#include "stanza.h"


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_PRIVATE "jabber:iq:private"
#define NS_VCARD_UPDATE "vcard-temp:x:update"
#define NS_VCARD_CONVERSION "urn:xmpp:pep-vcard-conversion:0"

enum compat_mode { COMPAT_PRIVATE_GET = 1, COMPAT_PRIVATE_SET,
		   COMPAT_PEP_GET, COMPAT_PEP_SET };

/* The request in flight (in the iq_pending's arena). */
struct compat_req {
	enum compat_mode mode;
	const char *bare, *user, *domain;
	struct pep_compat_bm *want;         /* the new set (sync) */
	unsigned nwant;
	int migrating;                  /* a get that syncs the legacy row */
	void (*result)(struct iq_pending *, struct compat_req *,
		       const PGresult *);      /* compat_query's */
};

/* ---- replies ------------------------------------------------------- */

static void compat_fail(struct iq_pending **p, const char *error)
{
	pep_db_fail(p, "bookmarks compat", error);
}

static void compat_refuse(struct iq_pending **p, const char *why)
{
	log_info("bookmarks of %s refused: %s", (*p)->from, why);
	if (xml_is((*p)->payload, NS_PRIVATE, "query")) {
		iq_reply_error_text(p, "modify", "not-acceptable", why);
		return;
	}
	/* XEP-0060 section 7.1.3.5: the payload is not acceptable */
	const struct pubsub_error_desc *d = pubsub_error_of(
		PUBSUB_E_INVALID_PAYLOAD);
	struct buf out;
	buf_init(&out, 0);
	buf_appendf(&out, "<error type='%s'><%s xmlns='" NS_STANZA_ERR "'/>"
		    "<text xmlns='" NS_STANZA_ERR "'>", d->type, d->cond);
	xml_escape(&out, why, strlen(why), 0);
	buf_appendf(&out, "</text>%s</error>", d->app ? d->app : "");
	buf_append(&out, "", 1);
	iq_reply_error_xml(p, buf_head(&out));
	buf_free(&out);
}

/* The answer of a get, with the <storage/> of the items in res (columns
 * item_id, payload; rows with a NULL id are skipped). */
static void compat_reply_storage(struct iq_pending **p, const PGresult *res)
{
	struct compat_req *r = (*p)->data;
	struct buf out;
	buf_init(&out, 0);
	if (r->mode == COMPAT_PRIVATE_GET)
		buf_appendf(&out, "<query xmlns='" NS_PRIVATE "'>");
	else
		buf_appendf(&out, "<pubsub xmlns='" NS_PUBSUB "'><items "
			    "node='" NS_BOOKMARKS_LEGACY "'><item "
			    "id='current'>");
	buf_appendf(&out, "<storage xmlns='" NS_BOOKMARKS_LEGACY "'");
	int any = 0;
	for (int i = 0; res != NULL && i < PQntuples(res); i++) {
		if (PQgetisnull(res, i, 0) || PQgetisnull(res, i, 1))
			continue;
		const char *text = PQgetvalue(res, i, 1), *err = NULL;
		struct xml_node *conf = xml_parse_in(&(*p)->arena, text,
						     strlen(text), PEP_NO_NS,
						     &err);
		if (conf == NULL || !xml_is(conf, NS_BOOKMARKS2,
					    "conference"))
			continue;       /* not a bookmark: not shown */
		struct pep_compat_bm b = { 0 };
		b.jid = PQgetvalue(res, i, 0);
		pep_compat_form_bm_of(&(*p)->arena, conf, NS_BOOKMARKS2, &b);
		buf_appendf(&out, any ? "" : ">");
		any = 1;
		pep_compat_form_render_0048(&out, &b);
	}
	buf_appendf(&out, any ? "</storage>" : "/>");
	if (r->mode == COMPAT_PRIVATE_GET)
		buf_appendf(&out, "</query>");
	else
		buf_appendf(&out, "</item></items></pubsub>");
	if (buf_append(&out, "", 1) < 0)
		iq_reply_error(p, "wait", "resource-constraint");
	else
		iq_reply_result(p, buf_head(&out));
	buf_free(&out);
}

/* ---- the database ------------------------------------------------ */

/* Every query's answer: a failed one is answered here, else it goes to
 * the result function compat_query was given (res is never NULL). */
static void compat_result(void *ctx, const PGresult *res, const char *error)
{
	struct iq_pending *p = ctx;
	struct compat_req *r = p->data;
	if (res == NULL) {
		compat_fail(&p, error);
		return;
	}
	r->result(p, r, res);
}

static void compat_query(struct iq_pending *p, const char *sql, int n,
			 const char *const *params,
			 void (*result)(struct iq_pending *,
					struct compat_req *, const PGresult *))
{
	struct compat_req *r = p->data;
	r->result = result;
	if (p->w->db == NULL ||
	    db_query(p->w->db, sql, n, params, NULL, NULL, 0, compat_result,
		     p) < 0)
		compat_fail(&p, NULL);
}

/* The items of the bookmarks node, oldest first; whether the node exists;
 * the legacy private XML row. */
static const char compat_read_sql[] =
	"SELECT i.item_id, i.payload, n.id IS NOT NULL, ps.element "
	"FROM (SELECT xmppd_account_id($1, $2) AS acc) a "
	"LEFT JOIN pubsub_nodes n ON n.service = $1 || '@' || $2 AND "
	"n.node = '" NS_BOOKMARKS2 "' "
	"LEFT JOIN pubsub_items i ON i.node_id = n.id "
	"LEFT JOIN private_storage ps ON ps.account_id = a.acc AND "
	"ps.namespace = '" NS_BOOKMARKS_LEGACY "' ORDER BY i.seq";

/* XEP-0402 section 5's node options, as the text[] of pubsub_form.h's
 * fields: access_model, max_items, persist_items, send_last. */
#define COMPAT_OPTIONS \
	"{whitelist,max,true,never,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL}"

/* Create the node, or set XEP-0402's options on it; then the items it
 * had (oldest first). */
static const char compat_configure_sql[] =
	"SELECT c.status, i.item_id, i.payload FROM xmppd_pep_configure($1, "
	"$2, '" NS_BOOKMARKS2 "', NOT EXISTS (SELECT 1 FROM pubsub_nodes x "
	"WHERE x.service = $1 || '@' || $2 AND x.node = '" NS_BOOKMARKS2 "'), "
	"'" COMPAT_OPTIONS "'::text[], NULL::text[], $3::int, $4::int) c "
	"LEFT JOIN pubsub_items i ON i.node_id = (SELECT x.id FROM "
	"pubsub_nodes x WHERE x.service = $1 || '@' || $2 AND "
	"x.node = '" NS_BOOKMARKS2 "') ORDER BY i.seq";

/* The changed items published, the gone ones retracted (one row each:
 * kind 0 publish / 1 retract, id, status, trimmed, config, groups,
 * payload), with the statements of a client's publish and retract; the
 * legacy private XML row goes.  The options go as preconditions: a node
 * deleted since the configure is made again with them (never with the
 * presence default: bookmarks hold passwords), and one reconfigured
 * since is not written to ('precondition': answered as a failure).
 * All or nothing (xmppd_pep_compat_store, 013-pep-fixes.sql): a status
 * other than 'ok' / 'no-item' undoes every row, and is the one row
 * returned, so an error answered means nothing was stored. */
static const char compat_store_sql[] =
	"SELECT kind, item_id, status, trimmed, config, roster_groups, "
	"payload FROM xmppd_pep_compat_store($1, $2, '" NS_BOOKMARKS_LEGACY
	"', '" NS_BOOKMARKS2 "', $3::text[], $4::text[], $5, '"
	COMPAT_OPTIONS "'::text[], $6::int, $7::int, $8::bigint, "
	"$9::text[])";

static void compat_read(struct iq_pending *p);

static void compat_store_result(struct iq_pending *p, struct compat_req *r,
				const PGresult *res)
{
	int n = PQntuples(res);
	for (int i = 0; i < n; i++) {
		const char *s = PQgetvalue(res, i, 2);
		if (strcmp(s, "account-bytes") == 0) {
			log_info("bookmarks of %s: pep.max_account_bytes "
				 "(%llu) reached", p->from, (unsigned long long)
				 p->w->cfg->pep_max_account_bytes);
			iq_reply_error_text(&p, "modify", "not-acceptable",
					    "PEP storage quota of the account "
					    "reached");
			return;
		}
		/* a bookmark retracted meanwhile by another device is gone
		 * as asked */
		if (strcmp(s, "precondition") == 0) {
			log_info("bookmarks of %s: the node was reconfigured "
				 "meanwhile; not written", p->from);
			iq_reply_error(&p, "wait", "resource-constraint");
			return;
		}
		if (strcmp(s, "ok") != 0 && strcmp(s, "no-item") != 0) {
			log_error("bookmarks of %s: store status %s", p->from,
				  s);
			iq_reply_error(&p, "cancel", "internal-server-error");
			return;
		}
	}
	if (r->migrating) {
		log_info("bookmarks of %s migrated from private XML storage "
			 "to " NS_BOOKMARKS2 " (%u)", r->bare, r->nwant);
		r->migrating = 0;
	}
	/* the answer, then the events (pep.c's order) */
	if (r->mode == COMPAT_PRIVATE_SET)
		iq_reply_result_keep(p, NULL);
	else if (r->mode == COMPAT_PEP_SET)
		iq_reply_result_keep(p, "<pubsub xmlns='" NS_PUBSUB "'><publish "
				     "node='" NS_BOOKMARKS_LEGACY "'><item "
				     "id='current'/></publish></pubsub>");
	for (int i = 0; i < n; i++) {
		if (strcmp(PQgetvalue(res, i, 2), "ok") != 0)
			continue;
		int retract = strcmp(PQgetvalue(res, i, 0), "1") == 0;
		if (pep_stored_event(p->w, &p->arena, retract, r->bare,
				     p->from, NS_BOOKMARKS2,
				     PQgetvalue(res, i, 1),
				     retract ? NULL : PQgetvalue(res, i, 6),
				     retract ? NULL : PQgetvalue(res, i, 3),
				     PQgetvalue(res, i, 4),
				     PQgetvalue(res, i, 5)) < 0)
			log_error("bookmarks of %s: unreadable node "
				  "configuration; event not told", r->bare);
	}
	if (r->mode == COMPAT_PRIVATE_SET || r->mode == COMPAT_PEP_SET)
		iq_pending_free(&p);
	else
		compat_read(p);         /* a migrating get: answer now */
}

static int compat_literal(struct arena *a, const char *const *v, unsigned n,
			  const char **out_r)
{
	struct buf b;
	buf_init(&b, 0);
	*out_r = NULL;
	if (pubsub_form_array_literal(&b, v, n) == 0 &&
	    buf_append(&b, "", 1) == 0)
		*out_r = arena_strdup(a, buf_head(&b));
	buf_free(&b);
	return *out_r != NULL ? 0 : -1;
}

static void compat_configure_result(struct iq_pending *p,
				    struct compat_req *r,
				    const PGresult *res)
{
	const struct config *cfg = p->w->cfg;
	if (PQntuples(res) < 1 || strcmp(PQgetvalue(res, 0, 0), "ok") != 0) {
		const char *s = PQntuples(res) ? PQgetvalue(res, 0, 0) : "";
		if (strcmp(s, "max-nodes") == 0) {
			compat_refuse(&p, "pep.max_nodes reached");
			return;
		}
		/* 'exists': another device created it at this moment */
		log_info("bookmarks of %s: node status %s", p->from, s);
		iq_reply_error(&p, "wait", "resource-constraint");
		return;
	}
	int n = PQntuples(res);
	const char **pub_id = arena_zalloc(&p->arena, (r->nwant + 1) *
					   sizeof(char *));
	const char **pub_payload = arena_zalloc(&p->arena, (r->nwant + 1) *
						sizeof(char *));
	const char **gone = arena_zalloc(&p->arena, (size_t)(n + 1) *
					 sizeof(char *));
	unsigned npub = 0, ngone = 0;
	if (pub_id == NULL || pub_payload == NULL || gone == NULL) {
		iq_reply_error(&p, "wait", "resource-constraint");
		return;
	}
	/* what the node has: gone unless wanted */
	char *kept = arena_zalloc(&p->arena, r->nwant + 1);
	if (kept == NULL) {
		iq_reply_error(&p, "wait", "resource-constraint");
		return;
	}
	for (int i = 0; i < n; i++) {
		if (PQgetisnull(res, i, 1))
			continue;
		const char *id = PQgetvalue(res, i, 1);
		unsigned k = 0;
		while (k < r->nwant && strcmp(r->want[k].jid, id) != 0)
			k++;
		if (k == r->nwant) {
			gone[ngone++] = id;
			continue;
		}
		const char *text = PQgetvalue(res, i, 2), *err = NULL;
		struct xml_node *conf = xml_parse_in(&p->arena, text,
						     strlen(text), PEP_NO_NS,
						     &err);
		if (conf == NULL || !xml_is(conf, NS_BOOKMARKS2, "conference"))
			continue;       /* rewritten below */
		struct pep_compat_bm old = { 0 };
		pep_compat_form_bm_of(&p->arena, conf, NS_BOOKMARKS2, &old);
		r->want[k].extensions = old.extensions;    /* kept */
		if (pep_compat_form_bm_eq(&old, &r->want[k]))
			kept[k] = 1;    /* unchanged: no publish, no event */
	}
	for (unsigned k = 0; k < r->nwant; k++) {
		if (kept[k])
			continue;
		struct buf b;
		buf_init(&b, 0);
		if (pep_compat_form_render_0402(&b, &r->want[k]) < 0) {
			buf_free(&b);
			iq_reply_error(&p, "wait", "resource-constraint");
			return;
		}
		if (buf_used(&b) - 1 > cfg->pep_max_item_size) {
			buf_free(&b);
			compat_refuse(&p, "a bookmark over pep.max_item_size");
			return;
		}
		pub_id[npub] = r->want[k].jid;
		pub_payload[npub++] = arena_strdup(&p->arena, buf_head(&b));
		buf_free(&b);
		if (pub_payload[npub - 1] == NULL) {
			iq_reply_error(&p, "wait", "resource-constraint");
			return;
		}
	}
	const char *ids, *payloads, *gone_lit;
	char max_nodes[16], max_items[16], max_bytes[24];
	snprintf(max_nodes, sizeof(max_nodes), "%u", cfg->pep_max_nodes);
	snprintf(max_items, sizeof(max_items), "%u", cfg->pep_max_items);
	snprintf(max_bytes, sizeof(max_bytes), "%llu",
		 (unsigned long long)cfg->pep_max_account_bytes);
	if (compat_literal(&p->arena, pub_id, npub, &ids) < 0 ||
	    compat_literal(&p->arena, pub_payload, npub, &payloads) < 0 ||
	    compat_literal(&p->arena, gone, ngone, &gone_lit) < 0) {
		iq_reply_error(&p, "wait", "resource-constraint");
		return;
	}
	const char *params[9] = { r->user, r->domain, ids, payloads, p->from,
		max_nodes, max_items, max_bytes, gone_lit };
	compat_query(p, compat_store_sql, 9, params, compat_store_result);
}

/* Sync r->want into the node (then answer per r->mode). */
static void compat_sync(struct iq_pending *p)
{
	struct compat_req *r = p->data;
	char max_nodes[16], max_items[16];
	snprintf(max_nodes, sizeof(max_nodes), "%u", p->w->cfg->pep_max_nodes);
	snprintf(max_items, sizeof(max_items), "%u", p->w->cfg->pep_max_items);
	const char *params[4] = { r->user, r->domain, max_nodes, max_items };
	compat_query(p, compat_configure_sql, 4, params,
		     compat_configure_result);
}

static void compat_read_result(struct iq_pending *p, struct compat_req *r,
			       const PGresult *res)
{
	int has_node = PQntuples(res) > 0 &&
		       strcmp(PQgetvalue(res, 0, 2), "t") == 0;
	if (!has_node && !r->migrating && PQntuples(res) > 0 &&
	    !PQgetisnull(res, 0, 3)) {
		/* leftover XEP-0048 bookmarks: migrate at first access */
		const char *text = PQgetvalue(res, 0, 3), *err = NULL, *why;
		struct xml_node *st = xml_parse_in(&p->arena, text,
						   strlen(text), NS_PRIVATE,
						   &err);
		if (st != NULL && xml_is(st, NS_BOOKMARKS_LEGACY, "storage") &&
		    pep_compat_form_storage(&p->arena, st,
					    p->w->cfg->pep_max_items,
					    &r->want, &r->nwant, &why) == 0) {
			r->migrating = 1;
			compat_sync(p);
			return;
		}
		log_info("bookmarks of %s: private XML row not migrated "
			 "(unreadable)", r->bare);
	}
	compat_reply_storage(&p, res);
}

static void compat_read(struct iq_pending *p)
{
	struct compat_req *r = p->data;
	const char *params[2] = { r->user, r->domain };
	compat_query(p, compat_read_sql, 2, params, compat_read_result);
}

/* ---- entry points ---------------------------------------------------- */

static struct compat_req *compat_req_new(struct iq_pending *p,
					 const char *bare,
					 enum compat_mode mode)
{
	struct compat_req *r = arena_zalloc(&p->arena, sizeof(*r));
	const char *at = strchr(bare, '@');
	if (r == NULL || at == NULL)
		return NULL;
	r->mode = mode;
	r->bare = arena_strdup(&p->arena, bare);
	r->user = arena_strndup(&p->arena, bare, (size_t)(at - bare));
	r->domain = arena_strdup(&p->arena, at + 1);
	if (r->bare == NULL || r->user == NULL || r->domain == NULL)
		return NULL;
	p->data = r;
	return r;
}

/* Start mode on p with the legacy <storage/> st (sets) or none (gets). */
static void compat_start(struct iq_pending *p, const char *bare,
			 enum compat_mode mode, const struct xml_node *st)
{
	struct compat_req *r = compat_req_new(p, bare, mode);
	const char *why = NULL;
	if (r == NULL) {
		iq_reply_error(&p, "wait", "resource-constraint");
		return;
	}
	if (st == NULL) {
		compat_read(p);
		return;
	}
	if (pep_compat_form_storage(&p->arena, st, p->w->cfg->pep_max_items,
				    &r->want, &r->nwant, &why) < 0) {
		compat_refuse(&p, why);
		return;
	}
	compat_sync(p);
}

/* jabber:iq:private with <storage xmlns='storage:bookmarks'/> (ext
 * iq_child: this beats private.c's handler). */
static void compat_private_iq(struct worker *w, struct xml_node *st,
			      const char *bare)
{
	const char *type = xml_attr(st, "type");
	if (!w->cfg->pep_bookmarks_compat) {
		/* a store of its own: private.c's */
		const struct xml_node *q = xml_first_element(st);
		ext_iq_fn *fn = q != NULL && type != NULL ?
				ext_iq_handler_plain(q, type) : NULL;
		if (fn != NULL)
			fn(w, st, bare);
		return;
	}
	if (type == NULL || (strcmp(type, "get") != 0 &&
			     strcmp(type, "set") != 0))
		return;
	struct iq_pending *p = iq_pending_new(w, st);
	if (p == NULL)
		return;
	const char *from_bare = iq_bare(p, p->from);
	if (from_bare == NULL || p->payload == NULL) {
		iq_reply_error(&p, "wait", "resource-constraint");
		return;
	}
	if (strcmp(from_bare, bare) != 0) {
		iq_reply_error(&p, "auth", "forbidden");    /* XEP-0049 2.3 */
		return;
	}
	/* exactly one element: <storage xmlns='storage:bookmarks'/> */
	const struct xml_node *sto = xml_first_element(p->payload);
	if (!xml_is(sto, NS_BOOKMARKS_LEGACY, "storage") ||
	    xml_next_element(sto) != NULL) {
		log_info("bookmarks of %s refused: not one <storage/>",
			 p->from);
		iq_reply_error(&p, "modify", "not-acceptable");
		return;
	}
	int set = strcmp(type, "set") == 0;
	compat_start(p, bare, set ? COMPAT_PRIVATE_SET : COMPAT_PRIVATE_GET,
		     set ? sto : NULL);
}

int pep_compat_pep(struct iq_pending *p, const char *bare, const char *node,
		   int publish, const struct xml_node *payload)
{
	if (node == NULL || strcmp(node, NS_BOOKMARKS_LEGACY) != 0 ||
	    !p->w->cfg->pep_bookmarks_compat)
		return 0;
	if (publish && !xml_is(payload, NS_BOOKMARKS_LEGACY, "storage")) {
		compat_refuse(&p, "the storage:bookmarks node takes "
			      "<storage xmlns='storage:bookmarks'/>");
		return 1;
	}
	compat_start(p, bare, publish ? COMPAT_PEP_SET : COMPAT_PEP_GET,
		     publish ? payload : NULL);
	return 1;
}

/* ---- XEP-0398: XEP-0084 avatars into the vCard, and XEP-0153 presence */

extern const struct ext pep_compat_ext;

static void avatar_set_conn(struct conn *c, const char *hex, size_t len)
{
	if (len >= sizeof(c->pep_avatar))
		return;
	memcpy(c->pep_avatar, hex, len);
	c->pep_avatar[len] = '\0';
	/* the presence filter runs only for an account with an avatar */
	ext_filter(c, &pep_compat_ext, len > 0);
}

/* Every session of bare, on every worker, learns the new hash. */
static void avatar_tell(struct worker *w, const char *bare, const char *hex)
{
	route_to_resources(w, bare, hex, strlen(hex), IPC_FRAME_PEP_AVATAR, 0,
			   NULL);
}

/* IPC_FRAME_PEP_AVATAR (also for this worker's own sessions). */
static int avatar_frame(struct conn *c, int type, const char *text,
			size_t len)
{
	if (type != IPC_FRAME_PEP_AVATAR)
		return 0;
	if (len == 0 || len == 40)
		avatar_set_conn(c, text, len);
	return 1;
}

/* Section 4: the hash goes into every available presence (broadcast or
 * directed) that does not carry <x xmlns='vcard-temp:x:update'> with a
 * <photo/> (an empty one says "not ready / no avatar": left alone; a
 * client's own hash is left alone too, which the XEP allows); an <x/>
 * without <photo/> gets one. */
static int avatar_stanza_in(struct conn *c, struct xml_node *st)
{
	if (strcmp(st->name, "presence") != 0 ||
	    xml_attr(st, "type") != NULL || c->pep_avatar[0] == '\0' ||
	    !c->w->cfg->pep_vcard_conversion)
		return 0;
	struct xml_node *x = xml_child(st, NS_VCARD_UPDATE, "x");
	if (x != NULL && xml_child(x, NS_VCARD_UPDATE, "photo") != NULL)
		return 0;
	if (x == NULL)
		x = xml_add_child(c->arena, st, NS_VCARD_UPDATE, "x");
	struct xml_node *photo = x != NULL ?
		xml_add_child(c->arena, x, NS_VCARD_UPDATE, "photo") : NULL;
	if (photo == NULL ||
	    xml_add_text(c->arena, photo, c->pep_avatar, 40) < 0)
		log_warn("c%u: avatar hash not added to presence (no memory)",
			 c->id);
	return 0;
}

/* ---- the hash at bind ---------------------------------------------- */

/* blocking.c's statement at bind brings the vCard (one query per login
 * for both), only with pep.vcard_conversion. */
void pep_compat_vcard_loaded(struct conn *c, const char *vcard)
{
	struct arena a;
	char hex[41];
	const char *err = NULL;
	arena_init(&a, 4096);
	pep_compat_form_vcard_hash(&a, xml_parse(&a, vcard, strlen(vcard), &err),
				   hex);
	arena_free(&a);
	avatar_set_conn(c, hex, strlen(hex));
}

/* XEP-0198 resumption: blocking.c's restore loads the vCard again. */
static void avatar_restore(struct conn *c, uint32_t word)
{
	(void)word;
	c->pep_avatar[0] = '\0';
}

/* ---- a metadata publish into the vCard (section 3.1) --------------- */

struct avatar_conv {
	struct worker *w;
	char *bare, *user, *domain;
	char id[41];                    /* "" : no avatar (empty metadata) */
	char *type;                     /* the info's MIME type, or NULL */
};

static void avatar_conv_free(struct avatar_conv *v)
{
	if (v != NULL) {
		free(v->bare);
		free(v->user);
		free(v->type);
		free(v);
	}
}

/* The data item of the id (NULL when none) and the vCard (NULL: none). */
static const char avatar_conv_sql[] =
	"SELECT (SELECT i.payload FROM pubsub_items i JOIN pubsub_nodes n ON "
	"n.id = i.node_id WHERE n.service = $1 || '@' || $2 AND "
	"n.node = '" NS_AVATAR_DATA "' AND i.item_id = $3), "
	"(SELECT vcard FROM vcards WHERE account_id = "
	"xmppd_account_id($1, $2))";

static const char avatar_vcard_set_sql[] =
	"INSERT INTO vcards (account_id, vcard) "
	"SELECT a.id, $3 FROM (SELECT xmppd_account_id($1, $2) AS id) a "
	"WHERE a.id IS NOT NULL "
	"ON CONFLICT (account_id) DO UPDATE "
	"SET vcard = EXCLUDED.vcard, updated_at = now()";

static void avatar_written(void *ctx, const PGresult *res, const char *error)
{
	struct avatar_conv *v = ctx;
	if (res == NULL)
		log_warn("avatar of %s not written into the vCard: %s",
			 v->bare, error);
	else {
		log_info("avatar of %s: vCard PHOTO %s", v->bare,
			 v->id[0] ? v->id : "removed");
		avatar_tell(v->w, v->bare, v->id);
	}
	avatar_conv_free(v);
}

static void avatar_conv_result(void *ctx, const PGresult *res,
			       const char *error)
{
	struct avatar_conv *v = ctx;
	struct worker *w = v->w;
	if (res == NULL || PQntuples(res) != 1) {
		log_warn("avatar of %s not converted: %s", v->bare,
			 error ? error : "no row");
		avatar_conv_free(v);
		return;
	}
	struct arena a;
	struct buf out;
	const char *data = NULL, *err = NULL;
	arena_init(&a, 4096);
	buf_init(&out, 0);
	if (v->id[0] != '\0') {
		const char *text = PQgetisnull(res, 0, 0) ? NULL :
				   PQgetvalue(res, 0, 0);
		struct xml_node *d = text != NULL ?
			xml_parse_in(&a, text, strlen(text), PEP_NO_NS, &err) :
			NULL;
		char hex[41];
		data = d != NULL && xml_is(d, NS_AVATAR_DATA, "data") ?
		       xml_text(&a, d) : NULL;
		if (data == NULL) {
			log_info("avatar of %s not converted: no %s item %s",
				 v->bare, NS_AVATAR_DATA, v->id);
			goto done;
		}
		if (pep_compat_form_sha1(data, hex) < 0 || strcmp(hex, v->id) != 0) {
			log_info("avatar of %s not converted: the data of item "
				 "%s is not base64 of an image with that SHA-1",
				 v->bare, v->id);
			goto done;
		}
	}
	const char *old = PQgetisnull(res, 0, 1) ? NULL : PQgetvalue(res, 0, 1);
	struct xml_node *vcard = old != NULL ?
		xml_parse(&a, old, strlen(old), &err) : NULL;
	if (pep_compat_form_vcard_photo(&a, vcard, v->type, data, &out) < 0) {
		log_warn("avatar of %s not converted: no memory", v->bare);
		goto done;
	}
	if (buf_used(&out) - 1 > w->cfg->vcard_max_size +
				 w->cfg->pep_max_item_size) {
		log_info("avatar of %s not converted: the vCard would be %zu "
			 "bytes", v->bare, buf_used(&out) - 1);
		goto done;
	}
	const char *params[3] = { v->user, v->domain, buf_head(&out) };
	if (w->db != NULL &&
	    db_query(w->db, avatar_vcard_set_sql, 3, params, NULL, NULL, 0,
		     avatar_written, v) == 0)
		v = NULL;
done:
	buf_free(&out);
	arena_free(&a);
	avatar_conv_free(v);
}

void pep_compat_published(struct worker *w, const char *bare,
			  const char *node, const char *payload)
{
	if (!w->cfg->pep_vcard_conversion || node == NULL ||
	    strcmp(node, NS_AVATAR_META) != 0 || payload == NULL)
		return;
	struct arena a;
	const char *err = NULL;
	arena_init(&a, 1024);
	struct xml_node *m = xml_parse_in(&a, payload, strlen(payload),
					  PEP_NO_NS, &err);
	struct avatar_conv *v = calloc(1, sizeof(*v));
	const char *type = NULL, *why = NULL;
	if (v == NULL)
		goto out;
	int k = pep_compat_form_metadata(m, v->id, &type, &why);
	if (k < 0)
		log_info("avatar of %s not converted: %s", bare, why);
	if (k != 0)
		goto out;       /* refused, or only hosted elsewhere */
	const char *at = strchr(bare, '@');
	v->w = w;
	v->bare = strdup(bare);
	v->user = strdup(bare);         /* "user\0domain" in one block */
	v->type = type != NULL ? strdup(type) : NULL;
	if (at == NULL || v->bare == NULL || v->user == NULL ||
	    (type != NULL && v->type == NULL))
		goto out;
	v->user[at - bare] = '\0';
	v->domain = v->user + (at - bare) + 1;
	const char *params[3] = { v->user, v->domain, v->id };
	if (w->db != NULL &&
	    db_query(w->db, avatar_conv_sql, 3, params, NULL, NULL, 0,
		     avatar_conv_result, v) == 0)
		v = NULL;
	else
		log_warn("avatar of %s not converted: database unavailable",
			 bare);
out:
	avatar_conv_free(v);
	arena_free(&a);
}

void pep_compat_vcard_set(struct worker *w, const char *bare,
			  const struct xml_node *vcard)
{
	if (!w->cfg->pep_vcard_conversion)
		return;
	struct arena a;
	char hex[41];
	arena_init(&a, 1024);
	pep_compat_form_vcard_hash(&a, vcard, hex);
	arena_free(&a);
	avatar_tell(w, bare, hex);
}

/* ---- the extension (ext.h) ------------------------------------------- */

static const char *const compat_account_features[] = {
	NS_BOOKMARKS2 "#compat", NS_BOOKMARKS2 "#compat-pep",
	NS_VCARD_CONVERSION, NULL,
};
/* Only what is on is advertised: a client that sees #compat skips its
 * own XEP-0048 fallback (Conversations). */
static int compat_feature_on(const struct config *cfg, unsigned i)
{
	return i < 2 ? cfg->pep_bookmarks_compat != 0 :
	       cfg->pep_vcard_conversion != 0;
}
static const struct ext_iq_child compat_iq_child[] = {
	{ NS_PRIVATE, "query", NS_BOOKMARKS_LEGACY, EXT_IQ_GET | EXT_IQ_SET,
	  compat_private_iq },
	{ NULL, NULL, NULL, 0, NULL },
};
static const char *const compat_config[] = {
	"pep.bookmarks_compat", "pep.vcard_conversion", NULL,
};

const struct ext pep_compat_ext = {
	.name = "pep_compat",
	.account_features = compat_account_features,
	.account_feature_on = compat_feature_on,
	.iq_child = compat_iq_child,
	.config_keys = compat_config,
	.session_restore = avatar_restore,
	.frame = avatar_frame,
	.stanza_in = avatar_stanza_in,
};

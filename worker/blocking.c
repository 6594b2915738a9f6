/*
 * blocking.c - XEP-0191 blocking command.  The blocklist lives in
 * PostgreSQL; each session keeps a copy of its account's list (loaded at
 * bind, updated by the block/unblock pushes that reach every resource),
 * so the checks on the stanza path cost no database round trip:
 * outbound stanzas to a blocked JID get <not-acceptable/> with
 * <blocked xmlns='urn:xmpp:blocking:errors'/>; inbound ones from a
 * blocked JID are dropped (presence) or answered <service-unavailable/>;
 * a XEP-0280 copy of a blocked JID's message is dropped.
 * An account blocks at most im.blocklist_max_items JIDs: a block that
 * would store more is refused whole with <not-acceptable/> type cancel
 * (XEP-0191 names no condition; as for a full roster), so every stored
 * item is also in the sessions' copies, which have no cap of their own.
 * Failure policy: a database failure answers the IQ with a wait error;
 * until a session's list has loaded, nothing is filtered for it.
 */
#include "worker.h"
#include "../db/db.h"
#include "ext.h"
#include "server.h"
#include "iq.h"
#include "jid.h"
#include "log.h"
#include "pep.h"
#include "session.h"
#include "stanza.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_BLOCKING "urn:xmpp:blocking"

/* ---- the session's copy ---------------------------------------------- */

extern const struct ext blocking_ext;

/* The stanza filters (ext.h) run for the session while its list is not
 * empty. */
static void blocking_filter(struct conn *c)
{
	ext_filter(c, &blocking_ext, c->nblocked > 0);
}

static void blocking_clear(struct conn *c)
{
	for (unsigned i = 0; i < c->nblocked; i++)
		free(c->blocked[i]);
	free(c->blocked);
	c->blocked = NULL;
	c->nblocked = 0;
	blocking_filter(c);
}

static int blocking_has(const struct conn *c, const char *jid)
{
	for (unsigned i = 0; i < c->nblocked; i++)
		if (strcmp(c->blocked[i], jid) == 0)
			return 1;
	return 0;
}

static void blocking_add(struct conn *c, const char *jid)
{
	if (blocking_has(c, jid))
		return;
	char **b = realloc(c->blocked, (c->nblocked + 1) * sizeof(*b));
	if (b == NULL)
		return;
	c->blocked = b;
	if ((b[c->nblocked] = strdup(jid)) != NULL)
		c->nblocked++;
	blocking_filter(c);
}

static void blocking_remove(struct conn *c, const char *jid)
{
	for (unsigned i = 0; i < c->nblocked; i++) {
		if (strcmp(c->blocked[i], jid) == 0) {
			free(c->blocked[i]);
			c->blocked[i] = c->blocked[--c->nblocked];
			blocking_filter(c);
			return;
		}
	}
}

/* XEP-0191 section 3.4 / XEP-0016 matching (jid_block_forms): the full
 * JID, the bare JID, the domain, or domain/resource. */
static int blocking_matches(const struct conn *c, const char *jid)
{
	char buf[2 * (IPC_JID_MAX + 1)];
	const char *forms[JID_BLOCK_FORMS];
	if (c->nblocked == 0 || jid == NULL)
		return 0;
	int n = jid_block_forms(jid, buf, sizeof(buf), forms) < 0 ? 1 :
		JID_BLOCK_FORMS;
	for (int i = 0; i < n; i++)
		if (blocking_has(c, forms[i]))
			return 1;
	return 0;
}

/* A push of ours reaching a session: keep its copy current. */
static void blocking_apply_push(struct conn *c, const struct xml_node *payload)
{
	int block = xml_is(payload, NS_BLOCKING, "block");
	int any = 0;
	for (const struct xml_node *it = xml_first_element(payload); it != NULL;
	     it = xml_next_element(it)) {
		const char *jid = xml_attr(it, "jid");
		if (jid == NULL)
			continue;
		any = 1;
		if (block)
			blocking_add(c, jid);
		else
			blocking_remove(c, jid);
	}
	if (!block && !any)
		blocking_clear(c);
}

static void blocking_free(struct conn *c)
{
	blocking_clear(c);
}

/* ---- loading at bind -------------------------------------------------- */

static const char blocking_list_sql[] =
	"SELECT jid FROM blocklist WHERE account_id = xmppd_account_id($1, $2) "
	"ORDER BY jid";

/* The one statement at bind for what a session keeps of its account:
 * the blocklist (jid rows) and, with pep.vcard_conversion ($3), the
 * vCard for XEP-0398's presence hash (one row with vcard set; none when
 * the account has no vCard): pep_compat.c's load rides here, so a login
 * costs no round trip more. */
static const char blocking_bind_sql[] =
	"WITH a AS (SELECT xmppd_account_id($1, $2) AS id) "
	"SELECT b.jid, NULL::text FROM a JOIN blocklist b "
	"ON b.account_id = a.id "
	"UNION ALL SELECT NULL, v.vcard FROM a JOIN vcards v "
	"ON v.account_id = a.id WHERE $3::bool";

static void blocking_loaded(struct conn *c, const PGresult *res,
			    const char *error)
{
	if (res == NULL)
		log_warn("blocklist not loaded: %s", error);
	for (int i = 0; c != NULL && res != NULL && i < PQntuples(res); i++) {
		if (!PQgetisnull(res, i, 0))
			blocking_add(c, PQgetvalue(res, i, 0));
		else if (!PQgetisnull(res, i, 1))
			pep_compat_vcard_loaded(c, PQgetvalue(res, i, 1));
	}
}

static void blocking_load(struct conn *c)
{
	const char *params[3] = { c->user, c->domain,
				  c->w->cfg->pep_vcard_conversion ? "t" : "f" };
	conn_query(c, blocking_bind_sql, 3, params, blocking_loaded);
}

static void blocking_restore(struct conn *c, uint32_t word)
{
	(void)word;
	blocking_clear(c);
	blocking_load(c);
}

/* ---- the IQs ------------------------------------------------------------ */

struct blocking_req {
	char *user;             /* "user\0domain" (jid_split_account) */
	const char *domain;     /* points into user's buffer */
	char *bare;
	char *items;            /* JIDs joined with \x1f */
	int block;
};

static void blocking_req_free(struct blocking_req *r)
{
	if (r != NULL) {
		free(r->user);
		free(r->bare);
		free(r->items);
		free(r);
	}
}

static struct blocking_req *blocking_req_new(const char *bare)
{
	struct blocking_req *r = calloc(1, sizeof(*r));
	const char *domain;
	if (r == NULL || (r->bare = strdup(bare)) == NULL ||
	    (r->user = jid_split_account(bare, &domain)) == NULL) {
		blocking_req_free(r);
		return NULL;
	}
	r->domain = domain;
	return r;
}

static void blocking_item_xml(struct buf *out, const char *items)
{
	while (items != NULL && *items != '\0') {
		size_t n = strcspn(items, "\x1f");
		buf_appendf(out, "<item jid='");
		xml_escape(out, items, n, 1);
		buf_appendf(out, "'/>");
		items += n;
		items += strspn(items, "\x1f");
	}
}

static void blocking_push(struct worker *w, struct blocking_req *r)
{
	static unsigned counter;
	struct buf out;
	const char *name = r->block ? "block" : "unblock";
	buf_init(&out, 0);
	buf_appendf(&out, "<iq id='bpush-%u-%u' type='set'><%s xmlns='"
		    NS_BLOCKING "'>", w->slot, ++counter, name);
	blocking_item_xml(&out, r->items);
	buf_appendf(&out, "</%s></iq>", name);
	route_to_resources(w, r->bare, buf_head(&out), buf_used(&out),
			   IPC_FRAME_BLOCK_PUSH, 0, NULL);
	buf_free(&out);
}

static void blocking_list_result(void *ctx, const PGresult *res,
				 const char *error)
{
	struct iq_pending *p = ctx;
	struct buf out;
	if (res == NULL) {
		log_warn("blocklist: %s", error);
		iq_reply_error(&p, "wait", "internal-server-error");
		return;
	}
	buf_init(&out, 0);
	buf_appendf(&out, "<blocklist xmlns='" NS_BLOCKING "'>");
	for (int i = 0; i < PQntuples(res); i++) {
		buf_appendf(&out, "<item jid='");
		xml_escape(&out, PQgetvalue(res, i, 0),
			   strlen(PQgetvalue(res, i, 0)), 1);
		buf_appendf(&out, "'/>");
	}
	buf_appendf(&out, "</blocklist>");
	buf_append(&out, "", 1);
	iq_reply_result(&p, buf_head(&out));
	buf_free(&out);
}

static void blocking_changed(void *ctx, const PGresult *res, const char *error)
{
	struct iq_pending *p = ctx;
	struct blocking_req *r = p->data;
	struct worker *w = p->w;
	if (res == NULL) {
		log_warn("blocklist of %s: %s", r->bare, error);
		iq_reply_error(&p, "wait", "internal-server-error");
		blocking_req_free(r);
		return;
	}
	if (r->block && (PQntuples(res) != 1 ||
			 strcmp(PQgetvalue(res, 0, 0), "t") != 0)) {
		log_info("block by %s refused: more than %u blocked JIDs "
			 "(im.blocklist_max_items)", r->bare,
			 w->cfg->blocklist_max_items);
		iq_reply_error(&p, "cancel", "not-acceptable");
		blocking_req_free(r);
		return;
	}
	iq_reply_result(&p, NULL);
	blocking_push(w, r);
	/* Section 3.3: a blocked contact allowed to see our presence (a
	 * subscription from us) stops seeing it at once; one that is not
	 * is told nothing (not even which resources are online). */
	for (const char *it = r->block ? PQgetvalue(res, 0, 1) : "";
	     *it != '\0';) {
		char jid[IPC_JID_MAX + 1];
		size_t n = strcspn(it, "\x1f");
		snprintf(jid, sizeof(jid), "%.*s", (int)n, it);
		presence_unavailable_to(w, r->bare, jid);
		it += n;
		it += strspn(it, "\x1f");
	}
	/* Section 3.4: an unblocked subscriber sees us again. */
	for (int i = 0; !r->block && i < PQntuples(res); i++)
		presence_current_to(w, r->bare, PQgetvalue(res, i, 0));
	blocking_req_free(r);
}

/* One row: false when the new JIDs would make more than $4 blocked
 * (nothing stored then); and which of the JIDs are contacts with a
 * subscription to the account's presence, \x1f-separated. */
static const char blocking_block_sql[] =
	"WITH a AS (SELECT xmppd_account_id($1, $2) AS id), "
	"n AS (SELECT DISTINCT j FROM unnest(string_to_array($3, "
	"E'\\x1f')) j WHERE NOT EXISTS (SELECT 1 FROM blocklist b, a "
	"WHERE b.account_id = a.id AND b.jid = j)), "
	"ok AS (SELECT (SELECT count(*) FROM blocklist b, a "
	"WHERE b.account_id = a.id) + (SELECT count(*) FROM n) "
	"<= $4::int AS ok), "
	"ins AS (INSERT INTO blocklist (account_id, jid) SELECT a.id, n.j "
	"FROM a, n, ok WHERE ok.ok ON CONFLICT DO NOTHING) "
	"SELECT ok, array_to_string(ARRAY(SELECT r.contact FROM "
	"roster_items r, a WHERE r.account_id = a.id AND r.subscription IN "
	"('from', 'both') AND r.contact = ANY(string_to_array($3, "
	"E'\\x1f'))), E'\\x1f') FROM ok";
/* The unblocked JIDs that are contacts with a subscription to the
 * account's presence (they get it again, section 3.4). */
static const char blocking_unblock_sql[] =
	"WITH d AS (DELETE FROM blocklist WHERE account_id = "
	"xmppd_account_id($1, $2) AND ($3 = '' OR jid = "
	"ANY(string_to_array($3, E'\\x1f'))) RETURNING account_id, jid) "
	"SELECT d.jid FROM d JOIN roster_items r ON r.account_id = "
	"d.account_id AND r.contact = d.jid WHERE r.subscription IN "
	"('from', 'both')";

/* Collect and prepare the items' JIDs; NULL condition when fine. */
static const char *blocking_items(struct iq_pending *p, struct blocking_req *r)
{
	struct buf items;
	unsigned n = 0;
	buf_init(&items, 0);
	for (const struct xml_node *it = xml_first_element(p->payload);
	     it != NULL; it = xml_next_element(it)) {
		struct jid j;
		const char *error, *full;
		if (!xml_is(it, NS_BLOCKING, "item") || xml_attr(it, "jid") == NULL) {
			buf_free(&items);
			return "bad-request";
		}
		if (jid_parse(&p->arena, xml_attr(it, "jid"), &j, &error) < 0 ||
		    (full = jid_full(&p->arena, &j)) == NULL) {
			buf_free(&items);
			return "jid-malformed";
		}
		if (n++ > 0)
			buf_append(&items, "\x1f", 1);
		buf_append(&items, full, strlen(full));
	}
	buf_append(&items, "", 1);
	r->items = items.data;
	return n == 0 && r->block ? "bad-request" : NULL;
}

static void blocking_iq(struct worker *w, struct xml_node *st,
			const char *bare)
{
	struct iq_pending *p = iq_pending_new(w, st);
	struct blocking_req *r = blocking_req_new(bare);
	if (p == NULL || r == NULL) {
		iq_pending_free(&p);
		blocking_req_free(r);
		return;
	}
	const char *from_bare = iq_bare(p, p->from);
	if (from_bare == NULL || strcmp(from_bare, bare) != 0) {
		iq_reply_error(&p, "auth", "forbidden");
		blocking_req_free(r);
		return;
	}
	char max[16];
	const char *params[4] = { r->user, r->domain, NULL, max };
	snprintf(max, sizeof(max), "%u", w->cfg->blocklist_max_items);
	if (strcmp(p->type, "get") == 0 && xml_is(p->payload, NS_BLOCKING,
						  "blocklist")) {
		if (db_query(w->db, blocking_list_sql, 2, params, NULL, NULL, 0,
			     blocking_list_result, p) < 0)
			iq_reply_error(&p, "wait", "internal-server-error");
		blocking_req_free(r);   /* libpq copied the parameters */
		return;
	}
	r->block = xml_is(p->payload, NS_BLOCKING, "block");
	const char *cond = strcmp(p->type, "set") != 0 ||
			   (!r->block && !xml_is(p->payload, NS_BLOCKING, "unblock"))
			   ? "bad-request" : blocking_items(p, r);
	if (cond != NULL) {
		iq_reply_error(&p, "modify", cond);
		blocking_req_free(r);
		return;
	}
	params[2] = r->items;
	p->data = r;
	if (db_query(w->db, r->block ? blocking_block_sql : blocking_unblock_sql,
		     r->block ? 4 : 3, params, NULL, NULL, 0, blocking_changed,
		     p) < 0) {
		iq_reply_error(&p, "wait", "internal-server-error");
		blocking_req_free(r);
	}
}

/* ---- the stanza path (ext.h hooks) -------------------------------------- */

/* A local session whose account blocks the sender of st gets nothing;
 * messages and IQs are answered service-unavailable.  Returns 1 when
 * the stanza was stopped. */
/* The message a XEP-0280 received copy for c forwards, or NULL.  Only
 * the server makes those, from the account's own bare JID: a wrapper
 * from anyone else is that sender's own message. */
static const struct xml_node *blocking_carbon(const struct conn *c,
					      const struct xml_node *st)
{
	const struct xml_node *r = xml_first_element(st), *f;
	const char *from = xml_attr(st, "from");
	size_t blen = strcspn(c->jid, "/");
	if (strcmp(st->name, "message") != 0 || from == NULL ||
	    strncmp(from, c->jid, blen) != 0 || from[blen] != '\0' ||
	    !xml_is(r, "urn:xmpp:carbons:2", "received") ||
	    (f = xml_child(r, "urn:xmpp:forward:0", "forwarded")) == NULL)
		return NULL;
	return xml_child(f, NS_CLIENT, "message");
}

static int blocking_out_node(struct conn *c, const struct xml_node *st,
			     struct arena *a)
{
	const struct xml_node *inner = blocking_carbon(c, st);
	/* a copy of a blocked contact's message: dropped, no answer (the
	 * copy is the server's own) */
	if (inner != NULL)
		return c->nblocked > 0 &&
		       blocking_matches(c, xml_attr(inner, "from"));
	if (c->nblocked == 0 || !blocking_matches(c, xml_attr(st, "from")))
		return 0;
	struct buf out;
	const char *error;
	buf_init(&out, 0);
	if (strcmp(st->name, "presence") != 0 && stanza_may_bounce(st) &&
	    stanza_error_xml(&out, st, NULL, "cancel", "service-unavailable",
			     NULL) == 0 && buf_append(&out, "", 1) == 0) {
		struct xml_node *e = stanza_parse(a, buf_head(&out),
						  buf_used(&out) - 1, &error);
		if (e != NULL)
			route_stanza(c->w, a, e);
	}
	buf_free(&out);
	return 1;
}

/* The same for a stanza that arrived as text (frames, broadcasts). */
static int blocking_out_text(struct conn *c, const char *text, size_t len)
{
	struct arena a;
	const char *error;
	if (c->nblocked == 0)
		return 0;
	arena_init(&a, 2048);
	struct xml_node *st = stanza_parse(&a, text, len, &error);
	int r = st != NULL && blocking_out_node(c, st, &a);
	arena_free(&a);
	return r;
}

/* A block/unblock push reaching one of the account's sessions. */
static int blocking_frame(struct conn *c, int type, const char *text,
			  size_t len)
{
	struct arena a;
	const char *error;
	if (type != IPC_FRAME_BLOCK_PUSH)
		return 0;
	arena_init(&a, 1024);
	struct xml_node *st = stanza_parse(&a, text, len, &error);
	struct xml_node *q = st ? xml_first_element(st) : NULL;
	if (q != NULL)
		blocking_apply_push(c, q);
	arena_free(&a);
	conn_send(c, text, len);
	return 1;
}

/* Section 3.6: the user's own stanza to a blocked JID. */
static int blocking_in(struct conn *c, struct xml_node *st)
{
	struct buf out;
	if (!blocking_matches(c, xml_attr(st, "to")))
		return 0;
	if (strcmp(st->name, "presence") == 0 || !stanza_may_bounce(st))
		return 1;
	buf_init(&out, 0);
	/* From the blocked JID, to the sender (RFC 6120 section 8.3.1). */
	if (stanza_error_xml_app(&out, st, NULL, NULL, "cancel",
				 "not-acceptable", NULL, "<blocked xmlns='"
				 "urn:xmpp:blocking:errors'/>") == 0)
		conn_send(c, buf_head(&out), buf_used(&out));
	buf_free(&out);
	return 1;
}

/* ---- the extension (ext.h) ------------------------------------------- */

static const char *const blocking_disco[] = { NS_BLOCKING, NULL };
static const struct ext_iq blocking_iqs[] = {
	{ NS_BLOCKING, NULL, EXT_IQ_GET | EXT_IQ_SET, blocking_iq },
	{ NULL, NULL, 0, NULL },
};
static const char *const blocking_config[] = {
	"im.blocklist_max_items", NULL,
};
static const char *const blocking_schema[] = { "002-im.sql", NULL };

const struct ext blocking_ext = {
	.name = "blocking",
	.disco_features = blocking_disco,
	.iq = blocking_iqs,
	.config_keys = blocking_config,
	.schema = blocking_schema,
	.session_bound = blocking_load,
	.stanza_in = blocking_in,
	.stanza_out_node = blocking_out_node,
	.stanza_out_text = blocking_out_text,
	.frame = blocking_frame,
	.conn_free = blocking_free,
	/* XEP-0198 resumption (sm.c), on any worker: the list again */
	.session_restore = blocking_restore,
};

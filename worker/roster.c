/*
 * roster.c - RFC 6121 section 2: roster get (with versioning, 2.6: an
 * empty result when the client is current, pushes of what changed since
 * its version otherwise), set and remove, and pushes to every resource
 * of the account that asked for the roster, on whatever worker it is.
 * Versions are the account's counter in roster_versions; removed items
 * stay as tombstones so that a push can tell an old client about them.
 * Failure policy: a database failure answers the IQ with a wait error.
 */
#include "worker.h"
#include "../db/db.h"
#include "ext.h"
#include "iq.h"
#include "jid.h"
#include "log.h"
#include "session.h"
#include "stanza.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_ROSTER "jabber:iq:roster"

#define ROSTER_NAME_MAX 1023
#define ROSTER_GROUP_MAX 1023
#define ROSTER_SEP "\x1f"   /* joins group names; never in XML text */

static void roster_attr(struct buf *out, const char *name, const char *v)
{
	buf_appendf(out, " %s='", name);
	xml_escape(out, v, strlen(v), 1);
	buf_append(out, "'", 1);
}

/* <item jid='' name='' subscription='' ask=''><group/>...</item> */
static void roster_item_xml(struct buf *out, const char *contact,
			    const char *name, const char *groups,
			    const char *sub, int ask, int approved)
{
	buf_appendf(out, "<item");
	roster_attr(out, "jid", contact);
	if (name != NULL && name[0] != '\0')
		roster_attr(out, "name", name);
	roster_attr(out, "subscription", sub);
	if (ask)
		buf_appendf(out, " ask='subscribe'");
	if (approved)      /* section 3.4 pre-approval */
		buf_appendf(out, " approved='true'");
	if (groups == NULL || groups[0] == '\0') {
		buf_appendf(out, "/>");
		return;
	}
	buf_appendf(out, ">");
	while (*groups != '\0') {
		size_t n = strcspn(groups, ROSTER_SEP);
		buf_appendf(out, "<group>");
		xml_escape(out, groups, n, 0);
		buf_appendf(out, "</group>");
		groups += n;
		groups += strspn(groups, ROSTER_SEP);
	}
	buf_appendf(out, "</item>");
}

static void roster_push_text(struct worker *w, struct buf *out,
			     const char *item_xml, long long ver)
{
	static unsigned counter;
	buf_appendf(out, "<iq id='push-%u-%u' type='set'><query xmlns='"
		    NS_ROSTER "' ver='%lld'>%s</query></iq>", w->slot,
		    ++counter, ver, item_xml);
}

static void roster_push(struct worker *w, const char *bare, const char *item_xml,
		 long long ver)
{
	struct buf out;
	buf_init(&out, 0);
	roster_push_text(w, &out, item_xml, ver);
	route_to_resources(w, bare, buf_head(&out), buf_used(&out),
			   IPC_FRAME_ROSTER_PUSH, 0, NULL);
	buf_free(&out);
}

/* A push for one resource only (section 2.6.3 catch-up after a get). */
static void roster_push_one(struct worker *w, const char *full,
			    const char *item_xml, long long ver)
{
	struct session_info s;
	struct buf out;
	const char *error;
	if (shm_session_get(w->shm->sessions, full, &s) != 1)
		return;
	buf_init(&out, 0);
	roster_push_text(w, &out, item_xml, ver);
	if (s.slot != w->slot) {
		if (worker_send_session(w, &s, IPC_FRAME_STANZA,
					buf_head(&out), buf_used(&out),
					&error) < 0)
			log_warn("roster push to w%u: %s", s.slot, error);
	} else {
		struct conn *c = conn_lookup(w, s.conn_id, s.gen);
		if (c != NULL && c->bound)
			conn_send(c, buf_head(&out), buf_used(&out));
	}
	buf_free(&out);
}

/* Push the item described by res row 0 from column col: subscription,
 * ask_out, name, groups, ver; approved_col is the pre-approval flag's. */
static void roster_push_row(struct worker *w, const char *bare,
			    const char *contact, const PGresult *res, int col,
			    int approved_col)
{
	struct buf item;
	buf_init(&item, 0);
	roster_item_xml(&item, contact,
			PQgetisnull(res, 0, col + 2) ? NULL
						     : PQgetvalue(res, 0, col + 2),
			PQgetvalue(res, 0, col + 3), PQgetvalue(res, 0, col),
			strcmp(PQgetvalue(res, 0, col + 1), "t") == 0,
			strcmp(PQgetvalue(res, 0, approved_col), "t") == 0);
	buf_append(&item, "", 1);
	roster_push(w, bare, buf_head(&item),
		    strtoll(PQgetvalue(res, 0, col + 4), NULL, 10));
	buf_free(&item);
}

/* ---- get -------------------------------------------------------------- */

struct roster_req {
	char *user;             /* "user\0domain" (jid_split_account) */
	const char *domain;     /* points into user's buffer */
	char *bare;
	const char *contact;        /* set/remove: the item's JID */
	long long client_ver;       /* -1: none or unusable */
};

static const char roster_get_sql[] =
	"SELECT coalesce((SELECT ver FROM roster_versions v WHERE "
	"v.account_id = a.acc), 0), i.contact, i.name, "
	"array_to_string(i.groups, E'\\x1f'), i.subscription, i.ask_out, "
	"i.ver, i.removed, i.approved FROM (SELECT xmppd_account_id($1, $2) "
	"acc) a LEFT JOIN roster_items i ON i.account_id = a.acc AND "
	"(i.listed OR i.removed) ORDER BY i.contact";

static void roster_req_free(struct roster_req *r)
{
	if (r != NULL) {
		free(r->user);
		free(r->bare);
		free(r);
	}
}

static void roster_row_item(struct buf *out, const PGresult *res, int i)
{
	int removed = strcmp(PQgetvalue(res, i, 7), "t") == 0;
	roster_item_xml(out, PQgetvalue(res, i, 1),
			PQgetisnull(res, i, 2) ? NULL : PQgetvalue(res, i, 2),
			removed ? "" : PQgetvalue(res, i, 3),
			removed ? "remove" : PQgetvalue(res, i, 4),
			!removed && strcmp(PQgetvalue(res, i, 5), "t") == 0,
			!removed && strcmp(PQgetvalue(res, i, 8), "t") == 0);
}

/* Section 2.6.3: an empty result, then a push per item changed since
 * the client's version. */
static void roster_get_pushes(struct iq_pending *p, struct roster_req *r,
			      const PGresult *res)
{
	struct worker *w = p->w;
	char *from = strdup(p->from);
	int n = PQntuples(res);
	int *order = calloc((size_t)n + 1, sizeof(*order));
	iq_reply_result(&p, NULL);
	/* Oldest change first, so a client that drops mid-way keeps a
	 * version that covers what it saw. */
	for (int i = 0; order != NULL && i < n; i++) {
		int k = i;
		long long v = strtoll(PQgetvalue(res, i, 6), NULL, 10);
		while (k > 0 && strtoll(PQgetvalue(res, order[k - 1], 6), NULL,
					10) > v) {
			order[k] = order[k - 1];
			k--;
		}
		order[k] = i;
	}
	for (int k = 0; from != NULL && order != NULL && k < n; k++) {
		int i = order[k];
		if (PQgetisnull(res, i, 1) ||
		    strtoll(PQgetvalue(res, i, 6), NULL, 10) <= r->client_ver)
			continue;
		struct buf item;
		buf_init(&item, 0);
		roster_row_item(&item, res, i);
		buf_append(&item, "", 1);
		roster_push_one(w, from, buf_head(&item),
				strtoll(PQgetvalue(res, i, 6), NULL, 10));
		buf_free(&item);
	}
	free(order);
	free(from);
}

static void roster_get_result(void *ctx, const PGresult *res, const char *error)
{
	struct iq_pending *p = ctx;
	struct roster_req *r = p->data;
	if (res == NULL || PQntuples(res) < 1) {
		log_warn("roster of %s: %s", r->bare, error ? error : "no row");
		iq_reply_error(&p, "wait", "internal-server-error");
		roster_req_free(r);
		return;
	}
	long long cur = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	if (r->client_ver >= 0 && r->client_ver <= cur) {
		roster_get_pushes(p, r, res);
		roster_req_free(r);
		return;
	}
	struct buf out;
	buf_init(&out, 0);
	buf_appendf(&out, "<query xmlns='" NS_ROSTER "' ver='%lld'>", cur);
	for (int i = 0; i < PQntuples(res); i++)
		if (!PQgetisnull(res, i, 1) &&
		    strcmp(PQgetvalue(res, i, 7), "f") == 0)
			roster_row_item(&out, res, i);
	buf_appendf(&out, "</query>");
	buf_append(&out, "", 1);
	iq_reply_result(&p, buf_head(&out));
	buf_free(&out);
	roster_req_free(r);
}

static struct roster_req *roster_req_new(const char *bare)
{
	struct roster_req *r = calloc(1, sizeof(*r));
	const char *domain;
	if (r == NULL || (r->bare = strdup(bare)) == NULL ||
	    (r->user = jid_split_account(bare, &domain)) == NULL) {
		roster_req_free(r);
		return NULL;
	}
	r->domain = domain;
	r->client_ver = -1;
	return r;
}

static void roster_query(struct iq_pending *p, struct roster_req *r,
			 const char *sql, int n, const char *const *params,
			 db_callback *cb)
{
	p->data = r;
	if (p->w->db == NULL ||
	    db_query(p->w->db, sql, n, params, NULL, NULL, 0, cb, p) < 0) {
		iq_reply_error(&p, "wait", "internal-server-error");
		roster_req_free(r);
	}
}

/* The requesting resource becomes "interested" (2.1.6): it gets pushes. */
static void roster_mark_interested(struct worker *w, const char *from)
{
	struct session_info s;
	if (shm_session_get(w->shm->sessions, from, &s) != 1 ||
	    s.slot != w->slot)
		return;
	struct conn *c = conn_lookup(w, s.conn_id, s.gen);
	if (c != NULL && !c->roster_requested) {
		c->roster_requested = 1;
		ext_session_changed(c);     /* kept for resumption (sm.c) */
	}
}

/* XEP-0198 resumption: an interested resource stays interested. */
static uint32_t roster_save(const struct conn *c)
{
	return (uint32_t)c->roster_requested;
}

static void roster_restore(struct conn *c, uint32_t word)
{
	c->roster_requested = word != 0;
}

static void roster_get(struct iq_pending *p, struct roster_req *r)
{
	const char *ver = xml_attr(p->payload, "ver");
	const char *params[2] = { r->user, r->domain };
	char *end;
	if (ver != NULL && ver[0] != '\0') {
		long long v = strtoll(ver, &end, 10);
		r->client_ver = (*end == '\0' && v >= 0) ? v : -1;
	}
	roster_mark_interested(p->w, p->from);
	roster_query(p, r, roster_get_sql, 2, params, roster_get_result);
}

/* ---- set and remove ----------------------------------------------------- */

static const char roster_set_sql[] =
	"SELECT ok, ver, subscription, ask_out, (SELECT approved FROM "
	"roster_items WHERE account_id = xmppd_account_id($1, $2) AND "
	"contact = $3) FROM xmppd_roster_set($1, $2, "
	"$3, $4, string_to_array($5, E'\\x1f'), $6::int)";
static const char roster_remove_sql[] =
	"SELECT present, had_to, had_from, had_pending_in, ver FROM "
	"xmppd_roster_remove($1, $2, $3)";

/* The item's groups joined with ROSTER_SEP (validated beforehand). */
static void roster_groups(struct iq_pending *p, const struct xml_node *it,
			  struct buf *out)
{
	for (const struct xml_node *g = xml_first_element(it); g != NULL;
	     g = xml_next_element(g)) {
		if (!xml_is(g, NS_ROSTER, "group"))
			continue;
		char *name = xml_text(&p->arena, g);
		if (buf_used(out) > 0)
			buf_append(out, ROSTER_SEP, 1);
		if (name != NULL)
			buf_append(out, name, strlen(name));
	}
	buf_append(out, "", 1);
}

static void roster_set_result(void *ctx, const PGresult *res, const char *error)
{
	struct iq_pending *p = ctx;
	struct roster_req *r = p->data;
	if (res == NULL || PQntuples(res) != 1) {
		log_warn("roster set for %s: %s", r->bare, error ? error : "no row");
		iq_reply_error(&p, "wait", "internal-server-error");
	} else if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		iq_reply_error(&p, "cancel", "not-acceptable");
	} else {
		struct worker *w = p->w;
		struct buf item;
		const struct xml_node *it = xml_first_element(p->payload);
		struct buf groups;
		buf_init(&item, 0);
		buf_init(&groups, 0);
		roster_groups(p, it, &groups);
		roster_item_xml(&item, r->contact, xml_attr(it, "name"),
				buf_head(&groups) ? buf_head(&groups) : "",
				PQgetvalue(res, 0, 2),
				strcmp(PQgetvalue(res, 0, 3), "t") == 0,
				strcmp(PQgetvalue(res, 0, 4), "t") == 0);
		buf_append(&item, "", 1);
		iq_reply_result(&p, NULL);
		roster_push(w, r->bare, buf_head(&item),
			    strtoll(PQgetvalue(res, 0, 1), NULL, 10));
		buf_free(&item);
		buf_free(&groups);
	}
	roster_req_free(r);
}

static void roster_remove_result(void *ctx, const PGresult *res,
				 const char *error)
{
	struct iq_pending *p = ctx;
	struct roster_req *r = p->data;
	if (res == NULL || PQntuples(res) != 1) {
		log_warn("roster remove for %s: %s", r->bare,
			 error ? error : "no row");
		iq_reply_error(&p, "wait", "internal-server-error");
	} else if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		iq_reply_error(&p, "cancel", "item-not-found");
	} else {
		struct worker *w = p->w;
		struct buf item;
		/* r->contact lives in p's arena, gone with the reply. */
		char *contact = strdup(r->contact);
		buf_init(&item, 0);
		roster_item_xml(&item, r->contact, NULL, "", "remove", 0, 0);
		buf_append(&item, "", 1);
		iq_reply_result(&p, NULL);
		roster_push(w, r->bare, buf_head(&item),
			    strtoll(PQgetvalue(res, 0, 4), NULL, 10));
		buf_free(&item);
		/* Section 2.5.2: the contact learns of it as if we had sent
		 * unsubscribe and unsubscribed. */
		if (contact != NULL && strcmp(PQgetvalue(res, 0, 1), "t") == 0)
			presence_sub_inbound(w, r->bare, contact, "unsubscribe");
		if (contact != NULL && (strcmp(PQgetvalue(res, 0, 2), "t") == 0 ||
					strcmp(PQgetvalue(res, 0, 3), "t") == 0))
			presence_sub_inbound(w, r->bare, contact,
					     "unsubscribed");
		free(contact);
	}
	roster_req_free(r);
}

/* Section 2.3.3: NULL when the item is acceptable, else the error
 * condition; *type_r gets its type. */
static const char *roster_item_check(struct iq_pending *p,
				     const struct xml_node *it,
				     const char **type_r)
{
	const char *name = xml_attr(it, "name");
	unsigned n = 0;
	*type_r = "modify";
	if (name != NULL && strlen(name) > ROSTER_NAME_MAX)
		return "not-acceptable";
	for (const struct xml_node *g = xml_first_element(it); g != NULL;
	     g = xml_next_element(g)) {
		if (!xml_is(g, NS_ROSTER, "group"))
			continue;
		char *gn = xml_text(&p->arena, g);
		if (gn == NULL || gn[0] == '\0' || strlen(gn) > ROSTER_GROUP_MAX ||
		    strchr(gn, ROSTER_SEP[0]) != NULL)
			return "not-acceptable";
		if (++n > p->w->cfg->roster_max_groups) {
			log_info("roster item refused: more than %u groups "
				 "(im.roster_max_groups)",
				 p->w->cfg->roster_max_groups);
			return "not-acceptable";
		}
		for (const struct xml_node *h = xml_first_element(it); h != g;
		     h = xml_next_element(h)) {
			char *hn = xml_is(h, NS_ROSTER, "group")
				   ? xml_text(&p->arena, h) : NULL;
			if (hn != NULL && strcmp(hn, gn) == 0)
				return "bad-request";
		}
	}
	return NULL;
}

static void roster_set(struct iq_pending *p, struct roster_req *r)
{
	const struct xml_node *it = xml_first_element(p->payload);
	const char *error, *etype;
	struct jid j;
	if (it == NULL || !xml_is(it, NS_ROSTER, "item") ||
	    xml_next_element(it) != NULL || xml_attr(it, "jid") == NULL) {
		iq_reply_error(&p, "modify", "bad-request");
		roster_req_free(r);
		return;
	}
	if (jid_parse(&p->arena, xml_attr(it, "jid"), &j, &error) < 0 ||
	    (r->contact = jid_full(&p->arena, &j)) == NULL) {
		iq_reply_error(&p, "modify", "jid-malformed");
		roster_req_free(r);
		return;
	}
	const char *sub = xml_attr(it, "subscription");
	if (sub != NULL && strcmp(sub, "remove") == 0) {
		const char *params[3] = { r->user, r->domain, r->contact };
		roster_query(p, r, roster_remove_sql, 3, params,
			     roster_remove_result);
		return;
	}
	const char *cond = roster_item_check(p, it, &etype);
	if (cond != NULL) {
		iq_reply_error(&p, etype, cond);
		roster_req_free(r);
		return;
	}
	struct buf groups;
	char max[16];
	buf_init(&groups, 0);
	roster_groups(p, it, &groups);
	snprintf(max, sizeof(max), "%u", p->w->cfg->roster_max_items);
	const char *params[6] = { r->user, r->domain, r->contact,
				  xml_attr(it, "name"), buf_head(&groups), max };
	roster_query(p, r, roster_set_sql, 6, params, roster_set_result);
	buf_free(&groups);
}

static void roster_iq(struct worker *w, struct xml_node *st,
		      const char *bare)
{
	struct iq_pending *p = iq_pending_new(w, st);
	if (p == NULL)
		return;
	struct roster_req *r = roster_req_new(bare);
	const char *from_bare = iq_bare(p, p->from);
	if (r == NULL || from_bare == NULL) {
		iq_reply_error(&p, "wait", "resource-constraint");
		roster_req_free(r);
		return;
	}
	if (strcmp(from_bare, bare) != 0) {
		iq_reply_error(&p, "auth", "forbidden");
		roster_req_free(r);
	} else if (strcmp(p->type, "get") == 0) {
		roster_get(p, r);
	} else {
		roster_set(p, r);
	}
}

/* ---- the extension (ext.h) ------------------------------------------- */

/* RFC 6121 section 2.1.6: pushes go only to the resources that asked
 * for the roster. */
static int roster_frame(struct conn *c, int type, const char *text,
			size_t len)
{
	if (type != IPC_FRAME_ROSTER_PUSH)
		return 0;
	if (c->roster_requested)
		conn_send(c, text, len);
	return 1;
}

/* RFC 6121 sections 2.6.1 (versioning); pre-approval is the presence
 * code's (stream.c). */
static void roster_stream_features(struct conn *c, struct buf *out)
{
	(void)c;
	buf_appendf(out, "<ver xmlns='urn:xmpp:features:rosterver'/>");
}

static const char *const roster_disco[] = { NS_ROSTER, NULL };
static const struct ext_iq roster_iqs[] = {
	{ NS_ROSTER, "query", EXT_IQ_GET | EXT_IQ_SET, roster_iq },
	{ NULL, NULL, 0, NULL },
};
static const char *const roster_config[] = {
	"im.roster_max_items", "im.roster_max_groups", NULL,
};
static const char *const roster_schema[] = {
	"002-im.sql", NULL,
};

const struct ext roster_ext = {
	.name = "roster",
	.disco_features = roster_disco,
	.iq = roster_iqs,
	.config_keys = roster_config,
	.schema = roster_schema,
	.stream_features = roster_stream_features,
	.frame = roster_frame,
	.subscription_changed = roster_push_row,
	.session_save = roster_save,
	.session_restore = roster_restore,
};

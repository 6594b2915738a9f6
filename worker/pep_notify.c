/*
 * pep_notify.c - PEP notifications (XEP-0163 section 4, XEP-0060
 * section 9): who gets the event of a stored publish, retract, purge or
 * delete, and the last items a session gets when it shows interest.
 *
 * An event's text is built once (from the owner's bare JID, type
 * headline, a unique id) with the 'to' spliced per recipient.  It goes
 * to (a) the owner's available sessions whose verified entity
 * capabilities list NODE+notify, at once, and (b) after one query, to
 * the contacts with from/both on the owner's roster, not blocked by the
 * owner and admitted by the node's access model (roster: an allowed
 * group, whitelist: member affiliation; open and presence: from/both),
 * each of their available sessions with priority >= 0 and NODE+notify,
 * on any worker (session table + IPC frame, as route.c); the same query
 * gives (c) the contacts' full JIDs on other servers that sent the owner
 * presence with caps (pep_remote.c, pep_remote_presence), each sent its
 * own copy over s2s when its verified caps list NODE+notify.  No caps, no
 * events (XEP-0060 section 9.2).  Events are written to the session and
 * nowhere else: not stored offline, not carbon-copied, not archived; a
 * session gone meanwhile gets nothing (route.c drops headlines).
 * A publish carries <addresses><address type='replyto'/> (XEP-0163
 * section 4.3.1; every recipient here has from/both or is the owner).
 *
 * Last items (send_last_published_item on_sub_and_presence, with
 * <delay/>, without replyto): when a session's caps become known or
 * change (caps_changed: only the nodes new in its notify set, so once
 * per interest), from its own account and every local account having
 * it from/both (xmppd_pep_last_items, 009-pep-notify.sql, one statement
 * per login); and when an owner grants a subscription
 * (subscription_changed), the owner's last items to the contact's
 * interested sessions.
 * Failure policy: a notification is best effort: a database failure or
 * a full queue loses events (logged at info/warn), never the stored
 * item; the publisher's IQ result is already out.
 */
#include "worker.h"
#include "../db/db.h"
#include "../shm/caps.h"
#include "../shm/queue.h"
#include "../shm/session.h"
#include "caps.h"
#include "config.h"
#include "ext.h"
#include "log.h"
#include "pep.h"
#include "pubsub.h"
#include "stanza.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_ADDRESS "http://jabber.org/protocol/address"
#define NS_DELAY "urn:xmpp:delay"

static unsigned pep_notify_seq;         /* this worker's event ids */

/* One event's text around the 'to' (malloc()ed, freed with the job). */
struct pn_event {
	struct worker *w;
	char *owner;            /* bare JID */
	char *node;
	char *head;             /* "<message from='O' to='" */
	char *tail;             /* "' type=.. id=..>...</message>" */
	size_t head_len, tail_len;
};

static void pn_event_free(struct pn_event *e)
{
	if (e == NULL)
		return;
	free(e->owner);
	free(e->node);
	free(e->head);
	free(e->tail);
	free(e);
}

static void pn_attr(struct buf *b, const char *name, const char *v)
{
	buf_appendf(b, " %s='", name);
	xml_escape(b, v, strlen(v), 1);
	buf_appendf(b, "'");
}

static char *pn_take(struct buf *b, size_t *len_r)
{
	char *s = NULL;
	if (buf_append(b, "", 1) == 0) {
		*len_r = buf_used(b) - 1;
		s = malloc(buf_used(b));
		if (s != NULL)
			memcpy(s, buf_head(b), buf_used(b));
	}
	buf_free(b);
	return s;
}

/* A unique id for bounce tracking (XEP-0060 section 12.3). */
static void pn_id(struct worker *w, char *id, size_t size)
{
	snprintf(id, size, "pep-%llx-%x-%x", (unsigned long long)w->now_ms,
		 w->slot, ++pep_notify_seq);
}

/* The head and tail around 'to' of a message from owner whose
 * <event/> (and what follows it) is body. */
static struct pn_event *pn_event_new(struct worker *w, const char *owner,
				     const char *node, const char *type,
				     const char *body)
{
	struct pn_event *e = calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	e->w = w;
	e->owner = strdup(owner);
	e->node = strdup(node);
	struct buf b;
	char id[64];
	buf_init(&b, 0);
	buf_appendf(&b, "<message");
	pn_attr(&b, "from", owner);
	buf_appendf(&b, " to='");
	e->head = pn_take(&b, &e->head_len);
	pn_id(w, id, sizeof(id));
	buf_init(&b, 0);
	buf_appendf(&b, "' type='%s' id='%s'>%s</message>", type, id, body);
	e->tail = pn_take(&b, &e->tail_len);
	if (e->owner == NULL || e->node == NULL || e->head == NULL ||
	    e->tail == NULL) {
		pn_event_free(e);
		return NULL;
	}
	return e;
}

/* Write text to session s (any worker's); a session gone gets nothing. */
static void pn_send(struct worker *w, const struct session_info *s,
		    const char *text, size_t len)
{
	const char *error;
	if (s->slot != w->slot) {
		if (queue_send(w->q, s->slot, IPC_FRAME_STANZA, s->conn_id,
			       s->gen, text, len, &error) < 0)
			log_info("pep: event to %s lost: %s", s->jid, error);
		return;
	}
	struct conn *c = conn_lookup(w, s->conn_id, s->gen);
	if (c == NULL || !c->bound)
		return;
	if (!ext_stanza_out_text(c, text, len))
		conn_send(c, text, len);
}

/* e's text with to = jid into b (reset first). */
static int pn_text(struct buf *b, const struct pn_event *e, const char *jid)
{
	buf_consume(b, buf_used(b));
	if (buf_append(b, e->head, e->head_len) < 0)
		return -1;
	xml_escape(b, jid, strlen(jid), 1);
	return buf_append(b, e->tail, e->tail_len);
}

/* e to every available session of bare wanting e->node (and, unless
 * owner, with priority >= 0). */
static void pn_to_bare(struct worker *w, const struct pn_event *e,
		       const char *bare, int owner)
{
	struct session_info *heap;
	struct buf b;
	int n;
	buf_init(&b, 0);
	struct session_info *res = route_sessions(w, bare, &n, &heap);
	for (int i = 0; i < n; i++) {
		const struct session_info *s = &res[i];
		if (!s->available || (!owner && s->priority < 0) ||
		    !caps_session_wants(w, s, e->node))
			continue;
		if (pn_text(&b, e, s->jid) == 0)
			pn_send(w, s, buf_head(&b), buf_used(&b));
	}
	route_sessions_done(heap);
	buf_free(&b);
}

static int pn_true(const char *v)
{
	return v != NULL && strcmp(v, "true") == 0;
}

/* The <event/> of ev (and the replyto of a publish) into b; 0 when the
 * change tells nobody. */
static int pn_body(struct buf *b, const struct pep_event *ev)
{
	const struct pubsub_config *cfg = &ev->cfg;
	if (ev->kind != PEP_EV_DELETE &&
	    cfg->v[PUBSUB_F_DELIVER_NOTIFICATIONS] != NULL &&
	    !pn_true(cfg->v[PUBSUB_F_DELIVER_NOTIFICATIONS]))
		return 0;
	int retracts = pn_true(cfg->v[PUBSUB_F_NOTIFY_RETRACT]);
	buf_appendf(b, "<event xmlns='" NS_PUBSUB_EVENT "'>");
	switch (ev->kind) {
	case PEP_EV_ITEM:
		buf_appendf(b, "<items");
		pn_attr(b, "node", ev->node);
		buf_appendf(b, "><item");
		pn_attr(b, "id", ev->item_id);
		if (cfg->v[PUBSUB_F_DELIVER_PAYLOADS] != NULL &&
		    !pn_true(cfg->v[PUBSUB_F_DELIVER_PAYLOADS]))
			buf_appendf(b, "/>");
		else
			buf_appendf(b, ">%s</item>", ev->payload);
		for (int i = 0; retracts && i < ev->ntrimmed; i++) {
			buf_appendf(b, "<retract");
			pn_attr(b, "id", ev->trimmed[i]);
			buf_appendf(b, "/>");
		}
		buf_appendf(b, "</items></event><addresses xmlns='"
			    NS_ADDRESS "'><address type='replyto'");
		pn_attr(b, "jid", ev->publisher);
		buf_appendf(b, "/></addresses>");
		return 1;
	case PEP_EV_RETRACT:
		if (!retracts && !ev->notify)
			return 0;
		buf_appendf(b, "<items");
		pn_attr(b, "node", ev->node);
		buf_appendf(b, "><retract");
		pn_attr(b, "id", ev->item_id);
		buf_appendf(b, "/></items>");
		break;
	case PEP_EV_PURGE:
		if (!retracts)
			return 0;
		buf_appendf(b, "<purge");
		pn_attr(b, "node", ev->node);
		buf_appendf(b, "/>");
		break;
	case PEP_EV_DELETE:
		buf_appendf(b, "<delete");
		pn_attr(b, "node", ev->node);
		buf_appendf(b, "/>");
		break;
	}
	buf_appendf(b, "</event>");
	return 1;
}

/* The owner's contacts the event may reach (section 1.5 (b)): from/both,
 * not removed, not blocked, not an outcast, in an allowed group (roster)
 * or a member (whitelist).  A deleted node's affiliations are gone: its
 * delete event reaches no whitelist member. */
static const char pn_contacts_sql[] =
	"SELECT i.contact, r.full_jid, r.caps_algo, r.caps_ver "
	"FROM roster_items i "
	"LEFT JOIN pep_remote_presence r ON r.account_id = i.account_id AND "
	"r.bare_jid = i.contact "
	"LEFT JOIN pubsub_nodes n ON n.service = $1 || '@' || $2 AND "
	"n.node = $3 "
	"LEFT JOIN pubsub_affiliations f ON f.node_id = n.id AND "
	"f.jid = i.contact "
	"WHERE i.account_id = xmppd_account_id($1, $2) AND NOT i.removed "
	"AND i.subscription IN ('from', 'both') "
	"AND i.contact <> $1 || '@' || $2 "
	"AND NOT EXISTS (SELECT 1 FROM blocklist b WHERE b.account_id = "
	"i.account_id AND b.jid IN (i.contact, split_part(i.contact, '@', 2))) "
	"AND f.affiliation IS DISTINCT FROM 'outcast' "
	"AND CASE $4 WHEN 'roster' THEN i.groups && $5::text[] "
	"WHEN 'whitelist' THEN COALESCE(f.affiliation IN ('member', "
	"'publisher'), false) ELSE true END";

static void pn_contacts_result(void *ctx, const PGresult *res,
			       const char *error)
{
	struct pn_event *e = ctx;
	if (res == NULL) {
		log_info("pep: events of %s node %s to contacts lost: %s",
			 e->owner, e->node, error != NULL ? error :
			 "database unavailable");
		pn_event_free(e);
		return;
	}
	struct buf b;
	buf_init(&b, 0);
	for (int i = 0; i < PQntuples(res); i++) {
		if (PQgetisnull(res, i, 1)) {
			pn_to_bare(e->w, e, PQgetvalue(res, i, 0), 0);
			continue;
		}
		/* (c) a full JID on another server (pep_remote.c) */
		const char *full = PQgetvalue(res, i, 1);
		if (e->w->cfg->pep_max_remote_recipients > 0 &&
		    pep_remote_wants(e->w, PQgetvalue(res, i, 2),
				     PQgetvalue(res, i, 3), e->node) &&
		    pn_text(&b, e, full) == 0)
			pep_remote_route(e->w, buf_head(&b), buf_used(&b));
	}
	buf_free(&b);
	pn_event_free(e);
}

void pep_notify_event(struct worker *w, const struct pep_event *ev)
{
	struct buf body;
	buf_init(&body, 0);
	if (!pn_body(&body, ev) || buf_append(&body, "", 1) < 0) {
		buf_free(&body);
		return;
	}
	const char *type = ev->cfg.v[PUBSUB_F_NOTIFICATION_TYPE] != NULL &&
			   strcmp(ev->cfg.v[PUBSUB_F_NOTIFICATION_TYPE],
				  "normal") == 0 ? "normal" : "headline";
	struct pn_event *e = pn_event_new(w, ev->owner, ev->node, type,
					  buf_head(&body));
	buf_free(&body);
	if (e == NULL) {
		log_warn("pep: events of %s node %s lost: no memory",
			 ev->owner, ev->node);
		return;
	}
	/* (a) the owner's own sessions, whatever the access model */
	pn_to_bare(w, e, ev->owner, 1);
	/* (b) its contacts, after the query */
	const char *at = strchr(ev->owner, '@');
	struct buf g;
	buf_init(&g, 0);
	char user[IPC_JID_MAX + 1];
	if (at == NULL || (size_t)(at - ev->owner) >= sizeof(user) ||
	    w->db == NULL ||
	    pubsub_form_array_literal(&g, ev->cfg.groups, ev->cfg.ngroups) < 0 ||
	    buf_append(&g, "", 1) < 0) {
		buf_free(&g);
		pn_event_free(e);
		return;
	}
	memcpy(user, ev->owner, (size_t)(at - ev->owner));
	user[at - ev->owner] = '\0';
	const char *access = ev->cfg.v[PUBSUB_F_ACCESS_MODEL] != NULL ?
			     ev->cfg.v[PUBSUB_F_ACCESS_MODEL] : "presence";
	const char *params[5] = { user, at + 1, ev->node, access,
				  buf_head(&g) };
	if (db_query(w->db, pn_contacts_sql, 5, params, NULL, NULL, 0,
		     pn_contacts_result, e) < 0) {
		log_info("pep: events of %s node %s to contacts lost: "
			 "database unavailable", ev->owner, ev->node);
		pn_event_free(e);
	}
	buf_free(&g);
}

/* ---- last items ------------------------------------------------------ */

static const char pn_last_sql[] =
	"SELECT service, node, item_id, payload, stamp FROM "
	"xmppd_pep_last_items($1, $2, $3)";

/* A last-items query in flight: for one local conn (caps changed) or
 * for every interested session of a contact (subscription). */
struct pn_last {
	struct worker *w;
	uint32_t conn_id, gen;  /* the conn (caps); 0: by contact */
	char *contact;          /* bare JID (subscription) */
	uint64_t *want;         /* the new +notify hashes (caps) */
	unsigned nwant;
};

static void pn_last_free(struct pn_last *l)
{
	free(l->contact);
	free(l->want);
	free(l);
}

int pep_notify_last_text(struct buf *b, struct worker *w, const char *owner,
			 const char *to, const char *node,
			 const char *item_id, const char *payload,
			 const char *stamp)
{
	char id[64];
	pn_id(w, id, sizeof(id));
	buf_consume(b, buf_used(b));
	buf_appendf(b, "<message");
	pn_attr(b, "from", owner);
	pn_attr(b, "to", to);
	buf_appendf(b, " type='headline' id='%s'><event xmlns='"
		    NS_PUBSUB_EVENT "'><items", id);
	pn_attr(b, "node", node);
	buf_appendf(b, "><item");
	pn_attr(b, "id", item_id);
	buf_appendf(b, ">%s</item></items></event><delay xmlns='" NS_DELAY
		    "'", payload);
	pn_attr(b, "stamp", stamp);
	return buf_appendf(b, "/></message>");
}

/* The last-item message of row i of res, to jid, into b. */
static int pn_last_text(struct buf *b, struct worker *w, const PGresult *res,
			int i, const char *jid)
{
	return pep_notify_last_text(b, w, PQgetvalue(res, i, 0), jid,
				    PQgetvalue(res, i, 1),
				    PQgetvalue(res, i, 2),
				    PQgetvalue(res, i, 3),
				    PQgetvalue(res, i, 4));
}

static void pn_last_result(void *ctx, const PGresult *res, const char *error)
{
	struct pn_last *l = ctx;
	struct worker *w = l->w;
	struct buf b;
	if (res == NULL) {
		log_info("pep: last items for %s lost: %s", l->contact != NULL ?
			 l->contact : "a session", error != NULL ? error :
			 "database unavailable");
		pn_last_free(l);
		return;
	}
	buf_init(&b, 0);
	if (l->contact == NULL) {
		struct conn *c = conn_lookup(w, l->conn_id, l->gen);
		struct shm_caps *t = w->shm->caps;
		for (int i = 0; c != NULL && c->bound && c->available &&
		     t != NULL && i < PQntuples(res); i++) {
			const char *node = PQgetvalue(res, i, 1);
			uint64_t h = shm_caps_hash(t, node, strlen(node));
			unsigned k = 0;
			while (k < l->nwant && l->want[k] != h)
				k++;
			if (k == l->nwant)
				continue;
			if (pn_last_text(&b, w, res, i, c->jid) < 0)
				continue;
			if (!ext_stanza_out_text(c, buf_head(&b), buf_used(&b)))
				conn_send(c, buf_head(&b), buf_used(&b));
		}
	} else {
		struct session_info *heap;
		int n;
		struct session_info *ss = route_sessions(w, l->contact, &n,
							 &heap);
		for (int k = 0; k < n; k++) {
			const struct session_info *s = &ss[k];
			if (!s->available || s->priority < 0)
				continue;
			for (int i = 0; i < PQntuples(res); i++)
				if (caps_session_wants(w, s,
						       PQgetvalue(res, i, 1)) &&
				    pn_last_text(&b, w, res, i, s->jid) == 0)
					pn_send(w, s, buf_head(&b),
						buf_used(&b));
		}
		route_sessions_done(heap);
	}
	buf_free(&b);
	pn_last_free(l);
}

static void pn_last_query(struct pn_last *l, const char *user,
			  const char *domain, const char *owner)
{
	const char *params[3] = { user, domain, owner };
	if (l->w->db == NULL ||
	    db_query(l->w->db, pn_last_sql, 3, params, NULL, NULL, 0,
		     pn_last_result, l) < 0) {
		log_info("pep: last items for %s/%s not sent: database "
			 "unavailable", user, domain);
		pn_last_free(l);
	}
}

void pep_notify_caps_changed(struct conn *c, const uint64_t *old,
			     unsigned nold, const uint64_t *now,
			     unsigned nnow)
{
	if (!c->bound || !c->available || nnow == 0)
		return;
	struct pn_last *l = calloc(1, sizeof(*l));
	if (l == NULL || (l->want = calloc(nnow, sizeof(*l->want))) == NULL) {
		free(l);
		return;
	}
	for (unsigned i = 0; i < nnow; i++) {
		unsigned k = 0;
		while (k < nold && old[k] != now[i])
			k++;
		if (k == nold)
			l->want[l->nwant++] = now[i];
	}
	if (l->nwant == 0) {
		pn_last_free(l);
		return;
	}
	l->w = c->w;
	l->conn_id = c->id;
	l->gen = c->gen;
	pn_last_query(l, c->user, c->domain, NULL);
}

/* Whether the owner's row (bare's item for contact) just gave contact
 * the owner's presence: "subscribed" sent (granted) or a pre-approval
 * answered. */
int pep_notify_gained(const PGresult *res, int col)
{
	int g = PQfnumber(res, "granted"), r = PQfnumber(res, "reply");
	const char *sub = PQgetvalue(res, 0, col);
	if (strcmp(sub, "from") != 0 && strcmp(sub, "both") != 0)
		return 0;
	return (g >= 0 && strcmp(PQgetvalue(res, 0, g), "t") == 0) ||
	       (r >= 0 && strcmp(PQgetvalue(res, 0, r), "subscribed") == 0);
}

void pep_notify_subscription(struct worker *w, const char *bare,
			     const char *contact, const struct pg_result *res,
			     int col, int approved_col)
{
	(void)approved_col;
	const char *at = strchr(contact, '@');
	if (res == NULL || PQntuples(res) < 1 || !pep_notify_gained(res, col) ||
	    at == NULL || !stream_hosted(w, at + 1) ||
	    strlen(contact) > IPC_JID_MAX)
		return;
	struct pn_last *l = calloc(1, sizeof(*l));
	if (l == NULL || (l->contact = strdup(contact)) == NULL) {
		free(l);
		return;
	}
	l->w = w;
	char user[IPC_JID_MAX + 1];
	memcpy(user, contact, (size_t)(at - contact));
	user[at - contact] = '\0';
	pn_last_query(l, user, at + 1, bare);
}

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
 * it from/both; and when an owner grants a subscription
 * (subscription_changed), the owner's last items to the contact's
 * interested sessions (IPC_FRAME_PEP_LAST to each session's worker,
 * which runs the same paced per-conn job).  Only the wanted nodes are read
 * (xmppd_pep_last_nodes, then xmppd_pep_last_items by name in pages of
 * half of c2s.max_output_bytes, 013-pep-fixes.sql); a local conn's next
 * page waits until its output drained, pep.max_last_items_bytes in all.
 *
 * Explicit subscribers (XEP-0060 section 6.1; the block at the end):
 * every event also goes, after one more query
 * (xmppd_pep_sub_recipients, 011-pep-subscribe.sql), to each subscribed
 * JID: a full JID's session, a bare JID's sessions with priority >= 0,
 * a remote JID through route_stanza; a session the presence-based
 * recipients above already reached is skipped (one event per session);
 * replyto only to the owner and from/both contacts.  A subscription the
 * access model no longer admits is removed and its JID told
 * <subscription subscription='none'/> (pep_notify_sub_prune).
 *
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
#include "pep_wire.h"
#include "server.h"
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
		if (worker_send_session(w, s, IPC_FRAME_STANZA, text, len,
					&error) < 0)
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

/* e for bare's sessions on the cluster node of session s (issue 15):
 * only that node knows its sessions' caps, so it picks the recipients
 * itself (IPC_FRAME_PEP_EVENT to the worker of s there). */
static void pn_to_node(struct worker *w, const struct pn_event *e,
		       const char *bare, int owner,
		       const struct session_info *s)
{
	struct buf b;
	const char *error;
	struct pep_wire_event pw = {
		.owner = owner, .head = e->head, .head_len = e->head_len,
		.tail = e->tail, .tail_len = e->tail_len, .node = e->node,
		.node_len = strlen(e->node), .bare = bare,
		.bare_len = strlen(bare),
	};
	buf_init(&b, 0);
	if (pep_wire_put(&b, &pw) < 0 ||
	    worker_send_node(w, s->slot, s->node, s->rslot,
			     IPC_FRAME_PEP_EVENT, 0, 0, buf_head(&b),
			     buf_used(&b), &error) < 0)
		log_info("pep: event of %s for %s on another node lost",
			 e->owner, bare);
	buf_free(&b);
}

/* e to every available session of bare wanting e->node (and, unless
 * owner, with priority >= 0); sessions on other cluster nodes through
 * their node, once per node (local_only: we are that node). */
static void pn_to_bare_opt(struct worker *w, const struct pn_event *e,
			   const char *bare, int owner, int local_only)
{
	struct session_info *heap;
	struct buf b;
	uint64_t nodes_done = 0;
	int n;
	buf_init(&b, 0);
	struct session_info *res = route_sessions(w, bare, &n, &heap);
	for (int i = 0; i < n; i++) {
		const struct session_info *s = &res[i];
		if (!s->available || (!owner && s->priority < 0))
			continue;
		if (s->node != 0) {
			if (local_only || s->node >= 64 ||
			    (nodes_done & (1ull << s->node)))
				continue;
			nodes_done |= 1ull << s->node;
			pn_to_node(w, e, bare, owner, s);
			continue;
		}
		if (!caps_session_wants(w, s, e->node))
			continue;
		if (pn_text(&b, e, s->jid) == 0)
			pn_send(w, s, buf_head(&b), buf_used(&b));
	}
	route_sessions_done(heap);
	buf_free(&b);
}

static void pn_to_bare(struct worker *w, const struct pn_event *e,
		       const char *bare, int owner)
{
	pn_to_bare_opt(w, e, bare, owner, 0);
}

/* IPC_FRAME_PEP_EVENT from another node's worker: the event to our
 * sessions of the bare JID that want it. */
int pep_notify_worker_frame(struct worker *w,
			    const struct ipc_frame_header *hdr,
			    const char *payload, size_t len)
{
	struct pn_event e = { .w = w };
	struct pep_wire_event pw;
	char bare[IPC_JID_MAX + 1];
	const char *error;
	if (hdr->type != IPC_FRAME_PEP_EVENT)
		return 0;
	if (hdr->node == 0)
		return 1;       /* only ever from another node */
	if (pep_wire_read(&pw, payload, len, &error) < 0) {
		log_warn("pep: event from node %u refused: %s", hdr->node,
			 error);
		return 1;
	}
	memcpy(bare, pw.bare, pw.bare_len);
	bare[pw.bare_len] = '\0';
	e.node = strndup(pw.node, pw.node_len);
	e.head = strndup(pw.head, pw.head_len);
	e.tail = strndup(pw.tail, pw.tail_len);
	e.head_len = pw.head_len;
	e.tail_len = pw.tail_len;
	if (e.node != NULL && e.head != NULL && e.tail != NULL)
		pn_to_bare_opt(w, &e, bare, pw.owner, 1);
	free(e.node);
	free(e.head);
	free(e.tail);
	return 1;
}

static int pn_true(const char *v)
{
	return v != NULL && strcmp(v, "true") == 0;
}

static int pn_config_form(struct buf *b, const struct pep_event *ev);

/* The <event/> of ev (and, with replyto, the replyto of a publish) into
 * b; 0 when the change tells nobody. */
static int pn_body_opt(struct buf *b, const struct pep_event *ev,
		       int replyto)
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
		buf_appendf(b, "</items></event>");
		if (!replyto)
			return 1;
		buf_appendf(b, "<addresses xmlns='"
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
	case PEP_EV_CONFIG:
		if (!pn_true(cfg->v[PUBSUB_F_NOTIFY_CONFIG]))
			return 0;
		if (pn_config_form(b, ev) < 0)
			return 0;
		break;
	}
	buf_appendf(b, "</event>");
	return 1;
}

static int pn_body(struct buf *b, const struct pep_event *ev)
{
	return pn_body_opt(b, ev, 1);
}

/* The owner's contacts the event may reach (section 1.5 (b)): from/both,
 * not removed, not blocked, not an outcast, in an allowed group (roster)
 * or a member (whitelist).  A deleted node's affiliations are gone: its
 * delete event reaches no whitelist member. */
static const char pn_contacts_sql[] =
	"SELECT i.contact, r.full_jid, r.caps_algo, r.caps_ver, "
	/* review 13b G7: the names in caps_cache when the shared table
	 * lost the ver; G12: an explicit subscriber gets it from
	 * pep_notify_subscribers */
	"COALESCE($3 = ANY(k.notify), false), EXISTS (SELECT 1 FROM "
	"pubsub_subscriptions s WHERE s.node_id = n.id AND "
	"s.jid IN (r.full_jid, r.bare_jid)) "
	"FROM roster_items i "
	"LEFT JOIN pep_remote_presence r ON r.account_id = i.account_id AND "
	"r.bare_jid = i.contact AND "
	"r.updated_at > now() - $6::bigint * interval '1 millisecond' "
	"LEFT JOIN caps_cache k ON k.algo = r.caps_algo AND "
	"k.ver = r.caps_ver "
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
		    strcmp(PQgetvalue(res, i, 5), "t") != 0 &&
		    pep_remote_wants(e->w, PQgetvalue(res, i, 2),
				     PQgetvalue(res, i, 3), e->node,
				     strcmp(PQgetvalue(res, i, 4), "t") == 0) &&
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
	char ttl[24];
	snprintf(ttl, sizeof(ttl), "%llu",
		 (unsigned long long)w->cfg->pep_remote_presence_ttl);
	const char *params[6] = { user, at + 1, ev->node, access,
				  buf_head(&g), ttl };
	if (db_query(w->db, pn_contacts_sql, 6, params, NULL, NULL, 0,
		     pn_contacts_result, e) < 0) {
		log_info("pep: events of %s node %s to contacts lost: "
			 "database unavailable", ev->owner, ev->node);
		pn_event_free(e);
	}
	buf_free(&g);
}

/* ---- last items ------------------------------------------------------ */

/* Two steps (013-pep-fixes.sql): the names of the nodes that could send a
 * last item (no payloads), kept when the session's +notify set holds them;
 * then those nodes' last items in pages of at most half of
 * c2s.max_output_bytes (and pep.max_last_items_bytes in all), each page
 * after the previous one was written out (a local conn: the
 * output_drained hook), like offline delivery. */
static const char pn_nodes_sql[] =
	"SELECT n FROM xmppd_pep_last_nodes($1, $2, $3) n";
static const char pn_last_sql[] =
	"SELECT service, node, item_id, payload, stamp, more FROM "
	"xmppd_pep_last_items($1, $2, $3, $4::text[], $5::bigint, $6, $7)";

/* A last-items job for one local conn: its caps changed (want), or an
 * owner granted its account presence (owner set), or it was resumed
 * with items unsent (owner NULL); want NULL: the nodes the conn's caps
 * want.  A grant reaches each interested session's own
 * worker as IPC_FRAME_PEP_LAST, so every page waits for that session's
 * output to drain (REVIEW-13b G1). */
struct pn_last {
	struct worker *w;
	uint32_t conn_id, gen;  /* the conn */
	uint64_t *want;         /* the new +notify hashes (caps) */
	unsigned nwant;
	char *user, *domain, *owner;    /* the query's subject */
	char *nodes;            /* text[] literal: the wanted node names */
	char *after_service, *after_node;       /* the last row sent */
	uint64_t sent;          /* bytes of ids and payloads so far */
	struct pn_last *next;   /* waiting for its conn's output to drain */
};

static struct pn_last *pn_waiting;      /* this worker's, by conn */

/* Detached conns (XEP-0198) whose last items were cut by the drop
 * (review 13b G8): their saved word says so, the resumed session gets
 * them again. */
struct pn_lost {
	struct worker *w;
	uint32_t conn_id, gen;
	struct pn_lost *next;
};
static struct pn_lost *pn_lost;

static void pn_lost_mark(struct conn *c)
{
	for (struct pn_lost *m = pn_lost; m != NULL; m = m->next)
		if (m->w == c->w && m->conn_id == c->id && m->gen == c->gen)
			return;
	struct pn_lost *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return;
	m->w = c->w;
	m->conn_id = c->id;
	m->gen = c->gen;
	m->next = pn_lost;
	pn_lost = m;
	ext_session_changed(c);
}

static void pn_last_free(struct pn_last *l)
{
	free(l->want);
	free(l->user);
	free(l->domain);
	free(l->owner);
	free(l->nodes);
	free(l->after_service);
	free(l->after_node);
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

static const char *pn_last_who(const struct pn_last *l)
{
	return l->user;
}

/* Half of c2s.max_output_bytes: a page's bound, as offline.c's. */
static size_t pn_room(const struct worker *w)
{
	return (size_t)(w->cfg->c2s_max_output_bytes / 2);
}

static void pn_last_result(void *ctx, const PGresult *res, const char *error);

/* The next page of l's last items. */
static void pn_last_page(struct pn_last *l)
{
	struct worker *w = l->w;
	uint64_t max = w->cfg->pep_max_last_items_bytes;
	uint64_t budget = pn_room(w);
	if (l->sent >= max) {
		log_info("pep: last items for %s cut at %llu bytes "
			 "(pep.max_last_items_bytes)", pn_last_who(l),
			 (unsigned long long)l->sent);
		pn_last_free(l);
		return;
	}
	if (max - l->sent < budget)
		budget = max - l->sent;
	char bytes[24];
	snprintf(bytes, sizeof(bytes), "%llu", (unsigned long long)budget);
	const char *params[7] = { l->user, l->domain, l->owner, l->nodes,
				  bytes, l->after_service, l->after_node };
	if (w->db == NULL ||
	    db_query(w->db, pn_last_sql, 7, params, NULL, NULL, 0,
		     pn_last_result, l) < 0) {
		log_info("pep: last items for %s not sent: database "
			 "unavailable", pn_last_who(l));
		pn_last_free(l);
	}
}

/* Row i is the last one sent: the next page starts after it. */
static int pn_last_after(struct pn_last *l, const PGresult *res, int i)
{
	free(l->after_service);
	free(l->after_node);
	l->after_service = strdup(PQgetvalue(res, i, 0));
	l->after_node = strdup(PQgetvalue(res, i, 1));
	l->sent += (uint64_t)PQgetlength(res, i, 2) +
		   (uint64_t)PQgetlength(res, i, 3);
	return l->after_service != NULL && l->after_node != NULL ? 0 : -1;
}

/* A page to l's conn: rows while out has room (out empty, or under half
 * of c2s.max_output_bytes with the row); 1 when more is left. */
static int pn_last_to_conn(struct pn_last *l, struct conn *c,
			   const PGresult *res, struct buf *b)
{
	int n = PQntuples(res);
	size_t room = pn_room(l->w);
	for (int i = 0; i < n; i++) {
		if (pn_last_text(b, l->w, res, i, c->jid) < 0)
			return 0;
		size_t used = buf_used(&c->out);
		if (used > 0 && used + buf_used(b) > room)
			return 1;       /* this row once out has drained */
		if (!ext_stanza_out_text(c, buf_head(b), buf_used(b)))
			conn_send(c, buf_head(b), buf_used(b));
		if (pn_last_after(l, res, i) < 0 || c->closed)
			return 0;
	}
	return n > 0 && strcmp(PQgetvalue(res, n - 1, 5), "t") == 0;
}

static void pn_last_result(void *ctx, const PGresult *res, const char *error)
{
	struct pn_last *l = ctx;
	struct worker *w = l->w;
	struct buf b;
	if (res == NULL) {
		log_info("pep: last items for %s lost: %s", pn_last_who(l),
			 error != NULL ? error : "database unavailable");
		pn_last_free(l);
		return;
	}
	buf_init(&b, 0);
	int more = 0;
	struct conn *c = conn_lookup(w, l->conn_id, l->gen);
	if (c != NULL && c->bound && c->available && !c->detached &&
	    !c->closed)
		more = pn_last_to_conn(l, c, res, &b);
	else if (c != NULL && c->detached && c->bound)
		pn_lost_mark(c);
	buf_free(&b);
	if (!more) {
		pn_last_free(l);
		return;
	}
	if (c != NULL && (c->closed || c->want_close || c->out_shed ||
			  c->detached)) {
		if (c->detached && c->bound)
			pn_lost_mark(c);
		pn_last_free(l);
		return;
	}
	if (c != NULL && buf_used(&c->out) > 0) {
		l->next = pn_waiting;   /* pep_notify_drained goes on */
		pn_waiting = l;
		return;
	}
	pn_last_page(l);
}

/* The wanted names among the candidates: in l->want (caps), or wanted
 * by the conn's caps (grant; c, NULL when gone). */
static int pn_last_wanted(const struct pn_last *l, const char *node,
			  struct conn *c)
{
	if (l->want == NULL)    /* a grant, or resumed (G8) */
		return c != NULL && caps_conn_wants(c, node);
	struct shm_caps *t = l->w->shm->caps;
	if (t == NULL)
		return 0;
	uint64_t h = shm_caps_hash(t, node, strlen(node));
	for (unsigned k = 0; k < l->nwant; k++)
		if (l->want[k] == h)
			return 1;
	return 0;
}

static void pn_nodes_result(void *ctx, const PGresult *res, const char *error)
{
	struct pn_last *l = ctx;
	if (res == NULL) {
		log_info("pep: last items for %s lost: %s", pn_last_who(l),
			 error != NULL ? error : "database unavailable");
		pn_last_free(l);
		return;
	}
	int rows = PQntuples(res), n = 0;
	const char **names = calloc((size_t)rows + 1, sizeof(*names));
	struct conn *c = l->want == NULL ?
		conn_lookup(l->w, l->conn_id, l->gen) : NULL;
	for (int i = 0; names != NULL && i < rows; i++)
		if (pn_last_wanted(l, PQgetvalue(res, i, 0), c))
			names[n++] = PQgetvalue(res, i, 0);
	struct buf b;
	buf_init(&b, 0);
	if (names != NULL && n > 0 &&
	    pubsub_form_array_literal(&b, names, (unsigned)n) == 0 &&
	    buf_append(&b, "", 1) == 0)
		l->nodes = strdup(buf_head(&b));
	buf_free(&b);
	free(names);
	if (l->nodes == NULL) {
		if (n > 0)
			log_warn("pep: last items for %s lost: no memory",
				 pn_last_who(l));
		pn_last_free(l);
		return;
	}
	pn_last_page(l);
}

/* Start job l for user@domain (its own and its contacts' nodes, or only
 * owner's when owner is not NULL); l is freed whatever happens. */
static void pn_last_query(struct pn_last *l, const char *user,
			  const char *domain, const char *owner)
{
	l->user = strdup(user);
	l->domain = strdup(domain);
	l->owner = owner != NULL ? strdup(owner) : NULL;
	const char *params[3] = { user, domain, owner };
	if (l->user == NULL || l->domain == NULL ||
	    (owner != NULL && l->owner == NULL)) {
		log_warn("pep: last items for %s/%s lost: no memory", user,
			 domain);
		pn_last_free(l);
		return;
	}
	if (l->w->db == NULL ||
	    db_query(l->w->db, pn_nodes_sql, 3, params, NULL, NULL, 0,
		     pn_nodes_result, l) < 0) {
		log_info("pep: last items for %s/%s not sent: database "
			 "unavailable", user, domain);
		pn_last_free(l);
	}
}

/* c's output drained: the next page of its jobs that wait. */
void pep_notify_drained(struct conn *c)
{
	struct pn_last **pp = &pn_waiting, *go = NULL;
	while (*pp != NULL) {
		struct pn_last *l = *pp;
		if (l->w == c->w && l->conn_id == c->id && l->gen == c->gen) {
			*pp = l->next;
			l->next = go;
			go = l;
		} else
			pp = &l->next;
	}
	while (go != NULL) {
		struct pn_last *l = go;
		go = l->next;
		l->next = NULL;
		if (c->closed || !c->bound || !c->available)
			pn_last_free(l);
		else
			pn_last_page(l);
	}
}

/* c is freed: its waiting jobs go. */
void pep_notify_conn_free(struct conn *c)
{
	for (struct pn_lost **mp = &pn_lost; *mp != NULL;) {
		struct pn_lost *m = *mp;
		if (m->w == c->w && m->conn_id == c->id && m->gen == c->gen) {
			*mp = m->next;
			free(m);
		} else
			mp = &m->next;
	}
	struct pn_last **pp = &pn_waiting;
	while (*pp != NULL) {
		struct pn_last *l = *pp;
		if (l->w == c->w && l->conn_id == c->id && l->gen == c->gen) {
			*pp = l->next;
			pn_last_free(l);
		} else
			pp = &l->next;
	}
}

uint32_t pep_notify_session_save(const struct conn *c)
{
	for (struct pn_lost *m = pn_lost; m != NULL; m = m->next)
		if (m->w == c->w && m->conn_id == c->id && m->gen == c->gen)
			return 1;
	for (struct pn_last *l = pn_waiting; l != NULL; l = l->next)
		if (l->w == c->w && l->conn_id == c->id && l->gen == c->gen)
			return 1;
	return 0;
}

void pep_notify_session_restore(struct conn *c, uint32_t word)
{
	if (!(word & 1) || c->user == NULL || c->domain == NULL)
		return;
	struct pn_last *l = calloc(1, sizeof(*l));
	if (l == NULL)
		return;
	log_info("c%u: %s resumed with last PEP items not all sent: sending "
		 "them again", c->id, c->jid != NULL ? c->jid : c->user);
	l->w = c->w;
	l->conn_id = c->id;
	l->gen = c->gen;
	pn_last_query(l, c->user, c->domain, NULL);
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
	/* each available session's own worker runs its paced job */
	route_to_resources(w, contact, bare, strlen(bare), IPC_FRAME_PEP_LAST,
			   1, NULL);
}

int pep_notify_last_frame(struct conn *c, int type, const char *text,
			  size_t len)
{
	if (type != IPC_FRAME_PEP_LAST)
		return 0;
	char owner[IPC_JID_MAX + 1];
	if (len == 0 || len > IPC_JID_MAX || memchr(text, 0, len) != NULL)
		return 1;
	memcpy(owner, text, len);
	owner[len] = '\0';
	/* a headline to a bare JID: available, priority >= 0 (RFC 6121
	 * section 8.5.2.1.1), as the contact's other events */
	if (!c->bound || !c->available || c->priority < 0 || c->detached ||
	    c->closed || c->user == NULL || c->domain == NULL)
		return 1;
	struct pn_last *l = calloc(1, sizeof(*l));
	if (l == NULL) {
		log_warn("pep: last items of %s for %s lost: no memory",
			 owner, c->jid);
		return 1;
	}
	l->w = c->w;
	l->conn_id = c->id;
	l->gen = c->gen;
	pn_last_query(l, c->user, c->domain, owner);
	return 1;
}

/* ---- explicit subscribers (XEP-0060 section 6.1; h-pepsub) ---------- */

/* <configuration node='N'/> of a configuration change (XEP-0060 section
 * 8.2.5.3 example), with the node_config form as a result form when
 * deliver_payloads. */
static int pn_config_form(struct buf *b, const struct pep_event *ev)
{
	const struct pubsub_config *cfg = &ev->cfg;
	buf_appendf(b, "<configuration");
	pn_attr(b, "node", ev->node);
	if (cfg->v[PUBSUB_F_DELIVER_PAYLOADS] != NULL &&
	    !pn_true(cfg->v[PUBSUB_F_DELIVER_PAYLOADS]))
		return buf_appendf(b, "/>");
	struct buf f;
	static const char form[] = "type='form'";
	if (ev->lim == NULL)
		return -1;
	buf_init(&f, 0);
	if (pubsub_form_render(&f, cfg, ev->lim) < 0 ||
	    buf_append(&f, "", 1) < 0) {
		buf_free(&f);
		return -1;
	}
	/* the allowed roster groups are the owner's (config get is
	 * owner-only): left out of what recipients see (REVIEW-13b G6) */
	char *g = strstr(buf_head(&f), "<field var='"
			 "pubsub#roster_groups_allowed'");
	char *ge = g != NULL ? strstr(g, "</field>") : NULL;
	if (ge != NULL)
		memmove(g, ge + strlen("</field>"),
			strlen(ge + strlen("</field>")) + 1);
	/* the form's values as a result (the fields as they are) */
	const char *x = buf_head(&f), *t = strstr(x, form);
	buf_appendf(b, ">");
	if (t != NULL) {
		buf_append(b, x, (size_t)(t - x));
		buf_appendf(b, "type='result'%s", t + sizeof(form) - 1);
	} else
		buf_appendf(b, "%s", x);
	buf_free(&f);
	return buf_appendf(b, "</configuration>");
}

/* Deliver e's text to a subscribed JID's sessions of bare (local): a
 * full JID's own session when available, a bare JID's available sessions
 * with priority >= 0 (a headline to a bare JID, RFC 6121 section
 * 8.5.2.1.1), once each; with admitted ('owner' / 'contact'), a session
 * the presence-based recipients already reached (NODE+notify, and for a
 * contact priority >= 0) is skipped.  jids: the subscribed JIDs of bare
 * (n of them). */
static void pn_subs_local(struct worker *w, const struct pn_event *e,
			  const char *bare, const char *const *jids, int n,
			  const char *admitted)
{
	struct session_info *heap;
	struct buf b;
	int ns, bare_sub = 0;
	int owner = admitted != NULL && strcmp(admitted, "owner") == 0;
	int contact = admitted != NULL && strcmp(admitted, "contact") == 0;
	for (int k = 0; k < n; k++)
		if (strcmp(jids[k], bare) == 0)
			bare_sub = 1;
	buf_init(&b, 0);
	struct session_info *ss = route_sessions(w, bare, &ns, &heap);
	for (int i = 0; i < ns; i++) {
		const struct session_info *s = &ss[i];
		if (!s->available)
			continue;
		int want = bare_sub && s->priority >= 0;
		for (int k = 0; !want && k < n; k++)
			want = strcmp(jids[k], s->jid) == 0;
		if (!want)
			continue;
		if ((owner || (contact && s->priority >= 0)) &&
		    caps_session_wants(w, s, e->node))
			continue;       /* it had one already */
		if (pn_text(&b, e, s->jid) == 0)
			pn_send(w, s, buf_head(&b), buf_used(&b));
	}
	route_sessions_done(heap);
	buf_free(&b);
}

/* e's text to jid on another server (route_stanza: s2s). */
static void pn_subs_remote(struct worker *w, const struct pn_event *e,
			   const char *jid)
{
	struct buf b;
	buf_init(&b, 0);
	if (pn_text(&b, e, jid) == 0)
		pep_remote_route(w, buf_head(&b), buf_used(&b));
	buf_free(&b);
}

/* e to one subscribed JID (bare or full): its sessions here, or over
 * s2s when its domain is not ours. */
static void pn_to_jid(struct worker *w, const struct pn_event *e,
		      const char *jid)
{
	char bare[IPC_JID_MAX + 1];
	const char *slash = strchr(jid, '/');
	size_t bl = slash != NULL ? (size_t)(slash - jid) : strlen(jid);
	if (bl >= sizeof(bare))
		return;
	memcpy(bare, jid, bl);
	bare[bl] = '\0';
	const char *at = strchr(bare, '@');
	if (stream_hosted(w, at != NULL ? at + 1 : bare))
		pn_subs_local(w, e, bare, &jid, 1, NULL);
	else
		pn_subs_remote(w, e, jid);
}

/* The subscribers query in flight: the event with and without replyto. */
struct pn_subs {
	struct pn_event *with, *without;
};

static void pn_subs_free(struct pn_subs *x)
{
	pn_event_free(x->with);
	pn_event_free(x->without);
	free(x);
}

static void pn_subs_result(void *ctx, const PGresult *res, const char *error)
{
	struct pn_subs *x = ctx;
	struct worker *w = x->with->w;
	if (res == NULL) {
		log_info("pep: events of %s node %s to subscribers lost: %s",
			 x->with->owner, x->with->node, error != NULL ? error :
			 "database unavailable");
		pn_subs_free(x);
		return;
	}
	const char *jids[64];   /* pep.max_subscriptions_per_jid <= 64 */
	int rows = PQntuples(res);
	for (int i = 0; i < rows;) {
		/* rows of one bare JID: jid, bare, admitted, rostered */
		const char *bare = PQgetvalue(res, i, 1);
		const char *admitted = PQgetisnull(res, i, 2) ? NULL :
				       PQgetvalue(res, i, 2);
		const struct pn_event *e =
			strcmp(PQgetvalue(res, i, 3), "t") == 0 ? x->with :
			x->without;
		const char *at = strchr(bare, '@');
		int local = stream_hosted(w, at != NULL ? at + 1 : bare);
		int n = 0;
		while (i < rows && strcmp(PQgetvalue(res, i, 1), bare) == 0) {
			if (!local)
				pn_subs_remote(w, e, PQgetvalue(res, i, 0));
			else if (n < (int)(sizeof(jids) / sizeof(jids[0])))
				jids[n++] = PQgetvalue(res, i, 0);
			i++;
		}
		if (local && n > 0)
			pn_subs_local(w, e, bare, jids, n, admitted);
	}
	pn_subs_free(x);
}

static const char pn_subs_sql[] =
	"SELECT jid, bare, admitted, rostered FROM xmppd_pep_sub_recipients("
	"$1, $2, $3, $4, $5::text[], $6::text[])";

void pep_notify_subscribers(struct worker *w, const struct pep_event *ev)
{
	if (w->db == NULL || (ev->subscribers != NULL &&
			      strcmp(ev->subscribers, "{}") == 0))
		return;
	struct buf body, plain, g;
	buf_init(&body, 0);
	buf_init(&plain, 0);
	buf_init(&g, 0);
	struct pn_subs *x = calloc(1, sizeof(*x));
	const char *type = ev->cfg.v[PUBSUB_F_NOTIFICATION_TYPE] != NULL &&
			   strcmp(ev->cfg.v[PUBSUB_F_NOTIFICATION_TYPE],
				  "normal") == 0 ? "normal" : "headline";
	const char *at = strchr(ev->owner, '@');
	char user[IPC_JID_MAX + 1];
	if (x == NULL || at == NULL ||
	    (size_t)(at - ev->owner) >= sizeof(user) ||
	    !pn_body_opt(&body, ev, 1) || buf_append(&body, "", 1) < 0 ||
	    !pn_body_opt(&plain, ev, 0) || buf_append(&plain, "", 1) < 0 ||
	    pubsub_form_array_literal(&g, ev->cfg.groups,
				      ev->cfg.ngroups) < 0 ||
	    buf_append(&g, "", 1) < 0 ||
	    (x->with = pn_event_new(w, ev->owner, ev->node, type,
				    buf_head(&body))) == NULL ||
	    (x->without = pn_event_new(w, ev->owner, ev->node, type,
				       buf_head(&plain))) == NULL) {
		if (x != NULL)
			pn_subs_free(x);
		buf_free(&body);
		buf_free(&plain);
		buf_free(&g);
		return;
	}
	memcpy(user, ev->owner, (size_t)(at - ev->owner));
	user[at - ev->owner] = '\0';
	const char *access = ev->cfg.v[PUBSUB_F_ACCESS_MODEL] != NULL ?
			     ev->cfg.v[PUBSUB_F_ACCESS_MODEL] : "presence";
	const char *params[6] = { user, at + 1, ev->node, access, buf_head(&g),
				  ev->subscribers };
	if (db_query(w->db, pn_subs_sql, 6, params, NULL, NULL, 0,
		     pn_subs_result, x) < 0) {
		log_info("pep: events of %s node %s to subscribers lost: "
			 "database unavailable", ev->owner, ev->node);
		pn_subs_free(x);
	}
	buf_free(&body);
	buf_free(&plain);
	buf_free(&g);
}

void pep_notify_sub_last(struct worker *w, const char *owner,
			 const char *jid, const char *node,
			 const char *item_id, const char *payload,
			 const char *stamp)
{
	struct buf b;
	buf_init(&b, 0);
	buf_appendf(&b, "<event xmlns='" NS_PUBSUB_EVENT "'><items");
	pn_attr(&b, "node", node);
	buf_appendf(&b, "><item");
	pn_attr(&b, "id", item_id);
	if (payload == NULL)    /* deliver_payloads off (7.1.2.1) */
		buf_appendf(&b, "/>");
	else
		buf_appendf(&b, ">%s</item>", payload);
	buf_appendf(&b, "</items></event><delay xmlns='" NS_DELAY "'");
	pn_attr(&b, "stamp", stamp);
	buf_appendf(&b, "/>");
	struct pn_event *e = NULL;
	if (buf_append(&b, "", 1) == 0)
		e = pn_event_new(w, owner, node, "headline", buf_head(&b));
	buf_free(&b);
	if (e == NULL) {
		log_warn("pep: last item of %s node %s to %s lost: no memory",
			 owner, node, jid);
		return;
	}
	pn_to_jid(w, e, jid);
	pn_event_free(e);
}

void pep_notify_sub_state(struct worker *w, const char *owner,
			  const char *node, const char *jid,
			  const char *state)
{
	struct buf b;
	buf_init(&b, 0);
	buf_appendf(&b, "<event xmlns='" NS_PUBSUB_EVENT "'><subscription");
	pn_attr(&b, "node", node);
	pn_attr(&b, "jid", jid);
	pn_attr(&b, "subscription", state);
	buf_appendf(&b, "/></event>");
	struct pn_event *e = NULL;
	if (buf_append(&b, "", 1) == 0)
		e = pn_event_new(w, owner, node, "headline", buf_head(&b));
	buf_free(&b);
	if (e == NULL) {
		log_warn("pep: subscription notice of %s node %s to %s lost: "
			 "no memory", owner, node, jid);
		return;
	}
	pn_to_jid(w, e, jid);
	pn_event_free(e);
}

static const char pn_prune_sql[] =
	"SELECT node, jid FROM xmppd_pep_sub_prune($1, $2, $3, $4)";

struct pn_prune {
	struct worker *w;
	char *owner;
};

static void pn_prune_result(void *ctx, const PGresult *res, const char *error)
{
	struct pn_prune *x = ctx;
	if (res == NULL) {
		log_info("pep: subscriptions of %s not pruned: %s", x->owner,
			 error != NULL ? error : "database unavailable");
		free(x->owner);
		free(x);
		return;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		const char *node = PQgetvalue(res, i, 0);
		const char *jid = PQgetvalue(res, i, 1);
		log_info("pep: %s's subscription to %s node %s ended: the "
			 "access model no longer admits it", jid, x->owner, node);
		pep_notify_sub_state(x->w, x->owner, node, jid, "none");
	}
	free(x->owner);
	free(x);
}

void pep_notify_sub_prune(struct worker *w, const char *owner,
			  const char *node, const char *bare)
{
	const char *at = strchr(owner, '@');
	char user[IPC_JID_MAX + 1];
	if (w->db == NULL || at == NULL ||
	    (size_t)(at - owner) >= sizeof(user))
		return;
	struct pn_prune *x = calloc(1, sizeof(*x));
	if (x == NULL || (x->owner = strdup(owner)) == NULL) {
		free(x);
		return;
	}
	x->w = w;
	memcpy(user, owner, (size_t)(at - owner));
	user[at - owner] = '\0';
	const char *params[4] = { user, at + 1, node, bare };
	if (db_query(w->db, pn_prune_sql, 4, params, NULL, NULL, 0,
		     pn_prune_result, x) < 0) {
		free(x->owner);
		free(x);
	}
}

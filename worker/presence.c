/*
 * presence.c - RFC 6121 presence: broadcast of a session's presence to
 * the contacts subscribed to it (from/both) and to the account's other
 * resources, probes of the contacts it is subscribed to (to/both) at
 * initial presence, directed presence and its unavailable at logout,
 * pending subscription requests redelivered at login, and the
 * subscription state machine (db/schema/002-im.sql, xmppd_sub) for
 * subscribe/subscribed/unsubscribe/unsubscribed in both directions.
 * Every hosted account is handled by whichever worker holds the stanza:
 * the database serializes state, the session table finds resources.
 * Contacts on other servers and components (RFC 6121 with federation,
 * XEP-0114): any JID on a domain we do not host.  What goes to them
 * (broadcasts, probes from the bare JID, subscription stanzas stamped
 * with the bare JID after our side of the state machine ran, unavailable,
 * directed presence) is routed with route_stanza, which hands it to
 * component_route or s2s_route.  What comes from them arrives through
 * route_stanza too (s2s_in.c, component.c): route.c gives a probe or a
 * subscription stanza from a non-hosted domain to presence_inbound(),
 * which runs the contact's side of the state machine (3.1.3, 3.2.3,
 * 3.3.3, 3.4.3) or answers the probe from the roster (4.3.2: the last
 * presence of each available resource, unavailable when none is,
 * unsubscribed without a subscription, nothing when blocked).  Only
 * probes and subscription stanzas from other domains cost a parse of
 * 'from' there; the local broadcast path adds no database round trip.
 * While the worker stops (shutdown, or its master died), each available
 * session's unavailable goes to its contacts and directed-presence
 * recipients on other domains and components only (presence_stop_
 * broadcast, before the streams close: worker.c keeps the s2s links and
 * component streams open until it is written); local contacts are
 * disconnected by the same shutdown and get nothing.
 * Failure policy: a database failure loses a broadcast (logged); stored
 * state stays consistent because each transition is one statement.
 */
#include "worker.h"
#include "../db/db.h"
#include "ext.h"
#include "jid.h"
#include "log.h"
#include "server.h"
#include "session.h"
#include "stanza.h"
#include "store.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One asynchronous presence job; owns every string it holds. */
struct pjob {
	struct worker *w;
	char *jid;              /* full JID of the session (or bare) */
	char *bare;
	char *user, *domain;    /* split bare JID */
	char *text;             /* the presence, serialized without 'to' */
	int initial;            /* first available presence of the session */
	int unavailable;
	int remote_only;        /* stopping: only contacts we do not host */
	int hosted_only;        /* again after a cluster heal: only
				   contacts we host, not the account's own
				   resources */
	uint8_t only_node;      /* ... and only their sessions on this
				   cluster node (0: any) */
	uint32_t conn_id, gen;  /* the session, for pending/offline */
	char **directed;
	unsigned ndirected;
	/* subscriptions */
	char *contact;          /* bare JID of the other party */
	char *type;             /* subscribe, subscribed, ... */
	int step;               /* 0: account side, 1: contact side */
	int granted;            /* step 1: the sender (contact) just gave us
				   a subscription: its presence follows */
	char *origin;           /* step 0: the resource that sent it */
};

static void pjob_free(struct pjob *j)
{
	if (j == NULL)
		return;
	for (unsigned i = 0; i < j->ndirected; i++)
		free(j->directed[i]);
	free(j->directed);
	free(j->jid);
	free(j->bare);
	free(j->user);
	free(j->text);
	free(j->contact);
	free(j->type);
	free(j->origin);
	free(j);
}

/* Fill jid, bare, user and domain from a full or bare JID. */
static int pjob_set_jid(struct pjob *j, const char *jid)
{
	size_t blen = strcspn(jid, "/");
	const char *at = memchr(jid, '@', blen);
	j->jid = strdup(jid);
	j->bare = strndup(jid, blen);
	if (at == NULL || j->jid == NULL || j->bare == NULL)
		return -1;
	j->user = strndup(jid, (size_t)(at - jid));
	if (j->user == NULL)
		return -1;
	j->domain = j->bare + (at - jid) + 1;
	return 0;
}

static struct pjob *pjob_new(struct worker *w, const char *jid)
{
	struct pjob *j = calloc(1, sizeof(*j));
	if (j == NULL)
		return NULL;
	j->w = w;
	if (pjob_set_jid(j, jid) < 0) {
		pjob_free(j);
		return NULL;
	}
	return j;
}

/* `text` (a presence without 'to') addressed to `to`. */
static char *presence_with_to(const char *text, const char *to)
{
	struct buf out;
	const char *end = strstr(text, "<presence") == text ? text + 9 : NULL;
	if (end == NULL)
		return NULL;
	buf_init(&out, 0);
	buf_appendf(&out, "<presence to='");
	xml_escape(&out, to, strlen(to), 1);
	buf_appendf(&out, "'%s", end);
	buf_append(&out, "", 1);
	return out.data;
}

/* The JID (full or bare) is on a domain we do not host: another
 * server's (or a component's), reached through route_stanza. */
static int presence_remote(const struct worker *w, const char *jid)
{
	char domain[1024];
	size_t blen = strcspn(jid, "/");
	const char *at = memchr(jid, '@', blen);
	const char *d = at != NULL ? at + 1 : jid;
	size_t len = blen - (size_t)(d - jid);
	if (len >= sizeof(domain))
		return 1;
	memcpy(domain, d, len);
	domain[len] = '\0';
	return !stream_hosted(w, domain);
}

static void presence_send_to(struct worker *w, const char *text,
			     const char *to_bare, const char *skip)
{
	char *t = presence_with_to(text, to_bare);
	if (t != NULL && presence_remote(w, to_bare))
		presence_route_text(w, t);      /* federation (s2s) */
	else if (t != NULL)
		route_to_resources(w, to_bare, t, strlen(t), IPC_FRAME_STANZA,
				   1, skip);
	free(t);
}

/* A stanza (from, to, type) built and routed; with no type: none. */
static void presence_route_simple(struct worker *w, const char *from,
				  const char *to, const char *type)
{
	struct buf b;
	buf_init(&b, 0);
	buf_appendf(&b, "<presence from='");
	xml_escape(&b, from, strlen(from), 1);
	buf_appendf(&b, "' to='");
	xml_escape(&b, to, strlen(to), 1);
	buf_appendf(&b, "' type='%s'/>", type);
	if (buf_append(&b, "", 1) == 0)
		presence_route_text(w, buf_head(&b));
	buf_free(&b);
}

/* ---- broadcast (RFC 6121 sections 4.2, 4.4, 4.5) ---------------------- */

static void presence_probe_contact(struct pjob *j, const char *contact)
{
	struct session_info *heap;
	struct worker *w = j->w;
	const char *error;
	int n;
	if (presence_remote(w, contact)) {
		/* section 4.3.1: the contact's server answers, from the
		 * user's bare JID */
		presence_route_simple(w, j->bare, contact, "probe");
		return;
	}
	struct session_info *res = route_sessions(w, contact, &n, &heap);
	for (int i = 0; i < n; i++) {
		if (!res[i].available)
			continue;
		if (res[i].slot != w->slot) {
			if (worker_send_session(w, &res[i], IPC_FRAME_PROBE,
						j->jid, strlen(j->jid),
						&error) < 0)
				log_warn("probe to w%u: %s", res[i].slot, error);
			continue;
		}
		struct conn *c = conn_lookup(w, res[i].conn_id, res[i].gen);
		if (c != NULL)
			presence_answer_probe(c, j->jid);
	}
	route_sessions_done(heap);
}

/* Pending inbound subscription requests go to the session (3.1.3). */
/* A stored subscription request (section 3.1.3), read back like every
 * stored stanza (store.h); one that does not read is logged and stays. */
static void presence_pending(struct pjob *j, const PGresult *res, int row)
{
	struct conn *c = conn_lookup(j->w, j->conn_id, j->gen);
	if (c == NULL || !c->bound || PQgetisnull(res, row, 3))
		return;
	struct arena a;
	struct buf out;
	const char *error = NULL;
	arena_init(&a, 1024);
	buf_init(&out, 0);
	struct xml_node *st = store_read_stanza(&a, PQgetvalue(res, row, 3),
						(size_t)PQgetlength(res, row, 3),
						&error);
	if (st == NULL)
		log_error("pending subscription request of %s from %s "
			  "unreadable (%s): kept in roster_items", j->bare,
			  PQgetvalue(res, row, 0), error);
	else if (xml_serialize(&out, st, NS_CLIENT) == 0)
		conn_send(c, buf_head(&out), buf_used(&out));
	buf_free(&out);
	arena_free(&a);
}

/* A subscriber got the broadcast: its directed copy would be twice. */
static void presence_forget_directed(struct pjob *j, const char *contact)
{
	size_t n = strlen(contact);
	for (unsigned i = 0; i < j->ndirected; i++) {
		const char *d = j->directed[i];
		if (strncmp(d, contact, n) == 0 && (d[n] == '\0' || d[n] == '/')) {
			free(j->directed[i]);
			j->directed[i] = j->directed[--j->ndirected];
			i--;
		}
	}
}

/* Section 4.6.3: unavailable to those we sent directed presence to. */
static void presence_directed_unavailable(struct pjob *j)
{
	for (unsigned i = 0; j->unavailable && i < j->ndirected; i++) {
		if (j->remote_only && !presence_remote(j->w, j->directed[i]))
			continue;
		char *t = presence_with_to(j->text, j->directed[i]);
		if (t != NULL && strchr(j->directed[i], '/') == NULL &&
		    !presence_remote(j->w, j->directed[i]))
			route_to_resources(j->w, j->directed[i], t, strlen(t),
					   IPC_FRAME_STANZA, 1, NULL);
		else if (t != NULL)
			presence_route_text(j->w, t);
		free(t);
	}
}

static void presence_roster_rows(void *ctx, const PGresult *res,
				 const char *error)
{
	struct pjob *j = ctx;
	if (res == NULL) {
		log_warn("presence of %s not broadcast: %s", j->jid, error);
		presence_directed_unavailable(j);
		pjob_free(j);
		return;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		const char *contact = PQgetvalue(res, i, 0);
		const char *sub = PQgetvalue(res, i, 1);
		int from = strcmp(sub, "from") == 0 || strcmp(sub, "both") == 0;
		int to = strcmp(sub, "to") == 0 || strcmp(sub, "both") == 0;
		if (j->remote_only && !presence_remote(j->w, contact))
			continue;
		if (j->hosted_only && presence_remote(j->w, contact))
			continue;
		if (from && j->only_node != 0) {
			char *t = presence_with_to(j->text, contact);
			if (t != NULL)
				route_to_resources_on(j->w, contact, t,
						      strlen(t), j->only_node);
			free(t);
		} else if (from) {
			presence_send_to(j->w, j->text, contact, NULL);
			presence_forget_directed(j, contact);
		}
		if (to && j->initial)
			presence_probe_contact(j, contact);
		if (j->initial && strcmp(PQgetvalue(res, i, 2), "t") == 0)
			presence_pending(j, res, i);
	}
	presence_directed_unavailable(j);
	pjob_free(j);
}

static const char presence_roster_sql[] =
	"SELECT contact, subscription, pending_in, pending_stanza "
	"FROM roster_items i WHERE account_id = xmppd_account_id($1, $2) "
	"AND NOT removed AND (subscription <> 'none' OR pending_in) "
	"AND NOT EXISTS (SELECT 1 FROM blocklist b WHERE b.account_id = "
	"i.account_id AND b.jid IN (i.contact, split_part(i.contact, '@', 2)))";

/* Broadcast j->text to the account's other resources, its subscribers,
 * directed-presence recipients (when unavailable); probe at initial. */
static void presence_broadcast(struct pjob *j)
{
	const char *params[2] = { j->user, j->domain };
	/* Section 4.2.2: to all the account's available resources, the
	 * one that sent it included -- but not a session that is going
	 * away: its stream is closed or closing. */
	if (!j->remote_only && !j->hosted_only)
		presence_send_to(j->w, j->text, j->bare,
				 j->unavailable ? j->jid : NULL);
	if (j->w->db == NULL ||
	    db_query(j->w->db, presence_roster_sql, 2, params, NULL, NULL, 0,
		     presence_roster_rows, j) < 0) {
		log_warn("presence of %s not broadcast: database unavailable",
			 j->jid);
		presence_directed_unavailable(j);
		pjob_free(j);
	}
}

/* Route a stanza given as text (its 'from' is ours to trust). */
void presence_route_text(struct worker *w, const char *text)
{
	struct arena a;
	const char *error;
	arena_init(&a, 1024);
	struct xml_node *n = stanza_parse(&a, text, strlen(text), &error);
	if (n != NULL)
		route_stanza(w, &a, n);
	else
		log_error("presence unreadable: %s", error);
	arena_free(&a);
}

void presence_answer_probe(struct conn *c, const char *to)
{
	if (!c->bound || !c->available || c->last_presence == NULL)
		return;
	char *t = presence_with_to(c->last_presence, to);
	if (t != NULL)
		presence_route_text(c->w, t);
	free(t);
}

/* A probe from a session of another cluster node (hdr names the node
 * and the worker that sent it: the prober's own, at its initial
 * presence).  The answer goes straight back to that worker, which
 * routes it by its own table (route.c, IPC_FRAME_BARE_STANZA), instead
 * of by ours: the prober logged in a moment ago, and our table learns
 * of its session with the directory's next scan (~100 ms,
 * cluster/bridge_route.c), often after its probes arrive; routed here,
 * the answer would find no such full JID and be dropped (RFC 6121
 * 8.5.3.2.3), and the user would see the contact offline. */
void presence_answer_remote_probe(struct conn *c, const char *to,
				  const struct ipc_frame_header *hdr)
{
	const char *error;
	if (!c->bound || !c->available || c->last_presence == NULL)
		return;
	char *t = presence_with_to(c->last_presence, to);
	if (t != NULL && worker_send_reply(c->w, hdr, IPC_FRAME_BARE_STANZA,
					   0, 0, t, strlen(t), &error) < 0)
		log_info("probe answer to %s not sent: %s", to, error);
	free(t);
}

static char *presence_serialize(struct conn *c, struct xml_node *st)
{
	struct buf out;
	xml_set_attr(c->arena, st, "to", NULL);
	buf_init(&out, 0);
	if (xml_serialize(&out, st, NS_CLIENT) < 0 ||
	    buf_append(&out, "", 1) < 0) {
		buf_free(&out);
		return NULL;
	}
	return out.data;
}

static void presence_take_directed(struct conn *c, struct pjob *j)
{
	j->directed = c->directed;
	j->ndirected = c->ndirected;
	c->directed = NULL;
	c->ndirected = 0;
}

/* Presence without 'to': the session's own availability (4.2, 4.4). */
static void presence_own(struct conn *c, struct xml_node *st)
{
	const char *type = xml_attr(st, "type");
	struct xml_node *p = xml_child(st, NS_CLIENT, "priority");
	char *prio = p ? xml_text(c->arena, p) : NULL;
	long v = prio ? strtol(prio, NULL, 10) : 0;
	int was = c->available;
	if (type != NULL && strcmp(type, "unavailable") != 0)
		return;     /* probe/error from a client: nothing to do */
	if (v < -128 || v > 127)
		v = 0;
	c->available = type == NULL;
	c->priority = (int16_t)v;
	shm_session_set_presence(c->w->shm->sessions, c->jid,
				 (uint16_t)c->w->slot, c->id, c->gen,
				 c->priority, (uint8_t)c->available);
	if (!was && !c->available)
		return;     /* unavailable while never available */
	struct pjob *j = pjob_new(c->w, c->jid);
	if (j == NULL || (j->text = presence_serialize(c, st)) == NULL) {
		pjob_free(j);
		return;
	}
	free(c->last_presence);
	c->last_presence = c->available ? strdup(j->text) : NULL;
	j->initial = c->available && !was;
	j->unavailable = !c->available;
	j->conn_id = c->id;
	j->gen = c->gen;
	if (j->unavailable)
		presence_take_directed(c, j);
	presence_broadcast(j);
	EXT_RUN(presence_changed, c, st, j->initial);
}

/* Directed presence (4.6): remembered, for unavailable at logout. */
static void presence_directed(struct conn *c, struct xml_node *st)
{
	const char *to = xml_attr(st, "to");
	const char *type = xml_attr(st, "type");
	if (c->available && type == NULL && to != NULL) {
		for (unsigned i = 0; i < c->ndirected; i++)
			if (strcmp(c->directed[i], to) == 0)
				goto route;
		if (c->ndirected >= c->w->cfg->max_directed_presence) {
			log_info("%s: directed presence to %s not remembered "
				 "(im.max_directed_presence = %u)", c->jid, to,
				 c->w->cfg->max_directed_presence);
			goto route;
		}
		char **d = realloc(c->directed, (c->ndirected + 1) * sizeof(*d));
		if (d != NULL) {
			c->directed = d;
			if ((d[c->ndirected] = strdup(to)) != NULL)
				c->ndirected++;
		}
	} else if (type != NULL && strcmp(type, "unavailable") == 0 &&
		   to != NULL) {
		/* told already: no second unavailable at logout (4.6.3) */
		for (unsigned i = 0; i < c->ndirected; i++)
			if (strcmp(c->directed[i], to) == 0) {
				free(c->directed[i]);
				c->directed[i] = c->directed[--c->ndirected];
				break;
			}
	}
route:
	route_stanza(c->w, c->arena, st);
}

static char *presence_unavailable_text(const char *jid)
{
	struct buf b;
	buf_init(&b, 0);
	buf_appendf(&b, "<presence from='");
	xml_escape(&b, jid, strlen(jid), 1);
	buf_appendf(&b, "' type='unavailable'/>");
	if (buf_append(&b, "", 1) < 0) {
		buf_free(&b);
		return NULL;
	}
	return b.data;
}

void presence_session_gone(struct conn *c)
{
	if (!c->available || c->jid == NULL)
		return;
	c->available = 0;
	if (c->w->stopping)
		return;     /* its contacts are being disconnected too */
	struct pjob *j = pjob_new(c->w, c->jid);
	if (j == NULL || (j->text = presence_unavailable_text(c->jid)) == NULL) {
		pjob_free(j);
		return;
	}
	j->unavailable = 1;
	presence_take_directed(c, j);
	presence_broadcast(j);
}

void presence_stop_broadcast(struct worker *w)
{
	unsigned n = 0;
	for (struct conn *c = w->conns; c != NULL; c = c->next) {
		if (c->kind != CONN_C2S || !c->available || c->jid == NULL ||
		    c->closed)
			continue;
		c->available = 0;   /* presence_session_gone: nothing more */
		struct pjob *j = pjob_new(w, c->jid);
		if (j == NULL ||
		    (j->text = presence_unavailable_text(c->jid)) == NULL) {
			pjob_free(j);
			continue;
		}
		j->unavailable = 1;
		j->remote_only = 1;
		presence_take_directed(c, j);
		presence_broadcast(j);
		n++;
	}
	if (n > 0)
		log_info("stopping: unavailable of %u sessions to their "
			 "contacts on other servers and components", n);
}

void presence_reannounce(struct conn *c, uint8_t node)
{
	if (c->kind != CONN_C2S || !c->bound || !c->available ||
	    c->last_presence == NULL || c->closed || c->w->stopping)
		return;
	struct pjob *j = pjob_new(c->w, c->jid);
	if (j == NULL || (j->text = strdup(c->last_presence)) == NULL) {
		pjob_free(j);
		return;
	}
	j->hosted_only = 1;
	j->only_node = node;
	presence_broadcast(j);
}

void presence_swept(struct worker *w, const char *full_jid)
{
	if (w->stopping)
		return;     /* as presence_session_gone() */
	struct pjob *j = pjob_new(w, full_jid);
	if (j == NULL || (j->text = presence_unavailable_text(full_jid)) == NULL) {
		pjob_free(j);
		return;
	}
	j->unavailable = 1;
	log_info("%s: gone with its worker: broadcasting unavailable",
		 full_jid);
	presence_broadcast(j);
}

/* ---- subscriptions (RFC 6121 section 3, Appendix A) ------------------- */

static const char sub_sql[] =
	"SELECT route, deliver, reply, push, granted, revoked, subscription, "
	"ask_out, name, array_to_string(groups, E'\\x1f'), ver, approved, "
	"refused FROM xmppd_sub($1, $2, $3, $4, $5, $6, $7::int)";

static void sub_run(struct pjob *j);

static int sub_flag(const PGresult *res, int col)
{
	return strcmp(PQgetvalue(res, 0, col), "t") == 0;
}

/* The account's available resources send their presence to `to`
 * (a subscription was just granted: section 3.1.5). */
static void presence_send_current(struct worker *w, const char *bare,
				  const char *to)
{
	struct pjob probe = { .w = w, .jid = (char *)to };
	presence_probe_contact(&probe, bare);
}

/* The account's available resources send unavailable to `to` (a
 * subscription was taken away: sections 3.2.2, 3.3.3). */
void presence_unavailable_to(struct worker *w, const char *bare,
			     const char *to)
{
	struct session_info *heap;
	int n;
	struct session_info *res = route_sessions(w, bare, &n, &heap);
	for (int i = 0; i < n; i++) {
		char *u = res[i].available ? presence_unavailable_text(res[i].jid)
					   : NULL;
		if (u != NULL)
			presence_send_to(w, u, to, NULL);
		free(u);
	}
	route_sessions_done(heap);
}

/* A new job for the other side of a subscription stanza. */
static struct pjob *sub_other_side(struct pjob *j, const char *account,
				   const char *contact, const char *type,
				   const char *text)
{
	struct pjob *k = pjob_new(j->w, account);
	if (k == NULL)
		return NULL;
	k->contact = strdup(contact);
	k->type = strdup(type);
	k->text = strdup(text);
	k->step = 1;
	if (k->contact == NULL || k->type == NULL || k->text == NULL) {
		pjob_free(k);
		return NULL;
	}
	return k;
}

static void sub_auto_reply(struct pjob *j)
{
	struct buf b;
	if (presence_remote(j->w, j->contact)) {
		/* pre-approved (section 3.4): our side is stored already;
		 * the remote subscriber is told, then gets our presence */
		presence_route_simple(j->w, j->bare, j->contact, "subscribed");
		presence_send_current(j->w, j->bare, j->contact);
		return;
	}
	buf_init(&b, 0);
	buf_appendf(&b, "<presence from='");
	xml_escape(&b, j->bare, strlen(j->bare), 1);
	buf_appendf(&b, "' to='");
	xml_escape(&b, j->contact, strlen(j->contact), 1);
	buf_appendf(&b, "' type='subscribed'/>");
	buf_append(&b, "", 1);
	struct pjob *k = sub_other_side(j, j->contact, j->bare, "subscribed",
					buf_head(&b));
	buf_free(&b);
	if (k != NULL) {
		k->granted = 1;
		sub_run(k);
	}
}

static void sub_account_side(struct pjob *j, const PGresult *res)
{
	if (presence_remote(j->w, j->contact)) {
		/* the contact's server takes its side (sections 3.1.3,
		 * 3.2.2, 3.3.2): the stanza first, then what follows it --
		 * our presence after subscribed (3.1.5), unavailable after
		 * unsubscribed (3.2.2) */
		if (sub_flag(res, 0))
			presence_route_text(j->w, j->text);
		if (sub_flag(res, 0) && sub_flag(res, 4))
			presence_send_current(j->w, j->bare, j->contact);
		if (sub_flag(res, 5))
			presence_unavailable_to(j->w, j->bare, j->contact);
		return;
	}
	if (sub_flag(res, 5))
		presence_unavailable_to(j->w, j->bare, j->contact);
	if (!sub_flag(res, 0))
		return;
	struct pjob *k = sub_other_side(j, j->contact, j->bare, j->type,
					j->text);
	if (k != NULL) {
		k->granted = sub_flag(res, 4);
		sub_run(k);
	}
}

static void sub_contact_side(struct pjob *j, const PGresult *res)
{
	if (sub_flag(res, 1))
		route_to_resources(j->w, j->bare, j->text, strlen(j->text),
				   IPC_FRAME_STANZA, 1, NULL);
	/* Section 3.1.5: after the subscribed, the presence it allows. */
	if (j->granted)
		presence_send_current(j->w, j->contact, j->bare);
	if (sub_flag(res, 5))
		presence_unavailable_to(j->w, j->bare, j->contact);
	if (!PQgetisnull(res, 0, 2))
		sub_auto_reply(j);
}

/* The roster is full (im.roster_max_items): the resource that sent the
 * subscription stanza gets it back as an error (RFC 6121 2.3.3). */
static void sub_refused(struct pjob *j)
{
	struct arena a;
	struct buf b;
	const char *error;
	if (j->origin == NULL)
		return;
	arena_init(&a, 512);
	buf_init(&b, 0);
	/* RFC 6120 8.3.1: from the contact, with the stanza's id, to the
	 * resource that sent it (j->text is stamped with the bare JID). */
	struct xml_node *st = stanza_parse(&a, j->text, strlen(j->text),
					   &error);
	if (st != NULL &&
	    stanza_error_xml_app(&b, st, j->contact, j->origin, "cancel",
				 "not-acceptable", NULL, NULL) == 0 &&
	    buf_append(&b, "", 1) == 0)
		presence_route_text(j->w, buf_head(&b));
	buf_free(&b);
	arena_free(&a);
}

static void sub_result(void *ctx, const PGresult *res, const char *error)
{
	struct pjob *j = ctx;
	if (res == NULL) {
		log_warn("%s %s -> %s failed: %s", j->type, j->bare,
			 j->contact, error);
	} else if (PQntuples(res) == 1) {
		if (sub_flag(res, 12)) {
			sub_refused(j);
			pjob_free(j);
			return;
		}
		if (sub_flag(res, 3))
			EXT_RUN(subscription_changed, j->w, j->bare,
				j->contact, res, 6, 11);
		if (j->step == 0)
			sub_account_side(j, res);
		else
			sub_contact_side(j, res);
	}
	/* No row: no such account; presence to it is ignored (8.5.1). */
	pjob_free(j);
}

static void sub_run(struct pjob *j)
{
	char max[16];
	snprintf(max, sizeof(max), "%u", j->w->cfg->roster_max_items);
	const char *params[7] = {
		j->user, j->domain, j->contact, j->step ? "in" : "out",
		j->type, j->step ? j->text : NULL, max,
	};
	if (j->w->db == NULL ||
	    db_query(j->w->db, sub_sql, 7, params, NULL, NULL, 0, sub_result,
		     j) < 0) {
		log_warn("%s %s -> %s failed: database unavailable", j->type,
			 j->bare, j->contact);
		pjob_free(j);
	}
}

static int presence_is_subscription(const char *type)
{
	return type != NULL && (strcmp(type, "subscribe") == 0 ||
				strcmp(type, "subscribed") == 0 ||
				strcmp(type, "unsubscribe") == 0 ||
				strcmp(type, "unsubscribed") == 0);
}

/* Outbound subscription stanza from the client (section 3.1.2 ff.):
 * addressed to the contact's bare JID, stamped with the user's. */
static void presence_subscription(struct conn *c, struct xml_node *st,
				  const char *type)
{
	struct jid to;
	const char *error;
	char *self = arena_strndup(c->arena, c->jid, strcspn(c->jid, "/"));
	/* a contact is an account: a user, or on another domain any
	 * JID (a component's domain, user@gateway) */
	if (jid_parse(c->arena, xml_attr(st, "to"), &to, &error) < 0 ||
	    (to.local == NULL && stream_hosted(c->w, to.domain))) {
		stanza_error_reply(c, st, "modify", "jid-malformed", NULL);
		return;
	}
	const char *contact = jid_bare(c->arena, &to);
	if (self == NULL || contact == NULL ||
	    xml_set_attr(c->arena, st, "to", contact) < 0 ||
	    xml_set_attr(c->arena, st, "from", self) < 0)
		return;
	/* a contact on another server: our side (roster, pending out)
	 * first, then sub_account_side routes it there */
	struct buf out;
	buf_init(&out, 0);
	xml_serialize(&out, st, NS_CLIENT);
	buf_append(&out, "", 1);
	struct pjob *j = pjob_new(c->w, self);
	if (j != NULL) {
		j->contact = strdup(contact);
		j->type = strdup(type);
		j->origin = strdup(c->jid);
		j->text = out.data;
		out.data = NULL;
	}
	buf_free(&out);
	if (j == NULL || j->contact == NULL || j->type == NULL ||
	    j->origin == NULL) {
		pjob_free(j);
		return;
	}
	sub_run(j);
}

void presence_from_client(struct conn *c, struct xml_node *st)
{
	const char *type = xml_attr(st, "type");
	if (presence_is_subscription(type) && xml_attr(st, "to") != NULL)
		presence_subscription(c, st, type);
	else if (xml_attr(st, "to") == NULL)
		presence_own(c, st);
	else if (type != NULL && strcmp(type, "probe") == 0)
		return;     /* probes are the server's business (4.3) */
	else
		presence_directed(c, st);
}

void presence_sub_inbound(struct worker *w, const char *from_bare,
			  const char *to_bare, const char *type)
{
	struct pjob tmp = { .w = w };
	struct buf b;
	if (presence_remote(w, to_bare)) {
		/* the contact's server (or component) takes its side */
		presence_route_simple(w, from_bare, to_bare, type);
		if (strcmp(type, "unsubscribed") == 0)
			presence_unavailable_to(w, from_bare, to_bare);
		return;
	}
	if (strcmp(type, "unsubscribed") == 0)
		presence_unavailable_to(w, from_bare, to_bare);
	buf_init(&b, 0);
	buf_appendf(&b, "<presence from='");
	xml_escape(&b, from_bare, strlen(from_bare), 1);
	buf_appendf(&b, "' to='");
	xml_escape(&b, to_bare, strlen(to_bare), 1);
	buf_appendf(&b, "' type='%s'/>", type);
	buf_append(&b, "", 1);
	struct pjob *k = sub_other_side(&tmp, to_bare, from_bare, type,
					buf_head(&b));
	buf_free(&b);
	if (k != NULL)
		sub_run(k);
}

/* ---- from other servers and components -------------------------------- */

/* The account's available resources: how many (0: none). */
static int presence_available_count(struct worker *w, const char *bare)
{
	struct session_info *heap;
	int n, avail = 0;
	struct session_info *res = route_sessions(w, bare, &n, &heap);
	for (int i = 0; i < n; i++)
		avail += res[i].available != 0;
	route_sessions_done(heap);
	return avail;
}

/* Section 4.3.2: a probe from a remote contact, answered from the
 * account's roster.  A missing account reads as no subscription. */
static const char probe_sql[] =
	"SELECT (SELECT subscription FROM roster_items WHERE account_id = "
	"s.a AND contact = $3 AND NOT removed), EXISTS (SELECT 1 FROM "
	"blocklist b WHERE b.account_id = s.a AND b.jid IN ($3, "
	"split_part($3, '@', 2))) FROM (SELECT xmppd_account_id($1, $2) "
	"AS a) s";

static void presence_probe_result(void *ctx, const PGresult *res,
				  const char *error)
{
	struct pjob *j = ctx;
	if (res == NULL || PQntuples(res) != 1) {
		log_warn("probe of %s from %s not answered: %s", j->bare,
			 j->contact, res == NULL ? error : "no row");
	} else if (strcmp(PQgetvalue(res, 0, 1), "t") == 0) {
		/* blocked (XEP-0191 section 3.1.4): no presence at all */
		log_debug("probe of %s from %s: blocked", j->bare, j->contact);
	} else if (!PQgetisnull(res, 0, 0) &&
		   (strcmp(PQgetvalue(res, 0, 0), "from") == 0 ||
		    strcmp(PQgetvalue(res, 0, 0), "both") == 0)) {
		/* the last presence of each available resource; with none
		 * available, unavailable from the bare JID */
		if (presence_available_count(j->w, j->bare) > 0)
			presence_send_current(j->w, j->bare, j->jid);
		else
			presence_route_simple(j->w, j->bare, j->jid,
					      "unavailable");
	} else {
		/* no subscription (or no such account): unsubscribed, so
		 * that the prober's server cancels its side */
		presence_route_simple(j->w, j->bare, j->contact,
				      "unsubscribed");
	}
	pjob_free(j);
}

/* to_bare: the local account, from: the 'from' of the probe (where the
 * answers go), from_bare: the prober's bare JID (its roster item). */
static void presence_remote_probe(struct worker *w, const char *to_bare,
				  const char *from, const char *from_bare)
{
	struct pjob *j = pjob_new(w, to_bare);
	if (j == NULL || (j->contact = strdup(from_bare)) == NULL) {
		pjob_free(j);
		return;
	}
	free(j->jid);
	if ((j->jid = strdup(from)) == NULL) {
		pjob_free(j);
		return;
	}
	const char *params[3] = { j->user, j->domain, j->contact };
	if (w->db == NULL || db_query(w->db, probe_sql, 3, params, NULL, NULL,
				      0, presence_probe_result, j) < 0) {
		log_warn("probe of %s from %s not answered: database "
			 "unavailable", j->bare, from);
		pjob_free(j);
	}
}

int presence_inbound(struct worker *w, struct arena *a, struct xml_node *st)
{
	const char *type = xml_attr(st, "type"), *error;
	const char *f = xml_attr(st, "from");
	struct jid to, from;
	if (type == NULL || (!presence_is_subscription(type) &&
			     strcmp(type, "probe") != 0))
		return 0;
	if (f == NULL || jid_parse(a, f, &from, &error) < 0 ||
	    stream_hosted(w, from.domain))
		return 0;       /* from a local user: presence.c's own */
	if (jid_parse(a, xml_attr(st, "to"), &to, &error) < 0 ||
	    to.local == NULL || !stream_hosted(w, to.domain))
		return 0;
	const char *to_bare = jid_bare(a, &to);
	const char *from_bare = jid_bare(a, &from);
	if (to_bare == NULL || from_bare == NULL)
		return 1;
	if (strcmp(type, "probe") == 0) {
		/* section 4.3: a probe is about the account (bare JID) */
		presence_remote_probe(w, to_bare, f, from_bare);
		return 1;
	}
	/* Section 3: the contact's side of a subscription stanza, both
	 * addresses bare (3.1.3, 3.2.3, 3.3.3, 3.4.3; the stanza kept
	 * whole: <status/>, XEP-0172 <nick/>). */
	struct buf out;
	struct pjob tmp = { .w = w };
	if (xml_set_attr(a, st, "to", to_bare) < 0 ||
	    xml_set_attr(a, st, "from", from_bare) < 0)
		return 1;
	buf_init(&out, 0);
	if (xml_serialize(&out, st, NS_CLIENT) < 0 ||
	    buf_append(&out, "", 1) < 0) {
		buf_free(&out);
		return 1;
	}
	struct pjob *k = sub_other_side(&tmp, to_bare, from_bare, type,
					buf_head(&out));
	buf_free(&out);
	if (k != NULL)
		sub_run(k);
	return 1;
}

void presence_from_remote(struct worker *w, struct arena *a,
			  struct xml_node *st)
{
	/* route_stanza sends probes and subscription stanzas from
	 * another domain to presence_inbound() */
	route_stanza(w, a, st);
}

/* XEP-0191 section 3.4: an unblocked contact with a subscription to the
 * account's presence gets the current presence of each available
 * resource again (as a probe would), on whichever worker it lives. */
void presence_current_to(struct worker *w, const char *bare, const char *to)
{
	struct session_info *heap;
	const char *error;
	int n;
	struct session_info *res = route_sessions(w, bare, &n, &heap);
	for (int i = 0; i < n; i++) {
		if (!res[i].available)
			continue;
		if (res[i].slot != w->slot) {
			if (worker_send_session(w, &res[i], IPC_FRAME_PROBE,
						to, strlen(to), &error) < 0)
				log_warn("presence to %s via w%u: %s", to,
					 res[i].slot, error);
			continue;
		}
		struct conn *c = conn_lookup(w, res[i].conn_id, res[i].gen);
		if (c != NULL)
			presence_answer_probe(c, to);
	}
	route_sessions_done(heap);
}

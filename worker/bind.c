/*
 * bind.c - resource binding (RFC 6120 section 7) and the RFC 3921
 * session IQ.  A bound session is entered in the shared session table;
 * a second session binding the same full JID replaces the first, which
 * is closed with <conflict/> wherever it lives (its own worker gets a
 * KICK frame).  An account has at most c2s.max_sessions_per_account
 * sessions, counted in the shared table with the insert; a replaced
 * full JID does not count twice.  A client-chosen resource too long for
 * the account's share of the long-JID pool is replaced by a generated
 * one (RFC 6120 section 7.7 lets the server override the client's
 * resourcepart; the client uses the JID of the result).
 * Failure policy: a full session table or an account at its limit
 * answers the bind with <resource-constraint/> (RFC 6120 7.6.2.1);
 * nothing else is affected.
 */
#include "worker.h"
#include "ext.h"
#include "jid.h"
#include "log.h"
#include "session.h"
#include "stanza.h"
#include "util.h"

#include <arpa/inet.h>
#include <openssl/ssl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

void bind_kick(struct conn *c, const struct session_info *old)
{
	static const char reason[] = "conflict";
	if (old->slot == c->w->slot) {
		struct conn *o = conn_lookup(c->w, old->conn_id, old->gen);
		if (o != NULL && o != c) {
			o->bound = 0;   /* its entry already belongs to c */
			o->available = 0;   /* no unavailable in c's name */
			stream_error(o, "conflict", "Replaced by new connection");
		}
		return;
	}
	/* Another worker's session, or another node's (old->node != 0: the
	 * full JID was held there, its directory entry is replaced here as
	 * a local holder's would be, and the KICK goes to the cluster
	 * bridge, which hands it to that node's worker: that stream ends
	 * with <conflict/> like one kicked across workers). */
	const char *error;
	if (worker_send_session(c->w, old, IPC_FRAME_KICK, reason,
				sizeof(reason) - 1, &error) < 0)
		log_error("kick of %s on w%u failed: %s", old->jid, old->slot,
			  error);
}

/* A random resource: 16 hex digits. */
static const char *bind_random_resource(struct conn *c)
{
	unsigned char raw[8];
	char *hex = arena_alloc(c->arena, 17);
	if (hex == NULL)
		return NULL;
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2hex(hex, 17, raw, sizeof(raw));
	return hex;
}

/* The requested resource, prepared, or a random one. 0 or -1;
 * *chosen_r says whether the client chose it. */
static int bind_resource(struct conn *c, const struct xml_node *bind,
			 const char **res_r, int *chosen_r)
{
	const struct xml_node *r = xml_child(bind, NS_BIND, "resource");
	char *text = r ? xml_text(c->arena, r) : NULL;
	const char *error;
	*chosen_r = 0;
	/* At most one <resource/> (the schema of RFC 6120 7.7.2.1). */
	for (const struct xml_node *k = r ? r->next : NULL; k; k = k->next)
		if (xml_is(k, NS_BIND, "resource"))
			return -1;
	*chosen_r = text != NULL && text[0] != '\0';
	if (*chosen_r)
		return jid_prep_part(c->arena, JID_PART_RESOURCE, text,
				     strlen(text), res_r, &error);
	*res_r = bind_random_resource(c);
	return *res_r != NULL ? 0 : -1;
}

/* What `xmppctl sessions` shows of c: peer, TLS version, mechanism. */
static void bind_info_peer(const struct conn *c, struct session_info *info)
{
	const char *colon = strrchr(c->peer, ':');
	if (inet_pton(AF_INET, c->addr, info->peer_addr) == 1)
		info->peer_family = 4;
	else if (inet_pton(AF_INET6, c->addr, info->peer_addr) == 1)
		info->peer_family = 6;
	info->peer_port = colon != NULL ? (uint16_t)atoi(colon + 1) : 0;
	info->tls_version = c->t13 != NULL ? TLS1_3_VERSION :
		c->ssl != NULL ? (uint16_t)SSL_version(c->ssl) : 0;
	info->mech = c->mech;
}

/* Enter full in the session table: 0, or -1 with *why_r.  A refusal
 * is logged, except a long-JID one that the caller will retry. */
static int bind_enter(struct conn *c, const char *full, int retry_long,
		      enum session_refusal *why_r)
{
	struct session_info info, old;
	const char *error;
	unsigned max = c->w->cfg->max_sessions_per_account;
	memset(&info, 0, sizeof(info));
	snprintf(info.jid, sizeof(info.jid), "%s", full);
	info.slot = (uint16_t)c->w->slot;
	info.conn_id = c->id;
	info.gen = c->gen;
	info.since = time(NULL);
	info.active = info.since;
	/* taking the JID from another node's session: the other nodes
	 * settle two holders by the later bind (cluster/bridge_route.c
	 * route_newer, in seconds), so ours must be later than the one it
	 * replaces even within the same second */
	if (shm_session_get(c->w->shm->sessions, full, &old) == 1 &&
	    old.node != 0 && old.since >= info.since)
		info.since = old.since + 1;
	bind_info_peer(c, &info);
	int r = shm_session_put_limited(c->w->shm->sessions, &info, max,
					&old, why_r, &error);
	/* sessions waiting for a resumption (XEP-0198) make way */
	if (r < 0 && *why_r == SESSION_REFUSED_ACCOUNT && ext_make_room(c))
		r = shm_session_put_limited(c->w->shm->sessions, &info, max,
					    &old, why_r, &error);
	if (r < 0 && *why_r == SESSION_REFUSED_ACCOUNT)
		log_info("c%u %s: cannot bind %s: %s "
			 "(c2s.max_sessions_per_account = %u)", c->id, c->peer,
			 full, error, max);
	else if (r < 0 && *why_r == SESSION_REFUSED_LONG && !retry_long)
		log_info("c%u %s: cannot bind %s: %s", c->id, c->peer, full,
			 error);
	else if (r < 0 && *why_r != SESSION_REFUSED_LONG)
		log_warn("c%u: cannot bind %s: %s", c->id, full, error);
	if (r < 0)
		return -1;
	if (r == 1)
		bind_kick(c, &old);
	return 0;
}

/* "user@domain/res", malloc()ed, or NULL if too long. */
static char *bind_full_jid(const struct conn *c, const char *res)
{
	size_t len = strlen(c->user) + strlen(c->domain) + strlen(res) + 3;
	char *full = len - 1 > IPC_JID_MAX ? NULL : malloc(len);
	if (full != NULL)
		snprintf(full, len, "%s@%s/%s", c->user, c->domain, res);
	return full;
}

/* Bind *full_r.  If its resource is the client's and would take a
 * long-JID entry the account may not have, bind a generated resource
 * instead and replace *full_r.  0, or -1 with *why_r. */
static int bind_claim(struct conn *c, char **full_r, int chosen,
		      enum session_refusal *why_r)
{
	if (bind_enter(c, *full_r, chosen, why_r) == 0)
		return 0;
	if (*why_r != SESSION_REFUSED_LONG || !chosen)
		return -1;
	const char *res = bind_random_resource(c);
	char *full = res != NULL ? bind_full_jid(c, res) : NULL;
	if (full == NULL || bind_enter(c, full, 0, why_r) < 0) {
		free(full);
		return -1;
	}
	log_info("c%u %s: resource of %zu bytes overridden: no long-JID "
		 "entry for it (pool or the account's share used up)", c->id,
		 c->peer,
		 strlen(*full_r) - strlen(full) + strlen(res));
	free(*full_r);
	*full_r = full;
	return 0;
}

static void bind_do(struct conn *c, struct xml_node *iq, struct xml_node *bind)
{
	const char *res;
	int chosen;
	enum session_refusal why;
	/* c2s.timeout holds to the millisecond, not to the next sweep:
	   user del's late-login watch (master/control.c) relies on it */
	if (c->deadline_ms != 0 && time_now_ms() >= c->deadline_ms) {
		log_info("c%u %s: no authentication in time", c->id, c->peer);
		stream_error(c, "connection-timeout", NULL);
		return;
	}
	if (bind_resource(c, bind, &res, &chosen) < 0) {
		stanza_error_reply(c, iq, "modify", "bad-request",
				   "invalid resourcepart");
		return;
	}
	char *full = bind_full_jid(c, res);
	if (full == NULL) {
		stanza_error_reply(c, iq, "modify", "bad-request",
				   "JID too long");
		return;
	}
	if (bind_claim(c, &full, chosen, &why) < 0) {
		free(full);
		stanza_error_reply(c, iq, "wait", "resource-constraint",
				   why == SESSION_REFUSED_ACCOUNT ?
				   "too many sessions for this account" : NULL);
		return;
	}
	c->jid = full;
	c->bound = 1;
	METRIC_INC(c->w->stats->sessions);
	METRIC_INC(c->w->stats->binds);
	c->deadline_ms = 0;
	struct session_info self;
	c->sess_index = shm_session_get(c->w->shm->sessions, full, &self) == 1 ?
		self.index : -1;
	c->touched_ms = c->w->now_ms;
	EXT_RUN(session_bound, c);
	log_info("c%u %s: bound %s", c->id, c->peer, full);
	struct buf out;
	buf_init(&out, 0);
	buf_appendf(&out, "<iq type='result'");
	stanza_append_id(&out, iq);
	buf_appendf(&out, "><bind xmlns='" NS_BIND "'><jid>");
	xml_escape(&out, full, strlen(full), 0);
	buf_appendf(&out, "</jid></bind></iq>");
	conn_send(c, buf_head(&out), buf_used(&out));
	buf_free(&out);
}

static void bind_session(struct conn *c, struct xml_node *iq)
{
	struct buf out;
	buf_init(&out, 0);
	buf_appendf(&out, "<iq type='result'");
	stanza_append_id(&out, iq);
	buf_appendf(&out, "/>");
	conn_send(c, buf_head(&out), buf_used(&out));
	buf_free(&out);
}

/* A bind or session IQ for the stream itself (no 'to', or our domain). */
int bind_is_session_iq(const struct conn *c, const struct xml_node *n)
{
	const struct xml_node *p = xml_first_element(n);
	const char *to = xml_attr(n, "to");
	if (strcmp(n->name, "iq") != 0 || p == NULL)
		return 0;
	if (to != NULL && strcasecmp(to, c->domain) != 0)
		return 0;
	return xml_is(p, NS_BIND, "bind") || xml_is(p, NS_SESSION, "session");
}

/* Stanzas before binding: only the bind IQ (RFC 6120 section 7.2);
 * after it, the session IQ and a refused second bind. */
void bind_handle(struct conn *c, struct xml_node *n)
{
	const char *type = xml_attr(n, "type");
	struct xml_node *payload = xml_first_element(n);
	if (strcmp(n->name, "iq") != 0 || type == NULL ||
	    strcmp(type, "set") != 0 || payload == NULL) {
		if (c->bound)
			stanza_error_reply(c, n, "modify", "bad-request", NULL);
		else
			stream_error(c, "not-authorized", "bind a resource first");
		return;
	}
	if (xml_is(payload, NS_BIND, "bind") && c->bound)
		stanza_error_reply(c, n, "cancel", "not-allowed",
				   "one resource per stream");
	else if (xml_is(payload, NS_BIND, "bind"))
		bind_do(c, n, payload);
	else if (xml_is(payload, NS_SESSION, "session"))
		bind_session(c, n);
	else
		stream_error(c, "not-authorized", "bind a resource first");
}

void bind_release(struct conn *c)
{
	if (!c->bound || c->jid == NULL)
		return;
	shm_session_del(c->w->shm->sessions, c->jid, (uint16_t)c->w->slot,
			c->id, c->gen);
	c->bound = 0;
	METRIC_DEC(c->w->stats->sessions);
}

void bind_touch_slow(struct conn *c)
{
	c->touched_ms = c->w->now_ms;
	shm_session_touch(c->w->shm->sessions, c->sess_index,
			  (uint16_t)c->w->slot, c->id, c->gen, time(NULL));
}

static const char *bind_kick_condition(uint32_t condition)
{
	switch (condition) {
	case IPC_KICK_POLICY_VIOLATION: return "policy-violation";
	case IPC_KICK_RESET: return "reset";
	case IPC_KICK_NOT_AUTHORIZED: return "not-authorized";
	default: return NULL;
	}
}

/* The master found the session in the table and tells us to end it.
 * The connection id may have been reused since: the JID must match. */
void bind_admin_kick(struct worker *w, const void *payload, size_t len)
{
	struct ipc_kick k;
	char jid[IPC_JID_MAX + 1], text[1024];
	const char *condition;

	if (len < sizeof(k)) {
		log_error("kick command too short (%zu bytes)", len);
		return;
	}
	memcpy(&k, payload, sizeof(k));
	condition = bind_kick_condition(k.condition);
	if (condition == NULL || k.jid_len == 0 || k.jid_len > IPC_JID_MAX ||
	    k.text_len >= sizeof(text) ||
	    len != sizeof(k) + k.jid_len + k.text_len) {
		log_error("malformed kick command (%zu bytes)", len);
		return;
	}
	memcpy(jid, (const char *)payload + sizeof(k), k.jid_len);
	jid[k.jid_len] = '\0';
	memcpy(text, (const char *)payload + sizeof(k) + k.jid_len, k.text_len);
	text[k.text_len] = '\0';
	struct conn *c = conn_lookup(w, k.conn_id, k.gen);
	if (c == NULL || !c->bound || c->jid == NULL || strcmp(c->jid, jid) != 0) {
		log_info("kick of %s: session already gone", jid);
		return;
	}
	if (c->want_close || c->closed)
		return;     /* kicked again while its stream ends */
	log_info("c%u %s: %s kicked by the operator (xmppctl, uid %d) with "
		 "<%s/>%s%s", c->id, c->peer, jid, (int)k.uid, condition,
		 text[0] ? ": " : "", text);
	stream_error(c, condition, text[0] ? text : NULL);
}

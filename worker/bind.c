/*
 * bind.c - resource binding (RFC 6120 section 7) and the RFC 3921
 * session IQ.  A bound session is entered in the shared session table;
 * a second session binding the same full JID replaces the first, which
 * is closed with <conflict/> wherever it lives (its own worker gets a
 * KICK frame).  Failure policy: a full session table answers the bind
 * with <resource-constraint/>; nothing else is affected.
 */
#include "worker.h"
#include "jid.h"
#include "log.h"
#include "session.h"
#include "stanza.h"
#include "util.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static void bind_kick(struct conn *c, const struct session_info *old)
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
	const char *error;
	if (queue_send(c->w->q, old->slot, IPC_FRAME_KICK, old->conn_id,
		       old->gen, reason, sizeof(reason) - 1, &error) < 0)
		log_error("kick of %s on w%u failed: %s", old->jid, old->slot,
			  error);
}

/* The requested resource, prepared, or a random one. 0 or -1. */
static int bind_resource(struct conn *c, const struct xml_node *bind,
			 const char **res_r)
{
	const struct xml_node *r = xml_child(bind, NS_BIND, "resource");
	char *text = r ? xml_text(c->arena, r) : NULL;
	const char *error;
	if (text != NULL && text[0] != '\0')
		return jid_prep_part(c->arena, JID_PART_RESOURCE, text,
				     strlen(text), res_r, &error);
	unsigned char raw[8];
	char *hex = arena_alloc(c->arena, 17);
	if (hex == NULL)
		return -1;
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2hex(hex, 17, raw, sizeof(raw));
	*res_r = hex;
	return 0;
}

static int bind_enter(struct conn *c, const char *full)
{
	struct session_info info, old;
	const char *error;
	memset(&info, 0, sizeof(info));
	snprintf(info.jid, sizeof(info.jid), "%s", full);
	info.slot = (uint16_t)c->w->slot;
	info.conn_id = c->id;
	info.gen = c->gen;
	info.since = time(NULL);
	int r = shm_session_put(c->w->shm->sessions, &info, &old, &error);
	if (r < 0) {
		log_warn("c%u: cannot bind %s: %s", c->id, full, error);
		return -1;
	}
	if (r == 1)
		bind_kick(c, &old);
	return 0;
}

static void bind_do(struct conn *c, struct xml_node *iq, struct xml_node *bind)
{
	const char *res;
	if (bind_resource(c, bind, &res) < 0) {
		stanza_error_reply(c, iq, "modify", "bad-request",
				   "invalid resourcepart");
		return;
	}
	size_t len = strlen(c->user) + strlen(c->domain) + strlen(res) + 3;
	char *full = malloc(len);
	if (full == NULL || len - 1 > IPC_JID_MAX) {
		free(full);
		stanza_error_reply(c, iq, "modify", "bad-request",
				   "JID too long");
		return;
	}
	snprintf(full, len, "%s@%s/%s", c->user, c->domain, res);
	if (bind_enter(c, full) < 0) {
		free(full);
		stanza_error_reply(c, iq, "wait", "resource-constraint", NULL);
		return;
	}
	c->jid = full;
	c->bound = 1;
	c->deadline_ms = 0;
	blocking_load(c);
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
}

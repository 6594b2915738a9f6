/*
 * iq.c - replies to IQs that wait for the database (iq.h).
 */
#include "iq.h"
#include "server.h"
#include "stanza.h"
#include "worker.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

/* Deep copy of an element into another arena. */
static struct xml_node *iq_copy(struct arena *a, const struct xml_node *n)
{
	struct buf text;
	const char *error;
	struct xml_node *copy = NULL;
	buf_init(&text, 0);
	if (xml_serialize(&text, n, NS_CLIENT) == 0 &&
	    buf_append(&text, "", 1) == 0)
		copy = stanza_parse(a, buf_head(&text), buf_used(&text) - 1,
				    &error);
	buf_free(&text);
	return copy;
}

struct iq_pending *iq_pending_new(struct worker *w, struct xml_node *st)
{
	struct iq_pending *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->w = w;
	arena_init(&p->arena, 1024);
	const char *from = xml_attr(st, "from"), *to = xml_attr(st, "to");
	const char *id = xml_attr(st, "id"), *type = xml_attr(st, "type");
	struct xml_node *payload = xml_first_element(st);
	p->from = arena_strdup(&p->arena, from ? from : "");
	p->to = arena_strdup(&p->arena, to ? to : "");
	p->id = arena_strdup(&p->arena, id ? id : "");
	p->type = arena_strdup(&p->arena, type ? type : "");
	p->payload = payload ? iq_copy(&p->arena, payload) : NULL;
	if (p->from == NULL || p->to == NULL || p->id == NULL ||
	    p->type == NULL || (payload != NULL && p->payload == NULL)) {
		iq_pending_free(&p);
		return NULL;
	}
	return p;
}

void iq_pending_free(struct iq_pending **p)
{
	if (*p == NULL)
		return;
	arena_free(&(*p)->arena);
	free(*p);
	*p = NULL;
}

static void iq_attr(struct buf *out, const char *name, const char *v)
{
	buf_appendf(out, " %s='", name);
	xml_escape(out, v, strlen(v), 1);
	buf_append(out, "'", 1);
}

static void iq_head(struct buf *out, struct iq_pending *p, const char *type)
{
	buf_appendf(out, "<iq");
	if (p->to[0] != '\0')
		iq_attr(out, "from", p->to);
	iq_attr(out, "id", p->id);
	iq_attr(out, "to", p->from);
	buf_appendf(out, " type='%s'", type);
}

static void iq_error_text(struct buf *out, struct iq_pending *p,
			  const char *type, const char *condition)
{
	iq_head(out, p, "error");
	buf_appendf(out, "><error type='%s'><%s xmlns='" NS_STANZA_ERR
		    "'/></error></iq>", type, condition);
}

/* A reply that does not read back holds stored data gone wrong (a stored
 * vCard or private XML spliced in): logged, answered with an error, the
 * row left as it is. */
static void iq_send(struct iq_pending *p, struct buf *out)
{
	const char *error;
	buf_append(out, "", 1);
	struct xml_node *n = stanza_parse(&p->arena, buf_head(out),
					  buf_used(out) - 1, &error);
	if (n == NULL) {
		log_error("IQ %s reply for %s (id %s, asked of %s) unreadable "
			  "(%s): stored data kept, answered internal-server-"
			  "error", p->type, p->from, p->id,
			  p->to[0] != '\0' ? p->to : "the server", error);
		buf_consume(out, buf_used(out));
		iq_error_text(out, p, "cancel", "internal-server-error");
		buf_append(out, "", 1);
		n = stanza_parse(&p->arena, buf_head(out), buf_used(out) - 1,
				 &error);
	}
	if (n != NULL)
		route_stanza(p->w, &p->arena, n);
}

void iq_reply_result(struct iq_pending **pp, const char *payload_xml)
{
	struct buf out;
	buf_init(&out, 0);
	iq_head(&out, *pp, "result");
	if (payload_xml != NULL && payload_xml[0] != '\0')
		buf_appendf(&out, ">%s</iq>", payload_xml);
	else
		buf_appendf(&out, "/>");
	iq_send(*pp, &out);
	buf_free(&out);
	iq_pending_free(pp);
}

void iq_reply_node(struct iq_pending **pp, const struct xml_node *payload)
{
	struct buf text;
	buf_init(&text, 0);
	if (payload != NULL && xml_serialize(&text, payload, NS_CLIENT) < 0) {
		buf_free(&text);
		iq_reply_error(pp, "wait", "resource-constraint");
		return;
	}
	buf_append(&text, "", 1);
	iq_reply_result(pp, buf_head(&text));
	buf_free(&text);
}

void iq_reply_error(struct iq_pending **pp, const char *type,
		    const char *condition)
{
	struct buf out;
	buf_init(&out, 0);
	iq_error_text(&out, *pp, type, condition);
	iq_send(*pp, &out);
	buf_free(&out);
	iq_pending_free(pp);
}

void iq_reply_error_text(struct iq_pending **pp, const char *type,
			 const char *condition, const char *text)
{
	struct buf out;
	buf_init(&out, 0);
	iq_head(&out, *pp, "error");
	buf_appendf(&out, "><error type='%s'><%s xmlns='" NS_STANZA_ERR
		    "'/><text xmlns='" NS_STANZA_ERR "'>", type, condition);
	xml_escape(&out, text, strlen(text), 0);
	buf_appendf(&out, "</text></error></iq>");
	iq_send(*pp, &out);
	buf_free(&out);
	iq_pending_free(pp);
}

const char *iq_bare(struct iq_pending *p, const char *jid)
{
	return arena_strndup(&p->arena, jid, strcspn(jid, "/"));
}

void iq_reply_result_keep(struct iq_pending *p, const char *payload_xml)
{
	struct buf out;
	buf_init(&out, 0);
	iq_head(&out, p, "result");
	if (payload_xml != NULL && payload_xml[0] != '\0')
		buf_appendf(&out, ">%s</iq>", payload_xml);
	else
		buf_appendf(&out, "/>");
	iq_send(p, &out);
	buf_free(&out);
}

void iq_reply_error_xml(struct iq_pending **pp, const char *error_xml)
{
	struct buf out;
	buf_init(&out, 0);
	iq_head(&out, *pp, "error");
	buf_appendf(&out, ">%s</iq>", error_xml);
	iq_send(*pp, &out);
	buf_free(&out);
	iq_pending_free(pp);
}

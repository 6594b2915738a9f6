/*
 * stanza.c - stanza error replies (RFC 6120 section 8.3).  The error
 * goes back with 'from' and 'to' swapped and the same id; the original
 * payload is not echoed (section 8.3.1 makes that optional, and it would
 * double the size of every bounce).
 */
#include "stanza.h"
#include "worker.h"

#include <string.h>

static void stanza_attr(struct buf *out, const char *name, const char *v)
{
	if (v == NULL)
		return;
	buf_appendf(out, " %s='", name);
	xml_escape(out, v, strlen(v), 1);
	buf_append(out, "'", 1);
}

void stanza_append_id(struct buf *out, const struct xml_node *n)
{
	stanza_attr(out, "id", xml_attr(n, "id"));
}

int stanza_error_xml_app(struct buf *out, const struct xml_node *n,
			 const char *from_override, const char *to_override,
			 const char *type, const char *condition,
			 const char *text, const char *app_xml)
{
	/* every stanza error we send is built here: count it */
	int cond = metrics_stanza_error(condition);
	METRIC_INC(metrics_self->stanza_errors[cond >= 0 ? cond :
					       IPC_SERR_UNDEFINED_CONDITION]);
	buf_appendf(out, "<%s", n->name);
	stanza_attr(out, "from", from_override ? from_override
					       : xml_attr(n, "to"));
	stanza_append_id(out, n);
	stanza_attr(out, "to", to_override ? to_override
					   : xml_attr(n, "from"));
	buf_appendf(out, " type='error'><error type='%s'><%s xmlns='"
		    NS_STANZA_ERR "'/>", type, condition);
	if (text != NULL) {
		buf_appendf(out, "<text xmlns='" NS_STANZA_ERR "'>");
		xml_escape(out, text, strlen(text), 0);
		buf_appendf(out, "</text>");
	}
	if (app_xml != NULL)
		buf_appendf(out, "%s", app_xml);
	return buf_appendf(out, "</error></%s>", n->name);
}

int stanza_error_xml(struct buf *out, const struct xml_node *n,
		     const char *from_override, const char *type,
		     const char *condition, const char *text)
{
	return stanza_error_xml_app(out, n, from_override, NULL, type,
				    condition, text, NULL);
}

void stanza_error_reply(struct conn *c, const struct xml_node *n,
			const char *type, const char *condition,
			const char *text)
{
	struct buf out;
	if (!stanza_may_bounce(n))
		return;
	buf_init(&out, 0);
	/* Section 8.3.1: the error goes to the sender; a stanza read from
	 * the stream before routing stamped it has no 'from' yet. */
	const char *to = xml_attr(n, "from") == NULL && c->bound ? c->jid
								 : NULL;
	if (stanza_error_xml_app(&out, n, NULL, to, type, condition, text,
				 NULL) == 0)
		conn_send(c, buf_head(&out), buf_used(&out));
	buf_free(&out);
}

int stanza_addressable_valid(const struct xml_node *st)
{
	static const char *const ptypes[] = {
		"unavailable", "subscribe", "subscribed", "unsubscribe",
		"unsubscribed", "probe", "error",
	};
	const char *type = xml_attr(st, "type");
	if (strcmp(st->name, "iq") == 0) {
		unsigned n = xml_element_count(st);
		if (type == NULL || xml_attr(st, "id") == NULL)
			return 0;
		if (strcmp(type, "get") == 0 || strcmp(type, "set") == 0)
			return n == 1;
		if (strcmp(type, "result") == 0)
			return n <= 1;
		return strcmp(type, "error") == 0;
	}
	if (strcmp(st->name, "presence") != 0 || type == NULL)
		return 1;
	for (size_t i = 0; i < sizeof(ptypes) / sizeof(ptypes[0]); i++)
		if (strcmp(type, ptypes[i]) == 0)
			return 1;
	return 0;
}

int stanza_may_bounce(const struct xml_node *n)
{
	const char *type = xml_attr(n, "type");
	if (type == NULL)
		return 1;
	if (strcmp(type, "error") == 0)
		return 0;
	return !(strcmp(n->name, "iq") == 0 && strcmp(type, "result") == 0);
}

struct xml_node *stanza_parse(struct arena *a, const char *text, size_t len,
			      const char **error_r)
{
	return xml_parse_in(a, text, len, NS_CLIENT, error_r);
}

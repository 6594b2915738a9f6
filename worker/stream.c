/*
 * stream.c - the XML stream of one connection (RFC 6120 section 4),
 * parsed by expat with namespaces on.  Restricted XML (section 11.1):
 * DTDs, entity declarations, processing instructions and comments end
 * the stream with <restricted-xml/>; malformed XML or bad UTF-8 with
 * <not-well-formed/>; an oversized stanza with <policy-violation/>.
 * Failure policy: every fault ends only this stream, with the RFC's
 * stream error, after our stream header if we had not sent it yet.
 */
#include "worker.h"
#include "log.h"
#include "util.h"

#include <expat.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_STREAMS "http://etherx.jabber.org/streams"
#define NS_CLIENT "jabber:client"
#define NS_STREAM_ERR "urn:ietf:params:xml:ns:xmpp-streams"
#define NS_SEP '\xff'           /* cannot occur in a URI or name */
#define STREAM_MAX_DEPTH 64
#define STREAM_MAX_ATTRS 64

static void stream_default_host(struct conn *c);

static void stream_header_out(struct conn *c)
{
	unsigned char raw[12];
	char id[25];
	char head[640];

	if (c->header_sent)
		return;
	if (c->stream_to[0] == '\0')
		stream_default_host(c);
	const char *from = c->stream_to;
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2hex(id, sizeof(id), raw, sizeof(raw));
	int n = snprintf(head, sizeof(head),
			 "<?xml version='1.0'?><stream:stream xmlns='"
			 NS_CLIENT "' xmlns:stream='" NS_STREAMS "' id='%s'"
			 "%s%s%s version='1.0' xml:lang='en'>", id,
			 from[0] ? " from='" : "", from, from[0] ? "'" : "");
	conn_send(c, head, (size_t)n);
	c->header_sent = 1;
}

void stream_error(struct conn *c, const char *condition, const char *text)
{
	char out[512];
	if (c->want_close || c->closed)
		return;
	stream_header_out(c);
	int n = snprintf(out, sizeof(out),
			 "<stream:error><%s xmlns='" NS_STREAM_ERR "'/>%s%s%s"
			 "</stream:error></stream:stream>", condition,
			 text ? "<text xmlns='" NS_STREAM_ERR "'>" : "",
			 text ? text : "", text ? "</text>" : "");
	conn_send(c, out, (size_t)n);
	c->w->stats->errors++;
	c->want_close = 1;
	c->state = CONN_STATE_CLOSING;
	c->deadline_ms = time_now_ms() + 5000;  /* don't wait forever */
	if (c->parser != NULL)
		XML_StopParser(c->parser, XML_FALSE);
	log_info("c%u %s: stream error <%s/>%s%s", c->id, c->peer, condition,
		 text ? ": " : "", text ? text : "");
}

static int stream_is(const char *name, const char *ns, const char *local)
{
	size_t n = strlen(ns);
	return strncmp(name, ns, n) == 0 && name[n] == NS_SEP &&
	       strcmp(name + n + 1, local) == 0;
}

static const char *stream_attr(const char **atts, const char *name)
{
	for (; atts[0] != NULL; atts += 2)
		if (strcmp(atts[0], name) == 0)
			return atts[1];
	return NULL;
}

static int stream_hosted(const struct conn *c, const char *domain)
{
	const char *h = c->w->cfg->hosts;
	size_t n = strlen(domain);
	while (*h != '\0') {
		size_t len = strcspn(h, " \t,");
		if (len == n && strncasecmp(h, domain, n) == 0)
			return 1;
		h += len;
		h += strspn(h, " \t,");
	}
	return 0;
}

static void stream_default_host(struct conn *c)
{
	size_t len = strcspn(c->w->cfg->hosts, " \t,");
	if (len >= sizeof(c->stream_to))
		len = sizeof(c->stream_to) - 1;
	memcpy(c->stream_to, c->w->cfg->hosts, len);
	c->stream_to[len] = '\0';
}

/* The client's stream header (section 4.7). */
static void stream_open(struct conn *c, const char *name, const char **atts)
{
	const char *to = stream_attr(atts, "to");
	const char *version = stream_attr(atts, "version");

	if (to != NULL && strlen(to) < sizeof(c->stream_to) &&
	    stream_hosted(c, to))
		snprintf(c->stream_to, sizeof(c->stream_to), "%s", to);
	else
		stream_default_host(c);
	if (!stream_is(name, NS_STREAMS, "stream")) {
		stream_error(c, "invalid-namespace", NULL);
		return;
	}
	if (to != NULL && !stream_hosted(c, to)) {
		stream_error(c, "host-unknown", NULL);
		return;
	}
	if (version == NULL || strtol(version, NULL, 10) != 1) {
		stream_error(c, "unsupported-version", NULL);
		return;
	}
	c->state = CONN_STATE_OPEN;
	stream_header_out(c);
	/* Features grow with the next issue (STARTTLS, SASL, bind). */
	static const char features[] = "<stream:features/>";
	conn_send(c, features, sizeof(features) - 1);
}

static void XMLCALL stream_start(void *ud, const char *name, const char **atts)
{
	struct conn *c = ud;
	unsigned nattrs = 0;
	while (atts[nattrs * 2] != NULL)
		nattrs++;
	c->depth++;
	if (c->depth == 1) {
		stream_open(c, name, atts);
		return;
	}
	if (c->depth > STREAM_MAX_DEPTH || nattrs > STREAM_MAX_ATTRS) {
		stream_error(c, "policy-violation", "element too deep or too "
			     "many attributes");
		return;
	}
	if (c->depth == 2)
		c->stanza_start = c->fed;
}

static void XMLCALL stream_end(void *ud, const char *name)
{
	struct conn *c = ud;
	(void)name;
	c->depth--;
	if (c->depth == 0) {
		/* The client closed its stream: close ours (section 4.4). */
		static const char close_tag[] = "</stream:stream>";
		stream_header_out(c);
		conn_send(c, close_tag, sizeof(close_tag) - 1);
		c->want_close = 1;
		c->state = CONN_STATE_CLOSING;
		c->deadline_ms = time_now_ms() + 5000;
		XML_StopParser(c->parser, XML_FALSE);
		return;
	}
	if (c->depth == 1) {
		c->w->stats->stanzas_in++;
		/* Stanza routing arrives with the next issue. */
		stream_error(c, "unsupported-stanza-type", NULL);
	}
}

static void XMLCALL stream_restricted_doctype(void *ud, const char *n,
					      const char *s, const char *p,
					      int has_internal)
{
	(void)n; (void)s; (void)p; (void)has_internal;
	stream_error(ud, "restricted-xml", NULL);
}

static void XMLCALL stream_restricted_pi(void *ud, const char *t,
					 const char *d)
{
	(void)t; (void)d;
	stream_error(ud, "restricted-xml", NULL);
}

static void XMLCALL stream_restricted_comment(void *ud, const char *d)
{
	(void)d;
	stream_error(ud, "restricted-xml", NULL);
}

static void XMLCALL stream_restricted_entity(void *ud, const char *name,
					     int pe, const char *v, int vlen,
					     const char *base, const char *sys,
					     const char *pub, const char *nota)
{
	(void)name; (void)pe; (void)v; (void)vlen; (void)base; (void)sys;
	(void)pub; (void)nota;
	stream_error(ud, "restricted-xml", NULL);
}

int stream_init(struct conn *c)
{
	c->parser = XML_ParserCreateNS("UTF-8", NS_SEP);
	if (c->parser == NULL)
		return -1;
	XML_SetHashSalt(c->parser, randombytes_random());
	XML_SetUserData(c->parser, c);
	XML_SetElementHandler(c->parser, stream_start, stream_end);
	XML_SetStartDoctypeDeclHandler(c->parser, stream_restricted_doctype);
	XML_SetProcessingInstructionHandler(c->parser, stream_restricted_pi);
	XML_SetCommentHandler(c->parser, stream_restricted_comment);
	XML_SetEntityDeclHandler(c->parser, stream_restricted_entity);
	return 0;
}

void stream_free(struct conn *c)
{
	if (c->parser != NULL)
		XML_ParserFree(c->parser);
	c->parser = NULL;
}

static const char *stream_expat_condition(enum XML_Error err)
{
	switch (err) {
	case XML_ERROR_UNBOUND_PREFIX:
		return "bad-namespace-prefix";
	case XML_ERROR_INVALID_TOKEN:   /* includes bad UTF-8 */
	default:
		return "not-well-formed";
	}
}

int stream_feed(struct conn *c, const char *data, size_t len)
{
	if (c->parser == NULL || c->want_close)
		return -1;
	c->fed += (int64_t)len;
	if (XML_Parse(c->parser, data, (int)len, 0) == XML_STATUS_ERROR) {
		enum XML_Error err = XML_GetErrorCode(c->parser);
		if (err != XML_ERROR_ABORTED)
			stream_error(c, stream_expat_condition(err),
				     XML_ErrorString(err));
		return -1;
	}
	if (c->depth >= 2 && c->fed - c->stanza_start >
	    (int64_t)c->w->cfg->max_stanza_size) {
		stream_error(c, "policy-violation", "stanza too large");
		return -1;
	}
	return 0;
}

/*
 * stream.c - the XML stream of one connection (RFC 6120 section 4),
 * parsed by expat with namespaces on: the stream header, features,
 * restarts after TLS and SASL, stanza trees (worker/xml.c) and their
 * dispatch by namespace.  Restricted XML (section 11.1): DTDs, entity
 * declarations, processing instructions and comments end the stream
 * with <restricted-xml/>; malformed XML or bad UTF-8 with
 * <not-well-formed/>; an oversized stanza with <policy-violation/>.
 * Only UTF-8 (section 11.6): an XML declaration naming another encoding
 * or a UTF-16 byte order mark ends the stream with <unsupported-encoding/>.
 * The header (section 4.8): a root element not qualified by the stream
 * namespace, or a default namespace other than jabber:client (this is a
 * client port; none declared counts as other), gives <invalid-namespace/>;
 * a root element in the stream namespace but not named <stream/> gives
 * <bad-format/> (section 4.9.3.1: XML that cannot be processed).
 * Failure policy: every fault ends only this stream, with the RFC's
 * stream error, after our stream header if we had not sent it yet.
 */
#include "worker.h"
#include "ext.h"
#include "log.h"
#include "tls.h"
#include "s2s.h"
#include "component.h"
#include "util.h"

#include <expat.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define STREAM_CLOSE_GRACE_MS 5000

static void stream_default_host(struct conn *c)
{
	size_t len = strcspn(c->w->cfg->hosts, " \t,");
	if (len >= sizeof(c->stream_to))
		len = sizeof(c->stream_to) - 1;
	memcpy(c->stream_to, c->w->cfg->hosts, len);
	c->stream_to[len] = '\0';
}

/* The largest stanza of c's kind (c2s.max_stanza_size,
 * component.max_stanza_size, s2s.max_stanza_size). */
static uint64_t stream_max_stanza(const struct conn *c)
{
	if (c->kind == CONN_S2S_IN || c->kind == CONN_S2S_OUT)
		return c->w->cfg->s2s_max_stanza_size;
	return c->kind == CONN_COMPONENT ?
	       c->w->cfg->component_max_stanza_size : c->w->cfg->max_stanza_size;
}

static void stream_header_out(struct conn *c)
{
	unsigned char raw[12];
	char id[25];
	char head[640];

	if (c->header_sent)
		return;
	if (c->stream_to[0] == '\0')
		stream_default_host(c);
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2hex(id, sizeof(id), raw, sizeof(raw));
	const char *ns = c->kind == CONN_C2S ? NS_CLIENT :
			 c->kind == CONN_COMPONENT ? NS_COMPONENT : NS_SERVER;
	int n = snprintf(head, sizeof(head),
			 "<?xml version='1.0'?><stream:stream xmlns='%s'"
			 " xmlns:stream='" NS_STREAMS "' id='%s'"
			 " from='%s' version='1.0' xml:lang='en'>", ns, id,
			 c->stream_to);
	conn_send(c, head, (size_t)n);
	c->header_sent = 1;
}

static void stream_closing(struct conn *c)
{
	/* Nothing can be delivered after our </stream:stream>: the session
	 * leaves the table now, so what comes for it goes to the bare JID
	 * (another resource, offline storage), not into a closing socket. */
	presence_session_gone(c);
	bind_release(c);
	c->want_close = 1;
	c->state = CONN_STATE_CLOSING;
	c->deadline_ms = time_now_ms() + STREAM_CLOSE_GRACE_MS;
	if (c->parser != NULL)
		XML_StopParser(c->parser, XML_FALSE);
}

void stream_error(struct conn *c, const char *condition, const char *text)
{
	stream_error_app(c, condition, text, NULL);
}

void stream_error_app(struct conn *c, const char *condition,
		      const char *text, const char *app)
{
	struct buf out;
	if (c->want_close || c->closed)
		return;
	if (c->detached) {
		/* no stream to say it on: the session ends now */
		log_info("c%u %s: detached session ends: <%s/>%s%s", c->id,
			 c->peer, condition, text ? ": " : "", text ? text : "");
		presence_session_gone(c);
		bind_release(c);
		conn_close(c);
		return;
	}
	stream_header_out(c);
	buf_init(&out, 0);
	buf_appendf(&out, "<stream:error><%s xmlns='" NS_STREAM_ERR "'/>",
		    condition);
	if (text != NULL) {
		buf_appendf(&out, "<text xmlns='" NS_STREAM_ERR "'>");
		xml_escape(&out, text, strlen(text), 0);
		buf_appendf(&out, "</text>");
	}
	if (app != NULL)
		buf_appendf(&out, "%s", app);
	buf_appendf(&out, "</stream:error></stream:stream>");
	conn_send(c, buf_head(&out), buf_used(&out));
	buf_free(&out);
	METRIC_INC(c->w->stats->errors);
	/* at shutdown, worker_begin_stop() logs one line for all streams */
	if (!c->w->stopping || strcmp(condition, "system-shutdown") != 0)
		log_info("c%u %s: stream error <%s/>%s%s", c->id, c->peer,
			 condition, text ? ": " : "", text ? text : "");
	stream_closing(c);
}

void stream_send_node(struct conn *c, const struct xml_node *n)
{
	struct buf out;
	buf_init(&out, 0);
	if (xml_serialize(&out, n, NS_CLIENT) == 0)
		conn_send(c, buf_head(&out), buf_used(&out));
	buf_free(&out);
}

static int stream_is(const char *name, const char *ns, const char *local)
{
	size_t n = strlen(ns);
	return strncmp(name, ns, n) == 0 && name[n] == XML_NS_SEP &&
	       strcmp(name + n + 1, local) == 0;
}

static const char *stream_attr(const char **atts, const char *name)
{
	for (; atts[0] != NULL; atts += 2)
		if (strcmp(atts[0], name) == 0)
			return atts[1];
	return NULL;
}

int stream_domain_listed(const char *list, const char *domain)
{
	size_t n = strlen(domain);
	const char *h = list;
	if (h == NULL)
		return 0;
	h += strspn(h, " \t,");
	while (*h != '\0') {
		size_t len = strcspn(h, " \t,");
		if (len == n && strncasecmp(h, domain, n) == 0)
			return 1;
		h += len;
		h += strspn(h, " \t,");
	}
	return 0;
}

int stream_hosted(const struct worker *w, const char *domain)
{
	return stream_domain_listed(w->cfg->hosts, domain);
}

static void stream_features(struct conn *c)
{
	struct buf out;
	buf_init(&out, 0);
	buf_appendf(&out, "<stream:features>");
	if (!conn_tls(c) && c->w->tls != NULL)
		buf_appendf(&out, "<starttls xmlns='" NS_TLS "'>%s</starttls>",
			    c->w->cfg->tls_required ? "<required/>" : "");
	/* Without a usable certificate (worker.c could not load it) and
	 * tls.required, nobody logs in: fail closed. */
	if (!c->authenticated && (conn_tls(c) || !c->w->cfg->tls_required))
		sasl_features(c, &out);
	if (c->authenticated) {
		buf_appendf(&out, "<bind xmlns='" NS_BIND "'/>"
			    "<session xmlns='" NS_SESSION "'><optional/>"
			    "</session>");
		EXT_RUN(stream_features, c, &out);
		/* RFC 6121 section 3.4 (presence.c) */
		buf_appendf(&out, "<sub xmlns='urn:xmpp:features:"
			    "pre-approval'/>");
	}
	buf_appendf(&out, "</stream:features>");
	conn_send(c, buf_head(&out), buf_used(&out));
	buf_free(&out);
}

/* Where the current parse event ends, as an absolute stream offset. */
static void stream_mark_clean(struct conn *c)
{
	int count = XML_GetCurrentByteCount(c->parser);
	/* The end event of an empty element (<presence/>) has no bytes of
	 * its own: its tag ended where the start event's did. */
	c->clean_at = count > 0 ? c->parser_base +
				  XML_GetCurrentByteIndex(c->parser) + count
				: c->tag_end;
}

/* Keep the raw start tag of the client's stream (for stream_park). */
static void stream_keep_header(struct conn *c)
{
	int off = 0, size = 0;
	const char *ctx = XML_GetInputContext(c->parser, &off, &size);
	int count = XML_GetCurrentByteCount(c->parser);
	free(c->header_raw);
	c->header_raw = NULL;
	c->header_len = 0;
	if (ctx == NULL || count <= 0 || off + count > size)
		return;
	c->header_raw = malloc((size_t)count);
	if (c->header_raw != NULL) {
		memcpy(c->header_raw, ctx + off, (size_t)count);
		c->header_len = (size_t)count;
	}
}

/* The client's stream header (section 4.7). */
static void stream_open(struct conn *c, const char *name, const char **atts)
{
	if (c->kind == CONN_S2S_IN || c->kind == CONN_S2S_OUT) {
		s2s_stream_open(c, name, atts);
		return;
	}
	if (c->kind == CONN_COMPONENT) {
		component_stream_open(c, name, atts);
		return;
	}
	const char *to = stream_attr(atts, "to");
	const char *version = stream_attr(atts, "version");

	if (to != NULL && strlen(to) < sizeof(c->stream_to) &&
	    stream_hosted(c->w, to))
		snprintf(c->stream_to, sizeof(c->stream_to), "%s", to);
	else if (c->stream_to[0] == '\0' || !c->authenticated)
		stream_default_host(c);
	size_t nslen = strlen(NS_STREAMS);
	if (strncmp(name, NS_STREAMS, nslen) != 0 ||
	    name[nslen] != XML_NS_SEP) {
		stream_error(c, "invalid-namespace", "the stream element is "
			     "not in the " NS_STREAMS " namespace");
		return;
	}
	if (!stream_is(name, NS_STREAMS, "stream")) {
		stream_error(c, "bad-format", "the root element is not "
			     "<stream/>");
		return;
	}
	if (c->stream_ns != 1) {
		stream_error(c, "invalid-namespace", "the default namespace "
			     "is not " NS_CLIENT);
		return;
	}
	if (to != NULL && !stream_hosted(c->w, to)) {
		stream_error(c, "host-unknown", NULL);
		return;
	}
	if (c->authenticated && to != NULL &&
	    strcasecmp(to, c->domain) != 0) {
		stream_error(c, "invalid-from", "domain changed after SASL");
		return;
	}
	if (version == NULL || strtol(version, NULL, 10) != 1) {
		stream_error(c, "unsupported-version", NULL);
		return;
	}
	if (!c->authenticated && sasl_address_banned(c))
		return;         /* login throttling: sasl.c */
	c->state = CONN_STATE_OPEN;
	stream_header_out(c);
	stream_features(c);
}

static int stream_arena(struct conn *c)
{
	if (c->arena == NULL) {
		c->arena = malloc(sizeof(*c->arena));
		if (c->arena == NULL)
			return -1;
		arena_init(c->arena, 2048);
	}
	xml_builder_init(&c->builder, c->arena);
	xml_builder_bound(&c->builder,
			  xml_out_bound(stream_max_stanza(c)));
	return 0;
}

static void stream_release_arena(struct conn *c)
{
	if (c->arena != NULL) {
		arena_free(c->arena);
		free(c->arena);
		c->arena = NULL;
	}
}

/* A first-level child we could act on (expat's "ns<SEP>local" name):
 * known at its start tag, so an unknown one is refused before its
 * content is buffered (RFC 6120 4.9.3.24), e.g. a nested stream header
 * that would otherwise be read as a stanza that never ends. */
static int stream_top_level_known(const struct conn *c, const char *name)
{
	const char *sep = strchr(name, XML_NS_SEP);
	size_t nslen;
	const char *local;

	if (sep == NULL)
		return 0;
	nslen = (size_t)(sep - name);
	local = sep + 1;
	if (c->kind == CONN_S2S_IN || c->kind == CONN_S2S_OUT)
		return s2s_top_level_known(c, name, nslen);
	if (c->kind == CONN_COMPONENT)
		return component_top_level_known(c, name, nslen);
	if (nslen == strlen(NS_CLIENT) && memcmp(name, NS_CLIENT, nslen) == 0)
		return strcmp(local, "iq") == 0 ||
		       strcmp(local, "message") == 0 ||
		       strcmp(local, "presence") == 0;
	if (nslen == strlen(NS_SASL) && memcmp(name, NS_SASL, nslen) == 0)
		return 1;
	if (nslen == strlen(NS_TLS) && memcmp(name, NS_TLS, nslen) == 0)
		return strcmp(local, "starttls") == 0;
	if (nslen == strlen(NS_STREAMS) && memcmp(name, NS_STREAMS, nslen) == 0)
		return strcmp(local, "error") == 0;     /* the client's own */
	return ext_nonza_owner(name, nslen) != NULL;    /* ext.h */
}

/* A stanza whose tree would write out to more than XML_OUT_FACTOR times
 * c2s.max_stanza_size (namespace declarations repeated on every element,
 * say) is refused as it is being built. */
static void stream_check_built(struct conn *c)
{
	if (c->builder.too_big)
		stream_error(c, "policy-violation",
			     "stanza too large once written out");
}

static void XMLCALL stream_start(void *ud, const char *name, const char **atts)
{
	struct conn *c = ud;
	unsigned nattrs = 0;
	while (atts[nattrs * 2] != NULL)
		nattrs++;
	c->depth++;
	c->tag_end = c->parser_base + XML_GetCurrentByteIndex(c->parser) +
		     XML_GetCurrentByteCount(c->parser);
	if (c->depth == 1) {
		if (!c->replaying) {
			stream_keep_header(c);
			stream_open(c, name, atts);
		}
		stream_mark_clean(c);
		return;
	}
	if ((unsigned)c->depth - 1 > c->w->cfg->max_depth ||
	    nattrs > c->w->cfg->max_attributes) {
		stream_error(c, "policy-violation", "element too deep or too "
			     "many attributes");
		return;
	}
	if (c->depth == 2) {
		if (!stream_top_level_known(c, name)) {
			stream_error(c, "unsupported-stanza-type", NULL);
			return;
		}
		c->stanza_start = c->parser_base +
				  XML_GetCurrentByteIndex(c->parser);
		if (stream_arena(c) < 0) {
			stream_error(c, "resource-constraint", NULL);
			return;
		}
	}
	xml_builder_start(&c->builder, name, atts);
	stream_check_built(c);
}

static int stream_renew(struct conn *c);

/* Ask for a fresh parser starting after the current event. */
void stream_restart(struct conn *c)
{
	if (!c->in_parse) {
		/* From a database callback: nothing of the client's is
		 * buffered (it waits for our answer), start afresh now. */
		if (stream_renew(c) < 0)
			stream_error(c, "resource-constraint", NULL);
		return;
	}
	c->restart_pending = 1;
	c->restart_offset = XML_GetCurrentByteIndex(c->parser) +
			    XML_GetCurrentByteCount(c->parser);
	XML_StopParser(c->parser, XML_FALSE);
}

/* Close our stream in answer to the client's closing (section 4.4). */
static void stream_close_ours(struct conn *c)
{
	static const char close_tag[] = "</stream:stream>";
	stream_header_out(c);
	conn_send(c, close_tag, sizeof(close_tag) - 1);
	stream_closing(c);
}

/* The client ends its stream with a stream error (RFC 6120 4.9.1): we
 * log its condition and close ours, sending no error back. */
static void stream_peer_error(struct conn *c, const struct xml_node *n)
{
	const struct xml_node *e = xml_first_element(n);

	log_info("c%u %s: the client sent a stream error <%s/>", c->id,
		 c->peer, e != NULL ? e->name : "?");
	stream_close_ours(c);
}

/* Kind of a top-level element, for the metrics. */
static enum ipc_stanza_kind stream_kind(const struct xml_node *n)
{
	if (n->ns[0] != 'j' || (strcmp(n->ns, NS_CLIENT) != 0 &&
				strcmp(n->ns, NS_SERVER) != 0 &&
				strcmp(n->ns, NS_COMPONENT) != 0))
		return IPC_STANZA_OTHER;
	switch (n->name[0]) {
	case 'm':
		return strcmp(n->name, "message") == 0 ? IPC_STANZA_MESSAGE
						       : IPC_STANZA_OTHER;
	case 'p':
		return strcmp(n->name, "presence") == 0 ? IPC_STANZA_PRESENCE
							: IPC_STANZA_OTHER;
	case 'i':
		return strcmp(n->name, "iq") == 0 ? IPC_STANZA_IQ
						  : IPC_STANZA_OTHER;
	default:
		return IPC_STANZA_OTHER;
	}
}

/* Not a stanza, not SASL or STARTTLS: an extension's nonza, or an
 * unsupported first-level element. */
static void stream_other(struct conn *c, struct xml_node *n)
{
	const struct ext *e = strcmp(n->ns, NS_CLIENT) != 0 ?
			      ext_nonza_owner(n->ns, strlen(n->ns)) : NULL;
	if (e != NULL)
		e->nonza(c, n);
	else
		stream_error(c, "unsupported-stanza-type", NULL);
}

/* A stanza of an authenticated stream. */
static void stream_stanza(struct conn *c, struct xml_node *n)
{
	ext_stanza_received(c);     /* XEP-0198 counts it (sm.c) */
	if (!c->bound || bind_is_session_iq(c, n))
		bind_handle(c, n);
	else
		route_from_client(c, n);
}

static void stream_dispatch(struct conn *c, struct xml_node *n)
{
	/* The rest of a chunk that arrived with the connection's end (or
	 * our stream error) is not acted upon. */
	if (c->closed || c->want_close)
		return;
	METRIC_INC(c->w->stats->stanzas_in[stream_kind(n)]);
	if (c->kind == CONN_S2S_IN || c->kind == CONN_S2S_OUT) {
		s2s_dispatch(c, n);
		return;
	}
	if (c->kind == CONN_COMPONENT) {
		component_dispatch(c, n);
		return;
	}
	ext_client_element(c, n);       /* ext.h: CSI's flush */
	if (c->closed || c->want_close)
		return;
	if (xml_is(n, NS_TLS, "starttls"))
		stream_starttls(c);
	else if (xml_is(n, NS_STREAMS, "error"))
		stream_peer_error(c, n);
	else if (strcmp(n->ns, NS_SASL) == 0)
		sasl_handle(c, n);
	else if (strcmp(n->ns, NS_CLIENT) != 0 ||
		 (strcmp(n->name, "iq") != 0 &&
		  strcmp(n->name, "message") != 0 &&
		  strcmp(n->name, "presence") != 0))
		stream_other(c, n);
	else if (!c->authenticated)
		stream_error(c, "not-authorized", NULL);
	else
		stream_stanza(c, n);
}

static void XMLCALL stream_end(void *ud, const char *name)
{
	struct conn *c = ud;
	(void)name;
	c->depth--;
	if (c->depth == 0) {
		/* the client closed its stream; after our stream error
		 * (expat still ends an empty root) ours is closed already */
		if (!c->want_close)
			stream_close_ours(c);
		return;
	}
	xml_builder_end(&c->builder);
	if (c->depth > 1)
		return;
	int64_t end = c->parser_base + XML_GetCurrentByteIndex(c->parser) +
		      XML_GetCurrentByteCount(c->parser);
	struct xml_node *n = xml_builder_done(&c->builder);
	if (end - c->stanza_start > (int64_t)stream_max_stanza(c))
		stream_error(c, "policy-violation", "stanza too large");
	else if (n == NULL && c->builder.too_big)
		stream_check_built(c);  /* measured at its end */
	else if (n == NULL)
		stream_error(c, "resource-constraint", NULL);
	else
		stream_dispatch(c, n);
	/* Keep one block for the next stanza (no malloc per stanza);
	 * stream_park() frees it when the stream goes idle. */
	if (c->arena != NULL)
		arena_reset(c->arena);
	stream_mark_clean(c);
}

static void XMLCALL stream_text(void *ud, const char *s, int len)
{
	struct conn *c = ud;
	if (c->depth >= 2) {
		xml_builder_text(&c->builder, s, len);
		stream_check_built(c);
	} else if (c->depth == 1)
		stream_mark_clean(c);   /* whitespace keepalive between stanzas */
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

/* Section 11.6: UTF-8 only.  expat is told the encoding is UTF-8 (so it
 * never transcodes); what the declaration names is checked here. */
static void XMLCALL stream_xml_decl(void *ud, const char *version,
				    const char *encoding, int standalone)
{
	(void)version; (void)standalone;
	if (encoding != NULL && strcasecmp(encoding, "UTF-8") != 0)
		stream_error(ud, "unsupported-encoding", "only UTF-8");
}

/* The default namespace the client's stream header declares. */
static void XMLCALL stream_ns_start(void *ud, const char *prefix,
				    const char *uri)
{
	struct conn *c = ud;
	if (c->depth != 0 || prefix != NULL)
		return;
	c->stream_ns = uri == NULL ? -1 :
		       strcmp(uri, NS_CLIENT) == 0 ? 1 :
		       strcmp(uri, NS_SERVER) == 0 ? 2 :
		       strcmp(uri, NS_COMPONENT) == 0 ? 3 : -1;
}

/* The first bytes of a stream in UTF-16: a byte order mark, or '<'
 * next to a NUL. */
static int stream_utf16(const char *data, size_t len)
{
	const unsigned char *d = (const unsigned char *)data;
	if (len < 2)
		return 0;
	return (d[0] == 0xfe && d[1] == 0xff) ||
	       (d[0] == 0xff && d[1] == 0xfe) ||
	       (d[0] == 0 && d[1] == '<') || (d[0] == '<' && d[1] == 0);
}

/* A byte that may start one of the two-byte patterns above. */
static int stream_utf16_lead(char ch)
{
	unsigned char d = (unsigned char)ch;
	return d == 0xfe || d == 0xff || d == 0 || d == '<';
}

/* Handlers and state of a new or reset parser. */
static int stream_setup(struct conn *c)
{
	XML_SetHashSalt(c->parser, randombytes_random());
	XML_SetUserData(c->parser, c);
	XML_SetElementHandler(c->parser, stream_start, stream_end);
	XML_SetCharacterDataHandler(c->parser, stream_text);
	XML_SetStartDoctypeDeclHandler(c->parser, stream_restricted_doctype);
	XML_SetProcessingInstructionHandler(c->parser, stream_restricted_pi);
	XML_SetCommentHandler(c->parser, stream_restricted_comment);
	XML_SetEntityDeclHandler(c->parser, stream_restricted_entity);
	XML_SetXmlDeclHandler(c->parser, stream_xml_decl);
	XML_SetStartNamespaceDeclHandler(c->parser, stream_ns_start);
	c->parser_base = c->fed;
	c->first_held = 0;
	c->depth = 0;
	c->stream_ns = 0;
	return 0;
}

int stream_init(struct conn *c)
{
	c->parser = XML_ParserCreateNS("UTF-8", XML_NS_SEP);
	if (c->parser == NULL)
		return -1;
	return stream_setup(c);
}

/* The next stream on this connection (after TLS or SASL): expat's parser
 * is reset and reused, not freed and made again. */
static int stream_renew(struct conn *c)
{
	XML_Parser p = c->parser;
	c->parser = NULL;
	stream_free(c);             /* the arena and the saved header */
	c->header_sent = 0;
	c->state = CONN_STATE_HEADER;
	if (p != NULL && XML_ParserReset(p, "UTF-8") == XML_TRUE) {
		c->parser = p;
		return stream_setup(c);
	}
	if (p != NULL)
		XML_ParserFree(p);
	return stream_init(c);
}

void stream_free(struct conn *c)
{
	if (c->parser != NULL)
		XML_ParserFree(c->parser);
	c->parser = NULL;
	c->parked = 0;
	stream_release_arena(c);
	free(c->header_raw);
	c->header_raw = NULL;
	c->header_len = 0;
}

int stream_park(struct conn *c)
{
	if (c->parser == NULL || c->parked || c->depth != 1 ||
	    c->state != CONN_STATE_OPEN || c->restart_pending ||
	    c->header_raw == NULL || c->fed != c->clean_at)
		return 0;
	XML_ParserFree(c->parser);
	if (c->arena != NULL) {     /* between stanzas: nothing in it */
		arena_free(c->arena);
		free(c->arena);
		c->arena = NULL;
	}
	c->parser = NULL;
	c->parked = 1;
	return 1;
}

/* A parked stream receives bytes: a new parser, primed with the header. */
static int stream_unpark(struct conn *c)
{
	char *header = c->header_raw;
	size_t len = c->header_len;
	int64_t fed = c->fed;
	c->header_raw = NULL;       /* stream_init must not free it */
	c->parked = 0;
	if (stream_init(c) < 0) {
		free(header);
		return -1;
	}
	c->header_raw = header;
	c->header_len = len;
	c->parser_base = fed - (int64_t)len;
	c->replaying = 1;
	enum XML_Status st = XML_Parse(c->parser, header, (int)len, 0);
	c->replaying = 0;
	if (st == XML_STATUS_ERROR || c->depth != 1)
		return -1;
	c->state = CONN_STATE_OPEN;
	return 0;
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

/* Replace the parser; returns how many bytes of the chunk (of size len,
 * which started at absolute offset start) the new parser must see. */
static size_t stream_do_restart(struct conn *c, int64_t start, size_t len)
{
	int64_t abs = c->restart_offset < 0 ? -1
		      : c->parser_base + c->restart_offset;
	c->restart_pending = 0;
	if (stream_renew(c) < 0) {
		stream_error(c, "resource-constraint", NULL);
		return 0;
	}
	if (abs < start || abs >= start + (int64_t)len)
		return 0;       /* nothing left, or discarded (after TLS) */
	c->parser_base = abs;
	return (size_t)(start + (int64_t)len - abs);
}

int stream_feed(struct conn *c, const char *data, size_t len)
{
	int64_t start = c->fed;
	if (c->parked && stream_unpark(c) < 0) {
		stream_error(c, "resource-constraint", NULL);
		return -1;
	}
	if (c->parser == NULL || c->want_close)
		return -1;
	c->fed += (int64_t)len;
	if (c->first_held && len > 0) {
		/* The parser's first byte came alone: with this one, is it
		 * UTF-16?  If not, expat gets it first, then the rest. */
		char two[2] = { (char)c->first_byte, data[0] };
		c->first_held = 0;
		if (stream_utf16(two, 2)) {
			stream_error(c, "unsupported-encoding", "only UTF-8");
			return -1;
		}
		c->in_parse = 1;
		enum XML_Status st = XML_Parse(c->parser, two, 1, 0);
		c->in_parse = 0;
		if (st == XML_STATUS_ERROR) {
			enum XML_Error err = XML_GetErrorCode(c->parser);
			stream_error(c, stream_expat_condition(err),
				     XML_ErrorString(err));
			return -1;
		}
	}
	for (;;) {
		if (start == c->parser_base && len == 1 &&
		    stream_utf16_lead(data[0])) {
			c->first_held = 1;      /* one byte tells nothing yet */
			c->first_byte = (unsigned char)data[0];
			return 0;
		}
		if (start == c->parser_base && stream_utf16(data, len)) {
			stream_error(c, "unsupported-encoding", "only UTF-8");
			return -1;
		}
		c->in_parse = 1;
		enum XML_Status st = XML_Parse(c->parser, data, (int)len, 0);
		c->in_parse = 0;
		if (st != XML_STATUS_ERROR)
			break;
		enum XML_Error err = XML_GetErrorCode(c->parser);
		if (err != XML_ERROR_ABORTED) {
			stream_error(c, stream_expat_condition(err),
				     XML_ErrorString(err));
			return -1;
		}
		if (!c->restart_pending || c->want_close)
			return -1;
		size_t rest = stream_do_restart(c, start, len);
		if (rest == 0 || c->want_close)
			return 0;
		data += len - rest;
		start += (int64_t)(len - rest);
		len = rest;
	}
	/* Whatever is not yet a complete event counts: a stanza, but also
	 * an unfinished start tag or header that expat keeps buffering. */
	int64_t open_from = c->depth >= 2 ? c->stanza_start : c->clean_at;
	if (c->fed - open_from > (int64_t)stream_max_stanza(c)) {
		stream_error(c, "policy-violation", "stanza too large");
		return -1;
	}
	return 0;
}

/* RFC 6120 section 5.4.2: <proceed/>, then the TLS handshake; the
 * stream restarts once it completes.  Bytes after <starttls/> are
 * discarded (a client must wait for <proceed/>). */
void stream_starttls(struct conn *c)
{
	static const char proceed[] = "<proceed xmlns='" NS_TLS "'/>";
	static const char failure[] = "<failure xmlns='" NS_TLS "'/>"
				      "</stream:stream>";
	if (conn_tls(c) || c->w->tls == NULL || c->authenticated) {
		conn_send(c, failure, sizeof(failure) - 1);
		stream_closing(c);
		return;
	}
	conn_send(c, proceed, sizeof(proceed) - 1);
	conn_flush(c);          /* in clear, before the handshake */
	if (c->closed || tls_start(c, c->w->tls) < 0) {
		conn_close(c);
		return;
	}
	c->restart_pending = 1;
	c->restart_offset = -1;
	XML_StopParser(c->parser, XML_FALSE);
}

/*
 * component.c - external components (XEP-0114 1.6, component.h).
 *
 * The list of components and their secrets is component.secrets_file
 * (lib/compcfg.h), read by each worker at start and at every reload.
 * A component's stream: its header names its domain (to=); an unknown
 * domain gets <host-unknown/>.  We answer with our header (from=DOMAIN,
 * a fresh id), the component sends hex(SHA1(id + secret)) in
 * <handshake/>; a wrong one gets <not-authorized/>.  A good one
 * registers the connection in the shared session table under the
 * reserved key "DOMAIN/xmppd-component-SLOT-ID-GEN" (a bare JID without
 * a localpart, which no user session has), inserted with at most one
 * entry per bare JID under the table's lock: a second connection for
 * the same domain, on any worker, gets <conflict/>.  Then <handshake/>.
 *
 * Routing (route.c calls component_route for domains we do not host):
 * the domain, or a parent domain whose component has 'subdomains',
 * finds the registered connection; on this worker the stanza is written
 * to it, on another it goes as IPC_FRAME_COMPONENT to (slot, conn id,
 * gen); no connection, or one gone by the time the frame arrives, gets
 * service-unavailable back to the sender.  Stanzas from the component
 * must carry 'from' in its domain (subdomains if allowed), else
 * <invalid-from/>, and 'to', else <improper-addressing/>; then they are
 * routed like any other (route_stanza), which takes probes and
 * subscription stanzas to local users through RFC 6121's inbound paths.
 *
 * Failure policy: a component's bad input ends that component's stream
 * with the error named above and a log line; what was queued for it is
 * bounced to its senders.  A secrets file that no longer reads at a
 * reload keeps the previous list (logged at error).
 */
#include "worker.h"
#include "component.h"
#include "compcfg.h"
#include "jid.h"
#include "log.h"
#include "server.h"
#include "session.h"
#include "stanza.h"
#include "util.h"

#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define COMP_ID_BYTES 16
#define COMP_KEY_RESOURCE "xmppd-component"

struct comp_conn {
	char domain[COMPCFG_MAX_DOMAIN + 1];    /* from the header's 'to' */
	char id[2 * COMP_ID_BYTES + 1];         /* our stream id */
	char key[IPC_JID_MAX + 1];              /* session table key */
	int authed;             /* <handshake/> accepted */
	int registered;         /* key is in the session table */
};

/* This worker's copy of component.secrets_file (NULL: none). */
static struct compcfg *comp_list;
static char comp_list_path[4096];

static int comp_is(const struct conn *c)
{
	return c->kind == CONN_COMPONENT && c->comp != NULL;
}

/* Read the secrets file again; on failure keep the list we have. */
static void component_load(struct worker *w)
{
	const char *path = w->cfg->component_secrets_file, *error;
	struct compcfg *list = NULL;
	if (path[0] != '\0' && compcfg_load(path, &list, &error) < 0) {
		log_error("components not reloaded, keeping the %u before: %s",
			  comp_list != NULL ? comp_list->n : 0, error);
		return;
	}
	compcfg_free(&comp_list);
	comp_list = list;
	snprintf(comp_list_path, sizeof(comp_list_path), "%s", path);
	if (list != NULL)
		log_debug("%u components configured (%s)", list->n, path);
}

int component_init(struct worker *w)
{
	component_load(w);
	return 0;
}

void component_reload(struct worker *w)
{
	component_load(w);
	/* A component removed from the file leaves. */
	for (struct conn *c = w->conns, *next; c != NULL; c = next) {
		next = c->next;     /* stream_error may close c */
		if (!comp_is(c) || c->want_close || c->comp->domain[0] == '\0')
			continue;
		if (compcfg_exact(comp_list, c->comp->domain) == NULL)
			stream_error(c, "host-gone", "the component was removed "
				     "from the configuration");
	}
}

void component_shutdown(struct worker *w)
{
	(void)w;
	compcfg_free(&comp_list);
}

unsigned component_disco_items(struct buf *out)
{
	unsigned n = 0;
	for (unsigned i = 0; comp_list != NULL && i < comp_list->n; i++) {
		buf_appendf(out, "<item jid='");
		xml_escape(out, comp_list->e[i].domain,
			   strlen(comp_list->e[i].domain), 1);
		buf_appendf(out, "'/>");
		n++;
	}
	return n;
}

void component_accepted(struct conn *c)
{
	c->comp = calloc(1, sizeof(*c->comp));
	if (c->comp == NULL) {
		log_warn("c%u %s: out of memory for a component", c->id,
			 c->peer);
		conn_close(c);
		return;
	}
	c->deadline_ms = c->w->now_ms + (int64_t)c->w->cfg->component_timeout;
}

static int comp_name_is(const char *name, const char *ns, const char *local)
{
	size_t n = strlen(ns);
	return strncmp(name, ns, n) == 0 && name[n] == XML_NS_SEP &&
	       strcmp(name + n + 1, local) == 0;
}

void component_stream_open(struct conn *c, const char *name,
			   const char **atts)
{
	const char *to = NULL;
	for (unsigned i = 0; atts[i] != NULL; i += 2)
		if (strcmp(atts[i], "to") == 0)
			to = atts[i + 1];
	if (c->comp == NULL) {
		stream_error(c, "resource-constraint", NULL);
		return;
	}
	if (!comp_name_is(name, NS_STREAMS, "stream")) {
		stream_error(c, "invalid-namespace", "the stream element is "
			     "not <stream/> in the " NS_STREAMS " namespace");
		return;
	}
	if (c->stream_ns != 3) {
		stream_error(c, "invalid-namespace", "the default namespace "
			     "is not " NS_COMPONENT);
		return;
	}
	/* The domain as the secrets file has it (prepared). */
	struct arena a;
	const char *dom = NULL, *error;
	arena_init(&a, 1024);
	if (to != NULL && jid_prep_part(&a, JID_PART_DOMAIN, to, strlen(to),
					&dom, &error) < 0)
		dom = NULL;
	const struct compcfg_entry *e = dom != NULL ?
					compcfg_exact(comp_list, dom) : NULL;
	if (e == NULL) {
		log_info("c%u %s: component stream for '%s': not a configured "
			 "component", c->id, c->peer, to != NULL ? to : "");
		arena_free(&a);
		stream_error(c, "host-unknown", NULL);
		return;
	}
	snprintf(c->comp->domain, sizeof(c->comp->domain), "%s", e->domain);
	snprintf(c->stream_to, sizeof(c->stream_to), "%s", e->domain);
	arena_free(&a);

	unsigned char raw[COMP_ID_BYTES];
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2hex(c->comp->id, sizeof(c->comp->id), raw, sizeof(raw));
	struct buf out;
	buf_init(&out, 0);
	/* XEP-0114 section 3, example 2 (no version: no features). */
	buf_appendf(&out, "<?xml version='1.0'?><stream:stream xmlns:stream='"
		    NS_STREAMS "' xmlns='" NS_COMPONENT "' from='");
	xml_escape(&out, c->comp->domain, strlen(c->comp->domain), 1);
	buf_appendf(&out, "' id='%s'>", c->comp->id);
	conn_send(c, buf_head(&out), buf_used(&out));
	buf_free(&out);
	c->header_sent = 1;
	c->state = CONN_STATE_OPEN;
}

int component_top_level_known(const struct conn *c, const char *name,
			      size_t nslen)
{
	(void)c;
	if (nslen != strlen(NS_COMPONENT) ||
	    memcmp(name, NS_COMPONENT, nslen) != 0)
		return 0;
	const char *local = name + nslen + 1;
	return strcmp(local, "handshake") == 0 ||
	       strcmp(local, "message") == 0 ||
	       strcmp(local, "presence") == 0 || strcmp(local, "iq") == 0;
}

static void component_handshake(struct conn *c, struct xml_node *n)
{
	struct comp_conn *cc = c->comp;
	const struct compcfg_entry *e = compcfg_exact(comp_list, cc->domain);
	char *text = xml_text(c->arena, n);
	if (e == NULL || text == NULL ||
	    !compcfg_handshake_ok(cc->id, e->secret, text, strlen(text))) {
		log_info("c%u %s: component %s: wrong handshake", c->id,
			 c->peer, cc->domain);
		stream_error(c, "not-authorized", NULL);
		return;
	}
	struct session_info info;
	enum session_refusal why = SESSION_REFUSED_NONE;
	const char *error = NULL;
	memset(&info, 0, sizeof(info));
	info.slot = (uint16_t)c->w->slot;
	info.conn_id = c->id;
	info.gen = c->gen;
	info.since = (int64_t)time(NULL);
	info.active = info.since;
	snprintf(info.jid, sizeof(info.jid), "%s/" COMP_KEY_RESOURCE "-%u-%u-%u",
		 cc->domain, c->w->slot, c->id, c->gen);
	if (shm_session_put_limited(c->w->shm->sessions, &info, 1, NULL, &why,
				    &error) < 0) {
		if (why == SESSION_REFUSED_ACCOUNT) {
			log_info("c%u %s: component %s is already connected",
				 c->id, c->peer, cc->domain);
			stream_error(c, "conflict", NULL);
		} else {
			log_warn("c%u %s: component %s not registered: %s",
				 c->id, c->peer, cc->domain,
				 error != NULL ? error : "refused");
			stream_error(c, "resource-constraint", NULL);
		}
		return;
	}
	snprintf(cc->key, sizeof(cc->key), "%s", info.jid);
	cc->registered = 1;
	cc->authed = 1;
	c->deadline_ms = 0;
	conn_metrics_move(c, c->m_tls, 1);
	conn_send(c, "<handshake/>", 12);
	log_info("c%u %s: component %s connected", c->id, c->peer, cc->domain);
}

/* Whether domain is the component's or, with subdomains, under it. */
static int comp_domain_ok(const struct conn *c, const char *domain)
{
	const char *own = c->comp->domain;
	size_t dl = strlen(domain), ol = strlen(own);
	if (strcmp(domain, own) == 0)
		return 1;
	const struct compcfg_entry *e = compcfg_exact(comp_list, own);
	return e != NULL && e->subdomains && dl > ol + 1 &&
	       domain[dl - ol - 1] == '.' && strcmp(domain + dl - ol, own) == 0;
}

/* Elements in jabber:component:accept are jabber:client ones inside the
 * server (a stanza's namespace depends on the stream it travels). */
static void comp_to_client_ns(struct xml_node *n)
{
	for (; n != NULL; n = n->next) {
		if (n->name == NULL)
			continue;
		if (strcmp(n->ns, NS_COMPONENT) == 0)
			n->ns = NS_CLIENT;
		comp_to_client_ns(n->children);
	}
}

static void comp_bounce(struct worker *w, const struct xml_node *st,
			const char *etype, const char *cond);

static void component_stanza(struct conn *c, struct xml_node *n)
{
	struct jid from;
	const char *error, *full;
	const char *f = xml_attr(n, "from"), *t = xml_attr(n, "to");
	comp_to_client_ns(n);
	if (f == NULL || jid_parse(c->arena, f, &from, &error) < 0 ||
	    !comp_domain_ok(c, from.domain)) {
		log_info("c%u %s: component %s: stanza from '%s'", c->id,
			 c->peer, c->comp->domain, f != NULL ? f : "");
		stream_error(c, "invalid-from", NULL);
		return;
	}
	if (t == NULL) {
		stream_error(c, "improper-addressing", "no 'to'");
		return;
	}
	if ((full = jid_full(c->arena, &from)) == NULL ||
	    xml_set_attr(c->arena, n, "from", full) < 0) {
		stream_error(c, "resource-constraint", NULL);
		return;
	}
	if (!stanza_addressable_valid(n)) {
		/* RFC 6120 8.2.3: to the component, never onwards (the
		 * core takes an IQ's type for granted) */
		log_info("c%u %s: malformed <%s/> from component %s", c->id,
			 c->peer, n->name, c->comp->domain);
		comp_bounce(c->w, n, "modify", "bad-request");
		return;
	}
	/* RFC 6121: probes and subscription stanzas to a local user take
	 * the inbound paths in route_stanza (presence_inbound) */
	route_stanza(c->w, c->arena, n);
}

void component_dispatch(struct conn *c, struct xml_node *n)
{
	if (!comp_is(c)) {
		stream_error(c, "internal-server-error", NULL);
		return;
	}
	int handshake = strcmp(n->name, "handshake") == 0;
	if (!c->comp->authed) {
		if (handshake)
			component_handshake(c, n);
		else
			stream_error(c, "not-authorized", "handshake first");
		return;
	}
	if (handshake) {
		stream_error(c, "policy-violation", "already authenticated");
		return;
	}
	component_stanza(c, n);
}

void component_conn_gone(struct conn *c)
{
	if (c->comp == NULL || !c->comp->registered)
		return;
	shm_session_del(c->w->shm->sessions, c->comp->key, (uint16_t)c->w->slot,
			c->id, c->gen);
	c->comp->registered = 0;
	log_info("c%u %s: component %s disconnected", c->id, c->peer,
		 c->comp->domain);
}

void component_conn_free(struct conn *c)
{
	free(c->comp);
	c->comp = NULL;
}

/* Send the error reply for st (service-unavailable, ...) to its sender. */
static void comp_bounce(struct worker *w, const struct xml_node *st,
			const char *etype, const char *cond)
{
	struct arena a;
	struct buf out;
	const char *error;
	if (!stanza_may_bounce(st) || xml_attr(st, "from") == NULL)
		return;
	arena_init(&a, 2048);
	buf_init(&out, 0);
	stanza_error_xml(&out, st, NULL, etype, cond, NULL);
	buf_append(&out, "", 1);
	struct xml_node *e = stanza_parse(&a, buf_head(&out),
					  buf_used(&out) - 1, &error);
	buf_free(&out);
	if (e == NULL)
		log_error("bounce of <%s/> failed: %s", cond, error);
	else
		route_stanza(w, &a, e);
	arena_free(&a);
}

static void comp_bounce_text(struct worker *w, const char *text, size_t len,
			     const char *etype, const char *cond)
{
	struct arena a;
	const char *error;
	arena_init(&a, 2048);
	struct xml_node *st = stanza_parse(&a, text, len, &error);
	if (st == NULL)
		log_error("stanza for a component unreadable: %s", error);
	else
		comp_bounce(w, st, etype, cond);
	arena_free(&a);
}

/* The connection on this worker to write to, or NULL. */
static struct conn *comp_local(struct worker *w, uint32_t id, uint32_t gen)
{
	struct conn *c = conn_lookup(w, id, gen);
	if (c == NULL || !comp_is(c) || !c->comp->authed || c->want_close ||
	    c->closed)
		return NULL;
	return c;
}

int component_route(struct worker *w, struct xml_node *st,
		    const char *to_domain)
{
	const struct compcfg_entry *e = compcfg_find(comp_list, to_domain);
	struct session_info s;
	const char *error;
	if (e == NULL)
		return 0;
	int n = shm_session_list(w->shm->sessions, e->domain, &s, 1);
	if (n <= 0) {
		log_debug("<%s/> to %s: component %s not connected", st->name,
			  to_domain, e->domain);
		comp_bounce(w, st, "cancel", "service-unavailable");
		return 1;
	}
	struct buf text;
	buf_init(&text, xml_out_cap(w->cfg->max_stanza_size));
	if (route_serialize_out(w, &text, st) < 0) {
		buf_free(&text);
		comp_bounce(w, st, "wait", "resource-constraint");
		return 1;
	}
	if (s.slot == w->slot) {
		struct conn *c = comp_local(w, s.conn_id, s.gen);
		if (c != NULL)
			conn_send(c, buf_head(&text), buf_used(&text));
		else
			comp_bounce(w, st, "cancel", "service-unavailable");
	} else if (worker_send_session(w, &s, IPC_FRAME_COMPONENT,
				       buf_head(&text), buf_used(&text),
				       &error) < 0) {
		int full = strcmp(error, QUEUE_ERR_FULL) == 0;
		log_info("to w%u: %s: <%s/> for component %s refused", s.slot,
			 error, st->name, e->domain);
		comp_bounce(w, st, full ? "wait" : "cancel",
			    full ? "resource-constraint" :
				   "service-unavailable");
	}
	buf_free(&text);
	return 1;
}

int component_frame(struct worker *w, const struct ipc_frame_header *hdr,
		    const void *payload, size_t len)
{
	if (hdr->type != IPC_FRAME_COMPONENT)
		return 0;
	struct conn *c = comp_local(w, hdr->conn_id, hdr->gen);
	if (c != NULL)
		conn_send(c, payload, len);
	else
		comp_bounce_text(w, payload, len, "cancel",
				 "service-unavailable");
	return 1;
}

int component_serves(const char *domain)
{
	char low[COMPCFG_MAX_DOMAIN + 1];
	size_t n = strlen(domain);
	if (comp_list == NULL || n == 0 || n >= sizeof(low))
		return 0;
	for (size_t i = 0; i <= n; i++)
		low[i] = (char)tolower((unsigned char)domain[i]);
	return compcfg_find(comp_list, low) != NULL;
}

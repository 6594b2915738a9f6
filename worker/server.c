/*
 * server.c - stanzas the server answers itself: to the bare domain,
 * XEP-0030 disco#info/#items, XEP-0199 ping, XEP-0092 software version,
 * XEP-0202 entity time, with the extensions' disco features (ext.h);
 * IQs to an account's bare JID go to the extension that declared their
 * payload, except disco#info by the account itself (identity and the
 * extensions' account features); everything else that expects an answer gets
 * <service-unavailable/> (RFC 6120 section 10.5.4 / 8.3.3.19).  Replies
 * are routed like any stanza, so they reach the sender on any worker.
 * Failure policy: a reply that cannot be built is dropped and logged.
 */
#include "server.h"
#include "component.h"
#include "worker.h"
#include "log.h"
#include "stanza.h"
#include "ext.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"
#define NS_PING "urn:xmpp:ping"
#define NS_VERSION "jabber:iq:version"
#define NS_TIME "urn:xmpp:time"

/* Features of the server itself, for disco#info; the extensions'
 * follow (ext.h). */
static const char *const server_features[] = {
	NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING, NS_VERSION, NS_TIME,
};

static void server_send(struct worker *w, struct arena *a, struct buf *out)
{
	const char *error;
	buf_append(out, "", 1);
	struct xml_node *n = stanza_parse(a, buf_head(out), buf_used(out) - 1,
				       &error);
	if (n == NULL)
		log_error("server reply unreadable: %s", error);
	else
		route_stanza(w, a, n);
	buf_free(out);
}

/* "<iq from=.. id=.. to=.. type='result'" (open tag, not closed). */
static void server_result_head(struct buf *out, const struct xml_node *st)
{
	const char *from = xml_attr(st, "to");
	const char *to = xml_attr(st, "from");
	buf_appendf(out, "<iq from='");
	xml_escape(out, from, strlen(from), 1);
	buf_appendf(out, "'");
	stanza_append_id(out, st);
	buf_appendf(out, " to='");
	xml_escape(out, to, strlen(to), 1);
	buf_appendf(out, "' type='result'");
}

static void server_error(struct worker *w, struct arena *a,
			 struct xml_node *st, const char *type,
			 const char *cond)
{
	struct buf out;
	if (!stanza_may_bounce(st) || xml_attr(st, "from") == NULL)
		return;
	buf_init(&out, 0);
	stanza_error_xml(&out, st, NULL, type, cond, NULL);
	server_send(w, a, &out);
}

static void server_disco_info(struct buf *out)
{
	buf_appendf(out, "><query xmlns='" NS_DISCO_INFO "'><identity "
		    "category='server' type='im' name='xmppd'/>");
	ext_disco_identities(out);
	for (size_t i = 0; i < sizeof(server_features) /
	     sizeof(server_features[0]); i++)
		buf_appendf(out, "<feature var='%s'/>", server_features[i]);
	ext_disco_features(out);
	buf_appendf(out, "</query></iq>");
}

static void server_time(struct buf *out)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	buf_appendf(out, "><time xmlns='" NS_TIME "'><tzo>+00:00</tzo><utc>"
		    "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ</utc></time></iq>",
		    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		    tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

/* An IQ get to the domain host: 1 answered into out, 0 unknown. */
static int server_iq_get(const struct worker *w, const char *host,
			 const struct xml_node *q, struct buf *out)
{
	if (xml_is(q, NS_DISCO_INFO, "query") && xml_attr(q, "node") == NULL)
		server_disco_info(out);
	else if (xml_is(q, NS_DISCO_ITEMS, "query") &&
		 xml_attr(q, "node") == NULL)
	{
		/* XEP-0114 components and the services of extensions
		 * (XEP-0045 rooms) are items of the host (as Prosody and
		 * ejabberd list theirs) */
		buf_appendf(out, "><query xmlns='" NS_DISCO_ITEMS "'");
		size_t open = out->len;
		buf_appendf(out, ">");
		if (component_disco_items(out) +
		    ext_domain_items(w, host, out) == 0) {
			out->len = open;
			buf_appendf(out, "/></iq>");
		} else {
			buf_appendf(out, "</query></iq>");
		}
	}
	else if (xml_is(q, NS_PING, "ping"))
		buf_appendf(out, "/>");
	else if (xml_is(q, NS_VERSION, "query"))
		buf_appendf(out, "><query xmlns='" NS_VERSION "'><name>xmppd"
			    "</name><version>%s</version></query></iq>",
			    PACKAGE_VERSION);
	else if (xml_is(q, NS_TIME, "time"))
		server_time(out);
	else
		return 0;
	return 1;
}

static void server_iq(struct worker *w, struct arena *a, struct xml_node *st)
{
	const char *type = xml_attr(st, "type");
	struct xml_node *q = xml_first_element(st);
	struct buf out;
	if (type == NULL ||
	    (strcmp(type, "get") != 0 && strcmp(type, "set") != 0))
		return;         /* results (our pings' answers) and errors */
	buf_init(&out, 0);
	server_result_head(&out, st);
	if (strcmp(type, "get") == 0 && q != NULL &&
	    server_iq_get(w, xml_attr(st, "to"), q, &out)) {
		server_send(w, a, &out);
		return;
	}
	buf_free(&out);
	if (q != NULL && (xml_is(q, NS_DISCO_INFO, "query") ||
			  xml_is(q, NS_DISCO_ITEMS, "query")))
		server_error(w, a, st, "cancel", "item-not-found");
	else
		server_error(w, a, st, "cancel", "service-unavailable");
}

void server_stanza(struct worker *w, struct arena *a, struct xml_node *st,
		   int to_resource)
{
	if (strcmp(st->name, "presence") == 0)
		return;         /* presence to the server: nothing to do */
	if (to_resource || strcmp(st->name, "message") == 0) {
		server_error(w, a, st, "cancel", "service-unavailable");
		return;
	}
	server_iq(w, a, st);
}

void server_account_info(const struct config *cfg, struct buf *out)
{
	buf_appendf(out, "<query xmlns='" NS_DISCO_INFO "'><identity "
		    "category='account' type='registered'/>");
	ext_account_identities(out);
	ext_account_features(cfg, out);
	buf_appendf(out, "</query>");
}

/* Whether st comes from a resource of the account bare. */
static int server_own_account(const struct xml_node *st, const char *bare)
{
	const char *from = xml_attr(st, "from");
	size_t n = strlen(bare);
	return from != NULL && strncmp(from, bare, n) == 0 &&
	       (from[n] == '\0' || from[n] == '/');
}

void server_account_iq(struct worker *w, struct arena *a, struct xml_node *st,
		       const char *bare)
{
	const char *type = xml_attr(st, "type");
	struct xml_node *q = xml_first_element(st);
	if (type != NULL && (strcmp(type, "result") == 0 ||
			     strcmp(type, "error") == 0)) {
		/* answers to what the server asked for the account
		 * (XEP-0115 disco#info): the extensions' */
		ext_iq_result_to_account(w, st, bare);
		return;
	}
	if (type == NULL || (strcmp(type, "get") != 0 &&
			     strcmp(type, "set") != 0))
		return;
	if (q != NULL && strcmp(type, "get") == 0 &&
	    xml_is(q, NS_DISCO_INFO, "query") && xml_attr(q, "node") == NULL &&
	    server_own_account(st, bare)) {
		/* XEP-0030 to the account's own bare JID, by the account:
		 * what the server does for it (XEP-0313 section 7) */
		struct buf out;
		buf_init(&out, 0);
		server_result_head(&out, st);
		buf_appendf(&out, ">");
		server_account_info(w->cfg, &out);
		buf_appendf(&out, "</iq>");
		server_send(w, a, &out);
		return;
	}
	ext_iq_fn *fn = q != NULL ? ext_iq_handler(q, type) : NULL;
	if (fn != NULL) {
		fn(w, st, bare);
		return;
	}
	server_error(w, a, st, "cancel", "service-unavailable");
}

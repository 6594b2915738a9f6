/*
 * csi.c - XEP-0352 Client State Indication (urn:xmpp:csi:0).
 *
 * An authenticated stream is offered <csi xmlns='urn:xmpp:csi:0'/> and
 * may send the nonzas <inactive/> and <active/> at any time (no answer);
 * a stream begins active.  Other elements of the namespace end the
 * stream with <unsupported-stanza-type/>; either nonza before
 * authentication, with <not-authorized/>.
 *
 * While a session is inactive its stanza filters (ext.h, filter bit on
 * only then) sort what is about to be written to it:
 *   held   - presence without a type or of type unavailable: only the
 *            latest from each full JID is kept (an earlier one held from
 *            the same JID is dropped: merged);
 *          - a message with nothing a user has to see now: no <body/>,
 *            no <subject/>, only chat states (XEP-0085), receipts
 *            (XEP-0184), chat markers (XEP-0333), hints (XEP-0334),
 *            stanza ids (XEP-0359), <delay/>, <thread/>, PEP events,
 *            extended addresses (XEP-0033: a PEP event's replyto),
 *            and carbons (XEP-0280) of such messages; type error never.
 *   at once - everything else: IQs, messages with a body or with any
 *            payload not in that list, errors, subscription presence.
 *            What is held is written first, in order, then the stanza.
 * Everything held is written, in arrival order, when the client sends
 * <active/>, when it sends any other first-level element (a stanza, a
 * XEP-0198 <r/> or <a/>: its radio is on anyway; the flush comes before
 * the element is acted upon, so answers follow it, as XEP-0352 section
 * 5.1 wants), and when more than csi.max_held stanzas or more than half
 * of c2s.max_output_bytes would be held (0 holds nothing).  Writes that
 * do not pass the stanza filters (roster pushes, stored subscription
 * requests, errors answering the client's own stanzas) go at once and
 * do not flush.  When the session ends, what is held is handed to
 * conn_undelivered() like output it never read (messages go to another
 * resource or offline storage; presence is dropped); when XEP-0198
 * detaches a session (fd -1), or resumes it on another connection while
 * this one is still open, what is held goes to its journal at once, in
 * order (so the resumed stream, on any worker, gets it), and the
 * session holds nothing more.  /metrics counts
 * stanzas held and writes spared: a merged presence never written, and
 * a batch of n held stanzas written as one write (n - 1, or n when it
 * goes out ahead of a stanza that is written at once anyway).
 * In a cluster, a held chat or normal message that came from another
 * node keeps that frame held (worker/settle.h) until it is written or
 * routed elsewhere: this node killed with it queued, the sending node
 * routes it again (offline storage), rather than losing it.  Presence
 * is not held: handed back, it would be dropped anyway.
 * Failure policy: no memory to hold a stanza writes it at once.
 */
#include "worker.h"
#include "ext.h"
#include "log.h"
#include "metrics.h"
#include "stanza.h"

#include <stdlib.h>
#include <string.h>

#define NS_CSI "urn:xmpp:csi:0"

extern const struct ext csi_ext;

struct csi_held {
	char *text;             /* NULL: merged away */
	size_t len;
	char *from;             /* presence: its sender (merge key), else NULL */
	/* a frame from another node: its sender keeps it until this
	 * stanza is written or routed elsewhere (worker/settle.h) */
	struct settle_hold hold;
};

/* ---- what may wait ------------------------------------------------- */

static int csi_idle_ns(const struct xml_node *ch)
{
	static const char *const idle[] = {
		"http://jabber.org/protocol/chatstates",
		"urn:xmpp:receipts",
		"urn:xmpp:chat-markers:0",
		"urn:xmpp:hints",
		"urn:xmpp:sid:0",
		"urn:xmpp:delay",
		"http://jabber.org/protocol/pubsub#event",
		"http://jabber.org/protocol/address",   /* a PEP event's replyto */
	};
	if (xml_is(ch, NS_CLIENT, "thread"))
		return 1;
	for (size_t i = 0; i < sizeof(idle) / sizeof(idle[0]); i++)
		if (xml_is(ch, idle[i], NULL))
			return 1;
	return 0;
}

/* A message with nothing a user has to see now (see above). */
static int csi_idle_message(const struct xml_node *st, int depth)
{
	const char *type = xml_attr(st, "type");
	if (type != NULL && strcmp(type, "error") == 0)
		return 0;
	for (const struct xml_node *ch = xml_first_element(st); ch != NULL;
	     ch = xml_next_element(ch)) {
		if (csi_idle_ns(ch))
			continue;
		/* a carbon: judged by the message it forwards */
		if (depth == 0 && (xml_is(ch, "urn:xmpp:carbons:2", "sent") ||
				   xml_is(ch, "urn:xmpp:carbons:2",
					  "received"))) {
			const struct xml_node *f = xml_child(
				ch, "urn:xmpp:forward:0", "forwarded");
			const struct xml_node *m = f != NULL ?
				xml_child(f, NS_CLIENT, "message") : NULL;
			if (m != NULL && csi_idle_message(m, 1))
				continue;
		}
		return 0;
	}
	return 1;
}

/* 1: st may be held (*merge_r: its sender, for presence). */
static int csi_may_wait(const struct xml_node *st, const char **merge_r)
{
	const char *type = xml_attr(st, "type");
	*merge_r = NULL;
	if (strcmp(st->name, "presence") == 0) {
		if (type != NULL && strcmp(type, "unavailable") != 0)
			return 0;       /* subscriptions, errors */
		*merge_r = xml_attr(st, "from");
		return 1;
	}
	return strcmp(st->name, "message") == 0 && csi_idle_message(st, 0);
}

/* ---- holding and flushing --------------------------------------------- */

static void csi_entry_free(struct worker *w, struct csi_held *h)
{
	settle_release(&w->settle, &h->hold);
	free(h->text);
	free(h->from);
	h->text = h->from = NULL;
}

/* Write everything held, in order.  ahead: a stanza written at once
 * follows in the same write. */
static void csi_flush(struct conn *c, int ahead)
{
	unsigned n = c->csi_nheld, written = 0;
	struct csi_held *held = c->csi_held;
	if (n == 0)
		return;
	/* conn_send may end the stream (overflow): what it cannot write it
	 * reroutes; the list is detached first so nothing re-enters it */
	c->csi_held = NULL;
	c->csi_nheld = c->csi_held_cap = c->csi_live = 0;
	c->csi_bytes = 0;
	struct worker *w = c->w;
	for (unsigned i = 0; i < n; i++) {
		if (held[i].text != NULL) {
			/* under its frame: the output holds it on */
			struct settle_at was = settle_enter(&w->settle,
							    &held[i].hold);
			conn_send(c, held[i].text, held[i].len);
			settle_leave(&w->settle, was);
			written++;
		}
		csi_entry_free(w, &held[i]);
	}
	free(held);
	if (written > 0)
		METRIC_ADD(w->stats->csi_spared, ahead ? written
						       : written - 1);
}

/* Merge: an earlier presence from the same sender is dropped. */
static void csi_merge(struct conn *c, const char *from)
{
	for (unsigned i = 0; i < c->csi_nheld; i++) {
		struct csi_held *h = &c->csi_held[i];
		if (h->text != NULL && h->from != NULL &&
		    strcmp(h->from, from) == 0) {
			c->csi_bytes -= h->len;
			c->csi_live--;
			csi_entry_free(c->w, h);    /* superseded */
			METRIC_INC(c->w->stats->csi_spared);
			return;         /* at most one was held */
		}
	}
}

/* Whether another node's frame is worth holding while st waits here:
 * a message of type chat or normal, which, handed back by a dead node,
 * goes to another resource or offline storage.  Presence and headline
 * or groupchat messages to a full JID whose session is gone are
 * dropped (RFC 6121 8.5.3.2), so holding them would save nothing and
 * only keep the sender's frame, and the bridge's list of held frames,
 * longer (an inactive client can stay so for hours). */
static int csi_worth_holding(const struct xml_node *st)
{
	const char *type = xml_attr(st, "type");
	return strcmp(st->name, "message") == 0 &&
	       (type == NULL || strcmp(type, "chat") == 0 ||
		strcmp(type, "normal") == 0);
}

/* Hold text (st parsed from it); 0, or -1 when it must go at once. */
static int csi_hold(struct conn *c, const struct xml_node *st,
		    const char *text, size_t len)
{
	const char *from;
	unsigned max = c->w->cfg->csi_max_held;
	/* fd -1 on a bound session: XEP-0198 detached it; what comes goes
	 * to its journal, in order, and a resumed stream begins active */
	if (!csi_may_wait(st, &from) || max == 0 || c->fd < 0)
		return -1;
	if (from != NULL)
		csi_merge(c, from);
	if (c->csi_live + 1 > max ||
	    c->csi_bytes + len > c->w->cfg->c2s_max_output_bytes / 2)
		return -1;      /* over the bound: everything goes */
	if (c->csi_nheld == c->csi_held_cap) {
		/* compact what merging emptied before growing */
		unsigned k = 0;
		for (unsigned i = 0; i < c->csi_nheld; i++)
			if (c->csi_held[i].text != NULL)
				c->csi_held[k++] = c->csi_held[i];
		c->csi_nheld = k;
	}
	if (c->csi_nheld == c->csi_held_cap) {
		unsigned cap = c->csi_held_cap ? c->csi_held_cap * 2 : 8;
		struct csi_held *h = realloc(c->csi_held, cap * sizeof(*h));
		if (h == NULL)
			return -1;
		c->csi_held = h;
		c->csi_held_cap = cap;
	}
	struct csi_held *h = &c->csi_held[c->csi_nheld];
	h->text = malloc(len);
	h->from = from != NULL ? strdup(from) : NULL;
	h->hold = (struct settle_hold){ 0, 0 };
	if (h->text == NULL || (from != NULL && h->from == NULL)) {
		csi_entry_free(c->w, h);
		return -1;
	}
	memcpy(h->text, text, len);
	h->len = len;
	if (csi_worth_holding(st))
		settle_hold(&c->w->settle, &h->hold);
	c->csi_nheld++;
	c->csi_live++;
	c->csi_bytes += len;
	METRIC_INC(c->w->stats->csi_held);
	return 0;
}

/* ---- the stanza filters (ext.h; only while inactive) -------------------- */

static int csi_out_node(struct conn *c, const struct xml_node *st,
			struct arena *a)
{
	struct buf text;
	int held = -1;
	(void)a;
	buf_init(&text, xml_out_cap(c->w->cfg->max_stanza_size));
	const char *from;
	if (csi_may_wait(st, &from) &&
	    xml_serialize(&text, st, NS_CLIENT) == 0)
		held = csi_hold(c, st, buf_head(&text), buf_used(&text));
	buf_free(&text);
	if (held == 0)
		return 1;
	csi_flush(c, 1);
	return 0;
}

static int csi_out_text(struct conn *c, const char *text, size_t len)
{
	struct arena a;
	const char *error;
	arena_init(&a, 2048);
	struct xml_node *st = stanza_parse(&a, text, len, &error);
	int held = st != NULL ? csi_hold(c, st, text, len) : -1;
	arena_free(&a);
	if (held == 0)
		return 1;
	csi_flush(c, 1);
	return 0;
}

/* The client sent something: it is awake. */
static void csi_client_element(struct conn *c, const struct xml_node *n)
{
	if (!xml_is(n, NS_CSI, NULL))
		csi_flush(c, 0);
}

/* ---- the nonzas ------------------------------------------------------- */

static void csi_nonza(struct conn *c, struct xml_node *n)
{
	if (!c->authenticated) {
		stream_error(c, "not-authorized", NULL);
		return;
	}
	if (xml_is(n, NS_CSI, "inactive")) {
		c->csi_inactive = 1;
		ext_filter(c, &csi_ext, 1);
	} else if (xml_is(n, NS_CSI, "active")) {
		csi_flush(c, 0);
		c->csi_inactive = 0;
		ext_filter(c, &csi_ext, 0);
	} else {
		stream_error(c, "unsupported-stanza-type", NULL);
	}
}

static void csi_features(struct conn *c, struct buf *out)
{
	(void)c;
	buf_appendf(out, "<csi xmlns='" NS_CSI "'/>");
}

static void csi_clear(struct conn *c)
{
	for (unsigned i = 0; i < c->csi_nheld; i++)
		csi_entry_free(c->w, &c->csi_held[i]);
	free(c->csi_held);
	c->csi_held = NULL;
	c->csi_nheld = c->csi_held_cap = c->csi_live = 0;
	c->csi_bytes = 0;
}

/* The stream ended: what is held goes where unread output goes (while
 * the worker stops too: offline storage, which the worker waits for). */
static void csi_gone(struct conn *c)
{
	unsigned n = 0;
	for (unsigned i = 0; i < c->csi_nheld; i++) {
		struct csi_held *h = &c->csi_held[i];
		if (h->text == NULL)
			continue;
		conn_undelivered_held(c->w, c->id, c->gen, h->text, h->len,
				      &h->hold);
		n++;
	}
	if (n > 0)
		log_info("c%u %s: %u stanzas held while inactive: to be "
			 "routed elsewhere", c->id, c->peer, n);
	csi_clear(c);
}

/* XEP-0198 kept the session when its connection was lost, or resumes it
 * on another connection: what is held goes to the journal now, ahead of
 * whatever comes later (conn_send journals). */
static void csi_leaving(struct conn *c)
{
	csi_flush(c, 0);
	c->csi_inactive = 0;
	ext_filter(c, &csi_ext, 0);
}

/* ---- the extension (ext.h) ------------------------------------------- */

static const char *const csi_nonza_ns[] = { NS_CSI, NULL };
static const char *const csi_config[] = { "csi.max_held", NULL };

const struct ext csi_ext = {
	.name = "csi",
	.nonza_ns = csi_nonza_ns,
	.config_keys = csi_config,
	.stream_features = csi_features,
	.nonza = csi_nonza,
	.stanza_out_node = csi_out_node,
	.stanza_out_text = csi_out_text,
	.session_gone = csi_gone,
	.conn_free = csi_clear,
	.client_element = csi_client_element,
	.session_leaving = csi_leaving,
};

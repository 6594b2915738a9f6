/*
 * route.c - where a stanza goes (RFC 6120 sections 8 and 10, RFC 6121
 * section 8.5).  The server stamps 'from' with the sender's full JID; a
 * different 'from' ends the stream with <invalid-from/>.  'to' is parsed
 * and prepared (RFC 7622); then: our domain -> server.c; a full JID ->
 * the session table, then this worker's connection or another worker's
 * queue; a bare JID -> the RFC 6121 rules (highest non-negative priority,
 * all resources for headlines and presence); nothing online -> the
 * stanza error the RFC names.  A frame whose connection is gone is
 * routed again as if sent to the bare JID, so a vanishing session does
 * not eat messages; so are the stanzas a connection left unwritten when
 * it closed (route_undelivered, after the loop's flush), except a copy
 * of a message to the bare JID while another resource has its own, and
 * headlines (ignored for a resource not online, section 8.5.3.2.1).  A full outbox to another
 * worker bounces the stanza with resource-constraint (type wait).  A
 * message to an account loses XEP-0280 <private/> here (section 9).
 * A presence from another domain to an account's bare JID (not a
 * subscription stanza or probe) is also shown to the extensions after
 * delivery (presence_to_account: XEP-0163 remote recipients).
 * Failure policy: never silence where an error is due.
 */
#include "worker.h"
#include "ext.h"
#include "jid.h"
#include "log.h"
#include "server.h"
#include "session.h"
#include "sm.h"
#include "s2s.h"
#include "component.h"
#include "stanza.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Sessions of one account listed without an allocation; an account
 * with more (c2s.max_sessions_per_account above it, or 0) gets a heap
 * list of all of them (route_sessions). */
#define ROUTE_MAX_RESOURCES 64
#define NS_CARBONS_PRIVATE "urn:xmpp:carbons:2"
/* Lists in use at once: a send inside a listing loop may end a slow
 * reader's stream, whose unavailable presence lists sessions again
 * (nested).  Each level has its own list; deeper ones use the heap. */
#define ROUTE_POOL_DEPTH 4
static struct session_info route_pool[ROUTE_POOL_DEPTH][ROUTE_MAX_RESOURCES];
static unsigned route_pool_used;

/* Everything about one stanza on its way. */
struct route {
	struct worker *w;
	struct arena *arena;
	struct xml_node *st;
	const char *type;       /* NULL when absent */
	struct jid to;
	const char *to_full;
	const char *to_bare;
	struct buf text;        /* serialized once, lazily */
	int serialized;
	/* the session it came from, skipped when rerouting */
	int skip_valid;
	struct session_info skip;
	uint8_t skip_node;      /* a cluster node it could not reach: its
				   sessions are skipped too (0: none) */
	/* routed here for another node (IPC_FRAME_BARE_STANZA): never
	 * sent on to a sender seen from another node (route_to_peer) */
	int no_peer;
};

/* ---- senders on other nodes (issue 15) ---------------------------------
 * A session that logged in on another node a moment ago writes to one
 * of ours: an answer to it (an IQ result, a reply, a probe's answer)
 * must find its full JID in our table, or it is dropped (IQ result) or
 * stored offline.  Normally the bridges see to it: the sender's bridge
 * scans its table before it publishes frames whenever a local session
 * changed, and ours takes NATS messages in arrival order through one
 * delivery thread (cluster/bridge_route.c bridge_route_tick, commit
 * e18f051), so the directory event is in our table before the stanza
 * reaches a worker.  (tests/bb/test_cluster_im.py test_reply_to_a_fresh_
 * session passes with this ring switched off: checked in h-misc.)
 *
 * What this ring still covers is the time our copy of that node's
 * directory is not following its events: while a snapshot of it is
 * being received (cluster/directory.c holds its events until the
 * snapshot is whole, but its frames are delivered at once: when it
 * starts or restarts, after a partition or a freeze heals, after a
 * digest mismatch), and after an event lost on the way (a full bridge
 * ring, a NATS slow consumer) until the next heartbeats show the gap.
 * So the full JIDs that stanzas from other nodes came from are kept a
 * few seconds with the node and worker they came from; a full JID that
 * is in no table but here goes back there as IPC_FRAME_BARE_STANZA, and
 * that worker routes it by its own table (route_frame_text).  A fixed
 * ring: an old entry is overwritten, which only brings back the delay
 * it covered.  It can go once frames from a node wait while its
 * directory is being resynced. */
#define ROUTE_PEERS 64
#define ROUTE_PEER_MS 5000
#define ROUTE_PEER_JID 256      /* longer full JIDs are not kept */

struct route_peer {
	int64_t at_ms;
	uint16_t src_slot;      /* the bridge's slot */
	uint8_t node, node_slot;
	char jid[ROUTE_PEER_JID];
};

static struct route_peer route_peers[ROUTE_PEERS];
static unsigned route_peer_next;

/* The 'from' of the first tag of a serialized stanza (xml_serialize
 * writes attributes in single quotes), when it is a full JID without
 * entities that fits. */
static int route_peer_from(const char *text, size_t len, char *out)
{
	const char *end = memchr(text, '>', len), *p = text, *q;
	if (end == NULL)
		return -1;
	while ((p = memchr(p, ' ', (size_t)(end - p))) != NULL) {
		p++;
		if ((size_t)(end - p) > 6 && memcmp(p, "from='", 6) == 0)
			break;
	}
	if (p == NULL)
		return -1;
	p += 6;
	q = memchr(p, '\'', (size_t)(end - p));
	if (q == NULL || q - p >= ROUTE_PEER_JID || memchr(p, '&', (size_t)(q - p)) ||
	    memchr(p, '/', (size_t)(q - p)) == NULL)
		return -1;
	memcpy(out, p, (size_t)(q - p));
	out[q - p] = '\0';
	return 0;
}

/* A stanza frame from another node: note its sender. */
static void route_peer_note(const struct ipc_frame_header *hdr,
			    const char *text, size_t len)
{
	char jid[ROUTE_PEER_JID];
	struct route_peer *e = NULL;
	if (hdr->node == 0 || route_peer_from(text, len, jid) < 0)
		return;
	for (unsigned i = 0; i < ROUTE_PEERS && e == NULL; i++)
		if (route_peers[i].at_ms != 0 &&
		    strcmp(route_peers[i].jid, jid) == 0)
			e = &route_peers[i];
	if (e == NULL) {
		e = &route_peers[route_peer_next];
		route_peer_next = (route_peer_next + 1) % ROUTE_PEERS;
		memcpy(e->jid, jid, strlen(jid) + 1);
	}
	e->at_ms = time_now_ms();
	e->src_slot = hdr->src_slot;
	e->node = hdr->node;
	e->node_slot = hdr->node_slot;
}

static const struct route_peer *route_peer_find(const char *full)
{
	int64_t now = time_now_ms();
	for (unsigned i = 0; i < ROUTE_PEERS; i++) {
		const struct route_peer *e = &route_peers[i];
		if (e->at_ms != 0 && now - e->at_ms < ROUTE_PEER_MS &&
		    strcmp(e->jid, full) == 0)
			return e;
	}
	return NULL;
}

static const char *route_serialized(struct route *r, size_t *len_r)
{
	if (!r->serialized) {
		/* What the builder accepted fits (xml.h, XML_OUT_SLACK). */
		buf_init(&r->text, xml_out_cap(r->w->cfg->max_stanza_size));
		size_t n;
		const char *t = strcmp(r->st->name, "message") == 0 ?
				ext_message_text(r->st, &n) : NULL;
		if (t != NULL ? buf_append(&r->text, t, n) < 0 :
		    xml_serialize(&r->text, r->st, NS_CLIENT) < 0)
			return NULL;
		r->serialized = 1;
	}
	*len_r = buf_used(&r->text);
	return buf_head(&r->text);
}

int worker_send_node(struct worker *w, unsigned slot, uint8_t node,
		     uint8_t rslot, uint8_t type, uint32_t conn_id,
		     uint32_t gen, const void *data, size_t len,
		     const char **error_r)
{
	/* another node's frame handed to another worker of ours: lent,
	 * so that it stays held until that worker is done with it */
	uint32_t lend = node == 0 && slot != w->slot && slot < w->nworkers ?
			settle_lend(&w->settle, (uint16_t)slot, w->now_ms) : 0;
	int r = queue_send_token(w->q, slot, node, rslot, type, conn_id, gen,
				 lend, data, len, error_r);
	if (r < 0 && lend != 0)
		settle_lend_undo(&w->settle, lend, NULL);
	return r;
}

int worker_send_session(struct worker *w, const struct session_info *s,
			uint8_t type, const void *data, size_t len,
			const char **error_r)
{
	/* node 0, rslot 0 for a local session: queue_send's header */
	return worker_send_node(w, s->slot, s->node, s->rslot, type,
				s->conn_id, s->gen, data, len, error_r);
}

int worker_send_reply(struct worker *w, const struct ipc_frame_header *hdr,
		      uint8_t type, uint32_t conn_id, uint32_t gen,
		      const void *data, size_t len, const char **error_r)
{
	return queue_send_node(w->q, hdr->src_slot, hdr->node, hdr->node_slot,
			       type, conn_id, gen, data, len, error_r);
}

/* A local session that is gone may have moved (XEP-0198 resumption):
 * 1 when an extension forwarded the stanza to where it is now. */
static int route_moved(struct worker *w, const struct session_info *s,
		       int type, const char *data, size_t len)
{
	struct ipc_frame_header hdr;
	if (ext_hooks.n_conn_gone == 0)
		return 0;
	memset(&hdr, 0, sizeof(hdr));
	hdr.type = (uint8_t)type;
	hdr.src_slot = (uint16_t)w->slot;
	hdr.conn_id = s->conn_id;
	hdr.gen = s->gen;
	return ext_conn_gone(w, &hdr, data, len);
}

/* route_to_session: the destination worker's outbox is full. */
#define ROUTE_FULL (-2)

/* Deliver to one session, local or on another worker.  0, -1 (gone),
 * or ROUTE_FULL (queue.outbox_bytes or _frames reached: the stanza is
 * to be bounced with resource-constraint, not stored). */
static int route_to_session(struct route *r, const struct session_info *s)
{
	size_t len;
	const char *data = route_serialized(r, &len);
	const char *error;
	if (data == NULL)
		return -1;
	if (s->slot == r->w->slot) {
		struct conn *c = conn_lookup(r->w, s->conn_id, s->gen);
		if (c == NULL || !c->bound)
			return route_moved(r->w, s, IPC_FRAME_STANZA, data,
					   len) ? 0 : -1;
		if (ext_stanza_out_node(c, r->st, r->arena))
			return 0;
		conn_send(c, data, len);
	} else if (worker_send_session(r->w, s, IPC_FRAME_STANZA, data, len,
				       &error) < 0) {
		if (strcmp(error, QUEUE_ERR_FULL) == 0) {
			log_info("to w%u: %s (queue.outbox_bytes): <%s/> for "
				 "%s refused", s->slot, error, r->st->name,
				 s->jid);
			return ROUTE_FULL;
		}
		log_warn("to w%u: %s", s->slot, error);
		return -1;
	}
	return 0;
}

/* r's full JID is in no table here: 1 when it is a sender from another
 * node seen a moment ago and the stanza went back to its node. */
static int route_to_peer(struct route *r)
{
	const struct route_peer *e;
	const char *data, *error;
	size_t len;
	if (r->no_peer || r->skip_valid || r->to_full == NULL ||
	    (e = route_peer_find(r->to_full)) == NULL ||
	    (data = route_serialized(r, &len)) == NULL)
		return 0;
	if (queue_send_node(r->w->q, e->src_slot, e->node, e->node_slot,
			    IPC_FRAME_BARE_STANZA, 0, 0, data, len,
			    &error) < 0) {
		log_info("<%s/> for %s back to node %u: %s", r->st->name,
			 r->to_full, e->node, error);
		return 0;
	}
	return 1;
}

struct session_info *route_sessions(struct worker *w, const char *bare,
				    int *n_r, struct session_info **heap_r)
{
	struct session_info *out = NULL;
	int cap = 0;
	if (route_pool_used < ROUTE_POOL_DEPTH) {
		out = route_pool[route_pool_used];
		cap = ROUTE_MAX_RESOURCES;
	}
	route_pool_used++;
	int n = shm_session_list(w->shm->sessions, bare, out, (unsigned)cap);
	*heap_r = NULL;
	for (int tries = 0; n > cap && tries < 3; tries++) {
		struct session_info *more = malloc((size_t)n * sizeof(*more));
		if (more == NULL)
			break;
		free(*heap_r);
		*heap_r = out = more;
		cap = n;
		n = shm_session_list(w->shm->sessions, bare, out, (unsigned)cap);
	}
	if (n > cap) {
		log_warn("%s: %d sessions, only %d reached", bare, n, cap);
		n = cap;
	}
	*n_r = n < 0 ? 0 : n;
	return out;
}

void route_sessions_done(struct session_info *heap)
{
	route_pool_used--;
	free(heap);
}

/* Node 0 in `on`: any node. */
static void route_to_resources_of(struct worker *w, const char *bare,
				  const char *text, size_t len, int frame_type,
				  int only_available, const char *skip_full,
				  uint8_t on)
{
	struct session_info *heap;
	const char *error;
	int n;
	struct session_info *res = route_sessions(w, bare, &n, &heap);
	for (int i = 0; i < n; i++) {
		const struct session_info *s = &res[i];
		if ((only_available && !s->available) ||
		    (skip_full != NULL && strcmp(s->jid, skip_full) == 0) ||
		    (on != 0 && s->node != on))
			continue;
		if (s->slot != w->slot) {
			if (worker_send_session(w, s, (uint8_t)frame_type,
						text, len, &error) < 0)
				log_warn("to w%u: %s", s->slot, error);
			continue;
		}
		struct conn *c = conn_lookup(w, s->conn_id, s->gen);
		if (c == NULL || !c->bound) {
			route_moved(w, s, frame_type, text, len);
			continue;
		}
		if (frame_type != IPC_FRAME_STANZA &&
		    ext_frame(c, frame_type, text, len))
			continue;
		if (!ext_stanza_out_text(c, text, len))
			conn_send(c, text, len);
	}
	route_sessions_done(heap);
}

void route_to_resources(struct worker *w, const char *bare, const char *text,
			size_t len, int frame_type, int only_available,
			const char *skip_full)
{
	route_to_resources_of(w, bare, text, len, frame_type, only_available,
			      skip_full, 0);
}

void route_to_resources_on(struct worker *w, const char *bare,
			   const char *text, size_t len, uint8_t node)
{
	route_to_resources_of(w, bare, text, len, IPC_FRAME_STANZA, 1, NULL,
			      node);
}

/* Send the error reply for r's stanza back towards its sender. */
static void route_bounce(struct route *r, const char *etype,
			 const char *cond)
{
	struct buf out;
	struct arena *a = r->arena;
	const char *error;
	if (!stanza_may_bounce(r->st) || xml_attr(r->st, "from") == NULL)
		return;
	buf_init(&out, 0);
	stanza_error_xml(&out, r->st, NULL, etype, cond, NULL);
	buf_append(&out, "", 1);
	struct xml_node *e = stanza_parse(a, buf_head(&out), buf_used(&out) - 1,
				       &error);
	buf_free(&out);
	if (e == NULL) {
		log_error("bounce of <%s/> failed: %s", cond, error);
		return;
	}
	route_stanza(r->w, a, e);
}

static int route_is(const struct route *r, const char *type)
{
	return r->type != NULL && strcmp(r->type, type) == 0;
}

static int route_skipped(const struct route *r, const struct session_info *s)
{
	return (r->skip_valid && session_same(s, &r->skip)) ||
	       (r->skip_node != 0 && s->node == r->skip_node);
}

/* The available resources of the bare JID (route_sessions: *n_r of them,
 * *heap_r to free). */
static struct session_info *route_resources(struct route *r, int *n_r,
					    struct session_info **heap_r)
{
	int n, kept = 0;
	struct session_info *out = route_sessions(r->w, r->to_bare, &n,
						  heap_r);
	for (int i = 0; i < n; i++)
		if (out[i].available && !route_skipped(r, &out[i]))
			out[kept++] = out[i];
	*n_r = kept;
	return out;
}

/* The message reached got[0..n): the extensions that asked for one of
 * the flags of those sessions hear of it (XEP-0280 received copies),
 * once: not for a copy rerouted after its connection closed. */
static void route_delivered(struct route *r, const struct session_info *got,
			    int n, uint8_t flags)
{
	if ((flags & ext_hooks.delivered_flags) && n > 0 && !r->skip_valid)
		ext_message_delivered(r->w, r->st, r->to_bare, got, n);
}

/* RFC 6121 section 8.5.2.1.1: chat and normal go to the available
 * resources of highest non-negative priority; headlines to all with
 * non-negative priority.  Returns how many got it; *full_r is set when
 * a resource was left out because its worker's outbox is full. */
static int route_message_bare(struct route *r, int *full_r)
{
	struct session_info *heap;
	int n, best = -1, sent = 0;
	uint8_t flags = 0;
	struct session_info *res = route_resources(r, &n, &heap);
	int headline = route_is(r, "headline");
	for (int i = 0; i < n; i++)
		if (res[i].priority > best)
			best = res[i].priority;
	for (int i = 0; i < n && best >= 0; i++) {
		if (res[i].priority < 0 || (!headline && res[i].priority != best))
			continue;
		int rc = route_to_session(r, &res[i]);
		if (rc == 0) {
			/* those that got it first, for route_delivered */
			if (i != sent) {
				struct session_info t = res[sent];
				res[sent] = res[i];
				res[i] = t;
			}
			flags |= res[sent++].flags;
		} else if (rc == ROUTE_FULL) {
			*full_r = 1;
		}
	}
	route_delivered(r, res, sent, flags);
	route_sessions_done(heap);
	return sent;
}

/* RFC 6120 section 8.3.3.18: the recipient is online but its worker
 * has taken all that it may hold from us.  Not stored offline: the
 * recipient is available, and the sender can try again. */
static void route_full(struct route *r)
{
	route_bounce(r, "wait", "resource-constraint");
}

/* XEP-0280 section 9: the receiving server takes <private/> off a
 * message before delivering it to the account, whichever extensions are
 * built in (before message_to_account: the archive keeps it without),
 * and notes it in w->private_msg: carbons.c makes no received copies of
 * it.  Only the first letter of a child's name is read unless it is a
 * 'p'. */
static void route_strip_private(struct route *r)
{
	struct xml_node *st = r->st, *prev = NULL, *n = st->children;
	r->w->private_msg = NULL;
	while (n != NULL) {
		struct xml_node *next = n->next;
		if (n->name != NULL && n->name[0] == 'p' &&
		    xml_is(n, NS_CARBONS_PRIVATE, "private")) {
			xml_unlink_child(st, prev, n);
			r->w->private_msg = st;
		} else {
			prev = n;
		}
		n = next;
	}
}

static void route_message(struct route *r, int to_full)
{
	struct session_info s;
	int full = 0;
	/* once per message (a rerouted copy already went through it) */
	if (!r->skip_valid) {
		route_strip_private(r);
		ext_message_to_account(r->w, r->st, r->to_bare);
	}
	if (to_full && shm_session_get(r->w->shm->sessions, r->to_full, &s) == 1 &&
	    !route_skipped(r, &s)) {
		int rc = route_to_session(r, &s);
		if (rc == 0) {
			route_delivered(r, &s, 1, s.flags);
			return;
		}
		if (rc == ROUTE_FULL) {
			route_full(r);
			return;
		}
	} else if (to_full && route_to_peer(r)) {
		return;
	}
	/* Section 8.5.3.2.1: a full JID not online is treated as bare,
	 * except groupchat (error), headline (silently ignored: it was
	 * for that resource; as the bare JID's it would reach all the
	 * others, a XEP-0163 notification once per resource) and the
	 * bare JID's own rules. */
	if (route_is(r, "groupchat") || route_is(r, "error")) {
		route_bounce(r, "cancel", "service-unavailable");
		return;
	}
	if (to_full && route_is(r, "headline")) {
		log_debug("headline to %s: no such resource, ignored",
			  r->to_full);
		return;
	}
	/* A copy taken back while the worker stops goes to offline
	 * storage: the other resources are being disconnected too (their
	 * workers may be gone before a frame reaches them). */
	if (r->skip_valid && r->w->stopping) {
		if (route_is(r, "headline"))
			return;
	} else if (route_message_bare(r, &full) > 0 ||
		   route_is(r, "headline")) {
		return;
	}
	if (full) {
		route_full(r);
		return;
	}
	/* Section 8.5.2.2.1 / XEP-0160: normal and chat may be stored (an
	 * extension keeps them); else service-unavailable. */
	if (!ext_message_undelivered(r->w, r->st, r->to_bare))
		route_bounce(r, "cancel", "service-unavailable");
}

/* Whether r's 'from' is on a domain we do not host. */
static int route_from_remote(const struct route *r)
{
	struct jid from;
	const char *error, *f = xml_attr(r->st, "from");
	return f != NULL && jid_parse(r->arena, f, &from, &error) == 0 &&
	       !stream_hosted(r->w, from.domain);
}

static void route_presence(struct route *r, int to_full)
{
	struct session_info s, *heap, *res;
	int n;
	/* RFC 6121 sections 3 and 4.3 for a contact on another server or
	 * a component: its probes and subscription stanzas take the
	 * inbound paths (a local user's never come through here) */
	if (r->type != NULL && presence_inbound(r->w, r->arena, r->st))
		return;
	if (route_is(r, "probe"))
		return;         /* answered by the presence module */
	if (to_full) {
		if (shm_session_get(r->w->shm->sessions, r->to_full, &s) == 1 &&
		    !route_skipped(r, &s))
			route_to_session(r, &s);
		else
			route_to_peer(r);
		return;         /* section 8.5.3.2.3: else silently dropped */
	}
	res = route_resources(r, &n, &heap);
	for (int i = 0; i < n; i++)
		route_to_session(r, &res[i]);
	route_sessions_done(heap);
	/* XEP-0163 remote recipients (pep_remote.c): a presence from
	 * another domain to the bare JID, once (not for a rerouted copy) */
	if (ext_hooks.n_presence_to_account > 0 && !r->skip_valid &&
	    route_from_remote(r))
		ext_presence_to_account(r->w, r->st, r->to_bare);
}

static void route_iq(struct route *r, int to_full)
{
	struct session_info s;
	if (to_full) {
		int rc = -1;
		if (shm_session_get(r->w->shm->sessions, r->to_full, &s) == 1 &&
		    !route_skipped(r, &s))
			rc = route_to_session(r, &s);
		else if (route_to_peer(r))
			return;
		if (rc == ROUTE_FULL)
			route_full(r);
		else if (rc != 0)
			route_bounce(r, "cancel", "service-unavailable");
		return;
	}
	/* Section 8.5.2.1.3 / RFC 6120 10.5.4: the server answers IQs to a
	 * bare JID on the account's behalf. */
	server_account_iq(r->w, r->arena, r->st, r->to_bare);
}

static void route_user(struct route *r)
{
	int to_full = r->to.resource != NULL;
	if (strcmp(r->st->name, "message") == 0)
		route_message(r, to_full);
	else if (strcmp(r->st->name, "presence") == 0)
		route_presence(r, to_full);
	else
		route_iq(r, to_full);
}

static int route_prepare(struct route *r, const char *to)
{
	const char *error;
	if (jid_parse(r->arena, to, &r->to, &error) < 0)
		return -1;
	r->to_full = jid_full(r->arena, &r->to);
	r->to_bare = jid_bare(r->arena, &r->to);
	if (r->to_full == NULL || r->to_bare == NULL)
		return -1;
	return xml_set_attr(r->arena, r->st, "to", r->to_full);
}

/* Route a stanza whose 'from' is already trusted. */
static void route_run(struct route *r)
{
	const char *to = xml_attr(r->st, "to");
	r->type = xml_attr(r->st, "type");
	if (to == NULL || route_prepare(r, to) < 0) {
		route_bounce(r, "modify", "jid-malformed");
		return;
	}
	if (!stream_hosted(r->w, r->to.domain)) {
		/* a service of ours (XEP-0045 rooms), a component's domain
		 * (XEP-0114), else another server's */
		const struct ext *svc = ext_service(r->w, r->to.domain);
		if (svc != NULL)
			svc->service_stanza(r->w, r->arena, r->st, &r->to);
		else if (!component_route(r->w, r->st, r->to.domain) &&
		    s2s_route(r->w, r->st, r->to.domain) < 0)
			route_bounce(r, "cancel", "remote-server-not-found");
		if (r->serialized)
			buf_free(&r->text);
		return;
	}
	if (r->to.local == NULL)
		server_stanza(r->w, r->arena, r->st, r->to.resource != NULL);
	else
		route_user(r);
	if (r->serialized)
		buf_free(&r->text);
}

void route_stanza(struct worker *w, struct arena *a, struct xml_node *st)
{
	struct route r;
	memset(&r, 0, sizeof(r));
	r.w = w;
	r.arena = a;
	r.st = st;
	route_run(&r);
}

/* 'to' in its prepared form (RFC 7622) before any check compares it;
 * a malformed one is left for route_stanza to answer jid-malformed. */
static void route_prepare_to(struct conn *c, struct xml_node *st)
{
	const char *to = xml_attr(st, "to"), *error, *full;
	struct jid j;
	if (to != NULL && jid_parse(c->arena, to, &j, &error) == 0 &&
	    (full = jid_full(c->arena, &j)) != NULL && strcmp(full, to) != 0)
		xml_set_attr(c->arena, st, "to", full);
}

/* RFC 6120 section 8.1.2.1: a client may put its own full JID or bare JID
 * in 'from'; anything else is <invalid-from/>. */
static int route_from_ok(struct conn *c, const char *from)
{
	struct jid j;
	const char *error;
	if (jid_parse(c->arena, from, &j, &error) < 0 || j.local == NULL)
		return 0;
	if (strcmp(j.local, c->user) != 0 || strcmp(j.domain, c->domain) != 0)
		return 0;
	if (j.resource == NULL)
		return 1;
	const char *res = strchr(c->jid, '/');
	return res != NULL && strcmp(j.resource, res + 1) == 0;
}

void route_from_client(struct conn *c, struct xml_node *st)
{
	const char *from = xml_attr(st, "from");
	if (from != NULL && !route_from_ok(c, from)) {
		stream_error(c, "invalid-from", NULL);
		return;
	}
	if (xml_set_attr(c->arena, st, "from", c->jid) < 0) {
		stream_error(c, "resource-constraint", NULL);
		return;
	}
	route_prepare_to(c, st);
	/* RFC 6120 8.2.3, 8.3.3.1: an IQ without id or with a bad type or
	 * payload count, a presence of unknown type */
	if (!stanza_addressable_valid(st)) {
		stanza_error_reply(c, st, "modify", "bad-request", NULL);
		return;
	}
	if (ext_stanza_in(c, st))
		return;
	if (strcmp(st->name, "presence") == 0) {
		presence_from_client(c, st);
		return;
	}
	if (xml_attr(st, "to") == NULL) {
		/* Section 10.3: no 'to' means the sender's bare JID. */
		char *bare = arena_strndup(c->arena, c->jid,
					   strcspn(c->jid, "/"));
		if (bare == NULL || xml_set_attr(c->arena, st, "to", bare) < 0)
			return;
	}
	route_stanza(c->w, c->arena, st);
}

/* Whether bare has an available session of non-negative priority other
 * than the one r skips: one that got its own copy of a message sent to
 * the bare JID (section 8.5.2.1.1). */
static int route_other_copy(struct route *r, const char *bare)
{
	struct session_info *heap;
	int n, found = 0;
	struct session_info *res = route_sessions(r->w, bare, &n, &heap);
	for (int i = 0; i < n && !found; i++)
		found = res[i].available && res[i].priority >= 0 &&
			!route_skipped(r, &res[i]);
	route_sessions_done(heap);
	return found;
}

int route_undelivered(struct worker *w, uint32_t conn_id, uint32_t gen,
		      const char *text, size_t len)
{
	return route_undelivered_node(w, conn_id, gen, 0, text, len);
}

int route_undelivered_node(struct worker *w, uint32_t conn_id, uint32_t gen,
			   uint8_t node, const char *text, size_t len)
{
	struct arena a;
	const char *error;
	struct route r;
	/* an arena per call: rerouting may close another slow reader,
	 * whose stanzas come back here */
	arena_init(&a, 4096);
	struct xml_node *st = stanza_parse(&a, text, len, &error);
	if (st == NULL || (strcmp(st->name, "message") != 0 &&
			   strcmp(st->name, "iq") != 0 &&
			   strcmp(st->name, "presence") != 0)) {
		arena_free(&a);
		return -1;
	}
	memset(&r, 0, sizeof(r));
	r.w = w;
	r.arena = &a;
	r.st = st;
	r.skip_valid = 1;
	r.skip.slot = (uint16_t)w->slot;
	r.skip.conn_id = conn_id;
	r.skip.gen = gen;
	r.skip_node = node;
	/* A stale table entry goes (owner-checked), so that rerouting
	 * cannot find it again. */
	const char *to = xml_attr(st, "to");
	if (to != NULL)
		shm_session_del(w->shm->sessions, to, (uint16_t)w->slot,
				conn_id, gen);
	/* A copy the server made for this session alone (from the
	 * account's own bare JID to one of its resources: a XEP-0280
	 * carbon, an archive result) is not rerouted: the message it
	 * copies went its own way. */
	const char *from = xml_attr(st, "from");
	size_t flen = from != NULL ? strlen(from) : 0;
	if (to != NULL && flen > 0 && strcmp(st->name, "message") == 0 &&
	    strchr(from, '/') == NULL && strncmp(to, from, flen) == 0 &&
	    to[flen] == '/') {
		log_debug("w%u c%u: copy from %s not written: dropped", w->slot,
			  conn_id, from);
		arena_free(&a);
		return 0;
	}
	/* A headline is not rerouted (section 8.5.3.2.1: one to a full
	 * JID not online is ignored; one to the bare JID went to every
	 * resource already). */
	if (strcmp(st->name, "message") == 0 &&
	    (from = xml_attr(st, "type")) != NULL &&
	    strcmp(from, "headline") == 0) {
		log_debug("w%u c%u: headline not written: dropped", w->slot,
			  conn_id);
		arena_free(&a);
		return 0;
	}
	/* A message sent to the bare JID was one copy of several, or the
	 * only one: if another resource is available it got its own
	 * copy, else the message is stored (the bare JID's rules, with no
	 * resource left).  A message to this full JID goes on as if sent
	 * to the bare JID (section 8.5.3.2.1).  An IQ is answered with an
	 * error; presence was a broadcast copy: nothing to do. */
	if (to != NULL && strcmp(st->name, "message") == 0 &&
	    strchr(to, '/') == NULL && route_other_copy(&r, to)) {
		log_debug("w%u c%u: copy of a message to %s not written: the "
			  "other resources have theirs", w->slot, conn_id, to);
	} else if (to != NULL && strcmp(st->name, "message") == 0) {
		char *bare = arena_strndup(&a, to, strcspn(to, "/"));
		if (bare != NULL)
			xml_set_attr(&a, st, "to", bare);
		route_run(&r);
	} else if (strcmp(st->name, "iq") == 0) {
		r.type = xml_attr(st, "type");
		route_bounce(&r, "cancel", "service-unavailable");
	}
	arena_free(&a);
	return 0;
}

/* Route a stanza a frame carries, as if it came from another worker's
 * session (its 'from' is trusted: the sending worker stamped it). */
static void route_frame_text(struct worker *w, const void *payload,
			     size_t len)
{
	struct arena a;
	const char *error;
	arena_init(&a, 1024);
	struct xml_node *st = stanza_parse(&a, payload, len, &error);
	if (st != NULL) {
		struct route r;
		memset(&r, 0, sizeof(r));
		r.w = w;
		r.arena = &a;
		r.st = st;
		r.no_peer = 1;  /* it came back from a peer: not again */
		route_run(&r);
	} else {
		log_warn("w%u: stanza frame unreadable: %s", w->slot, error);
	}
	arena_free(&a);
}

/* A frame for a connection this worker no longer has, or one that is
 * closing (unbound). */
static void route_gone(struct worker *w, const struct ipc_frame_header *hdr,
		       const void *payload, size_t len)
{
	/* a stanza the cluster bridge hands back (conn 0, the node it
	 * could not reach): that node's sessions are skipped, so the bare
	 * JID's rules store it rather than pick them again */
	uint8_t node = worker_frame_handback(w, hdr) ? hdr->node : 0;
	/* behind what its connection gave back this turn, in order */
	if (buf_used(&w->undelivered) > 0 && node == 0)
		conn_undelivered(w, hdr->conn_id, hdr->gen, payload, len);
	else if (route_undelivered_node(w, hdr->conn_id, hdr->gen, node,
					payload, len) < 0)
		log_error("frame for a gone connection unreadable");
}

void route_frame(struct worker *w, const struct ipc_frame_header *hdr,
		 const void *payload, size_t len)
{
	/* an extension's frame for no session in particular (XEP-0198
	 * handover, sm.c) */
	if (hdr->type >= IPC_FRAME_SM_TAKE &&
	    ext_worker_frame(w, hdr, payload, len))
		return;
	/* federation's and components' own frames */
	if (hdr->type >= IPC_FRAME_S2S_OUT &&
	    (s2s_frame(w, hdr, payload, len) ||
	     component_frame(w, hdr, payload, len)))
		return;
	if (hdr->type == IPC_FRAME_BARE_STANZA) {
		/* a stanza for this node to route by its 'to' (another
		 * node's answer to a probe from here, presence.c) */
		route_frame_text(w, payload, len);
		return;
	}
	struct conn *c = conn_lookup(w, hdr->conn_id, hdr->gen);
	/* the session moved (XEP-0198 resumption): forwarded for a while */
	if ((c == NULL || !c->bound) && hdr->type != IPC_FRAME_KICK &&
	    hdr->type != IPC_FRAME_SWEPT &&
	    ext_conn_gone(w, hdr, payload, len))
		return;
	if (hdr->type == IPC_FRAME_KICK) {
		/* from another node (through the bridge, hdr->node): the
		 * new session's entry is in that node's table, and ours
		 * still names c; it goes (owner-checked), so that the new
		 * holder's directory entry can take its place here */
		if (c != NULL && c->bound && c->jid != NULL && hdr->node != 0)
			shm_session_del(w->shm->sessions, c->jid,
					(uint16_t)w->slot, c->id, c->gen);
		if (c != NULL) {
			c->bound = 0;   /* its table entry is the new session's */
			/* and so is its presence; but a detached XEP-0198
			 * session ended for another resource's login
			 * (sm_make_room) leaves: its contacts are told */
			if (!(c->detached && len == sizeof(SM_KICK_ROOM) - 1 &&
			      memcmp(payload, SM_KICK_ROOM, len) == 0))
				c->available = 0;
			stream_error(c, "conflict", "Replaced by new connection");
		}
		return;
	}
	if (hdr->type == IPC_FRAME_SWEPT) {
		char jid[IPC_JID_MAX + 1];
		if (len == 0 || len > IPC_JID_MAX || memchr(payload, 0, len))
			return;
		memcpy(jid, payload, len);
		jid[len] = '\0';
		presence_swept(w, jid);
		ext_session_swept(w, jid);
		return;
	}
	if (hdr->type == IPC_FRAME_PROBE) {
		char to[IPC_JID_MAX + 1];
		if (c == NULL || len == 0 || len > IPC_JID_MAX ||
		    memchr(payload, 0, len))
			return;
		memcpy(to, payload, len);
		to[len] = '\0';
		if (hdr->node != 0)     /* the prober is on another node */
			presence_answer_remote_probe(c, to, hdr);
		else
			presence_answer_probe(c, to);
		return;
	}
	if (hdr->type != IPC_FRAME_STANZA) {
		/* an extension's frame (ext.h) */
		if (c != NULL && c->bound)
			ext_frame(c, hdr->type, payload, len);
		return;
	}
	route_peer_note(hdr, payload, len);
	if (c != NULL && c->bound) {
		if (!ext_stanza_out_text(c, payload, len))
			conn_send(c, payload, len);
		return;
	}
	route_gone(w, hdr, payload, len);
}

/* Whether n is a <stanza-id/> by a JID of a domain we host. */
static int route_own_sid(struct worker *w, struct arena *a,
			 const struct xml_node *n)
{
	const char *by, *error;
	struct jid j;
	if (n->name == NULL || strcmp(n->name, "stanza-id") != 0 ||
	    strcmp(n->ns, "urn:xmpp:sid:0") != 0 ||
	    (by = xml_attr(n, "by")) == NULL)
		return 0;
	return jid_parse(a, by, &j, &error) == 0 && stream_hosted(w, j.domain);
}

/* Own stanza-ids taken off for one serialization, at most this many
 * (XEP-0359 allows one per 'by'; more stay, and are logged). */
#define ROUTE_SIDS_OFF 8

int route_serialize_out(struct worker *w, struct buf *out,
			const struct xml_node *cst)
{
	/* the serializer walks the tree by its parent links: the nodes
	 * are unlinked for the moment of the call and put back */
	struct xml_node *st = (struct xml_node *)cst;
	struct xml_node *off[ROUTE_SIDS_OFF], *prev_of[ROUTE_SIDS_OFF];
	struct xml_node *last = st->last_child, *prev = NULL;
	unsigned n = 0;
	if (strcmp(st->name, "message") != 0)
		return xml_serialize(out, st, NS_CLIENT);
	struct arena a;
	arena_init(&a, 512);
	for (struct xml_node *c = st->children, *next; c != NULL; c = next) {
		next = c->next;
		if (n < ROUTE_SIDS_OFF && route_own_sid(w, &a, c)) {
			off[n] = c;
			prev_of[n++] = prev;
			xml_unlink_child(st, prev, c);
		} else {
			prev = c;
		}
	}
	arena_free(&a);
	int r = xml_serialize(out, st, NS_CLIENT);
	while (n-- > 0) {       /* back in place, last removed first */
		struct xml_node *c = off[n], *p = prev_of[n];
		c->next = p != NULL ? p->next : st->children;
		if (p != NULL)
			p->next = c;
		else
			st->children = c;
	}
	st->last_child = last;
	return r;
}

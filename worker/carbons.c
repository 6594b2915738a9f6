/*
 * carbons.c - XEP-0280 Message Carbons 1.0 (urn:xmpp:carbons:2, with the
 * eligibility rules of urn:xmpp:carbons:rules:0).
 *
 * A session enables or disables carbons with an IQ set of <enable/> or
 * <disable/> (as often as it likes: each answers a result).  The flag
 * lives in the session table (IPC_SESSION_F_CARBONS), where every worker
 * sees it, and the table keeps IPC_SESSION_F_SIBLING_CARBONS on each
 * other session of the account, so:
 *   - received copies: route.c calls the message_delivered hook only
 *     when a session that got the message has a carbons-enabled sibling
 *     (a flag test on the record it already holds); then one listing of
 *     the account's sessions finds the carbons-enabled ones that did
 *     not get the message (RFC 6121 section 8.5) and each gets it
 *     wrapped in <received/><forwarded/>, on whatever worker it is;
 *   - sent copies: a session runs the stanza_in filter only while its
 *     filter bit is set, which happens at bind when its record has the
 *     sibling flag and when a sibling enables carbons (it tells every
 *     other session of the account: IPC_FRAME_CARBONS); the filter reads
 *     its own record's flags (no lock), drops the bit when no sibling
 *     has carbons any more (one node only: in a cluster the bit is on
 *     from bind, see carbons_watch), and otherwise lists the account
 *     once and sends <sent/><forwarded/> to the other carbons-enabled
 *     sessions, whether or not the sender has carbons enabled itself.
 * A sender whose account has no other carbons-enabled session costs one
 * test of its filter word per stanza; a recipient, one flag test.
 *
 * Eligible (section 6): type chat; type normal (or none) with a <body/>;
 * type error received from a bare JID (the bounce of a message sent to
 * a bare JID: the server cannot tell otherwise which errors answer an
 * eligible message).  Never: groupchat, headline, a message carrying
 * <private xmlns='urn:xmpp:carbons:2'/> (which the recipient's copy
 * arrives without, section 9: route.c takes it off before delivery and
 * notes it in w->private_msg) or XEP-0334 <no-copy/>, a carbon
 * itself (<sent/>, <received/>), an error a client sends, a message
 * received with <x xmlns='.../muc#user'/> (sent by a MUC room or
 * service: invitations to the bare JID, private messages from
 * occupants to a full JID; XEP-0280 1.0.1 section 6).  A message between two resources of one account
 * makes no sent copies; its received copies skip the sender.
 * The wrapper keeps the type, comes from the account's bare JID and goes
 * to the full JID of the copy's session.  A message stored offline
 * makes no copy (it is delivered later); a copy left unwritten when its
 * connection closes is not rerouted (route.c); a blocked contact's
 * message makes no copy (blocking.c looks inside carbons).
 * Failure policy: a copy that cannot be built or queued (no memory, a
 * full outbox) is logged and skipped; the message itself goes on, and
 * nothing goes back to its sender (section 10.3 / business rules).
 */
#include "worker.h"
#include "ext.h"
#include "iq.h"
#include "log.h"
#include "session.h"
#include "stanza.h"

#include <stdlib.h>
#include <string.h>

#define NS_CARBONS "urn:xmpp:carbons:2"
#define NS_CARBONS_RULES "urn:xmpp:carbons:rules:0"
#define NS_FORWARD "urn:xmpp:forward:0"
#define NS_HINTS "urn:xmpp:hints"
#define NS_MUC_USER "http://jabber.org/protocol/muc#user"

extern const struct ext carbons_ext;

/* ---- eligibility (section 6) --------------------------------------- */

static int carbons_is_bare(const char *jid)
{
	return jid != NULL && strchr(jid, '/') == NULL;
}

/* received: st reaches the account (else it leaves it). */
static int carbons_eligible(const struct xml_node *st, int received)
{
	const char *type = xml_attr(st, "type");
	int body = 0, muc = 0;
	for (const struct xml_node *ch = xml_first_element(st); ch != NULL;
	     ch = xml_next_element(ch)) {
		/* <private/>, or a carbon itself */
		if (xml_is(ch, NS_CARBONS, NULL) ||
		    xml_is(ch, NS_HINTS, "no-copy"))
			return 0;
		if (xml_is(ch, NS_CLIENT, "body"))
			body = 1;
		else if (xml_is(ch, NS_MUC_USER, "x"))
			muc = 1;
	}
	/* section 6: what a MUC room or service sends is not copied,
	 * private messages from occupants included (to a full JID) */
	if (received && muc)
		return 0;
	if (type == NULL || strcmp(type, "normal") == 0)
		return body;
	if (strcmp(type, "chat") == 0)
		return 1;
	if (strcmp(type, "error") == 0)
		return received && carbons_is_bare(xml_attr(st, "from"));
	return 0;       /* groupchat, headline, anything else */
}

/* ---- copies ----------------------------------------------------------- */

/* One wrapped copy on its way: the forwarded message, serialized once. */
struct carbons_copy {
	const char *bare;       /* the account */
	const char *type;       /* the original's, or NULL */
	const char *dir;        /* "sent" or "received" */
	struct buf inner;       /* <message xmlns='jabber:client' ...> */
	struct buf out;         /* the copy for one session */
};

static int carbons_copy_init(struct carbons_copy *k, struct worker *w,
			     const struct xml_node *st, const char *bare,
			     const char *dir)
{
	k->bare = bare;
	k->type = xml_attr(st, "type");
	k->dir = dir;
	buf_init(&k->inner, xml_out_cap(w->cfg->max_stanza_size));
	buf_init(&k->out, 0);
	return xml_serialize(&k->inner, st, NS_FORWARD);
}

static void carbons_copy_free(struct carbons_copy *k)
{
	buf_free(&k->inner);
	buf_free(&k->out);
}

static void carbons_attr(struct buf *out, const char *name, const char *v)
{
	buf_appendf(out, " %s='", name);
	xml_escape(out, v, strlen(v), 1);
	buf_append(out, "'", 1);
}

/* Write the copy for s and send it there. */
static void carbons_send(struct worker *w, struct carbons_copy *k,
			 const struct session_info *s)
{
	const char *error;
	struct buf *out = &k->out;
	buf_consume(out, buf_used(out));
	buf_appendf(out, "<message");
	carbons_attr(out, "from", k->bare);
	carbons_attr(out, "to", s->jid);
	if (k->type != NULL)
		carbons_attr(out, "type", k->type);
	buf_appendf(out, "><%s xmlns='" NS_CARBONS "'><forwarded xmlns='"
		    NS_FORWARD "'>", k->dir);
	buf_append(out, buf_head(&k->inner), buf_used(&k->inner));
	if (buf_appendf(out, "</forwarded></%s></message>", k->dir) < 0) {
		log_warn("carbon copy for %s: no memory", s->jid);
		return;
	}
	if (s->slot != w->slot) {
		if (worker_send_session(w, s, IPC_FRAME_STANZA, buf_head(out),
					buf_used(out), &error) < 0)
			log_info("carbon copy for %s on w%u not sent: %s",
				 s->jid, s->slot, error);
		return;
	}
	struct conn *c = conn_lookup(w, s->conn_id, s->gen);
	if (c == NULL || !c->bound)
		return;
	if (!ext_stanza_out_text(c, buf_head(out), buf_used(out)))
		conn_send(c, buf_head(out), buf_used(out));
}

static int carbons_got(const struct session_info *s,
		       const struct session_info *got, int ngot)
{
	for (int i = 0; i < ngot; i++)
		if (session_same(s, &got[i]))
			return 1;
	return 0;
}

/* Copy st to every carbons-enabled session of bare but got[] and the
 * full JID skip (may be NULL). */
static void carbons_fan_out(struct worker *w, const struct xml_node *st,
			    const char *bare, const char *dir,
			    const struct session_info *got, int ngot,
			    const char *skip)
{
	struct carbons_copy k;
	struct session_info *heap;
	int n, ready = 0;
	struct session_info *res = route_sessions(w, bare, &n, &heap);
	for (int i = 0; i < n; i++) {
		const struct session_info *s = &res[i];
		if (!(s->flags & IPC_SESSION_F_CARBONS) ||
		    carbons_got(s, got, ngot) ||
		    (skip != NULL && strcmp(s->jid, skip) == 0))
			continue;
		if (!ready && carbons_copy_init(&k, w, st, bare, dir) < 0) {
			log_warn("carbon copies for %s: message too large "
				 "to forward", bare);
			carbons_copy_free(&k);
			break;
		}
		ready = 1;
		carbons_send(w, &k, s);
	}
	if (ready)
		carbons_copy_free(&k);
	route_sessions_done(heap);
}

/* Section 7: a message reached some sessions of bare; the other
 * carbons-enabled ones get a received copy. */
static void carbons_delivered(struct worker *w, struct xml_node *st,
			      const char *bare,
			      const struct session_info *got, int ngot)
{
	/* <private/> was taken off before delivery (route.c, worker.h) */
	if (st == w->private_msg || !carbons_eligible(st, 1))
		return;
	carbons_fan_out(w, st, bare, "received", got, ngot,
			xml_attr(st, "from"));
}

/* The session's own record flags (no lock: shm_session_flags). */
static uint8_t carbons_self_flags(const struct conn *c)
{
	return shm_session_flags(c->w->shm->sessions, c->sess_index,
				 (uint16_t)c->w->slot, c->id, c->gen);
}

/* Section 8: the client sends a message; the account's other
 * carbons-enabled sessions get a sent copy.  Runs while the session's
 * filter bit is on (carbons_watch). */
static int carbons_in(struct conn *c, struct xml_node *st)
{
	if (strcmp(st->name, "message") != 0)
		return 0;
	if (!(carbons_self_flags(c) & IPC_SESSION_F_SIBLING_CARBONS)) {
		/* until told again; in a cluster nothing tells
		 * (carbons_watch): the filter stays on */
		if (!config_cluster_on(c->w->cfg))
			ext_filter(c, &carbons_ext, 0);
		return 0;
	}
	const char *to = xml_attr(st, "to");
	size_t blen = strcspn(c->jid, "/");
	if (!carbons_eligible(st, 0))
		return 0;
	/* to our own account: the received copies cover it (section 7) */
	if (to == NULL || (strncmp(to, c->jid, blen) == 0 &&
			   (to[blen] == '\0' || to[blen] == '/')))
		return 0;
	char *bare = arena_strndup(c->arena, c->jid, blen);
	if (bare != NULL)
		carbons_fan_out(c->w, st, bare, "sent", NULL, 0, c->jid);
	return 0;
}

/* Run the sent-copy filter for c while its record says that another
 * session of the account has carbons.  In a cluster, always: a sibling
 * on another node enters our table through the directory (the bridge,
 * cluster/bridge_route.c), which sets our record's flag and tells no
 * connection, and its IPC_FRAME_CARBONS finds no entry for us on its
 * node when we bound there less than a directory scan ago; so the
 * flag, read per message in carbons_in, decides alone. */
static void carbons_watch(struct conn *c)
{
	if (config_cluster_on(c->w->cfg) ||
	    (carbons_self_flags(c) & IPC_SESSION_F_SIBLING_CARBONS))
		ext_filter(c, &carbons_ext, 1);
}

/* IPC_FRAME_CARBONS: a sibling enabled carbons. */
static int carbons_frame(struct conn *c, int type, const char *text,
			 size_t len)
{
	(void)text;
	(void)len;
	if (type != IPC_FRAME_CARBONS)
		return 0;
	carbons_watch(c);
	return 1;
}

/* ---- enable, disable (sections 4, 5, 10.1) ------------------------- */

static void carbons_set(struct conn *c, int on)
{
	int was = c->carbons;
	c->carbons = on;
	if (was != on)
		ext_session_changed(c);     /* kept for resumption (sm.c) */
	if (shm_session_set_flags(c->w->shm->sessions, c->jid,
				  (uint16_t)c->w->slot, c->id, c->gen,
				  on ? IPC_SESSION_F_CARBONS : 0,
				  on ? 0 : IPC_SESSION_F_CARBONS) != 1)
		log_warn("c%u: carbons flag of %s not stored", c->id, c->jid);
	if (on && !was) {
		/* after the flag is in the table: a sibling that binds
		 * later finds it there (carbons_watch at bind) */
		char *bare = strndup(c->jid, strcspn(c->jid, "/"));
		static const char one[] = "1";
		if (bare != NULL)
			route_to_resources(c->w, bare, one, sizeof(one) - 1,
					   IPC_FRAME_CARBONS, 0, c->jid);
		free(bare);
	}
	carbons_watch(c);
}

static void carbons_iq(struct worker *w, struct xml_node *st,
		       const char *bare)
{
	struct iq_pending *p = iq_pending_new(w, st);
	struct session_info s;
	if (p == NULL)
		return;
	const char *from_bare = iq_bare(p, p->from);
	if (from_bare == NULL || strcmp(from_bare, bare) != 0 ||
	    strchr(p->from, '/') == NULL) {
		/* section 5: another account's carbons are not its to set */
		iq_reply_error(&p, "cancel", "not-allowed");
		return;
	}
	if (strcmp(p->type, "set") != 0) {
		iq_reply_error(&p, "modify", "bad-request");
		return;
	}
	/* the requester is a session of this worker: its IQ is routed
	 * here, synchronously, from its own stream */
	struct conn *c = NULL;
	if (shm_session_get(w->shm->sessions, p->from, &s) == 1 &&
	    s.slot == w->slot)
		c = conn_lookup(w, s.conn_id, s.gen);
	if (c == NULL || !c->bound) {
		iq_reply_error(&p, "wait", "internal-server-error");
		return;
	}
	carbons_set(c, xml_is(p->payload, NS_CARBONS, "enable"));
	log_debug("c%u %s: carbons %s", c->id, c->jid,
		  c->carbons ? "enabled" : "disabled");
	iq_reply_result(&p, NULL);
}

/* ---- the extension (ext.h) ------------------------------------------- */

static const char *const carbons_disco[] = {
	NS_CARBONS, NS_CARBONS_RULES, NULL,
};
static const struct ext_iq carbons_iqs[] = {
	{ NS_CARBONS, "enable", EXT_IQ_GET | EXT_IQ_SET, carbons_iq },
	{ NS_CARBONS, "disable", EXT_IQ_GET | EXT_IQ_SET, carbons_iq },
	{ NULL, NULL, 0, NULL },
};

/* XEP-0198: the session's carbons state goes with it when it is resumed
 * (section 4 of XEP-0280 ties it to the session, not the connection). */
static uint32_t carbons_save(const struct conn *c)
{
	return (uint32_t)(c->carbons != 0);
}

static void carbons_restore(struct conn *c, uint32_t word)
{
	if (word != 0)
		carbons_set(c, 1);
	else
		carbons_watch(c);   /* a resumed session never bound here */
}

const struct ext carbons_ext = {
	.name = "carbons",
	.session_save = carbons_save,
	.session_restore = carbons_restore,
	.disco_features = carbons_disco,
	.iq = carbons_iqs,
	.session_bound = carbons_watch,
	.stanza_in = carbons_in,
	.frame = carbons_frame,
	.message_delivered = carbons_delivered,
	.delivered_flags = IPC_SESSION_F_SIBLING_CARBONS,
};

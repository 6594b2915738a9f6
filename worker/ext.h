/*
 * ext.h - the seam for extensions (docs/DESIGN.md "Extensions").
 *
 * An extension (roster, vCard, private storage, blocking, offline
 * storage, ...) lives in one unit (worker/<name>.c, or a folder) and
 * declares everything it adds in one `const struct ext <unit>_ext`: its
 * disco features, stream features, IQ handlers by namespace, element and
 * type, the nonzas it takes, the hooks it needs, the settings it owns
 * and its schema steps.  The core (stream.c, route.c, presence.c,
 * bind.c, conn.c, server.c) calls the hooks through the registry below
 * and never names an extension; the list of compiled-in extensions in
 * ext.c is the only place that does.
 *
 * Hooks run in the order of that list.  A hook left NULL costs nothing:
 * ext_init() copies the non-NULL ones into one array per hook point, and
 * EXT_RUN and the ext_<hook>() walkers are a loop over that array (no
 * allocation, no string compare, one indirect call per extension that
 * asked); the per-stanza filters are skipped with one test for a
 * session that no extension filters (ext_filter()).
 * Hooks are called on the worker's thread, with the conn valid for the
 * call only; they must not free or close it.
 * Failure policy: ext_init() refuses a descriptor that names a setting
 * the settings table does not have or a schema step not compiled in
 * (the worker does not start: a build error, caught by every test).
 */
#ifndef XMPPD_EXT_H
#define XMPPD_EXT_H

#include "worker.h"

#include <stddef.h>
#include <stdint.h>

struct arena;
struct buf;
struct jid;
struct pg_result;
struct session_info;
struct xml_node;

/* The types of IQ an IQ handler takes (struct ext_iq.types). */
enum ext_iq_type { EXT_IQ_GET = 1, EXT_IQ_SET = 2 };

/*
 * An IQ get/set to an account's bare JID (or without 'to': the sender's
 * own account), whose payload is {ns}name (name NULL: any element of the
 * namespace).  The handler owns the answer: it must route a result or
 * an error for every IQ it is given (iq.h: keep an iq_pending to answer
 * after a database round trip).
 *   st    the IQ (from = the requester's full JID, to = the account's
 *         bare JID); valid only during the call
 *   bare  the account's bare JID ("user@domain"), prepared
 */
typedef void ext_iq_fn(struct worker *w, struct xml_node *st,
		       const char *bare);

struct ext_iq {
	const char *ns;
	const char *name;       /* NULL: any element of ns */
	unsigned types;         /* EXT_IQ_GET | EXT_IQ_SET */
	ext_iq_fn *fn;
};

/* An IQ handler for {ns}name whose first child element is in child_ns
 * (struct ext.iq_child).  A separate struct rather than a field of
 * struct ext_iq: the positional ext_iq tables everywhere would then miss
 * an initializer (-Wmissing-field-initializers under -Werror). */
struct ext_iq_child {
	const char *ns;
	const char *name;
	const char *child_ns;
	unsigned types;         /* EXT_IQ_GET | EXT_IQ_SET */
	ext_iq_fn *fn;
};

struct ext {
	const char *name;       /* for logs and docs */
	/* XEP-0030 features of the server (disco#info to the domain), in
	 * the order shown; NULL-terminated, or NULL. */
	const char *const *disco_features;
	/* IQ handlers; terminated by an entry with ns NULL, or NULL. */
	const struct ext_iq *iq;
	/* Settings this extension owns: keys of rows of the one settings
	 * table (lib/config.c, where its rows are grouped under a comment
	 * naming the extension); NULL-terminated, or NULL. */
	const char *const *config_keys;
	/* Schema steps it owns: db/schema/ file names (NNN-name.sql, one
	 * consecutive sequence for the whole server); NULL-terminated. */
	const char *const *schema;
	/* Namespaces of first-level elements that are not stanzas
	 * ("nonzas": XEP-0198 <enable/>, <r/>; XEP-0352 <active/>) that
	 * this extension takes, in any state of the stream; NULL-terminated,
	 * or NULL.  Requires the nonza hook. */
	const char *const *nonza_ns;

	/* ---- hooks (NULL: not needed) ---------------------------------- */

	/* Stream features offer: after resource binding is offered to an
	 * authenticated stream, add elements to <stream:features>. */
	void (*stream_features)(struct conn *c, struct buf *out);
	/* A nonza of one of its nonza_ns namespaces, parsed (stream.c),
	 * whatever the stream's state (check c->authenticated, c->bound):
	 * the extension answers, or ends the stream with stream_error(). */
	void (*nonza)(struct conn *c, struct xml_node *n);
	/* Session bound: c->jid is the full JID, in the session table. */
	void (*session_bound)(struct conn *c);
	/* Presence changed: the session sent broadcast presence st
	 * (available or unavailable, 'to' removed; valid for the call, so
	 * that XEP-0115 <c/> can be read); initial is 1 for its first
	 * available presence (RFC 6121 section 4.2). */
	void (*presence_changed)(struct conn *c, const struct xml_node *st,
				 int initial);
	/* Stanza in: a stanza from the client, 'from' stamped, 'to'
	 * prepared and validated, before routing; only for sessions where
	 * the extension set its filter bit (ext_filter() below).  Return 1
	 * when the extension dealt with it (answered or dropped): not
	 * routed. */
	int (*stanza_in)(struct conn *c, struct xml_node *st);
	/* Stanza out: a stanza about to be written to a bound local
	 * session, parsed (node) or as text from a frame or broadcast
	 * (text; parse only when needed); only for sessions where the
	 * extension set its filter bit.  Return 1 when the extension took
	 * it (not written). */
	int (*stanza_out_node)(struct conn *c, const struct xml_node *st,
			       struct arena *a);
	int (*stanza_out_text)(struct conn *c, const char *text, size_t len);
	/* A queue frame of a type an extension defines (shm/ipc.h) for one
	 * of this worker's bound sessions.  Return 1 when it was this
	 * extension's type (handled), else 0. */
	int (*frame)(struct conn *c, int type, const char *text, size_t len);
	/* Stanza to a bare JID: a message of type normal or chat that no
	 * resource took (RFC 6121 section 8.5.2.2.1).  Return 1 when the
	 * extension kept it; when none does it is answered
	 * service-unavailable. */
	int (*message_undelivered)(struct worker *w, struct xml_node *st,
				   const char *bare);
	/* Roster item changed by a subscription state change in the
	 * presence code (RFC 6121 section 3): the row of the roster_items
	 * query, columns col.. subscription, ask_out, name, groups, ver. */
	void (*subscription_changed)(struct worker *w, const char *bare,
				     const char *contact,
				     const struct pg_result *res, int col,
				     int approved_col);
	/* Output drained: c's output buffer was written out completely. */
	void (*output_drained)(struct conn *c);
	/* Message delivered or not: a piece of c's output that ended at
	 * stream offset `end` was not written (the connection closed).
	 * Return 1 when the extension keeps it (it is not rerouted). */
	int (*taken_back)(struct conn *c, uint64_t end);
	/* Session gone: the connection closed (after what it had not
	 * written was taken back). */
	void (*session_gone)(struct conn *c);
	/* The conn is freed: release what the extension keeps in it. */
	void (*conn_free)(struct conn *c);

	/* ---- XEP-0198 stream management (worker/sm.c) ------------------ */
	/* A stanza from the client (<message/>, <presence/>, <iq/>) is
	 * about to be handled (stream.c); only for sessions where the
	 * extension set its filter bit. */
	void (*stanza_received)(struct conn *c);
	/* A stanza (<message/>, <presence/>, <iq/>) given to conn_send,
	 * before it is queued; only where the filter bit is set.  -1: it
	 * must not be written (the extension ended the stream): conn_send
	 * hands it to conn_undelivered(). */
	int (*stanza_sent)(struct conn *c, const char *data, size_t len);
	/* The connection is lost while its stream is open (a reset, a
	 * failed write; not a closing of the stream, not a stream error):
	 * 1 when the extension keeps the session.  The conn becomes
	 * detached (c->detached, fd -1, still bound, in the conn table:
	 * what is sent to it goes to conn_send, which hands stanzas to
	 * stanza_sent only); conn_close() on it later ends the session. */
	int (*detach)(struct conn *c);
	/* Per-session state kept across a resumption (XEP-0198): one word
	 * per extension, saved while the session runs (the extension calls
	 * ext_session_changed() when its word changes) and given back to
	 * the conn that resumes the session, on any worker. */
	uint32_t (*session_save)(const struct conn *c);
	void (*session_restore)(struct conn *c, uint32_t word);
	/* ext_session_changed(c) was called (the keeper of saved words). */
	void (*session_changed)(struct conn *c);
	/* A queue frame of a type the extension defines, whatever its
	 * target connection (XEP-0198 handover frames are for conns not
	 * bound yet, or for none).  Return 1 when taken. */
	int (*worker_frame)(struct worker *w,
			    const struct ipc_frame_header *hdr,
			    const char *payload, size_t len);
	/* A frame, or a local stanza (hdr made up: IPC_FRAME_STANZA, this
	 * slot), for a connection of this worker that is gone or unbound:
	 * 1 when the extension forwarded it (its session moved to another
	 * connection); else it is routed as undelivered. */
	int (*conn_gone)(struct worker *w, const struct ipc_frame_header *hdr,
			 const char *payload, size_t len);
	/* Once a second (worker timers). */
	void (*tick)(struct worker *w, int64_t now_ms);
	/* ---- added for XEP-0313 (mam.c) -------------------------------- */
	/* A message reaching a local account (route.c), before delivery,
	 * carbons or offline storage: once per message and account (not
	 * again when a copy comes back unwritten and is rerouted).  The
	 * hook may change st (MAM stamps <stanza-id/>); every copy made
	 * after it carries the change.  bare: the account, prepared. */
	void (*message_to_account)(struct worker *w, struct xml_node *st,
				   const char *bare);
	/* End of each loop turn, after the turn's stanzas were routed
	 * (batched writes go out here).  Returns the ms until it wants to
	 * run again, or -1 (the loop turns at least once a second). */
	int (*loop_turn)(struct worker *w, int64_t now_ms);
	/* While the worker stops, after its streams are closed: how many
	 * items (stanzas, archive rows) the extension still has to write
	 * out, 0 when done.  The worker turns its loop while any is left,
	 * up to shutdown_drain_timeout, then logs what was left as lost. */
	unsigned long (*busy)(struct worker *w);
	/* XEP-0030 features of an account (disco#info to its bare JID by
	 * the account itself), in the order shown; NULL-terminated. */
	const char *const *account_features;
	/* ---- added for XEP-0280 (carbons.c) and XEP-0352 (csi.c) -------- */
	/* A message was delivered to sessions of a local account (route.c,
	 * RFC 6121 section 8.5): got[0..ngot) had it written or queued for
	 * them.  Called only when one of them has a session-table flag in
	 * delivered_flags (one test otherwise), not for a message stored
	 * offline, and not again when a copy comes back unwritten and is
	 * rerouted.  st, bare: as in message_undelivered. */
	void (*message_delivered)(struct worker *w, struct xml_node *st,
				  const char *bare,
				  const struct session_info *got, int ngot);
	uint8_t delivered_flags;    /* enum ipc_session_flags */
	/* A first-level element from the client (stanza or nonza, any
	 * namespace), before it is acted upon; only for sessions where the
	 * extension set its filter bit (ext_filter()).  CSI: the client is
	 * awake, what was held goes out first. */
	void (*client_element)(struct conn *c, const struct xml_node *n);
	/* ---- added in review (csi.c) ------------------------------------- */
	/* The session leaves this conn while it goes on (XEP-0198): the conn
	 * was just detached (an extension's detach hook kept the session;
	 * c->detached, fd -1), or its session is about to be resumed on
	 * another connection (sm.c, before the journal is read).  What the
	 * extension held back for the socket goes to conn_send now, which
	 * journals it, so the resumed stream gets it. */
	void (*session_leaving)(struct conn *c);
	/* c's account is at c2s.max_sessions_per_account as c binds: an
	 * extension that keeps sessions nobody is connected to (XEP-0198
	 * detached) may end one of them and take it out of the session
	 * table.  1 when it did (the bind is tried again), else 0. */
	int (*make_room)(struct conn *c);
	/* The text of message st exactly as xml_serialize(st, NS_CLIENT)
	 * writes it, when the extension wrote those bytes a moment ago
	 * (MAM's archive row, in message_to_account) and st has not
	 * changed since, else NULL; valid until the extension's next
	 * hook.  route.c copies it instead of serializing st again. */
	const char *(*message_text)(const struct xml_node *st,
				    size_t *len_r);
	/* ---- added for XEP-0163 (pep.c) ---------------------------------- */
	/* XEP-0030 identities, as "<identity .../>" elements, NULL-terminated
	 * or NULL: of the server (disco#info to the domain, after its own
	 * server/im) and of an account (disco#info to its bare JID, after
	 * account/registered).  An extension that also registers an IQ
	 * handler for disco#info or disco#items queries gets those the
	 * server does not answer itself: a node-less disco#info by someone
	 * other than the account, any with a node, and disco#items
	 * (server.c); without one they get <service-unavailable/>. */
	const char *const *disco_identities;
	const char *const *account_identities;
	/* ---- added for XEP-0115 (caps_ext.c; issue 13) ----------------- */
	/* An IQ result or error to an account's bare JID (server.c, which
	 * dropped them before): answers to queries the server sent on the
	 * account's behalf (XEP-0115 disco#info).  Every extension with the
	 * hook sees it (each checks the id it made); nothing is answered.
	 * st, bare: as in message_undelivered.  May run on any worker. */
	void (*iq_result_to_account)(struct worker *w,
				     const struct xml_node *st,
				     const char *bare);
	/* c's entity capabilities became known or changed (caps_ext.c, on
	 * c's worker): old[0..nold) and now[0..nnow) are the keyed hashes
	 * (shm_caps_hash) of the +notify node names before and after;
	 * valid for the call.  PEP sends the last items of new nodes. */
	void (*caps_changed)(struct conn *c, const uint64_t *old,
			     unsigned nold, const uint64_t *now,
			     unsigned nnow);
	/* ---- added for XEP-0402 #compat (pep_compat.c; issue 13) -------- */
	/* IQ handlers that match {ns}name AND the namespace of the
	 * payload's first child element (struct ext_iq_child): they beat
	 * every plain ext_iq handler of {ns}name, so PEP takes
	 * jabber:iq:private with storage:bookmarks while private.c keeps
	 * the rest of jabber:iq:private.  Terminated by ns NULL, or NULL. */
	const struct ext_iq_child *iq_child;
	/* ---- added for PEP across servers (pep_remote.c; issue 13) ------ */
	/* A presence to an account's bare JID that is not a subscription
	 * stanza or a probe (available, unavailable, error), from a JID on
	 * a domain we do not host (another server or a component; route.c,
	 * after delivery to the account's resources).  XEP-0163 remote
	 * recipients: their full JIDs and XEP-0115 caps.  st, bare: as in
	 * message_undelivered (st not to be changed). */
	void (*presence_to_account)(struct worker *w,
				    const struct xml_node *st,
				    const char *bare);
	/* ---- added for issue 13 (h-pepmore) ---------------------------- */
	/* Whether account_features[i] is on under cfg (a feature turned
	 * off in the settings is not advertised); NULL: all are. */
	int (*account_feature_on)(const struct config *cfg, unsigned i);
	/* ---- added for XEP-0045 (muc.c; issue 14) ------------------------ */
	/* A service of ours on a domain of its own (the MUC service
	 * SERVICE.HOST): 1 if domain (prepared) is one of the extension's.
	 * route.c sends stanzas to such a domain to service_stanza instead
	 * of another server; s2s_in.c accepts them from other servers and
	 * vouches for the domain (dialback), as for a hosted domain. */
	int (*service_serves)(const struct worker *w, const char *domain);
	/* A stanza to one of those domains: 'from' trusted (a local
	 * session's full JID, or a verified remote one), 'to' prepared
	 * (*to parsed from it); on any worker; st valid for the call. */
	void (*service_stanza)(struct worker *w, struct arena *a,
			       struct xml_node *st, const struct jid *to);
	/* disco#items of a hosted domain host: append the services'
	 * <item jid='...' name='...'/>; how many were written. */
	unsigned (*domain_items)(const struct worker *w, const char *host,
				 struct buf *out);
	/* A session of a dead worker was swept from the session table
	 * (route.c, IPC_FRAME_SWEPT, on the worker the master chose):
	 * its unavailable presence is being broadcast to its contacts. */
	void (*session_swept)(struct worker *w, const char *full_jid);
};

/* The compiled-in extensions (ext.c), in hook order. */
extern const struct ext *const ext_all[];
extern const unsigned ext_count;

/* Check the descriptors and fill the hook arrays.  0, or -1 with
 * *error_r (static text). */
int ext_init(const char **error_r);

/* The per-hook arrays (ext.c fills them at start-up): the extensions
 * that have the hook, in list order, with each one's filter bit. */
#define EXT_MAX 32
struct ext_hook {
	const struct ext *e;
	uint32_t bit;           /* 1 << its index in ext_all */
};
struct ext_hooks {
	unsigned n_stream_features, n_session_bound, n_presence_changed,
		 n_stanza_in, n_stanza_out_node, n_stanza_out_text, n_frame,
		 n_message_undelivered, n_subscription_changed,
		 n_output_drained, n_taken_back, n_session_gone, n_conn_free,
		 n_stanza_received, n_stanza_sent, n_detach, n_session_changed,
		 n_worker_frame, n_conn_gone, n_tick;
	struct ext_hook stream_features[EXT_MAX], session_bound[EXT_MAX],
		presence_changed[EXT_MAX], stanza_in[EXT_MAX],
		stanza_out_node[EXT_MAX], stanza_out_text[EXT_MAX],
		frame[EXT_MAX], message_undelivered[EXT_MAX],
		subscription_changed[EXT_MAX], output_drained[EXT_MAX],
		taken_back[EXT_MAX], session_gone[EXT_MAX],
		conn_free[EXT_MAX];
	struct ext_hook stanza_received[EXT_MAX], stanza_sent[EXT_MAX],
		detach[EXT_MAX], session_changed[EXT_MAX],
		worker_frame[EXT_MAX], conn_gone[EXT_MAX], tick[EXT_MAX];
	unsigned n_message_to_account, n_loop_turn, n_busy;
	struct ext_hook message_to_account[EXT_MAX], loop_turn[EXT_MAX],
		busy[EXT_MAX];
	unsigned n_message_delivered, n_client_element;
	struct ext_hook message_delivered[EXT_MAX],
		client_element[EXT_MAX];
	unsigned n_session_leaving;
	struct ext_hook session_leaving[EXT_MAX];
	unsigned n_message_text;
	struct ext_hook message_text[EXT_MAX];
	unsigned n_iq_result_to_account;
	struct ext_hook iq_result_to_account[EXT_MAX];
	unsigned n_caps_changed;
	struct ext_hook caps_changed[EXT_MAX];
	unsigned n_presence_to_account;
	struct ext_hook presence_to_account[EXT_MAX];
	unsigned n_service, n_session_swept;
	struct ext_hook service[EXT_MAX], session_swept[EXT_MAX];
	uint8_t delivered_flags;    /* the extensions' delivered_flags */
};
extern struct ext_hooks ext_hooks;

/* Call hook h of every extension that has it, with the arguments. */
#define EXT_RUN(h, ...) do { \
	for (unsigned ext_i_ = 0; ext_i_ < ext_hooks.n_##h; ext_i_++) \
		ext_hooks.h[ext_i_].e->h(__VA_ARGS__); \
} while (0)

/* The hooks that can take the event: 1 as soon as one extension
 * returns 1 (the rest are not called), else 0. */
#define EXT_TAKE_LOOP(h, ...) \
	for (unsigned i = 0; i < ext_hooks.n_##h; i++) \
		if (ext_hooks.h[i].e->h(__VA_ARGS__)) \
			return 1; \
	return 0

/*
 * The stanza filters (stanza_in, stanza_out_*) run per stanza, so they
 * are called only for the sessions where the extension asked for them:
 * c->ext_filter has one bit per extension, set and cleared by the
 * extension with ext_filter() (blocking: while the list is not empty).
 * A session no extension filters costs one test per stanza.
 */
void ext_filter(struct conn *c, const struct ext *e, int on);

#define EXT_FILTER_LOOP(h, c, ...) \
	if ((c)->ext_filter == 0) \
		return 0; \
	for (unsigned i = 0; i < ext_hooks.n_##h; i++) \
		if (((c)->ext_filter & ext_hooks.h[i].bit) && \
		    ext_hooks.h[i].e->h(__VA_ARGS__)) \
			return 1; \
	return 0

static inline int ext_stanza_in(struct conn *c, struct xml_node *st)
{
	EXT_FILTER_LOOP(stanza_in, c, c, st);
}

static inline int ext_stanza_out_node(struct conn *c,
				      const struct xml_node *st,
				      struct arena *a)
{
	EXT_FILTER_LOOP(stanza_out_node, c, c, st, a);
}

static inline int ext_stanza_out_text(struct conn *c, const char *text,
				      size_t len)
{
	EXT_FILTER_LOOP(stanza_out_text, c, c, text, len);
}

static inline int ext_frame(struct conn *c, int type, const char *text,
			    size_t len)
{
	EXT_TAKE_LOOP(frame, c, type, text, len);
}

static inline int ext_message_undelivered(struct worker *w,
					  struct xml_node *st,
					  const char *bare)
{
	EXT_TAKE_LOOP(message_undelivered, w, st, bare);
}

static inline int ext_taken_back(struct conn *c, uint64_t end)
{
	EXT_TAKE_LOOP(taken_back, c, end);
}

static inline void ext_stanza_received(struct conn *c)
{
	if (c->ext_filter == 0)
		return;
	for (unsigned i = 0; i < ext_hooks.n_stanza_received; i++)
		if (c->ext_filter & ext_hooks.stanza_received[i].bit)
			ext_hooks.stanza_received[i].e->stanza_received(c);
}

static inline int ext_stanza_sent(struct conn *c, const char *data,
				  size_t len)
{
	if (c->ext_filter == 0)
		return 0;
	for (unsigned i = 0; i < ext_hooks.n_stanza_sent; i++)
		if ((c->ext_filter & ext_hooks.stanza_sent[i].bit) &&
		    ext_hooks.stanza_sent[i].e->stanza_sent(c, data, len) < 0)
			return -1;
	return 0;
}

static inline int ext_detach(struct conn *c)
{
	EXT_TAKE_LOOP(detach, c);
}

static inline int ext_worker_frame(struct worker *w,
				   const struct ipc_frame_header *hdr,
				   const char *payload, size_t len)
{
	EXT_TAKE_LOOP(worker_frame, w, hdr, payload, len);
}

static inline int ext_conn_gone(struct worker *w,
				const struct ipc_frame_header *hdr,
				const char *payload, size_t len)
{
	EXT_TAKE_LOOP(conn_gone, w, hdr, payload, len);
}

/* An extension's word saved for resumption changed (ext.h
 * session_save): the keeper (sm.c) writes it where it survives. */
void ext_session_changed(struct conn *c);
/* The saved word of extension i (0 without a session_save hook). */
uint32_t ext_session_word(const struct conn *c, unsigned i);
/* Give the words back to the conn resuming a session (words[i] for
 * ext_all[i], n of them). */
void ext_session_restore(struct conn *c, const uint32_t *words, unsigned n);

static inline void ext_message_to_account(struct worker *w,
					  struct xml_node *st,
					  const char *bare)
{
	EXT_RUN(message_to_account, w, st, bare);
}

/* Run every loop_turn hook; the least of their delays, or -1. */
int ext_loop_turn(struct worker *w, int64_t now_ms);
/* The items extensions have still to write out before the worker exits
 * (the sum of their busy hooks); 0 when none. */
unsigned long ext_busy(struct worker *w);
/* Append <feature var='...'/> for every extension's account features
 * that are on under cfg (account_feature_on). */
void ext_account_features(const struct config *cfg, struct buf *out);
/* The first make_room hook that ends a session: 1, else 0. */
int ext_make_room(struct conn *c);
static inline void ext_message_delivered(struct worker *w,
					 struct xml_node *st,
					 const char *bare,
					 const struct session_info *got,
					 int ngot)
{
	EXT_RUN(message_delivered, w, st, bare, got, ngot);
}

static inline void ext_client_element(struct conn *c,
				      const struct xml_node *n)
{
	if (c->ext_filter == 0)
		return;
	for (unsigned i = 0; i < ext_hooks.n_client_element; i++)
		if (c->ext_filter & ext_hooks.client_element[i].bit)
			ext_hooks.client_element[i].e->client_element(c, n);
}

/* st serialized by an extension a moment ago (message_text), or NULL. */
static inline const char *ext_message_text(const struct xml_node *st,
					   size_t *len_r)
{
	for (unsigned i = 0; i < ext_hooks.n_message_text; i++) {
		const char *t = ext_hooks.message_text[i].e->message_text(st,
									  len_r);
		if (t != NULL)
			return t;
	}
	return NULL;
}

static inline void ext_iq_result_to_account(struct worker *w,
					    const struct xml_node *st,
					    const char *bare)
{
	EXT_RUN(iq_result_to_account, w, st, bare);
}

static inline void ext_presence_to_account(struct worker *w,
					   const struct xml_node *st,
					   const char *bare)
{
	EXT_RUN(presence_to_account, w, st, bare);
}

/* The extension serving domain as a service of its own (ext.h
 * service_serves), or NULL: one test when no extension has one. */
static inline const struct ext *ext_service(const struct worker *w,
					    const char *domain)
{
	for (unsigned i = 0; i < ext_hooks.n_service; i++)
		if (ext_hooks.service[i].e->service_serves(w, domain))
			return ext_hooks.service[i].e;
	return NULL;
}

static inline void ext_session_swept(struct worker *w, const char *full_jid)
{
	EXT_RUN(session_swept, w, full_jid);
}

/* Append every service's disco#items of host; how many. */
unsigned ext_domain_items(const struct worker *w, const char *host,
			  struct buf *out);

/* The extension that takes first-level elements of namespace
 * ns[0..nslen), or NULL (only for elements the core does not know). */
const struct ext *ext_nonza_owner(const char *ns, size_t nslen);

/* The IQ handler for payload q of an IQ of type get or set, or NULL: an
 * iq_child handler matching q's first child's namespace first, else the
 * first plain one. */
ext_iq_fn *ext_iq_handler(const struct xml_node *q, const char *type);
/* The plain (ext_iq) handler only, skipping iq_child ones: for a child
 * handler that declines (its feature turned off in the settings). */
ext_iq_fn *ext_iq_handler_plain(const struct xml_node *q, const char *type);

/* Append <feature var='...'/> for every extension's disco features. */
void ext_disco_features(struct buf *out);
/* Append every extension's disco_identities / account_identities. */
void ext_disco_identities(struct buf *out);
void ext_account_identities(struct buf *out);

#endif

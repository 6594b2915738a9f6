/*
 * sm.c - XEP-0198 Stream Management 1.6 (urn:xmpp:sm:3): acks, the
 * journal of unacknowledged stanzas, detached sessions and resumption on
 * any worker (docs/DESIGN.md "Stream management").
 *
 * State.  A session that sent <enable/> has a record in the smstore
 * (shm/smstore.h: shared memory that outlives the worker) and a struct
 * sm_conn in c->sm.  Every stanza conn_send gives the session is
 * appended to the record's journal first (stanza_sent hook) and freed
 * when the client acknowledges it (<a h/>).  Counters are modulo 2^32;
 * the store counts from the record's opening, the protocol from the
 * stream's enabling: base (kept in the record as this extension's saved
 * word) is the difference, non-zero after a handover.
 *
 * Detached sessions.  When the TCP connection of a resumable session is
 * lost without a closing of the stream, conn_close asks (detach hook)
 * and the conn stays: fd -1, bound, in the conn table and the session
 * table, so frames and local routing still reach it; conn_send appends
 * what comes to the journal only.  The tick hook ends it after max
 * seconds: conn_close, whose session_gone hook hands the journal to
 * conn_undelivered (messages to another resource or offline storage,
 * IQ requests answered with an error, presence dropped), after the
 * unavailable presence and the unbinding.  A clean close
 * (</stream:stream>) or a stream error ends the session the same way
 * at once: XEP-0198 section 5 resumes only streams that were not closed.
 *
 * Resumption on the same worker: the new conn N takes the old conn O's
 * session in one go (one thread, nothing can come in between): O lets
 * go (detached: freed; attached: <conflict/>), N gets the JID,
 * presence, directed presence and each extension's saved word, the
 * session-table entry is rewritten to N (shm_session_put: a concurrent
 * login that bound the same JID meanwhile is kicked, the later binding
 * wins as in bind.c), the record is re-pointed to N, <resumed/> is
 * sent, then the journal after the client's h.  Frames already queued
 * for O's id are forwarded to N (conn_gone hook).
 *
 * Resumption on another worker: N's worker B sends IPC_FRAME_SM_TAKE to
 * the record's slot A.  A checks the previd, the account and h, builds
 * IPC_FRAME_SM_GIVE (the state and the whole journal), sends it, marks
 * the record GIVEN and drops O, and from then on forwards every frame
 * and local stanza for O's id to B/N for sm.forward_time.  Why nothing
 * is lost in between: until B rewrites the session-table entry, senders
 * still address A/O; A forwards those to B on the same A->B queue, after
 * the GIVE (queues are FIFO per pair), so B has made N the session
 * before they arrive, and they follow the journal B re-sends.  Senders
 * that read the entry after B rewrote it address B/N directly.  A frame
 * for O that reaches A after the forwarding window is routed as
 * undelivered (to the bare JID or offline): late, never lost.  B then
 * sends IPC_FRAME_SM_DONE and A frees the record.  If the GIVE comes
 * after B gave up waiting (sm.handover_timeout) or after N closed, B
 * ends the session the expiry way (the stale table entry is removed
 * first so that rerouting cannot bounce between A and B).
 *
 * Resumption on another node of a cluster (docs/DESIGN.md "Cluster"):
 * the same frames, through the bridges (a frame from another node names
 * its sender, so worker_send_reply answers it).  The previd then
 * carries the minting node's tag and a MAC keyed from
 * cluster.secret_file (smwire_previd_join), so every node tells a
 * forgery at once; a previd not held here is asked of the worker that
 * made it (on the node its tag names, if up) and of the other live
 * nodes' workers holding a session of the account in the directory (it may
 * have moved since: XEP-0198 gives no new id), SM_TAKE_MAX at most; the
 * first GIVE wins, and when every one said NOT_FOUND (or none answered
 * in sm.handover_timeout: a dead node) the client gets
 * <item-not-found/>.  The giver drops its own table entry as it gives
 * to another node, so that the taker's, coming through the directory,
 * is entered there.  A single node's previds are as before.
 *
 * A KICK frame for O (a new login binding the same resource) is not
 * forwarded: if it reaches A before the TAKE, O ends and the resumption
 * fails with <item-not-found/>; after, the login bound first and N's
 * table write, later, replaces it (the login gets <conflict/>).  Either
 * way exactly one session holds the JID.
 *
 * Frame payloads: struct ipc_sm_take and struct ipc_sm_give with what
 * follows them are laid out in shm/ipc.h ("XEP-0198 hand-over
 * frames"); shm/smwire.c decodes each payload (pure functions, fuzzed by
 * fuzz/fuzz_sm.c) and writes them for this file.  A payload that does
 * not decode is logged and, when a client waits for it, answered
 * <failed><item-not-found/></failed>.  A session whose journal does not
 * fit a frame is not moved (the client gets <failed h/> and the journal
 * goes the expiry way at A).
 *
 * The h attribute of <a/> and <resume/> (and <enable max/>) is read by
 * smwire_parse_h: XEP-0198's xs:unsignedInt, so "+5", "005" and " 5 "
 * are 5; anything else (a sign '-', hex, empty, beyond 4294967295) is
 * bad-format on <a/> (a stream error) and bad-request on <resume/>.
 *
 * Failure policy: every misuse gets the XEP's answer (<failed/> with a
 * stanza error condition, or the stream error of section 4); a full
 * store refuses <enable/> with <resource-constraint/>; a journal that
 * cannot grow (sm.max_unacked, sm.max_unacked_bytes) ends that stream
 * with <policy-violation/> and its stanzas go the undelivered way; a
 * full pool ends the worker's largest journal that way (sm_evict_largest)
 * before the session that needs room, so that clients that never
 * acknowledge cannot end other users' sessions; nothing
 * stored is dropped without an error to someone.
 */
#include "sm.h"
#include "smwire.h"
#include "ext.h"
#include "config.h"
#include "log.h"
#include "secret.h"
#include "../shm/cluster.h"
#include "session.h"
#include "stanza.h"
#include "util.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

extern const struct ext sm_ext;

#define NS_STANZAS NS_STANZA_ERR

/* Sessions of an account looked at, at most, for one that waits
 * (sm_make_room) or that may hold a previd's session (sm_resume). */
#define SM_ROOM_LIST 64
/* Workers of other nodes asked for one session at most. */
#define SM_TAKE_MAX 8
/* A previd's text: smstore's id, and in a cluster the minting node's
 * tag and a MAC (smwire.h). */
#define SM_PREVID_TAG SMWIRE_PREVID_TAG
#define SM_PREVID_MAX SMWIRE_PREVID_MAX

struct sm_conn {
	struct sm_ref ref;
	int has_ref;            /* a record in the store is ours */
	int moved;              /* the session went to another conn */
	int resumable;
	int resending;          /* journal re-sent: not appended again */
	int r_pending;          /* our <r/> waits for its <a/> */
	int r_due;              /* ask before the next stanza */
	uint32_t h_in;          /* stanzas handled from the client */
	uint32_t h_sent;        /* stanzas sent */
	uint32_t h_acked;       /* the client's last h */
	uint32_t base;          /* protocol counter - store counter */
	uint32_t max_s;
	uint64_t out_from;      /* out_total when the journal began */
	int64_t detached_ms;    /* CLOCK_MONOTONIC ms, 0 attached */
	/* <resume/> waiting for another worker's SM_GIVE: a worker of
	 * this node (take_node 0, take_slot), or up to SM_TAKE_MAX workers
	 * of other nodes (through the bridge), of which one at most holds
	 * it; the others answer NOT_FOUND */
	int64_t take_deadline;
	uint32_t take_h;
	uint16_t take_slot;
	uint8_t take_n, take_pending;
	uint8_t take_node[SM_TAKE_MAX], take_rslot[SM_TAKE_MAX];
	char id[SM_PREVID_MAX];     /* the previd the client holds */
	/* frames from other nodes in the journal (worker/settle.h), keyed
	 * by their h: each done with once the client's h covers it, or the
	 * journal is handed on or rerouted */
	struct settle_list holds;
};

/* Where a session went: its connection on a worker of this node, or
 * of another node through the bridge's slot (node, rslot; else 0). */
struct sm_dest {
	uint16_t slot;
	uint8_t node, rslot;
	uint32_t id, gen;
};

/* Frames for a conn whose session moved go to where it is now. */
struct sm_fwd {
	uint32_t old_id, old_gen;
	uint16_t slot;
	uint8_t node, rslot;    /* a taker on another node (through the
				   bridge's slot), else 0 */
	uint32_t id, gen;
	int64_t until;
	struct sm_ref ref;      /* GIVEN record, freed on SM_DONE */
	int ref_open;
	/* frames from other nodes the journal held, handed to another
	 * node (settle.h): that node holds the SM_GIVE frame itself
	 * until its client acknowledges; ours stay held here for
	 * sm.forward_time as well (a taker of this node borrows them
	 * instead: settle_lend_list) */
	struct settle_list holds;
};

static struct sm_fwd *sm_fwds;
static unsigned sm_nfwd, sm_fwd_cap;

_Static_assert(IPC_SM_EXT_WORDS >= EXT_MAX, "ipc_sm_give.words");
_Static_assert(SECRET_KEY_BYTES == SMWIRE_KEY_BYTES, "previd key");

static struct smstore *sm_store(const struct worker *w)
{
	return w->shm->smstore;
}

static unsigned sm_index(void)
{
	static unsigned idx = EXT_MAX;
	if (idx == EXT_MAX)
		for (unsigned i = 0; i < ext_count; i++)
			if (ext_all[i] == &sm_ext)
				idx = i;
	return idx;
}

/* ---- previds across the nodes of a cluster ------------------------------ */

/* The key of previd tags and MACs: derived from cluster.secret_file by
 * the master before forking (sm_seed_secret), the same on every node,
 * so that a previd one node made verifies on any other. */
static unsigned char sm_previd_key[SECRET_KEY_BYTES];
static int sm_previd_keyed;

void sm_seed_secret(const unsigned char key[SECRET_KEY_BYTES])
{
	secret_derive(key, "xmppd sm previd v1", sm_previd_key,
		      sizeof(sm_previd_key));
	sm_previd_keyed = 1;
}

static int sm_cluster(const struct worker *w)
{
	return config_cluster_on(w->cfg) && sm_previd_keyed;
}

/* The previd of <enabled id/>: smstore's id, and in a cluster this
 * node's tag and the MAC (smwire.h). */
static void sm_previd_make(const struct worker *w, const char *local,
			   char out[SM_PREVID_MAX])
{
	uint8_t tag[SM_PREVID_TAG];
	if (sm_cluster(w)) {
		smwire_node_tag(sm_previd_key, w->cfg->cluster_node, tag);
		if (smwire_previd_join(sm_previd_key, local, tag, out) == 0)
			return;
	}
	snprintf(out, SM_PREVID_MAX, "%s", local);
}

/* A previd the client sent: its smstore part into local and the
 * minting node's tag.  0 when it is well formed for this node (a
 * cluster previd whose MAC verifies, or a single node's), -1 when not:
 * forged, another cluster's, or a single node's while we are in a
 * cluster (and the reverse) -- item-not-found either way. */
static int sm_previd_parse(const struct worker *w, const char *previd,
			   char local[SMSTORE_ID_MAX],
			   uint8_t tag[SM_PREVID_TAG])
{
	return smwire_previd_split(sm_cluster(w) ? sm_previd_key : NULL,
				   previd, strlen(previd), local, tag);
}

/* Whether node i of the node table is up or suspect: a node taken for
 * dead has no session to give (its entries are being swept). */
static int sm_node_alive(const struct worker *w, unsigned i)
{
	struct ipc_cluster_node e;
	return i > 0 && i < IPC_MAX_NODES &&
	       shm_cluster_read_node(&w->shm->hdr->cluster, i, &e) &&
	       (e.state == IPC_NODE_UP || e.state == IPC_NODE_SUSPECT);
}

/* The node table index of the node whose tag this is, up or suspect,
 * or 0. */
static unsigned sm_tag_node(const struct worker *w,
			    const uint8_t tag[SM_PREVID_TAG])
{
	const struct ipc_cluster *cl = &w->shm->hdr->cluster;
	unsigned n = METRIC_GET(cl->nnodes);
	struct ipc_cluster_node e;
	uint8_t t[SM_PREVID_TAG];
	for (unsigned i = 1; i < n && i < IPC_MAX_NODES; i++) {
		if (!shm_cluster_read_node(cl, i, &e) ||
		    (e.state != IPC_NODE_UP && e.state != IPC_NODE_SUSPECT))
			continue;
		e.name[sizeof(e.name) - 1] = '\0';
		smwire_node_tag(sm_previd_key, e.name, t);
		if (memcmp(t, tag, SM_PREVID_TAG) == 0)
			return i;
	}
	return 0;
}

/* ---- small writers ------------------------------------------------------ */

static void sm_send_str(struct conn *c, const char *s)
{
	conn_send(c, s, strlen(s));
}

/* <failed/> with a stanza error condition, and h when known. */
static void sm_failed(struct conn *c, const char *condition, int with_h,
		      uint32_t h)
{
	char out[256];
	if (with_h)
		snprintf(out, sizeof(out), "<failed xmlns='" NS_SM "' h='%u'>"
			 "<%s xmlns='" NS_STANZAS "'/></failed>", h, condition);
	else
		snprintf(out, sizeof(out), "<failed xmlns='" NS_SM "'>"
			 "<%s xmlns='" NS_STANZAS "'/></failed>", condition);
	sm_send_str(c, out);
}

/* Section 4: an h beyond what was sent. */
static void sm_too_high(struct conn *c, uint32_t h, uint32_t sent)
{
	char app[160];
	snprintf(app, sizeof(app), "<handled-count-too-high xmlns='" NS_SM
		 "' h='%u' send-count='%u'/>", h, sent);
	log_info("c%u %s: acknowledged %u stanzas, %u were sent", c->id,
		 c->peer, h, sent);
	stream_error_app(c, "undefined-condition", NULL, app);
}

static void sm_request(struct conn *c)
{
	static const char r[] = "<r xmlns='" NS_SM "'/>";
	c->sm->r_pending = 1;
	c->sm->r_due = 0;
	conn_send(c, r, sizeof(r) - 1);
}

/* h acknowledges stanzas up to h: not beyond h_sent (mod 2^32). */
static int sm_h_ok(uint32_t h, uint32_t acked, uint32_t sent)
{
	return (uint32_t)(h - acked) <= (uint32_t)(sent - acked);
}

/* The bare part of a full JID equals user@domain. */
static int sm_same_account(const char *full, const char *user,
			   const char *domain)
{
	size_t ul = strlen(user), dl = strlen(domain);
	return strncmp(full, user, ul) == 0 && full[ul] == '@' &&
	       strncasecmp(full + ul + 1, domain, dl) == 0 &&
	       full[ul + 1 + dl] == '/';
}

/* ---- frames from other nodes the journal holds (settle.h) -------------- */

/* The frame being routed is in the journal as stanza h. */
static void sm_hold_h(struct worker *w, struct sm_conn *s, uint32_t h)
{
	settle_list_hold(&w->settle, &s->holds, h);
}

/* The client has every stanza up to h (h wraps: compared as a
 * difference). */
static void sm_settle_acked(struct worker *w, struct sm_conn *s, uint32_t h)
{
	struct settle_held *e;
	while ((e = settle_list_first(&s->holds)) != NULL &&
	       (int32_t)((uint32_t)e->key - h) <= 0)
		settle_list_release_first(&w->settle, &s->holds);
}

static void sm_conn_free(struct worker *w, struct sm_conn *s)
{
	if (s == NULL)
		return;
	settle_list_free(&w->settle, &s->holds);
	free(s);
}

/* ---- the journal -------------------------------------------------------- */

static void sm_save_words(struct conn *c)
{
	struct smstore *st = sm_store(c->w);
	for (unsigned i = 0; i < ext_count; i++)
		if (ext_all[i]->session_save != NULL)
			smstore_set_ext_word(st, &c->sm->ref, i,
					     ext_all[i]->session_save(c));
	smstore_set_ext_word(st, &c->sm->ref, sm_index(), c->sm->base);
}

static void sm_save_presence(struct conn *c)
{
	const char *error;
	const char *p = c->available ? c->last_presence : NULL;
	if (smstore_set_presence(sm_store(c->w), &c->sm->ref, c->priority,
				 (uint8_t)(c->available ? 1 : 0), p,
				 p ? strlen(p) : 0, &error) < 0)
		log_warn("c%u %s: presence not kept for resumption: %s", c->id,
			 c->peer, error);
}

static int sm_reroute_one(uint32_t seq, const char *data, size_t len,
			  void *ctx)
{
	struct conn *c = ctx;
	struct sm_conn *s = c->sm;
	/* a frame from another node the journal held: held on until it is
	 * routed again (its h is the store's number plus base) */
	struct settle_held *e;
	uint32_t h = seq + s->base;
	sm_settle_acked(c->w, s, h - 1);
	e = settle_list_first(&s->holds);
	conn_undelivered_held(c->w, c->id, c->gen, data, len,
			      e != NULL && (uint32_t)e->key == h ? &e->h : NULL);
	if (e != NULL && (uint32_t)e->key == h)
		settle_list_release_first(&c->w->settle, &s->holds);
	return 0;
}

/* The session ends: what the client did not acknowledge goes the way of
 * stanzas a closed connection never wrote; the record is freed. */
static void sm_end(struct conn *c)
{
	struct sm_conn *s = c->sm;
	if (s == NULL || s->moved || !s->has_ref)
		return;
	uint32_t n = s->h_sent - s->h_acked;
	if (n > 0)
		log_info("c%u %s: stream management ends with %u stanzas "
			 "unacknowledged: routed as undelivered", c->id,
			 c->peer, n);
	smstore_foreach_unacked(sm_store(c->w), &s->ref, sm_reroute_one, c);
	smstore_close(sm_store(c->w), &s->ref);
	s->has_ref = 0;
	settle_list_release_all(&c->w->settle, &s->holds);
}

/* ---- hooks -------------------------------------------------------------- */

static void sm_features(struct conn *c, struct buf *out)
{
	(void)c;
	buf_appendf(out, "<sm xmlns='" NS_SM "'/>");
}

static void sm_received(struct conn *c)
{
	struct sm_conn *s = c->sm;
	if (s == NULL || s->moved || !s->has_ref)
		return;
	s->h_in++;
	smstore_set_h_in(sm_store(c->w), &s->ref, s->h_in);
}

/* Pool blocks a record holds, about: its bytes plus up to one block's
 * rounding per stanza (what the pool really gives is whole blocks). */
static uint64_t sm_pool_cost(const struct sm_state *st)
{
	return st->unacked_bytes + (uint64_t)st->unacked * IPC_SM_BLOCK +
	       st->presence_len;
}

/* The worker's pool (sm.pool_bytes_per_worker) is full while c needs
 * room: the session of this worker holding the most of it ends (its
 * stanzas go the undelivered way, offline storage), not whichever
 * session needs a block next, so that clients that never acknowledge
 * cannot end everyone else's sessions.  1 when a session larger than
 * c's was ended (its blocks are free now), 0 when c is the largest. */
static int sm_evict_largest(struct conn *c)
{
	static int evicting;
	struct smstore *st = sm_store(c->w);
	struct sm_state *a = malloc(sizeof(*a));
	struct conn *big = NULL;
	uint64_t big_cost = 0, mine = 0;
	uint32_t big_n = 0;
	int ret = 0;

	if (a == NULL || evicting)
		goto out;
	if (smstore_read(st, &c->sm->ref, a) == 0)
		mine = sm_pool_cost(a);
	big_cost = mine;
	for (struct conn *o = c->w->conns; o != NULL; o = o->next) {
		if (o == c || o->closed || o->sm == NULL || o->sm->moved ||
		    !o->sm->has_ref || smstore_read(st, &o->sm->ref, a) < 0 ||
		    sm_pool_cost(a) <= big_cost)
			continue;
		big = o;
		big_cost = sm_pool_cost(a);
		big_n = a->unacked;
	}
	if (big == NULL)
		goto out;
	log_warn("c%u %s: stream management pool full "
		 "(sm.pool_bytes_per_worker): ending the largest journal, "
		 "c%u %s (%u stanzas, about %llu bytes), not this one (about "
		 "%llu bytes)", c->id, c->jid ? c->jid : c->peer, big->id,
		 big->jid ? big->jid : big->peer, big_n,
		 (unsigned long long)big_cost, (unsigned long long)mine);
	evicting = 1;
	/* the journal goes first (its blocks are free at once, and what
	 * the goodbye sends others can be journaled), then the stream */
	sm_end(big);
	if (big->detached) {
		/* not closed here (our caller may be walking the conn list):
		 * out of the table now, closed by the next tick; what still
		 * comes to it goes elsewhere (sm_sent) */
		log_info("c%u: detached session %s ends: <policy-violation/>",
			 big->id, big->jid ? big->jid : "?");
		presence_session_gone(big);
		bind_release(big);
		big->sm->detached_ms = 1;
		big->sm->max_s = 0;
	} else {
		stream_error(big, "policy-violation",
			     "too many unacknowledged stanzas");
		big->out_shed = 1;  /* later stanzas go elsewhere at once */
	}
	evicting = 0;
	ret = 1;
out:
	free(a);
	return ret;
}

static int sm_sent(struct conn *c, const char *data, size_t len)
{
	struct sm_conn *s = c->sm;
	const char *error;
	int r;
	if (s == NULL || s->moved || s->resending)
		return 0;
	if (!s->has_ref)    /* a detached session whose journal ended */
		return c->detached && s->take_deadline == 0 ? -1 : 0;
	uint32_t unacked = s->h_sent - s->h_acked;
	if (unacked >= c->w->cfg->sm_max_unacked) {
		log_info("c%u %s: %u stanzas unacknowledged "
			 "(sm.max_unacked): ending the session", c->id,
			 c->peer, unacked);
		stream_error(c, "policy-violation",
			     "too many unacknowledged stanzas");
		return -1;
	}
	/* a full pool: the largest journals go first, a few at most */
	/* with the token of another node's frame: a worker adopting the
	 * journal after a crash holds it on (settle.h) */
	for (int i = 0; (r = smstore_append_token(sm_store(c->w), &s->ref,
			data, len, settle_token(&c->w->settle), &error)) < 0 &&
	     i < 8 && strstr(error, "sm.pool_bytes_per_worker") != NULL &&
	     sm_evict_largest(c); i++)
		;
	if (r < 0) {
		log_warn("c%u %s: stanza not journaled (%s): ending the "
			 "session", c->id, c->peer, error);
		stream_error(c, "policy-violation",
			     "too many unacknowledged stanzas");
		return -1;
	}
	/* the <r/> asked for by the previous stanza goes before this one */
	if (s->r_due && !s->r_pending && !c->detached)
		sm_request(c);
	s->h_sent++;
	sm_hold_h(c->w, s, s->h_sent);
	if (!s->r_pending && unacked + 1 >= c->w->cfg->sm_max_unacked / 2)
		s->r_due = 1;
	return 0;
}

/* Output drained with stanzas unacknowledged: one <r/> at a time. */
static void sm_drained(struct conn *c)
{
	struct sm_conn *s = c->sm;
	if (s == NULL || s->moved || !s->has_ref || c->detached ||
	    c->want_close || s->r_pending || s->h_sent == s->h_acked)
		return;
	sm_request(c);
	conn_flush(c);
}

static int sm_detach(struct conn *c)
{
	struct sm_conn *s = c->sm;
	if (s == NULL || s->moved || !s->has_ref || !s->resumable ||
	    s->take_deadline != 0)
		return 0;
	s->detached_ms = time_now_ms();
	s->r_pending = 0;
	s->r_due = 0;
	smstore_set_state(sm_store(c->w), &s->ref, SM_REC_DETACHED,
			  s->detached_ms);
	return 1;
}

static void sm_gone(struct conn *c)
{
	sm_end(c);
}

static void sm_free(struct conn *c)
{
	sm_conn_free(c->w, c->sm);
	c->sm = NULL;
}

static void sm_presence(struct conn *c, const struct xml_node *st,
			int initial)
{
	(void)st;
	(void)initial;
	if (c->sm != NULL && !c->sm->moved && c->sm->has_ref)
		sm_save_presence(c);
}

static void sm_session_changed(struct conn *c)
{
	if (c->sm != NULL && !c->sm->moved && c->sm->has_ref)
		sm_save_words(c);
}

/* ---- <enable/> ---------------------------------------------------------- */

static void sm_enable(struct conn *c, struct xml_node *n)
{
	const char *resume = xml_attr(n, "resume");
	const char *max = xml_attr(n, "max");
	const char *error;
	char id[SMSTORE_ID_MAX], previd[SM_PREVID_MAX];
	struct sm_ref ref;
	uint32_t max_s = c->w->cfg->sm_max_resume_s, want;
	int resumable = resume != NULL && (strcmp(resume, "true") == 0 ||
					   strcmp(resume, "1") == 0);

	if (!c->bound || c->sm != NULL) {
		log_info("c%u %s: <enable/> %s", c->id, c->peer,
			 c->sm ? "twice" : "before binding");
		sm_failed(c, "unexpected-request", 0, 0);
		return;
	}
	if (sm_store(c->w) == NULL) {
		sm_failed(c, "feature-not-implemented", 0, 0);
		return;
	}
	if (max != NULL && smwire_parse_h(max, &want) == 0 && want > 0 &&
	    want < max_s)
		max_s = want;
	id[0] = '\0';
	if (smstore_open(sm_store(c->w), c->w->slot, c->jid, c->id, c->gen,
			 resumable, max_s, &ref, id, &error) < 0) {
		log_warn("c%u %s: stream management refused: %s", c->id,
			 c->peer, error);
		sm_failed(c, "resource-constraint", 0, 0);
		return;
	}
	struct sm_conn *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		smstore_close(sm_store(c->w), &ref);
		sm_failed(c, "resource-constraint", 0, 0);
		return;
	}
	s->ref = ref;
	s->has_ref = 1;
	s->resumable = resumable;
	s->max_s = max_s;
	s->out_from = c->out_total;
	sm_previd_make(c->w, id, previd);
	snprintf(s->id, sizeof(s->id), "%s", previd);
	c->sm = s;
	smstore_set_mech(sm_store(c->w), &ref, c->mech);
	sm_save_words(c);
	if (c->available)
		sm_save_presence(c);
	struct buf out;
	buf_init(&out, 0);
	if (resumable) {
		buf_appendf(&out, "<enabled xmlns='" NS_SM "' id='");
		xml_escape(&out, previd, strlen(previd), 1);
		buf_appendf(&out, "' resume='true' max='%u'/>", max_s);
	} else {
		buf_appendf(&out, "<enabled xmlns='" NS_SM "'/>");
	}
	conn_send(c, buf_head(&out), buf_used(&out));
	buf_free(&out);
	/* the stanzas after <enabled/> are journaled (stanza_sent): not
	 * taken back at a close (conn.c), rerouted from the journal */
	s->out_from = c->out_total;
	c->out_journaled = s->out_from ? s->out_from : 1;
	ext_filter(c, &sm_ext, 1);
	log_info("c%u %s: stream management enabled%s (max %us)", c->id,
		 c->peer, resumable ? " with resumption" : "", max_s);
}

/* ---- <a/> and <r/> ------------------------------------------------------ */

static void sm_ack(struct conn *c, struct xml_node *n)
{
	struct sm_conn *s = c->sm;
	uint32_t h;
	if (s == NULL || s->moved || !s->has_ref) {
		stream_error(c, "unsupported-stanza-type",
			     "stream management is not enabled");
		return;
	}
	if (smwire_parse_h(xml_attr(n, "h"), &h) < 0) {
		stream_error(c, "bad-format", "<a/> without a valid h");
		return;
	}
	if (!sm_h_ok(h, s->h_acked, s->h_sent)) {
		sm_too_high(c, h, s->h_sent);
		return;
	}
	if (smstore_ack(sm_store(c->w), &s->ref, h - s->base) < 0) {
		sm_too_high(c, h, s->h_sent);
		return;
	}
	s->h_acked = h;
	s->r_pending = 0;
	sm_settle_acked(c->w, s, h);
}

static void sm_answer(struct conn *c)
{
	char out[64];
	if (c->sm == NULL || c->sm->moved || !c->sm->has_ref) {
		stream_error(c, "unsupported-stanza-type",
			     "stream management is not enabled");
		return;
	}
	snprintf(out, sizeof(out), "<a xmlns='" NS_SM "' h='%u'/>",
		 c->sm->h_in);
	sm_send_str(c, out);
}

/* ---- forwarding frames of a moved session ------------------------------- */

static void sm_fwd_add(const struct conn *o, const struct sm_dest *to,
		       const struct sm_ref *ref)
{
	if (sm_nfwd == sm_fwd_cap) {
		unsigned cap = sm_fwd_cap ? sm_fwd_cap * 2 : 16;
		struct sm_fwd *f = realloc(sm_fwds, cap * sizeof(*f));
		if (f == NULL) {
			log_error("c%u: no memory to forward the frames of a "
				  "moved session: they go as undelivered",
				  o->id);
			if (ref != NULL)
				smstore_close(sm_store(o->w), ref);
			return;
		}
		sm_fwds = f;
		sm_fwd_cap = cap;
	}
	struct sm_fwd *f = &sm_fwds[sm_nfwd++];
	memset(f, 0, sizeof(*f));
	f->old_id = o->id;
	f->old_gen = o->gen;
	f->slot = to->slot;
	f->node = to->node;
	f->rslot = to->rslot;
	f->id = to->id;
	f->gen = to->gen;
	f->until = o->w->now_ms + (int64_t)o->w->cfg->sm_forward_time;
	if (ref != NULL) {
		f->ref = *ref;
		f->ref_open = 1;
	}
}

static struct sm_fwd *sm_fwd_find(uint32_t id, uint32_t gen)
{
	for (unsigned i = 0; i < sm_nfwd; i++)
		if (sm_fwds[i].old_id == id && sm_fwds[i].old_gen == gen)
			return &sm_fwds[i];
	return NULL;
}

static int sm_conn_gone(struct worker *w, const struct ipc_frame_header *hdr,
			const char *payload, size_t len)
{
	const char *error;
	struct sm_fwd *f = sm_nfwd ? sm_fwd_find(hdr->conn_id, hdr->gen)
				   : NULL;
	if (f == NULL)
		return 0;
	if (f->slot != w->slot || f->node != 0) {
		if (worker_send_node(w, f->slot, f->node, f->rslot, hdr->type,
				     f->id, f->gen, payload, len, &error) < 0) {
			log_warn("forward to w%u: %s", f->slot, error);
			return 0;
		}
		return 1;
	}
	struct ipc_frame_header h = *hdr;
	h.conn_id = f->id;
	h.gen = f->gen;
	if (conn_lookup(w, f->id, f->gen) == NULL)
		return 0;
	route_frame(w, &h, payload, len);
	return 1;
}

/* ---- taking a session over ---------------------------------------------- */

/* What moves with a session, from O or from an SM_GIVE. */
struct sm_moving {
	const char *jid;
	int16_t priority;
	uint8_t available;
	int64_t since;
	uint32_t h_in, max_s;
	char *presence;         /* malloc()ed, or NULL */
	char **directed;        /* malloc()ed list of malloc()ed */
	unsigned ndirected;
	uint32_t words[EXT_MAX];
};

/* N becomes the session: the JID, presence, the session-table entry
 * (replacing the old holder's: `old_at`'s slot, or its node and rslot
 * when on another node, with conn_id and gen; any other holder is
 * kicked). */
static int sm_become(struct conn *n, struct sm_moving *m,
		     const struct sm_dest *old_at)
{
	struct session_info info, old;
	const char *error;
	memset(&info, 0, sizeof(info));
	snprintf(info.jid, sizeof(info.jid), "%s", m->jid);
	info.slot = (uint16_t)n->w->slot;
	info.conn_id = n->id;
	info.gen = n->gen;
	info.since = m->since ? m->since : time(NULL);
	info.active = time(NULL);
	info.priority = m->priority;
	info.available = m->available;
	info.mech = n->mech;
	char *jid = strdup(m->jid);
	if (jid == NULL)
		return -1;
	int r = shm_session_put(n->w->shm->sessions, &info, &old, &error);
	if (r < 0) {
		log_warn("c%u %s: resumption of %s: %s", n->id, n->peer, m->jid,
			 error);
		free(jid);
		return -1;
	}
	n->jid = jid;
	n->bound = 1;
	n->deadline_ms = 0;
	n->priority = m->priority;
	n->available = m->available;
	n->last_presence = m->presence;
	m->presence = NULL;
	n->directed = m->directed;
	n->ndirected = m->ndirected;
	m->directed = NULL;
	m->ndirected = 0;
	n->touched_ms = n->w->now_ms;
	struct session_info self;
	n->sess_index = shm_session_get(n->w->shm->sessions, n->jid, &self) == 1
			? self.index : -1;
	shm_session_set_presence(n->w->shm->sessions, n->jid,
				 (uint16_t)n->w->slot, n->id, n->gen,
				 n->priority, n->available);
	int same = old.node == old_at->node && old.conn_id == old_at->id &&
		   old.gen == old_at->gen &&
		   (old.node == 0 ? old.slot == old_at->slot
				  : old.rslot == old_at->rslot);
	if (r == 1 && !same) {
		/* a login bound this JID after the session was detached:
		 * the later binding (this one) wins, as in bind.c */
		log_info("c%u %s: %s resumed over a newer login (w%u c%u): "
			 "that one gets <conflict/>", n->id, n->peer, n->jid,
			 old.slot, old.conn_id);
		bind_kick(n, &old);
	}
	ext_session_restore(n, m->words, EXT_MAX);
	return 0;
}

static int sm_resend_one(uint32_t seq, const char *data, size_t len,
			 void *ctx)
{
	struct conn *c = ctx;
	(void)seq;
	conn_send(c, data, len);
	return 0;
}

/* <resumed/>, then the journal after the client's h. */
static void sm_resumed(struct conn *n, uint32_t h)
{
	struct sm_conn *s = n->sm;
	struct buf out;
	buf_init(&out, 0);
	buf_appendf(&out, "<resumed xmlns='" NS_SM "' h='%u' previd='",
		    s->h_in);
	xml_escape(&out, s->id, strlen(s->id), 1);
	buf_appendf(&out, "'/>");
	conn_send(n, buf_head(&out), buf_used(&out));
	buf_free(&out);
	s->out_from = n->out_total;
	n->out_journaled = s->out_from ? s->out_from : 1;
	smstore_ack(sm_store(n->w), &s->ref, h - s->base);
	s->h_acked = h;
	sm_settle_acked(n->w, s, h);
	uint32_t again = s->h_sent - s->h_acked;
	s->resending = 1;
	smstore_foreach_unacked(sm_store(n->w), &s->ref, sm_resend_one, n);
	s->resending = 0;
	log_info("c%u %s: resumed %s (previd %s): %u stanzas sent again",
		 n->id, n->peer, n->jid, s->id, again);
	if (again > 0 && !s->r_pending)
		sm_request(n);
}

/* O lets go of its session (moved to `to`; its struct sm_conn was
 * taken by the caller): no presence, no unbinding, nothing rerouted; an
 * open socket gets <conflict/> (section 5).  ref: a GIVEN record to free
 * on SM_DONE, or NULL. */
static void sm_let_go(struct conn *o, const struct sm_dest *to,
		      const struct sm_ref *ref)
{
	struct sm_conn *marker = calloc(1, sizeof(*marker));
	sm_fwd_add(o, to, ref);
	if (marker != NULL)
		marker->moved = 1;
	o->out_journaled = 1;   /* what out holds is in the journal */
	o->sm = marker;
	ext_filter(o, &sm_ext, 0);
	o->bound = 0;           /* its table entry is the new session's */
	o->available = 0;       /* and so is its presence */
	if (o->detached)
		conn_close(o);
	else
		stream_error(o, "conflict", "Resumed by another connection");
}

/* On the same worker. */
static void sm_resume_local(struct conn *n, struct conn *o, uint32_t h)
{
	struct sm_conn *s = o->sm;
	struct sm_moving m;
	memset(&m, 0, sizeof(m));
	m.jid = o->jid;
	m.priority = o->priority;
	m.available = (uint8_t)(o->available ? 1 : 0);
	m.h_in = s->h_in;
	m.max_s = s->max_s;
	m.presence = o->last_presence;
	m.directed = o->directed;
	m.ndirected = o->ndirected;
	struct session_info old;
	m.since = shm_session_get(o->w->shm->sessions, o->jid, &old) == 1 ?
		  old.since : 0;
	for (unsigned i = 0; i < ext_count; i++)
		m.words[i] = ext_session_word(o, i);
	struct sm_dest was = { .slot = (uint16_t)o->w->slot, .id = o->id,
			       .gen = o->gen };
	if (sm_become(n, &m, &was) < 0) {
		sm_failed(n, "internal-server-error", 0, 0);
		return;
	}
	o->last_presence = NULL;
	o->directed = NULL;
	o->ndirected = 0;
	/* the session's SM state moves as it is */
	o->sm = NULL;
	n->sm = s;
	s->detached_ms = 0;
	s->r_pending = 0;
	s->r_due = 0;
	struct sm_dest to = { .slot = (uint16_t)n->w->slot, .id = n->id,
			      .gen = n->gen };
	sm_let_go(o, &to, NULL);
	smstore_set_ids(sm_store(n->w), &s->ref, n->id, n->gen);
	smstore_set_state(sm_store(n->w), &s->ref, SM_REC_ATTACHED, 0);
	smstore_set_mech(sm_store(n->w), &s->ref, n->mech);
	ext_filter(n, &sm_ext, 1);
	sm_resumed(n, h);
}

/* ---- <resume/> ---------------------------------------------------------- */

/* A worker asked for a session: of this node (node 0, slot), or of
 * another node through the bridge's slot (node, rslot). */
struct sm_ask {
	uint16_t slot;
	uint8_t node, rslot;
};

/* Ask the workers in `to` for the session `local` names (SM_TAKE):
 * one holds it at most, and answers SM_GIVE with it; n waits until
 * sm.handover_timeout.  When no frame can be sent, the client gets
 * <failed/> at once. */
static void sm_take(struct conn *n, const char *previd, const char *local,
		    uint32_t h, const struct sm_ask *to, unsigned nto)
{
	char bare[IPC_JID_MAX + 1];
	int bl = snprintf(bare, sizeof(bare), "%s@%s", n->user, n->domain);
	struct smwire_take t = { h, local, strlen(local), bare,
				 bl < 0 ? 0 : (size_t)bl };
	struct buf out;
	const char *error = "";
	struct sm_conn *s = calloc(1, sizeof(*s));
	buf_init(&out, 0);
	if (s == NULL || bl < 0 || (size_t)bl >= sizeof(bare) ||
	    smwire_take_encode(&out, &t, &error) < 0) {
		buf_free(&out);
		free(s);
		sm_failed(n, "item-not-found", 0, 0);
		return;
	}
	for (unsigned i = 0; i < nto && s->take_n < SM_TAKE_MAX; i++) {
		if (queue_send_node(n->w->q, to[i].slot, to[i].node,
				    to[i].rslot, IPC_FRAME_SM_TAKE, n->id,
				    n->gen, buf_head(&out), buf_used(&out),
				    &error) < 0) {
			log_warn("c%u %s: resumption: to w%u (node %u w%u): "
				 "%s", n->id, n->peer, to[i].slot, to[i].node,
				 to[i].rslot, error);
			continue;
		}
		s->take_node[s->take_n] = to[i].node;
		s->take_rslot[s->take_n] = to[i].rslot;
		s->take_n++;
	}
	buf_free(&out);
	if (s->take_n == 0) {
		free(s);
		sm_failed(n, "resource-constraint", 0, 0);
		return;
	}
	snprintf(s->id, sizeof(s->id), "%s", previd);
	s->take_h = h;
	s->take_slot = to[0].slot;
	s->take_pending = s->take_n;
	s->take_deadline = n->w->now_ms +
			   (int64_t)n->w->cfg->sm_handover_timeout;
	if (s->take_deadline == 0)
		s->take_deadline = 1;
	n->sm = s;
	if (to[0].node == 0)
		log_info("c%u %s: resumption: asking w%u for the session",
			 n->id, n->peer, to[0].slot);
	else
		log_info("c%u %s: resumption: asking %u worker(s) of other "
			 "nodes for the session (first: node %u w%u)", n->id,
			 n->peer, s->take_n, to[0].node, to[0].rslot);
}

/* 1 when the SM_GIVE of hdr answers n's SM_TAKE (from a worker asked). */
static int sm_take_from(const struct sm_conn *s,
			const struct ipc_frame_header *hdr)
{
	if (hdr->node == 0)
		return s->take_n == 1 && s->take_node[0] == 0 &&
		       s->take_slot == hdr->src_slot;
	for (unsigned i = 0; i < s->take_n; i++)
		if (s->take_node[i] == hdr->node &&
		    s->take_rslot[i] == hdr->node_slot)
			return 1;
	return 0;
}

static void sm_ask_add(struct sm_ask *to, unsigned *k, uint16_t slot,
		       uint8_t node, uint8_t rslot)
{
	for (unsigned i = 0; i < *k; i++)
		if (to[i].node == node && to[i].rslot == rslot)
			return;
	if (*k < SM_TAKE_MAX)
		to[(*k)++] = (struct sm_ask){ slot, node, rslot };
}

/* Who on other nodes may hold the session of a previd not held here:
 * the worker that made it, on the node its tag names (if that node is
 * up), and the workers of other nodes holding a session of the account
 * (the session may have moved since: a detached session keeps its
 * directory entry, so its holder is among them).  The count. */
static unsigned sm_remote_holders(struct conn *n, const char *local,
				  const uint8_t tag[SM_PREVID_TAG],
				  struct sm_ask to[SM_TAKE_MAX])
{
	struct worker *w = n->w;
	struct sm_ref names;
	struct session_info *list;
	char bare[IPC_JID_MAX + 1];
	unsigned k = 0, idx = sm_tag_node(w, tag);
	if (w->nslots <= w->nworkers)
		return 0;       /* no bridge */
	if (idx != 0 && smstore_id_names(local, strlen(local), &names) == 0 &&
	    names.slot <= UINT8_MAX)
		sm_ask_add(to, &k, (uint16_t)w->nworkers, (uint8_t)idx,
			   (uint8_t)names.slot);
	if ((size_t)snprintf(bare, sizeof(bare), "%s@%s", n->user,
			     n->domain) >= sizeof(bare) ||
	    (list = calloc(SM_ROOM_LIST, sizeof(*list))) == NULL)
		return k;
	int nl = shm_session_list(w->shm->sessions, bare, list, SM_ROOM_LIST);
	for (int i = 0; i < nl && i < SM_ROOM_LIST; i++)
		if (list[i].node != 0 && sm_node_alive(w, list[i].node))
			sm_ask_add(to, &k, list[i].slot, list[i].node,
				   list[i].rslot);
	free(list);
	return k;
}

static void sm_resume(struct conn *n, struct xml_node *x)
{
	const char *previd = xml_attr(x, "previd");
	char local[SMSTORE_ID_MAX];
	uint8_t tag[SM_PREVID_TAG];
	struct sm_ref ref;
	struct sm_state st;
	uint32_t h;

	if (!n->authenticated || n->bound || n->sm != NULL) {
		log_info("c%u %s: <resume/> %s", n->id, n->peer,
			 !n->authenticated ? "before authentication" :
			 n->bound ? "after binding" : "twice");
		sm_failed(n, "unexpected-request", 0, 0);
		return;
	}
	if (sm_store(n->w) == NULL) {
		sm_failed(n, "feature-not-implemented", 0, 0);
		return;
	}
	if (previd == NULL || smwire_parse_h(xml_attr(x, "h"), &h) < 0) {
		sm_failed(n, "bad-request", 0, 0);
		return;
	}
	if (sm_previd_parse(n->w, previd, local, tag) < 0) {
		log_info("c%u %s: <resume/> with a previd no node of ours "
			 "made", n->id, n->peer);
		sm_failed(n, "item-not-found", 0, 0);
		return;
	}
	if (smstore_find(sm_store(n->w), local, strlen(local), &ref) != 1) {
		struct sm_ask to[SM_TAKE_MAX];
		unsigned nto = sm_cluster(n->w) ?
			       sm_remote_holders(n, local, tag, to) : 0;
		if (nto > 0) {
			sm_take(n, previd, local, h, to, nto);
			return;
		}
		log_info("c%u %s: <resume/> of an unknown or expired session",
			 n->id, n->peer);
		sm_failed(n, "item-not-found", 0, 0);
		return;
	}
	if (ref.slot != n->w->slot) {
		/* the owner hands it over (SM_TAKE / SM_GIVE) */
		struct sm_ask to = { ref.slot, 0, 0 };
		sm_take(n, previd, local, h, &to, 1);
		return;
	}
	struct conn *o = NULL;
	if (smstore_read(sm_store(n->w), &ref, &st) == 0 &&
	    (st.state == SM_REC_ATTACHED || st.state == SM_REC_DETACHED))
		o = conn_lookup(n->w, st.conn_id, st.gen);
	if (o == NULL || o == n || o->sm == NULL || o->sm->moved ||
	    !o->sm->has_ref || !o->sm->resumable || !o->bound ||
	    o->jid == NULL ||
	    o->sm->ref.index != ref.index || o->sm->ref.seq != ref.seq) {
		sm_failed(n, "item-not-found", 0, 0);
		return;
	}
	if (!sm_same_account(o->jid, n->user, n->domain)) {
		/* never hand a session to another user */
		log_warn("c%u %s: <resume/> of another account's session "
			 "refused", n->id, n->peer);
		sm_failed(n, "item-not-found", 0, 0);
		return;
	}
	if (!sm_h_ok(h, o->sm->h_acked, o->sm->h_sent)) {
		sm_too_high(n, h, o->sm->h_sent);
		return;
	}
	/* the id the client holds (an adopted record's is not known
	 * until now: the store keeps its token, not the text) */
	if (strlen(previd) < sizeof(o->sm->id))
		snprintf(o->sm->id, sizeof(o->sm->id), "%s", previd);
	EXT_RUN(session_leaving, o);    /* held stanzas into the journal */
	if (o->closed || !o->bound || o->sm == NULL || !o->sm->has_ref) {
		/* writing them ended its stream (output overflow) */
		sm_failed(n, "item-not-found", 0, 0);
		return;
	}
	sm_resume_local(n, o, h);
}

/* ---- handover between workers ------------------------------------------- */

static void sm_give_fail(struct worker *w, const struct ipc_frame_header *hdr,
			 enum ipc_sm_give_status status, uint32_t h_in,
			 uint32_t h_sent)
{
	struct ipc_sm_give g;
	const char *error;
	memset(&g, 0, sizeof(g));
	g.status = status;
	g.h_in = h_in;
	g.h_sent = h_sent;
	if (worker_send_reply(w, hdr, IPC_FRAME_SM_GIVE, hdr->conn_id,
			      hdr->gen, &g, sizeof(g), &error) < 0)
		log_warn("resumption: answer to w%u: %s", hdr->src_slot, error);
}

struct sm_give_build {
	struct buf *out;
	uint32_t n;
};

static int sm_give_one(uint32_t seq, const char *data, size_t len, void *ctx)
{
	struct sm_give_build *b = ctx;
	const char *error;
	(void)seq;
	if (smwire_give_put_stanza(b->out, data, len, &error) < 0)
		return -1;
	b->n++;
	return buf_used(b->out) > IPC_FRAME_MAX ? -1 : 0;
}

/* A: another worker asks for one of our sessions. */
static void sm_on_take(struct worker *w, const struct ipc_frame_header *hdr,
		       const char *p, size_t len)
{
	struct smwire_take t;
	struct sm_ref ref;
	struct sm_state st;
	struct conn *o = NULL;
	char bare[IPC_JID_MAX + 1];
	const char *error;

	if (smwire_take_decode(p, len, &t, &error) < 0) {
		/* the taker waits until sm.handover_timeout; a refusal
		 * needs no payload of ours, so it gets one at once */
		log_error("resumption: malformed SM_TAKE from w%u: %s",
			  hdr->src_slot, error);
		sm_give_fail(w, hdr, IPC_SM_GIVE_NOT_FOUND, 0, 0);
		return;
	}
	memcpy(bare, t.bare, t.bare_len);
	bare[t.bare_len] = '\0';
	if (sm_store(w) != NULL &&
	    smstore_find(sm_store(w), t.id, t.id_len, &ref) == 1 &&
	    ref.slot == w->slot && smstore_read(sm_store(w), &ref, &st) == 0 &&
	    (st.state == SM_REC_ATTACHED || st.state == SM_REC_DETACHED))
		o = conn_lookup(w, st.conn_id, st.gen);
	size_t bl = strlen(bare);
	if (o == NULL || o->sm == NULL || o->sm->moved || !o->sm->has_ref ||
	    !o->sm->resumable || !o->bound || o->jid == NULL ||
	    o->sm->ref.index != ref.index || o->sm->ref.seq != ref.seq ||
	    strncmp(o->jid, bare, bl) != 0 || o->jid[bl] != '/') {
		if (o != NULL && o->jid != NULL)
			log_warn("resumption of %s asked by w%u for %s: "
				 "refused", o->jid, hdr->src_slot, bare);
		sm_give_fail(w, hdr, IPC_SM_GIVE_NOT_FOUND, 0, 0);
		return;
	}
	struct sm_conn *s = o->sm;
	if (!sm_h_ok(t.h, s->h_acked, s->h_sent)) {
		sm_give_fail(w, hdr, IPC_SM_GIVE_TOO_HIGH, t.h, s->h_sent);
		return;
	}
	EXT_RUN(session_leaving, o);    /* held stanzas into the journal */
	if (o->closed || !o->bound || o->sm != s || !s->has_ref) {
		/* writing them ended its stream (output overflow) */
		sm_give_fail(w, hdr, IPC_SM_GIVE_NOT_FOUND, 0, 0);
		return;
	}
	struct ipc_sm_give g;
	memset(&g, 0, sizeof(g));
	g.status = IPC_SM_GIVE_OK;
	g.old_id = o->id;
	g.old_gen = o->gen;
	g.h_in = s->h_in;
	g.h_acked = s->h_acked;
	g.h_sent = s->h_sent;
	g.max_s = s->max_s;
	g.priority = o->priority;
	g.available = (uint8_t)(o->available ? 1 : 0);
	g.mech = o->mech;
	struct session_info si;
	g.since = shm_session_get(w->shm->sessions, o->jid, &si) == 1 ?
		  si.since : 0;
	for (unsigned i = 0; i < ext_count; i++)
		g.words[i] = ext_session_word(o, i);
	g.jid_len = (uint32_t)strlen(o->jid);
	const char *pres = o->available ? o->last_presence : NULL;
	g.presence_len = pres ? (uint32_t)strlen(pres) : 0;
	/* the fixed part stays within what the store reserves for it
	 * (SMSTORE_STATE_RESERVE): directed presence beyond is not moved */
	unsigned nd = 0;
	for (size_t room = sizeof(g) + g.jid_len;
	     nd < o->ndirected && room + 2 + strlen(o->directed[nd]) <=
	     SMSTORE_STATE_RESERVE; nd++)
		room += 2 + strlen(o->directed[nd]);
	if (nd < o->ndirected)
		log_info("c%u %s: %u directed presences not handed over (too "
			 "many)", o->id, o->peer, o->ndirected - nd);
	g.ndirected = nd;
	g.nstanzas = 0;         /* patched once the journal is written */
	struct buf out;
	buf_init(&out, 0);
	int bad = smwire_give_put_head(&out, &g, o->jid, pres, &error) < 0;
	for (unsigned i = 0; !bad && i < nd; i++)
		bad = smwire_give_put_directed(&out, o->directed[i],
					       strlen(o->directed[i]),
					       &error) < 0;
	struct sm_give_build b = { &out, 0 };
	if (!bad)
		bad = smstore_foreach_unacked(sm_store(w), &s->ref,
					      sm_give_one, &b) != 0;
	if (bad || buf_used(&out) > IPC_FRAME_MAX ||
	    b.n != s->h_sent - s->h_acked) {
		/* cannot move: the session ends here, the way of expiry */
		buf_free(&out);
		log_warn("c%u %s: session %s too large to hand over (%u "
			 "stanzas): ended, its stanzas routed as undelivered",
			 o->id, o->peer, o->jid, s->h_sent - s->h_acked);
		sm_give_fail(w, hdr, IPC_SM_GIVE_TOO_BIG, s->h_in, s->h_sent);
		if (o->detached)
			stream_error(o, "undefined-condition", NULL);
		else
			stream_error(o, "conflict", "Session could not be "
				     "resumed elsewhere");
		return;
	}
	smwire_give_set_counts(&out, 0, nd, b.n);
	/* a taker on this node cannot hold our tokens: the journal's
	 * frames from other nodes are lent to it, held here until the
	 * client has acknowledged them there (settle.h); a taker on
	 * another node holds the SM_GIVE frame itself */
	uint32_t lend = hdr->node == 0 ?
			settle_lend_list(&w->settle, hdr->src_slot, &s->holds,
					 w->now_ms) : 0;
	if ((hdr->node == 0 ?
	     queue_send_token(w->q, hdr->src_slot, 0, 0, IPC_FRAME_SM_GIVE,
			      hdr->conn_id, hdr->gen, lend, buf_head(&out),
			      buf_used(&out), &error) :
	     worker_send_reply(w, hdr, IPC_FRAME_SM_GIVE, hdr->conn_id,
			       hdr->gen, buf_head(&out), buf_used(&out),
			       &error)) < 0) {
		settle_lend_undo(&w->settle, lend, &s->holds);
		buf_free(&out);
		log_warn("c%u %s: hand-over of %s to w%u: %s: kept here",
			 o->id, o->peer, o->jid, hdr->src_slot, error);
		return;
	}
	buf_free(&out);
	log_info("c%u %s: session %s handed over to w%u c%u (%u stanzas)",
		 o->id, o->peer, o->jid, hdr->src_slot, hdr->conn_id, b.n);
	smstore_set_state(sm_store(w), &s->ref, SM_REC_GIVEN, 0);
	METRIC_DEC(w->stats->sessions);     /* counted by the new owner */
	if (hdr->node != 0)
		/* the taker is on another node: our entry goes, so that
		 * our directory tells the others (and the taker's entry,
		 * coming back through it, is entered here); stanzas already
		 * addressed to O are forwarded (sm_conn_gone) */
		shm_session_del(w->shm->sessions, o->jid, (uint16_t)w->slot,
				o->id, o->gen);
	o->sm = NULL;
	struct sm_dest to = { .slot = hdr->src_slot, .node = hdr->node,
			      .rslot = hdr->node_slot, .id = hdr->conn_id,
			      .gen = hdr->gen };
	sm_let_go(o, &to, &s->ref);
	struct sm_fwd *f = sm_fwd_find(o->id, o->gen);
	if (f != NULL) {
		f->holds = s->holds;
		memset(&s->holds, 0, sizeof(s->holds));
	}
	sm_conn_free(w, s);
}

/* A GIVE that nobody waits for any more: the session ends the way of
 * expiry, here. */
static void sm_orphan(struct worker *w, const struct ipc_frame_header *hdr,
		      const struct smwire_give *g, const char *jid)
{
	const char *p = g->stanzas, *st;
	size_t left = g->stanzas_len, l;
	log_info("%s: handed over after its resumption was given up: "
		 "ended, %u stanzas routed as undelivered", jid,
		 g->head.nstanzas);
	if (hdr->node == 0)
		shm_session_del(w->shm->sessions, jid, hdr->src_slot,
				g->head.old_id, g->head.old_gen);
	else    /* its node dropped its own entry as it gave */
		shm_session_remove_remote(w->shm->sessions, hdr->node,
					  hdr->node_slot, jid, g->head.old_id,
					  g->head.old_gen);
	if (g->head.available)
		presence_swept(w, jid);
	while (smwire_next(&p, &left, 4, &st, &l) == 1)
		route_undelivered(w, 0, 0, st, l);
}

/* B: the session we asked for. */
static void sm_on_give(struct worker *w, const struct ipc_frame_header *hdr,
		       const char *p, size_t len)
{
	struct smwire_give gv;
	const struct ipc_sm_give *g = &gv.head;
	const char *error;
	struct conn *n = conn_lookup(w, hdr->conn_id, hdr->gen);
	int waiting = n != NULL && !n->bound && n->sm != NULL &&
		      n->sm->take_deadline != 0 && !n->want_close &&
		      sm_take_from(n->sm, hdr);
	if (smwire_give_decode(p, len, &gv, &error) < 0) {
		log_error("resumption: malformed SM_GIVE from w%u: %s",
			  hdr->src_slot, error);
		if (waiting && --n->sm->take_pending == 0) {
			struct sm_conn *s = n->sm;
			n->sm = NULL;
			free(s);
			sm_failed(n, "item-not-found", 0, 0);
		}
		return;
	}
	if (g->status != IPC_SM_GIVE_OK) {
		/* not the holder (another node's worker asked on the
		 * chance): the others may still answer */
		if (!waiting || (g->status == IPC_SM_GIVE_NOT_FOUND &&
				 --n->sm->take_pending > 0))
			return;
		struct sm_conn *s = n->sm;
		n->sm = NULL;
		if (g->status == IPC_SM_GIVE_TOO_HIGH)
			sm_too_high(n, s->take_h, g->h_sent);
		else if (g->status == IPC_SM_GIVE_TOO_BIG)
			sm_failed(n, "item-not-found", 1, g->h_in);
		else
			sm_failed(n, "item-not-found", 0, 0);
		free(s);
		return;
	}
	char jid[IPC_JID_MAX + 1];
	memcpy(jid, gv.jid, g->jid_len);
	jid[g->jid_len] = '\0';
	struct sm_moving m;
	memset(&m, 0, sizeof(m));
	m.jid = jid;
	m.priority = g->priority;
	m.available = g->available;
	m.since = g->since;
	m.h_in = g->h_in;
	m.max_s = g->max_s;
	memcpy(m.words, g->words, sizeof(m.words));
	if (g->presence_len > 0)
		m.presence = strndup(gv.presence, g->presence_len);
	/* decoded: ndirected items, each within the payload */
	if (g->ndirected > 0)
		m.directed = calloc(g->ndirected, sizeof(char *));
	const char *dp = gv.directed, *item;
	size_t dleft = gv.directed_len, l;
	while (m.directed != NULL && smwire_next(&dp, &dleft, 2, &item, &l) == 1)
		if ((m.directed[m.ndirected] = strndup(item, l)) != NULL)
			m.ndirected++;
	/* DONE whatever happens next: the old owner frees its record */
	if (worker_send_reply(w, hdr, IPC_FRAME_SM_DONE, g->old_id,
			      g->old_gen, NULL, 0, &error) < 0)
		log_warn("resumption: SM_DONE to w%u: %s (it frees the record "
			 "after sm.forward_time)", hdr->src_slot, error);

	struct sm_ref ref;
	int ok = waiting;
	/* the record answers to the previd the client holds (the token of
	 * <enabled id/>: smstore's part of it, verified at <resume/>), and
	 * numbers on from the old owner's h_acked */
	char local[SMSTORE_ID_MAX];
	if (ok) {
		size_t ll = strcspn(n->sm->id, ".");
		snprintf(local, sizeof(local), "%.*s", (int)ll, n->sm->id);
	}
	if (ok && (smstore_open_as(sm_store(w), w->slot, local, jid, n->id,
				   n->gen, 1, g->max_s, &ref, &error) < 0 ||
		   smstore_set_h_acked(sm_store(w), &ref, g->h_acked) < 0)) {
		log_warn("c%u %s: resumption of %s: %s", n->id, n->peer, jid,
			 error);
		ok = 0;
	}
	/* the journal goes into our record, in order; the store counts
	 * from 0, the protocol from the old owner's h_acked (base) */
	uint32_t count = 0;
	const char *sq = gv.stanzas;
	size_t sl = gv.stanzas_len;
	while (ok && smwire_next(&sq, &sl, 4, &item, &l) == 1) {
		if (smstore_append_token(sm_store(w), &ref, item, l,
					 settle_token(&w->settle), &error) < 0) {
			log_warn("c%u %s: resumption of %s: journal: %s",
				 n->id, n->peer, jid, error);
			smstore_close(sm_store(w), &ref);
			ok = 0;
			break;
		}
		count++;
	}
	struct sm_dest was = { .slot = hdr->src_slot, .node = hdr->node,
			       .rslot = hdr->node_slot, .id = g->old_id,
			       .gen = g->old_gen };
	if (ok && sm_become(n, &m, &was) < 0) {
		smstore_close(sm_store(w), &ref);
		ok = 0;
	}
	if (!ok) {
		if (waiting) {
			struct sm_conn *s = n->sm;
			n->sm = NULL;
			free(s);
			sm_failed(n, "item-not-found", 1, g->h_in);
		}
		sm_orphan(w, hdr, &gv, jid);
		free(m.presence);
		for (unsigned i = 0; i < m.ndirected; i++)
			free(m.directed[i]);
		free(m.directed);
		return;
	}
	METRIC_INC(w->stats->sessions);
	struct sm_conn *s = n->sm;
	uint32_t h = s->take_h;
	s->ref = ref;
	s->has_ref = 1;
	s->resumable = 1;
	s->max_s = g->max_s;
	s->h_in = g->h_in;
	s->base = 0;
	s->h_acked = g->h_acked;
	s->h_sent = g->h_acked + count;
	s->take_deadline = 0;
	/* a journal from another node: its node keeps the SM_GIVE frame
	 * until the client acknowledges what is in it here */
	for (uint32_t i = 1; i <= count; i++)
		sm_hold_h(w, s, g->h_acked + i);
	smstore_set_h_in(sm_store(w), &ref, s->h_in);
	smstore_set_mech(sm_store(w), &ref, n->mech);
	ext_filter(n, &sm_ext, 1);
	sm_save_words(n);
	if (n->available)
		sm_save_presence(n);
	if (!sm_h_ok(h, s->h_acked, s->h_sent))
		h = s->h_acked;     /* checked by the old owner */
	sm_resumed(n, h);
}

/* A: the new owner has the session: the record goes. */
static void sm_on_done(struct worker *w, const struct ipc_frame_header *hdr,
		       const char *p, size_t len)
{
	const char *error;
	if (smwire_done_decode(p, len, &error) < 0)
		log_error("resumption: SM_DONE from w%u: %s (taken as done)",
			  hdr->src_slot, error);
	struct sm_fwd *f = sm_fwd_find(hdr->conn_id, hdr->gen);
	if (f != NULL && f->ref_open) {
		smstore_close(sm_store(w), &f->ref);
		f->ref_open = 0;
	}
}

static int sm_frame(struct worker *w, const struct ipc_frame_header *hdr,
		    const char *payload, size_t len)
{
	switch (hdr->type) {
	case IPC_FRAME_SM_TAKE:
		sm_on_take(w, hdr, payload, len);
		return 1;
	case IPC_FRAME_SM_GIVE:
		sm_on_give(w, hdr, payload, len);
		return 1;
	case IPC_FRAME_SM_DONE:
		sm_on_done(w, hdr, payload, len);
		return 1;
	default:
		return 0;
	}
}

/* ---- timers ------------------------------------------------------------- */

static void sm_tick(struct worker *w, int64_t now)
{
	for (struct conn *c = w->conns, *next; c != NULL; c = next) {
		next = c->next;
		struct sm_conn *s = c->sm;
		if (s == NULL || c->closed)
			continue;
		if (c->detached && s->detached_ms != 0 &&
		    now - s->detached_ms >= (int64_t)s->max_s * 1000) {
			if (s->has_ref)     /* else ended for the pool */
				log_info("c%u: detached session %s expired "
					 "after %us", c->id,
					 c->jid ? c->jid : "?", s->max_s);
			/* the next conn may be closed by it (never freed
			 * before the end of the turn) */
			conn_close(c);
		} else if (s->take_deadline != 0 && now >= s->take_deadline) {
			if (s->take_node[0] == 0)
				log_warn("c%u %s: resumption: w%u did not "
					 "answer in time (sm.handover_timeout)",
					 c->id, c->peer, s->take_slot);
			else    /* a node died, or a frame was lost */
				log_warn("c%u %s: resumption: %u of the %u "
					 "workers of other nodes asked did not "
					 "answer in time (sm.handover_timeout)",
					 c->id, c->peer, s->take_pending,
					 s->take_n);
			c->sm = NULL;
			free(s);
			sm_failed(c, "item-not-found", 0, 0);
		}
	}
	for (unsigned i = 0; i < sm_nfwd;) {
		struct sm_fwd *f = &sm_fwds[i];
		if (now < f->until) {
			i++;
			continue;
		}
		if (f->ref_open) {
			log_warn("session handed to w%u c%u: no SM_DONE; its "
				 "record is freed", f->slot, f->id);
			smstore_close(sm_store(w), &f->ref);
		}
		settle_list_free(&w->settle, &f->holds);
		sm_fwds[i] = sm_fwds[--sm_nfwd];
	}
}

/* ---- the account's session limit ----------------------------------------- */


/* c2s.max_sessions_per_account is reached as c binds: sessions that
 * wait for a <resume/> (detached, on any worker) would lock the account
 * out for up to sm.max_resume_s (a phone reconnecting without its
 * previd, again and again), so the one detached longest ends: out of
 * the session table here (only if the entry is still that session's),
 * then told like a replaced session, except that its contacts see it
 * leave (KICK with SM_KICK_ROOM); its journal goes the undelivered way
 * (to the account's available resources, or offline storage). */
static int sm_make_room(struct conn *c)
{
	struct smstore *st = sm_store(c->w);
	struct session_info *list;
	char bare[IPC_JID_MAX + 1];
	int64_t best_ms = 0;
	int n, best = -1;

	if (st == NULL || c->user == NULL || c->domain == NULL ||
	    (size_t)snprintf(bare, sizeof(bare), "%s@%s", c->user,
			     c->domain) >= sizeof(bare) ||
	    (list = calloc(SM_ROOM_LIST, sizeof(*list))) == NULL)
		return 0;
	n = shm_session_list(c->w->shm->sessions, bare, list, SM_ROOM_LIST);
	for (int i = 0; i < n && i < SM_ROOM_LIST; i++) {
		/* another node's session waits there, if at all: its node
		 * makes room for its own logins */
		if (list[i].node != 0)
			continue;
		int64_t t = smstore_detached_ms(st, list[i].slot,
						list[i].conn_id, list[i].gen);
		if (t > 0 && (best < 0 || t < best_ms)) {
			best = i;
			best_ms = t;
		}
	}
	if (best < 0 || shm_session_del(c->w->shm->sessions, list[best].jid,
					list[best].slot, list[best].conn_id,
					list[best].gen) != 1) {
		free(list);
		return 0;
	}
	struct session_info *v = &list[best];
	log_info("c%u %s: %s has c2s.max_sessions_per_account sessions: %s "
		 "(w%u c%u), waiting for <resume/> for %llds, ends to make "
		 "room", c->id, c->peer, bare, v->jid, v->slot, v->conn_id,
		 (long long)((time_now_ms() - best_ms) / 1000));
	if (v->slot == c->w->slot) {
		struct conn *o = conn_lookup(c->w, v->conn_id, v->gen);
		if (o != NULL && o != c) {
			o->bound = 0;   /* its entry is gone already */
			stream_error(o, "conflict",
				     "Replaced by new connection");
		}
	} else {
		const char *error;
		if (worker_send_session(c->w, v, IPC_FRAME_KICK, SM_KICK_ROOM,
					sizeof(SM_KICK_ROOM) - 1, &error) < 0)
			log_error("kick of %s on w%u failed: %s (it expires "
				  "on its own)", v->jid, v->slot, error);
	}
	free(list);
	return 1;
}

/* ---- nonzas ------------------------------------------------------------- */

static void sm_nonza(struct conn *c, struct xml_node *n)
{
	if (strcmp(n->name, "r") == 0)
		sm_answer(c);
	else if (strcmp(n->name, "a") == 0)
		sm_ack(c, n);
	else if (strcmp(n->name, "enable") == 0 && c->authenticated)
		sm_enable(c, n);
	else if (strcmp(n->name, "enable") == 0 ||
		 (strcmp(n->name, "resume") == 0 && !c->authenticated)) {
		log_info("c%u %s: <%s/> before authentication", c->id, c->peer,
			 n->name);
		sm_failed(c, "unexpected-request", 0, 0);
	} else if (strcmp(n->name, "resume") == 0)
		sm_resume(c, n);
	else
		stream_error(c, "unsupported-stanza-type", NULL);
}

/* ---- adoption and xmppctl ----------------------------------------------- */

static int sm_adopt_span_one(uint32_t seq, uint32_t token, void *ctx)
{
	(void)seq;
	settle_adopt_span(ctx, token);
	return 0;
}

void sm_adopt_span(struct worker *w, const struct sm_ref *ref)
{
	smstore_foreach_tokens(sm_store(w), ref, sm_adopt_span_one,
			       &w->settle);
}

struct sm_adopt_ctx {
	struct worker *w;
	struct sm_conn *s;
};

static int sm_adopt_hold_one(uint32_t seq, uint32_t token, void *ctx)
{
	struct sm_adopt_ctx *a = ctx;
	settle_adopt_hold(&a->w->settle, &a->s->holds, seq + a->s->base,
			  token);
	return 0;
}

int sm_adopt(struct worker *w, const struct sm_ref *ref,
	     const struct sm_state *st)
{
	struct smstore *store = sm_store(w);
	struct conn *c = conn_new_detached(w, st->conn_id, st->gen);
	struct sm_conn *s = calloc(1, sizeof(*s));
	const char *at = strchr(st->jid, '@');
	const char *slash = at ? strchr(at, '/') : NULL;
	if (c == NULL || s == NULL || at == NULL || slash == NULL) {
		free(s);
		if (c != NULL)
			conn_close(c);
		return -1;
	}
	c->sm = s;
	s->ref = *ref;
	s->has_ref = 1;
	s->resumable = st->resumable;
	s->max_s = st->max_s;
	s->h_in = st->h_in;
	s->base = sm_index() < SMSTORE_EXT_WORDS ?
		  st->ext_words[sm_index()] : 0;
	s->h_acked = st->h_acked + s->base;
	s->h_sent = st->h_sent + s->base;
	/* frames from other nodes in the journal: held on (settle.h) */
	struct sm_adopt_ctx actx = { w, s };
	smstore_foreach_tokens(store, ref, sm_adopt_hold_one, &actx);
	c->user = strndup(st->jid, (size_t)(at - st->jid));
	c->domain = strndup(at + 1, (size_t)(slash - at - 1));
	c->jid = strdup(st->jid);
	c->authenticated = 1;
	c->mech = st->mech;
	c->priority = st->priority;
	c->available = st->available;
	if (st->available && st->presence_len > 0 &&
	    (c->last_presence = malloc(st->presence_len + 1)) != NULL) {
		long l = smstore_presence(store, ref, c->last_presence,
					  st->presence_len + 1);
		if (l < 0) {
			free(c->last_presence);
			c->last_presence = NULL;
		} else {
			c->last_presence[l] = '\0';
		}
	}
	if (c->user == NULL || c->domain == NULL || c->jid == NULL) {
		conn_close(c);
		return -1;
	}
	/* the sweep kept its table entry; put it again all the same */
	struct session_info info, old;
	const char *error;
	memset(&info, 0, sizeof(info));
	snprintf(info.jid, sizeof(info.jid), "%s", st->jid);
	info.slot = (uint16_t)w->slot;
	info.conn_id = c->id;
	info.gen = c->gen;
	info.since = time(NULL);
	info.active = info.since;
	info.priority = st->priority;
	info.available = st->available;
	info.mech = st->mech;
	if (shm_session_get(w->shm->sessions, st->jid, &old) == 1 &&
	    !(old.slot == w->slot && old.conn_id == c->id &&
	      old.gen == c->gen)) {
		/* someone logged in with that JID since: they keep it */
		c->bound = 0;
		c->available = 0;
	} else if (shm_session_put(w->shm->sessions, &info, NULL,
				   &error) < 0) {
		log_warn("%s: adopted session not re-entered: %s", st->jid,
			 error);
		c->bound = 0;
		c->available = 0;
	} else {
		c->bound = 1;
		METRIC_INC(w->stats->sessions);
	}
	s->out_from = 0;
	ext_filter(c, &sm_ext, 1);
	if (!st->resumable || !c->bound) {
		log_info("%s: adopted after a crash, not resumable: ended, "
			 "%u stanzas routed as undelivered", st->jid,
			 st->unacked);
		conn_close(c);
		return 0;
	}
	ext_session_restore(c, st->ext_words, SMSTORE_EXT_WORDS < EXT_MAX ?
			    SMSTORE_EXT_WORDS : EXT_MAX);
	s->detached_ms = time_now_ms();
	smstore_set_state(store, ref, SM_REC_DETACHED, s->detached_ms);
	log_info("c%u: %s adopted after a crash: detached, resumable for "
		 "%us", c->id, st->jid, st->max_s);
	return 0;
}

const char *sm_describe(const struct sm_state *st, int64_t now_ms,
			char *out, size_t cap)
{
	if (st == NULL || st->state == SM_REC_FREE) {
		snprintf(out, cap, "-");
	} else if (st->state == SM_REC_DETACHED) {
		int64_t s = st->detached_ms ? (now_ms - st->detached_ms) / 1000
					    : 0;
		snprintf(out, cap, "detached %llds", (long long)s);
	} else {
		snprintf(out, cap, "%s", st->resumable ? "resumable" : "on");
	}
	return out;
}

static const char *const sm_nonza_ns[] = { NS_SM, NULL };
static const char *const sm_config[] = {
	"sm.max_resume_s", "sm.max_unacked", "sm.handover_timeout",
	"sm.forward_time", NULL,
};

const struct ext sm_ext = {
	.name = "sm",
	.config_keys = sm_config,
	.nonza_ns = sm_nonza_ns,
	.stream_features = sm_features,
	.nonza = sm_nonza,
	.presence_changed = sm_presence,
	.output_drained = sm_drained,
	.session_gone = sm_gone,
	.conn_free = sm_free,
	.stanza_received = sm_received,
	.stanza_sent = sm_sent,
	.detach = sm_detach,
	.session_changed = sm_session_changed,
	.worker_frame = sm_frame,
	.conn_gone = sm_conn_gone,
	.tick = sm_tick,
	.make_room = sm_make_room,
};

/*
 * s2s_out.c - the streams we open to other servers (RFC 6120 section 13,
 * initiating entity; RFC 7590; XEP-0178; XEP-0220 originating side;
 * XEP-0368).  One link per (local domain, remote domain) pair, all of a
 * remote domain's owned by the worker s2s_owner_slot(remote) names;
 * other workers hand it their stanzas with IPC_FRAME_S2S_OUT.  A pair
 * whose remote domain already has a stream rides it when the peer
 * accepts (XEP-0220 "Multiplexing Sender Domains": <db:result/> on that stream;
 * refused -> a stream of its own).  A link is dialed (s2s_dial.h), STARTTLS'd
 * (or direct TLS), authenticated with SASL EXTERNAL when the peer's
 * certificate identifies it (certid.h), else with dialback when
 * s2s.auth allows, then carries what waited in its pending queue
 * (s2s.max_queue_bytes) and what comes later, until s2s.out_idle_timeout
 * of silence.  The owner of link R -> O also sends <db:verify/> for the
 * incoming side (IPC_FRAME_S2S_VERIFY) and answers IPC_FRAME_S2S_VERIFIED.
 * Failure policy: a link that cannot be set up (dial, TLS, refused
 * authentication, stream error, s2s.link_timeout) bounces every pending
 * stanza to its sender with remote-server-not-found or
 * remote-server-timeout and logs one line; errors and IQ results are
 * dropped, never bounced.  With XEP-0198 (when the peer offers it, acks
 * only) every stanza stays in the connection's journal until the peer's
 * <a h/>; when a link dies what was not acknowledged is routed once
 * more over a new link (duplicates possible), else bounced with the
 * peer's reason (out_death_cond).  Without it, what the link had not
 * written comes back through conn.c (conn_take_back_all), the same way;
 * what the kernel had taken is lost unknown to us.  An up link has at
 * most s2s.max_queue_bytes in flight; more waits in its queue.  An <r/>
 * unanswered for s2s.ack_timeout: the link is dead (logged, closed,
 * handled as above).
 */
#include "worker.h"
#include "s2s.h"
#include "s2s_int.h"
#include "s2s_dial.h"
#include "base64.h"
#include "certid.h"
#include "dialback.h"
#include "log.h"
#include "server.h"
#include "sm.h"
#include "smwire.h"
#include "stanza.h"
#include "tls.h"
#include "util.h"

#include <expat.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define S2S_DOMAIN_MAX 255
#define S2S_CLOSE_GRACE_MS 5000
/* XEP-0198: an <r/> after this many stanzas without one (and whenever
 * the output drains) */
#define S2S_SM_R_EVERY 64

enum s2s_link_state {
	LINK_DIALING = 1,       /* DNS and connect (s2s_dial) */
	LINK_STREAM,            /* stream open: TLS, features */
	LINK_AUTH,              /* <auth/> or <db:result/> sent */
	LINK_UP,                /* authenticated: stanzas flow */
};

/* A stanza waiting for its link. */
struct s2s_pend {
	struct s2s_pend *next;
	size_t len;
	int retried;            /* taken back once from a link that died */
	/* a frame from another node: its sender keeps it until the stanza
	 * is written, bounced or routed on (worker/settle.h) */
	struct settle_hold hold;
	char text[];
};

/* A stanza taken back from a link that died with it unwritten, routed
 * again at the next s2s_out_tick (never inside conn_close): once over a
 * new link, bounced with cond if it was already that retry. */
struct s2s_back {
	struct s2s_back *next;
	char local[256], remote[256];
	const char *cond;       /* NULL: retry; else bounce with it */
	size_t len;
	struct settle_hold hold;        /* as s2s_pend's */
	char text[];
};

/* A dialback key the incoming side asked us to verify (XEP-0220 2.3). */
struct s2s_vreq {
	struct s2s_vreq *next;
	uint16_t in_slot;
	uint32_t in_conn_id, in_gen;
	int sent;
	int64_t deadline_ms;
	char stream_id[IPC_S2S_ID_MAX + 1];
	char key[IPC_S2S_KEY_MAX + 1];
};

struct s2s_link {
	struct s2s_link *next;
	enum s2s_link_state state;
	char local[S2S_DOMAIN_MAX + 1];
	char remote[S2S_DOMAIN_MAX + 1];
	struct s2s_dial *dial;
	struct conn *c;
	struct s2s_pend *head, *tail;
	size_t pending_bytes;
	unsigned npending;
	struct s2s_vreq *vreqs;
	int64_t deadline_ms;    /* the whole setup */
	int64_t last_ms;        /* last traffic (idle close) */
	int tls_verified;       /* chain and RFC 6125 identity ok */
	int sasl_done;          /* EXTERNAL succeeded: restarted stream */
	int tls_reason_logged;
	int starttls_sent;      /* <starttls/> written, <proceed/> due */
	int verify_only;        /* opened for a verification, no stanza yet */
	char stream_id[IPC_S2S_ID_MAX + 1];     /* the peer's, for the key */
	char peer[64];
	const char *how;        /* "EXTERNAL" or "dialback" once up */
	int sm_offered;         /* the peer's features had <sm/> (XEP-0198) */
	/* XEP-0220 "Multiplexing" ("piggybacking"): a pair carried on
	 * another pair's stream to the same remote domain.  carrier is the
	 * link owning the connection (c is its connection once asked: our
	 * <db:result/> sent); NULL on a link with a connection of its own. */
	struct s2s_link *carrier;
	unsigned ncarried;      /* links with carrier == this one */
	int db_feature;         /* the peer's last features had <dialback/> */
	int no_piggy;           /* a pair was refused here: no more asked */
};

/* What c->s2s points to on an outgoing connection: the link, NULL once
 * the link has let the connection go (failed, closed idle). */
struct s2s_conn {
	struct s2s_link *link;
	char local[256], remote[256];   /* the link's pair, for take-back */
	const char *cond;       /* why it died (s2s_out_gone) */
	/* where each retried stanza written here ends (c->out_total) */
	uint64_t *retried;
	unsigned nretried, retried_cap;
	int was_up;             /* the link was authenticated */
	const char *peer_error; /* the stream error the peer ended it with */
	/* XEP-0198, acknowledgements only: every stanza written since our
	 * <enable/> stays here until the peer's <a h/> covers it; when the
	 * connection goes, they are routed once more (sm_handed) */
	int sm_on;
	int sm_handed;          /* the journal went back: take-back skips */
	uint32_t sm_sent;       /* stanzas written since <enable/> */
	uint32_t sm_acked;      /* the peer's last h */
	uint32_t sm_r_at;       /* sm_sent at our last <r/> */
	int64_t r_since_ms;     /* an <r/> unanswered since (s2s.ack_timeout) */
	struct s2s_pend *uhead, *utail;
	size_t ubytes;
	unsigned ucount;
};

/* This process's links (one worker per process) and its worker, for
 * the dialer's callback. */
static struct s2s_link *s2s_links;
static unsigned s2s_nlinks;
/* Stopping, past s2s_out_close_links: a link ends once its queue is
 * written. */
static int out_closing;
/* Links opened only to verify dialback keys for the incoming side:
 * requests from unauthenticated streams, so they may hold at most half
 * of s2s.max_links and never starve local users' stanzas. */
static unsigned s2s_nverify_links;
static struct worker *s2s_out_worker;

static struct s2s_link *out_link(const struct conn *c)
{
	return c->s2s != NULL ? c->s2s->link : NULL;
}

/* ---- policy (settings) ----------------------------------------------- */

static int out_dialback_allowed(const struct worker *w, const char *remote)
{
	return strcmp(w->cfg->s2s_auth, "dialback") == 0 ||
	       stream_domain_listed(w->cfg->s2s_dialback_domains, remote);
}

/* ---- bouncing --------------------------------------------------------- */

/* The error reply to stanza text, routed to its (local) sender; nothing
 * for errors and IQ results (no loops). */
static void out_bounce_text(struct worker *w, const char *text, size_t len,
			    const char *type, const char *cond)
{
	struct arena a;
	struct buf out;
	const char *error;
	arena_init(&a, 2048);
	struct xml_node *st = stanza_parse(&a, text, len, &error);
	if (st != NULL && stanza_may_bounce(st) &&
	    xml_attr(st, "from") != NULL) {
		buf_init(&out, 0);
		if (stanza_error_xml(&out, st, NULL, type, cond, NULL) == 0) {
			struct xml_node *e = stanza_parse(&a, buf_head(&out),
							  buf_used(&out),
							  &error);
			if (e != NULL)
				route_stanza(w, &a, e);
		}
		buf_free(&out);
	}
	arena_free(&a);
}

static const char *out_error_type(const char *cond)
{
	return strcmp(cond, "remote-server-timeout") == 0 ||
	       strcmp(cond, "resource-constraint") == 0 ? "wait" : "cancel";
}

/* ---- verification requests (incoming side's db:verify) --------------- */

static void out_verified(struct worker *w, const struct s2s_link *l,
			 const struct s2s_vreq *v, uint32_t result,
			 const char *cond)
{
	struct ipc_s2s_verified r;
	const char *error;
	memset(&r, 0, sizeof(r));
	r.in_conn_id = v->in_conn_id;
	r.in_gen = v->in_gen;
	r.result = result;
	snprintf(r.local, sizeof(r.local), "%s", l->local);
	snprintf(r.remote, sizeof(r.remote), "%s", l->remote);
	if (cond != NULL)
		snprintf(r.condition, sizeof(r.condition), "%s", cond);
	/* to ourselves too: one path, the queue */
	if (queue_send(w->q, v->in_slot, IPC_FRAME_S2S_VERIFIED, v->in_conn_id,
		       v->in_gen, &r, sizeof(r), &error) < 0)
		log_warn("s2s %s -> %s: verification answer to w%u lost: %s",
			 l->local, l->remote, v->in_slot, error);
}

static void out_send_verify(struct s2s_link *l, struct s2s_vreq *v)
{
	struct buf out;
	buf_init(&out, 0);
	buf_appendf(&out, "<db:verify from='");
	xml_escape(&out, l->local, strlen(l->local), 1);
	buf_appendf(&out, "' to='");
	xml_escape(&out, l->remote, strlen(l->remote), 1);
	buf_appendf(&out, "' id='");
	xml_escape(&out, v->stream_id, strlen(v->stream_id), 1);
	buf_appendf(&out, "'>");
	xml_escape(&out, v->key, strlen(v->key), 0);
	buf_appendf(&out, "</db:verify>");
	conn_send(l->c, buf_head(&out), buf_used(&out));
	buf_free(&out);
	v->sent = 1;
}

/* Send what waits, once the stream can carry dialback elements. */
static void out_send_verifies(struct s2s_link *l)
{
	for (struct s2s_vreq *v = l->vreqs; v != NULL; v = v->next)
		if (!v->sent)
			out_send_verify(l, v);
}

static void out_vreqs_fail(struct worker *w, struct s2s_link *l,
			   const char *cond)
{
	while (l->vreqs != NULL) {
		struct s2s_vreq *v = l->vreqs;
		l->vreqs = v->next;
		out_verified(w, l, v, IPC_S2S_ERROR, cond);
		free(v);
	}
}

/* ---- links ------------------------------------------------------------ */

/* Write a stanza on the link's connection; a retried one is remembered
 * by where it ends, so that it is not retried twice. */
static void out_request_ack(struct conn *c, struct s2s_conn *sc)
{
	static const char r[] = "<r xmlns='" NS_SM "'/>";
	sc->sm_r_at = sc->sm_sent;
	if (sc->r_since_ms == 0)
		sc->r_since_ms = c->w->now_ms;
	conn_send(c, r, sizeof(r) - 1);
}

/* A stanza's copy for a link's queue or a stream's journal (NULL: no
 * memory). */
static struct s2s_pend *out_pend_new(const char *text, size_t len,
				     int retried)
{
	struct s2s_pend *p = malloc(sizeof(*p) + len);
	if (p == NULL)
		return NULL;
	memcpy(p->text, text, len);
	p->len = len;
	p->retried = retried;
	p->hold = (struct settle_hold){ 0, 0 };
	p->next = NULL;
	return p;
}

/* Keep a copy of a stanza written on an XEP-0198 stream. */
static void out_journal(struct s2s_conn *sc, const char *text, size_t len,
			int retried)
{
	struct s2s_pend *p = out_pend_new(text, len, retried);
	if (p == NULL) {
		log_error("s2s %s -> %s: no memory to keep an unacknowledged "
			  "stanza: lost if the link dies before the ack",
			  sc->local, sc->remote);
		return;
	}
	/* another node's frame (written under it, out_pump): held until
	 * the peer's <a h/> covers it, or routed again with it */
	settle_hold(&s2s_out_worker->settle, &p->hold);
	if (sc->utail != NULL)
		sc->utail->next = p;
	else
		sc->uhead = p;
	sc->utail = p;
	sc->ubytes += len;
	sc->ucount++;
}

static void out_journal_free(struct s2s_conn *sc)
{
	while (sc->uhead != NULL) {
		struct s2s_pend *p = sc->uhead;
		sc->uhead = p->next;
		settle_release(&s2s_out_worker->settle, &p->hold);
		free(p);
	}
	sc->utail = NULL;
	sc->ubytes = 0;
	sc->ucount = 0;
}

static void out_write(struct s2s_link *l, const char *text, size_t len,
		      int retried)
{
	struct conn *c = l->c;
	struct s2s_conn *sc = c->s2s;
	if (sc != NULL && sc->sm_on) {
		out_journal(sc, text, len, retried);
		sc->sm_sent++;
	}
	conn_send(c, text, len);
	if (sc != NULL && sc->sm_on &&
	    sc->sm_sent - sc->sm_r_at >= S2S_SM_R_EVERY)
		out_request_ack(c, sc);
	if (!retried || c->s2s == NULL || (sc != NULL && sc->sm_on))
		return;
	if (sc->nretried == sc->retried_cap) {
		unsigned cap = sc->retried_cap ? sc->retried_cap * 2 : 8;
		uint64_t *r = realloc(sc->retried, cap * sizeof(*r));
		if (r == NULL)
			return;     /* then retried once more at worst */
		sc->retried = r;
		sc->retried_cap = cap;
	}
	sc->retried[sc->nretried++] = c->out_total;
}

static struct s2s_link *out_find(const char *local, const char *remote)
{
	for (struct s2s_link *l = s2s_links; l != NULL; l = l->next)
		if (strcasecmp(l->local, local) == 0 &&
		    strcasecmp(l->remote, remote) == 0)
			return l;
	return NULL;
}

/* What an up link may have in flight before new stanzas wait in its
 * queue: s2s.max_queue_bytes of stanzas not acknowledged (XEP-0198) or
 * not taken by the socket (without it), and never half of what conn.c
 * lets a connection hold. */
static size_t out_cap(const struct worker *w)
{
	size_t cap = (size_t)w->cfg->s2s_max_queue_bytes;
	size_t half = (size_t)(w->cfg->c2s_max_output_bytes / 2);
	return cap < half ? cap : half;
}

static int out_full(const struct s2s_link *l)
{
	const struct conn *c = l->c;
	const struct s2s_conn *sc = c->s2s;
	size_t used = sc != NULL && sc->sm_on ? sc->ubytes
					      : buf_used(&c->out);
	return used >= out_cap(c->w);
}

/* Write what waits in the queue while the link has room (all of it
 * with force: the link is closing). */
static void out_pump(struct s2s_link *l, int force)
{
	/* a forced write past the output limit makes conn_send flush, and
	 * a failed write closes the connection on the spot: what is left
	 * stays queued (the caller routes it again), never written into a
	 * closed connection */
	while (l->head != NULL && l->c != NULL && !l->c->closed &&
	       (force || !out_full(l))) {
		struct s2s_pend *p = l->head;
		l->head = p->next;
		if (l->head == NULL)
			l->tail = NULL;
		l->pending_bytes -= p->len;
		l->npending--;
		/* written under its frame: the connection holds it on until
		 * the socket takes it (conn.c) */
		struct settle *st = &l->c->w->settle;
		struct settle_at was = settle_enter(st, &p->hold);
		out_write(l, p->text, p->len, p->retried);
		settle_leave(st, was);
		settle_release(st, &p->hold);
		free(p);
	}
}

static void out_unlink(struct s2s_link *l)
{
	for (struct s2s_link **p = &s2s_links; *p != NULL; p = &(*p)->next) {
		if (*p == l) {
			*p = l->next;
			s2s_nlinks--;
			if (l->carrier != NULL)
				l->carrier->ncarried--;
			if (l->verify_only)
				s2s_nverify_links--;
			l->verify_only = 0;
			return;
		}
	}
}

/* The link lets its connection go (it may still be closing). */
static void out_release_conn(struct s2s_link *l)
{
	if (l->carrier != NULL) {
		l->c = NULL;    /* the carrier's connection */
		return;
	}
	if (l->c != NULL && l->c->s2s != NULL)
		l->c->s2s->link = NULL;
	l->c = NULL;
}

static void out_free(struct s2s_link *l)
{
	while (l->head != NULL) {
		struct s2s_pend *p = l->head;
		l->head = p->next;
		settle_release(&s2s_out_worker->settle, &p->hold);
		free(p);
	}
	if (l->dial != NULL)
		s2s_dial_cancel(l->dial);
	out_release_conn(l);
	free(l);
}

/* Taken back or unacknowledged, routed at the next tick. */
static struct s2s_back *out_back_head, **out_back_tail = &out_back_head;

/* held: the frame's hold, moved (NULL: none). */
static void out_back_add(const char *local, const char *remote,
			 const char *text, size_t len, const char *cond,
			 struct settle_hold *held)
{
	struct s2s_back *b = malloc(sizeof(*b) + len);
	if (b == NULL) {
		log_error("s2s %s -> %s: no memory to route a stanza again: "
			  "lost", local, remote);
		if (held != NULL)
			settle_release(&s2s_out_worker->settle, held);
		return;
	}
	b->hold = (struct settle_hold){ 0, 0 };
	if (held != NULL) {
		b->hold = *held;
		held->token = 0;
	}
	snprintf(b->local, sizeof(b->local), "%s", local);
	snprintf(b->remote, sizeof(b->remote), "%s", remote);
	b->cond = cond;
	b->len = len;
	memcpy(b->text, text, len);
	b->next = NULL;
	*out_back_tail = b;
	out_back_tail = &b->next;
}

/* ---- multiplexing (XEP-0220) ------------------------------------------- */

/* Remote domains whose stream ended (its error or close, the connection
 * lost: anything but our own close or timeout) while one of our
 * <db:result/>s for a second pair waited on it: it does not take
 * multiplexing, its pairs get links of their own (a small ring, the
 * oldest forgotten first). */
#define S2S_NOPIGGY_MAX 16
static char out_nopiggy[S2S_NOPIGGY_MAX][S2S_DOMAIN_MAX + 1];
static unsigned out_nopiggy_next;

static int out_nopiggy_has(const char *remote)
{
	for (unsigned i = 0; i < S2S_NOPIGGY_MAX; i++)
		if (strcasecmp(out_nopiggy[i], remote) == 0)
			return 1;
	return 0;
}

static void out_nopiggy_add(const char *remote)
{
	if (out_nopiggy_has(remote))
		return;
	snprintf(out_nopiggy[out_nopiggy_next], sizeof(out_nopiggy[0]), "%s",
		 remote);
	out_nopiggy_next = (out_nopiggy_next + 1) % S2S_NOPIGGY_MAX;
}

/* The link whose stream a new pair (any local, remote) may share: one
 * of remote's own links, up and willing (the peer speaks dialback, no
 * pair refused on it) or still being set up (then decided at out_up).
 * Only where s2s.auth allows dialback: a second pair on a stream is
 * authenticated by dialback (SASL is once per stream). */
static struct s2s_link *out_carrier(const struct worker *w,
				    const char *remote)
{
	if (out_nopiggy_has(remote) || !out_dialback_allowed(w, remote))
		return NULL;
	for (struct s2s_link *l = s2s_links; l != NULL; l = l->next) {
		if (l->carrier != NULL || l->no_piggy ||
		    strcasecmp(l->remote, remote) != 0)
			continue;
		if (l->state != LINK_UP)
			return l;
		if (l->c != NULL && !l->c->want_close && !l->c->closed &&
		    (l->db_feature || strcmp(l->how, "dialback") == 0))
			return l;
	}
	return NULL;
}

static void out_pump(struct s2s_link *l, int force);

/* Write what waits on the carrier and on every pair it carries. */
static void out_pump_all(struct s2s_link *carrier)
{
	out_pump(carrier, 0);
	for (struct s2s_link *d = carrier->ncarried > 0 ? s2s_links : NULL;
	     d != NULL; d = d->next)
		if (d->carrier == carrier && d->state == LINK_UP)
			out_pump(d, 0);
}

static void out_vreqs_fail(struct worker *w, struct s2s_link *l,
			   const char *cond);

/* A link ends: off the lists, its verification requests answered with
 * an error, what it still queued to the route-back list (once more over
 * a new link; bounced with cond if it was already that retry), freed. */
static void out_end(struct worker *w, struct s2s_link *l, const char *cond)
{
	out_unlink(l);
	out_vreqs_fail(w, l, "remote-connection-failed");
	for (struct s2s_pend *p = l->head, *next; p != NULL; p = next) {
		next = p->next;
		out_back_add(l->local, l->remote, p->text, p->len,
			     p->retried ? cond : NULL, &p->hold);
		free(p);
	}
	l->head = l->tail = NULL;
	l->npending = 0;
	l->pending_bytes = 0;
	out_free(l);
}

/* The carrier is gone or going: the pairs it carried lose their stream.
 * With write (a clean close), what they queued is written first; what
 * is left goes once more over a new link (out_route_back), bounced with
 * cond if already a retry.  A pair still waiting for the answer to its
 * <db:result/> when the stream ended other than by our own close or
 * timeout (peer_ended: a stream error, a bare </stream:stream>, a TCP
 * close) marks the remote as not taking multiplexing: a peer that
 * drops the shared stream for our <db:result/> would otherwise take
 * it down again at every new pair. */
static void out_orphans(struct worker *w, struct s2s_link *carrier,
			int write, const char *cond, int peer_ended)
{
	/* pairs are added at the head: they come before their carrier, and
	 * a caller iterating the list is past them */
	for (struct s2s_link *d = carrier->ncarried > 0 ? s2s_links : NULL,
	     *next; d != NULL; d = next) {
		next = d->next;
		if (d->carrier != carrier)
			continue;
		if (write && d->state == LINK_UP && d->c != NULL &&
		    !d->c->closed)
			out_pump(d, 1);
		if (peer_ended && d->state == LINK_AUTH) {
			log_info("s2s %s -> %s: the stream ended (the "
				 "peer's error or close) while our "
				 "<db:result/> for this pair waited on %s's: "
				 "no multiplexing to %s",
				 d->local, d->remote, carrier->local,
				 d->remote);
			out_nopiggy_add(d->remote);
		}
		out_end(w, d, cond);
	}
}

/* Why a connection ended, as the condition a stanza it could not
 * deliver twice is bounced with (RFC 6120 8.3.3).  remote-server-not-
 * found and remote-server-timeout during setup (the server could not be
 * reached); for a link that was up: the peer's stream error
 * policy-violation or resource-constraint (its limits) gives
 * resource-constraint (wait), host-gone/host-unknown (it does not serve
 * the domain) remote-server-not-found, any other error undefined-
 * condition; a link closed or timed out without an error (network,
 * restart, system-shutdown, connection-timeout, reset)
 * remote-server-timeout (wait: the server was there). */
static const char *out_death_cond(const struct conn *c,
				  const struct s2s_conn *sc)
{
	const char *e = sc->peer_error;
	if (!sc->was_up)
		return c->deadline_ms != 0 && c->w->now_ms >= c->deadline_ms ?
		       "remote-server-timeout" : "remote-server-not-found";
	if (e == NULL || strcmp(e, "connection-timeout") == 0 ||
	    strcmp(e, "system-shutdown") == 0 || strcmp(e, "reset") == 0 ||
	    strcmp(e, "remote-connection-failed") == 0)
		return "remote-server-timeout";
	if (strcmp(e, "policy-violation") == 0 ||
	    strcmp(e, "resource-constraint") == 0)
		return "resource-constraint";
	if (strcmp(e, "host-gone") == 0 || strcmp(e, "host-unknown") == 0)
		return "remote-server-not-found";
	return "undefined-condition";
}

/* A stream error condition the peer sent, as a static string. */
static const char *out_peer_error(const char *name)
{
	static const char *const known[] = {
		"connection-timeout", "system-shutdown", "reset",
		"remote-connection-failed", "policy-violation",
		"resource-constraint", "host-gone", "host-unknown",
	};
	for (size_t i = 0; i < ARRAY_SIZE(known); i++)
		if (name != NULL && strcmp(name, known[i]) == 0)
			return known[i];
	return "undefined-condition";
}

/* An up link is gone or going (the peer's stream error or close, the
 * connection lost; ours: we end it, s2s.ack_timeout): what waited in its queue goes over a new link (once:
 * a stanza already retried is bounced), verifications get an error, the
 * link is forgotten; with close, its connection is closed now, so that
 * conn.c takes back what it had not written (XEP-0198: s2s_out_gone
 * hands back what was not acknowledged). */
static void out_lost(struct worker *w, struct s2s_link *l, int close,
		     int ours)
{
	struct conn *c = l->c;
	int l_own = l->carrier == NULL;
	const char *cond = c != NULL && c->s2s != NULL ?
			   out_death_cond(c, c->s2s) : "remote-server-timeout";
	if (l->carrier == NULL)
		out_orphans(w, l, 0, cond, !ours);
	out_end(w, l, cond);    /* lets c go */
	if (close && c != NULL && !c->closed && l_own)
		conn_close(c);
}

/* The link could not be set up (or is given up): every pending stanza
 * goes back to its sender with cond, every verification is answered
 * with an error, one line is logged, the link is forgotten. */
static void out_fail(struct worker *w, struct s2s_link *l, const char *cond,
		     const char *reason)
{
	const char *type = out_error_type(cond);
	if (l->carrier == NULL)
		out_orphans(w, l, 0, cond, 0);
	out_unlink(l);
	log_info("s2s %s -> %s%s%s: %s: %u stanzas bounced with <%s/>",
		 l->local, l->remote, l->peer[0] ? " " : "", l->peer, reason,
		 l->npending, cond);
	if (l->carrier == NULL && l->c != NULL && !l->c->closed &&
	    !l->c->want_close) {
		struct conn *c = l->c;
		out_release_conn(l);
		static const char close_tag[] = "</stream:stream>";
		conn_send(c, close_tag, sizeof(close_tag) - 1);
		c->want_close = 1;
		c->state = CONN_STATE_CLOSING;
		c->deadline_ms = w->now_ms + S2S_CLOSE_GRACE_MS;
		if (c->parser != NULL && c->in_parse)
			XML_StopParser(c->parser, XML_FALSE);
	}
	out_release_conn(l);
	out_vreqs_fail(w, l, strcmp(cond, "remote-server-timeout") == 0 ?
			     "remote-server-timeout" :
			     "remote-connection-failed");
	/* bounced after the link is forgotten: a bounce routed back here
	 * (a sender on another server) makes a new link */
	struct s2s_pend *p = l->head;
	l->head = l->tail = NULL;
	l->npending = 0;
	out_free(l);
	while (p != NULL) {
		struct s2s_pend *next = p->next;
		struct settle_at was = settle_enter(&w->settle, &p->hold);
		out_bounce_text(w, p->text, p->len, type, cond);
		settle_leave(&w->settle, was);
		settle_release(&w->settle, &p->hold);
		free(p);
		p = next;
	}
}

static void out_dialed(void *ctx, const struct s2s_dial_result *r,
		       const char *error, const char *reason);

static struct s2s_link *out_new(struct worker *w, const char *local,
				const char *remote)
{
	struct s2s_link *l = calloc(1, sizeof(*l));
	if (l == NULL)
		return NULL;
	snprintf(l->local, sizeof(l->local), "%s", local);
	snprintf(l->remote, sizeof(l->remote), "%s", remote);
	l->state = LINK_DIALING;
	l->deadline_ms = w->now_ms + (int64_t)w->cfg->s2s_link_timeout;
	l->last_ms = w->now_ms;
	l->next = s2s_links;
	s2s_links = l;
	s2s_nlinks++;
	return l;
}

/* Start dialing; the link may be gone (failed) when this returns. */
static void out_start(struct worker *w, struct s2s_link *l)
{
	log_debug("s2s %s -> %s: connecting", l->local, l->remote);
	l->dial = s2s_dial_start(w, l->remote, out_dialed, l);
	if (l->dial == NULL)
		out_fail(w, l, "remote-server-not-found", "the domain could "
			 "not be looked up (no dialer, or out of memory)");
}

/* Ask for pair d on its carrier's stream (XEP-0220 "Multiplexing Sender
 * Domains"): <db:result from=local to=remote/> with the XEP-0185 key
 * for that stream's id; d's stanzas wait for the answer. */
static void out_piggy_ask(struct worker *w, struct s2s_link *d)
{
	struct s2s_link *cl = d->carrier;
	char key[DIALBACK_KEY_HEX + 1];
	struct buf out;
	if (dialback_key(d->remote, d->local, cl->stream_id, key) < 0) {
		out_fail(w, d, "remote-server-not-found",
			 "dialback key failed");
		return;
	}
	d->c = cl->c;
	snprintf(d->peer, sizeof(d->peer), "%s", cl->peer);
	buf_init(&out, 0);
	buf_appendf(&out, "<db:result from='");
	xml_escape(&out, d->local, strlen(d->local), 1);
	buf_appendf(&out, "' to='");
	xml_escape(&out, d->remote, strlen(d->remote), 1);
	buf_appendf(&out, "'>%s</db:result>", key);
	conn_send(d->c, buf_head(&out), buf_used(&out));
	buf_free(&out);
	d->state = LINK_AUTH;
	d->how = "dialback";
	/* s2s.link_timeout for the answer from now: the carrier may have
	 * taken most of it to come up (d was made when it was asked for) */
	d->deadline_ms = w->now_ms + (int64_t)w->cfg->s2s_link_timeout;
	log_debug("s2s %s -> %s: asked on the stream of %s -> %s "
		  "(multiplexing)", d->local, d->remote, cl->local, cl->remote);
	out_send_verifies(d);
}

/* The peer refused pair d on its carrier's stream (type invalid or
 * error), or the carrier cannot carry it: d gets a connection of its
 * own, as without multiplexing; the carrier is asked for no more. */
static void out_piggy_refused(struct worker *w, struct s2s_link *d,
			      const char *reason)
{
	struct s2s_link *cl = d->carrier;
	log_info("s2s %s -> %s: not carried on the stream of %s -> %s (%s): "
		 "a link of its own, %u stanzas waiting", d->local, d->remote,
		 cl->local, cl->remote, reason, d->npending);
	cl->no_piggy = 1;
	cl->ncarried--;
	d->carrier = NULL;
	d->c = NULL;
	d->how = NULL;
	d->peer[0] = '\0';
	d->state = LINK_DIALING;
	d->deadline_ms = w->now_ms + (int64_t)w->cfg->s2s_link_timeout;
	for (struct s2s_vreq *v = d->vreqs; v != NULL; v = v->next)
		v->sent = 0;    /* asked again on its own stream */
	out_start(w, d);
}

/* The peer accepted pair d on its carrier's stream. */
static void out_piggy_up(struct worker *w, struct s2s_link *d)
{
	d->state = LINK_UP;
	d->last_ms = w->now_ms;
	log_info("s2s %s -> %s %s: up (dialback on the stream of %s -> %s), "
		 "%u stanzas waiting", d->local, d->remote, d->peer,
		 d->carrier->local, d->carrier->remote, d->npending);
	out_pump(d, 0);
	out_send_verifies(d);
}

/* Queue a stanza (text) on the link local -> remote, owned here. */
static void out_enqueue(struct worker *w, const char *local,
			const char *remote, const char *text, size_t len,
			int retried)
{
	struct s2s_link *l = out_find(local, remote);
	if (l != NULL && l->state == LINK_UP && l->c != NULL &&
	    l->c->want_close) {
		/* the peer closed its stream and ours is closing: this
		 * stanza goes over a new link */
		out_lost(w, l, 0, 0);
		l = NULL;
	}
	if (l != NULL && l->verify_only) {
		l->verify_only = 0;     /* it carries stanzas now */
		s2s_nverify_links--;
	}
	if (l != NULL && l->state == LINK_UP && l->c != NULL &&
	    l->head == NULL && !out_full(l)) {
		out_write(l, text, len, retried);
		l->last_ms = w->now_ms;
		if (l->carrier != NULL)
			l->carrier->last_ms = w->now_ms;
		return;
	}
	if (l == NULL && s2s_nlinks >= w->cfg->s2s_max_links) {
		log_warn("s2s %s -> %s: %u links (s2s.max_links): stanza "
			 "refused", local, remote, s2s_nlinks);
		out_bounce_text(w, text, len, "wait", "resource-constraint");
		return;
	}
	size_t cap = (size_t)w->cfg->s2s_max_queue_bytes;
	if (l != NULL && l->pending_bytes + len > cap) {
		log_info("s2s %s -> %s: %zu bytes wait (s2s.max_queue_bytes%s): "
			 "stanza refused", local, remote, l->pending_bytes,
			 l->state == LINK_UP ? ", the peer reads slower" : "");
		out_bounce_text(w, text, len, "wait", "resource-constraint");
		return;
	}
	struct s2s_pend *p = out_pend_new(text, len, retried);
	int fresh = l == NULL;
	struct s2s_link *carrier = fresh ? out_carrier(w, remote) : NULL;
	if (p != NULL && l == NULL)
		l = out_new(w, local, remote);
	if (p == NULL || l == NULL) {
		free(p);
		out_bounce_text(w, text, len, "wait", "resource-constraint");
		return;
	}
	if (carrier != NULL) {
		/* on the stream of another of our domains to remote */
		l->carrier = carrier;
		carrier->ncarried++;
		fresh = 0;
	}
	/* the frame being routed, if from another node, is kept by its
	 * sender until this stanza leaves the queue (out_pump, out_fail) */
	settle_hold(&w->settle, &p->hold);
	if (l->tail != NULL)
		l->tail->next = p;
	else
		l->head = p;
	l->tail = p;
	l->pending_bytes += len;
	l->npending++;
	if (fresh)
		out_start(w, l);
	else if (carrier != NULL && carrier->state == LINK_UP)
		out_piggy_ask(w, l);    /* else asked when it is up */
}

/* ---- the stream ------------------------------------------------------- */

static void out_idle_close(struct worker *w, struct s2s_link *l);

static void out_header(struct s2s_link *l)
{
	struct buf out;
	buf_init(&out, 0);
	buf_appendf(&out, "<?xml version='1.0'?><stream:stream xmlns='"
		    NS_SERVER "' xmlns:stream='" NS_STREAMS "' xmlns:db='"
		    NS_DIALBACK "' from='");
	xml_escape(&out, l->local, strlen(l->local), 1);
	buf_appendf(&out, "' to='");
	xml_escape(&out, l->remote, strlen(l->remote), 1);
	buf_appendf(&out, "' version='1.0' xml:lang='en'>");
	conn_send(l->c, buf_head(&out), buf_used(&out));
	buf_free(&out);
	l->c->header_sent = 1;
}

static void out_dialed(void *ctx, const struct s2s_dial_result *r,
		       const char *error, const char *reason)
{
	struct s2s_link *l = ctx;
	struct worker *w = s2s_out_worker;
	l->dial = NULL;
	if (error != NULL) {
		out_fail(w, l, error, reason != NULL ? reason : error);
		return;
	}
	snprintf(l->peer, sizeof(l->peer), "%s", r->peer);
	struct conn *c = conn_new_outgoing(w, r->fd, r->peer);
	struct s2s_conn *sc = calloc(1, sizeof(*sc));
	if (c == NULL || sc == NULL) {
		free(sc);
		if (c != NULL)
			conn_close(c);
		out_fail(w, l, "remote-server-not-found", "out of memory");
		return;
	}
	c->kind = CONN_S2S_OUT;
	c->s2s = sc;
	sc->link = l;
	snprintf(sc->local, sizeof(sc->local), "%s", l->local);
	snprintf(sc->remote, sizeof(sc->remote), "%s", l->remote);
	l->c = c;
	l->state = LINK_STREAM;
	c->direct_tls = r->direct_tls;
	c->deadline_ms = l->deadline_ms;
	snprintf(c->stream_to, sizeof(c->stream_to), "%s", l->local);
	log_debug("s2s %s -> %s: connected to %s%s", l->local, l->remote,
		  r->peer, r->direct_tls ? " (direct TLS)" : "");
	if (r->direct_tls) {
		if (w->tls_client == NULL ||
		    tls_start_client(c, w->tls_client, l->remote, 1) < 0)
			out_fail(w, l, "remote-server-not-found",
				 "no TLS client context");
		else
			conn_update_events(c);
		return;     /* the header once TLS is up */
	}
	out_header(l);
}

void s2s_out_tls_done(struct conn *c, SSL *ssl)
{
	struct s2s_link *l = out_link(c);
	if (l == NULL)
		return;
	X509 *cert = SSL_get1_peer_certificate(ssl);
	long vr = SSL_get_verify_result(ssl);
	int id_ok = cert != NULL && certid_matches(cert, l->remote);
	/* libssl checked the chain for purpose "sslserver" (an EKU without
	 * serverAuth fails there); said again here so that the rule is
	 * ours and the log names it (certid_eku_ok, as_client 0) */
	const char *eku_why = NULL;
	int eku_ok = cert != NULL && certid_eku_ok(cert, 0, &eku_why);
	l->tls_verified = cert != NULL && vr == X509_V_OK && id_ok && eku_ok;
	if (!l->tls_verified)
		log_info("s2s %s -> %s: certificate not valid for %s: %s",
			 l->local, l->remote, l->remote,
			 cert == NULL ? "none" : vr != X509_V_OK ?
			 X509_verify_cert_error_string(vr) :
			 !id_ok ? "the name does not match (RFC 6125)" :
			 eku_why);
	X509_free(cert);
	out_header(l);
}

/* The peer's stream header (RFC 6120 4.7). */
void s2s_out_stream_open(struct conn *c, const char *name,
			 const char **atts)
{
	struct s2s_link *l = out_link(c);
	const char *id = NULL, *version = NULL;
	static const char want[] = NS_STREAMS "\x01" "stream";
	c->header_sent = 1;     /* ours went first */
	if (l == NULL) {
		stream_error(c, "undefined-condition", NULL);
		return;
	}
	for (; atts[0] != NULL; atts += 2) {
		if (strcmp(atts[0], "id") == 0)
			id = atts[1];
		else if (strcmp(atts[0], "version") == 0)
			version = atts[1];
	}
	size_t nslen = strlen(NS_STREAMS);
	if (strncmp(name, want, nslen) != 0 || name[nslen] != XML_NS_SEP ||
	    strcmp(name + nslen + 1, "stream") != 0 || c->stream_ns != 2) {
		stream_error(c, "invalid-namespace", NULL);
		return;
	}
	if (version == NULL || strtol(version, NULL, 10) < 1) {
		stream_error(c, "unsupported-version", "version 1.0 needed");
		return;
	}
	if (id == NULL || *id == '\0' || strlen(id) > IPC_S2S_ID_MAX) {
		stream_error(c, "invalid-xml", "no usable stream id");
		return;
	}
	snprintf(l->stream_id, sizeof(l->stream_id), "%s", id);
	c->state = CONN_STATE_OPEN;
}

int s2s_out_top_level_known(const struct conn *c, const char *name,
			    size_t nslen)
{
	const char *local = name + nslen + 1;
	(void)c;
#define OUT_NS_IS(ns) (nslen == strlen(ns) && memcmp(name, ns, nslen) == 0)
	if (OUT_NS_IS(NS_STREAMS))
		return strcmp(local, "features") == 0 ||
		       strcmp(local, "error") == 0;
	if (OUT_NS_IS(NS_TLS))
		return strcmp(local, "proceed") == 0 ||
		       strcmp(local, "failure") == 0;
	if (OUT_NS_IS(NS_SASL))
		return strcmp(local, "success") == 0 ||
		       strcmp(local, "failure") == 0;
	if (OUT_NS_IS(NS_DIALBACK))
		return strcmp(local, "result") == 0 ||
		       strcmp(local, "verify") == 0;
	if (OUT_NS_IS(NS_SM))
		return strcmp(local, "a") == 0 || strcmp(local, "r") == 0 ||
		       strcmp(local, "enabled") == 0 ||
		       strcmp(local, "failed") == 0;
#undef OUT_NS_IS
	return 0;
}

static void out_send_result(struct s2s_link *l)
{
	char key[DIALBACK_KEY_HEX + 1];
	struct buf out;
	/* XEP-0185: the key for (receiving = remote, originating = local,
	 * the id the receiving server gave this stream) */
	if (dialback_key(l->remote, l->local, l->stream_id, key) < 0) {
		out_fail(l->c->w, l, "remote-server-not-found",
			 "dialback key failed");
		return;
	}
	buf_init(&out, 0);
	buf_appendf(&out, "<db:result from='");
	xml_escape(&out, l->local, strlen(l->local), 1);
	buf_appendf(&out, "' to='");
	xml_escape(&out, l->remote, strlen(l->remote), 1);
	buf_appendf(&out, "'>%s</db:result>", key);
	conn_send(l->c, buf_head(&out), buf_used(&out));
	buf_free(&out);
	l->state = LINK_AUTH;
	l->how = "dialback";
}

static void out_send_external(struct s2s_link *l)
{
	char b64[BASE64_ENCODED_LEN(S2S_DOMAIN_MAX) + 1];
	struct buf out;
	base64_encode(l->local, strlen(l->local), b64, sizeof(b64));
	buf_init(&out, 0);
	buf_appendf(&out, "<auth xmlns='" NS_SASL "' mechanism='EXTERNAL'>"
		    "%s</auth>", b64);
	conn_send(l->c, buf_head(&out), buf_used(&out));
	buf_free(&out);
	l->state = LINK_AUTH;
	l->how = "EXTERNAL";
}

static int out_offers_external(const struct xml_node *features)
{
	const struct xml_node *m = xml_child(features, NS_SASL, "mechanisms");
	for (const struct xml_node *e = m != NULL ? xml_first_element(m) : NULL;
	     e != NULL; e = xml_next_element(e)) {
		if (!xml_is(e, NS_SASL, "mechanism"))
			continue;
		for (const struct xml_node *t = e->children; t != NULL;
		     t = t->next)
			if (t->name == NULL && t->text_len == 8 &&
			    memcmp(t->text, "EXTERNAL", 8) == 0)
				return 1;
	}
	return 0;
}

/* The link is authenticated: what waited goes out. */
static void out_up(struct worker *w, struct s2s_link *l)
{
	struct conn *c = l->c;
	l->state = LINK_UP;
	c->deadline_ms = 0;
	c->authenticated = 1;
	l->last_ms = w->now_ms;
	c->s2s->was_up = 1;
	log_info("s2s %s -> %s %s: up (%s, %s%s), %u stanzas waiting",
		 l->local, l->remote, l->peer, l->how,
		 conn_tls(c) ? "TLS" : "no TLS",
		 l->sm_offered ? ", XEP-0198" : "", l->npending);
	if (l->sm_offered) {
		static const char enable[] = "<enable xmlns='" NS_SM "'/>";
		conn_send(c, enable, sizeof(enable) - 1);
		c->s2s->sm_on = 1;     /* counting from here (XEP-0198 4) */
	}
	out_pump(l, 0);
	out_send_verifies(l);
	/* the pairs that waited for this stream */
	for (struct s2s_link *d = s2s_links, *next; d != NULL; d = next) {
		next = d->next;
		if (d->carrier != l || d->state != LINK_DIALING)
			continue;
		if (l->db_feature || strcmp(l->how, "dialback") == 0)
			out_piggy_ask(w, d);
		else
			out_piggy_refused(w, d, "the peer offers no dialback");
	}
	if (out_closing && l->vreqs == NULL)
		out_idle_close(w, l);   /* stopping: what waited is written */
}

static void out_features(struct conn *c, struct s2s_link *l,
			 const struct xml_node *n)
{
	struct worker *w = c->w;
	l->sm_offered = xml_child(n, NS_SM, "sm") != NULL;
	/* from each features element: after the TLS and SASL restarts
	 * the last one counts (a peer may offer dialback before TLS and
	 * not on the authenticated stream) */
	l->db_feature = xml_child(n, NS_DIALBACK_FEATURE,
				  "dialback") != NULL;
	if (l->sasl_done) {
		out_up(w, l);   /* the restarted stream after <success/> */
		return;
	}
	if (!conn_tls(c)) {
		if (xml_child(n, NS_TLS, "starttls") != NULL &&
		    w->tls_client != NULL) {
			static const char st[] = "<starttls xmlns='" NS_TLS
						 "'/>";
			conn_send(c, st, sizeof(st) - 1);
			l->starttls_sent = 1;
			return;
		}
		if (w->cfg->s2s_require_tls) {
			out_fail(w, l, "remote-server-not-found",
				 w->tls_client == NULL ? "no TLS client "
				 "context (tls.certificate)" : "no STARTTLS "
				 "offered (s2s.require_tls)");
			return;
		}
	}
	out_send_verifies(l);
	if (l->tls_verified && out_offers_external(n))
		out_send_external(l);
	else if (out_dialback_allowed(w, l->remote))
		out_send_result(l);
	else
		out_fail(w, l, "remote-server-not-found", l->tls_verified ?
			 "no SASL EXTERNAL offered and s2s.auth is pkix" :
			 "certificate not valid and s2s.auth is pkix");
}

static void out_proceed(struct conn *c, struct s2s_link *l)
{
	l->starttls_sent = 0;
	if (tls_start_client(c, c->w->tls_client, l->remote, 0) < 0) {
		out_fail(c->w, l, "remote-server-not-found", "TLS start failed");
		return;
	}
	conn_update_events(c);
	/* the rest of this chunk was sent in clear before the handshake:
	 * discarded; a new parser for the stream after TLS */
	c->restart_pending = 1;
	c->restart_offset = -1;
	XML_StopParser(c->parser, XML_FALSE);
}

/* The answer to one of l's <db:verify/>s (matched by the stream id and
 * the pair): 1 if it was. */
static int out_verify_answer(struct conn *c, struct s2s_link *l,
			     const struct xml_node *n)
{
	const char *type = xml_attr(n, "type"), *id = xml_attr(n, "id");
	const char *from = xml_attr(n, "from"), *to = xml_attr(n, "to");
	for (struct s2s_vreq **p = &l->vreqs; *p != NULL; p = &(*p)->next) {
		struct s2s_vreq *v = *p;
		if (!v->sent || id == NULL || strcmp(v->stream_id, id) != 0 ||
		    from == NULL || to == NULL ||
		    strcasecmp(from, l->remote) != 0 ||
		    strcasecmp(to, l->local) != 0)
			continue;
		*p = v->next;
		int valid = type != NULL && strcmp(type, "valid") == 0;
		out_verified(c->w, l, v, type != NULL &&
			     strcmp(type, "error") == 0 ? IPC_S2S_ERROR :
			     valid ? IPC_S2S_VALID : IPC_S2S_INVALID,
			     valid ? NULL : "remote-connection-failed");
		free(v);
		return 1;
	}
	return 0;
}

static void out_dialback(struct conn *c, struct s2s_link *l,
			 struct xml_node *n)
{
	const char *type = xml_attr(n, "type");
	const char *from = xml_attr(n, "from"), *to = xml_attr(n, "to");
	if (strcmp(n->name, "verify") == 0) {
		const char *id = xml_attr(n, "id");
		/* asked by this link or a pair it carries, answered here */
		if (out_verify_answer(c, l, n))
			return;
		for (struct s2s_link *d = l->ncarried > 0 ? s2s_links : NULL;
		     d != NULL; d = d->next)
			if (d->carrier == l && d->c == c &&
			    out_verify_answer(c, d, n))
				return;
		log_info("s2s %s -> %s: <db:verify/> answer for no question "
			 "(id %s): ignored", l->local, l->remote,
			 id != NULL ? id : "none");
		return;
	}
	if (l->state == LINK_UP && from != NULL && to != NULL &&
	    strcasecmp(from, l->remote) == 0 && strcasecmp(to, l->local) != 0) {
		/* the answer for a pair this stream carries (multiplexing) */
		for (struct s2s_link *d = l->ncarried > 0 ? s2s_links : NULL;
		     d != NULL; d = d->next) {
			if (d->carrier != l || d->c != c ||
			    d->state != LINK_AUTH ||
			    strcasecmp(d->local, to) != 0)
				continue;
			if (type != NULL && strcmp(type, "valid") == 0)
				out_piggy_up(c->w, d);
			else
				out_piggy_refused(c->w, d, type != NULL &&
						  strcmp(type, "error") == 0 ?
						  "the peer answered with an "
						  "error" : "the peer found "
						  "our key invalid");
			return;
		}
		/* none waits (it timed out, or was never asked): it
		 * authorizes nothing; the stream and its pairs stay */
		log_info("s2s %s -> %s: <db:result type='%s'/> for %s that no "
			 "pair waits for: ignored", l->local, l->remote,
			 type != NULL ? type : "", to);
		return;
	}
	if (l->state != LINK_AUTH || strcmp(l->how, "dialback") != 0 ||
	    from == NULL || to == NULL || strcasecmp(from, l->remote) != 0 ||
	    strcasecmp(to, l->local) != 0) {
		stream_error(c, "invalid-from", "unexpected <db:result/>");
		return;
	}
	if (type != NULL && strcmp(type, "valid") == 0)
		out_up(c->w, l);
	else
		out_fail(c->w, l, "remote-server-not-found",
			 type != NULL && strcmp(type, "error") == 0 ?
			 "dialback: the peer answered with an error" :
			 "dialback: our key was found invalid");
}

/* XEP-0198 elements on our stream (also while it closes: the last
 * <a/> answers the <r/> before our </stream:stream>). */
static void out_sm(struct conn *c, struct s2s_conn *sc,
		   const struct xml_node *n)
{
	struct s2s_link *l = sc->link;
	if (strcmp(n->name, "a") == 0 && sc->sm_on) {
		uint32_t h;
		if (smwire_parse_h(xml_attr(n, "h"), &h) < 0 ||
		    h - sc->sm_acked > sc->sm_sent - sc->sm_acked) {
			log_info("s2s %s -> %s: <a h='%s'/>: not a count of "
				 "what we sent (%u)", sc->local, sc->remote,
				 xml_attr(n, "h") != NULL ? xml_attr(n, "h")
							  : "", sc->sm_sent);
			stream_error(c, "undefined-condition", "bad <a h/>");
			return;
		}
		for (uint32_t k = h - sc->sm_acked; k > 0 && sc->uhead != NULL;
		     k--) {
			struct s2s_pend *p = sc->uhead;
			sc->uhead = p->next;
			if (sc->uhead == NULL)
				sc->utail = NULL;
			sc->ubytes -= p->len;
			sc->ucount--;
			settle_release(&s2s_out_worker->settle, &p->hold);
			free(p);
		}
		sc->sm_acked = h;
		/* answered: the next <r/> (or the one still open for what
		 * was sent after this count) starts the clock again */
		sc->r_since_ms = h == sc->sm_sent ? 0 : c->w->now_ms;
		if (l != NULL && l->state == LINK_UP)
			out_pump_all(l);
	} else if (strcmp(n->name, "r") == 0) {
		/* no stanzas come our way on this stream */
		static const char a[] = "<a xmlns='" NS_SM "' h='0'/>";
		conn_send(c, a, sizeof(a) - 1);
	} else if (strcmp(n->name, "failed") == 0 && sc->sm_on) {
		log_info("s2s %s -> %s: XEP-0198 <enable/> refused: without "
			 "acknowledgements", sc->local, sc->remote);
		sc->sm_on = 0;
		out_journal_free(sc);
	}
}

void s2s_out_dispatch(struct conn *c, struct xml_node *n)
{
	struct s2s_link *l = out_link(c);
	if (c->s2s != NULL && strcmp(n->ns, NS_SM) == 0) {
		out_sm(c, c->s2s, n);
		return;
	}
	if (l == NULL)
		return;         /* let go: closing */
	l->last_ms = c->w->now_ms;
	if (xml_is(n, NS_STREAMS, "error")) {
		const struct xml_node *e = xml_first_element(n);
		char reason[128];
		snprintf(reason, sizeof(reason), "stream error <%s/> from the "
			 "peer", e != NULL ? e->name : "?");
		if (l->state != LINK_UP) {
			out_fail(c->w, l, "remote-server-not-found", reason);
			return;
		}
		c->s2s->peer_error = out_peer_error(e != NULL ? e->name
							     : NULL);
		log_info("s2s %s -> %s %s: %s: %u stanzas queued and %u not "
			 "acknowledged go over a new link", l->local,
			 l->remote, l->peer, reason, l->npending,
			 c->s2s->sm_on ? c->s2s->ucount : 0);
		out_lost(c->w, l, 1, 0);
	} else if (xml_is(n, NS_STREAMS, "features")) {
		if (l->state == LINK_STREAM || l->sasl_done)
			out_features(c, l, n);
	} else if (strcmp(n->ns, NS_TLS) == 0 && !l->starttls_sent) {
		/* only the answer to our <starttls/>: a second handshake
		 * inside the first, or one we never asked for, is not
		 * started */
		stream_error(c, "undefined-condition", strcmp(n->name,
			     "proceed") == 0 ? "TLS <proceed/> without "
			     "<starttls/>" : "TLS <failure/> without "
			     "<starttls/>");
	} else if (xml_is(n, NS_TLS, "proceed")) {
		out_proceed(c, l);
	} else if (xml_is(n, NS_TLS, "failure")) {
		out_fail(c->w, l, "remote-server-not-found",
			 "STARTTLS refused");
	} else if (strcmp(n->ns, NS_SASL) == 0 &&
		   (l->state != LINK_AUTH || l->sasl_done ||
		    strcmp(l->how, "EXTERNAL") != 0)) {
		/* only the answer to our <auth/>: an unasked <success/>
		 * would bring the link up unauthenticated (before STARTTLS
		 * even), an unasked <failure/> start dialback in clear */
		stream_error(c, "undefined-condition", strcmp(n->name,
			     "success") == 0 ? "SASL <success/> without "
			     "<auth/>" : "SASL <failure/> without <auth/>");
	} else if (xml_is(n, NS_SASL, "success")) {
		l->sasl_done = 1;
		stream_restart(c);
		out_header(l);
	} else if (xml_is(n, NS_SASL, "failure")) {
		if (out_dialback_allowed(c->w, l->remote)) {
			log_info("s2s %s -> %s: SASL EXTERNAL refused: trying "
				 "dialback", l->local, l->remote);
			out_send_result(l);
		} else {
			out_fail(c->w, l, "remote-server-not-found",
				 "SASL EXTERNAL refused");
		}
	} else if (strcmp(n->ns, NS_DIALBACK) == 0) {
		out_dialback(c, l, n);
	} else {
		stream_error(c, "unsupported-stanza-type", NULL);
	}
}

void s2s_out_gone(struct conn *c)
{
	struct s2s_conn *sc = c->s2s;
	struct s2s_link *l = out_link(c);
	if (sc == NULL)
		return;
	/* what it had not written (or, XEP-0198, what the peer did not
	 * acknowledge): the peer gone, its error, or our deadline */
	sc->cond = out_death_cond(c, sc);
	if (sc->sm_on && sc->uhead != NULL) {
		/* written or not, every stanza the peer did not acknowledge
		 * goes once more over a new link (the peer may have handled
		 * the last ones without saying so: duplicates are possible
		 * there); conn.c's take-back then skips stanzas */
		log_info("s2s %s -> %s: %u stanzas not acknowledged "
			 "(XEP-0198): sent once more over a new link",
			 sc->local, sc->remote, sc->ucount);
		for (struct s2s_pend *p = sc->uhead; p != NULL; p = p->next)
			out_back_add(sc->local, sc->remote, p->text, p->len,
				     p->retried ? sc->cond : NULL, &p->hold);
		out_journal_free(sc);
	}
	sc->sm_handed = sc->sm_on;
	if (l == NULL)
		return;
	if (l->state == LINK_UP) {
		/* what it had written but not sent comes back through
		 * conn.c; new stanzas make a new link */
		log_info("s2s %s -> %s %s: closed after %s", l->local,
			 l->remote, l->peer, l->how);
		out_lost(c->w, l, 0, 0);
		return;
	}
	l->c = NULL;
	sc->link = NULL;
	int late = c->w->now_ms >= l->deadline_ms;
	out_fail(c->w, l, late ? "remote-server-timeout"
			       : "remote-server-not-found",
		 late ? "not set up in time (s2s.link_timeout)"
		      : "connection closed during setup");
}

void s2s_out_free(struct conn *c)
{
	out_journal_free(c->s2s);
	free(c->s2s->retried);
	free(c->s2s);
	c->s2s = NULL;
}

int s2s_out_taken(struct conn *c, const char *text, size_t len,
		  uint64_t end, struct settle_hold *held)
{
	struct s2s_conn *sc = c->s2s;
	if (sc == NULL || sc->local[0] == '\0')
		return 0;
	/* stanzas only: the stream's own elements (db:verify, the close)
	 * are not routed */
	if (!((len > 8 && memcmp(text, "<message", 8) == 0) ||
	      (len > 9 && memcmp(text, "<presence", 9) == 0) ||
	      (len > 3 && memcmp(text, "<iq", 3) == 0)))
		return 1;
	if (sc->sm_handed)
		return 1;       /* in the journal handed back (s2s_out_gone) */
	int retried = 0;
	for (unsigned i = 0; i < sc->nretried && !retried; i++)
		retried = sc->retried[i] == end;
	out_back_add(sc->local, sc->remote, text, len,
		     retried ? (sc->cond != NULL ? sc->cond
						 : "remote-server-not-found")
			     : NULL, held);
	return 1;
}

/* The domain of a trusted, prepared JID. */
static const char *out_domain(const char *jid, size_t *len_r)
{
	size_t slash = strcspn(jid, "/");
	const char *at = memchr(jid, '@', slash);
	const char *d = at != NULL ? at + 1 : jid;
	*len_r = slash - (size_t)(d - jid);
	return d;
}

/* The local domain a stanza given back is from: its 'from' (a stream
 * carries several of our domains), else the link's. */
static const char *out_text_local(const struct s2s_back *b, char *local)
{
	struct arena a;
	const char *error, *from;
	const char *r = b->local;
	arena_init(&a, 1024);
	struct xml_node *st = stanza_parse(&a, b->text, b->len, &error);
	if (st != NULL && (from = xml_attr(st, "from")) != NULL) {
		size_t dlen;
		const char *d = out_domain(from, &dlen);
		if (dlen > 0 && dlen <= S2S_DOMAIN_MAX) {
			memcpy(local, d, dlen);
			local[dlen] = '\0';
			r = local;
		}
	}
	arena_free(&a);
	return r;
}

/* What dead links gave back: over a new link once, else bounced. */
static void out_route_back(struct worker *w)
{
	struct s2s_back *b = out_back_head;
	unsigned retry = 0, bounced = 0;
	if (b == NULL)
		return;
	out_back_head = NULL;
	out_back_tail = &out_back_head;
	while (b != NULL) {
		struct s2s_back *next = b->next;
		/* routed again under its frame's hold */
		struct settle_at was = settle_enter(&w->settle, &b->hold);
		if (b->cond == NULL) {
			char local[S2S_DOMAIN_MAX + 1];
			out_enqueue(w, out_text_local(b, local), b->remote,
				    b->text, b->len, 1);
			retry++;
		} else {
			log_info("s2s %s -> %s: a stanza not written on its "
				 "second link either: bounced with <%s/>",
				 b->local, b->remote, b->cond);
			out_bounce_text(w, b->text, b->len,
					out_error_type(b->cond), b->cond);
			bounced++;
		}
		settle_leave(&w->settle, was);
		settle_release(&w->settle, &b->hold);
		free(b);
		b = next;
	}
	if (retry > 0)
		log_info("s2s: %u stanzas not written on a link that ended: "
			 "sent once more over a new link", retry);
	(void)bounced;
}

int s2s_out_route(struct worker *w, struct xml_node *st, const char *to_domain)
{
	const char *from = xml_attr(st, "from"), *error;
	char local[S2S_DOMAIN_MAX + 1];
	size_t dlen;
	/* while stopping too: the sessions' unavailable to remote
	 * contacts (presence_stop_broadcast) */
	if (from == NULL || w->cfg->s2s_max_links == 0 ||
	    strlen(to_domain) > S2S_DOMAIN_MAX)
		return -1;
	const char *d = out_domain(from, &dlen);
	if (dlen == 0 || dlen > S2S_DOMAIN_MAX)
		return -1;
	memcpy(local, d, dlen);
	local[dlen] = '\0';
	struct buf text;
	buf_init(&text, xml_out_cap(w->cfg->max_stanza_size));
	struct ipc_s2s_out h;
	memset(&h, 0, sizeof(h));
	h.local_len = (uint16_t)dlen;
	h.remote_len = (uint16_t)strlen(to_domain);
	unsigned slot = s2s_owner_slot(w, to_domain);
	int remote_owner = slot != w->slot;
	if (remote_owner) {
		buf_append(&text, &h, sizeof(h));
		buf_append(&text, local, dlen);
		buf_append(&text, to_domain, h.remote_len);
	}
	size_t off = buf_used(&text);
	if (route_serialize_out(w, &text, st) < 0) {
		buf_free(&text);
		return -1;
	}
	/* another node's frame stays held by this worker until the
	 * owner is done with it (a link being set up can take seconds):
	 * lent (worker_send_node, settle.h) */
	if (!remote_owner) {
		out_enqueue(w, local, to_domain, buf_head(&text) + off,
			    buf_used(&text) - off, 0);
	} else if (worker_send_node(w, slot, 0, 0, IPC_FRAME_S2S_OUT, 0, 0,
				    buf_head(&text), buf_used(&text),
				    &error) < 0) {
		log_info("s2s %s -> %s: to w%u: %s: stanza refused", local,
			 to_domain, slot, error);
		out_bounce_text(w, buf_head(&text) + off,
				buf_used(&text) - off, "wait",
				"resource-constraint");
	}
	buf_free(&text);
	return 0;
}

static int out_frame_stanza(struct worker *w, const void *payload,
			    size_t len)
{
	struct ipc_s2s_out h;
	char local[S2S_DOMAIN_MAX + 1], remote[S2S_DOMAIN_MAX + 1];
	const char *p = payload;
	if (len < sizeof(h))
		goto bad;
	memcpy(&h, p, sizeof(h));
	if (h.local_len == 0 || h.local_len > S2S_DOMAIN_MAX ||
	    h.remote_len == 0 || h.remote_len > S2S_DOMAIN_MAX ||
	    len <= sizeof(h) + h.local_len + h.remote_len)
		goto bad;
	memcpy(local, p + sizeof(h), h.local_len);
	local[h.local_len] = '\0';
	memcpy(remote, p + sizeof(h) + h.local_len, h.remote_len);
	remote[h.remote_len] = '\0';
	if (strlen(local) != h.local_len || strlen(remote) != h.remote_len)
		goto bad;
	size_t off = sizeof(h) + h.local_len + h.remote_len;
	out_enqueue(w, local, remote, p + off, len - off, 0);
	return 1;
bad:
	log_error("IPC_FRAME_S2S_OUT: malformed payload (%zu bytes): dropped",
		  len);
	return 1;
}

static int out_frame_verify(struct worker *w, const void *payload,
			    size_t len)
{
	struct ipc_s2s_verify r;
	if (len != sizeof(r)) {
		log_error("IPC_FRAME_S2S_VERIFY: %zu bytes: dropped", len);
		return 1;
	}
	memcpy(&r, payload, sizeof(r));
	r.local[sizeof(r.local) - 1] = r.remote[sizeof(r.remote) - 1] = '\0';
	r.stream_id[sizeof(r.stream_id) - 1] = r.key[sizeof(r.key) - 1] = '\0';
	struct s2s_vreq *v = calloc(1, sizeof(*v));
	struct s2s_link *l = out_find(r.local, r.remote);
	int fresh = l == NULL;
	int over = l == NULL && (s2s_nlinks >= w->cfg->s2s_max_links ||
				 s2s_nverify_links >= w->cfg->s2s_max_links / 2);
	if (over)
		log_info("s2s %s -> %s: verification refused: %u links, %u of "
			 "them only to verify (at most half of s2s.max_links)",
			 r.local, r.remote, s2s_nlinks, s2s_nverify_links);
	if (v == NULL || over ||
	    (l == NULL && (l = out_new(w, r.local, r.remote)) == NULL)) {
		struct s2s_vreq tmp = { .in_slot = r.in_slot,
					.in_conn_id = r.in_conn_id,
					.in_gen = r.in_gen };
		struct s2s_link none;
		memset(&none, 0, sizeof(none));
		snprintf(none.local, sizeof(none.local), "%s", r.local);
		snprintf(none.remote, sizeof(none.remote), "%s", r.remote);
		out_verified(w, &none, &tmp, IPC_S2S_ERROR,
			     "resource-constraint");
		free(v);
		return 1;
	}
	v->in_slot = r.in_slot;
	v->in_conn_id = r.in_conn_id;
	v->in_gen = r.in_gen;
	v->deadline_ms = w->now_ms + (int64_t)w->cfg->s2s_link_timeout;
	snprintf(v->stream_id, sizeof(v->stream_id), "%s", r.stream_id);
	snprintf(v->key, sizeof(v->key), "%s", r.key);
	v->next = l->vreqs;
	l->vreqs = v;
	if (fresh) {
		l->verify_only = 1;
		s2s_nverify_links++;
	}
	/* on a stream past its features (authenticating or up): now */
	if (l->c != NULL && (l->state == LINK_AUTH || l->state == LINK_UP))
		out_send_verify(l, v);
	if (fresh)
		out_start(w, l);
	return 1;
}

int s2s_out_frame(struct worker *w, const struct ipc_frame_header *hdr,
		  const void *payload, size_t len)
{
	if (hdr->type == IPC_FRAME_S2S_OUT)
		return out_frame_stanza(w, payload, len);
	if (hdr->type == IPC_FRAME_S2S_VERIFY)
		return out_frame_verify(w, payload, len);
	return 0;
}

/* The client TLS context from the current settings (certificate
 * renewed, s2s.ca_file changed): new links use it, links that are up
 * keep theirs (OpenSSL counts the references). */
static const struct config *s2s_out_cfg;

static void out_tls_client(struct worker *w)
{
	const char *error;
	s2s_out_cfg = w->cfg;
	SSL_CTX *ctx = tls_client_context_new(w->cfg, &error);
	if (ctx == NULL) {
		log_error("outgoing s2s TLS context not made: %s%s", error,
			  w->tls_client != NULL ? " (the previous one stays)"
						: " (no STARTTLS on new links)");
		return;
	}
	SSL_CTX_free(w->tls_client);
	w->tls_client = ctx;
}

int s2s_out_init(struct worker *w)
{
	s2s_out_worker = w;
	out_tls_client(w);
	return 0;
}

/* Verifications never answered (the link is up but the peer is mute). */
static void out_vreq_timeouts(struct worker *w, struct s2s_link *l,
			      int64_t now)
{
	for (struct s2s_vreq **p = &l->vreqs; *p != NULL;) {
		struct s2s_vreq *v = *p;
		if (now < v->deadline_ms) {
			p = &v->next;
			continue;
		}
		*p = v->next;
		out_verified(w, l, v, IPC_S2S_ERROR, "remote-server-timeout");
		free(v);
	}
}

/* Close a link that carried nothing for s2s.out_idle_timeout. */
static void out_idle_close(struct worker *w, struct s2s_link *l)
{
	struct conn *c = l->c;
	static const char close_tag[] = "</stream:stream>";
	log_debug("s2s %s -> %s: idle: closed", l->local, l->remote);
	/* The connection lets l go before anything is written: the forced
	 * writes below (out_pump(..., 1), here and in out_orphans for each
	 * carried pair) may pass the output limit, conn_send then flushes,
	 * and a failed write closes c on the spot.  With c still leading to
	 * l, that close would run s2s_out_gone -> out_lost(l) ->
	 * out_orphans(l) from inside this function and inside out_orphans'
	 * own loop, freeing l, the pair being written and the next one the
	 * loop holds.  Let go, s2s_out_gone finds no link and only hands
	 * back the XEP-0198 journal; what the closed connection did not
	 * take stays queued (out_pump stops at a closed connection) and is
	 * routed again below and by out_orphans. */
	if (c->s2s != NULL)
		c->s2s->link = NULL;
	out_pump(l, 1);         /* what waits goes before the close */
	out_orphans(w, l, 1, "remote-server-timeout", 0);
	if (!c->closed && c->s2s != NULL && c->s2s->sm_on &&
	    c->s2s->uhead != NULL)
		out_request_ack(c, c->s2s);
	/* what is left was left by a write that failed */
	out_end(w, l, "remote-server-timeout");    /* lets c go */
	if (c->closed)
		return;         /* a write failed: gone already */
	conn_send(c, close_tag, sizeof(close_tag) - 1);
	c->want_close = 1;
	c->state = CONN_STATE_CLOSING;
	c->deadline_ms = w->now_ms + S2S_CLOSE_GRACE_MS;
}

/* A pair carried on l waits for an answer (its <db:result/>, a
 * verification): not idle. */
static int out_carried_asking(const struct s2s_link *l)
{
	for (const struct s2s_link *d = l->ncarried > 0 ? s2s_links : NULL;
	     d != NULL; d = d->next)
		if (d->carrier == l && (d->state != LINK_UP || d->vreqs != NULL))
			return 1;
	return 0;
}

/* XEP-0198: an <r/> unanswered for s2s.ack_timeout (0: never). */
static int out_ack_late(const struct worker *w, const struct s2s_link *l,
			int64_t now)
{
	const struct s2s_conn *sc = l->c->s2s;
	return w->cfg->s2s_ack_timeout > 0 && sc != NULL && sc->sm_on &&
	       sc->r_since_ms != 0 && !l->c->want_close &&
	       now - sc->r_since_ms >= (int64_t)w->cfg->s2s_ack_timeout;
}

void s2s_out_tick(struct worker *w, int64_t now_ms)
{
	if (w->cfg != s2s_out_cfg)     /* a reload */
		out_tls_client(w);
	out_route_back(w);
	for (struct s2s_link *l = s2s_links, *next; l != NULL; l = next) {
		next = l->next;
		out_vreq_timeouts(w, l, now_ms);
		if (l->state != LINK_UP && w->stopping &&
		    now_ms >= w->stop_deadline_ms) {
			out_fail(w, l, "remote-server-timeout",
				 "the server is stopping (shutdown_timeout)");
		} else if (l->state != LINK_UP && now_ms >= l->deadline_ms) {
			out_fail(w, l, "remote-server-timeout",
				 "not set up in time (s2s.link_timeout)");
		} else if (l->carrier != NULL) {
			continue;       /* closed with its carrier */
		} else if (l->state == LINK_UP && l->c != NULL &&
			   out_ack_late(w, l, now_ms)) {
			struct s2s_conn *sc = l->c->s2s;
			log_info("s2s %s -> %s %s: no XEP-0198 <a/> within "
				 "s2s.ack_timeout: the link is taken for dead, "
				 "%u stanzas not acknowledged go over a new "
				 "link", l->local, l->remote, l->peer,
				 sc->ucount);
			out_lost(w, l, 1, 1);
		} else if (out_closing && l->state == LINK_UP &&
			   l->c != NULL && l->vreqs == NULL) {
			out_idle_close(w, l);   /* stopping */
		} else if (l->state == LINK_UP && l->c != NULL &&
			   buf_used(&l->c->out) == 0 && l->vreqs == NULL &&
			   !out_carried_asking(l) && now_ms - l->last_ms >=
			   (int64_t)w->cfg->s2s_out_idle_timeout) {
			out_idle_close(w, l);
		}
	}
}

/* Stop (worker_begin_stop): nothing closes yet.  The sessions' remote
 * unavailable presence (presence_stop_broadcast) is still to come, from
 * this worker and others; links stay, stanzas still make links, until
 * s2s_out_close_links. */
void s2s_out_shutdown(struct worker *w)
{
	(void)w;
}

/* The worker's client streams are closed and the broadcast routed:
 * links that are up end with </stream:stream> after what they carry
 * (the remote server sees a clean close, as Prosody's own shutdown
 * does); links being set up carry their queue once up and then end
 * (out_up), or fail at shutdown_timeout (s2s_out_tick): what waited is
 * bounced, with one line. */
void s2s_out_close_links(struct worker *w)
{
	out_closing = 1;
	for (struct s2s_link *l = s2s_links, *next; l != NULL; l = next) {
		next = l->next;
		if (l->state == LINK_UP && l->c != NULL && l->carrier == NULL)
			out_idle_close(w, l);
	}
}

/* The link's output drained (conn.c): what waits for room goes out,
 * and an <r/> for what is not acknowledged yet. */
void s2s_out_drained(struct conn *c)
{
	struct s2s_link *l = out_link(c);
	struct s2s_conn *sc = c->s2s;
	if (l == NULL || l->state != LINK_UP || c->want_close)
		return;
	out_pump_all(l);
	if (sc->sm_on && sc->sm_sent != sc->sm_r_at)
		out_request_ack(c, sc);
}

unsigned s2s_out_busy(const struct worker *w)
{
	(void)w;
	return s2s_nlinks;
}

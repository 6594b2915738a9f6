/*
 * child.c - one worker process: a single epoll loop over its share of the
 * clients.  Phases, driven by the parent (wire.c frames): log everyone in
 * at the connect rate and report READY; on GO send messages at this
 * worker's share of the rate until the end time, closing the
 * --drop-clients streams at half time; report PROGRESS every 100 ms; with
 * --storm, on DROP reset every resumable stream and on RESUME log them in
 * again with <resume/> (PROGRESS says when all are resolved); on STOP
 * send the REPORT (raw counters, histograms, per-sender counts and
 * every (sender, seq) received) and close all streams.
 * A message is <message to='user@domain/bench' type='chat' id='mR.S.Q'>
 * with the body "seq:S:Q:T:R:" padded with 'x' to --body-size: sender
 * index, sequence number, send time (CLOCK_MONOTONIC ns, the same clock
 * in every process) and run id R, so that copies an earlier run left in
 * offline storage are told apart; the id identifies error bounces.
 * With --pairs the first half of the clients each send to their partner
 * in the second half (on --partner-host for --partner-domain when given:
 * a federated message), who only receive.
 * Failure policy: setup errors and a lost parent are fatal (exit 2);
 * client errors are counted by client.c.
 */
#include "child.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define OUT_LIMIT (256u << 10)  /* a sender this far behind skips a turn */
#define SEND_BUDGET 5000        /* messages per loop turn at most */
#define PROGRESS_NS 100000000LL
#define CLOSE_WAIT_NS 3000000000LL
#define CSI_FLUSH_NS 1000000000LL

int64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

uint32_t bench_recipient(const struct bench_opts *o, const uint32_t *online,
			 uint32_t n_online, uint32_t sender, uint32_t seq)
{
	if (o->pairs)
		return sender + o->clients / 2;
	uint32_t j = (uint32_t)(splitmix64((uint64_t)sender << 32 | seq) %
				n_online);
	if (online[j] == sender)
		j = (j + 1) % n_online;
	return online[j];
}

void pairvec_push(struct pairvec *pv, uint32_t sender, uint32_t seq)
{
	if (pv->n == pv->cap) {
		pv->cap = pv->cap ? pv->cap * 2 : 4096;
		pv->v = realloc(pv->v, pv->cap * sizeof(*pv->v));
		if (pv->v == NULL)
			bench_fatal("out of memory recording messages");
	}
	pv->v[pv->n++] = (uint64_t)sender << 32 | seq;
}

/* ---- callbacks from client.c ------------------------------------------ */

void child_client_online(struct child *ch, struct client *c, int64_t now)
{
	ch->cnt.established++;
	ch->cnt.csi_clients[(c->flags & CF_INACTIVE) != 0]++;
	ch->cnt.t_last_login = now;
	hist_add(ch->login_hist, (uint64_t)(now - c->t_start) / 1000);
	/* --csi: an inactive client is a phone in a pocket: it receives,
	 * it does not send (sending would flush what the server holds) */
	if (c->flags & CF_INACTIVE)
		return;
	/* --pairs: the second half only receives; --muc-rooms: an
	 * occupant sends once it is in its room (muc.c) */
	if (bench_is_partner(ch->o, client_index(ch, c)) || ch->o->muc_rooms)
		return;
	c->sender_pos = ch->nsenders;
	ch->senders[ch->nsenders++] = c;
}

void child_client_resumed(struct child *ch, struct client *c, int64_t now)
{
	ch->cnt.resumed++;
	ch->cnt.t_last_resumed = now;
	hist_add(ch->resume_hist, (uint64_t)(now - c->t_start) / 1000);
	c->sender_pos = ch->nsenders;
	ch->senders[ch->nsenders++] = c;
}

void child_client_gone(struct child *ch, struct client *c)
{
	struct client *last = ch->senders[--ch->nsenders];
	ch->senders[c->sender_pos] = last;
	last->sender_pos = c->sender_pos;
	c->sender_pos = NO_SENDER;
}

/* An error bounce: its id is "mR.S.Q" (run, sender, seq). */
static void child_on_bounce(struct child *ch, const char *el,
			    const struct xs_item *it)
{
	char v[96];
	unsigned r, s, q;
	if (xmlscan_attr(el, it->tag_len, "id", v, sizeof(v)) < 0 ||
	    sscanf(v, "m%u.%u.%u", &r, &s, &q) != 3) {
		ch->cnt.malformed++;
	} else if (r != ch->o->run_id) {
		ch->cnt.stale++;
	} else {
		pairvec_push(&ch->err, s, q);
		ch->cnt.errored++;
	}
}

/* Parse the body "seq:S:Q:T:R:" (sender, seq, send time, run) and record
 * the message. */
void child_on_message(struct child *ch, struct client *c, const char *el,
		      const struct xs_item *it)
{
	char v[96];
	unsigned s, q, r;
	long long t;
	size_t tl;
	if (xmlscan_attr(el, it->tag_len, "type", v, sizeof(v)) > 0 &&
	    strcmp(v, "error") == 0) {
		child_on_bounce(ch, el, it);
		return;
	}
	const char *body = xmlscan_text(el, it->len, "body", &tl);
	if (body == NULL) {
		ch->cnt.malformed++;
		return;
	}
	tl = tl < sizeof(v) - 1 ? tl : sizeof(v) - 1;
	memcpy(v, body, tl);
	v[tl] = '\0';
	if (sscanf(v, "seq:%u:%u:%lld:%u:", &s, &q, &t, &r) != 4) {
		ch->cnt.malformed++;
		return;
	}
	if (r != ch->o->run_id) {
		ch->cnt.stale++;
		return;
	}
	int64_t lat = bench_now_ns() - t;
	hist_add(ch->lat_hist, lat > 0 ? (uint64_t)lat / 1000 : 0);
	pairvec_push(&ch->rx, s, q);
	ch->cnt.received++;
	if (ch->have_go && ch->go.n_online >= 2 &&
	    bench_recipient(ch->o, ch->online, ch->go.n_online, s, q) !=
	    client_index(ch, c))
		ch->cnt.misrouted++;
}

/* ---- the phases --------------------------------------------------------- */

static void child_connects(struct child *ch, int64_t now)
{
	uint32_t n = ch->hi - ch->lo;
	double rate = ch->o->connect_rate / ch->o->processes;
	uint64_t due = rate <= 0 ? n :
		       (uint64_t)((double)(now - ch->t_begin) * rate / 1e9) + 1;
	while (ch->next_start < n && ch->next_start < due &&
	       ch->pending < ch->o->max_pending)
		client_start(ch, &ch->clients[ch->next_start++], now);
}

static void child_timeouts(struct child *ch, int64_t now)
{
	int64_t limit = (int64_t)(ch->o->login_timeout * 1e9);
	if (now - ch->t_timeouts < 1000000000LL || ch->pending == 0)
		return;
	ch->t_timeouts = now;
	for (uint32_t i = 0; i < ch->next_start; i++) {
		struct client *c = &ch->clients[i];
		if (c->state > CS_NEW && c->state < CS_ONLINE &&
		    now - c->t_start > limit)
			client_fail(ch, c, FAIL_TIMEOUT);
	}
}

void child_drop_one(struct child *ch, struct client *c)
{
	client_drop_hard(ch, c);
	ch->cnt.storm_dropped++;
	ch->resume_pending++;
}

/* The storm, first half: reset every stream that can be resumed (with
 * --drop-at-enable each was reset as soon as it was enabled). */
static void child_storm_drop(struct child *ch)
{
	ch->storm_dropped = true;
	for (uint32_t i = 0; i < ch->hi - ch->lo; i++) {
		struct client *c = &ch->clients[i];
		if (c->state == CS_ONLINE && c->smid != NULL)
			child_drop_one(ch, c);
	}
}

/* The storm, second half: every dropped client connects again, logs in
 * and resumes, at --resume-rate (0: all at once), --max-pending at most
 * in flight. */
static void child_resumes(struct child *ch, int64_t now)
{
	uint32_t n = ch->hi - ch->lo;
	if (!ch->resume_go)
		return;
	double rate = ch->o->resume_rate / ch->o->processes;
	uint64_t due = rate <= 0 ? n : (uint64_t)((double)(now -
			ch->t_resume_begin) * rate / 1e9) + 1;
	uint64_t started = 0;
	while (ch->resume_next < n && ch->pending < ch->o->max_pending) {
		struct client *c = &ch->clients[ch->resume_next];
		if (c->state != CS_DETACHED) {
			ch->resume_next++;
			continue;
		}
		if (started >= due)
			break;
		if (ch->cnt.t_first_resume == 0)
			ch->cnt.t_first_resume = now;
		c->flags = CF_RESUMING;
		ch->resume_next++;
		started++;
		client_start(ch, c, now);
	}
	if (ch->resume_pending == 0)
		ch->resume_done = true;
}

static void child_ready(struct child *ch)
{
	uint32_t n = ch->hi - ch->lo;
	uint8_t *online = malloc(n ? n : 1);
	if (online == NULL)
		bench_fatal("out of memory");
	for (uint32_t i = 0; i < n; i++)
		online[i] = ch->clients[i].state == CS_ONLINE;
	ch->cnt.rss_online_kb = procstat_self_rss_kb();
	const void *parts[] = { &ch->cnt, online };
	size_t lens[] = { sizeof(ch->cnt), n };
	if (wire_send(ch->ctl, WIRE_READY, parts, lens, 2) < 0)
		bench_fatal("worker %u: parent gone", ch->k);
	free(online);
	ch->ready_sent = true;
}

/* --mix-presence, --mix-chatstate: what CSI holds back.  A directed
 * presence (it needs no subscription) with a status that changes, or a
 * chat state without a body, to a random online client; not accounted
 * like the messages (a held presence may be replaced by a newer one). */
static void child_send_unaccounted(struct child *ch, struct client *c,
				   bool presence)
{
	static const char *const show[] = { "away", "chat", "dnd", "xa" };
	static const char *const state[] = { "composing", "paused", "active" };
	const struct bench_opts *o = ch->o;
	char user[128], buf[512];
	uint32_t s = client_index(ch, c);
	uint32_t r = ch->online[(ch->rng = splitmix64(ch->rng)) %
				ch->go.n_online];
	if (r == s)
		r = ch->online[(ch->rng >> 32) % ch->go.n_online];
	if (r == s)
		return;
	client_username(ch, r, user, sizeof(user));
	int n = presence ?
		snprintf(buf, sizeof(buf), "<presence to='%s@%s/%s'><show>%s"
			 "</show><status>status %llu</status></presence>", user,
			 o->domain, BENCH_RESOURCE, show[ch->rng % 4],
			 (unsigned long long)(ch->rng >> 40)) :
		snprintf(buf, sizeof(buf), "<message to='%s@%s/%s' type='chat'>"
			 "<%s xmlns='http://jabber.org/protocol/chatstates'/>"
			 "</message>", user, o->domain, BENCH_RESOURCE,
			 state[ch->rng % 3]);
	if (client_send(ch, c, buf, (size_t)n) == 0) {
		client_stanza_out(c);
		if (presence)
			ch->cnt.presence_sent++;
		else
			ch->cnt.chatstate_sent++;
	}
}

static void child_send_one(struct child *ch)
{
	const struct bench_opts *o = ch->o;
	struct client *c = ch->senders[(ch->rng = splitmix64(ch->rng)) %
				       ch->nsenders];
	uint32_t s = client_index(ch, c), q = c->seq;
	char user[128];
	ch->msgs_started++;
	if (client_out_len(c) > OUT_LIMIT) {
		ch->cnt.skipped++;
		return;
	}
	if (o->mix_presence > 0 || o->mix_chatstate > 0) {
		ch->rng = splitmix64(ch->rng);
		double x = (double)(ch->rng >> 11) / 9007199254740992.0;
		if (x < o->mix_presence + o->mix_chatstate) {
			child_send_unaccounted(ch, c, x < o->mix_presence);
			return;
		}
	}
	int n;
	if (o->muc_rooms > 0) {
		n = (int)muc_message_head(ch, s, q);
	} else {
		uint32_t r = bench_recipient(o, ch->online, ch->go.n_online,
					     s, q);
		client_username(ch, r, user, sizeof(user));
		n = snprintf(ch->msg, ch->msg_size, "<message to='%s@%s/%s' "
			     "type='chat' id='m%u.%u.%u'><body>", user,
			     bench_domain(o, r), BENCH_RESOURCE, o->run_id, s,
			     q);
	}
	int b = snprintf(ch->msg + n, ch->msg_size - (size_t)n,
			 "seq:%u:%u:%lld:%u:", s, q, (long long)bench_now_ns(),
			 o->run_id);
	size_t len = (size_t)n + (size_t)b;
	if ((size_t)b < o->body_size) {
		memset(ch->msg + len, 'x', o->body_size - (size_t)b);
		len += o->body_size - (size_t)b;
	}
	memcpy(ch->msg + len, "</body></message>", 17);
	len += 17;
	if (client_send(ch, c, ch->msg, len) == 0) {
		c->seq++;
		ch->cnt.sent++;
		client_stanza_out(c);
		if (o->muc_rooms > 0)   /* every member gets it, itself too */
			ch->cnt.muc_expected +=
				ch->muc_members[bench_muc_room(o, s)];
	}
}

/* --drop-clients: the last n_drop of the online list close at t_drop. */
static void child_drop(struct child *ch)
{
	ch->dropped_done = true;
	if (ch->go.n_drop == 0)
		return;
	uint32_t first = ch->online[ch->go.n_online - ch->go.n_drop];
	for (uint32_t i = 0; i < ch->hi - ch->lo; i++)
		if (ch->lo + i >= first)
			client_begin_close(ch, &ch->clients[i], true);
}

/* --csi, at the end of sending: the inactive clients say <active/>, and
 * what the server held for them arrives (counted apart: csi_flush_*);
 * the worker reports done only CSI_FLUSH_NS later. */
static void child_csi_flush(struct child *ch, int64_t now)
{
	for (uint32_t i = 0; i < ch->hi - ch->lo; i++) {
		struct client *c = &ch->clients[i];
		if (c->state != CS_ONLINE || !(c->flags & CF_INACTIVE))
			continue;
		c->flags |= CF_FLUSHED;
		client_send(ch, c, "<active xmlns='urn:xmpp:csi:0'/>", 32);
	}
	ch->t_csi_flush = now;
}

static void child_messages(struct child *ch, int64_t now)
{
	if (!ch->have_go || ch->sending_done || now < ch->go.t0)
		return;
	if (ch->go.t_drop != 0 && !ch->dropped_done && now >= ch->go.t_drop)
		child_drop(ch);
	/* rate x duration in all, however late the last turn comes */
	int64_t until = now < ch->go.t_end ? now : ch->go.t_end;
	uint64_t due = (uint64_t)((double)(until - ch->go.t0) * ch->go.rate /
				  1e9);
	if (ch->go.n_online < 2)
		due = 0;
	for (unsigned budget = SEND_BUDGET; ch->msgs_started < due &&
	     ch->nsenders > 0 && budget > 0; budget--)
		child_send_one(ch);
	if (now >= ch->go.t_end &&
	    (ch->msgs_started >= due || ch->nsenders == 0)) {
		ch->sending_done = true;
		if (ch->o->csi)
			child_csi_flush(ch, now);
	}
}

static void child_progress(struct child *ch, int64_t now)
{
	if ((!ch->have_go && !ch->resume_go) ||
	    now - ch->t_progress < PROGRESS_NS)
		return;
	ch->t_progress = now;
	const struct bench_counters *c = &ch->cnt;
	/* --pep: what is expected and what came, pairs and publishes; the
	 * roster pass: online clients and those whose roster is complete */
	uint64_t sent = ch->o->pep_k == 0 ? c->sent : ch->o->pep_setup ?
			c->established : c->pep_expected + c->pep_pub_due;
	uint64_t answered = ch->o->pep_k == 0 ? c->received + c->errored :
			    ch->o->pep_setup ? c->pep_setup_done :
			    c->pep_pairs + c->pep_pub_ok + c->pep_pub_err;
	/* --muc-rooms: deliveries due and made (a bounce stands for all
	 * the deliveries of its message) */
	if (ch->o->muc_rooms > 0) {
		sent = c->muc_expected;
		answered = c->received + c->muc_err_deliveries;
	}
	struct wire_progress p = {
		.sent = sent,
		.answered = answered,
		.done = ch->sending_done && (ch->t_csi_flush == 0 ||
					     now - ch->t_csi_flush >= CSI_FLUSH_NS),
		.resume_done = ch->resume_done,
		.resumed = ch->cnt.resumed,
		.resume_failed = ch->cnt.resume_failed + ch->cnt.resume_error,
	};
	const void *parts[] = { &p };
	size_t lens[] = { sizeof(p) };
	if (wire_send(ch->ctl, WIRE_PROGRESS, parts, lens, 1) < 0)
		bench_fatal("worker %u: parent gone", ch->k);
}

static void child_ctl(struct child *ch)
{
	uint32_t type;
	void *payload;
	size_t len;
	if (wire_recv(ch->ctl, &type, &payload, &len) < 0)
		bench_fatal("worker %u: parent gone", ch->k);
	if (type == WIRE_STOP) {
		ch->stop = true;
	} else if (type == WIRE_DROP) {
		child_storm_drop(ch);
	} else if (type == WIRE_JOIN && len == sizeof(uint32_t) &&
		   ch->muc != NULL) {
		uint32_t phase;
		memcpy(&phase, payload, sizeof(phase));
		muc_phase_start(ch, (enum muc_phase)phase, bench_now_ns());
	} else if (type == WIRE_RESUME) {
		ch->resume_go = true;
		ch->t_resume_begin = bench_now_ns();
	} else if (type == WIRE_GO && len >= sizeof(ch->go)) {
		memcpy(&ch->go, payload, sizeof(ch->go));
		if (len != sizeof(ch->go) + ch->go.n_online * sizeof(uint32_t))
			bench_fatal("worker %u: bad GO frame", ch->k);
		ch->online = malloc(ch->go.n_online * sizeof(uint32_t) + 1);
		if (ch->online == NULL)
			bench_fatal("out of memory");
		memcpy(ch->online, (char *)payload + sizeof(ch->go),
		       ch->go.n_online * sizeof(uint32_t));
		ch->have_go = true;
		if (ch->muc != NULL)
			muc_on_go(ch);
	}
	free(payload);
}

static void child_report(struct child *ch)
{
	uint32_t n = ch->hi - ch->lo;
	uint32_t padded = (n + 1) & ~1u;        /* keeps what follows aligned */
	uint32_t *sent = calloc(padded + 1, sizeof(*sent));
	/* --muc-rooms: the history messages each joiner got */
	uint32_t *hcount = calloc(padded + 1, sizeof(*hcount));
	if (sent == NULL || hcount == NULL)
		bench_fatal("out of memory");
	for (uint32_t i = 0; i < n; i++) {
		sent[i] = ch->clients[i].seq;
		hcount[i] = ch->muc ? ch->muc[i].hist : 0;
	}
	if (ch->o->pep_k > 0)
		pep_report(ch);
	uint64_t nrx = ch->rx.n, nerr = ch->err.n, nto = ch->rxto.n;
	static const struct hist empty;
	const void *parts[] = { &ch->cnt, ch->login_hist, ch->lat_hist,
				ch->resume_hist,
				ch->join_hist ? ch->join_hist : &empty,
				ch->hjoin_hist ? ch->hjoin_hist : &empty,
				sent, hcount, &nrx, ch->rx.v, &nerr,
				ch->err.v, &nto, ch->rxto.v };
	size_t lens[] = { sizeof(ch->cnt), sizeof(struct hist),
			  sizeof(struct hist), sizeof(struct hist),
			  sizeof(struct hist), sizeof(struct hist),
			  padded * sizeof(*sent), padded * sizeof(*hcount),
			  sizeof(nrx), nrx * sizeof(uint64_t), sizeof(nerr),
			  nerr * sizeof(uint64_t), sizeof(nto),
			  nto * sizeof(uint32_t) };
	if (wire_send(ch->ctl, WIRE_REPORT, parts, lens, 14) < 0)
		bench_fatal("worker %u: parent gone", ch->k);
	free(sent);
	free(hcount);
}

/* ---- the loop ------------------------------------------------------------ */

static void child_poll(struct child *ch, int timeout_ms)
{
	struct epoll_event ev[512];
	int n = epoll_wait(ch->ep, ev, 512, timeout_ms);
	if (n < 0 && errno != EINTR)
		bench_fatal("epoll_wait: %s", strerror(errno));
	for (int i = 0; i < n; i++) {
		struct client *c = ev[i].data.ptr;
		if (c == NULL)
			child_ctl(ch);
		else if (c->fd >= 0)    /* not closed earlier in this batch */
			client_event(ch, c, ev[i].events);
	}
}

static void child_step(struct child *ch)
{
	int64_t now = bench_now_ns();
	uint32_t n = ch->hi - ch->lo;
	child_connects(ch, now);
	child_resumes(ch, now);
	child_timeouts(ch, now);
	child_messages(ch, now);
	if (ch->o->pep_k > 0)
		pep_tick(ch, now);
	if (ch->muc != NULL)
		muc_tick(ch, now);
	child_progress(ch, now);
	if (!ch->ready_sent && ch->resolved == n)
		child_ready(ch);
	bool busy = ch->next_start < n || (ch->have_go && !ch->sending_done) ||
		    (ch->resume_go && !ch->resume_done) || (ch->muc != NULL &&
		    ch->muc_phase >= 0);
	child_poll(ch, busy ? 1 : 50);
}

/* Close every stream politely and wait (a little) for the server's
 * closing tags, so that its log shows clean ends rather than resets. */
static void child_shutdown(struct child *ch)
{
	uint32_t n = ch->hi - ch->lo;
	for (uint32_t i = 0; i < n; i++) {
		struct client *c = &ch->clients[i];
		if (c->state == CS_ONLINE)
			client_begin_close(ch, c, false);
		else if (c->state != CS_CLOSING && c->state != CS_CLOSED)
			client_close(ch, c);    /* also a detached one's id */
	}
	int64_t deadline = bench_now_ns() + CLOSE_WAIT_NS;
	for (;;) {
		uint32_t open = 0;
		for (uint32_t i = 0; i < n; i++)
			open += ch->clients[i].state == CS_CLOSING;
		if (open == 0 || bench_now_ns() > deadline)
			break;
		child_poll(ch, 20);
	}
	for (uint32_t i = 0; i < n; i++)
		client_close(ch, &ch->clients[i]);
}

static SSL_CTX *child_ssl_ctx(const struct bench_opts *o)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL)
		bench_fatal("SSL_CTX_new failed");
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS |
			 SSL_MODE_ENABLE_PARTIAL_WRITE |
			 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (o->direct_tls)
		SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)
					"\x0bxmpp-client", 12);
	return ctx;
}

static struct child *child_new(const struct bench_opts *o, unsigned k,
			       uint32_t lo, uint32_t hi, int ctl)
{
	struct child *ch = calloc(1, sizeof(*ch));
	uint32_t n = hi - lo;
	if (ch == NULL)
		bench_fatal("out of memory");
	*ch = (struct child){ .o = o, .k = k, .lo = lo, .hi = hi, .ctl = ctl };
	ch->clients = calloc(n ? n : 1, sizeof(*ch->clients));
	ch->senders = calloc(n ? n : 1, sizeof(*ch->senders));
	ch->login_hist = calloc(1, sizeof(struct hist));
	ch->lat_hist = calloc(1, sizeof(struct hist));
	ch->resume_hist = calloc(1, sizeof(struct hist));
	ch->msg_size = o->body_size + (o->pep_k ? 16384 : 1024);
	ch->msg = malloc(ch->msg_size);
	if (!ch->clients || !ch->senders || !ch->login_hist || !ch->lat_hist ||
	    !ch->resume_hist || !ch->msg)
		bench_fatal("out of memory for %u clients", n);
	if (o->pep_k > 0 && (ch->pep = calloc(n ? n : 1,
					      sizeof(*ch->pep))) == NULL)
		bench_fatal("out of memory for %u clients", n);
	if (o->muc_rooms > 0)
		muc_child_init(ch);
	for (uint32_t i = 0; i < n; i++) {
		ch->clients[i].fd = -1;
		ch->clients[i].sender_pos = NO_SENDER;
	}
	ch->header_len = (size_t)snprintf(ch->header, sizeof(ch->header),
		"<?xml version='1.0'?><stream:stream to='%s' version='1.0' "
		"xmlns='jabber:client' "
		"xmlns:stream='http://etherx.jabber.org/streams'>", o->domain);
	ch->pheader_len = (size_t)snprintf(ch->pheader, sizeof(ch->pheader),
		"<?xml version='1.0'?><stream:stream to='%s' version='1.0' "
		"xmlns='jabber:client' "
		"xmlns:stream='http://etherx.jabber.org/streams'>",
		o->partner_domain);
	ch->ssl_ctx = child_ssl_ctx(o);
	ch->rng = splitmix64((uint64_t)getpid() << 20 ^ (uint64_t)bench_now_ns());
	if ((ch->ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		bench_fatal("epoll_create1: %s", strerror(errno));
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	if (epoll_ctl(ch->ep, EPOLL_CTL_ADD, ctl, &ev) < 0)
		bench_fatal("epoll_ctl: %s", strerror(errno));
	return ch;
}

int child_run(const struct bench_opts *o, unsigned k, uint32_t lo,
	      uint32_t hi, int ctl)
{
	struct child *ch = child_new(o, k, lo, hi, ctl);
	ch->cnt.rss_start_kb = procstat_self_rss_kb();
	ch->t_begin = bench_now_ns();
	while (!ch->stop)
		child_step(ch);
	child_report(ch);
	child_shutdown(ch);
	SSL_CTX_free(ch->ssl_ctx);
	return 0;
}

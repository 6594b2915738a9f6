/*
 * worker.c - the worker process: one epoll loop (ngx_worker_process_cycle
 * style: run events, then act on flags and timers).  Sources: listening
 * sockets, client connections, the slot's queue, the master channel and
 * the master's dead-pipe.  Failure policy: EMFILE/ENFILE pause accepting
 * for a moment instead of spinning; a dead master ends the worker.
 */
#include "worker.h"
#include "ext.h"
#include "s2s.h"
#include "component.h"
#include "s2s_dial.h"
#include "log.h"
#include "util.h"
#include "frame.h"
#include "channel.h"
#include "metrics.h"
#include "tls.h"
#include "http.h"
#include "../db/db.h"
#include "smstore.h"
#include "session.h"
#include "sm.h"

#include <errno.h>
#include <openssl/ssl.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* epoll data for non-connection sources: small numbers (a struct conn
 * pointer is never below 4096). */
enum worker_ev {
	WORKER_EV_LISTEN = 1,       /* + listener index */
	WORKER_EV_CHANNEL = 100,
	WORKER_EV_DEAD,
	WORKER_EV_QUEUE,
	WORKER_EV_DB,
	WORKER_EV_MAX = 4096,
};

#define WORKER_EVENTS 256
#define WORKER_ACCEPT_PAUSE_MS 200

static int worker_ep_add(struct worker *w, int fd, uint64_t data)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = data };
	return epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev);
}

static void worker_listeners(struct worker *w, int on)
{
	for (unsigned i = 0; i < w->nlisten; i++) {
		if (on)
			worker_ep_add(w, w->listen_fds[i], WORKER_EV_LISTEN + i);
		else
			epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->listen_fds[i],
				  NULL);
	}
}

/* The database link's socket comes and goes with reconnects. */
static uint32_t worker_db_last;   /* epoll events set on the db socket */

static void worker_db_fd(void *ctx, int old_fd, int new_fd)
{
	struct worker *w = ctx;
	worker_db_last = EPOLLIN;
	if (old_fd >= 0)
		epoll_ctl(w->epfd, EPOLL_CTL_DEL, old_fd, NULL);
	if (new_fd >= 0)
		worker_ep_add(w, new_fd, WORKER_EV_DB);
}

/* Keep the database socket's epoll interest in line with libpq's. */
static void worker_db_events(struct worker *w)
{
	int fd = db_fd(w->db);
	uint32_t want = db_events(w->db);
	if (fd < 0 || want == worker_db_last)
		return;
	struct epoll_event ev = { .events = want, .data.u64 = WORKER_EV_DB };
	epoll_ctl(w->epfd, EPOLL_CTL_MOD, fd, &ev);
	worker_db_last = want;
}

/* A context from the files tls.certificate and tls.key name, read again
 * at every reload (a renewed certificate); open connections keep a
 * reference to the one they started with.  Files that do not load keep
 * the previous context (the master checked them, but they may have
 * changed since).  Without a certificate, TLS is off for new
 * connections. */
static void worker_tls_context(struct worker *w)
{
	const char *error;
	if (w->cfg->tls_certificate[0] == '\0') {
		if (w->tls != NULL)
			log_info("TLS off for new connections: tls.certificate "
				 "is empty");
		tls_context_free(&w->tls);
		METRIC_SET(metrics_self->tls_missing, 0);
		return;
	}
	SSL_CTX *ctx = tls_context_new(w->cfg, &error);
	if (ctx == NULL && w->tls != NULL) {
		log_error("TLS certificate not reloaded, keeping the previous "
			  "one: %s", error);
		return;
	}
	if (ctx == NULL) {
		/* stream.c and sasl.c fail closed: no login while
		 * tls.required is yes.  /health says so. */
		log_error("TLS unavailable: %s", error);
		METRIC_SET(metrics_self->tls_missing, 1);
		return;
	}
	tls_context_free(&w->tls);
	w->tls = ctx;
	METRIC_SET(metrics_self->tls_missing, 0);
}

/* ---- adoption of a dead predecessor's XEP-0198 sessions -------------- */

static void worker_settle_report(struct worker *w);

static int worker_adopt_span(const struct sm_ref *ref,
			     const struct sm_state *st, void *ctx)
{
	(void)st;
	sm_adopt_span(ctx, ref);
	return 0;
}

static int worker_adopt_one(const struct sm_ref *ref,
			    const struct sm_state *st, void *ctx)
{
	struct worker *w = ctx;
	struct sm_state copy;

	if (st->state == SM_REC_GIVEN) {
		/* Handed to another worker as we died: whether the hand-over
		 * frame left is not known.  Its journal goes the undelivered
		 * way: twice rather than never (the new owner may have
		 * re-sent it already). */
		log_info("%s: handed over when the worker died: its %u "
			 "unacknowledged stanzas are routed as undelivered",
			 st->jid, st->unacked);
		copy = *st;
		copy.resumable = 0;
		st = &copy;
	}
	if (sm_adopt(w, ref, st) < 0)
		log_error("%s: not adopted (out of memory): its record "
			  "waits for the next start", st->jid);
	return 0;
}

struct worker_orphans {
	struct worker *w;
	struct session_info *list;
	size_t n, cap;
};

/* Entries of this slot that no connection owns (a record that was not
 * adopted, or a sweep that did not run). */
static int worker_orphan_cb(const struct session_info *info, void *ctx)
{
	struct worker_orphans *o = ctx;

	if (info->node != 0 || info->slot != o->w->slot ||
	    conn_lookup(o->w, info->conn_id, info->gen) != NULL)
		return 0;
	if (o->n == o->cap) {
		size_t cap = o->cap ? o->cap * 2 : 16;
		struct session_info *l = realloc(o->list, cap * sizeof(*l));
		if (l == NULL)
			return 1;
		o->list = l;
		o->cap = cap;
	}
	o->list[o->n++] = *info;
	return 0;
}

/* A respawned worker, before it reads its queue: the resumable sessions
 * its predecessor held become detached connections with their old ids
 * (frames sent to them meanwhile are in the queue and reach them); the
 * session-table entries of the slot nobody owns then go, with their
 * unavailable presence. */
static void worker_adopt(struct worker *w)
{
	struct worker_orphans o = { w, NULL, 0, 0 };
	uint32_t records;
	uint64_t bytes;

	if (w->shm->smstore == NULL)
		return;
	smstore_usage(w->shm->smstore, w->slot, &records, &bytes);
	if (records > 0) {
		log_info("adopting %u stream-management sessions of the "
			 "previous worker", records);
		/* frames from other nodes in their journals stay held:
		 * named first, held as each session is adopted (settle.h) */
		smstore_foreach_record(w->shm->smstore, w->slot,
				       worker_adopt_span, w);
		settle_adopt_begin(&w->settle);
		smstore_foreach_record(w->shm->smstore, w->slot,
				       worker_adopt_one, w);
		settle_adopt_end(&w->settle);
		if (w->settle.held_total > 0)
			log_info("cluster: %llu stanzas of adopted journals "
				 "hold frames from other nodes",
				 (unsigned long long)w->settle.held_total);
		/* the adopted span goes to the bridge before anything is
		 * read: what this process reads comes after it */
		worker_settle_report(w);
		queue_flush(w->q);
	}
	if (w->gen <= 1)
		return;
	shm_session_foreach(w->shm->sessions, worker_orphan_cb, &o);
	for (size_t i = 0; i < o.n; i++) {
		const struct session_info *e = &o.list[i];

		if (shm_session_del(w->shm->sessions, e->jid, e->slot,
				    e->conn_id, e->gen) == 1 && e->available)
			presence_swept(w, e->jid);
	}
	if (o.n > 0)
		log_info("%zu sessions of the previous worker not adopted: "
			 "removed", o.n);
	free(o.list);
}

static void worker_init(struct worker *w, struct worker_boot *b)
{
	char role[16];
	snprintf(role, sizeof(role), "w%u", b->slot);
	log_set_role(role);
	memset(w, 0, sizeof(*w));
	w->slot = b->slot;
	w->cfg = b->cfg;
	w->shm = b->shm;
	w->queues = b->queues;
	w->channel = b->channel;
	w->dead_fd = b->dead_fd;
	w->nlisten = b->nlisten;
	memcpy(w->listen_fds, b->listen_fds, sizeof(w->listen_fds));
	memcpy(w->listen_tls, b->listen_tls, sizeof(w->listen_tls));
	memcpy(w->listen_kind, b->listen_kind, sizeof(w->listen_kind));
	w->nslots = b->nslots;
	w->nworkers = b->nworkers;
	w->stats = shm_worker_stats(w->shm, w->slot);
	metrics_self = w->stats;
	/* gauges start from nothing; counters go on across respawns */
	metrics_reset_gauges(w->stats);
	METRIC_SET(w->stats->config_gen, w->cfg->generation);
	/* since this spawn: the master's crash-loop test (reap.c) */
	METRIC_SET(w->stats->accepted, 0);
	w->gen = (uint32_t)METRIC_GET(w->stats->restarts) + 1;
	/* The XEP-0198 journal of the slot: a dead predecessor may have
	 * been anywhere in a change (smstore.h). */
	if (w->shm->smstore != NULL)
		smstore_recover_slot(w->shm->smstore, w->slot);
	w->q = queue_new(w->queues, w->slot, w->cfg->queue_outbox_frames,
			 (size_t)w->cfg->queue_outbox_bytes);
	w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epfd < 0 || w->q == NULL)
		log_fatal("worker set-up failed: %m");
	queue_set_dispatch_flag(w->q, &w->stats->queue_dispatching);
	if (w->nslots > w->nworkers)
		queue_set_bridge(w->q, w->nworkers);
	/* fresh: what this slot's previous process held died with it */
	settle_init(&w->settle, w->nslots > w->nworkers);
	const char *error;
	if (ext_init(&error) < 0)
		log_fatal("worker set-up failed: %s", error);
	worker_listeners(w, 1);
	worker_ep_add(w, w->channel, WORKER_EV_CHANNEL);
	worker_ep_add(w, w->dead_fd, WORKER_EV_DEAD);
	worker_ep_add(w, w->queues->fds[w->slot].recv, WORKER_EV_QUEUE);
	worker_tls_context(w);
	w->db = db_new(w->cfg->db_conninfo, worker_db_fd, w);
	db_set_max_queue_bytes(w->db, (size_t)w->cfg->db_max_queue_bytes);
	http_init(w);
	if (s2s_init(w) < 0)
		log_fatal("worker set-up failed: server-to-server");
	if (component_init(w) < 0)
		log_fatal("worker set-up failed: components");
	if (s2s_dial_init(w) < 0)
		log_fatal("worker set-up failed: DNS (c-ares)");
	worker_adopt(w);
}

/* EMFILE/ENFILE: shed the connection with the spare descriptor, then stop
 * watching the listeners for a moment (jabberd2 spun at 100% here). */
static void worker_accept_overload(struct worker *w, int lfd)
{
	if (w->reserve_fd >= 0) {
		close(w->reserve_fd);
		int fd = accept(lfd, NULL, NULL);
		if (fd >= 0)
			close(fd);
		w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	if (!w->accept_paused)
		log_warn("accept() failed: %m: pausing accepts for %d ms",
			 WORKER_ACCEPT_PAUSE_MS);
	METRIC_INC(w->stats->errors);
	w->accept_paused = 1;
	w->accept_resume_ms = time_now_ms() + WORKER_ACCEPT_PAUSE_MS;
	worker_listeners(w, 0);
}

int worker_accept(struct worker *w, int lfd, struct sockaddr_storage *ss,
		  socklen_t *len)
{
	*len = sizeof(*ss);
	int fd = accept4(lfd, (struct sockaddr *)ss, len,
			 SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0 && (errno == EMFILE || errno == ENFILE ||
		       errno == ENOBUFS || errno == ENOMEM))
		worker_accept_overload(w, lfd);
	return fd;
}

/* One line for every stream the shutdown closes: closing them logs
 * nothing per stream.  First each available session's unavailable goes
 * to its contacts on other servers and components (presence.c; local
 * contacts are disconnected by this shutdown too and get nothing); the
 * s2s links and component streams stay open while the client streams
 * close and that broadcast is written (worker_stop_done), then end. */
static void worker_begin_stop(struct worker *w)
{
	if (w->stopping)
		return;
	w->stopping = 1;
	w->stop_deadline_ms = time_now_ms() + (int64_t)w->cfg->shutdown_timeout;
	if (!w->accept_paused)
		worker_listeners(w, 0);
	unsigned available = 0;
	for (const struct conn *c = w->conns; c != NULL; c = c->next)
		available += c->available ? 1 : 0;
	log_info("stopping: closing %u streams with <system-shutdown/> "
		 "(%u available sessions: unavailable to remote contacts only, "
		 "local ones are disconnected too)", w->nconns, available);
	/* what closing the streams stores (journals and taken-back
	 * output to offline storage) waits for PostgreSQL, also while it
	 * is down: it may come back within shutdown_drain_timeout, and if
	 * not the drain counts what is lost (a store refused at once would
	 * bounce to senders that are being disconnected too: to no one) */
	if (w->db != NULL)
		db_hold(w->db);
	presence_stop_broadcast(w);
	s2s_shutdown(w);
	conn_shutdown_all(w);   /* not s2s links, components: see below */
	httpconn_close_all(w);
}

/* Stopping: the s2s links and component streams may close once no
 * other stream is left and nothing routed is still waiting for the
 * database (the remote unavailable broadcast of presence_stop_
 * broadcast), or at shutdown_timeout. */
static int worker_fed_quiet(const struct worker *w)
{
	for (const struct conn *c = w->conns; c != NULL; c = c->next)
		if (c->kind != CONN_S2S_OUT && c->kind != CONN_COMPONENT)
			return 0;
	return (w->db == NULL || db_unanswered(w->db) == 0) &&
	       buf_used(&w->undelivered) == 0;
}

/* The streams are closed, or shutdown_timeout passed (those still open
 * are closed now; what they had not written is rerouted).  From here the
 * loop turns only until what closing them queued is written: stanzas
 * taken back and journals (XEP-0198) routed to offline storage, archive
 * rows (MAM), each database write answered, up to
 * shutdown_drain_timeout. */
static void worker_begin_drain(struct worker *w)
{
	if (w->nconns > 0) {
		log_warn("stopping: shutdown_timeout passed with %u streams "
			 "open: closed", w->nconns);
		for (struct conn *c = w->conns, *next; c != NULL; c = next) {
			next = c->next;
			conn_close(c);
		}
	}
	w->draining = 1;
	w->drain_deadline_ms = w->now_ms +
			       (int64_t)w->cfg->shutdown_drain_timeout;
}

/* 1 when the stopping worker may exit: its streams closed and nothing
 * it queued left unwritten, or shutdown_drain_timeout over (what is left
 * is counted at error level: it is lost). */
static int worker_stop_done(struct worker *w)
{
	if (!w->fed_closing && (worker_fed_quiet(w) ||
				w->now_ms >= w->stop_deadline_ms)) {
		w->fed_closing = 1;
		s2s_close_links(w);     /* </stream:stream> after the output */
		conn_shutdown_all(w);   /* components */
	}
	if (!w->draining) {
		if ((w->nconns > 0 || s2s_busy(w)) &&
		    w->now_ms < w->stop_deadline_ms)
			return 0;
		worker_begin_drain(w);
	}
	unsigned long items = ext_busy(w);
	unsigned queries = w->db != NULL ? db_unanswered(w->db) : 0;
	size_t unrouted = buf_used(&w->undelivered);
	if (items == 0 && queries == 0 && unrouted == 0 && w->nconns == 0 &&
	    !s2s_busy(w))
		return 1;
	if (w->now_ms < w->drain_deadline_ms)
		return 0;
	log_error("stopping: shutdown_drain_timeout (%llu ms) over with "
		  "%lu stanzas or archive rows not written out, %u database "
		  "writes unanswered (offline messages among them), %zu bytes "
		  "of stanzas not routed: lost",
		  (unsigned long long)w->cfg->shutdown_drain_timeout, items,
		  queries, unrouted);
	return 1;
}

static void worker_apply_config(struct worker *w, const struct ipc_cmd *cmd,
				const char *text, size_t len)
{
	struct config *cfg = channel_config(cmd, text, len);
	if (cfg == NULL)
		return;
	config_free(&w->cfg);
	w->cfg = cfg;
	METRIC_SET(w->stats->config_gen, cfg->generation);
	worker_tls_context(w);
	db_set_conninfo(w->db, cfg->db_conninfo);
	db_set_max_queue_bytes(w->db, (size_t)cfg->db_max_queue_bytes);
	queue_set_limits(w->q, cfg->queue_outbox_frames,
			 (size_t)cfg->queue_outbox_bytes);
	component_reload(w);
	log_debug("running config generation %llu",
		  (unsigned long long)cfg->generation);
}

static void worker_cmd(const struct ipc_cmd *cmd, const char *payload,
		       void *ctx)
{
	struct worker *w = ctx;
	if (cmd->type == IPC_CMD_QUIT)
		worker_begin_stop(w);
	else if (cmd->type == IPC_CMD_CONFIG)
		worker_apply_config(w, cmd, payload, cmd->len);
	else if (cmd->type == IPC_CMD_KICK)
		bind_admin_kick(w, payload, cmd->len);
	else if (cmd->type == IPC_CMD_REOPEN_LOG && log_reopen() < 0)
		log_error("reopen(%s) failed: %m", w->cfg->log_file);
}

static void worker_channel(struct worker *w)
{
	if (channel_read(w->channel, worker_cmd, w) == 0)
		return;
	/* level-triggered: a closed channel would wake every turn of the
	 * drain */
	epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->channel, NULL);
	worker_begin_stop(w);
	w->stop_deadline_ms = time_now_ms();
}

#define WORKER_REANN_PER_TURN 64

/* The sessions available now, to announce again over the next turns
 * (several frames in a row: one list). */
static void worker_reannounce_start(struct worker *w, uint8_t node)
{
	size_t n = 0;
	/* another node back while one run goes: this run goes to both */
	w->reann_node = w->reann != NULL && w->reann_node != node ? 0 : node;
	for (struct conn *c = w->conns; c != NULL; c = c->next)
		n += c->kind == CONN_C2S && c->bound && c->available;
	free(w->reann);
	w->reann = n > 0 ? malloc(n * sizeof(*w->reann)) : NULL;
	w->reann_n = w->reann_pos = 0;
	if (w->reann == NULL)
		return;
	for (struct conn *c = w->conns; c != NULL && w->reann_n < n;
	     c = c->next)
		if (c->kind == CONN_C2S && c->bound && c->available)
			w->reann[w->reann_n++] = (struct worker_reann){
				c->id, c->gen };
	log_info("a cluster node is back: the presence of %zu sessions goes "
		 "to their contacts again", w->reann_n);
}

/* A few of them each turn (each one a roster query). */
static int worker_reannounce_step(struct worker *w)
{
	unsigned done = 0;
	while (w->reann_pos < w->reann_n && done < WORKER_REANN_PER_TURN) {
		const struct worker_reann *r = &w->reann[w->reann_pos++];
		struct conn *c = conn_lookup(w, r->conn_id, r->gen);
		if (c != NULL) {
			presence_reannounce(c, w->reann_node);
			done++;
		}
	}
	if (w->reann_pos < w->reann_n)
		return 1;
	free(w->reann);
	w->reann = NULL;
	w->reann_n = w->reann_pos = 0;
	return 0;
}

static void worker_lent_done(struct worker *w,
			     const struct ipc_frame_header *hdr,
			     const void *payload, size_t len);

static void worker_frame(const struct ipc_frame_header *hdr,
			 const void *payload, size_t len, void *ctx)
{
	struct worker *w = ctx;
	METRIC_INC(w->stats->frames_in);
	if (hdr->type == IPC_FRAME_REANNOUNCE) {
		if (hdr->src_slot == w->nworkers)
			worker_reannounce_start(w, hdr->node);
		return;
	}
	if (hdr->type == IPC_FRAME_LENT_DONE) {
		worker_lent_done(w, hdr, payload, len);
		return;
	}
	/* another node's frame, through the bridge: its sender keeps it
	 * until we say we are done with it; or one another worker of
	 * ours lent us, which keeps it so (settle.h) */
	if (hdr->token != 0 && hdr->src_slot < w->nworkers && hdr->node == 0)
		settle_begin_borrowed(&w->settle, hdr->src_slot, hdr->token);
	else
		settle_begin(&w->settle, hdr->src_slot == w->nworkers &&
					 hdr->node != 0 ? hdr->token : 0);
	route_frame(w, hdr, payload, len);
	settle_end(&w->settle);
}

/* Another worker is done with frames we lent it (settle.h). */
static void worker_lent_done(struct worker *w,
			     const struct ipc_frame_header *hdr,
			     const void *payload, size_t len)
{
	const unsigned char *p = payload;
	if (hdr->src_slot >= w->nworkers || hdr->node != 0 ||
	    len % sizeof(uint32_t) != 0) {
		log_error("IPC_FRAME_LENT_DONE from slot %u: %zu bytes: "
			  "dropped", hdr->src_slot, len);
		return;
	}
	for (size_t i = 0; i < len; i += sizeof(uint32_t)) {
		uint32_t id;
		memcpy(&id, p + i, sizeof(id));
		settle_returned(&w->settle, hdr->src_slot, id);
	}
}

/* Once a second, as the bridge after cluster.hold_time: frames held
 * that long are let go (a client that neither reads nor acknowledges),
 * and so are lends no answer came for (the taker died with them). */
static void worker_settle_tick(struct worker *w, int64_t now)
{
	settle_tick(&w->settle, now, (int64_t)w->cfg->cluster_hold_time);
	if (w->settle.forced != w->settle_forced_logged) {
		log_warn("cluster: %llu frames from other nodes let go while "
			 "still held, past cluster.hold_time (a client that "
			 "neither reads nor acknowledges)", (unsigned long long)
			 (w->settle.forced - w->settle_forced_logged));
		w->settle_forced_logged = w->settle.forced;
	}
	size_t n = settle_lent_expire(&w->settle, now,
				      (int64_t)w->cfg->cluster_hold_time);
	if (n > 0)
		log_warn("cluster: %zu frames lent to other workers not "
			 "returned within cluster.hold_time: let go", n);
}

/* The frames lent us that we are done with, to their lenders. */
static void worker_lent_report(struct worker *w)
{
	struct buf b;
	uint16_t slot;
	const char *error;
	buf_init(&b, 0);
	while (settle_returns(&w->settle, &slot, &b) == 1) {
		if (queue_send(w->q, slot, IPC_FRAME_LENT_DONE, 0, 0,
			       buf_head(&b), buf_used(&b), &error) == 0)
			continue;
		/* its outbox is full: kept for the next turn */
		log_debug("cluster: return of %zu lent frames to w%u: %s: "
			  "next turn", buf_used(&b) / sizeof(uint32_t), slot,
			  error);
		settle_returns_again(&w->settle, slot, &b);
		break;
	}
	buf_free(&b);
}

/* End of a turn: what we are done with, to the bridge. */
static void worker_settle_report(struct worker *w)
{
	struct buf b;
	size_t used;
	const char *error;
	if (!w->settle.dirty || w->nslots <= w->nworkers)
		return;
	buf_init(&b, 0);
	if (settle_report(&w->settle, &b, &used) == 1 &&
	    queue_send(w->q, w->nworkers, IPC_FRAME_SETTLED, 0, 0,
		       buf_head(&b), buf_used(&b), &error) == 0)
		settle_reported(&w->settle, used);
	buf_free(&b);
}

static void worker_event(struct worker *w, struct epoll_event *ev)
{
	uint64_t d = ev->data.u64;
	if (d >= WORKER_EV_MAX && (d & HTTPCONN_EV_TAG)) {
		httpconn_handle((struct http_conn *)(uintptr_t)
				(d & ~(uint64_t)HTTPCONN_EV_TAG), ev->events);
	} else if (d >= WORKER_EV_MAX && (d & S2S_DIAL_EV_TAG)) {
		s2s_dial_event(w, d & ~(uint64_t)S2S_DIAL_EV_TAG, ev->events);
	} else if (d >= WORKER_EV_MAX) {
		conn_handle((struct conn *)(uintptr_t)d, ev->events);
	} else if (d >= WORKER_EV_LISTEN && d < WORKER_EV_LISTEN + w->nlisten) {
		unsigned i = (unsigned)(d - WORKER_EV_LISTEN);
		if (w->listen_kind[i] == LISTEN_HTTP)
			httpconn_accept(w, w->listen_fds[i], w->listen_tls[i]);
		else
			conn_accept(w, w->listen_fds[i], w->listen_tls[i],
				    w->listen_kind[i]);
	} else if (d == WORKER_EV_CHANNEL) {
		worker_channel(w);
	} else if (d == WORKER_EV_DEAD) {
		log_error("master died: exiting");
		worker_begin_stop(w);
		w->stop_deadline_ms = time_now_ms();
		epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->dead_fd, NULL);
	} else if (d == WORKER_EV_QUEUE) {
		queue_receive(w->q, worker_frame, w, 64);
	} else if (d == WORKER_EV_DB) {
		db_handle(w->db, ev->events);
	}
}

/* Timers: delayed SASL answers, the database link, accept pauses,
 * connection timeouts.  Returns the ms until the next one is due. */
static int worker_timers(struct worker *w, int64_t now)
{
	static int64_t next_sweep;
	int timeout = w->stopping || w->accept_paused ? 50 : 1000;
	conn_run_delayed(w, now);
	int d = db_tick(w->db, now);
	if (d >= 0 && d < timeout)
		timeout = d;
	d = conn_next_delay(w, now);
	if (d >= 0 && d < timeout)
		timeout = d;
	s2s_dial_run_timers(w, now);
	d = s2s_dial_next_timeout(w, now);
	if (d >= 0 && d < timeout)
		timeout = d;
	if (w->accept_paused && now >= w->accept_resume_ms && !w->stopping) {
		w->accept_paused = 0;
		worker_listeners(w, 1);
	}
	if (now >= next_sweep) {
		conn_timeouts(w, now);
		httpconn_timeouts(w, now);
		EXT_RUN(tick, w, now);
		s2s_tick(w, now);
		worker_settle_tick(w, now);
		next_sweep = now + 1000;
	}
	return timeout;
}

_Noreturn void worker_main(struct worker_boot *boot)
{
	static struct worker w;
	struct epoll_event evs[WORKER_EVENTS];

	worker_init(&w, boot);
	log_debug("worker started, generation %u", w.gen);
	int timeout = 0;
	int64_t heartbeat = 0;
	for (;;) {
		worker_db_events(&w);
		int n = epoll_wait(w.epfd, evs, WORKER_EVENTS, timeout);
		if (n < 0 && errno != EINTR)
			log_fatal("epoll_wait() failed: %m");
		w.now_ms = time_now_ms();
		/* liveness for GET /health: a store now and then, not per
		 * turn (the cache line is read by every scrape) */
		if (w.now_ms - heartbeat >= METRICS_HEARTBEAT_EVERY_MS) {
			heartbeat = w.now_ms;
			METRIC_SET(w.stats->heartbeat_ms, heartbeat);
		}
		for (int i = 0; i < n; i++)
			worker_event(&w, &evs[i]);
		timeout = worker_timers(&w, w.now_ms);
		if (httpconn_run_ready(&w))
			timeout = 0;
		/* Everything written this turn, by events or timers, goes out
		 * now: one flush per connection and one batch per queue. */
		conn_flush_all(&w);
		/* stanzas taken back from connections this turn (never
		 * routed inside conn_send: that re-entered routing) */
		if (buf_used(&w.undelivered) > 0) {
			if (conn_route_undelivered(&w))
				timeout = 0;
			conn_flush_all(&w);
		}
		/* extensions' end-of-turn work (batched archive writes) */
		int d = ext_loop_turn(&w, w.now_ms);
		if (d >= 0 && d < timeout)
			timeout = d;
		if (w.reann != NULL && worker_reannounce_step(&w))
			timeout = 0;
		worker_settle_report(&w);
		if (w.settle.nret > 0)
			worker_lent_report(&w);
		queue_flush(w.q);
		conn_reap_dead(&w);
		httpconn_reap(&w);
		if (w.stopping && worker_stop_done(&w))
			break;
	}
	component_shutdown(&w);
	s2s_dial_shutdown(&w);
	SSL_CTX_free(w.tls_client);
	log_debug("worker exiting");
	exit(0);
}

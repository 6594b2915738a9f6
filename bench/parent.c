/*
 * parent.c - xmppd-bench's coordinator: forks the workers, samples the
 * server's /proc figures between phases (idle, everyone online, loaded,
 * after the messages), tells the workers when to start and stop sending,
 * then does the exact message accounting over all their reports: a
 * message sent by a client in one worker may be received in another, so
 * only here are sent and received lists complete.
 * Failure policy: a worker that dies is fatal (the counts would be
 * wrong); the exit status says whether the run itself was clean.
 */
#include "bench.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct worker {
	pid_t pid;
	int fd;
	uint32_t lo, hi;
	bool ready, reported;
	uint32_t joined_phase;          /* --muc-rooms: last WIRE_JOINED + 1 */
	uint8_t *online;                /* READY: one byte per client */
	struct wire_progress prog;
	unsigned char *report;          /* REPORT payload */
	size_t report_len;
};

/* One worker's REPORT, located in its payload. */
struct report {
	const struct bench_counters *cnt;
	const struct hist *login, *lat, *resume, *join, *hjoin;
	const uint32_t *sent, *hcount;
	const uint64_t *rx, *err;
	const uint32_t *rxto;           /* --muc-rooms: recipient of rx[i] */
	uint64_t nrx, nerr, nto;
};

struct parent {
	const struct bench_opts *o;
	struct worker *w;
	unsigned nw;
	uint32_t *online, n_online, n_drop;
	struct server_sample s_idle, s_online, s_loaded, s_end;
	struct server_sample s_detached;        /* the storm, before resuming */
	struct server_sample p_online, p_end;   /* --partner-pids */
	/* --watch groups, at the server's points: idle, online, loaded
	 * (after the idle hold or the sending), end */
	struct server_sample watch[BENCH_MAX_WATCH][4];
	double msg_seconds;             /* GO to the end of sending */
	int64_t t_go;                   /* messages start */
	bool storm_timed_out;
	double tool_cpu_resume;         /* our workers' CPU while resuming */
	double pep_seconds;             /* --pep: start to the last answer */
	bool pep_timed_out;             /* --pep: gave up waiting */
	/* --muc-rooms: after the joins (before: s_online), after the
	 * history joins; the wall time of each join pass */
	struct server_sample s_joined, s_hist;
	double join_seconds, hist_seconds;
	bool muc_timed_out;             /* a join phase did not finish */
};

/* Totals over all workers. */
struct totals {
	struct bench_counters c;
	struct hist login, lat, resume, join, hjoin;
	uint64_t failed, sent, delivered, duplicated, errored, lost,
		 lost_dropped, unknown;
	/* --muc-rooms: deliveries (message x member) due, not counting
	 * bounced messages; delivered ones to a non-member; history joins
	 * with fewer (more) delayed messages than min(N, room's messages);
	 * deliveries to a client of the room that is no member (its join
	 * failed, e.g. timed out, and the server let it in later) */
	uint64_t muc_due, muc_misrouted, hist_short, hist_long, muc_nonmember;
	int64_t t_first, t_last;
};

/* ---- workers -------------------------------------------------------------- */

static void parent_fork(struct parent *p)
{
	const struct bench_opts *o = p->o;
	fflush(NULL);
	for (unsigned k = 0; k < p->nw; k++) {
		struct worker *w = &p->w[k];
		int sv[2];
		w->lo = (uint32_t)((uint64_t)o->clients * k / p->nw);
		w->hi = (uint32_t)((uint64_t)o->clients * (k + 1) / p->nw);
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
			bench_fatal("socketpair: %s", strerror(errno));
		if ((w->pid = fork()) < 0)
			bench_fatal("fork: %s", strerror(errno));
		if (w->pid == 0) {
			for (unsigned j = 0; j < k; j++)
				close(p->w[j].fd);
			close(sv[0]);
			_exit(child_run(o, k, w->lo, w->hi, sv[1]));
		}
		close(sv[1]);
		w->fd = sv[0];
	}
}

static void parent_frame(struct parent *p, struct worker *w, uint32_t type,
			 void *payload, size_t len)
{
	size_t n = w->hi - w->lo;
	if (type == WIRE_READY && len == sizeof(struct bench_counters) + n) {
		w->online = malloc(n + 1);
		if (w->online == NULL)
			bench_fatal("out of memory");
		memcpy(w->online, (char *)payload + sizeof(struct bench_counters),
		       n);
		w->ready = true;
	} else if (type == WIRE_JOINED && len == sizeof(uint32_t) + n) {
		uint32_t phase;
		memcpy(&phase, payload, sizeof(phase));
		memcpy(w->online, (char *)payload + sizeof(phase), n);
		w->joined_phase = phase + 1;
	} else if (type == WIRE_PROGRESS && len == sizeof(w->prog)) {
		memcpy(&w->prog, payload, sizeof(w->prog));
	} else if (type == WIRE_REPORT) {
		w->report = payload;
		w->report_len = len;
		w->reported = true;
		return;                 /* keeps the payload */
	} else {
		bench_fatal("worker %u: unexpected frame %u", (unsigned)(w - p->w),
			    type);
	}
	free(payload);
}

/* Handle whatever frames arrive within timeout_ms. */
static void parent_poll(struct parent *p, int timeout_ms)
{
	struct pollfd pf[p->nw];
	for (unsigned k = 0; k < p->nw; k++)
		pf[k] = (struct pollfd){ .fd = p->w[k].reported ? -1 : p->w[k].fd,
					 .events = POLLIN };
	int n = poll(pf, p->nw, timeout_ms);
	if (n < 0 && errno != EINTR)
		bench_fatal("poll: %s", strerror(errno));
	for (unsigned k = 0; n > 0 && k < p->nw; k++) {
		uint32_t type;
		void *payload;
		size_t len;
		if (pf[k].revents == 0)
			continue;
		if (wire_recv(p->w[k].fd, &type, &payload, &len) < 0)
			bench_fatal("worker %u (pid %d) died", k, (int)p->w[k].pid);
		parent_frame(p, &p->w[k], type, payload, len);
	}
}

static void parent_tell(struct parent *p, uint32_t type)
{
	for (unsigned k = 0; k < p->nw; k++)
		if (wire_send(p->w[k].fd, type, NULL, NULL, 0) < 0)
			bench_fatal("worker %u died", k);
}

/* ---- phases ----------------------------------------------------------- */

static void parent_sample(const struct bench_opts *o, struct server_sample *s)
{
	if (o->n_server_pids > 0 || o->server_pid_file != NULL)
		procstat_sample(o, s);
}

enum { WATCH_IDLE, WATCH_ONLINE, WATCH_LOADED, WATCH_END };

static void parent_sample_watch(struct parent *p, int point)
{
	for (unsigned i = 0; i < p->o->n_watch; i++)
		procstat_sample_watch(&p->o->watch[i], &p->watch[i][point]);
}

static void parent_sample_partner(const struct bench_opts *o,
				  struct server_sample *s)
{
	if (o->n_partner_pids > 0)
		procstat_sample_partner(o, s);
}

static void parent_online_list(struct parent *p)
{
	p->online = malloc(((size_t)p->o->clients + 1) * sizeof(uint32_t));
	if (p->online == NULL)
		bench_fatal("out of memory");
	for (unsigned k = 0; k < p->nw; k++)
		for (uint32_t i = 0; i < p->w[k].hi - p->w[k].lo; i++)
			if (p->w[k].online[i])
				p->online[p->n_online++] = p->w[k].lo + i;
	p->n_drop = p->o->drop_clients < p->n_online ? p->o->drop_clients :
		    p->n_online;
}

static void parent_go(struct parent *p, int64_t t0)
{
	const struct bench_opts *o = p->o;
	for (unsigned k = 0; k < p->nw; k++) {
		struct worker *w = &p->w[k];
		uint32_t local = 0, senders = 0;
		for (uint32_t i = 0; i < w->hi - w->lo; i++)
			local += w->online[i] &&
				 !bench_is_partner(o, w->lo + i);
		/* the rate is shared by the online clients that send */
		for (uint32_t i = 0; i < p->n_online; i++)
			senders += !bench_is_partner(o, p->online[i]);
		struct wire_go go = {
			.t0 = t0,
			.t_end = t0 + (int64_t)(o->duration * 1e9),
			.t_drop = p->n_drop ? t0 + (int64_t)(o->duration * 5e8) : 0,
			.n_online = p->n_online,
			.n_drop = p->n_drop,
			.rate = senders ? o->msg_rate * local / senders : 0,
		};
		const void *parts[] = { &go, p->online };
		size_t lens[] = { sizeof(go), p->n_online * sizeof(uint32_t) };
		if (wire_send(w->fd, WIRE_GO, parts, lens, 2) < 0)
			bench_fatal("worker %u died", k);
	}
}

/* Messages: GO, then wait until every message is answered, or nothing
 * arrived for --quiet seconds after sending stopped, or --drain passed. */
static void parent_messages(struct parent *p)
{
	const struct bench_opts *o = p->o;
	int64_t t0 = bench_now_ns() + 100000000LL;
	int64_t t_end = t0 + (int64_t)(o->duration * 1e9);
	int64_t t_change = t0, t_done = 0;
	uint64_t last = 0;
	p->t_go = t0;
	parent_go(p, t0);
	for (;;) {
		parent_poll(p, 20);
		int64_t now = bench_now_ns();
		uint64_t sent = 0, answered = 0;
		bool done = true;
		for (unsigned k = 0; k < p->nw; k++) {
			sent += p->w[k].prog.sent;
			answered += p->w[k].prog.answered;
			done &= p->w[k].prog.done != 0;
		}
		if (done && t_done == 0) {
			t_done = t_change = now;
			parent_sample(o, &p->s_loaded);
			parent_sample_watch(p, WATCH_LOADED);
		}
		if (answered != last) {
			last = answered;
			t_change = now;
		}
		if ((done && answered >= sent) ||
		    (done && now - t_change >= (int64_t)(o->quiet * 1e9)) ||
		    now >= t_end + (int64_t)(o->drain * 1e9))
			break;
	}
	if (t_done == 0) {
		parent_sample(o, &p->s_loaded);
		parent_sample_watch(p, WATCH_LOADED);
	}
	p->msg_seconds = o->duration;
}

/* The reconnect storm: every SM stream reset at once, held detached for
 * --storm-hold seconds (the server's memory sampled at the end of it),
 * then all resume; wait until every one is resolved or the login
 * timeout (plus the drain) passes. */
static void parent_storm(struct parent *p)
{
	const struct bench_opts *o = p->o;
	parent_tell(p, WIRE_DROP);
	int64_t end = bench_now_ns() + (int64_t)(o->storm_hold * 1e9);
	while (bench_now_ns() < end)
		parent_poll(p, 100);
	parent_sample(o, &p->s_detached);
	double cpu0 = 0;
	for (unsigned k = 0; k < p->nw; k++)
		cpu0 += procstat_pid_cpu_s(p->w[k].pid);
	parent_tell(p, WIRE_RESUME);
	int64_t limit = bench_now_ns() + (int64_t)((o->login_timeout +
						    o->drain + 5) * 1e9);
	for (;;) {
		parent_poll(p, 20);
		bool done = true;
		for (unsigned k = 0; k < p->nw; k++)
			done &= p->w[k].prog.resume_done != 0;
		if (done)
			break;
		if (bench_now_ns() > limit) {
			p->storm_timed_out = true;
			break;
		}
	}
	parent_sample(o, &p->s_loaded);
	for (unsigned k = 0; k < p->nw; k++)
		p->tool_cpu_resume += procstat_pid_cpu_s(p->w[k].pid);
	p->tool_cpu_resume -= cpu0;
}

/* --pep: after the logins, wait until every expected pair and publish
 * answer (the roster pass: every client's roster) is in, or nothing
 * changed for the quiet time, or the bound passed.  Events flow during
 * the logins already: the GO only starts the workers' progress frames
 * (no messages: rate 0, duration 0). */
static void parent_pep(struct parent *p, int64_t t_start)
{
	const struct bench_opts *o = p->o;
	/* the burst: longer than pep.c's 10 s wait for the own devicelist */
	double quiet = o->pep_setup ? 60 : (o->quiet > 12 ? o->quiet : 12);
	double bound = o->pep_setup ? o->pep_setup_timeout : o->drain;
	int64_t t0 = bench_now_ns(), t_change = t0, t_last = t0;
	uint64_t last = 0;
	parent_go(p, t0);
	for (;;) {
		parent_poll(p, 20);
		int64_t now = bench_now_ns();
		uint64_t sent = 0, answered = 0;
		for (unsigned k = 0; k < p->nw; k++) {
			sent += p->w[k].prog.sent;
			answered += p->w[k].prog.answered;
		}
		if (answered != last) {
			last = answered;
			t_change = t_last = now;
		}
		if (now - t0 > 200000000LL && answered >= sent)
			break;
		if (now - t_change >= (int64_t)(quiet * 1e9) ||
		    now - t0 >= (int64_t)(bound * 1e9)) {
			p->pep_timed_out = true;
			break;
		}
	}
	p->pep_seconds = (double)(t_last - t_start) / 1e9;
}

static void parent_hold(struct parent *p, double seconds)
{
	int64_t end = bench_now_ns() + (int64_t)(seconds * 1e9);
	while (bench_now_ns() < end)
		parent_poll(p, 100);
}

/* --muc-rooms: one join phase; every worker answers with WIRE_JOINED
 * (its joins time out on their own, so the bound is only a guard). */
static void parent_muc_phase(struct parent *p, enum muc_phase phase,
			     double rate, uint32_t joins)
{
	const struct bench_opts *o = p->o;
	uint32_t ph = (uint32_t)phase;
	double pacing = rate > 0 ? joins / rate : 0;
	int64_t limit = bench_now_ns() + (int64_t)((pacing + o->join_timeout +
						    30) * 1e9);
	for (unsigned k = 0; k < p->nw; k++) {
		const void *parts[] = { &ph };
		size_t lens[] = { sizeof(ph) };
		p->w[k].joined_phase = 0;
		if (wire_send(p->w[k].fd, WIRE_JOIN, parts, lens, 1) < 0)
			bench_fatal("worker %u died", k);
	}
	for (;;) {
		parent_poll(p, 20);
		bool done = true;
		for (unsigned k = 0; k < p->nw; k++)
			done &= p->w[k].joined_phase == ph + 1;
		if (done)
			return;
		if (bench_now_ns() > limit) {
			p->muc_timed_out = true;
			return;
		}
	}
}

/* --muc-rooms: the creators, then the other occupants; the server's
 * memory after; the online list becomes the joined occupants (the GO's
 * list: the senders, and the members each delivery is checked against). */
static void parent_muc_joins(struct parent *p)
{
	const struct bench_opts *o = p->o;
	int64_t t0 = bench_now_ns();
	uint32_t occ = bench_muc_occupants(o);
	parent_muc_phase(p, MUC_PHASE_CREATORS, o->join_rate, o->muc_rooms);
	parent_muc_phase(p, MUC_PHASE_OCCUPANTS, o->join_rate,
			 occ - o->muc_rooms);
	p->join_seconds = (double)(bench_now_ns() - t0) / 1e9;
	parent_sample(o, &p->s_joined);
	free(p->online);
	p->online = NULL;
	p->n_online = 0;
	parent_online_list(p);
	p->n_drop = 0;
}

/* --history-joiners: after the messages (and their CPU sample). */
static void parent_muc_history(struct parent *p)
{
	const struct bench_opts *o = p->o;
	int64_t t0 = bench_now_ns();
	parent_muc_phase(p, MUC_PHASE_HISTORY, o->history_join_rate,
			 o->history_joiners);
	p->hist_seconds = (double)(bench_now_ns() - t0) / 1e9;
	parent_sample(o, &p->s_hist);
}

/* ---- accounting --------------------------------------------------------- */

static void report_parse(const struct worker *w, struct report *r)
{
	size_t n = w->hi - w->lo, off = 0, len = w->report_len;
	const unsigned char *b = w->report;
#define TAKE(dst, size) do { \
		if (off + (size) > len) \
			bench_fatal("short report"); \
		dst = (const void *)(b + off); \
		off += (size); \
	} while (0)
	const uint64_t *cnt;
	TAKE(r->cnt, sizeof(*r->cnt));
	TAKE(r->login, sizeof(struct hist));
	TAKE(r->lat, sizeof(struct hist));
	TAKE(r->resume, sizeof(struct hist));
	TAKE(r->join, sizeof(struct hist));
	TAKE(r->hjoin, sizeof(struct hist));
	TAKE(r->sent, ((n + 1) & ~(size_t)1) * sizeof(uint32_t));
	TAKE(r->hcount, ((n + 1) & ~(size_t)1) * sizeof(uint32_t));
	TAKE(cnt, sizeof(uint64_t));
	memcpy(&r->nrx, cnt, sizeof(r->nrx));
	TAKE(r->rx, r->nrx * sizeof(uint64_t));
	TAKE(cnt, sizeof(uint64_t));
	memcpy(&r->nerr, cnt, sizeof(r->nerr));
	TAKE(r->err, r->nerr * sizeof(uint64_t));
	TAKE(cnt, sizeof(uint64_t));
	memcpy(&r->nto, cnt, sizeof(r->nto));
	TAKE(r->rxto, r->nto * sizeof(uint32_t));
#undef TAKE
	if (off != len)
		bench_fatal("report of %zu bytes has %zu extra", len, len - off);
}

static void totals_counters(struct totals *t, const struct bench_counters *c)
{
	const uint64_t *src = (const uint64_t *)c;
	uint64_t *dst = (uint64_t *)&t->c;
	/* every field before the timestamps is a plain count */
	for (size_t i = 0; i < offsetof(struct bench_counters, t_first_connect) /
	     sizeof(uint64_t); i++)
		dst[i] += src[i];
	if (c->t_first_connect && (!t->t_first || c->t_first_connect < t->t_first))
		t->t_first = c->t_first_connect;
	if (c->t_last_login > t->t_last)
		t->t_last = c->t_last_login;
	if (c->t_first_resume && (!t->c.t_first_resume ||
				  c->t_first_resume < t->c.t_first_resume))
		t->c.t_first_resume = c->t_first_resume;
	if (c->t_last_resumed > t->c.t_last_resumed)
		t->c.t_last_resumed = c->t_last_resumed;
	if (c->t_last_rx > t->c.t_last_rx)
		t->c.t_last_rx = c->t_last_rx;
	t->c.rss_start_kb += c->rss_start_kb;
	t->c.rss_online_kb += c->rss_online_kb;
}

/* Mark each (sender, seq) of v in bits; count first sights in *fresh and
 * repeats in *again. */
static void mark_pairs(const uint64_t *v, uint64_t n, const uint32_t *sent_by,
		       const uint64_t *base, uint32_t clients, uint8_t *bits,
		       uint64_t *fresh, uint64_t *again, uint64_t *unknown)
{
	for (uint64_t i = 0; i < n; i++) {
		uint32_t s = (uint32_t)(v[i] >> 32), q = (uint32_t)v[i];
		if (s >= clients || q >= sent_by[s]) {
			(*unknown)++;
			continue;
		}
		uint64_t bit = base[s] + q;
		if (bits[bit >> 3] & (1u << (bit & 7))) {
			(*again)++;
		} else {
			bits[bit >> 3] |= (uint8_t)(1u << (bit & 7));
			(*fresh)++;
		}
	}
}

static FILE *parent_lost_file(const struct bench_opts *o)
{
	FILE *f = NULL;
	if (o->lost_file != NULL && (f = fopen(o->lost_file, "w")) == NULL)
		bench_fatal("%s: %s", o->lost_file, strerror(errno));
	return f;
}

/* Lost: sent, neither delivered nor bounced.  Whom was it for? */
static void parent_lost(const struct parent *p, struct totals *t,
			const uint32_t *sent_by, const uint64_t *base,
			const uint8_t *got, const uint8_t *bounced)
{
	const struct bench_opts *o = p->o;
	uint32_t first_drop = p->n_drop ? p->online[p->n_online - p->n_drop] :
			      UINT32_MAX;
	FILE *f = o->pep_k ? NULL : parent_lost_file(o);   /* --pep: pep.c */
	for (uint32_t s = 0; s < o->clients; s++) {
		for (uint32_t q = 0; q < sent_by[s]; q++) {
			uint64_t bit = base[s] + q;
			if ((got[bit >> 3] | bounced[bit >> 3]) & (1u << (bit & 7)))
				continue;
			uint32_t r = bench_recipient(o, p->online, p->n_online,
						     s, q);
			t->lost++;
			t->lost_dropped += r >= first_drop;
			if (f != NULL)
				fprintf(f, "%u %u %u %u\n", s, q, r,
					r >= first_drop);
		}
	}
	if (f != NULL && fclose(f) != 0)
		bench_fatal("%s: write failed", o->lost_file);
}

/* The members of each room at GO: rank_r[i] is client i's place in its
 * room (UINT32_MAX: not a member), size_r[room] the room's count;
 * member_r[first_r[room] + rank] is the client. */
struct muc_rooms {
	uint32_t *rank, *size, *first, *member;
};

static void muc_rooms_build(const struct parent *p, struct muc_rooms *m)
{
	const struct bench_opts *o = p->o;
	uint32_t rooms = o->muc_rooms;
	m->rank = malloc(((size_t)o->clients + 1) * sizeof(uint32_t));
	m->size = calloc(rooms, sizeof(uint32_t));
	m->first = calloc((size_t)rooms + 1, sizeof(uint32_t));
	m->member = malloc(((size_t)p->n_online + 1) * sizeof(uint32_t));
	if (!m->rank || !m->size || !m->first || !m->member)
		bench_fatal("out of memory");
	memset(m->rank, 0xff, (size_t)o->clients * sizeof(uint32_t));
	for (uint32_t j = 0; j < p->n_online; j++) {
		uint32_t i = p->online[j];
		m->rank[i] = m->size[bench_muc_room(o, i)]++;
	}
	for (uint32_t r = 0; r < rooms; r++)
		m->first[r + 1] = m->first[r] + m->size[r];
	for (uint32_t j = 0; j < p->n_online; j++) {
		uint32_t i = p->online[j], r = bench_muc_room(o, i);
		m->member[m->first[r] + m->rank[i]] = i;
	}
}

static void muc_rooms_free(struct muc_rooms *m)
{
	free(m->rank);
	free(m->size);
	free(m->first);
	free(m->member);
}

/* Mark each (sender, seq, recipient) delivery of one worker. */
static void muc_mark(const struct bench_opts *o, const struct muc_rooms *m,
		     const struct report *r, const uint32_t *sent_by,
		     const uint64_t *off, uint8_t *got, struct totals *t)
{
	if (r->nto != r->nrx)
		bench_fatal("report: %llu recipients for %llu deliveries",
			    (unsigned long long)r->nto,
			    (unsigned long long)r->nrx);
	for (uint64_t i = 0; i < r->nrx; i++) {
		uint32_t s = (uint32_t)(r->rx[i] >> 32), q = (uint32_t)r->rx[i];
		uint32_t to = r->rxto[i];
		if (s >= o->clients || q >= sent_by[s]) {
			t->unknown++;
			continue;
		}
		uint32_t room = bench_muc_room(o, s);
		if (to >= o->clients || bench_muc_room(o, to) != room) {
			t->muc_misrouted++;
			continue;
		}
		if (m->rank[to] == UINT32_MAX) {
			t->muc_nonmember++;
			continue;
		}
		uint64_t bit = off[s] + (uint64_t)q * m->size[room] +
			       m->rank[to];
		if (got[bit >> 3] & (1u << (bit & 7))) {
			t->duplicated++;
		} else {
			got[bit >> 3] |= (uint8_t)(1u << (bit & 7));
			t->delivered++;
		}
	}
}

/* Lost: a member never got a message its room did not refuse. */
static void muc_lost(const struct parent *p, const struct muc_rooms *m,
		     const uint32_t *sent_by, const uint64_t *base,
		     const uint64_t *off, const uint8_t *got,
		     const uint8_t *bounced, struct totals *t)
{
	const struct bench_opts *o = p->o;
	FILE *f = parent_lost_file(o);
	for (uint32_t s = 0; s < o->clients; s++) {
		uint32_t room = bench_muc_room(o, s), size = m->size[room];
		for (uint32_t q = 0; q < sent_by[s]; q++) {
			uint64_t b = base[s] + q;
			if (bounced[b >> 3] & (1u << (b & 7)))
				continue;
			t->muc_due += size;
			for (uint32_t k = 0; k < size; k++) {
				uint64_t bit = off[s] + (uint64_t)q * size + k;
				if (got[bit >> 3] & (1u << (bit & 7)))
					continue;
				t->lost++;
				if (f != NULL)
					fprintf(f, "%u %u %u 0\n", s, q,
						m->member[m->first[room] + k]);
			}
		}
	}
	if (f != NULL && fclose(f) != 0)
		bench_fatal("%s: write failed", o->lost_file);
}

/* History joiners: each should have had min(N, its room's messages). */
static void muc_history_check(const struct parent *p, const struct report *r,
			      const uint32_t *sent_by, struct totals *t)
{
	const struct bench_opts *o = p->o;
	uint64_t *room_msgs = calloc(o->muc_rooms, sizeof(uint64_t));
	if (room_msgs == NULL)
		bench_fatal("out of memory");
	for (uint32_t s = 0; s < o->clients; s++)
		room_msgs[bench_muc_room(o, s)] += sent_by[s];
	for (unsigned k = 0; k < p->nw; k++) {
		const struct worker *w = &p->w[k];
		for (uint32_t i = w->lo; i < w->hi; i++) {
			if (muc_phase_of(o, i) != MUC_PHASE_HISTORY ||
			    !w->online[i - w->lo])
				continue;
			uint64_t want = room_msgs[bench_muc_room(o, i)];
			uint32_t got = r[k].hcount[i - w->lo];
			want = want < o->history_stanzas ? want :
			       o->history_stanzas;
			t->hist_short += got < want;
			t->hist_long += got > want;
		}
	}
	free(room_msgs);
}

/* --muc-rooms: every message of a room reaches every member once. */
static void parent_muc_account(const struct parent *p, struct totals *t,
			       const struct report *r, const uint32_t *sent_by,
			       const uint64_t *base, const uint8_t *bounced)
{
	const struct bench_opts *o = p->o;
	struct muc_rooms m;
	muc_rooms_build(p, &m);
	uint64_t *off = calloc((size_t)o->clients + 1, sizeof(*off));
	if (off == NULL)
		bench_fatal("out of memory");
	for (uint32_t s = 0; s < o->clients; s++)
		off[s + 1] = off[s] + (uint64_t)sent_by[s] *
			     m.size[bench_muc_room(o, s)];
	uint8_t *got = calloc(off[o->clients] / 8 + 1, 1);
	if (got == NULL)
		bench_fatal("out of memory");
	for (unsigned k = 0; k < p->nw; k++)
		muc_mark(o, &m, &r[k], sent_by, off, got, t);
	muc_lost(p, &m, sent_by, base, off, got, bounced, t);
	muc_history_check(p, r, sent_by, t);
	free(got);
	free(off);
	muc_rooms_free(&m);
}

static void parent_account(const struct parent *p, struct totals *t)
{
	uint32_t clients = p->o->clients;
	struct report r[p->nw];
	uint32_t *sent_by = calloc(clients, sizeof(*sent_by));
	uint64_t *base = calloc((size_t)clients + 1, sizeof(*base));
	if (sent_by == NULL || base == NULL)
		bench_fatal("out of memory");
	for (unsigned k = 0; k < p->nw; k++) {
		report_parse(&p->w[k], &r[k]);
		totals_counters(t, r[k].cnt);
		hist_merge(&t->login, r[k].login);
		hist_merge(&t->lat, r[k].lat);
		hist_merge(&t->resume, r[k].resume);
		hist_merge(&t->join, r[k].join);
		hist_merge(&t->hjoin, r[k].hjoin);
		memcpy(sent_by + p->w[k].lo, r[k].sent,
		       (p->w[k].hi - p->w[k].lo) * sizeof(uint32_t));
	}
	for (uint32_t s = 0; s < clients; s++)
		base[s + 1] = base[s] + sent_by[s];
	t->sent = base[clients];
	uint8_t *got = calloc(t->sent / 8 + 1, 1);
	uint8_t *bounced = calloc(t->sent / 8 + 1, 1);
	if (got == NULL || bounced == NULL)
		bench_fatal("out of memory");
	uint64_t err_again = 0;
	for (unsigned k = 0; k < p->nw; k++) {
		if (p->o->muc_rooms == 0)
			mark_pairs(r[k].rx, r[k].nrx, sent_by, base, clients,
				   got, &t->delivered, &t->duplicated,
				   &t->unknown);
		mark_pairs(r[k].err, r[k].nerr, sent_by, base, clients, bounced,
			   &t->errored, &err_again, &t->unknown);
	}
	t->duplicated += err_again;
	if (p->o->muc_rooms > 0)
		parent_muc_account(p, t, r, sent_by, base, bounced);
	else
		parent_lost(p, t, sent_by, base, got, bounced);
	t->failed = t->c.fail_connect + t->c.fail_tls + t->c.fail_auth +
		    t->c.fail_bind + t->c.fail_closed + t->c.fail_timeout +
		    t->c.fail_sm;
	free(got);
	free(bounced);
	free(sent_by);
	free(base);
}

/* ---- output ------------------------------------------------------------- */

struct figure {
	const char *key;
	double value;
	int decimals;           /* -1: not available */
};

static double ms(uint64_t us)
{
	return (double)us / 1000.0;
}

#define FIG(k, v, d) (f[n++] = (struct figure){ k, (double)(v), d })

static size_t parent_storm_figures(const struct parent *p,
				   const struct totals *t, struct figure *f)
{
	const struct server_sample *idle = &p->s_idle, *on = &p->s_online;
	const struct server_sample *det = &p->s_detached, *end = &p->s_loaded;
	uint64_t dropped = t->c.storm_dropped, ok = t->c.resumed;
	double secs = (double)(t->c.t_last_resumed - t->c.t_first_resume) / 1e9;
	bool srv = idle->valid && det->valid;
	size_t n = 0;
	FIG("storm_dropped", dropped, 0);
	FIG("resumptions_ok", ok, 0);
	FIG("resumptions_failed", t->c.resume_failed, 0);
	FIG("resumptions_error", t->c.resume_error, 0);
	FIG("resumptions_unresolved", dropped - ok - t->c.resume_failed -
	    t->c.resume_error, 0);
	FIG("resumption_h_mismatch", t->c.resume_h_mismatch, 0);
	FIG("resume_seconds_all", ok ? secs : 0, ok ? 3 : -1);
	FIG("resumptions_per_second", ok && secs > 0 ? (double)ok / secs : 0,
	    ok && secs > 0 ? 1 : -1);
	FIG("resume_latency_p50_ms", ms(hist_quantile(&t->resume, .50)), 2);
	FIG("resume_latency_p90_ms", ms(hist_quantile(&t->resume, .90)), 2);
	FIG("resume_latency_p99_ms", ms(hist_quantile(&t->resume, .99)), 2);
	FIG("resume_latency_max_ms", ms(t->resume.max), 2);
	FIG("server_rss_detached_kb", det->rss_kb, srv ? 0 : -1);
	FIG("server_pss_detached_kb", det->pss_kb, srv ? 0 : -1);
	FIG("server_kb_per_detached_session", dropped ? ((double)det->rss_kb -
	    (double)idle->rss_kb) / (double)dropped : 0, srv && dropped ? 2 : -1);
	FIG("server_pss_kb_per_detached_session", dropped ?
	    ((double)det->pss_kb - (double)idle->pss_kb) / (double)dropped : 0,
	    srv && dropped ? 2 : -1);
	FIG("server_kb_per_online_sm_session", dropped ? ((double)on->rss_kb -
	    (double)idle->rss_kb) / (double)dropped : 0,
	    srv && on->valid && dropped ? 2 : -1);
	FIG("server_rss_resumed_kb", end->rss_kb, srv && end->valid ? 0 : -1);
	FIG("server_cpu_s_per_1000_resumptions", ok ? (end->cpu_s -
	    det->cpu_s) * 1000 / (double)ok : 0, srv && end->valid && ok ? 3 : -1);
	FIG("server_kernel_cpu_s_per_1000_resumptions", ok ? (end->sys_s -
	    det->sys_s) * 1000 / (double)ok : 0, srv && end->valid && ok ? 3 : -1);
	FIG("bench_cpu_s_per_1000_resumptions", ok ? p->tool_cpu_resume *
	    1000 / (double)ok : 0, ok ? 3 : -1);
	FIG("storm_timed_out", p->storm_timed_out, 0);
	return n;
}

/* Per client of each class: what an inactive client was spared. */
static size_t parent_csi_figures(const struct parent *p,
				 const struct totals *t, struct figure *f)
{
	static const char *const cls[2] = { "active", "inactive" };
	const struct bench_counters *c = &t->c;
	size_t n = 0;
	double nc;
	FIG("presence_sent", c->presence_sent, 0);
	uint64_t sends = t->sent + c->presence_sent + c->chatstate_sent;
	FIG("server_cpu_s_per_1000_sends", sends ? (p->s_end.cpu_s -
	    p->s_online.cpu_s) * 1000 / (double)sends : 0,
	    p->s_end.valid && p->s_online.valid && sends ? 3 : -1);
	FIG("chatstate_sent", c->chatstate_sent, 0);
	for (int k = 0; k < 2; k++) {
		static char keys[2][4][48];
		nc = (double)c->csi_clients[k];
		snprintf(keys[k][0], 48, "csi_%s_clients", cls[k]);
		snprintf(keys[k][1], 48, "csi_%s_wakeups_per_client", cls[k]);
		snprintf(keys[k][2], 48, "csi_%s_stanzas_per_client", cls[k]);
		snprintf(keys[k][3], 48, "csi_%s_kb_per_client", cls[k]);
		FIG(keys[k][0], nc, 0);
		FIG(keys[k][1], nc ? (double)c->csi_wakeups[k] / nc : 0,
		    nc ? 2 : -1);
		FIG(keys[k][2], nc ? (double)c->csi_stanzas[k] / nc : 0,
		    nc ? 2 : -1);
		FIG(keys[k][3], nc ? (double)c->csi_bytes[k] / 1024 / nc : 0,
		    nc ? 2 : -1);
	}
	double a = c->csi_clients[0] ? (double)c->csi_wakeups[0] /
		   (double)c->csi_clients[0] : 0;
	double i = c->csi_clients[1] ? (double)c->csi_wakeups[1] /
		   (double)c->csi_clients[1] : 0;
	FIG("csi_wakeups_spared_pct", a > 0 ? 100 * (1 - i / a) : 0,
	    a > 0 && c->csi_clients[1] ? 1 : -1);
	a = c->csi_clients[0] ? (double)c->csi_stanzas[0] /
	    (double)c->csi_clients[0] : 0;
	i = c->csi_clients[1] ? (double)c->csi_stanzas[1] /
	    (double)c->csi_clients[1] : 0;
	FIG("csi_stanzas_spared_pct", a > 0 ? 100 * (1 - i / a) : 0,
	    a > 0 && c->csi_clients[1] ? 1 : -1);
	nc = (double)c->csi_clients[1];
	FIG("csi_flush_stanzas_per_client", nc ? (double)c->csi_flush_stanzas /
	    nc : 0, nc ? 2 : -1);
	FIG("csi_flush_wakeups_per_client", nc ? (double)c->csi_flush_wakeups /
	    nc : 0, nc ? 2 : -1);
	a = c->csi_clients[0] ? (double)c->csi_records[0] /
	    (double)c->csi_clients[0] : 0;
	i = c->csi_clients[1] ? (double)c->csi_records[1] /
	    (double)c->csi_clients[1] : 0;
	FIG("csi_tls_records_spared_pct", a > 0 ? 100 * (1 - i / a) : 0,
	    a > 0 && c->csi_clients[1] ? 1 : -1);
	return n;
}
#undef FIG

/* --watch: each group's CPU in the logins (online - idle), per
 * delivered message (end - online: the server's own window), from
 * online to loaded (the idle hold, or the sending) and in all, and its
 * memory at each point.  The keys live as long as the program. */
static size_t parent_watch_figures(const struct parent *p,
				   const struct totals *t, struct figure *f)
{
	static char keys[BENCH_MAX_WATCH][14][64];
	const char *what[14] = {
		"processes", "cpu_s_logins", "cpu_us_per_message",
		"kernel_cpu_us_per_message", "cpu_s_run", "rss_idle_kb",
		"rss_online_kb", "rss_loaded_kb", "pss_idle_kb",
		"pss_online_kb", "pss_loaded_kb", "anon_idle_kb",
		"anon_loaded_kb", "cpu_s_loaded",
	};
	size_t n = 0;
	for (unsigned i = 0; i < p->o->n_watch; i++) {
		const struct server_sample *w = p->watch[i];
		const struct server_sample *ld = w[WATCH_LOADED].valid ?
			&w[WATCH_LOADED] : &w[WATCH_ONLINE];
		bool on = w[WATCH_IDLE].valid && w[WATCH_ONLINE].valid;
		bool msg = w[WATCH_ONLINE].valid && w[WATCH_END].valid &&
			   t->delivered > 0;
		double d = t->delivered ? (double)t->delivered : 1;
		double v[14] = {
			w[WATCH_END].nprocs,
			w[WATCH_ONLINE].cpu_s - w[WATCH_IDLE].cpu_s,
			(w[WATCH_END].cpu_s - w[WATCH_ONLINE].cpu_s) * 1e6 / d,
			(w[WATCH_END].sys_s - w[WATCH_ONLINE].sys_s) * 1e6 / d,
			w[WATCH_END].cpu_s - w[WATCH_IDLE].cpu_s,
			w[WATCH_IDLE].rss_kb, w[WATCH_ONLINE].rss_kb, ld->rss_kb,
			w[WATCH_IDLE].pss_kb, w[WATCH_ONLINE].pss_kb, ld->pss_kb,
			w[WATCH_IDLE].anon_kb, ld->anon_kb,
			ld->cpu_s - w[WATCH_ONLINE].cpu_s,
		};
		int dec[14] = {
			w[WATCH_END].valid ? 0 : -1, on ? 3 : -1, msg ? 2 : -1,
			msg ? 2 : -1, on && w[WATCH_END].valid ? 3 : -1,
			on ? 0 : -1, on ? 0 : -1, on ? 0 : -1,
			on ? 0 : -1, on ? 0 : -1, on ? 0 : -1,
			on ? 0 : -1, on ? 0 : -1,
			on && w[WATCH_LOADED].valid ? 3 : -1,
		};
		for (unsigned k = 0; k < 14; k++) {
			snprintf(keys[i][k], sizeof(keys[i][k]), "watch_%s_%s",
				 p->o->watch[i].name, what[k]);
			f[n++] = (struct figure){ keys[i][k], v[k], dec[k] };
		}
	}
	return n;
}

static size_t parent_figures(const struct parent *p, const struct totals *t,
			     struct figure *f)
{
	const struct server_sample *idle = &p->s_idle, *on = &p->s_online;
	const struct server_sample *ld = p->s_loaded.valid ? &p->s_loaded : on;
	/* per connection: after the idle hold if any (settled), else right
	 * after the logins (before message traffic adds its buffers) */
	const struct server_sample *held = p->o->idle_hold > 0 ? ld : on;
	double login_s = (double)(t->t_last - t->t_first) / 1e9;
	bool srv = idle->valid && on->valid;
	uint64_t est = t->c.established;
	size_t n = 0;
#define FIG(k, v, d) (f[n++] = (struct figure){ k, (double)(v), d })
	FIG("connections_established", est, 0);
	FIG("connections_failed", t->failed, 0);
	FIG("logins_per_second", login_s > 0 ? (double)est / login_s : 0, 1);
	FIG("login_latency_p50_ms", ms(hist_quantile(&t->login, .50)), 2);
	FIG("login_latency_p90_ms", ms(hist_quantile(&t->login, .90)), 2);
	FIG("login_latency_p99_ms", ms(hist_quantile(&t->login, .99)), 2);
	FIG("messages_sent", t->sent, 0);
	FIG("messages_delivered", t->delivered, 0);
	FIG("messages_lost", t->lost, 0);
	FIG("messages_duplicated", t->duplicated, 0);
	FIG("messages_errored", t->errored, 0);
	FIG("delivery_latency_p50_ms", ms(hist_quantile(&t->lat, .50)), 2);
	FIG("delivery_latency_p90_ms", ms(hist_quantile(&t->lat, .90)), 2);
	FIG("delivery_latency_p99_ms", ms(hist_quantile(&t->lat, .99)), 2);
	FIG("delivery_latency_max_ms", ms(t->lat.max), 2);
	FIG("server_rss_idle_kb", idle->rss_kb, srv ? 0 : -1);
	FIG("server_rss_loaded_kb", ld->rss_kb, srv ? 0 : -1);
	FIG("server_kb_per_connection", est ? ((double)held->rss_kb -
	    (double)idle->rss_kb) / (double)est : 0, srv && est ? 2 : -1);
	FIG("server_cpu_s_per_1000_logins", est ? (on->cpu_s - idle->cpu_s) *
	    1000 / (double)est : 0, srv && est ? 3 : -1);
	FIG("server_cpu_s_per_1000_messages", t->delivered ?
	    (p->s_end.cpu_s - on->cpu_s) * 1000 / (double)t->delivered : 0,
	    srv && p->s_end.valid && t->delivered ? 3 : -1);
	/* beyond the list */
	FIG("server_kernel_cpu_s_per_1000_logins", est ? (on->sys_s -
	    idle->sys_s) * 1000 / (double)est : 0, srv && est ? 3 : -1);
	FIG("server_kernel_cpu_s_per_1000_messages", t->delivered ?
	    (p->s_end.sys_s - on->sys_s) * 1000 / (double)t->delivered : 0,
	    srv && p->s_end.valid && t->delivered ? 3 : -1);
	FIG("connections_failed_connect", t->c.fail_connect, 0);
	FIG("connections_failed_tls", t->c.fail_tls, 0);
	FIG("connections_failed_auth", t->c.fail_auth, 0);
	FIG("connections_failed_bind", t->c.fail_bind, 0);
	FIG("connections_failed_closed", t->c.fail_closed, 0);
	FIG("connections_failed_timeout", t->c.fail_timeout, 0);
	FIG("connections_disconnected", t->c.disconnected, 0);
	FIG("connections_dropped", t->c.dropped, 0);
	FIG("stream_errors", t->c.stream_errors, 0);
	FIG("messages_per_second", p->msg_seconds > 0 ?
	    (double)t->sent / p->msg_seconds : 0, 1);
	FIG("messages_lost_to_dropped", t->lost_dropped, 0);
	FIG("messages_skipped", t->c.skipped, 0);
	FIG("messages_misrouted", t->c.misrouted, 0);
	FIG("messages_malformed", t->c.malformed + t->unknown, 0);
	FIG("messages_stale", t->c.stale, 0);
	FIG("server_processes", ld->nprocs, srv ? 0 : -1);
	FIG("server_rss_online_kb", on->rss_kb, srv ? 0 : -1);
	FIG("server_pss_idle_kb", idle->pss_kb, srv ? 0 : -1);
	FIG("server_pss_loaded_kb", ld->pss_kb, srv ? 0 : -1);
	FIG("server_anon_idle_kb", idle->anon_kb, srv ? 0 : -1);
	FIG("server_anon_loaded_kb", ld->anon_kb, srv ? 0 : -1);
	FIG("server_cpu_us_per_message", t->delivered ? (p->s_end.cpu_s -
	    on->cpu_s) * 1e6 / (double)t->delivered : 0,
	    srv && p->s_end.valid && t->delivered ? 2 : -1);
	FIG("server_kernel_cpu_us_per_message", t->delivered ?
	    (p->s_end.sys_s - on->sys_s) * 1e6 / (double)t->delivered : 0,
	    srv && p->s_end.valid && t->delivered ? 2 : -1);
	FIG("bench_kb_per_client", est ? ((double)t->c.rss_online_kb -
	    (double)t->c.rss_start_kb) / (double)est : 0, est ? 2 : -1);
	if (p->o->sm || p->o->storm) {
		FIG("connections_failed_sm", t->c.fail_sm, 0);
		FIG("sm_enabled", t->c.sm_enabled, 0);
		FIG("sm_acks_sent", t->c.acks_sent, 0);
	}
	if (p->o->n_partner_pids > 0) {
		/* --pairs across two servers: the receiving server's CPU
		 * apart, and both together, per delivered message */
		const struct server_sample *po = &p->p_online, *pe = &p->p_end;
		bool ok = po->valid && pe->valid && t->delivered;
		double d = t->delivered ? (double)t->delivered : 1;
		FIG("partner_processes", pe->nprocs, pe->valid ? 0 : -1);
		FIG("partner_cpu_us_per_message", (pe->cpu_s - po->cpu_s) *
		    1e6 / d, ok ? 2 : -1);
		FIG("partner_kernel_cpu_us_per_message", (pe->sys_s -
		    po->sys_s) * 1e6 / d, ok ? 2 : -1);
		FIG("both_cpu_us_per_message", (pe->cpu_s - po->cpu_s +
		    p->s_end.cpu_s - on->cpu_s) * 1e6 / d,
		    ok && srv && p->s_end.valid ? 2 : -1);
	}
	if (p->o->storm)
		n += parent_storm_figures(p, t, f + n);
	if (p->o->csi || p->o->mix_presence > 0 || p->o->mix_chatstate > 0)
		n += parent_csi_figures(p, t, f + n);
	n += parent_watch_figures(p, t, f + n);
#undef FIG
	return n;
}

/* --pep: the roster pass, or the burst. */
static size_t parent_pep_figures(const struct parent *p,
				 const struct totals *t, struct figure *f)
{
	const struct bench_counters *c = &t->c;
	const struct server_sample *idle = &p->s_idle, *end = &p->s_end;
	bool srv = idle->valid && end->valid;
	uint64_t est = c->established, ev = c->pep_events;
	double login_s = (double)(t->t_last - t->t_first) / 1e9;
	size_t n = 0;
#define FIG(k, v, d) (f[n++] = (struct figure){ k, (double)(v), d })
	FIG("connections_established", est, 0);
	FIG("connections_failed", t->failed, 0);
	FIG("connections_disconnected", c->disconnected, 0);
	FIG("stream_errors", c->stream_errors, 0);
	if (p->o->pep_setup) {
		FIG("pep_setup_clients_done", c->pep_setup_done, 0);
		FIG("pep_setup_clients_incomplete", est - c->pep_setup_done, 0);
		FIG("pep_setup_seconds", p->pep_seconds, 2);
		FIG("pep_setup_subscribes_sent", c->pep_sub_sent, 0);
		FIG("pep_setup_subscribed_sent", c->pep_subd_sent, 0);
		FIG("pep_setup_roster_pushes", c->pep_roster_pushes, 0);
		FIG("pep_setup_roster_refetched", c->pep_refetch, 0);
		FIG("pep_setup_publishes_ok", c->pep_pub_ok, 0);
		FIG("pep_setup_publish_errors", c->pep_pub_err, 0);
		FIG("pep_setup_publishes_failed", c->pep_setup_pub_failed, 0);
		FIG("pep_setup_timed_out", p->pep_timed_out, 0);
		FIG("pep_setup_server_cpu_s", end->cpu_s - idle->cpu_s,
		    srv ? 2 : -1);
		return n;
	}
	FIG("logins_per_second", login_s > 0 ? (double)est / login_s : 0, 1);
	FIG("login_latency_p50_ms", ms(hist_quantile(&t->login, .50)), 2);
	FIG("login_latency_p99_ms", ms(hist_quantile(&t->login, .99)), 2);
	FIG("pep_events_expected", c->pep_expected, 0);
	FIG("pep_events_delivered", c->pep_pairs, 0);
	FIG("pep_events_missing", c->pep_missing, 0);
	FIG("pep_events_duplicated", c->pep_dups, 0);
	FIG("pep_events_live", c->pep_live, 0);
	FIG("pep_events_last_item", c->pep_last, 0);
	FIG("pep_events_stale", c->pep_stale, 0);
	FIG("pep_events_unexpected", c->pep_unexpected, 0);
	FIG("pep_events_other", c->pep_other, 0);
	FIG("pep_notifications", ev, 0);
	FIG("pep_publishes_sent", c->pep_pub_sent, 0);
	FIG("pep_publishes_ok", c->pep_pub_ok, 0);
	FIG("pep_publishes_failed", c->pep_pub_err, 0);
	FIG("pep_publishes_unanswered", c->pep_pub_due - c->pep_pub_ok -
	    c->pep_pub_err, 0);
	FIG("pep_disco_answered", c->pep_disco, 0);
	FIG("pep_published_without_own_list", c->pep_own_late, 0);
	FIG("publish_rtt_p50_ms", ms(hist_quantile(&t->resume, .50)), 2);
	FIG("publish_rtt_p99_ms", ms(hist_quantile(&t->resume, .99)), 2);
	FIG("event_latency_p50_ms", ms(hist_quantile(&t->lat, .50)), 2);
	FIG("event_latency_p99_ms", ms(hist_quantile(&t->lat, .99)), 2);
	FIG("event_latency_max_ms", ms(t->lat.max), 2);
	FIG("pep_seconds_all", p->pep_seconds, 2);
	FIG("pep_timed_out", p->pep_timed_out, 0);
	FIG("server_cpu_s_per_1000_notifications", ev ? (end->cpu_s -
	    idle->cpu_s) * 1000 / (double)ev : 0, srv && ev ? 3 : -1);
	FIG("server_kernel_cpu_s_per_1000_notifications", ev ? (end->sys_s -
	    idle->sys_s) * 1000 / (double)ev : 0, srv && ev ? 3 : -1);
	FIG("server_cpu_s_per_1000_logins", est ? (end->cpu_s - idle->cpu_s) *
	    1000 / (double)est : 0, srv && est ? 3 : -1);
	FIG("server_cpu_s_burst", end->cpu_s - idle->cpu_s, srv ? 2 : -1);
	FIG("server_rss_loaded_kb", end->rss_kb, srv ? 0 : -1);
#undef FIG
	return n;
}

/* --muc-rooms: joins, deliveries, the server's cost, history joins. */
static size_t parent_muc_join_figures(const struct parent *p,
				      const struct totals *t, struct figure *f)
{
	const struct bench_counters *c = &t->c;
	const struct server_sample *on = &p->s_online, *jn = &p->s_joined;
	bool srv = on->valid && jn->valid;
	double occ = (double)c->muc_joined;
	size_t n = 0;
#define FIG(k, v, d) (f[n++] = (struct figure){ k, (double)(v), d })
	FIG("muc_rooms", p->o->muc_rooms, 0);
	FIG("muc_occupants", c->muc_joined, 0);
	FIG("muc_joins_failed", c->muc_joins_started - c->muc_joined, 0);
	FIG("muc_join_errors", c->muc_join_errors, 0);
	FIG("muc_join_timeouts", c->muc_join_timeouts, 0);
	FIG("muc_late_joins", c->muc_late_joins, 0);
	FIG("muc_rooms_created", c->muc_created, 0);
	FIG("muc_instant_form_errors", c->muc_instant_errors, 0);
	FIG("muc_join_seconds_all", p->join_seconds, 2);
	FIG("join_latency_p50_ms", ms(hist_quantile(&t->join, .50)), 2);
	FIG("join_latency_p99_ms", ms(hist_quantile(&t->join, .99)), 2);
	FIG("join_latency_max_ms", ms(t->join.max), 2);
	FIG("server_rss_online_kb", on->rss_kb, srv ? 0 : -1);
	FIG("server_rss_joined_kb", jn->rss_kb, srv ? 0 : -1);
	FIG("server_kb_per_occupant", occ ? ((double)jn->rss_kb -
	    (double)on->rss_kb) / occ : 0, srv && occ ? 2 : -1);
	FIG("server_pss_kb_per_occupant", occ ? ((double)jn->pss_kb -
	    (double)on->pss_kb) / occ : 0, srv && occ ? 2 : -1);
	FIG("server_cpu_s_per_1000_joins", occ ? (jn->cpu_s - on->cpu_s) *
	    1000 / occ : 0, srv && occ ? 3 : -1);
	FIG("muc_presences_received", c->muc_presences, 0);
	FIG("muc_join_timed_out", p->muc_timed_out, 0);
#undef FIG
	return n;
}

static size_t parent_muc_figures(const struct parent *p,
				 const struct totals *t, struct figure *f)
{
	const struct bench_counters *c = &t->c;
	const struct server_sample *jn = &p->s_joined, *end = &p->s_end;
	bool srv = jn->valid && end->valid;
	double login_s = (double)(t->t_last - t->t_first) / 1e9;
	double d = (double)t->delivered, sent = (double)t->sent;
	/* to the last delivery when the server fell behind */
	double secs = c->t_last_rx > p->t_go ?
		      (double)(c->t_last_rx - p->t_go) / 1e9 : 0;
	secs = secs > p->msg_seconds ? secs : p->msg_seconds;
	double hj = (double)c->muc_hist_joined;
	size_t n = 0;
#define FIG(k, v, d) (f[n++] = (struct figure){ k, (double)(v), d })
	FIG("connections_established", c->established, 0);
	FIG("connections_failed", t->failed, 0);
	FIG("connections_disconnected", c->disconnected, 0);
	FIG("stream_errors", c->stream_errors, 0);
	FIG("logins_per_second", login_s > 0 ? c->established / login_s : 0, 1);
	FIG("login_latency_p50_ms", ms(hist_quantile(&t->login, .50)), 2);
	FIG("login_latency_p99_ms", ms(hist_quantile(&t->login, .99)), 2);
	n += parent_muc_join_figures(p, t, f + n);
	FIG("groupchat_sent", t->sent, 0);
	FIG("groupchat_per_second", p->msg_seconds > 0 ? sent /
	    p->msg_seconds : 0, 1);
	FIG("groupchat_errored", t->errored, 0);
	FIG("groupchat_skipped", c->skipped, 0);
	FIG("deliveries_due", t->muc_due, 0);
	FIG("deliveries", t->delivered, 0);
	FIG("deliveries_lost", t->lost, 0);
	FIG("deliveries_duplicated", t->duplicated, 0);
	FIG("deliveries_misrouted", t->muc_misrouted, 0);
	FIG("deliveries_to_non_members", t->muc_nonmember, 0);
	FIG("deliveries_per_second", secs > 0 ? d / secs : 0, 1);
	FIG("delivery_latency_p50_ms", ms(hist_quantile(&t->lat, .50)), 2);
	FIG("delivery_latency_p90_ms", ms(hist_quantile(&t->lat, .90)), 2);
	FIG("delivery_latency_p99_ms", ms(hist_quantile(&t->lat, .99)), 2);
	FIG("delivery_latency_max_ms", ms(t->lat.max), 2);
	FIG("server_cpu_s_per_1000_deliveries", d ? (end->cpu_s - jn->cpu_s) *
	    1000 / d : 0, srv && d ? 4 : -1);
	FIG("server_kernel_cpu_s_per_1000_deliveries", d ? (end->sys_s -
	    jn->sys_s) * 1000 / d : 0, srv && d ? 4 : -1);
	FIG("server_cpu_s_per_1000_groupchat", sent ? (end->cpu_s -
	    jn->cpu_s) * 1000 / sent : 0, srv && sent ? 3 : -1);
	FIG("server_rss_loaded_kb", end->rss_kb, srv ? 0 : -1);
	FIG("history_joiners", p->o->history_joiners, 0);
	FIG("history_joins_ok", c->muc_hist_joined, 0);
	FIG("history_joins_failed", c->muc_hist_started - c->muc_hist_joined, 0);
	FIG("history_join_seconds_all", p->hist_seconds, 2);
	FIG("history_join_latency_p50_ms", ms(hist_quantile(&t->hjoin, .50)),
	    2);
	FIG("history_join_latency_p99_ms", ms(hist_quantile(&t->hjoin, .99)),
	    2);
	FIG("history_join_latency_max_ms", ms(t->hjoin.max), 2);
	FIG("history_messages_per_join", hj ? (double)c->muc_hist_msgs / hj :
	    0, hj ? 2 : -1);
	FIG("history_joins_short", t->hist_short, 0);
	FIG("history_joins_long", t->hist_long, 0);
	FIG("history_messages_wrong", c->muc_hist_wrong, 0);
	FIG("muc_subjects_received", c->muc_subjects, 0);
	FIG("muc_delayed_to_occupants", c->muc_delayed_live, 0);
	FIG("muc_other_messages", c->muc_other, 0);
	FIG("messages_malformed", c->malformed + t->unknown, 0);
	FIG("messages_stale", c->stale, 0);
	FIG("bench_kb_per_client", c->established ? ((double)c->rss_online_kb -
	    (double)c->rss_start_kb) / (double)c->established : 0,
	    c->established ? 2 : -1);
#undef FIG
	return n;
}

static void parent_print(const struct parent *p, const struct totals *t)
{
	struct figure f[192];
	size_t n = p->o->pep_k > 0 ? parent_pep_figures(p, t, f) :
		   p->o->muc_rooms > 0 ? parent_muc_figures(p, t, f) :
		   parent_figures(p, t, f);
	for (size_t i = 0; i < n; i++) {
		if (f[i].decimals < 0)
			printf("%s: n/a\n", f[i].key);
		else
			printf("%s: %.*f\n", f[i].key, f[i].decimals, f[i].value);
	}
	printf("%s {", p->o->pep_setup ? "SETUP_RESULT" : "RESULT");
	for (size_t i = 0; i < n; i++) {
		printf("%s\"%s\": ", i ? ", " : "", f[i].key);
		if (f[i].decimals < 0)
			printf("null");
		else
			printf("%.*f", f[i].decimals, f[i].value);
	}
	printf("}\n");
	fflush(stdout);
}

/* --muc-rooms: every client in its room, no message refused or lost,
 * every history join complete; the losses themselves are checked by
 * the generic terms. */
static bool parent_muc_clean(const struct parent *p, const struct totals *t)
{
	const struct bench_counters *c = &t->c;
	return !p->muc_timed_out && c->muc_joined == bench_muc_occupants(p->o) &&
	       c->muc_hist_joined == p->o->history_joiners &&
	       t->errored == 0 && t->muc_misrouted == 0 &&
	       t->hist_short == 0 && t->hist_long == 0 &&
	       c->muc_hist_wrong == 0 && c->muc_delayed_live == 0;
}

int parent_run(const struct bench_opts *o)
{
	struct parent p = { .o = o, .nw = o->processes };
	struct totals *t = calloc(1, sizeof(*t));
	p.w = calloc(p.nw, sizeof(*p.w));
	if (t == NULL || p.w == NULL)
		bench_fatal("out of memory");
	int64_t t_start = bench_now_ns();
	parent_sample(o, &p.s_idle);
	parent_sample_watch(&p, WATCH_IDLE);
	parent_fork(&p);
	for (bool all = false; !all;) {
		parent_poll(&p, 100);
		all = true;
		for (unsigned k = 0; k < p.nw; k++)
			all &= p.w[k].ready;
	}
	/* --settle: the logins' consequences (another cluster node learning
	 * of these sessions) belong to the logins, and a message must not
	 * race them */
	if (o->settle > 0)
		parent_hold(&p, o->settle);
	parent_sample(o, &p.s_online);
	parent_sample_partner(o, &p.p_online);
	parent_sample_watch(&p, WATCH_ONLINE);
	parent_online_list(&p);
	if (o->muc_rooms > 0)
		parent_muc_joins(&p);
	if (o->storm) {
		parent_storm(&p);
	} else if (o->idle_hold > 0) {
		parent_hold(&p, o->idle_hold);
		parent_sample(o, &p.s_loaded);
		parent_sample_watch(&p, WATCH_LOADED);
	} else if (o->pep_k > 0) {
		parent_pep(&p, t_start);
	} else if (!o->login_only) {
		parent_messages(&p);
	}
	parent_sample(o, &p.s_end);
	parent_sample_partner(o, &p.p_end);
	parent_sample_watch(&p, WATCH_END);
	if (o->muc_rooms > 0 && o->history_joiners > 0)
		parent_muc_history(&p);
	parent_tell(&p, WIRE_STOP);
	for (bool all = false; !all;) {
		parent_poll(&p, 100);
		all = true;
		for (unsigned k = 0; k < p.nw; k++)
			all &= p.w[k].reported;
	}
	for (unsigned k = 0; k < p.nw; k++) {
		int st;
		while (waitpid(p.w[k].pid, &st, 0) < 0 && errno == EINTR)
			;
		close(p.w[k].fd);
	}
	parent_account(&p, t);
	parent_print(&p, t);
	bool clean = t->failed == 0 && t->lost == t->lost_dropped &&
		     t->duplicated == 0 && t->unknown == 0 &&
		     t->c.misrouted == 0 &&
		     (!o->storm || (!p.storm_timed_out &&
				    t->c.resumed == t->c.storm_dropped &&
				    t->c.storm_dropped == t->c.established)) &&
		     (o->pep_k == 0 || (o->pep_setup ?
			t->c.pep_setup_done == o->clients &&
			t->c.pep_setup_pub_failed == 0 :
			t->c.pep_missing == 0 && t->c.pep_pub_err == 0 &&
			t->c.pep_pub_ok == t->c.pep_pub_due)) &&
		     (o->muc_rooms == 0 || parent_muc_clean(&p, t));
	for (unsigned k = 0; k < p.nw; k++) {
		free(p.w[k].online);
		free(p.w[k].report);
	}
	free(p.w);
	free(p.online);
	free(t);
	return clean ? 0 : 1;
}

/*
 * conn.c - client connections of one worker: accept, read, coalesced
 * writes (one flush per loop turn), timeouts, close.  A closed
 * connection is unlinked at once but freed at the end of the loop turn,
 * so later events of the same epoll batch never touch freed memory.
 * Output is bounded by c2s.max_output_bytes: a client that leaves more
 * than that unread gets <policy-violation/>, and every stanza queued for
 * it and not yet written is taken back (conn_send records where pieces
 * end) and queued on the worker's undelivered list, which the loop
 * hands to route_undelivered() after its flush (routing inside a send
 * re-entered loops over session lists): messages go to another
 * resource or offline storage, IQ requests are bounced.  A piece partly
 * written stays, so the stream stays well-formed for a client that
 * reads again; if the connection closes before it is written whole, it
 * is taken back too.  Any close (a reset, a failed write, the goodbye
 * grace over, a TLS alert) takes back what was not written, except
 * while the worker stops (then it is counted in the log).  Bytes already sealed into TLS records count as
 * written.  Failure policy: any I/O error or overflow ends only that
 * connection, and an overflow loses no one else's stanza.
 */
#include "worker.h"
#include "ext.h"
#include "s2s.h"
#include "component.h"
#include "log.h"
#include "util.h"
#include <expat.h>
#include "tls.h"
#include "tls13.h"
#include "metrics.h"
#include "../db/db.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* Room for two whole TLS records: one may be carried over half read. */
#define CONN_READ_CHUNK (2 * TLS13_MAX_RECORD)
#define CONN_ACCEPT_BATCH 64
/* Past this much pending output, write at once instead of at the end of
 * the loop turn: one turn may bring a large batch from the queues. */
#define CONN_OUT_EAGER (256u << 10)

static void conn_table_grow(struct worker *w)
{
	unsigned size = w->conn_table_size ? w->conn_table_size * 2 : 1024;
	struct conn **t = calloc(size, sizeof(*t));
	if (t == NULL)
		return;     /* keep the old table: chains just get longer */
	for (unsigned i = 0; i < w->conn_table_size; i++) {
		struct conn *c = w->conn_table[i], *next;
		for (; c != NULL; c = next) {
			next = c->hnext;
			c->hnext = t[c->id & (size - 1)];
			t[c->id & (size - 1)] = c;
		}
	}
	free(w->conn_table);
	w->conn_table = t;
	w->conn_table_size = size;
}

static void conn_table_add(struct worker *w, struct conn *c)
{
	if (w->nconns >= w->conn_table_size)
		conn_table_grow(w);
	struct conn **head = &w->conn_table[c->id & (w->conn_table_size - 1)];
	c->hnext = *head;
	*head = c;
}

static void conn_table_del(struct worker *w, struct conn *c)
{
	struct conn **p = &w->conn_table[c->id & (w->conn_table_size - 1)];
	for (; *p != NULL; p = &(*p)->hnext) {
		if (*p == c) {
			*p = c->hnext;
			return;
		}
	}
}

struct conn *conn_lookup(struct worker *w, uint32_t id, uint32_t gen)
{
	if (w->conn_table_size == 0)
		return NULL;
	/* a detached conn adopted from a dead worker keeps its old gen */
	struct conn *c = w->conn_table[id & (w->conn_table_size - 1)];
	for (; c != NULL; c = c->hnext)
		if (c->id == id && c->gen == gen && !c->closed)
			return c;
	return NULL;
}

struct conn_query {
	struct worker *w;
	uint32_t conn_id, gen;
	conn_query_cb *cb;
};

static void conn_query_result(void *ctx, const PGresult *res,
			      const char *error)
{
	struct conn_query q = *(struct conn_query *)ctx;
	free(ctx);
	q.cb(conn_lookup(q.w, q.conn_id, q.gen), res, error);
}

int conn_query(struct conn *c, const char *sql, int nparams,
	       const char *const *params, conn_query_cb *cb)
{
	struct conn_query *q = malloc(sizeof(*q));
	if (q == NULL)
		return -1;
	*q = (struct conn_query){ c->w, c->id, c->gen, cb };
	if (c->w->db == NULL ||
	    db_query(c->w->db, sql, nparams, params, NULL, NULL, 0,
		     conn_query_result, q) < 0) {
		free(q);
		return -1;
	}
	return 0;
}

static void conn_peer_name(struct conn *c, const struct sockaddr_storage *ss)
{
	char addr[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &s->sin_addr, addr, sizeof(addr));
		port = ntohs(s->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &s->sin6_addr, addr, sizeof(addr));
		port = ntohs(s->sin6_port);
	}
	snprintf(c->peer, sizeof(c->peer), "%s:%u", addr, port);
	snprintf(c->addr, sizeof(c->addr), "%s", addr);
}

static struct conn *conn_new(struct worker *w, int fd,
			     const struct sockaddr_storage *ss, int direct_tls)
{
	struct conn *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->w = w;
	c->fd = fd;
	c->gen = w->gen;
	do
		c->id = ++w->next_conn_id;
	while (c->id == 0);
	c->direct_tls = direct_tls;
	c->state = CONN_STATE_HEADER;
	c->deadline_ms = time_now_ms() + (int64_t)w->cfg->c2s_timeout;
	buf_init(&c->out, 0);   /* bounded by conn_send */
	conn_peer_name(c, ss);
	if (stream_init(c) < 0) {
		free(c);
		return NULL;
	}
	return c;
}

/* A stanza given to conn_send (each call is one stanza or one piece of
 * stream-level XML): counted by kind from its first bytes. */
static inline int conn_tag_end(char ch)
{
	return ch == ' ' || ch == '>' || ch == '/' || ch == '\t' ||
	       ch == '\n' || ch == '\r';
}

static void conn_count_stanza(struct ipc_worker_stats *st, const char *d,
			      size_t len)
{
	if (len < 4 || d[0] != '<')
		return;
	if (d[1] == 'm' && len > 8 && memcmp(d, "<message", 8) == 0 &&
	    conn_tag_end(d[8]))
		METRIC_INC(st->stanzas_out[IPC_STANZA_MESSAGE]);
	else if (d[1] == 'p' && len > 9 && memcmp(d, "<presence", 9) == 0 &&
		 conn_tag_end(d[9]))
		METRIC_INC(st->stanzas_out[IPC_STANZA_PRESENCE]);
	else if (d[1] == 'i' && d[2] == 'q' && conn_tag_end(d[3]))
		METRIC_INC(st->stanzas_out[IPC_STANZA_IQ]);
}

/* A piece that is a stanza (<message, <presence, <iq). */
static inline int conn_is_stanza(const char *d, size_t len)
{
	if (len < 4 || d[0] != '<')
		return 0;
	return (d[1] == 'm' && len > 8 && memcmp(d, "<message", 8) == 0 &&
		conn_tag_end(d[8])) ||
	       (d[1] == 'p' && len > 9 && memcmp(d, "<presence", 9) == 0 &&
		conn_tag_end(d[9])) ||
	       (d[1] == 'i' && d[2] == 'q' && conn_tag_end(d[3]));
}

static void conn_link(struct worker *w, struct conn *c)
{
	c->next = w->conns;
	if (w->conns != NULL)
		w->conns->prev = c;
	w->conns = c;
	w->nconns++;
	conn_table_add(w, c);
	METRIC_INC(w->stats->connections);
	METRIC_INC(w->stats->accepted);
	METRIC_INC(w->stats->accepted_total);
	conn_metrics_move(c, IPC_TLS_NONE, 0);
}

void conn_metrics_move(struct conn *c, unsigned tls, unsigned auth)
{
	struct ipc_worker_stats *st = c->w->stats;
	unsigned l = c->direct_tls ? IPC_LISTENER_DIRECT_TLS
				   : IPC_LISTENER_STARTTLS;
	if (c->m_counted)
		METRIC_DEC(st->conns[l][c->m_tls][c->m_auth]);
	c->m_tls = (uint8_t)(tls < IPC_TLS_MAX ? tls : IPC_TLS_1_3);
	c->m_auth = auth ? 1 : 0;
	c->m_counted = 1;
	METRIC_INC(st->conns[l][c->m_tls][c->m_auth]);
}

/* c2s.max_connections_per_ip, counted across workers (shm/addr.h).
 * Over it: <policy-violation/> (RFC 6120 4.9.3.18) and close; a direct
 * TLS connection is closed with a log line only, as nothing can be said
 * before its handshake.  0, or -1 when c is closing. */
static int conn_admit(struct conn *c, const struct sockaddr_storage *ss)
{
	unsigned limit = c->w->cfg->max_connections_per_ip, open = 0;
	const char *error;
	shm_addr_key(ss, &c->addr_key);
	if (c->addr_key.family == 0)
		return 0;
	int r = shm_addr_acquire(c->w->shm->addrs, &c->addr_key,
				 (uint16_t)c->w->slot, limit, &open, &error);
	if (r == 1 || (r < 0 && limit == 0)) {
		c->addr_counted = r == 1;
		return 0;
	}
	if (r < 0 && !c->direct_tls) {
		stream_error(c, "resource-constraint", "too many connections");
		return -1;
	}
	if (r < 0) {
		log_warn("c%u %s: refused: %s", c->id, c->peer, error);
	} else if (!c->direct_tls) {
		char text[128];
		snprintf(text, sizeof(text), "too many connections from your "
			 "address (c2s.max_connections_per_ip = %u)", limit);
		stream_error(c, "policy-violation", text);
		return -1;
	} else {
		log_info("c%u %s: refused: %u connections from this address "
			 "(c2s.max_connections_per_ip = %u)", c->id, c->peer,
			 open, limit);
	}
	conn_close(c);
	return -1;
}

static int conn_accept_one(struct worker *w, int lfd, int direct_tls,
			   int kind)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd = worker_accept(w, lfd, &ss, &len);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (kind == LISTEN_C2S && w->cfg->c2s_send_buffer > 0) {
		int sndbuf = (int)w->cfg->c2s_send_buffer;
		if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf,
			       sizeof(sndbuf)) < 0)
			log_warn("c2s.send_buffer not set: %m");
	}
	struct conn *c = conn_new(w, fd, &ss, direct_tls);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP };
	ev.data.u64 = (uint64_t)(uintptr_t)c;
	if (c == NULL || epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		log_error("new connection dropped: %m");
		if (c != NULL)
			stream_free(c);
		free(c);
		close(fd);
		return 0;
	}
	c->kind = kind == LISTEN_S2S ? CONN_S2S_IN :
		  kind == LISTEN_COMPONENT ? CONN_COMPONENT : CONN_C2S;
	conn_link(w, c);
	log_debug("c%u %s: connected%s%s", c->id, c->peer,
		  direct_tls ? " (direct TLS)" : "",
		  c->kind == CONN_S2S_IN ? " (s2s)" :
		  c->kind == CONN_COMPONENT ? " (component)" : "");
	if (conn_admit(c, &ss) < 0)
		return 0;
	if (direct_tls && (sasl_address_banned_tls(c) || w->tls == NULL ||
			   tls_start(c, w->tls) < 0)) {
		conn_close(c);
		return 0;
	}
	if (c->kind == CONN_S2S_IN)
		s2s_accepted(c);
	else if (c->kind == CONN_COMPONENT)
		component_accepted(c);
	return 0;
}

struct conn *conn_new_outgoing(struct worker *w, int fd, const char *peer)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	memset(&ss, 0, sizeof(ss));
	getpeername(fd, (struct sockaddr *)&ss, &len);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct conn *c = conn_new(w, fd, &ss, 0);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP };
	ev.data.u64 = (uint64_t)(uintptr_t)c;
	if (c == NULL || epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		log_error("outgoing connection to %s dropped: %m", peer);
		if (c != NULL)
			stream_free(c);
		free(c);
		close(fd);
		return NULL;
	}
	c->kind = CONN_S2S_OUT;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	conn_link(w, c);
	return c;
}

void conn_accept(struct worker *w, int lfd, int direct_tls, int kind)
{
	for (int i = 0; i < CONN_ACCEPT_BATCH && !w->accept_paused; i++)
		if (conn_accept_one(w, lfd, direct_tls, kind) < 0)
			return;
}

/* >0 bytes, 0 would block, -1 closed or failed. */
static ssize_t conn_recv(struct conn *c, char *data, size_t len)
{
	if (conn_tls(c))
		return tls_read(c, data, len);
	ssize_t n = read(c->fd, data, len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0) {
		log_debug("c%u %s: %s", c->id, c->peer,
			  n == 0 ? "closed by peer" : strerror(errno));
		return -1;
	}
	return n;
}

/* 1 ready for data, 0 wait, -1 closed. */
static int conn_tls_progress(struct conn *c)
{
	if (c->ssl == NULL || !c->tls_handshaking)
		return 1;
	int r = tls_handshake(c);
	if (r < 0) {
		conn_close(c);
		return -1;
	}
	if (r > 0)      /* the handshake is done: the connections gauge */
		conn_metrics_move(c, tls_is_13(c) ? IPC_TLS_1_3 : IPC_TLS_1_2,
				  c->authenticated);
	conn_update_events(c);
	return r;
}

static void conn_read(struct conn *c)
{
	char data[CONN_READ_CHUNK];
	/* Plain sockets: a few chunks per turn for fairness.  TLS: until
	 * OpenSSL has nothing buffered, or epoll would not wake us again. */
	for (int i = 0; !c->closed && !c->detached && !c->want_close &&
			c->read_paused_ms == 0; i++) {
		if (i >= 4 && c->ssl == NULL && !tls13_eof(c))
			return;
		if (conn_tls_progress(c) <= 0 || c->detached)
			return;
		ssize_t n = conn_recv(c, data, sizeof(data));
		if (n < 0) {
			conn_close(c);
			return;
		}
		if (n == 0) {
			conn_update_events(c);
			return;
		}
		METRIC_ADD(c->w->stats->bytes_in, (uint64_t)n);
		c->last_read_ms = c->w->now_ms;
		c->ping_sent = 0;
		bind_touch(c);
		if (stream_feed(c, data, (size_t)n) < 0)
			return;
		/* Drained: skip the read(2) that would only say EAGAIN (the
		 * level-triggered epoll reports what arrives later). */
		if (c->ssl != NULL ? !tls_has_pending(c) && !c->tls_handshaking
		    : c->t13 != NULL ? !tls13_more(c)
				   : (size_t)n < sizeof(data))
			return;
	}
}

void conn_handle(struct conn *c, uint32_t events)
{
	if (c->closed || c->detached)
		return;
	if (events & (EPOLLERR | EPOLLHUP)) {
		conn_close(c);
		return;
	}
	if (events & EPOLLOUT)
		conn_flush(c);
	if (!c->closed && (events & (EPOLLIN | EPOLLRDHUP) ||
			   c->tls_want_write))
		conn_read(c);
}

/* ---- pending output and what a slow reader leaves unread ---------------- */

/* out_shed while the goodbye itself is queued: appended, no cap. */
#define CONN_SHED_GOODBYE (-1)

/* Bytes of out already written (to the socket or the TLS layer). */
static uint64_t conn_out_written(const struct conn *c)
{
	return c->out_total - buf_used(&c->out);
}

/* ---- frames from other nodes held in out (settle.h) ----------------
 * The node that sent a frame keeps it until we are done with it: for a
 * connection without an XEP-0198 journal, until its bytes are written
 * to the socket (not merely queued here: a node killed with them
 * queued would lose them).  The journal's sessions hold in sm.c. */

static void conn_hold_frame(struct conn *c)
{
	if (c->out_journaled == 0)
		settle_list_hold(&c->w->settle, &c->holds, c->out_total);
}

/* Written past them (the TLS layer's own buffer empty too): done. */
static void conn_settle_written(struct conn *c)
{
	struct settle_held *e = settle_list_first(&c->holds);
	if (e == NULL || tls13_out_pending(c))
		return;
	uint64_t written = conn_out_written(c);
	for (; e != NULL && e->key <= written; e = settle_list_first(&c->holds))
		settle_list_release_first(&c->w->settle, &c->holds);
}

/* Ends in c->out_ends (sorted) that are <= at. */
static unsigned conn_ends_upto(const struct conn *c, uint64_t at)
{
	unsigned lo = 0, hi = c->out_nends;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		if (c->out_ends[mid] <= at)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Start of the piece holding offset at (< out_total). */
static uint64_t conn_piece_start(const struct conn *c, uint64_t at)
{
	unsigned k = conn_ends_upto(c, at);
	return k > 0 ? c->out_ends[k - 1] : c->out_base;
}

/* Record that a piece ends at out_total (another follows it).  Without
 * memory the two pieces merge, which only matters if both are taken
 * back: the merged text is then no stanza and is dropped, logged. */
static void conn_mark_end(struct conn *c)
{
	if (c->out_nends == c->out_ends_cap) {
		/* forget pieces written whole when they are at least half:
		 * the move is then paid for by as many appends (else grow) */
		unsigned k = conn_ends_upto(c, conn_out_written(c));
		unsigned cap = c->out_ends_cap ? c->out_ends_cap * 2 : 16;
		uint64_t *ends = NULL;
		if (k == 0 || k < c->out_nends / 2)
			ends = realloc(c->out_ends, cap * sizeof(*ends));
		if (ends != NULL) {
			c->out_ends = ends;
			c->out_ends_cap = cap;
		} else if (k > 0) {
			c->out_base = c->out_ends[k - 1];
			c->out_nends -= k;
			memmove(c->out_ends, c->out_ends + k,
				c->out_nends * sizeof(*c->out_ends));
		} else {
			return;
		}
	}
	c->out_ends[c->out_nends++] = c->out_total;
}

static void conn_forget_pieces(struct conn *c)
{
	free(c->out_ends);
	c->out_ends = NULL;
	c->out_nends = c->out_ends_cap = 0;
}

/* Pieces taken out of c->out, to be routed elsewhere. */
struct conn_taken {
	struct buf text;
	size_t *ends;           /* end of each piece in text */
	size_t n;
	uint64_t from;          /* out_total offset of text's start */
	struct settle_list holds;   /* frames from other nodes among them */
};

/* Take the pieces of out in [from, out_total) (from is where a piece
 * starts; below the written offset only for the piece written in part,
 * whose head buf_append keeps) and cut out there. */
static void conn_take(struct conn *c, uint64_t from, struct conn_taken *t)
{
	uint64_t written = conn_out_written(c);
	/* the frames taken go elsewhere, held on (conn_route_taken) */
	settle_list_split(&c->holds, from, &t->holds);
	const char *start = buf_head(&c->out);
	size_t n = (size_t)(c->out_total - from);

	buf_init(&t->text, 0);
	t->ends = NULL;
	t->n = 0;
	if (from < written && written - from > c->out.off) {
		log_error("c%u %s: head of a stanza written in part is gone",
			  c->id, c->peer);
		n -= (size_t)(written - from);
		from = written;
	}
	t->from = from;
	start = from < written ? start - (size_t)(written - from)
			       : start + (size_t)(from - written);
	if (n > 0 && (buf_append(&t->text, start, n) < 0 ||
		      (t->ends = calloc((size_t)c->out_nends + 1,
					sizeof(*t->ends))) == NULL)) {
		log_error("c%u %s: no memory to take back %zu bytes of output",
			  c->id, c->peer, n);
		buf_free(&t->text);
		n = 0;
	}
	for (unsigned i = 0; n > 0 && i < c->out_nends; i++)
		if (c->out_ends[i] > from)
			t->ends[t->n++] = (size_t)(c->out_ends[i] - from);
	if (n > 0)
		t->ends[t->n++] = n;
	if (from >= written) {
		c->out.len -= (size_t)(c->out_total - from);
		c->out_total = from;
	} else {
		buf_consume(&c->out, buf_used(&c->out));
	}
	while (c->out_nends > 0 &&
	       c->out_ends[c->out_nends - 1] >= c->out_total)
		c->out_nends--;
}

/* One stanza that did not reach its connection, queued for
 * conn_route_undelivered(): conn_send and conn_close never route, as
 * routing may send to (and end) other connections while the caller
 * walks a list of sessions.  Header, then len bytes of text. */
struct conn_undelivered {
	uint32_t conn_id;
	uint32_t gen;
	uint32_t len;
	/* another node's frame: its sender keeps it until routed again
	 * (offline storage holds it on until its row is written) */
	struct settle_hold hold;
};

void conn_undelivered_held(struct worker *w, uint32_t conn_id, uint32_t gen,
			   const char *data, size_t len,
			   struct settle_hold *held)
{
	struct conn_undelivered h = { conn_id, gen, (uint32_t)len, { 0, 0 } };
	size_t at = w->undelivered.len;
	if (held != NULL && held->token != 0) {
		h.hold = *held;
		held->token = 0;
	} else {
		settle_hold(&w->settle, &h.hold);
	}
	if (len > UINT32_MAX ||
	    buf_append(&w->undelivered, &h, sizeof(h)) < 0 ||
	    buf_append(&w->undelivered, data, len) < 0) {
		w->undelivered.len = at;
		settle_release(&w->settle, &h.hold);
		log_error("c%u: no memory to reroute %zu bytes: stanza lost",
			  conn_id, len);
	}
}

void conn_undelivered(struct worker *w, uint32_t conn_id, uint32_t gen,
		      const char *data, size_t len)
{
	conn_undelivered_held(w, conn_id, gen, data, len, NULL);
}

/* Rounds per loop turn: routing may end more slow readers, whose
 * stanzas come back; each round ends at least one, and what is left
 * waits for the next turn. */
#define CONN_UNDELIVERED_ROUNDS 16

int conn_route_undelivered(struct worker *w)
{
	for (int round = 0; round < CONN_UNDELIVERED_ROUNDS &&
	     buf_used(&w->undelivered) > 0; round++) {
		struct buf list = w->undelivered;
		buf_init(&w->undelivered, 0);
		while (buf_used(&list) >= sizeof(struct conn_undelivered)) {
			struct conn_undelivered h;
			memcpy(&h, buf_head(&list), sizeof(h));
			buf_consume(&list, sizeof(h));
			struct settle_at was = settle_enter(&w->settle,
							  &h.hold);
			if (route_undelivered(w, h.conn_id, h.gen,
					      buf_head(&list), h.len) < 0)
				log_debug("c%u: stream data not written: "
					  "dropped", h.conn_id);
			settle_leave(&w->settle, was);
			settle_release(&w->settle, &h.hold);
			buf_consume(&list, h.len);
		}
		buf_free(&list);
	}
	return buf_used(&w->undelivered) > 0;
}

/* Queue what conn_take took, then data (one more piece, or NULL). */
static void conn_route_taken(struct conn *c, struct conn_taken *t,
			     const char *data, size_t len)
{
	size_t pieces = 0, kept = 0, journaled = 0;
	for (size_t i = 0, from = 0; i < t->n; from = t->ends[i], i++) {
		/* the hold of the frame this piece is, if any (both in order
		 * of their ends) */
		struct settle_hold *held = NULL;
		struct settle_held *e;
		while ((e = settle_list_first(&t->holds)) != NULL &&
		       e->key < t->from + t->ends[i])
			settle_list_release_first(&c->w->settle, &t->holds);
		if (e != NULL && e->key == t->from + t->ends[i])
			held = &e->h;   /* moved with the piece (or released
					   below, for the pieces not routed) */
		/* in a journal (XEP-0198): rerouted from there, once, when
		 * the session ends (an offline message's row goes then too,
		 * as written: the journal's copy is stored again) */
		if (c->out_journaled != 0 &&
		    t->from + t->ends[i] > c->out_journaled) {
			journaled++;
			continue;
		}
		/* a stored message stays stored, in its place */
		if (ext_taken_back(c, t->from + t->ends[i])) {
			kept++;
			continue;
		}
		/* an outgoing s2s link's: once more over a new link,
		 * then bounced (s2s_out.c), held on meanwhile */
		if (s2s_taken_back(c, buf_head(&t->text) + from,
				   t->ends[i] - from, t->from + t->ends[i],
				   held)) {
			pieces++;
			continue;
		}
		conn_undelivered_held(c->w, c->id, c->gen,
				      buf_head(&t->text) + from,
				      t->ends[i] - from, held);
		pieces++;
	}
	/* journaled or kept pieces' holds: done here (the journal holds
	 * its own; the s2s route-back list took its pieces') */
	settle_list_free(&c->w->settle, &t->holds);
	if (data != NULL) {
		conn_undelivered(c->w, c->id, c->gen, data, len);
		pieces++;
	}
	if (pieces > 0 || kept > 0)
		log_info("c%u %s: %zu pieces not written: to be routed "
			 "elsewhere; %zu offline messages left stored", c->id,
			 c->peer, pieces, kept);
	if (journaled > 0)
		log_info("c%u %s: %zu pieces not written: in the journal",
			 c->id, c->peer, journaled);
	free(t->ends);
	buf_free(&t->text);
}

/* Output c may leave unread (c2s.max_output_bytes,
 * component.max_queue_bytes). */
static uint64_t conn_max_output(const struct conn *c)
{
	return c->kind == CONN_COMPONENT ?
	       c->w->cfg->component_max_queue_bytes :
	       c->w->cfg->c2s_max_output_bytes;
}

/* A client that leaves more than c2s.max_output_bytes unread: the piece
 * being written stays, the rest (and data) is taken back, the stream
 * ends with <policy-violation/> (RFC 6120 section 4.9.3.17: a local
 * limit) and what comes for it later is routed elsewhere at once. */
static void conn_overflow(struct conn *c, const char *data, size_t len)
{
	uint64_t written = conn_out_written(c), cut = written;
	struct conn_taken t;

	if (conn_piece_start(c, written) < written) {   /* written in part */
		cut = c->out_total;
		for (unsigned i = 0; i < c->out_nends; i++) {
			if (c->out_ends[i] > written) {
				cut = c->out_ends[i];
				break;
			}
		}
	}
	log_info("c%u %s: %zu bytes of output unread (%s is %llu): closing",
		 c->id, c->peer, buf_used(&c->out) + len,
		 c->kind == CONN_COMPONENT ? "component.max_queue_bytes" :
					     "c2s.max_output_bytes",
		 (unsigned long long)conn_max_output(c));
	conn_take(c, cut, &t);
	/* stream_closing() takes the session out of the table before
	 * anything is rerouted, so nothing finds it again */
	c->out_shed = CONN_SHED_GOODBYE;
	stream_error(c, "policy-violation", "Too much output left unread");
	c->out_shed = 1;
	conn_route_taken(c, &t, data, len);
}

/* A write conn_send makes now (the buffer over CONN_OUT_EAGER, or to
 * make room).  On an outgoing s2s link it only writes: a failure, or the
 * buffer drained, is acted on by conn_flush_all, at the top of the loop.
 * Closing here would run s2s_out_gone -> out_lost, which frees the link
 * (and the pairs it carries) under the s2s_out.c code writing to it
 * (out_pump, out_enqueue, out_send_verify...); s2s_drained here would
 * pump that link again from inside its own pump. */
static void conn_send_flush(struct conn *c)
{
	if (c->kind != CONN_S2S_OUT) {
		conn_flush(c);
		return;
	}
	/* a socket that failed fails again there, and is closed (OpenSSL
	 * answers a write after a fatal error with an error, no I/O) */
	if (!(c->ssl != NULL && c->tls_handshaking) &&
	    (conn_tls(c) ? tls_flush(c)
			 : (buf_write_fd(&c->out, c->fd) < 0 ? -1 : 0)) == 0)
		conn_update_events(c);
	conn_want_flush(c);
}

/* No socket: a stanza is kept by the extension that kept the session
 * (XEP-0198 journal); stream-level XML is dropped. */
static void conn_send_detached(struct conn *c, const char *data, size_t len)
{
	if (conn_is_stanza(data, len) && ext_stanza_sent(c, data, len) < 0)
		conn_undelivered(c->w, c->id, c->gen, data, len);
}

void conn_send(struct conn *c, const char *data, size_t len)
{
	if (c->closed || len == 0)
		return;
	if (c->detached) {
		conn_send_detached(c, data, len);
		return;
	}
	if (c->out_shed > 0) {
		log_debug("c%u: closing: stanza to be routed elsewhere", c->id);
		conn_undelivered(c->w, c->id, c->gen, data, len);
		return;
	}
	size_t used = buf_used(&c->out);
	if (used > 0 && c->out_shed == 0 &&
	    used + len > conn_max_output(c)) {
		/* unread is what the socket does not take now */
		conn_send_flush(c);
		if (c->detached) {      /* the write failed: kept (sm.c) */
			conn_send_detached(c, data, len);
			return;
		}
		if (c->closed) {
			conn_undelivered(c->w, c->id, c->gen, data, len);
			return;
		}
		used = buf_used(&c->out);
		if (used > 0 && used + len > conn_max_output(c)) {
			conn_overflow(c, data, len);
			return;
		}
	}
	/* an extension that journals stanzas (XEP-0198) sees each one
	 * before it is queued; one test for a session none filters */
	if (c->ext_filter != 0 && conn_is_stanza(data, len) &&
	    ext_stanza_sent(c, data, len) < 0) {
		conn_undelivered(c->w, c->id, c->gen, data, len);
		return;
	}
	/* buf_append may compact: keep the written head of a piece written
	 * in part, it is taken back whole if the rest never goes out */
	size_t keep = 0;
	if (used > 0 && c->out.off > 0 && c->out.len + len > c->out.cap) {
		uint64_t written = conn_out_written(c);
		keep = (size_t)(written - conn_piece_start(c, written));
		if (keep > c->out.off)
			keep = c->out.off;
		c->out.off -= keep;
	}
	int r = buf_append(&c->out, data, len);
	c->out.off += keep;
	if (r < 0 && c->out_shed == CONN_SHED_GOODBYE) {
		/* the goodbye itself: conn_overflow would end the stream
		 * again (stream_error, conn_send: a recursion) */
		log_error("c%u %s: no memory for the goodbye: dropped",
			  c->id, c->peer);
		return;
	}
	if (r < 0) {
		log_error("c%u %s: no memory for output", c->id, c->peer);
		conn_overflow(c, data, len);
		return;
	}
	if (used == 0) {
		c->out_nends = 0;
		c->out_base = c->out_total;
	} else {
		conn_mark_end(c);
	}
	c->out_total += len;
	conn_hold_frame(c);
	METRIC_ADD(c->w->stats->bytes_out, len);
	conn_count_stanza(c->w->stats, data, len);
	if (buf_used(&c->out) >= CONN_OUT_EAGER && !c->tls_handshaking) {
		conn_send_flush(c);
		return;
	}
	conn_want_flush(c);
}

void conn_want_flush(struct conn *c)
{
	if (!c->in_out_list) {
		c->in_out_list = 1;
		c->out_next = c->w->flush_list;
		c->w->flush_list = c;
	}
}

/* EPOLLOUT while we have bytes to write or OpenSSL wants to write. */
void conn_update_events(struct conn *c)
{
	int on = buf_used(&c->out) > 0 || c->tls_want_write ||
		 tls13_out_pending(c);
	int noin = c->read_paused_ms != 0;
	if (c->closed || c->detached ||
	    (c->epollout == on && c->epoll_noin == noin))
		return;
	/* paused: no EPOLLIN nor EPOLLRDHUP (level-triggered, they would
	 * wake every turn) */
	struct epoll_event ev = { .events = (noin ? 0 : EPOLLIN | EPOLLRDHUP) |
				  (on ? EPOLLOUT : 0) };
	ev.data.u64 = (uint64_t)(uintptr_t)c;
	epoll_ctl(c->w->epfd, EPOLL_CTL_MOD, c->fd, &ev);
	c->epollout = on;
	c->epoll_noin = noin;
}

void conn_flush(struct conn *c)
{
	if (c->closed || c->detached)
		return;
	if (c->ssl != NULL && c->tls_handshaking) {
		conn_update_events(c);  /* writes wait for the handshake */
		return;
	}
	int r = conn_tls(c) ? tls_flush(c)
			       : (buf_write_fd(&c->out, c->fd) < 0 ? -1 : 0);
	if (r < 0) {
		log_debug("c%u %s: write failed", c->id, c->peer);
		conn_close(c);
		return;
	}
	conn_update_events(c);
	conn_settle_written(c);
	if (buf_used(&c->out) > 0 || tls13_out_pending(c))
		return;
	EXT_RUN(output_drained, c);
	if (c->kind == CONN_S2S_OUT)
		s2s_drained(c);         /* what waits for room */
	/* The emptied buffer stays for the next stanza; conn_timeouts
	 * frees it once the connection has been quiet a while. */
	if (c->want_close)
		conn_close(c);
}

void conn_flush_all(struct worker *w)
{
	struct conn *c = w->flush_list;
	w->flush_list = NULL;
	while (c != NULL) {
		struct conn *next = c->out_next;
		c->in_out_list = 0;
		c->out_next = NULL;
		conn_flush(c);
		c = next;
	}
}

/* Whatever the close (a reset, a failed write, the goodbye grace over,
 * a TLS alert), the client never read the rest: not delivered.  While
 * the worker stops too: messages go to offline storage (route.c), and
 * the worker waits for those writes before it exits (worker.c). */
static void conn_take_back_all(struct conn *c)
{
	uint64_t from = conn_piece_start(c, conn_out_written(c));
	struct conn_taken t;
	conn_take(c, from, &t);
	conn_route_taken(c, &t, NULL, 0);
}

/* c leaves its cell of the connections gauge (conn_metrics_move). */
static void conn_uncount(struct conn *c)
{
	if (c->m_counted)
		METRIC_DEC(c->w->stats->conns[c->direct_tls ?
					      IPC_LISTENER_DIRECT_TLS :
					      IPC_LISTENER_STARTTLS]
				    [c->m_tls][c->m_auth]);
	c->m_counted = 0;
}

/* The connection is gone but an extension keeps its session (ext.h
 * detach): the socket, TLS and SASL state go, the conn stays in the
 * list and table, bound, with fd -1.  What was in out is dropped: the
 * extension that keeps the session has every stanza of it. */
static void conn_detach(struct conn *c)
{
	struct worker *w = c->w;
	if (c->in_parse && c->parser != NULL)
		XML_StopParser(c->parser, XML_FALSE);
	conn_undelay(c);
	if (c->addr_counted)
		shm_addr_release(w->shm->addrs, &c->addr_key, (uint16_t)w->slot);
	c->addr_counted = 0;
	sasl_free(c);
	tls_free(c);
	close(c->fd);
	c->fd = -1;
	c->detached = 1;
	c->epollout = 0;
	c->deadline_ms = 0;
	buf_consume(&c->out, buf_used(&c->out));
	buf_shrink(&c->out);
	conn_forget_pieces(c);
	if (!c->in_parse)
		stream_free(c);     /* else at conn_free */
	METRIC_DEC(w->stats->connections);
	conn_uncount(c);
}

struct conn *conn_new_detached(struct worker *w, uint32_t id, uint32_t gen)
{
	struct conn *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->w = w;
	c->fd = -1;
	c->id = id;
	c->gen = gen;
	c->detached = 1;
	c->state = CONN_STATE_OPEN;
	buf_init(&c->out, 0);
	snprintf(c->peer, sizeof(c->peer), "detached");
	c->next = w->conns;
	if (w->conns != NULL)
		w->conns->prev = c;
	w->conns = c;
	w->nconns++;
	conn_table_add(w, c);
	return c;
}

/* The connection is lost while its stream is open: 1 when an extension
 * keeps the session (XEP-0198) and c is now detached. */
static int conn_try_detach(struct conn *c)
{
	if (c->detached || c->want_close || !c->bound || c->w->stopping ||
	    !ext_detach(c))
		return 0;
	log_info("c%u %s: connection lost: session %s kept for resumption",
		 c->id, c->peer, c->jid);
	conn_detach(c);
	EXT_RUN(session_leaving, c);
	return 1;
}

void conn_close(struct conn *c)
{
	struct worker *w = c->w;
	if (c->closed || conn_try_detach(c))
		return;
	c->closed = 1;
	if (c->in_parse && c->parser != NULL)
		XML_StopParser(c->parser, XML_FALSE);
	conn_undelay(c);
	presence_session_gone(c);
	bind_release(c);
	if (c->kind == CONN_S2S_IN || c->kind == CONN_S2S_OUT)
		s2s_conn_gone(c);
	else if (c->kind == CONN_COMPONENT)
		component_conn_gone(c);
	if (c->addr_counted)
		shm_addr_release(w->shm->addrs, &c->addr_key, (uint16_t)w->slot);
	c->addr_counted = 0;
	sasl_free(c);
	db_cancel_conn(c);
	tls_free(c);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	conn_table_del(w, c);
	w->nconns--;
	if (!c->detached)
		METRIC_DEC(w->stats->connections);
	conn_uncount(c);
	c->next = w->dead_list;     /* freed by conn_reap_dead() */
	w->dead_list = c;
	if (buf_used(&c->out) > 0)
		conn_take_back_all(c);
	settle_list_release_all(&w->settle, &c->holds);
	EXT_RUN(session_gone, c);
}

void conn_reap_dead(struct worker *w)
{
	struct conn *c = w->dead_list;
	w->dead_list = NULL;
	while (c != NULL) {
		struct conn *next = c->next;
		if (c->in_out_list) {   /* still on the flush list: later */
			c->next = w->dead_list;
			w->dead_list = c;
		} else {
			stream_free(c);
			buf_free(&c->out);
			free(c->out_ends);
			settle_list_free(&w->settle, &c->holds);
			free(c->user);
			free(c->domain);
			free(c->jid);
			free(c->last_presence);
			EXT_RUN(conn_free, c);
			if (c->s2s != NULL)
				s2s_conn_free(c);
			if (c->comp != NULL)
				component_conn_free(c);
			for (unsigned i = 0; i < c->ndirected; i++)
				free(c->directed[i]);
			free(c->directed);
			free(c);
		}
		c = next;
	}
}

#define CONN_PING_WAIT_MS 30000
/* Silence after which a stream's parser is freed (stream_park). */
#define CONN_PARK_MS 2000    /* at most; less for short idle_timeout */

/* XEP-0199 section 4.2: ping a client that has been silent for
 * c2s.idle_timeout; drop it if the ping goes unanswered. */
static void conn_idle(struct conn *c, int64_t now)
{
	int64_t idle = (int64_t)c->w->cfg->c2s_idle_timeout;
	int64_t wait = idle < CONN_PING_WAIT_MS ? idle : CONN_PING_WAIT_MS;
	if (c->last_read_ms == 0)
		c->last_read_ms = now;
	if (c->ping_sent && now - c->last_read_ms > idle + wait) {
		log_info("c%u %s: no answer to ping", c->id, c->peer);
		/* a network gone silent (a phone out of coverage) is what
		 * XEP-0198 resumption is for: such a session is kept */
		if (!conn_try_detach(c))
			stream_error(c, "connection-timeout", NULL);
		return;
	}
	if (c->ping_sent || now - c->last_read_ms <= idle)
		return;
	struct buf out;
	buf_init(&out, 0);
	buf_appendf(&out, "<iq from='%s' id='ping-%u' to='", c->domain, c->id);
	xml_escape(&out, c->jid, strlen(c->jid), 1);
	buf_appendf(&out, "' type='get'><ping xmlns='urn:xmpp:ping'/></iq>");
	conn_send(c, buf_head(&out), buf_used(&out));
	buf_free(&out);
	c->ping_sent = 1;
}

void db_cancel_conn(struct conn *c)
{
	if (c->w->db != NULL)
		db_cancel(c->w->db, c);
}

/* ---- delays (conn_delay) ---------------------------------------------
 * The rule: a conn waits for CONN_DELAY_SASL (deadline delay_until_ms:
 * then sasl_delayed() writes the throttled <failure/>) and/or
 * CONN_DELAY_READ (read_paused_ms: then its socket is read again).  It
 * is on w->delayed once while either deadline is set, whichever set it
 * first.  Each reason ends at its own deadline and runs only its own
 * action; the other keeps waiting.  Both due in one turn: the SASL
 * answer is written first, then reading resumes.  Delaying again for a
 * reason moves that reason's deadline.  conn_undelay (close, detach)
 * ends both without their actions.  Only the functions below touch the
 * list; c->delay_list says where the conn is, so that what an action
 * does to another due conn (close it, delay it again) stays correct. */
enum { CONN_DELAY_NOWHERE, CONN_DELAY_LISTED, CONN_DELAY_RUNNING };

static void conn_delay_push(struct conn *c)
{
	c->delayed_next = c->w->delayed;
	c->w->delayed = c;
	c->delay_list = CONN_DELAY_LISTED;
}

void conn_delay(struct conn *c, int64_t until_ms, enum conn_delay_why why)
{
	if (c->closed || c->detached)
		return;
	if (until_ms <= 0)
		until_ms = 1;   /* 0 is "not delayed" */
	if (why == CONN_DELAY_SASL)
		c->delay_until_ms = until_ms;
	else
		c->read_paused_ms = until_ms;
	/* (RUNNING: conn_run_delayed looks at it again, lists it if due
	 * later) */
	if (c->delay_list == CONN_DELAY_NOWHERE)
		conn_delay_push(c);
	if (why == CONN_DELAY_READ)
		conn_update_events(c);
}

void conn_undelay(struct conn *c)
{
	if (c->delay_list == CONN_DELAY_LISTED) {
		for (struct conn **p = &c->w->delayed; *p != NULL;
		     p = &(*p)->delayed_next) {
			if (*p == c) {
				*p = c->delayed_next;
				break;
			}
		}
		c->delayed_next = NULL;
		c->delay_list = CONN_DELAY_NOWHERE;
	}
	c->delay_until_ms = c->read_paused_ms = 0;
}

static int conn_delay_due(const struct conn *c, int64_t now)
{
	return (c->delay_until_ms != 0 && now >= c->delay_until_ms) ||
	       (c->read_paused_ms != 0 && now >= c->read_paused_ms);
}

void conn_run_delayed(struct worker *w, int64_t now)
{
	struct conn *due = NULL, **p = &w->delayed;
	/* taken off the list first: what runs may close others */
	while (*p != NULL) {
		struct conn *c = *p;
		if (c->closed || c->detached || conn_delay_due(c, now)) {
			*p = c->delayed_next;
			c->delayed_next = due;
			c->delay_list = CONN_DELAY_RUNNING;
			due = c;
			continue;
		}
		p = &c->delayed_next;
	}
	while (due != NULL) {
		struct conn *c = due;
		due = c->delayed_next;
		c->delayed_next = NULL;
		c->delay_list = CONN_DELAY_NOWHERE;
		if (c->closed || c->detached) {
			c->delay_until_ms = c->read_paused_ms = 0;
			continue;
		}
		int sasl_due = c->delay_until_ms != 0 &&
			       now >= c->delay_until_ms;
		int read_due = c->read_paused_ms != 0 &&
			       now >= c->read_paused_ms;
		if (sasl_due)
			c->delay_until_ms = 0;
		if (read_due)
			c->read_paused_ms = 0;
		if (c->delay_until_ms != 0 || c->read_paused_ms != 0)
			conn_delay_push(c);     /* the other reason waits */
		if (sasl_due)
			sasl_delayed(c);
		if (read_due && !c->closed && !c->detached) {
			conn_update_events(c);
			conn_read(c);   /* what TLS holds decrypted too */
		}
	}
}

int conn_next_delay(const struct worker *w, int64_t now)
{
	int64_t next = -1;
	for (const struct conn *c = w->delayed; c != NULL; c = c->delayed_next) {
		int64_t t = c->delay_until_ms;
		if (c->read_paused_ms != 0 && (t == 0 || c->read_paused_ms < t))
			t = c->read_paused_ms;
		int64_t d = t - now;
		if (d < 0)
			d = 0;
		if (next < 0 || d < next)
			next = d;
	}
	return (int)next;
}

/* malloc_trim walks the whole heap: it runs once enough parsers were
 * freed to matter, or a while after the last one, not once per turn in
 * which one stream went quiet (that showed as latency spikes). */
#define CONN_TRIM_PARKED 256
#define CONN_TRIM_MS 30000

void conn_timeouts(struct worker *w, int64_t now)
{
	static unsigned untrimmed;
	static int64_t trimmed_at;
	unsigned parked = 0;
	for (struct conn *c = w->conns, *next; c != NULL; c = next) {
		next = c->next;
		if (c->detached)
			continue;       /* its keeper's timer (ext.h tick) */
		if (c->bound && !c->want_close)
			conn_idle(c, now);
		if (!c->want_close && now - c->last_read_ms > CONN_PARK_MS) {
			parked += (unsigned)stream_park(c);
			if (buf_used(&c->out) == 0) {
				buf_shrink(&c->out);
				conn_forget_pieces(c);
			}
		}
		if (c->deadline_ms == 0 || now < c->deadline_ms)
			continue;
		if (c->want_close) {
			conn_close(c);  /* peer never read our goodbye */
			continue;
		}
		log_info("c%u %s: no authentication in time", c->id, c->peer);
		stream_error(c, "connection-timeout", NULL);
	}
	/* Freed parsers are scattered through the heap: give the pages back
	 * so that idle connections cost what they hold, not what they held. */
	if (parked > 0)
		log_debug("%u idle streams parked their parsers", parked);
	untrimmed += parked;
	if (untrimmed >= CONN_TRIM_PARKED ||
	    (untrimmed > 0 && now - trimmed_at >= CONN_TRIM_MS)) {
		malloc_trim(0);
		untrimmed = 0;
		trimmed_at = now;
	}
}

void conn_shutdown_all(struct worker *w)
{
	for (struct conn *c = w->conns, *next; c != NULL; c = next) {
		next = c->next;     /* stream_error may close c */
		/* the links and components carry the remote unavailable
		 * broadcast first (worker.c, s2s_close_links) */
		if (!w->fed_closing && (c->kind == CONN_S2S_OUT ||
					c->kind == CONN_COMPONENT))
			continue;
		if (!c->want_close)
			stream_error(c, "system-shutdown", NULL);
	}
}

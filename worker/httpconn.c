/*
 * httpconn.c - the HTTP front's connections in a worker: accept on the
 * http.port/http.tls_port listeners, non-blocking reads and writes on
 * the worker's epoll loop (OpenSSL with the c2s context for HTTPS),
 * http.max_connections, the request/idle deadlines and a lingering
 * close.  Kept apart from struct conn (conn.c): an HTTP connection has
 * no XML stream, session or routing state, so it is a small struct
 * (about 500 bytes and its buffers) with a simpler life.
 * Failure policy: any I/O or TLS error ends that connection only; each
 * refusal is one info line with the peer's address and the reason.
 */
#include "http.h"
#include "worker.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define HTTPCONN_READ_CHUNK (16u << 10)
#define HTTPCONN_ACCEPT_BATCH 64
/* After the last response of a connection: read (and drop) what the
 * client still sends for this long, so that closing with unread input
 * does not reset the connection before the client read the response. */
#define HTTPCONN_LINGER_MS 2000
/* Reads per wakeup, so that one busy client never holds the loop (and
 * the worker's XMPP traffic): a plain socket is reported again by the
 * level-triggered epoll, a TLS one with input left in OpenSSL goes on
 * the ready list, run again next turn. */
#define HTTPCONN_READS_PER_TURN 4

static struct http_conn *httpconn_dead;    /* closed this turn */
static struct http_conn *httpconn_ready;   /* to run next turn */
static uint32_t httpconn_next_id;

static void httpconn_peer_name(struct http_conn *hc)
{
	char addr[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (hc->peer.ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)&hc->peer;
		inet_ntop(AF_INET, &s->sin_addr, addr, sizeof(addr));
		port = ntohs(s->sin_port);
	} else if (hc->peer.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)&hc->peer;
		inet_ntop(AF_INET6, &s->sin6_addr, addr, sizeof(addr));
		port = ntohs(s->sin6_port);
	}
	snprintf(hc->peer_name, sizeof(hc->peer_name),
		 hc->peer.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u",
		 addr, port);
}

static void httpconn_set_ready(struct http_conn *hc)
{
	if (hc->ready)
		return;
	hc->ready = 1;
	hc->ready_next = httpconn_ready;
	httpconn_ready = hc;
}

static void httpconn_close(struct http_conn *hc)
{
	if (hc->closed)
		return;
	struct worker *w = hc->w;
	hc->closed = 1;
	if (hc->ready) {        /* never run after its free */
		struct http_conn **pp = &httpconn_ready;
		while (*pp != NULL && *pp != hc)
			pp = &(*pp)->ready_next;
		if (*pp != NULL)
			*pp = hc->ready_next;
		hc->ready = 0;
	}
	if (hc->ssl != NULL) {
		if (!hc->tls_handshaking && !hc->tls_failed)
			SSL_shutdown(hc->ssl);
		ERR_clear_error();
		SSL_free(hc->ssl);
		hc->ssl = NULL;
	}
	close(hc->fd);
	hc->fd = -1;
	if (hc->prev != NULL)
		hc->prev->next = hc->next;
	else
		w->http_conns = hc->next;
	if (hc->next != NULL)
		hc->next->prev = hc->prev;
	w->http_nconns--;
	METRIC_SET(metrics_self->http_connections, w->http_nconns);
	hc->next = httpconn_dead;
	hc->prev = NULL;
	httpconn_dead = hc;
	log_debug("h%u %s: closed after %u responses", hc->id, hc->peer_name,
		  hc->requests);
}

void httpconn_reap(struct worker *w)
{
	(void)w;
	while (httpconn_dead != NULL) {
		struct http_conn *hc = httpconn_dead;
		httpconn_dead = hc->next;
		http_conn_free(hc);
		free(hc);
	}
}

static void httpconn_events(struct http_conn *hc)
{
	if (hc->closed)
		return;
	uint32_t want = 0;
	int reading = hc->lingering ||
		(!hc->want_close && buf_used(&hc->in) == 0 &&
		 buf_used(&hc->out) < HTTP_OUT_HIGH);
	if (hc->tls_handshaking || reading)
		want |= EPOLLIN | EPOLLRDHUP;
	if (hc->tls_want_write || buf_used(&hc->out) > 0)
		want |= EPOLLOUT;
	if ((int)want == hc->events)
		return;
	struct epoll_event ev = { .events = want };
	ev.data.u64 = (uint64_t)(uintptr_t)hc | HTTPCONN_EV_TAG;
	if (epoll_ctl(hc->w->epfd, EPOLL_CTL_MOD, hc->fd, &ev) < 0) {
		log_error("h%u: epoll_ctl() failed: %m", hc->id);
		httpconn_close(hc);
		return;
	}
	hc->events = (int)want;
}

/* An OpenSSL result: 0 retry later, -1 the connection is done. */
static int httpconn_tls_retry(struct http_conn *hc, int ret, const char *what)
{
	int err = SSL_get_error(hc->ssl, ret);
	hc->tls_want_write = err == SSL_ERROR_WANT_WRITE;
	if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
		return 0;
	if (err == SSL_ERROR_SSL || err == SSL_ERROR_SYSCALL)
		hc->tls_failed = 1;
	if (err == SSL_ERROR_SSL && ERR_GET_REASON(ERR_peek_error()) !=
	    SSL_R_UNEXPECTED_EOF_WHILE_READING) {
		char e[256];
		ERR_error_string_n(ERR_peek_error(), e, sizeof(e));
		log_info("h%u %s: TLS %s failed: %s", hc->id, hc->peer_name,
			 what, e);
	}
	ERR_clear_error();
	return -1;
}

/* >0 bytes read into in, 0 would block, -1 end of input or error. */
static ssize_t httpconn_read(struct http_conn *hc, char *data, size_t len)
{
	if (hc->ssl != NULL) {
		size_t n = 0;
		if (SSL_read_ex(hc->ssl, data, len, &n) == 1)
			return (ssize_t)n;
		return httpconn_tls_retry(hc, 0, "read") == 0 ? 0 : -1;
	}
	ssize_t n = read(hc->fd, data, len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	return n > 0 ? n : -1;
}

/* Write what out holds: 0 (maybe partly), -1 failed. */
static int httpconn_flush(struct http_conn *hc)
{
	while (buf_used(&hc->out) > 0) {
		if (hc->ssl != NULL) {
			size_t n = 0;
			if (SSL_write_ex(hc->ssl, buf_head(&hc->out),
					 buf_used(&hc->out), &n) != 1)
				return httpconn_tls_retry(hc, 0, "write");
			buf_consume(&hc->out, n);
			continue;
		}
		ssize_t n = buf_write_fd(&hc->out, hc->fd);
		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
	}
	buf_shrink(&hc->out);
	return 0;
}

/* Everything answered: stop writing, read until EOF or the timer. */
static void httpconn_linger(struct http_conn *hc)
{
	if (hc->peer_eof) {
		httpconn_close(hc);
		return;
	}
	if (hc->ssl != NULL && !hc->tls_failed) {
		SSL_shutdown(hc->ssl);      /* our close_notify */
		ERR_clear_error();
	}
	shutdown(hc->fd, SHUT_WR);
	hc->lingering = 1;
	hc->deadline_ms = hc->w->now_ms + HTTPCONN_LINGER_MS;
}

/* Lingering: drop what comes; 1 when the client is gone. */
static int httpconn_drain(struct http_conn *hc)
{
	char data[4096];
	for (int i = 0; i < HTTPCONN_READS_PER_TURN; i++) {
		ssize_t n;
		if (hc->ssl != NULL && !hc->tls_failed) {
			n = httpconn_read(hc, data, sizeof(data));
			if (n == 0)
				return 0;       /* would block */
		} else {
			n = read(hc->fd, data, sizeof(data));
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				return 0;
		}
		if (n <= 0)
			return 1;
	}
	return 0;
}

/* Read into in (empty): 1 bytes came, 0 would block, -1 closed. */
static int httpconn_fill(struct http_conn *hc)
{
	char data[HTTPCONN_READ_CHUNK];
	ssize_t n = httpconn_read(hc, data, sizeof(data));
	if (n < 0) {
		if (hc->in_request)
			log_debug("h%u %s: closed in the middle of a request",
				  hc->id, hc->peer_name);
		hc->peer_eof = 1;
		hc->want_close = 1;
		return -1;
	}
	if (n == 0)
		return 0;
	if (buf_append(&hc->in, data, (size_t)n) < 0) {
		log_error("h%u %s: no memory for input: closing", hc->id,
			  hc->peer_name);
		httpconn_close(hc);
		return -1;
	}
	return 1;
}

/* The request timer runs from a request's first byte; the idle timer
 * after each answer. */
static void httpconn_deadline(struct http_conn *hc)
{
	const struct config *cfg = hc->w->cfg;
	if (hc->lingering || hc->want_close)
		return;
	if (hc->in_request && !hc->timing_request) {
		hc->timing_request = 1;
		hc->deadline_ms = hc->w->now_ms + (int64_t)cfg->http_request_timeout;
	} else if (!hc->in_request && hc->requests != hc->requests_seen) {
		hc->timing_request = 0;
		hc->deadline_ms = hc->w->now_ms + (int64_t)cfg->http_idle_timeout;
	}
	hc->requests_seen = hc->requests;
}

/* Do all that can be done now: handshake, write, parse and answer,
 * read; stop when waiting for the socket. */
static void httpconn_run(struct http_conn *hc)
{
	for (int reads = 0; !hc->closed;) {
		if (hc->tls_handshaking) {
			int r = SSL_do_handshake(hc->ssl);
			if (r != 1) {
				if (httpconn_tls_retry(hc, r, "handshake") < 0)
					httpconn_close(hc);
				break;
			}
			hc->tls_handshaking = 0;
			hc->tls_want_write = 0;
			log_debug("h%u %s: %s %s", hc->id, hc->peer_name,
				  SSL_get_version(hc->ssl),
				  SSL_get_cipher_name(hc->ssl));
		}
		if (httpconn_flush(hc) < 0) {
			httpconn_close(hc);
			break;
		}
		if (hc->lingering) {
			if (httpconn_drain(hc))
				httpconn_close(hc);
			break;
		}
		if (hc->want_close) {
			if (buf_used(&hc->out) == 0)
				httpconn_linger(hc);
			else
				break;      /* wait for EPOLLOUT */
			continue;
		}
		if (buf_used(&hc->out) >= HTTP_OUT_HIGH)
			break;              /* the client reads first */
		if (buf_used(&hc->in) > 0) {
			http_process(hc);
			httpconn_deadline(hc);
			continue;
		}
		if (reads >= HTTPCONN_READS_PER_TURN) {
			if (hc->ssl != NULL && (SSL_pending(hc->ssl) > 0 ||
						SSL_has_pending(hc->ssl)))
				httpconn_set_ready(hc);
			break;
		}
		reads++;
		if (httpconn_fill(hc) == 0)
			break;
	}
	httpconn_events(hc);
}

int httpconn_run_ready(struct worker *w)
{
	(void)w;
	struct http_conn *list = httpconn_ready;
	httpconn_ready = NULL;
	for (struct http_conn *hc = list; hc != NULL; hc = hc->ready_next)
		hc->ready = 0;
	while (list != NULL) {
		struct http_conn *hc = list;
		list = hc->ready_next;
		httpconn_run(hc);
	}
	return httpconn_ready != NULL;
}

void httpconn_handle(struct http_conn *hc, uint32_t events)
{
	if (hc->closed)
		return;
	if (events & EPOLLERR) {
		httpconn_close(hc);
		return;
	}
	httpconn_run(hc);
}

/* Each worker takes its share of http.max_connections, rounded up. */
static unsigned httpconn_limit(const struct worker *w)
{
	unsigned n = w->nworkers > 0 ? w->nworkers : 1;
	return (w->cfg->http_max_connections + n - 1) / n;
}

static int httpconn_accept_one(struct worker *w, int lfd, int tls)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd = worker_accept(w, lfd, &ss, &len);
	if (fd < 0)
		return -1;
	unsigned limit = httpconn_limit(w);
	struct http_conn *hc = calloc(1, sizeof(*hc));
	if (hc == NULL) {
		log_error("new HTTP connection dropped: out of memory");
		close(fd);
		return 0;
	}
	hc->w = w;
	hc->fd = fd;
	hc->tls = tls;
	hc->peer = ss;
	do
		hc->id = ++httpconn_next_id;
	while (hc->id == 0);
	httpconn_peer_name(hc);
	/* Past the limit a connection is answered 503 (up to as many
	 * again, each for one request); past twice the limit, closed. */
	if (w->http_nconns >= 2 * limit) {
		log_info("h%u %s: refused: %u HTTP connections open in this "
			 "worker (http.max_connections = %u over %u workers)",
			 hc->id, hc->peer_name, w->http_nconns,
			 w->cfg->http_max_connections, w->nworkers);
		close(fd);
		free(hc);
		return 0;
	}
	hc->over_limit = w->http_nconns >= limit;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	http_conn_init(hc);
	hc->events = EPOLLIN | EPOLLRDHUP;
	struct epoll_event ev = { .events = (uint32_t)hc->events };
	ev.data.u64 = (uint64_t)(uintptr_t)hc | HTTPCONN_EV_TAG;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		log_error("new HTTP connection dropped: %m");
		http_conn_free(hc);
		free(hc);
		close(fd);
		return 0;
	}
	hc->next = w->http_conns;
	if (w->http_conns != NULL)
		w->http_conns->prev = hc;
	w->http_conns = hc;
	w->http_nconns++;
	METRIC_SET(metrics_self->http_connections, w->http_nconns);
	/* the TLS handshake and the first request within request_timeout */
	hc->timing_request = 1;
	hc->deadline_ms = time_now_ms() + (int64_t)w->cfg->http_request_timeout;
	log_debug("h%u %s: connected%s", hc->id, hc->peer_name,
		  tls ? " (TLS)" : "");
	if (tls) {
		if (w->tls == NULL || (hc->ssl = SSL_new(w->tls)) == NULL ||
		    SSL_set_fd(hc->ssl, fd) != 1) {
			log_error("h%u %s: no TLS context: closing", hc->id,
				  hc->peer_name);
			ERR_clear_error();
			httpconn_close(hc);
			return 0;
		}
		/* no app data: tls.c's keylog callback ignores this SSL */
		SSL_set_accept_state(hc->ssl);
		hc->tls_handshaking = 1;
	}
	return 0;
}

void httpconn_accept(struct worker *w, int lfd, int tls)
{
	for (int i = 0; i < HTTPCONN_ACCEPT_BATCH && !w->accept_paused; i++)
		if (httpconn_accept_one(w, lfd, tls) < 0)
			return;
}

static void httpconn_expire(struct http_conn *hc)
{
	if (hc->lingering || hc->want_close) {
		/* the client does not read what we answered, or lingers */
		httpconn_close(hc);
	} else if (hc->tls_handshaking) {
		log_info("h%u %s: TLS handshake not done within "
			 "http.request_timeout: closed", hc->id, hc->peer_name);
		httpconn_close(hc);
	} else if (hc->in_request || buf_used(&hc->in) > 0) {
		http_refuse(hc, 408, "request not complete within "
			    "http.request_timeout");
		httpconn_run(hc);
		hc->deadline_ms = hc->w->now_ms + HTTPCONN_LINGER_MS;
	} else {
		log_debug("h%u %s: idle: closed", hc->id, hc->peer_name);
		httpconn_close(hc);
	}
}

void httpconn_timeouts(struct worker *w, int64_t now_ms)
{
	struct http_conn *hc = w->http_conns, *next;
	for (; hc != NULL; hc = next) {
		next = hc->next;
		if (hc->deadline_ms != 0 && now_ms >= hc->deadline_ms)
			httpconn_expire(hc);
	}
}

void httpconn_close_all(struct worker *w)
{
	while (w->http_conns != NULL)
		httpconn_close(w->http_conns);
}

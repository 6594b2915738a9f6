/*
 * http.h - the HTTP/1.1 front of the workers: one route registry that
 * the parts owning an endpoint fill at worker start (http_route_add),
 * and the request state machine over libhttp-parser (http.c) that the
 * connection layer (httpconn.c: sockets, TLS, timeouts, limits on
 * connections) feeds.  Handlers run synchronously on the worker's loop:
 * they must not block.  Failure policy: a bad request gets its status
 * code (400, 405, 413, 414, 431, 505...), a one-line reason at info and,
 * for anything the parser cannot resume after, the connection closes;
 * nothing a client sends touches another connection.
 */
#ifndef XMPPD_HTTP_H
#define XMPPD_HTTP_H

/* http_parser.h names its method enum `http_method` too: here it is
 * `enum http_parser_method` (HTTP_GET...), ours is the route API's. */
#define http_method http_parser_method
#include <http_parser.h>
#undef http_method
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "buf.h"

struct worker;
typedef struct ssl_st SSL;

struct http_request {
	const char *method;     /* "GET", ... */
	const char *path;       /* without the query, as sent (no decoding) */
	const char *query;      /* after '?', "" if none */
	const char *body;       /* body_len bytes (chunked: decoded) */
	size_t body_len;
	int tls;                /* came over HTTPS */
	const struct sockaddr_storage *peer;
	/* private: the headers as name\0value\0 pairs (http_header) */
	const char *hdrs;
	unsigned nhdrs;
};

/* The value of a request header (name case-insensitive); NULL if
 * absent.  A repeated header gives its first value. */
const char *http_header(const struct http_request *req, const char *name);

struct http_response {
	int status;             /* default 200 */
	const char *content_type;   /* NULL: none sent (default text/plain
				     * for error pages of the front) */
	struct buf body;
	/* extra header lines "Name: value\r\n" (http_response_header) */
	struct buf headers;
	int close;              /* the handler wants the connection closed */
};

/* Add a header line to the response.  Dropped and logged at error:
 * a name that is not a token, a value with a control character but
 * HTAB (CR/LF would split the response), and the headers the front
 * writes itself (Content-Length, Transfer-Encoding, Connection,
 * Keep-Alive, Trailer, Date, Server, Content-Type: use content_type and
 * close).  A content_type with a control character gives a 500. */
void http_response_header(struct http_response *resp, const char *name,
			  const char *value);

typedef void http_handler_fn(struct worker *w, const struct http_request *req,
			     struct http_response *resp);

enum http_method {
	HTTP_M_GET = 1, HTTP_M_HEAD = 2, HTTP_M_POST = 4, HTTP_M_PUT = 8,
	HTTP_M_DELETE = 16, HTTP_M_OPTIONS = 32,
};

enum http_route_flags {
	HTTP_ROUTE_ADMIN = 1,   /* only peers in http.admin_addresses, else 403 */
	HTTP_ROUTE_PREFIX = 2,  /* path and everything under "path/" */
};

/* Register a route at worker start-up (http_init calls the owners'
 * registration functions); HEAD is served for GET routes, with the
 * GET's headers and no body.  0, or -1 when the table is full or the
 * path is taken (logged at error: our own bug). */
int http_route_add(const char *path, unsigned methods, unsigned flags,
		   http_handler_fn *fn);

/* Worker start-up: fill the route table (once per process). */
void http_init(struct worker *w);

/* ---- the state of one HTTP connection (httpconn.c owns the socket) ---- */

struct http_conn {
	struct http_conn *next, *prev;  /* worker's HTTP connection list */
	struct worker *w;
	int fd;                 /* -1 in the fuzz harness */
	uint32_t id;
	int tls;                /* accepted on the TLS port */
	SSL *ssl;
	int tls_handshaking;
	int tls_want_write;
	int tls_failed;         /* fatal TLS error: no close_notify */
	http_parser parser;
	struct buf in;          /* read, not yet parsed (pipelining) */
	struct buf head;        /* url\0 name\0value\0 ... of this request */
	struct buf body;        /* this request's body */
	struct buf out;         /* responses not yet written */
	int field_open;         /* 1 in a header name, 2 in a value */
	int line_done;          /* the request line has ended */
	int head_done;          /* headers complete: what follows is body
				 * (and trailers, which are dropped) */
	int scan;               /* http_scan_head's state in the head */
	unsigned nhdrs;
	size_t url_len;
	uint64_t head_bytes;    /* request line and headers (http.c) */
	int error_status;       /* a limit or bad input: answer this, close */
	const char *error_reason;
	int complete;           /* a whole request parsed, to answer */
	int send_continue;      /* head asked for 100 Continue: written once
				   the bytes parsed are known to be good */
	int in_request;         /* bytes of a request seen, not complete */
	int want_close;         /* close once out is written */
	int lingering;          /* output done, reading until EOF or timer */
	int closed;
	int over_limit;         /* past http.max_connections: 503 */
	int peer_eof;           /* the client shut its side down */
	int ready;              /* on httpconn.c's list to run next turn */
	struct http_conn *ready_next;
	int timing_request;     /* deadline_ms is http.request_timeout's */
	unsigned requests_seen; /* `requests` when the deadline was set */
	int events;             /* epoll interest set */
	int64_t deadline_ms;    /* request, idle or linger deadline */
	unsigned requests;      /* answered on this connection */
	struct sockaddr_storage peer;
	char peer_name[64];     /* "address:port" for the log */
};

/* Most response bytes kept unwritten before parsing waits for the
 * client to read (pipelined requests stay in `in` meanwhile). */
#define HTTP_OUT_HIGH (64u << 10)

/* Set up hc (zeroed by the caller, w, fd, peer and tls set). */
void http_conn_init(struct http_conn *hc);
void http_conn_free(struct http_conn *hc);
/* Parse what is in hc->in and answer each whole request in order into
 * hc->out, while hc->out stays under HTTP_OUT_HIGH; stops at the first
 * request that ends the connection (want_close set). */
void http_process(struct http_conn *hc);
/* Answer status with a short text body, Connection: close, and log
 * reason at info (the front's own refusals: 408, 503, ...). */
void http_refuse(struct http_conn *hc, int status, const char *reason);

/* ---- httpconn.c: sockets, TLS, timeouts, http.max_connections ---- */

/* epoll data of an HTTP connection: its address with the low bit set
 * (struct conn addresses have it clear). */
#define HTTPCONN_EV_TAG 1u

void httpconn_accept(struct worker *w, int lfd, int tls);
void httpconn_handle(struct http_conn *hc, uint32_t events);
/* Once a second: request, idle and linger deadlines. */
void httpconn_timeouts(struct worker *w, int64_t now_ms);
/* The worker stops: every HTTP connection closes now. */
void httpconn_close_all(struct worker *w);
/* Each loop turn, after the events: run the HTTPS connections that
 * stopped at their share of reads with input left in OpenSSL (which
 * epoll does not see).  1 if some are left for the next turn: the
 * loop must not wait then. */
int httpconn_run_ready(struct worker *w);
/* End of a loop turn: free the connections closed during it. */
void httpconn_reap(struct worker *w);

#endif

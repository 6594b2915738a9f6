/*
 * http.c - the HTTP/1.1 front's request side: the route registry, the
 * request state machine over libhttp-parser (nodejs http-parser 2.9:
 * incremental and callback-driven, so bytes go in as they arrive and
 * nothing waits), dispatch and response framing.  No sockets here
 * (httpconn.c has them), so the fuzz harness runs this file as it is.
 *
 * Requests are answered in order as each one completes (pipelining):
 * the parser pauses at the end of every request, the handler runs, the
 * response is appended to out, and parsing resumes while out stays
 * under HTTP_OUT_HIGH.  Chunked bodies are accepted and decoded into
 * the http.max_body_size limit.  Every response carries Date, Server
 * and Content-Length (but 1xx/204), and Connection: close when the
 * connection ends after it.  Failure policy: see http.h.
 */
#include "http.h"
#include "worker.h"
#include "cidr.h"
#include "metrics.h"
#include "log.h"
#include "util.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "dev"
#endif
#define HTTP_SERVER "xmppd/" PACKAGE_VERSION
/* A handler's response body and extra headers are bounded. */
#define HTTP_MAX_RESPONSE (64u << 20)
#define HTTP_MAX_RESPONSE_HEADERS (16u << 10)

/* ---- routes ------------------------------------------------------------ */

#define HTTP_MAX_ROUTES 32

struct http_route {
	const char *path;
	size_t len;
	unsigned methods;       /* enum http_method */
	unsigned flags;         /* enum http_route_flags */
	http_handler_fn *fn;
};

static struct http_route http_routes[HTTP_MAX_ROUTES];
static unsigned http_nroutes;

int http_route_add(const char *path, unsigned methods, unsigned flags,
		   http_handler_fn *fn)
{
	if (path[0] != '/' || fn == NULL || methods == 0) {
		log_error("http route '%s': bad registration", path);
		return -1;
	}
	for (unsigned i = 0; i < http_nroutes; i++) {
		if (strcmp(http_routes[i].path, path) == 0) {
			log_error("http route '%s' registered twice", path);
			return -1;
		}
	}
	if (http_nroutes == HTTP_MAX_ROUTES) {
		log_error("http route '%s': table full (%d)", path,
			  HTTP_MAX_ROUTES);
		return -1;
	}
	if (methods & HTTP_M_GET)
		methods |= HTTP_M_HEAD;
	http_routes[http_nroutes++] = (struct http_route){
		path, strlen(path), methods, flags, fn };
	return 0;
}

/* The route for path: an exact one, else the longest prefix route. */
static const struct http_route *http_route_find(const char *path)
{
	const struct http_route *best = NULL;
	for (unsigned i = 0; i < http_nroutes; i++) {
		const struct http_route *r = &http_routes[i];
		if (strcmp(path, r->path) == 0)
			return r;
		if (!(r->flags & HTTP_ROUTE_PREFIX) ||
		    strncmp(path, r->path, r->len) != 0)
			continue;
		if (r->path[r->len - 1] != '/' && path[r->len] != '/')
			continue;
		if (best == NULL || r->len > best->len)
			best = r;
	}
	return best;
}

/* GET /health/live: the worker's loop answers (liveness, for a load
 * balancer or a supervisor: no database, no other worker involved).
 * Open to any peer of the listener, like /health: it tells nothing. */
static void http_live(struct worker *w, const struct http_request *req,
		      struct http_response *resp)
{
	(void)w; (void)req;
	resp->content_type = "text/plain; charset=utf-8";
	buf_append(&resp->body, "ok\n", 3);
}

static void http_routes_front(void)
{
	http_route_add("/health/live", HTTP_M_GET, 0, http_live);
}

/*
 * THE PLACE WHERE ROUTES ARE REGISTERED: each part of xmppd that owns
 * HTTP endpoints provides a `void <module>_http_routes(void)` that calls
 * http_route_add(), and adds it to this list (metrics.c: /metrics and
 * /health; later WebSocket, BOSH, upload, host-meta).
 */
static void (*const http_route_owners[])(void) = {
	http_routes_front,
	metrics_http_routes,
};

void http_init(struct worker *w)
{
	(void)w;
	if (http_nroutes > 0)
		return;         /* once per process (a fuzz run calls again) */
	for (size_t i = 0; i < ARRAY_SIZE(http_route_owners); i++)
		http_route_owners[i]();
}

/* ---- requests and responses -------------------------------------------- */

const char *http_header(const struct http_request *req, const char *name)
{
	const char *p = req->hdrs;
	for (unsigned i = 0; i < req->nhdrs; i++) {
		const char *value = p + strlen(p) + 1;
		if (strcasecmp(p, name) == 0)
			return value;
		p = value + strlen(value) + 1;
	}
	return NULL;
}

/* RFC 9110 5.6.2: a header name is a token. */
static int http_token_ok(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) &&
		    strchr("!#$%&'*+-.^_`|~", *s) == NULL)
			return 0;
	return 1;
}

/* RFC 9110 5.5: a value has no control character but HTAB (a CR or
 * LF would end the line and let the rest pass for headers or body). */
static int http_value_ok(const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return 0;
	}
	return 1;
}

/* What http_write says itself (framing, the connection's fate): a
 * second one from a handler would let a client or proxy read the
 * response's length or the connection otherwise. */
static const char *const http_own_headers[] = {
	"Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive",
	"Trailer", "Date", "Server", "Content-Type",
};

void http_response_header(struct http_response *resp, const char *name,
			  const char *value)
{
	if (!http_token_ok(name) || !http_value_ok(value)) {
		log_error("http: header '%s' dropped: not a token, or a "
			  "control character in its value", name);
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(http_own_headers); i++) {
		if (strcasecmp(name, http_own_headers[i]) == 0) {
			log_error("http: header '%s' dropped: the front writes "
				  "it (content_type, close)", name);
			return;
		}
	}
	if (buf_appendf(&resp->headers, "%s: %s\r\n", name, value) < 0)
		log_error("http: header '%s' dropped: too many headers", name);
}

static const char *http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 417: return "Expectation Failed";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Status";
	}
}

/* RFC 9110 5.6.7 IMF-fixdate, formatted once per second. */
static const char *http_date(void)
{
	static char text[40];
	static time_t last;
	time_t now = time(NULL);
	if (now != last || text[0] == '\0') {
		static const char days[][4] = { "Sun", "Mon", "Tue", "Wed",
			"Thu", "Fri", "Sat" };
		static const char months[][4] = { "Jan", "Feb", "Mar", "Apr",
			"May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
		struct tm tm;
		gmtime_r(&now, &tm);
		snprintf(text, sizeof(text), "%s, %02d %s %04d %02d:%02d:%02d GMT",
			 days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
			 tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
		last = now;
	}
	return text;
}

/* What goes around one response. */
struct http_framing {
	int head_only;          /* HEAD: headers of the GET, no body */
	int close;              /* Connection: close, the connection ends */
	int keep_alive_10;      /* HTTP/1.0 keep-alive: say it */
};

static void http_write(struct http_conn *hc, int status, const char *ctype,
		       const struct buf *headers, const char *body,
		       size_t len, const struct http_framing *f)
{
	struct buf *o = &hc->out;
	size_t at = o->len;
	int r = buf_appendf(o, "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: %s\r\n",
			    status, http_reason(status), http_date(),
			    HTTP_SERVER);
	if (r == 0 && ctype != NULL)
		r = buf_appendf(o, "Content-Type: %s\r\n", ctype);
	/* RFC 9110 6.4.1, 8.6: 204 and 304 have no body and here no
	 * Content-Length; every other response has both */
	int bodyless = status == 204 || status == 304;
	if (r == 0 && !bodyless)
		r = buf_appendf(o, "Content-Length: %zu\r\n", len);
	if (r == 0 && f->close)
		r = buf_appendf(o, "Connection: close\r\n");
	else if (r == 0 && f->keep_alive_10)
		r = buf_appendf(o, "Connection: keep-alive\r\n");
	if (r == 0 && headers != NULL && buf_used(headers) > 0)
		r = buf_append(o, buf_head(headers), buf_used(headers));
	if (r == 0)
		r = buf_append(o, "\r\n", 2);
	if (r == 0 && !f->head_only && !bodyless && len > 0)
		r = buf_append(o, body, len);
	if (r < 0) {
		o->len = at;
		log_error("h%u %s: no memory for a %zu-byte response: closing",
			  hc->id, hc->peer_name, len);
		hc->want_close = 1;
		return;
	}
	if (f->close)
		hc->want_close = 1;
	hc->requests++;
	METRIC_INC(metrics_self->http_responses[metrics_http_status(status)]);
}

/* An error page: "404 Not Found\n". */
static void http_error_page(struct http_conn *hc, int status,
			    const struct buf *headers,
			    const struct http_framing *f)
{
	char body[80];
	int n = snprintf(body, sizeof(body), "%d %s\n", status,
			 http_reason(status));
	http_write(hc, status, "text/plain; charset=utf-8", headers, body,
		   (size_t)n, f);
}

void http_refuse(struct http_conn *hc, int status, const char *reason)
{
	if (hc->want_close || hc->closed)
		return;
	log_info("h%u %s: %d: %s", hc->id, hc->peer_name, status, reason);
	struct http_framing f = { .close = 1 };
	http_error_page(hc, status, NULL, &f);
	hc->want_close = 1;
	hc->in_request = 0;
}

/* ---- the parser's callbacks ------------------------------------------- */

static struct http_conn *http_of(http_parser *p)
{
	return p->data;
}

/* A limit or bad input found in a callback: answered once parsing stops. */
static int http_fail(struct http_conn *hc, int status, const char *reason)
{
	if (hc->error_status == 0) {
		hc->error_status = status;
		hc->error_reason = reason;
	}
	return -1;
}

static int http_on_message_begin(http_parser *p)
{
	struct http_conn *hc = http_of(p);
	hc->head.off = hc->head.len = 0;
	hc->body.off = hc->body.len = 0;
	hc->nhdrs = 0;
	hc->url_len = 0;
	hc->head_bytes = 16;
	hc->field_open = 0;
	hc->line_done = 0;
	hc->head_done = 0;
	hc->in_request = 1;
	return 0;
}

/* head_bytes counts the request as sent: the request line (with 16
 * for the method, spaces, version and CRLF), each header's name and
 * value with 4 for ": " and CRLF. */
static int http_head_add(struct http_conn *hc, const char *data, size_t len)
{
	uint64_t max = hc->w->cfg->http_max_header_size;
	hc->head_bytes += len;
	if (hc->head_bytes > max || buf_append(&hc->head, data, len) < 0)
		return http_fail(hc, 431, "request headers over "
				 "http.max_header_size");
	return 0;
}

/* Whatever limit the target passes, it is the target that is too
 * long: 414 (the same answer however the bytes came in). */
static int http_on_url(http_parser *p, const char *at, size_t len)
{
	struct http_conn *hc = http_of(p);
	hc->url_len += len;
	hc->head_bytes += len;
	if (hc->url_len > hc->w->cfg->http_max_url_size ||
	    hc->head_bytes > hc->w->cfg->http_max_header_size ||
	    buf_append(&hc->head, at, len) < 0)
		return http_fail(hc, 414, "request target over "
				 "http.max_url_size");
	return 0;
}

/* Trailer fields of a chunked body (the parser reports them as more
 * headers) are counted against http.max_header_size and dropped
 * (RFC 9110 6.5.1): nothing here reads them, and merged into the head
 * they would shift the path and query stored after it. */
static int http_trailer(struct http_conn *hc, size_t len)
{
	hc->head_bytes += len;
	if (hc->head_bytes > hc->w->cfg->http_max_header_size)
		return http_fail(hc, 431, "request trailers over "
				 "http.max_header_size");
	return 0;
}

static int http_on_header_field(http_parser *p, const char *at, size_t len)
{
	struct http_conn *hc = http_of(p);
	if (hc->head_done) {
		/* a name's line costs 4 more once, however the reads split
		 * it (the parser calls back once per piece) */
		size_t line = hc->field_open != 1 ? 4 : 0;
		hc->field_open = 1;
		return http_trailer(hc, len + line);
	}
	/* the parser (not built strict) takes SP as a name character:
	 * "Transfer-Encoding : chunked" or a line starting with SP would
	 * be one header here and another or none in a proxy in front
	 * (RFC 9112 5.1: 400) */
	if (memchr(at, ' ', len) != NULL || memchr(at, '\t', len) != NULL)
		return http_fail(hc, 400, "whitespace in or before a header "
				 "name");
	if (hc->field_open != 1) {      /* ends the url or the last value */
		hc->head_bytes += 3;
		if (http_head_add(hc, "", 1) < 0)
			return -1;
		hc->field_open = 1;
	}
	return http_head_add(hc, at, len);
}

static int http_on_header_value(http_parser *p, const char *at, size_t len)
{
	struct http_conn *hc = http_of(p);
	if (hc->head_done) {
		hc->field_open = 2;
		return http_trailer(hc, len);
	}
	if (hc->field_open == 1) {
		if (http_head_add(hc, "", 1) < 0)
			return -1;
		hc->field_open = 2;
		hc->nhdrs++;
	}
	return http_head_add(hc, at, len);
}

/* head: url\0 (name\0value\0)* then path\0query\0 once complete. */
static const char *http_head_hdrs(const struct http_conn *hc)
{
	return buf_head(&hc->head) + strlen(buf_head(&hc->head)) + 1;
}

static const char *http_head_path(const struct http_conn *hc)
{
	const char *p = http_head_hdrs(hc);
	for (unsigned i = 0; i < 2 * hc->nhdrs; i++)
		p += strlen(p) + 1;
	return p;
}

/* Split the request target into path\0query\0 after the headers. */
static int http_target(struct http_conn *hc)
{
	const char *url = buf_head(&hc->head);
	size_t len = strlen(url);
	struct http_parser_url u;
	const char *path = "*", *query = "";
	size_t plen = 1, qlen = 0;

	if (len != hc->url_len)
		return http_fail(hc, 400, "NUL byte in the request target");
	if (strcmp(url, "*") != 0) {
		http_parser_url_init(&u);
		if (http_parser_parse_url(url, len, 0, &u) != 0)
			return http_fail(hc, 400, "bad request target");
		path = "/";
		plen = 1;
		if (u.field_set & (1 << UF_PATH)) {
			path = url + u.field_data[UF_PATH].off;
			plen = u.field_data[UF_PATH].len;
		}
		if (u.field_set & (1 << UF_QUERY)) {
			query = url + u.field_data[UF_QUERY].off;
			qlen = u.field_data[UF_QUERY].len;
		}
	}
	/* copied through a temporary: appending may move the head */
	char *target = malloc(plen + qlen + 2);
	if (target == NULL)
		return http_fail(hc, 503, "no memory");
	memcpy(target, path, plen);
	target[plen] = '\0';
	memcpy(target + plen + 1, query, qlen);
	target[plen + 1 + qlen] = '\0';
	int r = buf_append(&hc->head, target, plen + qlen + 2);
	free(target);
	if (r < 0)
		return http_fail(hc, 431, "request headers over "
				 "http.max_header_size");
	return 0;
}

static int http_on_headers_complete(http_parser *p)
{
	struct http_conn *hc = http_of(p);
	/* end the url (no header) or the last value; the blank line */
	hc->head_bytes += 1;
	if (http_head_add(hc, "", 1) < 0)
		return -1;
	hc->head_done = 1;
	if (p->http_major != 1)
		return http_fail(hc, 505, "HTTP major version not 1");
	if (hc->over_limit)
		return http_fail(hc, 503, "over http.max_connections");
	if (http_target(hc) < 0)
		return -1;
	if (!(p->flags & F_CHUNKED) && p->content_length != ULLONG_MAX &&
	    p->content_length > hc->w->cfg->http_max_body_size)
		return http_fail(hc, 413, "Content-Length over "
				 "http.max_body_size");
	struct http_request req = { .hdrs = http_head_hdrs(hc),
				    .nhdrs = hc->nhdrs };
	/* RFC 9112 3.2: an HTTP/1.1 request has one Host, an HTTP/1.0
	 * one at most; else 400 (which Host a proxy in front and we would
	 * each take is not to be guessed) */
	unsigned hosts = 0;
	const char *h = req.hdrs;
	for (unsigned i = 0; i < req.nhdrs; i++) {
		const char *value = h + strlen(h) + 1;
		hosts += strcasecmp(h, "Host") == 0;
		h = value + strlen(value) + 1;
	}
	if (hosts > 1 || (hosts == 0 && p->http_minor >= 1))
		return http_fail(hc, 400, hosts > 1 ? "more than one Host "
				 "header" : "HTTP/1.1 request without Host");
	const char *expect = http_header(&req, "Expect");
	if (expect != NULL) {
		if (strcasecmp(expect, "100-continue") != 0)
			return http_fail(hc, 417, "Expect other than "
					 "100-continue");
		/* RFC 9110 10.1.1: the client waits for this to send;
		 * written by http_process after the head's own line check,
		 * so that a folded line in the same read is refused alone,
		 * as it is when the reads split before it */
		int body = (p->flags & F_CHUNKED) ||
			   (p->content_length != ULLONG_MAX &&
			    p->content_length > 0);
		hc->send_continue = body && p->http_minor >= 1;
	}
	return 0;
}

static int http_on_body(http_parser *p, const char *at, size_t len)
{
	struct http_conn *hc = http_of(p);
	if (buf_used(&hc->body) + len > hc->w->cfg->http_max_body_size ||
	    buf_append(&hc->body, at, len) < 0)
		return http_fail(hc, 413, "request body over "
				 "http.max_body_size");
	return 0;
}

static int http_on_message_complete(http_parser *p)
{
	struct http_conn *hc = http_of(p);
	hc->complete = 1;
	hc->in_request = 0;
	http_parser_pause(p, 1);        /* answer it before the next one */
	return 0;
}

static const http_parser_settings http_settings = {
	.on_message_begin = http_on_message_begin,
	.on_url = http_on_url,
	.on_header_field = http_on_header_field,
	.on_header_value = http_on_header_value,
	.on_headers_complete = http_on_headers_complete,
	.on_body = http_on_body,
	.on_message_complete = http_on_message_complete,
};

/* ---- dispatch ----------------------------------------------------------- */

static unsigned http_method_bit(enum http_parser_method m)
{
	switch (m) {
	case HTTP_GET: return HTTP_M_GET;
	case HTTP_HEAD: return HTTP_M_HEAD;
	case HTTP_POST: return HTTP_M_POST;
	case HTTP_PUT: return HTTP_M_PUT;
	case HTTP_DELETE: return HTTP_M_DELETE;
	case HTTP_OPTIONS: return HTTP_M_OPTIONS;
	default: return 0;
	}
}

/* "Allow: GET, HEAD\r\n" for a route. */
static void http_allow(const struct http_route *r, struct buf *b)
{
	static const char *const names[] = { "GET", "HEAD", "POST", "PUT",
		"DELETE", "OPTIONS" };
	buf_appendf(b, "Allow: ");
	const char *sep = "";
	for (unsigned i = 0; i < ARRAY_SIZE(names); i++) {
		if (r->methods & (1u << i)) {
			buf_appendf(b, "%s%s", sep, names[i]);
			sep = ", ";
		}
	}
	buf_appendf(b, "\r\n");
}

/* A refusal of a whole request: the connection may go on. */
static void http_reject(struct http_conn *hc, int status, const char *reason,
			const struct buf *headers,
			const struct http_framing *f)
{
	log_info("h%u %s: %d: %s %s: %s", hc->id, hc->peer_name, status,
		 http_method_str((enum http_parser_method)hc->parser.method),
		 http_head_path(hc), reason);
	http_error_page(hc, status, headers, f);
}

static void http_call(struct http_conn *hc, const struct http_route *r,
		      const struct http_framing *f)
{
	const char *path = http_head_path(hc);
	struct http_request req = {
		.method = http_method_str((enum http_parser_method)hc->parser.method),
		.path = path,
		.query = path + strlen(path) + 1,
		.body = buf_used(&hc->body) > 0 ? buf_head(&hc->body) : "",
		.body_len = buf_used(&hc->body),
		.tls = hc->tls,
		.peer = &hc->peer,
		.hdrs = http_head_hdrs(hc),
		.nhdrs = hc->nhdrs,
	};
	struct http_response resp = { .status = 200 };
	buf_init(&resp.body, HTTP_MAX_RESPONSE);
	buf_init(&resp.headers, HTTP_MAX_RESPONSE_HEADERS);
	r->fn(hc->w, &req, &resp);
	struct http_framing g = *f;
	if (resp.close) {
		g.close = 1;
		g.keep_alive_10 = 0;
	}
	if (resp.content_type != NULL && !http_value_ok(resp.content_type)) {
		log_error("h%u: handler of %s: control character in the "
			  "content type: 500", hc->id, r->path);
		resp.status = 500;
		resp.content_type = NULL;
		resp.body.len = resp.body.off;
	}
	if (resp.status < 200 || resp.status > 599) {
		log_error("h%u: handler of %s answered status %d: 500",
			  hc->id, r->path, resp.status);
		resp.status = 500;
		resp.body.len = resp.body.off;
	}
	http_write(hc, resp.status, resp.content_type, &resp.headers,
		   buf_head(&resp.body), buf_used(&resp.body), &g);
	log_debug("h%u %s: %s %s: %d, %zu bytes", hc->id, hc->peer_name,
		  req.method, req.path, resp.status, buf_used(&resp.body));
	buf_free(&resp.body);
	buf_free(&resp.headers);
}

/* Answer the request just parsed. */
static void http_answer(struct http_conn *hc)
{
	http_parser *p = &hc->parser;
	struct http_framing f = {
		.head_only = p->method == HTTP_HEAD,
		.close = !http_should_keep_alive(p) || p->upgrade,
		.keep_alive_10 = p->http_minor == 0,
	};
	/* RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing
	 * (a 1.0 proxy in front reads the body otherwise): the connection
	 * closes after the answer, even with Connection: keep-alive */
	if (p->http_minor == 0 && p->uses_transfer_encoding)
		f.close = 1;
	if (f.close)
		f.keep_alive_10 = 0;
	const char *path = http_head_path(hc);
	const struct http_route *r = http_route_find(path);
	unsigned bit = http_method_bit((enum http_parser_method)p->method);
	if (r == NULL) {
		http_reject(hc, 404, "no such route", NULL, &f);
	} else if (!(r->methods & bit)) {
		struct buf allow;
		buf_init(&allow, 256);
		http_allow(r, &allow);
		http_reject(hc, 405, "method not allowed", &allow, &f);
		buf_free(&allow);
	} else if ((r->flags & HTTP_ROUTE_ADMIN) &&
		   !cidr_list_match(hc->w->cfg->http_admin_addresses,
				    &hc->peer)) {
		http_reject(hc, 403, "not in http.admin_addresses", NULL, &f);
	} else {
		http_call(hc, r, &f);
	}
	/* WebSocket/BOSH hook: an upgrade request (Upgrade + Connection:
	 * upgrade, or CONNECT) stops the parser; until a route takes the
	 * connection over, it is answered as a plain request and closed. */
	if (p->upgrade)
		hc->want_close = 1;
}

/* ---- the state machine -------------------------------------------------- */

void http_conn_init(struct http_conn *hc)
{
	const struct config *cfg = hc->w->cfg;
	http_parser_init(&hc->parser, HTTP_REQUEST);
	hc->parser.data = hc;
	/* The parser's own count of request line and header bytes is a
	 * backstop (a process-wide setting): it also counts what reaches
	 * no callback (separators, spaces), so it is set above ours, which
	 * give the answer in the common case. */
	http_parser_set_max_header_size((uint32_t)(2 * cfg->http_max_header_size +
						   cfg->http_max_url_size));
	buf_init(&hc->in, 0);
	/* url, headers, then path and query copied once more */
	buf_init(&hc->head, 2 * cfg->http_max_header_size + 4);
	buf_init(&hc->body, 0);     /* bounded by http_on_body */
	buf_init(&hc->out, 0);      /* bounded by HTTP_OUT_HIGH + one */
}

void http_conn_free(struct http_conn *hc)
{
	buf_free(&hc->in);
	buf_free(&hc->head);
	buf_free(&hc->body);
	buf_free(&hc->out);
}

/* The status for a parser error of its own. */
static int http_parser_status(enum http_errno e, const char **reason_r)
{
	*reason_r = http_errno_description(e);
	switch (e) {
	case HPE_HEADER_OVERFLOW:
		*reason_r = "request line and headers over "
			    "http.max_header_size";
		return 431;
	default:
		return 400;
	}
}

/* Whether the request line of the request being parsed has ended: the
 * parser says nothing of it before the first header's name is whole.
 * data[0..n) was parsed by this call; began: the request began in it
 * (after any empty lines, which the parser skips). */
static void http_line_seen(struct http_conn *hc, const char *data, size_t n,
			   int began)
{
	if (hc->line_done || (!hc->in_request && !hc->complete &&
			      hc->error_status == 0))
		return;
	if (began)
		while (n > 0 && (*data == '\r' || *data == '\n')) {
			data++;
			n--;
		}
	if (memchr(data, '\n', n) != NULL)
		hc->line_done = 1;
}

/* The head's own line structure, read behind the parser: a line of
 * the head that starts with SP or HT (obs-fold, or whitespace before
 * the first header) is refused (RFC 9112 5.2, 2.2: 400).  The parser
 * (not built strict) would join it to the value before, even to an
 * empty one ("Transfer-Encoding:" CRLF SP "chunked"), where a proxy in
 * front may see something else.  States: before the request line
 * (empty lines skipped, as the parser does), in a line, at the start
 * of a line, after the blank line (done until the next request). */
enum { HTTP_SCAN_PRE, HTTP_SCAN_LINE, HTTP_SCAN_START, HTTP_SCAN_DONE };

static int http_scan_head(struct http_conn *hc, const char *d, size_t len)
{
	for (size_t i = 0; i < len && hc->scan != HTTP_SCAN_DONE; i++) {
		char c = d[i];
		switch (hc->scan) {
		case HTTP_SCAN_PRE:
			if (c != '\r' && c != '\n')
				hc->scan = HTTP_SCAN_LINE;
			break;
		case HTTP_SCAN_LINE:
			if (c == '\n')
				hc->scan = HTTP_SCAN_START;
			break;
		default:        /* HTTP_SCAN_START */
			if (c == ' ' || c == '\t')
				return -1;
			hc->scan = c == '\r' || c == '\n' ? HTTP_SCAN_DONE :
				   HTTP_SCAN_LINE;
			break;
		}
	}
	return 0;
}

void http_process(struct http_conn *hc)
{
	while (!hc->want_close && !hc->closed && buf_used(&hc->in) > 0 &&
	       buf_used(&hc->out) < HTTP_OUT_HIGH) {
		int was_in = hc->in_request;
		size_t n = http_parser_execute(&hc->parser, &http_settings,
					       buf_head(&hc->in),
					       buf_used(&hc->in));
		enum http_errno e = HTTP_PARSER_ERRNO(&hc->parser);
		http_line_seen(hc, buf_head(&hc->in), n, !was_in);
		/* the bytes the parser took (up to its error, if any, as
		 * whatever the reads were): a fold there comes first */
		int folded = http_scan_head(hc, buf_head(&hc->in), n) < 0;
		buf_consume(&hc->in, n);
		if (hc->complete)       /* the next request's head follows (the
					 * parser may leave the last LF: skipped) */
			hc->scan = HTTP_SCAN_PRE;
		if (folded) {
			hc->complete = 0;
			hc->send_continue = 0;
			http_refuse(hc, 400, "header line folded or starting "
				    "with whitespace");
			break;
		}
		if (hc->send_continue) {
			hc->send_continue = 0;
			if (buf_append(&hc->out, "HTTP/1.1 100 Continue\r\n"
				       "\r\n", 25) < 0) {
				http_refuse(hc, 503, "no memory");
				break;
			}
		}
		if (hc->error_status != 0) {
			http_refuse(hc, hc->error_status, hc->error_reason);
			break;
		}
		if (e == HPE_PAUSED) {
			http_parser_pause(&hc->parser, 0);
		} else if (e == HPE_HEADER_OVERFLOW && !hc->line_done) {
			/* still in the request line: its target is too long
			 * (the parser counted it before on_url saw it) */
			http_refuse(hc, 414, "request line over "
				    "http.max_header_size");
			break;
		} else if (e != HPE_OK) {
			const char *reason;
			int status = http_parser_status(e, &reason);
			http_refuse(hc, status, reason);
			break;
		}
		if (hc->complete) {
			hc->complete = 0;
			http_answer(hc);
		} else if (n == 0) {
			/* no progress and no error: never loop on it */
			http_refuse(hc, 400, "request not parsable");
			break;
		}
	}
	if (buf_used(&hc->in) == 0)
		buf_shrink(&hc->in);
	if (!hc->in_request) {
		buf_shrink(&hc->head);
		buf_shrink(&hc->body);
	}
}

/*
 * fuzz_http.c - the HTTP front's request side (worker/http.c over
 * libhttp-parser): parsing, limits, route dispatch and response framing,
 * without sockets (httpconn.c is not linked).  Properties:
 *  - what the front writes is a sequence of whole HTTP/1.1 responses:
 *    a status line with a known code, one Date, one Server and one
 *    Content-Length (but 204 and the interim 100 Continue), and the
 *    body that Content-Length says (none for HEAD);
 *  - a response with Connection: close is the last one, and the
 *    connection is then closing (and says nothing more);
 *  - a handler only sees bodies within http.max_body_size and a path
 *    without its query;
 *  - the same bytes fed at once or in chunks of any size give the same
 *    responses (the state machine does not depend on how reads split
 *    the input).
 * Input: byte 0 flags (bit 0 small limits, bit 1 a peer outside
 * http.admin_addresses, bit 2 the connection is over
 * http.max_connections, bit 3 TLS), byte 1 the chunk size - 1, then the
 * bytes a client sends.  Routes: the front's own (/health/live, an
 * admin route), the metrics' (/metrics, admin; /health) over a shared
 * mapping of two empty worker slots, and the harness's /echo (prefix, several methods: echoes
 * what the handler saw) and /status (answers the status in the query).
 */
#include "fuzz.h"
#include "config.h"
#include "../worker/http.h"
#include "../worker/worker.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static struct config *cfg_default, *cfg_small;
static struct shm_region shm;   /* what /metrics and /health read */

/* %XX decoded, into out (size n): how a handler could pass on bytes
 * a request cannot carry raw (CR, LF, NUL ends the string). */
static void unpercent(const char *s, char *out, size_t n)
{
	size_t o = 0;
	while (*s != '\0' && o + 1 < n) {
		unsigned v;
		if (s[0] == '%' && sscanf(s + 1, "%2x", &v) == 1 && v != 0 &&
		    isxdigit((unsigned char)s[1]) &&
		    isxdigit((unsigned char)s[2])) {
			out[o++] = (char)v;
			s += 3;
		} else {
			out[o++] = *s++;
		}
	}
	out[o] = '\0';
}

static void echo(struct worker *w, const struct http_request *req,
		 struct http_response *resp)
{
	FUZZ_CHECK(req->body_len <= w->cfg->http_max_body_size,
		   "body of %zu bytes over the limit", req->body_len);
	FUZZ_CHECK(strncmp(req->path, "/echo", 5) == 0 &&
		   strchr(req->path, '?') == NULL, "path \"%s\"", req->path);
	const char *host = http_header(req, "host");
	buf_appendf(&resp->body, "echo:%s %s ? %s %zu %s", req->method,
		    req->path, req->query, req->body_len, host ? host : "-");
	if (host != NULL)
		http_response_header(resp, "X-Host", host);
	resp->content_type = "text/plain";
	/* a handler passing on what a client chose: X-Set "name:value"
	 * and X-Type (content type), %-decoded */
	static char set[512], type[256];
	const char *v = http_header(req, "x-set");
	if (v != NULL) {
		unpercent(v, set, sizeof(set));
		char *colon = strchr(set, ':');
		if (colon != NULL) {
			*colon = '\0';
			http_response_header(resp, set, colon + 1);
		}
	}
	if ((v = http_header(req, "x-type")) != NULL) {
		unpercent(v, type, sizeof(type));
		resp->content_type = type;
	}
}

static void status(struct worker *w, const struct http_request *req,
		   struct http_response *resp)
{
	(void)w;
	resp->status = atoi(req->query);
	resp->close = strchr(req->query, 'c') != NULL;
	buf_appendf(&resp->body, "status:%d", resp->status);
}

static void setup(void)
{
	static struct worker w0;
	fuzz_quiet_log();
	cfg_default = config_new();
	cfg_small = config_new();
	cfg_small->http_max_header_size = 1024;
	cfg_small->http_max_url_size = 256;
	cfg_small->http_max_body_size = 64;
	w0.cfg = cfg_default;
	const char *error;
	if (shm_create(&shm, 2, 64, &error) < 0)
		abort();
	w0.shm = &shm;
	http_init(&w0);
	if (http_route_add("/echo", HTTP_M_GET | HTTP_M_POST | HTTP_M_PUT |
			   HTTP_M_DELETE | HTTP_M_OPTIONS, HTTP_ROUTE_PREFIX,
			   echo) < 0 ||
	    http_route_add("/status", HTTP_M_GET, 0, status) < 0)
		abort();
}

/* The last response seen by a run: where it starts, its status. */
struct last_resp {
	size_t at;
	int status;
};

/* Check the responses in out[0..len); 1 if the last one closes. */
static int check_responses(const char *out, size_t len, size_t base,
			   struct last_resp *seen)
{
	int closing = 0;
	const char *start = out;
	while (len > 0) {
		FUZZ_CHECK(!closing, "a response after Connection: close");
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		if (len >= sizeof(cont) - 1 &&
		    memcmp(out, cont, sizeof(cont) - 1) == 0) {
			out += sizeof(cont) - 1;
			len -= sizeof(cont) - 1;
			continue;
		}
		const char *end = memmem(out, len, "\r\n\r\n", 4);
		FUZZ_CHECK(end != NULL, "response head not whole: %.*s",
			   (int)len, out);
		size_t head = (size_t)(end - out) + 4;
		FUZZ_CHECK(head > 14 && memcmp(out, "HTTP/1.1 ", 9) == 0 &&
			   out[9] >= '2' && out[9] <= '5' &&
			   out[10] >= '0' && out[10] <= '9' &&
			   out[11] >= '0' && out[11] <= '9' && out[12] == ' ',
			   "status line: %.*s", (int)(head < 40 ? head : 40), out);
		int code = (out[9] - '0') * 100 + (out[10] - '0') * 10 +
			   (out[11] - '0');
		seen->at = base + (size_t)(out - start);
		seen->status = code;
		unsigned dates = 0, servers = 0, lengths = 0, conns = 0;
		size_t clen = 0;
		const char *last = out + head - 2;     /* the blank line */
		for (const char *l = (const char *)memchr(out, '\n', head) + 1;
		     l < last; l = (const char *)memchr(l, '\n',
						(size_t)(last + 2 - l)) + 1) {
			if (strncasecmp(l, "Date:", 5) == 0)
				dates++;
			else if (strncasecmp(l, "Server:", 7) == 0)
				servers++;
			else if (strncasecmp(l, "Content-Length:", 15) == 0 &&
				 ++lengths)
				clen = strtoul(l + 15, NULL, 10);
			else if (strncasecmp(l, "Connection:", 11) == 0 &&
				 ++conns)
				closing |= strncmp(l, "Connection: close\r", 18) == 0;
			FUZZ_CHECK(strncasecmp(l, "Transfer-Encoding:", 18) != 0,
				   "Transfer-Encoding in a response");
			const char *nl = memchr(l, '\n', (size_t)(last + 2 - l));
			FUZZ_CHECK(memchr(l, ':', (size_t)(nl - l)) != NULL,
				   "header line without ':'");
			FUZZ_CHECK(nl > l && nl[-1] == '\r' &&
				   memchr(l, '\r', (size_t)(nl - l)) == nl - 1,
				   "header line with a bare CR or LF: %.*s",
				   (int)(nl - l), l);
		}
		FUZZ_CHECK(dates == 1 && servers == 1 && conns <= 1 &&
			   lengths == (code == 204 || code == 304 ? 0u : 1u),
			   "status %d: %u Date, %u Server, %u Content-Length, "
			   "%u Connection", code, dates, servers, lengths, conns);
		out += head;
		len -= head;
		/* no body: a HEAD answer (never a body that looks like a
		 * response: those of the front and of the harness do not) */
		if (code == 204 || code == 304 || len == 0 ||
		    (len >= 9 && memcmp(out, "HTTP/1.1 ", 9) == 0))
			continue;
		FUZZ_CHECK(clen <= len, "body of %zu bytes, %zu left", clen, len);
		out += clen;
		len -= clen;
	}
	return closing;
}

/* Feed data in chunks of `chunk` bytes; everything written goes to all. */
static void run(const struct config *cfg, uint8_t flags, const char *data,
		size_t size, size_t chunk, struct buf *all, struct last_resp *last)
{
	struct worker w = { .cfg = (struct config *)cfg, .shm = &shm };
	struct http_conn hc = { .w = &w, .fd = -1, .tls = (flags & 8) != 0,
				.over_limit = (flags & 4) != 0 };
	struct sockaddr_in *sin = (struct sockaddr_in *)&hc.peer;
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(flags & 2 ? 0xc0000201 : 0x7f000001);
	snprintf(hc.peer_name, sizeof(hc.peer_name), "fuzz");
	http_conn_init(&hc);
	for (size_t at = 0; at < size && !hc.want_close; at += chunk) {
		size_t n = size - at < chunk ? size - at : chunk;
		if (buf_append(&hc.in, data + at, n) < 0)
			abort();
		while (!hc.want_close && buf_used(&hc.in) > 0) {
			size_t before = buf_used(&hc.in);
			http_process(&hc);
			size_t wrote = buf_used(&hc.out);
			if (wrote > 0) {
				int closing = check_responses(buf_head(&hc.out),
							      wrote, buf_used(all),
							      last);
				FUZZ_CHECK(!closing || hc.want_close, "Connection: "
					   "close but the connection stays");
				buf_append(all, buf_head(&hc.out), wrote);
				buf_consume(&hc.out, wrote);
			}
			if (wrote == 0 && buf_used(&hc.in) == before)
				break;  /* waiting for more input */
		}
	}
	if (hc.want_close) {
		buf_append(&hc.in, "GET /health/live HTTP/1.1\r\n\r\n", 29);
		http_process(&hc);
		FUZZ_CHECK(buf_used(&hc.out) == 0, "output after the close");
	}
	http_conn_free(&hc);
}

/* A request that is both malformed and over a limit may be refused
 * for either, depending on when the parser reports the token: a last
 * refusal of that kind only has to be there in both runs. */
static int either_refusal(int status)
{
	return status == 400 || status == 413 || status == 414 ||
	       status == 431;
}

/* Responses without their Date lines (the clock may tick between). */
static void strip_dates(struct buf *b)
{
	if (buf_used(b) == 0)
		return;
	char *p = b->data + b->off, *end = b->data + b->len, *o = p;
	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
		if (!(n >= 6 && memcmp(p, "Date: ", 6) == 0)) {
			memmove(o, p, n);
			o += n;
		}
		p += n;
	}
	b->len = (size_t)(o - b->data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	if (!ready) {
		setup();
		ready = 1;
	}
	if (size < 2 || size > 1 << 20)
		return 0;
	uint8_t flags = data[0];
	size_t chunk = (size_t)data[1] + 1;
	const struct config *cfg = flags & 1 ? cfg_small : cfg_default;
	const char *input = (const char *)data + 2;
	size -= 2;

	struct buf whole, chunked;
	buf_init(&whole, 0);
	buf_init(&chunked, 0);
	struct last_resp lw = { 0, 0 }, lc = { 0, 0 };
	run(cfg, flags, input, size, size > 0 ? size : 1, &whole, &lw);
	run(cfg, flags, input, size, chunk, &chunked, &lc);
	FUZZ_CHECK(either_refusal(lw.status) == either_refusal(lc.status),
		   "chunks of %zu: last status %d, at once %d", chunk,
		   lc.status, lw.status);
	if (either_refusal(lw.status)) {
		whole.len = whole.off + lw.at;
		chunked.len = chunked.off + lc.at;
	}
	strip_dates(&whole);
	strip_dates(&chunked);
	FUZZ_CHECK(buf_used(&whole) == buf_used(&chunked) &&
		   (buf_used(&whole) == 0 ||
		    memcmp(buf_head(&whole), buf_head(&chunked),
			   buf_used(&whole)) == 0),
		   "chunks of %zu answer differently:\n%.*s\n---\n%.*s", chunk,
		   (int)buf_used(&whole), buf_head(&whole),
		   (int)buf_used(&chunked), buf_head(&chunked));
	buf_free(&whole);
	buf_free(&chunked);
	return 0;
}

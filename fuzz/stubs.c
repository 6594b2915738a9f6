/*
 * stubs.c - stand-ins for the parts of the worker a harness does not
 * link (sockets, TLS, SASL, routing), so that worker/stream.c,
 * worker/stanza.c and worker/tls13.c run without a connection.  Output
 * goes to the connection's out buffer; stanzas the stream dispatches go
 * to fuzz_dispatch, which the harness sets.
 */
#include "fuzz.h"
#include "stubs.h"
#include "../worker/worker.h"
#include "../worker/tls.h"
#include "../worker/ext.h"
#include "../worker/s2s.h"
#include "../worker/component.h"
#include "../worker/s2s_int.h"
#include "../worker/server.h"

#include <string.h>

void (*fuzz_dispatch)(struct conn *c, struct xml_node *n, int kind);

/* No extensions in a harness: every hook array is empty, no nonzas. */
struct ext_hooks ext_hooks;

const struct ext *ext_nonza_owner(const char *ns, size_t nslen)
{
	(void)ns;
	(void)nslen;
	return NULL;
}

static void stub_dispatch(struct conn *c, struct xml_node *n, int kind)
{
	if (fuzz_dispatch != NULL)
		fuzz_dispatch(c, n, kind);
}

void conn_send(struct conn *c, const char *data, size_t len)
{
	if (c->closed)
		return;
	if (buf_append(&c->out, data, len) < 0)
		conn_close(c);
}

void conn_want_flush(struct conn *c)
{
	(void)c;
}

void conn_flush(struct conn *c)
{
	(void)c;
}

void conn_close(struct conn *c)
{
	c->closed = 1;
}

void presence_session_gone(struct conn *c)
{
	(void)c;
}

void bind_release(struct conn *c)
{
	(void)c;
}

int bind_is_session_iq(const struct conn *c, const struct xml_node *n)
{
	(void)c;
	(void)n;
	return 0;
}

void bind_handle(struct conn *c, struct xml_node *n)
{
	stub_dispatch(c, n, FUZZ_DISPATCH_BIND);
}

void route_from_client(struct conn *c, struct xml_node *n)
{
	stub_dispatch(c, n, FUZZ_DISPATCH_ROUTE);
}

void sasl_handle(struct conn *c, struct xml_node *n)
{
	stub_dispatch(c, n, FUZZ_DISPATCH_SASL);
}

void sasl_features(struct conn *c, struct buf *out)
{
	(void)c;
	buf_appendf(out, "<mechanisms xmlns='" NS_SASL "'>"
		    "<mechanism>SCRAM-SHA-256</mechanism></mechanisms>");
}

int tls_start(struct conn *c, SSL_CTX *ctx)
{
	(void)c;
	(void)ctx;
	return -1;
}

int tls_cert_end_point_cached(SSL *ssl, unsigned char *out, size_t size)
{
	(void)ssl;
	(void)out;
	(void)size;
	return -1;
}

/* Login throttling (worker/sasl.c), which stream.c asks before it sends
 * features: never banned here. */
int sasl_address_banned(struct conn *c)
{
	(void)c;
	return 0;
}

/* Server-to-server and component streams (worker/s2s.h,
 * worker/component.h): the XML harness drives client streams only.
 * Weak: fuzz_s2s links the real worker/s2s.c and worker/component.c. */
__attribute__((weak))
void s2s_stream_open(struct conn *c, const char *name, const char **atts)
{
	(void)c; (void)name; (void)atts;
}

__attribute__((weak))
int s2s_top_level_known(const struct conn *c, const char *name, size_t nslen)
{
	(void)c; (void)name; (void)nslen;
	return 0;
}

__attribute__((weak))
void s2s_dispatch(struct conn *c, struct xml_node *n)
{
	(void)c; (void)n;
}

__attribute__((weak))
void component_stream_open(struct conn *c, const char *name,
			   const char **atts)
{
	(void)c; (void)name; (void)atts;
}

__attribute__((weak))
int component_top_level_known(const struct conn *c, const char *name,
			      size_t nslen)
{
	(void)c; (void)name; (void)nslen;
	return 0;
}

__attribute__((weak))
void component_dispatch(struct conn *c, struct xml_node *n)
{
	(void)c; (void)n;
}

/* worker/tls.c tells s2s of a completed handshake (s2s.h): the
 * harnesses make no s2s connections. */
__attribute__((weak))
void s2s_tls_done(struct conn *c, struct ssl_st *ssl)
{
	(void)c; (void)ssl;
}

/* ---- for fuzz_s2s: what worker/s2s_in.c and worker/component.c call
 * in the core (conn.c, route.c, presence.c) ---- */

struct conn *fuzz_conn;

struct conn *conn_lookup(struct worker *w, uint32_t id, uint32_t gen)
{
	(void)w;
	if (fuzz_conn != NULL && fuzz_conn->id == id && fuzz_conn->gen == gen)
		return fuzz_conn;
	return NULL;
}

void conn_metrics_move(struct conn *c, unsigned tls, unsigned auth)
{
	(void)c; (void)tls; (void)auth;
}

/* Read pacing only (the harnesses have no SASL delays); the harness
 * clears read_paused_ms before each read, as the loop would once the
 * time has come. */
void conn_delay(struct conn *c, int64_t until_ms, enum conn_delay_why why)
{
	if (why == CONN_DELAY_READ)
		c->read_paused_ms = until_ms;
}

void route_stanza(struct worker *w, struct arena *a, struct xml_node *st)
{
	(void)w; (void)a;
	stub_dispatch(fuzz_conn, st, FUZZ_DISPATCH_STANZA);
}

void presence_from_remote(struct worker *w, struct arena *a,
			  struct xml_node *st)
{
	(void)w; (void)a;
	stub_dispatch(fuzz_conn, st, FUZZ_DISPATCH_PRESENCE_IN);
}


/* The outgoing side of s2s (s2s_out.c: links, DNS), which worker/s2s.c
 * dispatches to: fuzz_s2s drives incoming streams only. */
void s2s_out_stream_open(struct conn *c, const char *name, const char **atts)
{
	(void)c; (void)name; (void)atts;
}

int s2s_out_top_level_known(const struct conn *c, const char *name,
			    size_t nslen)
{
	(void)c; (void)name; (void)nslen;
	return 0;
}

void s2s_out_dispatch(struct conn *c, struct xml_node *n)
{
	(void)c; (void)n;
}

void s2s_out_gone(struct conn *c)
{
	(void)c;
}

void s2s_out_free(struct conn *c)
{
	(void)c;
}

/* Not taken: route.c would bounce remote-server-not-found. */
int s2s_out_route(struct worker *w, struct xml_node *st,
		  const char *to_domain)
{
	(void)w; (void)st; (void)to_domain;
	return 0;
}

int s2s_out_frame(struct worker *w, const struct ipc_frame_header *hdr,
		  const void *payload, size_t len)
{
	(void)w; (void)hdr; (void)payload; (void)len;
	return 0;
}

int s2s_out_init(struct worker *w)
{
	(void)w;
	return 0;
}

void s2s_out_tick(struct worker *w, int64_t now_ms)
{
	(void)w; (void)now_ms;
}

void s2s_out_shutdown(struct worker *w)
{
	(void)w;
}

void s2s_out_close_links(struct worker *w)
{
	(void)w;
}

int s2s_out_taken(struct conn *c, const char *text, size_t len,
		  uint64_t end, struct settle_hold *held)
{
	(void)c; (void)text; (void)len; (void)end; (void)held;
	return 0;
}

unsigned s2s_out_busy(const struct worker *w)
{
	(void)w;
	return 0;
}

void s2s_out_drained(struct conn *c)
{
	(void)c;
}

void s2s_out_tls_done(struct conn *c, SSL *ssl)
{
	(void)c; (void)ssl;
}

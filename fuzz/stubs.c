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
 * worker/component.h): the XML harness drives client streams only. */
void s2s_stream_open(struct conn *c, const char *name, const char **atts)
{
	(void)c; (void)name; (void)atts;
}

int s2s_top_level_known(const struct conn *c, const char *name, size_t nslen)
{
	(void)c; (void)name; (void)nslen;
	return 0;
}

void s2s_dispatch(struct conn *c, struct xml_node *n)
{
	(void)c; (void)n;
}

void component_stream_open(struct conn *c, const char *name,
			   const char **atts)
{
	(void)c; (void)name; (void)atts;
}

int component_top_level_known(const struct conn *c, const char *name,
			      size_t nslen)
{
	(void)c; (void)name; (void)nslen;
	return 0;
}

void component_dispatch(struct conn *c, struct xml_node *n)
{
	(void)c; (void)n;
}

/* worker/tls.c tells s2s of a completed handshake (s2s.h): the
 * harnesses make no s2s connections. */
void s2s_tls_done(struct conn *c, struct ssl_st *ssl)
{
	(void)c; (void)ssl;
}

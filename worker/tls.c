/*
 * tls.c - OpenSSL on non-blocking client sockets.  SSL is attached to the
 * socket directly (SSL_set_fd); WANT_READ/WANT_WRITE map onto the
 * connection's epoll interest.  After a TLS 1.3 handshake tls13.c takes
 * the connection over and the SSL object is freed; connections that stay
 * with OpenSSL get SSL_MODE_RELEASE_BUFFERS, which frees record buffers
 * while idle.
 * Failure policy: a TLS error ends that connection only (logged at info:
 * it is the client's doing far more often than ours).
 */
#include "tls.h"
#include "tls13.h"
#include "worker.h"
#include "s2s.h"
#include "log.h"
#include "util.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <sys/epoll.h>

static char tls_error[512];

static const char *tls_last_error(const char *what, const char *arg)
{
	char e[256];
	ERR_error_string_n(ERR_get_error(), e, sizeof(e));
	snprintf(tls_error, sizeof(tls_error), "%s(%s): %s", what, arg, e);
	ERR_clear_error();
	return tls_error;
}

/* XEP-0368: direct TLS clients may offer "xmpp-client", servers
 * "xmpp-server". */
static int tls_alpn_select(SSL *ssl, const unsigned char **out,
			   unsigned char *outlen, const unsigned char *in,
			   unsigned int inlen, void *arg)
{
	static const unsigned char want[] = "\x0bxmpp-client";
	static const unsigned char want_s2s[] = "\x0bxmpp-server";
	const struct conn *c = SSL_get_app_data(ssl);
	int s2s = c != NULL && c->kind == CONN_S2S_IN;
	(void)arg;
	if (SSL_select_next_proto((unsigned char **)out, outlen,
				  s2s ? want_s2s : want,
				  (s2s ? sizeof(want_s2s) : sizeof(want)) - 1,
				  in, inlen) ==
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_OK;
	return SSL_TLSEXT_ERR_NOACK;
}

/* TLS 1.3 secrets for our own record layer (tls13.c). */
static void tls_keylog(const SSL *ssl, const char *line)
{
	struct conn *c = SSL_get_app_data(ssl);
	if (c != NULL && c->w->cfg->tls_own_records)
		tls13_keylog(c, line);
}

static int tls_context_setup(SSL_CTX *ctx, const struct config *cfg,
			     const char **error_r)
{
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
			    SSL_OP_CIPHER_SERVER_PREFERENCE |
			    SSL_OP_NO_COMPRESSION);
	/* No SSL_MODE_RELEASE_BUFFERS during the handshake (it would
	 * free and allocate the record buffers once per flight): it is
	 * set on the connections that stay with OpenSSL afterwards. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
			 SSL_MODE_ENABLE_PARTIAL_WRITE);
	/* Read whole socket contents at once instead of record header,
	 * then body: one read(2) per wakeup instead of two or three. */
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);  /* tls13.c takes over at seq 0 */
	if (SSL_CTX_set_cipher_list(ctx, cfg->tls_ciphers) != 1) {
		*error_r = tls_last_error("tls.ciphers", cfg->tls_ciphers);
		return -1;
	}
	if (SSL_CTX_set_ciphersuites(ctx, cfg->tls_ciphersuites) != 1) {
		*error_r = tls_last_error("tls.ciphersuites",
					  cfg->tls_ciphersuites);
		return -1;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_certificate) != 1) {
		*error_r = tls_last_error("tls.certificate",
					  cfg->tls_certificate);
		return -1;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key,
					SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		*error_r = tls_last_error("tls.key", cfg->tls_key);
		return -1;
	}
	SSL_CTX_set_alpn_select_cb(ctx, tls_alpn_select, NULL);
	SSL_CTX_set_keylog_callback(ctx, tls_keylog);
	return 0;
}

SSL_CTX *tls_context_new(const struct config *cfg, const char **error_r)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		*error_r = tls_last_error("SSL_CTX_new", "");
		return NULL;
	}
	if (tls_context_setup(ctx, cfg, error_r) < 0) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

void tls_context_free(SSL_CTX **ctx)
{
	SSL_CTX_free(*ctx);
	*ctx = NULL;
}

int tls_start(struct conn *c, SSL_CTX *ctx)
{
	c->ssl = SSL_new(ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
		log_error("c%u: %s", c->id, tls_last_error("SSL_new", ""));
		return -1;
	}
	SSL_set_app_data(c->ssl, c);
	SSL_set_accept_state(c->ssl);
	/* Our record layer takes over right after the handshake: OpenSSL
	 * must not have read past the client's Finished by then. */
	if (c->w->cfg->tls_own_records)
		SSL_set_read_ahead(c->ssl, 0);
	c->tls_handshaking = 1;
	return 0;
}

/* Map an SSL result onto "retry later" (0) or "failed" (-1). */
static int tls_retry(struct conn *c, int ret, const char *what)
{
	int err = SSL_get_error(c->ssl, ret);
	if (err == SSL_ERROR_WANT_READ) {
		c->tls_want_write = 0;
		return 0;
	}
	if (err == SSL_ERROR_WANT_WRITE) {
		c->tls_want_write = 1;
		return 0;
	}
	unsigned long e = ERR_peek_error();
	if (err == SSL_ERROR_SSL || err == SSL_ERROR_SYSCALL)
		c->tls_failed = 1;      /* no SSL_shutdown after these */
	if (err == SSL_ERROR_ZERO_RETURN || err == SSL_ERROR_SYSCALL ||
	    (err == SSL_ERROR_SSL &&
	     ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
		log_debug("c%u %s: TLS %s: connection closed", c->id, c->peer,
			  what);
	} else {
		log_info("c%u %s: TLS %s failed: %s", c->id, c->peer, what,
			 tls_last_error("SSL", what));
	}
	ERR_clear_error();
	return -1;
}

int tls_handshake(struct conn *c)
{
	int ret = SSL_do_handshake(c->ssl);
	if (ret == 1) {
		c->tls_handshaking = 0;
		c->tls_want_write = 0;
		/* s2s: the peer's certificate, while the SSL is ours */
		if (c->kind == CONN_S2S_IN || c->kind == CONN_S2S_OUT)
			s2s_tls_done(c, c->ssl);
		int ours = c->t13 != NULL ? tls13_take_over(c, c->ssl) : 0;
		log_debug("c%u %s: %s %s%s", c->id, c->peer,
			  SSL_get_version(c->ssl),
			  SSL_get_cipher_name(c->ssl),
			  ours > 0 ? " (xmppd records)" : "");
		if (ours > 0) {
			SSL_free(c->ssl);
			c->ssl = NULL;
		} else {
			tls13_free(c);
			SSL_set_read_ahead(c->ssl, 1);
			SSL_set_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
		}
		return 1;
	}
	return tls_retry(c, ret, "handshake");
}

/* A fatal alert of ours waits behind sealed bytes that the socket did
 * not take (RFC 8446 section 6: the peer must be able to read it): the
 * connection stays until they are written (then tls13_flush returns -1
 * and conn_flush closes it) or for TLS_LINGER_MS (conn_timeouts),
 * reading nothing more, and the session leaves the table now so that
 * nothing more is routed here. */
#define TLS_LINGER_MS 5000

static ssize_t tls_linger(struct conn *c)
{
	log_debug("c%u %s: TLS alert waits for sealed bytes to be written",
		  c->id, c->peer);
	presence_session_gone(c);
	bind_release(c);
	c->want_close = 1;
	c->state = CONN_STATE_CLOSING;
	c->deadline_ms = time_now_ms() + TLS_LINGER_MS;
	/* EPOLLOUT alone: bytes the client still sends would wake us for
	 * nothing (and EPOLLHUP/EPOLLERR come anyway). */
	struct epoll_event ev = { .events = EPOLLOUT };
	ev.data.u64 = (uint64_t)(uintptr_t)c;
	if (epoll_ctl(c->w->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		return -1;
	c->epollout = 1;
	return 0;
}

ssize_t tls_read(struct conn *c, char *buf, size_t len)
{
	if (c->t13 != NULL) {
		ssize_t n = tls13_read(c, buf, len);
		return n < 0 && tls13_alert_pending(c) ? tls_linger(c) : n;
	}
	size_t n = 0;
	int ret = SSL_read_ex(c->ssl, buf, len, &n);
	if (ret == 1)
		return (ssize_t)n;
	return tls_retry(c, 0, "read") == 0 ? 0 : -1;
}

int tls_flush(struct conn *c)
{
	if (c->t13 != NULL)
		return tls13_flush(c);
	while (buf_used(&c->out) > 0) {
		size_t n = 0;
		if (SSL_write_ex(c->ssl, buf_head(&c->out), buf_used(&c->out),
				 &n) != 1)
			return tls_retry(c, 0, "write");
		buf_consume(&c->out, n);
	}
	return 0;
}

int tls_has_pending(const struct conn *c)
{
	if (c->t13 != NULL)
		return tls13_more(c);
	return c->ssl != NULL && (SSL_pending(c->ssl) > 0 ||
				  SSL_has_pending(c->ssl));
}

void tls_free(struct conn *c)
{
	/* RFC 8446 6.1 / RFC 5246 7.2.1: close_notify before we close
	 * (best effort, the socket goes next), not after a fatal error. */
	if (c->ssl != NULL && !c->tls_handshaking && !c->tls_failed) {
		SSL_shutdown(c->ssl);
		ERR_clear_error();
	}
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	c->ssl = NULL;
	tls13_free(c);
}

int tls_is_13(const struct conn *c)
{
	return c->t13 != NULL || (c->ssl != NULL &&
				  SSL_version(c->ssl) == TLS1_3_VERSION);
}

int tls_cb_exporter(struct conn *c, unsigned char *out, size_t size)
{
	static const char label[] = "EXPORTER-Channel-Binding";
	if (c->t13 != NULL)
		return tls13_cb_exporter(c, out, size);
	if (!tls_is_13(c) || size < 32)
		return -1;
	if (SSL_export_keying_material(c->ssl, out, 32, label,
				       sizeof(label) - 1, NULL, 0, 0) != 1)
		return -1;
	return 32;
}

/* RFC 5929 section 4.1: the hash of our certificate, with SHA-256 when
 * its signature uses MD5 or SHA-1. */
int tls_cb_server_end_point(struct conn *c, unsigned char *out, size_t size)
{
	if (c->t13 != NULL)
		return tls13_cb_server_end_point(c, out, size);
	return c->ssl != NULL ? tls_cert_end_point(c->ssl, out, size) : -1;
}

/* The end-point hash of a context's certificate, computed once per
 * context and freed with it. */
struct tls_end_point {
	int len;
	unsigned char hash[EVP_MAX_MD_SIZE];
};

static void tls_end_point_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad,
			       int idx, long argl, void *argp)
{
	(void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
	free(ptr);
}

int tls_cert_end_point_cached(SSL *ssl, unsigned char *out, size_t size)
{
	static int idx = -1;
	SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
	if (idx < 0)
		idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL,
					       tls_end_point_free);
	struct tls_end_point *ep = idx >= 0 ? SSL_CTX_get_ex_data(ctx, idx)
					    : NULL;
	if (ep == NULL && idx >= 0 && (ep = calloc(1, sizeof(*ep))) != NULL) {
		ep->len = tls_cert_end_point(ssl, ep->hash, sizeof(ep->hash));
		if (SSL_CTX_set_ex_data(ctx, idx, ep) != 1) {
			free(ep);
			ep = NULL;
		}
	}
	if (ep == NULL)
		return tls_cert_end_point(ssl, out, size);
	if (ep->len <= 0 || (size_t)ep->len > size)
		return -1;
	memcpy(out, ep->hash, (size_t)ep->len);
	return ep->len;
}

int tls_cert_end_point(SSL *ssl, unsigned char *out, size_t size)
{
	X509 *cert = SSL_get_certificate(ssl);
	int md_nid = NID_undef, pk_nid;
	unsigned int len = 0;
	if (cert == NULL ||
	    !OBJ_find_sigid_algs(X509_get_signature_nid(cert), &md_nid,
				 &pk_nid))
		return -1;
	const EVP_MD *md = (md_nid == NID_md5 || md_nid == NID_sha1 ||
			    md_nid == NID_undef) ? EVP_sha256()
					        : EVP_get_digestbynid(md_nid);
	if (md == NULL || (size_t)EVP_MD_get_size(md) > size ||
	    X509_digest(cert, md, out, &len) != 1)
		return -1;
	return (int)len;
}

/* ---- the client side (outgoing s2s, s2s_out.c) ------------------------ */

SSL_CTX *tls_client_context_new(const struct config *cfg,
				const char **error_r)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		*error_r = tls_last_error("SSL_CTX_new", "client");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
			    SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
			 SSL_MODE_ENABLE_PARTIAL_WRITE);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	/* The chain is verified but a failure does not end the handshake:
	 * s2s_out_tls_done reads the result, and dialback may still do
	 * (s2s.auth). */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	/* any chain purpose: the EKU rule is certid_eku_ok's (s2s_out.c),
	 * so that the log says which usage is missing */
	SSL_CTX_set_purpose(ctx, X509_PURPOSE_ANY);
	if (SSL_CTX_set_cipher_list(ctx, cfg->tls_ciphers) != 1 ||
	    SSL_CTX_set_ciphersuites(ctx, cfg->tls_ciphersuites) != 1) {
		*error_r = tls_last_error("tls.ciphers", cfg->tls_ciphers);
		goto fail;
	}
	if (SSL_CTX_set_default_verify_paths(ctx) != 1)
		ERR_clear_error();      /* no system store: s2s.ca_file only */
	if (cfg->s2s_ca_file[0] != '\0' &&
	    SSL_CTX_load_verify_locations(ctx, cfg->s2s_ca_file, NULL) != 1) {
		*error_r = tls_last_error("s2s.ca_file", cfg->s2s_ca_file);
		goto fail;
	}
	/* our certificate, for the peer's SASL EXTERNAL (XEP-0178) */
	if (cfg->tls_certificate[0] != '\0' &&
	    (SSL_CTX_use_certificate_chain_file(ctx,
						cfg->tls_certificate) != 1 ||
	     SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key,
					 SSL_FILETYPE_PEM) != 1)) {
		*error_r = tls_last_error("tls.certificate",
					  cfg->tls_certificate);
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

int tls_start_client(struct conn *c, SSL_CTX *ctx, const char *server_name,
		     int alpn)
{
	static const unsigned char protos[] = "\x0bxmpp-server";
	c->ssl = SSL_new(ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1 ||
	    SSL_set_tlsext_host_name(c->ssl, server_name) != 1 ||
	    (alpn && SSL_set_alpn_protos(c->ssl, protos,
					 sizeof(protos) - 1) != 0)) {
		log_error("c%u: %s", c->id, tls_last_error("SSL_new", "client"));
		return -1;
	}
	SSL_set_app_data(c->ssl, c);
	SSL_set_connect_state(c->ssl);
	c->tls_handshaking = 1;
	/* the ClientHello goes now (the caller updates the epoll
	 * interest): nothing else would wake us */
	return tls_handshake(c) < 0 ? -1 : 0;
}

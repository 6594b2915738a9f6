/*
 * tls.h - TLS for client connections (OpenSSL 3): STARTTLS on the c2s
 * port and direct TLS (XEP-0368, ALPN "xmpp-client").  TLS 1.2 and 1.3
 * only; idle connections release their record buffers.  After a TLS
 * 1.3 handshake our own record layer (tls13.h) replaces OpenSSL's unless
 * tls.own_record_layer is off.  The context is
 * built from the config and rebuilt on reload for new connections; a
 * context that fails to build keeps the previous one.
 */
#ifndef XMPPD_TLS_H
#define XMPPD_TLS_H

#include <stddef.h>
#include <sys/types.h>
#include "config.h"

struct conn;
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

/* Build a server context from cfg; NULL with *error_r on failure. */
SSL_CTX *tls_context_new(const struct config *cfg, const char **error_r);
void tls_context_free(SSL_CTX **ctx);

/* Start the server side of a handshake on c's socket. 0 or -1. */
int tls_start(struct conn *c, SSL_CTX *ctx);
/* Drive the handshake: 1 done, 0 in progress, -1 failed. */
int tls_handshake(struct conn *c);
/* Read decrypted bytes: >0 bytes, 0 would block, -1 closed or error. */
ssize_t tls_read(struct conn *c, char *buf, size_t len);
/* Write from c->out: 0 ok (maybe partial), -1 error. */
int tls_flush(struct conn *c);
void tls_free(struct conn *c);
/* OpenSSL holds bytes not yet returned by tls_read(). */
int tls_has_pending(const struct conn *c);
/* Channel binding data (RFC 9266 tls-exporter, RFC 5929
 * tls-server-end-point); returns length or -1 when not available. */
int tls_cb_exporter(struct conn *c, unsigned char *out, size_t size);
int tls_cb_server_end_point(struct conn *c, unsigned char *out, size_t size);
/* tls-server-end-point of the certificate ssl presented. */
int tls_cert_end_point(SSL *ssl, unsigned char *out, size_t size);
/* The same, computed once per context (the certificate is the ctx's). */
int tls_cert_end_point_cached(SSL *ssl, unsigned char *out, size_t size);
/* The client side, for outgoing s2s streams: TLS 1.2+, our certificate
 * (tls.certificate) for the peer's SASL EXTERNAL, verification against
 * the system store and s2s.ca_file without failing the handshake (the
 * caller reads SSL_get_verify_result).  NULL with *error_r. */
SSL_CTX *tls_client_context_new(const struct config *cfg,
				const char **error_r);
/* Start the client side of a handshake on c's socket with SNI
 * server_name (and ALPN "xmpp-server" for XEP-0368 direct TLS when
 * alpn); the ClientHello is sent.  0 or -1. */
int tls_start_client(struct conn *c, SSL_CTX *ctx, const char *server_name,
		     int alpn);
/* The negotiated protocol is TLS 1.3. */
int tls_is_13(const struct conn *c);

#endif

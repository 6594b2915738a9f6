/*
 * tls13.h - xmppd's own TLS 1.3 record layer (RFC 8446 section 5) for
 * established connections.  OpenSSL runs the handshake; when it ends in
 * TLS 1.3 with one of the AEAD suites below, the connection's traffic
 * secrets (OpenSSL's key-log callback) become a few hundred bytes of
 * state here and the SSL object (about 14 KB while idle) is freed.
 * Suites: TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384,
 * TLS_CHACHA20_POLY1305_SHA256; anything else stays with OpenSSL.
 */
#ifndef XMPPD_TLS13_H
#define XMPPD_TLS13_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct conn;
struct config;
typedef struct ssl_st SSL;

/* Read buffers handed to tls13_read() hold at least two records of the
 * largest size section 5.2 allows (header + 2^14 + 256): one may be
 * carried over incomplete from the last read. */
#define TLS13_MAX_RECORD (5 + 16384 + 256)

/* From OpenSSL's key-log callback: keep the application traffic
 * secrets of c's handshake. */
void tls13_keylog(struct conn *c, const char *line);
/* The handshake on ssl just completed.  1: the record layer is ours now
 * and ssl may be freed; 0: keep OpenSSL (not TLS 1.3, another suite, a
 * max_fragment_length, tickets, or OpenSSL holds unread bytes). */
int tls13_take_over(struct conn *c, SSL *ssl);
/* Plaintext application data: >0 bytes, 0 would block, -1 closed or
 * failed (a fatal alert was sent when the peer broke the protocol). */
ssize_t tls13_read(struct conn *c, char *buf, size_t len);
/* Seal and write c->out: 0 ok (maybe partial), -1 failed. */
int tls13_flush(struct conn *c);
/* Sealed bytes wait for the socket to become writable. */
int tls13_out_pending(const struct conn *c);
/* Our fatal alert is among them: write them before closing. */
int tls13_alert_pending(const struct conn *c);
/* The last read filled its buffer, or an alert is still to be acted on:
 * call tls13_read() again before waiting for epoll. */
int tls13_more(const struct conn *c);
/* The peer closed or an alert ended the connection. */
int tls13_eof(const struct conn *c);
/* A ready record layer for c from given traffic secrets (secret_len 32
 * or 48, matching the suite's hash), with cfg's limits: what
 * tls13_take_over() builds after a real handshake.  For unit tests and
 * fuzzing under a fixed key (the peer's state is the same call with the
 * secrets swapped).  0 or -1 (c->t13 already set, unknown suite). */
int tls13_attach(struct conn *c, uint16_t suite_id,
		 const unsigned char *client_secret,
		 const unsigned char *server_secret, size_t secret_len,
		 const struct config *cfg);
/* Tests only: sequence numbers near 2^64 (section 5.3). */
void tls13_test_set_seq(struct conn *c, uint64_t rd, uint64_t wr);
/* Sends close_notify (unless a fatal alert went out), then frees. */
void tls13_free(struct conn *c);
/* Channel bindings taken at the end of the handshake (-1: none). */
int tls13_cb_exporter(const struct conn *c, unsigned char *out, size_t size);
int tls13_cb_server_end_point(const struct conn *c, unsigned char *out,
			      size_t size);

#endif

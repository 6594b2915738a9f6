/*
 * s2s.h - server-to-server streams (RFC 6120 section 13, RFC 7590,
 * XEP-0220 dialback, XEP-0178 SASL EXTERNAL, XEP-0368 direct TLS).
 *
 * Incoming streams (CONN_S2S_IN) are accepted by any worker on the s2s
 * listeners; their stanzas, once their 'from' is checked against the
 * domains the stream authenticated, are routed inward like a client's
 * (route_stanza).  Each outgoing stream (CONN_S2S_OUT) to a remote
 * domain is owned by one worker, found by the others without asking
 * anyone (docs/DESIGN.md "Federation"); a stanza for a remote domain
 * goes to its owner over the queues and waits there, bounded in bytes,
 * while the connection is set up; if that fails it is bounced with
 * remote-server-not-found or remote-server-timeout.
 *
 * The core calls the functions below; everything else about s2s lives
 * in s2s*.c.  Failure policy: a peer's bad input ends that stream with
 * the RFC 6120 stream error; what was queued for a link that fails is
 * bounced to its senders, never dropped silently.
 */
#ifndef XMPPD_S2S_H
#define XMPPD_S2S_H

#include <stddef.h>
#include <stdint.h>

struct settle_hold;

struct worker;
struct conn;
struct xml_node;
struct ipc_frame_header;

/* A connection was accepted on an s2s listener (c->kind is
 * CONN_S2S_IN); direct TLS has been started when the listener is one. */
void s2s_accepted(struct conn *c);
/* The peer's stream header (depth 1 start tag), for CONN_S2S_IN and
 * CONN_S2S_OUT; name is expat's "ns<SEP>local". */
void s2s_stream_open(struct conn *c, const char *name, const char **atts);
/* 1 if a first-level element of this name (expat's "ns<SEP>local",
 * nslen bytes of namespace) can be acted on by an s2s stream. */
int s2s_top_level_known(const struct conn *c, const char *name,
			size_t nslen);
/* A complete first-level element of an s2s stream. */
void s2s_dispatch(struct conn *c, struct xml_node *n);
/* The connection closes (conn_close): bounce what is queued, forget
 * the link. */
void s2s_conn_gone(struct conn *c);
/* The TLS handshake of an s2s stream completed (tls.c), ssl still
 * OpenSSL's (the peer's certificate can be read). */
typedef struct ssl_st SSL;
void s2s_tls_done(struct conn *c, SSL *ssl);
/* A piece of an outgoing link's output that was never written (conn.c
 * takes it back when the link closes): routed again once over a new
 * link, or bounced if it already was; 1 when taken (stream elements are
 * dropped), 0 for another kind of connection.  end: c->out_total where
 * the piece ended.  held: the hold of another node's frame the piece
 * is (settle.h), moved with it when taken (NULL: none).  Never routes
 * inside the call (conn_close). */
int s2s_taken_back(struct conn *c, const char *text, size_t len,
		   uint64_t end, struct settle_hold *held);
/* An outgoing link's output drained (conn_flush): it writes what
 * waited for room. */
void s2s_drained(struct conn *c);
/* Free c->s2s (conn_reap_dead). */
void s2s_conn_free(struct conn *c);

/* A stanza (trusted 'from', prepared 'to') for a domain that is not
 * ours and no component's: taken (0; queued, sent, or bounced later
 * with the right condition) or -1 (federation off or the domain is
 * refused: the caller bounces remote-server-not-found). */
int s2s_route(struct worker *w, struct xml_node *st, const char *to_domain);
/* A frame of s2s's own types (IPC_FRAME_S2S_*): 1 if taken. */
int s2s_frame(struct worker *w, const struct ipc_frame_header *hdr,
	      const void *payload, size_t len);
/* Once a loop turn: timers (idle links, connect and handshake
 * deadlines, DNS). */
void s2s_tick(struct worker *w, int64_t now_ms);
/* Worker start and stop. */
int s2s_init(struct worker *w);
void s2s_shutdown(struct worker *w);
/* Stopping, the client streams closed: outgoing links end with
 * </stream:stream> after what they carry; links still being set up
 * carry their queue once up, then end (or fail at shutdown_timeout). */
void s2s_close_links(struct worker *w);
/* Outgoing links still open or being set up (the worker waits). */
unsigned s2s_busy(const struct worker *w);

#endif

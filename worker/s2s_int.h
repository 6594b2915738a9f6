/*
 * s2s_int.h - what the parts of server-to-server share (not for the
 * core, which uses s2s.h).  s2s.c dispatches by connection kind:
 * s2s_in.c serves streams other servers open to us (CONN_S2S_IN),
 * s2s_out.c owns the streams we open (CONN_S2S_OUT), s2s_dial.c finds
 * and connects to a remote domain (DNS, s2s_dial.h).
 */
#ifndef XMPPD_S2S_INT_H
#define XMPPD_S2S_INT_H

#include <stddef.h>
#include <stdint.h>

struct worker;
struct conn;
struct xml_node;
struct ipc_frame_header;
struct ssl_st;
struct settle_hold;

#define NS_DIALBACK "jabber:server:dialback"
#define NS_DIALBACK_FEATURE "urn:xmpp:features:dialback"

/* The slot that owns the outgoing links to remote (from every local
 * domain: one stream carries them all when the peer agrees): every
 * worker computes the same answer, so no table is needed. */
unsigned s2s_owner_slot(const struct worker *w, const char *remote);

/* s2s_in.c: streams other servers opened to us */
void s2s_in_accepted(struct conn *c);
void s2s_in_stream_open(struct conn *c, const char *name, const char **atts);
int s2s_in_top_level_known(const struct conn *c, const char *name,
			   size_t nslen);
void s2s_in_dispatch(struct conn *c, struct xml_node *n);
void s2s_in_gone(struct conn *c);
/* The handshake completed: keep the peer's certificate, validated. */
void s2s_in_tls_done(struct conn *c, struct ssl_st *ssl);
void s2s_in_free(struct conn *c);
/* IPC_FRAME_S2S_VERIFIED (the answer to a dialback verification this
 * worker asked for): 1 if taken. */
int s2s_in_frame(struct worker *w, const struct ipc_frame_header *hdr,
		 const void *payload, size_t len);
int s2s_in_init(struct worker *w);
void s2s_in_tick(struct worker *w, int64_t now_ms);

/* s2s_out.c: streams we open, one per remote domain carrying every
 * local domain the peer accepts on it (else one per pair), owned by
 * s2s_owner_slot */
void s2s_out_stream_open(struct conn *c, const char *name,
			 const char **atts);
int s2s_out_top_level_known(const struct conn *c, const char *name,
			    size_t nslen);
void s2s_out_dispatch(struct conn *c, struct xml_node *n);
void s2s_out_gone(struct conn *c);
void s2s_out_free(struct conn *c);
int s2s_out_route(struct worker *w, struct xml_node *st,
		  const char *to_domain);
/* IPC_FRAME_S2S_OUT and IPC_FRAME_S2S_VERIFY: 1 if taken. */
int s2s_out_frame(struct worker *w, const struct ipc_frame_header *hdr,
		  const void *payload, size_t len);
int s2s_out_init(struct worker *w);
void s2s_out_tick(struct worker *w, int64_t now_ms);
void s2s_out_shutdown(struct worker *w);
void s2s_out_close_links(struct worker *w);
int s2s_out_taken(struct conn *c, const char *text, size_t len,
		  uint64_t end, struct settle_hold *held);
unsigned s2s_out_busy(const struct worker *w);
/* The connection's output drained: queued stanzas, XEP-0198 <r/>. */
void s2s_out_drained(struct conn *c);
/* TLS is up on an outgoing stream (tls.c, through s2s_tls_done): check
 * the peer's certificate, send the stream header. */
typedef struct ssl_st SSL;
void s2s_out_tls_done(struct conn *c, SSL *ssl);

#endif

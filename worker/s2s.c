/*
 * s2s.c - server-to-server streams (s2s.h): the core's entry points,
 * dispatched by connection kind to s2s_in.c and s2s_out.c
 * (s2s_int.h), and the owner of each outgoing link.
 */
#include "worker.h"
#include "s2s.h"
#include "s2s_int.h"

#include <ctype.h>
#include <string.h>

/* FNV-1a over the remote domain, case-folded (domains are compared
 * without case, RFC 7622 section 3.2).  Of the remote domain only: one
 * worker holds every link to it, so that one stream can carry all our
 * domains (XEP-0220 multiplexing, s2s_out.c). */
unsigned s2s_owner_slot(const struct worker *w, const char *remote)
{
	uint32_t h = 2166136261u;
	for (const char *p = remote; *p != '\0'; p++)
		h = (h ^ (uint8_t)tolower((unsigned char)*p)) * 16777619u;
	return w->nworkers > 0 ? h % w->nworkers : 0;
}

void s2s_accepted(struct conn *c)
{
	s2s_in_accepted(c);
}

void s2s_stream_open(struct conn *c, const char *name, const char **atts)
{
	if (c->kind == CONN_S2S_OUT)
		s2s_out_stream_open(c, name, atts);
	else
		s2s_in_stream_open(c, name, atts);
}

int s2s_top_level_known(const struct conn *c, const char *name, size_t nslen)
{
	return c->kind == CONN_S2S_OUT ? s2s_out_top_level_known(c, name, nslen)
				       : s2s_in_top_level_known(c, name, nslen);
}

void s2s_dispatch(struct conn *c, struct xml_node *n)
{
	if (c->kind == CONN_S2S_OUT)
		s2s_out_dispatch(c, n);
	else
		s2s_in_dispatch(c, n);
}

void s2s_conn_gone(struct conn *c)
{
	if (c->kind == CONN_S2S_OUT)
		s2s_out_gone(c);
	else
		s2s_in_gone(c);
}

void s2s_tls_done(struct conn *c, SSL *ssl)
{
	if (c->kind == CONN_S2S_OUT)
		s2s_out_tls_done(c, ssl);
	else
		s2s_in_tls_done(c, ssl);
}

void s2s_drained(struct conn *c)
{
	if (c->kind == CONN_S2S_OUT && c->s2s != NULL)
		s2s_out_drained(c);
}

void s2s_conn_free(struct conn *c)
{
	if (c->kind == CONN_S2S_OUT)
		s2s_out_free(c);
	else
		s2s_in_free(c);
}

int s2s_route(struct worker *w, struct xml_node *st, const char *to_domain)
{
	return s2s_out_route(w, st, to_domain);
}

int s2s_frame(struct worker *w, const struct ipc_frame_header *hdr,
	      const void *payload, size_t len)
{
	return s2s_out_frame(w, hdr, payload, len) ||
	       s2s_in_frame(w, hdr, payload, len);
}

void s2s_tick(struct worker *w, int64_t now_ms)
{
	s2s_in_tick(w, now_ms);
	s2s_out_tick(w, now_ms);
}

int s2s_init(struct worker *w)
{
	return s2s_in_init(w) < 0 || s2s_out_init(w) < 0 ? -1 : 0;
}

int s2s_taken_back(struct conn *c, const char *text, size_t len,
		   uint64_t end, struct settle_hold *held)
{
	return c->kind == CONN_S2S_OUT ?
	       s2s_out_taken(c, text, len, end, held) : 0;
}

void s2s_close_links(struct worker *w)
{
	s2s_out_close_links(w);
}

unsigned s2s_busy(const struct worker *w)
{
	return s2s_out_busy(w);
}

void s2s_shutdown(struct worker *w)
{
	s2s_out_shutdown(w);
}

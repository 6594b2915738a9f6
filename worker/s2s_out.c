/*
 * s2s_out.c - streams we open to other servers (s2s_int.h).  Not built
 * yet: every stanza for another domain is bounced
 * remote-server-not-found by route.c.
 */
#include "worker.h"
#include "s2s_int.h"

void s2s_out_stream_open(struct conn *c, const char *name,
			 const char **atts)
{
	(void)name; (void)atts;
	stream_error(c, "unsupported-feature", "no server-to-server yet");
}

int s2s_out_top_level_known(const struct conn *c, const char *name,
			    size_t nslen)
{
	(void)c; (void)name; (void)nslen;
	return 0;
}

void s2s_out_dispatch(struct conn *c, struct xml_node *n)
{
	(void)n;
	stream_error(c, "unsupported-stanza-type", NULL);
}

void s2s_out_gone(struct conn *c)
{
	(void)c;
}

void s2s_out_free(struct conn *c)
{
	(void)c;
}

int s2s_out_route(struct worker *w, struct xml_node *st, const char *to_domain)
{
	(void)w; (void)st; (void)to_domain;
	return -1;
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

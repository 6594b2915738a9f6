/*
 * component.c - external components (component.h).  Not built yet: no
 * component listener is bound and no domain is a component's.
 */
#include "worker.h"
#include "component.h"

void component_accepted(struct conn *c)
{
	(void)c;
}

void component_stream_open(struct conn *c, const char *name,
			   const char **atts)
{
	(void)name; (void)atts;
	stream_error(c, "unsupported-feature", "no components yet");
}

int component_top_level_known(const struct conn *c, const char *name,
			      size_t nslen)
{
	(void)c; (void)name; (void)nslen;
	return 0;
}

void component_dispatch(struct conn *c, struct xml_node *n)
{
	(void)n;
	stream_error(c, "unsupported-stanza-type", NULL);
}

void component_conn_gone(struct conn *c)
{
	(void)c;
}

void component_conn_free(struct conn *c)
{
	(void)c;
}

int component_route(struct worker *w, struct xml_node *st,
		    const char *to_domain)
{
	(void)w; (void)st; (void)to_domain;
	return 0;
}

int component_frame(struct worker *w, const struct ipc_frame_header *hdr,
		    const void *payload, size_t len)
{
	(void)w; (void)hdr; (void)payload; (void)len;
	return 0;
}

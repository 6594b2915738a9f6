/*
 * stubs.h - see stubs.c.
 */
#ifndef XMPPD_FUZZ_STUBS_H
#define XMPPD_FUZZ_STUBS_H

struct conn;
struct xml_node;

enum fuzz_dispatch_kind {
	FUZZ_DISPATCH_SASL = 1,     /* sasl_handle */
	FUZZ_DISPATCH_BIND,         /* bind_handle */
	FUZZ_DISPATCH_ROUTE,        /* route_from_client */
	FUZZ_DISPATCH_STANZA,       /* route_stanza (c: fuzz_conn) */
	FUZZ_DISPATCH_PRESENCE_IN,  /* presence_from_remote (c: fuzz_conn) */
};

/* Called for every stanza worker/stream.c hands on; NULL: ignored. */
extern void (*fuzz_dispatch)(struct conn *c, struct xml_node *n, int kind);

/* The one connection a harness drives: conn_lookup() finds it by id
 * and gen; stanzas routed without a connection name it.  NULL: none. */
extern struct conn *fuzz_conn;

#endif

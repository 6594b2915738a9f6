/*
 * component.h - external components (XEP-0114, jabber:component:accept).
 *
 * A component connects to a component listener (loopback by default),
 * authenticates with the <handshake/> of its configured secret, and
 * then serves its domain: stanzas to that domain (and its subdomains
 * when configured) reach it from any worker, and what it sends is
 * routed like a local user's stanza once its 'from' is checked to be in
 * its domain.  Failure policy: a wrong secret or a domain already
 * connected ends that stream with the XEP's stream error; stanzas to a
 * component that is not connected are bounced with
 * service-unavailable.
 */
#ifndef XMPPD_COMPONENT_H
#define XMPPD_COMPONENT_H

#include <stddef.h>
#include <stdint.h>

struct worker;
struct conn;
struct xml_node;
struct ipc_frame_header;
struct buf;

/* Worker start: read component.secrets_file (0; a file that does not
 * read is logged and leaves no components). */
int component_init(struct worker *w);
/* A new config generation: read the file again (a bad one keeps the
 * list before); a connected component no longer listed ends with
 * <host-gone/>. */
void component_reload(struct worker *w);
/* Worker exit: free the list. */
void component_shutdown(struct worker *w);
/* The configured components as disco#items <item jid='...'/> (XEP-0030
 * items of a hosted domain): how many were written. */
unsigned component_disco_items(struct buf *out);

/* A connection was accepted on a component listener (c->kind is
 * CONN_COMPONENT). */
void component_accepted(struct conn *c);
/* The component's stream header (depth 1 start tag). */
void component_stream_open(struct conn *c, const char *name,
			   const char **atts);
/* 1 if a first-level element (expat's "ns<SEP>local") can be acted on. */
int component_top_level_known(const struct conn *c, const char *name,
			      size_t nslen);
/* A complete first-level element of a component stream. */
void component_dispatch(struct conn *c, struct xml_node *n);
/* The connection closes (conn_close): the domain is free again. */
void component_conn_gone(struct conn *c);
/* Free c->comp (conn_reap_dead). */
void component_conn_free(struct conn *c);

/* A stanza (trusted 'from', prepared 'to') for a domain that is not a
 * hosted one: 1 if the domain is a configured component's (sent to it,
 * or bounced service-unavailable when it is not connected), 0 if not a
 * component domain. */
int component_route(struct worker *w, struct xml_node *st,
		    const char *to_domain);
/* A frame of the component's own type (IPC_FRAME_COMPONENT): 1 if
 * taken. */
int component_frame(struct worker *w, const struct ipc_frame_header *hdr,
		    const void *payload, size_t len);
/* 1 if domain (case-insensitive) is a configured component's domain, or
 * a subdomain of one configured with 'subdomains': we are its
 * authoritative server toward other servers (dialback, SASL EXTERNAL's
 * 'to', stanzas routed in to the component), connected or not. */
int component_serves(const char *domain);

#endif

/*
 * server.h - what the server itself answers: stanzas to the bare domain
 * (XEP-0030 disco, XEP-0199 ping, XEP-0092 version, XEP-0202 time) and
 * IQs to an account's bare JID: to the extension that declared their
 * payload (ext.h), else <service-unavailable/>.
 */
#ifndef XMPPD_SERVER_H
#define XMPPD_SERVER_H

#include "buf.h"
#include "xml.h"

struct worker;
struct config;

/* A stanza to our domain (to_resource: domain/resource). */
void server_stanza(struct worker *w, struct arena *a, struct xml_node *st,
		   int to_resource);
/* An IQ to an account's bare JID (ext.h: the extensions' handlers). */
void server_account_iq(struct worker *w, struct arena *a,
		       struct xml_node *st, const char *bare);
/* Append the disco#info <query/> of an account's bare JID (identities
 * and features on under cfg; XEP-0030), as the account itself gets it. */
void server_account_info(const struct config *cfg, struct buf *out);
/* Route a stanza whose 'from' is trusted (route.c). */
void route_stanza(struct worker *w, struct arena *a, struct xml_node *st);

#endif

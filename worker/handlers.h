/*
 * handlers.h - handlers for IQs addressed to an account's bare JID (or
 * sent without 'to', which means the sender's own account).  server.c
 * dispatches on the payload's namespace and name.  Each handler owns
 * the answer: it must route a result or an error for every get/set.
 *   st    the IQ (from = the requester's full JID, to = the account's
 *         bare JID); valid only during the call: keep an iq_pending
 *   bare  the account's bare JID ("user@domain"), prepared
 */
#ifndef XMPPD_HANDLERS_H
#define XMPPD_HANDLERS_H

#include "xml.h"

struct worker;

#define NS_ROSTER "jabber:iq:roster"
#define NS_VCARD "vcard-temp"
#define NS_PRIVATE "jabber:iq:private"
#define NS_BLOCKING "urn:xmpp:blocking"

void roster_iq(struct worker *w, struct xml_node *st, const char *bare);
void vcard_iq(struct worker *w, struct xml_node *st, const char *bare);
void private_iq(struct worker *w, struct xml_node *st, const char *bare);
void blocking_iq(struct worker *w, struct xml_node *st, const char *bare);

#endif

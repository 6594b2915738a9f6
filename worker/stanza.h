/*
 * stanza.h - building stanza replies and errors (RFC 6120 section 8.3):
 * <error type='...'><condition xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
 * [<text xmlns='...'>...</text>]</error>, with 'from' and 'to' swapped.
 * Failure policy: out-of-memory drops the reply (the caller's stream
 * goes on); nothing here closes a stream.
 */
#ifndef XMPPD_STANZA_H
#define XMPPD_STANZA_H

#include "buf.h"
#include "xml.h"

struct conn;

/* " id='...'" when n has an id. */
void stanza_append_id(struct buf *out, const struct xml_node *n);
/* Write the error reply to stanza n as XML text:
 * <NAME from='n.to' id='n.id' to='n.from' type='error'><error .../></NAME>.
 * from_override replaces n's 'to' as the reply's 'from' when not NULL. */
int stanza_error_xml(struct buf *out, const struct xml_node *n,
		     const char *from_override, const char *type,
		     const char *condition, const char *text);
/* As stanza_error_xml, with app_xml (an application-specific condition
 * element, section 8.3.4, or NULL) after the defined condition and text;
 * to_override replaces n's 'from' as the reply's 'to' when not NULL. */
int stanza_error_xml_app(struct buf *out, const struct xml_node *n,
			 const char *from_override, const char *to_override,
			 const char *type, const char *condition,
			 const char *text, const char *app_xml);
/* Send the error reply for n, a stanza the client c sent, to c itself
 * (addressed to c's full JID when n has no 'from' and c is bound). */
void stanza_error_reply(struct conn *c, const struct xml_node *n,
			const char *type, const char *condition,
			const char *text);
/* Parse stanza text as written on a client stream, where unqualified
 * elements are in jabber:client unless an xmlns='' in the text says
 * otherwise (our own replies, queue frames; xml_parse_in()). */
struct xml_node *stanza_parse(struct arena *a, const char *text, size_t len,
			      const char **error_r);
/* May an error be answered to n?  Not to errors, not to IQ results. */
int stanza_may_bounce(const struct xml_node *n);
/* RFC 6120 8.2.3, 8.3: an IQ has an id and a known type (one child for
 * get/set, at most one for result), a presence a known type or none.
 * 1 if st (routed from another server or a component) is fine. */
int stanza_addressable_valid(const struct xml_node *st);

#endif

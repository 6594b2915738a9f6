/*
 * iq.h - IQs answered after an asynchronous step (PostgreSQL).  The
 * request's stanza lives in a per-stanza arena that is gone by the time
 * the database answers, so iq_pending_new() copies what the reply needs
 * (from, to, id, the payload element) into its own arena.  Replies are
 * routed like any stanza: the requester may be on any worker, or gone.
 * Failure policy: out of memory answers resource-constraint at once.
 */
#ifndef XMPPD_IQ_H
#define XMPPD_IQ_H

#include "arena.h"
#include "buf.h"
#include "xml.h"

struct worker;

struct iq_pending {
	struct worker *w;
	struct arena arena;
	const char *from;           /* requester's full JID */
	const char *to;             /* the JID asked (bare account or domain) */
	const char *id;
	const char *type;           /* "get" or "set" */
	struct xml_node *payload;   /* copy of the request's child element */
	void *data;                 /* the handler's own state */
};

/* A copy of st's addressing and payload, or NULL when memory ran out
 * (then no answer is sent: the caller has nothing to build it with). */
struct iq_pending *iq_pending_new(struct worker *w, struct xml_node *st);
void iq_pending_free(struct iq_pending **p);

/* Answer and free: result with payload text (may be NULL for an empty
 * result), or an error. */
void iq_reply_result(struct iq_pending **p, const char *payload_xml);
void iq_reply_node(struct iq_pending **p, const struct xml_node *payload);
void iq_reply_error(struct iq_pending **p, const char *type,
		    const char *condition);
/* The same with a <text/> (RFC 6120 8.3.2) saying why. */
void iq_reply_error_text(struct iq_pending **p, const char *type,
			 const char *condition, const char *text);

/* Route the result without freeing p (what the reply's data is kept
 * for is done after it; iq_pending_free then). */
void iq_reply_result_keep(struct iq_pending *p, const char *payload_xml);
/* An error with the <error/> element given whole (application-specific
 * conditions, RFC 6120 section 8.3.4); it is read back before it goes. */
void iq_reply_error_xml(struct iq_pending **p, const char *error_xml);

/* The bare part of a full JID, in the pending's arena. */
const char *iq_bare(struct iq_pending *p, const char *jid);

#endif

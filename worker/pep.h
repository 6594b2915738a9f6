/*
 * pep.h - what worker/pep.c (the XEP-0163 service: requests, storage)
 * hands to worker/pep_notify.c (who gets which event, and the last
 * items at login, on a caps change and on a new subscription).
 * Failure policy: see each file's header.
 */
#ifndef XMPPD_PEP_H
#define XMPPD_PEP_H

#include "pubsub_form.h"

#include <stdint.h>

struct conn;
struct pg_result;
struct worker;

/* Payloads are serialized as if nothing were in scope: every element
 * declares its namespace, so the text embeds anywhere. */
#define PEP_NO_NS "urn:xmppd:no-namespace"

/* What one publish, retract, purge or delete did: all a notification
 * needs. */
enum pep_event_kind { PEP_EV_ITEM = 1, PEP_EV_RETRACT, PEP_EV_PURGE,
		      PEP_EV_DELETE };
struct pep_event {
	enum pep_event_kind kind;
	const char *owner;              /* bare JID of the service */
	const char *publisher;          /* full JID of the requester */
	const char *node;
	const char *item_id;            /* ITEM, RETRACT */
	const char *payload;            /* ITEM: serialized (PEP_NO_NS) */
	const char *const *trimmed;     /* ITEM: ids dropped over max_items */
	int ntrimmed;
	struct pubsub_config cfg;       /* the node's configuration */
	int notify;                     /* RETRACT: notify='true' asked */
};

/* pep_notify.c: a stored change goes out to the owner's interested
 * sessions at once and to its admitted contacts' after one query. */
void pep_notify_event(struct worker *w, const struct pep_event *ev);
/* ext hooks of pep_ext */
void pep_notify_caps_changed(struct conn *c, const uint64_t *old,
			     unsigned nold, const uint64_t *now,
			     unsigned nnow);
void pep_notify_subscription(struct worker *w, const char *bare,
			     const char *contact, const struct pg_result *res,
			     int col, int approved_col);

#endif

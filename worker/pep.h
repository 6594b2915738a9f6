/*
 * pep.h - what worker/pep.c (the XEP-0163 service: requests, storage)
 * hands to worker/pep_notify.c (who gets which event, and the last
 * items at login, on a caps change and on a new subscription), and what
 * pep.c and worker/pep_compat.c (XEP-0402 compat, XEP-0398) ask of each
 * other: pep_compat.c stores items on the account's behalf with the same
 * statements a client's publish uses, and tells them through pep.c's
 * pep_event(), so notifications follow them as they follow a client's
 * publish.
 * Failure policy: see each file's header.
 */
#ifndef XMPPD_PEP_H
#define XMPPD_PEP_H

#include "worker.h"
#include "pubsub_form.h"

#include <stdint.h>

struct arena;
struct conn;
struct pg_result;
struct iq_pending;
struct xml_node;

/* A failed query of the IQ p answered: resource-constraint (wait) when
 * the database is down or error is NULL, else internal-server-error and
 * "WHAT query failed: ERROR" in the log. */
void pep_db_fail(struct iq_pending **p, const char *what, const char *error);

/* Payloads are serialized with no default namespace in scope: the root
 * (never in no namespace: pubsub.c refuses it) declares its namespace,
 * a descendant in no namespace gets xmlns='', so the text embeds
 * anywhere.  No made-up namespace: an element really in it would lose
 * its xmlns and land in the namespace it is written into. */
#define PEP_NO_NS ""

/* A publish (retract 0) or retract (1) stored on owner's service by
 * publisher (a full JID) outside a pubsub IQ: told as pep.c tells a
 * client's (pep_event).  trimmed, config, groups: the text[] columns of
 * xmppd_pep_publish / xmppd_pep_remove (trimmed NULL: none).  In a's
 * memory.  0, or -1 when the configuration is unreadable (nothing
 * told). */
int pep_stored_event(struct worker *w, struct arena *a, int retract,
		     const char *owner, const char *publisher,
		     const char *node, const char *item_id,
		     const char *payload, const char *trimmed,
		     const char *config, const char *groups);

/* XEP-0402 #compat-pep (pep_compat.c): an items request (publish 0) or
 * a publish of the account's own node `node`, by the account.  1 when
 * pep_compat.c took it (it answers p), 0 when pep.c goes on as usual. */
int pep_compat_pep(struct iq_pending *p, const char *bare, const char *node,
		   int publish, const struct xml_node *payload);

/* XEP-0398 (pep_compat.c): payload (serialized, PEP_NO_NS) was stored
 * as an item of the account's node `node` by a client's publish; a
 * urn:xmpp:avatar:metadata one is converted into the vCard PHOTO. */
void pep_compat_published(struct worker *w, const char *bare,
			  const char *node, const char *payload);
/* XEP-0398 (pep_compat.c, called by vcard.c): the account set its vCard
 * to vcard: its sessions' presence hash follows the PHOTO. */
void pep_compat_vcard_set(struct worker *w, const char *bare,
			  const struct xml_node *vcard);
/* XEP-0398 (pep_compat.c, called by blocking.c's load at bind with
 * pep.vcard_conversion): the account's stored vCard, for the hash. */
void pep_compat_vcard_loaded(struct conn *c, const char *vcard);


/* What one publish, retract, purge or delete did: all a notification
 * needs. */
enum pep_event_kind { PEP_EV_ITEM = 1, PEP_EV_RETRACT, PEP_EV_PURGE,
		      PEP_EV_DELETE, PEP_EV_CONFIG };
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
	const char *subscribers;        /* "{}": the node has no explicit
					 * subscribers (015); DELETE: the
					 * deleted node's (a text[] literal);
					 * NULL: read them (011) */
	const struct pubsub_form_limits *lim;   /* CONFIG: the form's */
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
/* Explicit subscribers (h-pepsub): ev to the node's subscribers (one
 * query), each session once, none that the presence-based recipients
 * already got it; and the node's last item to jid, just subscribed
 * (XEP-0060 section 6.1.7, with <delay/> stamp). */
void pep_notify_subscribers(struct worker *w, const struct pep_event *ev);
void pep_notify_sub_last(struct worker *w, const char *owner,
			 const char *jid, const char *node,
			 const char *item_id, const char *payload,
			 const char *stamp);
/* Remove the subscriptions of owner's nodes (node's only unless NULL;
 * bare's only unless NULL) that the access model no longer admits, and
 * tell each <subscription subscription='none'/> (one query). */
/* pep_notify.c: tell jid its subscription to owner's node is now state
 * ('none', 'subscribed'; XEP-0060 section 8.8.4), here or over s2s. */
void pep_notify_sub_state(struct worker *w, const char *owner,
			  const char *node, const char *jid,
			  const char *state);
void pep_notify_sub_prune(struct worker *w, const char *owner,
			  const char *node, const char *bare);
/* last items paced by the output (h-pepfix2): the next page once c's
 * output drained; c's waiting jobs go with it */
void pep_notify_drained(struct conn *c);
/* IPC_FRAME_PEP_LAST (ext.h frame hook): c's last items of one owner. */
/* IPC_FRAME_PEP_EVENT (another cluster node's event for our sessions
 * of a bare JID): 1 when taken. */
int pep_notify_worker_frame(struct worker *w,
			    const struct ipc_frame_header *hdr,
			    const char *payload, size_t len);
int pep_notify_last_frame(struct conn *c, int type, const char *text,
			  size_t len);
void pep_notify_conn_free(struct conn *c);
/* XEP-0198 (review 13b G8): 1 while c's last items are pending or were
 * cut by its drop; a resumed session with 1 gets them again (all the
 * nodes its caps want: a few may come twice). */
uint32_t pep_notify_session_save(const struct conn *c);
void pep_notify_session_restore(struct conn *c, uint32_t word);

/* pep_notify.c, for pep_remote.c: a last-item message (with <delay/>)
 * from owner to `to` into b (reset first); 0 or -1.  Whether the
 * roster row res (subscription in column col) just gave the contact the
 * owner's presence (granted, or a pre-approval answered). */
struct buf;
int pep_notify_last_text(struct buf *b, struct worker *w, const char *owner,
			 const char *to, const char *node,
			 const char *item_id, const char *payload,
			 const char *stamp);
int pep_notify_gained(const struct pg_result *res, int col);

/* pep_remote.c: whether a remote recipient with caps key ("0115:sha-1")
 * and ver (a pep_remote_presence row) asked for node+notify (its ver
 * VERIFIED in the shared table; when the table lost the ver, cached:
 * whether caps_cache's names hold node); route an event's text to it
 * (s2s). */
int pep_remote_wants(struct worker *w, const char *key, const char *ver,
		     const char *node, int cached);
void pep_remote_route(struct worker *w, const char *text, size_t len);

#endif

/*
 * pubsub.h - the XEP-0060 engine, service-agnostic: a <pubsub/> or
 * <pubsub xmlns='...#owner'/> request parsed into struct pubsub_req or
 * an error verdict (the XEP's condition and pubsub#errors child), and
 * the error table.  It knows nothing of PEP, accounts or the database:
 * worker/pep.c is the PEP service on each account's bare JID; a later
 * pubsub.DOMAIN service gives its own struct pubsub_service and reuses
 * the parse and the errors.
 * Failure policy: pure; every request gets a verdict.
 */
#ifndef XMPPD_PUBSUB_H
#define XMPPD_PUBSUB_H

#include "pubsub_form.h"

#define NS_PUBSUB_OWNER NS_PUBSUB "#owner"
#define NS_PUBSUB_ERRORS NS_PUBSUB "#errors"
#define NS_PUBSUB_EVENT NS_PUBSUB "#event"
#ifndef NS_RSM
#define NS_RSM "http://jabber.org/protocol/rsm"
#endif

/* A pubsub service: who it is and what it allows. */
struct pubsub_service {
	const char *jid;                /* "user@domain" or "pubsub.domain" */
	int owner_only_publish;         /* PEP: publish_model publishers */
	int instant_nodes;              /* create without a node name */
	struct pubsub_form_limits lim;
	unsigned max_ids;               /* item ids in one items request */
	size_t max_id_length;           /* bytes of a node name, an item id
					 * (0: no bound) */
};

enum pubsub_op {
	PUBSUB_OP_PUBLISH = 1,
	PUBSUB_OP_ITEMS,
	PUBSUB_OP_RETRACT,
	PUBSUB_OP_SUBSCRIBE,
	PUBSUB_OP_UNSUBSCRIBE,
	PUBSUB_OP_OPTIONS,
	PUBSUB_OP_SUBSCRIPTIONS,        /* the requester's own (5.6) */
	PUBSUB_OP_AFFILIATIONS,         /* the requester's own (5.7) */
	PUBSUB_OP_CREATE,
	PUBSUB_OP_CONFIGURE_GET,
	PUBSUB_OP_CONFIGURE_SET,
	PUBSUB_OP_DEFAULT,
	PUBSUB_OP_PURGE,
	PUBSUB_OP_DELETE,
	PUBSUB_OP_OWNER_AFFILIATIONS_GET,
	PUBSUB_OP_OWNER_AFFILIATIONS_SET,
	PUBSUB_OP_OWNER_SUBSCRIPTIONS_GET,
	PUBSUB_OP_OWNER_SUBSCRIPTIONS_SET,      /* affs: jid, subscription */
};

/* The errors a request can get (pubsub_error_of). */
enum pubsub_error {
	PUBSUB_E_NONE = 0,
	PUBSUB_E_BAD_REQUEST,           /* modify bad-request */
	PUBSUB_E_NODEID_REQUIRED,       /* modify bad-request + nodeid-required */
	PUBSUB_E_CREATE_NODEID_REQUIRED,/* modify not-acceptable + nodeid-required */
	PUBSUB_E_ITEM_REQUIRED,         /* modify bad-request + item-required */
	PUBSUB_E_INVALID_PAYLOAD,       /* modify bad-request + invalid-payload */
	PUBSUB_E_PAYLOAD_TOO_BIG,       /* modify not-acceptable + payload-too-big */
	PUBSUB_E_INVALID_JID,           /* modify bad-request + invalid-jid */
	PUBSUB_E_PRECONDITION,          /* cancel conflict + precondition-not-met */
	PUBSUB_E_CONFLICT,              /* cancel conflict */
	PUBSUB_E_FORBIDDEN,             /* auth forbidden */
	PUBSUB_E_ITEM_NOT_FOUND,        /* cancel item-not-found */
	PUBSUB_E_NOT_ACCEPTABLE,        /* modify not-acceptable */
	PUBSUB_E_UNSUPPORTED_ACCESS,    /* modify not-acceptable + unsupported-access-model */
	PUBSUB_E_MAX_NODES,             /* cancel not-allowed + max-nodes-exceeded */
	PUBSUB_E_PRESENCE_REQUIRED,     /* auth not-authorized + presence-subscription-required */
	PUBSUB_E_NOT_IN_GROUP,          /* auth not-authorized + not-in-roster-group */
	PUBSUB_E_CLOSED_NODE,           /* cancel not-allowed + closed-node */
	PUBSUB_E_NOT_SUBSCRIBED,        /* cancel unexpected-request + not-subscribed */
	PUBSUB_E_UNSUPPORTED_OPTIONS,   /* cancel feature-not-implemented + unsupported feature='subscription-options' */
	PUBSUB_E_UNSUPPORTED_SUBSCRIBE, /* cancel feature-not-implemented + unsupported feature='subscribe' */
	PUBSUB_E_SERVICE_UNAVAILABLE,   /* cancel service-unavailable */
	PUBSUB_E_TOO_MANY_SUBS,         /* wait policy-violation + too-many-subscriptions */
	PUBSUB_E_NOT_IMPLEMENTED,       /* cancel feature-not-implemented */
	PUBSUB_E_COUNT
};

#define PUBSUB_MAX_AFFS 64              /* entries in one affiliations set */

struct pubsub_aff {
	const char *jid;                /* bare (owner subscriptions: as
					 * given, normalized) */
	const char *affiliation;        /* member, outcast, none, ...;
					 * owner subscriptions: none,
					 * subscribed */
};

struct pubsub_req {
	enum pubsub_op op;
	const char *node;               /* NULL when absent */
	const char *item_id;            /* publish (NULL: generate), retract */
	const struct xml_node *payload; /* publish: the item's one child */
	const char **ids;               /* items: by id (nids of them) */
	unsigned nids;
	unsigned max_items;             /* items: the newest K; 0: all */
	int notify;                     /* retract notify='1|true' */
	const char *jid;                /* subscribe, unsubscribe: the
					 * requester's bare or full JID,
					 * normalized */
	struct pubsub_config cfg;       /* publish-options, configure */
	int cfg_given;                  /* a form was given */
	int cancel;                     /* configure with type='cancel' */
	struct pubsub_aff affs[PUBSUB_MAX_AFFS];
	unsigned naffs;
	/* items with XEP-0059 RSM: a <set/> next to <items/> (section
	 * 6.5.4).  The set is the items newest first. */
	int rsm;                        /* a <set/> was given */
	int rsm_max_set;                /* with <max/>: rsm_max (0: count
					 * only), at most lim.max_items */
	unsigned rsm_max;
	const char *rsm_after;          /* an item id (older ones), or NULL */
	const char *rsm_before;         /* an item id (newer ones), "" (the
					 * last page: the oldest), or NULL */
};

/* Parse q (the IQ's first child) of an IQ of type get (is_set 0) or set,
 * from requester (bare JID), for svc.  0 with r filled, or -1 with *e
 * (and *text_r a reason for the log and the <text/>, or NULL). */
int pubsub_parse(struct arena *a, const struct xml_node *q, int is_set,
		 const struct pubsub_service *svc, const char *requester,
		 struct pubsub_req *r, enum pubsub_error *e,
		 const char **text_r);

/* The IQ error e: its stanza error type and defined condition, and its
 * application-specific element (or NULL). */
struct pubsub_error_desc {
	const char *type;
	const char *cond;
	const char *app;                /* "<precondition-not-met xmlns=.../>" */
};
const struct pubsub_error_desc *pubsub_error_of(enum pubsub_error e);

#endif

/*
 * pubsub_form.h - XEP-0004 data forms of XEP-0060 publish-subscribe:
 * pubsub#node_config (section 8.2, the configure form and <default/>)
 * and pubsub#publish-options (section 7.1.5, preconditions), parsed into
 * normalized values and rendered back; and PostgreSQL text[] literals
 * as the pubsub functions return them (db/schema/007-pep.sql).  Pure:
 * no I/O, no database, fuzzed by fuzz/fuzz_pubsub.c.
 * Failure policy: a form that cannot be accepted gets a verdict (the
 * caller answers it with the XEP's error); nothing is stored from it.
 */
#ifndef XMPPD_PUBSUB_FORM_H
#define XMPPD_PUBSUB_FORM_H

#include "arena.h"
#include "buf.h"
#include "xml.h"

#define NS_PUBSUB "http://jabber.org/protocol/pubsub"
#define NS_PUBSUB_NODE_CONFIG NS_PUBSUB "#node_config"
#define NS_PUBSUB_PUBLISH_OPTIONS NS_PUBSUB "#publish-options"
#define NS_XDATA "jabber:x:data"

/* The node configuration fields xmppd keeps, in the order of the text[]
 * the pubsub SQL functions take and return (007-pep.sql). */
enum pubsub_field {
	PUBSUB_F_ACCESS_MODEL = 0,
	PUBSUB_F_MAX_ITEMS,             /* integer >= 1, or "max" */
	PUBSUB_F_PERSIST_ITEMS,         /* booleans: "true" / "false" */
	PUBSUB_F_SEND_LAST,
	PUBSUB_F_NOTIFY_RETRACT,
	PUBSUB_F_NOTIFY_DELETE,
	PUBSUB_F_NOTIFY_CONFIG,
	PUBSUB_F_DELIVER_NOTIFICATIONS,
	PUBSUB_F_DELIVER_PAYLOADS,
	PUBSUB_F_NOTIFICATION_TYPE,
	PUBSUB_F_TITLE,
	PUBSUB_F_TYPE,
	PUBSUB_F_ITEMREPLY,
	PUBSUB_F_COUNT
};

#define PUBSUB_MAX_GROUPS 100
#define PUBSUB_MAX_TEXT 1024            /* title, type, a group's name */

/* A configuration, or the fields a form gave (NULL: not given). */
struct pubsub_config {
	const char *v[PUBSUB_F_COUNT];
	const char *groups[PUBSUB_MAX_GROUPS];  /* roster_groups_allowed */
	unsigned ngroups;
	int groups_set;                 /* the form named the groups */
};

/* The server's limits a form is checked against. */
struct pubsub_form_limits {
	unsigned max_items;             /* the value of "max" */
	unsigned long long max_item_size;   /* pubsub#max_payload_size */
};

enum pubsub_form_kind {
	PUBSUB_FORM_CONFIG = 1,         /* configure, create's <configure/> */
	PUBSUB_FORM_PUBLISH_OPTIONS,
};

enum pubsub_form_verdict {
	PUBSUB_FORM_OK = 0,
	PUBSUB_FORM_CANCEL,             /* <x type='cancel'/> */
	PUBSUB_FORM_BAD_REQUEST,        /* not a submit form of the type */
	PUBSUB_FORM_BAD_VALUE,          /* a field's value is not acceptable */
	PUBSUB_FORM_AUTHORIZE,          /* access_model authorize */
	PUBSUB_FORM_UNKNOWN_FIELD,      /* publish-options: not a field we have */
};

/* Read form x (jabber:x:data) of kind into cfg (cleared first).  On a
 * verdict other than OK, *field_r names the field at fault (or NULL).
 * Unknown fields of a configure form are ignored (XEP-0004: keep the
 * rest); read-only ones must hold their value. */
enum pubsub_form_verdict pubsub_form_parse(struct arena *a,
					   const struct xml_node *x,
					   enum pubsub_form_kind kind,
					   const struct pubsub_form_limits *lim,
					   struct pubsub_config *cfg,
					   const char **field_r);

/* The var of field f ("pubsub#access_model"). */
const char *pubsub_form_var(enum pubsub_field f);

/* The defaults of a new PEP node (XEP-0163 section 5). */
void pubsub_form_defaults(struct pubsub_config *cfg);

/* Append <x xmlns='jabber:x:data' type='form'> of pubsub#node_config
 * with cfg's values (every field given). */
int pubsub_form_render(struct buf *out, const struct pubsub_config *cfg,
		       const struct pubsub_form_limits *lim);

/* Parse a PostgreSQL text[] literal ("{a,\"b c\",NULL}") into out[0..max):
 * its count, or -1 (not a one-dimensional literal, or more than max).
 * NULL elements are NULL. */
int pubsub_form_array(struct arena *a, const char *s, const char **out,
		      int max);
/* Append the text[] literal of v[0..n) (NULL elements as NULL). */
int pubsub_form_array_literal(struct buf *out, const char *const *v,
			      unsigned n);

#endif

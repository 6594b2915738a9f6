/*
 * pubsub.c - the XEP-0060 engine (pubsub.h): the parse of requests into
 * struct pubsub_req with the XEP's error verdicts, in the order the
 * reference servers check them (ejabberd mod_pubsub publish_item:
 * forbidden, nodeid-required, preconditions, item-required,
 * invalid-payload, payload-too-big), and the error table.
 * Failure policy: pure; every request gets either a request or a verdict.
 */
#include "pubsub.h"
#include "jid.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define APP(x) "<" x " xmlns='" NS_PUBSUB_ERRORS "'/>"

static const struct pubsub_error_desc pubsub_errors[PUBSUB_E_COUNT] = {
	[PUBSUB_E_NONE] = { "cancel", "internal-server-error", NULL },
	[PUBSUB_E_BAD_REQUEST] = { "modify", "bad-request", NULL },
	[PUBSUB_E_NODEID_REQUIRED] = { "modify", "bad-request",
		APP("nodeid-required") },
	[PUBSUB_E_CREATE_NODEID_REQUIRED] = { "modify", "not-acceptable",
		APP("nodeid-required") },
	[PUBSUB_E_ITEM_REQUIRED] = { "modify", "bad-request",
		APP("item-required") },
	[PUBSUB_E_INVALID_PAYLOAD] = { "modify", "bad-request",
		APP("invalid-payload") },
	[PUBSUB_E_PAYLOAD_TOO_BIG] = { "modify", "not-acceptable",
		APP("payload-too-big") },
	[PUBSUB_E_INVALID_JID] = { "modify", "bad-request",
		APP("invalid-jid") },
	[PUBSUB_E_PRECONDITION] = { "cancel", "conflict",
		APP("precondition-not-met") },
	[PUBSUB_E_CONFLICT] = { "cancel", "conflict", NULL },
	[PUBSUB_E_FORBIDDEN] = { "auth", "forbidden", NULL },
	[PUBSUB_E_ITEM_NOT_FOUND] = { "cancel", "item-not-found", NULL },
	[PUBSUB_E_NOT_ACCEPTABLE] = { "modify", "not-acceptable", NULL },
	[PUBSUB_E_UNSUPPORTED_ACCESS] = { "modify", "not-acceptable",
		APP("unsupported-access-model") },
	[PUBSUB_E_MAX_NODES] = { "cancel", "not-allowed",
		APP("max-nodes-exceeded") },
	[PUBSUB_E_PRESENCE_REQUIRED] = { "auth", "not-authorized",
		APP("presence-subscription-required") },
	[PUBSUB_E_NOT_IN_GROUP] = { "auth", "not-authorized",
		APP("not-in-roster-group") },
	[PUBSUB_E_CLOSED_NODE] = { "cancel", "not-allowed",
		APP("closed-node") },
	[PUBSUB_E_NOT_SUBSCRIBED] = { "cancel", "unexpected-request",
		APP("not-subscribed") },
	[PUBSUB_E_UNSUPPORTED_OPTIONS] = { "cancel", "feature-not-implemented",
		"<unsupported xmlns='" NS_PUBSUB_ERRORS
		"' feature='subscription-options'/>" },
	[PUBSUB_E_UNSUPPORTED_SUBSCRIBE] = { "cancel",
		"feature-not-implemented", "<unsupported xmlns='"
		NS_PUBSUB_ERRORS "' feature='subscribe'/>" },
	[PUBSUB_E_SERVICE_UNAVAILABLE] = { "cancel", "service-unavailable",
		NULL },
	[PUBSUB_E_TOO_MANY_SUBS] = { "wait", "policy-violation",
		APP("too-many-subscriptions") },
	[PUBSUB_E_NOT_IMPLEMENTED] = { "cancel", "feature-not-implemented",
		NULL },
};

const struct pubsub_error_desc *pubsub_error_of(enum pubsub_error e)
{
	if ((unsigned)e >= PUBSUB_E_COUNT)
		e = PUBSUB_E_NONE;
	return &pubsub_errors[e];
}

/* "prefix field" in a, or prefix when memory ran out. */
static const char *pubsub_why(struct arena *a, const char *prefix,
			      const char *field)
{
	size_t n = strlen(prefix), k = strlen(field);
	char *s = arena_alloc(a, n + k + 2);
	if (s == NULL)
		return prefix;
	memcpy(s, prefix, n);
	s[n] = ' ';
	memcpy(s + n + 1, field, k + 1);
	return s;
}

#define FAIL(err, why) do { *e = (err); *text_r = (why); return -1; } while (0)

/* The one element child of n, or NULL (none or more than one). */
static const struct xml_node *pubsub_only_child(const struct xml_node *n)
{
	const struct xml_node *c = xml_first_element(n);
	return c != NULL && xml_next_element(c) == NULL ? c : NULL;
}

/* A node attribute: NULL when absent or empty. */
static const char *pubsub_node_attr(const struct xml_node *n)
{
	const char *node = xml_attr(n, "node");
	return node != NULL && node[0] != '\0' ? node : NULL;
}

static int pubsub_is_owner(const struct pubsub_service *svc,
			   const char *requester)
{
	return strcmp(requester, svc->jid) == 0;
}

/* The <x/> form inside wrapper (publish-options, configure), parsed. */
static int pubsub_form(struct arena *a, const struct xml_node *wrapper,
		       enum pubsub_form_kind kind,
		       const struct pubsub_service *svc, struct pubsub_req *r,
		       enum pubsub_error *e, const char **text_r)
{
	const struct xml_node *x = xml_child(wrapper, NS_XDATA, "x");
	const char *field;
	if (x == NULL) {
		if (kind == PUBSUB_FORM_PUBLISH_OPTIONS ||
		    r->op == PUBSUB_OP_CONFIGURE_SET)
			FAIL(PUBSUB_E_BAD_REQUEST, "no data form");
		return 0;       /* <create/><configure/>: the defaults */
	}
	enum pubsub_form_verdict v = pubsub_form_parse(a, x, kind, &svc->lim,
						       &r->cfg, &field);
	r->cfg_given = 1;
	switch (v) {
	case PUBSUB_FORM_OK:
		return 0;
	case PUBSUB_FORM_CANCEL:
		r->cancel = 1;
		return 0;
	case PUBSUB_FORM_BAD_REQUEST:
		FAIL(PUBSUB_E_BAD_REQUEST, kind == PUBSUB_FORM_CONFIG ?
		     "not a submitted pubsub#node_config form" :
		     "not a submitted pubsub#publish-options form");
	case PUBSUB_FORM_UNKNOWN_FIELD:
		*e = PUBSUB_E_PRECONDITION;
		*text_r = pubsub_why(a, "unknown field", field);
		return -1;
	case PUBSUB_FORM_AUTHORIZE:
		if (kind == PUBSUB_FORM_PUBLISH_OPTIONS)
			FAIL(PUBSUB_E_PRECONDITION,
			     "access model authorize not offered");
		if (r->op == PUBSUB_OP_CREATE)
			FAIL(PUBSUB_E_UNSUPPORTED_ACCESS,
			     "access model authorize not offered");
		FAIL(PUBSUB_E_NOT_ACCEPTABLE,
		     "access model authorize not offered");
	case PUBSUB_FORM_BAD_VALUE:
		*e = kind == PUBSUB_FORM_PUBLISH_OPTIONS ?
			PUBSUB_E_PRECONDITION : PUBSUB_E_NOT_ACCEPTABLE;
		*text_r = pubsub_why(a, "bad value of",
					  field ? field : "a field");
		return -1;
	}
	FAIL(PUBSUB_E_BAD_REQUEST, "form");
}

static int pubsub_parse_publish(struct arena *a, const struct xml_node *q,
				const struct xml_node *el,
				const struct pubsub_service *svc,
				const char *requester, struct pubsub_req *r,
				enum pubsub_error *e, const char **text_r)
{
	r->op = PUBSUB_OP_PUBLISH;
	if (svc->owner_only_publish && !pubsub_is_owner(svc, requester))
		FAIL(PUBSUB_E_FORBIDDEN, "publish to another account's PEP");
	if ((r->node = pubsub_node_attr(el)) == NULL)
		FAIL(PUBSUB_E_NODEID_REQUIRED, "publish without a node");
	const struct xml_node *po = xml_child(q, NS_PUBSUB, "publish-options");
	if (po != NULL && pubsub_form(a, po, PUBSUB_FORM_PUBLISH_OPTIONS, svc,
				      r, e, text_r) < 0)
		return -1;
	const struct xml_node *item = xml_child(el, NS_PUBSUB, "item");
	if (item == NULL)
		FAIL(PUBSUB_E_ITEM_REQUIRED, "publish without an item");
	if (xml_element_count(el) != 1)
		FAIL(PUBSUB_E_INVALID_PAYLOAD, "more than one item");
	if ((r->payload = pubsub_only_child(item)) == NULL)
		FAIL(PUBSUB_E_INVALID_PAYLOAD,
		     "an item needs exactly one payload element");
	/* section 7.1.3.5: a payload in no namespace would be read back in
	 * the namespace of whatever it is written into */
	if (r->payload->ns == NULL || r->payload->ns[0] == '\0')
		FAIL(PUBSUB_E_INVALID_PAYLOAD,
		     "the payload element has no namespace");
	r->item_id = xml_attr(item, "id");
	if (r->item_id != NULL && r->item_id[0] == '\0')
		r->item_id = NULL;
	return 0;
}

static int pubsub_parse_items(struct arena *a, const struct xml_node *el,
			      const struct pubsub_service *svc,
			      struct pubsub_req *r, enum pubsub_error *e,
			      const char **text_r)
{
	r->op = PUBSUB_OP_ITEMS;
	if ((r->node = pubsub_node_attr(el)) == NULL)
		FAIL(PUBSUB_E_NODEID_REQUIRED, "items without a node");
	const char *max = xml_attr(el, "max_items");
	if (max != NULL) {
		char *end;
		errno = 0;
		long k = strtol(max, &end, 10);
		if (max[0] < '0' || max[0] > '9' || *end != '\0' ||
		    errno != 0 || k < 1)
			FAIL(PUBSUB_E_BAD_REQUEST, "max_items not a positive "
			     "integer");
		r->max_items = k > (long)svc->lim.max_items ?
			svc->lim.max_items : (unsigned)k;
	}
	unsigned n = xml_element_count(el);
	if (n > svc->max_ids)
		FAIL(PUBSUB_E_BAD_REQUEST, "too many item ids");
	r->ids = n ? arena_alloc(a, n * sizeof(*r->ids)) : NULL;
	if (n && r->ids == NULL)
		FAIL(PUBSUB_E_NONE, "out of memory");
	for (const struct xml_node *i = xml_first_element(el); i != NULL;
	     i = xml_next_element(i)) {
		const char *id = xml_attr(i, "id");
		if (!xml_is(i, NS_PUBSUB, "item") || id == NULL)
			FAIL(PUBSUB_E_BAD_REQUEST, "an item without an id");
		r->ids[r->nids++] = id;
	}
	return 0;
}

/* XEP-0059 in an items request (XEP-0060 section 6.5.4): <max/> a
 * non-negative integer, <after/> an item id, <before/> an item id or
 * empty (the last page), not both; <index/> (a page out of order) is
 * not offered (XEP-0059 section 2.5: feature-not-implemented). */
static int pubsub_parse_rsm(struct arena *a, const struct xml_node *q,
			    const struct pubsub_service *svc,
			    struct pubsub_req *r, enum pubsub_error *e,
			    const char **text_r)
{
	const struct xml_node *set = xml_child(q, NS_RSM, "set");
	if (set == NULL)
		return 0;
	r->rsm = 1;
	for (const struct xml_node *c = xml_first_element(set); c != NULL;
	     c = xml_next_element(c)) {
		char *text = xml_text(a, c);
		if (text == NULL)
			FAIL(PUBSUB_E_NONE, "out of memory");
		if (xml_is(c, NS_RSM, "max")) {
			char *end;
			errno = 0;
			unsigned long v = strtoul(text, &end, 10);
			if (r->rsm_max_set || text[0] < '0' || text[0] > '9' ||
			    *end != '\0' || errno != 0)
				FAIL(PUBSUB_E_BAD_REQUEST, "RSM max not a "
				     "non-negative integer");
			r->rsm_max_set = 1;
			r->rsm_max = v > svc->lim.max_items ?
				svc->lim.max_items : (unsigned)v;
		} else if (xml_is(c, NS_RSM, "after")) {
			if (r->rsm_after != NULL || text[0] == '\0')
				FAIL(PUBSUB_E_BAD_REQUEST, "RSM after without "
				     "an item id");
			r->rsm_after = text;
		} else if (xml_is(c, NS_RSM, "before")) {
			if (r->rsm_before != NULL)
				FAIL(PUBSUB_E_BAD_REQUEST, "RSM before twice");
			r->rsm_before = text;
		} else if (xml_is(c, NS_RSM, "index")) {
			FAIL(PUBSUB_E_NOT_IMPLEMENTED, "RSM index not offered");
		} else {
			FAIL(PUBSUB_E_BAD_REQUEST, "unknown RSM element");
		}
	}
	if (r->rsm_after != NULL && r->rsm_before != NULL)
		FAIL(PUBSUB_E_BAD_REQUEST, "RSM after and before");
	if (svc->max_id_length != 0 &&
	    ((r->rsm_after != NULL &&
	      strlen(r->rsm_after) > svc->max_id_length) ||
	     (r->rsm_before != NULL &&
	      strlen(r->rsm_before) > svc->max_id_length)))
		FAIL(PUBSUB_E_ITEM_NOT_FOUND, "RSM item id longer than "
		     "pep.max_id_length");
	return 0;
}

static int pubsub_parse_affs(struct arena *a, const struct xml_node *el,
			     struct pubsub_req *r, enum pubsub_error *e,
			     const char **text_r)
{
	for (const struct xml_node *i = xml_first_element(el); i != NULL;
	     i = xml_next_element(i)) {
		const char *jid = xml_attr(i, "jid");
		const char *aff = xml_attr(i, "affiliation");
		struct jid j;
		const char *error;
		if (!xml_is(i, NS_PUBSUB_OWNER, "affiliation") || jid == NULL ||
		    aff == NULL)
			FAIL(PUBSUB_E_BAD_REQUEST, "affiliation without jid "
			     "or affiliation");
		if (jid_parse(a, jid, &j, &error) < 0)
			FAIL(PUBSUB_E_BAD_REQUEST, "affiliation of a bad JID");
		if (strcmp(aff, "owner") == 0)
			FAIL(PUBSUB_E_NOT_ACCEPTABLE, "a PEP node has one "
			     "owner");
		if (strcmp(aff, "member") != 0 && strcmp(aff, "outcast") != 0 &&
		    strcmp(aff, "none") != 0)
			FAIL(PUBSUB_E_NOT_ACCEPTABLE, "affiliation not offered");
		if (r->naffs >= PUBSUB_MAX_AFFS)
			FAIL(PUBSUB_E_NOT_ACCEPTABLE, "too many affiliations");
		const char *bare = jid_bare(a, &j);
		if (bare == NULL)
			FAIL(PUBSUB_E_NONE, "out of memory");
		/* section 8.9.2 does not say which of two wins: refused */
		for (unsigned k = 0; k < r->naffs; k++)
			if (strcmp(r->affs[k].jid, bare) == 0)
				FAIL(PUBSUB_E_BAD_REQUEST, "the same JID twice "
				     "in an affiliations set");
		r->affs[r->naffs].jid = bare;
		r->affs[r->naffs++].affiliation = aff;
	}
	return 0;
}

/* Owner subscriptions set (section 8.8.2): <subscription jid=''
 * subscription='none|subscribed'/> entries, JIDs bare or full (a
 * subscription is to the JID given). */
static int pubsub_parse_subs(struct arena *a, const struct xml_node *el,
			     struct pubsub_req *r, enum pubsub_error *e,
			     const char **text_r)
{
	for (const struct xml_node *i = xml_first_element(el); i != NULL;
	     i = xml_next_element(i)) {
		const char *jid = xml_attr(i, "jid");
		const char *sub = xml_attr(i, "subscription");
		struct jid j;
		const char *error;
		if (!xml_is(i, NS_PUBSUB_OWNER, "subscription") || jid == NULL ||
		    sub == NULL)
			FAIL(PUBSUB_E_BAD_REQUEST, "subscription without jid "
			     "or subscription");
		if (jid_parse(a, jid, &j, &error) < 0)
			FAIL(PUBSUB_E_BAD_REQUEST, "subscription of a bad JID");
		/* pending and unconfigured need authorize / options */
		if (strcmp(sub, "subscribed") != 0 && strcmp(sub, "none") != 0)
			FAIL(PUBSUB_E_NOT_ACCEPTABLE, "subscription state not "
			     "offered");
		if (r->naffs >= PUBSUB_MAX_AFFS)
			FAIL(PUBSUB_E_NOT_ACCEPTABLE, "too many subscriptions");
		const char *full = jid_full(a, &j);
		if (full == NULL)
			FAIL(PUBSUB_E_NONE, "out of memory");
		for (unsigned k = 0; k < r->naffs; k++)
			if (strcmp(r->affs[k].jid, full) == 0)
				FAIL(PUBSUB_E_BAD_REQUEST, "the same JID twice "
				     "in a subscriptions set");
		r->affs[r->naffs].jid = full;
		r->affs[r->naffs++].affiliation = sub;
	}
	return 0;
}

/* <pubsub xmlns='...#owner'/>: configure, default, purge, delete,
 * affiliations, subscriptions. */
static int pubsub_parse_owner(struct arena *a, const struct xml_node *el,
			      int is_set, const struct pubsub_service *svc,
			      const char *requester, struct pubsub_req *r,
			      enum pubsub_error *e, const char **text_r)
{
	r->node = pubsub_node_attr(el);
	if (xml_is(el, NS_PUBSUB_OWNER, "default") && !is_set) {
		r->op = PUBSUB_OP_DEFAULT;
		return 0;
	}
	if (xml_is(el, NS_PUBSUB_OWNER, "configure"))
		r->op = is_set ? PUBSUB_OP_CONFIGURE_SET : PUBSUB_OP_CONFIGURE_GET;
	else if (xml_is(el, NS_PUBSUB_OWNER, "purge") && is_set)
		r->op = PUBSUB_OP_PURGE;
	else if (xml_is(el, NS_PUBSUB_OWNER, "delete") && is_set)
		r->op = PUBSUB_OP_DELETE;
	else if (xml_is(el, NS_PUBSUB_OWNER, "affiliations"))
		r->op = is_set ? PUBSUB_OP_OWNER_AFFILIATIONS_SET :
			PUBSUB_OP_OWNER_AFFILIATIONS_GET;
	else if (xml_is(el, NS_PUBSUB_OWNER, "subscriptions"))
		r->op = is_set ? PUBSUB_OP_OWNER_SUBSCRIPTIONS_SET :
			PUBSUB_OP_OWNER_SUBSCRIPTIONS_GET;
	else
		FAIL(PUBSUB_E_BAD_REQUEST, "not an owner request we know");
	if (!pubsub_is_owner(svc, requester))
		FAIL(PUBSUB_E_FORBIDDEN, "owner request of another account");
	if (r->node == NULL)
		FAIL(PUBSUB_E_NODEID_REQUIRED, "owner request without a node");
	if (r->op == PUBSUB_OP_CONFIGURE_SET)
		return pubsub_form(a, el, PUBSUB_FORM_CONFIG, svc, r, e,
				   text_r);
	if (r->op == PUBSUB_OP_OWNER_AFFILIATIONS_SET)
		return pubsub_parse_affs(a, el, r, e, text_r);
	if (r->op == PUBSUB_OP_OWNER_SUBSCRIPTIONS_SET)
		return pubsub_parse_subs(a, el, r, e, text_r);
	return 0;
}

static int pubsub_parse_req(struct arena *a, const struct xml_node *q,
			    int is_set, const struct pubsub_service *svc,
			    const char *requester, struct pubsub_req *r,
			    enum pubsub_error *e, const char **text_r)
{
	const struct xml_node *el = xml_first_element(q);
	if (el == NULL)
		FAIL(PUBSUB_E_BAD_REQUEST, "empty pubsub element");
	if (xml_is(q, NS_PUBSUB_OWNER, "pubsub"))
		return pubsub_parse_owner(a, el, is_set, svc, requester, r, e,
					  text_r);
	if (!xml_is(q, NS_PUBSUB, "pubsub"))
		FAIL(PUBSUB_E_BAD_REQUEST, "not a pubsub element");
	if (is_set && xml_is(el, NS_PUBSUB, "publish"))
		return pubsub_parse_publish(a, q, el, svc, requester, r, e,
					    text_r);
	if (!is_set && xml_is(el, NS_PUBSUB, "items"))
		return pubsub_parse_items(a, el, svc, r, e, text_r) < 0 ? -1 :
		       pubsub_parse_rsm(a, q, svc, r, e, text_r);
	if (is_set && xml_is(el, NS_PUBSUB, "retract")) {
		r->op = PUBSUB_OP_RETRACT;
		if (!pubsub_is_owner(svc, requester))
			FAIL(PUBSUB_E_FORBIDDEN, "retract of another "
			     "account's item");
		if ((r->node = pubsub_node_attr(el)) == NULL)
			FAIL(PUBSUB_E_NODEID_REQUIRED, "retract without a node");
		const struct xml_node *item = xml_child(el, NS_PUBSUB, "item");
		r->item_id = item != NULL ? xml_attr(item, "id") : NULL;
		if (r->item_id == NULL || r->item_id[0] == '\0')
			FAIL(PUBSUB_E_ITEM_REQUIRED, "retract without an item "
			     "id");
		const char *notify = xml_attr(el, "notify");
		r->notify = notify != NULL && (strcmp(notify, "1") == 0 ||
					       strcmp(notify, "true") == 0);
		return 0;
	}
	if (is_set && xml_is(el, NS_PUBSUB, "create")) {
		r->op = PUBSUB_OP_CREATE;
		if (!pubsub_is_owner(svc, requester))
			FAIL(PUBSUB_E_FORBIDDEN, "create on another account");
		if ((r->node = pubsub_node_attr(el)) == NULL &&
		    !svc->instant_nodes)
			FAIL(PUBSUB_E_CREATE_NODEID_REQUIRED,
			     "instant nodes not offered");
		const struct xml_node *c = xml_child(q, NS_PUBSUB, "configure");
		if (c != NULL)
			return pubsub_form(a, c, PUBSUB_FORM_CONFIG, svc, r, e,
					   text_r);
		return 0;
	}
	if (is_set && (xml_is(el, NS_PUBSUB, "subscribe") ||
		       xml_is(el, NS_PUBSUB, "unsubscribe"))) {
		r->op = strcmp(el->name, "subscribe") == 0 ?
			PUBSUB_OP_SUBSCRIBE : PUBSUB_OP_UNSUBSCRIBE;
		r->node = pubsub_node_attr(el);
		r->jid = xml_attr(el, "jid");
		struct jid j;
		const char *error;
		if (r->jid == NULL || jid_parse(a, r->jid, &j, &error) < 0)
			FAIL(PUBSUB_E_INVALID_JID, "subscription jid missing "
			     "or not a JID");
		/* subscribe: the JIDs do not match (6.1.3.1); unsubscribe:
		 * insufficient privileges (6.2.3.3) */
		if (strcmp(jid_bare(a, &j), requester) != 0)
			FAIL(r->op == PUBSUB_OP_SUBSCRIBE ?
			     PUBSUB_E_INVALID_JID : PUBSUB_E_FORBIDDEN,
			     "subscription jid is not the requester's");
		if ((r->jid = jid_full(a, &j)) == NULL)
			FAIL(PUBSUB_E_NONE, "out of memory");
		if (r->node == NULL)
			FAIL(PUBSUB_E_NODEID_REQUIRED, "subscription without "
			     "a node");
		/* section 6.3.7 subscribe and configure: options are not
		 * offered (one subscription state, no options form) */
		if (r->op == PUBSUB_OP_SUBSCRIBE &&
		    xml_child(q, NS_PUBSUB, "options") != NULL)
			FAIL(PUBSUB_E_UNSUPPORTED_OPTIONS, "subscription "
			     "options");
		return 0;
	}
	if (xml_is(el, NS_PUBSUB, "options")) {
		r->op = PUBSUB_OP_OPTIONS;
		FAIL(PUBSUB_E_UNSUPPORTED_OPTIONS, "subscription options");
	}
	if (!is_set && xml_is(el, NS_PUBSUB, "subscriptions")) {
		r->op = PUBSUB_OP_SUBSCRIPTIONS;
		r->node = pubsub_node_attr(el);
		return 0;
	}
	if (!is_set && xml_is(el, NS_PUBSUB, "affiliations")) {
		r->op = PUBSUB_OP_AFFILIATIONS;
		r->node = pubsub_node_attr(el);
		return 0;
	}
	FAIL(PUBSUB_E_BAD_REQUEST, "not a pubsub request we know");
}

int pubsub_parse(struct arena *a, const struct xml_node *q, int is_set,
		 const struct pubsub_service *svc, const char *requester,
		 struct pubsub_req *r, enum pubsub_error *e,
		 const char **text_r)
{
	memset(r, 0, sizeof(*r));
	*e = PUBSUB_E_NONE;
	*text_r = NULL;
	if (pubsub_parse_req(a, q, is_set, svc, requester, r, e, text_r) < 0)
		return -1;
	/* Names the service stores are bounded (the account's quota counts
	 * them; an index row has a size limit).  XEP-0060 has no condition
	 * for it: not-acceptable, as payload-too-big (RFC 6120 8.3.3.10:
	 * the request does not meet the service's criteria); the request
	 * is not malformed, so not bad-request. */
	if (svc->max_id_length != 0 && r->node != NULL &&
	    strlen(r->node) > svc->max_id_length)
		FAIL(PUBSUB_E_NOT_ACCEPTABLE, "node name longer than "
		     "pep.max_id_length");
	if (svc->max_id_length != 0 && r->item_id != NULL &&
	    strlen(r->item_id) > svc->max_id_length)
		FAIL(PUBSUB_E_NOT_ACCEPTABLE, "item id longer than "
		     "pep.max_id_length");
	return 0;
}

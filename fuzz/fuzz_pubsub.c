/*
 * fuzz_pubsub.c - XEP-0060 requests as a client sends them to a PEP
 * service: pubsub_parse() (worker/pubsub.c) with the forms of
 * pubsub_form.c, as worker/pep.c runs them.  Limits: max_items 256,
 * max_ids 8, max_id_length 64.  Properties:
 *  - no memory error or undefined behaviour (ASan, UBSan);
 *  - a request is accepted or gets a verdict of the error table, whose
 *    stanza error and pubsub#errors element are well-formed;
 *  - an accepted request is whole: a node where the operation needs
 *    one, exactly one payload element to publish, ids <= max_ids,
 *    max_items <= the server's, affiliations of distinct bare JIDs,
 *    node names and item ids of at most max_id_length bytes, a payload
 *    root in a namespace; XEP-0059 <set/> only on items, its max
 *    <= max_items, after/before ids of at most max_id_length, not both;
 *  - every configuration value accepted is normalized (booleans
 *    true/false, max_items 'max' or 1..max, list values among the
 *    options), and the node_config form rendered from it, submitted
 *    back, reads to the same values and groups;
 *  - the text[] literals of the values read back to the same strings.
 * Input: one XML element: an <iq/> (its first child is the payload) or
 * the <pubsub/> itself; type set unless the iq says get.
 */
#include "fuzz.h"
#include "xmlinput.h"
#include "arena.h"
#include "buf.h"
#include "../worker/pubsub.h"
#include "../worker/pubsub_form.h"
#include "../worker/xml.h"

#include <string.h>

static const struct pubsub_service fuzz_svc = {
	.jid = "juliet@localhost", .owner_only_publish = 1,
	.lim = { 256, 262144 }, .max_ids = 8, .max_id_length = 64,
};

static void fuzz_check_values(const struct pubsub_config *c)
{
	for (int i = 0; i < PUBSUB_F_COUNT; i++) {
		const char *v = c->v[i];
		if (v == NULL)
			continue;
		switch (i) {
		case PUBSUB_F_PERSIST_ITEMS: case PUBSUB_F_NOTIFY_RETRACT:
		case PUBSUB_F_NOTIFY_DELETE: case PUBSUB_F_NOTIFY_CONFIG:
		case PUBSUB_F_DELIVER_NOTIFICATIONS:
		case PUBSUB_F_DELIVER_PAYLOADS:
			FUZZ_CHECK(strcmp(v, "true") == 0 ||
				   strcmp(v, "false") == 0, "boolean '%s'", v);
			break;
		case PUBSUB_F_MAX_ITEMS: {
			if (strcmp(v, "max") == 0)
				break;
			char *end;
			long k = strtol(v, &end, 10);
			FUZZ_CHECK(*end == '\0' && k >= 1 && k <= 256 &&
				   v[0] != '0', "max_items '%s'", v);
			break;
		}
		case PUBSUB_F_ACCESS_MODEL:
			FUZZ_CHECK(strcmp(v, "open") == 0 ||
				   strcmp(v, "presence") == 0 ||
				   strcmp(v, "roster") == 0 ||
				   strcmp(v, "whitelist") == 0,
				   "access_model '%s'", v);
			break;
		default:
			FUZZ_CHECK(strlen(v) <= PUBSUB_MAX_TEXT, "long value");
		}
	}
}

/* Render c (over the defaults), submit it back, compare. */
static void fuzz_round_trip(struct arena *a, const struct pubsub_config *c)
{
	struct pubsub_config full, back;
	const char *f;
	pubsub_form_defaults(&full);
	for (int i = 0; i < PUBSUB_F_COUNT; i++)
		if (c->v[i] != NULL)
			full.v[i] = c->v[i];
	if (c->groups_set) {
		memcpy(full.groups, c->groups, sizeof(full.groups));
		full.ngroups = c->ngroups;
	}
	struct buf out;
	buf_init(&out, 0);
	FUZZ_CHECK(pubsub_form_render(&out, &full, &fuzz_svc.lim) == 0,
		   "render failed");
	buf_append(&out, "", 1);
	char *text = arena_strdup(a, buf_head(&out));
	buf_free(&out);
	char *t = strstr(text, "type='form'");
	FUZZ_CHECK(t != NULL, "no form type");
	memcpy(t, "type='xxxx'", 11);
	struct buf sub;
	buf_init(&sub, 0);
	buf_appendf(&sub, "%.*stype='submit'%s", (int)(t - text), text, t + 11);
	const char *error;
	struct xml_node *x = xml_parse(a, buf_head(&sub), buf_used(&sub),
				       &error);
	FUZZ_CHECK(x != NULL, "rendered form does not parse: %s", error);
	FUZZ_CHECK(pubsub_form_parse(a, x, PUBSUB_FORM_CONFIG, &fuzz_svc.lim,
				     &back, &f) == PUBSUB_FORM_OK,
		   "rendered form refused at %s", f ? f : "?");
	for (int i = 0; i < PUBSUB_F_COUNT; i++)
		FUZZ_CHECK(back.v[i] != NULL && strcmp(back.v[i], full.v[i]) == 0,
			   "field %d: '%s' read back as '%s'", i, full.v[i],
			   back.v[i] ? back.v[i] : "(none)");
	FUZZ_CHECK(back.ngroups == full.ngroups, "groups %u -> %u",
		   full.ngroups, back.ngroups);
	for (unsigned g = 0; g < back.ngroups; g++)
		FUZZ_CHECK(strcmp(back.groups[g], full.groups[g]) == 0,
			   "group %u differs", g);
	buf_free(&sub);
	/* the values as the SQL functions get them */
	struct buf lit;
	const char *vals[PUBSUB_F_COUNT];
	buf_init(&lit, 0);
	FUZZ_CHECK(pubsub_form_array_literal(&lit, full.v, PUBSUB_F_COUNT) == 0,
		   "literal");
	buf_append(&lit, "", 1);
	FUZZ_CHECK(pubsub_form_array(a, buf_head(&lit), vals, PUBSUB_F_COUNT)
		   == PUBSUB_F_COUNT, "literal %s does not read back",
		   buf_head(&lit));
	for (int i = 0; i < PUBSUB_F_COUNT; i++)
		FUZZ_CHECK(strcmp(vals[i], full.v[i]) == 0, "literal value %d",
			   i);
	buf_free(&lit);
}

static void fuzz_check_error(struct arena *a, enum pubsub_error e)
{
	FUZZ_CHECK((unsigned)e < PUBSUB_E_COUNT && e != PUBSUB_E_NONE,
		   "verdict %d", (int)e);
	const struct pubsub_error_desc *d = pubsub_error_of(e);
	struct buf b;
	const char *error;
	buf_init(&b, 0);
	buf_appendf(&b, "<error type='%s'><%s xmlns='urn:ietf:params:xml:ns:"
		    "xmpp-stanzas'/>%s</error>", d->type, d->cond,
		    d->app ? d->app : "");
	FUZZ_CHECK(xml_parse(a, buf_head(&b), buf_used(&b), &error) != NULL,
		   "error %d not well-formed", (int)e);
	buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct arena *a;
	struct xml_node *n = fuzz_xml_input(&a, data, size);
	int set = 1;
	if (n != NULL && xml_is(n, "jabber:client", "iq")) {
		const char *type = xml_attr(n, "type");
		set = type == NULL || strcmp(type, "get") != 0;
		n = xml_first_element(n);
	}
	if (n != NULL) {
		struct pubsub_req *r = arena_alloc(a, sizeof(*r));
		enum pubsub_error e;
		const char *why;
		if (pubsub_parse(a, n, set, &fuzz_svc, "juliet@localhost", r,
				 &e, &why) < 0) {
			fuzz_check_error(a, e);
		} else {
			FUZZ_CHECK(r->op >= PUBSUB_OP_PUBLISH &&
				   r->op <= PUBSUB_OP_OWNER_SUBSCRIPTIONS_SET,
				   "op %d", (int)r->op);
			if (r->op != PUBSUB_OP_SUBSCRIPTIONS &&
			    r->op != PUBSUB_OP_AFFILIATIONS &&
			    r->op != PUBSUB_OP_DEFAULT)
				FUZZ_CHECK(r->node != NULL && r->node[0] != '\0',
					   "op %d without a node", (int)r->op);
			if (r->op == PUBSUB_OP_PUBLISH)
				FUZZ_CHECK(r->payload != NULL &&
					   r->payload->name != NULL,
					   "publish without a payload");
			if (r->op == PUBSUB_OP_RETRACT)
				FUZZ_CHECK(r->item_id != NULL && r->item_id[0],
					   "retract without an id");
			FUZZ_CHECK(r->nids <= fuzz_svc.max_ids, "%u ids", r->nids);
			FUZZ_CHECK(r->max_items <= fuzz_svc.lim.max_items,
				   "max_items %u", r->max_items);
			/* XEP-0059 on items: only there, bounded, the
			 * cursors non-empty ids of at most max_id_length
			 * (before may be empty: the last page), not both */
			FUZZ_CHECK(!r->rsm || r->op == PUBSUB_OP_ITEMS,
				   "RSM on op %d", (int)r->op);
			FUZZ_CHECK(r->rsm_max <= fuzz_svc.lim.max_items,
				   "RSM max %u", r->rsm_max);
			FUZZ_CHECK(r->rsm_after == NULL ||
				   (r->rsm_after[0] != '\0' &&
				    strlen(r->rsm_after) <=
				    fuzz_svc.max_id_length), "RSM after");
			FUZZ_CHECK(r->rsm_before == NULL ||
				   strlen(r->rsm_before) <=
				   fuzz_svc.max_id_length, "RSM before");
			FUZZ_CHECK(r->rsm_after == NULL ||
				   r->rsm_before == NULL, "RSM after+before");
			if (r->op == PUBSUB_OP_SUBSCRIBE ||
			    r->op == PUBSUB_OP_UNSUBSCRIBE)
				FUZZ_CHECK(r->jid != NULL &&
					   strncmp(r->jid, "juliet@localhost",
						   16) == 0 &&
					   (r->jid[16] == '\0' ||
					    r->jid[16] == '/'),
					   "subscription of another JID");
			for (unsigned i = 0; i < r->naffs; i++) {
				if (r->op == PUBSUB_OP_OWNER_SUBSCRIPTIONS_SET)
					FUZZ_CHECK(strcmp(r->affs[i].affiliation,
							  "none") == 0 ||
						   strcmp(r->affs[i].affiliation,
							  "subscribed") == 0,
						   "subscription state %s",
						   r->affs[i].affiliation);
				else
					FUZZ_CHECK(strchr(r->affs[i].jid, '/') ==
						   NULL, "affiliation of a full JID");
				for (unsigned k = 0; k < i; k++)
					FUZZ_CHECK(strcmp(r->affs[i].jid,
							  r->affs[k].jid) != 0,
						   "JID twice in affiliations");
			}
			FUZZ_CHECK(r->node == NULL || strlen(r->node) <= 64,
				   "node name of %zu bytes", strlen(r->node));
			FUZZ_CHECK(r->item_id == NULL ||
				   strlen(r->item_id) <= 64,
				   "item id of %zu bytes", strlen(r->item_id));
			if (r->op == PUBSUB_OP_PUBLISH)
				FUZZ_CHECK(r->payload->ns != NULL &&
					   r->payload->ns[0] != '\0',
					   "payload root in no namespace");
			if (r->cfg_given && !r->cancel) {
				fuzz_check_values(&r->cfg);
				fuzz_round_trip(a, &r->cfg);
			}
		}
	}
	arena_reset(a);
	return 0;
}

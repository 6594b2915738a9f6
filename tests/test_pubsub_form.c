/*
 * test_pubsub_form.c - the XEP-0060 forms and request parse
 * (worker/pubsub_form.c, worker/pubsub.c): publish-options normalized
 * so stored values and preconditions compare (booleans, max_items
 * 'max'), configure forms (partial, full round trip, cancel, bad
 * values), the rendered form read back, PostgreSQL text[] literals, and
 * the verdicts of requests in the order the XEP checks them.
 */
#include <string.h>

#include <criterion/criterion.h>

#include "arena.h"
#include "buf.h"
#include "worker/pubsub.h"
#include "worker/pubsub_form.h"
#include "worker/xml.h"

static struct arena arena;
static const struct pubsub_form_limits lim = { 256, 262144 };

static void setup(void) { arena_init(&arena, 4096); }
static void teardown(void) { arena_free(&arena); }
TestSuite(pubsub, .init = setup, .fini = teardown);

static struct xml_node *parse(const char *text)
{
	const char *error;
	struct xml_node *n = xml_parse(&arena, text, strlen(text), &error);
	cr_assert_not_null(n, "%s: %s", text, error);
	return n;
}

static const char *po(const char *fields)
{
	struct buf b;
	buf_init(&b, 0);
	buf_appendf(&b, "<x xmlns='jabber:x:data' type='submit'><field "
		    "var='FORM_TYPE' type='hidden'><value>%s</value></field>"
		    "%s</x>", NS_PUBSUB_PUBLISH_OPTIONS, fields);
	buf_append(&b, "", 1);
	char *s = arena_strdup(&arena, buf_head(&b));
	buf_free(&b);
	return s;
}

static enum pubsub_form_verdict opts(const char *fields,
				     struct pubsub_config *c,
				     const char **field)
{
	return pubsub_form_parse(&arena, parse(po(fields)),
				 PUBSUB_FORM_PUBLISH_OPTIONS, &lim, c, field);
}

Test(pubsub, publish_options_normalized)
{
	struct pubsub_config c;
	const char *f;
	cr_assert_eq(opts("<field var='pubsub#persist_items'><value>True"
			  "</value></field>", &c, &f), PUBSUB_FORM_BAD_VALUE);
	cr_assert_eq(opts("<field var='pubsub#persist_items'><value>1</value>"
			  "</field><field var='pubsub#access_model'><value>open"
			  "</value></field><field var='pubsub#max_items'>"
			  "<value>max</value></field>", &c, &f), PUBSUB_FORM_OK);
	cr_assert_str_eq(c.v[PUBSUB_F_PERSIST_ITEMS], "true");
	cr_assert_str_eq(c.v[PUBSUB_F_ACCESS_MODEL], "open");
	cr_assert_str_eq(c.v[PUBSUB_F_MAX_ITEMS], "max");
	cr_assert_null(c.v[PUBSUB_F_SEND_LAST]);
	cr_assert_eq(c.groups_set, 0);
	cr_assert_eq(opts("<field var='pubsub#deliver_payloads'><value>false"
			  "</value></field><field var='pubsub#max_items'><value>"
			  "007</value></field>", &c, &f), PUBSUB_FORM_OK);
	cr_assert_str_eq(c.v[PUBSUB_F_DELIVER_PAYLOADS], "false");
	cr_assert_str_eq(c.v[PUBSUB_F_MAX_ITEMS], "7");
}

Test(pubsub, publish_options_refused)
{
	struct pubsub_config c;
	const char *f;
	cr_assert_eq(opts("<field var='pubsub#frob'><value>1</value></field>",
			  &c, &f), PUBSUB_FORM_UNKNOWN_FIELD);
	cr_assert_str_eq(f, "pubsub#frob");
	cr_assert_eq(opts("<field var='pubsub#max_items'><value>257</value>"
			  "</field>", &c, &f), PUBSUB_FORM_BAD_VALUE);
	cr_assert_str_eq(f, "pubsub#max_items");
	cr_assert_eq(opts("<field var='pubsub#max_items'><value>0</value>"
			  "</field>", &c, &f), PUBSUB_FORM_BAD_VALUE);
	cr_assert_eq(opts("<field var='pubsub#access_model'><value>authorize"
			  "</value></field>", &c, &f), PUBSUB_FORM_AUTHORIZE);
	cr_assert_eq(opts("<field var='pubsub#max_payload_size'><value>262144"
			  "</value></field>", &c, &f), PUBSUB_FORM_OK);
	cr_assert_eq(opts("<field var='pubsub#max_payload_size'><value>1"
			  "</value></field>", &c, &f), PUBSUB_FORM_BAD_VALUE);
	/* no FORM_TYPE, another FORM_TYPE, not a submit form */
	cr_assert_eq(pubsub_form_parse(&arena, parse("<x xmlns='jabber:x:data' "
		"type='submit'/>"), PUBSUB_FORM_PUBLISH_OPTIONS, &lim, &c, &f),
		PUBSUB_FORM_BAD_REQUEST);
	cr_assert_eq(pubsub_form_parse(&arena, parse("<x xmlns='jabber:x:data' "
		"type='submit'><field var='FORM_TYPE'><value>" NS_PUBSUB_NODE_CONFIG
		"</value></field></x>"), PUBSUB_FORM_PUBLISH_OPTIONS, &lim, &c,
		&f), PUBSUB_FORM_BAD_REQUEST);
	cr_assert_eq(pubsub_form_parse(&arena, parse("<x xmlns='jabber:x:data' "
		"type='form'/>"), PUBSUB_FORM_PUBLISH_OPTIONS, &lim, &c, &f),
		PUBSUB_FORM_BAD_REQUEST);
}

Test(pubsub, configure_partial_cancel_groups)
{
	struct pubsub_config c;
	const char *f;
	/* Gajim: only access_model, no FORM_TYPE; unknown fields ignored */
	cr_assert_eq(pubsub_form_parse(&arena, parse("<x xmlns='jabber:x:data' "
		"type='submit'><field var='pubsub#access_model'><value>open"
		"</value></field><field var='x#y'><value>z</value></field></x>"),
		PUBSUB_FORM_CONFIG, &lim, &c, &f), PUBSUB_FORM_OK);
	cr_assert_str_eq(c.v[PUBSUB_F_ACCESS_MODEL], "open");
	for (int i = 1; i < PUBSUB_F_COUNT; i++)
		cr_assert_null(c.v[i]);
	cr_assert_eq(pubsub_form_parse(&arena, parse("<x xmlns='jabber:x:data' "
		"type='cancel'/>"), PUBSUB_FORM_CONFIG, &lim, &c, &f),
		PUBSUB_FORM_CANCEL);
	cr_assert_eq(pubsub_form_parse(&arena, parse("<x xmlns='jabber:x:data' "
		"type='submit'><field var='pubsub#roster_groups_allowed'><value>A"
		"</value><value>B</value><value>A</value></field></x>"),
		PUBSUB_FORM_CONFIG, &lim, &c, &f), PUBSUB_FORM_OK);
	cr_assert_eq(c.groups_set, 1);
	cr_assert_eq(c.ngroups, 2);
	cr_assert_str_eq(c.groups[1], "B");
	cr_assert_eq(pubsub_form_parse(&arena, parse("<x xmlns='jabber:x:data' "
		"type='submit'><field var='pubsub#publish_model'><value>open"
		"</value></field></x>"), PUBSUB_FORM_CONFIG, &lim, &c, &f),
		PUBSUB_FORM_BAD_VALUE);
	/* two values of a single field */
	cr_assert_eq(pubsub_form_parse(&arena, parse("<x xmlns='jabber:x:data' "
		"type='submit'><field var='pubsub#title'><value>a</value><value>"
		"b</value></field></x>"), PUBSUB_FORM_CONFIG, &lim, &c, &f),
		PUBSUB_FORM_BAD_VALUE);
}

Test(pubsub, rendered_form_reads_back)
{
	struct pubsub_config d, back;
	struct buf out;
	const char *f;
	pubsub_form_defaults(&d);
	d.v[PUBSUB_F_TITLE] = "<J & R>";
	d.groups[0] = "Friends";
	d.ngroups = 1;
	buf_init(&out, 0);
	cr_assert_eq(pubsub_form_render(&out, &d, &lim), 0);
	buf_append(&out, "", 1);
	/* the form, submitted as it is (a full round trip) */
	char *text = arena_strdup(&arena, buf_head(&out));
	char *t = strstr(text, "type='form'");
	cr_assert_not_null(t);
	memcpy(t, "type='subm'", 11);       /* same length: patch below */
	struct buf sub;
	buf_init(&sub, 0);
	buf_appendf(&sub, "%.*stype='submit'%s", (int)(t - text), text, t + 11);
	buf_append(&sub, "", 1);
	cr_assert_eq(pubsub_form_parse(&arena, parse(buf_head(&sub)),
				       PUBSUB_FORM_CONFIG, &lim, &back, &f),
		     PUBSUB_FORM_OK, "%s", buf_head(&sub));
	for (int i = 0; i < PUBSUB_F_COUNT; i++)
		cr_assert_str_eq(back.v[i], d.v[i], "field %d", i);
	cr_assert_eq(back.ngroups, 1);
	cr_assert_str_eq(back.groups[0], "Friends");
	buf_free(&out);
	buf_free(&sub);
}

Test(pubsub, text_arrays)
{
	const char *v[8];
	cr_assert_eq(pubsub_form_array(&arena, "{}", v, 8), 0);
	cr_assert_eq(pubsub_form_array(&arena, "{a,\"b c\",NULL,\"NULL\","
				       "\"q\\\"x\\\\\"}", v, 8), 5);
	cr_assert_str_eq(v[0], "a");
	cr_assert_str_eq(v[1], "b c");
	cr_assert_null(v[2]);
	cr_assert_str_eq(v[3], "NULL");
	cr_assert_str_eq(v[4], "q\"x\\");
	cr_assert_eq(pubsub_form_array(&arena, "{a,b", v, 8), -1);
	cr_assert_eq(pubsub_form_array(&arena, "{a,b,c}", v, 2), -1);
	/* a literal written reads back */
	const char *in[3] = { "x\"y", NULL, "{,}" };
	struct buf b;
	buf_init(&b, 0);
	cr_assert_eq(pubsub_form_array_literal(&b, in, 3), 0);
	buf_append(&b, "", 1);
	cr_assert_eq(pubsub_form_array(&arena, buf_head(&b), v, 8), 3);
	cr_assert_str_eq(v[0], in[0]);
	cr_assert_null(v[1]);
	cr_assert_str_eq(v[2], in[2]);
	buf_free(&b);
}

static enum pubsub_error req(const char *xml, int set, const char *from,
			     struct pubsub_req *r)
{
	struct pubsub_service s = { .jid = "j@l", .owner_only_publish = 1,
				    .lim = lim, .max_ids = 4 };
	enum pubsub_error e;
	const char *why;
	if (pubsub_parse(&arena, parse(xml), set, &s, from, r, &e, &why) == 0)
		return PUBSUB_E_NONE;
	cr_assert_neq(e, PUBSUB_E_NONE);
	return e;
}

#define PS "<pubsub xmlns='" NS_PUBSUB "'>"

Test(pubsub, publish_verdicts_in_order)
{
	struct pubsub_req r;
	/* another account first, then the node, then the item */
	cr_assert_eq(req(PS "<publish/></pubsub>", 1, "r@l", &r),
		     PUBSUB_E_FORBIDDEN);
	cr_assert_eq(req(PS "<publish/></pubsub>", 1, "j@l", &r),
		     PUBSUB_E_NODEID_REQUIRED);
	cr_assert_eq(req(PS "<publish node='n'/></pubsub>", 1, "j@l", &r),
		     PUBSUB_E_ITEM_REQUIRED);
	cr_assert_eq(req(PS "<publish node='n'><item/></publish></pubsub>", 1,
			 "j@l", &r), PUBSUB_E_INVALID_PAYLOAD);
	cr_assert_eq(req(PS "<publish node='n'><item><a xmlns='a'/></item>"
			 "<item><a xmlns='a'/></item></publish></pubsub>", 1,
			 "j@l", &r), PUBSUB_E_INVALID_PAYLOAD);
	cr_assert_eq(req(PS "<publish node='n'><item id=''><a xmlns='a'/>"
			 "</item></publish></pubsub>", 1, "j@l", &r),
		     PUBSUB_E_NONE);
	cr_assert_eq(r.op, PUBSUB_OP_PUBLISH);
	cr_assert_null(r.item_id);
	cr_assert_str_eq(r.payload->name, "a");
}

Test(pubsub, other_verdicts)
{
	struct pubsub_req r;
	cr_assert_eq(req(PS "<items node='n' max_items='-1'/></pubsub>", 0,
			 "x@l", &r), PUBSUB_E_BAD_REQUEST);
	cr_assert_eq(req(PS "<items node='n' max_items='1000'/></pubsub>", 0,
			 "x@l", &r), PUBSUB_E_NONE);
	cr_assert_eq(r.max_items, 256);
	cr_assert_eq(req(PS "<items node='n'><item id='1'/><item id='2'/><item "
			 "id='3'/><item id='4'/><item id='5'/></items></pubsub>",
			 0, "x@l", &r), PUBSUB_E_BAD_REQUEST);
	cr_assert_eq(req(PS "<retract node='n'><item/></retract></pubsub>", 1,
			 "j@l", &r), PUBSUB_E_ITEM_REQUIRED);
	cr_assert_eq(req(PS "<create/></pubsub>", 1, "j@l", &r),
		     PUBSUB_E_CREATE_NODEID_REQUIRED);
	cr_assert_eq(req(PS "<subscribe node='n' jid='y@l/r'/></pubsub>", 1,
			 "x@l", &r), PUBSUB_E_INVALID_JID);
	cr_assert_eq(req(PS "<options node='n' jid='x@l'/></pubsub>", 0,
			 "x@l", &r), PUBSUB_E_UNSUPPORTED_OPTIONS);
	cr_assert_eq(req("<pubsub xmlns='" NS_PUBSUB_OWNER "'><purge node='n'/>"
			 "</pubsub>", 1, "x@l", &r), PUBSUB_E_FORBIDDEN);
	cr_assert_eq(req("<pubsub xmlns='" NS_PUBSUB_OWNER "'><affiliations "
			 "node='n'><affiliation jid='x@l' affiliation='owner'/>"
			 "</affiliations></pubsub>", 1, "j@l", &r),
		     PUBSUB_E_NOT_ACCEPTABLE);
	cr_assert_eq(req("<pubsub xmlns='" NS_PUBSUB_OWNER "'><affiliations "
			 "node='n'><affiliation jid='X@L/r' affiliation='member'/>"
			 "</affiliations></pubsub>", 1, "j@l", &r),
		     PUBSUB_E_NONE);
	cr_assert_str_eq(r.affs[0].jid, "x@l");
	const struct pubsub_error_desc *d =
		pubsub_error_of(PUBSUB_E_PRECONDITION);
	cr_assert_str_eq(d->cond, "conflict");
	cr_assert_str_eq(d->app, "<precondition-not-met xmlns='" NS_PUBSUB_ERRORS
			 "'/>");
}

/* The review's cases (h-pepfix): a payload root in no namespace, a JID
 * twice in an affiliations set, names past max_id_length. */
Test(pubsub, review_verdicts)
{
	struct pubsub_service s = { .jid = "j@l", .owner_only_publish = 1,
				    .lim = lim, .max_ids = 4,
				    .max_id_length = 8 };
	struct pubsub_req r;
	enum pubsub_error e;
	const char *why;
	cr_assert_eq(pubsub_parse(&arena, parse(PS "<publish node='n'><item>"
		     "<a xmlns=''/></item></publish></pubsub>"), 1, &s, "j@l",
		     &r, &e, &why), -1);
	cr_assert_eq(e, PUBSUB_E_INVALID_PAYLOAD);
	cr_assert_str_eq(why, "the payload element has no namespace");
	/* a descendant in no namespace is fine */
	cr_assert_eq(pubsub_parse(&arena, parse(PS "<publish node='n'><item>"
		     "<a xmlns='a'><b xmlns=''/></a></item></publish></pubsub>"),
		     1, &s, "j@l", &r, &e, &why), 0);
	cr_assert_eq(pubsub_parse(&arena, parse("<pubsub xmlns='"
		     NS_PUBSUB_OWNER "'><affiliations node='n'><affiliation "
		     "jid='x@l' affiliation='member'/><affiliation jid='X@L/r' "
		     "affiliation='outcast'/></affiliations></pubsub>"), 1, &s,
		     "j@l", &r, &e, &why), -1);
	cr_assert_eq(e, PUBSUB_E_BAD_REQUEST);
	cr_assert_str_eq(why, "the same JID twice in an affiliations set");
	cr_assert_eq(pubsub_parse(&arena, parse(PS "<publish node='12345678'>"
		     "<item id='12345678'><a xmlns='a'/></item></publish>"
		     "</pubsub>"), 1, &s, "j@l", &r, &e, &why), 0);
	cr_assert_eq(pubsub_parse(&arena, parse(PS "<publish node='123456789'>"
		     "<item><a xmlns='a'/></item></publish></pubsub>"), 1, &s,
		     "j@l", &r, &e, &why), -1);
	cr_assert_eq(e, PUBSUB_E_NOT_ACCEPTABLE);
	cr_assert_str_eq(why, "node name longer than pep.max_id_length");
	cr_assert_eq(pubsub_parse(&arena, parse(PS "<items node='123456789'/>"
		     "</pubsub>"), 0, &s, "x@l", &r, &e, &why), -1);
	cr_assert_eq(e, PUBSUB_E_NOT_ACCEPTABLE);
	cr_assert_eq(pubsub_parse(&arena, parse(PS "<retract node='n'><item "
		     "id='123456789'/></retract></pubsub>"), 1, &s, "j@l", &r,
		     &e, &why), -1);
	cr_assert_eq(e, PUBSUB_E_NOT_ACCEPTABLE);
	cr_assert_str_eq(why, "item id longer than pep.max_id_length");
}

/* Explicit subscriptions (h-pepsub): the jid normalized, options with a
 * subscribe refused, the owner's subscriptions set. */
Test(pubsub, subscription_verdicts)
{
	struct pubsub_req r;
	cr_assert_eq(req(PS "<subscribe node='n' jid='X@L/r'/></pubsub>", 1,
			 "x@l", &r), PUBSUB_E_NONE);
	cr_assert_eq(r.op, PUBSUB_OP_SUBSCRIBE);
	cr_assert_str_eq(r.jid, "x@l/r");
	cr_assert_eq(req(PS "<unsubscribe node='n' jid='x@L'/></pubsub>", 1,
			 "x@l", &r), PUBSUB_E_NONE);
	cr_assert_eq(r.op, PUBSUB_OP_UNSUBSCRIBE);
	cr_assert_str_eq(r.jid, "x@l");
	cr_assert_eq(req(PS "<subscribe node='n' jid='x@l'/><options/>"
			 "</pubsub>", 1, "x@l", &r),
		     PUBSUB_E_UNSUPPORTED_OPTIONS);
	/* another JID: subscribe is invalid-jid (6.1.3.1), unsubscribe
	 * forbidden (6.2.3.3) */
	cr_assert_eq(req(PS "<subscribe node='n' jid='y@l'/></pubsub>", 1,
			 "x@l", &r), PUBSUB_E_INVALID_JID);
	cr_assert_eq(req(PS "<unsubscribe node='n' jid='y@l'/></pubsub>", 1,
			 "x@l", &r), PUBSUB_E_FORBIDDEN);
	cr_assert_eq(req(PS "<unsubscribe node='n'/></pubsub>", 1,
			 "x@l", &r), PUBSUB_E_INVALID_JID);
	cr_assert_eq(req("<pubsub xmlns='" NS_PUBSUB_OWNER "'><subscriptions "
			 "node='n'><subscription jid='X@L/r' subscription="
			 "'subscribed'/><subscription jid='x@l' subscription="
			 "'none'/></subscriptions></pubsub>", 1, "j@l", &r),
		     PUBSUB_E_NONE);
	cr_assert_eq(r.op, PUBSUB_OP_OWNER_SUBSCRIPTIONS_SET);
	cr_assert_eq(r.naffs, 2);
	cr_assert_str_eq(r.affs[0].jid, "x@l/r");
	cr_assert_str_eq(r.affs[0].affiliation, "subscribed");
	cr_assert_str_eq(r.affs[1].jid, "x@l");
	cr_assert_eq(req("<pubsub xmlns='" NS_PUBSUB_OWNER "'><subscriptions "
			 "node='n'><subscription jid='x@l' subscription="
			 "'pending'/></subscriptions></pubsub>", 1, "j@l", &r),
		     PUBSUB_E_NOT_ACCEPTABLE);
	cr_assert_eq(req("<pubsub xmlns='" NS_PUBSUB_OWNER "'><subscriptions "
			 "node='n'><subscription jid='x@l' subscription="
			 "'none'/></subscriptions></pubsub>", 1, "x@l", &r),
		     PUBSUB_E_FORBIDDEN);
	const struct pubsub_error_desc *d =
		pubsub_error_of(PUBSUB_E_TOO_MANY_SUBS);
	cr_assert_str_eq(d->type, "wait");
	cr_assert_str_eq(d->cond, "policy-violation");
	cr_assert_str_eq(d->app, "<too-many-subscriptions xmlns='"
			 NS_PUBSUB_ERRORS "'/>");
}

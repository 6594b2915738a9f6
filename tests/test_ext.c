/*
 * test_ext.c - the registry of extensions (worker/ext.c): the list in
 * ext.c names roster_ext ... offline_ext, sm_ext ... csi_ext; this test
 * links stand-ins of those names, so it checks the registry (hook order,
 * taking hooks, IQ lookup, disco order, the start-up checks), not the real
 * extensions (the black-box tests do that).
 */
#include <string.h>

#include <criterion/criterion.h>

#include "arena.h"
#include "buf.h"
#include "../worker/worker.h"
#include "../worker/ext.h"
#include "../worker/xml.h"

static char calls[64];          /* which stand-in ran, in order */

static void note(char who)
{
	size_t n = strlen(calls);
	if (n + 1 < sizeof(calls)) {
		calls[n] = who;
		calls[n + 1] = '\0';
	}
}

static void bound_a(struct conn *c) { (void)c; note('a'); }
static void bound_d(struct conn *c) { (void)c; note('d'); }
static int in_b(struct conn *c, struct xml_node *st)
{
	(void)c; (void)st; note('b'); return 0;
}
static int in_c(struct conn *c, struct xml_node *st)
{
	(void)c; (void)st; note('c'); return 1;
}
static int in_e(struct conn *c, struct xml_node *st)
{
	(void)c; (void)st; note('e'); return 1;
}
static void iq_any(struct worker *w, struct xml_node *st, const char *bare)
{
	(void)w; (void)st; (void)bare;
}
static void iq_get(struct worker *w, struct xml_node *st, const char *bare)
{
	(void)w; (void)st; (void)bare;
}

static void nonza_e(struct conn *c, struct xml_node *n)
{
	(void)c; (void)n; note('n');
}

static const char *vcard_nonza[] = { NULL, NULL };
static const char *const e_nonza[] = { "urn:xmpp:sm:3", NULL };
static const char *roster_keys[] = { "im.roster_max_items", NULL, NULL };
static const char *offline_schema[] = { "002-im.sql", NULL, NULL };

static const struct ext_iq a_iqs[] = {
	{ "urn:a", "query", EXT_IQ_GET | EXT_IQ_SET, iq_any },
	{ NULL, NULL, 0, NULL },
};
static const struct ext_iq c_iqs[] = {
	{ "urn:c", NULL, EXT_IQ_GET, iq_get },
	{ NULL, NULL, 0, NULL },
};
static const char *const a_disco[] = { "urn:a", NULL };
static const char *const c_disco[] = { "urn:c", "urn:c#more", NULL };

const struct ext roster_ext = {
	.name = "a", .disco_features = a_disco, .iq = a_iqs,
	.config_keys = (const char *const *)roster_keys,
	.session_bound = bound_a,
};
const struct ext vcard_ext = {
	.name = "b", .stanza_in = in_b,
	.nonza_ns = (const char *const *)vcard_nonza,
};
const struct ext private_ext = {
	.name = "c", .disco_features = c_disco, .iq = c_iqs,
	.stanza_in = in_c,
};
const struct ext blocking_ext = {
	.name = "d", .session_bound = bound_d, .stanza_in = in_e,
};
const struct ext offline_ext = {
	.name = "e", .schema = (const char *const *)offline_schema,
	.nonza_ns = e_nonza, .nonza = nonza_e,
};
/* ext.c lists sm_ext after offline_ext (XEP-0198, worker/sm.c) */
const struct ext sm_ext = {
	.name = "sm",
};
/* issue 11's extensions: named by ext.c, no hooks here */
const struct ext mam_ext = { .name = "mam" };

static void delivered_f(struct worker *w, struct xml_node *st,
			const char *bare, const struct session_info *got,
			int ngot)
{
	(void)w; (void)st; (void)bare; (void)got; (void)ngot; note('f');
}
static void element_g(struct conn *c, const struct xml_node *n)
{
	(void)c; (void)n; note('g');
}
/* the stand-ins of carbons_ext and csi_ext (added for issue 11) */
const struct ext carbons_ext = {
	.name = "f", .message_delivered = delivered_f, .delivered_flags = 4,
};
const struct ext csi_ext = {
	.name = "g", .client_element = element_g,
};
/* the stand-in of pep_ext (issue 13): identities of the domain and of
 * accounts */
static const char *const h_ids[] = { "<identity category='pubsub' "
	"type='pep'/>", NULL };
static const char *const h_acc_ids[] = { "<identity category='x' "
	"type='y'/>", "<identity category='x' type='z'/>", NULL };
const struct ext pep_ext = {
	.name = "h", .disco_identities = h_ids,
	.account_identities = h_acc_ids,
};
/* the stand-in of caps_ext (issue 13): no hooks */
const struct ext caps_ext = { .name = "h" };
/* the stand-in of pep_compat_ext (issue 13), last in the list: an
 * iq_child handler for urn:a/query with a child in urn:child, get only */
static void iq_child_get(struct worker *w, struct xml_node *st,
			 const char *bare)
{
	(void)w; (void)st; (void)bare;
}
static const struct ext_iq_child i_child[] = {
	{ "urn:a", "query", "urn:child", EXT_IQ_GET, iq_child_get },
	{ NULL, NULL, NULL, 0, NULL },
};
const struct ext pep_compat_ext = { .name = "i", .iq_child = i_child };
/* the stand-in of pep_remote_ext (issue 13): presence_to_account */
static void presence_j(struct worker *w, const struct xml_node *st,
		       const char *bare)
{
	(void)w; (void)st; (void)bare; note('j');
}
const struct ext pep_remote_ext = {
	.name = "j", .presence_to_account = presence_j,
};
/* the stand-in of muc_ext (issue 14): a service on svc.example, its
 * item in a host's disco#items, the swept sessions */
static int serves_k(const struct worker *w, const char *domain)
{
	(void)w;
	return strcmp(domain, "svc.example") == 0;
}
static void stanza_k(struct worker *w, struct arena *a, struct xml_node *st,
		     const struct jid *to)
{
	(void)w; (void)a; (void)st; (void)to; note('k');
}
static unsigned items_k(const struct worker *w, const char *host,
			struct buf *out)
{
	(void)w;
	buf_appendf(out, "<item jid='svc.%s'/>", host);
	return 1;
}
static void swept_k(struct worker *w, const char *jid)
{
	(void)w; (void)jid; note('s');
}
const struct ext muc_ext = {
	.name = "k", .service_serves = serves_k, .service_stanza = stanza_k,
	.domain_items = items_k, .session_swept = swept_k,
};

static struct arena arena;

static void setup(void)
{
	const char *error = NULL;
	arena_init(&arena, 4096);
	calls[0] = '\0';
	roster_keys[1] = NULL;
	offline_schema[1] = NULL;
	vcard_nonza[0] = NULL;
	cr_assert_eq(ext_init(&error), 0, "%s", error ? error : "");
}

static void teardown(void)
{
	arena_free(&arena);
}

TestSuite(ext, .init = setup, .fini = teardown);

Test(ext, hooks_run_in_list_order_and_skip_absent_ones)
{
	EXT_RUN(session_bound, NULL);
	cr_assert_str_eq(calls, "ad");
	cr_assert_eq(ext_hooks.n_session_bound, 2);
	cr_assert_eq(ext_hooks.n_conn_free, 0);
	EXT_RUN(conn_free, NULL);       /* nobody has it: nothing runs */
	cr_assert_str_eq(calls, "ad");
}

Test(ext, a_hook_nobody_has_runs_nothing)
{
	cr_assert_eq(ext_frame(NULL, 0, "", 0), 0);   /* no frame hooks */
	cr_assert_str_eq(calls, "");
}

Test(ext, stanza_filters_run_only_where_the_extension_asked)
{
	struct conn c;
	memset(&c, 0, sizeof(c));
	cr_assert_eq(ext_stanza_in(&c, NULL), 0);
	cr_assert_str_eq(calls, "");    /* nobody filters this session */
	ext_filter(&c, &blocking_ext, 1);
	cr_assert_eq(ext_stanza_in(&c, NULL), 1);
	cr_assert_str_eq(calls, "e");   /* only d's hook (in_e) */
	calls[0] = '\0';
	ext_filter(&c, &vcard_ext, 1);
	ext_filter(&c, &private_ext, 1);
	cr_assert_eq(ext_stanza_in(&c, NULL), 1);
	cr_assert_str_eq(calls, "bc");  /* list order; e not called */
	calls[0] = '\0';
	ext_filter(&c, &vcard_ext, 0);
	ext_filter(&c, &private_ext, 0);
	ext_filter(&c, &blocking_ext, 0);
	cr_assert_eq(c.ext_filter, 0);
	cr_assert_eq(ext_stanza_in(&c, NULL), 0);
	cr_assert_str_eq(calls, "");
}

Test(ext, iq_handlers_by_namespace_element_and_type)
{
	struct xml_node *q = xml_new(&arena, "urn:a", "query");
	struct xml_node *other = xml_new(&arena, "urn:a", "other");
	struct xml_node *any = xml_new(&arena, "urn:c", "whatever");
	cr_assert_eq(ext_iq_handler(q, "get"), iq_any);
	cr_assert_eq(ext_iq_handler(q, "set"), iq_any);
	cr_assert_null(ext_iq_handler(other, "get"));
	cr_assert_eq(ext_iq_handler(any, "get"), iq_get);
	cr_assert_null(ext_iq_handler(any, "set"));   /* declared get only */
	cr_assert_null(ext_iq_handler(q, "result"));
}

Test(ext, a_child_namespace_handler_beats_the_plain_one)
{
	struct xml_node *q = xml_new(&arena, "urn:a", "query");
	xml_add_child(&arena, q, "urn:child", "storage");
	struct xml_node *q2 = xml_new(&arena, "urn:a", "query");
	xml_add_child(&arena, q2, "urn:other", "storage");
	struct xml_node *empty = xml_new(&arena, "urn:a", "query");
	struct xml_node *wrong = xml_new(&arena, "urn:b", "query");
	xml_add_child(&arena, wrong, "urn:child", "storage");
	/* later in the list, still first: the child namespace decides */
	cr_assert_eq(ext_iq_handler(q, "get"), iq_child_get);
	cr_assert_eq(ext_iq_handler_plain(q, "get"), iq_any);
	/* set is not declared by the child handler: the plain one */
	cr_assert_eq(ext_iq_handler(q, "set"), iq_any);
	cr_assert_eq(ext_iq_handler(q2, "get"), iq_any);
	cr_assert_eq(ext_iq_handler(empty, "get"), iq_any);
	cr_assert_null(ext_iq_handler(wrong, "get"));
}

Test(ext, disco_features_in_list_order)
{
	struct buf out;
	buf_init(&out, 0);
	ext_disco_features(&out);
	buf_append(&out, "", 1);
	cr_assert_str_eq(buf_head(&out), "<feature var='urn:a'/><feature "
			 "var='urn:c'/><feature var='urn:c#more'/>");
	buf_free(&out);
}

Test(ext, identities_in_list_order)
{
	struct buf out;
	buf_init(&out, 0);
	ext_disco_identities(&out);
	buf_append(&out, "", 1);
	cr_assert_str_eq(buf_head(&out), "<identity category='pubsub' "
			 "type='pep'/>");
	buf_consume(&out, buf_used(&out));
	ext_account_identities(&out);
	buf_append(&out, "", 1);
	cr_assert_str_eq(buf_head(&out), "<identity category='x' type='y'/>"
			 "<identity category='x' type='z'/>");
	buf_free(&out);
}

Test(ext, an_unknown_setting_stops_the_start)
{
	const char *error = NULL;
	roster_keys[1] = "im.no_such_key";
	cr_assert_eq(ext_init(&error), -1);
	cr_assert_str_eq(error, "extension names an unknown setting");
}

Test(ext, an_unknown_schema_step_stops_the_start)
{
	const char *error = NULL;
	offline_schema[1] = "099-missing.sql";
	cr_assert_eq(ext_init(&error), -1);
	cr_assert_str_eq(error, "extension names an unknown schema step");
}

Test(ext, nonzas_by_exact_namespace)
{
	const char *ns = "urn:xmpp:sm:3";
	cr_assert_eq(ext_nonza_owner(ns, strlen(ns)), &offline_ext);
	cr_assert_null(ext_nonza_owner(ns, strlen(ns) - 1));   /* a prefix */
	cr_assert_null(ext_nonza_owner("urn:xmpp:sm:30", 14));
	cr_assert_null(ext_nonza_owner("jabber:client", 13));
}

Test(ext, nonza_namespaces_without_a_hook_stop_the_start)
{
	const char *error = NULL;
	vcard_nonza[0] = "urn:xmpp:csi:0";
	cr_assert_eq(ext_init(&error), -1);
	cr_assert_str_eq(error, "extension takes nonzas without a hook");
}

Test(ext, delivered_flags_and_client_element_filter)
{
	struct conn c;
	memset(&c, 0, sizeof(c));
	cr_assert_eq(ext_hooks.n_message_delivered, 1);
	cr_assert_eq(ext_hooks.delivered_flags, 4);
	ext_message_delivered(NULL, NULL, "a@b", NULL, 0);
	cr_assert_str_eq(calls, "f");
	ext_client_element(&c, NULL);   /* no filter bit: not called */
	cr_assert_str_eq(calls, "f");
	ext_filter(&c, &carbons_ext, 1);    /* another's bit */
	ext_client_element(&c, NULL);
	cr_assert_str_eq(calls, "f");
	ext_filter(&c, &csi_ext, 1);
	ext_client_element(&c, NULL);
	cr_assert_str_eq(calls, "fg");
}

Test(ext, presence_to_account_runs_its_hook)
{
	cr_assert_eq(ext_hooks.n_presence_to_account, 1);
	ext_presence_to_account(NULL, NULL, "a@b");
	cr_assert_str_eq(calls, "j");
}

Test(ext, a_service_takes_its_domain_only)
{
	struct buf out;
	const struct ext *e = ext_service(NULL, "svc.example");
	cr_assert_eq(e, &muc_ext);
	e->service_stanza(NULL, NULL, NULL, NULL);
	cr_assert_str_eq(calls, "k");
	cr_assert_null(ext_service(NULL, "example"));
	cr_assert_null(ext_service(NULL, "other.svc.example"));
	buf_init(&out, 0);
	cr_assert_eq(ext_domain_items(NULL, "example", &out), 1);
	buf_append(&out, "", 1);
	cr_assert_str_eq(buf_head(&out), "<item jid='svc.example'/>");
	buf_free(&out);
	ext_session_swept(NULL, "a@b/c");
	cr_assert_str_eq(calls, "ks");
}

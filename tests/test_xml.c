/*
 * test_xml.c - unit tests for worker/xml.c: parse -> serialize round
 * trips, escaping, namespace declarations, attribute edits, the builder
 * fed in small chunks, accessors, and restricted/malformed input.
 * Golden files live in tests/xml: rt-*.in must serialize (default
 * namespace jabber:client) to the matching .ref; err-*.in must fail with
 * the error in the matching .ref.  Found under $XMPPD_SRCDIR (default ".").
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <expat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/store.h"
#include "worker/xml.h"

#define NS_CLIENT "jabber:client"

static struct arena arena;
static struct buf out;

static void setup(void)
{
	arena_init(&arena, 1024);
	buf_init(&out, 0);
}

static void teardown(void)
{
	arena_free(&arena);
	buf_free(&out);
}

TestSuite(xml, .init = setup, .fini = teardown, .timeout = 10);

/* ---- helpers --------------------------------------------------------- */

static struct xml_node *parse_ok(const char *text)
{
	const char *error = NULL;
	struct xml_node *n = xml_parse(&arena, text, strlen(text), &error);

	cr_assert_not_null(n, "parse failed: %s: %s", error, text);
	return n;
}

static const char *parse_err(const char *text)
{
	const char *error = NULL;

	cr_assert_null(xml_parse(&arena, text, strlen(text), &error),
		       "parsed: %s", text);
	cr_assert_not_null(error);
	return error;
}

/* Serialized n as an arena string. */
static const char *ser(const struct xml_node *n, const char *default_ns)
{
	buf_consume(&out, buf_used(&out));
	cr_assert_eq(xml_serialize(&out, n, default_ns), 0);
	return arena_strndup(&arena, buf_head(&out), buf_used(&out));
}

static void expect_rt(const char *in, const char *want)
{
	const char *got = ser(parse_ok(in), NS_CLIENT);

	cr_expect_str_eq(got, want, "in:   %s", in);
	/* Our output (declaring every namespace) parses back the same. */
	got = ser(parse_ok(ser(parse_ok(in), "")), NS_CLIENT);
	cr_expect_str_eq(got, want, "re-parsed");
}

static const char *esc(const char *s, size_t len, int attr)
{
	buf_consume(&out, buf_used(&out));
	cr_assert_eq(xml_escape(&out, s, len, attr), 0);
	return arena_strndup(&arena, buf_head(&out), buf_used(&out));
}

static const char *srcdir(void)
{
	const char *dir = getenv("XMPPD_SRCDIR");

	return dir != NULL && *dir != '\0' ? dir : ".";
}

/* File contents in the arena, one trailing newline dropped. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *text;
	long len;

	cr_assert_not_null(f, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	text = arena_alloc(&arena, (size_t)len + 1);
	cr_assert_eq(fread(text, 1, (size_t)len, f), (size_t)len);
	if (len > 0 && text[len - 1] == '\n')
		len--;
	text[len] = '\0';
	fclose(f);
	return text;
}

static unsigned for_each_golden(const char *prefix,
				void (*check)(const char *in, const char *ref,
					      const char *file))
{
	char dir[4096], path[8192], ref[8192];
	size_t plen = strlen(prefix);
	struct dirent *e;
	unsigned n = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/tests/xml", srcdir());
	d = opendir(dir);
	cr_assert_not_null(d, "cannot open %s", dir);
	while ((e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);
		if (strncmp(e->d_name, prefix, plen) != 0 || len < 4 ||
		    strcmp(e->d_name + len - 3, ".in") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		snprintf(ref, sizeof(ref), "%s/%.*s.ref", dir, (int)(len - 3),
			 e->d_name);
		check(slurp(path), slurp(ref), e->d_name);
		n++;
	}
	closedir(d);
	return n;
}

/* ---- golden files ---------------------------------------------------- */

static void check_rt(const char *in, const char *want, const char *file)
{
	const char *error = NULL;
	struct xml_node *n = xml_parse(&arena, in, strlen(in), &error);

	cr_assert_not_null(n, "%s: %s", file, error);
	cr_expect_str_eq(ser(n, NS_CLIENT), want, "%s", file);
	/* Written with every namespace declared, it parses back the same. */
	const char *all = ser(n, "");
	n = xml_parse(&arena, all, strlen(all), &error);
	cr_assert_not_null(n, "%s: output does not parse: %s", file, error);
	cr_expect_str_eq(ser(n, NS_CLIENT), want, "%s: not idempotent", file);
}

static void check_err(const char *in, const char *want, const char *file)
{
	const char *error = NULL;

	cr_expect_null(xml_parse(&arena, in, strlen(in), &error), "%s", file);
	cr_expect_str_eq(error != NULL ? error : "(none)", want, "%s", file);
}

Test(xml, golden_round_trips)
{
	cr_assert_geq(for_each_golden("rt-", check_rt), 10);
}

Test(xml, golden_errors)
{
	cr_assert_geq(for_each_golden("err-", check_err), 10);
}

/* ---- serializing ----------------------------------------------------- */

Test(xml, brief_message_example)
{
	expect_rt("<message xmlns='jabber:client' from='a@b/c' to='d@e' "
		  "type='chat' id='x'><body>hi &amp; &lt;you&gt;</body>"
		  "<active xmlns='http://jabber.org/protocol/chatstates'/>"
		  "</message>",
		  "<message from='a@b/c' to='d@e' type='chat' id='x'><body>"
		  "hi &amp; &lt;you&gt;</body><active xmlns='http://jabber.org/"
		  "protocol/chatstates'/></message>");
}

Test(xml, default_ns_decides_top_declaration)
{
	struct xml_node *n = parse_ok("<presence xmlns='jabber:client'>"
				      "<show>dnd</show></presence>");

	cr_expect_str_eq(ser(n, NS_CLIENT),
			 "<presence><show>dnd</show></presence>");
	cr_expect_str_eq(ser(n, "jabber:server"),
			 "<presence xmlns='jabber:client'><show>dnd</show>"
			 "</presence>");
	cr_expect_str_eq(ser(n, NULL), "<presence xmlns='jabber:client'>"
			 "<show>dnd</show></presence>");
	/* A subtree: its parent's namespace is not assumed. */
	cr_expect_str_eq(ser(xml_first_element(n), "urn:x"),
			 "<show xmlns='jabber:client'>dnd</show>");
}

Test(xml, empty_namespace_under_default)
{
	struct xml_node *n = xml_new(&arena, NS_CLIENT, "iq");

	xml_add_child(&arena, n, "", "a");
	xml_add_child(&arena, xml_add_child(&arena, n, NULL, "b"), "", "c");
	cr_expect_str_eq(ser(n, NS_CLIENT),
			 "<iq><a xmlns=''/><b xmlns=''><c/></b></iq>");
	cr_expect_str_eq(ser(n, ""),
			 "<iq xmlns='jabber:client'><a xmlns=''/><b xmlns=''>"
			 "<c/></b></iq>");
}

Test(xml, foreign_child_then_client_grandchild)
{
	expect_rt("<iq xmlns='jabber:client' type='set'><pubsub xmlns='"
		  "http://jabber.org/protocol/pubsub'><publish node='n'><item>"
		  "<message xmlns='jabber:client'><body>b</body></message>"
		  "</item></publish></pubsub></iq>",
		  "<iq type='set'><pubsub xmlns='http://jabber.org/protocol/"
		  "pubsub'><publish node='n'><item><message xmlns='jabber:"
		  "client'><body>b</body></message></item></publish></pubsub>"
		  "</iq>");
}

Test(xml, prefixed_input_gets_default_xmlns)
{
	expect_rt("<foo:x xmlns:foo='urn:a'/>", "<x xmlns='urn:a'/>");
	expect_rt("<foo:x xmlns:foo='urn:a' xmlns='jabber:client'><y/>"
		  "<foo:z foo:attr='v'/></foo:x>",
		  "<x xmlns='urn:a'><y xmlns='jabber:client'/><z "
		  "xmlns:ns1='urn:a' ns1:attr='v'/></x>");
}

Test(xml, xml_lang_written_as_xml_prefix)
{
	struct xml_node *n = parse_ok("<presence xmlns='jabber:client' "
				      "xml:lang='en'><status xml:lang='fr'>"
				      "ici</status></presence>");

	cr_expect_str_eq(xml_attr_ns(n, "http://www.w3.org/XML/1998/namespace",
				     "lang"), "en");
	cr_expect_null(xml_attr(n, "lang"));
	cr_expect_str_eq(ser(n, NS_CLIENT), "<presence xml:lang='en'><status "
			 "xml:lang='fr'>ici</status></presence>");
}

Test(xml, many_attribute_namespaces_stay_valid)
{
	char in[4096], tmp[128];
	const char *error = NULL;

	strcpy(in, "<x xmlns='urn:x'");
	for (int i = 0; i < 20; i++) {
		snprintf(tmp, sizeof(tmp), " xmlns:p%d='urn:p%d' p%d:a='%d'",
			 i, i, i, i);
		strcat(in, tmp);
	}
	strcat(in, " p3:b='again'/>");
	const char *s = ser(parse_ok(in), "");
	struct xml_node *n = xml_parse(&arena, s, strlen(s), &error);
	cr_assert_not_null(n, "%s: %s", error, s);
	cr_expect_str_eq(xml_attr_ns(n, "urn:p19", "a"), "19");
	cr_expect_str_eq(xml_attr_ns(n, "urn:p3", "b"), "again");
	cr_expect_not_null(strstr(s, " xmlns:ns4='urn:p3' ns4:a='3'"), "%s", s);
	cr_expect_not_null(strstr(s, " ns4:b='again'"), "%s", s);
}

Test(xml, xmlns_attributes_never_duplicated)
{
	struct xml_node *n = xml_new(&arena, "urn:a", "x");

	cr_assert_eq(xml_set_attr(&arena, n, "xmlns", "urn:evil"), 0);
	cr_expect_str_eq(ser(n, ""), "<x xmlns='urn:a'/>");
}

Test(xml, deep_tree_serializes_without_recursion)
{
	enum { DEPTH = 100000 };
	struct xml_node *root = xml_new(&arena, NS_CLIENT, "a");
	struct xml_node *n = root;

	for (int i = 0; i < DEPTH; i++)
		n = xml_add_child(&arena, n, NS_CLIENT, "a");
	cr_assert_not_null(n);
	xml_add_text(&arena, n, "x", 1);
	cr_assert_eq(xml_serialize(&out, root, NS_CLIENT), 0);
	cr_expect_eq(buf_used(&out), (size_t)(DEPTH + 1) * 7 + 1);
	cr_expect_eq(memcmp(buf_head(&out), "<a><a>", 6), 0);
	cr_expect_eq(memcmp(buf_head(&out) + (DEPTH + 1) * 3, "x</a></a>", 9),
		     0);
	cr_expect_eq(memcmp(buf_head(&out) + buf_used(&out) - 8, "</a></a>", 8),
		     0);
}

Test(xml, text_node_alone)
{
	struct xml_node *n = parse_ok("<b xmlns='jabber:client'>1 &lt; 2</b>");

	cr_expect_str_eq(ser(n->children, NS_CLIENT), "1 &lt; 2");
}

Test(xml, full_buffer_leaves_it_unchanged)
{
	struct xml_node *n = parse_ok("<message xmlns='jabber:client' to='a'>"
				      "<body>hello &amp; more text</body>"
				      "</message>");
	struct buf small;

	buf_init(&small, 40);
	cr_assert_eq(buf_append(&small, "prefix", 6), 0);
	buf_consume(&small, 2);
	cr_expect_eq(xml_serialize(&small, n, NS_CLIENT), -1);
	cr_expect_eq(buf_used(&small), 4);
	cr_expect_eq(memcmp(buf_head(&small), "efix", 4), 0);
	cr_expect_eq(xml_escape(&small, "&&&&&&&&&&&&&&&&&&&&", 20, 0), -1);
	cr_expect_eq(buf_used(&small), 4);
	/* 60 bytes of stanza: a cap one short fails, the exact cap fits. */
	small.max = 4 + 59;
	cr_expect_eq(xml_serialize(&small, n, NS_CLIENT), -1);
	cr_expect_eq(buf_used(&small), 4);
	small.max = 4 + 60;
	cr_expect_eq(xml_serialize(&small, n, NS_CLIENT), 0);
	cr_expect_eq(buf_used(&small), 64);
	buf_free(&small);
}

/* ---- escaping -------------------------------------------------------- */

Test(xml, escape_text_specials)
{
	cr_expect_str_eq(esc("a&b<c>d'e\"f", 11, 0),
			 "a&amp;b&lt;c&gt;d'e\"f");
	cr_expect_str_eq(esc("]]>", 3, 0), "]]&gt;");
	cr_expect_str_eq(esc("", 0, 0), "");
	cr_expect_str_eq(esc("&", 1, 0), "&amp;");
	cr_expect_str_eq(esc("tab\tlf\ncr\r", 10, 0), "tab\tlf\ncr&#13;");
}

Test(xml, escape_attr_specials)
{
	cr_expect_str_eq(esc("a&b<c>d'e\"f", 11, 1),
			 "a&amp;b&lt;c&gt;d&apos;e&quot;f");
	cr_expect_str_eq(esc("\t\n\r", 3, 1), "&#9;&#10;&#13;");
}

Test(xml, escape_utf8_and_controls)
{
	/* Multi-byte UTF-8 passes unchanged (no sign-extension trouble). */
	cr_expect_str_eq(esc("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x7f", 10, 1),
			 "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x7f");
	/* NUL and other C0 controls cannot be carried by XML at all. */
	cr_expect_str_eq(esc("a\0b\x01\x1f", 5, 0),
			 "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd");
}

Test(xml, every_byte_escapes_to_parseable_xml)
{
	char raw[256], in[4096], want[1024];
	const char *error = NULL;
	size_t w = 0;

	for (int i = 0; i < 256; i++) {
		raw[i] = (char)(i < 128 ? i : 'x');
		if (i < 0x20 && i != '\t' && i != '\n' && i != '\r') {
			memcpy(want + w, "\xef\xbf\xbd", 3);  /* U+FFFD */
			w += 3;
		} else {
			want[w++] = raw[i];
		}
	}
	want[w] = '\0';
	for (int attr = 0; attr <= 1; attr++) {
		const char *e = esc(raw, sizeof(raw), attr);
		snprintf(in, sizeof(in), attr ? "<a v='%s'/>" : "<a>%s</a>", e);
		struct xml_node *n = xml_parse(&arena, in, strlen(in), &error);
		cr_assert_not_null(n, "%s: %s", error, in);
		const char *back = attr ? xml_attr(n, "v")
					: xml_text(&arena, n);
		cr_expect_str_eq(back, want, "attr=%d", attr);
	}
}

Test(xml, round_trip_of_all_specials)
{
	expect_rt("<message xmlns='jabber:client' a='&lt;&amp;&gt;&apos;"
		  "&quot;'><body>&lt;&amp;&gt;&apos;&quot;</body></message>",
		  "<message a='&lt;&amp;&gt;&apos;&quot;'><body>&lt;&amp;&gt;'"
		  "\"</body></message>");
}

/* ---- attributes ------------------------------------------------------ */

Test(xml, set_replace_remove_attributes)
{
	struct xml_node *n = parse_ok("<message xmlns='jabber:client' "
				      "from='a' to='b' id='c' xml:lang='en'/>");

	cr_assert_eq(xml_set_attr(&arena, n, "to", "x&y"), 0);
	cr_assert_eq(xml_set_attr(&arena, n, "from", NULL), 0);
	cr_assert_eq(xml_set_attr(&arena, n, "type", "chat"), 0);
	cr_assert_eq(xml_set_attr(&arena, n, "nothere", NULL), 0);
	cr_expect_str_eq(ser(n, NS_CLIENT), "<message to='x&amp;y' id='c' "
			 "xml:lang='en' type='chat'/>");
	cr_expect_null(xml_attr(n, "from"));
	cr_expect_str_eq(xml_attr(n, "to"), "x&y");
	cr_assert_eq(xml_set_attr(&arena, n, "id", NULL), 0);
	cr_assert_eq(xml_set_attr(&arena, n, "type", NULL), 0);
	cr_assert_eq(xml_set_attr(&arena, n, "to", NULL), 0);
	cr_expect_str_eq(ser(n, NS_CLIENT), "<message xml:lang='en'/>");
	/* "lang" unqualified is not xml:lang. */
	cr_assert_eq(xml_set_attr(&arena, n, "lang", NULL), 0);
	cr_expect_str_eq(ser(n, NS_CLIENT), "<message xml:lang='en'/>");
}

Test(xml, set_attr_copies_value)
{
	char v[] = "one";
	struct xml_node *n = xml_new(&arena, NS_CLIENT, "iq");

	cr_assert_eq(xml_set_attr(&arena, n, "id", v), 0);
	v[0] = 'X';
	cr_expect_str_eq(xml_attr(n, "id"), "one");
}

/* ---- construction and access ----------------------------------------- */

Test(xml, build_by_hand)
{
	struct xml_node *iq = xml_new(&arena, NS_CLIENT, "iq");
	struct xml_node *q;

	xml_set_attr(&arena, iq, "type", "result");
	q = xml_add_child(&arena, iq, "jabber:iq:version", "query");
	cr_assert_eq(xml_add_text(&arena, xml_add_child(&arena, q,
			"jabber:iq:version", "name"), "xmppd", 5), 0);
	cr_assert_eq(xml_add_text(&arena, q, "", 0), 0);  /* no node */
	cr_expect_null(xml_first_element(q)->next);
	cr_expect_str_eq(ser(iq, NS_CLIENT), "<iq type='result'><query xmlns='"
			 "jabber:iq:version'><name>xmppd</name></query></iq>");
}

Test(xml, append_node_moves_subtree)
{
	struct xml_node *a = parse_ok("<a xmlns='urn:a'><b/></a>");
	struct xml_node *m = xml_new(&arena, NS_CLIENT, "message");

	xml_append_node(m, a);
	cr_expect_eq(a->parent, m);
	cr_expect_str_eq(ser(m, NS_CLIENT), "<message><a xmlns='urn:a'><b/>"
			 "</a></message>");
}

Test(xml, accessors)
{
	struct xml_node *n = parse_ok(
		"<iq xmlns='jabber:client' type='get'>\n <query xmlns="
		"'jabber:iq:roster'/>\n <x xmlns='urn:x'>a<y/>b&amp;c<z/>d</x>"
		"\n <query xmlns='urn:other'/>\n</iq>");
	struct xml_node *x, *c;

	cr_expect_eq(xml_element_count(n), 3);
	cr_expect(xml_is(n, NS_CLIENT, "iq"));
	cr_expect(xml_is(n, NULL, "iq"));
	cr_expect_not(xml_is(n, "jabber:server", "iq"));
	cr_expect_not(xml_is(n->children, NULL, NULL));   /* a text node */
	cr_expect_not(xml_is(NULL, NULL, NULL));
	c = xml_child(n, "urn:other", "query");
	cr_assert_not_null(c);
	x = xml_next_element(xml_first_element(n));
	cr_expect_eq(c, xml_next_element(x));
	cr_expect_null(xml_next_element(c));
	cr_expect_eq(xml_child(n, NULL, "query"), xml_first_element(n));
	cr_expect_eq(xml_child(n, "urn:x", NULL), x);
	cr_expect_null(xml_child(n, NS_CLIENT, "query"));
	cr_expect_null(xml_child(n, "jabber:iq:roster", "item"));
	x = xml_child(n, "urn:x", "x");
	cr_assert_not_null(x);
	cr_expect_eq(xml_element_count(x), 2);
	cr_expect_str_eq(xml_text(&arena, x), "ab&cd");
	cr_expect_str_eq(xml_text(&arena, c), "");
	cr_expect_str_eq(xml_attr(n, "type"), "get");
	cr_expect_null(xml_attr(n, "id"));
	cr_expect_null(xml_first_element(xml_child(x, NULL, "y")));
	cr_expect_eq(xml_element_count(c), 0);
}

Test(xml, namespace_strings_shared_with_parent)
{
	struct xml_node *n = parse_ok("<message xmlns='jabber:client'><body>"
				      "x</body><x xmlns='urn:y' a='1'/>"
				      "</message>");
	struct xml_node *x = xml_child(n, "urn:y", "x");

	cr_expect_eq(xml_first_element(n)->ns, n->ns);
	cr_expect_str_eq(x->attrs->ns, "");
	cr_expect_str_eq(n->ns, NS_CLIENT);
}

/* ---- builder --------------------------------------------------------- */

Test(xml, builder_merges_text_chunks)
{
	struct xml_builder b;
	const char *msg[] = { "to", "a@b", "type", "chat", NULL };
	const char *none[] = { NULL };
	const char *text = "hello <world> & all of you, one byte at a time";

	xml_builder_init(&b, &arena);
	xml_builder_start(&b, NS_CLIENT "\xff" "message", msg);
	xml_builder_text(&b, "\n", 1);
	xml_builder_start(&b, NS_CLIENT "\xff" "body", none);
	for (size_t i = 0; text[i] != '\0'; i++)
		xml_builder_text(&b, text + i, 1);
	xml_builder_text(&b, "", 0);
	xml_builder_end(&b);
	cr_expect_null(xml_builder_done(&b));   /* message still open */
	xml_builder_text(&b, "tail", 4);
	xml_builder_text(&b, "!", 1);
	xml_builder_end(&b);
	struct xml_node *n = xml_builder_done(&b);
	cr_assert_not_null(n);
	struct xml_node *body = xml_first_element(n);
	cr_expect_eq(body->children, body->last_child);  /* one text node */
	cr_expect_eq(body->children->text_len, strlen(text));
	cr_expect_str_eq(body->children->text, text);
	cr_expect_str_eq(n->last_child->text, "tail!");
	cr_expect_str_eq(ser(n, NS_CLIENT), "<message to='a@b' type='chat'>\n"
			 "<body>hello &lt;world&gt; &amp; all of you, one byte "
			 "at a time</body>tail!</message>");
}

Test(xml, builder_large_text_in_many_chunks)
{
	struct xml_builder b;
	const char *none[] = { NULL };
	char chunk[97];

	memset(chunk, 'q', sizeof(chunk));
	xml_builder_init(&b, &arena);
	xml_builder_start(&b, "body", none);
	for (int i = 0; i < 1000; i++)
		xml_builder_text(&b, chunk, (int)sizeof(chunk));
	xml_builder_end(&b);
	struct xml_node *n = xml_builder_done(&b);
	cr_assert_not_null(n);
	cr_expect_eq(n->children, n->last_child);
	cr_expect_eq(n->children->text_len, 97000);
	cr_expect_eq(strlen(n->children->text), 97000);
	cr_expect_lt(arena.total, 4 * 97000);   /* doubling, not quadratic */
}

Test(xml, builder_refuses_second_root)
{
	struct xml_builder b;
	const char *none[] = { NULL };

	xml_builder_init(&b, &arena);
	xml_builder_start(&b, "a", none);
	xml_builder_end(&b);
	cr_expect_not_null(xml_builder_done(&b));
	xml_builder_start(&b, "b", none);
	cr_expect(b.failed);
	cr_expect_null(xml_builder_done(&b));
}

Test(xml, builder_text_before_root_ignored)
{
	struct xml_builder b;
	const char *none[] = { NULL };

	xml_builder_init(&b, &arena);
	xml_builder_text(&b, "junk", 4);
	xml_builder_end(&b);
	xml_builder_start(&b, "urn:a\xff" "a", none);
	xml_builder_end(&b);
	cr_assert_not_null(xml_builder_done(&b));
	cr_expect_str_eq(ser(xml_builder_done(&b), ""), "<a xmlns='urn:a'/>");
}

/* The stream parser's way: expat fed one byte at a time. */
static void XMLCALL feed_start(void *ud, const char *name, const char **atts)
{
	xml_builder_start(ud, name, atts);
}

static void XMLCALL feed_end(void *ud, const char *name)
{
	(void)name;
	xml_builder_end(ud);
}

static void XMLCALL feed_text(void *ud, const char *s, int len)
{
	xml_builder_text(ud, s, len);
}

Test(xml, builder_from_expat_byte_by_byte)
{
	const char *in = "<message xmlns='jabber:client' to='r&amp;j@x'><body>"
			 "a &amp; b\nline two &#x263A; &lt;3</body><x:y "
			 "xmlns:x='urn:x' x:k='v'/></message>";
	struct xml_builder b;
	XML_Parser p = XML_ParserCreateNS("UTF-8", XML_NS_SEP);

	xml_builder_init(&b, &arena);
	XML_SetUserData(p, &b);
	XML_SetElementHandler(p, feed_start, feed_end);
	XML_SetCharacterDataHandler(p, feed_text);
	for (size_t i = 0; in[i] != '\0'; i++)
		cr_assert_eq(XML_Parse(p, in + i, 1, 0), XML_STATUS_OK);
	cr_assert_eq(XML_Parse(p, "", 0, 1), XML_STATUS_OK);
	XML_ParserFree(p);
	struct xml_node *n = xml_builder_done(&b);
	cr_assert_not_null(n);
	struct xml_node *body = xml_first_element(n);
	cr_expect_eq(body->children, body->last_child);
	cr_expect_str_eq(ser(n, NS_CLIENT), "<message to='r&amp;j@x'><body>"
			 "a &amp; b\nline two \xe2\x98\xba &lt;3</body>"
			 "<y xmlns='urn:x' xmlns:ns1='urn:x' ns1:k='v'/>"
			 "</message>");
}

/* ---- what a stanza may expand to ------------------------------------- */

/* The builder fed by expat as the stream feeds it, with a bound on the
 * serialized size (0: none).  The root, or NULL with *b telling why. */
static struct xml_node *build(struct xml_builder *b, const char *in,
			      size_t len, size_t bound)
{
	XML_Parser p = XML_ParserCreateNS("UTF-8", XML_NS_SEP);

	xml_builder_init(b, &arena);
	xml_builder_bound(b, bound);
	XML_SetUserData(p, b);
	XML_SetElementHandler(p, feed_start, feed_end);
	XML_SetCharacterDataHandler(p, feed_text);
	enum XML_Status st = XML_Parse(p, in, (int)len, 1);
	XML_ParserFree(p);
	cr_assert_eq(st, XML_STATUS_OK, "%.80s", in);
	return xml_builder_done(b);
}

/* 62 KB: one 32 KB namespace URI, and 5,000 children in it under a parent
 * in another namespace, each written out with its own declaration. */
static char *amplifier(size_t *len_r)
{
	struct buf in;

	buf_init(&in, 0);
	buf_appendf(&in, "<iq xmlns='jabber:client' type='get' id='a'>"
		    "<q xmlns='urn:q' xmlns:p='urn:");
	for (int i = 0; i < 32000; i++)
		buf_append(&in, "u", 1);
	buf_append(&in, "'>", 2);
	for (int i = 0; i < 5000; i++)
		buf_append(&in, "<p:b/>", 6);
	buf_appendf(&in, "</q></iq>");
	*len_r = buf_used(&in);
	char *s = arena_strndup(&arena, buf_head(&in), buf_used(&in));
	buf_free(&in);
	return s;
}

Test(xml, builder_stores_each_namespace_once)
{
	struct xml_builder b;
	size_t len, before = arena.total;
	char *in = amplifier(&len);

	before = arena.total;
	struct xml_node *n = build(&b, in, len, 0);
	cr_assert_not_null(n);
	size_t used = arena.total - before;
	/* Nodes cost some bytes each, but the URI is stored once, not 5,000
	 * times (160 MB). */
	cr_assert_lt(used, 16 * len, "arena %zu bytes for %zu of input",
		     used, len);
	struct xml_node *q = xml_first_element(n);
	const char *uri = xml_first_element(q)->ns;
	cr_assert_eq(strlen(uri), 32004);
	for (struct xml_node *c = xml_first_element(q); c != NULL;
	     c = xml_next_element(c))
		cr_assert_eq(c->ns, uri);
}

Test(xml, builder_refuses_what_would_write_out_too_large)
{
	struct xml_builder b;
	size_t len, before;
	char *in = amplifier(&len);

	before = arena.total;
	cr_assert_null(build(&b, in, len, xml_out_bound(64 << 10)));
	cr_assert(b.too_big);
	cr_assert(b.failed);
	cr_assert_leq(b.out_est, xml_out_bound(64 << 10) + 40000);
	cr_assert_lt(arena.total - before, 2 * len);

	/* The same bytes as text are fine: 62 KB written out as 62 KB. */
	struct buf text;
	buf_init(&text, 0);
	buf_appendf(&text, "<message xmlns='jabber:client'><body>");
	cr_assert_eq(xml_escape(&text, in, len, 0), 0);
	buf_appendf(&text, "</body></message>");
	struct xml_node *n = build(&b, buf_head(&text), buf_used(&text),
				   xml_out_bound(64 << 10));
	cr_assert_not_null(n);
	cr_assert(!b.too_big);
	buf_consume(&out, buf_used(&out));
	cr_assert_eq(xml_serialize(&out, n, NS_CLIENT), 0);
	cr_assert_leq(buf_used(&out), xml_builder_exact(&b));
	buf_free(&text);
}

/* Escaping is measured only near the bound, and then exactly: quotes in
 * an attribute written out as &quot; take six times their input. */
Test(xml, builder_measures_escaping_near_the_bound)
{
	struct xml_builder b;
	size_t n = 30000, bound = xml_out_bound(64 << 10);
	char *in = malloc(n + 16);

	cr_assert_not_null(in);
	memcpy(in, "<a x='", 6);
	memset(in + 6, '"', n);
	memcpy(in + 6 + n, "'/>", 4);
	cr_assert_null(build(&b, in, strlen(in), bound));
	cr_assert(b.too_big);
	/* A tenth of it: under the bound even escaped, never measured. */
	memcpy(in + 6 + n / 10, "'/>", 4);
	struct xml_node *t = build(&b, in, strlen(in), bound);
	cr_assert_not_null(t);
	cr_assert_neq(b.out_slack, 0);
	buf_consume(&out, buf_used(&out));
	cr_assert_eq(xml_serialize(&out, t, ""), 0);
	size_t upper = b.out_est + b.out_slack;
	cr_assert_leq(buf_used(&out), upper);
	size_t exact = xml_builder_exact(&b);
	cr_assert_geq(exact, buf_used(&out));
	cr_assert_leq(exact, upper);   /* equal: every byte a quote */
	free(in);
}

/* The builder's estimate is never below what xml_serialize() writes, in
 * any context: what it accepts fits the capped buffers. */
static void check_estimate(const char *in, const char *label)
{
	struct xml_builder b;
	struct xml_node *n = build(&b, in, strlen(in), 0);

	cr_assert_not_null(n, "%s", label);
	size_t upper = b.out_est + b.out_slack;
	cr_assert_leq(xml_builder_exact(&b), upper, "%s", label);
	for (size_t i = 0; i < 3; i++) {
		const char *d = i == 0 ? "" : i == 1 ? NS_CLIENT : "urn:other";
		buf_consume(&out, buf_used(&out));
		cr_assert_eq(xml_serialize(&out, n, d), 0, "%s", label);
		cr_assert_leq(buf_used(&out), b.out_est, "%s [%s]: wrote %zu, "
			      "estimated %zu", label, d, buf_used(&out),
			      b.out_est);
	}
	/* A bound just below the estimate refuses it. */
	cr_assert_null(build(&b, in, strlen(in), b.out_est - 1), "%s", label);
	cr_assert(b.too_big, "%s", label);
}

Test(xml, estimate_bounds_the_output)
{
	static const char *const cases[] = {
		"<a/>",
		"<a xmlns='urn:a'><b/><c>t</c></a>",
		"<xml:x xmlns='urn:a'><b/>t<c/></xml:x>",
		"<a xmlns='urn:a'><xml:x>t<b/>u</xml:x><xml:y>t</xml:y></a>",
		"<p:a xmlns:p='urn:p' p:b='1' b='2'/>",
		"<a xmlns:ns1='urn:one'><ns1:b xmlns:q='urn:two' q:c='x'>"
		"<ns1:d q:e='y'/></ns1:b></a>",
		"<a x=\"&#9;&#10;&#13; ]]&gt; &apos;&quot;&lt;&amp;\">"
		"&#13;]]&gt;</a>",
		"<a xmlns=\"urn:'&quot;&amp;&lt;&#9;\"><b xmlns=''/></a>",
		"<a xmlns='urn:a' xmlns:p='urn:a' p:x='1' x='2'/>",
		"<a xmlns:p='urn:\"' p:a='1' xml:lang='en'><p:b p:c='&quot;'/>"
		"</a>",
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++)
		check_estimate(cases[i], cases[i]);
}

/* ---- parsing --------------------------------------------------------- */

Test(xml, parse_rejects_restricted_xml)
{
	cr_expect_str_eq(parse_err("<a><!--c--></a>"),
			 "restricted XML: comment");
	cr_expect_str_eq(parse_err("<a/><!--c-->"), "restricted XML: comment");
	cr_expect_str_eq(parse_err("<a><?pi x?></a>"),
			 "restricted XML: processing instruction");
	cr_expect_str_eq(parse_err("<!DOCTYPE a SYSTEM 'x.dtd'><a/>"),
			 "restricted XML: DTD");
	/* CDATA sections are allowed; they come out as escaped text. */
	cr_expect_str_eq(ser(parse_ok("<a><![CDATA[<x>&]]>y</a>"), ""),
			 "<a>&lt;x&gt;&amp;y</a>");
}

Test(xml, parse_rejects_malformed)
{
	cr_expect_str_eq(parse_err("<a>"), "no element found");
	cr_expect_str_eq(parse_err("<a></b>"), "mismatched tag");
	cr_expect_str_eq(parse_err("<a x='1' x='2'/>"), "duplicate attribute");
	cr_expect_str_eq(parse_err("<p:a/>"), "unbound prefix");
	cr_expect_str_eq(parse_err("<a>&bogus;</a>"), "undefined entity");
	cr_expect_str_eq(parse_err("<a/><a/>"), "junk after document element");
	cr_expect_str_eq(parse_err("<a>\xff</a>"),
			 "not well-formed (invalid token)");
	cr_expect_str_eq(parse_err("<a>&#0;</a>"),
			 "reference to invalid character number");
}

Test(xml, parse_stops_at_length)
{
	const char *error = NULL;
	const char *text = "<a xmlns='urn:a'/>garbage";
	struct xml_node *n = xml_parse(&arena, text, 18, &error);

	cr_assert_not_null(n, "%s", error);
	cr_expect_str_eq(ser(n, "urn:a"), "<a/>");
}

/* ---- property: parse -> serialize -> re-parse gives the same tree ----- */

#define NS_XML "http://www.w3.org/XML/1998/namespace"

/* Contexts a stanza is serialized for: none, a client stream, another. */
static const char *const contexts[] = { "", NS_CLIENT, "urn:other" };


/* The property for one tree in every context: the output parses (expat
 * checks well-formedness and the reserved namespaces), back to the same
 * tree, both as xml_parse_in() reads it and inside a real element that
 * declares the context's default namespace. */
static void check_property(const struct xml_node *n, const char *label)
{
	const char *error = NULL;

	for (size_t i = 0; i < sizeof(contexts) / sizeof(*contexts); i++) {
		const char *d = contexts[i];
		buf_consume(&out, buf_used(&out));
		cr_assert_eq(xml_serialize(&out, n, d), 0, "%s", label);
		size_t len = buf_used(&out);
		char *s = arena_strndup(&arena, buf_head(&out), len);
		cr_assert_null(strstr(s, "xmlns='" NS_XML "'"), "%s: %s",
			       label, s);
		cr_assert_null(strstr(s, "xmlns:xml="), "%s: %s", label, s);
		struct xml_node *back = xml_parse_in(&arena, s, len, d, &error);
		cr_assert_not_null(back, "%s [%s]: output does not parse: %s: "
				   "%.300s", label, d, error, s);
		const char *diff = xml_tree_diff(n, back);
		cr_assert_null(diff, "%s [%s]: %s differs: %.300s", label, d,
			       diff, s);
		if (d[0] == '\0')
			continue;
		buf_consume(&out, buf_used(&out));
		buf_appendf(&out, "<w xmlns='%s'>%s</w>", d, s);
		back = xml_parse(&arena, buf_head(&out), buf_used(&out), &error);
		cr_assert_not_null(back, "%s [%s] in context: %s", label, d,
				   error);
		diff = xml_tree_diff(n, back->children);
		cr_assert_null(diff, "%s [%s] in context: %s differs", label,
			       d, diff);
	}
}

static void check_property_text(const char *in, const char *label)
{
	const char *error = NULL;
	struct xml_node *n = xml_parse(&arena, in, strlen(in), &error);

	cr_assert_not_null(n, "%s: corpus input does not parse: %s", label,
			   error);
	check_property(n, label);
	check_estimate(in, label);
}

static void check_golden_property(const char *in, const char *ref,
				  const char *file)
{
	(void)ref;
	check_property_text(in, file);
}

/* tests/xml/corpus: tricky stanzas, one per file (also a fuzzing seed
 * corpus), and the round-trip golden inputs. */
Test(xml, property_corpus_round_trips)
{
	char dir[4096], path[8192];
	struct dirent *e;
	unsigned n = 0;

	snprintf(dir, sizeof(dir), "%s/tests/xml/corpus", srcdir());
	DIR *d = opendir(dir);
	cr_assert_not_null(d, "cannot open %s", dir);
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		check_property_text(slurp(path), e->d_name);
		n++;
	}
	closedir(d);
	cr_assert_geq(n, 20);
	cr_assert_geq(for_each_golden("rt-", check_golden_property), 10);
}

Test(xml, xml_namespace_element_written_with_xml_prefix)
{
	struct xml_node *n = parse_ok("<message xmlns='jabber:client' to='b'>"
				      "<xml:x xml:foo='1'/><body>hi</body>"
				      "</message>");

	cr_expect_str_eq(ser(n, NS_CLIENT), "<message to='b'><xml:x "
			 "xml:foo='1'/><body>hi</body></message>");
	/* Element children: their default is stated, the XML namespace is
	 * never declared. */
	n = parse_ok("<a xmlns='urn:a'><xml:x><b/><c xmlns=''/></xml:x></a>");
	cr_expect_str_eq(ser(n, ""), "<a xmlns='urn:a'><xml:x xmlns=''><b "
			 "xmlns='urn:a'/><c/></xml:x></a>");
	cr_expect_str_eq(ser(xml_first_element(n), ""),
			 "<xml:x><b xmlns='urn:a'/><c/></xml:x>");
}

Test(xml, xmlns_namespace_element_refused)
{
	struct xml_node *n = xml_new(&arena, NS_CLIENT, "message");

	xml_add_child(&arena, n, "http://www.w3.org/2000/xmlns/", "x");
	cr_assert_eq(buf_append(&out, "kept", 4), 0);
	cr_expect_eq(xml_serialize(&out, n, NS_CLIENT), -1);
	cr_expect_eq(buf_used(&out), 4);
	/* expat cannot build it: nothing may be bound to that namespace. */
	cr_expect_str_eq(parse_err("<x xmlns='http://www.w3.org/2000/xmlns/'/>"),
			 "prefix must not be bound to one of the reserved "
			 "namespace names");
}

Test(xml, parse_in_context_default)
{
	const char *error = NULL;
	const char *s = "<message><x xmlns=''><y/></x><z xmlns='urn:z'><w "
			"xmlns=''/></z><body/></message>";
	struct xml_node *n = xml_parse_in(&arena, s, strlen(s), NS_CLIENT,
					  &error);

	cr_assert_not_null(n, "%s", error);
	cr_expect_str_eq(n->ns, NS_CLIENT);
	struct xml_node *x = xml_first_element(n);
	cr_expect_str_eq(x->ns, "");
	cr_expect_str_eq(xml_first_element(x)->ns, "");
	struct xml_node *z = xml_next_element(x);
	cr_expect_str_eq(xml_first_element(z)->ns, "");
	cr_expect_str_eq(xml_next_element(z)->ns, NS_CLIENT);
}

/* Deep and wide trees of every kind of namespace change, built from
 * text so that expat makes them. */
Test(xml, property_deep_and_wide_trees)
{
	static const char *const opens[] = {
		"<xml:a xml:b='1'>", "<a xmlns=''>", "<a xmlns='urn:a'>",
		"<p:a xmlns:p='urn:p' p:b='&#13;'>", "<a>",
		"<a xmlns='jabber:client' xmlns:ns1='urn:q' ns1:x='y'>",
	};
	static const char *const closes[] = {
		"</xml:a>", "</a>", "</a>", "</p:a>", "</a>", "</a>",
	};
	enum { DEPTH = 3000, WIDTH = 3000, KINDS = 6 };
	struct buf in;

	buf_init(&in, 0);
	for (int i = 0; i < DEPTH; i++)
		buf_appendf(&in, "%s]]&gt;", opens[(i * 7 + i / 6) % KINDS]);
	for (int i = DEPTH - 1; i >= 0; i--)
		buf_appendf(&in, "%s", closes[(i * 7 + i / 6) % KINDS]);
	buf_append(&in, "", 1);
	check_property_text(buf_head(&in), "deep");
	buf_consume(&in, buf_used(&in));
	buf_appendf(&in, "<r xmlns='urn:r'>");
	for (int i = 0; i < WIDTH; i++)
		buf_appendf(&in, "%s%d%s", opens[i % KINDS], i,
			    closes[i % KINDS]);
	buf_appendf(&in, "</r>");
	buf_append(&in, "", 1);
	check_property_text(buf_head(&in), "wide");
	buf_free(&in);
}

/* ---- store_read_stanza: the read path of stored stanzas --------------- */

static const char *store_err(const char *text, size_t len)
{
	const char *error = NULL;

	cr_assert_null(store_read_stanza(&arena, text, len, &error), "read: %s",
		       text);
	cr_assert_not_null(error);
	return error;
}

Test(xml, store_reads_what_was_stored)
{
	struct xml_node *st = parse_ok("<message xmlns='jabber:client' to='j@l' "
				       "type='chat' xml:foo='1'><body>hi</body>"
				       "<xml:x><b/><c xmlns=''/></xml:x><e "
				       "xmlns=''/></message>");
	const char *error = NULL;
	const char *stored = ser(st, NS_CLIENT);
	struct xml_node *back = store_read_stanza(&arena, stored,
						  strlen(stored), &error);

	cr_assert_not_null(back, "%s: %s", error, stored);
	cr_expect_null(xml_tree_diff(st, back), "%s", stored);
	cr_expect_str_eq(back->ns, NS_CLIENT);
	const char *iq = "<iq type='result' id='1'/>";
	cr_expect_not_null(store_read_stanza(&arena, iq, strlen(iq), &error));
	const char *pr = "<presence><show>away</show></presence>";
	cr_expect_not_null(store_read_stanza(&arena, pr, strlen(pr), &error));
}

Test(xml, store_refuses_what_is_no_stanza)
{
	/* What the serializer wrote for <xml:x/> before it was fixed. */
	cr_expect_str_eq(store_err("<message><x xmlns='http://www.w3.org/XML/"
				   "1998/namespace'/></message>", 64),
			 "prefix must not be bound to one of the reserved "
			 "namespace names");
	cr_expect_str_eq(store_err("<message><body>cut", 18),
			 "no element found");
	cr_expect_str_eq(store_err("", 0), "empty");
	cr_expect_str_eq(store_err("<message>\0</message>", 20), "NUL byte");
	cr_expect_str_eq(store_err("<vCard xmlns='vcard-temp'/>", 27),
			 "not a stanza");
	cr_expect_str_eq(store_err("<message xmlns='jabber:server'/>", 32),
			 "not a stanza");
	cr_expect_str_eq(store_err("<message xmlns=''/>", 19), "not a stanza");
	cr_expect_str_eq(store_err("<body/>", 7), "not a stanza");
	cr_expect_str_eq(store_err("<message/><message/>", 20),
			 "junk after document element");
}

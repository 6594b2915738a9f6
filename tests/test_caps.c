/*
 * test_caps.c - unit tests for worker/caps.c: the XEP-0115 section 5.2
 * simple and section 5.3 complex examples (their ver strings as the XEP
 * prints them), the section 5.4 checks, XEP-0390 examples (the sha-256
 * values of the XEP's simple and complex examples), <c/> parsing and the
 * +notify names.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "arena.h"
#include "buf.h"
#include "../worker/caps.h"
#include "../worker/xml.h"

TestSuite(caps, .timeout = 60.);

static struct arena a;

static struct xml_node *parse(const char *text)
{
	const char *error = NULL;
	arena_init(&a, 4096);
	struct xml_node *n = xml_parse_in(&a, text, strlen(text),
					  "jabber:client", &error);
	cr_assert_not_null(n, "parse: %s", error ? error : "?");
	return n;
}

#define Q "<query xmlns='http://jabber.org/protocol/disco#info'>"
#define F(v) "<feature var='" v "'/>"

/* XEP-0115 section 5.2 (the order shuffled: the input is sorted). */
static const char simple_0115[] = Q
	F("http://jabber.org/protocol/muc")
	F("http://jabber.org/protocol/disco#info")
	"<identity category='client' name='Exodus 0.9.1' type='pc'/>"
	F("http://jabber.org/protocol/caps")
	F("http://jabber.org/protocol/disco#items")
	"</query>";

/* XEP-0115 section 5.3. */
static const char complex_0115[] = Q
	"<identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>"
	"<identity xml:lang='el' category='client' name='\xce\xa8 0.11' type='pc'/>"
	F("http://jabber.org/protocol/caps")
	F("http://jabber.org/protocol/disco#info")
	F("http://jabber.org/protocol/disco#items")
	F("http://jabber.org/protocol/muc")
	"<x xmlns='jabber:x:data' type='result'>"
	"<field var='FORM_TYPE' type='hidden'>"
	"<value>urn:xmpp:dataforms:softwareinfo</value></field>"
	"<field var='ip_version'><value>ipv4</value><value>ipv6</value></field>"
	"<field var='os'><value>Mac</value></field>"
	"<field var='os_version'><value>10.5.1</value></field>"
	"<field var='software'><value>Psi</value></field>"
	"<field var='software_version'><value>0.11</value></field>"
	"</x></query>";

static void check_ver(const char *xml, int v2, enum caps_algo algo,
		      const char *want)
{
	struct xml_node *q = parse(xml);
	struct caps_ref r = { .v2 = v2, .algo = algo };
	const char *error = NULL;
	strcpy(r.ver, want);
	cr_assert_eq(caps_verify(q, &r, &error), 1, "%s: %s", want,
		     error ? error : "mismatch");
	arena_free(&a);
}

Test(caps, simple_0115_string)
{
	struct xml_node *q = parse(simple_0115);
	struct buf b;
	const char *error;
	buf_init(&b, 0);
	cr_assert_eq(caps_input(q, 0, &b, &error), 0);
	buf_append(&b, "", 1);
	cr_assert_str_eq(buf_head(&b), "client/pc//Exodus 0.9.1<"
		"http://jabber.org/protocol/caps<"
		"http://jabber.org/protocol/disco#info<"
		"http://jabber.org/protocol/disco#items<"
		"http://jabber.org/protocol/muc<");
	buf_free(&b);
	arena_free(&a);
}

Test(caps, simple_0115_ver)
{
	check_ver(simple_0115, 0, CAPS_SHA1, "QgayPKawpkPSDYmwT/WM94uAlu0=");
}

/* slixmpp 1.8.3 with an avatar interest: "urn:xmpp:avatar:metadata"
 * sorts before "urn:xmpp:avatar:metadata+notify" (the features are
 * sorted, then '<' appended); the ver is what slixmpp sent. */
Test(caps, prefix_feature_0115_ver)
{
	check_ver(Q "<identity category='client' type='bot'/>"
		  F("urn:xmpp:avatar:metadata+notify")
		  F("http://jabber.org/protocol/disco#info")
		  F("urn:xmpp:ping") F("jabber:x:data")
		  F("http://jabber.org/protocol/shim")
		  F("http://jabber.org/protocol/shim#SubID")
		  F("http://jabber.org/protocol/caps")
		  F("urn:xmpp:avatar:metadata") "</query>", 0, CAPS_SHA1,
		  "kwIV8tEtD/ks9sDgw6PFahvemVU=");
}

Test(caps, complex_0115_string)
{
	struct xml_node *q = parse(complex_0115);
	struct buf b;
	const char *error;
	buf_init(&b, 0);
	cr_assert_eq(caps_input(q, 0, &b, &error), 0);
	buf_append(&b, "", 1);
	cr_assert_str_eq(buf_head(&b), "client/pc/el/\xce\xa8 0.11<"
		"client/pc/en/Psi 0.11<http://jabber.org/protocol/caps<"
		"http://jabber.org/protocol/disco#info<"
		"http://jabber.org/protocol/disco#items<"
		"http://jabber.org/protocol/muc<"
		"urn:xmpp:dataforms:softwareinfo<ip_version<ipv4<ipv6<os<Mac<"
		"os_version<10.5.1<software<Psi<software_version<0.11<");
	buf_free(&b);
	arena_free(&a);
}

Test(caps, complex_0115_ver)
{
	check_ver(complex_0115, 0, CAPS_SHA1, "q07IKJEyjvHSyhy//CH0CxmKi8w=");
}

Test(caps, mismatch_is_zero)
{
	struct xml_node *q = parse(simple_0115);
	struct caps_ref r = { .algo = CAPS_SHA1 };
	const char *error;
	strcpy(r.ver, "q07IKJEyjvHSyhy//CH0CxmKi8w=");
	cr_assert_eq(caps_verify(q, &r, &error), 0);
	r.algo = CAPS_SHA256;   /* the right ver, the wrong function */
	strcpy(r.ver, "QgayPKawpkPSDYmwT/WM94uAlu0=");
	cr_assert_eq(caps_verify(q, &r, &error), 0);
	arena_free(&a);
}

/* Section 5.4: each of these makes the answer ill-formed. */
Test(caps, ill_formed)
{
	static const char *const bad[] = {
		Q F("a") F("a") "</query>",
		Q "<identity category='client' type='pc' name='x'/>"
		  "<identity category='client' type='pc' name='x'/></query>",
		Q "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE'"
		  " type='hidden'><value>t</value></field></x>"
		  "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE'"
		  " type='hidden'><value>t</value></field></x></query>",
		Q "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE'"
		  " type='hidden'><value>t</value><value>u</value></field></x>"
		  "</query>",
		"<query xmlns='jabber:iq:version'/>",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct xml_node *q = parse(bad[i]);
		struct buf b;
		const char *error = NULL;
		buf_init(&b, 0);
		cr_assert_eq(caps_input(q, 0, &b, &error), -1, "case %zu", i);
		cr_assert_not_null(error);
		buf_free(&b);
		arena_free(&a);
	}
}

/* A form whose FORM_TYPE is not hidden is ignored (5.4 rule 3.4). */
Test(caps, form_not_hidden_ignored)
{
	struct xml_node *q = parse(Q F("a")
		"<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE'>"
		"<value>t</value></field><field var='f'><value>v</value>"
		"</field></x></query>");
	struct buf b;
	const char *error;
	buf_init(&b, 0);
	cr_assert_eq(caps_input(q, 0, &b, &error), 0);
	buf_append(&b, "", 1);
	cr_assert_str_eq(buf_head(&b), "a<");
	buf_free(&b);
	arena_free(&a);
}

/* XEP-0390 section 4.1 examples (sha-256). */
Test(caps, simple_0390)
{
	check_ver(Q "<identity category='client' name='BombusMod' type='mobile'/>"
		F("http://jabber.org/protocol/si")
		F("http://jabber.org/protocol/bytestreams")
		F("http://jabber.org/protocol/chatstates")
		F("http://jabber.org/protocol/disco#info")
		F("http://jabber.org/protocol/disco#items")
		F("urn:xmpp:ping") F("jabber:iq:time") F("jabber:iq:privacy")
		F("jabber:iq:version") F("http://jabber.org/protocol/rosterx")
		F("urn:xmpp:time") F("jabber:x:oob")
		F("http://jabber.org/protocol/ibb")
		F("http://jabber.org/protocol/si/profile/file-transfer")
		F("urn:xmpp:receipts") F("jabber:iq:roster") F("jabber:iq:last")
		"</query>", 1, CAPS_SHA256,
		"kzBZbkqJ3ADrj7v08reD1qcWUwNGHaidNUgD7nHpiw8=");
}

Test(caps, complex_0390)
{
	check_ver(Q
		"<identity category='client' name='Tkabber' type='pc' xml:lang='en'/>"
		"<identity category='client' name='\xd0\xa2\xd0\xba\xd0\xb0\xd0\xb1"
		"\xd0\xb1\xd0\xb5\xd1\x80' type='pc' xml:lang='ru'/>"
		F("games:board") F("http://jabber.org/protocol/activity")
		F("http://jabber.org/protocol/activity+notify")
		F("http://jabber.org/protocol/bytestreams")
		F("http://jabber.org/protocol/chatstates")
		F("http://jabber.org/protocol/commands")
		F("http://jabber.org/protocol/disco#info")
		F("http://jabber.org/protocol/disco#items")
		F("http://jabber.org/protocol/evil")
		F("http://jabber.org/protocol/feature-neg")
		F("http://jabber.org/protocol/geoloc")
		F("http://jabber.org/protocol/geoloc+notify")
		F("http://jabber.org/protocol/ibb")
		F("http://jabber.org/protocol/iqibb")
		F("http://jabber.org/protocol/mood")
		F("http://jabber.org/protocol/mood+notify")
		F("http://jabber.org/protocol/rosterx")
		F("http://jabber.org/protocol/si")
		F("http://jabber.org/protocol/si/profile/file-transfer")
		F("http://jabber.org/protocol/tune")
		F("http://www.facebook.com/xmpp/messages")
		F("http://www.xmpp.org/extensions/xep-0084.html#ns-metadata+notify")
		F("jabber:iq:avatar") F("jabber:iq:browse") F("jabber:iq:dtcp")
		F("jabber:iq:filexfer") F("jabber:iq:ibb") F("jabber:iq:inband")
		F("jabber:iq:jidlink") F("jabber:iq:last") F("jabber:iq:oob")
		F("jabber:iq:privacy") F("jabber:iq:roster") F("jabber:iq:time")
		F("jabber:iq:version") F("jabber:x:data") F("jabber:x:event")
		F("jabber:x:oob") F("urn:xmpp:avatar:metadata+notify")
		F("urn:xmpp:ping") F("urn:xmpp:receipts") F("urn:xmpp:time")
		"<x xmlns='jabber:x:data' type='result'>"
		"<field type='hidden' var='FORM_TYPE'>"
		"<value>urn:xmpp:dataforms:softwareinfo</value></field>"
		"<field var='software'><value>Tkabber</value></field>"
		"<field var='software_version'><value>0.11.1-svn-20111216-mod "
		"(Tcl/Tk 8.6b2)</value></field>"
		"<field var='os'><value>Windows</value></field>"
		"<field var='os_version'><value>XP</value></field>"
		"</x></query>", 1, CAPS_SHA256,
		"u79ZroNJbdSWhdSp311mddz44oHHPsEBntQ5b1jqBSY=");
}

Test(caps, parse_presence)
{
	struct caps_ref r;
	struct xml_node *p = parse("<presence><c xmlns='http://jabber.org/"
		"protocol/caps' hash='sha-1' node='http://psi-im.org' "
		"ver='q07IKJEyjvHSyhy//CH0CxmKi8w='/></presence>");
	cr_assert_eq(caps_parse_presence(p, &r), 1);
	cr_assert_eq(r.v2, 0);
	cr_assert_eq(r.algo, CAPS_SHA1);
	cr_assert_str_eq(r.node, "http://psi-im.org");
	char node[400];
	cr_assert_eq(caps_query_node(&r, node, sizeof(node)), 0);
	cr_assert_str_eq(node, "http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w=");
	arena_free(&a);

	/* legacy 0115 (no hash), a bad ver, an unknown hash: no caps */
	static const char *const none[] = {
		"<presence><c xmlns='http://jabber.org/protocol/caps' node='n' "
		"ver='1.0' ext='a b'/></presence>",
		"<presence><c xmlns='http://jabber.org/protocol/caps' node='n' "
		"hash='sha-1' ver='a&apos;b'/></presence>",
		"<presence><c xmlns='http://jabber.org/protocol/caps' node='n' "
		"hash='md5' ver='abc='/></presence>",
		"<presence/>",
	};
	for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
		p = parse(none[i]);
		cr_assert_eq(caps_parse_presence(p, &r), 0, "case %zu", i);
		arena_free(&a);
	}

	p = parse("<presence><c xmlns='urn:xmpp:caps'><hash xmlns='urn:xmpp:"
		  "hashes:2' algo='sha3-256'>79mdYAfU9rEdTOcWDO7UEAt6E56SUzk/"
		  "g6TnqUeuD9Q=</hash><hash xmlns='urn:xmpp:hashes:2' "
		  "algo='sha-256'>kzBZbkqJ3ADrj7v08reD1qcWUwNGHaidNUgD7nHpiw8="
		  "</hash></c></presence>");
	cr_assert_eq(caps_parse_presence(p, &r), 1);
	cr_assert_eq(r.v2, 1);
	cr_assert_eq(r.algo, CAPS_SHA256);
	cr_assert_eq(caps_query_node(&r, node, sizeof(node)), 0);
	cr_assert_str_eq(node, "urn:xmpp:caps#sha-256."
			 "kzBZbkqJ3ADrj7v08reD1qcWUwNGHaidNUgD7nHpiw8=");
	arena_free(&a);
}

Test(caps, notify_names)
{
	struct xml_node *q = parse(Q F("urn:xmpp:avatar:metadata+notify")
		F("+notify") F("x") F("eu.siacs.conversations.axolotl.devicelist"
		"+notify") F("c+notify") "</query>");
	const char *names[2];
	size_t lens[2];
	int more;
	cr_assert_eq(caps_notify_names(q, names, lens, 2, &more), 2);
	cr_assert_eq(more, 1);
	cr_assert_eq(lens[0], strlen("urn:xmpp:avatar:metadata"));
	cr_assert(strncmp(names[0], "urn:xmpp:avatar:metadata", lens[0]) == 0);
	cr_assert(strncmp(names[1], "eu.siacs.conversations.axolotl.devicelist",
			  lens[1]) == 0);
	arena_free(&a);
}

/* The node of an answer from another server (pep_remote.c): the
 * reverse of caps_query_node for the algorithm and version the query id
 * names. */
Test(caps, node_parse_reverses_query_node)
{
	struct caps_ref r;
	char node[CAPS_NODE_MAX + CAPS_VER_MAX + 64];
	cr_assert_eq(caps_node_parse("https://a.example/c#b#QgayPKawpkPSDYmwT/"
				     "WM94uAlu0=", CAPS_SHA1, 0, &r), 0);
	cr_assert_str_eq(r.node, "https://a.example/c#b");
	cr_assert_str_eq(r.ver, "QgayPKawpkPSDYmwT/WM94uAlu0=");
	cr_assert_eq(caps_query_node(&r, node, sizeof(node)), 0);
	cr_assert_str_eq(node, "https://a.example/c#b#QgayPKawpkPSDYmwT/"
			 "WM94uAlu0=");
	cr_assert_eq(caps_node_parse("urn:xmpp:caps#sha-256.K1Njy3HZ=", CAPS_SHA256,
				     1, &r), 0);
	cr_assert_str_eq(r.ver, "K1Njy3HZ=");
	cr_assert(r.v2 && r.algo == CAPS_SHA256);
	/* another algorithm than the id's, no ver, a ver that is not
	 * base64, no node part, an unknown algorithm */
	cr_assert_eq(caps_node_parse("urn:xmpp:caps#sha-256.K1Nj", CAPS_SHA512,
				     1, &r), -1);
	cr_assert_eq(caps_node_parse("https://a#", CAPS_SHA1, 0, &r), -1);
	cr_assert_eq(caps_node_parse("https://a#a b", CAPS_SHA1, 0, &r), -1);
	cr_assert_eq(caps_node_parse("#QgayPKawpk", CAPS_SHA1, 0, &r), -1);
	cr_assert_eq(caps_node_parse("n#QgayPKawpk", CAPS_ALGO_NONE, 0, &r),
		     -1);
}

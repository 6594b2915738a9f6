/*
 * fuzz_caps.c - XEP-0115 / XEP-0390 entity capabilities as a client
 * sends them: the <c/> of a presence (caps_parse_presence,
 * caps_query_node) and the disco#info answer (caps_input, caps_verify,
 * caps_notify_names) of worker/caps.c, as worker/caps_ext.c runs them.
 * Properties:
 *  - no memory error or undefined behaviour (ASan, UBSan);
 *  - a parsed <c/> has a known algorithm, a ver of 1..128 base64
 *    characters and a query node that fits CAPS_NODE_MAX + ver + 32;
 *  - the hash input is deterministic (two runs give the same octets)
 *    and an ill-formed answer always names its reason;
 *  - the answer's hash verifies against itself (caps_verify with the
 *    computed ver is 1) for both versions and every algorithm;
 *  - +notify names are non-empty, at most the max asked for;
 *  - caps_node_parse (the node of an answer to a query sent to another
 *    server, pep_remote.c) is the exact reverse of caps_query_node: a
 *    parsed <c/>'s query node reads back as the same ref, and a node
 *    that parses is rebuilt byte for byte.
 * Input: one XML element: a <presence/>, an <iq/> (its first child is
 * the payload) or a disco#info <query/>.
 */
#include "fuzz.h"
#include "xmlinput.h"
#include "arena.h"
#include "buf.h"
#include "../worker/caps.h"
#include "../worker/xml.h"

#include <string.h>

static void fuzz_presence(const struct xml_node *p)
{
	struct caps_ref r;
	char node[CAPS_NODE_MAX + CAPS_VER_MAX + 32];
	if (caps_parse_presence(p, &r) != 1)
		return;
	size_t vl = strlen(r.ver);
	FUZZ_CHECK(r.algo >= CAPS_SHA1 && r.algo <= CAPS_SHA512, "algo %d",
		   r.algo);
	FUZZ_CHECK(vl >= 1 && vl <= CAPS_VER_MAX, "ver length %zu", vl);
	FUZZ_CHECK(strspn(r.ver, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
			  "qrstuvwxyz0123456789+/=") == vl, "ver %s", r.ver);
	FUZZ_CHECK(r.v2 || r.node[0] != '\0', "0115 without node");
	FUZZ_CHECK(caps_query_node(&r, node, sizeof(node)) == 0,
		   "query node does not fit");
	struct caps_ref back;
	FUZZ_CHECK(caps_node_parse(node, r.algo, r.v2, &back) == 0,
		   "query node %s does not parse back", node);
	FUZZ_CHECK(strcmp(back.ver, r.ver) == 0 && back.algo == r.algo &&
		   back.v2 == r.v2 && (r.v2 || strcmp(back.node, r.node) == 0),
		   "query node %s parses back differently", node);
}

/* A node as an answer to our query would name it: parsed for each
 * algorithm and version, it must rebuild exactly. */
static void fuzz_node(const char *node)
{
	char again[CAPS_NODE_MAX + CAPS_VER_MAX + 64];
	for (int al = CAPS_SHA1; al <= CAPS_SHA512; al++)
		for (int v2 = 0; v2 <= 1; v2++) {
			struct caps_ref r;
			if (caps_node_parse(node, (enum caps_algo)al, v2,
					    &r) != 0)
				continue;
			FUZZ_CHECK(caps_query_node(&r, again,
						   sizeof(again)) == 0 &&
				   strcmp(again, node) == 0,
				   "node %s rebuilds as %s", node, again);
		}
}

static void fuzz_query(const struct xml_node *q)
{
	for (int v2 = 0; v2 <= 1; v2++) {
		struct buf a, b;
		const char *ea = NULL, *eb = NULL;
		buf_init(&a, 0);
		buf_init(&b, 0);
		int ra = caps_input(q, v2, &a, &ea);
		int rb = caps_input(q, v2, &b, &eb);
		FUZZ_CHECK(ra == rb, "two runs differ");
		FUZZ_CHECK(ra == 0 || ea != NULL, "error without reason");
		if (ra == 0) {
			FUZZ_CHECK(buf_used(&a) == buf_used(&b) &&
				   (buf_used(&a) == 0 ||
				    memcmp(buf_head(&a), buf_head(&b),
					   buf_used(&a)) == 0), "input differs");
			for (int al = CAPS_SHA1; al <= CAPS_SHA512; al++) {
				struct caps_ref r = { .v2 = v2,
						      .algo = (enum caps_algo)al };
				const char *e;
				FUZZ_CHECK(caps_hash_b64(r.algo, buf_head(&a),
							 buf_used(&a), r.ver,
							 sizeof(r.ver)) == 0,
					   "hash");
				FUZZ_CHECK(caps_verify(q, &r, &e) == 1,
					   "own hash does not verify");
			}
		}
		buf_free(&a);
		buf_free(&b);
	}
	const char *names[8];
	size_t lens[8];
	int more;
	unsigned n = caps_notify_names(q, names, lens, 8, &more);
	FUZZ_CHECK(n <= 8, "too many names");
	for (unsigned i = 0; i < n; i++)
		FUZZ_CHECK(lens[i] > 0, "empty name");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct arena *a;
	struct xml_node *n = fuzz_xml_input(&a, data, size);
	if (n != NULL && xml_is(n, "jabber:client", "presence"))
		fuzz_presence(n);
	else if (n != NULL && xml_is(n, "jabber:client", "iq"))
		n = xml_first_element(n);
	if (n != NULL && xml_is(n, NS_DISCO_INFO, "query")) {
		fuzz_query(n);
		if (xml_attr(n, "node") != NULL)
			fuzz_node(xml_attr(n, "node"));
	}
	arena_reset(a);
	return 0;
}

/*
 * fuzz_dialback.c - server dialback elements and keys
 * (worker/dialback.c), as an incoming s2s stream hands them over.
 * Properties:
 *  - an element that parses has prepared domains in from and to (they
 *    parse again to themselves), a <db:verify/> an id of at most
 *    DIALBACK_ID_MAX bytes, a request a key of 1..DIALBACK_KEY_MAX
 *    printable ASCII characters, an answer no key;
 *  - the key we make for (to, from, id) is accepted by dialback_key_ok
 *    and the peer's key only when it is exactly that one.
 * Input: one XML element, text as it would arrive (jabber:server is the
 * default namespace; declare xmlns:db='jabber:server:dialback').
 */
#include "fuzz.h"
#include "arena.h"
#include "jid.h"
#include "../worker/xml.h"
#include "../worker/dialback.h"

#include <string.h>

static void check_domain(struct arena *a, const char *d)
{
	struct jid j;
	const char *error;
	FUZZ_CHECK(d != NULL && jid_parse(a, d, &j, &error) == 0 &&
		   j.local == NULL && j.resource == NULL &&
		   strcmp(j.domain, d) == 0, "domain \"%s\" not prepared",
		   d ? d : "(null)");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int init;
	struct arena a;
	struct dialback_elem d;
	const char *error;
	char key[DIALBACK_KEY_HEX + 1];

	if (!init) {
		fuzz_quiet_log();
		dialback_init_secret();
		init = 1;
	}
	arena_init(&a, 4096);
	struct xml_node *n = xml_parse_in(&a, (const char *)data, size,
					  "jabber:server", &error);
	if (n == NULL || dialback_parse(&a, n, &d, &error) < 0) {
		arena_free(&a);
		return 0;
	}
	check_domain(&a, d.from);
	check_domain(&a, d.to);
	FUZZ_CHECK(d.kind == DIALBACK_RESULT || d.kind == DIALBACK_VERIFY,
		   "kind %d", (int)d.kind);
	if (d.kind == DIALBACK_VERIFY)
		FUZZ_CHECK(d.id != NULL && d.id[0] != '\0' &&
			   strlen(d.id) <= DIALBACK_ID_MAX, "id");
	if (d.type == DIALBACK_REQUEST) {
		size_t len = d.key != NULL ? strlen(d.key) : 0;
		FUZZ_CHECK(len >= 1 && len <= DIALBACK_KEY_MAX, "key length %zu",
			   len);
		for (size_t i = 0; i < len; i++)
			FUZZ_CHECK(d.key[i] > ' ' && d.key[i] < 0x7f,
				   "key byte %zu", i);
	} else {
		FUZZ_CHECK(d.key == NULL, "an answer with a key");
	}
	const char *id = d.id != NULL ? d.id : "stream";
	FUZZ_CHECK(dialback_key(d.to, d.from, id, key) == 0, "no key made");
	FUZZ_CHECK(strlen(key) == DIALBACK_KEY_HEX, "key length");
	FUZZ_CHECK(dialback_key_ok(d.to, d.from, id, key) == 1,
		   "our own key refused");
	if (d.key != NULL)
		FUZZ_CHECK(dialback_key_ok(d.to, d.from, id, d.key) ==
			   (strcmp(d.key, key) == 0), "peer key verdict");
	arena_free(&a);
	return 0;
}

/*
 * fuzz_stored.c - the read path of stored stanzas (offline messages):
 * the bytes of a database row become a stanza tree, which is delivered
 * with a XEP-0203 <delay/> added: store_read_stanza() (worker/store.c),
 * as worker/offline.c reads rows.  Properties:
 *  - no memory error or undefined behaviour on any row;
 *  - a row that reads is stored again unchanged: xml_serialize(st,
 *    "jabber:client") (what offline_store() writes) reads back to an
 *    equal tree;
 *  - the delivered copy, delay added, survives serialize and re-parse
 *    on a client stream.
 * Input: the row's bytes.
 */
#include "fuzz.h"
#include "xmlcheck.h"
#include "arena.h"

#define NS_CLIENT "jabber:client"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct arena a;
	static int ready;
	const char *error = NULL;

	if (!ready) {
		fuzz_quiet_log();
		arena_init(&a, 4096);
		ready = 1;
	}
	if (size > 65536)
		return 0;
	struct xml_node *st = xmlcheck_stored_read(&a, (const char *)data,
						   size, &error);
	if (st == NULL) {
		FUZZ_CHECK(error != NULL, "refused without a reason");
		arena_reset(&a);
		return 0;
	}
	/* stored again as offline_store() would, and read back */
	xmlcheck_store_round_trip(st);
	/* delivered as offline_send_one() does */
	struct xml_node *d = xml_add_child(&a, st, "urn:xmpp:delay", "delay");
	if (d != NULL && xml_set_attr(&a, d, "from", "example.com") == 0 &&
	    xml_set_attr(&a, d, "stamp", "2026-12-06T01:02:03.000Z") == 0 &&
	    xml_add_text(&a, d, "Offline Storage", 15) == 0)
		xmlcheck_round_trip(st, NS_CLIENT);
	arena_reset(&a);
	return 0;
}

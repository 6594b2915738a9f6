/*
 * xmlcheck.c - see xmlcheck.h.
 */
#include "fuzz.h"
#include "xmlcheck.h"
#include "arena.h"
#include "buf.h"

#include <string.h>

#include "../worker/store.h"

void xmlcheck_round_trip(const struct xml_node *n, const char *default_ns)
{
	struct buf out;
	struct arena a;
	const char *error = NULL;
	/* A wrapper gives the serialized element the default namespace it
	 * was written for, as the stream header does on the wire. */
	static const char open1[] = "<w xmlns='", open2[] = "'>",
			  close[] = "</w>";

	buf_init(&out, 0);
	if (default_ns != NULL && default_ns[0] != '\0') {
		buf_append(&out, open1, sizeof(open1) - 1);
		xml_escape(&out, default_ns, strlen(default_ns), 1);
		buf_append(&out, open2, sizeof(open2) - 1);
	}
	size_t start = buf_used(&out);
	if (xml_serialize(&out, n, default_ns) < 0) {
		buf_free(&out);
		return;
	}
	size_t end = buf_used(&out);
	if (start > 0)
		buf_append(&out, close, sizeof(close) - 1);
	arena_init(&a, 4096);
	struct xml_node *again = xml_parse(&a, buf_head(&out), buf_used(&out),
					   &error);
	FUZZ_CHECK(again != NULL, "serialized stanza does not parse (%s): "
		   "%.*s", error, (int)(end - start), buf_head(&out) + start);
	if (start > 0)
		again = again->children;
	FUZZ_CHECK(again != NULL, "serialized stanza vanished: %.*s",
		   (int)(end - start), buf_head(&out) + start);
	const char *why = xml_tree_diff(n, again);
	FUZZ_CHECK(why == NULL, "re-parsed stanza differs (%s): %.*s", why,
		   (int)(end - start), buf_head(&out) + start);
	arena_free(&a);
	buf_free(&out);
}

struct xml_node *xmlcheck_stored_read(struct arena *a, const char *bytes,
				      size_t len, const char **error_r)
{
	return store_read_stanza(a, bytes, len, error_r);
}

void xmlcheck_store_round_trip(const struct xml_node *n)
{
	struct buf out;
	struct arena a;
	const char *error = NULL;

	buf_init(&out, 0);
	if (xml_serialize(&out, n, "jabber:client") < 0) {
		buf_free(&out);
		return;
	}
	arena_init(&a, 4096);
	struct xml_node *again = store_read_stanza(&a, buf_head(&out),
					       buf_used(&out), &error);
	FUZZ_CHECK(again != NULL, "a stored stanza cannot be read back (%s): "
		   "%.*s", error, (int)buf_used(&out), buf_head(&out));
	const char *why = xml_tree_diff(n, again);
	FUZZ_CHECK(why == NULL, "a stored stanza reads back different (%s): "
		   "%.*s", why, (int)buf_used(&out), buf_head(&out));
	arena_free(&a);
	buf_free(&out);
}

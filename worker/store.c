/*
 * store.c - reading stored stanzas back (store.h).  Stanzas are stored as
 * xml_serialize(st, "jabber:client") wrote them, so they are read in that
 * context (xml_parse_in); anything else in the column -- a stanza written
 * by an older, buggy version, or a row edited by hand -- is refused with
 * a reason rather than half-read.
 * Failure policy: see store.h; nothing is logged here.
 */
#include "store.h"

#include <string.h>

#define STORE_NS "jabber:client"

struct xml_node *store_read_stanza(struct arena *a, const char *bytes,
				   size_t len, const char **error_r)
{
	const char *error = NULL;

	if (len == 0) {
		*error_r = "empty";
		return NULL;
	}
	if (memchr(bytes, '\0', len) != NULL) {
		*error_r = "NUL byte";
		return NULL;
	}
	struct xml_node *st = xml_parse_in(a, bytes, len, STORE_NS, &error);
	if (st == NULL) {
		*error_r = error != NULL ? error : "not XML";
		return NULL;
	}
	if (!xml_is(st, STORE_NS, NULL) ||
	    (strcmp(st->name, "message") != 0 &&
	     strcmp(st->name, "presence") != 0 &&
	     strcmp(st->name, "iq") != 0)) {
		*error_r = "not a stanza";
		return NULL;
	}
	return st;
}

/*
 * store.h - the one read path for stanzas xmppd stored in PostgreSQL
 * (offline messages now; archives and any later store of stanzas reuse
 * it): the bytes as stored become a stanza tree, or an error that says
 * why not.  A pure function of its input -- no database, no logging, no
 * globals -- that needs only xml.c, so it can be fuzzed alone.
 * Failure policy: NULL with a reason; the caller logs the row's id at
 * error level and keeps the row (or moves it aside for the operator).  A
 * stored row is never deleted unread (docs/DESIGN.md, failure rules).
 */
#ifndef XMPPD_STORE_H
#define XMPPD_STORE_H

#include <stddef.h>
#include "xml.h"

/* A message, presence or iq in jabber:client, as xml_serialize() wrote
 * it for a client stream, read into arena a; NULL and *error_r (a static
 * string) when the bytes are not one. */
struct xml_node *store_read_stanza(struct arena *a, const char *bytes,
				   size_t len, const char **error_r);

#endif

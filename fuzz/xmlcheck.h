/*
 * xmlcheck.h - the serialize/re-parse property of stanza trees, shared by
 * the xml and stored-stanza harnesses.
 */
#ifndef XMPPD_FUZZ_XMLCHECK_H
#define XMPPD_FUZZ_XMLCHECK_H

#include "arena.h"
#include "../worker/xml.h"

/* Serialize n with default_ns in scope, parse the text again and
 * require an equal tree; aborts (FUZZ_CHECK) otherwise.  A buffer-cap
 * failure of xml_serialize is not a finding (returns quietly). */
void xmlcheck_round_trip(const struct xml_node *n, const char *default_ns);

/* The read path of stored stanzas: store_read_stanza(). */
struct xml_node *xmlcheck_stored_read(struct arena *a, const char *bytes,
				      size_t len, const char **error_r);

/* Store n as offline_store() does (xml_serialize with jabber:client in
 * scope) and read it back: it must read, and equal n; aborts otherwise. */
void xmlcheck_store_round_trip(const struct xml_node *n);

#endif

/*
 * xmlinput.h - for the harnesses whose input is one XML element (what a
 * client sends: fuzz_caps, fuzz_mam, fuzz_pubsub, fuzz_pep_compat):
 * the lazy set-up and the parse they all begin with.  A header of static
 * inline functions (not common.c): harnesses that do not parse XML are
 * linked without worker/xml.c.
 * Failure policy: an input over 64 KiB or not well-formed is NULL (the
 * harness does nothing with it).
 */
#ifndef XMPPD_FUZZ_XMLINPUT_H
#define XMPPD_FUZZ_XMLINPUT_H

#include "fuzz.h"
#include "arena.h"
#include "../worker/xml.h"

/* The input parsed (unqualified = jabber:client) into this harness's
 * arena (*a_r; the harness resets it when done), or NULL. */
static inline struct xml_node *fuzz_xml_input(struct arena **a_r,
					      const uint8_t *data, size_t size)
{
	static struct arena a;
	static int ready;
	const char *error;
	if (!ready) {
		fuzz_quiet_log();
		arena_init(&a, 4096);
		ready = 1;
	}
	*a_r = &a;
	if (size > 65536)
		return NULL;
	return xml_parse_in(&a, (const char *)data, size, "jabber:client",
			    &error);
}

#endif

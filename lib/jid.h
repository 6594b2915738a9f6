/*
 * jid.h - XMPP addresses: split per RFC 7622 section 3.1, but each part is
 * prepared with the RFC 6122 stringprep profiles of libidn (Nodeprep,
 * Nameprep, Resourceprep), not the PRECIS profiles of RFC 7622: libidn is
 * what every deployed stringprep server agrees with, and no maintained C
 * PRECIS library exists.  Differences are listed in jid.c.
 * Failure policy: jid_parse() and jid_prep_part() return -1 with a static
 * reason in *error_r (the caller answers jid-malformed); -1 on
 * out-of-memory too, with the reason "out of memory".  Nothing logs.
 */
#ifndef XMPPD_JID_H
#define XMPPD_JID_H

#include <stdbool.h>
#include <stddef.h>

#include "arena.h"

#define JID_PART_MAX 1023           /* bytes per prepared part */

enum jid_part {
	JID_PART_LOCAL = 0,
	JID_PART_DOMAIN,
	JID_PART_RESOURCE,
};

/* A prepared JID.  The strings live in the arena given to jid_parse(). */
struct jid {
	const char *local;          /* NULL when absent, else 1..1023 bytes */
	const char *domain;         /* never NULL: U-labels, lower case, no
				       trailing dot, or an IP literal */
	const char *resource;       /* NULL when absent; case preserved */
};

/* Parse and prepare s (NUL-terminated).  0, or -1 with *error_r. */
int jid_parse(struct arena *a, const char *s, struct jid *jid_r,
	      const char **error_r);
/* Prepare one part given on its own (a SASL username is a localpart),
 * len bytes of s, into the arena.  0, or -1 with *error_r. */
int jid_prep_part(struct arena *a, enum jid_part part, const char *s,
		  size_t len, const char **out_r, const char **error_r);

/* 1 (the default): printable-ASCII parts skip libidn, with the same
 * results; 0 sends every part through libidn (for tests). */
extern int jid_fast_ascii;

/* "local@domain" or "domain" (the string is a new arena copy), NULL on
 * out-of-memory. */
const char *jid_bare(struct arena *a, const struct jid *jid);
/* The bare JID plus "/resource" when there is one, NULL on out-of-memory. */
const char *jid_full(struct arena *a, const struct jid *jid);
/* Prepared JIDs compare byte for byte; absent parts equal only absent. */
bool jid_equal(const struct jid *x, const struct jid *y);
bool jid_bare_equal(const struct jid *x, const struct jid *y);

/* Split a prepared account JID "user@domain" into one malloc'd buffer
 * "user\0domain": returns the user part (free() it) and sets *domain_r
 * into the same buffer; NULL without '@' or on out-of-memory.  Used where
 * SQL takes the username and domain separately. */
char *jid_split_account(const char *bare, const char **domain_r);

/* XEP-0191 section 3.4 (XEP-0016 section 2.1): the forms of jid that a
 * blocklist item matches: jid itself, its bare JID, its domain, and
 * domain/resource (the same as the domain for a JID without resource).
 * forms_r[0..3] point at them, into jid or into buf, which needs
 * 2 * (strlen(jid) + 1) bytes: -1 when size is less (forms_r[0] = jid
 * alone is set), else 0.  The one definition of the matching rule:
 * blocking.c's session copies and SQL parameters (pep.c) alike. */
#define JID_BLOCK_FORMS 4
int jid_block_forms(const char *jid, char *buf, size_t size,
		    const char *forms_r[JID_BLOCK_FORMS]);

#endif

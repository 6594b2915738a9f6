/*
 * jid.c - JID parsing and preparation (jid.h).  The split is RFC 7622
 * section 3.1; each part then goes through libidn stringprep with
 * unassigned code points refused (JIDs are stored strings), its prepared
 * length is checked (1..1023 bytes) and the copy goes into the arena.
 * Failure policy: -1 with a static reason, nothing logged; libidn's own
 * temporary allocations are always freed.
 */
#include "jid.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <idna.h>
#include <stringprep.h>

/* Input bytes accepted per part before preparation.  Stringprep may
 * shrink a part (map-to-nothing code points), so the 1023-byte limit is
 * checked on the output; this cap only bounds the work done on junk. */
#define JID_RAW_MAX (4 * JID_PART_MAX)

/*
 * Where this stringprep preparation and RFC 7622 PRECIS differ (the tests
 * pin our behaviour):
 *  - Nodeprep case-folds and applies NFKC, so "fußball" becomes
 *    "fussball", final sigma becomes sigma, and "henrⅣ" becomes "henriv";
 *    PRECIS keeps "ß" and "ς" and rejects "Ⅳ".
 *  - Nodeprep allows symbols such as U+265A in a localpart; PRECIS's
 *    IdentifierClass does not.
 *  - Resourceprep allows a leading space (so does RFC 7622 after erratum
 *    4560).  Unassigned code points follow Unicode 3.2, not current data.
 *  - The domainpart is Nameprep'ed, then checked with IDNA2003 ToASCII
 *    and the STD3 LDH rules instead of IDNA2008; A-labels are turned
 *    into U-labels first, as RFC 7622 section 3.2.1 asks.
 */

static const struct {
	const char *profile;        /* libidn profile name */
	const char *empty;
	const char *too_long;
	const char *prep_failed;
} jid_parts[] = {
	[JID_PART_LOCAL] = {
		"Nodeprep", "localpart is empty",
		"localpart is longer than 1023 bytes",
		"localpart is not UTF-8 or fails Nodeprep",
	},
	[JID_PART_DOMAIN] = {
		"Nameprep", "domainpart is empty",
		"domainpart is longer than 1023 bytes",
		"domainpart is not UTF-8 or fails Nameprep",
	},
	[JID_PART_RESOURCE] = {
		"Resourceprep", "resourcepart is empty",
		"resourcepart is longer than 1023 bytes",
		"resourcepart is not UTF-8 or fails Resourceprep",
	},
};

static int jid_oom(const char **error_r)
{
	*error_r = "out of memory";
	return -1;
}

/* Run a stringprep profile on len bytes of s; *out_r is malloc'ed. */
static int jid_stringprep(enum jid_part part, const char *s, size_t len,
			  char **out_r, const char **error_r)
{
	char *in = strndup(s, len);
	int rc;

	*out_r = NULL;
	if (in == NULL)
		return jid_oom(error_r);
	rc = stringprep_profile(in, out_r, jid_parts[part].profile,
				STRINGPREP_NO_UNASSIGNED);
	free(in);
	if (rc == STRINGPREP_OK)
		return 0;
	*out_r = NULL;
	if (rc == STRINGPREP_MALLOC_ERROR)
		return jid_oom(error_r);
	*error_r = jid_parts[part].prep_failed;
	return -1;
}

/* Check the prepared length and copy into the arena. */
static int jid_store(struct arena *a, enum jid_part part, const char *s,
		     const char **out_r, const char **error_r)
{
	size_t len = strlen(s);

	if (len == 0) {
		*error_r = jid_parts[part].empty;
		return -1;
	}
	if (len > JID_PART_MAX) {
		*error_r = jid_parts[part].too_long;
		return -1;
	}
	*out_r = arena_strndup(a, s, len);
	return *out_r != NULL ? 0 : jid_oom(error_r);
}

/* "[" IPv6address "]", kept in lower case. */
static int jid_ip_literal(struct arena *a, const char *s, size_t len,
			  const char **out_r, const char **error_r)
{
	char inner[INET6_ADDRSTRLEN + 1], *out;
	struct in6_addr addr;

	if (len < 3 || s[len - 1] != ']' || len - 2 > INET6_ADDRSTRLEN)
		goto bad;
	memcpy(inner, s + 1, len - 2);
	inner[len - 2] = '\0';
	if (inet_pton(AF_INET6, inner, &addr) != 1)
		goto bad;
	if ((out = arena_strndup(a, s, len)) == NULL)
		return jid_oom(error_r);
	for (char *p = out; *p != '\0'; p++) {
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	}
	*out_r = out;
	return 0;
bad:
	*error_r = "domainpart is not a valid IP literal";
	return -1;
}

/* Empty labels, the ideographic full stop that Nameprep leaves alone
 * (IDNA2003 would treat it as a dot) and anything IDNA2003 ToASCII with
 * the STD3 rules rejects (non-LDH, leading/trailing '-', labels over 63
 * octets) make an invalid domain. */
static bool jid_domain_labels_ok(const char *d)
{
	char *ascii = NULL;
	int rc;

	if (d[0] == '.' || strstr(d, "..") != NULL ||
	    d[strlen(d) - 1] == '.' || strstr(d, "\xe3\x80\x82") != NULL)
		return false;
	rc = idna_to_ascii_8z(d, &ascii, IDNA_USE_STD3_ASCII_RULES);
	free(ascii);
	return rc == IDNA_SUCCESS;
}

/* A-labels ("xn--") become U-labels, which are then prepared again. */
static int jid_domain_ulabels(char **d, const char **error_r)
{
	char *u = NULL;
	int rc;

	if (strstr(*d, "xn--") == NULL)
		return 0;
	if (idna_to_unicode_8z8z(*d, &u, 0) != IDNA_SUCCESS) {
		free(u);
		*error_r = "domainpart has an invalid A-label";
		return -1;
	}
	free(*d);
	rc = jid_stringprep(JID_PART_DOMAIN, u, strlen(u), d, error_r);
	free(u);
	return rc;
}

static int jid_prep_domain(struct arena *a, const char *s, size_t len,
			   const char **out_r, const char **error_r)
{
	char *d;
	int rc;

	if (s[len - 1] == '.')
		len--;          /* RFC 7622 section 3.2: one trailing dot */
	if (len == 0) {
		*error_r = jid_parts[JID_PART_DOMAIN].empty;
		return -1;
	}
	if (s[0] == '[')
		return jid_ip_literal(a, s, len, out_r, error_r);
	if (jid_stringprep(JID_PART_DOMAIN, s, len, &d, error_r) < 0)
		return -1;
	rc = jid_domain_ulabels(&d, error_r);
	if (rc == 0 && d[0] != '\0' && !jid_domain_labels_ok(d)) {
		*error_r = "domainpart is not a valid domain name";
		rc = -1;
	}
	if (rc == 0)
		rc = jid_store(a, JID_PART_DOMAIN, d, out_r, error_r);
	free(d);
	return rc;
}

int jid_fast_ascii = 1;

/* Printable ASCII is what nearly every JID is made of, and for it the
 * three profiles reduce to a few byte rules (RFC 3454 tables B.2, C.1.1,
 * C.2.1; RFC 6122 appendix A.5 for Nodeprep's extra prohibitions; STD3
 * LDH labels for the domain).  Those parts are prepared here without
 * libidn, which costs a malloc, an NFKC pass and a UCS-4 round trip per
 * part; anything else, valid or not, goes to libidn for its verdict.
 * Returns 1 done (0 or -1 in *rc_r), 0 not handled here. */
static int jid_prep_ascii(struct arena *a, enum jid_part part, const char *s,
			  size_t len, const char **out_r, const char **error_r,
			  int *rc_r)
{
	char *out;
	size_t label = 0;

	if (part == JID_PART_DOMAIN && len > 1 && s[len - 1] == '.')
		len--;          /* RFC 7622 section 3.2: one trailing dot */
	if (!jid_fast_ascii || len > JID_PART_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch < 0x20 || ch > 0x7e)
			return 0;
		switch (part) {
		case JID_PART_LOCAL:
			if (ch == ' ' || strchr("\"&'/:<>@", ch) != NULL)
				return 0;
			break;
		case JID_PART_DOMAIN:
			if (ch == '.') {
				if (label == 0 || s[i - 1] == '-')
					return 0;
				label = 0;
				continue;
			}
			if (label == 0 && len - i >= 4 &&
			    strncasecmp(s + i, "xn--", 4) == 0)
				return 0;   /* A-label: libidn makes it a U-label */
			if (!((ch >= 'a' && ch <= 'z') ||
			      (ch >= 'A' && ch <= 'Z') ||
			      (ch >= '0' && ch <= '9') ||
			      (ch == '-' && label > 0)) || ++label > 63)
				return 0;
			break;
		case JID_PART_RESOURCE:
			break;
		}
	}
	if (part == JID_PART_DOMAIN && (label == 0 || s[len - 1] == '-'))
		return 0;
	if ((out = arena_strndup(a, s, len)) == NULL) {
		*rc_r = jid_oom(error_r);
		return 1;
	}
	if (part != JID_PART_RESOURCE) {
		for (char *p = out; *p != '\0'; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
	}
	*out_r = out;
	*rc_r = 0;
	return 1;
}

int jid_prep_part(struct arena *a, enum jid_part part, const char *s,
		  size_t len, const char **out_r, const char **error_r)
{
	char *prepped;
	int rc;

	*out_r = NULL;
	if (len == 0) {
		*error_r = jid_parts[part].empty;
		return -1;
	}
	if (len > JID_RAW_MAX || memchr(s, '\0', len) != NULL) {
		*error_r = len > JID_RAW_MAX ? jid_parts[part].too_long :
					       jid_parts[part].prep_failed;
		return -1;
	}
	if (jid_prep_ascii(a, part, s, len, out_r, error_r, &rc))
		return rc;
	if (part == JID_PART_DOMAIN)
		return jid_prep_domain(a, s, len, out_r, error_r);
	if (jid_stringprep(part, s, len, &prepped, error_r) < 0)
		return -1;
	rc = jid_store(a, part, prepped, out_r, error_r);
	free(prepped);
	return rc;
}

/* RFC 7622 section 3.1: the resourcepart is everything after the first
 * '/', the localpart everything before the first '@' of what remains. */
int jid_parse(struct arena *a, const char *s, struct jid *jid_r,
	      const char **error_r)
{
	size_t len = strlen(s);
	const char *slash = memchr(s, '/', len);
	size_t bare_len = slash != NULL ? (size_t)(slash - s) : len;
	const char *at = memchr(s, '@', bare_len);
	const char *dom = at != NULL ? at + 1 : s;

	memset(jid_r, 0, sizeof(*jid_r));
	if (at != NULL && jid_prep_part(a, JID_PART_LOCAL, s, (size_t)(at - s),
					&jid_r->local, error_r) < 0)
		return -1;
	if (jid_prep_part(a, JID_PART_DOMAIN, dom, (size_t)(s + bare_len - dom),
			  &jid_r->domain, error_r) < 0)
		return -1;
	if (slash != NULL &&
	    jid_prep_part(a, JID_PART_RESOURCE, slash + 1, len - bare_len - 1,
			  &jid_r->resource, error_r) < 0)
		return -1;
	return 0;
}

static char *jid_concat(struct arena *a, const struct jid *jid, bool full)
{
	size_t local = jid->local != NULL ? strlen(jid->local) + 1 : 0;
	size_t domain = strlen(jid->domain);
	size_t res = full && jid->resource != NULL ?
		     strlen(jid->resource) + 1 : 0;
	char *out = arena_alloc(a, local + domain + res + 1), *p = out;

	if (out == NULL)
		return NULL;
	if (local > 0) {
		memcpy(p, jid->local, local - 1);
		p[local - 1] = '@';
		p += local;
	}
	memcpy(p, jid->domain, domain);
	p += domain;
	if (res > 0) {
		*p = '/';
		memcpy(p + 1, jid->resource, res - 1);
		p += res;
	}
	*p = '\0';
	return out;
}

const char *jid_bare(struct arena *a, const struct jid *jid)
{
	return jid_concat(a, jid, false);
}

const char *jid_full(struct arena *a, const struct jid *jid)
{
	return jid_concat(a, jid, true);
}

static bool jid_part_equal(const char *x, const char *y)
{
	if (x == NULL || y == NULL)
		return x == y;
	return strcmp(x, y) == 0;
}

bool jid_bare_equal(const struct jid *x, const struct jid *y)
{
	return jid_part_equal(x->local, y->local) &&
	       jid_part_equal(x->domain, y->domain);
}

bool jid_equal(const struct jid *x, const struct jid *y)
{
	return jid_bare_equal(x, y) &&
	       jid_part_equal(x->resource, y->resource);
}

char *jid_split_account(const char *bare, const char **domain_r)
{
	const char *at = strchr(bare, '@');
	char *user;
	if (at == NULL || (user = strdup(bare)) == NULL)
		return NULL;
	user[at - bare] = '\0';
	*domain_r = user + (at - bare) + 1;
	return user;
}

int jid_block_forms(const char *jid, char *buf, size_t size,
		    const char *forms_r[JID_BLOCK_FORMS])
{
	size_t len = strlen(jid);
	for (int i = 0; i < JID_BLOCK_FORMS; i++)
		forms_r[i] = jid;
	if (size < 2 * (len + 1))
		return -1;
	size_t bare = strcspn(jid, "/");
	const char *at = memchr(jid, '@', bare);
	const char *domain = at != NULL ? at + 1 : jid;
	size_t dlen = bare - (size_t)(domain - jid);
	memcpy(buf, jid, bare);
	buf[bare] = '\0';
	memcpy(buf + bare + 1, domain, dlen);
	buf[bare + 1 + dlen] = '\0';
	forms_r[1] = buf;
	forms_r[2] = buf + bare + 1;
	forms_r[3] = domain;
	return 0;
}

/*
 * fuzz_certid.c - RFC 6125 identity of a server certificate
 * (lib/certid.c) on certificates the fuzzer makes up.  Input: the first
 * byte is the length n (mod 64) of a reference domain that follows; the
 * rest is a DER certificate.  Properties:
 *  - certid_matches answers 0 or 1 and never reads out of bounds;
 *  - a match is explained by an identifier certid_domains lists (the
 *    DNS-ID rule applied to it: equality or a left-most wildcard);
 *  - every listed identifier without '*' identifies itself;
 *  - certid_dns_match without '*' is case-insensitive equality, one
 *    trailing dot ignored;
 *  - certid_eku_ok answers 0 or 1 with a reason exactly when 0, and
 *    what a receiving server may present an initiating one may too.
 */
#include "fuzz.h"
#include "certid.h"

#include <openssl/x509.h>
#include <string.h>
#include <strings.h>

#define FUZZ_IDS 64

struct fuzz_ids {
	char ids[FUZZ_IDS][1024];
	unsigned n;
};

static void fuzz_collect(void *ctx, const char *domain)
{
	struct fuzz_ids *l = ctx;
	if (l->n < FUZZ_IDS)
		snprintf(l->ids[l->n++], sizeof(l->ids[0]), "%s", domain);
}

static size_t fuzz_strip(const char *s)
{
	size_t n = strlen(s);
	return n > 0 && s[n - 1] == '.' ? n - 1 : n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fuzz_ids l;
	char domain[64];
	if (size < 1)
		return 0;
	size_t n = data[0] % 64;
	if (n >= size)
		return 0;
	memcpy(domain, data + 1, n);
	domain[n] = '\0';
	size_t dn = strlen(domain);     /* up to an embedded NUL */
	if (memchr(domain, '*', dn) == NULL) {
		int eq = certid_dns_match(domain, domain);
		FUZZ_CHECK(eq == (fuzz_strip(domain) > 0), "\"%s\" vs itself",
			   domain);
	}
	const unsigned char *p = data + 1 + n;
	X509 *x = d2i_X509(NULL, &p, (long)(size - 1 - n));
	if (x == NULL)
		return 0;
	int m = certid_matches(x, domain);
	FUZZ_CHECK(m == 0 || m == 1, "certid_matches %d", m);
	l.n = 0;
	int count = certid_domains(x, fuzz_collect, &l);
	FUZZ_CHECK(count >= 0 && (unsigned)count >= l.n, "count %d", count);
	if (m == 1 && (unsigned)count <= FUZZ_IDS) {
		int explained = 0;
		for (unsigned i = 0; i < l.n && !explained; i++)
			explained = certid_dns_match(l.ids[i], domain);
		FUZZ_CHECK(explained, "\"%s\" matched, no listed identifier "
			   "explains it", domain);
	}
	for (unsigned i = 0; i < l.n; i++)
		if (strchr(l.ids[i], '*') == NULL)
			FUZZ_CHECK(certid_matches(x, l.ids[i]) == 1,
				   "listed \"%s\" does not identify itself",
				   l.ids[i]);
	const char *why_s = NULL, *why_c = NULL;
	int eku_s = certid_eku_ok(x, 0, &why_s);
	int eku_c = certid_eku_ok(x, 1, &why_c);
	FUZZ_CHECK((eku_s == 1 && why_s == NULL) ||
		   (eku_s == 0 && why_s != NULL), "eku_ok(server) %d", eku_s);
	FUZZ_CHECK((eku_c == 1 && why_c == NULL) ||
		   (eku_c == 0 && why_c != NULL), "eku_ok(client) %d", eku_c);
	FUZZ_CHECK(!eku_s || eku_c, "EKU valid for a receiving server, not "
		   "for an initiating one");
	X509_free(x);
	return 0;
}

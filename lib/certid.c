/*
 * certid.c - RFC 6125 identity of an XMPP server certificate
 * (certid.h).  Pure functions over a parsed X509: no I/O, no state, so
 * the incoming side, the outgoing side, the unit tests and the fuzzer
 * share them.  Failure policy: a malformed identifier matches nothing.
 */
#include "certid.h"

#include <openssl/asn1.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <strings.h>

#define CERTID_MAX 1023     /* RFC 7622: a domainpart's bytes */

/* DER contents of id-on-xmppAddr (1.3.6.1.5.5.7.8.5, RFC 6120 13.7.1.4)
 * and id-on-dnsSRV (1.3.6.1.5.5.7.8.7, RFC 4985). */
static const unsigned char oid_xmppaddr[] = { 0x2b, 6, 1, 5, 5, 7, 8, 5 };
static const unsigned char oid_dnssrv[] = { 0x2b, 6, 1, 5, 5, 7, 8, 7 };

static const char srv_prefix[] = "_xmpp-server.";

/* Length of s without one trailing dot. */
static size_t certid_len(const char *s, size_t n)
{
	return n > 0 && s[n - 1] == '.' ? n - 1 : n;
}

/* Equal ignoring case, lengths already without their trailing dot. */
static int certid_same(const char *a, size_t alen, const char *b, size_t blen)
{
	return alen > 0 && alen == blen && strncasecmp(a, b, alen) == 0;
}

/* Equal ignoring case and one trailing dot on either side (only one:
 * "a.." is not "a"). */
static int certid_eq(const char *a, size_t alen, const char *b, size_t blen)
{
	return certid_same(a, certid_len(a, alen), b, certid_len(b, blen));
}

int certid_dns_match(const char *pattern, const char *domain)
{
	size_t plen = certid_len(pattern, strlen(pattern));
	size_t dlen = certid_len(domain, strlen(domain));
	if (plen == 0 || dlen == 0 || memchr(pattern, '*', plen) == NULL)
		return certid_same(pattern, plen, domain, dlen);
	/* "*." then at least two labels; no other '*' anywhere */
	if (plen < 4 || pattern[0] != '*' || pattern[1] != '.' ||
	    memchr(pattern + 1, '*', plen - 1) != NULL ||
	    memchr(pattern + 2, '.', plen - 2) == NULL)
		return 0;
	const char *dot = memchr(domain, '.', dlen);
	if (dot == NULL || dot == domain)
		return 0;   /* the wildcard stands for one non-empty label */
	size_t rest = dlen - (size_t)(dot - domain);
	return certid_same(pattern + 1, plen - 1, dot, rest);
}

/* An ASN1 string as text: data and length, or NULL when it holds a NUL
 * or is empty or too long. */
static const char *certid_text(const ASN1_STRING *s, size_t *len_r)
{
	if (s == NULL)
		return NULL;
	int n = ASN1_STRING_length(s);
	const unsigned char *d = ASN1_STRING_get0_data(s);
	if (d == NULL || n <= 0 || n > CERTID_MAX ||
	    memchr(d, 0, (size_t)n) != NULL)
		return NULL;
	*len_r = (size_t)n;
	return (const char *)d;
}

static int certid_oid_is(const ASN1_OBJECT *o, const unsigned char *der,
			 size_t len)
{
	return o != NULL && (size_t)OBJ_length(o) == len &&
	       memcmp(OBJ_get0_data(o), der, len) == 0;
}

/* What one SAN entry names for xmpp-server, as (text, len), with *wild_r
 * set for a DNS-ID (whose pattern rules apply); NULL for anything else. */
static const char *certid_san(const GENERAL_NAME *gn, size_t *len_r,
			      int *dns_r)
{
	*dns_r = 0;
	if (gn->type == GEN_DNS) {
		*dns_r = 1;
		return certid_text(gn->d.dNSName, len_r);
	}
	if (gn->type != GEN_OTHERNAME || gn->d.otherName == NULL)
		return NULL;
	const ASN1_TYPE *v = gn->d.otherName->value;
	const ASN1_OBJECT *oid = gn->d.otherName->type_id;
	if (v == NULL)
		return NULL;
	if (certid_oid_is(oid, oid_xmppaddr, sizeof(oid_xmppaddr)) &&
	    v->type == V_ASN1_UTF8STRING)
		return certid_text(v->value.utf8string, len_r);
	if (certid_oid_is(oid, oid_dnssrv, sizeof(oid_dnssrv)) &&
	    v->type == V_ASN1_IA5STRING) {
		size_t n;
		const char *t = certid_text(v->value.ia5string, &n);
		size_t p = sizeof(srv_prefix) - 1;
		if (t == NULL || n <= p || strncasecmp(t, srv_prefix, p) != 0)
			return NULL;    /* another service's SRV-ID */
		*len_r = n - p;
		return t + p;
	}
	return NULL;
}

/* Calls fn for each identifier (text, len, is_dns); stops when fn
 * returns nonzero and returns that, else 0.  *any_r: the certificate has
 * a SAN identifier of our kinds (then CN is not looked at). */
typedef int (*certid_fn)(void *ctx, const char *id, size_t len, int dns);

static int certid_walk(X509 *cert, certid_fn fn, void *ctx)
{
	int any = 0, r = 0;
	GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name,
					       NULL, NULL);
	for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans) && !r;
	     i++) {
		size_t len = 0;
		int dns;
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
		const char *id = certid_san(gn, &len, &dns);
		if (gn->type == GEN_DNS || gn->type == GEN_OTHERNAME ||
		    gn->type == GEN_URI)
			any = 1;
		if (id != NULL)
			r = fn(ctx, id, len, dns);
	}
	GENERAL_NAMES_free(sans);
	if (r || any)
		return r;
	/* RFC 6125 6.4.4: the CN only without any SAN identifier */
	X509_NAME *subject = X509_get_subject_name(cert);
	for (int i = -1; subject != NULL && !r;) {
		i = X509_NAME_get_index_by_NID(subject, NID_commonName, i);
		if (i < 0)
			break;
		X509_NAME_ENTRY *e = X509_NAME_get_entry(subject, i);
		ASN1_STRING *s = X509_NAME_ENTRY_get_data(e);
		unsigned char *utf8 = NULL;
		int n = s != NULL ? ASN1_STRING_to_UTF8(&utf8, s) : -1;
		if (n > 0 && n <= CERTID_MAX && memchr(utf8, 0, (size_t)n) == NULL)
			r = fn(ctx, (const char *)utf8, (size_t)n, 1);
		OPENSSL_free(utf8);
	}
	return r;
}

static int certid_match_one(void *ctx, const char *id, size_t len, int dns)
{
	const char *domain = ctx;
	char buf[CERTID_MAX + 1];
	if (!dns)
		return certid_eq(id, len, domain, strlen(domain));
	memcpy(buf, id, len);
	buf[len] = '\0';
	return certid_dns_match(buf, domain);
}

int certid_matches(X509 *cert, const char *domain)
{
	if (cert == NULL || domain == NULL || *domain == '\0' ||
	    strlen(domain) > CERTID_MAX)
		return 0;
	return certid_walk(cert, certid_match_one, (void *)domain) ? 1 : 0;
}

struct certid_list {
	void (*cb)(void *ctx, const char *domain);
	void *ctx;
	int n;
};

static int certid_list_one(void *ctx, const char *id, size_t len, int dns)
{
	struct certid_list *l = ctx;
	char buf[CERTID_MAX + 1];
	(void)dns;
	len = certid_len(id, len);
	if (len == 0)
		return 0;
	memcpy(buf, id, len);
	buf[len] = '\0';
	if (l->cb != NULL)
		l->cb(l->ctx, buf);
	l->n++;
	return 0;
}

int certid_domains(X509 *cert, void (*cb)(void *ctx, const char *domain),
		   void *ctx)
{
	struct certid_list l = { cb, ctx, 0 };
	if (cert != NULL)
		certid_walk(cert, certid_list_one, &l);
	return l.n;
}

int certid_eku_ok(X509 *cert, int as_client, const char **why_r)
{
	int crit = 0, ok = 0;
	*why_r = NULL;
	EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(cert, NID_ext_key_usage,
						   &crit, NULL);
	if (eku == NULL) {
		if (crit == -1)
			return 1;       /* no EKU: any use (RFC 5280) */
		*why_r = "its extendedKeyUsage does not decode";
		return 0;
	}
	for (int i = 0; i < sk_ASN1_OBJECT_num(eku) && !ok; i++) {
		int nid = OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, i));
		ok = nid == NID_server_auth || nid == NID_anyExtendedKeyUsage ||
		     (as_client && nid == NID_client_auth);
	}
	sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
	if (!ok)
		*why_r = as_client ? "its extendedKeyUsage has neither "
			 "serverAuth nor clientAuth" : "its extendedKeyUsage "
			 "has no serverAuth";
	return ok;
}

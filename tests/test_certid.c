/*
 * test_certid.c - RFC 6125 identity of server certificates (lib/certid.c)
 * with certificates a test CA issues in the fixture (OpenSSL's API: an
 * EC P-256 CA signs one certificate per case, with the subjectAltName
 * written as openssl's config syntax, otherName for XmppAddr and SRV-ID).
 */
#include <string.h>

#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certid.h"

#define XMPPADDR "otherName:1.3.6.1.5.5.7.8.5;UTF8:"
#define SRVID "otherName:1.3.6.1.5.5.7.8.7;IA5STRING:"

static EVP_PKEY *ca_key;
static X509_NAME *ca_name;

static void setup(void)
{
	ca_key = EVP_EC_gen("P-256");
	cr_assert_not_null(ca_key);
	ca_name = X509_NAME_new();
	X509_NAME_add_entry_by_txt(ca_name, "CN", MBSTRING_ASC,
				   (const unsigned char *)"certid test CA", -1,
				   -1, 0);
}

static void teardown(void)
{
	EVP_PKEY_free(ca_key);
	X509_NAME_free(ca_name);
}

TestSuite(certid, .init = setup, .fini = teardown);

/* Add an extension written in openssl's config syntax. */
static void add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, NULL, x, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	cr_assert_not_null(ext, "extension %s", value);
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
}

/* A certificate for cn (NULL: no CN) with subjectAltName san (NULL:
 * none) and extendedKeyUsage eku (NULL: none), signed by the test CA. */
static X509 *issue_eku(const char *cn, const char *san, const char *eku)
{
	X509 *x = X509_new();
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509_NAME *name = X509_NAME_new();
	cr_assert(x != NULL && key != NULL && name != NULL);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	if (cn != NULL)
		X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
					   (const unsigned char *)cn, -1, -1, 0);
	X509_set_subject_name(x, name);
	X509_set_issuer_name(x, ca_name);
	X509_set_pubkey(x, key);
	if (san != NULL)
		add_ext(x, NID_subject_alt_name, san);
	if (eku != NULL)
		add_ext(x, NID_ext_key_usage, eku);
	cr_assert(X509_sign(x, ca_key, EVP_sha256()) > 0);
	X509_NAME_free(name);
	EVP_PKEY_free(key);
	return x;
}

static X509 *issue(const char *cn, const char *san)
{
	return issue_eku(cn, san, NULL);
}

struct id_case {
	const char *cn, *san, *domain;
	int want;
};

static void check(const struct id_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		X509 *x = issue(cases[i].cn, cases[i].san);
		cr_expect_eq(certid_matches(x, cases[i].domain), cases[i].want,
			     "CN=%s SAN=%s for %s: want %d", cases[i].cn,
			     cases[i].san, cases[i].domain, cases[i].want);
		X509_free(x);
	}
}

Test(certid, dns_id)
{
	static const struct id_case cases[] = {
		{ "x", "DNS:example.com", "example.com", 1 },
		{ "x", "DNS:Example.COM", "example.com", 1 },
		{ "x", "DNS:example.com.", "example.com", 1 },
		{ "x", "DNS:example.com", "example.com.", 1 },
		{ "x", "DNS:example.com", "example.org", 0 },
		{ "x", "DNS:example.com", "sub.example.com", 0 },
		{ "x", "DNS:sub.example.com", "example.com", 0 },
		{ "x", "DNS:other.net, DNS:example.com", "example.com", 1 },
		/* one trailing dot is ignored, not two */
		{ "x", "DNS:example.com..", "example.com", 0 },
		{ "x", "DNS:example.com", "example.com..", 0 },
		{ "x", "DNS:*.example.com..", "chat.example.com", 0 },
	};
	check(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(certid, wildcard_only_whole_left_label)
{
	static const struct id_case cases[] = {
		{ "x", "DNS:*.example.com", "chat.example.com", 1 },
		{ "x", "DNS:*.example.com", "CHAT.Example.com", 1 },
		{ "x", "DNS:*.example.com", "example.com", 0 },
		{ "x", "DNS:*.example.com", "a.b.example.com", 0 },
		{ "x", "DNS:*.example.com", ".example.com", 0 },
		{ "x", "DNS:*.com", "example.com", 0 },
		{ "x", "DNS:c*.example.com", "chat.example.com", 0 },
		{ "x", "DNS:chat.*.com", "chat.example.com", 0 },
		{ "x", "DNS:*.*.example.com", "a.b.example.com", 0 },
		{ "x", "DNS:*", "example", 0 },
	};
	check(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(certid, srv_id_and_xmppaddr)
{
	static const struct id_case cases[] = {
		{ NULL, SRVID "_xmpp-server.example.com", "example.com", 1 },
		{ NULL, SRVID "_XMPP-Server.example.com", "example.com", 1 },
		{ NULL, SRVID "_xmpp-client.example.com", "example.com", 0 },
		{ NULL, SRVID "_xmpp-server.", "example.com", 0 },
		{ NULL, SRVID "_xmpp-server.other.com", "example.com", 0 },
		{ NULL, XMPPADDR "example.com", "example.com", 1 },
		{ NULL, XMPPADDR "user@example.com", "example.com", 0 },
		{ NULL, XMPPADDR "*.example.com", "chat.example.com", 0 },
	};
	check(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(certid, cn_only_without_san)
{
	static const struct id_case cases[] = {
		{ "example.com", NULL, "example.com", 1 },
		{ "*.example.com", NULL, "chat.example.com", 1 },
		{ "example.com", "DNS:other.com", "example.com", 0 },
		{ "example.com", SRVID "_xmpp-server.other.com", "example.com", 0 },
		{ "example.com", "URI:xmpp:other.com", "example.com", 0 },
		/* an e-mail SAN is no identifier of ours: CN still counts */
		{ "example.com", "email:admin@example.com", "example.com", 1 },
		{ NULL, NULL, "example.com", 0 },
	};
	check(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(certid, no_certificate_or_domain)
{
	X509 *x = issue("example.com", "DNS:example.com");
	cr_expect_eq(certid_matches(NULL, "example.com"), 0);
	cr_expect_eq(certid_matches(x, ""), 0);
	cr_expect_eq(certid_matches(x, NULL), 0);
	X509_free(x);
}

static void collect(void *ctx, const char *domain)
{
	char *out = ctx;
	strcat(out, domain);
	strcat(out, " ");
}

Test(certid, domains_listed)
{
	char got[512] = "";
	X509 *x = issue("ignored.example", "DNS:a.example, DNS:*.b.example, "
			SRVID "_xmpp-server.c.example, "
			SRVID "_xmpp-client.d.example, " XMPPADDR "e.example.");
	cr_expect_eq(certid_domains(x, collect, got), 4);
	cr_expect_str_eq(got, "a.example *.b.example c.example e.example ");
	X509_free(x);
	got[0] = '\0';
	x = issue("only.example", NULL);
	cr_expect_eq(certid_domains(x, collect, got), 1);
	cr_expect_str_eq(got, "only.example ");
	X509_free(x);
}

/* extendedKeyUsage (certid_eku_ok): an initiating server (as_client) may
 * present serverAuth only (Let's Encrypt since 2025), clientAuth only,
 * both, or none; a receiving server needs serverAuth or none; a
 * certificate for other purposes only is refused both ways. */
Test(certid, eku)
{
	static const struct {
		const char *eku;
		int as_client, want;
	} cases[] = {
		{ NULL, 1, 1 },
		{ NULL, 0, 1 },
		{ "serverAuth", 1, 1 },
		{ "serverAuth", 0, 1 },
		{ "clientAuth", 1, 1 },
		{ "clientAuth", 0, 0 },
		{ "serverAuth, clientAuth", 1, 1 },
		{ "serverAuth, clientAuth", 0, 1 },
		{ "critical, clientAuth", 1, 1 },
		{ "emailProtection", 1, 0 },
		{ "emailProtection", 0, 0 },
		{ "codeSigning, emailProtection", 1, 0 },
		{ "codeSigning, serverAuth", 0, 1 },
		{ "anyExtendedKeyUsage", 1, 1 },
		{ "anyExtendedKeyUsage", 0, 1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *why = "unset";
		X509 *x = issue_eku("example.com", "DNS:example.com",
				    cases[i].eku);
		int got = certid_eku_ok(x, cases[i].as_client, &why);
		cr_expect_eq(got, cases[i].want, "EKU %s as_client %d: %d",
			     cases[i].eku, cases[i].as_client, got);
		if (got)
			cr_expect_null(why);
		else
			cr_expect(why != NULL && strstr(why, "serverAuth") !=
				  NULL, "EKU %s: reason %s", cases[i].eku, why);
		X509_free(x);
	}
}

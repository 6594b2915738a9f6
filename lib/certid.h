/*
 * certid.h - does a certificate identify an XMPP server domain (RFC 6125
 * section 6, RFC 6120 section 13.7.1.2, XEP-0178)?  The chain is
 * verified elsewhere (OpenSSL, tls.c); this is only the identity: SRV-ID
 * (SAN otherName id-on-dnsSRV "_xmpp-server.DOMAIN"), DNS-ID (SAN
 * dNSName, "*" allowed as the whole left-most label only, matching one
 * label), XmppAddr (SAN otherName id-on-xmppAddr equal to the domain),
 * and the subject's CN only when the certificate has no SAN identifier
 * of those kinds.  Comparison ignores ASCII case and one trailing dot.
 * Failure policy: anything malformed (embedded NUL, empty label, a
 * wildcard elsewhere) identifies nothing.
 */
#ifndef XMPPD_CERTID_H
#define XMPPD_CERTID_H

typedef struct x509_st X509;

/* 1 if cert identifies domain for the xmpp-server service, else 0. */
int certid_matches(X509 *cert, const char *domain);

/* The domains cert names for xmpp-server (wildcard DNS-IDs as written,
 * "*.example.com"), each passed to cb once per identifier; returns how
 * many. */
int certid_domains(X509 *cert, void (*cb)(void *ctx, const char *domain),
		   void *ctx);

/* The DNS-ID rule alone (exposed for the unit tests and the fuzzer):
 * 1 if the reference domain matches presented identifier pattern. */
int certid_dns_match(const char *pattern, const char *domain);

/* The certificate's extendedKeyUsage allows it for an XMPP server
 * (RFC 5280 4.2.1.12): 1 when it has no EKU, or lists anyExtendedKeyUsage
 * or serverAuth, or (as_client: the initiating server of an incoming
 * stream, RFC 6120 13.7.1.2) clientAuth; 0 otherwise (only
 * emailProtection, codeSigning, ..., or an EKU that does not decode).
 * serverAuth is taken from an initiating server too: public CAs issue
 * server certificates with serverAuth only (Let's Encrypt since 2025),
 * and every XMPP server presents the same certificate both ways.  The
 * why_r text names the reason for the log when 0. */
int certid_eku_ok(X509 *cert, int as_client, const char **why_r);

#endif

/*
 * test_scram.c - SCRAM, PLAIN and base64 (lib/scram.c, lib/base64.c).
 * The RFC 5802 and RFC 7677 exchanges are replayed byte for byte; other
 * exchanges are driven by an independent client written here directly on
 * OpenSSL, so a bug shared by server and client code cannot hide.
 */
#include <string.h>

#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "arena.h"
#include "base64.h"
#include "scram.h"

static struct arena arena;

static void setup(void)
{
	arena_init(&arena, 4096);
}

static void teardown(void)
{
	arena_free(&arena);
}

TestSuite(scram, .init = setup, .fini = teardown);

/* ---- helpers ---------------------------------------------------------- */

static void creds(enum scram_hash hash, const char *password,
		  const char *salt64, unsigned int iterations,
		  struct scram_credentials *cred)
{
	const char *error = NULL;

	memset(cred, 0, sizeof(*cred));
	cred->hash = hash;
	cred->iterations = iterations;
	cr_assert_eq(base64_decode(salt64, strlen(salt64), cred->salt,
				   sizeof(cred->salt), &cred->salt_len), 0);
	cr_assert_eq(scram_derive(hash, password, cred->salt, cred->salt_len,
				  iterations, cred->stored_key,
				  cred->server_key, &error), 0, "%s", error);
}

/* An independent client: ClientProof for auth over password/cred. */
static void client_proof(const struct scram_credentials *cred,
			 const char *password, const char *auth, char *out,
			 size_t outsize)
{
	const EVP_MD *md = cred->hash == SCRAM_HASH_SHA1 ? EVP_sha1() :
							   EVP_sha256();
	unsigned char sp[32], ck[32], sk[32], sig[32];
	unsigned int n = (unsigned int)EVP_MD_get_size(md), l;

	cr_assert_eq(PKCS5_PBKDF2_HMAC(password, (int)strlen(password),
				       cred->salt, (int)cred->salt_len,
				       (int)cred->iterations, md, (int)n, sp),
		     1);
	HMAC(md, sp, (int)n, (const unsigned char *)"Client Key", 10, ck, &l);
	EVP_Digest(ck, n, sk, &l, md, NULL);
	HMAC(md, sk, (int)n, (const unsigned char *)auth, strlen(auth), sig,
	     &l);
	for (unsigned int i = 0; i < n; i++)
		ck[i] ^= sig[i];
	cr_assert_eq(base64_encode(ck, n, out, outsize), 0);
}

static const struct scram_params params_sha1 = { SCRAM_HASH_SHA1, false, 0 };
static const struct scram_params params_sha256 = {
	SCRAM_HASH_SHA256, false, 0
};

static enum scram_error start(struct scram_server *s,
			      const struct scram_params *p, const char *msg)
{
	return scram_server_start(s, &arena, p, msg, strlen(msg));
}

/* Run start + first for "user"/"pencil" with the RFC 5802 salt. */
static void challenged(struct scram_server *s, const struct scram_params *p,
		       const char *client_first, struct scram_credentials *cred)
{
	const char *msg;
	size_t len;

	creds(p->hash, "pencil", "QSXCR+Q6sek8bf92", 4096, cred);
	cr_assert_eq(start(s, p, client_first), SCRAM_OK);
	cr_assert_eq(scram_server_first_with_nonce(s, cred, "SRV", &msg, &len),
		     SCRAM_OK);
}

/* Build "<without_proof>,p=<proof>" for a challenged exchange. */
static const char *final_msg(const struct scram_server *s,
			     const struct scram_credentials *cred,
			     const char *password, const char *without_proof)
{
	static char msg[1024];
	char auth[1024], proof[64];

	snprintf(auth, sizeof(auth), "%s,%s,%s", s->first_bare,
		 s->server_first, without_proof);
	client_proof(cred, password, auth, proof, sizeof(proof));
	snprintf(msg, sizeof(msg), "%s,p=%s", without_proof, proof);
	return msg;
}

static enum scram_error final(struct scram_server *s, const void *cb,
			      size_t cb_len, const char *msg)
{
	const char *out = NULL;
	size_t len;

	return scram_server_final(s, cb, cb_len, msg, strlen(msg), &out, &len);
}

/* ---- the RFC examples ------------------------------------------------- */

Test(scram, rfc5802_sha1_example)
{
	struct scram_server s;
	struct scram_credentials cred;
	const char *msg;
	size_t len;
	const char *cf = "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
			 "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";

	creds(SCRAM_HASH_SHA1, "pencil", "QSXCR+Q6sek8bf92", 4096, &cred);
	cr_assert_eq(start(&s, &params_sha1,
			   "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"), SCRAM_OK);
	cr_assert_str_eq(s.username, "user");
	cr_assert_null(s.authzid);
	cr_assert_eq(scram_server_first_with_nonce(&s, &cred,
						   "3rfcNHYJY1ZVvWVs7j", &msg,
						   &len), SCRAM_OK);
	cr_assert_str_eq(msg, "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
			      "s=QSXCR+Q6sek8bf92,i=4096");
	cr_assert_eq(len, strlen(msg));
	cr_assert_eq(scram_server_final(&s, NULL, 0, cf, strlen(cf), &msg,
					&len), SCRAM_OK);
	cr_assert_str_eq(msg, "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
	cr_assert_eq(s.state, SCRAM_STATE_DONE);
	scram_server_clear(&s);
}

Test(scram, rfc7677_sha256_example)
{
	struct scram_server s;
	struct scram_credentials cred;
	const char *msg;
	size_t len;
	const char *cf = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)"
			 "hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";

	creds(SCRAM_HASH_SHA256, "pencil", "W22ZaJ0SNY7soEsUEjb6gQ==", 4096,
	      &cred);
	cr_assert_eq(start(&s, &params_sha256,
			   "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"), SCRAM_OK);
	cr_assert_eq(scram_server_first_with_nonce(
			     &s, &cred, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", &msg,
			     &len), SCRAM_OK);
	cr_assert_str_eq(msg, "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)"
			      "hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
	cr_assert_eq(scram_server_final(&s, NULL, 0, cf, strlen(cf), &msg,
					&len), SCRAM_OK);
	cr_assert_str_eq(msg, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
}

Test(scram, random_nonce_extends_client_nonce)
{
	struct scram_server s;
	struct scram_credentials cred;
	const char *msg;
	size_t len;

	creds(SCRAM_HASH_SHA1, "pencil", "QSXCR+Q6sek8bf92", 4096, &cred);
	cr_assert_eq(start(&s, &params_sha1, "n,,n=user,r=abc"), SCRAM_OK);
	cr_assert_eq(scram_server_first(&s, &cred, &msg, &len), SCRAM_OK);
	/* "r=abc" + 24 base64 characters of 18 random bytes */
	cr_assert_eq(strncmp(msg, "r=abc", 5), 0);
	cr_assert_eq(strcspn(msg, ","), 5 + 24, "%s", msg);
	cr_assert_str_eq(msg + 29, ",s=QSXCR+Q6sek8bf92,i=4096");
}

/* ---- proof, nonce and state failures ---------------------------------- */

Test(scram, bad_proof_is_not_authorized)
{
	struct scram_server s;
	struct scram_credentials cred;
	const char *cf = "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
			 "p=w0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
	const char *msg;
	size_t len;

	creds(SCRAM_HASH_SHA1, "pencil", "QSXCR+Q6sek8bf92", 4096, &cred);
	cr_assert_eq(start(&s, &params_sha1,
			   "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"), SCRAM_OK);
	cr_assert_eq(scram_server_first_with_nonce(&s, &cred,
						   "3rfcNHYJY1ZVvWVs7j", &msg,
						   &len), SCRAM_OK);
	/* "v0X8" -> "w0X8": still canonical base64, one bit off */
	cr_assert_eq(final(&s, NULL, 0, cf), SCRAM_ERR_PROOF);
	cr_assert_str_eq(scram_error_condition(SCRAM_ERR_PROOF),
			 "not-authorized");
	cr_assert_eq(s.state, SCRAM_STATE_FAILED);
	/* a failed exchange stays failed, even with the right proof */
	cf = "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
	     "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
	cr_assert_eq(final(&s, NULL, 0, cf), SCRAM_ERR_STATE);
}

Test(scram, wrong_password_is_not_authorized)
{
	struct scram_server s;
	struct scram_credentials cred;

	challenged(&s, &params_sha256, "n,,n=user,r=abc", &cred);
	cr_assert_eq(final(&s, NULL, 0,
			   final_msg(&s, &cred, "pencil", "c=biws,r=abcSRV")),
		     SCRAM_OK);
	challenged(&s, &params_sha256, "n,,n=user,r=abc", &cred);
	cr_assert_eq(final(&s, NULL, 0,
			   final_msg(&s, &cred, "Pencil", "c=biws,r=abcSRV")),
		     SCRAM_ERR_PROOF);
}

Test(scram, nonce_mismatch)
{
	struct scram_server s;
	struct scram_credentials cred;

	challenged(&s, &params_sha1, "n,,n=user,r=abc", &cred);
	/* a valid proof over a different nonce: the nonce check must fire */
	cr_assert_eq(final(&s, NULL, 0,
			   final_msg(&s, &cred, "pencil", "c=biws,r=abcSRW")),
		     SCRAM_ERR_NONCE);
	challenged(&s, &params_sha1, "n,,n=user,r=abc", &cred);
	cr_assert_eq(final(&s, NULL, 0,
			   final_msg(&s, &cred, "pencil", "c=biws,r=abc")),
		     SCRAM_ERR_NONCE);
}

Test(scram, final_extensions_are_ignored_but_signed)
{
	struct scram_server s;
	struct scram_credentials cred;

	challenged(&s, &params_sha1, "n,,n=user,r=abc,x=ext", &cred);
	cr_assert_eq(final(&s, NULL, 0,
			   final_msg(&s, &cred, "pencil",
				     "c=biws,r=abcSRV,x=1,y=2")), SCRAM_OK);
}

Test(scram, calls_out_of_order)
{
	struct scram_server s;
	struct scram_credentials cred, cred256;
	const char *msg;
	size_t len;

	creds(SCRAM_HASH_SHA1, "pencil", "QSXCR+Q6sek8bf92", 4096, &cred);
	creds(SCRAM_HASH_SHA256, "pencil", "QSXCR+Q6sek8bf92", 4096, &cred256);
	cr_assert_eq(start(&s, &params_sha1, "n,,n=user,r=abc"), SCRAM_OK);
	cr_assert_eq(final(&s, NULL, 0, "c=biws,r=abc,p=AAAA"),
		     SCRAM_ERR_STATE);
	cr_assert_eq(start(&s, &params_sha1, "n,,n=user,r=abc"), SCRAM_OK);
	cr_assert_eq(scram_server_first(&s, &cred256, &msg, &len),
		     SCRAM_ERR_STATE);
	cr_assert_eq(start(&s, &params_sha1, "n,,n=user,r=abc"), SCRAM_OK);
	cr_assert_eq(scram_server_first_with_nonce(&s, &cred, "a,b", &msg,
						   &len), SCRAM_ERR_STATE);
	cr_assert_eq(scram_server_first(&s, &cred, &msg, &len),
		     SCRAM_ERR_STATE);
}

/* ---- client-first-message syntax -------------------------------------- */

struct first_case {
	const char *msg;
	enum scram_error err;
};

Test(scram, client_first_errors)
{
	static const struct first_case cases[] = {
		{ "n,,n=user,r=abc", SCRAM_OK },
		{ "n,,n=user,r=abc,x=ext,y=1", SCRAM_OK },
		{ "n,,n=user,r=abc,yz=1", SCRAM_ERR_MALFORMED },
		{ "", SCRAM_ERR_MALFORMED },
		{ "x,,n=user,r=abc", SCRAM_ERR_MALFORMED },
		{ "n,n=user,r=abc", SCRAM_ERR_MALFORMED },
		{ "n,b=x,n=user,r=abc", SCRAM_ERR_MALFORMED },
		{ "n,,n=user", SCRAM_ERR_MALFORMED },
		{ "n,,n=user,", SCRAM_ERR_MALFORMED },
		{ "n,,n=user,r=", SCRAM_ERR_MALFORMED },
		{ "n,,n=user,r=a b", SCRAM_ERR_MALFORMED },
		{ "n,,n=user,r=abc,", SCRAM_ERR_MALFORMED },
		{ "n,,n=user,r=abc,1=x", SCRAM_ERR_MALFORMED },
		{ "n,,n=user,r=abc,x=", SCRAM_ERR_MALFORMED },
		{ "n,,r=abc,n=user", SCRAM_ERR_MALFORMED },
		{ "n,,N=user,r=abc", SCRAM_ERR_MALFORMED },
		{ "p=,,n=user,r=abc", SCRAM_ERR_MALFORMED },
		{ "p=tls_exporter,,n=user,r=abc", SCRAM_ERR_MALFORMED },
		{ "n,,m=ext,n=user,r=abc", SCRAM_ERR_EXTENSION },
		{ "n,,n=,r=abc", SCRAM_ERR_USERNAME },
		{ "n,,n=us=2Xer,r=abc", SCRAM_ERR_USERNAME },
		{ "n,,n=us=2cer,r=abc", SCRAM_ERR_USERNAME },
		{ "n,,n=user=,r=abc", SCRAM_ERR_USERNAME },
		{ "n,,n=us\xff" "er,r=abc", SCRAM_ERR_USERNAME },
		{ "n,,n=\xc0\xaf,r=abc", SCRAM_ERR_USERNAME },
		{ "n,a=,n=user,r=abc", SCRAM_ERR_AUTHZID },
		{ "n,a=x=3d,n=user,r=abc", SCRAM_ERR_AUTHZID },
		{ "n,a=\xed\xa0\x80,n=user,r=abc", SCRAM_ERR_AUTHZID },
		{ "p=tls-exporter,,n=user,r=abc", SCRAM_ERR_CB_FLAG },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct scram_server s;
		enum scram_error err = start(&s, &params_sha1, cases[i].msg);
		cr_expect_eq(err, cases[i].err, "\"%s\": got %s, want %s",
			     cases[i].msg, scram_error_str(err),
			     scram_error_str(cases[i].err));
		cr_expect_eq(s.state, err == SCRAM_OK ? SCRAM_STATE_STARTED :
							SCRAM_STATE_FAILED);
	}
}

Test(scram, client_first_nul_and_size)
{
	struct scram_server s;
	char big[SCRAM_MESSAGE_MAX + 16];

	cr_assert_eq(scram_server_start(&s, &arena, &params_sha1,
					"n,,n=us\0er,r=abc", 16),
		     SCRAM_ERR_MALFORMED);
	/* The size limit, not the nonce limit: the bulk is an extension. */
	memset(big, 'a', sizeof(big));
	memcpy(big, "n,,n=user,r=abc,x=", 18);
	cr_assert_eq(scram_server_start(&s, &arena, &params_sha1, big,
					SCRAM_MESSAGE_MAX), SCRAM_OK);
	cr_assert_eq(scram_server_start(&s, &arena, &params_sha1, big,
					SCRAM_MESSAGE_MAX + 1),
		     SCRAM_ERR_MALFORMED);
}

/* A long client nonce: up to SCRAM_NONCE_MAX it goes through the whole
 * exchange (server-first and client-final repeat it); longer is
 * malformed-request, the client's fault, never a server-side failure. */
Test(scram, client_nonce_limit)
{
	static char first[SCRAM_NONCE_MAX + 64], without_proof[2 * SCRAM_NONCE_MAX];
	struct scram_credentials cred;
	struct scram_server s;
	const char *msg, *out;
	size_t len;

	creds(SCRAM_HASH_SHA1, "pencil", "QSXCR+Q6sek8bf92", 4096, &cred);
	memcpy(first, "n,,n=user,r=", 12);
	memset(first + 12, 'N', SCRAM_NONCE_MAX);
	first[12 + SCRAM_NONCE_MAX] = '\0';
	cr_assert_eq(start(&s, &params_sha1, first), SCRAM_OK);
	cr_assert_eq(scram_server_first(&s, &cred, &msg, &len), SCRAM_OK);
	cr_assert_eq(strlen(msg), len);
	cr_assert(len > SCRAM_NONCE_MAX && strncmp(msg, "r=", 2) == 0 &&
		  strncmp(msg + 2, first + 12, SCRAM_NONCE_MAX) == 0);
	snprintf(without_proof, sizeof(without_proof), "c=biws,r=%s", s.nonce);
	{
		static char auth[4 * SCRAM_NONCE_MAX], fin[3 * SCRAM_NONCE_MAX];
		char proof[64];
		snprintf(auth, sizeof(auth), "%s,%s,%s", s.first_bare,
			 s.server_first, without_proof);
		client_proof(&cred, "pencil", auth, proof, sizeof(proof));
		snprintf(fin, sizeof(fin), "%s,p=%s", without_proof, proof);
		cr_assert_eq(scram_server_final(&s, NULL, 0, fin, strlen(fin),
						&out, &len), SCRAM_OK);
	}

	first[12 + SCRAM_NONCE_MAX] = 'N';
	first[13 + SCRAM_NONCE_MAX] = '\0';
	cr_assert_eq(start(&s, &params_sha1, first), SCRAM_ERR_MALFORMED);
	cr_assert_str_eq(scram_error_condition(SCRAM_ERR_MALFORMED),
			 "malformed-request");
}

Test(scram, saslname_decoding)
{
	struct scram_server s;

	cr_assert_eq(start(&s, &params_sha1,
			   "n,a=ju=3Dli=2Cet@example.com,n=a=2Cb=3Dc,r=x"),
		     SCRAM_OK);
	cr_assert_str_eq(s.username, "a,b=c");
	cr_assert_str_eq(s.authzid, "ju=li,et@example.com");
	cr_assert_str_eq(s.gs2_header, "n,a=ju=3Dli=2Cet@example.com,");
	cr_assert_str_eq(s.first_bare, "n=a=2Cb=3Dc,r=x");
	cr_assert_str_eq(scram_error_condition(SCRAM_ERR_AUTHZID),
			 "invalid-authzid");
}

/* ---- client-final-message syntax -------------------------------------- */

Test(scram, client_final_errors)
{
	static const struct first_case cases[] = {
		{ "c=biws,r=abcSRV", SCRAM_ERR_MALFORMED },
		{ "c=biws,r=abcSRV,p=", SCRAM_ERR_MALFORMED },
		{ "r=abcSRV,c=biws,p=AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		  SCRAM_ERR_MALFORMED },
		{ "c=,r=abcSRV,p=AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		  SCRAM_ERR_MALFORMED },
		{ "c=biws,p=AAAAAAAAAAAAAAAAAAAAAAAAAAA=", SCRAM_ERR_MALFORMED },
		{ "c=biws,r=abcSRV,p=AAAA", SCRAM_ERR_MALFORMED },
		{ "c=biws,r=abcSRV,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		  SCRAM_ERR_MALFORMED },
		{ "c=biws,r=abcSRV,1=x,p=AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		  SCRAM_ERR_MALFORMED },
		{ "c=biws,r=abcSRV,p=AAAAAAAAAAAAAAAAAAAAAAAAAAA=,x=1",
		  SCRAM_ERR_MALFORMED },
		{ "c=bi*s,r=abcSRV,p=AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		  SCRAM_ERR_BASE64 },
		{ "c=biw,r=abcSRV,p=AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		  SCRAM_ERR_BASE64 },
		{ "c=bixx=,r=abcSRV,p=AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		  SCRAM_ERR_BASE64 },
		{ "c=biws,r=abcSRV,p=AAAAAAAAAAAAAAAAAAAAAAAAAA*=",
		  SCRAM_ERR_BASE64 },
		{ "c=biws,r=abcSRV,p=AAAAAAAAAAAAAAAAAAAAAAAAAAB=",
		  SCRAM_ERR_BASE64 },
		{ "c=eSws,r=abcSRV,p=AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		  SCRAM_ERR_CB_MISMATCH },
		{ "c=biwsAA==,r=abcSRV,p=AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		  SCRAM_ERR_CB_MISMATCH },
		{ "c=biws,r=abcSRX,p=AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		  SCRAM_ERR_NONCE },
		{ "c=biws,r=abcSRV,p=AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		  SCRAM_ERR_PROOF },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct scram_server s;
		struct scram_credentials cred;
		enum scram_error err;

		challenged(&s, &params_sha1, "n,,n=user,r=abc", &cred);
		err = final(&s, NULL, 0, cases[i].msg);
		cr_expect_eq(err, cases[i].err, "\"%s\": got %s, want %s",
			     cases[i].msg, scram_error_str(err),
			     scram_error_str(cases[i].err));
	}
	cr_assert_str_eq(scram_error_condition(SCRAM_ERR_BASE64),
			 "incorrect-encoding");
	cr_assert_str_eq(scram_error_condition(SCRAM_ERR_MALFORMED),
			 "malformed-request");
}

/* ---- channel binding -------------------------------------------------- */

static const unsigned char exporter[32] = "0123456789abcdef0123456789abcdef";

/* c= value for gs2 header + cb data. */
static const char *cbind64(const char *gs2, const void *cb, size_t cb_len)
{
	static char out[256];
	unsigned char raw[128];
	size_t n = strlen(gs2);

	memcpy(raw, gs2, n);
	memcpy(raw + n, cb, cb_len);
	cr_assert_eq(base64_encode(raw, n + cb_len, out, sizeof(out)), 0);
	return out;
}

static enum scram_error plus_exchange(const char *gs2, const void *client_cb,
				      size_t client_cb_len,
				      const void *server_cb,
				      size_t server_cb_len)
{
	struct scram_params p = { SCRAM_HASH_SHA256, true,
				  SCRAM_CB_TLS_EXPORTER |
				  SCRAM_CB_TLS_SERVER_END_POINT };
	struct scram_server s;
	struct scram_credentials cred;
	char first[128], without[256];

	snprintf(first, sizeof(first), "%sn=user,r=abc", gs2);
	challenged(&s, &p, first, &cred);
	snprintf(without, sizeof(without), "c=%s,r=abcSRV",
		 cbind64(gs2, client_cb, client_cb_len));
	return final(&s, server_cb, server_cb_len,
		     final_msg(&s, &cred, "pencil", without));
}

Test(scram, channel_binding_tls_exporter)
{
	unsigned char other[32];

	memcpy(other, exporter, sizeof(other));
	other[31] ^= 1;
	cr_assert_eq(plus_exchange("p=tls-exporter,,", exporter, 32, exporter,
				   32), SCRAM_OK);
	cr_assert_eq(plus_exchange("p=tls-exporter,a=user@example.com,",
				   exporter, 32, exporter, 32), SCRAM_OK);
	cr_assert_eq(plus_exchange("p=tls-server-end-point,,", exporter, 32,
				   exporter, 32), SCRAM_OK);
	/* the client saw another TLS session: a man in the middle */
	cr_assert_eq(plus_exchange("p=tls-exporter,,", other, 32, exporter,
				   32), SCRAM_ERR_CB_MISMATCH);
	/* cb data left out of c= */
	cr_assert_eq(plus_exchange("p=tls-exporter,,", exporter, 0, exporter,
				   32), SCRAM_ERR_CB_MISMATCH);
	cr_assert_eq(plus_exchange("p=tls-exporter,,", exporter, 31, exporter,
				   32), SCRAM_ERR_CB_MISMATCH);
	cr_assert_str_eq(scram_error_condition(SCRAM_ERR_CB_MISMATCH),
			 "not-authorized");
}

Test(scram, channel_binding_header_must_repeat)
{
	struct scram_params p = { SCRAM_HASH_SHA256, true,
				  SCRAM_CB_TLS_EXPORTER };
	struct scram_server s;
	struct scram_credentials cred;
	char without[256];

	/* c= carries a different gs2 header than the client-first did */
	challenged(&s, &p, "p=tls-exporter,,n=user,r=abc", &cred);
	snprintf(without, sizeof(without), "c=%s,r=abcSRV",
		 cbind64("p=tls-exporter,a=admin,", exporter, 32));
	cr_assert_eq(final(&s, exporter, 32,
			   final_msg(&s, &cred, "pencil", without)),
		     SCRAM_ERR_CB_MISMATCH);
	/* the caller forgot the cb data: our bug, not the client's */
	challenged(&s, &p, "p=tls-exporter,,n=user,r=abc", &cred);
	cr_assert_eq(final(&s, NULL, 0, "c=biws,r=abcSRV,p=AAAA"),
		     SCRAM_ERR_STATE);
}

Test(scram, channel_binding_flags)
{
	struct scram_params plus = { SCRAM_HASH_SHA1, true,
				     SCRAM_CB_TLS_EXPORTER };
	struct scram_params offered = { SCRAM_HASH_SHA1, false,
					SCRAM_CB_TLS_EXPORTER };
	struct scram_server s;

	/* 'n' and 'y' with a -PLUS mechanism */
	cr_assert_eq(start(&s, &plus, "n,,n=user,r=abc"), SCRAM_ERR_CB_FLAG);
	cr_assert_eq(start(&s, &plus, "y,,n=user,r=abc"), SCRAM_ERR_CB_FLAG);
	/* 'p' with a type we did not offer, or do not know */
	cr_assert_eq(start(&s, &plus, "p=tls-server-end-point,,n=user,r=abc"),
		     SCRAM_ERR_CB_TYPE);
	cr_assert_eq(start(&s, &plus, "p=tls-unique,,n=user,r=abc"),
		     SCRAM_ERR_CB_TYPE);
	cr_assert_eq(start(&s, &plus, "p=tls-exporter,,n=user,r=abc"),
		     SCRAM_OK);
	cr_assert_eq(s.cb, SCRAM_CB_TLS_EXPORTER);
	/* 'y' when we advertised -PLUS is a downgrade */
	cr_assert_eq(start(&s, &offered, "y,,n=user,r=abc"),
		     SCRAM_ERR_CB_DOWNGRADE);
	cr_assert_str_eq(scram_error_condition(SCRAM_ERR_CB_DOWNGRADE),
			 "not-authorized");
	cr_assert_eq(start(&s, &offered, "n,,n=user,r=abc"), SCRAM_OK);
	cr_assert_eq(start(&s, &params_sha1, "y,,n=user,r=abc"), SCRAM_OK);
}

Test(scram, y_flag_round_trip)
{
	struct scram_server s;
	struct scram_credentials cred;

	challenged(&s, &params_sha1, "y,,n=user,r=abc", &cred);
	/* "eSws" is base64("y,,"); "biws" would claim 'n' */
	cr_assert_eq(final(&s, NULL, 0,
			   final_msg(&s, &cred, "pencil", "c=biws,r=abcSRV")),
		     SCRAM_ERR_CB_MISMATCH);
	challenged(&s, &params_sha1, "y,,n=user,r=abc", &cred);
	cr_assert_eq(final(&s, NULL, 0,
			   final_msg(&s, &cred, "pencil", "c=eSws,r=abcSRV")),
		     SCRAM_OK);
}

/* ---- credentials ------------------------------------------------------ */

Test(scram, credentials_new_and_unknown)
{
	struct scram_credentials a, b, u1, u2, u3;
	const char *error = NULL;
	static const unsigned char secret[] = "server secret";

	cr_assert_eq(scram_credentials_new(SCRAM_HASH_SHA256, "pencil", 4096,
					   &a, &error), 0, "%s", error);
	cr_assert_eq(scram_credentials_new(SCRAM_HASH_SHA256, "pencil", 4096,
					   &b, &error), 0);
	cr_assert_neq(memcmp(a.salt, b.salt, a.salt_len), 0);
	cr_assert_neq(memcmp(a.stored_key, b.stored_key, 32), 0);
	cr_assert_eq(scram_plain_verify("pencil", &a), SCRAM_OK);
	cr_assert_eq(scram_credentials_new(SCRAM_HASH_SHA256, "pencil", 4095,
					   &a, &error), -1);
	cr_assert_eq(scram_credentials_new(SCRAM_HASH_SHA1, "", 4096, &a,
					   &error), -1);

	cr_assert_eq(scram_credentials_unknown(SCRAM_HASH_SHA1, "ghost", secret,
					       sizeof(secret), 4096, &u1), 0);
	cr_assert_eq(scram_credentials_unknown(SCRAM_HASH_SHA1, "ghost", secret,
					       sizeof(secret), 4096, &u2), 0);
	cr_assert_eq(scram_credentials_unknown(SCRAM_HASH_SHA1, "ghost2",
					       secret, sizeof(secret), 4096,
					       &u3), 0);
	cr_assert_eq(memcmp(u1.salt, u2.salt, u1.salt_len), 0);
	cr_assert_neq(memcmp(u1.salt, u3.salt, u1.salt_len), 0);
	cr_assert_eq(scram_plain_verify("pencil", &u1), SCRAM_ERR_PROOF);
}

Test(scram, derive_rejects_bad_input)
{
	unsigned char st[32], sv[32], salt[4] = { 1, 2, 3, 4 };
	const char *error = NULL;

	cr_assert_eq(scram_derive(SCRAM_HASH_SHA1, "pencil", salt, 4, 0, st,
				  sv, &error), -1);
	cr_assert_eq(scram_derive(SCRAM_HASH_SHA1, "pencil", salt, 0, 4096, st,
				  sv, &error), -1);
	cr_assert_eq(scram_derive(SCRAM_HASH_SHA1, "a\x07", salt, 4, 4096, st,
				  sv, &error), -1);
	cr_assert_eq(scram_derive(SCRAM_HASH_SHA1, "\xff", salt, 4, 4096, st,
				  sv, &error), -1);
	cr_assert_eq(scram_derive((enum scram_hash)7, "pencil", salt, 4, 4096,
				  st, sv, &error), -1);
}

Test(scram, mechanism_names)
{
	enum scram_hash hash;
	bool plus;

	cr_assert_eq(scram_mech_parse("SCRAM-SHA-256-PLUS", &hash, &plus), 0);
	cr_assert_eq(hash, SCRAM_HASH_SHA256);
	cr_assert(plus);
	cr_assert_eq(scram_mech_parse("SCRAM-SHA-1", &hash, &plus), 0);
	cr_assert_eq(hash, SCRAM_HASH_SHA1);
	cr_assert_not(plus);
	cr_assert_eq(scram_mech_parse("scram-sha-1", &hash, &plus), -1);
	cr_assert_eq(scram_mech_parse("PLAIN", &hash, &plus), -1);
	cr_assert_str_eq(scram_mech_name(SCRAM_HASH_SHA1, true),
			 "SCRAM-SHA-1-PLUS");
}

Test(scram, every_error_has_a_condition)
{
	static const char *const allowed[] = {
		"malformed-request", "incorrect-encoding", "invalid-authzid",
		"not-authorized", "temporary-auth-failure",
	};

	for (int e = SCRAM_ERR_MALFORMED; e <= SCRAM_ERR_INTERNAL; e++) {
		const char *c = scram_error_condition((enum scram_error)e);
		bool ok = false;
		for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
			ok = ok || strcmp(c, allowed[i]) == 0;
		cr_expect(ok, "error %d maps to \"%s\"", e, c);
		cr_expect_neq(strcmp(scram_error_str((enum scram_error)e), ""),
			      0);
	}
}

/* ---- PLAIN ------------------------------------------------------------ */

static enum scram_error plain(const char *msg, size_t len,
			      struct scram_plain *p)
{
	return scram_plain_parse(&arena, msg, len, p);
}

/* String literals with embedded NULs: the length comes from sizeof. */
#define PLAIN(lit, p) plain(lit, sizeof(lit) - 1, p)
#define PC(lit, err) { lit, sizeof(lit) - 1, err }

Test(scram, plain_parse)
{
	struct scram_plain p;

	cr_assert_eq(PLAIN("\0user\0pencil", &p), SCRAM_OK);
	cr_assert_null(p.authzid);
	cr_assert_str_eq(p.authcid, "user");
	cr_assert_str_eq(p.password, "pencil");
	scram_plain_clear(&p);
	cr_assert_null(p.password);
	cr_assert_eq(PLAIN("juliet@example.com\0user\0p\xc3\xa9ncil", &p),
		     SCRAM_OK);
	cr_assert_str_eq(p.authzid, "juliet@example.com");
	cr_assert_str_eq(p.password, "p\xc3\xa9ncil");
}

Test(scram, plain_parse_errors)
{
	static const struct {
		const char *msg;
		size_t len;
		enum scram_error err;
	} cases[] = {
		PC("userpencil", SCRAM_ERR_MALFORMED),
		PC("user\0pencil", SCRAM_ERR_MALFORMED),
		PC("\0\0pencil", SCRAM_ERR_MALFORMED),
		PC("\0user\0", SCRAM_ERR_MALFORMED),
		PC("\0user\0pen\0cil", SCRAM_ERR_MALFORMED),
		PC("", SCRAM_ERR_MALFORMED),
		PC("\xff\0user\0pencil", SCRAM_ERR_AUTHZID),
		PC("\0us\xc3(r\0pencil", SCRAM_ERR_USERNAME),
		PC("\0user\0pen\xe0\x80\xafil", SCRAM_ERR_PASSWORD),
		PC("\0user\0\xf4\x90\x80\x80", SCRAM_ERR_PASSWORD),
	};
	struct scram_plain p;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum scram_error err = plain(cases[i].msg, cases[i].len, &p);
		cr_expect_eq(err, cases[i].err, "case %zu: got %s", i,
			     scram_error_str(err));
	}
}

Test(scram, plain_parse_lengths)
{
	char msg[2 + SCRAM_NAME_MAX + 1 + 8];
	struct scram_plain p;

	memset(msg, 'u', sizeof(msg));
	msg[0] = '\0';
	msg[1 + SCRAM_NAME_MAX] = '\0';
	memcpy(msg + 2 + SCRAM_NAME_MAX, "pencil", 6);
	cr_assert_eq(plain(msg, 2 + SCRAM_NAME_MAX + 6, &p), SCRAM_OK);
	cr_assert_eq(strlen(p.authcid), SCRAM_NAME_MAX);
	msg[1 + SCRAM_NAME_MAX] = 'u';
	msg[2 + SCRAM_NAME_MAX] = '\0';
	memcpy(msg + 3 + SCRAM_NAME_MAX, "pencil", 6);
	cr_assert_eq(plain(msg, 3 + SCRAM_NAME_MAX + 6, &p),
		     SCRAM_ERR_USERNAME);
}

Test(scram, plain_verify)
{
	struct scram_credentials c1, c256, ix;

	creds(SCRAM_HASH_SHA1, "pencil", "QSXCR+Q6sek8bf92", 4096, &c1);
	creds(SCRAM_HASH_SHA256, "pencil", "W22ZaJ0SNY7soEsUEjb6gQ==", 4096,
	      &c256);
	cr_assert_eq(scram_plain_verify("pencil", &c1), SCRAM_OK);
	cr_assert_eq(scram_plain_verify("pencil", &c256), SCRAM_OK);
	cr_assert_eq(scram_plain_verify("pencil ", &c1), SCRAM_ERR_PROOF);
	cr_assert_eq(scram_plain_verify("Pencil", &c256), SCRAM_ERR_PROOF);
	cr_assert_eq(scram_plain_verify("penci\x07", &c256), SCRAM_ERR_PROOF);
	/* SASLprep: U+00AD SOFT HYPHEN maps to nothing (RFC 4013) */
	creds(SCRAM_HASH_SHA256, "IX", "W22ZaJ0SNY7soEsUEjb6gQ==", 4096, &ix);
	cr_assert_eq(scram_plain_verify("I\xc2\xadX", &ix), SCRAM_OK);
}

/* ---- base64 ----------------------------------------------------------- */

Test(scram, base64_strict)
{
	static const char *const bad[] = {
		"Zg=", "Zg", "Zh==", "Zm9v\n", "Zm 9v", "====", "Zm9v=",
		"Zm9vYg", "Z===", "Zg==Zg==", "Zm9v*A==",
		/* bytes >= 0x80 (libsodium 1.0.18 reads each as '/';
		 * found by fuzz/fuzz_sasl.c in a SCRAM proof) */
		"Zm9\x80", "Zm9\xff", "\xc3\xa9Zm", "Zg\xd6=",
	};
	unsigned char out[16];
	char enc[16];
	size_t len;

	cr_assert_eq(base64_decode("Zm9v", 4, out, sizeof(out), &len), 0);
	cr_assert_eq(len, 3);
	cr_assert_eq(memcmp(out, "foo", 3), 0);
	cr_assert_eq(base64_decode("Zg==", 4, out, sizeof(out), &len), 0);
	cr_assert_eq(len, 1);
	cr_assert_eq(base64_decode("", 0, out, sizeof(out), &len), 0);
	cr_assert_eq(len, 0);
	cr_assert_eq(base64_decode("Zm9vYmFy", 8, out, 5, &len), -1);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(base64_decode(bad[i], strlen(bad[i]), out,
					   sizeof(out), &len), -1, "\"%s\"",
			     bad[i]);
	cr_assert_eq(base64_encode("fo", 2, enc, sizeof(enc)), 0);
	cr_assert_str_eq(enc, "Zm8=");
	cr_assert_eq(base64_encode("foo", 3, enc, 4), -1);
}

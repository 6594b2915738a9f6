/*
 * scram.c - SASL SCRAM-SHA-1 and SCRAM-SHA-256 client (RFC 5802, RFC
 * 7677), without channel binding ("n,,").  PBKDF2 is by far the dearest
 * step of a login, and a benchmark's accounts share one password and often
 * one salt: the derived keys are cached per (mechanism, password, salt,
 * iterations) so that 10,000 logins run PBKDF2 once.
 * Failure policy: return -1 on any malformed server message; the caller
 * counts an authentication failure.
 */
#include "bench.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define SCRAM_MAX_HASH 32
#define SCRAM_MAX_SALT 128
#define SCRAM_CACHE_SLOTS 16

struct scram_client {
	enum bench_mech mech;
	unsigned char server_sig[SCRAM_MAX_HASH];  /* the v= we expect */
	unsigned short nonce_len;
	unsigned short first_bare_len;
	char first_bare[];      /* "n=user,r=nonce", the nonce at the end */
};

/* Derived keys of one (mechanism, password, salt, iterations). */
struct scram_keys {
	enum bench_mech mech;
	unsigned iterations;
	size_t salt_len;
	const char *password;   /* the options' string: compared by value */
	unsigned char salt[SCRAM_MAX_SALT];
	unsigned char client_key[SCRAM_MAX_HASH];
	unsigned char stored_key[SCRAM_MAX_HASH];
	unsigned char server_key[SCRAM_MAX_HASH];
};

static struct scram_keys scram_cache[SCRAM_CACHE_SLOTS];
static unsigned scram_cache_used;

const char *scram_mech_name(enum bench_mech m)
{
	switch (m) {
	case BENCH_MECH_PLAIN: return "PLAIN";
	case BENCH_MECH_SCRAM_SHA1: return "SCRAM-SHA-1";
	case BENCH_MECH_SCRAM_SHA256: return "SCRAM-SHA-256";
	}
	return "?";
}

static const EVP_MD *scram_md(enum bench_mech m)
{
	return m == BENCH_MECH_SCRAM_SHA1 ? EVP_sha1() : EVP_sha256();
}

int b64_encode(const void *in, size_t len, char *out, size_t outsize)
{
	if ((len + 2) / 3 * 4 + 1 > outsize)
		return -1;
	return EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

int b64_decode(const char *in, size_t len, void *out, size_t outsize)
{
	if (len % 4 != 0 || len / 4 * 3 > outsize)
		return -1;
	int n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
	if (n < 0)
		return -1;
	for (size_t i = len; i > 0 && in[i - 1] == '='; i--)
		n--;
	return n;
}

int scram_start(enum bench_mech m, const char *user, struct scram_client **s_r,
		char *out, size_t outsize)
{
	unsigned char rnd[18];
	char nonce[32], name[256];
	size_t k = 0;
	for (const char *p = user; *p != '\0' && k + 4 < sizeof(name); p++) {
		if (*p == '=' || *p == ',') {
			memcpy(name + k, *p == '=' ? "=3D" : "=2C", 3);
			k += 3;
		} else {
			name[k++] = *p;
		}
	}
	name[k] = '\0';
	if (RAND_bytes(rnd, sizeof(rnd)) != 1 ||
	    b64_encode(rnd, sizeof(rnd), nonce, sizeof(nonce)) < 0)
		return -1;
	int n = snprintf(out, outsize, "n,,n=%s,r=%s", name, nonce);
	if (n < 0 || (size_t)n >= outsize)
		return -1;
	struct scram_client *s = malloc(sizeof(*s) + (size_t)n);
	if (s == NULL)
		return -1;
	s->mech = m;
	s->first_bare_len = (unsigned short)(n - 3);
	s->nonce_len = (unsigned short)strlen(nonce);
	memcpy(s->first_bare, out + 3, (size_t)n - 3 + 1);
	*s_r = s;
	return n;
}

static int scram_derive(struct scram_keys *k)
{
	const EVP_MD *md = scram_md(k->mech);
	unsigned hlen = (unsigned)EVP_MD_get_size(md), l = 0;
	unsigned char salted[SCRAM_MAX_HASH];
	if (PKCS5_PBKDF2_HMAC(k->password, (int)strlen(k->password), k->salt,
			      (int)k->salt_len, (int)k->iterations, md,
			      (int)hlen, salted) != 1 ||
	    HMAC(md, salted, (int)hlen, (const unsigned char *)"Client Key",
		 10, k->client_key, &l) == NULL ||
	    HMAC(md, salted, (int)hlen, (const unsigned char *)"Server Key",
		 10, k->server_key, &l) == NULL ||
	    EVP_Digest(k->client_key, hlen, k->stored_key, NULL, md, NULL) != 1)
		return -1;
	return 0;
}

/* The cached keys, derived on first use; NULL on error. */
static const struct scram_keys *scram_keys(enum bench_mech m,
					   const char *password,
					   const unsigned char *salt,
					   size_t salt_len, unsigned iterations)
{
	static struct scram_keys spare;     /* when the cache is full */
	for (unsigned i = 0; i < scram_cache_used; i++) {
		struct scram_keys *k = &scram_cache[i];
		if (k->mech == m && k->iterations == iterations &&
		    k->salt_len == salt_len && strcmp(k->password, password) == 0 &&
		    memcmp(k->salt, salt, salt_len) == 0)
			return k;
	}
	struct scram_keys *k = scram_cache_used < SCRAM_CACHE_SLOTS ?
			       &scram_cache[scram_cache_used] : &spare;
	k->mech = m;
	k->iterations = iterations;
	k->salt_len = salt_len;
	k->password = password;
	memcpy(k->salt, salt, salt_len);
	if (scram_derive(k) < 0)
		return NULL;
	if (k != &spare)
		scram_cache_used++;
	return k;
}

/* Split "r=..,s=..,i=.." into its three values (pointers into msg). */
static int scram_parse_first(const char *msg, size_t len, const char **r,
			     size_t *rl, const char **salt, size_t *sl,
			     unsigned *iter)
{
	const char *p = msg, *end = msg + len;
	*r = *salt = NULL;
	*iter = 0;
	while (p < end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *e = comma ? comma : end;
		if (e - p >= 2 && p[1] == '=') {
			if (p[0] == 'r') {
				*r = p + 2;
				*rl = (size_t)(e - p - 2);
			} else if (p[0] == 's') {
				*salt = p + 2;
				*sl = (size_t)(e - p - 2);
			} else if (p[0] == 'i') {
				*iter = (unsigned)strtoul(p + 2, NULL, 10);
			} else if (p[0] == 'm') {
				return -1;      /* mandatory extension */
			}
		}
		p = e + 1;
	}
	return *r != NULL && *salt != NULL && *iter > 0 ? 0 : -1;
}

int scram_final(struct scram_client *s, const char *password,
		const char *server_first, size_t len, char *out,
		size_t outsize)
{
	const char *r, *salt64;
	size_t rl = 0, sl = 0;
	unsigned iter;
	unsigned char salt[SCRAM_MAX_SALT], sig[SCRAM_MAX_HASH];
	const char *nonce = s->first_bare + s->first_bare_len - s->nonce_len;
	if (scram_parse_first(server_first, len, &r, &rl, &salt64, &sl,
			      &iter) < 0 ||
	    rl <= s->nonce_len || memcmp(r, nonce, s->nonce_len) != 0)
		return -1;
	int salt_len = b64_decode(salt64, sl, salt, sizeof(salt));
	if (salt_len <= 0)
		return -1;
	const struct scram_keys *k = scram_keys(s->mech, password, salt,
						(size_t)salt_len, iter);
	if (k == NULL)
		return -1;
	const EVP_MD *md = scram_md(s->mech);
	unsigned hlen = (unsigned)EVP_MD_get_size(md), l;
	/* AuthMessage = client-first-bare "," server-first "," final-bare */
	char auth[1024];
	int fb = snprintf(out, outsize, "c=biws,r=%.*s", (int)rl, r);
	int al = snprintf(auth, sizeof(auth), "%s,%.*s,%.*s", s->first_bare,
			  (int)len, server_first, fb, out);
	if (fb < 0 || (size_t)fb >= outsize || al < 0 ||
	    (size_t)al >= sizeof(auth))
		return -1;
	if (HMAC(md, k->stored_key, (int)hlen, (unsigned char *)auth,
		 (size_t)al, sig, &l) == NULL ||
	    HMAC(md, k->server_key, (int)hlen, (unsigned char *)auth,
		 (size_t)al, s->server_sig, &l) == NULL)
		return -1;
	for (unsigned i = 0; i < hlen; i++)
		sig[i] ^= k->client_key[i];
	char proof[64];
	if (b64_encode(sig, hlen, proof, sizeof(proof)) < 0)
		return -1;
	int n = snprintf(out + fb, outsize - (size_t)fb, ",p=%s", proof);
	if (n < 0 || (size_t)n >= outsize - (size_t)fb)
		return -1;
	return fb + n;
}

int scram_verify(const struct scram_client *s, const char *server_final,
		 size_t len)
{
	char want[64];
	unsigned hlen = (unsigned)EVP_MD_get_size(scram_md(s->mech));
	int n = b64_encode(s->server_sig, hlen, want, sizeof(want));
	if (n < 0 || len != (size_t)n + 2 || memcmp(server_final, "v=", 2) != 0)
		return -1;
	return memcmp(server_final + 2, want, (size_t)n) == 0 ? 0 : -1;
}

void scram_free(struct scram_client **s)
{
	free(*s);
	*s = NULL;
}

/*
 * hmac.c - see hmac.h.
 */
#include "hmac.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

static const char *const hmac_digests[] = { "SHA1", "SHA256", "SHA384" };

static EVP_MAC_CTX *hmac_ctx(const char *digest)
{
	static EVP_MAC_CTX *ctx[sizeof(hmac_digests) / sizeof(*hmac_digests)];
	size_t i;
	for (i = 0; i < sizeof(hmac_digests) / sizeof(*hmac_digests); i++)
		if (strcmp(digest, hmac_digests[i]) == 0)
			break;
	if (i == sizeof(hmac_digests) / sizeof(*hmac_digests))
		return NULL;
	if (ctx[i] == NULL) {
		EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
		EVP_MAC_CTX *c = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
		OSSL_PARAM params[] = {
			OSSL_PARAM_construct_utf8_string(
				OSSL_MAC_PARAM_DIGEST, (char *)hmac_digests[i], 0),
			OSSL_PARAM_construct_end(),
		};
		EVP_MAC_free(mac);      /* the context keeps its reference */
		if (c == NULL || EVP_MAC_CTX_set_params(c, params) != 1) {
			EVP_MAC_CTX_free(c);
			return NULL;
		}
		ctx[i] = c;
	}
	return ctx[i];
}

int hmac(const char *digest, const void *key, size_t key_len,
	 const void *data, size_t len, unsigned char *out, size_t out_size)
{
	EVP_MAC_CTX *ctx = hmac_ctx(digest);
	size_t n = 0;
	if (ctx == NULL || EVP_MAC_init(ctx, key, key_len, NULL) != 1 ||
	    EVP_MAC_update(ctx, data, len) != 1 ||
	    EVP_MAC_final(ctx, out, &n, out_size) != 1)
		return -1;
	return (int)n;
}

/*
 * hmac.h - HMAC with the algorithm looked up once per process.  OpenSSL
 * 3's HMAC() fetches the MAC and the digest by name on every call, which
 * showed in the per-login profile; here one EVP_MAC_CTX per digest is
 * made on first use and re-keyed for each MAC.  Workers are single
 * threaded processes, so the contexts are not shared between threads.
 * Failure policy: -1 on any OpenSSL failure, nothing logged.
 */
#ifndef XMPPD_HMAC_H
#define XMPPD_HMAC_H

#include <stddef.h>

/* HMAC-<digest>(key, data) into out (at most out_size bytes); digest is
 * "SHA1", "SHA256" or "SHA384".  Returns the MAC's length or -1. */
int hmac(const char *digest, const void *key, size_t key_len,
	 const void *data, size_t len, unsigned char *out, size_t out_size);

#endif

/*
 * base64.c - strict base64 (base64.h) on top of libsodium's
 * sodium_bin2base64/sodium_base642bin with the ORIGINAL (padded) variant.
 * libsodium rejects bad padding, non-zero trailing bits and bad ASCII
 * characters; we add the size checks and refuse bytes >= 0x80, which
 * libsodium 1.0.18 (Debian 12) decodes as '/' (found by fuzz_sasl).
 * Failure policy: -1 on bad input or a short buffer, nothing is logged.
 */
#include "base64.h"

#include <stdint.h>

#include <sodium.h>

int base64_encode(const void *bin, size_t len, char *out, size_t outsize)
{
	if (len > (SIZE_MAX / 4) * 3 - 3 ||
	    outsize < BASE64_ENCODED_LEN(len) + 1)
		return -1;
	sodium_bin2base64(out, outsize, bin, len,
			  sodium_base64_VARIANT_ORIGINAL);
	return 0;
}

int base64_decode(const char *b64, size_t len, void *out, size_t outsize,
		  size_t *len_r)
{
	*len_r = 0;
	if (len == 0)
		return 0;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)b64[i] >= 0x80)
			return -1;
	/* b64_end == NULL makes libsodium fail on any unconsumed byte. */
	return sodium_base642bin(out, outsize, b64, len, NULL, len_r, NULL,
				 sodium_base64_VARIANT_ORIGINAL) == 0 ? 0 : -1;
}

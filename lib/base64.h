/*
 * base64.h - strict RFC 4648 base64 (standard alphabet, padded), as SASL
 * (RFC 6120 section 6.4.2) and SCRAM require.  Decoding rejects
 * whitespace, characters outside the alphabet, missing or extra padding
 * and non-zero trailing bits, so the caller can answer incorrect-encoding.
 * Failure policy: functions return -1 and never log; output buffers are
 * caller-owned.  Built on libsodium's constant-time codec.
 */
#ifndef XMPPD_BASE64_H
#define XMPPD_BASE64_H

#include <stddef.h>

/* Characters needed to encode n bytes, without the terminating NUL. */
#define BASE64_ENCODED_LEN(n) ((((n) + 2) / 3) * 4)
/* Upper bound on the bytes decoded from n characters. */
#define BASE64_DECODED_MAX(n) (((n) / 4) * 3)

/* Encode len bytes into out as a NUL-terminated string.  outsize must be
 * at least BASE64_ENCODED_LEN(len) + 1.  Returns 0, or -1 if too small. */
int base64_encode(const void *bin, size_t len, char *out, size_t outsize);

/* Decode exactly len characters of b64 into out.  Returns 0 and sets
 * *len_r, or -1 if the input is not canonical base64 or out is too
 * small.  An empty input decodes to zero bytes. */
int base64_decode(const char *b64, size_t len, void *out, size_t outsize,
		  size_t *len_r);

#endif

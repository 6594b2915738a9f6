/*
 * fuzz_sasl.c - SASL messages (lib/scram.c): PLAIN (RFC 4616) and the
 * server side of a SCRAM exchange (RFC 5802, 7677, 9266) against fixed
 * credentials ("user"/"pencil", one PBKDF2 iteration so a run is cheap)
 * and a fixed server nonce.  Properties:
 *  - no memory error or undefined behaviour on any message;
 *  - every error maps to an RFC 6120 condition;
 *  - PLAIN: a parsed message has an authcid and a password, and the
 *    password is checked without harm;
 *  - SCRAM: when the harness computes the real ClientProof for the
 *    client's final message (auto-proof), the exchange succeeds unless
 *    the message is refused for another reason, and the server-final
 *    "v=" is the RFC 5802 ServerSignature.
 * Input: byte 0 is flags: bit 0 SHA-256 (else SHA-1), bit 1 -PLUS
 * selected, bits 2-3 the channel bindings offered (enum scram_cb mask),
 * bit 4 auto-proof, bit 5 PLAIN instead of SCRAM.  For SCRAM the rest
 * is client-first, a 0xff byte, client-final (0xff never occurs in
 * UTF-8); without 0xff only client-first is sent.
 */
#include "fuzz.h"
#include "scram.h"
#include "base64.h"
#include "hmac.h"

#include <openssl/evp.h>
#include <string.h>

static const unsigned char fuzz_salt[16] = "fuzz-salt-16byte";
static const unsigned char fuzz_cb[32] = {
	0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
	0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
	0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
	0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
};
static struct scram_credentials fuzz_cred[2];
static unsigned char fuzz_client_key[2][SCRAM_HASH_MAX_LEN];
static struct arena fuzz_arena;

static const char *md_name(enum scram_hash h)
{
	return h == SCRAM_HASH_SHA1 ? "SHA1" : "SHA256";
}

static void fuzz_init(void)
{
	unsigned char sp[SCRAM_HASH_MAX_LEN];
	const char *error;
	arena_init(&fuzz_arena, 4096);
	for (int h = 0; h < 2; h++) {
		struct scram_credentials *c = &fuzz_cred[h];
		c->hash = (enum scram_hash)h;
		c->iterations = 1;
		c->salt_len = sizeof(fuzz_salt);
		memcpy(c->salt, fuzz_salt, sizeof(fuzz_salt));
		if (scram_salted_password(c->hash, "pencil", c->salt,
					  c->salt_len, 1, sp, &error) < 0 ||
		    scram_keys_from_salted(c->hash, sp, c->stored_key,
					   c->server_key) < 0 ||
		    hmac(md_name(c->hash), sp, scram_hash_len(c->hash),
			 "Client Key", 10, fuzz_client_key[h],
			 SCRAM_HASH_MAX_LEN) < 0)
			abort();
	}
}

static void check_error(enum scram_error err)
{
	const char *cond = scram_error_condition(err);
	FUZZ_CHECK(cond != NULL && cond[0] != '\0', "error %d has no "
		   "condition", (int)err);
	FUZZ_CHECK(scram_error_str(err) != NULL, "error %d has no reason",
		   (int)err);
}

static void fuzz_plain(const char *msg, size_t len)
{
	struct scram_plain plain;
	enum scram_error err = scram_plain_parse(&fuzz_arena, msg, len, &plain);
	if (err != SCRAM_OK) {
		check_error(err);
		return;
	}
	FUZZ_CHECK(plain.authcid != NULL && plain.authcid[0] != '\0',
		   "PLAIN accepted without an authcid");
	FUZZ_CHECK(plain.password != NULL, "PLAIN accepted without password");
	err = scram_plain_verify(plain.password, &fuzz_cred[1]);
	FUZZ_CHECK(err == SCRAM_OK || err == SCRAM_ERR_PROOF,
		   "PLAIN verify: %s", scram_error_str(err));
	/* (SASLprep maps other strings to "pencil" too: one way only) */
	FUZZ_CHECK(err == SCRAM_OK || strcmp(plain.password, "pencil") != 0,
		   "PLAIN verify of the right password: %s",
		   scram_error_str(err));
	scram_plain_clear(&plain);
}

/* The client's final message with its p= replaced by the real proof. */
static char *with_proof(const struct scram_server *s, enum scram_hash h,
			const char *final, size_t len, size_t *len_r,
			unsigned char *server_sig_r)
{
	size_t hlen = scram_hash_len(h), cut = len;
	unsigned char stored[SCRAM_HASH_MAX_LEN], sig[SCRAM_HASH_MAX_LEN];
	unsigned int l;

	for (size_t i = 0; i + 3 <= len; i++)
		if (memcmp(final + i, ",p=", 3) == 0)
			cut = i;
	/* AuthMessage: client-first-bare "," server-first "," final
	 * without proof */
	size_t fb = strlen(s->first_bare), sf = strlen(s->server_first);
	size_t alen = fb + 1 + sf + 1 + cut;
	char *auth = malloc(alen);
	char *out = malloc(cut + 3 + BASE64_ENCODED_LEN(SCRAM_HASH_MAX_LEN) + 1);
	if (auth == NULL || out == NULL)
		abort();
	memcpy(auth, s->first_bare, fb);
	auth[fb] = ',';
	memcpy(auth + fb + 1, s->server_first, sf);
	auth[fb + 1 + sf] = ',';
	memcpy(auth + fb + 2 + sf, final, cut);
	if (EVP_Digest(fuzz_client_key[h], hlen, stored, &l,
		       h == SCRAM_HASH_SHA1 ? EVP_sha1() : EVP_sha256(),
		       NULL) != 1 ||
	    hmac(md_name(h), stored, hlen, auth, alen, sig, sizeof(sig)) < 0 ||
	    hmac(md_name(h), fuzz_cred[h].server_key, hlen, auth, alen,
		 server_sig_r, SCRAM_HASH_MAX_LEN) < 0)
		abort();
	for (size_t i = 0; i < hlen; i++)
		sig[i] ^= fuzz_client_key[h][i];
	memcpy(out, final, cut);
	memcpy(out + cut, ",p=", 3);
	if (base64_encode(sig, hlen, out + cut + 3,
			  BASE64_ENCODED_LEN(SCRAM_HASH_MAX_LEN) + 1) < 0)
		abort();
	*len_r = cut + 3 + strlen(out + cut + 3);
	free(auth);
	return out;
}

static void fuzz_scram(unsigned flags, const char *msg, size_t len)
{
	struct scram_params params = {
		.hash = (flags & 1) ? SCRAM_HASH_SHA256 : SCRAM_HASH_SHA1,
		.plus = (flags & 2) != 0,
		.cb_offered = (flags >> 2) & 3,
	};
	struct scram_server s;
	const char *first, *out;
	size_t first_len, out_len;
	const char *sep = memchr(msg, 0xff, len);
	size_t first_in = sep != NULL ? (size_t)(sep - msg) : len;

	memset(&s, 0, sizeof(s));
	enum scram_error err = scram_server_start(&s, &fuzz_arena, &params, msg,
						  first_in);
	if (err == SCRAM_OK)
		err = scram_server_first_with_nonce(&s, &fuzz_cred[params.hash],
						    "fuzzsrvnonce", &first,
						    &first_len);
	if (err != SCRAM_OK || sep == NULL) {
		if (err != SCRAM_OK)
			check_error(err);
		scram_server_clear(&s);
		return;
	}
	const char *final = sep + 1;
	size_t final_len = len - first_in - 1;
	/* the message with the real proof: sent instead with auto-proof,
	 * and what any message the server accepts must be */
	unsigned char server_sig[SCRAM_HASH_MAX_LEN];
	size_t proofed_len;
	char *proofed = with_proof(&s, params.hash, final, final_len,
				   &proofed_len, server_sig);
	int auto_proof = (flags & 0x10) != 0;
	if (auto_proof) {
		final = proofed;
		final_len = proofed_len;
	}
	const void *cb = s.cb != SCRAM_CB_NONE ? fuzz_cb : NULL;
	err = scram_server_final(&s, cb, cb ? sizeof(fuzz_cb) : 0, final,
				 final_len, &out, &out_len);
	if (err != SCRAM_OK) {
		check_error(err);
		FUZZ_CHECK(!auto_proof || err != SCRAM_ERR_PROOF,
			   "the right proof was refused: %.*s",
			   (int)final_len, final);
	} else {
		char want[3 + BASE64_ENCODED_LEN(SCRAM_HASH_MAX_LEN) + 1];
		FUZZ_CHECK(final_len == proofed_len &&
			   memcmp(final, proofed, final_len) == 0,
			   "a wrong proof was accepted: %.*s", (int)final_len,
			   final);
		memcpy(want, "v=", 2);
		if (base64_encode(server_sig, scram_hash_len(params.hash),
				  want + 2, sizeof(want) - 2) < 0)
			abort();
		FUZZ_CHECK(out_len == strlen(want) &&
			   memcmp(out, want, out_len) == 0,
			   "server-final \"%.*s\", expected \"%s\"",
			   (int)out_len, out, want);
		FUZZ_CHECK(s.state == SCRAM_STATE_DONE, "done but state %d",
			   (int)s.state);
	}
	free(proofed);
	scram_server_clear(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	if (!ready) {
		fuzz_init();
		ready = 1;
	}
	if (size == 0 || size > SCRAM_MESSAGE_MAX * 2 + 2)
		return 0;
	unsigned flags = data[0];
	if (flags & 0x20)
		fuzz_plain((const char *)data + 1, size - 1);
	else
		fuzz_scram(flags, (const char *)data + 1, size - 1);
	arena_reset(&fuzz_arena);
	return 0;
}

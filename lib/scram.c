/*
 * scram.c - SCRAM and PLAIN server side (scram.h).  Parsing follows the
 * RFC 5802 section 7 grammar strictly; hashing is OpenSSL (PBKDF2, HMAC,
 * digests), nonces and salts come from libsodium, SASLprep from libidn.
 * Keys and prepared passwords are wiped after use; every comparison of
 * a secret is constant-time.
 * Failure policy: return an enum scram_error, never log, never abort; the
 * exchange is then in SCRAM_STATE_FAILED and every later step fails.
 */
#include "scram.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stringprep.h>

#include "base64.h"
#include "hmac.h"
#include "util.h"

#define SCRAM_NONCE_BYTES 18        /* 24 base64 characters */

/* ---- tables ----------------------------------------------------------- */

static const struct {
	const char *condition;      /* RFC 6120 section 6.5 */
	const char *text;
} scram_errors[] = {
	[SCRAM_OK] = { "", "success" },
	[SCRAM_ERR_MALFORMED] = { "malformed-request", "malformed message" },
	[SCRAM_ERR_BASE64] = { "incorrect-encoding", "invalid base64" },
	[SCRAM_ERR_EXTENSION] = { "malformed-request",
				  "mandatory extension not supported" },
	[SCRAM_ERR_USERNAME] = { "malformed-request",
				 "invalid username encoding" },
	[SCRAM_ERR_AUTHZID] = { "invalid-authzid", "invalid authzid encoding" },
	[SCRAM_ERR_PASSWORD] = { "malformed-request",
				 "invalid password encoding" },
	[SCRAM_ERR_CB_FLAG] = { "malformed-request",
				"channel binding flag does not match mechanism" },
	[SCRAM_ERR_CB_TYPE] = { "malformed-request",
				"unsupported channel binding type" },
	[SCRAM_ERR_CB_DOWNGRADE] = { "not-authorized",
				     "server does support channel binding" },
	[SCRAM_ERR_CB_MISMATCH] = { "not-authorized",
				    "channel bindings do not match" },
	[SCRAM_ERR_NONCE] = { "not-authorized", "nonce mismatch" },
	[SCRAM_ERR_PROOF] = { "not-authorized", "invalid proof" },
	[SCRAM_ERR_STATE] = { "temporary-auth-failure", "internal state error" },
	[SCRAM_ERR_NO_MEMORY] = { "temporary-auth-failure", "out of memory" },
	[SCRAM_ERR_INTERNAL] = { "temporary-auth-failure",
				 "crypto library failure" },
};

static const struct {
	const char *name;
	enum scram_hash hash;
	bool plus;
} scram_mechs[] = {
	{ "SCRAM-SHA-1", SCRAM_HASH_SHA1, false },
	{ "SCRAM-SHA-1-PLUS", SCRAM_HASH_SHA1, true },
	{ "SCRAM-SHA-256", SCRAM_HASH_SHA256, false },
	{ "SCRAM-SHA-256-PLUS", SCRAM_HASH_SHA256, true },
};

static const struct {
	const char *name;
	enum scram_cb cb;
} scram_cb_names[] = {
	{ "tls-exporter", SCRAM_CB_TLS_EXPORTER },
	{ "tls-server-end-point", SCRAM_CB_TLS_SERVER_END_POINT },
};

const char *scram_error_condition(enum scram_error err)
{
	if ((size_t)err >= ARRAY_SIZE(scram_errors))
		return "temporary-auth-failure";
	return scram_errors[err].condition;
}

const char *scram_error_str(enum scram_error err)
{
	if ((size_t)err >= ARRAY_SIZE(scram_errors))
		return "unknown error";
	return scram_errors[err].text;
}

int scram_mech_parse(const char *name, enum scram_hash *hash_r, bool *plus_r)
{
	for (size_t i = 0; i < ARRAY_SIZE(scram_mechs); i++) {
		if (strcmp(scram_mechs[i].name, name) == 0) {
			*hash_r = scram_mechs[i].hash;
			*plus_r = scram_mechs[i].plus;
			return 0;
		}
	}
	return -1;
}

const char *scram_mech_name(enum scram_hash hash, bool plus)
{
	for (size_t i = 0; i < ARRAY_SIZE(scram_mechs); i++) {
		if (scram_mechs[i].hash == hash && scram_mechs[i].plus == plus)
			return scram_mechs[i].name;
	}
	return NULL;
}

/* ---- small helpers ---------------------------------------------------- */

static bool scram_hash_valid(enum scram_hash hash)
{
	return hash == SCRAM_HASH_SHA1 || hash == SCRAM_HASH_SHA256;
}

size_t scram_hash_len(enum scram_hash hash)
{
	return hash == SCRAM_HASH_SHA256 ? 32 : 20;
}

static const EVP_MD *scram_md(enum scram_hash hash)
{
	return hash == SCRAM_HASH_SHA256 ? EVP_sha256() : EVP_sha1();
}

/* EVP_Digest() with EVP_sha256() looks the algorithm up by name on every
 * call in OpenSSL 3: the digests are fetched once per process (and the
 * HMACs go through lib/hmac.c for the same reason). */
static EVP_MD *scram_md_fetched(enum scram_hash hash)
{
	static EVP_MD *md[2];
	int i = hash == SCRAM_HASH_SHA256;
	if (md[i] == NULL)
		md[i] = EVP_MD_fetch(NULL, i ? "SHA256" : "SHA1", NULL);
	return md[i];
}

static int scram_hmac(enum scram_hash hash, const unsigned char *key,
		      const void *data, size_t len, unsigned char *out)
{
	size_t n = scram_hash_len(hash);
	int r = hmac(hash == SCRAM_HASH_SHA256 ? "SHA256" : "SHA1", key, n,
		     data, len, out, n);
	return r == (int)n ? 0 : -1;
}

static int scram_digest(enum scram_hash hash, const unsigned char *data,
			unsigned char *out)
{
	unsigned int out_len = 0;
	EVP_MD *md = scram_md_fetched(hash);

	if (md == NULL || EVP_Digest(data, scram_hash_len(hash), out,
				     &out_len, md, NULL) != 1)
		return -1;
	return out_len == scram_hash_len(hash) ? 0 : -1;
}

static bool scram_cred_valid(const struct scram_credentials *cred)
{
	return scram_hash_valid(cred->hash) && cred->iterations >= 1 &&
	       cred->iterations <= SCRAM_ITERATIONS_MAX &&
	       cred->salt_len >= 1 && cred->salt_len <= SCRAM_SALT_MAX_LEN;
}

/* Length of the valid UTF-8 sequence at p (no NUL, no overlong form, no
 * surrogate, at most U+10FFFF), or 0. */
static size_t scram_utf8_seq(const unsigned char *p, const unsigned char *end)
{
	static const uint32_t min_cp[] = { 0, 0, 0x80, 0x800, 0x10000 };
	size_t n;

	if (p[0] == 0)
		return 0;
	if (p[0] < 0x80)
		return 1;
	n = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc0 ? 2 : 0;
	if (n == 0 || p[0] > 0xf4 || (size_t)(end - p) < n)
		return 0;
	uint32_t cp = p[0] & (0x7fu >> n);
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3fu);
	}
	if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

static bool scram_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	const unsigned char *end = p + len;

	while (p < end) {
		size_t n = scram_utf8_seq(p, end);
		if (n == 0)
			return false;
		p += n;
	}
	return true;
}

static char *scram_aprintf(struct arena *a, size_t *len_r, const char *fmt,
			   ...) __attribute__((format(printf, 3, 4)));

static char *scram_aprintf(struct arena *a, size_t *len_r, const char *fmt,
			   ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || (p = arena_alloc(a, (size_t)n + 1)) == NULL)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	if (len_r != NULL)
		*len_r = (size_t)n;
	return p;
}

static void scram_free_secret(char **p)
{
	if (*p == NULL)
		return;
	sodium_memzero(*p, strlen(*p));
	free(*p);
	*p = NULL;
}

/* ---- key derivation --------------------------------------------------- */

/* SASLprep as a "query" string (RFC 5802 section 2.2: unassigned code
 * points allowed).  *out_r is malloc'ed; free with scram_free_secret(). */
static int scram_saslprep(const char *password, char **out_r,
			  const char **error_r)
{
	size_t len = strlen(password);
	char *out = NULL;

	*out_r = NULL;
	if (len == 0 || len > SCRAM_PASSWORD_MAX ||
	    !scram_utf8_valid(password, len)) {
		*error_r = "password is empty, too long or not UTF-8";
		return -1;
	}
	if (stringprep_profile(password, &out, "SASLprep", 0) != STRINGPREP_OK) {
		*error_r = "password contains characters SASLprep prohibits";
		return -1;
	}
	if (*out == '\0') {
		free(out);
		*error_r = "password is empty after SASLprep";
		return -1;
	}
	*out_r = out;
	return 0;
}

static bool scram_params_valid(enum scram_hash hash, size_t salt_len,
			       unsigned int iterations)
{
	return scram_hash_valid(hash) && salt_len >= 1 &&
	       salt_len <= SCRAM_SALT_MAX_LEN && iterations >= 1 &&
	       iterations <= SCRAM_ITERATIONS_MAX;
}

/* PBKDF2 on an already prepared password. */
static int scram_pbkdf2(enum scram_hash hash, const char *prepped,
			const unsigned char *salt, size_t salt_len,
			unsigned int iterations, unsigned char *out)
{
	return PKCS5_PBKDF2_HMAC(prepped, (int)strlen(prepped), salt,
				 (int)salt_len, (int)iterations, scram_md(hash),
				 (int)scram_hash_len(hash), out) == 1 ? 0 : -1;
}

int scram_salted_password(enum scram_hash hash, const char *password,
			  const unsigned char *salt, size_t salt_len,
			  unsigned int iterations, unsigned char *out,
			  const char **error_r)
{
	char *prepped;
	int ret;

	if (!scram_params_valid(hash, salt_len, iterations)) {
		*error_r = "invalid hash, salt length or iteration count";
		return -1;
	}
	if (scram_saslprep(password, &prepped, error_r) < 0)
		return -1;
	ret = scram_pbkdf2(hash, prepped, salt, salt_len, iterations, out);
	if (ret < 0)
		*error_r = "PBKDF2 failed";
	scram_free_secret(&prepped);
	return ret;
}

int scram_keys_from_salted(enum scram_hash hash, const unsigned char *salted,
			   unsigned char *stored_key_r,
			   unsigned char *server_key_r)
{
	unsigned char client_key[SCRAM_HASH_MAX_LEN];
	int ret = 0;

	if (!scram_hash_valid(hash) ||
	    scram_hmac(hash, salted, "Client Key", 10, client_key) < 0 ||
	    scram_digest(hash, client_key, stored_key_r) < 0 ||
	    scram_hmac(hash, salted, "Server Key", 10, server_key_r) < 0)
		ret = -1;
	sodium_memzero(client_key, sizeof(client_key));
	return ret;
}

int scram_derive(enum scram_hash hash, const char *password,
		 const unsigned char *salt, size_t salt_len,
		 unsigned int iterations, unsigned char *stored_key_r,
		 unsigned char *server_key_r, const char **error_r)
{
	unsigned char salted[SCRAM_HASH_MAX_LEN];
	int ret;

	ret = scram_salted_password(hash, password, salt, salt_len, iterations,
				    salted, error_r);
	if (ret == 0 && scram_keys_from_salted(hash, salted, stored_key_r,
					       server_key_r) < 0) {
		*error_r = "HMAC failed";
		ret = -1;
	}
	sodium_memzero(salted, sizeof(salted));
	return ret;
}

int scram_credentials_new(enum scram_hash hash, const char *password,
			  unsigned int iterations,
			  struct scram_credentials *cred_r,
			  const char **error_r)
{
	memset(cred_r, 0, sizeof(*cred_r));
	if (iterations < SCRAM_ITERATIONS_MIN) {
		*error_r = "iteration count below SCRAM_ITERATIONS_MIN";
		return -1;
	}
	if (sodium_init() < 0) {
		*error_r = "sodium_init() failed";
		return -1;
	}
	cred_r->hash = hash;
	cred_r->iterations = iterations;
	cred_r->salt_len = SCRAM_SALT_DEFAULT_LEN;
	randombytes_buf(cred_r->salt, cred_r->salt_len);
	return scram_derive(hash, password, cred_r->salt, cred_r->salt_len,
			    iterations, cred_r->stored_key, cred_r->server_key,
			    error_r);
}

int scram_credentials_unknown(enum scram_hash hash, const char *username,
			      const unsigned char *secret, size_t secret_len,
			      unsigned int iterations,
			      struct scram_credentials *cred_r)
{
	unsigned char mac[EVP_MAX_MD_SIZE];

	memset(cred_r, 0, sizeof(*cred_r));
	if (!scram_params_valid(hash, SCRAM_SALT_DEFAULT_LEN, iterations) ||
	    secret_len > INT32_MAX || sodium_init() < 0)
		return -1;
	if (hmac("SHA256", secret, secret_len, username, strlen(username),
		 mac, sizeof(mac)) < SCRAM_SALT_DEFAULT_LEN)
		return -1;
	cred_r->hash = hash;
	cred_r->iterations = iterations;
	cred_r->salt_len = SCRAM_SALT_DEFAULT_LEN;
	memcpy(cred_r->salt, mac, SCRAM_SALT_DEFAULT_LEN);
	randombytes_buf(cred_r->stored_key, sizeof(cred_r->stored_key));
	randombytes_buf(cred_r->server_key, sizeof(cred_r->server_key));
	return 0;
}

/* ---- message parsing -------------------------------------------------- */

struct scram_cursor {
	const char *p;
	const char *end;
};

/* The parts of a client-final-message; pointers into the message. */
struct scram_final {
	const char *without_proof;  /* client-final-message-without-proof */
	size_t without_proof_len;
	const char *cbind;          /* c= value, base64 */
	size_t cbind_len;
	const char *nonce;          /* r= value */
	size_t nonce_len;
	const char *proof;          /* p= value, base64 */
	size_t proof_len;
};

static bool scram_is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Read "<name>=<value>" up to the next ',' or the end, and step over the
 * ','.  Returns 1 if a ',' followed, 0 at the end, -1 on a syntax error. */
static int scram_attr(struct scram_cursor *c, char name, const char **val_r,
		      size_t *len_r)
{
	const char *v, *comma;

	if (c->end - c->p < 2 || c->p[0] != name || c->p[1] != '=')
		return -1;
	v = c->p + 2;
	comma = memchr(v, ',', (size_t)(c->end - v));
	*val_r = v;
	*len_r = (size_t)((comma != NULL ? comma : c->end) - v);
	c->p = comma != NULL ? comma + 1 : c->end;
	return comma != NULL ? 1 : 0;
}

/* Skip one optional extension "x=value"; same returns as scram_attr. */
static int scram_extension(struct scram_cursor *c)
{
	const char *v;
	size_t len;
	int r;

	if (c->p >= c->end || !scram_is_alpha(*c->p))
		return -1;
	r = scram_attr(c, *c->p, &v, &len);
	if (r < 0 || len == 0 || !scram_utf8_valid(v, len))
		return -1;
	return r;
}

static enum scram_error scram_skip_extensions(struct scram_cursor *c)
{
	int r;

	do {
		r = scram_extension(c);
	} while (r == 1);
	return r < 0 ? SCRAM_ERR_MALFORMED : SCRAM_OK;
}

/* printable = %x21-2B / %x2D-7E */
static bool scram_nonce_valid(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < 0x21 || s[i] > 0x7e || s[i] == ',')
			return false;
	}
	return true;
}

/* cb-name = 1*(ALPHA / DIGIT / "." / "-") */
static bool scram_cb_name_valid(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (!scram_is_alpha(s[i]) && !(s[i] >= '0' && s[i] <= '9') &&
		    s[i] != '.' && s[i] != '-')
			return false;
	}
	return true;
}

static enum scram_cb scram_cb_lookup(const char *s, size_t len)
{
	for (size_t i = 0; i < ARRAY_SIZE(scram_cb_names); i++) {
		if (strlen(scram_cb_names[i].name) == len &&
		    memcmp(scram_cb_names[i].name, s, len) == 0)
			return scram_cb_names[i].cb;
	}
	return SCRAM_CB_NONE;
}

/* Decode a saslname ("=2C" -> ',', "=3D" -> '='; any other '=' is an
 * error) into the arena; it must be 1..max bytes of UTF-8. */
static enum scram_error scram_saslname(struct arena *a, const char *v,
				       size_t len, size_t max,
				       enum scram_error bad, const char **out_r)
{
	char *out = arena_alloc(a, len + 1);
	size_t n = 0;

	if (out == NULL)
		return SCRAM_ERR_NO_MEMORY;
	for (size_t i = 0; i < len; i++) {
		if (v[i] != '=') {
			out[n++] = v[i];
			continue;
		}
		if (len - i < 3)
			return bad;
		if (v[i + 1] == '2' && v[i + 2] == 'C')
			out[n++] = ',';
		else if (v[i + 1] == '3' && v[i + 2] == 'D')
			out[n++] = '=';
		else
			return bad;
		i += 2;
	}
	out[n] = '\0';
	if (n == 0 || n > max || !scram_utf8_valid(out, n))
		return bad;
	*out_r = out;
	return SCRAM_OK;
}

static enum scram_error scram_check_message(const char *msg, size_t len)
{
	if (len == 0 || len > SCRAM_MESSAGE_MAX || memchr(msg, '\0', len))
		return SCRAM_ERR_MALFORMED;
	return SCRAM_OK;
}

/* gs2-cbind-flag "," [authzid] "," */
static enum scram_error scram_parse_gs2(struct scram_server *s,
					struct scram_cursor *c)
{
	const char *v;
	size_t len;

	if (c->end - c->p >= 2 && (c->p[0] == 'n' || c->p[0] == 'y') &&
	    c->p[1] == ',') {
		s->gs2_flag = c->p[0];
		c->p += 2;
	} else if (scram_attr(c, 'p', &v, &len) == 1 &&
		   scram_cb_name_valid(v, len)) {
		s->gs2_flag = 'p';
		s->cb = scram_cb_lookup(v, len);
	} else {
		return SCRAM_ERR_MALFORMED;
	}
	if (c->p < c->end && *c->p == ',') {
		c->p++;
		return SCRAM_OK;
	}
	if (scram_attr(c, 'a', &v, &len) != 1)
		return SCRAM_ERR_MALFORMED;
	return scram_saslname(s->arena, v, len, SCRAM_AUTHZID_MAX,
			      SCRAM_ERR_AUTHZID, &s->authzid);
}

/* [reserved-mext ","] username "," nonce ["," extensions] */
static enum scram_error scram_parse_bare(struct scram_server *s,
					 struct scram_cursor *c)
{
	enum scram_error err;
	const char *v;
	size_t len;
	int r;

	if (c->end - c->p >= 2 && c->p[0] == 'm' && c->p[1] == '=')
		return SCRAM_ERR_EXTENSION;
	if (scram_attr(c, 'n', &v, &len) != 1)
		return SCRAM_ERR_MALFORMED;
	err = scram_saslname(s->arena, v, len, SCRAM_NAME_MAX,
			     SCRAM_ERR_USERNAME, &s->username);
	if (err != SCRAM_OK)
		return err;
	r = scram_attr(c, 'r', &v, &len);
	if (r < 0 || len > SCRAM_NONCE_MAX || !scram_nonce_valid(v, len))
		return SCRAM_ERR_MALFORMED;
	if ((s->nonce = arena_strndup(s->arena, v, len)) == NULL)
		return SCRAM_ERR_NO_MEMORY;
	return r == 1 ? scram_skip_extensions(c) : SCRAM_OK;
}

static enum scram_error scram_parse_first(struct scram_server *s,
					  const char *msg, size_t len)
{
	struct scram_cursor c = { msg, msg + len };
	enum scram_error err = scram_parse_gs2(s, &c);

	if (err != SCRAM_OK)
		return err;
	s->gs2_len = (size_t)(c.p - msg);
	s->gs2_header = arena_strndup(s->arena, msg, s->gs2_len);
	s->first_bare = arena_strndup(s->arena, c.p, (size_t)(c.end - c.p));
	if (s->gs2_header == NULL || s->first_bare == NULL)
		return SCRAM_ERR_NO_MEMORY;
	return scram_parse_bare(s, &c);
}

/* The last ",p=" starts the proof: base64 never contains ','. */
static const char *scram_find_proof(const char *msg, size_t len)
{
	for (size_t i = len; i >= 3; i--) {
		if (memcmp(msg + i - 3, ",p=", 3) == 0)
			return msg + i - 3;
	}
	return NULL;
}

/* channel-binding "," nonce ["," extensions] "," proof */
static enum scram_error scram_parse_final(const char *msg, size_t len,
					  struct scram_final *f)
{
	const char *p = scram_find_proof(msg, len);
	struct scram_cursor c = { msg, p };
	int r;

	if (p == NULL)
		return SCRAM_ERR_MALFORMED;
	f->without_proof = msg;
	f->without_proof_len = (size_t)(p - msg);
	f->proof = p + 3;
	f->proof_len = (size_t)(msg + len - f->proof);
	if (scram_attr(&c, 'c', &f->cbind, &f->cbind_len) != 1 ||
	    f->cbind_len == 0)
		return SCRAM_ERR_MALFORMED;
	r = scram_attr(&c, 'r', &f->nonce, &f->nonce_len);
	if (r < 0 || !scram_nonce_valid(f->nonce, f->nonce_len))
		return SCRAM_ERR_MALFORMED;
	return r == 1 ? scram_skip_extensions(&c) : SCRAM_OK;
}

/* ---- server exchange -------------------------------------------------- */

static enum scram_error scram_fail(struct scram_server *s,
				   enum scram_error err)
{
	if (err != SCRAM_OK)
		s->state = SCRAM_STATE_FAILED;
	return err;
}

/* RFC 5802 section 6: the gs2 flag must agree with the mechanism and
 * with what we advertised. */
static enum scram_error scram_check_cb_flag(const struct scram_server *s)
{
	const struct scram_params *p = &s->params;

	if (s->gs2_flag == 'p') {
		if (!p->plus)
			return SCRAM_ERR_CB_FLAG;
		if (s->cb == SCRAM_CB_NONE || (p->cb_offered & s->cb) == 0)
			return SCRAM_ERR_CB_TYPE;
		return SCRAM_OK;
	}
	if (p->plus)
		return SCRAM_ERR_CB_FLAG;
	if (s->gs2_flag == 'y' && p->cb_offered != 0)
		return SCRAM_ERR_CB_DOWNGRADE;
	return SCRAM_OK;
}

enum scram_error scram_server_start(struct scram_server *s, struct arena *a,
				    const struct scram_params *params,
				    const char *msg, size_t len)
{
	enum scram_error err;

	memset(s, 0, sizeof(*s));
	s->arena = a;
	s->params = *params;
	err = scram_hash_valid(params->hash) ? SCRAM_OK : SCRAM_ERR_STATE;
	if (err == SCRAM_OK)
		err = scram_check_message(msg, len);
	if (err == SCRAM_OK)
		err = scram_parse_first(s, msg, len);
	if (err == SCRAM_OK)
		err = scram_check_cb_flag(s);
	if (err == SCRAM_OK)
		s->state = SCRAM_STATE_STARTED;
	return scram_fail(s, err);
}

enum scram_error scram_server_first(struct scram_server *s,
				    const struct scram_credentials *cred,
				    const char **msg_r, size_t *len_r)
{
	unsigned char raw[SCRAM_NONCE_BYTES];
	char nonce[BASE64_ENCODED_LEN(SCRAM_NONCE_BYTES) + 1];

	if (sodium_init() < 0)
		return scram_fail(s, SCRAM_ERR_INTERNAL);
	randombytes_buf(raw, sizeof(raw));
	if (base64_encode(raw, sizeof(raw), nonce, sizeof(nonce)) < 0)
		return scram_fail(s, SCRAM_ERR_INTERNAL);
	return scram_server_first_with_nonce(s, cred, nonce, msg_r, len_r);
}

enum scram_error scram_server_first_with_nonce(
	struct scram_server *s, const struct scram_credentials *cred,
	const char *server_nonce, const char **msg_r, size_t *len_r)
{
	char salt[BASE64_ENCODED_LEN(SCRAM_SALT_MAX_LEN) + 1];
	size_t n = scram_hash_len(cred->hash);

	if (s->state != SCRAM_STATE_STARTED || !scram_cred_valid(cred) ||
	    cred->hash != s->params.hash ||
	    !scram_nonce_valid(server_nonce, strlen(server_nonce)))
		return scram_fail(s, SCRAM_ERR_STATE);
	if (base64_encode(cred->salt, cred->salt_len, salt, sizeof(salt)) < 0)
		return scram_fail(s, SCRAM_ERR_INTERNAL);
	s->nonce = scram_aprintf(s->arena, NULL, "%s%s", s->nonce,
				 server_nonce);
	if (s->nonce == NULL)
		return scram_fail(s, SCRAM_ERR_NO_MEMORY);
	s->server_first = scram_aprintf(s->arena, len_r, "r=%s,s=%s,i=%u",
					s->nonce, salt, cred->iterations);
	if (s->server_first == NULL)
		return scram_fail(s, SCRAM_ERR_NO_MEMORY);
	memcpy(s->stored_key, cred->stored_key, n);
	memcpy(s->server_key, cred->server_key, n);
	s->state = SCRAM_STATE_CHALLENGED;
	*msg_r = s->server_first;
	return SCRAM_OK;
}

/* c= must decode to exactly gs2-header || cb-data. */
static enum scram_error scram_check_cbind(const struct scram_server *s,
					  const struct scram_final *f,
					  const unsigned char *cb_data,
					  size_t cb_len)
{
	size_t cap = BASE64_DECODED_MAX(f->cbind_len), got_len;
	unsigned char *got = arena_alloc(s->arena, cap + 1);

	if (got == NULL)
		return SCRAM_ERR_NO_MEMORY;
	if (base64_decode(f->cbind, f->cbind_len, got, cap, &got_len) < 0)
		return SCRAM_ERR_BASE64;
	if (got_len != s->gs2_len + cb_len ||
	    memcmp(got, s->gs2_header, s->gs2_len) != 0 ||
	    (cb_len > 0 &&
	     CRYPTO_memcmp(got + s->gs2_len, cb_data, cb_len) != 0))
		return SCRAM_ERR_CB_MISMATCH;
	return SCRAM_OK;
}

static enum scram_error scram_check_nonce(const struct scram_server *s,
					  const struct scram_final *f)
{
	if (f->nonce_len != strlen(s->nonce) ||
	    memcmp(f->nonce, s->nonce, f->nonce_len) != 0)
		return SCRAM_ERR_NONCE;
	return SCRAM_OK;
}

static enum scram_error scram_decode_proof(const struct scram_server *s,
					   const struct scram_final *f,
					   unsigned char *proof)
{
	size_t n = scram_hash_len(s->params.hash), got;

	if (memchr(f->proof, ',', f->proof_len) != NULL ||
	    f->proof_len != BASE64_ENCODED_LEN(n))
		return SCRAM_ERR_MALFORMED;
	if (base64_decode(f->proof, f->proof_len, proof, SCRAM_HASH_MAX_LEN + 3,
			  &got) < 0)
		return SCRAM_ERR_BASE64;
	return got == n ? SCRAM_OK : SCRAM_ERR_MALFORMED;
}

/* ClientKey := ClientProof XOR HMAC(StoredKey, AuthMessage); the proof
 * is good iff H(ClientKey) == StoredKey. */
static enum scram_error scram_check_proof(const struct scram_server *s,
					  const unsigned char *proof,
					  const char *auth, size_t auth_len)
{
	enum scram_hash hash = s->params.hash;
	size_t n = scram_hash_len(hash);
	unsigned char key[SCRAM_HASH_MAX_LEN], stored[SCRAM_HASH_MAX_LEN];
	enum scram_error err = SCRAM_OK;

	if (scram_hmac(hash, s->stored_key, auth, auth_len, key) < 0)
		return SCRAM_ERR_INTERNAL;
	for (size_t i = 0; i < n; i++)
		key[i] ^= proof[i];
	if (scram_digest(hash, key, stored) < 0)
		err = SCRAM_ERR_INTERNAL;
	else if (CRYPTO_memcmp(stored, s->stored_key, n) != 0)
		err = SCRAM_ERR_PROOF;
	sodium_memzero(key, sizeof(key));
	return err;
}

/* server-final-message: "v=" base64(HMAC(ServerKey, AuthMessage)) */
static enum scram_error scram_build_final(struct scram_server *s,
					  const char *auth, size_t auth_len,
					  const char **msg_r, size_t *len_r)
{
	unsigned char sig[SCRAM_HASH_MAX_LEN];
	char sig64[BASE64_ENCODED_LEN(SCRAM_HASH_MAX_LEN) + 1];
	size_t n = scram_hash_len(s->params.hash);

	if (scram_hmac(s->params.hash, s->server_key, auth, auth_len, sig) < 0 ||
	    base64_encode(sig, n, sig64, sizeof(sig64)) < 0)
		return SCRAM_ERR_INTERNAL;
	*msg_r = scram_aprintf(s->arena, len_r, "v=%s", sig64);
	return *msg_r != NULL ? SCRAM_OK : SCRAM_ERR_NO_MEMORY;
}

static enum scram_error scram_verify(struct scram_server *s,
				     const struct scram_final *f,
				     const char **msg_r, size_t *len_r)
{
	unsigned char proof[SCRAM_HASH_MAX_LEN + 3];
	enum scram_error err = scram_decode_proof(s, f, proof);
	size_t auth_len;
	char *auth;

	if (err != SCRAM_OK)
		return err;
	/* AuthMessage := client-first-message-bare "," server-first-message
	 *                "," client-final-message-without-proof */
	auth = scram_aprintf(s->arena, &auth_len, "%s,%s,%.*s", s->first_bare,
			     s->server_first, (int)f->without_proof_len,
			     f->without_proof);
	if (auth == NULL)
		return SCRAM_ERR_NO_MEMORY;
	err = scram_check_proof(s, proof, auth, auth_len);
	if (err == SCRAM_OK)
		err = scram_build_final(s, auth, auth_len, msg_r, len_r);
	return err;
}

enum scram_error scram_server_final(struct scram_server *s,
				    const void *cb_data, size_t cb_len,
				    const char *msg, size_t len,
				    const char **msg_r, size_t *len_r)
{
	struct scram_final f;
	enum scram_error err = SCRAM_OK;

	if (s->state != SCRAM_STATE_CHALLENGED ||
	    (s->cb != SCRAM_CB_NONE && (cb_data == NULL || cb_len == 0)))
		return scram_fail(s, SCRAM_ERR_STATE);
	if (s->cb == SCRAM_CB_NONE)
		cb_len = 0;
	err = scram_check_message(msg, len);
	if (err == SCRAM_OK)
		err = scram_parse_final(msg, len, &f);
	if (err == SCRAM_OK)
		err = scram_check_cbind(s, &f, cb_data, cb_len);
	if (err == SCRAM_OK)
		err = scram_check_nonce(s, &f);
	if (err == SCRAM_OK)
		err = scram_verify(s, &f, msg_r, len_r);
	if (err == SCRAM_OK)
		s->state = SCRAM_STATE_DONE;
	return scram_fail(s, err);
}

void scram_server_clear(struct scram_server *s)
{
	sodium_memzero(s->stored_key, sizeof(s->stored_key));
	sodium_memzero(s->server_key, sizeof(s->server_key));
	s->state = SCRAM_STATE_FAILED;
}

/* ---- PLAIN ------------------------------------------------------------ */

static enum scram_error scram_plain_field(struct arena *a, const char *v,
					  size_t len, size_t max,
					  enum scram_error bad, char **out_r)
{
	if (len > max || !scram_utf8_valid(v, len))
		return bad;
	*out_r = arena_strndup(a, v, len);
	return *out_r != NULL ? SCRAM_OK : SCRAM_ERR_NO_MEMORY;
}

enum scram_error scram_plain_parse(struct arena *a, const char *msg,
				   size_t len, struct scram_plain *plain_r)
{
	const char *nul1, *cid, *nul2, *pw;
	enum scram_error err = SCRAM_OK;
	char *authzid = NULL, *authcid = NULL;

	memset(plain_r, 0, sizeof(*plain_r));
	if (len > SCRAM_MESSAGE_MAX || (nul1 = memchr(msg, '\0', len)) == NULL)
		return SCRAM_ERR_MALFORMED;
	cid = nul1 + 1;
	nul2 = memchr(cid, '\0', (size_t)(msg + len - cid));
	if (nul2 == NULL || nul2 == cid || nul2 + 1 == msg + len ||
	    memchr(nul2 + 1, '\0', (size_t)(msg + len - nul2 - 1)) != NULL)
		return SCRAM_ERR_MALFORMED;
	pw = nul2 + 1;
	if (nul1 > msg)
		err = scram_plain_field(a, msg, (size_t)(nul1 - msg),
					SCRAM_AUTHZID_MAX, SCRAM_ERR_AUTHZID,
					&authzid);
	if (err == SCRAM_OK)
		err = scram_plain_field(a, cid, (size_t)(nul2 - cid),
					SCRAM_NAME_MAX, SCRAM_ERR_USERNAME,
					&authcid);
	if (err == SCRAM_OK)
		err = scram_plain_field(a, pw, (size_t)(msg + len - pw),
					SCRAM_PASSWORD_MAX, SCRAM_ERR_PASSWORD,
					&plain_r->password);
	plain_r->authzid = authzid;
	plain_r->authcid = authcid;
	return err;
}

enum scram_error scram_plain_verify(const char *password,
				    const struct scram_credentials *cred)
{
	unsigned char salted[SCRAM_HASH_MAX_LEN], stored[SCRAM_HASH_MAX_LEN];
	unsigned char server[SCRAM_HASH_MAX_LEN];
	enum scram_error err = SCRAM_OK;
	const char *error;
	char *prepped;

	if (!scram_cred_valid(cred))
		return SCRAM_ERR_STATE;
	/* A password SASLprep refuses can match no stored one. */
	if (scram_saslprep(password, &prepped, &error) < 0)
		return SCRAM_ERR_PROOF;
	if (scram_pbkdf2(cred->hash, prepped, cred->salt, cred->salt_len,
			 cred->iterations, salted) < 0 ||
	    scram_keys_from_salted(cred->hash, salted, stored, server) < 0)
		err = SCRAM_ERR_INTERNAL;
	else if (CRYPTO_memcmp(stored, cred->stored_key,
			       scram_hash_len(cred->hash)) != 0)
		err = SCRAM_ERR_PROOF;
	scram_free_secret(&prepped);
	sodium_memzero(salted, sizeof(salted));
	sodium_memzero(server, sizeof(server));
	return err;
}

void scram_plain_clear(struct scram_plain *plain)
{
	if (plain->password != NULL)
		sodium_memzero(plain->password, strlen(plain->password));
	plain->password = NULL;
}

/*
 * scram.h - server side of SASL SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802,
 * RFC 7677), their -PLUS variants with tls-exporter (RFC 9266) and
 * tls-server-end-point (RFC 5929) channel binding, and SASL PLAIN
 * (RFC 4616) checked against the same stored SCRAM credentials, so an
 * account stores only salt, iteration count, StoredKey and ServerKey.
 * Failure policy: nothing here logs; every failure is an enum scram_error
 * that the SASL layer maps with scram_error_condition() (table below) and
 * logs once at info (client input) or error (SCRAM_ERR_STATE/INTERNAL).
 */
#ifndef XMPPD_SCRAM_H
#define XMPPD_SCRAM_H

#include <stdbool.h>
#include <stddef.h>

#include "arena.h"

enum scram_hash {
	SCRAM_HASH_SHA1 = 0,
	SCRAM_HASH_SHA256,
};

#define SCRAM_HASH_MAX_LEN 32           /* SHA-256 digest */
#define SCRAM_SALT_MAX_LEN 64
#define SCRAM_SALT_DEFAULT_LEN 16       /* for new credentials */
#define SCRAM_ITERATIONS_MIN 4096       /* for new credentials (RFC 7677) */
#define SCRAM_ITERATIONS_MAX 10000000   /* refuse absurd stored counts */
#define SCRAM_NAME_MAX 1023             /* username/authcid: a localpart */
#define SCRAM_AUTHZID_MAX 3071          /* a full JID */
#define SCRAM_PASSWORD_MAX 1023
#define SCRAM_MESSAGE_MAX 8192          /* one decoded SASL message */
/* The client's nonce (r= of client-first): RFC 5802 sets no bound; ours
 * keeps server-first and client-final, which repeat it, well inside
 * SCRAM_MESSAGE_MAX.  Longer is SCRAM_ERR_MALFORMED. */
#define SCRAM_NONCE_MAX 1024

/* Channel binding types; cb_offered below is a mask of these. */
enum scram_cb {
	SCRAM_CB_NONE = 0,                      /* gs2 flag 'n' or 'y' */
	SCRAM_CB_TLS_EXPORTER = 1 << 0,         /* RFC 9266, TLS 1.3 */
	SCRAM_CB_TLS_SERVER_END_POINT = 1 << 1, /* RFC 5929 */
};

/*
 * Errors, with the RFC 6120 section 6.5 condition each maps to:
 *   SCRAM_ERR_MALFORMED     malformed-request  message syntax, size (over
 *                                              SCRAM_MESSAGE_MAX), NULs,
 *                                              nonce over SCRAM_NONCE_MAX
 *   SCRAM_ERR_BASE64        incorrect-encoding c= or p= not strict base64
 *   SCRAM_ERR_EXTENSION     malformed-request  mandatory extension (m=)
 *   SCRAM_ERR_USERNAME      malformed-request  n=/authcid: bad =XX escape,
 *                                              empty, too long, not UTF-8
 *   SCRAM_ERR_AUTHZID       invalid-authzid    a=/authzid: same checks
 *   SCRAM_ERR_PASSWORD      malformed-request  PLAIN passwd too long or
 *                                              not UTF-8
 *   SCRAM_ERR_CB_FLAG       malformed-request  'p' with a non-PLUS
 *                                              mechanism, 'n'/'y' with -PLUS
 *   SCRAM_ERR_CB_TYPE       malformed-request  cb-name not one we offered
 *   SCRAM_ERR_CB_DOWNGRADE  not-authorized     'y' although we offered
 *                                              -PLUS (a downgrade attack)
 *   SCRAM_ERR_CB_MISMATCH   not-authorized     c= is not gs2-header+cb-data
 *   SCRAM_ERR_NONCE         not-authorized     r= is not our nonce
 *   SCRAM_ERR_PROOF         not-authorized     wrong ClientProof/password
 *   SCRAM_ERR_STATE         temporary-auth-failure  our bug: call order
 *   SCRAM_ERR_NO_MEMORY     temporary-auth-failure  (or resource-constraint)
 *   SCRAM_ERR_INTERNAL      temporary-auth-failure  OpenSSL/libsodium failed
 * Whether an authzid the client may use is a policy check for the caller
 * (invalid-authzid too); so is account-disabled.
 */
enum scram_error {
	SCRAM_OK = 0,
	SCRAM_ERR_MALFORMED,
	SCRAM_ERR_BASE64,
	SCRAM_ERR_EXTENSION,
	SCRAM_ERR_USERNAME,
	SCRAM_ERR_AUTHZID,
	SCRAM_ERR_PASSWORD,
	SCRAM_ERR_CB_FLAG,
	SCRAM_ERR_CB_TYPE,
	SCRAM_ERR_CB_DOWNGRADE,
	SCRAM_ERR_CB_MISMATCH,
	SCRAM_ERR_NONCE,
	SCRAM_ERR_PROOF,
	SCRAM_ERR_STATE,
	SCRAM_ERR_NO_MEMORY,
	SCRAM_ERR_INTERNAL,
};

/* RFC 6120 condition element name, e.g. "malformed-request". */
const char *scram_error_condition(enum scram_error err);
/* Short English reason for logs and <text/>. */
const char *scram_error_str(enum scram_error err);

/* What an account stores for one hash: never the password. */
struct scram_credentials {
	enum scram_hash hash;
	unsigned int iterations;
	size_t salt_len;
	unsigned char salt[SCRAM_SALT_MAX_LEN];
	unsigned char stored_key[SCRAM_HASH_MAX_LEN];   /* H(ClientKey) */
	unsigned char server_key[SCRAM_HASH_MAX_LEN];   /* HMAC(SP, "Server Key") */
};

size_t scram_hash_len(enum scram_hash hash);
/* "SCRAM-SHA-1", "SCRAM-SHA-256-PLUS", ...: 0, or -1 if not SCRAM. */
int scram_mech_parse(const char *name, enum scram_hash *hash_r, bool *plus_r);
const char *scram_mech_name(enum scram_hash hash, bool plus);

/* SaltedPassword := Hi(SASLprep(password), salt, i), PBKDF2-HMAC;
 * out gets scram_hash_len(hash) bytes.  0, or -1 with *error_r. */
int scram_salted_password(enum scram_hash hash, const char *password,
			  const unsigned char *salt, size_t salt_len,
			  unsigned int iterations, unsigned char *out,
			  const char **error_r);
/* StoredKey := H(HMAC(SP, "Client Key")), ServerKey := HMAC(SP, "Server
 * Key"); each output gets scram_hash_len(hash) bytes.  0 or -1. */
int scram_keys_from_salted(enum scram_hash hash, const unsigned char *salted,
			   unsigned char *stored_key_r,
			   unsigned char *server_key_r);
/* Both steps above. */
int scram_derive(enum scram_hash hash, const char *password,
		 const unsigned char *salt, size_t salt_len,
		 unsigned int iterations, unsigned char *stored_key_r,
		 unsigned char *server_key_r, const char **error_r);
/* Fresh credentials with a random SCRAM_SALT_DEFAULT_LEN salt;
 * iterations must be at least SCRAM_ITERATIONS_MIN. */
int scram_credentials_new(enum scram_hash hash, const char *password,
			  unsigned int iterations,
			  struct scram_credentials *cred_r,
			  const char **error_r);
/* Stand-in credentials for an unknown user: the salt is HMAC-SHA-256(
 * secret, username), stable across attempts, and the keys are random, so
 * the exchange runs to the end and fails with SCRAM_ERR_PROOF without
 * telling the client whether the account exists.  0 or -1. */
int scram_credentials_unknown(enum scram_hash hash, const char *username,
			      const unsigned char *secret, size_t secret_len,
			      unsigned int iterations,
			      struct scram_credentials *cred_r);

/* The mechanism the client chose and what this connection can bind. */
struct scram_params {
	enum scram_hash hash;
	bool plus;                  /* SCRAM-*-PLUS was selected */
	unsigned int cb_offered;    /* mask of enum scram_cb; nonzero means
				       we advertised the -PLUS mechanisms */
};

enum scram_state {
	SCRAM_STATE_INIT = 0,
	SCRAM_STATE_STARTED,        /* client-first parsed, need credentials */
	SCRAM_STATE_CHALLENGED,     /* server-first sent */
	SCRAM_STATE_DONE,           /* proof verified */
	SCRAM_STATE_FAILED,         /* any error: every later call fails */
};

/*
 * One exchange.  Strings live in the arena given to scram_server_start()
 * (the connection arena), which must outlive the exchange.  The public
 * fields are valid after a successful scram_server_start().
 */
struct scram_server {
	enum scram_state state;
	enum scram_cb cb;           /* binding the client chose ('p=') */
	const char *username;       /* n=, =2C/=3D decoded, UTF-8, not
				       prepared: the caller applies Nodeprep */
	const char *authzid;        /* a= decoded, or NULL when absent */

	/* private to scram.c */
	struct arena *arena;
	struct scram_params params;
	char gs2_flag;              /* 'n', 'y' or 'p' */
	const char *gs2_header;     /* "n,,", "p=tls-exporter,a=x," ... */
	size_t gs2_len;
	const char *first_bare;     /* client-first-message-bare */
	const char *nonce;          /* client nonce, then client+server */
	const char *server_first;
	unsigned char stored_key[SCRAM_HASH_MAX_LEN];
	unsigned char server_key[SCRAM_HASH_MAX_LEN];
};

/* Parse the client-first-message (already base64-decoded, len bytes,
 * need not be NUL-terminated) and check the gs2 channel binding flag
 * against params.  Then look up credentials for s->username. */
enum scram_error scram_server_start(struct scram_server *s, struct arena *a,
				    const struct scram_params *params,
				    const char *msg, size_t len);
/* Build the server-first-message with a fresh random nonce.  cred->hash
 * must be params.hash.  *msg_r is NUL-terminated, in the arena. */
enum scram_error scram_server_first(struct scram_server *s,
				    const struct scram_credentials *cred,
				    const char **msg_r, size_t *len_r);
/* Tests only: as above with a fixed server nonce (printable, no ','). */
enum scram_error scram_server_first_with_nonce(
	struct scram_server *s, const struct scram_credentials *cred,
	const char *server_nonce, const char **msg_r, size_t *len_r);
/* Verify the client-final-message.  cb_data is the channel binding data
 * of the type in s->cb (RFC 9266 exporter: 32 bytes of keying material
 * labelled "EXPORTER-Channel-Binding"; RFC 5929: the certificate hash),
 * NULL/0 when s->cb is SCRAM_CB_NONE.  On SCRAM_OK, *msg_r is the
 * server-final-message "v=..." for <success/>. */
enum scram_error scram_server_final(struct scram_server *s,
				    const void *cb_data, size_t cb_len,
				    const char *msg, size_t len,
				    const char **msg_r, size_t *len_r);
/* Wipe the keys; the arena strings go with the arena. */
void scram_server_clear(struct scram_server *s);

/* SASL PLAIN: [authzid] NUL authcid NUL passwd (RFC 4616). */
struct scram_plain {
	const char *authzid;        /* NULL when empty */
	const char *authcid;        /* not prepared: the caller applies Nodeprep */
	char *password;             /* wiped by scram_plain_clear() */
};

enum scram_error scram_plain_parse(struct arena *a, const char *msg,
				   size_t len, struct scram_plain *plain_r);
/* SCRAM_OK if SASLprep(password) derives cred->stored_key (constant-time
 * compare), else SCRAM_ERR_PROOF (or SCRAM_ERR_INTERNAL). */
enum scram_error scram_plain_verify(const char *password,
				    const struct scram_credentials *cred);
void scram_plain_clear(struct scram_plain *plain);

#endif

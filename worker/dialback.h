/*
 * dialback.h - server dialback's keys and elements (XEP-0220, keys per
 * XEP-0185), shared by the incoming side (s2s_in.c: the receiving and
 * the authoritative server) and the outgoing side (s2s_out.c: the
 * originating server).  Failure policy: a key that cannot be made is
 * an error to the caller (-1), never a weaker key; an element that does
 * not parse is refused with the reason, the caller answers the peer.
 */
#ifndef XMPPD_DIALBACK_H
#define XMPPD_DIALBACK_H

#include <stddef.h>

struct xml_node;
struct arena;

/* A key is the hex of an HMAC-SHA256. */
#define DIALBACK_KEY_HEX 64
/* Longest key we accept from a peer (other servers' keys are theirs to
 * make; XEP-0185's are 64, a few servers use longer ones). */
#define DIALBACK_KEY_MAX 128
/* Longest stream id we accept in <db:verify id=.../>. */
#define DIALBACK_ID_MAX 63
/* Longest domain we handle (a DNS name: 253). */
#define DIALBACK_DOMAIN_MAX 255

/* Master, before forking (and once in a worker started alone): the
 * secret behind every key, the same in all workers so that any of them
 * can answer for a key another made. */
void dialback_init_secret(void);
/* The key from the cluster's shared secret (lib/secret.h) instead: a
 * key one node sent verifies on any other. */
void dialback_seed_secret(const unsigned char key[32]);

/* XEP-0185: hex(HMAC-SHA256(hex(SHA256(secret)), "R O ID")) into out
 * (DIALBACK_KEY_HEX + 1 bytes); 0 or -1. */
int dialback_key(const char *receiving, const char *originating,
		 const char *stream_id, char *out);
/* 1 when key is the one we would make for (R, O, ID), in constant time;
 * 0 otherwise. */
int dialback_key_ok(const char *receiving, const char *originating,
		    const char *stream_id, const char *key);
/* The same, with the secret given (tests: the XEP's example). */
int dialback_key_with(const char *secret, const char *receiving,
		      const char *originating, const char *stream_id,
		      char *out);

enum dialback_kind {
	DIALBACK_RESULT = 1,    /* <db:result/> */
	DIALBACK_VERIFY,        /* <db:verify/> */
};

enum dialback_type {
	DIALBACK_REQUEST = 0,   /* no type: a request carrying a key */
	DIALBACK_VALID,
	DIALBACK_INVALID,
	DIALBACK_ERROR,
};

struct dialback_elem {
	enum dialback_kind kind;
	enum dialback_type type;
	const char *from;       /* prepared domain (arena) */
	const char *to;         /* prepared domain (arena) */
	const char *id;         /* <db:verify/>: the stream id; else NULL */
	const char *key;        /* request: the key (trimmed); else NULL */
	const char *error;      /* type error: the condition's name, or NULL */
};

/* Read a jabber:server:dialback element (n) into out, strings in a:
 * from and to are domains (RFC 7622, prepared), a request has a key of
 * at most DIALBACK_KEY_MAX printable ASCII characters, a verify has an
 * id.  0, or -1 with *error_r (a one-line reason) when it is not one. */
int dialback_parse(struct arena *a, const struct xml_node *n,
		   struct dialback_elem *out, const char **error_r);

#endif

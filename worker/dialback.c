/*
 * dialback.c - server dialback keys (XEP-0185) and element parsing
 * (XEP-0220) for both sides of s2s (dialback.h).
 */
#include "dialback.h"
#include "s2s_int.h"
#include "xml.h"
#include "jid.h"
#include "hmac.h"
#include "arena.h"
#include "secret.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define DIALBACK_NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"

static unsigned char dialback_secret[32];
static int dialback_secret_ready;

void dialback_init_secret(void)
{
	randombytes_buf(dialback_secret, sizeof(dialback_secret));
	dialback_secret_ready = 1;
}

void dialback_seed_secret(const unsigned char key[SECRET_KEY_BYTES])
{
	secret_derive(key, "xmppd dialback v1", dialback_secret,
		      sizeof(dialback_secret));
	dialback_secret_ready = 1;
}

static int dialback_hmac(const void *secret, size_t secret_len,
			 const char *receiving, const char *originating,
			 const char *stream_id, char *out)
{
	unsigned char digest[crypto_hash_sha256_BYTES];
	char key_hex[2 * crypto_hash_sha256_BYTES + 1];
	unsigned char mac[32];
	char text[3 * (DIALBACK_DOMAIN_MAX + 1) + DIALBACK_ID_MAX + 1];
	int n = snprintf(text, sizeof(text), "%s %s %s", receiving,
			 originating, stream_id);
	if (n < 0 || (size_t)n >= sizeof(text))
		return -1;
	crypto_hash_sha256(digest, secret, secret_len);
	sodium_bin2hex(key_hex, sizeof(key_hex), digest, sizeof(digest));
	if (hmac("SHA256", key_hex, strlen(key_hex), text, (size_t)n, mac,
		 sizeof(mac)) != (int)sizeof(mac))
		return -1;
	sodium_bin2hex(out, DIALBACK_KEY_HEX + 1, mac, sizeof(mac));
	sodium_memzero(key_hex, sizeof(key_hex));
	return 0;
}

int dialback_key_with(const char *secret, const char *receiving,
		      const char *originating, const char *stream_id,
		      char *out)
{
	return dialback_hmac(secret, strlen(secret), receiving, originating,
			     stream_id, out);
}

int dialback_key(const char *receiving, const char *originating,
		 const char *stream_id, char *out)
{
	if (!dialback_secret_ready)
		dialback_init_secret();
	return dialback_hmac(dialback_secret, sizeof(dialback_secret),
			     receiving, originating, stream_id, out);
}

int dialback_key_ok(const char *receiving, const char *originating,
		    const char *stream_id, const char *key)
{
	char want[DIALBACK_KEY_HEX + 1];
	if (strlen(key) != DIALBACK_KEY_HEX ||
	    dialback_key(receiving, originating, stream_id, want) < 0)
		return 0;
	return sodium_memcmp(want, key, DIALBACK_KEY_HEX) == 0;
}

/* A domain JID (no localpart, no resource), prepared. */
static const char *dialback_domain(struct arena *a, const char *s)
{
	struct jid j;
	const char *error;
	if (s == NULL || strlen(s) > DIALBACK_DOMAIN_MAX ||
	    jid_parse(a, s, &j, &error) < 0 || j.local != NULL ||
	    j.resource != NULL)
		return NULL;
	return j.domain;
}

/* XML whitespace around the key is not part of it. */
static const char *dialback_trim(struct arena *a, const char *s)
{
	size_t len;
	while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
		s++;
	len = strlen(s);
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' ||
			   s[len - 1] == '\r' || s[len - 1] == '\n'))
		len--;
	return arena_strndup(a, s, len);
}

int dialback_parse(struct arena *a, const struct xml_node *n,
		   struct dialback_elem *out, const char **error_r)
{
	const char *type;
	memset(out, 0, sizeof(*out));
	if (n == NULL || n->name == NULL || strcmp(n->ns, NS_DIALBACK) != 0) {
		*error_r = "not a dialback element";
		return -1;
	}
	if (strcmp(n->name, "result") == 0)
		out->kind = DIALBACK_RESULT;
	else if (strcmp(n->name, "verify") == 0)
		out->kind = DIALBACK_VERIFY;
	else {
		*error_r = "unknown dialback element";
		return -1;
	}
	out->from = dialback_domain(a, xml_attr(n, "from"));
	out->to = dialback_domain(a, xml_attr(n, "to"));
	if (out->from == NULL || out->to == NULL) {
		*error_r = "'from' or 'to' missing or not a domain";
		return -1;
	}
	type = xml_attr(n, "type");
	if (type == NULL)
		out->type = DIALBACK_REQUEST;
	else if (strcmp(type, "valid") == 0)
		out->type = DIALBACK_VALID;
	else if (strcmp(type, "invalid") == 0)
		out->type = DIALBACK_INVALID;
	else if (strcmp(type, "error") == 0)
		out->type = DIALBACK_ERROR;
	else {
		*error_r = "unknown dialback type";
		return -1;
	}
	if (out->kind == DIALBACK_VERIFY) {
		out->id = xml_attr(n, "id");
		if (out->id == NULL || out->id[0] == '\0' ||
		    strlen(out->id) > DIALBACK_ID_MAX) {
			*error_r = "<db:verify/> without a usable 'id'";
			return -1;
		}
	}
	if (out->type == DIALBACK_ERROR) {
		const struct xml_node *e = xml_child(n, NULL, "error");
		const struct xml_node *cond = NULL;
		if (e != NULL)
			for (cond = xml_first_element(e); cond != NULL &&
			     strcmp(cond->ns, DIALBACK_NS_STANZAS) != 0;
			     cond = xml_next_element(cond))
				;
		out->error = cond != NULL ? cond->name : NULL;
		return 0;
	}
	if (out->type != DIALBACK_REQUEST)
		return 0;
	char *text = xml_text(a, n);
	if (text == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	out->key = dialback_trim(a, text);
	if (out->key == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	size_t len = strlen(out->key);
	if (len == 0 || len > DIALBACK_KEY_MAX) {
		*error_r = "dialback key empty or too long";
		return -1;
	}
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)out->key[i] <= ' ' ||
		    (unsigned char)out->key[i] >= 0x7f) {
			*error_r = "dialback key not printable ASCII";
			return -1;
		}
	return 0;
}

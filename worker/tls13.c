/*
 * tls13.c - the TLS 1.3 record layer of established connections (see
 * tls13.h for why).  Keys come from the traffic secrets by
 * HKDF-Expand-Label (RFC 8446 section 7.1, 7.3); records are opened in
 * place in the caller's read buffer and sealed into one scratch buffer
 * per process, so an idle connection holds only its keys.  KeyUpdate is
 * honoured both ways (section 4.6.3), but only tls.max_key_updates in a
 * row without application data; we update our own sending key every
 * tls.records_per_key records, whatever the record (section 5.5), and a
 * sequence number never wraps (section 5.3).  The AEADs are OpenSSL's
 * (EVP), one context per suite per process, re-keyed per record.
 * Failure policy: a record that fails to authenticate or breaks the
 * protocol gets its fatal alert (section 6.2), written after any sealed
 * bytes still waiting, and ends that connection; close_notify and
 * user_canceled (section 6.1) end it quietly.
 */
#include "tls13.h"
#include "tls.h"
#include "worker.h"
#include "log.h"
#include "hmac.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TLS13_TAG 16
#define TLS13_MAX_PLAIN 16384
/* Per record we add: header, inner content type, tag. */
#define TLS13_OVERHEAD (5 + 1 + TLS13_TAG)
/* Our own KeyUpdate record, sealed ahead of a record when it is due. */
#define TLS13_KU_RECORD (5 + TLS13_OVERHEAD)
/* Room for records sealed per write(2) (three full ones plus a
 * KeyUpdate fit); a partial write keeps the rest in ctout. */
#define TLS13_SCRATCH_RECORDS 4
/* The longest record we accept: inner plaintext 2^14 + 1 (section 5.4). */
#define TLS13_MAX_IN (5 + TLS13_MAX_PLAIN + 1 + TLS13_TAG)
/* A peer that never reads cannot make us queue more than this. */
#define TLS13_OUT_MAX (1u << 20)

enum { ALERT_CLOSE_NOTIFY = 0, ALERT_UNEXPECTED_MESSAGE = 10,
       ALERT_BAD_RECORD_MAC = 20, ALERT_RECORD_OVERFLOW = 22,
       ALERT_ILLEGAL_PARAMETER = 47, ALERT_DECODE_ERROR = 50,
       ALERT_INTERNAL_ERROR = 80, ALERT_USER_CANCELED = 90 };
enum { CT_ALERT = 21, CT_HANDSHAKE = 22, CT_APPLICATION_DATA = 23 };
enum { HS_KEY_UPDATE = 24 };

enum tls13_suite { SUITE_AES128, SUITE_AES256, SUITE_CHACHA, SUITE_COUNT };

struct tls13_dir {
	unsigned char secret[48];
	unsigned char key[32];
	unsigned char iv[12];
	uint64_t seq;
};

struct tls13 {
	uint8_t have_client, have_server;   /* secrets seen (key log) */
	uint8_t suite;
	uint8_t suite_ready;    /* keys derived: the record layer is ours */
	uint8_t hash_len, key_len;
	uint8_t more;           /* last read filled the buffer */
	uint8_t eof;            /* close_notify or an alert, either way */
	uint8_t alerted;        /* we sent a fatal alert: no close_notify */
	uint8_t peer_alerted;   /* the client sent one: no close_notify */
	uint8_t hs_len;         /* bytes of a KeyUpdate split across records */
	unsigned char hs[5];
	uint8_t cb_end_point_len;
	uint8_t key_updates;    /* the client's, in a row without data */
	uint8_t max_key_updates;        /* tls.max_key_updates */
	uint32_t records_per_key;       /* tls.records_per_key */
	struct tls13_dir rd, wr;
	uint8_t have_exporter;
	unsigned char exporter_secret[48];  /* for tls-exporter, on demand */
	unsigned char cb_end_point[64];
	char *carry;            /* an incomplete record from the last read: */
	size_t carry_len;       /* exactly its bytes, freed once complete */
	struct buf ctout;       /* sealed, not yet written */
};

static const struct {
	const char *name;       /* OpenSSL fetch name */
	uint16_t id;            /* RFC 8446 B.4 */
	uint8_t key_len, hash_len;
} suites[SUITE_COUNT] = {
	{ "AES-128-GCM", 0x1301, 16, 32 },
	{ "AES-256-GCM", 0x1302, 32, 48 },
	{ "ChaCha20-Poly1305", 0x1303, 32, 32 },
};

static EVP_CIPHER_CTX *aead[SUITE_COUNT];
static unsigned char scratch[TLS13_SCRATCH_RECORDS *
			     (TLS13_MAX_PLAIN + TLS13_OVERHEAD)];

static EVP_CIPHER_CTX *tls13_aead(unsigned suite)
{
	if (aead[suite] != NULL)
		return aead[suite];
	EVP_CIPHER *cipher = EVP_CIPHER_fetch(NULL, suites[suite].name, NULL);
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	if (cipher == NULL || ctx == NULL ||
	    EVP_CipherInit_ex2(ctx, cipher, NULL, NULL, 1, NULL) != 1) {
		EVP_CIPHER_CTX_free(ctx);
		ctx = NULL;
	}
	EVP_CIPHER_free(cipher);    /* the context keeps its reference */
	aead[suite] = ctx;
	return ctx;
}

static const EVP_MD *tls13_md(const struct tls13 *t)
{
	return t->hash_len == 48 ? EVP_sha384() : EVP_sha256();
}

/* HKDF-Expand-Label(secret, label, context, len) for len <= hash length:
 * a single HMAC block (RFC 5869 T(1)). */
static int tls13_expand_ctx(const struct tls13 *t, const unsigned char *secret,
			    const char *label, const unsigned char *context,
			    size_t clen, unsigned char *out, size_t len)
{
	unsigned char info[2 + 1 + 6 + 32 + 1 + 48 + 1], md[EVP_MAX_MD_SIZE];
	size_t llen = strlen(label), n = 0;
	if (llen > 32 || clen > 48 || len > t->hash_len)
		return -1;
	info[n++] = (unsigned char)(len >> 8);
	info[n++] = (unsigned char)len;
	info[n++] = (unsigned char)(6 + llen);
	memcpy(info + n, "tls13 ", 6);
	memcpy(info + n + 6, label, llen);
	n += 6 + llen;
	info[n++] = (unsigned char)clen;
	if (clen > 0)
		memcpy(info + n, context, clen);
	n += clen;
	info[n++] = 1;          /* T(1) */
	int mdlen = hmac(t->hash_len == 48 ? "SHA384" : "SHA256", secret,
			 t->hash_len, info, n, md, sizeof(md));
	if (mdlen < 0 || (size_t)mdlen < len)
		return -1;
	memcpy(out, md, len);
	OPENSSL_cleanse(md, sizeof(md));
	return 0;
}

static int tls13_expand(const struct tls13 *t, const unsigned char *secret,
			const char *label, unsigned char *out, size_t len)
{
	return tls13_expand_ctx(t, secret, label, NULL, 0, out, len);
}

static int tls13_derive(const struct tls13 *t, struct tls13_dir *d)
{
	d->seq = 0;
	return tls13_expand(t, d->secret, "key", d->key, t->key_len) < 0 ||
	       tls13_expand(t, d->secret, "iv", d->iv, 12) < 0 ? -1 : 0;
}

/* Section 7.2: application_traffic_secret_N+1. */
static int tls13_next_key(const struct tls13 *t, struct tls13_dir *d)
{
	unsigned char next[48];
	if (tls13_expand(t, d->secret, "traffic upd", next, t->hash_len) < 0)
		return -1;
	memcpy(d->secret, next, t->hash_len);
	OPENSSL_cleanse(next, sizeof(next));
	return tls13_derive(t, d);
}

static void tls13_nonce(const struct tls13_dir *d, unsigned char nonce[12])
{
	memcpy(nonce, d->iv, 12);
	for (int i = 0; i < 8; i++)
		nonce[4 + i] ^= (unsigned char)(d->seq >> (56 - 8 * i));
}

/* Seal one record of `type` around in[len] into out (len + overhead). */
static int tls13_seal(struct tls13 *t, unsigned type, const void *in,
		      size_t len, unsigned char *out)
{
	EVP_CIPHER_CTX *ctx = tls13_aead(t->suite);
	size_t clen = len + 1 + TLS13_TAG;
	unsigned char nonce[12], ct = (unsigned char)type;
	int n;
	if (t->wr.seq == UINT64_MAX)    /* section 5.3: never wrap */
		return -1;
	out[0] = CT_APPLICATION_DATA;
	out[1] = 3;
	out[2] = 3;
	out[3] = (unsigned char)(clen >> 8);
	out[4] = (unsigned char)clen;
	tls13_nonce(&t->wr, nonce);
	if (ctx == NULL ||
	    EVP_CipherInit_ex2(ctx, NULL, t->wr.key, nonce, 1, NULL) != 1 ||
	    EVP_CipherUpdate(ctx, NULL, &n, out, 5) != 1 ||
	    (len > 0 && EVP_CipherUpdate(ctx, out + 5, &n, in, (int)len) != 1) ||
	    EVP_CipherUpdate(ctx, out + 5 + len, &n, &ct, 1) != 1 ||
	    EVP_CipherFinal_ex(ctx, out + 5 + len + 1, &n) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TLS13_TAG,
				out + 5 + len + 1) != 1)
		return -1;
	t->wr.seq++;
	return 0;
}

/* Open the record at rec (header included, clen bytes of ciphertext)
 * in place: the inner plaintext is at rec + 5.  0 or -1 (bad MAC). */
static int tls13_open(struct tls13 *t, unsigned char *rec, size_t clen)
{
	EVP_CIPHER_CTX *ctx = tls13_aead(t->suite);
	unsigned char nonce[12];
	int n, m;
	if (t->rd.seq == UINT64_MAX)    /* section 5.3: never wrap */
		return -1;
	tls13_nonce(&t->rd, nonce);
	if (ctx == NULL ||
	    EVP_CipherInit_ex2(ctx, NULL, t->rd.key, nonce, 0, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TLS13_TAG,
				rec + 5 + clen - TLS13_TAG) != 1 ||
	    EVP_CipherUpdate(ctx, NULL, &n, rec, 5) != 1 ||
	    EVP_CipherUpdate(ctx, rec + 5, &n, rec + 5,
			     (int)(clen - TLS13_TAG)) != 1 ||
	    EVP_CipherFinal_ex(ctx, rec + 5 + n, &m) != 1)
		return -1;
	t->rd.seq++;
	return 0;
}

/* Seal a KeyUpdate under the current sending key, then switch keys. */
static int tls13_send_key_update(struct tls13 *t, unsigned char *out)
{
	static const unsigned char msg[5] = { HS_KEY_UPDATE, 0, 0, 1, 0 };
	if (tls13_seal(t, CT_HANDSHAKE, msg, sizeof(msg), out) < 0)
		return -1;
	return tls13_next_key(t, &t->wr);
}

/* Every record but a KeyUpdate reply goes through here: our own
 * KeyUpdate first once the key has sealed records_per_key records
 * (section 5.5), alerts included.  out has room for len +
 * TLS13_OVERHEAD + TLS13_KU_RECORD; returns the bytes sealed or -1. */
static ssize_t tls13_seal_next(struct tls13 *t, unsigned type,
			       const void *in, size_t len, unsigned char *out)
{
	size_t n = 0;
	if (t->wr.seq >= t->records_per_key) {
		if (tls13_send_key_update(t, out) < 0)
			return -1;
		n = TLS13_KU_RECORD;
	}
	if (tls13_seal(t, type, in, len, out + n) < 0)
		return -1;
	return (ssize_t)(n + len + TLS13_OVERHEAD);
}

/* Queue a record of ours after what is still waiting, and try to write
 * (best effort: used for alerts only, which must follow those bytes for
 * the peer to read them). */
static void tls13_send_alert(struct conn *c, unsigned level, unsigned desc)
{
	struct tls13 *t = c->t13;
	unsigned char alert[2] = { (unsigned char)level, (unsigned char)desc };
	unsigned char rec[2 + TLS13_OVERHEAD + TLS13_KU_RECORD];
	ssize_t n = tls13_seal_next(t, CT_ALERT, alert, 2, rec);
	if (n < 0 || buf_append(&t->ctout, rec, (size_t)n) < 0)
		return;
	if (buf_write_fd(&t->ctout, c->fd) < 0)
		buf_consume(&t->ctout, buf_used(&t->ctout));
	if (buf_used(&t->ctout) == 0)
		buf_shrink(&t->ctout);
}

/* A fatal alert, after the sealed bytes that still wait (the peer reads
 * records in order): when some remain, tls_read() lets the connection
 * linger until they and the alert are written.  No record after it. */
static void tls13_alert(struct conn *c, unsigned desc, const char *why)
{
	struct tls13 *t = c->t13;
	log_info("c%u %s: TLS: %s: sending alert %u", c->id, c->peer, why,
		 desc);
	t->eof = 1;
	if (t->alerted)
		return;
	t->alerted = 1;
	tls13_send_alert(c, 2, desc);
}

/* Post-handshake messages from the client: only KeyUpdate is ours to
 * take (we ask for no certificate, and tickets go the other way).  Its
 * five bytes may come split over records (section 5.1), but it must end
 * its record, since the key changes after it.  0 or -1 (alert sent). */
static int tls13_handshake_msg(struct conn *c, const unsigned char *p,
			       size_t len)
{
	struct tls13 *t = c->t13;
	if (len == 0) {
		tls13_alert(c, ALERT_UNEXPECTED_MESSAGE,
			    "empty handshake record");
		return -1;
	}
	while (len > 0) {
		size_t take = sizeof(t->hs) - t->hs_len;
		if (take > len)
			take = len;
		memcpy(t->hs + t->hs_len, p, take);
		t->hs_len = (uint8_t)(t->hs_len + take);
		p += take;
		len -= take;
		if (t->hs[0] != HS_KEY_UPDATE) {
			tls13_alert(c, ALERT_UNEXPECTED_MESSAGE,
				    "handshake message after the handshake");
			return -1;
		}
		if (t->hs_len >= 4 &&
		    (t->hs[1] != 0 || t->hs[2] != 0 || t->hs[3] != 1)) {
			tls13_alert(c, ALERT_DECODE_ERROR, "bad KeyUpdate");
			return -1;
		}
		if (t->hs_len < sizeof(t->hs))
			return 0;       /* the rest comes in the next record */
		t->hs_len = 0;
		if (t->hs[4] > 1) {
			tls13_alert(c, ALERT_ILLEGAL_PARAMETER,
				    "bad KeyUpdate request_update");
			return -1;
		}
		if (len > 0) {
			tls13_alert(c, ALERT_UNEXPECTED_MESSAGE,
				    "KeyUpdate does not end its record");
			return -1;
		}
		/* Each costs a key derivation and maybe a reply: a client
		 * streaming them gets what BoringSSL gives (32 in a row). */
		if (t->key_updates >= t->max_key_updates) {
			tls13_alert(c, ALERT_UNEXPECTED_MESSAGE,
				    "too many KeyUpdates without data");
			return -1;
		}
		t->key_updates++;
		if (tls13_next_key(t, &t->rd) < 0) {
			tls13_alert(c, ALERT_INTERNAL_ERROR, "key update");
			return -1;
		}
		if (t->hs[4] == 1) {    /* update_requested: answer in kind */
			unsigned char rec[5 + TLS13_OVERHEAD];
			if (tls13_send_key_update(t, rec) < 0 ||
			    buf_append(&t->ctout, rec, sizeof(rec)) < 0) {
				tls13_alert(c, ALERT_INTERNAL_ERROR,
					    "key update");
				return -1;
			}
			conn_want_flush(c);
		}
		log_debug("c%u %s: TLS KeyUpdate%s", c->id, c->peer,
			  t->hs[4] ? " (update requested)" : "");
	}
	return 0;
}

/* One opened record's inner plaintext: application data moves to *out;
 * 0 go on, 1 stop (closed), -1 failed. */
static int tls13_inner(struct conn *c, unsigned char *p, size_t len,
		       char *buf, size_t *out)
{
	struct tls13 *t = c->t13;
	while (len > 0 && p[len - 1] == 0)      /* padding */
		len--;
	if (len == 0) {
		tls13_alert(c, ALERT_UNEXPECTED_MESSAGE, "no content type");
		return -1;
	}
	unsigned type = p[--len];
	if (t->hs_len > 0 && type != CT_HANDSHAKE) {
		tls13_alert(c, ALERT_UNEXPECTED_MESSAGE,
			    "record inside a split KeyUpdate");
		return -1;
	}
	switch (type) {
	case CT_APPLICATION_DATA:
		if (len > 0)
			t->key_updates = 0;
		memmove(buf + *out, p, len);
		*out += len;
		return 0;
	case CT_HANDSHAKE:
		return tls13_handshake_msg(c, p, len);
	case CT_ALERT:
		if (len == 0) {
			tls13_alert(c, ALERT_UNEXPECTED_MESSAGE, "empty alert");
			return -1;
		}
		if (len != 2) {
			tls13_alert(c, ALERT_DECODE_ERROR, "bad alert");
			return -1;
		}
		/* Section 6.1: close_notify and user_canceled are closure
		 * alerts; the client ends the connection, and we close it
		 * with our own close_notify (user_canceled "SHOULD be
		 * followed by close_notify": we need not wait for it).
		 * Anything else is an error alert (section 6). */
		if (p[1] == ALERT_CLOSE_NOTIFY) {
			log_debug("c%u %s: TLS close_notify", c->id, c->peer);
		} else if (p[1] == ALERT_USER_CANCELED) {
			log_info("c%u %s: TLS user_canceled from the client: "
				 "closing", c->id, c->peer);
		} else {
			log_info("c%u %s: TLS alert %u from the client",
				 c->id, c->peer, p[1]);
			t->peer_alerted = 1;
		}
		t->eof = 1;
		return 1;
	default:
		tls13_alert(c, ALERT_UNEXPECTED_MESSAGE, "bad content type");
		return -1;
	}
}

/* One read(2) per call, however many records it brings: a client that
 * streams records without application data (empty ones, KeyUpdates)
 * gets one pass per loop turn like everyone else. */
ssize_t tls13_read(struct conn *c, char *buf, size_t len)
{
	struct tls13 *t = c->t13;
	size_t have = 0, pos = 0, out = 0;
	if (t->eof)
		return -1;
	if (t->carry_len > 0) {
		memcpy(buf, t->carry, t->carry_len);
		have = t->carry_len;
		t->carry_len = 0;
	}
	ssize_t n = read(c->fd, buf + have, len - have);
	if (n < 0 && errno != EAGAIN && errno != EINTR) {
		log_debug("c%u %s: %m", c->id, c->peer);
		return -1;
	}
	if (n == 0) {
		log_debug("c%u %s: closed by peer", c->id, c->peer);
		return -1;
	}
	if (n < 0)
		n = 0;
	t->more = (size_t)n == len - have;
	have += (size_t)n;
	while (have - pos >= 5) {
		unsigned char *rec = (unsigned char *)buf + pos;
		size_t clen = (size_t)rec[3] << 8 | rec[4];
		if (rec[0] != CT_APPLICATION_DATA) {
			tls13_alert(c, ALERT_UNEXPECTED_MESSAGE,
				    "unprotected record");
			return -1;
		}
		if (5 + clen > TLS13_MAX_IN) {
			tls13_alert(c, ALERT_RECORD_OVERFLOW, "record too long");
			return -1;
		}
		if (clen < 1 + TLS13_TAG) {
			tls13_alert(c, ALERT_DECODE_ERROR, "record too short");
			return -1;
		}
		if (have - pos < 5 + clen)
			break;
		if (t->rd.seq == UINT64_MAX) {  /* section 5.3: no wrap */
			log_info("c%u %s: TLS read sequence number exhausted: "
				 "closing", c->id, c->peer);
			t->eof = 1;
			break;
		}
		if (tls13_open(t, rec, clen) < 0) {
			tls13_alert(c, ALERT_BAD_RECORD_MAC,
				    "record did not authenticate");
			return -1;
		}
		int r = tls13_inner(c, rec + 5, clen - TLS13_TAG, buf, &out);
		if (r < 0)
			return -1;
		pos += 5 + clen;
		if (r > 0)
			break;
	}
	if (!t->eof && have > pos) {
		/* Only what arrived of the record (its header may say 16 KB
		 * but a few bytes cost a few bytes), until it completes. */
		char *carry = realloc(t->carry, have - pos);
		if (carry == NULL) {
			log_error("c%u: no memory for a TLS record", c->id);
			return -1;
		}
		t->carry = carry;
		memcpy(t->carry, buf + pos, have - pos);
		t->carry_len = have - pos;
	} else if (t->carry != NULL) {
		free(t->carry);
		t->carry = NULL;
	}
	if (out > 0)
		return (ssize_t)out;
	return t->eof ? -1 : 0;
}

int tls13_flush(struct conn *c)
{
	struct tls13 *t = c->t13;
	if (t->alerted) {
		/* After our fatal alert only what was sealed before it goes
		 * out, then the connection closes (-1); c->out stays as it
		 * is for conn_close(). */
		if (buf_write_fd(&t->ctout, c->fd) < 0)
			return -1;
		return buf_used(&t->ctout) > 0 ? 0 : -1;
	}
	if (buf_used(&t->ctout) > 0) {
		if (buf_write_fd(&t->ctout, c->fd) < 0)
			return -1;
		if (buf_used(&t->ctout) > 0)
			return 0;
		buf_shrink(&t->ctout);
	}
	while (buf_used(&c->out) > 0) {
		size_t n = 0;
		while (buf_used(&c->out) > 0 &&
		       n + TLS13_MAX_PLAIN + TLS13_OVERHEAD + TLS13_KU_RECORD
		       <= sizeof(scratch)) {
			size_t take = buf_used(&c->out);
			if (take > TLS13_MAX_PLAIN)
				take = TLS13_MAX_PLAIN;
			ssize_t m = tls13_seal_next(t, CT_APPLICATION_DATA,
						    buf_head(&c->out), take,
						    scratch + n);
			if (m < 0)
				return -1;
			n += (size_t)m;
			buf_consume(&c->out, take);
		}
		ssize_t w = write(c->fd, scratch, n);
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return -1;
		if (w < 0)
			w = 0;
		if ((size_t)w < n) {
			if (buf_append(&t->ctout, scratch + w, n - (size_t)w) < 0)
				return -1;
			log_debug("c%u %s: TLS output waits for the socket",
				  c->id, c->peer);
			return 0;
		}
	}
	return 0;
}

int tls13_out_pending(const struct conn *c)
{
	return c->t13 != NULL && buf_used(&c->t13->ctout) > 0;
}

int tls13_alert_pending(const struct conn *c)
{
	return tls13_out_pending(c) && c->t13->alerted;
}

int tls13_more(const struct conn *c)
{
	return c->t13 != NULL && (c->t13->more || c->t13->eof);
}

int tls13_eof(const struct conn *c)
{
	return c->t13 != NULL && c->t13->eof;
}

static int tls13_hex(const char *s, unsigned char *out, size_t max,
		     uint8_t *len_r)
{
	size_t n = 0;
	for (; s[0] != '\0' && s[1] != '\0' && s[0] != ' '; s += 2) {
		int hi = OPENSSL_hexchar2int((unsigned char)s[0]);
		int lo = OPENSSL_hexchar2int((unsigned char)s[1]);
		if (hi < 0 || lo < 0 || n >= max)
			return -1;
		out[n++] = (unsigned char)(hi << 4 | lo);
	}
	*len_r = (uint8_t)n;
	return n == 32 || n == 48 ? 0 : -1;
}

static struct tls13 *tls13_new(void)
{
	struct tls13 *t = calloc(1, sizeof(*t));
	if (t != NULL)
		buf_init(&t->ctout, TLS13_OUT_MAX);
	return t;
}

void tls13_keylog(struct conn *c, const char *line)
{
	static const char client[] = "CLIENT_TRAFFIC_SECRET_0 ";
	static const char server[] = "SERVER_TRAFFIC_SECRET_0 ";
	static const char exporter[] = "EXPORTER_SECRET ";
	int is_client = strncmp(line, client, sizeof(client) - 1) == 0;
	int is_exporter = strncmp(line, exporter, sizeof(exporter) - 1) == 0;
	if (!is_client && !is_exporter &&
	    strncmp(line, server, sizeof(server) - 1) != 0)
		return;
	const char *secret = strchr(line + (is_exporter ? sizeof(exporter)
					    : sizeof(client)) - 1, ' ');
	if (secret == NULL)
		return;
	if (c->t13 == NULL && (c->t13 = tls13_new()) == NULL)
		return;
	struct tls13 *t = c->t13;
	uint8_t len = 0;
	if (is_exporter) {
		if (tls13_hex(secret + 1, t->exporter_secret,
			      sizeof(t->exporter_secret), &len) == 0)
			t->have_exporter = len;
		return;
	}
	struct tls13_dir *d = is_client ? &t->rd : &t->wr;
	if (tls13_hex(secret + 1, d->secret, sizeof(d->secret), &len) < 0)
		return;
	t->hash_len = len;
	if (is_client)
		t->have_client = 1;
	else
		t->have_server = 1;
}

/* The last step of a take-over: traffic keys from the secrets in t, and
 * the limits of cfg (so a reload applies to new connections). */
static int tls13_setup(struct tls13 *t, uint16_t suite_id,
		       const struct config *cfg)
{
	unsigned s;
	for (s = 0; s < SUITE_COUNT && suites[s].id != suite_id; s++)
		;
	if (s == SUITE_COUNT || suites[s].hash_len != t->hash_len ||
	    tls13_aead(s) == NULL)
		return -1;
	t->suite = (uint8_t)s;
	t->key_len = suites[s].key_len;
	if (tls13_derive(t, &t->rd) < 0 || tls13_derive(t, &t->wr) < 0)
		return -1;
	t->max_key_updates = (uint8_t)cfg->tls_max_key_updates;
	t->records_per_key = cfg->tls_records_per_key;
	t->suite_ready = 1;
	return 0;
}

int tls13_attach(struct conn *c, uint16_t suite_id,
		 const unsigned char *client_secret,
		 const unsigned char *server_secret, size_t secret_len,
		 const struct config *cfg)
{
	struct tls13 *t = c->t13 == NULL ? tls13_new() : NULL;
	if (t == NULL || (secret_len != 32 && secret_len != 48)) {
		free(t);
		return -1;
	}
	memcpy(t->rd.secret, client_secret, secret_len);
	memcpy(t->wr.secret, server_secret, secret_len);
	t->hash_len = (uint8_t)secret_len;
	t->have_client = t->have_server = 1;
	if (tls13_setup(t, suite_id, cfg) < 0) {
		buf_free(&t->ctout);
		free(t);
		return -1;
	}
	c->t13 = t;
	return 0;
}

void tls13_test_set_seq(struct conn *c, uint64_t rd, uint64_t wr)
{
	c->t13->rd.seq = rd;
	c->t13->wr.seq = wr;
}

int tls13_take_over(struct conn *c, SSL *ssl)
{
	struct tls13 *t = c->t13;
	const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);
	SSL_SESSION *sess = SSL_get_session(ssl);
	/* Both sequence numbers start at 0 only if OpenSSL sent no ticket
	 * and read nothing past Finished; a negotiated max_fragment_length
	 * (RFC 6066) would bind our record size: such connections stay. */
	if (t == NULL || !t->have_client || !t->have_server ||
	    SSL_version(ssl) != TLS1_3_VERSION || cipher == NULL ||
	    SSL_pending(ssl) > 0 || SSL_has_pending(ssl) ||
	    SSL_get_num_tickets(ssl) != 0 || sess == NULL ||
	    SSL_SESSION_get_max_fragment_length(sess) !=
	    TLSEXT_max_fragment_length_DISABLED)
		return 0;
	uint16_t id = (uint16_t)(SSL_CIPHER_get_id(cipher) & 0xffff);
	if (tls13_setup(t, id, c->w->cfg) < 0)
		return 0;
	if (t->have_exporter != t->hash_len)
		t->have_exporter = 0;
	int n = tls_cert_end_point_cached(ssl, t->cb_end_point,
					  sizeof(t->cb_end_point));
	if (n > 0)
		t->cb_end_point_len = (uint8_t)n;
	return 1;
}

void tls13_free(struct conn *c)
{
	struct tls13 *t = c->t13;
	if (t == NULL)
		return;
	/* Section 6.1: close_notify before we close, unless a fatal alert
	 * went either way (best effort: the socket is about to close). */
	if (t->suite_ready && !t->alerted && !t->peer_alerted)
		tls13_send_alert(c, 1, ALERT_CLOSE_NOTIFY);
	buf_free(&t->ctout);
	free(t->carry);
	OPENSSL_cleanse(t, sizeof(*t));
	free(t);
	c->t13 = NULL;
}

/* RFC 9266 tls-exporter: TLS-Exporter("EXPORTER-Channel-Binding", "",
 * 32) of RFC 8446 section 7.5, derived when SASL asks for it. */
int tls13_cb_exporter(const struct conn *c, unsigned char *out, size_t size)
{
	const struct tls13 *t = c->t13;
	unsigned char empty[48], derived[48];
	unsigned int elen = 0;
	if (t == NULL || !t->have_exporter || size < 32 ||
	    EVP_Digest("", 0, empty, &elen, tls13_md(t), NULL) != 1 ||
	    elen != t->hash_len)
		return -1;
	int r = tls13_expand_ctx(t, t->exporter_secret,
				 "EXPORTER-Channel-Binding", empty, elen,
				 derived, t->hash_len) < 0 ||
		tls13_expand_ctx(t, derived, "exporter", empty, elen, out,
				 32) < 0 ? -1 : 32;
	OPENSSL_cleanse(derived, sizeof(derived));
	return r;
}

int tls13_cb_server_end_point(const struct conn *c, unsigned char *out,
			      size_t size)
{
	const struct tls13 *t = c->t13;
	if (t == NULL || t->cb_end_point_len == 0 ||
	    size < t->cb_end_point_len)
		return -1;
	memcpy(out, t->cb_end_point, t->cb_end_point_len);
	return t->cb_end_point_len;
}

/*
 * fuzz_tls13.c - xmppd's TLS 1.3 record layer (worker/tls13.c) under
 * fixed traffic secrets, set with tls13_attach() as after a handshake.
 * The harness is the client: it derives the keys itself (RFC 8446
 * section 7.1/7.3, independently of tls13.c), seals the records an input
 * describes, writes them to the server's socket in pieces, and opens
 * every record the server writes back.  Properties:
 *  - no memory error or undefined behaviour, whatever the bytes;
 *  - the plaintext tls13_read() returns is exactly a prefix of the
 *    application data the client sealed, and all of it when the client
 *    broke no rule (no connection is dropped for valid records: record
 *    sizes, padding, KeyUpdates, records split anywhere);
 *  - what the server writes opens under the keys RFC 8446 gives, its
 *    application data is exactly what was queued (in order, across the
 *    server's own KeyUpdates and ours), and nothing follows an alert.
 * Input: byte 0 picks the suite (AES-128-GCM, AES-256-GCM,
 * ChaCha20-Poly1305).  Then operations, one byte each (low 3 bits the
 * kind, high 5 bits an argument), some followed by a length byte and
 * data bytes:
 *   0 application data: length n + 600 * arg, data repeated from the input
 *   1 application data n bytes with arg * 10 bytes of zero padding
 *   2 KeyUpdate (arg bit 0: update_requested; bit 1: split over two
 *     records), then the client's key changes
 *   3 alert (two data bytes)         4 raw bytes, not sealed
 *   5 a record of inner content type (data byte) and n bytes
 *   6 deliver what is sealed, in pieces of arg * 7 bytes (0: at once),
 *     the server reading after each piece
 *   7 the server sends n * (arg + 1) bytes of application data
 */
#include "fuzz.h"
#include "../worker/worker.h"
#include "../worker/tls13.h"
#include "hmac.h"
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TAG 16
#define MAX_PLAIN 16384
#define PENDING_MAX (1u << 20)

static const struct {
	uint16_t id;
	const char *cipher, *md;
	size_t key_len, hash_len;
} suites[3] = {
	{ 0x1301, "AES-128-GCM", "SHA256", 16, 32 },
	{ 0x1302, "AES-256-GCM", "SHA384", 32, 48 },
	{ 0x1303, "ChaCha20-Poly1305", "SHA256", 32, 32 },
};

struct dir {
	unsigned char secret[48], key[32], iv[12];
	uint64_t seq;
};

struct run {
	unsigned s;                 /* suite index */
	EVP_CIPHER_CTX *ctx;
	struct dir cw, sw;          /* client writes, server writes */
	struct conn c;
	int peer;                   /* our end of the socket pair */
	struct buf pending;         /* sealed, not yet delivered */
	struct buf sent;            /* application data we sealed */
	size_t got;                 /* of it, what tls13_read returned */
	int broke_rule;             /* we sent something invalid */
	unsigned key_updates;       /* in a row, without data */
	int dead;                   /* tls13_read returned -1 */
	/* the server's side, as we read it */
	struct buf in;              /* bytes of records not yet opened */
	struct buf queued;          /* what the server was asked to send */
	size_t received;            /* of it, what we opened */
	int server_alerted;         /* an alert record came */
};

static EVP_CIPHER *ciphers[3];
static struct config *fuzz_cfg;
static struct worker fuzz_worker;
static struct ipc_worker_stats fuzz_stats;

static void expand_label(const struct run *r, const unsigned char *secret,
			 const char *label, unsigned char *out, size_t len)
{
	unsigned char info[128], md[64];
	size_t ll = strlen(label), n = 0;
	info[n++] = (unsigned char)(len >> 8);
	info[n++] = (unsigned char)len;
	info[n++] = (unsigned char)(6 + ll);
	memcpy(info + n, "tls13 ", 6);
	memcpy(info + n + 6, label, ll);
	n += 6 + ll;
	info[n++] = 0;              /* empty context */
	info[n++] = 1;              /* HKDF-Expand T(1) */
	if (hmac(suites[r->s].md, secret, suites[r->s].hash_len, info, n, md,
		 sizeof(md)) < 0)
		abort();
	memcpy(out, md, len);
}

static void derive(const struct run *r, struct dir *d)
{
	expand_label(r, d->secret, "key", d->key, suites[r->s].key_len);
	expand_label(r, d->secret, "iv", d->iv, 12);
	d->seq = 0;
}

static void next_key(const struct run *r, struct dir *d)
{
	unsigned char next[48];
	expand_label(r, d->secret, "traffic upd", next, suites[r->s].hash_len);
	memcpy(d->secret, next, sizeof(next));
	derive(r, d);
}

static void nonce(const struct dir *d, unsigned char out[12])
{
	memcpy(out, d->iv, 12);
	for (int i = 0; i < 8; i++)
		out[4 + i] ^= (unsigned char)(d->seq >> (56 - 8 * i));
}

/* Seal inner plaintext (content, type, pad zeros) as the client. */
static void seal(struct run *r, unsigned type, const unsigned char *p,
		 size_t len, size_t pad)
{
	size_t inner = len + 1 + pad, clen = inner + TAG;
	unsigned char *rec = malloc(5 + clen), n12[12];
	int n;
	if (rec == NULL || clen > 0xffff)
		abort();
	rec[0] = 23;
	rec[1] = rec[2] = 3;
	rec[3] = (unsigned char)(clen >> 8);
	rec[4] = (unsigned char)clen;
	memcpy(rec + 5, p, len);
	rec[5 + len] = (unsigned char)type;
	memset(rec + 5 + len + 1, 0, pad);
	nonce(&r->cw, n12);
	if (EVP_CipherInit_ex2(r->ctx, ciphers[r->s], r->cw.key, n12, 1,
			       NULL) != 1 ||
	    EVP_CipherUpdate(r->ctx, NULL, &n, rec, 5) != 1 ||
	    EVP_CipherUpdate(r->ctx, rec + 5, &n, rec + 5, (int)inner) != 1 ||
	    EVP_CipherFinal_ex(r->ctx, rec + 5 + inner, &n) != 1 ||
	    EVP_CIPHER_CTX_ctrl(r->ctx, EVP_CTRL_AEAD_GET_TAG, TAG,
				rec + 5 + inner) != 1)
		abort();
	r->cw.seq++;
	if (buf_append(&r->pending, rec, 5 + clen) < 0)
		r->broke_rule = 1;      /* too much: not delivered whole */
	free(rec);
}

/* Open the server's records as far as they have come. */
static void read_server(struct run *r)
{
	unsigned char tmp[65536];
	ssize_t n;
	while ((n = read(r->peer, tmp, sizeof(tmp))) > 0)
		if (buf_append(&r->in, tmp, (size_t)n) < 0)
			abort();
	while (buf_used(&r->in) >= 5) {
		unsigned char *rec = (unsigned char *)buf_head(&r->in);
		size_t clen = (size_t)rec[3] << 8 | rec[4];
		FUZZ_CHECK(!r->server_alerted, "a record after the server's "
			   "alert");
		FUZZ_CHECK(rec[0] == 23 && rec[1] == 3 && rec[2] == 3,
			   "server record header %02x %02x %02x", rec[0],
			   rec[1], rec[2]);
		FUZZ_CHECK(clen >= 1 + TAG && clen <= MAX_PLAIN + 256 + TAG,
			   "server record of %zu bytes", clen);
		if (buf_used(&r->in) < 5 + clen)
			break;
		unsigned char n12[12];
		int n1, n2;
		nonce(&r->sw, n12);
		FUZZ_CHECK(EVP_CipherInit_ex2(r->ctx, ciphers[r->s], r->sw.key,
					      n12, 0, NULL) == 1 &&
			   EVP_CIPHER_CTX_ctrl(r->ctx, EVP_CTRL_AEAD_SET_TAG,
					       TAG, rec + 5 + clen - TAG) == 1 &&
			   EVP_CipherUpdate(r->ctx, NULL, &n1, rec, 5) == 1 &&
			   EVP_CipherUpdate(r->ctx, rec + 5, &n1, rec + 5,
					    (int)(clen - TAG)) == 1 &&
			   EVP_CipherFinal_ex(r->ctx, rec + 5 + n1, &n2) == 1,
			   "server record %llu does not open",
			   (unsigned long long)r->sw.seq);
		r->sw.seq++;
		size_t len = clen - TAG;
		while (len > 0 && rec[5 + len - 1] == 0)
			len--;
		FUZZ_CHECK(len > 0, "server record without content type");
		unsigned type = rec[5 + --len];
		const unsigned char *p = rec + 5;
		if (type == 23) {
			FUZZ_CHECK(r->received + len <= buf_used(&r->queued) &&
				   memcmp(buf_head(&r->queued) + r->received,
					  p, len) == 0,
				   "server data differs from what it was given "
				   "at offset %zu", r->received);
			r->received += len;
		} else if (type == 22) {
			FUZZ_CHECK(len == 5 && p[0] == 24 && p[1] == 0 &&
				   p[2] == 0 && p[3] == 1 && p[4] <= 1,
				   "server handshake message is no KeyUpdate");
			next_key(r, &r->sw);
		} else {
			FUZZ_CHECK(type == 21 && len == 2, "server record of "
				   "type %u, %zu bytes", type, len);
			r->server_alerted = 1;
		}
		buf_consume(&r->in, 5 + clen);
	}
}

/* The server reads until it would block (or fails). */
static void server_read(struct run *r)
{
	static char rbuf[2 * TLS13_MAX_RECORD];
	for (int i = 0; i < 10000 && !r->dead; i++) {
		ssize_t n = tls13_read(&r->c, rbuf, sizeof(rbuf));
		if (n < 0) {
			r->dead = 1;
			break;
		}
		if (n > 0) {
			FUZZ_CHECK(r->got + (size_t)n <= buf_used(&r->sent) &&
				   memcmp(buf_head(&r->sent) + r->got, rbuf,
					  (size_t)n) == 0,
				   "tls13_read returned data the client did "
				   "not send (at offset %zu)", r->got);
			r->got += (size_t)n;
		}
		if (n == 0 && !tls13_more(&r->c))
			break;
	}
	FUZZ_CHECK(!r->dead || r->broke_rule, "the server dropped a client "
		   "that broke no rule");
	if (!r->dead)
		tls13_flush(&r->c);     /* a KeyUpdate answer, if any */
	read_server(r);
}

static void deliver(struct run *r, size_t piece)
{
	while (buf_used(&r->pending) > 0 && !r->dead) {
		size_t n = buf_used(&r->pending);
		if (piece != 0 && n > piece)
			n = piece;
		ssize_t w = write(r->peer, buf_head(&r->pending), n);
		if (w < 0 && errno != EAGAIN)
			abort();
		if (w > 0)
			buf_consume(&r->pending, (size_t)w);
		server_read(r);
	}
}

static void server_send(struct run *r, const unsigned char *p, size_t n,
			size_t times)
{
	if (r->dead || n == 0 || buf_used(&r->queued) > PENDING_MAX)
		return;
	for (size_t i = 0; i < times; i++) {
		buf_append(&r->c.out, p, n);
		buf_append(&r->queued, p, n);
	}
	for (int i = 0; i < 1000; i++) {
		if (tls13_flush(&r->c) < 0)
			break;
		read_server(r);
		if (buf_used(&r->c.out) == 0 && !tls13_out_pending(&r->c))
			break;
	}
}

/* The next length byte and up to that many data bytes. */
static size_t take(const uint8_t **d, size_t *size, const uint8_t **p_r)
{
	size_t n = 0;
	if (*size > 0) {
		n = **d;
		(*d)++;
		(*size)--;
	}
	if (n > *size)
		n = *size;
	*p_r = *d;
	*d += n;
	*size -= n;
	return n;
}

static void fill(unsigned char *dst, size_t len, const uint8_t *src,
		 size_t n)
{
	for (size_t i = 0; i < len; i++)
		dst[i] = n > 0 ? src[i % n] : (unsigned char)i;
}

static void run_ops(struct run *r, const uint8_t *d, size_t size)
{
	static unsigned char big[255 + 600 * 31];     /* op 0 at most */
	const uint8_t *p;
	size_t n;

	while (size > 0 && !r->dead) {
		unsigned op = *d & 7, arg = *d >> 3;
		d++;
		size--;
		switch (op) {
		case 0:
			n = take(&d, &size, &p);
			size_t len = n + 600 * (size_t)arg;
			fill(big, len, p, n);
			seal(r, 23, big, len, 0);
			if (len > MAX_PLAIN)
				r->broke_rule = 1;
			buf_append(&r->sent, big, len);
			if (len > 0)
				r->key_updates = 0;
			break;
		case 1:
			n = take(&d, &size, &p);
			seal(r, 23, p, n, (size_t)arg * 10);
			buf_append(&r->sent, p, n);
			if (n > 0)
				r->key_updates = 0;
			break;
		case 2: {
			unsigned char ku[5] = { 24, 0, 0, 1,
						(unsigned char)(arg & 1) };
			if (arg & 2) {
				seal(r, 22, ku, 2, 0);
				seal(r, 22, ku + 2, 3, 0);
			} else {
				seal(r, 22, ku, 5, 0);
			}
			next_key(r, &r->cw);
			if (++r->key_updates > 32)
				r->broke_rule = 1;
			break;
		}
		case 3:
			n = take(&d, &size, &p);
			seal(r, 21, p, n, 0);
			r->broke_rule = 1;
			break;
		case 4:
			n = take(&d, &size, &p);
			buf_append(&r->pending, p, n);
			r->broke_rule = 1;
			break;
		case 5: {
			unsigned type = size > 0 ? *d : 0;
			if (size > 0) {
				d++;
				size--;
			}
			n = take(&d, &size, &p);
			seal(r, type, p, n, 0);
			/* type 0 reads as padding (RFC 8446 section 5.4):
			 * the last non-zero byte of the data is the type */
			while (type == 0 && n > 0 && p[n - 1] == 0)
				n--;
			if (type == 0 && n > 0)
				type = p[--n];
			if (type == 23) {
				buf_append(&r->sent, p, n);
				if (n > 0)
					r->key_updates = 0;
			} else {
				r->broke_rule = 1;
			}
			break;
		}
		case 6:
			deliver(r, (size_t)arg * 7);
			break;
		case 7:
			n = take(&d, &size, &p);
			server_send(r, p, n, (size_t)arg + 1);
			break;
		}
	}
	deliver(r, 0);
}

static void fuzz_init(void)
{
	const char *error;
	fuzz_quiet_log();
	for (int i = 0; i < 3; i++)
		if ((ciphers[i] = EVP_CIPHER_fetch(NULL, suites[i].cipher,
						   NULL)) == NULL)
			abort();
	fuzz_cfg = config_new();
	/* the server's own KeyUpdates within reach */
	if (config_set(fuzz_cfg, "tls.records_per_key=5", &error) < 0)
		abort();
	fuzz_worker.cfg = fuzz_cfg;
	fuzz_worker.stats = &fuzz_stats;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	static struct run r;
	int sv[2];

	if (!ready) {
		fuzz_init();
		ready = 1;
	}
	if (size == 0 || size > 16384)
		return 0;
	memset(&r, 0, sizeof(r));
	r.s = data[0] % 3;
	memset(r.cw.secret, 0x11, sizeof(r.cw.secret));
	memset(r.sw.secret, 0x22, sizeof(r.sw.secret));
	derive(&r, &r.cw);
	derive(&r, &r.sw);
	if ((r.ctx = EVP_CIPHER_CTX_new()) == NULL ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		abort();
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	r.peer = sv[1];
	r.c.fd = sv[0];
	r.c.w = &fuzz_worker;
	r.c.state = CONN_STATE_OPEN;
	buf_init(&r.c.out, 0);
	buf_init(&r.pending, PENDING_MAX);
	buf_init(&r.sent, 0);
	buf_init(&r.in, 0);
	buf_init(&r.queued, 0);
	if (tls13_attach(&r.c, suites[r.s].id, r.cw.secret, r.sw.secret,
			 suites[r.s].hash_len, fuzz_cfg) < 0)
		abort();

	run_ops(&r, data + 1, size - 1);
	/* (after bytes that broke a rule, e.g. a raw header announcing a
	 * long record, the server may rightly wait for more) */
	FUZZ_CHECK(r.dead || r.broke_rule || r.got == buf_used(&r.sent),
		   "the server read %zu of %zu bytes and waits for more",
		   r.got, buf_used(&r.sent));
	tls13_free(&r.c);           /* close_notify, unless alerted */
	read_server(&r);
	FUZZ_CHECK(r.received == buf_used(&r.queued) || r.dead,
		   "the server sent %zu of %zu bytes", r.received,
		   buf_used(&r.queued));

	close(sv[0]);
	close(sv[1]);
	EVP_CIPHER_CTX_free(r.ctx);
	buf_free(&r.c.out);
	buf_free(&r.pending);
	buf_free(&r.sent);
	buf_free(&r.in);
	buf_free(&r.queued);
	return 0;
}

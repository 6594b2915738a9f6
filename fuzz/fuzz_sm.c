/*
 * fuzz_sm.c - XEP-0198 wire formats (shm/smwire.c) and the previd a
 * client sends in <resume previd/> (smstore_find, shm/smstore.c).
 * Properties:
 *  - take/give/done: any payload is refused with a reason or decoded
 *    within its bytes (ASan); what is accepted encodes back to the same
 *    bytes; a decoded GIVE walks to exactly ndirected and nstanzas items;
 *  - build: a GIVE written with the smwire_give_put_* functions (as
 *    worker/sm.c writes one) decodes to the same items;
 *  - previd: any text (any bytes, any length), and issued ids with
 *    bytes changed, is found only when it is exactly the id of a live
 *    resumable record, and then names that record; a freed record's id
 *    is not found;
 *  - cluster previd (smwire_previd_split, the same inputs, issued ids
 *    first made cluster previds when bit 7 of byte 2 is set): without
 *    a key only a text without '.' is taken, as it is; with the key,
 *    what is taken joins back (smwire_previd_join) to exactly the text,
 *    and an unchanged cluster previd of an issued id gives that id and
 *    the tag it was made with;
 *  - h: smwire_parse_h accepts exactly xs:unsignedInt (whitespace,
 *    '+', leading zeros, up to 4294967295), checked against a second,
 *    independent reading, and the value prints back as its digits.
 * Input: byte 0 picks the mode (0 take, 1 give, 2 done, 3 previd,
 * 4 h, 5 build; modulo 6); the rest is the payload (take/give/done), or
 * the text (previd, h: up to its first NUL as an attribute is), or for
 * previd with byte 1 odd: byte 2 picks an issued id and each following
 * pair (position, xor) changes it; for build, records of (byte length,
 * bytes): the first is the presence, odd-length records are directed
 * presences, even ones stanzas.
 */
#include "fuzz.h"
#include "smwire.h"
#include "smstore.h"
#include "buf.h"

#include <string.h>

#define FUZZ_SM_IDS 3

static struct smstore *fuzz_st;
static char fuzz_ids[FUZZ_SM_IDS][SMSTORE_ID_MAX];   /* live, found */
static struct sm_ref fuzz_refs[FUZZ_SM_IDS];
static char fuzz_gone[SMSTORE_ID_MAX];               /* freed */

static void fuzz_init(void)
{
	const char *error;
	struct sm_ref ref;
	char plain[SMSTORE_ID_MAX];
	size_t size = smstore_size(2, 8, 65536);
	void *mem = calloc(1, size);

	fuzz_quiet_log();
	if (mem == NULL || smstore_init(mem, size, 2, 8, 65536, &error) < 0 ||
	    (fuzz_st = smstore_attach(mem, &error)) == NULL) {
		fprintf(stderr, "fuzz_sm: store set-up failed\n");
		abort();
	}
	for (unsigned i = 0; i < FUZZ_SM_IDS; i++)
		if (smstore_open(fuzz_st, i % 2, "juliet@example.com/balcony",
				 10 + i, 1, 1, 300, &fuzz_refs[i], fuzz_ids[i],
				 &error) < 0)
			abort();
	/* freed: its id must not be found; not resumable: no id */
	if (smstore_open(fuzz_st, 0, "romeo@example.com/orchard", 20, 1, 1,
			 300, &ref, fuzz_gone, &error) < 0)
		abort();
	smstore_close(fuzz_st, &ref);
	if (smstore_open(fuzz_st, 1, "romeo@example.com/garden", 21, 1, 0,
			 300, &ref, plain, &error) < 0)
		abort();
}

static void fuzz_same(const struct buf *b, const uint8_t *p, size_t len,
		      const char *what)
{
	FUZZ_CHECK(buf_used(b) == len && memcmp(buf_head(b), p, len) == 0,
		   "%s re-encoded to %zu bytes, not the %zu decoded", what,
		   buf_used(b), len);
}

static int fuzz_within(const void *q, size_t n, const uint8_t *p, size_t len)
{
	const uint8_t *x = q;
	return n == 0 || (x >= p && x + n <= p + len);
}

static void fuzz_take(const uint8_t *p, size_t len)
{
	struct smwire_take t;
	const char *error = NULL;
	struct buf b;

	if (smwire_take_decode(p, len, &t, &error) < 0) {
		FUZZ_CHECK(error != NULL, "TAKE refused without a reason");
		return;
	}
	FUZZ_CHECK(fuzz_within(t.id, t.id_len, p, len) &&
		   fuzz_within(t.bare, t.bare_len, p, len),
		   "TAKE fields outside the payload");
	FUZZ_CHECK(t.id_len > 0 && t.id_len < SMSTORE_ID_MAX &&
		   t.bare_len > 0 && t.bare_len <= IPC_JID_MAX &&
		   memchr(t.bare, '\0', t.bare_len) == NULL,
		   "TAKE accepted with lengths out of range");
	buf_init(&b, 0);
	FUZZ_CHECK(smwire_take_encode(&b, &t, &error) == 0,
		   "decoded TAKE does not encode: %s", error);
	fuzz_same(&b, p, len, "TAKE");
	buf_free(&b);
}

static void fuzz_give(const uint8_t *p, size_t len)
{
	struct smwire_give g;
	const char *error = NULL, *q, *item;
	size_t left, l;
	uint32_t n;
	struct buf b;

	if (smwire_give_decode(p, len, &g, &error) < 0) {
		FUZZ_CHECK(error != NULL, "GIVE refused without a reason");
		return;
	}
	if (g.head.status == IPC_SM_GIVE_OK) {
		FUZZ_CHECK(fuzz_within(g.jid, g.head.jid_len, p, len) &&
			   fuzz_within(g.presence, g.head.presence_len, p,
				       len) &&
			   fuzz_within(g.directed, g.directed_len, p, len) &&
			   fuzz_within(g.stanzas, g.stanzas_len, p, len),
			   "GIVE fields outside the payload");
		FUZZ_CHECK(g.head.jid_len > 0 && g.head.jid_len <= IPC_JID_MAX
			   && memchr(g.jid, '\0', g.head.jid_len) == NULL &&
			   g.head.available <= 1,
			   "GIVE accepted with a bad JID or availability");
		for (q = g.directed, left = g.directed_len, n = 0;
		     smwire_next(&q, &left, 2, &item, &l) == 1; n++)
			FUZZ_CHECK(fuzz_within(item, l, p, len), "directed");
		FUZZ_CHECK(n == g.head.ndirected && left == 0,
			   "%u directed presences walked, %u announced", n,
			   g.head.ndirected);
		for (q = g.stanzas, left = g.stanzas_len, n = 0;
		     smwire_next(&q, &left, 4, &item, &l) == 1; n++)
			FUZZ_CHECK(fuzz_within(item, l, p, len), "stanza");
		FUZZ_CHECK(n == g.head.nstanzas && left == 0,
			   "%u stanzas walked, %u announced", n,
			   g.head.nstanzas);
	}
	buf_init(&b, 0);
	FUZZ_CHECK(smwire_give_encode(&b, &g, &error) == 0,
		   "decoded GIVE does not encode: %s", error);
	fuzz_same(&b, p, len, "GIVE");
	buf_free(&b);
}

/* build mode: what sm_on_take writes is what sm_on_give reads */
static void fuzz_build(const uint8_t *p, size_t len)
{
	static const char jid[] = "juliet@example.com/balcony";
	struct ipc_sm_give h;
	struct smwire_give g;
	const char *error = NULL, *q, *item;
	const uint8_t *rec[256];
	size_t rlen[256], left, l;
	unsigned nrec = 0, nd = 0, ns = 0, i;
	struct buf b;

	while (len > 0 && nrec < 256) {
		size_t n = p[0] < len - 1 ? p[0] : len - 1;
		rec[nrec] = p + 1;
		rlen[nrec++] = n;
		p += 1 + n;
		len -= 1 + n;
	}
	memset(&h, 0, sizeof(h));
	h.status = IPC_SM_GIVE_OK;
	h.jid_len = sizeof(jid) - 1;
	h.presence_len = nrec > 0 ? (uint32_t)rlen[0] : 0;
	h.available = h.presence_len > 0;
	buf_init(&b, 0);
	FUZZ_CHECK(smwire_give_put_head(&b, &h, jid, nrec > 0 ?
					(const char *)rec[0] : NULL,
					&error) == 0, "head: %s", error);
	for (i = 1; i < nrec; i++)
		if (rlen[i] % 2 && ++nd)
			FUZZ_CHECK(smwire_give_put_directed(&b, (const char *)
				   rec[i], rlen[i], &error) == 0, "%s", error);
	for (i = 1; i < nrec; i++)
		if (rlen[i] % 2 == 0 && ++ns)
			FUZZ_CHECK(smwire_give_put_stanza(&b, (const char *)
				   rec[i], rlen[i], &error) == 0, "%s", error);
	smwire_give_set_counts(&b, 0, nd, ns);
	FUZZ_CHECK(smwire_give_decode(buf_head(&b), buf_used(&b), &g,
				      &error) == 0,
		   "a GIVE as sm.c writes it is refused: %s", error);
	FUZZ_CHECK(g.head.ndirected == nd && g.head.nstanzas == ns &&
		   g.head.presence_len == h.presence_len &&
		   memcmp(g.jid, jid, h.jid_len) == 0, "GIVE head changed");
	q = g.directed;
	left = g.directed_len;
	for (i = 1; i < nrec; i++)
		if (rlen[i] % 2)
			FUZZ_CHECK(smwire_next(&q, &left, 2, &item, &l) == 1 &&
				   l == rlen[i] && memcmp(item, rec[i], l) == 0,
				   "directed presence %u changed", i);
	q = g.stanzas;
	left = g.stanzas_len;
	for (i = 1; i < nrec; i++)
		if (rlen[i] % 2 == 0)
			FUZZ_CHECK(smwire_next(&q, &left, 4, &item, &l) == 1 &&
				   l == rlen[i] && memcmp(item, rec[i], l) == 0,
				   "stanza %u changed", i);
	buf_free(&b);
}

static const uint8_t fuzz_key[SMWIRE_KEY_BYTES] = "fuzz_sm previd key, 32 bytes...";
static const uint8_t fuzz_tag[SMWIRE_PREVID_TAG] = { 1, 2, 3, 4 };

/* The cluster form of any text: see the header. */
static void fuzz_cluster_previd(const char *text, size_t n,
				const char *issued, int unchanged)
{
	char local[SMSTORE_ID_MAX], again[SMWIRE_PREVID_MAX];
	uint8_t tag[SMWIRE_PREVID_TAG];
	int r = smwire_previd_split(NULL, text, n, local, tag);
	int plain = n > 0 && n < SMSTORE_ID_MAX && memchr(text, '.', n) == NULL &&
		    memchr(text, '\0', n) == NULL;
	FUZZ_CHECK((r == 0) == plain, "single node previd of %zu bytes: %d", n,
		   r);
	if (r == 0)
		FUZZ_CHECK(strlen(local) == n && memcmp(local, text, n) == 0,
			   "single node previd changed");
	r = smwire_previd_split(fuzz_key, text, n, local, tag);
	if (r == 0) {
		FUZZ_CHECK(smwire_previd_join(fuzz_key, local, tag, again) == 0 &&
			   strlen(again) == n && memcmp(again, text, n) == 0,
			   "cluster previd does not join back to its text");
	}
	if (unchanged && issued != NULL)
		FUZZ_CHECK(r == 0 && strcmp(local, issued) == 0 &&
			   memcmp(tag, fuzz_tag, sizeof(tag)) == 0,
			   "issued cluster previd refused");
}

static void fuzz_previd(const uint8_t *p, size_t len)
{
	char text[256];
	size_t n = len < sizeof(text) ? len : sizeof(text);
	struct sm_ref ref;
	int want = -1, unchanged = 0;
	const char *issued = NULL;

	if (len >= 2 && (p[0] & 1)) {
		/* an issued id (or the freed one), changed */
		unsigned k = p[1] % (FUZZ_SM_IDS + 1);
		const char *id = k < FUZZ_SM_IDS ? fuzz_ids[k] : fuzz_gone;
		char joined[SMWIRE_PREVID_MAX];
		if ((p[1] & 0x80) &&
		    smwire_previd_join(fuzz_key, id, fuzz_tag, joined) == 0) {
			issued = id;
			id = joined;
		}
		n = strlen(id);
		memcpy(text, id, n);
		unchanged = len == 2;
		for (size_t i = 2; i + 1 < len; i += 2) {
			size_t at = p[i];
			if (at < n)
				text[at] ^= (char)p[i + 1];
			else if (at - n < 4 && n < sizeof(text))
				text[n++] = (char)p[i + 1];    /* longer */
			else if (n > 0 && at == 255)
				n--;                            /* shorter */
		}
	} else {
		memcpy(text, p, n);
	}
	for (unsigned k = 0; k < FUZZ_SM_IDS; k++)
		if (strlen(fuzz_ids[k]) == n && memcmp(fuzz_ids[k], text, n) == 0)
			want = (int)k;
	fuzz_cluster_previd(text, n, issued, unchanged);
	int r = smstore_find(fuzz_st, text, n, &ref);
	FUZZ_CHECK(r == (want >= 0), "previd of %zu bytes: found %d, an "
		   "issued id: %d", n, r, want >= 0);
	if (want >= 0)
		FUZZ_CHECK(ref.slot == fuzz_refs[want].slot &&
			   ref.index == fuzz_refs[want].index &&
			   ref.seq == fuzz_refs[want].seq,
			   "previd names another record");
}

/* The second reading of xs:unsignedInt: a pattern, then the digits
 * without leading zeros compared as text with 4294967295. */
static int fuzz_h_ref(const char *s, char digits_r[16])
{
	size_t i = 0, a, b, n = strlen(s);
	while (i < n && strchr(" \t\r\n", s[i]) != NULL)
		i++;
	while (n > i && strchr(" \t\r\n", s[n - 1]) != NULL)
		n--;
	if (i < n && s[i] == '+')
		i++;
	if (i == n)
		return -1;
	for (a = i; a < n; a++)
		if (s[a] < '0' || s[a] > '9')
			return -1;
	for (b = i; b + 1 < n && s[b] == '0'; b++)
		;
	if (n - b > 10 || (n - b == 10 && memcmp(s + b, "4294967295", 10) > 0))
		return -1;
	memcpy(digits_r, s + b, n - b);
	digits_r[n - b] = '\0';
	return 0;
}

static void fuzz_h(const uint8_t *p, size_t len)
{
	char s[128], digits[16], printed[16];
	size_t n = len < sizeof(s) - 1 ? len : sizeof(s) - 1;
	uint32_t v = 0;

	memcpy(s, p, n);
	s[n] = '\0';    /* an attribute value ends at its first NUL */
	int got = smwire_parse_h(s, &v);
	int want = fuzz_h_ref(s, digits);
	FUZZ_CHECK(got == want, "h '%s': parsed %d, xs:unsignedInt says %d",
		   s, got, want);
	if (got == 0) {
		snprintf(printed, sizeof(printed), "%u", v);
		FUZZ_CHECK(strcmp(printed, digits) == 0, "h '%s' read as %s",
			   s, printed);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *error = NULL;

	if (fuzz_st == NULL)
		fuzz_init();
	if (size == 0 || size > 4 * IPC_FRAG_MAX)
		return 0;
	const uint8_t *p = data + 1;
	size_t len = size - 1;
	switch (data[0] % 6) {
	case 0:
		fuzz_take(p, len);
		break;
	case 1:
		fuzz_give(p, len);
		break;
	case 2:
		FUZZ_CHECK((smwire_done_decode(p, len, &error) == 0) ==
			   (len == 0), "DONE with %zu bytes", len);
		break;
	case 3:
		fuzz_previd(p, len);
		break;
	case 4:
		fuzz_h(p, len);
		break;
	default:
		fuzz_build(p, len);
		break;
	}
	return 0;
}

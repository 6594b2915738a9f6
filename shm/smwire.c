/*
 * smwire.c - XEP-0198 wire formats: the hand-over frame payloads
 * (IPC_FRAME_SM_TAKE / SM_GIVE / SM_DONE, laid out in shm/ipc.h) and the
 * h attribute's xs:unsignedInt (smwire.h).
 *
 * Pure functions: no state, no allocation in the decoders, no logging.
 * Failure policy: -1 with a one-line reason; the caller logs it once and
 * answers the client the XEP's way (worker/sm.c).
 */
#include "smwire.h"
#include "smstore.h"
#include "buf.h"

#include <sodium.h>
#include <stddef.h>
#include <string.h>

static int smwire_fail(const char *reason, const char **error_r)
{
	if (error_r != NULL)
		*error_r = reason;
	return -1;
}

/* ---- h ------------------------------------------------------------------ */

/* XML's whitespace (S production): what whiteSpace="collapse" trims. */
static int smwire_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int smwire_parse_h(const char *s, uint32_t *v_r)
{
	uint64_t v = 0;
	size_t digits = 0;

	if (s == NULL)
		return -1;
	while (smwire_space(*s))
		s++;
	if (*s == '+')
		s++;
	while (*s == '0') {     /* leading zeros do not count */
		s++;
		digits = 1;
	}
	for (; *s >= '0' && *s <= '9'; s++) {
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > UINT32_MAX)
			return -1;
		digits++;
	}
	while (smwire_space(*s))
		s++;
	if (digits == 0 || *s != '\0')
		return -1;
	*v_r = (uint32_t)v;
	return 0;
}

/* ---- SM_TAKE ------------------------------------------------------------ */

int smwire_take_decode(const void *p, size_t len, struct smwire_take *t_r,
		       const char **error_r)
{
	struct ipc_sm_take t;
	const char *q = p;

	if (len < sizeof(t))
		return smwire_fail("SM_TAKE shorter than its header", error_r);
	memcpy(&t, q, sizeof(t));
	if (len - sizeof(t) != (size_t)t.id_len + t.bare_len)
		return smwire_fail("SM_TAKE lengths do not add up", error_r);
	if (t.id_len == 0 || t.id_len >= SMSTORE_ID_MAX)
		return smwire_fail("SM_TAKE previd length out of range",
				   error_r);
	if (t.bare_len == 0 || t.bare_len > IPC_JID_MAX ||
	    memchr(q + sizeof(t) + t.id_len, '\0', t.bare_len) != NULL)
		return smwire_fail("SM_TAKE bare JID out of range", error_r);
	t_r->h = t.h;
	t_r->id = q + sizeof(t);
	t_r->id_len = t.id_len;
	t_r->bare = q + sizeof(t) + t.id_len;
	t_r->bare_len = t.bare_len;
	return 0;
}

int smwire_take_encode(struct buf *out, const struct smwire_take *t,
		       const char **error_r)
{
	struct ipc_sm_take h;

	if (t->id_len == 0 || t->id_len >= SMSTORE_ID_MAX ||
	    t->bare_len == 0 || t->bare_len > IPC_JID_MAX)
		return smwire_fail("SM_TAKE length out of range", error_r);
	memset(&h, 0, sizeof(h));
	h.h = t->h;
	h.id_len = (uint16_t)t->id_len;
	h.bare_len = (uint16_t)t->bare_len;
	if (buf_append(out, &h, sizeof(h)) < 0 ||
	    buf_append(out, t->id, t->id_len) < 0 ||
	    buf_append(out, t->bare, t->bare_len) < 0)
		return smwire_fail("out of memory", error_r);
	return 0;
}

/* ---- SM_GIVE ------------------------------------------------------------ */

int smwire_next(const char **p, size_t *left, unsigned width,
		const char **item_r, size_t *len_r)
{
	size_t l;

	if (*left == 0)
		return 0;
	if (*left < width)
		return -1;
	if (width == 2) {
		uint16_t v;
		memcpy(&v, *p, 2);
		l = v;
	} else {
		uint32_t v;
		memcpy(&v, *p, 4);
		l = v;
	}
	if (l > *left - width)
		return -1;
	*item_r = *p + width;
	*len_r = l;
	*p += width + l;
	*left -= width + l;
	return 1;
}

/* n items of (width-byte length, bytes) at the start of p: their bytes,
 * or -1 when they do not fit in left. */
static long smwire_list_len(const char *p, size_t left, unsigned width,
			    uint32_t n)
{
	const char *q = p, *item;
	size_t l, rest = left;

	for (uint32_t i = 0; i < n; i++)
		if (smwire_next(&q, &rest, width, &item, &l) != 1)
			return -1;
	return (long)(left - rest);
}

int smwire_give_decode(const void *p, size_t len, struct smwire_give *g_r,
		       const char **error_r)
{
	const char *q = p;
	struct ipc_sm_give *h = &g_r->head;
	size_t left;
	long n;

	memset(g_r, 0, sizeof(*g_r));
	if (len < sizeof(*h))
		return smwire_fail("SM_GIVE shorter than its header", error_r);
	memcpy(h, q, sizeof(*h));
	if (h->status >= IPC_SM_GIVE_STATUS_MAX)
		return smwire_fail("SM_GIVE with an unknown status", error_r);
	if (h->status != IPC_SM_GIVE_OK)
		return len == sizeof(*h) ? 0 :
		       smwire_fail("SM_GIVE refusal with a payload", error_r);
	if (len > IPC_FRAME_MAX)
		return smwire_fail("SM_GIVE larger than a frame", error_r);
	if (h->available > 1)
		return smwire_fail("SM_GIVE availability not 0 or 1", error_r);
	q += sizeof(*h);
	left = len - sizeof(*h);
	if (h->jid_len == 0 || h->jid_len > IPC_JID_MAX ||
	    h->jid_len > left || memchr(q, '\0', h->jid_len) != NULL)
		return smwire_fail("SM_GIVE JID out of range", error_r);
	g_r->jid = q;
	q += h->jid_len;
	left -= h->jid_len;
	if (h->presence_len > left)
		return smwire_fail("SM_GIVE presence beyond the payload",
				   error_r);
	g_r->presence = q;
	q += h->presence_len;
	left -= h->presence_len;
	/* each item takes 2 (4) bytes at least: counts beyond what the
	 * payload could hold stop before walking */
	if (h->ndirected > left / 2 ||
	    (n = smwire_list_len(q, left, 2, h->ndirected)) < 0)
		return smwire_fail("SM_GIVE directed presence beyond the "
				   "payload", error_r);
	g_r->directed = q;
	g_r->directed_len = (size_t)n;
	q += n;
	left -= (size_t)n;
	if (h->nstanzas > left / 4 ||
	    (n = smwire_list_len(q, left, 4, h->nstanzas)) < 0)
		return smwire_fail("SM_GIVE journal beyond the payload",
				   error_r);
	if ((size_t)n != left)
		return smwire_fail("SM_GIVE with bytes after its journal",
				   error_r);
	g_r->stanzas = q;
	g_r->stanzas_len = (size_t)n;
	return 0;
}

int smwire_give_put_head(struct buf *out, const struct ipc_sm_give *head,
			 const char *jid, const char *presence,
			 const char **error_r)
{
	if (head->jid_len == 0 || head->jid_len > IPC_JID_MAX ||
	    (head->presence_len > 0 && presence == NULL))
		return smwire_fail("SM_GIVE length out of range", error_r);
	if (buf_append(out, head, sizeof(*head)) < 0 ||
	    buf_append(out, jid, head->jid_len) < 0 ||
	    (head->presence_len > 0 &&
	     buf_append(out, presence, head->presence_len) < 0))
		return smwire_fail("out of memory", error_r);
	return 0;
}

int smwire_give_put_directed(struct buf *out, const char *p, size_t len,
			     const char **error_r)
{
	uint16_t l = (uint16_t)len;

	if (len > UINT16_MAX)
		return smwire_fail("directed presence too long", error_r);
	if (buf_append(out, &l, sizeof(l)) < 0 || buf_append(out, p, len) < 0)
		return smwire_fail("out of memory", error_r);
	return 0;
}

int smwire_give_put_stanza(struct buf *out, const char *p, size_t len,
			   const char **error_r)
{
	uint32_t l = (uint32_t)len;

	if (len > IPC_FRAME_MAX)
		return smwire_fail("stanza larger than a frame", error_r);
	if (buf_append(out, &l, sizeof(l)) < 0 || buf_append(out, p, len) < 0)
		return smwire_fail("out of memory", error_r);
	return 0;
}

void smwire_give_set_counts(struct buf *out, size_t at, uint32_t ndirected,
			    uint32_t nstanzas)
{
	char *h = out->data + out->off + at;

	memcpy(h + offsetof(struct ipc_sm_give, ndirected), &ndirected,
	       sizeof(ndirected));
	memcpy(h + offsetof(struct ipc_sm_give, nstanzas), &nstanzas,
	       sizeof(nstanzas));
}

int smwire_give_encode(struct buf *out, const struct smwire_give *g,
		       const char **error_r)
{
	const char *p, *item;
	size_t left, l;
	int r;

	if (g->head.status != IPC_SM_GIVE_OK)
		return buf_append(out, &g->head, sizeof(g->head)) < 0 ?
		       smwire_fail("out of memory", error_r) : 0;
	if (smwire_give_put_head(out, &g->head, g->jid, g->presence,
				 error_r) < 0)
		return -1;
	p = g->directed;
	left = g->directed_len;
	while ((r = smwire_next(&p, &left, 2, &item, &l)) == 1)
		if (smwire_give_put_directed(out, item, l, error_r) < 0)
			return -1;
	if (r < 0)
		return smwire_fail("directed presence list broken", error_r);
	p = g->stanzas;
	left = g->stanzas_len;
	while ((r = smwire_next(&p, &left, 4, &item, &l)) == 1)
		if (smwire_give_put_stanza(out, item, l, error_r) < 0)
			return -1;
	if (r < 0)
		return smwire_fail("journal list broken", error_r);
	return 0;
}

/* ---- SM_DONE ------------------------------------------------------------ */

int smwire_done_decode(const void *p, size_t len, const char **error_r)
{
	(void)p;
	return len == 0 ? 0 : smwire_fail("SM_DONE with a payload", error_r);
}

/* ---- previds in a cluster ---------------------------------------------- */

void smwire_node_tag(const uint8_t key[SMWIRE_KEY_BYTES], const char *node,
		     uint8_t tag[SMWIRE_PREVID_TAG])
{
	crypto_generichash(tag, SMWIRE_PREVID_TAG, (const uint8_t *)node,
			   strlen(node), key, SMWIRE_KEY_BYTES);
}

static void previd_mac(const uint8_t *key, const char *local, size_t l,
		       const uint8_t *tag, uint8_t mac[SMWIRE_PREVID_MAC])
{
	crypto_generichash_state st;
	crypto_generichash_init(&st, key, SMWIRE_KEY_BYTES, SMWIRE_PREVID_MAC);
	crypto_generichash_update(&st, tag, SMWIRE_PREVID_TAG);
	crypto_generichash_update(&st, (const uint8_t *)local, l);
	crypto_generichash_final(&st, mac, SMWIRE_PREVID_MAC);
}

int smwire_previd_join(const uint8_t key[SMWIRE_KEY_BYTES], const char *local,
		       const uint8_t tag[SMWIRE_PREVID_TAG],
		       char out[SMWIRE_PREVID_MAX])
{
	uint8_t bin[SMWIRE_PREVID_TAG + SMWIRE_PREVID_MAC];
	size_t l = strnlen(local, SMSTORE_ID_MAX);
	if (l == 0 || l >= SMSTORE_ID_MAX)
		return -1;
	memcpy(bin, tag, SMWIRE_PREVID_TAG);
	previd_mac(key, local, l, tag, bin + SMWIRE_PREVID_TAG);
	memcpy(out, local, l);
	out[l] = '.';
	sodium_bin2base64(out + l + 1, SMWIRE_PREVID_MAX - l - 1, bin,
			  sizeof(bin), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return 0;
}

int smwire_previd_split(const uint8_t *key, const char *previd, size_t len,
			char local[SMSTORE_ID_MAX],
			uint8_t tag[SMWIRE_PREVID_TAG])
{
	uint8_t bin[SMWIRE_PREVID_TAG + SMWIRE_PREVID_MAC];
	uint8_t mac[SMWIRE_PREVID_MAC];
	char again[SMWIRE_PREVID_MAX];
	const char *dot;
	size_t l, bl = 0;

	memset(tag, 0, SMWIRE_PREVID_TAG);
	if (previd == NULL || len == 0 || memchr(previd, '\0', len) != NULL)
		return -1;
	dot = memchr(previd, '.', len);
	l = dot ? (size_t)(dot - previd) : len;
	/* a cluster's previd in a cluster, a single node's outside one */
	if (l == 0 || l >= SMSTORE_ID_MAX || (dot != NULL) != (key != NULL))
		return -1;
	memcpy(local, previd, l);
	local[l] = '\0';
	if (key == NULL)
		return 0;
	if (len - l - 1 != SMWIRE_PREVID_SUFFIX ||
	    sodium_base642bin(bin, sizeof(bin), dot + 1, SMWIRE_PREVID_SUFFIX,
			      NULL, &bl, NULL,
			      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
	    bl != sizeof(bin))
		return -1;
	previd_mac(key, local, l, bin, mac);
	if (sodium_memcmp(mac, bin + SMWIRE_PREVID_TAG, SMWIRE_PREVID_MAC) != 0)
		return -1;
	/* one spelling per previd (base64's unused bits) */
	smwire_previd_join(key, local, bin, again);
	if (memcmp(again + l, dot, SMWIRE_PREVID_SUFFIX + 1) != 0)
		return -1;
	memcpy(tag, bin, SMWIRE_PREVID_TAG);
	return 0;
}

/*
 * smstore.c - the XEP-0198 journal in shared memory (API in smstore.h,
 * layout in ipc.h: struct ipc_sm_area, ipc_sm_slot, ipc_sm_record,
 * ipc_sm_block).
 *
 * One writer per slot (its worker), no lock.  A record's changing part
 * (journal chain, counters, presence) has two versions; the writer
 * fills the unpublished one and flips `cur` with a release store, so a
 * reader that acquires `cur` sees one whole version, and a worker
 * killed anywhere leaves the last published one.  Blocks are taken from
 * the free list before the flip and given back after it; a death in
 * between only strands blocks, which smstore_recover_slot() finds again
 * by walking the published records.  Nothing here touches a page of the
 * area before it is first used (high-water marks), so the mapping costs
 * memory only for the records and blocks sessions actually used.
 * Failure policy: -1 with an error when full or over a bound (nothing
 * changed), 0 for an id that does not name a record; a chain that does
 * not walk (our bug, or memory trampled) is logged and its record freed
 * by recovery rather than followed out of bounds.
 */
#include <sodium.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "smstore.h"

#define SM_ALIGN 64u
/* slot (2) + index (4) + seq (4) + token: the previd before base64url */
#define SM_ID_BIN (2u + 4u + 4u + IPC_SM_TOKEN)
/* its base64url text without padding */
#define SM_ID_TEXT ((SM_ID_BIN * 4u + 2u) / 3u)
/* Blocks per slot at most: indices are int32, and 2^24 blocks is 4 GiB. */
#define SM_BLOCKS_MAX (1u << 24)

_Static_assert(SMSTORE_EXT_WORDS == IPC_SM_EXT_WORDS, "ext words");
_Static_assert(SM_ID_TEXT + 1 <= SMSTORE_ID_MAX, "previd text");
_Static_assert(sizeof(struct ipc_sm_record) % 8 == 0, "record alignment");
/* lib/config.c: the maximum of sm.max_unacked_bytes is 1008K. */
_Static_assert(SMSTORE_BYTES_MAX == 1008u * 1024u, "sm.max_unacked_bytes");

void (*smstore_test_hook)(const char *point);

/* Records a master has seen keep their session (smstore_keeps), sorted,
 * for the slot it was built for at its `changes` count. */
struct sm_keep {
	uint64_t ids;
	uint32_t index;
};

struct smstore {
	struct ipc_sm_area *hdr;
	char *base;
	int keep_slot;                  /* -1: no cache */
	uint32_t keep_changes;
	struct sm_keep *keep;
	size_t keep_n;
};

static void sm_hook(const char *point)
{
	if (smstore_test_hook != NULL)
		smstore_test_hook(point);
}

static size_t sm_align(size_t n)
{
	return (n + SM_ALIGN - 1) & ~(size_t)(SM_ALIGN - 1);
}

static uint64_t sm_ids(uint32_t conn_id, uint32_t gen)
{
	return (uint64_t)conn_id | (uint64_t)gen << 32;
}

/* ---- layout ------------------------------------------------------------ */

static _Atomic uint32_t *sm_buckets(struct smstore *s, unsigned slot)
{
	return (_Atomic uint32_t *)(s->base + s->hdr->slots[slot].offset);
}

static struct ipc_sm_record *sm_records(struct smstore *s, unsigned slot)
{
	return (struct ipc_sm_record *)(s->base + s->hdr->slots[slot].offset +
					s->hdr->records_offset);
}

static struct ipc_sm_block *sm_blocks(struct smstore *s, unsigned slot)
{
	return (struct ipc_sm_block *)(s->base + s->hdr->slots[slot].offset +
				       s->hdr->blocks_offset);
}

/* Where things are in a slot's section. */
struct sm_geom {
	uint32_t blocks, nbuckets;
	size_t records_off, blocks_off, slot_size;
};

static int sm_geometry(unsigned nslots, uint32_t records, uint64_t bytes,
		       struct sm_geom *g)
{
	uint64_t blocks = bytes / IPC_SM_BLOCK;

	if (nslots == 0 || nslots > IPC_MAX_SLOTS || records == 0 ||
	    records > SMSTORE_RECORDS_MAX || blocks == 0 ||
	    blocks > SM_BLOCKS_MAX)
		return -1;
	g->blocks = (uint32_t)blocks;
	g->nbuckets = 16;
	while (g->nbuckets < records)
		g->nbuckets <<= 1;
	g->records_off = sm_align((size_t)g->nbuckets * sizeof(uint32_t));
	g->blocks_off = g->records_off + sm_align((size_t)records *
						  sizeof(struct ipc_sm_record));
	g->slot_size = g->blocks_off + sm_align((size_t)blocks * IPC_SM_BLOCK);
	return 0;
}

size_t smstore_size(unsigned nslots, uint32_t records, uint64_t bytes)
{
	struct sm_geom g;

	if (sm_geometry(nslots, records, bytes, &g) < 0)
		return 0;
	return sm_align(sizeof(struct ipc_sm_area)) + nslots * g.slot_size;
}

int smstore_init(void *mem, size_t size, unsigned nslots, uint32_t records,
		 uint64_t bytes, const char **error_r)
{
	struct ipc_sm_area *hdr = mem;
	struct sm_geom g;
	size_t need = smstore_size(nslots, records, bytes);

	if (need == 0 || sm_geometry(nslots, records, bytes, &g) < 0) {
		*error_r = "stream management pool size out of range";
		return -1;
	}
	if (size < need || (uintptr_t)mem % SM_ALIGN != 0) {
		*error_r = "stream management area too small or misaligned";
		return -1;
	}
	/* Only the header is written: the rest is zero (FREE records)
	 * and stays untouched until used. */
	memset(hdr, 0, sizeof(*hdr));
	hdr->version = IPC_VERSION;
	hdr->nslots = nslots;
	hdr->records = records;
	hdr->blocks = g.blocks;
	hdr->size = need;
	hdr->records_offset = g.records_off;
	hdr->blocks_offset = g.blocks_off;
	hdr->slot_size = g.slot_size;
	hdr->nbuckets = g.nbuckets;
	atomic_store(&hdr->max_stanzas, UINT32_MAX);
	atomic_store(&hdr->max_bytes, (uint64_t)SMSTORE_BYTES_MAX);
	for (unsigned i = 0; i < nslots; i++) {
		hdr->slots[i].rec_free = -1;
		hdr->slots[i].blk_free = -1;
		hdr->slots[i].offset = sm_align(sizeof(*hdr)) +
				       (uint64_t)i * g.slot_size;
	}
	atomic_thread_fence(memory_order_release);
	hdr->magic = IPC_SM_MAGIC;
	return 0;
}

struct smstore *smstore_attach(void *mem, const char **error_r)
{
	struct ipc_sm_area *hdr = mem;
	struct smstore *s;

	if (hdr->magic != IPC_SM_MAGIC || hdr->version != IPC_VERSION) {
		*error_r = "stream management area: bad magic or version";
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	s->hdr = hdr;
	s->base = mem;
	s->keep_slot = -1;
	return s;
}

void smstore_detach(struct smstore **s)
{
	if (*s == NULL)
		return;
	free((*s)->keep);
	free(*s);
	*s = NULL;
}

void smstore_set_limits(struct smstore *s, uint32_t max_stanzas,
			uint64_t max_bytes)
{
	if (max_bytes > SMSTORE_BYTES_MAX)
		max_bytes = SMSTORE_BYTES_MAX;
	atomic_store_explicit(&s->hdr->max_stanzas, max_stanzas,
			      memory_order_relaxed);
	atomic_store_explicit(&s->hdr->max_bytes, max_bytes,
			      memory_order_relaxed);
}

void smstore_capacity(struct smstore *s, unsigned *nslots_r,
		      uint32_t *records_r, uint64_t *bytes_r)
{
	*nslots_r = s->hdr->nslots;
	*records_r = s->hdr->records;
	*bytes_r = (uint64_t)s->hdr->blocks * IPC_SM_BLOCK;
}

/* ---- records ----------------------------------------------------------- */

/* The record ref names, or NULL when it no longer does (freed, reused:
 * another seq) or never did. */
static struct ipc_sm_record *sm_rec(struct smstore *s,
				    const struct sm_ref *ref)
{
	struct ipc_sm_record *r;

	if (ref->slot >= s->hdr->nslots || ref->index >= s->hdr->records ||
	    ref->index >= atomic_load(&s->hdr->slots[ref->slot].rec_hwm))
		return NULL;
	r = &sm_records(s, ref->slot)[ref->index];
	if (atomic_load_explicit(&r->state, memory_order_acquire) ==
	    SM_REC_FREE || atomic_load(&r->seq) != ref->seq)
		return NULL;
	return r;
}

static const struct ipc_sm_pub *sm_pub(struct ipc_sm_record *r)
{
	uint32_t cur = atomic_load_explicit(&r->cur, memory_order_acquire);

	return &r->pub[cur & 1];
}

/* Publish q as the record's new version (the writer's only way to
 * change the journal, the counters or the presence). */
static void sm_publish(struct ipc_sm_record *r, const struct ipc_sm_pub *q)
{
	uint32_t cur = atomic_load_explicit(&r->cur, memory_order_relaxed);

	r->pub[(cur ^ 1) & 1] = *q;
	atomic_store_explicit(&r->cur, (cur ^ 1) & 1, memory_order_release);
}

static void sm_changed(struct smstore *s, unsigned slot)
{
	_Atomic uint32_t *c = &s->hdr->slots[slot].changes;

	atomic_store(c, atomic_load_explicit(c, memory_order_relaxed) + 1);
}

static void sm_gauge_add(_Atomic uint32_t *g, int32_t d)
{
	atomic_store_explicit(g, atomic_load_explicit(g, memory_order_relaxed)
			      + (uint32_t)d, memory_order_relaxed);
}

/* ---- blocks ------------------------------------------------------------ */

static uint32_t sm_blocks_for(size_t len)
{
	return len == 0 ? 1 : (uint32_t)((len + IPC_SM_BLOCK_DATA - 1) /
					 IPC_SM_BLOCK_DATA);
}

static int32_t sm_block_take(struct smstore *s, unsigned slot)
{
	struct ipc_sm_slot *sl = &s->hdr->slots[slot];
	struct ipc_sm_block *b = sm_blocks(s, slot);
	int32_t i = sl->blk_free;
	uint32_t hwm;

	if (i >= 0) {
		sl->blk_free = b[i].next;
		return i;
	}
	hwm = atomic_load_explicit(&sl->blk_hwm, memory_order_relaxed);
	if (hwm >= s->hdr->blocks)
		return -1;      /* not reached: sm_chain_write counts first */
	atomic_store_explicit(&sl->blk_hwm, hwm + 1, memory_order_release);
	return (int32_t)hwm;
}

static void sm_block_give(struct smstore *s, unsigned slot, int32_t i)
{
	struct ipc_sm_slot *sl = &s->hdr->slots[slot];

	sm_blocks(s, slot)[i].next = sl->blk_free;
	sl->blk_free = i;
}

/* Write len bytes into a new chain (the last block flagged, its next
 * -1).  -1 when the pool has not that many blocks free: nothing taken. */
static int sm_chain_write(struct smstore *s, unsigned slot, const char *data,
			  size_t len, uint32_t token, int32_t *first_r,
			  int32_t *last_r)
{
	struct ipc_sm_slot *sl = &s->hdr->slots[slot];
	struct ipc_sm_block *b = sm_blocks(s, slot);
	uint32_t need = sm_blocks_for(len);
	uint32_t used = atomic_load_explicit(&sl->blocks_used,
					     memory_order_relaxed);
	int32_t prev = -1;

	if (need > s->hdr->blocks - used)
		return -1;
	for (uint32_t k = 0; k < need; k++) {
		int32_t i = sm_block_take(s, slot);
		size_t n = len > IPC_SM_BLOCK_DATA ? IPC_SM_BLOCK_DATA : len;

		memcpy(b[i].data, data, n);
		b[i].len = (uint16_t)n;
		b[i].flags = k + 1 == need ? IPC_SM_BLOCK_F_LAST : 0;
		b[i].token = k == 0 ? token : 0;
		b[i].next = -1;
		if (prev >= 0)
			b[prev].next = i;
		else
			*first_r = i;
		prev = i;
		data += n;
		len -= n;
	}
	*last_r = prev;
	sm_gauge_add(&sl->blocks_used, (int32_t)need);
	return 0;
}

/* Walk `count` chains from first; for each block, mark (bitmap, may be
 * NULL) and/or free it.  Stops at any index out of range, a block
 * already marked, or more blocks than the pool has.  Returns the number
 * of blocks walked, -1 when the chain does not walk; *bytes_r (may be
 * NULL) gets the payload bytes, *last_r (may be NULL) the last block. */
static long sm_chain_walk(struct smstore *s, unsigned slot, int32_t first,
			  uint32_t count, uint8_t *marks, bool give,
			  uint64_t *bytes_r, int32_t *last_r)
{
	struct ipc_sm_block *b = sm_blocks(s, slot);
	uint32_t nblocks = s->hdr->blocks;
	uint32_t hwm = atomic_load_explicit(&s->hdr->slots[slot].blk_hwm,
					    memory_order_acquire);
	uint64_t bytes = 0;
	long walked = 0;
	int32_t i = first, last = -1;

	if (hwm > nblocks)
		hwm = nblocks;
	while (count > 0) {
		if (i < 0 || (uint32_t)i >= hwm || walked >= (long)hwm ||
		    b[i].len > IPC_SM_BLOCK_DATA)
			return -1;
		if (marks != NULL) {
			if (marks[i >> 3] & (1u << (i & 7)))
				return -1;
			marks[i >> 3] |= (uint8_t)(1u << (i & 7));
		}
		int32_t next = b[i].next;
		bytes += b[i].len;
		if (b[i].flags & IPC_SM_BLOCK_F_LAST)
			count--;
		last = i;
		walked++;
		if (give)
			sm_block_give(s, slot, i);
		i = next;
	}
	if (bytes_r != NULL)
		*bytes_r = bytes;
	if (last_r != NULL)
		*last_r = last;
	return walked;
}

static void sm_chain_free(struct smstore *s, unsigned slot, int32_t first,
			  uint32_t count)
{
	long n = sm_chain_walk(s, slot, first, count, NULL, true, NULL, NULL);

	if (n > 0)
		sm_gauge_add(&s->hdr->slots[slot].blocks_used, (int32_t)-n);
	else if (n < 0)
		log_error("sm journal of slot %u: a chain does not walk; "
			  "its blocks wait for the slot's recovery", slot);
}

/* ---- the previd ---------------------------------------------------------- */

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int k = 0; k < 4; k++)
		p[k] = (uint8_t)(v >> (8 * k));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void sm_id_encode(const struct sm_ref *ref, const uint8_t *token,
			 char out[SMSTORE_ID_MAX])
{
	uint8_t bin[SM_ID_BIN];

	put16(bin, ref->slot);
	put32(bin + 2, ref->index);
	put32(bin + 6, ref->seq);
	memcpy(bin + 10, token, IPC_SM_TOKEN);
	sodium_bin2base64(out, SMSTORE_ID_MAX, bin, sizeof(bin),
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(bin, sizeof(bin));
}

/* The binary of a previd text: 0, or -1 when it is not one (length,
 * alphabet, or a second spelling through unused bits). */
static int sm_id_decode(const char *id, size_t id_len, struct sm_ref *ref_r,
			uint8_t token_r[IPC_SM_TOKEN])
{
	uint8_t bin[SM_ID_BIN];
	char again[SMSTORE_ID_MAX];
	size_t bin_len = 0;
	int ret = -1;

	if (id == NULL || id_len != SM_ID_TEXT ||
	    sodium_base642bin(bin, sizeof(bin), id, id_len, NULL, &bin_len,
			      NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING)
	    != 0 || bin_len != sizeof(bin))
		goto out;
	ref_r->slot = (uint16_t)(bin[0] | bin[1] << 8);
	ref_r->index = get32(bin + 2);
	ref_r->seq = get32(bin + 6);
	memcpy(token_r, bin + 10, IPC_SM_TOKEN);
	sm_id_encode(ref_r, token_r, again);
	ret = memcmp(again, id, id_len) == 0 ? 0 : -1;
out:
	sodium_memzero(bin, sizeof(bin));
	sodium_memzero(again, sizeof(again));
	return ret;
}

/* ---- token buckets: a previd's token -> its record in a slot ----------- */

static _Atomic uint32_t *sm_bucket(struct smstore *s, unsigned slot,
				   const uint8_t *token)
{
	return &sm_buckets(s, slot)[get32(token) & (s->hdr->nbuckets - 1)];
}

static void sm_hash_insert(struct smstore *s, unsigned slot, uint32_t i)
{
	struct ipc_sm_record *r = &sm_records(s, slot)[i];
	_Atomic uint32_t *b = sm_bucket(s, slot, r->token);

	atomic_store_explicit(&r->hnext, atomic_load_explicit(
		b, memory_order_relaxed), memory_order_relaxed);
	atomic_store_explicit(b, i + 1, memory_order_release);
}

static void sm_hash_remove(struct smstore *s, unsigned slot, uint32_t i)
{
	struct ipc_sm_record *recs = sm_records(s, slot);
	_Atomic uint32_t *link = sm_bucket(s, slot, recs[i].token);

	for (uint32_t n = 0; n <= s->hdr->records; n++) {
		uint32_t k = atomic_load_explicit(link, memory_order_relaxed);

		if (k == 0 || k > s->hdr->records)
			return;
		if (k == i + 1) {
			atomic_store_explicit(link, atomic_load_explicit(
				&recs[i].hnext, memory_order_relaxed),
				memory_order_release);
			return;
		}
		link = &recs[k - 1].hnext;
	}
}

static bool sm_findable(struct ipc_sm_record *r)
{
	uint32_t st = atomic_load_explicit(&r->state, memory_order_acquire);

	return st != SM_REC_FREE && st != SM_REC_GIVEN && r->resumable;
}

/* The record of the slot that is findable with this token: its index,
 * or -1.  The slot's writer may be changing the chain: a reader bounds
 * its walk and checks what it finds. */
static int32_t sm_hash_lookup(struct smstore *s, unsigned slot,
			      const uint8_t *token)
{
	struct ipc_sm_record *recs = sm_records(s, slot);
	uint32_t k = atomic_load_explicit(sm_bucket(s, slot, token),
					  memory_order_acquire);

	for (uint32_t n = 0; n < s->hdr->records && k != 0; n++) {
		struct ipc_sm_record *r;

		if (k > s->hdr->records)
			return -1;
		r = &recs[k - 1];
		if (sm_findable(r) &&
		    sodium_memcmp(r->token, token, IPC_SM_TOKEN) == 0)
			return (int32_t)(k - 1);
		k = atomic_load_explicit(&r->hnext, memory_order_acquire);
	}
	return -1;
}

/* ---- master ------------------------------------------------------------ */

static int sm_keep_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct sm_keep *)a)->ids;
	uint64_t y = ((const struct sm_keep *)b)->ids;

	return x < y ? -1 : x > y;
}

static bool sm_rec_keeps(struct ipc_sm_record *r)
{
	uint32_t st = atomic_load_explicit(&r->state, memory_order_acquire);

	return r->resumable && (st == SM_REC_ATTACHED || st == SM_REC_DETACHED);
}

/* The sorted ids of the slot's records that keep their session, so that
 * a sweep of many sessions is not a scan of every record per session. */
static int sm_keep_build(struct smstore *s, unsigned slot)
{
	struct ipc_sm_slot *sl = &s->hdr->slots[slot];
	struct ipc_sm_record *recs = sm_records(s, slot);
	uint32_t changes = atomic_load(&sl->changes);
	uint32_t hwm = atomic_load(&sl->rec_hwm);
	size_t n = 0;

	if (s->keep_slot == (int)slot && s->keep_changes == changes)
		return 0;
	if (hwm > s->hdr->records)
		hwm = s->hdr->records;
	free(s->keep);
	s->keep_slot = -1;
	s->keep_n = 0;
	s->keep = malloc(((size_t)hwm + 1) * sizeof(*s->keep));
	if (s->keep == NULL)
		return -1;
	for (uint32_t i = 0; i < hwm; i++) {
		if (!sm_rec_keeps(&recs[i]))
			continue;
		s->keep[n].ids = atomic_load(&recs[i].ids);
		s->keep[n++].index = i;
	}
	qsort(s->keep, n, sizeof(*s->keep), sm_keep_cmp);
	s->keep_n = n;
	s->keep_slot = (int)slot;
	s->keep_changes = changes;
	return 0;
}

int smstore_keeps(struct smstore *s, unsigned slot, uint32_t conn_id,
		  uint32_t gen)
{
	struct sm_keep key = { sm_ids(conn_id, gen), 0 };

	if (slot >= s->hdr->nslots || sm_keep_build(s, slot) < 0)
		return 0;
	return bsearch(&key, s->keep, s->keep_n, sizeof(key),
		       sm_keep_cmp) != NULL;
}

int64_t smstore_detached_ms(struct smstore *s, unsigned slot,
			    uint32_t conn_id, uint32_t gen)
{
	struct ipc_sm_record *recs;
	uint64_t ids = sm_ids(conn_id, gen);
	uint32_t hwm;

	if (slot >= s->hdr->nslots)
		return 0;
	recs = sm_records(s, slot);
	hwm = atomic_load_explicit(&s->hdr->slots[slot].rec_hwm,
				   memory_order_acquire);
	if (hwm > s->hdr->records)
		hwm = s->hdr->records;
	for (uint32_t i = 0; i < hwm; i++) {
		if (atomic_load_explicit(&recs[i].state, memory_order_acquire)
		    != SM_REC_DETACHED || !recs[i].resumable ||
		    atomic_load_explicit(&recs[i].ids, memory_order_relaxed)
		    != ids)
			continue;
		int64_t t = atomic_load_explicit(&recs[i].detached_ms,
						 memory_order_relaxed);
		return t > 0 ? t : 1;
	}
	return 0;
}

/* ---- the slot's worker ------------------------------------------------- */

static int sm_fail(const char *error, const char **error_r)
{
	*error_r = error;
	return -1;
}

static const struct ipc_sm_pub sm_pub_empty = {
	.head = -1, .tail = -1, .presence = -1,
};

static int32_t sm_record_take(struct smstore *s, unsigned slot)
{
	struct ipc_sm_slot *sl = &s->hdr->slots[slot];
	int32_t i = sl->rec_free;
	uint32_t hwm;

	if (i >= 0) {
		sl->rec_free = sm_records(s, slot)[i].next_free;
		return i;
	}
	hwm = atomic_load_explicit(&sl->rec_hwm, memory_order_relaxed);
	if (hwm >= s->hdr->records)
		return -1;
	atomic_store_explicit(&sl->rec_hwm, hwm + 1, memory_order_release);
	return (int32_t)hwm;
}

/* smstore_open with a token: random (NULL) or an existing previd's
 * (idref: what that previd names). */
static int sm_open(struct smstore *s, unsigned slot, const uint8_t *token,
		   const struct sm_ref *idref, const char *jid,
		   uint32_t conn_id, uint32_t gen, int resumable,
		   uint32_t max_s, struct sm_ref *ref_r, const char **error_r)
{
	size_t len = strnlen(jid, IPC_JID_MAX + 1);
	struct ipc_sm_record *r;
	int32_t i;

	if (slot >= s->hdr->nslots)
		return sm_fail("worker slot out of range", error_r);
	if (len == 0 || len > IPC_JID_MAX)
		return sm_fail("JID empty or too long", error_r);
	if ((i = sm_record_take(s, slot)) < 0)
		return sm_fail("all stream management records of the worker "
			       "are in use (sm.records_per_worker)", error_r);
	r = &sm_records(s, slot)[i];
	atomic_store(&r->seq, atomic_load(&r->seq) + 1);
	if (token != NULL)
		memcpy(r->token, token, sizeof(r->token));
	else
		randombytes_buf(r->token, sizeof(r->token));
	r->id_slot = idref != NULL ? idref->slot : (uint16_t)slot;
	r->id_index = idref != NULL ? idref->index : (uint32_t)i;
	r->id_seq = idref != NULL ? idref->seq : atomic_load(&r->seq);
	memcpy(r->jid, jid, len);
	r->jid[len] = '\0';
	r->jid_len = (uint16_t)len;
	r->resumable = resumable != 0;
	r->max_s = max_s;
	atomic_store(&r->mech, 0);
	atomic_store(&r->ids, sm_ids(conn_id, gen));
	atomic_store(&r->detached_ms, 0);
	atomic_store(&r->h_in, 0);
	for (unsigned k = 0; k < SMSTORE_EXT_WORDS; k++)
		atomic_store_explicit(&r->ext_words[k], 0,
				      memory_order_relaxed);
	r->pub[0] = sm_pub_empty;
	r->pub[1] = sm_pub_empty;
	atomic_store(&r->cur, 0);
	sm_hook("open");
	atomic_store_explicit(&r->state, SM_REC_ATTACHED,
			      memory_order_release);
	sm_hash_insert(s, slot, (uint32_t)i);
	sm_gauge_add(&s->hdr->slots[slot].records_used, 1);
	sm_changed(s, slot);
	ref_r->slot = (uint16_t)slot;
	ref_r->index = (uint32_t)i;
	ref_r->seq = atomic_load(&r->seq);
	return 0;
}

int smstore_open(struct smstore *s, unsigned slot, const char *jid,
		 uint32_t conn_id, uint32_t gen, int resumable,
		 uint32_t max_s, struct sm_ref *ref_r,
		 char id_r[SMSTORE_ID_MAX], const char **error_r)
{
	if (sm_open(s, slot, NULL, NULL, jid, conn_id, gen, resumable, max_s,
		    ref_r, error_r) < 0)
		return -1;
	if (!resumable || smstore_id(s, ref_r, id_r) < 0)
		id_r[0] = '\0';
	return 0;
}

int smstore_id(struct smstore *s, const struct sm_ref *ref,
	       char id_r[SMSTORE_ID_MAX])
{
	struct ipc_sm_record *r = sm_rec(s, ref);
	struct sm_ref idref;

	if (r == NULL || !r->resumable)
		return -1;
	idref.slot = r->id_slot;
	idref.index = r->id_index;
	idref.seq = r->id_seq;
	sm_id_encode(&idref, r->token, id_r);
	return 0;
}

int smstore_open_as(struct smstore *s, unsigned slot, const char *id,
		    const char *jid, uint32_t conn_id, uint32_t gen,
		    int resumable, uint32_t max_s, struct sm_ref *ref_r,
		    const char **error_r)
{
	uint8_t token[IPC_SM_TOKEN];
	struct sm_ref old;
	int ret;

	if (id == NULL || sm_id_decode(id, strlen(id), &old, token) < 0)
		return sm_fail("not a stream management id", error_r);
	ret = sm_open(s, slot, token, &old, jid, conn_id, gen, resumable,
		      max_s, ref_r, error_r);
	sodium_memzero(token, sizeof(token));
	return ret;
}

/* Bytes the bound counts for a session with q's journal and presence. */
static uint64_t sm_cost(const struct ipc_sm_pub *q)
{
	return q->bytes + (uint64_t)q->unacked * SMSTORE_STANZA_OVERHEAD +
	       q->presence_len;
}

int smstore_append(struct smstore *s, const struct sm_ref *ref,
		   const char *data, size_t len, const char **error_r)
{
	return smstore_append_token(s, ref, data, len, 0, error_r);
}

int smstore_append_token(struct smstore *s, const struct sm_ref *ref,
			 const char *data, size_t len, uint32_t token,
			 const char **error_r)
{
	struct ipc_sm_record *r = sm_rec(s, ref);
	struct ipc_sm_pub q;
	int32_t first, last;

	if (r == NULL)
		return sm_fail("stream management record gone", error_r);
	q = *sm_pub(r);
	if (q.unacked >= atomic_load_explicit(&s->hdr->max_stanzas,
					      memory_order_relaxed))
		return sm_fail("too many unacknowledged stanzas "
			       "(sm.max_unacked_stanzas)", error_r);
	if (len > SMSTORE_BYTES_MAX ||
	    sm_cost(&q) + len + SMSTORE_STANZA_OVERHEAD >
	    atomic_load_explicit(&s->hdr->max_bytes, memory_order_relaxed))
		return sm_fail("too many unacknowledged bytes "
			       "(sm.max_unacked_bytes)", error_r);
	if (sm_chain_write(s, ref->slot, data, len, token, &first, &last) < 0)
		return sm_fail("stream management pool full "
			       "(sm.pool_bytes_per_worker)", error_r);
	if (q.tail >= 0)
		sm_blocks(s, ref->slot)[q.tail].next = first;
	else
		q.head = first;
	q.tail = last;
	q.unacked++;
	q.bytes += len;
	sm_hook("append");
	sm_publish(r, &q);
	return 0;
}

int smstore_ack(struct smstore *s, const struct sm_ref *ref, uint32_t h)
{
	struct ipc_sm_record *r = sm_rec(s, ref);
	struct ipc_sm_pub q;
	uint32_t n;
	uint64_t bytes = 0;
	int32_t last = -1, old_head;

	if (r == NULL)
		return -1;
	q = *sm_pub(r);
	n = h - q.h_acked;      /* modulo 2^32 */
	if (n > q.unacked)
		return -1;
	if (n == 0)
		return 0;
	if (sm_chain_walk(s, ref->slot, q.head, n, NULL, false, &bytes,
			  &last) < 0) {
		log_error("sm journal of slot %u record %u: the chain does "
			  "not walk", ref->slot, ref->index);
		return -1;
	}
	old_head = q.head;
	q.unacked -= n;
	q.h_acked = h;
	q.bytes -= bytes;
	q.head = q.unacked > 0 ? sm_blocks(s, ref->slot)[last].next : -1;
	if (q.unacked == 0)
		q.tail = -1;
	sm_publish(r, &q);
	sm_hook("ack");
	sm_chain_free(s, ref->slot, old_head, n);
	return 0;
}

void smstore_set_h_in(struct smstore *s, const struct sm_ref *ref,
		      uint32_t h_in)
{
	struct ipc_sm_record *r = sm_rec(s, ref);

	if (r != NULL)
		atomic_store_explicit(&r->h_in, h_in, memory_order_release);
}

int smstore_set_h_acked(struct smstore *s, const struct sm_ref *ref,
			uint32_t h)
{
	struct ipc_sm_record *r = sm_rec(s, ref);
	struct ipc_sm_pub q;

	if (r == NULL)
		return -1;
	q = *sm_pub(r);
	if (q.unacked != 0)
		return -1;
	q.h_acked = h;
	sm_publish(r, &q);
	return 0;
}

int smstore_set_presence(struct smstore *s, const struct sm_ref *ref,
			 int16_t priority, uint8_t available,
			 const char *presence, size_t len,
			 const char **error_r)
{
	struct ipc_sm_record *r = sm_rec(s, ref);
	struct ipc_sm_pub q;
	int32_t first = -1, last, old;
	uint32_t old_len;

	if (r == NULL)
		return sm_fail("stream management record gone", error_r);
	if (presence == NULL)
		len = 0;
	q = *sm_pub(r);
	if (len > SMSTORE_BYTES_MAX || sm_cost(&q) - q.presence_len + len >
	    atomic_load_explicit(&s->hdr->max_bytes, memory_order_relaxed))
		return sm_fail("presence over the session's bound "
			       "(sm.max_unacked_bytes)", error_r);
	if (len > 0 && sm_chain_write(s, ref->slot, presence, len, 0, &first,
				      &last) < 0)
		return sm_fail("stream management pool full "
			       "(sm.pool_bytes_per_worker)", error_r);
	old = q.presence;
	old_len = q.presence_len;
	q.presence = first;
	q.presence_len = (uint32_t)len;
	q.priority = priority;
	q.available = available;
	sm_hook("presence");
	sm_publish(r, &q);
	if (old >= 0 && old_len > 0)
		sm_chain_free(s, ref->slot, old, 1);
	return 0;
}

void smstore_set_ext_word(struct smstore *s, const struct sm_ref *ref,
			  unsigned ext_index, uint32_t word)
{
	struct ipc_sm_record *r = sm_rec(s, ref);

	if (r != NULL && ext_index < SMSTORE_EXT_WORDS)
		atomic_store_explicit(&r->ext_words[ext_index], word,
				      memory_order_release);
}

void smstore_set_mech(struct smstore *s, const struct sm_ref *ref,
		      uint8_t mech)
{
	struct ipc_sm_record *r = sm_rec(s, ref);

	if (r != NULL)
		atomic_store_explicit(&r->mech, mech, memory_order_release);
}

void smstore_set_state(struct smstore *s, const struct sm_ref *ref,
		       enum sm_record_state st, int64_t now_ms)
{
	struct ipc_sm_record *r = sm_rec(s, ref);

	if (r == NULL || st == SM_REC_FREE || st > SM_REC_GIVEN)
		return;
	atomic_store(&r->detached_ms, st == SM_REC_DETACHED ? now_ms : 0);
	atomic_store_explicit(&r->state, st, memory_order_release);
	sm_changed(s, ref->slot);
}

void smstore_set_ids(struct smstore *s, const struct sm_ref *ref,
		     uint32_t conn_id, uint32_t gen)
{
	struct ipc_sm_record *r = sm_rec(s, ref);

	if (r == NULL)
		return;
	atomic_store_explicit(&r->ids, sm_ids(conn_id, gen),
			      memory_order_release);
	sm_changed(s, ref->slot);
}

void smstore_close(struct smstore *s, const struct sm_ref *ref)
{
	struct ipc_sm_record *r = sm_rec(s, ref);
	struct ipc_sm_slot *sl;
	struct ipc_sm_pub q;

	if (r == NULL)
		return;
	sl = &s->hdr->slots[ref->slot];
	q = *sm_pub(r);
	atomic_store_explicit(&r->state, SM_REC_FREE, memory_order_release);
	sm_changed(s, ref->slot);
	sm_hook("close");
	sm_hash_remove(s, ref->slot, ref->index);
	if (q.unacked > 0)
		sm_chain_free(s, ref->slot, q.head, q.unacked);
	if (q.presence >= 0 && q.presence_len > 0)
		sm_chain_free(s, ref->slot, q.presence, 1);
	r->next_free = sl->rec_free;
	sl->rec_free = (int32_t)ref->index;
	sm_gauge_add(&sl->records_used, -1);
}

/* ---- recovery ------------------------------------------------------------ */

/* Walk a FREE-or-not record's published chains, marking their blocks;
 * a record whose chains do not walk is freed (logged).  Returns 1 when
 * the record is in use afterwards, 0 when FREE. */
static int sm_recover_record(struct smstore *s, unsigned slot, uint32_t i,
			     uint8_t *marks, uint32_t *blocks_r)
{
	struct ipc_sm_record *r = &sm_records(s, slot)[i];
	uint32_t st = atomic_load_explicit(&r->state, memory_order_acquire);
	struct ipc_sm_pub q;
	uint64_t bytes = 0, pbytes = 0;
	int32_t last = -1;
	long n = 0, p = 0;

	if (st == SM_REC_FREE)
		return 0;
	q = *sm_pub(r);
	if (st > SM_REC_GIVEN || r->jid_len == 0 || r->jid_len > IPC_JID_MAX ||
	    (q.unacked > 0 && (n = sm_chain_walk(s, slot, q.head, q.unacked,
						  marks, false, &bytes,
						  &last)) < 0) ||
	    (q.presence_len > 0 && (p = sm_chain_walk(s, slot, q.presence, 1,
						       marks, false, &pbytes,
						       NULL)) < 0) ||
	    (q.presence_len > 0 && pbytes != q.presence_len)) {
		log_error("sm journal of slot %u: record %u is not whole "
			  "after the worker's death: dropped", slot, i);
		atomic_store(&r->state, SM_REC_FREE);
		return -1;
	}
	if (q.unacked > 0) {
		/* An append that was not published may have linked the
		 * tail to blocks that are free again now. */
		sm_blocks(s, slot)[last].next = -1;
		q.tail = last;
		q.bytes = bytes;
	} else {
		q.head = q.tail = -1;
		q.bytes = 0;
	}
	if (q.presence_len == 0)
		q.presence = -1;
	sm_publish(r, &q);
	*blocks_r += (uint32_t)(n + p);
	return 1;
}

void smstore_recover_slot(struct smstore *s, unsigned slot)
{
	struct ipc_sm_slot *sl;
	struct ipc_sm_record *recs;
	uint32_t rhwm, bhwm, used = 0, blocks = 0;
	uint8_t *marks;
	bool redo;

	if (slot >= s->hdr->nslots)
		return;
	sl = &s->hdr->slots[slot];
	recs = sm_records(s, slot);
	rhwm = atomic_load(&sl->rec_hwm);
	bhwm = atomic_load(&sl->blk_hwm);
	if (rhwm > s->hdr->records)
		atomic_store(&sl->rec_hwm, rhwm = s->hdr->records);
	if (bhwm > s->hdr->blocks)
		atomic_store(&sl->blk_hwm, bhwm = s->hdr->blocks);
	marks = calloc((size_t)bhwm / 8 + 1, 1);
	if (marks == NULL)
		log_fatal("sm journal recovery: out of memory");
	/* A record dropped as not whole may have marked blocks another
	 * record holds: walk again without it. */
	do {
		redo = false;
		used = blocks = 0;
		memset(marks, 0, (size_t)bhwm / 8 + 1);
		for (uint32_t i = 0; i < rhwm && !redo; i++) {
			int k = sm_recover_record(s, slot, i, marks, &blocks);
			redo = k < 0;
			used += k > 0;
		}
	} while (redo);
	sl->rec_free = -1;
	memset((void *)sm_buckets(s, slot), 0,
	       (size_t)s->hdr->nbuckets * sizeof(uint32_t));
	for (uint32_t i = rhwm; i-- > 0;) {
		if (atomic_load(&recs[i].state) != SM_REC_FREE) {
			sm_hash_insert(s, slot, i);
			continue;
		}
		recs[i].next_free = sl->rec_free;
		sl->rec_free = (int32_t)i;
	}
	sl->blk_free = -1;
	for (uint32_t i = bhwm; i-- > 0;)
		if (!(marks[i >> 3] & (1u << (i & 7))))
			sm_block_give(s, slot, (int32_t)i);
	free(marks);
	atomic_store(&sl->records_used, used);
	atomic_store(&sl->blocks_used, blocks);
	atomic_store(&sl->recoveries, atomic_load(&sl->recoveries) + 1);
	sm_changed(s, slot);
}

/* ---- readers ------------------------------------------------------------- */

/* The record answers to the previd that decodes to idref. */
static int sm_names(const struct ipc_sm_record *r, const struct sm_ref *idref)
{
	return r->id_slot == idref->slot && r->id_index == idref->index &&
	       r->id_seq == idref->seq;
}

int smstore_id_names(const char *id, size_t id_len, struct sm_ref *ref_r)
{
	uint8_t token[IPC_SM_TOKEN];
	int r = sm_id_decode(id, id_len, ref_r, token);
	sodium_memzero(token, sizeof(token));
	return r;
}

int smstore_find(struct smstore *s, const char *id, size_t id_len,
		 struct sm_ref *ref_r)
{
	uint8_t token[IPC_SM_TOKEN];
	struct sm_ref ref;
	struct ipc_sm_record *r;
	int32_t i;
	int found = 0;

	if (sm_id_decode(id, id_len, &ref, token) < 0)
		return 0;
	/* Where the id was made, unless the session moved since.  Either
	 * way the record must answer to this very id (the slot, index and
	 * use count it names, smstore_id), not only to its token: one
	 * spelling per session. */
	r = sm_rec(s, &ref);
	if (r != NULL && sm_findable(r) && sm_names(r, &ref) &&
	    sodium_memcmp(r->token, token, IPC_SM_TOKEN) == 0) {
		*ref_r = ref;
		found = 1;
	}
	for (unsigned slot = 0; !found && slot < s->hdr->nslots; slot++) {
		if ((i = sm_hash_lookup(s, slot, token)) < 0 ||
		    !sm_names(&sm_records(s, slot)[i], &ref))
			continue;
		ref_r->slot = (uint16_t)slot;
		ref_r->index = (uint32_t)i;
		ref_r->seq = atomic_load(&sm_records(s, slot)[i].seq);
		found = 1;
	}
	sodium_memzero(token, sizeof(token));
	return found;
}

int smstore_read(struct smstore *s, const struct sm_ref *ref,
		 struct sm_state *st_r)
{
	struct ipc_sm_record *r = sm_rec(s, ref);
	struct ipc_sm_pub q;
	uint64_t ids;

	if (r == NULL)
		return -1;
	q = *sm_pub(r);
	memset(st_r, 0, sizeof(*st_r));
	st_r->state = (enum sm_record_state)atomic_load_explicit(
		&r->state, memory_order_acquire);
	st_r->resumable = r->resumable;
	memcpy(st_r->jid, r->jid, r->jid_len <= IPC_JID_MAX ? r->jid_len :
	       IPC_JID_MAX);
	ids = atomic_load_explicit(&r->ids, memory_order_acquire);
	st_r->conn_id = (uint32_t)ids;
	st_r->gen = (uint32_t)(ids >> 32);
	st_r->h_in = atomic_load_explicit(&r->h_in, memory_order_acquire);
	st_r->h_acked = q.h_acked;
	st_r->h_sent = q.h_acked + q.unacked;
	st_r->unacked = q.unacked;
	st_r->unacked_bytes = q.bytes;
	st_r->max_s = r->max_s;
	st_r->detached_ms = atomic_load(&r->detached_ms);
	st_r->priority = q.priority;
	st_r->available = q.available;
	st_r->mech = atomic_load(&r->mech);
	for (unsigned k = 0; k < SMSTORE_EXT_WORDS; k++)
		st_r->ext_words[k] = atomic_load_explicit(
			&r->ext_words[k], memory_order_acquire);
	st_r->presence_len = q.presence_len;
	/* Freed or reused while copied: not this record any more. */
	return atomic_load(&r->seq) == ref->seq &&
	       atomic_load(&r->state) != SM_REC_FREE ? 0 : -1;
}

/* Copy one chain (count 1) of len bytes into out. */
static int sm_chain_copy(struct smstore *s, unsigned slot, int32_t *i,
			 char *out, size_t len)
{
	struct ipc_sm_block *b = sm_blocks(s, slot);
	uint32_t hwm = atomic_load(&s->hdr->slots[slot].blk_hwm);
	size_t got = 0;

	for (;;) {
		if (*i < 0 || (uint32_t)*i >= hwm || hwm > s->hdr->blocks ||
		    b[*i].len > IPC_SM_BLOCK_DATA || got + b[*i].len > len)
			return -1;
		memcpy(out + got, b[*i].data, b[*i].len);
		got += b[*i].len;
		bool last = b[*i].flags & IPC_SM_BLOCK_F_LAST;
		*i = b[*i].next;
		if (last)
			return (int)got;
	}
}

long smstore_presence(struct smstore *s, const struct sm_ref *ref,
		      char *out, size_t out_cap)
{
	struct ipc_sm_record *r = sm_rec(s, ref);
	struct ipc_sm_pub q;
	int32_t i;

	if (r == NULL)
		return -1;
	q = *sm_pub(r);
	if (q.presence_len == 0)
		return 0;
	if (q.presence_len > out_cap)
		return -1;
	i = q.presence;
	return sm_chain_copy(s, ref->slot, &i, out, q.presence_len) ==
	       (int)q.presence_len ? (long)q.presence_len : -1;
}

/* The length of the stanza starting at block i (its blocks' lens up to
 * the last one), or -1. */
static long sm_stanza_len(struct smstore *s, unsigned slot, int32_t i)
{
	uint64_t bytes;

	if (sm_chain_walk(s, slot, i, 1, NULL, false, &bytes, NULL) < 0)
		return -1;
	return (long)bytes;
}

int smstore_foreach_tokens(struct smstore *s, const struct sm_ref *ref,
			   int (*cb)(uint32_t seq, uint32_t token, void *ctx),
			   void *ctx)
{
	struct ipc_sm_record *r = sm_rec(s, ref);
	struct ipc_sm_block *b = sm_blocks(s, ref->slot);
	uint32_t hwm = atomic_load(&s->hdr->slots[ref->slot].blk_hwm);
	struct ipc_sm_pub q;
	int32_t i;
	int ret = 0;

	if (r == NULL)
		return -1;
	q = *sm_pub(r);
	i = q.head;
	for (uint32_t k = 0; k < q.unacked && ret == 0; k++) {
		uint32_t token;
		/* the first block's token, then on to the chain's end */
		if (i < 0 || (uint32_t)i >= hwm || hwm > s->hdr->blocks)
			return -1;
		token = b[i].token;
		for (uint32_t n = 0;; n++) {
			if (i < 0 || (uint32_t)i >= hwm || n > s->hdr->blocks)
				return -1;
			bool last = b[i].flags & IPC_SM_BLOCK_F_LAST;
			i = b[i].next;
			if (last)
				break;
		}
		if (token != 0)
			ret = cb(q.h_acked + k + 1, token, ctx);
	}
	return ret;
}

int smstore_foreach_unacked(struct smstore *s, const struct sm_ref *ref,
			    int (*cb)(uint32_t seq, const char *data,
				      size_t len, void *ctx),
			    void *ctx)
{
	struct ipc_sm_record *r = sm_rec(s, ref);
	struct ipc_sm_pub q;
	char *buf = NULL;
	size_t cap = 0;
	int32_t i;
	int ret = 0;

	if (r == NULL)
		return -1;
	q = *sm_pub(r);
	i = q.head;
	for (uint32_t k = 0; k < q.unacked && ret == 0; k++) {
		long len = sm_stanza_len(s, ref->slot, i);

		if (len < 0) {
			ret = -1;
			break;
		}
		if ((size_t)len + 1 > cap) {
			char *nb = realloc(buf, (size_t)len + 1);
			if (nb == NULL) {
				ret = -1;
				break;
			}
			buf = nb;
			cap = (size_t)len + 1;
		}
		if (sm_chain_copy(s, ref->slot, &i, buf, (size_t)len) != len) {
			ret = -1;
			break;
		}
		buf[len] = '\0';
		ret = cb(q.h_acked + k + 1, buf, (size_t)len, ctx);
	}
	free(buf);
	return ret;
}

int smstore_foreach_record(struct smstore *s, unsigned slot,
			   int (*cb)(const struct sm_ref *ref,
				     const struct sm_state *st, void *ctx),
			   void *ctx)
{
	struct ipc_sm_record *recs;
	struct sm_state *st;
	uint32_t hwm;
	int ret = 0;

	if (slot >= s->hdr->nslots)
		return -1;
	st = malloc(sizeof(*st));
	if (st == NULL)
		return -1;
	recs = sm_records(s, slot);
	hwm = atomic_load(&s->hdr->slots[slot].rec_hwm);
	if (hwm > s->hdr->records)
		hwm = s->hdr->records;
	for (uint32_t i = 0; i < hwm && ret == 0; i++) {
		struct sm_ref ref = { (uint16_t)slot, i, 0 };

		if (atomic_load_explicit(&recs[i].state,
					 memory_order_acquire) == SM_REC_FREE)
			continue;
		ref.seq = atomic_load(&recs[i].seq);
		if (smstore_read(s, &ref, st) == 0)
			ret = cb(&ref, st, ctx);
	}
	free(st);
	return ret;
}

void smstore_usage(struct smstore *s, unsigned slot, uint32_t *records_r,
		   uint64_t *bytes_r)
{
	*records_r = 0;
	*bytes_r = 0;
	if (slot >= s->hdr->nslots)
		return;
	*records_r = atomic_load_explicit(&s->hdr->slots[slot].records_used,
					  memory_order_relaxed);
	*bytes_r = (uint64_t)atomic_load_explicit(
		&s->hdr->slots[slot].blocks_used, memory_order_relaxed) *
		IPC_SM_BLOCK;
}

/* ---- verify -------------------------------------------------------------- */

int smstore_verify_slot(struct smstore *s, unsigned slot,
			const char **error_r)
{
	struct ipc_sm_slot *sl;
	struct ipc_sm_record *recs;
	uint32_t rhwm, bhwm, used = 0, inuse = 0, nfree = 0;
	uint8_t *marks;
	int ret = -1;

	if (slot >= s->hdr->nslots)
		return sm_fail("slot out of range", error_r);
	sl = &s->hdr->slots[slot];
	recs = sm_records(s, slot);
	rhwm = atomic_load(&sl->rec_hwm);
	bhwm = atomic_load(&sl->blk_hwm);
	if (rhwm > s->hdr->records || bhwm > s->hdr->blocks)
		return sm_fail("high-water mark beyond capacity", error_r);
	marks = calloc((size_t)bhwm / 8 + 1, 1);
	if (marks == NULL)
		return sm_fail("out of memory", error_r);
	for (uint32_t i = 0; i < rhwm; i++) {
		const struct ipc_sm_pub *q;
		uint64_t bytes = 0, pbytes = 0;
		int32_t last = -1;
		long n = 0, p = 0;

		if (atomic_load(&recs[i].state) == SM_REC_FREE)
			continue;
		inuse++;
		q = sm_pub(&recs[i]);
		if (q->unacked > 0 &&
		    ((n = sm_chain_walk(s, slot, q->head, q->unacked, marks,
					false, &bytes, &last)) < 0 ||
		     bytes != q->bytes || last != q->tail)) {
			*error_r = "a journal chain does not match its record";
			goto out;
		}
		if (q->unacked == 0 && (q->head != -1 || q->tail != -1 ||
					q->bytes != 0)) {
			*error_r = "an empty journal with blocks";
			goto out;
		}
		if (q->presence_len > 0 &&
		    ((p = sm_chain_walk(s, slot, q->presence, 1, marks, false,
					&pbytes, NULL)) < 0 ||
		     pbytes != q->presence_len)) {
			*error_r = "a presence chain does not match its record";
			goto out;
		}
		used += (uint32_t)(n + p);
	}
	for (int32_t i = sl->blk_free; i >= 0; i = sm_blocks(s, slot)[i].next) {
		if ((uint32_t)i >= bhwm || (marks[i >> 3] & (1u << (i & 7)))) {
			*error_r = "the free block list crosses a chain or "
				   "itself";
			goto out;
		}
		marks[i >> 3] |= (uint8_t)(1u << (i & 7));
		nfree++;
	}
	if (used + nfree != bhwm) {
		*error_r = "blocks neither used nor free";
		goto out;
	}
	if (used != atomic_load(&sl->blocks_used) ||
	    inuse != atomic_load(&sl->records_used)) {
		*error_r = "gauges do not match the records";
		goto out;
	}
	nfree = 0;
	for (int32_t i = sl->rec_free; i >= 0; i = recs[i].next_free) {
		if ((uint32_t)i >= rhwm || nfree > rhwm ||
		    atomic_load(&recs[i].state) != SM_REC_FREE) {
			*error_r = "the free record list is broken";
			goto out;
		}
		nfree++;
	}
	if (nfree + inuse != rhwm) {
		*error_r = "records neither used nor free";
		goto out;
	}
	ret = 0;
out:
	free(marks);
	return ret;
}

/*
 * caps.c - the shared entity-capabilities cache (layout in ipc.h, API
 * in caps.h).  A (algo, v2, ver) hashes with the table's random key to
 * a window of IPC_CAPS_PROBE consecutive slots.  Writers take the
 * robust mutex and publish a record between two increments of its
 * seq (odd while written); readers copy what they need and retry while
 * seq is odd or changed, so a worker fanning out a PEP event reads
 * other workers' sessions' caps without any lock.
 *
 * Eviction, when the window is full: the VERIFIED entry no session
 * holds (refs 0), least recently used first; else the LRU VERIFIED
 * entry idle for idle_ms (caps.idle_timeout: the refs of a worker that
 * died are never given back, and live sessions' entries are touched
 * each minute); else the insert is refused (full++).  So a client
 * minting vers holds only the entries its live sessions use.  Each
 * eviction bumps the gen of the slot, so a
 * session record still naming it no longer matches (caps unknown: no
 * events, never wrong ones) and the evictions counter tells workers to
 * re-resolve.  Failure policy: -1 on lock failure; a holder killed
 * mid-write leaves one record with an odd seq, which the next locker
 * frees (records stand alone).
 */
#include <errno.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "caps.h"
#include "log.h"
#include "shm.h"

#define CAPS_CAPACITY_MAX 32768u      /* idx + 1 fits 16 bits */

_Static_assert(sizeof(struct ipc_caps_table) % 8 == 0, "caps header");
_Static_assert(sizeof(struct ipc_caps_rec) % 8 == 0, "caps record");

struct shm_caps {
	struct ipc_caps_table *hdr;
	struct ipc_caps_rec *recs;
	uint32_t mask;
};

static const struct shm_table_kind caps_kind = {
	.probe = IPC_CAPS_PROBE,
	.max = CAPS_CAPACITY_MAX,
	.hdr_size = sizeof(struct ipc_caps_table),
	.rec_size = sizeof(struct ipc_caps_rec),
	.range_error = "caps table capacity out of range",
	.area_error = "caps table area too small or misaligned",
	.mutex_error = "caps table mutex init failed",
	.header_error = "caps table header is inconsistent",
};

size_t shm_caps_size(uint32_t capacity)
{
	return shm_table_size(&caps_kind, capacity);
}

int shm_caps_init(void *mem, size_t size, uint32_t capacity,
		  const char **error_r)
{
	struct ipc_caps_table *hdr = mem;

	if (shm_table_init(&caps_kind, mem, size, capacity, &hdr->node_key,
			   sizeof(hdr->node_key), &hdr->lock, error_r) < 0)
		return -1;
	hdr->version = IPC_VERSION;
	hdr->capacity = shm_table_capacity(&caps_kind, capacity);
	hdr->magic = IPC_CAPS_MAGIC;
	return 0;
}

struct shm_caps *shm_caps_attach(void *mem, const char **error_r)
{
	struct ipc_caps_table *hdr = mem;
	struct shm_caps *t = shm_table_attach(&caps_kind,
					hdr->magic == IPC_CAPS_MAGIC,
					hdr->version, hdr->capacity,
					sizeof(*t), error_r);

	if (t == NULL)
		return NULL;
	t->hdr = hdr;
	t->recs = (struct ipc_caps_rec *)(hdr + 1);
	t->mask = hdr->capacity - 1;
	return t;
}

void shm_caps_detach(struct shm_caps **t)
{
	free(*t);
	*t = NULL;
}

static uint64_t caps_mix(uint64_t key, const char *s, size_t len)
{
	/* FNV-1a over the key and the text, then splitmix64's finalizer */
	uint64_t h = 0xcbf29ce484222325ULL;
	for (int i = 0; i < 8; i++) {
		h ^= (key >> (8 * i)) & 0xff;
		h *= 0x100000001b3ULL;
	}
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ULL;
	}
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebULL;
	h ^= h >> 31;
	return h;
}

uint64_t shm_caps_hash(const struct shm_caps *t, const char *s, size_t len)
{
	return caps_mix(t->hdr->node_key, s, len);
}

static uint64_t entry_key(const struct shm_caps *t, uint8_t algo, uint8_t v2,
			  const char *ver)
{
	uint64_t k = caps_mix(t->hdr->node_key ^ ((uint64_t)algo << 8 | v2),
			      ver, strlen(ver));
	return k != 0 ? k : 1;
}

/* ---- locked helpers ------------------------------------------------- */

static void rec_write_begin(struct ipc_caps_rec *r)
{
	atomic_fetch_add_explicit(&r->seq, 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
}

static void rec_write_end(struct ipc_caps_rec *r)
{
	atomic_fetch_add_explicit(&r->seq, 1, memory_order_release);
}

/* ---- lock-free readers (seqlock) ------------------------------------ */

/* A read starts at an even seq (*s_r) and stands if seq is the same
 * after it (rec_read_done); an odd one is a write under way. */
static int rec_read_begin(struct ipc_caps_rec *r, uint32_t *s_r)
{
	*s_r = atomic_load_explicit(&r->seq, memory_order_acquire);
	return (*s_r & 1) == 0;
}

static int rec_read_done(struct ipc_caps_rec *r, uint32_t s)
{
	atomic_thread_fence(memory_order_acquire);
	return atomic_load_explicit(&r->seq, memory_order_relaxed) == s;
}

#define REC_RETRY (-2)

/* look's answer on a steady view of record idx while it is VERIFIED
 * with generation gen16 (at most 64 tries), else none.  look answers
 * REC_RETRY for a torn read it can tell. */
static int rec_read_verified(struct shm_caps *t, uint32_t idx,
			     uint16_t gen16, int none,
			     int (*look)(struct ipc_caps_rec *r, void *arg),
			     void *arg)
{
	if (idx > t->mask)
		return none;
	struct ipc_caps_rec *r = &t->recs[idx];
	for (int tries = 0; tries < 64; tries++) {
		uint32_t s1;
		if (!rec_read_begin(r, &s1))
			continue;
		int v = r->state == IPC_CAPS_VERIFIED &&
			(uint16_t)r->gen == gen16 ? look(r, arg) : none;
		if (rec_read_done(r, s1) && v != REC_RETRY)
			return v;
	}
	return none;
}

static int table_lock(struct shm_caps *t)
{
	int ret = pthread_mutex_lock(&t->hdr->lock);

	if (ret == 0)
		return 0;
	if (ret != EOWNERDEAD)
		return -1;
	/* A record left mid-write (odd seq) is freed; the rest stand. */
	uint32_t used = 0;
	for (uint32_t i = 0; i <= t->mask; i++) {
		struct ipc_caps_rec *r = &t->recs[i];
		if (atomic_load_explicit(&r->seq, memory_order_relaxed) & 1) {
			r->state = IPC_CAPS_FREE;
			r->gen++;
			rec_write_end(r);
		}
		if (r->state != IPC_CAPS_FREE)
			used++;
	}
	t->hdr->used = used;
	t->hdr->recoveries++;
	pthread_mutex_consistent(&t->hdr->lock);
	log_warn("caps table: lock holder died, table kept");
	return 0;
}

static void table_unlock(struct shm_caps *t)
{
	pthread_mutex_unlock(&t->hdr->lock);
}

static int rec_is(const struct ipc_caps_rec *r, uint64_t key, uint8_t algo,
		  uint8_t v2, const char *ver)
{
	return r->state != IPC_CAPS_FREE && r->key == key && r->algo == algo &&
	       r->v2 == v2 && strcmp(r->ver, ver) == 0;
}

static struct ipc_caps_rec *rec_find(struct shm_caps *t, uint64_t key,
				     uint8_t algo, uint8_t v2, const char *ver)
{
	for (uint32_t i = 0; i < IPC_CAPS_PROBE; i++) {
		struct ipc_caps_rec *r = &t->recs[(key + i) & t->mask];
		if (rec_is(r, key, algo, v2, ver))
			return r;
	}
	return NULL;
}

/* A slot for a new key: FREE; else one that holds nothing anybody
 * waits for (INVALID, or PENDING whose query timed out: the client never
 * answered); else the LRU VERIFIED one no session holds; else the LRU
 * VERIFIED one idle for idle (an eviction: workers re-resolve their
 * sessions naming it). */
static struct ipc_caps_rec *rec_take(struct shm_caps *t, uint64_t key,
				     int64_t now, int64_t timeout,
				     int64_t idle)
{
	struct ipc_caps_rec *lru = NULL, *stale = NULL, *unref = NULL;
	for (uint32_t i = 0; i < IPC_CAPS_PROBE; i++) {
		struct ipc_caps_rec *r = &t->recs[(key + i) & t->mask];
		if (r->state == IPC_CAPS_FREE)
			return r;
		if (r->state == IPC_CAPS_INVALID ||
		    (r->state == IPC_CAPS_PENDING &&
		     now - r->since_ms >= timeout)) {
			if (stale == NULL || r->since_ms < stale->since_ms)
				stale = r;
			continue;
		}
		int64_t used = atomic_load_explicit(&r->last_used,
						    memory_order_relaxed);
		if (r->state != IPC_CAPS_VERIFIED)
			continue;
		if (r->refs == 0) {
			if (unref == NULL || used < atomic_load_explicit(
				    &unref->last_used, memory_order_relaxed))
				unref = r;
		} else if (now - used > idle &&
			   (lru == NULL || used < atomic_load_explicit(
				    &lru->last_used, memory_order_relaxed))) {
			lru = r;
		}
	}
	if (stale != NULL)
		return stale;
	if (unref != NULL)
		lru = unref;
	if (lru != NULL) {
		atomic_fetch_add_explicit(&t->hdr->evictions, 1,
					  memory_order_relaxed);
	} else {
		t->hdr->full++;
	}
	return lru;
}

static void rec_fill(struct shm_caps *t, struct ipc_caps_rec *r, uint64_t key,
		     uint8_t algo, uint8_t v2, const char *ver, uint32_t state,
		     int64_t now)
{
	rec_write_begin(r);
	if (r->state == IPC_CAPS_FREE)
		t->hdr->used++;
	r->gen++;
	r->state = state;
	r->key = key;
	r->algo = algo;
	r->v2 = v2;
	r->nnotify = 0;
	r->refs = 0;            /* a new entry: nobody holds it yet */
	r->since_ms = now;
	atomic_store_explicit(&r->last_used, now, memory_order_relaxed);
	size_t n = strlen(ver);
	memcpy(r->ver, ver, n + 1);
	rec_write_end(r);
}

static int ver_ok(const char *ver)
{
	return ver != NULL && ver[0] != '\0' &&
	       strlen(ver) <= IPC_CAPS_VER_MAX;
}

int shm_caps_begin(struct shm_caps *t, uint8_t algo, uint8_t v2,
		   const char *ver, int64_t now_ms, int64_t timeout_ms,
		   int64_t idle_ms, uint32_t *idx_r, uint32_t *gen_r)
{
	if (!ver_ok(ver))
		return SHM_CAPS_FULL;
	uint64_t key = entry_key(t, algo, v2, ver);
	int verdict;
	if (table_lock(t) < 0)
		return -1;
	struct ipc_caps_rec *r = rec_find(t, key, algo, v2, ver);
	if (r == NULL) {
		r = rec_take(t, key, now_ms, timeout_ms, idle_ms);
		if (r == NULL) {
			table_unlock(t);
			return SHM_CAPS_FULL;
		}
		rec_fill(t, r, key, algo, v2, ver, IPC_CAPS_PENDING, now_ms);
		verdict = SHM_CAPS_ASK;
	} else if (r->state == IPC_CAPS_VERIFIED) {
		atomic_store_explicit(&r->last_used, now_ms,
				      memory_order_relaxed);
		verdict = SHM_CAPS_KNOWN;
	} else if ((r->state == IPC_CAPS_PENDING &&
		    now_ms - r->since_ms >= timeout_ms) ||
		   r->state == IPC_CAPS_INVALID) {
		/* INVALID: the client that answered wrong is not asked again
		 * for 10x the timeout (caps_ext.c), but another one is, so a
		 * liar cannot keep a popular ver unknown */
		rec_write_begin(r);
		r->state = IPC_CAPS_PENDING;
		r->since_ms = now_ms;
		rec_write_end(r);
		verdict = SHM_CAPS_ASK;
	} else {
		verdict = r->state == IPC_CAPS_PENDING ? SHM_CAPS_WAIT
						       : SHM_CAPS_BAD;
	}
	*idx_r = (uint32_t)(r - t->recs);
	*gen_r = r->gen;
	table_unlock(t);
	return verdict;
}

int shm_caps_lookup(struct shm_caps *t, uint8_t algo, uint8_t v2,
		    const char *ver, uint32_t *idx_r, uint32_t *gen_r)
{
	if (!ver_ok(ver))
		return IPC_CAPS_FREE;
	uint64_t key = entry_key(t, algo, v2, ver);
	for (uint32_t i = 0; i < IPC_CAPS_PROBE; i++) {
		uint32_t idx = (uint32_t)((key + i) & t->mask);
		struct ipc_caps_rec *r = &t->recs[idx];
		for (int tries = 0; tries < 64; tries++) {
			uint32_t s1;
			if (!rec_read_begin(r, &s1))
				continue;
			uint32_t state = r->state, gen = r->gen;
			int match = r->key == key && r->algo == algo &&
				    r->v2 == v2 &&
				    strncmp(r->ver, ver, IPC_CAPS_VER_MAX) == 0;
			if (!rec_read_done(r, s1))
				continue;
			if (state != IPC_CAPS_FREE && match) {
				*idx_r = idx;
				*gen_r = gen;
				return (int)state;
			}
			break;
		}
	}
	return IPC_CAPS_FREE;
}

int shm_caps_verified(struct shm_caps *t, uint8_t algo, uint8_t v2,
		      const char *ver, const uint64_t *hashes, unsigned n,
		      int64_t now_ms, int64_t idle_ms, uint32_t *idx_r,
		      uint32_t *gen_r)
{
	if (!ver_ok(ver) || n > IPC_CAPS_NOTIFY_MAX)
		return -1;
	uint64_t key = entry_key(t, algo, v2, ver);
	if (table_lock(t) < 0)
		return -1;
	struct ipc_caps_rec *r = rec_find(t, key, algo, v2, ver);
	if (r == NULL && (r = rec_take(t, key, now_ms, INT64_MAX,
						  idle_ms)) != NULL)
		rec_fill(t, r, key, algo, v2, ver, IPC_CAPS_PENDING, now_ms);
	if (r == NULL) {
		table_unlock(t);
		return -1;
	}
	if (r->state != IPC_CAPS_VERIFIED) {
		/* a VERIFIED entry never changes: readers rely on it */
		rec_write_begin(r);
		if (n > 0)
			memcpy(r->notify, hashes, n * sizeof(*hashes));
		r->nnotify = (uint16_t)n;
		r->state = IPC_CAPS_VERIFIED;
		r->since_ms = now_ms;
		rec_write_end(r);
		atomic_fetch_add_explicit(&t->hdr->verified_epoch, 1,
					  memory_order_release);
	}
	atomic_store_explicit(&r->last_used, now_ms, memory_order_relaxed);
	*idx_r = (uint32_t)(r - t->recs);
	*gen_r = r->gen;
	table_unlock(t);
	return 0;
}

int shm_caps_invalid(struct shm_caps *t, uint8_t algo, uint8_t v2,
		     const char *ver, int64_t now_ms)
{
	if (!ver_ok(ver))
		return -1;
	uint64_t key = entry_key(t, algo, v2, ver);
	if (table_lock(t) < 0)
		return -1;
	struct ipc_caps_rec *r = rec_find(t, key, algo, v2, ver);
	if (r != NULL && r->state != IPC_CAPS_VERIFIED) {
		rec_write_begin(r);
		r->state = IPC_CAPS_INVALID;
		r->since_ms = now_ms;
		rec_write_end(r);
	}
	table_unlock(t);
	return 0;
}

struct caps_copy {
	uint64_t *hashes;
	unsigned max;
};

static int caps_copy(struct ipc_caps_rec *r, void *arg)
{
	struct caps_copy *c = arg;
	unsigned n = r->nnotify;
	if (n > IPC_CAPS_NOTIFY_MAX)
		return REC_RETRY;
	if (n > c->max)
		n = c->max;
	memcpy(c->hashes, r->notify, n * sizeof(*c->hashes));
	return (int)n;
}

int shm_caps_read(struct shm_caps *t, uint32_t idx, uint16_t gen16,
		  uint64_t *hashes, unsigned max)
{
	struct caps_copy c = { hashes, max };
	return rec_read_verified(t, idx, gen16, -1, caps_copy, &c);
}

static int caps_has(struct ipc_caps_rec *r, void *arg)
{
	uint64_t h = *(const uint64_t *)arg;
	unsigned n = r->nnotify;
	for (unsigned i = 0; i < n && i < IPC_CAPS_NOTIFY_MAX; i++)
		if (r->notify[i] == h)
			return 1;
	return 0;
}

int shm_caps_wants(struct shm_caps *t, uint32_t idx, uint16_t gen16,
		   uint64_t h)
{
	return rec_read_verified(t, idx, gen16, 0, caps_has, &h);
}

static int caps_verified(struct ipc_caps_rec *r, void *arg)
{
	(void)r;
	(void)arg;
	return 1;
}

int shm_caps_touch(struct shm_caps *t, uint32_t idx, uint16_t gen16,
		   int64_t now_ms)
{
	int ok = rec_read_verified(t, idx, gen16, 0, caps_verified, NULL);
	if (ok)
		atomic_store_explicit(&t->recs[idx].last_used, now_ms,
				      memory_order_relaxed);
	return ok;
}

int shm_caps_ref(struct shm_caps *t, uint32_t idx, uint16_t gen16,
		 int64_t now_ms)
{
	int ok = 0;
	if (idx > t->mask || table_lock(t) < 0)
		return 0;
	struct ipc_caps_rec *r = &t->recs[idx];
	if (r->state == IPC_CAPS_VERIFIED && (uint16_t)r->gen == gen16) {
		/* refs is not part of what readers copy: no seq bump */
		r->refs++;
		atomic_store_explicit(&r->last_used, now_ms,
				      memory_order_relaxed);
		ok = 1;
	}
	table_unlock(t);
	return ok;
}

/* Counted per entry (slot and gen): a new entry starts at 0, so the
 * refs a dead worker never gave back go with its entry, and a holder
 * whose entry was evicted anyway (idle_ms passed) changes nothing. */
void shm_caps_unref(struct shm_caps *t, uint32_t idx, uint16_t gen16)
{
	if (idx > t->mask || table_lock(t) < 0)
		return;
	struct ipc_caps_rec *r = &t->recs[idx];
	if (r->state == IPC_CAPS_VERIFIED && (uint16_t)r->gen == gen16 &&
	    r->refs > 0)
		r->refs--;
	table_unlock(t);
}

int shm_caps_abandon(struct shm_caps *t, uint32_t idx, uint32_t gen)
{
	int freed = 0;
	if (idx > t->mask || table_lock(t) < 0)
		return 0;
	struct ipc_caps_rec *r = &t->recs[idx];
	if (r->state == IPC_CAPS_PENDING && r->gen == gen) {
		rec_write_begin(r);
		r->state = IPC_CAPS_FREE;
		r->gen++;
		rec_write_end(r);
		t->hdr->used--;
		freed = 1;
	}
	table_unlock(t);
	return freed;
}

uint64_t shm_caps_epoch(const struct shm_caps *t)
{
	return atomic_load_explicit(&t->hdr->verified_epoch,
				    memory_order_acquire);
}

uint64_t shm_caps_evictions(const struct shm_caps *t)
{
	return atomic_load_explicit(&t->hdr->evictions, memory_order_relaxed);
}

void shm_caps_usage(struct shm_caps *t, struct shm_caps_usage *u_r)
{
	memset(u_r, 0, sizeof(*u_r));
	if (table_lock(t) < 0)
		return;
	u_r->used = t->hdr->used;
	u_r->capacity = t->hdr->capacity;
	u_r->recoveries = t->hdr->recoveries;
	u_r->evictions = shm_caps_evictions(t);
	u_r->full = t->hdr->full;
	table_unlock(t);
}

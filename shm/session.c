/*
 * session.c - the shared session table (layout in ipc.h, API in session.h).
 *
 * One robust process-shared mutex guards the table.  Each record's state
 * word is the truth: insert writes a whole record before storing USED,
 * delete stores FREE before unlinking, so a locker that inherits the lock
 * from a dead process (EOWNERDEAD) rebuilds every list from state words.
 * Failure policy: bad input, a full table or pool answers -1 and an error
 * string; nothing here allocates in shared memory or grows.  Remote
 * entries (other cluster nodes' sessions, session.h) share the chains,
 * so every bare-JID walk and the F_SIBLING_CARBONS upkeep count them;
 * the owner checks (rec_owned_by) and the slot sweeps skip them.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "session.h"
#include "shm.h"

/* Indices are int32 and records are 264 bytes: 4M sessions is ~1.1 GB,
 * far beyond what one box serves, and keeps every size in range. */
#define SESSION_CAPACITY_MAX (1u << 22)
/* Small tables still get some buckets; also keeps records 8-aligned. */
#define SESSION_BUCKETS_MIN 16u
/* next_free of a long-pool entry that a record owns. */
#define LONG_IN_USE (-2)
/* One bare JID may hold this fraction of the long pool, at least one. */
#define SESSION_LONG_SHARE_DIV 16u
/* sweep/foreach copy this many entries per lock hold (~50 KB of stack). */
#define SESSION_BATCH 16

_Static_assert(sizeof(struct ipc_session_table) % 8 == 0, "table header");
_Static_assert(sizeof(struct ipc_session) % 8 == 0, "record alignment");
_Static_assert(IPC_JID_MAX <= UINT16_MAX, "jid_len is 16 bits");
_Static_assert(offsetof(struct ipc_session, jid) == 80,
	       "the caps word sits in a pad: the record keeps its size");

struct shm_table {
	struct ipc_session_table *hdr;
	int32_t *buckets;
	struct ipc_session *recs;
	struct ipc_session_long *longs;
	_Atomic uint64_t *log;          /* the change log, NULL: none */
	uint32_t mask;                  /* nbuckets - 1 */
};

/* A log entry: the index below, its tag (position + 1) above. */
#define LOG_INDEX_MASK ((1u << IPC_SESSION_LOG_INDEX_BITS) - 1u)
#define LOG_TAG_MASK (UINT64_MAX >> IPC_SESSION_LOG_INDEX_BITS)
_Static_assert(SESSION_CAPACITY_MAX <= (1u << IPC_SESSION_LOG_INDEX_BITS),
	       "every record index fits in a log entry");

/* A validated JID: its length, bare part and hash. */
struct jid_key {
	const char *jid;
	size_t len;
	size_t bare_len;
	uint32_t hash;
};

void (*shm_session_test_hook)(void);

static uint8_t rec_flags(const struct ipc_session *r);
static void rec_set_flags(struct ipc_session *r, uint8_t flags);
static void rec_sync_carbons(struct shm_table *t, const struct ipc_session *r);

/* FNV-1a with a murmur3 finaliser: FNV alone spreads low bits poorly,
 * and the bucket index is the low bits. */
static uint32_t jid_hash(const char *s, size_t len)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < len; i++) {
		h ^= (uint8_t)s[i];
		h *= 16777619u;
	}
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

static uint32_t long_capacity_for(uint32_t capacity)
{
	return capacity / 32 + 16;
}

static uint32_t nbuckets_for(uint32_t capacity)
{
	uint32_t n = SESSION_BUCKETS_MIN;

	while (n < capacity)
		n <<= 1;
	return n;
}

/* Length 1..IPC_JID_MAX with no NUL inside (strnlen stops at the first
 * NUL, so a longer buffer without one is "too long"), non-empty bare. */
static int key_init(struct jid_key *k, const char *jid, bool bare_only,
		    const char **error_r)
{
	const char *slash;

	k->jid = jid;
	k->len = strnlen(jid, IPC_JID_MAX + 1);
	if (k->len == 0) {
		*error_r = "empty JID";
		return -1;
	}
	if (k->len > IPC_JID_MAX) {
		*error_r = "JID longer than 3071 bytes";
		return -1;
	}
	slash = memchr(jid, '/', k->len);
	if (slash != NULL && bare_only) {
		*error_r = "bare JID with a resource";
		return -1;
	}
	k->bare_len = slash == NULL ? k->len : (size_t)(slash - jid);
	if (k->bare_len == 0) {
		*error_r = "JID with an empty bare part";
		return -1;
	}
	k->hash = jid_hash(jid, k->bare_len);
	return 0;
}

/* The log's entries for a request: a power of two, 0 for none, and
 * UINT32_MAX when too large. */
static uint32_t log_size_for(uint32_t entries)
{
	uint32_t n = 1;

	if (entries == 0)
		return 0;
	if (entries > SHM_SESSION_LOG_MAX)
		return UINT32_MAX;
	while (n < entries)
		n <<= 1;
	return n;
}

/* Where the log starts: after the long pool, whose 3,076-byte entries
 * leave it 4-aligned only. */
static size_t log_offset_for(uint32_t capacity)
{
	size_t n = sizeof(struct ipc_session_table) +
		(size_t)nbuckets_for(capacity) * sizeof(int32_t) +
		(size_t)capacity * sizeof(struct ipc_session) +
		(size_t)long_capacity_for(capacity) *
		sizeof(struct ipc_session_long);

	return (n + 7) & ~(size_t)7;
}

size_t shm_session_size_log(uint32_t capacity, uint32_t log_entries)
{
	uint32_t log_size = log_size_for(log_entries);

	if (capacity == 0 || capacity > SESSION_CAPACITY_MAX ||
	    log_size == UINT32_MAX)
		return 0;
	return log_offset_for(capacity) + (size_t)log_size * sizeof(uint64_t);
}

size_t shm_session_size(uint32_t capacity)
{
	return shm_session_size_log(capacity, 0);
}

static void table_map(struct shm_table *t, struct ipc_session_table *hdr)
{
	t->hdr = hdr;
	t->buckets = (int32_t *)(hdr + 1);
	t->recs = (struct ipc_session *)(t->buckets + hdr->nbuckets);
	t->longs = (struct ipc_session_long *)(t->recs + hdr->capacity);
	t->log = hdr->log_size == 0 ? NULL : (_Atomic uint64_t *)
		((char *)hdr + log_offset_for(hdr->capacity));
	t->mask = hdr->nbuckets - 1;
}

/* Empty chains, every record and long entry on its free list, in index
 * order.  Also the tail of a rebuild, which then re-adds USED records. */
static void table_reset_lists(struct shm_table *t)
{
	struct ipc_session_table *hdr = t->hdr;

	for (uint32_t i = 0; i < hdr->nbuckets; i++)
		t->buckets[i] = -1;
	hdr->free_head = -1;
	for (uint32_t i = hdr->capacity; i-- > 0; ) {
		t->recs[i].next = hdr->free_head;
		hdr->free_head = (int32_t)i;
	}
	hdr->long_free_head = -1;
	for (uint32_t i = hdr->long_capacity; i-- > 0; ) {
		t->longs[i].next_free = hdr->long_free_head;
		hdr->long_free_head = (int32_t)i;
	}
	hdr->used = 0;
}

int shm_session_init(void *mem, size_t size, uint32_t capacity,
		     const char **error_r)
{
	return shm_session_init_log(mem, size, capacity, 0, error_r);
}

int shm_session_init_log(void *mem, size_t size, uint32_t capacity,
			 uint32_t log_entries, const char **error_r)
{
	struct ipc_session_table *hdr = mem;
	struct shm_table t;
	size_t need = shm_session_size_log(capacity, log_entries);

	if (need == 0) {
		*error_r = "session table capacity out of range";
		return -1;
	}
	if (size < need || ((uintptr_t)mem % 8) != 0) {
		*error_r = "session table area too small or misaligned";
		return -1;
	}
	memset(hdr, 0, sizeof(*hdr));
	hdr->version = IPC_VERSION;
	hdr->capacity = capacity;
	hdr->long_capacity = long_capacity_for(capacity);
	hdr->nbuckets = nbuckets_for(capacity);
	hdr->log_size = log_size_for(log_entries);
	if (shm_mutex_init(&hdr->lock) < 0) {
		*error_r = "session table mutex init failed";
		return -1;
	}
	table_map(&t, hdr);
	memset(t.recs, 0, (size_t)capacity * sizeof(*t.recs));
	if (t.log != NULL)
		memset((void *)t.log, 0, hdr->log_size * sizeof(*t.log));
	table_reset_lists(&t);
	/* Last, so a half-built table never passes attach's check. */
	hdr->magic = IPC_SHM_MAGIC;
	return 0;
}

struct shm_table *shm_session_attach(void *mem, const char **error_r)
{
	struct ipc_session_table *hdr = mem;
	struct shm_table *t;

	if (hdr->magic != IPC_SHM_MAGIC || hdr->version != IPC_VERSION) {
		*error_r = "session table magic or version mismatch";
		return NULL;
	}
	if (shm_session_size(hdr->capacity) == 0 ||
	    hdr->nbuckets != nbuckets_for(hdr->capacity) ||
	    hdr->long_capacity != long_capacity_for(hdr->capacity) ||
	    log_size_for(hdr->log_size) != hdr->log_size) {
		*error_r = "session table header is inconsistent";
		return NULL;
	}
	t = malloc(sizeof(*t));
	if (t == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	table_map(t, hdr);
	return t;
}

void shm_session_detach(struct shm_table **t)
{
	free(*t);
	*t = NULL;
}

/* ---- recovery ---------------------------------------------------------- */

/* Give a USED record back its long entry.  False if the record is
 * damaged (bad length, long entry out of range or already owned): only
 * a bug can do that, and dropping the record keeps the table sound. */
static bool rebuild_keep(struct shm_table *t, struct ipc_session *r)
{
	if (r->jid_len == 0 || r->jid_len > IPC_JID_MAX ||
	    r->bare_len == 0 || r->bare_len > r->jid_len)
		return false;
	if (r->jid_long < 0)
		return r->jid_len < IPC_JID_INLINE;
	if ((uint32_t)r->jid_long >= t->hdr->long_capacity ||
	    t->longs[r->jid_long].next_free == LONG_IN_USE)
		return false;
	t->longs[r->jid_long].next_free = LONG_IN_USE;
	return true;
}

/* Rebuild lists from state words.  Idempotent, so a locker that dies in
 * here just leaves the same work to the next one. */
static void table_rebuild(struct shm_table *t)
{
	struct ipc_session_table *hdr = t->hdr;
	uint32_t capacity = hdr->capacity;
	int32_t next_free;

	table_reset_lists(t);
	for (uint32_t i = 0; i < capacity; i++) {
		struct ipc_session *r = &t->recs[i];

		if (atomic_load(&r->state) == IPC_SESSION_USED &&
		    rebuild_keep(t, r)) {
			r->next = t->buckets[r->hash & t->mask];
			t->buckets[r->hash & t->mask] = (int32_t)i;
			hdr->used++;
		} else {
			atomic_store(&r->state, IPC_SESSION_FREE);
		}
	}
	/* Free lists hold only what no USED record owns. */
	hdr->free_head = -1;
	for (uint32_t i = capacity; i-- > 0; ) {
		if (atomic_load(&t->recs[i].state) != IPC_SESSION_USED) {
			t->recs[i].next = hdr->free_head;
			hdr->free_head = (int32_t)i;
		}
	}
	next_free = -1;
	for (uint32_t i = hdr->long_capacity; i-- > 0; ) {
		if (t->longs[i].next_free != LONG_IN_USE) {
			t->longs[i].next_free = next_free;
			next_free = (int32_t)i;
		}
	}
	hdr->long_free_head = next_free;
	/* F_SIBLING_CARBONS may be half updated: derive it again */
	for (uint32_t i = 0; i < capacity; i++)
		if (atomic_load(&t->recs[i].state) == IPC_SESSION_USED)
			rec_set_flags(&t->recs[i], rec_flags(&t->recs[i]) &
				      (uint8_t)~IPC_SESSION_F_SIBLING_CARBONS);
	for (uint32_t i = 0; i < capacity; i++)
		if (atomic_load(&t->recs[i].state) == IPC_SESSION_USED &&
		    (rec_flags(&t->recs[i]) & IPC_SESSION_F_CARBONS))
			rec_sync_carbons(t, &t->recs[i]);
}

static int table_lock(struct shm_table *t, const char **error_r)
{
	int ret = pthread_mutex_lock(&t->hdr->lock);

	if (ret == 0)
		return 0;
	if (ret != EOWNERDEAD) {
		*error_r = "session table lock failed";
		return -1;
	}
	table_rebuild(t);
	/* atomic: the change log's reader loads it without the lock */
	__atomic_store_n(&t->hdr->recoveries, t->hdr->recoveries + 1,
			 __ATOMIC_RELEASE);
	pthread_mutex_consistent(&t->hdr->lock);
	log_warn("session table: lock holder died, lists rebuilt (%u in use)",
		 t->hdr->used);
	return 0;
}

static void table_unlock(struct shm_table *t)
{
	pthread_mutex_unlock(&t->hdr->lock);
}

/* ---- records ----------------------------------------------------------- */

static const char *rec_jid(const struct shm_table *t,
			   const struct ipc_session *r)
{
	return r->jid_long < 0 ? r->jid : t->longs[r->jid_long].jid;
}

static void rec_to_info(const struct shm_table *t,
			const struct ipc_session *r, struct session_info *info)
{
	info->slot = r->slot;
	info->node = r->node;
	info->rslot = r->rslot;
	info->conn_id = r->conn_id;
	info->gen = r->gen;
	info->priority = r->priority;
	info->available = r->available;
	info->since = r->since;
	info->active = atomic_load_explicit(&r->active, memory_order_relaxed);
	memcpy(info->peer_addr, r->peer_addr, sizeof(info->peer_addr));
	info->peer_port = r->peer_port;
	info->peer_family = r->peer_family;
	info->mech = r->mech;
	info->tls_version = r->tls_version;
	uint32_t caps = atomic_load_explicit(&r->caps, memory_order_acquire);
	info->caps_idx = (uint16_t)(caps >> 16);
	info->caps_gen = (uint16_t)caps;
	info->flags = rec_flags(r);
	info->index = (int32_t)(r - t->recs);
	memcpy(info->jid, rec_jid(t, r), r->jid_len);
	info->jid[r->jid_len] = '\0';
}

static uint8_t rec_flags(const struct ipc_session *r)
{
	return __atomic_load_n(&r->flags, __ATOMIC_RELAXED);
}

static void rec_set_flags(struct ipc_session *r, uint8_t flags)
{
	__atomic_store_n(&r->flags, flags, __ATOMIC_RELAXED);
}

/* Owned by a local session: the owner API never touches a remote
 * entry, whose conn_id/gen are another node's numbers (the bridge's
 * slot could match them by chance). */
static bool rec_owned_by(const struct ipc_session *r, uint16_t slot,
			 uint32_t conn_id, uint32_t gen)
{
	return r->node == 0 && r->slot == slot && r->conn_id == conn_id &&
	       r->gen == gen;
}

/* The link (bucket head or a record's next) that points at the record
 * for k, or NULL.  Lock held. */
static int32_t *table_find(struct shm_table *t, const struct jid_key *k)
{
	int32_t *link = &t->buckets[k->hash & t->mask];

	while (*link >= 0) {
		struct ipc_session *r = &t->recs[*link];

		if (r->hash == k->hash && r->jid_len == k->len &&
		    memcmp(rec_jid(t, r), k->jid, k->len) == 0)
			return link;
		link = &r->next;
	}
	return NULL;
}

/* Records of the bare JID (hash, bare[0..bare_len)) in its chain. */
#define FOR_BARE(t_, i_, r_, hash_, bare_, len_) \
	for (int32_t i_ = (t_)->buckets[(hash_) & (t_)->mask]; i_ >= 0; \
	     i_ = (t_)->recs[i_].next) \
		if ((r_ = &(t_)->recs[i_])->hash == (hash_) && \
		    r_->bare_len == (len_) && \
		    memcmp(rec_jid(t_, r_), (bare_), (len_)) == 0)

/* Make F_SIBLING_CARBONS true for every record of a bare JID: set on a
 * record while another record of it has F_CARBONS.  Lock held.  One
 * walk of the chain when the bare JID has no carbons at all. */
static void table_sync_carbons(struct shm_table *t, uint32_t hash,
			       const char *bare, size_t bare_len)
{
	struct ipc_session *r;
	unsigned carbons = 0, marked = 0;

	FOR_BARE(t, i, r, hash, bare, bare_len) {
		carbons += (rec_flags(r) & IPC_SESSION_F_CARBONS) != 0;
		marked += (rec_flags(r) & IPC_SESSION_F_SIBLING_CARBONS) != 0;
	}
	if (carbons == 0 && marked == 0)
		return;
	FOR_BARE(t, i, r, hash, bare, bare_len) {
		uint8_t f = rec_flags(r);
		unsigned others = carbons - ((f & IPC_SESSION_F_CARBONS) != 0);
		uint8_t want = others > 0 ?
			(uint8_t)(f | IPC_SESSION_F_SIBLING_CARBONS) :
			(uint8_t)(f & ~IPC_SESSION_F_SIBLING_CARBONS);
		if (want != f)
			rec_set_flags(r, want);
	}
}

static void rec_sync_carbons(struct shm_table *t, const struct ipc_session *r)
{
	table_sync_carbons(t, r->hash, rec_jid(t, r), r->bare_len);
}

/* FREE first, then unlink and free: a crash in between leaves a FREE
 * record that the rebuild simply drops from its chain. */
static void table_unlink(struct shm_table *t, int32_t *link)
{
	int32_t idx = *link;
	struct ipc_session *r = &t->recs[idx];

	/* its siblings lose a carbons-enabled sibling */
	if (rec_flags(r) & IPC_SESSION_F_CARBONS) {
		rec_set_flags(r, 0);
		rec_sync_carbons(t, r);
	}
	atomic_store(&r->state, IPC_SESSION_FREE);
	*link = r->next;
	if (r->jid_long >= 0) {
		t->longs[r->jid_long].next_free = t->hdr->long_free_head;
		t->hdr->long_free_head = r->jid_long;
	}
	r->next = t->hdr->free_head;
	t->hdr->free_head = idx;
	t->hdr->used--;
}

/* Remove record idx, walking its chain for the link that points at it. */
static void table_remove(struct shm_table *t, int32_t idx)
{
	int32_t *link = &t->buckets[t->recs[idx].hash & t->mask];

	while (*link != idx)
		link = &t->recs[*link].next;
	table_unlink(t, link);
}

static void rec_fill(struct ipc_session *r, const struct jid_key *k,
		     const struct session_info *info)
{
	r->hash = k->hash;
	r->jid_len = (uint16_t)k->len;
	r->bare_len = (uint16_t)k->bare_len;
	r->slot = info->slot;
	r->node = info->node;
	r->rslot = info->node != 0 ? info->rslot : 0;
	r->priority = info->priority;
	r->available = info->available;
	r->conn_id = info->conn_id;
	r->gen = info->gen;
	r->since = info->since;
	atomic_store_explicit(&r->active, info->active > 0 ? info->active :
			      info->since, memory_order_relaxed);
	memcpy(r->peer_addr, info->peer_addr, sizeof(r->peer_addr));
	r->peer_port = info->peer_port;
	r->peer_family = info->peer_family;
	r->mech = info->mech;
	r->tls_version = info->tls_version;
	atomic_store_explicit(&r->caps, (uint32_t)info->caps_idx << 16 |
			      info->caps_gen, memory_order_release);
	rec_set_flags(r, info->flags & (uint8_t)~IPC_SESSION_F_SIBLING_CARBONS);
	r->jid_long = -1;
}

/* Claim a record (and a long entry if needed), fill it, then publish:
 * state USED with release order, so a record seen USED is whole.  The
 * caller has checked both free lists. */
static int32_t table_insert(struct shm_table *t, const struct jid_key *k,
			    const struct session_info *info)
{
	struct ipc_session_table *hdr = t->hdr;
	int32_t idx = hdr->free_head;
	struct ipc_session *r = &t->recs[idx];
	char *dst = r->jid;

	hdr->free_head = r->next;
	rec_fill(r, k, info);
	if (k->len >= IPC_JID_INLINE) {
		r->jid_long = hdr->long_free_head;
		hdr->long_free_head = t->longs[r->jid_long].next_free;
		t->longs[r->jid_long].next_free = LONG_IN_USE;
		dst = t->longs[r->jid_long].jid;
		r->jid[0] = '\0';
	}
	memcpy(dst, k->jid, k->len);
	dst[k->len] = '\0';
	if (shm_session_test_hook != NULL)
		shm_session_test_hook();
	atomic_store_explicit(&r->state, IPC_SESSION_USED,
			      memory_order_release);
	r->next = t->buckets[k->hash & t->mask];
	t->buckets[k->hash & t->mask] = idx;
	hdr->used++;
	rec_sync_carbons(t, r);
	return idx;
}

/* Sessions and long-JID entries of k's bare JID.  Lock held.  Every
 * resource of a bare JID hashes to the same chain, so this walks one
 * chain: the count comes from the records themselves, and a sweep or a
 * rebuild after a dead lock holder leaves nothing to correct. */
static void table_count_bare(struct shm_table *t, const struct jid_key *k,
			     uint32_t *sessions_r, uint32_t *longs_r)
{
	uint32_t sessions = 0, longs = 0;

	for (int32_t i = t->buckets[k->hash & t->mask]; i >= 0;
	     i = t->recs[i].next) {
		const struct ipc_session *r = &t->recs[i];

		if (r->hash != k->hash || r->bare_len != k->bare_len ||
		    memcmp(rec_jid(t, r), k->jid, k->bare_len) != 0)
			continue;
		sessions++;
		longs += r->jid_long >= 0;
	}
	*sessions_r = sessions;
	*longs_r = longs;
}

static uint32_t long_share_of(const struct ipc_session_table *hdr)
{
	uint32_t n = hdr->long_capacity / SESSION_LONG_SHARE_DIV;

	return n > 0 ? n : 1;
}

static int refuse(enum session_refusal why, const char *error,
		  enum session_refusal *why_r, const char **error_r)
{
	if (why_r != NULL)
		*why_r = why;
	*error_r = error;
	return -1;
}

/* Room for k, counting what replacing the record at old frees, within
 * the bare JID's limits (a replacement keeps its count). */
static int table_check_room(struct shm_table *t, const struct jid_key *k,
			    const int32_t *old, unsigned max_per_bare,
			    bool long_share, enum session_refusal *why_r,
			    const char **error_r)
{
	const struct ipc_session *o = old == NULL ? NULL : &t->recs[*old];
	bool needs_long = k->len >= IPC_JID_INLINE &&
			  (o == NULL || o->jid_long < 0);
	uint32_t sessions = 0, longs = 0;

	if (o == NULL || needs_long)
		table_count_bare(t, k, &sessions, &longs);
	if (o == NULL && max_per_bare > 0 && sessions >= max_per_bare)
		return refuse(SESSION_REFUSED_ACCOUNT,
			      "account has reached its session limit",
			      why_r, error_r);
	if (o == NULL && t->hdr->free_head < 0)
		return refuse(SESSION_REFUSED_FULL, "session table full",
			      why_r, error_r);
	if (needs_long && t->hdr->long_free_head < 0)
		return refuse(SESSION_REFUSED_LONG,
			      "session table long-JID pool full",
			      why_r, error_r);
	if (needs_long && long_share && longs >= long_share_of(t->hdr))
		return refuse(SESSION_REFUSED_LONG,
			      "account holds its share of the long-JID pool",
			      why_r, error_r);
	return 0;
}

/* ---- API --------------------------------------------------------------- */

/* A change of local record idx the cluster bridge must see (called
 * with the lock held: one writer at a time, so plain increments; the
 * release stores publish the entry before the head that covers it). */
static void table_local_changed(struct shm_table *t, int32_t idx)
{
	struct ipc_session_table *hdr = t->hdr;

	atomic_store_explicit(&hdr->local_changes,
			      atomic_load_explicit(&hdr->local_changes,
						   memory_order_relaxed) + 1,
			      memory_order_release);
	if (t->log == NULL)
		return;
	uint64_t pos = atomic_load_explicit(&hdr->log_head,
					    memory_order_relaxed);
	atomic_store_explicit(&t->log[pos & (hdr->log_size - 1)],
			      ((pos + 1) & LOG_TAG_MASK) <<
			      IPC_SESSION_LOG_INDEX_BITS | (uint32_t)idx,
			      memory_order_release);
	atomic_store_explicit(&hdr->log_head, pos + 1, memory_order_release);
}

int shm_session_put_limited(struct shm_table *t,
			    const struct session_info *info,
			    unsigned max_per_bare, struct session_info *old_r,
			    enum session_refusal *why_r, const char **error_r)
{
	struct jid_key k;
	int32_t *link, old_idx = -1, new_idx;
	int ret = 0;

	if (why_r != NULL)
		*why_r = SESSION_REFUSED_INVALID;
	if (info->node != 0) {
		*error_r = "a remote entry goes in with insert_remote";
		return -1;
	}
	if (key_init(&k, info->jid, false, error_r) < 0 ||
	    table_lock(t, error_r) < 0)
		return -1;
	link = table_find(t, &k);
	if (table_check_room(t, &k, link, max_per_bare, true, why_r,
			     error_r) < 0) {
		table_unlock(t);
		return -1;
	}
	if (link != NULL) {
		/* Remove, then insert: no moment where a record is USED
		 * with half old and half new owner fields. */
		old_idx = *link;
		if (old_r != NULL)
			rec_to_info(t, &t->recs[old_idx], old_r);
		table_unlink(t, link);
		ret = 1;
	}
	new_idx = table_insert(t, &k, info);
	/* the freed record is the next taken, so one entry says both,
	 * unless a remote entry's record was replaced */
	if (old_idx >= 0 && old_idx != new_idx)
		table_local_changed(t, old_idx);
	table_local_changed(t, new_idx);
	table_unlock(t);
	if (why_r != NULL)
		*why_r = SESSION_REFUSED_NONE;
	return ret;
}

int shm_session_put(struct shm_table *t, const struct session_info *info,
		    struct session_info *old_r, const char **error_r)
{
	return shm_session_put_limited(t, info, 0, old_r, NULL, error_r);
}

uint32_t shm_session_long_share(struct shm_table *t)
{
	return long_share_of(t->hdr);
}

int shm_session_get(struct shm_table *t, const char *full_jid,
		    struct session_info *info_r)
{
	const char *error;
	struct jid_key k;
	int32_t *link;

	if (key_init(&k, full_jid, false, &error) < 0 ||
	    table_lock(t, &error) < 0)
		return -1;
	link = table_find(t, &k);
	if (link != NULL)
		rec_to_info(t, &t->recs[*link], info_r);
	table_unlock(t);
	return link != NULL ? 1 : 0;
}

int shm_session_list(struct shm_table *t, const char *bare_jid,
		     struct session_info *out, unsigned max)
{
	const char *error;
	struct jid_key k;
	unsigned n = 0;

	if (key_init(&k, bare_jid, true, &error) < 0 ||
	    table_lock(t, &error) < 0)
		return -1;
	/* Every resource of a bare JID hashes to the same chain. */
	for (int32_t i = t->buckets[k.hash & t->mask]; i >= 0;
	     i = t->recs[i].next) {
		const struct ipc_session *r = &t->recs[i];

		if (r->hash != k.hash || r->bare_len != k.len ||
		    memcmp(rec_jid(t, r), bare_jid, k.len) != 0)
			continue;
		if (n < max)
			rec_to_info(t, r, &out[n]);
		n++;
	}
	table_unlock(t);
	return (int)n;
}

int shm_session_set_presence(struct shm_table *t, const char *full_jid,
			     uint16_t slot, uint32_t conn_id, uint32_t gen,
			     int16_t priority, uint8_t available)
{
	const char *error;
	struct jid_key k;
	int32_t *link;
	int ret = 0;

	if (key_init(&k, full_jid, false, &error) < 0 ||
	    table_lock(t, &error) < 0)
		return -1;
	link = table_find(t, &k);
	if (link != NULL && rec_owned_by(&t->recs[*link], slot, conn_id, gen)) {
		t->recs[*link].priority = priority;
		t->recs[*link].available = available;
		table_local_changed(t, *link);
		ret = 1;
	}
	table_unlock(t);
	return ret;
}

int shm_session_set_flags(struct shm_table *t, const char *full_jid,
			  uint16_t slot, uint32_t conn_id, uint32_t gen,
			  uint8_t set, uint8_t clear)
{
	const char *error;
	struct jid_key k;
	int32_t *link;
	int ret = 0;

	set &= (uint8_t)~IPC_SESSION_F_SIBLING_CARBONS;
	clear &= (uint8_t)~IPC_SESSION_F_SIBLING_CARBONS;
	if (key_init(&k, full_jid, false, &error) < 0 ||
	    table_lock(t, &error) < 0)
		return -1;
	link = table_find(t, &k);
	if (link != NULL && rec_owned_by(&t->recs[*link], slot, conn_id, gen)) {
		struct ipc_session *r = &t->recs[*link];
		uint8_t old = rec_flags(r);
		uint8_t f = (uint8_t)((old | set) & ~clear);
		rec_set_flags(r, f);
		if ((old ^ f) & IPC_SESSION_F_CARBONS)
			rec_sync_carbons(t, r);
		table_local_changed(t, *link);
		ret = 1;
	}
	table_unlock(t);
	return ret;
}

uint8_t shm_session_flags(struct shm_table *t, int32_t index, uint16_t slot,
			  uint32_t conn_id, uint32_t gen)
{
	struct ipc_session *r;

	if (index < 0 || (uint32_t)index >= t->hdr->capacity)
		return 0;
	r = &t->recs[index];
	if (atomic_load_explicit(&r->state, memory_order_acquire) !=
	    IPC_SESSION_USED || !rec_owned_by(r, slot, conn_id, gen))
		return 0;
	return rec_flags(r);
}

void shm_session_touch(struct shm_table *t, int32_t index, uint16_t slot,
		       uint32_t conn_id, uint32_t gen, int64_t now)
{
	struct ipc_session *r;

	if (index < 0 || (uint32_t)index >= t->hdr->capacity)
		return;
	r = &t->recs[index];
	if (atomic_load_explicit(&r->state, memory_order_acquire) !=
	    IPC_SESSION_USED || !rec_owned_by(r, slot, conn_id, gen))
		return;
	atomic_store_explicit(&r->active, now, memory_order_relaxed);
}

void shm_session_set_caps(struct shm_table *t, int32_t index, uint16_t slot,
			  uint32_t conn_id, uint32_t gen, uint16_t caps_idx,
			  uint16_t caps_gen)
{
	const char *error;
	struct ipc_session *r;

	if (index < 0 || (uint32_t)index >= t->hdr->capacity)
		return;
	r = &t->recs[index];
	/* Under the table lock (review F11): a take-over (bind conflict on
	 * another worker) re-fills the record under it, so the owner check
	 * and the store are one step and a new owner never gets the old
	 * owner's caps.  Rare: once per caps change of a session. */
	if (table_lock(t, &error) < 0)
		return;
	if (atomic_load_explicit(&r->state, memory_order_acquire) ==
	    IPC_SESSION_USED && rec_owned_by(r, slot, conn_id, gen))
		atomic_store_explicit(&r->caps, (uint32_t)caps_idx << 16 |
				      caps_gen, memory_order_release);
	table_unlock(t);
}

int shm_session_del(struct shm_table *t, const char *full_jid,
		    uint16_t slot, uint32_t conn_id, uint32_t gen)
{
	const char *error;
	struct jid_key k;
	int32_t *link;
	int ret = 0;

	if (key_init(&k, full_jid, false, &error) < 0 ||
	    table_lock(t, &error) < 0)
		return -1;
	link = table_find(t, &k);
	if (link != NULL && rec_owned_by(&t->recs[*link], slot, conn_id, gen)) {
		int32_t idx = *link;

		table_unlink(t, link);
		table_local_changed(t, idx);
		ret = 1;
	}
	table_unlock(t);
	return ret;
}

/* ---- remote entries ------------------------------------------------------ */

static bool remote_node_ok(uint8_t node, const char **error_r)
{
	if (node != 0 && node < IPC_MAX_NODES)
		return true;
	*error_r = "remote entry with a bad node index";
	return false;
}

int shm_session_insert_remote(struct shm_table *t,
			      const struct session_info *info,
			      struct session_info *old_r,
			      const char **error_r)
{
	struct jid_key k;
	int32_t *link;
	int ret = 0;

	if (!remote_node_ok(info->node, error_r) ||
	    key_init(&k, info->jid, false, error_r) < 0 ||
	    table_lock(t, error_r) < 0)
		return -1;
	link = table_find(t, &k);
	if (link != NULL && t->recs[*link].node != info->node) {
		/* held here or by a third node: not ours to replace */
		if (old_r != NULL)
			rec_to_info(t, &t->recs[*link], old_r);
		table_unlock(t);
		return 2;
	}
	if (table_check_room(t, &k, link, 0, false, NULL, error_r) < 0) {
		table_unlock(t);
		return -1;
	}
	if (link != NULL) {
		if (old_r != NULL)
			rec_to_info(t, &t->recs[*link], old_r);
		table_unlink(t, link);
		ret = 1;
	}
	table_insert(t, &k, info);
	table_unlock(t);
	return ret;
}

int shm_session_remove_remote(struct shm_table *t, uint8_t node,
			      uint8_t rslot, const char *full_jid,
			      uint32_t conn_id, uint32_t gen)
{
	const char *error;
	struct jid_key k;
	int32_t *link;
	int ret = 0;

	if (!remote_node_ok(node, &error) ||
	    key_init(&k, full_jid, false, &error) < 0 ||
	    table_lock(t, &error) < 0)
		return -1;
	link = table_find(t, &k);
	if (link != NULL) {
		const struct ipc_session *r = &t->recs[*link];

		if (r->node == node && r->rslot == rslot &&
		    r->conn_id == conn_id && r->gen == gen) {
			table_unlink(t, link);
			ret = 1;
		}
	}
	table_unlock(t);
	return ret;
}

/* Which records a batch takes: every one (a walk), a slot's local
 * ones, or a node's. */
enum batch_kind {
	BATCH_ALL = 0,
	BATCH_SLOT,
	BATCH_NODE,
};

struct batch_match {
	enum batch_kind kind;
	unsigned value;             /* the slot or the node */
};

static bool batch_matches(const struct batch_match *m,
			  const struct ipc_session *r)
{
	switch (m->kind) {
	case BATCH_SLOT:
		return r->node == 0 && r->slot == m->value;
	case BATCH_NODE:
		return r->node == m->value;
	default:
		return true;
	}
}

uint64_t shm_session_changes(struct shm_table *t)
{
	return atomic_load_explicit(&t->hdr->local_changes,
				    memory_order_acquire) +
	       t->hdr->recoveries;
}

/* ---- the change log ------------------------------------------------------ */

uint32_t shm_session_log_size(struct shm_table *t)
{
	return t->hdr->log_size;
}

static uint32_t table_recoveries(struct shm_table *t)
{
	return __atomic_load_n(&t->hdr->recoveries, __ATOMIC_ACQUIRE);
}

/* Recoveries first: a rebuild after this is seen by the next read. */
int shm_session_log_start(struct shm_table *t, struct shm_session_cursor *c)
{
	c->recoveries = table_recoveries(t);
	c->pos = atomic_load_explicit(&t->hdr->log_head, memory_order_acquire);
	return t->log != NULL ? 0 : -1;
}

/* No lock: the head's acquire load makes every entry below it visible,
 * and each entry's tag says whether a writer has lapped it since. */
int shm_session_log_read(struct shm_table *t, struct shm_session_cursor *c,
			 int32_t *out, unsigned max)
{
	uint64_t head, size = t->hdr->log_size, n;

	if (t->log == NULL || table_recoveries(t) != c->recoveries)
		return -1;
	head = atomic_load_explicit(&t->hdr->log_head, memory_order_acquire);
	if (head < c->pos || head - c->pos > size)
		return -1;
	n = head - c->pos < max ? head - c->pos : max;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t pos = c->pos + i;
		uint64_t e = atomic_load_explicit(&t->log[pos & (size - 1)],
						  memory_order_acquire);

		if (e >> IPC_SESSION_LOG_INDEX_BITS != ((pos + 1) & LOG_TAG_MASK) ||
		    (e & LOG_INDEX_MASK) >= t->hdr->capacity)
			return -1;      /* overwritten while we read */
		out[i] = (int32_t)(e & LOG_INDEX_MASK);
	}
	c->pos += n;
	return (int)n;
}

int shm_session_at(struct shm_table *t, int32_t index,
		   struct session_info *info_r)
{
	const char *error;
	int ret = 0;

	if (index < 0 || (uint32_t)index >= t->hdr->capacity)
		return 0;
	if (table_lock(t, &error) < 0)
		return -1;
	if (atomic_load(&t->recs[index].state) == IPC_SESSION_USED) {
		rec_to_info(t, &t->recs[index], info_r);
		ret = 1;
	}
	table_unlock(t);
	return ret;
}

/* One lock hold of a sweep or a walk: from *pos on, copy up to
 * SESSION_BATCH matching records to out (removing them when sweeping:
 * any kind but BATCH_ALL).  Returns the number copied; *pos ends at
 * capacity when done. */
static int table_batch(struct shm_table *t, uint32_t *pos,
		       const struct batch_match *m,
		       int (*keep)(const struct session_info *, void *),
		       void *ctx, struct session_info *out)
{
	const char *error;
	int n = 0;

	if (table_lock(t, &error) < 0)
		return -1;
	for (; *pos < t->hdr->capacity && n < SESSION_BATCH; (*pos)++) {
		struct ipc_session *r = &t->recs[*pos];

		if (atomic_load(&r->state) != IPC_SESSION_USED ||
		    !batch_matches(m, r))
			continue;
		rec_to_info(t, r, &out[n]);
		if (keep != NULL && keep(&out[n], ctx))
			continue;
		n++;
		if (m->kind != BATCH_ALL) {
			bool local = r->node == 0;

			table_remove(t, (int32_t)*pos);
			if (local)      /* a node's sweep is the bridge's own */
				table_local_changed(t, (int32_t)*pos);
		}
	}
	table_unlock(t);
	return n;
}

/* Remove what m matches, batch by batch, calling cb for each. */
static int table_sweep(struct shm_table *t, const struct batch_match *m,
		       int (*keep)(const struct session_info *, void *),
		       void (*cb)(const struct session_info *, void *),
		       void *ctx)
{
	struct session_info batch[SESSION_BATCH];
	uint32_t pos = 0;
	int n, total = 0;

	while ((n = table_batch(t, &pos, m, keep, ctx, batch)) > 0) {
		for (int i = 0; i < n && cb != NULL; i++)
			cb(&batch[i], ctx);
		total += n;
	}
	return n < 0 && total == 0 ? -1 : total;
}

/* Batches keep the lock hold short and let callbacks call back into
 * the table (the mutex is not recursive). */
int shm_session_sweep_slot(struct shm_table *t, uint16_t slot,
			   void (*cb)(const struct session_info *, void *),
			   void *ctx)
{
	return shm_session_sweep_slot_keep(t, slot, NULL, cb, ctx);
}

int shm_session_sweep_slot_keep(struct shm_table *t, uint16_t slot,
				int (*keep)(const struct session_info *,
					    void *),
				void (*cb)(const struct session_info *, void *),
				void *ctx)
{
	struct batch_match m = { BATCH_SLOT, slot };

	return table_sweep(t, &m, keep, cb, ctx);
}

int shm_session_sweep_node(struct shm_table *t, uint8_t node,
			   void (*cb)(const struct session_info *, void *),
			   void *ctx)
{
	return shm_session_sweep_node_keep(t, node, NULL, cb, ctx);
}

int shm_session_sweep_node_keep(struct shm_table *t, uint8_t node,
				int (*keep)(const struct session_info *,
					    void *),
				void (*cb)(const struct session_info *, void *),
				void *ctx)
{
	struct batch_match m = { BATCH_NODE, node };

	if (node == 0)
		return -1;      /* this node's sessions go by slot */
	return table_sweep(t, &m, keep, cb, ctx);
}

/* Not a snapshot: entries added or removed during the walk may or may
 * not be seen, which is fine for listing sessions. */
int shm_session_foreach(struct shm_table *t,
			int (*cb)(const struct session_info *, void *),
			void *ctx)
{
	struct session_info batch[SESSION_BATCH];
	uint32_t pos = 0;
	int n, total = 0;

	struct batch_match all = { BATCH_ALL, 0 };

	while ((n = table_batch(t, &pos, &all, NULL, NULL, batch)) > 0) {
		for (int i = 0; i < n; i++) {
			total++;
			if (cb(&batch[i], ctx) != 0)
				return total;
		}
	}
	return n < 0 ? -1 : total;
}

void shm_session_usage(struct shm_table *t, uint32_t *used_r,
		       uint32_t *capacity_r, uint32_t *recoveries_r)
{
	const char *error;
	bool locked = table_lock(t, &error) == 0;

	*used_r = t->hdr->used;
	*capacity_r = t->hdr->capacity;
	*recoveries_r = t->hdr->recoveries;
	if (locked)
		table_unlock(t);
}

/* ---- verify ------------------------------------------------------------ */

/* Each USED record is reached once, from the bucket of its bare JID's
 * hash; seen[] marks them.  Returns the records reached or -1. */
static int verify_chains(struct shm_table *t, uint8_t *seen,
			 const char **error_r)
{
	uint32_t reached = 0;

	for (uint32_t b = 0; b < t->hdr->nbuckets; b++) {
		for (int32_t i = t->buckets[b]; i >= 0; i = t->recs[i].next) {
			const struct ipc_session *r = &t->recs[i];

			if ((uint32_t)i >= t->hdr->capacity || seen[i] != 0) {
				*error_r = "chain index out of range, cycle or shared node";
				return -1;
			}
			seen[i] = 1;
			reached++;
			if (atomic_load(&r->state) != IPC_SESSION_USED) {
				*error_r = "chain holds a record not USED";
				return -1;
			}
			if ((r->hash & t->mask) != b ||
			    r->hash != jid_hash(rec_jid(t, r), r->bare_len)) {
				*error_r = "record in the wrong bucket";
				return -1;
			}
		}
	}
	return (int)reached;
}

/* F_SIBLING_CARBONS is set exactly on the records with another record
 * of their bare JID that has F_CARBONS. */
static int verify_carbons(struct shm_table *t, const char **error_r)
{
	for (uint32_t i = 0; i < t->hdr->capacity; i++) {
		const struct ipc_session *r = &t->recs[i], *o;
		unsigned others = 0;

		if (atomic_load(&r->state) != IPC_SESSION_USED)
			continue;
		FOR_BARE(t, j, o, r->hash, rec_jid(t, r), r->bare_len)
			others += o != r &&
				  (rec_flags(o) & IPC_SESSION_F_CARBONS);
		if ((others > 0) !=
		    ((rec_flags(r) & IPC_SESSION_F_SIBLING_CARBONS) != 0)) {
			*error_r = "sibling carbons flag out of step";
			return -1;
		}
	}
	return 0;
}

/* Record fields that must hold for a USED record (seen[] == 1). */
static int verify_records(struct shm_table *t, uint8_t *lseen,
			  const char **error_r)
{
	for (uint32_t i = 0; i < t->hdr->capacity; i++) {
		const struct ipc_session *r = &t->recs[i];
		bool is_long = r->jid_len >= IPC_JID_INLINE;

		if (atomic_load(&r->state) != IPC_SESSION_USED)
			continue;
		if (r->jid_len == 0 || r->jid_len > IPC_JID_MAX ||
		    r->bare_len == 0 || r->bare_len > r->jid_len ||
		    is_long != (r->jid_long >= 0)) {
			*error_r = "record lengths or long flag inconsistent";
			return -1;
		}
		if (r->node >= IPC_MAX_NODES ||
		    (r->node == 0 && r->rslot != 0)) {
			*error_r = "record node fields out of range";
			return -1;
		}
		if (!is_long) {
			if (strnlen(r->jid, IPC_JID_INLINE) != r->jid_len) {
				*error_r = "inline JID length mismatch";
				return -1;
			}
			continue;
		}
		if ((uint32_t)r->jid_long >= t->hdr->long_capacity ||
		    lseen[r->jid_long] != 0 ||
		    t->longs[r->jid_long].next_free != LONG_IN_USE) {
			*error_r = "long-JID entry out of range, shared or free";
			return -1;
		}
		lseen[r->jid_long] = 1;
	}
	return verify_carbons(t, error_r);
}

/* A free list (records or long entries) covers exactly the unmarked. */
static int verify_free_list(int32_t head, uint32_t n, uint8_t *seen,
			    const int32_t *next, size_t stride,
			    const char **error_r)
{
	for (int32_t i = head; i >= 0;
	     i = *(const int32_t *)((const char *)next + (size_t)i * stride)) {
		if ((uint32_t)i >= n || seen[i] != 0) {
			*error_r = "free list out of range, cycle or holds a used entry";
			return -1;
		}
		seen[i] = 2;
	}
	for (uint32_t i = 0; i < n; i++) {
		if (seen[i] == 0) {
			*error_r = "entry neither used nor on the free list";
			return -1;
		}
	}
	return 0;
}

static int verify_locked(struct shm_table *t, uint8_t *seen, uint8_t *lseen,
			 const char **error_r)
{
	struct ipc_session_table *hdr = t->hdr;
	uint32_t state_used = 0;
	int reached = verify_chains(t, seen, error_r);

	if (reached < 0)
		return -1;
	for (uint32_t i = 0; i < hdr->capacity; i++)
		state_used += atomic_load(&t->recs[i].state) == IPC_SESSION_USED;
	if ((uint32_t)reached != state_used || hdr->used != state_used) {
		*error_r = "used count does not match records and chains";
		return -1;
	}
	if (verify_records(t, lseen, error_r) < 0 ||
	    verify_free_list(hdr->free_head, hdr->capacity, seen,
			     &t->recs[0].next, sizeof(t->recs[0]),
			     error_r) < 0)
		return -1;
	return verify_free_list(hdr->long_free_head, hdr->long_capacity,
				lseen, &t->longs[0].next_free,
				sizeof(t->longs[0]), error_r);
}

int shm_session_verify(struct shm_table *t, const char **error_r)
{
	uint8_t *seen = calloc(t->hdr->capacity, 1);
	uint8_t *lseen = calloc(t->hdr->long_capacity, 1);
	int ret = -1;

	if (seen == NULL || lseen == NULL)
		*error_r = "out of memory";
	else if (table_lock(t, error_r) == 0) {
		ret = verify_locked(t, seen, lseen, error_r);
		table_unlock(t);
	}
	free(seen);
	free(lseen);
	return ret;
}

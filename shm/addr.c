/*
 * addr.c - open connections per address and worker slot (layout in
 * ipc.h, API in addr.h).
 *
 * Same scheme as session.c: one robust process-shared mutex; an entry's
 * state word is the truth (insert writes the whole entry before USED,
 * removal stores FREE before unlinking), so a locker that inherits the
 * lock from a dead process rebuilds the chains and the free list from
 * state words.  A count changed by a holder that then died belongs to
 * that holder's slot, which the master sweeps anyway.
 * Failure policy: a full table or a failed lock answers -1 and an error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "shm.h"
#include "log.h"

/* Far beyond the descriptors of one box; keeps every size in range. */
#define ADDR_CAPACITY_MAX (1u << 24)
#define ADDR_BUCKETS_MIN 16u

_Static_assert(sizeof(struct ipc_addr_table) % 8 == 0, "table header");
_Static_assert(sizeof(struct ipc_addr_entry) % 8 == 0, "entry alignment");

struct shm_addr {
	struct ipc_addr_table *hdr;
	int32_t *buckets;
	struct ipc_addr_entry *ents;
	uint32_t mask;
};

void (*shm_addr_test_hook)(void);

void shm_addr_key(const struct sockaddr_storage *ss,
		  struct shm_addr_key *key_r)
{
	memset(key_r, 0, sizeof(*key_r));
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
		key_r->family = 4;
		memcpy(key_r->key, &s->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
		if (IN6_IS_ADDR_V4MAPPED(&s->sin6_addr)) {
			key_r->family = 4;
			memcpy(key_r->key, s->sin6_addr.s6_addr + 12, 4);
		} else {
			key_r->family = 6;
			memcpy(key_r->key, s->sin6_addr.s6_addr, 8);
		}
	}
}

/* FNV-1a with a murmur3 finaliser, as in session.c. */
static uint32_t key_hash(const struct shm_addr_key *k)
{
	uint32_t h = 2166136261u;

	h = (h ^ k->family) * 16777619u;
	for (size_t i = 0; i < sizeof(k->key); i++)
		h = (h ^ k->key[i]) * 16777619u;
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

static bool entry_is(const struct ipc_addr_entry *e,
		     const struct shm_addr_key *k, uint32_t hash)
{
	return e->hash == hash && e->family == k->family &&
	       memcmp(e->key, k->key, sizeof(e->key)) == 0;
}

static uint32_t nbuckets_for(uint32_t capacity)
{
	uint32_t n = ADDR_BUCKETS_MIN;

	while (n < capacity)
		n <<= 1;
	return n;
}

size_t shm_addr_size(uint32_t capacity)
{
	if (capacity == 0 || capacity > ADDR_CAPACITY_MAX)
		return 0;
	return sizeof(struct ipc_addr_table) +
		(size_t)nbuckets_for(capacity) * sizeof(int32_t) +
		(size_t)capacity * sizeof(struct ipc_addr_entry);
}

static void table_map(struct shm_addr *a, struct ipc_addr_table *hdr)
{
	a->hdr = hdr;
	a->buckets = (int32_t *)(hdr + 1);
	a->ents = (struct ipc_addr_entry *)(a->buckets + hdr->nbuckets);
	a->mask = hdr->nbuckets - 1;
}

/* Chains from USED entries, everything else on the free list.  Used at
 * init (all FREE) and after a dead lock holder; idempotent. */
static void table_rebuild(struct shm_addr *a)
{
	struct ipc_addr_table *hdr = a->hdr;

	for (uint32_t i = 0; i < hdr->nbuckets; i++)
		a->buckets[i] = -1;
	hdr->free_head = -1;
	hdr->used = 0;
	for (uint32_t i = hdr->capacity; i-- > 0; ) {
		struct ipc_addr_entry *e = &a->ents[i];

		if (atomic_load(&e->state) == IPC_SESSION_USED &&
		    e->count > 0) {
			e->next = a->buckets[e->hash & a->mask];
			a->buckets[e->hash & a->mask] = (int32_t)i;
			hdr->used++;
		} else {
			atomic_store(&e->state, IPC_SESSION_FREE);
			e->next = hdr->free_head;
			hdr->free_head = (int32_t)i;
		}
	}
}

int shm_addr_init(void *mem, size_t size, uint32_t capacity,
		  const char **error_r)
{
	struct ipc_addr_table *hdr = mem;
	struct shm_addr a;
	size_t need = shm_addr_size(capacity);

	if (need == 0) {
		*error_r = "address table capacity out of range";
		return -1;
	}
	if (size < need || ((uintptr_t)mem % 8) != 0) {
		*error_r = "address table area too small or misaligned";
		return -1;
	}
	memset(hdr, 0, sizeof(*hdr));
	hdr->version = IPC_VERSION;
	hdr->capacity = capacity;
	hdr->nbuckets = nbuckets_for(capacity);
	if (shm_mutex_init(&hdr->lock) < 0) {
		*error_r = "address table mutex init failed";
		return -1;
	}
	table_map(&a, hdr);
	memset(a.ents, 0, (size_t)capacity * sizeof(*a.ents));
	table_rebuild(&a);
	hdr->magic = IPC_SHM_MAGIC;     /* last: attach checks it */
	return 0;
}

struct shm_addr *shm_addr_attach(void *mem, const char **error_r)
{
	struct ipc_addr_table *hdr = mem;
	struct shm_addr *a;

	if (hdr->magic != IPC_SHM_MAGIC || hdr->version != IPC_VERSION ||
	    shm_addr_size(hdr->capacity) == 0 ||
	    hdr->nbuckets != nbuckets_for(hdr->capacity)) {
		*error_r = "address table magic, version or header mismatch";
		return NULL;
	}
	a = malloc(sizeof(*a));
	if (a == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	table_map(a, hdr);
	return a;
}

void shm_addr_detach(struct shm_addr **a)
{
	free(*a);
	*a = NULL;
}

static int table_lock(struct shm_addr *a, const char **error_r)
{
	int ret = pthread_mutex_lock(&a->hdr->lock);

	if (ret == 0)
		return 0;
	if (ret != EOWNERDEAD) {
		*error_r = "address table lock failed";
		return -1;
	}
	table_rebuild(a);
	a->hdr->recoveries++;
	pthread_mutex_consistent(&a->hdr->lock);
	log_warn("address table: lock holder died, lists rebuilt (%u in use)",
		 a->hdr->used);
	return 0;
}

static void table_unlock(struct shm_addr *a)
{
	pthread_mutex_unlock(&a->hdr->lock);
}

/* FREE first, then unlink: a crash in between leaves a FREE entry that
 * the rebuild drops from its chain. */
static void table_unlink(struct shm_addr *a, int32_t *link)
{
	int32_t idx = *link;
	struct ipc_addr_entry *e = &a->ents[idx];

	atomic_store(&e->state, IPC_SESSION_FREE);
	*link = e->next;
	e->next = a->hdr->free_head;
	a->hdr->free_head = idx;
	a->hdr->used--;
}

/* Whole entry first, USED with release order, then link. */
static void table_insert(struct shm_addr *a, const struct shm_addr_key *k,
			 uint32_t hash, uint16_t slot)
{
	int32_t idx = a->hdr->free_head;
	struct ipc_addr_entry *e = &a->ents[idx];

	a->hdr->free_head = e->next;
	e->hash = hash;
	e->count = 1;
	e->slot = slot;
	e->family = k->family;
	memcpy(e->key, k->key, sizeof(e->key));
	if (shm_addr_test_hook != NULL)
		shm_addr_test_hook();
	atomic_store_explicit(&e->state, IPC_SESSION_USED,
			      memory_order_release);
	e->next = a->buckets[hash & a->mask];
	a->buckets[hash & a->mask] = idx;
	a->hdr->used++;
}

/* The address's total over all slots and the link to slot's entry (NULL
 * if none).  Lock held. */
static int32_t *table_find(struct shm_addr *a, const struct shm_addr_key *k,
			   uint32_t hash, uint16_t slot, unsigned *total_r)
{
	int32_t *link = &a->buckets[hash & a->mask], *mine = NULL;
	unsigned total = 0;

	for (; *link >= 0; link = &a->ents[*link].next) {
		const struct ipc_addr_entry *e = &a->ents[*link];

		if (!entry_is(e, k, hash))
			continue;
		total += e->count;
		if (e->slot == slot)
			mine = link;
	}
	*total_r = total;
	return mine;
}

int shm_addr_acquire(struct shm_addr *a, const struct shm_addr_key *k,
		     uint16_t slot, unsigned limit, unsigned *count_r,
		     const char **error_r)
{
	uint32_t hash = key_hash(k);
	unsigned total;
	int32_t *mine;
	int ret = 1;

	if (table_lock(a, error_r) < 0)
		return -1;
	mine = table_find(a, k, hash, slot, &total);
	if (count_r != NULL)
		*count_r = total;
	if (limit > 0 && total >= limit) {
		ret = 0;
	} else if (mine != NULL) {
		a->ents[*mine].count++;
	} else if (a->hdr->free_head < 0) {
		*error_r = "address table full";
		ret = -1;
	} else {
		table_insert(a, k, hash, slot);
	}
	table_unlock(a);
	return ret;
}

void shm_addr_release(struct shm_addr *a, const struct shm_addr_key *k,
		      uint16_t slot)
{
	const char *error;
	uint32_t hash = key_hash(k);
	unsigned total;
	int32_t *mine;

	if (table_lock(a, &error) < 0) {
		log_error("%s", error);
		return;
	}
	mine = table_find(a, k, hash, slot, &total);
	if (mine != NULL && --a->ents[*mine].count == 0)
		table_unlink(a, mine);
	table_unlock(a);
}

unsigned shm_addr_sweep_slot(struct shm_addr *a, uint16_t slot)
{
	const char *error;
	unsigned dropped = 0;

	if (table_lock(a, &error) < 0) {
		log_error("%s", error);
		return 0;
	}
	for (uint32_t b = 0; b < a->hdr->nbuckets; b++) {
		int32_t *link = &a->buckets[b];

		while (*link >= 0) {
			if (a->ents[*link].slot != slot) {
				link = &a->ents[*link].next;
				continue;
			}
			dropped += a->ents[*link].count;
			table_unlink(a, link);
		}
	}
	table_unlock(a);
	return dropped;
}

unsigned shm_addr_count(struct shm_addr *a, const struct shm_addr_key *k)
{
	const char *error;
	unsigned total = 0;

	if (table_lock(a, &error) < 0)
		return 0;
	table_find(a, k, key_hash(k), UINT16_MAX, &total);
	table_unlock(a);
	return total;
}

void shm_addr_usage(struct shm_addr *a, uint32_t *used_r,
		    uint32_t *capacity_r, uint32_t *recoveries_r)
{
	const char *error;
	bool locked = table_lock(a, &error) == 0;

	*used_r = a->hdr->used;
	*capacity_r = a->hdr->capacity;
	*recoveries_r = a->hdr->recoveries;
	if (locked)
		table_unlock(a);
}

/* Chains: in range, no cycle, USED, right bucket, count > 0, at most
 * one entry per (address, slot).  seen[] marks what they reach. */
static int verify_chains(struct shm_addr *a, uint8_t *seen,
			 const char **error_r)
{
	uint32_t reached = 0;

	for (uint32_t b = 0; b < a->hdr->nbuckets; b++) {
		for (int32_t i = a->buckets[b]; i >= 0; i = a->ents[i].next) {
			const struct ipc_addr_entry *e = &a->ents[i];

			if ((uint32_t)i >= a->hdr->capacity || seen[i] != 0) {
				*error_r = "chain index out of range or cycle";
				return -1;
			}
			seen[i] = 1;
			reached++;
			if (atomic_load(&e->state) != IPC_SESSION_USED ||
			    e->count == 0 || (e->hash & a->mask) != b) {
				*error_r = "chain holds a free, empty or misplaced entry";
				return -1;
			}
			/* Bounded: a cycle further on is reported later. */
			uint32_t steps = 0;
			for (int32_t j = e->next; j >= 0 &&
			     (uint32_t)j < a->hdr->capacity &&
			     steps++ < a->hdr->capacity; j = a->ents[j].next) {
				if (a->ents[j].slot == e->slot &&
				    a->ents[j].hash == e->hash &&
				    a->ents[j].family == e->family &&
				    memcmp(a->ents[j].key, e->key,
					   sizeof(e->key)) == 0) {
					*error_r = "two entries for one address and slot";
					return -1;
				}
			}
		}
	}
	if (reached != a->hdr->used) {
		*error_r = "used count does not match the chains";
		return -1;
	}
	return 0;
}

static int verify_locked(struct shm_addr *a, uint8_t *seen,
			 const char **error_r)
{
	if (verify_chains(a, seen, error_r) < 0)
		return -1;
	for (int32_t i = a->hdr->free_head; i >= 0; i = a->ents[i].next) {
		if ((uint32_t)i >= a->hdr->capacity || seen[i] != 0) {
			*error_r = "free list out of range, cycle or holds a used entry";
			return -1;
		}
		seen[i] = 2;
	}
	for (uint32_t i = 0; i < a->hdr->capacity; i++) {
		if (seen[i] == 0) {
			*error_r = "entry neither used nor on the free list";
			return -1;
		}
	}
	return 0;
}

int shm_addr_verify(struct shm_addr *a, const char **error_r)
{
	uint8_t *seen = calloc(a->hdr->capacity, 1);
	int ret = -1;

	if (seen == NULL)
		*error_r = "out of memory";
	else if (table_lock(a, error_r) == 0) {
		ret = verify_locked(a, seen, error_r);
		table_unlock(a);
	}
	free(seen);
	return ret;
}

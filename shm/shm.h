/*
 * shm.h - the shared region the master maps before forking: header,
 * per-worker counters, the session table, the per-address connection
 * counts, and in a second mapping the login-failure table.  Layout
 * structs are in ipc.h.
 * Failure policy: shm_create fails start-up; nothing here allocates later.
 */
#ifndef XMPPD_SHM_H
#define XMPPD_SHM_H

#include <pthread.h>

#include <stddef.h>
#include <stdint.h>
#include "ipc.h"

struct smstore;

struct shm_region {
	void *base;                     /* the mapping */
	size_t size;
	struct ipc_shm_header *hdr;
	struct shm_table *sessions;     /* process-local handle */
	struct shm_addr *addrs;         /* connections per address */
	void *smstore_base;             /* third mapping: XEP-0198 journal */
	size_t smstore_size;
	void *throttle_base;            /* second mapping: login failures */
	size_t throttle_size;
	struct shm_throttle *throttle;  /* NULL until shm_create_throttle */
	struct smstore *smstore;        /* XEP-0198 journal (smstore.h), NULL
					   until mapped */
	void *caps_base;                /* fourth mapping: entity caps */
	size_t caps_size;
	struct shm_caps *caps;          /* NULL until shm_create_caps */
};

/* Map MAP_SHARED|MAP_ANONYMOUS and initialise every part.  The address
 * table gets SHM_ADDR_PER_SESSION entries per session record: an entry
 * is one (address, worker) pair with open connections, so it fills only
 * when that many distinct pairs are connected, and one address takes at
 * most one entry per worker. */
#define SHM_ADDR_PER_SESSION 2u

int shm_create(struct shm_region *r, unsigned nslots, uint32_t capacity,
	       const char **error_r);
/* The same, the session table with a change log of log_entries (the
 * cluster's cluster.change_log; 0: none, as shm_create). */
int shm_create_log(struct shm_region *r, unsigned nslots, uint32_t capacity,
		   uint32_t log_entries, const char **error_r);
/* Map the login-failure table (throttle.h) as a second shared mapping;
 * the master calls it after shm_create, before forking. */
int shm_create_throttle(struct shm_region *r, uint32_t capacity,
			const char **error_r);
/* Map the XEP-0198 journal (smstore.h) as a third shared mapping, for
 * nslots workers of `records` sessions and `bytes` of stanza pool each
 * (sm.records_per_worker, sm.pool_bytes_per_worker); the master calls
 * it after shm_create, before forking. */
int shm_create_smstore(struct shm_region *r, unsigned nslots,
		       uint32_t records, uint64_t bytes, const char **error_r);
/* Map the entity-capabilities cache (shm/caps.h, caps.table_size
 * entries) as a fourth shared mapping, before forking. */
int shm_create_caps(struct shm_region *r, uint32_t capacity,
		    const char **error_r);
void shm_destroy(struct shm_region *r);
/* A process-shared robust mutex, as every shared table's lock is. */
int shm_mutex_init(pthread_mutex_t *m);

/* What the hashed tables (throttle.c, caps.c) share: a header, then a
 * power-of-two number (at least probe) of fixed-size records, a random
 * key and a robust mutex in the header.  The strings are the errors. */
struct shm_table_kind {
	uint32_t probe;                 /* smallest capacity, a power of 2 */
	uint32_t max;                   /* largest capacity asked for */
	size_t hdr_size, rec_size;
	const char *range_error, *area_error, *mutex_error, *header_error;
};
/* The capacity a table asked for capacity gets: a power of two. */
uint32_t shm_table_capacity(const struct shm_table_kind *k, uint32_t capacity);
/* Bytes of the table; 0 if capacity is 0 or above k->max. */
size_t shm_table_size(const struct shm_table_kind *k, uint32_t capacity);
/* Check the area, zero it, draw the key and init the lock; the caller
 * then fills its header, the magic last.  0, or -1 and an error. */
int shm_table_init(const struct shm_table_kind *k, void *mem, size_t size,
		   uint32_t capacity, void *key, size_t key_size,
		   pthread_mutex_t *lock, const char **error_r);
/* Check a mapped header's fields (magic_ok: its magic matched) and
 * allocate the zeroed process-local handle of handle_size bytes; NULL
 * and an error otherwise. */
void *shm_table_attach(const struct shm_table_kind *k, int magic_ok,
		       uint32_t version, uint32_t capacity,
		       size_t handle_size, const char **error_r);
struct ipc_worker_stats *shm_worker_stats(struct shm_region *r,
					  unsigned slot);

#endif

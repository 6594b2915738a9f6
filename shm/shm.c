/*
 * shm.c - the shared mappings: first struct ipc_shm_header (with the
 * per-worker counters), then, 64-byte aligned, the session table, then,
 * 64-byte aligned, the per-address connection table; and a second
 * mapping for the login-failure table (throttle.c), kept apart so its
 * size setting never moves the session table, and a third for the
 * XEP-0198 journal (smstore.c), which outlives any worker.
 * The master creates it before forking, so every worker inherits it at
 * the same address; contents are still addressed by index, not pointer.
 * Failure policy: shm_create answers -1 and an error (start-up fails).
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "session.h"
#include "shm.h"
#include "smstore.h"
#include "throttle.h"
#include "caps.h"
#include <sodium.h>

/* A cache line: the table's mutex and hot fields do not share one with
 * the last worker's counters. */
#define SHM_ALIGN 64u

static size_t shm_align(size_t n)
{
	return (n + SHM_ALIGN - 1) & ~(size_t)(SHM_ALIGN - 1);
}

static size_t shm_table_offset(void)
{
	return shm_align(sizeof(struct ipc_shm_header));
}

/* Attach both tables of a freshly initialised mapping. */
static int shm_attach_parts(struct shm_region *r, char *base,
			    size_t addr_offset, const char **error_r)
{
	r->sessions = shm_session_attach(base + shm_table_offset(), error_r);
	if (r->sessions == NULL)
		return -1;
	r->addrs = shm_addr_attach(base + addr_offset, error_r);
	return r->addrs == NULL ? -1 : 0;
}

static void shm_fill_header(struct ipc_shm_header *hdr, unsigned nslots,
			    size_t size)
{
	/* The mapping is zero-filled: counters and pids start at 0. */
	hdr->magic = IPC_SHM_MAGIC;
	hdr->version = IPC_VERSION;
	hdr->nslots = nslots;
	hdr->nworkers = nslots;     /* the master lowers it for a bridge */
	hdr->size = size;
	hdr->master_started = (int64_t)time(NULL);
	atomic_store(&hdr->master_pid, (int32_t)getpid());
}

int shm_create(struct shm_region *r, unsigned nslots, uint32_t capacity,
	       const char **error_r)
{
	return shm_create_log(r, nslots, capacity, 0, error_r);
}

int shm_create_log(struct shm_region *r, unsigned nslots, uint32_t capacity,
		   uint32_t log_entries, const char **error_r)
{
	size_t table_size = shm_session_size_log(capacity, log_entries);
	uint32_t addr_capacity = capacity * SHM_ADDR_PER_SESSION;
	size_t addr_size = shm_addr_size(addr_capacity);
	size_t addr_offset = shm_align(shm_table_offset() + table_size);
	size_t size = addr_offset + addr_size;
	void *base;

	memset(r, 0, sizeof(*r));
	if (nslots == 0 || nslots > IPC_MAX_SLOTS) {
		*error_r = "worker slot count out of range";
		return -1;
	}
	if (table_size == 0 || addr_size == 0) {
		*error_r = "session table capacity out of range";
		return -1;
	}
	base = mmap(NULL, size, PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED) {
		*error_r = "mmap() of the shared region failed";
		return -1;
	}
	shm_fill_header(base, nslots, size);
	if (shm_session_init_log((char *)base + shm_table_offset(),
				 table_size, capacity, log_entries,
				 error_r) < 0 ||
	    shm_addr_init((char *)base + addr_offset, addr_size,
			  addr_capacity, error_r) < 0 ||
	    shm_attach_parts(r, base, addr_offset, error_r) < 0) {
		if (r->sessions != NULL)
			shm_session_detach(&r->sessions);
		munmap(base, size);
		return -1;
	}
	r->base = base;
	r->size = size;
	r->hdr = base;
	return 0;
}

int shm_mutex_init(pthread_mutex_t *m)
{
	pthread_mutexattr_t attr;
	int ret;

	if (pthread_mutexattr_init(&attr) != 0)
		return -1;
	ret = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	if (ret == 0)
		ret = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	if (ret == 0)
		ret = pthread_mutex_init(m, &attr);
	pthread_mutexattr_destroy(&attr);
	return ret == 0 ? 0 : -1;
}

/* Map size bytes for a table and init it; NULL and an error if size is
 * 0 (range_error), mmap fails (mmap_error) or init fails. */
static void *map_table(size_t size, uint32_t capacity,
		       int (*init)(void *, size_t, uint32_t, const char **),
		       const char *range_error, const char *mmap_error,
		       const char **error_r)
{
	void *base;

	if (size == 0) {
		*error_r = range_error;
		return NULL;
	}
	base = mmap(NULL, size, PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED) {
		*error_r = mmap_error;
		return NULL;
	}
	if (init(base, size, capacity, error_r) < 0) {
		munmap(base, size);
		return NULL;
	}
	return base;
}

uint32_t shm_table_capacity(const struct shm_table_kind *k, uint32_t capacity)
{
	uint32_t n = k->probe;

	while (n < capacity)
		n <<= 1;
	return n;
}

size_t shm_table_size(const struct shm_table_kind *k, uint32_t capacity)
{
	if (capacity == 0 || capacity > k->max)
		return 0;
	return k->hdr_size +
		(size_t)shm_table_capacity(k, capacity) * k->rec_size;
}

int shm_table_init(const struct shm_table_kind *k, void *mem, size_t size,
		   uint32_t capacity, void *key, size_t key_size,
		   pthread_mutex_t *lock, const char **error_r)
{
	size_t need = shm_table_size(k, capacity);

	if (need == 0) {
		*error_r = k->range_error;
		return -1;
	}
	if (size < need || ((uintptr_t)mem % 8) != 0) {
		*error_r = k->area_error;
		return -1;
	}
	memset(mem, 0, need);
	randombytes_buf(key, key_size);
	if (shm_mutex_init(lock) < 0) {
		*error_r = k->mutex_error;
		return -1;
	}
	return 0;
}

void *shm_table_attach(const struct shm_table_kind *k, int magic_ok,
		       uint32_t version, uint32_t capacity,
		       size_t handle_size, const char **error_r)
{
	void *t;

	if (!magic_ok || version != IPC_VERSION || capacity < k->probe ||
	    (capacity & (capacity - 1)) != 0) {
		*error_r = k->header_error;
		return NULL;
	}
	t = calloc(1, handle_size);
	if (t == NULL)
		*error_r = "out of memory";
	return t;
}

int shm_create_throttle(struct shm_region *r, uint32_t capacity,
			const char **error_r)
{
	size_t size = shm_throttle_size(capacity);
	void *base = map_table(size, capacity, shm_throttle_init,
			       "throttle table capacity out of range",
			       "mmap() of the throttle table failed", error_r);

	if (base == NULL)
		return -1;
	if ((r->throttle = shm_throttle_attach(base, error_r)) == NULL) {
		munmap(base, size);
		return -1;
	}
	r->throttle_base = base;
	r->throttle_size = size;
	return 0;
}

/* MAP_NORESERVE: the journal is sized for the worst case (every worker
 * full of detached sessions) but used sparsely, and smstore.c touches a
 * page only once a session needs it; reserving swap for the whole of it
 * would refuse to start on a machine that could serve the real load. */
int shm_create_smstore(struct shm_region *r, unsigned nslots,
		       uint32_t records, uint64_t bytes, const char **error_r)
{
	size_t size = smstore_size(nslots, records, bytes);
	void *base;

	if (size == 0) {
		*error_r = "stream management pool size out of range";
		return -1;
	}
	base = mmap(NULL, size, PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED) {
		*error_r = "mmap() of the stream management journal failed";
		return -1;
	}
	if (smstore_init(base, size, nslots, records, bytes, error_r) < 0 ||
	    (r->smstore = smstore_attach(base, error_r)) == NULL) {
		munmap(base, size);
		return -1;
	}
	r->smstore_base = base;
	r->smstore_size = size;
	return 0;
}

int shm_create_caps(struct shm_region *r, uint32_t capacity,
		    const char **error_r)
{
	size_t size = shm_caps_size(capacity);
	void *base = map_table(size, capacity, shm_caps_init,
			       "caps table capacity out of range",
			       "mmap() of the caps table failed", error_r);

	if (base == NULL)
		return -1;
	if ((r->caps = shm_caps_attach(base, error_r)) == NULL) {
		munmap(base, size);
		return -1;
	}
	r->caps_base = base;
	r->caps_size = size;
	return 0;
}

void shm_destroy(struct shm_region *r)
{
	if (r->caps != NULL)
		shm_caps_detach(&r->caps);
	if (r->caps_base != NULL)
		munmap(r->caps_base, r->caps_size);
	if (r->smstore != NULL)
		smstore_detach(&r->smstore);
	if (r->smstore_base != NULL)
		munmap(r->smstore_base, r->smstore_size);
	if (r->throttle != NULL)
		shm_throttle_detach(&r->throttle);
	if (r->throttle_base != NULL)
		munmap(r->throttle_base, r->throttle_size);
	if (r->sessions != NULL)
		shm_session_detach(&r->sessions);
	if (r->addrs != NULL)
		shm_addr_detach(&r->addrs);
	if (r->base != NULL)
		munmap(r->base, r->size);
	memset(r, 0, sizeof(*r));
}

struct ipc_worker_stats *shm_worker_stats(struct shm_region *r,
					  unsigned slot)
{
	if (r->hdr == NULL || slot >= r->hdr->nslots)
		return NULL;
	return &r->hdr->workers[slot];
}

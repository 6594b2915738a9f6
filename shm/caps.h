/*
 * caps.h - the shared entity-capabilities cache (layout in ipc.h): one
 * entry per (algorithm, ver) of XEP-0115 / XEP-0390 that a client sent,
 * with its state and the keyed 64-bit hashes of its +notify node names,
 * read by every worker without a lock (PEP fan-out asks "does this
 * session want node N?") and written under one robust mutex.
 *
 * Fixed capacity (caps.table_size), open addressing over
 * IPC_CAPS_PROBE slots; a new entry takes a FREE slot, else an INVALID
 * one or a PENDING one whose query timed out, else the LRU VERIFIED
 * entry no session holds (refs 0: shm_caps_ref/unref), else the LRU
 * VERIFIED entry idle for idle_ms (caps.idle_timeout: refs a dead
 * worker never gave back; live sessions' entries are touched).
 * Failure policy: a lock error or a full window answers -1 / FULL and
 * the caller goes on without caps for that session (no notifications:
 * XEP-0060 section 9.2 filtering is a MUST); nothing here allocates
 * after attach.
 */
#ifndef XMPPD_SHM_CAPS_H
#define XMPPD_SHM_CAPS_H

#include <stddef.h>
#include <stdint.h>
#include "ipc.h"

struct shm_caps;        /* process-local handle over the shared area */


/* Bytes for `capacity` records (rounded up to a power of two, at least
 * IPC_CAPS_PROBE, at most 32768 so a session record's 16-bit
 * index + 1 holds any); 0 when out of range. */
size_t shm_caps_size(uint32_t capacity);
int shm_caps_init(void *mem, size_t size, uint32_t capacity,
		  const char **error_r);
struct shm_caps *shm_caps_attach(void *mem, const char **error_r);
void shm_caps_detach(struct shm_caps **t);

/* The keyed hash of a node name, as entries keep them. */
uint64_t shm_caps_hash(const struct shm_caps *t, const char *s, size_t len);

/* What shm_caps_begin() tells the caller to do. */
enum shm_caps_verdict {
	SHM_CAPS_KNOWN = 1,     /* VERIFIED: apply *idx_r, *gen_r */
	SHM_CAPS_ASK,           /* now PENDING: send the disco#info query */
	SHM_CAPS_WAIT,          /* PENDING: a query is out (any worker) */
	SHM_CAPS_BAD,           /* (unused: INVALID is asked again) */
	SHM_CAPS_FULL,          /* no slot: no caps for now */
};

/* The entry of (algo, v2, ver), created PENDING when missing.  A PENDING
 * entry older than timeout_ms, or an INVALID one (another client may
 * answer right: the one that lied is held off by its worker), is
 * handed out again as SHM_CAPS_ASK.  -1 on a lock error. */
int shm_caps_begin(struct shm_caps *t, uint8_t algo, uint8_t v2,
		   const char *ver, int64_t now_ms, int64_t timeout_ms,
		   int64_t idle_ms, uint32_t *idx_r, uint32_t *gen_r);
/* Lock-free: the state of (algo, v2, ver) (enum ipc_caps_state, FREE
 * when absent) and its idx and gen. */
int shm_caps_lookup(struct shm_caps *t, uint8_t algo, uint8_t v2,
		    const char *ver, uint32_t *idx_r, uint32_t *gen_r);
/* Make (algo, v2, ver) VERIFIED with the n node hashes (n <=
 * IPC_CAPS_NOTIFY_MAX), creating it when missing; bumps verified_epoch.
 * 0, or -1 (lock error, no slot). */
int shm_caps_verified(struct shm_caps *t, uint8_t algo, uint8_t v2,
		      const char *ver, const uint64_t *hashes, unsigned n,
		      int64_t now_ms, int64_t idle_ms, uint32_t *idx_r,
		      uint32_t *gen_r);
/* A session holds entry idx (VERIFIED with gen16) from now on: 1, or 0
 * when it is gone (evicted, reused: nothing held).  Each 1 is paired
 * with one shm_caps_unref(idx, gen16) when the session lets go (a no-op
 * once the entry is gone). */
int shm_caps_ref(struct shm_caps *t, uint32_t idx, uint16_t gen16,
		 int64_t now_ms);
void shm_caps_unref(struct shm_caps *t, uint32_t idx, uint16_t gen16);
/* Make (algo, v2, ver) INVALID (a mismatching answer): 0 or -1. */
int shm_caps_invalid(struct shm_caps *t, uint8_t algo, uint8_t v2,
		     const char *ver, int64_t now_ms);
/* Lock-free: 1 when entry idx is VERIFIED with gen's low 16 bits gen16
 * and lists node hash h, else 0. */
int shm_caps_wants(struct shm_caps *t, uint32_t idx, uint16_t gen16,
		   uint64_t h);
/* Lock-free: copy entry idx's hashes (up to max) when VERIFIED with
 * gen16: the count, else -1. */
int shm_caps_read(struct shm_caps *t, uint32_t idx, uint16_t gen16,
		  uint64_t *hashes, unsigned max);
/* Lock-free: mark entry idx used at now_ms (LRU) when it is VERIFIED
 * with gen16: 1; else 0 (evicted or reused: re-resolve the session). */
int shm_caps_touch(struct shm_caps *t, uint32_t idx, uint16_t gen16,
		   int64_t now_ms);
/* Free entry idx when it is still the PENDING entry of gen (a session's
 * own query it no longer waits for: it sent another ver, or left), so
 * one client cannot hold many slots.  1 when freed, else 0. */
int shm_caps_abandon(struct shm_caps *t, uint32_t idx, uint32_t gen);
/* Bumped by each VERIFIED / each eviction: workers compare it with
 * what they saw to wake parked sessions / re-resolve. */
uint64_t shm_caps_epoch(const struct shm_caps *t);
uint64_t shm_caps_evictions(const struct shm_caps *t);

struct shm_caps_usage {
	uint32_t used, capacity, recoveries;
	uint64_t evictions, full;
};
void shm_caps_usage(struct shm_caps *t, struct shm_caps_usage *u_r);

#endif

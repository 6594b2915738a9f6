/*
 * throttle.h - the shared login-failure table: failed authentications
 * per source address (IPv4 /32, IPv6 /64) and per account, counted by
 * every worker together, with a ban/throttle expiry per key.
 *
 * Fixed capacity, open addressing over IPC_THROTTLE_PROBE slots, one
 * robust process-shared mutex.  Failure policy: a lock error answers -1
 * and the caller lets the login go on (fail open: the per-connection
 * limit sasl.max_failures still applies); a full table fails closed
 * (see shm_throttle_check); nothing here allocates later.
 */
#ifndef XMPPD_THROTTLE_H
#define XMPPD_THROTTLE_H

#include <stddef.h>
#include <stdint.h>
#include "ipc.h"

struct shm_throttle;    /* process-local handle over the shared area */

/* What a key is looked up by: its kind, keyed hash and label. */
struct throttle_key {
	uint32_t kind;          /* enum ipc_throttle_kind */
	uint64_t hash;
	char label[IPC_THROTTLE_LABEL];
};

/* Thresholds, from the current config (so a reload applies at once). */
struct throttle_limits {
	uint32_t max_failures;  /* failures in a window that block; 0: never */
	int64_t window_ms;      /* failures older than this are forgotten */
	int64_t block_ms;       /* how long a block lasts */
};

/* A copy of one record. */
struct throttle_entry {
	uint32_t kind;          /* enum ipc_throttle_kind */
	uint32_t failures;
	int64_t window_start;
	int64_t blocked_until;  /* 0: not blocked */
	char label[IPC_THROTTLE_LABEL];
};

/* Bytes for `capacity` records (rounded up to a power of two, at least
 * IPC_THROTTLE_PROBE); 0 when out of range. */
size_t shm_throttle_size(uint32_t capacity);
/* Initialise in mem (size from shm_throttle_size) with a random secret. */
int shm_throttle_init(void *mem, size_t size, uint32_t capacity,
		      const char **error_r);
struct shm_throttle *shm_throttle_attach(void *mem, const char **error_r);
void shm_throttle_detach(struct shm_throttle **t);

/* Key of a textual address: IPv4 (and IPv4-mapped IPv6) by the address,
 * IPv6 by its /64.  -1 when the text is not an address. */
int shm_throttle_key_address(const struct shm_throttle *t, const char *addr,
			     struct throttle_key *key_r);
/* Key of an account, "user@domain". */
void shm_throttle_key_account(const struct shm_throttle *t, const char *bare,
			      struct throttle_key *key_r);
/* Key of one address (as shm_throttle_key_address) guessing at one
 * account: -1 when addr is not an address. */
int shm_throttle_key_pair(const struct shm_throttle *t, const char *addr,
			  const char *bare, struct throttle_key *key_r);

/* 1 when key is blocked at `now` (copied to e_r), 0 when not, -1 error;
 * 2 when it has no record and every slot it could take is an active
 * block, so a failure of it could not be counted (fail closed: treat it
 * as blocked; e_r gets the key's label and the soonest slot's end). */
int shm_throttle_check(struct shm_throttle *t, const struct throttle_key *key,
		       int64_t now, struct throttle_entry *e_r);
/* Count one failure.  Returns 1 when this failure started a block, 0
 * otherwise (e_r, when not NULL, gets the record after the update), -1
 * on a lock error, -2 when no slot could take the key (then it is not
 * counted: the caller fails closed, see shm_throttle_check). */
int shm_throttle_fail(struct shm_throttle *t, const struct throttle_key *key,
		      const struct throttle_limits *lim, int64_t now,
		      struct throttle_entry *e_r);
/* Forget the failures of a key that is not blocked (a good login). */
void shm_throttle_clear(struct shm_throttle *t, const struct throttle_key *key,
			int64_t now);
/* Lift a block and forget the key: 1 removed, 0 absent, -1 error. */
int shm_throttle_remove(struct shm_throttle *t, const struct throttle_key *key);

/* Copy up to max keys blocked at `now` to out; returns how many are
 * blocked (may exceed max), or -1 (xmppctl bans). */
int shm_throttle_list_blocked(struct shm_throttle *t, int64_t now,
			      struct throttle_entry *out, unsigned max);

struct throttle_usage {
	uint32_t used, capacity, recoveries;
	uint64_t evictions, refused;
};
void shm_throttle_usage(struct shm_throttle *t, struct throttle_usage *u_r);

#endif

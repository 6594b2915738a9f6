/*
 * addr.h - open client connections per address, in shared memory, so
 * that c2s.max_connections_per_ip holds across workers (SO_REUSEPORT
 * spreads one address's connections over all of them).
 *
 * An address is an IPv4 address (IPv4-mapped IPv6 included) or an IPv6
 * /64: one subscriber gets a /64, so counting single IPv6 addresses
 * would let one host use 2^64 of them.  Counts are kept per (address,
 * worker slot), so one address takes at most one entry per slot and the
 * master can drop a dead worker's counts.  Incoming server-to-server
 * streams per remote domain are counted in the same table under a
 * family of their own (SHM_ADDR_DOMAIN).  Failure policy: a full table
 * answers -1 with an error; one robust mutex, rebuilt from state words
 * after a dead holder, as in session.c.
 */
#ifndef XMPPD_ADDR_H
#define XMPPD_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "ipc.h"

struct shm_addr;    /* process-local handle over the shared area */

struct shm_addr_key {
	uint8_t family;         /* 4, 6 or SHM_ADDR_DOMAIN; 0: not counted
				 * (e.g. AF_UNIX) */
	uint8_t key[8];         /* IPv4 address, IPv6 /64 prefix, or a
				 * domain's hash */
};

/* Family of a remote domain's incoming s2s streams
 * (s2s.max_incoming_per_domain across workers, worker/s2s_in.c): the
 * key is a hash of the domain. */
#define SHM_ADDR_DOMAIN 68u

/* The key of a peer address (family 0 for anything but IP). */
void shm_addr_key(const struct sockaddr_storage *ss,
		  struct shm_addr_key *key_r);

/* Bytes needed for a table of `capacity` entries (0 if out of range). */
size_t shm_addr_size(uint32_t capacity);
int shm_addr_init(void *mem, size_t size, uint32_t capacity,
		  const char **error_r);
struct shm_addr *shm_addr_attach(void *mem, const char **error_r);
void shm_addr_detach(struct shm_addr **a);

/* Count one more connection of key on slot unless the address already
 * has `limit` (0: no limit) across all slots.  The check and the count
 * are one lock hold, so workers accepting at once cannot both pass.
 * 1 counted, 0 refused (limit reached), -1 table full or lock failed.
 * *count_r (may be NULL) is the address's count before this one. */
int shm_addr_acquire(struct shm_addr *a, const struct shm_addr_key *key,
		     uint16_t slot, unsigned limit, unsigned *count_r,
		     const char **error_r);
/* One counted connection of key on slot closed. */
void shm_addr_release(struct shm_addr *a, const struct shm_addr_key *key,
		      uint16_t slot);
/* Drop every count of slot (its worker died); returns the connections
 * dropped. */
unsigned shm_addr_sweep_slot(struct shm_addr *a, uint16_t slot);
/* Open connections of key across all slots. */
unsigned shm_addr_count(struct shm_addr *a, const struct shm_addr_key *key);
/* Entries in use, capacity, recoveries after a dead lock holder. */
void shm_addr_usage(struct shm_addr *a, uint32_t *used_r,
		    uint32_t *capacity_r, uint32_t *recoveries_r);
/* Check chains, free list and counts; 0 ok, -1 with error. */
int shm_addr_verify(struct shm_addr *a, const char **error_r);

/* Test hook: called with the lock held in the middle of an insert. */
extern void (*shm_addr_test_hook)(void);

#endif

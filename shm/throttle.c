/*
 * throttle.c - the shared login-failure table (layout in ipc.h, API in
 * throttle.h).  A key (address or account) hashes, with a secret SipHash
 * key drawn when the master creates the table, to a window of
 * IPC_THROTTLE_PROBE consecutive slots; it lives in one of them.
 *
 * Eviction, when the window is full: a FREE slot first, else the slot
 * that is not blocked and saw its last failure longest ago.  An active
 * block is never evicted: when all slots of a window are blocked the new
 * key is not counted (refused++), and the caller fails closed for it:
 * shm_throttle_check() answers 2 ("cannot be counted") and
 * shm_throttle_fail() -2, so such a key is treated as blocked until a
 * slot of its window frees.  A flood of distinct addresses thus cannot
 * lift bans nor turn throttling off; it can only push out half-counted
 * keys, and because the hash is keyed it cannot aim at a chosen window:
 * to cover one it must fill the whole table.  Failure policy: -1 on lock failure, never
 * a broken table (records are independent, see ipc.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "throttle.h"
#include "shm.h"

/* 88-byte records: 4M of them is ~370 MB, far beyond any need. */
#define THROTTLE_CAPACITY_MAX (1u << 22)

_Static_assert(sizeof(struct ipc_throttle_table) % 8 == 0, "table header");
_Static_assert(sizeof(struct ipc_throttle_rec) % 8 == 0, "record alignment");
_Static_assert(crypto_shorthash_KEYBYTES == 16, "SipHash key size");
_Static_assert(crypto_shorthash_BYTES == 8, "SipHash output size");

struct shm_throttle {
	struct ipc_throttle_table *hdr;
	struct ipc_throttle_rec *recs;
	uint32_t mask;                  /* capacity - 1 */
};

static const struct shm_table_kind throttle_kind = {
	.probe = IPC_THROTTLE_PROBE,
	.max = THROTTLE_CAPACITY_MAX,
	.hdr_size = sizeof(struct ipc_throttle_table),
	.rec_size = sizeof(struct ipc_throttle_rec),
	.range_error = "throttle table capacity out of range",
	.area_error = "throttle table area too small or misaligned",
	.mutex_error = "throttle table mutex init failed",
	.header_error = "throttle table header is inconsistent",
};

size_t shm_throttle_size(uint32_t capacity)
{
	return shm_table_size(&throttle_kind, capacity);
}

int shm_throttle_init(void *mem, size_t size, uint32_t capacity,
		      const char **error_r)
{
	struct ipc_throttle_table *hdr = mem;

	if (shm_table_init(&throttle_kind, mem, size, capacity, hdr->secret,
			   sizeof(hdr->secret), &hdr->lock, error_r) < 0)
		return -1;
	hdr->version = IPC_VERSION;
	hdr->capacity = shm_table_capacity(&throttle_kind, capacity);
	/* Last, so a half-built table never passes attach's check. */
	hdr->magic = IPC_THROTTLE_MAGIC;
	return 0;
}

struct shm_throttle *shm_throttle_attach(void *mem, const char **error_r)
{
	struct ipc_throttle_table *hdr = mem;
	struct shm_throttle *t = shm_table_attach(&throttle_kind,
					hdr->magic == IPC_THROTTLE_MAGIC,
					hdr->version, hdr->capacity,
					sizeof(*t), error_r);

	if (t == NULL)
		return NULL;
	t->hdr = hdr;
	t->recs = (struct ipc_throttle_rec *)(hdr + 1);
	t->mask = hdr->capacity - 1;
	return t;
}

void shm_throttle_detach(struct shm_throttle **t)
{
	free(*t);
	*t = NULL;
}

/* ---- keys --------------------------------------------------------------- */

static void key_hash(const struct shm_throttle *t, struct throttle_key *k,
		     const void *data, size_t len)
{
	unsigned char in[1 + 9 + IPC_JID_MAX];
	unsigned char out[crypto_shorthash_BYTES];

	if (len > sizeof(in) - 1)
		len = sizeof(in) - 1;
	in[0] = (unsigned char)k->kind;
	memcpy(in + 1, data, len);
	crypto_shorthash(out, in, len + 1, t->hdr->secret);
	memcpy(&k->hash, out, sizeof(k->hash));
}

/* The bytes an address is counted by (IPv4 and IPv4-mapped: "4" and
 * the address; IPv6: "6" and its /64) and its label; -1 if not one. */
static int addr_bytes(const char *addr, unsigned char bytes[9], size_t *len_r,
		      char label[IPC_THROTTLE_LABEL])
{
	struct in_addr v4;
	struct in6_addr v6;
	char text[INET6_ADDRSTRLEN];

	if (inet_pton(AF_INET, addr, &v4) == 1) {
		bytes[0] = 4;
		memcpy(bytes + 1, &v4, 4);
	} else if (inet_pton(AF_INET6, addr, &v6) != 1) {
		return -1;
	} else if (IN6_IS_ADDR_V4MAPPED(&v6)) {
		bytes[0] = 4;
		memcpy(bytes + 1, &v6.s6_addr[12], 4);
		memcpy(&v4, &v6.s6_addr[12], 4);
	} else {
		/* One host usually holds a whole /64: count the prefix. */
		bytes[0] = 6;
		memcpy(bytes + 1, v6.s6_addr, 8);
		memset(&v6.s6_addr[8], 0, 8);
		inet_ntop(AF_INET6, &v6, text, sizeof(text));
		snprintf(label, IPC_THROTTLE_LABEL, "%.40s/64", text); /* at most 21 + 3 */
		*len_r = 9;
		return 0;
	}
	inet_ntop(AF_INET, &v4, text, sizeof(text));
	snprintf(label, IPC_THROTTLE_LABEL, "%s", text);
	*len_r = 5;
	return 0;
}

int shm_throttle_key_address(const struct shm_throttle *t, const char *addr,
			     struct throttle_key *key_r)
{
	unsigned char bytes[9];
	size_t len;

	memset(key_r, 0, sizeof(*key_r));
	key_r->kind = IPC_THROTTLE_ADDRESS;
	if (addr_bytes(addr, bytes, &len, key_r->label) < 0)
		return -1;
	key_hash(t, key_r, bytes, len);
	return 0;
}

void shm_throttle_key_account(const struct shm_throttle *t, const char *bare,
			      struct throttle_key *key_r)
{
	memset(key_r, 0, sizeof(*key_r));
	key_r->kind = IPC_THROTTLE_ACCOUNT;
	snprintf(key_r->label, sizeof(key_r->label), "%s", bare);
	key_hash(t, key_r, bare, strnlen(bare, IPC_JID_MAX));
}

int shm_throttle_key_pair(const struct shm_throttle *t, const char *addr,
			  const char *bare, struct throttle_key *key_r)
{
	unsigned char data[9 + IPC_JID_MAX];
	char label[IPC_THROTTLE_LABEL];
	size_t len, blen = strnlen(bare, IPC_JID_MAX);

	memset(key_r, 0, sizeof(*key_r));
	key_r->kind = IPC_THROTTLE_PAIR;
	if (addr_bytes(addr, data, &len, label) < 0)
		return -1;
	memcpy(data + len, bare, blen);
	key_hash(t, key_r, data, len + blen);
	/* The address first: a long JID only truncates its own end. */
	memcpy(key_r->label, label, sizeof(key_r->label));
	len = strlen(key_r->label);
	snprintf(key_r->label + len, sizeof(key_r->label) - len, " %.*s",
		 (int)(sizeof(key_r->label) - len), bare);
	return 0;
}

/* ---- locked helpers ------------------------------------------------------ */

static int table_lock(struct shm_throttle *t)
{
	int ret = pthread_mutex_lock(&t->hdr->lock);

	if (ret == 0)
		return 0;
	if (ret != EOWNERDEAD)
		return -1;
	/* Nothing to rebuild: each record stands alone (ipc.h). */
	t->hdr->recoveries++;
	pthread_mutex_consistent(&t->hdr->lock);
	log_warn("throttle table: lock holder died, table kept");
	return 0;
}

static void table_unlock(struct shm_throttle *t)
{
	pthread_mutex_unlock(&t->hdr->lock);
}

static struct ipc_throttle_rec *rec_at(struct shm_throttle *t,
				       const struct throttle_key *k,
				       uint32_t i)
{
	return &t->recs[((uint32_t)k->hash + i) & t->mask];
}

static struct ipc_throttle_rec *rec_find(struct shm_throttle *t,
					 const struct throttle_key *k)
{
	for (uint32_t i = 0; i < IPC_THROTTLE_PROBE; i++) {
		struct ipc_throttle_rec *r = rec_at(t, k, i);
		if (r->kind == k->kind && r->key == k->hash)
			return r;
	}
	return NULL;
}

/* A slot for a new key (see the eviction rule at the top), or NULL. */
static struct ipc_throttle_rec *rec_claim(struct shm_throttle *t,
					  const struct throttle_key *k,
					  int64_t now)
{
	struct ipc_throttle_rec *victim = NULL;

	for (uint32_t i = 0; i < IPC_THROTTLE_PROBE; i++) {
		struct ipc_throttle_rec *r = rec_at(t, k, i);
		if (r->kind == IPC_THROTTLE_FREE) {
			t->hdr->used++;
			victim = r;
			break;
		}
		if (r->blocked_until > now)
			continue;
		if (victim == NULL || r->last < victim->last)
			victim = r;
	}
	if (victim == NULL) {
		t->hdr->refused++;
		return NULL;
	}
	if (victim->kind != IPC_THROTTLE_FREE &&
	    (victim->failures > 0 || victim->blocked_until != 0))
		t->hdr->evictions++;
	memset(victim, 0, sizeof(*victim));
	victim->key = k->hash;
	memcpy(victim->label, k->label, sizeof(victim->label));
	victim->label[sizeof(victim->label) - 1] = '\0';
	victim->window_start = now;
	victim->last = now;
	victim->kind = k->kind;
	return victim;
}

static void rec_copy(const struct ipc_throttle_rec *r,
		     struct throttle_entry *e_r)
{
	if (e_r == NULL)
		return;
	e_r->kind = r->kind;
	e_r->failures = r->failures;
	e_r->window_start = r->window_start;
	e_r->blocked_until = r->blocked_until;
	memcpy(e_r->label, r->label, sizeof(e_r->label));
	e_r->label[sizeof(e_r->label) - 1] = '\0';
}

/* ---- API ------------------------------------------------------------------ */

/* For a key without a record: 1 when no slot of its window could take
 * it at `now` (all are active blocks), with the soonest end in *until_r. */
static int rec_window_full(struct shm_throttle *t, const struct throttle_key *k,
			   int64_t now, int64_t *until_r)
{
	int64_t until = INT64_MAX;

	for (uint32_t i = 0; i < IPC_THROTTLE_PROBE; i++) {
		const struct ipc_throttle_rec *r = rec_at(t, k, i);
		if (r->kind == IPC_THROTTLE_FREE || r->blocked_until <= now)
			return 0;
		if (r->blocked_until < until)
			until = r->blocked_until;
	}
	*until_r = until;
	return 1;
}

int shm_throttle_check(struct shm_throttle *t, const struct throttle_key *key,
		       int64_t now, struct throttle_entry *e_r)
{
	struct ipc_throttle_rec *r;
	int64_t until;
	int ret = 0;

	if (table_lock(t) < 0)
		return -1;
	r = rec_find(t, key);
	if (r != NULL && r->blocked_until > now) {
		rec_copy(r, e_r);
		ret = 1;
	} else if (r == NULL && rec_window_full(t, key, now, &until)) {
		/* Fail closed: a failure of this key could not be counted. */
		if (e_r != NULL) {
			memset(e_r, 0, sizeof(*e_r));
			e_r->kind = key->kind;
			e_r->blocked_until = until;
			memcpy(e_r->label, key->label, sizeof(e_r->label));
			e_r->label[sizeof(e_r->label) - 1] = '\0';
		}
		ret = 2;
	}
	table_unlock(t);
	return ret;
}

/* Count one failure on a record (the lock is held): 1 if it blocks. */
static int rec_fail(struct ipc_throttle_rec *r,
		    const struct throttle_limits *lim, int64_t now)
{
	if (r->blocked_until != 0 && r->blocked_until <= now) {
		/* A block that ran out starts over with a clean count. */
		r->blocked_until = 0;
		r->failures = 0;
		r->window_start = now;
	}
	r->last = now;
	if (r->failures < UINT32_MAX)
		r->failures++;
	if (r->blocked_until != 0)
		return 0;       /* already blocked: the count still tells */
	if (now - r->window_start >= lim->window_ms) {
		r->failures = 1;
		r->window_start = now;
	}
	if (lim->max_failures == 0 || r->failures < lim->max_failures)
		return 0;
	r->blocked_until = now + (lim->block_ms > 0 ? lim->block_ms : 1);
	return 1;
}

int shm_throttle_fail(struct shm_throttle *t, const struct throttle_key *key,
		      const struct throttle_limits *lim, int64_t now,
		      struct throttle_entry *e_r)
{
	struct ipc_throttle_rec *r;
	int ret;

	if (table_lock(t) < 0)
		return -1;
	r = rec_find(t, key);
	if (r == NULL)
		r = rec_claim(t, key, now);
	if (r == NULL) {
		table_unlock(t);
		return -2;
	}
	ret = rec_fail(r, lim, now);
	rec_copy(r, e_r);
	table_unlock(t);
	return ret;
}

void shm_throttle_clear(struct shm_throttle *t, const struct throttle_key *key,
			int64_t now)
{
	struct ipc_throttle_rec *r;

	if (table_lock(t) < 0)
		return;
	r = rec_find(t, key);
	if (r != NULL && r->blocked_until <= now) {
		memset(r, 0, sizeof(*r));
		t->hdr->used--;
	}
	table_unlock(t);
}

int shm_throttle_remove(struct shm_throttle *t, const struct throttle_key *key)
{
	struct ipc_throttle_rec *r;

	if (table_lock(t) < 0)
		return -1;
	r = rec_find(t, key);
	if (r != NULL) {
		memset(r, 0, sizeof(*r));
		t->hdr->used--;
	}
	table_unlock(t);
	return r != NULL;
}

int shm_throttle_list_blocked(struct shm_throttle *t, int64_t now,
			      struct throttle_entry *out, unsigned max)
{
	unsigned n = 0;

	if (table_lock(t) < 0)
		return -1;
	for (uint32_t i = 0; i < t->hdr->capacity; i++) {
		const struct ipc_throttle_rec *r = &t->recs[i];
		if (r->kind == IPC_THROTTLE_FREE || r->blocked_until <= now)
			continue;
		if (n < max)
			rec_copy(r, &out[n]);
		n++;
	}
	table_unlock(t);
	return n > INT32_MAX ? INT32_MAX : (int)n;
}

void shm_throttle_usage(struct shm_throttle *t, struct throttle_usage *u_r)
{
	int locked = table_lock(t) == 0;

	u_r->used = t->hdr->used;
	u_r->capacity = t->hdr->capacity;
	u_r->recoveries = t->hdr->recoveries;
	u_r->evictions = t->hdr->evictions;
	u_r->refused = t->hdr->refused;
	if (locked)
		table_unlock(t);
}

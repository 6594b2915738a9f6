/*
 * test_throttle.c - unit tests for shm/throttle.c: address keys (IPv4,
 * IPv4-mapped, IPv6 by /64), counting within a window, blocks and their
 * expiry, thresholds changed between calls (a reload), eviction when a
 * probe window is full (never an active block), several processes
 * counting together, and a lock holder SIGKILLed.  Times are passed in,
 * so nothing here sleeps.  Forked children _exit() and carry an alarm().
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ipc.h"
#include "shm.h"
#include "throttle.h"
#include "shm_test_map.h"

#define TEST_TIMEOUT 120.
TestSuite(throttle, .timeout = TEST_TIMEOUT);

SHM_TEST_MAP(tmap, shm_throttle)

static struct throttle_key addr_key(struct tmap *m, const char *addr)
{
	struct throttle_key k;
	cr_assert_eq(shm_throttle_key_address(m->t, addr, &k), 0, "%s", addr);
	return k;
}

static const struct throttle_limits LIM = {
	.max_failures = 3, .window_ms = 10000, .block_ms = 60000,
};

Test(throttle, sizes_and_header)
{
	struct tmap m;
	const char *error = NULL;
	char buf[256] __attribute__((aligned(8)));

	cr_assert_eq(shm_throttle_size(0), 0);
	cr_assert_eq(shm_throttle_size((1u << 22) + 1), 0);
	cr_assert_eq(shm_throttle_init(buf, sizeof(buf), 1000, &error), -1);
	tmap_open(&m, 100);     /* rounded up to 128 */
	cr_assert_eq(((struct ipc_throttle_table *)m.mem)->capacity, 128);
	cr_assert_eq(((struct ipc_throttle_table *)m.mem)->version,
		     IPC_VERSION);
	tmap_close(&m);
	memset(buf, 0, sizeof(buf));
	cr_assert_null(shm_throttle_attach(buf, &error));
}

Test(throttle, address_keys)
{
	struct tmap m;
	struct throttle_key a, b;

	tmap_open(&m, 64);
	a = addr_key(&m, "192.0.2.1");
	cr_assert_str_eq(a.label, "192.0.2.1");
	b = addr_key(&m, "::ffff:192.0.2.1");
	cr_assert_eq(a.hash, b.hash, "IPv4-mapped counts as the IPv4 address");
	cr_assert_str_eq(b.label, "192.0.2.1");
	b = addr_key(&m, "192.0.2.2");
	cr_assert_neq(a.hash, b.hash, "IPv4 is counted per address");

	a = addr_key(&m, "2001:db8:1:2:aaaa::1");
	b = addr_key(&m, "2001:db8:1:2:ffff:ffff:ffff:ffff");
	cr_assert_eq(a.hash, b.hash, "one IPv6 /64 is one key");
	cr_assert_str_eq(a.label, "2001:db8:1:2::/64");
	b = addr_key(&m, "2001:db8:1:3::1");
	cr_assert_neq(a.hash, b.hash, "another /64 is another key");

	a = addr_key(&m, "127.0.0.1");
	b = addr_key(&m, "::1");
	cr_assert_neq(a.hash, b.hash);
	cr_assert_eq(shm_throttle_key_address(m.t, "not an address", &a), -1);
	cr_assert_eq(shm_throttle_key_address(m.t, "", &a), -1);

	/* Accounts and addresses never share a record. */
	shm_throttle_key_account(m.t, "192.0.2.1", &a);
	cr_assert_eq(a.kind, IPC_THROTTLE_ACCOUNT);

	/* One address (IPv6: its /64) guessing at one account. */
	cr_assert_eq(shm_throttle_key_pair(m.t, "2001:db8:1:2::1",
					   "alice@example.org", &a), 0);
	cr_assert_eq(a.kind, IPC_THROTTLE_PAIR);
	cr_assert_str_eq(a.label, "2001:db8:1:2::/64 alice@example.org");
	cr_assert_eq(shm_throttle_key_pair(m.t, "2001:db8:1:2::2",
					   "alice@example.org", &b), 0);
	cr_assert_eq(a.hash, b.hash);
	cr_assert_eq(shm_throttle_key_pair(m.t, "2001:db8:1:2::2",
					   "bob@example.org", &b), 0);
	cr_assert_neq(a.hash, b.hash, "another account is another key");
	cr_assert_eq(shm_throttle_key_pair(m.t, "2001:db8:1:3::1",
					   "alice@example.org", &b), 0);
	cr_assert_neq(a.hash, b.hash, "another /64 is another key");
	cr_assert_eq(shm_throttle_key_pair(m.t, "x", "alice@example.org", &b),
		     -1);
	tmap_close(&m);
}

Test(throttle, ipv6_neighbours_share_the_count)
{
	struct tmap m;
	struct throttle_key k;
	struct throttle_entry e;
	char addr[64];

	tmap_open(&m, 64);
	for (int i = 1; i <= 3; i++) {
		snprintf(addr, sizeof(addr), "2001:db8::%x", i * 4097);
		k = addr_key(&m, addr);
		cr_assert_eq(shm_throttle_fail(m.t, &k, &LIM, 1000, &e),
			     i == 3 ? 1 : 0);
	}
	k = addr_key(&m, "2001:db8::beef");
	cr_assert_eq(shm_throttle_check(m.t, &k, 1001, &e), 1);
	cr_assert_eq(e.failures, 3);
	k = addr_key(&m, "2001:db8:0:1::beef");
	cr_assert_eq(shm_throttle_check(m.t, &k, 1001, &e), 0);
	tmap_close(&m);
}

Test(throttle, block_and_expiry)
{
	struct tmap m;
	struct throttle_key k;
	struct throttle_entry e;

	tmap_open(&m, 64);
	k = addr_key(&m, "192.0.2.7");
	cr_assert_eq(shm_throttle_check(m.t, &k, 1000, &e), 0);
	cr_assert_eq(shm_throttle_fail(m.t, &k, &LIM, 1000, &e), 0);
	cr_assert_eq(e.failures, 1);
	cr_assert_eq(shm_throttle_fail(m.t, &k, &LIM, 2000, &e), 0);
	cr_assert_eq(shm_throttle_check(m.t, &k, 2000, &e), 0);
	cr_assert_eq(shm_throttle_fail(m.t, &k, &LIM, 3000, &e), 1,
		     "the third failure starts the block");
	cr_assert_eq(e.blocked_until, 63000);
	cr_assert_eq(shm_throttle_check(m.t, &k, 62999, &e), 1);
	cr_assert_eq(e.failures, 3);
	cr_assert_eq(shm_throttle_fail(m.t, &k, &LIM, 4000, &e), 0,
		     "a block starts once");
	cr_assert_eq(e.blocked_until, 63000, "failures do not extend it");
	cr_assert_eq(shm_throttle_check(m.t, &k, 63000, &e), 0, "expired");
	cr_assert_eq(shm_throttle_fail(m.t, &k, &LIM, 64000, &e), 0);
	cr_assert_eq(e.failures, 1, "the count starts over after a block");
	tmap_close(&m);
}

Test(throttle, window_forgets_old_failures)
{
	struct tmap m;
	struct throttle_key k;
	struct throttle_entry e;

	tmap_open(&m, 64);
	k = addr_key(&m, "192.0.2.8");
	/* Two failures per window, forever: never blocked. */
	for (int64_t now = 0; now < 200000; now += 6000) {
		cr_assert_eq(shm_throttle_fail(m.t, &k, &LIM, now, &e), 0);
		cr_assert_leq(e.failures, 2);
	}
	cr_assert_eq(shm_throttle_check(m.t, &k, 200000, &e), 0);
	tmap_close(&m);
}

Test(throttle, limits_apply_at_once)
{
	struct tmap m;
	struct throttle_key k;
	struct throttle_entry e;
	struct throttle_limits lim = LIM;

	tmap_open(&m, 64);
	k = addr_key(&m, "192.0.2.9");
	lim.max_failures = 0;   /* off: never blocks */
	for (int i = 0; i < 10; i++)
		cr_assert_eq(shm_throttle_fail(m.t, &k, &lim, 1000 + i, &e), 0);
	cr_assert_eq(e.failures, 10);
	lim.max_failures = 5;   /* a reload lowers the threshold */
	cr_assert_eq(shm_throttle_fail(m.t, &k, &lim, 1100, &e), 1);
	cr_assert_eq(shm_throttle_check(m.t, &k, 1101, &e), 1);
	tmap_close(&m);
}

Test(throttle, clear_and_remove)
{
	struct tmap m;
	struct throttle_key k, u;
	struct throttle_entry e;
	struct throttle_usage use;

	tmap_open(&m, 64);
	shm_throttle_key_account(m.t, "alice@example.org", &u);
	cr_assert_str_eq(u.label, "alice@example.org");
	shm_throttle_fail(m.t, &u, &LIM, 1000, &e);
	shm_throttle_fail(m.t, &u, &LIM, 1000, &e);
	shm_throttle_clear(m.t, &u, 1000);
	cr_assert_eq(shm_throttle_fail(m.t, &u, &LIM, 1000, &e), 0);
	cr_assert_eq(e.failures, 1, "a good login forgets the failures");

	k = addr_key(&m, "192.0.2.10");
	for (int i = 0; i < 3; i++)
		shm_throttle_fail(m.t, &k, &LIM, 1000, &e);
	shm_throttle_clear(m.t, &k, 1000);
	cr_assert_eq(shm_throttle_check(m.t, &k, 1000, &e), 1,
		     "clear does not lift a block");
	cr_assert_eq(shm_throttle_remove(m.t, &k), 1);
	cr_assert_eq(shm_throttle_check(m.t, &k, 1000, &e), 0);
	cr_assert_eq(shm_throttle_remove(m.t, &k), 0);
	shm_throttle_usage(m.t, &use);
	cr_assert_eq(use.used, 1);
	cr_assert_eq(use.capacity, 64);
	tmap_close(&m);
}

Test(throttle, list_blocked)
{
	struct tmap m;
	struct throttle_key k, u;
	struct throttle_entry e[2];

	tmap_open(&m, 64);
	k = addr_key(&m, "2001:db8::1");
	shm_throttle_key_account(m.t, "bob@example.org", &u);
	cr_assert_eq(shm_throttle_list_blocked(m.t, 0, e, 2), 0);
	for (int i = 0; i < 3; i++) {
		shm_throttle_fail(m.t, &k, &LIM, 1000, NULL);
		shm_throttle_fail(m.t, &u, &LIM, 2000, NULL);
	}
	shm_throttle_fail(m.t, &k, &LIM, 1000, NULL);
	cr_assert_eq(shm_throttle_list_blocked(m.t, 2000, e, 1), 2,
		     "the count goes past max");
	cr_assert_eq(shm_throttle_list_blocked(m.t, 2000, e, 2), 2);
	if (e[0].kind != IPC_THROTTLE_ADDRESS) {
		struct throttle_entry tmp = e[0];
		e[0] = e[1];
		e[1] = tmp;
	}
	cr_assert_eq(e[0].kind, IPC_THROTTLE_ADDRESS);
	cr_assert_str_eq(e[0].label, "2001:db8::/64");
	cr_assert_eq(e[0].failures, 4);
	cr_assert_eq(e[1].kind, IPC_THROTTLE_ACCOUNT);
	cr_assert_str_eq(e[1].label, "bob@example.org");
	cr_assert_eq(e[1].blocked_until, 2000 + LIM.block_ms);
	cr_assert_eq(shm_throttle_list_blocked(m.t, 1000 + LIM.block_ms, e, 2),
		     1, "the address block ran out first");
	tmap_close(&m);
}

/* With capacity 8 every key shares the one probe window. */
Test(throttle, eviction_spares_active_blocks)
{
	struct tmap m;
	struct throttle_key k[IPC_THROTTLE_PROBE + 2];
	struct throttle_entry e;
	struct throttle_usage use;
	char addr[32];

	tmap_open(&m, IPC_THROTTLE_PROBE);
	for (unsigned i = 0; i < IPC_THROTTLE_PROBE + 2; i++) {
		snprintf(addr, sizeof(addr), "198.51.100.%u", i + 1);
		k[i] = addr_key(&m, addr);
	}
	/* Fill the table: key 0 blocked, keys 1.. counting, key 1 oldest. */
	for (int i = 0; i < 3; i++)
		shm_throttle_fail(m.t, &k[0], &LIM, 100, &e);
	for (unsigned i = 1; i < IPC_THROTTLE_PROBE; i++)
		cr_assert_eq(shm_throttle_fail(m.t, &k[i], &LIM, 100 + i, &e), 0);
	/* A new key takes the least recently failing unblocked slot. */
	cr_assert_eq(shm_throttle_fail(m.t, &k[IPC_THROTTLE_PROBE], &LIM, 200,
				       &e), 0);
	cr_assert_eq(shm_throttle_check(m.t, &k[0], 300, &e), 1,
		     "the block survives");
	cr_assert_eq(shm_throttle_fail(m.t, &k[2], &LIM, 300, &e), 0);
	cr_assert_eq(e.failures, 2, "key 2 kept its count");
	cr_assert_eq(shm_throttle_fail(m.t, &k[1], &LIM, 300, &e), 0);
	cr_assert_eq(e.failures, 1, "key 1 (oldest) was evicted");
	shm_throttle_usage(m.t, &use);
	cr_assert_geq(use.evictions, 1);

	tmap_close(&m);

	/* Every slot blocked: a new key is refused, no block is lost, and
	 * the key that cannot be counted is treated as blocked (fail
	 * closed) until a slot frees, not let through uncounted. */
	tmap_open(&m, IPC_THROTTLE_PROBE);
	for (unsigned i = 0; i < IPC_THROTTLE_PROBE; i++)
		for (int j = 0; j < 3; j++)
			shm_throttle_fail(m.t, &k[i], &LIM, 400 + i, &e);
	cr_assert_eq(shm_throttle_check(m.t, &k[IPC_THROTTLE_PROBE], 500, &e),
		     2, "a key the full table cannot count is held as blocked");
	cr_assert_str_eq(e.label, k[IPC_THROTTLE_PROBE].label);
	cr_assert_eq(e.blocked_until, 400 + LIM.block_ms,
		     "until the soonest block of its window ends");
	cr_assert_eq(shm_throttle_fail(m.t, &k[IPC_THROTTLE_PROBE], &LIM,
				       500, &e), -2, "not counted: told apart "
		     "from a lock error");
	cr_assert_eq(shm_throttle_check(m.t, &k[IPC_THROTTLE_PROBE],
					400 + LIM.block_ms, &e), 0,
		     "a slot is free again");
	unsigned blocked = 0;
	for (unsigned i = 0; i <= IPC_THROTTLE_PROBE; i++)
		blocked += shm_throttle_check(m.t, &k[i], 500, &e) == 1;
	cr_assert_eq(blocked, IPC_THROTTLE_PROBE);
	shm_throttle_usage(m.t, &use);
	cr_assert_eq(use.refused, 1);
	cr_assert_eq(use.evictions, 0);
	/* Once the blocks run out, their slots are free to take. */
	cr_assert_eq(shm_throttle_fail(m.t, &k[IPC_THROTTLE_PROBE], &LIM,
				       400 + LIM.block_ms, &e), 0);
	tmap_close(&m);
}

/* Four processes, ten failures each, one key: the table sees 40. */
Test(throttle, processes_count_together)
{
	struct tmap m;
	struct throttle_key k;
	struct throttle_entry e;
	struct throttle_limits lim = LIM;
	pid_t pids[4];

	tmap_open(&m, 1024);
	k = addr_key(&m, "127.0.0.1");
	lim.max_failures = 25;
	for (int i = 0; i < 4; i++) {
		pids[i] = fork();
		cr_assert_geq(pids[i], 0);
		if (pids[i] == 0) {
			int started = 0;
			alarm(30);
			for (int j = 0; j < 10; j++)
				started += shm_throttle_fail(m.t, &k, &lim,
							     1000, NULL) == 1;
			_exit(started);
		}
	}
	int starts = 0;
	for (int i = 0; i < 4; i++) {
		int st;
		cr_assert_eq(waitpid(pids[i], &st, 0), pids[i]);
		cr_assert(WIFEXITED(st));
		starts += WEXITSTATUS(st);
	}
	cr_assert_eq(starts, 1, "exactly one failure started the block");
	cr_assert_eq(shm_throttle_check(m.t, &k, 1001, &e), 1);
	cr_assert_eq(e.failures, 40);
	tmap_close(&m);
}

/* A worker killed while holding the lock wedges no one. */
Test(throttle, dead_lock_holder)
{
	struct tmap m;
	struct throttle_key k;
	struct throttle_entry e;
	struct throttle_usage use;
	struct ipc_throttle_table *hdr;

	tmap_open(&m, 64);
	hdr = m.mem;
	k = addr_key(&m, "192.0.2.11");
	shm_test_die_holding(&hdr->lock, NULL);
	cr_assert_eq(shm_throttle_fail(m.t, &k, &LIM, 1000, &e), 0);
	cr_assert_eq(e.failures, 1);
	cr_assert_eq(shm_throttle_fail(m.t, &k, &LIM, 1000, &e), 0);
	shm_throttle_usage(m.t, &use);
	cr_assert_eq(use.recoveries, 1);
	tmap_close(&m);
}

/* shm_create_throttle maps the table next to the session region. */
Test(throttle, region)
{
	struct shm_region r;
	struct throttle_key k;
	const char *error = NULL;

	cr_assert_eq(shm_create(&r, 2, 100, &error), 0, "%s", error);
	cr_assert_null(r.throttle);
	cr_assert_eq(shm_create_throttle(&r, 0, &error), -1);
	cr_assert_eq(shm_create_throttle(&r, 1000, &error), 0, "%s", error);
	cr_assert_not_null(r.throttle);
	cr_assert_eq(shm_throttle_key_address(r.throttle, "::1", &k), 0);
	cr_assert_eq(shm_throttle_fail(r.throttle, &k, &LIM, 1, NULL), 0);
	shm_destroy(&r);
	cr_assert_null(r.throttle);
}

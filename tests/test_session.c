/*
 * test_session.c - unit tests for shm/shm.c, shm/session.c and
 * shm/addr.c: the API contract, RFC 7622 length limits, full table and
 * long-JID pool, sessions per account, connections per address, several
 * processes at once, and recovery after a lock holder is SIGKILLed.
 * Layout is read through ipc.h to check what the API cannot show.
 * Forked children always _exit() and carry an alarm(), so nothing hangs.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "addr.h"
#include "ipc.h"
#include "session.h"
#include "shm.h"
#include "util.h"

/* Every test gets the same bound: criterion 2.4.1's runner leaks a
 * timeout entry (LeakSanitizer) when tests with different timeouts run
 * in parallel. */
#define TEST_TIMEOUT 120.
TestSuite(shm, .timeout = TEST_TIMEOUT);
TestSuite(session, .timeout = TEST_TIMEOUT);
TestSuite(limits, .timeout = TEST_TIMEOUT);
TestSuite(addr, .timeout = TEST_TIMEOUT);

/* ---- helpers ------------------------------------------------------------ */

struct table_map {
	void *mem;
	size_t size;
	struct shm_table *t;
	struct ipc_session_table *hdr;
};

static void table_open(struct table_map *m, uint32_t capacity)
{
	const char *error = NULL;

	m->size = shm_session_size(capacity);
	cr_assert(m->size > 0);
	m->mem = mmap(NULL, m->size, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert(m->mem != MAP_FAILED);
	cr_assert_eq(shm_session_init(m->mem, m->size, capacity, &error), 0,
		     "init: %s", error);
	m->t = shm_session_attach(m->mem, &error);
	cr_assert_not_null(m->t, "attach: %s", error);
	m->hdr = m->mem;
}

static void table_close(struct table_map *m)
{
	shm_session_detach(&m->t);
	cr_assert_null(m->t);
	munmap(m->mem, m->size);
}

static int32_t *layout_buckets(struct table_map *m)
{
	return (int32_t *)(m->hdr + 1);
}

static struct ipc_session *layout_records(struct table_map *m)
{
	return (struct ipc_session *)(layout_buckets(m) + m->hdr->nbuckets);
}

/* The record holding full_jid, found by scanning, or NULL. */
static struct ipc_session *layout_find(struct table_map *m, const char *jid)
{
	struct ipc_session *recs = layout_records(m);
	struct ipc_session_long *longs =
		(struct ipc_session_long *)(recs + m->hdr->capacity);

	for (uint32_t i = 0; i < m->hdr->capacity; i++) {
		struct ipc_session *r = &recs[i];
		const char *s = r->jid_long < 0 ? r->jid : longs[r->jid_long].jid;

		if (atomic_load(&r->state) == IPC_SESSION_USED &&
		    strcmp(s, jid) == 0)
			return r;
	}
	return NULL;
}

static void info_set(struct session_info *info, const char *jid,
		     uint16_t slot, uint32_t conn_id, uint32_t gen)
{
	memset(info, 0, sizeof(*info));
	snprintf(info->jid, sizeof(info->jid), "%s", jid);
	info->slot = slot;
	info->conn_id = conn_id;
	info->gen = gen;
	info->priority = 0;
	info->available = 1;
	info->since = 1700000000;
}

static int put(struct table_map *m, const char *jid, uint16_t slot,
	       uint32_t conn_id, uint32_t gen)
{
	struct session_info info;
	const char *error = NULL;
	int ret;

	info_set(&info, jid, slot, conn_id, gen);
	ret = shm_session_put(m->t, &info, NULL, &error);
	if (ret < 0)
		cr_assert_not_null(error);
	return ret;
}

static void assert_verifies(struct table_map *m)
{
	const char *error = NULL;

	cr_assert_eq(shm_session_verify(m->t, &error), 0, "verify: %s", error);
}

static uint32_t used_of(struct table_map *m, uint32_t *recoveries_r)
{
	uint32_t used, capacity, recoveries;

	shm_session_usage(m->t, &used, &capacity, &recoveries);
	if (recoveries_r != NULL)
		*recoveries_r = recoveries;
	return used;
}

/* A JID with a resource padded to exactly len bytes. */
static void jid_of_len(char *buf, size_t len, const char *prefix)
{
	size_t plen = strlen(prefix);

	cr_assert(len > plen);
	memcpy(buf, prefix, plen);
	memset(buf + plen, 'r', len - plen);
	buf[len] = '\0';
}

/* Wait for child to exit, at most timeout_ms; kill it when late. */
static int child_wait(pid_t pid, int timeout_ms)
{
	int status;

	for (int waited = 0; waited < timeout_ms; waited += 10) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return status;
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	cr_assert_fail("child %d did not exit in %d ms", (int)pid, timeout_ms);
	return -1;
}

static int read_timeout(int fd, void *buf, size_t len, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	if (poll(&pfd, 1, timeout_ms) != 1)
		return -1;
	return (int)read(fd, buf, len);
}

/* Run fn in a child process and return its verdict.  The verdict comes
 * over a pipe, not as the exit status: valgrind turns a forked child's
 * exit status into its error code (inherited criterion buffers count as
 * leaks there). */
static bool child_run(bool (*fn)(void *), void *arg)
{
	int fds[2], status;
	char verdict = 0;
	pid_t pid;

	cr_assert_eq(pipe(fds), 0);
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		alarm(20);
		close(fds[0]);
		verdict = fn(arg) ? 'y' : 'n';
		_exit(write(fds[1], &verdict, 1) == 1 ? 0 : 1);
	}
	close(fds[1]);
	if (read_timeout(fds[0], &verdict, 1, 10000) != 1)
		verdict = 0;
	close(fds[0]);
	status = child_wait(pid, 10000);
	cr_assert(WIFEXITED(status), "child did not exit normally");
	return verdict == 'y';
}

/* ---- shm.c -------------------------------------------------------------- */

static bool child_counts_and_binds(void *arg)
{
	struct shm_region *r = arg;
	struct session_info info;
	const char *error;

	atomic_store(&shm_worker_stats(r, 2)->stanzas_in[IPC_STANZA_MESSAGE], 42);
	info_set(&info, "child@example.org/r", 2, 7, 1);
	return shm_session_put(r->sessions, &info, NULL, &error) == 0;
}

Test(shm, create_fills_header_and_maps_shared)
{
	struct shm_region r;
	const char *error = NULL;
	struct ipc_worker_stats *ws;

	cr_assert_eq(shm_create(&r, 4, 100, &error), 0, "%s", error);
	cr_assert_eq(r.hdr->magic, IPC_SHM_MAGIC);
	cr_assert_eq(r.hdr->version, IPC_VERSION);
	cr_assert_eq(r.hdr->nslots, 4);
	cr_assert_eq(r.hdr->size, r.size);
	cr_assert(r.size >= sizeof(struct ipc_shm_header) +
		  shm_session_size(100));
	cr_assert(r.hdr->master_started > 0);
	cr_assert_eq((void *)r.hdr, r.base);
	for (unsigned i = 0; i < 4; i++)
		cr_assert_eq(shm_worker_stats(&r, i), &r.hdr->workers[i]);
	cr_assert_null(shm_worker_stats(&r, 4));
	cr_assert_null(shm_worker_stats(&r, IPC_MAX_SLOTS));

	/* A child's counter and session are seen by the parent. */
	ws = shm_worker_stats(&r, 2);
	cr_assert(child_run(child_counts_and_binds, &r));
	cr_assert_eq(atomic_load(&ws->stanzas_in[IPC_STANZA_MESSAGE]), 42);
	{
		struct session_info got;

		cr_assert_eq(shm_session_get(r.sessions, "child@example.org/r",
					     &got), 1);
		cr_assert_eq(got.slot, 2);
		cr_assert_eq(got.conn_id, 7);
	}
	shm_destroy(&r);
	cr_assert_null(r.base);
	cr_assert_null(r.sessions);
}

Test(shm, create_refuses_bad_arguments)
{
	struct shm_region r;
	const char *error = NULL;

	cr_assert_eq(shm_create(&r, 0, 100, &error), -1);
	cr_assert_not_null(error);
	error = NULL;
	cr_assert_eq(shm_create(&r, IPC_MAX_SLOTS + 1, 100, &error), -1);
	cr_assert_not_null(error);
	error = NULL;
	cr_assert_eq(shm_create(&r, 4, 0, &error), -1);
	cr_assert_not_null(error);
}

/* ---- init / attach ------------------------------------------------------ */

Test(session, init_and_attach_refuse_bad_input)
{
	const char *error = NULL;
	size_t size = shm_session_size(10);
	void *mem = calloc(1, size);

	cr_assert_not_null(mem);
	cr_assert_eq(shm_session_size(0), 0);
	cr_assert_null(shm_session_attach(mem, &error), "zeroed area attached");
	cr_assert_not_null(error);
	error = NULL;
	cr_assert_eq(shm_session_init(mem, size, 0, &error), -1);
	cr_assert_not_null(error);
	error = NULL;
	cr_assert_eq(shm_session_init(mem, size - 1, 10, &error), -1);
	cr_assert_not_null(error);
	cr_assert_eq(shm_session_init(mem, size, 10, &error), 0);
	((struct ipc_session_table *)mem)->version = IPC_VERSION + 1;
	cr_assert_null(shm_session_attach(mem, &error));
	free(mem);
}

/* ---- basic API ---------------------------------------------------------- */

Test(session, put_get_del)
{
	struct table_map m;
	struct session_info info, got;
	const char *error = NULL;

	table_open(&m, 16);
	info_set(&info, "alice@example.org/phone", 3, 17, 9);
	info.priority = -5;
	info.available = 0;
	info.since = 1234;
	cr_assert_eq(shm_session_put(m.t, &info, NULL, &error), 0);
	cr_assert_eq(shm_session_get(m.t, "alice@example.org/phone", &got), 1);
	cr_assert_str_eq(got.jid, "alice@example.org/phone");
	cr_assert_eq(got.slot, 3);
	cr_assert_eq(got.conn_id, 17);
	cr_assert_eq(got.gen, 9);
	cr_assert_eq(got.priority, -5);
	cr_assert_eq(got.available, 0);
	cr_assert_eq(got.since, 1234);
	cr_assert_eq(shm_session_get(m.t, "alice@example.org/phon", &got), 0);
	cr_assert_eq(shm_session_get(m.t, "alice@example.org/phone2", &got), 0);
	cr_assert_eq(shm_session_get(m.t, "alice@example.org", &got), 0);
	cr_assert_eq(used_of(&m, NULL), 1);
	assert_verifies(&m);
	cr_assert_eq(shm_session_del(m.t, "alice@example.org/phone", 3, 17, 9), 1);
	cr_assert_eq(shm_session_get(m.t, "alice@example.org/phone", &got), 0);
	cr_assert_eq(shm_session_del(m.t, "alice@example.org/phone", 3, 17, 9), 0);
	cr_assert_eq(used_of(&m, NULL), 0);
	assert_verifies(&m);
	table_close(&m);
}

Test(session, replace_returns_old_owner)
{
	struct table_map m;
	struct session_info info, old, got;
	const char *error = NULL;

	table_open(&m, 16);
	info_set(&info, "bob@example.org/desk", 1, 100, 1);
	info.priority = 7;
	cr_assert_eq(shm_session_put(m.t, &info, &old, &error), 0);
	info_set(&info, "bob@example.org/desk", 2, 200, 5);
	memset(&old, 0, sizeof(old));
	cr_assert_eq(shm_session_put(m.t, &info, &old, &error), 1);
	cr_assert_str_eq(old.jid, "bob@example.org/desk");
	cr_assert_eq(old.slot, 1);
	cr_assert_eq(old.conn_id, 100);
	cr_assert_eq(old.gen, 1);
	cr_assert_eq(old.priority, 7);
	cr_assert_eq(shm_session_get(m.t, "bob@example.org/desk", &got), 1);
	cr_assert_eq(got.slot, 2);
	cr_assert_eq(got.conn_id, 200);
	cr_assert_eq(got.gen, 5);
	cr_assert_eq(used_of(&m, NULL), 1);
	/* The old owner can no longer remove the new session. */
	cr_assert_eq(shm_session_del(m.t, "bob@example.org/desk", 1, 100, 1), 0);
	/* old_r may be NULL. */
	info_set(&info, "bob@example.org/desk", 3, 300, 1);
	cr_assert_eq(shm_session_put(m.t, &info, NULL, &error), 1);
	assert_verifies(&m);
	table_close(&m);
}

Test(session, del_only_by_owner)
{
	struct table_map m;
	struct session_info got;
	const char *jid = "carol@example.org/home";

	table_open(&m, 16);
	cr_assert_eq(put(&m, jid, 4, 40, 2), 0);
	cr_assert_eq(shm_session_del(m.t, jid, 5, 40, 2), 0, "wrong slot");
	cr_assert_eq(shm_session_del(m.t, jid, 4, 41, 2), 0, "wrong conn");
	cr_assert_eq(shm_session_del(m.t, jid, 4, 40, 3), 0, "wrong gen");
	cr_assert_eq(shm_session_get(m.t, jid, &got), 1);
	cr_assert_eq(shm_session_del(m.t, "", 4, 40, 2), -1);
	cr_assert_eq(shm_session_del(m.t, jid, 4, 40, 2), 1);
	cr_assert_eq(shm_session_get(m.t, jid, &got), 0);
	assert_verifies(&m);
	table_close(&m);
}

Test(session, set_presence_by_owner_only)
{
	struct table_map m;
	struct session_info got;
	const char *jid = "dave@example.org/laptop";

	table_open(&m, 16);
	cr_assert_eq(put(&m, jid, 1, 10, 1), 0);
	cr_assert_eq(shm_session_set_presence(m.t, jid, 1, 10, 1, 5, 1), 1);
	cr_assert_eq(shm_session_get(m.t, jid, &got), 1);
	cr_assert_eq(got.priority, 5);
	cr_assert_eq(got.available, 1);
	cr_assert_eq(shm_session_set_presence(m.t, jid, 1, 10, 2, -1, 0), 0);
	cr_assert_eq(shm_session_set_presence(m.t, jid, 2, 10, 1, -1, 0), 0);
	cr_assert_eq(shm_session_set_presence(m.t, "x@y/z", 1, 10, 1, 1, 0), 0);
	cr_assert_eq(shm_session_set_presence(m.t, "", 1, 10, 1, 1, 0), -1);
	cr_assert_eq(shm_session_get(m.t, jid, &got), 1);
	cr_assert_eq(got.priority, 5, "a non-owner changed the priority");
	cr_assert_eq(shm_session_set_presence(m.t, jid, 1, 10, 1, -128, 0), 1);
	cr_assert_eq(shm_session_get(m.t, jid, &got), 1);
	cr_assert_eq(got.priority, -128);
	cr_assert_eq(got.available, 0);
	table_close(&m);
}

static uint8_t flags_of(struct table_map *m, const char *jid)
{
	struct session_info got;

	cr_assert_eq(shm_session_get(m->t, jid, &got), 1, "%s absent", jid);
	return got.flags;
}

#define SIB IPC_SESSION_F_SIBLING_CARBONS
#define CARB IPC_SESSION_F_CARBONS

/* XEP-0280 flags: set by the owner only; every other entry of the bare
 * JID (and only of it) learns that a sibling has carbons, and forgets
 * it when that sibling disables them, goes away or is replaced. */
Test(session, carbons_flags_and_siblings)
{
	struct table_map m;
	const char *a = "erin@example.org/a", *b = "erin@example.org/b",
		   *c = "erin@example.org/c", *x = "erinx@example.org/a";
	struct session_info info;
	const char *error;

	table_open(&m, 64);
	cr_assert_eq(put(&m, a, 1, 1, 1), 0);
	cr_assert_eq(put(&m, b, 2, 2, 1), 0);
	cr_assert_eq(put(&m, x, 1, 3, 1), 0);
	cr_assert_eq(flags_of(&m, a), 0);
	cr_assert_eq(shm_session_set_flags(m.t, a, 1, 1, 2, CARB, 0), 0,
		     "a non-owner set flags");
	cr_assert_eq(flags_of(&m, a), 0);
	cr_assert_eq(shm_session_set_flags(m.t, a, 1, 1, 1, CARB | SIB, 0), 1);
	cr_assert_eq(flags_of(&m, a), CARB, "the sibling bit is the table's");
	cr_assert_eq(flags_of(&m, b), SIB);
	cr_assert_eq(flags_of(&m, x), 0, "another account was marked");
	assert_verifies(&m);
	/* a new sibling is marked at once */
	cr_assert_eq(put(&m, c, 2, 4, 1), 0);
	cr_assert_eq(flags_of(&m, c), SIB);
	/* two enabled: each has a sibling */
	cr_assert_eq(shm_session_set_flags(m.t, b, 2, 2, 1, CARB, 0), 1);
	cr_assert_eq(flags_of(&m, a), CARB | SIB);
	cr_assert_eq(flags_of(&m, b), CARB | SIB);
	assert_verifies(&m);
	/* the lock-free read of the owner, by record index */
	struct session_info got;
	cr_assert_eq(shm_session_get(m.t, a, &got), 1);
	cr_assert_eq(shm_session_flags(m.t, got.index, 1, 1, 1), CARB | SIB);
	cr_assert_eq(shm_session_flags(m.t, got.index, 1, 1, 9), 0);
	cr_assert_eq(shm_session_flags(m.t, -1, 1, 1, 1), 0);
	/* b goes: a has no enabled sibling left */
	cr_assert_eq(shm_session_del(m.t, b, 2, 2, 1), 1);
	cr_assert_eq(flags_of(&m, a), CARB);
	cr_assert_eq(flags_of(&m, c), SIB);
	assert_verifies(&m);
	/* a replaced by a new login without carbons */
	info_set(&info, a, 1, 5, 1);
	cr_assert_eq(shm_session_put(m.t, &info, NULL, &error), 1);
	cr_assert_eq(flags_of(&m, a), 0);
	cr_assert_eq(flags_of(&m, c), 0);
	assert_verifies(&m);
	/* a resumed session brings its flag with it */
	info_set(&info, a, 1, 6, 1);
	info.flags = CARB | SIB;
	cr_assert_eq(shm_session_put(m.t, &info, NULL, &error), 1);
	cr_assert_eq(flags_of(&m, a), CARB);
	cr_assert_eq(flags_of(&m, c), SIB);
	cr_assert_eq(shm_session_set_flags(m.t, a, 1, 6, 1, 0, CARB), 1);
	cr_assert_eq(flags_of(&m, c), 0);
	/* a sweep of the slot clears the siblings too */
	cr_assert_eq(shm_session_set_flags(m.t, a, 1, 6, 1, CARB, 0), 1);
	cr_assert_eq(shm_session_sweep_slot(m.t, 1, NULL, NULL), 2);
	cr_assert_eq(flags_of(&m, c), 0);
	assert_verifies(&m);
	table_close(&m);
}

/* What `xmppctl sessions` shows comes back as stored; the activity
 * second changes only through the owner's touch of its own record. */
Test(session, peer_fields_and_touch_by_owner_only)
{
	struct table_map m;
	struct session_info info, got;
	const char *error = NULL;
	const char *jid = "erin@example.org/phone";
	static const uint8_t v6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 7 };

	table_open(&m, 16);
	info_set(&info, jid, 1, 10, 1);
	memcpy(info.peer_addr, v6, sizeof(v6));
	info.peer_family = 6;
	info.peer_port = 50123;
	info.tls_version = 0x0304;
	info.mech = IPC_MECH_SCRAM_SHA_256_PLUS;
	cr_assert_eq(shm_session_put(m.t, &info, NULL, &error), 0, "%s", error);
	cr_assert_eq(shm_session_get(m.t, jid, &got), 1);
	cr_assert_eq(memcmp(got.peer_addr, v6, sizeof(v6)), 0);
	cr_assert_eq(got.peer_family, 6);
	cr_assert_eq(got.peer_port, 50123);
	cr_assert_eq(got.tls_version, 0x0304);
	cr_assert_eq(got.mech, IPC_MECH_SCRAM_SHA_256_PLUS);
	cr_assert_eq(got.active, info.since, "active starts at the bind");
	int32_t idx = got.index;
	cr_assert_geq(idx, 0);

	shm_session_touch(m.t, idx, 1, 10, 1, info.since + 42);
	cr_assert_eq(shm_session_get(m.t, jid, &got), 1);
	cr_assert_eq(got.active, info.since + 42);
	/* another connection, slot or generation; an index out of range */
	shm_session_touch(m.t, idx, 1, 11, 1, info.since + 99);
	shm_session_touch(m.t, idx, 2, 10, 1, info.since + 99);
	shm_session_touch(m.t, idx, 1, 10, 2, info.since + 99);
	shm_session_touch(m.t, -1, 1, 10, 1, info.since + 99);
	shm_session_touch(m.t, 1 << 30, 1, 10, 1, info.since + 99);
	cr_assert_eq(shm_session_get(m.t, jid, &got), 1);
	cr_assert_eq(got.active, info.since + 42, "a non-owner touched it");
	/* the record reused by another connection: the old owner's late
	   touch does not reach the new session */
	cr_assert_eq(shm_session_del(m.t, jid, 1, 10, 1), 1);
	cr_assert_eq(put(&m, jid, 1, 12, 1), 0);
	cr_assert_eq(shm_session_get(m.t, jid, &got), 1);
	cr_assert_eq(got.index, idx, "the freed record was reused");
	shm_session_touch(m.t, idx, 1, 10, 1, info.since + 99);
	cr_assert_eq(shm_session_get(m.t, jid, &got), 1);
	cr_assert_eq(got.active, info.since);
	assert_verifies(&m);
	table_close(&m);
}

static bool info_has_jid(const struct session_info *out, int n,
			 const char *jid)
{
	for (int i = 0; i < n; i++)
		if (strcmp(out[i].jid, jid) == 0)
			return true;
	return false;
}

/* Insert bare JIDs "alice@example.orgN/x" until `want` of them share the
 * bucket of "alice@example.org"; keep those (plus a "/y"), drop the rest.
 * Their bare parts start with alice's, so a prefix match would mix them. */
static int add_bucket_neighbours(struct table_map *m, char names[][64],
				 int want)
{
	uint32_t mask = m->hdr->nbuckets - 1;
	uint32_t target = layout_find(m, "alice@example.org/r1")->hash & mask;
	int found = 0;

	for (int n = 0; n < 100000 && found < want; n++) {
		char jid[160];
		struct ipc_session *r;

		snprintf(names[found], 64, "alice@example.org%d", n);
		snprintf(jid, sizeof(jid), "%s/x", names[found]);
		cr_assert_eq(put(m, jid, 0, 1, 1), 0);
		r = layout_find(m, jid);
		cr_assert_not_null(r);
		if ((r->hash & mask) != target) {
			cr_assert_eq(shm_session_del(m->t, jid, 0, 1, 1), 1);
			continue;
		}
		snprintf(jid, sizeof(jid), "%s/y", names[found]);
		cr_assert_eq(put(m, jid, 0, 1, 1), 0);
		found++;
	}
	return found;
}

Test(session, list_resources_of_a_bare_jid)
{
	struct table_map m;
	struct session_info out[8];
	char names[2][64];
	int n;

	table_open(&m, 64);
	cr_assert_eq(put(&m, "alice@example.org/r1", 1, 1, 1), 0);
	cr_assert_eq(put(&m, "alice@example.org/r2", 2, 2, 1), 0);
	cr_assert_eq(put(&m, "alice@example.org/r3/with/slash", 3, 3, 1), 0);
	cr_assert_eq(put(&m, "alice@example.orgX/r1", 1, 4, 1), 0);
	cr_assert_eq(put(&m, "alice@example.or/r1", 1, 5, 1), 0);
	cr_assert_eq(add_bucket_neighbours(&m, names, 2), 2,
		     "no bare JIDs sharing a bucket found");

	n = shm_session_list(m.t, "alice@example.org", out, 8);
	cr_assert_eq(n, 3);
	cr_assert(info_has_jid(out, n, "alice@example.org/r1"));
	cr_assert(info_has_jid(out, n, "alice@example.org/r2"));
	cr_assert(info_has_jid(out, n, "alice@example.org/r3/with/slash"));
	for (int k = 0; k < 2; k++) {
		char jid[160];

		n = shm_session_list(m.t, names[k], out, 8);
		cr_assert_eq(n, 2, "%s: %d", names[k], n);
		snprintf(jid, sizeof(jid), "%s/x", names[k]);
		cr_assert(info_has_jid(out, n, jid));
	}
	/* More found than room: the count is still the total. */
	memset(out, 0x5a, sizeof(out));
	cr_assert_eq(shm_session_list(m.t, "alice@example.org", out, 1), 3);
	cr_assert_eq((uint8_t)out[1].jid[0], 0x5a, "wrote past max");
	cr_assert_eq(shm_session_list(m.t, "alice@example.org", NULL, 0), 3);
	cr_assert_eq(shm_session_list(m.t, "nobody@example.org", out, 8), 0);
	cr_assert_eq(shm_session_list(m.t, "alice@example.org/r1", out, 8), -1);
	cr_assert_eq(shm_session_list(m.t, "", out, 8), -1);
	assert_verifies(&m);
	table_close(&m);
}

/* ---- limits ------------------------------------------------------------- */

Test(session, rfc7622_length_limits)
{
	struct table_map m;
	static struct session_info info, got;
	static char bare[2048], full[3080];
	const char *error = NULL;

	table_open(&m, 64);
	memset(bare, 'l', 1023);
	bare[1023] = '@';
	memset(bare + 1024, 'd', 1023);
	bare[2047] = '\0';
	snprintf(full, sizeof(full), "%s/", bare);
	memset(full + 2048, 'r', 1023);
	full[3071] = '\0';
	cr_assert_eq(strlen(full), IPC_JID_MAX);

	cr_assert_eq(put(&m, full, 1, 1, 1), 0);
	cr_assert_eq(shm_session_get(m.t, full, &got), 1);
	cr_assert_str_eq(got.jid, full);
	cr_assert_eq(shm_session_list(m.t, bare, &got, 1), 1);
	cr_assert_str_eq(got.jid, full);
	cr_assert_eq(shm_session_set_presence(m.t, full, 1, 1, 1, 3, 1), 1);

	/* 3072 bytes with no NUL in the whole jid[] buffer. */
	memset(info.jid, 'a', sizeof(info.jid));
	cr_assert_eq(shm_session_put(m.t, &info, NULL, &error), -1);
	cr_assert_not_null(error);
	full[3071] = 'r';
	full[3072] = '\0';
	cr_assert_eq(shm_session_get(m.t, full, &got), -1);
	cr_assert_eq(shm_session_del(m.t, full, 1, 1, 1), -1);
	full[3071] = '\0';
	cr_assert_eq(shm_session_del(m.t, full, 1, 1, 1), 1);

	error = NULL;
	info_set(&info, "", 1, 1, 1);
	cr_assert_eq(shm_session_put(m.t, &info, NULL, &error), -1);
	cr_assert_not_null(error);
	cr_assert_eq(put(&m, "/resource", 1, 1, 1), -1);
	cr_assert_eq(used_of(&m, NULL), 0);
	assert_verifies(&m);
	table_close(&m);
}

Test(session, inline_and_long_boundary)
{
	struct table_map m;
	struct session_info got;
	char jid[IPC_JID_INLINE + 2];

	table_open(&m, 16);
	jid_of_len(jid, IPC_JID_INLINE - 1, "e@example.org/");
	cr_assert_eq(put(&m, jid, 1, 1, 1), 0);
	cr_assert_eq(layout_find(&m, jid)->jid_long, -1);
	cr_assert_eq(shm_session_get(m.t, jid, &got), 1);
	cr_assert_str_eq(got.jid, jid);
	jid_of_len(jid, IPC_JID_INLINE, "e@example.org/");
	cr_assert_eq(put(&m, jid, 1, 1, 1), 0);
	cr_assert_geq(layout_find(&m, jid)->jid_long, 0);
	cr_assert_eq(shm_session_get(m.t, jid, &got), 1);
	cr_assert_str_eq(got.jid, jid);
	cr_assert_eq(shm_session_list(m.t, "e@example.org", NULL, 0), 2);
	assert_verifies(&m);
	table_close(&m);
}

Test(session, full_table_refuses_and_stays_consistent)
{
	struct table_map m;
	struct session_info info, got;
	const char *error = NULL;
	char jid[64];

	table_open(&m, 20);
	for (int i = 0; i < 20; i++) {
		snprintf(jid, sizeof(jid), "u%d@example.org/r", i);
		cr_assert_eq(put(&m, jid, 1, (uint32_t)i, 1), 0);
	}
	info_set(&info, "extra@example.org/r", 1, 99, 1);
	cr_assert_eq(shm_session_put(m.t, &info, NULL, &error), -1);
	cr_assert_not_null(error);
	cr_assert_eq(shm_session_get(m.t, "extra@example.org/r", &got), 0);
	cr_assert_eq(used_of(&m, NULL), 20);
	assert_verifies(&m);
	/* Replacing needs no new record, so it works when full. */
	cr_assert_eq(put(&m, "u7@example.org/r", 2, 700, 2), 1);
	cr_assert_eq(shm_session_del(m.t, "u3@example.org/r", 1, 3, 1), 1);
	cr_assert_eq(put(&m, "extra@example.org/r", 1, 99, 1), 0);
	cr_assert_eq(put(&m, "extra2@example.org/r", 1, 99, 1), -1);
	assert_verifies(&m);
	table_close(&m);
}

Test(session, long_pool_exhaustion)
{
	struct table_map m;
	struct session_info info;
	const char *error = NULL;
	char jid[300], prefix[64];
	uint32_t longcap;

	table_open(&m, 32);
	longcap = m.hdr->long_capacity;
	cr_assert_eq(longcap, 32 / 32 + 16);
	for (uint32_t i = 0; i < longcap; i++) {
		snprintf(prefix, sizeof(prefix), "long%u@example.org/", i);
		jid_of_len(jid, 250, prefix);
		cr_assert_eq(put(&m, jid, 1, i, 1), 0, "long %u", i);
	}
	jid_of_len(jid, 250, "onemore@example.org/");
	info_set(&info, jid, 1, 1, 1);
	cr_assert_eq(shm_session_put(m.t, &info, NULL, &error), -1);
	cr_assert_not_null(error);
	cr_assert(strstr(error, "long") != NULL, "error: %s", error);
	assert_verifies(&m);
	/* Short JIDs still fit; replacing a long JID reuses its entry. */
	cr_assert_eq(put(&m, "short@example.org/r", 1, 1, 1), 0);
	jid_of_len(jid, 250, "long3@example.org/");
	cr_assert_eq(put(&m, jid, 2, 2, 2), 1);
	cr_assert_eq(shm_session_del(m.t, jid, 2, 2, 2), 1);
	jid_of_len(jid, 250, "onemore@example.org/");
	cr_assert_eq(put(&m, jid, 1, 1, 1), 0);
	cr_assert_eq(used_of(&m, NULL), longcap + 1);
	assert_verifies(&m);
	table_close(&m);
}

/* ---- sweep and foreach -------------------------------------------------- */

struct sweep_seen {
	struct table_map *m;
	int count;
	int bad;
	bool seen[64];
};

/* Also calls back into the table: the lock must be released by now. */
static void sweep_cb(const struct session_info *info, void *ctx)
{
	struct sweep_seen *s = ctx;
	struct session_info got;
	int n = -1;

	if (info->slot != 2 || sscanf(info->jid, "s2n%d@", &n) != 1 ||
	    n < 0 || n >= 64 || s->seen[n])
		s->bad++;
	else
		s->seen[n] = true;
	if (shm_session_get(s->m->t, info->jid, &got) != 0)
		s->bad++;
	s->count++;
}

/* Entry i of a slot: every 5th one is long. */
static void sweep_jid(char *buf, int slot, int i)
{
	char prefix[64];

	snprintf(prefix, sizeof(prefix), "s%dn%d@example.org/", slot, i);
	jid_of_len(buf, i % 5 == 0 ? 200 : 40, prefix);
}

static void sweep_fill(struct table_map *m, int slot, int count)
{
	char jid[300];

	for (int i = 0; i < count; i++) {
		sweep_jid(jid, slot, i);
		cr_assert_eq(put(m, jid, (uint16_t)slot, (uint32_t)i, 1), 0);
	}
}

Test(session, sweep_slot_removes_exactly_that_slot)
{
	struct table_map m;
	struct sweep_seen s = { 0 };

	table_open(&m, 256);
	s.m = &m;
	sweep_fill(&m, 1, 10);
	sweep_fill(&m, 2, 40);  /* more than one internal batch */
	sweep_fill(&m, 3, 5);
	cr_assert_eq(shm_session_sweep_slot(m.t, 2, sweep_cb, &s), 40);
	cr_assert_eq(s.count, 40);
	cr_assert_eq(s.bad, 0);
	for (int i = 0; i < 40; i++)
		cr_assert(s.seen[i], "entry %d not reported", i);
	cr_assert_eq(used_of(&m, NULL), 15);
	cr_assert_eq(shm_session_list(m.t, "s1n3@example.org", NULL, 0), 1);
	cr_assert_eq(shm_session_list(m.t, "s3n4@example.org", NULL, 0), 1);
	cr_assert_eq(shm_session_list(m.t, "s2n4@example.org", NULL, 0), 0);
	assert_verifies(&m);
	cr_assert_eq(shm_session_sweep_slot(m.t, 2, sweep_cb, &s), 0);
	cr_assert_eq(shm_session_sweep_slot(m.t, 1, NULL, NULL), 10);
	cr_assert_eq(used_of(&m, NULL), 5);
	assert_verifies(&m);
	table_close(&m);
}

/* Keeps every third entry (a resumable XEP-0198 session the respawned
 * worker adopts); runs under the lock, so it only looks. */
static int sweep_keep_cb(const struct session_info *info, void *ctx)
{
	(void)ctx;
	return info->conn_id % 3 == 0;
}

Test(session, sweep_slot_keep_leaves_kept_entries_unreported)
{
	struct table_map m;
	struct sweep_seen s = { 0 };
	struct session_info got;
	char jid[300];

	table_open(&m, 256);
	s.m = &m;
	sweep_fill(&m, 1, 10);
	sweep_fill(&m, 2, 40);
	cr_assert_eq(shm_session_sweep_slot_keep(m.t, 2, sweep_keep_cb,
						 sweep_cb, &s), 26);
	cr_assert_eq(s.count, 26);
	cr_assert_eq(s.bad, 0);
	for (int i = 0; i < 40; i++) {
		sweep_jid(jid, 2, i);
		cr_assert_eq(s.seen[i], i % 3 != 0, "entry %d", i);
		cr_assert_eq(shm_session_get(m.t, jid, &got), i % 3 == 0,
			     "entry %d", i);
		if (i % 3 == 0)
			cr_assert(got.slot == 2 && got.conn_id == (uint32_t)i);
	}
	cr_assert_eq(used_of(&m, NULL), 10 + 14);
	assert_verifies(&m);
	/* Without the keep, what was kept goes. */
	cr_assert_eq(shm_session_sweep_slot_keep(m.t, 2, NULL, NULL, NULL),
		     14);
	cr_assert_eq(used_of(&m, NULL), 10);
	assert_verifies(&m);
	table_close(&m);
}

static int foreach_cb(const struct session_info *info, void *ctx)
{
	int *seen = ctx;
	int n;

	if (sscanf(info->jid, "s1n%d@", &n) == 1 && n >= 0 && n < 30)
		seen[n]++;
	return 0;
}

static int foreach_stop_cb(const struct session_info *info UNUSED,
			   void *ctx)
{
	(*(int *)ctx)++;
	return 1;
}

Test(session, foreach_walks_all_and_stops)
{
	struct table_map m;
	int seen[30] = { 0 }, calls = 0;

	table_open(&m, 64);
	sweep_fill(&m, 1, 30);
	cr_assert_eq(shm_session_foreach(m.t, foreach_cb, seen), 30);
	for (int i = 0; i < 30; i++)
		cr_assert_eq(seen[i], 1, "entry %d seen %d times", i, seen[i]);
	cr_assert_eq(shm_session_foreach(m.t, foreach_stop_cb, &calls), 1);
	cr_assert_eq(calls, 1);
	table_close(&m);
}

/* ---- verify catches damage ---------------------------------------------- */

Test(session, verify_detects_corruption)
{
	struct table_map m;
	const char *error = NULL;
	struct ipc_session *r;
	char jid[300];
	int32_t saved;

	table_open(&m, 32);
	sweep_fill(&m, 1, 12);
	assert_verifies(&m);
	sweep_jid(jid, 1, 3);
	r = layout_find(&m, jid);
	cr_assert_not_null(r);

	atomic_store(&r->state, IPC_SESSION_FREE);
	cr_assert_eq(shm_session_verify(m.t, &error), -1);
	cr_assert_not_null(error);
	atomic_store(&r->state, IPC_SESSION_USED);
	assert_verifies(&m);

	saved = r->next;
	r->next = (int32_t)(r - layout_records(&m));   /* a cycle */
	cr_assert_eq(shm_session_verify(m.t, &error), -1);
	r->next = saved;

	m.hdr->used++;
	cr_assert_eq(shm_session_verify(m.t, &error), -1);
	m.hdr->used--;

	saved = m.hdr->free_head;
	m.hdr->free_head = -1;
	cr_assert_eq(shm_session_verify(m.t, &error), -1);
	m.hdr->free_head = saved;

	r->hash ^= 1;
	cr_assert_eq(shm_session_verify(m.t, &error), -1);
	r->hash ^= 1;
	assert_verifies(&m);
	table_close(&m);
}

/* ---- several processes -------------------------------------------------- */

#define STRESS_CHILDREN 4
#define STRESS_OPS 6000
#define STRESS_PRIVATE 150
#define STRESS_SHARED 100

struct stress_report {
	int64_t adds;       /* puts that created an entry */
	int64_t dels;       /* dels that removed one */
	int64_t errors;     /* results that contradict the child's own view */
	int64_t present;    /* private entries present at the end */
};

static uint32_t xorshift(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

/* Every 10th JID is long, to exercise the long pool concurrently. */
static void stress_jid(char *buf, bool shared, int child, int n)
{
	char prefix[64];

	if (shared)
		snprintf(prefix, sizeof(prefix), "sh%d@example.org/r%d-", n / 4,
			 n % 4);
	else
		snprintf(prefix, sizeof(prefix), "p%d-%d@example.org/r", child, n);
	jid_of_len(buf, n % 10 == 0 ? 200 : strlen(prefix) + 3, prefix);
}

static void stress_private(struct shm_table *t, int c, uint32_t *rnd,
			   bool *present, struct stress_report *rep)
{
	struct session_info info, got;
	const char *error;
	char jid[256];
	int n = (int)(xorshift(rnd) % STRESS_PRIVATE), ret;

	stress_jid(jid, false, c, n);
	info_set(&info, jid, (uint16_t)c, (uint32_t)c + 1, 1);
	switch (xorshift(rnd) % 3) {
	case 0:
		ret = shm_session_put(t, &info, &got, &error);
		rep->errors += ret != (present[n] ? 1 : 0);
		rep->adds += ret == 0;
		present[n] = true;
		break;
	case 1:
		ret = shm_session_del(t, info.jid, (uint16_t)c, (uint32_t)c + 1, 1);
		rep->errors += ret != (present[n] ? 1 : 0);
		rep->dels += ret == 1;
		present[n] = false;
		break;
	default:
		ret = shm_session_get(t, info.jid, &got);
		rep->errors += ret != (present[n] ? 1 : 0);
		if (ret == 1 && (got.slot != c || strcmp(got.jid, info.jid) != 0))
			rep->errors++;
	}
}

static void stress_shared(struct shm_table *t, int c, uint32_t *rnd,
			  struct stress_report *rep)
{
	struct session_info info, got, list[4];
	const char *error;
	char bare[32], jid[256];
	int n = (int)(xorshift(rnd) % STRESS_SHARED), ret;

	stress_jid(jid, true, c, n);
	info_set(&info, jid, (uint16_t)c, (uint32_t)c + 1, 1);
	switch (xorshift(rnd) % 4) {
	case 0:
		ret = shm_session_put(t, &info, NULL, &error);
		rep->errors += ret < 0;
		rep->adds += ret == 0;
		break;
	case 1:
		ret = shm_session_del(t, info.jid, (uint16_t)c, (uint32_t)c + 1, 1);
		rep->errors += ret < 0;
		rep->dels += ret == 1;
		break;
	case 2:
		ret = shm_session_get(t, info.jid, &got);
		rep->errors += ret < 0 ||
			(ret == 1 && (got.slot >= STRESS_CHILDREN ||
				      strcmp(got.jid, info.jid) != 0));
		break;
	default:
		snprintf(bare, sizeof(bare), "sh%d@example.org", n / 4);
		ret = shm_session_list(t, bare, list, 4);
		rep->errors += ret < 0 || ret > 4;
		for (int i = 0; i < ret && i < 4; i++)
			rep->errors += strncmp(list[i].jid, bare, strlen(bare)) != 0;
	}
}

static void stress_child(struct shm_table *t, int c, int fd)
{
	struct stress_report rep = { 0 };
	bool present[STRESS_PRIVATE] = { false };
	uint32_t rnd = 0x9e3779b9u * (uint32_t)(c + 1);

	alarm(60);
	for (int i = 0; i < STRESS_OPS; i++) {
		if (xorshift(&rnd) % 2 == 0)
			stress_private(t, c, &rnd, present, &rep);
		else
			stress_shared(t, c, &rnd, &rep);
	}
	for (int n = 0; n < STRESS_PRIVATE; n++)
		rep.present += present[n];
	/* The report is the verdict; see child_run() on exit statuses. */
	_exit(write(fd, &rep, sizeof(rep)) == sizeof(rep) ? 0 : 3);
}

static int count_private(const struct session_info *info, void *ctx)
{
	int64_t *counts = ctx;
	int c, n;

	if (sscanf(info->jid, "p%d-%d@", &c, &n) == 2 && c >= 0 &&
	    c < STRESS_CHILDREN && info->slot == c)
		counts[c]++;
	return 0;
}

Test(session, many_processes_at_once)
{
	struct table_map m;
	struct stress_report rep[STRESS_CHILDREN];
	int64_t adds = 0, dels = 0, counts[STRESS_CHILDREN] = { 0 };
	int fds[STRESS_CHILDREN][2];
	pid_t pids[STRESS_CHILDREN];

	table_open(&m, 4096);
	for (int c = 0; c < STRESS_CHILDREN; c++) {
		cr_assert_eq(pipe(fds[c]), 0);
		pids[c] = fork();
		cr_assert(pids[c] >= 0);
		if (pids[c] == 0)
			stress_child(m.t, c, fds[c][1]);
		close(fds[c][1]);
	}
	for (int c = 0; c < STRESS_CHILDREN; c++) {
		cr_assert_eq(read_timeout(fds[c][0], &rep[c], sizeof(rep[c]),
					  90000), (int)sizeof(rep[c]));
		cr_assert(WIFEXITED(child_wait(pids[c], 10000)));
		close(fds[c][0]);
		cr_assert_eq(rep[c].errors, 0, "child %d: %lld errors", c,
			     (long long)rep[c].errors);
		cr_assert_gt(rep[c].adds, 100, "child %d did too little", c);
		adds += rep[c].adds;
		dels += rep[c].dels;
	}
	assert_verifies(&m);
	cr_assert_eq((int64_t)used_of(&m, NULL), adds - dels);
	cr_assert_geq(shm_session_foreach(m.t, count_private, counts), 0);
	for (int c = 0; c < STRESS_CHILDREN; c++)
		cr_assert_eq(counts[c], rep[c].present, "child %d", c);
	table_close(&m);
}

/* ---- a lock holder killed with SIGKILL ---------------------------------- */

static int hook_fd = -1;

/* Runs inside insert with the lock held: tell the parent, then wait to
 * be killed (bounded, in case the parent is gone). */
static void hook_signal_and_sleep(void)
{
	if (write(hook_fd, "x", 1) != 1)
		_exit(4);
	for (int i = 0; i < 300; i++)
		usleep(100000);
	_exit(5);
}

static void kill_inside_insert(struct table_map *m, const char *victim)
{
	struct session_info info;
	const char *error;
	int fds[2], status;
	char c;
	pid_t pid;

	cr_assert_eq(pipe(fds), 0);
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		alarm(30);
		hook_fd = fds[1];
		shm_session_test_hook = hook_signal_and_sleep;
		info_set(&info, victim, 7, 7, 7);
		shm_session_put(m->t, &info, NULL, &error);
		_exit(6);
	}
	close(fds[1]);
	cr_assert_eq(read_timeout(fds[0], &c, 1, 10000), 1,
		     "child never reached the hook");
	close(fds[0]);
	cr_assert_eq(kill(pid, SIGKILL), 0);
	status = child_wait(pid, 10000);
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

/* Another process can use the table: put, get, del. */
static bool other_process_works(void *arg)
{
	struct table_map *m = arg;
	struct session_info info, got;
	const char *error;

	info_set(&info, "other@example.org/r", 5, 5, 5);
	return shm_session_put(m->t, &info, NULL, &error) == 0 &&
		shm_session_get(m->t, "other@example.org/r", &got) == 1 &&
		shm_session_del(m->t, "other@example.org/r", 5, 5, 5) == 1;
}

/* Fill what is left: exactly free records and free long entries must
 * be available, so the dead insert leaked nothing. */
static void fill_to_the_brim(struct table_map *m, uint32_t used,
			     uint32_t longs_used)
{
	char jid[300], prefix[64];
	uint32_t i;

	for (i = 0; i < m->hdr->long_capacity; i++) {
		snprintf(prefix, sizeof(prefix), "fill%u@example.org/", i);
		jid_of_len(jid, 220, prefix);
		if (put(m, jid, 1, 1, 1) != 0)
			break;
	}
	cr_assert_eq(i, m->hdr->long_capacity - longs_used);
	used += i;
	for (i = 0; i < m->hdr->capacity; i++) {
		snprintf(jid, sizeof(jid), "fillshort%u@example.org/r", i);
		if (put(m, jid, 1, 1, 1) != 0)
			break;
	}
	cr_assert_eq(i, m->hdr->capacity - used);
	assert_verifies(m);
}

Test(session, killed_lock_holder_is_recovered)
{
	struct table_map m;
	struct session_info got;
	char victim[300], keep[300];
	uint32_t recoveries;

	table_open(&m, 64);
	sweep_fill(&m, 1, 6);   /* 2 of them long */
	jid_of_len(victim, 250, "victim@example.org/");
	kill_inside_insert(&m, victim);
	/* First locker after the death is another process; a lock that is
	 * not robust would hang it, and child_run gives up after 10 s. */
	cr_assert(child_run(other_process_works, &m),
		  "table unusable after the lock holder died");

	cr_assert_eq(shm_session_get(m.t, victim, &got), 0,
		     "half-inserted entry visible");
	cr_assert_eq(used_of(&m, &recoveries), 6);
	cr_assert_eq(recoveries, 1);
	assert_verifies(&m);
	sweep_jid(keep, 1, 0);
	cr_assert_eq(shm_session_get(m.t, keep, &got), 1);
	cr_assert_eq(shm_session_list(m.t, "s1n3@example.org", NULL, 0), 1);

	cr_assert_eq(put(&m, "after@example.org/r", 2, 2, 2), 0);
	cr_assert_eq(shm_session_del(m.t, "after@example.org/r", 2, 2, 2), 1);
	cr_assert_eq(used_of(&m, &recoveries), 6);
	cr_assert_eq(recoveries, 1, "recovered more than once");
	fill_to_the_brim(&m, 6, 2);
	table_close(&m);
}

/* A holder that dies with lists torn in every way the protocol allows:
 * a FREE record still linked (delete cut short), a USED record not
 * linked (insert cut short), free lists and count garbage. */
Test(session, recovery_rebuilds_from_state_words)
{
	struct table_map m;
	struct session_info got;
	uint32_t recoveries;
	char jid1[300], jid2[300];
	pid_t pid;
	int status;

	table_open(&m, 32);
	sweep_fill(&m, 1, 8);
	sweep_jid(jid1, 1, 1);
	sweep_jid(jid2, 1, 2);
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		struct ipc_session *freed, *unlinked;

		alarm(10);
		pthread_mutex_lock(&m.hdr->lock);
		freed = layout_find(&m, jid1);
		unlinked = layout_find(&m, jid2);
		if (freed == NULL || unlinked == NULL)
			_exit(1);
		atomic_store(&freed->state, IPC_SESSION_FREE);
		for (uint32_t b = 0; b < m.hdr->nbuckets; b++)
			if (layout_buckets(&m)[b] == unlinked - layout_records(&m))
				layout_buckets(&m)[b] = unlinked->next;
		unlinked->next = 12345;
		m.hdr->free_head = 3;
		m.hdr->long_free_head = -1;
		m.hdr->used = 999;
		raise(SIGKILL);
		_exit(2);
	}
	status = child_wait(pid, 10000);
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	cr_assert(child_run(other_process_works, &m),
		  "table unusable after the lock holder died");

	cr_assert_eq(shm_session_get(m.t, jid1, &got), 0);
	cr_assert_eq(shm_session_get(m.t, jid2, &got), 1);
	cr_assert_eq(used_of(&m, &recoveries), 7);
	cr_assert_eq(recoveries, 1);
	assert_verifies(&m);
	fill_to_the_brim(&m, 7, 2);
	table_close(&m);
}

/* A holder killed in the middle of a flag change leaves the derived
 * sibling flags half written: the next locker derives them again. */
Test(session, recovery_derives_sibling_carbons_again)
{
	struct table_map m;
	const char *a = "fay@example.org/a", *b = "fay@example.org/b",
		   *c = "fay@example.org/c";
	uint32_t recoveries;
	pid_t pid;
	int status;

	table_open(&m, 32);
	cr_assert_eq(put(&m, a, 1, 1, 1), 0);
	cr_assert_eq(put(&m, b, 1, 2, 1), 0);
	cr_assert_eq(put(&m, c, 1, 3, 1), 0);
	cr_assert_eq(shm_session_set_flags(m.t, a, 1, 1, 1, CARB, 0), 1);
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		struct ipc_session *rb, *rc;

		alarm(10);
		pthread_mutex_lock(&m.hdr->lock);
		rb = layout_find(&m, b);
		rc = layout_find(&m, c);
		if (rb == NULL || rc == NULL)
			_exit(1);
		rb->flags = 0;          /* lost its sibling bit */
		rc->flags = CARB;       /* enabled, siblings not told */
		raise(SIGKILL);
		_exit(2);
	}
	status = child_wait(pid, 10000);
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	cr_assert(child_run(other_process_works, &m),
		  "table unusable after the lock holder died");
	used_of(&m, &recoveries);
	cr_assert_eq(recoveries, 1);
	cr_assert_eq(flags_of(&m, a), CARB | SIB);
	cr_assert_eq(flags_of(&m, b), SIB);
	cr_assert_eq(flags_of(&m, c), CARB | SIB);
	assert_verifies(&m);
	table_close(&m);
}

/* ---- sessions per account ------------------------------------------------ */

static int put_limited(struct table_map *m, const char *jid, uint16_t slot,
		       uint32_t conn_id, unsigned max,
		       enum session_refusal *why_r)
{
	struct session_info info;
	const char *error = NULL;
	int ret;

	info_set(&info, jid, slot, conn_id, 1);
	ret = shm_session_put_limited(m->t, &info, max, NULL, why_r, &error);
	if (ret < 0)
		cr_assert_not_null(error);
	return ret;
}

Test(limits, account_limit_counts_the_bare_jid)
{
	struct table_map m;
	enum session_refusal why;
	char jid[64];

	table_open(&m, 64);
	for (int i = 0; i < 3; i++) {
		snprintf(jid, sizeof(jid), "alice@example.org/r%d", i);
		cr_assert_eq(put_limited(&m, jid, 1, (uint32_t)i, 3, &why), 0);
		cr_assert_eq(why, SESSION_REFUSED_NONE);
	}
	cr_assert_eq(put_limited(&m, "alice@example.org/r3", 1, 3, 3, &why), -1);
	cr_assert_eq(why, SESSION_REFUSED_ACCOUNT);
	cr_assert_eq(shm_session_list(m.t, "alice@example.org", NULL, 0), 3);
	/* Other accounts, even with alice as a prefix, are not counted. */
	cr_assert_eq(put_limited(&m, "bob@example.org/r0", 2, 9, 3, &why), 0);
	cr_assert_eq(put_limited(&m, "alice@example.net/r3", 2, 8, 3, &why), 0);
	cr_assert_eq(put_limited(&m, "alic@example.org/r3", 2, 7, 3, &why), 0);
	/* Takeover of the same full JID is never refused by the limit. */
	cr_assert_eq(put_limited(&m, "alice@example.org/r1", 2, 10, 3, &why), 1);
	cr_assert_eq(put_limited(&m, "alice@example.org/r1", 2, 11, 1, &why), 1);
	/* A lower limit (a reload) refuses new ones, keeps the old ones. */
	cr_assert_eq(put_limited(&m, "alice@example.org/r9", 1, 3, 2, &why), -1);
	cr_assert_eq(shm_session_list(m.t, "alice@example.org", NULL, 0), 3);
	/* Room again after a logout; 0 means no limit. */
	cr_assert_eq(shm_session_del(m.t, "alice@example.org/r0", 1, 0, 1), 1);
	cr_assert_eq(put_limited(&m, "alice@example.org/r3", 1, 3, 3, &why), 0);
	cr_assert_eq(put_limited(&m, "alice@example.org/r4", 1, 4, 3, &why), -1);
	cr_assert_eq(put_limited(&m, "alice@example.org/r4", 1, 4, 0, &why), 0);
	cr_assert_eq(shm_session_list(m.t, "alice@example.org", NULL, 0), 4);
	assert_verifies(&m);
	table_close(&m);
}

Test(limits, account_limit_comes_before_full_table)
{
	struct table_map m;
	enum session_refusal why;
	char jid[64];

	table_open(&m, 16);
	for (int i = 0; i < 16; i++) {
		snprintf(jid, sizeof(jid), "u%d@example.org/r", i % 8);
		jid[strlen(jid) - 1] = (char)('a' + i / 8);
		cr_assert_eq(put_limited(&m, jid, 1, (uint32_t)i, 2, &why), 0);
	}
	cr_assert_eq(put_limited(&m, "u1@example.org/x", 1, 99, 2, &why), -1);
	cr_assert_eq(why, SESSION_REFUSED_ACCOUNT);
	cr_assert_eq(put_limited(&m, "new@example.org/x", 1, 99, 2, &why), -1);
	cr_assert_eq(why, SESSION_REFUSED_FULL);
	assert_verifies(&m);
	table_close(&m);
}

/* A dead worker's sessions are swept: the account's count follows. */
Test(limits, sweep_gives_the_account_its_sessions_back)
{
	struct table_map m;
	enum session_refusal why;
	char jid[64];

	table_open(&m, 64);
	for (int i = 0; i < 3; i++) {
		snprintf(jid, sizeof(jid), "alice@example.org/r%d", i);
		cr_assert_eq(put_limited(&m, jid, (uint16_t)(i == 0 ? 2 : 1),
					 (uint32_t)i, 3, &why), 0);
	}
	cr_assert_eq(put_limited(&m, "alice@example.org/x", 2, 9, 3, &why), -1);
	cr_assert_eq(shm_session_sweep_slot(m.t, 1, NULL, NULL), 2);
	cr_assert_eq(put_limited(&m, "alice@example.org/x", 2, 9, 3, &why), 0);
	cr_assert_eq(put_limited(&m, "alice@example.org/y", 2, 10, 3, &why), 0);
	cr_assert_eq(put_limited(&m, "alice@example.org/z", 2, 11, 3, &why), -1);
	assert_verifies(&m);
	table_close(&m);
}

/* One account cannot take the long-JID pool, whatever its session
 * limit; other accounts still get long entries. */
Test(limits, one_account_cannot_exhaust_the_long_pool)
{
	struct table_map m;
	enum session_refusal why;
	char jid[300], prefix[64];
	uint32_t share, longcap;

	table_open(&m, 512);
	longcap = m.hdr->long_capacity;
	share = shm_session_long_share(m.t);
	cr_assert_eq(share, longcap / 16);
	cr_assert(share >= 2 && share < longcap);
	for (uint32_t i = 0; i < share; i++) {
		snprintf(prefix, sizeof(prefix), "hog@example.org/%u-", i);
		jid_of_len(jid, 250, prefix);
		cr_assert_eq(put_limited(&m, jid, 1, i, 0, &why), 0, "long %u", i);
	}
	jid_of_len(jid, 250, "hog@example.org/more-");
	cr_assert_eq(put_limited(&m, jid, 1, 99, 0, &why), -1);
	cr_assert_eq(why, SESSION_REFUSED_LONG);
	/* Short resources of the same account, and replacing one of its
	 * long JIDs, still work. */
	cr_assert_eq(put_limited(&m, "hog@example.org/short", 1, 98, 0, &why), 0);
	jid_of_len(jid, 250, "hog@example.org/0-");
	cr_assert_eq(put_limited(&m, jid, 2, 97, 0, &why), 1);
	for (uint32_t i = 0; i < longcap - share; i++) {
		snprintf(prefix, sizeof(prefix), "other%u@example.org/", i);
		jid_of_len(jid, 250, prefix);
		cr_assert_eq(put_limited(&m, jid, 1, i, 0, &why), 0, "other %u", i);
	}
	assert_verifies(&m);
	table_close(&m);
}

/* Children of several processes bind resources of one account at once
 * (released together through a pipe): exactly `limit` succeed. */
#define RACE_CHILDREN 6
#define RACE_PER_CHILD 4
#define RACE_LIMIT 5

static void race_child(struct table_map *m, int c, int go_fd, int out_fd)
{
	char jid[64], go, won = 0;

	alarm(20);
	if (read(go_fd, &go, 1) != 1)
		_exit(1);
	for (int i = 0; i < RACE_PER_CHILD; i++) {
		struct session_info info;
		const char *error;

		snprintf(jid, sizeof(jid), "race@example.org/c%d-%d", c, i);
		info_set(&info, jid, (uint16_t)c, (uint32_t)i, 1);
		won += shm_session_put_limited(m->t, &info, RACE_LIMIT, NULL,
					       NULL, &error) == 0;
	}
	_exit(write(out_fd, &won, 1) == 1 ? 0 : 1);
}

Test(limits, account_limit_holds_across_processes)
{
	struct table_map m;
	int go[2], out[2], won = 0;
	pid_t pids[RACE_CHILDREN];
	char buf[RACE_CHILDREN];

	table_open(&m, 256);
	cr_assert_eq(pipe(go), 0);
	cr_assert_eq(pipe(out), 0);
	for (int c = 0; c < RACE_CHILDREN; c++) {
		pids[c] = fork();
		cr_assert(pids[c] >= 0);
		if (pids[c] == 0)
			race_child(&m, c, go[0], out[1]);
	}
	memset(buf, 'g', sizeof(buf));
	cr_assert_eq(write(go[1], buf, sizeof(buf)), (ssize_t)sizeof(buf));
	for (int c = 0; c < RACE_CHILDREN; c++) {
		char w;

		cr_assert_eq(read_timeout(out[0], &w, 1, 10000), 1);
		won += w;
	}
	for (int c = 0; c < RACE_CHILDREN; c++)
		child_wait(pids[c], 10000);
	close(go[0]);
	close(go[1]);
	close(out[0]);
	close(out[1]);
	cr_assert_eq(won, RACE_LIMIT);
	cr_assert_eq(shm_session_list(m.t, "race@example.org", NULL, 0),
		     RACE_LIMIT);
	assert_verifies(&m);
	table_close(&m);
}

/* ---- connections per address --------------------------------------------- */

struct addr_map {
	void *mem;
	size_t size;
	struct shm_addr *a;
	struct ipc_addr_table *hdr;
};

static void addr_open(struct addr_map *m, uint32_t capacity)
{
	const char *error = NULL;

	m->size = shm_addr_size(capacity);
	cr_assert(m->size > 0);
	m->mem = mmap(NULL, m->size, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert(m->mem != MAP_FAILED);
	cr_assert_eq(shm_addr_init(m->mem, m->size, capacity, &error), 0,
		     "init: %s", error);
	m->a = shm_addr_attach(m->mem, &error);
	cr_assert_not_null(m->a, "attach: %s", error);
	m->hdr = m->mem;
}

static void addr_close(struct addr_map *m)
{
	const char *error = NULL;

	cr_assert_eq(shm_addr_verify(m->a, &error), 0, "verify: %s", error);
	shm_addr_detach(&m->a);
	cr_assert_null(m->a);
	munmap(m->mem, m->size);
}

/* The key of a textual IPv4 or IPv6 address. */
static struct shm_addr_key key_of(const char *text)
{
	struct sockaddr_storage ss;
	struct shm_addr_key k;

	memset(&ss, 0, sizeof(ss));
	if (strchr(text, ':') == NULL) {
		struct sockaddr_in *s = (struct sockaddr_in *)&ss;
		s->sin_family = AF_INET;
		cr_assert_eq(inet_pton(AF_INET, text, &s->sin_addr), 1);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
		s->sin6_family = AF_INET6;
		cr_assert_eq(inet_pton(AF_INET6, text, &s->sin6_addr), 1);
	}
	shm_addr_key(&ss, &k);
	return k;
}

static bool key_eq(struct shm_addr_key a, struct shm_addr_key b)
{
	return a.family == b.family && memcmp(a.key, b.key, sizeof(a.key)) == 0;
}

static int acquire(struct addr_map *m, const char *addr, uint16_t slot,
		   unsigned limit)
{
	struct shm_addr_key k = key_of(addr);
	const char *error = NULL;
	int ret = shm_addr_acquire(m->a, &k, slot, limit, NULL, &error);

	if (ret < 0)
		cr_assert_not_null(error);
	return ret;
}

static unsigned count_of(struct addr_map *m, const char *addr)
{
	struct shm_addr_key k = key_of(addr);

	return shm_addr_count(m->a, &k);
}

Test(addr, keys_ipv4_mapped_and_ipv6_per_64)
{
	struct sockaddr_storage ss;

	cr_assert(key_eq(key_of("192.0.2.7"), key_of("::ffff:192.0.2.7")));
	cr_assert_eq(key_of("192.0.2.7").family, 4);
	cr_assert(!key_eq(key_of("192.0.2.7"), key_of("192.0.2.8")));
	cr_assert(key_eq(key_of("2001:db8:1:2::1"),
			 key_of("2001:db8:1:2:ffff:eeee:dddd:cccc")));
	cr_assert_eq(key_of("2001:db8:1:2::1").family, 6);
	cr_assert(!key_eq(key_of("2001:db8:1:2::1"), key_of("2001:db8:1:3::1")));
	cr_assert(!key_eq(key_of("::1"), key_of("127.0.0.1")));
	memset(&ss, 0, sizeof(ss));
	ss.ss_family = AF_UNIX;
	{
		struct shm_addr_key k;

		shm_addr_key(&ss, &k);
		cr_assert_eq(k.family, 0);
	}
}

Test(addr, limit_is_summed_over_slots)
{
	struct addr_map m;
	unsigned before = 99;
	const char *error;
	struct shm_addr_key k = key_of("192.0.2.1");

	addr_open(&m, 64);
	cr_assert_eq(acquire(&m, "192.0.2.1", 0, 3), 1);
	cr_assert_eq(acquire(&m, "192.0.2.1", 1, 3), 1);
	cr_assert_eq(acquire(&m, "::ffff:192.0.2.1", 2, 3), 1);
	cr_assert_eq(shm_addr_acquire(m.a, &k, 3, 3, &before, &error), 0);
	cr_assert_eq(before, 3);
	cr_assert_eq(acquire(&m, "192.0.2.1", 0, 3), 0);
	/* Other addresses, and a v6 /64 as one address, are apart. */
	cr_assert_eq(acquire(&m, "192.0.2.2", 0, 3), 1);
	cr_assert_eq(acquire(&m, "2001:db8::1", 0, 2), 1);
	cr_assert_eq(acquire(&m, "2001:db8::2", 1, 2), 1);
	cr_assert_eq(acquire(&m, "2001:db8::3", 1, 2), 0);
	cr_assert_eq(acquire(&m, "2001:db8:0:1::3", 1, 2), 1);
	/* A close makes room; a lower limit (reload) refuses at once; 0 is
	 * no limit but still counts. */
	shm_addr_release(m.a, &k, 1);
	cr_assert_eq(count_of(&m, "192.0.2.1"), 2);
	cr_assert_eq(acquire(&m, "192.0.2.1", 3, 2), 0);
	cr_assert_eq(acquire(&m, "192.0.2.1", 3, 3), 1);
	for (int i = 0; i < 10; i++)
		cr_assert_eq(acquire(&m, "192.0.2.1", 3, 0), 1);
	cr_assert_eq(count_of(&m, "192.0.2.1"), 13);
	addr_close(&m);
}

Test(addr, release_frees_entries_and_sweep_drops_a_slot)
{
	struct addr_map m;
	struct shm_addr_key k = key_of("198.51.100.9");
	uint32_t used, cap, rec;

	addr_open(&m, 16);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(acquire(&m, "198.51.100.9", (uint16_t)(i % 2), 0), 1);
	cr_assert_eq(acquire(&m, "198.51.100.10", 1, 0), 1);
	shm_addr_usage(m.a, &used, &cap, &rec);
	cr_assert_eq(used, 3, "one entry per (address, slot)");
	cr_assert_eq(cap, 16);
	cr_assert_eq(shm_addr_sweep_slot(m.a, 1), 3);
	cr_assert_eq(count_of(&m, "198.51.100.9"), 2);
	cr_assert_eq(count_of(&m, "198.51.100.10"), 0);
	/* A release for a swept slot changes nothing. */
	shm_addr_release(m.a, &k, 1);
	cr_assert_eq(count_of(&m, "198.51.100.9"), 2);
	shm_addr_release(m.a, &k, 0);
	shm_addr_release(m.a, &k, 0);
	shm_addr_usage(m.a, &used, &cap, &rec);
	cr_assert_eq(used, 0);
	addr_close(&m);
}

Test(addr, full_table_refuses_new_pairs_only)
{
	struct addr_map m;
	char a[32];

	addr_open(&m, 16);
	for (int i = 0; i < 16; i++) {
		snprintf(a, sizeof(a), "203.0.113.%d", i);
		cr_assert_eq(acquire(&m, a, 0, 5), 1);
	}
	cr_assert_eq(acquire(&m, "203.0.113.200", 0, 5), -1);
	cr_assert_eq(acquire(&m, "203.0.113.3", 1, 5), -1);
	cr_assert_eq(acquire(&m, "203.0.113.3", 0, 5), 1);
	addr_close(&m);
}

/* Children accept "connections" from one address at once, each on its
 * own slot: exactly the limit is counted. */
static void addr_race_child(struct addr_map *m, int c, int go_fd, int out_fd)
{
	struct shm_addr_key k = key_of("192.0.2.50");
	char go, won = 0;
	const char *error;

	alarm(20);
	if (read(go_fd, &go, 1) != 1)
		_exit(1);
	for (int i = 0; i < RACE_PER_CHILD; i++)
		won += shm_addr_acquire(m->a, &k, (uint16_t)c, RACE_LIMIT, NULL,
					&error) == 1;
	_exit(write(out_fd, &won, 1) == 1 ? 0 : 1);
}

Test(addr, limit_holds_across_processes)
{
	struct addr_map m;
	int go[2], out[2], won = 0;
	pid_t pids[RACE_CHILDREN];
	char buf[RACE_CHILDREN];

	addr_open(&m, 64);
	cr_assert_eq(pipe(go), 0);
	cr_assert_eq(pipe(out), 0);
	for (int c = 0; c < RACE_CHILDREN; c++) {
		pids[c] = fork();
		cr_assert(pids[c] >= 0);
		if (pids[c] == 0)
			addr_race_child(&m, c, go[0], out[1]);
	}
	memset(buf, 'g', sizeof(buf));
	cr_assert_eq(write(go[1], buf, sizeof(buf)), (ssize_t)sizeof(buf));
	for (int c = 0; c < RACE_CHILDREN; c++) {
		char w;

		cr_assert_eq(read_timeout(out[0], &w, 1, 10000), 1);
		won += w;
	}
	for (int c = 0; c < RACE_CHILDREN; c++)
		child_wait(pids[c], 10000);
	close(go[0]);
	close(go[1]);
	close(out[0]);
	close(out[1]);
	cr_assert_eq(won, RACE_LIMIT);
	cr_assert_eq(count_of(&m, "192.0.2.50"), RACE_LIMIT);
	addr_close(&m);
}

static int addr_hook_fd = -1;

static void addr_hook_signal_and_sleep(void)
{
	char c = 'h';

	if (write(addr_hook_fd, &c, 1) != 1)
		_exit(3);
	pause();
}

/* A worker SIGKILLed inside an insert: the next locker rebuilds, the
 * half-made entry is not counted, the table stays usable. */
Test(addr, killed_lock_holder_is_recovered)
{
	struct addr_map m;
	int fds[2], status;
	uint32_t used, cap, rec;
	char c;
	pid_t pid;

	addr_open(&m, 16);
	cr_assert_eq(acquire(&m, "192.0.2.1", 0, 0), 1);
	cr_assert_eq(pipe(fds), 0);
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		alarm(30);
		addr_hook_fd = fds[1];
		shm_addr_test_hook = addr_hook_signal_and_sleep;
		acquire(&m, "192.0.2.99", 5, 0);
		_exit(6);
	}
	close(fds[1]);
	cr_assert_eq(read_timeout(fds[0], &c, 1, 10000), 1,
		     "child never reached the hook");
	close(fds[0]);
	kill(pid, SIGKILL);
	status = child_wait(pid, 10000);
	cr_assert(WIFSIGNALED(status));
	cr_assert_eq(acquire(&m, "192.0.2.2", 1, 0), 1);
	cr_assert_eq(count_of(&m, "192.0.2.99"), 0);
	cr_assert_eq(count_of(&m, "192.0.2.1"), 1);
	shm_addr_usage(m.a, &used, &cap, &rec);
	cr_assert_eq(rec, 1);
	cr_assert_eq(used, 2);
	addr_close(&m);
}

Test(addr, shm_create_maps_the_table)
{
	struct shm_region r;
	const char *error = NULL;
	uint32_t used, cap, rec;

	cr_assert_eq(shm_create(&r, 2, 100, &error), 0, "%s", error);
	cr_assert_not_null(r.addrs);
	shm_addr_usage(r.addrs, &used, &cap, &rec);
	cr_assert_eq(cap, 100 * SHM_ADDR_PER_SESSION);
	cr_assert_eq(used, 0);
	cr_assert((char *)r.addrs != NULL && r.size >= shm_session_size(100) +
		  shm_addr_size(cap));
	shm_destroy(&r);
	cr_assert_null(r.addrs);
}

/* ---- remote entries (issue 15): other nodes' sessions ------------------- */

/* Workers 0..2 and the cluster bridge at slot 3. */
#define BRIDGE_SLOT 3

static int put_remote(struct table_map *m, const char *jid, uint8_t node,
		      uint8_t rslot, uint32_t conn_id, uint32_t gen,
		      struct session_info *old_r)
{
	struct session_info info;
	const char *error = NULL;
	int ret;

	info_set(&info, jid, BRIDGE_SLOT, conn_id, gen);
	info.node = node;
	info.rslot = rslot;
	ret = shm_session_insert_remote(m->t, &info, old_r, &error);
	if (ret < 0)
		cr_assert_not_null(error);
	return ret;
}

Test(session, remote_insert_lookup_remove)
{
	struct table_map m;
	struct session_info got, old;
	const char *j = "rita@example.org/phone";

	table_open(&m, 64);
	cr_assert_eq(put_remote(&m, j, 2, 1, 40, 3, NULL), 0);
	cr_assert_eq(shm_session_get(m.t, j, &got), 1);
	cr_assert_eq(got.slot, BRIDGE_SLOT);
	cr_assert_eq(got.node, 2);
	cr_assert_eq(got.rslot, 1);
	cr_assert_eq(got.conn_id, 40);
	cr_assert_eq(got.gen, 3);
	cr_assert_eq(got.available, 1);
	cr_assert_eq(got.since, 1700000000);
	assert_verifies(&m);
	/* a later event of the same node replaces it (here: a reconnect
	 * to another of its workers) */
	cr_assert_eq(put_remote(&m, j, 2, 0, 41, 3, &old), 1);
	cr_assert_eq(old.conn_id, 40);
	cr_assert_eq(old.rslot, 1);
	cr_assert_eq(used_of(&m, NULL), 1);
	/* a stale remove (the old connection, a wrong gen, another
	 * worker or node) removes nothing */
	cr_assert_eq(shm_session_remove_remote(m.t, 2, 1, j, 40, 3), 0);
	cr_assert_eq(shm_session_remove_remote(m.t, 2, 0, j, 41, 4), 0);
	cr_assert_eq(shm_session_remove_remote(m.t, 2, 1, j, 41, 3), 0);
	cr_assert_eq(shm_session_remove_remote(m.t, 5, 0, j, 41, 3), 0);
	cr_assert_eq(shm_session_get(m.t, j, &got), 1);
	cr_assert_eq(got.conn_id, 41);
	/* nor do the local owner calls, even from the bridge's slot with
	 * the remote numbers */
	cr_assert_eq(shm_session_del(m.t, j, BRIDGE_SLOT, 41, 3), 0);
	cr_assert_eq(shm_session_set_presence(m.t, j, BRIDGE_SLOT, 41, 3, 5,
					      0), 0);
	cr_assert_eq(shm_session_set_flags(m.t, j, BRIDGE_SLOT, 41, 3, CARB,
					   0), 0);
	cr_assert_eq(shm_session_get(m.t, j, &got), 1);
	cr_assert_eq(got.available, 1);
	cr_assert_eq(got.flags, 0);
	/* the right one does */
	cr_assert_eq(shm_session_remove_remote(m.t, 2, 0, j, 41, 3), 1);
	cr_assert_eq(shm_session_get(m.t, j, &got), 0);
	cr_assert_eq(used_of(&m, NULL), 0);
	assert_verifies(&m);
	table_close(&m);
}

Test(session, remote_insert_refuses_bad_node_and_local_holder)
{
	struct table_map m;
	struct session_info info, old;
	const char *error = NULL;
	const char *j = "sam@example.org/desk";

	table_open(&m, 64);
	cr_assert_eq(put_remote(&m, j, 0, 0, 1, 1, NULL), -1, "node 0 taken");
	cr_assert_eq(put_remote(&m, j, IPC_MAX_NODES, 0, 1, 1, NULL), -1);
	/* a local put with a node is refused: remote entries have their
	 * own door */
	info_set(&info, j, 1, 1, 1);
	info.node = 2;
	cr_assert_eq(shm_session_put(m.t, &info, NULL, &error), -1);
	cr_assert_eq(used_of(&m, NULL), 0);
	/* held here: the remote event changes nothing, the holder is
	 * reported for the caller to settle */
	cr_assert_eq(put(&m, j, 1, 7, 1), 0);
	cr_assert_eq(put_remote(&m, j, 2, 0, 9, 1, &old), 2);
	cr_assert_eq(old.node, 0);
	cr_assert_eq(old.slot, 1);
	cr_assert_eq(old.conn_id, 7);
	cr_assert_eq(shm_session_get(m.t, j, &info), 1);
	cr_assert_eq(info.node, 0);
	cr_assert_eq(info.conn_id, 7);
	/* held by a third node: the same */
	cr_assert_eq(shm_session_del(m.t, j, 1, 7, 1), 1);
	cr_assert_eq(put_remote(&m, j, 4, 0, 9, 1, NULL), 0);
	cr_assert_eq(put_remote(&m, j, 2, 0, 9, 1, &old), 2);
	cr_assert_eq(old.node, 4);
	cr_assert_eq(used_of(&m, NULL), 1);
	assert_verifies(&m);
	table_close(&m);
}

/* A bind here of a full JID a remote session holds replaces it and
 * reports it (bind.c kicks it through the bridge), as with a holder on
 * another worker: never two entries for one full JID. */
Test(session, local_bind_replaces_remote_holder)
{
	struct table_map m;
	struct session_info info, old;
	const char *error = NULL;
	const char *j = "tom@example.org/home";

	table_open(&m, 64);
	cr_assert_eq(put_remote(&m, j, 3, 2, 50, 7, NULL), 0);
	info_set(&info, j, 1, 8, 1);
	cr_assert_eq(shm_session_put(m.t, &info, &old, &error), 1);
	cr_assert_eq(old.node, 3);
	cr_assert_eq(old.rslot, 2);
	cr_assert_eq(old.slot, BRIDGE_SLOT);
	cr_assert_eq(old.conn_id, 50);
	cr_assert_eq(old.gen, 7);
	cr_assert_eq(used_of(&m, NULL), 1);
	cr_assert_eq(shm_session_get(m.t, j, &info), 1);
	cr_assert_eq(info.node, 0);
	cr_assert_eq(info.slot, 1);
	/* the account limit counts remote sessions too: the account is
	 * one across the cluster */
	cr_assert_eq(put_remote(&m, "tom@example.org/car", 2, 0, 1, 1, NULL),
		     0);
	info_set(&info, "tom@example.org/third", 0, 9, 1);
	cr_assert_eq(shm_session_put_limited(m.t, &info, 2, NULL, NULL,
					     &error), -1);
	assert_verifies(&m);
	table_close(&m);
}

Test(session, bare_jid_lists_local_and_remote)
{
	struct table_map m;
	struct session_info out[8];
	unsigned local = 0, remote = 0;

	table_open(&m, 64);
	cr_assert_eq(put(&m, "uma@example.org/a", 0, 1, 1), 0);
	cr_assert_eq(put_remote(&m, "uma@example.org/b", 2, 1, 1, 1, NULL), 0);
	cr_assert_eq(put(&m, "uma@example.org/c", 2, 1, 1), 0);
	cr_assert_eq(put_remote(&m, "uma@example.org/d", 5, 0, 1, 1, NULL), 0);
	cr_assert_eq(put_remote(&m, "umax@example.org/a", 2, 0, 2, 1, NULL),
		     0);
	int n = shm_session_list(m.t, "uma@example.org", out, 8);
	cr_assert_eq(n, 4);
	for (int i = 0; i < n; i++) {
		if (out[i].node == 0) {
			local++;
			cr_assert_neq(out[i].slot, BRIDGE_SLOT);
		} else {
			remote++;
			cr_assert_eq(out[i].slot, BRIDGE_SLOT);
			cr_assert(strcmp(out[i].jid, "uma@example.org/b") == 0 ?
				  out[i].node == 2 && out[i].rslot == 1 :
				  out[i].node == 5 && out[i].rslot == 0,
				  "%s: node %u rslot %u", out[i].jid,
				  out[i].node, out[i].rslot);
		}
	}
	cr_assert_eq(local, 2);
	cr_assert_eq(remote, 2);
	table_close(&m);
}

struct node_seen {
	unsigned count, available;
	unsigned bad;               /* a reported entry not of the node */
	uint8_t node;
};

static void node_sweep_cb(const struct session_info *info, void *ctx)
{
	struct node_seen *s = ctx;

	s->count++;
	s->available += info->available;
	if (info->node != s->node || info->jid[0] == '\0')
		s->bad++;
}

/* A node's loss: exactly its entries go, each reported with its full
 * JID and availability; other nodes' and local entries stay. */
Test(session, sweep_node_removes_exactly_that_node)
{
	struct table_map m;
	struct node_seen s = { .node = 2 };
	char jid[64];
	const char *error = NULL;

	table_open(&m, 256);
	for (unsigned i = 0; i < 40; i++) {    /* several internal batches */
		struct session_info info;

		snprintf(jid, sizeof(jid), "n2u%u@example.org/r", i);
		info_set(&info, jid, BRIDGE_SLOT, i + 1, 1);
		info.node = 2;
		info.rslot = (uint8_t)(i % 3);
		info.available = i % 4 != 0;
		cr_assert_eq(shm_session_insert_remote(m.t, &info, NULL,
						       &error), 0, "%s", error);
	}
	for (unsigned i = 0; i < 7; i++) {
		snprintf(jid, sizeof(jid), "n3u%u@example.org/r", i);
		cr_assert_eq(put_remote(&m, jid, 3, 0, i + 1, 1, NULL), 0);
		snprintf(jid, sizeof(jid), "local%u@example.org/r", i);
		cr_assert_eq(put(&m, jid, i % 3, i + 1, 1), 0);
	}
	cr_assert_eq(shm_session_sweep_node(m.t, 2, node_sweep_cb, &s), 40);
	cr_assert_eq(s.count, 40);
	cr_assert_eq(s.available, 30);
	cr_assert_eq(s.bad, 0);
	cr_assert_eq(used_of(&m, NULL), 14);
	cr_assert_eq(shm_session_list(m.t, "n2u5@example.org", NULL, 0), 0);
	cr_assert_eq(shm_session_list(m.t, "n3u5@example.org", NULL, 0), 1);
	cr_assert_eq(shm_session_list(m.t, "local5@example.org", NULL, 0), 1);
	assert_verifies(&m);
	cr_assert_eq(shm_session_sweep_node(m.t, 2, NULL, NULL), 0);
	cr_assert_eq(shm_session_sweep_node(m.t, 0, NULL, NULL), -1,
		     "node 0 is this node: swept by slot");
	cr_assert_eq(used_of(&m, NULL), 14);
	table_close(&m);
}

/* The bridge's death is not its sessions' death: a sweep of its slot
 * leaves the remote entries (the contract: the new bridge resyncs). */
Test(session, sweep_slot_leaves_remote_entries)
{
	struct table_map m;

	table_open(&m, 64);
	cr_assert_eq(put_remote(&m, "vic@example.org/a", 2, 0, 1, 1, NULL), 0);
	cr_assert_eq(put_remote(&m, "vic@example.org/b", 3, 1, 1, 1, NULL), 0);
	cr_assert_eq(put(&m, "vic@example.org/c", 1, 1, 1), 0);
	cr_assert_eq(shm_session_sweep_slot(m.t, BRIDGE_SLOT, NULL, NULL), 0);
	cr_assert_eq(used_of(&m, NULL), 3);
	cr_assert_eq(shm_session_sweep_slot(m.t, 1, NULL, NULL), 1);
	cr_assert_eq(shm_session_list(m.t, "vic@example.org", NULL, 0), 2);
	assert_verifies(&m);
	table_close(&m);
}

/* XEP-0280: a remote session with carbons on makes the local ones
 * siblings and the other way round, and its sweep clears that. */
Test(session, sibling_carbons_across_nodes)
{
	struct table_map m;
	struct session_info info;
	const char *error = NULL;
	const char *l = "wes@example.org/local", *r = "wes@example.org/remote",
		   *r2 = "wes@example.org/remote2";

	table_open(&m, 64);
	cr_assert_eq(put(&m, l, 1, 1, 1), 0);
	info_set(&info, r, BRIDGE_SLOT, 5, 1);
	info.node = 2;
	info.flags = CARB | SIB;        /* SIB is the table's own */
	cr_assert_eq(shm_session_insert_remote(m.t, &info, NULL, &error), 0);
	cr_assert_eq(flags_of(&m, r), CARB);
	cr_assert_eq(flags_of(&m, l), SIB, "remote carbons not counted");
	assert_verifies(&m);
	/* the local one enables too: both have a sibling */
	cr_assert_eq(shm_session_set_flags(m.t, l, 1, 1, 1, CARB, 0), 1);
	cr_assert_eq(flags_of(&m, r), CARB | SIB);
	cr_assert_eq(flags_of(&m, l), CARB | SIB);
	/* a second remote one without carbons is a sibling at once */
	cr_assert_eq(put_remote(&m, r2, 3, 0, 6, 1, NULL), 0);
	cr_assert_eq(flags_of(&m, r2), SIB);
	assert_verifies(&m);
	/* the remote one turns carbons off (its node's event) */
	info.flags = 0;
	cr_assert_eq(shm_session_insert_remote(m.t, &info, NULL, &error), 1);
	cr_assert_eq(flags_of(&m, l), CARB, "a gone sibling still counted");
	cr_assert_eq(flags_of(&m, r), SIB);
	/* the local one turns it off, then node 3 goes */
	cr_assert_eq(shm_session_set_flags(m.t, l, 1, 1, 1, 0, CARB), 1);
	cr_assert_eq(flags_of(&m, r), 0);
	info.flags = CARB;
	cr_assert_eq(shm_session_insert_remote(m.t, &info, NULL, &error), 1);
	cr_assert_eq(flags_of(&m, l), SIB);
	cr_assert_eq(shm_session_sweep_node(m.t, 2, NULL, NULL), 1);
	cr_assert_eq(flags_of(&m, l), 0, "swept node's carbons still counted");
	cr_assert_eq(flags_of(&m, r2), 0);
	assert_verifies(&m);
	table_close(&m);
}

/* verify catches node fields a bug could leave */
Test(session, verify_checks_node_fields)
{
	struct table_map m;
	const char *error = NULL;
	struct ipc_session *r;

	table_open(&m, 32);
	cr_assert_eq(put(&m, "xia@example.org/a", 1, 1, 1), 0);
	r = layout_find(&m, "xia@example.org/a");
	cr_assert_not_null(r);
	r->rslot = 2;                   /* a local entry with a remote slot */
	cr_assert_eq(shm_session_verify(m.t, &error), -1);
	r->rslot = 0;
	r->node = IPC_MAX_NODES;
	cr_assert_eq(shm_session_verify(m.t, &error), -1);
	r->node = 0;
	assert_verifies(&m);
	table_close(&m);
}

/* ---- the change log (cluster only) ------------------------------------ */

static void table_open_log(struct table_map *m, uint32_t capacity,
			   uint32_t log_entries)
{
	const char *error = NULL;

	m->size = shm_session_size_log(capacity, log_entries);
	cr_assert(m->size > 0);
	m->mem = mmap(NULL, m->size, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert(m->mem != MAP_FAILED);
	cr_assert_eq(shm_session_init_log(m->mem, m->size, capacity,
					  log_entries, &error), 0,
		     "init: %s", error);
	m->t = shm_session_attach(m->mem, &error);
	cr_assert_not_null(m->t, "attach: %s", error);
	m->hdr = m->mem;
}

static int32_t index_of(struct table_map *m, const char *jid)
{
	struct session_info got;

	cr_assert_eq(shm_session_get(m->t, jid, &got), 1, "%s", jid);
	return got.index;
}

/* Read everything new; -1 if the log says the reader lost changes. */
static int log_all(struct table_map *m, struct shm_session_cursor *c,
		   int32_t *out, unsigned max)
{
	return shm_session_log_read(m->t, c, out, max);
}

Test(session, change_log_sizes)
{
	struct table_map m;

	cr_assert_eq(shm_session_size_log(100, 0), shm_session_size(100));
	cr_assert_gt(shm_session_size_log(100, 5), shm_session_size(100));
	cr_assert_eq(shm_session_size_log(100, SHM_SESSION_LOG_MAX + 1), 0);
	table_open_log(&m, 100, 5);
	cr_assert_eq(shm_session_log_size(m.t), 8, "rounded up to a power of 2");
	cr_assert_eq((uintptr_t)m.hdr % 8, 0);
	table_close(&m);
	/* no log: a reader is told so and walks */
	struct shm_session_cursor c;
	int32_t out[4];
	table_open(&m, 16);
	cr_assert_eq(shm_session_log_start(m.t, &c), -1);
	cr_assert_eq(put(&m, "a@example.org/r", 1, 1, 1), 0);
	cr_assert_eq(log_all(&m, &c, out, 4), -1);
	table_close(&m);
}

/* Each local change names its record, in order; the bridge's own
 * remote entries and a node's sweep are not logged. */
Test(session, change_log_names_local_changes)
{
	struct table_map m;
	struct shm_session_cursor c;
	struct session_info got;
	int32_t out[32], a, b;

	table_open_log(&m, 64, 64);
	cr_assert_eq(shm_session_log_start(m.t, &c), 0);
	cr_assert_eq(log_all(&m, &c, out, 32), 0, "nothing yet");
	cr_assert_eq(put(&m, "ann@example.org/a", 1, 1, 1), 0);
	cr_assert_eq(put(&m, "bob@example.org/b", 2, 2, 1), 0);
	a = index_of(&m, "ann@example.org/a");
	b = index_of(&m, "bob@example.org/b");
	cr_assert_eq(shm_session_set_presence(m.t, "ann@example.org/a", 1, 1, 1,
					      5, 1), 1);
	cr_assert_eq(shm_session_set_flags(m.t, "bob@example.org/b", 2, 2, 1,
					   IPC_SESSION_F_CARBONS, 0), 1);
	/* a presence change by another owner changes nothing: no entry */
	cr_assert_eq(shm_session_set_presence(m.t, "ann@example.org/a", 9, 9, 9,
					      5, 1), 0);
	cr_assert_eq(put_remote(&m, "rem@example.org/x", 2, 1, 7, 1, NULL), 0);
	cr_assert_eq(shm_session_remove_remote(m.t, 2, 1, "rem@example.org/x",
					       7, 1), 1);
	cr_assert_eq(put_remote(&m, "rem2@example.org/x", 3, 1, 8, 1, NULL), 0);
	cr_assert_eq(shm_session_sweep_node(m.t, 3, NULL, NULL), 1);
	cr_assert_eq(shm_session_del(m.t, "ann@example.org/a", 1, 1, 1), 1);
	cr_assert_eq(shm_session_sweep_slot(m.t, 2, NULL, NULL), 1);
	int32_t want[] = { a, b, a, b, a, b };
	cr_assert_eq(log_all(&m, &c, out, 32), 6);
	for (unsigned i = 0; i < 6; i++)
		cr_expect_eq(out[i], want[i], "entry %u: %d, not %d", i,
			     out[i], want[i]);
	cr_assert_eq(shm_session_at(m.t, a, &got), 0, "ann's record is free");
	cr_assert_eq(log_all(&m, &c, out, 32), 0);
	/* a replacement by another connection of the same full JID */
	cr_assert_eq(put(&m, "cy@example.org/c", 1, 3, 1), 0);
	cr_assert_eq(put(&m, "cy@example.org/c", 2, 4, 1), 1);
	cr_assert_eq(log_all(&m, &c, out, 1), 1, "max is kept");
	cr_assert_eq(log_all(&m, &c, out, 32), 1);
	cr_assert_eq(shm_session_at(m.t, out[0], &got), 1);
	cr_expect_str_eq(got.jid, "cy@example.org/c");
	cr_expect_eq(got.conn_id, 4);
	table_close(&m);
}

/* A reader the ring lapped is told, not handed overwritten entries,
 * and starts again at the head. */
Test(session, change_log_lapped_reader_starts_again)
{
	struct table_map m;
	struct shm_session_cursor c;
	int32_t out[16];
	char jid[64];

	table_open_log(&m, 64, 4);
	cr_assert_eq(shm_session_log_start(m.t, &c), 0);
	for (int i = 0; i < 4; i++) {
		snprintf(jid, sizeof(jid), "u%d@example.org/r", i);
		cr_assert_eq(put(&m, jid, 1, (uint32_t)i, 1), 0);
	}
	cr_assert_eq(log_all(&m, &c, out, 2), 2, "a full ring is still read");
	for (int i = 4; i < 7; i++) {
		snprintf(jid, sizeof(jid), "u%d@example.org/r", i);
		cr_assert_eq(put(&m, jid, 1, (uint32_t)i, 1), 0);
	}
	cr_assert_eq(log_all(&m, &c, out, 16), -1, "lapped by one");
	cr_assert_eq(shm_session_log_start(m.t, &c), 0);
	cr_assert_eq(log_all(&m, &c, out, 16), 0);
	cr_assert_eq(put(&m, "late@example.org/r", 1, 99, 1), 0);
	cr_assert_eq(log_all(&m, &c, out, 16), 1);
	cr_expect_eq(out[0], index_of(&m, "late@example.org/r"));
	table_close(&m);
}

/* A lock holder killed mid-change may have changed a record without
 * logging it: the table's rebuild makes every reader start again. */
Test(session, change_log_after_a_dead_lock_holder)
{
	struct table_map m;
	struct shm_session_cursor c;
	int32_t out[16];

	table_open_log(&m, 64, 64);
	cr_assert_eq(put(&m, "a@example.org/r", 1, 1, 1), 0);
	cr_assert_eq(shm_session_log_start(m.t, &c), 0);
	kill_inside_insert(&m, "victim@example.org/r");
	cr_assert(child_run(other_process_works, &m));
	cr_assert_eq(log_all(&m, &c, out, 16), -1);
	cr_assert_eq(shm_session_log_start(m.t, &c), 0);
	cr_assert_eq(put(&m, "b@example.org/r", 1, 2, 1), 0);
	cr_assert_eq(log_all(&m, &c, out, 16), 1);
	table_close(&m);
}

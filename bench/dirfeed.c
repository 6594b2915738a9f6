/*
 * dirfeed.c - what the cluster bridge spends telling this node's
 * sessions (cluster/dirfeed.c), apart from any network or process:
 * a full walk of a session table of a given size, and an update from
 * the table's change log, per change.  Not a test (nothing asserted);
 * the figures go to docs/PERFORMANCE.md "Cluster" by hand.
 *
 *   make bench/dirfeed && bench/dirfeed [SLOTS [LOCAL [REMOTE]]]
 *
 * Failure policy: any error exits 1 with a message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "cluster/dirfeed.h"
#include "session.h"

#define WORKERS 2
#define WALKS 10
#define ROUNDS 200
#define PER_ROUND 100       /* changes between two reads of the log */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *error)
{
	fprintf(stderr, "dirfeed: %s: %s\n", what, error);
	exit(1);
}

static void fill(struct shm_table *t, uint32_t local, uint32_t remote)
{
	struct session_info info;
	const char *error = "?";
	for (uint32_t i = 0; i < local + remote; i++) {
		memset(&info, 0, sizeof(info));
		snprintf(info.jid, sizeof(info.jid), "user%u@example.org/r", i);
		info.conn_id = i + 1;
		info.gen = 1;
		info.available = 1;
		info.since = 1765000000;
		if (i < local) {
			info.slot = (uint16_t)(i % WORKERS);
			if (shm_session_put(t, &info, NULL, &error) < 0)
				die("put", error);
		} else {
			info.slot = WORKERS;
			info.node = 1;
			if (shm_session_insert_remote(t, &info, NULL, &error) < 0)
				die("insert_remote", error);
		}
	}
}

/* The scan before the change log (bridge_route.c at 1de1830): every
 * local worker session of the table into dir_local, no record index. */
static int old_scan_one(const struct session_info *info, void *ctx)
{
	struct dir_local *l = ctx;
	if (info->node != 0 || info->slot >= WORKERS)
		return 0;
	struct dir_rec rec = {
		.op = DIR_OP_SET, .rslot = (uint8_t)info->slot,
		.flags = info->flags & IPC_SESSION_F_CARBONS,
		.available = info->available ? 1 : 0,
		.priority = info->priority, .conn_id = info->conn_id,
		.gen = info->gen, .since = info->since,
		.jid_len = (uint16_t)strlen(info->jid), .jid = info->jid,
	};
	dir_local_change(l, &rec);
	return 0;
}

static double old_scan(struct shm_table *t)
{
	struct dir_local l;
	if (dir_local_init(&l, "n1", 1) < 0)
		die("dir_local_init", "out of memory");
	double t0 = 0;
	for (int i = 0; i <= WALKS; i++) {
		if (i == 1)
			t0 = now_s();   /* the first fills the map */
		dir_local_scan_begin(&l);
		shm_session_foreach(t, old_scan_one, &l);
		dir_local_scan_end(&l);
		dir_local_sent(&l);
	}
	double s = (now_s() - t0) / WALKS;
	dir_local_free(&l);
	return s;
}

int main(int argc, char **argv)
{
	uint32_t slots = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 4000000;
	uint32_t local = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 10) : 1000;
	uint32_t remote = argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 10) : 0;
	const char *error = "?";
	size_t size = shm_session_size_log(slots, 65536);
	void *mem = size == 0 ? MAP_FAILED :
		mmap(NULL, size, PROT_READ | PROT_WRITE,
		     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct shm_table *t;
	struct dir_feed f;
	struct dir_local l;
	char jid[64];

	if (mem == MAP_FAILED || local == 0)
		die("table", "bad size, or mmap failed, or no local session");
	if (shm_session_init_log(mem, size, slots, 65536, &error) < 0 ||
	    (t = shm_session_attach(mem, &error)) == NULL)
		die("init", error);
	fill(t, local, remote);
	dir_feed_init(&f, WORKERS);
	if (dir_local_init(&l, "n1", 1) < 0)
		die("dir_local_init", "out of memory");
	double scan = old_scan(t);
	if (dir_feed_update(&f, &l, t, true, &error) < 0)
		die("walk", error);     /* the first fills the map */
	dir_local_sent(&l);
	double t0 = now_s();
	for (int i = 0; i < WALKS; i++) {
		if (dir_feed_update(&f, &l, t, true, &error) < 0)
			die("walk", error);
		dir_local_sent(&l);
	}
	double walk = (now_s() - t0) / WALKS;
	double spent = 0;
	uint64_t changes = 0;
	for (int r = 0; r < ROUNDS; r++) {
		for (int i = 0; i < PER_ROUND; i++, changes++) {
			uint32_t u = (uint32_t)(changes * 7919u % local);
			snprintf(jid, sizeof(jid), "user%u@example.org/r", u);
			if (shm_session_set_presence(t, jid, (uint16_t)(u % WORKERS),
						     u + 1, 1, (int16_t)(r % 5),
						     1) != 1)
				die("presence", jid);
		}
		double s = now_s();
		if (dir_feed_update(&f, &l, t, false, &error) < 0)
			die("log", error);
		dir_local_sent(&l);
		spent += now_s() - s;
	}
	printf("slots %u, local %u, remote %u: scan before the log %.2f ms, "
	       "walk %.2f ms (%.2f ns a slot), "
	       "log %.0f ns a change (%llu changes, %llu walks)\n",
	       slots, local, remote, scan * 1e3, walk * 1e3, walk * 1e9 / slots,
	       spent * 1e9 / (double)changes, (unsigned long long)changes,
	       (unsigned long long)f.walks);
	dir_local_free(&l);
	shm_session_detach(&t);
	munmap(mem, size);
	return 0;
}

/*
 * test_capstable.c - unit tests for shm/caps.c: an unknown ver is
 * handed out once (ASK, then WAIT for everyone else until the timeout),
 * VERIFIED entries answer "wants" by node hash, a mismatch is INVALID
 * and asked again after 10x the timeout, another process sees what one
 * wrote, LRU eviction of idle entries only (a full window refuses), and
 * a writer SIGKILLed while holding the lock.  Times are passed in;
 * forked children _exit() and carry an alarm().
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ipc.h"
#include "caps.h"
#include "shm_test_map.h"
#include "session.h"

TestSuite(capstable, .timeout = 120.);

SHM_TEST_MAP(cmap, shm_caps)

#define VER "QgayPKawpkPSDYmwT/WM94uAlu0="
#define IDLE (600LL * 1000)     /* caps.idle_timeout */

Test(capstable, size_limits)
{
	cr_assert_eq(shm_caps_size(0), 0);
	/* a session record holds idx + 1 in 16 bits: 32768 at most (65535
	 * rounded up to 65536 slots, whose last idx + 1 wrapped to 0) */
	cr_assert_eq(shm_caps_size(65535), 0);
	cr_assert_eq(shm_caps_size(32769), 0);
	cr_assert_gt(shm_caps_size(32768), 0);
}

Test(capstable, ask_once_then_wait)
{
	struct cmap m;
	uint32_t idx, gen, idx2, gen2;
	cmap_open(&m, 64);
	cr_assert_eq(shm_caps_begin(m.t, 1, 0, VER, 1000, 30000, IDLE,
				    &idx, &gen),
		     SHM_CAPS_ASK);
	cr_assert_eq(shm_caps_begin(m.t, 1, 0, VER, 2000, 30000, IDLE,
				    &idx2, &gen2),
		     SHM_CAPS_WAIT);
	cr_assert_eq(idx, idx2);
	/* the same ver under another algorithm or version is another key */
	cr_assert_eq(shm_caps_begin(m.t, 2, 0, VER, 2000, 30000, IDLE,
				    &idx2, &gen2),
		     SHM_CAPS_ASK);
	cr_assert_eq(shm_caps_begin(m.t, 1, 1, VER, 2000, 30000, IDLE,
				    &idx2, &gen2),
		     SHM_CAPS_ASK);
	/* the query timed out: the next client is asked */
	cr_assert_eq(shm_caps_begin(m.t, 1, 0, VER, 31000, 30000, IDLE,
				    &idx2, &gen2),
		     SHM_CAPS_ASK);
	cr_assert_eq(shm_caps_lookup(m.t, 1, 0, VER, &idx2, &gen2),
		     IPC_CAPS_PENDING);
	cmap_close(&m);
}

Test(capstable, verified_wants)
{
	struct cmap m;
	uint32_t idx, gen, i2, g2;
	cmap_open(&m, 64);
	uint64_t h[2] = { shm_caps_hash(m.t, "urn:xmpp:avatar:metadata", 24),
			  shm_caps_hash(m.t, "tune", 4) };
	uint64_t other = shm_caps_hash(m.t, "mood", 4);
	cr_assert_eq(shm_caps_begin(m.t, 1, 0, VER, 1000, 30000, IDLE,
				    &idx, &gen),
		     SHM_CAPS_ASK);
	uint64_t epoch = shm_caps_epoch(m.t);
	cr_assert_eq(shm_caps_verified(m.t, 1, 0, VER, h, 2, 1500, IDLE,
				       &i2, &g2),
		     0);
	cr_assert_eq(i2, idx);
	cr_assert_eq(g2, gen);
	cr_assert_eq(shm_caps_epoch(m.t), epoch + 1);
	cr_assert_eq(shm_caps_wants(m.t, idx, (uint16_t)gen, h[0]), 1);
	cr_assert_eq(shm_caps_wants(m.t, idx, (uint16_t)gen, h[1]), 1);
	cr_assert_eq(shm_caps_wants(m.t, idx, (uint16_t)gen, other), 0);
	/* a stale gen (the slot was reused) answers no */
	cr_assert_eq(shm_caps_wants(m.t, idx, (uint16_t)(gen + 1), h[0]), 0);
	cr_assert_eq(shm_caps_begin(m.t, 1, 0, VER, 2000, 30000, IDLE,
				    &i2, &g2),
		     SHM_CAPS_KNOWN);
	cr_assert_eq(shm_caps_lookup(m.t, 1, 0, VER, &i2, &g2),
		     IPC_CAPS_VERIFIED);
	/* verified without a query first (from PostgreSQL) */
	cr_assert_eq(shm_caps_verified(m.t, 1, 0, "abc=", h, 1, 2000, IDLE, &i2,
				       &g2), 0);
	uint64_t got[4];
	cr_assert_eq(shm_caps_read(m.t, i2, (uint16_t)g2, got, 4), 1);
	cr_assert_eq(got[0], h[0]);
	/* an invalid answer never demotes a VERIFIED entry */
	cr_assert_eq(shm_caps_invalid(m.t, 1, 0, VER, 3000), 0);
	cr_assert_eq(shm_caps_wants(m.t, idx, (uint16_t)gen, h[0]), 1);
	cmap_close(&m);
}

/* A mismatching answer: the next client is asked at once (the liar is
 * held off by caps_ext.c), then it is PENDING again. */
Test(capstable, invalid_asked_again)
{
	struct cmap m;
	uint32_t idx, gen;
	cmap_open(&m, 64);
	cr_assert_eq(shm_caps_begin(m.t, 1, 0, VER, 1000, 30000, IDLE,
				    &idx, &gen),
		     SHM_CAPS_ASK);
	cr_assert_eq(shm_caps_invalid(m.t, 1, 0, VER, 2000), 0);
	cr_assert_eq(shm_caps_lookup(m.t, 1, 0, VER, &idx, &gen),
		     IPC_CAPS_INVALID);
	cr_assert_eq(shm_caps_begin(m.t, 1, 0, VER, 3000, 30000, IDLE,
				    &idx, &gen),
		     SHM_CAPS_ASK);
	cr_assert_eq(shm_caps_begin(m.t, 1, 0, VER, 3001, 30000, IDLE,
				    &idx, &gen),
		     SHM_CAPS_WAIT);
	cmap_close(&m);
}

/* Another process (another worker) sees the entry without a lock. */
Test(capstable, shared_between_processes)
{
	struct cmap m;
	uint32_t idx, gen;
	cmap_open(&m, 64);
	uint64_t h = shm_caps_hash(m.t, "tune", 4);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		alarm(30);
		_exit(shm_caps_verified(m.t, 1, 0, VER, &h, 1, 1000, IDLE, &idx,
					&gen) == 0 ? 0 : 1);
	}
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	cr_assert_eq(shm_caps_lookup(m.t, 1, 0, VER, &idx, &gen),
		     IPC_CAPS_VERIFIED);
	cr_assert_eq(shm_caps_wants(m.t, idx, (uint16_t)gen, h), 1);
	cmap_close(&m);
}

/* A full window of held entries (sessions use them) evicts the least
 * recently used idle one, never a PENDING one nor one used within
 * caps.idle_timeout. */
Test(capstable, eviction)
{
	struct cmap m;
	uint32_t idx, gen;
	char ver[32];
	cmap_open(&m, 16);      /* one window: every key competes */
	for (int i = 0; i < 16; i++) {
		snprintf(ver, sizeof(ver), "v%d=", i);
		cr_assert_eq(shm_caps_verified(m.t, 1, 0, ver, NULL, 0,
					       1000 + i, IDLE, &idx, &gen), 0);
		cr_assert_eq(shm_caps_ref(m.t, idx, (uint16_t)gen, 1000 + i),
			     1);
	}
	int64_t day = IDLE;
	/* all used within a day: refused */
	cr_assert_eq(shm_caps_begin(m.t, 1, 0, "new=", 1000 + day - 1, 30000,
				    IDLE, &idx, &gen), SHM_CAPS_FULL);
	/* v1.. used again later; v0 is the LRU and idle */
	for (int i = 1; i < 16; i++) {
		uint32_t ix, g;
		snprintf(ver, sizeof(ver), "v%d=", i);
		cr_assert_eq(shm_caps_lookup(m.t, 1, 0, ver, &ix, &g),
			     IPC_CAPS_VERIFIED);
		cr_assert_eq(shm_caps_touch(m.t, ix, (uint16_t)g, 5000), 1);
	}
	uint32_t v0idx, v0gen;
	cr_assert_eq(shm_caps_lookup(m.t, 1, 0, "v0=", &v0idx, &v0gen),
		     IPC_CAPS_VERIFIED);
	uint64_t ev = shm_caps_evictions(m.t);
	cr_assert_eq(shm_caps_begin(m.t, 1, 0, "new=", 1001 + day, 30000, IDLE,
				    &idx, &gen), SHM_CAPS_ASK);
	cr_assert_eq(idx, v0idx);
	cr_assert_neq(gen, v0gen);
	cr_assert_eq(shm_caps_evictions(m.t), ev + 1);
	cr_assert_eq(shm_caps_lookup(m.t, 1, 0, "v0=", &idx, &gen),
		     IPC_CAPS_FREE);
	struct shm_caps_usage u;
	shm_caps_usage(m.t, &u);
	cr_assert_eq(u.used, 16);
	cmap_close(&m);
}

/* A writer killed while holding the lock wedges no one, and the record
 * it was writing (odd seq) is freed, not read half-written. */
Test(capstable, dead_lock_holder)
{
	struct cmap m;
	struct ipc_caps_table *hdr;
	uint32_t idx, gen;

	cmap_open(&m, 64);
	hdr = m.mem;
	uint64_t h = shm_caps_hash(m.t, "tune", 4);
	cr_assert_eq(shm_caps_verified(m.t, 1, 0, VER, &h, 1, 1000, IDLE, &idx,
				       &gen), 0);
	struct ipc_caps_rec *rec = (struct ipc_caps_rec *)(hdr + 1) + idx;
	shm_test_die_holding(&hdr->lock, &rec->seq);    /* mid-write */
	/* lock-free readers do not take a record mid-write */
	cr_assert_eq(shm_caps_wants(m.t, idx, (uint16_t)gen, h), 0);
	/* the next writer recovers the lock and frees that record */
	uint32_t i2, g2;
	cr_assert_eq(shm_caps_begin(m.t, 1, 0, "other=", 2000, 30000, IDLE, &i2,
				    &g2), SHM_CAPS_ASK);
	struct shm_caps_usage u;
	shm_caps_usage(m.t, &u);
	cr_assert_eq(u.recoveries, 1);
	cr_assert_eq(u.used, 1);
	cr_assert_eq(shm_caps_lookup(m.t, 1, 0, VER, &i2, &g2), IPC_CAPS_FREE);
	/* and the ver is asked again */
	cr_assert_eq(shm_caps_begin(m.t, 1, 0, VER, 2000, 30000, IDLE,
				    &i2, &g2),
		     SHM_CAPS_ASK);
	cmap_close(&m);
}

/* Made-up vers nobody answers do not fill the table for good: a PENDING
 * entry whose query timed out, and an INVALID one, are taken for a new
 * ver (no eviction counted: nobody was using them). */
Test(capstable, stale_pending_and_invalid_reclaimed)
{
	struct cmap m;
	uint32_t idx, gen, iidx, igen;
	char ver[32];
	cmap_open(&m, 16);      /* one window: every key competes */
	for (int i = 0; i < 16; i++) {
		snprintf(ver, sizeof(ver), "fake%d=", i);
		cr_assert_eq(shm_caps_begin(m.t, 1, 0, ver, 1000 + i, 30000,
					    IDLE, &idx, &gen), SHM_CAPS_ASK);
	}
	cr_assert_eq(shm_caps_begin(m.t, 1, 0, "real=", 1000 + 29999, 30000,
				    IDLE, &idx, &gen), SHM_CAPS_FULL);
	/* fake0's query timed out: its slot is taken */
	cr_assert_eq(shm_caps_lookup(m.t, 1, 0, "fake0=", &iidx, &igen),
		     IPC_CAPS_PENDING);
	cr_assert_eq(shm_caps_begin(m.t, 1, 0, "real=", 1000 + 30000, 30000,
				    IDLE, &idx, &gen), SHM_CAPS_ASK);
	cr_assert_eq(idx, iidx);
	cr_assert_neq(gen, igen);
	cr_assert_eq(shm_caps_lookup(m.t, 1, 0, "fake0=", &iidx, &igen),
		     IPC_CAPS_FREE);
	cr_assert_eq(shm_caps_evictions(m.t), 0);
	/* an INVALID one is taken at once */
	cr_assert_eq(shm_caps_invalid(m.t, 1, 0, "fake9=", 1000 + 30000), 0);
	cr_assert_eq(shm_caps_begin(m.t, 1, 0, "real2=", 1000 + 30000,
				    30000, IDLE, &idx, &gen), SHM_CAPS_ASK);
	cr_assert_eq(shm_caps_lookup(m.t, 1, 0, "fake9=", &iidx, &igen),
		     IPC_CAPS_FREE);
	struct shm_caps_usage u;
	shm_caps_usage(m.t, &u);
	cr_assert_eq(u.used, 16);
	cmap_close(&m);
}

/* A session's own PENDING entry is freed when it gives it up; anything
 * else (answered, reused) is left alone. */
Test(capstable, abandon_own_pending)
{
	struct cmap m;
	uint32_t idx, gen, i2, g2;
	cmap_open(&m, 64);
	cr_assert_eq(shm_caps_begin(m.t, 1, 0, VER, 1000, 30000, IDLE,
				    &idx, &gen),
		     SHM_CAPS_ASK);
	cr_assert_eq(shm_caps_abandon(m.t, idx, gen + 1), 0);
	cr_assert_eq(shm_caps_abandon(m.t, idx, gen), 1);
	cr_assert_eq(shm_caps_lookup(m.t, 1, 0, VER, &i2, &g2),
		     IPC_CAPS_FREE);
	cr_assert_eq(shm_caps_abandon(m.t, idx, gen), 0);
	/* the next client with the ver is asked at once */
	cr_assert_eq(shm_caps_begin(m.t, 1, 0, VER, 1001, 30000, IDLE,
				    &idx, &gen),
		     SHM_CAPS_ASK);
	cr_assert_eq(shm_caps_verified(m.t, 1, 0, VER, NULL, 0, 1002, IDLE, &i2,
				       &g2), 0);
	cr_assert_eq(shm_caps_abandon(m.t, i2, g2), 0);
	cr_assert_eq(shm_caps_lookup(m.t, 1, 0, VER, &i2, &g2),
		     IPC_CAPS_VERIFIED);
	struct shm_caps_usage u;
	shm_caps_usage(m.t, &u);
	cr_assert_eq(u.used, 1);
	cmap_close(&m);
}

/* Touch answers whether the entry is still the session's: 0 once it was
 * evicted (the worker then resolves the ver again). */
Test(capstable, touch_tells_evicted)
{
	struct cmap m;
	uint32_t idx, gen, i2, g2;
	char ver[32];
	cmap_open(&m, 16);
	cr_assert_eq(shm_caps_verified(m.t, 1, 0, "old=", NULL, 0, 1000, IDLE,
				       &idx, &gen), 0);
	cr_assert_eq(shm_caps_ref(m.t, idx, (uint16_t)gen, 1000), 1);
	cr_assert_eq(shm_caps_touch(m.t, idx, (uint16_t)gen, 2000), 1);
	cr_assert_eq(shm_caps_touch(m.t, idx, (uint16_t)(gen + 1), 2000), 0);
	for (int i = 1; i < 16; i++) {
		snprintf(ver, sizeof(ver), "v%d=", i);
		cr_assert_eq(shm_caps_verified(m.t, 1, 0, ver, NULL, 0,
					       3000, IDLE, &i2, &g2), 0);
		cr_assert_eq(shm_caps_ref(m.t, i2, (uint16_t)g2, 3000), 1);
	}
	int64_t day = IDLE;
	/* touched later than the others: a day after the others' use it
	 * is not the LRU... */
	cr_assert_eq(shm_caps_touch(m.t, idx, (uint16_t)gen, 4000), 1);
	cr_assert_eq(shm_caps_begin(m.t, 1, 0, "new=", 3001 + day, 30000, IDLE,
				    &i2, &g2), SHM_CAPS_ASK);
	cr_assert_neq(i2, idx);
	cr_assert_eq(shm_caps_touch(m.t, idx, (uint16_t)gen, 5000), 1);
	/* ...but once evicted, touch says so (15 held entries for the 15
	 * idle held ones; new= is PENDING) */
	for (int i = 0; i < 15; i++) {
		snprintf(ver, sizeof(ver), "n%d=", i);
		cr_assert_eq(shm_caps_verified(m.t, 1, 0, ver, NULL, 0,
					       10 * day, IDLE, &i2, &g2), 0);
		cr_assert_eq(shm_caps_ref(m.t, i2, (uint16_t)g2, 10 * day), 1);
	}
	cr_assert_eq(shm_caps_touch(m.t, idx, (uint16_t)gen, 10 * day), 0);
	cmap_close(&m);
}

/* Review F1: entries no session holds go first, at once (LRU among
 * them), before any held one; a held entry let go becomes evictable; a
 * ref on a gone entry fails; refs never go below 0. */
Test(capstable, unreferenced_evicted_first)
{
	struct cmap m;
	uint32_t idx[16], gen[16], i2, g2;
	char ver[32];
	cmap_open(&m, 16);
	for (int i = 0; i < 16; i++) {
		snprintf(ver, sizeof(ver), "v%d=", i);
		cr_assert_eq(shm_caps_verified(m.t, 1, 0, ver, NULL, 0,
					       1000 + i, IDLE, &idx[i],
					       &gen[i]), 0);
		if (i != 3 && i != 7)
			cr_assert_eq(shm_caps_ref(m.t, idx[i],
						  (uint16_t)gen[i], 1000), 1);
	}
	/* v3 and v7 unheld: v3 (older) first, long before IDLE */
	cr_assert_eq(shm_caps_touch(m.t, idx[3], (uint16_t)gen[3], 1500), 1);
	cr_assert_eq(shm_caps_begin(m.t, 1, 0, "a=", 2000, 30000, IDLE, &i2,
				    &g2), SHM_CAPS_ASK);
	cr_assert_eq(i2, idx[7]);
	cr_assert_eq(shm_caps_verified(m.t, 1, 0, "b=", NULL, 0, 2001, IDLE,
				       &i2, &g2), 0);
	cr_assert_eq(i2, idx[3]);
	/* a ref on the evicted v3 fails and holds nothing */
	cr_assert_eq(shm_caps_ref(m.t, idx[3], (uint16_t)gen[3], 2002), 0);
	/* all held (b= too) or PENDING (a=): refused */
	cr_assert_eq(shm_caps_ref(m.t, i2, (uint16_t)g2, 2002), 1);
	cr_assert_eq(shm_caps_begin(m.t, 1, 0, "c=", 2003, 30000, IDLE, &i2,
				    &g2), SHM_CAPS_FULL);
	/* v5's holder goes (twice: the second unref changes nothing) */
	shm_caps_unref(m.t, idx[5], (uint16_t)gen[5]);
	shm_caps_unref(m.t, idx[5], (uint16_t)gen[5]);
	cr_assert_eq(shm_caps_begin(m.t, 1, 0, "c=", 2004, 30000, IDLE, &i2,
				    &g2), SHM_CAPS_ASK);
	cr_assert_eq(i2, idx[5]);
	/* the new entry in v5's slot: once verified, held, then let go, the
	 * next new ver takes it, not a held one */
	cr_assert_eq(shm_caps_verified(m.t, 1, 0, "c=", NULL, 0, 2005, IDLE,
				       &i2, &g2), 0);
	uint32_t ci = i2, cg = g2;
	/* the holders of v5 had gone: an unref of that old entry does not
	 * touch c= (c= held now) */
	cr_assert_eq(shm_caps_ref(m.t, ci, (uint16_t)cg, 2005), 1);
	shm_caps_unref(m.t, idx[5], (uint16_t)gen[5]);
	cr_assert_eq(shm_caps_begin(m.t, 1, 0, "d=", 2006, 30000, IDLE, &i2,
				    &g2), SHM_CAPS_FULL);
	shm_caps_unref(m.t, ci, (uint16_t)cg);
	cr_assert_eq(shm_caps_verified(m.t, 1, 0, "d=", NULL, 0, 2006, IDLE,
				       &i2, &g2), 0);
	cr_assert_eq(i2, idx[5]);
	cr_assert_eq(shm_caps_lookup(m.t, 1, 0, "c=", &i2, &g2),
		     IPC_CAPS_FREE);
	cmap_close(&m);
}

/* Review F11: the caps word of a session record is written only while
 * the writer owns the record; after a take-over (bind conflict on
 * another worker: the record is re-filled for the new owner) the old
 * owner's write is dropped, the new owner's lands, and 0, 0 clears. */
Test(capstable, session_caps_word_owner_only)
{
	const char *error = NULL;
	struct session_info in, out;
	size_t size = shm_session_size(16);
	void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(mem, MAP_FAILED);
	cr_assert_eq(shm_session_init(mem, size, 16, &error), 0, "%s", error);
	struct shm_table *t = shm_session_attach(mem, &error);
	cr_assert_not_null(t, "%s", error);
	memset(&in, 0, sizeof(in));
	snprintf(in.jid, sizeof(in.jid), "juliet@localhost/balcony");
	in.slot = 0;
	in.conn_id = 7;
	in.gen = 1;
	in.available = 1;
	cr_assert_eq(shm_session_put(t, &in, NULL, &error), 0, "%s", error);
	cr_assert_eq(shm_session_get(t, in.jid, &out), 1);
	int32_t index = out.index;
	shm_session_set_caps(t, index, 0, 7, 1, 5, 9);
	cr_assert_eq(shm_session_get(t, in.jid, &out), 1);
	cr_assert_eq(out.caps_idx, 5);
	cr_assert_eq(out.caps_gen, 9);
	/* taken over by worker 1 (no caps yet) */
	in.slot = 1;
	in.conn_id = 3;
	in.gen = 1;
	cr_assert_eq(shm_session_put(t, &in, NULL, &error), 1, "%s", error);
	cr_assert_eq(shm_session_get(t, in.jid, &out), 1);
	cr_assert_eq(out.caps_idx, 0);
	/* the old owner's write (it has not seen the take-over yet) */
	shm_session_set_caps(t, out.index, 0, 7, 1, 6, 10);
	shm_session_set_caps(t, index, 0, 7, 1, 6, 10);
	cr_assert_eq(shm_session_get(t, in.jid, &out), 1);
	cr_assert_eq(out.caps_idx, 0);
	shm_session_set_caps(t, out.index, 1, 3, 1, 2, 4);
	cr_assert_eq(shm_session_get(t, in.jid, &out), 1);
	cr_assert_eq(out.caps_idx, 2);
	cr_assert_eq(out.caps_gen, 4);
	shm_session_set_caps(t, out.index, 1, 3, 1, 0, 0);
	cr_assert_eq(shm_session_get(t, in.jid, &out), 1);
	cr_assert_eq(out.caps_idx, 0);
	cr_assert_eq(out.caps_gen, 0);
	shm_session_detach(&t);
	munmap(mem, size);
}

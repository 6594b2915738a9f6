/*
 * reap.c - SIGCHLD handling: wait4 until nothing is left, log how each
 * worker ended, sweep its session-table entries, and schedule a respawn
 * into the same slot.  Crash loops are slowed: a worker that dies within
 * 10 s of its start without having accepted a connection doubles the
 * slot's delay (2 s .. 60 s, Dovecot); exit code 2 means "do not
 * respawn" (nginx).  Any other death is respawned at once.  The
 * session-table entries of resumable XEP-0198 sessions stay (no
 * unavailable presence for them) when the slot will be respawned: the
 * new worker adopts them from the journal (smstore.h).
 * The cluster bridge's slot (after the workers) is respawned the same
 * way but never swept: the session entries it stands for are other
 * nodes' sessions, still true while its successor starts, and it owns
 * no connections.
 */
#include "master.h"
#include "log.h"
#include "addr.h"
#include "session.h"
#include "smstore.h"
#include "util.h"
#include "frame.h"

#include <sys/socket.h>

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>

#define REAP_FAST_DEATH_MS 10000
#define REAP_DELAY_MIN_MS 2000
#define REAP_DELAY_MAX_MS 60000

static int reap_find_slot(const struct master *m, pid_t pid)
{
	for (unsigned i = 0; i < m->nslots; i++)
		if (m->slots[i].pid == pid)
			return (int)i;
	return -1;
}

int master_is_bridge(const struct master *m, unsigned slot)
{
	return slot >= m->nworkers && slot < m->nslots;
}

const char *master_slot_name(const struct master *m, unsigned slot)
{
	static char name[32];
	if (master_is_bridge(m, slot))
		return "the cluster bridge";
	snprintf(name, sizeof(name), "worker %u", slot);
	return name;
}

static void reap_log(const struct master *m, unsigned slot, pid_t pid,
		     int status)
{
	const char *who = master_slot_name(m, slot);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		log_info("%s (pid %d) exited", who, (int)pid);
	else if (WIFEXITED(status))
		log_error("%s (pid %d) exited with status %d", who,
			  (int)pid, WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		log_error("%s (pid %d) killed by signal %d (%s)%s",
			  who, (int)pid, WTERMSIG(status),
			  strsignal(WTERMSIG(status)),
			  WCOREDUMP(status) ? ", core dumped" : "");
}

static void reap_schedule(struct master *m, unsigned slot, int status,
			  uint64_t accepted)
{
	struct master_slot *s = &m->slots[slot];
	int64_t now = time_now_ms();
	int fast = now - s->spawned_ms < REAP_FAST_DEATH_MS && accepted == 0;

	if (fast) {
		s->delay_ms = s->delay_ms ? s->delay_ms * 2 : REAP_DELAY_MIN_MS;
		if (s->delay_ms > REAP_DELAY_MAX_MS)
			s->delay_ms = REAP_DELAY_MAX_MS;
		log_warn("%s is dying at start: respawn in %lld ms",
			 master_slot_name(m, slot), (long long)s->delay_ms);
	} else {
		s->delay_ms = 0;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		s->delay_ms = 0;
	s->respawn_at_ms = now + s->delay_ms;
}

struct reap_sweep {
	struct master *m;
	unsigned dead;
	int target;             /* slot that broadcasts the unavailable */
	unsigned sent;
	unsigned kept;          /* resumable sessions left for the respawn */
};

/* Under the session table's lock: smstore_keeps reads only the journal. */
static int reap_keep(const struct session_info *info, void *ctx)
{
	struct reap_sweep *rs = ctx;

	if (!smstore_keeps(rs->m->shm.smstore, rs->dead, info->conn_id,
			   info->gen))
		return 0;
	rs->kept++;
	return 1;
}

/* A live worker slot to do the dead one's last broadcasts, or the dead
 * slot itself (its queue outlives it; the respawn reads it).  Never the
 * cluster bridge: it runs no presence code. */
static int reap_pick_target(const struct master *m, unsigned dead)
{
	for (unsigned i = 1; i <= m->nworkers; i++) {
		unsigned s = (dead + i) % m->nworkers;
		if (m->slots[s].pid > 0)
			return (int)s;
	}
	return (int)dead;
}

/* DESIGN.md: the master asks a live worker to send unavailable presence
 * on behalf of each swept session that was available. */
static void reap_swept(const struct session_info *info, void *ctx)
{
	struct reap_sweep *rs = ctx;
	struct frame_writer fw;
	struct buf out;
	const char *error;
	if (!info->available)
		return;
	buf_init(&out, IPC_DGRAM_MAX);
	frame_begin(&fw, &out, IPC_FRAME_SWEPT, (uint16_t)rs->dead, 0, 0);
	frame_add_raw(&fw, info->jid, strlen(info->jid));
	if (frame_finish(&fw, &error) < 0 ||
	    send(rs->m->queues.fds[rs->target].send, buf_head(&out),
		 buf_used(&out), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		log_error("unavailable for %s not sent to w%d", info->jid,
			  rs->target);
	else
		rs->sent++;
	buf_free(&out);
}

/* A dead worker's sessions and address counts (not the bridge's: see
 * the header). */
static void reap_sweep_worker(struct master *m, unsigned slot, int status)
{
	struct reap_sweep rs = { m, slot, reap_pick_target(m, slot), 0, 0 };
	/* Kept only for a respawn that will adopt them. */
	int respawn = !m->stopping && m->shm.smstore != NULL &&
		      !(WIFEXITED(status) && WEXITSTATUS(status) == 2);
	/* Stopping: every contact is being disconnected, broadcast nothing
	 * (a worker that missed shutdown_timeout can leave many rows). */
	int swept = shm_session_sweep_slot_keep(m->shm.sessions,
						(uint16_t)slot,
						respawn ? reap_keep : NULL,
						m->stopping ? NULL : reap_swept,
						&rs);
	if (swept > 0)
		log_info("worker %u: swept %d sessions, w%d broadcasts %u "
			 "unavailable", slot, swept, rs.target, rs.sent);
	if (rs.kept > 0)
		log_info("worker %u: kept %u resumable sessions for its "
			 "respawn", slot, rs.kept);
	/* Its connections are gone: they no longer count per address. */
	shm_addr_sweep_slot(m->shm.addrs, (uint16_t)slot);
}

static void reap_one(struct master *m, pid_t pid, int status,
		     const struct rusage *ru)
{
	int slot = reap_find_slot(m, pid);
	if (slot < 0)
		return;
	struct ipc_worker_stats *st = shm_worker_stats(&m->shm, (unsigned)slot);
	uint64_t accepted = st->accepted;
	reap_log(m, (unsigned)slot, pid, status);
	m->slots[slot].pid = 0;
	/* The dead worker's CPU joins the slot's before pid is cleared: a
	 * reader (shm/metrics.c) loads cpu_reaped_us before it reads
	 * /proc/PID, which is gone since wait4, so it never counts the
	 * same CPU twice, and one that sees pid 0 sees the new sum. */
	uint64_t cpu_us = (uint64_t)ru->ru_utime.tv_sec * 1000000u +
			  (uint64_t)ru->ru_utime.tv_usec +
			  (uint64_t)ru->ru_stime.tv_sec * 1000000u +
			  (uint64_t)ru->ru_stime.tv_usec;
	METRIC_ADD(st->cpu_reaped_us, cpu_us);
	atomic_thread_fence(memory_order_release);
	st->pid = 0;
	metrics_reset_gauges(st);
	if (!master_is_bridge(m, (unsigned)slot))
		reap_sweep_worker(m, (unsigned)slot, status);
	if (m->stopping)
		return;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 2) {
		log_error("%s asked not to be respawned",
			  master_slot_name(m, (unsigned)slot));
		return;
	}
	reap_schedule(m, (unsigned)slot, status, accepted);
}

void master_reap(struct master *m)
{
	int status;
	pid_t pid;
	struct rusage ru;
	while ((pid = wait4(-1, &status, WNOHANG, &ru)) > 0)
		reap_one(m, pid, status, &ru);
}

void master_respawn_due(struct master *m, int64_t now_ms)
{
	for (unsigned i = 0; i < m->nslots; i++) {
		struct master_slot *s = &m->slots[i];
		if (s->pid != 0 || s->respawn_at_ms == 0 ||
		    now_ms < s->respawn_at_ms)
			continue;
		s->restarts++;
		if (master_spawn_worker(m, i) == 0)
			log_info("%s respawned (restart %u)",
				 master_slot_name(m, i), s->restarts);
	}
}

int64_t master_next_respawn(const struct master *m)
{
	int64_t next = 0;
	for (unsigned i = 0; i < m->nslots; i++) {
		int64_t t = m->slots[i].respawn_at_ms;
		if (m->slots[i].pid == 0 && t > 0 && (next == 0 || t < next))
			next = t;
	}
	return next;
}

unsigned master_live_workers(const struct master *m)
{
	unsigned n = 0;
	for (unsigned i = 0; i < m->nslots; i++)
		if (m->slots[i].pid > 0)
			n++;
	return n;
}

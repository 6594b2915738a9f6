/*
 * spawn.c - forks a worker into a slot and talks to it over the slot's
 * SOCK_SEQPACKET channel.  A respawn reuses the slot's listening sockets,
 * queue and channel, so nothing pending is lost (nginx's same-slot rule).
 * Failure policy: a failed fork is logged and retried by the reaper's
 * back-off; a full channel drops the command with a log line.
 */
#include "master.h"
#include "log.h"
#include "util.h"
#include "../worker/worker.h"
#include "../cluster/cluster.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Commands sent while the slot was empty are stale for the new worker. */
static void drain_worker_channel(int fd)
{
	char buf[256];
	fd_set_nonblock(fd);
	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

static void child_close_inherited(struct master *m, unsigned slot)
{
	master_control_close_child(m);
	close(m->dead_pipe[1]);
	for (unsigned i = 0; i < m->nslots; i++) {
		close(m->slots[i].channel);
		if (i != slot)
			close(m->slots[i].worker_channel);
	}
	master_listen_close_others(m, slot);
	queue_set_child(&m->queues, slot);
}

static _Noreturn void child_run(struct master *m, unsigned slot)
{
	static struct worker_boot boot;
	master_signal_block_in_child();
	child_close_inherited(m, slot);
	boot.slot = slot;
	boot.nslots = m->nslots;
	boot.nworkers = m->nworkers;
	boot.cfg = m->cfg;
	boot.shm = &m->shm;
	boot.queues = &m->queues;
	boot.channel = m->slots[slot].worker_channel;
	boot.dead_fd = m->dead_pipe[0];
	for (unsigned i = 0; i < m->nlisteners && i < WORKER_MAX_LISTEN &&
	     slot < m->nworkers; i++) {
		boot.listen_fds[boot.nlisten] = m->listeners[i].fds[slot];
		boot.listen_tls[boot.nlisten] = m->listeners[i].direct_tls;
		boot.listen_kind[boot.nlisten] = m->listeners[i].kind;
		boot.nlisten++;
	}
#ifdef HAVE_NATS
	/* no listening sockets (master_listen_close_others closed them
	 * all: none is the bridge's) */
	if (master_is_bridge(m, slot)) {
		boot.nlisten = 0;
		cluster_bridge_main(&boot);
	}
#endif
	worker_main(&boot);
}

int master_spawn_worker(struct master *m, unsigned slot)
{
	struct master_slot *s = &m->slots[slot];
	struct ipc_worker_stats *st = shm_worker_stats(&m->shm, slot);
	drain_worker_channel(s->worker_channel);
	/* Before the fork: the worker's connection generation is restarts
	 * + 1, and it must differ from its predecessor's (XEP-0198
	 * sessions adopted after a crash keep their old conn id/gen). */
	st->restarts = s->restarts;
	pid_t pid = fork();
	if (pid < 0) {
		log_error("fork() for %s failed: %m", master_slot_name(m, slot));
		s->respawn_at_ms = time_now_ms() + 1000;
		return -1;
	}
	if (pid == 0)
		child_run(m, slot);
	s->pid = pid;
	s->spawned_ms = time_now_ms();
	s->respawn_at_ms = 0;
	st->pid = (int32_t)pid;
	st->spawned_at = time(NULL);
	log_debug("%s started, pid %d", master_slot_name(m, slot), (int)pid);
	return 0;
}

int master_send_cmd(struct master *m, unsigned slot, uint32_t type,
		    const void *payload, size_t len)
{
	struct master_slot *s = &m->slots[slot];
	struct ipc_cmd cmd = {
		.version = IPC_VERSION, .type = type,
		.generation = m->generation, .len = (uint32_t)len,
	};
	char msg[sizeof(cmd) + IPC_CMD_PAYLOAD_MAX];

	if (s->pid <= 0)
		return -1;
	if (len > IPC_CMD_PAYLOAD_MAX) {
		log_error("command %u for worker %u too large (%zu bytes)",
			  type, slot, len);
		return -1;
	}
	memcpy(msg, &cmd, sizeof(cmd));
	if (len > 0)
		memcpy(msg + sizeof(cmd), payload, len);
	if (send(s->channel, msg, sizeof(cmd) + len, MSG_DONTWAIT |
		 MSG_NOSIGNAL) < 0) {
		log_error("send(command %u) to worker %u failed: %m", type,
			  slot);
		return -1;
	}
	return 0;
}

void master_broadcast_cmd(struct master *m, uint32_t type,
			  const void *payload, size_t len)
{
	for (unsigned i = 0; i < m->nslots; i++)
		master_send_cmd(m, i, type, payload, len);
}

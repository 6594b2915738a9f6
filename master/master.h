/*
 * master.h - the supervising process: configuration, listeners, shared
 * memory, queues, control socket, worker slots.  The master never reads
 * client bytes and never talks to PostgreSQL.  Failure policy: anything
 * wrong before the workers are forked is fatal with a one-line reason;
 * afterwards the master logs and keeps supervising.
 */
#ifndef XMPPD_MASTER_H
#define XMPPD_MASTER_H

#include <signal.h>
#include <stdint.h>
#include <sys/types.h>
#include "buf.h"
#include "config.h"
#include "ipc.h"
#include "queue.h"
#include "shm.h"
#include "metrics.h"

#define MASTER_MAX_LISTENERS 16
#define MASTER_MAX_OVERRIDES 64
#define MASTER_CONTROL_CLIENTS 16

struct listener {
	int family;             /* AF_INET or AF_INET6 */
	char address[64];
	unsigned port;
	int direct_tls;         /* XEP-0368 port, or HTTPS */
	int kind;               /* enum listen_kind (worker/worker.h) */
	int fds[IPC_MAX_SLOTS]; /* one SO_REUSEPORT socket per slot */
};

struct master_slot {
	pid_t pid;              /* 0: not running */
	int channel;            /* master end of the SOCK_SEQPACKET pair */
	int worker_channel;     /* worker end, kept for respawns */
	int64_t spawned_ms;     /* monotonic time of the last fork */
	int64_t respawn_at_ms;  /* 0: no respawn pending */
	int64_t delay_ms;       /* current crash back-off */
	unsigned restarts;
};

struct control_client {
	int fd;                 /* -1: unused */
	int handshaken;         /* VERSION line received */
	int priv;               /* root or the daemon user (SO_PEERCRED) */
	int64_t last_ms;        /* accepted or last line read */
	char in[8192];          /* a kick line holds a JID and a text */
	size_t in_len;
	struct buf out;         /* answers not yet written: while any are
				   left, the client's next lines wait */
};

struct master {
	struct config *cfg;
	const char *config_path;
	const char *overrides[MASTER_MAX_OVERRIDES];
	unsigned noverrides;
	uint64_t generation;
	int foreground;
	int64_t started;        /* unix time */

	unsigned nworkers;      /* worker slots 0 .. nworkers-1 */
	unsigned nslots;        /* nworkers, + 1 (the cluster bridge, slot
				   nworkers) when the cluster is on */
	struct master_slot slots[IPC_MAX_SLOTS];
	struct listener listeners[MASTER_MAX_LISTENERS];
	unsigned nlisteners;
	struct shm_region shm;
	struct queue_set queues;
	int dead_pipe[2];       /* workers watch [0]; EOF means master died */

	int control_fd;
	char control_path[256];
	struct control_client clients[MASTER_CONTROL_CLIENTS];

	int stopping;           /* SIGTERM seen: waiting for workers */
	int64_t stop_deadline_ms;
	int64_t kill_delay_ms;  /* escalation step while stopping */
	int pid_file_written;
	int64_t watchdog_ms;    /* WATCHDOG=1 every (0: no watchdog) */
	int64_t watchdog_next;  /* CLOCK_MONOTONIC ms of the next one */
};

/* signal.c */
extern volatile sig_atomic_t master_sig_chld, master_sig_term,
	master_sig_hup, master_sig_usr1;
int master_signal_init(int *wake_fd_r, const char **error_r);
void master_signal_drain(void);
void master_signal_block_in_child(void);

/* listen.c */
int master_listen_all(struct master *m, const char **error_r);
void master_listen_close_others(struct master *m, unsigned keep_slot);

/* spawn.c */
int master_spawn_worker(struct master *m, unsigned slot);
/* 0 sent, -1 (slot empty, too large, or the channel refused: logged) */
int master_send_cmd(struct master *m, unsigned slot, uint32_t type,
		    const void *payload, size_t len);
void master_broadcast_cmd(struct master *m, uint32_t type,
			  const void *payload, size_t len);

/* reap.c */
void master_reap(struct master *m);
void master_respawn_due(struct master *m, int64_t now_ms);
int64_t master_next_respawn(const struct master *m);
unsigned master_live_workers(const struct master *m);
/* Slot i is the cluster bridge (not a worker). */
int master_is_bridge(const struct master *m, unsigned slot);
/* "worker 3" or "the cluster bridge", for log lines. */
const char *master_slot_name(const struct master *m, unsigned slot);

/* reload.c: 0 on success; *report_r is a malloc'd multi-line report */
int master_reload(struct master *m, char **report_r);
/* The XEP-0198 journal's per-session bounds from the current config,
 * into the shared area (at start and at each reload). */
void master_sm_limits(struct master *m);
int master_load_config(const char *path, const char *const *overrides,
		       unsigned n, struct config **cfg_r,
		       const char **error_r);

/* control.c */
int master_control_open(struct master *m, const char **error_r);
void master_control_close(struct master *m);
void master_control_close_child(struct master *m);
int master_control_pollfds(struct master *m, void *pfds, unsigned max);
void master_control_handle(struct master *m, int fd, short revents);
/* Once a second or so: end sessions bound after a `kick ... watch`. */
void master_control_tick(struct master *m, int64_t now_ms);

/* cluster.c: the `cluster` control line's answer (docs/CONTROL.md) */
void master_cluster_status(struct master *m, struct buf *out);

/* daemon.c */
/* Where a daemonized server logs when log_file is empty. */
#ifndef LOCALSTATEDIR
#define LOCALSTATEDIR "/var"
#endif
#define MASTER_DAEMON_LOG_FILE LOCALSTATEDIR "/log/xmppd/xmppd.log"
/* Daemonized with an empty log_file, log to MASTER_DAEMON_LOG_FILE
 * instead of the terminal that started us (cfg is changed). */
int master_log_default(struct config *cfg, int foreground,
		       const char **error_r);
int master_daemonize(const char **error_r);
/* Set up: the process that started us exits 0 (no-op with -f). */
void master_daemon_ready(void);
int master_pid_file_check(const char *path, const char **error_r);
int master_pid_file_write(const char *path, const char **error_r);
void master_pid_file_remove(struct master *m);
int master_drop_privileges(const struct config *cfg, const char **error_r);
void master_notify_systemd(const char *state);
/* Half of systemd's WatchdogSec (WATCHDOG_USEC, for this pid when
 * WATCHDOG_PID is set) in ms; 0 when there is no watchdog. */
int64_t master_watchdog_interval(void);

#endif

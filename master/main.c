/*
 * main.c - xmppd's entry point and the master's supervision loop.
 *
 * Start-up: parse arguments and the config, bind, create the shared
 * memory and queues, daemonize, drop privileges, fork the workers.  The
 * loop then only supervises (STYLE.md section 3): it waits, then handles
 * flags in a fixed order: reap, terminate, reload, reopen, control.
 * Failure policy: start-up errors exit 1 with one line on stderr.
 */
#include "master.h"
#include "log.h"
#include "util.h"
#include "../worker/worker.h"
#include "../worker/dialback.h"
#include "../db/db.h"
#include "secret.h"

#include <sodium.h>
#include "../shm/cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

static void usage(FILE *out)
{
	fprintf(out,
		"usage: xmppd [-f] [-t] [-c FILE] [-o key=value]...\n"
		"       xmppd --example | --man | --version\n"
		"  -f            stay in the foreground; without it, an empty\n"
		"                log_file means %s\n"
		"  -t            check the configuration and exit\n"
		"  -c FILE       configuration (default %s/xmppd/xmppd.conf)\n"
		"  -o key=value  override one setting for this run\n"
		"  --example     print the documented example configuration\n"
		"  --man         print the xmppd.conf(5) manual page (roff)\n",
		MASTER_DAEMON_LOG_FILE, SYSCONFDIR);
}

struct args {
	int test_only;
	int example;
	int man;
};

static void parse_args(struct master *m, struct args *a, int argc,
		       char **argv)
{
	static const struct option longopts[] = {
		{ "example", no_argument, NULL, 'E' },
		{ "man", no_argument, NULL, 'M' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "ftc:o:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'f': m->foreground = 1; break;
		case 't': a->test_only = 1; break;
		case 'c': m->config_path = optarg; break;
		case 'E': a->example = 1; break;
		case 'M': a->man = 1; break;
		case 'V': printf("xmppd %s\n", PACKAGE_VERSION); exit(0);
		case 'h': usage(stdout); exit(0);
		case 'o':
			if (m->noverrides == MASTER_MAX_OVERRIDES)
				log_fatal("too many -o options");
			m->overrides[m->noverrides++] = optarg;
			break;
		default: usage(stderr); exit(1);
		}
	}
	if (optind != argc) {
		usage(stderr);
		exit(1);
	}
}

/* The worker count; one slot is kept for the cluster bridge. */
static unsigned workers_from_config(const struct config *cfg)
{
	long n = cfg->workers;
	long max = config_cluster_on(cfg) ? IPC_MAX_SLOTS - 1 : IPC_MAX_SLOTS;
	if (n == 0)
		n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	if (n > max)
		n = max;
	return (unsigned)n;
}

static int make_channels(struct master *m, const char **error_r)
{
	if (pipe2(m->dead_pipe, O_CLOEXEC) < 0) {
		*error_r = "pipe() failed";
		return -1;
	}
	for (unsigned i = 0; i < m->nslots; i++) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0,
			       sv) < 0) {
			*error_r = "socketpair(SOCK_SEQPACKET) failed";
			return -1;
		}
		fd_set_nonblock(sv[0]);
		m->slots[i].channel = sv[0];
		m->slots[i].worker_channel = sv[1];
	}
	return 0;
}

/* Refuse to start on a database schema this binary does not know.  A
 * database that cannot be reached is not fatal: workers reconnect, and
 * logins answer temporary-auth-failure until it is back. */
static void master_check_schema(const struct config *cfg)
{
	const char *error;
	int version = 0;
	/* Later keywords override those of the expanded conninfo. */
	const char *const keys[] = { "dbname", "connect_timeout", NULL };
	const char *const values[] = { cfg->db_conninfo, "5", NULL };
	PGconn *conn = PQconnectdbParams(keys, values, 1);
	if (PQstatus(conn) != CONNECTION_OK) {
		log_warn("database not reachable at start (%s): logins get "
			 "temporary-auth-failure until it answers",
			 PQerrorMessage(conn));
		PQfinish(conn);
		return;
	}
	int r = db_schema_check(conn, &version, &error);
	PQfinish(conn);
	if (r == 0)
		log_fatal("the database has no xmppd schema: run "
			  "'xmppctl db migrate' first");
	if (r < 0)
		log_fatal("database schema: %s", error);
}

/* The keys every worker uses for SASL answers to unknown accounts, for
 * server dialback (XEP-0185) and, in a cluster, for XEP-0198 previds
 * (verified on any node): random per start on a single node;
 * in a cluster derived from cluster.secret_file, so that every node
 * makes the same (read as root, before privileges are dropped: the
 * file may be readable by root only). */
static void master_init_secrets(const struct config *cfg)
{
	unsigned char key[SECRET_KEY_BYTES];
	char err[512];
	if (!config_cluster_on(cfg)) {
		sasl_init_secret();
		dialback_init_secret();
		return;
	}
	if (secret_file_load(cfg->cluster_secret_file, key, err,
			     sizeof(err)) < 0)
		log_fatal("cluster.secret_file: %s", err);
	sasl_seed_secret(key);
	dialback_seed_secret(key);
	sm_seed_secret(key);
	secret_cluster_seed(key);   /* the bridge's messages on NATS */
	sodium_memzero(key, sizeof(key));
}

/* Everything that must happen before the workers exist. */
static void master_setup(struct master *m)
{
	const char *error;
	m->nworkers = workers_from_config(m->cfg);
	m->nslots = m->nworkers + (config_cluster_on(m->cfg) ? 1u : 0u);
	if (master_pid_file_check(m->cfg->pid_file, &error) < 0)
		log_fatal("%s", error);
	master_check_schema(m->cfg);
	master_init_secrets(m->cfg);
	if (master_listen_all(m, &error) < 0)
		log_fatal("%s", error);
	/* the change log is the cluster bridge's: no cost without it */
	if (shm_create_log(&m->shm, m->nslots, m->cfg->session_table_size,
			   config_cluster_on(m->cfg) ?
			   m->cfg->cluster_change_log : 0, &error) < 0)
		log_fatal("shared memory: %s", error);
	m->shm.hdr->nworkers = m->nworkers;
	if (config_cluster_on(m->cfg))
		shm_cluster_setup(&m->shm.hdr->cluster, m->cfg->cluster_name,
				  m->cfg->cluster_node, m->nworkers);
	if (shm_create_throttle(&m->shm, m->cfg->sasl_throttle_table_size,
				&error) < 0)
		log_fatal("shared memory: %s", error);
	if (shm_create_caps(&m->shm, m->cfg->caps_table_size, &error) < 0)
		log_fatal("shared memory: %s", error);
	if (shm_create_smstore(&m->shm, m->nworkers,
			       m->cfg->sm_records_per_worker,
			       m->cfg->sm_pool_bytes_per_worker, &error) < 0)
		log_fatal("shared memory: %s", error);
	master_sm_limits(m);
	if (queue_set_create(&m->queues, m->nslots, &error) < 0)
		log_fatal("worker queues: %s", error);
	if (make_channels(m, &error) < 0)
		log_fatal("%s: %m", error);
	if (master_control_open(m, &error) < 0)
		log_fatal("%s", error);
	if (!m->foreground && master_daemonize(&error) < 0)
		log_fatal("%s", error);
	if (master_pid_file_write(m->cfg->pid_file, &error) < 0)
		log_fatal("%s", error);
	m->pid_file_written = 1;
	if (master_drop_privileges(m->cfg, &error) < 0)
		log_fatal("%s", error);
}

static void master_begin_stop(struct master *m)
{
	if (m->stopping)
		return;
	log_info("stopping: closing client streams");
	master_notify_systemd("STOPPING=1");
	m->stopping = 1;
	/* workers close their streams (shutdown_timeout), then wait for
	 * their database writes (shutdown_drain_timeout): a second more
	 * before SIGKILL, so that their own bound comes first */
	m->stop_deadline_ms = time_now_ms() +
		(int64_t)m->cfg->shutdown_timeout +
		(int64_t)m->cfg->shutdown_drain_timeout + 1000;
	master_broadcast_cmd(m, IPC_CMD_QUIT, NULL, 0);
}

/* Past the deadline, SIGKILL what is left; then wait a doubling delay. */
static void master_stop_escalate(struct master *m, int64_t now)
{
	if (now < m->stop_deadline_ms)
		return;
	for (unsigned i = 0; i < m->nslots; i++) {
		if (m->slots[i].pid > 0) {
			log_warn("%s (pid %d) did not stop in time: "
				 "SIGKILL", master_slot_name(m, i),
				 (int)m->slots[i].pid);
			kill(m->slots[i].pid, SIGKILL);
		}
	}
	m->kill_delay_ms = m->kill_delay_ms ? m->kill_delay_ms * 2 : 500;
	m->stop_deadline_ms = now + m->kill_delay_ms;
}

static void master_handle_flags(struct master *m)
{
	if (master_sig_chld) {
		master_sig_chld = 0;
		master_reap(m);
	}
	if (master_sig_term) {
		master_sig_term = 0;
		master_begin_stop(m);
	}
	if (master_sig_hup) {
		master_sig_hup = 0;
		char *report = NULL;
		master_notify_systemd("RELOADING=1");
		master_reload(m, &report);
		master_notify_systemd("READY=1");
		free(report);
	}
	if (master_sig_usr1) {
		master_sig_usr1 = 0;
		if (log_reopen() < 0)
			log_error("reopen(%s) failed: %m", m->cfg->log_file);
		master_broadcast_cmd(m, IPC_CMD_REOPEN_LOG, NULL, 0);
	}
}

static int poll_timeout(const struct master *m, int64_t now)
{
	int64_t next = now + 1000;
	int64_t r = master_next_respawn(m);
	if (r > 0 && r < next)
		next = r;
	if (m->stopping && m->stop_deadline_ms < next)
		next = m->stop_deadline_ms;
	if (m->watchdog_ms > 0 && m->watchdog_next < next)
		next = m->watchdog_next;
	return next <= now ? 0 : (int)(next - now);
}

static void master_loop(struct master *m, int wake_fd)
{
	struct pollfd pfds[2 + MASTER_CONTROL_CLIENTS];
	for (;;) {
		pfds[0] = (struct pollfd){ .fd = wake_fd, .events = POLLIN };
		int n = 1 + master_control_pollfds(m, &pfds[1],
						   ARRAY_SIZE(pfds) - 1);
		int64_t now = time_now_ms();
		int r = poll(pfds, (nfds_t)n, poll_timeout(m, now));
		if (r < 0 && errno != EINTR)
			log_fatal("poll() failed: %m");
		master_signal_drain();
		master_handle_flags(m);
		for (int i = 1; r > 0 && i < n; i++)
			if (pfds[i].revents != 0)
				master_control_handle(m, pfds[i].fd,
						      pfds[i].revents);
		now = time_now_ms();
		/* systemd's watchdog watches the master's own loop: a worker
		 * that hangs or dies is the master's to handle (respawn,
		 * GET /health), not a reason to restart the service */
		if (m->watchdog_ms > 0 && now >= m->watchdog_next) {
			master_notify_systemd("WATCHDOG=1");
			m->watchdog_next = now + m->watchdog_ms;
		}
		if (!m->stopping) {
			master_respawn_due(m, now);
			master_control_tick(m, now);
			continue;
		}
		if (master_live_workers(m) == 0)
			return;
		master_stop_escalate(m, now);
	}
}

static void master_cleanup(struct master *m)
{
	master_control_close(m);
	master_pid_file_remove(m);
	log_info("stopped");
}

int main(int argc, char **argv)
{
	static struct master m;
	struct args a = { 0, 0, 0 };
	const char *error;

	log_init("master");
	m.config_path = SYSCONFDIR "/xmppd/xmppd.conf";
	m.control_fd = -1;
	parse_args(&m, &a, argc, argv);
	if (a.example) {
		config_write_example(stdout);
		return 0;
	}
	if (a.man) {
		config_man_write(stdout);
		return 0;
	}
	if (master_load_config(m.config_path, m.overrides, m.noverrides,
			       &m.cfg, &error) < 0) {
		fprintf(stderr, "xmppd: %s\n", error);
		return 1;
	}
	if (a.test_only) {
		printf("xmppd: configuration %s is valid\n", m.config_path);
		return 0;
	}
	/* a daemon works in /: a reload must read the same file */
	if (m.config_path[0] != '/') {
		char *cwd = getcwd(NULL, 0);
		static char *abs_path;
		if (cwd == NULL || asprintf(&abs_path, "%s/%s", cwd,
					    m.config_path) < 0) {
			fprintf(stderr, "xmppd: %s: cannot make the path "
				"absolute: %s\n", m.config_path, strerror(errno));
			return 1;
		}
		free(cwd);
		m.config_path = abs_path;
	}
	if (master_log_default(m.cfg, m.foreground, &error) < 0)
		log_fatal("%s", error);
	log_set_level((enum log_level)m.cfg->log_level);
	if (log_open(m.cfg->log_file) < 0)
		log_fatal("open(%s) failed: %m (create its directory, or set "
			  "log_file)", m.cfg->log_file);
	m.started = time(NULL);
	m.generation = m.cfg->generation = 1;
	master_setup(&m);

	int wake_fd;
	if (master_signal_init(&wake_fd, &error) < 0)
		log_fatal("%s", error);
	m.shm.hdr->master_pid = (int32_t)getpid();
	m.shm.hdr->master_started = m.started;
	m.shm.hdr->config_gen = m.generation;
	master_daemon_ready();
	for (unsigned i = 0; i < m.nslots; i++)
		master_spawn_worker(&m, i);
	log_info("xmppd %s started: %u workers%s, config %s", PACKAGE_VERSION,
		 m.nworkers, m.nslots > m.nworkers ? " and the cluster bridge" :
		 "", m.config_path);
	master_notify_systemd("READY=1");
	m.watchdog_ms = master_watchdog_interval();
	m.watchdog_next = time_now_ms();
	if (m.watchdog_ms > 0)
		log_info("systemd watchdog: WATCHDOG=1 every %lld ms",
			 (long long)m.watchdog_ms);
	master_loop(&m, wake_fd);
	master_cleanup(&m);
	return 0;
}

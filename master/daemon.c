/*
 * daemon.c - detaching, the pid file, dropping privileges, systemd
 * notification, the daemon's default log file.  Once detached, nothing
 * is written to the terminal that started us: stdin and stdout are
 * /dev/null and stderr is the log file (sanitizer reports and library
 * messages included), unless log_file is "-".  The process started
 * from the terminal waits until the daemon is set up (master_daemon_ready)
 * and exits 0, or prints the daemon's fatal line and exits 1, so that
 * the init script sees a failed start.  Failure policy: every error here
 * is reported to the caller, which treats it as fatal at start-up.
 */
#include "master.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static char daemon_error[512];
static int daemon_ready_fd = -1;      /* write end of the start-up pipe */

#define DAEMON_READY "ready\n"

/* The process started from the terminal: wait for the daemon's verdict. */
static void __attribute__((noreturn)) daemon_wait_ready(int fd)
{
	char buf[4096];
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == sizeof(buf) - 1)
			break;
	}
	buf[len] = '\0';
	if (strcmp(buf, DAEMON_READY) == 0)
		_exit(0);
	if (len > 0)
		write_full(STDERR_FILENO, buf, len);
	else
		dprintf(STDERR_FILENO, "xmppd: the daemon ended during start-up "
			"without a reason; see its log file\n");
	_exit(1);
}

void master_daemon_ready(void)
{
	if (daemon_ready_fd < 0)
		return;
	log_set_fatal_fd(-1);
	ssize_t w = write(daemon_ready_fd, DAEMON_READY,
			  sizeof(DAEMON_READY) - 1);
	(void)w;
	close(daemon_ready_fd);
	daemon_ready_fd = -1;
}

static int daemon_fail(const char *what, const char *path)
{
	snprintf(daemon_error, sizeof(daemon_error), "%s(%s) failed: %s",
		 what, path, strerror(errno));
	return -1;
}

int master_log_default(struct config *cfg, int foreground,
		       const char **error_r)
{
	if (foreground || cfg->log_file[0] != '\0')
		return 0;
	return config_set(cfg, "log_file=" MASTER_DAEMON_LOG_FILE, error_r);
}

int master_daemonize(const char **error_r)
{
	int ready[2];
	if (pipe2(ready, O_CLOEXEC) < 0) {
		*error_r = "pipe() failed";
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		*error_r = "fork() failed";
		return -1;
	}
	if (pid > 0) {
		close(ready[1]);
		daemon_wait_ready(ready[0]);
	}
	close(ready[0]);
	daemon_ready_fd = ready[1];
	log_set_fatal_fd(ready[1]);
	setsid();
	pid = fork();
	if (pid < 0) {
		*error_r = "fork() failed";
		return -1;
	}
	if (pid > 0)
		_exit(0);
	if (chdir("/") < 0) {
		*error_r = "chdir(/) failed";
		return -1;
	}
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	if (log_redirect_stderr() < 0) {
		*error_r = "dup2(log file, stderr) failed";
		return -1;
	}
	return 0;
}

static pid_t pid_file_read(const char *path)
{
	char buf[32];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	long pid = strtol(buf, NULL, 10);
	return pid > 0 ? (pid_t)pid : 0;
}

int master_pid_file_check(const char *path, const char **error_r)
{
	pid_t pid = pid_file_read(path);
	if (pid <= 0 || pid == getpid())
		return 0;
	if (kill(pid, 0) == 0 || errno == EPERM) {
		snprintf(daemon_error, sizeof(daemon_error),
			 "xmppd is already running (pid %d, pid file %s)",
			 (int)pid, path);
		*error_r = daemon_error;
		return -1;
	}
	return 0;   /* stale: overwritten below */
}

int master_pid_file_write(const char *path, const char **error_r)
{
	char buf[32];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		*error_r = daemon_error;
		return daemon_fail("open", path);
	}
	int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	int ret = write_full(fd, buf, (size_t)n);
	close(fd);
	if (ret < 0) {
		*error_r = daemon_error;
		return daemon_fail("write", path);
	}
	return 0;
}

void master_pid_file_remove(struct master *m)
{
	if (!m->pid_file_written || pid_file_read(m->cfg->pid_file) != getpid())
		return;
	if (unlink(m->cfg->pid_file) < 0)
		log_error("unlink(%s) failed: %m", m->cfg->pid_file);
}

static int lookup_group(const struct config *cfg, gid_t def, gid_t *gid_r)
{
	if (cfg->group[0] == '\0') {
		*gid_r = def;
		return 0;
	}
	struct group *gr = getgrnam(cfg->group);
	if (gr == NULL)
		return -1;
	*gid_r = gr->gr_gid;
	return 0;
}

int master_drop_privileges(const struct config *cfg, const char **error_r)
{
	*error_r = daemon_error;
	if (geteuid() != 0)
		return 0;
	if (cfg->user[0] == '\0') {
		log_warn("running as root: set 'user' to drop privileges");
		return 0;
	}
	struct passwd *pw = getpwnam(cfg->user);
	gid_t gid;
	if (pw == NULL) {
		snprintf(daemon_error, sizeof(daemon_error),
			 "user: no such user '%s'", cfg->user);
		return -1;
	}
	if (lookup_group(cfg, pw->pw_gid, &gid) < 0) {
		snprintf(daemon_error, sizeof(daemon_error),
			 "group: no such group '%s'", cfg->group);
		return -1;
	}
	if (setgroups(0, NULL) < 0 || setgid(gid) < 0 ||
	    setuid(pw->pw_uid) < 0)
		return daemon_fail("setuid", cfg->user);
	if (setuid(0) == 0) {
		snprintf(daemon_error, sizeof(daemon_error),
			 "could not drop root privileges");
		return -1;
	}
	log_info("running as user %s", cfg->user);
	return 0;
}

int64_t master_watchdog_interval(void)
{
	const char *usec = getenv("WATCHDOG_USEC");
	const char *pid = getenv("WATCHDOG_PID");
	char *end;
	if (usec == NULL || getenv("NOTIFY_SOCKET") == NULL)
		return 0;
	if (pid != NULL && pid[0] != '\0' &&
	    strtol(pid, &end, 10) != (long)getpid())
		return 0;
	unsigned long long us = strtoull(usec, &end, 10);
	if (end == usec || *end != '\0' || us == 0)
		return 0;
	/* sd_watchdog_enabled(3): notify at half the interval */
	int64_t ms = (int64_t)(us / 2000);
	return ms > 0 ? ms : 1;
}

/* sd_notify without libsystemd: one datagram to $NOTIFY_SOCKET. */
void master_notify_systemd(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sun;
	if (path == NULL || path[0] == '\0' ||
	    strlen(path) >= sizeof(sun.sun_path))
		return;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path));
	if (sun.sun_path[0] == '@')
		sun.sun_path[0] = '\0';
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
				    strlen(path));
	if (sendto(fd, state, strlen(state), MSG_NOSIGNAL,
		   (struct sockaddr *)&sun, len) < 0)
		log_debug("sd_notify(%s) failed: %m", state);
	close(fd);
}

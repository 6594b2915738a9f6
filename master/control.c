/*
 * control.c - the control socket that xmppctl talks to.  A line protocol
 * (docs/CONTROL.md): the client sends "VERSION\txmppctl\t1", the master
 * answers "VERSION\txmppd\t1"; then one command per line, answered by
 * tab-separated lines ending with "OK" or "ERROR\t<reason>".  Commands
 * that change state (reload, stop) need the peer to be root or the
 * daemon's own user (SO_PEERCRED), like smtpctl's privileged commands.
 * Failure policy: a misbehaving client is disconnected; the master goes on.
 */
#include "master.h"
#include "log.h"
#include "buf.h"
#include "addr.h"
#include "session.h"
#include "throttle.h"
#include "util.h"

#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define CONTROL_VERSION "1"

static char control_error[512];

static int control_fail(const char *what, const char *path)
{
	snprintf(control_error, sizeof(control_error),
		 "control socket: %s(%s) failed: %s", what, path,
		 strerror(errno));
	return -1;
}

/* Another master answering on the path means we must not steal it. */
static int control_path_in_use(const struct sockaddr_un *sun)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	int r = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	close(fd);
	return r == 0;
}

static int control_set_owner(const struct config *cfg, const char *path)
{
	const char *owner = cfg->control_owner[0] ? cfg->control_owner
						  : cfg->user;
	uid_t uid = (uid_t)-1;
	gid_t gid = (gid_t)-1;
	if (geteuid() == 0 && owner[0] != '\0') {
		struct passwd *pw = getpwnam(owner);
		if (pw == NULL) {
			errno = ENOENT;
			return control_fail("getpwnam", owner);
		}
		uid = pw->pw_uid;
		gid = pw->pw_gid;
	}
	if (cfg->control_group[0] != '\0') {
		struct group *gr = getgrnam(cfg->control_group);
		if (gr == NULL) {
			errno = ENOENT;
			return control_fail("getgrnam", cfg->control_group);
		}
		gid = gr->gr_gid;
	}
	if ((uid != (uid_t)-1 || gid != (gid_t)-1) && chown(path, uid, gid) < 0)
		return control_fail("chown", path);
	if (chmod(path, (mode_t)cfg->control_mode) < 0)
		return control_fail("chmod", path);
	return 0;
}

int master_control_open(struct master *m, const char **error_r)
{
	struct sockaddr_un sun;
	const char *path = m->cfg->control_socket;

	*error_r = control_error;
	for (unsigned i = 0; i < MASTER_CONTROL_CLIENTS; i++)
		m->clients[i].fd = -1;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(control_error, sizeof(control_error),
			 "control.socket: path too long: %s", path);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if (control_path_in_use(&sun)) {
		snprintf(control_error, sizeof(control_error),
			 "control socket %s is in use: is xmppd running?", path);
		return -1;
	}
	unlink(path);
	m->control_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC |
			       SOCK_NONBLOCK, 0);
	if (m->control_fd < 0)
		return control_fail("socket", path);
	if (bind(m->control_fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		return control_fail("bind", path);
	if (listen(m->control_fd, 16) < 0)
		return control_fail("listen", path);
	snprintf(m->control_path, sizeof(m->control_path), "%s", path);
	return control_set_owner(m->cfg, path);
}

static void control_client_close(struct control_client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->handshaken = 0;
	c->in_len = 0;
}

void master_control_close(struct master *m)
{
	for (unsigned i = 0; i < MASTER_CONTROL_CLIENTS; i++)
		control_client_close(&m->clients[i]);
	if (m->control_fd >= 0) {
		close(m->control_fd);
		m->control_fd = -1;
		unlink(m->control_path);
	}
}

/* In a forked worker: close without unlinking the master's socket. */
void master_control_close_child(struct master *m)
{
	for (unsigned i = 0; i < MASTER_CONTROL_CLIENTS; i++)
		if (m->clients[i].fd >= 0)
			close(m->clients[i].fd);
	if (m->control_fd >= 0)
		close(m->control_fd);
}

int master_control_pollfds(struct master *m, void *pfds_v, unsigned max)
{
	struct pollfd *pfds = pfds_v;
	unsigned n = 0;
	if (m->control_fd >= 0 && n < max)
		pfds[n++] = (struct pollfd){ .fd = m->control_fd,
					     .events = POLLIN };
	for (unsigned i = 0; i < MASTER_CONTROL_CLIENTS && n < max; i++)
		if (m->clients[i].fd >= 0)
			pfds[n++] = (struct pollfd){ .fd = m->clients[i].fd,
						     .events = POLLIN };
	return (int)n;
}

static void control_accept(struct master *m)
{
	int fd = accept4(m->control_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	for (unsigned i = 0; i < MASTER_CONTROL_CLIENTS; i++) {
		if (m->clients[i].fd < 0) {
			m->clients[i].fd = fd;
			return;
		}
	}
	static const char busy[] = "ERROR\ttoo many control clients\n";
	write_full(fd, busy, sizeof(busy) - 1);
	close(fd);
}

static int control_privileged(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return 0;
	return cred.uid == 0 || cred.uid == geteuid();
}

static void control_status(struct master *m, struct buf *out)
{
	uint32_t used, cap, rec, aused, acap, arec;
	shm_session_usage(m->shm.sessions, &used, &cap, &rec);
	shm_addr_usage(m->shm.addrs, &aused, &acap, &arec);
	buf_appendf(out, "master\tpid=%d\tuptime=%lld\tgeneration=%llu\t"
		    "workers=%u\tsessions=%u\tcapacity=%u\taddresses=%u\t"
		    "address_capacity=%u\tversion=%s\n",
		    (int)getpid(), (long long)(time(NULL) - m->started),
		    (unsigned long long)m->generation, m->nslots, used, cap,
		    aused, acap, PACKAGE_VERSION);
	for (unsigned i = 0; i < m->nslots; i++) {
		struct ipc_worker_stats *st = shm_worker_stats(&m->shm, i);
		unsigned long long in = 0, sent = 0;
		for (int k = 0; k < IPC_STANZA_KIND_MAX; k++) {
			in += METRIC_GET(st->stanzas_in[k]);
			sent += METRIC_GET(st->stanzas_out[k]);
		}
		buf_appendf(out, "worker\tslot=%u\tpid=%d\tconnections=%llu\t"
			    "restarts=%u\tgeneration=%llu\taccepted=%llu\t"
			    "stanzas_in=%llu\tstanzas_out=%llu\tbytes_in=%llu\t"
			    "bytes_out=%llu\terrors=%llu\n", i,
			    (int)m->slots[i].pid,
			    (unsigned long long)st->connections,
			    m->slots[i].restarts,
			    (unsigned long long)st->config_gen,
			    (unsigned long long)st->accepted,
			    in, sent,
			    (unsigned long long)st->bytes_in,
			    (unsigned long long)st->bytes_out,
			    (unsigned long long)st->errors);
	}
	buf_appendf(out, "OK\n");
}

/* Addresses and accounts blocked now (login throttling, sasl.c). */
#define CONTROL_BANS_MAX 4096u

static void control_bans(struct master *m, struct buf *out)
{
	struct throttle_entry *e = calloc(CONTROL_BANS_MAX, sizeof(*e));
	int64_t now = time_now_ms();
	int n;

	if (e == NULL || m->shm.throttle == NULL ||
	    (n = shm_throttle_list_blocked(m->shm.throttle, now, e,
					   CONTROL_BANS_MAX)) < 0) {
		buf_appendf(out, "ERROR	throttle table unavailable\n");
		free(e);
		return;
	}
	for (unsigned i = 0; i < (unsigned)n && i < CONTROL_BANS_MAX; i++)
		buf_appendf(out, "ban\tkind=%s\tkey=%s\tfailures=%u\t"
			    "remaining=%lld\n", e[i].kind == IPC_THROTTLE_ADDRESS ?
			    "address" : e[i].kind == IPC_THROTTLE_PAIR ?
			    "address-account" : "account", e[i].label, e[i].failures,
			    (long long)((e[i].blocked_until - now + 999) / 1000));
	buf_appendf(out, "bans\ttotal=%d\tshown=%u\nOK\n", n,
		    (unsigned)n < CONTROL_BANS_MAX ? (unsigned)n :
		    CONTROL_BANS_MAX);
	free(e);
}

/* "unban<TAB>ADDRESS" or "unban<TAB>user@domain". */
static void control_unban(struct master *m, const char *arg,
			  struct buf *out)
{
	struct throttle_key key;
	int r;

	if (m->shm.throttle == NULL) {
		buf_appendf(out, "ERROR\tthrottle table unavailable\n");
		return;
	}
	if (strchr(arg, '@') != NULL)
		shm_throttle_key_account(m->shm.throttle, arg, &key);
	else if (shm_throttle_key_address(m->shm.throttle, arg, &key) < 0) {
		buf_appendf(out, "ERROR\tnot an address or user@domain\n");
		return;
	}
	r = shm_throttle_remove(m->shm.throttle, &key);
	if (r < 0) {
		buf_appendf(out, "ERROR\tthrottle table unavailable\n");
	} else if (r == 0) {
		buf_appendf(out, "ERROR\t%s has no failures recorded\n",
			    key.label);
	} else {
		log_info("master: %s unbanned by xmppctl", key.label);
		buf_appendf(out, "unbanned\t%s\nOK\n", key.label);
	}
}

/* "metrics": every counter of shared memory as OpenMetrics text (the
 * same as GET /metrics), then OK; "health": ready or the reason. */
static void control_metrics(struct master *m, const char *line,
			    struct buf *out)
{
	char reason[256];
	if (strcmp(line, "health") == 0) {
		int ok = metrics_health(&m->shm, m->nslots, reason,
					sizeof(reason));
		buf_appendf(out, "health\t%s\t%s\nOK\n", ok ? "ready" :
			    "unavailable", reason);
	} else {
		/* apart, so that a failure sends no half of it */
		struct buf text;
		buf_init(&text, out->max > 64 ? out->max - 64 : 0);
		if (metrics_render(&m->shm, m->nslots, &text,
				   METRICS_OPENMETRICS) < 0 ||
		    buf_append(out, buf_head(&text), buf_used(&text)) < 0)
			buf_appendf(out, "ERROR\tmetrics too large for the "
				    "reply\n");
		else
			buf_appendf(out, "OK\n");
		buf_free(&text);
	}
}

static void control_reload(struct master *m, struct buf *out)
{
	char *report = NULL;
	int r = master_reload(m, &report);
	buf_appendf(out, "%s", report ? report : "");
	free(report);
	if (r == 0)
		buf_appendf(out, "OK\n");
}

static void control_command(struct master *m, struct control_client *c,
			    const char *line, struct buf *out)
{
	int priv = control_privileged(c->fd);
	if (strcmp(line, "status") == 0 || strcmp(line, "workers") == 0) {
		control_status(m, out);
	} else if (strcmp(line, "help") == 0) {
		buf_appendf(out, "commands\tstatus\tworkers\treload\tstop\t"
			    "bans\tunban\tmetrics\thealth\thelp\nOK\n");
	} else if (strcmp(line, "bans") == 0) {
		control_bans(m, out);
	} else if (strcmp(line, "metrics") == 0 ||
		   strcmp(line, "health") == 0) {
		control_metrics(m, line, out);
	} else if ((strcmp(line, "reload") == 0 ||
		    strcmp(line, "stop") == 0 ||
		    strncmp(line, "unban\t", 6) == 0) && !priv) {
		buf_appendf(out, "ERROR\tpermission denied: '%.*s' needs root "
			    "or the daemon user\n", (int)strcspn(line, "\t"),
			    line);
	} else if (strcmp(line, "reload") == 0) {
		control_reload(m, out);
	} else if (strcmp(line, "stop") == 0) {
		buf_appendf(out, "OK\n");
		master_sig_term = 1;
	} else if (strncmp(line, "unban\t", 6) == 0) {
		control_unban(m, line + 6, out);
	} else {
		buf_appendf(out, "ERROR\tunknown command '%s'\n", line);
	}
}

static int control_line(struct master *m, struct control_client *c,
			const char *line)
{
	struct buf out;
	int ret = 0;
	buf_init(&out, 1024 * 1024);
	if (!c->handshaken) {
		if (strncmp(line, "VERSION\txmppctl\t" CONTROL_VERSION, 16) == 0) {
			c->handshaken = 1;
			buf_appendf(&out, "VERSION\txmppd\t" CONTROL_VERSION "\n");
		} else {
			buf_appendf(&out, "ERROR\tprotocol version mismatch: "
				    "expected VERSION\txmppctl\t" CONTROL_VERSION
				    "\n");
			ret = -1;
		}
	} else {
		control_command(m, c, line, &out);
	}
	if (write_full(c->fd, buf_head(&out), buf_used(&out)) < 0)
		ret = -1;
	buf_free(&out);
	return ret;
}

static void control_read(struct master *m, struct control_client *c)
{
	ssize_t n = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len);
	if (n <= 0) {
		control_client_close(c);
		return;
	}
	c->in_len += (size_t)n;
	char *nl;
	while (c->fd >= 0 && (nl = memchr(c->in, '\n', c->in_len)) != NULL) {
		*nl = '\0';
		if (control_line(m, c, c->in) < 0) {
			control_client_close(c);
			return;
		}
		size_t used = (size_t)(nl - c->in) + 1;
		memmove(c->in, nl + 1, c->in_len - used);
		c->in_len -= used;
	}
	if (c->in_len == sizeof(c->in))
		control_client_close(c);    /* a line too long */
}

void master_control_handle(struct master *m, int fd, short revents)
{
	(void)revents;
	if (fd == m->control_fd) {
		control_accept(m);
		return;
	}
	for (unsigned i = 0; i < MASTER_CONTROL_CLIENTS; i++)
		if (m->clients[i].fd == fd)
			control_read(m, &m->clients[i]);
}

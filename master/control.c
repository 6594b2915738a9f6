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
#include "metrics.h"
#include "buf.h"
#include "addr.h"
#include "session.h"
#include "throttle.h"
#include "util.h"
#include "smstore.h"
#include "../shm/cluster.h"
#include "../worker/sm.h"

#include <arpa/inet.h>
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
	for (unsigned i = 0; i < MASTER_CONTROL_CLIENTS; i++) {
		m->clients[i].fd = -1;
		buf_init(&m->clients[i].out, 0);
	}
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
	buf_free(&c->out);
}

static void control_watch_free(void);

void master_control_close(struct master *m)
{
	control_watch_free();
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
	for (unsigned i = 0; i < MASTER_CONTROL_CLIENTS; i++) {
		if (m->clients[i].fd >= 0)
			close(m->clients[i].fd);
		buf_free(&m->clients[i].out);
	}
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
				.events = buf_used(&m->clients[i].out) > 0 ?
					POLLOUT : POLLIN };
	return (int)n;
}

static int control_privileged(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return 0;
	return cred.uid == 0 || cred.uid == geteuid();
}

/* A slot for a new client: a free one; when all are taken and the new
 * client is root or the daemon user, the one of an unprivileged client
 * idle the longest (socket-group members cannot lock root out). */
static struct control_client *control_slot(struct master *m, int priv)
{
	struct control_client *victim = NULL;
	for (unsigned i = 0; i < MASTER_CONTROL_CLIENTS; i++) {
		struct control_client *c = &m->clients[i];
		if (c->fd < 0)
			return c;
		if (priv && !c->priv &&
		    (victim == NULL || c->last_ms < victim->last_ms))
			victim = c;
	}
	if (victim != NULL) {
		static const char bye[] = "ERROR\tconnection taken over by a "
			"privileged client\n";
		if (send(victim->fd, bye, sizeof(bye) - 1, MSG_DONTWAIT |
			 MSG_NOSIGNAL) < 0) {
			/* nothing to do: it is closed anyway */
		}
		control_client_close(victim);
	}
	return victim;
}

static void control_accept(struct master *m)
{
	/* non-blocking: a client that does not read its answers must not
	   stop the master (they wait in its out buffer) */
	int fd = accept4(m->control_fd, NULL, NULL,
			 SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	int priv = control_privileged(fd);
	struct control_client *c = control_slot(m, priv);
	if (c != NULL) {
		c->fd = fd;
		c->priv = priv;
		c->last_ms = time_now_ms();
		buf_init(&c->out, 0);
		return;
	}
	static const char busy[] = "ERROR\ttoo many control clients\n";
	if (send(fd, busy, sizeof(busy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		/* closed below either way */
	}
	close(fd);
}

/* The cluster bridge's row: no clients, so no connection figures; the
 * frames it took from the workers instead. */
static void control_status_bridge(struct master *m, unsigned i,
				  struct ipc_worker_stats *st,
				  struct buf *out)
{
	buf_appendf(out, "bridge\tslot=%u\tpid=%d\trestarts=%u\t"
		    "generation=%llu\tframes_in=%llu\tframes_out=%llu\t"
		    "link=%s\n", i, (int)m->slots[i].pid, m->slots[i].restarts,
		    (unsigned long long)METRIC_GET(st->config_gen),
		    (unsigned long long)METRIC_GET(st->frames_in),
		    (unsigned long long)METRIC_GET(st->frames_out),
		    m->slots[i].pid > 0 &&
		    METRIC_GET(m->shm.hdr->cluster.link_up) ? "up" : "down");
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
		    (unsigned long long)m->generation, m->nworkers, used, cap,
		    aused, acap, PACKAGE_VERSION);
	for (unsigned i = 0; i < m->nslots; i++) {
		struct ipc_worker_stats *st = shm_worker_stats(&m->shm, i);
		if (master_is_bridge(m, i)) {
			control_status_bridge(m, i, st, out);
			continue;
		}
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

/* ---- sessions and kick ------------------------------------------------ */

/* Lines of `sessions` stop before the answer could pass the 1 MB cap. */
#define CONTROL_OUT_MAX (1024u * 1024u)
#define CONTROL_LINE_ROOM (IPC_JID_MAX + 512u)

/* filter: a full JID (has '/'), a bare JID (has '@'), or a domain; the
 * client prepares it (xmppctl), so bytes compare.  "" matches all. */
static int control_jid_matches(const char *jid, const char *filter)
{
	size_t bare = strcspn(jid, "/");
	size_t n = strlen(filter);
	if (n == 0)
		return 1;
	if (strchr(filter, '/') != NULL)
		return strcmp(jid, filter) == 0;
	if (strchr(filter, '@') != NULL)
		return bare == n && memcmp(jid, filter, n) == 0;
	const char *at = memchr(jid, '@', bare);
	const char *domain = at != NULL ? at + 1 : jid;
	return (size_t)(jid + bare - domain) == n && memcmp(domain, filter, n) == 0;
}

static const char *control_tls_name(uint16_t v)
{
	switch (v) {
	case 0: return "none";
	case 0x0301: return "TLSv1.0";
	case 0x0302: return "TLSv1.1";
	case 0x0303: return "TLSv1.2";
	case 0x0304: return "TLSv1.3";
	default: return "TLS?";
	}
}

/* A session's XEP-0198 record, for the sm field: (slot, conn_id, gen)
 * sorted, looked up by bsearch. */
struct control_sm {
	uint16_t slot;
	uint32_t conn_id, gen;
	struct sm_state st;
};

struct control_walk {
	const char *filter;
	struct buf *out;
	int64_t now;
	struct control_sm *sm;
	size_t nsm, sm_cap;
	unsigned sm_slot;
	int64_t now_ms;
	unsigned total, shown;
	/* kick */
	struct master *m;
	uint32_t condition;
	const char *text;
	int uid;
	unsigned kicked;
};

static int control_sm_cmp(const void *a, const void *b)
{
	const struct control_sm *x = a, *y = b;
	if (x->slot != y->slot)
		return x->slot < y->slot ? -1 : 1;
	if (x->conn_id != y->conn_id)
		return x->conn_id < y->conn_id ? -1 : 1;
	if (x->gen != y->gen)
		return x->gen < y->gen ? -1 : 1;
	return 0;
}

static int control_sm_record(const struct sm_ref *ref,
			     const struct sm_state *st, void *ctx)
{
	struct control_walk *cw = ctx;
	(void)ref;
	if (st->state == SM_REC_GIVEN)
		return 0;
	if (cw->nsm == cw->sm_cap) {
		size_t cap = cw->sm_cap ? cw->sm_cap * 2 : 64;
		struct control_sm *n = realloc(cw->sm, cap * sizeof(*n));
		if (n == NULL)
			return 1;
		cw->sm = n;
		cw->sm_cap = cap;
	}
	struct control_sm *e = &cw->sm[cw->nsm++];
	e->slot = (uint16_t)cw->sm_slot;
	e->conn_id = st->conn_id;
	e->gen = st->gen;
	e->st = *st;
	return 0;
}

/* The stream-management records of every slot (read while their
 * workers write them: a snapshot good enough for a listing). */
static void control_sm_collect(struct master *m, struct control_walk *cw)
{
	if (m->shm.smstore == NULL)
		return;
	for (unsigned slot = 0; slot < m->nworkers; slot++) {
		cw->sm_slot = slot;
		smstore_foreach_record(m->shm.smstore, slot, control_sm_record,
				       cw);
	}
	if (cw->nsm > 1)
		qsort(cw->sm, cw->nsm, sizeof(*cw->sm), control_sm_cmp);
}

static const char *control_sm_field(const struct control_walk *cw,
				    const struct session_info *s, char *out,
				    size_t cap)
{
	struct control_sm key = { .slot = s->slot, .conn_id = s->conn_id,
				  .gen = s->gen };
	const struct control_sm *e = cw->nsm ?
		bsearch(&key, cw->sm, cw->nsm, sizeof(*cw->sm),
			control_sm_cmp) : NULL;
	return sm_describe(e ? &e->st : NULL, cw->now_ms, out, cap);
}

static int control_session_line(const struct session_info *s, void *ctx)
{
	struct control_walk *cw = ctx;
	char addr[INET6_ADDRSTRLEN] = "?";
	if (!control_jid_matches(s->jid, cw->filter))
		return 0;
	cw->total++;
	if (buf_used(cw->out) + CONTROL_LINE_ROOM > CONTROL_OUT_MAX)
		return 0;
	if (s->peer_family == 4 || s->peer_family == 6)
		inet_ntop(s->peer_family == 4 ? AF_INET : AF_INET6,
			  s->peer_addr, addr, sizeof(addr));
	int64_t idle = cw->now - s->active;
	char sm[48], node[IPC_NODE_NAME + 8] = "";
	/* in a cluster, the node holding it; another node's session: its
	 * worker there (the connection's facts are that node's) */
	const struct ipc_cluster *c = cw->m != NULL ? &cw->m->shm.hdr->cluster
						    : NULL;
	if (c != NULL && c->enabled) {
		struct ipc_cluster_node n;
		snprintf(node, sizeof(node), "\tnode=%s",
			 shm_cluster_read_node(c, s->node, &n) ? n.name : "?");
	}
	buf_appendf(cw->out, "session\tjid=%s%s\tworker=%u\taddress=%s\tport=%u\t"
		    "tls=%s\tmechanism=%s\tsince=%lld\tidle=%lld\tsm=%s\n",
		    s->jid, node, s->node != 0 ? s->rslot : s->slot, addr,
		    s->peer_port,
		    control_tls_name(s->tls_version),
		    metrics_mech_name((enum ipc_mech)s->mech), (long long)s->since,
		    (long long)(idle > 0 ? idle : 0),
		    control_sm_field(cw, s, sm, sizeof(sm)));
	cw->shown++;
	return 0;
}

/* "sessions" or "sessions<TAB>FILTER": from the shared table, never by
 * asking the workers. */
static void control_sessions(struct master *m, const char *filter,
			     struct buf *out)
{
	struct control_walk cw = { .filter = filter, .out = out, .m = m,
				   .now = time(NULL), .now_ms = time_now_ms() };
	control_sm_collect(m, &cw);
	int r = shm_session_foreach(m->shm.sessions, control_session_line,
				    &cw);
	free(cw.sm);
	if (r < 0) {
		buf_appendf(out, "ERROR\tsession table unavailable\n");
		return;
	}
	buf_appendf(out, "sessions\ttotal=%u\tshown=%u\nOK\n", cw.total,
		    cw.shown);
}

/* Tell s's worker to end it: 0, or -1 (logged by master_send_cmd). */
static int control_send_kick(struct master *m, const struct session_info *s,
			     uint32_t condition, const char *text, int uid)
{
	char msg[sizeof(struct ipc_kick) + IPC_JID_MAX + 1024];
	size_t jl = strlen(s->jid), tl = strlen(text);
	struct ipc_kick k = {
		.conn_id = s->conn_id, .gen = s->gen,
		.condition = condition, .uid = uid,
		.jid_len = (uint16_t)jl, .text_len = (uint16_t)tl,
	};
	memcpy(msg, &k, sizeof(k));
	memcpy(msg + sizeof(k), s->jid, jl);
	memcpy(msg + sizeof(k) + jl, text, tl);
	return master_send_cmd(m, s->slot, IPC_CMD_KICK, msg,
			       sizeof(k) + jl + tl);
}

static int control_kick_one(const struct session_info *s, void *ctx)
{
	struct control_walk *cw = ctx;
	if (!control_jid_matches(s->jid, cw->filter))
		return 0;
	cw->total++;
	if (control_send_kick(cw->m, s, cw->condition, cw->text,
			      cw->uid) == 0) {
		cw->kicked++;
		if (buf_used(cw->out) + CONTROL_LINE_ROOM <= CONTROL_OUT_MAX)
			buf_appendf(cw->out, "kicked\tjid=%s\tworker=%u\n",
				    s->jid, s->slot);
	}
	return 0;
}

/* Kicks with `watch` (user del): for c2s.timeout after, a session of the
 * JID that binds is ended too.  That is a login that read the account's
 * credentials before it was deleted: a connection binds within
 * c2s.timeout of connecting or is closed (worker/conn.c). */
#define CONTROL_WATCH_MAX 4096u
/* Sessions of one watched account looked up per tick (more: a walk). */
#define CONTROL_WATCH_LIST 32u

struct control_watch {
	char *jid;
	char *text;
	uint32_t condition;
	int uid;
	int64_t until_ms;
};

static struct control_watch control_watches[CONTROL_WATCH_MAX];
static unsigned control_nwatches;
static int64_t control_next_watch_ms;

/* How long a watch lasts: c2s.timeout, or a longer one from before a
 * reload while connections accepted under it may still bind (a worker
 * keeps the deadline a connection got when it was accepted). */
static int64_t control_c2s_max_ms, control_c2s_max_until_ms;

static void control_c2s_track(const struct master *m, int64_t now_ms)
{
	int64_t cur = (int64_t)m->cfg->c2s_timeout;
	if (cur >= control_c2s_max_ms) {
		control_c2s_max_ms = cur;
		control_c2s_max_until_ms = 0;
	} else if (control_c2s_max_until_ms == 0) {
		control_c2s_max_until_ms = now_ms + control_c2s_max_ms;
	} else if (now_ms >= control_c2s_max_until_ms) {
		control_c2s_max_ms = cur;
		control_c2s_max_until_ms = 0;
	}
}

static void control_watch_add(struct master *m, const char *jid,
			      uint32_t condition, const char *text, int uid)
{
	int64_t now = time_now_ms();
	struct control_watch *w = NULL;
	for (unsigned i = 0; i < control_nwatches && w == NULL; i++)
		if (strcmp(control_watches[i].jid, jid) == 0)
			w = &control_watches[i];
	if (w == NULL && control_nwatches == CONTROL_WATCH_MAX) {
		/* full: the oldest goes (a purge of more than 4096
		   accounts within c2s.timeout) */
		log_warn("kick of %s: %u late-login watches already, the "
			 "oldest (%s) ends early", jid, CONTROL_WATCH_MAX,
			 control_watches[0].jid);
		free(control_watches[0].jid);
		free(control_watches[0].text);
		memmove(&control_watches[0], &control_watches[1],
			(CONTROL_WATCH_MAX - 1) * sizeof(control_watches[0]));
		control_nwatches--;
	}
	if (w == NULL) {
		w = &control_watches[control_nwatches];
		w->jid = strdup(jid);
		w->text = strdup(text);
		if (w->jid == NULL || w->text == NULL) {
			free(w->jid);
			free(w->text);
			log_error("kick of %s: no memory to watch for late "
				  "logins", jid);
			return;
		}
		control_nwatches++;
	}
	w->condition = condition;
	w->uid = uid;
	control_c2s_track(m, now);
	w->until_ms = now + control_c2s_max_ms + 1000;
	if (control_next_watch_ms == 0)
		control_next_watch_ms = now + 1000;
}

static void control_watch_free(void)
{
	for (unsigned i = 0; i < control_nwatches; i++) {
		free(control_watches[i].jid);
		free(control_watches[i].text);
	}
	control_nwatches = 0;
}

struct control_watch_ctx {
	struct master *m;
	const struct control_watch *w;
};

static void control_watch_kick(struct master *m, const struct control_watch *w,
			       const struct session_info *s)
{
	log_info("kick of %s: bound while its account was deleted", s->jid);
	control_send_kick(m, s, w->condition, w->text, w->uid);
}

static int control_watch_one(const struct session_info *s, void *ctx)
{
	const struct control_watch_ctx *wc = ctx;
	if (control_jid_matches(s->jid, wc->w->jid))
		control_watch_kick(wc->m, wc->w, s);
	return 0;
}

/* The sessions of w's JID, by its hash chain (a walk of the whole table
 * only for an account with very many). */
static void control_watch_scan(struct master *m, const struct control_watch *w)
{
	static struct session_info found[CONTROL_WATCH_LIST];
	int n;
	if (strchr(w->jid, '/') != NULL) {
		if (shm_session_get(m->shm.sessions, w->jid, &found[0]) == 1)
			control_watch_kick(m, w, &found[0]);
		return;
	}
	n = shm_session_list(m->shm.sessions, w->jid, found,
			     CONTROL_WATCH_LIST);
	if (n > (int)CONTROL_WATCH_LIST) {
		struct control_watch_ctx wc = { .m = m, .w = w };
		shm_session_foreach(m->shm.sessions, control_watch_one, &wc);
		return;
	}
	for (int i = 0; i < n; i++)
		control_watch_kick(m, w, &found[i]);
}

void master_control_tick(struct master *m, int64_t now_ms)
{
	control_c2s_track(m, now_ms);
	if (control_nwatches == 0 || now_ms < control_next_watch_ms)
		return;
	/* scan first: a watch's last scan comes at or after its end, so
	   every session bound while it lasted is seen */
	for (unsigned i = 0; i < control_nwatches; i++)
		control_watch_scan(m, &control_watches[i]);
	unsigned kept = 0;
	for (unsigned i = 0; i < control_nwatches; i++) {
		struct control_watch *w = &control_watches[i];
		if (w->until_ms <= now_ms) {
			free(w->jid);
			free(w->text);
		} else {
			control_watches[kept++] = *w;
		}
	}
	control_nwatches = kept;
	control_next_watch_ms = kept > 0 ? now_ms + 1000 : 0;
}

/* Well-formed UTF-8 (RFC 3629: no overlong forms, surrogates or code
 * points past U+10FFFF) without control characters or U+FFFE/U+FFFF,
 * so that it is XML character data (it becomes <text/>). */
static int control_text_ok(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p != '\0') {
		unsigned c = *p;
		unsigned n = c < 0x80 ? 0 : c >= 0xc2 && c <= 0xdf ? 1 :
			c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ?
			3 : 4;
		if (n == 4 || (n == 0 && (c < 0x20 || c == 0x7f)))
			return 0;
		for (unsigned i = 1; i <= n; i++)
			if ((p[i] & 0xc0) != 0x80)
				return 0;
		if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f) ||
		    (c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] > 0x8f) ||
		    (c == 0xef && p[1] == 0xbf && p[2] >= 0xbe))
			return 0;
		p += n + 1;
	}
	return 1;
}

/* "kick<TAB>JID<TAB>CONDITION<TAB>TEXT[<TAB>watch]": every session of a
 * bare JID, or the one of a full JID; each owning worker gets
 * IPC_CMD_KICK.  watch: late logins too (control_watch_add). */
static void control_kick(struct master *m, struct control_client *c,
			 char *args, struct buf *out)
{
	char *jid = args, *cond = NULL, *text = NULL, *opt = NULL;
	uint32_t condition = 0;
	if ((cond = strchr(jid, '\t')) != NULL) {
		*cond++ = '\0';
		if ((text = strchr(cond, '\t')) != NULL) {
			*text++ = '\0';
			if ((opt = strchr(text, '\t')) != NULL)
				*opt++ = '\0';
		}
	}
	if (cond == NULL || text == NULL ||
	    (opt != NULL && strcmp(opt, "watch") != 0)) {
		buf_appendf(out, "ERROR\tusage: kick<TAB>JID<TAB>CONDITION<TAB>"
			    "TEXT[<TAB>watch]\n");
		return;
	}
	if (strcmp(cond, "policy-violation") == 0)
		condition = IPC_KICK_POLICY_VIOLATION;
	else if (strcmp(cond, "reset") == 0)
		condition = IPC_KICK_RESET;
	else if (strcmp(cond, "not-authorized") == 0)
		condition = IPC_KICK_NOT_AUTHORIZED;
	if (condition == 0) {
		buf_appendf(out, "ERROR\tunknown condition '%s' (policy-violation, "
			    "reset or not-authorized)\n", cond);
		return;
	}
	if (strchr(jid, '@') == NULL || jid[0] == '@' ||
	    strlen(jid) > IPC_JID_MAX) {
		buf_appendf(out, "ERROR\tnot a JID user@domain[/resource]\n");
		return;
	}
	if (strlen(text) >= 1024 || !control_text_ok(text)) {
		buf_appendf(out, "ERROR\tthe text must be UTF-8 without control "
			    "characters, under 1024 bytes\n");
		return;
	}
	struct ucred cred = { .uid = (uid_t)-1 };
	socklen_t len = sizeof(cred);
	getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
	struct control_walk cw = { .filter = jid, .out = out, .m = m,
				   .condition = condition, .text = text,
				   .uid = (int)cred.uid };
	if (shm_session_foreach(m->shm.sessions, control_kick_one, &cw) < 0) {
		buf_appendf(out, "ERROR\tsession table unavailable\n");
		return;
	}
	log_info("kick of %s by uid %d with <%s/>%s%s: %u of %u "
		 "sessions told%s", jid, (int)cred.uid, cond, text[0] ? ": " : "",
		 text, cw.kicked, cw.total, opt != NULL ? ", late logins "
		 "watched for c2s.timeout" : "");
	if (opt != NULL)
		control_watch_add(m, jid, condition, text, (int)cred.uid);
	if (cw.kicked < cw.total)
		buf_appendf(out, "ERROR\t%u of %u sessions could not be told "
			    "(see the log)\n", cw.total - cw.kicked, cw.total);
	else
		buf_appendf(out, "kick\tcount=%u\nOK\n", cw.kicked);
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
			    char *line, struct buf *out)
{
	int priv = c->priv;
	if (strcmp(line, "status") == 0 || strcmp(line, "workers") == 0) {
		control_status(m, out);
	} else if (strcmp(line, "cluster") == 0) {
		master_cluster_status(m, out);
	} else if (strcmp(line, "help") == 0) {
		buf_appendf(out, "commands\tstatus\tworkers\treload\tstop\t"
			    "bans\tunban\tsessions\tkick\tmetrics\thealth\t"
			    "cluster\thelp\n"
			    "OK\n");
	} else if (strcmp(line, "metrics") == 0 ||
		   strcmp(line, "health") == 0) {
		control_metrics(m, line, out);
	} else if ((strcmp(line, "reload") == 0 ||
		    strcmp(line, "stop") == 0 ||
		    strcmp(line, "bans") == 0 ||
		    strcmp(line, "sessions") == 0 ||
		    strncmp(line, "sessions\t", 9) == 0 ||
		    strncmp(line, "kick\t", 5) == 0 ||
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
	} else if (strcmp(line, "bans") == 0) {
		control_bans(m, out);
	} else if (strcmp(line, "sessions") == 0) {
		control_sessions(m, "", out);
	} else if (strncmp(line, "sessions\t", 9) == 0) {
		control_sessions(m, line + 9, out);
	} else if (strncmp(line, "kick\t", 5) == 0) {
		control_kick(m, c, line + 5, out);
	} else {
		buf_appendf(out, "ERROR\tunknown command '%s'\n", line);
	}
}

/* Answer one line into c->out (written by control_flush). */
static int control_line(struct master *m, struct control_client *c,
			char *line)
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
	if (buf_append(&c->out, buf_head(&out), buf_used(&out)) < 0)
		ret = -1;
	buf_free(&out);
	return ret;
}

/* Write what c->out holds without blocking: 0, or -1 (closed). */
static int control_flush(struct control_client *c)
{
	if (buf_write_fd(&c->out, c->fd) < 0) {
		control_client_close(c);
		return -1;
	}
	if (buf_used(&c->out) == 0)
		buf_shrink(&c->out);
	return 0;
}

/* The complete lines in c->in, one at a time, until an answer waits
 * for the client to read (its next lines wait with it). */
static void control_lines(struct master *m, struct control_client *c)
{
	char *nl;
	while (c->fd >= 0 && buf_used(&c->out) == 0 &&
	       (nl = memchr(c->in, '\n', c->in_len)) != NULL) {
		*nl = '\0';
		int r = control_line(m, c, c->in);
		size_t used = (size_t)(nl - c->in) + 1;
		memmove(c->in, nl + 1, c->in_len - used);
		c->in_len -= used;
		if (control_flush(c) < 0)
			return;
		if (r < 0) {
			control_client_close(c);    /* after its answer */
			return;
		}
	}
	if (c->fd >= 0 && c->in_len == sizeof(c->in))
		control_client_close(c);    /* a line too long */
}

static void control_read(struct master *m, struct control_client *c)
{
	ssize_t n = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
		      errno == EINTR))
		return;
	if (n <= 0) {
		control_client_close(c);
		return;
	}
	c->in_len += (size_t)n;
	c->last_ms = time_now_ms();
	control_lines(m, c);
}

void master_control_handle(struct master *m, int fd, short revents)
{
	if (fd == m->control_fd) {
		control_accept(m);
		return;
	}
	for (unsigned i = 0; i < MASTER_CONTROL_CLIENTS; i++) {
		struct control_client *c = &m->clients[i];
		if (c->fd != fd)
			continue;
		if (buf_used(&c->out) > 0) {
			if ((revents & (POLLOUT | POLLERR | POLLHUP)) == 0 ||
			    control_flush(c) < 0)
				return;
			if (buf_used(&c->out) == 0)
				control_lines(m, c);    /* lines that waited */
		} else {
			control_read(m, c);
		}
		return;
	}
}

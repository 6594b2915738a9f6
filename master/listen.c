/*
 * listen.c - binds every listener once per worker slot with SO_REUSEPORT
 * so that each worker accepts on its own sockets and a respawned worker
 * inherits its slot's sockets with their pending connections.  The
 * cluster bridge's slot (after the workers) gets none.
 * Failure policy: a bind error is fatal at start-up; an address family
 * the host lacks (no IPv6) is skipped with a warning.
 */
#include "master.h"
#include "log.h"
#include "util.h"
#include "../worker/worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char listen_error[512];

/* The settings group of a listener kind, for messages. */
static const char *listen_kind_name(int kind)
{
	switch (kind) {
	case LISTEN_HTTP:
		return "http";
	case LISTEN_S2S:
		return "s2s";
	case LISTEN_COMPONENT:
		return "component";
	default:
		return "c2s";
	}
}

static int listen_sockaddr(const char *addr, unsigned port,
			   struct sockaddr_storage *ss, socklen_t *len_r)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*len_r = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*len_r = sizeof(*sin6);
		return 0;
	}
	return -1;
}

static int listen_one(const struct sockaddr_storage *ss, socklen_t len,
		      unsigned backlog)
{
	int one = 1;
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK |
			SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (ss->ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    bind(fd, (const struct sockaddr *)ss, len) < 0 ||
	    listen(fd, (int)backlog) < 0) {
		int saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

static int listen_add(struct master *m, const char *addr, unsigned port,
		      int direct_tls, int kind, const char **error_r)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (listen_sockaddr(addr, port, &ss, &len) < 0) {
		snprintf(listen_error, sizeof(listen_error),
			 "%s.addresses: '%s' is not an IP address",
			 listen_kind_name(kind), addr);
		*error_r = listen_error;
		return -1;
	}
	if (m->nlisteners == MASTER_MAX_LISTENERS) {
		*error_r = "too many listeners";
		return -1;
	}
	struct listener *l = &m->listeners[m->nlisteners];
	memset(l, 0, sizeof(*l));
	l->family = ss.ss_family;
	snprintf(l->address, sizeof(l->address), "%s", addr);
	l->port = port;
	l->direct_tls = direct_tls;
	l->kind = kind;
	/* worker slots only: the cluster bridge serves no clients */
	for (unsigned s = 0; s < m->nworkers; s++) {
		l->fds[s] = listen_one(&ss, len, m->cfg->backlog);
		if (l->fds[s] >= 0)
			continue;
		if (errno == EAFNOSUPPORT || errno == EADDRNOTAVAIL) {
			log_warn("skipping listener [%s]:%u: %m", addr, port);
			for (unsigned k = 0; k < s; k++)
				close(l->fds[k]);
			return 0;
		}
		snprintf(listen_error, sizeof(listen_error),
			 "bind([%s]:%u) failed: %s", addr, port,
			 strerror(errno));
		*error_r = listen_error;
		return -1;
	}
	m->nlisteners++;
	return 0;
}

/* Each address of list on port (plain) and tls_port (TLS), those not 0. */
static int listen_list(struct master *m, const char *list, unsigned port,
		       unsigned tls_port, int kind, const char **error_r)
{
	char addrs[1024];
	snprintf(addrs, sizeof(addrs), "%s", list);
	char *save = NULL;
	for (char *a = strtok_r(addrs, " \t,", &save); a != NULL;
	     a = strtok_r(NULL, " \t,", &save)) {
		if (port != 0 && listen_add(m, a, port, 0, kind, error_r) < 0)
			return -1;
		if (tls_port != 0 &&
		    listen_add(m, a, tls_port, 1, kind, error_r) < 0)
			return -1;
	}
	return 0;
}

int master_listen_all(struct master *m, const char **error_r)
{
	const struct config *cfg = m->cfg;
	if (listen_list(m, cfg->c2s_addresses, cfg->c2s_port,
			cfg->c2s_tls_port, LISTEN_C2S, error_r) < 0)
		return -1;
	if (m->nlisteners == 0) {
		*error_r = "no usable listener in c2s.addresses";
		return -1;
	}
	/* The HTTP front (metrics, health): none is fine, e.g. no IPv6. */
	if (listen_list(m, cfg->http_addresses, cfg->http_port,
			cfg->http_tls_port, LISTEN_HTTP, error_r) < 0)
		return -1;
	/* XEP-0114 components: only when some are configured */
	if (cfg->component_secrets_file[0] != '\0' &&
	    listen_list(m, cfg->component_addresses, cfg->component_port, 0,
			LISTEN_COMPONENT, error_r) < 0)
		return -1;
	/* Federation (s2s_in.c): s2s.port 0 and s2s.tls_port 0 bind none. */
	return listen_list(m, cfg->s2s_addresses, cfg->s2s_port,
			   cfg->s2s_tls_port, LISTEN_S2S, error_r);
}

/* In a worker: close every other slot's listening sockets. */
void master_listen_close_others(struct master *m, unsigned keep_slot)
{
	for (unsigned i = 0; i < m->nlisteners; i++)
		for (unsigned s = 0; s < m->nworkers; s++)
			if (s != keep_slot)
				close(m->listeners[i].fds[s]);
}

/*
 * s2s_dial.c - find and connect to a remote domain's server (s2s_dial.h)
 * on the worker's loop: c-ares (one channel per worker, its sockets in
 * the worker's epoll) asks for the _xmpps-server and _xmpp-server SRV
 * records at once, the targets are merged (XEP-0368: one RFC 2782 set,
 * priority then weighted random), each target's A/AAAA records come from
 * ares_getaddrinfo, and the addresses are tried RFC 8305 style (IPv6 and
 * IPv4 interleaved, a new attempt every s2s.connect_stagger while earlier
 * ones are pending, a failed one moves on at once, the first to connect
 * wins).  Failure policy: every dial ends in exactly one callback, run
 * from s2s_dial_run_timers (never from s2s_dial_start or inside c-ares),
 * unless cancelled; a DNS step has its own deadline (s2s.dns_timeout) so
 * a resolver that never answers still ends the dial; out of memory ends
 * the dial with remote-server-timeout (nothing was learned about the
 * domain) and a line in the log.
 */
#include "worker.h"
#include "s2s_dial.h"
#include "hostport.h"
#include "log.h"
#include "util.h"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define DIAL_DEFAULT_PORT 5269  /* RFC 6120 3.2.2 fallback */
#define DIAL_ADDRS_MAX 64       /* addresses kept per target */
#define DIAL_ERR_NOT_FOUND "remote-server-not-found"
#define DIAL_ERR_TIMEOUT "remote-server-timeout"

enum dial_obj {
	DIAL_OBJ_ARES = 0x5a1,  /* a c-ares socket (struct dial_watch) */
	DIAL_OBJ_ATTEMPT,       /* a connect() in progress */
};

struct dial_watch {
	int obj;                /* DIAL_OBJ_ARES: first, see dial_event */
	int fd;
	struct dial_watch *next;
};

struct s2s_dial_state {
	ares_channel ch;
	int have_channel;
	char *servers;          /* s2s.dns_servers the channel was made with */
	struct dial_watch *watches;
	struct s2s_dial *live;      /* dials running */
	struct s2s_dial *finished;  /* ended, callback not run yet (FIFO) */
	struct s2s_dial *finished_tail;
	unsigned queries;       /* c-ares queries not answered yet */
};

/* The argument of a c-ares callback: it outlives a cancelled dial (d is
 * then NULL) until c-ares answers or gives up. */
struct dial_query {
	struct s2s_dial *d;
	struct s2s_dial_state *st;
	int tls;                /* SRV: the _xmpps-server one */
};

struct dial_target {
	char host[256];
	uint16_t port, prio, weight;
	int tls;
};

struct dial_attempt {
	int obj;                /* DIAL_OBJ_ATTEMPT: first, see dial_event */
	int fd;
	struct s2s_dial *d;
	struct dial_attempt *next;
	int64_t deadline_ms;
	const struct dial_target *t;
	char peer[64];
};

struct s2s_dial {
	struct worker *w;
	struct s2s_dial *next;  /* in st->live or st->finished */
	char domain[256];
	s2s_dial_cb cb;
	void *ctx;
	struct dial_query *srvq[2];     /* pending SRV queries: xmpp, xmpps */
	struct dial_query *addrq;       /* pending A/AAAA of a target */
	int64_t dns_deadline_ms;        /* of the pending DNS step, 0 none */
	struct dial_target *targets;    /* in the order they are tried */
	unsigned ntargets, nresolved;   /* targets, and how many asked */
	unsigned tcount[2], tcap;       /* SRV targets per service, room */
	int dot[2];                     /* a "." target per service */
	int srv_timeout;                /* an SRV query timed out */
	int srv_done;                   /* targets known (dial_srv_done) */
	const struct dial_target *cur;  /* whose addresses are in addrs */
	struct sockaddr_storage addrs[DIAL_ADDRS_MAX];
	unsigned naddrs, nextaddr;
	struct dial_attempt *attempts;
	unsigned tried;                 /* connect() attempts started */
	int64_t next_attempt_ms;        /* stagger: the next may start */
	unsigned timeouts, refusals;    /* how attempts and lookups ended */
	int dns_timeouts;
	int pumping, again;             /* dial_pump re-entered */
	int done, firing;
	const char *error;
	char last[200];                 /* the latest failure, for reason */
	char reason[768];
	struct s2s_dial_result res;
};

static void dial_pump(struct s2s_dial *d, int64_t now);

/* ---- c-ares sockets in the worker's epoll ------------------------------ */

static void dial_sock_state(void *data, ares_socket_t fd, int readable,
			    int writable)
{
	struct worker *w = data;
	struct s2s_dial_state *st = w->dial;
	struct dial_watch **pp = &st->watches, *wa;
	while ((wa = *pp) != NULL && wa->fd != fd)
		pp = &wa->next;
	if (!readable && !writable) {
		if (wa != NULL) {
			epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL);
			*pp = wa->next;
			free(wa);
		}
		return;
	}
	struct epoll_event ev = { .events = (readable ? EPOLLIN : 0u) |
					    (writable ? EPOLLOUT : 0u) };
	int op = EPOLL_CTL_MOD;
	if (wa == NULL) {
		wa = calloc(1, sizeof(*wa));
		if (wa == NULL) {
			/* the query times out through dial_run_timers */
			log_error("s2s dial: out of memory watching a DNS "
				  "socket");
			return;
		}
		wa->obj = DIAL_OBJ_ARES;
		wa->fd = fd;
		wa->next = st->watches;
		st->watches = wa;
		op = EPOLL_CTL_ADD;
	}
	ev.data.u64 = (uint64_t)(uintptr_t)wa | S2S_DIAL_EV_TAG;
	if (epoll_ctl(w->epfd, op, fd, &ev) < 0)
		log_error("s2s dial: epoll_ctl(DNS socket %d) failed: %m", fd);
}

static int dial_channel_new(struct worker *w, struct s2s_dial_state *st)
{
	const char *spec = w->cfg->s2s_dns_servers;
	char csv[1024];
	const char *error;
	if (hostport_list_csv(spec, csv, sizeof(csv), &error) < 0) {
		log_error("s2s.dns_servers: %s", error);
		return -1;
	}
	struct ares_options o;
	memset(&o, 0, sizeof(o));
	int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS |
		   ARES_OPT_TRIES | ARES_OPT_FLAGS;
	o.sock_state_cb = dial_sock_state;
	o.sock_state_cb_data = w;
	/* c-ares retries within s2s.dns_timeout; dial_run_timers holds
	 * each DNS step to it whatever c-ares does */
	uint64_t t = w->cfg->s2s_dns_timeout / 3;
	o.timeout = (int)(t < 100 ? 100 : t);
	o.tries = 3;
	o.flags = ARES_FLAG_NOCHECKRESP;
	if (csv[0] != '\0') {
		/* only the configured servers: not /etc/hosts either */
		o.lookups = (char *)"b";
		mask |= ARES_OPT_LOOKUPS;
	}
	int rc = ares_init_options(&st->ch, &o, mask);
	if (rc != ARES_SUCCESS) {
		log_error("s2s dial: c-ares set-up failed: %s",
			  ares_strerror(rc));
		return -1;
	}
	if (csv[0] != '\0' &&
	    (rc = ares_set_servers_ports_csv(st->ch, csv)) != ARES_SUCCESS) {
		log_error("s2s.dns_servers '%s': %s", spec, ares_strerror(rc));
		ares_destroy(st->ch);
		return -1;
	}
	free(st->servers);
	st->servers = strdup(spec);
	st->have_channel = 1;
	return 0;
}

int s2s_dial_init(struct worker *w)
{
	if (w->dial != NULL)
		return 0;
	int rc = ares_library_init(ARES_LIB_INIT_ALL);
	if (rc != ARES_SUCCESS) {
		log_error("s2s dial: c-ares: %s", ares_strerror(rc));
		return -1;
	}
	struct s2s_dial_state *st = calloc(1, sizeof(*st));
	if (st == NULL)
		return -1;
	w->dial = st;
	/* without a channel dials fail with remote-server-not-found and
	 * the next reload of s2s.dns_servers tries again; the rest of the
	 * worker is not held up by it */
	if (dial_channel_new(w, st) < 0)
		st->servers = strdup(w->cfg->s2s_dns_servers);
	return 0;
}

/* s2s.dns_servers changed by a reload: a new channel once no query is
 * outstanding on the old one (destroying it would fail them). */
static void dial_check_servers(struct worker *w, struct s2s_dial_state *st)
{
	if (st->servers != NULL &&
	    strcmp(st->servers, w->cfg->s2s_dns_servers) == 0)
		return;
	if (st->queries > 0)
		return;
	if (st->have_channel)
		ares_destroy(st->ch);
	st->have_channel = 0;
	if (dial_channel_new(w, st) == 0) {
		log_info("s2s dial: DNS servers now '%s'",
			 w->cfg->s2s_dns_servers[0] ? w->cfg->s2s_dns_servers
						    : "the system's");
	} else {
		/* keep trying each turn; dials meanwhile fail at once */
		free(st->servers);
		st->servers = strdup(w->cfg->s2s_dns_servers);
	}
}

/* ---- ending a dial -------------------------------------------------- */

static void dial_attempt_close(struct dial_attempt *a)
{
	epoll_ctl(a->d->w->epfd, EPOLL_CTL_DEL, a->fd, NULL);
	close(a->fd);
	free(a);
}

static void dial_detach_queries(struct s2s_dial *d)
{
	for (int i = 0; i < 2; i++)
		if (d->srvq[i] != NULL) {
			d->srvq[i]->d = NULL;
			d->srvq[i] = NULL;
		}
	if (d->addrq != NULL) {
		d->addrq->d = NULL;
		d->addrq = NULL;
	}
	d->dns_deadline_ms = 0;
}

static void dial_unlink(struct s2s_dial_state *st, struct s2s_dial *d)
{
	for (struct s2s_dial **pp = &st->live; *pp != NULL; pp = &(*pp)->next)
		if (*pp == d) {
			*pp = d->next;
			return;
		}
	struct s2s_dial *prev = NULL;
	for (struct s2s_dial **pp = &st->finished; *pp != NULL;
	     prev = *pp, pp = &(*pp)->next)
		if (*pp == d) {
			*pp = d->next;
			if (st->finished_tail == d)
				st->finished_tail = prev;
			return;
		}
}

/* The dial has its answer: stop everything, queue the callback. */
static void dial_finish(struct s2s_dial *d, const char *error)
{
	struct s2s_dial_state *st = d->w->dial;
	if (d->done)
		return;
	d->done = 1;
	d->error = error;
	dial_detach_queries(d);
	while (d->attempts != NULL) {
		struct dial_attempt *a = d->attempts;
		d->attempts = a->next;
		dial_attempt_close(a);
	}
	dial_unlink(st, d);
	d->next = NULL;
	if (st->finished_tail != NULL)
		st->finished_tail->next = d;
	else
		st->finished = d;
	st->finished_tail = d;
}

static void dial_fail(struct s2s_dial *d)
{
	const char *err = d->timeouts > 0 || d->dns_timeouts > 0
			  ? DIAL_ERR_TIMEOUT : DIAL_ERR_NOT_FOUND;
	if (d->tried > 0)
		snprintf(d->reason, sizeof(d->reason),
			 "%s: %u addresses tried (%u failed, %u timed out), "
			 "none connected; last: %s", d->domain, d->tried,
			 d->refusals, d->timeouts, d->last);
	else
		snprintf(d->reason, sizeof(d->reason), "%s: %s", d->domain,
			 d->last[0] ? d->last : "no address");
	dial_finish(d, err);
}

static void dial_note(struct s2s_dial *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void dial_note(struct s2s_dial *d, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d->last, sizeof(d->last), fmt, ap);
	va_end(ap);
}

/* ---- SRV records -------------------------------------------------------- */

/* RFC 2782: within each priority, records of weight 0 first, then pick
 * by a running sum of the weights against a random number in
 * [0, sum]; targets[] is sorted here. */
static void dial_order_targets(struct dial_target *t, unsigned n)
{
	/* by priority, zero weights first within it (insertion sort: n is
	 * bounded by s2s.dns_max_targets) */
	for (unsigned i = 1; i < n; i++) {
		struct dial_target x = t[i];
		unsigned j = i;
		while (j > 0 && (t[j - 1].prio > x.prio ||
				 (t[j - 1].prio == x.prio &&
				  t[j - 1].weight > 0 && x.weight == 0))) {
			t[j] = t[j - 1];
			j--;
		}
		t[j] = x;
	}
	for (unsigned start = 0; start < n;) {
		unsigned end = start;
		while (end < n && t[end].prio == t[start].prio)
			end++;
		for (unsigned i = start; i + 1 < end; i++) {
			uint32_t sum = 0;
			for (unsigned k = i; k < end; k++)
				sum += t[k].weight;
			uint32_t r = sum == 0 ? 0 : randombytes_uniform(sum + 1);
			uint32_t run = 0;
			unsigned pick = i;
			for (unsigned k = i; k < end; k++) {
				run += t[k].weight;
				if (run >= r) {
					pick = k;
					break;
				}
			}
			if (pick != i) {
				struct dial_target x = t[pick];
				memmove(&t[i + 1], &t[i],
					(pick - i) * sizeof(*t));
				t[i] = x;
			}
		}
		start = end;
	}
}

static int dial_add_target(struct s2s_dial *d, const char *host,
			   uint16_t port, uint16_t prio, uint16_t weight,
			   int tls)
{
	if (d->ntargets >= d->w->cfg->s2s_dns_max_targets)
		return 0;
	if (d->ntargets == d->tcap) {
		unsigned cap = d->tcap ? d->tcap * 2 : 4;
		struct dial_target *t = realloc(d->targets, cap * sizeof(*t));
		if (t == NULL)
			return -1;
		d->targets = t;
		d->tcap = cap;
	}
	struct dial_target *t = &d->targets[d->ntargets++];
	snprintf(t->host, sizeof(t->host), "%s", host);
	t->port = port;
	t->prio = prio;
	t->weight = weight;
	t->tls = tls;
	d->tcount[tls]++;
	return 0;
}

static void dial_srv_answer(void *arg, int status, int timeouts,
			    unsigned char *abuf, int alen)
{
	(void)timeouts;
	struct dial_query *q = arg;
	struct s2s_dial *d = q->d;
	int tls = q->tls;
	q->st->queries--;
	free(q);
	if (d == NULL)
		return;
	d->srvq[tls] = NULL;
	const char *svc = tls ? "_xmpps-server" : "_xmpp-server";
	struct ares_srv_reply *srv = NULL;
	if (status == ARES_SUCCESS)
		status = ares_parse_srv_reply(abuf, alen, &srv);
	if (status == ARES_ETIMEOUT) {
		d->srv_timeout = 1;
		dial_note(d, "%s._tcp.%s: DNS timed out", svc, d->domain);
	} else if (status != ARES_SUCCESS && status != ARES_ENOTFOUND &&
		   status != ARES_ENODATA && status != ARES_EDESTRUCTION) {
		dial_note(d, "%s._tcp.%s: %s", svc, d->domain,
			  ares_strerror(status));
	}
	for (struct ares_srv_reply *r = srv; r != NULL; r = r->next) {
		if (r->host[0] == '\0' || strcmp(r->host, ".") == 0) {
			d->dot[tls] = 1;
			continue;
		}
		if (dial_add_target(d, r->host, r->port, r->priority,
				    r->weight, tls) < 0) {
			dial_note(d, "out of memory");
			d->dns_timeouts++;
			dial_finish(d, DIAL_ERR_TIMEOUT);
			snprintf(d->reason, sizeof(d->reason),
				 "%s: out of memory", d->domain);
			break;
		}
	}
	if (srv != NULL)
		ares_free_data(srv);
	if (!d->done)
		dial_pump(d, time_now_ms());
}

/* Both SRV answers are in (or their time is up): the targets. */
static void dial_srv_done(struct s2s_dial *d)
{
	/* a "." target alone in its set means that service is not offered
	 * (RFC 2782); other targets in the same set are still used */
	for (int i = 0; i < 2; i++)
		if (d->dot[i] && d->tcount[i] == 0)
			dial_note(d, "%s._tcp.%s is \".\": not offered",
				  i ? "_xmpps-server" : "_xmpp-server",
				  d->domain);
	if (d->ntargets > 0) {
		dial_order_targets(d->targets, d->ntargets);
		return;
	}
	if (d->dot[0] || d->dot[1]) {
		/* XEP-0368: no A/AAAA fallback once SRV is in use */
		snprintf(d->reason, sizeof(d->reason),
			 "%s: the SRV records say it offers no XMPP service "
			 "(target \".\")", d->domain);
		dial_finish(d, DIAL_ERR_NOT_FOUND);
		return;
	}
	if (d->srv_timeout) {
		d->dns_timeouts++;
		dial_fail(d);
		return;
	}
	/* RFC 6120 3.2.2: no SRV: the domain itself on 5269 */
	if (dial_add_target(d, d->domain, DIAL_DEFAULT_PORT, 0, 0, 0) < 0) {
		snprintf(d->reason, sizeof(d->reason), "%s: out of memory",
			 d->domain);
		dial_finish(d, DIAL_ERR_TIMEOUT);
	}
}

/* ---- addresses -------------------------------------------------------- */

static void dial_addr_answer(void *arg, int status, int timeouts,
			     struct ares_addrinfo *res)
{
	(void)timeouts;
	struct dial_query *q = arg;
	struct s2s_dial *d = q->d;
	q->st->queries--;
	free(q);
	if (d == NULL) {
		if (res != NULL)
			ares_freeaddrinfo(res);
		return;
	}
	d->addrq = NULL;
	d->dns_deadline_ms = 0;
	const struct dial_target *t = &d->targets[d->nresolved - 1];
	if (status == ARES_ETIMEOUT) {
		d->dns_timeouts++;
		dial_note(d, "%s: DNS timed out", t->host);
	} else if (status != ARES_SUCCESS) {
		dial_note(d, "%s: %s", t->host,
			  status == ARES_ENOTFOUND ? "no such domain" :
			  status == ARES_ENODATA ? "no address"
						 : ares_strerror(status));
	}
	/* IPv6 and IPv4 interleaved, IPv6 first (RFC 8305 4), each
	 * family in the order DNS gave it (no RFC 6724 sort: it would
	 * open a socket per address, and loopback tests need the order) */
	struct ares_addrinfo_node *v6[DIAL_ADDRS_MAX], *v4[DIAL_ADDRS_MAX];
	unsigned n6 = 0, n4 = 0;
	for (struct ares_addrinfo_node *n = res ? res->nodes : NULL;
	     n != NULL; n = n->ai_next) {
		if (n->ai_family == AF_INET6 && n6 < DIAL_ADDRS_MAX)
			v6[n6++] = n;
		else if (n->ai_family == AF_INET && n4 < DIAL_ADDRS_MAX)
			v4[n4++] = n;
	}
	d->cur = t;
	d->naddrs = d->nextaddr = 0;
	for (unsigned i = 0; (i < n6 || i < n4) &&
			     d->naddrs < DIAL_ADDRS_MAX; i++) {
		struct ares_addrinfo_node *pick[2] = {
			i < n6 ? v6[i] : NULL, i < n4 ? v4[i] : NULL
		};
		for (int k = 0; k < 2 && d->naddrs < DIAL_ADDRS_MAX; k++) {
			if (pick[k] == NULL ||
			    pick[k]->ai_addrlen > sizeof(d->addrs[0]))
				continue;
			struct sockaddr_storage *ss = &d->addrs[d->naddrs++];
			memset(ss, 0, sizeof(*ss));
			memcpy(ss, pick[k]->ai_addr, pick[k]->ai_addrlen);
			if (ss->ss_family == AF_INET6)
				((struct sockaddr_in6 *)ss)->sin6_port =
					htons(t->port);
			else
				((struct sockaddr_in *)ss)->sin_port =
					htons(t->port);
		}
	}
	if (status == ARES_SUCCESS && d->naddrs == 0)
		dial_note(d, "%s: no address", t->host);
	if (res != NULL)
		ares_freeaddrinfo(res);
	dial_pump(d, time_now_ms());
}

static void dial_resolve_next(struct s2s_dial *d, int64_t now)
{
	struct s2s_dial_state *st = d->w->dial;
	const struct dial_target *t = &d->targets[d->nresolved++];
	struct dial_query *q = calloc(1, sizeof(*q));
	if (q == NULL) {
		dial_note(d, "%s: out of memory", t->host);
		d->dns_timeouts++;
		return;
	}
	q->d = d;
	q->st = st;
	d->addrq = q;
	d->dns_deadline_ms = now + (int64_t)d->w->cfg->s2s_dns_timeout;
	st->queries++;
	/* absolute: the resolver's search list is not for other servers */
	char name[260];
	size_t len = strlen(t->host);
	snprintf(name, sizeof(name), "%s%s", t->host,
		 len > 0 && t->host[len - 1] == '.' ? "" : ".");
	struct ares_addrinfo_hints hints;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = ARES_AI_NOSORT;
	ares_getaddrinfo(st->ch, name, NULL, &hints, dial_addr_answer, q);
}

/* ---- connecting ----------------------------------------------------- */

static void dial_peer(const struct sockaddr_storage *ss, char *buf,
		      size_t size)
{
	char a[INET6_ADDRSTRLEN];
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)ss;
		inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
		snprintf(buf, size, "[%s]:%u", a, ntohs(s6->sin6_port));
	} else {
		const struct sockaddr_in *s4 = (const void *)ss;
		inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
		snprintf(buf, size, "%s:%u", a, ntohs(s4->sin_port));
	}
}

static void dial_attempt_failed(struct s2s_dial *d, const char *peer,
				int err)
{
	if (err == ETIMEDOUT)
		d->timeouts++;
	else
		d->refusals++;
	dial_note(d, "%s: %s", peer, err == ETIMEDOUT
		  ? "connect timed out" : strerror(err));
}

/* Start connect() to the next address; one that fails at once (out of
 * descriptors, no route) is counted and the caller moves on. */
static void dial_connect_next(struct s2s_dial *d, int64_t now)
{
	const struct sockaddr_storage *ss = &d->addrs[d->nextaddr++];
	char peer[64];
	dial_peer(ss, peer, sizeof(peer));
	d->tried++;
	d->next_attempt_ms = now + (int64_t)d->w->cfg->s2s_connect_stagger;
	socklen_t len = ss->ss_family == AF_INET6
			? sizeof(struct sockaddr_in6)
			: sizeof(struct sockaddr_in);
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK |
			SOCK_CLOEXEC, 0);
	if (fd < 0) {
		dial_attempt_failed(d, peer, errno);
		return;
	}
	if (connect(fd, (const struct sockaddr *)ss, len) < 0 &&
	    errno != EINPROGRESS) {
		int err = errno;
		close(fd);
		dial_attempt_failed(d, peer, err);
		return;
	}
	struct dial_attempt *a = calloc(1, sizeof(*a));
	if (a == NULL) {
		close(fd);
		dial_attempt_failed(d, peer, ENOMEM);
		return;
	}
	a->obj = DIAL_OBJ_ATTEMPT;
	a->fd = fd;
	a->d = d;
	a->t = d->cur;
	a->deadline_ms = now + (int64_t)d->w->cfg->s2s_connect_timeout;
	snprintf(a->peer, sizeof(a->peer), "%s", peer);
	struct epoll_event ev = { .events = EPOLLOUT };
	ev.data.u64 = (uint64_t)(uintptr_t)a | S2S_DIAL_EV_TAG;
	if (epoll_ctl(d->w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int err = errno;
		close(fd);
		free(a);
		dial_attempt_failed(d, peer, err);
		return;
	}
	a->next = d->attempts;
	d->attempts = a;
	log_debug("s2s dial %s: connecting to %s (%s%s)", d->domain, peer,
		  a->t->host, a->t->tls ? ", direct TLS" : "");
}

static void dial_attempt_remove(struct s2s_dial *d, struct dial_attempt *a)
{
	for (struct dial_attempt **pp = &d->attempts; *pp != NULL;
	     pp = &(*pp)->next)
		if (*pp == a) {
			*pp = a->next;
			return;
		}
}

static void dial_connected(struct s2s_dial *d, struct dial_attempt *a)
{
	dial_attempt_remove(d, a);
	epoll_ctl(d->w->epfd, EPOLL_CTL_DEL, a->fd, NULL);
	struct s2s_dial_result *r = &d->res;
	r->fd = a->fd;
	r->direct_tls = a->t->tls;
	snprintf(r->host, sizeof(r->host), "%s", a->t->host);
	r->port = a->t->port;
	snprintf(r->peer, sizeof(r->peer), "%s", a->peer);
	snprintf(d->reason, sizeof(d->reason), "%s: connected to %s (%s)",
		 d->domain, a->peer, a->t->host);
	free(a);
	dial_finish(d, NULL);
}

/* ---- the state machine ------------------------------------------------ */

static int dial_more_addresses(const struct s2s_dial *d)
{
	return d->nextaddr < d->naddrs &&
	       d->tried < d->w->cfg->s2s_connect_max_addresses;
}

/* Move the dial on as far as it can go now. */
static void dial_pump(struct s2s_dial *d, int64_t now)
{
	if (d->pumping) {
		d->again = 1;
		return;
	}
	d->pumping = 1;
	do {
		d->again = 0;
		if (d->done)
			break;
		if (d->srvq[0] != NULL || d->srvq[1] != NULL)
			break;
		if (!d->srv_done) {
			d->srv_done = 1;
			d->dns_deadline_ms = 0;
			dial_srv_done(d);
			if (d->done)
				break;
		}
		while (dial_more_addresses(d) &&
		       (d->attempts == NULL || now >= d->next_attempt_ms))
			dial_connect_next(d, now);
		if (!dial_more_addresses(d) && d->addrq == NULL &&
		    d->nresolved < d->ntargets &&
		    d->tried < d->w->cfg->s2s_connect_max_addresses) {
			dial_resolve_next(d, now);
			d->again = 1;
			continue;
		}
		if (!dial_more_addresses(d) && d->addrq == NULL &&
		    d->attempts == NULL)
			dial_fail(d);
	} while (d->again);
	d->pumping = 0;
}

static void dial_attempt_event(struct dial_attempt *a, uint32_t events)
{
	struct s2s_dial *d = a->d;
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err == 0 && !(events & (EPOLLERR | EPOLLHUP))) {
		dial_connected(d, a);
		return;
	}
	if (err == 0)
		err = ECONNRESET;
	dial_attempt_failed(d, a->peer, err);
	dial_attempt_remove(d, a);
	dial_attempt_close(a);
	/* a failure starts the next attempt at once (RFC 8305 5) */
	d->next_attempt_ms = 0;
	dial_pump(d, time_now_ms());
}

void s2s_dial_event(struct worker *w, uint64_t data, uint32_t events)
{
	struct s2s_dial_state *st = w->dial;
	int *obj = (int *)(uintptr_t)data;
	if (st == NULL)
		return;
	if (*obj == DIAL_OBJ_ATTEMPT) {
		dial_attempt_event((struct dial_attempt *)obj, events);
		return;
	}
	const struct dial_watch *wa = (const struct dial_watch *)obj;
	ares_socket_t fd = wa->fd;
	ares_process_fd(st->ch,
			events & (EPOLLIN | EPOLLERR | EPOLLHUP)
			? fd : ARES_SOCKET_BAD,
			events & (EPOLLOUT | EPOLLERR | EPOLLHUP)
			? fd : ARES_SOCKET_BAD);
}

/* ---- the API ------------------------------------------------------------ */

struct s2s_dial *s2s_dial_start(struct worker *w, const char *domain,
				s2s_dial_cb cb, void *ctx)
{
	struct s2s_dial_state *st = w->dial;
	struct s2s_dial *d = calloc(1, sizeof(*d));
	if (d == NULL)
		return NULL;
	d->w = w;
	d->cb = cb;
	d->ctx = ctx;
	d->res.fd = -1;
	snprintf(d->domain, sizeof(d->domain), "%s", domain);
	if (st == NULL || !st->have_channel) {
		/* the reply still waits for the loop (dial_finish queues it) */
		if (st == NULL) {
			free(d);
			return NULL;
		}
		d->next = st->live;
		st->live = d;
		snprintf(d->reason, sizeof(d->reason),
			 "%s: no DNS resolver (s2s.dns_servers)", domain);
		dial_finish(d, DIAL_ERR_NOT_FOUND);
		return d;
	}
	d->next = st->live;
	st->live = d;
	size_t len = strlen(domain);
	if (len == 0 || len >= 254 || domain[0] == '.') {
		snprintf(d->reason, sizeof(d->reason),
			 "'%.64s' is not a domain name", domain);
		dial_finish(d, DIAL_ERR_NOT_FOUND);
		return d;
	}
	int64_t now = time_now_ms();
	d->dns_deadline_ms = now + (int64_t)w->cfg->s2s_dns_timeout;
	d->pumping = 1;         /* answers c-ares gives at once wait */
	for (int tls = 1; tls >= 0; tls--) {
		char name[300];
		snprintf(name, sizeof(name), "%s._tcp.%s%s",
			 tls ? "_xmpps-server" : "_xmpp-server", domain,
			 domain[len - 1] == '.' ? "" : ".");
		struct dial_query *q = calloc(1, sizeof(*q));
		if (q == NULL) {
			d->pumping = 0;
			s2s_dial_cancel(d);
			return NULL;
		}
		q->d = d;
		q->st = st;
		q->tls = tls;
		d->srvq[tls] = q;
		st->queries++;
		ares_query(st->ch, name, ns_c_in, ns_t_srv, dial_srv_answer, q);
	}
	d->pumping = 0;
	if (d->again)
		dial_pump(d, now);
	return d;
}

void s2s_dial_cancel(struct s2s_dial *d)
{
	if (d == NULL || d->firing)
		return;
	struct s2s_dial_state *st = d->w->dial;
	dial_detach_queries(d);
	while (d->attempts != NULL) {
		struct dial_attempt *a = d->attempts;
		d->attempts = a->next;
		dial_attempt_close(a);
	}
	dial_unlink(st, d);
	if (d->done && d->error == NULL && d->res.fd >= 0)
		close(d->res.fd);
	free(d->targets);
	free(d);
}

int s2s_dial_next_timeout(struct worker *w, int64_t now_ms)
{
	struct s2s_dial_state *st = w->dial;
	if (st == NULL)
		return -1;
	if (st->finished != NULL)
		return 0;
	int64_t next = -1;
#define DIAL_NEXT(t) do { if ((t) > 0 && (next < 0 || (t) < next)) \
		next = (t); } while (0)
	for (const struct s2s_dial *d = st->live; d != NULL; d = d->next) {
		DIAL_NEXT(d->dns_deadline_ms);
		for (const struct dial_attempt *a = d->attempts; a != NULL;
		     a = a->next)
			DIAL_NEXT(a->deadline_ms);
		if (d->attempts != NULL && dial_more_addresses(d))
			DIAL_NEXT(d->next_attempt_ms);
	}
	if (st->have_channel && st->queries > 0) {
		struct timeval tv, *tvp = ares_timeout(st->ch, NULL, &tv);
		if (tvp != NULL)
			DIAL_NEXT(now_ms + tvp->tv_sec * 1000 +
				  (tvp->tv_usec + 999) / 1000);
	}
#undef DIAL_NEXT
	if (next < 0)
		return -1;
	return next <= now_ms ? 0 : (int)(next - now_ms > 60000
					  ? 60000 : next - now_ms);
}

/* A DNS step past s2s.dns_timeout: what c-ares still owes is ignored. */
static void dial_dns_expired(struct s2s_dial *d)
{
	if (d->srvq[0] != NULL || d->srvq[1] != NULL) {
		for (int i = 0; i < 2; i++)
			if (d->srvq[i] != NULL)
				dial_note(d, "%s._tcp.%s: DNS timed out",
					  i ? "_xmpps-server" : "_xmpp-server",
					  d->domain);
		d->srv_timeout = 1;
	} else if (d->addrq != NULL) {
		d->dns_timeouts++;
		dial_note(d, "%s: DNS timed out",
			  d->targets[d->nresolved - 1].host);
	}
	dial_detach_queries(d);
}

void s2s_dial_run_timers(struct worker *w, int64_t now_ms)
{
	struct s2s_dial_state *st = w->dial;
	if (st == NULL)
		return;
	dial_check_servers(w, st);
	if (st->have_channel && st->queries > 0)
		ares_process_fd(st->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	struct s2s_dial *next;
	for (struct s2s_dial *d = st->live; d != NULL; d = next) {
		next = d->next;
		if (d->dns_deadline_ms > 0 && now_ms >= d->dns_deadline_ms)
			dial_dns_expired(d);
		struct dial_attempt *an;
		for (struct dial_attempt *a = d->attempts; a != NULL; a = an) {
			an = a->next;
			if (now_ms < a->deadline_ms)
				continue;
			dial_attempt_failed(d, a->peer, ETIMEDOUT);
			dial_attempt_remove(d, a);
			dial_attempt_close(a);
		}
		dial_pump(d, now_ms);
	}
	/* callbacks last, one at a time: each may start or cancel dials */
	while (st->finished != NULL) {
		struct s2s_dial *d = st->finished;
		st->finished = d->next;
		if (st->finished == NULL)
			st->finished_tail = NULL;
		d->next = NULL;
		d->firing = 1;
		if (d->error != NULL)
			d->cb(d->ctx, NULL, d->error, d->reason);
		else
			d->cb(d->ctx, &d->res, NULL, d->reason);
		free(d->targets);
		free(d);
	}
}

void s2s_dial_shutdown(struct worker *w)
{
	struct s2s_dial_state *st = w->dial;
	if (st == NULL)
		return;
	unsigned n = 0;
	while (st->live != NULL) {
		n++;
		s2s_dial_cancel(st->live);
	}
	while (st->finished != NULL) {
		n++;
		s2s_dial_cancel(st->finished);
	}
	if (n > 0)
		log_debug("s2s dial: %u dials cancelled at exit", n);
	if (st->have_channel)
		ares_destroy(st->ch);       /* frees what it still owes */
	while (st->watches != NULL) {
		struct dial_watch *wa = st->watches;
		st->watches = wa->next;
		free(wa);
	}
	free(st->servers);
	free(st);
	w->dial = NULL;
	ares_library_cleanup();
}

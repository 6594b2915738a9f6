/*
 * dialtool.c - run worker/s2s_dial.c on a loop of its own, the way a
 * worker does (epoll, s2s_dial_event, s2s_dial_run_timers), and print
 * how each dial ended; tests/bb/test_dial.py drives it against the DNS
 * lab and listening sockets.
 *
 *   dialtool [-o key=value]... [-n COUNT] [-c] DOMAIN
 *
 * -o sets a config key (s2s.dns_servers, s2s.connect_timeout, ...); -n
 * dials COUNT times one after the other; -c cancels each dial right
 * after starting it (nothing may be printed but "cancelled").  Each
 * result is one line:
 *   ok host=HOST port=PORT tls=0|1 peer=ADDR:PORT
 *   error CONDITION REASON
 * Exit 0 when every dial ended once, 2 on a contract breach (callback
 * inside s2s_dial_start, twice, or not within 120 s).
 */
#include "worker/worker.h"
#include "worker/s2s_dial.h"
#include "config.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

static int in_start, calls;

static void dialtool_done(void *ctx, const struct s2s_dial_result *r,
			  const char *error, const char *reason)
{
	(void)ctx;
	if (in_start) {
		printf("BUG callback inside s2s_dial_start\n");
		exit(2);
	}
	calls++;
	if (error != NULL) {
		printf("error %s %s\n", error, reason);
	} else {
		printf("ok host=%s port=%u tls=%d peer=%s\n", r->host,
		       r->port, r->direct_tls, r->peer);
		close(r->fd);
	}
	fflush(stdout);
}

static int dialtool_run(struct worker *w, const char *domain, int cancel)
{
	calls = 0;
	in_start = 1;
	struct s2s_dial *d = s2s_dial_start(w, domain, dialtool_done, NULL);
	in_start = 0;
	if (d == NULL) {
		printf("BUG s2s_dial_start returned NULL\n");
		return -1;
	}
	if (cancel) {
		s2s_dial_cancel(d);
		printf("cancelled\n");
	}
	int64_t deadline = time_now_ms() + 120000;
	/* a cancelled dial: a few turns to show no callback comes */
	int turns = cancel ? 5 : -1;
	while (time_now_ms() < deadline && turns != 0) {
		struct epoll_event evs[16];
		int64_t now = time_now_ms();
		int t = s2s_dial_next_timeout(w, now);
		if (cancel)
			t = 20;
		if (t < 0 || t > 1000)
			t = 1000;
		int n = epoll_wait(w->epfd, evs, 16, t);
		if (n < 0 && errno != EINTR)
			return -1;
		w->now_ms = time_now_ms();
		for (int i = 0; i < n; i++) {
			uint64_t data = evs[i].data.u64;
			if (!(data & S2S_DIAL_EV_TAG)) {
				printf("BUG untagged epoll data\n");
				return -1;
			}
			s2s_dial_event(w, data & ~(uint64_t)S2S_DIAL_EV_TAG,
				       evs[i].events);
		}
		s2s_dial_run_timers(w, w->now_ms);
		if (turns > 0)
			turns--;
		if (!cancel && calls > 0)
			break;
	}
	if (calls != (cancel ? 0 : 1)) {
		printf("BUG %d callbacks\n", calls);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static struct worker w;
	struct config *cfg = config_new();
	const char *error;
	int count = 1, cancel = 0, opt;
	if (sodium_init() < 0)
		return 1;
	while ((opt = getopt(argc, argv, "o:n:cv")) != -1) {
		if (opt == 'o' && config_set(cfg, optarg, &error) < 0) {
			fprintf(stderr, "dialtool: %s\n", error);
			return 1;
		} else if (opt == 'n') {
			count = atoi(optarg);
		} else if (opt == 'c') {
			cancel = 1;
		} else if (opt == 'v') {
			log_set_level(LOG_LEVEL_DEBUG);
		} else if (opt == '?') {
			return 1;
		}
	}
	if (optind + 1 != argc || count < 1) {
		fprintf(stderr, "usage: dialtool [-o key=value]... [-n COUNT] "
			"[-c] [-v] DOMAIN\n");
		return 1;
	}
	if (config_check(cfg, &error) < 0 &&
	    strstr(error, "s2s.") != NULL) {
		fprintf(stderr, "dialtool: %s\n", error);
		return 1;
	}
	log_set_role("dialtool");
	w.cfg = cfg;
	w.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w.epfd < 0 || s2s_dial_init(&w) < 0)
		return 1;
	int rc = 0;
	for (int i = 0; i < count && rc == 0; i++)
		rc = dialtool_run(&w, argv[optind], cancel);
	s2s_dial_shutdown(&w);
	close(w.epfd);
	config_free(&cfg);
	return rc < 0 ? 2 : 0;
}

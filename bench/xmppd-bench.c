/*
 * xmppd-bench.c - the load tool's command line: options, checks, the
 * server address, the open-file limit; then parent.c runs the benchmark.
 * Output: one "key: value" line per figure and a final "RESULT {json}".
 * Exit status: 0 clean run, 1 failed connections or lost, duplicated or
 * misrouted messages (losses to --drop-clients streams excepted) or, with
 * --storm, a session that was not resumed, or with --muc-rooms a join
 * that failed, a refused groupchat message or an incomplete history,
 * 2 usage or setup error.
 */
#include "bench.h"

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

void bench_fatal(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "xmppd-bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: xmppd-bench [options]\n"
"  -H, --host ADDR           server address (127.0.0.1)\n"
"  -p, --port N              port (5222; 5223 with --direct-tls)\n"
"  -d, --domain D            XMPP domain (localhost)\n"
"  -u, --user-pattern P      account name pattern with one %%d (user%%d)\n"
"  -f, --first N             account number of the first client (1)\n"
"  -w, --password S          password of every account (password)\n"
"  -n, --clients N           clients (100)\n"
"  -r, --connect-rate N      logins started per second, total (500; 0: all)\n"
"      --max-pending N       logins in flight per process (1000)\n"
"  -m, --msg-rate N          messages per second, total (100)\n"
"  -t, --duration S          seconds of messages (10)\n"
"  -b, --body-size B         bytes of message body (64)\n"
"  -M, --mech M              PLAIN, SCRAM-SHA-1 or SCRAM-SHA-256 (default)\n"
"      --direct-tls          TLS from the first byte (XEP-0368)\n"
"  -P, --processes N         worker processes (1)\n"
"  -S, --sources K           bind clients to 127.0.0.2 .. 127.0.0.(K+1)\n"
"      --server-pid-file F   server master's pid file (for RSS and CPU)\n"
"      --server-pids P,..    server pids (their children are added)\n"
"      --idle-hold S         log in, hold idle S seconds, no messages\n"
"      --login-only          log in, report, log out\n"
"      --drop-clients K      K clients close their streams at half time\n"
"      --lost-file F         write 'sender seq recipient to_dropped' per loss\n"
"      --login-timeout S     a login slower than this fails (30)\n"
"      --drain S             longest wait for late messages (10)\n"
"      --settle S            wait S seconds after the logins, before the\n"
"                            online sample and the messages (a cluster's\n"
"                            session directory reaching every node) (0)\n"
"      --quiet S             end the wait after S without deliveries (1)\n"
"      --sm                  XEP-0198: <enable resume='true'/> after bind,\n"
"                            answer <r/> with <a h/>\n"
"      --storm               reconnect storm (implies --sm): log in, reset\n"
"                            every stream at once (RST), hold, all resume\n"
"      --storm-hold S        seconds the sessions stay detached (5)\n"
"      --resume-rate N       resumptions started per second (0: all)\n"
"      --drop-at-enable      the storm: reset each stream as soon as it is\n"
"                            enabled, before any presence (no more than\n"
"                            --max-pending streams at once: memory per\n"
"                            detached session without online ones before)\n"
"      --csi                 XEP-0352: even-numbered clients go inactive\n"
"                            (and only receive)\n"
"      --mix-presence F      share of sends that are directed presence (0)\n"
"      --mix-chatstate F     share of sends that are chat states (0)\n"
"      --pairs               client i of the first half sends only to client\n"
"                            i + N/2 of the second half, who only receives\n"
"      --partner-host ADDR   the second half logs in here (implies --pairs)\n"
"      --partner-port N      ... on this port (--port)\n"
"      --partner-domain D    ... for this domain (--domain): with another\n"
"                            server, every message is a federated one\n"
"      --partner-pids P,..   the partner server's pids (its CPU apart)\n"
"      --watch NAME=P,..     other processes (and their children) sampled\n"
"                            with the server: CPU and memory reported apart\n"
"                            as watch_NAME_* (NAME: [a-z0-9_], up to 4)\n"
"      --pep K               PEP burst (XEP-0163, OMEMO-style): client i is\n"
"                            mutually subscribed with i+-1..i+-K/2 (mod N;\n"
"                            K even, 2..62); logs in with XEP-0115 caps\n"
"                            (devicelist+notify), publishes its devicelist\n"
"                            and a ~4 KB bundle (access open), expects K+1\n"
"                            devicelist events (contacts and its own)\n"
"      --pep-phase P         both (default): the roster pass (untimed, over\n"
"                            the wire: subscribe/subscribed until every\n"
"                            pair is 'both'), then the burst; setup; burst\n"
"      --pep-setup-timeout S longest roster pass (300)\n"
"                            (the burst ends when every pair and publish\n"
"                            is in, after --drain S, or 12 s (or --quiet)\n"
"                            without progress)\n"
"      --muc-rooms R         group chat (XEP-0045): the clients join R rooms\n"
"                            (client i: room i %% R, nick u<i>; rooms\n"
"                            RUN-r@SERVICE, new each run) with maxstanzas\n"
"                            0; the messages are groupchat, each checked\n"
"                            at every member (the sender's reflection too)\n"
"      --muc-service S       the MUC service (conference.DOMAIN)\n"
"      --join-rate N         joins started per second, total (200; 0: all)\n"
"      --join-timeout S      a join without status 110 fails (60)\n"
"      --history-joiners K   the last K clients join after the messages,\n"
"                            with maxstanzas=N, timed to the subject (0)\n"
"      --history-stanzas N   their maxstanzas (20)\n"
"      --history-join-rate N their joins per second, total (10)\n");
}

enum {
	OPT_MAX_PENDING = 256, OPT_DIRECT_TLS, OPT_PID_FILE, OPT_PIDS,
	OPT_IDLE_HOLD, OPT_LOGIN_ONLY, OPT_DROP, OPT_LOST_FILE,
	OPT_LOGIN_TIMEOUT, OPT_DRAIN, OPT_QUIET, OPT_SM, OPT_STORM,
	OPT_STORM_HOLD, OPT_RESUME_RATE, OPT_DROP_AT_ENABLE, OPT_CSI, OPT_MIX_PRESENCE, OPT_MIX_CHATSTATE,
	OPT_PAIRS, OPT_PARTNER_HOST, OPT_PARTNER_PORT, OPT_PARTNER_DOMAIN,
	OPT_PARTNER_PIDS, OPT_PEP, OPT_PEP_PHASE, OPT_PEP_SETUP_TIMEOUT,
	OPT_MUC_ROOMS, OPT_MUC_SERVICE, OPT_JOIN_RATE, OPT_JOIN_TIMEOUT,
	OPT_HISTORY_JOINERS, OPT_HISTORY_STANZAS, OPT_HISTORY_JOIN_RATE,
	OPT_WATCH, OPT_SETTLE,
};

static const struct option long_opts[] = {
	{ "host", required_argument, NULL, 'H' },
	{ "port", required_argument, NULL, 'p' },
	{ "domain", required_argument, NULL, 'd' },
	{ "user-pattern", required_argument, NULL, 'u' },
	{ "first", required_argument, NULL, 'f' },
	{ "password", required_argument, NULL, 'w' },
	{ "clients", required_argument, NULL, 'n' },
	{ "connect-rate", required_argument, NULL, 'r' },
	{ "max-pending", required_argument, NULL, OPT_MAX_PENDING },
	{ "msg-rate", required_argument, NULL, 'm' },
	{ "duration", required_argument, NULL, 't' },
	{ "body-size", required_argument, NULL, 'b' },
	{ "mech", required_argument, NULL, 'M' },
	{ "direct-tls", no_argument, NULL, OPT_DIRECT_TLS },
	{ "processes", required_argument, NULL, 'P' },
	{ "sources", required_argument, NULL, 'S' },
	{ "server-pid-file", required_argument, NULL, OPT_PID_FILE },
	{ "server-pids", required_argument, NULL, OPT_PIDS },
	{ "idle-hold", required_argument, NULL, OPT_IDLE_HOLD },
	{ "login-only", no_argument, NULL, OPT_LOGIN_ONLY },
	{ "drop-clients", required_argument, NULL, OPT_DROP },
	{ "lost-file", required_argument, NULL, OPT_LOST_FILE },
	{ "login-timeout", required_argument, NULL, OPT_LOGIN_TIMEOUT },
	{ "drain", required_argument, NULL, OPT_DRAIN },
	{ "quiet", required_argument, NULL, OPT_QUIET },
	{ "sm", no_argument, NULL, OPT_SM },
	{ "storm", no_argument, NULL, OPT_STORM },
	{ "storm-hold", required_argument, NULL, OPT_STORM_HOLD },
	{ "resume-rate", required_argument, NULL, OPT_RESUME_RATE },
	{ "drop-at-enable", no_argument, NULL, OPT_DROP_AT_ENABLE },
	{ "csi", no_argument, NULL, OPT_CSI },
	{ "mix-presence", required_argument, NULL, OPT_MIX_PRESENCE },
	{ "mix-chatstate", required_argument, NULL, OPT_MIX_CHATSTATE },
	{ "pairs", no_argument, NULL, OPT_PAIRS },
	{ "partner-host", required_argument, NULL, OPT_PARTNER_HOST },
	{ "partner-port", required_argument, NULL, OPT_PARTNER_PORT },
	{ "partner-domain", required_argument, NULL, OPT_PARTNER_DOMAIN },
	{ "partner-pids", required_argument, NULL, OPT_PARTNER_PIDS },
	{ "watch", required_argument, NULL, OPT_WATCH },
	{ "settle", required_argument, NULL, OPT_SETTLE },
	{ "pep", required_argument, NULL, OPT_PEP },
	{ "pep-phase", required_argument, NULL, OPT_PEP_PHASE },
	{ "pep-setup-timeout", required_argument, NULL, OPT_PEP_SETUP_TIMEOUT },
	{ "muc-rooms", required_argument, NULL, OPT_MUC_ROOMS },
	{ "muc-service", required_argument, NULL, OPT_MUC_SERVICE },
	{ "join-rate", required_argument, NULL, OPT_JOIN_RATE },
	{ "join-timeout", required_argument, NULL, OPT_JOIN_TIMEOUT },
	{ "history-joiners", required_argument, NULL, OPT_HISTORY_JOINERS },
	{ "history-stanzas", required_argument, NULL, OPT_HISTORY_STANZAS },
	{ "history-join-rate", required_argument, NULL, OPT_HISTORY_JOIN_RATE },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static unsigned opt_uint(const char *name, const char *s, unsigned max)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v > max)
		bench_fatal("--%s: not a number in 0..%u: %s", name, max, s);
	return (unsigned)v;
}

static double opt_double(const char *name, const char *s)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || *end != '\0' || !(v >= 0) || v > 1e9)
		bench_fatal("--%s: not a non-negative number: %s", name, s);
	return v;
}

static enum bench_mech opt_mech(const char *s)
{
	for (enum bench_mech m = BENCH_MECH_PLAIN; m <= BENCH_MECH_SCRAM_SHA256;
	     m++)
		if (strcasecmp(s, scram_mech_name(m)) == 0)
			return m;
	bench_fatal("--mech: PLAIN, SCRAM-SHA-1 or SCRAM-SHA-256, not %s", s);
}

static void opt_pids(const char *name, pid_t *pids, unsigned *n,
		     const char *s)
{
	char *copy = strdup(s), *save = NULL;
	if (copy == NULL)
		bench_fatal("out of memory");
	for (char *t = strtok_r(copy, ",", &save); t != NULL;
	     t = strtok_r(NULL, ",", &save)) {
		if (*n == BENCH_MAX_PIDS)
			bench_fatal("--%s: at most %d", name, BENCH_MAX_PIDS);
		pids[(*n)++] = (pid_t)opt_uint(name, t, 1u << 30);
	}
	free(copy);
}

/* --watch NAME=P,..: the name goes into figure keys, so it is short and
 * plain; the same name twice would make two figures with one key. */
static void opt_watch(struct bench_opts *o, const char *s)
{
	const char *eq = strchr(s, '=');
	size_t len = eq ? (size_t)(eq - s) : 0;
	if (o->n_watch == BENCH_MAX_WATCH)
		bench_fatal("--watch: at most %d", BENCH_MAX_WATCH);
	if (len == 0 || len > BENCH_WATCH_NAME_MAX ||
	    strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_") != len)
		bench_fatal("--watch NAME=P,..: NAME is 1 to %d of [a-z0-9_]",
			    BENCH_WATCH_NAME_MAX);
	struct bench_watch *w = &o->watch[o->n_watch];
	memcpy(w->name, s, len);
	w->name[len] = '\0';
	for (unsigned i = 0; i < o->n_watch; i++)
		if (strcmp(o->watch[i].name, w->name) == 0)
			bench_fatal("--watch %s given twice", w->name);
	opt_pids("watch", w->pids, &w->npids, eq + 1);
	if (w->npids == 0)
		bench_fatal("--watch %s: no pid", w->name);
	o->n_watch++;
}

/* The pattern goes to snprintf: exactly one %d (flags and width allowed),
 * any other '%' doubled. */
static void opt_check_pattern(const char *p)
{
	unsigned conv = 0;
	for (; *p != '\0'; p++) {
		if (*p != '%')
			continue;
		if (p[1] == '%') {
			p++;
			continue;
		}
		p += 1 + strspn(p + 1, "0-+ 123456789");
		if (*p != 'd' && *p != 'u')
			bench_fatal("--user-pattern: only %%d is allowed");
		conv++;
	}
	if (conv != 1)
		bench_fatal("--user-pattern: needs exactly one %%d");
}

static void opt_parse(struct bench_opts *o, int argc, char **argv)
{
	int c;
	while ((c = getopt_long(argc, argv, "H:p:d:u:f:w:n:r:m:t:b:M:P:S:h",
				long_opts, NULL)) != -1) {
		switch (c) {
		case 'H': o->host = optarg; break;
		case 'p': o->port = opt_uint("port", optarg, 65535); break;
		case 'd': o->domain = optarg; break;
		case 'u': o->user_pattern = optarg; break;
		case 'f': o->first = opt_uint("first", optarg, 1u << 30); break;
		case 'w': o->password = optarg; break;
		case 'n': o->clients = opt_uint("clients", optarg, 1u << 26); break;
		case 'r': o->connect_rate = opt_double("connect-rate", optarg); break;
		case OPT_MAX_PENDING:
			o->max_pending = opt_uint("max-pending", optarg, 1u << 26);
			break;
		case 'm': o->msg_rate = opt_double("msg-rate", optarg); break;
		case 't': o->duration = opt_double("duration", optarg); break;
		case 'b': o->body_size = opt_uint("body-size", optarg, 1u << 20); break;
		case 'M': o->mech = opt_mech(optarg); break;
		case OPT_DIRECT_TLS: o->direct_tls = true; break;
		case 'P': o->processes = opt_uint("processes", optarg, 1024); break;
		case 'S': o->sources = opt_uint("sources", optarg, 253); break;
		case OPT_PID_FILE: o->server_pid_file = optarg; break;
		case OPT_PIDS:
			opt_pids("server-pids", o->server_pids,
				 &o->n_server_pids, optarg);
			break;
		case OPT_IDLE_HOLD: o->idle_hold = opt_double("idle-hold", optarg); break;
		case OPT_LOGIN_ONLY: o->login_only = true; break;
		case OPT_DROP: o->drop_clients = opt_uint("drop-clients", optarg, 1u << 26); break;
		case OPT_LOST_FILE: o->lost_file = optarg; break;
		case OPT_LOGIN_TIMEOUT:
			o->login_timeout = opt_double("login-timeout", optarg);
			break;
		case OPT_DRAIN: o->drain = opt_double("drain", optarg); break;
		case OPT_QUIET: o->quiet = opt_double("quiet", optarg); break;
		case OPT_SM: o->sm = true; break;
		case OPT_STORM: o->storm = o->sm = true; break;
		case OPT_STORM_HOLD:
			o->storm_hold = opt_double("storm-hold", optarg);
			break;
		case OPT_RESUME_RATE:
			o->resume_rate = opt_double("resume-rate", optarg);
			break;
		case OPT_DROP_AT_ENABLE: o->drop_at_enable = true; break;
		case OPT_CSI: o->csi = true; break;
		case OPT_MIX_PRESENCE:
			o->mix_presence = opt_double("mix-presence", optarg);
			break;
		case OPT_MIX_CHATSTATE:
			o->mix_chatstate = opt_double("mix-chatstate", optarg);
			break;
		case OPT_PAIRS: o->pairs = true; break;
		case OPT_PARTNER_HOST:
			o->partner_host = optarg;
			o->pairs = true;
			break;
		case OPT_PARTNER_PORT:
			o->partner_port = opt_uint("partner-port", optarg, 65535);
			o->pairs = true;
			break;
		case OPT_PARTNER_DOMAIN:
			o->partner_domain = optarg;
			o->pairs = true;
			break;
		case OPT_PARTNER_PIDS:
			opt_pids("partner-pids", o->partner_pids,
				 &o->n_partner_pids, optarg);
			o->pairs = true;
			break;
		case OPT_WATCH: opt_watch(o, optarg); break;
		case OPT_SETTLE: o->settle = opt_double("settle", optarg); break;
		case OPT_PEP: o->pep_k = opt_uint("pep", optarg, 62); break;
		case OPT_PEP_PHASE:
			if (!strcmp(optarg, "both"))
				o->pep_phase = BENCH_PEP_BOTH;
			else if (!strcmp(optarg, "setup"))
				o->pep_phase = BENCH_PEP_SETUP;
			else if (!strcmp(optarg, "burst"))
				o->pep_phase = BENCH_PEP_BURST;
			else
				bench_fatal("--pep-phase: both, setup or burst");
			break;
		case OPT_PEP_SETUP_TIMEOUT:
			o->pep_setup_timeout = opt_double("pep-setup-timeout",
							  optarg);
			break;
		case OPT_MUC_ROOMS:
			o->muc_rooms = opt_uint("muc-rooms", optarg, 1u << 20);
			break;
		case OPT_MUC_SERVICE: o->muc_service = optarg; break;
		case OPT_JOIN_RATE:
			o->join_rate = opt_double("join-rate", optarg);
			break;
		case OPT_JOIN_TIMEOUT:
			o->join_timeout = opt_double("join-timeout", optarg);
			break;
		case OPT_HISTORY_JOINERS:
			o->history_joiners = opt_uint("history-joiners", optarg,
						      1u << 26);
			break;
		case OPT_HISTORY_STANZAS:
			o->history_stanzas = opt_uint("history-stanzas", optarg,
						      65535);
			break;
		case OPT_HISTORY_JOIN_RATE:
			o->history_join_rate = opt_double("history-join-rate",
							  optarg);
			break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind != argc) {
		usage(stderr);
		exit(2);
	}
}

static void opt_check_muc(struct bench_opts *o)
{
	static char service[128];
	if (o->muc_rooms == 0) {
		if (o->history_joiners > 0 || o->muc_service != NULL)
			bench_fatal("--history-joiners and --muc-service go "
				    "with --muc-rooms");
		return;
	}
	if (o->history_joiners >= o->clients ||
	    o->clients - o->history_joiners < o->muc_rooms)
		bench_fatal("--muc-rooms R: at least R clients besides the "
			    "--history-joiners");
	if (o->pairs || o->storm || o->csi || o->pep_k > 0 ||
	    o->idle_hold > 0 || o->login_only || o->drop_clients ||
	    o->mix_presence > 0 || o->mix_chatstate > 0)
		bench_fatal("--muc-rooms goes without --pairs, --storm, --csi, "
			    "--pep, --idle-hold, --login-only, --drop-clients, "
			    "--mix-*");
	if (o->muc_service == NULL) {
		snprintf(service, sizeof(service), "conference.%s", o->domain);
		o->muc_service = service;
	}
	if (strlen(o->muc_service) > 100 || strpbrk(o->muc_service, "'<&@/"))
		bench_fatal("--muc-service unusable");
}

static void opt_check(struct bench_opts *o)
{
	opt_check_pattern(o->user_pattern);
	if (o->clients == 0 || o->processes == 0 || o->max_pending == 0)
		bench_fatal("--clients, --processes and --max-pending must be > 0");
	if (o->processes > o->clients)
		o->processes = o->clients;
	if (o->drop_clients >= o->clients && o->drop_clients > 0)
		bench_fatal("--drop-clients must be less than --clients");
	if ((uint64_t)o->first + o->clients > (1u << 31))
		bench_fatal("--first + --clients is too large");
	if (o->mix_presence + o->mix_chatstate > 1)
		bench_fatal("--mix-presence + --mix-chatstate must be at most 1");
	if (o->drop_at_enable && !o->storm)
		bench_fatal("--drop-at-enable goes with --storm");
	if (o->storm && (o->idle_hold > 0 || o->login_only || o->drop_clients))
		bench_fatal("--storm goes without --idle-hold, --login-only and "
			    "--drop-clients");
	if (o->pairs && (o->clients % 2 != 0 || o->csi || o->storm ||
			 o->drop_clients || o->mix_presence > 0 ||
			 o->mix_chatstate > 0))
		bench_fatal("--pairs needs an even --clients and goes without "
			    "--csi, --storm, --drop-clients and --mix-*");
	if (o->pep_k > 0 && (o->pep_k % 2 != 0 || o->clients <= o->pep_k ||
			     strstr(o->user_pattern, "%d") == NULL))
		bench_fatal("--pep K: K even, fewer than --clients, and a "
			    "--user-pattern with a plain %%d");
	if (o->pep_k > 0 && (o->pairs || o->storm || o->csi || o->sm ||
			     o->idle_hold > 0 || o->login_only ||
			     o->drop_clients || o->mix_presence > 0 ||
			     o->mix_chatstate > 0))
		bench_fatal("--pep goes without --pairs, --sm, --storm, --csi, "
			    "--idle-hold, --login-only, --drop-clients, --mix-*");
	opt_check_muc(o);
	if (o->port == 0)
		o->port = o->direct_tls ? 5223 : 5222;
	if (o->partner_host == NULL)
		o->partner_host = o->host;
	if (o->partner_port == 0)
		o->partner_port = o->port;
	if (o->partner_domain == NULL)
		o->partner_domain = o->domain;
	if (strlen(o->domain) > 100 || strlen(o->password) > 200 ||
	    strlen(o->user_pattern) > 60 || strpbrk(o->domain, "'<&") ||
	    strlen(o->partner_domain) > 100 ||
	    strpbrk(o->partner_domain, "'<&") ||
	    strpbrk(o->user_pattern, "'<&@/"))
		bench_fatal("--domain, --user-pattern or --password unusable");
}

static void resolve_one(const char *host, unsigned portnum,
			struct sockaddr_storage *addr, socklen_t *len_r)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
	char port[16];
	snprintf(port, sizeof(port), "%u", portnum);
	int e = getaddrinfo(host, port, &hints, &res);
	if (e != 0)
		bench_fatal("%s: %s", host, gai_strerror(e));
	memcpy(addr, res->ai_addr, res->ai_addrlen);
	*len_r = res->ai_addrlen;
	freeaddrinfo(res);
}

static void resolve(struct bench_opts *o)
{
	resolve_one(o->host, o->port, &o->addr, &o->addr_len);
	resolve_one(o->partner_host, o->partner_port, &o->partner_addr,
		    &o->partner_addr_len);
	if (o->sources > 0 && (o->addr.ss_family != AF_INET ||
			       o->partner_addr.ss_family != AF_INET))
		bench_fatal("--sources needs an IPv4 server address");
}

/* Raise the soft open-file limit to the hard one; each process needs one
 * descriptor per client and a few more. */
static void raise_nofile(const struct bench_opts *o)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		bench_fatal("getrlimit: %s", strerror(errno));
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	uint64_t per = (o->clients + o->processes - 1) / o->processes;
	if (rl.rlim_cur != RLIM_INFINITY && per + 32 > rl.rlim_cur)
		bench_fatal("%llu clients per process need %llu open files, the "
			    "limit is %llu: use more --processes",
			    (unsigned long long)per,
			    (unsigned long long)per + 32,
			    (unsigned long long)rl.rlim_cur);
}

int main(int argc, char **argv)
{
	struct bench_opts o = {
		.host = "127.0.0.1", .domain = "localhost",
		.user_pattern = "user%d", .first = 1, .password = "password",
		.clients = 100, .connect_rate = 500, .max_pending = 1000,
		.msg_rate = 100, .duration = 10, .body_size = 64,
		.mech = BENCH_MECH_SCRAM_SHA256, .processes = 1,
		.login_timeout = 30, .drain = 10, .quiet = 1, .storm_hold = 5,
		.pep_setup_timeout = 300, .join_rate = 200, .join_timeout = 60,
		.history_stanzas = 20, .history_join_rate = 10,
	};
	opt_parse(&o, argc, argv);
	opt_check(&o);
	resolve(&o);
	raise_nofile(&o);
	o.run_id = (uint32_t)(bench_now_ns() ^ (int64_t)getpid() << 16);
	signal(SIGPIPE, SIG_IGN);
	if (o.pep_k == 0)
		return parent_run(&o);
	pep_caps_ver(o.pep_ver, sizeof(o.pep_ver));
	printf("pep_caps_ver: %s\n", o.pep_ver);
	o.msg_rate = 0;         /* no messages: the GO only starts progress */
	o.duration = 0;
	int rc = 0;
	if (o.pep_phase != BENCH_PEP_BURST) {
		o.pep_setup = true;
		rc = parent_run(&o);
		o.pep_setup = false;
		o.run_id++;     /* the pass's items are not the burst's */
	}
	if (o.pep_phase != BENCH_PEP_SETUP) {
		int r = parent_run(&o);
		rc = r > rc ? r : rc;
	}
	return rc;
}

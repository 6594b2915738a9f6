/*
 * xmppctl - xmppd's admin command line: options, the command table, and
 * the control-socket commands that print what the master answers
 * (status, reload, stop, bans, unban; sessions and kick are in
 * ctl/session.c).  The socket path comes from -s, or from the config
 * given with -c (default SYSCONFDIR/xmppd/xmppd.conf, the file make
 * install's xmppd reads).  `db ...` and `user ...` talk to PostgreSQL
 * directly with the config's db.conninfo (or -d), see ctl/user.c.
 * Failure policy: one clear line on stderr and exit 1; an unknown
 * command or wrong arguments print one line, then the usage, exit 2.
 */
#include "ctl.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

void ctl_usage(FILE *out)
{
	fprintf(out,
		"usage: xmppctl [-c CONFIG | -s SOCKET] [-o key=value]... "
		"[-d CONNINFO] [--json] COMMAND [ARG]...\n"
		"commands (control socket of the running server):\n"
		"  status              master and worker status\n"
		"  workers             same as status\n"
		"  reload              reload the configuration (prints the result)\n"
		"  stop                stop xmppd gracefully\n"
		"  sessions [JID|DOMAIN]\n"
		"                      sessions online: JID, worker, address, TLS,\n"
		"                      SASL mechanism, since, idle; then a total\n"
		"  kick JID [REASON] [--reset]\n"
		"                      end a full JID's session or every session of\n"
		"                      a bare JID: <policy-violation/> (--reset:\n"
		"                      <reset/>) with REASON as <text/>\n"
		"  bans                addresses and accounts refused after failed logins\n"
		"  unban ADDR|JID      lift a ban (an IPv6 address lifts its /64)\n"
		"  stats [--json|--openmetrics]\n"
		"                      the figures of GET /metrics: a table (totals\n"
		"                      and per worker), JSON, or the raw text\n"
		"  health              ready, or why not (as GET /health)\n"
		"  cluster status      the cluster: this node, its NATS link, every\n"
		"                      node seen (state, incarnation, sessions,\n"
		"                      workers, heartbeat age), or \"no cluster\"\n"
		"commands (PostgreSQL, db.conninfo or -d CONNINFO):\n"
		"  db migrate          create or upgrade the database schema\n"
		"  db status           show the database schema version\n"
		"  user add JID        add an account; the password is asked twice\n"
		"                      on a terminal, else read from stdin's first line\n"
		"  user passwd JID [--kick]\n"
		"                      set an account's password (asked the same way);\n"
		"                      --kick ends its live sessions with <reset/>\n"
		"  user del JID        delete an account and end its live sessions\n"
		"  user show JID       an account: created, roster, offline messages,\n"
		"                      vCard, blocklist, live sessions\n"
		"  user list [DOMAIN]  list accounts, one JID a line\n"
		"  archive purge JID   delete an account's (or a room's) archived\n"
		"                      messages\n"
		"  archive expire --before DATE\n"
		"                      delete archived messages older than DATE\n"
		"                      (YYYY-MM-DD or date and time; UTC)\n"
		"  help                this text\n"
		"--json: sessions, status, bans, health, cluster status, user list and\n"
		"user show\n"
		"print one JSON document.  Run as root, the PostgreSQL commands run\n"
		"as the configured daemon 'user' (xmppd) unless db.conninfo names\n"
		"another role (user=ROLE).\n"
		"exit status: 0 success, 1 failure (or nothing found: kick, user\n"
		"show), 2 unknown command or wrong arguments.\n");
}

/* "xmppctl: " and the line on stderr. */
static void __attribute__((format(printf, 1, 0)))
ctl_vsay(const char *fmt, va_list ap)
{
	fputs("xmppctl: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

int ctl_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	ctl_vsay(fmt, ap);
	va_end(ap);
	return CTL_EXIT_FAIL;
}

int ctl_usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	ctl_vsay(fmt, ap);
	va_end(ap);
	ctl_usage(stderr);
	return CTL_EXIT_USAGE;
}

bool ctl_take_flag(int *argc, char **argv, const char *flag)
{
	bool found = false;
	int j = 1;
	for (int i = 1; i < *argc; i++) {
		if (strcmp(argv[i], flag) == 0)
			found = true;
		else
			argv[j++] = argv[i];
	}
	*argc = j;
	return found;
}

struct config *ctl_load_config(const struct ctl_opts *opts,
			       bool allow_missing)
{
	const char *error;
	struct config *cfg = config_new();
	bool missing = !opts->config_given &&
		access(opts->config_path, F_OK) < 0 && errno == ENOENT;
	if (!(allow_missing && missing) &&
	    config_parse_file(cfg, opts->config_path, &error) < 0)
		goto fail;
	for (unsigned i = 0; i < opts->nov; i++) {
		if (config_set(cfg, opts->ov[i], &error) < 0)
			goto fail;
	}
	return cfg;
fail:
	if (missing)
		fprintf(stderr, "xmppctl: %s does not exist (the installed "
			"default): give the server's config with -c CONFIG, or "
			"its control socket with -s SOCKET\n", opts->config_path);
	else
		fprintf(stderr, "xmppctl: %s\n", error);
	config_free(&cfg);
	return NULL;
}

/* ---- control-socket commands ---------------------------------------- */

/* No arguments, the answer as it is (reload, stop). */
static int ctl_plain_command(const struct ctl_opts *opts, int argc,
			     char **argv)
{
	if (argc != 1)
		return ctl_usage_error("%s takes no arguments", argv[0]);
	char *path = ctl_socket_path(opts);
	int ret = path != NULL ? ctl_run(path, argv[0]) : CTL_EXIT_FAIL;
	free(path);
	return ret;
}

/* health: "ready", or "unavailable" and the reason (--json: {"ready":
 * true|false, "reason": "..."}); exit 0 only when ready, so that scripts
 * and monitors can use the exit status. */
static int ctl_health_command(const struct ctl_opts *opts, int argc,
			      char **argv)
{
	struct ctl_reply r;
	if (argc != 1)
		return ctl_usage_error("%s takes no arguments", argv[0]);
	char *path = ctl_socket_path(opts);
	int ret = path != NULL && ctl_request(path, "health", &r) == 0 ?
		CTL_EXIT_OK : CTL_EXIT_FAIL;
	free(path);
	if (ret != CTL_EXIT_OK)
		return ret;
	ret = CTL_EXIT_FAIL;
	for (size_t i = 0; i < r.n; i++) {
		const char *line = r.lines[i];
		bool ready = strncmp(line, "health\tready\t", 13) == 0 ||
			strcmp(line, "health\tready") == 0;
		if (ready)
			ret = CTL_EXIT_OK;
		if (strncmp(line, "health\t", 7) != 0) {
			if (!opts->json)
				puts(line);
			continue;
		}
		/* health<TAB>STATE<TAB>REASON */
		const char *reason = strchr(line + 7, '\t');
		if (!opts->json) {
			/* "ready", or "unavailable: REASON" */
			if (ready)
				puts("ready");
			else
				printf("unavailable: %s\n",
				       reason != NULL ? reason + 1 : "");
			continue;
		}
		printf("{\"ready\": %s, \"reason\": ", ready ? "true" : "false");
		ctl_json_string(stdout, reason != NULL ? reason + 1 : "");
		fputs("}\n", stdout);
	}
	ctl_reply_free(&r);
	return ret;
}

/* The lines of kind `kind` as a JSON array. */
static void ctl_json_lines(const struct ctl_reply *r, const char *kind)
{
	size_t klen = strlen(kind);
	bool first = true;
	fputc('[', stdout);
	for (size_t i = 0; i < r->n; i++) {
		if (strncmp(r->lines[i], kind, klen) != 0 ||
		    r->lines[i][klen] != '\t')
			continue;
		fputs(first ? "\n  " : ",\n  ", stdout);
		first = false;
		ctl_json_fields(stdout, r->lines[i]);
	}
	fputs(first ? "]" : "\n]", stdout);
}

/* The first line of kind `kind` as a JSON object ({} when absent). */
static void ctl_json_line(const struct ctl_reply *r, const char *kind)
{
	size_t klen = strlen(kind);
	for (size_t i = 0; i < r->n; i++)
		if (strncmp(r->lines[i], kind, klen) == 0 &&
		    r->lines[i][klen] == '\t') {
			ctl_json_fields(stdout, r->lines[i]);
			return;
		}
	fputs("{}", stdout);
}

/* status / workers: "master" and "worker" lines, or
 * {"master": {...}, "workers": [...]}. */
static int ctl_status_command(const struct ctl_opts *opts, int argc,
			      char **argv)
{
	struct ctl_reply r;
	if (argc != 1)
		return ctl_usage_error("%s takes no arguments", argv[0]);
	if (!opts->json)
		return ctl_plain_command(opts, argc, argv);
	char *path = ctl_socket_path(opts);
	int ret = path != NULL && ctl_request(path, "status", &r) == 0 ?
		CTL_EXIT_OK : CTL_EXIT_FAIL;
	if (ret == CTL_EXIT_OK) {
		fputs("{\"master\": ", stdout);
		ctl_json_line(&r, "master");
		fputs(", \"workers\": ", stdout);
		ctl_json_lines(&r, "worker");
		/* the cluster bridge's row, when the cluster is on */
		for (size_t i = 0; i < r.n; i++)
			if (strncmp(r.lines[i], "bridge\t", 7) == 0) {
				fputs(", \"bridge\": ", stdout);
				ctl_json_line(&r, "bridge");
				break;
			}
		fputs("}\n", stdout);
		ctl_reply_free(&r);
	}
	free(path);
	return ret;
}

/* bans: "ban" lines and a "bans" total, or
 * {"bans": [...], "total": N, "shown": M}. */
static int ctl_bans_command(const struct ctl_opts *opts, int argc,
			    char **argv)
{
	struct ctl_reply r;
	char total[32] = "0", shown[32] = "0";
	if (argc != 1)
		return ctl_usage_error("bans takes no arguments");
	if (!opts->json)
		return ctl_plain_command(opts, argc, argv);
	char *path = ctl_socket_path(opts);
	int ret = path != NULL && ctl_request(path, "bans", &r) == 0 ?
		CTL_EXIT_OK : CTL_EXIT_FAIL;
	if (ret == CTL_EXIT_OK) {
		for (size_t i = 0; i < r.n; i++)
			if (strncmp(r.lines[i], "bans\t", 5) == 0) {
				ctl_field(r.lines[i], "total", total,
					  sizeof(total));
				ctl_field(r.lines[i], "shown", shown,
					  sizeof(shown));
			}
		fputs("{\"bans\": ", stdout);
		ctl_json_lines(&r, "ban");
		printf(", \"total\": %ld, \"shown\": %ld}\n",
		       strtol(total, NULL, 10), strtol(shown, NULL, 10));
		ctl_reply_free(&r);
	}
	free(path);
	return ret;
}

static int ctl_unban_command(const struct ctl_opts *opts, int argc,
			     char **argv)
{
	char line[512];
	if (argc != 2)
		return ctl_usage_error("unban needs one address or JID");
	if (strpbrk(argv[1], "\n\t") != NULL ||
	    snprintf(line, sizeof(line), "unban\t%s", argv[1]) >=
	    (int)sizeof(line))
		return ctl_usage_error("unban: invalid address or JID");
	char *path = ctl_socket_path(opts);
	int ret = path != NULL ? ctl_run(path, line) : CTL_EXIT_FAIL;
	free(path);
	return ret;
}

/* ---- main ------------------------------------------------------------- */

enum { CTL_OPT_JSON = 256 };

/* Options into opts; -1 on a usage error (printed), 1 for -h.  Stops at
 * the command: its own options (--reset, --kick) are its business. */
static int ctl_parse_options(int argc, char **argv, struct ctl_opts *opts)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, CTL_OPT_JSON },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+c:s:o:d:h", longopts,
				 NULL)) != -1) {
		switch (ch) {
		case 'c':
			opts->config_path = optarg;
			opts->config_given = true;
			break;
		case 's': opts->socket_path = optarg; break;
		case 'd': opts->conninfo = optarg; break;
		case 'o':
			if (opts->nov == ARRAY_SIZE(opts->ov)) {
				ctl_usage_error("too many -o");
				return -1;
			}
			opts->ov[opts->nov++] = optarg;
			break;
		case CTL_OPT_JSON: opts->json = true; break;
		case 'h': return 1;
		case ':':
			ctl_usage_error("option -%c needs an argument", optopt);
			return -1;
		default:
			if (optopt != 0)
				ctl_usage_error("unknown option -%c", optopt);
			else
				ctl_usage_error("unknown option '%s'",
						argv[optind - 1]);
			return -1;
		}
	}
	return 0;
}

typedef int ctl_command_fn(const struct ctl_opts *opts, int argc,
			   char **argv);

static const struct {
	const char *name;
	ctl_command_fn *fn;
} ctl_commands[] = {
	{ "status", ctl_status_command },
	{ "workers", ctl_status_command },
	{ "reload", ctl_plain_command },
	{ "stop", ctl_plain_command },
	{ "bans", ctl_bans_command },
	{ "unban", ctl_unban_command },
	{ "sessions", ctl_sessions_command },
	{ "kick", ctl_kick_command },
	{ "stats", ctl_stats_command },
	{ "health", ctl_health_command },
	{ "cluster", ctl_cluster_command },
	{ "db", ctl_db_command },
	{ "user", ctl_user_command },
	{ "archive", ctl_archive_command },
};

int main(int argc, char **argv)
{
	struct ctl_opts opts = {
		.config_path = SYSCONFDIR "/xmppd/xmppd.conf",
	};

	log_init("xmppctl");
	/* a master that closes the connection is an error to print, not a
	   silent death */
	signal(SIGPIPE, SIG_IGN);
	int r = ctl_parse_options(argc, argv, &opts);
	if (r < 0)
		return CTL_EXIT_USAGE;
	if (r > 0) {
		ctl_usage(stdout);
		return CTL_EXIT_OK;
	}
	if (optind >= argc)
		return ctl_usage_error("no command given");
	int n = argc - optind;
	char **args = argv + optind;
	if (ctl_take_flag(&n, args, "--json"))
		opts.json = true;
	if (strcmp(args[0], "help") == 0) {
		ctl_usage(stdout);
		return CTL_EXIT_OK;
	}
	for (size_t i = 0; i < ARRAY_SIZE(ctl_commands); i++)
		if (strcmp(args[0], ctl_commands[i].name) == 0)
			return ctl_commands[i].fn(&opts, n, args);
	return ctl_usage_error("unknown command '%s'", args[0]);
}

/*
 * xmppctl - xmppd's admin command line.  `status`, `reload` and `stop`
 * talk to the master's control socket (docs/CONTROL.md); the socket path
 * comes from -s, or from the config given with -c (default the system
 * config).  `db ...` and `user ...` talk to PostgreSQL directly with the
 * config's db.conninfo (or -d), see ctl/user.c.
 * Failure policy: one clear line on stderr and exit 1; exit 2 for usage
 * errors.
 */
#include "ctl.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
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
		"[-d CONNINFO] COMMAND [ARG]...\n"
		"commands (control socket):\n"
		"  status              master and worker status\n"
		"  workers             same as status\n"
		"  reload              reload the configuration (prints the result)\n"
		"  stop                stop xmppd gracefully\n"
		"  bans                addresses and accounts refused after failed logins\n"
		"  unban ADDR|JID      lift a ban (an IPv6 address lifts its /64)\n"
		"  stats [--json|--openmetrics]  the figures of GET /metrics\n"
		"  health              ready, or why not (as GET /health)\n"
		"commands (PostgreSQL, db.conninfo or -d CONNINFO):\n"
		"  db migrate          create or upgrade the database schema\n"
		"  db status           show the database schema version\n"
		"  user add JID        add an account; the password is asked twice\n"
		"                      on a terminal, else read from stdin's first line\n"
		"  user passwd JID     set an account's password (asked the same way)\n"
		"  user del JID        delete an account\n"
		"  user list [DOMAIN]  list accounts, one JID a line\n"
		"  help                this text\n");
}

static int ctl_connect(const char *path)
{
	struct sockaddr_un sun;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "xmppctl: socket path too long: %s\n", path);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
		return fd;
	if (errno == ENOENT || errno == ECONNREFUSED)
		fprintf(stderr, "xmppctl: no xmppd listening on %s: is it "
			"running?\n", path);
	else if (errno == EACCES || errno == EPERM)
		fprintf(stderr, "xmppctl: permission denied on %s: run as root "
			"or as a member of the socket's group\n", path);
	else
		fprintf(stderr, "xmppctl: connect(%s) failed: %s\n", path,
			strerror(errno));
	close(fd);
	return -1;
}

/* Read lines until "OK" or "ERROR..."; print the body. */
static int ctl_read_reply(FILE *in, int print)
{
	char line[8192];
	while (fgets(line, sizeof(line), in) != NULL) {
		if (strcmp(line, "OK\n") == 0)
			return 0;
		if (strncmp(line, "ERROR\t", 6) == 0) {
			fprintf(stderr, "xmppctl: %s", line + 6);
			return -1;
		}
		if (print)
			fputs(line, stdout);
	}
	fprintf(stderr, "xmppctl: connection closed by xmppd\n");
	return -1;
}

static int ctl_run(const char *path, const char *cmd)
{
	int fd = ctl_connect(path);
	if (fd < 0)
		return 1;
	FILE *in = fdopen(fd, "r");
	char hello[64];
	char req[256];
	int n = snprintf(req, sizeof(req), "VERSION\txmppctl\t1\n%s\n", cmd);
	if (write_full(fd, req, (size_t)n) < 0 ||
	    fgets(hello, sizeof(hello), in) == NULL ||
	    strncmp(hello, "VERSION\txmppd\t1", 15) != 0) {
		fprintf(stderr, "xmppctl: %s did not answer the handshake\n",
			path);
		fclose(in);
		return 1;
	}
	int ret = ctl_read_reply(in, 1);
	fclose(in);
	return ret < 0 ? 1 : 0;
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
	fprintf(stderr, "xmppctl: %s\n", error);
	config_free(&cfg);
	return NULL;
}

/* A control-socket command: one word, or "unban" and its argument
 * (sent tab-separated). */
static int ctl_socket_command(const struct ctl_opts *opts, int argc,
			      char **argv)
{
	char line[512];
	int want = strcmp(argv[0], "unban") == 0 ? 2 : 1;

	for (int i = 0; i < argc; i++)
		if (strpbrk(argv[i], "\n\t") != NULL)
			argc = -1;
	if (argc != want || (want == 2 &&
	    snprintf(line, sizeof(line), "%s\t%s", argv[0], argv[1]) >=
	    (int)sizeof(line))) {
		ctl_usage(stderr);
		return 2;
	}
	if (want == 1)
		snprintf(line, sizeof(line), "%s", argv[0]);
	if (opts->socket_path != NULL)
		return ctl_run(opts->socket_path, line);
	struct config *cfg = ctl_load_config(opts, false);
	if (cfg == NULL)
		return 1;
	int ret = ctl_run(cfg->control_socket, line);
	config_free(&cfg);
	return ret;
}

/* Options into opts; -1 on a usage error, 1 for -h. */
static int ctl_parse_options(int argc, char **argv, struct ctl_opts *opts)
{
	int ch;
	while ((ch = getopt(argc, argv, "+c:s:o:d:h")) != -1) {
		switch (ch) {
		case 'c':
			opts->config_path = optarg;
			opts->config_given = true;
			break;
		case 's': opts->socket_path = optarg; break;
		case 'd': opts->conninfo = optarg; break;
		case 'o':
			if (opts->nov == ARRAY_SIZE(opts->ov)) {
				fprintf(stderr, "xmppctl: too many -o\n");
				return -1;
			}
			opts->ov[opts->nov++] = optarg;
			break;
		case 'h': return 1;
		default: return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct ctl_opts opts = {
		.config_path = SYSCONFDIR "/xmppd/xmppd.conf",
	};

	log_init("xmppctl");
	int r = ctl_parse_options(argc, argv, &opts);
	if (r != 0 || optind >= argc) {
		ctl_usage(r > 0 ? stdout : stderr);
		return r > 0 ? 0 : 2;
	}
	int n = argc - optind;
	char **args = argv + optind;
	if (strcmp(args[0], "help") == 0) {
		ctl_usage(stdout);
		return 0;
	}
	if (strcmp(args[0], "db") == 0)
		return ctl_db_command(&opts, n, args);
	if (strcmp(args[0], "user") == 0)
		return ctl_user_command(&opts, n, args);
	if (strcmp(args[0], "stats") == 0)
		return ctl_stats_command(&opts, n, args);
	return ctl_socket_command(&opts, n, args);
}

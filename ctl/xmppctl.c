/*
 * xmppctl - xmppd's admin command line.  It talks to the master's control
 * socket (docs/CONTROL.md): `status`, `reload`, `stop`.  The socket path
 * comes from -s, or from the config given with -c (default the system
 * config).  Failure policy: one clear line on stderr and exit 1; exit 2
 * for usage errors.
 */
#include "config.h"
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

static void usage(FILE *out)
{
	fprintf(out,
		"usage: xmppctl [-c CONFIG | -s SOCKET] [-o key=value]... COMMAND\n"
		"commands:\n"
		"  status      master and worker status\n"
		"  workers     same as status\n"
		"  reload      reload the configuration (prints the result)\n"
		"  stop        stop xmppd gracefully\n"
		"  help        this text\n");
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

static const char *ctl_socket_from_config(const char *path,
					  const char *const *ov, unsigned n)
{
	const char *error;
	struct config *cfg = config_new();
	if (config_parse_file(cfg, path, &error) < 0) {
		fprintf(stderr, "xmppctl: %s\n", error);
		exit(1);
	}
	for (unsigned i = 0; i < n; i++) {
		if (config_set(cfg, ov[i], &error) < 0) {
			fprintf(stderr, "xmppctl: %s\n", error);
			exit(1);
		}
	}
	return xstrdup(cfg->control_socket);    /* cfg kept until exit */
}

int main(int argc, char **argv)
{
	const char *config_path = SYSCONFDIR "/xmppd/xmppd.conf";
	const char *socket_path = NULL;
	const char *ov[64];
	unsigned nov = 0;
	int ch;

	log_init("xmppctl");
	while ((ch = getopt(argc, argv, "c:s:o:h")) != -1) {
		switch (ch) {
		case 'c': config_path = optarg; break;
		case 's': socket_path = optarg; break;
		case 'o':
			if (nov < ARRAY_SIZE(ov))
				ov[nov++] = optarg;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[optind];
	if (strcmp(cmd, "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strchr(cmd, '\n') != NULL) {
		usage(stderr);
		return 2;
	}
	if (socket_path == NULL)
		socket_path = ctl_socket_from_config(config_path, ov, nov);
	return ctl_run(socket_path, cmd);
}

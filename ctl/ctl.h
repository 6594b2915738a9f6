/*
 * ctl.h - what the parts of xmppctl share: the command-line options, the
 * config loader (ctl/xmppctl.c), the control-socket client and the JSON
 * writer (ctl/sock.c), the session commands `sessions` and `kick`
 * (ctl/session.c), and the commands that talk to PostgreSQL directly,
 * `db ...` and `user ...` (ctl/user.c).
 * Failure policy: commands print one line "xmppctl: reason" on stderr and
 * return 1; usage errors print one line "xmppctl: reason", then the
 * usage, and return 2; success is 0.
 */
#ifndef XMPPD_CTL_H
#define XMPPD_CTL_H

#include <stdbool.h>
#include <stdio.h>

#include "config.h"

#define CTL_OVERRIDES_MAX 64

/* Exit codes (usage text and docs/CONTROL.md). */
enum {
	CTL_EXIT_OK = 0,
	CTL_EXIT_FAIL = 1,          /* the command failed, or found nothing */
	CTL_EXIT_USAGE = 2,         /* unknown command, wrong arguments */
};

struct ctl_opts {
	const char *config_path;
	bool config_given;          /* -c was used (else the default path) */
	const char *socket_path;    /* -s */
	const char *conninfo;       /* -d: beats db.conninfo from the config */
	const char *ov[CTL_OVERRIDES_MAX];  /* -o key=value, in order */
	unsigned nov;
	bool json;                  /* --json: listings as one JSON document */
};

void ctl_usage(FILE *out);
/* "xmppctl: <why>" then the usage on stderr; returns CTL_EXIT_USAGE. */
int ctl_usage_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
/* "xmppctl: <why>" on stderr; returns CTL_EXIT_FAIL. */
int ctl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Remove every argv[i] (i >= 1) equal to flag; true if there was one. */
bool ctl_take_flag(int *argc, char **argv, const char *flag);
/* The config file with the -o overrides applied; NULL after printing
 * the reason.  allow_missing: a default config file that does not exist
 * gives the built-in defaults (for `db` commands given -d). */
struct config *ctl_load_config(const struct ctl_opts *opts,
			       bool allow_missing);

/* ---- control socket (sock.c) ----------------------------------------- */

/* The data lines of one answer, without their "\n". */
struct ctl_reply {
	char **lines;
	size_t n, cap;
};

enum ctl_open_result {
	CTL_OPEN_FAIL = -1,         /* reason printed */
	CTL_OPEN_DOWN = -2,         /* nothing listens: xmppd not running
				       (printed unless quiet) */
};
/* Connect and handshake; the fd, or enum ctl_open_result. */
int ctl_open(const char *path, bool quiet_down);
/* Send one command line (fields already tab-joined) and read its answer
 * into r: 0 on OK, -1 on ERROR or a broken connection (reason
 * printed). */
int ctl_exchange(int fd, const char *line, struct ctl_reply *r);
void ctl_reply_free(struct ctl_reply *r);
/* Open, one exchange, close: 0, or -1 (reason printed). */
int ctl_request(const char *path, const char *line, struct ctl_reply *r);
/* ctl_request, then the data lines as they are on stdout: the exit
 * code. */
int ctl_run(const char *path, const char *line);
/* The control socket path: -s, else the config's (NULL: printed). */
char *ctl_socket_path(const struct ctl_opts *opts);
/* The value of key in a "kind\tk=v\t..." line, into buf; NULL if absent. */
const char *ctl_field(const char *line, const char *key, char *buf,
		      size_t size);

/* JSON output: a string with every escape JSON needs. */
void ctl_json_string(FILE *out, const char *s);
/* A "kind\tk=v\t..." line's fields as one JSON object (integers as
 * numbers, the rest as strings). */
void ctl_json_fields(FILE *out, const char *line);

/* ---- commands ------------------------------------------------------- */

/* argv[0] is the command; the return value is the exit code. */
int ctl_db_command(const struct ctl_opts *opts, int argc, char **argv);
int ctl_user_command(const struct ctl_opts *opts, int argc, char **argv);
int ctl_sessions_command(const struct ctl_opts *opts, int argc,
			 char **argv);
int ctl_kick_command(const struct ctl_opts *opts, int argc, char **argv);
/* argv[0] is "cluster" (ctl/cluster.c). */
int ctl_cluster_command(const struct ctl_opts *opts, int argc, char **argv);

/* For user.c, given fd from ctl_open(path, true) (opened before
 * xmppctl may drop root for PostgreSQL, see user.c), or its negative
 * result.  ctl_sessions_of lists the sessions of a bare JID (lines, or
 * the JSON member "sessions": [...] or null when the server does not
 * run); 0, or -1 when the socket failed (printed). */
int ctl_sessions_of(int fd, const char *bare, bool json);
/* Before a change whose sessions ctl_end_sessions will end: 0 when the
 * master would let this user end them (or it is not running), else -1
 * (printed: the change must not be made). */
int ctl_may_end_sessions(int fd, const char *bare);
/* End every session of a bare JID with condition and text (user del,
 * passwd --kick): one line saying how many, or that the server does not
 * run.  watch: also the sessions that bind in the next c2s.timeout
 * (user del: logins that read the credentials before the delete).  0, or
 * -1 when the control socket failed (printed). */
int ctl_end_sessions(int fd, const char *bare, const char *condition,
		     const char *text, bool watch);
/* The config (NULL: reason printed) and a PostgreSQL connection for it
 * (user.c; as root, after becoming the daemon user when due). */
struct pg_conn;
struct config *ctl_pg_open(const struct ctl_opts *opts, bool allow_missing,
			   struct pg_conn **conn_r);
/* argv[0] is "archive" (ctl/archive.c). */
int ctl_archive_command(const struct ctl_opts *opts, int argc, char **argv);
/* argv[0] is "stats" (ctl/stats.c). */
int ctl_stats_command(const struct ctl_opts *opts, int argc, char **argv);

#endif

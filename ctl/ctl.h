/*
 * ctl.h - what the parts of xmppctl share: the command-line options, the
 * config loader (ctl/xmppctl.c), and the commands that talk to
 * PostgreSQL directly, `db ...` and `user ...` (ctl/user.c).
 * Failure policy: commands print one line "xmppctl: reason" on stderr and
 * return 1; usage errors print the usage and return 2; success is 0.
 */
#ifndef XMPPD_CTL_H
#define XMPPD_CTL_H

#include <stdbool.h>
#include <stdio.h>

#include "config.h"

#define CTL_OVERRIDES_MAX 64

struct ctl_opts {
	const char *config_path;
	bool config_given;          /* -c was used (else the default path) */
	const char *socket_path;    /* -s */
	const char *conninfo;       /* -d: beats db.conninfo from the config */
	const char *ov[CTL_OVERRIDES_MAX];  /* -o key=value, in order */
	unsigned nov;
};

void ctl_usage(FILE *out);
/* The config file with the -o overrides applied; NULL after printing
 * the reason.  allow_missing: a default config file that does not exist
 * gives the built-in defaults (for `db` commands given -d). */
struct config *ctl_load_config(const struct ctl_opts *opts,
			       bool allow_missing);

/* argv[0] is "db" / "user"; the return value is the exit code. */
int ctl_db_command(const struct ctl_opts *opts, int argc, char **argv);
int ctl_user_command(const struct ctl_opts *opts, int argc, char **argv);
/* argv[0] is "stats" (ctl/stats.c). */
int ctl_stats_command(const struct ctl_opts *opts, int argc, char **argv);

#endif

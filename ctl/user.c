/*
 * user.c - the xmppctl commands that talk to PostgreSQL directly (sync
 * libpq): `db migrate`, `db status`, `user add|passwd|del|show JID`,
 * `user list [DOMAIN]`.  The conninfo is the config's db.conninfo (-o
 * db.conninfo=... applies) unless -d gives one.  Passwords are read
 * without echo from a terminal (twice) or as the first line of stdin,
 * never from argv, and are wiped after use; the database gets SCRAM
 * credentials only (db/accounts.c).
 *
 * Run as root with a conninfo (or PGUSER) that names no role or the
 * daemon's, xmppctl becomes the configured daemon `user` before
 * connecting, as the server does: peer authentication over the local
 * socket then maps it to its role.  Another role named is used as root.  The control
 * socket, needed by `user show|del` and `passwd --kick`, is opened
 * before that, as root.
 *
 * `user del` deletes the account, then ends its live sessions with
 * <not-authorized/> "account deleted" (Prosody does the same).  A login
 * that read the credentials before the delete may bind after that: the
 * kick asks the master to watch (docs/CONTROL.md), which ends such a
 * session within a second for c2s.timeout after.  `passwd --kick` does
 * not watch: the owner logs in again at once with the new password, and
 * a login with the old one that raced the change keeps its session.
 * Failure policy: one line "xmppctl: reason" on stderr, exit code 1;
 * usage errors print one line and the usage, exit code 2.
 */
#include "ctl.h"
#include "db/accounts.h"
#include "arena.h"
#include "db/db.h"
#include "jid.h"
#include "scram.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define CTL_PASSWORD_BUF (SCRAM_PASSWORD_MAX + 3)     /* + "\r\n\0" */

/* ---- PostgreSQL ------------------------------------------------------- */

static void ctl_pg_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;          /* NOTICEs are not errors: stay quiet */
}

/* The database role conninfo (or PGUSER) names, into buf; "" if none. */
static void ctl_pg_role(const char *conninfo, char *buf, size_t size)
{
	const char *env = getenv("PGUSER");
	snprintf(buf, size, "%s", env != NULL ? env : "");
	PQconninfoOption *o = PQconninfoParse(conninfo, NULL);
	for (PQconninfoOption *p = o; p != NULL && p->keyword != NULL; p++)
		if (strcmp(p->keyword, "user") == 0 && p->val != NULL &&
		    p->val[0] != '\0')
			snprintf(buf, size, "%s", p->val);
	PQconninfoFree(o);
}

/* As root, with no role named or the daemon user's: become the daemon
 * user (cfg->user), as the server does, so that peer authentication
 * maps it to its role.  Nothing happens when that user does not exist
 * (then PostgreSQL sees root).  0, or -1 (printed). */
static int ctl_pg_become_daemon(const struct config *cfg,
				const char *conninfo)
{
	char role[256];
	if (geteuid() != 0 || cfg->user[0] == '\0')
		return 0;
	ctl_pg_role(conninfo, role, sizeof(role));
	if (role[0] != '\0' && strcmp(role, cfg->user) != 0)
		return 0;
	struct passwd *pw = getpwnam(cfg->user);
	if (pw == NULL)
		return 0;
	if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0) {
		ctl_fail("cannot become user %s for PostgreSQL: %s",
			 cfg->user, strerror(errno));
		return -1;
	}
	return 0;
}

/* Connect (conninfo may override the defaults set before it). */
static PGconn *ctl_pg_connect(const char *conninfo)
{
	const char *const keys[] = {
		"connect_timeout", "fallback_application_name", "dbname", NULL,
	};
	const char *const values[] = { "10", "xmppctl", conninfo, NULL };
	PGconn *conn = PQconnectdbParams(keys, values, 1);
	if (conn == NULL) {
		ctl_fail("out of memory");
		return NULL;
	}
	if (PQstatus(conn) != CONNECTION_OK) {
		const char *msg = PQerrorMessage(conn);
		const char *role = PQuser(conn);
		bool refused = strstr(msg, "role \"") != NULL ||
			strstr(msg, "authentication failed") != NULL ||
			strstr(msg, "no password supplied") != NULL;
		struct passwd *me = getpwuid(geteuid());
		if (refused)
			ctl_fail("cannot connect to PostgreSQL: %.*s (xmppctl "
				 "ran as %s, role %s: run it as the server's "
				 "user, e.g. `runuser -u xmppd -- xmppctl ...`, "
				 "or put user=ROLE in db.conninfo or -d)",
				 (int)strcspn(msg, "\n"), msg,
				 me != NULL ? me->pw_name : "?",
				 role != NULL ? role : "?");
		else
			ctl_fail("cannot connect to PostgreSQL: %.*s",
				 (int)strcspn(msg, "\n"), msg);
		PQfinish(conn);
		return NULL;
	}
	PQsetNoticeProcessor(conn, ctl_pg_notice, NULL);
	return conn;
}

/* The config (NULL: reason printed) and a connection for it. */
struct config *ctl_pg_open(const struct ctl_opts *opts, bool allow_missing,
			   PGconn **conn_r)
{
	struct config *cfg = ctl_load_config(opts, allow_missing);
	if (cfg == NULL)
		return NULL;
	const char *conninfo = opts->conninfo != NULL ? opts->conninfo :
		cfg->db_conninfo;
	*conn_r = ctl_pg_become_daemon(cfg, conninfo) == 0 ?
		ctl_pg_connect(conninfo) : NULL;
	if (*conn_r == NULL)
		config_free(&cfg);
	return cfg;
}

/* ---- db migrate / db status ------------------------------------------- */

static int ctl_db_migrate(PGconn *conn)
{
	const char *error;
	int from, to;
	if (db_migrate(conn, &from, &to, &error) < 0)
		return ctl_fail("%s", error);
	printf("schema at version %d (was %d)\n", to, from);
	return 0;
}

static int ctl_db_status(PGconn *conn)
{
	const char *error;
	int version;
	if (db_schema_check(conn, &version, &error) <= 0)
		return ctl_fail("%s", error);
	printf("schema at version %d (current)\n", version);
	return 0;
}

int ctl_db_command(const struct ctl_opts *opts, int argc, char **argv)
{
	if (argc != 2 || (strcmp(argv[1], "migrate") != 0 &&
			  strcmp(argv[1], "status") != 0))
		return ctl_usage_error(argc < 2 ? "db needs migrate or status" :
				       argc > 2 ? "db %s takes no arguments" :
				       "unknown db command '%s'", argv[1]);
	PGconn *conn;
	struct config *cfg = ctl_pg_open(opts, opts->conninfo != NULL, &conn);
	if (cfg == NULL)
		return 1;
	int ret = strcmp(argv[1], "migrate") == 0 ? ctl_db_migrate(conn) :
		ctl_db_status(conn);
	PQfinish(conn);
	config_free(&cfg);
	return ret;
}

/* ---- passwords -------------------------------------------------------- */

static struct termios ctl_tty_saved;

static void ctl_tty_restore(int sig)
{
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &ctl_tty_saved);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* One line of stdin into buf without its line end; -1 on EOF/error or a
 * line too long (reason printed). */
static int ctl_read_line(char *buf, size_t size)
{
	if (fgets(buf, (int)size, stdin) == NULL) {
		ctl_fail("no password given on stdin");
		return -1;
	}
	size_t n = strlen(buf);
	if (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	else if (!feof(stdin)) {
		ctl_fail("password too long (at most %d bytes)",
			 SCRAM_PASSWORD_MAX);
		return -1;
	}
	if (n > 0 && buf[n - 1] == '\r')
		buf[--n] = '\0';
	return 0;
}

/* Prompt on stderr and read one line with echo off. */
static int ctl_read_tty(const char *prompt, char *buf, size_t size)
{
	struct termios noecho;
	if (tcgetattr(STDIN_FILENO, &ctl_tty_saved) < 0) {
		ctl_fail("tcgetattr(stdin) failed: %s", strerror(errno));
		return -1;
	}
	noecho = ctl_tty_saved;
	noecho.c_lflag &= ~(tcflag_t)ECHO;
	signal(SIGINT, ctl_tty_restore);
	signal(SIGTERM, ctl_tty_restore);
	fputs(prompt, stderr);
	fflush(stderr);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &noecho);
	int ret = ctl_read_line(buf, size);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &ctl_tty_saved);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	fputc('\n', stderr);
	return ret;
}

/* Both prompts on a terminal; they must match. */
static int ctl_read_tty_twice(char *buf)
{
	char again[CTL_PASSWORD_BUF];
	int ret = -1;
	if (ctl_read_tty("Password: ", buf, CTL_PASSWORD_BUF) == 0 &&
	    ctl_read_tty("Again: ", again, sizeof(again)) == 0) {
		if (strcmp(buf, again) == 0)
			ret = 0;
		else
			ctl_fail("passwords do not match");
	}
	explicit_bzero(again, sizeof(again));
	return ret;
}

/* The new password into buf (CTL_PASSWORD_BUF bytes): twice on a
 * terminal, else stdin's first line.  0, or -1 with the reason printed. */
static int ctl_read_password(char *buf)
{
	int ret = isatty(STDIN_FILENO) ? ctl_read_tty_twice(buf) :
		ctl_read_line(buf, CTL_PASSWORD_BUF);
	if (ret == 0 && buf[0] == '\0') {
		ctl_fail("empty password refused");
		ret = -1;
	}
	return ret;
}

/* ---- user ... --------------------------------------------------------- */

/* 1 if domain (Nameprep'd) is one of the config's hosts. */
static bool ctl_domain_hosted(struct arena *a, const char *hosts,
			      const char *domain)
{
	const char *p = hosts;
	while (*(p += strspn(p, " \t")) != '\0') {
		size_t n = strcspn(p, " \t");
		const char *prepped, *error;
		if (jid_prep_part(a, JID_PART_DOMAIN, p, n, &prepped,
				  &error) == 0 && strcmp(prepped, domain) == 0)
			return true;
		p += n;
	}
	return false;
}

/* The prepared user and domain of jid, checked against hosts. */
static int ctl_user_jid(struct arena *a, const struct config *cfg,
			const char *jid, const char **user_r,
			const char **domain_r)
{
	const char *error;
	if (accounts_parse_jid(a, jid, user_r, domain_r, &error) < 0)
		return ctl_fail("%s", error);
	if (!ctl_domain_hosted(a, cfg->hosts, *domain_r))
		return ctl_fail("%s is not one of the hosts in the "
				"configuration", *domain_r);
	return 0;
}

struct ctl_list {
	bool json;
	unsigned n;
};

static void ctl_user_print(void *ctx, const char *user, const char *domain)
{
	struct ctl_list *l = ctx;
	if (!l->json) {
		printf("%s@%s\n", user, domain);
	} else {
		size_t len = strlen(user) + strlen(domain) + 2;
		char *jid = malloc(len);
		if (jid == NULL)
			return;
		snprintf(jid, len, "%s@%s", user, domain);
		fputs(l->n ? ",\n  " : "\n  ", stdout);
		ctl_json_string(stdout, jid);
		free(jid);
	}
	l->n++;
}

static int ctl_user_list(PGconn *conn, struct arena *a, const char *domain,
			 bool json)
{
	const char *error;
	struct ctl_list l = { .json = json };
	if (domain != NULL &&
	    jid_prep_part(a, JID_PART_DOMAIN, domain, strlen(domain), &domain,
			  &error) < 0)
		return ctl_fail("invalid domain '%s': %s", domain, error);
	if (json)
		fputs("{\"users\": [", stdout);
	int r = accounts_list(conn, domain, ctl_user_print, &l, &error);
	if (json)
		printf("%s], \"total\": %u}\n", l.n ? "\n" : "", l.n);
	return r < 0 ? ctl_fail("%s", error) : 0;
}

/* user show: the account's stored data and its live sessions. */
static int ctl_user_show(PGconn *conn, const char *user, const char *domain,
			 int ctl_fd, bool json)
{
	struct accounts_summary sum;
	const char *error;
	int found = accounts_show(conn, user, domain, &sum, &error);
	if (found < 0)
		return ctl_fail("%s", error);
	if (found == 0)
		return ctl_fail("no such user %s@%s", user, domain);
	size_t len = strlen(user) + strlen(domain) + 2;
	char *jid = malloc(len);
	if (jid == NULL)
		return ctl_fail("out of memory");
	snprintf(jid, len, "%s@%s", user, domain);
	if (json) {
		fputs("{\"jid\": ", stdout);
		ctl_json_string(stdout, jid);
		fputs(", \"exists\": true, \"created\": ", stdout);
		ctl_json_string(stdout, sum.created);
		printf(", \"roster\": %lld, \"offline\": %lld, "
		       "\"offline_unreadable\": %lld, \"vcard\": %s, "
		       "\"blocklist\": %lld, ", sum.roster, sum.offline,
		       sum.offline_unreadable, sum.vcard ? "true" : "false",
		       sum.blocked);
	} else {
		printf("account: %s\ncreated: %s\nroster: %lld\n"
		       "offline messages: %lld", jid, sum.created, sum.roster,
		       sum.offline);
		if (sum.offline_unreadable > 0)
			printf(" (and %lld unreadable, set aside)",
			       sum.offline_unreadable);
		printf("\nvcard: %s\nblocklist: %lld\n", sum.vcard ? "yes" : "no",
		       sum.blocked);
	}
	fflush(stdout);
	int r = ctl_sessions_of(ctl_fd, jid, json);
	if (json)
		fputs(r == 0 ? "}\n" : "\"sessions\": null}\n", stdout);
	free(jid);
	return r == 0 ? 0 : 1;
}

/* add, passwd, del on one JID; ctl_fd for ending sessions (del, passwd
 * with kick). */
static int ctl_user_change(PGconn *conn, const struct config *cfg,
			   const char *verb, const char *user,
			   const char *domain, int ctl_fd, bool kick)
{
	const char *error;
	char password[CTL_PASSWORD_BUF], bare[2048 + 2];
	int ret;

	snprintf(bare, sizeof(bare), "%s@%s", user, domain);
	if ((strcmp(verb, "del") == 0 || kick) &&
	    ctl_may_end_sessions(ctl_fd, bare) < 0)
		return 1;       /* nothing changed */
	if (strcmp(verb, "del") == 0) {
		int gone = 0;
		if (accounts_del(conn, user, domain, &error) < 0) {
			if (accounts_exists(conn, user, domain, &error) != 0)
				return ctl_fail("%s", error);
			/* deleted before (in SQL, or by a user del whose kick
			   failed): its sessions still end */
			ctl_fail("no such user %s", bare);
			gone = 1;
		} else {
			printf("deleted %s\n", bare);
		}
		fflush(stdout);
		return ctl_end_sessions(ctl_fd, bare, "not-authorized",
					"account deleted", true) < 0 || gone;
	}
	/* fail before asking for a password that could not be used (the
	   change itself checks again) */
	int exists = accounts_exists(conn, user, domain, &error);
	if (exists < 0)
		return ctl_fail("%s", error);
	if (exists != (strcmp(verb, "passwd") == 0))
		return ctl_fail(exists ? "user %s already exists" :
				"no such user %s", bare);
	if (ctl_read_password(password) < 0)
		return 1;
	if (strcmp(verb, "add") == 0)
		ret = accounts_add(conn, user, domain, password,
				   cfg->scram_iterations, &error);
	else
		ret = accounts_passwd(conn, user, domain, password,
				      cfg->scram_iterations, &error);
	explicit_bzero(password, sizeof(password));
	if (ret < 0)
		return ctl_fail("%s", error);
	if (kick)
		return ctl_end_sessions(ctl_fd, bare, "reset",
					"password changed", false) < 0;
	return 0;
}

/* A usage error for the arguments, "" for an unknown verb, or NULL. */
static const char *ctl_user_args_error(int argc, char **argv)
{
	if (argc < 2)
		return "user needs add, passwd, del, show or list";
	if (strcmp(argv[1], "list") == 0)
		return argc <= 3 ? NULL : "user list takes at most a domain";
	if (strcmp(argv[1], "add") != 0 && strcmp(argv[1], "passwd") != 0 &&
	    strcmp(argv[1], "del") != 0 && strcmp(argv[1], "show") != 0)
		return "";  /* unknown: the caller names it */
	if (argc != 3)
		return "user add|passwd|del|show needs one JID";
	if (argv[2][0] == '-')
		return "unknown option";
	return NULL;
}

/* The control socket for the commands that use it, opened before
 * xmppctl may drop root (ctl_pg_become_daemon): an fd, CTL_OPEN_DOWN,
 * or CTL_OPEN_FAIL (printed).  -3: not needed. */
static int ctl_user_control(const struct ctl_opts *opts, const char *verb,
			    bool kick)
{
	if (strcmp(verb, "del") != 0 && strcmp(verb, "show") != 0 && !kick)
		return -3;
	char *path = ctl_socket_path(opts);
	int fd = path != NULL ? ctl_open(path, true) : CTL_OPEN_FAIL;
	free(path);
	return fd;
}

int ctl_user_command(const struct ctl_opts *opts, int argc, char **argv)
{
	bool kick = argc >= 2 && strcmp(argv[1], "passwd") == 0 &&
		ctl_take_flag(&argc, argv, "--kick");
	const char *why = ctl_user_args_error(argc, argv);
	if (why != NULL && why[0] == '\0')
		return ctl_usage_error("unknown user command '%s'", argv[1]);
	if (why != NULL)
		return ctl_usage_error("%s%s%s", why, argc >= 3 ? ": " : "",
				       argc >= 3 ? argv[argc - 1] : "");
	struct arena a;
	const char *user = NULL, *domain = NULL;
	arena_init(&a, 4096);
	int ctl_fd = -3, ret = 1;
	PGconn *conn = NULL;
	struct config *cfg = ctl_load_config(opts, false);
	if (cfg == NULL)
		goto out;
	if (strcmp(argv[1], "list") != 0 &&
	    ctl_user_jid(&a, cfg, argv[2], &user, &domain) != 0)
		goto out;
	ctl_fd = ctl_user_control(opts, argv[1], kick);
	if (ctl_fd == CTL_OPEN_FAIL && strcmp(argv[1], "show") != 0)
		goto out;   /* fail before changing anything */
	config_free(&cfg);
	if ((cfg = ctl_pg_open(opts, false, &conn)) == NULL)
		goto out;
	if (strcmp(argv[1], "list") == 0)
		ret = ctl_user_list(conn, &a, argc == 3 ? argv[2] : NULL,
				    opts->json);
	else if (strcmp(argv[1], "show") == 0)
		ret = ctl_user_show(conn, user, domain, ctl_fd, opts->json);
	else
		ret = ctl_user_change(conn, cfg, argv[1], user, domain, ctl_fd,
				      kick);
out:
	if (ctl_fd >= 0)
		close(ctl_fd);
	if (conn != NULL)
		PQfinish(conn);
	arena_free(&a);
	config_free(&cfg);
	return ret;
}

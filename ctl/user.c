/*
 * user.c - the xmppctl commands that talk to PostgreSQL directly (sync
 * libpq): `db migrate`, `db status`, `user add|passwd|del JID`,
 * `user list [DOMAIN]`.  The conninfo is the config's db.conninfo (-o
 * db.conninfo=... applies) unless -d gives one.  Passwords are read
 * without echo from a terminal (twice) or as the first line of stdin,
 * never from argv, and are wiped after use; the database gets SCRAM
 * credentials only (db/accounts.c).
 * Failure policy: one line "xmppctl: reason" on stderr, exit code 1;
 * usage errors print the usage, exit code 2.
 */
#include "ctl.h"
#include "db/accounts.h"
#include "arena.h"
#include "db/db.h"
#include "jid.h"
#include "scram.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define CTL_PASSWORD_BUF (SCRAM_PASSWORD_MAX + 3)     /* + "\r\n\0" */

static int ctl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int ctl_fail(const char *fmt, ...)
{
	va_list ap;
	fputs("xmppctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

static int ctl_usage_error(void)
{
	ctl_usage(stderr);
	return 2;
}

/* ---- PostgreSQL ------------------------------------------------------- */

static void ctl_pg_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;          /* NOTICEs are not errors: stay quiet */
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
		ctl_fail("cannot connect to PostgreSQL: %.*s",
			 (int)strcspn(msg, "\n"), msg);
		PQfinish(conn);
		return NULL;
	}
	PQsetNoticeProcessor(conn, ctl_pg_notice, NULL);
	return conn;
}

/* The config (NULL: reason printed) and a connection for it. */
static struct config *ctl_pg_open(const struct ctl_opts *opts,
				  bool allow_missing, PGconn **conn_r)
{
	struct config *cfg = ctl_load_config(opts, allow_missing);
	if (cfg == NULL)
		return NULL;
	*conn_r = ctl_pg_connect(opts->conninfo != NULL ? opts->conninfo :
				 cfg->db_conninfo);
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
		return ctl_usage_error();
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

static void ctl_user_print(void *ctx, const char *user, const char *domain)
{
	(void)ctx;
	printf("%s@%s\n", user, domain);
}

static int ctl_user_list(PGconn *conn, struct arena *a, const char *domain)
{
	const char *error;
	if (domain != NULL &&
	    jid_prep_part(a, JID_PART_DOMAIN, domain, strlen(domain), &domain,
			  &error) < 0)
		return ctl_fail("invalid domain '%s': %s", domain, error);
	if (accounts_list(conn, domain, ctl_user_print, NULL, &error) < 0)
		return ctl_fail("%s", error);
	return 0;
}

/* add, passwd, del on one JID. */
static int ctl_user_change(PGconn *conn, struct arena *a,
			   const struct config *cfg, const char *verb,
			   const char *jid)
{
	const char *user, *domain, *error;
	char password[CTL_PASSWORD_BUF];
	int ret;

	if (ctl_user_jid(a, cfg, jid, &user, &domain) != 0)
		return 1;
	if (strcmp(verb, "del") == 0)
		return accounts_del(conn, user, domain, &error) < 0 ?
			ctl_fail("%s", error) : 0;
	/* fail before asking for a password that could not be used (the
	   change itself checks again) */
	int exists = accounts_exists(conn, user, domain, &error);
	if (exists < 0)
		return ctl_fail("%s", error);
	if (exists != (strcmp(verb, "passwd") == 0))
		return ctl_fail(exists ? "user already exists" :
				"no such user");
	if (ctl_read_password(password) < 0)
		return 1;
	if (strcmp(verb, "add") == 0)
		ret = accounts_add(conn, user, domain, password,
				   cfg->scram_iterations, &error);
	else
		ret = accounts_passwd(conn, user, domain, password,
				      cfg->scram_iterations, &error);
	explicit_bzero(password, sizeof(password));
	return ret < 0 ? ctl_fail("%s", error) : 0;
}

static bool ctl_user_args_ok(int argc, char **argv)
{
	if (argc < 2)
		return false;
	if (strcmp(argv[1], "list") == 0)
		return argc <= 3;
	return argc == 3 && (strcmp(argv[1], "add") == 0 ||
			     strcmp(argv[1], "passwd") == 0 ||
			     strcmp(argv[1], "del") == 0);
}

int ctl_user_command(const struct ctl_opts *opts, int argc, char **argv)
{
	if (!ctl_user_args_ok(argc, argv))
		return ctl_usage_error();
	PGconn *conn;
	struct config *cfg = ctl_pg_open(opts, false, &conn);
	if (cfg == NULL)
		return 1;
	struct arena a;
	arena_init(&a, 4096);
	int ret = strcmp(argv[1], "list") == 0 ?
		ctl_user_list(conn, &a, argc == 3 ? argv[2] : NULL) :
		ctl_user_change(conn, &a, cfg, argv[1], argv[2]);
	arena_free(&a);
	PQfinish(conn);
	config_free(&cfg);
	return ret;
}

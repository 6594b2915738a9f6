/*
 * test_db.c - db/ against a real PostgreSQL: schema migration (db/migrate.c
 * and db/schema/), the account helpers (db/accounts.c) and the worker's
 * asynchronous link (db/db.c) driven by a small poll() loop.
 * XMPPD_TEST_PGCONN names a server where we may create databases
 * (scripts/check provides one); without it every test fails.  Each test
 * creates its own database xmppd_t_<random> and drops it at the end.
 * Every wait is bounded; forked children carry an alarm().
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* memmem */
#endif
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db/accounts.h"
#include "db/db.h"
#include "log.h"
#include "scram.h"
#include "util.h"

/* ---- per-test database ------------------------------------------------ */

static char test_dbname[64];
static char *test_conninfo;     /* XMPPD_TEST_PGCONN with our dbname */
static PGconn *test_conn;       /* a sync connection to our database */

static const char *test_base_conninfo(void)
{
	const char *s = getenv("XMPPD_TEST_PGCONN");
	if (s == NULL || *s == '\0')
		cr_assert_fail("XMPPD_TEST_PGCONN is not set: it must name a "
			 "PostgreSQL server where the tests may CREATE "
			 "DATABASE, e.g. \"host=127.0.0.1 port=55432 "
			 "dbname=postgres user=postgres\" (scripts/check and "
			 "scripts/pg-test-cluster start provide it)");
	return s;
}

/* Append key='value' to buf (conninfo quoting). */
static void conninfo_add(char *buf, size_t size, const char *key,
			 const char *val)
{
	size_t n = strlen(buf);
	n += (size_t)snprintf(buf + n, size - n, "%s%s='", n ? " " : "", key);
	for (const char *p = val; *p != '\0' && n + 3 < size; p++) {
		if (*p == '\'' || *p == '\\')
			buf[n++] = '\\';
		buf[n++] = *p;
	}
	snprintf(buf + n, size - n, "'");
}

/* base with dbname replaced (base may be key=value or a URI). */
static char *conninfo_with_db(const char *base, const char *dbname)
{
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(base, &err);
	cr_assert_not_null(opts, "XMPPD_TEST_PGCONN: %s", err);
	char *buf = xcalloc(1, 4096);
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
		if (o->val != NULL && strcmp(o->keyword, "dbname") != 0)
			conninfo_add(buf, 4096, o->keyword, o->val);
	}
	conninfo_add(buf, 4096, "dbname", dbname);
	PQconninfoFree(opts);
	return buf;
}

static void quiet_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

static PGconn *sync_connect(const char *conninfo)
{
	PGconn *conn = PQconnectdb(conninfo);
	cr_assert_eq(PQstatus(conn), CONNECTION_OK, "connect(%s): %s",
		     conninfo, PQerrorMessage(conn));
	PQsetNoticeProcessor(conn, quiet_notice, NULL);
	return conn;
}

static void sql_ok(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(res);
	cr_assert(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK,
		  "%s: %s", sql, PQresultErrorMessage(res));
	PQclear(res);
}

/* One integer from a query. */
static long sql_int(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s: %s", sql,
		     PQresultErrorMessage(res));
	cr_assert_eq(PQntuples(res), 1, "%s", sql);
	long v = atol(PQgetvalue(res, 0, 0));
	PQclear(res);
	return v;
}

static void setup(void)
{
	log_init("test");
	const char *base = test_base_conninfo();
	unsigned char rnd[6];
	FILE *f = fopen("/dev/urandom", "r");
	cr_assert(f != NULL && fread(rnd, 1, sizeof(rnd), f) == sizeof(rnd));
	fclose(f);
	snprintf(test_dbname, sizeof(test_dbname),
		 "xmppd_t_%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2],
		 rnd[3], rnd[4], rnd[5]);
	PGconn *admin = sync_connect(base);
	char sql[128];
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", test_dbname);
	sql_ok(admin, sql);
	PQfinish(admin);
	test_conninfo = conninfo_with_db(base, test_dbname);
	test_conn = sync_connect(test_conninfo);
}

static void teardown(void)
{
	if (test_conn != NULL)
		PQfinish(test_conn);
	test_conn = NULL;
	free(test_conninfo);
	test_conninfo = NULL;
	if (test_dbname[0] == '\0')
		return;
	PGconn *admin = PQconnectdb(getenv("XMPPD_TEST_PGCONN"));
	char sql[128];
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)",
		 test_dbname);
	PQclear(PQexec(admin, sql));
	PQfinish(admin);
}

static void migrate_ok(PGconn *conn)
{
	const char *error = NULL;
	int from, to;
	cr_assert_eq(db_migrate(conn, &from, &to, &error), 0, "migrate: %s",
		     error);
	cr_assert_eq(to, DB_SCHEMA_VERSION);
}

TestSuite(migrate, .init = setup, .fini = teardown, .timeout = 60);
TestSuite(accounts, .init = setup, .fini = teardown, .timeout = 60);
TestSuite(link, .init = setup, .fini = teardown, .timeout = 60);
TestSuite(embed_sql, .timeout = 30);

/* ---- migrate ---------------------------------------------------------- */

Test(migrate, empty_to_current)
{
	const char *error = NULL;
	int version = -1, from = -1, to = -1;

	cr_assert_eq(db_schema_check(test_conn, &version, &error), 0);
	cr_assert_eq(version, 0);
	cr_assert_not_null(strstr(error, "db migrate"), "%s", error);
	cr_assert_eq(db_migrate(test_conn, &from, &to, &error), 0, "%s",
		     error);
	cr_assert_eq(from, 0);
	cr_assert_eq(to, DB_SCHEMA_VERSION);
	cr_assert_eq(db_schema_check(test_conn, &version, &error), 1);
	cr_assert_eq(version, DB_SCHEMA_VERSION);
	cr_assert_eq(sql_int(test_conn, "SELECT count(*) FROM accounts"), 0);
	cr_assert_eq(sql_int(test_conn,
			     "SELECT count(*) FROM account_scram"), 0);
	cr_assert_eq(PQtransactionStatus(test_conn), PQTRANS_IDLE);
}

Test(migrate, again_is_a_noop)
{
	const char *error = NULL;
	int from = -1, to = -1;

	migrate_ok(test_conn);
	cr_assert_eq(db_migrate(test_conn, &from, &to, &error), 0, "%s",
		     error);
	cr_assert_eq(from, DB_SCHEMA_VERSION);
	cr_assert_eq(to, DB_SCHEMA_VERSION);
	cr_assert_eq(sql_int(test_conn,
			     "SELECT count(*) FROM schema_version"),
		     DB_SCHEMA_VERSION);
}

Test(migrate, newer_database_refused)
{
	const char *error = NULL;
	int version = -1, from, to;
	char sql[128];

	migrate_ok(test_conn);
	snprintf(sql, sizeof(sql), "INSERT INTO schema_version (version) "
		 "VALUES (%d)", DB_SCHEMA_VERSION + 1);
	sql_ok(test_conn, sql);
	cr_assert_eq(db_schema_check(test_conn, &version, &error), -1);
	cr_assert_eq(version, DB_SCHEMA_VERSION + 1);
	cr_assert_not_null(strstr(error, "newer"), "%s", error);
	cr_assert_eq(db_migrate(test_conn, &from, &to, &error), -1);
	cr_assert_not_null(strstr(error, "upgrade xmppd"), "%s", error);
	cr_assert_eq(PQtransactionStatus(test_conn), PQTRANS_IDLE);
}

Test(migrate, steps_match_the_version)
{
	cr_assert_eq(db_schema_steps_count, DB_SCHEMA_VERSION);
	for (unsigned i = 0; i < db_schema_steps_count; i++)
		cr_assert_eq(db_schema_steps[i].version, (int)i + 1);
	cr_assert_not_null(strstr(db_schema_steps[0].sql,
				  "CREATE TABLE account_scram"));
}

/* scripts/embed-sql on step files named as given (each a comment line)
 * in a fresh directory: its exit status; its stderr line in err. */
static int embed_sql(const char *const *names, char *err, size_t errlen)
{
	const char *dir = getenv("XMPPD_SRCDIR");
	char tmp[] = "/tmp/xmppd-embed-XXXXXX", cmd[1024], path[256];
	size_t n;

	cr_assert_not_null(mkdtemp(tmp));
	n = (size_t)snprintf(cmd, sizeof(cmd), "sh '%s/scripts/embed-sql'",
			     dir != NULL && *dir != '\0' ? dir : ".");
	for (const char *const *f = names; *f != NULL; f++) {
		snprintf(path, sizeof(path), "%s/%s", tmp, *f);
		FILE *out = fopen(path, "w");
		cr_assert_not_null(out);
		fprintf(out, "-- %s\n", *f);
		fclose(out);
		n += (size_t)snprintf(cmd + n, sizeof(cmd) - n, " '%s'", path);
		cr_assert_lt(n, sizeof(cmd));
	}
	snprintf(cmd + n, sizeof(cmd) - n, " >/dev/null 2>'%s/err'", tmp);
	int rc = system(cmd);
	snprintf(path, sizeof(path), "%s/err", tmp);
	FILE *in = fopen(path, "r");
	cr_assert_not_null(in);
	if (fgets(err, (int)errlen, in) == NULL)
		err[0] = '\0';
	fclose(in);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	cr_assert_eq(system(cmd), 0);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* Versions are 1, 2, 3, ... with no gap and no duplicate: the build
 * fails otherwise, so migrate can apply every step in order. */
Test(embed_sql, strict_consecutive_versions)
{
	static const char *const good[] = { "001-a.sql", "002-b.sql", NULL };
	static const char *const gap[] = { "001-a.sql", "003-c.sql", NULL };
	static const char *const dup[] = { "001-a.sql", "002-b.sql",
					   "002-c.sql", NULL };
	static const char *const late[] = { "002-b.sql", NULL };
	char err[256];

	cr_assert_eq(embed_sql(good, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(embed_sql(gap, err, sizeof(err)), 1);
	cr_assert_not_null(strstr(err, "003-c.sql: version 3 out of order "
				       "(expected 2)"), "%s", err);
	cr_assert_eq(embed_sql(dup, err, sizeof(err)), 1);
	cr_assert_not_null(strstr(err, "002-c.sql: version 2 out of order "
				       "(expected 3)"), "%s", err);
	cr_assert_eq(embed_sql(late, err, sizeof(err)), 1);
	cr_assert_not_null(strstr(err, "expected 1"), "%s", err);
}

/* A child migrating on its own connection: exit 0 if it worked. */
static pid_t migrate_child(void)
{
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid > 0)
		return pid;
	alarm(30);
	PGconn *conn = PQconnectdb(test_conninfo);
	const char *error;
	int from, to;
	int ok = PQstatus(conn) == CONNECTION_OK &&
		db_migrate(conn, &from, &to, &error) == 0 &&
		to == DB_SCHEMA_VERSION;
	if (!ok)
		fprintf(stderr, "child migrate: %s\n", error);
	_exit(ok ? 0 : 1);
}

/* Two migrates that start together both wait for the advisory lock (we
 * hold it); once released, one applies the step, the other finds it. */
Test(migrate, concurrent_migrates_serialize)
{
	sql_ok(test_conn, "BEGIN");
	sql_ok(test_conn, "SELECT pg_advisory_xact_lock(8677715685035435106)");
	pid_t a = migrate_child(), b = migrate_child();
	PGconn *watch = sync_connect(test_conninfo);
	int waiting = 0;
	for (int i = 0; i < 100 && waiting < 2; i++) {
		usleep(50 * 1000);
		waiting = (int)sql_int(watch, "SELECT count(*) FROM pg_locks "
				       "WHERE locktype = 'advisory' AND "
				       "NOT granted");
	}
	PQfinish(watch);
	sql_ok(test_conn, "COMMIT");
	int sa, sb;
	cr_assert_eq(waitpid(a, &sa, 0), a);
	cr_assert_eq(waitpid(b, &sb, 0), b);
	cr_assert_eq(waiting, 2, "the migrates did not wait for the lock");
	cr_assert(WIFEXITED(sa) && WEXITSTATUS(sa) == 0);
	cr_assert(WIFEXITED(sb) && WEXITSTATUS(sb) == 0);
	cr_assert_eq(sql_int(test_conn,
			     "SELECT count(*) FROM schema_version"),
		     DB_SCHEMA_VERSION);
}

/* ---- accounts --------------------------------------------------------- */

#define PASSWORD "pencil-\xc3\xa9t\xc3\xa9-42"     /* UTF-8 */

/* The login lookup through PQexecParams, text or binary results. */
static int login_lookup(const char *user, const char *domain, int binary,
			struct accounts_login *login)
{
	const char *params[2] = { user, domain };
	const char *error = NULL;
	PGresult *res = PQexecParams(test_conn, ACCOUNTS_LOGIN_SQL,
				     ACCOUNTS_LOGIN_NPARAMS, NULL, params,
				     NULL, NULL, binary);
	int r = accounts_login_decode(res, login, &error);
	cr_assert_geq(r, 0, "decode: %s", error);
	PQclear(res);
	return r;
}

/* Both stored credentials derive from password (and only from it). */
static void assert_verifies(const struct accounts_login *login,
			    const char *password, unsigned iterations)
{
	for (int h = 0; h < 2; h++) {
		const struct scram_credentials *c = &login->cred[h];
		unsigned char sk[SCRAM_HASH_MAX_LEN], svk[SCRAM_HASH_MAX_LEN];
		const char *error = NULL;
		size_t len = scram_hash_len(c->hash);

		cr_assert(login->found[h]);
		cr_assert_eq(c->hash, (enum scram_hash)h);
		cr_assert_eq(c->iterations, iterations);
		cr_assert_eq(c->salt_len, SCRAM_SALT_DEFAULT_LEN);
		cr_assert_eq(scram_derive(c->hash, password, c->salt,
					  c->salt_len, c->iterations, sk, svk,
					  &error), 0, "%s", error);
		cr_assert_arr_eq(sk, c->stored_key, len);
		cr_assert_arr_eq(svk, c->server_key, len);
		cr_assert_eq(scram_plain_verify(password, c), SCRAM_OK);
		cr_assert_eq(scram_plain_verify("wrong", c), SCRAM_ERR_PROOF);
	}
}

static void add_ok(const char *user, const char *domain, const char *pw)
{
	const char *error = NULL;
	cr_assert_eq(accounts_add(test_conn, user, domain, pw, 4096, &error),
		     0, "add %s@%s: %s", user, domain, error);
}

/* Every byte of the tables, as text and as raw bytea, lacks the password
 * (and its hex). */
static void assert_no_password(const char *pw)
{
	static const char *const queries[] = {
		"SELECT string_agg(a::text, '|') FROM accounts a",
		"SELECT string_agg(s::text, '|') FROM account_scram s",
		"SELECT string_agg(salt || stored_key || server_key, '\\x00'"
		"::bytea) FROM account_scram",
	};
	char hex[256] = "";
	for (size_t i = 0; pw[i] != '\0' && i < 100; i++)
		snprintf(hex + 2 * i, 3, "%02x", (unsigned char)pw[i]);
	for (size_t q = 0; q < ARRAY_SIZE(queries); q++) {
		PGresult *res = PQexecParams(test_conn, queries[q], 0, NULL,
					     NULL, NULL, NULL, 1);
		cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK);
		const char *v = PQgetvalue(res, 0, 0);
		size_t n = (size_t)PQgetlength(res, 0, 0);
		cr_assert_gt(n, 0);
		cr_assert_null(memmem(v, n, pw, strlen(pw)), "%s", queries[q]);
		cr_assert_null(memmem(v, n, hex, strlen(hex)), "%s",
			       queries[q]);
		PQclear(res);
	}
}

Test(accounts, add_stores_verifiable_keys_only)
{
	struct accounts_login login;

	migrate_ok(test_conn);
	add_ok("alice", "example.com", PASSWORD);
	cr_assert_eq(login_lookup("alice", "example.com", 0, &login), 1);
	assert_verifies(&login, PASSWORD, 4096);
	cr_assert_eq(login_lookup("alice", "example.com", 1, &login), 1);
	assert_verifies(&login, PASSWORD, 4096);
	assert_no_password(PASSWORD);
	cr_assert_eq(login_lookup("bob", "example.com", 1, &login), 0);
	cr_assert_eq(login_lookup("alice", "example.org", 0, &login), 0);
}

Test(accounts, add_existing_fails)
{
	const char *error = NULL;
	struct accounts_login login, again;

	migrate_ok(test_conn);
	add_ok("alice", "example.com", PASSWORD);
	login_lookup("alice", "example.com", 1, &login);
	cr_assert_eq(accounts_add(test_conn, "alice", "example.com", "other",
				  4096, &error), -1);
	cr_assert_str_eq(error, "user already exists");
	cr_assert_eq(accounts_exists(test_conn, "alice", "example.com",
				     &error), 1);
	cr_assert_eq(accounts_exists(test_conn, "bob", "example.com",
				     &error), 0);
	login_lookup("alice", "example.com", 1, &again);
	assert_verifies(&again, PASSWORD, 4096);
	cr_assert_eq(sql_int(test_conn, "SELECT count(*) FROM accounts"), 1);
	cr_assert_eq(PQtransactionStatus(test_conn), PQTRANS_IDLE);
}

Test(accounts, passwd_replaces_keys)
{
	const char *error = NULL;
	struct accounts_login login;

	migrate_ok(test_conn);
	add_ok("alice", "example.com", PASSWORD);
	cr_assert_eq(accounts_passwd(test_conn, "alice", "example.com",
				     "n3w password", 5000, &error), 0, "%s",
		     error);
	cr_assert_eq(login_lookup("alice", "example.com", 0, &login), 1);
	assert_verifies(&login, "n3w password", 5000);
	cr_assert_eq(scram_plain_verify(PASSWORD, &login.cred[1]),
		     SCRAM_ERR_PROOF);
	cr_assert_eq(sql_int(test_conn,
			     "SELECT count(*) FROM account_scram"), 2);
	assert_no_password("n3w password");
	cr_assert_eq(accounts_passwd(test_conn, "nobody", "example.com", "x",
				     4096, &error), -1);
	cr_assert_str_eq(error, "no such user");
	cr_assert_eq(PQtransactionStatus(test_conn), PQTRANS_IDLE);
}

Test(accounts, del_removes_account_and_keys)
{
	const char *error = NULL;
	struct accounts_login login;

	migrate_ok(test_conn);
	add_ok("alice", "example.com", PASSWORD);
	add_ok("bob", "example.com", PASSWORD);
	cr_assert_eq(accounts_del(test_conn, "alice", "example.com", &error),
		     0, "%s", error);
	cr_assert_eq(login_lookup("alice", "example.com", 0, &login), 0);
	cr_assert_eq(login_lookup("bob", "example.com", 0, &login), 1);
	cr_assert_eq(sql_int(test_conn,
			     "SELECT count(*) FROM account_scram"), 2);
	cr_assert_eq(accounts_del(test_conn, "alice", "example.com", &error),
		     -1);
	cr_assert_str_eq(error, "no such user");
}

struct list_out {
	char text[512];
};

static void list_cb(void *ctx, const char *user, const char *domain)
{
	struct list_out *out = ctx;
	size_t n = strlen(out->text);
	snprintf(out->text + n, sizeof(out->text) - n, "%s@%s\n", user,
		 domain);
}

Test(accounts, list_sorted_and_by_domain)
{
	const char *error = NULL;
	struct list_out all = { "" }, one = { "" }, none = { "" };

	migrate_ok(test_conn);
	add_ok("carol", "b.example", "pw");
	add_ok("bob", "a.example", "pw");
	add_ok("alice", "a.example", "pw");
	cr_assert_eq(accounts_list(test_conn, NULL, list_cb, &all, &error), 0);
	cr_assert_str_eq(all.text, "alice@a.example\nbob@a.example\n"
			 "carol@b.example\n");
	cr_assert_eq(accounts_list(test_conn, "b.example", list_cb, &one,
				   &error), 0);
	cr_assert_str_eq(one.text, "carol@b.example\n");
	cr_assert_eq(accounts_list(test_conn, "c.example", list_cb, &none,
				   &error), 0);
	cr_assert_str_eq(none.text, "");
}

Test(accounts, parse_jid_prepares)
{
	struct arena a;
	const char *user, *domain, *error;

	arena_init(&a, 1024);
	cr_assert_eq(accounts_parse_jid(&a, "Alice@EXAMPLE.com", &user,
					&domain, &error), 0, "%s", error);
	cr_assert_str_eq(user, "alice");
	cr_assert_str_eq(domain, "example.com");
	cr_assert_eq(accounts_parse_jid(&a, "example.com", &user, &domain,
					&error), -1);
	cr_assert_eq(accounts_parse_jid(&a, "a@example.com/r", &user, &domain,
					&error), -1);
	cr_assert_eq(accounts_parse_jid(&a, "a b@example.com", &user, &domain,
					&error), -1);
	arena_free(&a);
}

Test(accounts, decode_rejects_bad_rows)
{
	const char *error = NULL;
	struct accounts_login login;

	migrate_ok(test_conn);
	add_ok("alice", "example.com", PASSWORD);
	sql_ok(test_conn, "UPDATE account_scram SET stored_key = '\\x0102' "
	       "WHERE mechanism = 'SCRAM-SHA-256'");
	const char *params[2] = { "alice", "example.com" };
	PGresult *res = PQexecParams(test_conn, ACCOUNTS_LOGIN_SQL, 2, NULL,
				     params, NULL, NULL, 0);
	cr_assert_eq(accounts_login_decode(res, &login, &error), -1);
	cr_assert_not(login.found[0]);
	PQclear(res);
}

/* ---- the asynchronous link -------------------------------------------- */

struct loop {
	int fd;                 /* as last reported by fd_changed */
	int changes;
	int losses;             /* fd_changed(x, -1) with x >= 0 */
};

static void loop_fd_changed(void *ctx, int old_fd, int new_fd)
{
	struct loop *l = ctx;
	cr_assert_eq(old_fd, l->fd, "fd_changed: old %d, we had %d", old_fd,
		     l->fd);
	if (old_fd >= 0 && new_fd < 0)
		l->losses++;
	l->fd = new_fd;
	l->changes++;
}

/* Run the link until done(arg) or timeout_ms; false on timeout. */
static bool pump(struct db *db, bool (*done)(struct db *, void *),
		 void *arg, int timeout_ms)
{
	int64_t end = time_now_ms() + timeout_ms;
	while (!done(db, arg)) {
		int64_t now = time_now_ms();
		if (now >= end)
			return false;
		int wait = db_tick(db, now);
		if (wait < 0 || wait > 20)
			wait = 20;
		int fd = db_fd(db);
		uint32_t ev = db_events(db);
		struct pollfd p = {
			.fd = fd,
			.events = (short)(((ev & EPOLLIN) ? POLLIN : 0) |
					  ((ev & EPOLLOUT) ? POLLOUT : 0)),
		};
		int n = poll(&p, fd >= 0 ? 1 : 0, wait);
		cr_assert_geq(n, 0);
		if (n > 0)
			db_handle(db, ((p.revents & POLLIN) ? EPOLLIN : 0) |
				  ((p.revents & POLLOUT) ? EPOLLOUT : 0) |
				  ((p.revents & POLLERR) ? EPOLLERR : 0) |
				  ((p.revents & POLLHUP) ? EPOLLHUP : 0));
	}
	return true;
}

static bool is_up(struct db *db, void *arg)
{
	(void)arg;
	return db_is_up(db);
}

/* The link reported losing its socket (arg: the struct loop). */
static bool is_lost(struct db *db, void *arg)
{
	(void)db;
	return ((struct loop *)arg)->losses > 0;
}

static struct db *link_up(struct loop *l)
{
	memset(l, 0, sizeof(*l));
	l->fd = -1;
	struct db *db = db_new(test_conninfo, loop_fd_changed, l);
	cr_assert(pump(db, is_up, NULL, 10000), "the link did not come up");
	cr_assert_eq(db_fd(db), l->fd);
	cr_assert_geq(l->fd, 0);
	return db;
}

/* What one query's callback saw. */
struct answer {
	int calls;
	int ok;
	long value;             /* first column of the first row */
	int order;              /* when it was answered, from 1 */
	char error[256];
};

static int answer_seq;

static void answer_cb(void *ctx, const PGresult *res, const char *error)
{
	struct answer *a = ctx;
	a->calls++;
	a->order = ++answer_seq;
	if (res == NULL) {
		cr_assert_not_null(error);
		snprintf(a->error, sizeof(a->error), "%s", error);
		return;
	}
	cr_assert_null(error);
	a->ok = 1;
	if (PQntuples(res) > 0)
		a->value = atol(PQgetvalue(res, 0, 0));
}

static struct answer *pending_answers;
static int pending_count;

static bool all_answered(struct db *db, void *arg)
{
	(void)db;
	(void)arg;
	for (int i = 0; i < pending_count; i++) {
		if (pending_answers[i].calls == 0)
			return false;
	}
	return true;
}

static void wait_answers(struct db *db, struct answer *a, int n)
{
	pending_answers = a;
	pending_count = n;
	cr_assert(pump(db, all_answered, NULL, 10000), "queries unanswered");
	for (int i = 0; i < n; i++)
		cr_assert_eq(a[i].calls, 1);
}

static int query_int(struct db *db, long v, struct answer *a)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%ld", v);
	const char *params[1] = { buf };
	return db_query(db, "SELECT $1::int8", 1, params, NULL, NULL, 0,
			answer_cb, a);
}

Test(link, results_in_order)
{
	struct loop l;
	struct answer a[3] = { 0 };

	migrate_ok(test_conn);
	struct db *db = link_up(&l);
	answer_seq = 0;
	for (int i = 0; i < 3; i++)
		cr_assert_eq(query_int(db, 10 + i, &a[i]), 0);
	wait_answers(db, a, 3);
	for (int i = 0; i < 3; i++) {
		cr_assert(a[i].ok, "%s", a[i].error);
		cr_assert_eq(a[i].value, 10 + i);
		cr_assert_eq(a[i].order, i + 1);
	}
	db_free(&db);
	cr_assert_null(db);
}

/* 100 queries in the pipeline, one failing in the middle: only that one
 * fails, all come back in order. */
Test(link, pipelined_hundred)
{
	struct loop l;
	struct answer a[100] = { 0 };

	migrate_ok(test_conn);
	struct db *db = link_up(&l);
	answer_seq = 0;
	for (int i = 0; i < 100; i++) {
		if (i == 50)
			cr_assert_eq(db_query(db, "SELECT 1/0", 0, NULL, NULL,
					      NULL, 0, answer_cb, &a[i]), 0);
		else
			cr_assert_eq(query_int(db, i, &a[i]), 0);
	}
	wait_answers(db, a, 100);
	for (int i = 0; i < 100; i++) {
		cr_assert_eq(a[i].order, i + 1);
		if (i == 50) {
			cr_assert_not(a[i].ok);
			cr_assert_not_null(strstr(a[i].error, "division by zero"),
					   "%s", a[i].error);
		} else {
			cr_assert(a[i].ok, "query %d: %s", i, a[i].error);
			cr_assert_eq(a[i].value, i);
		}
	}
	cr_assert(db_is_up(db));
	db_free(&db);
}

Test(link, binary_login_lookup)
{
	struct loop l;
	struct answer a = { 0 };

	migrate_ok(test_conn);
	add_ok("alice", "example.com", PASSWORD);
	struct db *db = link_up(&l);
	const char *params[2] = { "alice", "example.com" };
	cr_assert_eq(db_query(db, ACCOUNTS_LOGIN_SQL, ACCOUNTS_LOGIN_NPARAMS,
			      params, NULL, NULL, 1, answer_cb, &a), 0);
	wait_answers(db, &a, 1);
	cr_assert(a.ok, "%s", a.error);
	db_free(&db);
}

/* db.max_queue_bytes: queries not yet answered are counted in bytes;
 * past the bound db_query fails at once (callback not called), one
 * query alone always goes, and answered ones give their room back. */
Test(link, queue_bounded_in_bytes)
{
	struct loop l;
	static struct answer a[8];
	static char big[4][100001];
	const char *sql = "SELECT length($1)";

	memset(a, 0, sizeof(a));
	migrate_ok(test_conn);
	struct db *db = link_up(&l);
	db_set_max_queue_bytes(db, 250000);
	for (int i = 0; i < 4; i++) {
		memset(big[i], 'a' + i, 100000);
		big[i][100000] = '\0';
	}
	/* nothing is read in between: all three wait for their answer */
	const char *p0[1] = { big[0] }, *p1[1] = { big[1] }, *p2[1] = { big[2] };
	cr_assert_eq(db_query(db, sql, 1, p0, NULL, NULL, 0, answer_cb, &a[0]), 0);
	cr_assert_eq(db_query(db, sql, 1, p1, NULL, NULL, 0, answer_cb, &a[1]), 0);
	cr_assert_eq(db_query(db, sql, 1, p2, NULL, NULL, 0, answer_cb, &a[2]),
		     DB_QUERY_FULL);
	/* a small one still fits */
	cr_assert_eq(query_int(db, 5, &a[3]), 0);
	wait_answers(db, a, 2);
	wait_answers(db, &a[3], 1);
	cr_assert_eq(a[2].calls, 0, "a refused query's callback ran");
	cr_assert_eq(a[0].value, 100000);
	cr_assert_eq(a[1].value, 100000);
	/* answered: the room is back */
	cr_assert_eq(db_query(db, sql, 1, p2, NULL, NULL, 0, answer_cb, &a[2]), 0);
	wait_answers(db, &a[2], 1);
	cr_assert_eq(a[2].value, 100000);
	/* one query larger than the bound goes when nothing waits */
	db_set_max_queue_bytes(db, 1000);
	const char *p3[1] = { big[3] };
	cr_assert_eq(db_query(db, sql, 1, p3, NULL, NULL, 0, answer_cb, &a[4]), 0);
	cr_assert_eq(db_query(db, sql, 1, p3, NULL, NULL, 0, answer_cb, &a[5]),
		     DB_QUERY_FULL);
	wait_answers(db, &a[4], 1);
	cr_assert(db_is_up(db));
	db_free(&db);
}

static void cancelled_cb(void *ctx, const PGresult *res, const char *error)
{
	(void)ctx;
	(void)res;
	(void)error;
	cr_assert_fail("a cancelled callback was called");
}

Test(link, cancel_forgets_callbacks)
{
	struct loop l;
	struct answer a = { 0 };
	int ctx;

	migrate_ok(test_conn);
	struct db *db = link_up(&l);
	cr_assert_eq(db_query(db, "SELECT 1", 0, NULL, NULL, NULL, 0,
			      cancelled_cb, &ctx), 0);
	cr_assert_eq(db_query(db, "SELECT 2", 0, NULL, NULL, NULL, 0,
			      cancelled_cb, &ctx), 0);
	db_cancel(db, &ctx);
	cr_assert_eq(query_int(db, 7, &a), 0);
	wait_answers(db, &a, 1);
	cr_assert_eq(a.value, 7);
	db_free(&db);
}

Test(link, free_fails_pending)
{
	struct loop l;
	struct answer a = { 0 };

	migrate_ok(test_conn);
	struct db *db = link_up(&l);
	cr_assert_eq(query_int(db, 1, &a), 0);
	db_free(&db);
	cr_assert_eq(a.calls, 1);
	cr_assert_not(a.ok);
	cr_assert_str_eq(a.error, "database link closed");
}

/* Kill the link's backend during a query: the query fails with res NULL,
 * the link reconnects by itself, later queries work. */
Test(link, reconnects_after_backend_killed)
{
	struct loop l;
	struct answer pid = { 0 }, slow = { 0 }, after = { 0 }, down = { 0 };

	migrate_ok(test_conn);
	struct db *db = link_up(&l);
	cr_assert_eq(db_query(db, "SELECT pg_backend_pid()", 0, NULL, NULL,
			      NULL, 0, answer_cb, &pid), 0);
	wait_answers(db, &pid, 1);
	cr_assert_eq(db_query(db, "SELECT pg_sleep(30)", 0, NULL, NULL, NULL,
			      0, answer_cb, &slow), 0);
	char sql[128];
	snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%ld)",
		 pid.value);
	sql_ok(test_conn, sql);
	int64_t t0 = time_now_ms();
	wait_answers(db, &slow, 1);
	cr_assert_not(slow.ok);
	cr_assert_str_eq(slow.error, "database unavailable");
	cr_assert_lt(time_now_ms() - t0, 5000);
	cr_assert_eq(l.losses, 1);
	cr_assert_eq(l.fd, -1);
	cr_assert_not(db_is_up(db));
	cr_assert_eq(query_int(db, 1, &down), -1);
	cr_assert_eq(down.calls, 0);
	cr_assert(pump(db, is_up, NULL, 10000), "no reconnect within 10 s");
	cr_assert_geq(l.fd, 0);
	cr_assert_eq(query_int(db, 42, &after), 0);
	wait_answers(db, &after, 1);
	cr_assert(after.ok, "%s", after.error);
	cr_assert_eq(after.value, 42);
	db_free(&db);
}

/* A port where nothing listens. */
static int closed_port(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert(fd >= 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	return ntohs(sin.sin_port);
}

static bool never(struct db *db, void *arg)
{
	(void)db;
	(void)arg;
	return false;
}

/* Nothing listens: a query made before the first attempt waits for it
 * and fails with it, promptly; once an attempt has failed, queries fail
 * at once (the caller is not called). */
Test(link, closed_port_fails_fast)
{
	struct loop l = { .fd = -1 };
	struct answer first = { 0 }, a = { 0 };
	char conninfo[128];

	snprintf(conninfo, sizeof(conninfo),
		 "hostaddr=127.0.0.1 port=%d dbname=x user=x", closed_port());
	int64_t t0 = time_now_ms();
	struct db *db = db_new(conninfo, loop_fd_changed, &l);
	cr_assert_eq(query_int(db, 1, &first), 0);
	cr_assert_geq(db_tick(db, time_now_ms()), 0);
	wait_answers(db, &first, 1);
	cr_assert_not(first.ok);
	cr_assert_str_eq(first.error, "database unavailable");
	cr_assert_eq(query_int(db, 1, &a), -1);
	pump(db, never, NULL, 300);
	cr_assert_eq(query_int(db, 1, &a), -1);
	cr_assert_not(db_is_up(db));
	cr_assert_eq(a.calls, 0);
	cr_assert_lt(time_now_ms() - t0, 1000);
	db_free(&db);
}

/* Queries made right after db_new(), before any I/O, wait for the link
 * and are answered in order once it is up, parameters intact (they were
 * copied: the caller's buffers are gone by then). */
Test(link, queries_wait_for_first_connect)
{
	struct loop l = { .fd = -1 };
	struct answer a[3] = { 0 }, bin = { 0 };

	migrate_ok(test_conn);
	add_ok("alice", "example.com", PASSWORD);
	struct db *db = db_new(test_conninfo, loop_fd_changed, &l);
	cr_assert_not(db_is_up(db));
	answer_seq = 0;
	for (int i = 0; i < 3; i++)
		cr_assert_eq(query_int(db, 20 + i, &a[i]), 0);
	char user[8] = "alice", domain[16] = "example.com";
	const char *params[2] = { user, domain };
	cr_assert_eq(db_query(db, ACCOUNTS_LOGIN_SQL, ACCOUNTS_LOGIN_NPARAMS,
			      params, NULL, NULL, 1, answer_cb, &bin), 0);
	memset(user, 'x', sizeof(user) - 1);
	memset(domain, 'y', sizeof(domain) - 1);
	wait_answers(db, a, 3);
	wait_answers(db, &bin, 1);
	for (int i = 0; i < 3; i++) {
		cr_assert(a[i].ok, "%s", a[i].error);
		cr_assert_eq(a[i].value, 20 + i);
		cr_assert_eq(a[i].order, i + 1);
	}
	cr_assert(bin.ok, "%s", bin.error);
	cr_assert(db_is_up(db));
	db_free(&db);
}

/* A waiting query whose caller went away is still sent, its callback
 * forgotten; db_free() fails what still waits. */
Test(link, waiting_cancel_and_free)
{
	struct loop l = { .fd = -1 };
	struct answer a = { 0 }, b = { 0 };
	int ctx;

	migrate_ok(test_conn);
	struct db *db = db_new(test_conninfo, loop_fd_changed, &l);
	cr_assert_eq(db_query(db, "SELECT 1", 0, NULL, NULL, NULL, 0,
			      cancelled_cb, &ctx), 0);
	db_cancel(db, &ctx);
	cr_assert_eq(query_int(db, 3, &a), 0);
	wait_answers(db, &a, 1);
	cr_assert_eq(a.value, 3);
	db_free(&db);

	db = db_new(test_conninfo, loop_fd_changed, &l);
	cr_assert_eq(query_int(db, 4, &b), 0);
	db_free(&db);
	cr_assert_eq(b.calls, 1);
	cr_assert_str_eq(b.error, "database link closed");
}

/* A database without our schema (or with an unknown version) is down;
 * once migrated the link comes up by itself. */
Test(link, unknown_schema_is_down)
{
	struct loop l = { .fd = -1 };
	struct answer a = { 0 };

	struct db *db = db_new(test_conninfo, loop_fd_changed, &l);
	pump(db, never, NULL, 600);
	cr_assert_not(db_is_up(db));
	cr_assert_eq(query_int(db, 1, &a), -1);
	migrate_ok(test_conn);
	cr_assert(pump(db, is_up, NULL, 10000), "not up after migrate");
	db_free(&db);
}

Test(link, set_conninfo_reconnects)
{
	struct loop l;

	migrate_ok(test_conn);
	struct db *db = link_up(&l);
	db_set_conninfo(db, test_conninfo);     /* same: nothing happens */
	cr_assert(db_is_up(db));
	cr_assert_eq(l.losses, 0);
	char *other = xcalloc(1, strlen(test_conninfo) + 64);
	sprintf(other, "%s application_name=xmppd_test", test_conninfo);
	db_set_conninfo(db, other);
	cr_assert_eq(l.losses, 1);
	cr_assert_not(db_is_up(db));
	cr_assert(pump(db, is_up, NULL, 10000));
	struct answer a = { 0 };
	cr_assert_eq(db_query(db, "SELECT count(*) FROM pg_stat_activity "
			      "WHERE application_name = 'xmppd_test'", 0, NULL,
			      NULL, NULL, 0, answer_cb, &a), 0);
	wait_answers(db, &a, 1);
	cr_assert_eq(a.value, 1);
	free(other);
	db_free(&db);
}

/* The backend dies while the link is idle: the link notices by itself
 * (EPOLLIN, EOF), goes down, and comes back. */
Test(link, idle_backend_killed)
{
	struct loop l;
	struct answer pid = { 0 }, after = { 0 };

	migrate_ok(test_conn);
	struct db *db = link_up(&l);
	cr_assert_eq(db_query(db, "SELECT pg_backend_pid()", 0, NULL, NULL,
			      NULL, 0, answer_cb, &pid), 0);
	wait_answers(db, &pid, 1);
	char sql[128];
	snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%ld)",
		 pid.value);
	sql_ok(test_conn, sql);
	cr_assert(pump(db, is_lost, &l, 5000), "the loss went unnoticed");
	cr_assert(pump(db, is_up, NULL, 10000), "no reconnect within 10 s");
	cr_assert_eq(query_int(db, 5, &after), 0);
	wait_answers(db, &after, 1);
	cr_assert_eq(after.value, 5);
	db_free(&db);
}

static int counted;

static void count_cb(void *ctx, const PGresult *res, const char *error)
{
	(void)ctx;
	cr_assert_not_null(res, "%s", error);
	counted++;
}

static bool all_counted(struct db *db, void *arg)
{
	(void)db;
	return counted == *(int *)arg;
}

/* At most 10000 queries wait at once; the rest fail at once. */
Test(link, queue_is_bounded)
{
	struct loop l;
	int queued = 0;

	migrate_ok(test_conn);
	struct db *db = link_up(&l);
	counted = 0;
	while (queued < 20000 && db_query(db, "SELECT 1", 0, NULL, NULL,
					  NULL, 0, count_cb, NULL) == 0)
		queued++;
	cr_assert_eq(queued, 10000);
	cr_assert(pump(db, all_counted, &queued, 30000), "%d of %d answered",
		  counted, queued);
	cr_assert_eq(db_query(db, "SELECT 1", 0, NULL, NULL, NULL, 0,
			      count_cb, NULL), 0);
	queued++;
	cr_assert(pump(db, all_counted, &queued, 10000));
	db_free(&db);
}

/* A server that accepts but never answers: the attempt is given up
 * after 5 s, and retried. */
Test(link, connect_timeout)
{
	struct loop l = { .fd = -1 };
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	char conninfo[160];

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(listen(lfd, 8), 0);
	cr_assert_eq(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
	snprintf(conninfo, sizeof(conninfo), "hostaddr=127.0.0.1 port=%d "
		 "dbname=x user=x sslmode=disable gssencmode=disable",
		 ntohs(sin.sin_port));
	struct db *db = db_new(conninfo, loop_fd_changed, &l);
	int64_t t0 = time_now_ms();
	cr_assert(pump(db, is_lost, &l, 8000), "no timeout after 8 s");
	int64_t took = time_now_ms() - t0;
	cr_assert(took >= 4500 && took < 6500, "timed out after %lld ms",
		  (long long)took);
	cr_assert_not(db_is_up(db));
	db_free(&db);
	close(lfd);
}

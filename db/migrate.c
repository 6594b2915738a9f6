/*
 * migrate.c - check and move forward the schema of xmppd's database with
 * synchronous libpq (xmppctl db migrate/status, start-up checks; never in
 * a worker loop).  The steps are db/schema/NNN-name.sql, compiled in by
 * scripts/embed-sql.  Each step runs in its own transaction holding a
 * transaction-level advisory lock, so two migrates serialize and the
 * second finds nothing left to do.
 * Failure policy: -1 with a reason in *error_r (a static buffer, valid
 * until the next call); a failed step rolls back whole.  Nothing logs.
 */
#include "db.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* pg_advisory_xact_lock key: "xmppd_db" as a big-endian int8. */
#define MIGRATE_LOCK_SQL "SELECT pg_advisory_xact_lock(8677715685035435106)"

static char migrate_error[512];

static int migrate_fail(const char **error_r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int migrate_fail(const char **error_r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(migrate_error, sizeof(migrate_error), fmt, ap);
	va_end(ap);
	*error_r = migrate_error;
	return -1;
}

/* The first line of a libpq error message. */
static int migrate_line_len(const char *msg)
{
	return (int)strcspn(msg, "\n");
}

/* Run sql; on failure "what: server message". */
static int migrate_exec(PGconn *conn, const char *what, const char *sql,
			const char **error_r)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(res);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
		PQclear(res);
		return 0;
	}
	const char *msg = res != NULL ? PQresultErrorMessage(res) :
		PQerrorMessage(conn);
	migrate_fail(error_r, "%s: %.*s", what, migrate_line_len(msg), msg);
	PQclear(res);
	return -1;
}

/* One integer from a one-row query. */
static int migrate_int(PGconn *conn, const char *sql, int *value_r,
		       const char **error_r)
{
	PGresult *res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		const char *msg = res != NULL ? PQresultErrorMessage(res) :
			PQerrorMessage(conn);
		migrate_fail(error_r, "reading the schema version: %.*s",
			     migrate_line_len(msg), msg);
		PQclear(res);
		return -1;
	}
	*value_r = PQgetisnull(res, 0, 0) ? 0 : atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

/* The database's version: 0 without a schema_version table or row. */
static int migrate_version(PGconn *conn, int *version_r,
			   const char **error_r)
{
	int exists;
	if (migrate_int(conn, "SELECT (to_regclass('schema_version') "
			"IS NOT NULL)::int", &exists, error_r) < 0)
		return -1;
	*version_r = 0;
	if (!exists)
		return 0;
	return migrate_int(conn, "SELECT max(version) FROM schema_version",
			   version_r, error_r);
}

static int migrate_newer(int version, const char **error_r)
{
	return migrate_fail(error_r, "database schema version %d is newer "
			    "than this xmppd knows (%d): upgrade xmppd",
			    version, DB_SCHEMA_VERSION);
}

int db_schema_check(PGconn *conn, int *version_r, const char **error_r)
{
	if (migrate_version(conn, version_r, error_r) < 0)
		return -1;
	if (*version_r == DB_SCHEMA_VERSION)
		return 1;
	if (*version_r == 0) {
		*error_r = "database has no schema: run 'xmppctl db migrate'";
		return 0;
	}
	if (*version_r > DB_SCHEMA_VERSION)
		return migrate_newer(*version_r, error_r);
	return migrate_fail(error_r, "database schema version %d is older "
			    "than this xmppd needs (%d): run 'xmppctl db "
			    "migrate'", *version_r, DB_SCHEMA_VERSION);
}

/* Inside the transaction: apply the step after version v, check that it
 * recorded its version. */
static int migrate_apply(PGconn *conn, int v, const char **error_r)
{
	if (v < 0 || (unsigned)v >= db_schema_steps_count ||
	    db_schema_steps[v].version != v + 1)
		return migrate_fail(error_r, "no schema step after version %d",
				    v);
	const struct db_schema_step *step = &db_schema_steps[v];
	int now;
	if (migrate_exec(conn, step->name, step->sql, error_r) < 0 ||
	    migrate_version(conn, &now, error_r) < 0)
		return -1;
	if (now != step->version)
		return migrate_fail(error_r, "%s left the schema at version "
				    "%d, not %d", step->name, now,
				    step->version);
	return 0;
}

/* One transaction: lock, read the version, apply at most one step.
 * *before_r and *after_r get the versions around it. */
static int migrate_step(PGconn *conn, int *before_r, int *after_r,
			const char **error_r)
{
	if (migrate_exec(conn, "BEGIN", "BEGIN", error_r) < 0)
		return -1;
	int v;
	if (migrate_exec(conn, "taking the migration lock", MIGRATE_LOCK_SQL,
			 error_r) < 0 || migrate_version(conn, &v, error_r) < 0)
		goto rollback;
	*before_r = *after_r = v;
	if (v > DB_SCHEMA_VERSION) {
		migrate_newer(v, error_r);
		goto rollback;
	}
	if (v < DB_SCHEMA_VERSION && migrate_apply(conn, v, error_r) < 0)
		goto rollback;
	if (migrate_exec(conn, "COMMIT", "COMMIT", error_r) < 0)
		return -1;
	*after_r = v < DB_SCHEMA_VERSION ? v + 1 : v;
	return 0;
rollback:
	PQclear(PQexec(conn, "ROLLBACK"));
	return -1;
}

int db_migrate(PGconn *conn, int *from_r, int *to_r, const char **error_r)
{
	*from_r = *to_r = 0;
	if (PQtransactionStatus(conn) != PQTRANS_IDLE)
		return migrate_fail(error_r, "the connection is not idle (in a "
				    "transaction, or lost)");
	int before, after;
	if (migrate_step(conn, &before, &after, error_r) < 0)
		return -1;
	*from_r = before;
	while (after != before) {
		*to_r = after;
		before = after;
		if (migrate_step(conn, &before, &after, error_r) < 0)
			return -1;
	}
	*to_r = after;
	return 0;
}

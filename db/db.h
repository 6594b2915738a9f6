/*
 * db.h - a worker's asynchronous PostgreSQL link (libpq, non-blocking,
 * pipeline mode).  The worker's epoll loop watches db_fd() for
 * db_events() and calls db_handle(); db_tick() drives reconnects with
 * back-off (doubling, 250 ms .. 10 s).  Queries are parameterized only.
 * While the link is first being established (after db_new() or a
 * conninfo change, until an attempt fails) db_query() copies the query
 * and sends it once the link is up; once an attempt has failed, and
 * until the link is up again, db_query() fails at once (the caller
 * answers temporary-auth-failure or a `wait` error).  The loop never
 * blocks.
 * Failure policy: a lost link fails every pending query's callback with
 * res == NULL and an error string, then reconnects; nothing here exits.
 */
#ifndef XMPPD_DB_H
#define XMPPD_DB_H

#include <libpq-fe.h>
#include <stdint.h>

/* The schema version this binary knows (db/schema/NNN-*.sql). */
#define DB_SCHEMA_VERSION 20

struct db;

/* res is NULL on failure (error set): the link was lost ("database
 * unavailable"), the server answered with an error (its message), or the
 * link was freed.  On success error is NULL and res is PGRES_TUPLES_OK or
 * PGRES_COMMAND_OK; it is freed after the callback returns (do not PQclear
 * it).  A callback may call db_query() and db_cancel(), not db_free(). */
typedef void db_callback(void *ctx, const PGresult *res, const char *error);

/* fd_changed is called whenever the socket changes (connect, reconnect,
 * loss: new_fd -1) so the caller can update its epoll set; old_fd ==
 * new_fd means a new socket reused the number (add it again).  After any
 * db_* call the caller re-arms the fd with db_events().  db_new() does no
 * I/O: the first db_tick() starts connecting.  Host names in conninfo are
 * resolved by libpq synchronously: workers should use hostaddr= or a
 * Unix socket path.  db_free() fails pending callbacks ("database link
 * closed") and closes the socket without calling fd_changed. */
struct db *db_new(const char *conninfo,
		  void (*fd_changed)(void *loop_ctx, int old_fd, int new_fd),
		  void *loop_ctx);
void db_free(struct db **db);
/* Change conninfo (reload): reconnects if it differs. */
void db_set_conninfo(struct db *db, const char *conninfo);

int db_fd(const struct db *db);             /* -1 when not connected */
uint32_t db_events(const struct db *db);    /* EPOLLIN and/or EPOLLOUT */
void db_handle(struct db *db, uint32_t events);
/* Timers: reconnect back-off, connect timeout.  Returns ms until the next
 * deadline (or -1 for none). */
int db_tick(struct db *db, int64_t now_ms);
int db_is_up(const struct db *db);
/* Queries sent or waiting whose callback has not run yet (a worker that
 * stops waits for them: offline stores, archive batches). */
unsigned db_unanswered(const struct db *db);
/* A worker that stops: from now on a query made while the link is down
 * waits for it (as while "starting") instead of failing at once, and
 * waiting queries are failed neither by a failed reconnect nor by the
 * query timeout (queries already sent still fail with a lost link): the
 * caller bounds the wait and counts what is left (db_unanswered).
 * DB_QUEUE_MAX and db.max_queue_bytes still bound them. */
void db_hold(struct db *db);

/* Queue one parameterized query (text params; lengths/formats may be
 * NULL for text, else as PQsendQueryParams; binary results if
 * result_binary).  0 queued (sent, or copied to wait for a starting
 * link; either way answered within the 10 s query timeout), -1 link down
 * or queue full (cb not called), DB_QUERY_FULL when the bytes of the
 * queries not yet answered would pass db.max_queue_bytes (one query
 * alone always goes; a warning is logged at most every 10 s). */
#define DB_QUERY_FULL (-2)
int db_query(struct db *db, const char *sql, int nparams,
	     const char *const *params, const int *lengths,
	     const int *formats, int result_binary, db_callback *cb,
	     void *ctx);
/* db.max_queue_bytes: bytes of queries (text and parameters) sent or
 * waiting and not yet answered; 0: no bound. */
void db_set_max_queue_bytes(struct db *db, size_t bytes);
/* Forget the callbacks of every pending query with this ctx (its
 * connection went away); the queries still complete. */
void db_cancel(struct db *db, void *ctx);

/* Synchronous helpers for xmppctl and the master's start-up check
 * (never used in a worker loop). */
/* 1 = known version, 0 = no schema yet, -1 = error or unknown version
 * (*error_r says which); *version_r gets the database's version. */
int db_schema_check(PGconn *conn, int *version_r, const char **error_r);
/* Apply every schema step above the current version, in a transaction
 * each; prints nothing; 0 or -1. */
int db_migrate(PGconn *conn, int *from_r, int *to_r, const char **error_r);

/* The schema steps, compiled from db/schema/NNN-name.sql by
 * scripts/embed-sql into the generated db/schema-sql.c; step i brings the
 * schema to version i + 1 and records it in schema_version. */
struct db_schema_step {
	int version;
	const char *name;       /* the .sql file name, for messages */
	const char *sql;        /* one or more statements */
};
extern const struct db_schema_step db_schema_steps[];
extern const unsigned db_schema_steps_count;

#endif

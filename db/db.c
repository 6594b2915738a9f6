/*
 * db.c - a worker's asynchronous PostgreSQL link (db.h).  One PGconn in
 * non-blocking pipeline mode; every query is followed by its own
 * PQpipelineSync, so a failing query aborts only itself, and answers come
 * back in order, matched against a bounded FIFO of callbacks.  States:
 * idle (back-off) -> connecting (PQconnectPoll) -> checking (schema
 * version query) -> up.  Until the link first fails (after db_new() or a
 * conninfo change) it is "starting": queries are copied into a waiting
 * list and sent once it is up, so the first logins after a (re)start do
 * not fail; after a failure they fail at once until it is up again.
 * A stopping worker holds its link (db_hold): from then on every query
 * waits for the link, whatever happens to it, and the worker bounds the
 * wait itself (shutdown_drain_timeout).
 * Failure policy: a failed connect, a lost link or a schema this binary
 * does not know closes the socket, fails every pending callback with
 * "database unavailable" and retries after a back-off doubling from
 * 250 ms to 10 s.  Each distinct reason is logged once at error (retries
 * for the same reason at debug); nothing here blocks or exits.
 */
#include "db.h"
#include "log.h"
#include "util.h"
#include "metrics.h"

#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <time.h>

#define DB_QUEUE_MAX 10000              /* pending queries per link */
#define DB_QUEUE_MIN 16
#define DB_BACKOFF_MIN_MS 250
#define DB_BACKOFF_MAX_MS 10000
#define DB_CONNECT_TIMEOUT_MS 5000      /* connect + schema check */
#define DB_CONNECT_TIMEOUT_TEXT "5 s"
/* A server that accepts but never answers must not hold logins forever:
 * the oldest query waiting this long takes the link down (its callers
 * get their errors) and the link reconnects. */
#define DB_QUERY_TIMEOUT_MS 10000
#define DB_QUERY_TIMEOUT_TEXT "10 s"
#define DB_REFUSED_LOG_MS 10000        /* queue full: one warning per */
#define DB_ERR_DOWN "database unavailable"
#define DB_ERR_CLOSED "database link closed"
#define DB_VERSION_SQL "SELECT max(version) FROM schema_version"

enum db_state {
	DB_STATE_IDLE = 0,      /* no socket; next attempt at deadline_ms */
	DB_STATE_CONNECTING,    /* PQconnectPoll in progress */
	DB_STATE_CHECKING,      /* connected; schema version query sent */
	DB_STATE_UP,
};

struct db_pending {
	db_callback *cb;        /* NULL once cancelled */
	void *ctx;
	int64_t sent_ms;        /* when it was queued (query timeout) */
	int64_t sent_us;        /* when it was sent (latency histogram) */
	size_t bytes;           /* its text and parameters (queued_bytes) */
};

/* A query made while the link was starting: a copy of everything
 * db_query() was given, in one allocation, sent once the link is up. */
struct db_waiting {
	struct db_waiting *next;
	db_callback *cb;        /* NULL once cancelled (still sent) */
	void *ctx;
	int64_t queued_ms;      /* when db_query() was called */
	size_t bytes;           /* its text and parameters (queued_bytes) */
	int nparams;
	int result_binary;
	const char *sql;
	const char **params;    /* each NULL (SQL NULL) or a copy */
	int *lengths;
	int *formats;           /* NULL: all text */
};

struct db {
	char *conninfo;
	void (*fd_changed)(void *loop_ctx, int old_fd, int new_fd);
	void *loop_ctx;

	PGconn *conn;
	enum db_state state;
	int fd;                 /* socket last reported through fd_changed */
	ino_t fd_ino;           /* its inode: a reused number is a new socket */
	PostgresPollingStatusType poll;  /* what PQconnectPoll waits for */
	bool want_write;        /* PQflush left output behind: EPOLLOUT */
	bool lost;              /* drop the link at the end of this call */
	int64_t deadline_ms;    /* next attempt (idle) or connect timeout */
	int backoff_ms;         /* delay before the next attempt */

	struct db_pending *queue;   /* ring of unanswered queries, oldest first */
	unsigned head, count, cap;
	unsigned syncs;         /* PGRES_PIPELINE_SYNC results still due */
	bool starting;          /* no failure since db_new()/new conninfo:
				   queries wait instead of failing */
	bool hold;              /* db_hold(): queries wait for the link
				   whatever happens, until the caller exits */
	struct db_waiting *wait_head, *wait_tail;  /* oldest first */
	unsigned nwaiting;
	/* Bytes of the queries sent or waiting and not yet answered (held
	 * by libpq's buffer and by the callers' contexts), bounded by
	 * db.max_queue_bytes: past it db_query() fails at once. */
	size_t queued_bytes, max_queue_bytes;
	unsigned refused;       /* refused since the last warning */
	int64_t refused_logged_ms;

	char reason[256];       /* why the link is going down */
	char logged[256];       /* the last reason logged at error */
	char error[256];        /* a server error, for one callback */
};

/* ---- small helpers ---------------------------------------------------- */

/* Copy the first line of msg (libpq messages end in "\n"). */
static void db_copy_line(char *dst, size_t size, const char *msg)
{
	if (msg == NULL || *msg == '\0')
		msg = "unknown error";
	size_t n = strcspn(msg, "\n");
	if (n >= size)
		n = size - 1;
	memcpy(dst, msg, n);
	dst[n] = '\0';
}

/* Remember why the link must go down; the first reason wins. */
static void db_mark_lost(struct db *db, const char *reason)
{
	if (db->lost)
		return;
	db->lost = true;
	db_copy_line(db->reason, sizeof(db->reason), reason);
}

static void db_notice(void *arg, const char *message)
{
	(void)arg;
	log_warn("database notice: %.*s", (int)strcspn(message, "\n"),
		 message);
}

/* Report the socket to the loop when it changed (number or inode). */
static void db_set_fd(struct db *db, int fd)
{
	struct stat st;
	ino_t ino = 0;
	if (fd >= 0 && fstat(fd, &st) == 0)
		ino = st.st_ino;
	if (fd == db->fd && ino == db->fd_ino)
		return;
	int old = db->fd;
	db->fd = fd;
	db->fd_ino = ino;
	if (db->fd_changed != NULL)
		db->fd_changed(db->loop_ctx, old, fd);
}

/* ---- the FIFO of pending callbacks ------------------------------------ */

static int db_queue_grow(struct db *db)
{
	unsigned ncap = db->cap == 0 ? DB_QUEUE_MIN : db->cap * 2;
	if (ncap > DB_QUEUE_MAX)
		ncap = DB_QUEUE_MAX;
	if (ncap <= db->cap)
		return -1;
	struct db_pending *q = malloc(ncap * sizeof(*q));
	if (q == NULL)
		return -1;
	for (unsigned i = 0; i < db->count; i++)
		q[i] = db->queue[(db->head + i) % db->cap];
	free(db->queue);
	db->queue = q;
	db->cap = ncap;
	db->head = 0;
	return 0;
}

static int64_t db_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void db_queue_push(struct db *db, db_callback *cb, void *ctx,
			  int64_t since_ms, size_t bytes)
{
	struct db_pending *p = &db->queue[(db->head + db->count) % db->cap];
	p->cb = cb;
	p->ctx = ctx;
	p->sent_ms = since_ms;
	p->sent_us = db_now_us();
	p->bytes = bytes;
	db->queued_bytes += bytes;
	db->count++;
}

static struct db_pending db_queue_pop(struct db *db)
{
	struct db_pending p = db->queue[db->head];
	db->head = (db->head + 1) % db->cap;
	db->count--;
	db->queued_bytes -= p.bytes;
	return p;
}

/* Fail every pending callback.  Each is popped before it runs, so a
 * callback may queue (which fails: the link is not up) or cancel. */
static void db_fail_all(struct db *db, const char *error)
{
	db->syncs = 0;
	while (db->count > 0) {
		struct db_pending p = db_queue_pop(db);
		METRIC_INC(metrics_self->db.errors);
		if (p.cb != NULL)
			p.cb(p.ctx, NULL, error);
	}
}

/* ---- queries waiting for the link to come up -------------------------- */

static size_t db_param_len(const char *const *params, const int *lengths,
			   const int *formats, int i)
{
	if (formats != NULL && formats[i] == 1)
		return lengths != NULL ? (size_t)lengths[i] : 0;
	return strlen(params[i]) + 1;
}

/* Copy a query into one allocation; NULL when out of memory. */
static struct db_waiting *db_waiting_new(const char *sql, int nparams,
					 const char *const *params,
					 const int *lengths,
					 const int *formats)
{
	size_t n = nparams > 0 ? (size_t)nparams : 0;
	size_t size = sizeof(struct db_waiting) + n * sizeof(char *) +
		2 * n * sizeof(int) + strlen(sql) + 1;
	for (size_t i = 0; i < n; i++)
		if (params[i] != NULL)
			size += db_param_len(params, lengths, formats, (int)i);
	struct db_waiting *q = calloc(1, size);
	if (q == NULL)
		return NULL;
	q->nparams = (int)n;
	q->params = (const char **)(q + 1);
	q->lengths = (int *)(q->params + n);
	int *fmts = q->lengths + n;
	char *data = (char *)(fmts + n);
	for (size_t i = 0; i < n; i++) {
		q->lengths[i] = lengths != NULL ? lengths[i] : 0;
		fmts[i] = formats != NULL ? formats[i] : 0;
		if (params[i] == NULL)
			continue;
		size_t len = db_param_len(params, lengths, formats, (int)i);
		memcpy(data, params[i], len);
		q->params[i] = data;
		data += len;
	}
	q->formats = formats != NULL ? fmts : NULL;
	memcpy(data, sql, strlen(sql) + 1);
	q->sql = data;
	return q;
}

static int db_wait(struct db *db, const char *sql, int nparams,
		   const char *const *params, const int *lengths,
		   const int *formats, int result_binary, db_callback *cb,
		   void *ctx, size_t bytes)
{
	struct db_waiting *q = db_waiting_new(sql, nparams, params, lengths,
					      formats);
	if (q == NULL)
		return -1;
	q->cb = cb;
	q->ctx = ctx;
	q->queued_ms = time_now_ms();
	q->result_binary = result_binary;
	q->bytes = bytes;
	db->queued_bytes += bytes;
	if (db->wait_tail != NULL)
		db->wait_tail->next = q;
	else
		db->wait_head = q;
	db->wait_tail = q;
	db->nwaiting++;
	return 0;
}

static struct db_waiting *db_wait_pop(struct db *db)
{
	struct db_waiting *q = db->wait_head;
	db->wait_head = q->next;
	if (db->wait_head == NULL)
		db->wait_tail = NULL;
	db->nwaiting--;
	db->queued_bytes -= q->bytes;
	return q;
}

/* Fail the waiting queries queued at or before `before_ms` (all: -1).
 * Each is unlinked before its callback runs. */
static void db_wait_fail(struct db *db, int64_t before_ms, const char *error)
{
	while (db->wait_head != NULL &&
	       (before_ms < 0 || db->wait_head->queued_ms <= before_ms)) {
		struct db_waiting *q = db_wait_pop(db);
		if (q->cb != NULL)
			q->cb(q->ctx, NULL, error);
		free(q);
	}
}

/* ---- link state ------------------------------------------------------- */

/* report: tell the loop (before the socket closes, so that it can still
 * take it out of its epoll set). */
static void db_close(struct db *db, bool report)
{
	if (report)
		db_set_fd(db, -1);
	if (db->conn != NULL)
		PQfinish(db->conn);
	db->conn = NULL;
	db->fd = -1;
	db->fd_ino = 0;
	db->want_write = false;
	db->lost = false;
}

/* Log a reason at error once; the same reason again at debug. */
static void db_log_down(struct db *db, const char *reason)
{
	if (strcmp(reason, db->logged) == 0) {
		log_debug("database still unavailable: %s", reason);
		return;
	}
	log_error("database unavailable: %s", reason);
	db_copy_line(db->logged, sizeof(db->logged), reason);
}

/* Close, schedule the next attempt, then fail the callbacks (last, so
 * that they see a link that is down). */
static void db_link_down(struct db *db, const char *reason)
{
	char why[sizeof(db->reason)];
	db_copy_line(why, sizeof(why), reason);
	db_log_down(db, why);
	metrics_db_down(&metrics_self->db, why);
	db_close(db, true);
	db->state = DB_STATE_IDLE;
	db->deadline_ms = time_now_ms() + db->backoff_ms;
	db->backoff_ms = db->backoff_ms * 2 > DB_BACKOFF_MAX_MS ?
		DB_BACKOFF_MAX_MS : db->backoff_ms * 2;
	db->starting = false;
	db_fail_all(db, DB_ERR_DOWN);
	if (!db->hold)
		db_wait_fail(db, -1, DB_ERR_DOWN);
}

static void db_flush(struct db *db)
{
	int r = PQflush(db->conn);
	if (r < 0)
		db_mark_lost(db, PQerrorMessage(db->conn));
	db->want_write = r == 1;
}

/* Send one query and its sync; the caller checked the state.  since_ms
 * starts its query timeout (when the caller asked for it). */
static int db_send(struct db *db, const char *sql, int nparams,
		   const char *const *params, const int *lengths,
		   const int *formats, int result_binary, db_callback *cb,
		   void *ctx, int64_t since_ms, size_t bytes)
{
	if (db->count == db->cap && db_queue_grow(db) < 0)
		return -1;
	if (!PQsendQueryParams(db->conn, sql, nparams, NULL, params, lengths,
			       formats, result_binary ? 1 : 0)) {
		if (PQstatus(db->conn) == CONNECTION_BAD)
			db_mark_lost(db, PQerrorMessage(db->conn));
		else
			log_error("PQsendQueryParams() failed: %.*s",
				  (int)strcspn(PQerrorMessage(db->conn), "\n"),
				  PQerrorMessage(db->conn));
		return -1;
	}
	if (!PQpipelineSync(db->conn)) {
		/* the query went out without its sync: the pipeline is
		   out of step, so start over */
		db_mark_lost(db, PQerrorMessage(db->conn));
		return -1;
	}
	db_queue_push(db, cb, ctx, since_ms, bytes);
	db->syncs++;
	db_flush(db);
	return 0;
}

/* ---- connecting ------------------------------------------------------- */

/* The link is up: send what waited for it, oldest first.  A query that
 * cannot be sent fails alone; a lost link fails the rest later
 * (db_link_down). */
static void db_wait_flush(struct db *db)
{
	while (db->wait_head != NULL && db_is_up(db)) {
		struct db_waiting *q = db_wait_pop(db);
		if (db_send(db, q->sql, q->nparams, q->params, q->lengths,
			    q->formats, q->result_binary, q->cb, q->ctx,
			    q->queued_ms, q->bytes) < 0 && q->cb != NULL)
			q->cb(q->ctx, NULL, DB_ERR_DOWN);
		free(q);
	}
}

static void db_version_cb(void *ctx, const PGresult *res, const char *error)
{
	struct db *db = ctx;
	char why[sizeof(db->reason)];

	if (db->state != DB_STATE_CHECKING)
		return;         /* the link went down meanwhile */
	if (res == NULL) {
		snprintf(why, sizeof(why), "schema check failed (%s): run "
			 "'xmppctl db migrate'", error);
		db_mark_lost(db, why);
		return;
	}
	int version = PQntuples(res) == 1 && !PQgetisnull(res, 0, 0) ?
		atoi(PQgetvalue(res, 0, 0)) : 0;
	if (version != DB_SCHEMA_VERSION) {
		snprintf(why, sizeof(why), "schema version %d, this xmppd "
			 "needs %d: %s", version, DB_SCHEMA_VERSION,
			 version > DB_SCHEMA_VERSION ? "upgrade xmppd" :
			 "run 'xmppctl db migrate'");
		db_mark_lost(db, why);
		return;
	}
	db->state = DB_STATE_UP;
	metrics_db_up(&metrics_self->db);
	db->backoff_ms = DB_BACKOFF_MIN_MS;
	db->logged[0] = '\0';
	log_info("database link up (schema version %d)", version);
	db_wait_flush(db);
}

static void db_connected(struct db *db)
{
	if (PQsetnonblocking(db->conn, 1) != 0 ||
	    PQenterPipelineMode(db->conn) != 1) {
		db_mark_lost(db, PQerrorMessage(db->conn));
		return;
	}
	db->state = DB_STATE_CHECKING;
	db_set_fd(db, PQsocket(db->conn));
	if (db_send(db, DB_VERSION_SQL, 0, NULL, NULL, NULL, 0,
		    db_version_cb, db, time_now_ms(), strlen(DB_VERSION_SQL)) < 0)
		db_mark_lost(db, "cannot send the schema check");
}

static void db_connect_poll(struct db *db)
{
	db->poll = PQconnectPoll(db->conn);
	if (db->poll == PGRES_POLLING_FAILED)
		db_mark_lost(db, PQerrorMessage(db->conn));
	else if (db->poll == PGRES_POLLING_OK)
		db_connected(db);
	else
		db_set_fd(db, PQsocket(db->conn));
}

static void db_connect_start(struct db *db)
{
	db->state = DB_STATE_CONNECTING;
	db->deadline_ms = time_now_ms() + DB_CONNECT_TIMEOUT_MS;
	db->conn = PQconnectStart(db->conninfo);
	if (db->conn == NULL) {
		db_mark_lost(db, "out of memory");
		return;
	}
	PQsetNoticeProcessor(db->conn, db_notice, db);
	if (PQstatus(db->conn) == CONNECTION_BAD) {
		db_mark_lost(db, PQerrorMessage(db->conn));
		return;
	}
	/* libpq: behave as if PQconnectPoll had said "writing" */
	db->poll = PGRES_POLLING_WRITING;
	db_set_fd(db, PQsocket(db->conn));
}

/* ---- answers ---------------------------------------------------------- */

static bool db_result_fatal(const PGresult *res)
{
	const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	return sev != NULL && (strcmp(sev, "FATAL") == 0 ||
			       strcmp(sev, "PANIC") == 0);
}

static void db_deliver(struct db *db, const PGresult *res)
{
	struct db_pending p = db_queue_pop(db);
	ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	metrics_db_observe(&metrics_self->db, db_now_us() - p.sent_us,
			   st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK);
	if (p.cb == NULL)
		return;
	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
		p.cb(p.ctx, res, NULL);
		return;
	}
	const char *msg = res != NULL ?
		PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	if (msg == NULL && res != NULL)
		msg = PQresultErrorMessage(res);
	db_copy_line(db->error, sizeof(db->error),
		     msg != NULL ? msg : "no result");
	p.cb(p.ctx, NULL, db->error);
}

/* One PGresult in pipeline order: the head query's answer, or a sync. */
static void db_result(struct db *db, const PGresult *res)
{
	if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
		if (db->syncs > 0)
			db->syncs--;
		/* a sync before its query's answer: answer it now */
		if (db->count > db->syncs)
			db_deliver(db, NULL);
		return;
	}
	if (db_result_fatal(res)) {
		/* the server ends this session: the link is gone */
		const char *msg = PQresultErrorField(res,
						     PG_DIAG_MESSAGE_PRIMARY);
		db_mark_lost(db, msg != NULL ? msg : PQresultErrorMessage(res));
		return;
	}
	/* a second result of one query (count == syncs - 1 already) is
	   dropped: we never send more than one statement */
	if (db->count == db->syncs && db->count > 0)
		db_deliver(db, res);
}

static void db_read(struct db *db)
{
	if (!PQconsumeInput(db->conn)) {
		db_mark_lost(db, PQerrorMessage(db->conn));
		return;
	}
	int nulls = 0;
	while (db->syncs > 0 && !db->lost && !PQisBusy(db->conn)) {
		PGresult *res = PQgetResult(db->conn);
		if (res == NULL) {
			/* the end of one query's results; two in a row means
			   libpq has nothing more for now */
			if (++nulls > 1)
				break;
			continue;
		}
		nulls = 0;
		db_result(db, res);
		PQclear(res);
	}
	if (!db->lost && PQstatus(db->conn) == CONNECTION_BAD)
		db_mark_lost(db, PQerrorMessage(db->conn));
}

/* ---- public API ------------------------------------------------------- */

struct db *db_new(const char *conninfo,
		  void (*fd_changed)(void *loop_ctx, int old_fd, int new_fd),
		  void *loop_ctx)
{
	struct db *db = xcalloc(1, sizeof(*db));
	db->conninfo = xstrdup(conninfo);
	db->fd_changed = fd_changed;
	db->loop_ctx = loop_ctx;
	db->fd = -1;
	db->state = DB_STATE_IDLE;
	db->deadline_ms = time_now_ms();        /* connect at the first tick */
	db->backoff_ms = DB_BACKOFF_MIN_MS;
	db->starting = true;
	metrics_db_down(&metrics_self->db, "connecting");
	return db;
}

void db_free(struct db **dbp)
{
	struct db *db = *dbp;
	if (db == NULL)
		return;
	db_close(db, false);
	db->state = DB_STATE_IDLE;
	db_fail_all(db, DB_ERR_CLOSED);
	db_wait_fail(db, -1, DB_ERR_CLOSED);
	free(db->queue);
	free(db->conninfo);
	free(db);
	*dbp = NULL;
}

void db_set_conninfo(struct db *db, const char *conninfo)
{
	if (strcmp(db->conninfo, conninfo) == 0)
		return;
	char *copy = strdup(conninfo);
	if (copy == NULL) {
		log_error("db_set_conninfo: out of memory: keeping the old one");
		return;
	}
	free(db->conninfo);
	db->conninfo = copy;
	log_info("database conninfo changed: reconnecting");
	metrics_db_down(&metrics_self->db, "reconnecting after a conninfo "
			"change");
	db_close(db, true);
	db->state = DB_STATE_IDLE;
	db->deadline_ms = time_now_ms();
	db->backoff_ms = DB_BACKOFF_MIN_MS;
	db->logged[0] = '\0';
	/* a fresh start: queries wait for the new link (those already
	   sent on the old one are lost with it) */
	db->starting = true;
	db_fail_all(db, DB_ERR_DOWN);
}

int db_fd(const struct db *db)
{
	return db->fd;
}

uint32_t db_events(const struct db *db)
{
	switch (db->state) {
	case DB_STATE_CONNECTING:
		return db->poll == PGRES_POLLING_READING ? EPOLLIN : EPOLLOUT;
	case DB_STATE_CHECKING:
	case DB_STATE_UP:
		return EPOLLIN | (db->want_write ? EPOLLOUT : 0);
	case DB_STATE_IDLE:
		break;
	}
	return 0;
}

void db_handle(struct db *db, uint32_t events)
{
	if (db->state == DB_STATE_CONNECTING && !db->lost) {
		db_connect_poll(db);
	} else if (db->conn != NULL && !db->lost) {
		if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
			db_read(db);
		if (!db->lost && (db->want_write || (events & EPOLLOUT)))
			db_flush(db);
	}
	if (db->lost)
		db_link_down(db, db->reason);
}

int db_tick(struct db *db, int64_t now_ms)
{
	if (db->lost)
		db_link_down(db, db->reason);
	if (db->state == DB_STATE_IDLE && now_ms >= db->deadline_ms) {
		db_connect_start(db);
		if (db->lost)
			db_link_down(db, db->reason);
	} else if (db->state != DB_STATE_IDLE && db->state != DB_STATE_UP &&
		   now_ms >= db->deadline_ms) {
		db_link_down(db, "connect timed out after "
			     DB_CONNECT_TIMEOUT_TEXT);
	}
	if (db->state == DB_STATE_UP && db->count > 0 &&
	    now_ms - db->queue[db->head].sent_ms >= DB_QUERY_TIMEOUT_MS) {
		db_link_down(db, "no answer to a query for "
			     DB_QUERY_TIMEOUT_TEXT);
		return 0;
	}
	/* Queries waiting for the link keep the query timeout too (the
	   connect timeout, shorter, normally fails them first); held ones
	   wait for as long as the caller does (db_hold). */
	if (!db->hold)
		db_wait_fail(db, now_ms - DB_QUERY_TIMEOUT_MS, DB_ERR_DOWN);
	if (db->state == DB_STATE_UP && db->count == 0)
		return -1;
	if (db->state == DB_STATE_UP) {
		int64_t due = db->queue[db->head].sent_ms + DB_QUERY_TIMEOUT_MS;
		return due <= now_ms ? 0 : (int)(due - now_ms);
	}
	int64_t next = db->deadline_ms;
	if (db->wait_head != NULL && !db->hold &&
	    db->wait_head->queued_ms + DB_QUERY_TIMEOUT_MS < next)
		next = db->wait_head->queued_ms + DB_QUERY_TIMEOUT_MS;
	int64_t left = next - now_ms;
	return left < 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

void db_hold(struct db *db)
{
	db->hold = true;
}

unsigned db_unanswered(const struct db *db)
{
	return db->count + db->nwaiting;
}

int db_is_up(const struct db *db)
{
	return db->state == DB_STATE_UP && !db->lost;
}

/* db.max_queue_bytes passed: one warning per DB_REFUSED_LOG_MS with
 * how many were refused. */
static void db_refused(struct db *db, size_t bytes)
{
	int64_t now = time_now_ms();
	db->refused++;
	if (db->refused_logged_ms != 0 &&
	    now - db->refused_logged_ms < DB_REFUSED_LOG_MS)
		return;
	log_warn("database queue full: %zu bytes waiting for PostgreSQL "
		 "(db.max_queue_bytes is %zu): query of %zu bytes refused "
		 "(%u refused since the last warning)", db->queued_bytes,
		 db->max_queue_bytes, bytes, db->refused);
	db->refused = 0;
	db->refused_logged_ms = now;
}

void db_set_max_queue_bytes(struct db *db, size_t bytes)
{
	db->max_queue_bytes = bytes;
}

int db_query(struct db *db, const char *sql, int nparams,
	     const char *const *params, const int *lengths,
	     const int *formats, int result_binary, db_callback *cb,
	     void *ctx)
{
	if (db->count + db->nwaiting >= DB_QUEUE_MAX)
		return -1;
	size_t bytes = strlen(sql);
	for (int i = 0; i < nparams; i++)
		if (params[i] != NULL)
			bytes += db_param_len(params, lengths, formats, i);
	/* one query always goes, however large */
	if (db->max_queue_bytes > 0 && db->queued_bytes > 0 &&
	    db->queued_bytes + bytes > db->max_queue_bytes) {
		db_refused(db, bytes);
		return DB_QUERY_FULL;
	}
	if (db_is_up(db))
		return db_send(db, sql, nparams, params, lengths, formats,
			       result_binary, cb, ctx, time_now_ms(), bytes);
	if (db->hold || (db->starting && !db->lost))
		return db_wait(db, sql, nparams, params, lengths, formats,
			       result_binary, cb, ctx, bytes);
	return -1;
}

void db_cancel(struct db *db, void *ctx)
{
	for (unsigned i = 0; i < db->count; i++) {
		struct db_pending *p = &db->queue[(db->head + i) % db->cap];
		if (p->ctx == ctx)
			p->cb = NULL;
	}
	for (struct db_waiting *q = db->wait_head; q != NULL; q = q->next)
		if (q->ctx == ctx)
			q->cb = NULL;
}

/*
 * accounts.c - account SQL shared by the worker and xmppctl (accounts.h):
 * the login lookup's decoding (text or binary bytea/int4 columns) and the
 * synchronous add/passwd/del/list that xmppctl runs.  Every query is
 * parameterized; key material is sent as binary parameters and wiped
 * from memory afterwards.
 * Failure policy: -1 with a reason in *error_r (static string or buffer,
 * valid until the next call); a failed change rolls back whole.
 */
#include "accounts.h"
#include "jid.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ACCOUNTS_SQL_INSERT \
	"INSERT INTO accounts (username, domain) VALUES ($1, $2) " \
	"ON CONFLICT DO NOTHING RETURNING id"
#define ACCOUNTS_SQL_LOCK \
	"SELECT id FROM accounts WHERE username = $1 AND domain = $2 " \
	"FOR UPDATE"
#define ACCOUNTS_SQL_SCRAM \
	"INSERT INTO account_scram (account_id, mechanism, salt, " \
	"iterations, stored_key, server_key) VALUES ($1, $2, $3, $4, $5, $6) " \
	"ON CONFLICT (account_id, mechanism) DO UPDATE SET " \
	"salt = EXCLUDED.salt, iterations = EXCLUDED.iterations, " \
	"stored_key = EXCLUDED.stored_key, server_key = EXCLUDED.server_key"
#define ACCOUNTS_SQL_EXISTS \
	"SELECT id FROM accounts WHERE username = $1 AND domain = $2"
#define ACCOUNTS_SQL_DELETE \
	"DELETE FROM accounts WHERE username = $1 AND domain = $2"
#define ACCOUNTS_SQL_SHOW \
	"SELECT to_char(a.created_at AT TIME ZONE 'UTC', " \
	"'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), " \
	"(SELECT count(*) FROM roster_items r WHERE r.account_id = a.id " \
	"AND r.listed AND NOT r.removed), " \
	"(SELECT count(*) FROM offline_messages o WHERE o.account_id = a.id), " \
	"(SELECT count(*) FROM offline_unreadable u WHERE u.account_id = a.id), " \
	"EXISTS (SELECT 1 FROM vcards v WHERE v.account_id = a.id), " \
	"(SELECT count(*) FROM blocklist b WHERE b.account_id = a.id) " \
	"FROM accounts a WHERE a.username = $1 AND a.domain = $2"
#define ACCOUNTS_SQL_LIST \
	"SELECT username, domain FROM accounts " \
	"WHERE $1::text IS NULL OR domain = $1 ORDER BY domain, username"

#define ACCOUNTS_ERR_EXISTS "user already exists"
#define ACCOUNTS_ERR_NO_USER "no such user"

static char accounts_error[512];

static int accounts_fail(const char **error_r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int accounts_fail(const char **error_r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(accounts_error, sizeof(accounts_error), fmt, ap);
	va_end(ap);
	*error_r = accounts_error;
	return -1;
}

/* ---- decoding the login lookup ---------------------------------------- */

/* A bytea column into out (exactly want bytes, or 1..max if want is 0). */
static int accounts_bytea(const PGresult *res, int row, int col,
			  unsigned char *out, size_t want, size_t max,
			  size_t *len_r)
{
	const unsigned char *p = (const unsigned char *)PQgetvalue(res, row, col);
	size_t len = (size_t)PQgetlength(res, row, col);
	unsigned char *text = NULL;
	if (PQgetisnull(res, row, col))
		return -1;
	if (PQfformat(res, col) == 0) {
		text = PQunescapeBytea(p, &len);
		if (text == NULL)
			return -1;
		p = text;
	}
	int ret = -1;
	if (want != 0 ? len == want : len >= 1 && len <= max) {
		memcpy(out, p, len);
		*len_r = len;
		ret = 0;
	}
	PQfreemem(text);
	return ret;
}

/* An int4 column, text or binary (network order). */
static int accounts_int4(const PGresult *res, int row, int col, long *v_r)
{
	const char *p = PQgetvalue(res, row, col);
	if (PQgetisnull(res, row, col))
		return -1;
	if (PQfformat(res, col) == 1) {
		uint32_t n;
		if (PQgetlength(res, row, col) != 4)
			return -1;
		memcpy(&n, p, 4);
		*v_r = (int32_t)ntohl(n);
		return 0;
	}
	char *end;
	*v_r = strtol(p, &end, 10);
	return *end == '\0' && end != p ? 0 : -1;
}

/* One row into login (the credentials of its mechanism). */
static int accounts_decode_row(const PGresult *res, int row,
			       struct accounts_login *login)
{
	enum scram_hash hash;
	bool plus;
	long iter;
	size_t n;

	if (PQgetisnull(res, row, 0) ||
	    scram_mech_parse(PQgetvalue(res, row, 0), &hash, &plus) < 0 ||
	    plus || (unsigned)hash >= 2 ||
	    accounts_int4(res, row, 2, &iter) < 0 || iter < 1 ||
	    iter > SCRAM_ITERATIONS_MAX)
		return -1;
	struct scram_credentials *c = &login->cred[hash];
	size_t hlen = scram_hash_len(hash);
	c->hash = hash;
	c->iterations = (unsigned)iter;
	if (accounts_bytea(res, row, 1, c->salt, 0, SCRAM_SALT_MAX_LEN,
			   &c->salt_len) < 0 ||
	    accounts_bytea(res, row, 3, c->stored_key, hlen, hlen, &n) < 0 ||
	    accounts_bytea(res, row, 4, c->server_key, hlen, hlen, &n) < 0)
		return -1;
	login->found[hash] = true;
	return 0;
}

int accounts_login_decode(const PGresult *res,
			  struct accounts_login *login_r,
			  const char **error_r)
{
	memset(login_r, 0, sizeof(*login_r));
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != 5) {
		*error_r = "login lookup: unexpected result";
		return -1;
	}
	int rows = PQntuples(res);
	for (int i = 0; i < rows; i++) {
		if (accounts_decode_row(res, i, login_r) < 0) {
			memset(login_r, 0, sizeof(*login_r));
			*error_r = "login lookup: malformed credentials row";
			return -1;
		}
	}
	return rows > 0 ? 1 : 0;
}

int accounts_parse_jid(struct arena *a, const char *s, const char **user_r,
		       const char **domain_r, const char **error_r)
{
	struct jid jid;
	if (jid_parse(a, s, &jid, error_r) < 0)
		return accounts_fail(error_r, "invalid JID '%s': %s", s,
				     *error_r);
	if (jid.local == NULL || jid.resource != NULL)
		return accounts_fail(error_r, "invalid JID '%s': expected "
				     "user@domain", s);
	*user_r = jid.local;
	*domain_r = jid.domain;
	return 0;
}

/* ---- synchronous changes (xmppctl) ------------------------------------ */

/* Run one statement; NULL and *error_r unless it returned `want`. */
static PGresult *accounts_exec(PGconn *conn, const char *sql, int nparams,
			       const char *const *params, const int *lengths,
			       const int *formats, ExecStatusType want,
			       const char **error_r)
{
	PGresult *res = PQexecParams(conn, sql, nparams, NULL, params,
				     lengths, formats, 0);
	if (PQresultStatus(res) == want)
		return res;
	const char *msg = res != NULL ? PQresultErrorMessage(res) :
		PQerrorMessage(conn);
	accounts_fail(error_r, "database: %.*s", (int)strcspn(msg, "\n"), msg);
	PQclear(res);
	return NULL;
}

static int accounts_command(PGconn *conn, const char *sql,
			    const char **error_r)
{
	PGresult *res = accounts_exec(conn, sql, 0, NULL, NULL, NULL,
				      PGRES_COMMAND_OK, error_r);
	PQclear(res);
	return res != NULL ? 0 : -1;
}

static void accounts_rollback(PGconn *conn)
{
	PQclear(PQexec(conn, "ROLLBACK"));
}

/* Both mechanisms' credentials from one password. */
static int accounts_derive(const char *password, unsigned iterations,
			   struct scram_credentials cred[2],
			   const char **error_r)
{
	if (scram_credentials_new(SCRAM_HASH_SHA1, password, iterations,
				  &cred[0], error_r) < 0 ||
	    scram_credentials_new(SCRAM_HASH_SHA256, password, iterations,
				  &cred[1], error_r) < 0) {
		explicit_bzero(cred, 2 * sizeof(*cred));
		return accounts_fail(error_r, "cannot derive credentials: %s",
				     *error_r);
	}
	return 0;
}

/* Insert or replace one mechanism's row for account id. */
static int accounts_store(PGconn *conn, const char *id,
			  const struct scram_credentials *c,
			  const char **error_r)
{
	char iter[16];
	size_t hlen = scram_hash_len(c->hash);
	snprintf(iter, sizeof(iter), "%u", c->iterations);
	const char *params[6] = {
		id, scram_mech_name(c->hash, false), (const char *)c->salt,
		iter, (const char *)c->stored_key, (const char *)c->server_key,
	};
	const int lengths[6] = { 0, 0, (int)c->salt_len, 0, (int)hlen,
				 (int)hlen };
	const int formats[6] = { 0, 0, 1, 0, 1, 1 };
	PGresult *res = accounts_exec(conn, ACCOUNTS_SQL_SCRAM, 6, params,
				      lengths, formats, PGRES_COMMAND_OK,
				      error_r);
	PQclear(res);
	return res != NULL ? 0 : -1;
}

/* The account's id: `sql` is the insert, the locking select or the
 * plain one; 1 found, 0 no row, -1 error. */
static int accounts_id(PGconn *conn, const char *sql, const char *user,
		       const char *domain, char *id, size_t size,
		       const char **error_r)
{
	const char *params[2] = { user, domain };
	PGresult *res = accounts_exec(conn, sql, 2, params, NULL, NULL,
				      PGRES_TUPLES_OK, error_r);
	if (res == NULL)
		return -1;
	int found = PQntuples(res) == 1;
	if (found)
		snprintf(id, size, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return found;
}

/* BEGIN, find or create the account row, store both credentials, COMMIT.
 * missing_error: the reason when accounts_id finds no row. */
static int accounts_set(PGconn *conn, const char *id_sql,
			const char *missing_error, const char *user,
			const char *domain, const char *password,
			unsigned iterations, const char **error_r)
{
	struct scram_credentials cred[2];
	char id[32];
	if (accounts_derive(password, iterations, cred, error_r) < 0)
		return -1;
	int ret = accounts_command(conn, "BEGIN", error_r);
	if (ret == 0) {
		int found = accounts_id(conn, id_sql, user, domain, id,
					sizeof(id), error_r);
		if (found == 0)
			*error_r = missing_error;
		ret = found == 1 &&
			accounts_store(conn, id, &cred[0], error_r) == 0 &&
			accounts_store(conn, id, &cred[1], error_r) == 0 &&
			accounts_command(conn, "COMMIT", error_r) == 0 ? 0 : -1;
		if (ret < 0)
			accounts_rollback(conn);
	}
	explicit_bzero(cred, sizeof(cred));
	return ret;
}

int accounts_exists(PGconn *conn, const char *user, const char *domain,
		    const char **error_r)
{
	char id[32];
	return accounts_id(conn, ACCOUNTS_SQL_EXISTS, user, domain, id,
			   sizeof(id), error_r);
}

int accounts_add(PGconn *conn, const char *user, const char *domain,
		 const char *password, unsigned iterations,
		 const char **error_r)
{
	return accounts_set(conn, ACCOUNTS_SQL_INSERT, ACCOUNTS_ERR_EXISTS,
			    user, domain, password, iterations, error_r);
}

int accounts_passwd(PGconn *conn, const char *user, const char *domain,
		    const char *password, unsigned iterations,
		    const char **error_r)
{
	return accounts_set(conn, ACCOUNTS_SQL_LOCK, ACCOUNTS_ERR_NO_USER,
			    user, domain, password, iterations, error_r);
}

int accounts_del(PGconn *conn, const char *user, const char *domain,
		 const char **error_r)
{
	const char *params[2] = { user, domain };
	PGresult *res = accounts_exec(conn, ACCOUNTS_SQL_DELETE, 2, params,
				      NULL, NULL, PGRES_COMMAND_OK, error_r);
	if (res == NULL)
		return -1;
	int deleted = strcmp(PQcmdTuples(res), "0") != 0;
	PQclear(res);
	if (!deleted)
		*error_r = ACCOUNTS_ERR_NO_USER;
	return deleted ? 0 : -1;
}

int accounts_show(PGconn *conn, const char *user, const char *domain,
		  struct accounts_summary *sum_r, const char **error_r)
{
	const char *params[2] = { user, domain };
	PGresult *res = accounts_exec(conn, ACCOUNTS_SQL_SHOW, 2, params,
				      NULL, NULL, PGRES_TUPLES_OK, error_r);
	if (res == NULL)
		return -1;
	int found = PQntuples(res) == 1;
	if (found) {
		snprintf(sum_r->created, sizeof(sum_r->created), "%s",
			 PQgetvalue(res, 0, 0));
		sum_r->roster = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
		sum_r->offline = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
		sum_r->offline_unreadable = strtoll(PQgetvalue(res, 0, 3),
						    NULL, 10);
		sum_r->vcard = strcmp(PQgetvalue(res, 0, 4), "t") == 0;
		sum_r->blocked = strtoll(PQgetvalue(res, 0, 5), NULL, 10);
	}
	PQclear(res);
	return found;
}

int accounts_list(PGconn *conn, const char *domain,
		  void (*cb)(void *ctx, const char *user, const char *domain),
		  void *ctx, const char **error_r)
{
	const char *params[1] = { domain };
	PGresult *res = accounts_exec(conn, ACCOUNTS_SQL_LIST, 1, params,
				      NULL, NULL, PGRES_TUPLES_OK, error_r);
	if (res == NULL)
		return -1;
	int rows = PQntuples(res);
	for (int i = 0; i < rows; i++)
		cb(ctx, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
	PQclear(res);
	return 0;
}

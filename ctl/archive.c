/*
 * archive.c - the xmppctl commands on message archives (XEP-0313,
 * worker/mam.c), straight to PostgreSQL like `user`:
 *   archive purge JID           delete every archived message of one
 *                               account (the account stays), or of one
 *                               room (XEP-0045, worker/muc_archive.c:
 *                               room@SERVICE.HOST; the room stays)
 *   archive expire --before DATE
 *                               delete every archived message of every
 *                               account and room older than DATE
 *                               (YYYY-MM-DD or
 *                               an ISO 8601 / XEP-0082 date and time;
 *                               UTC unless it says otherwise)
 * Archive ids carry their time (id >> 21 is unix ms), so expiry is a
 * range of ids; it deletes 10000 rows per transaction so that it holds
 * no long lock while the server archives.  Both print how many messages
 * were deleted.
 * Failure policy: one line "xmppctl: reason" on stderr, exit code 1 (an
 * unknown account, a date PostgreSQL does not read, a database error);
 * usage errors exit 2.
 */
#include "ctl.h"
#include "arena.h"
#include "db/accounts.h"
#include "db/db.h"

#include <stdlib.h>
#include <string.h>

#define CTL_ARCHIVE_BATCH "10000"

static int ctl_archive_purge(PGconn *conn, const char *user,
			     const char *domain)
{
	const char *params[2] = { user, domain };
	/* an account's JID, or a room's (a room's service is no hosted
	 * domain, so at most one of the two exists) */
	PGresult *r = PQexecParams(conn,
		"WITH a AS (SELECT id FROM accounts WHERE username = $1 AND "
		"domain = $2), d AS (DELETE FROM mam_messages m USING a WHERE "
		"m.account_id = a.id RETURNING 1), "
		"o AS (SELECT id FROM muc_rooms WHERE name = $1 AND "
		"service = $2), e AS (DELETE FROM muc_messages m USING o "
		"WHERE m.room_id = o.id RETURNING 1) "
		"SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM d), "
		"(SELECT count(*) FROM o), (SELECT count(*) FROM e)",
		2, NULL, params, NULL, NULL, 0);
	int ret = CTL_EXIT_OK;
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
		ret = ctl_fail("archive purge: %.*s",
			       (int)strcspn(PQerrorMessage(conn), "\n"),
			       PQerrorMessage(conn));
	else if (strcmp(PQgetvalue(r, 0, 0), "0") != 0)
		printf("%s messages deleted from the archive of %s@%s\n",
		       PQgetvalue(r, 0, 1), user, domain);
	else if (strcmp(PQgetvalue(r, 0, 2), "0") != 0)
		printf("%s messages deleted from the archive of room "
		       "%s@%s\n", PQgetvalue(r, 0, 3), user, domain);
	else
		ret = ctl_fail("no account %s@%s", user, domain);
	PQclear(r);
	return ret;
}

static int ctl_archive_expire(PGconn *conn, const char *date)
{
	PGresult *r = PQexec(conn, "SET TIME ZONE 'UTC'");
	PQclear(r);
	const char *p1[1] = { date };
	/* clamped to what an id holds (ms < 2^42, the year 2109): a later
	 * date deletes everything, an earlier than 1970 nothing (the shift
	 * would wrap around) */
	r = PQexecParams(conn, "SELECT (LEAST(GREATEST(floor(extract(epoch "
			 "FROM $1::timestamptz) * 1000), 0), 4398046511103)"
			 "::bigint << 21)::text",
			 1, NULL, p1, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
		int ret = ctl_fail("archive expire: not a date: %s", date);
		PQclear(r);
		return ret;
	}
	char cutoff[32];
	snprintf(cutoff, sizeof(cutoff), "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	static const char *const sql[2] = {
		"WITH d AS (SELECT account_id, id FROM mam_messages WHERE "
		"id < $1::bigint LIMIT $2::int) DELETE FROM mam_messages m "
		"USING d WHERE m.account_id = d.account_id AND m.id = d.id",
		"WITH d AS (SELECT room_id, id FROM muc_messages WHERE "
		"id < $1::bigint LIMIT $2::int) DELETE FROM muc_messages m "
		"USING d WHERE m.room_id = d.room_id AND m.id = d.id",
	};
	long long total = 0;
	for (int t = 0; t < 2;) {
		const char *params[2] = { cutoff, CTL_ARCHIVE_BATCH };
		r = PQexecParams(conn, sql[t], 2, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			int ret = ctl_fail("archive expire: %.*s (%lld "
					   "messages deleted before)",
					   (int)strcspn(PQerrorMessage(conn),
							"\n"),
					   PQerrorMessage(conn), total);
			PQclear(r);
			return ret;
		}
		long long n = strtoll(PQcmdTuples(r), NULL, 10);
		PQclear(r);
		total += n;
		if (n < atoll(CTL_ARCHIVE_BATCH))
			t++;            /* this table done: the next */
	}
	printf("%lld messages older than %s deleted from the archives\n",
	       total, date);
	return CTL_EXIT_OK;
}

int ctl_archive_command(const struct ctl_opts *opts, int argc, char **argv)
{
	bool purge = argc == 3 && strcmp(argv[1], "purge") == 0;
	bool expire = argc == 4 && strcmp(argv[1], "expire") == 0 &&
		strcmp(argv[2], "--before") == 0;
	if (!purge && !expire)
		return ctl_usage_error("archive needs purge JID or expire "
				       "--before DATE");
	struct arena a;
	const char *user = NULL, *domain = NULL, *error;
	PGconn *conn = NULL;
	int ret = CTL_EXIT_FAIL;
	arena_init(&a, 1024);
	if (purge && accounts_parse_jid(&a, argv[2], &user, &domain,
					&error) < 0) {
		ret = ctl_fail("%s", error);
		goto out;
	}
	struct config *cfg = ctl_pg_open(opts, false, &conn);
	if (cfg == NULL)
		goto out;
	ret = purge ? ctl_archive_purge(conn, user, domain) :
		ctl_archive_expire(conn, argv[3]);
	PQfinish(conn);
	config_free(&cfg);
out:
	arena_free(&a);
	return ret;
}

/*
 * offline.c - XEP-0160 offline messages: a chat or normal message for an
 * account with no available resource is stored in PostgreSQL (up to
 * im.offline_quota per account) and delivered with a XEP-0203 <delay/>
 * after the account's next initial presence with non-negative priority,
 * then removed.  Removal happens after delivery was written to the
 * socket, so a crash in between delivers twice rather than never.
 * Stored rows are read by store_read_stanza() (store.h); a row that does
 * not read back is logged with its id at error level and moved to
 * offline_unreadable for the operator, never deleted unread.
 * Failure policy: a message that cannot be stored is answered with an
 * error to its sender (service-unavailable when the account is unknown or
 * full, internal-server-error/wait when the database is unavailable).
 */
#include "worker.h"
#include "../db/db.h"
#include "jid.h"
#include "log.h"
#include "server.h"
#include "stanza.h"
#include "store.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct offline_job {
	struct worker *w;
	char *user;             /* "user\0domain" (jid_split_account) */
	const char *domain;     /* points into user's buffer */
	char *text;             /* the message, serialized */
	uint32_t conn_id, gen;  /* delivery: the session */
};

static void offline_job_free(struct offline_job *j)
{
	if (j != NULL) {
		free(j->user);
		free(j->text);
		free(j);
	}
}

static struct offline_job *offline_job_new(struct worker *w, const char *bare)
{
	struct offline_job *j = calloc(1, sizeof(*j));
	const char *domain;
	if (j == NULL || (j->user = jid_split_account(bare, &domain)) == NULL) {
		free(j);
		return NULL;
	}
	j->w = w;
	j->domain = domain;
	return j;
}

/* Answer the stored copy's sender with an error. */
static void offline_bounce(struct worker *w, const char *text,
			   const char *type, const char *cond)
{
	struct arena a;
	struct buf out;
	const char *error;
	arena_init(&a, 1024);
	buf_init(&out, 0);
	struct xml_node *st = stanza_parse(&a, text, strlen(text), &error);
	if (st != NULL && stanza_may_bounce(st) &&
	    stanza_error_xml(&out, st, NULL, type, cond, NULL) == 0 &&
	    buf_append(&out, "", 1) == 0 &&
	    (st = stanza_parse(&a, buf_head(&out), buf_used(&out) - 1,
			       &error)) != NULL)
		route_stanza(w, &a, st);
	buf_free(&out);
	arena_free(&a);
}

static const char offline_store_sql[] =
	"WITH a AS (SELECT xmppd_account_id($1, $2) AS acc), "
	"ins AS (INSERT INTO offline_messages (account_id, sender, stanza) "
	"SELECT acc, $3, $4 FROM a WHERE acc IS NOT NULL AND (SELECT count(*) "
	"FROM offline_messages o WHERE o.account_id = a.acc) < $5::int "
	"AND NOT EXISTS (SELECT 1 FROM blocklist b, a WHERE b.account_id = "
	"a.acc AND b.jid IN ($3, split_part($3, '/', 1), split_part("
	"split_part($3, '/', 1), '@', 2))) "
	"RETURNING id) SELECT (SELECT acc FROM a) IS NOT NULL, "
	"(SELECT id FROM ins)";

static void offline_stored(void *ctx, const PGresult *res, const char *error)
{
	struct offline_job *j = ctx;
	if (res == NULL || PQntuples(res) != 1) {
		log_warn("offline message for %s@%s not stored: %s", j->user,
			 j->domain, error ? error : "no row");
		offline_bounce(j->w, j->text, "wait", "internal-server-error");
	} else if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		offline_bounce(j->w, j->text, "cancel", "service-unavailable");
	} else if (PQgetisnull(res, 0, 1)) {
		log_info("offline message for %s@%s refused (storage full or "
			 "sender blocked)", j->user, j->domain);
		offline_bounce(j->w, j->text, "cancel", "service-unavailable");
	}
	offline_job_free(j);
}

void offline_store(struct worker *w, struct xml_node *st, const char *bare)
{
	const char *type = xml_attr(st, "type");
	const char *from = xml_attr(st, "from");
	struct buf text;
	char quota[16];
	if (type != NULL && strcmp(type, "normal") != 0 &&
	    strcmp(type, "chat") != 0)
		return;         /* headline, groupchat, error: not stored */
	struct offline_job *j = offline_job_new(w, bare);
	buf_init(&text, xml_out_cap(w->cfg->max_stanza_size));
	if (j == NULL || from == NULL ||
	    xml_serialize(&text, st, NS_CLIENT) < 0 ||
	    buf_append(&text, "", 1) < 0) {
		buf_free(&text);
		offline_job_free(j);
		return;
	}
	j->text = text.data;
	if (w->cfg->offline_quota == 0) {
		offline_bounce(w, j->text, "cancel", "service-unavailable");
		offline_job_free(j);
		return;
	}
	snprintf(quota, sizeof(quota), "%u", w->cfg->offline_quota);
	const char *params[5] = { j->user, j->domain, from, j->text, quota };
	if (w->db == NULL || db_query(w->db, offline_store_sql, 5, params, NULL,
				      NULL, 0, offline_stored, j) < 0) {
		offline_bounce(w, j->text, "wait", "internal-server-error");
		offline_job_free(j);
	}
}

/* ---- delivery ------------------------------------------------------- */

static const char offline_fetch_sql[] =
	"SELECT id, stanza, to_char(stored_at AT TIME ZONE 'UTC', "
	"'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM offline_messages "
	"WHERE account_id = xmppd_account_id($1, $2) ORDER BY id";
/* After delivery: exactly the rows sent ($3) go -- never a range, since
 * a row with a lower id may commit after the fetch; the unreadable ones
 * ($4, reasons $5) move to offline_unreadable.  Rows neither sent nor
 * unreadable (out of memory) stay for the next login. */
static const char offline_delete_sql[] =
	"WITH r AS (SELECT * FROM unnest($4::bigint[], $5::text[]) "
	"AS r(id, reason)), "
	"bad AS (DELETE FROM offline_messages o USING r WHERE o.account_id = "
	"xmppd_account_id($1, $2) AND o.id = r.id RETURNING o.id, "
	"o.account_id, o.sender, o.stanza, o.stored_at, r.reason), "
	"aside AS (INSERT INTO offline_unreadable (id, account_id, sender, "
	"stanza, stored_at, reason) SELECT * FROM bad) "
	"DELETE FROM offline_messages WHERE account_id = "
	"xmppd_account_id($1, $2) AND id = ANY($3::bigint[])";

/* What became of one stored row. */
enum offline_outcome {
	OFFLINE_SENT,
	OFFLINE_UNREADABLE,     /* the bytes are no stanza: move aside */
	OFFLINE_NOT_SENT,       /* out of memory: keep for the next login */
};

/* The stored message with a XEP-0203 <delay/> added. */
static enum offline_outcome offline_send_one(struct conn *c, const char *text,
					     size_t len, const char *stamp,
					     const char **error_r)
{
	struct arena a;
	struct buf out;
	enum offline_outcome ret = OFFLINE_NOT_SENT;
	arena_init(&a, 2048);
	buf_init(&out, xml_out_cap(c->w->cfg->max_stanza_size));
	struct xml_node *st = store_read_stanza(&a, text, len, error_r);
	struct xml_node *d = st ? xml_add_child(&a, st, "urn:xmpp:delay",
						"delay") : NULL;
	if (st == NULL) {
		ret = OFFLINE_UNREADABLE;
	} else if (d != NULL && xml_set_attr(&a, d, "from", c->domain) == 0 &&
		   xml_set_attr(&a, d, "stamp", stamp) == 0 &&
		   xml_add_text(&a, d, "Offline Storage", 15) == 0) {
		if (xml_serialize(&out, st, NS_CLIENT) == 0) {
			conn_send(c, buf_head(&out), buf_used(&out));
			ret = OFFLINE_SENT;
		} else {        /* stored under a larger limit, or before one */
			*error_r = "larger written out than c2s.max_stanza_size "
				   "allows";
			ret = OFFLINE_UNREADABLE;
		}
	}
	buf_free(&out);
	arena_free(&a);
	return ret;
}

static void offline_deleted(void *ctx, const PGresult *res, const char *error)
{
	struct offline_job *j = ctx;
	if (res == NULL)
		log_warn("offline messages of %s@%s not removed (they will "
			 "come again): %s", j->user, j->domain, error);
	offline_job_free(j);
}

/* Append s to a PostgreSQL array literal being built in out. */
static void offline_array_add(struct buf *out, const char *s, int quote)
{
	buf_append(out, buf_used(out) > 1 ? "," : "", buf_used(out) > 1);
	if (!quote) {
		buf_append(out, s, strlen(s));
		return;
	}
	buf_append(out, "\"", 1);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			buf_append(out, "\\", 1);
		buf_append(out, s, 1);
	}
	buf_append(out, "\"", 1);
}

static void offline_fetched(void *ctx, const PGresult *res, const char *error)
{
	struct offline_job *j = ctx;
	struct conn *c = conn_lookup(j->w, j->conn_id, j->gen);
	int n = res ? PQntuples(res) : 0;
	if (res == NULL)
		log_warn("offline messages of %s@%s: %s", j->user, j->domain,
			 error);
	if (c != NULL)
		c->offline_fetching = 0;
	if (c == NULL || !c->bound || n == 0) {
		offline_job_free(j);
		return;
	}
	c->offline_fetching = 0;
	/* Array literals: ids sent, unreadable ids and their reasons. */
	struct buf done, bad, why;
	int sent = 0;
	buf_init(&done, 0);
	buf_init(&bad, 0);
	buf_init(&why, 0);
	buf_append(&done, "{", 1);
	buf_append(&bad, "{", 1);
	buf_append(&why, "{", 1);
	for (int i = 0; i < n && !c->closed; i++) {
		const char *id = PQgetvalue(res, i, 0), *reason = NULL;
		switch (offline_send_one(c, PQgetvalue(res, i, 1),
					 (size_t)PQgetlength(res, i, 1),
					 PQgetvalue(res, i, 2), &reason)) {
		case OFFLINE_SENT:
			sent++;
			offline_array_add(&done, id, 0);
			break;
		case OFFLINE_UNREADABLE:
			log_error("offline message %s of %s@%s unreadable (%s): "
				  "moved to offline_unreadable", id, j->user,
				  j->domain, reason);
			offline_array_add(&bad, id, 0);
			offline_array_add(&why, reason, 1);
			break;
		case OFFLINE_NOT_SENT:
			log_warn("offline message %s of %s@%s not sent (out of "
				 "memory): kept", id, j->user, j->domain);
			break;
		}
	}
	conn_flush(c);
	/* A connection closed for not reading handed back what it did not
	 * write (conn.c: stored again or bounced): the rows sent go.  Any
	 * other close: keep them all for the next login. */
	if ((c->closed && !c->out_shed) || buf_append(&done, "}", 2) < 0 ||
	    buf_append(&bad, "}", 2) < 0 || buf_append(&why, "}", 2) < 0) {
		buf_free(&done);
		buf_free(&bad);
		buf_free(&why);
		offline_job_free(j);
		return;
	}
	const char *params[5] = { j->user, j->domain, buf_head(&done),
				  buf_head(&bad), buf_head(&why) };
	log_info("c%u: %d offline messages delivered", j->conn_id, sent);
	if (db_query(j->w->db, offline_delete_sql, 5, params, NULL, NULL, 0,
		     offline_deleted, j) < 0)
		offline_deleted(j, NULL, "database unavailable");
	buf_free(&done);
	buf_free(&bad);
	buf_free(&why);
}

void offline_deliver(struct conn *c)
{
	char bare[IPC_JID_MAX + 1];
	if (c->offline_fetching)
		return;     /* one fetch at a time: no double delivery */
	snprintf(bare, sizeof(bare), "%.*s", (int)strcspn(c->jid, "/"), c->jid);
	struct offline_job *j = offline_job_new(c->w, bare);
	if (j == NULL)
		return;
	j->conn_id = c->id;
	j->gen = c->gen;
	const char *params[2] = { j->user, j->domain };
	if (c->w->db == NULL ||
	    db_query(c->w->db, offline_fetch_sql, 2, params, NULL, NULL, 0,
		     offline_fetched, j) < 0)
		offline_job_free(j);
	else
		c->offline_fetching = 1;
}

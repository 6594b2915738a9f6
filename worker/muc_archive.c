/*
 * muc_archive.c - a room's archive (XEP-0313 on rooms) and the history
 * sent on entering (XEP-0045 section 7.2.14), on the personal archive's
 * store and code: rows go through mam.c's batches (a second target,
 * muc_messages, 019-muc-archive.sql) with its archive ids, bounds and
 * expiry (muc.archive_retention_days); queries through mam_query.c and
 * mam_form.c.  What is here is the room's side: forged stanza-ids off,
 * the history request (one statement, the newest rows first, then the
 * maxchars cut here) and the <delay/> of what history sends.
 * Failure policy: an unarchived message is still broadcast (mam.c
 * counts and logs it); a history that PostgreSQL cannot give is none
 * (the occupant enters, one line in the log: XEP-0045 says SHOULD); a
 * bad `since` is ignored (debug); a stored row that is not a message is
 * skipped (error: it is our bug).
 */
#include "muc_archive.h"
#include "mam.h"
#include "mam_form.h"
#include "../db/db.h"
#include "buf.h"
#include "jid.h"
#include "log.h"
#include "xml.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *const muc_archive_config_keys[] = {
	"muc.archive_retention_days", NULL,
};
const char *const muc_archive_schema[] = { "019-muc-archive.sql", NULL };

/* ---- writing -------------------------------------------------------- */

/* XEP-0359 section 4: a stanza-id by the room that the room did not put
 * there (the sender's, or an earlier hop's) is removed. */
static void muc_archive_strip(struct xml_node *st, const char *room_bare)
{
	struct xml_node *prev = NULL, *n = st->children;
	struct arena a;
	arena_init(&a, 512);
	while (n != NULL) {
		struct xml_node *next = n->next;
		const char *by, *error, *bare;
		struct jid j;
		if (n->name != NULL && xml_is(n, NS_SID, "stanza-id") &&
		    ((by = xml_attr(n, "by")) == NULL ||
		     jid_parse(&a, by, &j, &error) < 0 ||
		     (bare = jid_bare(&a, &j)) == NULL ||
		     strcmp(bare, room_bare) == 0)) {
			xml_unlink_child(st, prev, n);
			log_debug("room archive: stanza-id by '%s' removed",
				  by != NULL ? by : "");
		} else {
			prev = n;
		}
		n = next;
	}
	arena_free(&a);
}

int muc_archive_add(struct worker *w, long long room_id, const char *room_bare,
		    const char *nick, const char *real_bare,
		    struct xml_node *st)
{
	muc_archive_strip(st, room_bare);
	if (!mam_room_archivable(st))
		return 1;
	return mam_room_add(w, room_id, room_bare, nick, real_bare, st);
}

/* ---- history on entering -------------------------------------------- */

/* One history request waiting for its rows. */
struct muc_hist {
	struct muc_hist *next;
	muc_history_cb *cb;
	void *ctx;              /* the caller's (muc_archive_cancel) */
	long maxchars;          /* -1: no bound */
	char room_bare[];
};

static struct muc_hist *muc_hists;     /* waiting, this worker's */

static const char muc_history_sql[] =
	"SELECT id, stanza FROM (SELECT id, stanza FROM muc_messages "
	"WHERE room_id = $1::bigint AND id >= $2::bigint "
	"ORDER BY id DESC LIMIT $3::int) h ORDER BY id";

int muc_archive_delay(long long id, const char *room_bare, struct buf *out)
{
	char stamp[40];
	mam_id_stamp(id, stamp, sizeof(stamp));
	buf_appendf(out, "<delay xmlns='" NS_DELAY "' from='");
	xml_escape(out, room_bare, strlen(room_bare), 1);
	return buf_appendf(out, "' stamp='%s'/>", stamp);
}

static void muc_hist_unlink(struct muc_hist *h)
{
	for (struct muc_hist **pp = &muc_hists; *pp != NULL;
	     pp = &(*pp)->next)
		if (*pp == h) {
			*pp = h->next;
			return;
		}
}

/* The rows of res as history texts in out (each with its <delay/>);
 * their starts in off, lengths in lens, ids in ids; how many. */
static unsigned muc_hist_texts(const struct muc_hist *h, const PGresult *res,
			       struct buf *out, size_t *off, size_t *lens,
			       long long *ids)
{
	static const char end[] = "</message>";
	const size_t endlen = sizeof(end) - 1;
	int rows = PQntuples(res);
	unsigned n = 0;
	for (int i = 0; i < rows; i++) {
		const char *s = PQgetvalue(res, i, 1);
		size_t len = (size_t)PQgetlength(res, i, 1);
		long long id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		if (len < 8 + endlen || memcmp(s, "<message", 8) != 0 ||
		    memcmp(s + len - endlen, end, endlen) != 0) {
			log_error("room archive row %lld of %s unreadable: "
				  "skipped", id, h->room_bare);
			continue;
		}
		off[n] = buf_used(out);
		buf_append(out, s, len - endlen);
		muc_archive_delay(id, h->room_bare, out);
		if (buf_append(out, end, endlen) < 0)
			return 0;
		lens[n] = buf_used(out) - off[n];
		ids[n++] = id;
	}
	return n;
}

/* The rows, oldest first, cut to maxchars, to the caller's cb. */
static void muc_hist_deliver(struct muc_hist *h, const PGresult *res)
{
	unsigned rows = (unsigned)PQntuples(res);
	struct buf out;
	size_t *off = calloc(rows + 1, sizeof(*off));
	size_t *lens = calloc(rows + 1, sizeof(*lens));
	long long *ids = calloc(rows + 1, sizeof(*ids));
	const char **texts = calloc(rows + 1, sizeof(*texts));
	buf_init(&out, 0);
	if (off == NULL || lens == NULL || ids == NULL || texts == NULL) {
		h->cb(h->ctx, 0, NULL, NULL, NULL, "out of memory");
	} else {
		unsigned n = muc_hist_texts(h, res, &out, off, lens, ids);
		for (unsigned i = 0; i < n; i++)
			texts[i] = buf_head(&out) + off[i];
		unsigned k = mam_form_fit(texts, lens, n, h->maxchars);
		h->cb(h->ctx, k, texts + (n - k), lens + (n - k),
		      ids + (n - k), NULL);
	}
	buf_free(&out);
	free(off);
	free(lens);
	free(ids);
	free(texts);
}

static void muc_hist_answered(void *ctx, const PGresult *res,
			      const char *error)
{
	struct muc_hist *h = ctx;
	muc_hist_unlink(h);
	if (res == NULL) {
		log_warn("room history of %s: %s (entered without it)",
			 h->room_bare, error);
		h->cb(h->ctx, 0, NULL, NULL, NULL, error);
	} else {
		muc_hist_deliver(h, res);
	}
	free(h);
}

/* The oldest archive id history may send: seconds and since (the later
 * of the two), or 0. */
static long long muc_hist_from(const struct muc_history_req *req,
			       const char *room_bare)
{
	long long ms = 0, since;
	if (req->seconds >= 0) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 -
		     (long long)req->seconds * 1000;
	}
	if (req->since != NULL) {
		if (mam_form_time(req->since, &since) < 0)
			log_debug("room history of %s: since '%s' is no "
				  "XEP-0082 DateTime: ignored", room_bare,
				  req->since);
		else if (since > ms)
			ms = since;
	}
	if (ms <= 0)
		return 0;
	if (ms > (LLONG_MAX >> MAM_ID_MS_SHIFT))
		ms = LLONG_MAX >> MAM_ID_MS_SHIFT;
	return ms << MAM_ID_MS_SHIFT;
}

/* How many messages at most: what was asked, or the default when
 * nothing was; never past muc.history_max. */
static long muc_hist_max(const struct worker *w,
			 const struct muc_history_req *req)
{
	long cap = (long)w->cfg->muc_history_max;
	long n = cap;
	if (req->maxstanzas >= 0)
		n = req->maxstanzas;
	else if (req->maxchars < 0 && req->seconds < 0 && req->since == NULL)
		n = (long)w->cfg->muc_history_default;
	return n < cap ? n : cap;
}

int muc_archive_history(struct worker *w, long long room_id,
			const char *room_bare,
			const struct muc_history_req *req, muc_history_cb *cb,
			void *ctx)
{
	char room[24], from[24], limit[24];
	long max = muc_hist_max(w, req);
	if (max <= 0 || req->maxchars == 0)
		return 1;
	size_t blen = strlen(room_bare) + 1;
	struct muc_hist *h = malloc(sizeof(*h) + blen);
	if (h == NULL) {
		log_warn("room history of %s: out of memory", room_bare);
		return -1;
	}
	h->cb = cb;
	h->ctx = ctx;
	h->maxchars = req->maxchars;
	memcpy(h->room_bare, room_bare, blen);
	snprintf(room, sizeof(room), "%lld", room_id);
	snprintf(from, sizeof(from), "%lld", muc_hist_from(req, room_bare));
	snprintf(limit, sizeof(limit), "%ld", max);
	const char *params[3] = { room, from, limit };
	/* what this worker archived a moment ago goes first, so the
	 * query (behind it on the pipeline) sees it */
	mam_flush_writes(w);
	if (w->db == NULL || db_query(w->db, muc_history_sql, 3, params, NULL,
				      NULL, 0, muc_hist_answered, h) < 0) {
		log_warn("room history of %s: PostgreSQL unavailable or busy "
			 "(entered without it)", room_bare);
		free(h);
		return -1;
	}
	h->next = muc_hists;
	muc_hists = h;
	return 0;
}

void muc_archive_cancel(struct worker *w, void *ctx)
{
	struct muc_hist **pp = &muc_hists;
	while (*pp != NULL) {
		struct muc_hist *h = *pp;
		if (h->ctx != ctx) {
			pp = &h->next;
			continue;
		}
		*pp = h->next;
		if (w->db != NULL)
			db_cancel(w->db, h);
		free(h);
	}
}

/* ---- queries -------------------------------------------------------- */

void muc_archive_query(struct worker *w, struct xml_node *st,
		       long long room_id, const char *room_bare,
		       int show_jids)
{
	mam_room_query_iq(w, st, room_id, room_bare, show_jids);
}

void muc_archive_metadata(struct worker *w, struct xml_node *st,
			  long long room_id, const char *room_bare)
{
	mam_room_metadata_iq(w, st, room_id, room_bare);
}

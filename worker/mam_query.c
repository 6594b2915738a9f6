/*
 * mam_query.c - XEP-0313 archive queries on the account's own archive
 * (section 4) with XEP-0059 paging, and the #extended metadata query;
 * the same for a room's archive (muc_archive.c: the room decided the
 * requester may query it; `with` is an occupant JID room@service/nick,
 * or a real bare JID when the requester may see those, and then each
 * result carries the sender's real JID in <x muc#user><item jid/>).
 *
 * <query/> get: the form of the fields we take.  <query/> set: parsed
 * by mam_form.c (the data form, RSM, <flip-page/>; a pure function,
 * fuzzed by fuzz/fuzz_mam.c), which also builds the one statement that
 * answers it: only the conditions asked, on the right index, fetching
 * one row more than the page to know whether it is complete, counting
 * the ids the query names (any one missing is item-not-found), and
 * bounded by mam.max_scan_rows where an index range alone would not
 * bound it (a count-only query; `with` a full JID).
 * Results are sent to the requesting resource as <message><result/>
 * </message>, in chronological order (flipped on request), then the IQ
 * result with <fin complete stable='true'><set first last/></fin>.  A
 * page also stops at half of c2s.max_output_bytes (complete='false': the
 * client asks for the next), and results its connection never wrote are
 * dropped (taken_back), not rerouted like messages.
 * Archive ids are numbers (mam.c): an id that is not one cannot be in
 * the archive (item-not-found).  `with` a bare JID matches the other
 * party's bare JID (with the account's own JID: messages to itself); a
 * full JID matches it exactly.
 * Failure policy: every query is answered: bad-request for a bad form
 * (one line in the log; a field given twice is one),
 * feature-not-implemented for a field or RSM element we do not take,
 * forbidden for another account's archive, policy-violation (modify,
 * with text) for more ids than mam.max_query_ids, resource-constraint
 * (wait) when PostgreSQL is unavailable or busy, with text when a `with`
 * full JID query found nothing in the mam.max_scan_rows rows it read
 * (what it found there is a page marked incomplete), or
 * when the requester's output filled up with other stanzas before the
 * page was written whole (the results sent are not claimed complete).
 */
#include "worker.h"
#include "ext.h"
#include "iq.h"
#include "mam.h"
#include "mam_form.h"
#include "../db/db.h"
#include "jid.h"
#include "log.h"
#include "server.h"
#include "session.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- sending the results -------------------------------------------- */

/* Where a page goes: the requesting session, on this worker (c) or on
 * another (slot), or on another server (remote: a room's occupant from
 * there; routed as any stanza, each result parsed back in a's arena). */
struct mam_dest {
	struct worker *w;
	struct conn *c;
	struct session_info s;
	int gone;
	int remote;
	struct arena a;
};

/* Whether full JID to is of a domain we do not host. */
static int mam_dest_remote(struct worker *w, const char *to)
{
	const char *at = strchr(to, '@'), *slash;
	const char *dom = at != NULL ? at + 1 : to;
	char host[1024];
	slash = strchr(dom, '/');
	size_t n = slash != NULL ? (size_t)(slash - dom) : strlen(dom);
	if (n >= sizeof(host))
		return 0;
	memcpy(host, dom, n);
	host[n] = '\0';
	return !stream_hosted(w, host);
}

static void mam_dest_find(struct mam_dest *d, struct worker *w,
			  const char *to)
{
	memset(d, 0, sizeof(*d));
	d->w = w;
	if (mam_dest_remote(w, to)) {
		d->remote = 1;
		arena_init(&d->a, 4096);
	} else if (shm_session_get(w->shm->sessions, to, &d->s) != 1) {
		d->gone = 1;
	} else if (d->s.slot == w->slot) {
		d->c = conn_lookup(w, d->s.conn_id, d->s.gen);
		d->gone = d->c == NULL || !d->c->bound || d->c->closed;
	}
}

/* Send one result; 0, or -1 when the requester is gone or its output
 * is too full to take it (the page stops there). */
static int mam_dest_send(struct mam_dest *d, const char *text, size_t len)
{
	const char *error;
	if (d->gone)
		return -1;
	if (d->remote) {
		struct xml_node *st = xml_parse_in(&d->a, text, len, NS_CLIENT,
						   &error);
		if (st == NULL) {
			log_error("archive result unreadable (%s): not sent",
				  error);
			return 0;
		}
		route_stanza(d->w, &d->a, st);
		arena_reset(&d->a);
		return 0;
	}
	if (d->c != NULL) {
		struct conn *c = d->c;
		if (c->closed || c->out_shed ||
		    buf_used(&c->out) + len > c->w->cfg->c2s_max_output_bytes) {
			d->gone = 1;
			return -1;
		}
		if (!ext_stanza_out_text(c, text, len))
			conn_send(c, text, len);
		c->mam_to[(c->mam_next + CONN_MAM_RANGES - 1) %
			  CONN_MAM_RANGES] = c->out_total;
		return 0;
	}
	if (worker_send_session(d->w, &d->s, IPC_FRAME_STANZA, text, len,
				&error) < 0) {
		log_warn("archive results: %s", error);
		d->gone = 1;
		return -1;
	}
	return 0;
}

static void mam_dest_done(struct mam_dest *d)
{
	if (d->remote)
		arena_free(&d->a);
}

/* Results about to be written to c: remember where they start. */
static void mam_dest_begin(struct mam_dest *d)
{
	struct conn *c = d->c;
	if (c == NULL || d->gone)
		return;
	c->mam_from[c->mam_next] = c->out_total;
	c->mam_to[c->mam_next] = c->out_total;
	c->mam_next = (c->mam_next + 1) % CONN_MAM_RANGES;
}

/* An archive result written to c but never sent (the connection
 * closed): dropped, not rerouted like a message (it would land in
 * another resource or offline storage). */
int mam_taken_back(struct conn *c, uint64_t end)
{
	for (unsigned i = 0; i < CONN_MAM_RANGES; i++)
		if (end > c->mam_from[i] && end <= c->mam_to[i])
			return 1;
	return 0;
}

/* What one result costs on the wire besides the stored stanza. */
#define MAM_RESULT_OVERHEAD 512

/* The forwarded message's end: a room's with the sender's real JID
 * when the requester may see it (XEP-0313 section 5.1.2, as
 * XEP-0045 puts it in presence: <x muc#user><item jid/></x>). */
static int mam_result_end(struct buf *out, const struct mam_req *q,
			  const char *stored, size_t len, const char *real)
{
	static const char end[] = "</message>";
	size_t n = sizeof(end) - 1;
	if (q->room_id == NULL || !q->show_jids || real == NULL ||
	    *real == '\0' || len < n || memcmp(stored + len - n, end, n) != 0)
		return buf_append(out, stored + 8, len - 8);
	buf_append(out, stored + 8, len - 8 - n);
	buf_appendf(out, "<x xmlns='http://jabber.org/protocol/muc#user'>"
		    "<item jid='");
	xml_escape(out, real, strlen(real), 1);
	return buf_appendf(out, "'/></x></message>");
}

static int mam_send_result(struct mam_dest *d, struct iq_pending *p,
			   const struct mam_req *q, struct buf *out,
			   const char *id, const char *stored, size_t len,
			   const char *real)
{
	char stamp[40];
	if (len < 9 || memcmp(stored, "<message", 8) != 0 ||
	    (stored[8] != ' ' && stored[8] != '>' && stored[8] != '/')) {
		log_error("archive row %s of %s unreadable: skipped", id,
			  q->bare);
		return 0;
	}
	mam_id_stamp(strtoll(id, NULL, 10), stamp, sizeof(stamp));
	buf_consume(out, buf_used(out));
	buf_appendf(out, "<message to='");
	xml_escape(out, p->from, strlen(p->from), 1);
	buf_appendf(out, "' from='");
	xml_escape(out, q->bare, strlen(q->bare), 1);
	buf_appendf(out, "' id='%s'><result xmlns='" NS_MAM "'", id);
	if (q->queryid != NULL) {
		buf_appendf(out, " queryid='");
		xml_escape(out, q->queryid, strlen(q->queryid), 1);
		buf_appendf(out, "'");
	}
	buf_appendf(out, " id='%s'><forwarded xmlns='" NS_FORWARD "'><delay "
		    "xmlns='" NS_DELAY "' stamp='%s'/><message xmlns='"
		    NS_CLIENT "'", id, stamp);
	mam_result_end(out, q, stored, len, real);
	if (buf_appendf(out, "</forwarded></result></message>") < 0)
		return -1;
	return mam_dest_send(d, buf_head(out), buf_used(out));
}

static void mam_fail(struct iq_pending **p, const char *error)
{
	if (error == NULL || (*p)->w->db == NULL || !db_is_up((*p)->w->db)) {
		iq_reply_error(p, "wait", "resource-constraint");
		return;
	}
	log_error("archive query failed: %s", error);
	iq_reply_error(p, "cancel", "internal-server-error");
}

static void mam_queried(void *ctx, const PGresult *res, const char *error)
{
	struct iq_pending *p = ctx;
	struct mam_req *q = p->data;
	if (res == NULL) {
		mam_fail(&p, error);
		return;
	}
	int n = PQntuples(res), rows[1024], nrows = 0;
	unsigned long scanned = 0;
	const char *count = NULL;
	for (int i = 0; i < n; i++) {
		const char *id = PQgetvalue(res, i, 0);
		if (strcmp(id, "-1") == 0) {
			if (strtoul(PQgetvalue(res, i, 1), NULL, 10) !=
			    q->nnamed) {
				log_info("archive query of %s: an id it names "
					 "is not in the archive", q->bare);
				iq_reply_error(&p, "cancel", "item-not-found");
				return;
			}
		} else if (strcmp(id, "-2") == 0) {
			count = PQgetvalue(res, i, 1);
		} else if (strcmp(id, "-3") == 0) {
			scanned = strtoul(PQgetvalue(res, i, 1), NULL, 10);
		} else if (nrows < (int)(sizeof(rows) / sizeof(rows[0]))) {
			rows[nrows++] = i;
		}
	}
	int stopped = q->with_full != NULL && scanned >= q->scan_cap;
	if (stopped && nrows == 0) {
		/* nothing found in the rows read, and the conversation goes
		 * on past them: no page, not even where to go on from */
		log_info("archive query of %s refused: with %s found nothing "
			 "in %lu messages of the conversation "
			 "(mam.max_scan_rows)", q->bare, q->with_full, scanned);
		iq_reply_error_text(&p, "wait", "resource-constraint",
				    "Too many messages to search: ask with "
				    "the bare JID, or with start and end");
		return;
	}
	/* a with_full page that stopped at the rows read may go on */
	int complete = nrows <= (int)q->max && !stopped;
	if (nrows > (int)q->max)
		nrows = (int)q->max;
	/* A page stays under half of c2s.max_output_bytes: the rows
	 * nearest to where paging starts (the oldest going forward, the
	 * newest going back) and at least one; the rest is another page. */
	size_t budget = (size_t)(p->w->cfg->c2s_max_output_bytes / 2), used = 0;
	int keep = 0;
	for (; keep < nrows; keep++) {
		size_t cost = (size_t)PQgetlength(res, rows[keep], 1) +
			      MAM_RESULT_OVERHEAD + strlen(p->from);
		if (keep > 0 && used + cost > budget)
			break;
		used += cost;
	}
	if (keep < nrows) {
		complete = 0;
		nrows = keep;
	}
	/* chronological order: rows[0] oldest */
	if (q->backward)
		for (int i = 0; i < nrows / 2; i++) {
			int t = rows[i];
			rows[i] = rows[nrows - 1 - i];
			rows[nrows - 1 - i] = t;
		}
	struct buf out;
	struct mam_dest d;
	buf_init(&out, 0);
	mam_dest_find(&d, p->w, p->from);
	mam_dest_begin(&d);
	for (int k = 0; k < nrows && !d.gone; k++) {
		int i = rows[q->flip ? nrows - 1 - k : k];
		if (mam_send_result(&d, p, q, &out, PQgetvalue(res, i, 0),
				    PQgetvalue(res, i, 1),
				    (size_t)PQgetlength(res, i, 1),
				    PQnfields(res) > 2 ?
				    PQgetvalue(res, i, 2) : NULL) < 0)
			break;
	}
	mam_dest_done(&d);
	if (d.gone) {
		/* gone, or its output full of other things: the page is
		 * not whole, so no <fin/> claims it is (RFC 6120 8.3.3.18) */
		log_info("archive query of %s: results not all written "
			 "(session gone or output full)", q->bare);
		buf_free(&out);
		iq_reply_error(&p, "wait", "resource-constraint");
		return;
	}
	buf_consume(&out, buf_used(&out));
	buf_appendf(&out, "<fin xmlns='" NS_MAM "' complete='%s' "
		    "stable='true'><set xmlns='" NS_RSM "'",
		    complete ? "true" : "false");
	if (nrows == 0 && count == NULL) {
		buf_appendf(&out, "/></fin>");
	} else {
		buf_appendf(&out, ">");
		if (nrows > 0)
			buf_appendf(&out, "<first>%s</first><last>%s</last>",
				    PQgetvalue(res, rows[0], 0),
				    PQgetvalue(res, rows[nrows - 1], 0));
		if (count != NULL)
			buf_appendf(&out, "<count>%s</count>", count);
		buf_appendf(&out, "</set></fin>");
	}
	if (buf_append(&out, "", 1) < 0)
		iq_reply_error(&p, "wait", "resource-constraint");
	else
		iq_reply_result(&p, buf_head(&out));
	buf_free(&out);
}

static void mam_run(struct iq_pending *p, struct mam_req *q)
{
	struct mam_sql s;
	int r = mam_form_sql(&s, q);
	mam_flush_writes(p->w);
	if (r < 0 || p->w->db == NULL ||
	    db_query(p->w->db, buf_head(&s.text), s.n, s.params, NULL, NULL,
		     0, mam_queried, p) < 0)
		mam_fail(&p, NULL);
	mam_form_sql_free(&s);
}

/* ---- the IQs -------------------------------------------------------- */

static const char mam_form[] =
	"<query xmlns='" NS_MAM "'><x xmlns='" NS_XDATA "' type='form'>"
	"<field type='hidden' var='FORM_TYPE'><value>" NS_MAM "</value>"
	"</field><field type='jid-single' var='with'/>"
	"<field type='text-single' var='start'/>"
	"<field type='text-single' var='end'/>"
	"<field type='text-single' var='before-id'/>"
	"<field type='text-single' var='after-id'/>"
	"<field type='list-multi' var='ids'><validate "
	"xmlns='http://jabber.org/protocol/xdata-validate' "
	"datatype='xs:string'><open/></validate></field></x></query>";

/* The pending IQ and its request for the archive of bare: an account's
 * (room_id 0), which only the account may query, or a room's (the room
 * decided who may); NULL when an error was answered. */
static struct iq_pending *mam_begin(struct worker *w, struct xml_node *st,
				    const char *bare, long long room_id,
				    struct mam_req **q_r)
{
	struct iq_pending *p = iq_pending_new(w, st);
	if (p == NULL)
		return NULL;
	const char *from_bare = iq_bare(p, p->from);
	const char *at = strchr(bare, '@');
	struct mam_req *q = arena_zalloc(&p->arena, sizeof(*q));
	if (from_bare == NULL || p->payload == NULL || at == NULL || q == NULL) {
		iq_reply_error(&p, "wait", "resource-constraint");
		return NULL;
	}
	if (room_id > 0) {
		char num[24];
		snprintf(num, sizeof(num), "%lld", room_id);
		q->bare = arena_strdup(&p->arena, bare);
		q->room_id = arena_strdup(&p->arena, num);
		if (q->bare == NULL || q->room_id == NULL) {
			iq_reply_error(&p, "wait", "resource-constraint");
			return NULL;
		}
		p->data = q;
		*q_r = q;
		return p;
	}
	if (strcmp(from_bare, bare) != 0) {
		log_info("archive of %s: query by %s refused", bare, p->from);
		iq_reply_error(&p, "auth", "forbidden");
		return NULL;
	}
	q->bare = arena_strdup(&p->arena, bare);
	q->user = arena_strndup(&p->arena, bare, (size_t)(at - bare));
	q->domain = arena_strdup(&p->arena, at + 1);
	if (q->bare == NULL || q->user == NULL || q->domain == NULL) {
		iq_reply_error(&p, "wait", "resource-constraint");
		return NULL;
	}
	p->data = q;
	*q_r = q;
	return p;
}

/* A query of bare's archive (room_id > 0: a room's). */
static void mam_query(struct worker *w, struct xml_node *st,
		      const char *bare, long long room_id, int show_jids)
{
	struct mam_req *q;
	struct iq_pending *p = mam_begin(w, st, bare, room_id, &q);
	if (p == NULL)
		return;
	if (strcmp(p->type, "get") == 0) {
		iq_reply_result(&p, mam_form);
		return;
	}
	struct mam_limits lim = {
		.max_page = w->cfg->mam_max_page,
		.max_ids = w->cfg->mam_max_query_ids,
		.max_scan = w->cfg->mam_max_scan_rows,
	};
	char text[80];
	switch (mam_form_parse(&p->arena, p->payload, &lim, q)) {
	case MAM_OK:
		if (room_id > 0) {
			q->show_jids = show_jids;
			mam_form_room_with(q, bare);
		}
		mam_run(p, q);
		break;
	case MAM_BAD:
		log_info("archive query of %s refused: bad form or RSM set",
			 bare);
		iq_reply_error(&p, "modify", "bad-request");
		break;
	case MAM_UNKNOWN_FIELD:
		log_info("archive query of %s refused: a field or RSM element "
			 "not implemented", bare);
		iq_reply_error(&p, "cancel", "feature-not-implemented");
		break;
	case MAM_NOT_FOUND:
		log_info("archive query of %s: an id that is not in the "
			 "archive", bare);
		iq_reply_error(&p, "cancel", "item-not-found");
		break;
	case MAM_TOO_MANY_IDS:
		log_info("archive query of %s refused: more than %u ids "
			 "(mam.max_query_ids)", bare, lim.max_ids);
		snprintf(text, sizeof(text), "A query names at most %u "
			 "archive ids", lim.max_ids);
		iq_reply_error_text(&p, "modify", "policy-violation", text);
		break;
	}
}

void mam_query_iq(struct worker *w, struct xml_node *st, const char *bare)
{
	mam_query(w, st, bare, 0, 0);
}

void mam_room_query_iq(struct worker *w, struct xml_node *st,
		       long long room_id, const char *room_bare, int show_jids)
{
	if (room_id <= 0) {
		log_error("archive query of %s: no room id", room_bare);
		return;
	}
	mam_query(w, st, room_bare, room_id, show_jids);
}

static void mam_metadata_result(void *ctx, const PGresult *res,
				const char *error)
{
	struct iq_pending *p = ctx;
	char s1[40], s2[40];
	if (res == NULL || PQntuples(res) != 1) {
		mam_fail(&p, res == NULL ? error : "unexpected result shape");
		return;
	}
	if (PQgetisnull(res, 0, 0)) {
		iq_reply_result(&p, "<metadata xmlns='" NS_MAM "'/>");
		return;
	}
	struct buf out;
	const char *first = PQgetvalue(res, 0, 0), *last = PQgetvalue(res, 0, 1);
	mam_id_stamp(strtoll(first, NULL, 10), s1, sizeof(s1));
	mam_id_stamp(strtoll(last, NULL, 10), s2, sizeof(s2));
	buf_init(&out, 0);
	buf_appendf(&out, "<metadata xmlns='" NS_MAM "'><start id='%s' "
		    "timestamp='%s'/><end id='%s' timestamp='%s'/></metadata>",
		    first, s1, last, s2);
	if (buf_append(&out, "", 1) < 0)
		iq_reply_error(&p, "wait", "resource-constraint");
	else
		iq_reply_result(&p, buf_head(&out));
	buf_free(&out);
}

/* The first and last ids of bare's archive (room_id > 0: a room's). */
static void mam_metadata(struct worker *w, struct xml_node *st,
			 const char *bare, long long room_id)
{
	static const char sql[] =
		"SELECT min(id), max(id) FROM mam_messages WHERE account_id = "
		"(SELECT id FROM accounts WHERE username = $1 AND domain = $2)";
	static const char room_sql[] =
		"SELECT min(id), max(id) FROM muc_messages "
		"WHERE room_id = $1::bigint";
	struct mam_req *q;
	struct iq_pending *p = mam_begin(w, st, bare, room_id, &q);
	if (p == NULL)
		return;
	const char *params[2] = { q->user, q->domain };
	if (room_id > 0)
		params[0] = q->room_id;
	mam_flush_writes(w);
	if (w->db == NULL ||
	    db_query(w->db, room_id > 0 ? room_sql : sql, room_id > 0 ? 1 : 2,
		     params, NULL, NULL, 0, mam_metadata_result, p) < 0)
		mam_fail(&p, NULL);
}

void mam_metadata_iq(struct worker *w, struct xml_node *st, const char *bare)
{
	mam_metadata(w, st, bare, 0);
}

void mam_room_metadata_iq(struct worker *w, struct xml_node *st,
			  long long room_id, const char *room_bare)
{
	if (room_id <= 0) {
		log_error("archive metadata of %s: no room id", room_bare);
		return;
	}
	mam_metadata(w, st, room_bare, room_id);
}

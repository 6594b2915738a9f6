/*
 * mam_query.c - XEP-0313 archive queries on the account's own archive
 * (section 4) with XEP-0059 paging, and the #extended metadata query.
 *
 * <query/> get: the form of the fields we take.  <query/> set: the data
 * form (FORM_TYPE urn:xmpp:mam:2; with, start, end; before-id, after-id,
 * ids), RSM <set/> (max, after, before, before empty = the last page),
 * <flip-page/>.  One statement per query, built with only the conditions
 * asked (so PostgreSQL plans it on the right index: the primary key
 * (account_id, id), or (account_id, with_bare, id) for `with`), fetching
 * one row more than the page to know whether it is complete; the ids
 * named by the query (after, before, before-id, after-id, ids) are
 * counted in the same statement, and any one missing is item-not-found.
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
 * forbidden for another account's archive, resource-constraint (wait)
 * when PostgreSQL is unavailable or busy, or
 * when the requester's output filled up with other stanzas before the
 * page was written whole (the results sent are not claimed complete).
 */
#include "worker.h"
#include "ext.h"
#include "iq.h"
#include "mam.h"
#include "../db/db.h"
#include "jid.h"
#include "log.h"
#include "session.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAM_MAX_IDS 1000        /* ids one query may name */

/* A query, parsed (in the pending IQ's arena). */
struct mam_req {
	const char *bare;
	const char *user, *domain;
	const char *queryid;
	const char *with_bare, *with_full;
	long long lo, hi;       /* id > lo AND id < hi */
	unsigned max;           /* page size */
	int backward;           /* RSM <before/>: the page ending there */
	int flip;               /* XEP-0313 <flip-page/> */
	int count_only;         /* RSM <max>0</max> */
	long long *ids;         /* the ids field (nids) */
	unsigned nids;
	long long *named;       /* every id the query names, distinct */
	unsigned nnamed;
	unsigned seen;          /* form fields given (mam_field_vars bits) */
};

/* The fields of our form; each may appear once (XEP-0004 section 3.2:
 * a field's var is unique in its form). */
static const char *const mam_field_vars[] = {
	"FORM_TYPE", "with", "start", "end", "before-id", "after-id", "ids",
};

enum mam_verdict { MAM_OK, MAM_BAD, MAM_UNKNOWN_FIELD, MAM_NOT_FOUND };

/* A decimal archive id, or -1. */
static long long mam_parse_id(const char *s)
{
	char *end;
	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v <= 0)
		return -1;
	return v;
}

/* XEP-0082 DateTime: CCYY-MM-DDThh:mm:ss[.sss](Z|(+|-)hh:mm), as unix
 * ms; 0 or -1. */
static int mam_parse_time(const char *s, long long *ms_r)
{
	struct tm tm;
	int y, mo, d, h, mi, sec, n = 0, frac_ms = 0;
	memset(&tm, 0, sizeof(tm));
	if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d,
				&h, &mi, &sec, &n) != 6 || n != 19)
		return -1;
	const char *p = s + n;
	if (*p == '.') {
		int digits = 0;
		for (p++; *p >= '0' && *p <= '9'; p++, digits++)
			if (digits < 3)
				frac_ms = frac_ms * 10 + (*p - '0');
		if (digits == 0)
			return -1;
		for (; digits < 3; digits++)
			frac_ms *= 10;
	}
	long off = 0;
	if (*p == 'Z' && p[1] == '\0') {
		off = 0;
	} else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
		int oh, om;
		if (sscanf(p + 1, "%2d:%2d", &oh, &om) != 2 || oh > 23 || om > 59)
			return -1;
		off = (oh * 60L + om) * 60L * (*p == '-' ? -1 : 1);
	} else {
		return -1;
	}
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
	    sec > 60)
		return -1;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	time_t t = timegm(&tm);
	*ms_r = ((long long)t - off) * 1000 + frac_ms;
	return 0;
}

static void mam_lo(struct mam_req *q, long long v)
{
	if (v > q->lo)
		q->lo = v;
}

static void mam_hi(struct mam_req *q, long long v)
{
	if (v < q->hi)
		q->hi = v;
}

/* Remember an id the query names (checked to exist). */
static int mam_name_id(struct iq_pending *p, struct mam_req *q, long long id)
{
	for (unsigned i = 0; i < q->nnamed; i++)
		if (q->named[i] == id)
			return 0;
	if (q->nnamed >= MAM_MAX_IDS + 4)
		return -1;
	if (q->named == NULL &&
	    (q->named = arena_alloc(&p->arena, (MAM_MAX_IDS + 4) *
				    sizeof(long long))) == NULL)
		return -1;
	q->named[q->nnamed++] = id;
	return 0;
}

static enum mam_verdict mam_field(struct iq_pending *p, struct mam_req *q,
				  const struct xml_node *f)
{
	const char *var = xml_attr(f, "var");
	const char *v = NULL;
	unsigned nvalues = 0;
	for (const struct xml_node *e = xml_first_element(f); e != NULL;
	     e = xml_next_element(e))
		if (xml_is(e, NS_XDATA, "value")) {
			if (nvalues++ == 0)
				v = xml_text(&p->arena, e);
		}
	if (var == NULL)
		return MAM_BAD;
	unsigned k = 0, nvars = sizeof(mam_field_vars) / sizeof(mam_field_vars[0]);
	while (k < nvars && strcmp(var, mam_field_vars[k]) != 0)
		k++;
	if (k == nvars)
		return MAM_UNKNOWN_FIELD;
	if (q->seen & (1u << k))
		return MAM_BAD;         /* given twice */
	q->seen |= 1u << k;
	if (strcmp(var, "FORM_TYPE") == 0)
		return v != NULL && strcmp(v, NS_MAM) == 0 ? MAM_OK : MAM_BAD;
	if (strcmp(var, "ids") == 0) {
		if (nvalues > MAM_MAX_IDS)
			return MAM_BAD;
		q->ids = arena_alloc(&p->arena, (nvalues + 1) * sizeof(long long));
		if (q->ids == NULL)
			return MAM_BAD;
		for (const struct xml_node *e = xml_first_element(f); e != NULL;
		     e = xml_next_element(e)) {
			if (!xml_is(e, NS_XDATA, "value"))
				continue;
			long long id = mam_parse_id(xml_text(&p->arena, e));
			if (id < 0)
				return MAM_NOT_FOUND;
			q->ids[q->nids++] = id;
			if (mam_name_id(p, q, id) < 0)
				return MAM_BAD;
		}
		return MAM_OK;
	}
	if (nvalues > 1)
		return MAM_BAD;
	if (v == NULL || *v == '\0')
		return MAM_OK;          /* an empty field filters nothing */
	if (strcmp(var, "with") == 0) {
		struct jid j;
		const char *error;
		if (jid_parse(&p->arena, v, &j, &error) < 0)
			return MAM_BAD;
		q->with_bare = jid_bare(&p->arena, &j);
		if (j.resource != NULL)
			q->with_full = jid_full(&p->arena, &j);
		return q->with_bare != NULL ? MAM_OK : MAM_BAD;
	}
	if (strcmp(var, "start") == 0 || strcmp(var, "end") == 0) {
		long long ms;
		if (mam_parse_time(v, &ms) < 0)
			return MAM_BAD;
		if (ms < 0)
			ms = 0;
		if (ms > (LLONG_MAX >> MAM_ID_MS_SHIFT) - 1)
			ms = (LLONG_MAX >> MAM_ID_MS_SHIFT) - 1;
		if (var[0] == 's')
			mam_lo(q, (ms << MAM_ID_MS_SHIFT) - 1);
		else
			mam_hi(q, (ms + 1) << MAM_ID_MS_SHIFT);
		return MAM_OK;
	}
	long long id = mam_parse_id(v);
	if (id < 0)
		return MAM_NOT_FOUND;
	if (strcmp(var, "after-id") == 0)
		mam_lo(q, id);
	else
		mam_hi(q, id);
	return mam_name_id(p, q, id) < 0 ? MAM_BAD : MAM_OK;
}

static enum mam_verdict mam_rsm(struct iq_pending *p, struct mam_req *q,
				const struct xml_node *set, unsigned cap)
{
	for (const struct xml_node *e = xml_first_element(set); e != NULL;
	     e = xml_next_element(e)) {
		char *text = xml_text(&p->arena, e);
		if (text == NULL)
			return MAM_BAD;
		if (xml_is(e, NS_RSM, "max")) {
			char *end;
			errno = 0;
			unsigned long v = strtoul(text, &end, 10);
			if (*text < '0' || *text > '9' || *end != '\0' ||
			    errno != 0)
				return MAM_BAD;
			if (v == 0)
				q->count_only = 1;
			if (v > cap)
				v = cap;        /* the page is marked incomplete */
			q->max = (unsigned)v;
		} else if (xml_is(e, NS_RSM, "after")) {
			long long id = mam_parse_id(text);
			if (*text == '\0')
				return MAM_BAD;
			if (id < 0)
				return MAM_NOT_FOUND;
			mam_lo(q, id);
			if (mam_name_id(p, q, id) < 0)
				return MAM_BAD;
		} else if (xml_is(e, NS_RSM, "before")) {
			q->backward = 1;
			if (*text == '\0')
				continue;       /* the last page */
			long long id = mam_parse_id(text);
			if (id < 0)
				return MAM_NOT_FOUND;
			mam_hi(q, id);
			if (mam_name_id(p, q, id) < 0)
				return MAM_BAD;
		} else {
			return MAM_UNKNOWN_FIELD;       /* index, ... */
		}
	}
	return MAM_OK;
}

static enum mam_verdict mam_parse(struct iq_pending *p, struct mam_req *q,
				  unsigned cap)
{
	const struct xml_node *query = p->payload;
	q->lo = 0;
	q->hi = LLONG_MAX;
	q->max = cap;
	q->queryid = xml_attr(query, "queryid");
	for (const struct xml_node *e = xml_first_element(query); e != NULL;
	     e = xml_next_element(e)) {
		enum mam_verdict v = MAM_OK;
		if (xml_is(e, NS_XDATA, "x")) {
			const char *type = xml_attr(e, "type");
			if (type != NULL && strcmp(type, "submit") != 0)
				return MAM_BAD;
			for (const struct xml_node *f = xml_first_element(e);
			     f != NULL && v == MAM_OK; f = xml_next_element(f))
				if (xml_is(f, NS_XDATA, "field"))
					v = mam_field(p, q, f);
		} else if (xml_is(e, NS_RSM, "set")) {
			v = mam_rsm(p, q, e, cap);
		} else if (xml_is(e, NS_MAM, "flip-page")) {
			q->flip = 1;
		} else {
			v = MAM_UNKNOWN_FIELD;
		}
		if (v != MAM_OK)
			return v;
	}
	return MAM_OK;
}

/* ---- the statement -------------------------------------------------- */

struct mam_sql {
	struct buf text;
	const char *params[12];
	char num[4][24];
	int n;
};

static int mam_param(struct mam_sql *s, const char *v)
{
	s->params[s->n] = v;
	return ++s->n;
}

static void mam_id_array(struct buf *out, const long long *ids, unsigned n)
{
	buf_append(out, "{", 1);
	for (unsigned i = 0; i < n; i++)
		buf_appendf(out, i ? ",%lld" : "%lld", ids[i]);
	buf_append(out, "}", 2);
}

/* ---- sending the results -------------------------------------------- */

/* Where a page goes: the requesting session, on this worker (c) or on
 * another (slot). */
struct mam_dest {
	struct worker *w;
	struct conn *c;
	struct session_info s;
	int gone;
};

static void mam_dest_find(struct mam_dest *d, struct worker *w,
			  const char *to)
{
	memset(d, 0, sizeof(*d));
	d->w = w;
	if (shm_session_get(w->shm->sessions, to, &d->s) != 1) {
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
	if (queue_send(d->w->q, d->s.slot, IPC_FRAME_STANZA, d->s.conn_id,
		       d->s.gen, text, len, &error) < 0) {
		log_warn("archive results: %s", error);
		d->gone = 1;
		return -1;
	}
	return 0;
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

static int mam_send_result(struct mam_dest *d, struct iq_pending *p,
			   const struct mam_req *q, struct buf *out,
			   const char *id, const char *stored, size_t len)
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
	buf_append(out, stored + 8, len - 8);
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
		} else if (nrows < (int)(sizeof(rows) / sizeof(rows[0]))) {
			rows[nrows++] = i;
		}
	}
	int complete = nrows <= (int)q->max;
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
				    (size_t)PQgetlength(res, i, 1)) < 0)
			break;
	}
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
	struct buf conds, ids, named;
	memset(&s, 0, sizeof(s));
	buf_init(&s.text, 0);
	buf_init(&conds, 0);
	buf_init(&ids, 0);
	buf_init(&named, 0);
	snprintf(s.num[0], sizeof(s.num[0]), "%lld", q->lo);
	snprintf(s.num[1], sizeof(s.num[1]), "%lld", q->hi);
	snprintf(s.num[2], sizeof(s.num[2]), "%u", q->max + 1);
	/* parameter numbers first: the order in which a call's arguments
	 * are evaluated is unspecified */
	int pu = mam_param(&s, q->user), pd = mam_param(&s, q->domain);
	int plo = mam_param(&s, s.num[0]), phi = mam_param(&s, s.num[1]);
	buf_appendf(&conds, "account_id = (SELECT id FROM accounts WHERE "
		    "username = $%d AND domain = $%d) AND id > $%d::bigint AND "
		    "id < $%d::bigint", pu, pd, plo, phi);
	if (q->with_bare != NULL)
		buf_appendf(&conds, " AND with_bare = $%d",
			    mam_param(&s, q->with_bare));
	if (q->with_full != NULL)
		buf_appendf(&conds, " AND with_full = $%d",
			    mam_param(&s, q->with_full));
	if (q->ids != NULL) {
		mam_id_array(&ids, q->ids, q->nids);
		buf_appendf(&conds, " AND id = ANY($%d::bigint[])",
			    mam_param(&s, buf_head(&ids)));
	}
	buf_append(&conds, "", 1);
	if (q->count_only)
		buf_appendf(&s.text, "SELECT -2::bigint, count(*)::text FROM "
			    "mam_messages WHERE %s", buf_head(&conds));
	else {
		int plim = mam_param(&s, s.num[2]);
		buf_appendf(&s.text, "(SELECT id, stanza FROM mam_messages "
			    "WHERE %s ORDER BY id %s LIMIT $%d::int)",
			    buf_head(&conds), q->backward ? "DESC" : "ASC", plim);
	}
	if (q->nnamed > 0) {
		mam_id_array(&named, q->named, q->nnamed);
		int pn = mam_param(&s, buf_head(&named));
		buf_appendf(&s.text, " UNION ALL SELECT -1::bigint, "
			    "count(*)::text FROM mam_messages WHERE "
			    "account_id = (SELECT id FROM accounts WHERE "
			    "username = $%d AND domain = $%d) AND "
			    "id = ANY($%d::bigint[])", pu, pd, pn);
	}
	mam_flush_writes(p->w);
	if (buf_append(&s.text, "", 1) < 0 || p->w->db == NULL ||
	    db_query(p->w->db, buf_head(&s.text), s.n, s.params, NULL, NULL,
		     0, mam_queried, p) < 0)
		mam_fail(&p, NULL);
	buf_free(&s.text);
	buf_free(&conds);
	buf_free(&ids);
	buf_free(&named);
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

/* The pending IQ and its request for the account bare, or NULL when an
 * error was answered. */
static struct iq_pending *mam_begin(struct worker *w, struct xml_node *st,
				    const char *bare, struct mam_req **q_r)
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

void mam_query_iq(struct worker *w, struct xml_node *st, const char *bare)
{
	struct mam_req *q;
	struct iq_pending *p = mam_begin(w, st, bare, &q);
	if (p == NULL)
		return;
	if (strcmp(p->type, "get") == 0) {
		iq_reply_result(&p, mam_form);
		return;
	}
	switch (mam_parse(p, q, w->cfg->mam_max_page)) {
	case MAM_OK:
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
	}
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

void mam_metadata_iq(struct worker *w, struct xml_node *st, const char *bare)
{
	static const char sql[] =
		"SELECT min(id), max(id) FROM mam_messages WHERE account_id = "
		"(SELECT id FROM accounts WHERE username = $1 AND domain = $2)";
	struct mam_req *q;
	struct iq_pending *p = mam_begin(w, st, bare, &q);
	if (p == NULL)
		return;
	const char *params[2] = { q->user, q->domain };
	mam_flush_writes(w);
	if (w->db == NULL || db_query(w->db, sql, 2, params, NULL, NULL, 0,
				      mam_metadata_result, p) < 0)
		mam_fail(&p, NULL);
}

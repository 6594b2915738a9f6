/*
 * mam_form.c - XEP-0313 query forms and XEP-0441 preferences, parsed
 * without a database (mam_form.h): the data form (FORM_TYPE, with,
 * start, end; #extended before-id, after-id, ids), the XEP-0059 <set/>
 * (max, after, before; before empty is the last page), <flip-page/>;
 * then the one statement that answers the query, built with only the
 * conditions asked, so PostgreSQL plans it on the right index (the
 * primary key (account_id, id), or (account_id, with_bare, id) for
 * `with`), and bounded: a count-only query counts at most
 * mam.max_scan_rows rows (XEP-0059 2.7: the count MAY be approximate
 * when the exact one would be resource-intensive), and a `with` full JID
 * (checked on the conversation's rows, not in the index) reads at most
 * that many rows of the conversation.  Every other shape reads an index
 * range with a LIMIT, or the ids it names.  A room's archive
 * (muc_messages) is queried with the same statements on its primary key
 * (room_id, id), `with` mapped to the sender's nick or real JID
 * (mam_form_room_with), each on its own index.
 * Failure policy: each verdict names the error the query gets (see
 * enum mam_verdict); a field given twice is bad-request (XEP-0004 3.2),
 * naming more ids than mam.max_query_ids is policy-violation;
 * out-of-memory is bad-request while parsing, -1 while building.
 * Nothing logs: the caller logs one line with the verdict.
 */
#include "mam_form.h"
#include "mam.h"
#include "jid.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The fields of our form; each may appear once (XEP-0004 section 3.2:
 * a field's var is unique in its form). */
static const char *const mam_form_vars[] = {
	"FORM_TYPE", "with", "start", "end", "before-id", "after-id", "ids",
};

long long mam_form_id(const char *s)
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

/* XEP-0082 DateTime: CCYY-MM-DDThh:mm:ss[.sss](Z|(+|-)hh:mm). */
int mam_form_time(const char *s, long long *ms_r)
{
	struct tm tm;
	int y, mo, d, h, mi, sec, n = 0, frac_ms = 0;
	memset(&tm, 0, sizeof(tm));
	if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d,
				&h, &mi, &sec, &n) != 6 || n != 19)
		return -1;
	/* sscanf takes signs and spaces inside the widths: digits only */
	for (int i = 0; i < 19; i++)
		if (i == 4 || i == 7 ? s[i] != '-' : i == 10 ? s[i] != 'T' :
		    i == 13 || i == 16 ? s[i] != ':' :
		    (s[i] < '0' || s[i] > '9'))
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
	} else if ((*p == '+' || *p == '-') && strlen(p) == 6 &&
		   p[1] >= '0' && p[1] <= '9' && p[2] >= '0' && p[2] <= '9' &&
		   p[3] == ':' && p[4] >= '0' && p[4] <= '9' &&
		   p[5] >= '0' && p[5] <= '9') {
		int oh = (p[1] - '0') * 10 + (p[2] - '0');
		int om = (p[4] - '0') * 10 + (p[5] - '0');
		if (oh > 23 || om > 59)
			return -1;
		off = (oh * 60L + om) * 60L * (*p == '-' ? -1 : 1);
	} else {
		return -1;
	}
	/* a day the month has (timegm() would take February 31st as
	 * March 2nd: no xs:dateTime) */
	static const int mdays[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30,
				       31, 30, 31 };
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 ||
	    mi > 59 || sec > 60 ||
	    (mo == 2 && d == 29 && (y % 4 != 0 || (y % 100 == 0 &&
						   y % 400 != 0))))
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

static void mam_form_lo(struct mam_req *q, long long v)
{
	if (v > q->lo)
		q->lo = v;
}

static void mam_form_hi(struct mam_req *q, long long v)
{
	if (v < q->hi)
		q->hi = v;
}

/* Remember an id the query names (checked to exist): at most the ids
 * cap plus the four single ones (after-id, before-id, RSM after and
 * before). */
static enum mam_verdict mam_form_name(struct arena *a, struct mam_req *q,
				      const struct mam_limits *lim,
				      long long id)
{
	for (unsigned i = 0; i < q->nnamed; i++)
		if (q->named[i] == id)
			return MAM_OK;
	if (q->named == NULL) {
		q->named_cap = lim->max_ids + 4;
		q->named = arena_alloc(a, q->named_cap * sizeof(long long));
		if (q->named == NULL)
			return MAM_BAD;
	}
	if (q->nnamed >= q->named_cap)
		return MAM_TOO_MANY_IDS;
	q->named[q->nnamed++] = id;
	return MAM_OK;
}

static enum mam_verdict mam_form_field(struct arena *a, struct mam_req *q,
				       const struct mam_limits *lim,
				       const struct xml_node *f)
{
	const char *var = xml_attr(f, "var");
	const char *v = NULL;
	unsigned nvalues = 0;
	for (const struct xml_node *e = xml_first_element(f); e != NULL;
	     e = xml_next_element(e))
		if (xml_is(e, NS_XDATA, "value")) {
			if (nvalues++ == 0 && (v = xml_text(a, e)) == NULL)
				return MAM_BAD;
		}
	if (var == NULL)
		return MAM_BAD;
	unsigned k = 0, nvars = sizeof(mam_form_vars) / sizeof(mam_form_vars[0]);
	while (k < nvars && strcmp(var, mam_form_vars[k]) != 0)
		k++;
	if (k == nvars)
		return MAM_UNKNOWN_FIELD;
	if (q->seen & (1u << k))
		return MAM_BAD;         /* given twice */
	q->seen |= 1u << k;
	if (strcmp(var, "FORM_TYPE") == 0)
		return v != NULL && strcmp(v, NS_MAM) == 0 ? MAM_OK : MAM_BAD;
	if (strcmp(var, "ids") == 0) {
		if (nvalues > lim->max_ids)
			return MAM_TOO_MANY_IDS;
		q->ids = arena_alloc(a, (nvalues + 1) * sizeof(long long));
		if (q->ids == NULL)
			return MAM_BAD;
		for (const struct xml_node *e = xml_first_element(f); e != NULL;
		     e = xml_next_element(e)) {
			if (!xml_is(e, NS_XDATA, "value"))
				continue;
			char *t = xml_text(a, e);
			if (t == NULL)
				return MAM_BAD;
			long long id = mam_form_id(t);
			if (id < 0)
				return MAM_NOT_FOUND;
			q->ids[q->nids++] = id;
			enum mam_verdict r = mam_form_name(a, q, lim, id);
			if (r != MAM_OK)
				return r;
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
		if (jid_parse(a, v, &j, &error) < 0)
			return MAM_BAD;
		q->with_bare = jid_bare(a, &j);
		if (j.resource != NULL &&
		    (q->with_full = jid_full(a, &j)) == NULL)
			return MAM_BAD;
		return q->with_bare != NULL ? MAM_OK : MAM_BAD;
	}
	if (strcmp(var, "start") == 0 || strcmp(var, "end") == 0) {
		long long ms;
		if (mam_form_time(v, &ms) < 0)
			return MAM_BAD;
		if (ms < 0)
			ms = 0;
		if (ms > (LLONG_MAX >> MAM_ID_MS_SHIFT) - 1)
			ms = (LLONG_MAX >> MAM_ID_MS_SHIFT) - 1;
		if (var[0] == 's')
			mam_form_lo(q, (ms << MAM_ID_MS_SHIFT) - 1);
		else
			mam_form_hi(q, (ms + 1) << MAM_ID_MS_SHIFT);
		return MAM_OK;
	}
	long long id = mam_form_id(v);
	if (id < 0)
		return MAM_NOT_FOUND;
	if (strcmp(var, "after-id") == 0)
		mam_form_lo(q, id);
	else
		mam_form_hi(q, id);
	return mam_form_name(a, q, lim, id);
}

static enum mam_verdict mam_form_rsm(struct arena *a, struct mam_req *q,
				     const struct mam_limits *lim,
				     const struct xml_node *set)
{
	for (const struct xml_node *e = xml_first_element(set); e != NULL;
	     e = xml_next_element(e)) {
		char *text = xml_text(a, e);
		enum mam_verdict r;
		if (text == NULL)
			return MAM_BAD;
		if (xml_is(e, NS_RSM, "max")) {
			char *end;
			errno = 0;
			unsigned long v = strtoul(text, &end, 10);
			if (*text < '0' || *text > '9' || *end != '\0' ||
			    errno != 0)
				return MAM_BAD;
			q->count_only = v == 0;
			if (v > lim->max_page)
				v = lim->max_page;  /* marked incomplete */
			q->max = (unsigned)v;
		} else if (xml_is(e, NS_RSM, "after")) {
			long long id = mam_form_id(text);
			if (*text == '\0')
				return MAM_BAD;
			if (id < 0)
				return MAM_NOT_FOUND;
			mam_form_lo(q, id);
			if ((r = mam_form_name(a, q, lim, id)) != MAM_OK)
				return r;
		} else if (xml_is(e, NS_RSM, "before")) {
			q->backward = 1;
			if (*text == '\0')
				continue;       /* the last page */
			long long id = mam_form_id(text);
			if (id < 0)
				return MAM_NOT_FOUND;
			mam_form_hi(q, id);
			if ((r = mam_form_name(a, q, lim, id)) != MAM_OK)
				return r;
		} else {
			return MAM_UNKNOWN_FIELD;       /* index, ... */
		}
	}
	return MAM_OK;
}

enum mam_verdict mam_form_parse(struct arena *a, const struct xml_node *query,
				const struct mam_limits *lim,
				struct mam_req *q)
{
	q->lo = 0;
	q->hi = LLONG_MAX;
	q->max = lim->max_page;
	q->scan_cap = lim->max_scan;
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
					v = mam_form_field(a, q, lim, f);
		} else if (xml_is(e, NS_RSM, "set")) {
			v = mam_form_rsm(a, q, lim, e);
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

static int mam_form_param(struct mam_sql *s, const char *v)
{
	s->params[s->n] = v;
	return ++s->n;
}

static int mam_form_id_array(struct buf *out, const long long *ids,
			     unsigned n)
{
	buf_append(out, "{", 1);
	for (unsigned i = 0; i < n; i++)
		buf_appendf(out, i ? ",%lld" : "%lld", ids[i]);
	return buf_append(out, "}", 2);
}

void mam_form_room_with(struct mam_req *q, const char *room_bare)
{
	size_t n = strlen(room_bare);
	q->with_col = NULL;
	q->with_val = NULL;
	q->with_none = 0;
	if (q->with_bare == NULL)
		return;
	if (strcmp(q->with_bare, room_bare) == 0) {
		if (q->with_full != NULL && q->with_full[n] == '/') {
			q->with_col = "nick";
			q->with_val = q->with_full + n + 1;
		}
	} else if (q->with_full == NULL && q->show_jids) {
		q->with_col = "occupant_jid";
		q->with_val = q->with_bare;
	} else {
		q->with_none = 1;
	}
	q->with_bare = NULL;
	q->with_full = NULL;
}

/* Whose archive: an account's (by its name: one index probe) or a
 * room's; the parameters it takes are added to s. */
static void mam_form_owner(struct buf *out, struct mam_sql *s,
			   const struct mam_req *q)
{
	if (q->room_id != NULL) {
		buf_appendf(out, "room_id = $%d::bigint",
			    mam_form_param(s, q->room_id));
		return;
	}
	int pu = mam_form_param(s, q->user), pd = mam_form_param(s, q->domain);
	buf_appendf(out, "account_id = (SELECT id FROM accounts WHERE "
		    "username = $%d AND domain = $%d)", pu, pd);
}

/* The statement of a with_full query (accounts only): the ids of at
 * most scan_cap rows of the conversation from where paging starts (an
 * index-only scan, ordered, that the LIMIT stops), then the rows of the
 * full JID in that id range: whatever plan PostgreSQL picks for the
 * second, it reads that range of (account_id, with_bare, id) only. */
static void mam_form_sql_full(struct mam_sql *s, const struct mam_req *q,
			      const char *conds, const char *dir)
{
	int pcap = mam_form_param(s, s->num[3]);
	int pf = mam_form_param(s, q->with_full);
	buf_appendf(&s->text, "WITH b AS MATERIALIZED (SELECT id FROM "
		    "mam_messages WHERE %s ORDER BY id %s LIMIT "
		    "$%d::int), r AS MATERIALIZED (SELECT min(id) AS lo, "
		    "max(id) AS hi, count(*) AS n FROM b) ", conds, dir, pcap);
	if (q->count_only) {
		buf_appendf(&s->text, "SELECT -2::bigint, count(*)::"
			    "text FROM mam_messages WHERE %s AND id >= "
			    "(SELECT lo FROM r) AND id <= (SELECT hi "
			    "FROM r) AND with_full = $%d", conds, pf);
	} else {
		int plim = mam_form_param(s, s->num[2]);
		buf_appendf(&s->text, "(SELECT id, stanza FROM "
			    "mam_messages WHERE %s AND id >= (SELECT lo "
			    "FROM r) AND id <= (SELECT hi FROM r) AND "
			    "with_full = $%d ORDER BY id %s LIMIT "
			    "$%d::int) UNION ALL SELECT -3::bigint, "
			    "n::text FROM r", conds, pf, dir, plim);
	}
}

int mam_form_sql(struct mam_sql *s, const struct mam_req *q)
{
	struct buf conds, owner;
	const char *dir = q->backward ? "DESC" : "ASC";
	int room = q->room_id != NULL;
	/* a room's rows carry the sender's real JID, and every row of the
	 * statement has the same columns */
	const char *table = room ? "muc_messages" : "mam_messages";
	const char *cols = room ? "id, stanza, occupant_jid" : "id, stanza";
	const char *pad = room ? ", ''" : "";
	memset(s, 0, sizeof(*s));
	buf_init(&s->text, 0);
	buf_init(&s->ids, 0);
	buf_init(&s->named, 0);
	buf_init(&conds, 0);
	buf_init(&owner, 0);
	snprintf(s->num[0], sizeof(s->num[0]), "%lld", q->lo);
	snprintf(s->num[1], sizeof(s->num[1]), "%lld", q->hi);
	snprintf(s->num[2], sizeof(s->num[2]), "%u", q->max + 1);
	snprintf(s->num[3], sizeof(s->num[3]), "%u", q->scan_cap);
	/* parameter numbers first: the order in which a call's arguments
	 * are evaluated is unspecified */
	mam_form_owner(&owner, s, q);
	buf_append(&owner, "", 1);
	int plo = mam_form_param(s, s->num[0]);
	int phi = mam_form_param(s, s->num[1]);
	buf_appendf(&conds, "%s AND id > $%d::bigint AND id < $%d::bigint",
		    buf_head(&owner), plo, phi);
	if (room && q->with_none)
		buf_appendf(&conds, " AND false");
	else if (room && q->with_col != NULL)
		buf_appendf(&conds, " AND %s = $%d", q->with_col,
			    mam_form_param(s, q->with_val));
	else if (!room && q->with_bare != NULL)
		buf_appendf(&conds, " AND with_bare = $%d",
			    mam_form_param(s, q->with_bare));
	if (q->ids != NULL) {
		mam_form_id_array(&s->ids, q->ids, q->nids);
		buf_appendf(&conds, " AND id = ANY($%d::bigint[])",
			    mam_form_param(s, buf_head(&s->ids)));
	}
	buf_append(&conds, "", 1);
	if (!room && q->with_full != NULL) {
		mam_form_sql_full(s, q, buf_head(&conds), dir);
	} else if (q->count_only) {
		int pcap = mam_form_param(s, s->num[3]);
		/* ordered, so that the LIMIT stops an index (only) scan;
		 * unordered, PostgreSQL may read the account's whole
		 * range into a bitmap first */
		buf_appendf(&s->text, "SELECT -2::bigint, count(*)::text%s "
			    "FROM (SELECT 1 FROM %s WHERE %s ORDER BY id %s "
			    "LIMIT $%d::int) c", pad, table, buf_head(&conds),
			    dir, pcap);
	} else {
		int plim = mam_form_param(s, s->num[2]);
		buf_appendf(&s->text, "(SELECT %s FROM %s WHERE %s ORDER BY "
			    "id %s LIMIT $%d::int)", cols, table,
			    buf_head(&conds), dir, plim);
	}
	if (q->nnamed > 0) {
		mam_form_id_array(&s->named, q->named, q->nnamed);
		int pn = mam_form_param(s, buf_head(&s->named));
		buf_appendf(&s->text, " UNION ALL SELECT -1::bigint, "
			    "count(*)::text%s FROM %s WHERE %s AND "
			    "id = ANY($%d::bigint[])", pad, table,
			    buf_head(&owner), pn);
	}
	/* a failed append leaves its buffer short of what follows it */
	int r = buf_append(&s->text, "", 1);
	if (buf_used(&conds) == 0 || buf_used(&owner) == 0 ||
	    (q->ids != NULL && buf_used(&s->ids) == 0) ||
	    (q->nnamed > 0 && buf_used(&s->named) == 0))
		r = -1;
	buf_free(&conds);
	buf_free(&owner);
	return r;
}

void mam_form_sql_free(struct mam_sql *s)
{
	buf_free(&s->text);
	buf_free(&s->ids);
	buf_free(&s->named);
}

/* ---- room history (muc_archive.c) ----------------------------------- */

/* Characters of s: UTF-8 code points. */
static size_t mam_form_chars(const char *s, size_t len)
{
	size_t n = 0;
	for (size_t i = 0; i < len; i++)
		n += ((unsigned char)s[i] & 0xc0) != 0x80;
	return n;
}

unsigned mam_form_fit(const char *const *stanzas, const size_t *lens,
		      unsigned n, long maxchars)
{
	unsigned k = 0;
	size_t used = 0;
	if (maxchars < 0)
		return n;
	while (k < n) {
		size_t c = mam_form_chars(stanzas[n - 1 - k], lens[n - 1 - k]);
		if (c > (size_t)maxchars - used)
			break;      /* older ones are not sent either */
		used += c;
		k++;
	}
	return k;
}

/* ---- preferences (XEP-0441) ----------------------------------------- */

int mam_form_elem(struct buf *out, int first, const char *s, size_t n)
{
	size_t mark = out->len;
	int r = buf_append(out, first ? "\"" : ",\"", first ? 1 : 2);
	for (size_t i = 0; i < n && r == 0; i++) {
		if (s[i] == '"' || s[i] == '\\')
			r = buf_append(out, "\\", 1);
		if (r == 0)
			r = buf_append(out, s + i, 1);
	}
	if (r == 0)
		r = buf_append(out, "\"", 1);
	if (r < 0)
		out->len = mark;
	return r;
}

/* The <jid/> children of list as an array literal; -1 when one is not a
 * JID. */
static int mam_form_jids(struct arena *a, const struct xml_node *list,
			 struct buf *arr, unsigned *count_r)
{
	unsigned n = 0;
	buf_append(arr, "{", 1);
	for (const struct xml_node *e = list ? xml_first_element(list) : NULL;
	     e != NULL; e = xml_next_element(e)) {
		struct jid j;
		const char *error, *full;
		char *text;
		if (!xml_is(e, NS_MAM, "jid") || (text = xml_text(a, e)) == NULL ||
		    jid_parse(a, text, &j, &error) < 0 ||
		    (full = jid_full(a, &j)) == NULL)
			return -1;
		if (mam_form_elem(arr, n++ == 0, full, strlen(full)) < 0)
			return -1;
		(*count_r)++;
	}
	return buf_append(arr, "}", 2);
}

int mam_form_prefs(struct arena *a, const struct xml_node *prefs,
		   const char **default_r, struct buf *always,
		   struct buf *never, unsigned *njids_r)
{
	const char *def = xml_attr(prefs, "default");
	*njids_r = 0;
	*default_r = def;
	if (def == NULL || (strcmp(def, "always") != 0 &&
			    strcmp(def, "never") != 0 &&
			    strcmp(def, "roster") != 0))
		return -1;
	if (mam_form_jids(a, xml_child(prefs, NS_MAM, "always"), always,
			  njids_r) < 0 ||
	    mam_form_jids(a, xml_child(prefs, NS_MAM, "never"), never,
			  njids_r) < 0)
		return -1;
	return 0;
}

void mam_form_prefs_list(struct buf *out, const char *name, const char *arr)
{
	struct buf el;
	const char *p = arr;
	int any = 0;
	buf_init(&el, 0);
	buf_appendf(out, "<%s", name);
	if (*p == '{')
		p++;
	while (*p != '\0' && *p != '}') {
		buf_consume(&el, buf_used(&el));
		if (*p == '"') {
			for (p++; *p != '\0' && *p != '"'; p++) {
				if (*p == '\\' && p[1] != '\0')
					p++;
				buf_append(&el, p, 1);
			}
			if (*p == '"')
				p++;
		} else {
			size_t n = strcspn(p, ",}");
			buf_append(&el, p, n);
			p += n;
		}
		buf_appendf(out, any++ ? "<jid>" : "><jid>");
		xml_escape(out, buf_head(&el), buf_used(&el), 0);
		buf_appendf(out, "</jid>");
		if (*p == ',')
			p++;
	}
	if (any)
		buf_appendf(out, "</%s>", name);
	else
		buf_appendf(out, "/>");
	buf_free(&el);
}

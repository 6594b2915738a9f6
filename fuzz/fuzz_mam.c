/*
 * fuzz_mam.c - XEP-0313 archive queries and XEP-0441 preferences as a
 * client sends them, parsed and turned into SQL without a database:
 * mam_form_parse() and mam_form_sql(), mam_form_prefs() and
 * mam_form_prefs_list() (worker/mam_form.c), as worker/mam_query.c and
 * worker/mam.c run them.  Limits: max_page 100, max_ids 16 (small, so
 * that the cap is reached), max_scan 1000.  Properties:
 *  - no memory error or undefined behaviour (ASan, UBSan);
 *  - a query is accepted or gets one of the verdicts mam_query.c
 *    answers with an XEP-0313 / RFC 6120 condition;
 *  - an accepted query is bounded: max <= max_page (0 only when a count
 *    is asked), ids <= max_ids, named ids <= max_ids + 4, distinct, every
 *    one of ids among them, all > 0; lo < hi range within 0..LLONG_MAX;
 *    `with` is a JID that prepares to itself (bare: no resource);
 *  - an accepted start/end time formats back (XEP-0082) to the same ms,
 *    and in UTC to the same date and time (no February 31st);
 *  - the statement names exactly its parameters $1..$n, and each
 *    parameter's text is valid for the type it is cast to (bigint,
 *    int > 0, bigint[] literal of positive ids; text: valid UTF-8);
 *  - the same query to a room's archive (mam_form_room_with, with and
 *    without show_jids): the same properties, on muc_messages only,
 *    `with` a real JID only when the requester may see those;
 *  - a preferences set that is accepted gives text[] literals that parse
 *    (strictly, as PostgreSQL would) to exactly the prepared JIDs, and
 *    read back by mam_form_prefs_list() to XML listing those JIDs.
 * Input: one XML element: an <iq/> (its first child is the payload) or
 * the payload itself, <query xmlns='urn:xmpp:mam:2'/> or <prefs/>.
 */
#include "fuzz.h"
#include "xmlinput.h"
#include "arena.h"
#include "buf.h"
#include "jid.h"
#include "../worker/mam.h"
#include "../worker/mam_form.h"
#include "../worker/xml.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <time.h>

static const struct mam_limits fuzz_lim = { 100, 16, 1000 };

static int fuzz_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		unsigned c = *p++, n, cp;
		if (c < 0x80)
			continue;
		if (c >= 0xc2 && c <= 0xdf) { n = 1; cp = c & 0x1f; }
		else if (c >= 0xe0 && c <= 0xef) { n = 2; cp = c & 0x0f; }
		else if (c >= 0xf0 && c <= 0xf4) { n = 3; cp = c & 0x07; }
		else return 0;
		for (unsigned i = 0; i < n; i++, p++) {
			if ((*p & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (*p & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
	}
	return 1;
}

/* A whole decimal number in [lo, hi]. */
static int fuzz_number(const char *s, long long lo, long long hi)
{
	char *end;
	if ((*s < '0' || *s > '9') && *s != '-')
		return 0;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	return errno == 0 && *end == '\0' && v >= lo && v <= hi;
}

/* A bigint[] literal of positive ids: {1,2,3}; its count. */
static long fuzz_id_array(const char *s)
{
	long n = 0;
	if (*s++ != '{')
		return -1;
	if (*s == '}')
		return s[1] == '\0' ? 0 : -1;
	for (;;) {
		char num[24];
		size_t k = strspn(s, "0123456789");
		if (k == 0 || k >= sizeof(num))
			return -1;
		memcpy(num, s, k);
		num[k] = '\0';
		if (!fuzz_number(num, 1, LLONG_MAX))
			return -1;
		n++;
		s += k;
		if (*s == '}')
			return s[1] == '\0' ? n : -1;
		if (*s++ != ',')
			return -1;
	}
}

static void fuzz_check_sql(const struct mam_req *q)
{
	struct mam_sql s;
	FUZZ_CHECK(mam_form_sql(&s, q) == 0, "statement not built");
	const char *t = buf_head(&s.text);
	FUZZ_CHECK(s.n >= 4 && s.n <= MAM_SQL_PARAMS, "%d parameters", s.n);
	unsigned used = 0;
	for (const char *p = strchr(t, '$'); p != NULL; p = strchr(p + 1, '$')) {
		char *end;
		long k = strtol(p + 1, &end, 10);
		FUZZ_CHECK(k >= 1 && k <= s.n, "$%ld of %d in %s", k, s.n, t);
		used |= 1u << k;
		const char *v = s.params[k - 1];
		FUZZ_CHECK(v != NULL, "$%ld is NULL in %s", k, t);
		if (strncmp(end, "::bigint[]", 10) == 0) {
			long n = fuzz_id_array(v);
			FUZZ_CHECK(n >= 0 && n <= (long)fuzz_lim.max_ids + 4,
				   "$%ld bigint[] '%s'", k, v);
		} else if (strncmp(end, "::bigint", 8) == 0) {
			FUZZ_CHECK(fuzz_number(v, LLONG_MIN, LLONG_MAX),
				   "$%ld bigint '%s'", k, v);
		} else if (strncmp(end, "::int", 5) == 0) {
			FUZZ_CHECK(fuzz_number(v, 1, INT_MAX), "$%ld int '%s'",
				   k, v);
		} else {
			FUZZ_CHECK(fuzz_utf8(v), "$%ld text not UTF-8", k);
		}
	}
	for (int k = 1; k <= s.n; k++)
		FUZZ_CHECK(used & (1u << k), "$%d unused in %s", k, t);
	/* the page's size: max + 1 rows, the count's and the scan's bound */
	if (!q->count_only)
		FUZZ_CHECK(strstr(t, " LIMIT $") != NULL, "page without LIMIT");
	if (q->count_only || q->with_full != NULL)
		FUZZ_CHECK(strstr(t, "LIMIT $") != NULL, "scan without LIMIT");
	mam_form_sql_free(&s);
}

/* The same query to a room's archive (muc_archive.c): `with` mapped to
 * a column only as mam_form_room_with says (a real JID only for a
 * requester who may see them), and a statement on muc_messages alone
 * with the same parameter properties. */
static void fuzz_check_room(const struct mam_req *q0, int show_jids)
{
	static const char room[] = "room@conference.localhost";
	struct mam_req q = *q0;
	struct mam_sql s;
	q.room_id = "42";
	q.show_jids = show_jids;
	mam_form_room_with(&q, room);
	FUZZ_CHECK(q.with_bare == NULL && q.with_full == NULL, "with kept");
	if (q.with_col != NULL) {
		FUZZ_CHECK(!q.with_none && q.with_val != NULL, "with value");
		FUZZ_CHECK(strcmp(q.with_col, "nick") == 0 ||
			   (strcmp(q.with_col, "occupant_jid") == 0 &&
			    show_jids), "with column %s", q.with_col);
	}
	if (q0->with_bare != NULL && strcmp(q0->with_bare, room) == 0)
		FUZZ_CHECK(!q.with_none && (q0->with_full == NULL) ==
			   (q.with_col == NULL), "the room's own JID");
	else if (q0->with_bare != NULL)
		FUZZ_CHECK(q.with_none != (q.with_col != NULL), "another JID");
	fuzz_check_sql(&q);
	FUZZ_CHECK(mam_form_sql(&s, &q) == 0, "room statement not built");
	FUZZ_CHECK(strstr(buf_head(&s.text), "mam_messages") == NULL &&
		   strstr(buf_head(&s.text), "account") == NULL &&
		   strstr(buf_head(&s.text), "muc_messages") != NULL,
		   "room statement %s", buf_head(&s.text));
	mam_form_sql_free(&s);
}

/* An accepted XEP-0082 time, formatted again, reads the same. */
static void fuzz_check_time(const char *v)
{
	long long ms, again;
	if (v == NULL || mam_form_time(v, &ms) < 0)
		return;
	time_t t = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
	struct tm tm;
	char out[64];
	if (gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 < 0 ||
	    tm.tm_year + 1900 > 9999)
		return;
	snprintf(out, sizeof(out), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, (int)(ms - (long long)t * 1000));
	FUZZ_CHECK(mam_form_time(out, &again) == 0 && again == ms,
		   "'%s' is %lld ms, '%s' reads back %lld", v, ms, out, again);
	/* in UTC, outside a leap second, it is the very date and time
	 * given (not one timegm() normalized: February 31st) */
	if (v[strlen(v) - 1] == 'Z' && strncmp(v + 17, "60", 2) != 0)
		FUZZ_CHECK(strncmp(out, v, 19) == 0, "'%s' read as '%s'", v,
			   out);
}

static void fuzz_query(struct arena *a, const struct xml_node *query)
{
	struct mam_req q;
	memset(&q, 0, sizeof(q));
	q.bare = "juliet@localhost";
	q.user = "juliet";
	q.domain = "localhost";
	enum mam_verdict v = mam_form_parse(a, query, &fuzz_lim, &q);
	for (const struct xml_node *x = xml_first_element(query); x != NULL;
	     x = xml_next_element(x))
		for (const struct xml_node *f = xml_first_element(x);
		     f != NULL; f = xml_next_element(f)) {
			const char *var = xml_attr(f, "var");
			const struct xml_node *val = xml_first_element(f);
			if (var != NULL && val != NULL &&
			    (strcmp(var, "start") == 0 || strcmp(var, "end") == 0))
				fuzz_check_time(xml_text(a, val));
		}
	FUZZ_CHECK(v == MAM_OK || v == MAM_BAD || v == MAM_UNKNOWN_FIELD ||
		   v == MAM_NOT_FOUND || v == MAM_TOO_MANY_IDS, "verdict %d",
		   (int)v);
	if (v != MAM_OK)
		return;
	FUZZ_CHECK(q.max <= fuzz_lim.max_page, "max %u", q.max);
	FUZZ_CHECK(q.max > 0 || q.count_only, "an empty page, not a count");
	FUZZ_CHECK(!q.count_only || q.max == 0, "count with max %u", q.max);
	FUZZ_CHECK(q.nids <= fuzz_lim.max_ids, "%u ids", q.nids);
	FUZZ_CHECK(q.nnamed <= fuzz_lim.max_ids + 4, "%u named", q.nnamed);
	FUZZ_CHECK(q.lo >= 0 && q.hi > 0, "range %lld..%lld", q.lo, q.hi);
	for (unsigned i = 0; i < q.nnamed; i++) {
		FUZZ_CHECK(q.named[i] > 0, "named id %lld", q.named[i]);
		for (unsigned j = 0; j < i; j++)
			FUZZ_CHECK(q.named[i] != q.named[j], "named twice");
	}
	for (unsigned i = 0; i < q.nids; i++) {
		unsigned j = 0;
		while (j < q.nnamed && q.named[j] != q.ids[i])
			j++;
		FUZZ_CHECK(j < q.nnamed, "id %lld not checked", q.ids[i]);
	}
	FUZZ_CHECK(q.with_full == NULL || q.with_bare != NULL, "full, no bare");
	if (q.with_bare != NULL) {
		struct jid j;
		const char *error;
		FUZZ_CHECK(jid_parse(a, q.with_bare, &j, &error) == 0 &&
			   j.resource == NULL &&
			   strcmp(jid_bare(a, &j), q.with_bare) == 0,
			   "with '%s' is not a bare JID", q.with_bare);
	}
	if (q.with_full != NULL) {
		struct jid j;
		const char *error;
		FUZZ_CHECK(jid_parse(a, q.with_full, &j, &error) == 0 &&
			   j.resource != NULL &&
			   strcmp(jid_full(a, &j), q.with_full) == 0 &&
			   strcmp(jid_bare(a, &j), q.with_bare) == 0,
			   "with '%s' is not a full JID", q.with_full);
	}
	fuzz_check_sql(&q);
	fuzz_check_room(&q, 0);
	fuzz_check_room(&q, 1);
}

/* Parse a text[] literal as PostgreSQL's array_in would (the subset
 * mam_form_elem writes: every element quoted) into out[]; its count,
 * or -1. */
static int fuzz_text_array(struct arena *a, const char *s, char **out,
			   int max)
{
	int n = 0;
	if (*s++ != '{')
		return -1;
	if (*s == '}')
		return s[1] == '\0' ? 0 : -1;
	for (;;) {
		struct buf el;
		if (*s++ != '"' || n >= max)
			return -1;
		buf_init(&el, 0);
		for (; *s != '"'; s++) {
			if (*s == '\0')
				return buf_free(&el), -1;
			if (*s == '\\')
				s++;
			if (*s == '\0')
				return buf_free(&el), -1;
			buf_append(&el, s, 1);
		}
		s++;
		out[n++] = arena_strndup(a, buf_head(&el), buf_used(&el));
		buf_free(&el);
		if (*s == '}')
			return s[1] == '\0' ? n : -1;
		if (*s++ != ',')
			return -1;
	}
}

#define FUZZ_MAX_JIDS 256

static void fuzz_prefs_list(struct arena *a, const struct xml_node *prefs,
			    const char *name, const char *arr)
{
	char *els[FUZZ_MAX_JIDS];
	int n = fuzz_text_array(a, arr, els, FUZZ_MAX_JIDS);
	FUZZ_CHECK(n >= 0, "%s: bad text[] literal %s", name, arr);
	/* exactly the prepared JIDs, in order */
	const struct xml_node *list = xml_child(prefs, NS_MAM, name);
	int k = 0;
	for (const struct xml_node *e = list ? xml_first_element(list) : NULL;
	     e != NULL; e = xml_next_element(e), k++) {
		struct jid j;
		const char *error;
		FUZZ_CHECK(k < n, "%s: %d elements, more JIDs", name, n);
		FUZZ_CHECK(jid_parse(a, xml_text(a, e), &j, &error) == 0 &&
			   strcmp(jid_full(a, &j), els[k]) == 0,
			   "%s: element %d is '%s'", name, k, els[k]);
		FUZZ_CHECK(fuzz_utf8(els[k]), "%s: not UTF-8", name);
	}
	FUZZ_CHECK(k == n, "%s: %d elements, %d JIDs", name, n, k);
	/* what the reply lists, read back */
	struct buf out;
	const char *error;
	buf_init(&out, 0);
	mam_form_prefs_list(&out, name, arr);
	struct xml_node *r = xml_parse(a, buf_head(&out), buf_used(&out),
				       &error);
	FUZZ_CHECK(r != NULL, "%s: reply '%.*s' does not parse: %s", name,
		   (int)buf_used(&out), buf_head(&out), error);
	k = 0;
	for (const struct xml_node *e = xml_first_element(r); e != NULL;
	     e = xml_next_element(e), k++)
		FUZZ_CHECK(k < n && strcmp(xml_text(a, e), els[k]) == 0,
			   "%s: reply's <jid/> %d differs", name, k);
	FUZZ_CHECK(k == n, "%s: reply lists %d of %d", name, k, n);
	buf_free(&out);
}

static void fuzz_prefs(struct arena *a, const struct xml_node *prefs)
{
	const char *def;
	unsigned njids;
	struct buf al, nv;
	buf_init(&al, 0);
	buf_init(&nv, 0);
	if (mam_form_prefs(a, prefs, &def, &al, &nv, &njids) == 0) {
		FUZZ_CHECK(strcmp(def, "always") == 0 || strcmp(def, "never") == 0 ||
			   strcmp(def, "roster") == 0, "default '%s'", def);
		unsigned n = 0;
		for (const char *name = "always"; name != NULL;
		     name = name[0] == 'a' ? "never" : NULL) {
			const struct xml_node *l = xml_child(prefs, NS_MAM, name);
			n += l != NULL ? xml_element_count(l) : 0;
		}
		FUZZ_CHECK(n == njids, "%u JIDs counted, %u given", njids, n);
		if (njids <= FUZZ_MAX_JIDS) {
			fuzz_prefs_list(a, prefs, "always", buf_head(&al));
			fuzz_prefs_list(a, prefs, "never", buf_head(&nv));
		}
	}
	buf_free(&al);
	buf_free(&nv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct arena *a;
	struct xml_node *n = fuzz_xml_input(&a, data, size);
	if (n != NULL && xml_is(n, "jabber:client", "iq"))
		n = xml_first_element(n);
	if (n != NULL && xml_is(n, NS_MAM, "query"))
		fuzz_query(a, n);
	else if (n != NULL && xml_is(n, NS_MAM, "prefs"))
		fuzz_prefs(a, n);
	arena_reset(a);
	return 0;
}

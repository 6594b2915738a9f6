/*
 * test_mam_form.c - the pure parts of a room's archive in
 * worker/mam_form.c: which messages of history fit under XEP-0045
 * maxchars (the newest, counted in characters, whole stanzas only),
 * how a room query's `with` maps onto the room's columns (a real JID
 * only for a requester who may see them), and that a room query's
 * statement reads the room's table by its id, never an account's.
 */
#include <string.h>

#include <criterion/criterion.h>

#include "arena.h"
#include "buf.h"
#include "worker/mam.h"
#include "worker/mam_form.h"
#include "worker/xml.h"

static struct arena arena;
static const struct mam_limits lim = { 100, 16, 1000 };
static const char room[] = "room@conference.example.org";

static void setup(void) { arena_init(&arena, 4096); }
static void teardown(void) { arena_free(&arena); }
TestSuite(mam_form, .init = setup, .fini = teardown);

/* ---- maxchars ------------------------------------------------------- */

static unsigned fit(const char *const *s, unsigned n, long maxchars)
{
	size_t lens[8];
	for (unsigned i = 0; i < n; i++)
		lens[i] = strlen(s[i]);
	return mam_form_fit(s, lens, n, maxchars);
}

Test(mam_form, fit_keeps_newest_whole_stanzas)
{
	const char *s[] = { "aaaaaaaaaa", "bbbbb", "ccc" };     /* 10 5 3 */
	cr_assert_eq(fit(s, 3, -1), 3, "no maxchars: all");
	cr_assert_eq(fit(s, 3, 0), 0, "maxchars 0: none");
	cr_assert_eq(fit(s, 3, 2), 0, "the newest alone is too long");
	cr_assert_eq(fit(s, 3, 3), 1, "exactly the newest");
	cr_assert_eq(fit(s, 3, 7), 1, "not a part of the next");
	cr_assert_eq(fit(s, 3, 8), 2);
	cr_assert_eq(fit(s, 3, 17), 2, "one short of all");
	cr_assert_eq(fit(s, 3, 18), 3);
	cr_assert_eq(fit(s, 3, 1000), 3);
}

Test(mam_form, fit_stops_at_the_first_that_does_not_fit)
{
	/* an older short one after a long one is not sent: history is
	 * the last messages, without holes */
	const char *s[] = { "a", "bbbbbbbbbb", "cc" };
	cr_assert_eq(fit(s, 3, 5), 1);
}

Test(mam_form, fit_counts_characters_not_bytes)
{
	/* "é" is two bytes, one character; "€" three bytes */
	const char *s[] = { "\xc3\xa9\xc3\xa9", "\xe2\x82\xac" };
	cr_assert_eq(fit(s, 2, 1), 1, "one character: the euro sign");
	cr_assert_eq(fit(s, 2, 2), 1, "not the two e-acutes as well");
	cr_assert_eq(fit(s, 2, 3), 2, "three characters though 7 bytes");
}

/* ---- room queries --------------------------------------------------- */

static struct mam_req parse_with(const char *with, int show_jids)
{
	char text[512];
	const char *error;
	struct mam_req q;
	snprintf(text, sizeof(text), "<query xmlns='urn:xmpp:mam:2'><x "
		 "xmlns='jabber:x:data' type='submit'><field var='with'>"
		 "<value>%s</value></field></x></query>", with);
	struct xml_node *n = xml_parse(&arena, text, strlen(text), &error);
	cr_assert_not_null(n, "%s", error);
	memset(&q, 0, sizeof(q));
	cr_assert_eq(mam_form_parse(&arena, n, &lim, &q), MAM_OK);
	q.room_id = "42";
	q.show_jids = show_jids;
	mam_form_room_with(&q, room);
	return q;
}

Test(mam_form, room_with_occupant_jid_is_the_nick)
{
	struct mam_req q = parse_with("Room@Conference.Example.org/Third "
				      "Witch", 0);
	cr_assert_str_eq(q.with_col, "nick");
	cr_assert_str_eq(q.with_val, "Third Witch", "the nick as given");
	cr_assert(!q.with_none);
}

Test(mam_form, room_with_room_filters_nothing)
{
	struct mam_req q = parse_with(room, 0);
	cr_assert_null(q.with_col);
	cr_assert(!q.with_none);
}

Test(mam_form, room_with_real_jid_only_when_shown)
{
	struct mam_req q = parse_with("hag66@shakespeare.lit", 1);
	cr_assert_str_eq(q.with_col, "occupant_jid");
	cr_assert_str_eq(q.with_val, "hag66@shakespeare.lit");
	q = parse_with("hag66@shakespeare.lit", 0);
	cr_assert_null(q.with_col, "a real JID is no filter");
	cr_assert(q.with_none, "it matches nothing, not everything");
	q = parse_with("hag66@shakespeare.lit/pda", 1);
	cr_assert(q.with_none, "real JIDs are stored bare");
}

static char *sql_of(const struct mam_req *q, int *nparams)
{
	struct mam_sql s;
	cr_assert_eq(mam_form_sql(&s, q), 0);
	char *t = strdup(buf_head(&s.text));
	*nparams = s.n;
	cr_assert_str_eq(s.params[0], "42", "$1 is the room's id");
	mam_form_sql_free(&s);
	return t;
}

Test(mam_form, room_statement_reads_the_room_only)
{
	int n;
	struct mam_req q = parse_with("Room@Conference.Example.org/x", 0);
	char *t = sql_of(&q, &n);
	cr_assert_not_null(strstr(t, "FROM muc_messages WHERE room_id = "
				     "$1::bigint"), "%s", t);
	cr_assert_not_null(strstr(t, "nick = $4"), "%s", t);
	cr_assert_not_null(strstr(t, "occupant_jid"), "the real JID column");
	cr_assert_null(strstr(t, "mam_messages"), "%s", t);
	cr_assert_null(strstr(t, "account"), "%s", t);
	cr_assert_eq(n, 5, "room, lo, hi, nick, limit");
	free(t);
	q = parse_with("hag66@shakespeare.lit", 0);
	t = sql_of(&q, &n);
	cr_assert_not_null(strstr(t, "AND false"), "%s", t);
	free(t);
}

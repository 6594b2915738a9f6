/*
 * mam_form.h - the pure half of XEP-0313 queries and XEP-0441
 * preferences (mam_form.c): a <query/> or <prefs/> element in, a parsed
 * request (or the verdict that answers it) and the statement text and
 * parameters out; no database, no connection, no configuration beyond
 * the limits passed in.  mam_query.c and mam.c run what this builds;
 * fuzz/fuzz_mam.c drives it directly.
 */
#ifndef XMPPD_MAM_FORM_H
#define XMPPD_MAM_FORM_H

#include "arena.h"
#include "buf.h"
#include "xml.h"

enum mam_verdict {
	MAM_OK = 0,
	MAM_BAD,                /* bad-request (modify) */
	MAM_UNKNOWN_FIELD,      /* feature-not-implemented (cancel) */
	MAM_NOT_FOUND,          /* item-not-found (cancel) */
	MAM_TOO_MANY_IDS,       /* policy-violation (modify), with text */
};

/* What a query may ask: mam.max_page, mam.max_query_ids,
 * mam.max_scan_rows. */
struct mam_limits {
	unsigned max_page;
	unsigned max_ids;
	unsigned max_scan;
};

/* A query, parsed (strings and arrays in the arena given). */
struct mam_req {
	const char *bare;
	const char *user, *domain;
	const char *queryid;
	const char *with_bare, *with_full;
	long long lo, hi;       /* id > lo AND id < hi */
	unsigned max;           /* page size, 0..max_page */
	int backward;           /* RSM <before/>: the page ending there */
	int flip;               /* XEP-0313 <flip-page/> */
	int count_only;         /* RSM <max>0</max> */
	long long *ids;         /* the ids field (nids) */
	unsigned nids;
	long long *named;       /* every id the query names, distinct */
	unsigned nnamed;
	unsigned named_cap;
	unsigned seen;          /* form fields given (bits) */
	unsigned scan_cap;      /* rows a with_full query reads at most */
	/* A room's archive (muc_messages, muc_archive.c) instead of the
	 * account's: set by the caller after parsing, which maps `with`
	 * (mam_form_room_with); with_bare and with_full are then unused. */
	const char *room_id;    /* muc_rooms.id as decimal text; NULL: none */
	int show_jids;          /* the requester may see real JIDs */
	const char *with_col;   /* "nick" or "occupant_jid", or NULL */
	const char *with_val;   /* its value */
	int with_none;          /* `with` names no one the requester may see */
};

/* A decimal archive id (1..LLONG_MAX, digits only), or -1. */
long long mam_form_id(const char *s);
/* XEP-0082 DateTime as unix ms; 0, or -1 when it is not one. */
int mam_form_time(const char *s, long long *ms_r);

/* Parse the <query/> of an IQ set into q (zeroed by the caller, with
 * bare/user/domain set or not: parsing does not read them). */
enum mam_verdict mam_form_parse(struct arena *a, const struct xml_node *query,
				const struct mam_limits *lim,
				struct mam_req *q);

/* A room query's `with` (q->with_bare, q->with_full as parsed) mapped
 * onto the room's columns, for the room room_bare (prepared): the
 * room's own bare JID filters nothing; room_bare/NICK is that nick's
 * messages; another bare JID is the real JID of the sender only when
 * q->show_jids (else, and for another full JID, nothing matches: real
 * JIDs are stored bare, and a requester who may not see them learns
 * nothing from them). */
void mam_form_room_with(struct mam_req *q, const char *room_bare);

/* The statement for q: text and parameters (pointing into s and q).
 * Rows: (id, stanza) of the page, in index order, at most max + 1
 * (a room's: (id, stanza, occupant_jid));
 * (-1, n): how many of the named ids exist; (-2, n): the count of a
 * count-only query (at most scan_cap: XEP-0059 2.7 allows an
 * approximate count); (-3, n): the rows a with_full query read (n ==
 * scan_cap: it may have stopped before the end).
 * 0, or -1 on out-of-memory. */
#define MAM_SQL_PARAMS 12
struct mam_sql {
	struct buf text;
	const char *params[MAM_SQL_PARAMS];
	int n;
	char num[4][24];
	struct buf ids, named;
};
int mam_form_sql(struct mam_sql *s, const struct mam_req *q);
void mam_form_sql_free(struct mam_sql *s);

/* The history sent on entering a room (XEP-0045 section 7.2.14,
 * muc_archive.c) under maxchars (-1: no bound): how many of the n
 * stanzas (oldest first, lens their byte lengths) it sends, the newest
 * whose characters (UTF-8 code points: the XEP counts characters of the
 * whole stanzas) add up to at most maxchars; they are the last ones. */
unsigned mam_form_fit(const char *const *stanzas, const size_t *lens,
		      unsigned n, long maxchars);

/* A PostgreSQL array literal element, quoted, " and \ escaped (first:
 * no comma before it).  0 or -1. */
int mam_form_elem(struct buf *out, int first, const char *s, size_t n);

/* A <prefs/> set: *default_r (always, never or roster), the JIDs of
 * <always/> and <never/> as text[] literals in always and never, their
 * number in *njids_r.  0, or -1 (bad-request: no or a bad default, a
 * child that is not a <jid/> holding a JID). */
int mam_form_prefs(struct arena *a, const struct xml_node *prefs,
		   const char **default_r, struct buf *always,
		   struct buf *never, unsigned *njids_r);

/* Append the elements of array literal arr (PostgreSQL's text output or
 * what mam_form_prefs() writes) as <jid/> children of <name/>. */
void mam_form_prefs_list(struct buf *out, const char *name, const char *arr);

#endif

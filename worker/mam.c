/*
 * mam.c - XEP-0313 Message Archive Management (urn:xmpp:mam:2 and
 * #extended): archiving, XEP-0359 stanza ids, XEP-0441 preferences and
 * retention; the queries are in mam_query.c.
 *
 * What is archived (XEP-0313 section 6.1.1): messages of type chat or
 * normal (or none) with a <body/>, or with a XEP-0334 <store/> hint;
 * never errors, groupchat, headlines, chat states alone, messages with
 * a <no-store/> or <no-permanent-store/> hint, carbon copies (<sent/>,
 * <received/>; XEP-0280 <private/> only stops copies) or archive
 * results.  Each is archived for its sender (the stanza_in filter, for
 * every bound session; not for a message to the sender's own account,
 * which is archived once, as received) and for the recipient account
 * (the message_to_account hook in route.c, before delivery, carbons or
 * offline storage, so a message to an offline account is archived as
 * well, and every copy carries the same id).  The recipient's copy is
 * stamped <stanza-id xmlns='urn:xmpp:sid:0' id='ID' by='account'/>; the
 * sender's gets its own archive id the same way as it leaves the filter
 * (so that a sent carbon made later carries it), taken off again like
 * any stanza-id that claims to be by a JID of a domain we host: those
 * are removed from what clients send and from what reaches an account.
 *
 * Ids are made here, without asking the database: (unix ms << 21) |
 * (worker slot << 13) | counter (8192 a millisecond, then the next
 * millisecond is borrowed), as decimal text.  They grow with time, so
 * paging by id is index order and the <delay/> stamp is id >> 21; they
 * are unique across workers, and across restarts of a worker unless the
 * wall clock steps back past what it had handed out.
 *
 * Writes are batched: rows are queued in the worker (column arrays of one
 * INSERT ... SELECT FROM unnest(...)), a batch goes to PostgreSQL when it
 * has mam.batch_rows rows or 256 KB of stanzas, or at the end of the loop
 * turn once its first row has waited mam.batch_hold (10 ms), one at a time
 * on the worker's pipelined link (an archive query sends what waits
 * first, so it sees what this worker archived before it); a message is
 * never held for its archive row.  The database
 * applies the account's preferences and blocklist in that statement (a
 * stanza-id is stamped whether or not the preferences keep the row; the
 * id is never reused).
 * Failure policy: while PostgreSQL is down or slow the batches wait, in
 * order, and are sent again once it is back (a batch answered with an
 * SQL error is logged at error level with its row count and not retried:
 * it would fail again).  The rows a worker holds are bounded by
 * mam.queue_rows: past it a message is delivered but not archived, and
 * so are their bytes, by mam.queue_bytes (a burst of large messages
 * while the batches are written: the worker's memory stays bounded);
 * the count of those is logged at error level every 10 s.  Rows still
 * held when a worker is killed are lost (the messages were delivered);
 * a worker that stops waits for its batches up to shutdown_timeout.
 * Retention: worker 0 deletes rows older than mam.retention_days, 1000
 * at a time, one statement in flight, so the database is never blocked.
 * Rooms: the same batches write the rooms' archives (muc_messages, for
 * muc_archive.c: mam_room_add), a second target with its own batch being
 * filled and its own INSERT; both share the queue, its bounds
 * (mam.queue_rows, mam.queue_bytes), mam.batch_rows, mam.batch_hold, the
 * one statement in flight, the failure policy above and expiry (rows
 * older than muc.archive_retention_days, the same way).
 * Preferences name at most mam.max_prefs_jids JIDs (every archived row
 * is checked against them in the INSERT): a set naming more is refused
 * with <not-acceptable/>, the stored preferences unchanged.
 */
#include "worker.h"
#include "ext.h"
#include "iq.h"
#include "mam.h"
#include "mam_form.h"
#include "../db/db.h"
#include "jid.h"
#include "log.h"
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern const struct ext mam_ext;

/* Batches sent and not answered yet: one, of at most MAM_BATCH_BYTES,
 * so that the archive never holds much of the worker's pipeline (and of
 * db.max_queue_bytes) ahead of logins and offline storage; the next one
 * goes when it is answered.  An archive query first sends everything
 * waiting (mam_flush_writes), so that it sees what this worker
 * archived before it. */
#define MAM_INFLIGHT 1
/* A batch also closes at this many bytes of stanzas: one statement
 * on the worker's pipeline stays short, so the queries behind it
 * (logins, offline storage) do not wait long. */
#define MAM_BATCH_BYTES (256 * 1024)
/* The batch being filled goes at the end of a loop turn once its first
 * row has waited mam.batch_hold (or at once while the worker stops), not at
 * the end of every turn: at a few thousand messages a second a
 * statement then carries tens of rows instead of a handful, and the
 * statement's own cost (planning in PostgreSQL; the send, the answer
 * and their system calls in the worker) is shared by that many.  A
 * query sends what waits first, so its own worker's rows are always
 * seen; another worker's may be seen this much later. */
#define MAM_EXPIRE_ROWS 1000            /* rows per expiry statement */
#define MAM_EXPIRE_EVERY_MS 60000       /* when nothing was left */
#define MAM_EXPIRE_AGAIN_MS 100         /* when a full batch went */
#define MAM_LOG_EVERY_MS 10000
#define MAM_HINTS "urn:xmpp:hints"
#define MAM_CARBONS "urn:xmpp:carbons:2"

/* ---- ids ------------------------------------------------------------ */

static long long mam_last_ms;
static unsigned mam_counter;

static long long mam_real_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long mam_next_id(const struct worker *w)
{
	long long ms = mam_real_ms();
	if (ms <= mam_last_ms) {
		ms = mam_last_ms;
		if (++mam_counter >= 8192) {
			ms = ++mam_last_ms;
			mam_counter = 0;
		}
	} else {
		mam_last_ms = ms;
		mam_counter = 0;
	}
	return (ms << MAM_ID_MS_SHIFT) | ((long long)(w->slot & 0xff) << 13) |
	       mam_counter;
}

/* id as decimal text into buf (at least 21 bytes), NUL-terminated;
 * its length.  By hand, two digits a step: snprintf was a tenth of the
 * archive's cost. */
static size_t mam_id_text(long long id, char *buf)
{
	static const char digits[] =
		"00010203040506070809101112131415161718192021222324252627282930"
		"31323334353637383940414243444546474849505152535455565758596061"
		"62636465666768697071727374757677787980818283848586878889909192"
		"93949596979899";
	char tmp[24], *p = tmp + sizeof(tmp);
	unsigned long long v = (unsigned long long)id;
	if (id < 0)
		v = 0 - v;
	while (v >= 100) {
		unsigned k = (unsigned)(v % 100) * 2;
		v /= 100;
		*--p = digits[k + 1];
		*--p = digits[k];
	}
	if (v >= 10) {
		*--p = digits[v * 2 + 1];
		*--p = digits[v * 2];
	} else {
		*--p = (char)('0' + v);
	}
	if (id < 0)
		*--p = '-';
	size_t n = (size_t)(tmp + sizeof(tmp) - p);
	memcpy(buf, p, n);
	buf[n] = '\0';
	return n;
}

void mam_id_stamp(long long id, char *buf, size_t size)
{
	long long ms = id >> MAM_ID_MS_SHIFT;
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/* ---- the queue of rows ---------------------------------------------- */

enum {
	MAM_C_USER, MAM_C_DOMAIN, MAM_C_ID, MAM_C_WBARE, MAM_C_WFULL,
	MAM_C_OUT, MAM_C_STANZA, MAM_NCOLS
};
/* A room's row (muc_messages): its columns, in a batch of MAM_T_ROOM. */
enum {
	MAM_R_ROOM, MAM_R_ID, MAM_R_NICK, MAM_R_REAL, MAM_R_STANZA, MAM_R_NCOLS
};

/* What a batch writes: an account's archive rows or a room's.  Each
 * target fills its own batch (a batch is one INSERT into one table);
 * the batches of both wait in one queue, in order. */
enum mam_target {
	MAM_T_ACCOUNT = 0,
	MAM_T_ROOM,
	MAM_NTARGETS
};

/* One INSERT: its columns as PostgreSQL array literals. */
struct mam_batch {
	struct mam_batch *next;
	struct worker *w;
	enum mam_target target;
	struct buf col[MAM_NCOLS];      /* the target's first ncols used */
	unsigned rows;
	size_t bytes;           /* the rows' bytes in the columns */
	int closed;             /* "}" and NUL appended */
};

/* The account's id by a scalar subquery, an index probe per row (a join
 * was planned as a hash of the whole accounts table per batch), behind
 * OFFSET 0 so that it is evaluated once per row; the roster rule the
 * same way (an EXISTS there was planned as a hash of every listed roster
 * item).  Planning is most of the statement's cost at a few rows. */
static const char mam_insert_sql[] =
	"INSERT INTO mam_messages (account_id, id, with_bare, with_full, "
	"outgoing, stanza) SELECT r.a, r.id, r.wb, r.wf, r.o, r.s "
	"FROM (SELECT (SELECT a.id FROM accounts a WHERE a.username = r.u "
	"AND a.domain = r.d) AS a, r.id, r.wb, r.wf, r.o, r.s "
	"FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], "
	"$5::text[], $6::boolean[], $7::text[]) AS r(u, d, id, wb, wf, o, s) "
	"OFFSET 0) r "
	"LEFT JOIN mam_prefs p ON p.account_id = r.a "
	"WHERE r.a IS NOT NULL "
	"AND (r.o OR NOT EXISTS (SELECT 1 FROM blocklist b WHERE "
	"b.account_id = r.a AND b.jid IN (r.wf, r.wb, "
	"split_part(r.wb, '@', 2)))) "
	"AND (p.account_id IS NULL OR (NOT (r.wb = ANY(p.never) OR "
	"r.wf = ANY(p.never)) AND (r.wb = ANY(p.always) OR "
	"r.wf = ANY(p.always) OR p.default_mode = 'always' OR "
	"(p.default_mode = 'roster' AND COALESCE((SELECT i.listed AND "
	"NOT i.removed FROM roster_items i WHERE i.account_id = r.a AND "
	"i.contact = r.wb), false))))) "
	"ON CONFLICT DO NOTHING";

/* A room's rows; a room destroyed (its rows deleted with it) before its
 * batch is written loses them here rather than failing the statement,
 * which would lose every other room's rows in the batch too. */
static const char mam_room_insert_sql[] =
	"INSERT INTO muc_messages (room_id, id, nick, occupant_jid, stanza) "
	"SELECT r.room, r.id, r.n, r.j, r.s FROM unnest($1::bigint[], "
	"$2::bigint[], $3::text[], $4::text[], $5::text[]) "
	"AS r(room, id, n, j, s) "
	"WHERE EXISTS (SELECT 1 FROM muc_rooms m WHERE m.id = r.room) "
	"ON CONFLICT DO NOTHING";

static const struct {
	const char *sql;
	int ncols;
	int stanza_col;         /* closes the batch at MAM_BATCH_BYTES */
} mam_targets[MAM_NTARGETS] = {
	[MAM_T_ACCOUNT] = { mam_insert_sql, MAM_NCOLS, MAM_C_STANZA },
	[MAM_T_ROOM] = { mam_room_insert_sql, MAM_R_NCOLS, MAM_R_STANZA },
};

/* The batch being filled of each target. */
static struct mam_batch *mam_fill[MAM_NTARGETS];
static struct mam_batch *mam_ready, *mam_ready_tail;   /* to send */
static unsigned mam_inflight;
static unsigned long mam_held;              /* rows in all of them */
static uint64_t mam_held_bytes;             /* their bytes (mam.queue_bytes) */
static unsigned long mam_dropped;           /* since the last log line */
static int64_t mam_dropped_logged_ms, mam_waiting_logged_ms;
static struct arena mam_scratch;            /* stanza-ids, one turn */
static int mam_scratch_ready;
/* One answered batch kept, its columns emptied but not their memory,
 * for the next one: no growing and copying the columns again for every
 * batch (at 4,000 msg/s a batch is sent every loop turn). */
static struct mam_batch *mam_spare;
static unsigned long mam_batch_seq;         /* the account batch's */
static int64_t mam_fill_since[MAM_NTARGETS];/* their first row */

static void mam_batch_free(struct mam_batch *b)
{
	size_t cap = 0;
	for (int i = 0; i < MAM_NCOLS; i++)
		cap += b->col[i].cap;
	/* a batch a burst of large messages grew is not kept */
	if (mam_spare == NULL && cap <= 4 * MAM_BATCH_BYTES) {
		for (int i = 0; i < MAM_NCOLS; i++) {
			b->col[i].off = 0;
			b->col[i].len = 1;          /* the "{" stays */
		}
		b->rows = 0;
		b->bytes = 0;
		b->closed = 0;
		b->next = NULL;
		mam_spare = b;
		return;
	}
	for (int i = 0; i < MAM_NCOLS; i++)
		buf_free(&b->col[i]);
	free(b);
}

static struct mam_batch *mam_batch_new(struct worker *w,
					enum mam_target t)
{
	struct mam_batch *b = mam_spare;
	if (t == MAM_T_ACCOUNT)
		mam_batch_seq++;        /* (mam_last and mam_text name it) */
	if (b != NULL) {
		mam_spare = NULL;
		b->w = w;
		b->target = t;
		return b;
	}
	if ((b = calloc(1, sizeof(*b))) == NULL)
		return NULL;
	b->w = w;
	b->target = t;
	for (int i = 0; i < MAM_NCOLS; i++) {
		buf_init(&b->col[i], 0);
		if (buf_append(&b->col[i], "{", 1) < 0) {
			for (int j = 0; j <= i; j++)
				buf_free(&b->col[j]);
			free(b);
			return NULL;
		}
	}
	return b;
}

static void mam_ready_push(struct mam_batch *b, int front)
{
	if (front) {
		b->next = mam_ready;
		mam_ready = b;
		if (mam_ready_tail == NULL)
			mam_ready_tail = b;
		return;
	}
	b->next = NULL;
	if (mam_ready_tail != NULL)
		mam_ready_tail->next = b;
	else
		mam_ready = b;
	mam_ready_tail = b;
}

/* The first " or \ in [p, end), or NULL. */
static const char *mam_special(const char *p, const char *end)
{
	const char *q = memchr(p, '"', (size_t)(end - p));
	const char *b = memchr(p, '\\', (size_t)((q ? q : end) - p));
	return b != NULL ? b : q;
}

/* The bytes of col from 'from' to its end, made the inside of a quoted
 * array element: " and \ escaped with \, in place (memchr finds none
 * in most stanzas, and then nothing moves). */
static int mam_escape_tail(struct buf *col, size_t from)
{
	const char *end = col->data + col->len;
	size_t k = 0;
	for (const char *p = col->data + from;
	     (p = mam_special(p, end)) != NULL; p++)
		k++;
	if (k == 0)
		return 0;
	if (buf_reserve(col, k) < 0)
		return -1;
	char *src = col->data + col->len, *dst = src + k;
	col->len += k;
	while (dst > src) {     /* back to front, until the first one */
		char ch = *--src;
		*--dst = ch;
		if (ch == '"' || ch == '\\')
			*--dst = '\\';
	}
	return 0;
}

/* Opens an element of an array literal: "," unless first, and '"'. */
static int mam_elem_open(struct buf *col, unsigned rows)
{
	if (buf_reserve(col, 2) < 0)
		return -1;
	if (rows > 0)
		col->data[col->len++] = ',';
	col->data[col->len++] = '"';
	return 0;
}

/* One element of an array literal: quoted, with " and \ escaped. */
static int mam_elem(struct buf *col, unsigned rows, const char *s, size_t n)
{
	if (buf_reserve(col, n + 3) < 0)
		return -1;
	if (rows > 0)
		col->data[col->len++] = ',';
	col->data[col->len++] = '"';
	size_t from = col->len;
	memcpy(col->data + col->len, s, n);
	col->len += n;
	if (mam_escape_tail(col, from) < 0 || buf_reserve(col, 1) < 0)
		return -1;
	col->data[col->len++] = '"';
	return 0;
}

/* An element that needs no quoting (a number, t or f). */
static int mam_elem_bare(struct buf *col, unsigned rows, const char *s,
			 size_t n)
{
	if (buf_reserve(col, n + 1) < 0)
		return -1;
	if (rows > 0)
		col->data[col->len++] = ',';
	memcpy(col->data + col->len, s, n);
	col->len += n;
	return 0;
}

/* A message is archived twice, for its sender (mam_stanza_in) and for
 * its recipient (mam_to_account, later in the same call chain), and the
 * two texts differ only in their last child, the stanza-id.  The
 * sender's row is written as the message without its stanza-id, then
 * the stanza-id and the end tag; what it wrote before the stanza-id is
 * remembered here, with what the message looked like, and the
 * recipient's row copies those bytes instead of serializing the
 * message again when the message is still the same: the same node,
 * its stanza-id (and nothing else) taken off by mam_strip_forged, the
 * same attributes and other children, and the row still in the batch
 * being filled.  Anything else, and the message is serialized again. */
#define MAM_LAST_MAX 8          /* attributes, children remembered */
/* What a message looked like: its attributes and its children but sid. */
struct mam_seen {
	const struct xml_node *st, *sid;
	unsigned nattrs, nkids;
	const char *attr[MAM_LAST_MAX][2];
	const struct xml_node *kid[MAM_LAST_MAX];
};
static struct {
	struct mam_seen seen;
	unsigned long batch;            /* mam_batch_seq */
	size_t from, pe;                /* the escaped text before the sid */
	size_t plen;                    /* the same, not escaped */
} mam_last;
/* The recipient's row just written, when its text needed no escaping:
 * the bytes route.c would write for delivery (mam_message_text). */
static struct {
	struct mam_seen seen;
	unsigned long batch;
	size_t from, len;
} mam_text;

/* Whether st looks as m remembers it: with its stanza-id m->sid as the
 * last child (with_sid), or without it. */
static int mam_seen_same(const struct mam_seen *m,
			 const struct xml_node *st, int with_sid)
{
	unsigned n = 0;
	if (m->st != st)
		return 0;
	for (const struct xml_attr *a = st->attrs; a != NULL; a = a->next, n++)
		if (n >= m->nattrs || a->ns[0] != '\0' ||
		    strcmp(a->name, m->attr[n][0]) != 0 ||
		    strcmp(a->value, m->attr[n][1]) != 0)
			return 0;
	if (n != m->nattrs)
		return 0;
	n = 0;
	const struct xml_node *k = st->children;
	for (; k != NULL && n < m->nkids; k = k->next, n++)
		if (k != m->kid[n])
			return 0;
	if (n != m->nkids)
		return 0;
	if (with_sid)
		return k == m->sid && k->next == NULL;
	return k == NULL;
}

/* Remember st (its stanza-id sid, the last child) in m; m->st NULL when
 * it has too many attributes or children to remember. */
static void mam_seen_keep(struct mam_seen *m, const struct xml_node *st,
			  const struct xml_node *sid)
{
	unsigned n = 0;
	m->st = NULL;
	for (const struct xml_attr *a = st->attrs; a != NULL; a = a->next) {
		if (n >= MAM_LAST_MAX || a->ns[0] != '\0')
			return;
		m->attr[n][0] = a->name;
		m->attr[n++][1] = a->value;
	}
	m->nattrs = n;
	n = 0;
	for (const struct xml_node *k = st->children; k != sid; k = k->next) {
		if (n >= MAM_LAST_MAX)
			return;
		m->kid[n++] = k;
	}
	m->nkids = n;
	m->st = st;
	m->sid = sid;
}

/* Whether st is what mam_last remembers, once its stanza-id is off. */
static int mam_last_same(const struct xml_node *st)
{
	return mam_fill[MAM_T_ACCOUNT] != NULL &&
	       mam_last.batch == mam_batch_seq &&
	       mam_seen_same(&mam_last.seen, st, 0);
}

/* ext.h message_text: the recipient's row of st, if st is unchanged
 * and the row still in the batch being filled. */
static const char *mam_message_text(const struct xml_node *st,
				    size_t *len_r)
{
	const struct mam_batch *b = mam_fill[MAM_T_ACCOUNT];
	if (mam_text.seen.st != st || b == NULL ||
	    mam_text.batch != mam_batch_seq ||
	    !mam_seen_same(&mam_text.seen, st, 1))
		return NULL;
	*len_r = mam_text.len;
	return b->col[MAM_C_STANZA].data + mam_text.from;
}

/* The stanza column's element for st, whose last child is the stanza-id
 * just stamped (sid): written as st without it, then the stanza-id and
 * st's end tag (the same bytes as xml_serialize(st), since a child's
 * default namespace is st's), escaped in place.  reuse: the part before
 * the stanza-id copied from mam_last's row.  keep: remembered for the
 * recipient's row; text: remembered for route.c (mam_text) when it
 * needed no escaping.  0, -1 out of memory, -2 too large. */
static int mam_put_stanza(struct worker *w, struct buf *sc, unsigned rows,
			  struct xml_node *st, int reuse, int keep, int text)
{
	struct xml_node *sid = st->last_child, *prev = NULL;
	size_t from, pe, plen, clen = strlen(st->name) + 3, slen;
	if (mam_elem_open(sc, rows) < 0)
		return -1;
	from = sc->len;
	if (reuse) {
		size_t n = mam_last.pe - mam_last.from;
		if (buf_reserve(sc, n) < 0)
			return -1;
		memcpy(sc->data + sc->len, sc->data + mam_last.from, n);
		sc->len += n;
		plen = mam_last.plen;
	} else {
		for (struct xml_node *k = st->children; k != sid; k = k->next)
			prev = k;
		if (prev == NULL)
			return -2;      /* never: a body or a hint is there */
		prev->next = NULL;      /* the stanza-id off, for a moment */
		st->last_child = prev;
		int rc = xml_serialize(sc, st, NS_CLIENT);
		prev->next = sid;
		st->last_child = sid;
		if (rc < 0)
			return -2;
		plen = sc->len - from - clen;   /* without "</message>" */
		sc->len -= clen;
		if (mam_escape_tail(sc, from) < 0)
			return -1;
	}
	pe = sc->len;
	if (xml_serialize(sc, sid, st->ns) < 0)
		return -2;
	if (buf_reserve(sc, clen) < 0)
		return -1;
	sc->data[sc->len++] = '<';
	sc->data[sc->len++] = '/';
	memcpy(sc->data + sc->len, st->name, clen - 3);
	sc->len += clen - 3;
	sc->data[sc->len++] = '>';
	slen = sc->len - pe;
	if (plen + slen > xml_out_cap(w->cfg->max_stanza_size))
		return -2;
	if (mam_escape_tail(sc, pe) < 0)
		return -1;
	size_t len = sc->len - from;
	if (buf_append(sc, "\"", 1) < 0)
		return -1;
	if (keep) {
		mam_seen_keep(&mam_last.seen, st, sid);
		mam_last.batch = mam_batch_seq;
		mam_last.from = from;
		mam_last.pe = pe;
		mam_last.plen = plen;
	}
	if (text && len == plen + slen) {       /* nothing escaped */
		mam_seen_keep(&mam_text.seen, st, sid);
		mam_text.batch = mam_batch_seq;
		mam_text.from = from;
		mam_text.len = len;
	}
	return 0;
}

static void mam_drop(struct worker *w, const char *why)
{
	mam_dropped++;
	METRIC_INC(w->stats->mam_dropped);
	int64_t now = w->now_ms;
	if (now - mam_dropped_logged_ms >= MAM_LOG_EVERY_MS) {
		log_error("archive: %lu messages delivered but not archived "
			  "(%s; %lu rows waiting for PostgreSQL, "
			  "mam.queue_rows = %u)", mam_dropped, why, mam_held,
			  w->cfg->mam_queue_rows);
		mam_dropped = 0;
		mam_dropped_logged_ms = now;
	}
}

static void mam_send_ready(struct worker *w);

/* The batch a row of target t goes into, with its columns' lengths in
 * mark (to undo the row); NULL when the row is not archived (the
 * bounds, or no memory: counted by mam_drop). */
static struct mam_batch *mam_row_begin(struct worker *w, enum mam_target t,
				       size_t *mark)
{
	if (mam_held >= w->cfg->mam_queue_rows) {
		mam_drop(w, "too many waiting");
		return NULL;
	}
	if (mam_held_bytes >= w->cfg->mam_queue_bytes) {
		mam_drop(w, "mam.queue_bytes waiting");
		return NULL;
	}
	if (mam_fill[t] == NULL && (mam_fill[t] = mam_batch_new(w, t)) == NULL) {
		mam_drop(w, "out of memory");
		return NULL;
	}
	struct mam_batch *b = mam_fill[t];
	for (int i = 0; i < MAM_NCOLS; i++)
		mark[i] = b->col[i].len;
	return b;
}

/* A row that could not be written whole: undone (rc -2: too large). */
static void mam_row_undo(struct worker *w, struct mam_batch *b,
			 const size_t *mark, int rc)
{
	for (int i = 0; i < MAM_NCOLS; i++)
		b->col[i].len = mark[i];
	mam_drop(w, rc == -2 ? "too large" : "out of memory");
}

/* The row is in b: counted; b goes when it is full. */
static void mam_row_done(struct worker *w, struct mam_batch *b,
			 const size_t *mark)
{
	enum mam_target t = b->target;
	if (b->rows++ == 0)
		mam_fill_since[t] = w->now_ms;
	mam_held++;
	size_t added = 0;
	for (int i = 0; i < MAM_NCOLS; i++)
		added += b->col[i].len - mark[i];
	b->bytes += added;
	mam_held_bytes += added;
	if (b->rows >= w->cfg->mam_batch_rows ||
	    b->col[mam_targets[t].stanza_col].len >= MAM_BATCH_BYTES) {
		mam_fill[t] = NULL;
		mam_ready_push(b, 0);
		mam_send_ready(w);
	}
}

/* Queue one archive row for account bare: st serialized (jabber:client)
 * straight into the stanza column, escaped there in place
 * (mam_put_stanza; reuse and keep are its; a recipient's row is
 * offered to route.c as the delivery text, mam_message_text). */
static void mam_add_row(struct worker *w, const char *bare,
			const char *idtext, size_t idlen,
			const char *with_bare, const char *with_full,
			int outgoing, struct xml_node *st, int reuse, int keep)
{
	const char *at = strchr(bare, '@');
	size_t mark[MAM_NCOLS];
	if (at == NULL)
		return;
	struct mam_batch *b = mam_row_begin(w, MAM_T_ACCOUNT, mark);
	if (b == NULL)
		return;
	unsigned r = b->rows;
	int rc = 0;
	if (mam_elem(&b->col[MAM_C_USER], r, bare, (size_t)(at - bare)) < 0 ||
	    mam_elem(&b->col[MAM_C_DOMAIN], r, at + 1, strlen(at + 1)) < 0 ||
	    mam_elem_bare(&b->col[MAM_C_ID], r, idtext, idlen) < 0 ||
	    mam_elem(&b->col[MAM_C_WBARE], r, with_bare, strlen(with_bare)) < 0 ||
	    mam_elem(&b->col[MAM_C_WFULL], r, with_full, strlen(with_full)) < 0 ||
	    mam_elem_bare(&b->col[MAM_C_OUT], r, outgoing ? "t" : "f", 1) < 0 ||
	    (rc = mam_put_stanza(w, &b->col[MAM_C_STANZA], r, st, reuse,
				 keep, !outgoing)) < 0) {
		mam_row_undo(w, b, mark, rc);
		return;
	}
	mam_row_done(w, b, mark);
}

static void mam_written(void *ctx, const PGresult *res, const char *error)
{
	struct mam_batch *b = ctx;
	struct worker *w = b->w;
	mam_inflight--;
	if (res != NULL) {
		/* rows the preferences or the blocklist left out are not
		 * counted: what was inserted is */
		METRIC_ADD(w->stats->mam_archived,
			   strtoull(PQcmdTuples((PGresult *)res), NULL, 10));
		mam_held -= b->rows;
		mam_held_bytes -= b->bytes;
		METRIC_SET(w->stats->mam_waiting, mam_held);
		mam_batch_free(b);
		mam_send_ready(w);      /* the next one, if any waits */
		return;
	}
	if (w->db != NULL && db_is_up(w->db)) {
		/* PostgreSQL refused the statement: it would again */
		log_error("archive: %u messages not archived: %s", b->rows,
			  error);
		METRIC_ADD(w->stats->mam_dropped, b->rows);
		mam_held -= b->rows;
		mam_held_bytes -= b->bytes;
		METRIC_SET(w->stats->mam_waiting, mam_held);
		mam_batch_free(b);
		return;
	}
	log_info("archive: %u messages wait for PostgreSQL (%s)", b->rows,
		 error);
	mam_ready_push(b, 1);       /* again, first, once it is back */
}

static void mam_send_batches(struct worker *w, int all)
{
	while (mam_ready != NULL && (all || mam_inflight < MAM_INFLIGHT) &&
	       w->db != NULL) {
		struct mam_batch *b = mam_ready;
		int n = mam_targets[b->target].ncols;
		if (!b->closed) {
			for (int i = 0; i < n; i++)
				if (buf_append(&b->col[i], "}", 2) < 0)
					return;     /* out of memory: later */
			b->closed = 1;
		}
		const char *params[MAM_NCOLS];
		for (int i = 0; i < n; i++)
			params[i] = buf_head(&b->col[i]);
		if (db_query(w->db, mam_targets[b->target].sql, n, params,
			     NULL, NULL, 0, mam_written, b) < 0)
			return;     /* link down or queue full: next turn */
		mam_ready = b->next;
		if (mam_ready == NULL)
			mam_ready_tail = NULL;
		mam_inflight++;
	}
}

static void mam_send_ready(struct worker *w)
{
	mam_send_batches(w, 0);
}

void mam_flush_writes(struct worker *w)
{
	for (int t = 0; t < MAM_NTARGETS; t++)
		if (mam_fill[t] != NULL && mam_fill[t]->rows > 0) {
			mam_ready_push(mam_fill[t], 0);
			mam_fill[t] = NULL;
		}
	mam_send_batches(w, 1);
}

/* ---- what is archived ----------------------------------------------- */

/* What a message carries decides, whatever its type: a <body/> or a
 * <store/> hint, and no <no-store/>, <no-permanent-store/> hint, carbon
 * copy or archive result. */
static int mam_content_archivable(const struct xml_node *st)
{
	int body = 0, store = 0;
	for (const struct xml_node *e = xml_first_element(st); e != NULL;
	     e = xml_next_element(e)) {
		if (strcmp(e->name, "body") == 0 && strcmp(e->ns, NS_CLIENT) == 0)
			body = 1;
		else if (strcmp(e->ns, MAM_HINTS) == 0) {
			if (strcmp(e->name, "no-store") == 0 ||
			    strcmp(e->name, "no-permanent-store") == 0)
				return 0;
			if (strcmp(e->name, "store") == 0)
				store = 1;
		} else if (xml_is(e, MAM_CARBONS, "sent") ||
			   xml_is(e, MAM_CARBONS, "received") ||
			   xml_is(e, NS_MAM, "result")) {
			return 0;       /* a copy (<private/> is not one) */
		}
	}
	return body || store;
}

static int mam_archivable(const struct xml_node *st)
{
	const char *type = xml_attr(st, "type");
	if (type != NULL && strcmp(type, "chat") != 0 &&
	    strcmp(type, "normal") != 0)
		return 0;
	return mam_content_archivable(st);
}

int mam_room_archivable(const struct xml_node *st)
{
	const char *type = xml_attr(st, "type");
	return type != NULL && strcmp(type, "groupchat") == 0 &&
	       mam_content_archivable(st);
}

static struct arena *mam_arena(void)
{
	if (!mam_scratch_ready) {
		arena_init(&mam_scratch, 4096);
		mam_scratch_ready = 1;
	}
	return &mam_scratch;
}

/* XEP-0359 section 4: a stanza-id claiming to be by one of our JIDs was
 * not put there by us: removed.  1 when what was removed is
 * mam_last.seen.sid, and nothing else.  (XEP-0280 <private/> on a
 * message to an account was taken off before, by route.c.) */
static int mam_strip_forged(struct worker *w, struct xml_node *st)
{
	struct xml_node *prev = NULL, *n = st->children;
	int last = 0, other = 0;
	while (n != NULL) {
		struct xml_node *next = n->next;
		const char *by = NULL, *error;
		struct jid j;
		/* (ours, stamped by mam_stanza_in: by one of our accounts,
		 * known without parsing it again) */
		if (n->name != NULL && xml_is(n, NS_SID, "stanza-id") &&
		    (n == mam_last.seen.sid ||
		     (by = xml_attr(n, "by")) == NULL ||
		     jid_parse(mam_arena(), by, &j, &error) < 0 ||
		     stream_hosted(w, j.domain))) {
			xml_unlink_child(st, prev, n);
			if (n == mam_last.seen.sid) {
				last = 1;
			} else {
				other = 1;
				log_debug("archive: stanza-id by '%s' removed",
					  by ? by : "");
			}
		} else {
			prev = n;
		}
		n = next;
	}
	return last && !other;
}

/* The bare part of jid in the scratch arena. */
static const char *mam_bare_of(const char *jid)
{
	return arena_strndup(mam_arena(), jid, strcspn(jid, "/"));
}

/* Add <stanza-id id by/> as st's last child (nodes in the scratch
 * arena, which lives until the end of the loop turn); idtext is id as
 * text, for the row too. */
static int mam_stamp(struct worker *w, struct xml_node *st, long long id,
		     const char *by, char *idtext, size_t *idlen_r)
{
	struct arena *a = mam_arena();
	*idlen_r = mam_id_text(id, idtext);
	struct xml_node *sid = xml_add_child(a, st, NS_SID, "stanza-id");
	if (sid == NULL || xml_set_attr(a, sid, "id",
					arena_strdup(a, idtext)) < 0 ||
	    xml_set_attr(a, sid, "by", arena_strdup(a, by)) < 0) {
		mam_drop(w, "out of memory");
		return -1;
	}
	return 0;
}

/* The stanza-id mam_stamp just added (st's last child) taken off: the
 * row it names was not archived. */
static void mam_unstamp(struct xml_node *st)
{
	struct xml_node *prev = NULL, *sid = st->last_child;
	if (sid == NULL || !xml_is(sid, NS_SID, "stanza-id"))
		return;
	for (struct xml_node *k = st->children; k != sid; k = k->next)
		prev = k;
	xml_unlink_child(st, prev, sid);
}

/* Sender side: a message from one of our sessions. */
static int mam_stanza_in(struct conn *c, struct xml_node *st)
{
	const char *error;
	struct jid j;
	if (strcmp(st->name, "message") != 0)
		return 0;
	mam_last.seen.st = NULL;
	mam_strip_forged(c->w, st);
	if (!mam_archivable(st))
		return 0;
	const char *own = mam_bare_of(c->jid);
	const char *to = xml_attr(st, "to");
	if (own == NULL)
		return 0;
	if (to == NULL)
		return 0;       /* to the sender's own account: archived there */
	if (jid_parse(mam_arena(), to, &j, &error) < 0)
		return 0;       /* answered jid-malformed by route.c */
	if (j.local == NULL && stream_hosted(c->w, j.domain))
		return 0;       /* to the server itself: not a conversation */
	const char *with_bare = jid_bare(mam_arena(), &j);
	if (with_bare == NULL || strcmp(with_bare, own) == 0)
		return 0;       /* archived once, as received */
	/* The sender's archive id on the message as it goes on, so that a
	 * sent carbon (made after this filter) names it too; it is taken
	 * off again before the message reaches an account of ours. */
	char idtext[24];
	size_t idlen;
	if (mam_stamp(c->w, st, mam_next_id(c->w), own, idtext, &idlen) < 0)
		return 0;
	mam_add_row(c->w, own, idtext, idlen, with_bare, to, 1, st, 0,
		    strcmp(st->ns, NS_CLIENT) == 0);
	return 0;
}

/* Recipient side: a message reaching the account bare (route.c). */
static void mam_to_account(struct worker *w, struct xml_node *st,
			   const char *bare)
{
	int reuse = mam_strip_forged(w, st) && mam_last_same(st);
	mam_last.seen.st = NULL;
	mam_text.seen.st = NULL;
	const char *from = xml_attr(st, "from");
	if (from == NULL || !mam_archivable(st))
		return;
	char idtext[24];
	size_t idlen;
	const char *with_bare = mam_bare_of(from);
	if (with_bare == NULL ||
	    mam_stamp(w, st, mam_next_id(w), bare, idtext, &idlen) < 0)
		return;
	mam_add_row(w, bare, idtext, idlen, with_bare, from, 0, st, reuse, 0);
}

/* ---- rooms (muc_archive.c) ----------------------------------------- */

/* st whole, as the stanza column's element of a room's row: serialized
 * (jabber:client) without its 'to' (the row is the message as every
 * occupant gets it), escaped in place.  0, -1 out of memory, -2 too
 * large. */
static int mam_put_whole(struct worker *w, struct buf *sc, unsigned rows,
			 struct xml_node *st)
{
	struct xml_attr **link = &st->attrs, *to = NULL;
	for (; *link != NULL; link = &(*link)->next)
		if ((*link)->ns[0] == '\0' && strcmp((*link)->name, "to") == 0) {
			to = *link;
			*link = to->next;       /* off for a moment */
			break;
		}
	if (mam_elem_open(sc, rows) < 0) {
		if (to != NULL)
			*link = to;
		return -1;
	}
	size_t from = sc->len;
	int rc = xml_serialize(sc, st, NS_CLIENT);
	if (to != NULL)
		*link = to;
	if (rc < 0 || sc->len - from > xml_out_cap(w->cfg->max_stanza_size))
		return -2;
	if (mam_escape_tail(sc, from) < 0 || buf_append(sc, "\"", 1) < 0)
		return -1;
	return 0;
}

int mam_room_add(struct worker *w, long long room_id, const char *room_bare,
		 const char *nick, const char *real_bare, struct xml_node *st)
{
	char idtext[24], roomtext[24];
	size_t idlen, mark[MAM_NCOLS];
	struct mam_batch *b = mam_row_begin(w, MAM_T_ROOM, mark);
	if (b == NULL)
		return -1;
	/* the row's place in the batch is taken before the id is: a
	 * message not archived gets no stanza-id claiming it is */
	if (mam_stamp(w, st, mam_next_id(w), room_bare, idtext, &idlen) < 0)
		return -1;
	size_t roomlen = mam_id_text(room_id, roomtext);
	unsigned r = b->rows;
	int rc = 0;
	if (mam_elem_bare(&b->col[MAM_R_ROOM], r, roomtext, roomlen) < 0 ||
	    mam_elem_bare(&b->col[MAM_R_ID], r, idtext, idlen) < 0 ||
	    mam_elem(&b->col[MAM_R_NICK], r, nick, strlen(nick)) < 0 ||
	    mam_elem(&b->col[MAM_R_REAL], r, real_bare, strlen(real_bare)) < 0 ||
	    (rc = mam_put_whole(w, &b->col[MAM_R_STANZA], r, st)) < 0) {
		mam_row_undo(w, b, mark, rc);
		mam_unstamp(st);
		return -1;
	}
	mam_row_done(w, b, mark);
	return 0;
}

/* ---- retention ------------------------------------------------------ */

/* Each archive's table expires on its own schedule, one statement in
 * flight for both. */
static const struct {
	const char *sql;
	const char *what;       /* for the log */
} mam_expiry[MAM_NTARGETS] = {
	[MAM_T_ACCOUNT] = {
		"WITH d AS (SELECT account_id, id FROM mam_messages "
		"WHERE id < $1::bigint LIMIT $2::int) "
		"DELETE FROM mam_messages m USING d "
		"WHERE m.account_id = d.account_id AND m.id = d.id",
		"archived messages" },
	[MAM_T_ROOM] = {
		"WITH d AS (SELECT room_id, id FROM muc_messages "
		"WHERE id < $1::bigint LIMIT $2::int) "
		"DELETE FROM muc_messages m USING d "
		"WHERE m.room_id = d.room_id AND m.id = d.id",
		"room messages" },
};
static int mam_expiring;
static int64_t mam_expire_next_ms[MAM_NTARGETS];
/* The callback's context: the worker and which table. */
static struct mam_expiry_ctx {
	struct worker *w;
	enum mam_target t;
} mam_expiry_ctx[MAM_NTARGETS];

static unsigned mam_retention_days(const struct worker *w, enum mam_target t)
{
	return t == MAM_T_ROOM ? w->cfg->muc_archive_retention_days :
				 w->cfg->mam_retention_days;
}

static void mam_expired(void *ctx, const PGresult *res, const char *error)
{
	struct mam_expiry_ctx *x = ctx;
	struct worker *w = x->w;
	mam_expiring = 0;
	if (res == NULL) {
		log_warn("archive expiry: %s (tried again in a minute)", error);
		mam_expire_next_ms[x->t] = w->now_ms + MAM_EXPIRE_EVERY_MS;
		return;
	}
	long n = strtol(PQcmdTuples((PGresult *)res), NULL, 10);
	if (n > 0)
		log_info("archive expiry: %ld %s older than %u days deleted",
			 n, mam_expiry[x->t].what, mam_retention_days(w, x->t));
	mam_expire_next_ms[x->t] = w->now_ms + (n >= MAM_EXPIRE_ROWS ?
		MAM_EXPIRE_AGAIN_MS : MAM_EXPIRE_EVERY_MS);
}

/* Send the expiry statement of t if it is due: -1 sent (or nothing to
 * expire), else ms until it is. */
static int mam_expire_one(struct worker *w, enum mam_target t, int64_t now)
{
	char cutoff[24], rows[16];
	unsigned days = mam_retention_days(w, t);
	if (days == 0)
		return -1;
	if (now < mam_expire_next_ms[t])
		return (int)(mam_expire_next_ms[t] - now);
	long long ms = mam_real_ms() - (long long)days * 86400000LL;
	if (ms < 0)
		ms = 0;
	snprintf(cutoff, sizeof(cutoff), "%lld", ms << MAM_ID_MS_SHIFT);
	snprintf(rows, sizeof(rows), "%d", MAM_EXPIRE_ROWS);
	const char *params[2] = { cutoff, rows };
	mam_expiry_ctx[t] = (struct mam_expiry_ctx){ w, t };
	if (db_query(w->db, mam_expiry[t].sql, 2, params, NULL, NULL, 0,
		     mam_expired, &mam_expiry_ctx[t]) < 0) {
		mam_expire_next_ms[t] = now + 1000;
		return 1000;
	}
	mam_expiring = 1;
	return -1;
}

static int mam_expire(struct worker *w, int64_t now)
{
	int next = -1;
	if (w->slot != 0 || w->db == NULL || w->stopping)
		return -1;
	for (int t = 0; t < MAM_NTARGETS && !mam_expiring; t++) {
		int d = mam_expire_one(w, (enum mam_target)t, now);
		if (d >= 0 && (next < 0 || d < next))
			next = d;
	}
	return mam_expiring ? -1 : next;
}

/* ---- the loop ------------------------------------------------------- */

static int mam_loop_turn(struct worker *w, int64_t now)
{
	mam_last.seen.st = NULL;
	mam_last.seen.sid = NULL;
	mam_text.seen.st = NULL;
	if (mam_scratch_ready)
		arena_reset(&mam_scratch);
	/* what was archived goes once its first row waited mam.batch_hold,
	 * unless a batch is already waiting (the link is down or the last
	 * batch not answered yet): then this one grows up to its size */
	int hold = -1;
	for (int t = 0; t < MAM_NTARGETS; t++) {
		struct mam_batch *b = mam_fill[t];
		if (b == NULL || b->rows == 0 || mam_ready != NULL ||
		    mam_inflight >= MAM_INFLIGHT)
			continue;
		int64_t age = now - mam_fill_since[t];
		int64_t hold_ms = (int64_t)w->cfg->mam_batch_hold;
		if (age >= hold_ms || age < 0 || w->stopping) {
			mam_ready_push(b, 0);
			mam_fill[t] = NULL;
		} else if (hold < 0 || hold_ms - age < hold) {
			hold = (int)(hold_ms - age);
		}
	}
	mam_send_ready(w);
	METRIC_SET(w->stats->mam_waiting, mam_held);
	/* rows wait: a batch is queued behind another, or the link is down
	 * (the batch sent may sit in the database layer's queue) */
	int waiting = mam_ready != NULL ||
		(mam_held > 0 && (w->db == NULL || !db_is_up(w->db)));
	if (waiting && now - mam_waiting_logged_ms >= MAM_LOG_EVERY_MS) {
		mam_waiting_logged_ms = now;
		log_warn("archive: %lu messages wait for PostgreSQL "
			 "(mam.queue_rows = %u)", mam_held,
			 w->cfg->mam_queue_rows);
	}
	int d = mam_expire(w, now);
	return hold >= 0 && (d < 0 || hold < d) ? hold : d;
}

/* Rows not archived yet: the stopping worker waits for them, also while
 * the link is down (it may come back within shutdown_drain_timeout). */
static unsigned long mam_busy(struct worker *w)
{
	(void)w;
	return mam_held;
}

/* ---- preferences (XEP-0441, in urn:xmpp:mam:2) ---------------------- */

static const char mam_prefs_get_sql[] =
	"SELECT p.default_mode, p.always, p.never FROM mam_prefs p "
	"WHERE p.account_id = xmppd_account_id($1, $2)";

static const char mam_prefs_set_sql[] =
	"INSERT INTO mam_prefs (account_id, default_mode, always, never) "
	"SELECT a, $3, $4::text[], $5::text[] FROM xmppd_account_id($1, $2) a "
	"WHERE a IS NOT NULL ON CONFLICT (account_id) DO UPDATE SET "
	"default_mode = EXCLUDED.default_mode, always = EXCLUDED.always, "
	"never = EXCLUDED.never RETURNING default_mode, always, never";

static void mam_prefs_reply(struct iq_pending **p, const char *def,
			    const char *always, const char *never)
{
	struct buf out;
	buf_init(&out, 0);
	buf_appendf(&out, "<prefs xmlns='" NS_MAM "' default='%s'>", def);
	mam_form_prefs_list(&out, "always", always);
	mam_form_prefs_list(&out, "never", never);
	buf_appendf(&out, "</prefs>");
	if (buf_append(&out, "", 1) < 0)
		iq_reply_error(p, "wait", "resource-constraint");
	else
		iq_reply_result(p, buf_head(&out));
	buf_free(&out);
}

static void mam_prefs_fail(struct iq_pending **p, const char *error)
{
	if (error == NULL || (*p)->w->db == NULL || !db_is_up((*p)->w->db)) {
		iq_reply_error(p, "wait", "resource-constraint");
		return;
	}
	log_error("archive preferences: %s", error);
	iq_reply_error(p, "cancel", "internal-server-error");
}

static void mam_prefs_result(void *ctx, const PGresult *res,
			     const char *error)
{
	struct iq_pending *p = ctx;
	if (res == NULL)
		mam_prefs_fail(&p, error);
	else if (PQntuples(res) == 0 && strcmp(p->type, "set") == 0)
		iq_reply_error(&p, "cancel", "service-unavailable");
	else if (PQntuples(res) == 0)
		mam_prefs_reply(&p, "always", "{}", "{}");
	else
		mam_prefs_reply(&p, PQgetvalue(res, 0, 0),
				PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2));
}

static void mam_prefs_iq(struct worker *w, struct xml_node *st,
			 const char *bare)
{
	struct iq_pending *p = iq_pending_new(w, st);
	if (p == NULL)
		return;
	const char *from_bare = iq_bare(p, p->from);
	const char *at = strchr(bare, '@');
	if (from_bare == NULL || p->payload == NULL || at == NULL) {
		iq_reply_error(&p, "wait", "resource-constraint");
		return;
	}
	if (strcmp(from_bare, bare) != 0) {
		iq_reply_error(&p, "auth", "forbidden");
		return;
	}
	const char *user = arena_strndup(&p->arena, bare, (size_t)(at - bare));
	const char *domain = at + 1;
	int r;
	if (strcmp(p->type, "get") == 0) {
		const char *params[2] = { user, domain };
		r = w->db == NULL ? -1 :
		    db_query(w->db, mam_prefs_get_sql, 2, params, NULL, NULL, 0,
			     mam_prefs_result, p);
	} else {
		const char *def;
		unsigned njids = 0;
		struct buf al, nv;
		buf_init(&al, 0);
		buf_init(&nv, 0);
		if (mam_form_prefs(&p->arena, p->payload, &def, &al, &nv,
				   &njids) < 0) {
			log_info("archive preferences of %s refused: bad "
				 "default or JID", bare);
			buf_free(&al);
			buf_free(&nv);
			iq_reply_error(&p, "modify", "bad-request");
			return;
		}
		if (njids > w->cfg->mam_max_prefs_jids) {
			log_info("archive preferences of %s refused: %u JIDs "
				 "(mam.max_prefs_jids = %u)", bare, njids,
				 w->cfg->mam_max_prefs_jids);
			buf_free(&al);
			buf_free(&nv);
			iq_reply_error(&p, "cancel", "not-acceptable");
			return;
		}
		const char *params[5] = { user, domain, def, buf_head(&al),
					  buf_head(&nv) };
		r = w->db == NULL ? -1 :
		    db_query(w->db, mam_prefs_set_sql, 5, params, NULL, NULL, 0,
			     mam_prefs_result, p);
		buf_free(&al);
		buf_free(&nv);
	}
	if (r < 0)
		mam_prefs_fail(&p, NULL);
}

/* ---- the extension (ext.h) ------------------------------------------ */

static void mam_bound(struct conn *c)
{
	ext_filter(c, &mam_ext, 1);     /* every session's sent messages */
}

/* XEP-0198: a resumed session did not bind on this conn. */
static void mam_restore(struct conn *c, uint32_t word)
{
	(void)word;
	mam_bound(c);
}

static const char *const mam_features[] = {
	NS_MAM, NS_MAM_EXTENDED, NS_SID, NULL,
};
static const struct ext_iq mam_iqs[] = {
	{ NS_MAM, "query", EXT_IQ_GET | EXT_IQ_SET, mam_query_iq },
	{ NS_MAM, "metadata", EXT_IQ_GET, mam_metadata_iq },
	{ NS_MAM, "prefs", EXT_IQ_GET | EXT_IQ_SET, mam_prefs_iq },
	{ NULL, NULL, 0, NULL },
};
static const char *const mam_config[] = {
	"mam.max_page", "mam.batch_rows", "mam.queue_rows", "mam.queue_bytes",
	"mam.retention_days", "mam.max_prefs_jids", "mam.batch_hold",
	"mam.max_query_ids", "mam.max_scan_rows", NULL,
};
static const char *const mam_schema[] = { "006-mam.sql", NULL };

const struct ext mam_ext = {
	.name = "mam",
	/* on the domain too: clients (profanity) look for them there */
	.disco_features = mam_features,
	.iq = mam_iqs,
	.config_keys = mam_config,
	.schema = mam_schema,
	.session_bound = mam_bound,
	.session_restore = mam_restore,
	.stanza_in = mam_stanza_in,
	.message_to_account = mam_to_account,
	.taken_back = mam_taken_back,
	.loop_turn = mam_loop_turn,
	.busy = mam_busy,
	.account_features = mam_features,
	.message_text = mam_message_text,
};

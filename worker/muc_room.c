/*
 * muc_room.c - what a room does with a stanza (XEP-0045), on the room's
 * owner worker (muc.c brings the stanza there and the room into memory).
 *
 * Entering (section 7.2): the checks in the XEP's order (nick, ban,
 * locked, members-only, password, nick conflict, capacity), then the
 * other occupants' presence to the newcomer, its presence to them, its
 * self-presence (110, 100, 201), the history and the subject.
 * Several sessions of one account may share a nick: one occupant, each
 * session gets what the occupant gets.  Messages (7.4, 7.5), nick and
 * presence changes (7.6, 7.7), exits (7.14), moderation (section 8),
 * administration (9), ownership (10): each change of a role or an
 * affiliation is shown to the occupants with the XEP's status codes and
 * written to the database.  Every stanza the room sends is built here
 * from its parts (never a client's text passed on whole), 'from' the
 * room or an occupant JID, and goes out through muc_fanout.
 *
 * Failure policy: a stanza the room cannot act on is answered with the
 * XEP's error condition; out of memory answers resource-constraint or,
 * where no answer is due, is logged.
 */
#include "muc_int.h"
#include "base64.h"
#include "hmac.h"
#include "iq.h"
#include "jid.h"
#include "log.h"
#include "mam.h"
#include "muc_archive.h"
#include "server.h"
#include "session.h"
#include "stanza.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"
#define NS_PING "urn:xmpp:ping"
#define NS_SID "urn:xmpp:sid:0"
#define NS_XDATA "jabber:x:data"
#define NS_CONFERENCE "jabber:x:conference"
#define NS_VCARD "vcard-temp"

static const char *const muc_aff_names[] = {
	"outcast", "none", "member", "admin", "owner",
};
static const char *const muc_role_names[] = {
	"none", "visitor", "participant", "moderator",
};

const char *muc_aff_name(enum muc_aff a)
{
	return muc_aff_names[a + 1];
}

const char *muc_role_name(enum muc_role r)
{
	return muc_role_names[r];
}

int muc_aff_parse(const char *s, enum muc_aff *a_r)
{
	for (int i = 0; i < 5; i++)
		if (s != NULL && strcmp(s, muc_aff_names[i]) == 0) {
			*a_r = (enum muc_aff)(i - 1);
			return 0;
		}
	return -1;
}

int muc_role_parse(const char *s, enum muc_role *r_r)
{
	for (int i = 0; i < 4; i++)
		if (s != NULL && strcmp(s, muc_role_names[i]) == 0) {
			*r_r = (enum muc_role)i;
			return 0;
		}
	return -1;
}

void muc_occ_free(struct muc_occ *o)
{
	if (o == NULL)
		return;
	for (unsigned i = 0; i < o->nsess; i++) {
		free(o->sess[i].jid);
		free(o->sess[i].presence);
	}
	free(o->sess);
	free(o->nick);
	free(o->bare);
	free(o);
}

int muc_set_affiliation(struct worker *w, struct muc_room *r, const char *jid,
			enum muc_aff aff, const char *reason,
			const char *actor);

/* The bare part of a full JID, in a. */
static const char *iq_bare_of(struct arena *a, const char *jid)
{
	return arena_strndup(a, jid, strcspn(jid, "/"));
}

/* ---- the room's archive (muc_archive.c) -------------------------------- */

/* Archive a groupchat message (stamps its XEP-0359 stanza-id), when the
 * room keeps a log (muc#roomconfig_enablelogging): a room that does not
 * stores nothing, and gives no history. */
static void muc_archive_room(struct worker *w, struct muc_room *r,
			     const struct muc_occ *o, struct xml_node *st)
{
	if (r->cf.logging)
		muc_archive_add(w, r->id, r->jid, o->nick, o->bare, st);
}

static struct muc_occ *muc_by_bare(const struct muc_room *r,
				   const char *bare);
static int muc_rate_ok(struct worker *w, struct muc_occ *o);

/* A XEP-0313 query to the room: 1 when it was one (answered).  Who may
 * read the log is who may enter: not outcasts; members in a
 * members-only room; occupants (or members) in a password-protected
 * one.  Real JIDs are shown to whom the room shows them. */
static int muc_room_mam(struct worker *w, struct muc_room *r,
			struct arena *a, struct xml_node *st,
			const struct xml_node *q, const char *from)
{
	int query = xml_is(q, NS_MAM, "query");
	if (!query && !xml_is(q, NS_MAM, "metadata"))
		return 0;
	if (!r->cf.logging) {
		muc_bounce(w, st, "cancel", "service-unavailable",
			   "this room keeps no archive");
		return 1;
	}
	const char *bare = iq_bare_of(a, from);
	enum muc_aff aff = bare != NULL ? muc_room_aff(r, bare) : MUC_AFF_NONE;
	struct muc_occ *o = muc_room_by_jid(r, from, NULL);
	if (o == NULL && bare != NULL)
		o = muc_by_bare(r, bare);
	if (aff == MUC_AFF_OUTCAST ||
	    (r->cf.members_only && aff < MUC_AFF_MEMBER) ||
	    (r->cf.password_protected && r->cf.password[0] != '\0' &&
	     o == NULL && aff < MUC_AFF_MEMBER)) {
		muc_bounce(w, st, "auth", "forbidden",
			   "you may not read this room's archive");
		return 1;
	}
	int show = r->cf.whois_anyone || aff >= MUC_AFF_ADMIN ||
		   (o != NULL && o->role == MUC_ROLE_MODERATOR);
	if (query)
		muc_archive_query(w, st, r->id, r->jid, show);
	else
		muc_archive_metadata(w, st, r->id, r->jid);
	return 1;
}

/* ---- looking things up ---------------------------------------------- */

static struct muc_affil *muc_affil_find(const struct muc_room *r,
					const char *jid)
{
	for (unsigned i = 0; i < r->naffs; i++)
		if (strcmp(r->affs[i].jid, jid) == 0)
			return &r->affs[i];
	return NULL;
}

enum muc_aff muc_room_aff(const struct muc_room *r, const char *bare)
{
	const struct muc_affil *a = muc_affil_find(r, bare);
	const char *at;
	if (a == NULL && (at = strchr(bare, '@')) != NULL)
		a = muc_affil_find(r, at + 1);      /* a whole domain */
	return a != NULL ? a->aff : MUC_AFF_NONE;
}

struct muc_occ *muc_room_by_jid(const struct muc_room *r, const char *jid,
				unsigned *si_r)
{
	for (unsigned i = 0; i < r->nocc; i++)
		for (unsigned k = 0; k < r->occ[i]->nsess; k++)
			if (strcmp(r->occ[i]->sess[k].jid, jid) == 0) {
				if (si_r != NULL)
					*si_r = k;
				return r->occ[i];
			}
	return NULL;
}

static struct muc_occ *muc_by_nick(const struct muc_room *r, const char *nick)
{
	for (unsigned i = 0; i < r->nocc; i++)
		if (strcmp(r->occ[i]->nick, nick) == 0)
			return r->occ[i];
	return NULL;
}

static struct muc_occ *muc_by_bare(const struct muc_room *r,
				   const char *bare)
{
	for (unsigned i = 0; i < r->nocc; i++)
		if (strcmp(r->occ[i]->bare, bare) == 0)
			return r->occ[i];
	return NULL;
}

/* ---- errors and small replies --------------------------------------- */



/* An IQ result from the room's JID with payload (NULL: empty). */
static void muc_iq_result(struct worker *w, const struct xml_node *st,
			  const char *payload)
{
	struct buf out;
	buf_init(&out, 0);
	buf_appendf(&out, "<iq type='result' from='");
	const char *to = xml_attr(st, "to"), *from = xml_attr(st, "from");
	xml_escape(&out, to, strlen(to), 1);
	buf_appendf(&out, "' to='");
	xml_escape(&out, from, strlen(from), 1);
	buf_append(&out, "'", 1);
	stanza_append_id(&out, st);
	if (payload != NULL)
		buf_appendf(&out, ">%s</iq>", payload);
	else
		buf_appendf(&out, "/>");
	muc_route_text(w, buf_head(&out), buf_used(&out));
	buf_free(&out);
}

/* ---- what occupants are sent --------------------------------------- */

static void muc_attr(struct buf *out, const char *name, const char *v)
{
	buf_appendf(out, " %s='", name);
	xml_escape(out, v, strlen(v), 1);
	buf_append(out, "'", 1);
}

/* <from='room/nick'> */
static void muc_from_nick(struct buf *out, const struct muc_room *r,
			  const char *nick)
{
	buf_appendf(out, " from='");
	xml_escape(out, r->jid, strlen(r->jid), 1);
	buf_append(out, "/", 1);
	xml_escape(out, nick, strlen(nick), 1);
	buf_append(out, "'", 1);
}

/* XEP-0421: a stable id of the occupant's account in this room,
 * unlinkable across rooms: HMAC-SHA256 keyed with the room's salt. */
static void muc_occupant_id(const struct muc_room *r, struct muc_occ *o)
{
	unsigned char mac[32];
	char key[600];
	int n = snprintf(key, sizeof(key), "%s %s", r->salt, r->jid);
	if (n < 0 || (size_t)n >= sizeof(key) ||
	    hmac("SHA256", key, (size_t)n, o->bare, strlen(o->bare), mac,
		 sizeof(mac)) < 0 ||
	    base64_encode(mac, 24, o->oid, sizeof(o->oid)) < 0)
		o->oid[0] = '\0';
}

static void muc_oid_xml(struct buf *out, const struct muc_occ *o)
{
	if (o->oid[0] != '\0')
		buf_appendf(out, "<occupant-id xmlns='" NS_OCCUPANT_ID
			    "' id='%s'/>", o->oid);
}

/* What shows an occupant in presence and lists. */
struct muc_item {
	struct muc_occ *o;
	const char *jid;        /* real JID shown, or NULL */
	const char *nick;       /* <item nick=.../> (303), or NULL */
	const char *actor;      /* nick of the moderator who did it */
	const char *reason;
	const unsigned *codes;
	unsigned ncodes;
	int self;               /* add 110 */
	int unavailable;
	int keep_role;          /* unavailable but its role shown (303:
				   the occupant stays, renamed) */
	const char *destroy;    /* <destroy/> element, whole, or NULL */
	const char *children;   /* presence children, or NULL */
};

static void muc_presence_xml(struct buf *out, const struct muc_room *r,
			     const struct muc_item *it)
{
	buf_appendf(out, "<presence");
	muc_from_nick(out, r, it->o->nick);
	if (it->unavailable)
		buf_appendf(out, " type='unavailable'");
	buf_append(out, ">", 1);
	if (it->children != NULL)
		buf_appendf(out, "%s", it->children);
	buf_appendf(out, "<x xmlns='" NS_MUC_USER "'>");
	if (it->destroy != NULL) {
		buf_appendf(out, "<item affiliation='%s' role='none'/>%s",
			    muc_aff_name(it->o->aff), it->destroy);
	} else {
		buf_appendf(out, "<item affiliation='%s' role='%s'",
			    muc_aff_name(it->o->aff),
			    muc_role_name(it->unavailable && !it->keep_role ?
					  MUC_ROLE_NONE : it->o->role));
		if (it->jid != NULL)
			muc_attr(out, "jid", it->jid);
		if (it->nick != NULL)
			muc_attr(out, "nick", it->nick);
		if (it->actor == NULL && it->reason == NULL) {
			buf_appendf(out, "/>");
		} else {
			buf_append(out, ">", 1);
			if (it->actor != NULL) {
				buf_appendf(out, "<actor");
				muc_attr(out, "nick", it->actor);
				buf_appendf(out, "/>");
			}
			if (it->reason != NULL) {
				buf_appendf(out, "<reason>");
				xml_escape(out, it->reason, strlen(it->reason),
					   0);
				buf_appendf(out, "</reason>");
			}
			buf_appendf(out, "</item>");
		}
	}
	/* in numeric order, 110 among them (as the XEP's examples) */
	int self = it->self;
	for (unsigned i = 0; i < it->ncodes; i++) {
		if (self && it->codes[i] > 110) {
			buf_appendf(out, "<status code='110'/>");
			self = 0;
		}
		buf_appendf(out, "<status code='%u'/>", it->codes[i]);
	}
	if (self)
		buf_appendf(out, "<status code='110'/>");
	buf_appendf(out, "</x>");
	muc_oid_xml(out, it->o);
	buf_appendf(out, "</presence>");
}

/* May occupant p see the real JIDs of others? */
static int muc_sees_jids(const struct muc_room *r, const struct muc_occ *p)
{
	return r->cf.whois_anyone || p->role == MUC_ROLE_MODERATOR;
}

/* Destinations: every session of every occupant but skip (NULL: all),
 * split by whether they see real JIDs. */
struct muc_dests {
	struct muc_dest *d;
	unsigned n, cap;
};

static void muc_dests_add(struct muc_dests *ds, struct muc_occ *o)
{
	for (unsigned k = 0; k < o->nsess; k++) {
		if (ds->n == ds->cap) {
			unsigned cap = ds->cap ? ds->cap * 2 : 16;
			struct muc_dest *m = realloc(ds->d, cap * sizeof(*m));
			if (m == NULL)
				return;
			ds->d = m;
			ds->cap = cap;
		}
		ds->d[ds->n].sess = &o->sess[k];
		ds->d[ds->n].jid = o->sess[k].jid;
		ds->d[ds->n++].remote = o->remote;
	}
}


/* Send text to ds, then let the sessions found gone leave. */
static void muc_send_dests(struct worker *w, struct muc_room *r,
			   const char *text, size_t len, struct muc_dests *ds)
{
	unsigned *gone, ngone = 0;
	if (ds->n == 0)
		return;
	gone = malloc(ds->n * sizeof(*gone));
	muc_fanout(w, text, len, ds->d, ds->n, gone, &ngone);
	/* recorded only: they leave once the stanza being handled is done
	 * (muc_room_settle), never under a caller that holds occupants */
	for (unsigned i = 0; gone != NULL && i < ngone; i++)
		muc_room_gone(w, r, ds->d[gone[i]].jid, 1);
	free(gone);
}

/* The presence of o (session s) to every occupant but o (self
 * presence is sent by the caller), each with or without the real JID. */
static void muc_broadcast_presence(struct worker *w, struct muc_room *r,
				   struct muc_item *it, const char *real)
{
	struct muc_dests with = { 0 }, without = { 0 };
	struct buf t1, t2;
	for (unsigned i = 0; i < r->nocc; i++) {
		struct muc_occ *p = r->occ[i];
		if (p == it->o)
			continue;
		/* muc#roomconfig_presencebroadcast: moderators always */
		if (!(r->cf.presence_broadcast & (1u << it->o->role)) &&
		    !it->unavailable && p->role != MUC_ROLE_MODERATOR)
			continue;
		muc_dests_add(muc_sees_jids(r, p) ? &with : &without, p);
	}
	buf_init(&t1, 0);
	buf_init(&t2, 0);
	it->self = 0;
	it->jid = real;
	muc_presence_xml(&t1, r, it);
	it->jid = NULL;
	muc_presence_xml(&t2, r, it);
	muc_send_dests(w, r, buf_head(&t1), buf_used(&t1), &with);
	muc_send_dests(w, r, buf_head(&t2), buf_used(&t2), &without);
	buf_free(&t1);
	buf_free(&t2);
	free(with.d);
	free(without.d);
}

/* o's own sessions get its presence with 110 (codes added). */
static void muc_self_presence(struct worker *w, struct muc_room *r,
			      struct muc_item *it, const char *to)
{
	struct buf t;
	struct muc_dests ds = { 0 };
	buf_init(&t, 0);
	it->self = 1;
	muc_presence_xml(&t, r, it);
	it->self = 0;
	if (to != NULL) {
		muc_send_one(w, buf_head(&t), buf_used(&t), to, it->o->remote);
	} else {
		muc_dests_add(&ds, it->o);
		muc_fanout(w, buf_head(&t), buf_used(&t), ds.d, ds.n, NULL,
			   NULL);
		free(ds.d);
	}
	buf_free(&t);
}

/* An occupant's presence, shown to all (after a change of its role,
 * affiliation or status); codes for everyone, self gets 110 too. */
static void muc_show_occupant(struct worker *w, struct muc_room *r,
			      struct muc_occ *o, const unsigned *codes,
			      unsigned ncodes, const char *actor,
			      const char *reason)
{
	struct muc_sess *s = &o->sess[o->last];
	struct muc_item it = { .o = o, .codes = codes, .ncodes = ncodes,
			       .actor = actor, .reason = reason,
			       .children = s->presence };
	muc_broadcast_presence(w, r, &it, s->jid);
	it.jid = s->jid;
	muc_self_presence(w, r, &it, NULL);
}

/* ---- occupants coming and going -------------------------------------- */

/* The budgets of accounts that left lately (MUC_LEFT_MAX, the oldest
 * forgotten first): entering again is no refill (muc_enter). */
static void muc_left_put(struct muc_room *r, const struct muc_occ *o)
{
	unsigned i = r->left_next++ % MUC_LEFT_MAX;
	char *b = strdup(o->bare);
	if (b == NULL)
		return;
	free(r->left[i].bare);
	r->left[i].bare = b;
	r->left[i].tokens = o->tokens;
	r->left[i].tokens_ms = o->tokens_ms;
}

static void muc_left_take(struct muc_room *r, const char *bare,
			  struct muc_occ *o)
{
	for (unsigned i = 0; i < MUC_LEFT_MAX; i++)
		if (r->left[i].bare != NULL &&
		    strcmp(r->left[i].bare, bare) == 0) {
			o->tokens = r->left[i].tokens;
			o->tokens_ms = r->left[i].tokens_ms;
			return;
		}
}

static void muc_occ_remove(struct muc_room *r, struct muc_occ *o)
{
	if (o->tokens >= 0)
		muc_left_put(r, o);
	for (unsigned i = 0; i < r->nocc; i++)
		if (r->occ[i] == o) {
			memmove(&r->occ[i], &r->occ[i + 1],
				(r->nocc - i - 1) * sizeof(*r->occ));
			r->nocc--;
			break;
		}
	muc_occ_free(o);
}

/* The room after someone left: a temporary room left empty goes. */
static void muc_maybe_empty(struct worker *w, struct muc_room *r)
{
	if (r->nocc == 0 && (!r->cf.persistent || r->locked)) {
		log_debug("muc %s: empty temporary room destroyed", r->jid);
		muc_room_drop(w, r);
	}
}

/* Session si of o leaves: the others are told when it was o's last. */
static void muc_exit(struct worker *w, struct muc_room *r, struct muc_occ *o,
		     unsigned si, const unsigned *codes, unsigned ncodes,
		     const char *actor, const char *reason, const char *status)
{
	struct muc_sess s = o->sess[si];
	struct buf kids;
	buf_init(&kids, 0);
	if (status != NULL)
		buf_appendf(&kids, "%s", status);
	buf_append(&kids, "", 1);
	struct muc_item it = { .o = o, .codes = codes, .ncodes = ncodes,
			       .actor = actor, .reason = reason,
			       .unavailable = 1,
			       .children = buf_head(&kids) };
	it.jid = s.jid;
	muc_self_presence(w, r, &it, s.jid);
	memmove(&o->sess[si], &o->sess[si + 1],
		(o->nsess - si - 1) * sizeof(*o->sess));
	o->nsess--;
	if (o->last >= o->nsess)
		o->last = o->nsess > 0 ? o->nsess - 1 : 0;
	muc_db_occupant_del(w, r, s.jid);
	if (o->nsess == 0) {
		muc_broadcast_presence(w, r, &it, s.jid);
		muc_occ_remove(r, o);
	}
	free(s.jid);
	free(s.presence);
	buf_free(&kids);
}

void muc_room_gone(struct worker *w, struct muc_room *r, const char *jid,
		   int ended)
{
	/* each entry is "E" (ended), "X" (an error) or "L" (its node left
	 * the cluster or its run is over), then the JID */
	(void)w;
	for (unsigned i = 0; i < r->ngone; i++)
		if (strcmp(r->gone[i] + 1, jid) == 0)
			return;
	char **m = realloc(r->gone, (r->ngone + 1) * sizeof(*m));
	size_t n = strlen(jid);
	if (m == NULL)
		return;
	r->gone = m;
	if ((m[r->ngone] = malloc(n + 2)) == NULL)
		return;
	m[r->ngone][0] = ended == MUC_GONE_LEFT ? 'L' : ended ? 'E' : 'X';
	memcpy(m[r->ngone] + 1, jid, n + 1);
	r->ngone++;
}

void muc_room_leave_gone(struct worker *w, struct muc_room *r)
{
	static const unsigned c333[] = { 333 };
	char **gone = r->gone;
	unsigned n = r->ngone, left = 0, kept = 0;
	r->gone = NULL;
	r->ngone = 0;
	for (unsigned i = 0; i < n; i++) {
		unsigned si;
		struct muc_occ *o = r->dead ? NULL :
				    muc_room_by_jid(r, gone[i] + 1, &si);
		struct session_info now;
		/* an ended session back online (it reconnected with the
		 * same resource and entered again meanwhile) stays */
		if (o != NULL && gone[i][0] == 'E' && !o->remote &&
		    shm_session_get(w->shm->sessions, gone[i] + 1, &now) == 1)
			o = NULL;
		/* a session of a member node we do not hear now stays: the
		 * table lost it with its node (a partition), not because it
		 * ended; when the member list drops that node, the room's
		 * owner then removes it (muc_loaded_node, MUC_GONE) */
		if (o != NULL && !o->remote && gone[i][0] != 'L' &&
		    shm_session_get(w->shm->sessions, gone[i] + 1, &now) != 1 &&
		    !muc_absence_known(w, o->sess[si].home)) {
			o = NULL;
			kept++;
		}
		/* a session that ended without a word (its worker
		 * crashed, it is no longer in the session table) leaves as
		 * at a disconnection; one whose server bounced what the room
		 * sent leaves with 333 ("removed for technical reasons",
		 * XEP-0410) */
		if (o != NULL) {
			if (gone[i][0] == 'E')
				muc_exit(w, r, o, si, NULL, 0, NULL, NULL, NULL);
			else
				muc_exit(w, r, o, si, c333, 1, NULL, NULL,
					 NULL);
			left++;
		}
		free(gone[i]);
	}
	free(gone);
	if (left > 0)
		log_info("muc %s: %u occupant sessions gone (ended, or "
			 "their server bounced): they left", r->jid, left);
	if (kept > 0)       /* each fan-out finds them again: debug */
		log_debug("muc %s: %u occupant sessions of nodes we do not "
			  "hear kept (they go when the member list drops "
			  "their node)", r->jid, kept);
	if (!r->dead)
		muc_maybe_empty(w, r);
}

void muc_room_loaded(struct worker *w, struct muc_room *r)
{
	struct session_info s;
	for (unsigned i = 0; i < r->nocc; i++) {
		struct muc_occ *o = r->occ[i];
		muc_occupant_id(r, o);
		o->aff = muc_room_aff(r, o->bare);
		/* gone while the room's worker was away: they leave with
		 * the settling that follows the load */
		for (unsigned k = 0; k < o->nsess && !o->remote; k++)
			if (shm_session_get(w->shm->sessions, o->sess[k].jid,
					    &s) != 1)
				muc_room_gone(w, r, o->sess[k].jid, 1);
	}
}

/* What an occupant may not put in what the room sends in its name:
 * occupant ids (XEP-0421 section 4), muc#user elements (an <item
 * jid=.../> would pass for the room's word on a real JID, in the
 * archive too), delays (XEP-0203: a live stanza would show as old
 * history; the room adds its own to history) and XEP-0033 addresses
 * (an 'ofrom' would name a real JID).  Stanza ids: muc_strip_claims,
 * and every one in presence. */
static int muc_claimed(const struct xml_node *n)
{
	return strcmp(n->ns, NS_OCCUPANT_ID) == 0 ||
	       strcmp(n->ns, NS_MUC_USER) == 0 ||
	       strcmp(n->ns, "urn:xmpp:delay") == 0 ||
	       strcmp(n->ns, "jabber:x:delay") == 0 ||
	       strcmp(n->ns, "http://jabber.org/protocol/address") == 0;
}

/* The presence's children worth keeping for the others: what the
 * client put in, but its <x xmlns='...muc'/> (and any muc#user or
 * occupant-id it claims). */
static int muc_presence_children(const struct xml_node *st, struct buf *out,
				 size_t max)
{
	for (const struct xml_node *c = st->children; c != NULL; c = c->next) {
		if (c->name == NULL)
			continue;
		if (strcmp(c->ns, NS_MUC) == 0 || muc_claimed(c) ||
		    xml_is(c, NS_SID, "stanza-id"))
			continue;
		if (xml_serialize(out, c, NS_CLIENT) < 0)
			return -1;
		if (buf_used(out) > max)
			return -1;
	}
	buf_append(out, "", 1);
	return 0;
}

static void muc_send_subject(struct worker *w, struct muc_room *r,
			     const char *to, int remote)
{
	struct buf t;
	buf_init(&t, 0);
	buf_appendf(&t, "<message type='groupchat'");
	if (r->subject_by[0] != '\0')
		muc_from_nick(&t, r, r->subject_by);
	else
		muc_attr(&t, "from", r->jid);
	if (r->subject[0] == '\0') {
		buf_appendf(&t, "><subject/></message>");
	} else {
		buf_appendf(&t, "><subject>");
		xml_escape(&t, r->subject, strlen(r->subject), 0);
		buf_appendf(&t, "</subject></message>");
	}
	muc_send_one(w, buf_head(&t), buf_used(&t), to, remote);
	buf_free(&t);
}

/* An entrance waiting for its history. */
struct muc_hist {
	struct muc_room *r;     /* a reference held */
	int remote;
	char to[1];
};

static long muc_attr_long(const struct xml_node *n, const char *name)
{
	const char *v = xml_attr(n, name);
	char *end;
	if (v == NULL || *v == '\0')
		return -1;
	long x = strtol(v, &end, 10);
	return *end != '\0' || x < 0 ? -1 : x;
}

static void muc_history_done(void *ctx, unsigned n,
			     const char *const *stanzas, const size_t *lens,
			     const long long *ids, const char *error)
{
	struct muc_hist *h = ctx;
	struct muc_room *r = h->r;
	(void)ids;
	if (error != NULL)
		log_warn("muc %s: history for %s not read: %s", r->jid, h->to,
			 error);
	/* the occupant may have left meanwhile */
	struct worker *w = r->w;
	muc_busy_enter();
	if (!r->dead && muc_room_by_jid(r, h->to, NULL) != NULL) {
		for (unsigned i = 0; i < n; i++)
			muc_send_one(w, stanzas[i], lens[i], h->to,
				     h->remote);
		muc_send_subject(w, r, h->to, h->remote);
	}
	free(h);
	muc_room_unref(r);
	muc_busy_leave(w);
}

/* What a newcomer gets after its self-presence: the history (section
 * 7.2.14, from the archive, as its <history/> asks), then the subject
 * (7.2.15: always, empty when there is none). */
static void muc_after_join(struct worker *w, struct muc_room *r,
			   const struct xml_node *st, const char *to,
			   int remote)
{
	const struct xml_node *x = xml_child(st, NS_MUC, "x");
	const struct xml_node *hn = x != NULL ? xml_child(x, NS_MUC, "history")
					      : NULL;
	struct muc_history_req req = { -1, -1, -1, NULL };
	if (hn != NULL) {
		req.maxchars = muc_attr_long(hn, "maxchars");
		req.maxstanzas = muc_attr_long(hn, "maxstanzas");
		req.seconds = muc_attr_long(hn, "seconds");
		req.since = xml_attr(hn, "since");
	}
	size_t n = strlen(to);
	struct muc_hist *h = r->cf.logging ? malloc(sizeof(*h) + n) : NULL;
	if (h != NULL) {
		h->r = r;
		h->remote = remote;
		memcpy(h->to, to, n + 1);
		r->refs++;
		if (muc_archive_history(w, r->id, r->jid, &req,
					muc_history_done, h) == 0)
			return;
		r->refs--;
		free(h);
	}
	muc_send_subject(w, r, to, remote);
}

/* Whether n's character data is exactly s. */
static int muc_text_is(const struct xml_node *n, const char *s)
{
	size_t off = 0, len = strlen(s);
	for (const struct xml_node *c = n->children; c != NULL; c = c->next) {
		if (c->name != NULL)
			continue;
		if (c->text_len > len - off ||
		    memcmp(s + off, c->text, c->text_len) != 0)
			return 0;
		off += c->text_len;
	}
	return off == len;
}

/* An entrance refused (section 7.2): the error presence from the
 * occupant JID asked, with the <x xmlns='...muc'/> of the join before
 * the <error/>, as the XEP's examples (clients match on it). */
static void muc_join_error(struct worker *w, const struct xml_node *st,
			   const char *type, const char *cond,
			   const char *text)
{
	struct buf out;
	const char *from = xml_attr(st, "from"), *to = xml_attr(st, "to");
	if (from == NULL || to == NULL)
		return;
	buf_init(&out, 0);
	buf_appendf(&out, "<presence");
	muc_attr(&out, "from", to);
	muc_attr(&out, "to", from);
	stanza_append_id(&out, st);
	buf_appendf(&out, " type='error'><x xmlns='" NS_MUC "'/>"
		    "<error type='%s'><%s xmlns='urn:ietf:params:xml:ns:"
		    "xmpp-stanzas'/>", type, cond);
	if (text != NULL) {
		buf_appendf(&out, "<text xmlns='urn:ietf:params:xml:ns:"
			    "xmpp-stanzas'>");
		xml_escape(&out, text, strlen(text), 0);
		buf_appendf(&out, "</text>");
	}
	buf_appendf(&out, "</error></presence>");
	muc_route_text(w, buf_head(&out), buf_used(&out));
	buf_free(&out);
}

/* The role an affiliation enters with (sections 5.1, 5.2). */
static enum muc_role muc_default_role(const struct muc_room *r,
				      enum muc_aff aff)
{
	if (aff >= MUC_AFF_ADMIN)
		return MUC_ROLE_MODERATOR;
	if (aff == MUC_AFF_MEMBER)
		return MUC_ROLE_PARTICIPANT;
	return r->cf.moderated ? MUC_ROLE_VISITOR : MUC_ROLE_PARTICIPANT;
}

static int muc_occ_grow(struct muc_room *r)
{
	if (r->nocc < r->occ_cap)
		return 0;
	unsigned cap = r->occ_cap ? r->occ_cap * 2 : 8;
	struct muc_occ **m = realloc(r->occ, cap * sizeof(*m));
	if (m == NULL)
		return -1;
	r->occ = m;
	r->occ_cap = cap;
	return 0;
}

/* The other occupants' presence, as o may see them, to o's session to
 * (NULL: all its sessions). */
static void muc_send_occupants(struct worker *w, struct muc_room *r,
			       const struct muc_occ *o, const char *to)
{
	int sees = muc_sees_jids(r, o);
	struct buf t;
	buf_init(&t, 0);
	for (unsigned i = 0; i < r->nocc; i++) {
		struct muc_occ *p = r->occ[i];
		if (p == o || (!(r->cf.presence_broadcast & (1u << p->role)) &&
			       o->role != MUC_ROLE_MODERATOR))
			continue;
		struct muc_item it = { .o = p, .children =
				       p->sess[p->last].presence,
				       .jid = sees ? p->sess[p->last].jid :
						     NULL };
		t.len = t.off = 0;
		muc_presence_xml(&t, r, &it);
		for (unsigned k = 0; k < o->nsess; k++)
			if (to == NULL || strcmp(o->sess[k].jid, to) == 0)
				muc_send_one(w, buf_head(&t), buf_used(&t),
					     o->sess[k].jid, o->remote);
	}
	buf_free(&t);
}

/* The checks passed: from enters as nick (same: the occupant it joins,
 * another session of the same account). */
static void muc_enter(struct worker *w, struct muc_room *r,
		      const struct xml_node *st, const char *from,
		      const char *bare, const char *nick, enum muc_aff aff,
		      int remote, struct muc_occ *same, const char *kids,
		      int creating, const struct muc_occ *was)
{
	struct muc_occ *o = same;
	if (o == NULL) {
		if (muc_occ_grow(r) < 0 || (o = calloc(1, sizeof(*o))) == NULL) {
			muc_bounce(w, st, "wait", "resource-constraint", NULL);
			return;
		}
		if ((o->nick = strdup(nick)) == NULL ||
		    (o->bare = strdup(bare)) == NULL) {
			muc_occ_free(o);
			muc_bounce(w, st, "wait", "resource-constraint", NULL);
			return;
		}
		o->aff = aff;
		o->role = muc_default_role(r, aff);
		o->remote = remote;
		o->tokens = -1;         /* full at the first message */
		if (was != NULL) {
			/* the same occupant entering again in place: its
			 * role and budget stay */
			o->role = was->role;
			o->tokens = was->tokens;
			o->tokens_ms = was->tokens_ms;
		} else {
			/* an account that left a moment ago gets back the
			 * budget it left with (leaving is no refill) */
			muc_left_take(r, bare, o);
		}
		muc_occupant_id(r, o);
		r->occ[r->nocc++] = o;
	}
	struct muc_sess *m = realloc(o->sess, (o->nsess + 1) * sizeof(*m));
	if (m == NULL) {
		muc_bounce(w, st, "wait", "resource-constraint", NULL);
		if (o->nsess == 0)
			muc_occ_remove(r, o);
		return;
	}
	o->sess = m;
	memset(&m[o->nsess], 0, sizeof(m[o->nsess]));
	m[o->nsess].jid = strdup(from);
	m[o->nsess].presence = strdup(kids);
	if (m[o->nsess].jid == NULL || m[o->nsess].presence == NULL) {
		free(m[o->nsess].jid);
		free(m[o->nsess].presence);
		muc_bounce(w, st, "wait", "resource-constraint", NULL);
		if (o->nsess == 0)
			muc_occ_remove(r, o);
		return;
	}
	snprintf(m[o->nsess].home, sizeof(m[o->nsess].home), "%s",
		 muc_node_of(w, from, NULL));
	o->last = o->nsess++;
	/* 1: the others, to the newcomer (section 7.2.3) */
	muc_send_occupants(w, r, o, from);
	/* 2: the newcomer, to the others; 3: to itself (7.2.4, 7.2.5) */
	unsigned codes[3], n = 0;
	if (r->cf.whois_anyone)
		codes[n++] = 100;
	if (creating)
		codes[n++] = 201;
	struct muc_item it = { .o = o, .children = kids };
	r->refs++;
	muc_broadcast_presence(w, r, &it, from);
	it.codes = codes;
	it.ncodes = n;
	it.jid = from;
	if (!r->dead)
		muc_self_presence(w, r, &it, from);
	if (!r->dead) {
		muc_db_occupant_put(w, r, o, &o->sess[o->last]);
		muc_after_join(w, r, st, from, remote);
	}
	muc_room_unref(r);
}

/* Section 7.2: an available presence to room/nick from someone who is
 * not in the room. */
static void muc_join(struct worker *w, struct muc_room *r,
		     const struct xml_node *st, const char *from,
		     const char *nick)
{
	char *bare = strndup(from, strcspn(from, "/"));
	const char *at = bare != NULL ? strchr(bare, '@') : NULL;
	const char *domain = at != NULL ? at + 1 : bare;
	int remote = bare != NULL && !stream_hosted(w, domain);
	if (bare == NULL)
		return;
	if (!r->exists) {
		int refused = r->created_now;
		r->created_now = 0;
		if (refused == -2) {
			muc_join_error(w, st, "wait", "internal-server-error",
				  "the room could not be created");
		} else if (refused == -3) {
			/* as Prosody's muc_max_rooms */
			muc_join_error(w, st, "wait", "resource-constraint",
				  "the service has all the rooms it may "
				  "(muc.max_rooms)");
		} else if (refused == -1) {
			muc_join_error(w, st, "cancel", "not-allowed",
				  "you own as many rooms as you may "
				  "(muc.max_rooms_per_account)");
		} else if (strcmp(w->cfg->muc_create, "nobody") == 0 ||
			   (remote && strcmp(w->cfg->muc_create, "anyone") != 0)) {
			muc_join_error(w, st, "cancel", "not-allowed",
				  "rooms are not created here by you");
		} else if ((r->creator = strdup(from)) == NULL) {
			muc_join_error(w, st, "wait", "resource-constraint", NULL);
		} else {
			muc_create(w, r, st);
		}
		free(bare);
		return;
	}
	int creating = r->created_now == 1 && r->creator != NULL &&
		       strcmp(r->creator, from) == 0;
	if (creating) {
		r->created_now = 0;
		r->locked = 1;
		struct muc_affil own = { bare, MUC_AFF_OWNER, (char *)"",
					 (char *)"" };
		struct muc_affil *m = realloc(r->affs, (r->naffs + 1) *
					      sizeof(*m));
		if (m != NULL && (own.jid = strdup(bare)) != NULL &&
		    (own.nick = strdup("")) != NULL &&
		    (own.reason = strdup("")) != NULL) {
			r->affs = m;
			r->affs[r->naffs++] = own;
		} else if (m != NULL) {
			r->affs = m;
		}
	}
	enum muc_aff aff = muc_room_aff(r, bare);
	const struct xml_node *x = xml_child(st, NS_MUC, "x");
	const struct xml_node *pw = x != NULL ? xml_child(x, NS_MUC, "password")
					      : NULL;
	struct muc_occ *same = muc_by_nick(r, nick);
	const struct muc_affil *holder = NULL;
	for (unsigned i = 0; i < r->naffs; i++)
		if (r->affs[i].nick[0] != '\0' &&
		    strcmp(r->affs[i].nick, nick) == 0 &&
		    strcmp(r->affs[i].jid, bare) != 0)
			holder = &r->affs[i];
	struct buf kids;
	buf_init(&kids, 0);
	if (strlen(nick) > w->cfg->muc_max_nick_bytes) {
		muc_join_error(w, st, "modify", "jid-malformed",
			  "the nickname is too long (muc.max_nick_bytes)");
	} else if (aff == MUC_AFF_OUTCAST) {
		muc_join_error(w, st, "auth", "forbidden", "you are banned");
	} else if (r->locked && aff != MUC_AFF_OWNER) {
		muc_join_error(w, st, "cancel", "item-not-found",
			  "the room is being set up");
	} else if (r->cf.members_only && aff < MUC_AFF_MEMBER) {
		muc_join_error(w, st, "auth", "registration-required",
			  "the room is for members only");
	} else if (r->cf.password_protected && r->cf.password[0] != '\0' &&
		   aff < MUC_AFF_ADMIN &&
		   (pw == NULL || !muc_text_is(pw, r->cf.password))) {
		muc_join_error(w, st, "auth", "not-authorized",
			  "a password is required");
	} else if ((same != NULL && strcmp(same->bare, bare) != 0) ||
		   holder != NULL) {
		/* another account's nick, or one reserved for another;
		 * sessions of one account may be in under several nicks */
		muc_join_error(w, st, "cancel", "conflict",
			  "that nickname is taken");
	} else if (same != NULL &&
		   same->nsess >= (w->cfg->max_sessions_per_account != 0 ?
				   w->cfg->max_sessions_per_account : 64)) {
		/* sessions of one account under one nick: as many as the
		 * account may have here (c2s.max_sessions_per_account);
		 * another server's accounts are bounded the same way */
		muc_join_error(w, st, "wait", "service-unavailable",
			  "too many sessions under this nickname");
	} else if (same == NULL && aff < MUC_AFF_ADMIN &&
		   r->nocc >= (r->cf.max_users != 0 &&
			       r->cf.max_users < w->cfg->muc_max_occupants ?
			       r->cf.max_users : w->cfg->muc_max_occupants)) {
		muc_join_error(w, st, "wait", "service-unavailable",
			  "the room is full");
	} else if (muc_presence_children(st, &kids,
					 w->cfg->muc_max_presence_bytes) < 0) {
		muc_join_error(w, st, "modify", "not-acceptable",
			  "the presence is too large (muc.max_presence_bytes)");
	} else {
		muc_enter(w, r, st, from, bare, nick, aff, remote, same,
			  buf_head(&kids), creating, NULL);
	}
	buf_free(&kids);
	free(bare);
	if (!r->dead && r->nocc == 0 && creating)
		muc_maybe_empty(w, r);
}

/* ---- presence to the room -------------------------------------------- */

/* Section 7.6: o (all its sessions) takes nick. */
static void muc_nick_change(struct worker *w, struct muc_room *r,
			    struct muc_occ *o, const struct xml_node *st,
			    const char *nick)
{
	static const unsigned c303[] = { 303 };
	const char *bare = o->bare;
	for (unsigned i = 0; i < r->naffs; i++)
		if (r->affs[i].nick[0] != '\0' &&
		    strcmp(r->affs[i].nick, nick) == 0 &&
		    strcmp(r->affs[i].jid, bare) != 0) {
			muc_bounce(w, st, "cancel", "conflict",
				   "that nickname is reserved");
			return;
		}
	struct muc_occ *same = muc_by_nick(r, nick);
	if (same != NULL) {
		muc_bounce(w, st, "cancel", "conflict",
			   "that nickname is taken");
		return;
	}
	if (!muc_rate_ok(w, o)) {
		/* four broadcasts to every occupant: the message budget */
		muc_bounce(w, st, "wait", "resource-constraint",
			   "too many changes (muc.messages_per_minute)");
		return;
	}
	if (strlen(nick) > w->cfg->muc_max_nick_bytes) {
		muc_bounce(w, st, "modify", "jid-malformed",
			   "the nickname is too long (muc.max_nick_bytes)");
		return;
	}
	char *nn = strdup(nick);
	if (nn == NULL) {
		muc_bounce(w, st, "wait", "resource-constraint", NULL);
		return;
	}
	struct muc_sess *s = &o->sess[o->last];
	struct muc_item it = { .o = o, .nick = nick, .codes = c303,
			       .ncodes = 1, .unavailable = 1,
			       .keep_role = 1 };
	r->refs++;
	muc_broadcast_presence(w, r, &it, s->jid);
	it.jid = s->jid;
	muc_self_presence(w, r, &it, NULL);
	free(o->nick);
	o->nick = nn;
	if (!r->dead) {
		struct muc_item now = { .o = o, .children = s->presence };
		muc_broadcast_presence(w, r, &now, s->jid);
		now.jid = s->jid;
		muc_self_presence(w, r, &now, NULL);
		for (unsigned k = 0; k < o->nsess; k++)
			muc_db_occupant_put(w, r, o, &o->sess[k]);
	}
	muc_room_unref(r);
}

/* An error from session from of occupant o, to what the room sent it:
 * whether it says the session is gone.  A local session: when it is no
 * longer in the session table (it ended: it leaves as at a
 * disconnection).  A remote one: when its server says so (RFC 6120
 * 8.3.3: gone, item-not-found, recipient-unavailable,
 * remote-server-*); it leaves with 333.  Any other error (a blocking
 * list's service-unavailable, a client's refusal) is only that: 0. */
static int muc_error_gone(struct worker *w, struct muc_room *r,
			  const struct muc_occ *o, const struct xml_node *st,
			  const char *from)
{
	static const char *const gone[] = {
		"gone", "item-not-found", "recipient-unavailable",
		"remote-server-not-found", "remote-server-timeout", NULL,
	};
	struct session_info si;
	if (!o->remote) {
		if (shm_session_get(w->shm->sessions, from, &si) == 1)
			return 0;
		muc_room_gone(w, r, from, 1);
		return 1;
	}
	const struct xml_node *e = xml_child(st, NS_CLIENT, "error");
	const struct xml_node *c = e != NULL ? xml_first_element(e) : NULL;
	if (c == NULL ||
	    strcmp(c->ns, "urn:ietf:params:xml:ns:xmpp-stanzas") != 0)
		return 0;
	for (const char *const *g = gone; *g != NULL; g++)
		if (strcmp(c->name, *g) == 0) {
			muc_room_gone(w, r, from, 0);
			return 1;
		}
	return 0;
}

static void muc_presence(struct worker *w, struct muc_room *r,
			 const struct xml_node *st, const char *from,
			 const char *nick)
{
	const char *type = xml_attr(st, "type");
	unsigned si;
	struct muc_occ *o = muc_room_by_jid(r, from, &si);
	if (type != NULL && strcmp(type, "error") == 0) {
		if (o != NULL)
			muc_error_gone(w, r, o, st, from);
		return;
	}
	if (type != NULL && strcmp(type, "unavailable") == 0) {
		/* section 7.14 */
		struct buf kids;
		if (o == NULL)
			return;
		buf_init(&kids, 0);
		if (muc_presence_children(st, &kids, 1024) < 0) {
			buf_free(&kids);
			buf_init(&kids, 0);
			buf_append(&kids, "", 1);
		}
		r->refs++;
		muc_exit(w, r, o, si, NULL, 0, NULL, NULL, buf_head(&kids));
		if (!r->dead)
			muc_maybe_empty(w, r);
		muc_room_unref(r);
		buf_free(&kids);
		return;
	}
	if (type != NULL)
		return;         /* subscription stanzas, probes: not ours */
	if (nick == NULL || nick[0] == '\0') {
		muc_join_error(w, st, "modify", "jid-malformed",
			       "a nickname is required");
		return;
	}
	if (o == NULL) {
		muc_join(w, r, st, from, nick);
		return;
	}
	if (strcmp(o->nick, nick) != 0) {
		muc_nick_change(w, r, o, st, nick);
		return;
	}
	/* section 7.7: a new status; or the client joining again (it
	 * lost track): then it gets everything again, as Prosody does */
	struct buf kids;
	buf_init(&kids, 0);
	if (muc_presence_children(st, &kids,
				  w->cfg->muc_max_presence_bytes) < 0) {
		muc_bounce(w, st, "modify", "not-acceptable",
			   "the presence is too large (muc.max_presence_bytes)");
		buf_free(&kids);
		return;
	}
	if (!muc_rate_ok(w, o)) {
		/* presence changes and rejoins cost a broadcast to every
		 * occupant: they share the message budget.  Past it the
		 * change is dropped, not answered: an error presence from
		 * its own occupant JID means "you are out" to clients */
		buf_free(&kids);
		log_debug("muc %s: presence of %s over the budget: dropped",
			  r->jid, from);
		return;
	}
	char *p = strdup(buf_head(&kids));
	buf_free(&kids);
	if (p == NULL)
		return;
	free(o->sess[si].presence);
	o->sess[si].presence = p;
	o->last = si;
	if (xml_child(st, NS_MUC, "x") != NULL) {
		/* a join again from a session already in: a fresh view */
		struct muc_sess s = o->sess[si];
		char *jid = strdup(s.jid);
		if (jid == NULL)
			return;
		memmove(&o->sess[si], &o->sess[si + 1],
			(o->nsess - si - 1) * sizeof(*o->sess));
		o->nsess--;
		o->last = o->nsess > 0 ? o->nsess - 1 : 0;
		free(s.jid);
		struct muc_occ *keep = o;
		int alone = o->nsess == 0;
		if (alone) {
			/* out silently and in again */
			for (unsigned i = 0; i < r->nocc; i++)
				if (r->occ[i] == keep) {
					memmove(&r->occ[i], &r->occ[i + 1],
						(r->nocc - i - 1) *
						sizeof(*r->occ));
					r->nocc--;
					break;
				}
			muc_enter(w, r, st, jid, keep->bare, nick, keep->aff,
				  keep->remote, NULL, s.presence, 0, keep);
			muc_occ_free(keep);
		} else {
			muc_enter(w, r, st, jid, keep->bare, nick, keep->aff,
				  keep->remote, keep, s.presence, 0, NULL);
		}
		free(s.presence);
		free(jid);
		return;
	}
	muc_show_occupant(w, r, o, NULL, 0, NULL, NULL);
	if (!r->dead)
		muc_db_occupant_put(w, r, o, &o->sess[o->last]);
}

/* ---- messages -------------------------------------------------------- */

/* muc.messages_per_minute, a burst of a tenth of it: 1 if o may send. */
static int muc_rate_ok(struct worker *w, struct muc_occ *o)
{
	double per_ms = w->cfg->muc_messages_per_minute / 60000.0;
	double burst = w->cfg->muc_messages_per_minute / 10.0;
	if (burst < 1)
		burst = 1;
	if (o->tokens < 0) {
		o->tokens = burst;
	} else {
		o->tokens += (double)(w->now_ms - o->tokens_ms) * per_ms;
		if (o->tokens > burst)
			o->tokens = burst;
	}
	o->tokens_ms = w->now_ms;
	if (o->tokens < 1)
		return 0;
	o->tokens -= 1;
	return 1;
}

/* Whether a XEP-0359 <stanza-id/> claims to be by a JID of ours (a
 * room, an account: the sender's own archive id included). */
static int muc_own_sid(struct worker *w, struct arena *a,
		       const struct xml_node *n)
{
	const char *by, *err;
	struct jid j;
	if (strcmp(n->ns, NS_SID) != 0 || strcmp(n->name, "stanza-id") != 0)
		return 0;
	if ((by = xml_attr(n, "by")) == NULL || jid_parse(a, by, &j, &err) < 0)
		return 1;
	return stream_hosted(w, j.domain) || muc_serves_domain(w, j.domain);
}

/* Take off what a client may not claim (muc_claimed) and stanza-ids
 * by JIDs of ours (XEP-0359 section 3). */
static void muc_strip_claims(struct worker *w, struct arena *a,
			     struct xml_node *st)
{
	struct xml_node *prev = NULL, *n = st->children;
	while (n != NULL) {
		struct xml_node *next = n->next;
		if (n->name != NULL &&
		    (muc_claimed(n) || muc_own_sid(w, a, n)))
			xml_unlink_child(st, prev, n);
		else
			prev = n;
		n = next;
	}
}

/* Every session of every occupant. */
static void muc_dests_all(const struct muc_room *r, struct muc_dests *ds)
{
	for (unsigned i = 0; i < r->nocc; i++)
		muc_dests_add(ds, r->occ[i]);
}

/* Section 7.4 (and 8.1 for the subject): a groupchat message from o. */
static void muc_groupchat(struct worker *w, struct muc_room *r,
			  struct arena *a, struct xml_node *st,
			  struct muc_occ *o)
{
	const struct xml_node *subj = xml_child(st, NS_CLIENT, "subject");
	const struct xml_node *body = xml_child(st, NS_CLIENT, "body");
	if (o->role < MUC_ROLE_PARTICIPANT) {
		muc_bounce(w, st, "auth", "forbidden",
			   "visitors may not speak in this room");
		return;
	}
	if (!muc_rate_ok(w, o)) {
		muc_bounce(w, st, "wait", "resource-constraint",
			   "too many messages (muc.messages_per_minute)");
		return;
	}
	int subject_change = subj != NULL && body == NULL;
	char *subject = NULL;
	if (subject_change) {
		if (o->role != MUC_ROLE_MODERATOR && !r->cf.change_subject) {
			muc_bounce(w, st, "auth", "forbidden",
				   "only moderators may change the subject");
			return;
		}
		subject = xml_text(a, subj);
		if (subject == NULL) {
			muc_bounce(w, st, "wait", "resource-constraint", NULL);
			return;
		}
		if (strlen(subject) > w->cfg->muc_max_subject_bytes) {
			muc_bounce(w, st, "modify", "not-acceptable",
				   "the subject is too long "
				   "(muc.max_subject_bytes)");
			return;
		}
	}
	/* the message as the room sends it */
	char from[IPC_JID_MAX + 1];
	snprintf(from, sizeof(from), "%s/%s", r->jid, o->nick);
	if (xml_set_attr(a, st, "from", from) < 0 ||
	    xml_set_attr(a, st, "to", NULL) < 0) {
		muc_bounce(w, st, "wait", "resource-constraint", NULL);
		return;
	}
	muc_strip_claims(w, a, st);
	struct xml_node *oid = o->oid[0] != '\0' ?
			       xml_add_child(a, st, NS_OCCUPANT_ID,
					     "occupant-id") : NULL;
	if (oid != NULL)
		xml_set_attr(a, oid, "id", o->oid);
	if (subject_change) {
		char *s = strdup(subject), *by = strdup(o->nick);
		if (s == NULL || by == NULL) {
			free(s);
			free(by);
			return;
		}
		free(r->subject);
		free(r->subject_by);
		r->subject = s;
		r->subject_by = by;
		muc_db_subject(w, r);
	} else if (r->cf.logging) {
		muc_archive_room(w, r, o, st);
	}
	struct buf t;
	struct muc_dests ds = { 0 };
	buf_init(&t, xml_out_cap(w->cfg->max_stanza_size));
	if (xml_serialize(&t, st, NS_CLIENT) == 0) {
		muc_dests_all(r, &ds);
		muc_send_dests(w, r, buf_head(&t), buf_used(&t), &ds);
	}
	free(ds.d);
	buf_free(&t);
}

/* Section 7.5: a private message from o to nick. */
static void muc_private(struct worker *w, struct muc_room *r, struct arena *a,
			struct xml_node *st, struct muc_occ *o,
			const char *nick)
{
	struct muc_occ *t = muc_by_nick(r, nick);
	enum muc_allow_pm pm = r->cf.allow_pm;
	if (t == NULL) {
		muc_bounce(w, st, "cancel", "item-not-found",
			   "no occupant has that nickname");
		return;
	}
	if (pm == MUC_PM_NONE ||
	    (pm == MUC_PM_MODERATORS && o->role != MUC_ROLE_MODERATOR) ||
	    (pm == MUC_PM_PARTICIPANTS && o->role < MUC_ROLE_PARTICIPANT)) {
		muc_bounce(w, st, "cancel", "not-allowed",
			   "private messages are not allowed here");
		return;
	}
	if (!muc_rate_ok(w, o)) {
		muc_bounce(w, st, "wait", "resource-constraint",
			   "too many messages (muc.messages_per_minute)");
		return;
	}
	char from[IPC_JID_MAX + 1];
	snprintf(from, sizeof(from), "%s/%s", r->jid, o->nick);
	if (xml_set_attr(a, st, "from", from) < 0 ||
	    xml_set_attr(a, st, "to", NULL) < 0)
		return;
	muc_strip_claims(w, a, st);
	/* section 7.5: marked, so that the recipient's server treats it
	 * as a MUC private message (XEP-0280 section 6) */
	xml_add_child(a, st, NS_MUC_USER, "x");
	struct xml_node *oid = o->oid[0] != '\0' ?
			       xml_add_child(a, st, NS_OCCUPANT_ID,
					     "occupant-id") : NULL;
	if (oid != NULL)
		xml_set_attr(a, oid, "id", o->oid);
	/* routed like any message to each session: the recipient's
	 * archive and carbons rules apply (XEP-0313, XEP-0280 section 6);
	 * one that cannot be delivered bounces back to the room */
	for (unsigned k = 0; k < t->nsess; k++)
		if (xml_set_attr(a, st, "to", t->sess[k].jid) == 0)
			route_stanza(w, a, st);
}

/* Invitations a room remembers, so that a decline goes only back to
 * someone who invited the decliner (MUC_INVITED_MAX, oldest forgotten
 * first), and one message carries at most MUC_INVITES_MAX of them. */
#define MUC_INVITES_MAX 5

static void muc_invited_add(struct muc_room *r, const char *invitee,
			    const char *inviter)
{
	char *a = strdup(invitee), *b = strdup(inviter);
	if (a == NULL || b == NULL) {
		free(a);
		free(b);
		return;
	}
	if (r->ninvited == MUC_INVITED_MAX) {
		free(r->invited[0].invitee);
		free(r->invited[0].inviter);
		memmove(&r->invited[0], &r->invited[1],
			(MUC_INVITED_MAX - 1) * sizeof(r->invited[0]));
		r->ninvited--;
	}
	r->invited[r->ninvited].invitee = a;
	r->invited[r->ninvited++].inviter = b;
}

/* The invitation of decliner (bare JID) by to (full or bare): taken
 * from the list, 1; else 0. */
static int muc_invited_take(struct muc_room *r, const char *decliner,
			    const char *to)
{
	size_t n = strlen(to);
	for (unsigned i = 0; i < r->ninvited; i++) {
		const char *inv = r->invited[i].inviter;
		if (strcmp(r->invited[i].invitee, decliner) != 0 ||
		    (strcmp(inv, to) != 0 &&
		     !(strncmp(inv, to, n) == 0 && inv[n] == '/')))
			continue;
		free(r->invited[i].invitee);
		free(r->invited[i].inviter);
		r->invited[i] = r->invited[--r->ninvited];
		return 1;
	}
	return 0;
}

/* Section 7.8.2: mediated invitations from occupant o, and their
 * declines (7.8.2, from anyone invited, back to who invited them). */
static void muc_invite(struct worker *w, struct muc_room *r,
		       const struct xml_node *st, struct muc_occ *o,
		       const struct xml_node *x, const char *from)
{
	unsigned count = 0;
	for (const struct xml_node *i = xml_first_element(x); i != NULL;
	     i = xml_next_element(i))
		count += xml_is(i, NS_MUC_USER, "invite") ||
			 xml_is(i, NS_MUC_USER, "decline");
	if (count > MUC_INVITES_MAX) {
		muc_bounce(w, st, "modify", "not-acceptable",
			   "too many invitations in one message");
		return;
	}
	for (const struct xml_node *i = xml_first_element(x); i != NULL;
	     i = xml_next_element(i)) {
		if (!xml_is(i, NS_MUC_USER, "invite") &&
		    !xml_is(i, NS_MUC_USER, "decline"))
			continue;
		int decline = strcmp(i->name, "decline") == 0;
		const char *to = xml_attr(i, "to");
		const struct xml_node *reason = xml_child(i, NS_MUC_USER,
							  "reason");
		struct arena ar;
		struct jid tj;
		const char *err, *tofull, *tb;
		if (to == NULL) {
			muc_bounce(w, st, "modify", "bad-request",
				   "an invitation names whom it is for");
			return;
		}
		arena_init(&ar, 512);
		if (jid_parse(&ar, to, &tj, &err) < 0 || tj.local == NULL ||
		    (tofull = jid_full(&ar, &tj)) == NULL ||
		    (tb = jid_bare(&ar, &tj)) == NULL) {
			/* an account, not a whole server */
			arena_free(&ar);
			muc_bounce(w, st, "modify", "jid-malformed", NULL);
			return;
		}
		if (decline) {
			const char *mine = arena_strndup(&ar, from,
							 strcspn(from, "/"));
			if (mine == NULL || !muc_invited_take(r, mine, tofull)) {
				arena_free(&ar);
				muc_bounce(w, st, "cancel", "not-acceptable",
					   "no invitation of yours from them");
				return;
			}
		} else {
			if (o == NULL) {
				arena_free(&ar);
				muc_bounce(w, st, "cancel", "not-acceptable",
					   "only occupants may invite");
				return;
			}
			if (r->cf.members_only && !r->cf.allow_invites &&
			    o->aff < MUC_AFF_ADMIN) {
				arena_free(&ar);
				muc_bounce(w, st, "auth", "forbidden",
					   "only admins may invite here");
				return;
			}
			if (!muc_rate_ok(w, o)) {
				arena_free(&ar);
				muc_bounce(w, st, "wait", "resource-constraint",
					   "too many messages "
					   "(muc.messages_per_minute)");
				return;
			}
			/* section 7.8.2: in a members-only room the invitee
			 * becomes a member, within muc.max_affiliations */
			if (r->cf.members_only &&
			    muc_room_aff(r, tb) == MUC_AFF_NONE) {
				if (r->naffs >= w->cfg->muc_max_affiliations) {
					arena_free(&ar);
					muc_bounce(w, st, "modify",
						   "not-acceptable",
						   "the room has too many "
						   "members "
						   "(muc.max_affiliations)");
					return;
				}
				muc_set_affiliation(w, r, tb, MUC_AFF_MEMBER,
						    NULL, o->nick);
			}
			muc_invited_add(r, tb, from);
		}
		struct buf t;
		buf_init(&t, 0);
		buf_appendf(&t, "<message");
		muc_attr(&t, "from", r->jid);
		muc_attr(&t, "to", tofull);
		buf_appendf(&t, "><x xmlns='" NS_MUC_USER "'><%s",
			    decline ? "decline" : "invite");
		muc_attr(&t, "from", from);
		if (reason != NULL) {
			char *rs = xml_text(&ar, reason);
			buf_appendf(&t, "><reason>");
			if (rs != NULL)
				xml_escape(&t, rs, strlen(rs), 0);
			buf_appendf(&t, "</reason></%s>",
				    decline ? "decline" : "invite");
		} else {
			buf_appendf(&t, "/>");
		}
		if (!decline && r->cf.password_protected &&
		    r->cf.password[0] != '\0') {
			buf_appendf(&t, "<password>");
			xml_escape(&t, r->cf.password,
				   strlen(r->cf.password), 0);
			buf_appendf(&t, "</password>");
		}
		buf_appendf(&t, "</x>");
		if (!decline) {
			/* XEP-0249 too, for clients that read only that */
			buf_appendf(&t, "<x xmlns='" NS_CONFERENCE "'");
			muc_attr(&t, "jid", r->jid);
			buf_appendf(&t, "/>");
		}
		buf_appendf(&t, "</message>");
		muc_route_text(w, buf_head(&t), buf_used(&t));
		buf_free(&t);
		arena_free(&ar);
	}
}

/* The value of field var of a data form, or NULL. */
static const char *muc_field(struct arena *a, const struct xml_node *x,
			     const char *var)
{
	for (const struct xml_node *f = xml_first_element(x); f != NULL;
	     f = xml_next_element(f)) {
		const char *v = xml_attr(f, "var");
		if (xml_is(f, NS_XDATA, "field") && v != NULL &&
		    strcmp(v, var) == 0) {
			const struct xml_node *val = xml_child(f, NS_XDATA,
							       "value");
			return val != NULL ? xml_text(a, val) : "";
		}
	}
	return NULL;
}

static int muc_form_type_is(const struct xml_node *x, const char *ns)
{
	struct arena a;
	arena_init(&a, 256);
	const char *t = muc_field(&a, x, "FORM_TYPE");
	int is = t != NULL && strcmp(t, ns) == 0;
	arena_free(&a);
	return is;
}

/* Section 7.13: a visitor asks for voice (a muc#request form with
 * muc#role participant): every moderator gets the approval form; a
 * moderator's submitted form with muc#request_allow true gives the
 * occupant it names voice (section 8.6). */
static void muc_voice_request(struct worker *w, struct muc_room *r,
			      struct arena *a, const struct xml_node *st,
			      struct muc_occ *o, const struct xml_node *x)
{
	const char *xt = xml_attr(x, "type");
	const char *allow = muc_field(a, x, "muc#request_allow");
	if (xt != NULL && strcmp(xt, "submit") == 0 && allow != NULL) {
		/* a moderator's answer */
		const char *nick = muc_field(a, x, "muc#roomnick");
		struct muc_occ *t = nick != NULL ? muc_by_nick(r, nick) : NULL;
		if (o->role != MUC_ROLE_MODERATOR) {
			muc_bounce(w, st, "auth", "forbidden",
				   "only moderators approve voice requests");
			return;
		}
		if (t == NULL || (strcmp(allow, "1") != 0 &&
				  strcmp(allow, "true") != 0) ||
		    t->role != MUC_ROLE_VISITOR)
			return;     /* denied, or nothing to do */
		t->role = MUC_ROLE_PARTICIPANT;
		muc_show_occupant(w, r, t, NULL, 0, o->nick, NULL);
		for (unsigned k = 0; k < t->nsess && !r->dead; k++)
			muc_db_occupant_put(w, r, t, &t->sess[k]);
		return;
	}
	const char *role = muc_field(a, x, "muc#role");
	if (role == NULL || strcmp(role, "participant") != 0 ||
	    o->role != MUC_ROLE_VISITOR) {
		muc_bounce(w, st, "modify", "bad-request",
			   "a voice request is from a visitor for the role "
			   "participant");
		return;
	}
	struct buf t;
	buf_init(&t, 0);
	buf_appendf(&t, "<message");
	muc_attr(&t, "from", r->jid);
	buf_appendf(&t, "><x xmlns='" NS_XDATA "' type='form'>"
		    "<title>Voice request</title><instructions>To approve "
		    "this request for voice, select the &quot;Grant voice to "
		    "this person?&quot; checkbox and click OK. To skip this "
		    "request, click the cancel button.</instructions>"
		    "<field var='FORM_TYPE' type='hidden'><value>"
		    NS_MUC_REQUEST "</value></field>"
		    "<field var='muc#role' type='list-single' label='Requested "
		    "role'><value>participant</value></field>");
	/* only moderators get it, and they see real JIDs */
	buf_appendf(&t, "<field var='muc#jid' type='jid-single' "
		    "label='User ID'><value>");
	xml_escape(&t, o->sess[o->last].jid, strlen(o->sess[o->last].jid), 0);
	buf_appendf(&t, "</value></field>");
	buf_appendf(&t, "<field var='muc#roomnick' type='text-single' "
		    "label='Room Nickname'><value>");
	xml_escape(&t, o->nick, strlen(o->nick), 0);
	buf_appendf(&t, "</value></field><field var='muc#request_allow' "
		    "type='boolean' label='Grant voice to this person?'>"
		    "<value>false</value></field></x></message>");
	struct muc_dests ds = { 0 };
	for (unsigned i = 0; i < r->nocc; i++)
		if (r->occ[i]->role == MUC_ROLE_MODERATOR)
			muc_dests_add(&ds, r->occ[i]);
	muc_send_dests(w, r, buf_head(&t), buf_used(&t), &ds);
	free(ds.d);
	buf_free(&t);
}

static void muc_message(struct worker *w, struct muc_room *r,
			struct arena *a, struct xml_node *st,
			const char *from, const char *nick)
{
	const char *type = xml_attr(st, "type");
	unsigned si;
	struct muc_occ *o = muc_room_by_jid(r, from, &si);
	if (type != NULL && strcmp(type, "error") == 0) {
		/* a groupchat message or PM the room sent bounced */
		if (o != NULL)
			muc_error_gone(w, r, o, st, from);
		return;
	}
	if (nick == NULL) {
		const struct xml_node *x = xml_child(st, NS_MUC_USER, "x");
		if (x != NULL && (xml_child(x, NS_MUC_USER, "invite") ||
				  xml_child(x, NS_MUC_USER, "decline"))) {
			muc_invite(w, r, st, o, x, from);
			return;
		}
		if (o == NULL) {
			muc_bounce(w, st, "cancel", "not-acceptable",
				   "only occupants may send messages to the "
				   "room");
			return;
		}
		const struct xml_node *form = xml_child(st, NS_XDATA, "x");
		if ((type == NULL || strcmp(type, "normal") == 0) &&
		    form != NULL && muc_form_type_is(form, NS_MUC_REQUEST)) {
			muc_voice_request(w, r, a, st, o, form);
			return;
		}
		if (type == NULL || strcmp(type, "groupchat") != 0) {
			muc_bounce(w, st, "modify", "bad-request",
				   "messages to the room are groupchat");
			return;
		}
		muc_groupchat(w, r, a, st, o);
		return;
	}
	if (o == NULL) {
		muc_bounce(w, st, "cancel", "not-acceptable",
			   "only occupants may send private messages");
		return;
	}
	if (type != NULL && strcmp(type, "groupchat") == 0) {
		muc_bounce(w, st, "modify", "bad-request",
			   "a private message is not groupchat");
		return;
	}
	muc_private(w, r, a, st, o, nick);
}

/* ---- affiliations and roles (sections 8, 9, 10) ---------------------- */

static const unsigned muc_c301[] = { 301 }, muc_c307[] = { 307 },
		      muc_c321[] = { 321 };

/* All sessions of o leave with codes (kicked, banned, removed). */
static void muc_remove_occ(struct worker *w, struct muc_room *r,
			   struct muc_occ *o, const unsigned *codes,
			   const char *actor, const char *reason)
{
	r->refs++;
	while (!r->dead && o->nsess > 0) {
		int last = o->nsess == 1;
		muc_exit(w, r, o, o->nsess - 1, codes, 1, actor, reason, "");
		if (last)
			break;      /* o is freed */
	}
	muc_room_unref(r);
}

/* Set jid's affiliation (bare JID or domain); the occupants it covers
 * change with it.  0, or -1 out of memory. */
int muc_set_affiliation(struct worker *w, struct muc_room *r, const char *jid,
			enum muc_aff aff, const char *reason,
			const char *actor)
{
	struct muc_affil *e = muc_affil_find(r, jid);
	if (aff == MUC_AFF_NONE) {
		if (e != NULL) {
			free(e->jid);
			free(e->nick);
			free(e->reason);
			*e = r->affs[--r->naffs];
			muc_db_affil_del(w, r, jid);
		}
	} else {
		if (e == NULL) {
			struct muc_affil *m = realloc(r->affs, (r->naffs + 1) *
						      sizeof(*m));
			if (m == NULL)
				return -1;
			r->affs = m;
			e = &m[r->naffs];
			memset(e, 0, sizeof(*e));
			if ((e->jid = strdup(jid)) == NULL ||
			    (e->nick = strdup("")) == NULL) {
				free(e->jid);
				return -1;
			}
			r->naffs++;
		}
		char *rs = strdup(reason != NULL ? reason : "");
		if (rs != NULL) {
			free(e->reason);
			e->reason = rs;
		}
		e->aff = aff;
		muc_db_affil_put(w, r, e);
	}
	/* the occupants it covers */
	r->refs++;
	for (unsigned i = 0; i < r->nocc && !r->dead; i++) {
		struct muc_occ *o = r->occ[i];
		enum muc_aff now = muc_room_aff(r, o->bare);
		enum muc_aff before = o->aff;
		if (now == o->aff)
			continue;
		o->aff = now;
		if (now == MUC_AFF_OUTCAST) {
			muc_remove_occ(w, r, o, muc_c301, actor, reason);
			i = (unsigned)-1;
		} else if (r->cf.members_only && now < MUC_AFF_MEMBER) {
			muc_remove_occ(w, r, o, muc_c321, actor, reason);
			i = (unsigned)-1;
		} else {
			/* section 5.2: a role follows the affiliation up, and
			 * down only as far as the new one requires (a
			 * moderator given by a moderator stays one unless the
			 * affiliation falls) */
			enum muc_role def = muc_default_role(r, now);
			enum muc_role was = o->role;
			if (now > before ? def > o->role : def < o->role)
				o->role = def;
			muc_show_occupant(w, r, o, NULL, 0, actor, reason);
			if (was != MUC_ROLE_MODERATOR &&
			    o->role == MUC_ROLE_MODERATOR &&
			    !r->cf.whois_anyone)
				muc_send_occupants(w, r, o, NULL);
			for (unsigned k = 0; k < o->nsess && !r->dead; k++)
				muc_db_occupant_put(w, r, o, &o->sess[k]);
		}
	}
	muc_room_unref(r);
	return 0;
}

static unsigned muc_owner_count(const struct muc_room *r)
{
	unsigned n = 0;
	for (unsigned i = 0; i < r->naffs; i++)
		n += r->affs[i].aff == MUC_AFF_OWNER;
	return n;
}

/* One <item/> of an admin set: checked only (apply 0) or done. */
/* What the items of one admin set checked so far would change: the
 * request is all or nothing (the checks of later items count the
 * earlier ones). */
struct muc_admin_sim {
	unsigned owners_removed;
	unsigned affs_added;
};

static const char *muc_admin_item(struct worker *w, struct muc_room *r,
				  struct arena *a, struct muc_occ *actor,
				  const struct xml_node *item,
				  struct muc_admin_sim *sim, const char **type_r)
{
	int apply = sim == NULL;
	/* the actor may be the one removed (a ban of its own domain):
	 * its nick is copied before anything is done */
	const char *actor_nick = arena_strdup(a, actor->nick);
	if (actor_nick == NULL) {
		*type_r = "wait";
		return "resource-constraint";
	}
	const char *nick = xml_attr(item, "nick");
	const char *jid = xml_attr(item, "jid");
	const char *role_s = xml_attr(item, "role");
	const char *aff_s = xml_attr(item, "affiliation");
	const struct xml_node *rn = xml_child(item, NS_MUC_ADMIN, "reason");
	const char *reason = rn != NULL ? xml_text(a, rn) : NULL;
	enum muc_role role;
	enum muc_aff aff;
	*type_r = "cancel";
	if (role_s != NULL && aff_s == NULL) {
		if (muc_role_parse(role_s, &role) < 0 || nick == NULL) {
			*type_r = "modify";
			return "bad-request";
		}
		struct muc_occ *t = muc_by_nick(r, nick);
		if (t == NULL)
			return "item-not-found";
		/* section 8: moderators change visitors and participants;
		 * moderator status is given and taken by admins and owners;
		 * nobody changes the role of an admin or owner below
		 * moderator, nor of someone of higher affiliation */
		if (actor->role != MUC_ROLE_MODERATOR) {
			*type_r = "auth";
			return "forbidden";
		}
		if (t->aff > actor->aff ||
		    (t->aff >= MUC_AFF_ADMIN && role < MUC_ROLE_MODERATOR) ||
		    ((role == MUC_ROLE_MODERATOR ||
		      t->role == MUC_ROLE_MODERATOR) &&
		     actor->aff < MUC_AFF_ADMIN))
			return "not-allowed";
		if (!apply)
			return NULL;
		if (role == MUC_ROLE_NONE) {
			muc_remove_occ(w, r, t, muc_c307, actor_nick, reason);
		} else if (role != t->role) {
			enum muc_role was = t->role;
			t->role = role;
			muc_show_occupant(w, r, t, NULL, 0, actor_nick,
					  reason);
			/* a new moderator of a semi-anonymous room now sees
			 * the real JIDs: the occupants again, with them */
			if (was != MUC_ROLE_MODERATOR &&
			    role == MUC_ROLE_MODERATOR && !r->cf.whois_anyone)
				muc_send_occupants(w, r, t, NULL);
			for (unsigned k = 0; k < t->nsess && !r->dead; k++)
				muc_db_occupant_put(w, r, t, &t->sess[k]);
		}
		return NULL;
	}
	if (aff_s == NULL || role_s != NULL || muc_aff_parse(aff_s, &aff) < 0 ||
	    jid == NULL) {
		*type_r = "modify";
		return "bad-request";
	}
	struct jid j;
	const char *err, *bare;
	if (jid_parse(a, jid, &j, &err) < 0 ||
	    (bare = jid_bare(a, &j)) == NULL) {
		*type_r = "modify";
		return "jid-malformed";
	}
	enum muc_aff cur = muc_room_aff(r, bare);
	/* sections 9 and 10: admins change members, outcasts and none;
	 * owners change everything; the last owner stays */
	if (actor->aff < MUC_AFF_ADMIN) {
		*type_r = "auth";
		return "forbidden";
	}
	if (actor->aff < MUC_AFF_OWNER &&
	    (cur >= MUC_AFF_ADMIN || aff >= MUC_AFF_ADMIN))
		return "not-allowed";
	unsigned removed = sim != NULL ? sim->owners_removed : 0;
	unsigned added = sim != NULL ? sim->affs_added : 0;
	if (cur == MUC_AFF_OWNER && aff != MUC_AFF_OWNER &&
	    muc_owner_count(r) <= removed + 1)
		return "conflict";
	if (aff != MUC_AFF_NONE && muc_affil_find(r, bare) == NULL &&
	    r->naffs + added >= w->cfg->muc_max_affiliations) {
		*type_r = "modify";
		return "not-acceptable";
	}
	if (!apply) {
		if (cur == MUC_AFF_OWNER && aff != MUC_AFF_OWNER)
			sim->owners_removed++;
		if (aff != MUC_AFF_NONE && muc_affil_find(r, bare) == NULL)
			sim->affs_added++;
		return NULL;
	}
	if (muc_set_affiliation(w, r, bare, aff, reason, actor_nick) < 0) {
		*type_r = "wait";
		return "resource-constraint";
	}
	return NULL;
}

/* An admin get: the list of a role or an affiliation (9.5, 10.5). */
static void muc_admin_list(struct worker *w, struct muc_room *r,
			   const struct xml_node *st, struct muc_occ *actor,
			   const struct xml_node *item)
{
	const char *role_s = xml_attr(item, "role");
	const char *aff_s = xml_attr(item, "affiliation");
	enum muc_role role;
	enum muc_aff aff;
	struct buf out;
	buf_init(&out, 0);
	buf_appendf(&out, "<query xmlns='" NS_MUC_ADMIN "'>");
	if (role_s != NULL && muc_role_parse(role_s, &role) == 0 &&
	    role != MUC_ROLE_NONE) {
		if (actor->role != MUC_ROLE_MODERATOR) {
			buf_free(&out);
			muc_bounce(w, st, "auth", "forbidden", NULL);
			return;
		}
		for (unsigned i = 0; i < r->nocc; i++) {
			const struct muc_occ *o = r->occ[i];
			if (o->role != role)
				continue;
			buf_appendf(&out, "<item affiliation='%s' role='%s'",
				    muc_aff_name(o->aff), muc_role_name(role));
			muc_attr(&out, "nick", o->nick);
			if (muc_sees_jids(r, actor))
				muc_attr(&out, "jid", o->sess[o->last].jid);
			buf_appendf(&out, "/>");
		}
	} else if (aff_s != NULL && muc_aff_parse(aff_s, &aff) == 0 &&
		   aff != MUC_AFF_NONE) {
		int may = actor->aff >= MUC_AFF_ADMIN ||
			  (aff == MUC_AFF_MEMBER &&
			   (r->cf.get_member_list & (1u << actor->role)));
		if (!may) {
			buf_free(&out);
			muc_bounce(w, st, "auth", "forbidden", NULL);
			return;
		}
		for (unsigned i = 0; i < r->naffs; i++) {
			const struct muc_affil *e = &r->affs[i];
			if (e->aff != aff)
				continue;
			buf_appendf(&out, "<item affiliation='%s'",
				    muc_aff_name(aff));
			muc_attr(&out, "jid", e->jid);
			if (e->nick[0] != '\0')
				muc_attr(&out, "nick", e->nick);
			if (e->reason[0] == '\0') {
				buf_appendf(&out, "/>");
			} else {
				buf_appendf(&out, "><reason>");
				xml_escape(&out, e->reason, strlen(e->reason),
					   0);
				buf_appendf(&out, "</reason></item>");
			}
		}
	} else {
		buf_free(&out);
		muc_bounce(w, st, "modify", "bad-request",
			   "ask for one role or one affiliation");
		return;
	}
	buf_appendf(&out, "</query>");
	buf_append(&out, "", 1);
	muc_iq_result(w, st, buf_head(&out));
	buf_free(&out);
}

static void muc_admin(struct worker *w, struct muc_room *r, struct arena *a,
		      const struct xml_node *st, const struct xml_node *q,
		      const char *from, int set)
{
	const char *bare = iq_bare_of(a, from);
	struct muc_occ *actor = muc_room_by_jid(r, from, NULL);
	struct muc_occ stand = { .role = MUC_ROLE_NONE };
	if (actor == NULL) {
		/* an admin or owner need not be in the room to manage
		 * affiliations (sections 9, 10) */
		stand.aff = bare != NULL ? muc_room_aff(r, bare) : MUC_AFF_NONE;
		stand.nick = (char *)"";
		actor = &stand;
	}
	const struct xml_node *first = xml_child(q, NS_MUC_ADMIN, "item");
	if (first == NULL) {
		muc_bounce(w, st, "modify", "bad-request", "no <item/>");
		return;
	}
	if (!set) {
		muc_admin_list(w, r, st, actor, first);
		return;
	}
	/* all items are checked, each counting the ones before it, before
	 * any is done: the request is all or nothing */
	const char *type, *cond = NULL;
	struct muc_admin_sim sim = { 0, 0 };
	for (const struct xml_node *i = first; i != NULL && cond == NULL;
	     i = xml_next_element(i))
		if (xml_is(i, NS_MUC_ADMIN, "item"))
			cond = muc_admin_item(w, r, a, actor, i, &sim, &type);
	if (cond != NULL) {
		muc_bounce(w, st, type, cond, NULL);
		return;
	}
	r->refs++;
	for (const struct xml_node *i = first; i != NULL && !r->dead;
	     i = xml_next_element(i)) {
		if (!xml_is(i, NS_MUC_ADMIN, "item"))
			continue;
		/* actor may have left (kicked itself): act as its
		 * affiliation */
		struct muc_occ *act = muc_room_by_jid(r, from, NULL);
		if (act == NULL)
			act = &stand;
		stand.aff = bare != NULL ? muc_room_aff(r, bare) : stand.aff;
		if (stand.nick == NULL)
			stand.nick = (char *)"";
		muc_admin_item(w, r, a, act, i, NULL, &type);
	}
	muc_iq_result(w, st, NULL);
	if (!r->dead)
		muc_maybe_empty(w, r);
	muc_room_unref(r);
}

/* Section 10.9: the room is destroyed; its occupants are told where to
 * go. */
static void muc_destroy(struct worker *w, struct muc_room *r,
			const struct xml_node *d, struct arena *a)
{
	struct buf el;
	const char *alt = xml_attr(d, "jid");
	const struct xml_node *rn = xml_child(d, NS_MUC_OWNER, "reason");
	const char *reason = rn != NULL ? xml_text(a, rn) : NULL;
	buf_init(&el, 0);
	buf_appendf(&el, "<destroy");
	if (alt != NULL)
		muc_attr(&el, "jid", alt);
	if (reason != NULL) {
		buf_appendf(&el, "><reason>");
		xml_escape(&el, reason, strlen(reason), 0);
		buf_appendf(&el, "</reason></destroy>");
	} else {
		buf_appendf(&el, "/>");
	}
	buf_append(&el, "", 1);
	for (unsigned i = 0; i < r->nocc; i++) {
		struct muc_occ *o = r->occ[i];
		struct muc_item it = { .o = o, .unavailable = 1, .self = 1,
				       .destroy = buf_head(&el) };
		struct buf t;
		struct muc_dests ds = { 0 };
		buf_init(&t, 0);
		muc_presence_xml(&t, r, &it);
		muc_dests_add(&ds, o);
		muc_fanout(w, buf_head(&t), buf_used(&t), ds.d, ds.n, NULL,
			   NULL);
		free(ds.d);
		buf_free(&t);
	}
	buf_free(&el);
	log_info("muc %s: destroyed", r->jid);
	muc_room_drop(w, r);
}

static void muc_owner(struct worker *w, struct muc_room *r, struct arena *a,
		      const struct xml_node *st, const struct xml_node *q,
		      const char *from, int set)
{
	const char *bare = iq_bare_of(a, from);
	if (bare == NULL || muc_room_aff(r, bare) != MUC_AFF_OWNER) {
		muc_bounce(w, st, "auth", "forbidden",
			   "only owners configure the room");
		return;
	}
	if (!set) {
		struct buf out;
		buf_init(&out, 0);
		buf_appendf(&out, "<query xmlns='" NS_MUC_OWNER "'>");
		muc_config_form(&r->cf, w->cfg, &out);
		buf_appendf(&out, "</query>");
		buf_append(&out, "", 1);
		muc_iq_result(w, st, buf_head(&out));
		buf_free(&out);
		return;
	}
	const struct xml_node *d = xml_child(q, NS_MUC_OWNER, "destroy");
	if (d != NULL) {
		muc_iq_result(w, st, NULL);
		muc_destroy(w, r, d, a);
		return;
	}
	const struct xml_node *x = xml_child(q, NS_XDATA, "x");
	const char *xt = x != NULL ? xml_attr(x, "type") : NULL;
	if (x == NULL || xt == NULL) {
		muc_bounce(w, st, "modify", "bad-request",
			   "a data form of type submit or cancel");
		return;
	}
	if (strcmp(xt, "cancel") == 0) {
		muc_iq_result(w, st, NULL);
		/* section 10.1.3: cancelling the set-up of a new room
		 * destroys it */
		if (r->locked) {
			struct xml_node *none = xml_new(a, NS_MUC_OWNER,
							"destroy");
			if (none != NULL)
				muc_destroy(w, r, none, a);
		}
		return;
	}
	if (strcmp(xt, "submit") != 0) {
		muc_bounce(w, st, "modify", "bad-request",
			   "a data form of type submit or cancel");
		return;
	}
	struct muc_config now;
	const char *cond = NULL, *text = NULL;
	memset(&now, 0, sizeof(now));
	if (muc_config_copy(&now, &r->cf) < 0) {
		muc_bounce(w, st, "wait", "resource-constraint", NULL);
		return;
	}
	if (muc_config_submit(&now, x, w->cfg, &cond, &text) < 0) {
		muc_config_free(&now);
		muc_bounce(w, st, "modify", cond != NULL ? cond : "bad-request",
			   text);
		return;
	}
	unsigned codes[8];
	unsigned n = muc_config_status_codes(&r->cf, &now, codes, 8);
	muc_config_free(&r->cf);
	r->cf = now;
	int was_locked = r->locked;
	r->locked = 0;
	muc_db_config(w, r);
	muc_iq_result(w, st, NULL);
	/* section 10.2.1: the occupants hear of it */
	if (!was_locked && n > 0) {
		struct buf t;
		struct muc_dests ds = { 0 };
		buf_init(&t, 0);
		buf_appendf(&t, "<message type='groupchat'");
		muc_attr(&t, "from", r->jid);
		buf_appendf(&t, "><x xmlns='" NS_MUC_USER "'>");
		for (unsigned i = 0; i < n; i++)
			buf_appendf(&t, "<status code='%u'/>", codes[i]);
		buf_appendf(&t, "</x></message>");
		muc_dests_all(r, &ds);
		muc_send_dests(w, r, buf_head(&t), buf_used(&t), &ds);
		free(ds.d);
		buf_free(&t);
	}
	/* members-only now: who is not a member leaves (section 9.?, 322) */
	if (!r->dead && r->cf.members_only) {
		static const unsigned c322[] = { 322 };
		r->refs++;
		for (unsigned i = 0; i < r->nocc && !r->dead; i++)
			if (r->occ[i]->aff < MUC_AFF_MEMBER) {
				muc_remove_occ(w, r, r->occ[i], c322, NULL,
					       NULL);
				i = (unsigned)-1;
			}
		if (!r->dead)
			muc_maybe_empty(w, r);
		muc_room_unref(r);
	}
}

/* ---- IQs --------------------------------------------------------------- */

static void muc_room_iq(struct worker *w, struct muc_room *r, struct arena *a,
			struct xml_node *st, const char *from)
{
	const char *type = xml_attr(st, "type");
	const struct xml_node *q = xml_first_element(st);
	if (type == NULL || (strcmp(type, "get") != 0 &&
			     strcmp(type, "set") != 0))
		return;
	int set = strcmp(type, "set") == 0;
	if (q == NULL) {
		muc_bounce(w, st, "modify", "bad-request", NULL);
		return;
	}
	if (!set && xml_is(q, NS_DISCO_INFO, "query") &&
	    xml_attr(q, "node") == NULL) {
		struct buf out;
		char name[JID_PART_MAX + 1];
		muc_room_name(r, name, sizeof(name));
		buf_init(&out, 0);
		buf_appendf(&out, "<query xmlns='" NS_DISCO_INFO "'>");
		muc_config_disco_info(&r->cf, name, r->subject, r->nocc, &out);
		buf_appendf(&out, "</query>");
		buf_append(&out, "", 1);
		muc_iq_result(w, st, buf_head(&out));
		buf_free(&out);
	} else if (!set && xml_is(q, NS_DISCO_INFO, "query") &&
		   strcmp(xml_attr(q, "node"), "x-roomuser-item") == 0) {
		/* section 7.12: the asker's reserved nick, if any */
		const char *bare = iq_bare_of(a, from);
		const struct muc_affil *e = bare != NULL ?
					    muc_affil_find(r, bare) : NULL;
		struct buf out;
		buf_init(&out, 0);
		buf_appendf(&out, "<query xmlns='" NS_DISCO_INFO "' "
			    "node='x-roomuser-item'");
		if (e != NULL && e->nick[0] != '\0') {
			buf_appendf(&out, "><identity category='conference' "
				    "type='text'");
			muc_attr(&out, "name", e->nick);
			buf_appendf(&out, "/></query>");
		} else {
			buf_appendf(&out, "/>");
		}
		buf_append(&out, "", 1);
		muc_iq_result(w, st, buf_head(&out));
		buf_free(&out);
	} else if (!set && xml_is(q, NS_DISCO_ITEMS, "query")) {
		muc_iq_result(w, st, "<query xmlns='" NS_DISCO_ITEMS "'/>");
	} else if (!set && xml_is(q, NS_PING, "ping")) {
		muc_iq_result(w, st, NULL);
	} else if (xml_is(q, NS_MUC_ADMIN, "query")) {
		muc_admin(w, r, a, st, q, from, set);
	} else if (xml_is(q, NS_MUC_OWNER, "query")) {
		muc_owner(w, r, a, st, q, from, set);
	} else if (muc_room_mam(w, r, a, st, q, from)) {
		;
	} else {
		muc_bounce(w, st, "cancel", "service-unavailable", NULL);
	}
}

static struct muc_iqfwd *muc_fwd_find(struct muc_room *r, const char *id)
{
	unsigned long serial;
	char *end;
	if (strncmp(id, "mucfwd-", 7) != 0)
		return NULL;
	serial = strtoul(id + 7, &end, 16);
	if (*end != '\0')
		return NULL;
	for (unsigned i = 0; i < r->nfwd; i++)
		if (r->fwd[i].serial == (uint32_t)serial)
			return &r->fwd[i];
	return NULL;
}

static void muc_fwd_drop(struct muc_room *r, struct muc_iqfwd *f)
{
	free(f->from);
	free(f->id);
	free(f->to_nick);
	free(f->from_nick);
	free(f->sent_to);
	*f = r->fwd[--r->nfwd];
}

/* An IQ to an occupant JID: XEP-0410 self-ping, else passed on to the
 * occupant with the asker's occupant JID (section 7.? "IQ requests to
 * occupants"; vcard-temp to its account), the answer brought back. */
static void muc_occupant_iq(struct worker *w, struct muc_room *r,
			    struct arena *a, struct xml_node *st,
			    const char *from, const char *nick)
{
	const char *type = xml_attr(st, "type");
	const char *id = xml_attr(st, "id");
	struct muc_occ *o = muc_room_by_jid(r, from, NULL);
	struct muc_occ *t = muc_by_nick(r, nick);
	const struct xml_node *q = xml_first_element(st);
	if (type == NULL || id == NULL)
		return;
	if (strcmp(type, "result") == 0 || strcmp(type, "error") == 0) {
		/* an answer to a forwarded IQ: its id is the room's own,
		 * and it comes from the JID the IQ was passed to; it goes
		 * back to the asker from the occupant JID asked, whatever
		 * nicks changed meanwhile.  Anything else is dropped: an
		 * error to an IQ is not a sign that the answerer is gone */
		struct muc_iqfwd *f = muc_fwd_find(r, id);
		if (f == NULL || strcmp(f->sent_to, from) != 0)
			return;
		char fromnick[IPC_JID_MAX + 1];
		snprintf(fromnick, sizeof(fromnick), "%s/%s", r->jid,
			 f->to_nick);
		if (xml_set_attr(a, st, "from", fromnick) == 0 &&
		    xml_set_attr(a, st, "to", f->from) == 0 &&
		    xml_set_attr(a, st, "id", f->id) == 0)
			route_stanza(w, a, st);
		muc_fwd_drop(r, f);
		return;
	}
	if (o == NULL) {
		muc_bounce(w, st, "cancel", "not-acceptable",
			   "you are not in the room");
		return;
	}
	if (t == NULL) {
		muc_bounce(w, st, "cancel", "item-not-found",
			   "no occupant has that nickname");
		return;
	}
	if (t == o && q != NULL && xml_is(q, NS_PING, "ping")) {
		muc_iq_result(w, st, NULL);     /* XEP-0410 */
		return;
	}
	/* forget answers that never came */
	for (unsigned i = 0; i < r->nfwd; i++)
		if (r->fwd[i].until_ms <= w->now_ms)
			muc_fwd_drop(r, &r->fwd[i--]);
	/* the asker's share: its account's, whatever its resources */
	unsigned mine = 0;
	size_t blen = strcspn(from, "/");
	for (unsigned i = 0; i < r->nfwd; i++)
		mine += strncmp(r->fwd[i].from, from, blen) == 0 &&
			(r->fwd[i].from[blen] == '/' ||
			 r->fwd[i].from[blen] == '\0');
	if (r->nfwd >= MUC_IQFWD_MAX || mine >= MUC_IQFWD_PER_ASKER) {
		muc_bounce(w, st, "wait", "resource-constraint",
			   "too many questions waiting for answers");
		return;
	}
	struct muc_iqfwd *f = &r->fwd[r->nfwd];
	memset(f, 0, sizeof(*f));
	f->serial = ++r->fwd_serial;
	f->until_ms = w->now_ms + 60000;
	if ((f->from = strdup(from)) == NULL || (f->id = strdup(id)) == NULL ||
	    (f->to_nick = strdup(t->nick)) == NULL ||
	    (f->from_nick = strdup(o->nick)) == NULL) {
		free(f->from);
		free(f->id);
		free(f->to_nick);
		muc_bounce(w, st, "wait", "resource-constraint", NULL);
		return;
	}
	const char *to = t->sess[t->last].jid;
	if (q != NULL && xml_is(q, NS_VCARD, "vCard"))
		to = t->bare;   /* the account answers for vcard-temp */
	if ((f->sent_to = strdup(to)) == NULL) {
		free(f->from);
		free(f->id);
		free(f->to_nick);
		free(f->from_nick);
		muc_bounce(w, st, "wait", "resource-constraint", NULL);
		return;
	}
	r->nfwd++;
	char newid[32], fromnick[IPC_JID_MAX + 1];
	snprintf(newid, sizeof(newid), "mucfwd-%x", f->serial);
	snprintf(fromnick, sizeof(fromnick), "%s/%s", r->jid, o->nick);
	if (xml_set_attr(a, st, "from", fromnick) == 0 &&
	    xml_set_attr(a, st, "to", to) == 0 &&
	    xml_set_attr(a, st, "id", newid) == 0)
		route_stanza(w, a, st);
}

/* ---- the entry point ------------------------------------------------- */

void muc_room_stanza(struct worker *w, struct muc_room *r, struct arena *a,
		     struct xml_node *st, const struct jid *to)
{
	const char *from = xml_attr(st, "from");
	const char *nick = to->resource;
	if (from == NULL)
		return;
	if (strcmp(st->name, "presence") == 0) {
		muc_presence(w, r, st, from, nick);
		return;
	}
	if (!r->exists) {
		/* section 6.? : a room that does not exist */
		muc_bounce(w, st, "cancel", "item-not-found",
			   "no such room");
		return;
	}
	if (strcmp(st->name, "message") == 0)
		muc_message(w, r, a, st, from, nick);
	else if (nick == NULL)
		muc_room_iq(w, r, a, st, from);
	else
		muc_occupant_iq(w, r, a, st, from, nick);
}

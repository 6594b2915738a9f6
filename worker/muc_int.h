/*
 * muc_int.h - the MUC service's own state, shared by muc.c (the
 * service: where stanzas go, the rooms a worker owns, loading and
 * writing them, fan-out to occupants) and muc_room.c (what a room does
 * with a stanza: XEP-0045 entering, leaving, messages, roles,
 * affiliations, configuration).  Nothing outside the two includes it.
 */
#ifndef XMPPD_MUC_INT_H
#define XMPPD_MUC_INT_H

#include "muc.h"
#include "arena.h"
#include "buf.h"
#include "xml.h"

#include <stdint.h>

struct jid;

/* One session (real full JID) in a room: several sessions of one
 * account may share a nick (one occupant). */
struct muc_sess {
	char *jid;              /* real full JID */
	char *presence;         /* its presence's children, serialized
				   (jabber:client), "" for none */
	/* where the session was in the session table, looked up again
	 * after MUC_RECHECK_MS (a stale place is harmless: the receiving
	 * worker finds no such connection and routes by JID) */
	int64_t where_ms;       /* 0: not looked up yet */
	uint32_t conn_id, gen;
	uint16_t slot;
	uint8_t node, rslot;    /* another node's session (session.h) */
	/* the node holding the session (cluster.node; "" without a
	 * cluster), set when it enters or the room is read: once the
	 * session is out of the table, whether that says it ended
	 * (muc_absence_known) depends on which node held it */
	char home[IPC_NODE_NAME];
};
#define MUC_RECHECK_MS 5000

struct muc_occ {
	char *nick;
	char *bare;             /* real bare JID */
	enum muc_role role;
	enum muc_aff aff;
	struct muc_sess *sess;
	unsigned nsess;
	unsigned last;          /* the session whose presence shows */
	int remote;             /* on another server */
	double tokens;          /* muc.messages_per_minute bucket */
	int64_t tokens_ms;
	char oid[48];           /* XEP-0421 occupant id */
};

struct muc_affil {
	char *jid;              /* bare JID or domain */
	enum muc_aff aff;
	char *nick;
	char *reason;
};

/* An IQ forwarded to an occupant, waiting for its answer (section
 * 7.? "IQ to an occupant"): the answer goes back to from with id. */
struct muc_iqfwd {
	char *from;             /* the asker's real full JID */
	char *id;               /* its id */
	char *to_nick;          /* the occupant asked */
	char *from_nick;        /* the asker's nick */
	char *sent_to;          /* the JID it was passed to: the answer
				   comes from there */
	uint32_t serial;        /* in the forwarded id */
	int64_t until_ms;
};
#define MUC_IQFWD_MAX 64
#define MUC_IQFWD_PER_ASKER 8   /* one occupant's share of them */

enum muc_state {
	MUC_LOADING = 0,        /* its rows are being read */
	MUC_CREATING,           /* its row is being inserted */
	MUC_READY,
};

struct muc_pending {
	char *text;
	size_t len;
};
#define MUC_PENDING_MAX 256
/* Invitations a room remembers (declines go back only to who invited
 * the decliner), the oldest forgotten first. */
#define MUC_INVITED_MAX 64
/* Accounts that left lately whose message budget a room remembers. */
#define MUC_LEFT_MAX 16

struct muc_room {
	struct muc_room *next;  /* hash chain */
	struct worker *w;       /* for database answers */
	char *jid;              /* room@service, prepared */
	const char *service;    /* into jid: after '@' */
	long long id;           /* muc_rooms.id, 0 before it exists */
	enum muc_state state;
	int exists;             /* has a row (after loading/creating) */
	int load_failed;        /* a part of it was not read */
	int locked;             /* new, not configured yet (10.1.2) */
	int created_now;        /* the join being replayed made it */
	char *creator;          /* real full JID that creates it */
	struct muc_config cf;
	char *subject;          /* "" none */
	char *subject_by;       /* nick, "" the room */
	char *salt;             /* XEP-0421 key */
	struct muc_occ **occ;
	unsigned nocc, occ_cap;
	struct muc_affil *affs;
	unsigned naffs;
	struct muc_pending *pend;
	unsigned npend;
	struct muc_iqfwd fwd[MUC_IQFWD_MAX];
	unsigned nfwd;
	uint32_t fwd_serial;
	unsigned refs;          /* database answers still to come */
	int64_t idle_since;     /* empty since (muc.c's sweep), 0 not */
	unsigned busy;          /* handling a stanza: others wait (pend) */
	int later;              /* listed in muc.c's muc_later */
	struct {
		char *invitee;  /* bare JID */
		char *inviter;  /* full JID */
	} invited[MUC_INVITED_MAX];
	unsigned ninvited;
	struct {
		char *bare;
		double tokens;
		int64_t tokens_ms;
	} left[MUC_LEFT_MAX];
	unsigned left_next;
	char **gone;            /* sessions to leave when it settles */
	unsigned ngone;
	int dead;               /* out of the table, freed when refs == 0 */
};

/* ---- muc.c: the service --------------------------------------------- */

/* 1 if domain is a MUC service of ours. */
int muc_serves_domain(const struct worker *w, const char *domain);
/* The localpart of r's JID, in buf (size JID_PART_MAX + 1 holds it). */
const char *muc_room_name(const struct muc_room *r, char *buf, size_t size);
/* Boot id of this run of the server (muc_occupants.boot). */
const char *muc_boot(const struct worker *w);

/* ---- muc_cluster.c: the room's owner when several nodes serve it ---- */

struct members;
/* Where a room's stanzas go: a local worker (node 0, slot), or another
 * node's worker (slot = the bridge's, node = its node table index,
 * rslot = its worker there). */
struct muc_where {
	unsigned slot;
	uint8_t node, rslot;
};
uint32_t muc_room_hash(const char *room_bare);
int muc_cluster_on(const struct worker *w);
/* 0 and *r; -1: no owner now (no member list yet, our lease lapsed
 * while the room is ours, or a hand-over between live nodes): the
 * caller answers resource-constraint (wait). */
int muc_where(struct worker *w, const char *room, struct muc_where *r);
/* The room is this worker's to act on now. */
int muc_where_here(struct worker *w, const char *room);
/* This node's name ("" without a cluster); the node holding jid's
 * session (when it is not in the table: home if set, else ours). */
const char *muc_node_self(const struct worker *w);
const char *muc_node_of(struct worker *w, const char *jid,
			const char *home);
/* home (IPC_NODE_NAME bytes) := the name of node table entry node (0:
 * ours; "" without a cluster; unchanged for an unreadable entry). */
void muc_home_set(struct worker *w, char *home, unsigned node);
/* A session of node home (muc_sess.home) that is not in the session
 * table: 1 when that says it ended (our node; a node no longer in the
 * member list; a node we hear whose sessions we all have), 0 when we
 * cannot tell (a member we do not hear now: cut off or dying, not yet
 * out of the list -- its occupants stay until the list drops it). */
int muc_absence_known(struct worker *w, const char *home);
/* The member list (refreshed from shared memory); its epoch (0: none). */
const struct members *muc_members(struct worker *w, uint64_t *epoch_r);
/* The member names as a PostgreSQL text[] literal, "{n1,n2}". */
int muc_members_array(struct worker *w, char *buf, size_t size);
/* Send text (a stanza without 'to', from the room) to the given real
 * full JIDs: local sessions once per worker (IPC_FRAME_MUC_FANOUT),
 * remote ones through their servers.  Returns how many recipients
 * were not found online locally (gone[] gets their indexes, when not
 * NULL, up to n).  */
struct muc_dest {
	const char *jid;        /* real full JID */
	int remote;
	struct muc_sess *sess;  /* its place's cache, or NULL */
};
void muc_fanout(struct worker *w, const char *text, size_t len,
		const struct muc_dest *dest, unsigned n, unsigned *gone,
		unsigned *ngone);
/* One stanza text (no 'to') to one real full JID. */
void muc_send_one(struct worker *w, const char *text, size_t len,
		  const char *to, int remote);
/* The error reply to st (RFC 6120 8.3: 'from' and 'to' swapped), routed;
 * nothing for an error or a result, or without 'from'. */
void muc_bounce(struct worker *w, const struct xml_node *st,
		const char *type, const char *cond, const char *text);
/* Route a stanza given whole as text ('to' set). */
void muc_route_text(struct worker *w, const char *text, size_t len);

/* Database writes of a room's changes (fire and forget: a failure is
 * logged; the room goes on with its memory). */
void muc_db_occupant_put(struct worker *w, struct muc_room *r,
			 const struct muc_occ *o, const struct muc_sess *s);
void muc_db_occupant_del(struct worker *w, struct muc_room *r,
			 const char *jid);
void muc_db_affil_put(struct worker *w, struct muc_room *r,
		      const struct muc_affil *a);
void muc_db_affil_del(struct worker *w, struct muc_room *r, const char *jid);
void muc_db_config(struct worker *w, struct muc_room *r);
void muc_db_subject(struct worker *w, struct muc_room *r);
void muc_db_room_del(struct worker *w, struct muc_room *r);
/* Create the room's row (state MUC_CREATING): the pending stanzas are
 * handled again when it is answered. */
void muc_db_create(struct worker *w, struct muc_room *r);

/* A database answer or a call that may free r is over (r->refs was
 * taken): a dead room is freed with the last one. */
void muc_room_unref(struct muc_room *r);
/* Create r (not existing) for the join st from r->creator: st waits
 * and is handled again once the row exists (created_now 1) or was
 * refused (-1 limits, -2 database). */
void muc_create(struct worker *w, struct muc_room *r,
		const struct xml_node *st);
/* The MUC code of this worker is writing (muc.c): history callbacks
 * and the like call these around their writes, so that rooms wait. */
void muc_busy_enter(void);
void muc_busy_leave(struct worker *w);
/* A room not existing, with nothing waiting: forgotten (no row). */
void muc_room_forget(struct worker *w, struct muc_room *r);

/* The room is gone (destroyed, or temporary and empty): out of the
 * table, its row deleted. */
void muc_room_drop(struct worker *w, struct muc_room *r);

/* ---- muc_room.c: a room ---------------------------------------------- */

/* A stanza for room r (state MUC_READY, or not existing), to its bare
 * JID (to->resource NULL) or to an occupant. */
void muc_room_stanza(struct worker *w, struct muc_room *r, struct arena *a,
		     struct xml_node *st, const struct jid *to);
/* A session of r is gone: it ended (swept with its worker, or found
 * missing from the session table; ended 1: it leaves as at a
 * disconnection) or its server bounced what the room sent it (ended 0:
 * it leaves with status 333), or its node left the cluster or its run
 * is over (MUC_GONE_LEFT: 333, whatever our heartbeats say of that
 * node).  Noted; it leaves when the room settles, after the stanza
 * being handled (no occupant is freed under a caller that holds it).
 * A session that is only missing from the table stays while
 * muc_absence_known cannot tell (its node cut off, still a member). */
#define MUC_GONE_LEFT 2
void muc_room_gone(struct worker *w, struct muc_room *r, const char *jid,
		   int ended);
/* The noted sessions leave (muc.c's settling, room busy). */
void muc_room_leave_gone(struct worker *w, struct muc_room *r);
/* Free an occupant / a room's memory. */
void muc_occ_free(struct muc_occ *o);
/* Affiliation of a real JID in r (its bare JID, else its domain). */
enum muc_aff muc_room_aff(const struct muc_room *r, const char *bare);
/* The occupant that has session jid, or NULL (*si_r its index). */
struct muc_occ *muc_room_by_jid(const struct muc_room *r, const char *jid,
				unsigned *si_r);
/* A room read from the database: check the occupants it had (a local
 * one without its session is gone). */
void muc_room_loaded(struct worker *w, struct muc_room *r);
/* Names of affiliations and roles. */
const char *muc_aff_name(enum muc_aff a);
const char *muc_role_name(enum muc_role r);
int muc_aff_parse(const char *s, enum muc_aff *a_r);
int muc_role_parse(const char *s, enum muc_role *r_r);

#endif

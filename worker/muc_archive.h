/*
 * muc_archive.h - a room's archive (muc_archive.c): XEP-0313 on rooms
 * and the history sent on entering (XEP-0045 section 7.2.14), for
 * muc.c.  The room decides (who may query, whether a message is
 * archived); this stores and reads, with the store and the query code
 * of personal archives (mam.c, mam_query.c, mam_form.c).  A room's
 * archive is written only by its owner worker, which is also the one
 * that asks for its history, so history sees every message broadcast
 * before it.
 */
#ifndef XMPPD_MUC_ARCHIVE_H
#define XMPPD_MUC_ARCHIVE_H

#include "worker.h"

#include <stddef.h>

struct buf;
struct xml_node;

/* What muc.c's descriptor (muc_ext) names for the archive: its settings
 * and its schema step (NULL-terminated). */
extern const char *const muc_archive_config_keys[];
extern const char *const muc_archive_schema[];

/* Archive the groupchat message st as the room broadcasts it (from
 * room_bare/nick; its 'to' is left out of the row).  A <stanza-id
 * xmlns='urn:xmpp:sid:0'/> by the room already on st is taken off
 * (XEP-0359: only the room says what its ids are).  A message the
 * archive does not keep (not groupchat; no <body/> nor XEP-0334 <store/>
 * hint; a <no-store/> or <no-permanent-store/> hint) is left at that:
 * 1.  Else a new archive id is stamped on st as its last child (in the
 * archive's scratch arena, which lives until the end of the loop turn:
 * broadcast st in this turn) and the row (nick, the sender's real bare
 * JID real_bare) is queued for PostgreSQL: 0; or -1 when it is not
 * archived (the worker's archive queue is full, or st is too large:
 * counted and logged like personal archive rows; st then carries no
 * stanza-id).  Whatever it returns, st is broadcast.  Call it once st
 * is as it will be broadcast (its XEP-0421 occupant-id on, anything the
 * room takes off taken off). */
int muc_archive_add(struct worker *w, long long room_id, const char *room_bare,
		    const char *nick, const char *real_bare,
		    struct xml_node *st);

/* What the entering occupant's <history/> asked: -1 (NULL for since)
 * for an attribute it did not give. */
struct muc_history_req {
	long maxchars;
	long maxstanzas;
	long seconds;
	const char *since;      /* XEP-0082 DateTime; a bad one is ignored */
};

/* The history: n stanzas, oldest first, each a whole <message/> as the
 * occupant gets it but for its 'to' (the caller puts it in: "<message"
 * then " to='...'" then stanzas[i] + 8), with the room's <stanza-id/>
 * and a <delay xmlns='urn:xmpp:delay' from='room_bare' stamp/> (XEP-0203)
 * as its last child; ids their archive ids.  The texts live until cb
 * returns.  On failure n is 0 and error says why (PostgreSQL down or
 * failing): the occupant enters without history. */
typedef void muc_history_cb(void *ctx, unsigned n,
			    const char *const *stanzas, const size_t *lens,
			    const long long *ids, const char *error);

/* Ask for the history of room room_id (room_bare its JID) for one
 * entrance: this worker's waiting archive rows are sent first, then one
 * query.  What is sent (section 7.2.14): at most maxstanzas messages
 * (muc.history_default when the <history/> asks nothing, never more than
 * muc.history_max), none older than seconds or since, and of those the
 * newest whose characters (the stanzas as cb gets them) add up to at
 * most maxchars (mam_form_fit).  0: cb will be called exactly once, later (never
 * before this returns); 1: no history to send (maxstanzas or maxchars 0,
 * or muc.history_max 0): cb is not called; -1: PostgreSQL cannot be
 * asked now (link down, queue full, no memory; logged): cb is not
 * called, the occupant enters without history. */
int muc_archive_history(struct worker *w, long long room_id,
			const char *room_bare,
			const struct muc_history_req *req, muc_history_cb *cb,
			void *ctx);

/* Forget the history requests made with ctx (the entering occupant or
 * the room went away first): their cb is not called. */
void muc_archive_cancel(struct worker *w, void *ctx);

/* Append <delay xmlns='urn:xmpp:delay' from='room_bare' stamp='...'/>
 * for archive id id (its time, id >> 21).  0 or -1 (out of memory). */
int muc_archive_delay(long long id, const char *room_bare, struct buf *out);

/* A MAM query (XEP-0313 <query xmlns='urn:xmpp:mam:2'/>, get or set) or
 * #extended <metadata/> IQ st to the room, from a requester the room
 * allows: answered with the personal archive's form fields, XEP-0059
 * paging, <fin/> and errors; results are <message from='room_bare'> with
 * the message as the room broadcast it.  show_jids: the requester may
 * see real JIDs (a moderator, or a non-anonymous room): each result then
 * carries the sender's in <x xmlns='...muc#user'><item jid/></x>, and
 * `with` may be a real bare JID; otherwise no real JID appears and
 * `with` only matches occupant JIDs (room_bare/nick). */
void muc_archive_query(struct worker *w, struct xml_node *st,
		       long long room_id, const char *room_bare,
		       int show_jids);
void muc_archive_metadata(struct worker *w, struct xml_node *st,
			  long long room_id, const char *room_bare);

#endif

/*
 * mam.h - what the two halves of XEP-0313 share: mam.c (archiving,
 * ids, batched writes, preferences, expiry, the extension) and
 * mam_query.c (archive queries with XEP-0059 paging); and what a room's
 * archive (muc_archive.c) takes of both: the same ids, batches, expiry
 * and queries on a second table, muc_messages.
 */
#ifndef XMPPD_MAM_H
#define XMPPD_MAM_H

#include "worker.h"

#include <stddef.h>
#include <stdint.h>

#define NS_MAM "urn:xmpp:mam:2"
#define NS_MAM_EXTENDED "urn:xmpp:mam:2#extended"
#define NS_SID "urn:xmpp:sid:0"
#define NS_RSM "http://jabber.org/protocol/rsm"
#define NS_XDATA "jabber:x:data"
#define NS_FORWARD "urn:xmpp:forward:0"
#define NS_DELAY "urn:xmpp:delay"

/* Archive ids: (unix ms << MAM_ID_MS_SHIFT) | (slot << 13) | counter. */
#define MAM_ID_MS_SHIFT 21

/* XEP-0082 stamp of an archive id ("2026-12-06T07:15:54.123Z"); buf
 * holds at least 32 bytes. */
void mam_id_stamp(long long id, char *buf, size_t size);

/* Send every archive batch waiting (before a query, which then sees
 * them on the pipeline). */
void mam_flush_writes(struct worker *w);

/* The IQ handlers of mam_query.c (ext.h ext_iq_fn). */
void mam_query_iq(struct worker *w, struct xml_node *st, const char *bare);
/* ext.h taken_back: an archive result the connection never wrote. */
int mam_taken_back(struct conn *c, uint64_t end);
void mam_metadata_iq(struct worker *w, struct xml_node *st,
		     const char *bare);

/* ---- rooms' archives (muc_archive.c) ---- */

/* Archive st for room room_id (mam.c): a new archive id stamped on st as
 * <stanza-id id by='room_bare'/> (its last child, in an arena that lives
 * until the end of the loop turn), and the row (room_id, id, nick,
 * real_bare, st without its 'to') queued in the room batch.  0, or -1
 * when not archived (mam.queue_rows, mam.queue_bytes, too large, out of
 * memory: counted and logged like any archive row; st then has no
 * stanza-id). */
int mam_room_add(struct worker *w, long long room_id, const char *room_bare,
		 const char *nick, const char *real_bare, struct xml_node *st);
/* Whether a room keeps st in its archive: a groupchat message with a
 * <body/> or a XEP-0334 <store/> hint, without <no-store/> or
 * <no-permanent-store/> (the personal archive's rule, XEP-0313 6.1). */
int mam_room_archivable(const struct xml_node *st);
/* A query or metadata IQ (st) to room_bare's archive (mam_query.c);
 * show_jids: results name the senders' real JIDs, and `with` may be
 * one. */
void mam_room_query_iq(struct worker *w, struct xml_node *st,
		       long long room_id, const char *room_bare, int show_jids);
void mam_room_metadata_iq(struct worker *w, struct xml_node *st,
			  long long room_id, const char *room_bare);

#endif

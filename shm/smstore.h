/*
 * smstore.h - the XEP-0198 stream-management journal, in shared memory
 * that the master maps before forking (a third mapping, like the
 * throttle table), so that it outlives any worker.
 *
 * Per worker slot: a fixed array of session records and a pool of
 * fixed-size blocks.  A record holds what a resumption needs: the full
 * JID, the session-table ids (conn_id, gen), the counters, presence,
 * one saved word per extension, and the chain of stanzas sent to the
 * client and not yet acknowledged (the journal).  Only the slot's
 * worker writes its slot's records (single writer, no lock); the master
 * and other workers read a slot only when its worker is dead (the
 * master's sweep) or has handed a record over (cross-worker resumption
 * goes over the queues, see worker/sm.c).
 *
 * Crash consistency: every change is written first and published last
 * with a release store (a stanza is appended, then the record's tail
 * and count move); readers acquire.  A worker killed mid-write leaves
 * at worst one unpublished stanza (not delivered to the client either:
 * the write to the socket comes after the append) and a free list that
 * smstore_recover_slot() rebuilds from the published records.
 *
 * The resumption id a client sees (previd) names the record directly:
 * slot, index and the record's use count, plus 128 random bits that
 * must match (the id cannot be guessed from another one).  It is
 * base64url text of SMSTORE_ID_MAX bytes at most.
 *
 * Failure policy: a full pool or record array answers -1 with an error
 * (the caller ends the session the XEP's way, or refuses <enable/>),
 * never corrupts another record; an id that does not decode or does not
 * match answers 0 (item-not-found).
 */
#ifndef XMPPD_SMSTORE_H
#define XMPPD_SMSTORE_H

#include <stddef.h>
#include <stdint.h>
#include "ipc.h"

#define SMSTORE_ID_MAX 48           /* previd text, NUL included */
#define SMSTORE_EXT_WORDS 32        /* one saved word per extension
				       (ext.h EXT_MAX) */

/* The per-session bound (sm.max_unacked_bytes) covers what a hand-over
 * frame (IPC_FRAME_SM_GIVE) carries besides its fixed part: each
 * unacked stanza's bytes plus SMSTORE_STANZA_OVERHEAD (its length and
 * sequence number in the frame), and the last available presence.  The
 * fixed part (JID, counters, extension words...) gets
 * SMSTORE_STATE_RESERVE bytes, so a whole session always fits in one
 * frame when sm.max_unacked_bytes <= SMSTORE_BYTES_MAX. */
#define SMSTORE_STANZA_OVERHEAD 8u
#define SMSTORE_STATE_RESERVE (16u * 1024u)
#define SMSTORE_BYTES_MAX (IPC_FRAME_MAX - SMSTORE_STATE_RESERVE)
/* Records per slot at most (sm.records_per_worker's maximum). */
#define SMSTORE_RECORDS_MAX 1000000u

struct smstore;     /* process-local handle over the whole area */

/* Where a record is: its slot, its index, and its use count when the
 * handle was taken (a record freed and reused has another seq). */
struct sm_ref {
	uint16_t slot;
	uint32_t index;
	uint32_t seq;
};

enum sm_record_state {
	SM_REC_FREE = 0,
	SM_REC_ATTACHED,            /* a connection of the slot's worker */
	SM_REC_DETACHED,            /* waiting for <resume/>, until expiry */
	SM_REC_GIVEN,               /* handed to another worker: the slot's
				       worker frees it once the new owner
				       confirms; not adopted after a crash */
};

/* The state of one record (smstore_read), a copy. */
struct sm_state {
	enum sm_record_state state;
	int resumable;              /* <enable resume='true'/> */
	char jid[IPC_JID_MAX + 1];  /* full JID */
	uint32_t conn_id, gen;      /* its session-table entry */
	uint32_t h_in;              /* stanzas handled from the client */
	uint32_t h_acked;           /* last h the client acknowledged */
	uint32_t h_sent;            /* stanzas sent: h_acked + unacked */
	uint32_t unacked;           /* stanzas in the journal */
	uint64_t unacked_bytes;
	uint32_t max_s;             /* resumption timeout agreed (s) */
	int64_t detached_ms;        /* CLOCK_MONOTONIC ms when detached,
				       0 while attached */
	int16_t priority;
	uint8_t available;
	uint8_t mech;               /* enum ipc_mech */
	uint32_t ext_words[SMSTORE_EXT_WORDS];  /* by index in ext_all */
	size_t presence_len;        /* last available presence, bytes */
};

/* ---- master --------------------------------------------------------- */

/* Bytes of the area for nslots slots of `records` records and
 * `bytes` of stanza pool each (the sm.* settings). */
size_t smstore_size(unsigned nslots, uint32_t records, uint64_t bytes);
/* Lay out the area in mem (zeroed, shared, from smstore_size). */
int smstore_init(void *mem, size_t size, unsigned nslots, uint32_t records,
		 uint64_t bytes, const char **error_r);
/* A handle on an initialised area (master and workers, after fork). */
struct smstore *smstore_attach(void *mem, const char **error_r);
void smstore_detach(struct smstore **s);
/* The per-session bounds (sm.max_unacked_stanzas, sm.max_unacked_bytes,
 * the latter at most SMSTORE_BYTES_MAX), stored in the area by the
 * master at start and at each reload, read by the writers at each
 * append.  Until it is called: the maxima. */
void smstore_set_limits(struct smstore *s, uint32_t max_stanzas,
			uint64_t max_bytes);

/* The master's sweep of a dead slot: 1 when the session conn_id/gen of
 * that slot has a resumable record that is ATTACHED or DETACHED (its
 * session-table entry is kept and no unavailable presence is sent: the
 * respawned worker adopts it), else 0. */
int smstore_keeps(struct smstore *s, unsigned slot, uint32_t conn_id,
		  uint32_t gen);

/* ---- the slot's worker (single writer) ------------------------------ */

/* Before anything else in a respawned worker: rebuild the slot's free
 * lists from the published records (the dead writer may have been
 * anywhere). */
void smstore_recover_slot(struct smstore *s, unsigned slot);

/* A new record for a session that sent <enable/>: ATTACHED, counters
 * 0.  id_r gets the previd (when resumable).  -1 with *error_r when the
 * slot's records are all in use. */
int smstore_open(struct smstore *s, unsigned slot, const char *jid,
		 uint32_t conn_id, uint32_t gen, int resumable,
		 uint32_t max_s, struct sm_ref *ref_r,
		 char id_r[SMSTORE_ID_MAX], const char **error_r);
/* Added for resumption on another worker: XEP-0198 gives the client
 * no new id at <resumed/>, so the record the new owner opens answers
 * to the session's first previd `id` (NUL-terminated): smstore_open
 * with id's token (and no id_r: the id is `id`).  -1 with *error_r
 * when id is not a previd, or as smstore_open. */
int smstore_open_as(struct smstore *s, unsigned slot, const char *id,
		    const char *jid, uint32_t conn_id, uint32_t gen,
		    int resumable, uint32_t max_s, struct sm_ref *ref_r,
		    const char **error_r);
/* A stanza sent to the client: appended to the journal, h_sent + 1.
 * -1 with *error_r when the pool or the per-session bound is full (the
 * caller ends the session: nothing was appended). */
int smstore_append(struct smstore *s, const struct sm_ref *ref,
		   const char *data, size_t len, const char **error_r);
/* The same, for a stanza of a frame from another node: its settlement
 * token is kept with it (worker/settle.h; 0 none). */
int smstore_append_token(struct smstore *s, const struct sm_ref *ref,
			 const char *data, size_t len, uint32_t token,
			 const char **error_r);
/* The client acknowledged h (<a h/>): stanzas up to h are freed.
 * 0, or -1 when h is beyond h_sent (handled-count-too-high; nothing
 * changed).  Counters are modulo 2^32 (XEP-0198 section 4). */
int smstore_ack(struct smstore *s, const struct sm_ref *ref, uint32_t h);
void smstore_set_h_in(struct smstore *s, const struct sm_ref *ref,
		      uint32_t h_in);
/* Added for resumption on another worker: a record opened for a
 * session taken over keeps the session's numbering.  On an empty
 * journal only (right after smstore_open, before the old journal is
 * appended again): h_acked = h, so the next append is h + 1.  -1 when
 * the journal is not empty. */
int smstore_set_h_acked(struct smstore *s, const struct sm_ref *ref,
			uint32_t h);
/* The session's routing state, written whenever it changes so that a
 * resumption after a crash finds it: priority, availability, the last
 * available presence (NULL/0: none), the extensions' saved words. */
int smstore_set_presence(struct smstore *s, const struct sm_ref *ref,
			 int16_t priority, uint8_t available,
			 const char *presence, size_t len,
			 const char **error_r);
void smstore_set_ext_word(struct smstore *s, const struct sm_ref *ref,
			  unsigned ext_index, uint32_t word);
void smstore_set_mech(struct smstore *s, const struct sm_ref *ref,
		      uint8_t mech);
/* ATTACHED <-> DETACHED (detached_ms = now_ms, or 0), or GIVEN; the
 * session-table ids change when a record is adopted by another
 * connection (conn_id, gen). */
void smstore_set_state(struct smstore *s, const struct sm_ref *ref,
		       enum sm_record_state st, int64_t now_ms);
void smstore_set_ids(struct smstore *s, const struct sm_ref *ref,
		     uint32_t conn_id, uint32_t gen);
/* Free the record and its blocks (session over, or handed over). */
void smstore_close(struct smstore *s, const struct sm_ref *ref);

/* ---- readers (the owner, or anyone once the owner is dead or has
 * handed the record over) ------------------------------------------ */

/* Decode a previd and check it against its record: 1 with *ref_r when
 * it names a record in use with that token, 0 when not (item-not-found),
 * whatever the text (any bytes, any length).  The token decides: when
 * the record the id names does not hold it (the session moved to
 * another worker, smstore_open_as), each slot's token index is asked
 * (one bucket per slot).  The record found must also answer to the
 * slot, index and use count the id names (the ones smstore_id gives):
 * the token with another header is not found, so a session has one
 * previd text.  A record that is not resumable, or GIVEN (handed over:
 * its new record answers), is not found. */
int smstore_find(struct smstore *s, const char *id, size_t id_len,
		 struct sm_ref *ref_r);
/* What a previd text names (slot, index, use count) without looking at
 * the store: 0, or -1 when the text is not a previd.  Added for the
 * cluster (worker/sm.c): another node's previd names a worker there,
 * whose record this node cannot read; only that node checks the token. */
int smstore_id_names(const char *id, size_t id_len, struct sm_ref *ref_r);
/* Added for adoption after a crash: the previd of a resumable record,
 * the very text the client holds (the one it was given at <enable/>,
 * also after the session moved: smstore_open_as).  -1 when ref no
 * longer names a resumable record. */
int smstore_id(struct smstore *s, const struct sm_ref *ref,
	       char id_r[SMSTORE_ID_MAX]);
/* A copy of the record's state; -1 when ref no longer names it. */
int smstore_read(struct smstore *s, const struct sm_ref *ref,
		 struct sm_state *st_r);
/* The last available presence into out (out_cap bytes): its length,
 * or -1 (gone, or out too small). */
long smstore_presence(struct smstore *s, const struct sm_ref *ref,
		      char *out, size_t out_cap);
/* Each unacknowledged stanza, oldest first, with its sequence number
 * (h_acked + 1, + 2, ...; modulo 2^32).  cb returns 0 to go on, else
 * the walk stops and returns that value.  Stanzas are copied out of the
 * pool into a buffer the walk owns (valid during the call). */
int smstore_foreach_unacked(struct smstore *s, const struct sm_ref *ref,
			    int (*cb)(uint32_t seq, const char *data,
				      size_t len, void *ctx),
			    void *ctx);
/* The unacknowledged stanzas that carry a token, oldest first: cb with
 * each one's sequence number and token (0 to go on).  -1 when the
 * chain does not walk. */
int smstore_foreach_tokens(struct smstore *s, const struct sm_ref *ref,
			   int (*cb)(uint32_t seq, uint32_t token, void *ctx),
			   void *ctx);
/* Each record of a slot that is not FREE (adoption by a respawned
 * worker, xmppctl).  cb as above. */
int smstore_foreach_record(struct smstore *s, unsigned slot,
			   int (*cb)(const struct sm_ref *ref,
				     const struct sm_state *st, void *ctx),
			   void *ctx);

/* Added for c2s.max_sessions_per_account: when the session conn_id/gen
 * of that slot has a resumable record waiting for <resume/> (DETACHED),
 * the CLOCK_MONOTONIC ms it was detached at, else 0.  Any process, any
 * time: a record changing meanwhile answers either way. */
int64_t smstore_detached_ms(struct smstore *s, unsigned slot,
			    uint32_t conn_id, uint32_t gen);

/* Usage of a slot (metrics): records in use, pool bytes in use. */
void smstore_usage(struct smstore *s, unsigned slot, uint32_t *records_r,
		   uint64_t *bytes_r);
/* Slots, records per slot and pool bytes per slot of the area. */
void smstore_capacity(struct smstore *s, unsigned *nslots_r,
		      uint32_t *records_r, uint64_t *bytes_r);

/* Check a slot whose writer is not running (tests, diagnostics): every
 * published chain is whole, no block is in two chains or in a chain and
 * the free list, free lists and gauges match the records.  0, or -1
 * with *error_r. */
int smstore_verify_slot(struct smstore *s, unsigned slot,
			const char **error_r);

/* Test hook: when set, the writer calls it at a named point in the
 * middle of a change ("append": blocks written and linked, not yet
 * published; "ack": published, blocks not yet freed; "open": record
 * written, state not yet stored; "close": state FREE, blocks not yet
 * freed; "presence": new chain written, not published). */
extern void (*smstore_test_hook)(const char *point);

#endif

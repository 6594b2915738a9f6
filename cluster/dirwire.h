/*
 * dirwire.h - the session directory's messages between nodes (issue 15,
 * docs/DESIGN.md "Cluster"): what one node tells the others about its
 * sessions.  A batch is a header (which node, which run of it, where in
 * its sequence) and records, each the whole state of one session (SET)
 * or its end (DEL), so that applying a record twice changes nothing and
 * a snapshot followed by events it already contains is still right.
 *
 * Every integer is little-endian on the wire whatever the host is, so
 * nodes on different machines agree.  The reader refuses anything it
 * would not write: unknown versions and kinds, lengths past the end, a
 * JID that is not a prepared full JID, a caps ver outside base64.
 */
#ifndef XMPPD_DIRWIRE_H
#define XMPPD_DIRWIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "buf.h"

#define DIR_WIRE_MAGIC 0x58445231u  /* "XDR1" */
#define DIR_NODE_MAX 32             /* bytes of a node name (config.c) */
#define DIR_CAPS_MAX 64             /* bytes of a XEP-0115 ver (base64) */
#define DIR_REC_FIXED 25u           /* bytes of a record before its JID */

enum dir_kind {
	DIR_KIND_EVENTS = 1,        /* changes, seq = the first one's number */
	DIR_KIND_SNAPSHOT = 2,      /* a part of every session, as of seq */
};

enum dir_op {
	DIR_OP_SET = 1,             /* the session is (now) like this */
	DIR_OP_DEL = 2,             /* the session (jid, conn_id, gen) ended */
};

struct dir_batch_hdr {
	uint8_t kind;               /* enum dir_kind */
	uint8_t last;               /* snapshot: the last part */
	char node[DIR_NODE_MAX + 1];/* sender's name, NUL-terminated */
	uint64_t incarnation;       /* sender's run (random at start) */
	uint64_t seq;               /* events: number of the first record;
				       snapshot: the last event it holds */
	uint32_t part;              /* snapshot: 0, 1, ... */
	uint32_t count;             /* records that follow */
};

struct dir_rec {
	uint8_t op;                 /* enum dir_op */
	uint8_t rslot;              /* worker slot on the sender */
	uint8_t flags;              /* enum ipc_session_flags (F_CARBONS) */
	uint8_t available;
	int16_t priority;
	uint32_t conn_id;
	uint32_t gen;
	int64_t since;              /* unix time of the bind */
	uint16_t jid_len;
	uint8_t caps_len;           /* 0: no caps ver */
	const char *jid;            /* not NUL-terminated on read */
	const char *caps;
};

/* Append a batch header / one record to b: 0, or -1 (out of memory, or a
 * field longer than the wire allows). */
int dir_put_hdr(struct buf *b, const struct dir_batch_hdr *h);
int dir_put_rec(struct buf *b, const struct dir_rec *r);
/* Rewrite the count of the header at the start of b (records appended
 * after the header was written). */
void dir_set_count(struct buf *b, size_t hdr_off, uint32_t count);

struct dir_reader {
	const uint8_t *p;
	size_t len, off;
	uint32_t left;              /* records not read yet */
	struct dir_batch_hdr hdr;
};

/* Start reading a batch: 0 with r->hdr filled, or -1 with *error_r. */
int dir_read_begin(struct dir_reader *r, const void *data, size_t len,
		   const char **error_r);
/* The next record: 1, 0 at the end (the batch had exactly its count of
 * records), or -1 with *error_r.  rec's strings point into the batch.
 * a: scratch for checking the JID (reset by the caller). */
int dir_read_next(struct dir_reader *r, struct arena *a, struct dir_rec *rec,
		  const char **error_r);

/* A 64-bit digest of what a SET record says (not op): the XOR of the
 * digests of a node's sessions is compared in heartbeats. */
uint64_t dir_rec_digest(const struct dir_rec *rec);



/* What to do with an events batch h of a node whose directory we hold
 * as of (known_incarnation, last_seq) (synced: we hold a snapshot of
 * this incarnation).  DIR_APPLY: apply its records from *skip_r on (the
 * ones before were applied already); DIR_STALE: nothing new (a
 * duplicate, or late traffic from before a heal); DIR_RESYNC: a gap, or
 * another run of the node: ask it for a snapshot. */
enum dir_verdict {
	DIR_APPLY = 0,
	DIR_STALE,
	DIR_RESYNC,
};
enum dir_verdict dir_events_verdict(bool synced, uint64_t known_incarnation,
				    uint64_t last_seq,
				    const struct dir_batch_hdr *h,
				    uint32_t *skip_r);
#endif

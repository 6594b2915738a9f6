/*
 * smwire.h - XEP-0198 wire formats as pure functions: the payloads of
 * the hand-over frames IPC_FRAME_SM_TAKE, SM_GIVE and SM_DONE (layout in
 * shm/ipc.h, "XEP-0198 hand-over frames"), the h attribute of <a/>
 * and <resume/> (XEP-0198's xs:unsignedInt), and a cluster's previd
 * (smstore's id, the minting node's tag and a MAC).
 *
 * Bytes in, a decoded struct out: the decoders read within the payload
 * only and never allocate; what they return points into the payload.
 * An accepted payload encodes back to the very same bytes
 * (fuzz/fuzz_sm.c checks both).
 *
 * Failure policy: a payload whose lengths do not add up to its size, or
 * that carries a NUL inside a JID or an unknown status, answers -1 with
 * a one-line reason; the caller (worker/sm.c) logs it and answers the
 * waiting client the XEP's way.  An h that is not an xs:unsignedInt
 * answers -1; the caller sends the XEP's error.
 */
#ifndef XMPPD_SMWIRE_H
#define XMPPD_SMWIRE_H

#include <stddef.h>
#include <stdint.h>
#include "ipc.h"
#include "smstore.h"

struct buf;

/* ---- the h attribute ------------------------------------------------- */

/* The text of an xs:unsignedInt (XML Schema part 2, 3.3.22, whiteSpace
 * collapse): optional XML whitespace, an optional '+', one or more
 * decimal digits (leading zeros allowed), optional XML whitespace, with
 * a value up to 4294967295.  0 with *v_r, or -1 (NULL, empty, a '-',
 * hex, other characters, or too large).  Also serves <enable max/>
 * (xs:positiveInteger, the caller checks > 0). */
int smwire_parse_h(const char *s, uint32_t *v_r);

/* ---- SM_TAKE ----------------------------------------------------------- */

struct smwire_take {
	uint32_t h;
	const char *id;             /* the previd, id_len bytes */
	size_t id_len;
	const char *bare;           /* N's bare JID, bare_len bytes */
	size_t bare_len;
};

int smwire_take_decode(const void *p, size_t len, struct smwire_take *t_r,
		       const char **error_r);
/* Append the payload to out: 0, or -1 when a length is out of range
 * or out of memory. */
int smwire_take_encode(struct buf *out, const struct smwire_take *t,
		       const char **error_r);

/* ---- SM_GIVE ----------------------------------------------------------- */

struct smwire_give {
	struct ipc_sm_give head;    /* the fixed part, as sent */
	const char *jid;            /* head.jid_len bytes */
	const char *presence;       /* head.presence_len bytes */
	const char *directed;       /* head.ndirected items (uint16 length,
				       bytes): smwire_next(..., 2, ...) */
	size_t directed_len;
	const char *stanzas;        /* head.nstanzas items (uint32 length,
				       bytes): smwire_next(..., 4, ...) */
	size_t stanzas_len;
};

/* Every count and length of the payload is checked here: walking
 * directed/stanzas with smwire_next then gives exactly ndirected and
 * nstanzas items. */
int smwire_give_decode(const void *p, size_t len, struct smwire_give *g_r,
		       const char **error_r);
/* The next item of a list of (width-byte length, bytes), width 2 or 4:
 * 1 with *item_r, *len_r (and *p, *left moved past it), 0 at the end,
 * -1 when the rest is not an item. */
int smwire_next(const char **p, size_t *left, unsigned width,
		const char **item_r, size_t *len_r);

/* Encoding a GIVE: the head (its jid_len, presence_len, ndirected and
 * nstanzas as they will be), the JID and the presence; then each
 * directed presence and each stanza in turn.  head.ndirected and
 * head.nstanzas may be patched afterwards with smwire_give_set_counts
 * (the journal is walked while writing).  -1 with a reason when a
 * length is out of range or out of memory. */
int smwire_give_put_head(struct buf *out, const struct ipc_sm_give *head,
			 const char *jid, const char *presence,
			 const char **error_r);
int smwire_give_put_directed(struct buf *out, const char *p, size_t len,
			     const char **error_r);
int smwire_give_put_stanza(struct buf *out, const char *p, size_t len,
			   const char **error_r);
/* Patch the counts of the head written at offset `at` of out's data. */
void smwire_give_set_counts(struct buf *out, size_t at, uint32_t ndirected,
			    uint32_t nstanzas);
/* Whole GIVE from a decoded one (what the fuzz harness re-encodes). */
int smwire_give_encode(struct buf *out, const struct smwire_give *g,
		       const char **error_r);

/* ---- previds in a cluster ---------------------------------------------- */

/* A single node's previd is smstore's id (smstore.h).  In a cluster it
 * is smstore's id, '.', then base64url (no padding) of the minting
 * node's tag and a MAC of tag and id, keyed with a key every node
 * derives from cluster.secret_file: any node can tell a previd of its
 * cluster (and which node made it) from a forgery before asking that
 * node, which then checks the id's token against its record. */
#define SMWIRE_KEY_BYTES 32u
#define SMWIRE_PREVID_TAG 4u
#define SMWIRE_PREVID_MAC 8u
#define SMWIRE_PREVID_SUFFIX 16u    /* base64url of tag and MAC */
#define SMWIRE_PREVID_MAX (SMSTORE_ID_MAX + 1 + SMWIRE_PREVID_SUFFIX + 1)

/* A node's tag: short, stable (from cluster.node), keyed. */
void smwire_node_tag(const uint8_t key[SMWIRE_KEY_BYTES], const char *node,
		     uint8_t tag[SMWIRE_PREVID_TAG]);
/* The cluster previd of smstore's id `local` made on the node of tag:
 * 0, or -1 when local is empty or too long (SMSTORE_ID_MAX). */
int smwire_previd_join(const uint8_t key[SMWIRE_KEY_BYTES], const char *local,
		       const uint8_t tag[SMWIRE_PREVID_TAG],
		       char out[SMWIRE_PREVID_MAX]);
/* The text of <resume previd/> (len bytes, any): with key NULL (a
 * single node) smstore's id as it is; with a key a cluster previd whose
 * MAC verifies, spelt exactly as smwire_previd_join spells it.  0 with
 * smstore's part in local (NUL-terminated) and the tag (zero without a
 * key), or -1 (item-not-found). */
int smwire_previd_split(const uint8_t *key, const char *previd, size_t len,
			char local[SMSTORE_ID_MAX],
			uint8_t tag[SMWIRE_PREVID_TAG]);

/* ---- SM_DONE ----------------------------------------------------------- */

/* No payload: 0 when len is 0. */
int smwire_done_decode(const void *p, size_t len, const char **error_r);

#endif

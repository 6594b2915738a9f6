/*
 * frame.h - the worker queue frame codec (OpenSMTPD imsg style).
 *
 * A frame is a struct ipc_frame_header followed by `len` payload bytes.
 * Writers build payloads with frame_add_*; readers take fields with
 * frame_get_* (every read is bounds-checked) and must finish with
 * frame_end(), which rejects trailing bytes.  Failure policy: every
 * function returns 0 or -1 with an error string; nothing aborts.
 */
#ifndef XMPPD_FRAME_H
#define XMPPD_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include "ipc.h"
#include "../lib/buf.h"

/* Start a frame at the end of out; fields go in with frame_add_*. */
struct frame_writer {
	struct buf *out;
	size_t hdr_off;         /* where this frame's header starts */
	int failed;             /* a previous add ran out of room */
};

void frame_begin(struct frame_writer *w, struct buf *out, uint8_t type,
		 uint16_t src_slot, uint32_t conn_id, uint32_t gen);
/* Name another node's session (or origin) in the header: node 0 is this
 * node (frame_begin's default).  See frame_check_route for who may. */
void frame_set_node(struct frame_writer *w, uint8_t node, uint8_t node_slot);
/* The bridge's token on a frame from another node (ipc.h). */
void frame_set_token(struct frame_writer *w, uint32_t token);
void frame_add_u8(struct frame_writer *w, uint8_t v);
void frame_add_u16(struct frame_writer *w, uint16_t v);
void frame_add_u32(struct frame_writer *w, uint32_t v);
void frame_add_u64(struct frame_writer *w, uint64_t v);
/* u32 length + bytes */
void frame_add_data(struct frame_writer *w, const void *p, size_t n);
void frame_add_str(struct frame_writer *w, const char *s);
/* Raw bytes to the end of the payload (no length prefix). */
void frame_add_raw(struct frame_writer *w, const void *p, size_t n);
/* Fill in the header length; -1 if any add failed or the frame is larger
 * than IPC_FRAME_MAX (the frame is then removed from out). */
int frame_finish(struct frame_writer *w, const char **error_r);

/* Validate the header at buf (len bytes available).  On success the
 * header is copied to hdr_r and the frame's total size (header+payload)
 * to frame_size_r.  Rejects bad magic/version/type/flags, a payload
 * over IPC_FRAME_MAX, and a payload running past len (truncated).  The
 * node fields are checked by frame_check_route, which needs to know
 * the destination. */
int frame_parse_header(const void *buf, size_t len,
		       struct ipc_frame_header *hdr_r, size_t *frame_size_r,
		       const char **error_r);

/* No cluster bridge (bridge_slot of frame_check_route). */
#define FRAME_NO_BRIDGE 0xffffffffu
/* The node fields of hdr, a frame from hdr->src_slot to dst_slot, where
 * the cluster bridge is bridge_slot (FRAME_NO_BRIDGE: none).  The rule:
 * node 0 (this node) needs node_slot 0; a node other than 0 is allowed
 * only on a frame to or from the bridge slot, below IPC_MAX_NODES, with
 * node_slot below IPC_MAX_SLOTS.  0, or -1 with error. */
int frame_check_route(const struct ipc_frame_header *hdr, unsigned dst_slot,
		      unsigned bridge_slot, const char **error_r);

struct frame_reader {
	const uint8_t *p;
	size_t len;
	size_t pos;
};

void frame_reader_init(struct frame_reader *r, const void *payload,
		       size_t len);
int frame_get_u8(struct frame_reader *r, uint8_t *v_r);
int frame_get_u16(struct frame_reader *r, uint16_t *v_r);
int frame_get_u32(struct frame_reader *r, uint32_t *v_r);
int frame_get_u64(struct frame_reader *r, uint64_t *v_r);
/* Points into the payload; no copy. */
int frame_get_data(struct frame_reader *r, const void **p_r, size_t *n_r);
/* A string added by frame_add_str: must hold no NUL; copied into buf. */
int frame_get_str(struct frame_reader *r, char *buf, size_t size);
/* The rest of the payload. */
void frame_get_rest(struct frame_reader *r, const void **p_r, size_t *n_r);
/* 0 if every byte was consumed, -1 ("trailing bytes") otherwise. */
int frame_end(struct frame_reader *r);

#endif

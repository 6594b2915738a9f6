/*
 * frame.c - the worker queue frame codec (OpenSMTPD imsg style).
 *
 * Writers append a header and fields to a struct buf; readers take fields
 * out of a received payload.  Frames cross only between processes on one
 * machine, so every field is in host byte order.  Failure policy: nothing
 * here logs or aborts; writers remember a failure until frame_finish()
 * (which then removes the partial frame), readers return -1 and leave
 * their position unchanged, and error strings are static.
 */
#include <stddef.h>
#include <string.h>
#include "frame.h"

#define FRAME_LEN_OFF offsetof(struct ipc_frame_header, len)

void frame_begin(struct frame_writer *w, struct buf *out, uint8_t type,
		 uint16_t src_slot, uint32_t conn_id, uint32_t gen)
{
	struct ipc_frame_header hdr = {
		.magic = IPC_FRAME_MAGIC,
		.version = IPC_VERSION,
		.type = type,
		.src_slot = src_slot,
		.conn_id = conn_id,
		.gen = gen,
	};

	w->out = out;
	/* relative to the unconsumed head: buf_append may compact the buffer
	 * (dropping consumed bytes) while this frame is being built */
	w->hdr_off = buf_used(out);
	w->failed = buf_append(out, &hdr, sizeof(hdr)) < 0;
}

void frame_set_token(struct frame_writer *w, uint32_t token)
{
	if (w->failed)
		return;
	memcpy(w->out->data + w->out->off + w->hdr_off +
	       offsetof(struct ipc_frame_header, token), &token, sizeof(token));
}

void frame_set_node(struct frame_writer *w, uint8_t node, uint8_t node_slot)
{
	char *hdr;

	if (w->failed)
		return;
	/* the header is the writer's until frame_finish */
	hdr = w->out->data + w->out->off + w->hdr_off;
	hdr[offsetof(struct ipc_frame_header, node)] = (char)node;
	hdr[offsetof(struct ipc_frame_header, node_slot)] = (char)node_slot;
}

static void frame_add(struct frame_writer *w, const void *p, size_t n)
{
	if (w->failed)
		return;
	if (buf_append(w->out, p, n) < 0)
		w->failed = 1;
}

void frame_add_u8(struct frame_writer *w, uint8_t v)
{
	frame_add(w, &v, sizeof(v));
}

void frame_add_u16(struct frame_writer *w, uint16_t v)
{
	frame_add(w, &v, sizeof(v));
}

void frame_add_u32(struct frame_writer *w, uint32_t v)
{
	frame_add(w, &v, sizeof(v));
}

void frame_add_u64(struct frame_writer *w, uint64_t v)
{
	frame_add(w, &v, sizeof(v));
}

void frame_add_data(struct frame_writer *w, const void *p, size_t n)
{
	if (n > IPC_FRAME_MAX) {
		/* would not fit any frame; also keeps the u32 prefix exact */
		w->failed = 1;
		return;
	}
	frame_add_u32(w, (uint32_t)n);
	frame_add(w, p, n);
}

/* Strings travel without their NUL, so a reader can reject an embedded
 * one: a NUL inside a JID would let two names compare equal in C. */
void frame_add_str(struct frame_writer *w, const char *s)
{
	frame_add_data(w, s, strlen(s));
}

void frame_add_raw(struct frame_writer *w, const void *p, size_t n)
{
	frame_add(w, p, n);
}

int frame_finish(struct frame_writer *w, const char **error_r)
{
	struct buf *out = w->out;
	size_t payload;
	uint32_t len;

	if (!w->failed) {
		payload = buf_used(out) - w->hdr_off - IPC_FRAME_HDR_SIZE;
		if (payload <= IPC_FRAME_MAX) {
			len = (uint32_t)payload;
			memcpy(out->data + out->off + w->hdr_off + FRAME_LEN_OFF,
			       &len, sizeof(len));
			return 0;
		}
		*error_r = "frame too large";
	} else {
		*error_r = "frame buffer full";
	}
	/* Nothing else touched out since frame_begin, so this drops exactly
	 * our partial frame and keeps the frames before it. */
	if (buf_used(out) > w->hdr_off)
		out->len = out->off + w->hdr_off;
	return -1;
}

static const char *frame_check_header(const struct ipc_frame_header *hdr)
{
	if (hdr->magic != IPC_FRAME_MAGIC)
		return "bad magic";
	if (hdr->version != IPC_VERSION)
		return "bad version";
	if (hdr->type == 0 || hdr->type >= IPC_FRAME_TYPE_MAX)
		return "bad type";
	if ((hdr->flags & ~IPC_FRAME_F_MORE) != 0)
		return "unknown flags";
	if (hdr->len > IPC_FRAME_MAX)
		return "oversized";
	return NULL;
}

int frame_parse_header(const void *buf, size_t len,
		       struct ipc_frame_header *hdr_r, size_t *frame_size_r,
		       const char **error_r)
{
	struct ipc_frame_header hdr;
	const char *error;

	if (len < IPC_FRAME_HDR_SIZE) {
		*error_r = "truncated header";
		return -1;
	}
	/* copy out: buf may sit at any alignment inside a datagram */
	memcpy(&hdr, buf, sizeof(hdr));
	if ((error = frame_check_header(&hdr)) != NULL) {
		*error_r = error;
		return -1;
	}
	if (hdr.len > len - IPC_FRAME_HDR_SIZE) {
		*error_r = "truncated";
		return -1;
	}
	*hdr_r = hdr;
	*frame_size_r = IPC_FRAME_HDR_SIZE + (size_t)hdr.len;
	return 0;
}

/* Only a frame that crosses the bridge's slot has a node to name:
 * between two local workers a node would be a bug (it would make the
 * receiver answer a session on another node that it never asked), and
 * a node_slot without a node means nothing. */
int frame_check_route(const struct ipc_frame_header *hdr, unsigned dst_slot,
		      unsigned bridge_slot, const char **error_r)
{
	/* a token: another node's frame, from the bridge, or a lend
	 * between two local workers (settle.h) */
	if (hdr->token != 0 &&
	    !(hdr->src_slot == bridge_slot && hdr->node != 0) &&
	    !(hdr->src_slot != bridge_slot && dst_slot != bridge_slot &&
	      hdr->node == 0)) {
		*error_r = "a token on a frame not from another node";
		return -1;
	}
	if (hdr->node == 0) {
		if (hdr->node_slot == 0)
			return 0;
		*error_r = "node slot without a node";
		return -1;
	}
	if (hdr->src_slot != bridge_slot && dst_slot != bridge_slot)
		*error_r = "node fields on a frame between local workers";
	else if (hdr->node >= IPC_MAX_NODES)
		*error_r = "node index out of range";
	else if (hdr->node_slot >= IPC_MAX_SLOTS)
		*error_r = "node slot out of range";
	else
		return 0;
	return -1;
}

void frame_reader_init(struct frame_reader *r, const void *payload,
		       size_t len)
{
	r->p = payload;
	r->len = len;
	r->pos = 0;
}

static int frame_get(struct frame_reader *r, void *v_r, size_t n)
{
	if (n > r->len - r->pos)
		return -1;
	memcpy(v_r, r->p + r->pos, n);
	r->pos += n;
	return 0;
}

int frame_get_u8(struct frame_reader *r, uint8_t *v_r)
{
	return frame_get(r, v_r, sizeof(*v_r));
}

int frame_get_u16(struct frame_reader *r, uint16_t *v_r)
{
	return frame_get(r, v_r, sizeof(*v_r));
}

int frame_get_u32(struct frame_reader *r, uint32_t *v_r)
{
	return frame_get(r, v_r, sizeof(*v_r));
}

int frame_get_u64(struct frame_reader *r, uint64_t *v_r)
{
	return frame_get(r, v_r, sizeof(*v_r));
}

int frame_get_data(struct frame_reader *r, const void **p_r, size_t *n_r)
{
	size_t start = r->pos;
	uint32_t n;

	if (frame_get_u32(r, &n) < 0)
		return -1;
	if (n > r->len - r->pos) {
		r->pos = start;
		return -1;
	}
	*p_r = r->p + r->pos;
	*n_r = n;
	r->pos += n;
	return 0;
}

int frame_get_str(struct frame_reader *r, char *buf, size_t size)
{
	size_t start = r->pos;
	const void *p;
	size_t n;

	if (frame_get_data(r, &p, &n) < 0)
		return -1;
	if (n >= size || memchr(p, '\0', n) != NULL) {
		r->pos = start;
		return -1;
	}
	memcpy(buf, p, n);
	buf[n] = '\0';
	return 0;
}

void frame_get_rest(struct frame_reader *r, const void **p_r, size_t *n_r)
{
	*p_r = r->p + r->pos;
	*n_r = r->len - r->pos;
	r->pos = r->len;
}

int frame_end(struct frame_reader *r)
{
	return r->pos == r->len ? 0 : -1;
}

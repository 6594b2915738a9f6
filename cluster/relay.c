/*
 * relay.c - numbered, acknowledged frames between two nodes (relay.h).
 * Failure policy: a batch that fails a check is dropped whole and not
 * acknowledged, so the sender sends it again (and logs if it keeps
 * failing); a frame that cannot be kept is refused to the caller, which
 * bounces it to its sender.  Nothing here blocks or logs.
 */
#include "relay.h"
#include "frame.h"
#include "wire.h"

#include <stdlib.h>
#include <string.h>

#define RELAY_VERSION 1u
#define RELAY_HDR_FIXED 40u
#define RELAY_SACK_FIXED 16u        /* received, claim */

/* magic u32, version u8, kind u8, name length u8, 0 u8, incarnation u64,
 * peer incarnation u64, seq u64, count u32, stream u32, then the name. */
int relay_put_hdr(struct buf *b, const struct relay_hdr *h)
{
	uint8_t f[RELAY_HDR_FIXED];
	size_t n = strnlen(h->node, sizeof(h->node));
	if (n == 0 || n > RELAY_NODE_MAX)
		return -1;
	memset(f, 0, sizeof(f));
	wire_put_u32(f, RELAY_MAGIC);
	f[4] = RELAY_VERSION;
	f[5] = h->kind;
	f[6] = (uint8_t)n;
	wire_put_u64(f + 8, h->incarnation);
	wire_put_u64(f + 16, h->peer_incarnation);
	wire_put_u64(f + 24, h->seq);
	wire_put_u32(f + 32, h->count);
	wire_put_u32(f + 36, h->stream);
	if (buf_append(b, f, sizeof(f)) < 0 || buf_append(b, h->node, n) < 0)
		return -1;
	return 0;
}

void relay_set_count(struct buf *b, size_t hdr_off, uint32_t count)
{
	wire_put_u32((uint8_t *)b->data + hdr_off + 32, count);
}

int relay_read_begin(struct relay_reader *r, const void *data, size_t len,
		     const char **error_r)
{
	const uint8_t *p = data;
	memset(r, 0, sizeof(*r));
	if (len < RELAY_HDR_FIXED || wire_get_u32(p) != RELAY_MAGIC) {
		*error_r = "not a relay batch";
		return -1;
	}
	if (p[4] != RELAY_VERSION) {
		*error_r = "relay batch of another version";
		return -1;
	}
	r->hdr.kind = p[5];
	size_t n = p[6];
	if ((r->hdr.kind != RELAY_FRAMES && r->hdr.kind != RELAY_ACK &&
	     r->hdr.kind != RELAY_REFUSED) || p[7] != 0) {
		*error_r = "unknown relay batch kind";
		return -1;
	}
	if (len < RELAY_HDR_FIXED + n || !wire_name_ok(p + RELAY_HDR_FIXED, n)) {
		*error_r = "bad node name in a relay batch";
		return -1;
	}
	memcpy(r->hdr.node, p + RELAY_HDR_FIXED, n);
	r->hdr.node[n] = '\0';
	r->hdr.incarnation = wire_get_u64(p + 8);
	r->hdr.peer_incarnation = wire_get_u64(p + 16);
	r->hdr.seq = wire_get_u64(p + 24);
	r->hdr.count = wire_get_u32(p + 32);
	r->hdr.stream = wire_get_u32(p + 36);
	size_t rest = len - RELAY_HDR_FIXED - n;
	/* a refusal is an ack with the same body */
	bool ack = r->hdr.kind != RELAY_FRAMES;
	if ((ack && (r->hdr.count > RELAY_SACK_MAX ||
		     rest != RELAY_SACK_FIXED + (size_t)r->hdr.count * 16u)) ||
	    (!ack &&
	     r->hdr.count > rest / IPC_FRAME_HDR_SIZE)) {
		*error_r = "relay batch length does not match its count";
		return -1;
	}
	if (r->hdr.kind == RELAY_FRAMES && (r->hdr.count == 0 ||
					    r->hdr.seq == 0)) {
		*error_r = "relay batch without frames";
		return -1;
	}
	r->p = p;
	r->len = len;
	r->off = RELAY_HDR_FIXED + n;
	r->left = r->hdr.count;
	return 0;
}

int relay_read_next(struct relay_reader *r, struct ipc_frame_header *hdr,
		    const void **frame_r, size_t *frame_len_r,
		    const char **error_r)
{
	size_t size;
	if (r->left == 0) {
		if (r->off != r->len) {
			*error_r = "bytes after a relay batch's frames";
			return -1;
		}
		return 0;
	}
	if (frame_parse_header(r->p + r->off, r->len - r->off, hdr, &size,
			       error_r) < 0)
		return -1;
	if (hdr->flags & IPC_FRAME_F_MORE) {
		*error_r = "a partial frame in a relay batch";
		return -1;
	}
	*frame_r = r->p + r->off;
	*frame_len_r = size;
	r->off += size;
	r->left--;
	return 1;
}

int relay_read_sack(const struct relay_reader *r, struct relay_sack *s,
		    const char **error_r)
{
	const uint8_t *p = r->p + r->off;
	uint64_t after;
	memset(s, 0, sizeof(*s));
	if (r->hdr.kind != RELAY_ACK && r->hdr.kind != RELAY_REFUSED) {
		*error_r = "not an ack";
		return -1;
	}
	s->received = wire_get_u64(p);
	s->claim = wire_get_u64(p + 8);
	s->nholes = r->hdr.count;
	if (s->claim < r->hdr.seq || s->received < s->claim) {
		*error_r = "ack claims below what it says done or arrived";
		return -1;
	}
	after = r->hdr.seq;
	for (uint32_t i = 0; i < s->nholes; i++) {
		s->holes[i].from = wire_get_u64(p + 16 + 16 * (size_t)i);
		s->holes[i].to = wire_get_u64(p + 24 + 16 * (size_t)i);
		if (s->holes[i].from <= after ||
		    s->holes[i].to < s->holes[i].from ||
		    s->holes[i].to > s->claim) {
			*error_r = "ack holes out of order";
			return -1;
		}
		after = s->holes[i].to;
	}
	return 0;
}

int relay_put_sack(struct buf *b, const struct relay_sack *s)
{
	uint8_t f[16];
	wire_put_u64(f, s->received);
	wire_put_u64(f + 8, s->claim);
	if (buf_append(b, f, sizeof(f)) < 0)
		return -1;
	for (uint32_t i = 0; i < s->nholes; i++) {
		wire_put_u64(f, s->holes[i].from);
		wire_put_u64(f + 8, s->holes[i].to);
		if (buf_append(b, f, sizeof(f)) < 0)
			return -1;
	}
	return 0;
}

/* ---- sending side --------------------------------------------------- */

void relay_out_init(struct relay_out *o, uint64_t peer_incarnation,
		    size_t max_bytes)
{
	memset(o, 0, sizeof(*o));
	o->peer_incarnation = peer_incarnation;
	o->stream = 1;
	o->next_seq = 1;
	o->max_bytes = max_bytes;
}

int relay_out_add(struct relay_out *o, const void *frame, size_t len,
		  int64_t now_ms, uint64_t *seq_r)
{
	if (len > o->max_bytes || o->bytes > o->max_bytes - len)
		return -1;
	struct relay_item *it = malloc(sizeof(*it) + len);
	if (it == NULL)
		return -1;
	it->next = NULL;
	it->seq = o->next_seq++;
	it->len = len;
	memcpy(it->data, frame, len);
	if (o->tail != NULL) {
		o->tail->next = it;
	} else {
		o->head = it;
		o->progress_ms = now_ms;    /* the resend clock starts */
	}
	o->tail = it;
	o->bytes += len;
	o->count++;
	*seq_r = it->seq;
	return 0;
}

int relay_out_ack(struct relay_out *o, uint64_t peer_incarnation,
		  uint32_t stream, uint64_t upto, int64_t now_ms)
{
	if (peer_incarnation != o->peer_incarnation || stream != o->stream ||
	    upto >= o->next_seq)
		return -1;
	if (upto <= o->acked)
		return 0;
	o->acked = upto;
	if (o->received < upto)
		o->received = upto;
	o->progress_ms = now_ms;
	while (o->head != NULL && o->head->seq <= upto) {
		struct relay_item *it = o->head;
		o->head = it->next;
		o->bytes -= it->len;
		o->count--;
		free(it);
	}
	if (o->head == NULL)
		o->tail = NULL;
	return 0;
}

int relay_out_sack(struct relay_out *o, uint64_t peer_incarnation,
		   uint32_t stream, uint64_t upto, const struct relay_sack *s,
		   int64_t now_ms)
{
	if (peer_incarnation != o->peer_incarnation || stream != o->stream ||
	    upto >= o->next_seq || s->received >= o->next_seq)
		return -1;
	if (relay_out_ack(o, peer_incarnation, stream, upto, now_ms) < 0)
		return -1;
	if (s->received > o->received) {
		o->received = s->received;
		o->progress_ms = now_ms;
	}
	/* free what (seq, claim] says done with, the holes kept */
	struct relay_item **pp = &o->head, *prev = NULL;
	uint32_t h = 0;
	while (*pp != NULL && (*pp)->seq <= s->claim) {
		struct relay_item *it = *pp;
		while (h < s->nholes && s->holes[h].to < it->seq)
			h++;
		if (h < s->nholes && s->holes[h].from <= it->seq) {
			prev = it;
			pp = &it->next;
			continue;
		}
		*pp = it->next;
		o->bytes -= it->len;
		o->count--;
		free(it);
	}
	if (*pp == NULL)
		o->tail = prev;
	return 0;
}

void relay_out_reset(struct relay_out *o, uint64_t peer_incarnation,
		     void (*each)(void *ctx, const void *frame, size_t len),
		     void *ctx)
{
	size_t max = o->max_bytes;
	uint32_t stream = o->stream;
	struct relay_item *it = o->head;
	while (it != NULL) {
		struct relay_item *next = it->next;
		if (each != NULL)
			each(ctx, it->data, it->len);
		free(it);
		it = next;
	}
	relay_out_init(o, peer_incarnation, max);
	o->stream = stream + 1;
}

const struct relay_item *relay_out_resend_due(struct relay_out *o,
					      int64_t now_ms,
					      int64_t resend_ms)
{
	const struct relay_item *it = o->head;
	if (it == NULL || now_ms - o->progress_ms < resend_ms)
		return NULL;
	while (it != NULL && it->seq <= o->received)
		it = it->next;      /* arrived: waits to be done with */
	if (it == NULL)
		return NULL;
	o->progress_ms = now_ms;    /* the next resend one period later */
	return it;
}

/* ---- receiving side ------------------------------------------------- */

void relay_in_reset(struct relay_in *in, uint64_t peer_incarnation)
{
	in->peer_incarnation = peer_incarnation;
	in->stream = 0;
	in->delivered = 0;
	in->settled = 0;
	in->claim = 0;
	in->nholes = 0;
	in->refusing = false;
}

enum relay_verdict relay_in_verdict(struct relay_in *in,
				    uint64_t self_incarnation,
				    const struct relay_hdr *h,
				    uint32_t *skip_r, bool *restarted_r)
{
	*skip_r = 0;
	*restarted_r = false;
	if (h->peer_incarnation != self_incarnation)
		return RELAY_NOT_FOR_US;
	if (h->incarnation != in->peer_incarnation || h->stream < in->stream)
		return RELAY_OTHER_RUN;
	if (h->stream > in->stream) {
		/* the sender started over (it thought us gone): so do we;
		 * refusing while we followed none of its streams, this one
		 * may be the one it handed back: refused too (a sender on
		 * it starts another, which we take) */
		bool unknown = in->refusing && in->stream == 0;
		in->stream = h->stream;
		in->delivered = 0;
		in->settled = 0;
		in->claim = 0;
		in->nholes = 0;
		*restarted_r = true;
		if (unknown)
			return RELAY_REFUSED_STREAM;
		in->refusing = false;
	} else if (in->refusing) {
		return RELAY_REFUSED_STREAM;
	}
	if (h->seq - 1 > in->delivered)
		return RELAY_GAP;
	uint64_t skip = in->delivered - (h->seq - 1);
	if (skip >= h->count)
		return RELAY_DUPLICATE;
	*skip_r = (uint32_t)skip;
	return RELAY_TAKE;
}

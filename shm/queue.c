/*
 * queue.c - per-slot worker queues over SOCK_DGRAM socketpairs (queue.h).
 *
 * Each destination has one buffer of finished frames in send order; the
 * datagram boundaries (whole frames, up to IPC_DGRAM_MAX) are chosen at
 * flush time, so frames are never copied twice and the unsent tail is
 * the outbox.  Failure policy: queue_send refuses past the outbox bounds
 * (frames, and bytes: a destination that does not read costs at most
 * outbox_bytes here) so the caller can bounce; before refusing for bytes
 * it tries the socket once, so a burst within one loop turn is not taken
 * for a stuck reader; a full socket keeps frames for later; a bad
 * datagram or frame from a peer is logged at warn and dropped, never
 * fatal, because one worker's bug must not take down another.  A
 * datagram is peeked, dispatched, and only then taken off the socket,
 * so a worker killed in the middle leaves it to its respawn: frames
 * arrive at least once through a crash (what a frame carries is never
 * lost with the worker; XEP-0198's journal takes it from there), and
 * a datagram that kills its reader twice is dropped (see
 * queue_set_dispatch_flag).  Fragments of a frame longer than a
 * datagram are taken as they come: such a frame in the middle of its
 * reassembly when the worker dies is lost.
 */
#include <errno.h>
#include <stdatomic.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include "queue.h"
#include "frame.h"
#include "metrics.h"
#include "../lib/buf.h"
#include "../lib/log.h"

#define QUEUE_SOCKBUF (4 * 1024 * 1024)
#define QUEUE_OUTBOX_DEFAULT 65536u
#define QUEUE_OUTBOX_BYTES_DEFAULT (4u << 20)
/* Memory kept for reuse when a buffer drains; beyond it is given back so
 * one burst does not pin megabytes per slot. */
#define QUEUE_KEEP_BYTES (4 * IPC_DGRAM_MAX)

enum queue_reasm_state {
	QUEUE_REASM_IDLE = 0,
	QUEUE_REASM_ACTIVE,         /* collecting chunks of r->hdr's frame */
	QUEUE_REASM_DISCARD,        /* skipping the rest of a dropped frame */
};

struct queue_dst {
	struct buf out;             /* finished frames not yet sent, in order */
	size_t frames;              /* frames in out; the outbox bound */
	int fd;                     /* send end of the slot's socketpair */
};

struct queue_reasm {
	struct buf data;            /* payload so far, capped at IPC_FRAME_MAX */
	struct ipc_frame_header hdr;/* first chunk: names the frame */
	enum queue_reasm_state state;
};


struct queue {
	unsigned nslots;
	unsigned my_slot;
	unsigned bridge_slot;       /* the cluster bridge's, or
				       FRAME_NO_BRIDGE (queue_set_bridge) */
	unsigned outbox_max;        /* frames per destination */
	size_t outbox_bytes;        /* bytes per destination */
	int recv_fd;
	uint8_t *rbuf;              /* one datagram, reused */
	_Atomic uint32_t *dispatching;  /* 1 while a peeked datagram is
				       dispatched (shared: the respawn sees
				       it), or local_flag */
	_Atomic uint32_t local_flag;
	const uint8_t *cur;         /* the datagram being parsed */
	struct queue_dst dst[IPC_MAX_SLOTS];
	struct queue_reasm reasm[IPC_MAX_SLOTS];
};

/* ---- socket set --------------------------------------------------------- */

static void queue_set_bufs(int fd)
{
	int size = QUEUE_SOCKBUF;

	/* Best effort: the kernel caps these at wmem_max/rmem_max, and the
	 * outbox covers whatever the socket cannot hold. */
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
}

int queue_set_create(struct queue_set *qs, unsigned nslots,
		     const char **error_r)
{
	int sv[2], saved_errno;

	if (nslots == 0 || nslots > IPC_MAX_SLOTS) {
		*error_r = "bad slot count";
		return -1;
	}
	qs->nslots = nslots;
	for (unsigned i = 0; i < IPC_MAX_SLOTS; i++)
		qs->fds[i].recv = qs->fds[i].send = -1;
	for (unsigned i = 0; i < nslots; i++) {
		if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK |
			       SOCK_CLOEXEC, 0, sv) < 0) {
			saved_errno = errno;
			queue_set_close(qs);
			errno = saved_errno;    /* for the caller's %m */
			*error_r = "socketpair() failed";
			return -1;
		}
		queue_set_bufs(sv[0]);
		queue_set_bufs(sv[1]);
		qs->fds[i].recv = sv[0];
		qs->fds[i].send = sv[1];
	}
	return 0;
}

static void queue_close_fd(int *fd)
{
	if (*fd >= 0)
		(void)close(*fd);
	*fd = -1;
}

void queue_set_child(struct queue_set *qs, unsigned slot)
{
	for (unsigned i = 0; i < qs->nslots; i++) {
		if (i != slot)
			queue_close_fd(&qs->fds[i].recv);
	}
}

void queue_set_close(struct queue_set *qs)
{
	for (unsigned i = 0; i < IPC_MAX_SLOTS; i++) {
		queue_close_fd(&qs->fds[i].recv);
		queue_close_fd(&qs->fds[i].send);
	}
}

/* ---- queue state -------------------------------------------------------- */

struct queue *queue_new(struct queue_set *qs, unsigned my_slot,
			unsigned outbox_max_frames, size_t outbox_max_bytes)
{
	struct queue *q;

	if (my_slot >= qs->nslots)
		return NULL;
	if ((q = calloc(1, sizeof(*q))) == NULL)
		return NULL;
	q->dispatching = &q->local_flag;
	if ((q->rbuf = malloc(IPC_DGRAM_MAX)) == NULL) {
		free(q);
		return NULL;
	}
	q->nslots = qs->nslots;
	q->my_slot = my_slot;
	q->bridge_slot = FRAME_NO_BRIDGE;
	queue_set_limits(q, outbox_max_frames, outbox_max_bytes);
	q->recv_fd = qs->fds[my_slot].recv;
	for (unsigned i = 0; i < IPC_MAX_SLOTS; i++) {
		buf_init(&q->dst[i].out, 0);    /* bounded by frames instead */
		q->dst[i].fd = i < qs->nslots ? qs->fds[i].send : -1;
		buf_init(&q->reasm[i].data, IPC_FRAME_MAX);
	}
	return q;
}

void queue_set_limits(struct queue *q, unsigned outbox_max_frames,
		      size_t outbox_max_bytes)
{
	q->outbox_max = outbox_max_frames != 0 ? outbox_max_frames :
		QUEUE_OUTBOX_DEFAULT;
	q->outbox_bytes = outbox_max_bytes != 0 ? outbox_max_bytes :
		QUEUE_OUTBOX_BYTES_DEFAULT;
}

void queue_set_bridge(struct queue *q, unsigned bridge_slot)
{
	q->bridge_slot = bridge_slot < q->nslots ? bridge_slot :
		FRAME_NO_BRIDGE;
}

void queue_free(struct queue **qp)
{
	struct queue *q = *qp;

	if (q == NULL)
		return;
	for (unsigned i = 0; i < IPC_MAX_SLOTS; i++) {
		buf_free(&q->dst[i].out);
		buf_free(&q->reasm[i].data);
	}
	free(q->rbuf);
	free(q);
	*qp = NULL;
}

/* Empty b, keeping a modest allocation for the next burst. */
static void queue_buf_reset(struct buf *b)
{
	buf_consume(b, buf_used(b));
	if (b->cap > QUEUE_KEEP_BYTES)
		buf_shrink(b);
}

/* ---- sending ------------------------------------------------------------ */

static void queue_set_more(struct frame_writer *w)
{
	/* frame.h has no flags argument; the header is ours until sent */
	char *hdr = w->out->data + w->out->off + w->hdr_off;

	hdr[offsetof(struct ipc_frame_header, flags)] = IPC_FRAME_F_MORE;
}

static int queue_flush_dst(struct queue_dst *d);

/* The frame would pass a bound of d's outbox.  An empty outbox takes any
 * valid frame, so a bound below one frame cannot refuse everything. */
static int queue_over(const struct queue *q, const struct queue_dst *d,
		      size_t bytes, size_t chunks)
{
	size_t used = buf_used(&d->out);
	return d->frames + chunks > q->outbox_max ||
	       (used > 0 && used + bytes > q->outbox_bytes);
}

static const char *queue_check_send(struct queue *q, unsigned dst_slot,
				    const struct ipc_frame_header *hdr,
				    size_t len, size_t chunks)
{
	struct queue_dst *d;
	size_t bytes = len + chunks * IPC_FRAME_HDR_SIZE;
	uint8_t type = hdr->type;
	const char *error;

	if (dst_slot >= q->nslots)
		return "bad destination slot";
	if (frame_check_route(hdr, dst_slot, q->bridge_slot, &error) < 0)
		return error;
	if (type == 0 || type >= IPC_FRAME_TYPE_MAX)
		return "bad frame type";
	if (len > IPC_FRAME_MAX)
		return "frame too large";
	d = &q->dst[dst_slot];
	if (!queue_over(q, d, bytes, chunks))
		return NULL;
	/* Frames batched this turn are not yet an outbox: give the socket
	 * what it takes before calling the destination stuck. */
	if (queue_flush_dst(d) < 0)
		log_warn("queue: send(slot %u) failed: %m", dst_slot);
	if (!queue_over(q, d, bytes, chunks))
		return NULL;
	METRIC_INC(metrics_self->queue_full);
	return QUEUE_ERR_FULL;
}

int queue_send(struct queue *q, unsigned dst_slot, uint8_t type,
	       uint32_t conn_id, uint32_t gen, const void *payload,
	       size_t len, const char **error_r)
{
	return queue_send_node(q, dst_slot, 0, 0, type, conn_id, gen,
			       payload, len, error_r);
}

int queue_send_node(struct queue *q, unsigned dst_slot, uint8_t node,
		    uint8_t node_slot, uint8_t type, uint32_t conn_id,
		    uint32_t gen, const void *payload, size_t len,
		    const char **error_r)
{
	return queue_send_token(q, dst_slot, node, node_slot, type, conn_id,
				gen, 0, payload, len, error_r);
}

int queue_send_token(struct queue *q, unsigned dst_slot, uint8_t node,
		     uint8_t node_slot, uint8_t type, uint32_t conn_id,
		     uint32_t gen, uint32_t token, const void *payload,
		     size_t len, const char **error_r)
{
	size_t chunks = len == 0 ? 1 : (len + IPC_FRAG_MAX - 1) / IPC_FRAG_MAX;
	const uint8_t *p = payload;
	struct ipc_frame_header hdr = {
		.type = type, .src_slot = (uint16_t)q->my_slot,
		.node = node, .node_slot = node_slot, .token = token,
	};
	struct frame_writer w;
	struct buf *out;
	size_t before, n;

	if ((*error_r = queue_check_send(q, dst_slot, &hdr, len, chunks)))
		return -1;
	out = &q->dst[dst_slot].out;
	before = buf_used(out);
	for (size_t i = 0; i < chunks; i++, p += n, len -= n) {
		n = len < IPC_FRAG_MAX ? len : IPC_FRAG_MAX;
		frame_begin(&w, out, type, (uint16_t)q->my_slot, conn_id, gen);
		frame_set_node(&w, node, node_slot);
		if (token != 0)
			frame_set_token(&w, token);
		frame_add_raw(&w, p, n);
		if (frame_finish(&w, error_r) < 0) {
			/* all chunks or none: a lone head would never end */
			out->len = out->off + before;
			return -1;
		}
		if (i + 1 < chunks)
			queue_set_more(&w);
	}
	q->dst[dst_slot].frames += chunks;
	METRIC_INC(metrics_self->frames_out);
	return 0;
}

/* Whole frames from the head of out that fit one datagram. */
static size_t queue_dgram_span(const struct buf *out, size_t *frames_r)
{
	const char *head = buf_head(out);
	size_t used = buf_used(out), span = 0, frames = 0, size;
	uint32_t len;

	while (span < used) {
		memcpy(&len, head + span + offsetof(struct ipc_frame_header, len),
		       sizeof(len));
		size = IPC_FRAME_HDR_SIZE + (size_t)len;
		if (span + size > IPC_DGRAM_MAX)
			break;
		span += size;
		frames++;
	}
	*frames_r = frames;
	return span;
}

/* 1: all sent, 0: socket full, -1: error (errno set). */
static int queue_flush_dst(struct queue_dst *d)
{
	size_t span, frames;
	ssize_t n;

	while (buf_used(&d->out) > 0) {
		span = queue_dgram_span(&d->out, &frames);
		n = send(d->fd, buf_head(&d->out), span,
			 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
			      errno == ENOBUFS))
			return 0;
		if (n < 0)
			return -1;
		buf_consume(&d->out, span);
		d->frames -= frames;
	}
	queue_buf_reset(&d->out);
	return 1;
}

/* What stays in the outboxes after a flush (the metrics' gauges). */
static void queue_gauges(struct queue *q)
{
	size_t frames = 0, bytes = 0;
	for (unsigned i = 0; i < q->nslots; i++) {
		frames += q->dst[i].frames;
		bytes += buf_used(&q->dst[i].out);
	}
	METRIC_SET(metrics_self->queue_depth, frames);
	METRIC_SET(metrics_self->queue_bytes, bytes);
}

int queue_flush(struct queue *q)
{
	int ret = 1;

	for (unsigned i = 0; i < q->nslots; i++) {
		if (buf_used(&q->dst[i].out) == 0)
			continue;
		switch (queue_flush_dst(&q->dst[i])) {
		case 0:
			if (ret == 1)
				ret = 0;
			break;
		case -1:
			/* no error_r in the API, so this is the one log line;
			 * the frames stay queued under the outbox bound */
			log_warn("queue: send(slot %u) failed: %m", i);
			ret = -1;
			break;
		}
	}
	queue_gauges(q);
	return ret;
}

int queue_pending_fds(struct queue *q, int *fds, unsigned max)
{
	unsigned n = 0;

	for (unsigned i = 0; i < q->nslots && n < max; i++) {
		if (buf_used(&q->dst[i].out) > 0)
			fds[n++] = q->dst[i].fd;
	}
	return (int)n;
}

size_t queue_backlog(struct queue *q, unsigned dst_slot)
{
	return dst_slot < q->nslots ? q->dst[dst_slot].frames : 0;
}

size_t queue_backlog_bytes(struct queue *q, unsigned dst_slot)
{
	return dst_slot < q->nslots ? buf_used(&q->dst[dst_slot].out) : 0;
}

/* ---- receiving ---------------------------------------------------------- */

static void queue_reasm_reset(struct queue_reasm *r)
{
	queue_buf_reset(&r->data);
	r->state = QUEUE_REASM_IDLE;
}

void queue_forget_source(struct queue *q, unsigned src_slot)
{
	if (src_slot < IPC_MAX_SLOTS)
		queue_reasm_reset(&q->reasm[src_slot]);
}

static int queue_same_frame(const struct ipc_frame_header *a,
			    const struct ipc_frame_header *b)
{
	return a->type == b->type && a->conn_id == b->conn_id &&
		a->gen == b->gen && a->node == b->node &&
		a->node_slot == b->node_slot;
}

/* Drop a partial frame.  Its remaining chunks must not be taken for a
 * new frame, so they are skipped until its last chunk. */
static void queue_reasm_drop(struct queue_reasm *r, unsigned src,
			     const char *why)
{
	log_warn("queue: dropping partial frame from slot %u (%zu bytes): %s",
		 src, buf_used(&r->data), why);
	queue_buf_reset(&r->data);
	r->state = QUEUE_REASM_DISCARD;
}

/* A bad frame may have been a chunk; splicing the chunks around it would
 * deliver a corrupt frame, so every partial frame is given up. */
static void queue_reasm_drop_all(struct queue *q)
{
	for (unsigned i = 0; i < q->nslots; i++) {
		if (q->reasm[i].state == QUEUE_REASM_ACTIVE)
			queue_reasm_drop(&q->reasm[i], i, "bad datagram");
	}
}

static int queue_reasm_add(struct queue_reasm *r,
			   const struct ipc_frame_header *hdr,
			   const void *payload, queue_frame_cb *cb, void *ctx)
{
	struct ipc_frame_header full;

	if (r->state == QUEUE_REASM_IDLE) {
		r->hdr = *hdr;
		r->state = QUEUE_REASM_ACTIVE;
	}
	if (buf_append(&r->data, payload, hdr->len) < 0) {
		queue_reasm_drop(r, hdr->src_slot, "over IPC_FRAME_MAX");
		if (!(hdr->flags & IPC_FRAME_F_MORE))
			r->state = QUEUE_REASM_IDLE;
		return 0;
	}
	if (hdr->flags & IPC_FRAME_F_MORE)
		return 0;
	full = r->hdr;
	full.flags = 0;
	full.len = (uint32_t)buf_used(&r->data);
	cb(&full, buf_head(&r->data), full.len, ctx);
	queue_reasm_reset(r);
	return 1;
}

/* One valid frame; returns the number of frames handed to cb (0 or 1). */
static int queue_deliver(struct queue *q, const struct ipc_frame_header *hdr,
			 const void *payload, queue_frame_cb *cb, void *ctx)
{
	struct queue_reasm *r = &q->reasm[hdr->src_slot];
	int more = (hdr->flags & IPC_FRAME_F_MORE) != 0;

	if (r->state != QUEUE_REASM_IDLE && !queue_same_frame(&r->hdr, hdr)) {
		/* the sender never interleaves, so it restarted mid-frame */
		if (r->state == QUEUE_REASM_ACTIVE)
			log_warn("queue: dropping partial frame from slot %u: "
				 "next frame does not match", hdr->src_slot);
		queue_reasm_reset(r);
	}
	if (r->state == QUEUE_REASM_DISCARD) {
		if (!more)
			r->state = QUEUE_REASM_IDLE;
		return 0;
	}
	if (r->state == QUEUE_REASM_IDLE && !more) {
		cb(hdr, payload, hdr->len, ctx);    /* common case: no copy */
		return 1;
	}
	return queue_reasm_add(r, hdr, payload, cb, ctx);
}

static int queue_parse_frame(struct queue *q, size_t off, size_t n,
			     struct ipc_frame_header *hdr_r, size_t *size_r,
			     const char **error_r)
{
	if (frame_parse_header(q->cur + off, n - off, hdr_r, size_r,
			       error_r) < 0)
		return -1;
	if (hdr_r->src_slot >= q->nslots) {
		*error_r = "bad source slot";
		return -1;
	}
	return frame_check_route(hdr_r, q->my_slot, q->bridge_slot, error_r);
}

static int queue_parse_dgram(struct queue *q, size_t n, queue_frame_cb *cb,
			     void *ctx)
{
	struct ipc_frame_header hdr;
	const char *error;
	size_t off = 0, size;
	int delivered = 0;

	/* do-while: an empty datagram is malformed too */
	do {
		if (queue_parse_frame(q, off, n, &hdr, &size, &error) < 0) {
			log_warn("queue: dropping rest of a %zu-byte datagram "
				 "at offset %zu: %s", n, off, error);
			queue_reasm_drop_all(q);
			break;
		}
		delivered += queue_deliver(q, &hdr, q->cur + off +
					   IPC_FRAME_HDR_SIZE, cb, ctx);
		off += size;
	} while (off < n);
	return delivered;
}

void queue_set_dispatch_flag(struct queue *q, _Atomic uint32_t *flag)
{
	q->dispatching = flag != NULL ? flag : &q->local_flag;
}

/* Take the head datagram off the socket (it was peeked). */
static void queue_consume(struct queue *q)
{
	uint8_t byte;

	while (recv(q->recv_fd, &byte, sizeof(byte), MSG_DONTWAIT) < 0 &&
	       errno == EINTR)
		;
}

int queue_receive(struct queue *q, queue_frame_cb *cb, void *ctx,
		  unsigned max_dgrams)
{
	int delivered = 0;
	unsigned got = 0;

	/* the cap keeps the int count exact; a datagram holds < 4096 frames */
	while ((max_dgrams == 0 || got < max_dgrams) &&
	       delivered < INT_MAX - 4096) {
		/* 1 here: the last reader died dispatching the head
		 * datagram.  It gets one more go, taken off first, so that
		 * a datagram that kills its reader does not kill them all. */
		int again = atomic_load_explicit(q->dispatching,
						 memory_order_relaxed) != 0;
		ssize_t n = recv(q->recv_fd, q->rbuf, IPC_DGRAM_MAX,
				 MSG_DONTWAIT | MSG_TRUNC |
				 (again ? 0 : MSG_PEEK));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0)
			return -1;
		got++;
		q->cur = q->rbuf;
		if (again) {
			atomic_store(q->dispatching, 0);
			log_warn("queue: the previous worker died dispatching a "
				 "datagram: dispatched once more");
		}
		if ((size_t)n > IPC_DGRAM_MAX) {
			log_warn("queue: dropping oversized datagram");
			queue_reasm_drop_all(q);
			if (!again)
				queue_consume(q);
			continue;
		}
		if (!again)
			atomic_store(q->dispatching, 1);
		delivered += queue_parse_dgram(q, (size_t)n, cb, ctx);
		if (!again) {
			queue_consume(q);
			atomic_store(q->dispatching, 0);
		}
	}
	return delivered;
}

/*
 * xfer.c - cross-node stanza traffic over relay pairs (xfer.h).
 * Failure policy: a bad batch is dropped unacknowledged (its sender
 * sends it again, and a peer that keeps sending bad ones is logged by
 * the caller); a frame past the bound is refused to the caller, which
 * bounces it; nothing is dropped without being handed back.
 */
#include "xfer.h"

#include <string.h>

void xfer_init(struct xfer *x, const char *self, uint64_t incarnation,
	       size_t batch_max, size_t retain_max, int64_t resend_ms,
	       const struct xfer_ops *ops)
{
	memset(x, 0, sizeof(*x));
	memcpy(x->self, self, strnlen(self, RELAY_NODE_MAX));
	x->self_incarnation = incarnation;
	x->batch_max = batch_max;
	x->retain_max = retain_max;
	x->resend_ms = resend_ms;
	x->ops = *ops;
	for (unsigned i = 0; i < IPC_MAX_NODES; i++)
		buf_init(&x->peers[i].batch, 0);
}

struct handback {
	struct xfer *x;
	unsigned node;
};

static void hand_back(void *ctx, const void *frame, size_t len)
{
	struct handback *h = ctx;
	h->x->ops.undelivered(h->x->ops.ctx, h->node, frame, len);
}

static void batch_clear(struct xfer_peer *p)
{
	buf_free(&p->batch);
	buf_init(&p->batch, 0);
	p->batch_count = 0;
}

void xfer_free(struct xfer *x)
{
	for (unsigned i = 0; i < IPC_MAX_NODES; i++) {
		relay_out_reset(&x->peers[i].out, 0, NULL, NULL);
		buf_free(&x->peers[i].batch);
	}
}

void xfer_peer_run(struct xfer *x, unsigned node, uint64_t incarnation)
{
	struct xfer_peer *p = &x->peers[node];
	struct handback h = { x, node };
	if (node == 0 || node >= IPC_MAX_NODES ||
	    (p->known && p->out.peer_incarnation == incarnation))
		return;
	batch_clear(p);
	if (p->known)
		relay_out_reset(&p->out, incarnation, hand_back, &h);
	else
		relay_out_init(&p->out, incarnation, x->retain_max);
	/* a new sequence number even for a node we forgot: it may not
	 * have forgotten us, and must see that we start over */
	p->out.stream = ++p->streams;
	/* what we receive from it resets only with a new run of it: if it
	 * never thought us gone, it goes on with its stream, which we
	 * refuse if we thought it gone (xfer_peer_down): it sends that
	 * again on a new one, which we follow as any later stream */
	if (p->in.peer_incarnation != incarnation)
		relay_in_reset(&p->in, incarnation);
	p->known = true;
	p->ack_due = false;
	p->refuse_due = false;
}

struct rerun {
	struct xfer *x;
	unsigned node;
	struct buf frames;      /* [size_t len][bytes]... */
};

static void rerun_keep(void *ctx, const void *frame, size_t len)
{
	struct rerun *r = ctx;
	size_t before = buf_used(&r->frames);
	if (buf_append(&r->frames, &len, sizeof(len)) < 0 ||
	    buf_append(&r->frames, frame, len) < 0) {
		r->frames.len = r->frames.off + before;  /* drop the half */
		r->x->ops.undelivered(r->x->ops.ctx, r->node, frame, len);
	}
}

/* What is kept for node goes out again on a new stream (to run
 * incarnation), numbered from 1 in the same order. */
static void restream(struct xfer *x, unsigned node, uint64_t incarnation,
		     int64_t now_ms)
{
	struct xfer_peer *p = &x->peers[node];
	struct rerun r;
	r.x = x;
	r.node = node;
	buf_init(&r.frames, 0);
	batch_clear(p);
	relay_out_reset(&p->out, incarnation, rerun_keep, &r);
	p->out.stream = ++p->streams;
	for (size_t off = 0; off + sizeof(size_t) <= buf_used(&r.frames);) {
		size_t len;
		uint64_t seq;
		memcpy(&len, buf_head(&r.frames) + off, sizeof(len));
		off += sizeof(len);
		const char *f = buf_head(&r.frames) + off;
		off += len;
		if (relay_out_add(&p->out, f, len, now_ms, &seq) < 0) {
			x->ops.undelivered(x->ops.ctx, node, f, len);
			continue;
		}
		if (p->batch_count == 0)
			p->batch_first = seq;
		p->batch_count++;
	}
	buf_free(&r.frames);
}

void xfer_peer_rerun(struct xfer *x, unsigned node, uint64_t incarnation,
		     int64_t now_ms)
{
	struct xfer_peer *p;
	if (node == 0 || node >= IPC_MAX_NODES || !(p = &x->peers[node])->known) {
		xfer_peer_run(x, node, incarnation);
		return;
	}
	restream(x, node, incarnation, now_ms);
	relay_in_reset(&p->in, incarnation);
	p->ack_due = false;
	p->refuse_due = false;
}

/* The peer refused our stream from after s->received (it thought us
 * gone meanwhile, and cannot tell what we handed back then from what
 * we still keep).  What arrived is done with as far as we can know:
 * the peer no longer settles that stream (it got those frames, and
 * holds any it has not written yet until it writes them; only its
 * death before that loses them, the price of a one-sided DOWN).  The
 * rest goes again on a new stream, which it takes. */
static void refused(struct xfer *x, unsigned node, const struct relay_hdr *h,
		    const struct relay_sack *s, int64_t now_ms)
{
	struct xfer_peer *p = &x->peers[node];
	if (h->stream != p->out.stream ||
	    relay_out_sack(&p->out, h->incarnation, h->stream, h->seq, s,
			   now_ms) < 0 ||
	    relay_out_ack(&p->out, h->incarnation, h->stream, s->received,
			  now_ms) < 0)
		return;         /* a stream we left already: nothing to do */
	restream(x, node, p->out.peer_incarnation, now_ms);
}

void xfer_peer_down(struct xfer *x, unsigned node)
{
	struct xfer_peer *p = &x->peers[node];
	struct handback h = { x, node };
	if (node == 0 || node >= IPC_MAX_NODES || !p->known)
		return;
	batch_clear(p);
	relay_out_reset(&p->out, 0, hand_back, &h);
	/* p->in stays (the same run heard again goes on where it was), but
	 * its current stream is refused: if it thought us gone too, it
	 * handed back what it kept for us, and copies NATS still holds
	 * (the TCP buffer of a route across a partition) would reach our
	 * workers after the sender answered them (an error, offline
	 * storage): a room message then stored twice.  A sender that did
	 * not think us gone sends the same again on a new stream. */
	p->in.refusing = true;
	p->known = false;
	p->ack_due = false;
	p->refuse_due = false;
}

/* Batches one resend publishes at most: everything kept again each
 * second would flood a receiver that is merely slow (and its event
 * ring), and the rest follows once acks move. */
#define XFER_RESEND_BATCHES 8

static int publish_from(struct xfer *x, unsigned node,
			const struct relay_item *from, int64_t now_ms,
			unsigned max_batches)
{
	struct xfer_peer *p = &x->peers[node];
	struct relay_hdr h = {
		.kind = RELAY_FRAMES, .incarnation = x->self_incarnation,
		.peer_incarnation = p->out.peer_incarnation,
		.stream = p->out.stream,
	};
	struct buf b;
	int rc = 0;
	(void)now_ms;
	memcpy(h.node, x->self, sizeof(h.node));
	while (from != NULL && rc == 0 && max_batches-- > 0) {
		uint32_t n = 0;
		buf_init(&b, 0);
		h.seq = from->seq;
		if (relay_put_hdr(&b, &h) < 0) {
			buf_free(&b);
			return -1;
		}
		for (; from != NULL && (n == 0 || buf_used(&b) + from->len <=
					x->batch_max); from = from->next, n++)
			if (buf_append(&b, from->data, from->len) < 0)
				break;
		relay_set_count(&b, 0, n);
		rc = x->ops.publish(x->ops.ctx, node, buf_head(&b),
				    buf_used(&b));
		p->batches_out++;
		buf_free(&b);
	}
	return rc;
}

int xfer_send(struct xfer *x, unsigned node, const void *frame, size_t len,
	      int64_t now_ms)
{
	struct xfer_peer *p;
	uint64_t seq;
	if (node == 0 || node >= IPC_MAX_NODES || !(p = &x->peers[node])->known)
		return -1;
	if (relay_out_add(&p->out, frame, len, now_ms, &seq) < 0) {
		p->refused++;
		return -1;
	}
	if (p->batch_count == 0)
		p->batch_first = seq;
	p->batch_count++;
	p->frames_out++;
	return 0;
}

static void send_ack(struct xfer *x, unsigned node, enum relay_kind kind)
{
	struct xfer_peer *p = &x->peers[node];
	struct relay_sack sk = { .received = p->in.delivered };
	/* what was settled since the holes were worked out moved settled
	 * past them: only the holes still beyond it count */
	if (p->in.claim > p->in.settled) {
		sk.claim = p->in.claim;
		for (uint32_t i = 0; i < p->in.nholes; i++)
			if (p->in.holes[i].from > p->in.settled)
				sk.holes[sk.nholes++] = p->in.holes[i];
	} else {
		sk.claim = p->in.settled;
	}
	struct relay_hdr h = {
		.kind = (uint8_t)kind, .incarnation = x->self_incarnation,
		.peer_incarnation = p->in.peer_incarnation,
		.seq = p->in.settled, .stream = p->in.stream,
		.count = sk.nholes,
	};
	struct buf b;
	memcpy(h.node, x->self, sizeof(h.node));
	buf_init(&b, 0);
	if (relay_put_hdr(&b, &h) == 0 && relay_put_sack(&b, &sk) == 0)
		x->ops.publish_ack(x->ops.ctx, node, buf_head(&b),
				   buf_used(&b));
	buf_free(&b);
	p->ack_due = false;
	if (kind == RELAY_REFUSED)
		p->refuse_due = false;
}

void xfer_flush(struct xfer *x, int64_t now_ms)
{
	for (unsigned node = 1; node < IPC_MAX_NODES; node++) {
		struct xfer_peer *p = &x->peers[node];
		if (!p->known)
			continue;
		if (p->refuse_due)      /* an ack too */
			send_ack(x, node, RELAY_REFUSED);
		else if (p->ack_due)
			send_ack(x, node, RELAY_ACK);
		const struct relay_item *again =
			relay_out_resend_due(&p->out, now_ms, x->resend_ms);
		if (again != NULL) {
			/* the oldest unacked go again (a window of them) */
			p->resent++;
			publish_from(x, node, again, now_ms,
				     XFER_RESEND_BATCHES);
		}
		if (p->batch_count > 0) {       /* this turn's, as always */
			const struct relay_item *from = p->out.head;
			while (from != NULL && from->seq < p->batch_first)
				from = from->next;
			publish_from(x, node, from, now_ms, UINT32_MAX);
		}
		p->batch_count = 0;
	}
}

static int receive_frames(struct xfer *x, unsigned from,
			  struct relay_reader *r, const char **error_r)
{
	struct xfer_peer *p = &x->peers[from];
	struct ipc_frame_header fh;
	const void *f;
	size_t flen;
	uint32_t skip, i = 0;
	bool restarted;
	int rc;
	/* the whole batch must read before any of it is handed on */
	struct relay_reader check = *r;
	while ((rc = relay_read_next(&check, &fh, &f, &flen, error_r)) == 1)
		;
	if (rc < 0)
		return -1;
	enum relay_verdict v = relay_in_verdict(&p->in, x->self_incarnation,
						&r->hdr, &skip, &restarted);
	if (restarted && x->ops.in_reset != NULL)
		x->ops.in_reset(x->ops.ctx, from);
	switch (v) {
	case RELAY_NOT_FOR_US:
	case RELAY_OTHER_RUN:
		return 0;
	case RELAY_DUPLICATE:
		p->dups++;
		p->ack_due = true;
		return 0;
	case RELAY_GAP:
		p->gaps++;
		p->ack_due = true;
		return 0;
	case RELAY_REFUSED_STREAM:
		p->refuse_due = true;
		return 0;
	case RELAY_TAKE:
		break;
	}
	p->batches_in++;
	while (relay_read_next(r, &fh, &f, &flen, error_r) == 1) {
		if (i++ < skip)
			continue;
		uint64_t seq = r->hdr.seq + i - 1;
		int d = x->ops.deliver(x->ops.ctx, from, seq, &fh, f, flen);
		if (d < 0)
			break;          /* the rest comes again */
		p->in.delivered = seq;
		p->frames_in++;
		if (d == 0 && p->in.settled == seq - 1)
			p->in.settled = seq;
	}
	p->ack_due = true;
	return 0;
}

int xfer_receive(struct xfer *x, unsigned from_node, const void *data,
		 size_t len, int64_t now_ms, const char **error_r)
{
	struct relay_reader r;
	struct xfer_peer *p;
	if (from_node == 0 || from_node >= IPC_MAX_NODES ||
	    !(p = &x->peers[from_node])->known) {
		*error_r = "from a node we do not follow";
		return -1;
	}
	if (relay_read_begin(&r, data, len, error_r) < 0)
		return -1;
	if (r.hdr.kind != RELAY_FRAMES) {
		struct relay_sack sk;
		if (relay_read_sack(&r, &sk, error_r) < 0)
			return -1;
		if (r.hdr.peer_incarnation != x->self_incarnation ||
		    r.hdr.incarnation != p->out.peer_incarnation)
			return 0;       /* for another run of ours or its */
		if (r.hdr.kind == RELAY_REFUSED)
			refused(x, from_node, &r.hdr, &sk, now_ms);
		else
			relay_out_sack(&p->out, r.hdr.incarnation,
				       r.hdr.stream, r.hdr.seq, &sk, now_ms);
		return 0;
	}
	return receive_frames(x, from_node, &r, error_r);
}

void xfer_settle(struct xfer *x, unsigned node, uint64_t upto,
		 const struct relay_range *holes, uint32_t nholes,
		 uint64_t claim)
{
	struct xfer_peer *p;
	if (node == 0 || node >= IPC_MAX_NODES || !(p = &x->peers[node])->known)
		return;
	if (upto > p->in.delivered)
		upto = p->in.delivered;
	if (upto > p->in.settled) {
		p->in.settled = upto;
		p->ack_due = true;
	}
	/* the holes: sorted, within (settled, claim], at most the bound;
	 * past what can be told, claim stops before it */
	if (claim > p->in.delivered)
		claim = p->in.delivered;
	uint32_t n = 0;
	uint64_t after = p->in.settled;
	for (uint32_t i = 0; i < nholes; i++) {
		struct relay_range h = holes[i];
		if (h.from > claim)
			break;
		if (h.from <= after || h.to < h.from) {
			claim = after;          /* not consistent: none */
			break;
		}
		if (n == RELAY_SACK_MAX) {
			claim = h.from - 1;
			break;
		}
		if (h.to > claim)
			h.to = claim;
		p->in.holes[n++] = h;
		after = h.to;
	}
	if (claim < p->in.settled)
		claim = p->in.settled;
	if (claim != p->in.claim || n != p->in.nholes)
		p->ack_due = true;
	p->in.claim = claim;
	p->in.nholes = n;
}

uint64_t xfer_delivered(const struct xfer *x, unsigned node)
{
	return node < IPC_MAX_NODES ? x->peers[node].in.delivered : 0;
}

bool xfer_pending(const struct xfer *x)
{
	for (unsigned i = 1; i < IPC_MAX_NODES; i++)
		if (x->peers[i].known && x->peers[i].batch_count > 0)
			return true;
	return false;
}

size_t xfer_kept_bytes(const struct xfer *x, unsigned node)
{
	return node < IPC_MAX_NODES ? x->peers[node].out.bytes : 0;
}

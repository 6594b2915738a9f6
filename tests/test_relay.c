/*
 * test_relay.c - frames between cluster nodes (cluster/relay.c): the
 * batch format, the sender's keeping and acknowledgements, the
 * receiver's order rules, and a lossy link over which every frame
 * still arrives exactly once, in order.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "frame.h"
#include "ipc.h"
#include "cluster/relay.h"

#define INC_A 0x1111111111111111ull
#define INC_B 0x2222222222222222ull

static void put_frame(struct buf *b, uint32_t conn, const char *text)
{
	struct frame_writer w;
	const char *error;
	frame_begin(&w, b, IPC_FRAME_STANZA, 1, conn, 1);
	frame_add_raw(&w, text, strlen(text));
	cr_assert_eq(frame_finish(&w, &error), 0);
}

static void hdr_init(struct relay_hdr *h, uint8_t kind, uint64_t seq)
{
	memset(h, 0, sizeof(*h));
	h->kind = kind;
	strcpy(h->node, "n1");
	h->incarnation = INC_A;
	h->peer_incarnation = INC_B;
	h->seq = seq;
	h->stream = 1;
}

Test(relay, batch_round_trip)
{
	struct buf b;
	struct relay_hdr h;
	struct relay_reader r;
	struct ipc_frame_header fh;
	const void *f;
	size_t flen;
	const char *error = NULL;
	buf_init(&b, 0);
	hdr_init(&h, RELAY_FRAMES, 5);
	cr_assert_eq(relay_put_hdr(&b, &h), 0);
	put_frame(&b, 7, "<message to='a@x/r'/>");
	put_frame(&b, 8, "<presence/>");
	relay_set_count(&b, 0, 2);
	cr_assert_eq(relay_read_begin(&r, buf_head(&b), buf_used(&b), &error),
		     0, "%s", error);
	cr_expect_str_eq(r.hdr.node, "n1");
	cr_expect_eq(r.hdr.incarnation, INC_A);
	cr_expect_eq(r.hdr.peer_incarnation, INC_B);
	cr_expect_eq(r.hdr.seq, 5);
	cr_expect_eq(r.hdr.count, 2);
	cr_assert_eq(relay_read_next(&r, &fh, &f, &flen, &error), 1, "%s",
		     error);
	cr_expect_eq(fh.conn_id, 7);
	cr_expect_eq(flen, IPC_FRAME_HDR_SIZE + 21);
	cr_expect_eq(memcmp((const char *)f + IPC_FRAME_HDR_SIZE,
			    "<message to='a@x/r'/>", 21), 0);
	cr_assert_eq(relay_read_next(&r, &fh, &f, &flen, &error), 1);
	cr_expect_eq(fh.conn_id, 8);
	cr_expect_eq(relay_read_next(&r, &fh, &f, &flen, &error), 0);
	buf_free(&b);
}

static const char *batch_error(void (*spoil)(struct buf *, size_t),
			       uint8_t kind)
{
	static char msg[128];
	struct buf b;
	struct relay_hdr h;
	struct relay_reader r;
	struct ipc_frame_header fh;
	const void *f;
	size_t flen;
	const char *error = NULL;
	buf_init(&b, 0);
	hdr_init(&h, kind, 1);
	cr_assert_eq(relay_put_hdr(&b, &h), 0);
	size_t frame_off = buf_used(&b);
	if (kind == RELAY_FRAMES) {
		put_frame(&b, 7, "<message/>");
		relay_set_count(&b, 0, 1);
	} else {
		struct relay_sack sk = { .received = 1, .claim = 1 };
		cr_assert_eq(relay_put_sack(&b, &sk), 0);
	}
	if (spoil != NULL)
		spoil(&b, frame_off);
	if (relay_read_begin(&r, buf_head(&b), buf_used(&b), &error) == 0 &&
	    kind == RELAY_FRAMES)
		while (relay_read_next(&r, &fh, &f, &flen, &error) == 1)
			;
	snprintf(msg, sizeof(msg), "%s", error != NULL ? error : "(none)");
	buf_free(&b);
	return msg;
}

static void magic(struct buf *b, size_t o) { (void)o; b->data[1] ^= 1; }
static void version(struct buf *b, size_t o) { (void)o; b->data[4] = 9; }
static void kind4(struct buf *b, size_t o) { (void)o; b->data[5] = 4; }
static void name(struct buf *b, size_t o) { (void)o; b->data[40] = '/'; }
static void count2(struct buf *b, size_t o) { (void)o; relay_set_count(b, 0, 2); }
static void count0(struct buf *b, size_t o) { (void)o; relay_set_count(b, 0, 0); }
static void more(struct buf *b, size_t o) { b->data[o + 3] |= IPC_FRAME_F_MORE; }
static void ftype(struct buf *b, size_t o) { b->data[o + 2] = IPC_FRAME_TYPE_MAX; }
static void cut(struct buf *b, size_t o) { (void)o; b->len--; }
static void extra(struct buf *b, size_t o) { (void)o; buf_append(b, "x", 1); }
static void ackcount(struct buf *b, size_t o) { (void)o; relay_set_count(b, 0, 1); }

Test(relay, refusals)
{
	cr_expect_str_eq(batch_error(NULL, RELAY_FRAMES), "(none)");
	cr_expect_str_eq(batch_error(NULL, RELAY_ACK), "(none)");
	cr_expect_str_eq(batch_error(magic, RELAY_FRAMES), "not a relay batch");
	cr_expect_str_eq(batch_error(version, RELAY_FRAMES),
			 "relay batch of another version");
	cr_expect_str_eq(batch_error(kind4, RELAY_FRAMES),
			 "unknown relay batch kind");
	cr_expect_str_eq(batch_error(name, RELAY_FRAMES),
			 "bad node name in a relay batch");
	cr_expect_str_eq(batch_error(count2, RELAY_FRAMES),
			 "relay batch length does not match its count");
	cr_expect_str_eq(batch_error(count0, RELAY_FRAMES),
			 "relay batch without frames");
	cr_expect_str_eq(batch_error(more, RELAY_FRAMES),
			 "a partial frame in a relay batch");
	cr_expect_str_neq(batch_error(ftype, RELAY_FRAMES), "(none)");
	cr_expect_str_eq(batch_error(cut, RELAY_FRAMES), "truncated");
	cr_expect_str_eq(batch_error(extra, RELAY_FRAMES),
			 "bytes after a relay batch's frames");
	cr_expect_str_eq(batch_error(extra, RELAY_ACK),
			 "relay batch length does not match its count");
	cr_expect_str_eq(batch_error(ackcount, RELAY_ACK),
			 "relay batch length does not match its count");
}

struct collected {
	char text[8][32];
	unsigned n;
};

static void collect(void *ctx, const void *frame, size_t len)
{
	struct collected *c = ctx;
	snprintf(c->text[c->n++], sizeof(c->text[0]), "%.*s", (int)len,
		 (const char *)frame);
}

/* Kept until acknowledged; bounded; handed back on reset in order. */
Test(relay, sender_keeps_until_acked)
{
	struct relay_out o;
	struct collected c = { .n = 0 };
	uint64_t seq;
	relay_out_init(&o, INC_B, 10);
	cr_assert_eq(relay_out_add(&o, "aaaa", 4, 100, &seq), 0);
	cr_expect_eq(seq, 1);
	cr_assert_eq(relay_out_add(&o, "bbbb", 4, 100, &seq), 0);
	cr_expect_eq(seq, 2);
	cr_expect_eq(relay_out_add(&o, "ccc", 3, 100, &seq), -1, "past 10");
	cr_expect_eq(o.bytes, 8);
	cr_expect_eq(relay_out_ack(&o, INC_A, 1, 1, 200), -1, "another run");
	cr_expect_eq(relay_out_ack(&o, INC_B, 2, 1, 200), -1, "another stream");
	cr_expect_eq(relay_out_ack(&o, INC_B, 1, 3, 200), -1, "never sent");
	cr_expect_eq(o.count, 2);
	cr_expect_eq(relay_out_ack(&o, INC_B, 1, 1, 200), 0);
	cr_expect_eq(o.count, 1);
	cr_expect_eq(o.bytes, 4);
	cr_expect_eq(relay_out_ack(&o, INC_B, 1, 0, 200), 0, "old ack: no-op");
	cr_expect_eq(o.count, 1);
	cr_assert_eq(relay_out_add(&o, "cc", 2, 300, &seq), 0);
	cr_expect_eq(seq, 3);
	/* the peer restarted: what it never acked comes back, oldest first */
	relay_out_reset(&o, INC_A, collect, &c);
	cr_expect_eq(c.n, 2);
	cr_expect_str_eq(c.text[0], "bbbb");
	cr_expect_str_eq(c.text[1], "cc");
	cr_expect_eq(o.count, 0);
	cr_expect_eq(o.bytes, 0);
	cr_assert_eq(relay_out_add(&o, "dd", 2, 400, &seq), 0);
	cr_expect_eq(seq, 1, "a new sequence for the new run");
	cr_expect_eq(o.peer_incarnation, INC_A);
	relay_out_reset(&o, 0, NULL, NULL);
}

Test(relay, resend_when_acks_stall)
{
	struct relay_out o;
	uint64_t seq;
	relay_out_init(&o, INC_B, 1000);
	cr_expect_null(relay_out_resend_due(&o, 5000, 1000), "nothing kept");
	cr_assert_eq(relay_out_add(&o, "a", 1, 5000, &seq), 0);
	cr_expect_null(relay_out_resend_due(&o, 5500, 1000));
	const struct relay_item *it = relay_out_resend_due(&o, 6000, 1000);
	cr_assert_not_null(it);
	cr_expect_eq(it->seq, 1);
	cr_expect_null(relay_out_resend_due(&o, 6500, 1000), "one per period");
	cr_expect_eq(relay_out_ack(&o, INC_B, 1, 1, 6600), 0);
	cr_expect_null(relay_out_resend_due(&o, 9000, 1000), "all acked");
	relay_out_reset(&o, 0, NULL, NULL);
}

static enum relay_verdict verdict(struct relay_in *in, uint64_t inc,
				  uint64_t peer_inc, uint64_t seq,
				  uint32_t count, uint32_t *skip)
{
	struct relay_hdr h;
	hdr_init(&h, RELAY_FRAMES, seq);
	h.incarnation = inc;
	h.peer_incarnation = peer_inc;
	h.count = count;
	bool restarted;
	h.stream = 1;
	return relay_in_verdict(in, INC_B, &h, skip, &restarted);
}

Test(relay, receiver_order_rules)
{
	struct relay_in in;
	uint32_t skip;
	relay_in_reset(&in, INC_A);
	cr_expect_eq(verdict(&in, INC_A, INC_B, 2, 1, &skip), RELAY_GAP);
	cr_expect_eq(verdict(&in, INC_A, INC_B, 1, 3, &skip), RELAY_TAKE);
	cr_expect_eq(skip, 0);
	in.delivered = 3;
	cr_expect_eq(verdict(&in, INC_A, INC_B, 1, 3, &skip), RELAY_DUPLICATE);
	cr_expect_eq(verdict(&in, INC_A, INC_B, 2, 4, &skip), RELAY_TAKE);
	cr_expect_eq(skip, 2);
	cr_expect_eq(verdict(&in, INC_A, INC_A, 4, 1, &skip), RELAY_NOT_FOR_US);
	cr_expect_eq(verdict(&in, INC_B, INC_B, 4, 1, &skip), RELAY_OTHER_RUN);
	cr_expect_eq(verdict(&in, INC_A, INC_B, 4, 1, &skip), RELAY_TAKE);
	/* we thought the sender gone: its stream is refused, even what
	 * follows on (it may have handed that back), until a new one */
	in.delivered = 5;
	in.refusing = true;
	cr_expect_eq(verdict(&in, INC_A, INC_B, 6, 1, &skip),
		     RELAY_REFUSED_STREAM);
	struct relay_hdr h;
	bool restarted;
	hdr_init(&h, RELAY_FRAMES, 1);
	h.incarnation = INC_A;
	h.peer_incarnation = INC_B;
	h.count = 1;
	h.stream = 2;
	cr_expect_eq(relay_in_verdict(&in, INC_B, &h, &skip, &restarted),
		     RELAY_TAKE);
	cr_expect(restarted);
	cr_expect_not(in.refusing);
	/* refusing before any stream was followed: the first one seen may
	 * be the handed-back one, refused too; the one after is taken */
	relay_in_reset(&in, INC_A);
	in.refusing = true;
	cr_expect_eq(relay_in_verdict(&in, INC_B, &h, &skip, &restarted),
		     RELAY_REFUSED_STREAM);
	cr_expect_eq(in.stream, 2);
	h.stream = 3;
	cr_expect_eq(relay_in_verdict(&in, INC_B, &h, &skip, &restarted),
		     RELAY_TAKE);
	cr_expect_not(in.refusing);
}

/* A link that loses every third batch and repeats every fifth: with
 * resends and acks that are also lost now and then, the receiver gets
 * every frame exactly once, in order, and the sender keeps nothing. */
Test(relay, lossy_link_delivers_each_frame_once_in_order)
{
	struct relay_out o;
	struct relay_in in;
	uint64_t next_expected = 1, seq;
	unsigned batches = 0, acks = 0;
	int64_t now = 0;
	relay_out_init(&o, INC_B, 1 << 20);
	relay_in_reset(&in, INC_A);
	for (unsigned round = 0; round < 400; round++, now += 100) {
		struct buf b;
		struct relay_hdr h;
		const struct relay_item *from = NULL;
		if (round < 200) {
			char text[32];
			struct buf fb;
			buf_init(&fb, 0);
			snprintf(text, sizeof(text), "frame %u", round);
			put_frame(&fb, round, text);
			cr_assert_eq(relay_out_add(&o, buf_head(&fb),
						   buf_used(&fb), now, &seq),
				     0);
			buf_free(&fb);
			from = o.tail;
		}
		const struct relay_item *again = relay_out_resend_due(&o, now,
								      300);
		if (again != NULL)
			from = again;
		if (from == NULL)
			continue;
		/* publish from..tail as one batch */
		buf_init(&b, 0);
		hdr_init(&h, RELAY_FRAMES, from->seq);
		cr_assert_eq(relay_put_hdr(&b, &h), 0);
		uint32_t n = 0;
		for (const struct relay_item *it = from; it != NULL;
		     it = it->next, n++)
			buf_append(&b, it->data, it->len);
		relay_set_count(&b, 0, n);
		batches++;
		for (int copy = 0; copy < (batches % 5 == 0 ? 2 : 1); copy++) {
			if (batches % 3 == 0)
				break;              /* lost */
			struct relay_reader r;
			struct ipc_frame_header fh;
			const void *f;
			size_t flen;
			uint32_t skip;
			const char *error;
			cr_assert_eq(relay_read_begin(&r, buf_head(&b),
						      buf_used(&b), &error), 0);
			bool restarted;
			enum relay_verdict v = relay_in_verdict(&in, INC_B,
								&r.hdr, &skip,
								&restarted);
			for (uint32_t i = 0; relay_read_next(&r, &fh, &f, &flen,
							     &error) == 1; i++) {
				if (v != RELAY_TAKE || i < skip)
					continue;
				cr_assert_eq(fh.conn_id, next_expected - 1,
					     "frame %u out of order",
					     fh.conn_id);
				next_expected++;
				in.delivered = r.hdr.seq + i;
			}
			if (v != RELAY_NOT_FOR_US && v != RELAY_OTHER_RUN &&
			    ++acks % 4 != 0)        /* some acks lost too */
				relay_out_ack(&o, INC_B, in.stream, in.delivered,
					      now);
		}
		buf_free(&b);
	}
	cr_expect_eq(next_expected, 201, "every frame, once");
	cr_expect_eq(o.count, 0, "nothing left unacknowledged");
	relay_out_reset(&o, 0, NULL, NULL);
}

/* An ack with holes: the receiver still holds frames 3 and 6..7 (a slow
 * reader, an XEP-0198 client that has not acknowledged them) and is done
 * with the rest up to 9.  The sender frees the rest at once (its bound
 * is not spent on frames it no longer needs), keeps the holes (a node
 * lost now hands them back), and sends none of 1..10 again: they all
 * arrived. */
static void put_ack(struct buf *b, uint64_t seq, const struct relay_sack *sk)
{
	struct relay_hdr h;
	hdr_init(&h, RELAY_ACK, seq);
	h.count = sk->nholes;
	cr_assert_eq(relay_put_hdr(b, &h), 0);
	cr_assert_eq(relay_put_sack(b, sk), 0);
}

static unsigned kept_seqs(const struct relay_out *o, uint64_t *v)
{
	unsigned n = 0;
	for (const struct relay_item *it = o->head; it != NULL; it = it->next)
		v[n++] = it->seq;
	return n;
}

Test(relay, sack_frees_out_of_order_and_keeps_holes)
{
	struct relay_out o;
	struct buf fr, b;
	struct relay_reader r;
	struct relay_sack sk = { .received = 10, .claim = 9, .nholes = 2,
				 .holes = { { 3, 3 }, { 6, 7 } } }, got;
	const char *error = NULL;
	uint64_t seq, v[16];
	buf_init(&fr, 0);
	put_frame(&fr, 1, "<message/>");
	relay_out_init(&o, INC_B, 1 << 20);
	for (int i = 0; i < 10; i++)
		cr_assert_eq(relay_out_add(&o, buf_head(&fr), buf_used(&fr), 0,
					   &seq), 0);
	buf_init(&b, 0);
	put_ack(&b, 2, &sk);
	cr_assert_eq(relay_read_begin(&r, buf_head(&b), buf_used(&b), &error),
		     0, "%s", error);
	cr_assert_eq(relay_read_sack(&r, &got, &error), 0, "%s", error);
	cr_assert_eq(got.nholes, 2);
	cr_assert_eq(got.holes[1].to, 7);
	cr_assert_eq(relay_out_sack(&o, INC_B, 1, r.hdr.seq, &got, 100), 0);
	unsigned n = kept_seqs(&o, v);
	cr_assert_eq(n, 4, "kept %u", n);
	cr_expect_eq(v[0], 3);
	cr_expect_eq(v[1], 6);
	cr_expect_eq(v[2], 7);
	cr_expect_eq(v[3], 10);         /* beyond the claim: still kept */
	cr_expect_eq(o.count, 4);
	cr_expect_eq(o.bytes, 4 * buf_used(&fr));
	/* all ten arrived: nothing is due again, however long it waits */
	cr_expect_null(relay_out_resend_due(&o, 100000, 1000));
	/* one more, never acknowledged as arrived: that one goes again */
	cr_assert_eq(relay_out_add(&o, buf_head(&fr), buf_used(&fr), 100,
				   &seq), 0);
	const struct relay_item *again = relay_out_resend_due(&o, 200000, 1000);
	cr_assert_not_null(again);
	cr_expect_eq(again->seq, 11);
	/* the holes done with later: a plain ack frees them in order */
	cr_assert_eq(relay_out_ack(&o, INC_B, 1, 10, 300000), 0);
	n = kept_seqs(&o, v);
	cr_assert_eq(n, 1);
	cr_expect_eq(v[0], 11);
	cr_expect_eq(o.tail, o.head);
	relay_out_reset(&o, 0, NULL, NULL);
	buf_free(&b);
	buf_free(&fr);
}

static const char *sack_error(const struct relay_sack *sk, uint64_t seq)
{
	static char msg[128];
	struct buf b;
	struct relay_reader r;
	struct relay_sack got;
	const char *error = NULL;
	buf_init(&b, 0);
	put_ack(&b, seq, sk);
	if (relay_read_begin(&r, buf_head(&b), buf_used(&b), &error) == 0)
		relay_read_sack(&r, &got, &error);
	snprintf(msg, sizeof(msg), "%s", error != NULL ? error : "(none)");
	buf_free(&b);
	return msg;
}

Test(relay, sack_refusals)
{
	struct relay_sack ok = { .received = 9, .claim = 8, .nholes = 1,
				 .holes = { { 4, 5 } } };
	struct relay_sack low = { .received = 9, .claim = 1 };
	struct relay_sack recv = { .received = 7, .claim = 8 };
	struct relay_sack order = { .received = 9, .claim = 8, .nholes = 2,
				    .holes = { { 5, 6 }, { 4, 4 } } };
	struct relay_sack below = { .received = 9, .claim = 8, .nholes = 1,
				    .holes = { { 2, 3 } } };
	struct relay_sack beyond = { .received = 9, .claim = 8, .nholes = 1,
				     .holes = { { 7, 9 } } };
	cr_expect_str_eq(sack_error(&ok, 2), "(none)");
	cr_expect_str_eq(sack_error(&low, 2),
			 "ack claims below what it says done or arrived");
	cr_expect_str_eq(sack_error(&recv, 2),
			 "ack claims below what it says done or arrived");
	cr_expect_str_eq(sack_error(&order, 2), "ack holes out of order");
	cr_expect_str_eq(sack_error(&below, 3), "ack holes out of order");
	cr_expect_str_eq(sack_error(&beyond, 2), "ack holes out of order");
}

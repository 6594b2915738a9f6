/*
 * test_xfer.c - stanza frames between cluster nodes (cluster/xfer.c),
 * three nodes in one process over a simulated NATS that loses, repeats
 * and holds messages: every frame a worker sends is handed on exactly
 * once in order, or -- when its node died or restarted before
 * acknowledging it -- handed back as undelivered; none vanishes.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "frame.h"
#include "ipc.h"
#include "cluster/xfer.h"

#define NODES 4                 /* index 0 unused: nodes 1..3 */
#define MSGS 4096
#define FRAMES 4096

struct msg {
	unsigned from, to;
	bool ack;
	size_t len;
	unsigned char *data;
};

struct net {
	struct msg q[MSGS];
	unsigned n;
	unsigned seed;
	unsigned lose_pct, dup_pct;     /* of messages published */
	bool dead[NODES];               /* messages to it vanish */
	/* messages to it wait (a partition NATS buffers across: a
	 * route's TCP connection that outlives it), delivered by heal() */
	bool cut[NODES];
	struct msg held[MSGS];
	unsigned nheld;
};

struct node {
	struct xfer x;
	struct net *net;
	unsigned self;
	/* what this node's workers got, by frame number (conn_id) */
	unsigned got[FRAMES];
	unsigned last_got_from[NODES];  /* order per sender */
	unsigned undelivered[FRAMES];
	unsigned refuse;                /* deliver refuses this many */
};

static struct node nodes[NODES];
static struct net net;

static unsigned rnd(void)
{
	net.seed = net.seed * 1103515245u + 12345u;
	return (net.seed >> 8) % 100;
}

static void push(unsigned from, unsigned to, bool ack, const void *d,
		 size_t len)
{
	if (net.dead[to] || rnd() < net.lose_pct)
		return;
	for (int copy = 0; copy < (rnd() < net.dup_pct ? 2 : 1); copy++) {
		cr_assert_lt(net.n, MSGS);
		cr_assert_lt(net.nheld, MSGS);
		struct msg *m = net.cut[to] || net.cut[from]
				? &net.held[net.nheld++] : &net.q[net.n++];
		m->from = from;
		m->to = to;
		m->ack = ack;
		m->len = len;
		m->data = malloc(len);
		memcpy(m->data, d, len);
	}
}

static int op_publish(void *ctx, unsigned node, const void *d, size_t len)
{
	struct node *n = ctx;
	push(n->self, node, false, d, len);
	return 0;
}

static void op_ack(void *ctx, unsigned node, const void *d, size_t len)
{
	struct node *n = ctx;
	push(n->self, node, true, d, len);
}

static int op_deliver(void *ctx, unsigned from, uint64_t seq,
		      const struct ipc_frame_header *h, const void *f,
		      size_t len)
{
	struct node *n = ctx;
	(void)f;
	(void)len;
	(void)seq;
	if (n->refuse > 0) {
		n->refuse--;
		return -1;
	}
	cr_assert_lt(h->conn_id, FRAMES);
	n->got[h->conn_id]++;
	cr_assert_gt(h->conn_id + 1, n->last_got_from[from],
		     "frame %u after %u from node %u", h->conn_id,
		     n->last_got_from[from] - 1, from);
	n->last_got_from[from] = h->conn_id + 1;
	return 0;
}

static void op_undelivered(void *ctx, unsigned node, const void *f,
			   size_t len)
{
	struct node *n = ctx;
	struct ipc_frame_header h;
	size_t size;
	const char *error;
	(void)node;
	cr_assert_eq(frame_parse_header(f, len, &h, &size, &error), 0);
	n->undelivered[h.conn_id]++;
}

static void setup(size_t retain_max)
{
	memset(&net, 0, sizeof(net));
	net.seed = 7;
	for (unsigned i = 1; i < NODES; i++) {
		struct node *n = &nodes[i];
		char name[8];
		struct xfer_ops ops = { n, op_publish, op_ack, op_deliver,
					op_undelivered, NULL };
		memset(n, 0, sizeof(*n));
		n->net = &net;
		n->self = i;
		snprintf(name, sizeof(name), "n%u", i);
		xfer_init(&n->x, name, 1000 + i, 2000, retain_max, 300, &ops);
	}
	/* everyone follows everyone (node i is index i everywhere here) */
	for (unsigned i = 1; i < NODES; i++)
		for (unsigned j = 1; j < NODES; j++)
			if (i != j)
				xfer_peer_run(&nodes[i].x, j, 1000 + j);
}

static void teardown(void)
{
	for (unsigned i = 1; i < NODES; i++)
		xfer_free(&nodes[i].x);
	for (unsigned i = 0; i < net.n; i++)
		free(net.q[i].data);
	for (unsigned i = 0; i < net.nheld; i++)
		free(net.held[i].data);
	net.n = 0;
	net.nheld = 0;
}

/* The partition ends: what waited goes first, as a TCP connection
 * delivers its buffer before anything written after the heal. */
static void heal(void)
{
	cr_assert_leq(net.nheld + net.n, MSGS);
	memmove(&net.q[net.nheld], net.q, net.n * sizeof(net.q[0]));
	memcpy(net.q, net.held, net.nheld * sizeof(net.q[0]));
	net.n += net.nheld;
	net.nheld = 0;
	memset(net.cut, 0, sizeof(net.cut));
}

static int send_frame(unsigned from, unsigned to, unsigned number,
		      int64_t now)
{
	struct buf b;
	struct frame_writer w;
	const char *error;
	char text[64];
	buf_init(&b, 0);
	frame_begin(&w, &b, IPC_FRAME_STANZA, 1, number, 1);
	snprintf(text, sizeof(text), "<message id='%u'/>", number);
	frame_add_raw(&w, text, strlen(text));
	cr_assert_eq(frame_finish(&w, &error), 0);
	int rc = xfer_send(&nodes[from].x, to, buf_head(&b), buf_used(&b),
			   now);
	buf_free(&b);
	return rc;
}

/* Deliver what is on the network (in order), then flush everyone. */
static void step(int64_t now)
{
	unsigned n = net.n;
	struct msg batch[MSGS];
	memcpy(batch, net.q, n * sizeof(batch[0]));
	net.n = 0;
	for (unsigned i = 0; i < n; i++) {
		const char *error = NULL;
		struct msg *m = &batch[i];
		if (!net.dead[m->to])
			cr_expect_eq(xfer_receive(&nodes[m->to].x, m->from,
						  m->data, m->len, now, &error),
				     0, "%s", error);
		free(m->data);
	}
	for (unsigned i = 1; i < NODES; i++)
		if (!net.dead[i])
			xfer_flush(&nodes[i].x, now);
}

Test(xfer, every_frame_once_in_order_over_a_bad_link)
{
	setup(1 << 20);
	net.lose_pct = 20;
	net.dup_pct = 10;
	int64_t now = 0;
	unsigned number = 0;
	for (unsigned round = 0; round < 200; round++, now += 50) {
		for (unsigned k = 0; k < 5; k++, number++) {
			unsigned from = 1 + number % 3, to = 1 + (number / 3) % 3;
			if (to == from)
				to = 1 + to % 3;
			cr_assert_eq(send_frame(from, to, number, now), 0);
		}
		if (round == 50)
			nodes[2].refuse = 7;    /* a full local queue */
		step(now);
	}
	net.lose_pct = 0;
	net.dup_pct = 0;
	for (unsigned k = 0; k < 40; k++, now += 100)
		step(now);
	for (unsigned f = 0; f < number; f++) {
		unsigned got = 0;
		for (unsigned i = 1; i < NODES; i++)
			got += nodes[i].got[f];
		cr_expect_eq(got, 1, "frame %u handed on %u times", f, got);
	}
	for (unsigned i = 1; i < NODES; i++)
		for (unsigned j = 1; j < NODES; j++)
			cr_expect_eq(xfer_kept_bytes(&nodes[i].x, j), 0,
				     "n%u keeps frames for n%u", i, j);
	teardown();
}

/* A node dies with frames on their way: its peers hand back every
 * frame it had not acknowledged; each frame is delivered or handed
 * back (both when only the ack was lost), never neither. */
Test(xfer, node_loss_hands_back_what_was_not_acknowledged)
{
	setup(1 << 20);
	int64_t now = 0;
	unsigned number = 0;
	for (unsigned round = 0; round < 20; round++, now += 50) {
		for (unsigned k = 0; k < 3; k++, number++)
			cr_assert_eq(send_frame(1, 2, number, now), 0);
		if (round == 10)
			net.dead[2] = true;     /* kill -9 of node 2 */
		step(now);
	}
	cr_expect_gt(xfer_kept_bytes(&nodes[1].x, 2), 0);
	xfer_peer_down(&nodes[1].x, 2);
	cr_expect_eq(xfer_kept_bytes(&nodes[1].x, 2), 0);
	unsigned back = 0;
	for (unsigned f = 0; f < number; f++) {
		cr_expect_geq(nodes[2].got[f] + nodes[1].undelivered[f], 1,
			      "frame %u lost", f);
		cr_expect_leq(nodes[2].got[f], 1);
		back += nodes[1].undelivered[f];
	}
	cr_expect_gt(back, 20, "the frames after the death came back");
	cr_expect_eq(send_frame(1, 2, number, now), -1, "down: refused");
	teardown();
}

/* A restarted node (new run): what the old run did not acknowledge
 * comes back; the new run gets a fresh sequence and nothing meant for
 * the old one. */
Test(xfer, restart_hands_back_and_starts_over)
{
	setup(1 << 20);
	int64_t now = 0;
	for (unsigned f = 0; f < 5; f++)
		send_frame(1, 2, f, now);
	step(now);                      /* published */
	step(now += 50);                /* received, acked */
	step(now += 50);                /* the ack arrives */
	cr_expect_eq(xfer_kept_bytes(&nodes[1].x, 2), 0);
	net.dead[2] = true;
	for (unsigned f = 5; f < 10; f++)
		send_frame(1, 2, f, now);
	step(now += 50);
	/* node 2 restarts: a new xfer, a new incarnation */
	struct xfer_ops ops = { &nodes[2], op_publish, op_ack, op_deliver,
				op_undelivered, NULL };
	xfer_free(&nodes[2].x);
	xfer_init(&nodes[2].x, "n2", 2002, 2000, 1 << 20, 300, &ops);
	xfer_peer_run(&nodes[2].x, 1, 1001);
	xfer_peer_run(&nodes[2].x, 3, 1003);
	net.dead[2] = false;
	xfer_peer_run(&nodes[1].x, 2, 2002);    /* its heartbeat */
	for (unsigned f = 5; f < 10; f++)
		cr_expect_eq(nodes[1].undelivered[f], 1, "frame %u", f);
	for (unsigned f = 0; f < 5; f++)
		cr_expect_eq(nodes[1].undelivered[f], 0, "frame %u", f);
	send_frame(1, 2, 10, now);
	step(now += 50);
	step(now += 50);
	step(now += 50);
	cr_expect_eq(nodes[2].got[10], 1);
	cr_expect_eq(xfer_kept_bytes(&nodes[1].x, 2), 0);
	teardown();
}

Test(xfer, bounded)
{
	setup(200);
	unsigned ok = 0;
	for (unsigned f = 0; f < 10; f++)
		ok += send_frame(1, 3, f, 0) == 0;
	cr_expect(ok >= 2 && ok < 10, "%u kept of 10 in 200 bytes", ok);
	cr_expect_leq(xfer_kept_bytes(&nodes[1].x, 3), 200);
	teardown();
}

/* n1 thought n2 down (a partition n2 did not notice) and hears it again:
 * n1 starts a new sequence; n2, which never forgot n1, must follow it
 * rather than take the new frames for old ones (which would stall the
 * link for good). */
Test(xfer, one_sided_down_starts_over)
{
	setup(1 << 20);
	int64_t now = 0;
	for (unsigned f = 0; f < 20; f++)
		send_frame(1, 2, f, now);
	step(now);
	step(now += 50);
	step(now += 50);
	cr_expect_eq(nodes[2].got[19], 1);
	for (unsigned f = 90; f < 95; f++)     /* n2's stream to n1 moves */
		send_frame(2, 1, f, now);
	step(now += 50);
	step(now += 50);
	step(now += 50);
	cr_expect_eq(nodes[1].got[94], 1);
	net.dead[2] = true;             /* n1's frames to n2 vanish */
	for (unsigned f = 20; f < 25; f++)
		send_frame(1, 2, f, now);
	step(now += 50);
	xfer_peer_down(&nodes[1].x, 2);   /* only n1 decides n2 is gone */
	for (unsigned f = 20; f < 25; f++)
		cr_expect_eq(nodes[1].undelivered[f], 1, "frame %u", f);
	net.dead[2] = false;
	xfer_peer_run(&nodes[1].x, 2, 1002);    /* heard again */
	for (unsigned f = 25; f < 30; f++)
		send_frame(1, 2, f, now);
	for (unsigned k = 0; k < 4; k++)
		step(now += 50);
	for (unsigned f = 25; f < 30; f++)
		cr_expect_eq(nodes[2].got[f], 1, "frame %u after the restart", f);
	cr_expect_eq(xfer_kept_bytes(&nodes[1].x, 2), 0);
	/* and back: n2 never noticed, it goes on with its stream to n1,
	 * which n1 refuses (it cannot tell it from one n2 handed back):
	 * n2 sends the same frames again on a new stream, once each */
	for (unsigned f = 100; f < 105; f++)
		send_frame(2, 1, f, now);
	for (unsigned k = 0; k < 6; k++)
		step(now += 50);
	for (unsigned f = 100; f < 105; f++) {
		cr_expect_eq(nodes[1].got[f], 1, "frame %u back to n1", f);
		cr_expect_eq(nodes[2].undelivered[f], 0, "frame %u", f);
	}
	cr_expect_eq(xfer_kept_bytes(&nodes[2].x, 1), 0);
	teardown();
}

/* A partition both sides notice while NATS keeps what n1 published for
 * n2 (a route's TCP connection outlives a short cut and delivers its
 * buffer after the heal).  n1 handed the frames back at its DOWN (its
 * workers answered them: an error, offline storage); after the heal
 * those copies reach n2 before anything new.  n2 must not hand them to
 * its workers: each frame is delivered or handed back, never both (a
 * room message answered resource-constraint and archived anyway was
 * this, tests/bb/test_cluster_muc.py test_partitioned_owner_stops_first). */
static void handed_back_across_a_partition(bool followed)
{
	setup(1 << 20);
	int64_t now = 0;
	if (followed) {         /* n2 follows a stream of n1's before */
		for (unsigned f = 0; f < 5; f++)
			send_frame(1, 2, f, now);
		for (unsigned k = 0; k < 3; k++)
			step(now += 50);
		cr_expect_eq(nodes[2].got[4], 1);
		cr_expect_eq(xfer_kept_bytes(&nodes[1].x, 2), 0);
	}
	net.cut[2] = true;
	for (unsigned f = 5; f < 10; f++)
		send_frame(1, 2, f, now);
	for (unsigned k = 0; k < 10; k++)   /* sent, and sent again */
		step(now += 150);
	xfer_peer_down(&nodes[1].x, 2);
	xfer_peer_down(&nodes[2].x, 1);
	for (unsigned f = 5; f < 10; f++)
		cr_expect_eq(nodes[1].undelivered[f], 1, "frame %u back", f);
	/* heard again (the same runs), then the buffer comes through */
	xfer_peer_run(&nodes[1].x, 2, 1002);
	xfer_peer_run(&nodes[2].x, 1, 1001);
	heal();
	for (unsigned f = 10; f < 15; f++)
		send_frame(1, 2, f, now);
	for (unsigned k = 0; k < 6; k++)
		step(now += 50);
	for (unsigned f = 5; f < 10; f++)
		cr_expect_eq(nodes[2].got[f], 0,
			     "frame %u handed back and delivered", f);
	for (unsigned f = 10; f < 15; f++)
		cr_expect_eq(nodes[2].got[f], 1, "frame %u after the heal", f);
	cr_expect_eq(xfer_kept_bytes(&nodes[1].x, 2), 0);
	teardown();
}

Test(xfer, frames_handed_back_at_down_never_arrive_after_the_heal)
{
	handed_back_across_a_partition(true);
}

/* The same when n2 had taken nothing from n1 before: the first stream
 * it sees after the heal is refused too (it cannot tell), the next is
 * taken. */
Test(xfer, handed_back_never_arrive_even_to_a_node_that_followed_none)
{
	handed_back_across_a_partition(false);
}

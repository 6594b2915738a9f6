/*
 * test_cluster.c - unit tests for cluster/hb.c (the heartbeat record:
 * round trip, and every way a network message can be refused) and
 * cluster/table.c (a node's life in the table: joined, suspect, down,
 * back, restarted, left, incompatible once, our own name claimed, a full
 * table, our link lost), and for shm/cluster.c's seqlock reader, the
 * member list it publishes and the owner fencing arithmetic.  Times
 * are passed in; nothing sleeps and no NATS server is needed.
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ipc.h"
#include "../cluster/cluster.h"
#include "../shm/cluster.h"
#include "../cluster/members.h"

#define INTERVAL 1000
#define TIMEOUT 3000

TestSuite(cluster, .timeout = 30.);

static struct cluster_hb hb_of(const char *node, uint64_t inc)
{
	struct cluster_hb hb = { .incarnation = inc, .ipc_version = IPC_VERSION,
				 .workers = 2, .sessions = 7, .dir_seq = 9 };
	snprintf(hb.node, sizeof(hb.node), "%s", node);
	snprintf(hb.cluster, sizeof(hb.cluster), "xmppd");
	return hb;
}

static void wire_of(const struct cluster_hb *hb, uint8_t *w)
{
	cluster_hb_encode(hb, w);
}

static const char *parse_error(const uint8_t *w, size_t len)
{
	struct cluster_hb out;
	const char *error = NULL;
	if (cluster_hb_parse(w, len, &out, &error) == 0)
		return NULL;
	cr_assert_not_null(error);
	return error;
}

Test(cluster, hb_round_trip)
{
	struct cluster_hb hb = hb_of("node-A_1", 0x0123456789abcdefull), out;
	uint8_t w[CLUSTER_HB_SIZE];
	const char *error;
	hb.flags = CLUSTER_HB_F_LEAVING;
	hb.sessions = 1ull << 40;
	wire_of(&hb, w);
	cr_assert_eq(cluster_hb_parse(w, sizeof(w), &out, &error), 0);
	cr_assert_str_eq(out.node, "node-A_1");
	cr_assert_str_eq(out.cluster, "xmppd");
	cr_assert_eq(out.incarnation, 0x0123456789abcdefull);
	cr_assert_eq(out.ipc_version, IPC_VERSION);
	cr_assert_eq(out.workers, 2);
	cr_assert_eq(out.sessions, 1ull << 40);
	cr_assert_eq(out.dir_seq, 9);
	cr_assert_eq(out.flags, CLUSTER_HB_F_LEAVING);
	/* little-endian on the wire whatever the host */
	cr_assert_eq(w[8], 0xef);
	cr_assert_eq(w[15], 0x01);
	/* a 32-character name, the longest config.c allows */
	struct cluster_hb big = hb_of("abcdefghijklmnopqrstuvwxyz012345", 1);
	wire_of(&big, w);
	cr_assert_eq(cluster_hb_parse(w, sizeof(w), &out, &error), 0);
	cr_assert_str_eq(out.node, "abcdefghijklmnopqrstuvwxyz012345");
}

Test(cluster, hb_refused)
{
	struct cluster_hb hb = hb_of("n1", 5);
	uint8_t w[CLUSTER_HB_SIZE + 1], bad[CLUSTER_HB_SIZE];
	wire_of(&hb, w);
	w[CLUSTER_HB_SIZE] = 0;
	cr_assert_null(parse_error(w, CLUSTER_HB_SIZE));
	cr_assert_str_eq(parse_error(w, 0), "not a heartbeat");
	cr_assert_str_eq(parse_error(w, 7), "not a heartbeat");
	cr_assert_str_eq(parse_error(w, CLUSTER_HB_SIZE - 1),
			 "heartbeat of the wrong size");
	cr_assert_str_eq(parse_error(w, CLUSTER_HB_SIZE + 1),
			 "heartbeat of the wrong size");
#define MUTATE(off, val, why) do { \
	memcpy(bad, w, sizeof(bad)); bad[off] = (uint8_t)(val); \
	cr_assert_str_eq(parse_error(bad, sizeof(bad)), why, "byte %d", off); \
} while (0)
	MUTATE(0, 'Y', "not a heartbeat");
	MUTATE(3, 2, "unknown heartbeat format");
	MUTATE(4, 0x02, "unknown heartbeat flags");
	MUTATE(7, 1, "unknown heartbeat flags");
	MUTATE(5, 0, "bad node or cluster name");       /* empty name */
	MUTATE(5, 33, "bad node or cluster name");      /* too long */
	MUTATE(5, 3, "bad node or cluster name");       /* length past it */
	MUTATE(6, 4, "bad node or cluster name");
	MUTATE(40, '.', "bad node or cluster name");    /* a subject char */
	MUTATE(41, '*', "bad node or cluster name");
	MUTATE(42, 'x', "bad node or cluster name");    /* padding not 0 */
	MUTATE(77, 'x', "bad node or cluster name");
	MUTATE(20, 0, "worker count out of range");
	MUTATE(20, IPC_MAX_SLOTS, "worker count out of range");
#undef MUTATE
	struct cluster_hb z = hb_of("n1", 0);
	wire_of(&z, bad);
	cr_assert_str_eq(parse_error(bad, sizeof(bad)), "zero incarnation");
}

Test(cluster, next_state)
{
	cr_assert_eq(cluster_node_next_state(IPC_NODE_UP, 0, INTERVAL, TIMEOUT),
		     IPC_NODE_UP);
	cr_assert_eq(cluster_node_next_state(IPC_NODE_UP, 1999, INTERVAL,
					     TIMEOUT), IPC_NODE_UP);
	cr_assert_eq(cluster_node_next_state(IPC_NODE_UP, 2000, INTERVAL,
					     TIMEOUT), IPC_NODE_SUSPECT);
	cr_assert_eq(cluster_node_next_state(IPC_NODE_SUSPECT, 2999, INTERVAL,
					     TIMEOUT), IPC_NODE_SUSPECT);
	cr_assert_eq(cluster_node_next_state(IPC_NODE_SUSPECT, 3000, INTERVAL,
					     TIMEOUT), IPC_NODE_DOWN);
	cr_assert_eq(cluster_node_next_state(IPC_NODE_UP, 5000, INTERVAL,
					     TIMEOUT), IPC_NODE_DOWN);
	/* time does not move these */
	cr_assert_eq(cluster_node_next_state(IPC_NODE_DOWN, 99999, INTERVAL,
					     TIMEOUT), IPC_NODE_DOWN);
	cr_assert_eq(cluster_node_next_state(IPC_NODE_INCOMPATIBLE, 99999,
					     INTERVAL, TIMEOUT),
		     IPC_NODE_INCOMPATIBLE);
	cr_assert_eq(cluster_node_next_state(IPC_NODE_SELF, 99999, INTERVAL,
					     TIMEOUT), IPC_NODE_SELF);
}

static struct ipc_cluster cl;

static void table_init(void)
{
	memset(&cl, 0, sizeof(cl));
	shm_cluster_setup(&cl, "xmppd", "n1", 2);
}

static uint32_t state_of(unsigned i)
{
	struct ipc_cluster_node n;
	cr_assert(shm_cluster_read_node(&cl, i, &n));
	return n.state;
}

struct changes {
	unsigned n;
	enum cluster_event ev[8];
	unsigned index[8];
};

static void record(unsigned index, enum cluster_event ev,
		   const struct ipc_cluster_node *node, int64_t age, void *ctx)
{
	struct changes *c = ctx;
	(void)node; (void)age;
	if (c->n < 8) {
		c->ev[c->n] = ev;
		c->index[c->n++] = index;
	}
}

Test(cluster, node_life, .init = table_init)
{
	struct cluster_hb n2 = hb_of("n2", 100);
	struct changes ch = { 0 };
	unsigned i;

	cr_assert_eq(state_of(0), IPC_NODE_SELF);
	cr_assert_eq(cluster_table_heard(&cl, &n2, 1, 1000, &i),
		     CLUSTER_EV_JOINED);
	cr_assert_eq(i, 1);
	cr_assert_eq(state_of(1), IPC_NODE_UP);
	cr_assert_eq(cl.nodes[1].sessions, 7);
	/* a heartbeat more: nothing to say */
	cr_assert_eq(cluster_table_heard(&cl, &n2, 1, 2000, &i),
		     CLUSTER_EV_NONE);
	cr_assert_eq(cluster_table_tick(&cl, 3999, INTERVAL, TIMEOUT, 0,
					record, &ch), 0);
	cr_assert_eq(cluster_table_tick(&cl, 4000, INTERVAL, TIMEOUT, 0,
					record, &ch), 1);
	cr_assert_eq(ch.ev[0], CLUSTER_EV_SUSPECT);
	cr_assert_eq(state_of(1), IPC_NODE_SUSPECT);
	/* once: a tick later says nothing until the next change */
	cr_assert_eq(cluster_table_tick(&cl, 4500, INTERVAL, TIMEOUT, 0,
					record, &ch), 0);
	cr_assert_eq(cluster_table_tick(&cl, 5000, INTERVAL, TIMEOUT, 0,
					record, &ch), 1);
	cr_assert_eq(ch.ev[1], CLUSTER_EV_DOWN);
	cr_assert_eq(state_of(1), IPC_NODE_DOWN);
	cr_assert_eq(cluster_table_tick(&cl, 90000, INTERVAL, TIMEOUT, 0,
					record, &ch), 0);
	/* heard again, same incarnation: back; another one: restarted,
	 * in the same entry (the index is the node's for good) */
	cr_assert_eq(cluster_table_heard(&cl, &n2, 1, 91000, &i),
		     CLUSTER_EV_BACK);
	cr_assert_eq(state_of(1), IPC_NODE_UP);
	n2.incarnation = 101;
	cr_assert_eq(cluster_table_heard(&cl, &n2, 1, 92000, &i),
		     CLUSTER_EV_RESTARTED);
	cr_assert_eq(i, 1);
	cr_assert_eq(cl.nodes[1].incarnation, 101);
	cr_assert_eq(cl.nodes[1].restarts, 1);
	/* a farewell: down at once, its late copy says nothing */
	n2.flags = CLUSTER_HB_F_LEAVING;
	cr_assert_eq(cluster_table_heard(&cl, &n2, 1, 92500, &i),
		     CLUSTER_EV_LEFT);
	cr_assert_eq(state_of(1), IPC_NODE_DOWN);
	cr_assert_eq(cluster_table_heard(&cl, &n2, 1, 92600, &i),
		     CLUSTER_EV_NONE);
	cr_assert_eq(atomic_load(&cl.nnodes), 2);
}

Test(cluster, incompatible_once, .init = table_init)
{
	struct cluster_hb n3 = hb_of("n3", 7);
	unsigned i;
	n3.ipc_version = IPC_VERSION + 1;
	cr_assert_eq(cluster_table_heard(&cl, &n3, 1, 1000, &i),
		     CLUSTER_EV_INCOMPATIBLE);
	cr_assert_eq(state_of(i), IPC_NODE_INCOMPATIBLE);
	cr_assert_eq(cluster_table_heard(&cl, &n3, 1, 2000, &i),
		     CLUSTER_EV_NONE);
	/* silence does not turn it into a node we would route to */
	cr_assert_eq(cluster_table_tick(&cl, 60000, INTERVAL, TIMEOUT, 0,
					NULL, NULL), 0);
	cr_assert_eq(state_of(i), IPC_NODE_INCOMPATIBLE);
	/* a new incarnation, still wrong: said again */
	n3.incarnation = 8;
	cr_assert_eq(cluster_table_heard(&cl, &n3, 1, 3000, &i),
		     CLUSTER_EV_INCOMPATIBLE);
	/* upgraded: back */
	n3.ipc_version = IPC_VERSION;
	cr_assert_eq(cluster_table_heard(&cl, &n3, 1, 4000, &i),
		     CLUSTER_EV_BACK);
	cr_assert_eq(state_of(i), IPC_NODE_UP);
	/* another cluster's name is incompatible too */
	struct cluster_hb n4 = hb_of("n4", 9);
	snprintf(n4.cluster, sizeof(n4.cluster), "other");
	cr_assert_eq(cluster_table_heard(&cl, &n4, 1, 4000, &i),
		     CLUSTER_EV_INCOMPATIBLE);
}

Test(cluster, own_name, .init = table_init)
{
	struct cluster_hb me = hb_of("n1", 42);
	unsigned i = 99;
	/* our own incarnation (an echo): ignored; another: a claim */
	cr_assert_eq(cluster_table_heard(&cl, &me, 42, 1000, &i),
		     CLUSTER_EV_NONE);
	me.incarnation = 43;
	cr_assert_eq(cluster_table_heard(&cl, &me, 42, 1000, &i),
		     CLUSTER_EV_CLAIM);
	cr_assert_eq(state_of(0), IPC_NODE_SELF);
	cr_assert_eq(atomic_load(&cl.nnodes), 1);
}

Test(cluster, full_table, .init = table_init)
{
	char name[16];
	unsigned i;
	for (unsigned k = 1; k < IPC_MAX_NODES; k++) {
		snprintf(name, sizeof(name), "m%u", k);
		struct cluster_hb h = hb_of(name, k);
		cr_assert_eq(cluster_table_heard(&cl, &h, 1, 1000, &i),
			     CLUSTER_EV_JOINED);
		cr_assert_eq(i, k);
	}
	struct cluster_hb extra = hb_of("extra", 5);
	cr_assert_eq(cluster_table_heard(&cl, &extra, 1, 1000, &i),
		     CLUSTER_EV_FULL);
	/* the known ones still refresh */
	struct cluster_hb m5 = hb_of("m5", 5);
	cr_assert_eq(cluster_table_heard(&cl, &m5, 1, 2000, &i),
		     CLUSTER_EV_NONE);
	cr_assert_eq(i, 5);
}

/* Review 15 C10: names heard once (63 of them) do not fill the table
 * for good.  An entry down for cluster.node_forget is freed, not
 * sooner, not while something still names its index; a freed place is
 * taken by a new name only once the table is full. */
static unsigned busy_index;

static int busy(unsigned index, void *ctx)
{
	(void)ctx;
	return index == busy_index;
}

#define FORGET 3600000

Test(cluster, forget_down_entries, .init = table_init)
{
	char name[16];
	unsigned i;
	struct changes ch = { 0 };
	for (unsigned k = 1; k < IPC_MAX_NODES; k++) {
		snprintf(name, sizeof(name), "m%u", k);
		struct cluster_hb h = hb_of(name, k);
		cr_assert_eq(cluster_table_heard(&cl, &h, 1, 1000, &i),
			     CLUSTER_EV_JOINED);
	}
	struct cluster_hb extra = hb_of("extra", 5);
	cr_assert_eq(cluster_table_heard(&cl, &extra, 1, 1000, &i),
		     CLUSTER_EV_FULL);
	/* m7 and m9 stop; everyone else goes on */
	int64_t now = 1000;
	for (; now < 1000 + FORGET + 5000; now += 1000) {
		for (unsigned k = 1; k < IPC_MAX_NODES; k++) {
			if (k == 7 || k == 9)
				continue;
			snprintf(name, sizeof(name), "m%u", k);
			struct cluster_hb h = hb_of(name, k);
			cluster_table_heard(&cl, &h, 1, now, &i);
		}
		cluster_table_tick(&cl, now, INTERVAL, TIMEOUT, 0, NULL, NULL);
		if (now == 1000 + FORGET - 1000)
			/* down for less than node_forget: kept */
			cr_assert_eq(cluster_table_forget(&cl, now, FORGET, busy,
							  NULL, NULL), 0);
	}
	cr_assert_eq(state_of(7), IPC_NODE_DOWN);
	busy_index = 9;         /* its sessions are still in our table */
	cr_assert_eq(cluster_table_forget(&cl, now, FORGET, busy, record,
					  &ch), 1);
	cr_expect_eq(ch.n, 1);
	cr_expect_eq(ch.index[0], 7);
	struct ipc_cluster_node n;
	cr_assert(shm_cluster_read_node(&cl, 7, &n));
	cr_expect_eq(n.state, IPC_NODE_FREE);
	cr_expect_str_eq(n.name, "");
	cr_expect_eq(n.incarnation, 0);
	cr_expect_eq(state_of(9), IPC_NODE_DOWN);
	/* the full table takes a new name in the freed place */
	cr_assert_eq(cluster_table_heard(&cl, &extra, 1, now, &i),
		     CLUSTER_EV_JOINED);
	cr_expect_eq(i, 7);
	cr_expect_eq(atomic_load(&cl.nnodes), IPC_MAX_NODES);
	cr_assert(shm_cluster_read_node(&cl, 7, &n));
	cr_expect_str_eq(n.name, "extra");
	cr_expect_eq(n.restarts, 0, "nothing of m7 carried over");
	/* m7 again: no room until m9 is freed too */
	struct cluster_hb m7 = hb_of("m7", 77);
	cr_expect_eq(cluster_table_heard(&cl, &m7, 1, now, &i),
		     CLUSTER_EV_FULL);
	busy_index = 0;
	cr_assert_eq(cluster_table_forget(&cl, now, FORGET, busy, NULL, NULL),
		     1);
	cr_expect_eq(cluster_table_heard(&cl, &m7, 1, now, &i),
		     CLUSTER_EV_JOINED);
	cr_expect_eq(i, 9);
}

Test(cluster, link_lost, .init = table_init)
{
	struct cluster_hb a = hb_of("a", 1), b = hb_of("b", 2);
	struct cluster_hb c = hb_of("c", 3);
	struct changes ch = { 0 };
	unsigned i;
	cluster_table_heard(&cl, &a, 9, 1000, &i);
	cluster_table_heard(&cl, &b, 9, 1000, &i);
	c.ipc_version = 1;
	cluster_table_heard(&cl, &c, 9, 1000, &i);
	/* heartbeats are fresh, but our link has been down too long */
	cr_assert_eq(cluster_table_tick(&cl, 1100, INTERVAL, TIMEOUT, 1,
					record, &ch), 2);
	cr_assert_eq(ch.ev[0], CLUSTER_EV_LINK_LOST);
	cr_assert_eq(ch.ev[1], CLUSTER_EV_LINK_LOST);
	cr_assert_eq(state_of(1), IPC_NODE_DOWN);
	cr_assert_eq(state_of(2), IPC_NODE_DOWN);
	cr_assert_eq(state_of(3), IPC_NODE_INCOMPATIBLE);
	cr_assert_eq(state_of(0), IPC_NODE_SELF);
}

Test(cluster, seqlock_reader, .init = table_init)
{
	struct ipc_cluster_node n;
	char url[IPC_CLUSTER_URL];
	/* a writer killed mid-update: the reader gives up, never loops */
	shm_cluster_write_begin(&cl.nodes[0]);
	cr_assert_eq(shm_cluster_read_node(&cl, 0, &n), 0);
	/* its successor's update makes it readable again */
	shm_cluster_write_begin(&cl.nodes[0]);
	cl.nodes[0].sessions = 3;
	shm_cluster_write_end(&cl.nodes[0]);
	cr_assert_eq(shm_cluster_read_node(&cl, 0, &n), 1);
	cr_assert_eq(n.sessions, 3);
	cr_assert_str_eq(n.name, "n1");
	cr_assert_eq(shm_cluster_read_node(&cl, IPC_MAX_NODES, &n), 0);
	shm_cluster_write_server(&cl, "nats://127.0.0.1:4222");
	shm_cluster_read_server(&cl, url, sizeof(url));
	cr_assert_str_eq(url, "nats://127.0.0.1:4222");
	cr_assert_str_eq(shm_cluster_state_name(IPC_NODE_SUSPECT), "suspect");
	cr_assert_str_eq(shm_cluster_state_name(IPC_NODE_INCOMPATIBLE),
			 "incompatible");
}

/* What the key-value thread publishes is what a worker reads, whole. */
Test(cluster, members_published, .init = table_init)
{
	struct members ms = { .epoch = 7 }, out;
	uint32_t seq0 = shm_cluster_members_seq(&cl);
	int64_t changed = -1;
	cr_assert_eq(shm_cluster_read_members(&cl, &out, &changed), 1);
	cr_assert_eq(out.epoch, 0);     /* none read yet */
	cr_assert_eq(changed, 0);
	cr_assert_eq(out.n, 0);
	members_add(&ms, "n2", 0x22);
	members_add(&ms, "n1", 0x11);
	shm_cluster_write_members(&cl, &ms, 1000);
	cr_assert_neq(shm_cluster_members_seq(&cl), seq0);
	cr_assert_eq(shm_cluster_members_seq(&cl) & 1u, 0);
	cr_assert_eq(shm_cluster_read_members(&cl, &out, &changed), 1);
	cr_assert_eq(out.epoch, 7);
	cr_assert_eq(changed, 1000);
	/* read again (same epoch): the change time stays */
	shm_cluster_write_members(&cl, &ms, 1500);
	cr_assert_eq(shm_cluster_read_members(&cl, &out, &changed), 1);
	cr_assert_eq(changed, 1000);
	cr_assert_eq(out.n, 2);
	cr_assert_str_eq(out.m[0].name, "n1");
	cr_assert_eq(out.m[1].incarnation, 0x22);
	/* the same owner as the writer computes */
	cr_assert_eq(members_owner(&out, "r@conference.x", 14),
		     members_owner(&ms, "r@conference.x", 14));
	/* a smaller list replaces it entirely */
	members_remove(&ms, "n2");
	ms.epoch = 8;
	shm_cluster_write_members(&cl, &ms, 2000);
	cr_assert_eq(shm_cluster_read_members(&cl, &out, &changed), 1);
	cr_assert_eq(out.n, 1);
	cr_assert_eq(out.epoch, 8);
	cr_assert_eq(changed, 2000);
	/* a writer killed mid-update: readers give up, never loop */
	atomic_fetch_or(&cl.members.seq, 1u);
	cr_assert_eq(shm_cluster_read_members(&cl, &out, NULL), 0);
}

/* An owner acts only while its last renewal was sent less than the
 * lease time ago; never before any renewal. */
Test(cluster, owner_fencing, .init = table_init)
{
	cr_assert_eq(shm_cluster_owner_ok(&cl, 5000, 5000), 0);
	atomic_store(&cl.lease_ms, 10000);
	cr_assert_eq(shm_cluster_owner_ok(&cl, 10000, 5000), 1);
	cr_assert_eq(shm_cluster_owner_ok(&cl, 14999, 5000), 1);
	cr_assert_eq(shm_cluster_owner_ok(&cl, 15000, 5000), 0);
	/* a clock read just before the renewal landed: fresh */
	cr_assert_eq(shm_cluster_owner_ok(&cl, 9999, 5000), 1);
}

/*
 * fuzz_cluster_hb.c - what a cluster bridge reads from NATS on the
 * heartbeat subject (cluster/hb.c), and the node table it feeds
 * (cluster/table.c).  Properties:
 *  - the parser never reads past the message (ASan) and accepts only
 *    canonical records: encoding what it parsed gives the same bytes;
 *  - an accepted record has names of 1..32 allowed characters, a
 *    non-zero incarnation and a worker count a node can have;
 *  - whatever arrives, the table keeps its shape: entry 0 is us (SELF,
 *    our name), entries 1..nnodes-1 have distinct non-empty names and a
 *    known state (or are FREE with no name), nnodes never passes
 *    IPC_MAX_NODES, a tick only moves UP/SUSPECT nodes, and forgetting
 *    (cluster.node_forget) frees only DOWN/INCOMPATIBLE ones.
 * Input: records, each one op byte then its bytes.  op < 0x40: a tick,
 * the clock advancing op * 50 ms, our link lost when op is odd; then,
 * when op & 2, entries silent for FUZZ_FORGET are forgotten (those
 * with an index divisible by 3 count as still in use).  op >=
 * 0x40: a message of CLUSTER_HB_SIZE bytes (op >= 0x48) or of
 * (op - 0x40) * 13 bytes (0..91), or what is left of the input.
 */
#include "fuzz.h"
#include "../cluster/cluster.h"
#include "../shm/cluster.h"

#include <stdatomic.h>
#include <string.h>

#define FUZZ_INTERVAL 1000
#define FUZZ_TIMEOUT 3000
#define FUZZ_SELF_INC 0x5e1f5e1f5e1f5e1full
#define FUZZ_FORGET 6000

static struct ipc_cluster fuzz_cl;

static int valid_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > CLUSTER_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_'))
			return 0;
	return 1;
}

static void check_message(const uint8_t *p, size_t len, int64_t now)
{
	struct cluster_hb hb;
	uint8_t again[CLUSTER_HB_SIZE];
	const char *error = NULL;
	unsigned idx = 0;

	if (cluster_hb_parse(p, len, &hb, &error) < 0) {
		FUZZ_CHECK(error != NULL && error[0] != '\0', "no reason");
		return;
	}
	FUZZ_CHECK(len == CLUSTER_HB_SIZE, "accepted %zu bytes", len);
	cluster_hb_encode(&hb, again);
	FUZZ_CHECK(memcmp(again, p, CLUSTER_HB_SIZE) == 0,
		   "not canonical: re-encoding differs");
	FUZZ_CHECK(valid_name(hb.node) && valid_name(hb.cluster),
		   "bad name accepted: '%s' '%s'", hb.node, hb.cluster);
	FUZZ_CHECK(hb.incarnation != 0, "zero incarnation accepted");
	FUZZ_CHECK(hb.workers > 0 && hb.workers < IPC_MAX_SLOTS,
		   "workers %u accepted", hb.workers);
	enum cluster_event ev = cluster_table_heard(&fuzz_cl, &hb,
						    FUZZ_SELF_INC, now, &idx);
	FUZZ_CHECK(idx < IPC_MAX_NODES, "index %u", idx);
	if (ev != CLUSTER_EV_FULL && ev != CLUSTER_EV_CLAIM &&
	    ev != CLUSTER_EV_NONE)
		FUZZ_CHECK(idx > 0 && strcmp(fuzz_cl.nodes[idx].name,
					     hb.node) == 0,
			   "event %d on entry %u", ev, idx);
}

static void check_table(void)
{
	uint32_t n = atomic_load(&fuzz_cl.nnodes);
	FUZZ_CHECK(n >= 1 && n <= IPC_MAX_NODES, "nnodes %u", n);
	FUZZ_CHECK(fuzz_cl.nodes[0].state == IPC_NODE_SELF &&
		   strcmp(fuzz_cl.nodes[0].name, "self") == 0, "entry 0");
	for (uint32_t i = 1; i < n; i++) {
		const struct ipc_cluster_node *e = &fuzz_cl.nodes[i];
		if (e->state == IPC_NODE_FREE) {
			FUZZ_CHECK(e->name[0] == '\0', "free entry %u named", i);
			continue;
		}
		FUZZ_CHECK(e->state >= IPC_NODE_UP &&
			   e->state < IPC_NODE_STATE_MAX, "state %u", e->state);
		FUZZ_CHECK(valid_name(e->name), "entry %u name", i);
		FUZZ_CHECK((atomic_load(&e->seq) & 1u) == 0, "entry %u odd", i);
		for (uint32_t j = 0; j < i; j++)
			FUZZ_CHECK(strcmp(fuzz_cl.nodes[j].name, e->name) != 0,
				   "entries %u and %u both '%s'", j, i, e->name);
	}
}

static int in_use(unsigned index, void *ctx)
{
	(void)ctx;
	return index % 3 == 0;
}

static void forget(int64_t now)
{
	uint32_t before[IPC_MAX_NODES];
	uint32_t n = atomic_load(&fuzz_cl.nnodes);
	for (uint32_t i = 0; i < n; i++)
		before[i] = fuzz_cl.nodes[i].state;
	cluster_table_forget(&fuzz_cl, now, FUZZ_FORGET, in_use, NULL, NULL);
	for (uint32_t i = 1; i < n; i++)
		FUZZ_CHECK(fuzz_cl.nodes[i].state == before[i] ||
			   ((before[i] == IPC_NODE_DOWN ||
			     before[i] == IPC_NODE_INCOMPATIBLE) &&
			    i % 3 != 0),
			   "forget freed entry %u in state %u", i, before[i]);
}

static void tick(unsigned op, int64_t now)
{
	uint32_t before[IPC_MAX_NODES];
	uint32_t n = atomic_load(&fuzz_cl.nnodes);
	for (uint32_t i = 0; i < n; i++)
		before[i] = fuzz_cl.nodes[i].state;
	cluster_table_tick(&fuzz_cl, now, FUZZ_INTERVAL, FUZZ_TIMEOUT, op & 1,
			   NULL, NULL);
	for (uint32_t i = 1; i < n; i++)
		FUZZ_CHECK(fuzz_cl.nodes[i].state == before[i] ||
			   before[i] == IPC_NODE_UP ||
			   before[i] == IPC_NODE_SUSPECT,
			   "tick moved entry %u from state %u", i, before[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int64_t now = 1000;
	size_t off = 0;

	memset(&fuzz_cl, 0, sizeof(fuzz_cl));
	shm_cluster_setup(&fuzz_cl, "xmppd", "self", 2);
	while (off < size) {
		unsigned op = data[off++];
		if (op < 0x40) {
			now += (int64_t)op * 50;
			tick(op, now);
			if (op & 2)
				forget(now);
		} else {
			size_t want = op >= 0x48 ? CLUSTER_HB_SIZE :
				(size_t)(op - 0x40) * 13;
			size_t len = size - off < want ? size - off : want;
			/* a copy of exactly len bytes: ASan sees any over-read */
			uint8_t *msg = malloc(len ? len : 1);
			FUZZ_CHECK(msg != NULL, "out of memory");
			memcpy(msg, data + off, len);
			check_message(msg, len, now);
			free(msg);
			off += len;
		}
		check_table();
	}
	return 0;
}

/*
 * cluster.c - seqlock readers and writers of the cluster node table
 * (cluster.h).  The bridge is the single writer of every entry, so the
 * writer needs no lock: seq odd, fields, seq even, with release fences
 * between; a reader copies between two acquire loads of seq.
 * Failure policy: see cluster.h (a reader gives up after bounded tries).
 */
#include "cluster.h"
#include "../cluster/members.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sodium.h>
#include <string.h>

#define SHM_CLUSTER_READ_TRIES 1000

void shm_cluster_setup(struct ipc_cluster *c, const char *cluster_name,
		       const char *node_name, unsigned nworkers)
{
	struct ipc_cluster_node *self = &c->nodes[0];

	c->enabled = 1;
	while (c->node_run == 0)
		randombytes_buf(&c->node_run, sizeof(c->node_run));
	snprintf(c->name, sizeof(c->name), "%s", cluster_name);
	shm_cluster_write_begin(self);
	snprintf(self->name, sizeof(self->name), "%s", node_name);
	self->state = IPC_NODE_SELF;
	self->workers = nworkers;
	self->ipc_version = IPC_VERSION;
	shm_cluster_write_end(self);
	atomic_store_explicit(&c->nnodes, 1, memory_order_release);
}

/* memcpy between the two loads: the fields are plain (not _Atomic) so
 * that the entry is one copy; the fences order it against seq. */
static int shm_cluster_copy(const _Atomic uint32_t *seq, void *dst,
			    const void *src, size_t n)
{
	for (unsigned i = 0; i < SHM_CLUSTER_READ_TRIES; i++) {
		uint32_t s1 = atomic_load_explicit(seq, memory_order_acquire);
		if (s1 & 1u) {
			sched_yield();
			continue;
		}
		memcpy(dst, src, n);
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(seq, memory_order_relaxed) == s1)
			return 1;
	}
	return 0;
}

int shm_cluster_read_node(const struct ipc_cluster *c, unsigned i,
			  struct ipc_cluster_node *out)
{
	if (i >= IPC_MAX_NODES)
		return 0;
	const struct ipc_cluster_node *n = &c->nodes[i];
	if (!shm_cluster_copy(&n->seq, out, n, sizeof(*out)))
		return 0;
	out->name[sizeof(out->name) - 1] = '\0';
	return 1;
}

void shm_cluster_read_server(const struct ipc_cluster *c, char *buf,
			     size_t size)
{
	char copy[IPC_CLUSTER_URL];
	if (!shm_cluster_copy(&c->url_seq, copy, c->server, sizeof(copy)))
		copy[0] = '\0';
	copy[sizeof(copy) - 1] = '\0';
	snprintf(buf, size, "%s", copy);
}

void shm_cluster_write_begin(struct ipc_cluster_node *n)
{
	uint32_t s = atomic_load_explicit(&n->seq, memory_order_relaxed);
	/* a writer killed mid-update left it odd: keep it odd, not even */
	atomic_store_explicit(&n->seq, s | 1u, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
}

void shm_cluster_write_end(struct ipc_cluster_node *n)
{
	uint32_t s = atomic_load_explicit(&n->seq, memory_order_relaxed);
	atomic_store_explicit(&n->seq, s + 1u, memory_order_release);
}

void shm_cluster_write_server(struct ipc_cluster *c, const char *url)
{
	uint32_t s = atomic_load_explicit(&c->url_seq, memory_order_relaxed);
	atomic_store_explicit(&c->url_seq, s | 1u, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	snprintf(c->server, sizeof(c->server), "%s", url);
	atomic_store_explicit(&c->url_seq, (s | 1u) + 1u,
			      memory_order_release);
}

uint32_t shm_cluster_members_seq(const struct ipc_cluster *c)
{
	return atomic_load_explicit(&c->members.seq, memory_order_acquire);
}

int shm_cluster_read_members(const struct ipc_cluster *c,
			     struct members *out, int64_t *changed_ms_r)
{
	static struct ipc_cluster_members copy;     /* 2.8 KB: not on the
						       worker's stack */
	if (!shm_cluster_copy(&c->members.seq, &copy, &c->members,
			      sizeof(copy)))
		return 0;
	memset(out, 0, sizeof(*out));
	out->epoch = copy.epoch;
	if (changed_ms_r != NULL)
		*changed_ms_r = copy.changed_ms;
	for (uint32_t i = 0; i < copy.n && i < IPC_MAX_NODES &&
	     i < MEMBERS_MAX; i++) {
		snprintf(out->m[i].name, sizeof(out->m[i].name), "%.*s",
			 MEMBERS_NAME_MAX, copy.names[i]);
		out->m[i].incarnation = copy.incarnations[i];
		out->n++;
	}
	return 1;
}

void shm_cluster_write_members(struct ipc_cluster *c,
			       const struct members *ms, int64_t now_ms)
{
	struct ipc_cluster_members *m = &c->members;
	uint32_t s = atomic_load_explicit(&m->seq, memory_order_relaxed);
	atomic_store_explicit(&m->seq, s | 1u, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	if (m->epoch != ms->epoch || m->changed_ms == 0)
		m->changed_ms = now_ms;
	m->epoch = ms->epoch;
	m->read_ms = now_ms;
	m->n = 0;
	memset(m->names, 0, sizeof(m->names));
	for (unsigned i = 0; i < ms->n && i < IPC_MAX_NODES; i++) {
		snprintf(m->names[i], sizeof(m->names[i]), "%s",
			 ms->m[i].name);
		m->incarnations[i] = ms->m[i].incarnation;
		m->n++;
	}
	atomic_store_explicit(&m->seq, (s | 1u) + 1u, memory_order_release);
}

int shm_cluster_owner_ok(const struct ipc_cluster *c, int64_t now_ms,
			 uint64_t lease_ms)
{
	int64_t at = atomic_load_explicit(&c->lease_ms, memory_order_acquire);
	/* now before at: the renewal landed between our clock read and
	 * this load, it is fresh */
	return at != 0 && now_ms - at < (int64_t)lease_ms;
}

const char *shm_cluster_state_name(uint32_t state)
{
	switch (state) {
	case IPC_NODE_SELF: return "self";
	case IPC_NODE_UP: return "up";
	case IPC_NODE_SUSPECT: return "suspect";
	case IPC_NODE_DOWN: return "down";
	case IPC_NODE_INCOMPATIBLE: return "incompatible";
	default: return "free";
	}
}

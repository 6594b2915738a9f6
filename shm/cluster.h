/*
 * cluster.h - the cluster node table in shared memory (struct
 * ipc_cluster in ipc.h): the master fills its fixed part before forking,
 * the cluster bridge (cluster/bridge.c) is the only writer afterwards,
 * and the master, xmppctl's control line and the metrics read it.
 * Each node entry is a seqlock: a reader copies it whole or retries, so
 * it never sees half of an update and never blocks the writer.
 * Failure policy: nothing here fails; a reader that keeps losing the race
 * (a writer killed mid-update leaves seq odd) gives up after a bounded
 * number of tries and reports the entry as unreadable (0).
 */
#ifndef XMPPD_SHM_CLUSTER_H
#define XMPPD_SHM_CLUSTER_H

#include <stdint.h>
#include "ipc.h"

struct shm_region;

/* Master, before forking: mark the cluster on, name it and this node
 * (entry 0, state SELF, incarnation 0 until the bridge starts). */
void shm_cluster_setup(struct ipc_cluster *c, const char *cluster_name,
		       const char *node_name, unsigned nworkers);

/* 1 and a consistent copy of entry i in *out; 0 if i is out of range or
 * the entry stayed busy (writer died mid-update). */
int shm_cluster_read_node(const struct ipc_cluster *c, unsigned i,
			  struct ipc_cluster_node *out);
/* The server URL of the link, into buf (always NUL-terminated). */
void shm_cluster_read_server(const struct ipc_cluster *c, char *buf,
			     size_t size);

/* Writer side (the bridge only): begin makes the entry's seq odd, end
 * makes it even again; the fields are written in between. */
void shm_cluster_write_begin(struct ipc_cluster_node *n);
void shm_cluster_write_end(struct ipc_cluster_node *n);
void shm_cluster_write_server(struct ipc_cluster *c, const char *url);

/* ---- ownership (cluster/kv.c writes, workers read) ---------------- */

struct members;

/* The member list's seqlock counter: a reader that cached the list at
 * this value need not copy it again (even and unchanged). */
uint32_t shm_cluster_members_seq(const struct ipc_cluster *c);
/* 1 and a consistent copy of the member list (epoch 0, n 0: none read
 * yet), and when this node first read that epoch (changed_ms_r may be
 * NULL); 0 when it stayed busy (its writer died mid-update). */
int shm_cluster_read_members(const struct ipc_cluster *c,
			     struct members *out, int64_t *changed_ms_r);
/* The key-value thread: the list it just read. */
void shm_cluster_write_members(struct ipc_cluster *c,
			       const struct members *ms, int64_t now_ms);
/* May this node act as an owner now: its lease was renewed (the renewal
 * sent) less than lease_ms ago.  Pure arithmetic on the shared value,
 * so a stuck or dead key-value thread stops us by itself. */
int shm_cluster_owner_ok(const struct ipc_cluster *c, int64_t now_ms,
			 uint64_t lease_ms);

/* "self", "up", "suspect", "down", "incompatible" ("free" for FREE). */
const char *shm_cluster_state_name(uint32_t state);

#endif

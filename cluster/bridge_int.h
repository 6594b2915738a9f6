/*
 * bridge_int.h - the cluster bridge's own state, shared by bridge.c
 * (the process, NATS, heartbeats) and bridge_route.c (the session
 * directory and the stanza traffic between nodes).  Private to the
 * bridge process.
 */
#ifndef XMPPD_BRIDGE_INT_H
#define XMPPD_BRIDGE_INT_H

#include "cluster.h"
#include "directory.h"
#include "dirfeed.h"
#include "fence.h"
#include "xfer.h"
#include "../shm/cluster.h"
#include "../worker/worker.h"
#include "arena.h"

#include <nats/nats.h>

struct route_held;
struct route_later;

#define BRIDGE_EV_DATA 256          /* message bytes kept (a heartbeat is
				       112: a longer one is refused anyway) */

enum bridge_ev_type {
	BRIDGE_EV_HB = 1,           /* a message on P.hb */
	BRIDGE_EV_CONNECTED,        /* data: the server URL */
	BRIDGE_EV_RECONNECTED,      /* data: the server URL */
	BRIDGE_EV_DISCONNECTED,
	BRIDGE_EV_CLOSED,
	BRIDGE_EV_ERROR,            /* status: a natsStatus */
	BRIDGE_EV_MSG,              /* msg: a message on a routing subject
				       (status: enum bridge_subject); the
				       main thread destroys it */
};

struct bridge_ev {
	uint8_t type;               /* enum bridge_ev_type */
	int32_t status;
	uint32_t len;               /* bytes of the message (may exceed
				       what data holds) */
	natsMsg *msg;
	uint8_t data[BRIDGE_EV_DATA];
};

/* The routing subjects (bridge_route.c), P = xmppd.<cluster>. */
enum bridge_subject {
	BRIDGE_SUBJ_DIR = 1,        /* P.dir: every node's directory events */
	BRIDGE_SUBJ_SYNC,           /* P.sync.<us>: a snapshot request */
	BRIDGE_SUBJ_SNAP,           /* P.snap.<us>: snapshot parts for us */
	BRIDGE_SUBJ_FRAMES,         /* P.n.<us>: frames for our workers */
	BRIDGE_SUBJ_ACK,            /* P.ack.<us>: acks of what we sent */
	BRIDGE_SUBJ_REANN,          /* P.reann.<us>: a node that had lost us
				       asks for our users' presence again */
	BRIDGE_SUBJ_MAX
};

enum bridge_tag {
	BRIDGE_TAG_CHANNEL = 1,
	BRIDGE_TAG_DEAD,
	BRIDGE_TAG_QUEUE,
	BRIDGE_TAG_WAKE,
};

struct bridge {
	unsigned slot, nworkers;
	struct config *cfg;
	struct shm_region *shm;
	struct ipc_cluster *cl;
	struct ipc_worker_stats *stats;
	struct queue *q;
	int channel, dead_fd, epfd;
	uint64_t incarnation;       /* random, per bridge start */
	uint64_t run;               /* our start, wall-clock µs (fence.h) */
	uint64_t pub_seq;           /* messages published, the last's seq */
	struct fence fence;         /* the other nodes' runs and windows */
	/* snapshot parts' own: they wait apart and are read after what
	 * the node sent later (bridge.c ring), whose sequence would have
	 * moved the window past them (a part refused as a replay, the
	 * snapshot lost); the MAC covers the subject, so nothing else can
	 * pass this fence */
	struct fence snap_fence;
	/* who we are and our timing, fixed for this bridge's life: the
	 * names as the master put them in the node table at its start (a
	 * reload's new cluster.* values are restart-only and must not
	 * rename a running node) */
	char node[CLUSTER_NAME_MAX + 1], cluster[CLUSTER_NAME_MAX + 1];
	uint64_t interval_ms, timeout_ms, lease_ms;
	char subj_hb[96];           /* xmppd.<cluster>.hb */
	natsOptions *opts;
	natsConnection *nc;
	natsSubscription *sub_hb;
	int stopping;               /* QUIT or the master gone */
	int closed;                 /* the connection's closed callback ran */
	int64_t now_ms;
	int64_t next_hb_ms;         /* our next heartbeat */
	int64_t claim_logged_ms, full_logged_ms, bad_logged_ms;
	uint64_t snap_dropped_seen;     /* snapshot parts dropped, logged */
	int64_t snap_logged_ms;
	int64_t replay_logged_ms;   /* refusals by the fence, logged apart */
	int64_t next_forget_ms;     /* next look for entries to free */
	uint64_t frames_dropped;    /* frames from workers not sent on */
	/* bridge_route.c */
	char prefix[64];            /* xmppd.<cluster> */
	natsSubscription *subs[BRIDGE_SUBJ_MAX];
	struct dir_local dir;       /* this node's sessions as told */
	struct dir_feed feed;       /* the table's change log into dir */
	struct dir_peer peers[IPC_MAX_NODES];   /* by node table index */
	int64_t asked_ms[IPC_MAX_NODES];        /* snapshot asked at */
	struct xfer xfer;
	struct arena scratch;
	int64_t next_scan_ms;
	int64_t last_scan_ms;       /* the last full walk of the table */
	uint64_t scan_changes;      /* shm_session_changes at the last scan */
	/* frames handed to each worker, by token (the header's), from the
	 * oldest the worker has not said it is done with (IPC_FRAME_SETTLED):
	 * what may be acknowledged (bridge_route.c) */
	struct route_fifo {
		struct route_pending {
			uint8_t node;   /* 0: of a run no longer followed */
			uint8_t done;
			uint64_t seq;
		} *v;
		size_t cap, head, n;
		uint32_t head_token;    /* v[head]'s token */
		uint32_t last_read;     /* the worker's last read, as told */
		bool read_known;
	} fifo[IPC_MAX_SLOTS];
	uint32_t unsettled[IPC_MAX_NODES];      /* entries not done with */
	uint8_t settle_due[IPC_MAX_NODES];      /* ack to work out (flush) */
	/* per node, its frames not done with, by number (what the ack's
	 * holes are made of; bridge_route.c) */
	struct route_openlist {
		struct route_open {
			uint64_t seq;
			int64_t since_ms;
			uint32_t token;
			uint16_t w;
		} *v;
		size_t n, cap;
	} open[IPC_MAX_NODES];
	uint64_t forced;            /* held frames acknowledged anyway */
	int64_t next_expiry_ms;
	uint8_t reann_due[IPC_MAX_NODES];       /* back: re-announce after
						   its snapshot */
	uint64_t peer_run[IPC_MAX_NODES];       /* its node run, last heard */
	uint8_t peer_lost[IPC_MAX_NODES];       /* we marked it down */
	uint8_t reann_ask[IPC_MAX_NODES];       /* P.reann requests still to
						   send (one per heartbeat) */
	int64_t reann_done_ms[IPC_MAX_NODES];   /* our last re-announce
						   asked by it */
	/* who asked us for a snapshot (P.sync), by name: it may not be in
	 * the node table yet; one answer each cluster.sync_interval */
	struct route_asker {
		char node[CLUSTER_NAME_MAX + 1];
		int64_t answered_ms;
		uint8_t due;        /* asked again inside the interval */
	} askers[IPC_MAX_NODES];
	unsigned askers_due;
	int queue_waiting;          /* frames for workers still in the outbox */
	int64_t started_ms;         /* this bridge's start */
	struct route_held *held_head, *held_tail;   /* frames for nodes
					   not heard yet (route_hold) */
	struct route_later *later_head, *later_tail;    /* frames for our
					   workers their outboxes refused */
};

/* bridge.c */
/* Publish data on subject with the cluster's MAC (lib/secret.h). */
natsStatus bridge_publish(struct bridge *b, const char *subject,
			  const void *data, size_t len);
/* A message as received on subject: signed with the cluster's key and
 * not a replay (fence.h; f: the bridge's fence, or its snap_fence for
 * snapshot parts).  0 with the payload's length and the sender's
 * stamp; -1 with a static reason (counted and logged by the caller). */
int bridge_open(struct fence *f, const char *subject, const void *msg,
		size_t len, size_t *payload_r, struct fence_stamp *st,
		const char **error_r);
void bridge_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
		   void *closure);

/* kv.c: the key-value thread (lease, member list), started once b->nc
 * exists, stopped before it goes. */
void bridge_kv_start(struct bridge *b);
void bridge_kv_stop(void);

/* bridge_route.c */
/* Subscriptions and state, once b->nc exists. */
void bridge_route_init(struct bridge *b);
void bridge_route_msg(struct bridge *b, enum bridge_subject subject,
		      natsMsg *msg);
/* A heartbeat of node idx was heard (after the node table took it). */
void bridge_route_heard(struct bridge *b, unsigned idx,
			enum cluster_event ev, const struct cluster_hb *hb);
/* Node idx went down (or left): its sessions leave the table, what was
 * on its way to it comes back. */
void bridge_route_down(struct bridge *b, unsigned idx);
/* A frame from one of our workers for a session on another node. */
void bridge_route_frame(struct bridge *b, const struct ipc_frame_header *hdr,
			const void *payload, size_t len);
/* Each loop turn: our sessions' changes, batches, acks, resends. */
void bridge_route_tick(struct bridge *b);
/* What heartbeats say of our sessions: count, digest, last event. */
uint32_t bridge_route_count(const struct bridge *b);
uint64_t bridge_route_digest(const struct bridge *b);
uint64_t bridge_route_seq(const struct bridge *b);
void bridge_route_stop(struct bridge *b);
/* Does anything of ours still name node table entry idx (its sessions
 * in the table, frames kept, being settled, held or waiting)? */
int bridge_route_refers(const struct bridge *b, unsigned idx);
/* Entry idx was freed: what we kept by its index goes. */
void bridge_route_forgot(struct bridge *b, unsigned idx);

#endif

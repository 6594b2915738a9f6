/*
 * members.h - who is in the cluster, and who owns what lives in one
 * place (issue 15, docs/DESIGN.md "Cluster").
 *
 * The member list is one value in the cluster's JetStream key-value
 * bucket: an epoch number and the nodes (name and run) in it.  It is
 * changed only by compare-and-set, by the coordinator (the member with
 * the lowest name among those it sees up), so every node reads the same
 * list for an epoch.  What has one owner in the cluster -- a group chat
 * room -- goes to the member with the highest rendezvous score for its
 * name: no per-room state anywhere, and when a member leaves only its
 * rooms move.
 *
 * Fencing: each node renews a lease key of its own every second.  A node
 * that could not renew it for members_lease (the minority side of a
 * partition cannot: JetStream needs a quorum) stops acting as an owner.
 * The coordinator removes a member only once that member's lease key
 * has not changed for node_timeout + lease, on the coordinator's own
 * clock: by then the member has stopped acting on its own, so two
 * owners never act at once.  Nothing compares clocks across machines.
 */
#ifndef XMPPD_MEMBERS_H
#define XMPPD_MEMBERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MEMBERS_MAX 64              /* IPC_MAX_NODES */
#define MEMBERS_NAME_MAX 32
#define MEMBERS_TEXT_MAX (32 + MEMBERS_MAX * (MEMBERS_NAME_MAX + 19))

struct member {
	char name[MEMBERS_NAME_MAX + 1];
	uint64_t incarnation;
};

struct members {
	uint64_t epoch;
	unsigned n;                 /* sorted by name, no two alike */
	struct member m[MEMBERS_MAX];
};

/* The value's text: "epoch N\n" then "NAME INCARNATION-HEX\n" per member,
 * sorted by name.  Returns the length written (< size), or -1. */
int members_format(const struct members *ms, char *out, size_t size);
/* Parse a value written by members_format; anything else is -1. */
int members_parse(struct members *ms, const char *text, size_t len);

/* ---- the values as stored (review 15 C10) ---------------------------
 * Anyone allowed on the NATS account could write the bucket: every
 * value ends with the cluster's MAC (lib/secret.h) over "kv.<bucket>.
 * <key>" and the value (cluster/kv.c), checked before it is read; an
 * unsigned value is refused with a log line.  A lease value also says
 * which renewal it is and when it was sent, so a recorded renewal put
 * back (to keep a dead node "renewing") is refused: one not newer than
 * the last taken of that run, or sent longer ago than
 * cluster.clock_skew (the one place two machines' clocks are compared,
 * with that much slack). */
#define MEMBERS_LEASE_TEXT_MAX 64

struct lease_value {
	uint64_t incarnation;       /* the node's bridge run */
	uint64_t count;             /* renewals by that run, from 1 */
	int64_t sent_ms;            /* wall clock of the writer */
};

/* "INCARNATION-HEX COUNT SENT_MS\n"; the length written, or -1. */
int members_lease_format(const struct lease_value *v, char *out,
			 size_t size);
int members_lease_parse(struct lease_value *v, const char *text,
			size_t len);
/* A renewal to take: prev (NULL: none taken yet) is the last taken of
 * that key; now_ms our wall clock. */
bool members_lease_fresh(const struct lease_value *prev,
			 const struct lease_value *v, int64_t now_ms,
			 int64_t skew_ms);

/* Index of name in ms, or -1. */
int members_find(const struct members *ms, const char *name);
/* Add (or update the run of) / remove a member; keeps the order.  0, or
 * -1 (full, or absent). */
int members_add(struct members *ms, const char *name, uint64_t incarnation);
int members_remove(struct members *ms, const char *name);

/* The owner of key (a room's bare JID) among ms: the index of the member
 * with the highest score, or -1 when ms is empty. */
int members_owner(const struct members *ms, const char *key, size_t len);

/* ---- the coordinator's decision -------------------------------------- */

/* What the coordinator knows of one node. */
struct member_view {
	char name[MEMBERS_NAME_MAX + 1];
	uint64_t incarnation;       /* its run (heartbeats) */
	bool up;                    /* heartbeats arrive */
	bool lease_seen;            /* its lease key exists */
	int64_t lease_changed_ms;   /* our monotonic ms when its lease key's
				       revision last changed */
	int64_t judged_from_ms;     /* our monotonic ms from which a lease
				       standing still counts against it
				       (0: from lease_changed_ms): the
				       last time our own lease renewal
				       failed, when nobody's may have gone
				       through either */
};

/* Is self the coordinator: the lowest name among the members it sees up
 * and itself (self is up to itself), given its own lease is valid. */
bool members_is_coordinator(const struct members *ms,
			    const struct member_view *views, unsigned nviews,
			    const char *self);
/* The next member list: nodes up with a lease join (or update their
 * run); members whose lease has not changed for node_timeout_ms +
 * lease_ms, counted from the later of lease_changed_ms and
 * judged_from_ms, leave.  next = current with those changes and epoch + 1 when
 * anything changed; returns true then. */
bool members_next(const struct members *current,
		  const struct member_view *views, unsigned nviews,
		  int64_t now_ms, int64_t node_timeout_ms, int64_t lease_ms,
		  struct members *next);

#endif

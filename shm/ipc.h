/*
 * ipc.h - the whole contract between xmppd processes.
 *
 * Everything that crosses a process boundary is defined here and nowhere
 * else: the shared-memory layout (header, per-worker stats, session
 * records), the worker queue frame header and its types, and the
 * master<->worker channel commands.  Bump IPC_VERSION whenever a struct
 * or an enum below changes; peers with another version are refused.
 */
#ifndef XMPPD_IPC_H
#define XMPPD_IPC_H

#include <stdint.h>
#include <pthread.h>

#define IPC_VERSION 21

/* Hard limits. */
#define IPC_MAX_SLOTS 64            /* worker slots (and the cluster
				       bridge's, after them) */
#define IPC_MAX_NODES 64            /* nodes of a cluster, this one too */
#define IPC_JID_MAX 3071            /* RFC 7622: 1023 + 1 + 1023 + 1 + 1023 */
#define IPC_JID_INLINE 184          /* full JIDs up to this fit in a record */

/* ---- worker queue frames --------------------------------------------- */

#define IPC_FRAME_MAGIC 0x58u       /* 'X' */
/* The gen of a stanza the cluster bridge hands back to the worker that
 * sent it (conn 0: no session; the header's node names the node it
 * could not reach): no connection has this generation. */
#define IPC_GEN_HANDBACK 0xffffffffu
#define IPC_FRAME_HDR_SIZE 24u
#define IPC_FRAME_MAX (1024u * 1024u)  /* one frame's payload, reassembled */
#define IPC_DGRAM_MAX (64u * 1024u)    /* one datagram (a batch of frames) */
#define IPC_FRAG_MAX (IPC_DGRAM_MAX - IPC_FRAME_HDR_SIZE) /* payload per chunk */

enum ipc_frame_type {
	IPC_FRAME_STANZA = 1,       /* payload: serialized stanza to conn_id/gen */
	IPC_FRAME_BARE_STANZA,      /* payload: stanza for a bare JID's rules */
	IPC_FRAME_SWEPT,            /* payload: full JID of a swept session
				       that was available: broadcast its
				       unavailable presence */
	IPC_FRAME_KICK,             /* payload: reason; close conn_id/gen */
	IPC_FRAME_TEST,             /* payload: opaque, used by the tests */
	IPC_FRAME_ROSTER_PUSH,      /* payload: roster push, for resources
				       that asked for the roster */
	IPC_FRAME_PROBE,            /* payload: a full JID to send conn's
				       last presence to */
	IPC_FRAME_BLOCK_PUSH,       /* payload: XEP-0191 push; the session
				       updates its copy of the blocklist */
	/* XEP-0198 resumption across workers (payloads: "XEP-0198
	 * hand-over frames" at the end): the new connection's worker asks the
	 * record's owner to hand the session over, the owner answers with
	 * its state and journal, the new owner confirms so that the old
	 * frees it. */
	IPC_FRAME_SM_TAKE,
	IPC_FRAME_SM_GIVE,
	IPC_FRAME_SM_DONE,
	IPC_FRAME_CARBONS,          /* payload: "1"; a session of the
				       account enabled XEP-0280 carbons: the
				       target copies what it sends (carbons.c) */
	/* federation (worker/s2s.h) and components (worker/component.h);
	 * their payload structs, when not a bare stanza, go in this header */
	IPC_FRAME_S2S_OUT,          /* a stanza for the owner of the
				     * outgoing link to a remote domain */
	IPC_FRAME_S2S_VERIFY,       /* XEP-0220: ask the owner of the link
				     * to the authoritative server to verify
				     * a dialback key */
	IPC_FRAME_S2S_VERIFIED,     /* XEP-0220: its answer, back to the
				     * worker holding the incoming stream */
	IPC_FRAME_COMPONENT,        /* a stanza for a component's stream */
	IPC_FRAME_PEP_AVATAR,       /* payload: the account's XEP-0153 photo
				       hash (40 hex digits, or empty: none)
				       for XEP-0398 presence (pep_compat.c) */
	IPC_FRAME_PEP_LAST,         /* payload: an owner's bare JID that
				       granted the session's account
				       presence: send the session its last
				       items, paced (pep_notify.c) */
	IPC_FRAME_MUC,              /* XEP-0045: a stanza (text, 'from' and
				       'to' set) for a room, to the room's
				       owner worker (muc.c) */
	IPC_FRAME_MUC_FANOUT,       /* a room's stanza for occupants on the
				       receiving worker: struct
				       ipc_muc_fanout, the text without
				       'to', then the recipients (muc.c) */
	IPC_FRAME_MUC_GONE,         /* payload: "room@service\0full JID":
				       that occupant's session was swept
				       with its crashed worker, to the
				       room's owner worker (muc.c) */
	IPC_FRAME_SETTLED,          /* payload: struct ipc_settled: which
				       frames from other nodes (by token) a
				       worker is done with (written to the
				       socket, acknowledged by an XEP-0198
				       client, or routed on), to the
				       cluster bridge, which acknowledges
				       them to their senders (issue 15) */
	IPC_FRAME_PEP_EVENT,        /* a PEP event for the receiving node's
				       sessions of one bare JID, whose caps
				       only that node knows: u8 owner (the
				       event is the account's own), u32
				       head length, head, u32 tail length,
				       tail, then "node\0bare"
				       (pep_notify.c; conn 0) */
	IPC_FRAME_REANNOUNCE,       /* no payload: a node we had lost is
				       back; the worker sends its available
				       sessions' presence again to contacts
				       we host, paced (from the bridge) */
	IPC_FRAME_LENT_DONE,        /* payload: u32 lend ids: frames the
				       receiving worker lent the sender
				       (the header token of a frame
				       between two local workers) that
				       the sender is done with
				       (worker/settle.h, issue 15) */
	IPC_FRAME_OFFLINE_NUDGE,    /* no payload: a message for the account
				       of conn_id/gen was stored offline
				       after its session had read the
				       storage; it reads it again
				       (worker/offline.c; crosses nodes) */
	IPC_FRAME_TYPE_MAX
};

enum ipc_frame_flags {
	IPC_FRAME_F_MORE = 0x01,    /* payload continues in the next frame */
};

/* On the wire: little-endian host order (same machine), packed 20 bytes. */
struct ipc_frame_header {
	uint8_t magic;              /* IPC_FRAME_MAGIC */
	uint8_t version;            /* IPC_VERSION */
	uint8_t type;               /* enum ipc_frame_type */
	uint8_t flags;              /* enum ipc_frame_flags */
	uint32_t len;               /* payload bytes following this header */
	uint16_t src_slot;          /* sending worker slot */
	/* Another node's session (issue 15): a frame to the cluster
	 * bridge's slot names the destination node (its index in this
	 * node's node table, 1 .. IPC_MAX_NODES - 1) and the worker slot
	 * there, and conn_id/gen are that node's; a frame from the bridge
	 * names the node and worker it came from.  0, 0: this node (the
	 * only value between two local workers; frame_check_route). */
	uint8_t node;
	uint8_t node_slot;
	uint32_t conn_id;           /* target connection id (0: none) */
	uint32_t gen;               /* target connection generation */
	/* A frame another node sent, as the bridge hands it to a worker:
	 * its number among the bridge's frames to that worker, which the
	 * worker names when it is done with it (IPC_FRAME_SETTLED,
	 * worker/settle.c).  Between two local workers: a lend id, for a
	 * frame from another node the sender hands on and keeps held
	 * until the receiver says it is done with it (IPC_FRAME_LENT_DONE,
	 * settle.h).  0 on every other frame (frame_check_route). */
	uint32_t token;
};
_Static_assert(sizeof(struct ipc_frame_header) == IPC_FRAME_HDR_SIZE,
	       "frame header must be 24 bytes");

/* IPC_FRAME_SETTLED: a worker's account of the tokens of the frames
 * from other nodes it was given (worker/settle.c).  Every token before
 * base is done with; so is each range [from, to] that follows (nranges
 * pairs of u32).  last is the last token it read (0 with none read yet).
 * IPC_SETTLED_FRESH: a worker just started: what its slot's previous
 * process read and still held died with it (cluster/bridge_route.c). */
/* IPC_SETTLED_ADOPTED (with FRESH and BASE): the new process adopted
 * XEP-0198 journals holding some of what the old one read: of the old
 * reads only those outside [base, last] and the ranges inside are done
 * with. */
enum { IPC_SETTLED_FRESH = 1, IPC_SETTLED_BASE = 2, IPC_SETTLED_ADOPTED = 4 };
struct ipc_settled {
	uint32_t flags;             /* IPC_SETTLED_*; BASE: base is valid */
	uint32_t base;
	uint32_t last;
	uint32_t nranges;
};
#define IPC_SETTLED_RANGES_MAX 1024u

/* IPC_FRAME_MUC_FANOUT: one stanza of a room for several sessions of
 * the receiving worker, written once per worker rather than once per
 * occupant.  The payload is this header, text_len bytes of the stanza
 * as sent to every occupant but without 'to' (the receiver puts each
 * recipient's JID in), then count recipients, each a
 * struct ipc_muc_recipient followed by jid_len bytes of its full JID. */
struct ipc_muc_fanout {
	uint32_t text_len;
	uint32_t count;
};
struct ipc_muc_recipient {
	uint32_t conn_id;
	uint32_t gen;
	uint32_t jid_len;
};

/* IPC_FRAME_S2S_OUT: a stanza for the owner of the outgoing link
 * local -> remote (worker/s2s_out.c; header conn_id/gen 0).  Followed by
 * local_len bytes of our domain (the stanza's 'from' domain), remote_len
 * bytes of the remote domain, then the stanza as written on a client
 * stream (the rest of the payload).  No NULs. */
struct ipc_s2s_out {
	uint16_t local_len;
	uint16_t remote_len;
	uint32_t reserved;          /* 0 */
};

/* ---- master <-> worker channel (SOCK_SEQPACKET, one pair per slot) ---- */

enum ipc_cmd_type {
	IPC_CMD_QUIT = 1,           /* close streams with system-shutdown, exit */
	IPC_CMD_CONFIG,             /* payload: serialized config text */
	IPC_CMD_REOPEN_LOG,         /* reopen the log file */
	IPC_CMD_KICK,               /* payload: struct ipc_kick + JID + text:
				       end that session's stream */
	IPC_CMD_TYPE_MAX
};

#define IPC_CMD_PAYLOAD_MAX (60u * 1024u)

struct ipc_cmd {
	uint32_t version;           /* IPC_VERSION */
	uint32_t type;              /* enum ipc_cmd_type */
	uint64_t generation;        /* config generation this applies to */
	uint32_t len;               /* payload bytes following */
	uint32_t reserved;
};

/* The stream error an IPC_CMD_KICK ends the session with. */
enum ipc_kick_condition {
	IPC_KICK_POLICY_VIOLATION = 1,  /* xmppctl kick */
	IPC_KICK_RESET,                 /* xmppctl kick --reset, passwd --kick */
	IPC_KICK_NOT_AUTHORIZED,        /* xmppctl user del */
};

/* IPC_CMD_KICK payload: this header, then jid_len bytes of the session's
 * full JID (checked against the connection, which may have been reused),
 * then text_len bytes of UTF-8 <text/> (0: none).  No NULs. */
struct ipc_kick {
	uint32_t conn_id;
	uint32_t gen;
	uint32_t condition;         /* enum ipc_kick_condition */
	int32_t uid;                /* the control client's uid (for the log) */
	uint16_t jid_len;
	uint16_t text_len;
};

/* ---- shared memory ---------------------------------------------------- */

#define IPC_SHM_MAGIC 0x584d5050444d5348ull   /* "XMPPDMSH" */

/* Per-worker counters (shm/metrics.h, rendered by shm/metrics.c): each
 * is written by one process only -- the worker of its slot, except the
 * fields the master owns (pid, restarts, spawned_at, and the gauges it
 * clears when it reaps a worker) -- with relaxed atomic loads and stores
 * (no read-modify-write: one writer), and read by the master and by any
 * worker's GET /metrics.  Counters survive a respawn of the slot; gauges
 * are reset by the new worker.  The enums index the arrays. */
enum ipc_listener {
	IPC_LISTENER_STARTTLS = 0,  /* c2s port (STARTTLS or plain) */
	IPC_LISTENER_DIRECT_TLS,    /* c2s direct TLS port (XEP-0368) */
	IPC_LISTENER_MAX
};

enum ipc_tls_version {
	IPC_TLS_NONE = 0,           /* not (yet) encrypted */
	IPC_TLS_1_2,                /* TLS 1.2 or older */
	IPC_TLS_1_3,
	IPC_TLS_MAX
};

/* SASL mechanism of a session (struct ipc_session.mech) and of the
 * login counters; IPC_MECH_NONE: a failure before a known mechanism. */
enum ipc_mech {
	IPC_MECH_NONE = 0,
	IPC_MECH_PLAIN,
	IPC_MECH_SCRAM_SHA_1,
	IPC_MECH_SCRAM_SHA_1_PLUS,
	IPC_MECH_SCRAM_SHA_256,
	IPC_MECH_SCRAM_SHA_256_PLUS,
	IPC_MECH_MAX
};

/* RFC 6120 section 6.5 SASL failure conditions. */
enum ipc_sasl_reason {
	IPC_SASL_ABORTED = 0,
	IPC_SASL_ACCOUNT_DISABLED,
	IPC_SASL_CREDENTIALS_EXPIRED,
	IPC_SASL_ENCRYPTION_REQUIRED,
	IPC_SASL_INCORRECT_ENCODING,
	IPC_SASL_INVALID_AUTHZID,
	IPC_SASL_INVALID_MECHANISM,
	IPC_SASL_MALFORMED_REQUEST,
	IPC_SASL_MECHANISM_TOO_WEAK,
	IPC_SASL_NOT_AUTHORIZED,
	IPC_SASL_TEMPORARY_AUTH_FAILURE,
	IPC_SASL_REASON_MAX
};

enum ipc_stanza_kind {
	IPC_STANZA_MESSAGE = 0,
	IPC_STANZA_PRESENCE,
	IPC_STANZA_IQ,
	IPC_STANZA_OTHER,           /* in only: stream-level (SASL, STARTTLS) */
	IPC_STANZA_KIND_MAX
};

/* RFC 6120 section 8.3.3 stanza error conditions (errors we send). */
enum ipc_stanza_error {
	IPC_SERR_BAD_REQUEST = 0,
	IPC_SERR_CONFLICT,
	IPC_SERR_FEATURE_NOT_IMPLEMENTED,
	IPC_SERR_FORBIDDEN,
	IPC_SERR_GONE,
	IPC_SERR_INTERNAL_SERVER_ERROR,
	IPC_SERR_ITEM_NOT_FOUND,
	IPC_SERR_JID_MALFORMED,
	IPC_SERR_NOT_ACCEPTABLE,
	IPC_SERR_NOT_ALLOWED,
	IPC_SERR_NOT_AUTHORIZED,
	IPC_SERR_POLICY_VIOLATION,
	IPC_SERR_RECIPIENT_UNAVAILABLE,
	IPC_SERR_REDIRECT,
	IPC_SERR_REGISTRATION_REQUIRED,
	IPC_SERR_REMOTE_SERVER_NOT_FOUND,
	IPC_SERR_REMOTE_SERVER_TIMEOUT,
	IPC_SERR_RESOURCE_CONSTRAINT,
	IPC_SERR_SERVICE_UNAVAILABLE,
	IPC_SERR_SUBSCRIPTION_REQUIRED,
	IPC_SERR_UNDEFINED_CONDITION,
	IPC_SERR_UNEXPECTED_REQUEST,
	IPC_SERR_MAX
};

/* Database round trips: upper bounds in microseconds (le), the last
 * bucket is +Inf. */
#define IPC_DB_BUCKETS_US 500, 1000, 2500, 5000, 10000, 25000, 50000, \
	100000, 250000, 500000, 1000000, 2500000, 5000000
#define IPC_DB_NBUCKETS 14          /* the 13 above and +Inf */

/* HTTP response status codes counted one by one (shm/metrics.c has the
 * list, the codes the HTTP front sends); any other is counted as the
 * last one, "other". */
#define IPC_HTTP_STATUS_MAX 24
#define IPC_DB_REASON 128

struct ipc_db_stats {
	_Atomic uint64_t buckets[IPC_DB_NBUCKETS];  /* not cumulative */
	_Atomic uint64_t sum_us;    /* round trips, microseconds */
	_Atomic uint64_t count;
	_Atomic uint64_t errors;    /* queries answered with an error */
	_Atomic uint64_t link_up;   /* times the link came up */
	_Atomic uint64_t link_down; /* times it went down */
	_Atomic uint32_t up;        /* gauge: the link is up */
	_Atomic uint32_t reason_len;/* bytes of reason (0: none) */
	char reason[IPC_DB_REASON]; /* why it is down, NUL-terminated */
};

struct ipc_worker_stats {
	/* owned by the master */
	_Atomic int32_t pid;        /* 0 when the slot is empty */
	_Atomic uint32_t restarts;  /* times this slot was respawned */
	_Atomic int64_t spawned_at; /* unix time of the last fork */
	_Atomic uint64_t cpu_reaped_us; /* user + system CPU of the slot's
				       earlier (reaped) workers, from
				       wait4: the CPU counter adds it so
				       that it survives a respawn */
	/* owned by the worker */
	_Atomic uint64_t config_gen;/* config generation the worker runs */
	_Atomic int64_t heartbeat_ms;   /* CLOCK_MONOTONIC ms of a loop turn
					   (updated at most every 100 ms) */
	_Atomic uint64_t connections;   /* gauge: open client connections */
	_Atomic uint64_t accepted;  /* connections accepted since the
				       worker started (reset at respawn:
				       the master's crash-loop rule) */
	_Atomic uint64_t accepted_total; /* accepted by every worker of
				       the slot (never reset) */
	_Atomic int64_t conns[IPC_LISTENER_MAX][IPC_TLS_MAX][2]; /* gauge:
				       open, by listener, TLS, authenticated */
	_Atomic uint64_t sessions;  /* gauge: bound resources */
	_Atomic uint64_t binds;     /* resources bound */
	_Atomic uint64_t logins[IPC_MECH_MAX];
	_Atomic uint64_t login_failures[IPC_MECH_MAX][IPC_SASL_REASON_MAX];
	_Atomic uint64_t stanzas_in[IPC_STANZA_KIND_MAX];
	_Atomic uint64_t stanzas_out[IPC_STANZA_KIND_MAX];
	_Atomic uint64_t stanza_errors[IPC_SERR_MAX];   /* error replies */
	_Atomic uint64_t bytes_in;
	_Atomic uint64_t bytes_out;
	_Atomic uint64_t errors;    /* stream errors sent, accept failures */
	_Atomic uint64_t frames_in; /* queue frames from other workers */
	_Atomic uint64_t frames_out;
	_Atomic uint64_t queue_depth;   /* gauge: frames waiting in outboxes */
	_Atomic uint64_t queue_bytes;   /* gauge: their bytes */
	_Atomic uint64_t queue_full;    /* frames refused: outbox full */
	_Atomic uint64_t offline_stored;
	_Atomic uint64_t offline_delivered;
	_Atomic uint64_t http_connections; /* gauge: open HTTP connections */
	_Atomic uint32_t tls_missing;   /* gauge: tls.certificate is set but
					   the worker has no TLS context (the
					   files did not load): not ready */
	_Atomic uint64_t http_responses[IPC_HTTP_STATUS_MAX]; /* by status */
	struct ipc_db_stats db;
	_Atomic uint32_t queue_dispatching; /* owned by the worker, kept
				       across respawns: 1 while it dispatches
				       a datagram not yet taken off its queue
				       (shm/queue.c) */
	_Atomic uint64_t csi_held;  /* XEP-0352: stanzas held while inactive */
	_Atomic uint64_t csi_spared;    /* writes they spared (csi.c) */
	_Atomic uint64_t mam_archived;  /* XEP-0313 rows written (mam.c) */
	_Atomic uint64_t mam_dropped;   /* rows not archived: mam.queue_rows
					   reached, out of memory, refused
					   by PostgreSQL */
	_Atomic uint64_t mam_waiting;   /* gauge: rows held in the worker */
	_Atomic uint64_t caps_queries;  /* XEP-0115 disco#info queries sent */
	_Atomic uint64_t caps_verified; /* answers whose hash matched */
	_Atomic uint64_t caps_mismatch; /* answers that did not: not cached */
	_Atomic uint64_t offline_nudges;    /* sessions told to read offline
					   storage again (offline.c) */
};

enum ipc_session_state {
	IPC_SESSION_FREE = 0,
	IPC_SESSION_USED = 0x55534544u,  /* "USED": written last on insert */
};

/* Per-session facts other workers route by (struct ipc_session.flags),
 * set by the owning worker under the table lock. */
enum ipc_session_flags {
	IPC_SESSION_F_CARBONS = 0x01,   /* XEP-0280 enabled */
	IPC_SESSION_F_SIBLING_CARBONS = 0x04,   /* another session of the
				       same bare JID has F_CARBONS: kept by
				       the table itself (shm/session.c) */
};

/* One session record.  Records are addressed by index; links are indices
 * (-1 = none), never pointers.  A full JID longer than IPC_JID_INLINE is
 * kept in the long-JID pool and jid_long is its index there.  What
 * `xmppctl sessions` shows beyond the routing fields (peer, TLS version,
 * mechanism) is written with the record; active is the one field written
 * without the table lock (by the owning worker, at most once a second). */
struct ipc_session {
	_Atomic uint32_t state;     /* enum ipc_session_state */
	int32_t next;               /* next record in the bucket chain */
	uint32_t hash;              /* hash of the bare JID */
	uint16_t jid_len;           /* full JID bytes */
	uint16_t bare_len;          /* bytes of its bare part */
	int32_t jid_long;           /* index in the long pool, or -1 */
	uint16_t slot;              /* owning worker slot */
	int16_t priority;           /* presence priority */
	uint8_t available;          /* has sent available presence */
	uint8_t flags;              /* enum ipc_session_flags */
	uint8_t node;               /* 0: this node's session; else another
				       node's (index in the node table):
				       slot is then the cluster bridge's */
	uint8_t rslot;              /* that node's worker slot (node 0: 0) */
	uint32_t conn_id;           /* connection id within the slot (of
				       rslot on node, for a remote entry) */
	uint32_t gen;               /* connection generation */
	_Atomic uint32_t caps;      /* (shm/caps.h entry + 1) << 16 | the
				       low 16 bits of the entry's gen; 0: no
				       caps.  One word: readers never see an
				       idx with another entry's gen
				       (caps.table_size <= 32768) */
	int64_t since;              /* unix time the session bound */
	_Atomic int64_t active;     /* unix time of the client's last bytes,
				       to the second */
	uint8_t peer_addr[16];      /* IPv4 (first 4 bytes) or IPv6 */
	uint16_t peer_port;         /* host order */
	uint8_t peer_family;        /* 0 unknown, 4 or 6 */
	uint8_t mech;               /* enum ipc_mech */
	uint16_t tls_version;       /* TLS protocol version (0x0304 = 1.3),
				       0: plain TCP */
	uint16_t caps_pad1;         /* unused (was caps_gen) */
	char jid[IPC_JID_INLINE];   /* full JID, NUL-terminated when inline */
};

struct ipc_session_long {
	int32_t next_free;
	char jid[IPC_JID_MAX + 1];
};

/* Header of the session table area. */
struct ipc_session_table {
	uint64_t magic;             /* IPC_SHM_MAGIC */
	uint32_t version;           /* IPC_VERSION */
	uint32_t capacity;          /* records */
	uint32_t long_capacity;     /* long-JID pool entries */
	uint32_t nbuckets;          /* power of two */
	pthread_mutex_t lock;       /* robust, process-shared */
	uint32_t used;              /* records in use */
	int32_t free_head;          /* free record list */
	int32_t long_free_head;     /* free long-JID list */
	uint32_t recoveries;        /* times rebuilt after a dead lock holder */
	_Atomic uint64_t local_changes; /* this node's sessions changed
				       (bound, ended, presence, carbons):
				       the cluster bridge scans only then */
	uint32_t log_size;          /* change log entries: a power of two,
				       0 without the cluster (no log) */
	uint32_t log_pad;
	_Atomic uint64_t log_head;  /* changes logged since init: entry
				       log_head - 1 is the latest */
	/* followed by: int32_t buckets[nbuckets];
	 *              struct ipc_session records[capacity];
	 *              struct ipc_session_long longs[long_capacity];
	 *              (8-aligned) _Atomic uint64_t log[log_size]; */
};

/* The change log (cluster only): a ring of the record indices whose
 * local session was entered, replaced, ended or changed presence or
 * carbons, appended under the table lock (one writer at a time) and
 * read without it by the cluster bridge, which then copies only those
 * records instead of the whole table.  An entry is one word, so a
 * reader never sees half of one: the record index in the low
 * IPC_SESSION_LOG_INDEX_BITS, above it the low bits of its position +
 * 1 in the log (its tag), so an entry already overwritten by a later
 * lap is told from the one the reader expected.  Remote entries
 * (written by the bridge itself) are not logged. */
#define IPC_SESSION_LOG_INDEX_BITS 22u

/* Open client connections of one address on one worker slot.  The
 * per-address limit sums an address's entries (at most one per slot, all
 * in one chain); the master drops a dead slot's entries with its
 * sessions.  Entries are addressed by index like session records. */
struct ipc_addr_entry {
	_Atomic uint32_t state;     /* enum ipc_session_state */
	int32_t next;               /* next entry in the bucket chain */
	uint32_t hash;              /* hash of family and key */
	uint32_t count;             /* open connections */
	uint16_t slot;              /* worker slot */
	uint8_t family;             /* 4, 6, or SHM_ADDR_DOMAIN (addr.h) */
	uint8_t pad[5];
	uint8_t key[8];             /* IPv4 address, IPv6 /64, domain hash */
};

/* Header of the address table area. */
struct ipc_addr_table {
	uint64_t magic;             /* IPC_SHM_MAGIC */
	uint32_t version;           /* IPC_VERSION */
	uint32_t capacity;          /* entries */
	uint32_t nbuckets;          /* power of two */
	uint32_t used;              /* entries in use */
	pthread_mutex_t lock;       /* robust, process-shared */
	int32_t free_head;          /* free entry list */
	uint32_t recoveries;        /* times rebuilt after a dead lock holder */
	/* followed by: int32_t buckets[nbuckets];
	 *              struct ipc_addr_entry entries[capacity]; */
};

/* ---- cluster node table (written by the cluster bridge only, read by
 * everyone; shm/cluster.h has the reader and writer helpers) ---------- */

#define IPC_NODE_NAME 36            /* cluster.node / cluster.name (32) + NUL,
				       rounded */
#define IPC_CLUSTER_URL 128         /* the NATS server URL we are on */

enum ipc_node_state {
	IPC_NODE_FREE = 0,          /* entry unused */
	IPC_NODE_SELF,              /* index 0: this node */
	IPC_NODE_UP,                /* heartbeats arrive */
	IPC_NODE_SUSPECT,           /* none for 2 heartbeat intervals */
	IPC_NODE_DOWN,              /* none for cluster.node_timeout, it
				       said it left, or our own link has been
				       down that long */
	IPC_NODE_INCOMPATIBLE,      /* another IPC_VERSION or cluster name */
	IPC_NODE_STATE_MAX
};

/* One node.  The bridge is the single writer: it makes `seq` odd, writes
 * the fields, then makes it even (a seqlock); readers copy the entry and
 * retry while seq was odd or moved (shm_cluster_read_node).  An index
 * stays the same node's (a node that comes back by the same name reuses
 * it), so session entries may store it, until the node has been down
 * for cluster.node_forget and nothing refers to it any more: then the
 * entry is FREE, and taken by another node only when the table is full
 * (cluster/table.c cluster_table_forget). */
struct ipc_cluster_node {
	_Atomic uint32_t seq;       /* seqlock: odd while being written */
	uint32_t state;             /* enum ipc_node_state */
	char name[IPC_NODE_NAME];   /* NUL-terminated; "" when FREE */
	uint32_t workers;           /* its worker count */
	uint64_t incarnation;       /* random per bridge start; 0: unknown */
	int64_t last_hb_ms;         /* CLOCK_MONOTONIC ms of its last
				       heartbeat (ours: of our last one sent) */
	uint64_t sessions;          /* its bound resources (its heartbeat) */
	uint64_t dir_seq;           /* its directory sequence (later slice) */
	uint32_t ipc_version;       /* what its heartbeat said */
	uint32_t restarts;          /* new incarnations seen of this name */
	uint64_t node_run;          /* its master's run (heartbeats) */
	/* stanza traffic with it (cluster/xfer.c), others' entries only */
	uint64_t kept_bytes;        /* sent, not acknowledged yet */
	uint64_t frames_out;        /* frames sent to it */
	uint64_t frames_in;         /* frames from it handed to workers */
	uint64_t resent;            /* times acks stalled and all was resent */
	uint64_t directory;         /* its sessions in our table */
};

/* The member list (cluster/members.h) as last read from the key-value
 * bucket: who owns what lives in one place (group chat rooms).  A
 * seqlock as a node entry (shm_cluster_read_members). */
struct ipc_cluster_members {
	_Atomic uint32_t seq;       /* seqlock: odd while being written */
	uint32_t n;                 /* members, names sorted */
	uint64_t epoch;             /* 0: no list read yet */
	int64_t read_ms;            /* CLOCK_MONOTONIC ms of that read */
	int64_t changed_ms;         /* ... of the first read of this epoch
				       (hand-over windows count from it) */
	char names[IPC_MAX_NODES][IPC_NODE_NAME];
	uint64_t incarnations[IPC_MAX_NODES];
};

/* This node's view of the cluster.  `enabled`, `name` and nodes[0].name
 * are filled by the master before forking; everything else by the
 * bridge (counters: relaxed, one writer, as the worker counters). */
struct ipc_cluster {
	uint32_t enabled;           /* cluster.servers is set */
	uint32_t pad0;
	uint64_t node_run;          /* random, drawn by the master at start:
				       the node's run, which outlives
				       bridge respawns (a bridge's own run
				       is its incarnation) */
	char name[IPC_NODE_NAME];   /* cluster.name */
	_Atomic uint32_t link_up;   /* gauge: our NATS connection is up */
	_Atomic uint32_t url_seq;   /* seqlock of server[] */
	char server[IPC_CLUSTER_URL];   /* URL connected to (last one) */
	_Atomic int64_t link_down_ms;   /* CLOCK_MONOTONIC ms the link went
				       down (or the bridge started); 0 up */
	_Atomic uint64_t reconnects;    /* times the link came back */
	_Atomic uint64_t heartbeats_in; /* valid heartbeats of other nodes */
	_Atomic uint64_t heartbeats_bad;/* refused: malformed, unsigned, or
				       too much */
	_Atomic uint64_t msgs_refused;  /* routing messages not signed with
				       the cluster's key (lib/secret.h) */
	_Atomic uint64_t msgs_in, msgs_out;   /* NATS messages */
	_Atomic uint64_t bytes_in, bytes_out; /* their payload bytes */
	_Atomic uint32_t nnodes;    /* entries ever used (high-water mark) */
	uint32_t pad1;
	struct ipc_cluster_node nodes[IPC_MAX_NODES];
	/* Ownership (cluster/kv.c, the bridge's key-value thread, is the
	 * only writer; docs/DESIGN.md "Cluster"): */
	_Atomic int64_t lease_ms;   /* CLOCK_MONOTONIC ms at which our last
				       successful lease renewal was sent;
				       0: never.  We act as an owner only
				       while now - lease_ms < cluster.
				       lease_time (shm_cluster_owner_ok) */
	_Atomic uint32_t owner_ok;  /* gauge: that held at the last check
				       (status and metrics; workers decide
				       on lease_ms, so a stuck thread
				       cannot leave it true) */
	_Atomic uint32_t kv_up;     /* gauge: the bucket answered last time */
	_Atomic uint64_t kv_errors; /* key-value calls that failed */
	_Atomic uint64_t epoch_changes; /* member lists we wrote (coordinator) */
	/* How the bridge learns this node's session changes (cluster/
	 * dirfeed.c): full walks of the table, change-log entries read,
	 * and walks because the log lost changes (cluster.change_log too
	 * small for a burst); snapshot parts from other nodes dropped
	 * (over cluster.snapshot_queue).  Counters of the bridge's run. */
	_Atomic uint64_t dir_walks, dir_logged, dir_lapped;
	_Atomic uint64_t snap_dropped;
	struct ipc_cluster_members members;
};

/* The whole region the master maps before forking. */
struct ipc_shm_header {
	uint64_t magic;             /* IPC_SHM_MAGIC */
	uint32_t version;           /* IPC_VERSION */
	uint32_t nslots;            /* slots in use: the workers, then the
				       cluster bridge when the cluster is on */
	uint64_t size;              /* bytes of the whole mapping */
	int64_t master_started;     /* unix time */
	_Atomic int32_t master_pid;
	_Atomic uint64_t config_gen;    /* master's current generation */
	uint32_t nworkers;          /* worker slots: 0 .. nworkers-1; slot
				       nworkers is the bridge when nslots is
				       nworkers + 1 */
	uint32_t pad0;
	struct ipc_worker_stats workers[IPC_MAX_SLOTS];
	struct ipc_cluster cluster;
	/* followed (64-byte aligned) by struct ipc_session_table, then
	 * (64-byte aligned) by struct ipc_addr_table */
};

/* ---- login throttle table (a second mapping, shm/throttle.c) ---------- */

#define IPC_THROTTLE_MAGIC 0x584d505054485254ull   /* "XMPPTHRT" */
#define IPC_THROTTLE_PROBE 8u       /* slots a key may live in */
#define IPC_THROTTLE_LABEL 48u      /* address prefix or bare JID, for logs */

enum ipc_throttle_kind {
	IPC_THROTTLE_FREE = 0,
	IPC_THROTTLE_ADDRESS = 1,   /* an IPv4 address or an IPv6 /64 */
	IPC_THROTTLE_ACCOUNT = 2,   /* a bare JID */
	IPC_THROTTLE_PAIR = 3,      /* one address guessing at one bare JID */
};

/* Failures of one source address or account.  Times are CLOCK_MONOTONIC
 * milliseconds (one clock for every process on the machine).  Records
 * are independent: a holder killed mid-update leaves at worst one
 * record with an off-by-one count, never a broken structure. */
struct ipc_throttle_rec {
	uint64_t key;               /* keyed SipHash of kind + address/JID */
	uint32_t kind;              /* enum ipc_throttle_kind */
	uint32_t failures;          /* counted since window_start */
	int64_t window_start;       /* first failure of the current window */
	int64_t last;               /* latest failure */
	int64_t blocked_until;      /* banned/throttled until; 0: not */
	char label[IPC_THROTTLE_LABEL]; /* NUL-terminated, maybe truncated */
};

struct ipc_throttle_table {
	uint64_t magic;             /* IPC_THROTTLE_MAGIC */
	uint32_t version;           /* IPC_VERSION */
	uint32_t capacity;          /* records, a power of two */
	pthread_mutex_t lock;       /* robust, process-shared */
	uint8_t secret[16];         /* SipHash key: addresses cannot aim
				       at one probe window */
	uint32_t used;              /* records not FREE */
	uint32_t recoveries;        /* times a lock holder died */
	uint64_t evictions;         /* counters dropped to make room */
	uint64_t refused;           /* keys not counted: window all bans */
	/* followed by struct ipc_throttle_rec records[capacity] */
};

/* ---- XEP-0198 journal (a third mapping, shm/smstore.c, API in
 * shm/smstore.h) ------------------------------------------------------ */

#define IPC_SM_MAGIC 0x584d5050534d4a4eull   /* "XMPPSMJN" */
#define IPC_SM_BLOCK 256u           /* bytes of one pool block */
#define IPC_SM_BLOCK_DATA (IPC_SM_BLOCK - 12u)  /* its payload */
#define IPC_SM_TOKEN 16u            /* random bytes of a previd */
#define IPC_SM_EXT_WORDS 32u        /* saved words: ext.h EXT_MAX */

enum ipc_sm_block_flags {
	IPC_SM_BLOCK_F_LAST = 0x01, /* last block of a stanza (or presence) */
};

/* A pool block.  A stanza is a chain of blocks, the last one flagged;
 * a journal is its stanzas' chains linked one after the other.  A chain
 * is walked by count (the record's published `unacked`), never to a -1:
 * the last published block's `next` may already point at blocks of an
 * append that was not published (then recovery frees them). */
struct ipc_sm_block {
	int32_t next;               /* next block of the journal, -1 none;
				       free blocks: next free block */
	uint16_t len;               /* payload bytes in this block */
	uint16_t flags;             /* enum ipc_sm_block_flags */
	/* a stanza's first block: the settlement token of the frame from
	 * another node it came in (worker/settle.h), so that a worker
	 * adopting the journal after a crash holds that frame on; 0 none */
	uint32_t token;
	char data[IPC_SM_BLOCK_DATA];
};
_Static_assert(sizeof(struct ipc_sm_block) == IPC_SM_BLOCK, "sm block");

/* The part of a record that changes with stanzas, acks and presence.
 * A record holds two; the writer fills the one not published, then
 * flips `cur` with a release store, so a reader (or a worker killed
 * mid-change) always sees one whole version. */
struct ipc_sm_pub {
	int32_t head;               /* first block of the oldest unacked
				       stanza, -1 none */
	int32_t tail;               /* last block of the newest, -1 none */
	uint32_t unacked;           /* stanzas in the journal */
	uint32_t h_acked;           /* last h the client acknowledged; the
				       stanzas are h_acked + 1 .. (mod 2^32) */
	uint64_t bytes;             /* stanza bytes in the journal */
	int32_t presence;           /* first block of the last available
				       presence, -1 none */
	uint32_t presence_len;
	int16_t priority;
	uint8_t available;
	uint8_t pad[5];
};

/* One session record (struct sm_state in smstore.h is its copy).  The
 * slot's worker is the only writer; `state` (enum sm_record_state in
 * smstore.h) is stored last when a record is opened and first when it
 * is closed, with release; readers acquire it. */
struct ipc_sm_record {
	_Atomic uint32_t state;     /* enum sm_record_state, 0 = FREE */
	_Atomic uint32_t seq;       /* use count: +1 at each open */
	_Atomic uint32_t cur;       /* index of the published pub[] */
	_Atomic uint32_t h_in;      /* stanzas handled from the client */
	_Atomic uint64_t ids;       /* conn_id | (uint64_t)gen << 32 */
	_Atomic int64_t detached_ms;/* CLOCK_MONOTONIC ms, 0 attached */
	int32_t next_free;          /* free record list (writer only) */
	uint8_t resumable;
	_Atomic uint8_t mech;       /* enum ipc_mech */
	uint16_t jid_len;
	uint32_t max_s;             /* resumption timeout agreed (s) */
	uint8_t token[IPC_SM_TOKEN];/* must match the previd's */
	_Atomic uint32_t hnext;     /* next record (index + 1, 0 none) in
				       its slot's token bucket */
	uint32_t id_index, id_seq;  /* the previd names this record, or the
				       one the session had first (moved) */
	uint16_t id_slot;
	uint8_t pad[6];
	_Atomic uint32_t ext_words[IPC_SM_EXT_WORDS]; /* by ext_all index */
	struct ipc_sm_pub pub[2];
	char jid[IPC_JID_MAX + 1];  /* full JID, NUL-terminated */
};

/* Per worker slot.  Free lists and high-water marks are the writer's;
 * records and blocks above a high-water mark were never used (still
 * zero: the mapping costs nothing until used).  Gauges are relaxed. */
struct ipc_sm_slot {
	_Atomic uint32_t rec_hwm;   /* records ever handed out */
	int32_t rec_free;           /* free record list, -1 none */
	_Atomic uint32_t blk_hwm;   /* blocks ever handed out */
	int32_t blk_free;           /* free block list, -1 none */
	_Atomic uint32_t records_used;  /* gauge */
	_Atomic uint32_t blocks_used;   /* gauge */
	_Atomic uint32_t changes;   /* bumped at each open, close, state or
				       ids change (the master's cache) */
	_Atomic uint32_t recoveries;    /* smstore_recover_slot runs */
	uint64_t offset;            /* of its token buckets from the area
				       start; its records follow, then its
				       blocks, each 64-byte aligned */
	uint8_t pad[24];
};
_Static_assert(sizeof(struct ipc_sm_slot) == 64, "sm slot header");

/* Header of the journal area. */
struct ipc_sm_area {
	uint64_t magic;             /* IPC_SM_MAGIC */
	uint32_t version;           /* IPC_VERSION */
	uint32_t nslots;
	uint32_t records;           /* per slot */
	uint32_t blocks;            /* per slot */
	uint64_t size;              /* bytes of the whole area */
	uint64_t records_offset;    /* of a slot's records from its buckets */
	uint64_t blocks_offset;     /* of a slot's blocks from its buckets */
	uint64_t slot_size;         /* bytes of one slot's buckets, records
				       and blocks */
	uint32_t nbuckets;          /* token buckets per slot (power of 2):
				       uint32 record index + 1, 0 none; a
				       record handed over keeps its previd,
				       so smstore_find looks a token up in
				       every slot */
	_Atomic uint32_t max_stanzas;   /* per-session bounds, written by the */
	_Atomic uint64_t max_bytes;     /* master (sm.max_unacked_*) */
	uint8_t pad[56];
	struct ipc_sm_slot slots[IPC_MAX_SLOTS];
	/* followed by each slot's buckets, records and blocks (slot_size
	 * apart) */
};
_Static_assert(sizeof(struct ipc_sm_area) % 64 == 0, "sm area header");

/* ---- federation: server dialback between workers (XEP-0220) ----
 * The worker holding an incoming stream that received
 * <db:result from=O to=R>KEY</db:result> asks the owner of the outgoing
 * link R -> O (s2s_owner_slot) to verify the key with O's authoritative
 * server: IPC_FRAME_S2S_VERIFY (header conn_id/gen 0).  The owner sends
 * <db:verify from=R to=O id=STREAM_ID>KEY</db:verify> and answers with
 * IPC_FRAME_S2S_VERIFIED to in_slot, header conn_id/gen = in_conn_id /
 * in_gen.  Strings are NUL-terminated. */
#define IPC_S2S_DOMAIN_MAX 255      /* a DNS name (253) and some */
#define IPC_S2S_ID_MAX 63           /* a stream id */
#define IPC_S2S_KEY_MAX 128         /* a dialback key */

struct ipc_s2s_verify {
	uint32_t in_conn_id;        /* the incoming stream that asks */
	uint32_t in_gen;
	uint16_t in_slot;           /* its worker */
	uint16_t reserved;          /* 0 */
	char local[IPC_S2S_DOMAIN_MAX + 1];     /* R: our domain */
	char remote[IPC_S2S_DOMAIN_MAX + 1];    /* O: to verify with */
	char stream_id[IPC_S2S_ID_MAX + 1];     /* id of the incoming stream */
	char key[IPC_S2S_KEY_MAX + 1];
};

enum ipc_s2s_result {
	IPC_S2S_INVALID = 0,        /* <db:verify type='invalid'/> */
	IPC_S2S_VALID = 1,          /* <db:verify type='valid'/> */
	IPC_S2S_ERROR = 2,          /* O could not be asked: condition says
				       why (XEP-0220 section 2.4) */
};

struct ipc_s2s_verified {
	uint32_t in_conn_id;
	uint32_t in_gen;
	uint32_t result;            /* enum ipc_s2s_result */
	char local[IPC_S2S_DOMAIN_MAX + 1];     /* R, as asked */
	char remote[IPC_S2S_DOMAIN_MAX + 1];    /* O, as asked */
	char condition[48];         /* IPC_S2S_ERROR: a stanza error
				       condition, e.g. remote-server-not-
				       found, remote-server-timeout,
				       remote-connection-failed */
};
/* ---- XEP-0198 hand-over frames (worker/sm.c writes them; shm/smwire.c
 * decodes and encodes them, checked by fuzz/fuzz_sm.c) -----------------
 *
 * Host order, packed as laid out (no padding: the asserts below).  A
 * decoder takes a payload only when every length in it adds up to the
 * payload's size exactly (smwire.h).
 *
 *   IPC_FRAME_SM_TAKE  to the record's slot; header conn_id/gen = N, the
 *       connection that sent <resume/>.  struct ipc_sm_take, then id_len
 *       bytes of the previd (1 .. SMSTORE_ID_MAX - 1) and bare_len bytes
 *       of N's bare JID (1 .. IPC_JID_MAX, no NUL).
 *   IPC_FRAME_SM_GIVE  the answer, to the taker's slot; header conn_id/gen
 *       = N.  struct ipc_sm_give; status other than IPC_SM_GIVE_OK: that
 *       alone.  IPC_SM_GIVE_OK: then jid_len bytes of the full JID (no
 *       NUL), presence_len bytes of the last available presence,
 *       ndirected times (uint16 length, bytes) of directed presence, and
 *       nstanzas times (uint32 length, bytes): the journal from h_acked
 *       + 1, in order.  At most IPC_FRAME_MAX bytes: a session whose
 *       journal does not fit is not moved (IPC_SM_GIVE_TOO_BIG).
 *   IPC_FRAME_SM_DONE  to the old owner; header conn_id/gen = O (the
 *       session's old connection, old_id/old_gen of the GIVE): no
 *       payload.  The old owner frees the record it kept GIVEN.
 */
enum ipc_sm_give_status {
	IPC_SM_GIVE_OK = 0,
	IPC_SM_GIVE_NOT_FOUND,      /* unknown, expired, someone else's */
	IPC_SM_GIVE_TOO_HIGH,       /* the client's h is beyond h_sent:
				       h_sent says how many were sent */
	IPC_SM_GIVE_TOO_BIG,        /* the journal does not fit a frame:
				       h_in is the server's count */
	IPC_SM_GIVE_STATUS_MAX
};

struct ipc_sm_take {
	uint32_t h;                 /* the client's h on <resume/> */
	uint16_t id_len;            /* previd bytes that follow */
	uint16_t bare_len;          /* then N's bare JID bytes */
};
_Static_assert(sizeof(struct ipc_sm_take) == 8, "sm take");

struct ipc_sm_give {
	uint32_t status;            /* enum ipc_sm_give_status */
	uint32_t old_id, old_gen;   /* O, for SM_DONE */
	uint32_t h_in, h_acked, h_sent; /* protocol counters (mod 2^32) */
	uint32_t max_s;             /* resumption timeout agreed (s) */
	int16_t priority;           /* of the last available presence */
	uint8_t available;          /* 0 or 1 */
	uint8_t mech;               /* enum ipc_mech */
	int64_t since;              /* session-table binding time */
	uint32_t words[IPC_SM_EXT_WORDS]; /* extensions' saved words, by
				       ext_all index (the sm one: base) */
	uint32_t jid_len;           /* bytes that follow, in this order */
	uint32_t presence_len;
	uint32_t ndirected;         /* directed presences that follow */
	uint32_t nstanzas;          /* journal stanzas that follow */
};
_Static_assert(sizeof(struct ipc_sm_give) == 184, "sm give");

/* ---- entity capabilities cache (shm/caps.c; issue 13) ---------------- */

/* A fourth mapping made by the master before forking: one record per
 * (algorithm, ver) of XEP-0115 / XEP-0390, with the keyed 64-bit
 * hashes of its +notify node names.  Writers hold the robust mutex;
 * readers take no lock: each record has a seqlock (seq odd while it is
 * written).  Records stand alone, so a dead lock holder leaves at most
 * one record half-written with an odd seq, which the next locker
 * clears. */
#define IPC_CAPS_MAGIC 0x584d505043415053ull      /* "XMPPCAPS" */
#define IPC_CAPS_PROBE 16u          /* slots a key may live in */
#define IPC_CAPS_VER_MAX 128u       /* base64 hash; SHA-512 is 88 */
#define IPC_CAPS_NOTIFY_MAX 128u    /* +notify names kept per entry */

enum ipc_caps_state {
	IPC_CAPS_FREE = 0,
	IPC_CAPS_PENDING,           /* a disco#info query is out */
	IPC_CAPS_VERIFIED,          /* never changes until evicted */
	IPC_CAPS_INVALID,           /* an answer did not match: the next
				       client is asked; the liar only
				       after 10x caps.query_timeout */
};

struct ipc_caps_rec {
	_Atomic uint32_t seq;       /* seqlock: odd while written */
	uint32_t state;             /* enum ipc_caps_state */
	uint32_t gen;               /* bumped each time the slot is taken */
	uint8_t algo;               /* enum caps_algo (worker/caps.h) */
	uint8_t v2;                 /* XEP-0390 */
	uint16_t nnotify;
	uint32_t refs;              /* sessions holding the entry (locked;
				       shm_caps_ref/unref): 0 = evictable */
	uint32_t refs_pad;
	uint64_t key;               /* keyed hash of (algo, v2, ver) */
	int64_t since_ms;           /* PENDING/INVALID: when it became so */
	_Atomic int64_t last_used;  /* ms; LRU eviction */
	char ver[IPC_CAPS_VER_MAX + 8];
	uint64_t notify[IPC_CAPS_NOTIFY_MAX];
};

struct ipc_caps_table {
	uint64_t magic;             /* IPC_CAPS_MAGIC */
	uint32_t version;           /* IPC_VERSION */
	uint32_t capacity;          /* records, a power of two */
	uint64_t node_key;          /* key of node-name hashes (random) */
	pthread_mutex_t lock;       /* robust, process-shared */
	uint32_t used;
	uint32_t recoveries;        /* dead lock holders seen */
	_Atomic uint64_t verified_epoch; /* bumped by each VERIFIED */
	_Atomic uint64_t evictions;
	uint64_t full;              /* inserts refused: window busy */
};

#endif

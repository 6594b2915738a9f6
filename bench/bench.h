/*
 * bench.h - xmppd-bench, the load tool: shared types of its modules.  The
 * parent (parent.c) forks -P workers (child.c), each one epoll loop over
 * many client state machines (client.c); they talk over a socketpair with
 * the frames of wire.c.  Standalone: links only OpenSSL and libm, not
 * libxmppd, so that it can run on a machine without the server's deps.
 * Failure policy: setup errors are fatal (message, exit 2); a client's
 * failure is counted, never printed per client.
 */
#ifndef XMPPD_BENCH_H
#define XMPPD_BENCH_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <openssl/ssl.h>

enum bench_mech {
	BENCH_MECH_PLAIN = 0,
	BENCH_MECH_SCRAM_SHA1,
	BENCH_MECH_SCRAM_SHA256,
};

#define BENCH_MAX_PIDS 64
#define BENCH_MAX_WATCH 4
#define BENCH_WATCH_NAME_MAX 16

/* --watch NAME=P,..: other processes (another cluster node, the message
 * bus) sampled at the server's sample points, their figures apart */
struct bench_watch {
	char name[BENCH_WATCH_NAME_MAX + 1];    /* [a-z0-9_], in the keys */
	pid_t pids[BENCH_MAX_PIDS];             /* their children are added */
	unsigned npids;
};
#define BENCH_RESOURCE "bench"

struct bench_opts {
	const char *host;
	unsigned port;                  /* 0: 5222, or 5223 with direct_tls */
	const char *domain;
	const char *user_pattern;       /* printf format with one %d */
	unsigned first;                 /* account number of client 0 */
	const char *password;
	unsigned clients;
	double connect_rate;            /* logins started per second, total */
	unsigned max_pending;           /* logins in flight per process */
	double msg_rate;                /* messages per second, total */
	double duration;                /* seconds of messages */
	unsigned body_size;             /* bytes of <body/> text */
	enum bench_mech mech;
	bool direct_tls;
	unsigned processes;
	unsigned sources;               /* 0: kernel's choice of source */
	const char *server_pid_file;
	pid_t server_pids[BENCH_MAX_PIDS];
	unsigned n_server_pids;
	double idle_hold;               /* > 0: no messages, hold idle */
	bool login_only;
	unsigned drop_clients;          /* close these streams at half time */
	const char *lost_file;          /* write each lost message here */
	double login_timeout;
	double drain;                   /* longest wait for stragglers */
	double quiet;                   /* no delivery this long ends drain */
	double settle;                  /* pause after the logins */
	bool sm;                        /* XEP-0198: <enable resume='true'/> */
	bool storm;                     /* reconnect storm (implies sm) */
	double storm_hold;              /* seconds detached before resuming */
	double resume_rate;             /* resumptions started per second */
	bool drop_at_enable;            /* the storm: reset at <enabled/> */
	bool csi;                       /* XEP-0352: even clients go inactive */
	double mix_presence;            /* share of sends: directed presence */
	double mix_chatstate;           /* share of sends: chat state, no body */
	/* --pairs: client i < clients/2 sends only to client i + clients/2
	 * (its partner), who only receives; with --partner-* the partners
	 * log in to another server for another domain (federation) */
	bool pairs;
	const char *partner_host;       /* NULL: --host */
	unsigned partner_port;          /* 0: --port */
	const char *partner_domain;     /* NULL: --domain */
	pid_t partner_pids[BENCH_MAX_PIDS];     /* the partner server */
	unsigned n_partner_pids;
	struct bench_watch watch[BENCH_MAX_WATCH];
	unsigned n_watch;
	/* --pep K (pep.c): a presence-time PEP burst over a ring of K
	 * mutual contacts; pep_setup: this run is the untimed roster pass */
	unsigned pep_k;                 /* 0: off */
	enum bench_pep_phase {
		BENCH_PEP_BOTH = 0, BENCH_PEP_SETUP, BENCH_PEP_BURST,
	} pep_phase;
	bool pep_setup;
	double pep_setup_timeout;       /* longest roster pass */
	char pep_ver[64];               /* our XEP-0115 ver (base64 SHA-1) */
	/* --muc-rooms R (muc.c): group chat.  The first clients - K are
	 * occupants, client i in room i % R; the last K (--history-joiners)
	 * join after the messages with <history maxstanzas=N/> */
	unsigned muc_rooms;             /* 0: off */
	const char *muc_service;        /* NULL: conference.<domain> */
	double join_rate;               /* joins started per second, total */
	unsigned history_joiners;       /* K */
	unsigned history_stanzas;       /* N */
	double history_join_rate;       /* their joins per second, total */
	double join_timeout;            /* a slower join fails */

	/* derived before the fork */
	uint32_t run_id;                /* in every message: tells ours from
					 * an earlier run's offline copies */
	struct sockaddr_storage addr;
	socklen_t addr_len;
	struct sockaddr_storage partner_addr;   /* = addr without --partner-* */
	socklen_t partner_addr_len;
};

/* --muc-rooms: the clients that join before the messages. */
static inline uint32_t bench_muc_occupants(const struct bench_opts *o)
{
	return o->clients - o->history_joiners;
}

/* --muc-rooms: the room of client i (occupant or history joiner). */
static inline uint32_t bench_muc_room(const struct bench_opts *o, uint32_t i)
{
	return i % o->muc_rooms;
}

/* --pairs: is client index i a partner (second half: receives only)? */
static inline bool bench_is_partner(const struct bench_opts *o, uint32_t i)
{
	return o->pairs && i >= o->clients / 2;
}

/* The domain client index i logs in to (its JID's domain). */
static inline const char *bench_domain(const struct bench_opts *o,
				       uint32_t i)
{
	return bench_is_partner(o, i) ? o->partner_domain : o->domain;
}

/* ---- hist.c: log-linear latency histogram in microseconds ---------- */
#define HIST_SUB_BITS 7                 /* 128 per octave: < 0.8 % error */
#define HIST_MAX_MSB 40                 /* values capped at 2^41 us */
#define HIST_BUCKETS ((HIST_MAX_MSB - HIST_SUB_BITS + 2) << HIST_SUB_BITS)

struct hist {
	uint64_t count;
	uint64_t max;                   /* exact, not bucketed */
	uint32_t b[HIST_BUCKETS];
};

void hist_add(struct hist *h, uint64_t v);
void hist_merge(struct hist *into, const struct hist *h);
/* The value at quantile q (0..1); 0 for an empty histogram. */
uint64_t hist_quantile(const struct hist *h, double q);

/* ---- counters a worker reports ------------------------------------- */
struct bench_counters {
	uint64_t established;
	uint64_t fail_connect, fail_tls, fail_auth, fail_bind, fail_closed,
		 fail_timeout;
	uint64_t disconnected;          /* online, then closed by the server */
	uint64_t stream_errors;
	uint64_t dropped;               /* --drop-clients streams closed */
	uint64_t sent, skipped;         /* skipped: sender's output was full */
	uint64_t received, errored;     /* raw, duplicates included */
	uint64_t misrouted;             /* arrived at the wrong client */
	uint64_t malformed;             /* a <message/> we could not read */
	uint64_t stale;                 /* another run's (offline storage) */
	/* XEP-0198 and the reconnect storm */
	uint64_t fail_sm;               /* no <enabled resume/> after bind */
	uint64_t sm_enabled;            /* <enabled/> with an id and resume */
	uint64_t acks_sent;             /* <a/> answering the server's <r/> */
	uint64_t storm_dropped;         /* streams reset by the storm */
	uint64_t resumed;               /* <resumed/> */
	uint64_t resume_failed;         /* <failed/> to <resume/> */
	uint64_t resume_error;          /* connect/TLS/auth/closed/timeout */
	uint64_t resume_h_mismatch;     /* <resumed h/> != what we sent */
	/* XEP-0352: what reached active [0] and inactive [1] clients */
	uint64_t csi_clients[2];
	uint64_t csi_wakeups[2];        /* readiness events that read data */
	uint64_t csi_records[2];        /* TLS records (SSL_read results) */
	uint64_t csi_stanzas[2];
	uint64_t csi_bytes[2];
	uint64_t csi_flush_wakeups, csi_flush_stanzas;  /* after <active/> */
	uint64_t presence_sent, chatstate_sent;
	/* --pep: the burst (events are devicelist notifications) */
	uint64_t pep_expected;          /* online clients x (K + 1) */
	uint64_t pep_pairs;             /* (recipient, publisher) first seen */
	uint64_t pep_missing;           /* expected, never seen (at STOP) */
	uint64_t pep_dups;              /* this run's item seen again */
	uint64_t pep_live, pep_last;    /* pairs: published after the
					 * recipient's presence, or before */
	uint64_t pep_events;            /* every pubsub#event message */
	uint64_t pep_stale;             /* an earlier run's item */
	uint64_t pep_unexpected;        /* from a non-contact */
	uint64_t pep_other;             /* another node, no device */
	uint64_t pep_pub_due;           /* 2 per client online */
	uint64_t pep_pub_sent, pep_pub_ok, pep_pub_err;
	uint64_t pep_disco;             /* disco#info queries answered */
	uint64_t pep_own_late;          /* published without own devicelist */
	/* --pep: the roster pass */
	uint64_t pep_setup_done;        /* clients with K 'both' contacts */
	uint64_t pep_sub_sent, pep_subd_sent, pep_roster_pushes;
	uint64_t pep_setup_pub_failed;  /* gave up after the retries */
	uint64_t pep_refetch;           /* roster asked again (incomplete) */
	/* --muc-rooms: joins (occupants before the messages) */
	uint64_t muc_joins_started, muc_joined;
	uint64_t muc_join_errors;       /* <presence type='error'/> */
	uint64_t muc_join_timeouts;     /* no status 110 in --join-timeout */
	uint64_t muc_late_joins;        /* status 110 after that timeout */
	uint64_t muc_created;           /* status 201: a new room */
	uint64_t muc_instant_errors;    /* the instant-room form refused */
	uint64_t muc_presences;         /* other occupants' presence */
	uint64_t muc_subjects;          /* <subject/> messages */
	uint64_t muc_other;             /* groupchat without body/subject */
	/* --muc-rooms: deliveries each sender's messages are due (the
	 * room's members at GO) and those of bounced messages */
	uint64_t muc_expected, muc_err_deliveries;
	/* --history-joiners: joins with history after the messages */
	uint64_t muc_hist_started, muc_hist_joined, muc_hist_failed;
	uint64_t muc_hist_msgs;         /* delayed messages of this run */
	uint64_t muc_hist_wrong;        /* delayed: another room or run */
	uint64_t muc_delayed_live;      /* delayed, to an occupant */
	int64_t t_first_connect, t_last_login;  /* CLOCK_MONOTONIC ns */
	int64_t t_first_resume, t_last_resumed;
	int64_t t_last_rx;                      /* --muc-rooms: last delivery */
	uint64_t rss_start_kb, rss_online_kb;   /* this worker's own RSS */
};

/* ---- wire.c: parent <-> worker frames on a socketpair -------------- */
enum wire_type {
	WIRE_READY = 1,         /* w->p: counters, online bitmap of its range */
	WIRE_GO,                /* p->w: struct wire_go, online list */
	WIRE_PROGRESS,          /* w->p: struct wire_progress */
	WIRE_STOP,              /* p->w: report and close */
	WIRE_REPORT,            /* w->p: counters, hists, sent[], rx, err */
	WIRE_DROP,              /* p->w: reset every SM stream (the storm) */
	WIRE_RESUME,            /* p->w: resume every dropped stream */
	WIRE_JOIN,              /* p->w: uint32_t phase (muc.c) */
	WIRE_JOINED,            /* w->p: uint32_t phase, joined bitmap */
};

struct wire_go {
	int64_t t0;             /* messages start (CLOCK_MONOTONIC ns) */
	int64_t t_drop;         /* dropped clients close (0: none) */
	int64_t t_end;          /* messages stop */
	uint32_t n_online;      /* followed by n_online uint32_t, sorted */
	uint32_t n_drop;        /* the last n_drop of the online list */
	double rate;            /* this worker's share, messages/s */
};

struct wire_progress {
	uint64_t sent, answered;        /* answered: received + errored */
	uint32_t done;                  /* no more sends from this worker */
	uint32_t resume_done;           /* every dropped stream resolved */
	uint64_t resumed, resume_failed;        /* failed: <failed/> or error */
};

int wire_send(int fd, uint32_t type, const void *const *parts,
	      const size_t *lens, unsigned n);
/* Read one frame (blocking); *payload_r is malloc'd (NULL when empty).
 * Returns 0, or -1 on EOF/error. */
int wire_recv(int fd, uint32_t *type_r, void **payload_r, size_t *len_r);

/* ---- scram.c: SASL client side -------------------------------------- */
struct scram_client;            /* per login, freed after <success/> */

const char *scram_mech_name(enum bench_mech m);
/* Client-first message (gs2 header included), malloc'd state in *s_r. */
int scram_start(enum bench_mech m, const char *user, struct scram_client **s_r,
		char *out, size_t outsize);
/* Server-first in, client-final out (both raw, not base64). */
int scram_final(struct scram_client *s, const char *password,
		const char *server_first, size_t len, char *out,
		size_t outsize);
/* Checks the server's v= against what we expect; 0 when it matches. */
int scram_verify(const struct scram_client *s, const char *server_final,
		 size_t len);
void scram_free(struct scram_client **s);

int b64_encode(const void *in, size_t len, char *out, size_t outsize);
/* Returns the decoded length, or -1. */
int b64_decode(const char *in, size_t len, void *out, size_t outsize);

/* ---- xmlscan.c: top-level element splitter -------------------------- */
enum xs_kind {
	XS_MORE = 0,            /* incomplete: wait for more bytes */
	XS_OPEN,                /* <stream:stream ...> */
	XS_ELEMENT,             /* one complete top-level element */
	XS_CLOSE,               /* </stream:stream> */
	XS_ERROR,
};

struct xs_item {
	size_t start, len;      /* the element (or tag) within the input */
	size_t tag_len;         /* its start tag, '<' to '>' */
	size_t consumed;        /* bytes to drop, leading whitespace included */
};

enum xs_kind xmlscan_next(const char *p, size_t n, bool open,
			  struct xs_item *it);
/* Is the element named name (e.g. "success", "stream:features")? */
bool xmlscan_is(const char *el, size_t len, const char *name);
/* Attribute value of the start tag (not unescaped); length or -1. */
int xmlscan_attr(const char *tag, size_t tag_len, const char *name,
		 char *out, size_t outsize);
/* The text of the first element called name in el, el itself included
 * (not unescaped); NULL if absent or empty-element. */
const char *xmlscan_text(const char *el, size_t len, const char *name,
			       size_t *text_len_r);

/* ---- procstat.c: the server's memory and CPU from /proc ------------- */
struct server_sample {
	bool valid;
	unsigned nprocs;
	uint64_t rss_kb;        /* VmRSS summed over the processes */
	uint64_t pss_kb;        /* Pss summed (shared pages counted once) */
	uint64_t anon_kb;       /* Pss_Anon + Pss_Shmem summed: Pss without
				   file pages (program and library code,
				   shared with every other process that maps
				   them, so it moves with the machine's
				   other programs) */
	double cpu_s;           /* utime + stime summed */
	double sys_s;           /* stime alone: in the kernel */
};

/* The roots and all their descendants. */
int procstat_sample(const struct bench_opts *o, struct server_sample *out);
/* The same for the --partner-pids server. */
int procstat_sample_partner(const struct bench_opts *o,
			    struct server_sample *out);
/* The same for one --watch group. */
int procstat_sample_watch(const struct bench_watch *w,
			  struct server_sample *out);
uint64_t procstat_self_rss_kb(void);
/* utime + stime of one process (0 if gone). */
double procstat_pid_cpu_s(pid_t pid);

/* ---- pep.c: the --pep burst ---------------------------------------- */
/* Our disco#info identity and features, and their XEP-0115 ver. */
void pep_caps_ver(char *out, size_t size);
/* The bit of publisher j among client i's K contacts (K: itself), or -1. */
int pep_bit(const struct bench_opts *o, uint32_t i, uint32_t j);

/* ---- muc.c: --muc-rooms ------------------------------------------- */
enum muc_phase {
	MUC_PHASE_CREATORS = 0, /* the first occupant of each room */
	MUC_PHASE_OCCUPANTS,    /* the others, before the messages */
	MUC_PHASE_HISTORY,      /* --history-joiners, after them */
};

/* The phase client i joins in. */
enum muc_phase muc_phase_of(const struct bench_opts *o, uint32_t i);

/* ---- child.c: one worker process ------------------------------------ */
int child_run(const struct bench_opts *o, unsigned k, uint32_t lo,
	      uint32_t hi, int ctl);

/* ---- parent.c -------------------------------------------------------- */
int parent_run(const struct bench_opts *o);

/* ---- shared helpers (child.c) --------------------------------------- */
int64_t bench_now_ns(void);
/* Recipient of (sender, seq): a pure function of the online list (with
 * --pairs: the sender's partner), so that the parent can tell whom a
 * lost message was for. */
uint32_t bench_recipient(const struct bench_opts *o, const uint32_t *online,
			 uint32_t n_online, uint32_t sender, uint32_t seq);
void bench_fatal(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

#endif

/*
 * worker.h - one worker process: an epoll loop over its listening
 * sockets, its client connections, its queue, its master channel and the
 * master's dead-pipe.  Failure policy: a client's bad input ends only
 * that client's stream; a broken master channel or dead master ends the
 * worker (the master respawns it, or is gone).
 */
#ifndef XMPPD_WORKER_H
#define XMPPD_WORKER_H

#include <stdint.h>
#include <sys/socket.h>
#include "config.h"
#include "queue.h"
#include "shm.h"
#include "addr.h"
#include "buf.h"
#include "arena.h"
#include "xml.h"
#include "metrics.h"
#include "settle.h"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;
struct db;
struct pg_result;
struct sasl;

#define WORKER_MAX_LISTEN 16

/* What the master hands a freshly forked worker. */
struct worker_boot {
	unsigned slot;
	unsigned nslots;        /* queues: the workers, then the cluster
				   bridge when the cluster is on */
	unsigned nworkers;      /* worker slots 0 .. nworkers-1 */
	struct config *cfg;
	struct shm_region *shm;
	struct queue_set *queues;
	int channel;            /* SOCK_SEQPACKET to the master */
	int dead_fd;            /* read end of the master's dead-pipe */
	unsigned nlisten;
	int listen_fds[WORKER_MAX_LISTEN];
	int listen_tls[WORKER_MAX_LISTEN];  /* direct TLS listener */
	int listen_kind[WORKER_MAX_LISTEN]; /* enum listen_kind */
};

/* What a listening socket serves (master/listen.c binds them). */
enum listen_kind {
	LISTEN_C2S = 0,         /* clients, jabber:client */
	LISTEN_HTTP = 1,        /* the HTTP front (http.h) */
	LISTEN_S2S,             /* other servers, jabber:server (s2s.h) */
	LISTEN_COMPONENT,       /* XEP-0114 components (component.h) */
};

/* What a connection carries.  The stream machinery (conn.c, stream.c:
 * TLS, the parser, output, parking) is shared; the stream header, the
 * features and the first-level elements go to the kind's own code. */
enum conn_kind {
	CONN_C2S = 0,           /* a client */
	CONN_S2S_IN,            /* a server that connected to us (s2s.h) */
	CONN_S2S_OUT,           /* our connection to a server (s2s.h) */
	CONN_COMPONENT,         /* an external component (component.h) */
};

enum conn_state {
	CONN_STATE_HEADER = 1,  /* waiting for the client's stream header */
	CONN_STATE_OPEN,        /* stream open */
	CONN_STATE_CLOSING,     /* we sent </stream:stream>; flush, close */
};

#define NS_STREAMS "http://etherx.jabber.org/streams"
#define NS_CLIENT "jabber:client"
#define NS_SERVER "jabber:server"
#define NS_COMPONENT "jabber:component:accept"
#define NS_STREAM_ERR "urn:ietf:params:xml:ns:xmpp-streams"
#define NS_STANZA_ERR "urn:ietf:params:xml:ns:xmpp-stanzas"
#define NS_TLS "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_BIND "urn:ietf:params:xml:ns:xmpp-bind"
#define NS_SESSION "urn:ietf:params:xml:ns:xmpp-session"
#define NS_XML "http://www.w3.org/XML/1998/namespace"

struct worker;
struct http_conn;

/* A stored message put in a connection's out, removed from the store
 * once written (offline.c). */
struct csi_held;
struct offline_sent {
	long long id;
	uint64_t end;           /* out_total just past it */
	int taken;              /* taken back unwritten: it stays stored */
};

struct conn {
	struct conn *next, *prev;   /* worker's connection list */
	struct conn *hnext;         /* id hash chain */
	struct worker *w;
	int fd;
	uint32_t id;            /* unique within the slot */
	uint32_t gen;           /* slot generation (worker incarnation) */
	enum conn_state state;
	int direct_tls;
	uint8_t kind;           /* enum conn_kind */
	/* the cell of ipc_worker_stats.conns this connection is counted in
	 * (conn_metrics_move): TLS version, authenticated */
	uint8_t m_tls, m_auth, m_counted;
	int64_t deadline_ms;    /* close if no progress by then (0: none) */
	struct buf out;         /* pending writes, coalesced per loop turn */
	/* Where each piece given to conn_send ends, so that what a client
	 * left unread can be taken back and stored or bounced (conn.c).
	 * Offsets count every byte ever put in out; nothing is recorded
	 * while out holds one piece (the common case). */
	uint64_t out_total;     /* bytes ever put in out */
	uint64_t out_base;      /* start of the first piece in out */
	uint64_t *out_ends;     /* ends of the pieces in out but the last */
	unsigned out_nends, out_ends_cap;
	/* frames from other nodes in out (settle.h), keyed by their end
	 * offset: each done with once out is written past it */
	struct settle_list holds;
	int out_shed;           /* over c2s.max_output_bytes: closing, and
				 * what comes for it is routed elsewhere */
	struct XML_ParserStruct *parser;
	int depth;              /* element depth; 1 = inside stream */
	int stream_ns;          /* default namespace of the peer's stream
				   header: 0 none, 1 jabber:client,
				   2 jabber:server, 3 jabber:component:accept,
				   -1 other */
	int want_close;         /* close after the out buffer drains */
	int closed;             /* fd gone; freed at the end of the turn */
	int epollout;           /* EPOLLOUT currently requested */
	int header_sent;        /* our stream header went out */
	int64_t fed;            /* bytes given to the parser */
	int64_t stanza_start;   /* value of fed when the stanza began */
	int in_out_list;        /* queued for a flush this turn */
	struct conn *out_next;
	char peer[64];          /* "address:port" for the log */
	char addr[48];          /* peer address alone (throttling) */
	struct shm_addr_key addr_key;   /* counted per address (addr.h) */
	int addr_counted;       /* holds one count in shm addrs */
	char stream_to[256];    /* the client's `to`, our `from` */

	/* TLS */
	SSL *ssl;               /* OpenSSL: handshake, or TLS 1.2 */
	struct tls13 *t13;      /* our TLS 1.3 record layer (tls13.h) */
	int tls_handshaking;
	int tls_want_write;     /* OpenSSL needs the socket writable */
	int tls_failed;         /* a fatal TLS error: no close_notify */
	/* stream restarts (after TLS, after SASL) */
	int restart_pending;    /* new parser once this chunk is parsed */
	int64_t restart_offset; /* parser byte index where the new one starts */
	int64_t parser_base;    /* value of fed when the parser was made */
	int first_held;         /* the parser's first byte, read alone, */
	unsigned char first_byte;   /* waits for the second (UTF-16?) */
	/* stanza being parsed (arena allocated only while one is open) */
	struct arena *arena;
	struct xml_builder builder;
	/* An idle stream gives its parser back (expat holds ~10 KB): the
	 * client's stream header is kept and replayed into a new parser
	 * when bytes arrive again. */
	char *header_raw;       /* the client's stream start tag */
	size_t header_len;
	int64_t clean_at;       /* offset where nothing is half-parsed */
	int64_t tag_end;        /* offset just past the last start tag */
	int parked;             /* parser freed while idle */
	int replaying;          /* feeding header_raw to a new parser */
	/* authentication and session */
	struct sasl *sasl;      /* exchange in progress */
	unsigned sasl_failures;
	int authenticated;
	int bound;
	char *user;             /* localpart (nodeprepped) once authenticated */
	char *domain;           /* our domain for this stream */
	char *jid;              /* full JID once bound */
	int16_t priority;
	int available;
	uint8_t mech;           /* enum ipc_mech of the login (sasl.c) */
	int32_t sess_index;     /* session record while bound (bind_touch) */
	int64_t touched_ms;     /* last bind_touch that wrote the record */
	char *last_presence;    /* our last available presence, no 'to' */
	char **directed;        /* JIDs we sent directed presence to */
	unsigned ndirected;
	int64_t last_read_ms;   /* idle pings */
	int ping_sent;
	int64_t delay_until_ms; /* CONN_DELAY_SASL's deadline (conn_delay) */
	struct conn *delayed_next;  /* worker's delayed list */
	int in_parse;           /* inside XML_Parse (expat callbacks) */
	uint32_t ext_filter;    /* extensions filtering its stanzas (ext.h) */
	int detached;           /* fd gone, session kept (ext.h detach):
				   still bound, in the conn table */
	uint64_t out_journaled; /* out_total from which an extension keeps
				   every stanza (XEP-0198 journal, sm.c):
				   pieces after it are not taken back at a
				   close (the journal reroutes them once);
				   0: none */

	/* ---- per-session state of extensions (ext.h): each field is
	 * read and written only by the extension named, which frees it in
	 * its conn_free hook; the core never touches it. */
	/* roster.c */
	int roster_requested;   /* RFC 6121 2.1.6: an interested resource */
	/* offline.c: paced delivery, a batch at a time, the next one once
	 * out has drained, so a backlog never fills out. */
	int offline_fetching;   /* offline messages on their way */
	int offline_pending;    /* more may be stored: fetch once drained */
	int offline_again;      /* nudged during a fetch: one more after it */
	long long offline_after;    /* last stored id handled */
	unsigned offline_count;     /* delivered (for the log) */
	struct offline_sent *offline_sent;  /* rows put in out, not removed */
	unsigned offline_nsent, offline_sent_cap;
	/* blocking.c */
	char **blocked;         /* the account's XEP-0191 blocklist */
	unsigned nblocked;
	/* sm.c: XEP-0198 state, NULL until <enable/> or <resume/> */
	struct sm_conn *sm;
	/* mam.c: the stream offsets (after, up to] of the last archive
	 * query pages written to this session: results the connection
	 * never wrote are dropped (taken_back), not rerouted */
#define CONN_MAM_RANGES 4
	uint64_t mam_from[CONN_MAM_RANGES], mam_to[CONN_MAM_RANGES];
	unsigned mam_next;
	/* carbons.c */
	int carbons;            /* XEP-0280 enabled by this session */
	/* csi.c: XEP-0352, what waits while the client is inactive */
	int csi_inactive;
	struct csi_held *csi_held;  /* in arrival order; text NULL: gone */
	unsigned csi_nheld, csi_held_cap;   /* entries used, allocated */
	unsigned csi_live;          /* entries with text */
	size_t csi_bytes;           /* their bytes */
	/* caps_ext.c: XEP-0115 / XEP-0390 state, NULL without a <c/> */
	struct caps_conn *caps;
	/* pep_compat.c: XEP-0398, SHA-1 (hex) of the account's vCard PHOTO
	 * put in its available presence; "" none */
	char pep_avatar[41];

	/* ---- per-kind state (enum conn_kind), owned and freed by the
	 * kind's code */
	struct s2s_conn *s2s;       /* CONN_S2S_IN, CONN_S2S_OUT: s2s.c */
	struct comp_conn *comp;     /* CONN_COMPONENT: component.c */
	/* reading paced (CONN_DELAY_READ): the socket is not read until
	 * then (0: reading); the conn is on the worker's delayed list */
	int64_t read_paused_ms;
	int epoll_noin;         /* EPOLLIN currently off */
	/* where conn_delay keeps it: 0 nowhere, 1 w->delayed, 2 the list
	 * of due conns conn_run_delayed is running (conn.c) */
	uint8_t delay_list;
};

/* The stream is encrypted (by OpenSSL or by our TLS 1.3 records). */
static inline int conn_tls(const struct conn *c)
{
	return c->ssl != NULL || c->t13 != NULL;
}

struct worker {
	unsigned slot;
	struct config *cfg;
	struct shm_region *shm;
	struct ipc_worker_stats *stats;
	struct queue_set *queues;
	struct queue *q;
	int epfd;
	int channel;
	int dead_fd;
	unsigned nlisten;
	int listen_fds[WORKER_MAX_LISTEN];
	int listen_tls[WORKER_MAX_LISTEN];
	int listen_kind[WORKER_MAX_LISTEN];     /* enum listen_kind */
	unsigned nslots;        /* queue slots (nworkers, + 1: the cluster
				   bridge's, slot nworkers, when on) */
	unsigned nworkers;      /* worker processes: what owners hash
				   over (rooms, s2s links), what shares
				   http.max_connections */
	uint64_t settle_forced_logged;  /* settle.forced, logged */
	struct settle settle;   /* frames from other nodes not yet done
				   with (settle.h): told to the bridge at
				   each turn's end */
	struct worker_reann {   /* sessions whose presence goes again
				   (IPC_FRAME_REANNOUNCE), a few a turn */
		uint32_t conn_id, gen;
	} *reann;
	size_t reann_n, reann_pos;
	uint8_t reann_node;     /* the node they go to (0: every node) */
	struct http_conn *http_conns;   /* HTTP front's connections */
	unsigned http_nconns;
	int accept_paused;      /* EMFILE: listeners off until the timer */
	int64_t accept_resume_ms;
	int reserve_fd;         /* spare fd released to shed on EMFILE */
	uint32_t next_conn_id;
	uint32_t gen;
	struct conn *conns;
	struct conn *flush_list;
	struct conn *dead_list;     /* closed, freed at the end of the turn */
	/* stanzas taken back from connections, routed after the flush
	 * (conn_undelivered); bounded by what the connections held */
	struct buf undelivered;
	struct conn **conn_table;   /* id -> conn, chained */
	unsigned conn_table_size;   /* power of two */
	unsigned nconns;
	int stopping;
	int64_t stop_deadline_ms;   /* streams closed by then */
	/* stopping, streams closed: waiting for the database writes */
	int draining;
	int64_t drain_deadline_ms;  /* shutdown_drain_timeout */
	SSL_CTX *tls;           /* NULL: no usable certificate */
	struct db *db;
	struct conn *delayed;   /* conns waiting (conn_delay, conn.c) */
	int64_t now_ms;         /* loop turn's clock */
	SSL_CTX *tls_client;    /* outgoing s2s (tls.c); NULL: none */
	/* The message being routed to a local account carried XEP-0280
	 * <private/>, taken off before delivery (section 9) by route.c,
	 * before the message_to_account hooks, with or without the
	 * archive; the message_delivered hook makes no received copies of
	 * it (carbons.c).  Set for each such message, else NULL. */
	const struct xml_node *private_msg;
	struct s2s_dial_state *dial;    /* DNS and connecting: s2s_dial.c */
	/* stopping: the client streams are closed and the remote
	 * unavailable written to the links: s2s links and component
	 * streams are being closed too (worker.c) */
	int fed_closing;
};

_Noreturn void worker_main(struct worker_boot *boot);

/* accept4() a non-blocking connection from listener lfd: the fd, or -1
 * (out of descriptors or memory: the listeners pause for a moment). */
int worker_accept(struct worker *w, int lfd, struct sockaddr_storage *ss,
		  socklen_t *len);

/* conn.c */
/* Accept what is pending on a listener of kind (enum listen_kind:
 * LISTEN_C2S, LISTEN_S2S or LISTEN_COMPONENT). */
void conn_accept(struct worker *w, int lfd, int direct_tls, int kind);
/* A connection we opened (fd connected, non-blocking; peer "addr:port"
 * for the log), kind CONN_S2S_OUT, in the table and epoll like an
 * accepted one; NULL (fd closed) without memory. */
struct conn *conn_new_outgoing(struct worker *w, int fd, const char *peer);
void conn_handle(struct conn *c, uint32_t events);
/* Queue one piece (a stanza, or stream-level XML) for c.  Past
 * c2s.max_output_bytes unread the stream ends with <policy-violation/>
 * and every stanza not yet written is queued with conn_undelivered(). */
void conn_send(struct conn *c, const char *data, size_t len);
/* Write c's pending output at the end of this loop turn. */
void conn_want_flush(struct conn *c);
void conn_close(struct conn *c);
/* A detached conn (fd -1, ext.h detach) with the given id and
 * generation (an adopted session keeps its old ones), linked in the
 * worker's conn list and table; NULL without memory.  The caller makes
 * it bound (sm.c). */
struct conn *conn_new_detached(struct worker *w, uint32_t id, uint32_t gen);
/* The connection's TLS version (enum ipc_tls_version) or authentication
 * changed: move it to its cell of the connections gauge. */
void conn_metrics_move(struct conn *c, unsigned tls, unsigned auth);
void conn_flush(struct conn *c);
void conn_update_events(struct conn *c);
void conn_flush_all(struct worker *w);
/* A stanza that did not reach connection conn_id: queued, and routed
 * by conn_route_undelivered() (never inside conn_send/conn_close). */
/* The same for a stanza of a frame from another node that something
 * held (settle.h): the hold moves with it (h is cleared) until it is
 * routed again.  conn_undelivered holds the frame being routed now. */
void conn_undelivered_held(struct worker *w, uint32_t conn_id, uint32_t gen,
			   const char *data, size_t len,
			   struct settle_hold *h);
void conn_undelivered(struct worker *w, uint32_t conn_id, uint32_t gen,
		      const char *data, size_t len);
/* Route what was queued (route_undelivered); 1 when some is left for
 * the next loop turn. */
int conn_route_undelivered(struct worker *w);
void conn_timeouts(struct worker *w, int64_t now_ms);
void conn_shutdown_all(struct worker *w);
/* A conn waits on the worker's delayed list for up to two reasons, each
 * with its own deadline and its own action when it passes (conn.c has
 * the rule). */
enum conn_delay_why {
	CONN_DELAY_SASL,        /* a throttled SASL <failure/>: sasl_delayed() */
	CONN_DELAY_READ,        /* reading paced: the socket is read again */
};
/* Delay c for why until until_ms (again: the deadline moves).  READ
 * stops reading c's socket at once (TCP back-pressure: what the peer
 * sends waits in the kernel, then in its own buffers). */
void conn_delay(struct conn *c, int64_t until_ms, enum conn_delay_why why);
/* End both delays without their actions (the conn closes or detaches). */
void conn_undelay(struct conn *c);
/* Run the delays that are due (one loop turn's timers). */
void conn_run_delayed(struct worker *w, int64_t now_ms);
int conn_next_delay(const struct worker *w, int64_t now_ms);
void conn_reap_dead(struct worker *w);
void db_cancel_conn(struct conn *c);
struct conn *conn_lookup(struct worker *w, uint32_t id, uint32_t gen);
/* A database query on a session's behalf (a load at bind): cb gets the
 * conn back, or NULL when it closed (or its id went to another) before
 * the answer; res NULL and error on a failure.  0, or -1 (no database,
 * no memory, the queue full): cb is not called. */
struct pg_result;
typedef void conn_query_cb(struct conn *c, const struct pg_result *res,
			   const char *error);
int conn_query(struct conn *c, const char *sql, int nparams,
	       const char *const *params, conn_query_cb *cb);

/* stream.c */
int stream_init(struct conn *c);
void stream_free(struct conn *c);
int stream_feed(struct conn *c, const char *data, size_t len);
void stream_error(struct conn *c, const char *condition, const char *text);
/* The same with app (XML, may be NULL) after the condition, an
 * application-specific condition (RFC 6120 4.9.4). */
void stream_error_app(struct conn *c, const char *condition,
		      const char *text, const char *app);
/* Start a new stream after TLS or SASL (section 4.3.3). */
void stream_restart(struct conn *c);
int stream_hosted(const struct worker *w, const char *domain);
/* domain is in list (a setting: names separated by spaces, tabs or
 * commas), compared without case; a NULL list names nothing. */
int stream_domain_listed(const char *list, const char *domain);
/* Serialize a stanza/element onto the connection. */
void stream_send_node(struct conn *c, const struct xml_node *n);
void stream_starttls(struct conn *c);
/* Free the parser of a stream idle between stanzas; 1 if done. */
int stream_park(struct conn *c);

/* sasl.c */
void sasl_features(struct conn *c, struct buf *out);
void sasl_handle(struct conn *c, struct xml_node *n);
void sasl_free(struct conn *c);
void sasl_delayed(struct conn *c);      /* a throttle delay ended */
/* 1 when c's address is banned: the stream error is sent. */
int sasl_address_banned(struct conn *c);
/* 1 when c's address is banned: logged, nothing sent (direct TLS). */
int sasl_address_banned_tls(struct conn *c);
/* Master, before forking: the secret behind unknown users' stand-in
 * SCRAM salts, the same in every worker so that they cannot be told
 * apart from real accounts by asking two workers. */
void sasl_init_secret(void);
/* The same from the cluster's shared secret (lib/secret.h): every node
 * answers an unknown account's SCRAM exchange alike. */
void sasl_seed_secret(const unsigned char key[32]);
/* sm.c: in a cluster, the key of XEP-0198 previds from the cluster's
 * shared secret, so that a previd made on one node verifies on any
 * other (master, before forking; unset on a single node, whose previds
 * carry no node and no MAC). */
void sm_seed_secret(const unsigned char key[32]);

/* bind.c */
void bind_handle(struct conn *c, struct xml_node *n);
int bind_is_session_iq(const struct conn *c, const struct xml_node *n);
void bind_release(struct conn *c);
/* old (a session-table entry c just replaced) ends with <conflict/>,
 * here or on its worker. */
struct session_info;
void bind_kick(struct conn *c, const struct session_info *old);
/* Send a frame to session s wherever it lives: another local worker's
 * queue, or, for another node's session (s->node != 0), the cluster
 * bridge's queue (s->slot) with s->node and s->rslot in the header;
 * conn_id/gen are s's.  Every frame for a session record goes through
 * here.  0, or -1 with error (QUEUE_ERR_FULL: bounce, do not store). */
/* Send a frame to slot (node, rslot: through the bridge, else 0): a
 * frame from another node being routed is lent to a local worker
 * (settle.h).  0, or -1 with error. */
int worker_send_node(struct worker *w, unsigned slot, uint8_t node,
		     uint8_t rslot, uint8_t type, uint32_t conn_id,
		     uint32_t gen, const void *data, size_t len,
		     const char **error_r);
int worker_send_session(struct worker *w, const struct session_info *s,
			uint8_t type, const void *data, size_t len,
			const char **error_r);
/* Answer the sender of frame hdr: its slot, and when it came through
 * the cluster bridge, the node and worker it came from. */
int worker_send_reply(struct worker *w, const struct ipc_frame_header *hdr,
		      uint8_t type, uint32_t conn_id, uint32_t gen,
		      const void *data, size_t len, const char **error_r);
/* The client sent bytes: its session record's `active` second, written
 * at most once a second (conn.c's read path). */
void bind_touch_slow(struct conn *c);
static inline void bind_touch(struct conn *c)
{
	if (c->bound && c->w->now_ms - c->touched_ms >= 1000)
		bind_touch_slow(c);
}
/* IPC_CMD_KICK from the master (xmppctl kick, user del/passwd). */
void bind_admin_kick(struct worker *w, const void *payload, size_t len);

/* presence.c */
void presence_from_client(struct conn *c, struct xml_node *st);
/* The session went away while available (logout, lost connection). */
void presence_session_gone(struct conn *c);
/* The worker stops: each available session's unavailable to its
 * contacts and directed-presence recipients we do not host (remote
 * servers, components); local ones get nothing (disconnected too). */
void presence_stop_broadcast(struct worker *w);
/* Cluster (issue 15): node `node` (an index of the node table; 0: any)
 * had lost us and is back; the session's last presence goes again to
 * its contacts we host whose sessions are on that node, not to its own
 * resources nor to other servers: those on the node that was gone saw
 * it go unavailable, nobody else did (paced by the caller). */
void presence_reannounce(struct conn *c, uint8_t node);
/* Swept session of a dead worker: broadcast its unavailable presence. */
void presence_swept(struct worker *w, const char *full_jid);
/* Send conn's last presence to `to` (a probe answer). */
void presence_answer_probe(struct conn *c, const char *to);
void presence_answer_remote_probe(struct conn *c, const char *to,
				  const struct ipc_frame_header *hdr);

/* As if from_bare had sent `type` (unsubscribe, unsubscribed) to
 * to_bare: the contact side of RFC 6121 section 3 (roster removal). */
void presence_sub_inbound(struct worker *w, const char *from_bare,
			  const char *to_bare, const char *type);
void presence_route_text(struct worker *w, const char *text);

/* The account's available resources send unavailable to `to`. */
/* The account's available resources send their current presence to
 * `to` (XEP-0191 unblock), like answers to its probe. */
void presence_current_to(struct worker *w, const char *bare, const char *to);
void presence_unavailable_to(struct worker *w, const char *bare,
			     const char *to);
/* A presence stanza from another server (s2s_in.c; 'from' checked,
 * jabber:client namespace): subscription stanzas take the contact's
 * side of RFC 6121 section 3, probes are answered from the roster
 * (4.3.2), the rest is routed. */
void presence_from_remote(struct worker *w, struct arena *a,
			  struct xml_node *st);
/* route.c, for a presence stanza to a hosted account: a probe or a
 * subscription stanza whose 'from' (trusted) is on a domain we do not
 * host -- another server's or a component's -- takes the inbound paths
 * of RFC 6121 (3.1.3, 3.2.3, 3.3.3, 3.4.3, 4.3.2).  1 when taken. */
int presence_inbound(struct worker *w, struct arena *a, struct xml_node *st);

/* metrics.c: registers GET /metrics and GET /health (http_init calls
 * it with the other route owners). */
void metrics_http_routes(void);

/* route.c */
/* Send text to every session of bare (only the available ones when
 * only_available); frame_type is IPC_FRAME_STANZA or ROSTER_PUSH. */
/* Every session of bare, *n_r of them: in a list of route.c's own when
 * they fit (one per nesting level: a send in the caller's loop may list
 * sessions again), else in a malloc()ed list left in *heap_r (NULL
 * otherwise).  Each call is paired with route_sessions_done(*heap_r),
 * innermost first.  Their number is bounded by
 * c2s.max_sessions_per_account (session_table_size when that is 0).  A
 * list that keeps growing while it is read, or no memory, leaves out the
 * rest (logged at warn). */
struct session_info *route_sessions(struct worker *w, const char *bare,
				    int *n_r, struct session_info **heap_r);
void route_sessions_done(struct session_info *heap);
void route_to_resources(struct worker *w, const char *bare, const char *text,
			size_t len, int frame_type, int only_available,
			const char *skip_full);
/* The same, to the available resources on cluster node `node` only (an
 * index of the node table, not 0). */
void route_to_resources_on(struct worker *w, const char *bare,
			   const char *text, size_t len, uint8_t node);
void route_from_client(struct conn *c, struct xml_node *stanza);
void route_frame(struct worker *w, const struct ipc_frame_header *hdr,
		 const void *payload, size_t len);
/* A stanza (text) queued for local session conn_id/gen that will never
 * be written to it: a message goes on as if sent to the bare JID
 * (another resource, or offline storage), an IQ request is answered
 * service-unavailable, presence is dropped (a broadcast copy).  -1 if
 * text is no stanza. */
/* The same for a stanza the cluster bridge hands back because node
 * could not be reached: that node's sessions are not picked again. */
int route_undelivered_node(struct worker *w, uint32_t conn_id, uint32_t gen,
			   uint8_t node, const char *text, size_t len);
/* A frame the cluster bridge hands back (a stanza for a node it could
 * not reach: conn 0, hdr->node names the node). */
static inline int worker_frame_handback(const struct worker *w,
					const struct ipc_frame_header *hdr)
{
	return hdr->node != 0 && hdr->src_slot == w->nworkers &&
	       hdr->conn_id == 0 && hdr->gen == IPC_GEN_HANDBACK;
}
int route_undelivered(struct worker *w, uint32_t conn_id, uint32_t gen,
		      const char *text, size_t len);
/* Serialize st (jabber:client default) for a recipient we do not host
 * (s2s, components), without the XEP-0359 <stanza-id/>s whose 'by' is a
 * JID of a domain we host: those are our archive's ids for the sender
 * (the sent carbon carries them), no one else's.  st is not changed.
 * 0/-1 as xml_serialize. */
int route_serialize_out(struct worker *w, struct buf *out,
			const struct xml_node *st);

#endif

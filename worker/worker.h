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
#include "config.h"
#include "queue.h"
#include "shm.h"
#include "buf.h"

#define WORKER_MAX_LISTEN 16

/* What the master hands a freshly forked worker. */
struct worker_boot {
	unsigned slot;
	unsigned nslots;
	struct config *cfg;
	struct shm_region *shm;
	struct queue_set *queues;
	int channel;            /* SOCK_SEQPACKET to the master */
	int dead_fd;            /* read end of the master's dead-pipe */
	unsigned nlisten;
	int listen_fds[WORKER_MAX_LISTEN];
	int listen_tls[WORKER_MAX_LISTEN];  /* direct TLS listener */
};

enum conn_state {
	CONN_STATE_HEADER = 1,  /* waiting for the client's stream header */
	CONN_STATE_OPEN,        /* stream open */
	CONN_STATE_CLOSING,     /* we sent </stream:stream>; flush, close */
};

struct worker;

struct conn {
	struct conn *next, *prev;   /* worker's connection list */
	struct conn *hnext;         /* id hash chain */
	struct worker *w;
	int fd;
	uint32_t id;            /* unique within the slot */
	uint32_t gen;           /* slot generation (worker incarnation) */
	enum conn_state state;
	int direct_tls;
	int64_t deadline_ms;    /* close if no progress by then (0: none) */
	struct buf out;         /* pending writes, coalesced per loop turn */
	struct XML_ParserStruct *parser;
	int depth;              /* element depth; 1 = inside stream */
	int want_close;         /* close after the out buffer drains */
	int closed;             /* fd gone; freed at the end of the turn */
	int epollout;           /* EPOLLOUT currently requested */
	int header_sent;        /* our stream header went out */
	int64_t fed;            /* bytes given to the parser */
	int64_t stanza_start;   /* value of fed when the stanza began */
	int in_out_list;        /* queued for a flush this turn */
	struct conn *out_next;
	char peer[64];          /* "address:port" for the log */
	char stream_to[256];    /* the client's `to`, our `from` */
};

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
	int accept_paused;      /* EMFILE: listeners off until the timer */
	int64_t accept_resume_ms;
	int reserve_fd;         /* spare fd released to shed on EMFILE */
	uint32_t next_conn_id;
	uint32_t gen;
	struct conn *conns;
	struct conn *flush_list;
	struct conn *dead_list;     /* closed, freed at the end of the turn */
	struct conn **conn_table;   /* id -> conn, chained */
	unsigned conn_table_size;   /* power of two */
	unsigned nconns;
	int stopping;
	int64_t stop_deadline_ms;
};

_Noreturn void worker_main(struct worker_boot *boot);

void worker_accept_overload(struct worker *w, int lfd);

/* conn.c */
void conn_accept(struct worker *w, int lfd, int direct_tls);
void conn_handle(struct conn *c, uint32_t events);
void conn_send(struct conn *c, const char *data, size_t len);
void conn_close(struct conn *c);
void conn_flush(struct conn *c);
void conn_flush_all(struct worker *w);
void conn_timeouts(struct worker *w, int64_t now_ms);
void conn_shutdown_all(struct worker *w);
void conn_reap_dead(struct worker *w);
struct conn *conn_lookup(struct worker *w, uint32_t id, uint32_t gen);

/* stream.c */
int stream_init(struct conn *c);
void stream_free(struct conn *c);
int stream_feed(struct conn *c, const char *data, size_t len);
void stream_error(struct conn *c, const char *condition, const char *text);

#endif

/*
 * child.h - one worker process of xmppd-bench: its epoll loop (child.c)
 * and the client state machines it drives (client.c).  Private to these
 * two files.
 */
#ifndef XMPPD_BENCH_CHILD_H
#define XMPPD_BENCH_CHILD_H

#include "bench.h"

/* A byte buffer that exists only while it holds something: an idle
 * client has neither an input nor an output buffer. */
struct cbuf {
	uint32_t len, cap;
	char data[];
};

enum client_state {
	CS_NEW = 0,             /* not started yet */
	CS_CONNECTING,          /* non-blocking connect() in progress */
	CS_FEATURES_TLS,        /* stream open sent, want <starttls/> */
	CS_PROCEED,             /* <starttls/> sent */
	CS_TLS,                 /* TLS handshake (STARTTLS or direct) */
	CS_FEATURES_AUTH,       /* want the SASL mechanisms */
	CS_AUTH,                /* PLAIN sent, want <success/> */
	CS_SCRAM_FIRST,         /* client-first sent, want <challenge/> */
	CS_SCRAM_FINAL,         /* client-final sent, want <success/> */
	CS_FEATURES_BIND,       /* restarted after SASL, want <bind/> */
	CS_BIND,                /* bind IQ sent */
	CS_ENABLE,              /* --sm: <enable resume/> sent */
	CS_RESUME,              /* <resume/> sent instead of binding */
	CS_ONLINE,              /* bound, <presence/> sent */
	CS_CLOSING,             /* </stream:stream> sent, reading to EOF */
	CS_CLOSED,              /* done (or failed): no fd, no memory */
	CS_DETACHED,            /* reset by the storm: no fd, SM id kept */
};

enum client_flag {
	CF_OPEN = 1 << 0,       /* the server's stream header arrived */
	CF_TLS = 1 << 1,        /* bytes go through c->ssl */
	CF_POLLOUT = 1 << 2,    /* EPOLLOUT is in the epoll interest */
	CF_HS_WRITE = 1 << 3,   /* the TLS handshake wants to write */
	CF_DROP = 1 << 4,       /* closed by --drop-clients */
	CF_RESUMING = 1 << 5,   /* this login ends in <resume/>, not bind */
	CF_INACTIVE = 1 << 6,   /* --csi: sent <inactive/> (its class) */
	CF_FLUSHED = 1 << 7,    /* --csi: then <active/> at the end */
};

enum client_fail {
	FAIL_CONNECT = 0,
	FAIL_TLS,
	FAIL_AUTH,
	FAIL_BIND,
	FAIL_CLOSED,
	FAIL_TIMEOUT,
	FAIL_SM,
};

/* 72 bytes; OpenSSL's state comes on top while connected. */
struct client {
	SSL *ssl;
	struct cbuf *in;        /* an incomplete element, or NULL */
	struct cbuf *out;       /* what the socket did not take, or NULL */
	struct scram_client *scram;     /* during SCRAM only */
	char *smid;             /* XEP-0198 resumption id, or NULL */
	int64_t t_start;        /* login start, CLOCK_MONOTONIC ns */
	int fd;
	uint32_t seq;           /* messages sent so far = next sequence */
	uint32_t sender_pos;    /* index in child->senders, or NO_SENDER */
	uint32_t h_in;          /* XEP-0198: stanzas handled since enabled */
	uint32_t h_out;         /* stanzas we sent since enable */
	uint8_t state;          /* enum client_state */
	uint8_t flags;          /* enum client_flag */
};

#define NO_SENDER UINT32_MAX

struct pairvec {                /* (sender << 32 | seq) records */
	uint64_t *v;
	size_t n, cap;
};

/* --pep: per client (pep.c) */
struct pep_client {
	uint64_t seen;          /* contacts' (and own) devicelists this run */
	uint64_t to, from;      /* the roster pass: subscription states */
	int64_t t_presence;     /* initial presence sent */
	bool roster, done;      /* roster loaded; all K 'both' and both
				 * nodes published */
	uint8_t pubs_done;      /* the roster pass: publishes that passed
				 * or failed PEP_RETRIES times */
	uint8_t retries;        /* the roster pass: publishes retried */
	bool want_pub;          /* the roster pass: roster done, publish */
	bool pub_started;       /* the roster pass: want_pub taken */
	bool published;         /* the burst: devicelist and bundle sent */
	bool own;               /* the burst: own devicelist arrived */
	uint64_t pres;          /* the burst: contacts' presence arrived */
};

/* --muc-rooms: per client (muc.c) */
enum muc_state {
	MUC_OUT = 0,            /* not in its room (yet) */
	MUC_JOINING,            /* join presence sent, want status 110 */
	MUC_CONFIGURING,        /* status 201: instant-room form sent; a
				 * history joiner: status 110 seen, wants
				 * its history and the subject */
	MUC_JOINED,             /* an occupant */
	MUC_FAILED,             /* error, timeout or the stream closed */
	MUC_LATE,               /* failed by timeout, then status 110: the
				 * server let it in after all (not a
				 * member for the accounting, no sender) */
};

struct muc_client {
	int64_t t_join;         /* join presence sent, CLOCK_MONOTONIC ns */
	uint16_t hist;          /* history joiner: delayed messages seen */
	uint8_t state;          /* enum muc_state */
	bool history;           /* joins in MUC_PHASE_HISTORY */
};

/* A growable uint32_t array. */
struct u32vec {
	uint32_t *v;
	size_t n, cap;
};

struct child {
	const struct bench_opts *o;
	unsigned k;             /* worker number */
	uint32_t lo, hi;        /* global client indices [lo, hi) */
	struct client *clients;
	int ep, ctl;
	SSL_CTX *ssl_ctx;

	uint32_t next_start;    /* next client to connect (local index) */
	uint32_t pending;       /* logins in progress */
	uint32_t resolved;      /* online or failed */
	int64_t t_begin;        /* this worker's start, for connect pacing */

	struct client **senders;        /* online clients that may send */
	uint32_t nsenders;

	struct wire_go go;      /* valid when have_go */
	uint32_t *online;       /* sorted global indices, go.n_online */
	bool have_go, dropped_done, sending_done, ready_sent, stop;
	uint64_t msgs_started;  /* sent + skipped */
	bool storm_dropped, resume_go, resume_done;
	uint32_t resume_next;   /* next detached client to resume */
	uint32_t resume_pending;        /* dropped, not yet resolved */
	int64_t t_resume_begin;
	int64_t t_csi_flush;    /* the inactive clients said <active/> */
	int64_t t_progress, t_timeouts;

	struct bench_counters cnt;
	struct hist *login_hist, *lat_hist, *resume_hist;
	struct pairvec rx, err;
	uint64_t rng;

	char header[256];       /* our stream header */
	size_t header_len;
	char pheader[256];      /* --pairs: the partners' (their domain) */
	size_t pheader_len;
	char *msg;              /* scratch for one outgoing message */
	size_t msg_size;
	struct pep_client *pep; /* --pep: one per client */
	int64_t t_pep_tick;
	uint32_t pep_inflight;  /* the roster pass: clients publishing */
	struct muc_client *muc; /* --muc-rooms: one per client */
	uint32_t *muc_members;  /* per room: joined occupants at GO */
	struct u32vec rxto;     /* --muc-rooms: recipient of each rx pair */
	struct hist *join_hist, *hjoin_hist;    /* join, join with history */
	int muc_phase;          /* the join phase running, -1: none */
	uint32_t muc_next;      /* next local client to consider */
	uint64_t muc_started;   /* joins started in this phase */
	uint32_t muc_pending;   /* joins started, not resolved */
	int64_t t_muc_begin;    /* the phase's WIRE_JOIN */
	int64_t t_muc_timeouts;
	char rbuf[65536];       /* shared read buffer */
};

static inline uint32_t client_index(const struct child *ch,
				    const struct client *c)
{
	return ch->lo + (uint32_t)(c - ch->clients);
}

/* The stream header client c sends (to its own domain). */
static inline const char *client_header(const struct child *ch,
					const struct client *c, size_t *len_r)
{
	if (bench_is_partner(ch->o, client_index(ch, c))) {
		*len_r = ch->pheader_len;
		return ch->pheader;
	}
	*len_r = ch->header_len;
	return ch->header;
}

/* client.c */
void client_start(struct child *ch, struct client *c, int64_t now);
void client_event(struct child *ch, struct client *c, uint32_t events);
int client_send(struct child *ch, struct client *c, const char *p, size_t n);
size_t client_out_len(const struct client *c);
void client_fail(struct child *ch, struct client *c, enum client_fail why);
void client_begin_close(struct child *ch, struct client *c, bool drop);
void client_close(struct child *ch, struct client *c);
void client_username(const struct child *ch, uint32_t index, char *out,
		     size_t size);
/* The storm: reset the stream (RST, no closing tag), keep the SM state. */
void client_drop_hard(struct child *ch, struct client *c);
/* A stanza went out: counts for XEP-0198 once enabled. */
static inline void client_stanza_out(struct client *c)
{
	if (c->smid != NULL)
		c->h_out++;
}

/* child.c, called by client.c */
void child_client_online(struct child *ch, struct client *c, int64_t now);
void child_client_gone(struct child *ch, struct client *c);
void child_client_resumed(struct child *ch, struct client *c, int64_t now);
void child_drop_one(struct child *ch, struct client *c);
void pairvec_push(struct pairvec *pv, uint32_t sender, uint32_t seq);
void child_on_message(struct child *ch, struct client *c, const char *el,
		      const struct xs_item *it);

/* pep.c, called by client.c: instead of <presence/> (-1: closed) */
int pep_online(struct child *ch, struct client *c);
/* An element while online: -1 closed, 0 handled, 2 not ours. */
int pep_element(struct child *ch, struct client *c, const char *el,
		const struct xs_item *it);
/* At STOP: count the missing pairs. */
void pep_report(struct child *ch);
/* Each loop turn: publish for clients whose own devicelist is late. */
void pep_tick(struct child *ch, int64_t now);

/* muc.c, called by child.c and client.c */
void muc_child_init(struct child *ch);
/* WIRE_JOIN: start the phase's joins (paced by muc_tick). */
void muc_phase_start(struct child *ch, enum muc_phase phase, int64_t now);
/* Each loop turn: start joins, time them out, report a finished phase. */
void muc_tick(struct child *ch, int64_t now);
/* WIRE_GO: the members of each room (the online list is the joined). */
void muc_on_go(struct child *ch);
/* The start of message q of sender s to its room, up to <body>, into
 * ch->msg; its length. */
size_t muc_message_head(struct child *ch, uint32_t s, uint32_t q);
/* An element while online: -1 closed, 0 handled, 2 not ours. */
int muc_element(struct child *ch, struct client *c, const char *el,
		const struct xs_item *it);
/* The stream of c closed: a join in flight fails. */
void muc_client_closed(struct child *ch, struct client *c);

#endif

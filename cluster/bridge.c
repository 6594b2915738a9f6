/*
 * bridge.c - the cluster bridge: the process in the slot after the
 * workers (slot nworkers) that holds this node's one NATS connection.
 * Why a process of its own: libnats runs threads even in event-loop mode
 * (3 at nats_Open, one more per connection and subscription, measured in
 * docs/plans/issue15-cluster.md), delivers on them, and its synchronous
 * calls deadlock a loop that waits for them; the workers stay
 * single-threaded and fork-clean, and a libnats crash costs the bridge
 * only (the master respawns it like a worker).
 *
 * Main thread: epoll over the master channel, the dead-pipe, the slot's
 * queue and an eventfd.  libnats threads touch nothing of ours but the
 * event ring below (mutex) and that eventfd; everything else, the shared
 * node table included, is written by the main thread.  This slice:
 * heartbeats on xmppd.<cluster>.hb, the node table, link state and
 * counters; frames from workers are counted and dropped (none are
 * routed here yet).
 * Failure policy: a configuration the bridge cannot use (password file,
 * TLS files, NATS options) exits 2 (not respawned, logged once); a NATS
 * server that is down is not an error (the connection retries forever,
 * link down in the table); bad heartbeats are counted and logged at
 * debug; anything else fatal exits 1 and the master respawns us.
 */
#include "bridge_int.h"
#include "fence.h"
#include "secret.h"
#include "channel.h"
#include "log.h"
#include "util.h"

#include <nats/nats.h>
#include <sodium.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define BRIDGE_MAX_SERVERS 16
#define BRIDGE_RING 1024            /* events waiting for the main thread */
#define BRIDGE_RING_SPARE 128       /* of them, kept for heartbeats and
				       link events */
#define BRIDGE_LOG_EVERY_MS 10000   /* rate of repeated error lines */
#define BRIDGE_STOP_WAIT_MS 1500    /* drain before we close anyway */
#define BRIDGE_FORGET_EVERY_MS 10000    /* a look for entries to free */

/* What libnats threads hand to the main thread.  Full: dropped and
 * counted (heartbeats repeat; link events are re-read from
 * natsConnection_Status at each tick). */
static struct {
	pthread_mutex_t lock;
	unsigned head, count;
	int wake_fd;
	_Atomic uint64_t dropped;
	struct bridge_ev ev[BRIDGE_RING];
	/* Snapshot parts (BRIDGE_SUBJ_SNAP) wait apart, under the same
	 * lock: a node of a million sessions answers in about a thousand
	 * 64 KiB parts at once, faster than the main thread reads them
	 * (milliseconds each), and a part dropped from the ring lost the
	 * whole snapshot, asked again and lost again (review 15 C8).  The
	 * asker asked for every byte of it, so they are kept, up to
	 * cluster.snapshot_queue bytes, and read a few per turn
	 * (BRIDGE_SNAP_PER_TURN) between everything else. */
	natsMsg **snap;
	size_t snap_cap, snap_head, snap_n;
	uint64_t snap_bytes, snap_max;
	_Atomic uint64_t snap_dropped;
} ring = { .lock = PTHREAD_MUTEX_INITIALIZER, .wake_fd = -1 };

#define BRIDGE_SNAP_PER_TURN 8
#define BRIDGE_SNAP_COST 512    /* bytes a queued part counts beyond its
				   payload */


/* ---- libnats threads: the ring only ------------------------------------ */

static void ring_push(uint8_t type, int32_t status, const void *data,
		      size_t len)
{
	uint64_t one = 1;
	pthread_mutex_lock(&ring.lock);
	if (ring.count == BRIDGE_RING) {
		pthread_mutex_unlock(&ring.lock);
		atomic_fetch_add(&ring.dropped, 1);
		return;
	}
	struct bridge_ev *e = &ring.ev[(ring.head + ring.count) % BRIDGE_RING];
	e->type = type;
	e->status = status;
	e->msg = NULL;
	e->len = (uint32_t)len;
	if (len > 0)    /* an empty message may have no data pointer */
		memcpy(e->data, data, len < BRIDGE_EV_DATA ? len :
		       BRIDGE_EV_DATA);
	ring.count++;
	pthread_mutex_unlock(&ring.lock);
	if (write(ring.wake_fd, &one, sizeof(one)) < 0) {
		/* the counter is already non-zero: the loop wakes anyway */
	}
}

static int ring_pop(struct bridge_ev *out)
{
	pthread_mutex_lock(&ring.lock);
	if (ring.count == 0) {
		pthread_mutex_unlock(&ring.lock);
		return 0;
	}
	*out = ring.ev[ring.head];
	ring.head = (ring.head + 1) % BRIDGE_RING;
	ring.count--;
	pthread_mutex_unlock(&ring.lock);
	return 1;
}

/* A routing message: the main thread takes it as it is (no copy) and
 * destroys it.  A full ring drops it: what it carried comes again
 * (frames are resent until acknowledged, a lost directory event shows
 * as a gap and asks for a snapshot). */
/* A snapshot part, kept apart (see ring).  0, or -1: no room (over
 * cluster.snapshot_queue, or no memory): dropped, counted; the asker
 * sees the gap and asks again. */
static int snap_push(natsMsg *msg)
{
	/* each one costs its natsMsg and a place too: charged at least
	 * BRIDGE_SNAP_COST, so that tiny messages (anyone who may publish
	 * on the subject: signatures are checked when read) cannot queue
	 * hundreds of millions */
	size_t len = (size_t)natsMsg_GetDataLength(msg) + BRIDGE_SNAP_COST;
	if (ring.snap_bytes + len > ring.snap_max)
		return -1;
	if (ring.snap_n == ring.snap_cap) {
		size_t cap = ring.snap_cap ? ring.snap_cap * 2 : 64;
		natsMsg **v = malloc(cap * sizeof(*v));
		if (v == NULL)
			return -1;
		for (size_t i = 0; i < ring.snap_n; i++)
			v[i] = ring.snap[(ring.snap_head + i) % ring.snap_cap];
		free(ring.snap);
		ring.snap = v;
		ring.snap_cap = cap;
		ring.snap_head = 0;
	}
	ring.snap[(ring.snap_head + ring.snap_n) % ring.snap_cap] = msg;
	ring.snap_n++;
	ring.snap_bytes += len;
	return 0;
}

static natsMsg *snap_pop(void)
{
	natsMsg *m = NULL;
	pthread_mutex_lock(&ring.lock);
	if (ring.snap_n > 0) {
		m = ring.snap[ring.snap_head];
		ring.snap_head = (ring.snap_head + 1) % ring.snap_cap;
		ring.snap_n--;
		ring.snap_bytes -= (size_t)natsMsg_GetDataLength(m) +
				   BRIDGE_SNAP_COST;
	}
	pthread_mutex_unlock(&ring.lock);
	return m;
}

void bridge_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
		   void *closure)
{
	uint64_t one = 1;
	(void)nc; (void)sub;
	pthread_mutex_lock(&ring.lock);
	if ((intptr_t)closure == BRIDGE_SUBJ_SNAP) {
		int r = snap_push(msg);
		pthread_mutex_unlock(&ring.lock);
		if (r < 0) {
			atomic_fetch_add(&ring.snap_dropped, 1);
			natsMsg_Destroy(msg);
		} else if (write(ring.wake_fd, &one, sizeof(one)) < 0) {
			/* the counter is already non-zero */
		}
		return;
	}
	/* the last BRIDGE_RING_SPARE places are for heartbeats and link
	 * events: a flood of routing messages (a snapshot, resends) must
	 * not fake a dead node */
	if (ring.count >= BRIDGE_RING - BRIDGE_RING_SPARE) {
		pthread_mutex_unlock(&ring.lock);
		atomic_fetch_add(&ring.dropped, 1);
		natsMsg_Destroy(msg);
		return;
	}
	struct bridge_ev *e = &ring.ev[(ring.head + ring.count) % BRIDGE_RING];
	e->type = BRIDGE_EV_MSG;
	e->status = (int32_t)(intptr_t)closure;
	e->msg = msg;
	e->len = 0;
	ring.count++;
	pthread_mutex_unlock(&ring.lock);
	if (write(ring.wake_fd, &one, sizeof(one)) < 0) {
		/* the counter is already non-zero: the loop wakes anyway */
	}
}

static void on_hb_msg(natsConnection *nc, natsSubscription *sub,
		      natsMsg *msg, void *closure)
{
	(void)nc; (void)sub; (void)closure;
	int len = natsMsg_GetDataLength(msg);
	ring_push(BRIDGE_EV_HB, 0, natsMsg_GetData(msg),
		  len > 0 ? (size_t)len : 0);
	natsMsg_Destroy(msg);
}

static void push_link(natsConnection *nc, uint8_t type)
{
	char url[IPC_CLUSTER_URL] = "";
	if (type == BRIDGE_EV_CONNECTED || type == BRIDGE_EV_RECONNECTED)
		natsConnection_GetConnectedUrl(nc, url, sizeof(url));
	ring_push(type, 0, url, strlen(url) + 1);
}

static void on_connected(natsConnection *nc, void *closure)
{
	(void)closure;
	push_link(nc, BRIDGE_EV_CONNECTED);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
	(void)closure;
	push_link(nc, BRIDGE_EV_RECONNECTED);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
	(void)closure;
	push_link(nc, BRIDGE_EV_DISCONNECTED);
}

static void on_closed(natsConnection *nc, void *closure)
{
	(void)closure;
	push_link(nc, BRIDGE_EV_CLOSED);
}

static void on_error(natsConnection *nc, natsSubscription *sub,
		     natsStatus err, void *closure)
{
	(void)nc; (void)sub; (void)closure;
	ring_push(BRIDGE_EV_ERROR, (int32_t)err, "", 1);
}

/* ---- set-up ------------------------------------------------------------ */

static _Noreturn void bridge_config_error(const char *what, natsStatus s)
{
	log_error("cluster: %s: %s (not restarting the bridge: fix the "
		  "cluster settings)", what, s == NATS_OK ? "failed" :
		  natsStatus_GetText(s));
	exit(2);
}

/* The first line of cluster.password_file (restart-only setting). */
static void bridge_read_password(const char *path, char *out, size_t size)
{
	FILE *f = fopen(path, "re");
	if (f == NULL || fgets(out, (int)size, f) == NULL) {
		log_error("cluster.password_file %s: %s", path,
			  f == NULL ? strerror(errno) : "empty");
		if (f != NULL)
			fclose(f);
		exit(2);
	}
	fclose(f);
	out[strcspn(out, "\r\n")] = '\0';
}

/* cluster.servers split on spaces and commas; tls:// asks for TLS. */
static int bridge_servers(const char *list, char *copy, size_t size,
			  const char **urls, int *secure_r)
{
	int n = 0;
	char *save = NULL;
	snprintf(copy, size, "%s", list);
	*secure_r = 0;
	for (char *u = strtok_r(copy, " \t,", &save);
	     u != NULL && n < BRIDGE_MAX_SERVERS;
	     u = strtok_r(NULL, " \t,", &save)) {
		urls[n++] = u;
		if (strncmp(u, "tls://", 6) == 0)
			*secure_r = 1;
	}
	return n;
}

static void bridge_auth_options(struct bridge *b)
{
	const struct config *cfg = b->cfg;
	natsStatus s = NATS_OK;
	if (cfg->cluster_user[0] != '\0') {
		char pw[512];
		bridge_read_password(cfg->cluster_password_file, pw,
				     sizeof(pw));
		s = natsOptions_SetUserInfo(b->opts, cfg->cluster_user, pw);
		sodium_memzero(pw, sizeof(pw));
		if (s != NATS_OK)
			bridge_config_error("cluster.user", s);
	}
	if (cfg->cluster_credentials[0] != '\0' &&
	    (s = natsOptions_SetUserCredentialsFromFiles(
		    b->opts, cfg->cluster_credentials, NULL)) != NATS_OK)
		bridge_config_error(cfg->cluster_credentials, s);
	if (cfg->cluster_tls_ca[0] != '\0' &&
	    (s = natsOptions_LoadCATrustedCertificates(
		    b->opts, cfg->cluster_tls_ca)) != NATS_OK)
		bridge_config_error(cfg->cluster_tls_ca, s);
	if (cfg->cluster_tls_certificate[0] != '\0' &&
	    (s = natsOptions_LoadCertificatesChain(
		    b->opts, cfg->cluster_tls_certificate,
		    cfg->cluster_tls_key)) != NATS_OK)
		bridge_config_error(cfg->cluster_tls_certificate, s);
}

static void bridge_options(struct bridge *b)
{
	const struct config *cfg = b->cfg;
	char copy[1024], name[64];
	const char *urls[BRIDGE_MAX_SERVERS];
	int secure, n = bridge_servers(cfg->cluster_servers, copy,
				       sizeof(copy), urls, &secure);
	natsStatus s = natsOptions_Create(&b->opts);
	if (s != NATS_OK)
		log_fatal("cluster: natsOptions_Create: %s",
			  natsStatus_GetText(s));
	snprintf(name, sizeof(name), "xmppd-%s", b->node);
	if ((s = natsOptions_SetServers(b->opts, urls, n)) != NATS_OK)
		bridge_config_error("cluster.servers", s);
	/* in the order given: the operator lists the node's own (nearest)
	 * server first; libnats would otherwise pick one at random */
	if ((s = natsOptions_SetNoRandomize(b->opts, true)) != NATS_OK)
		bridge_config_error("cluster.servers", s);
	if ((s = natsOptions_UseGlobalMessageDelivery(b->opts, true)) != NATS_OK)
		bridge_config_error("message delivery", s);
	/* a server we cannot reach is retried every ~250 ms forever, the
	 * first connect too (the bridge starts while NATS is down); pings
	 * find a server that went silent without closing the socket */
	if ((s = natsOptions_SetName(b->opts, name)) != NATS_OK ||
	    (s = natsOptions_SetNoEcho(b->opts, true)) != NATS_OK ||
	    (s = natsOptions_SetMaxReconnect(b->opts, -1)) != NATS_OK ||
	    (s = natsOptions_SetReconnectWait(b->opts, 250)) != NATS_OK ||
	    (s = natsOptions_SetReconnectJitter(b->opts, 100, 1000)) != NATS_OK ||
	    (s = natsOptions_SetPingInterval(b->opts, 2000)) != NATS_OK ||
	    (s = natsOptions_SetMaxPingsOut(b->opts, 2)) != NATS_OK ||
	    (s = natsOptions_SetRetryOnFailedConnect(b->opts, true,
						     on_connected, NULL)) != NATS_OK ||
	    (s = natsOptions_SetDisconnectedCB(b->opts, on_disconnected,
					       NULL)) != NATS_OK ||
	    (s = natsOptions_SetReconnectedCB(b->opts, on_reconnected,
					      NULL)) != NATS_OK ||
	    (s = natsOptions_SetClosedCB(b->opts, on_closed, NULL)) != NATS_OK ||
	    (s = natsOptions_SetErrorHandler(b->opts, on_error, NULL)) != NATS_OK)
		bridge_config_error("NATS options", s);
	if (secure && (s = natsOptions_SetSecure(b->opts, true)) != NATS_OK)
		bridge_config_error("cluster.servers (tls://)", s);
	bridge_auth_options(b);
}

static void bridge_set_link(struct bridge *b, int up, const char *url)
{
	if (url != NULL && url[0] != '\0')
		shm_cluster_write_server(b->cl, url);
	METRIC_SET(b->cl->link_down_ms, up ? 0 : b->now_ms);
	METRIC_SET(b->cl->link_up, up ? 1u : 0u);
}

static void bridge_connect(struct bridge *b)
{
	natsStatus s = natsConnection_Connect(&b->nc, b->opts);
	if (s == NATS_OK) {
		char url[IPC_CLUSTER_URL] = "";
		natsConnection_GetConnectedUrl(b->nc, url, sizeof(url));
		bridge_set_link(b, 1, url);
		log_info("cluster: connected to %s", url);
		b->next_hb_ms = b->now_ms;
	} else if (s == NATS_NOT_YET_CONNECTED) {
		log_warn("cluster: no NATS server reachable yet (%s): "
			 "retrying", b->cfg->cluster_servers);
	} else {
		bridge_config_error("connecting to cluster.servers", s);
	}
	/* the subscription is made now even when not connected: libnats
	 * sends it at (re)connect; no limit on what waits for us (a slow
	 * consumer would drop heartbeats and fake a dead node) */
	s = natsConnection_Subscribe(&b->sub_hb, b->nc, b->subj_hb, on_hb_msg,
				     NULL);
	if (s == NATS_OK)
		s = natsSubscription_SetPendingLimits(b->sub_hb, -1, -1);
	if (s != NATS_OK)
		log_fatal("cluster: subscribe(%s): %s", b->subj_hb,
			  natsStatus_GetText(s));
}

static void bridge_ep_add(struct bridge *b, int fd, uint64_t tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = tag };
	if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		log_fatal("epoll_ctl(ADD) failed: %m");
}

static void bridge_init(struct bridge *b, struct worker_boot *boot)
{
	log_set_role("bridge");
	memset(b, 0, sizeof(*b));
	b->slot = boot->slot;
	b->nworkers = boot->nworkers;
	b->cfg = boot->cfg;
	b->shm = boot->shm;
	b->cl = &boot->shm->hdr->cluster;
	b->channel = boot->channel;
	b->dead_fd = boot->dead_fd;
	b->stats = shm_worker_stats(b->shm, b->slot);
	metrics_self = b->stats;
	metrics_reset_gauges(b->stats);
	METRIC_SET(b->stats->config_gen, b->cfg->generation);
	b->now_ms = time_now_ms();
	while (b->incarnation == 0)
		randombytes_buf(&b->incarnation, sizeof(b->incarnation));
	b->run = fence_wall_us();
	fence_init(&b->fence, (int64_t)b->cfg->cluster_clock_skew);
	fence_init(&b->snap_fence, (int64_t)b->cfg->cluster_clock_skew);
	b->snap_fence.clock_always = 1;   /* REVIEW-lend2 N5 */
	snprintf(b->node, sizeof(b->node), "%.32s", b->cl->nodes[0].name);
	snprintf(b->cluster, sizeof(b->cluster), "%.32s", b->cl->name);
	b->interval_ms = b->cfg->cluster_heartbeat_interval;
	b->timeout_ms = b->cfg->cluster_node_timeout;
	b->lease_ms = b->cfg->cluster_lease_time;
	snprintf(b->subj_hb, sizeof(b->subj_hb), "xmppd.%s.hb", b->cluster);
	b->q = queue_new(boot->queues, b->slot, b->cfg->queue_outbox_frames,
			 (size_t)b->cfg->queue_outbox_bytes);
	b->epfd = epoll_create1(EPOLL_CLOEXEC);
	ring.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ring.snap_max = b->cfg->cluster_snapshot_queue;
	if (b->q == NULL || b->epfd < 0 || ring.wake_fd < 0)
		log_fatal("bridge set-up failed: %m");
	queue_set_dispatch_flag(b->q, &b->stats->queue_dispatching);
	/* frames to and from other nodes carry node fields (frame.c) */
	queue_set_bridge(b->q, b->slot);
	bridge_ep_add(b, b->channel, BRIDGE_TAG_CHANNEL);
	bridge_ep_add(b, b->dead_fd, BRIDGE_TAG_DEAD);
	bridge_ep_add(b, boot->queues->fds[b->slot].recv, BRIDGE_TAG_QUEUE);
	bridge_ep_add(b, ring.wake_fd, BRIDGE_TAG_WAKE);
	/* the link is down until a connect says otherwise: the table's
	 * "link lost" rule counts from here */
	bridge_set_link(b, 0, NULL);
	/* after the fork (libnats threads do not survive one) */
	natsStatus s = nats_Open(-1);
	if (s != NATS_OK)
		log_fatal("cluster: nats_Open: %s", natsStatus_GetText(s));
	/* one delivery thread for every subscription: messages reach the
	 * ring in the order they arrived, so a node's directory event (a
	 * session that just bound) comes before the stanza that session
	 * sent right after (a reply to it must find it) */
	if ((s = nats_SetMessageDeliveryPoolSize(1)) != NATS_OK)
		log_fatal("cluster: delivery pool: %s", natsStatus_GetText(s));
	bridge_options(b);
	log_info("cluster %s: node %s, incarnation %016llx, %u workers",
		 b->cluster, b->node,
		 (unsigned long long)b->incarnation, b->nworkers);
	bridge_connect(b);
	bridge_route_init(b);
	bridge_kv_start(b);
}

/* ---- heartbeats and the node table ------------------------------------- */


static void bridge_publish_hb(struct bridge *b, int leaving)
{
	struct cluster_hb hb = {
		.flags = leaving ? CLUSTER_HB_F_LEAVING : 0,
		.incarnation = b->incarnation, .ipc_version = IPC_VERSION,
		.workers = b->nworkers, .sessions = bridge_route_count(b),
		.dir_seq = bridge_route_seq(b),
		.dir_digest = bridge_route_digest(b),
		.node_run = b->cl->node_run,
	};
	uint8_t wire[CLUSTER_HB_SIZE];
	struct ipc_cluster_node *self = &b->cl->nodes[0];

	snprintf(hb.node, sizeof(hb.node), "%s", b->node);
	snprintf(hb.cluster, sizeof(hb.cluster), "%s", b->cluster);
	shm_cluster_write_begin(self);
	self->incarnation = b->incarnation;
	self->sessions = hb.sessions;
	self->workers = b->nworkers;
	self->last_hb_ms = b->now_ms;
	shm_cluster_write_end(self);
	/* not while the link is down: libnats would buffer them and the
	 * others would get a burst of stale ones at reconnect */
	if (!METRIC_GET(b->cl->link_up))
		return;
	cluster_hb_encode(&hb, wire);
	bridge_publish(b, b->subj_hb, wire, sizeof(wire));
}

/* payload | replay stamp (fence.h) | MAC of subject, payload, stamp */
natsStatus bridge_publish(struct bridge *b, const char *subject,
			  const void *data, size_t len)
{
	struct fence_stamp st = {
		.run = b->run, .seq = ++b->pub_seq, .sent_ms = fence_wall_ms(),
	};
	unsigned char *m = malloc(len + FENCE_TRAILER_MAX + SECRET_MAC_BYTES);
	natsStatus s = NATS_NO_MEMORY;
	size_t n = 0;
	if (m != NULL) {
		memcpy(st.node, b->node, sizeof(st.node) - 1);
		memcpy(m, data, len);
		n = len + fence_put(m + len, &st);
		if (secret_cluster_mac(subject, m, n, m + n) < 0)
			s = NATS_ERR;   /* no key: the master always sets it */
		else
			s = natsConnection_Publish(b->nc, subject, m,
						   (int)(n + SECRET_MAC_BYTES));
		free(m);
	}
	if (s == NATS_OK) {
		METRIC_INC(b->cl->msgs_out);
		METRIC_ADD(b->cl->bytes_out, n + SECRET_MAC_BYTES);
	}
	return s;
}

int bridge_open(struct fence *f, const char *subject, const void *msg,
		size_t len, size_t *payload_r, struct fence_stamp *st,
		const char **error_r)
{
	size_t signed_len;
	/* the MAC first: only a node of the cluster moves the fence */
	if (secret_cluster_check(subject, msg, len, &signed_len) < 0) {
		*error_r = "not signed with cluster.secret_file's key";
		return -1;
	}
	if (fence_take(msg, signed_len, st, payload_r, error_r) < 0)
		return -1;
	enum fence_verdict v = fence_check(f, st, fence_wall_ms());
	if (v != FENCE_OK) {
		*error_r = fence_verdict_text(v);
		return -1;
	}
	return 0;
}

static int bridge_rate_ok(struct bridge *b, int64_t *last_ms)
{
	if (*last_ms != 0 && b->now_ms - *last_ms < BRIDGE_LOG_EVERY_MS)
		return 0;
	*last_ms = b->now_ms;
	return 1;
}

static void bridge_log_heard(struct bridge *b, enum cluster_event ev,
			     const struct cluster_hb *hb)
{
	switch (ev) {
	case CLUSTER_EV_JOINED:
		log_info("node %s up (incarnation %016llx, %u workers)",
			 hb->node, (unsigned long long)hb->incarnation,
			 hb->workers);
		break;
	case CLUSTER_EV_RESTARTED:
		log_info("node %s restarted (new incarnation %016llx)",
			 hb->node, (unsigned long long)hb->incarnation);
		break;
	case CLUSTER_EV_BACK:
		log_info("node %s up again", hb->node);
		break;
	case CLUSTER_EV_LEFT:
		log_info("node %s left", hb->node);
		break;
	case CLUSTER_EV_INCOMPATIBLE:
		log_error("node %s is incompatible: IPC version %u, cluster "
			  "'%s' (ours: %u, '%s'): ignored", hb->node,
			  hb->ipc_version, hb->cluster, IPC_VERSION,
			  b->cluster);
		break;
	case CLUSTER_EV_CLAIM:
		if (bridge_rate_ok(b, &b->claim_logged_ms))
			log_error("another process claims our node name %s "
				  "(incarnation %016llx, ours %016llx): "
				  "cluster.node must be unique", hb->node,
				  (unsigned long long)hb->incarnation,
				  (unsigned long long)b->incarnation);
		break;
	case CLUSTER_EV_FULL:
		if (bridge_rate_ok(b, &b->full_logged_ms))
			log_warn("node %s ignored: the node table is full "
				 "(%u nodes)", hb->node, IPC_MAX_NODES);
		break;
	default:
		break;
	}
}

static void bridge_heard(struct bridge *b, const struct bridge_ev *e)
{
	struct cluster_hb hb;
	const char *error;
	unsigned idx;

	size_t plen = 0;
	struct fence_stamp st;
	int replay = 0;
	memset(&st, 0, sizeof(st));
	METRIC_INC(b->cl->msgs_in);
	METRIC_ADD(b->cl->bytes_in, e->len);
	if (e->len > BRIDGE_EV_DATA)
		error = "too long";
	else if (bridge_open(&b->fence, b->subj_hb, e->data, e->len, &plen,
			     &st, &error) < 0)
		replay = st.node[0] != '\0';   /* signed: the fence's */
	else if (cluster_hb_parse(e->data, plen, &hb, &error) < 0)
		;
	else if (strcmp(hb.node, st.node) != 0)
		error = "sent by another node than the one it names";
	else
		error = NULL;
	if (error != NULL) {
		METRIC_INC(b->cl->heartbeats_bad);
		/* a replay has a log line of its own: it is the sign that
		 * someone on NATS records and replays */
		if (bridge_rate_ok(b, replay ? &b->replay_logged_ms :
				   &b->bad_logged_ms))
			log_warn("cluster: heartbeat refused (%u bytes%s%s): %s",
				 e->len, st.node[0] ? " from " : "", st.node,
				 error);
		return;
	}
	METRIC_INC(b->cl->heartbeats_in);
	enum cluster_event ev = cluster_table_heard(b->cl, &hb,
						    b->incarnation, b->now_ms,
						    &idx);
	bridge_log_heard(b, ev, &hb);
	if (ev == CLUSTER_EV_INCOMPATIBLE && idx != 0)
		/* back with another build (a quick restart for an upgrade):
		 * its old run is gone as surely as if it had gone down */
		bridge_route_down(b, idx);
	else if (ev != CLUSTER_EV_FULL && ev != CLUSTER_EV_CLAIM && idx != 0)
		bridge_route_heard(b, idx, ev, &hb);
}

static void bridge_changed(unsigned index, enum cluster_event ev,
			   const struct ipc_cluster_node *n, int64_t age_ms,
			   void *ctx)
{
	struct bridge *b = ctx;
	if (ev == CLUSTER_EV_DOWN || ev == CLUSTER_EV_LINK_LOST)
		bridge_route_down(b, index);
	if (ev == CLUSTER_EV_SUSPECT)
		log_info("node %s suspect: no heartbeat for %.1fs", n->name,
			 (double)age_ms / 1000.0);
	else if (ev == CLUSTER_EV_DOWN)
		log_warn("node %s down: no heartbeat for %.1fs", n->name,
			 (double)age_ms / 1000.0);
	else if (ev == CLUSTER_EV_LINK_LOST)
		log_warn("node %s marked down: our NATS link has been down "
			 "longer than cluster.node_timeout", n->name);
}

static int bridge_in_use(unsigned index, void *ctx)
{
	return bridge_route_refers(ctx, index);
}

static void bridge_forgotten(unsigned index, enum cluster_event ev,
			     const struct ipc_cluster_node *n, int64_t age_ms,
			     void *ctx)
{
	(void)ev;
	log_info("node %s forgotten: not heard for %llds (cluster."
		 "node_forget); its place in the node table is free",
		 n->name, (long long)(age_ms / 1000));
	bridge_route_forgot(ctx, index);
}

/* The link's state from libnats itself, each tick: a connection event
 * lost to a full ring must not leave us believing the link down (no
 * heartbeats: the others would mark us down) or up. */
static void bridge_poll_link(struct bridge *b)
{
	int up = natsConnection_Status(b->nc) == NATS_CONN_STATUS_CONNECTED;
	if (up == (int)METRIC_GET(b->cl->link_up))
		return;
	if (up) {
		char url[IPC_CLUSTER_URL] = "";
		natsConnection_GetConnectedUrl(b->nc, url, sizeof(url));
		bridge_set_link(b, 1, url);
		b->next_hb_ms = b->now_ms;
		log_info("cluster: link up to %s (its event was lost)", url);
	} else {
		bridge_set_link(b, 0, NULL);
		log_warn("cluster: NATS link down (its event was lost)");
	}
}

static void bridge_tick(struct bridge *b)
{
	if (b->nc != NULL && !b->closed)
		bridge_poll_link(b);
	int64_t down = METRIC_GET(b->cl->link_down_ms);
	int lost = down != 0 &&
		   b->now_ms - down > (int64_t)b->timeout_ms;
	cluster_table_tick(b->cl, b->now_ms, b->interval_ms,
			   b->timeout_ms, lost, bridge_changed,
			   b);
	bridge_route_tick(b);
	if (b->now_ms >= b->next_forget_ms) {
		b->next_forget_ms = b->now_ms + BRIDGE_FORGET_EVERY_MS;
		cluster_table_forget(b->cl, b->now_ms,
				     b->cfg->cluster_node_forget,
				     bridge_in_use, bridge_forgotten, b);
	}
	if (b->now_ms >= b->next_hb_ms && !b->stopping) {
		bridge_publish_hb(b, 0);
		b->next_hb_ms = b->now_ms +
			(int64_t)b->interval_ms;
	}
}

/* ---- events ------------------------------------------------------------ */

static void bridge_link_event(struct bridge *b, const struct bridge_ev *e)
{
	const char *url = (const char *)e->data;
	switch (e->type) {
	case BRIDGE_EV_CONNECTED:
	case BRIDGE_EV_RECONNECTED:
		if (e->type == BRIDGE_EV_RECONNECTED)
			METRIC_INC(b->cl->reconnects);
		bridge_set_link(b, 1, url);
		log_info("cluster: %s to %s", e->type == BRIDGE_EV_CONNECTED ?
			 "connected" : "reconnected", url);
		/* at once: the others learn we are back without waiting */
		b->next_hb_ms = b->now_ms;
		break;
	case BRIDGE_EV_DISCONNECTED:
		bridge_set_link(b, 0, NULL);
		log_warn("cluster: NATS link down: reconnecting");
		break;
	case BRIDGE_EV_CLOSED:
		bridge_set_link(b, 0, NULL);
		b->closed = 1;
		if (b->stopping)
			break;
		/* reconnects are endless, so this is libnats giving up (an
		 * authorization refused for good, ...): a new bridge starts
		 * from scratch, slowed by the master's crash back-off */
		log_error("cluster: NATS connection closed: exiting to be "
			  "restarted");
		exit(1);
	case BRIDGE_EV_ERROR:
		log_warn("cluster: NATS: %s%s",
			 natsStatus_GetText((natsStatus)e->status),
			 e->status == NATS_SLOW_CONSUMER ?
			 " (messages dropped: heartbeats lost)" : "");
		break;
	default:
		break;
	}
}

static void bridge_drain_ring(struct bridge *b)
{
	struct bridge_ev e;
	uint64_t n;
	if (read(ring.wake_fd, &n, sizeof(n)) < 0) {
		/* EAGAIN: another turn emptied it */
	}
	while (ring_pop(&e)) {
		if (e.type == BRIDGE_EV_HB)
			bridge_heard(b, &e);
		else if (e.type == BRIDGE_EV_MSG)
			bridge_route_msg(b, (enum bridge_subject)e.status,
					 e.msg);
		else
			bridge_link_event(b, &e);
	}
	natsMsg *m = NULL;
	for (int k = 0; k < BRIDGE_SNAP_PER_TURN && (m = snap_pop()) != NULL;
	     k++)
		bridge_route_msg(b, BRIDGE_SUBJ_SNAP, m);
	uint64_t one = 1;
	if (m != NULL && write(ring.wake_fd, &one, sizeof(one)) < 0) {
		/* more parts: the next turn comes at once (eventfd set) */
	}
	uint64_t lost = atomic_load(&ring.snap_dropped);
	METRIC_SET(b->cl->snap_dropped, lost);
	if (lost != b->snap_dropped_seen &&
	    bridge_rate_ok(b, &b->snap_logged_ms)) {
		log_warn("cluster: %llu snapshot parts dropped (over "
			 "cluster.snapshot_queue): those snapshots are asked "
			 "for again", (unsigned long long)
			 (lost - b->snap_dropped_seen));
		b->snap_dropped_seen = lost;
	}
}

static void bridge_frame(const struct ipc_frame_header *hdr,
			 const void *payload, size_t len, void *ctx)
{
	struct bridge *b = ctx;
	METRIC_INC(b->stats->frames_in);
	bridge_route_frame(b, hdr, payload, len);
}

static void bridge_apply_config(struct bridge *b, const struct ipc_cmd *cmd,
				const char *text, size_t len)
{
	struct config *cfg = channel_config(cmd, text, len);
	if (cfg == NULL)
		return;
	/* every cluster.* setting is restart-only: only logging and the
	 * generation change here */
	config_free(&b->cfg);
	b->cfg = cfg;
	METRIC_SET(b->stats->config_gen, cfg->generation);
}

static void bridge_cmd(const struct ipc_cmd *cmd, const char *payload,
		       void *ctx)
{
	struct bridge *b = ctx;
	if (cmd->type == IPC_CMD_QUIT)
		b->stopping = 1;
	else if (cmd->type == IPC_CMD_CONFIG)
		bridge_apply_config(b, cmd, payload, cmd->len);
	else if (cmd->type == IPC_CMD_REOPEN_LOG && log_reopen() < 0)
		log_error("reopen(%s) failed: %m", b->cfg->log_file);
}

static void bridge_channel(struct bridge *b)
{
	if (channel_read(b->channel, bridge_cmd, b) == 0)
		return;
	epoll_ctl(b->epfd, EPOLL_CTL_DEL, b->channel, NULL);
	b->stopping = 1;
}

static void bridge_event(struct bridge *b, const struct epoll_event *ev)
{
	switch (ev->data.u64) {
	case BRIDGE_TAG_CHANNEL:
		bridge_channel(b);
		break;
	case BRIDGE_TAG_DEAD:
		log_error("master died: exiting");
		epoll_ctl(b->epfd, EPOLL_CTL_DEL, b->dead_fd, NULL);
		b->stopping = 1;
		break;
	case BRIDGE_TAG_QUEUE:
		queue_receive(b->q, bridge_frame, b, 64);
		break;
	case BRIDGE_TAG_WAKE:
		bridge_drain_ring(b);
		break;
	default:
		break;
	}
}

/* ---- stop -------------------------------------------------------------- */

/* The farewell first, so the others mark us down now rather than at
 * node_timeout; then drain (what we published goes out) and close. */
static _Noreturn void bridge_stop(struct bridge *b)
{
	bridge_kv_stop();       /* its calls need the connection */
	bridge_publish_hb(b, 1);
	natsConnection_FlushTimeout(b->nc, 500);
	if (natsConnection_DrainTimeout(b->nc, BRIDGE_STOP_WAIT_MS) == NATS_OK) {
		int64_t until = time_now_ms() + BRIDGE_STOP_WAIT_MS + 500;
		while (!b->closed && time_now_ms() < until) {
			struct epoll_event ev;
			if (epoll_wait(b->epfd, &ev, 1, 50) > 0 &&
			    ev.data.u64 == BRIDGE_TAG_WAKE)
				bridge_drain_ring(b);
			b->now_ms = time_now_ms();
		}
	}
	natsSubscription_Destroy(b->sub_hb);
	bridge_route_stop(b);
	natsConnection_Destroy(b->nc);
	natsOptions_Destroy(b->opts);
	nats_CloseAndWait(1000);
	bridge_set_link(b, 0, NULL);
	log_info("bridge stopped (%llu frames from workers dropped)",
		 (unsigned long long)b->frames_dropped);
	queue_free(&b->q);
	config_free(&b->cfg);
	exit(0);
}

_Noreturn void cluster_bridge_main(struct worker_boot *boot)
{
	static struct bridge b;
	struct epoll_event evs[16];
	int64_t heartbeat = 0;

	bridge_init(&b, boot);
	for (;;) {
		b.now_ms = time_now_ms();
		int timeout = b.queue_waiting ? 5 : 250;
		if (b.next_hb_ms > b.now_ms && b.next_hb_ms - b.now_ms < timeout)
			timeout = (int)(b.next_hb_ms - b.now_ms);
		int n = epoll_wait(b.epfd, evs, 16, timeout);
		if (n < 0 && errno != EINTR)
			log_fatal("epoll_wait() failed: %m");
		b.now_ms = time_now_ms();
		/* liveness, as a worker's (the master's status) */
		if (b.now_ms - heartbeat >= METRICS_HEARTBEAT_EVERY_MS) {
			heartbeat = b.now_ms;
			METRIC_SET(b.stats->heartbeat_ms, heartbeat);
		}
		for (int i = 0; i < n; i++)
			bridge_event(&b, &evs[i]);
		if (b.stopping)
			bridge_stop(&b);
		bridge_tick(&b);
		/* frames for our workers (from other nodes, handed back):
		 * a worker's socket full keeps them in the outbox, tried
		 * again next turn, soon */
		b.queue_waiting = queue_flush(b.q) == 0;
	}
}

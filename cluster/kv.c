/*
 * kv.c - the cluster bridge's key-value thread: this node's lease, the
 * member list, and (on the coordinator) its changes, in the JetStream
 * key-value bucket xmppd_<cluster> (docs/DESIGN.md "Cluster", the rules
 * are cluster/members.c's).
 *
 * Why a thread: every JetStream call is a synchronous request, and one
 * made on the bridge's loop thread deadlocks it (measured, docs/plans/
 * issue15-cluster.md section 1).  This thread makes them one after the
 * other, once a second, and talks to the rest of the bridge and to the
 * workers only through the shared memory it writes (the member list
 * under its seqlock, our lease time and gauges as atomics) and the
 * connection handle it was given; it reads the node table like any
 * reader.  Nothing here touches struct bridge.  Keys are read from the
 * bucket stream's leader (kv_get), never from whichever replica answers
 * first: one catching up after a heal would give an old list.
 *
 * Failure policy: a call that fails (no quorum, NATS down, a lost
 * compare-and-set) is counted, logged at most every 10 s, and tried
 * again next round; the lease is then not renewed, so after
 * cluster.lease_time this node stops acting as an owner by itself.
 * A failed renewal of ours also restarts the clocks by which, as the
 * coordinator, we judge the others' leases: what failed for us failed
 * for their renewals too (a JetStream leader election takes no writes
 * while reads from the replicas go on), and a member is dropped only
 * for a lease that stood still while the store took writes.  Failed
 * reads do not count: during a partition some time out on the majority
 * side too (requests the cut replica was to answer), the store working.
 */
#include "bridge_int.h"
#include "members.h"
#include "fence.h"
#include "secret.h"
#include "log.h"
#include "util.h"

#include <nats/nats.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define KV_ROUND_MS 1000            /* a lease renewal and a read a second */
#define KV_CALL_MS 1000             /* a JetStream call waits this long */
#define KV_LOG_EVERY_MS 10000
#define KV_WATCH_MAX (2 * IPC_MAX_NODES)    /* the node table and members */

/* What we know of one node's lease key. */
struct kv_watch {
	char name[MEMBERS_NAME_MAX + 1];
	uint64_t rev;               /* its revision when last read */
	int64_t changed_ms;         /* our monotonic ms when rev last moved
				       (or when we first looked) */
	bool seen;                  /* the key exists */
	bool has_last;              /* last: the renewal taken last */
	struct lease_value last;
};

static struct kv {
	/* given at kv_start, fixed for the thread's life */
	natsConnection *nc;
	struct ipc_cluster *cl;
	char node[MEMBERS_NAME_MAX + 1];
	char bucket[64];
	char stream[72];            /* KV_<bucket>: the bucket's stream */
	char lease_key[64];
	uint64_t incarnation;
	int64_t timeout_ms, lease_ms, round_ms, skew_ms;
	/* the thread's own */
	jsCtx *js;
	kvStore *kv;
	uint64_t lease_rev;         /* our lease key's revision; 0: Put */
	uint64_t lease_count;       /* our renewals */
	bool members_bad;           /* the stored list was refused: the
				       coordinator writes its own again */
	int64_t refused_logged_ms;
	struct members cur;         /* the list as last read */
	uint64_t cur_rev;           /* its revision; 0: no key yet */
	struct kv_watch watch[KV_WATCH_MAX];
	unsigned nwatch;
	int64_t logged_ms;
	int64_t started_ms;         /* the thread's start (monotonic) */
	int64_t failed_ms;          /* when our lease renewal last failed
				       (or the thread started): the others'
				       leases are judged from then on */
	pthread_t thread;
	int running;
	_Atomic int stop;
} kv;

static void kv_fail(const char *what, natsStatus s)
{
	int64_t now = time_now_ms();
	METRIC_INC(kv.cl->kv_errors);
	if (kv.logged_ms != 0 && now - kv.logged_ms < KV_LOG_EVERY_MS)
		return;
	kv.logged_ms = now;
	log_warn("cluster: key-value %s (bucket %s): %s", what, kv.bucket,
		 natsStatus_GetText(s));
}

/* Bind to the bucket, or create it: 3 replicas (one NATS server may go),
 * 1 when the NATS cluster has fewer servers (creation with 3 fails). */
static int kv_bucket(void)
{
	jsOptions jo;
	kvConfig kc;
	natsStatus s;
	if (kv.kv != NULL)
		return 0;
	if (kv.js == NULL) {
		jsOptions_Init(&jo);
		jo.Wait = KV_CALL_MS;
		if ((s = natsConnection_JetStream(&kv.js, kv.nc, &jo)) !=
		    NATS_OK) {
			kv_fail("JetStream context", s);
			return -1;
		}
	}
	if ((s = js_KeyValue(&kv.kv, kv.js, kv.bucket)) == NATS_OK)
		return 0;
	kvConfig_Init(&kc);
	kc.Bucket = kv.bucket;
	kc.History = 1;
	kc.StorageType = js_MemoryStorage;
	kc.Replicas = 3;
	if ((s = js_CreateKeyValue(&kv.kv, kv.js, &kc)) == NATS_OK)
		return 0;
	kc.Replicas = 1;
	if ((s = js_CreateKeyValue(&kv.kv, kv.js, &kc)) == NATS_OK) {
		log_warn("cluster: key-value bucket %s has one replica (the "
			 "NATS cluster has fewer than 3 servers with "
			 "JetStream)", kv.bucket);
		return 0;
	}
	kv_fail("bucket", s);
	return -1;
}

/* ---- signed values (members.h "the values as stored") ---------------- */

#define KV_VALUE_MAX (MEMBERS_TEXT_MAX + SECRET_MAC_BYTES)

#define KV_SUBJECT_MAX 160           /* kv.<bucket>.<key> */

static void kv_mac_subject(const char *key, char *out, size_t size)
{
	snprintf(out, size, "kv.%s.%s", kv.bucket, key);
}

/* val then its MAC into out (KV_VALUE_MAX bytes); the length, or -1. */
static int kv_seal(const char *key, const char *val, int len,
		   unsigned char *out)
{
	char subject[KV_SUBJECT_MAX];
	if (len < 0 || (size_t)len > MEMBERS_TEXT_MAX)
		return -1;
	kv_mac_subject(key, subject, sizeof(subject));
	memcpy(out, val, (size_t)len);
	if (secret_cluster_mac(subject, out, (size_t)len, out + len) < 0)
		return -1;
	return len + SECRET_MAC_BYTES;
}

/* A value read: its text's length when the MAC is right, else -1. */
static int kv_unseal(const char *key, natsMsg *e, const char **text_r,
		     size_t *len_r)
{
	char subject[KV_SUBJECT_MAX];
	const void *data = natsMsg_GetData(e);
	int len = natsMsg_GetDataLength(e);
	kv_mac_subject(key, subject, sizeof(subject));
	if (data == NULL || len <= 0 ||
	    secret_cluster_check(subject, data, (size_t)len, len_r) < 0)
		return -1;
	*text_r = data;
	return 0;
}

/* One line a KV_LOG_EVERY_MS: what we refused and why. */
static void kv_refused(const char *key, const char *why)
{
	int64_t now = time_now_ms();
	METRIC_INC(kv.cl->kv_errors);
	if (kv.refused_logged_ms != 0 &&
	    now - kv.refused_logged_ms < KV_LOG_EVERY_MS)
		return;
	kv.refused_logged_ms = now;
	log_warn("cluster: key-value %s in %s refused: %s", key, kv.bucket,
		 why);
}

/* Our lease: Update on the revision we wrote last (a compare-and-set: a
 * second process with our name shows as a failure), Put when we have
 * none.  The time published is when the renewal was sent, so the
 * coordinator, which counts from when it saw the change, always waits
 * longer than we keep acting. */
static void kv_renew(void)
{
	char val[MEMBERS_LEASE_TEXT_MAX];
	unsigned char sealed[KV_VALUE_MAX];
	uint64_t rev = 0;
	int64_t sent = time_now_ms();
	natsStatus s;
	struct lease_value lv = {
		kv.incarnation, ++kv.lease_count, fence_wall_ms(),
	};
	int n = kv_seal(kv.lease_key, val, members_lease_format(&lv, val,
							       sizeof(val)),
			sealed);
	if (n < 0)
		return;         /* no key: the master always sets it */
	if (kv.lease_rev != 0)
		s = kvStore_Update(&rev, kv.kv, kv.lease_key, sealed, n,
				   kv.lease_rev);
	else
		s = kvStore_Put(&rev, kv.kv, kv.lease_key, sealed, n);
	if (s != NATS_OK) {
		kv.lease_rev = 0;
		kv.started_ms = kv.failed_ms = time_now_ms();
		kv_fail("lease renewal", s);
		return;
	}
	kv.lease_rev = rev;
	atomic_store_explicit(&kv.cl->lease_ms, sent, memory_order_release);
}

/* The last value of key (*m_r, its sequence is the key's revision),
 * read from the stream's leader: kvStore_Get asks any replica (a direct
 * get), and one catching up after a heal answers with what it had -- an
 * old member list, under which a node whose lease just came back would
 * own rooms the others moved, or a lease revision that looks as if it
 * had stood still, for which the coordinator would drop a live member.
 * NATS_NOT_FOUND: no such key (or deleted). */
static natsStatus kv_get(const char *key, natsMsg **m_r)
{
	char subj[160];
	const char *op = NULL;
	jsErrCode jerr = 0;
	*m_r = NULL;
	snprintf(subj, sizeof(subj), "$KV.%s.%s", kv.bucket, key);
	natsStatus s = js_GetLastMsg(m_r, kv.js, kv.stream, subj, NULL, &jerr);
	if (s != NATS_OK)
		return jerr == JSNoMessageFoundErr ? NATS_NOT_FOUND : s;
	if (natsMsgHeader_Get(*m_r, "KV-Operation", &op) == NATS_OK &&
	    op != NULL) {
		natsMsg_Destroy(*m_r);      /* a delete or purge marker */
		*m_r = NULL;
		return NATS_NOT_FOUND;
	}
	return NATS_OK;
}

/* The member list: 1 read (or absent: an empty list, revision 0), 0 on
 * an error (nothing decided this round).  A list not signed with the
 * cluster's key, or older than the one we hold, is refused: we keep
 * ours, and the coordinator writes its own over it. */
static int kv_read_members(void)
{
	natsMsg *e = NULL;
	struct members got;
	const char *text = NULL;
	size_t len = 0;
	natsStatus s = kv_get("members", &e);
	if (s == NATS_NOT_FOUND) {
		memset(&kv.cur, 0, sizeof(kv.cur));
		kv.cur_rev = 0;
		kv.members_bad = false;
		return 1;
	}
	if (s != NATS_OK) {
		kv_fail("members read", s);
		return 0;
	}
	uint64_t rev = natsMsg_GetSequence(e);
	kv.members_bad = true;
	if (kv_unseal("members", e, &text, &len) < 0)
		kv_refused("members", "not signed with cluster.secret_file's "
			   "key");
	else if (members_parse(&got, text, len) < 0)
		kv_refused("members", "unreadable");
	else if (kv.cur_rev != 0 && got.epoch < kv.cur.epoch)
		kv_refused("members", "an older epoch than ours (put back)");
	else {
		kv.cur = got;
		kv.members_bad = false;
	}
	/* the revision either way: the coordinator's compare-and-set is
	 * on what is stored */
	kv.cur_rev = rev;
	natsMsg_Destroy(e);
	shm_cluster_write_members(kv.cl, &kv.cur, time_now_ms());
	return 1;
}

static struct kv_watch *kv_watch_of(const char *name)
{
	for (unsigned i = 0; i < kv.nwatch; i++)
		if (strcmp(kv.watch[i].name, name) == 0)
			return &kv.watch[i];
	if (kv.nwatch == KV_WATCH_MAX || name[0] == '\0')
		return NULL;
	struct kv_watch *w = &kv.watch[kv.nwatch++];
	memset(w, 0, sizeof(*w));
	snprintf(w->name, sizeof(w->name), "%s", name);
	return w;
}

/* A lease value written by its node, and a renewal newer than the last
 * we took (not one put back): its clock may move. */
static bool kv_lease_taken(struct kv_watch *w, const char *key, natsMsg *e)
{
	struct lease_value v;
	const char *text = NULL;
	size_t len = 0;
	if (kv_unseal(key, e, &text, &len) < 0) {
		kv_refused(key, "not signed with cluster.secret_file's key");
		return false;
	}
	if (members_lease_parse(&v, text, len) < 0) {
		kv_refused(key, "unreadable");
		return false;
	}
	if (!members_lease_fresh(w->has_last ? &w->last : NULL, &v,
				 fence_wall_ms(), kv.skew_ms)) {
		kv_refused(key, "not a new renewal (put back, or sent longer "
			   "ago than cluster.clock_skew)");
		return false;
	}
	w->last = v;
	w->has_last = true;
	return true;
}

/* Read one node's lease key; its clock moves when its revision does
 * (with a signed, new renewal in it). */
static void kv_look(struct kv_watch *w, int64_t now)
{
	char key[64];
	natsMsg *e = NULL;
	snprintf(key, sizeof(key), "lease.%s", w->name);
	natsStatus s = kv_get(key, &e);
	if (s == NATS_NOT_FOUND) {
		w->seen = false;
		return;
	}
	if (s != NATS_OK) {
		kv_fail("lease read", s);
		return;
	}
	uint64_t rev = natsMsg_GetSequence(e);
	if (!w->seen || rev != w->rev) {
		w->rev = rev;
		if (kv_lease_taken(w, key, e)) {
			w->changed_ms = now;
			w->seen = true;
		}
	}
	natsMsg_Destroy(e);
}

/* Every node of the table and every member: their views. */
static unsigned kv_views(struct member_view *views, int64_t now)
{
	struct ipc_cluster_node n;
	unsigned nv = 0;
	uint32_t nn = atomic_load(&kv.cl->nnodes);
	for (uint32_t i = 0; i < nn && i < IPC_MAX_NODES; i++)
		if (shm_cluster_read_node(kv.cl, i, &n) &&
		    n.state != IPC_NODE_FREE &&
		    n.state != IPC_NODE_INCOMPATIBLE)
			kv_watch_of(n.name);
	for (unsigned i = 0; i < kv.cur.n; i++)
		kv_watch_of(kv.cur.m[i].name);
	for (unsigned i = 0; i < kv.nwatch && !atomic_load(&kv.stop); i++) {
		struct kv_watch *w = &kv.watch[i];
		struct member_view *v = &views[nv++];
		kv_look(w, now);
		memset(v, 0, sizeof(*v));
		snprintf(v->name, sizeof(v->name), "%s", w->name);
		v->lease_seen = w->seen;
		v->lease_changed_ms = w->changed_ms;
		v->judged_from_ms = kv.failed_ms;
		for (uint32_t k = 0; k < nn && k < IPC_MAX_NODES; k++) {
			if (!shm_cluster_read_node(kv.cl, k, &n) ||
			    strcmp(n.name, w->name) != 0)
				continue;
			v->up = n.state == IPC_NODE_SELF ||
				n.state == IPC_NODE_UP ||
				n.state == IPC_NODE_SUSPECT;
			v->incarnation = k == 0 ? kv.incarnation :
					 n.incarnation;
		}
	}
	return nv;
}

static void kv_log_members(const struct members *ms)
{
	char list[MEMBERS_MAX * (MEMBERS_NAME_MAX + 1) + 1] = "";
	size_t off = 0;
	for (unsigned i = 0; i < ms->n && off < sizeof(list); i++)
		off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s",
					i > 0 ? " " : "", ms->m[i].name);
	log_info("cluster: members epoch %llu: %s",
		 (unsigned long long)ms->epoch, ms->n > 0 ? list : "(none)");
}

/* The coordinator writes the next list by compare-and-set on the
 * revision it read; losing the race is fine (the winner's list is read
 * next round). */
static void kv_coordinate(int64_t now)
{
	static struct member_view views[KV_WATCH_MAX];
	static struct members next;
	char text[MEMBERS_TEXT_MAX];
	uint64_t rev = 0;
	natsStatus s;
	unsigned nv = kv_views(views, now);
	unsigned char sealed[KV_VALUE_MAX];
	/* for node_timeout after our start we may not have heard the
	 * nodes that are up (a heartbeat a second): a restarted node
	 * would take itself for the lowest one up and write its new run
	 * into the list at once, and own rooms before the others' session
	 * snapshots reach it (their occupants' sessions not in our table:
	 * the room's presence to them would go nowhere) */
	if (now - kv.started_ms < kv.timeout_ms)
		return;
	if (!shm_cluster_owner_ok(kv.cl, time_now_ms(),
				  (uint64_t)kv.lease_ms) ||
	    !members_is_coordinator(&kv.cur, views, nv, kv.node))
		return;
	if (!members_next(&kv.cur, views, nv, now, kv.timeout_ms, kv.lease_ms,
			  &next)) {
		if (!kv.members_bad)
			return;
		next = kv.cur;  /* ours again over what we refused */
	}
	int len = kv_seal("members", text, members_format(&next, text,
							  sizeof(text)),
			  sealed);
	if (len < 0)
		return;
	if (kv.cur_rev != 0)
		s = kvStore_Update(&rev, kv.kv, "members", sealed, len,
				   kv.cur_rev);
	else
		s = kvStore_Create(&rev, kv.kv, "members", sealed, len);
	if (s != NATS_OK) {
		kv_fail("members write", s);
		return;
	}
	kv.cur = next;
	kv.cur_rev = rev;
	kv.members_bad = false;
	METRIC_INC(kv.cl->epoch_changes);
	shm_cluster_write_members(kv.cl, &kv.cur, time_now_ms());
	kv_log_members(&kv.cur);
}

static void kv_round(void)
{
	int64_t now = time_now_ms();
	if (kv_bucket() < 0) {
		kv.failed_ms = now;
		METRIC_SET(kv.cl->kv_up, 0u);
		return;
	}
	uint64_t errors = METRIC_GET(kv.cl->kv_errors);
	kv_renew();
	if (kv_read_members())
		kv_coordinate(now);
	METRIC_SET(kv.cl->kv_up, METRIC_GET(kv.cl->kv_errors) == errors ?
		   1u : 0u);
}

static void kv_sleep_until(int64_t at)
{
	while (!atomic_load(&kv.stop)) {
		int64_t left = at - time_now_ms();
		if (left <= 0)
			return;
		if (left > 100)
			left = 100;     /* a stop is noticed soon */
		struct timespec ts = { 0, (long)left * 1000000L };
		nanosleep(&ts, NULL);
	}
}

static void *kv_main(void *arg)
{
	(void)arg;
	while (!atomic_load(&kv.stop)) {
		int64_t start = time_now_ms();
		kv_round();
		METRIC_SET(kv.cl->owner_ok, (uint32_t)shm_cluster_owner_ok(
				   kv.cl, time_now_ms(),
				   (uint64_t)kv.lease_ms));
		kv_sleep_until(start + kv.round_ms);
	}
	return NULL;
}

void bridge_kv_start(struct bridge *b)
{
	memset(&kv, 0, sizeof(kv));
	kv.nc = b->nc;
	kv.cl = b->cl;
	kv.incarnation = b->incarnation;
	snprintf(kv.node, sizeof(kv.node), "%s", b->node);
	snprintf(kv.bucket, sizeof(kv.bucket), "xmppd_%s", b->cluster);
	snprintf(kv.stream, sizeof(kv.stream), "KV_%s", kv.bucket);
	snprintf(kv.lease_key, sizeof(kv.lease_key), "lease.%s", b->node);
	kv.timeout_ms = (int64_t)b->timeout_ms;
	kv.lease_ms = (int64_t)b->lease_ms;
	kv.skew_ms = (int64_t)b->cfg->cluster_clock_skew;
	kv.round_ms = KV_ROUND_MS;
	kv.started_ms = kv.failed_ms = time_now_ms();
	if (kv.round_ms > kv.lease_ms / 3)
		kv.round_ms = kv.lease_ms / 3;  /* a few tries per lease */
	/* a new bridge starts without a lease: the last one's stays
	 * valid (it was renewed by a thread of this node) until it runs out */
	METRIC_SET(kv.cl->kv_up, 0u);
	if (pthread_create(&kv.thread, NULL, kv_main, NULL) != 0)
		log_fatal("cluster: key-value thread not started: %m");
	kv.running = 1;
}

void bridge_kv_stop(void)
{
	if (!kv.running)
		return;
	atomic_store(&kv.stop, 1);
	pthread_join(kv.thread, NULL);
	kv.running = 0;
	if (kv.kv != NULL)
		kvStore_Destroy(kv.kv);
	if (kv.js != NULL)
		jsCtx_Destroy(kv.js);
	kv.kv = NULL;
	kv.js = NULL;
	/* we stop owning now, not at the lease's end: the next owner may
	 * not start sooner, but nothing is accepted here meanwhile */
	atomic_store(&kv.cl->lease_ms, 0);
	METRIC_SET(kv.cl->owner_ok, 0u);
}

/*
 * metrics.c - the per-worker counters of shared memory read back as
 * OpenMetrics 1.0 text or Prometheus text 0.0.4 (metrics_render), and
 * the readiness verdict behind GET /health (metrics_health).  Used by the
 * workers' HTTP routes (worker/metrics.c) and by the master's control
 * socket (`metrics`, `xmppctl stats`): both read the same mapping, so a
 * scrape never asks a worker for anything.  Process CPU and memory come
 * from /proc/PID/stat and /proc/PID/statm of each worker at render time.
 * Failure policy: a value that cannot be read (a /proc file of a worker
 * that just died) is left out; rendering fails only when the output
 * buffer's limit is reached.
 */
#include "metrics.h"
#include "buf.h"
#include "shm.h"
#include "smstore.h"
#include "cluster.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/opensslv.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

static struct ipc_worker_stats metrics_private;
struct ipc_worker_stats *metrics_self = &metrics_private;

static const char *const metrics_mechs[IPC_MECH_MAX] = {
	[IPC_MECH_NONE] = "none",
	[IPC_MECH_PLAIN] = "PLAIN",
	[IPC_MECH_SCRAM_SHA_1] = "SCRAM-SHA-1",
	[IPC_MECH_SCRAM_SHA_1_PLUS] = "SCRAM-SHA-1-PLUS",
	[IPC_MECH_SCRAM_SHA_256] = "SCRAM-SHA-256",
	[IPC_MECH_SCRAM_SHA_256_PLUS] = "SCRAM-SHA-256-PLUS",
};

static const char *const metrics_sasl_reasons[IPC_SASL_REASON_MAX] = {
	[IPC_SASL_ABORTED] = "aborted",
	[IPC_SASL_ACCOUNT_DISABLED] = "account-disabled",
	[IPC_SASL_CREDENTIALS_EXPIRED] = "credentials-expired",
	[IPC_SASL_ENCRYPTION_REQUIRED] = "encryption-required",
	[IPC_SASL_INCORRECT_ENCODING] = "incorrect-encoding",
	[IPC_SASL_INVALID_AUTHZID] = "invalid-authzid",
	[IPC_SASL_INVALID_MECHANISM] = "invalid-mechanism",
	[IPC_SASL_MALFORMED_REQUEST] = "malformed-request",
	[IPC_SASL_MECHANISM_TOO_WEAK] = "mechanism-too-weak",
	[IPC_SASL_NOT_AUTHORIZED] = "not-authorized",
	[IPC_SASL_TEMPORARY_AUTH_FAILURE] = "temporary-auth-failure",
};

static const char *const metrics_stanza_errors[IPC_SERR_MAX] = {
	[IPC_SERR_BAD_REQUEST] = "bad-request",
	[IPC_SERR_CONFLICT] = "conflict",
	[IPC_SERR_FEATURE_NOT_IMPLEMENTED] = "feature-not-implemented",
	[IPC_SERR_FORBIDDEN] = "forbidden",
	[IPC_SERR_GONE] = "gone",
	[IPC_SERR_INTERNAL_SERVER_ERROR] = "internal-server-error",
	[IPC_SERR_ITEM_NOT_FOUND] = "item-not-found",
	[IPC_SERR_JID_MALFORMED] = "jid-malformed",
	[IPC_SERR_NOT_ACCEPTABLE] = "not-acceptable",
	[IPC_SERR_NOT_ALLOWED] = "not-allowed",
	[IPC_SERR_NOT_AUTHORIZED] = "not-authorized",
	[IPC_SERR_POLICY_VIOLATION] = "policy-violation",
	[IPC_SERR_RECIPIENT_UNAVAILABLE] = "recipient-unavailable",
	[IPC_SERR_REDIRECT] = "redirect",
	[IPC_SERR_REGISTRATION_REQUIRED] = "registration-required",
	[IPC_SERR_REMOTE_SERVER_NOT_FOUND] = "remote-server-not-found",
	[IPC_SERR_REMOTE_SERVER_TIMEOUT] = "remote-server-timeout",
	[IPC_SERR_RESOURCE_CONSTRAINT] = "resource-constraint",
	[IPC_SERR_SERVICE_UNAVAILABLE] = "service-unavailable",
	[IPC_SERR_SUBSCRIPTION_REQUIRED] = "subscription-required",
	[IPC_SERR_UNDEFINED_CONDITION] = "undefined-condition",
	[IPC_SERR_UNEXPECTED_REQUEST] = "unexpected-request",
};

static const char *const metrics_kinds[IPC_STANZA_KIND_MAX] = {
	"message", "presence", "iq", "other"
};
static const char *const metrics_listeners[IPC_LISTENER_MAX] = {
	"starttls", "direct_tls"
};
static const char *const metrics_tls[IPC_TLS_MAX] = {
	"none", "TLSv1.2", "TLSv1.3"
};

/* the status codes worker/http.c sends, then any other */
static const int metrics_http_codes[IPC_HTTP_STATUS_MAX - 1] = {
	100, 200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 405, 408,
	411, 413, 414, 417, 429, 431, 500, 501, 503, 505
};

/* le of each bucket, canonical as OpenMetrics wants ("1.0", not "1") */
static const char *const metrics_le[IPC_DB_NBUCKETS] = {
	"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
	"0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "+Inf"
};
static const int64_t metrics_bounds_us[IPC_DB_NBUCKETS - 1] = {
	IPC_DB_BUCKETS_US
};

const char *metrics_mech_name(enum ipc_mech m)
{
	return (unsigned)m < IPC_MECH_MAX ? metrics_mechs[m] : "none";
}

const char *metrics_sasl_reason_name(enum ipc_sasl_reason r)
{
	return (unsigned)r < IPC_SASL_REASON_MAX ? metrics_sasl_reasons[r]
						 : "?";
}

const char *metrics_stanza_error_name(enum ipc_stanza_error e)
{
	return (unsigned)e < IPC_SERR_MAX ? metrics_stanza_errors[e] : "?";
}

static int metrics_index(const char *const *names, int n, const char *s)
{
	if (s == NULL)
		return -1;
	for (int i = 0; i < n; i++)
		if (strcmp(names[i], s) == 0)
			return i;
	return -1;
}

int metrics_sasl_reason(const char *condition)
{
	return metrics_index(metrics_sasl_reasons, IPC_SASL_REASON_MAX,
			     condition);
}

int metrics_stanza_error(const char *condition)
{
	return metrics_index(metrics_stanza_errors, IPC_SERR_MAX, condition);
}

unsigned metrics_http_status(int status)
{
	for (unsigned i = 0; i < IPC_HTTP_STATUS_MAX - 1; i++)
		if (metrics_http_codes[i] == status)
			return i;
	return IPC_HTTP_STATUS_MAX - 1;
}

/* ---- writers' helpers --------------------------------------------------- */

void metrics_reset_gauges(struct ipc_worker_stats *st)
{
	METRIC_SET(st->connections, 0);
	for (int l = 0; l < IPC_LISTENER_MAX; l++)
		for (int t = 0; t < IPC_TLS_MAX; t++)
			for (int a = 0; a < 2; a++)
				METRIC_SET(st->conns[l][t][a], 0);
	METRIC_SET(st->sessions, 0);
	METRIC_SET(st->queue_depth, 0);
	METRIC_SET(st->queue_bytes, 0);
	METRIC_SET(st->http_connections, 0);
	METRIC_SET(st->tls_missing, 0);
	METRIC_SET(st->heartbeat_ms, 0);
	METRIC_SET(st->db.up, 0);
	METRIC_SET(st->db.reason_len, 0);
}

void metrics_db_up(struct ipc_db_stats *st)
{
	METRIC_INC(st->link_up);
	METRIC_SET(st->up, 1);
}

void metrics_db_down(struct ipc_db_stats *st, const char *reason)
{
	size_t n = reason != NULL ? strcspn(reason, "\n") : 0;
	if (n >= sizeof(st->reason))
		n = sizeof(st->reason) - 1;
	if (METRIC_GET(st->up))
		METRIC_INC(st->link_down);
	METRIC_SET(st->up, 0);
	/* readers take reason_len bytes at most: shorten first, then write */
	METRIC_SET(st->reason_len, 0);
	atomic_signal_fence(memory_order_seq_cst);
	if (n > 0)
		memcpy(st->reason, reason, n);
	st->reason[n] = '\0';
	atomic_thread_fence(memory_order_release);
	METRIC_SET(st->reason_len, (uint32_t)n);
}

void metrics_db_observe(struct ipc_db_stats *st, int64_t us, int failed)
{
	unsigned b = 0;
	if (us < 0)
		us = 0;
	while (b < IPC_DB_NBUCKETS - 1 && us > metrics_bounds_us[b])
		b++;
	METRIC_INC(st->buckets[b]);
	METRIC_ADD(st->sum_us, (uint64_t)us);
	METRIC_INC(st->count);
	if (failed)
		METRIC_INC(st->errors);
}

/* ---- rendering ---------------------------------------------------------- */

enum metrics_format metrics_format_for(const char *accept)
{
	/* OpenMetrics only when asked for by name (Prometheus asks for it
	 * first and falls back to text/plain itself) */
	if (accept != NULL &&
	    strstr(accept, "application/openmetrics-text") != NULL)
		return METRICS_OPENMETRICS;
	return METRICS_PROMETHEUS;
}

void metrics_label_escape(struct buf *out, const char *v)
{
	for (const char *p = v; *p != '\0'; p++) {
		if (*p == '\\')
			buf_append(out, "\\\\", 2);
		else if (*p == '"')
			buf_append(out, "\\\"", 2);
		else if (*p == '\n')
			buf_append(out, "\\n", 2);
		else
			buf_append(out, p, 1);
	}
}

struct metrics_ctx {
	struct buf *out;
	int om;                 /* OpenMetrics, else Prometheus 0.0.4 */
	int failed;
	const char *name;       /* family being written */
	const char *suffix;     /* "_total" for counters */
};

enum metrics_type {
	METRICS_COUNTER = 1,
	METRICS_GAUGE,
	METRICS_HISTOGRAM,
	METRICS_INFO,
};

static void metrics_out(struct metrics_ctx *m, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void metrics_out(struct metrics_ctx *m, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) ||
	    buf_append(m->out, line, (size_t)n) < 0)
		m->failed = 1;
}

/* The family's metadata: name without _total (OpenMetrics) and, when
 * unit is not NULL, ending in _<unit>. */
static void metrics_family(struct metrics_ctx *m, const char *name,
			   enum metrics_type type, const char *unit,
			   const char *help)
{
	static const char *const om_types[] = {
		[METRICS_COUNTER] = "counter", [METRICS_GAUGE] = "gauge",
		[METRICS_HISTOGRAM] = "histogram", [METRICS_INFO] = "info",
	};
	m->name = name;
	m->suffix = type == METRICS_COUNTER ? "_total" :
		    type == METRICS_INFO ? "_info" : "";
	if (m->om) {
		metrics_out(m, "# TYPE %s %s\n", name, om_types[type]);
		if (unit != NULL)
			metrics_out(m, "# UNIT %s %s\n", name, unit);
		metrics_out(m, "# HELP %s %s\n", name, help);
	} else {
		/* 0.0.4: the sample's full name, no UNIT, no info type */
		metrics_out(m, "# HELP %s%s %s\n", name, m->suffix, help);
		metrics_out(m, "# TYPE %s%s %s\n", name, m->suffix,
			    type == METRICS_INFO ? "gauge" : om_types[type]);
	}
}

/* One sample of the current family; labels is `k="v",...` or "". */
static void metrics_sample(struct metrics_ctx *m, const char *labels,
			   unsigned long long v)
{
	metrics_out(m, "%s%s%s%s%s %llu\n", m->name, m->suffix,
		    labels[0] ? "{" : "", labels, labels[0] ? "}" : "", v);
}

static void metrics_sample_signed(struct metrics_ctx *m, const char *labels,
				  long long v)
{
	metrics_out(m, "%s%s%s%s%s %lld\n", m->name, m->suffix,
		    labels[0] ? "{" : "", labels, labels[0] ? "}" : "", v);
}

static void metrics_sample_float(struct metrics_ctx *m, const char *labels,
				 double v)
{
	metrics_out(m, "%s%s%s%s%s %.6f\n", m->name, m->suffix,
		    labels[0] ? "{" : "", labels, labels[0] ? "}" : "", v);
}

/* One counter or gauge with only the worker label, per slot. */
#define METRICS_PER_WORKER(m, shm, nslots, field)                          \
	do {                                                                 \
		for (unsigned i_ = 0; i_ < (nslots); i_++) {                 \
			char l_[32];                                         \
			snprintf(l_, sizeof(l_), "worker=\"%u\"", i_);       \
			metrics_sample((m), l_, (unsigned long long)         \
				       METRIC_GET(shm_worker_stats((shm), i_) \
						  ->field));                \
		}                                                            \
	} while (0)

/* /proc/PID/stat: utime + stime (clock ticks); statm: resident pages. */
static int metrics_proc(pid_t pid, double *cpu_r, unsigned long long *rss_r)
{
	char path[64], text[1024];
	int fd;
	ssize_t n;
	unsigned long long utime, stime, size, resident;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	text[n] = '\0';
	/* after "pid (comm) ": comm may hold spaces and parentheses */
	char *p = strrchr(text, ')');
	if (p == NULL || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u "
				"%*u %*u %llu %llu", &utime, &stime) != 2)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	text[n] = '\0';
	if (sscanf(text, "%llu %llu", &size, &resident) != 2)
		return -1;
	long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	*cpu_r = (double)(utime + stime) / (double)(tck > 0 ? tck : 100);
	*rss_r = resident * (unsigned long long)(page > 0 ? page : 4096);
	return 0;
}

static void metrics_render_process(struct metrics_ctx *m,
				   struct shm_region *shm, unsigned nslots)
{
	double cpu[IPC_MAX_SLOTS];
	unsigned long long rss[IPC_MAX_SLOTS];
	int ok[IPC_MAX_SLOTS];
	char l[32];

	for (unsigned i = 0; i < nslots; i++) {
		struct ipc_worker_stats *st = shm_worker_stats(shm, i);
		/* before /proc: the master adds a reaped worker's CPU here
		 * after wait4 (master/reap.c), when /proc/PID is gone */
		uint64_t reaped = METRIC_GET(st->cpu_reaped_us);
		atomic_thread_fence(memory_order_acquire);
		pid_t pid = METRIC_GET(st->pid);
		ok[i] = pid > 0 && metrics_proc(pid, &cpu[i], &rss[i]) == 0;
		if (ok[i])
			cpu[i] += (double)reaped / 1e6;
	}
	metrics_family(m, "xmppd_worker_cpu_seconds", METRICS_COUNTER,
		       "seconds", "User and system CPU time of the slot's "
		       "worker processes, the one running now "
		       "(/proc/PID/stat) and those before it.");
	for (unsigned i = 0; i < nslots; i++) {
		snprintf(l, sizeof(l), "worker=\"%u\"", i);
		if (ok[i])
			metrics_sample_float(m, l, cpu[i]);
	}
	metrics_family(m, "xmppd_worker_resident_memory_bytes", METRICS_GAUGE,
		       "bytes", "Resident set size of the worker process "
		       "(/proc/PID/statm).");
	for (unsigned i = 0; i < nslots; i++) {
		snprintf(l, sizeof(l), "worker=\"%u\"", i);
		if (ok[i])
			metrics_sample(m, l, rss[i]);
	}
}

static void metrics_render_db(struct metrics_ctx *m, struct shm_region *shm,
			      unsigned nslots)
{
	char l[64];
	metrics_family(m, "xmppd_db_query_duration_seconds",
		       METRICS_HISTOGRAM, "seconds", "Round trips of database "
		       "queries, from queued to answered.");
	for (unsigned i = 0; i < nslots; i++) {
		const struct ipc_db_stats *d = &shm_worker_stats(shm, i)->db;
		unsigned long long cum = 0;
		for (unsigned b = 0; b < IPC_DB_NBUCKETS; b++) {
			cum += METRIC_GET(d->buckets[b]);
			snprintf(l, sizeof(l), "worker=\"%u\",le=\"%s\"", i,
				 metrics_le[b]);
			metrics_out(m, "%s_bucket{%s} %llu\n", m->name, l, cum);
		}
		/* _count from the buckets read: they must agree */
		metrics_out(m, "%s_count{worker=\"%u\"} %llu\n", m->name, i,
			    cum);
		metrics_out(m, "%s_sum{worker=\"%u\"} %.6f\n", m->name, i,
			    (double)METRIC_GET(d->sum_us) / 1e6);
	}
	metrics_family(m, "xmppd_db_query_errors", METRICS_COUNTER, NULL,
		       "Database queries answered with an error or failed "
		       "by a lost link.");
	METRICS_PER_WORKER(m, shm, nslots, db.errors);
	metrics_family(m, "xmppd_db_up", METRICS_GAUGE, NULL,
		       "1 when the worker's database link is up.");
	METRICS_PER_WORKER(m, shm, nslots, db.up);
	metrics_family(m, "xmppd_db_link_ups", METRICS_COUNTER, NULL,
		       "Times the worker's database link came up.");
	METRICS_PER_WORKER(m, shm, nslots, db.link_up);
	metrics_family(m, "xmppd_db_link_downs", METRICS_COUNTER, NULL,
		       "Times the worker's database link went down.");
	METRICS_PER_WORKER(m, shm, nslots, db.link_down);
}

static void metrics_render_workers(struct metrics_ctx *m,
				   struct shm_region *shm, unsigned nslots)
{
	int64_t now = time_now_ms();
	char l[160];

	metrics_family(m, "xmppd_worker_up", METRICS_GAUGE, NULL,
		       "1 when the slot has a running worker process.");
	for (unsigned i = 0; i < nslots; i++) {
		snprintf(l, sizeof(l), "worker=\"%u\"", i);
		metrics_sample(m, l, METRIC_GET(shm_worker_stats(shm, i)->pid)
				     > 0);
	}
	metrics_family(m, "xmppd_worker_restarts", METRICS_COUNTER, NULL,
		       "Times the slot's worker was started again after "
		       "it exited.");
	METRICS_PER_WORKER(m, shm, nslots, restarts);
	metrics_family(m, "xmppd_worker_heartbeat_age_seconds", METRICS_GAUGE,
		       "seconds", "Time since the worker's event loop last "
		       "turned (health: stale after 5 s).");
	for (unsigned i = 0; i < nslots; i++) {
		int64_t hb = METRIC_GET(shm_worker_stats(shm, i)->heartbeat_ms);
		snprintf(l, sizeof(l), "worker=\"%u\"", i);
		if (hb > 0)
			metrics_sample_float(m, l, (double)(now > hb ? now - hb
							    : 0) / 1000.0);
	}
	metrics_family(m, "xmppd_worker_config_generation", METRICS_GAUGE,
		       NULL, "Configuration generation the worker runs.");
	METRICS_PER_WORKER(m, shm, nslots, config_gen);

	metrics_family(m, "xmppd_connections", METRICS_GAUGE, NULL,
		       "Open client connections by listener, TLS version "
		       "and authentication.");
	for (unsigned i = 0; i < nslots; i++) {
		struct ipc_worker_stats *st = shm_worker_stats(shm, i);
		for (int li = 0; li < IPC_LISTENER_MAX; li++)
			for (int t = 0; t < IPC_TLS_MAX; t++)
				for (int a = 0; a < 2; a++) {
					snprintf(l, sizeof(l), "worker=\"%u\","
						 "listener=\"%s\",tls_version="
						 "\"%s\",authenticated=\"%s\"",
						 i, metrics_listeners[li],
						 metrics_tls[t],
						 a ? "true" : "false");
					int64_t v = METRIC_GET(st->conns[li][t]
							       [a]);
					metrics_sample_signed(m, l, v > 0 ? v
								       : 0);
				}
	}
	metrics_family(m, "xmppd_connections_accepted", METRICS_COUNTER, NULL,
		       "Client connections accepted.");
	METRICS_PER_WORKER(m, shm, nslots, accepted_total);
	metrics_family(m, "xmppd_sessions", METRICS_GAUGE, NULL,
		       "Bound resources (sessions) on the worker.");
	METRICS_PER_WORKER(m, shm, nslots, sessions);
	metrics_family(m, "xmppd_session_binds", METRICS_COUNTER, NULL,
		       "Resources bound.");
	METRICS_PER_WORKER(m, shm, nslots, binds);

	metrics_family(m, "xmppd_logins", METRICS_COUNTER, NULL,
		       "Successful SASL authentications by mechanism.");
	for (unsigned i = 0; i < nslots; i++)
		for (int k = IPC_MECH_PLAIN; k < IPC_MECH_MAX; k++) {
			snprintf(l, sizeof(l), "worker=\"%u\",mechanism=\"%s\"",
				 i, metrics_mechs[k]);
			metrics_sample(m, l, METRIC_GET(shm_worker_stats(shm, i)
							->logins[k]));
		}
	metrics_family(m, "xmppd_login_failures", METRICS_COUNTER, NULL,
		       "Failed SASL exchanges by mechanism and RFC 6120 "
		       "failure condition (only those seen).");
	for (unsigned i = 0; i < nslots; i++)
		for (int k = 0; k < IPC_MECH_MAX; k++)
			for (int r = 0; r < IPC_SASL_REASON_MAX; r++) {
				uint64_t v = METRIC_GET(shm_worker_stats(shm, i)
						->login_failures[k][r]);
				if (v == 0)
					continue;
				snprintf(l, sizeof(l), "worker=\"%u\",mechanism="
					 "\"%s\",reason=\"%s\"", i,
					 metrics_mechs[k],
					 metrics_sasl_reasons[r]);
				metrics_sample(m, l, v);
			}

	metrics_family(m, "xmppd_stanzas_received", METRICS_COUNTER, NULL,
		       "Top-level elements read from clients by kind "
		       "(other: SASL, STARTTLS and other stream-level ones).");
	for (unsigned i = 0; i < nslots; i++)
		for (int k = 0; k < IPC_STANZA_KIND_MAX; k++) {
			snprintf(l, sizeof(l), "worker=\"%u\",kind=\"%s\"", i,
				 metrics_kinds[k]);
			metrics_sample(m, l, METRIC_GET(shm_worker_stats(shm, i)
							->stanzas_in[k]));
		}
	metrics_family(m, "xmppd_stanzas_sent", METRICS_COUNTER, NULL,
		       "Stanzas queued for writing to clients by kind.");
	for (unsigned i = 0; i < nslots; i++)
		for (int k = 0; k < IPC_STANZA_OTHER; k++) {
			snprintf(l, sizeof(l), "worker=\"%u\",kind=\"%s\"", i,
				 metrics_kinds[k]);
			metrics_sample(m, l, METRIC_GET(shm_worker_stats(shm, i)
							->stanzas_out[k]));
		}
	metrics_family(m, "xmppd_stanza_errors", METRICS_COUNTER, NULL,
		       "Stanza error replies sent (bounces), by RFC 6120 "
		       "condition (only those seen).");
	for (unsigned i = 0; i < nslots; i++)
		for (int k = 0; k < IPC_SERR_MAX; k++) {
			uint64_t v = METRIC_GET(shm_worker_stats(shm, i)
						->stanza_errors[k]);
			if (v == 0)
				continue;
			snprintf(l, sizeof(l), "worker=\"%u\",condition=\"%s\"",
				 i, metrics_stanza_errors[k]);
			metrics_sample(m, l, v);
		}
	metrics_family(m, "xmppd_stream_errors", METRICS_COUNTER, NULL,
		       "Stream errors sent and accept failures.");
	METRICS_PER_WORKER(m, shm, nslots, errors);
	metrics_family(m, "xmppd_received_bytes", METRICS_COUNTER, "bytes",
		       "Bytes read from XMPP client connections (after TLS "
		       "decryption: the XML).");
	METRICS_PER_WORKER(m, shm, nslots, bytes_in);
	metrics_family(m, "xmppd_sent_bytes", METRICS_COUNTER, "bytes",
		       "Bytes queued for XMPP clients (before TLS "
		       "encryption: the XML).");
	METRICS_PER_WORKER(m, shm, nslots, bytes_out);
	metrics_family(m, "xmppd_routed_frames_sent", METRICS_COUNTER, NULL,
		       "Frames sent to other workers' queues.");
	METRICS_PER_WORKER(m, shm, nslots, frames_out);
	metrics_family(m, "xmppd_routed_frames_received", METRICS_COUNTER,
		       NULL, "Frames received from other workers.");
	METRICS_PER_WORKER(m, shm, nslots, frames_in);
	metrics_family(m, "xmppd_queue_frames", METRICS_GAUGE, NULL,
		       "Frames waiting in the worker's outboxes.");
	METRICS_PER_WORKER(m, shm, nslots, queue_depth);
	metrics_family(m, "xmppd_queue_outbox_bytes", METRICS_GAUGE, "bytes",
		       "Bytes waiting in the worker's outboxes.");
	METRICS_PER_WORKER(m, shm, nslots, queue_bytes);
	metrics_family(m, "xmppd_queue_refused_frames", METRICS_COUNTER, NULL,
		       "Frames refused because an outbox was full.");
	METRICS_PER_WORKER(m, shm, nslots, queue_full);
	metrics_family(m, "xmppd_offline_stored_messages", METRICS_COUNTER,
		       NULL, "Messages stored for offline accounts.");
	METRICS_PER_WORKER(m, shm, nslots, offline_stored);
	metrics_family(m, "xmppd_offline_delivered_messages", METRICS_COUNTER,
		       NULL, "Stored messages delivered.");
	METRICS_PER_WORKER(m, shm, nslots, offline_delivered);
	metrics_family(m, "xmppd_offline_nudges", METRICS_COUNTER, NULL,
		       "Sessions told to read offline storage again: a message "
		       "for them was stored after they had read it.");
	METRICS_PER_WORKER(m, shm, nslots, offline_nudges);
	metrics_family(m, "xmppd_csi_held_stanzas", METRICS_COUNTER, NULL,
		       "Stanzas held for inactive clients (XEP-0352).");
	METRICS_PER_WORKER(m, shm, nslots, csi_held);
	metrics_family(m, "xmppd_csi_writes_spared", METRICS_COUNTER, NULL,
		       "Writes inactive clients were spared: held presence "
		       "merged away, held stanzas written together.");
	METRICS_PER_WORKER(m, shm, nslots, csi_spared);
	metrics_family(m, "xmppd_mam_archived_messages", METRICS_COUNTER, NULL,
		       "Messages written to the message archive (XEP-0313), "
		       "one per account that keeps it.");
	METRICS_PER_WORKER(m, shm, nslots, mam_archived);
	metrics_family(m, "xmppd_mam_dropped_messages", METRICS_COUNTER, NULL,
		       "Messages delivered but not archived: mam.queue_rows "
		       "or mam.queue_bytes reached, out of memory, or refused "
		       "by PostgreSQL.");
	METRICS_PER_WORKER(m, shm, nslots, mam_dropped);
	metrics_family(m, "xmppd_mam_waiting_messages", METRICS_GAUGE, NULL,
		       "Archive rows the worker holds, not yet written.");
	METRICS_PER_WORKER(m, shm, nslots, mam_waiting);
	metrics_family(m, "xmppd_caps_queries", METRICS_COUNTER, NULL,
		       "Entity capabilities (XEP-0115/0390) disco#info queries "
		       "sent to clients for an unknown ver.");
	METRICS_PER_WORKER(m, shm, nslots, caps_queries);
	metrics_family(m, "xmppd_caps_verified", METRICS_COUNTER, NULL,
		       "Caps answers whose hash matched their ver (cached).");
	METRICS_PER_WORKER(m, shm, nslots, caps_verified);
	metrics_family(m, "xmppd_caps_mismatch", METRICS_COUNTER, NULL,
		       "Caps answers that did not match their ver or were "
		       "ill-formed (never cached).");
	METRICS_PER_WORKER(m, shm, nslots, caps_mismatch);
	metrics_family(m, "xmppd_http_connections", METRICS_GAUGE, NULL,
		       "Open connections of the HTTP front.");
	METRICS_PER_WORKER(m, shm, nslots, http_connections);
	metrics_family(m, "xmppd_http_responses", METRICS_COUNTER, NULL,
		       "Responses of the HTTP front by status code (only "
		       "those seen).");
	for (unsigned i = 0; i < nslots; i++)
		for (int k = 0; k < IPC_HTTP_STATUS_MAX; k++) {
			uint64_t v = METRIC_GET(shm_worker_stats(shm, i)
						->http_responses[k]);
			if (v == 0)
				continue;
			char code[8];
			if (k < IPC_HTTP_STATUS_MAX - 1)
				snprintf(code, sizeof(code), "%d",
					 metrics_http_codes[k]);
			else
				snprintf(code, sizeof(code), "other");
			snprintf(l, sizeof(l), "worker=\"%u\",code=\"%s\"",
				 i, code);
			metrics_sample(m, l, v);
		}
}

/* The XEP-0198 journal (smstore.h): what each worker's sessions hold in
 * the shared mapping, and its size. */
static void metrics_render_sm(struct metrics_ctx *m, struct shm_region *shm,
			      unsigned nslots)
{
	unsigned n;
	uint32_t records, used;
	uint64_t bytes, pool;
	char l[32];

	if (shm->smstore == NULL)
		return;
	smstore_capacity(shm->smstore, &n, &records, &pool);
	if (nslots > n)
		nslots = n;
	metrics_family(m, "xmppd_sm_records", METRICS_GAUGE, NULL,
		       "Stream-management sessions with a record in the "
		       "shared journal (attached, waiting for resume, or "
		       "being handed over).");
	for (unsigned i = 0; i < nslots; i++) {
		smstore_usage(shm->smstore, i, &used, &bytes);
		snprintf(l, sizeof(l), "worker=\"%u\"", i);
		metrics_sample(m, l, used);
	}
	metrics_family(m, "xmppd_sm_pool_bytes", METRICS_GAUGE, "bytes",
		       "Bytes of the worker's shared pool holding "
		       "unacknowledged stanzas and last presences.");
	for (unsigned i = 0; i < nslots; i++) {
		smstore_usage(shm->smstore, i, &used, &bytes);
		snprintf(l, sizeof(l), "worker=\"%u\"", i);
		metrics_sample(m, l, bytes);
	}
	metrics_family(m, "xmppd_sm_records_per_worker", METRICS_GAUGE, NULL,
		       "Records each worker has (sm.records_per_worker).");
	metrics_sample(m, "", records);
	metrics_family(m, "xmppd_sm_pool_size_bytes", METRICS_GAUGE, "bytes",
		       "Pool bytes each worker has (sm.pool_bytes_per_worker).");
	metrics_sample(m, "", pool);
}

/* The worker slots among nslots: the cluster bridge's slot (after the
 * workers) has no clients, database link or journal, so the per-worker
 * families leave it out (its figures are the cluster ones). */
static unsigned metrics_nworkers(const struct shm_region *shm,
				 unsigned nslots)
{
	unsigned n = shm->hdr->nworkers;
	return n == 0 || n > nslots ? nslots : n;
}

static void metrics_render_nodes(struct metrics_ctx *m,
				 const struct ipc_cluster *c)
{
	unsigned count[IPC_NODE_STATE_MAX] = { 0 };
	static const uint32_t shown[] = { IPC_NODE_UP, IPC_NODE_SUSPECT,
					  IPC_NODE_DOWN, IPC_NODE_INCOMPATIBLE };
	uint32_t nn = atomic_load_explicit(&c->nnodes, memory_order_acquire);
	uint64_t dir = 0, kept = 0, fout = 0, fin = 0, resent = 0;
	char l[48];

	for (unsigned i = 1; i < nn && i < IPC_MAX_NODES; i++) {
		struct ipc_cluster_node n;
		if (!shm_cluster_read_node(c, i, &n))
			continue;
		if (n.state < IPC_NODE_STATE_MAX)
			count[n.state]++;
		dir += n.directory;
		kept += n.kept_bytes;
		fout += n.frames_out;
		fin += n.frames_in;
		resent += n.resent;
	}
	metrics_family(m, "xmppd_cluster_directory_sessions", METRICS_GAUGE,
		       NULL, "Other nodes' sessions in this node's session "
		       "table (the directory).");
	metrics_sample(m, "", dir);
	metrics_family(m, "xmppd_cluster_unacknowledged_bytes", METRICS_GAUGE,
		       NULL, "Bytes of stanzas sent to other nodes and kept "
		       "until they acknowledge them.");
	metrics_sample(m, "", kept);
	metrics_family(m, "xmppd_cluster_frames_sent", METRICS_COUNTER, NULL,
		       "Stanza frames sent to other nodes (since the bridge "
		       "started).");
	metrics_sample(m, "", fout);
	metrics_family(m, "xmppd_cluster_frames_received", METRICS_COUNTER,
		       NULL, "Stanza frames from other nodes handed to this "
		       "node's workers (since the bridge started).");
	metrics_sample(m, "", fin);
	metrics_family(m, "xmppd_cluster_resends", METRICS_COUNTER, NULL,
		       "Times acknowledgements stalled and every kept frame "
		       "was sent to a node again.");
	metrics_sample(m, "", resent);
	metrics_family(m, "xmppd_cluster_nodes", METRICS_GAUGE, NULL,
		       "Other nodes of the cluster by state, as this node "
		       "sees them (heartbeats).");
	for (unsigned k = 0; k < ARRAY_SIZE(shown); k++) {
		snprintf(l, sizeof(l), "state=\"%s\"",
			 shm_cluster_state_name(shown[k]));
		metrics_sample(m, l, count[shown[k]]);
	}
}

/* The member list (key-value bucket) and this node's room ownership. */
static void metrics_render_members(struct metrics_ctx *m,
				   const struct ipc_cluster *c)
{
	const struct ipc_cluster_members *ms = &c->members;
	uint64_t epoch = 0, n = 0;
	for (int tries = 0; tries < 4; tries++) {   /* seqlock, as read */
		uint32_t s0 = atomic_load_explicit(&ms->seq,
						   memory_order_acquire);
		if (s0 & 1)
			continue;
		epoch = ms->epoch;
		n = ms->n;
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&ms->seq, memory_order_relaxed) == s0)
			break;
	}
	metrics_family(m, "xmppd_cluster_member_epoch", METRICS_GAUGE, NULL,
		       "Epoch of the cluster's member list last read (0: "
		       "none read yet).");
	metrics_sample(m, "", epoch);
	metrics_family(m, "xmppd_cluster_members", METRICS_GAUGE, NULL,
		       "Nodes in that member list (rooms are owned among "
		       "them).");
	metrics_sample(m, "", n);
	metrics_family(m, "xmppd_cluster_owner", METRICS_GAUGE, NULL,
		       "1 while this node's lease lets it own rooms (it "
		       "renewed its lease in time at the last check).");
	metrics_sample(m, "", METRIC_GET(c->owner_ok));
	metrics_family(m, "xmppd_cluster_kv_up", METRICS_GAUGE, NULL,
		       "1 when the key-value bucket answered last time.");
	metrics_sample(m, "", METRIC_GET(c->kv_up));
	metrics_family(m, "xmppd_cluster_kv_errors", METRICS_COUNTER, NULL,
		       "Key-value calls that failed.");
	metrics_sample(m, "", METRIC_GET(c->kv_errors));
}

/* How the bridge reads this node's session changes (cluster/dirfeed.c)
 * and what it lost of other nodes' snapshots. */
static void metrics_render_feed(struct metrics_ctx *m,
				const struct ipc_cluster *c)
{
	metrics_family(m, "xmppd_cluster_directory_walks", METRICS_COUNTER,
		       NULL, "Full walks of the session table by the bridge "
		       "(its start, a lapped change log, a safety net a "
		       "minute).");
	metrics_sample(m, "", METRIC_GET(c->dir_walks));
	metrics_family(m, "xmppd_cluster_directory_log_reads", METRICS_COUNTER,
		       NULL, "Session change-log entries the bridge read.");
	metrics_sample(m, "", METRIC_GET(c->dir_logged));
	metrics_family(m, "xmppd_cluster_directory_log_lapped",
		       METRICS_COUNTER, NULL, "Walks because the change log "
		       "lost changes (raise cluster.change_log when it "
		       "grows).");
	metrics_sample(m, "", METRIC_GET(c->dir_lapped));
	metrics_family(m, "xmppd_cluster_snapshot_parts_dropped",
		       METRICS_COUNTER, NULL, "Snapshot parts from other "
		       "nodes dropped over cluster.snapshot_queue (that "
		       "snapshot is asked for again).");
	metrics_sample(m, "", METRIC_GET(c->snap_dropped));
}

/* Only with the cluster on: the bridge's link and traffic, the nodes. */
static void metrics_render_cluster(struct metrics_ctx *m,
				   struct shm_region *shm, unsigned nworkers,
				   unsigned nslots)
{
	struct ipc_cluster *c = &shm->hdr->cluster;
	if (!c->enabled || nslots <= nworkers)
		return;
	struct ipc_worker_stats *st = shm_worker_stats(shm, nworkers);
	int running = METRIC_GET(st->pid) > 0;
	metrics_family(m, "xmppd_cluster_bridge_up", METRICS_GAUGE, NULL,
		       "1 when the cluster bridge process runs.");
	metrics_sample(m, "", running);
	metrics_family(m, "xmppd_cluster_bridge_restarts", METRICS_COUNTER,
		       NULL, "Times the cluster bridge was started again.");
	metrics_sample(m, "", METRIC_GET(st->restarts));
	metrics_family(m, "xmppd_cluster_link_up", METRICS_GAUGE, NULL,
		       "1 when this node's NATS connection is up.");
	metrics_sample(m, "", running && METRIC_GET(c->link_up));
	metrics_family(m, "xmppd_cluster_reconnects", METRICS_COUNTER, NULL,
		       "Times the NATS connection came back after a loss.");
	metrics_sample(m, "", METRIC_GET(c->reconnects));
	metrics_family(m, "xmppd_cluster_heartbeats_received",
		       METRICS_COUNTER, NULL, "Valid heartbeats of other "
		       "nodes received.");
	metrics_sample(m, "", METRIC_GET(c->heartbeats_in));
	metrics_family(m, "xmppd_cluster_heartbeats_refused",
		       METRICS_COUNTER, NULL, "Messages on the heartbeat "
		       "subject not signed with the cluster's key, replayed, "
		       "or that did not parse.");
	metrics_sample(m, "", METRIC_GET(c->heartbeats_bad));
	metrics_family(m, "xmppd_cluster_messages_refused",
		       METRICS_COUNTER, NULL, "Routing messages (directory, "
		       "stanzas, acks) not signed with the cluster's key, or "
		       "replayed.");
	metrics_sample(m, "", METRIC_GET(c->msgs_refused));
	metrics_family(m, "xmppd_cluster_messages_sent", METRICS_COUNTER,
		       NULL, "NATS messages published.");
	metrics_sample(m, "", METRIC_GET(c->msgs_out));
	metrics_family(m, "xmppd_cluster_messages_received", METRICS_COUNTER,
		       NULL, "NATS messages received.");
	metrics_sample(m, "", METRIC_GET(c->msgs_in));
	metrics_family(m, "xmppd_cluster_sent_bytes", METRICS_COUNTER,
		       "bytes", "Payload bytes of the NATS messages published.");
	metrics_sample(m, "", METRIC_GET(c->bytes_out));
	metrics_family(m, "xmppd_cluster_received_bytes", METRICS_COUNTER,
		       "bytes", "Payload bytes of the NATS messages received.");
	metrics_sample(m, "", METRIC_GET(c->bytes_in));
	metrics_render_members(m, c);
	metrics_render_feed(m, c);
	metrics_render_nodes(m, c);
}

int metrics_render(struct shm_region *shm, unsigned nslots, struct buf *out,
		   enum metrics_format format)
{
	struct metrics_ctx m = { .out = out, .om = format ==
				 METRICS_OPENMETRICS };
	const struct ipc_shm_header *hdr = shm->hdr;

	if (nslots > IPC_MAX_SLOTS)
		nslots = IPC_MAX_SLOTS;
	metrics_family(&m, "xmppd_build", METRICS_INFO, NULL,
		       "The xmppd version and the OpenSSL it was built with.");
	buf_appendf(out, "xmppd_build_info{version=\"");
	metrics_label_escape(out, PACKAGE_VERSION);
	buf_appendf(out, "\",openssl=\"");
	metrics_label_escape(out, OPENSSL_VERSION_TEXT);
	buf_appendf(out, "\"} 1\n");
	/* uptime is time() - this (a scraper has the time): a value that
	 * moved with the clock would make two renderings of the same
	 * counters differ */
	metrics_family(&m, "xmppd_start_time_seconds", METRICS_GAUGE,
		       "seconds", "Unix time the master started (uptime: "
		       "time() - xmppd_start_time_seconds).");
	metrics_sample(&m, "", (unsigned long long)hdr->master_started);
	metrics_family(&m, "xmppd_config_generation", METRICS_GAUGE, NULL,
		       "The master's configuration generation (1 at start, "
		       "+1 per reload).");
	metrics_sample(&m, "", METRIC_GET(((struct ipc_shm_header *)hdr)
					  ->config_gen));
	unsigned nworkers = metrics_nworkers(shm, nslots);
	metrics_family(&m, "xmppd_workers", METRICS_GAUGE, NULL,
		       "Worker slots.");
	metrics_sample(&m, "", nworkers);
	metrics_render_workers(&m, shm, nworkers);
	metrics_render_db(&m, shm, nworkers);
	metrics_render_process(&m, shm, nworkers);
	metrics_render_sm(&m, shm, nworkers);
	metrics_render_cluster(&m, shm, nworkers, nslots);
	if (m.om)
		metrics_out(&m, "# EOF\n");
	return m.failed ? -1 : 0;
}

/* ---- health ------------------------------------------------------------- */

/* Running, not a zombie its parent has not reaped yet. */
static int metrics_pid_alive(pid_t pid)
{
	char path[64], text[256];
	if (pid <= 0 || (kill(pid, 0) < 0 && errno != EPERM))
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 1;       /* no /proc: kill() said it exists */
	ssize_t n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	text[n] = '\0';
	const char *p = strrchr(text, ')');
	return p == NULL || (p[1] != '\0' && p[2] != 'Z' && p[2] != 'X');
}

int metrics_health(struct shm_region *shm, unsigned nslots, char *reason,
		   size_t len)
{
	struct ipc_shm_header *hdr = shm->hdr;
	int64_t now = time_now_ms();

	if (nslots > IPC_MAX_SLOTS)
		nslots = IPC_MAX_SLOTS;
	unsigned nworkers = metrics_nworkers(shm, nslots);
	if (!metrics_pid_alive(METRIC_GET(hdr->master_pid))) {
		snprintf(reason, len, "the master process is gone");
		return 0;
	}
	for (unsigned i = 0; i < nworkers; i++) {
		struct ipc_worker_stats *st = shm_worker_stats(shm, i);
		pid_t pid = METRIC_GET(st->pid);
		int64_t hb = METRIC_GET(st->heartbeat_ms);
		if (pid <= 0 || !metrics_pid_alive(pid)) {
			snprintf(reason, len, "worker %u is restarting", i);
			return 0;
		}
		if (hb == 0) {
			snprintf(reason, len, "worker %u is starting", i);
			return 0;
		}
		if (now - hb > METRICS_HEARTBEAT_STALE_MS) {
			snprintf(reason, len, "worker %u has not run its loop "
				 "for %lld ms", i, (long long)(now - hb));
			return 0;
		}
		if (METRIC_GET(st->tls_missing)) {
			snprintf(reason, len, "worker %u has no TLS certificate "
				 "loaded (tls.certificate; its log says why)", i);
			return 0;
		}
		if (!METRIC_GET(st->db.up)) {
			char why[IPC_DB_REASON];
			uint32_t n = METRIC_GET(st->db.reason_len);
			atomic_thread_fence(memory_order_acquire);
			if (n >= sizeof(why))
				n = sizeof(why) - 1;
			memcpy(why, st->db.reason, n);
			why[n] = '\0';
			snprintf(reason, len, "worker %u has no database link%s%s",
				 i, n > 0 ? ": " : "", why);
			return 0;
		}
	}
	/* local users are served without the cluster: ready, but say why
	 * other nodes' users are out of reach */
	if (hdr->cluster.enabled && nslots > nworkers &&
	    !metrics_pid_alive(METRIC_GET(shm_worker_stats(shm, nworkers)
					  ->pid)))
		snprintf(reason, len, "ready (the cluster bridge is "
			 "restarting: other nodes unreachable)");
	else if (hdr->cluster.enabled && !METRIC_GET(hdr->cluster.link_up))
		snprintf(reason, len, "ready (the NATS link is down: other "
			 "nodes unreachable)");
	else
		snprintf(reason, len, "ready");
	return 1;
}

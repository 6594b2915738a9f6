/*
 * metrics.h - the per-worker counters in shared memory (struct
 * ipc_worker_stats in ipc.h): how they are bumped, and how they are read
 * back as OpenMetrics / Prometheus text and as a health verdict.
 *
 * Writing: each field has one writer (the worker of its slot, or the
 * master for the fields it owns), so a bump is a relaxed load and a
 * relaxed store -- a plain add on x86, no locked instruction, no syscall.
 * Readers (the master's control socket, any worker's GET /metrics) see
 * each value whole, never torn.
 * Failure policy: rendering only appends to a buffer (bounded by the
 * buffer's limit: -1 when it is reached); nothing here blocks.
 */
#ifndef XMPPD_METRICS_H
#define XMPPD_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "ipc.h"

struct shm_region;
struct buf;

#define METRIC_ADD(field, n)                                              \
	atomic_store_explicit(&(field),                                   \
			      atomic_load_explicit(&(field),              \
						   memory_order_relaxed) + \
			      (n), memory_order_relaxed)
#define METRIC_INC(field) METRIC_ADD(field, 1)
#define METRIC_DEC(field) METRIC_ADD(field, -1)
#define METRIC_SET(field, v) \
	atomic_store_explicit(&(field), (v), memory_order_relaxed)
#define METRIC_GET(field) \
	atomic_load_explicit(&(field), memory_order_relaxed)

/* The counters this process writes: its slot's in a worker, a private
 * zeroed block elsewhere (master, xmppctl, tests, fuzzers), so that code
 * shared with them can bump without asking. */
extern struct ipc_worker_stats *metrics_self;

enum metrics_format {
	METRICS_OPENMETRICS = 1,    /* application/openmetrics-text 1.0.0 */
	METRICS_PROMETHEUS,         /* text/plain; version=0.0.4 */
};

#define METRICS_CT_OPENMETRICS \
	"application/openmetrics-text; version=1.0.0; charset=utf-8"
#define METRICS_CT_PROMETHEUS "text/plain; version=0.0.4; charset=utf-8"

/* A worker not seen to turn its loop for this long is not healthy. */
#define METRICS_HEARTBEAT_STALE_MS 5000
#define METRICS_HEARTBEAT_EVERY_MS 100

/* Which format an Accept header asks for (NULL: Prometheus text). */
enum metrics_format metrics_format_for(const char *accept);

/* Append every metric of the nslots worker slots of shm to out; 0, or -1
 * when out's limit was reached. */
int metrics_render(struct shm_region *shm, unsigned nslots, struct buf *out,
		   enum metrics_format format);

/* 1 ready, 0 not (reason gets the first cause, one line). */
int metrics_health(struct shm_region *shm, unsigned nslots, char *reason,
		   size_t len);

/* Append the OpenMetrics label value v (escaped: \\, \", \n). */
void metrics_label_escape(struct buf *out, const char *v);

/* Names used as label values. */
const char *metrics_mech_name(enum ipc_mech m);
const char *metrics_sasl_reason_name(enum ipc_sasl_reason r);
const char *metrics_stanza_error_name(enum ipc_stanza_error e);
/* Index of a condition's name; -1 if not in the table. */
int metrics_sasl_reason(const char *condition);
int metrics_stanza_error(const char *condition);

/* Index in http_responses of an HTTP status code. */
unsigned metrics_http_status(int status);

/* Master, when a worker died: its gauges describe nothing now. */
void metrics_reset_gauges(struct ipc_worker_stats *st);

/* The database link of the calling worker (db.c). */
void metrics_db_up(struct ipc_db_stats *st);
void metrics_db_down(struct ipc_db_stats *st, const char *reason);
void metrics_db_observe(struct ipc_db_stats *st, int64_t us, int failed);

#endif

/*
 * test_metrics.c - the renderer and the health verdict over a real
 * shared mapping (shm_create): label values escaped as OpenMetrics wants,
 * counters and the histogram as written, the health reasons in order.
 * The black-box test (tests/bb/test_metrics.py) parses the whole output
 * with prometheus_client.
 */
#include <criterion/criterion.h>
#include <string.h>
#include <unistd.h>
#include "buf.h"
#include "metrics.h"
#include "shm.h"
#include "util.h"
#include "cluster.h"
#include "cluster/members.h"
#include <stdio.h>

static struct shm_region shm;

static void setup(void)
{
	const char *error = NULL;
	cr_assert_eq(shm_create(&shm, 2, 64, &error), 0, "%s", error);
}

static void teardown(void)
{
	shm_destroy(&shm);
}

static char *render(enum metrics_format f)
{
	static struct buf out;
	buf_free(&out);
	buf_init(&out, 0);
	cr_assert_eq(metrics_render(&shm, 2, &out, f), 0);
	buf_append(&out, "", 1);
	return (char *)buf_head(&out);
}

Test(metrics, label_escape)
{
	struct buf b;
	buf_init(&b, 0);
	metrics_label_escape(&b, "a\"b\\c\nd");
	buf_append(&b, "", 1);
	cr_assert_str_eq(buf_head(&b), "a\\\"b\\\\c\\nd");
	buf_free(&b);
}

Test(metrics, counters_and_histogram, .init = setup, .fini = teardown)
{
	struct ipc_worker_stats *w1 = shm_worker_stats(&shm, 1);
	METRIC_ADD(w1->logins[IPC_MECH_SCRAM_SHA_256], 7);
	METRIC_INC(w1->login_failures[IPC_MECH_PLAIN][IPC_SASL_NOT_AUTHORIZED]);
	METRIC_ADD(w1->stanzas_in[IPC_STANZA_MESSAGE], 3);
	metrics_db_observe(&w1->db, 300, 0);        /* <= 0.5 ms */
	metrics_db_observe(&w1->db, 1200, 0);       /* <= 2.5 ms */
	metrics_db_observe(&w1->db, 9000000, 1);    /* past 5 s: +Inf */

	char *t = render(METRICS_OPENMETRICS);
	cr_assert(strstr(t, "# TYPE xmppd_logins counter\n") != NULL);
	cr_assert(strstr(t, "xmppd_logins_total{worker=\"1\",mechanism="
			 "\"SCRAM-SHA-256\"} 7\n") != NULL, "%s", t);
	cr_assert(strstr(t, "xmppd_login_failures_total{worker=\"1\","
			 "mechanism=\"PLAIN\",reason=\"not-authorized\"} 1\n")
		  != NULL);
	/* failures never seen are not listed */
	cr_assert(strstr(t, "reason=\"aborted\"") == NULL);
	cr_assert(strstr(t, "xmppd_stanzas_received_total{worker=\"1\","
			 "kind=\"message\"} 3\n") != NULL);
	/* buckets are cumulative, _count is the +Inf bucket */
	cr_assert(strstr(t, "xmppd_db_query_duration_seconds_bucket{worker="
			 "\"1\",le=\"0.0005\"} 1\n") != NULL, "%s", t);
	cr_assert(strstr(t, "xmppd_db_query_duration_seconds_bucket{worker="
			 "\"1\",le=\"0.0025\"} 2\n") != NULL);
	cr_assert(strstr(t, "xmppd_db_query_duration_seconds_bucket{worker="
			 "\"1\",le=\"5.0\"} 2\n") != NULL);
	cr_assert(strstr(t, "xmppd_db_query_duration_seconds_bucket{worker="
			 "\"1\",le=\"+Inf\"} 3\n") != NULL);
	cr_assert(strstr(t, "xmppd_db_query_duration_seconds_count{worker="
			 "\"1\"} 3\n") != NULL);
	cr_assert(strstr(t, "xmppd_db_query_errors_total{worker=\"1\"} 1\n")
		  != NULL);
	cr_assert(strstr(t, "# UNIT xmppd_received_bytes bytes\n") != NULL);
	size_t n = strlen(t);
	cr_assert(n > 6 && strcmp(t + n - 6, "# EOF\n") == 0);

	/* 0.0.4: TYPE names the sample, no UNIT, no EOF, no info type */
	t = render(METRICS_PROMETHEUS);
	cr_assert(strstr(t, "# TYPE xmppd_logins_total counter\n") != NULL);
	cr_assert(strstr(t, "# TYPE xmppd_build_info gauge\n") != NULL);
	cr_assert(strstr(t, "# UNIT") == NULL);
	cr_assert(strstr(t, "# EOF") == NULL);
}

Test(metrics, format_negotiation)
{
	cr_assert_eq(metrics_format_for(NULL), METRICS_PROMETHEUS);
	cr_assert_eq(metrics_format_for("text/plain"), METRICS_PROMETHEUS);
	cr_assert_eq(metrics_format_for("application/openmetrics-text; "
					"version=1.0.0,text/plain;q=0.5"),
		     METRICS_OPENMETRICS);
}

Test(metrics, health_reasons_in_order, .init = setup, .fini = teardown)
{
	char why[256];
	struct ipc_worker_stats *w0 = shm_worker_stats(&shm, 0);
	struct ipc_worker_stats *w1 = shm_worker_stats(&shm, 1);

	atomic_store(&shm.hdr->master_pid, (int32_t)getpid());
	cr_assert_eq(metrics_health(&shm, 2, why, sizeof(why)), 0);
	cr_assert_str_eq(why, "worker 0 is restarting");
	/* "running" workers: this process stands in for both */
	METRIC_SET(w0->pid, (int32_t)getpid());
	METRIC_SET(w1->pid, (int32_t)getpid());
	cr_assert_eq(metrics_health(&shm, 2, why, sizeof(why)), 0);
	cr_assert_str_eq(why, "worker 0 is starting");
	METRIC_SET(w0->heartbeat_ms, time_now_ms());
	METRIC_SET(w1->heartbeat_ms, time_now_ms() - 60000);
	metrics_db_down(&w0->db, "connection refused\nsecond line");
	cr_assert_eq(metrics_health(&shm, 2, why, sizeof(why)), 0);
	cr_assert_str_eq(why, "worker 0 has no database link: connection "
			 "refused");
	metrics_db_up(&w0->db);
	cr_assert_eq(metrics_health(&shm, 2, why, sizeof(why)), 0);
	cr_assert(strncmp(why, "worker 1 has not run its loop for ", 34) == 0,
		  "%s", why);
	METRIC_SET(w1->heartbeat_ms, time_now_ms());
	metrics_db_up(&w1->db);
	cr_assert_eq(metrics_health(&shm, 2, why, sizeof(why)), 1);
	cr_assert_str_eq(why, "ready");
	/* the master gone: nothing else matters */
	atomic_store(&shm.hdr->master_pid, 0);
	cr_assert_eq(metrics_health(&shm, 2, why, sizeof(why)), 0);
	cr_assert_str_eq(why, "the master process is gone");
}

/* A cluster node: 2 workers and the bridge in slot 2 (shm of 3 slots).
 * The bridge is not a worker (no worker="2" series, not counted by
 * health); the cluster families count the node table by state; health
 * stays ready without the bridge or its link, and says so. */
static void setup_cluster(void)
{
	const char *error = NULL;
	cr_assert_eq(shm_create(&shm, 3, 64, &error), 0, "%s", error);
	shm.hdr->nworkers = 2;
	shm_cluster_setup(&shm.hdr->cluster, "xmppd", "n1", 2);
}

Test(metrics, cluster_node, .init = setup_cluster, .fini = teardown)
{
	struct ipc_cluster *c = &shm.hdr->cluster;
	struct buf out;
	char why[256];

	METRIC_SET(shm_worker_stats(&shm, 2)->pid, (int32_t)getpid());
	METRIC_SET(c->link_up, 1);
	METRIC_SET(c->heartbeats_in, 5);
	for (unsigned i = 1; i <= 3; i++) {
		struct ipc_cluster_node *n = &c->nodes[i];
		shm_cluster_write_begin(n);
		snprintf(n->name, sizeof(n->name), "n%u", i + 1);
		n->state = i == 3 ? IPC_NODE_DOWN : IPC_NODE_UP;
		shm_cluster_write_end(n);
	}
	atomic_store(&c->nnodes, 4);
	/* a member list of three at epoch 7, this node's lease held */
	struct members ms = { .epoch = 7, .n = 3 };
	for (unsigned i = 0; i < 3; i++)
		snprintf(ms.m[i].name, sizeof(ms.m[i].name), "n%u", i + 1);
	shm_cluster_write_members(c, &ms, 1000);
	METRIC_SET(c->owner_ok, 1);
	buf_init(&out, 0);
	cr_assert_eq(metrics_render(&shm, 3, &out, METRICS_OPENMETRICS), 0);
	buf_append(&out, "", 1);
	const char *t = buf_head(&out);
	cr_assert(strstr(t, "xmppd_workers 2\n") != NULL);
	cr_assert(strstr(t, "worker=\"2\"") == NULL, "the bridge as a worker");
	cr_assert(strstr(t, "xmppd_cluster_link_up 1\n") != NULL);
	cr_assert(strstr(t, "xmppd_cluster_bridge_up 1\n") != NULL);
	cr_assert(strstr(t, "xmppd_cluster_heartbeats_received_total 5\n"));
	cr_assert(strstr(t, "xmppd_cluster_nodes{state=\"up\"} 2\n"));
	cr_assert(strstr(t, "xmppd_cluster_nodes{state=\"down\"} 1\n"));
	cr_assert(strstr(t, "xmppd_cluster_nodes{state=\"suspect\"} 0\n"));
	cr_assert(strstr(t, "xmppd_cluster_member_epoch 7\n"), "%s", t);
	cr_assert(strstr(t, "xmppd_cluster_members 3\n"));
	cr_assert(strstr(t, "xmppd_cluster_owner 1\n"));
	buf_free(&out);

	/* workers fine: ready; the bridge gone, or its link: still ready */
	atomic_store(&shm.hdr->master_pid, (int32_t)getpid());
	for (unsigned i = 0; i < 2; i++) {
		struct ipc_worker_stats *w = shm_worker_stats(&shm, i);
		METRIC_SET(w->pid, (int32_t)getpid());
		METRIC_SET(w->heartbeat_ms, time_now_ms());
		metrics_db_up(&w->db);
	}
	cr_assert_eq(metrics_health(&shm, 3, why, sizeof(why)), 1);
	cr_assert_str_eq(why, "ready");
	METRIC_SET(c->link_up, 0);
	cr_assert_eq(metrics_health(&shm, 3, why, sizeof(why)), 1);
	cr_assert_str_eq(why, "ready (the NATS link is down: other nodes "
			 "unreachable)");
	METRIC_SET(shm_worker_stats(&shm, 2)->pid, 0);
	cr_assert_eq(metrics_health(&shm, 3, why, sizeof(why)), 1);
	cr_assert_str_eq(why, "ready (the cluster bridge is restarting: "
			 "other nodes unreachable)");
}

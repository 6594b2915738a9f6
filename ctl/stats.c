/*
 * stats.c - `xmppctl stats [--json | --openmetrics]`: the figures of GET
 * /metrics, asked of the master's control socket (`metrics`, the same
 * renderer over the same shared memory, docs/CONTROL.md) and shown as a
 * table (totals and per worker), as JSON (one object per sample), or raw.
 * Parsing is for our own renderer's output (shm/metrics.c): one sample a
 * line, `name{k="v",...} value`, label values escaped \\ \" \n.
 * Failure policy: one line on stderr and exit 1 when xmppd cannot be
 * asked; 2 for usage errors.
 */
#include "ctl.h"
#include "buf.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STATS_REPLY_MAX (4u * 1024 * 1024)
#define STATS_LABELS_MAX 8
#define STATS_WORKERS_MAX 64

struct stats_sample {
	char *name;
	unsigned nlabels;
	char *key[STATS_LABELS_MAX];
	char *value[STATS_LABELS_MAX];
	double v;
};

struct stats_set {
	struct stats_sample *s;
	unsigned n, cap;
	char *text;             /* the reply, cut up in place */
	unsigned nworkers;
};

/* The answer to `metrics` (ctl/sock.c), its lines joined again. */
static int stats_fetch(const struct ctl_opts *opts, struct buf *out)
{
	struct ctl_reply r;
	char *path = ctl_socket_path(opts);
	if (path == NULL)
		return -1;
	int ret = ctl_request(path, "metrics", &r);
	free(path);
	if (ret < 0)
		return -1;
	for (size_t i = 0; i < r.n && ret == 0; i++)
		if (buf_append(out, r.lines[i], strlen(r.lines[i])) < 0 ||
		    buf_append(out, "\n", 1) < 0)
			ret = ctl_fail("the metrics do not fit in memory");
	ctl_reply_free(&r);
	return ret < 0 ? -1 : 0;
}

/* Un-escape a label value in place (\\ \" \n); returns past its quote. */
static char *stats_label_value(char *p, char **value_r)
{
	char *w = p;
	*value_r = p;
	while (*p != '\0' && *p != '"') {
		if (*p == '\\' && p[1] != '\0') {
			p++;
			*w++ = *p == 'n' ? '\n' : *p;
			p++;
		} else {
			*w++ = *p++;
		}
	}
	if (*p != '"')
		return NULL;
	*w = '\0';
	return p + 1;
}

static int stats_parse_line(struct stats_set *set, char *line)
{
	struct stats_sample s;
	memset(&s, 0, sizeof(s));
	if (line[0] == '#' || line[0] == '\0')
		return 0;
	s.name = line;
	char *p = line + strcspn(line, "{ ");
	if (*p == '{') {
		*p++ = '\0';
		while (*p != '}') {
			if (s.nlabels == STATS_LABELS_MAX)
				return -1;
			s.key[s.nlabels] = p;
			p += strcspn(p, "=");
			if (p[0] != '=' || p[1] != '"')
				return -1;
			*p = '\0';
			p = stats_label_value(p + 2, &s.value[s.nlabels]);
			if (p == NULL)
				return -1;
			s.nlabels++;
			if (*p == ',')
				p++;
		}
		p++;
	} else if (*p == ' ') {
		*p = '\0';
		p++;
	}
	while (*p == ' ')
		p++;
	char *end;
	s.v = strtod(p, &end);
	if (end == p)
		return -1;
	if (set->n == set->cap) {
		unsigned cap = set->cap ? set->cap * 2 : 256;
		struct stats_sample *ns = realloc(set->s, cap * sizeof(*ns));
		if (ns == NULL)
			return -1;
		set->s = ns;
		set->cap = cap;
	}
	set->s[set->n++] = s;
	return 0;
}

static const char *stats_label(const struct stats_sample *s, const char *k)
{
	for (unsigned i = 0; i < s->nlabels; i++)
		if (strcmp(s->key[i], k) == 0)
			return s->value[i];
	return NULL;
}

static int stats_parse(struct stats_set *set, struct buf *text)
{
	buf_append(text, "", 1);
	set->text = (char *)buf_head(text);
	for (char *line = set->text; line != NULL && *line != '\0';) {
		char *nl = strchr(line, '\n');
		if (nl != NULL)
			*nl = '\0';
		if (stats_parse_line(set, line) < 0) {
			fprintf(stderr, "xmppctl: unreadable metrics line: %s\n",
				line);
			return -1;
		}
		line = nl != NULL ? nl + 1 : NULL;
	}
	for (unsigned i = 0; i < set->n; i++) {
		const char *w = stats_label(&set->s[i], "worker");
		if (w != NULL && (unsigned)atoi(w) + 1 > set->nworkers &&
		    atoi(w) < STATS_WORKERS_MAX)
			set->nworkers = (unsigned)atoi(w) + 1;
	}
	return 0;
}

static void stats_json(const struct stats_set *set)
{
	printf("{\"samples\":[");
	for (unsigned i = 0; i < set->n; i++) {
		const struct stats_sample *s = &set->s[i];
		printf("%s\n{\"name\":", i ? "," : "");
		ctl_json_string(stdout, s->name);
		printf(",\"labels\":{");
		for (unsigned k = 0; k < s->nlabels; k++) {
			printf("%s", k ? "," : "");
			ctl_json_string(stdout, s->key[k]);
			putchar(':');
			ctl_json_string(stdout, s->value[k]);
		}
		printf("},\"value\":%.17g}", s->v);
	}
	printf("\n]}\n");
}

/* Sum of name's samples whose label k is v (k NULL: all), per worker
 * (sums[w]) and in all (the return value). */
static double stats_sum(const struct stats_set *set, const char *name,
			const char *k, const char *v, double *sums)
{
	double total = 0;
	for (unsigned w = 0; w < set->nworkers; w++)
		sums[w] = 0;
	for (unsigned i = 0; i < set->n; i++) {
		const struct stats_sample *s = &set->s[i];
		if (strcmp(s->name, name) != 0)
			continue;
		if (k != NULL) {
			const char *lv = stats_label(s, k);
			if (lv == NULL || strcmp(lv, v) != 0)
				continue;
		}
		const char *w = stats_label(s, "worker");
		if (w != NULL && (unsigned)atoi(w) < set->nworkers)
			sums[atoi(w)] += s->v;
		total += s->v;
	}
	return total;
}

static void stats_row(const struct stats_set *set, const char *title,
		      const char *name, const char *k, const char *v)
{
	double sums[STATS_WORKERS_MAX];
	double total = stats_sum(set, name, k, v, sums);
	printf("%-28s %14.0f", title, total);
	for (unsigned w = 0; w < set->nworkers; w++)
		printf(" %12.0f", sums[w]);
	putchar('\n');
}

/* The same with two decimals (seconds, milliseconds). */
static void stats_row_float(const char *title, double total,
			    const double *sums, unsigned nworkers)
{
	printf("%-28s %14.2f", title, total);
	for (unsigned w = 0; w < nworkers; w++)
		printf(" %12.2f", sums[w]);
	putchar('\n');
}

/* A row per value of label k of name whose total is not 0, in the order
 * rendered ("  VALUE"). */
static void stats_rows_by(const struct stats_set *set, const char *name,
			  const char *k)
{
	double sums[STATS_WORKERS_MAX];
	for (unsigned i = 0; i < set->n; i++) {
		const struct stats_sample *s = &set->s[i];
		const char *v = stats_label(s, k);
		if (strcmp(s->name, name) != 0 || v == NULL)
			continue;
		int seen = 0;
		for (unsigned j = 0; j < i && !seen; j++)
			seen = strcmp(set->s[j].name, name) == 0 &&
				stats_label(&set->s[j], k) != NULL &&
				strcmp(stats_label(&set->s[j], k), v) == 0;
		if (seen || stats_sum(set, name, k, v, sums) == 0)
			continue;
		char title[64];
		snprintf(title, sizeof(title), "  %s", v);
		stats_row(set, title, name, k, v);
	}
}

/* The samples of name, one line each: "  worker W  L1  L2  N" with the
 * values of labels k1 and k2 (k2 NULL: one label). */
static void stats_list(const struct stats_set *set, const char *name,
		       const char *heading, const char *k1, const char *k2)
{
	int header = 0;
	for (unsigned i = 0; i < set->n; i++) {
		const struct stats_sample *s = &set->s[i];
		if (strcmp(s->name, name) != 0)
			continue;
		if (!header)
			printf("\n%s:\n", heading);
		header = 1;
		const char *w = stats_label(s, "worker");
		const char *v1 = stats_label(s, k1);
		const char *v2 = k2 != NULL ? stats_label(s, k2) : NULL;
		if (k2 != NULL)
			printf("  worker %s  %-20s %-24s %.0f\n", w ? w : "?",
			       v1 ? v1 : "?", v2 ? v2 : "?", s->v);
		else
			printf("  worker %s  %-24s %.0f\n", w ? w : "?",
			       v1 ? v1 : "?", s->v);
	}
}

static void stats_human(const struct stats_set *set)
{
	double sums[STATS_WORKERS_MAX];
	const char *version = "?";
	for (unsigned i = 0; i < set->n; i++)
		if (strcmp(set->s[i].name, "xmppd_build_info") == 0 &&
		    stats_label(&set->s[i], "version") != NULL)
			version = stats_label(&set->s[i], "version");
	double up = (double)time(NULL) - stats_sum(set,
		"xmppd_start_time_seconds", NULL, NULL, sums);
	double gen = stats_sum(set, "xmppd_config_generation", NULL, NULL,
			       sums);
	printf("xmppd %s, up %.0fd %.0fh %.0fm %.0fs, configuration "
	       "generation %.0f, %u workers\n\n", version,
	       (double)((long long)up / 86400), (double)((long long)up % 86400
							 / 3600),
	       (double)((long long)up % 3600 / 60), (double)((long long)up
							   % 60),
	       gen, set->nworkers);
	printf("%-28s %14s", "", "total");
	for (unsigned w = 0; w < set->nworkers; w++)
		printf(" %10s%-2u", "worker ", w);
	putchar('\n');
	stats_row(set, "worker up", "xmppd_worker_up", NULL, NULL);
	stats_row(set, "worker restarts", "xmppd_worker_restarts_total",
		  NULL, NULL);
	stats_row(set, "database link up", "xmppd_db_up", NULL, NULL);
	stats_row(set, "connections", "xmppd_connections", NULL, NULL);
	stats_row(set, "  authenticated", "xmppd_connections",
		  "authenticated", "true");
	stats_row(set, "  direct TLS port", "xmppd_connections", "listener",
		  "direct_tls");
	stats_row(set, "  TLSv1.3", "xmppd_connections", "tls_version",
		  "TLSv1.3");
	stats_row(set, "  TLSv1.2", "xmppd_connections", "tls_version",
		  "TLSv1.2");
	stats_row(set, "  not encrypted", "xmppd_connections", "tls_version",
		  "none");
	stats_row(set, "connections accepted",
		  "xmppd_connections_accepted_total", NULL, NULL);
	stats_row(set, "sessions", "xmppd_sessions", NULL, NULL);
	stats_row(set, "logins", "xmppd_logins_total", NULL, NULL);
	stats_rows_by(set, "xmppd_logins_total", "mechanism");
	stats_row(set, "login failures", "xmppd_login_failures_total", NULL,
		  NULL);
	stats_row(set, "messages received", "xmppd_stanzas_received_total",
		  "kind", "message");
	stats_row(set, "presences received", "xmppd_stanzas_received_total",
		  "kind", "presence");
	stats_row(set, "iqs received", "xmppd_stanzas_received_total", "kind",
		  "iq");
	stats_row(set, "messages sent", "xmppd_stanzas_sent_total", "kind",
		  "message");
	stats_row(set, "presences sent", "xmppd_stanzas_sent_total", "kind",
		  "presence");
	stats_row(set, "iqs sent", "xmppd_stanzas_sent_total", "kind", "iq");
	stats_row(set, "stanza errors sent", "xmppd_stanza_errors_total", NULL,
		  NULL);
	stats_row(set, "stream errors sent", "xmppd_stream_errors_total", NULL,
		  NULL);
	stats_row(set, "bytes received", "xmppd_received_bytes_total", NULL,
		  NULL);
	stats_row(set, "bytes sent", "xmppd_sent_bytes_total", NULL, NULL);
	stats_row(set, "frames to other workers",
		  "xmppd_routed_frames_sent_total", NULL, NULL);
	stats_row(set, "frames from other workers",
		  "xmppd_routed_frames_received_total", NULL, NULL);
	stats_row(set, "queued frames", "xmppd_queue_frames", NULL, NULL);
	stats_row(set, "queued bytes", "xmppd_queue_outbox_bytes", NULL, NULL);
	stats_row(set, "queue refused frames",
		  "xmppd_queue_refused_frames_total", NULL, NULL);
	stats_row(set, "offline messages stored",
		  "xmppd_offline_stored_messages_total", NULL, NULL);
	stats_row(set, "offline messages delivered",
		  "xmppd_offline_delivered_messages_total", NULL, NULL);
	stats_row(set, "messages archived",
		  "xmppd_mam_archived_messages_total", NULL, NULL);
	stats_row(set, "messages not archived",
		  "xmppd_mam_dropped_messages_total", NULL, NULL);
	stats_row(set, "archive rows waiting",
		  "xmppd_mam_waiting_messages", NULL, NULL);
	stats_row(set, "database queries",
		  "xmppd_db_query_duration_seconds_count", NULL, NULL);
	/* mean round trip: the histogram's sum over its count */
	double qsum[STATS_WORKERS_MAX], qcount[STATS_WORKERS_MAX];
	double tsum = stats_sum(set, "xmppd_db_query_duration_seconds_sum",
				NULL, NULL, qsum);
	double tcount = stats_sum(set, "xmppd_db_query_duration_seconds_count",
				  NULL, NULL, qcount);
	for (unsigned w = 0; w < set->nworkers; w++)
		sums[w] = qcount[w] > 0 ? qsum[w] * 1000 / qcount[w] : 0;
	stats_row_float("database query time, mean (ms)",
			tcount > 0 ? tsum * 1000 / tcount : 0, sums,
			set->nworkers);
	stats_row(set, "database query errors",
		  "xmppd_db_query_errors_total", NULL, NULL);
	stats_row(set, "database link downs", "xmppd_db_link_downs_total",
		  NULL, NULL);
	stats_row(set, "HTTP connections", "xmppd_http_connections", NULL,
		  NULL);
	stats_row(set, "HTTP responses", "xmppd_http_responses_total", NULL,
		  NULL);
	stats_rows_by(set, "xmppd_http_responses_total", "code");
	double cpu = stats_sum(set, "xmppd_worker_cpu_seconds_total", NULL,
			       NULL, sums);
	stats_row_float("CPU seconds", cpu, sums, set->nworkers);
	stats_row(set, "resident memory (KiB)",
		  "xmppd_worker_resident_memory_bytes", NULL, NULL);
	/* by condition, as rendered (the series seen only) */
	stats_list(set, "xmppd_login_failures_total",
		   "login failures by worker, mechanism, reason", "mechanism",
		   "reason");
	stats_list(set, "xmppd_stanza_errors_total",
		   "stanza errors by worker, condition", "condition", NULL);
}

int ctl_stats_command(const struct ctl_opts *opts, int argc, char **argv)
{
	int json = opts->json, raw = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--openmetrics") == 0)
			raw = 1;
		else
			return ctl_usage_error("stats: unknown argument '%s'",
					       argv[i]);
	}
	if (json && raw)
		return ctl_usage_error("stats: --json or --openmetrics, not "
				       "both");
	struct buf text;
	buf_init(&text, STATS_REPLY_MAX);
	if (stats_fetch(opts, &text) < 0) {
		buf_free(&text);
		return CTL_EXIT_FAIL;
	}
	if (raw) {
		fwrite(buf_head(&text), 1, buf_used(&text), stdout);
		buf_free(&text);
		return CTL_EXIT_OK;
	}
	struct stats_set set;
	memset(&set, 0, sizeof(set));
	if (stats_parse(&set, &text) < 0) {
		free(set.s);
		buf_free(&text);
		return CTL_EXIT_FAIL;
	}
	/* the table shows KiB */
	for (unsigned i = 0; i < set.n && !json; i++)
		if (strcmp(set.s[i].name,
			   "xmppd_worker_resident_memory_bytes") == 0)
			set.s[i].v /= 1024;
	if (json)
		stats_json(&set);
	else
		stats_human(&set);
	free(set.s);
	buf_free(&text);
	return CTL_EXIT_OK;
}

/*
 * cluster.c - `xmppctl cluster status [--json]`: the master's `cluster`
 * control line (master/cluster.c) printed as the header line and node
 * table of docs/CONTROL.md, or as one JSON object.
 * Failure policy: as every control command (ctl.h); a server without a
 * cluster is not a failure (exit 0, "no cluster ...").
 */
#include "ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CTL_FIELD 160

struct ctl_node {
	char name[CTL_FIELD], state[CTL_FIELD], inc[CTL_FIELD];
	char sessions[CTL_FIELD], workers[CTL_FIELD], age[CTL_FIELD];
	char directory[CTL_FIELD], kept[CTL_FIELD], fout[CTL_FIELD];
	char fin[CTL_FIELD], resent[CTL_FIELD];
};

/* A field of line into buf (CTL_FIELD bytes), or the default. */
static void ctl_get(const char *line, const char *key, char *buf,
		    const char *dflt)
{
	if (ctl_field(line, key, buf, CTL_FIELD) == NULL)
		snprintf(buf, CTL_FIELD, "%s", dflt);
}

static void ctl_node_read(const char *line, struct ctl_node *n)
{
	ctl_get(line, "name", n->name, "");
	ctl_get(line, "state", n->state, "");
	ctl_get(line, "incarnation", n->inc, "");
	ctl_get(line, "sessions", n->sessions, "0");
	ctl_get(line, "workers", n->workers, "0");
	ctl_get(line, "heartbeat_age_ms", n->age, "0");
	ctl_get(line, "directory", n->directory, "0");
	ctl_get(line, "kept_bytes", n->kept, "0");
	ctl_get(line, "frames_out", n->fout, "0");
	ctl_get(line, "frames_in", n->fin, "0");
	ctl_get(line, "resent", n->resent, "0");
}

/* The first line of kind, or NULL. */
static const char *ctl_line_of(const struct ctl_reply *r, const char *kind)
{
	size_t k = strlen(kind);
	for (size_t i = 0; i < r->n; i++)
		if (strncmp(r->lines[i], kind, k) == 0 &&
		    r->lines[i][k] == '\t')
			return r->lines[i];
	return NULL;
}

static void ctl_cluster_text(const struct ctl_reply *r, const char *head)
{
	char name[CTL_FIELD], node[CTL_FIELD], inc[CTL_FIELD];
	char link[CTL_FIELD], server[CTL_FIELD];
	int width = 4;
	struct ctl_node n;

	ctl_get(head, "name", name, "");
	ctl_get(head, "node", node, "");
	ctl_get(head, "incarnation", inc, "");
	ctl_get(head, "link", link, "down");
	ctl_get(head, "server", server, "");
	if (strcmp(link, "up") == 0)
		printf("cluster %s, node %s (incarnation %s), NATS link up to "
		       "%s\n", name, node, inc, server);
	else
		printf("cluster %s, node %s (incarnation %s), NATS link down\n",
		       name, node, inc);
	for (size_t i = 0; i < r->n; i++)
		if (strncmp(r->lines[i], "node\t", 5) == 0) {
			ctl_node_read(r->lines[i], &n);
			if ((int)strlen(n.name) > width)
				width = (int)strlen(n.name);
		}
	printf("%-*s  %-8s %-16s  %8s  %7s  %s\n", width, "NODE", "STATE",
	       "INCARNATION", "SESSIONS", "WORKERS", "HEARTBEAT_AGE");
	for (size_t i = 0; i < r->n; i++) {
		char age[32];
		if (strncmp(r->lines[i], "node\t", 5) != 0)
			continue;
		ctl_node_read(r->lines[i], &n);
		if (strcmp(n.state, "self") == 0)
			strcpy(age, "-");
		else
			snprintf(age, sizeof(age), "%.1fs",
				 strtod(n.age, NULL) / 1000.0);
		printf("%-*s  %-8s %-16s  %8s  %7s  %s\n", width, n.name,
		       n.state, n.inc, n.sessions, n.workers, age);
	}
	const char *mem = ctl_line_of(r, "members");
	if (mem != NULL) {
		char epoch[CTL_FIELD], owner[CTL_FIELD], names[4096] = "";
		ctl_get(mem, "epoch", epoch, "0");
		ctl_get(mem, "owner", owner, "no");
		ctl_field(mem, "names", names, sizeof(names));
		printf("members (epoch %s): %s; this node %s own rooms\n",
		       epoch, names[0] ? names : "none yet",
		       strcmp(owner, "yes") == 0 ? "may" : "may not");
	}
	const char *feed = ctl_line_of(r, "feed");
	if (feed != NULL) {
		char walks[CTL_FIELD], logged[CTL_FIELD], lapped[CTL_FIELD];
		char dropped[CTL_FIELD];
		ctl_get(feed, "walks", walks, "0");
		ctl_get(feed, "logged", logged, "0");
		ctl_get(feed, "lapped", lapped, "0");
		ctl_get(feed, "snapshot_parts_dropped", dropped, "0");
		printf("our sessions told from %s change-log entries and %s "
		       "table walks (%s because the log lapped); %s snapshot "
		       "parts dropped\n", logged, walks, lapped, dropped);
	}
}

static void ctl_json_member(const char *key, const char *value, int num,
			    int first)
{
	printf("%s\"%s\": ", first ? "" : ", ", key);
	if (num)
		printf("%lld", strtoll(value, NULL, 10));
	else
		ctl_json_string(stdout, value);
}

static void ctl_cluster_json(const struct ctl_reply *r, const char *head)
{
	static const struct { const char *key, *field; int num; } top[] = {
		{ "cluster", "name", 0 }, { "node", "node", 0 },
		{ "incarnation", "incarnation", 0 }, { "link", "link", 0 },
		{ "server", "server", 0 }, { "reconnects", "reconnects", 1 },
	};
	char v[CTL_FIELD];
	int first = 1;
	struct ctl_node n;

	fputs("{\"enabled\": true", stdout);
	for (size_t i = 0; i < sizeof(top) / sizeof(top[0]); i++) {
		ctl_get(head, top[i].field, v, top[i].num ? "0" : "");
		ctl_json_member(top[i].key, v, top[i].num, 0);
	}
	const char *mem = ctl_line_of(r, "members");
	if (mem != NULL) {
		char names[4096] = "", owner[CTL_FIELD];
		ctl_get(mem, "epoch", v, "0");
		ctl_json_member("epoch", v, 1, 0);
		ctl_get(mem, "owner", owner, "no");
		printf(", \"owner\": %s, \"members\": [",
		       strcmp(owner, "yes") == 0 ? "true" : "false");
		ctl_field(mem, "names", names, sizeof(names));
		for (char *p = names, *q; *p != '\0'; p = q) {
			q = p + strcspn(p, ",");
			char sep = *q;
			*q = '\0';
			if (p != names)
				fputs(", ", stdout);
			ctl_json_string(stdout, p);
			if (sep != '\0')
				q++;
		}
		fputc(']', stdout);
	}
	const char *feed = ctl_line_of(r, "feed");
	if (feed != NULL) {
		static const struct { const char *key, *field; } f[] = {
			{ "feed_walks", "walks" },
			{ "feed_log_reads", "logged" },
			{ "feed_log_lapped", "lapped" },
			{ "snapshot_parts_dropped", "snapshot_parts_dropped" },
		};
		for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
			ctl_get(feed, f[i].field, v, "0");
			ctl_json_member(f[i].key, v, 1, 0);
		}
	}
	fputs(", \"nodes\": [", stdout);
	for (size_t i = 0; i < r->n; i++) {
		if (strncmp(r->lines[i], "node\t", 5) != 0)
			continue;
		ctl_node_read(r->lines[i], &n);
		fputs(first ? "{" : ", {", stdout);
		first = 0;
		ctl_json_member("name", n.name, 0, 1);
		ctl_json_member("state", n.state, 0, 0);
		ctl_json_member("incarnation", n.inc, 0, 0);
		ctl_json_member("sessions", n.sessions, 1, 0);
		ctl_json_member("workers", n.workers, 1, 0);
		ctl_json_member("heartbeat_age_ms", n.age, 1, 0);
		/* the traffic with it (0 for this node itself) */
		ctl_json_member("directory", n.directory, 1, 0);
		ctl_json_member("kept_bytes", n.kept, 1, 0);
		ctl_json_member("frames_sent", n.fout, 1, 0);
		ctl_json_member("frames_received", n.fin, 1, 0);
		ctl_json_member("resent", n.resent, 1, 0);
		fputc('}', stdout);
	}
	fputs("]}\n", stdout);
}

int ctl_cluster_command(const struct ctl_opts *opts, int argc, char **argv)
{
	struct ctl_reply r;
	char enabled[8] = "0";
	if (argc != 2 || strcmp(argv[1], "status") != 0)
		return ctl_usage_error("cluster takes one subcommand: status");
	char *path = ctl_socket_path(opts);
	int ret = path != NULL && ctl_request(path, "cluster", &r) == 0 ?
		CTL_EXIT_OK : CTL_EXIT_FAIL;
	free(path);
	if (ret != CTL_EXIT_OK)
		return ret;
	const char *head = ctl_line_of(&r, "cluster");
	if (head != NULL)
		ctl_field(head, "enabled", enabled, sizeof(enabled));
	if (head == NULL || strcmp(enabled, "1") != 0) {
		if (opts->json)
			puts("{\"enabled\": false}");
		else
			puts("no cluster (cluster.servers is not set)");
	} else if (opts->json) {
		ctl_cluster_json(&r, head);
	} else {
		ctl_cluster_text(&r, head);
	}
	ctl_reply_free(&r);
	return CTL_EXIT_OK;
}

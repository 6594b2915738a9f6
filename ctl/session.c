/*
 * session.c - `xmppctl sessions [JID|DOMAIN]` and `xmppctl kick JID
 * [REASON] [--reset]`, and the session pieces of `user show|del|passwd`.
 * The master answers from the shared session table (docs/CONTROL.md);
 * JIDs given here are prepared (lib/jid.h) before they are sent, so the
 * master compares bytes.
 * Failure policy: a bad argument is a usage error (exit 2); a kick that
 * finds no session exits 1 with "no session for JID"; socket failures
 * print one line and exit 1.
 */
#include "ctl.h"
#include "arena.h"
#include "jid.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The prepared filter: a full JID, a bare JID, or a domain (no '@' and
 * no '/').  NULL after printing why (a usage error). */
static const char *ctl_prep_filter(struct arena *a, const char *arg,
				   bool need_local)
{
	const char *error, *out = NULL;
	struct jid jid;
	if (strpbrk(arg, "\t\n") != NULL) {
		error = "control characters";
	} else if (!need_local && strpbrk(arg, "@/") == NULL) {
		if (jid_prep_part(a, JID_PART_DOMAIN, arg, strlen(arg), &out,
				  &error) == 0)
			return out;
	} else if (jid_parse(a, arg, &jid, &error) == 0) {
		if (jid.local == NULL)
			error = "no user@ part";
		else if ((out = jid.resource ? jid_full(a, &jid) :
			  jid_bare(a, &jid)) != NULL)
			return out;
		else
			error = "out of memory";
	}
	ctl_usage_error("invalid %s '%s': %s", need_local ? "JID" :
			"JID or domain", arg, error);
	return NULL;
}

/* ---- printing sessions ------------------------------------------------ */

struct ctl_session_row {
	char jid[3200];
	char address[80];
	char worker[48], tls[16], mech[32], since[32], idle[40];
	char sm[48];     /* XEP-0198: -, on, resumable, detached Ns */
};

static void ctl_session_row(const char *line, struct ctl_session_row *r)
{
	char addr[64] = "?", port[16] = "0", num[32];
	time_t since;
	struct tm tm;

	ctl_field(line, "jid", r->jid, sizeof(r->jid));
	ctl_field(line, "address", addr, sizeof(addr));
	ctl_field(line, "port", port, sizeof(port));
	snprintf(r->address, sizeof(r->address), strchr(addr, ':') ?
		 "[%s]:%s" : "%s:%s", addr, port);
	ctl_field(line, "worker", r->worker, sizeof(r->worker));
	/* in a cluster: NODE/WORKER */
	char node[40], w[16];
	if (ctl_field(line, "node", node, sizeof(node))) {
		snprintf(w, sizeof(w), "%.15s", r->worker);
		snprintf(r->worker, sizeof(r->worker), "%.32s/%.14s", node, w);
	}
	ctl_field(line, "tls", r->tls, sizeof(r->tls));
	ctl_field(line, "mechanism", r->mech, sizeof(r->mech));
	since = ctl_field(line, "since", num, sizeof(num)) ?
		(time_t)strtoll(num, NULL, 10) : 0;
	if (gmtime_r(&since, &tm) == NULL ||
	    strftime(r->since, sizeof(r->since), "%Y-%m-%dT%H:%M:%SZ",
		     &tm) == 0)
		snprintf(r->since, sizeof(r->since), "?");
	snprintf(r->idle, sizeof(r->idle), "%ss",
		 ctl_field(line, "idle", num, sizeof(num)) ? num : "?");
	if (!ctl_field(line, "sm", r->sm, sizeof(r->sm)))
		snprintf(r->sm, sizeof(r->sm), "-");
}

static int ctl_width(int w, const char *s)
{
	int n = (int)strlen(s);
	return n > w ? n : w;
}

/* The session lines of an answer as a table under a heading. */
static void ctl_sessions_table(const struct ctl_reply *r, const char *indent)
{
	struct ctl_session_row *rows = calloc(r->n + 1, sizeof(*rows));
	int w[7] = { 3, 6, 7, 3, 9, 5, 4 };
	size_t n = 0;
	if (rows == NULL) {
		ctl_fail("out of memory");
		return;
	}
	for (size_t i = 0; i < r->n; i++) {
		if (strncmp(r->lines[i], "session\t", 8) != 0)
			continue;
		struct ctl_session_row *row = &rows[n++];
		ctl_session_row(r->lines[i], row);
		w[0] = ctl_width(w[0], row->jid);
		w[1] = ctl_width(w[1], row->worker);
		w[2] = ctl_width(w[2], row->address);
		w[3] = ctl_width(w[3], row->tls);
		w[4] = ctl_width(w[4], row->mech);
		w[5] = ctl_width(w[5], row->since);
		w[6] = ctl_width(w[6], row->idle);
	}
	if (n > 0)
		printf("%s%-*s  %-*s  %-*s  %-*s  %-*s  %-*s  %-*s  %s\n",
		       indent, w[0], "JID", w[1], "WORKER", w[2], "ADDRESS",
		       w[3], "TLS", w[4], "MECHANISM", w[5], "SINCE", w[6],
		       "IDLE", "SM");
	for (size_t i = 0; i < n; i++)
		printf("%s%-*s  %-*s  %-*s  %-*s  %-*s  %-*s  %-*s  %s\n",
		       indent, w[0], rows[i].jid, w[1], rows[i].worker, w[2],
		       rows[i].address, w[3], rows[i].tls, w[4], rows[i].mech,
		       w[5], rows[i].since, w[6], rows[i].idle, rows[i].sm);
	free(rows);
}

/* The total line's counts. */
static void ctl_sessions_total(const struct ctl_reply *r, long *total_r,
			       long *shown_r)
{
	char num[32];
	*total_r = *shown_r = 0;
	for (size_t i = 0; i < r->n; i++) {
		if (strncmp(r->lines[i], "sessions\t", 9) != 0)
			continue;
		if (ctl_field(r->lines[i], "total", num, sizeof(num)))
			*total_r = strtol(num, NULL, 10);
		if (ctl_field(r->lines[i], "shown", num, sizeof(num)))
			*shown_r = strtol(num, NULL, 10);
	}
}

/* "[{...}, ...]" of the session lines. */
static void ctl_sessions_json_array(const struct ctl_reply *r)
{
	bool first = true;
	fputc('[', stdout);
	for (size_t i = 0; i < r->n; i++) {
		if (strncmp(r->lines[i], "session\t", 8) != 0)
			continue;
		fputs(first ? "\n  " : ",\n  ", stdout);
		first = false;
		ctl_json_fields(stdout, r->lines[i]);
	}
	fputs(first ? "]" : "\n]", stdout);
}

int ctl_sessions_command(const struct ctl_opts *opts, int argc, char **argv)
{
	struct arena a;
	struct ctl_reply r;
	const char *filter = "";
	char line[4096];
	int ret = CTL_EXIT_FAIL;
	long total, shown;

	if (argc > 2)
		return ctl_usage_error("sessions takes at most one JID or "
				       "domain");
	arena_init(&a, 4096);
	if (argc == 2 && (filter = ctl_prep_filter(&a, argv[1], false)) ==
	    NULL) {
		arena_free(&a);
		return CTL_EXIT_USAGE;
	}
	char *path = ctl_socket_path(opts);
	snprintf(line, sizeof(line), filter[0] ? "sessions\t%s" : "sessions",
		 filter);
	if (path != NULL && ctl_request(path, line, &r) == 0) {
		ctl_sessions_total(&r, &total, &shown);
		if (opts->json) {
			fputs("{\"sessions\": ", stdout);
			ctl_sessions_json_array(&r);
			printf(", \"total\": %ld, \"shown\": %ld}\n", total,
			       shown);
		} else {
			ctl_sessions_table(&r, "");
			printf("%ld session%s", total, total == 1 ? "" : "s");
			if (shown < total)
				printf(" (%ld shown)", shown);
			putchar('\n');
		}
		ctl_reply_free(&r);
		ret = CTL_EXIT_OK;
	}
	free(path);
	arena_free(&a);
	return ret;
}

/* "a b c" of args, or "" (the reason may come as several words). */
static int ctl_join(char *buf, size_t size, int argc, char **argv)
{
	size_t len = 0;
	buf[0] = '\0';
	for (int i = 0; i < argc; i++) {
		int n = snprintf(buf + len, size - len, "%s%s", i ? " " : "",
				 argv[i]);
		if (n < 0 || (size_t)n >= size - len)
			return -1;
		len += (size_t)n;
	}
	for (const unsigned char *p = (const unsigned char *)buf; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return -1;
	return 0;
}

/* Send a kick (watch: late logins too, docs/CONTROL.md); the count
 * told, or -1 (printed). */
static long ctl_kick_send(int fd, const char *jid, const char *condition,
			  const char *text, bool watch, bool print)
{
	char line[8192], num[32];
	struct ctl_reply r;
	long count = 0;
	snprintf(line, sizeof(line), "kick\t%s\t%s\t%s%s", jid, condition,
		 text, watch ? "\twatch" : "");
	if (ctl_exchange(fd, line, &r) < 0)
		return -1;
	for (size_t i = 0; i < r.n; i++) {
		char who[3200], worker[16];
		if (strncmp(r.lines[i], "kick\t", 5) == 0 &&
		    ctl_field(r.lines[i], "count", num, sizeof(num)))
			count = strtol(num, NULL, 10);
		else if (print && strncmp(r.lines[i], "kicked\t", 7) == 0 &&
			 ctl_field(r.lines[i], "jid", who, sizeof(who)) &&
			 ctl_field(r.lines[i], "worker", worker,
				   sizeof(worker)))
			printf("kicked %s (worker %s)\n", who, worker);
	}
	ctl_reply_free(&r);
	return count;
}

int ctl_kick_command(const struct ctl_opts *opts, int argc, char **argv)
{
	bool reset = ctl_take_flag(&argc, argv, "--reset");
	char text[1024];
	struct arena a;
	const char *jid;
	int ret = CTL_EXIT_FAIL;

	if (argc < 2)
		return ctl_usage_error("kick needs a JID");
	if (argc > 2 && argv[2][0] == '-' && argv[2][1] == '-')
		return ctl_usage_error("kick: unknown option '%s'", argv[2]);
	if (ctl_join(text, sizeof(text), argc - 2, argv + 2) < 0)
		return ctl_usage_error("kick: the reason must be under 1024 "
				       "bytes without control characters");
	arena_init(&a, 4096);
	if ((jid = ctl_prep_filter(&a, argv[1], true)) == NULL) {
		arena_free(&a);
		return CTL_EXIT_USAGE;
	}
	char *path = ctl_socket_path(opts);
	int fd = path != NULL ? ctl_open(path, false) : -1;
	if (fd >= 0) {
		long n = ctl_kick_send(fd, jid, reset ? "reset" :
				       "policy-violation", text, false, true);
		if (n == 0)
			ctl_fail("no session for %s", jid);
		else if (n > 0)
			printf("%ld session%s kicked\n", n, n == 1 ? "" : "s");
		ret = n > 0 ? CTL_EXIT_OK : CTL_EXIT_FAIL;
		close(fd);
	}
	free(path);
	arena_free(&a);
	return ret;
}

int ctl_sessions_of(int fd, const char *bare, bool json)
{
	struct ctl_reply r;
	char line[4096];
	long total, shown;
	if (fd == CTL_OPEN_DOWN) {
		if (json)
			fputs("\"sessions\": null, \"server\": \"not running\"",
			      stdout);
		else
			printf("sessions: server not running\n");
		return 0;
	}
	snprintf(line, sizeof(line), "sessions\t%s", bare);
	if (fd < 0 || ctl_exchange(fd, line, &r) < 0)
		return -1;
	ctl_sessions_total(&r, &total, &shown);
	if (json) {
		fputs("\"sessions\": ", stdout);
		ctl_sessions_json_array(&r);
		fputs(", \"server\": \"running\"", stdout);
	} else {
		printf("sessions: %ld\n", total);
		ctl_sessions_table(&r, "  ");
	}
	ctl_reply_free(&r);
	return 0;
}

int ctl_may_end_sessions(int fd, const char *bare)
{
	struct ctl_reply r;
	char line[4096];
	if (fd == CTL_OPEN_DOWN)
		return 0;
	/* `sessions` needs the privilege that `kick` needs */
	snprintf(line, sizeof(line), "sessions\t%s", bare);
	if (fd < 0 || ctl_exchange(fd, line, &r) < 0)
		return -1;
	ctl_reply_free(&r);
	return 0;
}

int ctl_end_sessions(int fd, const char *bare, const char *condition,
		     const char *text, bool watch)
{
	if (fd == CTL_OPEN_DOWN) {
		printf("server not running: no live sessions to end\n");
		return 0;
	}
	long n = fd >= 0 ? ctl_kick_send(fd, bare, condition, text, watch,
					 false) : -1;
	if (n < 0)
		return -1;
	printf("%ld live session%s ended\n", n, n == 1 ? "" : "s");
	return 0;
}

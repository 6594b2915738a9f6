/*
 * procstat.c - the server's memory and CPU, read from /proc: the master
 * (from --server-pids or --server-pid-file) and all its descendants, found
 * by PPid, so workers respawned mid-run are counted too.  VmRSS is summed
 * as the issue asks; Pss from smaps_rollup is summed as well, because RSS
 * counts the shared session table once per process.  CPU is utime+stime
 * of the live processes (a worker that died takes its seconds with it).
 * Failure policy: a process that vanishes between the scan and the read
 * is skipped; no root at all makes the sample invalid.  With --pairs
 * and --partner-pids, the partner server is sampled apart, and so is
 * each --watch group (another cluster node, nats-server).
 */
#include "bench.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static ssize_t procstat_read(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, size - 1);
	close(fd);
	if (n >= 0)
		buf[n] = '\0';
	return n;
}

/* ppid and utime+stime (clock ticks) of pid; -1 if gone. */
static int procstat_stat(pid_t pid, pid_t *ppid_r, unsigned long long *ticks_r,
			 unsigned long long *sys_r)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (procstat_read(path, buf, sizeof(buf)) <= 0)
		return -1;
	const char *p = strrchr(buf, ')');     /* comm may hold spaces */
	char state;
	int ppid;
	unsigned long long ut, st;
	if (p == NULL || sscanf(p + 2, "%c %d %*d %*d %*d %*d %*u %*u %*u %*u "
				"%*u %llu %llu", &state, &ppid, &ut, &st) != 4)
		return -1;
	*ppid_r = ppid;
	*ticks_r = ut + st;
	*sys_r = st;
	return state == 'Z' ? -1 : 0;
}

static uint64_t procstat_field_kb(const char *path, const char *key)
{
	char buf[8192];
	if (procstat_read(path, buf, sizeof(buf)) <= 0)
		return 0;
	const char *p = strstr(buf, key);
	return p == NULL ? 0 : strtoull(p + strlen(key), NULL, 10);
}

double procstat_pid_cpu_s(pid_t pid)
{
	pid_t ppid;
	unsigned long long ticks, sys;
	if (procstat_stat(pid, &ppid, &ticks, &sys) < 0)
		return 0;
	return (double)ticks / (double)sysconf(_SC_CLK_TCK);
}

uint64_t procstat_self_rss_kb(void)
{
	return procstat_field_kb("/proc/self/status", "\nVmRSS:");
}

static unsigned procstat_roots(const struct bench_opts *o, bool partner,
			       pid_t *roots)
{
	unsigned n = 0;
	if (partner) {
		for (unsigned i = 0; i < o->n_partner_pids; i++)
			roots[n++] = o->partner_pids[i];
		return n;
	}
	for (unsigned i = 0; i < o->n_server_pids; i++)
		roots[n++] = o->server_pids[i];
	if (o->server_pid_file != NULL) {
		char buf[64];
		if (procstat_read(o->server_pid_file, buf, sizeof(buf)) > 0 &&
		    atoi(buf) > 0)
			roots[n++] = atoi(buf);
	}
	return n;
}

struct procstat_proc {
	pid_t pid, ppid;
	unsigned long long ticks, sys;
	bool in;
};

/* Every live process of the system with its parent and CPU ticks. */
static size_t procstat_scan(struct procstat_proc **out)
{
	size_t n = 0, cap = 256;
	struct procstat_proc *v = malloc(cap * sizeof(*v));
	DIR *d = opendir("/proc");
	struct dirent *e;
	if (v == NULL || d == NULL)
		bench_fatal("cannot scan /proc");
	while ((e = readdir(d)) != NULL) {
		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		if (n == cap && (v = realloc(v, (cap *= 2) * sizeof(*v))) == NULL)
			bench_fatal("out of memory scanning /proc");
		v[n].pid = atoi(e->d_name);
		v[n].in = false;
		if (procstat_stat(v[n].pid, &v[n].ppid, &v[n].ticks,
				  &v[n].sys) == 0)
			n++;
	}
	closedir(d);
	*out = v;
	return n;
}

static int procstat_sample_pids(const pid_t *roots, unsigned nroots,
				struct server_sample *out)
{
	struct procstat_proc *v;
	*out = (struct server_sample){ 0 };
	if (nroots == 0)
		return -1;
	size_t n = procstat_scan(&v);
	for (size_t i = 0; i < n; i++)
		for (unsigned r = 0; r < nroots; r++)
			v[i].in |= v[i].pid == roots[r];
	for (bool grew = true; grew;) {         /* close over PPid */
		grew = false;
		for (size_t i = 0; i < n; i++)
			for (size_t j = 0; !v[i].in && j < n; j++)
				if (v[j].in && v[i].ppid == v[j].pid)
					v[i].in = grew = true;
	}
	double tick = (double)sysconf(_SC_CLK_TCK);
	for (size_t i = 0; i < n; i++) {
		char path[64];
		if (!v[i].in)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/status", (int)v[i].pid);
		out->rss_kb += procstat_field_kb(path, "\nVmRSS:");
		snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)v[i].pid);
		out->pss_kb += procstat_field_kb(path, "\nPss:");
		out->anon_kb += procstat_field_kb(path, "\nPss_Anon:") +
				procstat_field_kb(path, "\nPss_Shmem:");
		out->cpu_s += (double)v[i].ticks / tick;
		out->sys_s += (double)v[i].sys / tick;
		out->nprocs++;
	}
	free(v);
	out->valid = out->nprocs > 0;
	return out->valid ? 0 : -1;
}

static int procstat_sample_roots(const struct bench_opts *o, bool partner,
				 struct server_sample *out)
{
	pid_t roots[BENCH_MAX_PIDS + 1];
	return procstat_sample_pids(roots, procstat_roots(o, partner, roots),
				    out);
}

int procstat_sample(const struct bench_opts *o, struct server_sample *out)
{
	return procstat_sample_roots(o, false, out);
}

int procstat_sample_watch(const struct bench_watch *w,
			  struct server_sample *out)
{
	return procstat_sample_pids(w->pids, w->npids, out);
}

int procstat_sample_partner(const struct bench_opts *o,
			    struct server_sample *out)
{
	return procstat_sample_roots(o, true, out);
}

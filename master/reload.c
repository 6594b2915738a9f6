/*
 * reload.c - loading a configuration generation and SIGHUP reloads.
 * The new file is parsed and checked into a fresh config (its own
 * arena) first; a bad file leaves the running generation untouched and
 * says why.  Restart-only keys that changed keep their running value and
 * are named in the log and the report.  A good file becomes generation
 * N+1 and is pushed, serialized, down every worker's channel.
 */
#include "master.h"
#include "log.h"
#include "buf.h"
#include "util.h"
#include "../worker/tls.h"
#include "smstore.h"
#include "compcfg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef PKGDATADIR
#define PKGDATADIR "/usr/local/share/xmppd"
#endif

/* A certificate or key file that is not there yet (a fresh install):
 * say what to do rather than only OpenSSL's reason. */
static int master_tls_file_missing(const char *key, const char *path,
				   const char **error_r)
{
	static char msg[1024];
	struct stat st;
	if (stat(path, &st) == 0 || errno != ENOENT)
		return 0;
	snprintf(msg, sizeof(msg), "'%s' %s does not exist: put your "
		 "certificate and key where tls.certificate and tls.key say, "
		 "or run " PKGDATADIR "/setup-local for a self-signed one",
		 key, path);
	*error_r = msg;
	return -1;
}

/* A certificate that does not load fails -t, start-up and reload alike,
 * instead of failing every TLS handshake later. */
static int master_check_tls(const struct config *cfg, const char **error_r)
{
	if (cfg->tls_certificate[0] == '\0')
		return 0;
	if (master_tls_file_missing("tls.certificate", cfg->tls_certificate,
				    error_r) < 0 ||
	    master_tls_file_missing("tls.key", cfg->tls_key, error_r) < 0)
		return -1;
	SSL_CTX *ctx = tls_context_new(cfg, error_r);
	if (ctx == NULL)
		return -1;
	tls_context_free(&ctx);
	return 0;
}

/* The components' secrets file (component.secrets_file) reads and
 * parses, and names no hosted domain: -t, start-up and reload refuse it
 * otherwise.  The workers read it again themselves (component.c). */
static int master_check_components(const struct config *cfg,
				   const char **error_r)
{
	static char msg[512];
	struct compcfg *list = NULL;
	if (cfg->component_secrets_file[0] == '\0')
		return 0;
	if (compcfg_load(cfg->component_secrets_file, &list, error_r) < 0)
		return -1;
	const char *clash = compcfg_clash(list, cfg->hosts);
	if (clash != NULL) {
		snprintf(msg, sizeof(msg), "component.secrets_file: %s is "
			 "also in 'hosts'", clash);
		*error_r = msg;
	}
	compcfg_free(&list);
	return clash != NULL ? -1 : 0;
}

int master_load_config(const char *path, const char *const *overrides,
		       unsigned n, struct config **cfg_r,
		       const char **error_r)
{
	struct config *cfg = config_new();
	int ret = config_parse_file(cfg, path, error_r);
	for (unsigned i = 0; ret == 0 && i < n; i++)
		ret = config_set(cfg, overrides[i], error_r);
	if (ret == 0)
		ret = config_check(cfg, error_r);
	if (ret == 0)
		ret = master_check_tls(cfg, error_r);
	if (ret == 0)
		ret = master_check_components(cfg, error_r);
	if (ret < 0) {
		config_free(&cfg);
		return -1;
	}
	*cfg_r = cfg;
	return 0;
}

struct reload_diff {
	struct config *newcfg;
	struct buf report;
	unsigned changed;
	unsigned restart_only;
};

static void reload_keep_old(struct reload_diff *d, const struct config_def *def,
			    const char *old)
{
	struct buf kv;
	const char *error;
	buf_init(&kv, 0);
	buf_appendf(&kv, "%s=%s", def->name, old);
	buf_append(&kv, "", 1);
	if (config_set(d->newcfg, buf_head(&kv), &error) < 0)
		log_error("reload: cannot keep %s: %s", def->name, error);
	buf_free(&kv);
}

static void reload_diff_cb(const struct config_def *def, const char *old,
			   const char *new, void *ctx)
{
	struct reload_diff *d = ctx;
	if (def->flags & CONFIG_F_RESTART) {
		log_warn("reload: %s changed ('%s' -> '%s') but needs a "
			 "restart; still using '%s'", def->name, old, new, old);
		buf_appendf(&d->report, "restart-only\t%s\t%s\t%s\n",
			    def->name, old, new);
		d->restart_only++;
		reload_keep_old(d, def, old);
		return;
	}
	log_info("reload: %s = '%s' (was '%s')", def->name, new, old);
	buf_appendf(&d->report, "changed\t%s\t%s\t%s\n", def->name, old, new);
	d->changed++;
}

void master_sm_limits(struct master *m)
{
	if (m->shm.smstore != NULL)
		smstore_set_limits(m->shm.smstore, m->cfg->sm_max_unacked,
				   m->cfg->sm_max_unacked_bytes);
}

static void reload_apply_local(struct master *m, const struct config *old)
{
	log_set_level((enum log_level)m->cfg->log_level);
	master_sm_limits(m);
	if (strcmp(old->log_file, m->cfg->log_file) != 0 &&
	    log_open(m->cfg->log_file) < 0)
		log_error("open(%s) failed: %m", m->cfg->log_file);
}

int master_reload(struct master *m, char **report_r)
{
	struct reload_diff d = { .changed = 0, .restart_only = 0 };
	const char *error;

	buf_init(&d.report, 0);
	if (master_load_config(m->config_path, m->overrides, m->noverrides,
			       &d.newcfg, &error) < 0 ||
	    master_log_default(d.newcfg, m->foreground, &error) < 0) {
		log_error("reload failed, keeping generation %llu: %s",
			  (unsigned long long)m->generation, error);
		buf_appendf(&d.report, "ERROR\t%s\n", error);
		buf_append(&d.report, "", 1);
		*report_r = d.report.data;
		return -1;
	}
	config_diff(m->cfg, d.newcfg, reload_diff_cb, &d);
	struct config *old = m->cfg;
	m->cfg = d.newcfg;
	m->cfg->generation = ++m->generation;
	m->shm.hdr->config_gen = m->generation;
	reload_apply_local(m, old);
	config_free(&old);

	char *text = config_serialize(m->cfg);
	master_broadcast_cmd(m, IPC_CMD_CONFIG, text, strlen(text));
	free(text);
	log_info("reloaded %s: generation %llu, %u changed, %u need a restart",
		 m->config_path, (unsigned long long)m->generation, d.changed,
		 d.restart_only);
	buf_appendf(&d.report, "generation\t%llu\n",
		    (unsigned long long)m->generation);
	buf_append(&d.report, "", 1);
	*report_r = d.report.data;
	return 0;
}

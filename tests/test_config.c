/*
 * test_config.c - unit tests for lib/config.c: the settings table, the
 * parser on good and bad input, -o overrides, cross-key checks, the
 * serialize/parse round trip, the reload diff and the example file.
 * Golden files live in tests/config: err-*.conf must fail with the error
 * in the matching .ref; good-*.conf must serialize to the matching .ref.
 * They are found under $XMPPD_SRCDIR (default ".").
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "util.h"

/* ---- helpers ---------------------------------------------------------- */

static const char *srcdir(void)
{
	const char *dir = getenv("XMPPD_SRCDIR");

	return dir != NULL && *dir != '\0' ? dir : ".";
}

/* A path under the source tree, in a static buffer. */
static const char *src_path(const char *rel)
{
	static char path[4096];

	snprintf(path, sizeof(path), "%s/%s", srcdir(), rel);
	return path;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *text;
	long len;

	cr_assert_not_null(f, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	text = xmalloc((size_t)len + 1);
	cr_assert_eq(fread(text, 1, (size_t)len, f), (size_t)len);
	text[len] = '\0';
	fclose(f);
	return text;
}

static struct config *parse_ok(const char *text)
{
	struct config *cfg = config_new();
	const char *error = NULL;

	cr_assert_eq(config_parse_string(cfg, "t.conf", text, &error), 0,
		     "unexpected error: %s", error);
	return cfg;
}

/* The error for text; the static buffer stays valid until the next call. */
static const char *parse_error(const char *text)
{
	struct config *cfg = config_new();
	const char *error = NULL;

	cr_assert_eq(config_parse_string(cfg, "t.conf", text, &error), -1,
		     "no error for: %s", text);
	config_free(&cfg);
	return error;
}

static const char *set_error(struct config *cfg, const char *keyval)
{
	const char *error = NULL;

	cr_assert_eq(config_set(cfg, keyval, &error), -1, "no error for -o %s",
		     keyval);
	return error;
}

static void set_ok(struct config *cfg, const char *keyval)
{
	const char *error = NULL;

	cr_assert_eq(config_set(cfg, keyval, &error), 0, "%s", error);
}

static const char *value(const struct config *cfg, const char *name)
{
	static char buf[64];
	const struct config_def *def = config_find(name);

	cr_assert_not_null(def, "no key %s", name);
	return config_value_str(cfg, def, buf, sizeof(buf));
}

static void count_diff(const struct config_def *def, const char *old,
		       const char *new, void *ctx)
{
	(void)def; (void)old; (void)new;
	(*(unsigned *)ctx)++;
}

static unsigned diff_count(const struct config *a, const struct config *b)
{
	unsigned n = 0;

	config_diff(a, b, count_diff, &n);
	return n;
}

static char *example_text(void)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);

	cr_assert_not_null(out);
	config_write_example(out);
	fclose(out);
	return text;
}

static void strip_newline(char *s)
{
	size_t n = strlen(s);

	if (n > 0 && s[n - 1] == '\n')
		s[n - 1] = '\0';
}

/* ---- the table -------------------------------------------------------- */

/* The brief's list of keys and restart policy; a flipped flag fails. */
static const struct { const char *name; unsigned flag; } expected_keys[] = {
	{ "hosts", CONFIG_F_RELOADABLE }, { "workers", CONFIG_F_RESTART },
	{ "user", CONFIG_F_RESTART }, { "group", CONFIG_F_RESTART },
	{ "pid_file", CONFIG_F_RESTART }, { "log_file", CONFIG_F_RELOADABLE },
	{ "log_level", CONFIG_F_RELOADABLE },
	{ "shutdown_timeout", CONFIG_F_RELOADABLE },
	{ "c2s.addresses", CONFIG_F_RESTART }, { "c2s.port", CONFIG_F_RESTART },
	{ "c2s.tls_port", CONFIG_F_RESTART },
	{ "c2s.timeout", CONFIG_F_RELOADABLE },
	{ "c2s.idle_timeout", CONFIG_F_RELOADABLE },
	{ "c2s.max_stanza_size", CONFIG_F_RELOADABLE },
	{ "c2s.max_depth", CONFIG_F_RELOADABLE },
	{ "c2s.max_attributes", CONFIG_F_RELOADABLE },
	{ "c2s.max_output_bytes", CONFIG_F_RELOADABLE },
	{ "c2s.send_buffer", CONFIG_F_RELOADABLE },
	{ "c2s.max_connections_per_ip", CONFIG_F_RELOADABLE },
	{ "c2s.max_sessions_per_account", CONFIG_F_RELOADABLE },
	{ "c2s.backlog", CONFIG_F_RESTART },
	{ "tls.certificate", CONFIG_F_RELOADABLE },
	{ "tls.key", CONFIG_F_RELOADABLE },
	{ "tls.ciphers", CONFIG_F_RELOADABLE },
	{ "tls.ciphersuites", CONFIG_F_RELOADABLE },
	{ "tls.own_record_layer", CONFIG_F_RELOADABLE },
	{ "tls.max_key_updates", CONFIG_F_RELOADABLE },
	{ "tls.records_per_key", CONFIG_F_RELOADABLE },
	{ "tls.required", CONFIG_F_RELOADABLE },
	{ "http.addresses", CONFIG_F_RESTART }, { "http.port", CONFIG_F_RESTART },
	{ "http.tls_port", CONFIG_F_RESTART },
	{ "http.admin_addresses", CONFIG_F_RELOADABLE },
	{ "http.max_connections", CONFIG_F_RELOADABLE },
	{ "http.max_header_size", CONFIG_F_RELOADABLE },
	{ "http.max_url_size", CONFIG_F_RELOADABLE },
	{ "http.max_body_size", CONFIG_F_RELOADABLE },
	{ "http.request_timeout", CONFIG_F_RELOADABLE },
	{ "http.idle_timeout", CONFIG_F_RELOADABLE },
	{ "sasl.max_failures", CONFIG_F_RELOADABLE },
	{ "sasl.throttle_delay", CONFIG_F_RELOADABLE },
	{ "sasl.max_failures_per_address", CONFIG_F_RELOADABLE },
	{ "sasl.failure_window", CONFIG_F_RELOADABLE },
	{ "sasl.ban_time", CONFIG_F_RELOADABLE },
	{ "sasl.max_failures_per_account", CONFIG_F_RELOADABLE },
	{ "sasl.account_throttle_time", CONFIG_F_RELOADABLE },
	{ "sasl.throttle_table_size", CONFIG_F_RESTART },
	{ "sasl.scram_iterations", CONFIG_F_RELOADABLE },
	{ "im.offline_quota", CONFIG_F_RELOADABLE },
	{ "im.offline_watch", CONFIG_F_RELOADABLE },
	{ "im.offline_watch_max", CONFIG_F_RELOADABLE },
	{ "im.roster_max_items", CONFIG_F_RELOADABLE },
	{ "im.roster_max_groups", CONFIG_F_RELOADABLE },
	{ "im.blocklist_max_items", CONFIG_F_RELOADABLE },
	{ "im.vcard_max_size", CONFIG_F_RELOADABLE },
	{ "im.private_max_size", CONFIG_F_RELOADABLE },
	{ "im.private_max_namespaces", CONFIG_F_RELOADABLE },
	{ "sm.max_resume_s", CONFIG_F_RELOADABLE },
	{ "sm.max_unacked", CONFIG_F_RELOADABLE },
	{ "sm.handover_timeout", CONFIG_F_RELOADABLE },
	{ "sm.forward_time", CONFIG_F_RELOADABLE },
	{ "mam.max_page", CONFIG_F_RELOADABLE },
	{ "mam.batch_rows", CONFIG_F_RELOADABLE },
	{ "mam.queue_rows", CONFIG_F_RELOADABLE },
	{ "mam.queue_bytes", CONFIG_F_RELOADABLE },
	{ "mam.retention_days", CONFIG_F_RELOADABLE },
	{ "mam.max_prefs_jids", CONFIG_F_RELOADABLE },
	{ "mam.batch_hold", CONFIG_F_RELOADABLE },
	{ "mam.max_query_ids", CONFIG_F_RELOADABLE },
	{ "mam.max_scan_rows", CONFIG_F_RELOADABLE },
	{ "csi.max_held", CONFIG_F_RELOADABLE },
	{ "im.max_directed_presence", CONFIG_F_RELOADABLE },
	{ "db.conninfo", CONFIG_F_RELOADABLE },
	{ "db.max_queue_bytes", CONFIG_F_RELOADABLE },
	{ "session_table_size", CONFIG_F_RESTART },
	{ "sm.records_per_worker", CONFIG_F_RESTART },
	{ "sm.pool_bytes_per_worker", CONFIG_F_RESTART },
	{ "sm.max_unacked_bytes", CONFIG_F_RELOADABLE },
	{ "queue.outbox_frames", CONFIG_F_RELOADABLE },
	{ "queue.outbox_bytes", CONFIG_F_RELOADABLE },
	{ "control.socket", CONFIG_F_RESTART },
	{ "control.owner", CONFIG_F_RESTART },
	{ "control.group", CONFIG_F_RESTART },
	{ "control.mode", CONFIG_F_RESTART },
	{ "s2s.addresses", CONFIG_F_RESTART },
	{ "s2s.port", CONFIG_F_RESTART },
	{ "s2s.tls_port", CONFIG_F_RESTART },
	{ "s2s.require_tls", CONFIG_F_RELOADABLE },
	{ "s2s.ca_file", CONFIG_F_RESTART },
	{ "s2s.auth", CONFIG_F_RELOADABLE },
	{ "s2s.dialback_domains", CONFIG_F_RELOADABLE },
	{ "s2s.blocked_domains", CONFIG_F_RELOADABLE },
	{ "s2s.max_stanza_size", CONFIG_F_RELOADABLE },
	{ "s2s.max_stanza_rate", CONFIG_F_RELOADABLE },
	{ "s2s.max_incoming", CONFIG_F_RELOADABLE },
	{ "s2s.max_incoming_per_domain", CONFIG_F_RELOADABLE },
	{ "s2s.auth_timeout", CONFIG_F_RELOADABLE },
	{ "s2s.verify_timeout", CONFIG_F_RELOADABLE },
	{ "s2s.in_idle_timeout", CONFIG_F_RELOADABLE },
	{ "s2s.max_domain_pairs", CONFIG_F_RELOADABLE },
	{ "s2s.max_dialback_requests", CONFIG_F_RELOADABLE },
	{ "s2s.max_queue_bytes", CONFIG_F_RELOADABLE },
	{ "s2s.out_idle_timeout", CONFIG_F_RELOADABLE },
	{ "s2s.link_timeout", CONFIG_F_RELOADABLE },
	{ "s2s.max_links", CONFIG_F_RELOADABLE },
	{ "s2s.ack_timeout", CONFIG_F_RELOADABLE },
	{ "shutdown_drain_timeout", CONFIG_F_RELOADABLE },
	{ "component.secrets_file", CONFIG_F_RELOADABLE },
	{ "component.addresses", CONFIG_F_RESTART },
	{ "component.port", CONFIG_F_RESTART },
	{ "component.timeout", CONFIG_F_RELOADABLE },
	{ "component.max_stanza_size", CONFIG_F_RELOADABLE },
	{ "component.max_queue_bytes", CONFIG_F_RELOADABLE },
	{ "s2s.dns_servers", CONFIG_F_RELOADABLE },
	{ "s2s.dns_timeout", CONFIG_F_RELOADABLE },
	{ "s2s.dns_max_targets", CONFIG_F_RELOADABLE },
	{ "s2s.connect_timeout", CONFIG_F_RELOADABLE },
	{ "s2s.connect_stagger", CONFIG_F_RELOADABLE },
	{ "s2s.connect_max_addresses", CONFIG_F_RELOADABLE },
	{ "pep.max_nodes", CONFIG_F_RELOADABLE },
	{ "pep.max_items", CONFIG_F_RELOADABLE },
	{ "pep.max_item_size", CONFIG_F_RELOADABLE },
	{ "pep.max_account_bytes", CONFIG_F_RELOADABLE },
	{ "caps.table_size", CONFIG_F_RESTART },
	{ "caps.query_timeout", CONFIG_F_RELOADABLE },
	{ "caps.max_changes_per_minute", CONFIG_F_RELOADABLE },
	{ "caps.idle_timeout", CONFIG_F_RELOADABLE },
	{ "caps.max_new_per_account_hour", CONFIG_F_RELOADABLE },
	{ "caps.max_notify_bytes", CONFIG_F_RELOADABLE },
	{ "caps.cache_max_rows", CONFIG_F_RELOADABLE },
	{ "caps.cache_retention", CONFIG_F_RELOADABLE },
	{ "pep.max_id_length", CONFIG_F_RELOADABLE },
	{ "pep.bookmarks_compat", CONFIG_F_RELOADABLE },
	{ "pep.vcard_conversion", CONFIG_F_RELOADABLE },
	{ "pep.max_subscriptions", CONFIG_F_RELOADABLE },
	{ "pep.max_affiliations", CONFIG_F_RELOADABLE },
	{ "pep.max_last_items_bytes", CONFIG_F_RELOADABLE },
	{ "pep.max_remote_recipients", CONFIG_F_RELOADABLE },
	{ "pep.remote_caps_queries_per_minute", CONFIG_F_RELOADABLE },
	{ "pep.max_subscriptions_per_jid", CONFIG_F_RELOADABLE },
	{ "caps.max_new_per_domain_hour", CONFIG_F_RELOADABLE },
	{ "pep.remote_presence_ttl", CONFIG_F_RELOADABLE },
	{ "pep.max_remote_resources", CONFIG_F_RELOADABLE },
	{ "pep.remote_parked_max", CONFIG_F_RELOADABLE },
	{ "muc.service", CONFIG_F_RESTART },
	{ "muc.max_rooms", CONFIG_F_RELOADABLE },
	{ "muc.max_occupants", CONFIG_F_RELOADABLE },
	{ "muc.max_rooms_per_account", CONFIG_F_RELOADABLE },
	{ "muc.create", CONFIG_F_RELOADABLE },
	{ "muc.history_default", CONFIG_F_RELOADABLE },
	{ "muc.history_max", CONFIG_F_RELOADABLE },
	{ "muc.messages_per_minute", CONFIG_F_RELOADABLE },
	{ "muc.max_subject_bytes", CONFIG_F_RELOADABLE },
	{ "muc.max_nick_bytes", CONFIG_F_RELOADABLE },
	{ "muc.max_presence_bytes", CONFIG_F_RELOADABLE },
	{ "muc.max_affiliations", CONFIG_F_RELOADABLE },
	{ "muc.archive_retention_days", CONFIG_F_RELOADABLE },
	{ "cluster.servers", CONFIG_F_RESTART },
	{ "cluster.name", CONFIG_F_RESTART },
	{ "cluster.node", CONFIG_F_RESTART },
	{ "cluster.user", CONFIG_F_RESTART },
	{ "cluster.password_file", CONFIG_F_RESTART },
	{ "cluster.credentials", CONFIG_F_RESTART },
	{ "cluster.tls_ca", CONFIG_F_RESTART },
	{ "cluster.tls_certificate", CONFIG_F_RESTART },
	{ "cluster.tls_key", CONFIG_F_RESTART },
	{ "cluster.secret_file", CONFIG_F_RESTART },
	{ "cluster.heartbeat_interval", CONFIG_F_RESTART },
	{ "cluster.retain_bytes", CONFIG_F_RESTART },
	{ "cluster.node_timeout", CONFIG_F_RESTART },
	{ "cluster.lease_time", CONFIG_F_RESTART },
	{ "cluster.clock_skew", CONFIG_F_RESTART },
	{ "cluster.sync_interval", CONFIG_F_RESTART },
	{ "cluster.snapshot_max", CONFIG_F_RESTART },
	{ "cluster.snapshot_queue", CONFIG_F_RESTART },
	{ "cluster.change_log", CONFIG_F_RESTART },
	{ "cluster.node_forget", CONFIG_F_RESTART },
	{ "cluster.hold_time", CONFIG_F_RESTART },
};

Test(table, keys_and_flags_match_the_spec)
{
	cr_assert_eq(config_defs_count, ARRAY_SIZE(expected_keys));
	for (size_t i = 0; i < ARRAY_SIZE(expected_keys); i++) {
		const struct config_def *def = config_find(expected_keys[i].name);
		cr_assert_not_null(def, "missing key %s", expected_keys[i].name);
		cr_expect_eq(def->flags, expected_keys[i].flag, "flags of %s",
			     def->name);
	}
}

Test(table, rows_are_sane)
{
	for (size_t i = 0; i < config_defs_count; i++) {
		const struct config_def *d = &config_defs[i];
		cr_expect(d->doc != NULL && d->doc[0] != '\0', "%s: no doc",
			  d->name);
		cr_expect(d->max == 0 || d->min <= d->max, "%s: bounds", d->name);
		cr_expect_eq(config_find(d->name), d, "%s: not unique", d->name);
		for (size_t j = 0; j < i; j++)
			cr_expect_neq(d->offset, config_defs[j].offset,
				      "%s and %s share a field", d->name,
				      config_defs[j].name);
	}
	cr_expect_null(config_find("nosuchkey"));
	cr_expect_null(config_find("c2s"));
}

/* ---- defaults --------------------------------------------------------- */

Test(defaults, match_the_spec)
{
	struct config *cfg = config_new();

	cr_expect_str_eq(cfg->hosts, "localhost");
	cr_expect_eq(cfg->workers, 0);
	cr_expect_str_eq(cfg->user, "xmppd");
	cr_expect_str_eq(cfg->group, "");
	cr_expect_str_eq(cfg->pid_file, "/run/xmppd/xmppd.pid");
	cr_expect_str_eq(cfg->log_file, "");
	cr_expect_eq(cfg->log_level, LOG_LEVEL_INFO);
	cr_expect_eq(cfg->shutdown_timeout, 10000);
	cr_expect_str_eq(cfg->c2s_addresses, "0.0.0.0 ::");
	cr_expect_eq(cfg->c2s_port, 5222);
	cr_expect_eq(cfg->c2s_tls_port, 5223);
	cr_expect_eq(cfg->c2s_timeout, 60000);
	cr_expect_eq(cfg->c2s_idle_timeout, 300000);
	cr_expect_eq(cfg->max_stanza_size, 262144);
	cr_expect_eq(cfg->max_depth, 64);
	cr_expect_eq(cfg->max_attributes, 64);
	cr_expect_eq(cfg->max_connections_per_ip, 100);
	cr_expect_eq(cfg->max_sessions_per_account, 10);
	cr_expect_eq(cfg->backlog, 1024);
	config_free(&cfg);
}

Test(defaults, match_the_spec_tls_and_below)
{
	struct config *cfg = config_new();

	cr_expect_str_eq(cfg->tls_certificate, "/etc/xmppd/cert.pem");
	cr_expect_str_eq(cfg->tls_key, "/etc/xmppd/key.pem");
	cr_expect_str_eq(cfg->tls_ciphers, "ECDHE+AESGCM:ECDHE+CHACHA20");
	cr_expect_str_eq(cfg->tls_ciphersuites, "TLS_AES_128_GCM_SHA256:"
			 "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
	cr_expect_eq(cfg->tls_required, 1);
	cr_expect_eq(cfg->tls_own_records, 1);
	cr_expect_eq(cfg->sasl_max_failures, 3);
	cr_expect_eq(cfg->scram_iterations, 4096);
	cr_expect_eq(cfg->offline_quota, 1000);
	cr_expect_eq(cfg->offline_watch, 10000);
	cr_expect_eq(cfg->offline_watch_max, 4096);
	cr_expect_eq(cfg->roster_max_items, 1000);
	cr_expect_eq(cfg->roster_max_groups, 100);
	cr_expect_eq(cfg->blocklist_max_items, 1000);
	cr_expect_eq(cfg->vcard_max_size, 64u << 10);
	cr_expect_eq(cfg->private_max_size, 64u << 10);
	cr_expect_eq(cfg->private_max_namespaces, 100);
	cr_expect_eq(cfg->max_directed_presence, 64);
	cr_expect_str_eq(cfg->db_conninfo, "dbname=xmppd");
	cr_expect_eq(cfg->session_table_size, 65536);
	cr_expect_eq(cfg->queue_outbox_frames, 65536);
	cr_expect_eq(cfg->queue_outbox_bytes, 4u << 20);
	cr_expect_eq(cfg->c2s_max_output_bytes, 4u << 20);
	cr_expect_str_eq(cfg->control_socket, "/run/xmppd/control.sock");
	cr_expect_str_eq(cfg->control_owner, "");
	cr_expect_str_eq(cfg->control_group, "");
	cr_expect_eq(cfg->control_mode, 0660);
	config_free(&cfg);
}

Test(defaults, pass_config_check)
{
	struct config *cfg = config_new();
	const char *error = NULL;

	cr_expect_eq(config_check(cfg, &error), 0, "%s", error);
	config_free(&cfg);
}

Test(defaults, free_sets_null)
{
	struct config *cfg = config_new();

	config_free(&cfg);
	cr_assert_null(cfg);
	config_free(&cfg);      /* a second free is harmless */
}

/* ---- good input ------------------------------------------------------- */

Test(parse, good_file_every_type)
{
	struct config *cfg = config_new();
	const char *error = NULL;

	cr_assert_eq(config_parse_file(cfg, src_path("tests/config/good-all.conf"),
				       &error), 0, "%s", error);
	cr_expect_str_eq(cfg->hosts, "example.org chat.example.org");
	cr_expect_eq(cfg->workers, 4);
	cr_expect_str_eq(cfg->pid_file, "/var/run/xmppd.pid");
	cr_expect_eq(cfg->log_level, LOG_LEVEL_DEBUG);
	cr_expect_eq(cfg->shutdown_timeout, 1500);
	cr_expect_str_eq(cfg->c2s_addresses, "127.0.0.1 ::1");
	cr_expect_eq(cfg->c2s_port, 15222);
	cr_expect_eq(cfg->c2s_timeout, 120000);
	cr_expect_eq(cfg->c2s_idle_timeout, 3600000);
	cr_expect_eq(cfg->max_stanza_size, 1 << 20);
	cr_expect_str_eq(cfg->tls_key,
			 "/etc/ssl/a \"quoted\" back\\slash #not-a-comment.pem");
	cr_expect_str_eq(cfg->tls_ciphers, "HIGH:!aNULL");
	cr_expect_eq(cfg->tls_required, 0);
	cr_expect_eq(cfg->sasl_max_failures, 5);
	cr_expect_eq(cfg->scram_iterations, 10000);
	cr_expect_eq(cfg->vcard_max_size, 16 << 10);
	cr_expect_eq(cfg->private_max_namespaces, 20);
	cr_expect_eq(cfg->queue_outbox_frames, 128);
	cr_expect_eq(cfg->control_mode, 0600);
	config_free(&cfg);
}

/* Each good-*.conf serializes to exactly its .ref. */
static void check_good_golden(const char *dir, const char *file)
{
	char path[4096], ref[4096];
	struct config *cfg = config_new();
	const char *error = NULL;
	char *text, *want;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	snprintf(ref, sizeof(ref), "%s/%.*s.ref", dir,
		 (int)(strlen(file) - 5), file);
	cr_expect_eq(config_parse_file(cfg, path, &error), 0, "%s: %s", file,
		     error);
	text = config_serialize(cfg);
	want = slurp(ref);
	cr_expect_str_eq(text, want, "%s serialized differently", file);
	free(text);
	free(want);
	config_free(&cfg);
}

static bool golden_match(const char *name, const char *prefix)
{
	size_t n = strlen(name);

	return strncmp(name, prefix, strlen(prefix)) == 0 && n > 5 &&
	       strcmp(name + n - 5, ".conf") == 0;
}

/* Runs check for every PREFIX*.conf; returns how many there were. */
static unsigned for_each_golden(const char *prefix,
				void (*check)(const char *, const char *))
{
	char dir[4096];
	struct dirent *e;
	unsigned n = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s", src_path("tests/config"));
	d = opendir(dir);
	cr_assert_not_null(d, "cannot open %s", dir);
	while ((e = readdir(d)) != NULL) {
		if (golden_match(e->d_name, prefix)) {
			check(dir, e->d_name);
			n++;
		}
	}
	closedir(d);
	return n;
}

Test(parse, good_golden_files)
{
	cr_assert_geq(for_each_golden("good-", check_good_golden), 3);
}

Test(parse, blocks_and_dotted_keys_mix)
{
	struct config *cfg = parse_ok("c2s {\n  port = 1\n}\n"
				      "c2s.tls_port = 2\n"
				      "c2s {\n backlog = 3\n}\n");

	cr_expect_eq(cfg->c2s_port, 1);
	cr_expect_eq(cfg->c2s_tls_port, 2);
	cr_expect_eq(cfg->backlog, 3);
	config_free(&cfg);
}

Test(parse, quotes_and_comments)
{
	struct config *cfg = parse_ok(
		"# full-line comment\n"
		"   # indented comment\n"
		"hosts = a.example # trailing comment\n"
		"user = \"x # y\"  # the first # was quoted\n"
		"group = \"q\\\"uote\\\\\"\n"
		"pid_file = \"  padded  \"\n"
		"log_file = \"\"\n"
		"db.conninfo =   spaced   value   \n"
		"workers = \"7\"\n");

	cr_expect_str_eq(cfg->hosts, "a.example");
	cr_expect_str_eq(cfg->user, "x # y");
	cr_expect_str_eq(cfg->group, "q\"uote\\");
	cr_expect_str_eq(cfg->pid_file, "  padded  ");
	cr_expect_str_eq(cfg->log_file, "");
	cr_expect_str_eq(cfg->db_conninfo, "spaced   value");
	cr_expect_eq(cfg->workers, 7);
	config_free(&cfg);
}

Test(parse, empty_unquoted_string)
{
	struct config *cfg = parse_ok("control.owner =\ncontrol.group = # x\n");

	cr_expect_str_eq(cfg->control_owner, "");
	cr_expect_str_eq(cfg->control_group, "");
	config_free(&cfg);
}

Test(parse, keys_not_given_keep_defaults)
{
	struct config *cfg = parse_ok("workers = 3\n");
	struct config *def = config_new();

	cr_expect_eq(diff_count(def, cfg), 1);
	config_free(&cfg);
	config_free(&def);
}

Test(parse, same_text_twice_is_not_a_duplicate)
{
	struct config *cfg = config_new();
	const char *error = NULL;

	cr_assert_eq(config_parse_string(cfg, "a", "workers = 2\n", &error), 0);
	cr_assert_eq(config_parse_string(cfg, "b", "workers = 3\n", &error), 0,
		     "%s", error);
	cr_expect_eq(cfg->workers, 3);
	config_free(&cfg);
}

static void expect_value(const char *keyval, const char *name,
			 const char *canon)
{
	struct config *cfg = config_new();

	set_ok(cfg, keyval);
	cr_expect_str_eq(value(cfg, name), canon, "-o %s", keyval);
	config_free(&cfg);
}

Test(values, sizes)
{
	struct config *cfg = config_new();

	set_ok(cfg, "c2s.max_stanza_size=10240");
	cr_expect_eq(cfg->max_stanza_size, 10240);
	set_ok(cfg, "c2s.max_stanza_size=20k");
	cr_expect_eq(cfg->max_stanza_size, 20480);
	set_ok(cfg, "c2s.max_stanza_size=2m");
	cr_expect_eq(cfg->max_stanza_size, 2 << 20);
	set_ok(cfg, "c2s.max_stanza_size=16M");
	cr_expect_eq(cfg->max_stanza_size, 16 << 20);
	config_free(&cfg);
	expect_value("c2s.max_stanza_size=10241", "c2s.max_stanza_size",
		     "10241");
	expect_value("c2s.max_stanza_size=1024K", "c2s.max_stanza_size", "1M");
}

Test(values, durations)
{
	struct config *cfg = config_new();

	set_ok(cfg, "c2s.timeout=90");
	cr_expect_eq(cfg->c2s_timeout, 90000);
	set_ok(cfg, "c2s.timeout=1500ms");
	cr_expect_eq(cfg->c2s_timeout, 1500);
	set_ok(cfg, "c2s.timeout=45s");
	cr_expect_eq(cfg->c2s_timeout, 45000);
	set_ok(cfg, "c2s.timeout=3m");
	cr_expect_eq(cfg->c2s_timeout, 180000);
	set_ok(cfg, "c2s.timeout=1h");
	cr_expect_eq(cfg->c2s_timeout, 3600000);
	config_free(&cfg);
	expect_value("c2s.timeout=60s", "c2s.timeout", "1m");
	expect_value("c2s.timeout=90s", "c2s.timeout", "90s");
	expect_value("c2s.timeout=1001ms", "c2s.timeout", "1001ms");
	expect_value("c2s.idle_timeout=120m", "c2s.idle_timeout", "2h");
}

Test(values, bools)
{
	static const char *const yes[] = { "yes", "true", "on", "1", "YES" };
	static const char *const no[] = { "no", "false", "off", "0", "Off" };
	struct config *cfg = config_new();
	char kv[64];

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		snprintf(kv, sizeof(kv), "tls.required=%s", no[i]);
		set_ok(cfg, kv);
		cr_expect_eq(cfg->tls_required, 0, "%s", kv);
		snprintf(kv, sizeof(kv), "tls.required=%s", yes[i]);
		set_ok(cfg, kv);
		cr_expect_eq(cfg->tls_required, 1, "%s", kv);
	}
	config_free(&cfg);
}

Test(values, modes_and_log_levels)
{
	struct config *cfg = config_new();

	set_ok(cfg, "control.mode=600");
	cr_expect_eq(cfg->control_mode, 0600);
	set_ok(cfg, "control.mode=07777");
	cr_expect_eq(cfg->control_mode, 07777);
	set_ok(cfg, "log_level=warn");
	cr_expect_eq(cfg->log_level, LOG_LEVEL_WARN);
	cr_expect_str_eq(value(cfg, "log_level"), "warn");
	set_ok(cfg, "log_level=error");
	cr_expect_eq(cfg->log_level, LOG_LEVEL_ERROR);
	config_free(&cfg);
	expect_value("control.mode=0", "control.mode", "0000");
	expect_value("control.mode=640", "control.mode", "0640");
}

Test(values, uint_bounds_inclusive)
{
	expect_value("c2s.port=65535", "c2s.port", "65535");
	expect_value("c2s.port=1", "c2s.port", "1");
	expect_value("workers=64", "workers", "64");
	expect_value("c2s.max_connections_per_ip=4294967295",
		     "c2s.max_connections_per_ip", "4294967295");
	expect_value("shutdown_timeout=10m", "shutdown_timeout", "10m");
	expect_value("shutdown_timeout=1000ms", "shutdown_timeout", "1s");
}

/* ---- bad input -------------------------------------------------------- */

/* Each err-*.conf fails with exactly the error in its .ref. */
static void check_err_golden(const char *dir, const char *file)
{
	char path[4096], ref[4096], want[8192];
	struct config *cfg = config_new();
	const char *error = NULL;
	char *text;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	snprintf(ref, sizeof(ref), "%s/%.*s.ref", dir,
		 (int)(strlen(file) - 5), file);
	text = slurp(ref);
	strip_newline(text);
	snprintf(want, sizeof(want), "%s/%s", dir, text);
	cr_expect_eq(config_parse_file(cfg, path, &error), -1,
		     "%s parsed without error", file);
	if (error != NULL)
		cr_expect_str_eq(error, want, "%s", file);
	free(text);
	config_free(&cfg);
}

Test(errors, golden_files)
{
	cr_assert_geq(for_each_golden("err-", check_err_golden), 40);
}

Test(errors, location_uses_the_given_name)
{
	cr_expect_str_eq(parse_error("\n\n\nworkers = x\n"),
			 "t.conf:4: bad number 'x' for 'workers'");
	cr_expect_str_eq(parse_error("tls {\n"), "t.conf:1: block 'tls' is "
			 "not closed");
}

Test(errors, missing_file)
{
	struct config *cfg = config_new();
	const char *error = NULL;
	char want[4200];
	const char *path = src_path("tests/config/no-such-file.conf");

	snprintf(want, sizeof(want), "%s: open() failed: No such file or "
		 "directory", path);
	cr_assert_eq(config_parse_file(cfg, path, &error), -1);
	cr_expect_str_eq(error, want);
	config_free(&cfg);
}

/* ---- -o overrides ----------------------------------------------------- */

Test(overrides, apply_after_a_file)
{
	struct config *cfg = parse_ok("c2s {\n port = 6000\n}\n");

	set_ok(cfg, "c2s.port=6001");
	cr_expect_eq(cfg->c2s_port, 6001);
	set_ok(cfg, " hosts = a.example b.example ");
	cr_expect_str_eq(cfg->hosts, "a.example b.example");
	set_ok(cfg, "db.conninfo=password=a#b");    /* '#' is data in -o */
	cr_expect_str_eq(cfg->db_conninfo, "password=a#b");
	set_ok(cfg, "user=\"a \\\"b\\\"\"");
	cr_expect_str_eq(cfg->user, "a \"b\"");
	set_ok(cfg, "group=");
	cr_expect_str_eq(cfg->group, "");
	config_free(&cfg);
}

Test(overrides, errors)
{
	struct config *cfg = config_new();

	cr_expect_str_eq(set_error(cfg, "c2s.port"),
			 "-o c2s.port: missing '='");
	cr_expect_str_eq(set_error(cfg, "c2s.prot=1"),
			 "-o c2s.prot=1: unknown key 'c2s.prot'");
	cr_expect_str_eq(set_error(cfg, "c2s.port=0"), "-o c2s.port=0: "
			 "'c2s.port' must be between 1 and 65535, got '0'");
	cr_expect_str_eq(set_error(cfg, "workers="),
			 "-o workers=: empty value for 'workers'");
	cr_expect_str_eq(set_error(cfg, "tls.required=maybe"),
			 "-o tls.required=maybe: bad boolean 'maybe' for "
			 "'tls.required' (use yes or no)");
	cr_expect_str_eq(set_error(cfg, "hosts=a\nb"),
			 "-o hosts=a\nb: control character in value");
	cr_expect_str_eq(set_error(cfg, "hosts=\"a"),
			 "-o hosts=\"a: unterminated quoted value");
	cr_expect_eq(cfg->c2s_port, 5222, "a failed -o changed the value");
	config_free(&cfg);
}

/* ---- cross-key checks ------------------------------------------------- */

static const char *check_error(const char *overrides[])
{
	struct config *cfg = config_new();
	const char *error = NULL;

	for (; *overrides != NULL; overrides++)
		set_ok(cfg, *overrides);
	cr_assert_eq(config_check(cfg, &error), -1, "no check error");
	config_free(&cfg);
	return error;
}

#define CHECK_ERROR(...) check_error((const char *[]){ __VA_ARGS__, NULL })

Test(check, cross_key_errors)
{
	cr_expect_str_eq(CHECK_ERROR("c2s.tls_port=5222"),
			 "'c2s.port' and 'c2s.tls_port' are both 5222");
	cr_expect_str_eq(CHECK_ERROR("tls.certificate=cert.pem"),
			 "'tls.certificate' is 'cert.pem', a relative path: "
			 "give an absolute one (the daemon works in /)");
	cr_expect_str_eq(CHECK_ERROR("control.socket=run/control.sock"),
			 "'control.socket' is 'run/control.sock', a relative "
			 "path: give an absolute one (the daemon works in /)");
	cr_expect_str_eq(CHECK_ERROR("log_file=xmppd.log"),
			 "'log_file' is 'xmppd.log', a relative path: give an "
			 "absolute one (the daemon works in /)");
	cr_expect_str_eq(CHECK_ERROR("hosts=  "),
			 "'hosts' must name at least one domain");
	cr_expect_str_eq(CHECK_ERROR("hosts=a.example b.example A.example"),
			 "'hosts': 'A.example' is listed twice");
	cr_expect_str_eq(CHECK_ERROR("c2s.addresses="),
			 "'c2s.addresses' is empty");
	cr_expect_str_eq(CHECK_ERROR("tls.certificate="),
			 "'tls.key' is set but 'tls.certificate' is empty");
	cr_expect_str_eq(CHECK_ERROR("tls.key="),
			 "'tls.certificate' is set but 'tls.key' is empty");
	cr_expect_str_eq(CHECK_ERROR("tls.certificate=", "tls.key="),
			 "'tls.required' is yes but 'tls.certificate' is empty");
	cr_expect_str_eq(CHECK_ERROR("tls.certificate=", "tls.key=",
				     "tls.required=no"),
			 "'c2s.tls_port' is 5223 but 'tls.certificate' is empty"
			 " (set the port to 0 to disable direct TLS)");
	cr_expect_str_eq(CHECK_ERROR("db.conninfo= "),
			 "'db.conninfo' is empty: name your PostgreSQL database "
			 "there and run 'xmppctl db migrate', or run "
			 PKGDATADIR "/setup-local for a local one");
	cr_expect_str_eq(CHECK_ERROR("control.mode=0666"), "'control.mode' "
			 "0666 lets every local user control xmppd");
	cr_expect_str_eq(CHECK_ERROR("muc.create=everyone"), "'muc.create' "
			 "is 'everyone': it is local, anyone or nobody");
	cr_expect_str_eq(CHECK_ERROR("muc.service=chat.rooms"),
			 "'muc.service' is 'chat.rooms': one DNS label of "
			 "a-z, 0-9 and inner '-', or \"\"");
	cr_expect_str_eq(CHECK_ERROR("muc.service=-muc"),
			 "'muc.service' is '-muc': one DNS label of "
			 "a-z, 0-9 and inner '-', or \"\"");
}

/* A cluster node needs a name, the shared secret, and consistent
 * credentials; without cluster.servers none of it is asked for. */
Test(check, cluster)
{
#define NATS "cluster.servers=nats://127.0.0.1:4222"
#ifdef HAVE_NATS
	cr_expect_str_eq(CHECK_ERROR(NATS, "cluster.secret_file=/k"),
			 "'cluster.servers' is set but 'cluster.node' is empty: "
			 "give this node a name unique in the cluster");
	cr_expect_str_eq(CHECK_ERROR(NATS, "cluster.node=a.b",
				     "cluster.secret_file=/k"),
			 "'cluster.node' is 'a.b': 1 to 32 letters, digits, "
			 "'-' or '_'");
	cr_expect_str_eq(CHECK_ERROR(NATS, "cluster.node=n1",
				     "cluster.name=", "cluster.secret_file=/k"),
			 "'cluster.name' is '': 1 to 32 letters, digits, "
			 "'-' or '_'");
	cr_expect_str_eq(CHECK_ERROR(NATS, "cluster.node=n1"),
			 "'cluster.servers' is set but 'cluster.secret_file' "
			 "is empty: every node needs the same secret "
			 "(head -c 64 /dev/urandom > FILE)");
	cr_expect_str_eq(CHECK_ERROR(NATS, "cluster.node=n1",
				     "cluster.secret_file=k"),
			 "'cluster.secret_file' is 'k', a relative path: give "
			 "an absolute one (the daemon works in /)");
	cr_expect_str_eq(CHECK_ERROR(NATS, "cluster.node=n1",
				     "cluster.secret_file=/k",
				     "cluster.node_timeout=1s"),
			 "'cluster.node_timeout' must be at least twice "
			 "'cluster.heartbeat_interval'");
	cr_expect_str_eq(CHECK_ERROR(NATS, "cluster.node=n1",
				     "cluster.secret_file=/k",
				     "cluster.heartbeat_interval=3s",
				     "cluster.node_timeout=6s",
				     "cluster.lease_time=5s"),
			 "'cluster.lease_time' must be at least twice "
			 "'cluster.heartbeat_interval'");
	cr_expect_str_eq(CHECK_ERROR(NATS, "cluster.node=n1",
				     "cluster.secret_file=/k",
				     "cluster.user=xmppd"),
			 "'cluster.user' and 'cluster.password_file' go "
			 "together");
	struct config *cfg = config_new();
	const char *error = NULL;
	set_ok(cfg, NATS);
	set_ok(cfg, "cluster.node=node-1");
	set_ok(cfg, "cluster.secret_file=/etc/xmppd/cluster.key");
	cr_expect_eq(config_check(cfg, &error), 0, "%s", error);
	config_free(&cfg);
#else
	cr_expect_str_eq(CHECK_ERROR(NATS), "'cluster.servers' is set but "
			 "this xmppd was built without NATS (configure "
			 "--with-nats, libnats-dev)");
#endif
#undef NATS
}

/* The cluster is on only when cluster.servers names something: the
 * master then runs the bridge slot, so separators alone must not. */
Test(config, cluster_on)
{
	static const struct { const char *servers; bool on; } cases[] = {
		{ "", false }, { " ", false }, { " ,\t, ", false },
		{ "nats://127.0.0.1:4222", true },
		{ ", nats://a:1 nats://b:2", true },
	};
	char kv[128];
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct config *cfg = config_new();
		snprintf(kv, sizeof(kv), "cluster.servers=%s",
			 cases[i].servers);
		set_ok(cfg, kv);
		cr_expect_eq(config_cluster_on(cfg), cases[i].on, "'%s'",
			     cases[i].servers);
		config_free(&cfg);
	}
}

Test(check, bad_host_names)
{
	static const char *const bad[] = {
		"-a.example", "a-.example", "a..example", ".example",
		"example.", "example.org-", "ex_ample.org", "ex/ample", "a@b.example",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.x",
	};
	char kv[256], want[256];

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		snprintf(kv, sizeof(kv), "hosts=ok.example %s", bad[i]);
		snprintf(want, sizeof(want),
			 "'hosts': '%s' is not a valid domain name", bad[i]);
		cr_expect_str_eq(CHECK_ERROR(kv), want);
	}
}

Test(check, good_configs_pass)
{
	struct config *cfg = config_new();
	const char *error = NULL;

	set_ok(cfg, "hosts= example.org\tchat.example.org localhost 127.0.0.1 "
	       "xn--bcher-kva.example b\xc3\xbc" "cher.example "
	       "a23456789012345678901234567890123456789012345678901234567890123"
	       ".example");
	set_ok(cfg, "tls.certificate=");
	set_ok(cfg, "tls.key=");
	set_ok(cfg, "tls.required=no");
	set_ok(cfg, "c2s.tls_port=0");
	cr_expect_eq(config_check(cfg, &error), 0, "%s", error);
	config_free(&cfg);
}

/* ---- serialize, diff -------------------------------------------------- */

static void expect_round_trip(const struct config *cfg)
{
	char *text = config_serialize(cfg), *again;
	struct config *copy = parse_ok(text);

	cr_expect_eq(diff_count(cfg, copy), 0, "round trip changed:\n%s", text);
	again = config_serialize(copy);
	cr_expect_str_eq(again, text);
	free(text);
	free(again);
	config_free(&copy);
}

Test(serialize, defaults_round_trip)
{
	struct config *cfg = config_new();

	expect_round_trip(cfg);
	config_free(&cfg);
}

Test(serialize, every_key_once)
{
	struct config *cfg = config_new();
	char *text = config_serialize(cfg);
	char line[128];

	for (size_t i = 0; i < config_defs_count; i++) {
		snprintf(line, sizeof(line), "%s%s = \"", i ? "\n" : "",
			 config_defs[i].name);
		cr_expect_not_null(strstr(text, line), "no %s", line);
	}
	cr_expect_eq(text[strlen(text) - 1], '\n');
	free(text);
	config_free(&cfg);
}

Test(serialize, tricky_values_round_trip)
{
	struct config *cfg = config_new();

	set_ok(cfg, "hosts=a.example\tb.example");
	set_ok(cfg, "user=\"q\\\"uote\"");
	set_ok(cfg, "group=back\\slash");
	set_ok(cfg, "db.conninfo=password='#x' host=\"h\"");
	set_ok(cfg, "log_file=  ");
	set_ok(cfg, "log_level=debug");
	set_ok(cfg, "tls.required=0");
	set_ok(cfg, "c2s.max_stanza_size=10241");
	set_ok(cfg, "c2s.timeout=1001ms");
	set_ok(cfg, "control.mode=0");
	set_ok(cfg, "workers=64");
	expect_round_trip(cfg);
	config_free(&cfg);
}

struct diff_log {
	char text[1024];
};

static void log_diff(const struct config_def *def, const char *old,
		     const char *new, void *ctx)
{
	struct diff_log *log = ctx;
	size_t n = strlen(log->text);

	snprintf(log->text + n, sizeof(log->text) - n, "%s: %s -> %s\n",
		 def->name, old, new);
}

Test(diff, reports_exactly_the_changed_keys)
{
	struct config *a = config_new();
	struct config *b = parse_ok("hosts = example.org\n"
				    "c2s {\n port = 5300\n"
				    " timeout = 60000ms\n}\n"  /* same value */
				    "tls.required = no\n"
				    "control.mode = 0640\n"
				    "user = xmppd\n");           /* same value */
	struct diff_log log = { "" };

	config_diff(a, b, log_diff, &log);
	cr_expect_str_eq(log.text, "hosts: localhost -> example.org\n"
			 "c2s.port: 5222 -> 5300\n"
			 "tls.required: yes -> no\n"
			 "control.mode: 0660 -> 0640\n");
	log.text[0] = '\0';
	config_diff(a, a, log_diff, &log);
	cr_expect_str_eq(log.text, "");
	config_free(&a);
	config_free(&b);
}

/* ---- the example file ------------------------------------------------- */

Test(example, committed_file_is_current)
{
	char *want = example_text();
	char *have = slurp(src_path("etc/xmppd.conf.example"));

	cr_expect_str_eq(have, want, "etc/xmppd.conf.example is stale");
	free(want);
	free(have);
}

Test(example, parses_to_defaults)
{
	char *text = example_text();
	struct config *cfg = parse_ok(text);
	struct config *def = config_new();

	cr_expect_eq(diff_count(def, cfg), 0);
	free(text);
	config_free(&cfg);
	config_free(&def);
}

/* Remove the '#' of every "#key = value" line, keeping doc comments;
 * returns how many keys were uncommented. */
static unsigned uncomment_keys(char *text)
{
	unsigned n = 0;

	for (char *line = text; line != NULL; line = strchr(line, '\n')) {
		char *p;
		if (*line == '\n')
			line++;
		p = line + strspn(line, "\t");
		if (p[0] == '#' && p[1] >= 'a' && p[1] <= 'z') {
			p[0] = ' ';
			n++;
		}
	}
	return n;
}

Test(example, uncommented_parses_to_defaults)
{
	char *text = example_text();
	struct config *cfg, *def = config_new();

	cr_expect_eq(uncomment_keys(text), config_defs_count);
	cfg = parse_ok(text);
	cr_expect_eq(diff_count(def, cfg), 0);
	free(text);
	config_free(&cfg);
	config_free(&def);
}

Test(example, lists_every_key_with_its_policy)
{
	char *text = example_text();
	char want[256];

	for (size_t i = 0; i < config_defs_count; i++) {
		const struct config_def *d = &config_defs[i];
		const char *dot = strchr(d->name, '.');
		snprintf(want, sizeof(want), "%s# %s (%s)\n%s#%s = ",
			 dot ? "\t" : "\n", d->doc,
			 d->flags & CONFIG_F_RESTART ? "restart-only" :
			 "reloadable", dot ? "\t" : "", dot ? dot + 1 : d->name);
		cr_expect_not_null(strstr(text, want), "missing: %s", want);
	}
	free(text);
}

/*
 * config.h - the settings of xmppd: one table row per key drives parsing,
 * `xmppd -t`, `-o key=value`, the reload diff and etc/xmppd.conf.example.
 *
 * Syntax: `key = value` lines, `#` comments, and one level of
 * `name { ... }` blocks; a key inside block `tls` is named `tls.key`.
 * Values may be double-quoted.  Errors read "file:line: reason"; unknown
 * keys, bad values and out-of-range numbers are errors.  A parsed config
 * lives in its own arena (one per generation) and is freed as a whole.
 */
#ifndef XMPPD_CONFIG_H
#define XMPPD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "arena.h"

enum config_type {
	CONFIG_TYPE_STRING = 1,
	CONFIG_TYPE_UINT,       /* unsigned decimal */
	CONFIG_TYPE_BOOL,       /* yes/no, true/false, on/off, 1/0 */
	CONFIG_TYPE_SIZE,       /* bytes, suffix k/K, m/M, g/G allowed */
	CONFIG_TYPE_DURATION,   /* stored in ms; suffix ms, s (default), m, h */
	CONFIG_TYPE_MODE,       /* octal file mode, e.g. 0660 */
	CONFIG_TYPE_LOGLEVEL,   /* debug, info, warn, error */
};

enum config_flags {
	CONFIG_F_RELOADABLE = 0x01, /* takes effect on SIGHUP */
	CONFIG_F_RESTART = 0x02,    /* needs a restart; reload reports it */
};

struct config {
	struct arena arena;     /* owns every string below */
	uint64_t generation;    /* set by the master on load/reload */

	/* general */
	const char *hosts;      /* space-separated hosted domains */
	unsigned workers;       /* 0: online CPUs */
	const char *user;       /* drop to this user when started as root */
	const char *group;
	const char *pid_file;
	const char *log_file;   /* "" or "-": stderr */
	unsigned log_level;     /* enum log_level */
	uint64_t shutdown_timeout;  /* ms */

	/* c2s listeners */
	const char *c2s_addresses;  /* space-separated */
	unsigned c2s_port;
	unsigned c2s_tls_port;      /* direct TLS (XEP-0368); 0 disables */
	uint64_t c2s_timeout;       /* ms, before authentication */
	uint64_t c2s_idle_timeout;  /* ms, ping then drop */
	uint64_t max_stanza_size;   /* bytes */
	unsigned max_depth;         /* element nesting in a stanza */
	unsigned max_attributes;    /* attributes on one element */
	uint64_t c2s_max_output_bytes;  /* unread output before a close */
	uint64_t c2s_send_buffer;       /* SO_SNDBUF of clients, 0: kernel */
	unsigned max_connections_per_ip;   /* 0: no limit */
	unsigned max_sessions_per_account; /* 0: no limit */
	unsigned backlog;

	/* tls */
	const char *tls_certificate;
	const char *tls_key;
	const char *tls_ciphers;
	const char *tls_ciphersuites;
	unsigned tls_required;      /* STARTTLS mandatory (bool) */
	unsigned tls_own_records;   /* tls13.c after TLS 1.3 handshakes */
	unsigned tls_max_key_updates;   /* in a row, without data */
	unsigned tls_records_per_key;   /* our KeyUpdate after this many */

	/* http front (worker/http.h) */
	const char *http_addresses; /* space-separated */
	unsigned http_port;         /* 0: off */
	unsigned http_tls_port;     /* 0: off */
	const char *http_admin_addresses;   /* prefix list (cidr.h) */
	unsigned http_max_connections;  /* server-wide, split over workers */
	uint64_t http_max_header_size;  /* bytes: 431 */
	uint64_t http_max_url_size;     /* bytes: 414 */
	uint64_t http_max_body_size;    /* bytes: 413 */
	uint64_t http_request_timeout;  /* ms: 408 */
	uint64_t http_idle_timeout;     /* ms, between requests */

	/* sasl */
	unsigned sasl_max_failures;
	uint64_t sasl_throttle_delay;   /* ms; doubles per failure, 0 off */
	unsigned sasl_max_failures_per_address; /* 0: no ban */
	uint64_t sasl_failure_window;   /* ms */
	uint64_t sasl_ban_time;         /* ms */
	unsigned sasl_max_failures_per_account; /* 0: no account throttle */
	uint64_t sasl_account_throttle_time;    /* ms */
	unsigned sasl_throttle_table_size;      /* shared records (restart) */
	unsigned scram_iterations;

	/* instant messaging: the extensions' settings (worker/ext.h; grouped
	 * as in config.c), then presence's */
	unsigned offline_quota;
	uint64_t offline_watch;         /* ms; 0: never (cluster only) */
	unsigned offline_watch_max;     /* accounts watched per worker */
	unsigned roster_max_items;
	unsigned roster_max_groups;     /* groups on one roster item */
	unsigned blocklist_max_items;
	uint64_t vcard_max_size;        /* bytes, serialized <vCard/> */
	uint64_t private_max_size;      /* bytes, one namespace's elements */
	unsigned private_max_namespaces;
	unsigned sm_max_resume_s;       /* XEP-0198 max, seconds */
	unsigned sm_max_unacked;        /* stanzas in the journal */
	uint64_t sm_handover_timeout;   /* ms */
	uint64_t sm_forward_time;       /* ms */
	unsigned mam_max_page;          /* results per archive query */
	unsigned mam_batch_rows;        /* archive rows per INSERT */
	unsigned mam_queue_rows;        /* archive rows waiting per worker */
	uint64_t mam_queue_bytes;       /* their bytes */
	unsigned mam_retention_days;    /* 0: forever */
	unsigned mam_max_prefs_jids;    /* XEP-0441 always + never JIDs */
	uint64_t mam_batch_hold;        /* ms a batch waits to fill */
	unsigned mam_max_query_ids;     /* ids one archive query names */
	unsigned mam_max_scan_rows;     /* rows a count / full-JID query reads */
	unsigned csi_max_held;          /* XEP-0352 stanzas held, 0: none */
	unsigned max_directed_presence; /* remembered per session */

	/* database */
	const char *db_conninfo;
	uint64_t db_max_queue_bytes;    /* queries waiting for PostgreSQL */

	/* shared memory and queues */
	unsigned session_table_size;
	unsigned sm_records_per_worker;     /* XEP-0198 journal (restart) */
	uint64_t sm_pool_bytes_per_worker;  /* bytes (restart) */
	uint64_t sm_max_unacked_bytes;      /* per session */
	unsigned queue_outbox_frames;
	uint64_t queue_outbox_bytes;    /* per destination worker */

	/* control socket */
	const char *control_socket;
	const char *control_owner;
	const char *control_group;
	unsigned control_mode;

	/* federation, incoming side (s2s.*) */
	const char *s2s_addresses;  /* space-separated */
	unsigned s2s_port;          /* 0: off */
	unsigned s2s_tls_port;      /* direct TLS (XEP-0368); 0: off */
	unsigned s2s_require_tls;   /* RFC 7590 (bool) */
	const char *s2s_ca_file;    /* "" : the system store only */
	const char *s2s_auth;       /* "dialback" or "pkix" */
	const char *s2s_dialback_domains;   /* space-separated */
	const char *s2s_blocked_domains;    /* space-separated */
	uint64_t s2s_max_stanza_size;       /* bytes */
	unsigned s2s_max_stanza_rate;       /* per second; 0: no limit */
	unsigned s2s_max_incoming;          /* streams per worker */
	unsigned s2s_max_incoming_per_domain;   /* per worker */
	uint64_t s2s_auth_timeout;          /* ms */
	uint64_t s2s_verify_timeout;        /* ms */
	uint64_t s2s_in_idle_timeout;       /* ms */
	unsigned s2s_max_domain_pairs;      /* dialback pairs per stream */
	unsigned s2s_max_dialback_requests; /* verifications per stream */

	/* federation, outgoing side (s2s.*) */
	uint64_t s2s_max_queue_bytes;   /* per link, while it is set up */
	uint64_t s2s_out_idle_timeout;  /* ms */
	uint64_t s2s_link_timeout;      /* ms, the whole setup */
	unsigned s2s_max_links;         /* per worker; 0: off */
	uint64_t s2s_ack_timeout;       /* ms, XEP-0198 <r/> to <a/>; 0 off */

	/* after shutdown_timeout: how long a stopping worker waits for
	 * the database writes it queued (offline stores, archive rows) */
	uint64_t shutdown_drain_timeout;    /* ms */
	/* external components (XEP-0114, worker/component.c) */
	const char *component_secrets_file;     /* "": no components */
	const char *component_addresses;        /* space-separated */
	unsigned component_port;                /* 0: off */
	uint64_t component_timeout;             /* ms, to <handshake/> */
	uint64_t component_max_stanza_size;     /* bytes */
	uint64_t component_max_queue_bytes;     /* unread output */
	/* s2s: finding and connecting to remote servers (s2s_dial.c) */
	const char *s2s_dns_servers;    /* "addr[:port] ...", "": system */
	uint64_t s2s_dns_timeout;       /* ms, per DNS step */
	unsigned s2s_dns_max_targets;   /* SRV targets per domain */
	uint64_t s2s_connect_timeout;   /* ms, per address */
	uint64_t s2s_connect_stagger;   /* ms, RFC 8305 attempt delay */
	unsigned s2s_connect_max_addresses;     /* per dial */

	/* personal eventing (worker/pep.c) */
	unsigned pep_max_nodes;         /* nodes per account */
	unsigned pep_max_items;         /* items per node; 'max' */
	uint64_t pep_max_item_size;     /* bytes, serialized payload */
	uint64_t pep_max_account_bytes; /* bytes, all items of an account */
	/* worker/caps_ext.c, shm/caps.c (issue 13) */
	unsigned caps_table_size;       /* shared entries (restart) */
	uint64_t caps_query_timeout;    /* ms a disco#info query waits */
	unsigned caps_max_changes_per_minute; /* per session (reload) */
	uint64_t caps_idle_timeout;     /* ms: held entries untouched */
	unsigned caps_max_new_per_account_hour;
	uint64_t caps_max_notify_bytes; /* +notify names per ver */
	unsigned caps_cache_max_rows;   /* caps_cache LRU bound */
	uint64_t caps_cache_retention;  /* ms: caps_cache unused rows */
	/* worker/pep.c, worker/pubsub.c (h-pepfix) */
	uint64_t pep_max_id_length;     /* bytes of a node name, item id */
	/* worker/pep_compat.c (issue 13) */
	unsigned pep_bookmarks_compat;  /* XEP-0402 #compat (bool) */
	unsigned pep_vcard_conversion;  /* XEP-0398 (bool) */
	/* worker/pep.c: explicit subscriptions (h-pepsub) */
	unsigned pep_max_subscriptions; /* per node */
	/* worker/pep.c, worker/pep_notify.c (h-pepfix2) */
	unsigned pep_max_affiliations;  /* per node */
	uint64_t pep_max_last_items_bytes; /* per login / caps change */
	/* worker/pep_remote.c (issue 13) */
	unsigned pep_max_remote_recipients;     /* per account */
	unsigned pep_remote_caps_queries_per_minute;    /* per worker */
	/* worker/pep.c: subscription bounds (h-fixsub) */
	unsigned pep_max_subscriptions_per_jid; /* per node and bare JID */
	/* worker/pep_remote.c: review 13b (h-fixremote) */
	unsigned caps_max_new_per_domain_hour;  /* per remote domain */
	uint64_t pep_remote_presence_ttl;       /* ms */
	unsigned pep_max_remote_resources;      /* per remote bare JID */
	unsigned pep_remote_parked_max;         /* per worker */
	/* worker/muc.c: XEP-0045 multi-user chat (issue 14) */
	const char *muc_service;        /* label: SERVICE.HOST; "" none */
	unsigned muc_max_rooms;         /* per service */
	unsigned muc_max_occupants;     /* per room */
	unsigned muc_max_rooms_per_account;     /* created by one account */
	const char *muc_create;         /* who creates rooms: local/anyone/admins */
	unsigned muc_history_default;   /* messages sent on entering */
	unsigned muc_history_max;       /* messages a client may ask for */
	unsigned muc_messages_per_minute;       /* per occupant */
	uint64_t muc_max_subject_bytes;
	uint64_t muc_max_nick_bytes;
	uint64_t muc_max_presence_bytes;        /* an occupant's presence */
	unsigned muc_max_affiliations;  /* per room */
	unsigned muc_archive_retention_days;    /* room archives; 0: forever */

	/* cluster/ (issue 15) */
	const char *cluster_servers;    /* NATS URLs; "": no cluster */
	const char *cluster_name;       /* subject prefix xmppd.NAME */
	const char *cluster_node;       /* this node's unique name */
	const char *cluster_user;
	const char *cluster_password_file;
	const char *cluster_credentials;        /* NATS .creds file */
	const char *cluster_tls_ca;
	const char *cluster_tls_certificate;
	const char *cluster_tls_key;
	const char *cluster_secret_file;        /* shared dialback/SASL keys */
	uint64_t cluster_heartbeat_interval;    /* ms */
	uint64_t cluster_node_timeout;          /* ms */
	uint64_t cluster_lease_time;    /* ms: owner fencing (cluster/kv.c) */
	uint64_t cluster_retain_bytes;  /* unacknowledged, per node */
	uint64_t cluster_clock_skew;    /* ms: a new run's first message */
	uint64_t cluster_sync_interval; /* ms: snapshots to one asker */
	unsigned cluster_snapshot_max;  /* sessions in one node's snapshot */
	uint64_t cluster_snapshot_queue;        /* snapshot bytes waiting */
	unsigned cluster_change_log;    /* entries of the session table's
					   change log (shm/session.h) */
	uint64_t cluster_node_forget;   /* ms: a DOWN entry is freed */
	uint64_t cluster_hold_time;     /* ms: a held frame acknowledged
					   anyway (cluster/bridge_route.c) */
};

struct config_def {
	const char *name;       /* "c2s.port" */
	enum config_type type;
	size_t offset;          /* offsetof(struct config, ...) */
	const char *def;        /* default, as it would be written */
	uint64_t min, max;      /* bounds for numeric types (max 0: none) */
	unsigned flags;         /* enum config_flags */
	const char *doc;        /* one line for the example file */
};

extern const struct config_def config_defs[];
extern const size_t config_defs_count;

/* A fresh config with every default applied. */
struct config *config_new(void);
void config_free(struct config **cfg);

/* Parse a file onto cfg (defaults stay for keys not given). */
int config_parse_file(struct config *cfg, const char *path,
		      const char **error_r);
/* Parse text; `name` is used in error messages. */
int config_parse_string(struct config *cfg, const char *name,
			const char *text, const char **error_r);
/* Apply one "key=value" override (-o). */
int config_set(struct config *cfg, const char *keyval, const char **error_r);
/* Cross-key checks (e.g. key without certificate). */
int config_check(const struct config *cfg, const char **error_r);
/* The cluster is on: cluster.servers has something besides separators
 * (then the master runs the cluster bridge after the workers). */
bool config_cluster_on(const struct config *cfg);

const struct config_def *config_find(const char *name);
/* The value of one setting, written back as text (into buf; a string
 * setting returns its stored string, valid as long as cfg). */
const char *config_value_str(const struct config *cfg,
			     const struct config_def *def,
			     char *buf, size_t size);
/* Serialize every setting as "key = value" lines (parsable again);
 * the text is malloc()ed, the caller frees it. */
char *config_serialize(const struct config *cfg);
/* Call cb for each key whose value differs. */
void config_diff(const struct config *a, const struct config *b,
		 void (*cb)(const struct config_def *def, const char *old,
			    const char *new, void *ctx), void *ctx);
/* Write the documented example (every key, default, comment). */
void config_write_example(FILE *out);
/* Write the xmppd.conf(5) manual page (config_man.c). */
void config_man_write(FILE *out);
/* A number of def's type as it would be written in the file ("16M"). */
void config_format_number(const struct config_def *def, uint64_t v,
			  char *buf, size_t size);
/* The largest value def accepts: its max, capped by what the field
 * holds (def->max 0 means only that cap). */
uint64_t config_max(const struct config_def *def);

/* error strings returned by this module live in a static buffer of the
 * calling process, valid until the next call. */

#endif

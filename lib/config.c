/*
 * config.c - the settings table and everything driven by it: defaults,
 * the parser, -o overrides, cross-key checks, serialization, the reload
 * diff and the example file.  One row in config_defs[] per key.
 * Failure policy: parse and check errors return -1 with a reason in a
 * static buffer ("file:line: reason"); a bad default in the table is our
 * own bug and panics.  A failed parse may leave cfg half-updated, so
 * callers parse into a fresh config and drop it on error.
 */
#include "config.h"
#include "cidr.h"
#include "hostport.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Where make install puts setup-local (Makefile.am; fuzz/build.sh has
 * no configure). */
#ifndef PKGDATADIR
#define PKGDATADIR "/usr/local/share/xmppd"
#endif

#define RELOAD CONFIG_F_RELOADABLE
#define RESTART CONFIG_F_RESTART
#define OFF(field) offsetof(struct config, field)

const struct config_def config_defs[] = {
	{ "hosts", CONFIG_TYPE_STRING, OFF(hosts), "localhost", 0, 0, RELOAD,
	  "Hosted domains, space-separated" },
	{ "workers", CONFIG_TYPE_UINT, OFF(workers), "0", 0, 64, RESTART,
	  "Worker processes; 0 means one per online CPU" },
	{ "user", CONFIG_TYPE_STRING, OFF(user), "xmppd", 0, 0, RESTART,
	  "User to run as when started as root" },
	{ "group", CONFIG_TYPE_STRING, OFF(group), "", 0, 0, RESTART,
	  "Group to run as; empty means the user's primary group" },
	{ "pid_file", CONFIG_TYPE_STRING, OFF(pid_file),
	  "/run/xmppd/xmppd.pid", 0, 0, RESTART, "PID file of the master" },
	{ "log_file", CONFIG_TYPE_STRING, OFF(log_file), "", 0, 0, RELOAD,
	  "Log file; empty means stderr with -f, and when daemonized the "
	  "default log file that xmppd -h names; - means stderr" },
	{ "log_level", CONFIG_TYPE_LOGLEVEL, OFF(log_level), "info", 0, 0,
	  RELOAD, "Least severe level logged: debug, info, warn or error" },
	{ "shutdown_timeout", CONFIG_TYPE_DURATION, OFF(shutdown_timeout),
	  "10s", 1000, 600000, RELOAD,
	  "How long workers may flush sessions on shutdown" },
	{ "c2s.addresses", CONFIG_TYPE_STRING, OFF(c2s_addresses), "0.0.0.0 ::",
	  0, 0, RESTART, "Client listener addresses, space-separated" },
	{ "c2s.port", CONFIG_TYPE_UINT, OFF(c2s_port), "5222", 1, 65535,
	  RESTART, "Client port, with STARTTLS" },
	{ "c2s.tls_port", CONFIG_TYPE_UINT, OFF(c2s_tls_port), "5223", 0, 65535,
	  RESTART, "Direct TLS client port (XEP-0368); 0 disables it" },
	{ "c2s.timeout", CONFIG_TYPE_DURATION, OFF(c2s_timeout), "60s",
	  1000, 3600000, RELOAD, "Time a client has to authenticate" },
	{ "c2s.idle_timeout", CONFIG_TYPE_DURATION, OFF(c2s_idle_timeout), "5m",
	  1000, 0, RELOAD, "Silence before a client is pinged, then dropped" },
	{ "c2s.max_stanza_size", CONFIG_TYPE_SIZE, OFF(max_stanza_size), "256K",
	  10 << 10, 16 << 20, RELOAD, "Largest stanza a client may send; "
	  "written out (namespace declarations, escaping) it may take at "
	  "most twice this, or the stream ends with <policy-violation/>" },
	{ "c2s.max_depth", CONFIG_TYPE_UINT, OFF(max_depth), "64", 4, 1024,
	  RELOAD, "Deepest element nesting in a stanza (the stanza is level "
	  "1); deeper gets <policy-violation/>" },
	{ "c2s.max_attributes", CONFIG_TYPE_UINT, OFF(max_attributes), "64", 4,
	  1024, RELOAD, "Most attributes on one element of a stanza; more get "
	  "<policy-violation/>" },
	{ "c2s.max_output_bytes", CONFIG_TYPE_SIZE, OFF(c2s_max_output_bytes),
	  "4M", 64 << 10, 1 << 30, RELOAD,
	  "Output a client may leave unread before it is disconnected; what "
	  "was queued for it goes to offline storage or back to its senders" },
	{ "c2s.send_buffer", CONFIG_TYPE_SIZE, OFF(c2s_send_buffer), "0", 0,
	  64 << 20, RELOAD,
	  "Kernel send buffer of each new client connection (SO_SNDBUF; "
	  "the kernel doubles it); 0 leaves it to the kernel's autotuning, "
	  "which lets a client that stops reading hold up to "
	  "net.ipv4.tcp_wmem's maximum there, on top of "
	  "c2s.max_output_bytes" },
	{ "c2s.max_connections_per_ip", CONFIG_TYPE_UINT,
	  OFF(max_connections_per_ip), "100", 0, 0, RELOAD,
	  "Open client connections per address (IPv4, or IPv6 /64), counted "
	  "across all workers; more get <policy-violation/>; raise it for "
	  "large NATs; 0 means unlimited" },
	{ "c2s.max_sessions_per_account", CONFIG_TYPE_UINT,
	  OFF(max_sessions_per_account), "10", 0, 1000000, RELOAD,
	  "Bound resources per account across all workers; one more bind "
	  "ends the account's session waiting longest for an XEP-0198 "
	  "<resume/>, if any, else gets <resource-constraint/>; 0 means "
	  "unlimited" },
	{ "c2s.backlog", CONFIG_TYPE_UINT, OFF(backlog), "1024", 1, 65535, RESTART,
	  "listen() backlog of the client sockets" },
	{ "tls.certificate", CONFIG_TYPE_STRING, OFF(tls_certificate),
	  "/etc/xmppd/cert.pem", 0, 0, RELOAD,
	  "Certificate chain (PEM); reloads apply to new connections" },
	{ "tls.key", CONFIG_TYPE_STRING, OFF(tls_key), "/etc/xmppd/key.pem",
	  0, 0, RELOAD, "Private key (PEM) of the certificate" },
	{ "tls.ciphers", CONFIG_TYPE_STRING, OFF(tls_ciphers),
	  "ECDHE+AESGCM:ECDHE+CHACHA20", 0, 0, RELOAD,
	  "OpenSSL cipher list for TLS 1.2" },
	{ "tls.ciphersuites", CONFIG_TYPE_STRING, OFF(tls_ciphersuites),
	  "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
	  "TLS_CHACHA20_POLY1305_SHA256", 0, 0, RELOAD,
	  "OpenSSL ciphersuites for TLS 1.3" },
	{ "tls.own_record_layer", CONFIG_TYPE_BOOL, OFF(tls_own_records),
	  "yes", 0, 0, RELOAD,
	  "After a TLS 1.3 handshake, xmppd seals and opens records itself "
	  "and frees OpenSSL's connection state (about 14 KB each); "
	  "no: OpenSSL keeps every connection" },
	{ "tls.max_key_updates", CONFIG_TYPE_UINT, OFF(tls_max_key_updates),
	  "32", 1, 255, RELOAD,
	  "TLS 1.3 KeyUpdates a client may send in a row without application "
	  "data before it is disconnected (unexpected_message); applies to "
	  "new connections" },
	{ "tls.records_per_key", CONFIG_TYPE_UINT, OFF(tls_records_per_key),
	  "8388608", 1, 16777216, RELOAD,
	  "TLS 1.3 records xmppd seals under one key before it updates its "
	  "sending key (RFC 8446 5.5; the AES-GCM limit is 2^24.5); lower "
	  "only for tests; applies to new connections" },
	{ "tls.required", CONFIG_TYPE_BOOL, OFF(tls_required), "yes", 0, 0,
	  RELOAD, "Refuse authentication before STARTTLS" },
	{ "http.addresses", CONFIG_TYPE_STRING, OFF(http_addresses),
	  "127.0.0.1 ::1", 0, 0, RESTART,
	  "HTTP listener addresses (metrics, health), space-separated" },
	{ "http.port", CONFIG_TYPE_UINT, OFF(http_port), "5280", 0, 65535,
	  RESTART, "Plain HTTP port; 0 disables it" },
	{ "http.tls_port", CONFIG_TYPE_UINT, OFF(http_tls_port), "0", 0, 65535,
	  RESTART, "HTTPS port, with the c2s certificate (tls.certificate); "
	  "0 disables it" },
	{ "http.admin_addresses", CONFIG_TYPE_STRING, OFF(http_admin_addresses),
	  "127.0.0.0/8 ::1", 0, 0, RELOAD,
	  "Addresses and prefixes (address/len, IPv4 or IPv6) allowed on the "
	  "admin routes (/metrics); others get 403 (/health and "
	  "/health/live answer any peer of the listener, for load "
	  "balancers)" },
	{ "http.max_connections", CONFIG_TYPE_UINT, OFF(http_max_connections),
	  "256", 1, 1000000, RELOAD,
	  "Open HTTP connections, shared out evenly over the workers (each "
	  "takes its share, rounded up); one more gets 503 and is closed" },
	{ "http.max_header_size", CONFIG_TYPE_SIZE, OFF(http_max_header_size),
	  "8K", 1 << 10, 64 << 10, RELOAD,
	  "Largest request line plus headers; more gets 431" },
	{ "http.max_url_size", CONFIG_TYPE_SIZE, OFF(http_max_url_size),
	  "4K", 256, 64 << 10, RELOAD,
	  "Longest request target (path and query); longer gets 414" },
	{ "http.max_body_size", CONFIG_TYPE_SIZE, OFF(http_max_body_size),
	  "1M", 0, 64 << 20, RELOAD,
	  "Largest request body, chunked or not; more gets 413" },
	{ "http.request_timeout", CONFIG_TYPE_DURATION,
	  OFF(http_request_timeout), "10s", 1000, 600000, RELOAD,
	  "Time a client has to send a whole request from its first byte "
	  "(the first request: from the connection's start, TLS handshake "
	  "included); then 408 and close" },
	{ "http.idle_timeout", CONFIG_TYPE_DURATION, OFF(http_idle_timeout),
	  "60s", 1000, 3600000, RELOAD,
	  "Silence allowed on a kept-alive connection after a response "
	  "before it is closed" },
	{ "sasl.max_failures", CONFIG_TYPE_UINT, OFF(sasl_max_failures), "3",
	  1, 100, RELOAD, "Failed authentications before disconnect" },
	{ "sasl.throttle_delay", CONFIG_TYPE_DURATION, OFF(sasl_throttle_delay),
	  "250ms", 0, 10000, RELOAD,
	  "First delay of a failure answer, doubling per failure (0: off)" },
	{ "sasl.max_failures_per_address", CONFIG_TYPE_UINT,
	  OFF(sasl_max_failures_per_address), "20", 0, 1000000, RELOAD,
	  "Failed authentications from one address (IPv6: its /64), counted "
	  "over all workers within sasl.failure_window, before the address "
	  "is banned for sasl.ban_time (0: never)" },
	{ "sasl.failure_window", CONFIG_TYPE_DURATION, OFF(sasl_failure_window),
	  "10m", 1000, 86400000, RELOAD,
	  "Failures older than this are forgotten" },
	{ "sasl.ban_time", CONFIG_TYPE_DURATION, OFF(sasl_ban_time), "1h",
	  1000, 604800000, RELOAD,
	  "How long a banned address is refused (stream error "
	  "policy-violation at <auth/>, whatever the password)" },
	{ "sasl.max_failures_per_account", CONFIG_TYPE_UINT,
	  OFF(sasl_max_failures_per_account), "10", 0, 1000000, RELOAD,
	  "Failed authentications for one account, from any address, within "
	  "sasl.failure_window before it is throttled for "
	  "sasl.account_throttle_time: then each address that fails at it is "
	  "refused for it (temporary-auth-failure, no password check) for "
	  "that time, while others, its owner, still log in (0: never)" },
	{ "sasl.account_throttle_time", CONFIG_TYPE_DURATION,
	  OFF(sasl_account_throttle_time), "1m", 1000, 3600000, RELOAD,
	  "How long an account stays throttled, and how long an address that "
	  "failed at a throttled account is refused for that account" },
	{ "sasl.throttle_table_size", CONFIG_TYPE_UINT,
	  OFF(sasl_throttle_table_size), "16384", 64, 4000000, RESTART,
	  "Slots in the shared table of failing addresses and accounts" },
	{ "sasl.scram_iterations", CONFIG_TYPE_UINT, OFF(scram_iterations),
	  "4096", 4096, 1000000, RELOAD,
	  "PBKDF2 iterations for newly stored SCRAM credentials" },
	/* ---- Rows of extensions (worker/ext.h): one group per extension,
	 * under a comment naming its unit, the same keys as its struct
	 * ext's .config_keys (checked when a worker starts).  The order
	 * here is the order of the example file and xmppd.conf(5). */
	/* worker/offline.c */
	{ "im.offline_quota", CONFIG_TYPE_UINT, OFF(offline_quota), "1000",
	  0, 1000000, RELOAD,
	  "Offline messages kept per account (XEP-0160); 0 disables storage" },
	{ "im.offline_watch", CONFIG_TYPE_DURATION, OFF(offline_watch),
	  "10s", 0, 600000, RELOAD, "In a cluster: how long a worker "
	  "watches an account it stored a message for while no session "
	  "of it was known, to tell the first session that appears (one "
	  "on another node the session directory had not shown yet) to "
	  "read its offline storage again; 0: never" },
	{ "im.offline_watch_max", CONFIG_TYPE_UINT, OFF(offline_watch_max),
	  "4096", 1, 65536, RELOAD, "Accounts one worker watches at once "
	  "(im.offline_watch); past it a late-stored message waits for "
	  "the account's next login (logged)" },
	/* worker/roster.c */
	{ "im.roster_max_items", CONFIG_TYPE_UINT, OFF(roster_max_items),
	  "1000", 1, 100000, RELOAD, "Contacts per roster" },
	{ "im.roster_max_groups", CONFIG_TYPE_UINT, OFF(roster_max_groups),
	  "100", 1, 10000, RELOAD, "Groups on one roster item; more get "
	  "<not-acceptable/> (RFC 6121 2.3.3)" },
	/* worker/blocking.c */
	{ "im.blocklist_max_items", CONFIG_TYPE_UINT, OFF(blocklist_max_items),
	  "1000", 1, 100000, RELOAD, "JIDs an account may block (XEP-0191); a "
	  "block that would exceed it gets <not-acceptable/> type cancel" },
	/* worker/vcard.c */
	{ "im.vcard_max_size", CONFIG_TYPE_SIZE, OFF(vcard_max_size), "64K",
	  1 << 10, 16 << 20, RELOAD, "Largest stored vCard (XEP-0054), "
	  "serialized; larger gets <not-acceptable/>" },
	/* worker/private.c */
	{ "im.private_max_size", CONFIG_TYPE_SIZE, OFF(private_max_size), "64K",
	  1 << 10, 16 << 20, RELOAD, "Largest private XML (XEP-0049) stored "
	  "in one namespace, serialized; larger gets <not-acceptable/>" },
	{ "im.private_max_namespaces", CONFIG_TYPE_UINT,
	  OFF(private_max_namespaces), "100", 1, 100000, RELOAD,
	  "Private XML namespaces per account (XEP-0049); a new one beyond "
	  "gets <not-acceptable/>" },
	/* worker/sm.c */
	{ "sm.max_resume_s", CONFIG_TYPE_UINT, OFF(sm_max_resume_s), "300",
	  1, 86400, RELOAD, "Longest time in seconds a stream-management "
	  "session waits for <resume/> after its connection is lost "
	  "(XEP-0198 max; a client asking for less gets less); then its "
	  "unacknowledged messages go to another resource or offline storage" },
	{ "sm.max_unacked", CONFIG_TYPE_UINT, OFF(sm_max_unacked), "1000", 10,
	  1000000, RELOAD, "Stanzas a stream-management session may leave "
	  "unacknowledged; the server asks for an ack well before, and one "
	  "more ends the stream with <policy-violation/> (a detached "
	  "session ends: its stanzas go to offline storage)" },
	{ "sm.handover_timeout", CONFIG_TYPE_DURATION, OFF(sm_handover_timeout),
	  "5s", 100, 60000, RELOAD, "Wait for another worker (of this node "
	  "or, in a cluster, of another) to hand over a session being "
	  "resumed; past it the client gets <failed/>" },
	{ "sm.forward_time", CONFIG_TYPE_DURATION, OFF(sm_forward_time), "30s",
	  1000, 600000, RELOAD, "How long stanzas still arriving for a "
	  "resumed session's old connection are forwarded to the new one" },
	/* worker/mam.c */
	{ "mam.max_page", CONFIG_TYPE_UINT, OFF(mam_max_page), "100", 1,
	  1000, RELOAD, "Messages one archive query (XEP-0313) returns at "
	  "most; a larger RSM <max/> is cut to it and the page is marked "
	  "incomplete" },
	{ "mam.batch_rows", CONFIG_TYPE_UINT, OFF(mam_batch_rows), "500", 1,
	  10000, RELOAD, "Archived messages written to PostgreSQL in one "
	  "statement; a worker sends what it has once the first has waited "
	  "mam.batch_hold" },
	{ "mam.queue_rows", CONFIG_TYPE_UINT, OFF(mam_queue_rows), "100000",
	  100, 10000000, RELOAD, "Archived messages a worker holds while "
	  "PostgreSQL is slow or down; beyond it new ones are not archived "
	  "(delivered all the same; counted in the log at error level)" },
	{ "mam.queue_bytes", CONFIG_TYPE_SIZE, OFF(mam_queue_bytes), "16M",
	  65536, 4294967296ULL, RELOAD, "Bytes of archive rows a worker "
	  "holds on their way to PostgreSQL (a burst of large messages, or "
	  "PostgreSQL slow or down); beyond it new ones are not archived "
	  "(delivered all the same; counted in the log at error level)" },
	{ "mam.retention_days", CONFIG_TYPE_UINT, OFF(mam_retention_days),
	  "0", 0, 36500, RELOAD, "Archived messages older than this many days "
	  "are deleted (by worker 0, in small batches); 0 keeps them forever" },
	{ "mam.max_prefs_jids", CONFIG_TYPE_UINT, OFF(mam_max_prefs_jids),
	  "1000", 0, 100000, RELOAD, "JIDs an account may name in its archive "
	  "preferences (XEP-0441 <always/> and <never/> together; each "
	  "archived message is checked against them); a set naming more is "
	  "refused with <not-acceptable/>" },
	{ "mam.batch_hold", CONFIG_TYPE_DURATION, OFF(mam_batch_hold), "10ms",
	  0, 1000, RELOAD, "How long archived messages wait for more to "
	  "share their INSERT (the first row's wait; a batch also goes at "
	  "mam.batch_rows rows); a query sends what waits first, so another "
	  "worker's messages may show in archive queries this much later" },
	{ "mam.max_query_ids", CONFIG_TYPE_UINT, OFF(mam_max_query_ids),
	  "1000", 1, 2000, RELOAD, "Archive ids one query may name (the "
	  "XEP-0313 #extended ids field); more get <policy-violation/> "
	  "with a text" },
	{ "mam.max_scan_rows", CONFIG_TYPE_UINT, OFF(mam_max_scan_rows),
	  "10000", 100, 10000000, RELOAD, "Archive rows one query reads "
	  "where its page alone does not bound it: an RSM count (<max>0"
	  "</max>) counts at most this many (XEP-0059 allows an approximate "
	  "count), and a query `with` a full JID reads at most this many of "
	  "the conversation: what it found by then is a page marked "
	  "incomplete, and one that found nothing gets "
	  "<resource-constraint/> with a text" },
	/* worker/csi.c */
	{ "csi.max_held", CONFIG_TYPE_UINT, OFF(csi_max_held), "100", 0,
	  100000, RELOAD, "Stanzas held for a session while its client says "
	  "it is inactive (XEP-0352: presence, chat states, receipts); one "
	  "more, or more than half of c2s.max_output_bytes, writes them all "
	  "(0: nothing is held)" },
	/* ---- end of the extensions' rows; presence.c is core */
	{ "im.max_directed_presence", CONFIG_TYPE_UINT,
	  OFF(max_directed_presence), "64", 1, 100000, RELOAD,
	  "Directed-presence targets a session remembers to send its "
	  "unavailable to at logout (RFC 6121 4.6); later ones are not told" },
	{ "db.conninfo", CONFIG_TYPE_STRING, OFF(db_conninfo), "dbname=xmppd",
	  0, 0, RELOAD, "PostgreSQL connection string (libpq conninfo); "
	  "empty refuses to start" },
	{ "db.max_queue_bytes", CONFIG_TYPE_SIZE, OFF(db_max_queue_bytes),
	  "16M", 64 << 10, 1 << 30, RELOAD,
	  "Bytes of queries a worker may have waiting for PostgreSQL (offline "
	  "messages among them); past it a message to store is bounced with "
	  "resource-constraint (wait)" },
	{ "session_table_size", CONFIG_TYPE_UINT, OFF(session_table_size),
	  "65536", 16, 4000000, RESTART,
	  "Slots in the shared session table, one per online resource" },
	/* shm/smstore.c: the XEP-0198 journal in shared memory, which
	 * outlives a worker (worker/sm.c's store).  The mapping is virtual:
	 * a record or a pool block costs memory once a session used it. */
	{ "sm.records_per_worker", CONFIG_TYPE_UINT,
	  OFF(sm_records_per_worker), "4096", 16, 1000000, RESTART,
	  "Stream-management sessions (XEP-0198 <enable/>) one worker may "
	  "hold, attached or waiting for <resume/> (3.3K of shared memory "
	  "each once used); past it <enable/> gets <failed/>" },
	{ "sm.pool_bytes_per_worker", CONFIG_TYPE_SIZE,
	  OFF(sm_pool_bytes_per_worker), "64M", 64 << 10, 1ull << 32, RESTART,
	  "Shared memory per worker for the stanzas its stream-management "
	  "sessions have not acknowledged yet (kept through a crash of the "
	  "worker); when full, the worker's session holding the most of it "
	  "ends, its stanzas going to offline storage" },
	{ "sm.max_unacked_bytes", CONFIG_TYPE_SIZE, OFF(sm_max_unacked_bytes),
	  "512K", 16 << 10, 1008 << 10, RELOAD,
	  "Bytes of unacknowledged stanzas (plus 8 each) and last presence "
	  "one stream-management session may hold; past it the stream ends "
	  "with <policy-violation/>.  At most 1008K, so that a session "
	  "always fits in one message to another worker at resumption" },
	{ "queue.outbox_frames", CONFIG_TYPE_UINT, OFF(queue_outbox_frames),
	  "65536", 64, 10000000, RELOAD,
	  "Frames a worker may queue to another before bouncing" },
	{ "queue.outbox_bytes", CONFIG_TYPE_SIZE, OFF(queue_outbox_bytes),
	  "4M", 64 << 10, 1 << 30, RELOAD,
	  "Bytes a worker may queue to another that is not reading before "
	  "bouncing with resource-constraint" },
	{ "control.socket", CONFIG_TYPE_STRING, OFF(control_socket),
	  "/run/xmppd/control.sock", 0, 0, RESTART,
	  "Path of the control socket used by xmppctl" },
	{ "control.owner", CONFIG_TYPE_STRING, OFF(control_owner), "", 0, 0,
	  RESTART, "Owner of the control socket; empty means the daemon user" },
	{ "control.group", CONFIG_TYPE_STRING, OFF(control_group), "", 0, 0,
	  RESTART, "Group of the control socket; empty means the owner's" },
	{ "control.mode", CONFIG_TYPE_MODE, OFF(control_mode), "0660", 0, 07777,
	  RESTART, "Permissions of the control socket (octal)" },
	/* federation, incoming side (worker/s2s_in.c) */
	{ "s2s.addresses", CONFIG_TYPE_STRING, OFF(s2s_addresses), "0.0.0.0 ::",
	  0, 0, RESTART, "Server-to-server listener addresses, space-separated" },
	{ "s2s.port", CONFIG_TYPE_UINT, OFF(s2s_port), "5269", 0, 65535,
	  RESTART, "Server-to-server port (RFC 6120 section 13), with "
	  "STARTTLS; 0 disables federation's listener" },
	{ "s2s.tls_port", CONFIG_TYPE_UINT, OFF(s2s_tls_port), "0", 0, 65535,
	  RESTART, "Direct TLS server-to-server port (XEP-0368, "
	  "_xmpps-server._tcp SRV records point at it; it has no standard "
	  "number, so it is off until one is chosen); 0 disables it" },
	{ "s2s.require_tls", CONFIG_TYPE_BOOL, OFF(s2s_require_tls), "yes", 0,
	  0, RELOAD, "Server-to-server streams must be encrypted (RFC 7590): "
	  "an incoming stream may do nothing but STARTTLS before it" },
	{ "s2s.ca_file", CONFIG_TYPE_STRING, OFF(s2s_ca_file), "", 0, 0,
	  RESTART, "PEM file of certificate authorities trusted for other "
	  "servers' certificates, besides the system's store" },
	{ "s2s.auth", CONFIG_TYPE_STRING, OFF(s2s_auth), "dialback", 0, 0,
	  RELOAD, "How other servers authenticate: \"dialback\" (SASL "
	  "EXTERNAL when the certificate validates, else server dialback, "
	  "XEP-0220) or \"pkix\" (valid certificates only, except for "
	  "the domains in s2s.dialback_domains)" },
	{ "s2s.dialback_domains", CONFIG_TYPE_STRING, OFF(s2s_dialback_domains),
	  "", 0, 0, RELOAD, "Domains allowed to use dialback when s2s.auth is "
	  "pkix, space-separated" },
	{ "s2s.blocked_domains", CONFIG_TYPE_STRING, OFF(s2s_blocked_domains),
	  "", 0, 0, RELOAD, "Remote domains refused, space-separated: their "
	  "streams and dialback requests end with an error" },
	{ "s2s.max_stanza_size", CONFIG_TYPE_SIZE, OFF(s2s_max_stanza_size),
	  "256K", 10 << 10, 16 << 20, RELOAD, "Largest stanza another server "
	  "may send; past it the stream ends with <policy-violation/>" },
	{ "s2s.max_stanza_rate", CONFIG_TYPE_UINT, OFF(s2s_max_stanza_rate),
	  "10000", 0, 1000000, RELOAD, "Stanzas per second an incoming "
	  "server-to-server stream may send on average, its dialback, SASL "
	  "and XEP-0198 elements counted too (a bucket of as many "
	  "tokens, refilled each second); past it the stream is not read "
	  "until the bucket refills (the peer is slowed down by TCP, nothing "
	  "is dropped). One link carries all the traffic of a pair of "
	  "domains; 0: no limit" },
	{ "s2s.max_incoming", CONFIG_TYPE_UINT, OFF(s2s_max_incoming), "1000",
	  1, 1000000, RELOAD, "Incoming server-to-server streams one worker "
	  "holds; past it new ones end with <resource-constraint/>" },
	{ "s2s.max_incoming_per_domain", CONFIG_TYPE_UINT,
	  OFF(s2s_max_incoming_per_domain), "8", 1, 10000, RELOAD,
	  "Incoming streams authenticated for one remote domain (SASL "
	  "EXTERNAL or their first dialback pair), counted across all "
	  "workers; past it <policy-violation/>" },
	{ "s2s.auth_timeout", CONFIG_TYPE_DURATION, OFF(s2s_auth_timeout),
	  "60s", 1000, 3600000, RELOAD, "Time another server has to "
	  "authenticate an incoming stream (TLS, SASL or dialback)" },
	{ "s2s.verify_timeout", CONFIG_TYPE_DURATION, OFF(s2s_verify_timeout),
	  "30s", 1000, 600000, RELOAD, "Time to wait for the authoritative "
	  "server's answer to a dialback verification; then the request gets "
	  "<db:result type='error'> with <remote-server-timeout/>" },
	{ "s2s.in_idle_timeout", CONFIG_TYPE_DURATION,
	  OFF(s2s_in_idle_timeout), "10m", 1000, 86400000, RELOAD,
	  "An incoming server-to-server stream silent this long is closed "
	  "(the other server opens a new one when it has something to send)" },
	{ "s2s.max_domain_pairs", CONFIG_TYPE_UINT, OFF(s2s_max_domain_pairs),
	  "64", 1, 10000, RELOAD, "Domain pairs one incoming stream may ask "
	  "to be authorized for by dialback (XEP-0220 piggybacking); past it "
	  "a <db:result/> gets <resource-constraint/>" },
	{ "s2s.max_dialback_requests", CONFIG_TYPE_UINT,
	  OFF(s2s_max_dialback_requests), "128", 1, 100000, RELOAD,
	  "Dialback verifications (<db:result/> with a key) one incoming "
	  "stream may ask for in its life; each one makes us ask another "
	  "server, so past it the stream ends with <policy-violation/>" },
	/* federation, outgoing side (worker/s2s_out.c) */
	{ "s2s.max_queue_bytes", CONFIG_TYPE_SIZE, OFF(s2s_max_queue_bytes),
	  "1M", 4 << 10, 64 << 20, RELOAD, "Bytes of stanzas that may wait "
	  "for one outgoing server-to-server link while it is set up or while "
	  "the peer reads slower than we write, past it a stanza is bounced "
	  "with resource-constraint (wait); also the bytes a link may have "
	  "written and not yet acknowledged (XEP-0198) or not yet handed to "
	  "the socket, before new stanzas wait" },
	{ "s2s.out_idle_timeout", CONFIG_TYPE_DURATION,
	  OFF(s2s_out_idle_timeout), "10m", 1000, 86400000, RELOAD,
	  "An outgoing server-to-server link that carried nothing for this "
	  "long is closed (a new stanza opens a new one)" },
	{ "s2s.link_timeout", CONFIG_TYPE_DURATION, OFF(s2s_link_timeout),
	  "60s", 1000, 600000, RELOAD, "Time to set up an outgoing "
	  "server-to-server link (DNS, connect, TLS, authentication); "
	  "then what waits for it is bounced with remote-server-timeout" },
	{ "s2s.max_links", CONFIG_TYPE_UINT, OFF(s2s_max_links), "1000", 0,
	  1000000, RELOAD, "Outgoing server-to-server links per worker (one "
	  "per local and remote domain pair); a stanza needing one more is "
	  "bounced with resource-constraint; 0 turns outgoing federation "
	  "off (remote-server-not-found).  Links opened only to verify "
	  "another server's dialback key take at most half of them (past "
	  "it the request is answered with resource-constraint)" },
	{ "s2s.ack_timeout", CONFIG_TYPE_DURATION, OFF(s2s_ack_timeout),
	  "60s", 0, 3600000, RELOAD, "An outgoing server-to-server link "
	  "with stream management (XEP-0198) whose peer does not answer our "
	  "<r/> with <a/> within this is taken for dead and closed; what it "
	  "had not acknowledged goes once more over a new link, else is "
	  "bounced with remote-server-timeout.  0 turns it off" },
	{ "shutdown_drain_timeout", CONFIG_TYPE_DURATION,
	  OFF(shutdown_drain_timeout), "5s", 100, 60000, RELOAD,
	  "After its streams are closed, how long a stopping worker waits "
	  "for the database writes it queued (offline messages, archive "
	  "rows); what is left then is counted in the log at error level. "
	  "The master kills workers after shutdown_timeout plus this plus "
	  "1s; keep the sum below systemd's TimeoutStopSec (60s)" },
	/* worker/component.c: external components (XEP-0114) */
	{ "component.secrets_file", CONFIG_TYPE_STRING,
	  OFF(component_secrets_file), "", 0, 0, RELOAD,
	  "File listing the external components (XEP-0114), one a line: "
	  "DOMAIN SECRET [subdomains]; it must not be readable by group or "
	  "others.  Read again at each reload: a component added may "
	  "connect, a removed one's stream ends with <host-gone/>.  Empty "
	  "means no components; the component listener is bound at start "
	  "only when this is set" },
	{ "component.addresses", CONFIG_TYPE_STRING, OFF(component_addresses),
	  "127.0.0.1 ::1", 0, 0, RESTART,
	  "Component listener addresses, space-separated (loopback: "
	  "components authenticate with a shared secret over plain TCP)" },
	{ "component.port", CONFIG_TYPE_UINT, OFF(component_port), "5347", 0,
	  65535, RESTART, "Component port (XEP-0114); 0 disables it" },
	{ "component.timeout", CONFIG_TYPE_DURATION, OFF(component_timeout),
	  "30s", 1000, 3600000, RELOAD,
	  "Time a component has to send a correct <handshake/>" },
	{ "component.max_stanza_size", CONFIG_TYPE_SIZE,
	  OFF(component_max_stanza_size), "256K", 10 << 10, 16 << 20, RELOAD,
	  "Largest stanza a component may send; more ends its stream with "
	  "<policy-violation/>" },
	{ "component.max_queue_bytes", CONFIG_TYPE_SIZE,
	  OFF(component_max_queue_bytes), "4M", 64 << 10, 1 << 30, RELOAD,
	  "Output a component may leave unread before its stream ends with "
	  "<policy-violation/>; what was queued for it goes back to its "
	  "senders (service-unavailable)" },
	/* worker/s2s_dial.c: finding and connecting to remote servers */
	{ "s2s.dns_servers", CONFIG_TYPE_STRING, OFF(s2s_dns_servers), "", 0,
	  0, RELOAD, "DNS servers asked for remote servers' SRV and A/AAAA "
	  "records, \"address[:port] ...\" (IPv6 with a port in brackets: "
	  "[::1]:53); empty: the system's, from /etc/resolv.conf" },
	{ "s2s.dns_timeout", CONFIG_TYPE_DURATION, OFF(s2s_dns_timeout),
	  "10s", 100, 300000, RELOAD, "Time one DNS step of a connection "
	  "to a remote server (the SRV records, then each target's "
	  "addresses) may take; then what is queued for that domain is "
	  "bounced with remote-server-timeout" },
	{ "s2s.dns_max_targets", CONFIG_TYPE_UINT, OFF(s2s_dns_max_targets),
	  "16", 1, 256, RELOAD, "SRV targets (_xmpps-server and _xmpp-server "
	  "together) tried for one remote domain, in RFC 2782 order; "
	  "further records are ignored" },
	{ "s2s.connect_timeout", CONFIG_TYPE_DURATION,
	  OFF(s2s_connect_timeout), "10s", 100, 300000, RELOAD,
	  "Time one TCP connection attempt to a remote server's address may "
	  "take; when every address timed out, what is queued is bounced "
	  "with remote-server-timeout" },
	{ "s2s.connect_stagger", CONFIG_TYPE_DURATION,
	  OFF(s2s_connect_stagger), "250ms", 10, 10000, RELOAD,
	  "Delay before trying the next address of a remote server while "
	  "earlier attempts are still pending (RFC 8305 \"Connection "
	  "Attempt Delay\"); a refused attempt moves on at once" },
	{ "s2s.connect_max_addresses", CONFIG_TYPE_UINT,
	  OFF(s2s_connect_max_addresses), "16", 1, 256, RELOAD,
	  "Addresses (of all SRV targets together) tried for one connection "
	  "to a remote domain before it is given up" },
	/* worker/pep.c: XEP-0163 personal eventing (docs/DESIGN.md) */
	{ "pep.max_nodes", CONFIG_TYPE_UINT, OFF(pep_max_nodes), "100", 1,
	  100000, RELOAD, "PEP nodes per account (XEP-0163); creating one "
	  "more, or publishing to a new node, gets <not-allowed/> with "
	  "<max-nodes-exceeded/>" },
	{ "pep.max_items", CONFIG_TYPE_UINT, OFF(pep_max_items), "256", 1,
	  100000, RELOAD, "Items kept per PEP node, the value of "
	  "pubsub#max_items 'max', and the item ids one items request may "
	  "name; a configuration asking for more gets <not-acceptable/>" },
	{ "pep.max_item_size", CONFIG_TYPE_SIZE, OFF(pep_max_item_size),
	  "256K", 1 << 10, 16 << 20, RELOAD, "Largest PEP item payload, "
	  "serialized; larger gets <not-acceptable/> with "
	  "<payload-too-big/> (keep it above 64K for XEP-0084 avatars)" },
	{ "pep.max_account_bytes", CONFIG_TYPE_SIZE,
	  OFF(pep_max_account_bytes), "16M", 64 << 10, 1ULL << 32, RELOAD,
	  "PEP storage of one account in bytes: item payloads and ids, node "
	  "names, titles, types and roster groups; a publish, create or "
	  "configure past it gets <not-acceptable/>" },
	/* worker/caps_ext.c, shm/caps.c (issue 13) */
	{ "caps.table_size", CONFIG_TYPE_UINT, OFF(caps_table_size), "4096",
	  16, 32768, RESTART, "Entries of the entity capabilities cache "
	  "shared by all workers (XEP-0115 / XEP-0390): one per client "
	  "build (hash and ver), about 1.2K each; an entry no session "
	  "holds may be evicted at once (see caps.idle_timeout), and a "
	  "client whose ver finds no slot has no caps (no PEP "
	  "notifications) until one frees" },
	{ "caps.query_timeout", CONFIG_TYPE_DURATION, OFF(caps_query_timeout),
	  "30s", 1000, 600000, RELOAD, "Time a client has to answer the "
	  "server's disco#info query for an unknown caps ver; then the next "
	  "client with that ver is asked.  A client that did not answer, or "
	  "whose answer did not match the hash, is not asked again before "
	  "ten times this" },
	{ "caps.max_changes_per_minute", CONFIG_TYPE_UINT,
	  OFF(caps_max_changes_per_minute), "10", 1, 1000, RELOAD,
	  "Caps vers (new or known) one session may announce in a minute; "
	  "past it the presence is routed but its caps are not resolved "
	  "again (no query, no PEP last items) until the minute is over" },
	{ "caps.idle_timeout", CONFIG_TYPE_DURATION, OFF(caps_idle_timeout),
	  "10m", 180000, 86400000, RELOAD, "A cache entry that live "
	  "sessions still hold is never evicted while they touch it (each "
	  "minute); one untouched this long may be (its holders went with a "
	  "worker that died).  Entries no session holds are evicted first, "
	  "at once when a new ver needs the slot" },
	{ "caps.max_new_per_account_hour", CONFIG_TYPE_UINT,
	  OFF(caps_max_new_per_account_hour), "20", 1, 10000, RELOAD,
	  "New caps vers (unknown to the server) one account may have "
	  "verified and cached in an hour, all its sessions together; past "
	  "it its sessions' new vers are not queried (no caps, no PEP "
	  "notifications for that session; one log line)" },
	{ "caps.max_notify_bytes", CONFIG_TYPE_SIZE, OFF(caps_max_notify_bytes),
	  "8K", 1 << 10, 128 << 10, RELOAD, "Bytes of +notify node names "
	  "kept per caps ver (at most 128 names, each at most "
	  "pep.max_id_length); names past it are ignored: no "
	  "notifications for those nodes (one log line)" },
	{ "caps.cache_max_rows", CONFIG_TYPE_UINT, OFF(caps_cache_max_rows),
	  "100000", 100, 10000000, RELOAD, "Rows of the caps_cache table "
	  "in PostgreSQL; the least recently used past it are deleted "
	  "hourly (their clients are asked again)" },
	{ "caps.cache_retention", CONFIG_TYPE_DURATION,
	  OFF(caps_cache_retention), "2160h", 86400000, 315360000000ULL,
	  RELOAD, "caps_cache rows unused this long are deleted (hourly, "
	  "by whole days)" },
	/* worker/pep.c, worker/pubsub.c: review fixes (h-pepfix) */
	{ "pep.max_id_length", CONFIG_TYPE_SIZE, OFF(pep_max_id_length),
	  "1K", 64, 1 << 10, RELOAD, "Longest PEP node name and item id, in "
	  "bytes; longer gets <not-acceptable/>.  Both count against "
	  "pep.max_account_bytes; at most 1K so that a node's index row "
	  "stays under PostgreSQL's btree limit" },
	/* worker/pep_compat.c: XEP-0402 compat, XEP-0398 (issue 13) */
	{ "pep.bookmarks_compat", CONFIG_TYPE_BOOL,
	  OFF(pep_bookmarks_compat), "yes", 0, 0, RELOAD, "XEP-0402 "
	  "#compat and #compat-pep: XEP-0048 bookmarks in private XML "
	  "storage (storage:bookmarks) and in the PEP node "
	  "storage:bookmarks are read from and written to the "
	  "urn:xmpp:bookmarks:1 items, so old and new clients of one "
	  "account see the same bookmarks; no: they are separate stores" },
	{ "pep.vcard_conversion", CONFIG_TYPE_BOOL,
	  OFF(pep_vcard_conversion), "yes", 0, 0, RELOAD, "XEP-0398: an "
	  "XEP-0084 avatar published over PEP is copied into the "
	  "account's vCard PHOTO (vCards are world-readable) and its hash "
	  "is added to the account's available presence as XEP-0153 "
	  "<photo/>" },
	/* worker/pep.c: explicit subscriptions (h-pepsub) */
	{ "pep.max_subscriptions", CONFIG_TYPE_UINT,
	  OFF(pep_max_subscriptions), "1000", 1, 1000000, RELOAD,
	  "Explicit subscriptions (XEP-0060 subscribe) one PEP node keeps; "
	  "one more gets <policy-violation/> with "
	  "<too-many-subscriptions/>.  Each subscriber gets every event of "
	  "the node, so this bounds the work of one publish" },
	/* worker/pep.c, worker/pep_notify.c: review fixes (h-pepfix2) */
	{ "pep.max_affiliations", CONFIG_TYPE_UINT,
	  OFF(pep_max_affiliations), "1000", 1, 100000, RELOAD,
	  "Affiliations (member, publisher, outcast) one PEP node may hold; "
	  "an owner's change that would pass it gets <policy-violation/>.  "
	  "Their JIDs count against pep.max_account_bytes" },
	{ "pep.max_last_items_bytes", CONFIG_TYPE_SIZE,
	  OFF(pep_max_last_items_bytes), "8M", 64 << 10, 1ULL << 30, RELOAD,
	  "Bytes of last published items (ids and payloads) a session is "
	  "sent when its entity capabilities become known or a contact "
	  "grants it presence (XEP-0163 section 4.3.4); they are read and "
	  "written in pages of at most half of c2s.max_output_bytes, each "
	  "once the previous one was read by the client; past this the "
	  "rest is not sent (logged)" },
	/* worker/pep_remote.c: PEP across servers (issue 13) */
	{ "pep.max_remote_recipients", CONFIG_TYPE_UINT,
	  OFF(pep_max_remote_recipients), "1000", 0, 100000, RELOAD,
	  "Full JIDs on other servers whose presence with entity "
	  "capabilities an account keeps to send its PEP events to; "
	  "past it a new one gets none (one log line) until another "
	  "goes unavailable; 0 sends no PEP events to other servers" },
	{ "pep.remote_caps_queries_per_minute", CONFIG_TYPE_UINT,
	  OFF(pep_remote_caps_queries_per_minute), "60", 1, 10000, RELOAD,
	  "disco#info queries each worker may send in a minute to full "
	  "JIDs on other servers whose caps ver is not known yet (XEP-0115 "
	  "section 6.2); past it such a JID gets PEP events only once "
	  "another JID with its ver was verified" },
	/* worker/pep.c: subscription bounds (h-fixsub, REVIEW-13b G2) */
	{ "pep.max_subscriptions_per_jid", CONFIG_TYPE_UINT,
	  OFF(pep_max_subscriptions_per_jid), "16", 1, 64, RELOAD,
	  "Explicit subscriptions one subscriber (its bare JID and any of "
	  "its full JIDs together) may hold on one PEP node; one more gets "
	  "<policy-violation/> with <too-many-subscriptions/>, so one "
	  "subscriber cannot take pep.max_subscriptions with made-up "
	  "resources (at most 64: the JIDs of one subscriber an event "
	  "walks).  Subscriber JIDs do not count against the owner's "
	  "pep.max_account_bytes (strangers could fill it)" },
	/* worker/pep_remote.c: review 13b G3 G5 G11 (h-fixremote) */
	{ "caps.max_new_per_domain_hour", CONFIG_TYPE_UINT,
	  OFF(caps_max_new_per_domain_hour), "20", 0, 10000, RELOAD,
	  "New caps vers that answers from JIDs of one other server may "
	  "add to the caps cache in an hour (they never count against a "
	  "local account's caps.max_new_per_account_hour); past it a JID "
	  "of that server with a ver not known yet is not asked (one log "
	  "line an hour per worker) and gets no PEP events until the ver is "
	  "known otherwise" },
	{ "pep.remote_presence_ttl", CONFIG_TYPE_DURATION,
	  OFF(pep_remote_presence_ttl), "24h", 600000, 2592000000ULL, RELOAD,
	  "A full JID on another server gets an account's PEP events this "
	  "long after its last presence to the account (every presence "
	  "from it renews it; the server's own presence probes at login "
	  "bring them, and worker 0 probes the contacts of online "
	  "accounts half-way to it); older ones are deleted by worker 0 "
	  "every few minutes: its unavailable may have been lost" },
	{ "pep.max_remote_resources", CONFIG_TYPE_UINT,
	  OFF(pep_max_remote_resources), "16", 1, 100000, RELOAD,
	  "Full JIDs of one bare JID on another server an account keeps as "
	  "PEP recipients (of pep.max_remote_recipients); past it a new "
	  "resource gets no events (one log line) until another goes" },
	{ "pep.remote_parked_max", CONFIG_TYPE_UINT,
	  OFF(pep_remote_parked_max), "256", 4, 100000, RELOAD,
	  "Full JIDs on other servers each worker keeps waiting for the "
	  "answer to a caps query (for at most caps.query_timeout); one "
	  "other server may hold a quarter of them; past it a JID's caps "
	  "are not resolved until its next presence (logged at most once "
	  "a minute)" },
	/* worker/muc.c: XEP-0045 multi-user chat (issue 14) */
	{ "muc.service", CONFIG_TYPE_STRING, OFF(muc_service), "conference",
	  0, 0, RESTART, "The multi-user chat service (XEP-0045) of each "
	  "hosted domain HOST is SERVICE.HOST, listed in the domain's "
	  "disco#items; \"\" turns group chat off" },
	{ "muc.max_rooms", CONFIG_TYPE_UINT, OFF(muc_max_rooms), "10000", 1,
	  10000000, RELOAD, "Rooms one service holds (persistent ones and "
	  "temporary ones in use); entering a new room past it gets "
	  "<resource-constraint/> (type wait)" },
	{ "muc.max_occupants", CONFIG_TYPE_UINT, OFF(muc_max_occupants),
	  "5000", 2, 100000, RELOAD, "Occupants of one room, and the most "
	  "muc#roomconfig_maxusers may be; one more gets "
	  "<service-unavailable/> (section 7.2.10), owners and admins "
	  "excepted" },
	{ "muc.max_rooms_per_account", CONFIG_TYPE_UINT,
	  OFF(muc_max_rooms_per_account), "100", 0, 1000000, RELOAD,
	  "Rooms one account may own (own created ones, persistent or "
	  "occupied); creating one more gets <not-allowed/>; 0: no limit" },
	{ "muc.create", CONFIG_TYPE_STRING, OFF(muc_create), "local", 0, 0,
	  RELOAD, "Who may create rooms: local (accounts of this server), "
	  "anyone (remote users too), or nobody (rooms made with xmppctl "
	  "only); others get <not-allowed/>" },
	{ "muc.history_default", CONFIG_TYPE_UINT, OFF(muc_history_default),
	  "20", 0, 1000, RELOAD, "Messages of the room's archive sent to "
	  "an occupant entering without a <history/> request" },
	{ "muc.history_max", CONFIG_TYPE_UINT, OFF(muc_history_max), "100",
	  0, 10000, RELOAD, "The most messages of history one entrance "
	  "gets, whatever it asks (maxstanzas, seconds, since); a room "
	  "archive query (XEP-0313) pages through all of it" },
	{ "muc.messages_per_minute", CONFIG_TYPE_UINT,
	  OFF(muc_messages_per_minute), "120", 1, 1000000, RELOAD,
	  "Groupchat and private messages one occupant may send in a "
	  "minute (a burst of a tenth of it at once); past it the message "
	  "is refused with <resource-constraint/> (type wait)" },
	{ "muc.max_subject_bytes", CONFIG_TYPE_SIZE, OFF(muc_max_subject_bytes),
	  "4K", 64, 1 << 20, RELOAD, "Longest room subject; longer gets "
	  "<not-acceptable/>" },
	{ "muc.max_nick_bytes", CONFIG_TYPE_SIZE, OFF(muc_max_nick_bytes),
	  "128", 8, 1023, RELOAD, "Longest room nickname (the occupant "
	  "JID's resource); longer gets <jid-malformed/>" },
	{ "muc.max_presence_bytes", CONFIG_TYPE_SIZE,
	  OFF(muc_max_presence_bytes), "8K", 512, 1 << 20, RELOAD,
	  "Largest presence an occupant may have in a room (kept and sent "
	  "to each newcomer); larger gets <not-acceptable/>" },
	{ "muc.max_affiliations", CONFIG_TYPE_UINT,
	  OFF(muc_max_affiliations), "10000", 10, 1000000, RELOAD,
	  "Owners, admins, members and outcasts of one room together; "
	  "one more gets <not-acceptable/>" },
	/* worker/muc_archive.c (rows written and expired by worker/mam.c) */
	{ "muc.archive_retention_days", CONFIG_TYPE_UINT,
	  OFF(muc_archive_retention_days), "7", 0, 36500, RELOAD,
	  "Messages of a room's archive (XEP-0313 on rooms, and the history "
	  "sent on entering) older than this many days are deleted (by "
	  "worker 0, in small batches); 0 keeps them forever.  7, as "
	  "Prosody's muc_log_expires_after" },
	/* cluster/: several nodes serving one domain over NATS (issue 15,
	 * docs/DESIGN.md "Cluster") */
	{ "cluster.servers", CONFIG_TYPE_STRING, OFF(cluster_servers), "", 0,
	  0, RESTART, "NATS servers this node connects to, separated by "
	  "spaces or commas (nats://HOST:PORT, or tls://HOST:PORT for TLS); "
	  "the first that answers is used, the others on failure.  \"\" "
	  "(the default): no cluster, one node, as without NATS" },
	{ "cluster.name", CONFIG_TYPE_STRING, OFF(cluster_name), "xmppd", 0, 0,
	  RESTART, "Name of the cluster (letters, digits, '-' and '_', at "
	  "most 32): the NATS subjects start with xmppd.NAME, so several "
	  "clusters can share NATS servers; every node of one cluster has "
	  "the same" },
	{ "cluster.node", CONFIG_TYPE_STRING, OFF(cluster_node), "", 0, 0,
	  RESTART, "This node's name, unique in the cluster (letters, "
	  "digits, '-' and '_', at most 32); required with cluster.servers" },
	{ "cluster.user", CONFIG_TYPE_STRING, OFF(cluster_user), "", 0, 0,
	  RESTART, "User name for the NATS servers (with "
	  "cluster.password_file); \"\": none" },
	{ "cluster.password_file", CONFIG_TYPE_STRING,
	  OFF(cluster_password_file), "", 0, 0, RESTART, "File whose first "
	  "line is the password of cluster.user (kept out of this file, "
	  "which is often world-readable)" },
	{ "cluster.credentials", CONFIG_TYPE_STRING, OFF(cluster_credentials),
	  "", 0, 0, RESTART, "A NATS credentials file (user JWT and NKey "
	  "seed, as nsc writes it) instead of a user and password" },
	{ "cluster.tls_ca", CONFIG_TYPE_STRING, OFF(cluster_tls_ca), "", 0, 0,
	  RESTART, "CA certificates (PEM) the NATS servers' certificates are "
	  "checked against, for tls:// servers; \"\": the system's" },
	{ "cluster.tls_certificate", CONFIG_TYPE_STRING,
	  OFF(cluster_tls_certificate), "", 0, 0, RESTART, "Client "
	  "certificate chain (PEM) shown to NATS servers that ask for one" },
	{ "cluster.tls_key", CONFIG_TYPE_STRING, OFF(cluster_tls_key), "", 0,
	  0, RESTART, "Private key (PEM) of cluster.tls_certificate" },
	{ "cluster.secret_file", CONFIG_TYPE_STRING, OFF(cluster_secret_file),
	  "", 0, 0, RESTART, "File of at least 32 random bytes, the same on "
	  "every node (for example head -c 64 /dev/urandom): the keys of "
	  "server dialback (XEP-0185) and of SASL answers for unknown "
	  "accounts come from it, so that any node can verify what another "
	  "made; required with cluster.servers, readable by the daemon user "
	  "only" },
	{ "cluster.heartbeat_interval", CONFIG_TYPE_DURATION,
	  OFF(cluster_heartbeat_interval), "1s", 100, 10000, RESTART,
	  "How often this node tells the others it is alive" },
	{ "cluster.retain_bytes", CONFIG_TYPE_SIZE, OFF(cluster_retain_bytes),
	  "64M", 1 << 20, 1ULL << 32, RESTART, "Stanzas sent to another "
	  "node are kept until it acknowledges them, at most this many "
	  "bytes per node; past it a stanza for that node is handled as "
	  "undelivered (another resource, offline storage, or an error to "
	  "its sender) until acknowledgements make room" },
	{ "cluster.node_timeout", CONFIG_TYPE_DURATION,
	  OFF(cluster_node_timeout), "3s", 500, 600000, RESTART, "A node "
	  "not heard from for this long is down: the others drop its "
	  "sessions (their contacts get unavailable) and take over what it "
	  "owned; at least twice cluster.heartbeat_interval" },
	{ "cluster.lease_time", CONFIG_TYPE_DURATION,
	  OFF(cluster_lease_time), "5s", 1000, 600000, RESTART, "A node "
	  "acts as the owner of group chat rooms only while it renewed its "
	  "lease in the cluster's NATS key-value bucket within this time "
	  "(the minority side of a partition cannot); another node takes "
	  "over a lost node's rooms after cluster.node_timeout + this, so "
	  "two owners never act at once.  At least twice "
	  "cluster.heartbeat_interval" },
	{ "cluster.clock_skew", CONFIG_TYPE_DURATION,
	  OFF(cluster_clock_skew), "1m", 1000, 3600000, RESTART, "The "
	  "first message of another node's run (after it or this node "
	  "started) is taken only when its time stamp is within this of "
	  "this node's clock: a message recorded earlier and replayed on "
	  "NATS is refused.  Keep the nodes' clocks in step (NTP)" },
	{ "cluster.sync_interval", CONFIG_TYPE_DURATION,
	  OFF(cluster_sync_interval), "2s", 100, 600000, RESTART, "A node "
	  "sends another its full session list (a snapshot, when it joins "
	  "or has missed changes) at most once in this time; a request "
	  "inside it is answered when it ends" },
	{ "cluster.snapshot_max", CONFIG_TYPE_UINT, OFF(cluster_snapshot_max),
	  "4000000", 1000, 100000000, RESTART, "Sessions a snapshot from "
	  "another node may hold, at most (besides: no more than the "
	  "node's heartbeat announced, with a margin); past it the "
	  "snapshot is dropped and asked for again later" },
	{ "cluster.snapshot_queue", CONFIG_TYPE_SIZE,
	  OFF(cluster_snapshot_queue), "512M", 1 << 20, 1ULL << 36, RESTART,
	  "Bytes of snapshot parts from other nodes waiting to be read, at "
	  "most (a node of a million sessions sends about 60 MB at once); "
	  "past it a part is dropped and its snapshot asked for again" },
	/* shm/session.c: the ring of changed session records the bridge
	 * reads instead of walking the whole table (8 bytes an entry).
	 * Sized by bursts, not by the table: it must hold the local
	 * changes of one bridge turn (100 ms); a burst past it (a worker
	 * of 100,000 sessions swept) costs one full walk, as before. */
	{ "cluster.change_log", CONFIG_TYPE_UINT, OFF(cluster_change_log),
	  "65536", 1024, 16777216, RESTART, "Entries of the shared session "
	  "table's change log (rounded up to a power of two, 8 bytes each, "
	  "allocated only with cluster.servers): the local session changes "
	  "the cluster bridge reads instead of walking the whole table; "
	  "more changes than this between two of its reads (every 100 ms) "
	  "cost one full walk of the table" },
	{ "cluster.node_forget", CONFIG_TYPE_DURATION,
	  OFF(cluster_node_forget), "1h", 60000, 31536000000ULL, RESTART,
	  "A node down (or incompatible) for this long is forgotten: its "
	  "place in the node table (64 places) is freed for another" },
	{ "cluster.hold_time", CONFIG_TYPE_DURATION,
	  OFF(cluster_hold_time), "5m", 1000, 86400000, RESTART,
	  "A stanza from another node is acknowledged to it once written "
	  "to the client's socket or acknowledged by an XEP-0198 client; "
	  "one still held after this long (a client that neither reads "
	  "nor acknowledges) is acknowledged anyway, so that its sender "
	  "stops keeping it: a node lost after that loses it with its "
	  "journal.  Past 256 held ranges per node the oldest are too" },
};
const size_t config_defs_count = ARRAY_SIZE(config_defs);

/* A number suffix; alias rows are accepted but never written. */
struct config_unit {
	const char *suffix;
	uint64_t mult;
	bool alias;
};

/* Largest first, so formatting picks the largest exact unit. */
static const struct config_unit size_units[] = {
	{ "G", 1u << 30, false }, { "g", 1u << 30, true },
	{ "M", 1u << 20, false }, { "m", 1u << 20, true },
	{ "K", 1u << 10, false }, { "k", 1u << 10, true },
	{ "", 1, false }, { NULL, 0, false },
};
static const struct config_unit duration_units[] = {
	{ "h", 3600000, false }, { "m", 60000, false }, { "s", 1000, false },
	{ "", 1000, true }, { "ms", 1, false }, { NULL, 0, false },
};

static const char *const level_names[] = { "debug", "info", "warn",
					   "error" };

/* Reasons are built here, then prefixed with their location. */
static char config_reason[512];
static char config_error[1024];

/* One parse of one text; seen[] holds the line each key was set on. */
struct config_parser {
	struct config *cfg;
	const char *name;
	unsigned line;
	char block[32];         /* open block name, "" at top level */
	unsigned block_line;
	unsigned seen[ARRAY_SIZE(config_defs)];
};

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(config_reason, sizeof(config_reason), fmt, ap);
	va_end(ap);
	return -1;
}

static void *field(struct config *cfg, const struct config_def *def)
{
	return (char *)cfg + def->offset;
}

static const void *cfield(const struct config *cfg,
			  const struct config_def *def)
{
	return (const char *)cfg + def->offset;
}

static bool is_uint_type(enum config_type type)
{
	return type == CONFIG_TYPE_UINT || type == CONFIG_TYPE_BOOL ||
	       type == CONFIG_TYPE_MODE || type == CONFIG_TYPE_LOGLEVEL;
}

/* ---- numbers ---------------------------------------------------------- */

/* Leading decimal digits into *v_r; NULL if none or on overflow. */
static const char *parse_digits(const char *s, uint64_t *v_r)
{
	uint64_t v = 0;
	const char *p = s;

	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return NULL;
		v = v * 10 + d;
	}
	*v_r = v;
	return p == s ? NULL : p;
}

static int parse_with_units(const char *s, const struct config_unit *units,
			    uint64_t *v_r)
{
	uint64_t v;
	const char *p = parse_digits(s, &v);

	if (p == NULL)
		return -1;
	for (; units->suffix != NULL; units++) {
		if (strcmp(p, units->suffix) != 0)
			continue;
		if (v > UINT64_MAX / units->mult)
			return -1;
		*v_r = v * units->mult;
		return 0;
	}
	return -1;
}

static void format_with_units(uint64_t v, const struct config_unit *units,
			      char *buf, size_t size)
{
	for (; v != 0 && units->suffix != NULL; units++) {
		if (!units->alias && v % units->mult == 0) {
			snprintf(buf, size, "%llu%s",
				 (unsigned long long)(v / units->mult),
				 units->suffix);
			return;
		}
	}
	snprintf(buf, size, "%llu", (unsigned long long)v);
}

/* A number of the given type as it would be written in the file. */
static void format_number(enum config_type type, uint64_t v, char *buf,
			  size_t size)
{
	if (type == CONFIG_TYPE_SIZE)
		format_with_units(v, size_units, buf, size);
	else if (type == CONFIG_TYPE_DURATION)
		format_with_units(v, duration_units, buf, size);
	else if (type == CONFIG_TYPE_MODE)
		snprintf(buf, size, "0%03llo", (unsigned long long)v);
	else
		snprintf(buf, size, "%llu", (unsigned long long)v);
}

static int parse_mode(const char *s, uint64_t *v_r)
{
	uint64_t v = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '7' || v > 07777)
			return -1;
		v = v * 8 + (uint64_t)(*s - '0');
	}
	*v_r = v;
	return 0;
}

/* The text of a numeric value into *v_r, or -1 with a reason. */
static int parse_number(const struct config_def *def, const char *s,
			uint64_t *v_r)
{
	const char *end;

	switch (def->type) {
	case CONFIG_TYPE_UINT:
		end = parse_digits(s, v_r);
		if (end == NULL || *end != '\0')
			return fail("bad number '%s' for '%s'", s, def->name);
		return 0;
	case CONFIG_TYPE_SIZE:
		if (parse_with_units(s, size_units, v_r) < 0)
			return fail("bad size '%s' for '%s' (use e.g. 512K, 16M)",
				    s, def->name);
		return 0;
	case CONFIG_TYPE_DURATION:
		if (parse_with_units(s, duration_units, v_r) < 0)
			return fail("bad duration '%s' for '%s' "
				    "(use e.g. 500ms, 30s, 5m, 1h)", s, def->name);
		return 0;
	case CONFIG_TYPE_MODE:
		if (parse_mode(s, v_r) < 0)
			return fail("bad mode '%s' for '%s' (use octal, e.g. 0660)",
				    s, def->name);
		return 0;
	default:
		log_panic("config: '%s' is not numeric", def->name);
	}
}

void config_format_number(const struct config_def *def, uint64_t v,
			  char *buf, size_t size)
{
	format_number(def->type, v, buf, size);
}

uint64_t config_max(const struct config_def *def)
{
	uint64_t max = is_uint_type(def->type) ? UINT_MAX : UINT64_MAX;

	return def->max != 0 && def->max < max ? def->max : max;
}

/* Bounds come from the row, capped by what the field can hold. */
static int check_range(const struct config_def *def, const char *s,
		       uint64_t v)
{
	uint64_t max = config_max(def);
	char lo[32], hi[32];

	if (v >= def->min && v <= max)
		return 0;
	format_number(def->type, def->min, lo, sizeof(lo));
	format_number(def->type, max, hi, sizeof(hi));
	if (def->max != 0)
		return fail("'%s' must be between %s and %s, got '%s'",
			    def->name, lo, hi, s);
	if (v < def->min)
		return fail("'%s' must be at least %s, got '%s'",
			    def->name, lo, s);
	return fail("'%s' must be at most %s, got '%s'", def->name, hi, s);
}

/* ---- setting one value ------------------------------------------------ */

static int parse_bool(const struct config_def *def, const char *s,
		      uint64_t *v_r)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0 || strcasecmp(s, no[i]) == 0) {
			*v_r = strcasecmp(s, yes[i]) == 0;
			return 0;
		}
	}
	return fail("bad boolean '%s' for '%s' (use yes or no)", s, def->name);
}

static int parse_loglevel(const struct config_def *def, const char *s,
			  uint64_t *v_r)
{
	enum log_level level;

	if (log_level_parse(s, &level) < 0)
		return fail("bad log level '%s' for '%s' "
			    "(use debug, info, warn or error)", s, def->name);
	*v_r = (uint64_t)level;
	return 0;
}

static int set_string(struct config *cfg, const struct config_def *def,
		      const char *s)
{
	char *copy = arena_strdup(&cfg->arena, s);

	if (copy == NULL)
		return fail("out of memory");
	*(const char **)field(cfg, def) = copy;
	return 0;
}

/* Parse value s for def and store it in cfg; -1 with a reason. */
static int set_value(struct config *cfg, const struct config_def *def,
		     const char *s)
{
	uint64_t v;
	int ret;

	if (def->type == CONFIG_TYPE_STRING)
		return set_string(cfg, def, s);
	if (*s == '\0')
		return fail("empty value for '%s'", def->name);
	if (def->type == CONFIG_TYPE_BOOL)
		ret = parse_bool(def, s, &v);
	else if (def->type == CONFIG_TYPE_LOGLEVEL)
		ret = parse_loglevel(def, s, &v);
	else
		ret = parse_number(def, s, &v) < 0 ? -1 : check_range(def, s, v);
	if (ret < 0)
		return -1;
	if (is_uint_type(def->type))
		*(unsigned *)field(cfg, def) = (unsigned)v;
	else
		*(uint64_t *)field(cfg, def) = v;
	return 0;
}

const struct config_def *config_find(const char *name)
{
	for (size_t i = 0; i < config_defs_count; i++) {
		if (strcmp(config_defs[i].name, name) == 0)
			return &config_defs[i];
	}
	return NULL;
}

struct config *config_new(void)
{
	struct config *cfg = xcalloc(1, sizeof(*cfg));

	arena_init(&cfg->arena, 2048);
	for (size_t i = 0; i < config_defs_count; i++) {
		if (set_value(cfg, &config_defs[i], config_defs[i].def) < 0)
			log_panic("config: bad default: %s", config_reason);
	}
	return cfg;
}

void config_free(struct config **cfg)
{
	if (*cfg == NULL)
		return;
	arena_free(&(*cfg)->arena);
	i_free(*cfg);
}

/* ---- lexing ----------------------------------------------------------- */

static const char *skip_ws(const char *s, const char *end)
{
	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	return s;
}

/* Nothing but blanks or a comment is left on the line. */
static bool rest_is_empty(const char *s, const char *end)
{
	s = skip_ws(s, end);
	return s == end || *s == '#';
}

/* Serialized values must survive a round trip, so no line breaks. */
static int check_control_chars(const char *s)
{
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s < 0x20 && *s != '\t')
			return fail("control character in value");
		if (*s == 0x7f)
			return fail("control character in value");
	}
	return 0;
}

/* Decode "..." starting at s (after the quote) into out. */
static const char *unquote(const char *s, const char *end, char *out)
{
	for (; s < end && *s != '"'; s++) {
		if (*s == '\\' && ++s < end && *s != '"' && *s != '\\') {
			fail("bad escape '\\%c' in quoted value "
			     "(only \\\" and \\\\)", *s);
			return NULL;
		}
		if (s == end)
			break;
		*out++ = *s;
	}
	*out = '\0';
	if (s == end) {
		fail("unterminated quoted value");
		return NULL;
	}
	return s + 1;
}

/* The value after '=' into the arena; '#' starts a comment if allowed. */
static int lex_value(struct arena *a, const char *s, const char *end,
		     bool comments, char **value_r)
{
	const char *stop;

	s = skip_ws(s, end);
	*value_r = arena_alloc(a, (size_t)(end - s) + 1);
	if (*value_r == NULL)
		return fail("out of memory");
	if (s < end && *s == '"') {
		s = unquote(s + 1, end, *value_r);
		if (s == NULL)
			return -1;
		s = skip_ws(s, end);
		if (s < end && !(comments && *s == '#'))
			return fail("unexpected text after quoted value");
	} else {
		stop = comments ? memchr(s, '#', (size_t)(end - s)) : NULL;
		end = stop != NULL ? stop : end;
		while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		memcpy(*value_r, s, (size_t)(end - s));
		(*value_r)[end - s] = '\0';
	}
	return check_control_chars(*value_r);
}

/* ---- the parser ------------------------------------------------------- */

static size_t key_span(const char *s, const char *end)
{
	const char *p = s;

	while (p < end && (*p == '_' || *p == '.' || *p == '-' ||
			   (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			   (*p >= '0' && *p <= '9')))
		p++;
	return (size_t)(p - s);
}

/* A block is known if some key is named "<block>.something". */
static bool block_known(const char *name, size_t n)
{
	for (size_t i = 0; i < config_defs_count; i++) {
		if (strncmp(config_defs[i].name, name, n) == 0 &&
		    config_defs[i].name[n] == '.')
			return true;
	}
	return false;
}

static int open_block(struct config_parser *p, const char *name, size_t n,
		      const char *rest, const char *end)
{
	if (p->block[0] != '\0')
		return fail("nested block '%.*s' inside '%s'", (int)n, name,
			    p->block);
	if (!rest_is_empty(rest, end))
		return fail("unexpected text after '{'");
	if (n >= sizeof(p->block) || !block_known(name, n))
		return fail("unknown block '%.*s'", (int)n, name);
	memcpy(p->block, name, n);
	p->block[n] = '\0';
	p->block_line = p->line;
	return 0;
}

static int close_block(struct config_parser *p, const char *rest,
		       const char *end)
{
	if (p->block[0] == '\0')
		return fail("'}' without an open block");
	if (!rest_is_empty(rest, end))
		return fail("unexpected text after '}'");
	p->block[0] = '\0';
	return 0;
}

static int assign(struct config_parser *p, const char *key, size_t n,
		  const char *rest, const char *end)
{
	const struct config_def *def;
	char name[128];
	char *value;
	size_t i;

	snprintf(name, sizeof(name), "%s%s%.*s", p->block,
		 p->block[0] != '\0' ? "." : "", (int)n, key);
	def = config_find(name);
	if (def == NULL)
		return fail("unknown key '%s'", name);
	i = (size_t)(def - config_defs);
	if (p->seen[i] != 0)
		return fail("duplicate key '%s' (first set on line %u)",
			    def->name, p->seen[i]);
	p->seen[i] = p->line;
	if (lex_value(&p->cfg->arena, rest, end, true, &value) < 0)
		return -1;
	return set_value(p->cfg, def, value);
}

static int parse_line(struct config_parser *p, const char *s,
		      const char *end)
{
	const char *t;
	size_t n;

	if (end > s && end[-1] == '\r')
		end--;                  /* tolerate CRLF files */
	s = skip_ws(s, end);
	if (s == end || *s == '#')
		return 0;
	if (*s == '}')
		return close_block(p, s + 1, end);
	n = key_span(s, end);
	if (n == 0)
		return fail("syntax error: expected 'key = value', "
			    "'name {' or '}'");
	t = skip_ws(s + n, end);
	if (t < end && *t == '{')
		return open_block(p, s, n, t + 1, end);
	if (t < end && *t == '=')
		return assign(p, s, n, t + 1, end);
	return fail("missing '=' after '%.*s'", (int)n, s);
}

static int parse_fail(const struct config_parser *p, unsigned line,
		      const char **error_r)
{
	snprintf(config_error, sizeof(config_error), "%s:%u: %s", p->name,
		 line, config_reason);
	*error_r = config_error;
	return -1;
}

int config_parse_string(struct config *cfg, const char *name,
			const char *text, const char **error_r)
{
	struct config_parser p = { .cfg = cfg, .name = name };
	const char *s = text, *eol;

	while (*s != '\0') {
		eol = strchr(s, '\n');
		if (eol == NULL)
			eol = s + strlen(s);
		p.line++;
		if (parse_line(&p, s, eol) < 0)
			return parse_fail(&p, p.line, error_r);
		s = *eol != '\0' ? eol + 1 : eol;
	}
	if (p.block[0] != '\0') {
		fail("block '%s' is not closed", p.block);
		return parse_fail(&p, p.block_line, error_r);
	}
	return 0;
}

/* ---- files and overrides ---------------------------------------------- */

static char *read_all(FILE *f, size_t *len_r)
{
	size_t len = 0, size = 4096, n;
	char *buf = xmalloc(size);

	while ((n = fread(buf + len, 1, size - len - 1, f)) > 0) {
		len += n;
		if (size - len - 1 == 0)
			buf = xrealloc(buf, size *= 2);
	}
	buf[len] = '\0';
	*len_r = len;
	return buf;
}

static int file_fail(const char *path, const char **error_r)
{
	snprintf(config_error, sizeof(config_error), "%s: %s", path,
		 config_reason);
	*error_r = config_error;
	return -1;
}

/* A NUL would silently end the text early; name its line instead. */
static unsigned nul_line(const char *text)
{
	unsigned line = 1;

	for (; *text != '\0'; text++)
		line += *text == '\n';
	return line;
}

int config_parse_file(struct config *cfg, const char *path,
		      const char **error_r)
{
	FILE *f = fopen(path, "r");
	char *text;
	size_t len;
	int ret;

	if (f == NULL) {
		fail("open() failed: %s", strerror(errno));
		return file_fail(path, error_r);
	}
	text = read_all(f, &len);
	if (ferror(f)) {
		fail("read() failed: %s", strerror(errno));
		ret = file_fail(path, error_r);
	} else if (strlen(text) != len) {
		snprintf(config_error, sizeof(config_error),
			 "%s:%u: NUL byte in file", path, nul_line(text));
		*error_r = config_error;
		ret = -1;
	} else {
		ret = config_parse_string(cfg, path, text, error_r);
	}
	fclose(f);
	free(text);
	return ret;
}

static int set_override(struct config *cfg, const char *keyval)
{
	const char *eq = strchr(keyval, '=');
	const char *end = keyval + strlen(keyval);
	const char *k = skip_ws(keyval, end);
	const struct config_def *def;
	char name[128];
	char *value;
	size_t n;

	if (eq == NULL)
		return fail("missing '='");
	n = (size_t)(eq - k);
	while (n > 0 && (k[n - 1] == ' ' || k[n - 1] == '\t'))
		n--;
	snprintf(name, sizeof(name), "%.*s", (int)n, k);
	def = config_find(name);
	if (def == NULL)
		return fail("unknown key '%s'", name);
	/* '#' is data here: the shell already split the argument. */
	if (lex_value(&cfg->arena, eq + 1, end, false, &value) < 0)
		return -1;
	return set_value(cfg, def, value);
}

int config_set(struct config *cfg, const char *keyval, const char **error_r)
{
	if (set_override(cfg, keyval) == 0)
		return 0;
	snprintf(config_error, sizeof(config_error), "-o %s: %s", keyval,
		 config_reason);
	*error_r = config_error;
	return -1;
}

/* ---- cross-key checks ------------------------------------------------- */

/* Letters, digits and hyphens in dot-separated labels (RFC 1035);
 * bytes >= 0x80 pass so IDNs can be checked later by the JID code. */
static bool host_plausible(const char *h, size_t n)
{
	size_t label = 0;

	if (n == 0 || n > 253 || h[0] == '.' || h[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)h[i];
		if (c == '.') {
			if (label == 0 || h[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (c == '-' && label == 0)
			return false;
		if (!(c >= 0x80 || c == '-' || (c >= '0' && c <= '9') ||
		      ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')))
			return false;
		if (++label > 63)
			return false;
	}
	return h[n - 1] != '-';
}

static bool host_listed_before(const char *hosts, const char *h, size_t n)
{
	const char *p = hosts + strspn(hosts, " \t");
	size_t m;

	for (; p < h; p += m, p += strspn(p, " \t")) {
		m = strcspn(p, " \t");
		if (m == n && strncasecmp(p, h, n) == 0)
			return true;
	}
	return false;
}

static int check_hosts(const char *hosts)
{
	const char *h = hosts + strspn(hosts, " \t");
	size_t n;

	if (*h == '\0')
		return fail("'hosts' must name at least one domain");
	for (; *h != '\0'; h += n, h += strspn(h, " \t")) {
		n = strcspn(h, " \t");
		if (!host_plausible(h, n))
			return fail("'hosts': '%.*s' is not a valid domain name",
				    (int)n, h);
		if (host_listed_before(hosts, h, n))
			return fail("'hosts': '%.*s' is listed twice", (int)n, h);
	}
	return 0;
}

static int check_tls(const struct config *cfg)
{
	bool cert = cfg->tls_certificate[0] != '\0';
	bool key = cfg->tls_key[0] != '\0';

	if (cert != key)
		return fail("'%s' is set but '%s' is empty",
			    cert ? "tls.certificate" : "tls.key",
			    cert ? "tls.key" : "tls.certificate");
	if (!cert && cfg->tls_required)
		return fail("'tls.required' is yes but 'tls.certificate' "
			    "is empty");
	if (!cert && cfg->c2s_tls_port != 0)
		return fail("'c2s.tls_port' is %u but 'tls.certificate' is empty"
			    " (set the port to 0 to disable direct TLS)",
			    cfg->c2s_tls_port);
	return 0;
}

static int check_http(const struct config *cfg)
{
	const char *error;
	unsigned ports[] = { cfg->c2s_port, cfg->c2s_tls_port };
	const char *names[] = { "c2s.port", "c2s.tls_port" };

	if (cfg->http_tls_port != 0 && cfg->tls_certificate[0] == '\0')
		return fail("'http.tls_port' is %u but 'tls.certificate' is "
			    "empty (set the port to 0 to disable HTTPS)",
			    cfg->http_tls_port);
	if (cfg->http_port != 0 && cfg->http_port == cfg->http_tls_port)
		return fail("'http.port' and 'http.tls_port' are both %u",
			    cfg->http_port);
	for (size_t i = 0; i < ARRAY_SIZE(ports); i++) {
		if (ports[i] == 0)
			continue;
		if (cfg->http_port == ports[i])
			return fail("'http.port' and '%s' are both %u",
				    names[i], ports[i]);
		if (cfg->http_tls_port == ports[i])
			return fail("'http.tls_port' and '%s' are both %u",
				    names[i], ports[i]);
	}
	if ((cfg->http_port != 0 || cfg->http_tls_port != 0) &&
	    cfg->http_addresses[strspn(cfg->http_addresses, " \t")] == '\0')
		return fail("'http.addresses' is empty (set 'http.port' and "
			    "'http.tls_port' to 0 to disable HTTP)");
	if (cidr_list_check(cfg->http_admin_addresses, &error) < 0)
		return fail("'http.admin_addresses': %s", error);
	return 0;
}

static int check_s2s_dial(const struct config *cfg)
{
	char csv[1024];
	const char *error;
	if (hostport_list_csv(cfg->s2s_dns_servers, csv, sizeof(csv),
			      &error) < 0)
		return fail("'s2s.dns_servers': %s", error);
	return 0;
}

/* A file a daemon opens again after it moved to / (reload, a respawned
 * worker): a relative path would then name another file, or none. */
static int check_paths(const struct config *cfg)
{
	const struct {
		const char *key, *value;
	} paths[] = {
		{ "tls.certificate", cfg->tls_certificate },
		{ "tls.key", cfg->tls_key },
		{ "pid_file", cfg->pid_file },
		{ "log_file", cfg->log_file },
		{ "control.socket", cfg->control_socket },
		{ "cluster.password_file", cfg->cluster_password_file },
		{ "cluster.credentials", cfg->cluster_credentials },
		{ "cluster.tls_ca", cfg->cluster_tls_ca },
		{ "cluster.tls_certificate", cfg->cluster_tls_certificate },
		{ "cluster.tls_key", cfg->cluster_tls_key },
		{ "cluster.secret_file", cfg->cluster_secret_file },
	};
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		const char *v = paths[i].value + strspn(paths[i].value, " \t");
		if (v[0] == '\0' || v[0] == '/' || strcmp(v, "-") == 0)
			continue;
		return fail("'%s' is '%s', a relative path: give an absolute "
			    "one (the daemon works in /)", paths[i].key, v);
	}
	return 0;
}

static int check_muc(const struct config *cfg)
{
	const char *s = cfg->muc_service;
	if (strcmp(cfg->muc_create, "local") != 0 &&
	    strcmp(cfg->muc_create, "anyone") != 0 &&
	    strcmp(cfg->muc_create, "nobody") != 0)
		return fail("'muc.create' is '%s': it is local, anyone or "
			    "nobody", cfg->muc_create);
	/* one DNS label: SERVICE.HOST must be a domain of its own */
	for (const char *p = s; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		      (*p == '-' && p != s && p[1] != '\0')))
			return fail("'muc.service' is '%s': one DNS label of "
				    "a-z, 0-9 and inner '-', or \"\"", s);
	if (strlen(s) > 63)
		return fail("'muc.service' is longer than a DNS label (63)");
	return 0;
}

#ifdef HAVE_NATS
/* A cluster or node name: it goes into NATS subjects and JetStream
 * key names, whose safe characters are these. */
static int check_cluster_name(const char *key, const char *v)
{
	size_t n = strlen(v);
	if (n == 0 || n > 32 || strspn(v, "abcdefghijklmnopqrstuvwxyz"
				     "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				     "0123456789-_") != n)
		return fail("'%s' is '%s': 1 to 32 letters, digits, '-' or "
			    "'_'", key, v);
	return 0;
}
#endif

bool config_cluster_on(const struct config *cfg)
{
	const char *s = cfg->cluster_servers;
	return s != NULL && s[strspn(s, " \t,")] != '\0';
}

static int check_cluster(const struct config *cfg)
{
	if (!config_cluster_on(cfg))
		return 0;
#ifndef HAVE_NATS
	return fail("'cluster.servers' is set but this xmppd was built "
		    "without NATS (configure --with-nats, libnats-dev)");
#else
	if (cfg->cluster_node[0] == '\0')
		return fail("'cluster.servers' is set but 'cluster.node' is "
			    "empty: give this node a name unique in the "
			    "cluster");
	if (check_cluster_name("cluster.node", cfg->cluster_node) < 0 ||
	    check_cluster_name("cluster.name", cfg->cluster_name) < 0)
		return -1;
	if (cfg->cluster_secret_file[0] == '\0')
		return fail("'cluster.servers' is set but "
			    "'cluster.secret_file' is empty: every node needs "
			    "the same secret (head -c 64 /dev/urandom > FILE)");
	if (cfg->cluster_node_timeout < 2 * cfg->cluster_heartbeat_interval)
		return fail("'cluster.node_timeout' must be at least twice "
			    "'cluster.heartbeat_interval'");
	if (cfg->cluster_lease_time < 2 * cfg->cluster_heartbeat_interval)
		return fail("'cluster.lease_time' must be at least twice "
			    "'cluster.heartbeat_interval'");
	if (cfg->cluster_credentials[0] != '\0' && cfg->cluster_user[0] != '\0')
		return fail("'cluster.credentials' and 'cluster.user' are "
			    "both set: give one");
	if ((cfg->cluster_user[0] == '\0') !=
	    (cfg->cluster_password_file[0] == '\0'))
		return fail("'cluster.user' and 'cluster.password_file' go "
			    "together");
	if ((cfg->cluster_tls_certificate[0] == '\0') !=
	    (cfg->cluster_tls_key[0] == '\0'))
		return fail("'cluster.tls_certificate' and 'cluster.tls_key' "
			    "go together");
	return 0;
#endif
}

static int check_s2s(const struct config *cfg)
{
	if (strcmp(cfg->s2s_auth, "dialback") != 0 &&
	    strcmp(cfg->s2s_auth, "pkix") != 0)
		return fail("'s2s.auth' is '%s': it is dialback or pkix",
			    cfg->s2s_auth);
	if (cfg->s2s_tls_port != 0 && cfg->tls_certificate[0] == '\0')
		return fail("'s2s.tls_port' is %u but 'tls.certificate' is empty"
			    " (set the port to 0 to disable direct TLS)",
			    cfg->s2s_tls_port);
	if (cfg->s2s_port != 0 && cfg->s2s_port == cfg->s2s_tls_port)
		return fail("'s2s.port' and 's2s.tls_port' are both %u",
			    cfg->s2s_port);
	return 0;
}

static int check_all(const struct config *cfg)
{
	if (check_hosts(cfg->hosts) < 0 || check_tls(cfg) < 0 ||
	    check_paths(cfg) < 0)
		return -1;
	if (cfg->c2s_addresses[strspn(cfg->c2s_addresses, " \t")] == '\0')
		return fail("'c2s.addresses' is empty");
	/* An empty conninfo would reach whatever libpq's defaults name; the
	 * Debian package ships it empty to mean "not set up yet". */
	if (cfg->db_conninfo[strspn(cfg->db_conninfo, " \t")] == '\0')
		return fail("'db.conninfo' is empty: name your PostgreSQL "
			    "database there and run 'xmppctl db migrate', or "
			    "run " PKGDATADIR "/setup-local for a local one");
	if (cfg->c2s_port == cfg->c2s_tls_port)
		return fail("'c2s.port' and 'c2s.tls_port' are both %u",
			    cfg->c2s_port);
	if (check_http(cfg) < 0 || check_s2s_dial(cfg) < 0)
		return -1;
	if (check_s2s(cfg) < 0 || check_muc(cfg) < 0 || check_cluster(cfg) < 0)
		return -1;
	/* The control socket takes privileged commands. */
	if (cfg->control_mode & 0002)
		return fail("'control.mode' 0%03o lets every local user "
			    "control xmppd", cfg->control_mode);
	return 0;
}

int config_check(const struct config *cfg, const char **error_r)
{
	if (check_all(cfg) == 0)
		return 0;
	snprintf(config_error, sizeof(config_error), "%s", config_reason);
	*error_r = config_error;
	return -1;
}

/* ---- output ----------------------------------------------------------- */

const char *config_value_str(const struct config *cfg,
			     const struct config_def *def,
			     char *buf, size_t size)
{
	const void *p = cfield(cfg, def);
	unsigned u = is_uint_type(def->type) ? *(const unsigned *)p : 0;

	switch (def->type) {
	case CONFIG_TYPE_STRING:
		return *(const char *const *)p;
	case CONFIG_TYPE_BOOL:
		return u ? "yes" : "no";
	case CONFIG_TYPE_LOGLEVEL:
		if (u < ARRAY_SIZE(level_names))
			return level_names[u];
		break;
	case CONFIG_TYPE_SIZE:
	case CONFIG_TYPE_DURATION:
		format_number(def->type, *(const uint64_t *)p, buf, size);
		return buf;
	default:
		break;
	}
	format_number(def->type, u, buf, size);
	return buf;
}

static void write_quoted(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', out);
		fputc(*s, out);
	}
	fputc('"', out);
}

char *config_serialize(const struct config *cfg)
{
	char *text = NULL, buf[64];
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);

	if (out == NULL)
		log_fatal("open_memstream() failed: %m");
	for (size_t i = 0; i < config_defs_count; i++) {
		const struct config_def *def = &config_defs[i];
		fprintf(out, "%s = ", def->name);
		write_quoted(out, config_value_str(cfg, def, buf, sizeof(buf)));
		fputc('\n', out);
	}
	if (fclose(out) != 0)
		log_fatal("config_serialize: out of memory");
	return text;
}

void config_diff(const struct config *a, const struct config *b,
		 void (*cb)(const struct config_def *def, const char *old,
			    const char *new, void *ctx), void *ctx)
{
	char abuf[64], bbuf[64];

	/* The text form is canonical, so equal text means equal value. */
	for (size_t i = 0; i < config_defs_count; i++) {
		const struct config_def *def = &config_defs[i];
		const char *old = config_value_str(a, def, abuf, sizeof(abuf));
		const char *new = config_value_str(b, def, bbuf, sizeof(bbuf));
		if (strcmp(old, new) != 0)
			cb(def, old, new, ctx);
	}
}

/* ---- the example file ------------------------------------------------- */

static bool needs_quotes(const char *s)
{
	return *s == '\0' || strpbrk(s, " \t#\"\\") != NULL;
}

static void write_example_key(FILE *out, const struct config_def *def,
			      const char *indent, const char *key)
{
	fprintf(out, "%s# %s (%s)\n%s#%s = ", indent, def->doc,
		def->flags & CONFIG_F_RESTART ? "restart-only" : "reloadable",
		indent, key);
	if (needs_quotes(def->def))
		write_quoted(out, def->def);
	else
		fputs(def->def, out);
	fputc('\n', out);
}

/* Write block `name` (n bytes) with all of its keys. */
static void write_example_block(FILE *out, const char *name, size_t n)
{
	const char *sep = "";

	fprintf(out, "\n%.*s {\n", (int)n, name);
	for (size_t i = 0; i < config_defs_count; i++) {
		const struct config_def *def = &config_defs[i];
		if (strncmp(def->name, name, n) != 0 || def->name[n] != '.')
			continue;
		fputs(sep, out);
		write_example_key(out, def, "\t", def->name + n + 1);
		sep = "\n";
	}
	fputs("}\n", out);
}

/* True if an earlier row already opened the block of row i. */
static bool block_written(size_t i, size_t n)
{
	for (size_t j = 0; j < i; j++) {
		if (strncmp(config_defs[j].name, config_defs[i].name, n + 1) == 0)
			return true;
	}
	return false;
}

void config_write_example(FILE *out)
{
	fputs("# xmppd.conf - every setting with its default, commented out.\n"
	      "# Generated by `xmppd --example` from the settings table in\n"
	      "# lib/config.c.  Syntax: `key = value`, `# comment`, and\n"
	      "# `name { ... }` blocks; sizes take K/M/G, durations ms/s/m/h.\n"
	      "# Reloadable keys take effect on SIGHUP; others need a restart.\n",
	      out);
	for (size_t i = 0; i < config_defs_count; i++) {
		if (strchr(config_defs[i].name, '.') != NULL)
			continue;
		fputc('\n', out);
		write_example_key(out, &config_defs[i], "", config_defs[i].name);
	}
	for (size_t i = 0; i < config_defs_count; i++) {
		const char *dot = strchr(config_defs[i].name, '.');
		size_t n = dot != NULL ? (size_t)(dot - config_defs[i].name) : 0;
		if (dot != NULL && !block_written(i, n))
			write_example_block(out, config_defs[i].name, n);
	}
}

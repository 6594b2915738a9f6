/*
 * caps.h - XEP-0115 entity capabilities and XEP-0390 (ecaps2): pure
 * functions (no I/O, no shared memory) over parsed XML, and the API the
 * PEP code asks "does this session want notifications for node N?"
 * (the ext unit in worker/caps_ext.c; docs/DESIGN.md "Entity
 * capabilities").
 * Failure policy: a <c/> or a disco#info answer that breaks a rule is
 * "invalid" (-1 with a static reason); nothing is logged here, the
 * caller logs one line.
 */
#ifndef XMPPD_CAPS_H
#define XMPPD_CAPS_H

#include <stddef.h>
#include <stdint.h>

struct buf;
struct conn;
struct session_info;
struct worker;
struct xml_node;

#define NS_CAPS "http://jabber.org/protocol/caps"
#define NS_ECAPS2 "urn:xmpp:caps"
#define NS_HASHES2 "urn:xmpp:hashes:2"
#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"

/* Hash functions (XEP-0115 section 5.1 step 8 / XEP-0300 names). */
enum caps_algo {
	CAPS_ALGO_NONE = 0,
	CAPS_SHA1,
	CAPS_SHA256,
	CAPS_SHA384,
	CAPS_SHA512,
};

#define CAPS_VER_MAX 128        /* a base64 SHA-512 is 88 */
#define CAPS_NODE_MAX 256
#define CAPS_NOTIFY_MAX 128     /* +notify names kept per ver */

/* A <c/> of a presence: which version, hash and ver; node for 0115. */
struct caps_ref {
	int v2;                         /* XEP-0390 */
	enum caps_algo algo;
	char ver[CAPS_VER_MAX + 1];     /* base64 hash */
	char node[CAPS_NODE_MAX + 1];   /* 0115 node; "" for 0390 */
};

/* The algorithm named s ("sha-1", "sha-256", ...), or CAPS_ALGO_NONE. */
enum caps_algo caps_algo_parse(const char *s);
const char *caps_algo_name(enum caps_algo algo);

/* The capabilities announced in an available presence: 1 with *r set,
 * 0 when there is no usable <c/> (none, legacy 0115 without hash, an
 * unknown algorithm, an over-long ver or node).  XEP-0115 sha-1 is
 * preferred when a client sends both (pep-plan section 1.7); a 0390
 * <c/> gives its first hash of a known algorithm. */
int caps_parse_presence(const struct xml_node *presence,
			struct caps_ref *r);

/* The disco#info node of the query for r: "NODE#VER" (0115) or
 * "urn:xmpp:caps#ALGO.VER" (0390), into out (NUL-terminated).
 * 0, or -1 when out is too small. */
int caps_query_node(const struct caps_ref *r, char *out, size_t size);

/* The reverse of caps_query_node for a query whose algorithm and
 * version the caller knows (pep_remote.c: from its query id): *r from
 * node.  0, or -1 when node is not of that form or the ver is not
 * 1..CAPS_VER_MAX base64 characters. */
int caps_node_parse(const char *node, enum caps_algo algo, int v2,
		    struct caps_ref *r);

/* The hash input of a disco#info <query/>: the XEP-0115 section 5.1
 * verification string (with the section 5.4 checks), or the XEP-0390
 * section 4.1 octets.  0, or -1 with *error_r (static) when the answer
 * is ill-formed (duplicate identity, feature or FORM_TYPE, ...). */
int caps_input(const struct xml_node *query, int v2, struct buf *out,
	       const char **error_r);

/* base64 of the hash of data into b64 (at least 89 bytes).
 * 0, or -1 for an unknown algorithm. */
int caps_hash_b64(enum caps_algo algo, const void *data, size_t len,
		  char *b64, size_t size);

/* Whether the disco#info answer query matches r's ver: 1 yes, 0 no
 * (a mismatch: poisoning or a buggy client), -1 ill-formed (*error_r). */
int caps_verify(const struct xml_node *query, const struct caps_ref *r,
		const char **error_r);

/* The node names N of the features "N+notify" of query, in the order
 * given, at most max of them; *more_r is set to 1 when there were more.
 * names[i] point into the tree.  Returns the count. */
unsigned caps_notify_names(const struct xml_node *query, const char **names,
			   size_t *lens, unsigned max, int *more_r);

/* ---- for PEP (worker/caps_ext.c) --------------------------------------
 * A session's caps are known once its ver is VERIFIED in the shared
 * cache (shm/caps.h); the session record carries the entry (caps_idx,
 * caps_gen), so any worker can ask about any local session without a
 * lock or a database round trip.  Unknown caps answer 0: no implicit
 * notifications (XEP-0060 section 9.2 MUST).
 * When a session's caps become known or change, the ext hook
 * caps_changed(c, old, nold, now, nnow) runs on the session's worker
 * with the keyed hashes (shm_caps_hash) of the +notify node names
 * before and after (nold 0 the first time): PEP sends the last items of
 * the nodes in now and not in old (XEP-0163 section 4.3.4). */

/* 1 when session s (a session-table copy, any worker's) has verified
 * caps listing node+notify, else 0. */
int caps_session_wants(struct worker *w, const struct session_info *s,
		       const char *node);
/* The same for a local conn (its applied caps). */
int caps_conn_wants(struct conn *c, const char *node);

/* caps_cache (008-caps.sql, 014-caps-bounds.sql), shared with
 * pep_remote.c: the algo column of r ("0115:sha-1", "0390:sha-256"), and
 * the lookup by ($1 algo, $2 ver, $3 whose budget): rows (n, recent,
 * found), found not NULL when the ver is cached (its names n, one row
 * each, or one NULL), else one row with the count of new vers $3 had
 * cached in the last hour. */
void caps_db_algo(const struct caps_ref *r, char *out, size_t size);
extern const char caps_lookup_sql[];

/* A disco#info answer q (from `from`, for the log) to a query for r
 * that the server sent to a JID on another server (pep_remote.c, which
 * checked that the query was its own; account: the local account that
 * asked, whose caps_cache budget the new row counts in).  Verified as a
 * local client's: 1 when r is VERIFIED (now or before; *idx_r, *gen_r
 * set, stored in shm and caps_cache), 0 when q does not match (one log
 * line, the entry INVALID, nothing cached), -1 when it could not be
 * stored. */
int caps_answer_remote(struct worker *w, const struct xml_node *q,
		       const struct caps_ref *r, const char *from,
		       const char *account, uint32_t *idx_r, uint32_t *gen_r);

#endif

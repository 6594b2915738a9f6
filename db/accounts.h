/*
 * accounts.h - the account SQL shared by the worker (the login lookup,
 * sent through db.c) and xmppctl (synchronous add, passwd, del, list):
 * query texts, parameter order and result decoding live here only.
 * Usernames are stored Nodeprep'd and domains Nameprep'd (lib/jid.h), so
 * lookups compare bytes.  An account stores SCRAM-SHA-1 and SCRAM-SHA-256
 * credentials (salt, iterations, StoredKey, ServerKey), never a password.
 * Failure policy: -1 with a reason in *error_r (a static string or buffer,
 * valid until the next call); nothing logs, nothing exits.
 */
#ifndef XMPPD_ACCOUNTS_H
#define XMPPD_ACCOUNTS_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "arena.h"
#include "scram.h"

/* The login lookup: $1 username (Nodeprep'd), $2 domain (Nameprep'd).
 * One row per stored mechanism; decode with accounts_login_decode(),
 * with text or binary results (db_query's result_binary). */
#define ACCOUNTS_LOGIN_SQL \
	"SELECT s.mechanism, s.salt, s.iterations, s.stored_key, " \
	"s.server_key FROM accounts a JOIN account_scram s " \
	"ON s.account_id = a.id WHERE a.username = $1 AND a.domain = $2"
#define ACCOUNTS_LOGIN_NPARAMS 2

/* What a login may check against, indexed by enum scram_hash. */
struct accounts_login {
	bool found[2];
	struct scram_credentials cred[2];
};

/* Decode the login lookup's result: 1 account found (at least one
 * mechanism), 0 no such account, -1 a malformed row (*error_r). */
int accounts_login_decode(const PGresult *res,
			  struct accounts_login *login_r,
			  const char **error_r);

/* Split and prepare "user@domain" (no resource) into the arena:
 * *user_r Nodeprep'd, *domain_r Nameprep'd.  0 or -1. */
int accounts_parse_jid(struct arena *a, const char *jid,
		       const char **user_r, const char **domain_r,
		       const char **error_r);

/* Synchronous, for xmppctl (never in a worker loop).  user and domain are
 * prepared.  New credentials for both mechanisms are derived from
 * password with the given iterations (at least SCRAM_ITERATIONS_MIN). */
/* 1 the account exists, 0 not, -1 error. */
int accounts_exists(PGconn *conn, const char *user, const char *domain,
		    const char **error_r);
/* Fails with "user already exists". */
int accounts_add(PGconn *conn, const char *user, const char *domain,
		 const char *password, unsigned iterations,
		 const char **error_r);
/* Replaces both mechanisms' credentials; fails with "no such user". */
int accounts_passwd(PGconn *conn, const char *user, const char *domain,
		    const char *password, unsigned iterations,
		    const char **error_r);
/* Deletes the account and what hangs off it; fails with "no such user". */
int accounts_del(PGconn *conn, const char *user, const char *domain,
		 const char **error_r);
/* What `xmppctl user show` prints of one account. */
struct accounts_summary {
	char created[32];           /* "2026-12-06T04:31:42Z" (UTC) */
	long long roster;           /* roster items (listed, not removed) */
	long long offline;          /* offline messages queued */
	long long offline_unreadable;   /* moved aside (schema 004) */
	bool vcard;                 /* a vCard is stored */
	long long blocked;          /* blocklist entries */
};
/* 1 found (*sum_r filled), 0 no such account, -1 error. */
int accounts_show(PGconn *conn, const char *user, const char *domain,
		  struct accounts_summary *sum_r, const char **error_r);
/* Calls cb for every account (of domain, unless NULL), sorted by domain
 * then username. */
int accounts_list(PGconn *conn, const char *domain,
		  void (*cb)(void *ctx, const char *user, const char *domain),
		  void *ctx, const char **error_r);

#endif

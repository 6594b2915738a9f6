/*
 * sasl.c - SASL authentication (RFC 6120 section 6): PLAIN (only under
 * TLS), SCRAM-SHA-1, SCRAM-SHA-256 and their -PLUS variants with
 * tls-exporter / tls-server-end-point channel binding.  Credentials are
 * looked up asynchronously in PostgreSQL; while the database is down a
 * login gets <temporary-auth-failure/> at once (while the worker's link
 * is still coming up after its start, the lookup waits for it: db.h).
 * Failures are counted per source address and per account in shared
 * memory over all workers (see "Failures are counted" below); an
 * answer is delayed as the counts grow, and one stream is closed with
 * <policy-violation/> after sasl.max_failures.
 * Failure policy: a client's fault ends at most its stream.
 */
#include "worker.h"
#include "../db/accounts.h"
#include "../db/db.h"
#include "base64.h"
#include "jid.h"
#include "log.h"
#include "scram.h"
#include "throttle.h"
#include "tls.h"
#include "util.h"

#include <ctype.h>
#include "secret.h"
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum sasl_step {
	SASL_STEP_INITIAL = 1,  /* waiting for the initial response */
	SASL_STEP_LOOKUP,       /* waiting for PostgreSQL */
	SASL_STEP_FINAL,        /* SCRAM: challenge sent, waiting */
};

struct sasl {
	struct arena arena;     /* scram strings, prepared names */
	enum sasl_step step;
	int plain;              /* PLAIN, else SCRAM */
	struct scram_params params;
	struct scram_server scram;
	struct scram_plain creds_plain;
	const char *user;       /* prepared localpart */
	char *pending;          /* delayed <failure/> to send */
	int close_after;        /* policy-violation after the failure */
};

/* Failures are counted in the shared table (shm/throttle.c), per source
 * address (IPv6: its /64) and per account, over all workers.  An address
 * past sasl.max_failures_per_address is banned for sasl.ban_time: each
 * stream header (stream.c asks sasl_address_banned), each <auth/> and
 * any login in flight when the ban starts (checked again before the
 * password is) end with a <policy-violation/> stream error, worded like
 * ejabberd's mod_fail2ban.  An account past sasl.max_failures_per_account
 * is throttled for sasl.account_throttle_time, which never refuses the
 * account as a whole (else anyone could keep its owner out): while it
 * lasts, each failure for it also shuts the failing address (a third
 * key, address + account) out of that account for the throttle time,
 * with <temporary-auth-failure/> before the password is checked.  So a
 * throttled account takes one guess per address per throttle period,
 * each answer held for the longest delays, while its owner, from an
 * address that has not failed at it, still logs in.  Each failure's
 * answer is delayed, doubling from sasl.throttle_delay with the worse of
 * the address's and the account's shared counts (up to 8 s). */
#define SASL_THROTTLE_MAX_MS 8000

static unsigned char sasl_unknown_secret[32];
static int sasl_secret_ready;

static struct shm_throttle *sasl_table(const struct conn *c)
{
	return c->w->shm != NULL ? c->w->shm->throttle : NULL;
}

static void sasl_limits(const struct config *cfg, int account,
			struct throttle_limits *lim)
{
	lim->max_failures = account ? cfg->sasl_max_failures_per_account :
		cfg->sasl_max_failures_per_address;
	lim->window_ms = (int64_t)cfg->sasl_failure_window;
	lim->block_ms = (int64_t)(account ? cfg->sasl_account_throttle_time :
				  cfg->sasl_ban_time);
}

/* "user@domain", the domain lowercased: hosted domains match
 * case-insensitively, so one account has one key. */
static void sasl_account_bare(const struct conn *c, const char *user,
			      char *bare, size_t size)
{
	int n = snprintf(bare, size, "%s@", user);
	for (const char *d = c->stream_to; n > 0 && (size_t)n < size - 1 &&
	     *d != '\0'; d++)
		bare[n++] = (char)tolower((unsigned char)*d);
	if (n > 0 && (size_t)n < size)
		bare[n] = '\0';
}

static void sasl_account_key(const struct conn *c, const char *user,
			     struct throttle_key *key_r)
{
	char bare[IPC_JID_MAX + 1];
	sasl_account_bare(c, user, bare, sizeof(bare));
	shm_throttle_key_account(sasl_table(c), bare, key_r);
}

/* c's address guessing at user's account: -1 when c->addr is none. */
static int sasl_pair_key(const struct conn *c, const char *user,
			 struct throttle_key *key_r)
{
	char bare[IPC_JID_MAX + 1];
	sasl_account_bare(c, user, bare, sizeof(bare));
	return shm_throttle_key_pair(sasl_table(c), c->addr, bare, key_r);
}

/* Seconds since the window opened, at least 1, for the log. */
static long long sasl_window_s(const struct throttle_entry *e, int64_t now)
{
	int64_t ms = now - e->window_start;
	return ms < 1000 ? 1 : (long long)(ms / 1000);
}

/* The table is full (a key's failure cannot be counted): warn, at most
 * once a minute per worker; the key is then treated as throttled. */
static void sasl_table_full(struct conn *c, const char *label)
{
	static int64_t warned;
	int64_t now = time_now_ms();

	if (warned != 0 && now - warned < 60000)
		return;
	warned = now;
	log_warn("throttle table full: %s cannot be counted and is treated "
		 "as throttled (sasl.throttle_table_size = %u)", label,
		 c->w->cfg->sasl_throttle_table_size);
}

/* Count a failure for c's address (and user, when known); log a ban that
 * starts; return how long to hold the answer. */
static int64_t sasl_throttle_fail(struct conn *c, const char *user)
{
	struct shm_throttle *t = sasl_table(c);
	const struct config *cfg = c->w->cfg;
	struct throttle_key key;
	struct throttle_limits lim;
	struct throttle_entry e;
	int64_t now = time_now_ms();
	uint32_t worst = 0;
	int r;

	if (t != NULL && shm_throttle_key_address(t, c->addr, &key) == 0) {
		sasl_limits(cfg, 0, &lim);
		if ((r = shm_throttle_fail(t, &key, &lim, now, &e)) >= 0)
			worst = e.failures;
		if (r == -2) {
			sasl_table_full(c, key.label);
			worst = UINT32_MAX;
		}
		/* The line for fail2ban (filter.d/xmppd-ban.conf): what is
		 * banned, an IPv4 address or an IPv6 /64, where it finds
		 * the host; the address that failed last follows. */
		if (r == 1)
			log_warn("login failures from %s: banned for %llu s "
				 "(%u failures in %lld s%s%s)", e.label,
				 (unsigned long long)(cfg->sasl_ban_time / 1000),
				 e.failures, sasl_window_s(&e, now),
				 strcmp(e.label, c->addr) != 0 ? ", the last from "
				 : "", strcmp(e.label, c->addr) != 0 ? c->addr : "");
	}
	if (t != NULL && user != NULL) {
		sasl_account_key(c, user, &key);
		sasl_limits(cfg, 1, &lim);
		if ((r = shm_throttle_fail(t, &key, &lim, now, &e)) >= 0 &&
		    e.failures > worst)
			worst = e.failures;
		if (r == -2) {
			sasl_table_full(c, key.label);
			worst = UINT32_MAX;
		}
		if (r == 1) {
			char bare[IPC_JID_MAX + 1];
			sasl_account_bare(c, user, bare, sizeof(bare));
			log_warn("login failures for %s: account throttled for "
				 "%llu s (%u failures in %lld s)", bare,
				 (unsigned long long)
				 (cfg->sasl_account_throttle_time / 1000),
				 e.failures, sasl_window_s(&e, now));
		}
		/* A failure while the account is throttled shuts this
		 * address out of the account for the throttle time. */
		if ((r == -2 || (r >= 0 && e.blocked_until > now)) &&
		    sasl_pair_key(c, user, &key) == 0) {
			lim.max_failures = 1;
			r = shm_throttle_fail(t, &key, &lim, now, &e);
			if (r == -2)
				sasl_table_full(c, key.label);
			if (r == 1)
				log_info("c%u: login failures for %s@%s: %s "
					 "refused for this account for %llu s",
					 c->id, user, c->stream_to,
					 shm_throttle_key_address(t, c->addr,
					 &key) == 0 ? key.label : c->addr,
					 (unsigned long long)
					 (cfg->sasl_account_throttle_time /
					  1000));
		}
	}
	int64_t base = (int64_t)cfg->sasl_throttle_delay;
	if (base == 0 || worst <= 1)
		return 0;
	int64_t delay = base << (worst - 2 < 10 ? worst - 2 : 10);
	return delay > SASL_THROTTLE_MAX_MS ? SASL_THROTTLE_MAX_MS : delay;
}

static void sasl_throttle_success(struct conn *c, const char *user)
{
	struct throttle_key key;
	if (sasl_table(c) == NULL)
		return;
	sasl_account_key(c, user, &key);
	shm_throttle_clear(sasl_table(c), &key, time_now_ms());
}

static void sasl_fail(struct conn *c, const char *condition, const char *text);

/* The stream error a banned address gets (ejabberd's mod_fail2ban
 * wording, so operators recognise it). */
static void sasl_banned(struct conn *c, const struct throttle_entry *e,
			int64_t now)
{
	char when[64], text[256];
	time_t until = time(NULL) + (time_t)((e->blocked_until - now + 999) /
					     1000);
	struct tm tm;

	if (gmtime_r(&until, &tm) == NULL ||
	    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(when, sizeof(when), "a later time");
	snprintf(text, sizeof(text), "Too many (%u) failed authentications "
		 "from this IP address (%s). The address will be unblocked "
		 "at %s", e->failures, c->addr, when);
	sasl_free(c);
	stream_error(c, "policy-violation", text);
}

/* Refuse a login from a banned address, or (user known) for a throttled
 * account.  1 when answered (c->sasl is then gone), 0 to go on; a lock
 * error lets the login go on, a key the full table cannot count is
 * refused with <temporary-auth-failure/> (fail closed; not at a stream
 * header, where only a ban ends the stream). */
static int sasl_refused(struct conn *c, const char *user, int header)
{
	struct shm_throttle *t = sasl_table(c);
	struct throttle_key key;
	struct throttle_entry e;
	int64_t now = time_now_ms();

	if (t == NULL)
		return 0;
	if (shm_throttle_key_address(t, c->addr, &key) == 0) {
		int r = shm_throttle_check(t, &key, now, &e);
		if (r == 1) {
			sasl_banned(c, &e, now);
			return 1;
		}
		if (r == 2 && !header) {
			/* Fail closed: its failures could not be counted. */
			sasl_table_full(c, key.label);
			sasl_fail(c, "temporary-auth-failure", "too many failed "
				  "authentications; try again later");
			return 1;
		}
	}
	if (user == NULL)
		return 0;
	/* A throttled account stays open to addresses that have not failed
	 * at it since: only this address's own failures shut it out, so
	 * nobody else can lock the owner out. */
	sasl_account_key(c, user, &key);
	int r = shm_throttle_check(t, &key, now, &e);
	if (r == 1 && sasl_pair_key(c, user, &key) == 0)
		r = shm_throttle_check(t, &key, now, &e);
	else if (r == 1)
		r = 0;
	if (r == 2)
		sasl_table_full(c, key.label);
	if (r != 1 && r != 2)
		return 0;
	sasl_fail(c, "temporary-auth-failure", "too many failed "
		  "authentications for this account; try again later");
	return 1;
}

/* At each stream header before authentication, so a banned address is
 * refused before it costs a TLS handshake (ejabberd does the same). */
int sasl_address_banned(struct conn *c)
{
	return sasl_refused(c, NULL, 1);
}

/* On the direct TLS port, before the handshake: nothing can be said in
 * clear there, so a banned address is only logged and closed. */
int sasl_address_banned_tls(struct conn *c)
{
	struct shm_throttle *t = sasl_table(c);
	struct throttle_key key;
	struct throttle_entry e;
	int64_t now = time_now_ms();

	if (t == NULL || shm_throttle_key_address(t, c->addr, &key) < 0 ||
	    shm_throttle_check(t, &key, now, &e) != 1)
		return 0;
	log_info("c%u %s: refused before TLS: %s banned for %lld s more "
		 "(%u failed authentications)", c->id, c->peer, e.label,
		 (long long)((e.blocked_until - now + 999) / 1000), e.failures);
	return 1;
}

void sasl_features(struct conn *c, struct buf *out)
{
	int tls = conn_tls(c);
	buf_appendf(out, "<mechanisms xmlns='" NS_SASL "'>");
	if (tls)
		buf_appendf(out, "<mechanism>SCRAM-SHA-256-PLUS</mechanism>"
			    "<mechanism>SCRAM-SHA-1-PLUS</mechanism>");
	buf_appendf(out, "<mechanism>SCRAM-SHA-256</mechanism>"
		    "<mechanism>SCRAM-SHA-1</mechanism>");
	if (tls)
		buf_appendf(out, "<mechanism>PLAIN</mechanism>");
	buf_appendf(out, "</mechanisms>");
	if (tls) {
		/* XEP-0440: which channel bindings we support. */
		buf_appendf(out, "<sasl-channel-binding xmlns='urn:xmpp:"
			    "sasl-cb:0'>%s<channel-binding type='tls-server-"
			    "end-point'/></sasl-channel-binding>",
			    tls_is_13(c) ? "<channel-binding type='tls-"
			    "exporter'/>" : "");
	}
}

void sasl_free(struct conn *c)
{
	struct sasl *s = c->sasl;
	if (s == NULL)
		return;
	scram_server_clear(&s->scram);
	scram_plain_clear(&s->creds_plain);
	arena_free(&s->arena);
	free(s->pending);
	free(s);
	c->sasl = NULL;
}

static void sasl_send_failure(struct conn *c, const char *xml, int close_after)
{
	conn_send(c, xml, strlen(xml));
	if (close_after)
		stream_error(c, "policy-violation", "too many failed "
			     "authentication attempts");
}

/* Only failures that could be password guesses count towards
 * sasl.max_failures and the throttle.  Mechanism negotiation does not:
 * slixmpp 1.8, for one, tries SCRAM-*-PLUS with tls-unique (refused:
 * no such binding on TLS 1.3), then SCRAM with the 'y' flag (refused:
 * RFC 5802 section 6 downgrade rule), then PLAIN; counting those would
 * close its stream before it reaches a mechanism that works. */
static int sasl_counts(const char *condition, const char *text)
{
	if (strcmp(condition, "aborted") == 0 ||
	    strcmp(condition, "temporary-auth-failure") == 0 ||
	    strcmp(condition, "invalid-mechanism") == 0 ||
	    strcmp(condition, "encryption-required") == 0)
		return 0;
	return text == NULL ||
	       (strcmp(text, scram_error_str(SCRAM_ERR_CB_TYPE)) != 0 &&
		strcmp(text, scram_error_str(SCRAM_ERR_CB_DOWNGRADE)) != 0);
}

static const char *sasl_mech(const struct conn *c)
{
	const struct sasl *s = c->sasl;
	if (s == NULL)
		return "-";
	return s->plain ? "PLAIN" : scram_mech_name(s->params.hash,
						    s->params.plus);
}

/* The mechanism of c's exchange for the metrics: the one being run, or
 * the one named by an <auth/> refused before it began. */
static enum ipc_mech sasl_begun_mech = IPC_MECH_NONE;

static enum ipc_mech sasl_mech_of(int plain, enum scram_hash hash, bool plus)
{
	if (plain)
		return IPC_MECH_PLAIN;
	if (hash == SCRAM_HASH_SHA1)
		return plus ? IPC_MECH_SCRAM_SHA_1_PLUS : IPC_MECH_SCRAM_SHA_1;
	return plus ? IPC_MECH_SCRAM_SHA_256_PLUS : IPC_MECH_SCRAM_SHA_256;
}

static enum ipc_mech sasl_mech_index(const struct conn *c)
{
	const struct sasl *s = c->sasl;
	if (s == NULL)
		return sasl_begun_mech;
	return sasl_mech_of(s->plain, s->params.hash, s->params.plus);
}

/* Answer <failure/>: at once, or after the throttle delay. */
static void sasl_fail(struct conn *c, const char *condition, const char *text)
{
	char xml[512];
	const char *user = c->sasl ? c->sasl->user : NULL;
	snprintf(xml, sizeof(xml), "<failure xmlns='" NS_SASL "'><%s/>%s%s%s"
		 "</failure>", condition, text ? "<text>" : "",
		 text ? text : "", text ? "</text>" : "");
	int counts = sasl_counts(condition, text);
	int reason = metrics_sasl_reason(condition);
	METRIC_INC(c->w->stats->login_failures[sasl_mech_index(c)]
		   [reason >= 0 ? reason : IPC_SASL_TEMPORARY_AUTH_FAILURE]);
	sasl_begun_mech = IPC_MECH_NONE;
	if (!counts)
		log_info("c%u %s: SASL failure <%s/>%s%s%s%s", c->id, c->peer,
			 condition, user ? " for " : "", user ? user : "",
			 text ? ": " : "", text ? text : "");
	else    /* the line for fail2ban (etc/fail2ban/filter.d/xmppd.conf) */
		log_info("c%u: authentication failed%s%s%s%s from %s (%s): "
			 "%s%s%s", c->id, user ? " for " : "", user ? user : "",
			 user ? "@" : "", user ? c->stream_to : "", c->addr,
			 sasl_mech(c), condition, text ? ": " : "",
			 text ? text : "");
	int64_t delay = counts ? sasl_throttle_fail(c, user) : 0;
	int close_after = counts &&
			  ++c->sasl_failures >= c->w->cfg->sasl_max_failures;
	sasl_free(c);
	if (delay <= 0) {
		sasl_send_failure(c, xml, close_after);
		return;
	}
	c->sasl = calloc(1, sizeof(*c->sasl));
	if (c->sasl == NULL || (c->sasl->pending = strdup(xml)) == NULL) {
		sasl_send_failure(c, xml, close_after);
		return;
	}
	arena_init(&c->sasl->arena, 256);
	c->sasl->close_after = close_after;
	conn_delay(c, time_now_ms() + delay, CONN_DELAY_SASL);
}

void sasl_delayed(struct conn *c)
{
	struct sasl *s = c->sasl;
	if (s == NULL || s->pending == NULL)
		return;
	char *xml = s->pending;
	int close_after = s->close_after;
	s->pending = NULL;
	sasl_free(c);
	sasl_send_failure(c, xml, close_after);
	free(xml);
}

static void sasl_fail_scram(struct conn *c, enum scram_error err)
{
	sasl_fail(c, scram_error_condition(err), scram_error_str(err));
}

static void sasl_success(struct conn *c, const char *data, size_t len)
{
	struct buf out;
	buf_init(&out, 0);
	buf_appendf(&out, "<success xmlns='" NS_SASL "'>");
	if (data != NULL) {
		char b64[1024];
		if (base64_encode(data, len, b64, sizeof(b64)) < 0) {
			buf_free(&out);
			sasl_fail(c, "temporary-auth-failure", NULL);
			return;
		}
		buf_appendf(&out, "%s", b64);
	}
	buf_appendf(&out, "</success>");
	conn_send(c, buf_head(&out), buf_used(&out));
	buf_free(&out);
	c->authenticated = 1;
	c->mech = sasl_mech_index(c);
	METRIC_INC(c->w->stats->logins[c->mech]);
	conn_metrics_move(c, c->m_tls, 1);
	c->user = strdup(c->sasl->user);
	c->domain = strdup(c->stream_to);
	log_info("c%u %s: authenticated as %s@%s (%s)", c->id, c->peer,
		 c->sasl->user, c->stream_to, c->sasl->plain ? "PLAIN" :
		 scram_mech_name(c->sasl->params.hash, c->sasl->params.plus));
	sasl_throttle_success(c, c->sasl->user);
	sasl_free(c);
	if (c->user == NULL || c->domain == NULL) {
		stream_error(c, "resource-constraint", NULL);
		return;
	}
	stream_restart(c);
}

/* The prepared localpart, or NULL (then the login cannot succeed). */
static const char *sasl_prep_user(struct sasl *s, const char *name)
{
	const char *out, *error;
	if (jid_prep_part(&s->arena, JID_PART_LOCAL, name, strlen(name), &out,
			  &error) < 0)
		return NULL;
	return out;
}

/* RFC 6120 section 6.4.6: an authzid must be the account's bare JID. */
static int sasl_authzid_ok(struct conn *c, struct sasl *s, const char *authzid)
{
	struct jid jid;
	const char *error;
	if (authzid == NULL)
		return 1;
	if (jid_parse(&s->arena, authzid, &jid, &error) < 0 ||
	    jid.resource != NULL || jid.local == NULL)
		return 0;
	return strcmp(jid.local, s->user) == 0 &&
	       strcmp(jid.domain, c->stream_to) == 0;
}

static void sasl_send_challenge(struct conn *c, const char *msg, size_t len)
{
	size_t size = BASE64_ENCODED_LEN(len) + 1;
	char *b64 = malloc(size);
	struct buf out;
	if (b64 == NULL || base64_encode(msg, len, b64, size) < 0) {
		free(b64);
		sasl_fail(c, "temporary-auth-failure", NULL);
		return;
	}
	buf_init(&out, 0);
	buf_appendf(&out, "<challenge xmlns='" NS_SASL "'>%s</challenge>", b64);
	free(b64);
	conn_send(c, buf_head(&out), buf_used(&out));
	buf_free(&out);
}

static void sasl_scram_credentials(struct conn *c,
				   const struct accounts_login *login, int found)
{
	struct sasl *s = c->sasl;
	struct scram_credentials cred;
	const char *msg;
	size_t len;

	if (found && login->found[s->params.hash]) {
		cred = login->cred[s->params.hash];
	} else if (scram_credentials_unknown(s->params.hash, s->user,
					     sasl_unknown_secret,
					     sizeof(sasl_unknown_secret),
					     c->w->cfg->scram_iterations,
					     &cred) < 0) {
		sasl_fail(c, "temporary-auth-failure", NULL);
		return;
	}
	enum scram_error err = scram_server_first(&s->scram, &cred, &msg, &len);
	sodium_memzero(&cred, sizeof(cred));
	if (err != SCRAM_OK) {
		sasl_fail_scram(c, err);
		return;
	}
	s->step = SASL_STEP_FINAL;
	sasl_send_challenge(c, msg, len);
}

static void sasl_plain_check(struct conn *c, const struct accounts_login *login,
			     int found)
{
	struct sasl *s = c->sasl;
	enum scram_hash h = SCRAM_HASH_SHA256;
	/* A ban that started while this login was in flight stops it
	 * before the password is checked. */
	if (sasl_refused(c, s->user, 0))
		return;
	if (found && !login->found[h])
		h = SCRAM_HASH_SHA1;
	if (!found || !login->found[h]) {
		sasl_fail(c, "not-authorized", NULL);
		return;
	}
	enum scram_error err = scram_plain_verify(s->creds_plain.password,
						  &login->cred[h]);
	scram_plain_clear(&s->creds_plain);
	if (err != SCRAM_OK)
		sasl_fail_scram(c, err);
	else
		sasl_success(c, NULL, 0);
}

static void sasl_db_result(void *ctx, const PGresult *res, const char *error)
{
	struct conn *c = ctx;
	struct accounts_login login;
	const char *derr;
	if (c->sasl == NULL || c->sasl->step != SASL_STEP_LOOKUP)
		return;
	if (res == NULL) {
		log_warn("c%u: credentials lookup failed: %s", c->id, error);
		sasl_fail(c, "temporary-auth-failure", NULL);
		return;
	}
	int found = accounts_login_decode(res, &login, &derr);
	if (found < 0) {
		log_error("c%u: bad credentials row: %s", c->id, derr);
		sasl_fail(c, "temporary-auth-failure", NULL);
	} else if (c->sasl->plain) {
		sasl_plain_check(c, &login, found);
	} else {
		sasl_scram_credentials(c, &login, found);
	}
	sodium_memzero(&login, sizeof(login));
	conn_flush(c);
}

static void sasl_lookup(struct conn *c)
{
	struct sasl *s = c->sasl;
	const char *params[2] = { s->user, c->stream_to };
	s->step = SASL_STEP_LOOKUP;
	if (c->w->db == NULL ||
	    db_query(c->w->db, ACCOUNTS_LOGIN_SQL, ACCOUNTS_LOGIN_NPARAMS,
		     params, NULL, NULL, 1, sasl_db_result, c) < 0)
		sasl_fail(c, "temporary-auth-failure", NULL);
}

static void sasl_plain_initial(struct conn *c, const char *msg, size_t len)
{
	struct sasl *s = c->sasl;
	enum scram_error err = scram_plain_parse(&s->arena, msg, len,
						 &s->creds_plain);
	if (err != SCRAM_OK) {
		sasl_fail_scram(c, err);
		return;
	}
	s->user = sasl_prep_user(s, s->creds_plain.authcid);
	if (s->user == NULL) {
		sasl_fail(c, "not-authorized", NULL);
		return;
	}
	if (!sasl_authzid_ok(c, s, s->creds_plain.authzid)) {
		sasl_fail(c, "invalid-authzid", NULL);
		return;
	}
	if (!sasl_refused(c, s->user, 0))
		sasl_lookup(c);
}

static void sasl_scram_initial(struct conn *c, const char *msg, size_t len)
{
	struct sasl *s = c->sasl;
	enum scram_error err = scram_server_start(&s->scram, &s->arena,
						  &s->params, msg, len);
	if (err != SCRAM_OK) {
		sasl_fail_scram(c, err);
		return;
	}
	s->user = sasl_prep_user(s, s->scram.username);
	if (s->user == NULL) {
		sasl_fail(c, "not-authorized", NULL);
		return;
	}
	if (!sasl_authzid_ok(c, s, s->scram.authzid)) {
		sasl_fail(c, "invalid-authzid", NULL);
		return;
	}
	if (!sasl_refused(c, s->user, 0))
		sasl_lookup(c);
}

static void sasl_scram_final(struct conn *c, const char *msg, size_t len)
{
	struct sasl *s = c->sasl;
	unsigned char cb[64];
	int cb_len = 0;
	const char *out;
	size_t out_len;
	if (sasl_refused(c, s->user, 0))
		return;
	if (s->scram.cb == SCRAM_CB_TLS_EXPORTER)
		cb_len = tls_cb_exporter(c, cb, sizeof(cb));
	else if (s->scram.cb == SCRAM_CB_TLS_SERVER_END_POINT)
		cb_len = tls_cb_server_end_point(c, cb, sizeof(cb));
	if (cb_len < 0) {
		sasl_fail(c, "temporary-auth-failure", "no channel binding data");
		return;
	}
	enum scram_error err = scram_server_final(&s->scram, cb_len ? cb : NULL,
						  (size_t)cb_len, msg, len,
						  &out, &out_len);
	if (err != SCRAM_OK)
		sasl_fail_scram(c, err);
	else
		sasl_success(c, out, out_len);
}

/* One decoded client message, whatever the step. */
static void sasl_step(struct conn *c, const char *msg, size_t len)
{
	struct sasl *s = c->sasl;
	if (s->step == SASL_STEP_INITIAL && s->plain)
		sasl_plain_initial(c, msg, len);
	else if (s->step == SASL_STEP_INITIAL)
		sasl_scram_initial(c, msg, len);
	else if (s->step == SASL_STEP_FINAL)
		sasl_scram_final(c, msg, len);
	else
		sasl_fail(c, "malformed-request", "unexpected response");
}

/* Decode the element's base64 text ("=" is an empty message): 0, -1 if
 * it is not base64, -2 if it would decode to more than size bytes. */
static int sasl_decode(struct conn *c, const struct xml_node *n,
		       char *out, size_t size, size_t *len_r)
{
	char *text = xml_text(c->arena, n);
	if (text == NULL)
		return -1;
	if (strcmp(text, "=") == 0) {
		*len_r = 0;
		return 0;
	}
	size_t len = strlen(text), pad = 0;
	while (pad < 2 && pad < len && text[len - 1 - pad] == '=')
		pad++;
	if (BASE64_DECODED_MAX(len) > size + pad)
		return -2;
	return base64_decode(text, len, out, size, len_r);
}

static unsigned sasl_cb_offered(struct conn *c)
{
	unsigned cb = 0;
	if (!conn_tls(c))
		return 0;
	cb |= SCRAM_CB_TLS_SERVER_END_POINT;
	if (tls_is_13(c))
		cb |= SCRAM_CB_TLS_EXPORTER;
	return cb;
}

/* <auth mechanism='...'>: 0 to go on, -1 when already answered. */
static int sasl_begin(struct conn *c, const char *mech)
{
	struct sasl *s;
	enum scram_hash hash = SCRAM_HASH_SHA256;
	bool plus = false;
	int plain = mech != NULL && strcmp(mech, "PLAIN") == 0;

	if (mech == NULL || (!plain && scram_mech_parse(mech, &hash, &plus) < 0)) {
		sasl_fail(c, "invalid-mechanism", NULL);
		return -1;
	}
	sasl_begun_mech = sasl_mech_of(plain, hash, plus);
	if (plus && !conn_tls(c)) {
		sasl_fail(c, "invalid-mechanism", NULL);
		return -1;
	}
	if (plain && !conn_tls(c)) {
		sasl_fail(c, "encryption-required", NULL);
		return -1;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		sasl_fail(c, "temporary-auth-failure", NULL);
		return -1;
	}
	arena_init(&s->arena, 1024);
	s->step = SASL_STEP_INITIAL;
	s->plain = plain;
	s->params.hash = hash;
	s->params.plus = plus;
	s->params.cb_offered = sasl_cb_offered(c);
	c->sasl = s;
	sasl_begun_mech = IPC_MECH_NONE;
	return 0;
}

static void sasl_message(struct conn *c, const struct xml_node *n, int initial)
{
	static char msg[SCRAM_MESSAGE_MAX];
	size_t len;
	if (initial && n->children == NULL) {
		/* No initial response: an empty challenge asks for it. */
		sasl_send_challenge(c, "", 0);
		return;
	}
	int r = sasl_decode(c, n, msg, sizeof(msg), &len);
	if (r == -2) {      /* lib/scram.h: size is SCRAM_ERR_MALFORMED */
		sasl_fail(c, scram_error_condition(SCRAM_ERR_MALFORMED),
			  "message too large");
		return;
	}
	if (r < 0) {
		sasl_fail(c, scram_error_condition(SCRAM_ERR_BASE64), NULL);
		return;
	}
	sasl_step(c, msg, len);
}

void sasl_init_secret(void)
{
	randombytes_buf(sasl_unknown_secret, sizeof(sasl_unknown_secret));
	sasl_secret_ready = 1;
}

void sasl_seed_secret(const unsigned char key[SECRET_KEY_BYTES])
{
	secret_derive(key, "xmppd sasl unknown-account v1",
		      sasl_unknown_secret, sizeof(sasl_unknown_secret));
	sasl_secret_ready = 1;
}

void sasl_handle(struct conn *c, struct xml_node *n)
{
	if (!sasl_secret_ready)
		sasl_init_secret();
	if (c->authenticated) {
		stream_error(c, "policy-violation", "already authenticated");
	} else if (!conn_tls(c) && c->w->cfg->tls_required) {
		sasl_fail(c, "encryption-required", NULL);
	} else if (c->sasl != NULL && (c->sasl->pending != NULL ||
				       c->sasl->step == SASL_STEP_LOOKUP)) {
		log_info("c%u %s: SASL element while busy: ignored", c->id,
			 c->peer);
	} else if (strcmp(n->name, "auth") == 0) {
		sasl_free(c);
		if (!sasl_refused(c, NULL, 0) &&
		    sasl_begin(c, xml_attr(n, "mechanism")) == 0)
			sasl_message(c, n, 1);
	} else if (strcmp(n->name, "abort") == 0) {
		sasl_fail(c, "aborted", NULL);
	} else if (strcmp(n->name, "response") == 0 && c->sasl != NULL) {
		sasl_message(c, n, 0);
	} else {
		sasl_fail(c, "malformed-request", NULL);
	}
}

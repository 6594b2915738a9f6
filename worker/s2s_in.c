/*
 * s2s_in.c - streams other servers open to us (RFC 6120 section 13,
 * receiving entity; s2s_int.h).  Any worker accepts them on the s2s
 * listeners.  The stream header must be jabber:server, version 1.0, to
 * one of our hosts; our answer carries a fresh id (the dialback key is
 * bound to it) and xmlns:db.  Features: STARTTLS (required by default,
 * RFC 7590: anything else before it ends the stream with
 * <policy-violation/>), then SASL EXTERNAL (XEP-0178) when the peer's
 * certificate validates against the system store plus s2s.ca_file (any
 * chain purpose; its extendedKeyUsage none, serverAuth or clientAuth:
 * certid_eku_ok) and names the stream's 'from' (RFC 6125), and server
 * dialback (XEP-0220) when s2s.auth allows it for that domain.
 *
 * A stream is authorized per domain pair: SASL gives (the stream's
 * 'to', its 'from'); each valid <db:result/> gives (R, O).  A
 * <db:result/> is verified by the worker owning our outgoing link R -> O
 * (s2s_owner_slot), which asks O's authoritative server with
 * <db:verify/> (IPC_FRAME_S2S_VERIFY) and answers with
 * IPC_FRAME_S2S_VERIFIED; unanswered after s2s.verify_timeout, the
 * request gets <remote-server-timeout/>.  As the authoritative server we
 * answer <db:verify/> from our own keys (dialback.c, XEP-0185).
 *
 * Stanzas (jabber:server message, presence, iq) need an authorized
 * stream (else <not-authorized/>), 'from' and 'to' (else
 * <improper-addressing/>), a 'from' domain the stream is authorized
 * for with that 'to' (else <invalid-from/>), a 'to' of ours or a
 * component's (else <host-unknown/>); within s2s.max_stanza_size (else
 * <policy-violation/>).  Past s2s.max_stanza_rate the stream is paced:
 * its socket is not read until the bucket refills (s2s_in_pace), nothing
 * is dropped.  They are then routed inward with a trusted 'from', like a
 * client's.  XEP-0198 (acks only, no resumption) once SASL-authenticated.
 *
 * Bounds on what one peer can make us do: s2s.max_incoming and
 * s2s.max_incoming_per_domain (counted once, at the stream's first
 * authentication, for the domain it proved: SASL EXTERNAL's 'from' or
 * the first valid dialback pair's; an unauthenticated header 'from'
 * takes no place), s2s.auth_timeout until the first authorization (TLS
 * and SASL included; with s2s.max_incoming, what bounds streams that
 * never authenticate), s2s.max_domain_pairs pairs at once, s2s.max_dialback_requests
 * verifications in a stream's life, s2s.verify_timeout each,
 * s2s.max_stanza_size, s2s.max_stanza_rate for every element (stanzas,
 * dialback, SASL, <r/>), c2s.max_output_bytes of answers left unread,
 * s2s.in_idle_timeout of silence.
 *
 * Failure policy: every fault of the peer ends only its stream, with
 * the RFC 6120 stream error and a one-line reason in the log; a
 * dialback request that cannot be checked is answered type='error',
 * never left hanging.
 */
#include "worker.h"
#include "s2s.h"
#include "s2s_int.h"
#include "dialback.h"
#include "ext.h"
#include "component.h"
#include "server.h"
#include "sm.h"
#include "stanza.h"
#include "base64.h"
#include "certid.h"
#include "addr.h"
#include "jid.h"
#include "log.h"
#include "util.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define S2S_IN_CLOSE_GRACE_MS 5000
#define S2S_IN_TICK_MS 1000

enum s2s_pair_state {
	S2S_PAIR_PENDING = 1,   /* verification asked, no answer yet */
	S2S_PAIR_VALID,         /* stanzas O -> R accepted */
};

struct s2s_pair {
	char local[DIALBACK_DOMAIN_MAX + 1];    /* R: ours */
	char remote[DIALBACK_DOMAIN_MAX + 1];   /* O */
	int state;
	int64_t deadline_ms;    /* PENDING: answer remote-server-timeout */
};

struct s2s_in {
	struct s2s_in *next, *prev;     /* the worker's incoming streams */
	struct conn *c;
	char id[25];                    /* our stream id */
	char from[DIALBACK_DOMAIN_MAX + 1];     /* the stream's 'from' */
	X509 *peer_cert;                /* kept from the TLS handshake */
	int cert_valid;                 /* its chain and EKU validated */
	const char *cert_why;           /* why not (static text), for logs */
	int sasl_ok;                    /* SASL EXTERNAL for 'from' */
	char sasl_to[DIALBACK_DOMAIN_MAX + 1];  /* ... toward this 'to' */
	unsigned db_requests;           /* verifications asked (limit) */
	struct s2s_pair *pairs;
	unsigned npairs, pairs_cap;
	double tokens;                  /* s2s.max_stanza_rate bucket */
	int64_t tokens_at;
	unsigned paced;                 /* read pauses (for the log) */
	int sm_on;                      /* XEP-0198 enabled (acks only) */
	uint32_t sm_h;                  /* stanzas handled since <enable/> */
	struct shm_addr_key domain_key; /* 'from' in the shared counts */
	int domain_counted;             /* counted there (until closing) */
	int domain_once;                /* counted once already: no more */
};

static struct s2s_in *s2s_in_list;
static unsigned s2s_in_count;
static X509_STORE *s2s_in_store;
static int64_t s2s_in_next_tick;

static struct s2s_in *s2s_in_of(const struct conn *c)
{
	return (struct s2s_in *)(void *)c->s2s;
}

/* We are the authoritative server for domain: one of our hosts, or a
 * component's domain (XEP-0114; XEP-0220 and XEP-0178 toward other
 * servers are ours to do for it). */
static int s2s_in_serves(const struct worker *w, const char *domain)
{
	return stream_hosted(w, domain) || component_serves(domain) ||
	       ext_service(w, domain) != NULL;
}

static int s2s_in_blocked(const struct worker *w, const char *domain)
{
	return stream_domain_listed(w->cfg->s2s_blocked_domains, domain);
}

/* s2s.auth: dialback for every domain, or only for the listed ones. */
static int s2s_in_dialback_allowed(const struct worker *w, const char *domain)
{
	if (strcmp(w->cfg->s2s_auth, "dialback") == 0)
		return 1;
	return domain != NULL && domain[0] != '\0' &&
	       stream_domain_listed(w->cfg->s2s_dialback_domains, domain);
}

/* Our closing tag after the peer's (or to end an exchange without an
 * error); the connection closes once it is written. */
static void s2s_in_close(struct conn *c)
{
	static const char close_tag[] = "</stream:stream>";
	if (c->want_close || c->closed)
		return;
	conn_send(c, close_tag, sizeof(close_tag) - 1);
	c->want_close = 1;
	c->state = CONN_STATE_CLOSING;
	c->deadline_ms = time_now_ms() + S2S_IN_CLOSE_GRACE_MS;
}

static void s2s_in_unlink(struct s2s_in *s)
{
	if (s->prev != NULL)
		s->prev->next = s->next;
	else if (s2s_in_list == s)
		s2s_in_list = s->next;
	else
		return;
	if (s->next != NULL)
		s->next->prev = s->prev;
	s->next = s->prev = NULL;
	s2s_in_count--;
}

static int s2s_in_verify_cb(int ok, X509_STORE_CTX *ctx)
{
	(void)ok; (void)ctx;
	return 1;       /* judged after the handshake: dialback may follow */
}

/* Ask for the peer's certificate without making the handshake fail
 * when it has none or it does not validate. */
static void s2s_in_want_cert(struct conn *c)
{
	if (c->ssl != NULL)
		SSL_set_verify(c->ssl, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE,
			       s2s_in_verify_cb);
}

void s2s_in_accepted(struct conn *c)
{
	struct worker *w = c->w;
	struct s2s_in *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		if (c->direct_tls)
			conn_close(c);
		else
			stream_error(c, "resource-constraint", NULL);
		return;
	}
	s->c = c;
	c->s2s = (struct s2s_conn *)(void *)s;
	if (s2s_in_count >= w->cfg->s2s_max_incoming) {
		if (c->direct_tls) {
			log_info("c%u %s: refused: %u incoming s2s streams "
				 "(s2s.max_incoming)", c->id, c->peer,
				 s2s_in_count);
			conn_close(c);
		} else {
			stream_error(c, "resource-constraint",
				     "too many server-to-server streams");
		}
		return;
	}
	s->next = s2s_in_list;
	if (s2s_in_list != NULL)
		s2s_in_list->prev = s;
	s2s_in_list = s;
	s2s_in_count++;
	c->deadline_ms = time_now_ms() + (int64_t)w->cfg->s2s_auth_timeout;
	if (c->direct_tls)
		s2s_in_want_cert(c);
}

/* The chain of the peer's certificate against our store (system CAs and
 * s2s.ca_file). */
static int s2s_in_chain_ok(X509 *cert, STACK_OF(X509) *chain,
			   const char **error_r)
{
	X509_STORE_CTX *ctx;
	int ok;
	if (s2s_in_store == NULL) {
		*error_r = "no certificate store";
		return 0;
	}
	ctx = X509_STORE_CTX_new();
	if (ctx == NULL || X509_STORE_CTX_init(ctx, s2s_in_store, cert,
					       chain) != 1) {
		X509_STORE_CTX_free(ctx);
		*error_r = "out of memory";
		return 0;
	}
	/* No purpose from OpenSSL's table: "sslclient" (what a TLS server
	 * checks a client with) refuses an EKU of serverAuth alone, which
	 * is what public CAs issue to servers now (Let's Encrypt dropped
	 * clientAuth in 2025) and what every initiating XMPP server shows.
	 * The EKU is checked by certid_eku_ok instead: none, serverAuth,
	 * clientAuth or anyExtendedKeyUsage. */
	X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_ANY);
	ok = X509_verify_cert(ctx) == 1;
	if (!ok)
		*error_r = X509_verify_cert_error_string(
			X509_STORE_CTX_get_error(ctx));
	X509_STORE_CTX_free(ctx);
	if (ok && !certid_eku_ok(cert, 1, error_r))
		ok = 0;
	return ok;
}

void s2s_in_tls_done(struct conn *c, SSL *ssl)
{
	struct s2s_in *s = s2s_in_of(c);
	const char *error = NULL;
	if (s == NULL || ssl == NULL)
		return;
	X509_free(s->peer_cert);
	s->peer_cert = SSL_get1_peer_certificate(ssl);
	s->cert_valid = 0;
	if (s->peer_cert == NULL) {
		log_debug("c%u %s: s2s peer sent no certificate", c->id,
			  c->peer);
		return;
	}
	s->cert_valid = s2s_in_chain_ok(s->peer_cert,
					SSL_get_peer_cert_chain(ssl), &error);
	s->cert_why = s->cert_valid ? NULL : error;
	if (!s->cert_valid)
		log_info("c%u %s: s2s peer certificate not trusted: %s",
			 c->id, c->peer, error);
}

/* RFC 6125 for service xmpp-server (lib/certid.c): SRV-ID, DNS-ID (a
 * wildcard only as the whole left-most label), XmppAddr; CN only
 * without any of them. */
static int s2s_in_cert_names(X509 *cert, const char *domain)
{
	return certid_matches(cert, domain) == 1;
}

/* The peer's certificate validates and identifies domain. */
static int s2s_in_cert_ok(const struct s2s_in *s, const char *domain)
{
	return s->peer_cert != NULL && s->cert_valid && domain[0] != '\0' &&
	       s2s_in_cert_names(s->peer_cert, domain);
}

static void s2s_in_header(struct conn *c, struct s2s_in *s)
{
	unsigned char raw[12];
	struct buf out;
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2hex(s->id, sizeof(s->id), raw, sizeof(raw));
	buf_init(&out, 0);
	buf_appendf(&out, "<?xml version='1.0'?><stream:stream xmlns='"
		    NS_SERVER "' xmlns:stream='" NS_STREAMS "' xmlns:db='"
		    NS_DIALBACK "' id='%s' from='", s->id);
	xml_escape(&out, c->stream_to, strlen(c->stream_to), 1);
	if (s->from[0] != '\0') {
		buf_appendf(&out, "' to='");
		xml_escape(&out, s->from, strlen(s->from), 1);
	}
	buf_appendf(&out, "' version='1.0'>");
	conn_send(c, buf_head(&out), buf_used(&out));
	buf_free(&out);
	c->header_sent = 1;
}

static void s2s_in_features(struct conn *c, struct s2s_in *s)
{
	const struct config *cfg = c->w->cfg;
	struct buf out;
	buf_init(&out, 0);
	buf_appendf(&out, "<stream:features>");
	if (!conn_tls(c) && c->w->tls != NULL)
		buf_appendf(&out, "<starttls xmlns='" NS_TLS "'>%s</starttls>",
			    cfg->s2s_require_tls ? "<required/>" : "");
	if (!s->sasl_ok && (conn_tls(c) || !cfg->s2s_require_tls)) {
		if (s2s_in_cert_ok(s, s->from))
			buf_appendf(&out, "<mechanisms xmlns='" NS_SASL "'>"
				    "<mechanism>EXTERNAL</mechanism>"
				    "</mechanisms>");
		if (s2s_in_dialback_allowed(c->w, s->from) ||
		    cfg->s2s_dialback_domains[0] != '\0')
			buf_appendf(&out, "<dialback xmlns='"
				    NS_DIALBACK_FEATURE "'><errors/>"
				    "</dialback>");
	}
	/* XEP-0198 once authenticated (after SASL's restart): a peer
	 * enabling it before authentication would count from a stream
	 * that is about to restart (Prosody enables at any features) */
	if (s->sasl_ok && !s->sm_on)
		buf_appendf(&out, "<sm xmlns='" NS_SM "'/>");
	buf_appendf(&out, "</stream:features>");
	conn_send(c, buf_head(&out), buf_used(&out));
	buf_free(&out);
}

/* s2s.max_incoming_per_domain across workers: the stream's 'from' is
 * counted in the shared per-address table (shm/addr.h) under a key of
 * its own family, the first 8 bytes of a BLAKE2b hash of the lower-cased
 * domain (a remote domain cannot pick a name that shares another's
 * count), per (key, worker slot): the master's sweep of a dead worker's
 * slot drops its streams.  0 counted; -1 the stream was ended (over the
 * limit: <policy-violation/>; table full or lock failed:
 * <resource-constraint/>). */
static int s2s_in_count_domain(struct conn *c, struct s2s_in *s,
			       const char *domain)
{
	unsigned limit = c->w->cfg->s2s_max_incoming_per_domain, open = 0;
	unsigned char low[DIALBACK_DOMAIN_MAX + 1], h[16];
	size_t n = strlen(domain);
	const char *error = NULL;

	if (n >= sizeof(low))
		n = sizeof(low) - 1;
	for (size_t i = 0; i < n; i++)
		low[i] = (unsigned char)tolower((unsigned char)domain[i]);
	crypto_generichash(h, sizeof(h), low, n, NULL, 0);
	memset(&s->domain_key, 0, sizeof(s->domain_key));
	s->domain_key.family = SHM_ADDR_DOMAIN;
	memcpy(s->domain_key.key, h, sizeof(s->domain_key.key));
	int r = shm_addr_acquire(c->w->shm->addrs, &s->domain_key,
				 (uint16_t)c->w->slot, limit, &open, &error);
	if (r == 1) {
		s->domain_counted = 1;
		return 0;
	}
	if (r < 0) {
		log_warn("c%u %s: stream from %s not counted: %s", c->id,
			 c->peer, domain, error != NULL ? error : "?");
		stream_error(c, "resource-constraint", NULL);
		return -1;
	}
	log_info("c%u %s: %s has %u streams here "
		 "(s2s.max_incoming_per_domain)", c->id, c->peer, domain, open);
	stream_error(c, "policy-violation", "too many streams from your "
		     "domain");
	return -1;
}

/* The stream is authenticated for domain (SASL EXTERNAL: its 'from';
 * dialback: its first valid pair's remote domain): only now does it
 * count for s2s.max_incoming_per_domain, under that domain, once per
 * stream whatever it authenticates later.  Counting the header's 'from'
 * would let anyone take a domain's places with streams that never
 * authenticate; those are bounded by s2s.auth_timeout and
 * s2s.max_incoming (and the global connection limits) instead.
 * 0 counted (or counted before); -1 the stream was ended. */
static int s2s_in_count_auth(struct conn *c, struct s2s_in *s,
			     const char *domain)
{
	if (s->domain_once)
		return 0;
	s->domain_once = 1;
	return s2s_in_count_domain(c, s, domain);
}

/* The stream no longer counts for its domain (closing or gone). */
static void s2s_in_uncount(struct worker *w, struct s2s_in *s)
{
	if (!s->domain_counted)
		return;
	shm_addr_release(w->shm->addrs, &s->domain_key, (uint16_t)w->slot);
	s->domain_counted = 0;
}

static const char *s2s_in_attr(const char **atts, const char *name)
{
	for (; atts[0] != NULL; atts += 2)
		if (strcmp(atts[0], name) == 0)
			return atts[1];
	return NULL;
}

/* A domain JID, prepared into out; 0 or -1. */
static int s2s_in_domain(struct conn *c, const char *s, char *out,
			 size_t size)
{
	struct arena a;
	struct jid j;
	const char *error;
	int r = -1;
	if (s == NULL || strlen(s) >= size)
		return -1;
	arena_init(&a, 512);
	if (jid_parse(&a, s, &j, &error) == 0 && j.local == NULL &&
	    j.resource == NULL && strlen(j.domain) < size) {
		snprintf(out, size, "%s", j.domain);
		r = 0;
	}
	arena_free(&a);
	(void)c;
	return r;
}

void s2s_in_stream_open(struct conn *c, const char *name, const char **atts)
{
	struct s2s_in *s = s2s_in_of(c);
	const char *to = s2s_in_attr(atts, "to");
	const char *from = s2s_in_attr(atts, "from");
	const char *version = s2s_in_attr(atts, "version");
	size_t nslen = strlen(NS_STREAMS);
	char from_prep[DIALBACK_DOMAIN_MAX + 1];

	if (s == NULL) {
		stream_error(c, "internal-server-error", NULL);
		return;
	}
	if (to != NULL && strlen(to) < sizeof(c->stream_to) &&
	    s2s_in_serves(c->w, to))
		snprintf(c->stream_to, sizeof(c->stream_to), "%s", to);
	if (strncmp(name, NS_STREAMS, nslen) != 0 ||
	    name[nslen] != XML_NS_SEP) {
		stream_error(c, "invalid-namespace", "the stream element is "
			     "not in the " NS_STREAMS " namespace");
		return;
	}
	if (strcmp(name + nslen + 1, "stream") != 0) {
		stream_error(c, "bad-format", "the root element is not "
			     "<stream/>");
		return;
	}
	if (c->stream_ns != 2) {
		stream_error(c, "invalid-namespace", "the default namespace "
			     "is not " NS_SERVER);
		return;
	}
	if (to == NULL || !s2s_in_serves(c->w, to)) {
		stream_error(c, "host-unknown", to == NULL ?
			     "the stream has no 'to'" :
			     "this server does not serve that domain");
		return;
	}
	if (version == NULL || strtol(version, NULL, 10) != 1) {
		stream_error(c, "unsupported-version", "version 1.0 only");
		return;
	}
	from_prep[0] = '\0';
	if (from != NULL &&
	    s2s_in_domain(c, from, from_prep, sizeof(from_prep)) < 0) {
		stream_error(c, "invalid-from", "'from' is not a domain");
		return;
	}
	if (from_prep[0] != '\0' && s2s_in_serves(c->w, from_prep)) {
		/* no other server speaks for our users (a wildcard or a
		 * hoster's shared certificate may name our domain) */
		log_info("c%u %s: s2s stream from %s claims a domain served "
			 "here", c->id, c->peer, from_prep);
		stream_error(c, "invalid-from", "that domain is served here");
		return;
	}
	if (s->from[0] != '\0' && strcasecmp(s->from, from_prep) != 0) {
		stream_error(c, "invalid-from", "'from' changed after a "
			     "restart");
		return;
	}
	if (from_prep[0] != '\0' && s2s_in_blocked(c->w, from_prep)) {
		log_info("c%u %s: s2s stream from blocked domain %s", c->id,
			 c->peer, from_prep);
		stream_error(c, "policy-violation", "your domain is blocked "
			     "here");
		return;
	}
	/* not counted for s2s.max_incoming_per_domain here: the header's
	 * 'from' is a claim, not a proof (s2s_in_count_auth) */
	snprintf(s->from, sizeof(s->from), "%s", from_prep);
	c->state = CONN_STATE_OPEN;
	s2s_in_header(c, s);
	s2s_in_features(c, s);
}

int s2s_in_top_level_known(const struct conn *c, const char *name,
			   size_t nslen)
{
	const char *local = name + nslen + 1;
	(void)c;
#define NS_IS(ns) (nslen == strlen(ns) && memcmp(name, ns, nslen) == 0)
	if (NS_IS(NS_SERVER))
		return strcmp(local, "message") == 0 ||
		       strcmp(local, "presence") == 0 ||
		       strcmp(local, "iq") == 0;
	if (NS_IS(NS_DIALBACK))
		return strcmp(local, "result") == 0 ||
		       strcmp(local, "verify") == 0;
	if (NS_IS(NS_TLS))
		return strcmp(local, "starttls") == 0;
	if (NS_IS(NS_SASL))
		return strcmp(local, "auth") == 0 ||
		       strcmp(local, "abort") == 0;
	if (NS_IS(NS_STREAMS))
		return strcmp(local, "error") == 0;
	if (NS_IS(NS_SM))
		return strcmp(local, "enable") == 0 ||
		       strcmp(local, "r") == 0 || strcmp(local, "a") == 0;
#undef NS_IS
	return 0;
}

/* The stream is authorized for something: its deadline goes. */
static void s2s_in_authorized(struct conn *c)
{
	if (c->authenticated)
		return;
	c->authenticated = 1;
	c->deadline_ms = 0;
	conn_metrics_move(c, c->m_tls, 1);
}

/* ---- SASL EXTERNAL (XEP-0178) ---- */

static void s2s_in_sasl_failure(struct conn *c, const char *condition)
{
	char out[160];
	int n = snprintf(out, sizeof(out), "<failure xmlns='" NS_SASL "'>"
			 "<%s/></failure>", condition);
	conn_send(c, out, (size_t)n);
}

static void s2s_in_sasl(struct conn *c, struct s2s_in *s, struct xml_node *n)
{
	static const char success[] = "<success xmlns='" NS_SASL "'/>";
	const char *mech = xml_attr(n, "mechanism");
	char authzid[DIALBACK_DOMAIN_MAX + 1], prep[DIALBACK_DOMAIN_MAX + 1];
	size_t len = 0;

	if (strcmp(n->name, "abort") == 0) {
		s2s_in_sasl_failure(c, "aborted");
		return;
	}
	if (s->sasl_ok) {
		stream_error(c, "policy-violation", "already authenticated");
		return;
	}
	if (mech == NULL || strcmp(mech, "EXTERNAL") != 0) {
		s2s_in_sasl_failure(c, "invalid-mechanism");
		return;
	}
	char *text = xml_text(c->arena, n);
	if (text == NULL) {
		stream_error(c, "resource-constraint", NULL);
		return;
	}
	if (strcmp(text, "=") != 0 && text[0] != '\0') {
		if (base64_decode(text, strlen(text), authzid,
				  sizeof(authzid) - 1, &len) < 0) {
			s2s_in_sasl_failure(c, "incorrect-encoding");
			return;
		}
	}
	authzid[len] = '\0';
	if (!s2s_in_cert_ok(s, s->from)) {
		log_info("c%u %s: SASL EXTERNAL refused: %s", c->id, c->peer,
			 s->peer_cert == NULL ? "no certificate" :
			 !s->cert_valid ? (s->cert_why != NULL ?
					   s->cert_why :
					   "certificate not trusted") :
			 s->from[0] == '\0' ? "no 'from' on the stream" :
			 "the certificate does not name the stream's 'from'");
		s2s_in_sasl_failure(c, "not-authorized");
		return;
	}
	if (len > 0 && (memchr(authzid, '\0', len) != NULL ||
			s2s_in_domain(c, authzid, prep, sizeof(prep)) < 0 ||
			strcasecmp(prep, s->from) != 0)) {
		log_info("c%u %s: SASL EXTERNAL authzid is not %s", c->id,
			 c->peer, s->from);
		s2s_in_sasl_failure(c, "invalid-authzid");
		return;
	}
	if (s2s_in_count_auth(c, s, s->from) < 0)
		return;
	s->sasl_ok = 1;
	snprintf(s->sasl_to, sizeof(s->sasl_to), "%s", c->stream_to);
	log_info("c%u %s: s2s stream from %s to %s authenticated (SASL "
		 "EXTERNAL)", c->id, c->peer, s->from, s->sasl_to);
	s2s_in_authorized(c);
	conn_send(c, success, sizeof(success) - 1);
	stream_restart(c);
}

/* ---- dialback (XEP-0220) ---- */

static void s2s_in_db_answer(struct conn *c, const char *elem,
			     const char *from, const char *to, const char *id,
			     const char *type, const char *error_type,
			     const char *condition)
{
	struct buf out;
	buf_init(&out, 0);
	buf_appendf(&out, "<db:%s from='", elem);
	xml_escape(&out, from, strlen(from), 1);
	buf_appendf(&out, "' to='");
	xml_escape(&out, to, strlen(to), 1);
	if (id != NULL) {
		buf_appendf(&out, "' id='");
		xml_escape(&out, id, strlen(id), 1);
	}
	buf_appendf(&out, "' type='%s'", type);
	if (condition != NULL)
		buf_appendf(&out, "><error type='%s'><%s xmlns='"
			    NS_STANZA_ERR "'/></error></db:%s>", error_type,
			    condition, elem);
	else
		buf_appendf(&out, "/>");
	conn_send(c, buf_head(&out), buf_used(&out));
	buf_free(&out);
}

static struct s2s_pair *s2s_in_pair(struct s2s_in *s, const char *local,
				    const char *remote)
{
	for (unsigned i = 0; i < s->npairs; i++)
		if (strcasecmp(s->pairs[i].local, local) == 0 &&
		    strcasecmp(s->pairs[i].remote, remote) == 0)
			return &s->pairs[i];
	return NULL;
}

static void s2s_in_pair_drop(struct s2s_in *s, struct s2s_pair *p)
{
	unsigned i = (unsigned)(p - s->pairs);
	s->pairs[i] = s->pairs[--s->npairs];
}

/* <db:result from=O to=R>KEY</db:result>: ask O's authoritative server
 * through the owner of our link R -> O. */
static void s2s_in_db_result(struct conn *c, struct s2s_in *s,
			     const struct dialback_elem *d)
{
	struct worker *w = c->w;
	struct ipc_s2s_verify v;
	const char *error;
	struct s2s_pair *p;

	if (d->type != DIALBACK_REQUEST) {
		stream_error(c, "unsupported-stanza-type", "a <db:result/> "
			     "answer on a stream we did not open");
		return;
	}
	if (!s2s_in_serves(w, d->to)) {
		log_info("c%u %s: dialback for %s, not ours", c->id, c->peer,
			 d->to);
		s2s_in_db_answer(c, "result", d->to, d->from, NULL, "error",
				 "cancel", "item-not-found");
		return;
	}
	if (s2s_in_serves(w, d->from) || s2s_in_blocked(w, d->from) ||
	    !s2s_in_dialback_allowed(w, d->from)) {
		log_info("c%u %s: dialback from %s refused (%s)", c->id,
			 c->peer, d->from, s2s_in_serves(w, d->from) ?
			 "claims a domain served here" :
			 s2s_in_blocked(w, d->from) ?
			 "s2s.blocked_domains" : "s2s.auth is pkix");
		s2s_in_db_answer(c, "result", d->to, d->from, NULL, "error",
				 "cancel", "forbidden");
		return;
	}
	p = s2s_in_pair(s, d->to, d->from);
	if (p != NULL && p->state == S2S_PAIR_VALID) {
		s2s_in_db_answer(c, "result", d->to, d->from, NULL, "valid",
				 NULL, NULL);
		return;
	}
	if (p != NULL) {
		log_info("c%u %s: second <db:result/> for %s -> %s while the "
			 "first is checked", c->id, c->peer, d->from, d->to);
		stream_error(c, "conflict", "this domain pair is being "
			     "verified already");
		return;
	}
	if (s->npairs >= w->cfg->s2s_max_domain_pairs) {
		s2s_in_db_answer(c, "result", d->to, d->from, NULL, "error",
				 "wait", "resource-constraint");
		return;
	}
	/* each request makes us ask another server (a link, a
	 * <db:verify/>): invalid answers free their pair, so without
	 * this a stream could ask for ever */
	if (s->db_requests >= w->cfg->s2s_max_dialback_requests) {
		log_info("c%u %s: %u dialback requests on one stream "
			 "(s2s.max_dialback_requests)", c->id, c->peer,
			 s->db_requests);
		stream_error(c, "policy-violation", "too many dialback "
			     "requests on this stream");
		return;
	}
	if (s->npairs == s->pairs_cap) {
		unsigned cap = s->pairs_cap ? s->pairs_cap * 2 : 2;
		struct s2s_pair *np = realloc(s->pairs, cap * sizeof(*np));
		if (np == NULL) {
			stream_error(c, "resource-constraint", NULL);
			return;
		}
		s->pairs = np;
		s->pairs_cap = cap;
	}
	memset(&v, 0, sizeof(v));
	v.in_conn_id = c->id;
	v.in_gen = c->gen;
	v.in_slot = (uint16_t)w->slot;
	snprintf(v.local, sizeof(v.local), "%s", d->to);
	snprintf(v.remote, sizeof(v.remote), "%s", d->from);
	snprintf(v.stream_id, sizeof(v.stream_id), "%s", s->id);
	snprintf(v.key, sizeof(v.key), "%s", d->key);
	unsigned owner = s2s_owner_slot(w, d->from);
	if (queue_send(w->q, owner, IPC_FRAME_S2S_VERIFY, 0, 0, &v, sizeof(v),
		       &error) < 0) {
		log_warn("c%u %s: dialback for %s -> %s: worker %u not "
			 "reached: %s", c->id, c->peer, d->from, d->to, owner,
			 error);
		s2s_in_db_answer(c, "result", d->to, d->from, NULL, "error",
				 "wait", "internal-server-error");
		return;
	}
	s->db_requests++;
	p = &s->pairs[s->npairs++];
	memset(p, 0, sizeof(*p));
	snprintf(p->local, sizeof(p->local), "%s", d->to);
	snprintf(p->remote, sizeof(p->remote), "%s", d->from);
	p->state = S2S_PAIR_PENDING;
	p->deadline_ms = time_now_ms() + (int64_t)w->cfg->s2s_verify_timeout;
	log_debug("c%u %s: dialback %s -> %s: verification asked of worker "
		  "%u", c->id, c->peer, d->from, d->to, owner);
}

/* <db:verify from=R to=O id=ID>KEY</db:verify>: we are O's
 * authoritative server. */
static void s2s_in_db_verify(struct conn *c, const struct dialback_elem *d)
{
	if (d->type != DIALBACK_REQUEST) {
		stream_error(c, "unsupported-stanza-type", "a <db:verify/> "
			     "answer on a stream we did not open");
		return;
	}
	if (!s2s_in_serves(c->w, d->to)) {
		s2s_in_db_answer(c, "verify", d->to, d->from, d->id, "error",
				 "cancel", "item-not-found");
		return;
	}
	int ok = dialback_key_ok(d->from, d->to, d->id, d->key);
	log_info("c%u %s: dialback key for %s -> %s (stream %s) is %s",
		 c->id, c->peer, d->to, d->from, d->id,
		 ok ? "valid" : "invalid");
	s2s_in_db_answer(c, "verify", d->to, d->from, d->id,
			 ok ? "valid" : "invalid", NULL, NULL);
}

static void s2s_in_dialback(struct conn *c, struct s2s_in *s,
			    struct xml_node *n)
{
	struct dialback_elem d;
	const char *error;
	if (dialback_parse(c->arena, n, &d, &error) < 0) {
		log_info("c%u %s: bad dialback element: %s", c->id, c->peer,
			 error);
		/* XEP-0220 section 2.1.1: a 'from' that is no domain */
		stream_error(c, strstr(error, "'from'") != NULL ?
			     "invalid-from" : "bad-format", error);
		return;
	}
	if (d.kind == DIALBACK_RESULT)
		s2s_in_db_result(c, s, &d);
	else
		s2s_in_db_verify(c, &d);
}

int s2s_in_frame(struct worker *w, const struct ipc_frame_header *hdr,
		 const void *payload, size_t len)
{
	struct ipc_s2s_verified v;
	struct conn *c;
	struct s2s_in *s;
	struct s2s_pair *p;

	if (hdr->type != IPC_FRAME_S2S_VERIFIED)
		return 0;
	if (len != sizeof(v)) {
		log_error("S2S_VERIFIED frame of %zu bytes", len);
		return 1;
	}
	memcpy(&v, payload, sizeof(v));
	v.local[sizeof(v.local) - 1] = '\0';
	v.remote[sizeof(v.remote) - 1] = '\0';
	v.condition[sizeof(v.condition) - 1] = '\0';
	c = conn_lookup(w, v.in_conn_id, v.in_gen);
	if (c == NULL || c->kind != CONN_S2S_IN || c->want_close ||
	    (s = s2s_in_of(c)) == NULL ||
	    (p = s2s_in_pair(s, v.local, v.remote)) == NULL ||
	    p->state != S2S_PAIR_PENDING) {
		log_debug("dialback answer for %s -> %s: the stream is gone",
			  v.remote, v.local);
		return 1;
	}
	if (v.result == IPC_S2S_VALID) {
		/* the stream's first authentication counts it for
		 * s2s.max_incoming_per_domain, for this pair's domain;
		 * past the limit the stream ends with <policy-violation/>
		 * (the pair is not answered: the stream is gone) */
		if (s2s_in_count_auth(c, s, v.remote) < 0) {
			conn_want_flush(c);
			return 1;
		}
		p->state = S2S_PAIR_VALID;
		log_info("c%u %s: s2s stream authorized for %s -> %s "
			 "(dialback)", c->id, c->peer, v.remote, v.local);
		s2s_in_authorized(c);
		s2s_in_db_answer(c, "result", v.local, v.remote, NULL, "valid",
				 NULL, NULL);
	} else if (v.result == IPC_S2S_INVALID) {
		log_info("c%u %s: dialback key for %s -> %s is invalid",
			 c->id, c->peer, v.remote, v.local);
		s2s_in_db_answer(c, "result", v.local, v.remote, NULL,
				 "invalid", NULL, NULL);
		s2s_in_pair_drop(s, p);
	} else {
		const char *cond = v.condition[0] != '\0' ? v.condition :
				   "remote-connection-failed";
		log_info("c%u %s: dialback for %s -> %s: %s", c->id, c->peer,
			 v.remote, v.local, cond);
		s2s_in_db_answer(c, "result", v.local, v.remote, NULL, "error",
				 strcmp(cond, "remote-server-timeout") == 0 ||
				 strcmp(cond, "resource-constraint") == 0 ?
				 "wait" : "cancel", cond);
		s2s_in_pair_drop(s, p);
	}
	conn_want_flush(c);
	return 1;
}

/* ---- stanzas ---- */

/* s2s.max_stanza_rate: a bucket of as many tokens, refilled at that
 * rate.  Every stanza read is handled (one token each, the bucket may
 * go into debt by the stanzas of the chunk being parsed); once it is
 * empty the socket is not read until it holds a token again, so the
 * peer is slowed down by TCP, never cut off. */
static void s2s_in_pace(struct conn *c, struct s2s_in *s)
{
	unsigned rate = c->w->cfg->s2s_max_stanza_rate;
	int64_t now = c->w->now_ms;
	if (rate == 0)
		return;
	if (s->tokens_at == 0) {
		s->tokens = rate;
	} else if (now > s->tokens_at) {
		s->tokens += (double)(now - s->tokens_at) * rate / 1000.0;
		if (s->tokens > rate)
			s->tokens = rate;
	}
	s->tokens_at = now;
	s->tokens -= 1.0;
	if (s->tokens >= 0.0 || c->read_paused_ms != 0)
		return;
	int64_t wait = (int64_t)((1.0 - s->tokens) * 1000.0 / rate) + 1;
	if (s->paced++ == 0)
		log_info("c%u %s: over s2s.max_stanza_rate (%u/s): reading "
			 "paced", c->id, c->peer, rate);
	conn_delay(c, now + wait, CONN_DELAY_READ);
}

/* The stream may carry stanzas from domain `from` to domain `to`. */
static int s2s_in_may(const struct s2s_in *s, const char *to,
		      const char *from)
{
	/* SASL authenticates the stream's 'from' toward its 'to' only
	 * (RFC 6120 13.7.1, XEP-0178): our other hosts need a pair of
	 * their own, by dialback on the same stream (XEP-0220 2.4) */
	if (s->sasl_ok && strcasecmp(from, s->from) == 0 &&
	    strcasecmp(to, s->sasl_to) == 0)
		return 1;
	for (unsigned i = 0; i < s->npairs; i++)
		if (s->pairs[i].state == S2S_PAIR_VALID &&
		    strcasecmp(s->pairs[i].remote, from) == 0 &&
		    strcasecmp(s->pairs[i].local, to) == 0)
			return 1;
	return 0;
}

static int s2s_in_from_known(const struct s2s_in *s, const char *from)
{
	if (s->sasl_ok && strcasecmp(from, s->from) == 0)
		return 1;
	for (unsigned i = 0; i < s->npairs; i++)
		if (s->pairs[i].state == S2S_PAIR_VALID &&
		    strcasecmp(s->pairs[i].remote, from) == 0)
			return 1;
	return 0;
}

/* The core routes stanzas in jabber:client (the namespace they are
 * written in on client streams): a jabber:server stanza and its
 * children of that namespace (<body/>, <subject/>, ...) move to it. */
static void s2s_in_client_ns(struct xml_node *n)
{
	struct xml_node *cur = n;
	while (cur != NULL) {
		if (cur->name != NULL && strcmp(cur->ns, NS_SERVER) == 0)
			cur->ns = NS_CLIENT;
		if (cur->children != NULL) {
			cur = cur->children;
			continue;
		}
		while (cur != n && cur->next == NULL)
			cur = cur->parent;
		if (cur == n)
			break;
		cur = cur->next;
	}
}

/* A stanza error back to the stanza's sender on the other server: it
 * goes out like any stanza for that domain (route_stanza -> s2s), never
 * on this incoming stream (RFC 6120 section 8.3; nothing answers an
 * error or an IQ result). */
static void s2s_in_bounce(struct conn *c, const struct xml_node *st,
			  const char *type, const char *condition)
{
	struct buf b;
	const char *error;
	if (!stanza_may_bounce(st))
		return;
	buf_init(&b, 0);
	if (stanza_error_xml_app(&b, st, NULL, NULL, type, condition, NULL,
				 NULL) == 0) {
		struct xml_node *e = stanza_parse(c->arena, buf_head(&b),
						  buf_used(&b), &error);
		if (e != NULL)
			route_stanza(c->w, c->arena, e);
	}
	buf_free(&b);
}

static void s2s_in_stanza(struct conn *c, struct s2s_in *s,
			  struct xml_node *st)
{
	const char *from = xml_attr(st, "from"), *to = xml_attr(st, "to");
	const char *error, *full;
	struct jid jf, jt;

	if (!c->authenticated) {
		stream_error(c, "not-authorized", "the stream is not "
			     "authenticated");
		return;
	}
	if (s->sm_on)
		s->sm_h++;      /* handled: routed, bounced, or ends here */
	if (from == NULL || to == NULL || from[0] == '\0' || to[0] == '\0' ||
	    jid_parse(c->arena, from, &jf, &error) < 0 ||
	    jid_parse(c->arena, to, &jt, &error) < 0) {
		stream_error(c, "improper-addressing", "a stanza between "
			     "servers needs a valid 'from' and 'to'");
		return;
	}
	if (!s2s_in_from_known(s, jf.domain)) {
		log_info("c%u %s: stanza from %s: the stream is not "
			 "authenticated for that domain", c->id, c->peer,
			 jf.domain);
		stream_error(c, "invalid-from", NULL);
		return;
	}
	int ours = stream_hosted(c->w, jt.domain);
	const struct ext *svc = ours ? NULL : ext_service(c->w, jt.domain);
	int comp = !ours && svc == NULL && component_serves(jt.domain);
	if (!ours && !comp && svc == NULL) {
		/* before any bounce: its 'from' would be this 'to' */
		log_info("c%u %s: stanza for %s, which is not served here",
			 c->id, c->peer, jt.domain);
		stream_error(c, "host-unknown", "this server does not serve "
			     "the stanza's 'to'");
		return;
	}
	/* A 'to' of ours that the stream is not authorized for with this
	 * 'from' (e.g. SASL for another of our hosts, RFC 6120 4.9.3):
	 * not <host-unknown/> (that is for a header 'to' we do not serve,
	 * 4.9.3.6; this host is served), not <improper-addressing/> (the
	 * addresses are present and valid, 4.9.3.7), but <invalid-from/>
	 * (4.9.3.9): the 'from' is not a domain validated "as negotiated
	 * between two servers using SASL or Server Dialback" for it, the
	 * same answer as a forged 'from' (XEP-0220 2.4: a pair not
	 * authorized). */
	if (!s2s_in_may(s, jt.domain, jf.domain)) {
		log_info("c%u %s: stanza %s -> %s: that pair is not "
			 "authorized on this stream", c->id, c->peer,
			 jf.domain, jt.domain);
		stream_error(c, "invalid-from", "the stream is not "
			     "authorized for this pair of domains");
		return;
	}
	/* prepared forms, so that later checks compare like with like */
	if ((full = jid_full(c->arena, &jf)) == NULL ||
	    xml_set_attr(c->arena, st, "from", full) < 0 ||
	    (full = jid_full(c->arena, &jt)) == NULL ||
	    xml_set_attr(c->arena, st, "to", full) < 0) {
		stream_error(c, "resource-constraint", NULL);
		return;
	}
	s2s_in_client_ns(st);
	if (!stanza_addressable_valid(st)) {
		log_info("c%u %s: malformed <%s/> from %s", c->id, c->peer,
			 st->name, jf.domain);
		s2s_in_bounce(c, st, "modify", "bad-request");
		return;
	}
	if (ours && strcmp(st->name, "presence") == 0) {
		presence_from_remote(c->w, c->arena, st);  /* RFC 6121 */
		return;
	}
	if (ours) {
		route_stanza(c->w, c->arena, st);
		return;
	}
	/* a service of ours (XEP-0045 rooms) */
	if (svc != NULL) {
		svc->service_stanza(c->w, c->arena, st, &jt);
		return;
	}
	/* a component's domain (XEP-0114): in to the component, or
	 * service-unavailable back when it is not connected */
	if (comp && component_route(c->w, st, jt.domain))
		return;
	log_info("c%u %s: stanza for %s, which is not served here", c->id,
		 c->peer, jt.domain);
	stream_error(c, "host-unknown", "this server does not serve the "
		     "stanza's 'to'");
}

/* XEP-0198 on a server-to-server stream, acknowledgements only: no
 * resumption (<enabled/> without id), no stanzas of ours to count on an
 * incoming stream (we never send <r/> here; an <a/> is ignored). */
static void s2s_in_sm(struct conn *c, struct s2s_in *s,
		      const struct xml_node *n)
{
	char ack[64];
	if (strcmp(n->name, "enable") == 0) {
		static const char failed[] = "<failed xmlns='" NS_SM "'>"
			"<unexpected-request xmlns='" NS_STANZA_ERR "'/></failed>";
		static const char enabled[] = "<enabled xmlns='" NS_SM "'/>";
		if (!s->sasl_ok || s->sm_on) {
			log_info("c%u %s: <enable/> %s: failed", c->id,
				 c->peer, s->sm_on ? "twice" :
				 "before authentication");
			conn_send(c, failed, sizeof(failed) - 1);
			return;
		}
		s->sm_on = 1;
		s->sm_h = 0;
		conn_send(c, enabled, sizeof(enabled) - 1);
		log_debug("c%u %s: stream management enabled", c->id,
			  c->peer);
	} else if (strcmp(n->name, "r") == 0 && s->sm_on) {
		int len = snprintf(ack, sizeof(ack), "<a xmlns='" NS_SM
				   "' h='%u'/>", s->sm_h);
		conn_send(c, ack, (size_t)len);
	}
}

void s2s_in_dispatch(struct conn *c, struct xml_node *n)
{
	struct s2s_in *s = s2s_in_of(c);
	const struct config *cfg = c->w->cfg;
	if (s == NULL)
		return;
	if (xml_is(n, NS_TLS, "starttls")) {
		if (conn_tls(c) || c->w->tls == NULL) {
			static const char failure[] =
				"<failure xmlns='" NS_TLS "'/></stream:stream>";
			conn_send(c, failure, sizeof(failure) - 1);
			c->want_close = 1;
			c->state = CONN_STATE_CLOSING;
			c->deadline_ms = time_now_ms() + S2S_IN_CLOSE_GRACE_MS;
			return;
		}
		stream_starttls(c);
		s2s_in_want_cert(c);
		return;
	}
	if (xml_is(n, NS_STREAMS, "error")) {
		const struct xml_node *e = xml_first_element(n);
		log_info("c%u %s: the server sent a stream error <%s/>", c->id,
			 c->peer, e != NULL ? e->name : "?");
		s2s_in_close(c);
		return;
	}
	/* every element costs a token (dialback answers, <a/> for <r/>,
	 * SASL failures are work and output too): paced alike */
	s2s_in_pace(c, s);
	if (!conn_tls(c) && cfg->s2s_require_tls) {
		log_info("c%u %s: <%s/> before STARTTLS", c->id, c->peer,
			 n->name);
		stream_error(c, "policy-violation", "STARTTLS is required "
			     "first");
		return;
	}
	if (strcmp(n->ns, NS_SASL) == 0)
		s2s_in_sasl(c, s, n);
	else if (strcmp(n->ns, NS_SM) == 0)
		s2s_in_sm(c, s, n);
	else if (strcmp(n->ns, NS_DIALBACK) == 0)
		s2s_in_dialback(c, s, n);
	else if (strcmp(n->ns, NS_SERVER) == 0)
		s2s_in_stanza(c, s, n);
	else
		stream_error(c, "unsupported-stanza-type", NULL);
}

void s2s_in_gone(struct conn *c)
{
	struct s2s_in *s = s2s_in_of(c);
	if (s == NULL)
		return;
	s2s_in_unlink(s);
	s2s_in_uncount(c->w, s);
}

void s2s_in_free(struct conn *c)
{
	struct s2s_in *s = s2s_in_of(c);
	if (s == NULL)
		return;
	s2s_in_unlink(s);
	s2s_in_uncount(c->w, s);
	X509_free(s->peer_cert);
	free(s->pairs);
	free(s);
	c->s2s = NULL;
}

int s2s_in_init(struct worker *w)
{
	const char *ca = w->cfg->s2s_ca_file;
	if (s2s_in_store != NULL)
		return 0;
	s2s_in_store = X509_STORE_new();
	if (s2s_in_store == NULL)
		return -1;
	if (X509_STORE_set_default_paths(s2s_in_store) != 1)
		log_warn("s2s: the system's certificate store is not usable");
	if (ca[0] != '\0' && X509_STORE_load_file(s2s_in_store, ca) != 1)
		log_error("s2s: s2s.ca_file %s not loaded: other servers' "
			  "certificates are checked against the system's "
			  "store only", ca);
	return 0;
}

/* Once a second: dialback answers that never came, silent streams. */
void s2s_in_tick(struct worker *w, int64_t now_ms)
{
	if (now_ms < s2s_in_next_tick || s2s_in_list == NULL)
		return;
	s2s_in_next_tick = now_ms + S2S_IN_TICK_MS;
	for (struct s2s_in *s = s2s_in_list, *next; s != NULL; s = next) {
		struct conn *c = s->c;
		next = s->next;
		if (c->want_close || c->closed) {
			/* a closing stream lets its domain reconnect */
			s2s_in_uncount(w, s);
			continue;
		}
		for (unsigned i = 0; i < s->npairs;) {
			struct s2s_pair *p = &s->pairs[i];
			if (p->state != S2S_PAIR_PENDING ||
			    now_ms < p->deadline_ms) {
				i++;
				continue;
			}
			log_info("c%u %s: dialback for %s -> %s: no answer in "
				 "time", c->id, c->peer, p->remote, p->local);
			s2s_in_db_answer(c, "result", p->local, p->remote,
					 NULL, "error", "wait",
					 "remote-server-timeout");
			conn_want_flush(c);
			s2s_in_pair_drop(s, p);
		}
		if (c->last_read_ms != 0 &&
		    now_ms - c->last_read_ms >
		    (int64_t)w->cfg->s2s_in_idle_timeout) {
			log_info("c%u %s: s2s stream idle, closed", c->id,
				 c->peer);
			s2s_in_close(c);
			conn_want_flush(c);
		}
	}
}

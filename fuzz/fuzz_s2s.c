/*
 * fuzz_s2s.c - streams other servers open to us (worker/s2s_in.c,
 * reached through the real worker/s2s.c dispatch) and XEP-0114
 * component streams (worker/component.c), fed through worker/stream.c
 * as a worker's socket would feed them, with the layers around them
 * stubbed (stubs.c, and below: the queue to the worker owning an
 * outgoing link, the outgoing side of s2s).  The worker serves
 * localhost; component.secrets_file lists gw.localhost (with
 * subdomains) and conf.localhost.  s2s.require_tls is off (there is no
 * TLS here) and s2s.auth is dialback, so the fuzzer reaches dialback
 * and stanzas.  A <db:result/> asks the owner of our link for a
 * verification (IPC_FRAME_S2S_VERIFY, captured by queue_send below);
 * after each chunk of input the harness answers every request it
 * captured with IPC_FRAME_S2S_VERIFIED through s2s_frame(), as the
 * owner worker would.
 *
 * Properties, beyond ASan and UBSan:
 *  - everything written back to the peer is well-formed XML: one
 *    document (our header, then elements), complete once the stream is
 *    closing;
 *  - a stream error is one of RFC 6120 section 4.9.3's conditions,
 *    alone (plus <text/> and elements of other namespaces), and nothing
 *    follows it but the end of the stream; a SASL <failure/> names one of
 *    section 6.5's conditions; a dialback answer has type valid,
 *    invalid or error;
 *  - a verification request names one of our domains as R, a domain
 *    not ours as O, the stream's own id and the stream's connection;
 *  - a stanza handed to routing (route_stanza, presence_from_remote) is
 *    in jabber:client, survives serialize/re-parse, and:
 *    on an s2s stream, goes from a domain the harness answered "valid"
 *    for with that 'to' (one of ours or a component's), or is an error
 *    bounced back the other way; on a component stream, comes from
 *    the component's domain (or a subdomain when the secrets file
 *    allows), or is an error bounced back to it;
 *  - mode 3's handshake (the right digest) is accepted, and mode 1's
 *    dialback (answered valid) authorizes the stream: so a component
 *    registration or a per-domain count that outlived its stream in an
 *    earlier run shows up as a refusal.
 *
 * Input: first byte, then the peer's bytes.
 *   bits 0-1 of the first byte: 0 s2s stream before authentication;
 *     1 s2s stream authorized by dialback for remote.example ->
 *     localhost; 2 component stream before its handshake; 3 component
 *     gw.localhost after a good handshake;
 *   bits 2-3: how the harness answers verification requests: valid,
 *     invalid, error (remote-server-timeout), or never;
 *   bits 4-7: 0 the bytes in one read, else reads of that many bytes
 *     with the parser parked between them when idle.
 * FUZZ_S2S_SHOW=1 prints what the server wrote back, run by run, and
 * each stanza routed.
 * In modes 0 and 2 the harness sends a stream header first unless the
 * bytes start with "<?xml" or "<stream".
 */
#include "fuzz.h"
#include "stubs.h"
#include "xmlcheck.h"
#include "../worker/worker.h"
#include "../worker/s2s.h"
#include "../worker/s2s_int.h"
#include "../worker/component.h"
#include "../worker/dialback.h"
#include "config.h"
#include "jid.h"
#include "session.h"
#include "queue.h"
#include "shm.h"
#include "util.h"

#include <expat.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define OURS "localhost"
#define REMOTE "remote.example"
#define GW "gw.localhost"
#define GW_SECRET "s3cret"

static struct worker fuzz_worker;
static struct ipc_worker_stats fuzz_stats;
static struct shm_region fuzz_shm;
static int fuzz_component;      /* this run's stream is a component's */

static const char s2s_header[] =
	"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
	"xmlns:stream='http://etherx.jabber.org/streams' "
	"xmlns:db='jabber:server:dialback' to='" OURS "' from='" REMOTE
	"' version='1.0'>";
static const char s2s_db_result[] =
	"<db:result from='" REMOTE "' to='" OURS "'>0123456789abcdef"
	"</db:result>";
static const char comp_header[] =
	"<?xml version='1.0'?><stream:stream "
	"xmlns='jabber:component:accept' "
	"xmlns:stream='http://etherx.jabber.org/streams' to='" GW "'>";

/* ---- the owner worker's side of dialback ---- */

#define FUZZ_MAX_VERIFY 16
static struct ipc_s2s_verify fuzz_verify[FUZZ_MAX_VERIFY];
static unsigned fuzz_nverify;
/* pairs answered valid: (local, remote) */
static struct { char local[IPC_S2S_DOMAIN_MAX + 1];
		char remote[IPC_S2S_DOMAIN_MAX + 1]; } fuzz_valid[64];
static unsigned fuzz_nvalid;
static char fuzz_stream_id[64];

/* Only IPC_FRAME_S2S_VERIFY is sent by the code under test with one
 * worker (component_route sends to other slots only). */
int queue_send(struct queue *q, unsigned dst_slot, uint8_t type,
	       uint32_t conn_id, uint32_t gen, const void *payload,
	       size_t len, const char **error_r)
{
	(void)q; (void)conn_id; (void)gen;
	FUZZ_CHECK(type == IPC_FRAME_S2S_VERIFY && dst_slot == 0 &&
		   len == sizeof(struct ipc_s2s_verify),
		   "unexpected frame type %u to %u (%zu bytes)", type,
		   dst_slot, len);
	if (fuzz_nverify == FUZZ_MAX_VERIFY) {
		*error_r = QUEUE_ERR_FULL;
		return -1;
	}
	memcpy(&fuzz_verify[fuzz_nverify++], payload, len);
	return 0;
}

/* route.c's, for component_route: one node, so through the queue_send
 * above (not in stubs.c, which would pull the real queue in). */
int worker_send_session(struct worker *w, const struct session_info *s,
			uint8_t type, const void *data, size_t len,
			const char **error_r)
{
	FUZZ_CHECK(s->node == 0, "a session of another node");
	return queue_send(w->q, s->slot, type, s->conn_id, s->gen, data,
			  len, error_r);
}

/* route.c's, for component_route (not in stubs.c: the tls13 harness
 * links no xml.c); our own stanza-ids are not taken off here. */
int route_serialize_out(struct worker *w, struct buf *out,
			const struct xml_node *st)
{
	(void)w;
	return xml_serialize(out, st, NS_CLIENT);
}

static int fuzz_serves(const char *domain)
{
	return strcasecmp(domain, OURS) == 0 || component_serves(domain);
}

/* Answer what was asked, as s2s_out.c's owner would (bits 2-3). */
static void fuzz_read_id(const struct conn *c, char *out, size_t size);

static void fuzz_answer(struct conn *c, unsigned how)
{
	if (fuzz_stream_id[0] == '\0')     /* our header is out by now */
		fuzz_read_id(c, fuzz_stream_id, sizeof(fuzz_stream_id));
	for (unsigned i = 0; i < fuzz_nverify; i++) {
		const struct ipc_s2s_verify *v = &fuzz_verify[i];
		struct ipc_s2s_verified a;
		struct ipc_frame_header h;
		FUZZ_CHECK(v->in_conn_id == c->id && v->in_gen == c->gen &&
			   v->in_slot == 0, "verification for another stream");
		FUZZ_CHECK(memchr(v->local, '\0', sizeof(v->local)) != NULL &&
			   memchr(v->remote, '\0', sizeof(v->remote)) != NULL &&
			   memchr(v->key, '\0', sizeof(v->key)) != NULL &&
			   memchr(v->stream_id, '\0',
				  sizeof(v->stream_id)) != NULL,
			   "unterminated field in S2S_VERIFY");
		FUZZ_CHECK(fuzz_serves(v->local), "verification for %s, not "
			   "ours", v->local);
		FUZZ_CHECK(!fuzz_serves(v->remote), "verification of %s, "
			   "which is ours", v->remote);
		FUZZ_CHECK(strcmp(v->stream_id, fuzz_stream_id) == 0,
			   "verification names stream id '%s', ours is '%s'",
			   v->stream_id, fuzz_stream_id);
		if (how == 3)
			continue;       /* never answered: left pending */
		memset(&a, 0, sizeof(a));
		a.in_conn_id = v->in_conn_id;
		a.in_gen = v->in_gen;
		a.result = how == 0 ? IPC_S2S_VALID :
			   how == 1 ? IPC_S2S_INVALID : IPC_S2S_ERROR;
		memcpy(a.local, v->local, sizeof(a.local));
		memcpy(a.remote, v->remote, sizeof(a.remote));
		if (how == 2)
			snprintf(a.condition, sizeof(a.condition),
				 "remote-server-timeout");
		if (how == 0 && fuzz_nvalid < 64) {
			memcpy(fuzz_valid[fuzz_nvalid].local, v->local,
			       sizeof(v->local));
			memcpy(fuzz_valid[fuzz_nvalid++].remote, v->remote,
			       sizeof(v->remote));
		}
		memset(&h, 0, sizeof(h));
		h.type = IPC_FRAME_S2S_VERIFIED;
		FUZZ_CHECK(s2s_frame(c->w, &h, &a, sizeof(a)) == 1,
			   "S2S_VERIFIED not taken");
	}
	fuzz_nverify = 0;
}

static int fuzz_pair_valid(const char *local, const char *remote)
{
	for (unsigned i = 0; i < fuzz_nvalid; i++)
		if (strcasecmp(fuzz_valid[i].local, local) == 0 &&
		    strcasecmp(fuzz_valid[i].remote, remote) == 0)
			return 1;
	return 0;
}

/* ---- stanzas handed to routing ---- */

static int fuzz_comp_domain(const char *domain)
{
	size_t n = strlen(domain), g = strlen(GW);
	return strcmp(domain, GW) == 0 ||
	       (n > g + 1 && domain[n - g - 1] == '.' &&
		strcmp(domain + n - g, GW) == 0);
}

static void fuzz_routed(struct conn *c, struct xml_node *n, int kind)
{
	struct arena a;
	struct jid jf, jt;
	const char *error;
	if (kind != FUZZ_DISPATCH_STANZA && kind != FUZZ_DISPATCH_PRESENCE_IN)
		return;
	FUZZ_CHECK(c == fuzz_conn || c == NULL, "routed for another conn");
	const char *from = xml_attr(n, "from"), *to = xml_attr(n, "to");
	const char *type = xml_attr(n, "type");
	int err = type != NULL && strcmp(type, "error") == 0;
	FUZZ_CHECK(strcmp(n->ns, NS_CLIENT) == 0, "routed <%s/> in '%s'",
		   n->name, n->ns);
	FUZZ_CHECK(from != NULL && to != NULL, "routed <%s/> without from "
		   "or to", n->name);
	arena_init(&a, 1024);
	/* an error bounced to a component is from the 'to' it wrote (RFC
	 * 6120 section 8.3.1), whatever that was */
	int from_ok = jid_parse(&a, from, &jf, &error) == 0;
	FUZZ_CHECK(from_ok || (fuzz_component && err), "routed from '%s': "
		   "%s", from, error);
	/* a component's 'to' is left to route_stanza, which answers a
	 * malformed one with jid-malformed (as route.c does for clients) */
	int to_ok = jid_parse(&a, to, &jt, &error) == 0;
	FUZZ_CHECK(to_ok || fuzz_component, "routed to '%s': %s", to, error);
	if (!fuzz_component) {
		int fwd = fuzz_pair_valid(jt.domain, jf.domain) &&
			  fuzz_serves(jt.domain);
		int back = err && fuzz_pair_valid(jf.domain, jt.domain);
		FUZZ_CHECK(fwd || back, "s2s stream routed <%s from='%s' "
			   "to='%s'/>: that pair was never authorized",
			   n->name, from, to);
		FUZZ_CHECK(kind != FUZZ_DISPATCH_PRESENCE_IN ||
			   strcasecmp(jt.domain, OURS) == 0,
			   "inbound presence to %s", to);
	} else {
		FUZZ_CHECK((from_ok && fuzz_comp_domain(jf.domain)) ||
			   (err && to_ok && fuzz_comp_domain(jt.domain)),
			   "component routed <%s from='%s' to='%s'/>",
			   n->name, from, to);
	}
	arena_free(&a);
	xmlcheck_round_trip(n, NS_CLIENT);
	if (getenv("FUZZ_S2S_SHOW") != NULL)
		fprintf(stderr, "fuzz_s2s: routed <%s from='%s' to='%s'%s%s/>\n",
			n->name, from, to, err ? " type='error'" : "",
			kind == FUZZ_DISPATCH_PRESENCE_IN ? " (inbound presence)"
							  : "");
}

/* ---- the server's output ---- */

static const char *const stream_conditions[] = {
	"bad-format", "bad-namespace-prefix", "conflict",
	"connection-timeout", "host-gone", "host-unknown",
	"improper-addressing", "internal-server-error", "invalid-from",
	"invalid-namespace", "invalid-xml", "not-authorized",
	"not-well-formed", "policy-violation", "remote-connection-failed",
	"reset", "resource-constraint", "restricted-xml", "see-other-host",
	"system-shutdown", "undefined-condition", "unsupported-encoding",
	"unsupported-feature", "unsupported-stanza-type",
	"unsupported-version", NULL
};
static const char *const sasl_conditions[] = {
	"aborted", "account-disabled", "credentials-expired",
	"encryption-required", "incorrect-encoding", "invalid-authzid",
	"invalid-mechanism", "malformed-request", "mechanism-too-weak",
	"not-authorized", "temporary-auth-failure", NULL
};

#define NS_STREAM_ERR "urn:ietf:params:xml:ns:xmpp-streams"

struct outcheck {
	unsigned depth;
	int in_error, in_failure;       /* depth-2 element being read */
	unsigned conditions;            /* of the current error/failure */
	int error_done;                 /* a stream error was closed */
	const char *doc;
	size_t len;
};

static int in_list(const char *const *list, const char *s)
{
	for (; *list != NULL; list++)
		if (strcmp(*list, s) == 0)
			return 1;
	return 0;
}

static int name_is(const char *name, const char *ns, const char *local)
{
	size_t n = strlen(ns);
	return strncmp(name, ns, n) == 0 && name[n] == XML_NS_SEP &&
	       strcmp(name + n + 1, local) == 0;
}

static const char *out_attr(const char **atts, const char *name)
{
	for (; atts[0] != NULL; atts += 2)
		if (strcmp(atts[0], name) == 0)
			return atts[1];
	return NULL;
}

static void XMLCALL out_start(void *ud, const char *name, const char **atts)
{
	struct outcheck *o = ud;
	const char *local = strrchr(name, XML_NS_SEP);
	local = local != NULL ? local + 1 : name;
	o->depth++;
	if (o->depth == 1) {
		FUZZ_CHECK(name_is(name, NS_STREAMS, "stream"), "root <%s>: "
			   "%.*s", name, (int)o->len, o->doc);
		return;
	}
	if (o->depth == 2) {
		FUZZ_CHECK(!o->error_done, "<%s> after a stream error: %.*s",
			   name, (int)o->len, o->doc);
		o->in_error = name_is(name, NS_STREAMS, "error");
		o->in_failure = name_is(name, NS_SASL, "failure");
		o->conditions = 0;
		if (name_is(name, NS_DIALBACK, "result") ||
		    name_is(name, NS_DIALBACK, "verify")) {
			const char *t = out_attr(atts, "type");
			FUZZ_CHECK(t != NULL && (strcmp(t, "valid") == 0 ||
						 strcmp(t, "invalid") == 0 ||
						 strcmp(t, "error") == 0),
				   "dialback answer of type '%s'",
				   t != NULL ? t : "");
		}
		return;
	}
	if (o->depth == 3 && o->in_error &&
	    name_is(name, NS_STREAM_ERR, local) &&
	    strcmp(local, "text") != 0) {
		FUZZ_CHECK(in_list(stream_conditions, local), "stream error "
			   "<%s/> is not RFC 6120's", local);
		o->conditions++;
	}
	if (o->depth == 3 && o->in_failure) {
		FUZZ_CHECK(name_is(name, NS_SASL, local) &&
			   (strcmp(local, "text") == 0 ||
			    in_list(sasl_conditions, local)),
			   "SASL failure <%s/>", name);
		if (strcmp(local, "text") != 0)
			o->conditions++;
	}
}

static void XMLCALL out_end(void *ud, const char *name)
{
	struct outcheck *o = ud;
	(void)name;
	if (o->depth == 2 && o->in_error) {
		FUZZ_CHECK(o->conditions == 1, "stream error with %u "
			   "conditions: %.*s", o->conditions, (int)o->len,
			   o->doc);
		o->error_done = 1;
	}
	if (o->depth == 2 && o->in_failure)
		FUZZ_CHECK(o->conditions == 1, "SASL failure with %u "
			   "conditions", o->conditions);
	if (o->depth == 2)
		o->in_error = o->in_failure = 0;
	o->depth--;
}

static void fuzz_check_output(const struct conn *c)
{
	struct outcheck o;
	size_t len = buf_used(&c->out);
	static int show = -1;
	if (show < 0)
		show = getenv("FUZZ_S2S_SHOW") != NULL;
	if (show)
		fprintf(stderr, "fuzz_s2s: server wrote: %.*s\n", (int)len,
			len > 0 ? buf_head(&c->out) : "");
	if (len == 0)
		return;
	memset(&o, 0, sizeof(o));
	o.doc = buf_head(&c->out);
	o.len = len;
	XML_Parser p = XML_ParserCreateNS("UTF-8", XML_NS_SEP);
	FUZZ_CHECK(p != NULL, "out of memory");
	XML_SetUserData(p, &o);
	XML_SetElementHandler(p, out_start, out_end);
	/* once closing, the document must be whole */
	int final = c->want_close && !c->closed;
	enum XML_Status st = XML_Parse(p, o.doc, (int)len, final);
	FUZZ_CHECK(st != XML_STATUS_ERROR, "server output not well-formed "
		   "(%s)%s: %.*s", XML_ErrorString(XML_GetErrorCode(p)),
		   final ? " at the end" : "", (int)len, o.doc);
	XML_ParserFree(p);
}

/* ---- set-up and one run ---- */

static void fuzz_init(void)
{
	const char *error;
	char path[] = "/tmp/fuzz_s2s-secrets-XXXXXX";
	static const char secrets[] = GW " " GW_SECRET " subdomains\n"
				      "conf." OURS " other\n";
	fuzz_quiet_log();
	struct config *cfg = config_new();
	cfg->hosts = OURS;
	cfg->s2s_require_tls = 0;
	cfg->s2s_auth = "dialback";
	cfg->s2s_max_stanza_size = 16384;       /* reachable by fuzzing */
	cfg->component_max_stanza_size = 16384;
	int fd = mkstemp(path);
	if (fd < 0 || write(fd, secrets, sizeof(secrets) - 1) !=
	    (ssize_t)(sizeof(secrets) - 1))
		abort();
	close(fd);
	cfg->component_secrets_file = path;
	fuzz_worker.cfg = cfg;
	fuzz_worker.stats = &fuzz_stats;
	fuzz_worker.nslots = 1;
	fuzz_worker.slot = 0;
	fuzz_worker.now_ms = time_now_ms();
	if (shm_create(&fuzz_shm, 1, 64, &error) < 0) {
		fprintf(stderr, "fuzz_s2s: shm_create: %s\n", error);
		abort();
	}
	fuzz_worker.shm = &fuzz_shm;
	dialback_init_secret();
	if (s2s_in_init(&fuzz_worker) < 0 || component_init(&fuzz_worker) < 0)
		abort();
	unlink(path);
	cfg->component_secrets_file = "";       /* path is gone */
	FUZZ_CHECK(component_serves(GW), "the secrets file did not load");
	fuzz_dispatch = fuzz_routed;
}

static void fuzz_feed(struct conn *c, const char *p, size_t len,
		      size_t chunk, unsigned how)
{
	while (len > 0 && !c->closed && !c->want_close) {
		size_t n = chunk == 0 || chunk > len ? len : chunk;
		c->read_paused_ms = 0;  /* the bucket refilled meanwhile */
		if (stream_feed(c, p, n) < 0)
			return;
		p += n;
		len -= n;
		fuzz_answer(c, how);
		if (chunk != 0)
			stream_park(c);
	}
}

/* Our stream id, from our header. */
static void fuzz_read_id(const struct conn *c, char *out, size_t size)
{
	size_t len = buf_used(&c->out);
	out[0] = '\0';
	if (len == 0)
		return;         /* (and c->out may have no memory) */
	const char *h = buf_head(&c->out);
	const char *p = memmem(h, len, " id='", 5);
	if (p == NULL)
		return;
	p += 5;
	const char *q = memchr(p, '\'', len - (size_t)(p - h));
	if (q != NULL && (size_t)(q - p) < size) {
		memcpy(out, p, (size_t)(q - p));
		out[q - p] = '\0';
	}
}

static void fuzz_handshake(struct conn *c)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	char id[64], text[256], hex[2 * EVP_MAX_MD_SIZE + 1];
	fuzz_read_id(c, id, sizeof(id));
	FUZZ_CHECK(id[0] != '\0', "no stream id from the component header");
	snprintf(text, sizeof(text), "%s%s", id, GW_SECRET);
	if (EVP_Digest(text, strlen(text), md, &mdlen, EVP_sha1(), NULL) != 1)
		abort();
	for (unsigned i = 0; i < mdlen; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	snprintf(text, sizeof(text), "<handshake>%s</handshake>", hex);
	size_t before = buf_used(&c->out);
	fuzz_feed(c, text, strlen(text), 0, 3);
	FUZZ_CHECK(buf_used(&c->out) - before == 12 &&
		   memcmp(buf_head(&c->out) + before, "<handshake/>", 12) == 0,
		   "the right handshake was refused: %.*s",
		   (int)(buf_used(&c->out) - before),
		   buf_head(&c->out) + before);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	static uint32_t next_id = 1;
	struct conn c;

	if (!ready) {
		fuzz_init();
		ready = 1;
	}
	if (size < 1 || size > 65536)
		return 0;
	unsigned mode = data[0] & 3, how = (data[0] >> 2) & 3;
	size_t chunk = data[0] >> 4;
	const char *p = (const char *)data + 1;
	size--;

	memset(&c, 0, sizeof(c));
	c.w = &fuzz_worker;
	c.fd = -1;
	c.id = next_id++;
	c.gen = 1;
	c.state = CONN_STATE_HEADER;
	snprintf(c.peer, sizeof(c.peer), "127.0.0.1:5269");
	c.kind = mode < 2 ? CONN_S2S_IN : CONN_COMPONENT;
	buf_init(&c.out, 1 << 20);
	fuzz_conn = &c;
	fuzz_component = mode >= 2;
	fuzz_nverify = fuzz_nvalid = 0;
	fuzz_stream_id[0] = '\0';
	fuzz_worker.now_ms = time_now_ms();
	if (stream_init(&c) < 0)
		abort();
	if (mode < 2)
		s2s_accepted(&c);
	else
		component_accepted(&c);

	int own_header = mode % 2 == 0 &&
			 ((size >= 5 && memcmp(p, "<?xml", 5) == 0) ||
			  (size >= 7 && memcmp(p, "<stream", 7) == 0));
	if (!own_header) {
		const char *h = mode < 2 ? s2s_header : comp_header;
		fuzz_feed(&c, h, strlen(h), 0, how);
	}
	if (mode == 1) {
		FUZZ_CHECK(!c.want_close && c.state == CONN_STATE_OPEN,
			   "the s2s header was refused: %.*s",
			   (int)buf_used(&c.out), buf_head(&c.out));
		fuzz_feed(&c, s2s_db_result, strlen(s2s_db_result), 0, 0);
		FUZZ_CHECK(c.authenticated, "dialback answered valid did not "
			   "authorize the stream: %.*s", (int)buf_used(&c.out),
			   buf_head(&c.out));
	}
	if (mode == 3)
		fuzz_handshake(&c);
	fuzz_feed(&c, p, size, chunk, how);
	fuzz_check_output(&c);

	if (mode < 2) {
		s2s_conn_gone(&c);
		s2s_conn_free(&c);
	} else {
		component_conn_gone(&c);
		component_conn_free(&c);
	}
	stream_free(&c);
	buf_free(&c.out);
	fuzz_conn = NULL;
	return 0;
}

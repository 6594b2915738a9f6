/*
 * pep.c - xmppd-bench --pep K: a presence-time PEP burst (XEP-0163) the
 * way OMEMO clients make one.  Contacts are a ring: client i is mutually
 * subscribed with i+-1 .. i+-K/2 (mod N).
 *
 * The roster pass (--pep-phase setup, untimed): each client logs in, gets
 * its roster, sends <presence/>, asks each contact it has no 'to'
 * subscription to with <presence type='subscribe'/>, and answers every
 * subscription request with 'subscribed'; roster pushes update its view.
 * It also publishes its devicelist and bundle once (creating the nodes;
 * failures retried, see pep_setup_answer).  A client is done when its
 * roster shows all K contacts 'both' (the roster is the truth, so a
 * second run only asks what is missing) and both publishes are answered.
 *
 * The burst (--pep-phase burst): each client logs in and sends initial
 * presence with XEP-0115 caps (our ver, computed at startup: identity
 * client/pc, features caps, disco#info and the OMEMO devicelist+notify);
 * it answers disco#info queries (any node) with that set; once its
 * session has settled (pep_publish_once) it publishes its devicelist
 * (item 'current', <device id='i+1'
 * label='RUN.T'/>: T is the send time, CLOCK_MONOTONIC ns, the same in
 * every process) and one ~4 KB bundle node, both with publish-options
 * pubsub#access_model=open.  It expects one devicelist event from each
 * of its K contacts and from itself, as a last item at login or a live
 * event: pairs seen, missing (an error), duplicates, stale (an earlier
 * run's item), unexpected (a non-contact).  In this mode the child's
 * lat_hist holds the live events' latency and resume_hist the publish
 * round trips.
 * Failure policy: as client.c: a client's failure is counted.
 */
#include "child.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#define NS_PUBSUB "http://jabber.org/protocol/pubsub"
#define NS_EVENT "http://jabber.org/protocol/pubsub#event"
#define NS_DISCO "http://jabber.org/protocol/disco#info"
#define NS_CAPS "http://jabber.org/protocol/caps"
#define NS_ROSTER "jabber:iq:roster"
#define NS_AXOLOTL "eu.siacs.conversations.axolotl"
#define NODE_DEVICES NS_AXOLOTL ".devicelist"
#define NODE_BUNDLES NS_AXOLOTL ".bundles"
#define CAPS_NODE "https://xmppd.example/bench"
#define ID_CATEGORY "client"
#define ID_TYPE "pc"
#define ID_NAME "xmppd-bench"
#define PREKEYS 60              /* ~4 KB of bundle */

static const char *const pep_features[] = {
	NS_CAPS, NS_DISCO, NODE_DEVICES "+notify",
};
#define N_FEATURES (sizeof(pep_features) / sizeof(pep_features[0]))

#define OPEN_OPTIONS "<publish-options><x xmlns='jabber:x:data' " \
	"type='submit'><field var='FORM_TYPE' type='hidden'><value>" \
	NS_PUBSUB "#publish-options</value></field><field " \
	"var='pubsub#access_model'><value>open</value></field></x>" \
	"</publish-options>"

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* XEP-0115 §5.1: identity "category/type/lang/name<", then each
 * feature "<", sorted (i;octet); SHA-1, base64. */
void pep_caps_ver(char *out, size_t size)
{
	const char *f[N_FEATURES];
	char s[1024];
	size_t n = 0;
	memcpy(f, pep_features, sizeof(f));
	qsort(f, N_FEATURES, sizeof(f[0]), cmp_str);
	n += (size_t)snprintf(s + n, sizeof(s) - n, "%s/%s//%s<", ID_CATEGORY,
			      ID_TYPE, ID_NAME);
	for (size_t i = 0; i < N_FEATURES; i++)
		n += (size_t)snprintf(s + n, sizeof(s) - n, "%s<", f[i]);
	unsigned char md[SHA_DIGEST_LENGTH];
	SHA1((const unsigned char *)s, n, md);
	if (b64_encode(md, sizeof(md), out, size) < 0)
		bench_fatal("caps ver: no room");
}

int pep_bit(const struct bench_opts *o, uint32_t i, uint32_t j)
{
	uint32_t n = o->clients, h = o->pep_k / 2;
	if (j >= n)
		return -1;
	uint32_t d = (j + n - i) % n;
	if (d == 0)
		return (int)o->pep_k;
	if (d <= h)
		return (int)(d - 1);
	if (d >= n - h)
		return (int)(h + (n - d) - 1);
	return -1;
}

/* Client j of the ring at distance bit b of client i (b < K). */
static uint32_t pep_contact(const struct bench_opts *o, uint32_t i, unsigned b)
{
	uint32_t n = o->clients, h = o->pep_k / 2;
	return b < h ? (i + b + 1) % n : (i + n - (b - h + 1) % n) % n;
}

static uint64_t pep_all(const struct bench_opts *o)
{
	return o->pep_k >= 64 ? ~0ULL : (1ULL << o->pep_k) - 1;
}

/* The account index of "user%d@domain[/res]", or UINT32_MAX. */
static uint32_t pep_jid_index(const struct bench_opts *o, const char *jid)
{
	const char *pct = strstr(o->user_pattern, "%d");
	size_t pre = (size_t)(pct - o->user_pattern);
	if (strncmp(jid, o->user_pattern, pre) != 0)
		return UINT32_MAX;
	char *end;
	long v = strtol(jid + pre, &end, 10);
	const char *suf = pct + 2;
	size_t sl = strlen(suf), dl = strlen(o->domain);
	if (end == jid + pre || strncmp(end, suf, sl) != 0 || end[sl] != '@' ||
	    strncmp(end + sl + 1, o->domain, dl) != 0 ||
	    (end[sl + 1 + dl] != '\0' && end[sl + 1 + dl] != '/') ||
	    v < (long)o->first || v - (long)o->first >= (long)o->clients)
		return UINT32_MAX;
	return (uint32_t)(v - (long)o->first);
}

static struct pep_client *pep_of(struct child *ch, struct client *c)
{
	return &ch->pep[c - ch->clients];
}

/* The start tag of the first <name ...> or <name/> at or after from. */
static const char *pep_find_tag(const char *from, const char *end,
				const char *name, size_t *tag_len_r)
{
	char open[48];
	int ol = snprintf(open, sizeof(open), "<%s", name);
	const char *p = from;
	while ((p = memmem(p, (size_t)(end - p), open, (size_t)ol)) != NULL) {
		char nx = p + ol < end ? p[ol] : '\0';
		if (nx == ' ' || nx == '>' || nx == '/' || nx == '\t' ||
		    nx == '\n') {
			const char *gt = memchr(p, '>', (size_t)(end - p));
			if (gt == NULL)
				return NULL;
			*tag_len_r = (size_t)(gt + 1 - p);
			return p;
		}
		p += ol;
	}
	return NULL;
}

static int pep_send(struct child *ch, struct client *c, const char *p,
		    size_t n)
{
	if (client_send(ch, c, p, n) < 0)
		return -1;
	client_stanza_out(c);
	return 0;
}

static int pep_publish(struct child *ch, struct client *c);
static int pep_publish_devices(struct child *ch, struct client *c);
static int pep_publish_bundle(struct child *ch, struct client *c);

/* ---- the roster pass ------------------------------------------------ */

static void pep_setup_check(struct child *ch, struct pep_client *pc)
{
	uint64_t all = pep_all(ch->o);
	bool roster = pc->roster && (pc->to & pc->from & all) == all;
	if (roster && !pc->pub_started) {
		pc->pub_started = true;
		pc->want_pub = true;    /* pep_tick starts it */
	}
	if (!pc->done && roster && pc->pubs_done == 2) {
		pc->done = true;
		ch->cnt.pep_setup_done++;
	}
}

/* Each <item jid subscription/> of a roster result or push.  Results and
 * pushes only add (the pass only moves toward 'both'): a push that
 * overtook a result is newer than its snapshot, and on xmppd with 2
 * workers a client once ended with 'to' after 'both' (pushes of one item
 * made on two workers arrive in either order). */
static void pep_roster_items(struct child *ch, struct client *c,
			     const char *el, size_t len, bool only_add)
{
	struct pep_client *pc = pep_of(ch, c);
	uint32_t i = client_index(ch, c);
	const char *p = el, *end = el + len;
	size_t tl;
	while ((p = pep_find_tag(p, end, "item", &tl)) != NULL) {
		char jid[256], sub[16];
		if (xmlscan_attr(p, tl, "jid", jid, sizeof(jid)) > 0) {
			if (xmlscan_attr(p, tl, "subscription", sub,
					 sizeof(sub)) < 0)
				strcpy(sub, "none");
			int b = pep_bit(ch->o, i, pep_jid_index(ch->o, jid));
			if (b >= 0 && b < (int)ch->o->pep_k) {
				uint64_t m = 1ULL << b;
				bool to = !strcmp(sub, "to") || !strcmp(sub, "both");
				bool from = !strcmp(sub, "from") ||
					    !strcmp(sub, "both");
				pc->to = to ? pc->to | m : only_add ? pc->to :
					 pc->to & ~m;
				pc->from = from ? pc->from | m : only_add ?
					   pc->from : pc->from & ~m;
			}
		}
		p += tl;
	}
}

/* The roster arrived: ask every contact we have no 'to' to. */
static int pep_roster_loaded(struct child *ch, struct client *c)
{
	struct pep_client *pc = pep_of(ch, c);
	uint32_t i = client_index(ch, c);
	char user[128], buf[512];
	pc->roster = true;
	for (unsigned b = 0; b < ch->o->pep_k; b++) {
		if (pc->to & (1ULL << b))
			continue;
		client_username(ch, pep_contact(ch->o, i, b), user, sizeof(user));
		int n = snprintf(buf, sizeof(buf), "<presence type='subscribe' "
				 "to='%s@%s'/>", user, ch->o->domain);
		if (pep_send(ch, c, buf, (size_t)n) < 0)
			return -1;
		ch->cnt.pep_sub_sent++;
	}
	pep_setup_check(ch, pc);
	return 0;
}

/* The roster pass publishes both nodes once (creating them), so that the
 * burst is the login of established OMEMO accounts: after the client's
 * roster is complete (not during the subscription storm), the devicelist
 * then the bundle, PEP_INFLIGHT clients at a time per tool process.  Why:
 * ejabberd 23.01 on mnesia aborts concurrent auto-creates ("cyclic" lock
 * on pubsub_index) and stalled outright (no IQ answered for a minute) with
 * 1,000 clients creating nodes while subscribing.  A failed publish is
 * sent again up to PEP_RETRIES times in all; then the client gives up on
 * it (a server without PEP: counted). */
#define PEP_RETRIES 20
#define PEP_INFLIGHT 4
static int pep_setup_answer(struct child *ch, struct client *c,
			    const char *id, bool ok)
{
	struct pep_client *pc = pep_of(ch, c);
	if (ok)
		ch->cnt.pep_pub_ok++;
	else
		ch->cnt.pep_pub_err++;
	if (ok || pc->retries >= PEP_RETRIES) {
		if (!ok)
			ch->cnt.pep_setup_pub_failed++;
		pc->pubs_done++;
		pep_setup_check(ch, pc);
		if (pc->pubs_done == 1)
			return pep_publish_bundle(ch, c);
		ch->pep_inflight--;
		return 0;
	}
	pc->retries++;
	return id[1] == 'd' ? pep_publish_devices(ch, c) :
	       pep_publish_bundle(ch, c);
}

static int pep_setup_element(struct child *ch, struct client *c,
			     const char *el, const struct xs_item *it)
{
	char type[16], id[64], from[300];
	size_t len = it->len;
	if (xmlscan_attr(el, it->tag_len, "type", type, sizeof(type)) < 0)
		type[0] = '\0';
	if (xmlscan_is(el, len, "presence")) {
		if (strcmp(type, "subscribe") != 0 ||
		    xmlscan_attr(el, it->tag_len, "from", from,
				 sizeof(from)) <= 0 || strchr(from, '\''))
			return 0;
		char *slash = strchr(from, '/');
		if (slash != NULL)
			*slash = '\0';
		char buf[512];
		int n = snprintf(buf, sizeof(buf), "<presence type='subscribed' "
				 "to='%s'/>", from);
		if (pep_send(ch, c, buf, (size_t)n) < 0)
			return -1;
		ch->cnt.pep_subd_sent++;
		return 0;
	}
	if (!xmlscan_is(el, len, "iq"))
		return 0;
	bool ok = !strcmp(type, "result");
	if ((ok || !strcmp(type, "error")) &&
	    xmlscan_attr(el, it->tag_len, "id", id, sizeof(id)) > 0) {
		if (ok && !strcmp(id, "roster")) {
			pep_roster_items(ch, c, el, len, true);
			return pep_roster_loaded(ch, c);
		}
		if (ok && !strcmp(id, "rosterx")) {
			pep_roster_items(ch, c, el, len, true);
			pep_setup_check(ch, pep_of(ch, c));
			return 0;
		}
		if (id[0] == 'p' && (id[1] == 'd' || id[1] == 'b'))
			return pep_setup_answer(ch, c, id, ok);
		return 0;
	}
	if (!strcmp(type, "set") && memmem(el, len, NS_ROSTER,
					   sizeof(NS_ROSTER) - 1)) {
		ch->cnt.pep_roster_pushes++;
		pep_roster_items(ch, c, el, len, true);
		pep_setup_check(ch, pep_of(ch, c));
	}
	return 2;               /* client.c answers a get or set */
}

/* ---- the burst ------------------------------------------------------ */

static int pep_publish_devices(struct child *ch, struct client *c)
{
	uint32_t i = client_index(ch, c);
	long long t = (long long)bench_now_ns();
	int n = snprintf(ch->msg, ch->msg_size, "<iq type='set' id='pd%lld'>"
			 "<pubsub xmlns='" NS_PUBSUB "'><publish node='"
			 NODE_DEVICES "'><item id='current'><list xmlns='"
			 NS_AXOLOTL "'><device id='%u' label='%u.%lld'/></list>"
			 "</item></publish>" OPEN_OPTIONS "</pubsub></iq>", t,
			 i + 1, ch->o->run_id, t);
	if (pep_send(ch, c, ch->msg, (size_t)n) < 0)
		return -1;
	ch->cnt.pep_pub_sent++;
	return 0;
}

static int pep_publish_bundle(struct child *ch, struct client *c)
{
	uint32_t i = client_index(ch, c);
	long long t;
	char *m = ch->msg;
	size_t size = ch->msg_size;
	int n;
	/* a bundle as Conversations makes one: signed pre-key, signature,
	 * identity key and PREKEYS pre-keys, base64 of 33/64/33 bytes */
	uint64_t x = 0x9e3779b97f4a7c15ULL * (i + 1);
	unsigned char raw[64];
	char b64[100];
#define FILL(len) do { \
		for (size_t k_ = 0; k_ < (len); k_++) { \
			x ^= x << 13; x ^= x >> 7; x ^= x << 17; \
			raw[k_] = (unsigned char)x; \
		} \
		b64_encode(raw, (len), b64, sizeof(b64)); \
	} while (0)
	t = (long long)bench_now_ns();
	n = snprintf(m, size, "<iq type='set' id='pb%lld'><pubsub xmlns='"
		     NS_PUBSUB "'><publish node='" NODE_BUNDLES ":%u'><item "
		     "id='current'><bundle xmlns='" NS_AXOLOTL "'>", t, i + 1);
	FILL(33);
	n += snprintf(m + n, size - (size_t)n, "<signedPreKeyPublic "
		      "signedPreKeyId='1'>%s</signedPreKeyPublic>", b64);
	FILL(64);
	n += snprintf(m + n, size - (size_t)n, "<signedPreKeySignature>%s"
		      "</signedPreKeySignature>", b64);
	FILL(33);
	n += snprintf(m + n, size - (size_t)n, "<identityKey>%s</identityKey>"
		      "<prekeys>", b64);
	for (unsigned k = 1; k <= PREKEYS; k++) {
		FILL(33);
		n += snprintf(m + n, size - (size_t)n, "<preKeyPublic "
			      "preKeyId='%u'>%s</preKeyPublic>", k, b64);
	}
#undef FILL
	n += snprintf(m + n, size - (size_t)n, "</prekeys></bundle></item>"
		      "</publish>" OPEN_OPTIONS "</pubsub></iq>");
	if ((size_t)n >= size)
		bench_fatal("bundle larger than the message buffer");
	if (pep_send(ch, c, m, (size_t)n) < 0)
		return -1;
	ch->cnt.pep_pub_sent++;
	return 0;
}

static int pep_publish(struct child *ch, struct client *c)
{
	return pep_publish_devices(ch, c) < 0 ? -1 :
	       pep_publish_bundle(ch, c);
}

int pep_online(struct child *ch, struct client *c)
{
	struct pep_client *pc = pep_of(ch, c);
	if (ch->o->pep_setup) {
		static const char get[] = "<iq type='get' id='roster'><query "
			"xmlns='" NS_ROSTER "'/></iq><presence/>";
		return pep_send(ch, c, get, sizeof(get) - 1);
	}
	char buf[512];
	int n = snprintf(buf, sizeof(buf), "<presence><c xmlns='" NS_CAPS "' "
			 "hash='sha-1' node='" CAPS_NODE "' ver='%s'/>"
			 "</presence>", ch->o->pep_ver);
	pc->t_presence = bench_now_ns();
	ch->cnt.pep_expected += ch->o->pep_k + 1;
	ch->cnt.pep_pub_due += 2;
	return pep_send(ch, c, buf, (size_t)n);
}

/* The burst's publishes, once per client, when its session has settled:
 * its own devicelist (the last item at login: Conversations publishes
 * after it has seen its own list) has arrived, and the presence of each
 * contact that was online before it (same worker) has arrived; or
 * PEP_OWN_WAIT (10 s) after its presence without that.  Why the presences:
 * ejabberd 23.01 sends a live event only to the resources whose presence
 * the publisher's session has received (mod_caps in the c2s state), and
 * a publish right after the initial presence lost ~0.7 % of the events
 * of pep-100 to the probe answers still in flight. */
#define PEP_OWN_WAIT_NS 10000000000LL
static int pep_publish_once(struct child *ch, struct client *c, bool force)
{
	struct pep_client *pc = pep_of(ch, c);
	uint32_t i = client_index(ch, c);
	if (pc->published || (!force && !pc->own))
		return 0;
	for (unsigned b = 0; !force && b < ch->o->pep_k; b++) {
		uint32_t j = pep_contact(ch->o, i, b);
		if (j < ch->lo || j >= ch->hi || (pc->pres & (1ULL << b)))
			continue;
		int64_t tj = ch->pep[j - ch->lo].t_presence;
		if (tj != 0 && tj < pc->t_presence)
			return 0;
	}
	pc->published = true;
	return pep_publish(ch, c);
}

/* An available presence from a contact. */
static int pep_presence(struct child *ch, struct client *c, const char *el,
			const struct xs_item *it)
{
	char from[300];
	if (xmlscan_attr(el, it->tag_len, "type", from, sizeof(from)) >= 0 ||
	    xmlscan_attr(el, it->tag_len, "from", from, sizeof(from)) <= 0)
		return 0;
	int b = pep_bit(ch->o, client_index(ch, c),
			pep_jid_index(ch->o, from));
	if (b < 0 || b >= (int)ch->o->pep_k)
		return 0;
	pep_of(ch, c)->pres |= 1ULL << b;
	return pep_publish_once(ch, c, false);
}

/* The roster pass: start the publishes of clients whose roster is done,
 * PEP_INFLIGHT at a time (here, outside any client's parsing). */
static void pep_setup_pump(struct child *ch)
{
	for (uint32_t i = 0; i < ch->hi - ch->lo &&
	     ch->pep_inflight < PEP_INFLIGHT; i++) {
		struct pep_client *pc = &ch->pep[i];
		if (!pc->want_pub)
			continue;
		pc->want_pub = false;
		if (ch->clients[i].state != CS_ONLINE)
			continue;
		ch->pep_inflight++;
		pep_publish_devices(ch, &ch->clients[i]);
	}
}

/* The roster pass: every 5 s, a client whose roster is not complete
 * asks for it again (id 'rosterx': items only added).  Seen on xmppd: a
 * roster push lost between the roster get and its result (142 of 144
 * pushes, 12 clients), and the client waited forever. */
static void pep_setup_refetch(struct child *ch, int64_t now)
{
	static const char get[] = "<iq type='get' id='rosterx'><query "
		"xmlns='" NS_ROSTER "'/></iq>";
	if (now - ch->t_pep_tick < 5000000000LL)
		return;
	ch->t_pep_tick = now;
	for (uint32_t i = 0; i < ch->hi - ch->lo; i++) {
		struct pep_client *pc = &ch->pep[i];
		if (ch->clients[i].state == CS_ONLINE && pc->roster &&
		    !pc->done &&
		    pep_send(ch, &ch->clients[i], get, sizeof(get) - 1) == 0)
			ch->cnt.pep_refetch++;
	}
}

void pep_tick(struct child *ch, int64_t now)
{
	if (ch->o->pep_setup) {
		pep_setup_pump(ch);
		pep_setup_refetch(ch, now);
		return;
	}
	if (now - ch->t_pep_tick < 100000000LL)
		return;
	ch->t_pep_tick = now;
	for (uint32_t i = 0; i < ch->hi - ch->lo; i++) {
		struct pep_client *pc = &ch->pep[i];
		if (ch->clients[i].state == CS_ONLINE && !pc->published &&
		    pc->t_presence != 0 && now - pc->t_presence > PEP_OWN_WAIT_NS) {
			ch->cnt.pep_own_late++;
			pep_publish_once(ch, &ch->clients[i], true);
		}
	}
}

/* disco#info to us, any node: our identity and features. */
static int pep_disco(struct child *ch, struct client *c, const char *el,
		     const struct xs_item *it)
{
	char id[128], from[300], node[300];
	size_t tl;
	const char *q = pep_find_tag(el, el + it->len, "query", &tl);
	if (q == NULL || xmlscan_attr(el, it->tag_len, "id", id, sizeof(id)) < 0 ||
	    xmlscan_attr(el, it->tag_len, "from", from, sizeof(from)) <= 0 ||
	    strchr(id, '\'') || strchr(from, '\''))
		return 2;
	if (xmlscan_attr(q, tl, "node", node, sizeof(node)) < 0 ||
	    strchr(node, '\''))
		node[0] = '\0';
	char buf[2048];
	int n = snprintf(buf, sizeof(buf), "<iq type='result' id='%s' to='%s'>"
			 "<query xmlns='" NS_DISCO "'%s%s%s><identity category='"
			 ID_CATEGORY "' type='" ID_TYPE "' name='" ID_NAME "'/>",
			 id, from, node[0] ? " node='" : "", node,
			 node[0] ? "'" : "");
	for (size_t k = 0; k < N_FEATURES; k++)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n,
			      "<feature var='%s'/>", pep_features[k]);
	n += snprintf(buf + n, sizeof(buf) - (size_t)n, "</query></iq>");
	if (pep_send(ch, c, buf, (size_t)n) < 0)
		return -1;
	ch->cnt.pep_disco++;
	return 0;
}

/* A publish's result or error: id "pdT" / "pbT". */
static void pep_iq_answer(struct child *ch, const char *el,
			  const struct xs_item *it, bool ok)
{
	char id[64];
	long long t;
	if (xmlscan_attr(el, it->tag_len, "id", id, sizeof(id)) < 3 ||
	    id[0] != 'p' || (id[1] != 'd' && id[1] != 'b') ||
	    sscanf(id + 2, "%lld", &t) != 1)
		return;
	if (!ok) {
		ch->cnt.pep_pub_err++;
		return;
	}
	ch->cnt.pep_pub_ok++;
	int64_t rtt = bench_now_ns() - t;
	hist_add(ch->resume_hist, rtt > 0 ? (uint64_t)rtt / 1000 : 0);
}

static int pep_event(struct child *ch, struct client *c, const char *el,
		     const struct xs_item *it)
{
	const char *end = el + it->len;
	char node[256], dev[16], label[64];
	size_t tl;
	ch->cnt.pep_events++;
	const char *items = pep_find_tag(el, end, "items", &tl);
	if (items == NULL || xmlscan_attr(items, tl, "node", node,
					   sizeof(node)) < 0 ||
	    strcmp(node, NODE_DEVICES) != 0) {
		ch->cnt.pep_other++;
		return 0;
	}
	const char *d = pep_find_tag(items, end, "device", &tl);
	unsigned id, run;
	long long t;
	if (d == NULL || xmlscan_attr(d, tl, "id", dev, sizeof(dev)) <= 0 ||
	    sscanf(dev, "%u", &id) != 1 || id == 0) {
		ch->cnt.pep_other++;
		return 0;
	}
	if (id - 1 == client_index(ch, c)) {
		pep_of(ch, c)->own = true;
		if (pep_publish_once(ch, c, false) < 0)
			return -1;
	}
	if (xmlscan_attr(d, tl, "label", label, sizeof(label)) <= 0 ||
	    sscanf(label, "%u.%lld", &run, &t) != 2 || run != ch->o->run_id) {
		ch->cnt.pep_stale++;
		return 0;
	}
	int b = pep_bit(ch->o, client_index(ch, c), id - 1);
	if (b < 0) {
		ch->cnt.pep_unexpected++;
		return 0;
	}
	struct pep_client *pc = pep_of(ch, c);
	if (pc->seen & (1ULL << b)) {
		ch->cnt.pep_dups++;
		return 0;
	}
	pc->seen |= 1ULL << b;
	ch->cnt.pep_pairs++;
	if (t >= pc->t_presence) {
		int64_t lat = bench_now_ns() - t;
		ch->cnt.pep_live++;
		hist_add(ch->lat_hist, lat > 0 ? (uint64_t)lat / 1000 : 0);
	} else {
		ch->cnt.pep_last++;
	}
	return 0;
}

int pep_element(struct child *ch, struct client *c, const char *el,
		const struct xs_item *it)
{
	if (ch->o->pep_setup)
		return pep_setup_element(ch, c, el, it);
	char type[16];
	size_t len = it->len;
	if (xmlscan_attr(el, it->tag_len, "type", type, sizeof(type)) < 0)
		type[0] = '\0';
	if (xmlscan_is(el, len, "message")) {
		if (strcmp(type, "error") != 0 &&
		    memmem(el, len, NS_EVENT, sizeof(NS_EVENT) - 1))
			return pep_event(ch, c, el, it);
		return 0;
	}
	if (xmlscan_is(el, len, "presence"))
		return pep_presence(ch, c, el, it);
	if (!xmlscan_is(el, len, "iq"))
		return 0;
	if (!strcmp(type, "result") || !strcmp(type, "error")) {
		pep_iq_answer(ch, el, it, type[0] == 'r');
		return 0;
	}
	if (!strcmp(type, "get") && memmem(el, len, NS_DISCO,
					   sizeof(NS_DISCO) - 1))
		return pep_disco(ch, c, el, it);
	return 2;
}

/* Count the missing pairs; with --lost-file append one line per pair:
 * "recipient publisher" (client indices). */
void pep_report(struct child *ch)
{
	const struct bench_opts *o = ch->o;
	if (o->pep_setup)
		return;
	FILE *f = o->lost_file ? fopen(o->lost_file, "a") : NULL;
	uint64_t all = pep_all(o) | 1ULL << o->pep_k;
	for (uint32_t i = 0; i < ch->hi - ch->lo; i++) {
		uint64_t miss = all & ~ch->pep[i].seen;
		if (ch->pep[i].t_presence == 0)
			continue;
		ch->cnt.pep_missing += (uint64_t)__builtin_popcountll(miss);
		for (unsigned b = 0; f != NULL && b <= o->pep_k; b++)
			if (miss & (1ULL << b)) {
				/* and when each sent its presence, ms after
				 * this worker began (-1: another worker) */
				uint32_t j = b == o->pep_k ? ch->lo + i :
					     pep_contact(o, ch->lo + i, b);
				double tj = j >= ch->lo && j < ch->hi ?
					(double)(ch->pep[j - ch->lo].t_presence -
						 ch->t_begin) / 1e6 : -1;
				fprintf(f, "%u %u %.1f %.1f\n", ch->lo + i, j,
					(double)(ch->pep[i].t_presence -
						 ch->t_begin) / 1e6, tj);
			}
	}
	if (f != NULL)
		fclose(f);
}

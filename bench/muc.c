/*
 * muc.c - xmppd-bench --muc-rooms R: group chat (XEP-0045).  The first
 * clients - K are occupants, client i in room i % R (so every room spans
 * the tool's processes), nick "u<i>"; the rooms are RUN-r@service (RUN:
 * the run id in hex), so an earlier run's rooms and history are never
 * reused.  The parent drives three join phases (WIRE_JOIN):
 *   - the creators (client r for room r) join first; a status 201 (new,
 *     locked room) is answered with the instant-room form (XEP-0045
 *     10.1.2) and the join counts once the server accepts it, so that no
 *     other occupant ever meets a locked room;
 *   - the other occupants; each join is <presence to='room/nick'> with
 *     <x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/>
 *     and counts when the self-presence (status 110) arrives;
 *   - after the messages, the K history joiners join with maxstanzas=N
 *     and are timed from their join presence to the subject, which the
 *     room sends after the history (XEP-0045 7.2.15-7.2.16).
 * Joins are paced at --join-rate (--history-join-rate), and each phase
 * ends with a WIRE_JOINED frame: which of this worker's clients are in.
 * Messages are groupchat to the room with the body child.c writes; each
 * occupant records every non-delayed one it gets (with itself as the
 * recipient), the sender's reflected copy included, and the parent
 * checks that each reached every member of the room exactly once.
 * Failure policy: as client.c: a client's failure is counted.
 */
#include "child.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_MUC "http://jabber.org/protocol/muc"
#define NS_DELAY "urn:xmpp:delay"
#define TIMEOUT_CHECK_NS 1000000000LL

enum muc_phase muc_phase_of(const struct bench_opts *o, uint32_t i)
{
	if (i >= bench_muc_occupants(o))
		return MUC_PHASE_HISTORY;
	return i < o->muc_rooms ? MUC_PHASE_CREATORS : MUC_PHASE_OCCUPANTS;
}

/* "RUN-r@service" of client i. */
static void muc_room_jid(const struct child *ch, uint32_t i, char *out,
			 size_t size)
{
	snprintf(out, size, "%08x-%u@%s", ch->o->run_id,
		 bench_muc_room(ch->o, i), ch->o->muc_service);
}

void muc_child_init(struct child *ch)
{
	uint32_t n = ch->hi - ch->lo;
	ch->muc = calloc(n ? n : 1, sizeof(*ch->muc));
	ch->join_hist = calloc(1, sizeof(struct hist));
	ch->hjoin_hist = calloc(1, sizeof(struct hist));
	if (ch->muc == NULL || ch->join_hist == NULL || ch->hjoin_hist == NULL)
		bench_fatal("out of memory for %u clients", n);
	for (uint32_t i = 0; i < n; i++)
		ch->muc[i].history = muc_phase_of(ch->o, ch->lo + i) ==
				     MUC_PHASE_HISTORY;
	ch->muc_phase = -1;
}

void muc_phase_start(struct child *ch, enum muc_phase phase, int64_t now)
{
	ch->muc_phase = (int)phase;
	ch->muc_next = 0;
	ch->muc_started = 0;
	ch->t_muc_begin = now;
}

static void muc_join(struct child *ch, struct client *c, int64_t now)
{
	struct muc_client *m = &ch->muc[c - ch->clients];
	char room[256], buf[512];
	uint32_t i = client_index(ch, c);
	muc_room_jid(ch, i, room, sizeof(room));
	int n = snprintf(buf, sizeof(buf), "<presence to='%s/u%u'><x xmlns='"
			 NS_MUC "'><history maxstanzas='%u'/></x></presence>",
			 room, i, m->history ? ch->o->history_stanzas : 0);
	m->t_join = now;
	m->state = MUC_JOINING;
	ch->muc_pending++;
	ch->muc_started++;
	if (m->history)
		ch->cnt.muc_hist_started++;
	else
		ch->cnt.muc_joins_started++;
	if (client_send(ch, c, buf, (size_t)n) == 0)
		client_stanza_out(c);
}

/* A join in flight ends without success. */
static void muc_join_failed(struct child *ch, struct muc_client *m,
			    uint64_t *counter)
{
	m->state = MUC_FAILED;
	ch->muc_pending--;
	if (m->history)
		ch->cnt.muc_hist_failed++;
	else
		(*counter)++;
}

static bool muc_in_flight(const struct muc_client *m)
{
	return m->state == MUC_JOINING || m->state == MUC_CONFIGURING;
}

void muc_client_closed(struct child *ch, struct client *c)
{
	struct muc_client *m = &ch->muc[c - ch->clients];
	if (muc_in_flight(m))
		muc_join_failed(ch, m, &ch->cnt.muc_join_errors);
}

/* In: an occupant joins the senders; a history joiner is timed to here
 * (its subject). */
static void muc_joined(struct child *ch, struct client *c, int64_t now)
{
	struct muc_client *m = &ch->muc[c - ch->clients];
	uint64_t us = (uint64_t)(now - m->t_join) / 1000;
	m->state = MUC_JOINED;
	ch->muc_pending--;
	if (m->history) {
		ch->cnt.muc_hist_joined++;
		hist_add(ch->hjoin_hist, us);
		return;
	}
	ch->cnt.muc_joined++;
	hist_add(ch->join_hist, us);
	if (c->sender_pos == NO_SENDER) {
		c->sender_pos = ch->nsenders;
		ch->senders[ch->nsenders++] = c;
	}
}

static void muc_report_phase(struct child *ch)
{
	uint32_t n = ch->hi - ch->lo, phase = (uint32_t)ch->muc_phase;
	uint8_t *in = malloc(n ? n : 1);
	if (in == NULL)
		bench_fatal("out of memory");
	for (uint32_t i = 0; i < n; i++)
		in[i] = ch->muc[i].state == MUC_JOINED &&
			ch->clients[i].state == CS_ONLINE;
	const void *parts[] = { &phase, in };
	size_t lens[] = { sizeof(phase), n };
	if (wire_send(ch->ctl, WIRE_JOINED, parts, lens, 2) < 0)
		bench_fatal("worker %u: parent gone", ch->k);
	free(in);
	ch->muc_phase = -1;
}

static void muc_timeouts(struct child *ch, int64_t now)
{
	int64_t limit = (int64_t)(ch->o->join_timeout * 1e9);
	if (now - ch->t_muc_timeouts < TIMEOUT_CHECK_NS || ch->muc_pending == 0)
		return;
	ch->t_muc_timeouts = now;
	for (uint32_t i = 0; i < ch->hi - ch->lo; i++) {
		struct muc_client *m = &ch->muc[i];
		if (muc_in_flight(m) && now - m->t_join > limit)
			muc_join_failed(ch, m, &ch->cnt.muc_join_timeouts);
	}
}

void muc_tick(struct child *ch, int64_t now)
{
	const struct bench_opts *o = ch->o;
	uint32_t n = ch->hi - ch->lo;
	if (ch->muc_phase < 0)
		return;
	double rate = (ch->muc_phase == MUC_PHASE_HISTORY ?
		       o->history_join_rate : o->join_rate) / o->processes;
	uint64_t due = rate <= 0 ? UINT64_MAX : (uint64_t)((double)(now -
			ch->t_muc_begin) * rate / 1e9) + 1;
	while (ch->muc_next < n && ch->muc_started < due &&
	       ch->muc_pending < o->max_pending) {
		struct client *c = &ch->clients[ch->muc_next++];
		if ((int)muc_phase_of(o, client_index(ch, c)) == ch->muc_phase &&
		    c->state == CS_ONLINE)
			muc_join(ch, c, now);
	}
	muc_timeouts(ch, now);
	if (ch->muc_next == n && ch->muc_pending == 0)
		muc_report_phase(ch);
}

void muc_on_go(struct child *ch)
{
	const struct bench_opts *o = ch->o;
	ch->muc_members = calloc(o->muc_rooms, sizeof(uint32_t));
	if (ch->muc_members == NULL)
		bench_fatal("out of memory");
	for (uint32_t j = 0; j < ch->go.n_online; j++)
		ch->muc_members[bench_muc_room(o, ch->online[j])]++;
}

size_t muc_message_head(struct child *ch, uint32_t s, uint32_t q)
{
	char room[256];
	muc_room_jid(ch, s, room, sizeof(room));
	int n = snprintf(ch->msg, ch->msg_size, "<message to='%s' "
			 "type='groupchat' id='m%u.%u.%u'><body>", room,
			 ch->o->run_id, s, q);
	return (size_t)n;
}

/* Is there a <status code='code'/> in el? */
static bool muc_status(const char *el, size_t len, const char *code)
{
	const char *p = el, *end = el + len;
	char v[8];
	while ((p = memmem(p, (size_t)(end - p), "<status", 7)) != NULL) {
		const char *gt = memchr(p, '>', (size_t)(end - p));
		if (gt == NULL)
			return false;
		if (xmlscan_attr(p, (size_t)(gt - p + 1), "code", v,
				 sizeof(v)) > 0 && strcmp(v, code) == 0)
			return true;
		p = gt;
	}
	return false;
}

static int muc_send_instant(struct child *ch, struct client *c)
{
	char room[256], buf[512];
	muc_room_jid(ch, client_index(ch, c), room, sizeof(room));
	int n = snprintf(buf, sizeof(buf), "<iq type='set' to='%s' id='inst'>"
			 "<query xmlns='" NS_MUC "#owner'><x xmlns='jabber:x:"
			 "data' type='submit'/></query></iq>", room);
	if (client_send(ch, c, buf, (size_t)n) < 0)
		return -1;
	client_stanza_out(c);
	return 0;
}

static int muc_presence(struct child *ch, struct client *c, const char *el,
			const struct xs_item *it)
{
	struct muc_client *m = &ch->muc[c - ch->clients];
	char type[16];
	if (xmlscan_attr(el, it->tag_len, "type", type, sizeof(type)) < 0)
		type[0] = '\0';
	if (strcmp(type, "error") == 0) {
		if (muc_in_flight(m))
			muc_join_failed(ch, m, &ch->cnt.muc_join_errors);
		return 0;
	}
	if (!muc_status(el, it->len, "110")) {
		ch->cnt.muc_presences++;
		return 0;
	}
	if (m->state == MUC_FAILED && type[0] == '\0') {
		ch->cnt.muc_late_joins++;
		m->state = MUC_LATE;
		return 0;
	}
	if (m->state != MUC_JOINING || type[0] != '\0')
		return 0;
	if (muc_status(el, it->len, "201")) {
		ch->cnt.muc_created++;
		m->state = MUC_CONFIGURING;
		return muc_send_instant(ch, c);
	}
	if (m->history) {
		m->state = MUC_CONFIGURING;     /* in; want history + subject */
		return 0;
	}
	muc_joined(ch, c, bench_now_ns());
	return 0;
}

/* The answer to the instant-room form. */
static int muc_iq(struct child *ch, struct client *c, const char *el,
		  const struct xs_item *it)
{
	struct muc_client *m = &ch->muc[c - ch->clients];
	char type[16], id[16];
	if (xmlscan_attr(el, it->tag_len, "id", id, sizeof(id)) < 0 ||
	    strcmp(id, "inst") != 0)
		return 2;
	if (m->state != MUC_CONFIGURING)
		return 0;
	if (xmlscan_attr(el, it->tag_len, "type", type, sizeof(type)) < 0 ||
	    strcmp(type, "result") != 0)
		ch->cnt.muc_instant_errors++;
	muc_joined(ch, c, bench_now_ns());
	return 0;
}

/* A groupchat error: the room refused the message "mR.S.Q". */
static void muc_bounce(struct child *ch, const char *el,
		       const struct xs_item *it)
{
	char v[96];
	unsigned r, s, q;
	if (xmlscan_attr(el, it->tag_len, "id", v, sizeof(v)) < 0 ||
	    sscanf(v, "m%u.%u.%u", &r, &s, &q) != 3 || s >= ch->o->clients) {
		ch->cnt.malformed++;
	} else if (r != ch->o->run_id) {
		ch->cnt.stale++;
	} else {
		pairvec_push(&ch->err, s, q);
		ch->cnt.errored++;
		if (ch->muc_members != NULL)
			ch->cnt.muc_err_deliveries +=
				ch->muc_members[bench_muc_room(ch->o, s)];
	}
}

static void u32vec_push(struct u32vec *v, uint32_t x)
{
	if (v->n == v->cap) {
		v->cap = v->cap ? v->cap * 2 : 4096;
		v->v = realloc(v->v, v->cap * sizeof(*v->v));
		if (v->v == NULL)
			bench_fatal("out of memory recording messages");
	}
	v->v[v->n++] = x;
}

/* A delayed message (history): counted for a history joiner that is
 * waiting for its subject, never as a delivery. */
static void muc_history(struct child *ch, struct client *c, uint32_t s)
{
	struct muc_client *m = &ch->muc[c - ch->clients];
	uint32_t i = client_index(ch, c);
	if (!m->history || m->state != MUC_CONFIGURING) {
		ch->cnt.muc_delayed_live++;
	} else if (bench_muc_room(ch->o, s) != bench_muc_room(ch->o, i)) {
		ch->cnt.muc_hist_wrong++;
	} else {
		ch->cnt.muc_hist_msgs++;
		m->hist++;
	}
}

static int muc_groupchat(struct child *ch, struct client *c, const char *el,
			 const struct xs_item *it)
{
	struct muc_client *m = &ch->muc[c - ch->clients];
	char v[96];
	size_t tl;
	unsigned s, q, r;
	long long t;
	const char *body = xmlscan_text(el, it->len, "body", &tl);
	if (body == NULL) {
		if (!xmlscan_text(el, it->len, "subject", &tl) &&
		    memmem(el, it->len, "<subject/>", 10) == NULL) {
			ch->cnt.muc_other++;
			return 0;
		}
		ch->cnt.muc_subjects++;
		if (m->history && m->state == MUC_CONFIGURING)
			muc_joined(ch, c, bench_now_ns());
		return 0;
	}
	tl = tl < sizeof(v) - 1 ? tl : sizeof(v) - 1;
	memcpy(v, body, tl);
	v[tl] = '\0';
	if (sscanf(v, "seq:%u:%u:%lld:%u:", &s, &q, &t, &r) != 4 ||
	    s >= ch->o->clients) {
		ch->cnt.malformed++;
		return 0;
	}
	bool delayed = memmem(el, it->len, NS_DELAY, sizeof(NS_DELAY) - 1);
	if (r != ch->o->run_id) {
		if (delayed && m->history)
			ch->cnt.muc_hist_wrong++;
		else
			ch->cnt.stale++;
		return 0;
	}
	if (delayed) {
		muc_history(ch, c, s);
		return 0;
	}
	int64_t lat = bench_now_ns() - t;
	hist_add(ch->lat_hist, lat > 0 ? (uint64_t)lat / 1000 : 0);
	pairvec_push(&ch->rx, s, q);
	u32vec_push(&ch->rxto, client_index(ch, c));
	ch->cnt.received++;
	ch->cnt.t_last_rx = bench_now_ns();
	return 0;
}

int muc_element(struct child *ch, struct client *c, const char *el,
		const struct xs_item *it)
{
	char type[16];
	size_t len = it->len;
	if (xmlscan_is(el, len, "presence"))
		return muc_presence(ch, c, el, it);
	if (xmlscan_is(el, len, "iq"))
		return muc_iq(ch, c, el, it);
	if (!xmlscan_is(el, len, "message"))
		return 2;
	if (xmlscan_attr(el, it->tag_len, "type", type, sizeof(type)) < 0)
		type[0] = '\0';
	if (strcmp(type, "error") == 0) {
		muc_bounce(ch, el, it);
		return 0;
	}
	if (strcmp(type, "groupchat") != 0) {
		ch->cnt.muc_other++;
		return 0;
	}
	return muc_groupchat(ch, c, el, it);
}

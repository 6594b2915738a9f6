/*
 * fence.c - the replay fence of the cluster's messages (fence.h).
 * Failure policy: nothing fails here; a trailer that does not parse is
 * -1 with a static reason, a replay is a verdict, and the caller counts
 * and logs.
 */
#include "fence.h"
#include "wire.h"

#include <string.h>
#include <time.h>

size_t fence_put(uint8_t *out, const struct fence_stamp *st)
{
	size_t n = strnlen(st->node, FENCE_NAME_MAX);
	memcpy(out, st->node, n);
	out[n] = (uint8_t)n;
	wire_put_u64(out + n + 1, st->run);
	wire_put_u64(out + n + 9, st->seq);
	wire_put_u64(out + n + 17, (uint64_t)st->sent_ms);
	return n + FENCE_FIXED;
}

int fence_take(const uint8_t *msg, size_t len, struct fence_stamp *st,
	       size_t *payload_r, const char **error_r)
{
	memset(st, 0, sizeof(*st));
	if (len < FENCE_FIXED) {
		*error_r = "no replay stamp";
		return -1;
	}
	const uint8_t *f = msg + len - FENCE_FIXED;
	size_t n = f[0];
	if (n == 0 || n > FENCE_NAME_MAX || n > len - FENCE_FIXED) {
		*error_r = "bad sender name in the replay stamp";
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if (!wire_name_char((f - n)[i])) {
			*error_r = "bad sender name in the replay stamp";
			return -1;
		}
	memcpy(st->node, f - n, n);
	st->node[n] = '\0';
	st->run = wire_get_u64(f + 1);
	st->seq = wire_get_u64(f + 9);
	uint64_t sent = wire_get_u64(f + 17);
	if (st->run == 0 || st->seq == 0) {
		*error_r = "zero run or sequence in the replay stamp";
		return -1;
	}
	/* a time a clock can show: the skew arithmetic cannot overflow */
	if (sent > (uint64_t)INT64_MAX / 2) {
		*error_r = "bad time in the replay stamp";
		return -1;
	}
	st->sent_ms = (int64_t)sent;
	*payload_r = len - FENCE_FIXED - n;
	return 0;
}

void fence_init(struct fence *f, int64_t skew_ms)
{
	memset(f, 0, sizeof(*f));
	f->skew_ms = skew_ms;
}

static struct fence_peer *fence_find(struct fence *f, const char *node)
{
	for (unsigned i = 0; i < f->n; i++)
		if (strcmp(f->p[i].node, node) == 0)
			return &f->p[i];
	return NULL;
}

/* Room for a sender: a free place, else the one heard least lately
 * (only nodes of the cluster can sign, so the table holds real names;
 * one forgotten is asked for its clock again at its next message). */
static struct fence_peer *fence_add(struct fence *f, const char *node)
{
	struct fence_peer *p = &f->p[0];
	if (f->n < FENCE_PEERS)
		p = &f->p[f->n++];
	else
		for (unsigned i = 1; i < FENCE_PEERS; i++)
			if (f->p[i].heard_ms < p->heard_ms)
				p = &f->p[i];
	memset(p, 0, sizeof(*p));
	memcpy(p->node, node, strnlen(node, FENCE_NAME_MAX));
	return p;
}

/* A run we have not seen: taken only when stamped near our clock. */
static int fence_clock_ok(const struct fence *f, const struct fence_stamp *st,
			  int64_t now_ms)
{
	/* both in 0 .. INT64_MAX / 2 (fence_take, a real clock) */
	int64_t d = st->sent_ms - now_ms;
	return d <= f->skew_ms && d >= -f->skew_ms;
}

/* seq within the run's window: a new top, or a place not taken yet. */
static enum fence_verdict fence_window(struct fence_peer *p, uint64_t seq)
{
	if (seq > p->top) {
		uint64_t shift = seq - p->top;
		p->mask = shift >= FENCE_WINDOW ? 1 : (p->mask << shift) | 1;
		p->top = seq;
		return FENCE_OK;
	}
	uint64_t back = p->top - seq;
	if (back >= FENCE_WINDOW || (p->mask & (1ULL << back)))
		return FENCE_REPLAY;
	p->mask |= 1ULL << back;
	return FENCE_OK;
}

enum fence_verdict fence_check(struct fence *f, const struct fence_stamp *st,
			       int64_t now_ms)
{
	struct fence_peer *p = fence_find(f, st->node);
	if (p != NULL && st->run < p->run)
		return FENCE_OLD_RUN;
	if (f->clock_always && !fence_clock_ok(f, st, now_ms))
		return FENCE_CLOCK;
	if (p == NULL || st->run > p->run) {
		if (!fence_clock_ok(f, st, now_ms))
			return FENCE_CLOCK;
		if (p == NULL)
			p = fence_add(f, st->node);
		p->run = st->run;
		p->top = st->seq;
		p->mask = 1;
		p->heard_ms = now_ms;
		return FENCE_OK;
	}
	enum fence_verdict v = fence_window(p, st->seq);
	if (v == FENCE_OK)
		p->heard_ms = now_ms;
	return v;
}

const char *fence_verdict_text(enum fence_verdict v)
{
	switch (v) {
	case FENCE_OK:
		return "fresh";
	case FENCE_REPLAY:
		return "a copy of a message taken already (replayed)";
	case FENCE_OLD_RUN:
		return "from an earlier run of its node (replayed, or its "
		       "clock went back across a restart)";
	case FENCE_CLOCK:
		return "stamped further from our clock than "
		       "cluster.clock_skew (replayed, or the clocks differ)";
	}
	return "?";
}

int64_t fence_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t fence_wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

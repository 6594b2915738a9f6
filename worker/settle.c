/*
 * settle.c - frames from other nodes, held until done with (settle.h).
 *
 * Tokens are u32 and compared by their difference (they wrap after
 * 2^32 frames).  The ring holds a count of holds per token from base
 * (the oldest not done with) to next (one past the last read); a frame
 * whose count falls to 0 goes on the done list and, once at the head,
 * moves base on.  The done list is what the next report names beyond
 * base: the bridge frees those entries out of order, so one slow reader
 * does not keep every later frame unacknowledged.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "ipc.h"
#include "log.h"
#include "settle.h"

/* A token ahead of the next expected by less than this skips the ones
 * between (read by this slot's previous process); any other is a new
 * numbering (a new bridge). */
#define SETTLE_SKIP_MAX (1u << 20)

/* What a borrowed hold's epoch says (settle_hold): its token is the
 * borrowed frame's index + 1, not a token of ours. */
#define SETTLE_BORROWED UINT32_MAX

struct settle_lent {
	uint32_t id;
	uint16_t slot;
	bool live;              /* false: returned (removed lazily) */
	int64_t since_ms;
	struct settle_list holds;
};

/* Returns per IPC_FRAME_LENT_DONE frame. */
#define SETTLE_RETURNS_MAX 16384u

void settle_init(struct settle *s, bool fresh)
{
	memset(s, 0, sizeof(*s));
	s->fresh = fresh;
	s->dirty = fresh;
	s->behind_ok = true;
	/* lend ids from a start of their own per process, so that a late
	 * return meant for this slot's previous process names no lend of
	 * ours (or, at worst, lets one go early) */
	s->next_lend = (uint32_t)getpid() * 2654435761u;
}

void settle_free(struct settle *s)
{
	for (size_t i = 0; i < s->nlent; i++)
		free(s->lent[i].holds.v);
	free(s->lent);
	free(s->marks);
	free(s->borrow);
	free(s->ret);
	free(s->refs);
	free(s->done);
	memset(s, 0, sizeof(*s));
}

static void done_add(struct settle *s, uint32_t from, uint32_t to)
{
	s->dirty = true;
	if (s->ndone > 0 && s->done[s->ndone - 1].to + 1 == from) {
		s->done[s->ndone - 1].to = to;
		return;
	}
	if (s->ndone == s->done_cap) {
		size_t cap = s->done_cap ? s->done_cap * 2 : 64;
		struct settle_range *d = realloc(s->done, cap * sizeof(*d));
		if (d == NULL) {
			/* the range is said with base once it reaches it */
			log_warn("cluster: no memory to list settled frames");
			return;
		}
		s->done = d;
		s->done_cap = cap;
	}
	s->done[s->ndone++] = (struct settle_range){ from, to };
}

static uint32_t *ref_at(struct settle *s, size_t i)
{
	return &s->refs[(s->head + i) % s->cap];
}

/* Tokens from the oldest held to the last read, at most: a hard bound
 * under settle_tick's (which lets go of what was read more than
 * cluster.hold_time ago): 16 MiB of the ring, 17 minutes of 4,000
 * frames a second.  Past it the oldest is let go; its holder's release
 * is then ignored, as for a token below base. */
#define SETTLE_RING_MAX (1u << 22)

static void ring_pop_done(struct settle *s);

static void ring_force_head(struct settle *s)
{
	s->head = (s->head + 1) % s->cap;
	s->n--;
	s->base++;
	s->forced++;
	s->dirty = true;
	ring_pop_done(s);
}

static int ring_push(struct settle *s, uint32_t refs)
{
	if (s->n >= SETTLE_RING_MAX && !s->adopting)
		ring_force_head(s);
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 256;
		uint32_t *v = malloc(cap * sizeof(*v));
		if (v == NULL)
			return -1;
		for (size_t i = 0; i < s->n; i++)
			v[i] = *ref_at(s, i);
		free(s->refs);
		s->refs = v;
		s->cap = cap;
		s->head = 0;
	}
	*ref_at(s, s->n) = refs;
	s->n++;
	return 0;
}

/* The head's frames done with: base moves on. */
static void ring_pop_done(struct settle *s)
{
	uint32_t before = s->base;
	while (s->n > 0 && s->refs[s->head] == 0) {
		s->head = (s->head + 1) % s->cap;
		s->n--;
		s->base++;
	}
	if (s->base != before)
		s->dirty = true;
}

void settle_begin(struct settle *s, uint32_t token)
{
	s->cur = 0;
	s->cur_borrow = 0;
	if (token == 0)
		return;
	if (!s->started) {
		s->started = true;
		s->base = s->next = token;
	} else if (token != s->next) {
		uint32_t skip = token - s->next;
		if (skip < SETTLE_SKIP_MAX && s->n == 0) {
			s->base = s->next = token;
			s->dirty = true;
		} else if (skip < SETTLE_SKIP_MAX) {
			done_add(s, s->next, token - 1);
			for (; s->next != token; s->next++)
				if (ring_push(s, 0) < 0)
					break;
			if (s->next != token) {     /* out of memory */
				s->n = 0;
				s->base = s->next = token;
			}
		} else if (s->behind_ok && s->next - token <= SETTLE_SKIP_MAX) {
			/* behind: the datagram this slot's previous process
			 * died in, handed to us once more (shm/queue.c) after
			 * we adopted its journals: routed under its token,
			 * held on if it is still in the ring, else (done with
			 * already) under none */
			size_t i = (size_t)(token - s->base);
			if (i < s->n) {
				(*ref_at(s, i))++;
				s->cur = token;
			}
			return;
		} else {
			/* a new bridge numbers from elsewhere: what we hold
			 * of the old one's it no longer waits for */
			s->epoch++;
			s->n = 0;
			s->head = 0;
			s->ndone = 0;
			s->nmarks = 0;      /* of the old numbering */
			s->base = s->next = token;
			s->dirty = true;
		}
	}
	s->behind_ok = false;
	if (ring_push(s, 1) < 0) {
		log_warn("cluster: no memory to hold frame %u: settled now",
			 token);
		s->next = token + 1;
		if (s->n == 0)
			s->base = s->next;
		else
			done_add(s, token, token);
		s->dirty = true;
		return;
	}
	s->next = token + 1;
	s->cur = token;
	s->dirty = true;            /* last read moved */
}

void settle_hold(struct settle *s, struct settle_hold *h)
{
	h->token = 0;
	if (s->cur_borrow != 0) {
		s->borrow[s->cur_borrow - 1].refs++;
		h->token = s->cur_borrow;
		h->epoch = SETTLE_BORROWED;
		s->held_total++;
		return;
	}
	if (s->cur == 0)
		return;
	size_t i = (size_t)(s->cur - s->base);
	if (i >= s->n)
		return;
	(*ref_at(s, i))++;
	h->token = s->cur;
	h->epoch = s->epoch;
	s->held_total++;
}

static void release_token(struct settle *s, uint32_t token)
{
	size_t i = (size_t)(token - s->base);
	if (i >= s->n)
		return;         /* of a numbering before this one */
	uint32_t *r = ref_at(s, i);
	if (*r == 0 || --*r > 0 || s->adopting)
		return;         /* adopting: another journal may hold it yet
				   (settle_adopt_end says what is done) */
	done_add(s, token, token);
	ring_pop_done(s);
}

uint32_t settle_token(const struct settle *s)
{
	return s->cur_borrow != 0 ? 0 : s->cur;
}

/* Room for one more entry at the end of l: 0, or -1 without memory. */
static int list_room(struct settle_list *l)
{
	if (l->head > 0 && l->n == l->cap) {    /* room at the front */
		memmove(l->v, l->v + l->head, (l->n - l->head) * sizeof(*l->v));
		l->n -= l->head;
		l->head = 0;
	}
	if (l->n == l->cap) {
		unsigned cap = l->cap ? l->cap * 2 : 8;
		struct settle_held *v = realloc(l->v, cap * sizeof(*v));
		if (v == NULL)
			return -1;
		l->v = v;
		l->cap = cap;
	}
	return 0;
}

/* ---- adoption ------------------------------------------------------------ */

void settle_adopt_span(struct settle *s, uint32_t token)
{
	if (token == 0)
		return;
	if (!s->adopt_any) {
		s->adopt_any = true;
		s->adopt_lo = s->adopt_hi = token;
		return;
	}
	if ((int32_t)(token - s->adopt_lo) < 0)
		s->adopt_lo = token;
	if ((int32_t)(token - s->adopt_hi) > 0)
		s->adopt_hi = token;
}

void settle_adopt_begin(struct settle *s)
{
	uint32_t span = s->adopt_hi - s->adopt_lo + 1;
	if (!s->adopt_any || s->started)
		return;
	if (span > SETTLE_SKIP_MAX) {
		log_warn("cluster: adopted journals name frames %u apart: "
			 "not held", span);
		return;
	}
	s->started = true;
	s->base = s->next = s->adopt_lo;
	s->adopting = true;     /* no bound lets the span's head go */
	for (uint32_t k = 0; k < span; k++) {
		if (ring_push(s, 0) < 0) {
			log_warn("cluster: no memory to hold adopted frames");
			s->n = 0;
			s->started = false;
			s->adopting = false;
			return;
		}
	}
	s->next = s->adopt_hi + 1;
}

void settle_adopt_hold(struct settle *s, struct settle_list *l, uint64_t key,
		       uint32_t token)
{
	size_t i = (size_t)(token - s->base);
	if (!s->adopting || token == 0 || i >= s->n)
		return;
	if (list_room(l) < 0)
		return;         /* done with, as before adoption held */
	(*ref_at(s, i))++;
	s->held_total++;
	l->v[l->n++] = (struct settle_held){ key, { token, s->epoch } };
}

void settle_adopt_end(struct settle *s)
{
	if (!s->adopting)
		return;
	s->adopting = false;
	for (size_t i = 0; i < s->n; i++)
		if (*ref_at(s, i) == 0)
			done_add(s, s->base + (uint32_t)i, s->base + (uint32_t)i);
	s->adopted_report = true;
	s->dirty = true;
	/* base stays at the span's start for the first report: the bridge
	 * reads the adopted span from it (ring_pop_done after it) */
}

/* Tell slot, at the end of this turn, that we are done with id. */
static void settle_return_now(struct settle *s, uint16_t slot, uint32_t id)
{
	if (s->nret == s->ret_cap) {
		size_t cap = s->ret_cap ? s->ret_cap * 2 : 64;
		struct settle_return *r = realloc(s->ret, cap * sizeof(*r));
		if (r == NULL) {
			log_warn("cluster: no memory to return a frame to w%u: "
				 "it lets go after cluster.hold_time", slot);
			return;
		}
		s->ret = r;
		s->ret_cap = cap;
	}
	s->ret[s->nret++] = (struct settle_return){ slot, id };
}

static void borrow_release(struct settle *s, uint32_t i1)
{
	if (i1 == 0 || i1 > s->nborrow)
		return;
	struct settle_borrow *b = &s->borrow[i1 - 1];
	if (b->refs == 0 || --b->refs > 0)
		return;
	/* done with: its lender is told; the entry is free again */
	settle_return_now(s, b->slot, b->id);
	b->next_free = s->borrow_free;
	s->borrow_free = i1;
}

void settle_release(struct settle *s, struct settle_hold *h)
{
	if (h->token != 0 && h->epoch == SETTLE_BORROWED)
		borrow_release(s, h->token);
	else if (h->token != 0 && h->epoch == s->epoch)
		release_token(s, h->token);
	h->token = 0;
}

void settle_end(struct settle *s)
{
	if (s->cur_borrow != 0)
		borrow_release(s, s->cur_borrow);
	else if (s->cur != 0)
		release_token(s, s->cur);
	s->cur = 0;
	s->cur_borrow = 0;
}

bool settle_routing(const struct settle *s)
{
	return s->cur != 0 || s->cur_borrow != 0;
}

/* ---- a keeper's holds ---------------------------------------------- */

void settle_list_hold(struct settle *s, struct settle_list *l, uint64_t key)
{
	if (!settle_routing(s))
		return;
	if (list_room(l) < 0) {
		log_warn("cluster: no memory to hold a frame until done with: "
			 "settled now");
		return;
	}
	struct settle_held *e = &l->v[l->n];
	settle_hold(s, &e->h);
	if (e->h.token == 0)
		return;
	e->key = key;
	l->n++;
}

struct settle_held *settle_list_first(struct settle_list *l)
{
	return l->head < l->n ? &l->v[l->head] : NULL;
}

void settle_list_release_first(struct settle *s, struct settle_list *l)
{
	if (l->head >= l->n)
		return;
	settle_release(s, &l->v[l->head++].h);
	if (l->head == l->n)
		l->n = l->head = 0;
}

void settle_list_split(struct settle_list *l, uint64_t above,
		       struct settle_list *out)
{
	unsigned k = l->n;
	memset(out, 0, sizeof(*out));
	while (k > l->head && l->v[k - 1].key > above)
		k--;
	if (k == l->n)
		return;
	out->v = malloc((l->n - k) * sizeof(*out->v));
	if (out->v != NULL) {
		memcpy(out->v, l->v + k, (l->n - k) * sizeof(*out->v));
		out->n = out->cap = l->n - k;
		l->n = k;
		return;
	}
	/* no memory to carry them: they stay here (released with the
	 * rest, once the caller is done: the stanzas go elsewhere) */
	log_warn("cluster: no memory to carry holds: settled now");
}

void settle_list_release_all(struct settle *s, struct settle_list *l)
{
	while (l->head < l->n)
		settle_release(s, &l->v[l->head++].h);
	l->n = l->head = 0;
}

void settle_list_free(struct settle *s, struct settle_list *l)
{
	settle_list_release_all(s, l);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

struct settle_at settle_enter(struct settle *s, const struct settle_hold *h)
{
	struct settle_at was = { s->cur, s->cur_borrow };
	s->cur = 0;
	s->cur_borrow = 0;
	if (h->token == 0)
		return was;
	if (h->epoch == SETTLE_BORROWED) {
		if (h->token <= s->nborrow && s->borrow[h->token - 1].refs > 0)
			s->cur_borrow = h->token;
	} else if (h->epoch == s->epoch &&
		   (size_t)(h->token - s->base) < s->n) {
		s->cur = h->token;
	}
	return was;
}

void settle_leave(struct settle *s, struct settle_at was)
{
	s->cur = was.cur;
	s->cur_borrow = was.borrow;
}

/* ---- lending ----------------------------------------------------------- */

/* The lent entry with id, or NULL (ids grow from the first entry's, so
 * their distance from it orders them). */
static struct settle_lent *lent_find(struct settle *s, uint32_t id)
{
	size_t lo = 0, hi = s->nlent;
	if (s->nlent == 0)
		return NULL;
	uint32_t first = s->lent[0].id, d = id - first;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint32_t m = s->lent[mid].id - first;
		if (m == d)
			return s->lent[mid].live ? &s->lent[mid] : NULL;
		if (m < d)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Drop returned entries once they are most of the array (each
 * compaction copies the live ones, paid for by as many returns; lookups
 * skip the dead by their flag). */
static void lent_compact(struct settle *s)
{
	if (s->lent_live == 0) {
		s->nlent = 0;
		return;
	}
	if (s->nlent - s->lent_live <= s->lent_live)
		return;
	size_t out = 0;
	for (size_t i = 0; i < s->nlent; i++)
		if (s->lent[i].live)
			s->lent[out++] = s->lent[i];
	s->nlent = out;
}

static void lent_release(struct settle *s, struct settle_lent *e)
{
	settle_list_free(s, &e->holds);
	e->live = false;
	s->lent_live--;
	lent_compact(s);
}

static struct settle_lent *lent_new(struct settle *s, uint16_t slot,
				    int64_t now_ms)
{
	if (s->nlent == s->lent_cap) {
		size_t cap = s->lent_cap ? s->lent_cap * 2 : 16;
		struct settle_lent *v = realloc(s->lent, cap * sizeof(*v));
		if (v == NULL)
			return NULL;
		s->lent = v;
		s->lent_cap = cap;
	}
	if (++s->next_lend == 0)
		s->next_lend = 1;       /* 0 is no token */
	struct settle_lent *e = &s->lent[s->nlent];
	memset(e, 0, sizeof(*e));
	e->id = s->next_lend;
	e->slot = slot;
	e->live = true;
	e->since_ms = now_ms;
	return e;
}

uint32_t settle_lend(struct settle *s, uint16_t slot, int64_t now_ms)
{
	if (!settle_routing(s))
		return 0;
	struct settle_lent *e = lent_new(s, slot, now_ms);
	if (e == NULL) {
		log_warn("cluster: no memory to lend a frame to w%u: settled "
			 "as handed on", slot);
		return 0;
	}
	settle_list_hold(s, &e->holds, 0);
	if (e->holds.n == 0) {
		free(e->holds.v);
		return 0;
	}
	s->nlent++;
	s->lent_live++;
	return e->id;
}

uint32_t settle_lend_list(struct settle *s, uint16_t slot,
			  struct settle_list *l, int64_t now_ms)
{
	if (settle_list_first(l) == NULL)
		return 0;
	struct settle_lent *e = lent_new(s, slot, now_ms);
	if (e == NULL) {
		log_warn("cluster: no memory to lend frames to w%u: kept "
			 "until they time out", slot);
		return 0;
	}
	e->holds = *l;
	memset(l, 0, sizeof(*l));
	s->nlent++;
	s->lent_live++;
	return e->id;
}

void settle_returned(struct settle *s, uint16_t slot, uint32_t id)
{
	struct settle_lent *e = lent_find(s, id);
	if (e != NULL && e->slot == slot)
		lent_release(s, e);
}

void settle_lend_undo(struct settle *s, uint32_t id, struct settle_list *l)
{
	struct settle_lent *e = lent_find(s, id);
	if (e == NULL)
		return;
	if (l != NULL && settle_list_first(l) == NULL) {
		free(l->v);
		*l = e->holds;
		memset(&e->holds, 0, sizeof(e->holds));
	}
	lent_release(s, e);
}

size_t settle_lent_expire(struct settle *s, int64_t now_ms, int64_t max_ms)
{
	size_t k = 0;
	for (size_t i = 0; i < s->nlent; i++) {
		struct settle_lent *e = &s->lent[i];
		if (!e->live || now_ms - e->since_ms < max_ms)
			continue;
		settle_list_free(s, &e->holds);
		e->live = false;
		s->lent_live--;
		k++;
	}
	if (k > 0)
		lent_compact(s);
	return k;
}

size_t settle_lent_pending(const struct settle *s)
{
	return s->lent_live;
}

void settle_begin_borrowed(struct settle *s, uint16_t slot, uint32_t id)
{
	s->cur = 0;
	s->cur_borrow = 0;
	uint32_t i1 = s->borrow_free;
	if (i1 != 0) {
		s->borrow_free = s->borrow[i1 - 1].next_free;
	} else {
		if (s->nborrow == s->borrow_cap) {
			size_t cap = s->borrow_cap ? s->borrow_cap * 2 : 16;
			struct settle_borrow *v = realloc(s->borrow,
							  cap * sizeof(*v));
			if (v == NULL) {
				log_warn("cluster: no memory to hold a frame "
					 "from w%u: done with once routed",
					 slot);
				settle_return_now(s, slot, id);
				return;
			}
			s->borrow = v;
			s->borrow_cap = cap;
		}
		i1 = (uint32_t)++s->nborrow;
	}
	s->borrow[i1 - 1] = (struct settle_borrow){ slot, id, 1, 0 };
	s->cur_borrow = i1;
}

void settle_returns_again(struct settle *s, uint16_t slot,
			  const struct buf *ids)
{
	const unsigned char *p = (const unsigned char *)buf_head(ids);
	for (size_t i = 0; i + sizeof(uint32_t) <= buf_used(ids);
	     i += sizeof(uint32_t)) {
		uint32_t id;
		memcpy(&id, p + i, sizeof(id));
		settle_return_now(s, slot, id);
	}
}

int settle_returns(struct settle *s, uint16_t *slot_r, struct buf *out)
{
	size_t k = 0, n = 0;
	buf_consume(out, buf_used(out));
	if (s->nret == 0)
		return 0;
	*slot_r = s->ret[0].slot;
	for (size_t i = 0; i < s->nret; i++) {
		if (s->ret[i].slot == *slot_r && n < SETTLE_RETURNS_MAX &&
		    buf_append(out, &s->ret[i].id, sizeof(uint32_t)) == 0) {
			n++;
			continue;
		}
		s->ret[k++] = s->ret[i];
	}
	s->nret = k;
	return n > 0;
}

size_t settle_tick(struct settle *s, int64_t now_ms, int64_t hold_ms)
{
	size_t forced = 0, k = 0;
	if (!s->started || s->adopting)
		return 0;
	if (s->nmarks == 0 || s->marks[s->nmarks - 1].token != s->next) {
		if (s->nmarks == s->marks_cap) {
			size_t cap = s->marks_cap ? s->marks_cap * 2 : 64;
			struct settle_mark *m = realloc(s->marks,
							cap * sizeof(*m));
			if (m == NULL)
				return 0;       /* the next second */
			s->marks = m;
			s->marks_cap = cap;
		}
		s->marks[s->nmarks++] = (struct settle_mark){ s->next, now_ms };
	}
	/* the newest mark at least hold_ms old: every token before it was
	 * read before now - hold_ms */
	while (k < s->nmarks && now_ms - s->marks[k].ms >= hold_ms)
		k++;
	if (k == 0)
		return 0;
	uint32_t limit = s->marks[k - 1].token;
	memmove(s->marks, s->marks + (k - 1),
		(s->nmarks - (k - 1)) * sizeof(*s->marks));
	s->nmarks -= k - 1;
	while (s->n > 0 && (int32_t)(limit - s->base) > 0) {
		ring_force_head(s);
		forced++;
	}
	return forced;
}

size_t settle_pending(const struct settle *s)
{
	size_t k = 0;
	for (size_t i = 0; i < s->n; i++)
		if (s->refs[(s->head + i) % s->cap] != 0)
			k++;
	return k;
}

/* Ranges in order from base, adjacent ones merged, those wholly before
 * base dropped (base says them). */
static uint32_t sort_base;

static int range_cmp(const void *a, const void *b)
{
	uint32_t x = ((const struct settle_range *)a)->from - sort_base;
	uint32_t y = ((const struct settle_range *)b)->from - sort_base;
	return x < y ? -1 : x > y;
}

static void done_normalize(struct settle *s)
{
	size_t k = 0;
	if (s->ndone == 0)
		return;
	for (size_t i = 0; i < s->ndone; i++) {
		struct settle_range r = s->done[i];
		if (s->started && (int32_t)(r.to - s->base) < 0)
			continue;
		if (s->started && (int32_t)(r.from - s->base) < 0)
			r.from = s->base;
		s->done[k++] = r;
	}
	s->ndone = k;
	sort_base = s->base;
	qsort(s->done, s->ndone, sizeof(*s->done), range_cmp);
	k = 0;
	for (size_t i = 0; i < s->ndone; i++) {
		if (k > 0 && s->done[k - 1].to + 1 == s->done[i].from) {
			s->done[k - 1].to = s->done[i].to;
			continue;
		}
		s->done[k++] = s->done[i];
	}
	s->ndone = k;
}

int settle_report(struct settle *s, struct buf *out, size_t *used_r)
{
	struct ipc_settled h = { 0 };
	size_t k;
	*used_r = 0;
	if (!s->dirty)
		return 0;
	done_normalize(s);
	if (s->fresh)
		h.flags |= IPC_SETTLED_FRESH;
	if (s->adopted_report)
		h.flags |= IPC_SETTLED_ADOPTED;
	if (s->started) {
		h.flags |= IPC_SETTLED_BASE;
		h.base = s->base;
		h.last = s->next - 1;
	}
	k = s->ndone < IPC_SETTLED_RANGES_MAX ? s->ndone
					      : IPC_SETTLED_RANGES_MAX;
	h.nranges = (uint32_t)k;
	buf_consume(out, buf_used(out));
	if (buf_append(out, &h, sizeof(h)) < 0)
		return -1;
	for (size_t i = 0; i < k; i++) {
		uint32_t v[2] = { s->done[i].from, s->done[i].to };
		if (buf_append(out, v, sizeof(v)) < 0)
			return -1;
	}
	*used_r = k;
	return 1;
}

void settle_reported(struct settle *s, size_t used)
{
	if (used > s->ndone)
		used = s->ndone;
	if (used > 0)
		memmove(s->done, s->done + used,
			(s->ndone - used) * sizeof(*s->done));
	s->ndone -= used;
	s->fresh = false;
	s->dirty = s->ndone > 0;
	if (s->adopted_report) {
		s->adopted_report = false;
		ring_pop_done(s);
		s->dirty = true;        /* the new base */
	}
}

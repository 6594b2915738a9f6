/*
 * members.c - the member list, room ownership by rendezvous hashing,
 * and the coordinator's decisions (members.h).  Pure functions: the
 * bridge reads and writes the key-value bucket and keeps the clocks.
 */
#include "members.h"
#include "wire.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int members_format(const struct members *ms, char *out, size_t size)
{
	size_t off = 0;
	int n = snprintf(out, size, "epoch %" PRIu64 "\n", ms->epoch);
	if (n < 0 || (size_t)n >= size)
		return -1;
	off = (size_t)n;
	for (unsigned i = 0; i < ms->n; i++) {
		n = snprintf(out + off, size - off, "%s %016" PRIx64 "\n",
			     ms->m[i].name, ms->m[i].incarnation);
		if (n < 0 || (size_t)n >= size - off)
			return -1;
		off += (size_t)n;
	}
	return (int)off;
}

/* One decimal or 16-hex-digit number ending at a '\n' or ' '. */
static int parse_u64(const char **p, const char *end, int base, char stop,
		     uint64_t *v_r)
{
	const char *s = *p;
	uint64_t v = 0;
	size_t digits = 0;
	for (; s < end && *s != stop; s++, digits++) {
		unsigned d;
		if (*s >= '0' && *s <= '9')
			d = (unsigned)(*s - '0');
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = (unsigned)(*s - 'a' + 10);
		else
			return -1;
		if (base == 10 && v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * (uint64_t)base + d;
	}
	if (s == end || digits == 0 || (base == 16 && digits != 16) ||
	    (base == 10 && digits > 1 && (*p)[0] == '0'))
		return -1;
	*v_r = v;
	*p = s + 1;
	return 0;
}

int members_lease_format(const struct lease_value *v, char *out, size_t size)
{
	int n = snprintf(out, size, "%016" PRIx64 " %" PRIu64 " %" PRId64
			 "\n", v->incarnation, v->count, v->sent_ms);
	return n < 0 || (size_t)n >= size ? -1 : n;
}

int members_lease_parse(struct lease_value *v, const char *text, size_t len)
{
	const char *p = text, *end = text + len;
	uint64_t sent;
	memset(v, 0, sizeof(*v));
	if (parse_u64(&p, end, 16, ' ', &v->incarnation) < 0 ||
	    parse_u64(&p, end, 10, ' ', &v->count) < 0 ||
	    parse_u64(&p, end, 10, '\n', &sent) < 0 || p != end ||
	    sent > (uint64_t)INT64_MAX || v->count == 0)
		return -1;
	v->sent_ms = (int64_t)sent;
	return 0;
}

bool members_lease_fresh(const struct lease_value *prev,
			 const struct lease_value *v, int64_t now_ms,
			 int64_t skew_ms)
{
	if (v->sent_ms < now_ms - skew_ms || v->sent_ms > now_ms + skew_ms)
		return false;
	return prev == NULL || prev->incarnation != v->incarnation ||
	       v->count > prev->count;
}

int members_parse(struct members *ms, const char *text, size_t len)
{
	const char *p = text, *end = text + len;
	memset(ms, 0, sizeof(*ms));
	if (len < 6 || memcmp(p, "epoch ", 6) != 0)
		return -1;
	p += 6;
	if (parse_u64(&p, end, 10, '\n', &ms->epoch) < 0)
		return -1;
	while (p < end) {
		const char *sp = memchr(p, ' ', (size_t)(end - p));
		if (sp == NULL || !wire_name_ok(p, (size_t)(sp - p)) ||
		    ms->n == MEMBERS_MAX)
			return -1;
		struct member *m = &ms->m[ms->n];
		memcpy(m->name, p, (size_t)(sp - p));
		m->name[sp - p] = '\0';
		p = sp + 1;
		if (parse_u64(&p, end, 16, '\n', &m->incarnation) < 0)
			return -1;
		/* sorted, no two alike: what members_format writes */
		if (ms->n > 0 && strcmp(ms->m[ms->n - 1].name, m->name) >= 0)
			return -1;
		ms->n++;
	}
	return 0;
}

int members_find(const struct members *ms, const char *name)
{
	for (unsigned i = 0; i < ms->n; i++)
		if (strcmp(ms->m[i].name, name) == 0)
			return (int)i;
	return -1;
}

int members_add(struct members *ms, const char *name, uint64_t incarnation)
{
	int i = members_find(ms, name);
	if (i >= 0) {
		ms->m[i].incarnation = incarnation;
		return 0;
	}
	if (ms->n == MEMBERS_MAX || !wire_name_ok(name, strlen(name)))
		return -1;
	unsigned at = 0;
	while (at < ms->n && strcmp(ms->m[at].name, name) < 0)
		at++;
	memmove(&ms->m[at + 1], &ms->m[at], (ms->n - at) * sizeof(ms->m[0]));
	memset(&ms->m[at], 0, sizeof(ms->m[at]));
	snprintf(ms->m[at].name, sizeof(ms->m[at].name), "%s", name);
	ms->m[at].incarnation = incarnation;
	ms->n++;
	return 0;
}

int members_remove(struct members *ms, const char *name)
{
	int i = members_find(ms, name);
	if (i < 0)
		return -1;
	memmove(&ms->m[i], &ms->m[i + 1],
		(ms->n - (unsigned)i - 1) * sizeof(ms->m[0]));
	ms->n--;
	return 0;
}

/* FNV-1a then a 64-bit finalizer (MurmurHash3's fmix64), so that close
 * names and keys still spread. */
static uint64_t score(const char *name, const char *key, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (const char *s = name; *s != '\0'; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
	h = (h ^ 0xff) * 0x100000001b3ull;  /* a separator no name has */
	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)key[i]) * 0x100000001b3ull;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

int members_owner(const struct members *ms, const char *key, size_t len)
{
	int best = -1;
	uint64_t best_score = 0;
	for (unsigned i = 0; i < ms->n; i++) {
		uint64_t s = score(ms->m[i].name, key, len);
		/* ties (never in practice) go to the lower name */
		if (best < 0 || s > best_score) {
			best = (int)i;
			best_score = s;
		}
	}
	return best;
}

bool members_is_coordinator(const struct members *ms,
			    const struct member_view *views, unsigned nviews,
			    const char *self)
{
	/* the lowest name among self and the members seen up */
	for (unsigned i = 0; i < ms->n; i++) {
		const char *name = ms->m[i].name;
		if (strcmp(name, self) >= 0)
			break;          /* sorted: nobody lower is up */
		for (unsigned v = 0; v < nviews; v++)
			if (views[v].up && strcmp(views[v].name, name) == 0)
				return false;
	}
	return true;
}

bool members_next(const struct members *current,
		  const struct member_view *views, unsigned nviews,
		  int64_t now_ms, int64_t node_timeout_ms, int64_t lease_ms,
		  struct members *next)
{
	bool changed = false;
	*next = *current;
	/* leave: a member whose lease stood still long enough while the
	 * key-value store took writes (a JetStream leader election stops
	 * every renewal, ours too, while reads from the replicas go on:
	 * measured after a partition and after its heal; a clock that ran
	 * through it would drop every member, the coordinator included).
	 * The caller gives a view of every member, its lease clock started
	 * when it began watching (a member it has no view of is not
	 * judged). */
	for (unsigned i = 0; i < current->n; i++) {
		const struct member *m = &current->m[i];
		const struct member_view *v = NULL;
		for (unsigned k = 0; k < nviews; k++)
			if (strcmp(views[k].name, m->name) == 0)
				v = &views[k];
		if (v == NULL || !v->lease_seen)
			continue;
		int64_t from = v->lease_changed_ms > v->judged_from_ms ?
			       v->lease_changed_ms : v->judged_from_ms;
		if (now_ms - from <= node_timeout_ms + lease_ms)
			continue;
		members_remove(next, m->name);
		changed = true;
	}
	/* join: up, with a lease, not in (or with another run) */
	for (unsigned k = 0; k < nviews; k++) {
		const struct member_view *v = &views[k];
		if (!v->up || !v->lease_seen ||
		    now_ms - v->lease_changed_ms > node_timeout_ms)
			continue;
		int i = members_find(next, v->name);
		if (i >= 0 && next->m[i].incarnation == v->incarnation)
			continue;
		if (members_add(next, v->name, v->incarnation) == 0)
			changed = true;
	}
	if (changed)
		next->epoch = current->epoch + 1;
	return changed;
}

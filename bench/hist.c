/*
 * hist.c - log-linear histogram (the HdrHistogram layout): values below
 * 2^HIST_SUB_BITS are exact, above that each power of two is split into
 * 2^HIST_SUB_BITS buckets, so a quantile is within 0.8 % of the truth.
 * Fixed size, so workers send it to the parent as raw bytes.
 * Failure policy: none; values past the top bucket are clamped (max stays
 * exact).
 */
#include "bench.h"

static unsigned hist_index(uint64_t v)
{
	if (v < (1u << HIST_SUB_BITS))
		return (unsigned)v;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);
	if (msb > HIST_MAX_MSB)
		return HIST_BUCKETS - 1;
	unsigned shift = msb - HIST_SUB_BITS;
	return ((shift + 1) << HIST_SUB_BITS) +
	       (unsigned)((v >> shift) - (1u << HIST_SUB_BITS));
}

/* The middle of bucket i. */
static uint64_t hist_value(unsigned i)
{
	if (i < (1u << HIST_SUB_BITS))
		return i;
	unsigned shift = (i >> HIST_SUB_BITS) - 1;
	uint64_t m = (i & ((1u << HIST_SUB_BITS) - 1)) + (1u << HIST_SUB_BITS);
	return (m << shift) + ((1ull << shift) >> 1);
}

void hist_add(struct hist *h, uint64_t v)
{
	h->b[hist_index(v)]++;
	h->count++;
	if (v > h->max)
		h->max = v;
}

void hist_merge(struct hist *into, const struct hist *h)
{
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		into->b[i] += h->b[i];
	into->count += h->count;
	if (h->max > into->max)
		into->max = h->max;
}

uint64_t hist_quantile(const struct hist *h, double q)
{
	if (h->count == 0)
		return 0;
	uint64_t want = (uint64_t)(q * (double)h->count + 0.999999);
	if (want == 0)
		want = 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= want) {
			uint64_t v = hist_value(i);
			return v > h->max ? h->max : v;
		}
	}
	return h->max;
}

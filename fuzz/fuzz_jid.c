/*
 * fuzz_jid.c - JID preparation (lib/jid.c).  Properties:
 *  - the ASCII fast path and libidn agree on every part: same verdict,
 *    same prepared string, same reason (as tests/test_jid.c checks on
 *    random strings);
 *  - preparation is idempotent: prep(prep(x)) == prep(x), for each part
 *    and for whole JIDs (jid_full of a parsed JID parses to itself);
 *  - jid_parse agrees with itself with the fast path on and off.
 * Input: the first byte picks the part for jid_prep_part (the rest is
 * the string, NULs included); the whole input, up to its first NUL, is
 * also parsed as a JID.
 */
#include "fuzz.h"
#include "jid.h"

#include <string.h>

static struct arena fuzz_arena;

static const char *prep(enum jid_part part, const char *s, size_t len,
			int fast, int *rc_r, const char **error_r)
{
	const char *out = NULL;
	jid_fast_ascii = fast;
	*error_r = NULL;
	*rc_r = jid_prep_part(&fuzz_arena, part, s, len, &out, error_r);
	jid_fast_ascii = 1;
	return out;
}

static void check_part(enum jid_part part, const char *s, size_t len)
{
	int rc_fast, rc_slow, rc_again;
	const char *e_fast, *e_slow, *e_again;
	const char *fast = prep(part, s, len, 1, &rc_fast, &e_fast);
	const char *slow = prep(part, s, len, 0, &rc_slow, &e_slow);

	FUZZ_CHECK(rc_fast == rc_slow, "part %d of \"%.*s\": %d (fast) vs %d "
		   "(libidn: %s)", part, (int)len, s, rc_fast, rc_slow,
		   e_slow ? e_slow : "");
	if (rc_fast < 0) {
		FUZZ_CHECK(strcmp(e_fast, e_slow) == 0, "part %d of \"%.*s\": "
			   "\"%s\" vs \"%s\"", part, (int)len, s, e_fast, e_slow);
		return;
	}
	FUZZ_CHECK(strcmp(fast, slow) == 0, "part %d of \"%.*s\": \"%s\" "
		   "(fast) vs \"%s\" (libidn)", part, (int)len, s, fast, slow);
	for (int f = 0; f < 2; f++) {
		const char *again = prep(part, fast, strlen(fast), f, &rc_again,
					 &e_again);
		FUZZ_CHECK(rc_again == 0, "part %d: \"%s\" prepared again "
			   "fails (%s, fast path %d)", part, fast, e_again, f);
		FUZZ_CHECK(strcmp(again, fast) == 0, "part %d: prep(\"%s\") = "
			   "\"%s\" (fast path %d)", part, fast, again, f);
	}
}

static int parse(const char *s, int fast, struct jid *jid_r,
		 const char **error_r)
{
	jid_fast_ascii = fast;
	*error_r = NULL;
	int rc = jid_parse(&fuzz_arena, s, jid_r, error_r);
	jid_fast_ascii = 1;
	return rc;
}

static int same(const char *a, const char *b)
{
	return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

static void check_jid(const char *s)
{
	struct jid fast, slow, again;
	const char *e_fast, *e_slow, *e_again;
	int rc_fast = parse(s, 1, &fast, &e_fast);
	int rc_slow = parse(s, 0, &slow, &e_slow);

	FUZZ_CHECK(rc_fast == rc_slow, "\"%s\": %d (fast) vs %d (libidn: %s)",
		   s, rc_fast, rc_slow, e_slow ? e_slow : "");
	if (rc_fast < 0) {
		FUZZ_CHECK(strcmp(e_fast, e_slow) == 0, "\"%s\": \"%s\" vs "
			   "\"%s\"", s, e_fast, e_slow);
		return;
	}
	FUZZ_CHECK(jid_equal(&fast, &slow), "\"%s\": fast path and libidn "
		   "prepare it differently", s);
	const char *full = jid_full(&fuzz_arena, &fast);
	FUZZ_CHECK(full != NULL, "out of memory");
	for (int f = 0; f < 2; f++) {
		int rc = parse(full, f, &again, &e_again);
		FUZZ_CHECK(rc == 0, "\"%s\" prepared to \"%s\", which does not "
			   "parse (%s, fast path %d)", s, full, e_again, f);
		FUZZ_CHECK(jid_equal(&again, &fast) &&
			   same(again.local, fast.local) &&
			   same(again.resource, fast.resource),
			   "\"%s\" prepared to \"%s\", which prepares to "
			   "\"%s\" (fast path %d)", s, full,
			   jid_full(&fuzz_arena, &again), f);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	if (!ready) {
		arena_init(&fuzz_arena, 4096);
		ready = 1;
	}
	if (size == 0 || size > 8192)
		return 0;
	enum jid_part part = (enum jid_part)(data[0] % 3);
	check_part(part, (const char *)data + 1, size - 1);

	char *s = malloc(size + 1);
	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	check_jid(s);
	free(s);
	arena_reset(&fuzz_arena);
	return 0;
}

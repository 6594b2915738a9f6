/*
 * test_jid.c - JID parsing and preparation (lib/jid.c).  The examples are
 * RFC 7622 section 3.5's; where stringprep (what we use) and PRECIS (what
 * RFC 7622 specifies) disagree, the test pins our behaviour and says so.
 */
#include <string.h>

#include <criterion/criterion.h>

#include "arena.h"
#include "jid.h"

static struct arena arena;

static void setup(void)
{
	arena_init(&arena, 4096);
}

static void teardown(void)
{
	arena_free(&arena);
}

TestSuite(jid, .init = setup, .fini = teardown);

struct jid_case {
	const char *in;
	const char *local;          /* expected, NULL = absent */
	const char *domain;
	const char *resource;
};

static void expect_part(const char *in, const char *what, const char *got,
			const char *want)
{
	if (want == NULL)
		cr_expect_null(got, "%s: %s is \"%s\", want none", in, what,
			       got);
	else if (got == NULL)
		cr_expect_fail("%s: %s missing, want \"%s\"", in, what, want);
	else
		cr_expect_str_eq(got, want, "%s: %s", in, what);
}

static void expect_valid(const struct jid_case *c)
{
	struct jid jid;
	const char *error = NULL;

	if (jid_parse(&arena, c->in, &jid, &error) < 0) {
		cr_expect_fail("%s: rejected: %s", c->in, error);
		return;
	}
	expect_part(c->in, "localpart", jid.local, c->local);
	expect_part(c->in, "domainpart", jid.domain, c->domain);
	expect_part(c->in, "resourcepart", jid.resource, c->resource);
}

static void expect_invalid(const char *in)
{
	struct jid jid;
	const char *error = NULL;

	cr_expect_eq(jid_parse(&arena, in, &jid, &error), -1,
		     "\"%s\" accepted", in);
	if (error != NULL)
		cr_expect_neq(strlen(error), 0);
}

/* RFC 7622 section 3.5, examples 1-15 ("Examples of valid JIDs"). */
Test(jid, rfc7622_valid_examples)
{
	static const struct jid_case cases[] = {
		{ "juliet@example.com", "juliet", "example.com", NULL },
		{ "juliet@example.com/foo", "juliet", "example.com", "foo" },
		{ "juliet@example.com/foo bar", "juliet", "example.com",
		  "foo bar" },
		{ "juliet@example.com/foo@bar", "juliet", "example.com",
		  "foo@bar" },
		{ "foo\\20bar@example.com", "foo\\20bar", "example.com", NULL },
		{ "fussball@example.com", "fussball", "example.com", NULL },
		/* PRECIS keeps "fußball"; Nodeprep folds ß to "ss" */
		{ "fu\xc3\x9f" "ball@example.com", "fussball", "example.com",
		  NULL },
		{ "\xcf\x80@example.com", "\xcf\x80", "example.com", NULL },
		/* Σ folds to σ in both */
		{ "\xce\xa3@example.com/foo", "\xcf\x83", "example.com",
		  "foo" },
		{ "\xcf\x83@example.com/foo", "\xcf\x83", "example.com",
		  "foo" },
		/* PRECIS keeps final sigma ς; Nodeprep folds it to σ */
		{ "\xcf\x82@example.com/foo", "\xcf\x83", "example.com",
		  "foo" },
		{ "king@example.com/\xe2\x99\x9a", "king", "example.com",
		  "\xe2\x99\x9a" },
		{ "example.com", NULL, "example.com", NULL },
		{ "example.com/foobar", NULL, "example.com", "foobar" },
		{ "a.example.com/b@example.net", NULL, "a.example.com",
		  "b@example.net" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_valid(&cases[i]);
}

/* RFC 7622 section 3.5, examples 16-23, where stringprep rejects too. */
Test(jid, rfc7622_invalid_examples)
{
	static const char *const cases[] = {
		"\"juliet\"@example.com",   /* '"' is Nodeprep-prohibited */
		"foo bar@example.com",      /* space is Nodeprep-prohibited */
		"@example.com/",            /* empty localpart and resource */
		"juliet@",                  /* empty domainpart */
		"/foobar",                  /* empty domainpart */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_invalid(cases[i]);
}

/* RFC 7622 section 3.5 examples that stringprep accepts and PRECIS does
 * not (or no longer) reject: our behaviour, pinned. */
Test(jid, rfc7622_examples_where_stringprep_differs)
{
	static const struct jid_case cases[] = {
		/* 18: leading space; removed from the list by erratum 4560 */
		{ "juliet@example.com/ foo", "juliet", "example.com", " foo" },
		/* 20: PRECIS rejects U+2163; Nodeprep's NFKC makes "iv" */
		{ "henr\xe2\x85\xa3@example.com", "henriv", "example.com",
		  NULL },
		/* 21: PRECIS rejects the symbol U+265A; Nodeprep allows it */
		{ "\xe2\x99\x9a@example.com", "\xe2\x99\x9a", "example.com",
		  NULL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_valid(&cases[i]);
}

Test(jid, empty_and_malformed)
{
	static const char *const cases[] = {
		"", "@example.com", "juliet@", "example.com/",
		"henryv@example.com/", "@", "/", "@/", "l@/r",
		"a@b@c",                    /* domain "b@c" */
		"juliet@exa mple.com", "juliet@example..com",
		"juliet@.example.com", "juliet@example.com..", ".",
		"juliet@-example.com", "juliet@example-.com",
		"juliet@under_score.example", "juliet@exa\xe3\x80\x82mple.com",
		"jul<iet@example.com", "jul:iet@example.com",
		"jul&iet@example.com", "jul'iet@example.com",
		"\xff@example.com", "juliet@example.com/\xc0\xaf",
		"juliet@\xed\xa0\x80.com",
		"\xc2\xad@example.com",     /* maps to nothing: empty */
		"[::1", "[zz::1]", "[]", "[192.0.2.1]",
		/* U+0221 was unassigned in Unicode 3.2: JIDs are stored
		 * strings, so stringprep must refuse it */
		"\xc8\xa1@example.com", "example.com/\xc8\xa1",
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_invalid(cases[i]);
}

Test(jid, case_folding)
{
	static const struct jid_case cases[] = {
		{ "JuLiEt@ExAmPlE.CoM/BaLcOnY", "juliet", "example.com",
		  "BaLcOnY" },
		{ "ROMEO@EXAMPLE.NET", "romeo", "example.net", NULL },
		{ "B\xc3\x9c" "CHER.example", NULL, "b\xc3\xbc" "cher.example",
		  NULL },
		/* an A-label becomes the U-label (RFC 7622 section 3.2.1) */
		{ "XN--bcher-kva.example", NULL, "b\xc3\xbc" "cher.example",
		  NULL },
		/* one trailing dot is stripped (RFC 7622 section 3.2) */
		{ "juliet@example.com./r", "juliet", "example.com", "r" },
		{ "[2001:DB8::1]/r", NULL, "[2001:db8::1]", "r" },
		{ "juliet@192.0.2.1", "juliet", "192.0.2.1", NULL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_valid(&cases[i]);
}

/* A string of n bytes of c, in the arena. */
static char *repeat(char c, size_t n, const char *prefix, const char *suffix)
{
	size_t p = strlen(prefix), s = strlen(suffix);
	char *out = arena_alloc(&arena, p + n + s + 1);

	memcpy(out, prefix, p);
	memset(out + p, c, n);
	memcpy(out + p + n, suffix, s + 1);
	return out;
}

Test(jid, part_limits)
{
	struct jid jid;
	const char *error = NULL;

	cr_assert_eq(jid_parse(&arena, repeat('a', 1023, "", "@example.com"),
			       &jid, &error), 0, "%s", error);
	cr_assert_eq(strlen(jid.local), 1023);
	expect_invalid(repeat('a', 1024, "", "@example.com"));
	cr_assert_eq(jid_parse(&arena, repeat('r', 1023, "example.com/", ""),
			       &jid, &error), 0, "%s", error);
	cr_assert_eq(strlen(jid.resource), 1023);
	expect_invalid(repeat('r', 1024, "example.com/", ""));
}

/* The limit applies after preparation (RFC 7622 section 3.1). */
Test(jid, part_limits_after_preparation)
{
	struct jid jid;
	const char *error = NULL;

	/* 1023 'a' + U+00AD (mapped to nothing): 1025 bytes in, 1023 out */
	cr_assert_eq(jid_parse(&arena, repeat('a', 1023, "",
					      "\xc2\xad@example.com"),
			       &jid, &error), 0, "%s", error);
	cr_assert_eq(strlen(jid.local), 1023);
	/* 1021 'A' + "ß": 1023 bytes in, "...ss" is 1023 out */
	cr_assert_eq(jid_parse(&arena, repeat('A', 1021, "",
					      "\xc3\x9f@example.com"),
			       &jid, &error), 0, "%s", error);
	cr_assert_eq(strlen(jid.local), 1023);
	/* 1022 'a' + "ß": 1024 bytes in, 1024 out */
	expect_invalid(repeat('a', 1022, "", "\xc3\x9f@example.com"));
}

/* A domain of n bytes: "a.a.a...." labels, ending with tail. */
static char *long_domain(size_t pairs, const char *tail)
{
	char *d = repeat('a', pairs * 2, "j@", tail);

	for (size_t i = 0; i < pairs; i++)
		d[2 + 2 * i + 1] = '.';
	return d;
}

Test(jid, domain_limits)
{
	struct jid jid;
	const char *error = NULL;
	char label[80];

	/* 511 "a." + "a" = 1023 bytes */
	cr_assert_eq(jid_parse(&arena, long_domain(511, "a"), &jid, &error), 0,
		     "%s", error);
	cr_assert_eq(strlen(jid.domain), 1023);
	/* 511 "a." + "ab" = 1024 bytes */
	expect_invalid(long_domain(511, "ab"));
	/* DNS labels are at most 63 octets */
	memset(label, 'x', 63);
	strcpy(label + 63, ".example");
	cr_assert_eq(jid_parse(&arena, label, &jid, &error), 0, "%s", error);
	memset(label, 'x', 64);
	strcpy(label + 64, ".example");
	expect_invalid(label);
}

Test(jid, bare_full_equal)
{
	struct jid a, b, c, d;
	const char *error = NULL;

	cr_assert_eq(jid_parse(&arena, "Juliet@Example.COM./Balcony", &a,
			       &error), 0);
	cr_assert_eq(jid_parse(&arena, "juliet@example.com/Balcony", &b,
			       &error), 0);
	cr_assert_eq(jid_parse(&arena, "juliet@example.com/balcony", &c,
			       &error), 0);
	cr_assert_eq(jid_parse(&arena, "example.com", &d, &error), 0);
	cr_assert_str_eq(jid_bare(&arena, &a), "juliet@example.com");
	cr_assert_str_eq(jid_full(&arena, &a), "juliet@example.com/Balcony");
	cr_assert_str_eq(jid_bare(&arena, &d), "example.com");
	cr_assert_str_eq(jid_full(&arena, &d), "example.com");
	cr_assert(jid_equal(&a, &b));
	cr_assert_not(jid_equal(&b, &c));   /* resource case is kept */
	cr_assert(jid_bare_equal(&b, &c));
	cr_assert_not(jid_bare_equal(&a, &d));
	d.local = "juliet";
	cr_assert(jid_bare_equal(&a, &d));
	cr_assert_not(jid_equal(&a, &d));   /* resource vs none */
}

Test(jid, prep_part)
{
	const char *out = NULL, *error = NULL;

	cr_assert_eq(jid_prep_part(&arena, JID_PART_LOCAL, "User", 4, &out,
				   &error), 0);
	cr_assert_str_eq(out, "user");
	cr_assert_eq(jid_prep_part(&arena, JID_PART_LOCAL, "us@er", 5, &out,
				   &error), -1);
	cr_assert_str_eq(error, "localpart is not UTF-8 or fails Nodeprep");
	cr_assert_eq(jid_prep_part(&arena, JID_PART_RESOURCE, "a\0b", 3, &out,
				   &error), -1);
	cr_assert_eq(jid_prep_part(&arena, JID_PART_DOMAIN, "", 0, &out,
				   &error), -1);
	cr_assert_str_eq(error, "domainpart is empty");
}

/* The ASCII fast path must agree with libidn on every input: same
 * verdict, same prepared string, same reason.  Random strings over an
 * alphabet rich in the bytes the rules single out, each part and whole
 * JIDs, with the fast path on and off. */
static const char *prep_once(enum jid_part part, const char *s, size_t len,
			     int fast, int *rc_r, const char **error_r)
{
	const char *out = NULL;
	jid_fast_ascii = fast;
	*error_r = NULL;
	*rc_r = jid_prep_part(&arena, part, s, len, &out, error_r);
	jid_fast_ascii = 1;
	return out;
}

Test(jid, ascii_fast_path_agrees_with_libidn)
{
	static const char *const pieces[] = {
		"a", "Z", "q", "0", "9", "-", ".", "@", "/", " ", "\"", "&",
		"'", ":", "<", ">", "\x01", "\x1f", "\x7f", "~", "_", "xn--",
		"XN--", "xn--bcher-kva", "\xc3\xa9", "[", "]", "::1", "..",
		"-.", ".-", "Juliet", "example", "COM",
	};
	unsigned seed = 7;
	char s[96];
	unsigned agreed_fast = 0;
	for (int n = 0; n < 30000; n++) {
		size_t len = 0;
		seed = seed * 1103515245u + 12345u;
		int count = 1 + (int)((seed >> 16) % 8);
		for (int k = 0; k < count; k++) {
			seed = seed * 1103515245u + 12345u;
			const char *p = pieces[(seed >> 16) %
					       (sizeof(pieces) / sizeof(*pieces))];
			size_t pl = strlen(p);
			if (len + pl >= sizeof(s))
				break;
			memcpy(s + len, p, pl);
			len += pl;
		}
		s[len] = '\0';
		for (int part = 0; part < 3; part++) {
			int rc_fast, rc_slow;
			const char *e_fast, *e_slow;
			const char *fast = prep_once((enum jid_part)part, s, len,
						     1, &rc_fast, &e_fast);
			const char *slow = prep_once((enum jid_part)part, s, len,
						     0, &rc_slow, &e_slow);
			cr_assert_eq(rc_fast, rc_slow, "part %d of \"%s\": %d "
				     "(fast) vs %d (libidn: %s)", part, s,
				     rc_fast, rc_slow, e_slow ? e_slow : "");
			if (rc_fast == 0) {
				cr_assert_str_eq(fast, slow, "part %d of \"%s\"",
						 part, s);
				agreed_fast++;
			} else {
				cr_assert_str_eq(e_fast, e_slow,
						 "part %d of \"%s\"", part, s);
			}
		}
		arena_reset(&arena);
	}
	/* The corpus does exercise acceptance, not only rejection. */
	cr_assert_gt(agreed_fast, 10000);
}

/* XEP-0191 section 3.4: full, bare, domain, domain/resource. */
Test(jid, block_forms)
{
	char buf[64];
	const char *f[JID_BLOCK_FORMS];
	cr_assert_eq(jid_block_forms("juliet@example.com/balcony", buf,
				     sizeof(buf), f), 0);
	cr_assert_str_eq(f[0], "juliet@example.com/balcony");
	cr_assert_str_eq(f[1], "juliet@example.com");
	cr_assert_str_eq(f[2], "example.com");
	cr_assert_str_eq(f[3], "example.com/balcony");
	cr_assert_eq(jid_block_forms("juliet@example.com", buf, sizeof(buf),
				     f), 0);
	cr_assert_str_eq(f[1], "juliet@example.com");
	cr_assert_str_eq(f[2], "example.com");
	cr_assert_str_eq(f[3], "example.com");
	cr_assert_eq(jid_block_forms("example.com/r", buf, sizeof(buf), f), 0);
	cr_assert_str_eq(f[1], "example.com");
	cr_assert_str_eq(f[2], "example.com");
	cr_assert_str_eq(f[3], "example.com/r");
	/* a buffer too small: the JID alone */
	cr_assert_eq(jid_block_forms("juliet@example.com/balcony", buf, 20,
				     f), -1);
	for (int i = 0; i < JID_BLOCK_FORMS; i++)
		cr_assert_str_eq(f[i], "juliet@example.com/balcony");
}

/*
 * test_hostport.c - s2s.dns_servers lists (lib/hostport.c): what is
 * accepted, what c-ares is given for it, and what is refused with the
 * entry named.
 */
#include <string.h>

#include <criterion/criterion.h>

#include "hostport.h"

static void expect_csv(const char *in, const char *want)
{
	char out[512];
	const char *error = NULL;
	int rc = hostport_list_csv(in, out, sizeof(out), &error);
	cr_expect_eq(rc, 0, "'%s' refused: %s", in, error ? error : "");
	if (rc == 0)
		cr_expect_str_eq(out, want, "'%s' gave '%s', want '%s'", in,
				 out, want);
}

static void expect_bad(const char *in, const char *entry)
{
	char out[512];
	const char *error = NULL;
	cr_expect_eq(hostport_list_csv(in, out, sizeof(out), &error), -1,
		     "'%s' accepted as '%s'", in, out);
	if (error != NULL)
		cr_expect(strstr(error, entry) != NULL,
			  "'%s': error '%s' does not name '%s'", in, error,
			  entry);
}

Test(hostport, accepted)
{
	expect_csv("", "");
	expect_csv("  \t ", "");
	expect_csv("127.0.0.1", "127.0.0.1");
	expect_csv("127.0.0.1:5353", "127.0.0.1:5353");
	expect_csv("::1", "::1");
	expect_csv("[::1]", "::1");
	expect_csv("[::1]:53", "[::1]:53");
	expect_csv("192.0.2.1:53 2001:db8::1,[2001:db8::2]:5353\t10.0.0.1",
		   "192.0.2.1:53,2001:db8::1,[2001:db8::2]:5353,10.0.0.1");
	expect_csv("127.0.0.1:65535", "127.0.0.1:65535");
}

Test(hostport, refused)
{
	expect_bad("localhost", "localhost");
	expect_bad("127.0.0.1 dns.example", "dns.example");
	expect_bad("127.0.0.1:0", "127.0.0.1:0");
	expect_bad("127.0.0.1:65536", "127.0.0.1:65536");
	expect_bad("127.0.0.1:053", "127.0.0.1:053");
	expect_bad("127.0.0.1:", "127.0.0.1:");
	expect_bad("127.0.0.1:+53", "+53");
	expect_bad("[::1", "[::1");
	expect_bad("[::1]x", "[::1]x");
	expect_bad("[127.0.0.1]:53", "[127.0.0.1]:53");
	expect_bad("::1:53:zz", "::1:53:zz");
	expect_bad("1.2.3.4.5", "1.2.3.4.5");
}

Test(hostport, bounded)
{
	char list[1024] = "";
	for (int i = 0; i < HOSTPORT_MAX_ENTRIES; i++)
		strcat(list, "127.0.0.1:5353 ");
	expect_csv(list,
		   "127.0.0.1:5353,127.0.0.1:5353,127.0.0.1:5353,"
		   "127.0.0.1:5353,127.0.0.1:5353,127.0.0.1:5353,"
		   "127.0.0.1:5353,127.0.0.1:5353,127.0.0.1:5353,"
		   "127.0.0.1:5353,127.0.0.1:5353,127.0.0.1:5353,"
		   "127.0.0.1:5353,127.0.0.1:5353,127.0.0.1:5353,"
		   "127.0.0.1:5353");
	strcat(list, "127.0.0.2");
	expect_bad(list, "127.0.0.2");
	/* the output buffer is never overrun: too long is an error */
	char out[20];
	const char *error = NULL;
	cr_expect_eq(hostport_list_csv("127.0.0.1:5353 127.0.0.2:5353", out,
				       sizeof(out), &error), -1);
	cr_expect_eq(hostport_list_csv("127.0.0.1:5353", out, sizeof(out),
				       &error), 0);
}

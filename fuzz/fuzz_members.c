/*
 * fuzz_members.c - the cluster's member list as read from the
 * key-value bucket (cluster/members.c).  Input: the value's bytes.
 * Properties:
 *  - parsing never reads out of bounds;
 *  - a value that parses is canonical: members_format writes it back
 *    byte for byte, sorted, no name twice;
 *  - every key has an owner among the members, and the same one when
 *    asked again;
 *  - the same bytes as a lease value (members_lease_parse): one that
 *    parses is canonical, has a non-zero count, and is no renewal
 *    after itself (a lease put back is refused).
 */
#include "fuzz.h"
#include "cluster/members.h"

#include <string.h>

static void check_lease(const uint8_t *data, size_t size)
{
	struct lease_value v;
	char out[MEMBERS_LEASE_TEXT_MAX];
	if (members_lease_parse(&v, (const char *)data, size) < 0)
		return;
	int n = members_lease_format(&v, out, sizeof(out));
	FUZZ_CHECK(n >= 0 && (size_t)n == size && memcmp(out, data, size) == 0,
		   "lease value not canonical");
	FUZZ_CHECK(v.count != 0 && v.sent_ms >= 0, "lease count or time");
	FUZZ_CHECK(!members_lease_fresh(&v, &v, v.sent_ms, 60000),
		   "a lease value renews after itself");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct members ms;
	char out[MEMBERS_TEXT_MAX];

	check_lease(data, size);
	if (members_parse(&ms, (const char *)data, size) < 0)
		return 0;
	int n = members_format(&ms, out, sizeof(out));
	FUZZ_CHECK(n >= 0 && (size_t)n == size && memcmp(out, data, size) == 0,
		   "not canonical");
	for (unsigned i = 1; i < ms.n; i++)
		FUZZ_CHECK(strcmp(ms.m[i - 1].name, ms.m[i].name) < 0,
			   "not sorted");
	int o = members_owner(&ms, (const char *)data, size);
	FUZZ_CHECK(ms.n == 0 ? o == -1 : (o >= 0 && (unsigned)o < ms.n),
		   "owner %d of %u", o, ms.n);
	FUZZ_CHECK(members_owner(&ms, (const char *)data, size) == o,
		   "owner changed");
	return 0;
}

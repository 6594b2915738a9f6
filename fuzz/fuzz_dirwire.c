/*
 * fuzz_dirwire.c - the session directory's batches another cluster
 * node sends (cluster/dirwire.c).  Input: a batch as it comes off NATS.
 * Properties:
 *  - reading never goes out of bounds and ends with every record read
 *    (1 ... 1, 0) or an error, never more records than the count;
 *  - a batch read without error is canonical: writing its header and
 *    records again gives the same bytes;
 *  - every record read has a prepared full JID with a localpart (or a
 *    component's entry, DOMAIN/xmppd-component-...) and a
 *    caps ver of base64 characters, and equal records have equal
 *    digests;
 *  - dir_events_verdict's skip is within the batch when it says APPLY.
 */
#include "fuzz.h"
#include "arena.h"
#include "buf.h"
#include "cluster/dirwire.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	struct dir_reader r;
	struct dir_rec rec;
	struct arena a;
	struct buf out;
	const char *error = NULL;
	uint32_t n = 0;
	int rc;

	if (!ready) {
		fuzz_quiet_log();
		ready = 1;
	}
	if (dir_read_begin(&r, data, size, &error) < 0)
		return 0;
	arena_init(&a, 4096);
	buf_init(&out, 0);
	FUZZ_CHECK(dir_put_hdr(&out, &r.hdr) == 0, "header rewrite");
	while ((rc = dir_read_next(&r, &a, &rec, &error)) == 1) {
		n++;
		FUZZ_CHECK(n <= r.hdr.count, "%u records of %u", n,
			   r.hdr.count);
		FUZZ_CHECK(rec.jid_len > 0 &&
			   (memchr(rec.jid, '@', rec.jid_len) != NULL ||
			    memmem(rec.jid, rec.jid_len, "/xmppd-component-",
				   17) != NULL),
			   "JID without a localpart, not a component's");
		struct dir_rec copy = rec;
		FUZZ_CHECK(dir_rec_digest(&copy) == dir_rec_digest(&rec),
			   "digest");
		FUZZ_CHECK(dir_put_rec(&out, &rec) == 0, "record rewrite");
		arena_reset(&a);
	}
	if (rc == 0) {
		FUZZ_CHECK(n == r.hdr.count, "%u records of %u", n,
			   r.hdr.count);
		FUZZ_CHECK(buf_used(&out) == size &&
			   memcmp(buf_head(&out), data, size) == 0,
			   "not canonical (%zu bytes written of %zu)",
			   buf_used(&out), size);
		uint32_t skip;
		if (r.hdr.kind == DIR_KIND_EVENTS &&
		    dir_events_verdict(true, r.hdr.incarnation,
				       r.hdr.seq / 2, &r.hdr, &skip) ==
		    DIR_APPLY)
			FUZZ_CHECK(skip < r.hdr.count, "skip %u of %u", skip,
				   r.hdr.count);
	}
	buf_free(&out);
	arena_free(&a);
	return 0;
}

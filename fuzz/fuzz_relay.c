/*
 * fuzz_relay.c - the frame batches and acks another cluster node sends
 * (cluster/relay.c).  Input: a batch as it comes off NATS.  Properties:
 *  - reading never goes out of bounds; it ends with exactly the count
 *    of frames (then 0) or an error;
 *  - every frame handed out passes frame_parse_header on its own, has
 *    no F_MORE, and lies inside the batch;
 *  - a batch read without error is canonical: its header and frames
 *    written again give the same bytes;
 *  - relay_in_verdict's skip is within the batch when it says TAKE.
 */
#include "fuzz.h"
#include "buf.h"
#include "frame.h"
#include "cluster/relay.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	struct relay_reader r;
	struct ipc_frame_header fh, again;
	const void *f;
	size_t flen, fsize;
	struct buf out;
	const char *error = NULL;
	uint32_t n = 0;
	int rc;

	if (!ready) {
		fuzz_quiet_log();
		ready = 1;
	}
	if (relay_read_begin(&r, data, size, &error) < 0)
		return 0;
	if (r.hdr.kind == RELAY_ACK || r.hdr.kind == RELAY_REFUSED) {
		/* an ack's body: refused with a reason, or holes in order
		 * within (seq, claim], claim <= received, and canonical */
		struct relay_sack sk;
		if (relay_read_sack(&r, &sk, &error) < 0) {
			FUZZ_CHECK(error != NULL && error[0] != '\0',
				   "no reason");
			return 0;
		}
		FUZZ_CHECK(sk.nholes == r.hdr.count &&
			   sk.nholes <= RELAY_SACK_MAX, "holes %u", sk.nholes);
		FUZZ_CHECK(r.hdr.seq <= sk.claim && sk.claim <= sk.received,
			   "claim out of range");
		uint64_t after = r.hdr.seq;
		for (uint32_t i = 0; i < sk.nholes; i++) {
			FUZZ_CHECK(sk.holes[i].from > after &&
				   sk.holes[i].from <= sk.holes[i].to &&
				   sk.holes[i].to <= sk.claim,
				   "hole %u out of order", i);
			after = sk.holes[i].to;
		}
		buf_init(&out, 0);
		FUZZ_CHECK(relay_put_hdr(&out, &r.hdr) == 0 &&
			   relay_put_sack(&out, &sk) == 0 &&
			   buf_used(&out) == size &&
			   memcmp(buf_head(&out), data, size) == 0,
			   "ack not canonical");
		buf_free(&out);
		return 0;
	}
	buf_init(&out, 0);
	FUZZ_CHECK(relay_put_hdr(&out, &r.hdr) == 0, "header rewrite");
	while ((rc = relay_read_next(&r, &fh, &f, &flen, &error)) == 1) {
		n++;
		FUZZ_CHECK(n <= r.hdr.count, "%u frames of %u", n, r.hdr.count);
		FUZZ_CHECK((const uint8_t *)f >= data &&
			   (const uint8_t *)f + flen <= data + size,
			   "frame outside the batch");
		FUZZ_CHECK(frame_parse_header(f, flen, &again, &fsize,
					      &error) == 0 && fsize == flen,
			   "frame does not stand alone");
		FUZZ_CHECK(!(fh.flags & IPC_FRAME_F_MORE), "partial frame");
		buf_append(&out, f, flen);
	}
	if (rc == 0) {
		FUZZ_CHECK(n == r.hdr.count, "%u frames of %u", n, r.hdr.count);
		FUZZ_CHECK(buf_used(&out) == size &&
			   memcmp(buf_head(&out), data, size) == 0,
			   "not canonical");
		if (r.hdr.kind == RELAY_FRAMES) {
			struct relay_in in;
			uint32_t skip;
			bool restarted;
			relay_in_reset(&in, r.hdr.incarnation);
			in.stream = r.hdr.stream;
			in.delivered = r.hdr.seq / 2 + 1;
			/* and, for odd numbers, a node that thought the
			 * sender gone (its stream refused) */
			in.refusing = (r.hdr.seq & 1) != 0;
			if (relay_in_verdict(&in, r.hdr.peer_incarnation,
					     &r.hdr, &skip, &restarted) ==
			    RELAY_TAKE)
				FUZZ_CHECK(skip < r.hdr.count, "skip %u of %u",
					   skip, r.hdr.count);
		}
	}
	buf_free(&out);
	return 0;
}

/*
 * fuzz_muc_fanout.c - the payload of IPC_FRAME_MUC_FANOUT, a room's
 * stanza for several sessions of the receiving worker, sent by the
 * room's owner on this node or another (worker/muc_fan.c, read by
 * muc.c's muc_frame_fanout).  Input: the payload's bytes.
 * Properties:
 *  - reading never goes out of bounds, and a refusal names its reason;
 *  - an accepted payload has a text that is a tag without NUL and
 *    exactly its count of recipients, each a JID of 1 .. IPC_JID_MAX
 *    bytes without NUL (it goes in 'to' as a C string), nothing after
 *    the last;
 *  - it is canonical: the recipients put again with muc_fan_put (as the
 *    owner's worker writes them) give the same bytes.
 */
#include "fuzz.h"
#include "worker/muc_fan.h"

#include <string.h>

static struct muc_fan fan;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct muc_fan_reader r;
	struct muc_fan_rcpt rc;
	const char *error = NULL;
	uint32_t n = 0;
	size_t len;

	if (muc_fan_read(&r, data, size, &error) < 0) {
		FUZZ_CHECK(error != NULL, "refused without a reason");
		return 0;
	}
	FUZZ_CHECK(r.text_len > 0 && r.text[0] == '<' &&
		   strnlen(r.text, r.text_len) == r.text_len, "bad text");
	struct muc_fan_group *g = muc_fan_group(&fan, 1, 0, 0);
	FUZZ_CHECK(g != NULL && g->count == 0, "no empty group");
	while (muc_fan_next(&r, &rc) == 1) {
		size_t jl = strlen(rc.jid);
		FUZZ_CHECK(jl > 0 && jl <= IPC_JID_MAX, "JID of %zu bytes",
			   jl);
		FUZZ_CHECK(muc_fan_put(g, r.text, r.text_len, rc.conn_id,
				       rc.gen, rc.jid, jl) == 0,
			   "recipient %u not put again", n);
		n++;
	}
	FUZZ_CHECK(n == r.count && n > 0, "%u recipients of %u", n, r.count);
	const char *f = muc_fan_take(g, &len);
	FUZZ_CHECK(f != NULL && len == size && memcmp(f, data, size) == 0,
		   "not canonical (%zu bytes written of %zu)",
		   f != NULL ? len : 0, size);
	muc_fan_reset(&fan, 64 * 1024);
	return 0;
}

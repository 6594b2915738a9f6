/*
 * fuzz_cluster_fence.c - the replay stamp every message on NATS ends
 * with (cluster/fence.c, before the MAC): read from the network by
 * every bridge, and the fence it moves.  Properties:
 *  - the parser never reads past the message (ASan); an accepted stamp
 *    has a sender name of 1..32 allowed characters, non-zero run and
 *    seq, and a payload length that with the stamp makes the message;
 *    writing the stamp again gives the same bytes;
 *  - a stamp the fence took is never taken a second time (what a
 *    replay is), whatever came between, as long as its sender was not
 *    forgotten (fewer than FENCE_PEERS senders here);
 *  - the fence keeps its shape: at most FENCE_PEERS senders, distinct,
 *    each with the bit of its top seq set.
 * Input: records, each one op byte then its bytes.  op < 0x40: our
 * clock moves op * 1000 ms.  op >= 0x40: a message of (op - 0x40)
 * bytes (0..191), or what is left of the input; it is checked twice.
 */
#include "fuzz.h"
#include "../cluster/fence.h"

#include <stdlib.h>
#include <string.h>

static struct fence fz;

static int name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > FENCE_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_'))
			return 0;
	return 1;
}

static void check_message(const uint8_t *p, size_t len, int64_t now)
{
	struct fence_stamp st;
	uint8_t again[FENCE_TRAILER_MAX];
	const char *error = NULL;
	size_t plen = 0;
	if (fence_take(p, len, &st, &plen, &error) < 0) {
		FUZZ_CHECK(error != NULL && error[0] != '\0', "no reason");
		return;
	}
	FUZZ_CHECK(name_ok(st.node), "bad name accepted");
	FUZZ_CHECK(st.run != 0 && st.seq != 0, "zero run or seq");
	size_t n = fence_put(again, &st);
	FUZZ_CHECK(plen + n == len, "payload %zu + stamp %zu != %zu", plen, n,
		   len);
	FUZZ_CHECK(memcmp(again, p + plen, n) == 0, "stamp not canonical");
	enum fence_verdict v = fence_check(&fz, &st, now);
	FUZZ_CHECK(v >= FENCE_OK && v <= FENCE_CLOCK, "verdict %d", v);
	if (v == FENCE_OK && fz.n < FENCE_PEERS)
		FUZZ_CHECK(fence_check(&fz, &st, now) == FENCE_REPLAY,
			   "a stamp taken twice");
}

static void check_fence(void)
{
	FUZZ_CHECK(fz.n <= FENCE_PEERS, "%u senders", fz.n);
	for (unsigned i = 0; i < fz.n; i++) {
		FUZZ_CHECK(name_ok(fz.p[i].node), "sender %u name", i);
		FUZZ_CHECK(fz.p[i].mask & 1, "sender %u: top not taken", i);
		for (unsigned j = 0; j < i; j++)
			FUZZ_CHECK(strcmp(fz.p[i].node, fz.p[j].node) != 0,
				   "senders %u and %u alike", i, j);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int64_t now = 1800000000000LL;
	size_t off = 0;
	fence_init(&fz, 60000);
	while (off < size) {
		unsigned op = data[off++];
		if (op < 0x40) {
			now += (int64_t)op * 1000;
			continue;
		}
		size_t want = op - 0x40;
		size_t len = size - off < want ? size - off : want;
		/* a copy of exactly len bytes: ASan sees any over-read */
		uint8_t *msg = malloc(len ? len : 1);
		FUZZ_CHECK(msg != NULL, "out of memory");
		memcpy(msg, data + off, len);
		check_message(msg, len, now);
		free(msg);
		off += len;
		check_fence();
	}
	return 0;
}

/*
 * fuzz_pep_event.c - the payload of IPC_FRAME_PEP_EVENT, a PEP event a
 * worker of another cluster node sends ours (worker/pep_wire.c, read by
 * pep_notify_worker_frame).  Input: the payload's bytes.
 * Properties:
 *  - reading never goes out of bounds, and a refusal names its reason;
 *  - what is read keeps the rules the worker relies on: a head that is
 *    a tag, head and tail without NUL (the worker keeps them as C
 *    strings of their lengths), a non-empty node without NUL, a bare
 *    JID of 1 .. IPC_JID_MAX bytes without '/' or NUL;
 *  - a payload that reads is canonical: pep_wire_put writes it back
 *    byte for byte.
 */
#include "fuzz.h"
#include "shm/ipc.h"
#include "worker/pep_wire.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pep_wire_event e;
	const char *error = NULL;
	struct buf b;

	if (pep_wire_read(&e, data, size, &error) < 0) {
		FUZZ_CHECK(error != NULL, "refused without a reason");
		return 0;
	}
	FUZZ_CHECK(e.owner == 0 || e.owner == 1, "owner %d", e.owner);
	FUZZ_CHECK(e.head_len > 0 && e.head[0] == '<', "head not a tag");
	FUZZ_CHECK(strnlen(e.head, e.head_len) == e.head_len &&
		   strnlen(e.tail, e.tail_len) == e.tail_len, "NUL in text");
	FUZZ_CHECK(e.node_len > 0 && strlen(e.node) == e.node_len,
		   "node of %zu bytes", e.node_len);
	FUZZ_CHECK(e.bare_len > 0 && e.bare_len <= IPC_JID_MAX &&
		   memchr(e.bare, '/', e.bare_len) == NULL &&
		   strnlen(e.bare, e.bare_len) == e.bare_len,
		   "bare JID of %zu bytes", e.bare_len);
	FUZZ_CHECK((const uint8_t *)e.bare + e.bare_len == data + size,
		   "bare JID does not end the payload");
	buf_init(&b, 0);
	FUZZ_CHECK(pep_wire_put(&b, &e) == 0, "what was read not written");
	FUZZ_CHECK(buf_used(&b) == size && memcmp(buf_head(&b), data,
						  size) == 0,
		   "not canonical (%zu bytes written of %zu)", buf_used(&b),
		   size);
	buf_free(&b);
	return 0;
}

/*
 * pep_wire.h - the payload of IPC_FRAME_PEP_EVENT (shm/ipc.h): a PEP
 * event a worker of another cluster node sends ours for our sessions of
 * one bare JID (only this node knows their caps, so it picks the
 * recipients: pep_notify.c).  Pure: no worker state, so the fuzzer
 * (fuzz/fuzz_pep_event.c) and tests/test_pep_wire.c call it as the
 * worker does.  Failure policy: a payload that is not one this code
 * writes is refused whole with a reason; nothing is logged here.
 */
#ifndef XMPPD_PEP_WIRE_H
#define XMPPD_PEP_WIRE_H

#include <stddef.h>
#include "../lib/buf.h"

/* Layout: u8 owner (0 or 1), u32 head length, head, u32 tail length,
 * tail, node, NUL, bare JID (to the end).  The message for a recipient
 * is head + its escaped full JID + tail. */
struct pep_wire_event {
	int owner;              /* the event is the account's own */
	const char *head;       /* "<message from='O' to='": starts '<' */
	size_t head_len;
	const char *tail;       /* "' type=.. id=..>...</message>" */
	size_t tail_len;
	const char *node;       /* the PEP node, NUL-terminated */
	size_t node_len;        /* 1 .. */
	const char *bare;       /* 1 .. IPC_JID_MAX bytes, no '/', no NUL;
				   not terminated */
	size_t bare_len;
};

/* Append e's payload to b: 0, or -1 (no memory, or e would not read
 * back: pep_wire_read's rules). */
int pep_wire_put(struct buf *b, const struct pep_wire_event *e);
/* Read a payload: 0 with e's pointers into p, or -1 and a reason. */
int pep_wire_read(struct pep_wire_event *e, const void *p, size_t len,
		  const char **error_r);

#endif

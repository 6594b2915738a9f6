/*
 * test_pep_wire.c - IPC_FRAME_PEP_EVENT's payload (worker/pep_wire.c):
 * an event written by one node's worker reads back the same on the
 * other's, and a payload the writer cannot write is refused whole.
 */
#include <criterion/criterion.h>
#include <string.h>
#include "worker/pep_wire.h"

static const char head[] = "<message from='juliet@x' to='";
static const char tail[] = "' type='headline' id='pep-1'><event xmlns="
			   "'http://jabber.org/protocol/pubsub#event'/>"
			   "</message>";

static struct pep_wire_event event(void)
{
	return (struct pep_wire_event){
		.owner = 1, .head = head, .head_len = strlen(head),
		.tail = tail, .tail_len = strlen(tail),
		.node = "urn:xmpp:avatar:metadata", .node_len = 24,
		.bare = "romeo@x", .bare_len = 7,
	};
}

TestSuite(pep_wire, .timeout = 10);

Test(pep_wire, an_event_reads_back_the_same)
{
	struct pep_wire_event e = event(), got;
	struct buf b;
	const char *error = NULL;

	buf_init(&b, 0);
	cr_assert_eq(pep_wire_put(&b, &e), 0);
	cr_assert_eq(pep_wire_read(&got, buf_head(&b), buf_used(&b), &error),
		     0, "%s", error);
	cr_assert_eq(got.owner, 1);
	cr_assert_eq(got.head_len, e.head_len);
	cr_assert_eq(memcmp(got.head, head, e.head_len), 0);
	cr_assert_eq(got.tail_len, e.tail_len);
	cr_assert_eq(memcmp(got.tail, tail, e.tail_len), 0);
	cr_assert_eq(got.node_len, 24);
	cr_assert_eq(strcmp(got.node, "urn:xmpp:avatar:metadata"), 0);
	cr_assert_eq(got.bare_len, 7);
	cr_assert_eq(memcmp(got.bare, "romeo@x", 7), 0);
	buf_free(&b);
}

/* Every prefix of a good payload up to its bare JID is refused, and so
 * is a NUL in the head: the worker keeps the head as a C string of
 * head_len bytes (strndup), which a NUL would cut short and the
 * message built from it would read past.  A bad owner flag or a full
 * JID for the bare one is refused too. */
Test(pep_wire, what_the_writer_cannot_write_is_refused)
{
	struct pep_wire_event e = event(), got;
	struct buf b;
	const char *error;
	char bad[512];

	buf_init(&b, 0);
	cr_assert_eq(pep_wire_put(&b, &e), 0);
	size_t len = buf_used(&b);
	cr_assert_leq(len, sizeof(bad));
	memcpy(bad, buf_head(&b), len);
	buf_free(&b);
	for (size_t cut = 0; cut <= len - 7; cut++) {
		error = NULL;
		cr_assert_eq(pep_wire_read(&got, bad, cut, &error), -1,
			     "%zu of %zu bytes read", cut, len);
		cr_assert_not_null(error);
	}
	/* a shorter bare JID is still a bare JID */
	cr_assert_eq(pep_wire_read(&got, bad, len - 1, &error), 0);

	bad[5 + 3] = '\0';                      /* inside the head */
	cr_assert_eq(pep_wire_read(&got, bad, len, &error), -1);
	cr_assert_str_eq(error, "NUL in the text");
	bad[5 + 3] = 'e';
	bad[0] = 2;
	cr_assert_eq(pep_wire_read(&got, bad, len, &error), -1);
	cr_assert_str_eq(error, "bad owner flag");
	bad[0] = 0;
	bad[len - 3] = '/';                     /* a full JID */
	cr_assert_eq(pep_wire_read(&got, bad, len, &error), -1);
	cr_assert_str_eq(error, "bad bare JID");

	e.node_len = 0;
	buf_init(&b, 0);
	cr_assert_eq(pep_wire_put(&b, &e), -1, "an empty node written");
	buf_free(&b);
}

/*
 * test_queue.c - worker queues: a million frames between processes with
 * order kept (one and two senders), fragmentation, the outbox bounds
 * (frames and bytes),
 * malformed datagrams, and a reader killed while it dispatches (the
 * datagram is left to the next reader once, then dropped).  Every loop has a deadline; forked senders die
 * with the test process and report through their exit code.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include "queue.h"
#include "frame.h"
#include "buf.h"
#include "util.h"

#define MILLION 1000000u
#define FLUSH_EVERY 256u
#define DEADLINE_MS 30000

enum child_exit {
	CHILD_OK = 0,
	CHILD_SEND_FAILED = 10,
	CHILD_FLUSH_FAILED,
	CHILD_TIMEOUT,
	CHILD_SETUP_FAILED,
};

/* Receiver bookkeeping: the next sequence number expected per source. */
struct rx {
	uint64_t next[IPC_MAX_SLOTS];
	uint64_t count;
	unsigned bad;               /* frames out of order or malformed */
	uint32_t last_conn;
	size_t last_len;
	unsigned char *copy;        /* payload of conn keep_conn (any if 0) */
	size_t copy_size;
	uint32_t keep_conn;
	uint32_t conns[16];         /* conn_id of each frame, in order */
};

static void rx_seq_cb(const struct ipc_frame_header *hdr, const void *payload,
		      size_t len, void *ctx)
{
	struct rx *rx = ctx;
	uint64_t seq;

	if (hdr->type != IPC_FRAME_TEST || len < sizeof(seq) ||
	    hdr->conn_id != hdr->src_slot || hdr->flags != 0) {
		rx->bad++;
		return;
	}
	memcpy(&seq, payload, sizeof(seq));
	if (seq != rx->next[hdr->src_slot] || hdr->gen != (uint32_t)seq)
		rx->bad++;
	rx->next[hdr->src_slot] = seq + 1;
	rx->count++;
}

static void rx_copy_cb(const struct ipc_frame_header *hdr, const void *payload,
		       size_t len, void *ctx)
{
	struct rx *rx = ctx;

	if (rx->count < ARRAY_SIZE(rx->conns))
		rx->conns[rx->count] = hdr->conn_id;
	rx->count++;
	if (rx->keep_conn != 0 && hdr->conn_id != rx->keep_conn)
		return;
	rx->last_conn = hdr->conn_id;
	rx->last_len = len;
	if (hdr->flags != 0 || len > rx->copy_size)
		rx->bad++;
	else if (len > 0)
		memcpy(rx->copy, payload, len);
}

static void wait_fd(int fd, short events, int ms)
{
	struct pollfd pfd = { .fd = fd, .events = events };

	(void)poll(&pfd, 1, ms);
}

/* Wait until some destination with frames waiting can take more. */
static void wait_writable(struct queue *q)
{
	struct pollfd pfd[IPC_MAX_SLOTS];
	int fds[IPC_MAX_SLOTS];
	int n = queue_pending_fds(q, fds, IPC_MAX_SLOTS);

	for (int i = 0; i < n; i++)
		pfd[i] = (struct pollfd){ .fd = fds[i], .events = POLLOUT };
	(void)poll(pfd, (nfds_t)n, 100);
}

static int send_seq(struct queue *q, unsigned slot, unsigned dst,
		    uint64_t seq, int64_t deadline)
{
	const char *error;
	unsigned char payload[16];

	memset(payload, (int)(seq & 0xff), sizeof(payload));
	memcpy(payload, &seq, sizeof(seq));
	while (queue_send(q, dst, IPC_FRAME_TEST, slot, (uint32_t)seq,
			  payload, sizeof(payload), &error) < 0) {
		if (strcmp(error, "outbox full") != 0)
			return CHILD_SEND_FAILED;
		if (queue_flush(q) < 0)
			return CHILD_FLUSH_FAILED;
		if (time_now_ms() > deadline)
			return CHILD_TIMEOUT;
		wait_writable(q);
	}
	return CHILD_OK;
}

static int drain_outbox(struct queue *q, int64_t deadline)
{
	int r;

	while ((r = queue_flush(q)) == 0) {
		if (time_now_ms() > deadline)
			return CHILD_TIMEOUT;
		wait_writable(q);
	}
	return r < 0 ? CHILD_FLUSH_FAILED : CHILD_OK;
}

static int sender_run(struct queue_set *qs, unsigned slot, unsigned dst,
		      uint64_t count)
{
	int64_t deadline = time_now_ms() + DEADLINE_MS;
	struct queue *q = queue_new(qs, slot, 4096, 0);
	int ret = CHILD_OK;

	if (q == NULL)
		return CHILD_SETUP_FAILED;
	for (uint64_t seq = 0; seq < count && ret == CHILD_OK; seq++) {
		ret = send_seq(q, slot, dst, seq, deadline);
		if (ret == CHILD_OK && (seq + 1) % FLUSH_EVERY == 0 &&
		    queue_flush(q) < 0)
			ret = CHILD_FLUSH_FAILED;
	}
	if (ret == CHILD_OK)
		ret = drain_outbox(q, deadline);
	queue_free(&q);
	return ret;
}

static pid_t spawn_sender(struct queue_set *qs, unsigned slot, unsigned dst,
			  uint64_t count)
{
	pid_t pid = fork();

	cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
	if (pid == 0) {
		/* never outlive a test that failed an assertion */
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		queue_set_child(qs, slot);
		_exit(sender_run(qs, slot, dst, count));
	}
	return pid;
}

/* Receive on fd (q's recv end) until rx has seen want frames. */
static void receive_until(struct queue *q, int fd, queue_frame_cb *cb,
			  struct rx *rx, uint64_t want)
{
	int64_t deadline = time_now_ms() + DEADLINE_MS;
	int n;

	while (rx->count < want) {
		cr_assert_lt(time_now_ms(), deadline, "received only %llu of %llu",
			     (unsigned long long)rx->count,
			     (unsigned long long)want);
		n = queue_receive(q, cb, rx, 0);
		cr_assert_geq(n, 0, "queue_receive: %s", strerror(errno));
		if (n == 0)
			wait_fd(fd, POLLIN, 100);
	}
}

static void reap_sender(pid_t pid)
{
	int status;

	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status), "sender died by signal %d",
		  WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	cr_assert_eq(WEXITSTATUS(status), CHILD_OK, "sender exit code %d",
		     WEXITSTATUS(status));
}

static struct queue_set qs;
static struct queue *q0, *q1;

static void setup(void)
{
	const char *error = NULL;

	cr_assert_eq(queue_set_create(&qs, 3, &error), 0, "%s: %s", error,
		     strerror(errno));
	q0 = queue_new(&qs, 0, 1000, 0);
	q1 = queue_new(&qs, 1, 1000, 0);
	cr_assert_not_null(q0);
	cr_assert_not_null(q1);
}

static void teardown(void)
{
	queue_free(&q0);
	queue_free(&q1);
	cr_assert_null(q0);
	queue_set_close(&qs);
}

TestSuite(queue, .init = setup, .fini = teardown, .timeout = 60);

Test(queue, million_frames_one_sender_in_order)
{
	struct rx rx = { .count = 0 };
	pid_t pid = spawn_sender(&qs, 1, 0, MILLION);
	int64_t start = time_now_ms();

	queue_set_child(&qs, 0);
	receive_until(q0, qs.fds[0].recv, rx_seq_cb, &rx, MILLION);
	reap_sender(pid);
	cr_log_info("1M frames, one sender: %lld ms",
		    (long long)(time_now_ms() - start));
	cr_assert_eq(rx.bad, 0, "%u frames out of order or malformed", rx.bad);
	cr_assert_eq(rx.next[1], MILLION);
	cr_assert_eq(queue_receive(q0, rx_seq_cb, &rx, 0), 0, "extra frames");
}

Test(queue, million_frames_two_senders_order_per_sender)
{
	struct rx rx = { .count = 0 };
	pid_t a = spawn_sender(&qs, 1, 0, MILLION);
	pid_t b = spawn_sender(&qs, 2, 0, MILLION);
	int64_t start = time_now_ms();

	queue_set_child(&qs, 0);
	receive_until(q0, qs.fds[0].recv, rx_seq_cb, &rx, 2 * MILLION);
	reap_sender(a);
	reap_sender(b);
	cr_log_info("2x1M frames, two senders: %lld ms",
		    (long long)(time_now_ms() - start));
	cr_assert_eq(rx.bad, 0, "%u frames out of order or malformed", rx.bad);
	cr_assert_eq(rx.next[1], MILLION);
	cr_assert_eq(rx.next[2], MILLION);
}

static void fill_pattern(unsigned char *p, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (unsigned char)(seed >> 16);
	}
}

/* Flush q0 and receive on q1 in turns, so no socket size is assumed. */
static void pump(struct rx *rx, uint64_t want)
{
	int64_t deadline = time_now_ms() + DEADLINE_MS;

	while (rx->count < want) {
		cr_assert_lt(time_now_ms(), deadline, "got %llu of %llu",
			     (unsigned long long)rx->count,
			     (unsigned long long)want);
		cr_assert_geq(queue_flush(q0), 0);
		cr_assert_geq(queue_receive(q1, rx_copy_cb, rx, 0), 0);
	}
}

static void send_blob(const unsigned char *p, size_t n, uint32_t conn)
{
	const char *error = NULL;

	cr_assert_eq(queue_send(q0, 1, IPC_FRAME_STANZA, conn, 7, p, n,
				&error), 0, "queue_send: %s", error);
}

Test(queue, fragmented_300k_payload_reassembled)
{
	size_t size = 300 * 1024;
	unsigned char *blob = malloc(size), *got = malloc(IPC_FRAME_MAX);
	struct rx rx = { .copy = got, .copy_size = IPC_FRAME_MAX,
			 .keep_conn = 2 };

	cr_assert(blob != NULL && got != NULL);
	fill_pattern(blob, size, 1);
	send_blob((const unsigned char *)"before", 6, 1);
	send_blob(blob, size, 2);
	cr_assert_eq(queue_backlog(q0, 1), 2 + size / IPC_FRAG_MAX,
		     "one frame per chunk");
	send_blob((const unsigned char *)"after", 5, 3);
	pump(&rx, 3);
	cr_assert_eq(rx.conns[0], 1);
	cr_assert_eq(rx.conns[1], 2);
	cr_assert_eq(rx.conns[2], 3);
	cr_assert_eq(rx.last_len, size);
	cr_assert_eq(memcmp(got, blob, size), 0, "payload differs");
	cr_assert_eq(rx.bad, 0);
	free(blob);
	free(got);
}

Test(queue, largest_frame_and_one_byte_more)
{
	unsigned char *blob = malloc(IPC_FRAME_MAX + 1);
	unsigned char *got = malloc(IPC_FRAME_MAX);
	struct rx rx = { .copy = got, .copy_size = IPC_FRAME_MAX };
	struct queue *big = queue_new(&qs, 0, 0, 0);   /* default bounds */
	const char *error = NULL;

	cr_assert(blob != NULL && got != NULL && big != NULL);
	queue_free(&q0);
	q0 = big;
	fill_pattern(blob, IPC_FRAME_MAX + 1, 9);
	cr_assert_eq(queue_send(q0, 1, IPC_FRAME_TEST, 1, 1, blob,
				IPC_FRAME_MAX + 1, &error), -1);
	cr_assert_str_eq(error, "frame too large");
	cr_assert_eq(queue_backlog(q0, 1), 0);
	send_blob(blob, IPC_FRAME_MAX, 4);
	pump(&rx, 1);
	cr_assert_eq(rx.last_len, IPC_FRAME_MAX);
	cr_assert_eq(memcmp(got, blob, IPC_FRAME_MAX), 0);
	free(blob);
	free(got);
}

Test(queue, bad_arguments_rejected)
{
	const char *error = NULL;
	struct queue_set bad;

	cr_assert_eq(queue_send(q0, 3, IPC_FRAME_TEST, 0, 0, "x", 1, &error), -1);
	cr_assert_str_eq(error, "bad destination slot");
	cr_assert_eq(queue_send(q0, 1, 0, 0, 0, "x", 1, &error), -1);
	cr_assert_str_eq(error, "bad frame type");
	cr_assert_eq(queue_send(q0, 1, IPC_FRAME_TYPE_MAX, 0, 0, "x", 1,
				&error), -1);
	cr_assert_eq(queue_backlog(q0, 1), 0);
	cr_assert_null(queue_new(&qs, 3, 10, 0));
	cr_assert_eq(queue_set_create(&bad, 0, &error), -1);
	cr_assert_eq(queue_set_create(&bad, IPC_MAX_SLOTS + 1, &error), -1);
}

/* q0 sends to slot 1 while nobody reads slot 1. */
static uint64_t fill_until_refused(void)
{
	unsigned char payload[1000] = { 0 };
	const char *error = NULL;
	uint64_t seq;

	for (seq = 0; seq < 10 * MILLION; seq++) {
		memcpy(payload, &seq, sizeof(seq));
		if (queue_send(q0, 1, IPC_FRAME_TEST, 0, (uint32_t)seq, payload,
			       sizeof(payload), &error) < 0)
			break;
		cr_assert_geq(queue_flush(q0), 0);
	}
	cr_assert_lt(seq, 10 * MILLION, "outbox never filled");
	cr_assert_str_eq(error, "outbox full");
	return seq;
}

static void rx_outbox_cb(const struct ipc_frame_header *hdr,
			 const void *payload, size_t len, void *ctx)
{
	struct rx *rx = ctx;
	uint64_t seq;

	memcpy(&seq, payload, sizeof(seq));
	if (len != 1000 || seq != rx->count || hdr->gen != (uint32_t)seq)
		rx->bad++;
	rx->count++;
}

Test(queue, outbox_bound_then_drain)
{
	struct rx rx = { .count = 0 };
	uint64_t sent = fill_until_refused();
	int64_t deadline = time_now_ms() + DEADLINE_MS;
	int fds[4];

	cr_assert_eq(queue_backlog(q0, 1), 1000);
	cr_assert_eq(queue_flush(q0), 0, "peer should still be full");
	cr_assert_eq(queue_pending_fds(q0, fds, 4), 1);
	cr_assert_eq(fds[0], qs.fds[1].send);
	cr_assert_eq(queue_pending_fds(q0, fds, 0), 0);
	while (rx.count < sent) {
		cr_assert_lt(time_now_ms(), deadline);
		cr_assert_geq(queue_receive(q1, rx_outbox_cb, &rx, 0), 0);
		cr_assert_geq(queue_flush(q0), 0);
	}
	cr_assert_eq(rx.count, sent);
	cr_assert_eq(rx.bad, 0, "%u frames lost or reordered", rx.bad);
	cr_assert_eq(queue_flush(q0), 1);
	cr_assert_eq(queue_backlog(q0, 1), 0);
	cr_assert_eq(queue_pending_fds(q0, fds, 4), 0);
}

/* The byte bound: 200 KB payloads (a large stanza) to a slot that does
 * not read are refused once queue.outbox_bytes is reached, not after
 * 65536 frames; everything accepted still arrives, in order. */
#define BIG_PAYLOAD (200u * 1000u)
#define BYTES_CAP (1u << 20)

static void rx_big_cb(const struct ipc_frame_header *hdr, const void *payload,
		      size_t len, void *ctx)
{
	struct rx *rx = ctx;
	uint64_t seq;

	memcpy(&seq, payload, sizeof(seq));
	if (len != BIG_PAYLOAD || seq != rx->count || hdr->gen != (uint32_t)seq)
		rx->bad++;
	rx->count++;
}

Test(queue, outbox_bytes_bound_then_drain)
{
	unsigned char *payload = calloc(1, BIG_PAYLOAD);
	struct queue *q = queue_new(&qs, 0, 65536, BYTES_CAP);
	struct rx rx = { .count = 0 };
	const char *error = NULL;
	int64_t deadline = time_now_ms() + DEADLINE_MS;
	uint64_t seq;

	cr_assert(payload != NULL && q != NULL);
	for (seq = 0; seq < 1000; seq++) {
		memcpy(payload, &seq, sizeof(seq));
		if (queue_send(q, 1, IPC_FRAME_TEST, 0, (uint32_t)seq, payload,
			       BIG_PAYLOAD, &error) < 0)
			break;
		cr_assert_geq(queue_flush(q), 0);
		cr_assert_leq(queue_backlog_bytes(q, 1), BYTES_CAP,
			      "outbox over its byte bound");
	}
	cr_assert_lt(seq, 1000, "outbox never filled");
	cr_assert_str_eq(error, QUEUE_ERR_FULL);
	cr_assert_gt(queue_backlog_bytes(q, 1) + BIG_PAYLOAD + 64, BYTES_CAP,
		     "refused well before the bound");
	while (rx.count < seq) {
		cr_assert_lt(time_now_ms(), deadline);
		cr_assert_geq(queue_receive(q1, rx_big_cb, &rx, 0), 0);
		cr_assert_geq(queue_flush(q), 0);
	}
	cr_assert_eq(rx.bad, 0, "%u frames lost or reordered", rx.bad);
	cr_assert_eq(queue_backlog_bytes(q, 1), 0);
	/* drained: taken again */
	memcpy(payload, &seq, sizeof(seq));
	cr_assert_eq(queue_send(q, 1, IPC_FRAME_TEST, 0, (uint32_t)seq,
				payload, BIG_PAYLOAD, &error), 0);
	queue_free(&q);
	free(payload);
}

/* Frames batched within one turn go to a socket with room rather than
 * being refused; an empty outbox takes a frame larger than its byte
 * bound; while the socket is full, one more is refused. */
Test(queue, outbox_bytes_edges)
{
	unsigned char *blob = calloc(1, IPC_FRAME_MAX);
	unsigned char small[1000] = { 0 };
	struct queue *q = queue_new(&qs, 0, 65536, 64u << 10);
	struct rx rx = { .count = 0 };
	const char *error = NULL;
	int64_t deadline = time_now_ms() + DEADLINE_MS;
	unsigned sent = 0;

	cr_assert(blob != NULL && q != NULL);
	/* 150 KB without a flush: queue_send makes room itself */
	for (unsigned i = 0; i < 150; i++)
		cr_assert_eq(queue_send(q, 1, IPC_FRAME_TEST, 0, i, small,
					sizeof(small), &error), 0,
			     "frame %u refused: %s", i, error);
	while (rx.count < 150) {
		cr_assert_lt(time_now_ms(), deadline);
		cr_assert_geq(queue_receive(q1, rx_outbox_cb, &rx, 0), 0);
		cr_assert_geq(queue_flush(q), 0);
	}
	cr_assert_eq(queue_flush(q), 1);
	cr_assert_eq(queue_backlog_bytes(q, 1), 0);
	cr_assert_eq(queue_send(q, 1, IPC_FRAME_TEST, 0, 1, blob,
				IPC_FRAME_MAX, &error), 0,
		     "an empty outbox refused one frame: %s", error);
	/* fill the socket and the outbox: nothing more leaves */
	while (queue_send(q, 1, IPC_FRAME_TEST, 0, 0, small, sizeof(small),
			  &error) == 0 && sent < MILLION)
		sent++;
	cr_assert_str_eq(error, QUEUE_ERR_FULL);
	cr_assert_gt(queue_backlog_bytes(q, 1), 0);
	cr_assert_eq(queue_send(q, 1, IPC_FRAME_TEST, 0, 2, blob,
				IPC_FRAME_MAX, &error), -1);
	cr_assert_str_eq(error, QUEUE_ERR_FULL);
	queue_free(&q);
	free(blob);
}

/* Build one frame by hand, flags and all, for raw injection. */
static void raw_frame(struct buf *b, uint8_t type, uint16_t src, uint32_t conn,
		      uint8_t flags, const void *p, size_t n)
{
	struct ipc_frame_header hdr = {
		.magic = IPC_FRAME_MAGIC, .version = IPC_VERSION, .type = type,
		.flags = flags, .len = (uint32_t)n, .src_slot = src,
		.conn_id = conn, .gen = 7,
	};

	cr_assert_eq(buf_append(b, &hdr, sizeof(hdr)), 0);
	cr_assert_eq(buf_append(b, p, n), 0);
}

static void raw_send(struct buf *b)
{
	cr_assert_eq(send(qs.fds[1].send, buf_head(b), buf_used(b), 0),
		     (ssize_t)buf_used(b), "send: %s", strerror(errno));
	buf_consume(b, buf_used(b));
}

Test(queue, malformed_datagrams_dropped_good_frames_arrive)
{
	unsigned char got[64];
	struct rx rx = { .copy = got, .copy_size = sizeof(got) };
	struct buf b;
	struct ipc_frame_header hdr;

	buf_init(&b, 0);
	cr_assert_eq(send(qs.fds[1].send, "junk", 4, 0), 4);
	cr_assert_eq(send(qs.fds[1].send, "", 0, 0), 0);
	raw_frame(&b, IPC_FRAME_TEST, 0, 1, 0, "good", 4);    /* delivered */
	raw_frame(&b, IPC_FRAME_TEST, 0, 99, 0, "", 0);
	memcpy(&hdr, buf_head(&b) + buf_used(&b) - sizeof(hdr), sizeof(hdr));
	hdr.magic = 0;                   /* breaks the second frame */
	memcpy(b.data + b.len - sizeof(hdr), &hdr, sizeof(hdr));
	/* well-formed, but after a bad frame nothing in the datagram is
	 * trusted: a reader that skipped the bad header would take it */
	raw_frame(&b, IPC_FRAME_TEST, 0, 98, 0, "also", 4);
	raw_send(&b);
	raw_frame(&b, IPC_FRAME_TEST, 5, 97, 0, "slot", 4);   /* no slot 5 */
	raw_send(&b);
	raw_frame(&b, IPC_FRAME_TEST, 0, 96, 0, "cut", 3);
	b.len--;                                              /* truncated */
	raw_send(&b);
	cr_assert_eq(queue_receive(q1, rx_copy_cb, &rx, 0), 1);
	cr_assert_eq(rx.last_conn, 1);
	cr_assert_eq(memcmp(got, "good", 4), 0);

	send_blob((const unsigned char *)"fine", 4, 2);
	send_blob((const unsigned char *)"too", 3, 3);
	pump(&rx, 3);
	cr_assert_eq(rx.last_conn, 3);
	cr_assert_eq(rx.bad, 0);
	buf_free(&b);
}

Test(queue, reassembly_mismatch_and_overflow_dropped)
{
	static unsigned char chunk[IPC_FRAG_MAX];
	unsigned char got[64];
	struct rx rx = { .copy = got, .copy_size = sizeof(got) };
	struct buf b;
	unsigned i;

	buf_init(&b, 0);
	/* a head from slot 2, then an unrelated frame from slot 2 */
	raw_frame(&b, IPC_FRAME_STANZA, 2, 1, IPC_FRAME_F_MORE, "head", 4);
	raw_send(&b);
	raw_frame(&b, IPC_FRAME_STANZA, 2, 2, 0, "other", 5);
	raw_send(&b);
	cr_assert_eq(queue_receive(q1, rx_copy_cb, &rx, 0), 1);
	cr_assert_eq(rx.last_conn, 2);
	cr_assert_eq(rx.last_len, 5, "the stale head was glued on");

	/* more chunks than IPC_FRAME_MAX: the whole frame is dropped, even
	 * its tail chunks, and the next frame from slot 2 is whole */
	for (i = 0; i * IPC_FRAG_MAX <= IPC_FRAME_MAX; i++) {
		raw_frame(&b, IPC_FRAME_STANZA, 2, 3, IPC_FRAME_F_MORE, chunk,
			  sizeof(chunk));
		raw_send(&b);
		cr_assert_eq(queue_receive(q1, rx_copy_cb, &rx, 0), 0);
	}
	raw_frame(&b, IPC_FRAME_STANZA, 2, 3, IPC_FRAME_F_MORE, "x", 1);
	raw_frame(&b, IPC_FRAME_STANZA, 2, 3, 0, "end", 3);
	raw_frame(&b, IPC_FRAME_STANZA, 2, 4, 0, "next", 4);
	raw_send(&b);
	cr_assert_eq(queue_receive(q1, rx_copy_cb, &rx, 0), 1);
	cr_assert_eq(rx.last_conn, 4);
	cr_assert_eq(rx.last_len, 4);

	/* a bad datagram between two chunks may have been the middle one:
	 * the chunks around it must not be spliced into one frame */
	raw_frame(&b, IPC_FRAME_STANZA, 2, 5, IPC_FRAME_F_MORE, "one", 3);
	raw_send(&b);
	cr_assert_eq(send(qs.fds[1].send, "junk", 4, 0), 4);
	raw_frame(&b, IPC_FRAME_STANZA, 2, 5, 0, "three", 5);
	raw_frame(&b, IPC_FRAME_STANZA, 2, 6, 0, "after", 5);
	raw_send(&b);
	cr_assert_eq(queue_receive(q1, rx_copy_cb, &rx, 0), 1);
	cr_assert_eq(rx.last_conn, 6);
	cr_assert_eq(rx.bad, 0);
	buf_free(&b);
}

Test(queue, forget_source_drops_partial)
{
	unsigned char got[64];
	struct rx rx = { .copy = got, .copy_size = sizeof(got) };
	struct buf b;

	buf_init(&b, 0);
	raw_frame(&b, IPC_FRAME_STANZA, 2, 1, IPC_FRAME_F_MORE, "dead", 4);
	raw_send(&b);
	cr_assert_eq(queue_receive(q1, rx_copy_cb, &rx, 0), 0);
	queue_forget_source(q1, 2);
	/* the respawned slot 2 sends a frame with the same ids */
	raw_frame(&b, IPC_FRAME_STANZA, 2, 1, 0, "new", 3);
	raw_send(&b);
	cr_assert_eq(queue_receive(q1, rx_copy_cb, &rx, 0), 1);
	cr_assert_eq(rx.last_len, 3);
	cr_assert_eq(memcmp(got, "new", 3), 0);
	buf_free(&b);
}

Test(queue, receive_stops_at_max_dgrams)
{
	struct rx rx = { .count = 0 };
	struct buf b;

	buf_init(&b, 0);
	for (unsigned i = 0; i < 3; i++) {
		raw_frame(&b, IPC_FRAME_TEST, 0, 0, 0, "12345678", 8);
		raw_frame(&b, IPC_FRAME_TEST, 0, 0, 0, "12345678", 8);
		raw_send(&b);
	}
	cr_assert_eq(queue_receive(q1, rx_copy_cb, &rx, 1), 2);
	cr_assert_eq(queue_receive(q1, rx_copy_cb, &rx, 0), 4);
	cr_assert_eq(queue_receive(q1, rx_copy_cb, &rx, 0), 0);
	buf_free(&b);
}

/* ---- a reader killed while it dispatches ------------------------------- */

static void rx_die_cb(const struct ipc_frame_header *hdr, const void *payload,
		      size_t len, void *ctx)
{
	(void)payload;
	(void)len;
	(void)ctx;
	if (hdr->conn_id == 2)
		_exit(0);
}

/* A child reads q1 with the shared flag and dies at the frame of conn 2. */
static void reader_dies(_Atomic uint32_t *flag)
{
	pid_t pid = fork();
	int status;

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		alarm(30);
		queue_set_dispatch_flag(q1, flag);
		queue_receive(q1, rx_die_cb, NULL, 0);
		_exit(3);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "the reader did not die at conn 2");
}

/* Two datagrams: conns 1 and 2, then 3. */
static void send_two_dgrams(void)
{
	struct buf b;

	buf_init(&b, 0);
	raw_frame(&b, IPC_FRAME_TEST, 0, 1, 0, "a", 1);
	raw_frame(&b, IPC_FRAME_TEST, 0, 2, 0, "b", 1);
	raw_send(&b);
	raw_frame(&b, IPC_FRAME_TEST, 0, 3, 0, "c", 1);
	raw_send(&b);
	buf_free(&b);
}

/* The respawn gets the datagram the dead reader was dispatching: its
 * frames arrive again (at least once), none is lost. */
Test(queue, reader_killed_mid_dispatch_leaves_datagram)
{
	_Atomic uint32_t *flag = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
				      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	unsigned char got[64];
	struct rx rx = { .copy = got, .copy_size = sizeof(got) };

	cr_assert_neq(flag, MAP_FAILED);
	send_two_dgrams();
	reader_dies(flag);
	cr_assert_eq(*flag, 1);
	queue_set_dispatch_flag(q1, flag);
	cr_assert_eq(queue_receive(q1, rx_copy_cb, &rx, 0), 3);
	cr_assert_eq(rx.conns[0], 1);
	cr_assert_eq(rx.conns[1], 2);
	cr_assert_eq(rx.conns[2], 3);
	cr_assert_eq(*flag, 0);
	cr_assert_eq(rx.bad, 0);
	munmap((void *)flag, 4096);
}

/* A datagram that kills its reader twice is dropped: the third reader
 * goes on with the next one (no crash loop). */
Test(queue, datagram_killing_two_readers_dropped)
{
	_Atomic uint32_t *flag = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
				      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	unsigned char got[64];
	struct rx rx = { .copy = got, .copy_size = sizeof(got) };

	cr_assert_neq(flag, MAP_FAILED);
	send_two_dgrams();
	reader_dies(flag);
	reader_dies(flag);
	cr_assert_eq(*flag, 0);
	queue_set_dispatch_flag(q1, flag);
	cr_assert_eq(queue_receive(q1, rx_copy_cb, &rx, 0), 1);
	cr_assert_eq(rx.conns[0], 3);
	munmap((void *)flag, 4096);
}

/* ---- node fields (issue 15): slots 0 and 1 are workers, 2 the bridge */

struct rx_node {
	unsigned count;
	struct ipc_frame_header last;
	char text[32];
};

static void rx_node_cb(const struct ipc_frame_header *hdr,
		       const void *payload, size_t len, void *ctx)
{
	struct rx_node *rx = ctx;

	rx->count++;
	rx->last = *hdr;
	if (len < sizeof(rx->text)) {
		memcpy(rx->text, payload, len);
		rx->text[len] = '\0';
	}
}

/* A raw frame naming a node, to slot 1. */
static void raw_node_frame(struct buf *b, uint16_t src, uint32_t conn,
			   uint8_t node, uint8_t node_slot, uint8_t flags,
			   const char *text)
{
	size_t at = buf_used(b);
	struct ipc_frame_header hdr;

	raw_frame(b, IPC_FRAME_STANZA, src, conn, flags, text, strlen(text));
	memcpy(&hdr, buf_head(b) + at, sizeof(hdr));
	hdr.node = node;
	hdr.node_slot = node_slot;
	memcpy(b->data + b->off + at, &hdr, sizeof(hdr));
}

/* A worker's frame for another node's session reaches the bridge with
 * the node and its worker in the header; the same to a local worker is
 * refused at the sender. */
Test(queue, send_node_to_bridge_only)
{
	struct queue *qb = queue_new(&qs, 2, 1000, 0);
	struct rx_node rx = { 0 };
	const char *error = NULL;

	cr_assert_not_null(qb);
	queue_set_bridge(q0, 2);
	queue_set_bridge(qb, 2);
	cr_assert_eq(queue_send_node(q0, 2, 5, 3, IPC_FRAME_STANZA, 11, 12,
				     "hi", 2, &error), 0, "%s", error);
	cr_assert_eq(queue_send_node(q0, 1, 5, 3, IPC_FRAME_STANZA, 11, 12,
				     "no", 2, &error), -1);
	cr_assert_str_eq(error, "node fields on a frame between local workers");
	cr_assert_eq(queue_send_node(q0, 2, IPC_MAX_NODES, 0, IPC_FRAME_STANZA,
				     1, 1, "no", 2, &error), -1);
	cr_assert_str_eq(error, "node index out of range");
	cr_assert_eq(queue_backlog(q0, 1), 0, "a refused frame was queued");
	cr_assert_eq(queue_flush(q0), 1);
	cr_assert_eq(queue_receive(qb, rx_node_cb, &rx, 0), 1);
	cr_assert_eq(rx.last.node, 5);
	cr_assert_eq(rx.last.node_slot, 3);
	cr_assert_eq(rx.last.src_slot, 0);
	cr_assert_eq(rx.last.conn_id, 11);
	cr_assert_eq(rx.last.gen, 12);
	cr_assert_str_eq(rx.text, "hi");
	/* plain queue_send is node 0 */
	cr_assert_eq(queue_send(q0, 2, IPC_FRAME_STANZA, 1, 1, "x", 1,
				&error), 0);
	cr_assert_eq(queue_flush(q0), 1);
	cr_assert_eq(queue_receive(qb, rx_node_cb, &rx, 0), 1);
	cr_assert_eq(rx.last.node, 0);
	cr_assert_eq(rx.last.node_slot, 0);
	queue_free(&qb);
}

/* Without a bridge slot set (no cluster), a node on any frame is
 * refused at the sender. */
Test(queue, send_node_without_bridge_refused)
{
	const char *error = NULL;

	cr_assert_eq(queue_send_node(q0, 2, 1, 0, IPC_FRAME_STANZA, 1, 1,
				     "x", 1, &error), -1);
	cr_assert_str_eq(error, "node fields on a frame between local workers");
	cr_assert_eq(queue_backlog(q0, 2), 0);
}

/* The receiver applies the rule too: a local worker's frame naming a
 * node is dropped (logged), the bridge's is delivered with its origin,
 * and a worker that does not know the bridge drops both. */
Test(queue, receiver_checks_node_fields)
{
	struct rx_node rx = { 0 };
	struct buf b;

	buf_init(&b, 0);
	raw_node_frame(&b, 0, 1, 4, 0, 0, "forged");
	raw_send(&b);
	raw_node_frame(&b, 2, 2, 4, 1, 0, "bridged");
	raw_send(&b);
	cr_assert_eq(queue_receive(q1, rx_node_cb, &rx, 0), 0,
		     "frames with a node delivered with no bridge known");
	queue_set_bridge(q1, 2);
	raw_node_frame(&b, 0, 1, 4, 0, 0, "forged");
	raw_send(&b);
	raw_node_frame(&b, 2, 2, 4, 1, 0, "bridged");
	raw_send(&b);
	cr_assert_eq(queue_receive(q1, rx_node_cb, &rx, 0), 1);
	cr_assert_str_eq(rx.text, "bridged");
	cr_assert_eq(rx.last.src_slot, 2);
	cr_assert_eq(rx.last.node, 4);
	cr_assert_eq(rx.last.node_slot, 1);
	buf_free(&b);
}

/* The bridge relays frames of several nodes: a chunked frame's next
 * chunk must come from the same origin, or the partial one is dropped
 * rather than glued to another node's frame with the same ids. */
Test(queue, reassembly_keeps_origins_apart)
{
	struct rx_node rx = { 0 };
	struct buf b;

	buf_init(&b, 0);
	queue_set_bridge(q1, 2);
	raw_node_frame(&b, 2, 7, 1, 0, IPC_FRAME_F_MORE, "head1");
	raw_send(&b);
	raw_node_frame(&b, 2, 7, 2, 0, 0, "whole2");
	raw_send(&b);
	cr_assert_eq(queue_receive(q1, rx_node_cb, &rx, 0), 1);
	cr_assert_str_eq(rx.text, "whole2", "node 1's head was glued on");
	cr_assert_eq(rx.last.node, 2);
	/* a chunked frame from one origin is whole */
	raw_node_frame(&b, 2, 8, 3, 1, IPC_FRAME_F_MORE, "ab");
	raw_node_frame(&b, 2, 8, 3, 1, 0, "cd");
	raw_send(&b);
	cr_assert_eq(queue_receive(q1, rx_node_cb, &rx, 0), 1);
	cr_assert_str_eq(rx.text, "abcd");
	cr_assert_eq(rx.last.node, 3);
	cr_assert_eq(rx.last.node_slot, 1);
	buf_free(&b);
}

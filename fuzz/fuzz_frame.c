/*
 * fuzz_frame.c - what a worker reads from its queue: datagrams of
 * frames (shm/queue.c), their headers and fields (shm/frame.c).
 * Properties:
 *  - raw mode: any datagrams sent to a slot's socket are delivered as
 *    whole, valid frames (known type, no MORE flag, payload within
 *    IPC_FRAME_MAX and readable to its end, a real source slot) or
 *    dropped; nothing else happens (ASan, UBSan);
 *  - each frame is read field by field with frame_get_* (the fields
 *    chosen by the frame's gen, 3 bits each); when frame_end() accepts,
 *    writing the same fields with frame_add_* gives the same bytes;
 *  - slot 1 is also the cluster bridge's (queue_set_bridge): a frame
 *    delivered with node fields comes from it, names a node below
 *    IPC_MAX_NODES and a slot below IPC_MAX_SLOTS, and node 0 comes
 *    with node_slot 0 (frame_check_route);
 *  - round-trip mode: payloads sent with queue_send from slot 1 (split
 *    into chunks when large) arrive at slot 0 whole, once, in order.
 * Input: byte 0 even = raw mode, odd = round trip.  The rest is
 * records of a 2-byte little-endian length and that many bytes (the
 * last one takes what is left): a datagram each in raw mode; in round
 * trip a payload each, whose first byte picks the frame type and whose
 * size is multiplied by the second byte (repeating the bytes), so
 * frames of several chunks are reached.
 */
#include "fuzz.h"
#include "frame.h"
#include "queue.h"

#include <string.h>
#include <sys/socket.h>

#define FUZZ_MAX_FRAMES 256

/* 0, 0: the default frame and byte bounds of the outbox. */
#define FUZZ_QUEUE_NEW(qs, slot) queue_new(qs, slot, 0, 0)

static struct queue_set fuzz_qs;
static struct queue *fuzz_rx, *fuzz_tx;

struct sent {
	uint8_t type;
	uint32_t conn_id, gen;
	const uint8_t *p;
	size_t len;
};

struct expect {
	struct sent frames[FUZZ_MAX_FRAMES];
	unsigned count, got;
	int round_trip;
};

static void fuzz_init(void)
{
	const char *error;
	fuzz_quiet_log();
	if (queue_set_create(&fuzz_qs, 2, &error) < 0 ||
	    (fuzz_rx = FUZZ_QUEUE_NEW(&fuzz_qs, 0)) == NULL ||
	    (fuzz_tx = FUZZ_QUEUE_NEW(&fuzz_qs, 1)) == NULL) {
		fprintf(stderr, "fuzz_frame: queue set-up failed\n");
		abort();
	}
	queue_set_bridge(fuzz_rx, 1);
	queue_set_bridge(fuzz_tx, 1);
}

/* Read the fields gen names; rewrite them; compare. */
static void check_fields(const struct ipc_frame_header *hdr,
			 const uint8_t *payload, size_t len)
{
	struct frame_reader r;
	struct buf out;
	struct frame_writer w;
	uint32_t ops = hdr->gen;
	const char *error;
	char str[256];

	buf_init(&out, 0);
	frame_reader_init(&r, payload, len);
	frame_begin(&w, &out, hdr->type, hdr->src_slot, hdr->conn_id, hdr->gen);
	frame_set_node(&w, hdr->node, hdr->node_slot);
	frame_set_token(&w, hdr->token);
	for (int i = 0; i < 10; i++, ops >>= 3) {
		unsigned op = ops & 7;
		uint8_t u8;
		uint16_t u16;
		uint32_t u32;
		uint64_t u64;
		const void *p;
		size_t n;
		int rc = 0;
		if (op == 7)
			break;
		switch (op) {
		case 0:
			if ((rc = frame_get_u8(&r, &u8)) == 0)
				frame_add_u8(&w, u8);
			break;
		case 1:
			if ((rc = frame_get_u16(&r, &u16)) == 0)
				frame_add_u16(&w, u16);
			break;
		case 2:
			if ((rc = frame_get_u32(&r, &u32)) == 0)
				frame_add_u32(&w, u32);
			break;
		case 3:
			if ((rc = frame_get_u64(&r, &u64)) == 0)
				frame_add_u64(&w, u64);
			break;
		case 4:
			if ((rc = frame_get_data(&r, &p, &n)) == 0) {
				FUZZ_CHECK(n <= len && (const uint8_t *)p >= payload &&
					   (const uint8_t *)p + n <= payload + len,
					   "data field outside the payload");
				frame_add_data(&w, p, n);
			}
			break;
		case 5:
			if ((rc = frame_get_str(&r, str, sizeof(str))) == 0) {
				FUZZ_CHECK(memchr(str, '\0', sizeof(str)) != NULL,
					   "string not terminated");
				frame_add_str(&w, str);
			}
			break;
		case 6:
			frame_get_rest(&r, &p, &n);
			frame_add_raw(&w, p, n);
			break;
		}
		if (rc < 0)
			break;
	}
	if (frame_end(&r) == 0) {
		FUZZ_CHECK(frame_finish(&w, &error) == 0, "rewriting failed: %s",
			   error);
		FUZZ_CHECK(buf_used(&out) == IPC_FRAME_HDR_SIZE + len &&
			   memcmp(buf_head(&out) + IPC_FRAME_HDR_SIZE, payload,
				  len) == 0, "fields read and written again "
			   "differ (gen %08x)", hdr->gen);
		struct ipc_frame_header again;
		size_t size;
		FUZZ_CHECK(frame_parse_header(buf_head(&out), buf_used(&out),
					      &again, &size, &error) == 0 &&
			   size == buf_used(&out) &&
			   memcmp(&again, hdr, sizeof(again)) == 0,
			   "rewritten header differs");
	}
	buf_free(&out);
}

static void on_frame(const struct ipc_frame_header *hdr, const void *payload,
		     size_t len, void *ctx)
{
	struct expect *e = ctx;
	const uint8_t *p = payload;
	unsigned sum = 0;

	FUZZ_CHECK(hdr->type != 0 && hdr->type < IPC_FRAME_TYPE_MAX,
		   "type %u delivered", hdr->type);
	FUZZ_CHECK(hdr->flags == 0, "flags %02x delivered", hdr->flags);
	FUZZ_CHECK(hdr->src_slot < 2, "source slot %u delivered",
		   hdr->src_slot);
	FUZZ_CHECK(len == hdr->len && len <= IPC_FRAME_MAX,
		   "length %zu (header %u)", len, hdr->len);
	FUZZ_CHECK(hdr->node == 0 ? hdr->node_slot == 0 :
		   hdr->src_slot == 1 && hdr->node < IPC_MAX_NODES &&
		   hdr->node_slot < IPC_MAX_SLOTS,
		   "node %u slot %u from slot %u delivered", hdr->node,
		   hdr->node_slot, hdr->src_slot);
	for (size_t i = 0; i < len; i++)    /* ASan: all of it is there */
		sum += p[i];
	(void)sum;
	if (!e->round_trip) {
		check_fields(hdr, p, len);
		return;
	}
	FUZZ_CHECK(e->got < e->count, "more frames than were sent");
	const struct sent *s = &e->frames[e->got++];
	FUZZ_CHECK(hdr->src_slot == 1 && hdr->type == s->type &&
		   hdr->conn_id == s->conn_id && hdr->gen == s->gen,
		   "frame %u: header changed", e->got - 1);
	FUZZ_CHECK(len == s->len, "frame %u: %zu bytes sent, %zu received",
		   e->got - 1, s->len, len);
	FUZZ_CHECK(memcmp(p, s->p, len) == 0, "frame %u: payload changed",
		   e->got - 1);
}

/* Next record: 2-byte little-endian length, then the bytes. */
static int next_record(const uint8_t **data, size_t *size,
		       const uint8_t **rec_r, size_t *len_r)
{
	if (*size < 2)
		return 0;
	size_t n = (size_t)(*data)[0] | (size_t)(*data)[1] << 8;
	*data += 2;
	*size -= 2;
	if (n > *size)
		n = *size;
	*rec_r = *data;
	*len_r = n;
	*data += n;
	*size -= n;
	return 1;
}

static void fuzz_raw(const uint8_t *data, size_t size, struct expect *e)
{
	const uint8_t *rec;
	size_t len;
	int fd = fuzz_qs.fds[0].send;
	while (next_record(&data, &size, &rec, &len)) {
		if (send(fd, rec, len, MSG_DONTWAIT) < 0) {
			queue_receive(fuzz_rx, on_frame, e, 0);
			if (send(fd, rec, len, MSG_DONTWAIT) < 0)
				abort();
		}
	}
	queue_receive(fuzz_rx, on_frame, e, 0);
}

static void fuzz_round_trip(const uint8_t *data, size_t size,
			    struct expect *e)
{
	const uint8_t *rec;
	size_t len, total = 0;
	const char *error;
	uint8_t *bufs[FUZZ_MAX_FRAMES];
	unsigned nbufs = 0;

	while (e->count < FUZZ_MAX_FRAMES &&
	       next_record(&data, &size, &rec, &len)) {
		struct sent *s = &e->frames[e->count];
		size_t times = len >= 2 ? 1 + rec[1] : 1;
		size_t n = len * times;
		/* within the default outbox bounds (4 MiB once bounded in
		 * bytes): everything is queued before the first flush */
		if (total + n > 2 * IPC_FRAME_MAX || n > IPC_FRAME_MAX)
			n = 0;
		total += n;
		uint8_t *p = malloc(n > 0 ? n : 1);
		if (p == NULL)
			abort();
		for (size_t i = 0; i < n; i++)
			p[i] = rec[i % len];
		bufs[nbufs++] = p;
		s->type = len > 0 ? 1 + rec[0] % (IPC_FRAME_TYPE_MAX - 1) : 1;
		s->conn_id = e->count;
		s->gen = (uint32_t)n;
		s->p = p;
		s->len = n;
		FUZZ_CHECK(queue_send(fuzz_tx, 0, s->type, s->conn_id, s->gen,
				      p, n, &error) == 0, "queue_send: %s",
			   error);
		e->count++;
	}
	/* flush and read in turns: the socket may not hold everything */
	for (int turn = 0; turn < 1000; turn++) {
		int rc = queue_flush(fuzz_tx);
		FUZZ_CHECK(rc >= 0, "queue_flush failed");
		queue_receive(fuzz_rx, on_frame, e, 0);
		if (rc == 1)
			break;
	}
	queue_receive(fuzz_rx, on_frame, e, 0);
	FUZZ_CHECK(e->got == e->count, "%u frames sent, %u received",
		   e->count, e->got);
	for (unsigned i = 0; i < nbufs; i++)
		free(bufs[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	static struct expect e;
	if (!ready) {
		fuzz_init();
		ready = 1;
	}
	if (size == 0 || size > 300000)
		return 0;
	memset(&e, 0, sizeof(e));
	/* nothing half-reassembled from the last input */
	queue_forget_source(fuzz_rx, 0);
	queue_forget_source(fuzz_rx, 1);
	e.round_trip = data[0] & 1;
	if (e.round_trip)
		fuzz_round_trip(data + 1, size - 1, &e);
	else
		fuzz_raw(data + 1, size - 1, &e);
	return 0;
}

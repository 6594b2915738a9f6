/*
 * test_frame.c - the queue frame codec: round trips of every field type,
 * and every malformed header or payload rejected with the right error.
 */
#include <criterion/criterion.h>
#include <stddef.h>
#include <string.h>
#include "frame.h"
#include "buf.h"

static struct buf out;

static void setup(void)
{
	buf_init(&out, 0);
}

static void teardown(void)
{
	buf_free(&out);
}

TestSuite(frame, .init = setup, .fini = teardown, .timeout = 10);

/* A valid header for tests that break one field. */
static struct ipc_frame_header good_header(uint32_t len)
{
	struct ipc_frame_header hdr = {
		.magic = IPC_FRAME_MAGIC, .version = IPC_VERSION,
		.type = IPC_FRAME_TEST, .len = len, .src_slot = 1,
		.conn_id = 2, .gen = 3,
	};
	return hdr;
}

static const char *parse_error(const struct ipc_frame_header *hdr,
			       size_t avail)
{
	unsigned char raw[IPC_FRAME_HDR_SIZE + 64] = { 0 };
	struct ipc_frame_header got;
	const char *error = NULL;
	size_t size;

	cr_assert(avail <= sizeof(raw));
	memcpy(raw, hdr, sizeof(*hdr));
	cr_assert_eq(frame_parse_header(raw, avail, &got, &size, &error), -1);
	cr_assert_not_null(error);
	return error;
}

static void build_all_fields(void)
{
	struct frame_writer w;
	const char *error = NULL;
	static const unsigned char bin[] = { 0, 1, 0xff, 0, 7 };

	frame_begin(&w, &out, IPC_FRAME_STANZA, 3, 0xdeadbeef, 42);
	frame_add_u8(&w, 0xab);
	frame_add_u16(&w, 0xfffe);
	frame_add_u32(&w, 0x80000001u);
	frame_add_u64(&w, 0x0123456789abcdefull);
	frame_add_data(&w, bin, sizeof(bin));
	frame_add_str(&w, "juliet@example.com/balcony");
	frame_add_data(&w, "", 0);
	frame_add_str(&w, "");
	frame_add_raw(&w, "tail", 4);
	cr_assert_eq(frame_finish(&w, &error), 0, "finish: %s", error);
}

Test(frame, round_trip_every_field)
{
	struct ipc_frame_header hdr;
	struct frame_reader r;
	const char *error = NULL;
	const void *p;
	size_t size, n;
	uint8_t u8; uint16_t u16; uint32_t u32; uint64_t u64;
	char str[64];

	build_all_fields();
	cr_assert_eq(frame_parse_header(buf_head(&out), buf_used(&out), &hdr,
					&size, &error), 0, "%s", error);
	cr_assert_eq(size, buf_used(&out));
	cr_assert_eq(hdr.len, size - IPC_FRAME_HDR_SIZE);
	cr_assert_eq(hdr.type, IPC_FRAME_STANZA);
	cr_assert_eq(hdr.flags, 0);
	cr_assert_eq(hdr.src_slot, 3);
	cr_assert_eq(hdr.conn_id, 0xdeadbeef);
	cr_assert_eq(hdr.gen, 42);

	frame_reader_init(&r, buf_head(&out) + IPC_FRAME_HDR_SIZE, hdr.len);
	cr_assert_eq(frame_get_u8(&r, &u8), 0);
	cr_assert_eq(u8, 0xab);
	cr_assert_eq(frame_get_u16(&r, &u16), 0);
	cr_assert_eq(u16, 0xfffe);
	cr_assert_eq(frame_get_u32(&r, &u32), 0);
	cr_assert_eq(u32, 0x80000001u);
	cr_assert_eq(frame_get_u64(&r, &u64), 0);
	cr_assert_eq(u64, 0x0123456789abcdefull);
	cr_assert_eq(frame_get_data(&r, &p, &n), 0);
	cr_assert_eq(n, 5);
	cr_assert_eq(memcmp(p, "\0\1\377\0\7", 5), 0);
	cr_assert_eq(frame_get_str(&r, str, sizeof(str)), 0);
	cr_assert_str_eq(str, "juliet@example.com/balcony");
	cr_assert_eq(frame_get_data(&r, &p, &n), 0);
	cr_assert_eq(n, 0);
	cr_assert_eq(frame_get_str(&r, str, 1), 0);    /* "" fits in 1 */
	cr_assert_str_eq(str, "");
	cr_assert_neq(frame_end(&r), 0, "raw tail not read yet");
	frame_get_rest(&r, &p, &n);
	cr_assert_eq(n, 4);
	cr_assert_eq(memcmp(p, "tail", 4), 0);
	cr_assert_eq(frame_end(&r), 0);
}

Test(frame, two_frames_back_to_back)
{
	struct frame_writer w;
	struct ipc_frame_header hdr;
	const char *error = NULL;
	size_t size1, size2;

	frame_begin(&w, &out, IPC_FRAME_KICK, 1, 10, 11);
	frame_add_str(&w, "bye");
	cr_assert_eq(frame_finish(&w, &error), 0);
	frame_begin(&w, &out, IPC_FRAME_SWEPT, 2, 0, 0);    /* empty payload */
	cr_assert_eq(frame_finish(&w, &error), 0);

	cr_assert_eq(frame_parse_header(buf_head(&out), buf_used(&out), &hdr,
					&size1, &error), 0);
	cr_assert_eq(hdr.type, IPC_FRAME_KICK);
	cr_assert_eq(hdr.len, 4 + 3);
	cr_assert_eq(frame_parse_header(buf_head(&out) + size1,
					buf_used(&out) - size1, &hdr, &size2,
					&error), 0);
	cr_assert_eq(hdr.type, IPC_FRAME_SWEPT);
	cr_assert_eq(hdr.len, 0);
	cr_assert_eq(size1 + size2, buf_used(&out));
}

/* The writer must survive buf_append compacting consumed bytes away. */
Test(frame, writer_on_buffer_with_consumed_head)
{
	struct frame_writer w;
	struct ipc_frame_header hdr;
	const char *error = NULL;
	char fill[200] = { 0 }, big[1000];
	size_t size;

	memset(big, 'x', sizeof(big));
	cr_assert_eq(buf_append(&out, fill, sizeof(fill)), 0);
	buf_consume(&out, 150);
	frame_begin(&w, &out, IPC_FRAME_TEST, 0, 1, 1);
	frame_add_raw(&w, big, sizeof(big));
	cr_assert_eq(frame_finish(&w, &error), 0);
	cr_assert_eq(buf_used(&out), 50 + IPC_FRAME_HDR_SIZE + sizeof(big));
	cr_assert_eq(frame_parse_header(buf_head(&out) + 50, buf_used(&out) - 50,
					&hdr, &size, &error), 0, "%s", error);
	cr_assert_eq(hdr.len, sizeof(big));
}

Test(frame, finish_fails_at_buffer_cap_and_removes_frame)
{
	struct frame_writer w;
	const char *error = NULL;
	char big[100] = { 0 };

	buf_init(&out, 64);
	frame_begin(&w, &out, IPC_FRAME_TEST, 0, 0, 0);
	frame_add_u32(&w, 1);
	cr_assert_eq(frame_finish(&w, &error), 0);
	cr_assert_eq(buf_used(&out), IPC_FRAME_HDR_SIZE + 4);

	frame_begin(&w, &out, IPC_FRAME_TEST, 0, 0, 0);
	frame_add_u32(&w, 2);
	frame_add_raw(&w, big, sizeof(big));   /* past the 64-byte cap */
	frame_add_u8(&w, 3);                    /* must not land either */
	cr_assert_eq(frame_finish(&w, &error), -1);
	cr_assert_str_eq(error, "frame buffer full");
	cr_assert_eq(buf_used(&out), IPC_FRAME_HDR_SIZE + 4, "partial frame left in the buffer");
}

Test(frame, finish_rejects_payload_over_max)
{
	struct frame_writer w;
	const char *error = NULL;
	static char big[IPC_FRAME_MAX + 1];

	frame_begin(&w, &out, IPC_FRAME_TEST, 0, 0, 0);
	frame_add_raw(&w, big, IPC_FRAME_MAX);
	cr_assert_eq(frame_finish(&w, &error), 0, "exactly the max is fine");
	cr_assert_eq(buf_used(&out), IPC_FRAME_HDR_SIZE + IPC_FRAME_MAX);

	frame_begin(&w, &out, IPC_FRAME_TEST, 0, 0, 0);
	frame_add_raw(&w, big, sizeof(big));
	cr_assert_eq(frame_finish(&w, &error), -1);
	cr_assert_str_eq(error, "frame too large");
	cr_assert_eq(buf_used(&out), IPC_FRAME_HDR_SIZE + IPC_FRAME_MAX);
}

Test(frame, truncated_header)
{
	struct ipc_frame_header hdr = good_header(0);

	for (size_t avail = 0; avail < IPC_FRAME_HDR_SIZE; avail++)
		cr_assert_str_eq(parse_error(&hdr, avail), "truncated header");
}

Test(frame, truncated_payload)
{
	struct ipc_frame_header hdr = good_header(10), got;
	unsigned char raw[IPC_FRAME_HDR_SIZE + 10] = { 0 };
	const char *error = NULL;
	size_t size;

	cr_assert_str_eq(parse_error(&hdr, IPC_FRAME_HDR_SIZE + 9), "truncated");
	cr_assert_str_eq(parse_error(&hdr, IPC_FRAME_HDR_SIZE), "truncated");
	/* and the exact size passes, so the check is not off by one */
	memcpy(raw, &hdr, sizeof(hdr));
	cr_assert_eq(frame_parse_header(raw, sizeof(raw), &got, &size, &error), 0);
	cr_assert_eq(size, sizeof(raw));
}

Test(frame, oversized_len)
{
	struct ipc_frame_header hdr = good_header(IPC_FRAME_MAX + 1);

	cr_assert_str_eq(parse_error(&hdr, IPC_FRAME_HDR_SIZE), "oversized");
	hdr.len = UINT32_MAX;
	cr_assert_str_eq(parse_error(&hdr, IPC_FRAME_HDR_SIZE + 64), "oversized");
	hdr.len = IPC_FRAME_MAX;        /* allowed, just not all here */
	cr_assert_str_eq(parse_error(&hdr, IPC_FRAME_HDR_SIZE), "truncated");
}

Test(frame, bad_magic_version_type_flags)
{
	struct ipc_frame_header hdr;

	hdr = good_header(0);
	hdr.magic = 'Y';
	cr_assert_str_eq(parse_error(&hdr, IPC_FRAME_HDR_SIZE), "bad magic");
	hdr = good_header(0);
	hdr.version = IPC_VERSION + 1;
	cr_assert_str_eq(parse_error(&hdr, IPC_FRAME_HDR_SIZE), "bad version");
	hdr = good_header(0);
	hdr.type = 0;
	cr_assert_str_eq(parse_error(&hdr, IPC_FRAME_HDR_SIZE), "bad type");
	hdr.type = IPC_FRAME_TYPE_MAX;
	cr_assert_str_eq(parse_error(&hdr, IPC_FRAME_HDR_SIZE), "bad type");
	hdr.type = 0xff;
	cr_assert_str_eq(parse_error(&hdr, IPC_FRAME_HDR_SIZE), "bad type");
	hdr = good_header(0);
	hdr.flags = 0x02;
	cr_assert_str_eq(parse_error(&hdr, IPC_FRAME_HDR_SIZE), "unknown flags");
}

/* ---- node fields (issue 15): who may name another node --------------- */

/* Workers 0..2, the bridge at 3 (nworkers = 3, nslots = 4). */
#define BRIDGE 3u

static struct ipc_frame_header node_header(uint16_t src, uint8_t node,
					   uint8_t node_slot)
{
	struct ipc_frame_header hdr = good_header(0);

	hdr.src_slot = src;
	hdr.node = node;
	hdr.node_slot = node_slot;
	return hdr;
}

static const char *route_error(uint16_t src, unsigned dst, uint8_t node,
			       uint8_t node_slot, unsigned bridge)
{
	struct ipc_frame_header hdr = node_header(src, node, node_slot);
	const char *error = NULL;

	if (frame_check_route(&hdr, dst, bridge, &error) == 0)
		return NULL;
	cr_assert_not_null(error);
	return error;
}

/* The header parser no longer judges the old reserved bytes: a frame
 * naming a node parses, and the route check (which knows the
 * destination) decides. */
Test(frame, node_fields_parse_and_round_trip)
{
	struct ipc_frame_header hdr;
	struct frame_writer w;
	const char *error = NULL;
	size_t size;

	frame_begin(&w, &out, IPC_FRAME_STANZA, 1, 5, 6);
	frame_set_node(&w, 7, 2);
	frame_add_str(&w, "x");
	cr_assert_eq(frame_finish(&w, &error), 0, "%s", error);
	cr_assert_eq(frame_parse_header(buf_head(&out), buf_used(&out), &hdr,
					&size, &error), 0, "%s", error);
	cr_assert_eq(hdr.node, 7);
	cr_assert_eq(hdr.node_slot, 2);
	cr_assert_eq(hdr.src_slot, 1);
	cr_assert_eq(hdr.conn_id, 5);
	cr_assert_eq(hdr.gen, 6);
}

Test(frame, local_frames_carry_no_node)
{
	/* between two workers: only 0/0 */
	cr_assert_null(route_error(0, 1, 0, 0, BRIDGE));
	cr_assert_str_eq(route_error(0, 1, 1, 0, BRIDGE),
			 "node fields on a frame between local workers");
	cr_assert_str_eq(route_error(2, 0, 5, 1, BRIDGE),
			 "node fields on a frame between local workers");
	cr_assert_str_eq(route_error(1, 1, 0, 3, BRIDGE),
			 "node slot without a node");
	/* no bridge at all (no cluster): no slot may name a node, not even
	 * the one a bridge would have */
	cr_assert_str_eq(route_error(0, BRIDGE, 1, 0, FRAME_NO_BRIDGE),
			 "node fields on a frame between local workers");
	cr_assert_str_eq(route_error(BRIDGE, 0, 1, 0, FRAME_NO_BRIDGE),
			 "node fields on a frame between local workers");
	cr_assert_null(route_error(0, 1, 0, 0, FRAME_NO_BRIDGE));
}

Test(frame, bridge_frames_may_name_a_node)
{
	/* a worker to the bridge: the destination node and worker */
	cr_assert_null(route_error(0, BRIDGE, 1, 0, BRIDGE));
	cr_assert_null(route_error(2, BRIDGE, IPC_MAX_NODES - 1,
				   IPC_MAX_SLOTS - 1, BRIDGE));
	/* the bridge to a worker: the node and worker it came from */
	cr_assert_null(route_error(BRIDGE, 1, 9, 4, BRIDGE));
	/* the bridge's own frames (node 0) stay plain */
	cr_assert_null(route_error(0, BRIDGE, 0, 0, BRIDGE));
	cr_assert_null(route_error(BRIDGE, 2, 0, 0, BRIDGE));
	cr_assert_str_eq(route_error(BRIDGE, 2, 0, 1, BRIDGE),
			 "node slot without a node");
	/* ranges: a node index the table cannot hold, a slot no node has */
	cr_assert_str_eq(route_error(0, BRIDGE, IPC_MAX_NODES, 0, BRIDGE),
			 "node index out of range");
	cr_assert_str_eq(route_error(BRIDGE, 0, 0xff, 0, BRIDGE),
			 "node index out of range");
	cr_assert_str_eq(route_error(0, BRIDGE, 1, IPC_MAX_SLOTS, BRIDGE),
			 "node slot out of range");
}

Test(frame, good_header_with_more_flag_accepted)
{
	struct ipc_frame_header hdr = good_header(0), got;
	const char *error = NULL;
	size_t size;

	hdr.flags = IPC_FRAME_F_MORE;
	hdr.type = IPC_FRAME_TYPE_MAX - 1;
	cr_assert_eq(frame_parse_header(&hdr, sizeof(hdr), &got, &size,
					&error), 0, "%s", error);
	cr_assert_eq(memcmp(&got, &hdr, sizeof(hdr)), 0);
}

Test(frame, trailing_bytes_rejected)
{
	struct frame_reader r;
	unsigned char payload[5] = { 1, 2, 3, 4, 5 };
	uint32_t v;

	frame_reader_init(&r, payload, sizeof(payload));
	cr_assert_eq(frame_get_u32(&r, &v), 0);
	cr_assert_eq(frame_end(&r), -1);
	frame_reader_init(&r, payload, 4);
	cr_assert_eq(frame_get_u32(&r, &v), 0);
	cr_assert_eq(frame_end(&r), 0);
}

Test(frame, string_with_nul_rejected)
{
	struct frame_writer w;
	struct frame_reader r;
	const char *error = NULL;
	const void *p;
	size_t n;
	char str[16];

	frame_begin(&w, &out, IPC_FRAME_TEST, 0, 0, 0);
	frame_add_data(&w, "evil\0@x", 7);
	cr_assert_eq(frame_finish(&w, &error), 0);
	frame_reader_init(&r, buf_head(&out) + IPC_FRAME_HDR_SIZE,
			  buf_used(&out) - IPC_FRAME_HDR_SIZE);
	cr_assert_eq(frame_get_str(&r, str, sizeof(str)), -1);
	/* the failed read consumed nothing */
	cr_assert_eq(frame_get_data(&r, &p, &n), 0);
	cr_assert_eq(n, 7);
	cr_assert_eq(frame_end(&r), 0);
}

Test(frame, string_too_long_for_buffer_rejected)
{
	struct frame_writer w;
	struct frame_reader r;
	const char *error = NULL;
	char str[6];

	frame_begin(&w, &out, IPC_FRAME_TEST, 0, 0, 0);
	frame_add_str(&w, "hello");
	cr_assert_eq(frame_finish(&w, &error), 0);
	frame_reader_init(&r, buf_head(&out) + IPC_FRAME_HDR_SIZE,
			  buf_used(&out) - IPC_FRAME_HDR_SIZE);
	cr_assert_eq(frame_get_str(&r, str, 5), -1, "no room for the NUL");
	cr_assert_eq(frame_get_str(&r, str, 0), -1);
	cr_assert_eq(frame_get_str(&r, str, 6), 0);
	cr_assert_str_eq(str, "hello");
	cr_assert_eq(frame_end(&r), 0);
}

Test(frame, reading_past_end_rejected)
{
	struct frame_reader r;
	unsigned char payload[16];
	uint8_t u8; uint16_t u16; uint32_t u32; uint64_t u64;
	const void *p;
	size_t n;
	char str[32];

	memset(payload, 0, sizeof(payload));
	frame_reader_init(&r, payload, 0);
	cr_assert_eq(frame_get_u8(&r, &u8), -1);
	frame_reader_init(&r, payload, 1);
	cr_assert_eq(frame_get_u16(&r, &u16), -1);
	frame_reader_init(&r, payload, 3);
	cr_assert_eq(frame_get_u32(&r, &u32), -1);
	frame_reader_init(&r, payload, 7);
	cr_assert_eq(frame_get_u64(&r, &u64), -1);
	cr_assert_eq(r.pos, 0, "a failed read must not move");
	cr_assert_eq(frame_get_u32(&r, &u32), 0);
	cr_assert_eq(frame_get_u32(&r, &u32), -1);
	cr_assert_eq(frame_get_u16(&r, &u16), 0);
	cr_assert_eq(frame_get_u8(&r, &u8), 0);
	cr_assert_eq(frame_get_u8(&r, &u8), -1);
	cr_assert_eq(frame_end(&r), 0);

	/* length prefix says 12, only 11 bytes follow */
	u32 = 12;
	memcpy(payload, &u32, 4);
	frame_reader_init(&r, payload, 15);
	cr_assert_eq(frame_get_data(&r, &p, &n), -1);
	cr_assert_eq(frame_get_str(&r, str, sizeof(str)), -1);
	cr_assert_eq(r.pos, 0);
	u32 = UINT32_MAX;           /* must not wrap the bounds check */
	memcpy(payload, &u32, 4);
	frame_reader_init(&r, payload, 16);
	cr_assert_eq(frame_get_data(&r, &p, &n), -1);
	frame_reader_init(&r, payload, 16);
	frame_get_rest(&r, &p, &n);
	cr_assert_eq(n, 16);
	cr_assert_eq(frame_get_u8(&r, &u8), -1);
}

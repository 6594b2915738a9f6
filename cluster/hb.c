/*
 * hb.c - the heartbeat record every bridge publishes (layout in
 * cluster.h).  It is read from the network, so the parser takes nothing
 * on trust: exact size, known format, only known flag bits, names of the
 * characters config.c allows and zero padding after them, a non-zero
 * incarnation and a worker count a node can have.
 * Failure policy: -1 and a static reason; the caller counts and logs.
 */
#include "cluster.h"
#include "wire.h"

#include <string.h>

/* n bytes of name into a zero-padded field; returns the length used. */
static uint8_t hb_put_name(uint8_t *field, const char *name)
{
	size_t n = strnlen(name, CLUSTER_NAME_MAX);
	memset(field, 0, CLUSTER_NAME_MAX);
	memcpy(field, name, n);
	return (uint8_t)n;
}

void cluster_hb_encode(const struct cluster_hb *hb,
		       uint8_t out[CLUSTER_HB_SIZE])
{
	memset(out, 0, CLUSTER_HB_SIZE);
	memcpy(out, "XHB", 3);
	out[3] = CLUSTER_HB_FORMAT;
	out[4] = hb->flags;
	out[5] = hb_put_name(out + 40, hb->node);
	out[6] = hb_put_name(out + 72, hb->cluster);
	wire_put_u64(out + 8, hb->incarnation);
	wire_put_u32(out + 16, hb->ipc_version);
	wire_put_u32(out + 20, hb->workers);
	wire_put_u64(out + 24, hb->sessions);
	wire_put_u64(out + 32, hb->dir_seq);
	wire_put_u64(out + 104, hb->dir_digest);
	wire_put_u64(out + 112, hb->node_run);
}

/* The characters config.c allows in cluster.name and cluster.node. */

static int hb_get_name(const uint8_t *field, uint8_t len, char *out)
{
	if (len == 0 || len > CLUSTER_NAME_MAX)
		return -1;
	for (unsigned i = 0; i < CLUSTER_NAME_MAX; i++)
		if (i < len ? !wire_name_char(field[i]) : field[i] != 0)
			return -1;
	memcpy(out, field, len);
	out[len] = '\0';
	return 0;
}

int cluster_hb_parse(const void *data, size_t len, struct cluster_hb *hb,
		     const char **error_r)
{
	const uint8_t *p = data;

	memset(hb, 0, sizeof(*hb));
	if (len < 8 || memcmp(p, "XHB", 3) != 0) {
		*error_r = "not a heartbeat";
		return -1;
	}
	if (p[3] != CLUSTER_HB_FORMAT) {
		*error_r = "unknown heartbeat format";
		return -1;
	}
	if (len != CLUSTER_HB_SIZE) {
		*error_r = "heartbeat of the wrong size";
		return -1;
	}
	if ((p[4] & ~CLUSTER_HB_F_LEAVING) != 0 || p[7] != 0) {
		*error_r = "unknown heartbeat flags";
		return -1;
	}
	if (hb_get_name(p + 40, p[5], hb->node) < 0 ||
	    hb_get_name(p + 72, p[6], hb->cluster) < 0) {
		*error_r = "bad node or cluster name";
		return -1;
	}
	hb->flags = p[4];
	hb->incarnation = wire_get_u64(p + 8);
	hb->ipc_version = wire_get_u32(p + 16);
	hb->workers = wire_get_u32(p + 20);
	hb->sessions = wire_get_u64(p + 24);
	hb->dir_seq = wire_get_u64(p + 32);
	hb->dir_digest = wire_get_u64(p + 104);
	hb->node_run = wire_get_u64(p + 112);
	if (hb->incarnation == 0) {
		*error_r = "zero incarnation";
		return -1;
	}
	if (hb->workers == 0 || hb->workers >= IPC_MAX_SLOTS) {
		*error_r = "worker count out of range";
		return -1;
	}
	return 0;
}

/*
 * muc_fan.c - a room stanza's fan-out frames, one per destination
 * worker of the cluster (muc_fan.h).  A destination is found in O(1)
 * through the where[][] index, so a big room costs one look-up per
 * occupant whatever the number of workers and nodes.  Failure policy:
 * NULL on no memory or a bad destination; nothing logged here.
 */
#include <stdlib.h>
#include <string.h>
#include "muc_fan.h"

/* The where[][] cell of a destination: a remote worker is known by its
 * node and its slot there; its queue slot is always the bridge's. */
static uint16_t *muc_fan_cell(struct muc_fan *f, uint16_t slot,
			      uint8_t node, uint8_t rslot)
{
	if (node >= IPC_MAX_NODES || slot >= IPC_MAX_SLOTS ||
	    rslot >= IPC_MAX_SLOTS || (node == 0 && rslot != 0))
		return NULL;
	return &f->where[node][node == 0 ? slot : rslot];
}

static int muc_fan_grow(struct muc_fan *f)
{
	unsigned cap = f->cap != 0 ? f->cap * 2 : 8;
	struct muc_fan_group *g;

	if (cap > IPC_MAX_NODES * IPC_MAX_SLOTS)
		return -1;
	g = realloc(f->groups, cap * sizeof(*g));
	if (g == NULL)
		return -1;
	for (unsigned i = f->cap; i < cap; i++)
		buf_init(&g[i].frame, 0);
	f->groups = g;
	f->cap = cap;
	return 0;
}

struct muc_fan_group *muc_fan_group(struct muc_fan *f, uint16_t slot,
				    uint8_t node, uint8_t rslot)
{
	uint16_t *cell = muc_fan_cell(f, slot, node, rslot);
	struct muc_fan_group *g;

	if (cell == NULL)
		return NULL;
	if (*cell != 0) {
		g = &f->groups[*cell - 1];
		/* one node's sessions all sit at the bridge's slot */
		return g->slot == slot ? g : NULL;
	}
	if (f->n == f->cap && muc_fan_grow(f) < 0)
		return NULL;
	g = &f->groups[f->n++];
	g->slot = slot;
	g->node = node;
	g->rslot = node != 0 ? rslot : 0;
	g->count = 0;
	g->frame.len = g->frame.off = 0;
	*cell = (uint16_t)f->n;
	return g;
}

void muc_fan_reset(struct muc_fan *f, size_t keep_bytes)
{
	for (unsigned i = 0; i < f->n; i++) {
		struct muc_fan_group *g = &f->groups[i];
		uint16_t *cell = muc_fan_cell(f, g->slot, g->node, g->rslot);

		if (cell != NULL)
			*cell = 0;
		g->count = 0;
		if (g->frame.cap > keep_bytes)
			buf_free(&g->frame);    /* one big room keeps nothing */
		else
			g->frame.len = g->frame.off = 0;
	}
	f->n = 0;
}

void muc_fan_free(struct muc_fan *f)
{
	for (unsigned i = 0; i < f->cap; i++)
		buf_free(&f->groups[i].frame);
	free(f->groups);
	memset(f, 0, sizeof(*f));
}

/* ---- the frame's bytes (shm/ipc.h: IPC_FRAME_MUC_FANOUT) --------------- */

static int muc_fan_text_ok(const char *text, size_t len)
{
	return len > 0 && len <= UINT32_MAX && text[0] == '<' &&
	       memchr(text, '\0', len) == NULL;
}

static int muc_fan_jid_ok(const char *jid, size_t len)
{
	return len > 0 && len <= IPC_JID_MAX && memchr(jid, '\0', len) == NULL;
}

int muc_fan_put(struct muc_fan_group *g, const char *text, size_t text_len,
		uint32_t conn_id, uint32_t gen, const char *jid,
		size_t jid_len)
{
	struct buf *f = &g->frame;
	if (!muc_fan_text_ok(text, text_len) || !muc_fan_jid_ok(jid, jid_len))
		return -1;
	if (g->count == 0) {
		struct ipc_muc_fanout h = { (uint32_t)text_len, 0 };
		f->len = f->off = 0;
		g->failed = buf_append(f, &h, sizeof(h)) < 0 ||
			    buf_append(f, text, text_len) < 0;
	}
	struct ipc_muc_recipient rc = { conn_id, gen, (uint32_t)jid_len };
	if (buf_append(f, &rc, sizeof(rc)) < 0 ||
	    buf_append(f, jid, jid_len) < 0)
		g->failed = 1;
	g->count++;
	return 0;
}

const char *muc_fan_take(struct muc_fan_group *g, size_t *len_r)
{
	struct buf *f = &g->frame;
	struct ipc_muc_fanout h;
	int ok = !g->failed && g->count > 0 && buf_used(f) >= sizeof(h);
	if (ok) {
		memcpy(&h, buf_head(f), sizeof(h));
		h.count = g->count;
		memcpy(f->data + f->off, &h, sizeof(h));
		*len_r = buf_used(f);
	}
	/* the bytes stay until the group's next put (which starts over:
	 * count 0) or reset */
	g->count = 0;
	g->failed = 0;
	return ok ? buf_head(f) : NULL;
}

int muc_fan_read(struct muc_fan_reader *r, const void *payload, size_t len,
		 const char **error_r)
{
	const char *p = payload;
	struct ipc_muc_fanout h;
	size_t off = sizeof(h);
	memset(r, 0, sizeof(*r));
	if (len < sizeof(h)) {
		*error_r = "shorter than its header";
		return -1;
	}
	memcpy(&h, p, sizeof(h));
	if (h.text_len > len - off ||
	    !muc_fan_text_ok(p + off, h.text_len)) {
		*error_r = "bad text";
		return -1;
	}
	off += h.text_len;
	if (h.count == 0) {
		*error_r = "no recipients";
		return -1;
	}
	for (uint32_t i = 0; i < h.count; i++) {
		struct ipc_muc_recipient rc;
		if (len - off < sizeof(rc)) {
			*error_r = "recipients cut short";
			return -1;
		}
		memcpy(&rc, p + off, sizeof(rc));
		off += sizeof(rc);
		if (rc.jid_len > len - off || !muc_fan_jid_ok(p + off,
							      rc.jid_len)) {
			*error_r = "bad recipient JID";
			return -1;
		}
		off += rc.jid_len;
	}
	if (off != len) {
		*error_r = "bytes after the last recipient";
		return -1;
	}
	r->text = p + sizeof(h);
	r->text_len = h.text_len;
	r->count = r->left = h.count;
	r->next = r->text + h.text_len;
	return 0;
}

int muc_fan_next(struct muc_fan_reader *r, struct muc_fan_rcpt *out)
{
	struct ipc_muc_recipient rc;
	if (r->left == 0)
		return 0;
	memcpy(&rc, r->next, sizeof(rc));
	out->conn_id = rc.conn_id;
	out->gen = rc.gen;
	memcpy(out->jid, r->next + sizeof(rc), rc.jid_len);
	out->jid[rc.jid_len] = '\0';
	r->next += sizeof(rc) + rc.jid_len;
	r->left--;
	return 1;
}

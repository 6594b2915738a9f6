/*
 * pep_wire.c - IPC_FRAME_PEP_EVENT's payload written and read
 * (pep_wire.h).  The reader takes only what the writer can write: head
 * and tail go to clients as they are and are kept as C strings, so a
 * NUL in them is refused (it would cut the string short of its
 * length), as are an empty node and a bare JID with a resource or too
 * long for the session table.  Failure policy: pep_wire.h.
 */
#include "pep_wire.h"
#include "ipc.h"

#include <stdint.h>
#include <string.h>

/* The fields' own rules, shared by both directions. */
static const char *pep_wire_check(const struct pep_wire_event *e)
{
	if (e->head_len == 0 || e->head[0] != '<')
		return "head is not a tag";
	if (memchr(e->head, '\0', e->head_len) != NULL ||
	    memchr(e->tail, '\0', e->tail_len) != NULL)
		return "NUL in the text";
	if (e->head_len > UINT32_MAX || e->tail_len > UINT32_MAX)
		return "text too long";
	if (e->node_len == 0 || memchr(e->node, '\0', e->node_len) != NULL)
		return "bad node";
	if (e->bare_len == 0 || e->bare_len > IPC_JID_MAX ||
	    memchr(e->bare, '\0', e->bare_len) != NULL ||
	    memchr(e->bare, '/', e->bare_len) != NULL)
		return "bad bare JID";
	return NULL;
}

int pep_wire_put(struct buf *b, const struct pep_wire_event *e)
{
	uint8_t o = e->owner ? 1 : 0;
	uint32_t hl = (uint32_t)e->head_len, tl = (uint32_t)e->tail_len;
	if (pep_wire_check(e) != NULL)
		return -1;
	if (buf_append(b, &o, 1) < 0 || buf_append(b, &hl, 4) < 0 ||
	    buf_append(b, e->head, hl) < 0 || buf_append(b, &tl, 4) < 0 ||
	    buf_append(b, e->tail, tl) < 0 ||
	    buf_append(b, e->node, e->node_len) < 0 ||
	    buf_append(b, "", 1) < 0 ||
	    buf_append(b, e->bare, e->bare_len) < 0)
		return -1;
	return 0;
}

/* A u32 length and that many bytes at *off: 0, or -1 when short. */
static int pep_wire_part(const char *p, size_t len, size_t *off,
			 const char **part_r, size_t *len_r)
{
	uint32_t n;
	if (len - *off < sizeof(n))
		return -1;
	memcpy(&n, p + *off, sizeof(n));
	*off += sizeof(n);
	if (n > len - *off)
		return -1;
	*part_r = p + *off;
	*len_r = n;
	*off += n;
	return 0;
}

int pep_wire_read(struct pep_wire_event *e, const void *payload, size_t len,
		  const char **error_r)
{
	const char *p = payload, *nul;
	size_t off = 1;
	memset(e, 0, sizeof(*e));
	if (len < 1 || (uint8_t)p[0] > 1) {
		*error_r = len < 1 ? "empty" : "bad owner flag";
		return -1;
	}
	e->owner = p[0];
	if (pep_wire_part(p, len, &off, &e->head, &e->head_len) < 0 ||
	    pep_wire_part(p, len, &off, &e->tail, &e->tail_len) < 0) {
		*error_r = "text cut short";
		return -1;
	}
	if ((nul = memchr(p + off, '\0', len - off)) == NULL) {
		*error_r = "no node";
		return -1;
	}
	e->node = p + off;
	e->node_len = (size_t)(nul - e->node);
	e->bare = nul + 1;
	e->bare_len = len - (size_t)(e->bare - p);
	return (*error_r = pep_wire_check(e)) == NULL ? 0 : -1;
}

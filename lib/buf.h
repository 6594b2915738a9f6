/*
 * buf.h - growable byte buffer with a hard cap (OpenSMTPD iobuf style).
 * Data lives in [off, len); consumed bytes are dropped by buf_consume().
 * Failure policy: buf_append returns -1 when the cap would be passed or
 * memory runs out; the buffer is unchanged then.
 */
#ifndef XMPPD_BUF_H
#define XMPPD_BUF_H

#include <stddef.h>
#include <sys/types.h>

struct buf {
	char *data;
	size_t off;     /* first unconsumed byte */
	size_t len;     /* end of data */
	size_t cap;     /* allocated bytes */
	size_t max;     /* hard cap on cap (0 = unlimited) */
};

void buf_init(struct buf *b, size_t max);
int buf_append(struct buf *b, const void *data, size_t n);
/* Room for n more bytes after len (0, or -1 as buf_append). */
int buf_reserve(struct buf *b, size_t n);
int buf_appendf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static inline size_t buf_used(const struct buf *b) { return b->len - b->off; }
static inline const char *buf_head(const struct buf *b) { return b->data + b->off; }
void buf_consume(struct buf *b, size_t n);
/* Release the memory when empty (idle connections keep nothing). */
void buf_shrink(struct buf *b);
void buf_free(struct buf *b);
/* write(2) what is buffered; returns bytes written, 0 on EAGAIN, -1 error. */
ssize_t buf_write_fd(struct buf *b, int fd);

#endif

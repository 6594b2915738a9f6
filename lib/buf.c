/*
 * buf.c - growable byte buffer with a hard cap (buf.h).  Failure
 * policy: -1 when the cap would be exceeded or malloc fails; the buffer
 * is unchanged then, so the caller decides (usually: end the stream).
 */
#include "buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void buf_init(struct buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

int buf_reserve(struct buf *b, size_t n)
{
	size_t used = buf_used(b);
	if (b->max != 0 && used + n > b->max)
		return -1;
	if (b->len + n <= b->cap)
		return 0;
	if (b->off > 0) {       /* compact before growing */
		memmove(b->data, b->data + b->off, used);
		b->off = 0;
		b->len = used;
		if (b->len + n <= b->cap)
			return 0;
	}
	size_t cap = b->cap ? b->cap : 256;
	while (cap < used + n)
		cap *= 2;
	if (b->max != 0 && cap > b->max)
		cap = b->max;
	char *p = realloc(b->data, cap);
	if (p == NULL)
		return -1;
	b->data = p;
	b->cap = cap;
	return 0;
}

int buf_append(struct buf *b, const void *data, size_t n)
{
	if (n == 0)
		return 0;
	if (buf_reserve(b, n) < 0)
		return -1;
	memcpy(b->data + b->len, data, n);
	b->len += n;
	return 0;
}

int buf_appendf(struct buf *b, const char *fmt, ...)
{
	char small[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	if ((size_t)n < sizeof(small))
		return buf_append(b, small, (size_t)n);
	if (buf_reserve(b, (size_t)n + 1) < 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void buf_consume(struct buf *b, size_t n)
{
	b->off += n;
	if (b->off >= b->len)
		b->off = b->len = 0;
}

void buf_shrink(struct buf *b)
{
	if (buf_used(b) == 0) {
		free(b->data);
		b->data = NULL;
		b->cap = b->off = b->len = 0;
	}
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->cap = b->off = b->len = 0;
}

ssize_t buf_write_fd(struct buf *b, int fd)
{
	size_t total = 0;
	while (buf_used(b) > 0) {
		ssize_t n = write(fd, buf_head(b), buf_used(b));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0)
			return -1;
		buf_consume(b, (size_t)n);
		total += (size_t)n;
	}
	return (ssize_t)total;
}

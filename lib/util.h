/*
 * util.h - small helpers shared by every binary: checked allocation
 * (fatal on failure, for start-up paths only), fd flags, time.
 */
#ifndef XMPPD_UTIL_H
#define XMPPD_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define UNUSED __attribute__((unused))

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
/* FNV-1a of a NUL-terminated string (in-memory tables, never stored). */
uint32_t fnv1a(const char *s);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* Free *p and set it to NULL. */
#define i_free(p) do { free(p); (p) = NULL; } while (0)

int fd_set_nonblock(int fd);
int fd_set_cloexec(int fd);
/* Monotonic milliseconds. */
int64_t time_now_ms(void);
/* Write all of buf to a blocking fd; 0 or -1. */
int write_full(int fd, const void *buf, size_t len);

#endif

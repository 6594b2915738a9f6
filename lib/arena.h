/*
 * arena.h - region allocator for objects that share a lifetime (a config
 * generation, a connection, a stanza).  Allocation never frees one object;
 * arena_reset() drops everything but keeps the first block for reuse.
 * Failure policy: arena_alloc returns NULL on out-of-memory; callers in
 * a worker end that one connection, callers at start-up exit.
 */
#ifndef XMPPD_ARENA_H
#define XMPPD_ARENA_H

#include <stddef.h>

struct arena_block;

struct arena {
	struct arena_block *head;   /* newest block first */
	size_t block_size;          /* default size of a new block */
	size_t total;               /* bytes handed out since reset */
};

void arena_init(struct arena *a, size_t block_size);
void *arena_alloc(struct arena *a, size_t n);   /* 16-byte aligned */
void *arena_zalloc(struct arena *a, size_t n);
char *arena_strdup(struct arena *a, const char *s);
char *arena_strndup(struct arena *a, const char *s, size_t n);
void arena_reset(struct arena *a);
void arena_free(struct arena *a);

#endif

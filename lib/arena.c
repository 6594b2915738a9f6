/*
 * arena.c - region allocator (arena.h).  Blocks are chained newest
 * first; a request larger than the block size gets a block of its own.
 * Failure policy: NULL on out-of-memory, the arena stays usable.
 */
#include "arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct arena_block {
	struct arena_block *next;
	size_t size;            /* usable bytes in data */
	size_t used;
	_Alignas(16) unsigned char data[];
};

#define ARENA_ALIGN 16u

void arena_init(struct arena *a, size_t block_size)
{
	a->head = NULL;
	a->block_size = block_size ? block_size : 4096;
	a->total = 0;
}

static struct arena_block *arena_new_block(struct arena *a, size_t n)
{
	size_t size = n > a->block_size ? n : a->block_size;
	struct arena_block *b = malloc(sizeof(*b) + size);
	if (b == NULL)
		return NULL;
	b->size = size;
	b->used = 0;
	b->next = a->head;
	a->head = b;
	return b;
}

void *arena_alloc(struct arena *a, size_t n)
{
	if (n > SIZE_MAX - ARENA_ALIGN)
		return NULL;
	n = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
	struct arena_block *b = a->head;
	if (b == NULL || b->size - b->used < n) {
		b = arena_new_block(a, n);
		if (b == NULL)
			return NULL;
	}
	void *p = b->data + b->used;
	b->used += n;
	a->total += n;
	return p;
}

void *arena_zalloc(struct arena *a, size_t n)
{
	void *p = arena_alloc(a, n);
	if (p != NULL)
		memset(p, 0, n);
	return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t n)
{
	char *p = arena_alloc(a, n + 1);
	if (p == NULL)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *arena_strdup(struct arena *a, const char *s)
{
	return arena_strndup(a, s, strlen(s));
}

void arena_reset(struct arena *a)
{
	/* Keep the oldest standard-size block: the common case reuses it. */
	struct arena_block *keep = NULL;
	struct arena_block *b = a->head;
	while (b != NULL) {
		struct arena_block *next = b->next;
		if (next == NULL && b->size == a->block_size) {
			keep = b;
			keep->used = 0;
		} else {
			free(b);
		}
		b = next;
	}
	a->head = keep;
	a->total = 0;
}

void arena_free(struct arena *a)
{
	struct arena_block *b = a->head;
	while (b != NULL) {
		struct arena_block *next = b->next;
		free(b);
		b = next;
	}
	a->head = NULL;
	a->total = 0;
}

/*
 * wire.h - what every message between cluster nodes shares: integers
 * little-endian on the wire whatever the host (nodes may run on other
 * machines), and the node and cluster names (cluster.node and
 * cluster.name: 1 to 32 letters, digits, '-' and '_', as lib/config.c
 * allows; they go into NATS subjects and key names).
 */
#ifndef XMPPD_CLUSTER_WIRE_H
#define XMPPD_CLUSTER_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_NAME_MAX 32

static inline void wire_put_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void wire_put_u32(uint8_t *p, uint32_t v)
{
	wire_put_u16(p, (uint16_t)v);
	wire_put_u16(p + 2, (uint16_t)(v >> 16));
}

static inline void wire_put_u64(uint8_t *p, uint64_t v)
{
	wire_put_u32(p, (uint32_t)v);
	wire_put_u32(p + 4, (uint32_t)(v >> 32));
}

static inline uint16_t wire_get_u16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}

static inline uint32_t wire_get_u32(const uint8_t *p)
{
	return wire_get_u16(p) | (uint32_t)wire_get_u16(p + 2) << 16;
}

static inline uint64_t wire_get_u64(const uint8_t *p)
{
	return wire_get_u32(p) | (uint64_t)wire_get_u32(p + 4) << 32;
}

/* A character of a node or cluster name. */
static inline bool wire_name_char(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* n bytes at s are a node or cluster name. */
static inline bool wire_name_ok(const void *s, size_t n)
{
	const uint8_t *p = s;
	if (n == 0 || n > WIRE_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!wire_name_char(p[i]))
			return false;
	return true;
}

#endif

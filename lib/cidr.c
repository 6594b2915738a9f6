/*
 * cidr.c - address prefix lists (cidr.h).  The list is parsed on each
 * call: it is short and asked for only on admin routes, and the text in
 * the config stays the one source (reloads need nothing more).
 */
#include "cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char cidr_error[160];

struct cidr {
	int family;             /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned bits;
};

static int cidr_parse(const char *s, size_t n, struct cidr *c)
{
	char text[64];
	if (n == 0 || n >= sizeof(text))
		return -1;
	memcpy(text, s, n);
	text[n] = '\0';
	char *slash = strchr(text, '/');
	if (slash != NULL)
		*slash = '\0';
	memset(c, 0, sizeof(*c));
	if (inet_pton(AF_INET, text, c->addr) == 1) {
		c->family = AF_INET;
		c->bits = 32;
	} else if (inet_pton(AF_INET6, text, c->addr) == 1) {
		c->family = AF_INET6;
		c->bits = 128;
	} else {
		return -1;
	}
	if (slash != NULL) {
		char *end;
		const char *b = slash + 1;
		if (*b < '0' || *b > '9' || strlen(b) > 3)
			return -1;
		unsigned long bits = strtoul(b, &end, 10);
		if (*end != '\0' || bits > c->bits)
			return -1;
		c->bits = (unsigned)bits;
	}
	/* ::ffff:a.b.c.d[/96+n] is IPv4 a.b.c.d[/n]: a peer is matched as
	 * IPv4 when its address is v4-mapped (cidr_list_match), so the
	 * entry is too, or it would never match */
	if (c->family == AF_INET6 && c->bits >= 96 &&
	    IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)(void *)c->addr)) {
		memmove(c->addr, c->addr + 12, 4);
		memset(c->addr + 4, 0, 12);
		c->family = AF_INET;
		c->bits -= 96;
	}
	return 0;
}

static int cidr_contains(const struct cidr *c, int family,
			 const unsigned char *addr)
{
	if (family != c->family)
		return 0;
	unsigned full = c->bits / 8, rest = c->bits % 8;
	if (memcmp(addr, c->addr, full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (addr[full] & mask) == (c->addr[full] & mask);
}

#define CIDR_SEP " \t,"

int cidr_list_check(const char *list, const char **error_r)
{
	struct cidr c;
	for (const char *p = list + strspn(list, CIDR_SEP); *p != '\0';
	     p += strspn(p, CIDR_SEP)) {
		size_t n = strcspn(p, CIDR_SEP);
		if (cidr_parse(p, n, &c) < 0) {
			snprintf(cidr_error, sizeof(cidr_error),
				 "'%.*s' is not an address or address/prefix",
				 (int)(n > 64 ? 64 : n), p);
			*error_r = cidr_error;
			return -1;
		}
		p += n;
	}
	return 0;
}

int cidr_list_match(const char *list, const struct sockaddr_storage *peer)
{
	int family = peer->ss_family;
	const unsigned char *addr;
	if (family == AF_INET) {
		addr = (const unsigned char *)
			&((const struct sockaddr_in *)peer)->sin_addr;
	} else if (family == AF_INET6) {
		const struct in6_addr *a6 =
			&((const struct sockaddr_in6 *)peer)->sin6_addr;
		addr = a6->s6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			family = AF_INET;
			addr += 12;
		}
	} else {
		return 0;
	}
	struct cidr c;
	for (const char *p = list + strspn(list, CIDR_SEP); *p != '\0';
	     p += strspn(p, CIDR_SEP)) {
		size_t n = strcspn(p, CIDR_SEP);
		if (cidr_parse(p, n, &c) == 0 && cidr_contains(&c, family, addr))
			return 1;
		p += n;
	}
	return 0;
}

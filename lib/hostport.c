/*
 * hostport.c - address[:port] lists (hostport.h).  Only numeric
 * addresses: the list names DNS servers, which cannot be found by name.
 */
#include "hostport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char hostport_error[160];

static int hostport_fail(const char *s, size_t n, const char *why,
			 const char **error_r)
{
	snprintf(hostport_error, sizeof(hostport_error), "'%.*s': %s",
		 (int)(n > 64 ? 64 : n), s, why);
	*error_r = hostport_error;
	return -1;
}

/* "1".."65535", nothing else (no sign, no leading zero run). */
static int hostport_port(const char *p, unsigned *port_r)
{
	size_t n = strlen(p);
	if (n == 0 || n > 5 || strspn(p, "0123456789") != n || p[0] == '0')
		return -1;
	unsigned long v = strtoul(p, NULL, 10);
	if (v < 1 || v > 65535)
		return -1;
	*port_r = (unsigned)v;
	return 0;
}

/* One entry (n bytes at s) into c-ares form in buf. */
static int hostport_entry(const char *s, size_t n, char *buf, size_t size,
			  const char **why_r)
{
	char text[80], addr[16];
	const char *host = text, *port = NULL;
	unsigned portno = 0;
	if (n >= sizeof(text)) {
		*why_r = "too long";
		return -1;
	}
	memcpy(text, s, n);
	text[n] = '\0';
	int v6;
	if (text[0] == '[') {
		char *close = strchr(text, ']');
		if (close == NULL) {
			*why_r = "'[' without ']'";
			return -1;
		}
		*close = '\0';
		host = text + 1;
		if (close[1] == ':')
			port = close + 2;
		else if (close[1] != '\0') {
			*why_r = "junk after ']'";
			return -1;
		}
		v6 = 1;
	} else {
		char *colon = strchr(text, ':');
		/* one colon: IPv4:port; more: a bare IPv6 address */
		if (colon != NULL && strchr(colon + 1, ':') == NULL) {
			*colon = '\0';
			port = colon + 1;
		}
		v6 = colon != NULL && port == NULL;
	}
	if (inet_pton(v6 ? AF_INET6 : AF_INET, host, addr) != 1) {
		*why_r = v6 ? "not an IPv6 address" : "not an IPv4 address "
			"(IPv6 with a port goes in brackets: [::1]:53)";
		return -1;
	}
	if (port != NULL && hostport_port(port, &portno) < 0) {
		*why_r = "the port is not a number from 1 to 65535";
		return -1;
	}
	int len;
	if (portno == 0)
		len = snprintf(buf, size, "%s", host);
	else if (v6)
		len = snprintf(buf, size, "[%s]:%u", host, portno);
	else
		len = snprintf(buf, size, "%s:%u", host, portno);
	if (len < 0 || (size_t)len >= size) {
		*why_r = "the list is too long";
		return -1;
	}
	return 0;
}

int hostport_list_csv(const char *list, char *out, size_t size,
		      const char **error_r)
{
	static const char sep[] = " \t,";
	size_t used = 0;
	unsigned count = 0;
	if (size == 0)
		return hostport_fail("", 0, "no room", error_r);
	out[0] = '\0';
	for (const char *p = list + strspn(list, sep); *p != '\0';
	     p += strspn(p, sep)) {
		size_t n = strcspn(p, sep);
		const char *why = NULL;
		if (++count > HOSTPORT_MAX_ENTRIES)
			return hostport_fail(p, n, "more than 16 entries",
					     error_r);
		if (used > 0) {
			if (used + 1 >= size)
				return hostport_fail(p, n, "the list is too "
						     "long", error_r);
			out[used++] = ',';
			out[used] = '\0';
		}
		if (hostport_entry(p, n, out + used, size - used, &why) < 0) {
			out[0] = '\0';
			return hostport_fail(p, n, why, error_r);
		}
		used += strlen(out + used);
		p += n;
	}
	return 0;
}

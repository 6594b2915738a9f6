/*
 * wire.c - frames between the parent and its workers: a header of type
 * and length, then the payload, over a blocking AF_UNIX stream socket.
 * Both sides are our own code, so there is no version field; a short read
 * means the other side died.
 * Failure policy: return -1; the caller treats it as the peer's death.
 */
#include "bench.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <unistd.h>

struct wire_hdr {
	uint32_t type;
	uint32_t pad;
	uint64_t len;
};

static int wire_write_all(int fd, const void *p, size_t len)
{
	const char *c = p;
	while (len > 0) {
		ssize_t n = write(fd, c, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		c += n;
		len -= (size_t)n;
	}
	return 0;
}

static int wire_read_all(int fd, void *p, size_t len)
{
	char *c = p;
	while (len > 0) {
		ssize_t n = read(fd, c, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		c += n;
		len -= (size_t)n;
	}
	return 0;
}

int wire_send(int fd, uint32_t type, const void *const *parts,
	      const size_t *lens, unsigned n)
{
	struct wire_hdr h = { .type = type };
	for (unsigned i = 0; i < n; i++)
		h.len += lens[i];
	if (wire_write_all(fd, &h, sizeof(h)) < 0)
		return -1;
	for (unsigned i = 0; i < n; i++)
		if (lens[i] > 0 && wire_write_all(fd, parts[i], lens[i]) < 0)
			return -1;
	return 0;
}

int wire_recv(int fd, uint32_t *type_r, void **payload_r, size_t *len_r)
{
	struct wire_hdr h;
	*payload_r = NULL;
	if (wire_read_all(fd, &h, sizeof(h)) < 0)
		return -1;
	if (h.len > 0) {
		if ((*payload_r = malloc(h.len)) == NULL)
			bench_fatal("out of memory reading a %llu byte report",
				    (unsigned long long)h.len);
		if (wire_read_all(fd, *payload_r, h.len) < 0) {
			free(*payload_r);
			*payload_r = NULL;
			return -1;
		}
	}
	*type_r = h.type;
	*len_r = h.len;
	return 0;
}

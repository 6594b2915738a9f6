/*
 * sock.c - xmppctl's side of the control socket (docs/CONTROL.md): the
 * connection and handshake, one command and its answer collected as
 * lines, the fields of an answer line, and the JSON writer that `--json`
 * listings use.
 * Failure policy: one line "xmppctl: reason" on stderr and -1; a server
 * that is not running is told apart (CTL_OPEN_DOWN) so that commands for
 * which that is normal can say so and succeed.
 */
#include "ctl.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CTL_LINE_MAX (64u * 1024u)

int ctl_open(const char *path, bool quiet_down)
{
	struct sockaddr_un sun;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		ctl_fail("socket path too long: %s", path);
		return CTL_OPEN_FAIL;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ctl_fail("socket() failed: %s", strerror(errno));
		return CTL_OPEN_FAIL;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int err = errno;
		close(fd);
		if (err == ENOENT || err == ECONNREFUSED) {
			if (!quiet_down)
				ctl_fail("no xmppd listening on %s: is it "
					 "running?", path);
			return CTL_OPEN_DOWN;
		}
		if (err == EACCES || err == EPERM)
			ctl_fail("permission denied on %s: run as root or as "
				 "a member of the socket's group", path);
		else
			ctl_fail("connect(%s) failed: %s", path, strerror(err));
		return CTL_OPEN_FAIL;
	}
	static const char hello[] = "VERSION\txmppctl\t1\n";
	char answer[256];
	ssize_t n = 0, got;
	/* the answer is read even when the hello could not be written: a
	   master that refuses the connection says why before closing */
	if (write_full(fd, hello, sizeof(hello) - 1) < 0 && errno != EPIPE &&
	    errno != ECONNRESET) {
		ctl_fail("write to %s failed: %s", path, strerror(errno));
		close(fd);
		return CTL_OPEN_FAIL;
	}
	/* byte by byte: nothing of the answers after it is read */
	while (n < (ssize_t)sizeof(answer) - 1 &&
	       (got = read(fd, answer + n, 1)) == 1 && answer[n++] != '\n')
		;
	answer[n] = '\0';
	if (strcmp(answer, "VERSION\txmppd\t1\n") != 0) {
		if (strncmp(answer, "ERROR\t", 6) == 0)
			ctl_fail("%.*s", (int)strcspn(answer + 6, "\n"),
				 answer + 6);
		else
			ctl_fail("%s did not answer the handshake", path);
		close(fd);
		return CTL_OPEN_FAIL;
	}
	return fd;
}

static int ctl_reply_add(struct ctl_reply *r, const char *line, size_t len)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 16;
		char **lines = realloc(r->lines, cap * sizeof(*lines));
		if (lines == NULL)
			return -1;
		r->lines = lines;
		r->cap = cap;
	}
	if ((r->lines[r->n] = strndup(line, len)) == NULL)
		return -1;
	r->n++;
	return 0;
}

void ctl_reply_free(struct ctl_reply *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->lines[i]);
	free(r->lines);
	memset(r, 0, sizeof(*r));
}

int ctl_exchange(int fd, const char *line, struct ctl_reply *r)
{
	char *buf = malloc(CTL_LINE_MAX);
	size_t len = 0;
	int ret = -1;

	memset(r, 0, sizeof(*r));
	if (buf == NULL) {
		ctl_fail("out of memory");
		return -1;
	}
	if (write_full(fd, line, strlen(line)) < 0 ||
	    write_full(fd, "\n", 1) < 0) {
		ctl_fail("write to the control socket failed: %s",
			 strerror(errno));
		goto out;
	}
	for (;;) {
		char *nl;
		while ((nl = memchr(buf, '\n', len)) != NULL) {
			size_t n = (size_t)(nl - buf);
			*nl = '\0';
			if (strcmp(buf, "OK") == 0) {
				ret = 0;
				goto out;
			}
			if (strncmp(buf, "ERROR\t", 6) == 0) {
				ctl_fail("%s", buf + 6);
				goto out;
			}
			if (ctl_reply_add(r, buf, n) < 0) {
				ctl_fail("out of memory");
				goto out;
			}
			memmove(buf, nl + 1, len - n - 1);
			len -= n + 1;
		}
		if (len == CTL_LINE_MAX) {
			ctl_fail("answer line too long");
			goto out;
		}
		ssize_t got = read(fd, buf + len, CTL_LINE_MAX - len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			ctl_fail("connection closed by xmppd");
			goto out;
		}
		len += (size_t)got;
	}
out:
	free(buf);
	if (ret < 0)
		ctl_reply_free(r);
	return ret;
}

int ctl_request(const char *path, const char *line, struct ctl_reply *r)
{
	int fd = ctl_open(path, false);
	if (fd < 0)
		return -1;
	int ret = ctl_exchange(fd, line, r);
	close(fd);
	return ret;
}

int ctl_run(const char *path, const char *line)
{
	struct ctl_reply r;
	if (ctl_request(path, line, &r) < 0)
		return CTL_EXIT_FAIL;
	for (size_t i = 0; i < r.n; i++)
		puts(r.lines[i]);
	ctl_reply_free(&r);
	return CTL_EXIT_OK;
}

char *ctl_socket_path(const struct ctl_opts *opts)
{
	if (opts->socket_path != NULL)
		return strdup(opts->socket_path);
	struct config *cfg = ctl_load_config(opts, false);
	if (cfg == NULL)
		return NULL;
	char *path = strdup(cfg->control_socket);
	config_free(&cfg);
	if (path == NULL)
		ctl_fail("out of memory");
	return path;
}

const char *ctl_field(const char *line, const char *key, char *buf,
		      size_t size)
{
	size_t klen = strlen(key);
	const char *p = strchr(line, '\t');
	while (p != NULL) {
		p++;
		size_t n = strcspn(p, "\t");
		if (n > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
			snprintf(buf, size, "%.*s", (int)(n - klen - 1),
				 p + klen + 1);
			return buf;
		}
		p = strchr(p, '\t');
	}
	return NULL;
}

/* ---- JSON ------------------------------------------------------------- */

/* The length of the well-formed UTF-8 sequence at s (RFC 3629: no
 * overlong forms, surrogates or code points past U+10FFFF), or 0. */
static size_t ctl_utf8_len(const unsigned char *s, size_t len)
{
	unsigned char c = s[0];
	size_t n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 :
		c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
	if (n == 0 || n > len)
		return 0;
	for (size_t i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) ||
	    (c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f))
		return 0;
	return n;
}

/* Well-formed UTF-8 is copied as it is; what JSON forbids raw is
 * escaped, and a byte that is not UTF-8 becomes U+FFFD, so that the
 * output is valid JSON whatever the server sent. */
static void ctl_json_string_n(FILE *out, const char *s, size_t len)
{
	fputc('"', out);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch >= 0x80) {
			size_t n = ctl_utf8_len((const unsigned char *)s + i,
						len - i);
			if (n == 0) {
				fputs("\\ufffd", out);
			} else {
				fwrite(s + i, 1, n, out);
				i += n - 1;
			}
		} else if (ch == '"' || ch == '\\')
			fprintf(out, "\\%c", ch);
		else if (ch == '\n')
			fputs("\\n", out);
		else if (ch == '\t')
			fputs("\\t", out);
		else if (ch < 0x20 || ch == 0x7f)
			fprintf(out, "\\u%04x", ch);
		else
			fputc(ch, out);
	}
	fputc('"', out);
}

void ctl_json_string(FILE *out, const char *s)
{
	ctl_json_string_n(out, s, strlen(s));
}

/* A JSON integer: an optional '-', then 0 or a digit string without a
 * leading zero, short enough for any parser's exact range. */
static bool ctl_json_is_int(const char *s, size_t len)
{
	size_t i = len > 0 && s[0] == '-' ? 1 : 0;
	if (i == len || len - i > 15 || (s[i] == '0' && len - i > 1))
		return false;
	for (; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

void ctl_json_fields(FILE *out, const char *line)
{
	const char *p = strchr(line, '\t');
	bool first = true;
	fputc('{', out);
	while (p != NULL) {
		p++;
		size_t n = strcspn(p, "\t");
		const char *eq = memchr(p, '=', n);
		if (eq != NULL) {
			size_t klen = (size_t)(eq - p), vlen = n - klen - 1;
			if (!first)
				fputs(", ", out);
			first = false;
			ctl_json_string_n(out, p, klen);
			fputs(": ", out);
			if (ctl_json_is_int(eq + 1, vlen))
				fwrite(eq + 1, 1, vlen, out);
			else
				ctl_json_string_n(out, eq + 1, vlen);
		}
		p = strchr(p, '\t');
	}
	fputc('}', out);
}

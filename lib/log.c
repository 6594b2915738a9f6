/*
 * log.c - the logging API (log.h).  One line per call, written with a
 * single write(2) so lines from several processes sharing a file do not
 * interleave; control characters in a message (and the context) are
 * written as \xNN, so nothing logged can end a line or forge one.
 * Failure policy: write errors are ignored.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char log_role[32] = "xmppd";
static char log_ctx[160];
static char log_path[1024];
static int log_fd = STDERR_FILENO;
static int log_stderr_follows;   /* dup2 every new file onto stderr */
static int log_fatal_fd = STDERR_FILENO;
static enum log_level log_min = LOG_LEVEL_INFO;

static const char *const level_names[] = {
	"debug", "info", "warn", "error", "fatal",
};

void log_init(const char *role)
{
	log_set_role(role);
}

void log_set_role(const char *role)
{
	snprintf(log_role, sizeof(log_role), "%s", role);
}

int log_open(const char *path)
{
	if (path == NULL || path[0] == '\0' || strcmp(path, "-") == 0) {
		if (log_fd != STDERR_FILENO)
			close(log_fd);
		log_fd = STDERR_FILENO;
		log_path[0] = '\0';
		log_stderr_follows = 0;
		return 0;
	}
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return -1;
	if (log_stderr_follows && dup2(fd, STDERR_FILENO) < 0) {
		int saved_errno = errno;
		close(fd);
		errno = saved_errno;
		return -1;
	}
	if (log_fd != STDERR_FILENO)
		close(log_fd);
	log_fd = fd;
	snprintf(log_path, sizeof(log_path), "%s", path);
	return 0;
}

int log_reopen(void)
{
	if (log_path[0] == '\0')
		return 0;
	char path[sizeof(log_path)];
	memcpy(path, log_path, sizeof(path));
	if (log_open(path) < 0)
		return -1;
	log_info("log file %s reopened", path);
	return 0;
}

int log_redirect_stderr(void)
{
	if (log_path[0] == '\0')
		return 0;
	if (dup2(log_fd, STDERR_FILENO) < 0)
		return -1;
	log_stderr_follows = 1;
	return 0;
}

void log_set_fatal_fd(int fd)
{
	log_fatal_fd = fd;
}

void log_set_level(enum log_level level)
{
	log_min = level;
}

int log_level_parse(const char *name, enum log_level *level_r)
{
	for (unsigned i = 0; i < LOG_LEVEL_FATAL; i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*level_r = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

void log_set_context(const char *ctx)
{
	if (ctx == NULL)
		log_ctx[0] = '\0';
	else
		snprintf(log_ctx, sizeof(log_ctx), "%s: ", ctx);
}

/* Append text to line[*len] (up to size), control characters written
 * as \xNN so that no caller can end the line early or forge one. */
static void log_append_escaped(char *line, size_t size, size_t *len,
			       const char *text)
{
	static const char hex[] = "0123456789abcdef";

	for (const unsigned char *p = (const unsigned char *)text; *p != '\0';
	     p++) {
		if (*p >= 0x20 && *p != 0x7f) {
			if (*len + 1 > size)
				return;
			line[(*len)++] = (char)*p;
			continue;
		}
		if (*len + 4 > size)
			return;
		line[(*len)++] = '\\';
		line[(*len)++] = 'x';
		line[(*len)++] = hex[*p >> 4];
		line[(*len)++] = hex[*p & 15];
	}
}

static void log_write_to(int fd, enum log_level level, const char *fmt,
			 va_list ap)
{
	int saved_errno = errno;
	char line[2048], msg[2048];
	struct timespec ts;
	struct tm tm;

	if (level < log_min)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof(line),
			 "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
			 tm.tm_hour, tm.tm_min, tm.tm_sec,
			 ts.tv_nsec / 1000000, log_role, level_names[level]);
	if (n < 0 || (size_t)n >= sizeof(line) - 2)
		n = 0;
	errno = saved_errno;
	if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
		msg[0] = '\0';
	size_t len = (size_t)n;
	/* The context and the message may hold what a peer sent. */
	log_append_escaped(line, sizeof(line) - 1, &len, log_ctx);
	log_append_escaped(line, sizeof(line) - 1, &len, msg);
	line[len++] = '\n';
	ssize_t w = write(fd, line, len);
	(void)w;
	errno = saved_errno;
}

static void log_write(enum log_level level, const char *fmt, va_list ap)
{
	log_write_to(log_fd, level, fmt, ap);
}

/* A fatal error also goes to log_fatal_fd (unless that is where the log
 * goes anyway), so that a failed start says why where it was started. */
static void log_write_fatal(const char *fmt, va_list ap)
{
	va_list ap2;
	va_copy(ap2, ap);
	log_write(LOG_LEVEL_FATAL, fmt, ap);
	if (log_fatal_fd >= 0 && log_fatal_fd != log_fd &&
	    !(log_fatal_fd == STDERR_FILENO &&
	      (log_fd == STDERR_FILENO || log_stderr_follows)))
		log_write_to(log_fatal_fd, LOG_LEVEL_FATAL, fmt, ap2);
	va_end(ap2);
}

#define LOG_FN(name, level) \
	void name(const char *fmt, ...) \
	{ \
		va_list ap; \
		va_start(ap, fmt); \
		log_write(level, fmt, ap); \
		va_end(ap); \
	}

LOG_FN(log_debug, LOG_LEVEL_DEBUG)
LOG_FN(log_info, LOG_LEVEL_INFO)
LOG_FN(log_warn, LOG_LEVEL_WARN)
LOG_FN(log_error, LOG_LEVEL_ERROR)

void log_fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_write_fatal(fmt, ap);
	va_end(ap);
	exit(1);
}

void log_panic(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_write_fatal(fmt, ap);
	va_end(ap);
	abort();
}

/*
 * log.h - the one logging API of xmppd (master, workers, xmppctl, tests).
 *
 * Lines look like "2026-11-24T02:04:26Z w3 info: message".  The role
 * ("master", "w3", "xmppctl") is set once per process; a connection's
 * context (id, address, JID) is added by log_set_context().  Failure
 * policy: logging never fails the caller; a write error is ignored.
 */
#ifndef XMPPD_LOG_H
#define XMPPD_LOG_H

#include <stdarg.h>

enum log_level {
	LOG_LEVEL_DEBUG = 0,
	LOG_LEVEL_INFO,
	LOG_LEVEL_WARN,
	LOG_LEVEL_ERROR,
	LOG_LEVEL_FATAL,
};

#define LOG_PRINTF(f, a) __attribute__((format(printf, f, a)))

void log_init(const char *role);
void log_set_role(const char *role);
/* path NULL or "" logs to stderr.  Returns 0 or -1 (errno set). */
int log_open(const char *path);
/* Reopen the file (SIGUSR1, after logrotate renamed it); the new file
 * starts with a line saying so.  Nothing when logging to stderr. */
int log_reopen(void);
/* Point stderr at the log file, now and after every reopen (a daemon's
 * stray output, sanitizer reports included).  Nothing when logging to
 * stderr.  Returns 0 or -1 (errno set). */
int log_redirect_stderr(void);
/* Fatal lines (log_fatal, log_panic) also go to fd: the terminal by
 * default (when the log is a file), the start-up pipe of a daemonizing
 * master; -1 for none. */
void log_set_fatal_fd(int fd);
void log_set_level(enum log_level level);
/* "debug", "info", "warn", "error": returns 0, or -1 if unknown. */
int log_level_parse(const char *name, enum log_level *level_r);
/* A prefix added after the level, e.g. "c42 127.0.0.1:5555"; NULL clears. */
void log_set_context(const char *ctx);

void log_debug(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_info(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_warn(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_error(const char *fmt, ...) LOG_PRINTF(1, 2);
/* Log and exit(1). */
void log_fatal(const char *fmt, ...) LOG_PRINTF(1, 2) __attribute__((noreturn));
/* Our own bug: log and abort(). */
void log_panic(const char *fmt, ...) LOG_PRINTF(1, 2) __attribute__((noreturn));

#endif

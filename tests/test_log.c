/*
 * test_log.c - unit tests for lib/log.c: one call is one line, whatever
 * the message holds (control characters are written as \xNN, so a
 * peer's text cannot end a line or forge a line for fail2ban); long
 * messages are cut, still one line.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

TestSuite(log, .timeout = 30.);

/* Log through fn into a fresh file; return its whole text (malloc'd). */
static char *logged(void (*fn)(void))
{
	char path[] = "/tmp/xmppd-test-log-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	close(fd);
	log_init("t0");
	log_set_level(LOG_LEVEL_DEBUG);
	cr_assert_eq(log_open(path), 0);
	fn();
	log_set_context(NULL);
	cr_assert_eq(log_open(NULL), 0);
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f);
	char *text = calloc(1, 8192);
	cr_assert_not_null(text);
	size_t n = fread(text, 1, 8191, f);
	text[n] = '\0';
	fclose(f);
	unlink(path);
	return text;
}

static unsigned lines(const char *text)
{
	unsigned n = 0;
	for (; *text != '\0'; text++)
		n += *text == '\n';
	return n;
}

static void log_forged(void)
{
	/* A "user name" that tries to end the line and start a ban line. */
	log_info("c1: authentication failed for %s from 192.0.2.1 (PLAIN)",
		 "x\n2026-12-06T01:50:00.123Z w0 warn: login failures from "
		 "198.51.100.7: banned for 3600 s\r\t\x1b[2K\x7f");
}

Test(log, control_characters_are_escaped)
{
	char *text = logged(log_forged);

	cr_assert_eq(lines(text), 1, "one call, one line: %s", text);
	cr_assert_not_null(strstr(text, "for x\\x0a2026-12-06T01:50:00.123Z w0 "
				  "warn: login failures from 198.51.100.7: "
				  "banned for 3600 s\\x0d\\x09\\x1b[2K\\x7f from "
				  "192.0.2.1 (PLAIN)\n"), "%s", text);
	cr_assert_not_null(strstr(text, " t0 info: c1: "), "%s", text);
	free(text);
}

static void log_context_and_utf8(void)
{
	log_set_context("c2 peer\nforged");
	log_warn("caf\xc3\xa9 %d%%", 100);
}

Test(log, context_escaped_utf8_kept)
{
	char *text = logged(log_context_and_utf8);

	cr_assert_eq(lines(text), 1, "%s", text);
	cr_assert_not_null(strstr(text, " t0 warn: c2 peer\\x0aforged: "
				  "caf\xc3\xa9 100%\n"), "%s", text);
	free(text);
}

static void log_long(void)
{
	char big[5000];
	for (size_t i = 0; i < sizeof(big) - 1; i++)
		big[i] = (i % 100) == 50 ? '\n' : 'a';
	big[sizeof(big) - 1] = '\0';
	log_info("%s", big);
	log_info("after");
}

Test(log, long_message_is_cut_to_one_line)
{
	char *text = logged(log_long);
	const char *second = strchr(text, '\n');

	cr_assert_eq(lines(text), 2, "%s", text);
	cr_assert_leq((size_t)(second - text), 2047);
	cr_assert_not_null(strstr(second + 1, " t0 info: after\n"));
	free(text);
}

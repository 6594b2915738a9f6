/*
 * fuzz_config.c - the configuration parser (lib/config.c), read from a
 * file as xmppd reads it (a memfd, so NUL bytes and the file path are
 * exercised).  Properties:
 *  - no memory error or undefined behaviour, and an error always names
 *    "file:line: reason";
 *  - a file that parses round-trips: config_serialize() of it parses
 *    to a config with no difference (config_diff), and serializes to the
 *    same text again;
 *  - config_check() runs on it without harm.
 */
#include "fuzz.h"
#include "config.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void count_diff(const struct config_def *def, const char *old,
		       const char *new, void *ctx)
{
	unsigned *n = ctx;
	(*n)++;
	fprintf(stderr, "round trip changed %s: \"%s\" -> \"%s\"\n", def->name,
		old, new);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static int ready;
	char path[64];
	const char *error = NULL;

	if (!ready) {
		fuzz_quiet_log();
		ready = 1;
	}
	if (size > 65536)
		return 0;
	if (fd < 0 && (fd = memfd_create("fuzz.conf", 0)) < 0)
		abort();
	if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);

	struct config *cfg = config_new();
	if (config_parse_file(cfg, path, &error) < 0) {
		FUZZ_CHECK(error != NULL && strncmp(error, path,
						    strlen(path)) == 0 &&
			   error[strlen(path)] == ':', "error \"%s\"",
			   error ? error : "(null)");
		config_free(&cfg);
		return 0;
	}
	(void)config_check(cfg, &error);

	char *text = config_serialize(cfg);
	struct config *copy = config_new();
	int rc = config_parse_string(copy, "serialized", text, &error);
	FUZZ_CHECK(rc == 0, "serialized config does not parse: %s\n%s",
		   error, text);
	unsigned diffs = 0;
	config_diff(cfg, copy, count_diff, &diffs);
	FUZZ_CHECK(diffs == 0, "round trip changed %u values:\n%s", diffs,
		   text);
	char *again = config_serialize(copy);
	FUZZ_CHECK(strcmp(text, again) == 0, "serialized twice differs:\n%s\n"
		   "---\n%s", text, again);
	free(again);
	free(text);
	config_free(&copy);
	config_free(&cfg);
	return 0;
}

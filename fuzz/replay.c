/*
 * replay.c - run a harness once over files, without libFuzzer: the
 * unit-test side of fuzz/ (make check runs each replay program over
 * fuzz/corpus/<target>/ and fuzz/regress/<target>/, so every seed and
 * every input that once crashed stays a test).
 *
 *   fuzz/replay_<target> [FILE|DIR]...
 *
 * Without arguments the target's two folders under $XMPPD_SRCDIR (or
 * the current directory) are used.  The target name comes from the
 * program's name (replay_xml -> xml).  Exit 0 when every input ran; a
 * broken property aborts, as under the fuzzer.
 */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static unsigned replay_count;

static int replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	size_t cap = 4096, len = 0, n;
	uint8_t *data = malloc(cap);
	while (data != NULL && (n = fread(data + len, 1, cap - len, f)) > 0) {
		len += n;
		if (len == cap) {
			uint8_t *more = realloc(data, cap *= 2);
			if (more == NULL)
				free(data);
			data = more;
		}
	}
	int bad = ferror(f) || data == NULL;
	fclose(f);
	if (bad) {
		free(data);
		fprintf(stderr, "replay: %s: read failed\n", path);
		return -1;
	}
	/* an exact-size copy, so ASan sees reads past the input's end */
	uint8_t *exact = malloc(len > 0 ? len : 1);
	if (exact == NULL) {
		free(data);
		return -1;
	}
	memcpy(exact, data, len);
	free(data);
	LLVMFuzzerTestOneInput(exact, len);
	free(exact);
	replay_count++;
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every regular file in dir, in name order; a missing dir is empty. */
static int replay_dir(const char *dir, int must_exist)
{
	DIR *d = opendir(dir);
	if (d == NULL) {
		if (!must_exist && errno == ENOENT)
			return 0;
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	char **names = NULL;
	size_t count = 0, cap = 0;
	struct dirent *e;
	int rc = 0;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (count == cap) {
			cap = cap ? cap * 2 : 64;
			char **more = realloc(names, cap * sizeof(*names));
			if (more == NULL) {
				rc = -1;
				break;
			}
			names = more;
		}
		size_t n = strlen(dir) + strlen(e->d_name) + 2;
		if ((names[count] = malloc(n)) == NULL) {
			rc = -1;
			break;
		}
		snprintf(names[count++], n, "%s/%s", dir, e->d_name);
	}
	closedir(d);
	if (count > 0)
		qsort(names, count, sizeof(*names), name_cmp);
	for (size_t i = 0; i < count; i++) {
		struct stat st;
		if (rc == 0 && stat(names[i], &st) == 0 && S_ISREG(st.st_mode))
			rc = replay_file(names[i]);
		free(names[i]);
	}
	free(names);
	return rc;
}

static int replay_path(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return S_ISDIR(st.st_mode) ? replay_dir(path, 1) : replay_file(path);
}

int main(int argc, char **argv)
{
	const char *prog = strrchr(argv[0], '/');
	prog = prog != NULL ? prog + 1 : argv[0];
	const char *target = strncmp(prog, "replay_", 7) == 0 ? prog + 7 : prog;
	int rc = 0;

	if (argc > 1) {
		for (int i = 1; i < argc && rc == 0; i++)
			rc = replay_path(argv[i]);
	} else {
		const char *src = getenv("XMPPD_SRCDIR");
		char dir[4096];
		unsigned before;
		if (src == NULL)
			src = ".";
		snprintf(dir, sizeof(dir), "%s/fuzz/corpus/%s", src, target);
		rc = replay_dir(dir, 1);
		before = replay_count;
		snprintf(dir, sizeof(dir), "%s/fuzz/regress/%s", src, target);
		if (rc == 0)
			rc = replay_dir(dir, 0);
		if (rc == 0)
			printf("%s: %u corpus and %u regression inputs ran\n",
			       target, before, replay_count - before);
	}
	if (rc == 0 && replay_count == 0) {
		fprintf(stderr, "replay: %s: no input found\n", target);
		rc = -1;
	}
	return rc == 0 ? 0 : 1;
}

/*
 * fuzz.h - what every harness in fuzz/ shares.  Each fuzz_<target>.c
 * defines LLVMFuzzerTestOneInput (set-up is lazy, on the first call);
 * it is linked either with libFuzzer (clang -fsanitize=fuzzer, see
 * fuzz/build.sh) or with fuzz/replay.c (any compiler: runs the committed
 * corpus and regression inputs once, as a unit test in make check).
 * Failure policy: a broken property is a crash (FUZZ_CHECK aborts), so
 * libFuzzer saves the input and make check fails.
 */
#ifndef XMPPD_FUZZ_H
#define XMPPD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A property of the code under test does not hold: abort with a line
 * that names it (libFuzzer then writes the input to crash-<sha1>). */
#define FUZZ_CHECK(cond, ...) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: property failed: %s: ", __FILE__, \
			__LINE__, #cond); \
		fprintf(stderr, __VA_ARGS__); \
		fputc('\n', stderr); \
		abort(); \
	} \
} while (0)

/* Quiet logging for a harness (the code under test logs client errors
 * at info; thousands of runs per second would drown the report). */
void fuzz_quiet_log(void);

#endif

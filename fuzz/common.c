/*
 * common.c - helpers shared by the harnesses (fuzz.h).
 */
#include "fuzz.h"
#include "log.h"

#include <stdlib.h>

void fuzz_quiet_log(void)
{
	log_init("fuzz");
	/* FUZZ_VERBOSE=1 keeps the code's own log lines (when reproducing). */
	const char *v = getenv("FUZZ_VERBOSE");
	log_set_level(v != NULL && v[0] == '1' ? LOG_LEVEL_DEBUG
					       : LOG_LEVEL_FATAL);
}

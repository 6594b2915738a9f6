/*
 * dirfeed.h - this node's own sessions, from the shared session table
 * into the directory's record of what we told the others (struct
 * dir_local, directory.h): the records the table's change log names
 * (shm/session.h), or a full walk of the table at the start, when the
 * log lost changes (the bridge fell a lap behind, a table rebuilt after
 * a dead lock holder), or when the caller asks for one (a rare safety
 * net).  Either way the result is the same: dir_local holds the table's
 * local worker sessions, and l->out the events that say what changed.
 */
#ifndef XMPPD_DIRFEED_H
#define XMPPD_DIRFEED_H

#include <stdbool.h>
#include <stdint.h>

#include "directory.h"
#include "session.h"

struct dir_feed {
	struct shm_session_cursor cur;  /* the log, read up to here */
	bool started;               /* cur is good: a walk was made since
				       the log last lost changes */
	unsigned nworkers;          /* local slots below this are workers'
				       (the bridge's own slot is not told) */
	uint64_t walks;             /* full walks made (figures, tests) */
	uint64_t logged;            /* log entries read */
	uint64_t lapped;            /* walks because the log lost changes
				       (lapped, or the table rebuilt) */
	struct session_info info;   /* a record being read (3 KiB) */
};

void dir_feed_init(struct dir_feed *f, unsigned nworkers);
/* Bring l to the table's local sessions: from the log, or by a full
 * walk when walk is true or the log cannot say.  0, or -1 with
 * *error_r: the table was unreadable (nothing told: the next call
 * walks) or memory ran out (what could be told was; the next call
 * walks). */
int dir_feed_update(struct dir_feed *f, struct dir_local *l,
		    struct shm_table *t, bool walk, const char **error_r);

#endif

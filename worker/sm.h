/*
 * sm.h - XEP-0198 Stream Management (urn:xmpp:sm:3), worker/sm.c.
 * The extension itself is sm_ext (ext.h); what other units call is here.
 */
#ifndef XMPPD_SM_H
#define XMPPD_SM_H

#include "worker.h"
#include "../shm/smstore.h"

#define NS_SM "urn:xmpp:sm:3"

/* What `xmppctl sessions` shows for a session (docs/CONTROL.md): "-",
 * "on", "resumable", or "detached Ns". */
const char *sm_describe(const struct sm_state *st, int64_t now_ms,
			char *out, size_t cap);

/* Before adopting: name the frames from other nodes the record's
 * journal holds (settle_adopt_span). */
void sm_adopt_span(struct worker *w, const struct sm_ref *ref);

/*
 * The detached-conn constructor, for the adoption of a dead worker's
 * records (the respawned worker of the same slot, after
 * smstore_recover_slot() and before it reads its queue): a conn with
 * fd -1 for the record, with the record's conn id and generation, bound
 * to st->jid and entered in the session table, its journal left in the
 * store; it waits for <resume/> and expires like any detached session.
 * A record that is not resumable is ended at once: its journal is
 * rerouted (messages to the bare JID or offline storage, IQ requests
 * answered with an error, presence dropped) and it is closed.  0, or -1
 * without memory (the record is left as it is).
 */
int sm_adopt(struct worker *w, const struct sm_ref *ref,
	     const struct sm_state *st);

/* The payload of a KICK frame that ends a detached session to make room
 * for a new login of its account (c2s.max_sessions_per_account). */
#define SM_KICK_ROOM "room"

#endif

-- 004-offline-unreadable.sql - schema version 4: offline messages that
-- cannot be read back are moved aside, never deleted unread.
--
-- When delivery finds a row of offline_messages that does not read back
-- as a stanza (worker/store.c: store_read_stanza), the worker logs its id
-- at error level ("offline message ID of USER@DOMAIN unreadable ...") and
-- moves the row here, same id, with the reason, so that it no longer
-- counts against im.offline_quota nor blocks the messages after it.  The
-- operator inspects it here; to deliver a repaired copy, insert it into
-- offline_messages again (docs/DESIGN.md, "Failure rules").

CREATE TABLE offline_unreadable (
	id bigint PRIMARY KEY,          -- its id in offline_messages
	account_id bigint NOT NULL REFERENCES accounts ON DELETE CASCADE,
	sender text NOT NULL,
	stanza text NOT NULL,
	stored_at timestamptz NOT NULL,
	reason text NOT NULL,
	moved_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX offline_unreadable_account ON offline_unreadable (account_id);

INSERT INTO schema_version (version) VALUES (4);

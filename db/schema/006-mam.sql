-- 006-mam.sql - schema version 6: XEP-0313 message archives (one per
-- account) and their XEP-0441 preferences (worker/mam.c).
--
-- An archive id is made by the worker that archived the message, with no
-- database round trip: (ms since 1970 << 21) | (worker slot << 13) |
-- counter, so ids grow with time, are unique across workers and
-- restarts, and the archive's time (the <delay/> stamp, start/end
-- filters) is id >> 21.  Paging by id is therefore index order:
--   mam_messages_pkey  (account_id, id): the whole archive, start/end;
--   mam_messages_with  (account_id, with_bare, id): one conversation
--     (`with` bare, or full with with_full checked on the index rows);
--   mam_messages_age   BRIN (id): expiry by age, small and cheap to keep.
-- The latest 50 of one conversation is a backward scan of 51 entries of
-- mam_messages_with, whatever the archive's size.

CREATE TABLE mam_messages (
	account_id bigint NOT NULL REFERENCES accounts ON DELETE CASCADE,
	id bigint NOT NULL,
	with_bare text NOT NULL,    -- the other party, bare
	with_full text NOT NULL,    -- the other party as on the stanza
	outgoing boolean NOT NULL,  -- sent by the account
	stanza text NOT NULL,       -- the message, serialized (jabber:client)
	PRIMARY KEY (account_id, id)
);
CREATE INDEX mam_messages_with ON mam_messages (account_id, with_bare, id);
CREATE INDEX mam_messages_age ON mam_messages USING brin (id);

-- No row: default 'always', empty lists.
CREATE TABLE mam_prefs (
	account_id bigint PRIMARY KEY REFERENCES accounts ON DELETE CASCADE,
	default_mode text NOT NULL DEFAULT 'always'
		CHECK (default_mode IN ('always', 'never', 'roster')),
	always text[] NOT NULL DEFAULT '{}',
	never text[] NOT NULL DEFAULT '{}'
);

INSERT INTO schema_version (version) VALUES (6);

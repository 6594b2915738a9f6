-- 019-muc-archive.sql - schema version 19: the archive of each room
-- (XEP-0313 on rooms, and the history sent on entering, XEP-0045 section
-- 7.2.14; worker/muc_archive.c, written by worker/mam.c's batches).
--
-- Ids are archive ids as in mam_messages (006-mam.sql): made by the
-- room's owner worker, (ms << 21) | (slot << 13) | counter, so paging is
-- index order and the time of a row is id >> 21.
--   muc_messages_pkey      (room_id, id): the room's archive, history;
--   muc_messages_nick      (room_id, nick, id): `with` room@service/nick;
--   muc_messages_occupant  (room_id, occupant_jid, id): `with` a real
--     bare JID (moderators, non-anonymous rooms);
--   muc_messages_age       BRIN (id): expiry by age.
-- Each `with` has its index, so a room query never reads more than its
-- page (the personal archive bounds `with` full JIDs by
-- mam.max_scan_rows instead).

CREATE TABLE muc_messages (
	room_id bigint NOT NULL REFERENCES muc_rooms ON DELETE CASCADE,
	id bigint NOT NULL,
	nick text NOT NULL,             -- the sender's nick at the time
	occupant_jid text NOT NULL,     -- the sender's real bare JID
	stanza text NOT NULL,           -- as broadcast: from room@service/nick,
					-- no 'to', with the room's stanza-id
	PRIMARY KEY (room_id, id)
);
CREATE INDEX muc_messages_nick ON muc_messages (room_id, nick, id);
CREATE INDEX muc_messages_occupant ON muc_messages (room_id, occupant_jid, id);
CREATE INDEX muc_messages_age ON muc_messages USING brin (id);

INSERT INTO schema_version (version) VALUES (19);

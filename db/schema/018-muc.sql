-- 018-muc.sql - schema version 18: multi-user chat rooms (XEP-0045;
-- worker/muc.c, docs/DESIGN.md "Group chat").
--
-- A room's live state is held by its owner worker; these tables are what
-- survives that worker's crash and a restart: the room and its
-- configuration (persistent rooms, and temporary ones while occupied),
-- the affiliations, and the occupants.  The owner worker loads a room
-- when the first stanza for it arrives and writes each change as it
-- makes it (the write follows the change; a crash between the two loses
-- that one change, not the room).

CREATE TABLE muc_rooms (
	id bigserial PRIMARY KEY,
	service text NOT NULL,          -- 'conference.example.org'
	name text NOT NULL,             -- the room's localpart, prepared
	config text NOT NULL,           -- muc_config_to_text (muc_form.c)
	public boolean NOT NULL DEFAULT true,   -- listed in disco#items
	persistent boolean NOT NULL DEFAULT false,  -- else gone when empty
	locked boolean NOT NULL DEFAULT false,  -- new, not configured yet
	title text NOT NULL DEFAULT '',         -- muc#roomconfig_roomname
	-- the room's key for XEP-0421 occupant ids (stable across restarts)
	salt text NOT NULL DEFAULT md5(random()::text || clock_timestamp()),
	subject text NOT NULL DEFAULT '',   -- the subject's text
	subject_by text NOT NULL DEFAULT '',-- the nick that set it
	created_by text NOT NULL,       -- bare JID of the creator
	created_at timestamptz NOT NULL DEFAULT now(),
	UNIQUE (service, name)
);

-- Affiliations other than none (section 5.2): a bare JID, or a domain.
CREATE TABLE muc_affiliations (
	room_id bigint NOT NULL REFERENCES muc_rooms ON DELETE CASCADE,
	jid text NOT NULL,
	affiliation text NOT NULL
		CHECK (affiliation IN ('owner', 'admin', 'member', 'outcast')),
	nick text NOT NULL DEFAULT '',  -- a reserved nick (section 7.10)
	reason text NOT NULL DEFAULT '',
	PRIMARY KEY (room_id, jid)
);
-- An account deleted: its affiliations everywhere.
CREATE INDEX muc_affiliations_jid ON muc_affiliations (jid);

-- Occupants: one row per real full JID in a room.  boot is the run of
-- the server that wrote it (master start time and pid): rows of an
-- earlier run are stale and go when the room is loaded.
CREATE TABLE muc_occupants (
	room_id bigint NOT NULL REFERENCES muc_rooms ON DELETE CASCADE,
	jid text NOT NULL,              -- the real full JID
	nick text NOT NULL,
	role text NOT NULL
		CHECK (role IN ('moderator', 'participant', 'visitor')),
	presence text NOT NULL,         -- the occupant's presence as broadcast
	boot bigint NOT NULL,
	PRIMARY KEY (room_id, jid)
);
-- A session swept with its crashed worker: the rooms it was in.
CREATE INDEX muc_occupants_jid ON muc_occupants (jid);

-- An account deleted takes its affiliations in every room with it, as
-- ejabberd's mod_muc does (remove_user): whoever registers the name
-- again starts with none.  Its rooms stay (their other owners, admins
-- and members keep them); a room left without an owner is managed by
-- the server's administrators.
CREATE FUNCTION xmppd_muc_account_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	DELETE FROM muc_affiliations
	 WHERE jid = OLD.username || '@' || OLD.domain;
	RETURN OLD;
END $$;

CREATE TRIGGER accounts_muc_affiliations AFTER DELETE ON accounts
	FOR EACH ROW EXECUTE FUNCTION xmppd_muc_account_deleted();

INSERT INTO schema_version (version) VALUES (18);

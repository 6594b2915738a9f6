-- 001-accounts.sql - schema version 1: accounts and their SCRAM
-- credentials (salt, iteration count, StoredKey, ServerKey; never a
-- password).  Applied by `xmppctl db migrate` inside one transaction that
-- holds the migration advisory lock; the last statement records the
-- version, and migrate checks it did.

CREATE TABLE schema_version (
	version int PRIMARY KEY,
	applied_at timestamptz DEFAULT now()
);

-- username is Nodeprep'd, domain Nameprep'd (RFC 6122 profiles, as in
-- lib/jid.c), so a byte comparison is the JID comparison.
CREATE TABLE accounts (
	id bigserial PRIMARY KEY,
	username text NOT NULL,
	domain text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	UNIQUE (username, domain)
);

CREATE TABLE account_scram (
	account_id bigint REFERENCES accounts ON DELETE CASCADE,
	mechanism text CHECK (mechanism IN ('SCRAM-SHA-1', 'SCRAM-SHA-256')),
	salt bytea NOT NULL,
	iterations int NOT NULL,
	stored_key bytea NOT NULL,
	server_key bytea NOT NULL,
	PRIMARY KEY (account_id, mechanism)
);

INSERT INTO schema_version (version) VALUES (1);

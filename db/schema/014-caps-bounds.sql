-- 014-caps-bounds.sql: bounds of caps_cache (worker/caps_ext.c; review
-- F1/F2).  account: the bare JID whose session's answer made the row
-- (NULL for rows from before), with verified_at it counts the new vers
-- an account made in the last hour (caps.max_new_per_account_hour);
-- last_used orders the LRU delete past caps.cache_max_rows.
ALTER TABLE caps_cache ADD COLUMN account text;
CREATE INDEX caps_cache_account ON caps_cache (account, verified_at)
	WHERE account IS NOT NULL;
CREATE INDEX caps_cache_last_used ON caps_cache (last_used);

INSERT INTO schema_version (version) VALUES (14);

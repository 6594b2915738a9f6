-- 011-reserved.sql - schema version 11: a placeholder in this branch
-- (h-peps2s) only.  Version 11 belongs to another issue 13 branch
-- (explicit subscriptions, h-pepsub); at merge this file goes and
-- theirs takes its place (scripts/embed-sql needs consecutive steps).

INSERT INTO schema_version (version) VALUES (11);

-- 012-reserved.sql - schema version 12: a placeholder in this branch
-- (lead, merging) only until h-peps2s lands its 012-pep-remote.sql.
-- merge this file goes and theirs takes its place (scripts/embed-sql
-- and db/migrate.c need consecutive steps).

INSERT INTO schema_version (version) VALUES (12);

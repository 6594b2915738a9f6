-- 014-reserved.sql - schema version 14: a placeholder in this branch
-- (h-pepfix2) only.  Version 14 belongs to another issue 13 branch; at
-- merge this file goes and theirs takes its place (scripts/embed-sql
-- and db/migrate.c need consecutive steps).

INSERT INTO schema_version (version) VALUES (14);

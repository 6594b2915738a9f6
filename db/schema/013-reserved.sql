-- 013-reserved.sql - schema version 13: a placeholder in this branch
-- (h-capsfix2) only.  Version 13 belongs to another issue 13 branch;
-- at merge this file goes and theirs takes its place (scripts/embed-sql
-- needs consecutive steps).

INSERT INTO schema_version (version) VALUES (13);

-- 015-reserved.sql: placeholder for h-pepmore's 015-pep-subs-flag.sql
-- (the lead renumbers at merge; never merge this file to main).
INSERT INTO schema_version (version) VALUES (15);

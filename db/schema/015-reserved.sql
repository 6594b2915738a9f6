-- 015-reserved.sql: placeholder (another branch's migration 15; the lead renumbers at merge).
INSERT INTO schema_version (version) VALUES (15);

-- 016-reserved.sql: placeholder (another branch's migration 16; the lead renumbers at merge).
INSERT INTO schema_version (version) VALUES (16);

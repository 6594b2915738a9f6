-- 008-caps.sql: the entity capabilities cache (XEP-0115 / XEP-0390) behind
-- the shared-memory table (worker/caps_ext.c, shm/caps.c): one row per
-- verified (algo, ver), so a restart does not query every client again.
-- algo is "0115:sha-1", "0390:sha-256", ...; notify the node names of the
-- ver's "+notify" features.  Rows are per client build, not per account:
-- nothing cascades; worker 0 deletes rows unused for 90 days.
CREATE TABLE caps_cache (
	algo text NOT NULL,
	ver text NOT NULL,
	notify text[] NOT NULL,
	verified_at timestamptz NOT NULL DEFAULT now(),
	last_used date NOT NULL DEFAULT current_date,
	PRIMARY KEY (algo, ver)
);

INSERT INTO schema_version (version) VALUES (8);

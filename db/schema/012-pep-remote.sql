-- 012-pep-remote.sql - schema version 12: XEP-0163 recipients on other
-- servers (worker/pep_remote.c).  A full JID on a domain we do not host
-- that sent available presence with entity capabilities (XEP-0115 /
-- XEP-0390) to an account whose roster holds its bare JID is one row,
-- until its unavailable, a presence error, a bounced event (XEP-0060
-- section 12.3) or the end of the subscription.  Rows are capped per
-- account (pep.max_remote_recipients, checked here under the account's
-- row lock); whether an event may reach a row is decided when it is sent
-- (from/both, access model), as for local contacts.

CREATE TABLE pep_remote_presence (
	account_id bigint NOT NULL REFERENCES accounts ON DELETE CASCADE,
	full_jid text NOT NULL,
	bare_jid text NOT NULL,
	caps_algo text NOT NULL,        -- as caps_cache.algo: '0115:sha-1'
	caps_ver text NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (account_id, full_jid)
);
CREATE INDEX pep_remote_presence_bare
	ON pep_remote_presence (account_id, bare_jid);
CREATE INDEX pep_remote_presence_ver
	ON pep_remote_presence (caps_algo, caps_ver);

-- Record (or update) p_full's caps for the account p_user@p_domain.
-- status: 'no-account', 'not-contact' (no roster item with a
-- subscription, or blocked), 'same' (nothing changed), 'changed' (old_*
-- give the previous caps), 'new', 'full' (p_max rows already: nothing
-- stored).
CREATE FUNCTION xmppd_pep_remote_presence(p_user text, p_domain text,
		p_full text, p_bare text, p_algo text, p_ver text, p_max int)
RETURNS TABLE (status text, old_algo text, old_ver text)
LANGUAGE plpgsql AS $$
DECLARE
	acc bigint;
	r pep_remote_presence%ROWTYPE;
BEGIN
	SELECT id INTO acc FROM accounts
	 WHERE username = p_user AND domain = p_domain FOR UPDATE;
	IF acc IS NULL THEN
		status := 'no-account'; RETURN NEXT; RETURN;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM roster_items i
			WHERE i.account_id = acc AND i.contact = p_bare AND
			      NOT i.removed AND
			      i.subscription IN ('to', 'from', 'both')) OR
	   EXISTS (SELECT 1 FROM blocklist b WHERE b.account_id = acc AND
		   b.jid IN (p_bare, split_part(p_bare, '@', 2))) THEN
		DELETE FROM pep_remote_presence
		 WHERE account_id = acc AND full_jid = p_full;
		status := 'not-contact'; RETURN NEXT; RETURN;
	END IF;
	SELECT * INTO r FROM pep_remote_presence
	 WHERE account_id = acc AND full_jid = p_full;
	IF FOUND THEN
		IF r.caps_algo = p_algo AND r.caps_ver = p_ver THEN
			status := 'same'; RETURN NEXT; RETURN;
		END IF;
		UPDATE pep_remote_presence SET caps_algo = p_algo,
		       caps_ver = p_ver, updated_at = now()
		 WHERE account_id = acc AND full_jid = p_full;
		status := 'changed'; old_algo := r.caps_algo;
		old_ver := r.caps_ver; RETURN NEXT; RETURN;
	END IF;
	IF (SELECT count(*) FROM pep_remote_presence
	     WHERE account_id = acc) >= p_max THEN
		status := 'full'; RETURN NEXT; RETURN;
	END IF;
	INSERT INTO pep_remote_presence (account_id, full_jid, bare_jid,
					 caps_algo, caps_ver)
	VALUES (acc, p_full, p_bare, p_algo, p_ver);
	status := 'new'; RETURN NEXT;
END $$;

-- Their last items: xmppd_pep_remote_last in 013-pep-fixes.sql (on the
-- paged, name-filtered xmppd_pep_last_items made there).

INSERT INTO schema_version (version) VALUES (12);

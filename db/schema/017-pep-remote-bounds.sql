-- 017-pep-remote-bounds.sql: bounds of pep_remote_presence (worker/
-- pep_remote.c; review 13b G5).  A row now lasts pep.remote_presence_ttl
-- after its last presence (updated_at is renewed by every presence from
-- the full JID, 'same' included; worker 0 deletes older rows), and one
-- remote bare JID holds at most p_max_res rows of an account
-- (pep.max_remote_resources) besides the account's p_max.  Events
-- skip rows past the TTL (pep_notify.c) before they are deleted.
CREATE INDEX pep_remote_presence_updated
	ON pep_remote_presence (updated_at);

DROP FUNCTION xmppd_pep_remote_presence(text, text, text, text, text,
					text, int);

-- status as in 012, plus 'full-jid' (p_max_res rows of p_bare already:
-- nothing stored).
CREATE FUNCTION xmppd_pep_remote_presence(p_user text, p_domain text,
		p_full text, p_bare text, p_algo text, p_ver text, p_max int,
		p_max_res int, p_ttl_ms bigint)
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
	-- rows past pep.remote_presence_ttl count no more
	DELETE FROM pep_remote_presence
	 WHERE account_id = acc AND
	       updated_at < now() - p_ttl_ms * interval '1 millisecond';
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
		UPDATE pep_remote_presence SET caps_algo = p_algo,
		       caps_ver = p_ver, updated_at = now()
		 WHERE account_id = acc AND full_jid = p_full;
		IF r.caps_algo = p_algo AND r.caps_ver = p_ver THEN
			status := 'same'; RETURN NEXT; RETURN;
		END IF;
		status := 'changed'; old_algo := r.caps_algo;
		old_ver := r.caps_ver; RETURN NEXT; RETURN;
	END IF;
	IF (SELECT count(*) FROM pep_remote_presence
	     WHERE account_id = acc) >= p_max THEN
		status := 'full'; RETURN NEXT; RETURN;
	END IF;
	IF (SELECT count(*) FROM pep_remote_presence
	     WHERE account_id = acc AND bare_jid = p_bare) >= p_max_res THEN
		status := 'full-jid'; RETURN NEXT; RETURN;
	END IF;
	INSERT INTO pep_remote_presence (account_id, full_jid, bare_jid,
					 caps_algo, caps_ver)
	VALUES (acc, p_full, p_bare, p_algo, p_ver);
	status := 'new'; RETURN NEXT;
END $$;

INSERT INTO schema_version (version) VALUES (17);

-- Two subscription stanzas between the same two accounts, handled at
-- once on two workers (A's subscribe to B on one, B's to A on the
-- other, each stored on both sides), both found no roster_items row
-- for the pair: xmppd_sub's SELECT ... FOR UPDATE locks nothing when
-- there is no row, and the later upsert overwrote the earlier one
-- (A's ask_out lost under B's pending_in): a pair left short of
-- 'both'.  xmppd_sub now runs with the row present and locked: an
-- empty item is inserted first (a concurrent insert of the same pair
-- waits for this transaction), and removed again if the stanza
-- changed nothing, so no row is left where there was none.
ALTER FUNCTION xmppd_sub(text, text, text, text, text, text, int)
	RENAME TO xmppd_sub_locked;

CREATE FUNCTION xmppd_sub(p_user text, p_domain text, p_contact text,
			  p_dir text, p_type text, p_stanza text, p_max int)
RETURNS TABLE (route boolean, deliver boolean, reply text, push boolean,
	       granted boolean, revoked boolean, subscription text,
	       ask_out boolean, name text, groups text[], ver bigint,
	       approved boolean, refused boolean)
LANGUAGE plpgsql AS $$
DECLARE
	acc bigint := xmppd_account_id(p_user, p_domain);
	made boolean := false;
BEGIN
	IF acc IS NOT NULL THEN
		INSERT INTO roster_items (account_id, contact, listed)
		VALUES (acc, p_contact, false)
		ON CONFLICT (account_id, contact) DO NOTHING;
		made := FOUND;
	END IF;
	RETURN QUERY SELECT * FROM xmppd_sub_locked(p_user, p_domain,
		p_contact, p_dir, p_type, p_stanza, p_max);
	IF made THEN
		DELETE FROM roster_items i
		 WHERE i.account_id = acc AND i.contact = p_contact
		   AND NOT i.listed AND NOT i.removed AND NOT i.pending_in
		   AND NOT i.ask_out AND NOT i.approved
		   AND i.subscription = 'none' AND i.ver = 0;
	END IF;
END
$$;

INSERT INTO schema_version (version) VALUES (10);

-- 009-pep-notify.sql - schema version 9: what PEP notifications
-- (worker/pep_notify.c) read.  The last items a session gets when its
-- entity capabilities become known (XEP-0163 section 4.3.4) are found
-- from the viewer's side: the accounts whose rosters hold the viewer
-- with from/both, hence the index on roster_items (contact).

CREATE INDEX roster_items_contact ON roster_items (contact)
	WHERE NOT removed AND subscription IN ('from', 'both');

-- The newest item of every node the viewer (p_user@p_domain) may read
-- whose send_last_published_item is on_sub_and_presence: its own
-- account's and those of the accounts that have it from/both and did
-- not block it (only p_owner's when p_owner is given: the owner who
-- just granted a subscription).  One statement per login or caps change.
-- stamp: XEP-0082 UTC, for <delay/>.
CREATE FUNCTION xmppd_pep_last_items(p_user text, p_domain text,
		p_owner text)
RETURNS TABLE (service text, node text, item_id text, payload text,
	       stamp text)
LANGUAGE sql STABLE AS $$
	SELECT n.service, n.node, l.item_id, l.payload,
	       to_char(l.published_at AT TIME ZONE 'UTC',
		       'YYYY-MM-DD"T"HH24:MI:SS"Z"')
	  FROM (SELECT xmppd_account_id(p_user, p_domain) AS id
		 WHERE p_owner IS NULL
		UNION
		SELECT i.account_id FROM roster_items i
		 WHERE i.contact = p_user || '@' || p_domain AND
		       NOT i.removed AND i.subscription IN ('from', 'both') AND
		       (p_owner IS NULL OR i.account_id = xmppd_account_id(
				split_part(p_owner, '@', 1),
				split_part(p_owner, '@', 2))) AND
		       NOT EXISTS (SELECT 1 FROM blocklist b
				    WHERE b.account_id = i.account_id AND
					  b.jid IN (i.contact, p_domain))) s
	  JOIN pubsub_nodes n ON n.account_id = s.id
	 CROSS JOIN LATERAL (SELECT x.item_id, x.payload, x.published_at
			       FROM pubsub_items x WHERE x.node_id = n.id
			      ORDER BY x.seq DESC LIMIT 1) l
	 WHERE n.send_last = 'on_sub_and_presence' AND
	       n.deliver_notifications AND
	       xmppd_pep_refusal(n, p_user || '@' || p_domain) IS NULL
	 ORDER BY n.service, n.node
$$;

INSERT INTO schema_version (version) VALUES (9);

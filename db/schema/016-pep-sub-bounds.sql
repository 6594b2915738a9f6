-- 016-pep-sub-bounds.sql: bounds and XEP-0060 details of explicit
-- subscriptions (worker/pep.c; REVIEW-13b G2, G6).
-- * Subscriptions per node and subscriber bare JID (its bare and full
--   JIDs together) are bounded (pep.max_subscriptions_per_jid), so one
--   subscriber cannot take a node's pep.max_subscriptions with made-up
--   resources.  Subscriber JIDs do not count in the owner's
--   pep.max_account_bytes: subscribers choose them, so on an open node
--   strangers could fill the owner's quota and stop its publishing
--   (REVIEW-13c H1); subscriptions are bounded by count instead
--   (pep.max_subscriptions per node, at most IPC_JID_MAX bytes each).
-- * The last item on subscribe carries no payload when the node's
--   pubsub#deliver_payloads is off (XEP-0060 section 7.1.2.1).
-- * The owner's subscriptions set returns what changed, so that each
--   affected JID is told (section 8.8.4).
-- * The prune takes the account's node rows FOR SHARE before deleting:
--   a subscribe (which holds its node row FOR UPDATE) that passed its
--   access check is committed and seen by the delete, or waits for the
--   prune and then sees the lost presence subscription.

-- xmppd_pep_subscribe (011) with p_max_jid (subscriptions of one bare
-- JID per node: status 'max-jid'); payload is NULL when
-- deliver_payloads is off.
DROP FUNCTION xmppd_pep_subscribe(text, text, text, text, text, int);
CREATE FUNCTION xmppd_pep_subscribe(p_user text, p_domain text,
		p_node text, p_requester text, p_jid text, p_max int,
		p_max_jid int)
RETURNS TABLE (status text, item_id text, payload text, stamp text)
LANGUAGE plpgsql AS $$
DECLARE
	acc bigint := xmppd_account_id(p_user, p_domain);
	n pubsub_nodes%ROWTYPE;
BEGIN
	IF acc IS NULL THEN
		status := 'no-account'; RETURN NEXT; RETURN;
	END IF;
	SELECT * INTO n FROM pubsub_nodes x
	 WHERE x.service = p_user || '@' || p_domain AND x.node = p_node
	   FOR UPDATE;
	IF NOT FOUND THEN
		status := 'no-node'; RETURN NEXT; RETURN;
	END IF;
	status := xmppd_pep_refusal(n, p_requester);
	IF status IS NOT NULL THEN
		RETURN NEXT; RETURN;
	END IF;
	PERFORM 1 FROM pubsub_subscriptions s
	 WHERE s.node_id = n.id AND s.jid = p_jid;
	IF NOT FOUND THEN
		IF (SELECT count(*) FROM pubsub_subscriptions s
		    WHERE s.node_id = n.id) >= p_max THEN
			status := 'max-subs'; RETURN NEXT; RETURN;
		END IF;
		IF (SELECT count(*) FROM pubsub_subscriptions s
		    WHERE s.node_id = n.id AND
			  split_part(s.jid, '/', 1) = p_requester) >=
		   p_max_jid THEN
			status := 'max-jid'; RETURN NEXT; RETURN;
		END IF;
		INSERT INTO pubsub_subscriptions (node_id, jid, subid)
		VALUES (n.id, p_jid, '');
	END IF;
	status := 'ok';
	IF n.send_last IN ('on_sub', 'on_sub_and_presence') AND
	   n.deliver_notifications THEN
		SELECT i.item_id, CASE WHEN n.deliver_payloads
				       THEN i.payload END,
		       to_char(i.published_at AT TIME ZONE 'UTC',
			       'YYYY-MM-DD"T"HH24:MI:SS"Z"')
		  INTO item_id, payload, stamp
		  FROM pubsub_items i WHERE i.node_id = n.id
		 ORDER BY i.seq DESC LIMIT 1;
	END IF;
	RETURN NEXT;
END $$;

-- xmppd_pep_subs_set (011) returning, after the status row (jid NULL),
-- one row per JID whose subscription changed and its new state.
DROP FUNCTION xmppd_pep_subs_set(text, text, text[], text[], int);
CREATE FUNCTION xmppd_pep_subs_set(p_service text, p_node text,
		p_jids text[], p_states text[], p_max int)
RETURNS TABLE (status text, jid text, state text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
	nid bigint;
	added bigint;
	gone text[];
	got text[];
BEGIN
	SELECT x.id INTO nid FROM pubsub_nodes x
	 WHERE x.service = p_service AND x.node = p_node FOR UPDATE;
	IF NOT FOUND THEN
		status := 'no-node'; RETURN NEXT; RETURN;
	END IF;
	BEGIN
		WITH d AS (DELETE FROM pubsub_subscriptions s
			   USING unnest(p_jids, p_states) AS u(j, f)
			   WHERE s.node_id = nid AND s.jid = u.j AND
				 u.f = 'none' RETURNING s.jid)
		SELECT COALESCE(array_agg(d.jid), '{}') INTO gone FROM d;
		WITH i AS (INSERT INTO pubsub_subscriptions (node_id, jid, subid)
			   SELECT nid, u.j, '' FROM unnest(p_jids, p_states)
				  AS u(j, f) WHERE u.f = 'subscribed'
			   ON CONFLICT (node_id, jid) DO NOTHING
			   RETURNING pubsub_subscriptions.jid)
		SELECT COALESCE(array_agg(i.jid), '{}') INTO got FROM i;
		added := cardinality(got);
		IF added > 0 AND (SELECT count(*) FROM pubsub_subscriptions s
		    WHERE s.node_id = nid) > p_max THEN
			RAISE EXCEPTION USING ERRCODE = 'P0001',
				MESSAGE = 'xmppd: max-subs';
		END IF;
	EXCEPTION WHEN raise_exception THEN
		status := 'max-subs'; RETURN NEXT; RETURN;
	END;
	status := 'ok'; RETURN NEXT;
	status := NULL;
	RETURN QUERY SELECT NULL::text, g, 'none'::text FROM unnest(gone) g;
	RETURN QUERY SELECT NULL::text, g, 'subscribed'::text
		       FROM unnest(got) g;
END $$;

-- xmppd_pep_sub_prune (011), the node rows locked first (see above).
CREATE OR REPLACE FUNCTION xmppd_pep_sub_prune(p_user text, p_domain text,
		p_node text, p_bare text)
RETURNS TABLE (node text, jid text)
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM 1 FROM pubsub_nodes n
	 WHERE n.service = p_user || '@' || p_domain
	   AND (p_node IS NULL OR n.node = p_node)
	 ORDER BY n.id FOR SHARE;
	RETURN QUERY
	DELETE FROM pubsub_subscriptions s USING pubsub_nodes n
	 WHERE n.id = s.node_id AND n.service = p_user || '@' || p_domain
	   AND (p_node IS NULL OR n.node = p_node)
	   AND (p_bare IS NULL OR split_part(s.jid, '/', 1) = p_bare)
	   AND xmppd_pep_refusal(n, split_part(s.jid, '/', 1)) IS NOT NULL
	RETURNING n.node, s.jid;
END $$;

INSERT INTO schema_version (version) VALUES (16);

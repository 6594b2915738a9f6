-- 011-pep-subscribe.sql - schema version 11: explicit XEP-0060
-- subscriptions to PEP nodes (section 6.1 subscribe, 6.2 unsubscribe,
-- 8.8 owner management; worker/pep.c) and who of the subscribers an
-- event reaches (worker/pep_notify.c).  One subscription per JID and
-- node (pubsub_subscriptions' key): subid is stored empty and never
-- sent (section 6.1.6: a service SHOULD NOT allow more than one).
-- A subscription goes with the node (cascade), with the owner's account
-- (cascade) and with the subscriber's local account (trigger below).

-- Subscribers by JID: unsubscribe, and the subscriber's account going.
CREATE INDEX pubsub_subscriptions_jid ON pubsub_subscriptions
	(jid text_pattern_ops);

-- Subscribe p_jid (the requester's bare or full JID, checked by the
-- caller) to node p_node of p_user@p_domain, as p_requester (bare) may
-- read it (xmppd_pep_refusal).  status: 'ok', 'no-account', 'no-node',
-- a refusal ('outcast', 'presence', 'roster', 'whitelist') or
-- 'max-subs' (the node has p_max subscriptions; an existing one is
-- 'ok' again).  With 'ok', the node's newest item when its
-- send_last_published_item is on_sub or on_sub_and_presence (section
-- 12.1 trigger 1), stamp for <delay/> (XEP-0082 UTC).
CREATE FUNCTION xmppd_pep_subscribe(p_user text, p_domain text,
		p_node text, p_requester text, p_jid text, p_max int)
RETURNS TABLE (status text, item_id text, payload text, stamp text)
LANGUAGE plpgsql AS $$
DECLARE
	n pubsub_nodes%ROWTYPE;
BEGIN
	IF xmppd_account_id(p_user, p_domain) IS NULL THEN
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
		INSERT INTO pubsub_subscriptions (node_id, jid, subid)
		VALUES (n.id, p_jid, '');
	END IF;
	status := 'ok';
	IF n.send_last IN ('on_sub', 'on_sub_and_presence') AND
	   n.deliver_notifications THEN
		SELECT i.item_id, i.payload,
		       to_char(i.published_at AT TIME ZONE 'UTC',
			       'YYYY-MM-DD"T"HH24:MI:SS"Z"')
		  INTO item_id, payload, stamp
		  FROM pubsub_items i WHERE i.node_id = n.id
		 ORDER BY i.seq DESC LIMIT 1;
	END IF;
	RETURN NEXT;
END $$;

-- Unsubscribe p_jid from the node.  status: 'ok', 'no-account',
-- 'no-node', 'not-subscribed'.
CREATE FUNCTION xmppd_pep_unsubscribe(p_user text, p_domain text,
		p_node text, p_jid text)
RETURNS TABLE (status text)
LANGUAGE plpgsql AS $$
DECLARE
	nid bigint;
BEGIN
	IF xmppd_account_id(p_user, p_domain) IS NULL THEN
		status := 'no-account'; RETURN NEXT; RETURN;
	END IF;
	SELECT x.id INTO nid FROM pubsub_nodes x
	 WHERE x.service = p_user || '@' || p_domain AND x.node = p_node;
	IF NOT FOUND THEN
		status := 'no-node'; RETURN NEXT; RETURN;
	END IF;
	DELETE FROM pubsub_subscriptions s
	 WHERE s.node_id = nid AND s.jid = p_jid;
	status := CASE WHEN FOUND THEN 'ok' ELSE 'not-subscribed' END;
	RETURN NEXT;
END $$;

-- The owner (section 8.8.2) sets subscriptions: p_jids[i] gets
-- p_states[i] ('none' removes, 'subscribed' adds, up to p_max per
-- node: only adding past it is refused).  status: 'ok', 'no-node',
-- 'max-subs' (nothing changed).
CREATE FUNCTION xmppd_pep_subs_set(p_service text, p_node text,
		p_jids text[], p_states text[], p_max int)
RETURNS TABLE (status text)
LANGUAGE plpgsql AS $$
DECLARE
	nid bigint;
	added bigint;
BEGIN
	SELECT x.id INTO nid FROM pubsub_nodes x
	 WHERE x.service = p_service AND x.node = p_node FOR UPDATE;
	IF NOT FOUND THEN
		status := 'no-node'; RETURN NEXT; RETURN;
	END IF;
	DELETE FROM pubsub_subscriptions s USING unnest(p_jids, p_states)
	       AS u(j, f) WHERE s.node_id = nid AND s.jid = u.j AND
	       u.f = 'none';
	INSERT INTO pubsub_subscriptions (node_id, jid, subid)
	SELECT nid, u.j, '' FROM unnest(p_jids, p_states) AS u(j, f)
	 WHERE u.f = 'subscribed'
	ON CONFLICT (node_id, jid) DO NOTHING;
	GET DIAGNOSTICS added = ROW_COUNT;
	IF added > 0 AND (SELECT count(*) FROM pubsub_subscriptions s
	    WHERE s.node_id = nid) > p_max THEN
		RAISE EXCEPTION USING ERRCODE = 'P0001',
			MESSAGE = 'xmppd: max-subs';
	END IF;
	status := 'ok'; RETURN NEXT;
EXCEPTION WHEN raise_exception THEN
	status := 'max-subs'; RETURN NEXT;
END $$;

-- Who of the node's subscribers (p_jids when given: a deleted node's,
-- read before it went) an event of node p_node of p_user@p_domain with
-- access model p_access and groups p_groups reaches, ordered by bare
-- JID: each subscribed jid, its bare JID, and how the presence-based
-- recipients (pep_notify.c (a), (b)) already include that bare JID:
-- 'owner', 'contact' (from/both, not blocked, admitted by the model) or
-- NULL; rostered: the bare JID may get replyto (XEP-0163 section 4.3.1:
-- the owner, or from/both).  Subscribers the owner blocks, or whom the
-- node's access model no longer admits, are left out.
CREATE FUNCTION xmppd_pep_sub_recipients(p_user text, p_domain text,
		p_node text, p_access text, p_groups text[], p_jids text[])
RETURNS TABLE (jid text, bare text, admitted text, rostered boolean)
LANGUAGE sql STABLE AS $$
	WITH o AS (SELECT xmppd_account_id(p_user, p_domain) AS acc,
			  p_user || '@' || p_domain AS svc),
	n AS (SELECT x.* FROM pubsub_nodes x, o
	       WHERE x.service = o.svc AND x.node = p_node),
	s AS (SELECT u.j FROM unnest(p_jids) AS u(j) WHERE p_jids IS NOT NULL
	      UNION
	      SELECT t.jid FROM pubsub_subscriptions t, n
	       WHERE p_jids IS NULL AND t.node_id = n.id),
	b AS (SELECT s.j, split_part(s.j, '/', 1) AS bare FROM s)
	SELECT b.j, b.bare,
	       CASE WHEN b.bare = o.svc THEN 'owner'
		    WHEN r.contact IS NOT NULL AND
			 f.affiliation IS DISTINCT FROM 'outcast' AND
			 CASE p_access WHEN 'roster' THEN r.groups && p_groups
			      WHEN 'whitelist' THEN COALESCE(f.affiliation IN
				('member', 'publisher'), false)
			      ELSE true END THEN 'contact' END,
	       b.bare = o.svc OR r.contact IS NOT NULL
	  FROM b CROSS JOIN o
	  LEFT JOIN roster_items r ON r.account_id = o.acc AND
	       r.contact = b.bare AND NOT r.removed AND
	       r.subscription IN ('from', 'both')
	  LEFT JOIN n ON true
	  LEFT JOIN pubsub_affiliations f ON f.node_id = n.id AND
	       f.jid = b.bare
	 WHERE NOT EXISTS (SELECT 1 FROM blocklist k WHERE k.account_id = o.acc
			    AND k.jid IN (b.j, b.bare, split_part(b.bare, '@', 2)))
	   AND (n.id IS NULL OR xmppd_pep_refusal(n, b.bare) IS NULL)
	 ORDER BY b.bare, b.j
$$;

-- xmppd_pep_remove (007) with the subscribers of a deleted node, read
-- before they go with it (they get the <delete/> event).
DROP FUNCTION xmppd_pep_remove(text, text, text, text, text);
CREATE FUNCTION xmppd_pep_remove(p_user text, p_domain text, p_node text,
				 p_op text, p_item text)
RETURNS TABLE (status text, config text[], roster_groups text[],
	       subscribers text[])
LANGUAGE plpgsql AS $$
DECLARE
	acc bigint := xmppd_account_id(p_user, p_domain);
	n pubsub_nodes%ROWTYPE;
	b bigint;
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
	config := xmppd_pep_config(n); roster_groups := n.roster_groups;
	IF p_op = 'retract' THEN
		DELETE FROM pubsub_items i WHERE i.node_id = n.id AND
		       i.item_id = p_item
		 RETURNING xmppd_pep_item_bytes(i.item_id, i.payload) INTO b;
		IF NOT FOUND THEN
			status := 'no-item'; RETURN NEXT; RETURN;
		END IF;
		UPDATE pubsub_nodes x SET item_bytes = x.item_bytes - b
		 WHERE x.id = n.id;
	ELSIF p_op = 'purge' THEN
		DELETE FROM pubsub_items i WHERE i.node_id = n.id;
		UPDATE pubsub_nodes x SET item_bytes = 0 WHERE x.id = n.id;
	ELSE
		SELECT COALESCE(array_agg(s.jid ORDER BY s.jid), '{}')
		  INTO subscribers FROM pubsub_subscriptions s
		 WHERE s.node_id = n.id;
		DELETE FROM pubsub_nodes x WHERE x.id = n.id;
	END IF;
	status := 'ok'; RETURN NEXT;
END $$;

-- Subscriptions of the account's nodes (only p_node's unless NULL; only
-- those of bare JID p_bare unless NULL) whom the node's access model no
-- longer admits (xmppd_pep_refusal): removed, and returned so that each
-- is told (XEP-0060 section 4.5 / 8.8.4 subscription 'none').  Run
-- after a configuration change, an affiliation change and a lost
-- presence subscription.
CREATE FUNCTION xmppd_pep_sub_prune(p_user text, p_domain text,
		p_node text, p_bare text)
RETURNS TABLE (node text, jid text)
LANGUAGE sql AS $$
	DELETE FROM pubsub_subscriptions s USING pubsub_nodes n
	 WHERE n.id = s.node_id AND n.service = p_user || '@' || p_domain
	   AND (p_node IS NULL OR n.node = p_node)
	   AND (p_bare IS NULL OR split_part(s.jid, '/', 1) = p_bare)
	   AND xmppd_pep_refusal(n, split_part(s.jid, '/', 1)) IS NOT NULL
	RETURNING n.node, s.jid
$$;

-- A local account's subscriptions (bare and full JID) go with it.
CREATE FUNCTION xmppd_pep_subscriber_gone() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	DELETE FROM pubsub_subscriptions s
	 WHERE s.jid = OLD.username || '@' || OLD.domain OR
	       s.jid LIKE replace(replace(replace(OLD.username || '@' ||
		       OLD.domain, '\', '\\'), '%', '\%'), '_', '\_') || '/%';
	RETURN OLD;
END $$;
CREATE TRIGGER accounts_pep_subscriber_gone AFTER DELETE ON accounts
	FOR EACH ROW EXECUTE FUNCTION xmppd_pep_subscriber_gone();

INSERT INTO schema_version (version) VALUES (11);

-- 015-pep-subs-flag.sql (issue 13, h-pepmore); also the RSM items
-- function at the end.  A publish, retract, purge or configuration
-- change says whether the node has explicit subscribers (011), so that
-- the worker skips the subscriber query (xmppd_pep_sub_recipients) of
-- a node without any -- almost every PEP node (worker/pep.c,
-- worker/pep_notify.c pep_notify_subscribers).  subscribers: '{}' when
-- the node has none, NULL when it has some (read them after); delete
-- still returns the deleted node's list.  Read under the node's row
-- lock, as the change itself.
CREATE FUNCTION xmppd_pep_subs_flag(p_node bigint) RETURNS text[]
LANGUAGE sql STABLE AS $$
	SELECT CASE WHEN EXISTS (SELECT 1 FROM pubsub_subscriptions s
				  WHERE s.node_id = p_node)
		    THEN NULL ELSE '{}'::text[] END
$$;

-- xmppd_pep_publish (007) with subscribers.
DROP FUNCTION xmppd_pep_publish(text, text, text, text, text, text, text[],
				text[], int, int, bigint);
CREATE FUNCTION xmppd_pep_publish(p_user text, p_domain text, p_node text,
		p_item text, p_payload text, p_publisher text, p_pre text[],
		p_groups text[], p_max_nodes int, p_max_items int,
		p_max_bytes bigint)
RETURNS TABLE (status text, detail text, created boolean, trimmed text[],
	       config text[], roster_groups text[], subscribers text[])
LANGUAGE plpgsql AS $$
DECLARE
	acc bigint := xmppd_account_id(p_user, p_domain);
	svc text := p_user || '@' || p_domain;
	n pubsub_nodes%ROWTYPE;
	old_bytes bigint := 0;
	total bigint;
BEGIN
	created := false; trimmed := '{}';
	IF acc IS NULL THEN
		status := 'no-account'; RETURN NEXT; RETURN;
	END IF;
	PERFORM 1 FROM accounts a WHERE a.id = acc FOR UPDATE;
	SELECT * INTO n FROM pubsub_nodes x
	 WHERE x.service = svc AND x.node = p_node FOR UPDATE;
	IF NOT FOUND THEN
		IF (SELECT count(*) FROM pubsub_nodes x
		    WHERE x.account_id = acc) >= p_max_nodes THEN
			status := 'max-nodes'; RETURN NEXT; RETURN;
		END IF;
		n := xmppd_pep_apply(NULL::pubsub_nodes, p_pre, p_groups);
		INSERT INTO pubsub_nodes (service, account_id, node,
			access_model, max_items, persist_items, send_last,
			notify_retract, notify_delete, notify_config,
			deliver_notifications, deliver_payloads,
			notification_type, title, type, itemreply,
			roster_groups)
		SELECT svc, acc, p_node, COALESCE(n.access_model, d.access_model),
		       CASE WHEN p_pre[2] IS NULL THEN 1 ELSE n.max_items END,
		       COALESCE(n.persist_items, true),
		       COALESCE(n.send_last, 'on_sub_and_presence'),
		       COALESCE(n.notify_retract, false),
		       COALESCE(n.notify_delete, false),
		       COALESCE(n.notify_config, false),
		       COALESCE(n.deliver_notifications, true),
		       COALESCE(n.deliver_payloads, true),
		       COALESCE(n.notification_type, 'headline'),
		       COALESCE(n.title, ''), COALESCE(n.type, ''),
		       COALESCE(n.itemreply, 'none'),
		       COALESCE(n.roster_groups, '{}')
		  FROM (SELECT 'presence'::text AS access_model) d
		RETURNING * INTO n;
		created := true;
	ELSE
		detail := xmppd_pep_mismatch(n, p_pre, p_groups, p_max_items);
		IF detail IS NOT NULL THEN
			status := 'precondition'; RETURN NEXT; RETURN;
		END IF;
	END IF;
	SELECT xmppd_pep_item_bytes(i.item_id, i.payload) INTO old_bytes
	  FROM pubsub_items i WHERE i.node_id = n.id AND i.item_id = p_item;
	-- with the auto-created node's row (its name counts)
	total := xmppd_pep_account_bytes(acc);
	IF total - COALESCE(old_bytes, 0) +
	   xmppd_pep_item_bytes(p_item, p_payload) > p_max_bytes THEN
		IF created THEN
			DELETE FROM pubsub_nodes x WHERE x.id = n.id;
			created := false;
		END IF;
		status := 'account-bytes';
		RETURN NEXT; RETURN;
	END IF;
	-- an overwritten item counts as new: it goes last (section 7.1.3)
	DELETE FROM pubsub_items i WHERE i.node_id = n.id AND
	       i.item_id = p_item;
	INSERT INTO pubsub_items (node_id, item_id, publisher, payload)
	VALUES (n.id, p_item, p_publisher, p_payload);
	UPDATE pubsub_nodes x SET item_bytes = x.item_bytes -
	       COALESCE(old_bytes, 0) + xmppd_pep_item_bytes(p_item, p_payload)
	 WHERE x.id = n.id;
	trimmed := xmppd_pep_trim(n, p_max_items);
	status := 'ok'; config := xmppd_pep_config(n);
	roster_groups := n.roster_groups;
	subscribers := CASE WHEN created THEN '{}'::text[]
			    ELSE xmppd_pep_subs_flag(n.id) END;
	RETURN NEXT;
END $$;

-- xmppd_pep_remove (011): subscribers for retract and purge too.
CREATE OR REPLACE FUNCTION xmppd_pep_remove(p_user text, p_domain text,
		p_node text, p_op text, p_item text)
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
		subscribers := xmppd_pep_subs_flag(n.id);
	ELSIF p_op = 'purge' THEN
		DELETE FROM pubsub_items i WHERE i.node_id = n.id;
		UPDATE pubsub_nodes x SET item_bytes = 0 WHERE x.id = n.id;
		subscribers := xmppd_pep_subs_flag(n.id);
	ELSE
		SELECT COALESCE(array_agg(s.jid ORDER BY s.jid), '{}')
		  INTO subscribers FROM pubsub_subscriptions s
		 WHERE s.node_id = n.id;
		DELETE FROM pubsub_nodes x WHERE x.id = n.id;
	END IF;
	status := 'ok'; RETURN NEXT;
END $$;

-- xmppd_pep_configure (007) with subscribers.
DROP FUNCTION xmppd_pep_configure(text, text, text, boolean, text[], text[],
				  int, int, bigint);
CREATE FUNCTION xmppd_pep_configure(p_user text, p_domain text,
		p_node text, p_create boolean, p_cfg text[], p_groups text[],
		p_max_nodes int, p_max_items int, p_max_bytes bigint DEFAULT NULL)
RETURNS TABLE (status text, trimmed text[], config text[],
	       roster_groups text[], subscribers text[])
LANGUAGE plpgsql AS $$
DECLARE
	acc bigint := xmppd_account_id(p_user, p_domain);
	svc text := p_user || '@' || p_domain;
	n pubsub_nodes%ROWTYPE;
	old_bytes bigint := 0;
	c pubsub_nodes%ROWTYPE;
BEGIN
	trimmed := '{}';
	IF acc IS NULL THEN
		status := 'no-account'; RETURN NEXT; RETURN;
	END IF;
	PERFORM 1 FROM accounts a WHERE a.id = acc FOR UPDATE;
	SELECT * INTO n FROM pubsub_nodes x
	 WHERE x.service = svc AND x.node = p_node FOR UPDATE;
	IF FOUND AND p_create THEN
		status := 'exists'; RETURN NEXT; RETURN;
	ELSIF NOT FOUND AND NOT p_create THEN
		status := 'no-node'; RETURN NEXT; RETURN;
	ELSIF NOT FOUND THEN
		IF (SELECT count(*) FROM pubsub_nodes x
		    WHERE x.account_id = acc) >= p_max_nodes THEN
			status := 'max-nodes'; RETURN NEXT; RETURN;
		END IF;
		c := xmppd_pep_apply(NULL::pubsub_nodes, p_cfg, p_groups);
		c.node := p_node;
	ELSE
		old_bytes := xmppd_pep_node_bytes(n);
		c := xmppd_pep_apply(n, p_cfg, p_groups);
	END IF;
	IF p_max_bytes IS NOT NULL AND xmppd_pep_account_bytes(acc) -
	   old_bytes + xmppd_pep_node_bytes(c) > p_max_bytes THEN
		status := 'account-bytes'; RETURN NEXT; RETURN;
	END IF;
	IF n.id IS NULL THEN
		INSERT INTO pubsub_nodes (service, account_id, node, max_items)
		VALUES (svc, acc, p_node, 1) RETURNING * INTO n;
	END IF;
	n := xmppd_pep_apply(n, p_cfg, p_groups);
	UPDATE pubsub_nodes x SET access_model = n.access_model,
	       max_items = n.max_items, persist_items = n.persist_items,
	       send_last = n.send_last, notify_retract = n.notify_retract,
	       notify_delete = n.notify_delete,
	       notify_config = n.notify_config,
	       deliver_notifications = n.deliver_notifications,
	       deliver_payloads = n.deliver_payloads,
	       notification_type = n.notification_type, title = n.title,
	       type = n.type, itemreply = n.itemreply,
	       roster_groups = n.roster_groups
	 WHERE x.id = n.id;
	trimmed := xmppd_pep_trim(n, p_max_items);
	status := 'ok'; config := xmppd_pep_config(n);
	roster_groups := n.roster_groups;
	subscribers := xmppd_pep_subs_flag(n.id);
	RETURN NEXT;
END $$;

-- Items with XEP-0059 RSM (XEP-0060 section 6.5.4; worker/pep.c): the
-- set is what xmppd_pep_items reads (p_ids, the newest p_last), newest
-- first; the status row carries its size (total).  After p_after: the
-- items older than it; before p_before: the newer ones next to it;
-- p_before '': the oldest (the last page); neither: the newest.  At
-- most p_max of them (0: none, the count only), and of those the ones
-- nearest the page's start whose ids and payloads (16 bytes of markup
-- each) fit p_max_bytes, at least one; rows newest first with their
-- place in the set (pos, 0 = the newest: <first index/>).  status
-- 'rsm-no-item': p_after / p_before is not in the set.
CREATE FUNCTION xmppd_pep_items_rsm(p_user text, p_domain text,
		p_node text, p_jid text, p_ids text[], p_last int,
		p_max_bytes bigint, p_max int, p_after text, p_before text)
RETURNS TABLE (status text, config text[], item_id text, payload text,
	       total bigint, pos bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
	n pubsub_nodes%ROWTYPE;
	pivot bigint;
	back boolean := p_before IS NOT NULL;
BEGIN
	IF xmppd_account_id(p_user, p_domain) IS NULL THEN
		status := 'no-account'; RETURN NEXT; RETURN;
	END IF;
	SELECT * INTO n FROM pubsub_nodes x
	 WHERE x.service = p_user || '@' || p_domain AND x.node = p_node;
	IF NOT FOUND THEN
		status := 'no-node'; RETURN NEXT; RETURN;
	END IF;
	status := COALESCE(xmppd_pep_refusal(n, p_jid), 'ok');
	IF status <> 'ok' THEN
		RETURN NEXT; RETURN;
	END IF;
	SELECT count(*) INTO total FROM (SELECT 1 FROM pubsub_items i
	 WHERE i.node_id = n.id AND (p_ids IS NULL OR i.item_id = ANY (p_ids))
	 ORDER BY i.seq DESC LIMIT p_last) c;
	IF p_after IS NOT NULL OR p_before <> '' THEN
		SELECT s.seq INTO pivot FROM (SELECT i.seq, i.item_id
		  FROM pubsub_items i WHERE i.node_id = n.id AND
		       (p_ids IS NULL OR i.item_id = ANY (p_ids))
		 ORDER BY i.seq DESC LIMIT p_last) s
		 WHERE s.item_id = COALESCE(p_after, p_before);
		IF NOT FOUND THEN
			status := 'rsm-no-item'; total := NULL;
			RETURN NEXT; RETURN;
		END IF;
	END IF;
	config := xmppd_pep_config(n);
	RETURN NEXT;
	RETURN QUERY WITH s AS (SELECT i.seq, i.item_id, i.payload,
		       row_number() OVER (ORDER BY i.seq DESC) - 1 AS at
		  FROM pubsub_items i WHERE i.node_id = n.id AND
		       (p_ids IS NULL OR i.item_id = ANY (p_ids))
		 ORDER BY i.seq DESC LIMIT p_last),
	pg AS (SELECT s.seq, s.item_id, s.payload, s.at,
		      row_number() OVER w AS k,
		      sum(xmppd_pep_item_bytes(s.item_id, s.payload) + 16)
			OVER w AS run
		 FROM s
		WHERE (p_after IS NULL OR s.seq < pivot) AND
		      (p_before IS NULL OR p_before = '' OR s.seq > pivot)
		WINDOW w AS (ORDER BY CASE WHEN back THEN s.seq ELSE -s.seq END)
		ORDER BY CASE WHEN back THEN s.seq ELSE -s.seq END
		LIMIT p_max)
	SELECT NULL::text, NULL::text[], pg.item_id, pg.payload, NULL::bigint,
	       pg.at
	  FROM pg WHERE pg.k = 1 OR p_max_bytes IS NULL OR pg.run <= p_max_bytes
	 ORDER BY pg.seq DESC;
END $$;

INSERT INTO schema_version (version) VALUES (15);

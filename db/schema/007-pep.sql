-- 007-pep.sql - schema version 7: XEP-0060 publish-subscribe nodes as
-- XEP-0163 personal eventing (PEP) uses them (worker/pep.c,
-- worker/pubsub.c).  A node belongs to a service: an account's bare JID
-- (account_id set) or, later, a pubsub.DOMAIN service (account_id NULL).
-- Every table cascades from accounts, so an account's nodes, items,
-- affiliations and subscriptions go with it.
--
-- Each mutation is one xmppd_pep_* function that locks the node row
-- (FOR UPDATE) or the account's row when it may create a node, so
-- workers serialize in the database, as xmppd_sub does for rosters.
-- Node configuration crosses the C boundary as a text[] in the order of
-- enum pubsub_field (worker/pubsub_form.h):
--   1 access_model  2 max_items ('max' or an integer)  3 persist_items
--   4 send_last_published_item  5 notify_retract  6 notify_delete
--   7 notify_config  8 deliver_notifications  9 deliver_payloads
--   10 notification_type  11 title  12 type  13 itemreply
-- with NULL for a field not given; booleans as 'true'/'false'.  The
-- roster groups (pubsub#roster_groups_allowed) come as their own text[].

CREATE TABLE pubsub_nodes (
	id bigserial PRIMARY KEY,
	service text NOT NULL,          -- 'user@domain'; 'pubsub.domain' later
	account_id bigint REFERENCES accounts ON DELETE CASCADE,
	node text NOT NULL,
	access_model text NOT NULL DEFAULT 'presence'
		CHECK (access_model IN ('open', 'presence', 'roster',
					'whitelist')),
	max_items int CHECK (max_items > 0),    -- NULL: 'max'
	persist_items boolean NOT NULL DEFAULT true,
	send_last text NOT NULL DEFAULT 'on_sub_and_presence'
		CHECK (send_last IN ('never', 'on_sub',
				     'on_sub_and_presence')),
	notify_retract boolean NOT NULL DEFAULT false,
	notify_delete boolean NOT NULL DEFAULT false,
	notify_config boolean NOT NULL DEFAULT false,
	deliver_notifications boolean NOT NULL DEFAULT true,
	deliver_payloads boolean NOT NULL DEFAULT true,
	notification_type text NOT NULL DEFAULT 'headline'
		CHECK (notification_type IN ('headline', 'normal')),
	title text NOT NULL DEFAULT '',
	type text NOT NULL DEFAULT '',
	itemreply text NOT NULL DEFAULT 'none'
		CHECK (itemreply IN ('none', 'owner', 'publisher')),
	roster_groups text[] NOT NULL DEFAULT '{}',
	item_bytes bigint NOT NULL DEFAULT 0,   -- sum of xmppd_pep_item_bytes
	created_at timestamptz NOT NULL DEFAULT now(),
	UNIQUE (service, node)
);
CREATE INDEX pubsub_nodes_account ON pubsub_nodes (account_id);

-- Items, oldest first by seq (the order of retrieval and of trimming).
CREATE TABLE pubsub_items (
	node_id bigint NOT NULL REFERENCES pubsub_nodes ON DELETE CASCADE,
	item_id text NOT NULL,
	seq bigserial,
	publisher text NOT NULL,
	published_at timestamptz NOT NULL DEFAULT now(),
	payload text NOT NULL,          -- the one child, serialized
	PRIMARY KEY (node_id, item_id)
);
CREATE INDEX pubsub_items_seq ON pubsub_items (node_id, seq);

CREATE TABLE pubsub_affiliations (
	node_id bigint NOT NULL REFERENCES pubsub_nodes ON DELETE CASCADE,
	jid text NOT NULL,
	affiliation text NOT NULL
		CHECK (affiliation IN ('member', 'outcast', 'publisher')),
	PRIMARY KEY (node_id, jid)
);

CREATE TABLE pubsub_subscriptions (
	node_id bigint NOT NULL REFERENCES pubsub_nodes ON DELETE CASCADE,
	jid text NOT NULL,
	subid text NOT NULL,
	PRIMARY KEY (node_id, jid)
);

-- What one item costs the account's quota (pep.max_account_bytes): its
-- id and its payload.
CREATE FUNCTION xmppd_pep_item_bytes(p_item text, p_payload text)
RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
	SELECT octet_length(p_item)::bigint + octet_length(p_payload)
$$;

-- What a node itself costs the quota: its name, title, type, groups.
CREATE FUNCTION xmppd_pep_node_bytes(n pubsub_nodes) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
	SELECT COALESCE(octet_length(n.node), 0)::bigint +
	       COALESCE(octet_length(n.title), 0) +
	       COALESCE(octet_length(n.type), 0) +
	       COALESCE(octet_length(array_to_string(n.roster_groups, '')), 0)
$$;

-- All an account's PEP storage counts: nodes and their items.
CREATE FUNCTION xmppd_pep_account_bytes(acc bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
	SELECT COALESCE(sum(x.item_bytes + xmppd_pep_node_bytes(x)), 0)::bigint
	  FROM pubsub_nodes x WHERE x.account_id = acc
$$;

-- A node's configuration as the text[] described above.
CREATE FUNCTION xmppd_pep_config(n pubsub_nodes) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
	SELECT ARRAY[n.access_model, COALESCE(n.max_items::text, 'max'),
		     n.persist_items::text, n.send_last,
		     n.notify_retract::text, n.notify_delete::text,
		     n.notify_config::text, n.deliver_notifications::text,
		     n.deliver_payloads::text, n.notification_type, n.title,
		     n.type, n.itemreply]
$$;

-- n with the fields given in c (and groups g unless NULL) set.
CREATE FUNCTION xmppd_pep_apply(n pubsub_nodes, c text[], g text[])
RETURNS pubsub_nodes LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	IF c[1] IS NOT NULL THEN n.access_model := c[1]; END IF;
	IF c[2] IS NOT NULL THEN
		n.max_items := CASE WHEN c[2] = 'max' THEN NULL
				    ELSE c[2]::int END;
	END IF;
	IF c[3] IS NOT NULL THEN n.persist_items := c[3]::boolean; END IF;
	IF c[4] IS NOT NULL THEN n.send_last := c[4]; END IF;
	IF c[5] IS NOT NULL THEN n.notify_retract := c[5]::boolean; END IF;
	IF c[6] IS NOT NULL THEN n.notify_delete := c[6]::boolean; END IF;
	IF c[7] IS NOT NULL THEN n.notify_config := c[7]::boolean; END IF;
	IF c[8] IS NOT NULL THEN
		n.deliver_notifications := c[8]::boolean;
	END IF;
	IF c[9] IS NOT NULL THEN n.deliver_payloads := c[9]::boolean; END IF;
	IF c[10] IS NOT NULL THEN n.notification_type := c[10]; END IF;
	IF c[11] IS NOT NULL THEN n.title := c[11]; END IF;
	IF c[12] IS NOT NULL THEN n.type := c[12]; END IF;
	IF c[13] IS NOT NULL THEN n.itemreply := c[13]; END IF;
	IF g IS NOT NULL THEN n.roster_groups := g; END IF;
	RETURN n;
END $$;

-- The first field of c (and g) that n does not have (XEP-0060 section
-- 7.1.5 preconditions), or NULL when all match.  'max' and the integer
-- p_max are the same max_items; groups compare as sets.
CREATE FUNCTION xmppd_pep_mismatch(n pubsub_nodes, c text[], g text[],
				   p_max int)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	names text[] := ARRAY['access_model', 'max_items', 'persist_items',
		'send_last_published_item', 'notify_retract', 'notify_delete',
		'notify_config', 'deliver_notifications', 'deliver_payloads',
		'notification_type', 'title', 'type', 'itemreply'];
	have text[] := xmppd_pep_config(n);
BEGIN
	FOR i IN 1 .. 13 LOOP
		CONTINUE WHEN c[i] IS NULL;
		IF i = 2 THEN
			IF COALESCE(n.max_items, p_max) <>
			   (CASE WHEN c[2] = 'max' THEN p_max
				 ELSE c[2]::int END) THEN
				RETURN names[i];
			END IF;
		ELSIF c[i] <> have[i] THEN
			RETURN names[i];
		END IF;
	END LOOP;
	IF g IS NOT NULL AND NOT (g @> n.roster_groups AND
				  n.roster_groups @> g) THEN
		RETURN 'roster_groups_allowed';
	END IF;
	RETURN NULL;
END $$;

-- Drop the oldest items of node n beyond its max_items (p_max for
-- 'max'); the ids dropped, oldest first.
CREATE FUNCTION xmppd_pep_trim(n pubsub_nodes, p_max int) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
	gone text[];
BEGIN
	WITH d AS (DELETE FROM pubsub_items i WHERE i.node_id = n.id AND
		   i.seq <= (SELECT k.seq FROM pubsub_items k
			     WHERE k.node_id = n.id ORDER BY k.seq DESC
			     OFFSET COALESCE(n.max_items, p_max) LIMIT 1)
		   RETURNING i.item_id, i.seq,
			     xmppd_pep_item_bytes(i.item_id, i.payload) AS b)
	SELECT array_agg(d.item_id ORDER BY d.seq), COALESCE(sum(d.b), 0)
	  INTO gone, n.item_bytes FROM d;
	IF gone IS NOT NULL THEN
		UPDATE pubsub_nodes SET item_bytes = item_bytes - n.item_bytes
		 WHERE id = n.id;
	END IF;
	RETURN COALESCE(gone, '{}');
END $$;

-- Whether p_jid (bare) may read node n of account acc: NULL when it may,
-- else the refusal (XEP-0060 section 6.5.9): 'outcast', 'presence',
-- 'roster', 'whitelist'.  The owner always may.
CREATE FUNCTION xmppd_pep_refusal(n pubsub_nodes, p_jid text)
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
	aff text;
	r roster_items%ROWTYPE;
BEGIN
	IF p_jid = n.service THEN
		RETURN NULL;
	END IF;
	SELECT a.affiliation INTO aff FROM pubsub_affiliations a
	 WHERE a.node_id = n.id AND a.jid = p_jid;
	IF aff = 'outcast' THEN
		RETURN 'outcast';
	END IF;
	IF n.access_model = 'open' THEN
		RETURN NULL;
	END IF;
	IF n.access_model = 'whitelist' THEN
		RETURN CASE WHEN aff IN ('member', 'publisher') THEN NULL
			    ELSE 'whitelist' END;
	END IF;
	SELECT * INTO r FROM roster_items i
	 WHERE i.account_id = n.account_id AND i.contact = p_jid AND
	       NOT i.removed AND i.subscription IN ('from', 'both');
	IF NOT FOUND THEN
		RETURN n.access_model;
	END IF;
	IF n.access_model = 'roster' AND NOT (r.groups && n.roster_groups) THEN
		RETURN 'roster';
	END IF;
	RETURN NULL;
END $$;

-- Publish (XEP-0060 section 7.1): lock the account's row (the quota and
-- the node count are per account: publishers on other workers wait),
-- lock or auto-create the node, check the preconditions, upsert the
-- item, trim.  status: 'ok', 'no-account', 'precondition' (detail: the
-- field), 'max-nodes', 'account-bytes' (nothing stored, not even an
-- auto-created node).
-- config: the node's configuration after the publish (for notifying).
CREATE FUNCTION xmppd_pep_publish(p_user text, p_domain text, p_node text,
		p_item text, p_payload text, p_publisher text, p_pre text[],
		p_groups text[], p_max_nodes int, p_max_items int,
		p_max_bytes bigint)
RETURNS TABLE (status text, detail text, created boolean, trimmed text[],
	       config text[], roster_groups text[])
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
	RETURN NEXT;
END $$;

-- Retract one item, purge all, or delete the node (p_op 'retract',
-- 'purge', 'delete').  status: 'ok', 'no-account', 'no-node', 'no-item'.
CREATE FUNCTION xmppd_pep_remove(p_user text, p_domain text, p_node text,
				 p_op text, p_item text)
RETURNS TABLE (status text, config text[], roster_groups text[])
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
		DELETE FROM pubsub_nodes x WHERE x.id = n.id;
	END IF;
	status := 'ok'; RETURN NEXT;
END $$;

-- Create (p_create) or configure a node.  status: 'ok', 'no-account',
-- 'exists', 'no-node', 'max-nodes', 'account-bytes' (the node's name,
-- title, type and groups would take the account past p_max_bytes; NULL:
-- not checked).  Configuring trims to a lowered max_items.
CREATE FUNCTION xmppd_pep_configure(p_user text, p_domain text,
		p_node text, p_create boolean, p_cfg text[], p_groups text[],
		p_max_nodes int, p_max_items int, p_max_bytes bigint DEFAULT NULL)
RETURNS TABLE (status text, trimmed text[], config text[],
	       roster_groups text[])
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
	RETURN NEXT;
END $$;

-- Items of a node as p_jid may read them (section 6.5): the first row
-- carries the status ('ok', 'no-account', 'no-node' or a refusal of
-- xmppd_pep_refusal) and, for 'ok', the node's configuration; the items
-- follow oldest first (item_id NULL on the status row).  p_ids: only
-- those (NULL: all); p_last: the newest p_last of them; p_max_bytes: and
-- of those the newest whose ids and payloads (16 bytes of markup each)
-- fit in it, but always the newest one (XEP-0060 section 6.5.4 lets a
-- service return some items; NULL: no bound).
CREATE FUNCTION xmppd_pep_items(p_user text, p_domain text, p_node text,
		p_jid text, p_ids text[], p_last int,
		p_max_bytes bigint DEFAULT NULL)
RETURNS TABLE (status text, config text[], item_id text, payload text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
	n pubsub_nodes%ROWTYPE;
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
	config := xmppd_pep_config(n);
	RETURN NEXT;
	IF status <> 'ok' THEN
		RETURN;
	END IF;
	status := NULL; config := NULL;
	RETURN QUERY SELECT NULL::text, NULL::text[], l.item_id, l.payload
	  FROM (SELECT i.item_id, i.payload, i.seq,
		       row_number() OVER w AS k,
		       sum(xmppd_pep_item_bytes(i.item_id, i.payload) + 16)
			 OVER w AS run
		  FROM pubsub_items i
		 WHERE i.node_id = n.id AND
		       (p_ids IS NULL OR i.item_id = ANY (p_ids))
		WINDOW w AS (ORDER BY i.seq DESC)
		 ORDER BY i.seq DESC LIMIT p_last) l
	 WHERE l.k = 1 OR p_max_bytes IS NULL OR l.run <= p_max_bytes
	 ORDER BY l.seq;
END $$;

INSERT INTO schema_version (version) VALUES (7);

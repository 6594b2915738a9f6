-- 013-pep-fixes.sql - schema version 13: bounds on what PEP reads and
-- stores (outside review of issue 13, F3 F6 F9 F10).
--
-- Last items (XEP-0163 section 4.3.4) are read in two steps: the names
-- of the nodes that could send one (no payloads), then, for the names the
-- session's +notify set holds, the items themselves in pages of at most
-- p_max_bytes (worker/pep_notify.c writes a page, waits for the output
-- to drain, asks for the next one after the last (service, node) sent).

DROP FUNCTION xmppd_pep_last_items(text, text, text);

-- The nodes whose last item p_user@p_domain would get (the candidates of
-- xmppd_pep_last_items below), without their items: the node names only,
-- each once.
CREATE FUNCTION xmppd_pep_last_candidates(p_user text, p_domain text,
		p_owner text)
RETURNS TABLE (service text, node text)
LANGUAGE sql STABLE AS $$
	SELECT n.service, n.node
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
	 WHERE n.send_last = 'on_sub_and_presence' AND
	       n.deliver_notifications AND
	       EXISTS (SELECT 1 FROM pubsub_items x WHERE x.node_id = n.id) AND
	       xmppd_pep_refusal(n, p_user || '@' || p_domain) IS NULL
$$;

CREATE FUNCTION xmppd_pep_last_nodes(p_user text, p_domain text,
		p_owner text)
RETURNS SETOF text LANGUAGE sql STABLE AS $$
	SELECT DISTINCT c.node
	  FROM xmppd_pep_last_candidates(p_user, p_domain, p_owner) c
$$;

-- The newest item of every node named in p_nodes that p_user@p_domain
-- may read and whose send_last_published_item is on_sub_and_presence:
-- its own account's and those of the accounts that have it from/both
-- and did not block it (only p_owner's when p_owner is given: the owner
-- who just granted a subscription).  Ordered by (service, node), after
-- (p_after_service, p_after_node) when given; rows while their ids and
-- payloads fit p_max_bytes (NULL: all), always at least one.
-- stamp: XEP-0082 UTC, for <delay/>; more: rows are left after these.
CREATE FUNCTION xmppd_pep_last_items(p_user text, p_domain text,
		p_owner text, p_nodes text[], p_max_bytes bigint,
		p_after_service text, p_after_node text)
RETURNS TABLE (service text, node text, item_id text, payload text,
	       stamp text, more boolean)
LANGUAGE sql STABLE AS $$
	SELECT r.service, r.node, r.item_id, r.payload,
	       to_char(r.published_at AT TIME ZONE 'UTC',
		       'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
	       r.total > count(*) OVER ()
	  FROM (SELECT c.service, c.node, l.item_id, l.payload,
		       l.published_at,
		       sum(xmppd_pep_item_bytes(l.item_id, l.payload)) OVER w
			   AS run,
		       row_number() OVER w AS rn,
		       count(*) OVER () AS total
		  FROM xmppd_pep_last_candidates(p_user, p_domain, p_owner) c
		  JOIN pubsub_nodes n ON n.service = c.service AND
					 n.node = c.node
		 CROSS JOIN LATERAL (SELECT x.item_id, x.payload,
					    x.published_at
				       FROM pubsub_items x
				      WHERE x.node_id = n.id
				      ORDER BY x.seq DESC LIMIT 1) l
		 WHERE c.node = ANY (p_nodes) AND
		       (p_after_service IS NULL OR
			(c.service, c.node) > (p_after_service, p_after_node))
		WINDOW w AS (ORDER BY c.service, c.node
			     ROWS UNBOUNDED PRECEDING)) r
	 WHERE r.rn = 1 OR p_max_bytes IS NULL OR r.run <= p_max_bytes
	 ORDER BY r.service, r.node
$$;

-- The owners' last items (xmppd_pep_last_items: from/both, not blocked,
-- the access model, on_sub_and_presence) for remote rows (012): those
-- with caps p_algo/p_ver (NULL: any), of the account p_user@p_domain
-- (NULL: any), with full JID p_full / bare JID p_bare (NULL: any); only
-- the nodes the row's verified caps list with +notify (their names are
-- in caps_cache), at most p_max_bytes of ids and payloads per JID
-- (pep.max_last_items_bytes; more: some were left out).  The caller
-- checks each row's caps (NODE+notify) in shared memory again.
CREATE FUNCTION xmppd_pep_remote_last(p_algo text, p_ver text,
		p_user text, p_domain text, p_full text, p_bare text,
		p_max_bytes bigint)
RETURNS TABLE (full_jid text, caps_algo text, caps_ver text,
	       service text, node text, item_id text, payload text,
	       stamp text, more boolean)
LANGUAGE sql STABLE AS $$
	SELECT r.full_jid, r.caps_algo, r.caps_ver, l.service, l.node,
	       l.item_id, l.payload, l.stamp, l.more
	  FROM pep_remote_presence r
	  JOIN accounts a ON a.id = r.account_id
	  JOIN caps_cache k ON k.algo = r.caps_algo AND k.ver = r.caps_ver
	 CROSS JOIN LATERAL xmppd_pep_last_items(
		split_part(r.bare_jid, '@', 1), split_part(r.bare_jid, '@', 2),
		a.username || '@' || a.domain, k.notify, p_max_bytes,
		NULL, NULL) l
	 WHERE (p_algo IS NULL OR (r.caps_algo = p_algo AND
				   r.caps_ver = p_ver)) AND
	       (p_user IS NULL OR (a.username = p_user AND
				   a.domain = p_domain)) AND
	       (p_full IS NULL OR r.full_jid = p_full) AND
	       (p_bare IS NULL OR r.bare_jid = p_bare) AND
	       position('@' in r.bare_jid) > 0
	 ORDER BY r.full_jid, l.service, l.node
$$;

-- Affiliations count in the account's quota (their JIDs' bytes).
CREATE OR REPLACE FUNCTION xmppd_pep_account_bytes(acc bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
	SELECT COALESCE(sum(x.item_bytes + xmppd_pep_node_bytes(x) +
			    COALESCE((SELECT sum(octet_length(a.jid))
					FROM pubsub_affiliations a
				       WHERE a.node_id = x.id), 0)), 0)::bigint
	  FROM pubsub_nodes x WHERE x.account_id = acc
$$;

-- The owner sets affiliations (XEP-0060 section 8.9.2): 'none' removes.
-- status: 'ok', 'no-node', 'max-affiliations' (the node would hold more
-- than p_max_affs), 'account-bytes' (the account's PEP storage would pass
-- p_max_bytes); on a refusal nothing changed.  A change that does not
-- grow what is over a bound (removals after a bound was lowered) passes.
CREATE FUNCTION xmppd_pep_affs_set(p_user text, p_domain text,
		p_node text, p_jids text[], p_affs text[], p_max_affs int,
		p_max_bytes bigint)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	acc bigint := xmppd_account_id(p_user, p_domain);
	nid bigint;
	n0 bigint; n1 bigint; b0 bigint; b1 bigint;
BEGIN
	IF acc IS NULL THEN
		RETURN 'no-node';
	END IF;
	PERFORM 1 FROM accounts a WHERE a.id = acc FOR UPDATE;
	SELECT x.id INTO nid FROM pubsub_nodes x
	 WHERE x.service = p_user || '@' || p_domain AND x.node = p_node
	   FOR UPDATE;
	IF NOT FOUND THEN
		RETURN 'no-node';
	END IF;
	SELECT count(*) INTO n0 FROM pubsub_affiliations a
	 WHERE a.node_id = nid;
	b0 := xmppd_pep_account_bytes(acc);
	BEGIN
		DELETE FROM pubsub_affiliations a
		 USING unnest(p_jids, p_affs) AS u(j, f)
		 WHERE a.node_id = nid AND a.jid = u.j AND u.f = 'none';
		INSERT INTO pubsub_affiliations (node_id, jid, affiliation)
		SELECT nid, u.j, u.f FROM unnest(p_jids, p_affs) AS u(j, f)
		 WHERE u.f <> 'none'
		ON CONFLICT (node_id, jid) DO UPDATE
		   SET affiliation = EXCLUDED.affiliation;
		SELECT count(*) INTO n1 FROM pubsub_affiliations a
		 WHERE a.node_id = nid;
		IF n1 > p_max_affs AND n1 > n0 THEN
			RAISE EXCEPTION 'max-affiliations';
		END IF;
		b1 := xmppd_pep_account_bytes(acc);
		IF b1 > p_max_bytes AND b1 > b0 THEN
			RAISE EXCEPTION 'account-bytes';
		END IF;
	EXCEPTION WHEN raise_exception THEN
		RETURN SQLERRM;         -- the block's changes are undone
	END;
	RETURN 'ok';
END $$;

-- XEP-0402 compatibility store (worker/pep_compat.c): the legacy private
-- XML row goes, the items of p_ids/p_payloads are published, those of
-- p_gone retracted -- all or nothing: the first status other than 'ok'
-- and 'no-item' undoes everything and is the one row returned (kind -1).
CREATE TYPE xmppd_pep_compat_row AS (kind int, item_id text, status text,
	trimmed text[], config text[], roster_groups text[], payload text);

CREATE FUNCTION xmppd_pep_compat_store(p_user text, p_domain text,
		p_legacy text, p_node text, p_ids text[], p_payloads text[],
		p_publisher text, p_options text[], p_max_nodes int,
		p_max_items int, p_max_bytes bigint, p_gone text[])
RETURNS SETOF xmppd_pep_compat_row LANGUAGE plpgsql AS $$
DECLARE
	rows xmppd_pep_compat_row[];
	bad text;
BEGIN
	BEGIN
		DELETE FROM private_storage
		 WHERE account_id = xmppd_account_id(p_user, p_domain) AND
		       namespace = p_legacy;
		SELECT array_agg(ROW(t.kind, t.id, t.status, t.trimmed,
				     t.config, t.roster_groups,
				     t.payload)::xmppd_pep_compat_row
				 ORDER BY t.kind, t.ord)
		  INTO rows
		  FROM (SELECT 0 AS kind, u.ord, u.id, r.status, r.trimmed,
			       r.config, r.roster_groups, u.payload
			  FROM unnest(p_ids, p_payloads) WITH ORDINALITY
			       AS u(id, payload, ord),
			       LATERAL xmppd_pep_publish(p_user, p_domain,
				       p_node, u.id, u.payload, p_publisher,
				       p_options, NULL::text[], p_max_nodes,
				       p_max_items, p_max_bytes) r
			UNION ALL
			SELECT 1, u.ord, u.id, r.status, NULL, r.config,
			       r.roster_groups, NULL
			  FROM unnest(p_gone) WITH ORDINALITY AS u(id, ord),
			       LATERAL xmppd_pep_remove(p_user, p_domain,
				       p_node, 'retract', u.id) r) t;
		SELECT x.status INTO bad FROM unnest(rows) x
		 WHERE x.status NOT IN ('ok', 'no-item') LIMIT 1;
		IF bad IS NOT NULL THEN
			RAISE EXCEPTION '%', bad;
		END IF;
	EXCEPTION WHEN raise_exception THEN
		RETURN NEXT ROW(-1, NULL, SQLERRM, NULL, NULL, NULL,
				NULL)::xmppd_pep_compat_row;
		RETURN;
	END;
	RETURN QUERY SELECT * FROM unnest(rows);
END $$;

-- An account deleted takes its JID's affiliations on other accounts'
-- nodes with it: whoever registers the name again starts with none.
CREATE INDEX pubsub_affiliations_jid ON pubsub_affiliations (jid);

CREATE FUNCTION xmppd_pep_account_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	DELETE FROM pubsub_affiliations
	 WHERE jid = OLD.username || '@' || OLD.domain;
	RETURN OLD;
END $$;

CREATE TRIGGER accounts_pep_affiliations AFTER DELETE ON accounts
	FOR EACH ROW EXECUTE FUNCTION xmppd_pep_account_deleted();

INSERT INTO schema_version (version) VALUES (13);

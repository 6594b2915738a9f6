-- 005-resubscribe.sql - schema version 5: re-subscribing after a roster
-- removal (RFC 6121 sections 3.1.5 and 3.4).  Once the account had
-- removed a contact, the contact's new subscribe was delivered and kept
-- pending, but the account's approving subscribed reset the pending
-- request (with the rest of the removed item) before looking at it: it
-- was stored as a pre-approval and never routed, and the contact stayed
-- pending forever.  xmppd_sub is the function of version 3 with only
-- that reset changed.  (Version 4 is another change made in parallel.)

CREATE OR REPLACE FUNCTION xmppd_sub(p_user text, p_domain text, p_contact text,
			  p_dir text, p_type text, p_stanza text, p_max int)
RETURNS TABLE (route boolean, deliver boolean, reply text, push boolean,
	       granted boolean, revoked boolean, subscription text,
	       ask_out boolean, name text, groups text[], ver bigint,
	       approved boolean, refused boolean)
LANGUAGE plpgsql AS $$
DECLARE
	acc bigint := xmppd_account_id(p_user, p_domain);
	r roster_items%ROWTYPE;
	o roster_items%ROWTYPE;
	exists_row boolean;
BEGIN
	IF acc IS NULL THEN
		RETURN;
	END IF;
	SELECT * INTO r FROM roster_items i
	 WHERE i.account_id = acc AND i.contact = p_contact FOR UPDATE;
	exists_row := FOUND;
	IF NOT exists_row THEN
		r.account_id := acc; r.contact := p_contact; r.groups := '{}';
		r.subscription := 'none'; r.ask_out := false;
		r.pending_in := false; r.approved := false; r.listed := false;
		r.removed := false; r.ver := 0;
	END IF;
	-- A removed item keeps its tombstone (removed, not listed) until
	-- the account lists it again, so roster versioning still pushes
	-- the removal to a client that has not seen it.
	o := r;
	route := false; deliver := false; reply := NULL;
	granted := false; revoked := false; refused := false;

	IF r.removed AND p_dir = 'out' THEN
		-- The account adds the contact again: a fresh item.  Roster
		-- remove cleared any request from before the removal, so a
		-- pending one came after it and stays pending: approving it
		-- is a subscribed that is routed (section 3.1.5), not a
		-- pre-approval (section 3.4).
		r.name := NULL; r.groups := '{}'; r.subscription := 'none';
		r.ask_out := false; r.approved := false;
		o := r;
	END IF;

	IF p_dir = 'out' AND p_type = 'subscribe' THEN
		route := true;
		r.listed := true;
		IF r.subscription IN ('none', 'from') THEN
			r.ask_out := true;
		END IF;
	ELSIF p_dir = 'out' AND p_type = 'unsubscribe' THEN
		route := true;
		r.ask_out := false;
		IF r.subscription = 'to' THEN r.subscription := 'none';
		ELSIF r.subscription = 'both' THEN r.subscription := 'from';
		END IF;
	ELSIF p_dir = 'out' AND p_type = 'subscribed' THEN
		IF r.pending_in THEN
			route := true; granted := true;
			r.pending_in := false; r.pending_stanza := NULL;
			r.listed := true;
			IF r.subscription = 'none' THEN r.subscription := 'from';
			ELSIF r.subscription = 'to' THEN r.subscription := 'both';
			END IF;
		ELSIF r.subscription IN ('none', 'to') THEN
			-- Section 3.4: pre-approval, not routed.
			r.approved := true; r.listed := true;
		END IF;
	ELSIF p_dir = 'out' AND p_type = 'unsubscribed' THEN
		IF r.pending_in THEN
			route := true;
			r.pending_in := false; r.pending_stanza := NULL;
		END IF;
		IF r.subscription IN ('from', 'both') THEN
			route := true; revoked := true;
			r.subscription := CASE r.subscription
				WHEN 'from' THEN 'none' ELSE 'to' END;
		END IF;
		r.approved := false;
	ELSIF p_dir = 'in' AND p_type = 'subscribe' THEN
		IF r.subscription IN ('from', 'both') THEN
			reply := 'subscribed';
		ELSIF r.approved THEN
			reply := 'subscribed';
			r.approved := false;
			r.subscription := CASE r.subscription
				WHEN 'none' THEN 'from' ELSE 'both' END;
		ELSIF NOT r.pending_in THEN
			deliver := true;
			r.pending_in := true; r.pending_stanza := p_stanza;
		ELSE
			deliver := true;    -- a repeated request reaches the user
			r.pending_stanza := p_stanza;
		END IF;
	ELSIF p_dir = 'in' AND p_type = 'unsubscribe' THEN
		IF r.pending_in THEN
			deliver := true;
			r.pending_in := false; r.pending_stanza := NULL;
		END IF;
		IF r.subscription IN ('from', 'both') THEN
			deliver := true; revoked := true;
			r.subscription := CASE r.subscription
				WHEN 'from' THEN 'none' ELSE 'to' END;
		END IF;
	ELSIF p_dir = 'in' AND p_type = 'subscribed' THEN
		IF r.ask_out THEN
			deliver := true;
			r.ask_out := false;
			r.subscription := CASE r.subscription
				WHEN 'none' THEN 'to' WHEN 'from' THEN 'both'
				ELSE r.subscription END;
		END IF;
	ELSIF p_dir = 'in' AND p_type = 'unsubscribed' THEN
		IF r.ask_out OR r.subscription IN ('to', 'both') THEN
			deliver := true;
			r.ask_out := false;
			r.subscription := CASE r.subscription
				WHEN 'to' THEN 'none' WHEN 'both' THEN 'from'
				ELSE r.subscription END;
		END IF;
	ELSE
		RAISE EXCEPTION 'xmppd_sub: bad direction or type: % %',
			p_dir, p_type;
	END IF;

	-- Section 2.3 limits hold for items the account adds by
	-- subscribing or pre-approving too.
	IF r.listed AND NOT o.listed AND
	   (SELECT count(*) FROM roster_items i WHERE i.account_id = acc
	     AND i.listed AND NOT i.removed) >= p_max THEN
		route := false; deliver := false; reply := NULL;
		granted := false; revoked := false; refused := true;
		push := false;
		subscription := o.subscription; ask_out := o.ask_out;
		name := o.name; groups := o.groups; ver := o.ver;
		approved := o.approved;
		RETURN NEXT;
		RETURN;
	END IF;
	IF r.listed AND r.removed THEN
		r.removed := false;
	END IF;
	push := r.listed AND (r.subscription IS DISTINCT FROM o.subscription
			      OR r.ask_out IS DISTINCT FROM o.ask_out
			      OR r.approved IS DISTINCT FROM o.approved
			      OR r.listed IS DISTINCT FROM o.listed);
	IF push THEN
		r.ver := xmppd_roster_bump(acc);
	END IF;
	IF r IS DISTINCT FROM o OR NOT exists_row THEN
		INSERT INTO roster_items VALUES (r.*)
		ON CONFLICT (account_id, contact) DO UPDATE SET
			name = EXCLUDED.name, groups = EXCLUDED.groups,
			subscription = EXCLUDED.subscription,
			ask_out = EXCLUDED.ask_out,
			pending_in = EXCLUDED.pending_in,
			pending_stanza = EXCLUDED.pending_stanza,
			approved = EXCLUDED.approved, listed = EXCLUDED.listed,
			removed = EXCLUDED.removed, ver = EXCLUDED.ver;
	END IF;
	subscription := r.subscription; ask_out := r.ask_out;
	name := r.name; groups := r.groups; ver := r.ver;
	approved := r.approved;
	RETURN NEXT;
END
$$;

INSERT INTO schema_version (version) VALUES (5);

-- 002-im.sql - schema version 2: RFC 6121 instant messaging and presence
-- state (rosters with their subscription states, pending requests,
-- roster versions), offline messages (XEP-0160), blocking (XEP-0191),
-- vcard-temp (XEP-0054) and private XML storage (XEP-0049).
--
-- Subscription changes run as one statement each (xmppd_sub below), so
-- that two workers changing the same roster item at once serialize on
-- the row lock instead of interleaving on their shared pipelines.

CREATE TABLE roster_versions (
	account_id bigint PRIMARY KEY REFERENCES accounts ON DELETE CASCADE,
	ver bigint NOT NULL DEFAULT 0
);

-- One row per contact the account knows of.  `listed` is false for an
-- inbound request from someone not (yet) in the roster; `removed` keeps a
-- tombstone so that a client with an older roster version gets a push.
CREATE TABLE roster_items (
	account_id bigint NOT NULL REFERENCES accounts ON DELETE CASCADE,
	contact text NOT NULL,
	name text,
	groups text[] NOT NULL DEFAULT '{}',
	subscription text NOT NULL DEFAULT 'none'
		CHECK (subscription IN ('none', 'to', 'from', 'both')),
	ask_out boolean NOT NULL DEFAULT false,
	pending_in boolean NOT NULL DEFAULT false,
	pending_stanza text,
	approved boolean NOT NULL DEFAULT false,
	listed boolean NOT NULL DEFAULT true,
	removed boolean NOT NULL DEFAULT false,
	ver bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (account_id, contact)
);

CREATE TABLE offline_messages (
	id bigserial PRIMARY KEY,
	account_id bigint NOT NULL REFERENCES accounts ON DELETE CASCADE,
	sender text NOT NULL,
	stanza text NOT NULL,
	stored_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX offline_messages_account ON offline_messages (account_id, id);

CREATE TABLE blocklist (
	account_id bigint NOT NULL REFERENCES accounts ON DELETE CASCADE,
	jid text NOT NULL,
	PRIMARY KEY (account_id, jid)
);

CREATE TABLE vcards (
	account_id bigint PRIMARY KEY REFERENCES accounts ON DELETE CASCADE,
	vcard text NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE private_storage (
	account_id bigint NOT NULL REFERENCES accounts ON DELETE CASCADE,
	namespace text NOT NULL,
	element text NOT NULL,
	PRIMARY KEY (account_id, namespace)
);

CREATE FUNCTION xmppd_account_id(p_user text, p_domain text) RETURNS bigint
LANGUAGE sql STABLE AS $$
	SELECT id FROM accounts WHERE username = p_user AND domain = p_domain
$$;

CREATE FUNCTION xmppd_roster_bump(p_account bigint) RETURNS bigint
LANGUAGE sql AS $$
	INSERT INTO roster_versions AS v (account_id, ver) VALUES (p_account, 1)
	ON CONFLICT (account_id) DO UPDATE SET ver = v.ver + 1
	RETURNING ver
$$;

-- The subscription state machine of RFC 6121 section 3 and Appendix A,
-- for one presence stanza of type subscribe, subscribed, unsubscribe or
-- unsubscribed.  p_dir 'out': the account sent it (the user's server,
-- Appendix A.2); 'in': the account receives it (the contact's server,
-- Appendix A.3).  Returns one row, or none when the account does not
-- exist:
--   route    'out': route the stanza to the contact
--   deliver  'in': deliver the stanza to the account's available resources
--   reply    'in': answer the sender with this presence type at once
--   push     the roster item changed: push it (ver is the new version)
--   granted  'out' subscribed that gave the contact a subscription:
--            send the account's current presence to the contact
--   revoked  the contact lost its subscription to the account's presence
--            ('out' unsubscribed, 'in' unsubscribe): send it unavailable
--            from the account's available resources
CREATE FUNCTION xmppd_sub(p_user text, p_domain text, p_contact text,
			  p_dir text, p_type text, p_stanza text)
RETURNS TABLE (route boolean, deliver boolean, reply text, push boolean,
	       granted boolean, revoked boolean, subscription text,
	       ask_out boolean, name text, groups text[], ver bigint)
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
	IF r.removed THEN
		r.removed := false; r.listed := false; r.name := NULL;
		r.groups := '{}'; r.subscription := 'none'; r.ask_out := false;
		r.pending_in := false; r.approved := false;
	END IF;
	o := r;
	route := false; deliver := false; reply := NULL;
	granted := false; revoked := false;

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

	push := r.listed AND (r.subscription IS DISTINCT FROM o.subscription
			      OR r.ask_out IS DISTINCT FROM o.ask_out
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
	RETURN NEXT;
END
$$;

-- Roster set (RFC 6121 section 2.3): add or update a listed item; the
-- subscription state is untouched.  ok is false when a new item would
-- pass p_max listed items.
CREATE FUNCTION xmppd_roster_set(p_user text, p_domain text, p_contact text,
				 p_name text, p_groups text[], p_max int)
RETURNS TABLE (ok boolean, ver bigint, subscription text, ask_out boolean)
LANGUAGE plpgsql AS $$
DECLARE
	acc bigint := xmppd_account_id(p_user, p_domain);
	r roster_items%ROWTYPE;
BEGIN
	IF acc IS NULL THEN
		RETURN;
	END IF;
	SELECT * INTO r FROM roster_items i
	 WHERE i.account_id = acc AND i.contact = p_contact FOR UPDATE;
	IF (NOT FOUND OR r.removed OR NOT r.listed) AND
	   (SELECT count(*) FROM roster_items i WHERE i.account_id = acc
	     AND i.listed AND NOT i.removed) >= p_max THEN
		ok := false;
		RETURN NEXT;
		RETURN;
	END IF;
	IF NOT FOUND OR r.removed THEN
		r.account_id := acc; r.contact := p_contact;
		r.subscription := 'none'; r.ask_out := false;
		r.pending_in := COALESCE(r.pending_in AND NOT r.removed, false);
		r.approved := false;
	END IF;
	r.name := p_name; r.groups := p_groups; r.listed := true;
	r.removed := false;
	r.ver := xmppd_roster_bump(acc);
	INSERT INTO roster_items (account_id, contact, name, groups,
				  subscription, ask_out, pending_in,
				  pending_stanza, approved, listed, removed, ver)
	VALUES (acc, p_contact, r.name, r.groups, r.subscription, r.ask_out,
		r.pending_in, r.pending_stanza, r.approved, true, false, r.ver)
	ON CONFLICT (account_id, contact) DO UPDATE SET
		name = EXCLUDED.name, groups = EXCLUDED.groups,
		subscription = EXCLUDED.subscription,
		ask_out = EXCLUDED.ask_out, approved = EXCLUDED.approved,
		listed = true, removed = false, ver = EXCLUDED.ver;
	ok := true; ver := r.ver; subscription := r.subscription;
	ask_out := r.ask_out;
	RETURN NEXT;
END
$$;

-- Roster remove (RFC 6121 section 2.5): what the account had, so the
-- caller can send unsubscribe (had_to) and unsubscribed (had_from or a
-- pending request) to the contact; the row stays as a tombstone.
CREATE FUNCTION xmppd_roster_remove(p_user text, p_domain text,
				    p_contact text)
RETURNS TABLE (present boolean, had_to boolean, had_from boolean,
	       had_pending_in boolean, ver bigint)
LANGUAGE plpgsql AS $$
DECLARE
	acc bigint := xmppd_account_id(p_user, p_domain);
	r roster_items%ROWTYPE;
BEGIN
	IF acc IS NULL THEN
		RETURN;
	END IF;
	SELECT * INTO r FROM roster_items i
	 WHERE i.account_id = acc AND i.contact = p_contact FOR UPDATE;
	IF NOT FOUND OR r.removed OR NOT r.listed THEN
		present := false;
		RETURN NEXT;
		RETURN;
	END IF;
	present := true;
	had_to := r.subscription IN ('to', 'both') OR r.ask_out;
	had_from := r.subscription IN ('from', 'both');
	had_pending_in := r.pending_in;
	ver := xmppd_roster_bump(acc);
	UPDATE roster_items i SET removed = true, listed = false,
		subscription = 'none', ask_out = false, pending_in = false,
		pending_stanza = NULL, approved = false, name = NULL,
		groups = '{}', ver = xmppd_roster_remove.ver
	 WHERE i.account_id = acc AND i.contact = p_contact;
	RETURN NEXT;
END
$$;

INSERT INTO schema_version (version) VALUES (2);

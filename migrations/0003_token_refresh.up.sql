-- Token lifecycle (issue 4): scheduled refresh of the Meta user token and reconnect alerts.
-- Additive to 0001: a lease, what the tenant was last told, and the narrow lookups the scheduled
-- run needs (tenant ids and one count; never a token, never a ciphertext).

-- The lease: a refresh run takes a row with one conditional UPDATE (a short transaction), then
-- calls Meta with no transaction open, and writes the result only while it still holds the lease.
-- A second run, or a duplicated scheduled event, finds the lease taken and skips the row. A run
-- that dies mid-way leaves the old ciphertext untouched; its lease lapses and the next run retries.
ALTER TABLE credentials
    ADD COLUMN refresh_lease_id uuid,
    ADD COLUMN refresh_lease_until timestamptz,
    -- Which state the tenant was last alerted about (with 0001's reconnect_notified_at): one
    -- MetaReconnectRequired event for 'expiring' and one for 'needs_reconnect' per connection,
    -- however many runs see it. A reconnect (credentials.save) clears reconnect_notified_at.
    ADD COLUMN reconnect_notified_status text
        CHECK (reconnect_notified_status IN ('expiring', 'needs_reconnect'));

CREATE INDEX credentials_data_access_idx ON credentials (data_access_expires_at)
    WHERE status <> 'needs_reconnect' AND data_access_expires_at IS NOT NULL;

-- Has the tenant already been told about `p_status` in this connection's life?
CREATE FUNCTION token_reconnect_notified(c credentials, p_status text) RETURNS boolean
    LANGUAGE sql STABLE SET search_path = pg_catalog, public AS $$
    SELECT c.reconnect_notified_at IS NOT NULL AND (
        c.reconnect_notified_status = p_status
        OR (p_status = 'expiring' AND c.reconnect_notified_status = 'needs_reconnect'))
$$;

-- Does a refresh run have work on this row? The one definition, used both to list the tenants
-- (below) and by the claim itself, so a row another run just handled is not taken again.
--   p_horizon:        expiries before this need action (now + window + lead);
--   p_recheck_before: an 'expiring' row (Meta would not extend it) is retried once per recheck
--                     interval, not every run.
CREATE FUNCTION token_refresh_is_due(c credentials, p_horizon timestamptz,
                                     p_recheck_before timestamptz) RETURNS boolean
    LANGUAGE sql STABLE SET search_path = pg_catalog, public AS $$
    SELECT CASE
        WHEN c.status = 'needs_reconnect' THEN NOT token_reconnect_notified(c, 'needs_reconnect')
        ELSE coalesce(c.expires_at <= p_horizon, false)
             OR coalesce(c.data_access_expires_at <= p_horizon, false)
    END
    AND (c.status <> 'expiring'
         OR c.last_refresh_attempt_at IS NULL
         OR c.last_refresh_attempt_at < p_recheck_before
         OR coalesce(c.expires_at <= now(), false)
         OR coalesce(c.data_access_expires_at <= now(), false)
         OR NOT token_reconnect_notified(c, 'expiring'))
$$;

-- RLS is FORCEd on credentials, so even a SECURITY DEFINER function sees no rows unless its
-- owner may read them. As in 0005, this policy lets exactly the owner (the role running
-- migrations, which owns the functions below) read the table; marketing_app gains nothing.
CREATE POLICY token_refresh_lookup ON credentials FOR SELECT TO CURRENT_USER USING (true);

-- The tenants a scheduled run should visit, most urgent first. Tenant ids only.
CREATE FUNCTION token_refresh_due_tenants(p_horizon timestamptz, p_recheck_before timestamptz,
                                          p_limit integer) RETURNS SETOF text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT c.tenant_id
    FROM credentials c
    WHERE c.name = 'META_USER_LONG_TOKEN'
      AND (c.refresh_lease_until IS NULL OR c.refresh_lease_until < now())
      AND token_refresh_is_due(c, p_horizon, p_recheck_before)
    ORDER BY least(c.expires_at, c.data_access_expires_at) NULLS LAST, c.tenant_id
    LIMIT greatest(p_limit, 0)
$$;

-- The TokensExpiringSoon gauge: connections (not already broken) whose token or data access
-- expires before p_horizon. A count only.
CREATE FUNCTION token_refresh_expiring_count(p_horizon timestamptz) RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT count(*)
    FROM credentials c
    WHERE c.name = 'META_USER_LONG_TOKEN'
      AND c.status <> 'needs_reconnect'
      AND (coalesce(c.expires_at <= p_horizon, false)
           OR coalesce(c.data_access_expires_at <= p_horizon, false))
$$;

REVOKE ALL ON FUNCTION token_refresh_due_tenants(timestamptz, timestamptz, integer),
    token_refresh_expiring_count(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION token_refresh_due_tenants(timestamptz, timestamptz, integer),
    token_refresh_expiring_count(timestamptz) TO marketing_app;
GRANT EXECUTE ON FUNCTION token_reconnect_notified(credentials, text),
    token_refresh_is_due(credentials, timestamptz, timestamptz) TO marketing_app;

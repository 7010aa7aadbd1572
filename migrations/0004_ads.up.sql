-- Ad account sync state, the scheduler's lookup of accounts due for a sync, and the indexes the
-- marketing stats read (issue 5). Additive to 0001.

-- Per-account sync state. last_synced_date (0001) is the newest day stored; these record an
-- interrupted run so the next one resumes exactly there:
--   sync_resume_date   first day of the current window not stored yet (NULL: window complete)
--   report_run_*       an async insights report Meta is still preparing for that window
--   sync_lease_until   one sync per account at a time (duplicate events, overlapping runs)
ALTER TABLE tenant_meta_accounts
    ADD COLUMN sync_resume_date date,
    ADD COLUMN report_run_id text,
    ADD COLUMN report_since date,
    ADD COLUMN report_until date,
    ADD COLUMN report_started_at timestamptz,
    ADD COLUMN sync_lease_until timestamptz,
    ADD COLUMN last_sync_outcome text,
    ADD COLUMN campaigns_synced integer;

-- The scheduled run has no tenant: it asks this function which (tenant, account) pairs are due,
-- then syncs each inside that tenant's transaction. RLS is FORCEd on tenant_meta_accounts, so the
-- owner of the function (the role running migrations) needs a read policy of its own;
-- marketing_app gains nothing from it.
CREATE POLICY ads_sync_lookup ON tenant_meta_accounts FOR SELECT TO CURRENT_USER USING (true);

-- Due: never synced, last completed sync older than p_synced_before, or an interrupted window
-- (throttled, report pending); and not blocked by Meta nor leased by a running sync.
CREATE FUNCTION ads_accounts_due_for_sync(p_synced_before timestamptz, p_limit integer)
    RETURNS TABLE (tenant_id text, account_id text)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT a.tenant_id, a.account_id
    FROM tenant_meta_accounts a
    WHERE (a.blocked_until IS NULL OR a.blocked_until <= now())
      AND (a.sync_lease_until IS NULL OR a.sync_lease_until <= now())
      AND (a.last_sync_finished_at IS NULL OR a.last_sync_finished_at < p_synced_before
           OR a.sync_resume_date IS NOT NULL OR a.report_run_id IS NOT NULL)
    ORDER BY a.last_sync_finished_at NULLS FIRST, a.tenant_id, a.account_id
    LIMIT least(greatest(p_limit, 0), 10000)
$$;
REVOKE ALL ON FUNCTION ads_accounts_due_for_sync(timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ads_accounts_due_for_sync(timestamptz, integer) TO marketing_app;

-- Stats read a tenant's Meta leads by creation date. The predicate is repeated verbatim in
-- shared/ads_stats_store.py (META_LEAD_FILTER) so the planner can use this partial index; the
-- INCLUDE columns make it an index-only scan.
CREATE INDEX leads_meta_stats_idx ON leads (tenant_id, created_at)
    INCLUDE (meta_campaign_id, status, deal_value, deal_currency)
    WHERE meta_campaign_id IS NOT NULL
       OR lower(lead_source) IN ('meta', 'meta_ads', 'facebook', 'facebook_ads', 'instagram',
                                 'instagram_ads', 'fb', 'ig', 'meta_lead_ads',
                                 'facebook_lead_ads');

-- Spend per campaign over a date range, without touching the heap.
CREATE INDEX meta_ads_insights_stats_idx ON meta_ads_insights (tenant_id, date)
    INCLUDE (campaign_id, currency, spend, impressions, clicks, leads);

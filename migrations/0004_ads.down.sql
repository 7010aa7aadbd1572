DROP INDEX IF EXISTS meta_ads_insights_stats_idx;
DROP INDEX IF EXISTS leads_meta_stats_idx;
DROP FUNCTION IF EXISTS ads_accounts_due_for_sync(timestamptz, integer);
DROP POLICY IF EXISTS ads_sync_lookup ON tenant_meta_accounts;
ALTER TABLE tenant_meta_accounts
    DROP COLUMN IF EXISTS campaigns_synced,
    DROP COLUMN IF EXISTS last_sync_outcome,
    DROP COLUMN IF EXISTS sync_lease_until,
    DROP COLUMN IF EXISTS report_started_at,
    DROP COLUMN IF EXISTS report_until,
    DROP COLUMN IF EXISTS report_since,
    DROP COLUMN IF EXISTS report_run_id,
    DROP COLUMN IF EXISTS sync_resume_date;

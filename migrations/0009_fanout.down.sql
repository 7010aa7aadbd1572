DROP FUNCTION IF EXISTS whatsapp_templates_due(timestamptz);
DROP FUNCTION IF EXISTS ads_accounts_due_for_sync(timestamptz, text, text, integer);
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
DROP FUNCTION IF EXISTS hsm_mark_queued(text[]);
DROP FUNCTION IF EXISTS hsm_due_work(integer, integer, text);
DROP POLICY IF EXISTS hsm_planner_mark ON hsm_dispatch_leases;
ALTER TABLE hsm_dispatch_leases DROP COLUMN IF EXISTS queued_at;
DROP POLICY IF EXISTS hsm_planner_lookup ON meta_templates;
DROP POLICY IF EXISTS hsm_planner_lookup ON leads;
DROP INDEX IF EXISTS automation_logs_reserved_idx;

-- Scheduled work fans out (issue 16): a planner asks which tenants have HSM work now and queues
-- one message per tenant; workers run each tenant under its lease. Additive to 0006.
--
-- "Work now" is narrow on purpose: a tenant that is idle costs the planner one indexed look and
-- nothing else (no lease, no KMS call, no Graph call). A tenant is due when a rule of it can act:
--   (a) a lead is due for the rule and was never logged for it (new sends, or SKIPPED rows with
--       the reason when its template cannot send);
--   (b) a released row's next attempt has come (retries, and reservations given back);
--   (c) leads were skipped for the rule's template, the template is APPROVED now, and the rule or
--       the template changed since the tenant's last run (so they are revived once, not polled);
-- and, whatever its rules, when rows of a dead run wait for recovery:
--   (d) a permitted send has had no result for longer than the timeout (it becomes UNKNOWN);
--   (e) rows are reserved by a run whose lease has lapsed (they are released).
-- Tenants whose lease is held are left out: their run is under way, and a run that dies lets its
-- lease lapse, after which (d) and (e) bring the tenant back. So are tenants queued a moment ago
-- that have not run since: when workers fall behind, the queue does not fill with copies of
-- them. The caller applies send windows. A worker asks the same question for its one tenant
-- (p_tenant) before it decrypts anything; it holds the lease then, so lease and queue marks do
-- not count.

-- When the planner last queued the tenant (NULL: never). A tenant that never ran gets a row
-- here with a lapsed lease.
ALTER TABLE hsm_dispatch_leases ADD COLUMN queued_at timestamptz;

-- (e): reservations not yet permitted, per tenant.
CREATE INDEX automation_logs_reserved_idx ON automation_logs (tenant_id)
    WHERE status = 'PENDING' AND claimed_by IS NOT NULL AND attempt_started_at IS NULL;

-- RLS is FORCEd on these tables: the owner of the function (the role running migrations) needs
-- a read policy of its own, as in 0003-0006; marketing_app gains nothing from them.
CREATE POLICY hsm_planner_lookup ON leads FOR SELECT TO CURRENT_USER USING (true);
CREATE POLICY hsm_planner_lookup ON meta_templates FOR SELECT TO CURRENT_USER USING (true);
CREATE POLICY hsm_planner_mark ON hsm_dispatch_leases FOR ALL TO CURRENT_USER USING (true)
    WITH CHECK (true);

-- One row per (tenant, due rule) with the rule's send window and the sender's time zone, and one
-- row per tenant that needs recovery (rule_id NULL). Ids and windows only.
CREATE FUNCTION hsm_due_work(p_started_timeout_seconds integer, p_requeue_after_seconds integer,
                             p_tenant text DEFAULT NULL)
    RETURNS TABLE (tenant_id text, rule_id uuid, send_window jsonb, timezone text)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    WITH busy AS (
        SELECT d.tenant_id FROM hsm_dispatch_leases d
        WHERE d.expires_at > now()
           OR (d.queued_at > coalesce(d.last_finished_at, '-infinity')
               AND d.queued_at > now() - make_interval(secs => p_requeue_after_seconds)))
    SELECT r.tenant_id, r.id, r.send_window, s.timezone
    FROM automation_rules r
    JOIN whatsapp_senders s ON s.tenant_id = r.tenant_id
    JOIN credentials c ON c.tenant_id = r.tenant_id AND c.name = 'META_USER_LONG_TOKEN'
                      AND c.status <> 'needs_reconnect'
    LEFT JOIN hsm_dispatch_leases d ON d.tenant_id = r.tenant_id
    WHERE r.enabled AND r.deleted_at IS NULL
      AND (p_tenant IS NULL OR r.tenant_id = p_tenant)
      AND (p_tenant IS NOT NULL OR r.tenant_id NOT IN (SELECT tenant_id FROM busy))
      AND (
        EXISTS (SELECT 1 FROM leads l
                WHERE l.tenant_id = r.tenant_id AND l.phone IS NOT NULL
                  AND NOT l.whatsapp_opt_out AND l.last_contacted_at IS NULL
                  AND l.created_at <= now() - make_interval(hours => r.delay_hours)
                  AND NOT EXISTS (SELECT 1 FROM automation_logs a
                                  WHERE a.tenant_id = l.tenant_id AND a.rule_id = r.id
                                    AND a.lead_id = l.id))
        OR EXISTS (SELECT 1 FROM automation_logs a
                   WHERE a.tenant_id = r.tenant_id AND a.rule_id = r.id
                     AND a.status = 'PENDING' AND a.claimed_by IS NULL
                     AND a.attempt_started_at IS NULL AND a.next_attempt_at <= now())
        OR EXISTS (SELECT 1 FROM meta_templates t
                   WHERE t.tenant_id = r.tenant_id AND t.name = r.template_name
                     AND t.language = r.language AND t.status = 'APPROVED'
                     AND greatest(r.updated_at, t.synced_at, t.status_changed_at)
                         > coalesce(d.last_finished_at, '-infinity')
                     AND EXISTS (SELECT 1 FROM automation_logs a
                                 WHERE a.tenant_id = r.tenant_id AND a.rule_id = r.id
                                   AND a.status = 'SKIPPED' AND a.attempts = 0
                                   AND a.error_code LIKE 'template\_%'))
      )
    UNION ALL
    SELECT t.tenant_id, NULL::uuid, NULL::jsonb, NULL::text
    FROM (SELECT DISTINCT a.tenant_id FROM automation_logs a
          WHERE a.status = 'PENDING' AND (p_tenant IS NULL OR a.tenant_id = p_tenant) AND (
                (a.attempt_started_at IS NOT NULL
                 AND a.attempt_started_at < now() - make_interval(secs => p_started_timeout_seconds))
             OR (a.claimed_by IS NOT NULL AND a.attempt_started_at IS NULL))) t
    WHERE p_tenant IS NOT NULL OR t.tenant_id NOT IN (SELECT tenant_id FROM busy)
$$;
REVOKE ALL ON FUNCTION hsm_due_work(integer, integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hsm_due_work(integer, integer, text) TO marketing_app;

-- The planner marks what it queued (ids only), so the next minute's plan leaves it out.
CREATE FUNCTION hsm_mark_queued(p_tenants text[]) RETURNS void
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    INSERT INTO hsm_dispatch_leases (tenant_id, holder, expires_at, queued_at)
    SELECT t, '00000000-0000-0000-0000-000000000000'::uuid, now(), now()
    FROM unnest(p_tenants) AS t
    ON CONFLICT (tenant_id) DO UPDATE SET queued_at = now()
$$;
REVOKE ALL ON FUNCTION hsm_mark_queued(text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hsm_mark_queued(text[]) TO marketing_app;

-- Campaign sync's due list had a hard cap of 10,000 accounts a tick; the planner now pages
-- through every due account by keyset instead.
DROP FUNCTION ads_accounts_due_for_sync(timestamptz, integer);
CREATE FUNCTION ads_accounts_due_for_sync(p_synced_before timestamptz, p_after_tenant text,
                                          p_after_account text, p_limit integer)
    RETURNS TABLE (tenant_id text, account_id text)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT a.tenant_id, a.account_id
    FROM tenant_meta_accounts a
    WHERE (a.blocked_until IS NULL OR a.blocked_until <= now())
      AND (a.sync_lease_until IS NULL OR a.sync_lease_until <= now())
      AND (a.last_sync_finished_at IS NULL OR a.last_sync_finished_at < p_synced_before
           OR a.sync_resume_date IS NOT NULL OR a.report_run_id IS NOT NULL)
      AND (a.tenant_id, a.account_id) > (p_after_tenant, p_after_account)
    ORDER BY a.tenant_id, a.account_id
    LIMIT greatest(p_limit, 0)
$$;
REVOKE ALL ON FUNCTION ads_accounts_due_for_sync(timestamptz, text, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ads_accounts_due_for_sync(timestamptz, text, text, integer)
    TO marketing_app;

-- Senders whose templates were not read from Meta for a while (or that a template webhook
-- marked stale): the periodic template refresh queues them. Ids only.
CREATE FUNCTION whatsapp_templates_due(p_synced_before timestamptz)
    RETURNS SETOF text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT s.tenant_id FROM whatsapp_senders s
    WHERE s.templates_synced_at IS NULL OR s.templates_synced_at < p_synced_before
    ORDER BY s.templates_synced_at NULLS FIRST, s.tenant_id
$$;
REVOKE ALL ON FUNCTION whatsapp_templates_due(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION whatsapp_templates_due(timestamptz) TO marketing_app;

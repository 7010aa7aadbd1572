-- Back to 0009's hsm_due_work and rule shape. lead_created rules (and their logs) cannot exist
-- under the old constraint, so they go.
GRANT CREATE ON SCHEMA public TO marketing_lookup;
SET LOCAL ROLE marketing_lookup;
CREATE OR REPLACE FUNCTION hsm_due_work(p_started_timeout_seconds integer, p_requeue_after_seconds integer,
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
RESET ROLE;
REVOKE CREATE ON SCHEMA public FROM marketing_lookup;

ALTER TABLE hsm_dispatch_leases DROP COLUMN IF EXISTS wake_at, DROP COLUMN IF EXISTS woken;
DROP INDEX IF EXISTS automation_logs_lead_idx;
DELETE FROM automation_rules WHERE trigger_type = 'lead_created';
ALTER TABLE automation_rules DROP CONSTRAINT automation_rules_trigger_type_check;
ALTER TABLE automation_rules ADD CONSTRAINT automation_rules_trigger_type_check
    CHECK (trigger_type IN ('lead_followup'));
ALTER TABLE automation_rules ALTER COLUMN delay_hours SET NOT NULL;
ALTER TABLE automation_rules DROP COLUMN IF EXISTS enabled_at, DROP COLUMN IF EXISTS delay_minutes;

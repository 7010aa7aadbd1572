-- Rule lead_created (issue 22, part B): a template to each new lead within seconds of its
-- arrival, plus an optional delay. Additive to 0006 and 0009.
--
-- A lead_created rule has delay_minutes (0..1440) instead of delay_hours, and it messages the
-- leads created after enabled_at, the time it was last enabled (so turning a rule on never
-- messages the leads already there). Its work reaches the workers two ways: the lead reader
-- wakes the tenant right after storing a lead (an SQS message, delayed by the rule's delay when
-- that is 15 minutes or less), and the planner's hsm_due_work below finds the same work every
-- minute, so a lost wake costs at most a minute.
ALTER TABLE automation_rules
    ADD COLUMN delay_minutes integer CHECK (delay_minutes BETWEEN 0 AND 1440),
    ADD COLUMN enabled_at timestamptz;
ALTER TABLE automation_rules ALTER COLUMN delay_hours DROP NOT NULL;
ALTER TABLE automation_rules DROP CONSTRAINT automation_rules_trigger_type_check;
ALTER TABLE automation_rules ADD CONSTRAINT automation_rules_trigger_type_check CHECK (
    (trigger_type = 'lead_followup' AND delay_hours IS NOT NULL AND delay_minutes IS NULL)
    OR (trigger_type = 'lead_created' AND delay_minutes IS NOT NULL AND delay_hours IS NULL));
UPDATE automation_rules SET enabled_at = date_trunc('second', created_at) WHERE enabled;

-- "Was this lead reached by another rule's send that Meta may have now?" at the permit of a
-- lead_followup send (shared.hsm.claims.permit), per lead.
CREATE INDEX automation_logs_lead_idx ON automation_logs (tenant_id, lead_id);

-- The lease row carries the wake-ups (shared.hsm.claims):
--   woken    a wake arrived while a run held the lease; that run queues the tenant again when
--            it lets go, so the new lead is not left for the next plan;
--   wake_at  when the delayed wake already queued for the tenant is due (one per due time).
ALTER TABLE hsm_dispatch_leases
    ADD COLUMN woken boolean NOT NULL DEFAULT false,
    ADD COLUMN wake_at timestamptz;

-- hsm_due_work as in 0009, with the lead_created rules' due leads: reachable (a phone, not opted
-- out; contact by someone else does not matter), created since the rule was enabled, and
-- `delay_minutes` old. The function belongs to marketing_lookup (0010): replacing it takes that
-- role, and creating in the schema for the moment it takes.
GRANT CREATE ON SCHEMA public TO marketing_lookup;
SET LOCAL ROLE marketing_lookup;
CREATE OR REPLACE FUNCTION hsm_due_work(p_started_timeout_seconds integer,
                                        p_requeue_after_seconds integer,
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
        (r.trigger_type = 'lead_followup' AND EXISTS (
            SELECT 1 FROM leads l
            WHERE l.tenant_id = r.tenant_id AND l.phone IS NOT NULL
              AND NOT l.whatsapp_opt_out AND l.last_contacted_at IS NULL
              AND l.created_at <= now() - make_interval(hours => r.delay_hours)
              AND NOT EXISTS (SELECT 1 FROM automation_logs a
                              WHERE a.tenant_id = l.tenant_id AND a.rule_id = r.id
                                AND a.lead_id = l.id)))
        OR (r.trigger_type = 'lead_created' AND EXISTS (
            SELECT 1 FROM leads l
            WHERE l.tenant_id = r.tenant_id
              AND l.created_at >= r.enabled_at
              AND l.created_at <= now() - make_interval(mins => r.delay_minutes)
              AND l.phone IS NOT NULL AND NOT l.whatsapp_opt_out
              AND NOT EXISTS (SELECT 1 FROM automation_logs a
                              WHERE a.tenant_id = l.tenant_id AND a.rule_id = r.id
                                AND a.lead_id = l.id)))
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

-- Exactly-once HSM dispatch (issue 6, part B). Additive to 0001 and 0005.
--
-- A (rule, lead) pair has one automation_logs row, ever (0001's UNIQUE). Its life:
--   PENDING, claimed_by = a run          reserved by that run, not sent yet
--   PENDING, attempt_started_at set      the run was allowed to send it (the "permit"); from
--                                        here Meta may have it, so it is never sent blindly
--                                        again: the webhook reconciles it, else UNKNOWN
--   PENDING, claimed_by NULL,            released: never sent, or Meta refused it without
--     attempt_started_at NULL,           accepting (130429, 131056, transient); a later run
--     next_attempt_at set                re-claims it once next_attempt_at has passed
--   SENT / FAILED / SKIPPED / UNKNOWN    results
-- A send happens only after the permit UPDATE (conditional on claimed_by = this run and
-- attempt_started_at IS NULL) returned the row, so two runs can never both send one pair.
ALTER TABLE automation_logs
    ADD COLUMN claimed_by uuid,
    ADD COLUMN attempt_started_at timestamptz;

-- Released rows due for another attempt, per rule.
CREATE INDEX automation_logs_released_idx ON automation_logs (tenant_id, rule_id, next_attempt_at)
    WHERE status = 'PENDING' AND claimed_by IS NULL AND attempt_started_at IS NULL;
-- Permitted rows without a result: reconciled by webhooks or timed out to UNKNOWN.
CREATE INDEX automation_logs_started_idx ON automation_logs (tenant_id, attempt_started_at)
    WHERE status = 'PENDING' AND attempt_started_at IS NOT NULL;
-- Unique recipients in the last 24 hours (the messaging tier).
CREATE INDEX automation_logs_recent_idx ON automation_logs (tenant_id, claimed_at)
    INCLUDE (phone, status);

-- One dispatcher per tenant (= per phone number) at a time, so two overlapping runs never pace
-- the same number at twice its rate. A lease, not a lock: a run that dies keeps it only until
-- expires_at. Correctness never depends on it (the permit does); pacing does.
CREATE TABLE hsm_dispatch_leases (
    tenant_id        text PRIMARY KEY,
    holder           uuid NOT NULL,
    expires_at       timestamptz NOT NULL,
    acquired_at      timestamptz NOT NULL DEFAULT now(),
    last_finished_at timestamptz
);
ALTER TABLE hsm_dispatch_leases ENABLE ROW LEVEL SECURITY;
ALTER TABLE hsm_dispatch_leases FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON hsm_dispatch_leases USING (tenant_id = app_current_tenant())
    WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON hsm_dispatch_leases TO marketing_app;

-- Which tenants have dispatch work: an enabled rule, or a permitted send still without a result
-- (to time out to UNKNOWN). Tenant ids only, least recently served first so no tenant starves;
-- the dispatcher does everything else inside each tenant's own transaction.
-- RLS is FORCEd on these tables: these policies let exactly the owner of the function (the role
-- running migrations) read them; marketing_app gains nothing.
CREATE POLICY hsm_dispatch_lookup ON automation_rules FOR SELECT TO CURRENT_USER USING (true);
CREATE POLICY hsm_dispatch_lookup ON automation_logs FOR SELECT TO CURRENT_USER USING (true);
CREATE POLICY hsm_dispatch_lookup ON hsm_dispatch_leases FOR SELECT TO CURRENT_USER USING (true);

CREATE FUNCTION hsm_dispatch_tenants() RETURNS SETOF text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT t.tenant_id
    FROM (SELECT r.tenant_id FROM automation_rules r
          WHERE r.enabled AND r.deleted_at IS NULL
          UNION
          SELECT g.tenant_id FROM automation_logs g
          WHERE g.status = 'PENDING' AND g.attempt_started_at IS NOT NULL) t
    LEFT JOIN hsm_dispatch_leases d ON d.tenant_id = t.tenant_id
    ORDER BY d.last_finished_at NULLS FIRST, t.tenant_id
$$;

REVOKE ALL ON FUNCTION hsm_dispatch_tenants() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hsm_dispatch_tenants() TO marketing_app;

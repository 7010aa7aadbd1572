DROP FUNCTION IF EXISTS hsm_dispatch_tenants();
DROP POLICY IF EXISTS hsm_dispatch_lookup ON automation_rules;
DROP POLICY IF EXISTS hsm_dispatch_lookup ON automation_logs;
DROP TABLE IF EXISTS hsm_dispatch_leases;

DROP INDEX IF EXISTS automation_logs_recent_idx;
DROP INDEX IF EXISTS automation_logs_started_idx;
DROP INDEX IF EXISTS automation_logs_released_idx;
-- Rows that were only reserved or released (never permitted) go back to being just "not sent":
-- without these columns nothing could tell them apart from a send in flight.
DELETE FROM automation_logs WHERE status = 'PENDING' AND attempt_started_at IS NULL;
ALTER TABLE automation_logs DROP COLUMN IF EXISTS attempt_started_at,
    DROP COLUMN IF EXISTS claimed_by;

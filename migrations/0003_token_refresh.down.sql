DROP FUNCTION IF EXISTS token_refresh_expiring_count(timestamptz);
DROP FUNCTION IF EXISTS token_refresh_due_tenants(timestamptz, timestamptz, integer);
DROP POLICY IF EXISTS token_refresh_lookup ON credentials;
DROP FUNCTION IF EXISTS token_refresh_is_due(credentials, timestamptz, timestamptz);
DROP FUNCTION IF EXISTS token_reconnect_notified(credentials, text);
DROP INDEX IF EXISTS credentials_data_access_idx;
ALTER TABLE credentials DROP COLUMN IF EXISTS reconnect_notified_status,
    DROP COLUMN IF EXISTS refresh_lease_until,
    DROP COLUMN IF EXISTS refresh_lease_id;

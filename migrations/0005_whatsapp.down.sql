DROP FUNCTION IF EXISTS whatsapp_tenants_for_waba(text);
DROP FUNCTION IF EXISTS whatsapp_tenant_for_phone(text);
DROP POLICY IF EXISTS webhook_tenant_lookup ON whatsapp_senders;

DROP INDEX IF EXISTS automation_logs_rule_listing_idx;

-- Soft-deleted rules keep their logs: rename them (and disable them) so the old
-- UNIQUE (tenant_id, name) can come back.
UPDATE automation_rules SET name = name || ' (deleted ' || id::text || ')', enabled = false
    WHERE deleted_at IS NOT NULL;
DROP INDEX IF EXISTS automation_rules_live_name_idx;
ALTER TABLE automation_rules ADD CONSTRAINT automation_rules_tenant_id_name_key
    UNIQUE (tenant_id, name);
ALTER TABLE automation_rules DROP COLUMN IF EXISTS deleted_at;

DROP INDEX IF EXISTS meta_templates_waba_idx;
ALTER TABLE meta_templates DROP COLUMN IF EXISTS status_changed_at,
    DROP COLUMN IF EXISTS parameter_format;

DROP INDEX IF EXISTS whatsapp_senders_waba_idx;
ALTER TABLE whatsapp_senders DROP COLUMN IF EXISTS updated_at,
    DROP COLUMN IF EXISTS connected_by, DROP COLUMN IF EXISTS webhooks_subscribed_at,
    DROP COLUMN IF EXISTS throughput_level;

DROP INDEX IF EXISTS leads_phone_idx;
ALTER TABLE leads DROP COLUMN IF EXISTS whatsapp_opt_out_changed_at,
    DROP COLUMN IF EXISTS whatsapp_opt_out_source;

-- WhatsApp sender, templates, rules API, delivery webhooks and message logs (issue 6, part A).
-- Everything here is additive to 0001; the dispatcher's own needs live in 0006.

-- Opt-outs: who or what set them, and when. The webhook applies a user's "stop"/"resume" only if
-- it is newer than the last change (Meta retries webhooks for days, and out of order), and a
-- "resume" never clears an opt-out the CRM set by hand.
ALTER TABLE leads
    ADD COLUMN whatsapp_opt_out_source text,
    ADD COLUMN whatsapp_opt_out_changed_at timestamptz;
-- Opt-outs arrive as a WhatsApp id (the E.164 number without "+"): look leads up by phone.
CREATE INDEX leads_phone_idx ON leads (tenant_id, phone) WHERE phone IS NOT NULL;

-- The connected sender: what Meta told us at connect time.
ALTER TABLE whatsapp_senders
    ADD COLUMN throughput_level text,
    ADD COLUMN webhooks_subscribed_at timestamptz,
    ADD COLUMN connected_by text,
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX whatsapp_senders_waba_idx ON whatsapp_senders (waba_id);

-- Template status changes carry Meta's event time; an older retry never overwrites a newer state.
ALTER TABLE meta_templates
    ADD COLUMN parameter_format text,
    ADD COLUMN status_changed_at timestamptz;
CREATE INDEX meta_templates_waba_idx ON meta_templates (tenant_id, waba_id);

-- Rules are deleted softly: their logs (what was sent to whom) stay, and a deleted rule is also
-- disabled, so the dispatcher's "enabled" filter already skips it. A name is unique among the
-- tenant's live rules, case-insensitively.
ALTER TABLE automation_rules ADD COLUMN deleted_at timestamptz;
ALTER TABLE automation_rules DROP CONSTRAINT automation_rules_tenant_id_name_key;
CREATE UNIQUE INDEX automation_rules_live_name_idx ON automation_rules (tenant_id, lower(name))
    WHERE deleted_at IS NULL;

-- Logs filtered by rule, newest first (the cursor is (created_at, id)).
CREATE INDEX automation_logs_rule_listing_idx
    ON automation_logs (tenant_id, rule_id, created_at DESC, id DESC);

-- Webhooks carry no tenant claim: Meta tells us the phone number (statuses, opt-outs) or the
-- WABA (template updates). These lookups return tenant ids only; the webhook then does every read
-- and write inside that tenant's transaction, under row-level security.
--
-- RLS is FORCEd on whatsapp_senders, so even a SECURITY DEFINER function would see no rows unless
-- its owner bypasses RLS. This policy lets exactly the owner (the role running migrations, which
-- owns these functions) read senders; marketing_app gains nothing from it.
CREATE POLICY webhook_tenant_lookup ON whatsapp_senders FOR SELECT TO CURRENT_USER USING (true);

CREATE FUNCTION whatsapp_tenant_for_phone(p_phone_number_id text) RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT tenant_id FROM whatsapp_senders WHERE phone_number_id = p_phone_number_id
$$;

CREATE FUNCTION whatsapp_tenants_for_waba(p_waba_id text) RETURNS SETOF text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT tenant_id FROM whatsapp_senders WHERE waba_id = p_waba_id ORDER BY tenant_id
$$;

REVOKE ALL ON FUNCTION whatsapp_tenant_for_phone(text), whatsapp_tenants_for_waba(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION whatsapp_tenant_for_phone(text), whatsapp_tenants_for_waba(text)
    TO marketing_app;

-- Every table of the contract, keyed by tenant, with row-level security forced on each.
-- The tenant comes from the transaction-local setting app.tenant_id (see shared/db.py).

CREATE OR REPLACE FUNCTION app_current_tenant() RETURNS text
    LANGUAGE sql STABLE AS $$ SELECT nullif(current_setting('app.tenant_id', true), '') $$;

CREATE TABLE leads (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id         text NOT NULL,
    name              text NOT NULL DEFAULT '',
    phone             text CHECK (phone IS NULL OR phone ~ '^\+[1-9][0-9]{6,14}$'),
    email             text,
    status            text NOT NULL DEFAULT 'new',
    created_at        timestamptz NOT NULL DEFAULT now(),
    last_contacted_at timestamptz,
    whatsapp_opt_out  boolean NOT NULL DEFAULT false,
    lead_source       text,
    meta_campaign_id  text,
    meta_ad_id        text,
    meta_ad_headline  text,
    meta_ad_body      text,
    external_ids      jsonb NOT NULL DEFAULT '{}'::jsonb,
    deal_value        numeric(14, 2),
    deal_currency     text
);
-- lead_followup eligibility scans never-contacted, reachable leads by age.
CREATE INDEX leads_followup_idx ON leads (tenant_id, created_at)
    WHERE last_contacted_at IS NULL AND phone IS NOT NULL AND NOT whatsapp_opt_out;
CREATE INDEX leads_campaign_idx ON leads (tenant_id, meta_campaign_id);
CREATE INDEX leads_tenant_created_idx ON leads (tenant_id, created_at);

CREATE TABLE credentials (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id              text NOT NULL,
    name                   text NOT NULL,
    category               text NOT NULL,
    ciphertext             bytea NOT NULL,
    status                 text NOT NULL DEFAULT 'active'
                           CHECK (status IN ('active', 'expiring', 'needs_reconnect')),
    status_reason          text,
    expires_at             timestamptz,          -- NULL: never expires (Meta's expires_at 0)
    data_access_expires_at timestamptz,
    meta_user_id           text,
    scopes                 text[] NOT NULL DEFAULT '{}',
    refresh_failures       integer NOT NULL DEFAULT 0,
    last_refresh_attempt_at timestamptz,
    last_refreshed_at      timestamptz,
    reconnect_notified_at  timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);
CREATE INDEX credentials_expiry_idx ON credentials (expires_at)
    WHERE status <> 'needs_reconnect' AND expires_at IS NOT NULL;

CREATE TABLE tenant_meta_accounts (
    tenant_id           text NOT NULL,
    account_id          text NOT NULL,           -- act_<digits>
    name                text NOT NULL DEFAULT '',
    currency            text,
    timezone            text,
    account_status      integer,
    business_id         text,
    business_name       text,
    connected_at        timestamptz NOT NULL DEFAULT now(),
    connected_by        text,
    last_synced_date    date,
    last_sync_started_at timestamptz,
    last_sync_finished_at timestamptz,
    blocked_until       timestamptz,
    sync_error          text,
    PRIMARY KEY (tenant_id, account_id)
);

CREATE TABLE meta_ads_campaigns (
    tenant_id        text NOT NULL,
    campaign_id      text NOT NULL,
    account_id       text NOT NULL,
    name             text NOT NULL DEFAULT '',
    status           text,
    effective_status text,
    objective        text,
    daily_budget     text,
    lifetime_budget  text,
    start_time       timestamptz,
    stop_time        timestamptz,
    updated_time     timestamptz,
    synced_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, campaign_id)
);
CREATE INDEX meta_ads_campaigns_account_idx ON meta_ads_campaigns (tenant_id, account_id);

CREATE TABLE meta_ads_insights (
    tenant_id    text NOT NULL,
    campaign_id  text NOT NULL,
    date         date NOT NULL,
    account_id   text NOT NULL,
    currency     text,
    spend        numeric(16, 4) NOT NULL DEFAULT 0,
    impressions  bigint NOT NULL DEFAULT 0,
    clicks       bigint NOT NULL DEFAULT 0,
    leads        bigint NOT NULL DEFAULT 0,
    synced_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, campaign_id, date)
);
CREATE INDEX meta_ads_insights_date_idx ON meta_ads_insights (tenant_id, date);

CREATE TABLE whatsapp_senders (
    tenant_id            text PRIMARY KEY,
    waba_id              text NOT NULL,
    phone_number_id      text NOT NULL,
    display_phone_number text,
    verified_name        text,
    quality_rating       text,
    messaging_limit_tier text,
    max_per_second       integer NOT NULL DEFAULT 80 CHECK (max_per_second BETWEEN 1 AND 1000),
    timezone             text NOT NULL DEFAULT 'UTC',
    templates_synced_at  timestamptz,
    connected_at         timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX whatsapp_senders_phone_idx ON whatsapp_senders (phone_number_id);

CREATE TABLE meta_templates (
    tenant_id        text NOT NULL,
    template_id      text NOT NULL,
    waba_id          text NOT NULL,
    name             text NOT NULL,
    language         text NOT NULL,
    category         text,
    status           text NOT NULL,
    components       jsonb NOT NULL DEFAULT '[]'::jsonb,
    quality_score    text,
    rejection_reason text,
    synced_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, template_id),
    UNIQUE (tenant_id, name, language)
);

CREATE TABLE automation_rules (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    text NOT NULL,
    name         text NOT NULL,
    trigger_type text NOT NULL CHECK (trigger_type IN ('lead_followup')),
    delay_hours  integer NOT NULL CHECK (delay_hours BETWEEN 1 AND 720),
    template_name text NOT NULL,
    language     text NOT NULL,
    body_params  jsonb NOT NULL DEFAULT '[]'::jsonb,
    send_window  jsonb,
    enabled      boolean NOT NULL DEFAULT true,
    created_by   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);

CREATE TABLE automation_logs (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id      text NOT NULL,
    rule_id        uuid NOT NULL REFERENCES automation_rules (id) ON DELETE CASCADE,
    lead_id        uuid NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    template_name  text NOT NULL,
    language       text NOT NULL,
    phone          text,
    status         text NOT NULL
                   CHECK (status IN ('PENDING', 'SENT', 'DELIVERED', 'READ', 'FAILED',
                                     'SKIPPED', 'UNKNOWN')),
    wamid          text UNIQUE,
    error_code     text,
    error_message  text,
    attempts       integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    claimed_at     timestamptz,
    sent_at        timestamptz,
    delivered_at   timestamptz,
    read_at        timestamptz,
    failed_at      timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    -- The exactly-once claim: one log row per (rule, lead), ever.
    UNIQUE (tenant_id, rule_id, lead_id)
);
CREATE INDEX automation_logs_listing_idx ON automation_logs (tenant_id, created_at DESC, id DESC);
CREATE INDEX automation_logs_status_idx ON automation_logs (tenant_id, status);

-- Row-level security, enabled and forced (the owner is subject to it too) on every tenant table.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['leads', 'credentials', 'tenant_meta_accounts', 'meta_ads_campaigns',
                             'meta_ads_insights', 'whatsapp_senders', 'meta_templates',
                             'automation_rules', 'automation_logs']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = app_current_tenant())'
                       ' WITH CHECK (tenant_id = app_current_tenant())', t);
    END LOOP;
END $$;

-- The application role: no BYPASSRLS, not the owner. Created here when missing so local stacks
-- and CI get it; in RDS create it once beforehand (docs/DEPLOY.md).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'marketing_app') THEN
        CREATE ROLE marketing_app LOGIN NOBYPASSRLS;
    END IF;
END $$;
GRANT SELECT, INSERT, UPDATE, DELETE ON leads, credentials, tenant_meta_accounts,
    meta_ads_campaigns, meta_ads_insights, whatsapp_senders, meta_templates, automation_rules,
    automation_logs TO marketing_app;

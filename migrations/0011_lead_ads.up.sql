-- Lead Ads (issue 22, part A): a tenant's Facebook Pages with their Page tokens, the lead reads
-- that webhooks announce, and the columns `leads` needs to hold one row per Meta lead. Additive.

-- 1. Pages. A Page feeds one tenant at a time (CONTRACT "Lead Ads"): page_id is unique across
-- tenants, so a second tenant's connect fails on the index even when two connects race.
-- The Page token is stored only as ciphertext (shared.platform.crypto, encryption context
-- tenant_id + credential "meta_page:<page_id>"), like the user token in `credentials`.
-- default_country: the region a phone number without a country code is read in (ISO 3166
-- alpha-2), chosen at connect from the tenant's WhatsApp sender's number, else AR.
CREATE TABLE meta_pages (
    tenant_id             text NOT NULL,
    page_id               text NOT NULL CHECK (page_id ~ '^[0-9]{1,32}$'),
    name                  text NOT NULL DEFAULT '',
    ciphertext            bytea NOT NULL,
    default_country       text NOT NULL DEFAULT 'AR' CHECK (default_country ~ '^[A-Z]{2}$'),
    status                text NOT NULL DEFAULT 'active'
                          CHECK (status IN ('active', 'needs_reconnect')),
    status_reason         text,
    connected_by          text,
    connected_at          timestamptz NOT NULL DEFAULT now(),
    subscribed_at         timestamptz,
    -- Reconciliation reads the Page's forms for leads created since this (minus an overlap);
    -- NULL until the first complete read (the connect's 90-day import, or a reconciliation).
    reconciled_at         timestamptz,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, page_id)
);
CREATE UNIQUE INDEX meta_pages_page_idx ON meta_pages (page_id);
ALTER TABLE meta_pages ENABLE ROW LEVEL SECURITY;
ALTER TABLE meta_pages FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON meta_pages USING (tenant_id = app_current_tenant())
    WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON meta_pages TO marketing_app;

-- 2. Lead reads: one row per (tenant, leadgen_id) a notification or a reconciliation announced.
-- A notification writes it 'pending' before the read is queued; the reader makes it 'stored'
-- (with the lead's id) or, after its retries or on a permanent refusal, 'failed' with the
-- reason. So a lead that cannot be read is recorded, never lost.
CREATE TABLE lead_reads (
    tenant_id      text NOT NULL,
    leadgen_id     text NOT NULL CHECK (leadgen_id ~ '^[0-9]{1,32}$'),
    page_id        text NOT NULL,
    form_id        text,
    state          text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'stored', 'failed')),
    attempts       integer NOT NULL DEFAULT 0,
    failure_reason text,
    lead_id        uuid,
    notified_at    timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, leadgen_id)
);
CREATE INDEX lead_reads_open_idx ON lead_reads (tenant_id, state, updated_at)
    WHERE state <> 'stored';
ALTER TABLE lead_reads ENABLE ROW LEVEL SECURITY;
ALTER TABLE lead_reads FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON lead_reads USING (tenant_id = app_current_tenant())
    WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON lead_reads TO marketing_app;

-- 3. leads: one row per Meta lead. The leadgen id has a column of its own (besides
-- external_ids->>'meta_leadgen_id', which the contract names) so that the unique index is a
-- plain one an upsert can name; the form id likewise, for the listing and its filter.
ALTER TABLE leads
    ADD COLUMN meta_leadgen_id text,
    ADD COLUMN meta_form_id text,
    ADD COLUMN meta_page_id text;
CREATE UNIQUE INDEX leads_meta_leadgen_idx ON leads (tenant_id, meta_leadgen_id);
CREATE INDEX leads_meta_form_idx ON leads (tenant_id, meta_form_id)
    WHERE meta_form_id IS NOT NULL;
-- GET /crm/marketing/leads/ads: newest first, keyset on (created_at, id).
CREATE INDEX leads_lead_ads_idx ON leads (tenant_id, created_at DESC, id DESC)
    WHERE lead_source = 'meta_lead_ads';

-- 4. Lookups without a tenant claim, as marketing_lookup (0010): which tenant a Page feeds (the
-- webhook), and which Pages are due for reconciliation (the planner). Ids only.
GRANT SELECT ON meta_pages TO marketing_lookup;
CREATE POLICY lead_ads_lookup ON meta_pages FOR SELECT TO marketing_lookup USING (true);

CREATE FUNCTION lead_page_tenant(p_page_id text) RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT tenant_id FROM meta_pages WHERE page_id = p_page_id AND status = 'active'
$$;

CREATE FUNCTION lead_pages_due(p_reconciled_before timestamptz, p_after_tenant text,
                               p_after_page text, p_limit integer)
    RETURNS TABLE (tenant_id text, page_id text)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT p.tenant_id, p.page_id FROM meta_pages p
    WHERE p.status = 'active'
      AND coalesce(p.reconciled_at, '-infinity') < p_reconciled_before
      AND (p.tenant_id, p.page_id) > (p_after_tenant, p_after_page)
    ORDER BY p.tenant_id, p.page_id
    LIMIT p_limit
$$;

-- Owned by the NOLOGIN lookup role, as every SECURITY DEFINER function since 0010 (a new
-- owner needs CREATE on the schema for the hand-over only).
GRANT CREATE ON SCHEMA public TO marketing_lookup;
ALTER FUNCTION lead_page_tenant(text) OWNER TO marketing_lookup;
ALTER FUNCTION lead_pages_due(timestamptz, text, text, integer) OWNER TO marketing_lookup;
REVOKE CREATE ON SCHEMA public FROM marketing_lookup;
REVOKE ALL ON FUNCTION lead_page_tenant(text),
    lead_pages_due(timestamptz, text, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lead_page_tenant(text),
    lead_pages_due(timestamptz, text, text, integer) TO marketing_app;

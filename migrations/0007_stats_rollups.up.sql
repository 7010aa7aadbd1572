-- Monthly rollups behind the marketing stats (issue 9: stats under load). A stats answer used to
-- aggregate every insight day and every Meta lead of the range: ~90,000 + 80,000 rows for a
-- tenant with 1,000 campaigns, ~50 ms of Postgres per request, and the whole API queued behind
-- it under load. Now the whole calendar months of a range are read from these tables (one row
-- per campaign, currency and month) and only the partial months at its edges from the daily
-- rows (shared/ads_stats_store.py). Triggers keep them exact, whoever writes: the sync writes
-- insights, the CRM writes leads. Additive: nothing existing changes shape.

CREATE TABLE meta_ads_insights_monthly (
    tenant_id   text NOT NULL,
    campaign_id text NOT NULL,
    currency    text,
    month       date NOT NULL,  -- first day of the month of the insight's day (account time)
    spend       numeric(18, 4) NOT NULL,
    impressions bigint NOT NULL,
    clicks      bigint NOT NULL,
    leads       bigint NOT NULL,
    first_date  date NOT NULL,
    last_date   date NOT NULL,
    UNIQUE NULLS NOT DISTINCT (tenant_id, campaign_id, currency, month)
);
CREATE INDEX meta_ads_insights_monthly_read_idx ON meta_ads_insights_monthly (tenant_id, month);

-- Meta leads only (the same predicate as leads_meta_stats_idx and META_LEAD_FILTER), by the
-- UTC month of created_at. campaign_id NULL: a Meta lead without a campaign (unattributed).
CREATE TABLE leads_meta_monthly (
    tenant_id   text NOT NULL,
    campaign_id text,
    currency    text,
    month       date NOT NULL,
    leads       bigint NOT NULL,
    won_leads   bigint NOT NULL,
    revenue     numeric(18, 2) NOT NULL,
    UNIQUE NULLS NOT DISTINCT (tenant_id, campaign_id, currency, month)
);
CREATE INDEX leads_meta_monthly_read_idx ON leads_meta_monthly (tenant_id, month);

-- Tenants read their own rollups (marketing_app, SELECT only). The triggers run as the owner
-- (SECURITY DEFINER), whatever role wrote the lead or insight and whether or not it set a
-- tenant, so the owner gets policies of its own on the rollups and a read of the source rows.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['meta_ads_insights_monthly', 'leads_meta_monthly'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I FOR SELECT'
                       ' USING (tenant_id = app_current_tenant())', t);
        EXECUTE format('CREATE POLICY stats_rollup_maintenance ON %I TO CURRENT_USER'
                       ' USING (true) WITH CHECK (true)', t);
    END LOOP;
END $$;
GRANT SELECT ON meta_ads_insights_monthly, leads_meta_monthly TO marketing_app;
CREATE POLICY stats_rollup_source ON meta_ads_insights FOR SELECT TO CURRENT_USER USING (true);
CREATE POLICY stats_rollup_source ON leads FOR SELECT TO CURRENT_USER USING (true);

-- Which rows a statement changed, for the trigger functions below: each trigger names its
-- transition tables new_rows / old_rows, and an UPDATE sees both (old rows -1, new rows +1).
CREATE FUNCTION stats_rollup_changed_rows(p_op text) RETURNS text
    LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_op
        WHEN 'INSERT' THEN 'SELECT n.*, 1 AS sign FROM new_rows n'
        WHEN 'DELETE' THEN 'SELECT o.*, -1 AS sign FROM old_rows o'
        ELSE 'SELECT n.*, 1 AS sign FROM new_rows n UNION ALL SELECT o.*, -1 FROM old_rows o'
    END
$$;

-- Insights: the months a statement touched are recomputed from their daily rows (at most 31 per
-- campaign, read by the primary key), so first_date/last_date stay exact and a month left
-- without rows disappears. Statement-level: a sync's upsert of 28 days x N campaigns recomputes
-- each month once.
CREATE FUNCTION meta_ads_insights_rollup() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    EXECUTE format($q$
    WITH touched AS (
        SELECT DISTINCT tenant_id, campaign_id, currency,
               date_trunc('month', date)::date AS month
        FROM (%s) c
    ), fresh AS (
        SELECT t.tenant_id, t.campaign_id, t.currency, t.month,
               sum(i.spend) AS spend, sum(i.impressions) AS impressions,
               sum(i.clicks) AS clicks, sum(i.leads) AS leads,
               min(i.date) AS first_date, max(i.date) AS last_date, count(i.date) AS days
        FROM touched t
        LEFT JOIN meta_ads_insights i
               ON i.tenant_id = t.tenant_id AND i.campaign_id = t.campaign_id
              AND i.currency IS NOT DISTINCT FROM t.currency
              AND i.date >= t.month AND i.date < (t.month + interval '1 month')
        GROUP BY t.tenant_id, t.campaign_id, t.currency, t.month
    ), emptied AS (
        DELETE FROM meta_ads_insights_monthly m
        USING fresh f
        WHERE f.days = 0 AND m.tenant_id = f.tenant_id AND m.campaign_id = f.campaign_id
          AND m.currency IS NOT DISTINCT FROM f.currency AND m.month = f.month
    )
    INSERT INTO meta_ads_insights_monthly AS m (tenant_id, campaign_id, currency, month, spend,
                                               impressions, clicks, leads, first_date,
                                               last_date)
    SELECT tenant_id, campaign_id, currency, month, spend, impressions, clicks, leads,
           first_date, last_date
    FROM fresh WHERE days > 0
    ORDER BY tenant_id, campaign_id, currency, month  -- one lock order for concurrent syncs
    ON CONFLICT (tenant_id, campaign_id, currency, month) DO UPDATE SET
        spend = EXCLUDED.spend, impressions = EXCLUDED.impressions, clicks = EXCLUDED.clicks,
        leads = EXCLUDED.leads, first_date = EXCLUDED.first_date,
        last_date = EXCLUDED.last_date
    $q$, stats_rollup_changed_rows(TG_OP));
    RETURN NULL;
END $$;

CREATE TRIGGER stats_rollup_insert AFTER INSERT ON meta_ads_insights
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION meta_ads_insights_rollup();
CREATE TRIGGER stats_rollup_update AFTER UPDATE ON meta_ads_insights
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION meta_ads_insights_rollup();
CREATE TRIGGER stats_rollup_delete AFTER DELETE ON meta_ads_insights
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION meta_ads_insights_rollup();

-- Leads: counts and sums only, so a statement's net change per month is added (a month can hold
-- tens of thousands of leads; recomputing it per write would not scale). Old rows count -1 and
-- new rows +1, which also covers a lead moving campaign, month or currency, or becoming 'won'.
CREATE FUNCTION leads_meta_rollup_apply(p_delta jsonb) RETURNS void
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    INSERT INTO leads_meta_monthly AS m (tenant_id, campaign_id, currency, month, leads,
                                         won_leads, revenue)
    SELECT d.tenant_id, d.campaign_id, d.currency, d.month, d.leads, d.won_leads, d.revenue
    FROM jsonb_to_recordset(p_delta) AS d(tenant_id text, campaign_id text, currency text,
                                          month date, leads bigint, won_leads bigint,
                                          revenue numeric)
    WHERE d.leads <> 0 OR d.won_leads <> 0 OR d.revenue <> 0
    ORDER BY d.tenant_id, d.campaign_id, d.currency, d.month
    ON CONFLICT (tenant_id, campaign_id, currency, month) DO UPDATE SET
        leads = m.leads + EXCLUDED.leads, won_leads = m.won_leads + EXCLUDED.won_leads,
        revenue = m.revenue + EXCLUDED.revenue;
$$;

-- The net change of one statement per (tenant, campaign, currency, month), Meta leads only. An
-- update of other columns (a contact timestamp, an opt-out) nets to zero and writes nothing.
CREATE FUNCTION leads_meta_rollup() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    delta jsonb;
BEGIN
    EXECUTE format($q$
    SELECT jsonb_agg(g) FROM (
        SELECT tenant_id, meta_campaign_id AS campaign_id, deal_currency AS currency,
               date_trunc('month', created_at AT TIME ZONE 'UTC')::date AS month,
               sum(sign) AS leads,
               coalesce(sum(sign) FILTER (WHERE status = 'won'), 0) AS won_leads,
               coalesce(sum(sign * deal_value) FILTER (WHERE status = 'won'), 0) AS revenue
        FROM (%s) c
        WHERE meta_campaign_id IS NOT NULL
           OR lower(lead_source) IN ('meta', 'meta_ads', 'facebook', 'facebook_ads', 'instagram',
                                     'instagram_ads', 'fb', 'ig', 'meta_lead_ads',
                                     'facebook_lead_ads')
        GROUP BY 1, 2, 3, 4
    ) g
    $q$, stats_rollup_changed_rows(TG_OP)) INTO delta;
    IF delta IS NOT NULL THEN
        PERFORM leads_meta_rollup_apply(delta);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER stats_rollup_insert AFTER INSERT ON leads
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION leads_meta_rollup();
CREATE TRIGGER stats_rollup_update AFTER UPDATE ON leads
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION leads_meta_rollup();
CREATE TRIGGER stats_rollup_delete AFTER DELETE ON leads
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION leads_meta_rollup();

REVOKE ALL ON FUNCTION meta_ads_insights_rollup(), leads_meta_rollup(),
    leads_meta_rollup_apply(jsonb) FROM PUBLIC;

-- Backfill what is already stored (the migration holds its locks until it commits, so no write
-- slips between the backfill and the triggers).
LOCK TABLE leads, meta_ads_insights IN SHARE ROW EXCLUSIVE MODE;
INSERT INTO meta_ads_insights_monthly (tenant_id, campaign_id, currency, month, spend,
                                       impressions, clicks, leads, first_date, last_date)
SELECT tenant_id, campaign_id, currency, date_trunc('month', date)::date, sum(spend),
       sum(impressions), sum(clicks), sum(leads), min(date), max(date)
FROM meta_ads_insights
GROUP BY 1, 2, 3, 4;
INSERT INTO leads_meta_monthly (tenant_id, campaign_id, currency, month, leads, won_leads,
                                revenue)
SELECT tenant_id, meta_campaign_id, deal_currency,
       date_trunc('month', created_at AT TIME ZONE 'UTC')::date, count(*),
       count(*) FILTER (WHERE status = 'won'),
       coalesce(sum(deal_value) FILTER (WHERE status = 'won'), 0)
FROM leads
WHERE meta_campaign_id IS NOT NULL
   OR lower(lead_source) IN ('meta', 'meta_ads', 'facebook', 'facebook_ads', 'instagram',
                             'instagram_ads', 'fb', 'ig', 'meta_lead_ads', 'facebook_lead_ads')
GROUP BY 1, 2, 3, 4;

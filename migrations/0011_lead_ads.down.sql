-- Undo 0011: Lead Ads' lookups, tables and lead columns. Leads stored from lead forms stay (as
-- rows without their Meta form and leadgen columns; external_ids keeps both).
DROP FUNCTION IF EXISTS lead_pages_due(timestamptz, text, text, integer);
DROP FUNCTION IF EXISTS lead_page_tenant(text);

DROP INDEX IF EXISTS leads_lead_ads_idx;
DROP INDEX IF EXISTS leads_meta_form_idx;
DROP INDEX IF EXISTS leads_meta_leadgen_idx;
ALTER TABLE leads
    DROP COLUMN IF EXISTS meta_page_id,
    DROP COLUMN IF EXISTS meta_form_id,
    DROP COLUMN IF EXISTS meta_leadgen_id;

DROP TABLE IF EXISTS lead_reads;
DROP TABLE IF EXISTS meta_pages;

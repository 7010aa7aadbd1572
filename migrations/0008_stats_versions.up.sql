-- A per-tenant version of everything the marketing stats are computed from, so that an answer
-- can be cached until its data changes (shared/stats_answers.py; issue 9: stats under load).
--
-- Why an append-only log and not a counter row: a counter would be a row every writer of the
-- tenant updates, so the CRM's concurrent lead writes would queue behind each other until
-- commit. Appending takes no lock anyone waits for. The version is the sum of the `weight` of
-- the rows a snapshot sees: it grows with every committed write, and a later snapshot sees
-- every commit an earlier one saw, so two snapshots with the same version saw the same data.
-- `stats_compact_changes` folds old rows into one row of the same total weight (one atomic
-- statement), which keeps the log short without changing any version.
CREATE TABLE stats_changes (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL,
    weight    bigint NOT NULL DEFAULT 1
);
CREATE INDEX stats_changes_tenant_idx ON stats_changes (tenant_id, id) INCLUDE (weight);

ALTER TABLE stats_changes ENABLE ROW LEVEL SECURITY;
ALTER TABLE stats_changes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON stats_changes FOR SELECT
    USING (tenant_id = app_current_tenant());
CREATE POLICY stats_changes_maintenance ON stats_changes TO CURRENT_USER
    USING (true) WITH CHECK (true);
GRANT SELECT ON stats_changes TO marketing_app;

-- One row per tenant a statement changed (old or new rows), whoever wrote: the sync (insights,
-- campaigns, accounts) or the CRM (leads). Statement-level, so a bulk write appends once.
CREATE FUNCTION stats_note_change() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    EXECUTE format(
        'INSERT INTO stats_changes (tenant_id) SELECT DISTINCT tenant_id FROM (%s) c',
        stats_rollup_changed_rows(TG_OP));
    RETURN NULL;
END $$;

-- Folds the current tenant's rows (those this statement sees) into one row of the same total
-- weight. A concurrent fold waits for this one, then finds those rows gone and folds only what
-- it deleted itself, so the total never changes.
CREATE FUNCTION stats_compact_changes() RETURNS void
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    WITH folded AS (
        DELETE FROM stats_changes WHERE tenant_id = app_current_tenant() RETURNING weight
    )
    INSERT INTO stats_changes (tenant_id, weight)
    SELECT app_current_tenant(), sum(weight) FROM folded HAVING count(*) > 0;
$$;

REVOKE ALL ON FUNCTION stats_note_change(), stats_compact_changes() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION stats_compact_changes() TO marketing_app;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['leads', 'meta_ads_insights', 'meta_ads_campaigns',
                             'tenant_meta_accounts'] LOOP
        EXECUTE format('CREATE TRIGGER stats_version_insert AFTER INSERT ON %I'
                       ' REFERENCING NEW TABLE AS new_rows'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION stats_note_change()', t);
        EXECUTE format('CREATE TRIGGER stats_version_update AFTER UPDATE ON %I'
                       ' REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION stats_note_change()', t);
        EXECUTE format('CREATE TRIGGER stats_version_delete AFTER DELETE ON %I'
                       ' REFERENCING OLD TABLE AS old_rows'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION stats_note_change()', t);
    END LOOP;
END $$;

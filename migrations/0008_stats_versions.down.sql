DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['leads', 'meta_ads_insights', 'meta_ads_campaigns',
                             'tenant_meta_accounts'] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS stats_version_insert ON %I', t);
        EXECUTE format('DROP TRIGGER IF EXISTS stats_version_update ON %I', t);
        EXECUTE format('DROP TRIGGER IF EXISTS stats_version_delete ON %I', t);
    END LOOP;
END $$;
DROP FUNCTION IF EXISTS stats_compact_changes();
DROP FUNCTION IF EXISTS stats_note_change();
DROP TABLE IF EXISTS stats_changes;

DROP TABLE IF EXISTS webhook_deliveries;
DROP TABLE IF EXISTS meta_call_budgets;

-- Functions and policies go back to the migrating role. marketing_lookup itself stays, like
-- marketing_app: roles belong to the whole cluster, and another database may use it.
DO $$
DECLARE
    fn record;
    policy record;
BEGIN
    FOR fn IN
        SELECT proc.oid::regprocedure AS signature
        FROM pg_proc proc JOIN pg_namespace n ON n.oid = proc.pronamespace
        WHERE n.nspname = 'public'
          AND proc.proowner = (SELECT oid FROM pg_roles WHERE rolname = 'marketing_lookup')
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO CURRENT_USER', fn.signature);
    END LOOP;
    FOR policy IN
        SELECT pol.polname, c.relname
        FROM pg_policy pol
        JOIN pg_class c ON c.oid = pol.polrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public'
          AND pol.polroles = ARRAY[(SELECT oid FROM pg_roles WHERE rolname = 'marketing_lookup')]
    LOOP
        EXECUTE format('ALTER POLICY %I ON %I TO CURRENT_USER', policy.polname, policy.relname);
    END LOOP;
END $$;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM marketing_lookup;

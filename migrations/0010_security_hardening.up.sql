-- Security hardening (issue 18): the lookup policies move to a NOLOGIN role, per-tenant budgets
-- for the routes that call Meta, and the webhook's delivery log. Additive.

-- 1. The lookup role.
-- The cross-tenant lookups (which tenants have work, which tenant owns a number) and the stats
-- triggers are SECURITY DEFINER functions; their policies (USING (true)) were scoped TO
-- CURRENT_USER, i.e. to the schema owner. Functions connected as the owner by mistake (the
-- template accepts any secret for DATABASE_SECRET_ARN) therefore saw every tenant's rows. Now
-- they belong to marketing_lookup: NOLOGIN, so no connection can ever be that role; the
-- functions run as it, and marketing_app only gets EXECUTE on them, never the role itself
-- (membership would put the USING (true) policies on every query the app makes).
-- shared/platform/db.py refuses to serve as a role that owns the tables, has BYPASSRLS or is
-- subject to any role-scoped policy.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'marketing_lookup') THEN
        CREATE ROLE marketing_lookup NOLOGIN NOINHERIT NOBYPASSRLS;
    END IF;
    -- Giving objects to a role needs the right to SET ROLE to it (PostgreSQL 16). Without
    -- INHERIT the owner does not see through the role's policies in its own sessions; a later
    -- migration that must (a backfill) runs `SET LOCAL ROLE marketing_lookup`.
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       AND NOT pg_has_role(current_user, 'marketing_lookup', 'SET') THEN
        BEGIN
            EXECUTE format('GRANT marketing_lookup TO %I WITH INHERIT FALSE, SET TRUE',
                           current_user);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'The migrating role % cannot SET ROLE marketing_lookup. As the '
                'master user: GRANT marketing_lookup TO % WITH INHERIT FALSE, SET TRUE '
                '(docs/DEPLOY.md)', current_user, current_user;
        END;
    END IF;
END $$;

-- Every policy scoped to the migrating role moves to marketing_lookup, with the table
-- privileges its command needs (0003, 0004, 0005, 0006, 0007, 0008, and any migration before
-- this one that followed their pattern).
DO $$
DECLARE
    policy record;
BEGIN
    FOR policy IN
        SELECT pol.polname, c.relname, pol.polcmd
        FROM pg_policy pol
        JOIN pg_class c ON c.oid = pol.polrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public'
          AND pol.polroles = ARRAY[(SELECT oid FROM pg_roles WHERE rolname = current_user)]
        ORDER BY c.relname, pol.polname
    LOOP
        EXECUTE format('ALTER POLICY %I ON %I TO marketing_lookup', policy.polname,
                       policy.relname);
        EXECUTE format('GRANT %s ON %I TO marketing_lookup',
                       CASE policy.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT'
                                     WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE'
                                     ELSE 'SELECT, INSERT, UPDATE, DELETE' END,
                       policy.relname);
    END LOOP;
END $$;

-- ...and every SECURITY DEFINER function the migrating role owns runs as marketing_lookup. A new
-- owner needs CREATE on the schema for the hand-over only.
GRANT CREATE ON SCHEMA public TO marketing_lookup;
DO $$
DECLARE
    fn record;
BEGIN
    FOR fn IN
        SELECT proc.oid::regprocedure AS signature
        FROM pg_proc proc JOIN pg_namespace n ON n.oid = proc.pronamespace
        WHERE n.nspname = 'public' AND proc.prosecdef
          AND proc.proowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO marketing_lookup', fn.signature);
    END LOOP;
END $$;
REVOKE CREATE ON SCHEMA public FROM marketing_lookup;

-- 2. Per-tenant budgets for the routes that call Meta on a click (shared/connection/budget.py).
-- One token bucket per tenant: `tokens` as of `refilled_at`; a request takes one token after
-- adding what the time since `refilled_at` refilled. One row per tenant, updated in place by a
-- single statement, so every Lambda container draws from the same bucket.
CREATE TABLE meta_call_budgets (
    tenant_id   text PRIMARY KEY,
    tokens      double precision NOT NULL,
    refilled_at timestamptz NOT NULL
);
ALTER TABLE meta_call_budgets ENABLE ROW LEVEL SECURITY;
ALTER TABLE meta_call_budgets FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON meta_call_budgets USING (tenant_id = app_current_tenant())
    WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE ON meta_call_budgets TO marketing_app;

-- 3. Webhook deliveries already processed (shared/whatsapp/webhook.py): the SHA-256 of the
-- signed body, written once every tenant's part of it is applied. Meta retries a delivery for
-- up to 7 days; a body seen before is answered 200 without being applied again. No tenant data:
-- a hash and a time, so no row-level security (a delivery may concern several tenants).
CREATE TABLE webhook_deliveries (
    body_sha256 bytea PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_received_idx ON webhook_deliveries (received_at);
GRANT SELECT, INSERT, DELETE ON webhook_deliveries TO marketing_app;

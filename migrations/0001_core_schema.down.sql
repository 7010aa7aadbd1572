DROP TABLE IF EXISTS automation_logs, automation_rules, meta_templates, whatsapp_senders,
    meta_ads_insights, meta_ads_campaigns, tenant_meta_accounts, credentials, leads;
DROP FUNCTION IF EXISTS app_current_tenant();

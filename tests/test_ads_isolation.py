"""Tenant B sees none of tenant A's ad accounts, campaigns, leads or stats, even when it sends
`X-Tenant-ID: A` (the original plan's isolation test), through every ads route and in Postgres."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.platform.db import tenant_tx
from tests.ads_support import connect_meta, query, run_sync

pytest_plugins = ["tests.fixtures_ads"]

TABLES = ("tenant_meta_accounts", "meta_ads_campaigns", "meta_ads_insights", "leads",
          "credentials")


def test_tenant_b_sees_nothing_of_tenant_a(api, meta_tenant, ads_control, other_tenant_id):
    a = meta_tenant.tenant_id
    b = other_tenant_id
    account_id = meta_tenant.layout["demo_account_id"]
    assert api.post("/crm/marketing/connect", tenant_id=a, role="admin",
                    json={"account_id": account_id}).status_code == 200
    assert run_sync(a, account_id)["outcome"] == "completed"
    campaign_id = query(a, "SELECT campaign_id FROM meta_ads_campaigns LIMIT 1")[0]["campaign_id"]
    with tenant_tx(a) as conn:
        conn.execute("INSERT INTO leads (tenant_id, name, meta_campaign_id, status, deal_value,"
                     " created_at) VALUES (%s, 'Lead A', %s, 'won', 1000, %s)",
                     (a, campaign_id, datetime.now(UTC)))

    # What A sees, so the checks on B below could fail.
    a_stats = api.get("/crm/marketing/stats", tenant_id=a, role="member").json()
    assert a_stats["campaigns"] and a_stats["totals"]
    assert api.get("/crm/marketing/campaigns", tenant_id=a, role="member").json()["campaigns"]

    spoof = {"X-Tenant-ID": a, "X-Tenant-Id": a}
    # B without a Meta connection: A's connection is not used for B.
    response = api.get("/crm/marketing/meta-accounts", tenant_id=b, role="admin", headers=spoof)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "meta_not_connected"

    # B connected to its own Meta user (who has no ad accounts).
    b_user = ads_control.new_user(layout="empty")
    connect_meta(ads_control, b, b_user["user_id"])
    response = api.get("/crm/marketing/meta-accounts", tenant_id=b, role="admin", headers=spoof)
    assert response.status_code == 200
    assert response.json()["accounts"] == []

    for path in ("/crm/marketing/campaigns", "/crm/marketing/stats",
                 "/crm/marketing/stats/roi"):
        for role in ("member", "admin"):
            body = api.get(path, tenant_id=b, role=role, headers=spoof).json()
            assert body["campaigns"] == [], path
            assert body.get("totals", []) == [] and body.get("unattributed", []) == []
    assert account_id not in api.get("/crm/marketing/campaigns", tenant_id=b, role="member",
                                     headers=spoof,
                                     params={"account_id": account_id}).text

    # B cannot connect A's account (its Meta user cannot read it), nor sync it through an event.
    response = api.post("/crm/marketing/connect", tenant_id=b, role="admin", headers=spoof,
                        json={"account_id": account_id})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "account_not_accessible"
    assert run_sync(b, account_id)["outcome"] == "not_found"

    # And in Postgres, as the app role in B's transaction, even when asking for A's rows.
    for table in TABLES:
        rows = query(b, f"SELECT count(*) AS n FROM {table} WHERE tenant_id = %s", (a,))
        assert rows[0]["n"] == 0, table
        assert query(a, f"SELECT count(*) AS n FROM {table}")[0]["n"] > 0, table
    assert query(b, "SELECT count(*) AS n FROM tenant_meta_accounts")[0]["n"] == 0
    assert query(b, "SELECT count(*) AS n FROM meta_ads_insights")[0]["n"] == 0

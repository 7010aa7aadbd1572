"""GET /crm/marketing/campaigns, /stats and /stats/roi on a small data set computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.ads.stats_store import META_LEAD_SOURCES
from shared.platform.db import tenant_tx
from tests.ads_support import insert_account

pytest_plugins = ["tests.fixtures_ads"]

MARCH = {"from": "2026-03-01", "to": "2026-03-31"}

# (campaign, day, spend, impressions, clicks, Meta-reported leads)
INSIGHTS = [
    ("c1", "2026-03-01", "100.00", 1000, 50, 4),
    ("c1", "2026-03-02", "50.50", 500, 20, 1),
    ("c1", "2026-04-10", "30.00", 300, 10, 0),   # outside March
    ("c2", "2026-03-01", "200.00", 2000, 80, 2),
    ("c3", "2026-03-02", "80.00", 900, 30, 3),
]
# (name, created, campaign, lead_source, status, deal_value, deal_currency)
LEADS = [
    ("L1", "2026-03-01", "c1", "meta_ads", "won", "500", "EUR"),
    ("L2", "2026-03-02", "c1", None, "won", "250", None),      # currency: its campaign's (EUR)
    ("L3", "2026-03-03", "c1", None, "new", None, None),
    ("L4", "2026-03-04", "c1", None, "lost", "999", "EUR"),    # not won: no revenue
    ("L5", "2026-03-05", "c2", None, "new", None, None),
    ("L6", "2026-03-05", "c2", None, "won", "100", "USD"),     # USD deal on an EUR campaign
    ("L7", "2026-03-06", "c3", None, "won", "300", None),      # USD campaign
    ("L8", "2026-03-06", "c3", None, "contacted", None, None),
    ("L9", "2026-03-07", None, "Facebook", "won", "50", "EUR"),  # Meta, no campaign
    ("L10", "2026-03-07", None, "facebook_ads", "new", None, None),
    ("L11", "2026-03-08", None, "website", "won", "1000", "EUR"),  # not from Meta
    ("L12", "2026-03-09", "c999", None, "new", None, None),    # campaign not synced
    ("L13", "2026-04-10", "c1", None, "won", "700", "EUR"),    # outside March
]


def _seed(tenant_id: str) -> None:
    insert_account(tenant_id, "act_1", currency="EUR", name="Cuenta EUR")
    insert_account(tenant_id, "act_2", currency="USD", name="Cuenta USD")
    with tenant_tx(tenant_id) as conn:
        for campaign, account, name in (("c1", "act_1", "Primavera"), ("c2", "act_1", "Verano"),
                                        ("c3", "act_2", "Mexico")):
            conn.execute("INSERT INTO meta_ads_campaigns (tenant_id, campaign_id, account_id,"
                         " name, status) VALUES (%s, %s, %s, %s, 'ACTIVE')",
                         (tenant_id, campaign, account, name))
        for campaign, day, spend, impressions, clicks, leads in INSIGHTS:
            account, currency = ("act_2", "USD") if campaign == "c3" else ("act_1", "EUR")
            conn.execute("INSERT INTO meta_ads_insights (tenant_id, campaign_id, date, account_id,"
                         " currency, spend, impressions, clicks, leads)"
                         " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                         (tenant_id, campaign, day, account, currency, spend, impressions,
                          clicks, leads))
        for name, created, campaign, source, status, value, currency in LEADS:
            conn.execute("INSERT INTO leads (tenant_id, name, created_at, meta_campaign_id,"
                         " lead_source, status, deal_value, deal_currency)"
                         " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                         (tenant_id, name, datetime.fromisoformat(created).replace(
                             hour=12, tzinfo=UTC), campaign, source, status, value, currency))


@pytest.fixture
def stats_tenant(tenant_id) -> str:
    _seed(tenant_id)
    return tenant_id


def _by_campaign(body: dict) -> dict[str, dict]:
    return {c["campaign_id"]: c for c in body["campaigns"]}


def _by_currency(body: dict) -> dict[str | None, dict]:
    return {t["currency"]: t for t in body["totals"]}


def test_stats_per_campaign_and_total_match_the_hand_computed_figures(api, stats_tenant):
    response = api.get("/crm/marketing/stats", tenant_id=stats_tenant, role="member",
                       params=MARCH)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from"], body["to"]) == ("2026-03-01", "2026-03-31")
    campaigns = _by_campaign(body)
    assert set(campaigns) == {"c1", "c2", "c3", "c999"}
    c1 = campaigns["c1"]
    assert (c1["name"], c1["account_id"], c1["currency"]) == ("Primavera", "act_1", "EUR")
    assert (c1["spend"], c1["impressions"], c1["clicks"], c1["meta_leads"]) == (150.5, 1500, 70, 5)
    assert (c1["leads"], c1["won_leads"], c1["revenue"]) == (4, 2, 750.0)  # L1..L4; L1 + L2
    assert c1["cost_per_lead"] == 37.63  # 150.50 / 4 = 37.625
    assert c1["roi"] == 3.9834  # (750 - 150.50) / 150.50 = 3.98338...
    c2 = campaigns["c2"]
    assert (c2["spend"], c2["leads"], c2["won_leads"], c2["revenue"]) == (200.0, 2, 1, 0.0)
    assert c2["revenue_other_currencies"] == [{"currency": "USD", "amount": 100.0}]
    assert (c2["cost_per_lead"], c2["roi"]) == (100.0, -1.0)  # USD revenue stays out of ROI
    c3 = campaigns["c3"]
    assert (c3["currency"], c3["spend"], c3["leads"], c3["won_leads"]) == ("USD", 80.0, 2, 1)
    assert (c3["revenue"], c3["cost_per_lead"], c3["roi"]) == (300.0, 40.0, 2.75)
    c999 = campaigns["c999"]
    assert (c999["name"], c999["currency"], c999["spend"], c999["leads"]) == (None, None, 0.0, 1)
    assert (c999["cost_per_lead"], c999["roi"]) == (0.0, None)  # no spend synced: no ROI

    assert body["unattributed"] == [
        {"currency": "EUR", "leads": 1, "won_leads": 1, "revenue": 50.0},   # L9
        {"currency": None, "leads": 1, "won_leads": 0, "revenue": 0.0},     # L10
    ]
    totals = _by_currency(body)
    assert set(totals) == {"EUR", "USD", None}  # never one sum across currencies
    eur = totals["EUR"]
    assert (eur["spend"], eur["impressions"], eur["clicks"], eur["meta_leads"]) == (
        350.5, 3500, 150, 7)
    assert (eur["leads"], eur["won_leads"], eur["revenue"]) == (7, 4, 800.0)  # c1+c2+L9
    assert eur["cost_per_lead"] == 50.07  # 350.50 / 7
    assert eur["roi"] == 1.2825  # (800 - 350.50) / 350.50
    usd = totals["USD"]
    assert (usd["spend"], usd["leads"], usd["won_leads"], usd["revenue"]) == (80.0, 2, 1, 400.0)
    assert (usd["cost_per_lead"], usd["roi"]) == (40.0, 4.0)  # L7 300 + L6 100
    none = totals[None]
    assert (none["spend"], none["leads"], none["revenue"], none["roi"]) == (0.0, 2, 0.0, None)


def test_without_a_range_everything_counts(api, stats_tenant):
    body = api.get("/crm/marketing/stats", tenant_id=stats_tenant, role="member").json()
    c1 = _by_campaign(body)["c1"]
    assert (c1["spend"], c1["leads"], c1["won_leads"], c1["revenue"]) == (180.5, 5, 3, 1450.0)
    assert (body["from"], body["to"]) == (None, None)


def test_roi_view_ranks_campaigns_by_return(api, stats_tenant):
    response = api.get("/crm/marketing/stats/roi", tenant_id=stats_tenant, role="member",
                       params=MARCH)

    assert response.status_code == 200
    body = response.json()
    assert [c["campaign_id"] for c in body["campaigns"]] == ["c1", "c3", "c2", "c999"]
    assert [c["roi"] for c in body["campaigns"]] == [3.9834, 2.75, -1.0, None]
    assert body["campaigns"][0] == {
        "campaign_id": "c1", "name": "Primavera", "account_id": "act_1", "currency": "EUR",
        "spend": 150.5, "leads": 4, "won_leads": 2, "revenue": 750.0,
        "revenue_other_currencies": [], "roi": 3.9834}
    totals = _by_currency(body)
    assert (totals["EUR"]["revenue"], totals["EUR"]["roi"]) == (800.0, 1.2825)
    assert (totals["USD"]["revenue"], totals["USD"]["roi"]) == (400.0, 4.0)


def test_campaigns_lists_synced_campaigns_with_insight_totals(api, stats_tenant):
    response = api.get("/crm/marketing/campaigns", tenant_id=stats_tenant, role="member",
                       params=MARCH)

    assert response.status_code == 200
    campaigns = response.json()["campaigns"]
    assert [c["campaign_id"] for c in campaigns] == ["c2", "c1", "c3"]  # by spend
    c1 = campaigns[1]
    assert (c1["spend"], c1["impressions"], c1["clicks"], c1["leads"]) == (150.5, 1500, 70, 5)
    assert (c1["cost_per_lead"], c1["currency"], c1["account_name"]) == (30.1, "EUR",
                                                                         "Cuenta EUR")
    assert (c1["first_date"], c1["last_date"]) == ("2026-03-01", "2026-03-02")

    only_usd = api.get("/crm/marketing/campaigns", tenant_id=stats_tenant, role="member",
                       params={"account_id": "2"}).json()["campaigns"]
    assert [c["campaign_id"] for c in only_usd] == ["c3"]


@pytest.mark.parametrize("path", ["/crm/marketing/stats", "/crm/marketing/stats/roi",
                                  "/crm/marketing/campaigns"])
@pytest.mark.parametrize("params, field", [
    ({"from": "2026-04-01", "to": "2026-03-01"}, "from"),
    ({"from": "2026-13-01"}, "from"),
    ({"to": "yesterday"}, "to"),
    ({"from": "2020-01-01", "to": "2026-01-01"}, "to"),
])
def test_bad_ranges_are_422(api, stats_tenant, path, params, field):
    response = api.get(path, tenant_id=stats_tenant, role="member", params=params)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in [d["field"] for d in error["details"]]


def test_bad_account_filter_is_422(api, stats_tenant):
    response = api.get("/crm/marketing/campaigns", tenant_id=stats_tenant, role="member",
                       params={"account_id": "act_x"})
    assert response.status_code == 422


def test_empty_tenant_gets_empty_figures(api, tenant_id):
    body = api.get("/crm/marketing/stats", tenant_id=tenant_id, role="member").json()
    assert (body["campaigns"], body["unattributed"], body["totals"]) == ([], [], [])


def test_meta_lead_sources_match_the_partial_index():
    migration = (Path(__file__).resolve().parent.parent / "migrations"
                 / "0004_ads.up.sql").read_text()
    index = migration[migration.index("CREATE INDEX leads_meta_stats_idx"):]
    index = index[: index.index(";")]
    assert all(f"'{source}'" in index for source in META_LEAD_SOURCES)
    assert index.count("'") == 2 * len(META_LEAD_SOURCES)

"""Lead Ads: GET /crm/marketing/leads/ads (newest first, with campaign, ad, form and whether a
follow-up was sent) and tenant isolation on the new routes and tables."""

from __future__ import annotations

import time

import psycopg

from shared.leads import pages_store
from shared.platform.db import tenant_tx
from tests.fixtures_leads import connect_meta, drain_leads, lead_rows, read_rows
from tests.fixtures_whatsapp import insert_lead, insert_log, insert_rule

pytest_plugins = ["tests.fixtures_leads"]


def _campaign(tenant_id: str, campaign_id: str, name: str) -> None:
    with tenant_tx(tenant_id) as conn:
        conn.execute("INSERT INTO meta_ads_campaigns (tenant_id, campaign_id, account_id, name)"
                     " VALUES (%s, %s, 'act_1', %s)", (tenant_id, campaign_id, name))


def test_leads_are_listed_newest_first_with_campaign_and_follow_up(api, pages, connected_page):
    page = connected_page
    now = int(time.time())
    _campaign(page.tenant_id, "555", "Black Friday")
    older = pages.create_leads(page.page_id, deliver="sync", created_time=now - 120,
                               campaign_id="555", ad_id="556", name="Older")[0]
    newer = pages.create_leads(page.page_id, form_id=page.form_ids[1], deliver="sync",
                               created_time=now - 60, name="Newer")[0]
    drain_leads()
    by_leadgen = {r["meta_leadgen_id"]: r for r in lead_rows(page.tenant_id)}
    rule = insert_rule(page.tenant_id)
    insert_log(page.tenant_id, rule, str(by_leadgen[older["id"]]["id"]), status="DELIVERED")
    insert_lead(page.tenant_id, name="Not from a form")  # another source: not listed

    first = api.get("/crm/marketing/leads/ads", tenant_id=page.tenant_id, role="member",
                    params={"limit": 1})
    assert first.status_code == 200
    body = first.json()
    assert [lead["leadgen_id"] for lead in body["leads"]] == [newer["id"]]
    assert body["leads"][0]["followup_sent"] is False
    assert body["leads"][0]["form_id"] == page.form_ids[1]
    second = api.get("/crm/marketing/leads/ads", tenant_id=page.tenant_id,
                     params={"limit": 1, "cursor": body["next_cursor"]}).json()
    [lead] = second["leads"]
    assert second["next_cursor"] is None
    assert lead["leadgen_id"] == older["id"] and lead["name"] == "Older"
    assert lead["campaign"] == {"id": "555", "name": "Black Friday"}
    assert (lead["ad_id"], lead["page_id"]) == ("556", page.page_id)
    assert lead["followup_sent"] is True


def test_a_bad_cursor_or_limit_is_422(api, tenant_id):
    for params in ({"cursor": "nope"}, {"limit": 0}, {"limit": 201}, {"limit": "x"}):
        response = api.get("/crm/marketing/leads/ads", tenant_id=tenant_id, params=params)
        assert response.status_code == 422, params
        assert response.json()["error"]["code"] == "validation_error"


def test_tenants_never_see_each_other_s_pages_reads_or_leads(api, meta, pages, connected_page,
                                                            other_tenant_id):
    page = connected_page
    pages.create_leads(page.page_id, deliver="sync")
    drain_leads()
    connect_meta(meta, other_tenant_id)

    assert api.get("/crm/marketing/leads/ads", tenant_id=other_tenant_id).json() == {
        "leads": [], "next_cursor": None}
    listed = api.get("/crm/marketing/pages", tenant_id=other_tenant_id).json()["pages"]
    assert all(p["connected"] is False for p in listed)  # the same person's Page, not ours
    # Row-level security: the other tenant's transaction sees none of A's rows...
    assert lead_rows(other_tenant_id) == [] and read_rows(other_tenant_id) == []
    with tenant_tx(other_tenant_id) as conn:
        assert pages_store.get(conn, page.page_id) is None
        assert conn.execute("SELECT count(*) AS n FROM meta_pages").fetchone()["n"] == 0
        # ...and cannot write rows in A's name.
        try:
            with conn.transaction():
                conn.execute("INSERT INTO lead_reads (tenant_id, leadgen_id, page_id)"
                             " VALUES (%s, '1', '1')", (page.tenant_id,))
            raise AssertionError("RLS let a row of another tenant in")
        except psycopg.errors.InsufficientPrivilege:
            pass
    assert len(lead_rows(page.tenant_id)) == 1


def test_a_notification_for_a_page_reaches_only_its_tenant(api, meta, pages, connected_page,
                                                           other_tenant_id):
    """Both tenants have Pages of the same person; a lead of A's Page is A's alone."""
    page = connected_page
    connect_meta(meta, other_tenant_id)
    other_page = pages.create_page("10001")["page_id"]
    assert api.post("/crm/marketing/pages/connect", tenant_id=other_tenant_id,
                    json={"page_id": other_page}).status_code == 200
    lead = pages.create_leads(page.page_id, deliver="sync")[0]
    drain_leads()
    assert [r["meta_leadgen_id"] for r in lead_rows(page.tenant_id)] == [lead["id"]]
    assert lead_rows(other_tenant_id) == []

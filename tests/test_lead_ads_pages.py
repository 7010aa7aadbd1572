"""Lead Ads, the Pages routes (issue 22): listing the Pages a person can advertise on, and
connecting one: its Page token sealed, the app subscribed to `leadgen`, 90 days of leads
imported; each refusal the contract names, and the optional scopes."""

from __future__ import annotations

import time

from shared.connection.oauth_dialog import dialog_url
from shared.leads import pages_store
from shared.platform.db import tenant_tx
from shared.platform.settings import DEFAULT_SCOPES, LEAD_ADS_SCOPES
from tests.fixtures_leads import connect_meta, connect_page, lead_rows, read_rows

pytest_plugins = ["tests.fixtures_leads", "tests.fixtures_tokens"]

DAY = 86400


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    return body["error"]


def test_pages_lists_what_the_person_can_advertise_on_and_what_is_connected(
        api, pages, lead_page):
    other = pages.create_page("10001", name="Zeta sin anunciar", tasks=["ANALYZE"])
    connect_page(api, lead_page)

    response = api.get("/crm/marketing/pages", tenant_id=lead_page.tenant_id)

    assert response.status_code == 200
    listed = {p["id"]: p for p in response.json()["pages"]}
    assert listed[lead_page.page_id] == {"id": lead_page.page_id,
                                         "name": f"Página {lead_page.tenant_id}",
                                         "connected": True}
    assert other["page_id"] not in listed  # no ADVERTISE task on it
    assert all(set(p) == {"id", "name", "connected"} for p in listed.values())
    assert "access_token" not in response.text and "EAA" not in response.text


def test_connect_seals_the_page_token_subscribes_and_imports_90_days(api, pages, lead_page,
                                                                     meta):
    now = int(time.time())
    recent = pages.create_leads(lead_page.page_id, count=3, deliver="none",
                                created_time=now - 5 * DAY, campaign_id="777")
    pages.create_leads(lead_page.page_id, form_id=lead_page.form_ids[1], deliver="none",
                       created_time=now - 89 * DAY)
    pages.create_leads(lead_page.page_id, deliver="none", created_time=now - 91 * DAY)

    response = connect_page(api, lead_page)

    assert response.status_code == 200, response.text
    assert response.json() == {"status": "connected", "page_id": lead_page.page_id,
                               "page_name": f"Página {lead_page.tenant_id}", "imported": 4}
    assert pages.page(lead_page.page_id)["subscribed"] == {"1234567890": ["leadgen"]}
    rows = lead_rows(lead_page.tenant_id)
    assert len(rows) == 4 and {r["meta_leadgen_id"] for r in rows} >= {r["id"] for r in recent}
    assert all(r["state"] == "stored" for r in read_rows(lead_page.tenant_id))
    with tenant_tx(lead_page.tenant_id) as conn:
        stored = pages_store.get(conn, lead_page.page_id)
        raw = conn.execute("SELECT ciphertext FROM meta_pages WHERE page_id = %s",
                           (lead_page.page_id,)).fetchone()["ciphertext"]
    token = stored.token()
    assert token.startswith("EAA") and token.encode() not in bytes(raw)
    assert stored.reconciled_at is not None and stored.default_country == "AR"
    # Connecting again is harmless: nothing imported twice.
    again = connect_page(api, lead_page)
    assert again.json()["imported"] == 0 and len(lead_rows(lead_page.tenant_id)) == 4
    assert not any(r["credential_in_url"] for r in meta.requests())


def test_connect_refuses_a_page_id_that_is_not_digits(api, lead_page):
    for bad in ("abc", "12a", "", " ", "1" * 40, 123):
        response = api.post("/crm/marketing/pages/connect", tenant_id=lead_page.tenant_id,
                            json={"page_id": bad})
        assert response.status_code == 422, bad
        assert response.json()["error"]["code"] == "validation_error"
    assert api.post("/crm/marketing/pages/connect", tenant_id=lead_page.tenant_id,
                    content=b"{not json").status_code == 422


def test_connect_without_a_meta_connection_is_409(api, tenant_id):
    _error(api.post("/crm/marketing/pages/connect", tenant_id=tenant_id,
                    json={"page_id": "123"}), 409, "meta_not_connected")
    _error(api.get("/crm/marketing/pages", tenant_id=tenant_id), 409, "meta_not_connected")


def test_a_page_the_person_cannot_reach_is_400_page_not_accessible(api, pages, lead_page):
    someone_else = pages.create_page("10002")
    _error(api.post("/crm/marketing/pages/connect", tenant_id=lead_page.tenant_id,
                    json={"page_id": someone_else["page_id"]}), 400, "page_not_accessible")
    _error(api.post("/crm/marketing/pages/connect", tenant_id=lead_page.tenant_id,
                    json={"page_id": "999999999999"}), 400, "page_not_accessible")
    with tenant_tx(lead_page.tenant_id) as conn:
        assert pages_store.connected_ids(conn) == set()


def test_a_page_feeding_another_tenant_is_409_page_unavailable(api, meta, lead_page,
                                                               other_tenant_id):
    assert connect_page(api, lead_page).status_code == 200
    connect_meta(meta, other_tenant_id)
    error = _error(api.post("/crm/marketing/pages/connect", tenant_id=other_tenant_id,
                            json={"page_id": lead_page.page_id}), 409, "page_unavailable")
    assert lead_page.tenant_id not in error["message"]
    with tenant_tx(other_tenant_id) as conn:
        assert pages_store.connected_ids(conn) == set()


def test_declined_lead_scopes_still_connect_and_page_routes_answer_missing_scopes(
        api, meta, pages, tenant_id):
    connect_meta(meta, tenant_id, scopes=list(DEFAULT_SCOPES))
    page = pages.create_page("10001")

    status = api.get("/crm/marketing/token-status", tenant_id=tenant_id).json()
    assert status["status"] == "active"
    assert status["missing_scopes"] == list(LEAD_ADS_SCOPES)
    _error(api.get("/crm/marketing/pages", tenant_id=tenant_id), 409, "missing_scopes")
    _error(api.post("/crm/marketing/pages/connect", tenant_id=tenant_id,
                    json={"page_id": page["page_id"]}), 409, "missing_scopes")
    # A reconnect that grants them: the routes work.
    connect_meta(meta, tenant_id)
    assert api.get("/crm/marketing/token-status", tenant_id=tenant_id).json()[
        "missing_scopes"] == []
    assert api.get("/crm/marketing/pages", tenant_id=tenant_id).status_code == 200


def test_the_login_dialog_asks_for_the_lead_ads_scopes_too(stack):
    scope = dialog_url("state", "challenge").split("scope=", 1)[1].split("&", 1)[0]
    assert scope.split("%2C") == [*DEFAULT_SCOPES, *LEAD_ADS_SCOPES]


def test_a_person_who_declines_the_lead_scopes_still_connects(api, meta, tenant_id):
    """Through the real OAuth flow: the dialog asks for all ten, the person grants only the
    five the connection needs, the callback answers success."""
    url = api.get("/crm/auth/meta/url", tenant_id=tenant_id)
    assert url.status_code == 200
    state = url.json()["state"]
    cookie = url.headers["set-cookie"].split(";", 1)[0]
    decided = meta.consent(redirect_uri=api.http.base_url.join(
        "/crm/auth/meta/callback").__str__(), state=state,
        scopes=[*DEFAULT_SCOPES, *LEAD_ADS_SCOPES], granted=list(DEFAULT_SCOPES))
    callback = api.http.get("/crm/auth/meta/callback", params=decided,
                            headers={"Cookie": cookie})
    assert callback.status_code == 302
    assert callback.headers["location"].endswith("/crm/marketing?success=connected")
    status = api.get("/crm/marketing/token-status", tenant_id=tenant_id).json()
    assert status["missing_scopes"] == list(LEAD_ADS_SCOPES)


def test_members_may_list_leads_but_not_pages(api, lead_page):
    assert api.get("/crm/marketing/pages", tenant_id=lead_page.tenant_id,
                   role="member").status_code == 403
    assert api.post("/crm/marketing/pages/connect", tenant_id=lead_page.tenant_id,
                    role="member", json={"page_id": "x"}).status_code == 403
    assert api.get("/crm/marketing/leads/ads", tenant_id=lead_page.tenant_id,
                   role="member").status_code == 200

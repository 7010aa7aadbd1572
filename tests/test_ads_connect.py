"""POST /crm/marketing/connect over the local API: validation, Meta's answer, storage, event."""

from __future__ import annotations

import pytest

from tests.ads_support import account_row, query

pytest_plugins = ["tests.fixtures_ads"]

PATH = "/crm/marketing/connect"
BRUNO_ACCOUNT = "act_9000000001"  # seeded for sandbox user 10002 only


def _nothing_stored(tenant_id: str) -> bool:
    return query(tenant_id, "SELECT count(*) AS n FROM tenant_meta_accounts")[0]["n"] == 0


def test_connect_reads_the_account_stores_it_and_starts_the_sync(api, meta_tenant,
                                                                  event_capture):
    account_id = meta_tenant.layout["client_account_id"]
    digits = account_id.removeprefix("act_")

    response = api.post(PATH, tenant_id=meta_tenant.tenant_id, role="admin",
                        json={"account_id": digits})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "connected"
    assert body["account_id"] == account_id
    assert body["account_name"] == "Cliente Sur Ads"
    assert body["message"]
    row = account_row(meta_tenant.tenant_id, account_id)
    assert row["name"] == "Cliente Sur Ads"
    assert (row["currency"], row["timezone"], row["account_status"]) == (
        "CLP", "America/Santiago", 1)
    assert row["business_id"] == meta_tenant.layout["business_ids"]["client"]
    assert row["business_name"] == "Cliente Sur S.A."
    assert row["connected_by"] == "user-1"
    events = event_capture.of_type("MetaAdAccountConnected", meta_tenant.tenant_id)
    assert [e["detail"] for e in events] == [{"tenant_id": meta_tenant.tenant_id,
                                              "account_id": account_id}]
    assert events[0]["source"] == "crm.marketing-hub"


def test_connecting_again_refreshes_the_same_row(api, meta_tenant):
    account_id = meta_tenant.layout["demo_account_id"]
    for _ in range(2):
        response = api.post(PATH, tenant_id=meta_tenant.tenant_id, role="admin",
                            json={"account_id": account_id})
        assert response.status_code == 200
    rows = query(meta_tenant.tenant_id, "SELECT account_id FROM tenant_meta_accounts")
    assert [r["account_id"] for r in rows] == [account_id]


@pytest.mark.parametrize("bad", ["abc", "act_", "act_12ab", "", "  ", "act-123", "12 34",
                                 "act_123/insights", "1" * 21, 123, None, ["act_1"]])
def test_malformed_id_is_422_and_nothing_is_stored_or_sent(api, meta_tenant, ads_control,
                                                           event_capture, bad):
    ads_control.clear_requests()

    response = api.post(PATH, tenant_id=meta_tenant.tenant_id, role="admin",
                        json={"account_id": bad})

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert [d["field"] for d in error["details"]] == ["account_id"]
    assert _nothing_stored(meta_tenant.tenant_id)
    assert ads_control.requests() == []  # Meta was not even asked
    assert event_capture.of_type("MetaAdAccountConnected", meta_tenant.tenant_id) == []


@pytest.mark.parametrize("body", [{}, {"account": "act_1"}, "act_1"])
def test_missing_id_or_wrong_body_is_422(api, meta_tenant, body):
    response = api.post(PATH, tenant_id=meta_tenant.tenant_id, role="admin", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"
    assert _nothing_stored(meta_tenant.tenant_id)


def test_malformed_json_is_422(api, meta_tenant):
    response = api.post(PATH, tenant_id=meta_tenant.tenant_id, role="admin",
                        content=b'{"account_id": ', headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [{"field": "body",
                                                    "problem": "not valid JSON"}]


@pytest.mark.parametrize("account_id", [BRUNO_ACCOUNT, "act_1234567", "9000000001"])
def test_account_meta_denies_is_400_and_nothing_is_stored(api, meta_tenant, event_capture,
                                                          account_id):
    response = api.post(PATH, tenant_id=meta_tenant.tenant_id, role="admin",
                        json={"account_id": account_id})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "account_not_accessible"
    assert "Unsupported get request" not in response.text  # no Meta payload reaches a client
    assert _nothing_stored(meta_tenant.tenant_id)
    assert event_capture.of_type("MetaAdAccountConnected", meta_tenant.tenant_id) == []


def test_without_a_token_connect_is_409(api, tenant_id):
    response = api.post(PATH, tenant_id=tenant_id, role="admin",
                        json={"account_id": "act_1000000000000001"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "meta_not_connected"
    assert _nothing_stored(tenant_id)


def test_member_cannot_connect_even_with_a_bad_body(api, meta_tenant):
    for body in ({"account_id": meta_tenant.layout["demo_account_id"]}, {"account_id": "x"}):
        response = api.post(PATH, tenant_id=meta_tenant.tenant_id, role="member", json=body)
        assert response.status_code == 403
    assert _nothing_stored(meta_tenant.tenant_id)

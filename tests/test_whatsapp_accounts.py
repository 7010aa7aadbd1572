"""GET /crm/marketing/whatsapp-accounts over real HTTP against the sandbox."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("tests.fixtures_whatsapp")

from tests.fixtures_whatsapp import connect_meta, new_account  # noqa: E402

pytest_plugins = ["tests.fixtures_whatsapp"]

ACCOUNTS = "/crm/marketing/whatsapp-accounts"


def test_lists_each_waba_once_with_numbers_quality_and_tier(api, stack, wa_sandbox,
                                                            stack_sandbox, tenant_id):
    own = new_account(wa_sandbox, stack_sandbox, tenant_id, waba_name="Ventas",
                      phones=[{"quality_rating": "YELLOW", "messaging_limit": "TIER_250"},
                              {"throughput_level": "HIGH", "messaging_limit": "TIER_UNLIMITED"}])
    # A second business of the same person owns a WABA that is also a client of the first:
    # two paths to one WABA.
    shared = wa_sandbox.create_account(user_id=own.user_id, client_of=own.business_id,
                                       waba_name="Cliente")
    stack_sandbox.clear_requests()

    response = api.get(ACCOUNTS, tenant_id=tenant_id, role="admin")

    assert response.status_code == 200, response.text
    accounts = response.json()["accounts"]
    assert [a["id"] for a in accounts] == [shared["waba_id"], own.waba_id]  # by name
    client, mine = accounts
    assert client["ownership"] == "owned"  # its owner's view wins over the client path
    assert mine["business_id"] == own.business_id
    assert [p["id"] for p in mine["phone_numbers"]] == own.phone_number_ids
    yellow, high = mine["phone_numbers"]
    assert (yellow["quality_rating"], yellow["messaging_limit_tier"]) == ("YELLOW", "TIER_250")
    assert yellow["max_per_second"] == 80
    assert (high["throughput_level"], high["max_per_second"]) == ("HIGH", 1000)
    assert high["messaging_limit_tier"] == "TIER_UNLIMITED"
    assert yellow["display_phone_number"] and yellow["verified_name"] == "Ventas"
    # Batched: businesses, one batch for their WABA edges, one for the WABAs' numbers.
    graph_calls = [r for r in stack_sandbox.requests() if not r["batch"]]
    assert len(graph_calls) == 3
    assert not any(r["credential_in_url"] for r in stack_sandbox.requests())
    assert own.token not in response.text


def test_waba_access_removed_disappears(api, stack, wa_sandbox, stack_sandbox, tenant_id):
    own = new_account(wa_sandbox, stack_sandbox, tenant_id)
    wa_sandbox.set_access(own.waba_id, own.user_id, grant=False)
    response = api.get(ACCOUNTS, tenant_id=tenant_id)
    assert response.status_code == 200
    assert response.json()["accounts"] == []


def test_member_is_forbidden(api, stack, tenant_id):
    response = api.get(ACCOUNTS, tenant_id=tenant_id, role="member")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_without_meta_connection_409(api, stack, tenant_id):
    response = api.get(ACCOUNTS, tenant_id=tenant_id)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "meta_not_connected"


def test_meta_refusal_is_502_without_meta_payload(api, stack, wa_sandbox, stack_sandbox,
                                                  tenant_id):
    created = wa_sandbox.create_account()
    connect_meta(stack_sandbox, tenant_id, created["user_id"])
    stack_sandbox.inject_fault("error", path="/me/businesses", code=100,
                               message="(#100) Invalid parameter")
    try:
        response = api.get(ACCOUNTS, tenant_id=tenant_id)
    finally:
        stack_sandbox.clear_faults()
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "meta_error"
    assert "Invalid parameter" not in response.text

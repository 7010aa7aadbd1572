"""POST /crm/marketing/whatsapp/connect and template sync, over real HTTP, against the sandbox."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.platform.db import tenant_tx
from shared.platform.errors import WhatsAppNotConnected
from shared.whatsapp.templates import ensure_fresh_templates, placeholder_count

pytest.register_assert_rewrite("tests.fixtures_whatsapp")

from tests.fixtures_whatsapp import connect, connect_meta, fetch, new_account  # noqa: E402

pytest_plugins = ["tests.fixtures_whatsapp"]

CONNECT = "/crm/marketing/whatsapp/connect"


def _sender(tenant_id: str) -> dict | None:
    rows = fetch(tenant_id, "SELECT * FROM whatsapp_senders")
    return rows[0] if rows else None


def _templates(tenant_id: str) -> dict[str, dict]:
    rows = fetch(tenant_id, "SELECT * FROM meta_templates")
    return {f"{r['name']}:{r['language']}": r for r in rows}


@pytest.fixture
def account(stack, wa_sandbox, stack_sandbox, tenant_id):
    return new_account(wa_sandbox, stack_sandbox, tenant_id)


def test_admin_connects_sender_subscribes_and_syncs_templates(api, account, wa_sandbox,
                                                              stack_sandbox):
    stack_sandbox.clear_requests()
    response = api.post(CONNECT, tenant_id=account.tenant_id, role="admin",
                        json={"waba_id": account.waba_id,
                              "phone_number_id": account.phone_number_id})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "connected"
    assert body["phone_number_id"] == account.phone_number_id
    assert body["messaging_limit_tier"] == "TIER_1K"
    assert body["max_per_second"] == 80
    assert body["templates"] == 6
    assert response.headers["cache-control"] == "no-store"
    assert account.token not in response.text

    sender = _sender(account.tenant_id)
    assert sender["waba_id"] == account.waba_id
    assert sender["max_per_second"] == 80
    assert sender["messaging_limit_tier"] == "TIER_1K"
    assert sender["quality_rating"] == "GREEN"
    assert sender["templates_synced_at"] is not None
    assert sender["webhooks_subscribed_at"] is not None
    # Meta's side: our app is subscribed to the WABA's webhooks.
    assert wa_sandbox.waba(account.waba_id)["subscribed_apps"] == ["1234567890"]
    assert stack_sandbox.request_counts()[f"POST /v26.0/{account.waba_id}/subscribed_apps"] == 1

    templates = _templates(account.tenant_id)
    followup = templates["lead_followup_es:es"]
    assert followup["status"] == "APPROVED"
    assert followup["category"] == "MARKETING"
    assert followup["quality_score"] == "GREEN"
    assert placeholder_count(followup["components"]) == 1
    assert templates["promo_rechazada:es"]["status"] == "REJECTED"
    assert templates["promo_rechazada:es"]["rejection_reason"] == "PROMOTIONAL"
    assert templates["recordatorio_pausado:es"]["status"] == "PAUSED"
    assert templates["lead_followup_en:en_US"]["rejection_reason"] is None


def test_high_throughput_number_gets_1000_per_second_and_override_is_kept(
        api, stack, wa_sandbox, stack_sandbox, tenant_id):
    account = new_account(wa_sandbox, stack_sandbox, tenant_id,
                          phones=[{"throughput_level": "HIGH",
                                   "messaging_limit": "TIER_UNLIMITED"}, {}])
    fast, slow = account.phone_number_ids
    response = api.post(CONNECT, tenant_id=tenant_id, json={"waba_id": account.waba_id,
                                                            "phone_number_id": fast})
    assert response.status_code == 200, response.text
    assert _sender(tenant_id)["max_per_second"] == 1000
    assert _sender(tenant_id)["messaging_limit_tier"] == "TIER_UNLIMITED"

    # Re-connecting to the other number replaces the sender; an explicit rate wins.
    response = api.post(CONNECT, tenant_id=tenant_id,
                        json={"waba_id": account.waba_id, "phone_number_id": slow,
                              "max_per_second": 20, "timezone": "America/Mexico_City"})
    assert response.status_code == 200, response.text
    sender = _sender(tenant_id)
    assert (sender["phone_number_id"], sender["max_per_second"]) == (slow, 20)
    assert sender["timezone"] == "America/Mexico_City"


def test_all_template_pages_are_synced(api, account, wa_sandbox):
    wa_sandbox.bulk_templates(account.waba_id, 230)  # 236 in all: three pages of 100

    response = api.post(CONNECT, tenant_id=account.tenant_id,
                        json={"waba_id": account.waba_id,
                              "phone_number_id": account.phone_number_id})

    assert response.status_code == 200, response.text
    assert response.json()["templates"] == 236
    assert len(_templates(account.tenant_id)) == 236


@pytest.mark.parametrize("body, field", [
    ({"waba_id": "abc", "phone_number_id": "1"}, "waba_id"),
    ({"waba_id": "1"}, "phone_number_id"),
    ({"waba_id": "1", "phone_number_id": "2", "max_per_second": 5000}, "max_per_second"),
    ({"waba_id": "1", "phone_number_id": "2", "timezone": "Mars/Olympus"}, "timezone"),
    ({"waba_id": "1", "phone_number_id": "2", "extra": True}, "extra"),
])
def test_invalid_body_is_422_and_nothing_stored(api, account, body, field):
    response = api.post(CONNECT, tenant_id=account.tenant_id, json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"
    assert field in [d["field"] for d in response.json()["error"]["details"]]
    assert _sender(account.tenant_id) is None


def test_number_of_another_waba_is_422_and_nothing_stored(api, account, wa_sandbox,
                                                        stack_sandbox):
    other = wa_sandbox.create_account(user_id=account.user_id)
    response = api.post(CONNECT, tenant_id=account.tenant_id,
                        json={"waba_id": account.waba_id,
                              "phone_number_id": other["phone_number_ids"][0]})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "phone_number_id"
    assert _sender(account.tenant_id) is None
    assert _templates(account.tenant_id) == {}


def test_waba_the_token_cannot_use_is_400_and_nothing_changes(api, account, wa_sandbox):
    foreign = wa_sandbox.create_account()  # another user's WABA
    response = api.post(CONNECT, tenant_id=account.tenant_id,
                        json={"waba_id": foreign["waba_id"],
                              "phone_number_id": foreign["phone_number_ids"][0]})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "account_not_accessible"
    assert "Unsupported" not in response.text  # no Meta payload reaches the client
    assert _sender(account.tenant_id) is None
    assert wa_sandbox.waba(foreign["waba_id"])["subscribed_apps"] == []


def test_number_connected_by_another_tenant_is_409(api, whatsapp_setup, stack_sandbox,
                                                   other_tenant_id):
    connect_meta(stack_sandbox, other_tenant_id, whatsapp_setup.user_id)
    response = api.post(CONNECT, tenant_id=other_tenant_id,
                        json={"waba_id": whatsapp_setup.waba_id,
                              "phone_number_id": whatsapp_setup.phone_number_id})
    assert response.status_code == 409
    # Nothing about the tenant that holds it, not even that there is one.
    assert response.json()["error"] == {
        "code": "whatsapp_number_unavailable",
        "message": "This WhatsApp number cannot be connected to this account. If it should be, "
                   "contact support."}
    assert whatsapp_setup.tenant_id not in response.text
    assert _sender(other_tenant_id) is None
    assert _sender(whatsapp_setup.tenant_id)["phone_number_id"] == whatsapp_setup.phone_number_id


def test_member_cannot_connect_and_unconnected_tenant_gets_409(api, account, tenant_id,
                                                               other_tenant_id):
    body = {"waba_id": account.waba_id, "phone_number_id": account.phone_number_id}
    member = api.post(CONNECT, tenant_id=account.tenant_id, role="member", json=body)
    assert member.status_code == 403
    for bad in ({}, {"waba_id": 1}):  # refused as a member before the body is looked at
        assert api.post(CONNECT, tenant_id=account.tenant_id, role="member",
                        json=bad).status_code == 403
    no_meta = api.post(CONNECT, tenant_id=other_tenant_id, json=body)
    assert no_meta.status_code == 409
    assert no_meta.json()["error"]["code"] == "meta_not_connected"
    assert _sender(account.tenant_id) is None


def test_revoked_token_is_409_reconnect(api, account, stack_sandbox):
    stack_sandbox.revoke_token(account.token)
    response = api.post(CONNECT, tenant_id=account.tenant_id,
                        json={"waba_id": account.waba_id,
                              "phone_number_id": account.phone_number_id})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "meta_reconnect_required"
    status = fetch(account.tenant_id, "SELECT status FROM credentials")[0]["status"]
    assert status == "needs_reconnect"


def test_reconnect_to_another_waba_replaces_templates(account, wa_sandbox, stack_sandbox):
    connect(account)
    second = wa_sandbox.create_account(
        user_id=account.user_id,
        templates=[{"name": "solo_aqui", "language": "es", "body": "Hola {{1}} y {{2}}"}])
    account.waba_id = second["waba_id"]
    connect(account, second["phone_number_ids"][0])

    templates = _templates(account.tenant_id)
    assert list(templates) == ["solo_aqui:es"]
    assert templates["solo_aqui:es"]["waba_id"] == second["waba_id"]
    assert placeholder_count(templates["solo_aqui:es"]["components"]) == 2


def test_ensure_fresh_templates_resyncs_only_when_stale(whatsapp_setup, wa_sandbox,
                                                        stack_sandbox):
    tenant_id, waba_id = whatsapp_setup.tenant_id, whatsapp_setup.waba_id
    path = f"/v26.0/{waba_id}/message_templates"
    stack_sandbox.clear_requests()

    assert ensure_fresh_templates(tenant_id) is False  # synced on connect, seconds ago
    assert stack_sandbox.requests(path) == []

    followup = whatsapp_setup.templates["lead_followup_es:es"]
    wa_sandbox.set_template_status(followup, "PAUSED")
    wa_sandbox.delete_template(whatsapp_setup.templates["bienvenida_pendiente:es"])
    with tenant_tx(tenant_id) as conn:
        conn.execute("UPDATE whatsapp_senders SET templates_synced_at = now() - interval '61 min'")

    assert ensure_fresh_templates(tenant_id) is True
    assert len(stack_sandbox.requests(path)) == 1
    templates = _templates(tenant_id)
    assert templates["lead_followup_es:es"]["status"] == "PAUSED"
    assert "bienvenida_pendiente:es" not in templates
    # A custom max age is honoured too.
    assert ensure_fresh_templates(tenant_id, max_age=timedelta(0)) is True


def test_ensure_fresh_keeps_stored_templates_when_meta_throttles(whatsapp_setup, stack_sandbox):
    tenant_id = whatsapp_setup.tenant_id
    before = _templates(tenant_id)
    stack_sandbox.inject_fault("rate_limit", path=f"{whatsapp_setup.waba_id}/message_templates",
                               code=80008, count=1)
    try:
        assert ensure_fresh_templates(tenant_id, max_age=timedelta(0)) is False
    finally:
        stack_sandbox.clear_faults()
    assert _templates(tenant_id).keys() == before.keys()


def test_ensure_fresh_without_sender_raises(stack, tenant_id):
    with pytest.raises(WhatsAppNotConnected):
        ensure_fresh_templates(tenant_id)

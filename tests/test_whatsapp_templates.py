"""GET /crm/marketing/hsm/templates over real HTTP: synced templates, status and reason."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.usefixtures("stack")
pytest_plugins = ["tests.fixtures_whatsapp"]

TEMPLATES = "/crm/marketing/hsm/templates"


def test_member_lists_templates_with_status_reason_and_variables(api, whatsapp_tenant):
    response = api.get(TEMPLATES, tenant_id=whatsapp_tenant, role="member")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["connected"] is True and body["synced_at"]
    by_name = {(t["name"], t["language"]): t for t in body["templates"]}
    assert len(by_name) == 6
    followup = by_name[("lead_followup_es", "es")]
    assert (followup["status"], followup["placeholders"], followup["usable_in_rules"]) == (
        "APPROVED", 1, True)
    assert followup["category"] == "MARKETING" and followup["quality_score"] == "GREEN"
    rejected = by_name[("promo_rechazada", "es")]
    assert (rejected["status"], rejected["rejection_reason"]) == ("REJECTED", "PROMOTIONAL")
    assert rejected["usable_in_rules"] is False
    assert by_name[("recordatorio_pausado", "es")]["status"] == "PAUSED"
    assert by_name[("cita_confirmacion", "es")]["placeholders"] == 2


def test_status_filter_and_invalid_status(api, whatsapp_tenant):
    approved = api.get(TEMPLATES, tenant_id=whatsapp_tenant, params={"status": "APPROVED"})
    assert {t["status"] for t in approved.json()["templates"]} == {"APPROVED"}
    assert len(approved.json()["templates"]) == 3
    bad = api.get(TEMPLATES, tenant_id=whatsapp_tenant, params={"status": "NOPE"})
    assert bad.status_code == 422


def test_other_tenant_sees_no_templates(api, whatsapp_tenant, other_tenant_id):
    response = api.get(TEMPLATES, tenant_id=other_tenant_id, role="member")
    assert response.status_code == 200
    assert response.json() == {"templates": [], "synced_at": None, "connected": False}


def test_requires_a_tenant_claim(api):
    assert api.get(TEMPLATES).status_code == 401
    response = api.get(TEMPLATES, headers=api.as_user(None, role="member"))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"

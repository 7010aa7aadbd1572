"""Rules API (/crm/marketing/hsm/rules) over real HTTP: validation, conflicts, tenancy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.hsm.rules import in_send_window, lead_param_values
from shared.whatsapp.templates import ensure_fresh_templates

pytest.register_assert_rewrite("tests.fixtures_whatsapp")

from tests.fixtures_whatsapp import fetch, insert_lead, insert_log  # noqa: E402

pytest_plugins = ["tests.fixtures_whatsapp"]

RULES = "/crm/marketing/hsm/rules"
VALID = {"name": "Seguimiento 24h", "trigger_type": "lead_followup", "delay_hours": 24,
         "template_name": "lead_followup_es", "language": "es", "body_params": ["first_name"],
         "enabled": True}


def _stored(tenant_id: str) -> list[dict]:
    return fetch(tenant_id, "SELECT * FROM automation_rules ORDER BY created_at")


def _create(api, tenant_id: str, **changes) -> dict:
    response = api.post(RULES, tenant_id=tenant_id, json={**VALID, **changes})
    assert response.status_code == 201, response.text
    return response.json()


def test_admin_creates_rule_and_member_lists_it(api, whatsapp_tenant):
    response = api.post(RULES, tenant_id=whatsapp_tenant, role="admin", json=VALID)

    assert response.status_code == 201, response.text
    rule = response.json()
    assert {k: rule[k] for k in VALID} == VALID
    assert rule["template_status"] == "APPROVED"
    assert rule["send_window"] is None
    stored = _stored(whatsapp_tenant)
    assert [(r["id"].hex, r["delay_hours"], r["body_params"]) for r in stored] == [
        (rule["id"].replace("-", ""), 24, ["first_name"])]
    assert stored[0]["created_by"] == "user-1"

    listed = api.get(RULES, tenant_id=whatsapp_tenant, role="member")
    assert listed.status_code == 200
    assert listed.json()["rules"] == [rule]
    assert listed.headers["cache-control"] == "no-store"


def test_send_window_defaults_to_the_senders_time_zone(api, whatsapp_tenant):
    fetch(whatsapp_tenant, "UPDATE whatsapp_senders SET timezone = 'Europe/Madrid' RETURNING 1")
    rule = _create(api, whatsapp_tenant, send_window={"start": "09:00", "end": "20:30"})
    assert rule["send_window"] == {"start": "09:00", "end": "20:30", "timezone": "Europe/Madrid"}
    other = _create(api, whatsapp_tenant, name="Noche",
                    send_window={"start": "21:00", "end": "08:00",
                                 "timezone": "America/Mexico_City"})
    assert other["send_window"]["timezone"] == "America/Mexico_City"


@pytest.mark.parametrize("changes, field", [
    ({"template_name": "no_existe"}, "template_name"),
    ({"language": "en_US"}, "template_name"),  # exists, but not in that language
    ({"template_name": "promo_rechazada"}, "template_name"),  # REJECTED
    ({"template_name": "cita_confirmacion", "body_params": ["name"]}, "body_params"),
    ({"body_params": []}, "body_params"),  # the template has one body variable
    ({"body_params": ["name", "email"]}, "body_params"),
    ({"body_params": ["password"]}, "body_params.0"),  # not a lead field
    ({"delay_hours": 0}, "delay_hours"),
    ({"delay_hours": 721}, "delay_hours"),
    ({"delay_hours": "24"}, "delay_hours"),
    ({"delay_hours": 1.5}, "delay_hours"),
    ({"name": "   "}, "name"),
    ({"name": "x" * 101}, "name"),
    ({"name": "Uno\x00Dos"}, "name"),
    ({"trigger_type": "lead_arrived"}, "trigger_type"),
    ({"trigger_type": "lead_created"}, "delay_hours"),  # lead_created's delay is in minutes
    ({"delay_minutes": 5}, "delay_minutes"),  # lead_followup's is in hours
    ({"trigger_type": "lead_created", "delay_hours": None, "delay_minutes": -1},
     "delay_minutes"),
    ({"trigger_type": "lead_created", "delay_hours": None, "delay_minutes": 1441},
     "delay_minutes"),
    ({"trigger_type": "lead_created", "delay_hours": None, "delay_minutes": "5"},
     "delay_minutes"),
    ({"delay_hours": None}, "delay_hours"),  # lead_followup needs it
    ({"template_name": "Bad Name"}, "template_name"),
    ({"enabled": "yes"}, "enabled"),
    ({"send_window": {"start": "9:00", "end": "20:00"}}, "send_window.start"),
    ({"send_window": {"start": "09:00", "end": "24:00"}}, "send_window.end"),
    ({"send_window": {"start": "09:00", "end": "09:00"}}, "send_window"),
    ({"send_window": {"start": "09:00", "end": "18:00", "timezone": "Madrid"}},
     "send_window.timezone"),
    ({"send_window": {"start": "09:00", "end": "18:00", "timezone": "../../etc/passwd"}},
     "send_window.timezone"),
    ({"surprise": 1}, "surprise"),
])
def test_invalid_rule_is_422_and_nothing_is_stored(api, whatsapp_tenant, changes, field):
    response = api.post(RULES, tenant_id=whatsapp_tenant, json={**VALID, **changes})

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in [d["field"] for d in error["details"]]
    assert _stored(whatsapp_tenant) == []


def test_template_needing_header_or_button_parameters_is_refused(api, whatsapp_setup,
                                                                 wa_sandbox):
    tenant_id, waba_id = whatsapp_setup.tenant_id, whatsapp_setup.waba_id
    wa_sandbox.upsert_template(waba_id, "oferta_cabecera", components=[
        {"type": "HEADER", "format": "TEXT", "text": "Oferta para {{1}}"},
        {"type": "BODY", "text": "Hola {{1}}"}])
    wa_sandbox.upsert_template(waba_id, "oferta_imagen", components=[
        {"type": "HEADER", "format": "IMAGE"}, {"type": "BODY", "text": "Hola {{1}}"}])
    wa_sandbox.upsert_template(waba_id, "oferta_enlace", components=[
        {"type": "BODY", "text": "Hola {{1}}"},
        {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Ver",
                                         "url": "https://example.com/o/{{1}}"}]}])
    ensure_fresh_templates(tenant_id, max_age=timedelta(0))

    for name, part in (("oferta_cabecera", "header"), ("oferta_imagen", "header"),
                       ("oferta_enlace", "button")):
        response = api.post(RULES, tenant_id=tenant_id,
                            json={**VALID, "name": name, "template_name": name})
        assert response.status_code == 422, name
        assert part in response.json()["error"]["message"]
    assert _stored(tenant_id) == []
    listed = api.get("/crm/marketing/hsm/templates", tenant_id=tenant_id).json()["templates"]
    usable = {t["name"]: t["usable_in_rules"] for t in listed}
    assert usable["oferta_cabecera"] is False and usable["lead_followup_es"] is True


def test_missing_required_fields_are_listed(api, whatsapp_tenant):
    response = api.post(RULES, tenant_id=whatsapp_tenant, json={"name": "x"})
    assert response.status_code == 422
    fields = {d["field"] for d in response.json()["error"]["details"]}
    assert {"delay_hours", "template_name", "language"} <= fields
    assert _stored(whatsapp_tenant) == []


@pytest.mark.parametrize("body", [b'{"name": "x",', b"{'name': 'x'}", b"[1, 2"])
def test_malformed_json_is_described_as_a_body_problem(api, whatsapp_tenant, body):
    """Not "Invalid input: 1." with field "1" (the parser's character offset)."""
    response = api.post(RULES, tenant_id=whatsapp_tenant, content=body,
                        headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["message"] == "The request body is not valid JSON."
    assert [d["field"] for d in error["details"]] == ["body"]
    assert error["details"][0]["problem"].startswith("not valid JSON: ")
    assert _stored(whatsapp_tenant) == []


def test_tenant_without_whatsapp_cannot_create_rules(api, stack, tenant_id):
    response = api.post(RULES, tenant_id=tenant_id, json=VALID)
    assert response.status_code == 422
    assert "Connect WhatsApp" in response.json()["error"]["message"]
    assert _stored(tenant_id) == []


def test_paused_and_pending_templates_are_accepted_with_their_status(api, whatsapp_tenant):
    paused = _create(api, whatsapp_tenant, name="Pausada", template_name="recordatorio_pausado")
    assert paused["template_status"] == "PAUSED"
    pending = _create(api, whatsapp_tenant, name="Pendiente",
                      template_name="bienvenida_pendiente")
    assert pending["template_status"] == "PENDING"


def test_duplicate_name_is_409_case_insensitive_and_nothing_stored(api, whatsapp_tenant):
    _create(api, whatsapp_tenant)
    response = api.post(RULES, tenant_id=whatsapp_tenant,
                        json={**VALID, "name": "  SEGUIMIENTO 24H ", "delay_hours": 48})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert [r["delay_hours"] for r in _stored(whatsapp_tenant)] == [24]


def test_patch_updates_and_validates_the_merged_rule(api, whatsapp_tenant):
    rule = _create(api, whatsapp_tenant)
    path = f"{RULES}/{rule['id']}"

    response = api.request("PATCH", path, tenant_id=whatsapp_tenant,
                           json={"delay_hours": 48, "enabled": False,
                                 "send_window": {"start": "10:00", "end": "18:00",
                                                 "timezone": "Europe/Madrid"}})
    assert response.status_code == 200, response.text
    assert (response.json()["delay_hours"], response.json()["enabled"]) == (48, False)

    # Switching to a 2-variable template without new body_params is refused, nothing changes.
    bad = api.request("PATCH", path, tenant_id=whatsapp_tenant,
                      json={"template_name": "cita_confirmacion"})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"] == "body_params"
    for body in ({}, {"delay_hours": None}, {"delay_hours": 0}, {"name": "x", "id": "y"}):
        assert api.request("PATCH", path, tenant_id=whatsapp_tenant,
                           json=body).status_code == 422
    stored = _stored(whatsapp_tenant)[0]
    assert (stored["template_name"], stored["delay_hours"]) == ("lead_followup_es", 48)

    cleared = api.request("PATCH", path, tenant_id=whatsapp_tenant, json={"send_window": None})
    assert cleared.status_code == 200
    assert cleared.json()["send_window"] is None


def test_patch_to_a_taken_name_is_409(api, whatsapp_tenant):
    _create(api, whatsapp_tenant)
    second = _create(api, whatsapp_tenant, name="Otra")
    response = api.request("PATCH", f"{RULES}/{second['id']}", tenant_id=whatsapp_tenant,
                           json={"name": "seguimiento 24h"})
    assert response.status_code == 409
    assert _stored(whatsapp_tenant)[1]["name"] == "Otra"


def test_delete_hides_rule_keeps_its_logs_and_frees_the_name(api, whatsapp_tenant):
    rule = _create(api, whatsapp_tenant)
    lead = insert_lead(whatsapp_tenant)
    insert_log(whatsapp_tenant, rule["id"], lead, wamid="wamid.kept")

    response = api.request("DELETE", f"{RULES}/{rule['id']}", tenant_id=whatsapp_tenant)
    assert response.status_code == 204
    assert response.content == b""
    assert api.get(RULES, tenant_id=whatsapp_tenant).json()["rules"] == []
    stored = _stored(whatsapp_tenant)[0]
    assert stored["deleted_at"] is not None and stored["enabled"] is False
    assert fetch(whatsapp_tenant, "SELECT wamid FROM automation_logs") == [{"wamid": "wamid.kept"}]
    again = api.request("DELETE", f"{RULES}/{rule['id']}", tenant_id=whatsapp_tenant)
    assert again.status_code == 404
    assert _create(api, whatsapp_tenant)["name"] == VALID["name"]


def test_member_reads_but_cannot_change(api, whatsapp_tenant):
    rule = _create(api, whatsapp_tenant)
    path = f"{RULES}/{rule['id']}"
    assert api.post(RULES, tenant_id=whatsapp_tenant, role="member",
                    json={**VALID, "name": "m"}).status_code == 403
    assert api.request("PATCH", path, tenant_id=whatsapp_tenant, role="member",
                       json={"enabled": False}).status_code == 403
    assert api.request("DELETE", path, tenant_id=whatsapp_tenant,
                       role="member").status_code == 403
    assert [r["enabled"] for r in _stored(whatsapp_tenant)] == [True]


def test_other_tenant_cannot_see_or_change_rules(api, whatsapp_tenant, other_tenant_id):
    rule = _create(api, whatsapp_tenant)
    path = f"{RULES}/{rule['id']}"

    assert api.get(RULES, tenant_id=other_tenant_id).json()["rules"] == []
    patched = api.request("PATCH", path, tenant_id=other_tenant_id, json={"enabled": False})
    deleted = api.request("DELETE", path, tenant_id=other_tenant_id)
    assert (patched.status_code, deleted.status_code) == (404, 404)
    assert patched.json() == deleted.json() == {
        "error": {"code": "not_found", "message": "Rule not found."}}
    # Indistinguishable from a rule that never existed.
    ghost = api.request("DELETE", f"{RULES}/00000000-0000-0000-0000-000000000000",
                        tenant_id=other_tenant_id)
    assert ghost.json() == deleted.json()
    assert api.request("PATCH", f"{RULES}/not-a-uuid", tenant_id=other_tenant_id,
                       json={"enabled": False}).status_code == 404
    stored = _stored(whatsapp_tenant)[0]
    assert (stored["enabled"], stored["deleted_at"]) == (True, None)
    # The same name is free in another tenant.
    assert api.post(RULES, tenant_id=other_tenant_id, json=VALID).status_code == 422  # no sender


def test_send_window_helper_same_day_and_overnight():
    madrid = {"start": "09:00", "end": "20:00", "timezone": "Europe/Madrid"}
    night = {"start": "21:00", "end": "08:00", "timezone": "UTC"}
    assert in_send_window(None, datetime(2026, 1, 5, 3, tzinfo=UTC))
    assert in_send_window(madrid, datetime(2026, 1, 5, 8, 0, tzinfo=UTC))  # 09:00 in Madrid
    assert not in_send_window(madrid, datetime(2026, 1, 5, 7, 59, tzinfo=UTC))
    assert not in_send_window(madrid, datetime(2026, 1, 5, 19, 0, tzinfo=UTC))  # 20:00, end
    assert in_send_window(night, datetime(2026, 1, 5, 23, 0, tzinfo=UTC))
    assert in_send_window(night, datetime(2026, 1, 5, 7, 59, tzinfo=UTC))
    assert not in_send_window(night, datetime(2026, 1, 5, 12, 0, tzinfo=UTC))


def test_lead_param_values_fill_missing_values():
    lead = {"name": "Ana María Pérez", "email": None, "lead_source": "meta_ads"}
    assert lead_param_values(["first_name", "name", "lead_source", "email"], lead) == [
        "Ana", "Ana María Pérez", "meta_ads", "-"]
    assert lead_param_values(["first_name"], {"name": ""}) == ["cliente"]


@pytest.mark.parametrize("body", [{}, {"name": 5}, [1, 2], "not an object"])
def test_member_gets_403_before_any_word_about_the_body(api, whatsapp_tenant, body):
    """Authorization comes first: a member learns nothing about what a valid rule looks like."""
    rule = _create(api, whatsapp_tenant)
    for method, path in [("POST", RULES), ("PATCH", f"{RULES}/{rule['id']}")]:
        response = api.request(method, path, tenant_id=whatsapp_tenant, role="member", json=body)
        assert response.status_code == 403, (method, response.text)
        assert response.json()["error"]["code"] == "forbidden"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert [r["name"] for r in _stored(whatsapp_tenant)] == [VALID["name"]]


@pytest.mark.parametrize("name", ["Seguimiento \u202egnp.exe", "Segui\u200bmiento",
                                  "\u2066Seguimiento\u2069", "Seguimiento\u200f", "\ufeffSeg",
                                  "Seg\u2060uimiento", "Seg\u2028uimiento"],
                         ids=["rlo", "zwsp", "isolates", "rlm", "bom", "word_joiner", "line_sep"])
def test_a_name_with_bidi_controls_or_zero_width_characters_is_refused(api, whatsapp_tenant,
                                                                        name):
    """Invisible characters make one rule's name look like another's, or reorder what the
    CRM shows around it."""
    response = api.post(RULES, tenant_id=whatsapp_tenant, json={**VALID, "name": name})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == "name"
    assert _stored(whatsapp_tenant) == []
    ok = _create(api, whatsapp_tenant, name="Seguimiento ☕ día 1")
    patched = api.request("PATCH", f"{RULES}/{ok['id']}", tenant_id=whatsapp_tenant,
                          json={"name": name})
    assert patched.status_code == 422, patched.text

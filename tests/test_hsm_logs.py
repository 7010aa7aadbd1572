"""GET /crm/marketing/hsm/logs over real HTTP: filters, cursor paging, masking, tenancy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

pytest.register_assert_rewrite("tests.fixtures_whatsapp")

from tests.fixtures_whatsapp import insert_lead, insert_log, insert_rule  # noqa: E402

pytest_plugins = ["tests.fixtures_whatsapp"]

LOGS = "/crm/marketing/hsm/logs"
DAY = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def seeded(stack, tenant_id):
    """Two rules; 7 logs over 4 days with mixed statuses; two logs share a created_at."""
    first = insert_rule(tenant_id, name="Seguimiento")
    second = insert_rule(tenant_id, name="Recordatorio")
    logs = []
    plan = [(first, "SENT", 0), (first, "DELIVERED", 0), (first, "READ", 1),
            (second, "FAILED", 1), (first, "PENDING", 2), (second, "SKIPPED", 3),
            (second, "DELIVERED", 3)]
    for i, (rule, status, day) in enumerate(plan):
        lead = insert_lead(tenant_id, name=f"Lead {i}", phone=f"+3461100000{i}")
        extra = {"error_code": "131026", "error_message": "Message undeliverable"} \
            if status == "FAILED" else {}
        created = DAY + timedelta(days=day, minutes=0 if i in (0, 1) else i)
        logs.append(insert_log(tenant_id, rule, lead, status=status, wamid=f"wamid.{tenant_id}.{i}",
                               phone=f"+3461100000{i}", created_at=created, **extra))
    return {"tenant_id": tenant_id, "rules": (first, second), "logs": logs}


def _all_pages(api, tenant_id, **params):
    seen, cursor, pages = [], None, 0
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = api.get(LOGS, tenant_id=tenant_id, role="member", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        seen += body["logs"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return seen, pages


def test_cursor_pages_cover_every_log_once_newest_first(api, seeded):
    logs, pages = _all_pages(api, seeded["tenant_id"], limit=2)

    assert pages == 4
    ids = [log["id"] for log in logs]
    assert sorted(ids) == sorted(seeded["logs"]) and len(set(ids)) == 7
    keys = [(log["created_at"], log["id"]) for log in logs]
    assert keys == sorted(keys, reverse=True)


def test_item_shape_masks_the_phone_and_carries_errors(api, seeded):
    response = api.get(LOGS, tenant_id=seeded["tenant_id"], params={"status": "failed"})
    [log] = response.json()["logs"]
    assert log["phone"] == "+34******003"
    assert "+34611000003" not in response.text
    assert log["lead"]["name"] == "Lead 3"
    assert log["rule"] == {"id": seeded["rules"][1], "name": "Recordatorio", "deleted": False}
    assert log["template"] == {"name": "lead_followup_es", "language": "es"}
    # Meta's own text ("Message undeliverable") stays in the row for operators, not in the API.
    assert log["error"] == {"code": "131026",
                            "message": "WhatsApp could not deliver the message to this number."}
    assert "Message undeliverable" not in response.text
    assert log["wamid"].startswith("wamid.")
    assert set(log) >= {"created_at", "sent_at", "delivered_at", "read_at", "failed_at"}


@pytest.mark.parametrize("params, expected", [
    ({"status": "DELIVERED"}, {1, 6}),
    ({"status": "delivered", "rule_id": "second"}, {6}),
    ({"rule_id": "first"}, {0, 1, 2, 4}),
    ({"from": "2026-03-11", "to": "2026-03-12"}, {2, 3, 4}),
    ({"from": "2026-03-13"}, {5, 6}),
    ({"to": "2026-03-10"}, {0, 1}),
    ({"from": "2026-03-11T12:02:00Z", "to": "2026-03-11T12:03:30+00:00"}, {2, 3}),
])
def test_filters(api, seeded, params, expected):
    rules = dict(zip(("first", "second"), seeded["rules"], strict=True))
    if "rule_id" in params:
        params = {**params, "rule_id": rules[params["rule_id"]]}
    logs, _ = _all_pages(api, seeded["tenant_id"], limit=3, **params)
    assert {seeded["logs"].index(log["id"]) for log in logs} == expected


@pytest.mark.parametrize("params, field", [
    ({"cursor": "not-a-cursor"}, "cursor"),
    ({"status": "delivered_ok"}, "status"),
    ({"rule_id": "123"}, "rule_id"),
    ({"from": "yesterday"}, "from"),
    ({"from": "2026-03-12", "to": "2026-03-11"}, "to"),
    ({"to": "9999-12-31"}, "to"),
    ({"from": "0001-01-01T00:00:00+01:00"}, "from"),
    ({"limit": "0"}, "limit"),
    ({"limit": "201"}, "limit"),
])
def test_invalid_query_is_422(api, seeded, params, field):
    response = api.get(LOGS, tenant_id=seeded["tenant_id"], params=params)
    assert response.status_code == 422, response.text
    assert field in [d["field"] for d in response.json()["error"]["details"]]


def test_other_tenant_sees_nothing_even_with_a_cursor_or_rule_id(api, seeded, other_tenant_id):
    first_page = api.get(LOGS, tenant_id=seeded["tenant_id"], params={"limit": 2}).json()
    for params in ({}, {"cursor": first_page["next_cursor"]},
                   {"rule_id": seeded["rules"][0]}):
        response = api.get(LOGS, tenant_id=other_tenant_id, role="member", params=params)
        assert response.status_code == 200
        assert response.json() == {"logs": [], "next_cursor": None}


def test_logs_of_a_deleted_rule_stay_listed(api, seeded):
    rule = seeded["rules"][1]
    # Deleted through the rules API as an admin would.
    assert api.request("DELETE", f"/crm/marketing/hsm/rules/{rule}",
                       tenant_id=seeded["tenant_id"]).status_code == 204
    logs, _ = _all_pages(api, seeded["tenant_id"], rule_id=rule)
    assert len(logs) == 3 and all(log["rule"]["deleted"] for log in logs)

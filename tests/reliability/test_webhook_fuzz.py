"""Meta's webhook fuzzed field by field behind a valid signature (see webhook_fuzz.py).

Every answer is 200 (an update of an unexpected shape is skipped, the rest of the batch applied:
a 5xx would have Meta retry the whole batch for days) or 400 for a body that is not JSON; never
a 5xx, never an UnhandledErrors count. A tenant no update names keeps every row byte for byte.

`make test` sends the quick profile; RELIABILITY_FUZZ=deep sends the deep one (the figures in
RELIABILITY.md). The seed is fixed: the same bodies every run.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.fixtures_whatsapp import post_webhook
from tests.reliability.conftest import (
    assert_error,
    emf_metric_total,
    figure,
    populate,
    tenant_rows,
)
from tests.reliability.webhook_fuzz import Known, cases

SEED = 20261202
DEEP = os.environ.get("RELIABILITY_FUZZ", "quick") == "deep"
COUNT = 6000 if DEEP else 400


def _known(owner, populated) -> Known:
    wamid = owner.execute("SELECT wamid FROM automation_logs WHERE id = %s",
                          (populated.log_id,)).fetchone()["wamid"]
    template = owner.execute("SELECT template_id, name FROM meta_templates WHERE tenant_id = %s"
                             " AND name = 'lead_followup_es'",
                             (populated.tenant_id,)).fetchone()
    return Known(populated.setup.waba_id, populated.setup.phone_number_id, wamid,
                 populated.log_id, populated.lead_phone.removeprefix("+"),
                 template["template_id"], template["name"])


def test_signed_webhooks_of_every_shape_never_5xx(api, wa, _control, owner, populated,
                                                  other_tenant_id, capsys):
    bystander = populate(api, wa, _control, other_tenant_id)
    before = tenant_rows(owner, bystander.tenant_id)
    known = _known(owner, populated)
    capsys.readouterr()
    statuses: dict[int, int] = {}
    for label, raw in cases(known, SEED, COUNT):
        response = post_webhook(api, raw)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code in (200, 400), (label, response.status_code,
                                                    response.text[:300])
        if response.status_code == 400:
            assert_error(response, 400, "bad_request")
    unhandled = emf_metric_total(capsys.readouterr().out, "UnhandledErrors")
    figure("webhook_fuzz", profile="deep" if DEEP else "quick", seed=SEED, bodies=COUNT,
           answers=json.dumps(statuses, sort_keys=True), unhandled_errors=unhandled)
    assert unhandled == 0
    assert statuses.get(200, 0) > COUNT // 2  # most bodies got past parsing into processing
    assert tenant_rows(owner, bystander.tenant_id) == before


# -- regression tests: shapes that were a 500 ------------------------------------------------
def _change(field: str, value: object, entry_id: str = "1") -> dict:
    return {"object": "whatsapp_business_account",
            "entry": [{"id": entry_id, "changes": [{"field": field, "value": value}]}]}


@pytest.mark.parametrize("payload", [
    _change("messages", {"metadata": "not an object"}),
    _change("messages", {"metadata": {"phone_number_id": ["1"]}, "statuses": {"id": "w"}}),
    _change("message_template_status_update", {"event": "REJECTED", "rejection_info": "x"}),
    _change("message_template_status_update", {"event": "PAUSED", "other_info": ["x"]}),
    {"object": "whatsapp_business_account", "entry": [{"changes": 5}]},
    {"object": "whatsapp_business_account", "entry": "x"},
], ids=["metadata_string", "statuses_object", "rejection_info_string", "other_info_list",
        "changes_number", "entry_string"])
def test_a_signed_update_of_an_unexpected_shape_is_skipped_not_a_500(api, payload):
    response = post_webhook(api, payload)
    assert response.status_code == 200, response.text
    assert response.json()["received"]["statuses"] == 0


def test_parts_of_an_unexpected_shape_do_not_stop_the_rest_of_the_batch(api, owner, populated):
    wamid = owner.execute("SELECT wamid FROM automation_logs WHERE id = %s",
                          (populated.log_id,)).fetchone()["wamid"]
    good = {"metadata": {"phone_number_id": populated.setup.phone_number_id},
            "statuses": [{"id": wamid, "status": "delivered", "timestamp": "1760000100",
                          "errors": "not a list"}, "not a status"]}
    payload = {"object": "whatsapp_business_account", "entry": [
        {"id": "1", "changes": [{"field": "messages", "value": {"metadata": 7}},
                                {"field": "message_template_status_update",
                                 "value": {"event": {"x": 1}, "rejection_info": 1}},
                                {"field": "messages", "value": good}]}, "junk"]}
    response = post_webhook(api, payload)
    assert response.status_code == 200, response.text
    assert response.json()["received"]["statuses"] == 1
    row = owner.execute("SELECT status FROM automation_logs WHERE id = %s",
                        (populated.log_id,)).fetchone()
    assert row["status"] == "DELIVERED"


@pytest.mark.parametrize("raw", [b"[" * 100_000 + b"]" * 100_000,
                                 b'{"object": "whatsapp_business_account", "entry": '
                                 + b"[" * 50_000 + b"]" * 50_000 + b"}",
                                 b'{"object": "\\ud800"}', b'{"entry": NaN}'],
                         ids=["nested_list", "nested_entry", "lone_surrogate", "nan"])
def test_a_signed_body_json_cannot_carry_is_a_400(api, raw, capsys):
    capsys.readouterr()
    response = post_webhook(api, raw)
    assert_error(response, 400, "bad_request")
    assert emf_metric_total(capsys.readouterr().out, "UnhandledErrors") == 0

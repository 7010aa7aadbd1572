"""No request, whatever its content, gets a 5xx; a client's error never counts as an unhandled one.

Every parameter and body field of every published operation gets the values at the limits of its
type (tests/reliability/limits.py), one at a time, as the admin of a tenant with rows in every
table (so each value travels as far into the logic as it can). Every answer must be below 500,
in the contract's error body when it is an error, and the `UnhandledErrors` metric (the canary
gate: one member could otherwise roll back any deployment) must not move.

The regression tests below are the cases the security review and these probes found.
"""

from __future__ import annotations

import json

import pytest

from tests.reliability.conftest import (
    assert_error,
    bearer,
    emf_metric_total,
    figure,
    operations,
)
from tests.reliability.limits import Probe, probes

WEBHOOK = "/crm/webhooks/meta"
CALLBACK = "/crm/auth/meta/callback"


def _bodies(populated) -> dict[tuple[str, str], dict]:
    """A valid body per operation that takes one (connect's is parsed by hand, so the document
    does not describe it)."""
    return {
        ("POST", "/crm/marketing/hsm/rules"): {
            "name": "Limits", "trigger_type": "lead_followup", "delay_hours": 24,
            "template_name": "lead_followup_es", "language": "es",
            "body_params": ["first_name"], "enabled": False,
            "send_window": {"start": "08:00", "end": "20:00", "timezone": "Europe/Madrid"}},
        ("PATCH", "/crm/marketing/hsm/rules/{rule_id}"): {
            "delay_hours": 48, "send_window": {"start": "22:00", "end": "06:00"}},
        ("POST", "/crm/marketing/whatsapp/connect"): {
            "waba_id": populated.setup.waba_id, "phone_number_id": populated.setup.phone_number_id,
            "max_per_second": 10, "timezone": "Europe/Madrid"},
        ("POST", "/crm/marketing/connect"): {"account_id": populated.account_id},
    }


def _send(api, probe: Probe, headers: dict[str, str]):
    if probe.body is not None:
        headers = {**headers, "Content-Type": "application/json"}
    return api.http.request(probe.method, probe.url, headers=headers,
                            content=probe.body.encode("utf-8", "surrogatepass")
                            if probe.body is not None else None)


def _check(probe: Probe, response) -> None:
    assert response.status_code < 500, (probe.label, probe.method, probe.url[:200],
                                        response.status_code, response.text[:300])
    if probe.url.startswith(CALLBACK):
        assert response.status_code == 302, (probe.label, response.status_code)
    elif response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
        body = response.json()
        if set(body) != {"message"}:  # API Gateway's own answers keep their shape
            assert_error(response, response.status_code)


def test_every_parameter_and_body_field_at_the_limits_of_its_type(api, openapi_doc, populated,
                                                                  capsys):
    headers = bearer(populated.tenant_id)
    bodies = _bodies(populated)
    capsys.readouterr()
    sent = 0
    for method, path, op in operations(openapi_doc):
        if (method, path) == ("POST", WEBHOOK):
            continue  # needs a signature to get past 401: test_webhook_fuzz.py
        for probe in probes(openapi_doc, method, path, op, {"rule_id": populated.rule_id},
                            bodies):
            _check(probe, _send(api, probe, headers if op.get("security") else {}))
            sent += 1
    unhandled = emf_metric_total(capsys.readouterr().out, "UnhandledErrors")
    figure("limits", requests=sent, operations=len(operations(openapi_doc)),
           unhandled_errors=unhandled)
    assert sent > 1000
    assert unhandled == 0


# -- regression tests: what the review and the probes above found -----------------------------
@pytest.mark.parametrize("path", ["/crm/marketing/stats", "/crm/marketing/stats/roi",
                                  "/crm/marketing/campaigns"])
@pytest.mark.parametrize("query", ["from=9999-12-15", "from=9999-12-02&to=9999-12-30",
                                   "from=9999-11-15&to=9999-12-30"])
def test_a_range_ending_in_the_last_month_of_the_calendar_is_answered(api, populated, path,
                                                                      query):
    """The month split added 32 days to a day of December 9999: OverflowError, a 500 any
    member could cause (and the canary gate counted it)."""
    response = api.get(f"{path}?{query}", tenant_id=populated.tenant_id, role="member")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["from"] == query.split("&")[0].removeprefix("from=")
    assert [c["spend"] for c in body["campaigns"]] in ([], [0])  # nothing spent in 9999


NESTED = "[" * 5000 + "]" * 5000


@pytest.mark.parametrize("body", [NESTED, '{"name": ' + NESTED + "}",
                                  '{"account_id": ' + '{"a": ' * 3000 + "1" + "}" * 3001],
                         ids=["list", "list_in_field", "objects_in_field"])
@pytest.mark.parametrize("method,path", [("POST", "/crm/marketing/hsm/rules"),
                                         ("PATCH", "/crm/marketing/hsm/rules/{rule_id}"),
                                         ("POST", "/crm/marketing/whatsapp/connect"),
                                         ("POST", "/crm/marketing/connect")])
def test_a_deeply_nested_body_is_an_input_error(api, populated, body, method, path, capsys):
    """json.loads raised RecursionError (not a ValueError) inside Powertools' validation: 500."""
    capsys.readouterr()
    response = api.http.request(method, path.replace("{rule_id}", populated.rule_id),
                                content=body, headers={**bearer(populated.tenant_id),
                                                       "Content-Type": "application/json"})
    error = assert_error(response, 422, "validation_error")
    assert error["details"] == [{"field": "body", "problem": "nested deeper than 32 levels"}]
    assert emf_metric_total(capsys.readouterr().out, "UnhandledErrors") == 0


@pytest.mark.parametrize("text", ['"\\ud800"', '"a\\udfffb"', '"\\udc00\\ud800"'])
def test_text_with_an_unpaired_surrogate_is_an_input_error(api, populated, text):
    """Valid JSON that no UTF-8 encoder takes: it reached the database driver (500)."""
    for method, path, body in (
            ("POST", "/crm/marketing/whatsapp/connect",
             f'{{"waba_id": "1", "phone_number_id": "2", "timezone": {text}}}'),
            ("POST", "/crm/marketing/connect", f'{{"account_id": {text}}}'),
            ("PATCH", f"/crm/marketing/hsm/rules/{populated.rule_id}", f'{{"name": {text}}}')):
        response = api.http.request(method, path, content=body,
                                    headers={**bearer(populated.tenant_id),
                                             "Content-Type": "application/json"})
        error = assert_error(response, 422, "validation_error")
        assert error["details"][0]["field"] == "body", (path, error)


def test_a_body_that_is_not_json_at_all_is_a_422_with_the_field(api, populated):
    response = api.post("/crm/marketing/hsm/rules", tenant_id=populated.tenant_id,
                        content=b'{"name": ', headers={"Content-Type": "application/json"})
    error = assert_error(response, 422, "validation_error")
    assert [d["field"] for d in error["details"]] == ["body"]
    assert error["details"][0]["problem"].startswith("not valid JSON")


def test_json_values_python_accepts_but_json_does_not_are_refused(api, populated):
    """NaN and Infinity are not JSON (RFC 8259), but json.loads takes them."""
    for raw in ("NaN", "Infinity", "-Infinity"):
        response = api.request("PATCH", f"/crm/marketing/hsm/rules/{populated.rule_id}",
                               tenant_id=populated.tenant_id,
                               content=f'{{"delay_hours": {raw}}}'.encode(),
                               headers={"Content-Type": "application/json"})
        error = assert_error(response, 422, "validation_error")
        assert error["details"] == [{"field": "body", "problem": "NaN and Infinity are not JSON"}]
    assert json.loads(api.get("/crm/marketing/hsm/rules", tenant_id=populated.tenant_id)
                      .text)["rules"][0]["delay_hours"] == 24

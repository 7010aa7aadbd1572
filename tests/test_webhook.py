"""GET/POST /crm/webhooks/meta over real HTTP: handshake, signatures, every status of a batch,
no downgrades, template updates, opt-outs, and nothing changed by a rejected request."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devstack.lambda_context import LocalContext
from devstack.stack import VERIFY_TOKEN
from functions.meta_webhook.app import lambda_handler
from shared.platform.db import tenant_tx

pytest.register_assert_rewrite("tests.fixtures_whatsapp")

from tests.fixtures_whatsapp import (  # noqa: E402
    fetch,
    insert_lead,
    insert_log,
    insert_rule,
    post_webhook,
    sign,
    status,
    status_payload,
)

pytest_plugins = ["tests.fixtures_whatsapp"]

HOOK = "/crm/webhooks/meta"


@pytest.fixture
def sent(whatsapp_setup):
    """A lead, a rule, and a log the dispatcher marked SENT with its wamid."""
    tenant_id = whatsapp_setup.tenant_id
    lead = insert_lead(tenant_id, phone="+34611222333")
    rule = insert_rule(tenant_id)
    wamid = f"wamid.{uuid.uuid4().hex}"
    log = insert_log(tenant_id, rule, lead, status="SENT", wamid=wamid)
    return {"setup": whatsapp_setup, "tenant_id": tenant_id, "lead": lead, "rule": rule,
            "log": log, "wamid": wamid, "phone": whatsapp_setup.phone_number_id}


def _log(tenant_id: str, log_id: str) -> dict:
    return fetch(tenant_id, "SELECT * FROM automation_logs WHERE id = %s", (log_id,))[0]


def _lead(tenant_id: str, lead_id: str) -> dict:
    return fetch(tenant_id, "SELECT * FROM leads WHERE id = %s", (lead_id,))[0]


# -- handshake ----------------------------------------------------------------------------------
def test_verification_handshake_echoes_the_challenge(api, stack):
    response = api.get(HOOK, params={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN,
                                     "hub.challenge": "1158201444"})
    assert response.status_code == 200
    assert response.text == "1158201444"
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("params, code", [
    ({"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"}, 403),
    ({"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"}, 403),
    ({"hub.challenge": "1"}, 403),
    ({"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN,
      "hub.challenge": "<script>alert(1)</script>"}, 400),
])
def test_bad_handshake_is_refused(api, stack, params, code):
    response = api.get(HOOK, params=params)
    assert response.status_code == code
    assert "script" not in response.text


# -- statuses -----------------------------------------------------------------------------------
def test_statuses_move_forward_only(api, sent):
    tenant_id, wamid, phone = sent["tenant_id"], sent["wamid"], sent["phone"]

    # read arrives before delivered (Meta does not guarantee order), then duplicates.
    for kind, ts in (("read", 1_760_000_300), ("delivered", 1_760_000_200),
                     ("sent", 1_760_000_100), ("read", 1_760_000_400)):
        response = post_webhook(api, status_payload(phone, [status(wamid, kind, timestamp=ts)]))
        assert response.status_code == 200, response.text

    log = _log(tenant_id, sent["log"])
    assert log["status"] == "READ"
    assert log["read_at"] == datetime.fromtimestamp(1_760_000_300, UTC)
    assert log["delivered_at"] == datetime.fromtimestamp(1_760_000_300, UTC)
    assert log["sent_at"] is not None and log["error_code"] is None


def test_failed_is_final_with_code_and_title(api, sent):
    tenant_id, wamid, phone = sent["tenant_id"], sent["wamid"], sent["phone"]
    failed = status(wamid, "failed", errors=[{
        "code": 131049, "title": "This message was not delivered to maintain healthy ecosystem "
        "engagement.", "error_data": {"details": "Meta chose not to deliver."}}])
    response = post_webhook(api, status_payload(phone, [failed, status(wamid, "delivered")]))

    assert response.status_code == 200
    log = _log(tenant_id, sent["log"])
    assert log["status"] == "FAILED"
    assert log["error_code"] == "131049"
    assert log["error_message"].startswith("This message was not delivered")
    assert log["failed_at"] is not None
    # A read of the same second and a repeated failure leave it FAILED (a tie goes to the
    # failure); the read's time is recorded all the same.
    post_webhook(api, status_payload(phone, [status(wamid, "read"), failed]))
    log = _log(tenant_id, sent["log"])
    assert (log["status"], log["error_code"]) == ("FAILED", "131049")


def test_failed_wins_whatever_order_it_arrives_in(api, sent):
    tenant_id, wamid, phone = sent["tenant_id"], sent["wamid"], sent["phone"]
    post_webhook(api, status_payload(phone, [status(wamid, "delivered")]))
    failed = status(wamid, "failed", errors=[{"code": 131026, "title": "Undeliverable"}])
    post_webhook(api, status_payload(phone, [failed]))
    log = _log(tenant_id, sent["log"])
    assert (log["status"], log["error_code"], log["error_message"]) == (
        "FAILED", "131026", "Undeliverable")


def test_an_old_failed_never_overwrites_a_later_delivered_or_read(api, sent):
    """Meta retries for days: a FAILED from before the message was delivered and read can
    arrive last. It used to win whatever came before it, turning a READ into FAILED."""
    tenant_id, wamid, phone = sent["tenant_id"], sent["wamid"], sent["phone"]
    for kind, ts in (("delivered", 1_760_000_200), ("read", 1_760_000_300)):
        post_webhook(api, status_payload(phone, [status(wamid, kind, timestamp=ts)]))
    stale = status(wamid, "failed", timestamp=1_760_000_100,
                   errors=[{"code": 131050, "title": "User stopped marketing"}])
    response = post_webhook(api, status_payload(phone, [stale]))
    assert response.status_code == 200, response.text
    log = _log(tenant_id, sent["log"])
    assert (log["status"], log["error_code"], log["failed_at"]) == ("READ", None, None)
    assert log["read_at"] == datetime.fromtimestamp(1_760_000_300, UTC)
    assert _lead(tenant_id, sent["lead"])["whatsapp_opt_out"] is False  # the stale 131050 too


def test_failure_and_delivery_end_the_same_in_either_order(api, sent):
    """The later of the two by Meta's timestamp wins, whichever arrives first."""
    tenant_id, phone = sent["tenant_id"], sent["phone"]
    failed = {"code": 131026, "title": "Undeliverable"}
    cases = [(1_760_000_100, 1_760_000_200, "DELIVERED"), (1_760_000_200, 1_760_000_100, "FAILED")]
    for failed_at, delivered_at, expected in cases:
        rows = []
        for first in ("failed", "delivered"):
            wamid = f"wamid.{uuid.uuid4().hex}"
            log = insert_log(tenant_id, sent["rule"], insert_lead(tenant_id), status="SENT",
                             wamid=wamid)
            updates = {"failed": status(wamid, "failed", timestamp=failed_at, errors=[failed]),
                       "delivered": status(wamid, "delivered", timestamp=delivered_at)}
            second = "delivered" if first == "failed" else "failed"
            for kind in (first, second):
                post_webhook(api, status_payload(phone, [updates[kind]]))
            row = _log(tenant_id, log)
            rows.append({k: row[k] for k in ("status", "error_code", "error_message",
                                              "failed_at", "delivered_at", "read_at")})
        assert rows[0] == rows[1], (failed_at, delivered_at, rows)
        assert rows[0]["status"] == expected


def test_the_same_delivery_twice_is_applied_once(api, sent):
    """Meta retries a delivery it did not see answered; a captured one can be replayed. A body
    already applied is answered 200 and not applied again (not even `updated_at` moves)."""
    tenant_id, wamid, phone = sent["tenant_id"], sent["wamid"], sent["phone"]
    body = json.dumps(status_payload(phone, [status(wamid, "delivered")])).encode()
    first = post_webhook(api, body)
    assert first.json()["received"]["statuses"] == 1
    assert first.json()["received"]["duplicate"] == 0
    stamped = _log(tenant_id, sent["log"])["updated_at"]
    for _ in range(2):
        again = post_webhook(api, body)
        assert again.status_code == 200
        assert again.json()["received"] == {**{k: 0 for k in first.json()["received"]},
                                            "duplicate": 1}
    assert _log(tenant_id, sent["log"])["updated_at"] == stamped
    # The same update in other bytes is another delivery: applied (and idempotent).
    other = post_webhook(api, json.dumps(status_payload(phone, [status(wamid, "delivered")]),
                                         indent=1).encode())
    assert other.json()["received"]["statuses"] == 1


def test_a_delivery_refused_before_it_was_applied_is_not_remembered(api, sent):
    body = json.dumps(status_payload(sent["phone"], [status(sent["wamid"], "read")])).encode()
    assert post_webhook(api, body, signature="sha256=" + "0" * 64).status_code == 401
    assert post_webhook(api, body).json()["received"]["statuses"] == 1


def test_user_stopped_marketing_failure_opts_the_lead_out(api, sent):
    failed = status(sent["wamid"], "failed", errors=[{"code": 131050, "title": "Unable to "
                                                      "deliver: user stopped marketing"}])
    post_webhook(api, status_payload(sent["phone"], [failed]))
    lead = _lead(sent["tenant_id"], sent["lead"])
    assert lead["whatsapp_opt_out"] is True
    assert lead["whatsapp_opt_out_source"] == "meta_131050"


def test_claim_left_pending_is_reconciled_by_callback_data(api, whatsapp_setup):
    """A dispatcher crash after Meta accepted: no wamid stored, only the log id at Meta."""
    tenant_id = whatsapp_setup.tenant_id
    log = insert_log(tenant_id, insert_rule(tenant_id), insert_lead(tenant_id),
                     status="PENDING", wamid=None)
    wamid = f"wamid.{uuid.uuid4().hex}"
    post_webhook(api, status_payload(whatsapp_setup.phone_number_id,
                                     [status(wamid, "sent", log_id=log)]))
    row = _log(tenant_id, log)
    assert (row["status"], row["wamid"]) == ("SENT", wamid)
    # From now on the wamid alone finds it.
    post_webhook(api, status_payload(whatsapp_setup.phone_number_id,
                                     [status(wamid, "delivered")]))
    assert _log(tenant_id, log)["status"] == "DELIVERED"


def test_callback_data_never_rebinds_a_log_that_has_another_wamid(api, sent):
    post_webhook(api, status_payload(sent["phone"], [
        status("wamid.someone-else", "read", log_id=sent["log"])]))
    row = _log(sent["tenant_id"], sent["log"])
    assert (row["status"], row["wamid"]) == ("SENT", sent["wamid"])


def test_every_status_of_a_1000_update_batch_is_processed(api, whatsapp_setup):
    tenant_id, phone = whatsapp_setup.tenant_id, whatsapp_setup.phone_number_id
    rule = insert_rule(tenant_id)
    with_rows = [f"wamid.batch.{tenant_id}.{i}" for i in range(250)]
    with tenant_tx(tenant_id) as conn:  # 250 leads, each with a SENT log, in one statement
        conn.execute(
            "WITH l AS (INSERT INTO leads (tenant_id, name, phone) "
            "  SELECT %s, 'Lead ' || i, '+3462' || lpad(i::text, 7, '0') "
            "  FROM generate_series(0, 249) i RETURNING id, phone) "
            "INSERT INTO automation_logs (tenant_id, rule_id, lead_id, template_name, language, "
            "  phone, status, wamid) "
            "SELECT %s, %s, l.id, 'lead_followup_es', 'es', l.phone, 'SENT', "
            "  'wamid.batch.' || %s || '.' || (substr(l.phone, 6))::int FROM l",
            (tenant_id, tenant_id, rule, tenant_id))
    # 1,000 updates spread over 10 entries x 2 changes: every wamid gets sent, delivered, read
    # and a duplicate delivered, shuffled across changes.
    updates = [status(w, kind) for kind in ("sent", "delivered", "read", "delivered")
               for w in with_rows]
    changes = [updates[i:i + 50] for i in range(0, 1000, 50)]
    payload = {"object": "whatsapp_business_account", "entry": [
        {"id": whatsapp_setup.waba_id, "changes": [
            status_payload(phone, chunk)["entry"][0]["changes"][0] for chunk in changes[e::10]]}
        for e in range(10)]}

    started = time.perf_counter()
    response = post_webhook(api, payload)
    elapsed = time.perf_counter() - started

    assert response.status_code == 200, response.text
    assert response.json()["received"]["statuses"] == 1000
    states = fetch(tenant_id, "SELECT status, count(*) AS n FROM automation_logs GROUP BY 1")
    assert states == [{"status": "READ", "n": 250}]
    print(f"1000-status webhook batch: {elapsed:.3f}s")


def test_status_for_another_tenants_wamid_changes_nothing(api, sent, wa_sandbox, stack_sandbox,
                                                          other_tenant_id):
    from tests.fixtures_whatsapp import connect, new_account

    other = new_account(wa_sandbox, stack_sandbox, other_tenant_id)
    connect(other)
    # Signed, but it comes through the other tenant's number: RLS hides the first tenant's row.
    response = post_webhook(api, status_payload(other.phone_number_id,
                                                [status(sent["wamid"], "read",
                                                        log_id=sent["log"])]))
    assert response.status_code == 200
    assert response.json()["received"]["statuses_unmatched"] == 1
    assert _log(sent["tenant_id"], sent["log"])["status"] == "SENT"


# -- rejected requests change nothing -----------------------------------------------------------
@pytest.mark.parametrize("signature", [
    None, "", "sha256=" + "0" * 64, "sha1=abc", "deadbeef",
    sign(b"{}"),  # valid for another body
    sign(b"x", secret="other-app-secret"),
])
def test_bad_or_missing_signature_is_401_and_nothing_changes(api, sent, signature):
    payload = status_payload(sent["phone"], [status(sent["wamid"], "read")])
    body = json.dumps(payload).encode()
    if signature == sign(b"x", secret="other-app-secret"):
        signature = sign(body, secret="other-app-secret")
    response = post_webhook(api, body, signature=signature)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert _log(sent["tenant_id"], sent["log"])["status"] == "SENT"


def test_malformed_json_is_400(api, sent):
    for body in (b'{"object": "whatsapp_business_account", "entry": [', b"[1, 2]", b"\xff\xfe"):
        response = post_webhook(api, body)
        assert response.status_code == 400, body
        assert response.json()["error"]["code"] == "bad_request"


def test_oversized_body_is_413_and_nothing_changes(api, sent):
    payload = status_payload(sent["phone"], [status(sent["wamid"], "read")])
    payload["padding"] = "x" * (1024 * 1024)
    response = post_webhook(api, payload)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert _log(sent["tenant_id"], sent["log"])["status"] == "SENT"


def test_base64_body_is_verified_on_the_raw_bytes(stack, sent):
    """API Gateway base64-encodes bodies it considers binary; the signature covers the bytes."""
    payload = status_payload(sent["phone"], [status(sent["wamid"], "delivered")])
    raw = json.dumps(payload, ensure_ascii=False).encode()
    event = json.loads(Path("events/meta_webhook_status.json").read_text())
    event["body"] = base64.b64encode(raw).decode()
    event["isBase64Encoded"] = True
    event["headers"]["x-hub-signature-256"] = sign(raw)
    result = lambda_handler(event, LocalContext("MetaWebhookFunction"))
    assert result["statusCode"] == 200, result["body"]
    assert _log(sent["tenant_id"], sent["log"])["status"] == "DELIVERED"
    event["headers"]["x-hub-signature-256"] = sign(raw + b" ")
    assert lambda_handler(event, LocalContext("MetaWebhookFunction"))["statusCode"] == 401


# -- templates, preferences, unknowns -----------------------------------------------------------
def _template_update(waba_id: str, template_id: str, event: str, *, reason: str = "NONE",
                     when: int | None = None, name: str = "lead_followup_es") -> dict:
    return {"object": "whatsapp_business_account", "entry": [{
        "id": waba_id, "time": when or int(time.time()) + 5, "changes": [{
            "field": "message_template_status_update",
            "value": {"event": event, "message_template_id": int(template_id),
                      "message_template_name": name, "message_template_language": "es",
                      "reason": reason}}]}]}


def test_template_status_update_changes_the_row_without_a_new_read(api, whatsapp_setup):
    tenant_id, waba_id = whatsapp_setup.tenant_id, whatsapp_setup.waba_id
    template_id = whatsapp_setup.templates["lead_followup_es:es"]

    response = post_webhook(api, _template_update(waba_id, template_id, "REJECTED",
                                                  reason="INCORRECT_CATEGORY"))
    assert response.status_code == 200
    row = fetch(tenant_id, "SELECT status, rejection_reason FROM meta_templates "
                           "WHERE template_id = %s", (template_id,))[0]
    assert row == {"status": "REJECTED", "rejection_reason": "INCORRECT_CATEGORY"}
    # Applied as it came: the list is still current, nothing needs reading again.
    sender = fetch(tenant_id, "SELECT templates_synced_at FROM whatsapp_senders")[0]
    assert sender["templates_synced_at"] is not None

    # A retry of an older event cannot undo a newer one; REINSTATED means approved again.
    post_webhook(api, _template_update(waba_id, template_id, "REINSTATED",
                                       when=int(time.time()) + 60))
    post_webhook(api, _template_update(waba_id, template_id, "PAUSED",
                                       when=int(time.time()) + 30))
    row = fetch(tenant_id, "SELECT status, rejection_reason FROM meta_templates "
                           "WHERE template_id = %s", (template_id,))[0]
    assert row == {"status": "APPROVED", "rejection_reason": None}


def test_an_update_for_a_template_new_to_us_marks_the_list_for_the_next_sync(
        api, whatsapp_setup):
    tenant_id, waba_id = whatsapp_setup.tenant_id, whatsapp_setup.waba_id

    response = post_webhook(api, _template_update(waba_id, "987654321012345", "APPROVED",
                                                  name="plantilla_nueva"))

    assert response.status_code == 200
    sender = fetch(tenant_id, "SELECT templates_synced_at FROM whatsapp_senders")[0]
    assert sender["templates_synced_at"] is None  # the template sync reads it soon


def _preference(phone_number_id: str, wa_id: str, value: str, ts: int) -> dict:
    return {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
        "field": "user_preferences",
        "value": {"messaging_product": "whatsapp",
                  "metadata": {"display_phone_number": "34600000001",
                               "phone_number_id": phone_number_id},
                  "contacts": [{"profile": {"name": "Ana"}, "wa_id": wa_id}],
                  "user_preferences": [{"wa_id": wa_id, "detail": "User requested to stop "
                                        "marketing messages", "category": "marketing_messages",
                                        "value": value, "timestamp": ts}]}}]}]}


def test_marketing_stop_opts_out_and_resume_opts_back_in(api, whatsapp_setup, other_tenant_id):
    tenant_id, phone_id = whatsapp_setup.tenant_id, whatsapp_setup.phone_number_id
    lead = insert_lead(tenant_id, phone="+5215512345678")
    manual = insert_lead(tenant_id, phone="+5215512345678", whatsapp_opt_out=True)
    elsewhere = insert_lead(other_tenant_id, phone="+5215512345678")

    post_webhook(api, _preference(phone_id, "5215512345678", "stop", 1_760_000_100))
    assert _lead(tenant_id, lead)["whatsapp_opt_out"] is True
    assert _lead(tenant_id, lead)["whatsapp_opt_out_source"] == "whatsapp_preferences"
    assert _lead(other_tenant_id, elsewhere)["whatsapp_opt_out"] is False

    post_webhook(api, _preference(phone_id, "5215512345678", "resume", 1_760_000_200))
    post_webhook(api, _preference(phone_id, "5215512345678", "stop", 1_760_000_150))  # stale retry
    assert _lead(tenant_id, lead)["whatsapp_opt_out"] is False
    # An opt-out set in the CRM is never undone by WhatsApp.
    assert _lead(tenant_id, manual)["whatsapp_opt_out"] is True


def test_stop_keyword_reply_opts_out(api, whatsapp_setup):
    tenant_id, phone_id = whatsapp_setup.tenant_id, whatsapp_setup.phone_number_id
    lead = insert_lead(tenant_id, phone="+34611999888")
    other = insert_lead(tenant_id, phone="+34611999777")
    payload = status_payload(phone_id, [])
    value = payload["entry"][0]["changes"][0]["value"]
    value["messages"] = [
        {"from": "34611999888", "id": "wamid.in1", "timestamp": "1760000000", "type": "button",
         "button": {"payload": "Stop promotions", "text": "Stop promotions"}},
        {"from": "34611999777", "id": "wamid.in2", "timestamp": "1760000000", "type": "text",
         "text": {"body": "¿Me llamáis mañana?"}},
    ]
    assert post_webhook(api, payload).status_code == 200
    assert _lead(tenant_id, lead)["whatsapp_opt_out_source"] == "whatsapp_keyword"
    assert _lead(tenant_id, other)["whatsapp_opt_out"] is False


def test_unknown_fields_objects_and_numbers_are_accepted_and_ignored(api, sent):
    payload = status_payload(sent["phone"], [status(sent["wamid"], "played")])
    payload["entry"][0]["changes"] += [{"field": "account_update", "value": {"event": "X"}},
                                       {"field": "messages", "value": {
                                           "metadata": {"phone_number_id": "999999"},
                                           "statuses": [status(sent["wamid"], "read")]}}]
    payload["entry"].append("not an entry")
    response = post_webhook(api, payload)
    assert response.status_code == 200
    received = response.json()["received"]
    assert received["ignored"] == 3 and received["unknown_number"] == 1
    assert post_webhook(api, {"object": "page", "entry": []}).status_code == 200
    assert _log(sent["tenant_id"], sent["log"])["status"] == "SENT"

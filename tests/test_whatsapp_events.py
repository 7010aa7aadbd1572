"""The sample events in events/ (for `sam local invoke -e`) run unchanged through the handlers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devstack.lambda_context import LocalContext
from functions.hsm_logs.app import lambda_handler as hsm_logs
from functions.hsm_rules.app import lambda_handler as hsm_rules
from functions.hsm_templates.app import lambda_handler as hsm_templates
from functions.meta_webhook.app import lambda_handler as meta_webhook
from functions.whatsapp_accounts.app import lambda_handler as whatsapp_accounts
from functions.whatsapp_connect.app import lambda_handler as whatsapp_connect

EVENTS = Path(__file__).resolve().parent.parent / "events"

CASES = [
    ("whatsapp_accounts_admin", whatsapp_accounts, 409),  # no Meta connection for the tenant
    ("whatsapp_accounts_member", whatsapp_accounts, 403),
    ("whatsapp_connect_admin", whatsapp_connect, 409),
    ("whatsapp_connect_invalid", whatsapp_connect, 422),
    ("hsm_templates_member", hsm_templates, 200),
    ("hsm_rules_list_member", hsm_rules, 200),
    ("hsm_rules_create_admin", hsm_rules, 422),  # no synced template yet
    ("hsm_rules_create_invalid", hsm_rules, 422),
    ("hsm_rules_update_admin", hsm_rules, 404),
    ("hsm_rules_delete_admin", hsm_rules, 404),
    ("hsm_logs_member", hsm_logs, 200),
    ("meta_webhook_verify", meta_webhook, 200),
    ("meta_webhook_status", meta_webhook, 200),
    ("meta_webhook_template_status", meta_webhook, 200),
    ("meta_webhook_user_preferences", meta_webhook, 200),
    ("meta_webhook_bad_signature", meta_webhook, 401),
]


@pytest.mark.parametrize("name, handler, expected", CASES, ids=[c[0] for c in CASES])
def test_sample_event(stack, tenant_id, name, handler, expected):
    event = json.loads((EVENTS / f"{name}.json").read_text())
    claims = (event["requestContext"].get("authorizer") or {}).get("jwt", {}).get("claims")
    if claims:
        claims["custom:tenant_id"] = tenant_id  # a fresh tenant: no state from other tests

    result = handler(event, LocalContext(name))

    assert result["statusCode"] == expected, result["body"]
    assert result["headers"]["X-Frame-Options"] == "DENY"
    if expected >= 400:
        assert "error" in json.loads(result["body"])

"""Secrets and keys (issue 18, item 6): the webhook verify token comes from Secrets Manager at
run time, and the token KMS key can be used only by the functions that handle tokens, only with
the encryption context every token is sealed under."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters

from devstack.stack import VERIFY_TOKEN
from devstack.template import load_template, resources
from shared.platform.crypto import _context
from shared.platform.settings import get_settings

USE_ACTIONS = ("kms:encrypt", "kms:decrypt", "kms:reencrypt", "kms:generatedatakey", "kms:*")


def _as_list(value):
    return value if isinstance(value, list) else [value]


# -- the webhook verify token ------------------------------------------------------------------
@pytest.fixture
def verify_token_in_secrets_manager(stack, monkeypatch):
    token = f"vt-{uuid.uuid4().hex}"
    arn = boto3.client("secretsmanager").create_secret(
        Name=f"marketing-hub-verify-{uuid.uuid4().hex[:8]}", SecretString=token)["ARN"]
    monkeypatch.delenv("META_VERIFY_TOKEN")
    monkeypatch.setenv("META_VERIFY_TOKEN_ARN", arn)
    get_settings.cache_clear()
    parameters.clear_caches()
    yield token
    monkeypatch.undo()
    get_settings.cache_clear()
    parameters.clear_caches()


def test_the_verify_token_is_read_from_secrets_manager_at_run_time(
        api, verify_token_in_secrets_manager):
    def handshake(token: str):
        return api.get("/crm/webhooks/meta", params={
            "hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "4711"})

    answer = handshake(verify_token_in_secrets_manager)
    assert (answer.status_code, answer.text) == (200, "4711")
    assert handshake(VERIFY_TOKEN).status_code == 403  # the local variable is not in play


def test_the_template_never_puts_a_secret_value_into_a_function_configuration():
    text = json.dumps(load_template())
    assert "{{resolve:" not in text  # dynamic references end up in plain configuration
    webhook = resources("AWS::Serverless::Function")["MetaWebhookFunction"]
    variables = webhook["Environment"]["Variables"]
    assert "META_VERIFY_TOKEN" not in variables
    assert variables["META_VERIFY_TOKEN_ARN"] == {"Ref": "MetaWebhookVerifyToken"}
    readable = [p["AWSSecretsManagerGetSecretValuePolicy"]["SecretArn"]
                for p in webhook["Policies"] if "AWSSecretsManagerGetSecretValuePolicy" in p]
    assert {"Ref": "MetaWebhookVerifyToken"} in readable


# -- the token key -----------------------------------------------------------------------------
def _statements() -> list[dict]:
    return resources("AWS::KMS::Key")["TokenKey"]["KeyPolicy"]["Statement"]


def _grants_use(statement: dict) -> bool:
    return any(a.lower().startswith(USE_ACTIONS) for a in _as_list(statement["Action"]))


def test_the_account_administers_the_token_key_but_cannot_use_it():
    for statement in _statements():
        principals = _as_list(statement["Principal"].get("AWS", []))
        to_account = any("Fn::Sub" in p and p["Fn::Sub"].endswith(":root") for p in principals
                         if isinstance(p, dict))
        if to_account or principals == ["*"]:
            assert not _grants_use(statement), statement["Sid"]


def test_only_function_roles_use_the_token_key_and_only_with_the_token_context():
    functions = set(resources("AWS::Serverless::Function"))
    context_keys = sorted(_context("t-1", "META_USER_LONG_TOKEN"))
    users: dict[str, set[str]] = {}
    for statement in filter(_grants_use, _statements()):
        for principal in _as_list(statement["Principal"]["AWS"]):
            role, attribute = principal["Fn::GetAtt"].split(".") \
                if isinstance(principal["Fn::GetAtt"], str) else principal["Fn::GetAtt"]
            assert attribute == "Arn" and role.removesuffix("Role") in functions, principal
            users.setdefault(statement["Sid"], set()).add(role.removesuffix("Role"))
        condition = statement["Condition"]
        assert sorted(condition["ForAllValues:StringEquals"]["kms:EncryptionContextKeys"]) == \
            context_keys
        assert {f"kms:EncryptionContext:{k}" for k in context_keys} <= set(
            condition["StringLike"]), statement["Sid"]
        # Any tenant and credential, except the Pages connect: Page tokens only (Lead Ads).
        credential = "meta_page:?*" if statement["Sid"] == "PagesConnectSealsPageTokensOnly" \
            else "?*"
        assert condition["StringLike"]["kms:EncryptionContext:tenant_id"] == "?*"
        assert condition["StringLike"]["kms:EncryptionContext:credential"] == credential
    sealers = {f for sid, fs in users.items() if "Seal" in sid for f in fs}
    assert sealers == {"OauthCallbackFunction", "TokenRefreshFunction", "LeadPagesFunction"}
    assert users["PagesConnectSealsPageTokensOnly"] == {"LeadPagesFunction"}
    assert "MetaWebhookFunction" not in set().union(*users.values())


def test_no_function_policy_reaches_the_token_key_around_its_key_policy():
    for name, function in resources("AWS::Serverless::Function").items():
        assert "TokenKey" not in json.dumps(function.get("Policies", [])), name

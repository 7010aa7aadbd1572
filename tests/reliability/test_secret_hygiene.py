"""Secret hygiene: every flow runs with every log captured; no access token, OAuth code, app
secret or ciphertext appears in a log line, a response (body or headers), an exception text or an
EventBridge event; every column of every table, the DynamoDB tables and the URLs the functions
sent to Meta are scanned for plaintext tokens.

Logs are captured three ways at once: a handler on our Powertools logger (formatted exactly as it
goes to stdout), a handler on the root logger at INFO, production's level (boto3, httpx, psycopg,
Powertools internals), and the test's stdout/stderr file descriptors (capfd).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest

from devstack.lambda_context import LocalContext
from shared.connection import credentials
from shared.connection.oauth_state import code_verifier
from shared.platform.db import tenant_tx
from shared.platform.observability import logger as app_logger
from shared.platform.settings import get_settings
from tests.ads_support import AdsControl, connect_meta, run_sync
from tests.fixtures_dispatch import add_leads, dispatch
from tests.fixtures_oauth import Browser
from tests.fixtures_whatsapp import new_account, post_webhook, status, status_payload
from tests.reliability.conftest import TENANT_TABLES, bearer, figure

TOKEN_LENGTH = 67  # "EAA" + 64 url-safe characters (sandbox/world.py)


class _NotTheHarness(logging.Filter):
    """Drop what the test's own clients log (the browser's GETs carry the code in their URL, as a
    real browser's would) and the local API's werkzeug access log (API Gateway's access log is
    configured without query strings, see template.yaml)."""

    def __init__(self, api_url: str) -> None:
        super().__init__()
        self.harness = (api_url, "/dialog/oauth", "/__sandbox")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("werkzeug"):
            return False
        if record.name.startswith(("httpx", "httpcore")):
            return not any(marker in record.getMessage() for marker in self.harness)
        return True


@pytest.fixture
def all_logs(stack) -> Iterator[io.StringIO]:
    """Our logger's lines, and every library's records at INFO (production's level:
    POWERTOOLS_LOG_LEVEL and Lambda's application log level are INFO)."""
    buffer = io.StringIO()
    ours = logging.StreamHandler(buffer)
    ours.setFormatter(app_logger.registered_formatter)
    others = logging.StreamHandler(buffer)
    others.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s %(args)s"))
    others.setLevel(logging.INFO)
    others.addFilter(_NotTheHarness(stack.api_url))
    root = logging.getLogger()
    saved_level = root.level
    root.setLevel(logging.INFO)
    app_logger.addHandler(ours)
    root.addHandler(others)
    try:
        yield buffer
    finally:
        app_logger.removeHandler(ours)
        root.removeHandler(others)
        root.setLevel(saved_level)


class Recorder:
    """Every answer our API gave during the flows: status line, headers and body."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url
        self.answers: list[str] = []

    def __call__(self, response: httpx.Response) -> None:
        if not str(response.url).startswith(self.api_url):
            return  # Meta's consent page answers the browser, not us
        response.read()
        self.answers.append(f"{response.status_code} {dict(response.headers)} {response.text}")

    def text(self) -> str:
        return "\n".join(self.answers)


def tokens_in(text: str, known: set[str]) -> set[str]:
    """Known sandbox tokens found anywhere in `text` (linear: every "EAA" is looked at)."""
    found = set()
    start = text.find("EAA")
    while start != -1:
        candidate = text[start:start + TOKEN_LENGTH]
        if candidate in known:
            found.add(candidate)
        start = text.find("EAA", start + 1)
    return found


def _ciphertexts(owner) -> list[str]:
    rows = owner.execute("SELECT ciphertext FROM credentials").fetchall()
    out = []
    for row in rows:
        blob = bytes(row["ciphertext"])
        out += [blob.hex(), base64.b64encode(blob).decode(),
                base64.urlsafe_b64encode(blob).decode()]
    return out


def _stored_token(tenant_id: str) -> str:
    with tenant_tx(tenant_id) as conn:
        return credentials.load(conn).token()


def test_no_secret_in_any_log_response_event_or_url_across_every_flow(
        api, stack, owner, wa, _control, all_logs, capfd, event_capture, short_meta_timeout,
        tenant_id, other_tenant_id):
    recorder = Recorder(stack.api_url)
    api.http.event_hooks["response"].append(recorder)
    seen_tokens: set[str] = set()
    try:
        # 1. OAuth: /url, Meta's consent page, the callback (code -> long-lived -> debug_token).
        browser = Browser(api, stack.sandbox.url)
        browser.http.event_hooks["response"].append(recorder)
        flow = browser.start(tenant_id)
        callback_url = browser.consent(flow)
        code = parse_qs(urlsplit(callback_url).query)["code"][0]
        outcome = browser.callback(callback_url, bindings=(flow.binding,))
        assert "success=connected" in outcome.headers["location"]
        seen_tokens.add(_stored_token(tenant_id))
        # ... then the same browser cancels a second flow, and Meta fails a third one (a dropped
        # connection on the code exchange, then a timeout on debug_token: exception paths).
        assert "error=" in browser.connect(browser.start(tenant_id), cancel=True).headers[
            "location"]
        for kind, path in (("drop", "/oauth/access_token"), ("timeout", "/debug_token")):
            _control.inject_fault(kind, path, count=6, seconds=1.0)
            failed = browser.connect(browser.start(tenant_id))
            _control.clear_faults()
            assert failed.headers["location"].endswith("error=meta_error")
        browser.close()

        # 2. Token status and "refresh now" (an exchange stores a new token).
        assert api.get("/crm/marketing/token-status", tenant_id=tenant_id,
                       role="member").status_code == 200
        assert api.post("/crm/auth/meta/refresh-tokens", tenant_id=tenant_id).status_code == 200
        seen_tokens.add(_stored_token(tenant_id))

        # 3. The scheduled refresh over a token expiring in two days.
        expiring = f"{other_tenant_id}-r"
        old = _control.issue_token("10001", scopes=list(get_settings().scopes),
                                   expires_at=int(time.time()) + 2 * 86400)
        with tenant_tx(expiring) as conn:
            credentials.save(conn, expiring, old,
                             expires_at=datetime.now(UTC) + timedelta(days=2),
                             data_access_expires_at=None, meta_user_id="10001",
                             scopes=list(get_settings().scopes))
        from functions.token_refresh.app import lambda_handler as refresh_handler

        summary = refresh_handler(json.loads(
            (stack_events() / "token_refresh_scheduled.json").read_text()),
            LocalContext("token_refresh", 300))
        assert summary["refreshed"] >= 1
        seen_tokens |= {old, _stored_token(expiring)}

        # 4. Ads: the wizard, connect, the sync, the stats; then a revoked token and a 5xx.
        ads_tenant = f"{other_tenant_id}-a"
        with AdsControl(stack.sandbox.url) as ads:
            layout = ads.new_user()
            ads_token = connect_meta(ads, ads_tenant, layout["user_id"])
            seen_tokens.add(ads_token)
            assert api.get("/crm/marketing/meta-accounts",
                           tenant_id=ads_tenant).status_code == 200
            account_id = layout["demo_account_id"]
            assert api.post("/crm/marketing/connect", tenant_id=ads_tenant,
                            json={"account_id": account_id}).status_code == 200
            run_sync(ads_tenant, account_id)
            for path in ("/crm/marketing/campaigns", "/crm/marketing/stats",
                         "/crm/marketing/stats/roi"):
                assert api.get(path, tenant_id=ads_tenant, role="member").status_code == 200
            _control.inject_fault("transient", ".*", count=8)
            assert api.get("/crm/marketing/meta-accounts",
                           tenant_id=ads_tenant).status_code == 502
            _control.clear_faults()
            _control.revoke_token(ads_token)
            response = api.get("/crm/marketing/meta-accounts", tenant_id=ads_tenant)
            assert response.json()["error"]["code"] == "meta_reconnect_required"

        # 5. WhatsApp: accounts, connect, templates, a rule, a dispatch, a webhook, the logs.
        wa_tenant = f"{other_tenant_id}-w"
        setup = new_account(wa, _control, wa_tenant)
        seen_tokens.add(setup.token)
        assert api.get("/crm/marketing/whatsapp-accounts", tenant_id=wa_tenant).status_code == 200
        assert api.post("/crm/marketing/whatsapp/connect", tenant_id=wa_tenant, json={
            "waba_id": setup.waba_id, "phone_number_id": setup.phone_number_id}).status_code == 200
        assert api.get("/crm/marketing/hsm/templates", tenant_id=wa_tenant).status_code == 200
        assert api.post("/crm/marketing/hsm/rules", tenant_id=wa_tenant, json={
            "name": "Seguimiento", "delay_hours": 1, "template_name": "lead_followup_es",
            "language": "es", "body_params": ["first_name"]}).status_code == 201
        add_leads(wa_tenant, 3)
        assert dispatch(wa_tenant).sent == 3
        with tenant_tx(wa_tenant) as conn:
            log = conn.execute("SELECT id, wamid FROM automation_logs LIMIT 1").fetchone()
        assert post_webhook(api, status_payload(setup.phone_number_id, [
            status(log["wamid"], "delivered", log_id=str(log["id"]))])).status_code == 200
        assert api.get("/crm/marketing/hsm/logs", tenant_id=wa_tenant).status_code == 200
        _control.revoke_token(setup.token)
        assert api.get("/crm/marketing/whatsapp-accounts", tenant_id=wa_tenant).status_code == 409
    finally:
        api.http.event_hooks["response"].remove(recorder)

    # -- what must never appear -----------------------------------------------------------------
    world = stack.sandbox.world
    with world.lock:
        all_tokens = set(world.tokens)
        all_codes = set(world.codes)
        app_secrets = {app.secret for app in world.apps.values()}
    assert seen_tokens <= all_tokens and len(seen_tokens) >= 5
    secrets = {*seen_tokens, code, *app_secrets, get_settings().app_secret(), *_ciphertexts(owner)}
    captured = capfd.readouterr()
    logs = all_logs.getvalue() + captured.out + captured.err
    assert "oauth_connection" in logs and "token_refresh" in logs  # the capture works
    answers = recorder.text()
    assert len(recorder.answers) >= 20
    events = json.dumps(event_capture.drain())
    for where, text in (("logs", logs), ("responses", answers), ("events", events)):
        leaked = [_context(text, s) for s in secrets if s and s in text]
        assert leaked == [], f"secrets in {where}: {leaked}"
        assert tokens_in(text, all_tokens) == set(), where
        assert not any(c in text for c in all_codes), where
    # The OAuth state, the browser-binding cookie and the PKCE verifier derived from them never
    # reach a log line either (nor an answer: the verifier goes to Meta in a POST body only).
    verifier = code_verifier(flow.state, flow.binding)
    assert flow.state not in logs and flow.binding not in logs and verifier not in logs
    assert verifier not in answers
    figure("secret_hygiene_flows", responses=len(recorder.answers), log_chars=len(logs),
           log_lines=logs.count("\n"), events_chars=len(events), secrets=len(secrets),
           sandbox_tokens=len(all_tokens), sandbox_codes=len(all_codes))


def _context(text: str, secret: str) -> str:
    """Where a leaked secret sits (the secret itself masked), to debug a failure."""
    at = text.index(secret)
    return (text[max(0, at - 150):at] + f"<{len(secret)} chars: {secret[:4]}...>"
            + text[at + len(secret):at + len(secret) + 60])


def stack_events():
    from pathlib import Path

    return Path(__file__).resolve().parents[2] / "events"


# -- scans of everything stored ------------------------------------------------------------------
def _all_tables(owner) -> list[str]:
    return [r["tablename"] for r in owner.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]


def _row_text(row: dict) -> str:
    parts = []
    for value in row.values():
        if isinstance(value, bytes | memoryview):
            raw = bytes(value)
            parts += [raw.decode("latin-1"), raw.hex()]
        else:
            parts.append(json.dumps(value, default=str))
    return " ".join(parts)


def test_no_plaintext_token_in_any_column_of_any_table(stack, owner, populated):
    """As the owner (every tenant's rows): every column of every table, bytea included (raw and
    hex), holds no token the sandbox ever issued in this session, and no OAuth code."""
    world = stack.sandbox.world
    with world.lock:
        tokens = set(world.tokens)
        codes = set(world.codes)
    assert populated.setup.token in tokens
    hex_tokens = {t.encode().hex() for t in tokens}
    tables = _all_tables(owner)
    assert set(TENANT_TABLES) <= set(tables)
    scanned = 0
    for table in tables:
        for row in owner.execute(f'SELECT * FROM "{table}"'):  # noqa: S608 - catalog names
            text = _row_text(row)
            assert tokens_in(text, tokens) == set(), table
            assert not any(h in text for h in hex_tokens if len(text) >= len(h)), table
            assert not any(c in text for c in codes), table
            scanned += 1
    assert scanned > 0
    figure("secret_hygiene_db_scan", tables=len(tables), rows=scanned, tokens=len(tokens),
           codes=len(codes))
    # The scan sees what is there: the tenant's ciphertext is stored, and is not the token.
    row = owner.execute("SELECT ciphertext FROM credentials WHERE tenant_id = %s",
                        (populated.tenant_id,)).fetchone()
    assert populated.setup.token.encode() not in bytes(row["ciphertext"])


def test_no_secret_in_the_dynamodb_tables(stack, api, tenant_id):
    """The OAuth state table keeps a hash of the state, never the state, a code or a token."""
    response = api.get("/crm/auth/meta/url", tenant_id=tenant_id)
    state = response.json()["state"]
    world = stack.sandbox.world
    with world.lock:
        tokens, codes = set(world.tokens), set(world.codes)
    dynamodb = boto3.client("dynamodb")
    items = 0
    for table in (stack.env["OAUTH_STATE_TABLE"],):  # the stack's one table
        for page in dynamodb.get_paginator("scan").paginate(TableName=table):
            for item in page["Items"]:
                text = json.dumps(item)
                assert state not in text
                assert tokens_in(text, tokens) == set()
                assert not any(c in text for c in codes)
                items += 1
    assert items >= 1


def test_no_credential_ever_travelled_in_a_url_to_meta(stack):
    """The sandbox flags every request whose query string carried a token, code or secret."""
    world = stack.sandbox.world
    with world.lock:
        log = list(world.request_log)
    assert log, "the sandbox saw no request"
    in_url = [f"{e['method']} {e['path']}" for e in log if e["credential_in_url"]
              and not e["path"].endswith(("/dialog/oauth", "/dialog/oauth/decide"))]
    assert in_url == []
    figure("secret_hygiene_meta_urls", requests=len(log))


def test_no_secret_in_answers_to_broken_requests(api, populated):
    """Error answers (validation, Meta failures) echo no token or secret either."""
    answers = [
        api.post("/crm/marketing/hsm/rules", tenant_id=populated.tenant_id,
                 json={"name": populated.setup.token, "delay_hours": "x"}),
        api.http.post("/crm/marketing/whatsapp/connect", headers=bearer(populated.tenant_id),
                      content=b"{" + populated.setup.token.encode()),
        api.get("/crm/marketing/hsm/logs", tenant_id=populated.tenant_id,
                params={"cursor": populated.setup.token}),
    ]
    for response in answers:
        assert 400 <= response.status_code < 500, response.text
        assert populated.setup.token not in response.text
        assert get_settings().app_secret() not in response.text

"""GET /crm/auth/meta/callback end to end: a browser goes through /url, the sandbox's consent
page and the callback over real HTTP; state in moto's DynamoDB, tokens in Postgres via KMS."""

from __future__ import annotations

import json
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from devstack.lambda_context import LocalContext
from sandbox.world import OTHER_APP_ID
from shared.connection import credentials
from shared.connection.oauth_dialog import dialog_url
from shared.connection.oauth_state import BINDING_COOKIE, code_verifier, create_state
from shared.meta.graph import GraphClient
from shared.platform.db import tenant_tx
from shared.platform.settings import get_settings

pytest.register_assert_rewrite("tests.fixtures_oauth")  # its helpers assert too

from tests.fixtures_oauth import (  # noqa: E402
    Flow,
    call_kind,
    credential_rows,
    result,
    state_item,
)

pytest_plugins = ["tests.fixtures_oauth"]

EVENTS = Path(__file__).resolve().parent.parent / "events"


def _with_query(url: str, **changes: str | None) -> str:
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    for key, value in changes.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    return parts._replace(query=urlencode(query)).geturl()


def _stored_token(tenant_id: str) -> str:
    with tenant_tx(tenant_id) as conn:
        return credentials.load(conn).token()


def _debug(token: str) -> dict:
    with GraphClient.for_token(None) as graph:
        return graph.debug_token(token)


def _assert_nothing_stored(owner_db, *tenant_ids: str) -> None:
    for tenant_id in tenant_ids:
        assert credential_rows(owner_db, tenant_id) == []


# -- success ---------------------------------------------------------------------------------
def test_original_plan_scenario_callback_redirects_with_success_connected(
        browser, tenant_id, owner_db, meta_log):
    flow = browser.start(tenant_id)

    response = browser.connect(flow)

    assert response.status_code == 302
    assert "success=connected" in response.headers["location"]
    assert response.headers["location"] == (
        f"{get_settings().frontend_url}/crm/marketing?success=connected")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    cleared = response.headers["set-cookie"]
    assert cleared.startswith(f"{BINDING_COOKIE}=;")
    assert "Max-Age=0" in cleared and "Path=/;" in cleared

    [row] = credential_rows(owner_db, tenant_id)
    now = datetime.now(UTC)
    assert (row["name"], row["category"], row["status"]) == (
        "META_USER_LONG_TOKEN", "meta_ads", "active")
    assert row["meta_user_id"] == "10001"
    assert set(get_settings().scopes) <= set(row["scopes"])
    assert now + timedelta(days=59) < row["expires_at"] < now + timedelta(days=61)
    assert now + timedelta(days=89) < row["data_access_expires_at"] < now + timedelta(days=91)
    assert state_item(flow.state) is None  # used up

    # Three Meta calls in sequence (a budget of four), nothing else; no secret in any URL.
    calls = meta_log.calls()
    assert [call_kind(c) for c in calls] == ["code", "long_lived", "debug_token"]
    assert len(calls) <= 4
    assert not [c for c in calls if c["credential_in_url"] or c["method"] != "POST"]

    info = _debug(_stored_token(tenant_id))  # what we stored is the working long-lived token
    assert info["is_valid"] is True and info["app_id"] == get_settings().meta_app_id
    assert row["expires_at"] == datetime.fromtimestamp(info["expires_at"], UTC)


def test_reconnect_replaces_the_token_and_clears_needs_reconnect(browser, tenant_id, owner_db):
    assert "success" in result(browser.connect(browser.start(tenant_id)))
    [first] = credential_rows(owner_db, tenant_id)
    first_token = _stored_token(tenant_id)
    with tenant_tx(tenant_id) as conn:
        assert credentials.mark_needs_reconnect(conn, "meta_190_460")
    assert credential_rows(owner_db, tenant_id)[0]["status"] == "needs_reconnect"

    outcome = result(browser.connect(browser.start(tenant_id), user="10002"))

    assert outcome == {"success": "connected"}
    [row] = credential_rows(owner_db, tenant_id)
    assert row["status"] == "active" and row["status_reason"] is None
    assert row["meta_user_id"] == "10002"
    assert row["id"] == first["id"] and bytes(row["ciphertext"]) != bytes(first["ciphertext"])
    assert _stored_token(tenant_id) != first_token


@pytest.mark.parametrize("case", ["never_expires", "no_expires_in"])
def test_expiry_comes_from_debug_token(browser, tenant_id, owner_db, meta, case):
    overrides = {}
    meta.configure_oauth(include_expires_in=False)  # Meta may omit expires_in altogether
    if case == "never_expires":
        overrides = {"sandbox_token_expires_at": "0", "sandbox_data_access_expires_at": "0"}

    outcome = result(browser.connect(browser.start(tenant_id), overrides=overrides))

    assert outcome == {"success": "connected"}
    [row] = credential_rows(owner_db, tenant_id)
    info = _debug(_stored_token(tenant_id))
    if case == "never_expires":
        assert info["expires_at"] == 0 and info["data_access_expires_at"] == 0
        assert row["expires_at"] is None and row["data_access_expires_at"] is None
    else:
        assert row["expires_at"] == datetime.fromtimestamp(info["expires_at"], UTC)
        assert row["data_access_expires_at"] == datetime.fromtimestamp(
            info["data_access_expires_at"], UTC)


# -- the person cancelled, scopes missing ----------------------------------------------------
def test_cancel_is_access_denied_and_burns_the_state(browser, tenant_id, owner_db, meta_log):
    flow = browser.start(tenant_id)
    url = browser.consent(flow, cancel=True)
    assert parse_qs(urlsplit(url).query)["error"] == ["access_denied"]

    outcome = result(browser.callback(url, bindings=(flow.binding,)))

    assert outcome == {"error": "access_denied"}
    assert state_item(flow.state) is None
    assert meta_log.calls() == []
    _assert_nothing_stored(owner_db, tenant_id)


def test_missing_scopes_are_listed_and_nothing_is_stored(browser, tenant_id, owner_db, meta_log):
    flow = browser.start(tenant_id)

    response = browser.connect(flow, decline=("whatsapp_business_messaging", "ads_read"))

    frontend = get_settings().frontend_url
    assert response.headers["location"] == (
        f"{frontend}/crm/marketing?error=missing_scopes&missing=ads_read,"
        "whatsapp_business_messaging")
    _assert_nothing_stored(owner_db, tenant_id)
    assert state_item(flow.state) is None
    assert [call_kind(c) for c in meta_log.calls()] == ["code", "long_lived", "debug_token"]


def test_missing_scopes_on_reconnect_keep_the_working_connection(browser, tenant_id, owner_db):
    assert "success" in result(browser.connect(browser.start(tenant_id)))
    [before] = credential_rows(owner_db, tenant_id)

    outcome = result(browser.connect(browser.start(tenant_id), decline=("ads_read",)))

    assert outcome == {"error": "missing_scopes", "missing": "ads_read"}
    assert credential_rows(owner_db, tenant_id) == [before]


# -- invalid_state ---------------------------------------------------------------------------
@pytest.mark.parametrize("state", [None, "", "short", "x" * 42 + "!", "a,b",
                                   secrets.token_urlsafe(32)],
                         ids=["absent", "empty", "short", "bad-chars", "two-values", "unknown"])
def test_malformed_or_unknown_state_is_invalid_state(browser, tenant_id, owner_db, meta_log,
                                                     state):
    flow = browser.start(tenant_id)
    url = _with_query(browser.consent(flow), state=state)

    outcome = result(browser.callback(url, bindings=(flow.binding,)))

    assert outcome == {"error": "invalid_state"}
    assert meta_log.calls() == []  # the code was never exchanged
    _assert_nothing_stored(owner_db, tenant_id)


def test_replay_of_a_used_state_is_refused(browser, tenant_id, owner_db, meta_log):
    flow = browser.start(tenant_id)
    url = browser.consent(flow)
    assert "success" in result(browser.callback(url, bindings=(flow.binding,)))
    [stored] = credential_rows(owner_db, tenant_id)

    replay = result(browser.callback(url, bindings=(flow.binding,)))
    # ...and with a fresh code from a second pass through the same dialog URL.
    fresh = result(browser.callback(browser.consent(flow), bindings=(flow.binding,)))

    assert replay == fresh == {"error": "invalid_state"}
    assert credential_rows(owner_db, tenant_id) == [stored]
    assert [call_kind(c) for c in meta_log.calls()] == ["code", "long_lived", "debug_token"]


def test_expired_state_still_in_the_table_is_refused(browser, tenant_id, owner_db, meta_log):
    # DynamoDB's TTL has not deleted it yet: the item is there, 1 s past its expiry.
    old = create_state(tenant_id, "user-1", now=time.time() - 301)
    assert state_item(old.state) is not None
    flow_url = browser.consent(_flow_for(tenant_id, old))

    outcome = result(browser.callback(flow_url, bindings=(old.binding,)))

    assert outcome == {"error": "invalid_state"}
    assert state_item(old.state) is None  # burnt, not left for a later try
    assert meta_log.calls() == []
    _assert_nothing_stored(owner_db, tenant_id)


def _flow_for(tenant_id, new_state):
    return Flow(tenant_id, new_state.state,
                dialog_url(new_state.state, new_state.code_challenge), new_state.binding)


def test_missing_cookie_is_refused_and_burns_the_state(browser, tenant_id, owner_db, meta_log):
    flow = browser.start(tenant_id)
    url = browser.consent(flow)

    without = result(browser.callback(url, bindings=()))
    # The phished-person case: whoever holds the cookie cannot replay the code afterwards.
    with_cookie_later = result(browser.callback(url, bindings=(flow.binding,)))

    assert without == with_cookie_later == {"error": "invalid_state"}
    assert meta_log.calls() == []
    _assert_nothing_stored(owner_db, tenant_id)


def test_cookie_from_another_flow_is_refused(browser, tenant_id, other_tenant_id, owner_db,
                                             meta_log):
    first = browser.start(tenant_id)
    second = browser.start(tenant_id)  # same browser, newer flow: its cookie replaced the first
    other_tenant = browser.start(other_tenant_id)

    own_tenant_other_flow = result(browser.callback(browser.consent(first),
                                                    bindings=(second.binding,)))
    other_tenants_flow = result(browser.callback(browser.consent(second),
                                                 bindings=(other_tenant.binding,)))

    assert own_tenant_other_flow == other_tenants_flow == {"error": "invalid_state"}
    assert meta_log.calls() == []
    _assert_nothing_stored(owner_db, tenant_id, other_tenant_id)


# -- tenancy ---------------------------------------------------------------------------------
def test_state_of_tenant_a_cannot_store_into_tenant_b(browser, api, tenant_id, other_tenant_id,
                                                      owner_db):
    flow = browser.start(tenant_id)
    url = _with_query(browser.consent(flow), tenant_id=other_tenant_id)
    # Everything a caller could use to name a tenant points at B; only the state counts.
    tenant_b = {**api.as_user(other_tenant_id, "admin"), "X-Tenant-ID": other_tenant_id}

    outcome = result(browser.callback(url, bindings=(flow.binding,), headers=tenant_b))

    assert outcome == {"success": "connected"}
    assert len(credential_rows(owner_db, tenant_id)) == 1
    _assert_nothing_stored(owner_db, other_tenant_id)
    with tenant_tx(other_tenant_id) as conn:  # and B's own RLS view is empty too
        assert credentials.load(conn) is None


# -- Meta failing ----------------------------------------------------------------------------
def _fail_code_exchange_with_5xx(meta, **_):
    meta.inject_fault("transient", "/oauth/access_token", method="POST", status=503)


def _time_out_code_exchange(meta, meta_timeout, **_):
    meta_timeout(0.3)
    meta.inject_fault("timeout", "/oauth/access_token", method="POST", seconds=1.5)


def _drop_connection(meta, **_):
    meta.inject_fault("drop", "/oauth/access_token", method="POST")


def _refuse_long_lived_exchange(meta, **_):
    meta.configure_oauth(refuse_exchange=True)


def _fail_debug_token(meta, **_):
    meta.inject_fault("error", "/debug_token", code=100, status=400)


def _time_out_debug_token(meta, meta_timeout, **_):
    meta_timeout(0.3)  # every attempt (debug_token is retried: it only reads)
    meta.inject_fault("timeout", "/debug_token", count=10, seconds=1.5)


def _drop_debug_token(meta, **_):
    meta.inject_fault("drop", "/debug_token", count=10)


def _use_the_code_first(meta, url, flow, **_):
    code = parse_qs(urlsplit(url).query)["code"][0]
    with GraphClient.for_token(None) as graph:
        graph.exchange_code(code, get_settings().meta_redirect_uri,
                            code_verifier=code_verifier(flow.state, flow.binding))


@pytest.mark.parametrize("break_meta", [
    _fail_code_exchange_with_5xx, _time_out_code_exchange, _drop_connection,
    _refuse_long_lived_exchange, _fail_debug_token, _time_out_debug_token, _drop_debug_token,
    _use_the_code_first,
], ids=lambda f: f.__name__.strip("_"))
def test_meta_errors_timeouts_and_5xx_are_meta_error(browser, tenant_id, owner_db, meta,
                                                     meta_timeout, break_meta):
    flow = browser.start(tenant_id)
    url = browser.consent(flow)
    break_meta(meta=meta, meta_timeout=meta_timeout, url=url, flow=flow)

    outcome = result(browser.callback(url, bindings=(flow.binding,)))

    assert outcome == {"error": "meta_error"}
    _assert_nothing_stored(owner_db, tenant_id)
    assert state_item(flow.state) is None  # still consumed
    assert result(browser.callback(url, bindings=(flow.binding,))) == {"error": "invalid_state"}


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"sandbox_token_app_id": OTHER_APP_ID}, "foreign_app"),
    ({"sandbox_token_expires_at": "1"}, "token_invalid"),
], ids=["token-of-another-app", "token-not-valid"])
def test_token_refused_by_debug_token_is_not_stored(browser, tenant_id, owner_db, meta_log,
                                                    app_logs, overrides, reason):
    response = browser.connect(browser.start(tenant_id), overrides=overrides)

    assert result(response) == {"error": "meta_error"}
    _assert_nothing_stored(owner_db, tenant_id)
    assert [call_kind(c) for c in meta_log.calls()] == ["code", "long_lived", "debug_token"]
    [event] = _log_events(app_logs, "oauth_connection")
    assert (event["tenant_id"], event["success"], event["error_code"], event["reason"]) == (
        tenant_id, False, "meta_error", reason)


def test_token_revoked_during_the_callback_is_not_stored(browser, stack, tenant_id, owner_db,
                                                        meta, meta_log, app_logs):
    """The person removes the app while the callback is on its way to `debug_token` (0.8 s of
    latency there; the long-lived token is revoked at 0.3 s, after it was issued)."""
    world = stack.sandbox.world
    flow = browser.start(tenant_id)
    url = browser.consent(flow)
    before = set(world.tokens)

    def revoke_the_new_long_lived_token() -> None:
        for value, token in list(world.tokens.items()):
            if value not in before and token.kind == "long":
                meta.revoke_token(value, subcode=460)

    meta.set_latency("/debug_token", 800)
    revoker = threading.Timer(0.3, revoke_the_new_long_lived_token)
    revoker.start()
    try:
        outcome = result(browser.callback(url, bindings=(flow.binding,)))
    finally:
        revoker.join()

    assert [world.tokens[v].revoked_subcode for v in set(world.tokens) - before
            if world.tokens[v].kind == "long"] == [460]
    assert outcome == {"error": "meta_error"}
    _assert_nothing_stored(owner_db, tenant_id)
    assert [call_kind(c) for c in meta_log.calls()] == ["code", "long_lived", "debug_token"]
    [event] = _log_events(app_logs, "oauth_connection")
    assert (event["success"], event["error_code"], event["reason"]) == (
        False, "meta_error", "token_invalid")
    assert result(browser.callback(url, bindings=(flow.binding,))) == {"error": "invalid_state"}


# -- concurrency -----------------------------------------------------------------------------
def test_two_concurrent_callbacks_with_one_state_store_at_most_one_token(
        browser, stack, tenant_id, owner_db, meta_log):
    flow = browser.start(tenant_id)
    url = browser.consent(flow)
    gate = threading.Barrier(2)
    answers: list[httpx.Response] = []

    def hit() -> None:
        with httpx.Client(timeout=30) as http:
            gate.wait()
            answers.append(http.get(url, headers={"Cookie": f"{BINDING_COOKIE}={flow.binding}"}))

    threads = [threading.Thread(target=hit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    outcomes = sorted(json.dumps(result(a)) for a in answers)
    assert outcomes == [json.dumps({"error": "invalid_state"}),
                        json.dumps({"success": "connected"})]
    assert len(credential_rows(owner_db, tenant_id)) == 1
    assert [call_kind(c) for c in meta_log.calls()].count("code") == 1


# -- secrets: never stored in clear, logged or answered --------------------------------------
def _text_columns(owner_db) -> list[tuple[str, str, str]]:
    return [(r["table_name"], r["column_name"], r["data_type"]) for r in owner_db.execute(
        """SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c
           JOIN information_schema.tables t USING (table_schema, table_name)
           WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
             AND (c.data_type IN ('text', 'character varying', 'character', 'bytea', 'json',
                                  'jsonb', 'ARRAY') OR c.udt_name IN ('citext'))""")]


def _rows_containing(owner_db, needle: str) -> list[str]:
    hits = []
    for table, column, data_type in _text_columns(owner_db):
        if data_type == "bytea":
            sql = f'SELECT count(*) AS n FROM "{table}" WHERE position(%s::bytea in "{column}") > 0'
            value: object = needle.encode()
        else:
            sql = f'SELECT count(*) AS n FROM "{table}" WHERE strpos("{column}"::text, %s) > 0'
            value = needle
        if owner_db.execute(sql, (value,)).fetchone()["n"]:
            hits.append(f"{table}.{column}")
    return hits


def _log_events(app_logs, message: str) -> list[dict]:
    events = []
    for line in app_logs.getvalue().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("message") == message:
                events.append(record)
    return events


def test_plaintext_token_code_and_state_appear_in_no_column_log_or_response(
        browser, tenant_id, owner_db, app_logs, capsys):
    flow = browser.start(tenant_id)
    url = browser.consent(flow)
    code = parse_qs(urlsplit(url).query)["code"][0]

    response = browser.callback(url, bindings=(flow.binding,))

    assert result(response) == {"success": "connected"}
    token = _stored_token(tenant_id)
    [row] = credential_rows(owner_db, tenant_id)
    ciphertext = bytes(row["ciphertext"])
    assert len(_text_columns(owner_db)) > 20  # the scan really covers the schema
    for secret in (token, code, flow.state, flow.binding):
        assert _rows_containing(owner_db, secret) == []
    assert _rows_containing(owner_db, "10001") == ["credentials.meta_user_id"]  # scan works

    captured = capsys.readouterr()
    logs = app_logs.getvalue() + captured.out + captured.err
    assert _log_events(app_logs, "oauth_connection")  # the capture sees our log lines
    answer = str(response.headers) + response.text
    for secret in (token, code, flow.state, flow.binding, ciphertext.hex(),
                   get_settings().app_secret()):
        assert secret not in logs
        assert secret not in answer


def test_connection_log_event_and_metric_by_outcome(browser, tenant_id, app_logs, capsys):
    assert "success" in result(browser.connect(browser.start(tenant_id)))
    flow = browser.start(tenant_id)
    assert "error" in result(browser.callback(browser.consent(flow), bindings=()))

    connected, refused = _log_events(app_logs, "oauth_connection")
    # Powertools leaves out keys whose value is None (no error_code on success).
    assert (connected["tenant_id"], connected["meta_user_id"], connected["success"],
            connected.get("error_code")) == (tenant_id, "10001", True, None)
    assert (refused["tenant_id"], refused["success"], refused["error_code"],
            refused["reason"]) == (tenant_id, False, "invalid_state", "cookie_missing")
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines()
           if line.startswith("{") and "OAuthConnections" in line]
    assert [m["outcome"] for m in emf] == ["connected", "invalid_state"]
    # The stage too: dev, staging and prod share the namespace (template.yaml's alarms read it).
    assert sorted(emf[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]) == [
        "outcome", "service", "stage"]


# -- whatever arrives, a redirect to the frontend --------------------------------------------
@pytest.mark.parametrize(("query", "expected"), [
    ("", "invalid_state"),
    ("code=abc", "invalid_state"),
    ("error=access_denied&error_reason=user_denied", "access_denied"),
    ("error=%3Cscript%3E&state=x", "meta_error"),
    ("state=" + "A" * 43 + "&state=" + "B" * 43 + "&code=x", "invalid_state"),
    ("state=" + "A" * 43 + "&code=" + "c" * 20000, "invalid_state"),
    ("state=%00%ff&code=%e2%82", "invalid_state"),
    ("redirect_uri=https://evil.example&next=https://evil.example", "invalid_state"),
])
def test_any_request_gets_a_redirect_to_the_frontend(browser, stack, query, expected):
    response = browser.callback(f"{stack.api_url}/crm/auth/meta/callback?{query}",
                                bindings=("whatever",))

    assert result(response) == {"error": expected}
    assert response.headers["cache-control"] == "no-store"
    assert "evil" not in response.headers["location"]


# -- sample events (the same files `sam local invoke -e` uses) -------------------------------
def _invoke(module: str, event_file: str) -> dict:
    import importlib

    event = json.loads((EVENTS / event_file).read_text())
    handler = importlib.import_module(module).lambda_handler
    return handler(event, LocalContext(function_name=module, timeout_seconds=29))


@pytest.mark.parametrize(("event_file", "expected"), [
    ("oauth_callback_access_denied.json", "access_denied"),
    ("oauth_callback_code.json", "invalid_state"),  # its sample state was never issued
    ("oauth_callback_no_cookie.json", "invalid_state"),
])
def test_sample_callback_events(stack, event_file, expected):
    answer = _invoke("functions.oauth_callback.app", event_file)

    assert answer["statusCode"] == 302
    location = answer["headers"]["Location"]
    assert location == f"{get_settings().frontend_url}/crm/marketing?error={expected}"
    assert any(c.startswith(f"{BINDING_COOKIE}=;") for c in answer["cookies"])


def test_sample_url_event(stack):
    answer = _invoke("functions.oauth_url.app", "oauth_url_admin.json")

    assert answer["statusCode"] == 200
    body = json.loads(answer["body"])
    assert state_item(body["state"])["tenant_id"]["S"] == "tenant-demo"

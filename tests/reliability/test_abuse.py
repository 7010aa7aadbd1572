"""Abuse: what attackers send to the routes anyone can reach, and junk on every route.

- Webhooks (POST /crm/webhooks/meta) with a missing, wrong, foreign-app or stale signature,
  replays, bodies over 1 MB and malformed JSON: a 4xx (or, for a replay, 200 with no further
  change), and the tenant's rows are unchanged.
- The OAuth callback with forged, replayed, cross-tenant or cookie-less states, a reused code and
  a token of another app: always a 302 to FRONTEND_URL with an error, and nothing stored.
- Oversized or odd query strings on every route: never a 5xx; errors in the contract's body.
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from sandbox.world import OTHER_APP_SECRET
from shared.platform.settings import get_settings
from tests.fixtures_oauth import Browser, credential_rows
from tests.fixtures_whatsapp import post_webhook, sign, status, status_payload
from tests.reliability.conftest import assert_error, bearer, operations, tenant_rows

HOOK = "/crm/webhooks/meta"


def _delivered(populated, kind: str = "delivered", timestamp: int = 1_760_000_100) -> dict:
    wamid = _log(populated)["wamid"]
    return status_payload(populated.setup.phone_number_id, [
        status(wamid, kind, timestamp=timestamp, log_id=populated.log_id,
               recipient=populated.lead_phone.removeprefix("+"))])


def _log(populated) -> dict:
    from tests.fixtures_whatsapp import fetch

    return fetch(populated.tenant_id, "SELECT * FROM automation_logs WHERE id = %s",
                 (populated.log_id,))[0]


# -- webhooks -----------------------------------------------------------------------------------
def _bad_signatures(body: bytes) -> dict[str, str | None]:
    good = sign(body)
    return {
        "missing": None,
        "empty": "",
        "garbage": "sha256=" + "0" * 64,
        "other_app_secret": sign(body, OTHER_APP_SECRET),
        "signature_of_another_body": sign(body + b" "),
        "sha1_scheme": "sha1=" + good.removeprefix("sha256=")[:40],
        "no_scheme": good.removeprefix("sha256="),
        "uppercase_truncated": good.upper()[:-2],
    }


@pytest.mark.parametrize("case", list(_bad_signatures(b"")))
def test_webhook_with_a_bad_or_missing_signature_is_401_and_changes_nothing(
        api, owner, populated, case):
    before = tenant_rows(owner, populated.tenant_id)
    body = json.dumps(_delivered(populated)).encode()
    response = post_webhook(api, body, signature=_bad_signatures(body)[case])
    assert_error(response, 401)
    assert tenant_rows(owner, populated.tenant_id) == before


@pytest.mark.parametrize(("body", "expected"), [
    (b"{not json", 400),
    (b"[1, 2, 3]", 400),
    (b'"a string"', 400),
    (b"\xff\xfe\x00garbage", 400),
    (b"", 400),
], ids=["malformed", "array", "string", "not-utf8", "empty"])
def test_signed_but_malformed_webhook_body_is_400_and_changes_nothing(api, owner, populated, body,
                                                                      expected):
    before = tenant_rows(owner, populated.tenant_id)
    response = post_webhook(api, body)
    assert 400 <= response.status_code < 500, response.text
    assert_error(response, response.status_code)
    assert tenant_rows(owner, populated.tenant_id) == before


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_webhook_body_over_1_mb_is_413_and_changes_nothing(api, owner, populated, signed):
    before = tenant_rows(owner, populated.tenant_id)
    payload = _delivered(populated)
    payload["padding"] = "x" * (1024 * 1024)
    body = json.dumps(payload).encode()
    response = post_webhook(api, body, signature="valid" if signed else None)
    assert_error(response, 413)
    assert tenant_rows(owner, populated.tenant_id) == before


def test_replayed_webhooks_change_nothing_more_and_never_downgrade(api, owner, populated):
    read = json.dumps(_delivered(populated, "read", 1_760_000_200)).encode()
    first = post_webhook(api, read)
    assert first.status_code == 200, first.text
    after_first = tenant_rows(owner, populated.tenant_id)
    assert _log(populated)["status"] == "READ"
    # The same signed delivery again (Meta retries for days), then an older, lower status.
    for body in (read, read, json.dumps(_delivered(populated, "delivered", 1_760_000_150)).encode(),
                 json.dumps(_delivered(populated, "sent", 1_760_000_100)).encode()):
        response = post_webhook(api, body)
        assert response.status_code == 200, response.text
    # Each replay may touch updated_at ("last webhook seen"); every other column is unchanged.
    assert _without_updated_at(tenant_rows(owner, populated.tenant_id)) == _without_updated_at(
        after_first)


def _without_updated_at(rows: dict) -> dict:
    return {table: [{k: v for k, v in row.items() if k != "updated_at"} for row in table_rows]
            for table, table_rows in rows.items()}


def test_webhook_naming_an_unknown_number_changes_no_tenant(api, owner, populated):
    """A signed update names a phone number: only the tenant owning that number can be reached.
    The right wamid and log id under a number nobody connected change nothing."""
    before = tenant_rows(owner, populated.tenant_id)
    wamid = _log(populated)["wamid"]
    unknown_number = status_payload("999" + populated.setup.phone_number_id,
                                    [status(wamid, "read", log_id=populated.log_id)])
    response = post_webhook(api, unknown_number)
    assert response.status_code == 200, response.text
    assert tenant_rows(owner, populated.tenant_id) == before


# -- OAuth callback -----------------------------------------------------------------------------
@pytest.fixture
def browser(api, stack):
    b = Browser(api, stack.sandbox.url)
    yield b
    b.close()


def _outcome(response) -> dict[str, str]:
    assert response.status_code == 302, (response.status_code, response.text)
    location = response.headers["location"]
    assert location.startswith(f"{get_settings().frontend_url}/crm/marketing?"), location
    return {k: v[-1] for k, v in parse_qs(urlsplit(location).query).items()}


def _with(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return parts._replace(query=urlencode(query)).geturl()


def test_forged_state_is_refused(browser, owner, tenant_id):
    flow = browser.start(tenant_id)
    url = _with(browser.consent(flow), state=uuid.uuid4().hex + uuid.uuid4().hex)
    assert _outcome(browser.callback(url, bindings=(flow.binding,))) == {"error": "invalid_state"}
    assert credential_rows(owner, tenant_id) == []


def test_replayed_state_is_refused_and_the_stored_token_is_untouched(browser, owner, tenant_id):
    flow = browser.start(tenant_id)
    url = browser.consent(flow)
    assert _outcome(browser.callback(url, bindings=(flow.binding,))) == {"success": "connected"}
    stored = credential_rows(owner, tenant_id)
    assert len(stored) == 1
    for _ in range(2):
        replay = browser.callback(url, bindings=(flow.binding,))
        assert _outcome(replay) == {"error": "invalid_state"}
    assert credential_rows(owner, tenant_id) == stored


def test_state_of_one_tenant_with_the_cookie_of_another_flow_is_refused(browser, owner,
                                                                        tenant_id,
                                                                        other_tenant_id):
    mine = browser.start(tenant_id)
    theirs = browser.start(other_tenant_id)
    url = browser.consent(mine)
    assert _outcome(browser.callback(url, bindings=(theirs.binding,))) == {
        "error": "invalid_state"}
    assert credential_rows(owner, tenant_id) == []
    assert credential_rows(owner, other_tenant_id) == []


def test_cookieless_callback_is_refused(browser, owner, tenant_id):
    flow = browser.start(tenant_id)
    url = browser.consent(flow)
    assert _outcome(browser.callback(url, bindings=())) == {"error": "invalid_state"}
    assert credential_rows(owner, tenant_id) == []


def test_a_code_used_once_is_refused_in_another_flow(browser, owner, tenant_id,
                                                      other_tenant_id):
    first = browser.start(tenant_id)
    first_url = browser.consent(first)
    assert _outcome(browser.callback(first_url, bindings=(first.binding,))) == {
        "success": "connected"}
    code = parse_qs(urlsplit(first_url).query)["code"][0]
    second = browser.start(other_tenant_id)
    stolen = _with(browser.consent(second), code=code)
    assert _outcome(browser.callback(stolen, bindings=(second.binding,))) == {
        "error": "meta_error"}
    assert credential_rows(owner, other_tenant_id) == []


def test_a_token_issued_to_another_app_is_refused(browser, owner, tenant_id):
    flow = browser.start(tenant_id)
    response = browser.connect(flow, overrides={"sandbox_token_app_id": "9876543210"})
    assert _outcome(response) == {"error": "meta_error"}
    assert credential_rows(owner, tenant_id) == []


# -- odd query strings on every route -----------------------------------------------------------
ODD_QUERIES = {
    "oversized_value": [("q", "x" * 8000)],
    "oversized_known_params": None,  # every declared parameter at 4 KB (built per route)
    "many_keys": [(f"k{i}", str(i)) for i in range(300)],
    "repeated_key": [("limit", str(i)) for i in range(50)] + [("status", "SENT")] * 50,
    "unicode": [("q", "ñandú 🦜 \u202e\u0000 ﷽"), ("status", "ÅPPROVED")],
    "control_chars": [("q", "a\r\nSet-Cookie: x=1"), ("from", "2026-01-01\x00")],
    "brackets": [("a[]", "1"), ("a[b]", "2"), ("__proto__", "x"), ("constructor", "y")],
    "sql_and_paths": [("cursor", "' OR 1=1 --"), ("rule_id", "../../etc/passwd"),
                      ("account_id", "act_1;DROP TABLE leads")],
    "empty_and_bare": [("", "x"), ("limit", ""), ("from", "")],
}


def _params(case: str, op: dict) -> list[tuple[str, str]]:
    if case == "oversized_known_params":
        return [(p["name"], "9" * 4096) for p in op.get("parameters", []) if p["in"] == "query"]
    return ODD_QUERIES[case]


def _assert_edge_headers(response) -> None:
    headers = response.headers
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "strict-transport-security" in headers
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    assert "access-control-allow-origin" not in headers  # no Origin sent, none granted


def test_cors_is_granted_to_the_frontend_only(api, populated):
    frontend = get_settings().frontend_url
    for origin, granted in (("https://evil.example", False), ("null", False), (frontend, True)):
        response = api.get("/crm/marketing/hsm/rules", tenant_id=populated.tenant_id,
                           headers={"Origin": origin})
        assert response.status_code == 200
        assert (response.headers.get("access-control-allow-origin") == frontend) is granted
        assert response.headers.get("access-control-allow-origin") != "*"


@pytest.mark.parametrize("case", list(ODD_QUERIES))
def test_odd_query_strings_on_every_route_never_5xx(api, openapi_doc, populated, case):
    checked = 0
    for method, path, op in operations(openapi_doc):
        url = path.replace("{rule_id}", populated.rule_id)
        headers = bearer(populated.tenant_id) if op.get("security") else {}
        query = urlencode(_params(case, op))
        response = api.http.request(method, f"{url}?{query}" if query else url, headers=headers,
                                    json={} if method in ("POST", "PATCH") else None)
        assert response.status_code < 500, (case, method, path, response.status_code,
                                            response.text[:300])
        if path == "/crm/auth/meta/callback":
            assert _outcome(response)["error"]
        elif response.status_code >= 400:
            body = response.json()
            assert set(body) in ({"error"}, {"message"}), (method, path, body)
        if "message" not in (response.json() if "json" in response.headers.get(
                "content-type", "") else {}):
            _assert_edge_headers(response)  # every answer of ours, errors included
        checked += 1
    assert checked == len(operations(openapi_doc))

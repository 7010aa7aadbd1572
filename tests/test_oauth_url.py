"""GET /crm/auth/meta/url through the local API, with a real signed JWT, against moto."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import boto3

from shared.connection.oauth_state import BINDING_COOKIE, sha256_hex
from shared.platform.settings import get_settings


def _state_item(state: str) -> dict | None:
    table = get_settings().oauth_state_table
    key = {"state_hash": {"S": sha256_hex(state)}}
    item = boto3.client("dynamodb").get_item(TableName=table, Key=key)
    return item.get("Item")


def test_admin_gets_dialog_url_and_state_is_stored(api, tenant_id):
    response = api.get("/crm/auth/meta/url", tenant_id=tenant_id, role="admin")

    assert response.status_code == 200
    body = response.json()
    url = urlparse(body["url"])
    query = parse_qs(url.query)
    settings = get_settings()
    assert url.path == f"/{settings.meta_graph_api_version}/dialog/oauth"
    assert "/vv" not in body["url"]
    assert query["client_id"] == [settings.meta_app_id]
    assert query["redirect_uri"] == [settings.meta_redirect_uri]
    assert query["state"] == [body["state"]]
    assert query["response_type"] == ["code"]
    assert query["auth_type"] == ["rerequest"]
    assert "whatsapp_business_messaging" in query["scope"][0].split(",")
    assert "read_insights" not in query["scope"][0].split(",")
    assert len(body["state"]) >= 43  # 256 bits, url-safe base64

    item = _state_item(body["state"])
    assert item["tenant_id"]["S"] == tenant_id
    assert int(item["expires_at"]["N"]) - int(item["created_at"]["N"]) == 300
    assert item["ttl"] == item["expires_at"]
    assert body["state"] not in str(item)  # only the hash is stored

    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{BINDING_COOKIE}=")
    assert "Path=/;" in cookie and "domain=" not in cookie.lower()  # what __Host- requires
    for attribute in ("HttpOnly", "Secure", "SameSite=Lax"):
        assert attribute.lower() in cookie.lower()
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-frame-options"] == "DENY"


def test_member_is_forbidden_and_nothing_is_stored(api, tenant_id):
    before = boto3.client("dynamodb").scan(TableName=get_settings().oauth_state_table)["Count"]
    response = api.get("/crm/auth/meta/url", tenant_id=tenant_id, role="member")
    after = boto3.client("dynamodb").scan(TableName=get_settings().oauth_state_table)["Count"]

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert after == before
    assert response.headers["x-content-type-options"] == "nosniff"


def test_without_token_the_authorizer_answers_401(api):
    assert api.get("/crm/auth/meta/url").status_code == 401
    bad = {"Authorization": "Bearer not-a-jwt"}
    assert api.get("/crm/auth/meta/url", headers=bad).status_code == 401


def test_token_without_tenant_claim_is_401_with_contract_body(api):
    headers = api.as_user(None, role="admin")
    response = api.get("/crm/auth/meta/url", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert "default-src 'self'" in response.headers["content-security-policy"]

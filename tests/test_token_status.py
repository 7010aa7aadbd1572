"""GET /crm/marketing/token-status over the local API: each status, from the database only."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from devstack.lambda_context import LocalContext
from functions.token_status.app import lambda_handler
from shared.connection import credentials
from shared.platform.db import tenant_tx
from shared.platform.settings import get_settings

pytest.register_assert_rewrite("tests.fixtures_tokens")

from tests.fixtures_tokens import DAY, load_event, row_of, run_schedule  # noqa: E402

pytest_plugins = ["tests.fixtures_tokens"]

PATH = "/crm/marketing/token-status"
WHATSAPP = ["whatsapp_business_management", "whatsapp_business_messaging"]


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _status(api, tenant_id: str, role: str = "member") -> dict:
    response = api.get(PATH, tenant_id=tenant_id, role=role)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-frame-options"] == "DENY"
    return response.json()


def test_not_connected(api, tenant_id):
    assert _status(api, tenant_id) == {
        "status": "not_connected", "expires_at": None, "data_access_expires_at": None,
        "scopes": [], "missing_scopes": [*get_settings().scopes, *get_settings().optional_scopes],
        "reason": None}


def test_active_for_members_and_admins(api, connections, tenant_id):
    conn = connections.make(tenant_id)

    body = _status(api, tenant_id, "member")

    assert body["status"] == "active"
    assert body["expires_at"] == _iso(conn.expires_at)
    assert body["data_access_expires_at"] == _iso(conn.data_access_expires_at)
    # Lead Ads' scopes are optional (CONTRACT "Lead Ads"): missing, yet the connection is active.
    assert body["scopes"] == get_settings().scopes
    assert body["missing_scopes"] == get_settings().optional_scopes
    assert _status(api, tenant_id, "admin") == body
    assert conn.token not in json.dumps(body)


def test_missing_scopes_are_listed(api, connections, tenant_id):
    granted = [s for s in get_settings().scopes if s not in WHATSAPP]
    connections.make(tenant_id, scopes=granted)

    body = _status(api, tenant_id)

    assert (body["status"], body["scopes"], body["missing_scopes"]) == (
        "active", granted, [*WHATSAPP, *get_settings().optional_scopes])


def test_a_never_expiring_token_is_active_with_no_expiry(api, connections, tenant_id):
    connections.make(tenant_id, expires_in=None, data_access_in=None)

    body = _status(api, tenant_id)

    assert (body["status"], body["expires_at"], body["data_access_expires_at"]) == (
        "active", None, None)


def test_expiring_after_meta_would_not_extend_the_token(api, connections, meta_control,
                                                       tenant_id):
    meta_control.configure_oauth(extend_on_exchange=False)
    conn = connections.make(tenant_id, expires_in=5 * DAY)
    run_schedule()

    body = _status(api, tenant_id)

    assert (body["status"], body["reason"]) == ("expiring", "token_not_extended")
    assert body["expires_at"] == _iso(conn.expires_at)


def test_needs_reconnect_after_meta_revoked_the_token(api, connections, meta_control,
                                                     tenant_id):
    conn = connections.make(tenant_id, expires_in=3 * DAY)
    meta_control.revoke_token(conn.token, subcode=460)
    run_schedule()

    body = _status(api, tenant_id)

    assert (body["status"], body["reason"]) == ("needs_reconnect", "meta_190_460")


def test_an_expiry_that_passed_is_needs_reconnect_even_before_the_next_run(
        api, connections, owner_conn, tenant_id):
    connections.make(tenant_id, expires_in=-120)
    assert row_of(owner_conn, tenant_id)["status"] == "active"  # no run has seen it yet

    body = _status(api, tenant_id)

    assert (body["status"], body["reason"]) == ("needs_reconnect", "token_expired")


def test_reads_the_database_only_never_meta(api, connections, meta_control, tenant_id):
    connections.make(tenant_id)
    before = len(meta_control.requests())

    for role in ("member", "admin"):
        _status(api, tenant_id, role)

    assert len(meta_control.requests()) == before


def test_tenant_b_never_sees_tenant_a(api, connections, tenant_id, other_tenant_id):
    connections.make(tenant_id)
    with tenant_tx(tenant_id) as conn:
        credentials.mark_needs_reconnect(conn, "meta_190_460")

    response = api.get(PATH, tenant_id=other_tenant_id, role="member",
                       headers={"X-Tenant-ID": tenant_id})

    assert response.status_code == 200
    assert response.json()["status"] == "not_connected"
    assert _status(api, tenant_id)["status"] == "needs_reconnect"


def test_a_sign_in_is_required(api):
    assert api.get(PATH).status_code == 401


def test_the_sample_event(connections, tenant_id):
    """events/token_status_member.json as `sam local invoke -e` would send it."""
    connections.make(tenant_id)
    event = load_event("token_status_member.json")
    event["requestContext"]["authorizer"]["jwt"]["claims"]["custom:tenant_id"] = tenant_id

    response = lambda_handler(event, LocalContext("token_status"))

    assert response["statusCode"] == 200
    assert json.loads(response["body"])["status"] == "active"
    assert response["headers"]["Cache-Control"] == "no-store"

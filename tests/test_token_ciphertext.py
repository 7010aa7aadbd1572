"""A stored token whose ciphertext does not open under its own row (copied from another tenant's
row, or altered) is a connection to redo: 409 meta_reconnect_required and the connection marked
needs_reconnect, never a 500 (the cipher binds each token to its tenant and credential)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.rows import dict_row

from devstack.lambda_context import LocalContext
from shared.connection import token_refresh

pytest_plugins = ["tests.fixtures_whatsapp"]


@pytest.fixture
def owner(stack):
    with psycopg.connect(stack.database.owner_dsn, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def swapped(stack_sandbox, tenant_id, other_tenant_id, owner):
    """Two connected tenants; A's row now holds B's ciphertext (a valid blob, wrong row)."""
    from tests.fixtures_whatsapp import connect_meta

    connect_meta(stack_sandbox, tenant_id, "10001")
    connect_meta(stack_sandbox, other_tenant_id, "10002")
    owner.execute("UPDATE credentials SET ciphertext = (SELECT ciphertext FROM credentials"
                  " WHERE tenant_id = %s) WHERE tenant_id = %s", (other_tenant_id, tenant_id))
    return tenant_id


def _status(owner, tenant_id: str) -> tuple[str, str]:
    row = owner.execute("SELECT status, status_reason FROM credentials WHERE tenant_id = %s",
                        (tenant_id,)).fetchone()
    return row["status"], row["status_reason"]


@pytest.mark.parametrize("method,path", [("GET", "/crm/marketing/whatsapp-accounts"),
                                         ("GET", "/crm/marketing/meta-accounts")])
def test_a_route_calling_meta_answers_409_reconnect_and_marks_the_connection(
        api, owner, swapped, method, path):
    response = api.request(method, path, tenant_id=swapped)
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "meta_reconnect_required"
    assert _status(owner, swapped) == ("needs_reconnect", "token_undecryptable")
    status = api.get("/crm/marketing/token-status", tenant_id=swapped, role="member").json()
    assert (status["status"], status["reason"]) == ("needs_reconnect", "token_undecryptable")


def test_refresh_now_marks_it_instead_of_failing_every_hour(api, owner, swapped):
    response = api.post("/crm/auth/meta/refresh-tokens", tenant_id=swapped)
    assert response.status_code == 200, response.text
    assert response.json()["needs_reconnect"] == 1 and response.json()["failed"] == 0
    assert _status(owner, swapped) == ("needs_reconnect", "token_undecryptable")


def test_the_scheduled_refresh_marks_it_too(owner, swapped):
    owner.execute("UPDATE credentials SET expires_at = now() + interval '2 days'"
                  " WHERE tenant_id = %s", (swapped,))
    token_refresh.run_scheduled(LocalContext(function_name="token_refresh", timeout_seconds=60))
    assert _status(owner, swapped) == ("needs_reconnect", "token_undecryptable")

"""Tenant isolation: two tenants with rows in every table, every route, every table.

- Every route, called as tenant B (even with `X-Tenant-ID: A` headers), answers nothing of A's:
  no id, phone, name or count of A's appears in any answer, A's rule id is a 404 exactly like a
  rule that never existed, and A's rows are byte-for-byte unchanged afterwards.
- Row-level security is proven in Postgres itself: as the application role, a deliberately
  unscoped query (no tenant set, and with tenant B set) returns zero rows of A on every table
  that has a tenant_id column, and writes aimed at A's rows change nothing or are refused.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tests.reliability.conftest import (
    TENANT_TABLES,
    assert_error,
    bearer,
    figure,
    operations,
    populate,
    tenant_rows,
)

RANDOM_ID = "3f1e9c56-0d6b-4c57-9a4e-2b9c0c6f1a11"


@pytest.fixture
def two_tenants(api, wa, _control, populated, other_tenant_id):
    return populated, populate(api, wa, _control, other_tenant_id)


def _call(api, method: str, path: str, tenant_id: str, a, **kwargs):
    """Route `path` as an admin of `tenant_id`, aimed at A's ids wherever the route takes one,
    with the spoofing headers an attacker would add."""
    spoof = {"X-Tenant-ID": a.tenant_id, "X-Tenant-Id": a.tenant_id, "tenant_id": a.tenant_id}
    headers = {**bearer(tenant_id), **spoof}
    url = path.replace("{rule_id}", a.rule_id)
    params = {"tenant_id": a.tenant_id}
    body = None
    if path == "/crm/marketing/hsm/logs":
        params["rule_id"] = a.rule_id
    elif path == "/crm/marketing/campaigns":
        params["account_id"] = a.account_id
    elif path == "/crm/marketing/connect":
        body = {"account_id": a.account_id}
    elif path == "/crm/marketing/pages/connect":
        body = {"page_id": a.page_id}
    elif path == "/crm/marketing/whatsapp/connect":
        body = {"waba_id": a.setup.waba_id, "phone_number_id": a.setup.phone_number_id}
    elif path.startswith("/crm/marketing/hsm/rules") and method in ("POST", "PATCH"):
        body = {"enabled": False} if method == "PATCH" else {
            "name": "x", "delay_hours": 1, "template_name": "lead_followup_es", "language": "es",
            "body_params": ["first_name"]}
    return api.http.request(method, url, params=params, json=body, headers=headers, **kwargs)


def test_every_route_as_tenant_b_leaks_nothing_of_tenant_a(api, owner, openapi_doc,
                                                           two_tenants):
    a, b = two_tenants
    before = tenant_rows(owner, a.tenant_id)
    assert all(before[t] for t in TENANT_TABLES), "tenant A must have a row in every table"
    own = {m for m in b.markers}
    checked = 0
    for method, path, op in operations(openapi_doc):
        if not op.get("security"):
            continue  # Meta's routes carry no tenant claim (see test_abuse.py)
        response = _call(api, method, path, b.tenant_id, a)
        assert response.status_code < 500, (method, path, response.text)
        for marker in a.markers:
            if marker not in own:
                assert marker not in response.text, (method, path, marker, response.text)
        checked += 1
    assert checked >= 15
    assert tenant_rows(owner, a.tenant_id) == before
    figure("isolation_routes", routes=checked, markers=len(a.markers))


def test_tenant_b_reads_only_its_own_rows(api, two_tenants):
    a, b = two_tenants
    spoof = {"X-Tenant-ID": a.tenant_id}
    rules = api.get("/crm/marketing/hsm/rules", tenant_id=b.tenant_id, role="member",
                    headers=spoof).json()["rules"]
    assert [r["id"] for r in rules] == [b.rule_id]
    logs = api.get("/crm/marketing/hsm/logs", tenant_id=b.tenant_id, role="member",
                   headers=spoof).json()["logs"]
    assert [entry["id"] for entry in logs] == [b.log_id]
    templates = api.get("/crm/marketing/hsm/templates", tenant_id=b.tenant_id, role="member",
                        headers=spoof).json()["templates"]
    assert templates and all(t["id"] in b.setup.templates.values() for t in templates)
    campaigns = api.get("/crm/marketing/campaigns", tenant_id=b.tenant_id, role="member",
                        headers=spoof).json()["campaigns"]
    assert {c["campaign_id"] for c in campaigns} == {b.campaign_id}


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
def test_another_tenants_rule_is_a_404_exactly_like_a_missing_one(api, owner, two_tenants,
                                                                  method):
    a, b = two_tenants
    before = tenant_rows(owner, a.tenant_id)
    body = {"enabled": False} if method == "PATCH" else None
    theirs = api.http.request(method, f"/crm/marketing/hsm/rules/{a.rule_id}", json=body,
                              headers=bearer(b.tenant_id))
    missing = api.http.request(method, f"/crm/marketing/hsm/rules/{RANDOM_ID}", json=body,
                               headers=bearer(b.tenant_id))
    assert_error(theirs, 404, "not_found")
    assert (theirs.status_code, theirs.json()) == (missing.status_code, missing.json())
    assert tenant_rows(owner, a.tenant_id) == before
    # ... while A itself can change it: the 404 above is about the tenant, not the id.
    mine = api.http.request(method, f"/crm/marketing/hsm/rules/{a.rule_id}", json=body,
                            headers=bearer(a.tenant_id))
    assert mine.status_code in (200, 204), mine.text


# -- row-level security, proven as the application role ---------------------------------------
def _tables_with_tenant_column(conn) -> list[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public'"
        " AND column_name = 'tenant_id' AND table_name IN (SELECT tablename FROM pg_tables"
        " WHERE schemaname = 'public') ORDER BY table_name").fetchall()
    return [r["table_name"] for r in rows]


def test_rls_is_enabled_and_forced_on_every_table_with_a_tenant_id(owner):
    tables = _tables_with_tenant_column(owner)
    assert set(TENANT_TABLES) <= set(tables)
    flags = {r["relname"]: (r["relrowsecurity"], r["relforcerowsecurity"]) for r in owner.execute(
        "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class"
        " WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'").fetchall()}
    assert {t: flags[t] for t in tables} == {t: (True, True) for t in tables}
    app_role = owner.execute("SELECT rolbypassrls, rolsuper FROM pg_roles"
                             " WHERE rolname = 'marketing_app'").fetchone()
    assert app_role == {"rolbypassrls": False, "rolsuper": False}


def _as_app(stack):
    return psycopg.connect(stack.database.app_dsn, autocommit=True, row_factory=dict_row)


def test_unscoped_queries_as_the_app_role_see_no_rows_of_another_tenant(stack, owner,
                                                                      two_tenants):
    a, b = two_tenants
    tables = _tables_with_tenant_column(owner)
    with _as_app(stack) as app:
        assert app.execute("SELECT current_user AS u").fetchone()["u"] == "marketing_app"
        for table in tables:
            # A's rows exist (the owner sees them) ...
            present = owner.execute(f"SELECT count(*) AS n FROM {table} WHERE tenant_id = %s",
                                    (a.tenant_id,)).fetchone()["n"]
            if table in TENANT_TABLES:
                assert present > 0, table
            # ... no tenant set: nothing at all is visible, A's rows least of all;
            assert app.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"] == 0, table
            # ... tenant B set: only B's rows, never A's, even when asked for by id.
            with app.transaction():
                app.execute("SELECT set_config('app.tenant_id', %s, true)", (b.tenant_id,))
                seen = app.execute(f"SELECT DISTINCT tenant_id FROM {table}").fetchall()
                assert {r["tenant_id"] for r in seen} <= {b.tenant_id}, table
                leaked = app.execute(f"SELECT count(*) AS n FROM {table} WHERE tenant_id = %s",
                                     (a.tenant_id,)).fetchone()["n"]
                assert leaked == 0, table
    figure("isolation_rls_tables", tables=len(tables))


def _identity_columns(owner, table: str) -> set[str]:
    rows = owner.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public'"
        " AND table_name = %s AND (is_identity = 'YES' OR is_generated = 'ALWAYS')",
        (table,)).fetchall()
    return {r["column_name"] for r in rows}


def _json_columns(owner, table: str) -> set[str]:
    rows = owner.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public'"
        " AND table_name = %s AND data_type IN ('json', 'jsonb')", (table,)).fetchall()
    return {r["column_name"] for r in rows}


def test_writes_aimed_at_another_tenant_are_refused_or_change_nothing(stack, owner,
                                                                     two_tenants):
    a, b = two_tenants
    before = tenant_rows(owner, a.tenant_id)
    with _as_app(stack) as app:
        for table in TENANT_TABLES:
            row = owner.execute(f"SELECT * FROM {table} WHERE tenant_id = %s LIMIT 1",
                                (a.tenant_id,)).fetchone()
            skip = _identity_columns(owner, table) | {"id"}
            values = {k: v for k, v in row.items() if k not in skip}
            names = ", ".join(values)
            marks = ", ".join(["%s"] * len(values))
            json_columns = _json_columns(owner, table)
            params = [Jsonb(v) if k in json_columns else v for k, v in values.items()]
            # INSERT a row carrying A's tenant id while B is the tenant: refused by RLS.
            with pytest.raises(psycopg.errors.InsufficientPrivilege,
                               match="row-level security"), app.transaction():
                app.execute("SELECT set_config('app.tenant_id', %s, true)", (b.tenant_id,))
                app.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", params)
            # ... and with no tenant at all.
            with pytest.raises(psycopg.errors.InsufficientPrivilege,
                               match="row-level security"):
                app.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", params)
            with app.transaction():
                app.execute("SELECT set_config('app.tenant_id', %s, true)", (b.tenant_id,))
                # UPDATE / DELETE aimed at A's rows find nothing to touch.
                updated = app.execute(f"UPDATE {table} SET tenant_id = tenant_id"
                                      " WHERE tenant_id = %s", (a.tenant_id,)).rowcount
                deleted = app.execute(f"DELETE FROM {table} WHERE tenant_id = %s",
                                      (a.tenant_id,)).rowcount
                assert (updated, deleted) == (0, 0), table
            # Moving one of B's own rows over to A is refused too (WITH CHECK).
            with pytest.raises(psycopg.errors.InsufficientPrivilege,
                               match="row-level security"), app.transaction():
                app.execute("SELECT set_config('app.tenant_id', %s, true)", (b.tenant_id,))
                app.execute(f"UPDATE {table} SET tenant_id = %s", (a.tenant_id,))
    assert tenant_rows(owner, a.tenant_id) == before


def test_the_tenant_setting_never_outlives_its_transaction(stack, two_tenants):
    """shared.platform.db sets app.tenant_id transaction-locally: a pooled connection reused for the
    next invocation starts with no tenant, so it sees nothing."""
    a, _ = two_tenants
    from shared.platform.db import get_connection, tenant_tx

    with tenant_tx(a.tenant_id) as conn:
        assert conn.execute("SELECT count(*) AS n FROM automation_rules").fetchone()["n"] == 1
    conn = get_connection()
    assert conn.execute("SELECT count(*) AS n FROM automation_rules").fetchone()["n"] == 0
    assert conn.execute("SELECT current_setting('app.tenant_id', true) AS t"
                        ).fetchone()["t"] in (None, "")


def test_random_ids_for_unknown_tenants_show_nothing(api):
    """A tenant that has never been seen gets empty lists, not someone else's rows."""
    ghost = f"t-{uuid.uuid4().hex[:12]}"
    assert api.get("/crm/marketing/hsm/rules", tenant_id=ghost).json()["rules"] == []
    assert api.get("/crm/marketing/hsm/logs", tenant_id=ghost).json()["logs"] == []
    assert api.get("/crm/marketing/token-status", tenant_id=ghost).json()["status"] == (
        "not_connected")


def test_a_webhook_for_tenant_a_cannot_reach_tenant_b_rows(api, owner, two_tenants):
    """Meta's update names A's phone number but carries B's wamid and log id (as a forged or
    confused delivery would): the update runs in A's transaction, so B's log is untouched."""
    from tests.fixtures_whatsapp import post_webhook, status, status_payload

    a, b = two_tenants
    before_a, before_b = tenant_rows(owner, a.tenant_id), tenant_rows(owner, b.tenant_id)
    b_wamid = before_b["automation_logs"][0]["wamid"]
    payload = status_payload(a.setup.phone_number_id, [
        status(b_wamid, "read", log_id=b.log_id),
        status(b_wamid, "failed", log_id=b.log_id,
               errors=[{"code": 131026, "title": "Message undeliverable"}])])
    response = post_webhook(api, payload)
    assert response.status_code == 200, response.text
    assert tenant_rows(owner, b.tenant_id) == before_b
    assert tenant_rows(owner, a.tenant_id) == before_a

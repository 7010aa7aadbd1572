"""Tenant isolation when row-level security does not apply: every statement names its tenant.

The functions here connect as a role with BYPASSRLS, so no policy filters anything and only the
statements' own tenant predicates keep tenants apart. The startup check (test_database_role.py)
refuses such a role; this test lets it through on purpose, to prove the second line of defence
on its own. Before the predicates: loading B's credential returned A's token, B's "refresh now"
leased every tenant's token, B's rule list and logs showed A's, B's template sync deleted A's
templates, a webhook for B's number updated A's message, and B's dispatch run messaged A's leads.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from shared.connection.session import load_usable_credential
from shared.platform import db
from shared.platform.errors import MetaNotConnected
from shared.platform.settings import get_settings
from tests.fixtures_dispatch import dispatch
from tests.fixtures_whatsapp import connect, insert_lead, post_webhook, status, status_payload
from tests.reliability.conftest import TENANT_TABLES, operations, populate, tenant_rows
from tests.reliability.test_isolation import _call

pytest_plugins = ["tests.fixtures_dispatch"]


@pytest.fixture
def tenants(api, wa, _control, populated, other_tenant_id):
    """A with rows in every table; B likewise, then one more due lead each (for a dispatch)."""
    b = populate(api, wa, _control, other_tenant_id)
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    leads = {t.tenant_id: insert_lead(t.tenant_id, created_at=two_days_ago,
                                      phone=f"+3466{uuid.uuid4().int % 10**7:07d}")
             for t in (populated, b)}
    return populated, b, leads


@pytest.fixture
def functions_bypass_rls(stack, owner, monkeypatch):
    """From here on, the functions (and this process's tenant_tx) connect as a role with the app
    role's grants plus BYPASSRLS."""
    role = f"t_bypass_{uuid.uuid4().hex[:10]}"
    owner.execute(f"CREATE ROLE {role} LOGIN BYPASSRLS")
    owner.execute(f"GRANT marketing_app TO {role}")
    owner.execute(f'GRANT CONNECT ON DATABASE "{stack.database.name}" TO {role}')
    dsn = make_conninfo(**{**conninfo_to_dict(stack.database.app_dsn), "user": role})
    db._safe_dsns.add(dsn)  # past the startup check, which refuses BYPASSRLS: on purpose here
    monkeypatch.setenv("DATABASE_URL", dsn)
    get_settings.cache_clear()
    db.reopen_everywhere()
    yield role
    monkeypatch.undo()
    get_settings.cache_clear()
    db.reopen_everywhere()
    db._safe_dsns.discard(dsn)
    # Worker threads (the dispatch pool, the refresh run's) keep their connections: end the
    # role's sessions, so each reconnects as the app role instead of serving later tests as a
    # role about to be dropped.
    owner.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                  (role,))
    owner.execute(f"DROP OWNED BY {role}")
    owner.execute(f"DROP ROLE {role}")


def test_every_route_as_tenant_b_without_rls_leaks_and_changes_nothing_of_a(
        api, owner, openapi_doc, tenants, functions_bypass_rls):
    a, b, _ = tenants
    before = tenant_rows(owner, a.tenant_id)
    assert all(before[t] for t in TENANT_TABLES)
    for method, path, op in operations(openapi_doc):
        if not op.get("security"):
            continue
        response = _call(api, method, path, b.tenant_id, a)
        assert response.status_code < 500, (method, path, response.text[:300])
        for marker in set(a.markers) - set(b.markers):
            assert marker not in response.text, (method, path, marker)
    assert tenant_rows(owner, a.tenant_id) == before


def test_tenant_b_without_rls_reads_only_its_own_rows(api, tenants, functions_bypass_rls):
    a, b, _ = tenants
    rules = api.get("/crm/marketing/hsm/rules", tenant_id=b.tenant_id).json()["rules"]
    assert [r["id"] for r in rules] == [b.rule_id]
    logs = api.get("/crm/marketing/hsm/logs", tenant_id=b.tenant_id).json()["logs"]
    assert [entry["id"] for entry in logs] == [b.log_id]
    templates = api.get("/crm/marketing/hsm/templates", tenant_id=b.tenant_id).json()
    assert {t["id"] for t in templates["templates"]} <= set(b.setup.templates.values())
    other = f"t-{uuid.uuid4().hex[:12]}"
    with pytest.raises(MetaNotConnected):
        load_usable_credential(other)  # a tenant without a token never gets A's (or B's)
    assert load_usable_credential(b.tenant_id).token() == b.setup.token


def test_template_sync_webhooks_and_dispatch_of_b_without_rls_leave_a_alone(
        api, owner, tenants, functions_bypass_rls):
    a, b, leads = tenants
    before = tenant_rows(owner, a.tenant_id)
    a_wamid = before["automation_logs"][0]["wamid"]
    a_template = before["meta_templates"][0]["template_id"]
    connect(b.setup)  # B re-syncs its templates: the replace deletes what B's WABA lacks
    response = post_webhook(api, status_payload(b.setup.phone_number_id, [
        status(a_wamid, "read", log_id=a.log_id),
        status(a_wamid, "failed", log_id=a.log_id, errors=[{"code": 131050}])]))
    assert response.status_code == 200, response.text
    response = post_webhook(api, {"object": "whatsapp_business_account", "entry": [{
        "id": b.setup.waba_id, "time": 1_900_000_000, "changes": [{
            "field": "message_template_status_update",
            "value": {"event": "DISABLED", "message_template_id": a_template,
                      "message_template_name": "only_a_has_this_name",
                      "message_template_language": "es"}}]}]})
    assert response.status_code == 200, response.text
    summary = dispatch(b.tenant_id)
    assert summary.sent == 1  # B's own new lead
    assert tenant_rows(owner, a.tenant_id) == before  # A's new lead included: no log, no change
    logs = owner.execute("SELECT l.tenant_id, l.lead_id, ld.tenant_id AS lead_tenant,"
                         " r.tenant_id AS rule_tenant FROM automation_logs l"
                         " JOIN leads ld ON ld.id = l.lead_id"
                         " JOIN automation_rules r ON r.id = l.rule_id"
                         " WHERE l.tenant_id = %s", (b.tenant_id,)).fetchall()
    assert {str(r["lead_id"]) for r in logs} == {b.lead_id, leads[b.tenant_id]}
    assert {(r["lead_tenant"], r["rule_tenant"]) for r in logs} == {(b.tenant_id, b.tenant_id)}

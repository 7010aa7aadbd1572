"""Migration 0005: reversible, and its tenant lookups work for the app role without exposing
any row (RLS stays forced)."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from shared.platform.db import system_tx
from shared.platform.migrator import applied, migrate, rollback
from shared.whatsapp.senders import tenant_for_phone, tenants_for_waba

pytest.register_assert_rewrite("tests.fixtures_whatsapp")

from tests.fixtures_whatsapp import fetch, insert_rule  # noqa: E402

pytest_plugins = ["tests.fixtures_whatsapp"]


@pytest.fixture
def scratch_dsn(stack):
    params = conninfo_to_dict(stack.database.owner_dsn)
    name = f"wa_migrate_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(stack.database.owner_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params["dbname"] = name
    yield make_conninfo(**params)
    with psycopg.connect(stack.database.owner_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _columns(dsn: str, table: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT column_name FROM information_schema.columns "
                            "WHERE table_name = %s", (table,)).fetchall()
    return {r[0] for r in rows}


def test_down_then_up_restores_the_schema_and_keeps_deleted_rules(scratch_dsn):
    migrate(scratch_dsn)
    with psycopg.connect(scratch_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO automation_rules (tenant_id, name, trigger_type, delay_hours, "
                     "template_name, language, deleted_at) VALUES "
                     "('t', 'Uno', 'lead_followup', 1, 'x', 'es', now()), "
                     "('t', 'Uno', 'lead_followup', 1, 'x', 'es', NULL)")
    while "0005_whatsapp" in _applied(scratch_dsn):
        assert rollback(scratch_dsn) is not None

    assert "deleted_at" not in _columns(scratch_dsn, "automation_rules")
    assert "whatsapp_opt_out_source" not in _columns(scratch_dsn, "leads")
    with psycopg.connect(scratch_dsn) as conn:
        names = sorted(r[0] for r in conn.execute("SELECT name FROM automation_rules"))
        lookups = conn.execute("SELECT count(*) FROM pg_proc "
                               "WHERE proname LIKE 'whatsapp_tenant%'").fetchone()[0]
    assert names[0] == "Uno" and names[1].startswith("Uno (deleted ")  # renamed, not lost
    assert lookups == 0

    assert "0005_whatsapp" in migrate(scratch_dsn)
    assert {"deleted_at"} <= _columns(scratch_dsn, "automation_rules")


def _applied(dsn: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return applied(conn)


def test_lookups_find_the_tenant_while_rls_hides_the_rows(whatsapp_setup, other_tenant_id):
    with system_tx() as conn:
        visible = conn.execute("SELECT count(*) AS n FROM whatsapp_senders").fetchone()["n"]
        assert tenant_for_phone(conn, whatsapp_setup.phone_number_id) == whatsapp_setup.tenant_id
        assert tenants_for_waba(conn, whatsapp_setup.waba_id) == [whatsapp_setup.tenant_id]
        assert tenant_for_phone(conn, "000") is None
    assert visible == 0
    assert fetch(other_tenant_id, "SELECT * FROM whatsapp_senders") == []


def test_live_rule_names_are_unique_per_tenant_only(whatsapp_tenant, other_tenant_id):
    insert_rule(whatsapp_tenant, name="Seguimiento")
    insert_rule(other_tenant_id, name="Seguimiento")
    with pytest.raises(psycopg.errors.UniqueViolation):
        insert_rule(whatsapp_tenant, name="SEGUIMIENTO")

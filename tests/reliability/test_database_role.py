"""The functions refuse to serve as a database role that row-level security does not bind.

`shared.platform.db` checks the role of its first connection in each container: a superuser, a
role with BYPASSRLS, one that owns a row-level-security table (or has its owner's privileges),
or one that a role-scoped lookup policy applies to (migrations/0010 gives those to the NOLOGIN
`marketing_lookup`) gets `UnsafeDatabaseRole`, on every attempt, and an API call answers 500.
The application role passes.
"""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from shared.platform import db
from shared.platform.observability import logger as app_logger
from shared.platform.settings import get_settings
from tests.reliability.conftest import assert_error


def _dsn_for(stack, role: str) -> str:
    params = conninfo_to_dict(stack.database.app_dsn)
    return make_conninfo(**{**params, "user": role})


@pytest.fixture
def make_role(stack, owner) -> Iterator:
    """Creates login roles (as the local superuser) that can use the schema like the app role;
    drops them and whatever they own afterwards."""
    made: list[str] = []

    def make(*attributes: str) -> str:
        role = f"t_role_{uuid.uuid4().hex[:10]}"
        owner.execute(f"CREATE ROLE {role} LOGIN {' '.join(attributes)}")
        owner.execute(f"GRANT marketing_app TO {role}")
        owner.execute(f'GRANT CONNECT ON DATABASE "{stack.database.name}" TO {role}')
        made.append(role)
        return role

    yield make
    for role in made:
        owner.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                      " WHERE usename = %s", (role,))
        owner.execute(f"DROP OWNED BY {role}")
        owner.execute(f"DROP ROLE {role}")


@pytest.fixture
def functions_connect_as(monkeypatch):
    """Points DATABASE_URL (the functions' DSN, in this process) at another role."""
    def connect_as(dsn: str) -> None:
        monkeypatch.setenv("DATABASE_URL", dsn)
        get_settings.cache_clear()
        db.reopen_everywhere()

    yield connect_as
    monkeypatch.undo()
    get_settings.cache_clear()
    db.reopen_everywhere()


def _refused(problem: str) -> None:
    with pytest.raises(db.UnsafeDatabaseRole, match=problem) as refused:
        db.get_connection()
    assert "Refusing to serve" in str(refused.value)
    # ... and again: a refused role is never remembered as checked.
    with pytest.raises(db.UnsafeDatabaseRole):
        db.get_connection()


def test_the_application_role_serves(stack, functions_connect_as):
    functions_connect_as(stack.database.app_dsn)
    conn = db.get_connection()
    assert conn.execute("SELECT current_user AS u").fetchone()["u"] == "marketing_app"


def test_a_superuser_is_refused(stack, functions_connect_as):
    functions_connect_as(stack.database.owner_dsn)  # the local stack's owner is a superuser
    _refused("is a superuser")


def test_a_role_with_bypassrls_is_refused(stack, make_role, functions_connect_as):
    functions_connect_as(_dsn_for(stack, make_role("BYPASSRLS")))
    _refused("has BYPASSRLS")


def test_the_owner_of_a_table_with_row_level_security_is_refused(stack, owner, make_role,
                                                                  functions_connect_as):
    role = make_role()
    table = f"t_owned_{uuid.uuid4().hex[:8]}"
    owner.execute(f"CREATE TABLE {table} (tenant_id text)")
    owner.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    owner.execute(f"ALTER TABLE {table} OWNER TO {role}")
    functions_connect_as(_dsn_for(stack, role))
    _refused(f"owns \\(or has the privileges of the owner of\\) {table}")
    # A member of the owning role has its privileges: refused the same way.
    member = make_role()
    owner.execute(f"GRANT {role} TO {member}")
    functions_connect_as(_dsn_for(stack, member))
    _refused(table)


def test_a_member_of_the_lookup_role_is_refused(stack, owner, make_role, functions_connect_as):
    """The lookup policies (USING (true)) apply to marketing_lookup and its members: a role
    granted it would see every tenant's credentials, senders, rules and logs."""
    role = make_role()
    owner.execute(f"GRANT marketing_lookup TO {role}")
    functions_connect_as(_dsn_for(stack, role))
    _refused("role-scoped policies .*credentials.token_refresh_lookup")


def test_the_lookup_policies_belong_to_a_role_no_one_can_log_in_as(owner):
    policies = owner.execute(
        "SELECT c.relname, pol.polname, array(SELECT rolname FROM pg_roles"
        "  WHERE oid = ANY (pol.polroles)) AS roles"
        " FROM pg_policy pol JOIN pg_class c ON c.oid = pol.polrelid"
        " WHERE NOT (0::oid = ANY (pol.polroles)) ORDER BY 1, 2").fetchall()
    assert {p["relname"] for p in policies} >= {"credentials", "whatsapp_senders",
                                                "automation_rules", "automation_logs",
                                                "tenant_meta_accounts"}
    assert {tuple(p["roles"]) for p in policies} == {("marketing_lookup",)}
    lookup = owner.execute("SELECT rolcanlogin, rolbypassrls FROM pg_roles"
                           " WHERE rolname = 'marketing_lookup'").fetchone()
    assert lookup == {"rolcanlogin": False, "rolbypassrls": False}
    definers = owner.execute(
        "SELECT p.proname, pg_get_userbyid(p.proowner) AS owner FROM pg_proc p"
        " WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef").fetchall()
    assert definers and {d["owner"] for d in definers} == {"marketing_lookup"}
    app_member = owner.execute("SELECT pg_has_role('marketing_app', 'marketing_lookup',"
                               " 'MEMBER') AS m").fetchone()["m"]
    assert app_member is False


def test_an_api_function_on_an_unsafe_role_answers_500_and_says_why(api, stack, make_role,
                                                                   functions_connect_as,
                                                                   tenant_id):
    functions_connect_as(_dsn_for(stack, make_role("BYPASSRLS")))
    logged = io.StringIO()
    handler = logging.StreamHandler(logged)
    handler.setFormatter(app_logger.registered_formatter)
    app_logger.addHandler(handler)
    try:
        response = api.get("/crm/marketing/token-status", tenant_id=tenant_id, role="member")
    finally:
        app_logger.removeHandler(handler)
    assert_error(response, 500, "internal_error")
    assert "unsafe_database_role" in logged.getvalue()
    assert "has BYPASSRLS" in logged.getvalue()


def test_the_check_reads_the_catalog_not_a_cache_of_another_dsn(stack, make_role):
    """check_role itself, on a connection opened by hand: it asks Postgres every time."""
    role = make_role("BYPASSRLS")
    with (psycopg.connect(_dsn_for(stack, role), autocommit=True, prepare_threshold=None,
                          row_factory=psycopg.rows.dict_row) as conn,
          pytest.raises(db.UnsafeDatabaseRole, match="has BYPASSRLS")):
        db.check_role(conn)
    with psycopg.connect(stack.database.app_dsn, autocommit=True, prepare_threshold=None,
                         row_factory=psycopg.rows.dict_row) as conn:
        db.check_role(conn)

"""The deploy-time migration custom resource, answering CloudFormation over real HTTP."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from werkzeug.wrappers import Request, Response

from devstack.lambda_context import LocalContext
from devstack.local_api import ServerThread
from devstack.stack import reset_caches
from devstack.template import ROOT
from shared.platform.migrator import available


@pytest.fixture
def cloudformation():
    """Stands in for the pre-signed S3 URL CloudFormation waits on."""
    received: list[dict] = []

    def app(environ, start_response):
        request = Request(environ)
        received.append(json.loads(request.get_data()))
        return Response("")(environ, start_response)

    server = ServerThread(app)
    yield server.url, received
    server.stop()


@pytest.fixture
def empty_database(stack, monkeypatch):
    params = conninfo_to_dict(stack.database.owner_dsn)
    name = f"migrate_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(stack.database.owner_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params["dbname"] = name
    dsn = make_conninfo(**params)
    monkeypatch.setenv("MIGRATIONS_DATABASE_URL", dsn)
    reset_caches()
    yield dsn
    reset_caches()
    with psycopg.connect(stack.database.owner_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _event(url: str, request_type: str) -> dict:
    return {"RequestType": request_type, "ResponseURL": f"{url}/cfn-response",
            "StackId": "arn:aws:cloudformation:us-east-1:0:stack/s/1", "RequestId": "r-1",
            "LogicalResourceId": "SchemaMigrations", "ResourceType": "Custom::SchemaMigrations",
            "ResourceProperties": {"MigratorVersion": "arn:aws:lambda:us-east-1:0:function:m:7"}}


def test_create_applies_every_migration_then_update_applies_none(cloudformation, empty_database):
    from functions.db_migrate.app import lambda_handler

    url, received = cloudformation
    lambda_handler(_event(url, "Create"), LocalContext(function_name="db_migrate"))
    lambda_handler(_event(url, "Update"), LocalContext(function_name="db_migrate"))

    assert [r["Status"] for r in received] == ["SUCCESS", "SUCCESS"]
    assert received[0]["Data"]["Applied"] == ",".join(available())
    assert received[1]["Data"]["Applied"] == "none"
    with psycopg.connect(empty_database) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT relname FROM pg_class WHERE relrowsecurity AND relforcerowsecurity")}
    assert {"credentials", "leads", "automation_logs"} <= tables


def test_failure_is_reported_to_cloudformation_without_details(cloudformation, monkeypatch):
    from functions.db_migrate.app import lambda_handler

    url, received = cloudformation
    unreachable = "host=127.0.0.1 port=1 dbname=x user=x password=hunter2"
    monkeypatch.setenv("MIGRATIONS_DATABASE_URL", unreachable)
    reset_caches()
    lambda_handler(_event(url, "Update"), LocalContext(function_name="db_migrate"))
    reset_caches()

    assert received[0]["Status"] == "FAILED"
    assert "hunter2" not in json.dumps(received)


def test_delete_leaves_the_schema(cloudformation, stack):
    from functions.db_migrate.app import lambda_handler

    url, received = cloudformation
    lambda_handler(_event(url, "Delete"), LocalContext(function_name="db_migrate"))
    assert received[0]["Status"] == "SUCCESS"
    with psycopg.connect(stack.database.owner_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] >= 1


def test_two_migrators_at_once_apply_each_migration_exactly_once(empty_database):
    """Two deployments (or a deployment and a developer) migrating together: the advisory lock
    makes the second wait, then find nothing left to do."""
    import threading

    from shared.platform.migrator import applied, migrate

    start = threading.Barrier(2, timeout=30)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            start.wait()
            results.append(migrate(empty_database))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert sorted(len(r) for r in results) == [0, len(available())]  # one did all, one nothing
    with psycopg.connect(empty_database) as conn:
        assert applied(conn) == available()


def test_every_migration_rolls_back_and_applies_again(empty_database):
    """Each down file undoes its up file: all the way to an empty schema, and back."""
    from shared.platform.migrator import applied, migrate, rollback

    migrate(empty_database)
    undone = []
    while (name := rollback(empty_database)) is not None:
        undone.append(name)
    assert undone == list(reversed(available()))
    with psycopg.connect(empty_database) as conn:
        assert applied(conn) == []
        leftovers = conn.execute(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm')"
            " AND relname NOT LIKE 'schema_migrations%'").fetchall()
    assert leftovers == []
    assert migrate(empty_database) == available()


def _write(directory, name: str, sql: str) -> None:
    (directory / f"{name}.up.sql").write_text(sql)
    (directory / f"{name}.down.sql").write_text("SELECT 1;")


def _tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind = 'r'")}


def test_a_failed_migration_leaves_the_schema_as_it_was(empty_database, tmp_path):
    """The real migrations and one more that fails at its end: none of them stays applied,
    not even the ones before it (they run in one transaction)."""
    import shutil

    from shared.platform.migrator import migrate

    for path in (ROOT / "migrations").glob("*.sql"):
        shutil.copy(path, tmp_path / path.name)
    _write(tmp_path, "9999_broken", "CREATE TABLE half_done (id int); SELECT 1 / 0;")
    with pytest.raises(psycopg.errors.DivisionByZero):
        migrate(empty_database, tmp_path)
    assert _tables(empty_database) == set()  # not even schema_migrations
    (tmp_path / "9999_broken.up.sql").unlink()
    assert migrate(empty_database, tmp_path) == available()


def test_a_migration_waits_for_its_locks_only_so_long_and_then_applies_nothing(
        empty_database, tmp_path):
    """A CRM transaction holds the table: each attempt gives up at lock_timeout (so the ALTER
    never queues every other query behind it for long), and at the deadline nothing applied."""
    import time

    from shared.platform.migrator import MigrationLockTimeout, migrate

    _write(tmp_path, "0001_table", "CREATE TABLE busy (id int);")
    migrate(empty_database, tmp_path)
    # The index only needs a SHARE lock and gets it; the ALTER after it waits, in vain.
    _write(tmp_path, "0002_index", "CREATE INDEX busy_id ON busy (id);")
    _write(tmp_path, "0003_column", "ALTER TABLE busy ADD COLUMN note text;")
    with psycopg.connect(empty_database) as crm:
        crm.execute("LOCK TABLE busy IN ACCESS SHARE MODE")  # a long read of the CRM
        with pytest.raises(MigrationLockTimeout):
            migrate(empty_database, tmp_path, lock_timeout_ms=50,
                    deadline=time.monotonic() + 1.5)
        crm.rollback()
    with psycopg.connect(empty_database) as conn:
        columns = {r[0] for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'busy'::regclass AND attnum > 0")}
        indexes = conn.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'busy'"
                               ).fetchone()[0]
    assert columns == {"id"} and indexes == 0


def test_a_migration_retries_until_the_lock_is_free(empty_database, tmp_path):
    import threading
    import time

    from shared.platform.migrator import migrate

    _write(tmp_path, "0001_table", "CREATE TABLE busy (id int);")
    migrate(empty_database, tmp_path)
    _write(tmp_path, "0002_column", "ALTER TABLE busy ADD COLUMN note text;")
    crm = psycopg.connect(empty_database)
    crm.execute("LOCK TABLE busy IN ACCESS SHARE MODE")
    attempts_started = threading.Event()
    released = threading.Timer(1.0, lambda: (attempts_started.set(), crm.rollback()))
    released.start()
    try:
        assert migrate(empty_database, tmp_path, lock_timeout_ms=50,
                       deadline=time.monotonic() + 60) == ["0002_column"]
    finally:
        released.join()
        crm.close()
    assert attempts_started.is_set()  # it was still waiting when the lock went away


def test_the_custom_resource_answers_failed_before_its_own_timeout(cloudformation,
                                                                   empty_database, tmp_path,
                                                                   monkeypatch):
    """Locks that never come free: the handler's deadline (its remaining time less a reserve)
    ends the retries and CloudFormation hears FAILED, with the schema untouched."""
    from functions.db_migrate import app as db_migrate
    from shared.platform import migrator

    url, received = cloudformation
    _write(tmp_path, "0001_table", "CREATE TABLE busy (id int);")
    migrator.migrate(empty_database, tmp_path)
    _write(tmp_path, "0002_column", "ALTER TABLE busy ADD COLUMN note text;")
    monkeypatch.setattr(migrator, "MIGRATIONS_DIR", tmp_path)
    monkeypatch.setattr(db_migrate, "migrate", lambda dsn, deadline: migrator.migrate(
        dsn, tmp_path, deadline=deadline, lock_timeout_ms=50))
    with psycopg.connect(empty_database) as crm:
        crm.execute("LOCK TABLE busy IN ACCESS SHARE MODE")
        context = LocalContext(function_name="db_migrate",
                               timeout_seconds=db_migrate.RESERVE_SECONDS + 2)
        db_migrate.lambda_handler(_event(url, "Update"), context)
        assert context.get_remaining_time_in_millis() > 0  # answered in time
        crm.rollback()
    assert received[0]["Status"] == "FAILED"
    assert "MigrationLockTimeout" in received[0]["Reason"]

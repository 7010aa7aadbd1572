"""shared.platform.db behind a transaction pooler (RDS Proxy; PgBouncer in
`DB_POOLER=pgbouncer make test`): nothing prepared on the server, the timeouts set in every
transaction, no liveness probe, and a dead connection replaced only where nothing can run twice.
"""

from __future__ import annotations

import os
import socket

import psycopg
import pytest

from shared.platform import db
from shared.platform.settings import get_settings


def _kill_socket(conn: psycopg.Connection) -> None:
    """What a proxy's idle timeout or a failover does to a warm container's connection: the
    socket is gone, and the client learns it only when it next talks."""
    dup = socket.socket(fileno=os.dup(conn.fileno()))
    dup.shutdown(socket.SHUT_RDWR)
    dup.close()


@pytest.fixture
def fresh_connection(stack):
    db.reset_connection()
    yield
    db.reset_connection()


def test_statements_are_never_prepared_on_the_server(fresh_connection, tenant_id):
    with db.tenant_tx(tenant_id) as conn:
        assert conn.prepare_threshold is None
        for _ in range(10):  # psycopg would prepare from the 5th run of the same query
            conn.execute("SELECT count(*) FROM automation_rules WHERE tenant_id = %s",
                         (tenant_id,))
        prepared = conn.execute("SELECT count(*) AS n FROM pg_prepared_statements").fetchone()
    assert prepared["n"] == 0


def test_every_transaction_carries_the_statement_and_lock_timeouts(fresh_connection, tenant_id):
    s = get_settings()
    for tx in (db.tenant_tx(tenant_id), db.system_tx()):
        with tx as conn:
            row = conn.execute("SELECT current_setting('statement_timeout') AS st,"
                               " current_setting('lock_timeout') AS lt").fetchone()
        assert row["st"] == f"{s.database_statement_timeout_ms // 1000}s"
        assert row["lt"] == f"{s.database_lock_timeout_ms // 1000}s"
    # Transaction-local: nothing stays on the (pooled) server session afterwards.
    conn = db.get_connection()
    assert conn.execute("SELECT current_setting('lock_timeout') AS lt").fetchone()["lt"] == "0"


def test_a_lock_wait_gives_up_at_the_lock_timeout(stack, fresh_connection, tenant_id,
                                                 monkeypatch):
    monkeypatch.setenv("DATABASE_LOCK_TIMEOUT_MS", "200")
    get_settings.cache_clear()
    try:
        with psycopg.connect(stack.database.owner_dsn) as holder:
            holder.execute("LOCK TABLE automation_rules IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(psycopg.errors.LockNotAvailable), db.tenant_tx(tenant_id) as conn:
                conn.execute("SELECT 1 FROM automation_rules LIMIT 1")
            holder.rollback()
    finally:
        monkeypatch.delenv("DATABASE_LOCK_TIMEOUT_MS")
        get_settings.cache_clear()


def test_a_warm_connection_is_not_probed_before_use(fresh_connection):
    conn = db.get_connection()
    _kill_socket(conn)
    # No SELECT 1 round trip: the same (dead) connection comes back, untouched.
    assert db.get_connection() is conn
    assert not conn.broken


def test_a_connection_found_dead_as_the_transaction_starts_is_replaced_once(
        fresh_connection, tenant_id):
    dead = db.get_connection()
    _kill_socket(dead)
    runs = 0
    with db.tenant_tx(tenant_id) as conn:
        runs += 1
        assert conn.execute("SELECT current_setting('app.tenant_id') AS t").fetchone()["t"] \
            == tenant_id
    assert runs == 1
    assert conn is not dead and dead.closed
    assert db.get_connection() is conn  # the replacement is the thread's connection now


def test_a_connection_lost_after_the_work_started_is_not_retried(fresh_connection, tenant_id):
    """Once the caller's statements ran, the outcome (and a COMMIT) is unknown: the error goes
    to the caller, who decides; the work never runs a second time behind its back."""
    runs = 0
    with pytest.raises(psycopg.OperationalError), db.tenant_tx(tenant_id) as conn:
        runs += 1
        conn.execute("SELECT 1")
        _kill_socket(conn)
        conn.execute("SELECT 2")
    assert runs == 1
    with db.tenant_tx(tenant_id) as conn:  # the next transaction gets a working connection
        assert conn.execute("SELECT 3 AS n").fetchone()["n"] == 3


def test_a_connection_the_caller_passed_in_is_never_swapped(stack, fresh_connection, tenant_id):
    own = psycopg.connect(stack.env["DATABASE_URL"], autocommit=True, prepare_threshold=None)
    _kill_socket(own)
    with pytest.raises(psycopg.OperationalError), db.tenant_tx(tenant_id, own):
        pass
    own.close()


def test_a_dead_connection_inside_an_open_transaction_is_not_swapped(fresh_connection,
                                                                    tenant_id):
    runs = 0
    with pytest.raises(psycopg.OperationalError), db.tenant_tx(tenant_id) as outer:
        _kill_socket(outer)
        with db.tenant_tx(tenant_id):  # a savepoint of the outer transaction
            runs += 1
    assert runs == 0


def test_a_system_transaction_inside_a_tenant_s_keeps_that_tenant(fresh_connection, tenant_id):
    with db.tenant_tx(tenant_id) as conn:
        with db.system_tx():  # a savepoint that sets only the timeouts
            pass
        assert conn.execute("SELECT current_setting('app.tenant_id') AS t").fetchone()["t"] \
            == tenant_id

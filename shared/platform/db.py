"""Postgres access: one connection per warm container, and tenant-scoped transactions.

Row-level security on every tenant table reads the tenant from the transaction-local setting
`app.tenant_id`; `tenant_tx` sets it with `set_config(..., true)` so it can never outlive the
transaction and leak into the next invocation that reuses the connection.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import psycopg
from psycopg.rows import dict_row

from shared.platform.settings import get_settings

_local = threading.local()
T = TypeVar("T")

# Postgres aborts one side of a deadlock (or a serialization conflict); the whole transaction
# can simply run again.
_RETRYABLE = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


def _open() -> psycopg.Connection:
    return psycopg.connect(
        get_settings().database_dsn(),
        autocommit=True,
        row_factory=dict_row,
        connect_timeout=5,
        application_name="marketing-hub",
    )


def get_connection() -> psycopg.Connection:
    """The container's connection (one per thread), reopened when closed or broken."""
    conn: psycopg.Connection | None = getattr(_local, "conn", None)
    if conn is not None and not conn.closed and not conn.broken:
        try:
            # Cheap liveness probe: the server may have dropped an idle connection
            # (RDS failover, pg_terminate_backend) while the container was frozen.
            conn.execute("SELECT 1")
            return conn
        except psycopg.OperationalError:
            conn.close()
    conn = _open()
    _local.conn = conn
    return conn


def reset_connection() -> None:
    conn = getattr(_local, "conn", None)
    if conn is not None:
        conn.close()
    _local.conn = None


@contextmanager
def tenant_tx(
    tenant_id: str, conn: psycopg.Connection | None = None
) -> Iterator[psycopg.Connection]:
    """A transaction in which row-level security sees only `tenant_id`'s rows."""
    if not tenant_id:
        raise ValueError("tenant_id is required for a tenant-scoped transaction")
    conn = conn or get_connection()
    with conn.transaction():
        conn.execute("SELECT set_config('app.tenant_id', %s, true)", (str(tenant_id),))
        yield conn


@contextmanager
def system_tx(conn: psycopg.Connection | None = None) -> Iterator[psycopg.Connection]:
    """A transaction with no tenant: row-level security hides every tenant row.

    Scheduled jobs use it only to call the narrow SECURITY DEFINER functions that list which
    tenants have work (ids only), then do the work itself inside `tenant_tx`.
    """
    conn = conn or get_connection()
    with conn.transaction():
        yield conn


def retry_conflicts(work: Callable[[], T], attempts: int = 3) -> T:
    """Run `work` (which opens its own transaction) again when Postgres aborted it for a
    deadlock or a serialization conflict. Only for work that is idempotent as a whole."""
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except _RETRYABLE:
            if attempt == attempts:
                raise
            time.sleep(random.uniform(0.01, 0.05) * attempt)  # noqa: S311 - jitter, not crypto
    raise AssertionError("unreachable")

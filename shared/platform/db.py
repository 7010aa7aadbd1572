"""Postgres access: one connection per warm container, and tenant-scoped transactions.

Row-level security on every tenant table reads the tenant from the transaction-local setting
`app.tenant_id`; `tenant_tx` sets it with `set_config(..., true)` so it can never outlive the
transaction and leak into the next invocation that reuses the connection. Every tenant statement
also names its tenant itself (`tenant_id = app_current_tenant()`, or the id as a parameter), so
a policy dropped or bypassed by mistake still leaves each statement scoped.

Row-level security holds only for a role without BYPASSRLS that owns no table and gets no
role-scoped policy (the lookup policies of migrations/0010 belong to a NOLOGIN role). The first
connection of each container checks the role it got and refuses to serve with any other
(`UnsafeDatabaseRole`): the template accepts any secret, and a DSN of the schema owner would
otherwise show every tenant's rows to every tenant without a single error.

The functions reach Postgres through a transaction pooler (RDS Proxy in AWS, PgBouncer in
transaction mode in `DB_POOLER=pgbouncer make test`), which may hand each transaction to another
server connection. So nothing here keeps state in the session: no server-side prepared statements
(`prepare_threshold=None`), no session SET; the statement and lock timeouts are set in each
transaction, in the same round trip that names the tenant. There is no liveness probe before
use: a connection the server or the proxy dropped shows itself by failing at the start of the
next transaction, which then runs once more on a fresh connection (`_begin`). Only there: an
error once the caller's statements ran may hide a COMMIT that happened, so it is raised.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from shared.platform.observability import logger
from shared.platform.settings import get_settings

IDLE = TransactionStatus.IDLE
_local = threading.local()
T = TypeVar("T")
_safe_dsns: set[str] = set()  # DSNs whose role passed the check in this container
_safe_lock = threading.Lock()

# Postgres aborts one side of a deadlock (or a serialization conflict); the whole transaction
# can simply run again.
_RETRYABLE = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


class UnsafeDatabaseRole(RuntimeError):
    """The functions' database role would see past row-level security. Raised on every attempt
    to connect: the functions refuse to serve rather than serve every tenant's rows."""


# What makes a role unsafe for the functions, each with the objects that make it so. A policy
# scoped to a role (not PUBLIC, as the tenant policies are) is a lookup or maintenance policy
# with USING (true): it must never apply to the role that serves requests.
_ROLE_CHECK = """
SELECT r.rolname, r.rolsuper, r.rolbypassrls,
       (SELECT string_agg(c.relname, ', ' ORDER BY c.relname) FROM pg_class c
        WHERE c.relkind IN ('r', 'p') AND c.relrowsecurity
          AND pg_has_role(current_user, c.relowner, 'MEMBER')) AS owned_tables,
       (SELECT string_agg(c.relname || '.' || pol.polname, ', ' ORDER BY c.relname, pol.polname)
        FROM pg_policy pol JOIN pg_class c ON c.oid = pol.polrelid
        WHERE NOT (0::oid = ANY (pol.polroles))  -- 0: PUBLIC, as the tenant policies are
          AND EXISTS (SELECT 1 FROM unnest(pol.polroles) AS scoped(role_oid)
                      WHERE pg_has_role(current_user, scoped.role_oid, 'MEMBER'))
       ) AS scoped_policies
FROM pg_roles r WHERE r.rolname = current_user
"""


def check_role(conn: psycopg.Connection) -> None:
    """Raise UnsafeDatabaseRole when the connected role could read past row-level security."""
    row = conn.execute(_ROLE_CHECK).fetchone()
    problems = []
    if row["rolsuper"]:
        problems.append("is a superuser")
    if row["rolbypassrls"]:
        problems.append("has BYPASSRLS")
    if row["owned_tables"]:
        problems.append(f"owns (or has the privileges of the owner of) {row['owned_tables']}")
    if row["scoped_policies"]:
        problems.append(f"is subject to the role-scoped policies {row['scoped_policies']}")
    if problems:
        raise UnsafeDatabaseRole(
            f"Refusing to serve: the database role {row['rolname']} " + "; ".join(problems)
            + ". Row-level security would not keep tenants apart. Connect as the application "
            "role (marketing_app: no BYPASSRLS, owns nothing; docs/DEPLOY.md).")


def _open() -> psycopg.Connection:
    dsn = get_settings().database_dsn()
    conn = psycopg.connect(
        dsn,
        autocommit=True,
        row_factory=dict_row,
        connect_timeout=5,
        application_name="marketing-hub",
        # Statements are never prepared on the server: a prepared statement belongs to one
        # server session, which a transaction pooler does not keep (RDS Proxy would pin).
        prepare_threshold=None,
    )
    with _safe_lock:
        checked = dsn in _safe_dsns
    if not checked:
        try:
            check_role(conn)
        except UnsafeDatabaseRole as exc:
            conn.close()
            logger.critical("unsafe_database_role", extra={"reason": str(exc)})
            raise
        with _safe_lock:
            _safe_dsns.add(dsn)
    return conn


# Moved by reopen_everywhere(): a thread whose connection is of an older generation replaces it.
_generation = 0


def get_connection() -> psycopg.Connection:
    """The container's connection (one per thread), reopened when closed or broken. It is not
    probed: `tenant_tx` and `system_tx` replace one that fails as their transaction starts."""
    conn: psycopg.Connection | None = getattr(_local, "conn", None)
    if conn is not None and getattr(_local, "generation", _generation) != _generation:
        conn.close()
        conn = None
    if conn is None or conn.closed or conn.broken:
        conn = _open()
        _local.conn = conn
        _local.generation = _generation
    return conn


def reopen_everywhere() -> None:
    """Every thread's connection is replaced at its next use, this thread's now: for a changed
    DATABASE_URL. Closing another role's server sessions is not enough behind a pooler, which
    keeps the client's socket open and would log in as the old role again."""
    global _generation
    _generation += 1
    reset_connection()


def reset_connection() -> None:
    conn = getattr(_local, "conn", None)
    if conn is not None:
        conn.close()
    _local.conn = None


# Transaction-local (the `true`): whichever server connection the pooler lends this transaction,
# these hold for it alone and are gone at its end.
_TIMEOUTS = ("SELECT set_config('statement_timeout', %(statement)s, true),"
             " set_config('lock_timeout', %(lock)s, true)")
# A system transaction leaves app.tenant_id alone: unset, RLS hides every tenant row, and one
# nested in a tenant's transaction (a savepoint) must not clear that tenant for the rest of it.
_TENANT = _TIMEOUTS + ", set_config('app.tenant_id', %(tenant)s, true)"


def _is_disconnect(conn: psycopg.Connection, exc: psycopg.Error) -> bool:
    return isinstance(exc, psycopg.OperationalError) and (conn.broken or conn.closed)


@contextmanager
def _begin(tenant_id: str | None, conn: psycopg.Connection | None
           ) -> Iterator[psycopg.Connection]:
    """A transaction on `conn` (or the thread's connection) with the timeouts and the tenant set.

    A connection found dead as the transaction begins (BEGIN or the setup statement fails and
    psycopg marks it broken: the proxy's idle timeout, a failover, a restarted pooler) is
    replaced once; nothing of the caller's has run yet, so nothing can run twice. A failure
    after that is raised as it is: the transaction may have committed. A connection the caller
    passed in is never replaced behind its back."""
    s = get_settings()
    setup = _TIMEOUTS if tenant_id is None else _TENANT
    params = {"statement": f"{s.database_statement_timeout_ms}ms",
              "lock": f"{s.database_lock_timeout_ms}ms", "tenant": tenant_id}
    for attempt in (1, 2):
        current = conn or get_connection()
        # Inside a caller's transaction (a savepoint), a fresh connection would escape it.
        replaceable = conn is None and current.info.transaction_status == IDLE
        tx = current.transaction()
        try:
            tx.__enter__()
            current.execute(setup, params)
        except psycopg.Error as exc:
            with contextlib.suppress(psycopg.Error):  # a dead connection cannot roll back
                tx.__exit__(type(exc), exc, exc.__traceback__)
            if not replaceable or attempt == 2 or not _is_disconnect(current, exc):
                raise
            reset_connection()
            continue
        with _finishing(tx):
            yield current
        return


@contextmanager
def _finishing(tx: psycopg.Transaction) -> Iterator[None]:
    # Commit when the caller's block ends, roll back when it raises (the Transaction's own rule).
    try:
        yield
    except BaseException as exc:
        if not tx.__exit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        tx.__exit__(None, None, None)


@contextmanager
def tenant_tx(
    tenant_id: str, conn: psycopg.Connection | None = None
) -> Iterator[psycopg.Connection]:
    """A transaction in which row-level security sees only `tenant_id`'s rows."""
    if not tenant_id:
        raise ValueError("tenant_id is required for a tenant-scoped transaction")
    with _begin(str(tenant_id), conn) as current:
        yield current


@contextmanager
def system_tx(conn: psycopg.Connection | None = None) -> Iterator[psycopg.Connection]:
    """A transaction with no tenant: row-level security hides every tenant row.

    Scheduled jobs use it only to call the narrow SECURITY DEFINER functions that list which
    tenants have work (ids only), then do the work itself inside `tenant_tx`.
    """
    with _begin(None, conn) as current:
        yield current


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

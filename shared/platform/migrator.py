"""Applies migrations/NNNN_name.up.sql in order, and undoes the last with its .down.sql.

A table records what was applied. Every pending migration runs in ONE transaction: a migration
that fails leaves the schema exactly as it was, the ones before it included (never half a
release's schema). A transaction-level advisory lock makes a second migrator wait for the first
(two deploys, or a deploy and a developer) and find nothing left to do.

DDL takes strong locks, and a lock queued behind a long transaction of the CRM holds up every
query after it. So each attempt waits at most `lock_timeout` for a lock, gives everything back
when it does not get it, and tries again a little later, until the deadline (the custom
resource's Lambda timeout, well inside CloudFormation's ServiceTimeout).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import time
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
_LOCK_KEY = 0x4D4B5447  # "MKTG": any constant shared by every migrator of this schema
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.up\.sql$")
LOCK_TIMEOUT_MS = 3_000  # per lock, per attempt
RETRY_PAUSE_SECONDS = (0.5, 5.0)  # the first pause, and the longest


class MigrationLockTimeout(RuntimeError):
    """The locks a migration needs were not free before the deadline: nothing was applied."""


def available(directory: Path = MIGRATIONS_DIR) -> list[str]:
    return sorted(p.name[: -len(".up.sql")] for p in directory.iterdir() if _NAME.match(p.name))


def _prepare(conn: psycopg.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )


def applied(conn: psycopg.Connection) -> list[str]:
    _prepare(conn)
    return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


def _locked(conn: psycopg.Connection, lock_timeout_ms: int) -> None:
    """Inside the transaction: its lock wait bounded, no statement limit (a migration may take
    minutes), and the migrators' lock, held until it ends."""
    conn.execute("SELECT set_config('lock_timeout', %s, true),"
                 " set_config('statement_timeout', '0', true)", (f"{lock_timeout_ms}ms",))
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))


def _apply_pending(conn: psycopg.Connection, directory: Path, lock_timeout_ms: int) -> list[str]:
    with conn.transaction():
        _locked(conn, lock_timeout_ms)
        already = set(applied(conn))
        pending = [v for v in available(directory) if v not in already]
        for version in pending:
            conn.execute((directory / f"{version}.up.sql").read_text())
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
    return pending


def migrate(dsn: str, directory: Path = MIGRATIONS_DIR, *, deadline: float | None = None,
            lock_timeout_ms: int = LOCK_TIMEOUT_MS) -> list[str]:
    """Apply every pending migration, all or none; returns the versions applied now
    (idempotent). A lock not granted within `lock_timeout_ms` rolls the attempt back and it
    starts again after a pause, until `deadline` (time.monotonic(); None: 10 minutes)."""
    deadline = time.monotonic() + 600 if deadline is None else deadline
    pause = RETRY_PAUSE_SECONDS[0]
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            try:
                return _apply_pending(conn, directory, lock_timeout_ms)
            except psycopg.errors.LockNotAvailable as exc:
                if time.monotonic() + pause >= deadline:
                    raise MigrationLockTimeout(
                        "the tables a migration changes stayed locked until the deadline; "
                        "nothing was applied") from exc
                time.sleep(pause * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not crypto
                pause = min(pause * 2, RETRY_PAUSE_SECONDS[1])


def rollback(dsn: str, directory: Path = MIGRATIONS_DIR) -> str | None:
    """Undo the most recently applied migration; returns its version, or None if none."""
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        _locked(conn, LOCK_TIMEOUT_MS)
        versions = applied(conn)
        if not versions:
            return None
        last = versions[-1]
        conn.execute((directory / f"{last}.down.sql").read_text())
        conn.execute("DELETE FROM schema_migrations WHERE version = %s", (last,))
        return last


def _dsn() -> str:
    dsn = os.environ.get("MIGRATIONS_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not dsn:
        sys.exit("Set DATABASE_URL (or MIGRATIONS_DATABASE_URL for the owner role).")
    return dsn


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Apply or undo SQL migrations.")
    parser.add_argument("command", choices=["migrate", "rollback", "status"])
    args = parser.parse_args(argv)
    dsn = _dsn()
    if args.command == "migrate":
        done = migrate(dsn)
        print(f"applied: {', '.join(done) or 'nothing (up to date)'}")
    elif args.command == "rollback":
        print(f"rolled back: {rollback(dsn) or 'nothing'}")
    else:
        with psycopg.connect(dsn) as conn:
            print("applied:", ", ".join(applied(conn)) or "none")
            conn.commit()


if __name__ == "__main__":
    main()

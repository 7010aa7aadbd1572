"""Applies migrations/NNNN_name.up.sql in order, and undoes the last with its .down.sql.

A table records what was applied; a session advisory lock makes a second migrator wait instead
of racing (two deploys, or a deploy and a developer). Each migration runs in its own transaction.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
_LOCK_KEY = 0x4D4B5447  # "MKTG": any constant shared by every migrator of this schema
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.up\.sql$")


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


def migrate(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every pending migration; returns the versions applied now (idempotent)."""
    done: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            already = set(applied(conn))
            for version in available(directory):
                if version in already:
                    continue
                sql = (directory / f"{version}.up.sql").read_text()
                with conn.transaction():
                    conn.execute(sql)
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                done.append(version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return done


def rollback(dsn: str, directory: Path = MIGRATIONS_DIR) -> str | None:
    """Undo the most recently applied migration; returns its version, or None if none."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            versions = applied(conn)
            if not versions:
                return None
            last = versions[-1]
            with conn.transaction():
                conn.execute((directory / f"{last}.down.sql").read_text())
                conn.execute("DELETE FROM schema_migrations WHERE version = %s", (last,))
            return last
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


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

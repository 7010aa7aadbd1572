"""Postgres for local runs: $DATABASE_URL's server, or an embedded one (pgserver) in a temp dir.

Either way a fresh database is created, migrated as the owner, and handed to the functions as the
application role `marketing_app` (no BYPASSRLS, not the owner), so row-level security applies.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from shared.platform.migrator import migrate

APP_ROLE = "marketing_app"


@dataclass
class LocalDatabase:
    owner_dsn: str
    app_dsn: str
    name: str
    _admin_dsn: str
    _server: object | None = field(default=None, repr=False)

    def drop(self) -> None:
        try:
            with psycopg.connect(self._admin_dsn, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        except psycopg.OperationalError:
            if self._server is None:
                raise  # $DATABASE_URL's server: the database is left behind, say so
            # The embedded server is gone already (Ctrl-C reaches it too): its directory goes.
        finally:
            if self._server is not None:
                discard_embedded(self._server)


def _import_pgserver():
    # pgserver asks platformdirs for a runtime directory at import; without XDG_RUNTIME_DIR (a
    # container, a CI runner) that warns on every `make dev`. The fallback it takes is fine.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import pgserver  # dev-only: an embedded Postgres when no server is given
    return pgserver


def discard_embedded(server_or_dir: object) -> None:
    """Stop an embedded server (if it runs) and remove its data directory: after an
    interrupted start as well as a normal stop, nothing is left in the temp directory."""
    pgserver = _import_pgserver()
    data_dir = Path(getattr(server_or_dir, "pgdata", server_or_dir))
    server = pgserver.PostgresServer._instances.get(data_dir)
    if server is not None:
        with contextlib.suppress(Exception):  # a server killed by the same Ctrl-C
            server.cleanup()
    for process in _postgres_processes(data_dir):
        with contextlib.suppress(Exception):
            process.kill()
    shutil.rmtree(data_dir, ignore_errors=True)


def _postgres_processes(data_dir: Path) -> list:
    import psutil  # pgserver's own dependency

    found = []
    for process in psutil.process_iter(attrs=["name", "cmdline"]):
        cmdline = process.info.get("cmdline") or []
        if process.info.get("name") == "postgres" and str(data_dir) in cmdline:
            found.append(process)
    return found


def _embedded_admin_dsn() -> tuple[str, object]:
    pgserver = _import_pgserver()
    # "delete": the temporary data directory goes with the server (a run leaves nothing in /tmp).
    data_dir = Path(tempfile.mkdtemp(prefix="marketing-hub-pg-")).resolve()
    try:
        server = pgserver.get_server(data_dir, cleanup_mode="delete")
        return server.get_uri(), server
    except BaseException:  # initdb or the server killed by Ctrl-C, or a failed start
        discard_embedded(data_dir)
        raise


def provision(admin_dsn: str | None = None, name: str | None = None) -> LocalDatabase:
    server = None
    admin_dsn = admin_dsn or os.environ.get("DATABASE_URL")
    if not admin_dsn:
        admin_dsn, server = _embedded_admin_dsn()
    name = name or f"marketing_hub_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        params = conninfo_to_dict(admin_dsn)
        params["dbname"] = name
        owner_dsn = make_conninfo(**params)
        database = LocalDatabase(owner_dsn=owner_dsn, app_dsn="", name=name,
                                 _admin_dsn=admin_dsn, _server=server)
    except BaseException:
        if server is not None:
            discard_embedded(server)
        raise
    try:
        migrate(owner_dsn)
        with psycopg.connect(owner_dsn, autocommit=True) as conn:
            conn.execute(f'GRANT CONNECT ON DATABASE "{name}" TO {APP_ROLE}')
    except BaseException:
        with contextlib.suppress(Exception):  # the first failure is the one to report
            database.drop()
        raise
    params["user"] = APP_ROLE
    params.pop("password", None)
    database.app_dsn = make_conninfo(**params)
    return database

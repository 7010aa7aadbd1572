"""Postgres for local runs: $DATABASE_URL's server, or an embedded one (pgserver) in a temp dir.

Either way a fresh database is created, migrated as the owner, and handed to the functions as the
application role `marketing_app` (no BYPASSRLS, not the owner), so row-level security applies.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass, field

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
        with psycopg.connect(self._admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        if self._server is not None:
            self._server.cleanup()


def _embedded_admin_dsn() -> tuple[str, object]:
    import pgserver  # dev-only: an embedded Postgres when no server is given

    # "delete": the temporary data directory goes with the server (a run leaves nothing in /tmp).
    data_dir = tempfile.mkdtemp(prefix="marketing-hub-pg-")
    server = pgserver.get_server(data_dir, cleanup_mode="delete")
    return server.get_uri(), server


def provision(admin_dsn: str | None = None, name: str | None = None) -> LocalDatabase:
    server = None
    admin_dsn = admin_dsn or os.environ.get("DATABASE_URL")
    if not admin_dsn:
        admin_dsn, server = _embedded_admin_dsn()
    name = name or f"marketing_hub_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(admin_dsn)
    params["dbname"] = name
    owner_dsn = make_conninfo(**params)
    migrate(owner_dsn)
    with psycopg.connect(owner_dsn, autocommit=True) as conn:
        conn.execute(f'GRANT CONNECT ON DATABASE "{name}" TO {APP_ROLE}')
    params["user"] = APP_ROLE
    params.pop("password", None)
    return LocalDatabase(owner_dsn=owner_dsn, app_dsn=make_conninfo(**params), name=name,
                         _admin_dsn=admin_dsn, _server=server)

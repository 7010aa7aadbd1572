"""devstack/pgbouncer.py, the local stand-in for RDS Proxy (`DB_POOLER=pgbouncer make test`):
transaction pooling really multiplexes clients over fewer server sessions."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from devstack import pgbouncer

pytestmark = pytest.mark.skipif(
    not (shutil.which("pgbouncer") or Path("/usr/sbin/pgbouncer").exists()),
    reason="PgBouncer is not installed (apt-get install pgbouncer; .ci/run does)")


def test_many_clients_share_a_few_server_sessions(stack):
    direct = {**conninfo_to_dict(stack.database.owner_dsn), "user": "marketing_app"}
    direct.pop("password", None)
    pooler = pgbouncer.start(make_conninfo(**direct))
    clients = []
    try:
        backends = set()
        for _ in range(pgbouncer.SERVER_CONNECTIONS * 2):
            conn = psycopg.connect(pooler.dsn, autocommit=True, prepare_threshold=None)
            clients.append(conn)
            with conn.transaction():
                backends.add(conn.execute("SELECT pg_backend_pid()").fetchone()[0])
        assert len(clients) == 2 * pgbouncer.SERVER_CONNECTIONS
        assert len(backends) <= pgbouncer.SERVER_CONNECTIONS
    finally:
        for conn in clients:
            conn.close()
        pooler.stop()
    assert pooler.process.poll() is not None and not pooler.directory.exists()


def test_an_unknown_pooler_is_refused(monkeypatch):
    monkeypatch.setenv("DB_POOLER", "pgpool")
    with pytest.raises(pgbouncer.PoolerUnavailable, match="pgbouncer"):
        pgbouncer.requested()
    monkeypatch.setenv("DB_POOLER", "")
    assert pgbouncer.requested() is None

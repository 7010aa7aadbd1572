"""A local stand-in for RDS Proxy's multiplexing: PgBouncer in transaction mode in front of the
application role's connections (`DB_POOLER=pgbouncer make test`, `make dev`, `make demo`).

Each transaction may run on another server connection, as behind the proxy: code that kept
state in a session (a SET, a prepared statement, a session advisory lock, LISTEN) breaks here
as it would in AWS. The schema owner's connections (migrations, test fixtures) go direct.
Debian's package: `apt-get install pgbouncer`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

POOLERS = ("pgbouncer",)
SERVER_CONNECTIONS = 20  # per database and user: the proxy's share of max_connections


class PoolerUnavailable(RuntimeError):
    pass


def requested() -> str | None:
    """The pooler DB_POOLER asks for, or None (direct connections)."""
    value = os.environ.get("DB_POOLER", "").strip().lower()
    if value in ("", "none", "direct"):
        return None
    if value not in POOLERS:
        raise PoolerUnavailable(f"DB_POOLER={value}: the local stack knows {', '.join(POOLERS)}")
    return value


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run_as(server_dsn: dict) -> str | None:
    """PgBouncer refuses to run as root: then it runs as the owner of the server's socket
    directory (the embedded server's user), which may also reach that socket."""
    if os.geteuid() != 0:
        return None
    host = server_dsn.get("host", "")
    if host.startswith("/"):
        return pwd.getpwuid(os.stat(host).st_uid).pw_name
    return "nobody"


@dataclass
class PgBouncer:
    dsn: str  # the application role's DSN through the pooler
    process: subprocess.Popen
    directory: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.directory, ignore_errors=True)

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.directory / "pgbouncer.log").read_text()[-4000:]
        return ""


def start(app_dsn: str) -> PgBouncer:
    """PgBouncer in transaction mode in front of `app_dsn`'s database, for its role."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        raise PoolerUnavailable("DB_POOLER=pgbouncer needs PgBouncer: apt-get install pgbouncer")
    server = conninfo_to_dict(app_dsn)
    port = _free_port()
    directory = Path(tempfile.mkdtemp(prefix="marketing-hub-pgbouncer-"))
    directory.chmod(0o755)
    target = {k: v for k, v in server.items() if k in ("host", "port", "dbname", "password")}
    target_line = " ".join(f"{k}={v}" for k, v in target.items())
    user = server.get("user", "")
    (directory / "users.txt").write_text(f'"{user}" ""\n')
    (directory / "pgbouncer.ini").write_text(f"""[databases]
{server['dbname']} = {target_line}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {directory / 'users.txt'}
auth_user = {user}
auth_query = SELECT rolname::text, NULL::text FROM pg_catalog.pg_roles WHERE rolname = $1
pool_mode = transaction
default_pool_size = {SERVER_CONNECTIONS}
max_client_conn = 1000
server_check_delay = 0
ignore_startup_parameters = extra_float_digits
""")
    for path in directory.iterdir():
        path.chmod(0o644)
    command = [binary]
    run_as = _run_as(server)
    if run_as:
        command += ["-u", run_as]
    command.append(str(directory / "pgbouncer.ini"))
    log = (directory / "pgbouncer.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
    pooled = PgBouncer(make_conninfo(host="127.0.0.1", port=str(port), dbname=server["dbname"],
                                     user=user), process, directory)
    deadline = time.monotonic() + 20
    while True:
        try:
            with psycopg.connect(pooled.dsn, connect_timeout=2, autocommit=True) as conn:
                conn.execute("SELECT 1")
            return pooled
        except psycopg.OperationalError as exc:
            if process.poll() is not None or time.monotonic() > deadline:
                reason = pooled.log()
                pooled.stop()
                raise PoolerUnavailable(f"PgBouncer did not start: {exc}\n{reason}") from exc
            time.sleep(0.1)

"""Fixtures for the token lifecycle tests: connections made straight in the sandbox and the
database (no OAuth flow), the scheduled handler run as EventBridge would, views of the stored
rows, and a capture of every log line.

Load with `pytest_plugins = ["tests.fixtures_tokens"]`.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from devstack.lambda_context import LocalContext
from sandbox.control import SandboxControl
from shared.connection import credentials
from shared.platform.db import tenant_tx
from shared.platform.observability import logger as app_logger
from shared.platform.settings import get_settings

EVENTS = Path(__file__).resolve().parent.parent / "events"
DAY = 86400


def load_event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def scheduled_event() -> dict:
    return load_event("token_refresh_scheduled.json")


def run_schedule(timeout_seconds: float = 300.0, context=None) -> dict:
    """One scheduled invocation of the real handler, as EventBridge Scheduler makes it."""
    from functions.token_refresh.app import lambda_handler

    context = context or LocalContext(function_name="token_refresh",
                                      timeout_seconds=timeout_seconds)
    return lambda_handler(copy.deepcopy(scheduled_event()), context)


@pytest.fixture(scope="session")
def _token_meta_session(stack) -> Iterator[SandboxControl]:
    with SandboxControl(stack.sandbox.url) as control:
        yield control


@pytest.fixture
def meta_control(_token_meta_session) -> Iterator[SandboxControl]:
    """The stack's Meta sandbox; faults, latency and OAuth knobs a test sets are undone."""
    yield _token_meta_session
    _token_meta_session.clear_faults()
    _token_meta_session.clear_latency()
    _token_meta_session.configure_oauth(include_expires_in=True, refuse_exchange=False,
                                        extend_on_exchange=True)


@dataclass
class Connection:
    tenant_id: str
    token: str  # the token stored when the connection was made
    expires_at: datetime | None
    data_access_expires_at: datetime | None


class Connections:
    """Makes tenants' Meta connections directly: a sandbox token with chosen expiries, stored
    encrypted with shared.connection.credentials.save inside the tenant's transaction. Their rows
    are removed (by tenant, as the app role) after the test so later runs never see them."""

    def __init__(self, control: SandboxControl):
        self.control = control
        self.tenants: list[str] = []

    def make(self, tenant_id: str, *, expires_in: float | None = 60 * DAY,
             data_access_in: float | None = 90 * DAY, scopes: list[str] | None = None,
             user: str = "10001") -> Connection:
        """expires_in / data_access_in: seconds from now (negative: already passed; None:
        never, Meta's 0)."""
        now = int(time.time())
        expires = 0 if expires_in is None else now + int(expires_in)
        data_access = 0 if data_access_in is None else now + int(data_access_in)
        scopes = list(get_settings().scopes if scopes is None else scopes)
        token = self.control.issue_token(user, scopes=scopes, expires_at=expires,
                                         data_access_expires_at=data_access)
        expires_at = datetime.fromtimestamp(expires, UTC) if expires else None
        data_access_at = datetime.fromtimestamp(data_access, UTC) if data_access else None
        with tenant_tx(tenant_id) as conn:
            credentials.save(conn, tenant_id, token, expires_at=expires_at,
                             data_access_expires_at=data_access_at, meta_user_id=user,
                             scopes=scopes)
        self.tenants.append(tenant_id)
        return Connection(tenant_id, token, expires_at, data_access_at)

    def cleanup(self) -> None:
        for tenant_id in self.tenants:
            with tenant_tx(tenant_id) as conn:
                conn.execute("DELETE FROM credentials WHERE name = %s", (credentials.META_TOKEN,))


@pytest.fixture
def connections(meta_control) -> Iterator[Connections]:
    made = Connections(meta_control)
    yield made
    made.cleanup()


@pytest.fixture
def owner_conn(stack) -> Iterator[psycopg.Connection]:
    """The schema owner, to read and age rows of any tenant (0003 lets it read credentials)."""
    with psycopg.connect(stack.database.owner_dsn, autocommit=True, row_factory=dict_row) as conn:
        yield conn


def row_of(conn: psycopg.Connection, tenant_id: str) -> dict | None:
    row = conn.execute("SELECT * FROM credentials WHERE tenant_id = %s AND name = %s",
                       (tenant_id, credentials.META_TOKEN)).fetchone()
    if row is not None:
        row["ciphertext"] = bytes(row["ciphertext"])
    return row


def stored_token(tenant_id: str) -> str:
    with tenant_tx(tenant_id) as conn:
        return credentials.load(conn).token()


def age_last_attempt(conn: psycopg.Connection, tenant_id: str, hours: float) -> None:
    """Pretend the last refresh attempt was `hours` ago (the recheck interval is 24 h)."""
    conn.execute("UPDATE credentials SET last_refresh_attempt_at = now() - make_interval("
                 "hours => %s) WHERE tenant_id = %s", (hours, tenant_id))


def near(value: datetime | None, expected: datetime, slack: timedelta = timedelta(minutes=5)
         ) -> bool:
    return value is not None and abs(value - expected) <= slack


@pytest.fixture
def drained(stack) -> dict:
    """Run the schedule until it has nothing left to do, so a test's summary counts only the
    connections the test made (tests share one database; tenants left due by earlier tests
    are handled here). Returns the last (all-zero) summary."""
    summary = {}
    for _ in range(3):
        summary = run_schedule()
        if not any(summary.values()):
            return summary
    raise AssertionError(f"the schedule does not settle: {summary}")


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Every line our Powertools logger writes (formatted as it goes to stdout) plus every other
    library's records (boto3, httpx, psycopg...), in one buffer."""
    buffer = io.StringIO()
    ours = logging.StreamHandler(buffer)
    ours.setFormatter(app_logger.registered_formatter)
    others = logging.StreamHandler(buffer)
    others.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s %(args)s"))
    others.setLevel(logging.INFO)  # production's level (POWERTOOLS_LOG_LEVEL: INFO)
    others.addFilter(lambda record: not record.name.startswith("werkzeug"))
    root = logging.getLogger()
    app_logger.addHandler(ours)
    root.addHandler(others)
    try:
        yield buffer
    finally:
        app_logger.removeHandler(ours)
        root.removeHandler(others)


def log_records(buffer: io.StringIO, message: str) -> list[dict]:
    found = []
    for line in buffer.getvalue().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("message") == message:
            found.append(record)
    return found


class ScriptedContext(LocalContext):
    """A Lambda context whose remaining time is plenty for the first `plenty_calls` questions
    and then nearly gone: makes "stop claiming when time runs short" deterministic."""

    def __init__(self, plenty_calls: int):
        super().__init__(function_name="token_refresh", timeout_seconds=300)
        self.plenty_calls = plenty_calls
        self.calls = 0

    def get_remaining_time_in_millis(self) -> int:
        self.calls += 1
        return 250_000 if self.calls <= self.plenty_calls else 1_000

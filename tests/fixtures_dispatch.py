"""Dispatch fixtures: a tenant connected to a fresh sandbox number with synced templates, rules
and many due leads, the sending area's control client, and small DB helpers.

Load with `pytest_plugins = ["tests.fixtures_whatsapp", "tests.fixtures_dispatch"]`. Every setup
gets its own sandbox user, WABA and phone number (part A's control API), so the per-number
records, caps and injected errors of one test never meet another's; nothing is reset globally.
Rows are written as the app role inside tenant_tx (RLS applies).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from psycopg.types.json import Jsonb

from devstack.lambda_context import LocalContext
from devstack.queues import deliver_all
from sandbox.whatsapp_send import SendControl
from shared.hsm.dispatch import run_dispatch
from shared.hsm.tenant_run import DispatchHooks, DispatchSummary
from shared.platform.db import tenant_tx
from tests.fixtures_whatsapp import WhatsAppSetup, connect, fetch, new_account

HIGH_CAP = 1000  # the fast tests: an upgraded number, near-zero latency


@dataclass
class Dispatching:
    """A tenant ready to dispatch: its sender, one enabled rule and its sandbox number."""

    setup: WhatsAppSetup
    rule_id: str

    @property
    def tenant_id(self) -> str:
        return self.setup.tenant_id

    @property
    def phone_number_id(self) -> str:
        return self.setup.phone_number_id


@pytest.fixture(scope="session")
def send_control(stack) -> SendControl:
    control = SendControl(stack.sandbox.url)
    yield control
    control.close()


def connect_sender(wa_sandbox, stack_sandbox, send_control: SendControl, tenant_id: str, *,
                   max_per_second: int = HIGH_CAP, **account: Any) -> WhatsAppSetup:
    """A fresh sandbox number (capped at `max_per_second` there too), connected for the tenant
    through part A's connect logic, which syncs the templates."""
    setup = new_account(wa_sandbox, stack_sandbox, tenant_id, **account)
    send_control.configure_number(setup.phone_number_id, max_per_second=max_per_second)
    connect(setup, max_per_second=max_per_second)
    return setup


def add_rule(tenant_id: str, *, template_name: str = "lead_followup_es", language: str = "es",
             body_params: list[str] | None = None, delay_hours: int = 24,
             send_window: dict[str, str] | None = None, enabled: bool = True) -> str:
    with tenant_tx(tenant_id) as conn:
        row = conn.execute(
            "INSERT INTO automation_rules (tenant_id, name, trigger_type, delay_hours, "
            "template_name, language, body_params, send_window, enabled) "
            "VALUES (%s, %s, 'lead_followup', %s, %s, %s, %s, %s, %s) RETURNING id",
            (tenant_id, f"Seguimiento {uuid.uuid4().hex[:6]}", delay_hours, template_name,
             language, Jsonb(body_params if body_params is not None else ["first_name"]),
             Jsonb(send_window) if send_window else None, enabled),
        ).fetchone()
    return str(row["id"])


def add_leads(tenant_id: str, count: int, *, hours_old: float = 48, start: int = 0,
              **columns: Any) -> list[str]:
    """`count` leads created `hours_old` hours ago, phones +3460000NNNN (unique per tenant),
    names "Lead N Apellido"."""
    extra_names = "".join(f", {name}" for name in columns)
    extra_values = "".join(", %s" for _ in columns)
    with tenant_tx(tenant_id) as conn:
        rows = conn.execute(
            f"INSERT INTO leads (tenant_id, name, phone, created_at{extra_names}) "
            f"SELECT %s, 'Lead' || g || ' Apellido', '+3460' || lpad(g::text, 7, '0'), "
            f"now() - make_interval(secs => %s::float8 * 3600 + g){extra_values} "
            f"FROM generate_series(%s::int, %s::int) g RETURNING id",
            (tenant_id, hours_old, *columns.values(), start + 1, start + count),
        ).fetchall()
    return [str(r["id"]) for r in rows]


def logs(tenant_id: str) -> list[dict[str, Any]]:
    return fetch(tenant_id, "SELECT * FROM automation_logs ORDER BY created_at, id")


def status_counts(tenant_id: str) -> dict[str, int]:
    rows = fetch(tenant_id, "SELECT status, count(*) AS n FROM automation_logs GROUP BY status")
    return {r["status"]: r["n"] for r in rows}


def make_retries_due(tenant_id: str) -> int:
    """Move every released row's next attempt into the past: time passing, without sleeping."""
    with tenant_tx(tenant_id) as conn:
        return conn.execute(
            "UPDATE automation_logs SET next_attempt_at = now() - interval '1 second' "
            "WHERE status = 'PENDING' AND claimed_by IS NULL AND attempt_started_at IS NULL"
        ).rowcount


def expire_lease(tenant_id: str) -> None:
    """The lease of a run that died runs out (time passing)."""
    with tenant_tx(tenant_id) as conn:
        conn.execute("UPDATE hsm_dispatch_leases SET expires_at = now() - interval '1 second'")


SCHEDULED_EVENT = {"version": "0", "detail-type": "Scheduled Event", "source": "aws.events",
                   "detail": {}}


def plan() -> dict[str, int]:
    """The planner, invoked as the schedule invokes it."""
    from functions.hsm_dispatch.app import lambda_handler

    return lambda_handler(SCHEDULED_EVENT, LocalContext("HsmDispatchFunction", 60))


def run_schedule() -> tuple[dict[str, int], Counter[str]]:
    """One tick the way AWS runs it: the planner, then every message on the dispatch queue
    delivered to the workers in batches until the queue stays empty."""
    planned = plan()
    return planned, deliver_all(queues={"HsmDispatchQueue"})


def sync_templates_now() -> Counter[str]:
    """The template sync's tick the way AWS runs it: its planner, then its queue delivered."""
    from functions.template_sync.app import lambda_handler

    lambda_handler(SCHEDULED_EVENT, LocalContext("TemplateSyncFunction", 60))
    return deliver_all(queues={"TemplateSyncQueue"})


def dispatch(tenant_id: str | list[str], *, seconds: float = 60.0,
             hooks: DispatchHooks | None = None) -> DispatchSummary:
    """One worker run for these tenants only, as if their messages were in one batch (other
    tests' tenants share the database)."""
    tenants = [tenant_id] if isinstance(tenant_id, str) else tenant_id
    return run_dispatch(time.monotonic() + seconds, tenant_ids=tenants, hooks=hooks)


@pytest.fixture
def dispatching(stack, wa_sandbox, stack_sandbox, send_control, tenant_id) -> Dispatching:
    """A tenant with a 1,000/s sender, synced templates and one enabled rule on the approved
    `lead_followup_es` (one body variable: the lead's first name). Add leads with add_leads."""
    setup = connect_sender(wa_sandbox, stack_sandbox, send_control, tenant_id)
    yield Dispatching(setup, add_rule(tenant_id))
    send_control.clear_errors(setup.phone_number_id)


@pytest.fixture
def paced_dispatching(stack, wa_sandbox, stack_sandbox, send_control, tenant_id) -> Dispatching:
    """Like `dispatching`, at 100 messages/s: slow enough that a run is still mid-way when a
    test interrupts it after a few results."""
    setup = connect_sender(wa_sandbox, stack_sandbox, send_control, tenant_id,
                           max_per_second=100)
    yield Dispatching(setup, add_rule(tenant_id))
    send_control.clear_errors(setup.phone_number_id)

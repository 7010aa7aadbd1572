"""Shared pieces of the reliability and security suite (issue 10).

The suite attacks the running local stack (tests/conftest.py's session `stack`: moto, Postgres,
the Meta sandbox and the local API over real HTTP) the way production traffic and attackers
would. Tests isolate themselves by fresh tenant ids and fresh sandbox users; every sandbox fault
or latency a test sets is cleared by the `meta` fixture.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

# The shared fixture modules this suite imports assert in their helpers too: rewrite them (this
# directory is collected before the test modules that load them as plugins).
pytest.register_assert_rewrite("tests.fixtures_oauth", "tests.fixtures_whatsapp",
                               "tests.fixtures_dispatch", "tests.ads_support")

from devstack import jwt_tokens  # noqa: E402
from sandbox.control import SandboxControl  # noqa: E402
from shared.platform.db import tenant_tx  # noqa: E402
from shared.platform.settings import get_settings  # noqa: E402
from tests.fixtures_whatsapp import (  # noqa: E402
    WhatsAppSandbox,
    WhatsAppSetup,
    connect,
    new_account,
)

# Tables of the contract that hold tenant rows (RLS forced on each; migrations/0001).
TENANT_TABLES = ("leads", "credentials", "tenant_meta_accounts", "meta_ads_campaigns",
                 "meta_ads_insights", "whatsapp_senders", "meta_templates", "automation_rules",
                 "automation_logs", "meta_pages", "lead_reads")

ERROR_KEYS = {"code", "message"}


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    """The contract's error body: {"error": {"code", "message"[, "details"]}}, nothing more."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    body = response.json()
    assert set(body) == {"error"}, body
    assert ERROR_KEYS <= set(body["error"]) <= ERROR_KEYS | {"details"}, body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def figure(name: str, **values: Any) -> None:
    """A measured figure of this run (shown with `pytest -s`; RELIABILITY.md quotes them)."""
    print(f"\nFIGURE {name}: " + ", ".join(f"{k}={v}" for k, v in values.items()))


def emf_metric_total(stdout: str, name: str) -> float:
    """The sum of one metric over the EMF records (Powertools' metric lines) in `stdout`: the
    functions served by the local API print theirs to this process's stdout."""
    total = 0.0
    for line in stdout.splitlines():
        if '"_aws"' not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        for directive in record.get("_aws", {}).get("CloudWatchMetrics", []):
            for metric in directive.get("Metrics", []):
                if metric.get("Name") == name:
                    value = record.get(name, 0)
                    total += sum(value) if isinstance(value, list) else value
    return total


def bearer(tenant_id: str | None, role: str = "admin", **kwargs: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt_tokens.sign(tenant_id, role=role, **kwargs)}"}


@pytest.fixture(scope="session")
def openapi_doc(stack) -> dict[str, Any]:
    """The API's published OpenAPI document (GET /openapi.json on the local API)."""
    response = httpx.get(f"{stack.api_url}/openapi.json", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path, operation) for every published operation."""
    return [(method.upper(), path, op) for path, ops in sorted(doc["paths"].items())
            for method, op in sorted(ops.items())]


@pytest.fixture
def short_meta_timeout():
    """META_TIMEOUT_SECONDS for the functions (same process): timeouts cost little here."""
    saved = os.environ.get("META_TIMEOUT_SECONDS")
    os.environ["META_TIMEOUT_SECONDS"] = "0.3"
    get_settings.cache_clear()
    yield
    if saved is None:
        os.environ.pop("META_TIMEOUT_SECONDS", None)
    else:
        os.environ["META_TIMEOUT_SECONDS"] = saved
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def _control(stack) -> Iterator[SandboxControl]:
    with SandboxControl(stack.sandbox.url) as control:
        yield control


@pytest.fixture
def meta(_control) -> Iterator[SandboxControl]:
    """The stack's Meta sandbox; any fault or latency the test injects is cleared after it."""
    _control.clear_faults()
    yield _control
    _control.clear_faults()
    _control.clear_latency()


@pytest.fixture
def owner(stack) -> Iterator[psycopg.Connection]:
    """The schema owner (sees every tenant's rows): to check what was stored."""
    with psycopg.connect(stack.database.owner_dsn, autocommit=True, row_factory=dict_row) as conn:
        yield conn


def tenant_rows(conn: psycopg.Connection, tenant_id: str) -> dict[str, list[dict]]:
    """Every row of `tenant_id` in every tenant table, as the owner (for before/after diffs)."""
    out = {}
    for table in TENANT_TABLES:
        rows = conn.execute(f"SELECT * FROM {table} WHERE tenant_id = %s ORDER BY 1",  # noqa: S608
                            (tenant_id,)).fetchall()
        out[table] = [json.loads(json.dumps(r, default=str)) for r in rows]
    return out


# -- a tenant with a row in every table --------------------------------------------------------
@dataclass
class Populated:
    """A tenant with rows in every tenant table; `markers` are values that identify its data
    (ids, phone numbers...) and must never appear in another tenant's answers."""

    tenant_id: str
    setup: WhatsAppSetup
    rule_id: str
    lead_id: str
    log_id: str
    account_id: str
    campaign_id: str
    lead_phone: str
    page_id: str = ""
    markers: list[str] = field(default_factory=list)


@pytest.fixture(scope="session")
def wa(stack) -> Iterator[WhatsAppSandbox]:
    client = WhatsAppSandbox(stack.sandbox.url)
    yield client
    client.http.close()


def populate(api, wa: WhatsAppSandbox, control: SandboxControl, tenant_id: str) -> Populated:
    """Meta token + WhatsApp sender + synced templates (through part A's connect logic), a rule
    made through the API, a lead with a send log, and an ad account with a campaign and a day of
    insights (rows written as the app role inside the tenant's transaction)."""
    setup = new_account(wa, control, tenant_id)
    connect(setup)
    response = api.post("/crm/marketing/hsm/rules", tenant_id=tenant_id, role="admin", json={
        "name": f"Follow-up {uuid.uuid4().hex[:6]}", "trigger_type": "lead_followup",
        "delay_hours": 24, "template_name": "lead_followup_es", "language": "es",
        "body_params": ["first_name"], "enabled": True})
    assert response.status_code == 201, response.text
    rule_id = response.json()["id"]
    phone = f"+3465{uuid.uuid4().int % 10**7:07d}"
    tag = uuid.uuid4().hex[:8]  # names unique to this tenant, so a leak is recognisable
    account_id = f"act_{uuid.uuid4().int % 10**12}"
    campaign_id = str(uuid.uuid4().int % 10**15)
    with tenant_tx(tenant_id) as conn:
        lead_id = str(conn.execute(
            "INSERT INTO leads (tenant_id, name, phone, meta_campaign_id, lead_source, status,"
            " deal_value, created_at) VALUES (%s, %s, %s, %s, 'meta', 'won', 500,"
            " now() - interval '2 days') RETURNING id",
            (tenant_id, f"Lead Secreto {tag}", phone, campaign_id)).fetchone()["id"])
        log_id = str(conn.execute(
            "INSERT INTO automation_logs (tenant_id, rule_id, lead_id, template_name, language,"
            " phone, status, wamid) VALUES (%s, %s, %s, 'lead_followup_es', 'es', %s, 'SENT',"
            " %s) RETURNING id",
            (tenant_id, rule_id, lead_id, phone, f"wamid.{uuid.uuid4().hex}")).fetchone()["id"])
        conn.execute(
            "INSERT INTO tenant_meta_accounts (tenant_id, account_id, name, currency, timezone,"
            " account_status, last_sync_finished_at) VALUES (%s, %s, %s, 'EUR',"
            " 'Etc/UTC', 1, now())", (tenant_id, account_id, f"Cuenta Secreta {tag}"))
        conn.execute(
            "INSERT INTO meta_ads_campaigns (tenant_id, campaign_id, account_id, name, status)"
            " VALUES (%s, %s, %s, %s, 'ACTIVE')",
            (tenant_id, campaign_id, account_id, f"Campaña Secreta {tag}"))
        conn.execute(
            "INSERT INTO meta_ads_insights (tenant_id, campaign_id, date, account_id, currency,"
            " spend, impressions, clicks, leads) VALUES (%s, %s, current_date - 1, %s, 'EUR',"
            " 123.45, 1000, 50, 7)", (tenant_id, campaign_id, account_id))
    page_id, leadgen_id = _lead_ads_rows(control, setup, tag)
    markers = [tenant_id, setup.waba_id, setup.phone_number_id, rule_id, lead_id, log_id,
               page_id, leadgen_id, f"Página Secreta {tag}", f"Lead de Formulario {tag}",
               account_id, account_id.removeprefix("act_"), campaign_id, phone,
               phone.removeprefix("+"), f"Lead Secreto {tag}", f"Cuenta Secreta {tag}",
               f"Campaña Secreta {tag}",
               *setup.templates.values()]
    return Populated(tenant_id, setup, rule_id, lead_id, log_id, account_id, campaign_id, phone,
                     page_id, markers)


def _lead_ads_rows(control: SandboxControl, setup: WhatsAppSetup, tag: str) -> tuple[str, str]:
    """A connected Page of the tenant's person (its Page token sealed) and a lead of its form,
    stored with its read record: written by Lead Ads' own data access."""
    from sandbox.pages import PagesControl
    from shared.leads import leads_store, pages_store
    from shared.leads.parsing import parse_lead

    pages = PagesControl(control.url)
    try:
        created = pages.create_page(setup.user_id, name=f"Página Secreta {tag}")
        lead = pages.create_leads(created["page_id"], deliver="none",
                                  name=f"Lead de Formulario {tag}")[0]
    finally:
        pages.close()
    page_id = created["page_id"]
    parsed = parse_lead(lead, leadgen_id=lead["id"], page_id=page_id, default_country="AR")
    with tenant_tx(setup.tenant_id) as conn:
        pages_store.upsert(conn, setup.tenant_id, page_id=page_id, name=f"Página Secreta {tag}",
                           token=f"page-token-{tag}", default_country="AR", connected_by=None)
        lead_id, _ = leads_store.insert_lead(conn, setup.tenant_id, parsed)
        leads_store.mark_stored(conn, setup.tenant_id, lead["id"], page_id, parsed.form_id,
                                lead_id)
    return page_id, lead["id"]


@pytest.fixture
def populated(api, wa, _control, tenant_id) -> Populated:
    return populate(api, wa, _control, tenant_id)

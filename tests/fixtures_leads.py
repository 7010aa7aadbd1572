"""Lead Ads fixtures: a tenant connected to Meta with the Lead Ads scopes, a fresh sandbox Page
with lead forms, the webhook pointed at the local API, and the lead queues delivered as Lambda's
event sources would.

Load with `pytest_plugins = ["tests.fixtures_leads"]`. Every test gets a fresh Page (sandbox ids
are never reused) and fresh tenants, so tests share the stack without seeing each other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from devstack.queues import deliver_all
from sandbox.control import SandboxControl
from sandbox.pages import PagesControl
from shared.connection import credentials
from shared.platform.db import tenant_tx
from shared.platform.settings import DEFAULT_SCOPES, LEAD_ADS_SCOPES

ALL_SCOPES = [*DEFAULT_SCOPES, *LEAD_ADS_SCOPES]
LEAD_QUEUES = {"LeadReadQueue", "LeadReconcileQueue"}


@dataclass
class LeadPage:
    tenant_id: str
    user_id: str
    token: str  # the tenant's user token
    page_id: str
    form_ids: list[str]


@pytest.fixture(scope="session")
def pages(stack) -> Iterator[PagesControl]:
    control = PagesControl(stack.sandbox.url)
    control.configure_webhooks(url=f"{stack.api_url}/crm/webhooks/meta", enabled=True,
                               batch_size=1)
    yield control
    control.close()


@pytest.fixture(scope="session")
def meta(stack) -> Iterator[SandboxControl]:
    with SandboxControl(stack.sandbox.url) as control:
        yield control


@pytest.fixture
def sandbox_faults(meta) -> Iterator[SandboxControl]:
    """The stack's sandbox; faults and latency a test sets are undone after it."""
    yield meta
    meta.clear_faults()
    meta.clear_latency()


def connect_meta(meta: SandboxControl, tenant_id: str, user_id: str = "10001",
                 scopes: list[str] | None = None) -> str:
    """What a finished OAuth connect leaves behind: the tenant's stored Meta user token."""
    scopes = list(ALL_SCOPES if scopes is None else scopes)
    token = meta.issue_token(user_id, scopes=scopes)
    with tenant_tx(tenant_id) as conn:
        credentials.save(conn, tenant_id, token, expires_at=None, data_access_expires_at=None,
                         meta_user_id=user_id, scopes=scopes)
    return token


@pytest.fixture
def lead_page(stack, pages, meta, tenant_id) -> LeadPage:
    """A tenant connected to Meta (every scope) and a fresh Page of its person, not connected."""
    token = connect_meta(meta, tenant_id)
    created = pages.create_page("10001", name=f"Página {tenant_id}", forms=2)
    return LeadPage(tenant_id, "10001", token, created["page_id"], created["form_ids"])


def connect_page(api, page: LeadPage) -> Any:
    return api.post("/crm/marketing/pages/connect", tenant_id=page.tenant_id,
                    json={"page_id": page.page_id})


@pytest.fixture
def connected_page(api, lead_page) -> LeadPage:
    response = connect_page(api, lead_page)
    assert response.status_code == 200, response.text
    return lead_page


def drain_leads() -> Counter[str]:
    """Deliver the lead queues until they stay empty (the reader's and the reconciliation's)."""
    return deliver_all(queues=LEAD_QUEUES)


def lead_rows(tenant_id: str) -> list[dict[str, Any]]:
    with tenant_tx(tenant_id) as conn:
        return conn.execute(
            "SELECT * FROM leads WHERE tenant_id = app_current_tenant()"
            " AND lead_source = 'meta_lead_ads' ORDER BY created_at, meta_leadgen_id").fetchall()


def read_rows(tenant_id: str) -> list[dict[str, Any]]:
    with tenant_tx(tenant_id) as conn:
        return conn.execute("SELECT * FROM lead_reads WHERE tenant_id = app_current_tenant()"
                            " ORDER BY leadgen_id").fetchall()


def age_reconciliation(tenant_id: str, page_id: str, at: datetime | None) -> None:
    with tenant_tx(tenant_id) as conn:
        conn.execute("UPDATE meta_pages SET reconciled_at = %s"
                     " WHERE tenant_id = app_current_tenant() AND page_id = %s", (at, page_id))

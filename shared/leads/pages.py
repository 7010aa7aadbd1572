"""The tenant's Facebook Pages: the ones the person can advertise on (GET /crm/marketing/pages),
and connecting one (POST /crm/marketing/pages/connect).

Connecting asks Meta everything before anything is written: the Page must be among the person's
Pages with the ADVERTISE task (else page_not_accessible), must not feed another tenant (else
page_unavailable, saying nothing of which), and its Page token must subscribe the app to the
Page's `leadgen` field. Then the Page is stored with its token sealed like the user token, and
its leads of the last 90 days are imported (the same read as a reconciliation). An import that
Meta interrupts leaves the Page connected and its time unset, so the next reconciliation run
finishes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg

from shared.connection.session import load_usable_credential, tenant_graph
from shared.leads import pages_store
from shared.leads.reading import graph_for
from shared.leads.reconcile import IMPORT_DAYS, reconcile_page
from shared.meta.errors import MetaPermissionDenied, MetaRequestError
from shared.platform.db import system_tx, tenant_tx
from shared.platform.errors import MissingScopes, PageNotAccessible, PageUnavailable
from shared.platform.observability import logger, metrics
from shared.platform.settings import get_settings

if TYPE_CHECKING:
    from shared.meta.graph import GraphClient

PAGE_FIELDS = "id,name,access_token,tasks"
ADVERTISE = "ADVERTISE"
FALLBACK_COUNTRY = "AR"  # the CRM's home market, where no sender says otherwise


def missing_lead_scopes(tenant_id: str) -> list[str]:
    """The Lead Ads scopes the tenant's connection lacks. Raises MetaNotConnected or
    MetaReconnectRequired (409) when there is no usable connection at all."""
    granted = set(load_usable_credential(tenant_id).scopes)
    return [s for s in get_settings().optional_scopes if s not in granted]


@contextmanager
def lead_ads_graph(tenant_id: str, deadline: float | None) -> Iterator[GraphClient]:
    """The tenant's Graph client, once its connection has every Lead Ads scope."""
    missing = missing_lead_scopes(tenant_id)
    if missing:
        raise MissingScopes("The Meta connection lacks the Lead Ads permissions ("
                            + ", ".join(missing) + "). Reconnect Meta and allow them.")
    with tenant_graph(tenant_id, deadline) as graph:
        try:
            yield graph
        except MetaPermissionDenied as exc:
            # The scopes were granted once but Meta says otherwise now (removed in settings).
            logger.info("lead_ads_permission_denied", extra={"code": exc.code,
                                                             "subcode": exc.subcode})
            raise MissingScopes() from None


def _advertisable(graph: GraphClient) -> Iterator[dict[str, Any]]:
    for page in graph.paginate("me/accounts", {"fields": PAGE_FIELDS, "limit": 100}):
        if (isinstance(page, dict) and str(page.get("id") or "").isdigit()
                and ADVERTISE in (page.get("tasks") or [])):
            yield page


def list_pages(tenant_id: str, deadline: float | None) -> list[dict[str, Any]]:
    """The Pages the person can advertise on, and whether each feeds this tenant. Page tokens
    are read from Meta here but never leave this function."""
    with lead_ads_graph(tenant_id, deadline) as graph:
        pages = [{"id": str(p["id"]), "name": str(p.get("name") or "")}
                 for p in _advertisable(graph)]
    with tenant_tx(tenant_id) as conn:
        connected = pages_store.connected_ids(conn)
    return sorted(({**p, "connected": p["id"] in connected} for p in pages),
                  key=lambda p: (p["name"].lower(), p["id"]))


def _taken_by_other(tenant_id: str, page_id: str) -> bool:
    with system_tx() as conn:
        owner = pages_store.tenant_for_page(conn, page_id)
    return owner is not None and owner != tenant_id


def default_country(tenant_id: str) -> str:
    """The region of the tenant's WhatsApp sender's number, else FALLBACK_COUNTRY."""
    with tenant_tx(tenant_id) as conn:
        number = pages_store.sender_number(conn)
    digits = "".join(c for c in number or "" if c.isdigit())
    if digits:
        import phonenumbers  # on use (cold start)

        try:
            region = phonenumbers.region_code_for_number(phonenumbers.parse("+" + digits))
        except phonenumbers.NumberParseException:
            region = None
        if region and region.isalpha() and len(region) == 2:
            return region
    return FALLBACK_COUNTRY


def connect_page(tenant_id: str, user_id: str | None, page_id: str,
                 deadline: float | None) -> dict[str, Any]:
    with lead_ads_graph(tenant_id, deadline) as graph:
        page = next((p for p in _advertisable(graph) if str(p["id"]) == page_id), None)
    if page is None or not isinstance(page.get("access_token"), str):
        raise PageNotAccessible()
    if _taken_by_other(tenant_id, page_id):
        raise PageUnavailable()
    try:
        # Subscribing twice is harmless at Meta, so a blind retry is safe.
        with graph_for(page["access_token"], deadline) as page_graph:
            page_graph.post(f"{page_id}/subscribed_apps", {"subscribed_fields": "leadgen"},
                            idempotent=True)
    except (MetaPermissionDenied, MetaRequestError) as exc:
        logger.info("lead_page_subscribe_denied", extra={"code": exc.code,
                                                         "subcode": exc.subcode})
        raise PageNotAccessible() from None
    name = str(page.get("name") or "")
    country = default_country(tenant_id)
    try:
        with tenant_tx(tenant_id) as conn:
            pages_store.upsert(conn, tenant_id, page_id=page_id, name=name,
                               token=page["access_token"], default_country=country,
                               connected_by=user_id or None)
    except psycopg.errors.UniqueViolation:
        # Another tenant connected the same Page between our check and our write.
        raise PageUnavailable() from None
    since = datetime.now(UTC) - timedelta(days=IMPORT_DAYS)
    imported = reconcile_page(tenant_id, page_id, deadline=deadline, since=since)
    metrics.add_metric(name="LeadPagesConnected", unit="Count", value=1)
    logger.info("lead_page_connected", extra={"tenant_id": tenant_id, "page_id": page_id,
                                              "imported": imported["stored"],
                                              "import_complete": imported["complete"]})
    return {"status": "connected", "page_id": page_id, "page_name": name,
            "imported": imported["stored"]}

"""Message templates: synced from Meta, read by the rules API and the dispatcher.

Synced on connect; each status change is applied by the template-status webhook; a list that a
webhook marked stale (a template new to us) or that is older than an hour is read again by the
periodic template sync (shared.whatsapp.template_sync, through `ensure_fresh_templates`). The
dispatcher only reads what is stored: no send waits for Meta's template list.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.meta.errors import MetaRateLimited, MetaTransient
from shared.platform.db import tenant_tx
from shared.platform.errors import WhatsAppNotConnected
from shared.platform.observability import logger, metrics
from shared.whatsapp import senders
from shared.whatsapp import templates_store as store

if TYPE_CHECKING:
    from shared.meta.graph import GraphClient

TEMPLATE_FIELDS = ("id,name,language,status,category,parameter_format,components,quality_score,"
                   "rejected_reason")
PAGE_SIZE = 100
DEFAULT_MAX_AGE = timedelta(hours=1)
SENDABLE_STATUS = "APPROVED"
# Never usable again: a rule may not be created on these (PENDING and PAUSED may still become
# or return to APPROVED; the dispatcher skips them until then).
UNUSABLE_STATUSES = frozenset({"REJECTED", "DISABLED", "DELETED", "PENDING_DELETION",
                               "ARCHIVED", "LIMIT_EXCEEDED"})
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


# -- template content ---------------------------------------------------------------------------
def _components_of(components: Any, kind: str) -> list[dict[str, Any]]:
    if not isinstance(components, list):
        return []
    return [c for c in components
            if isinstance(c, dict) and str(c.get("type", "")).upper() == kind]


def _placeholders(text: Any) -> set[str]:
    return set(_PLACEHOLDER.findall(text)) if isinstance(text, str) else set()


def placeholder_count(components: Any) -> int:
    """How many distinct body variables ({{1}}, {{2}}... or named {{first_name}}) the template
    has: the number of body parameters a send must carry."""
    names: set[str] = set()
    for body in _components_of(components, "BODY"):
        names |= _placeholders(body.get("text"))
    return len(names)


def unfillable_parts(components: Any) -> list[str]:
    """Parts outside the body that need parameters (header text, URL buttons): a rule only
    fills body variables, so such templates cannot be sent by a rule."""
    parts = []
    for header in _components_of(components, "HEADER"):
        # Media headers always need a media parameter; text headers only with a variable.
        if str(header.get("format", "TEXT")).upper() != "TEXT" or _placeholders(header.get("text")):
            parts.append("header")
    for group in _components_of(components, "BUTTONS"):
        for button in group.get("buttons") or []:
            if isinstance(button, dict) and _placeholders(button.get("url")):
                parts.append("button")
    return sorted(set(parts))


# -- from Meta ----------------------------------------------------------------------------------
def _quality(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("score")
    return str(value) if value else None


def _reason(value: Any) -> str | None:
    return None if value in (None, "", "NONE") else str(value)


def record_from_graph(item: dict[str, Any]) -> store.TemplateRecord:
    return store.TemplateRecord(
        template_id=str(item["id"]),
        name=str(item["name"]),
        language=str(item["language"]),
        category=item.get("category"),
        status=str(item.get("status") or "PENDING").upper(),
        components=item.get("components") if isinstance(item.get("components"), list) else [],
        quality_score=_quality(item.get("quality_score")),
        rejection_reason=_reason(item.get("rejected_reason")),
        parameter_format=item.get("parameter_format"),
    )


def fetch_templates(graph: GraphClient, waba_id: str) -> list[store.TemplateRecord]:
    """Every page of /{waba-id}/message_templates."""
    items = graph.paginate(f"{waba_id}/message_templates",
                           {"fields": TEMPLATE_FIELDS, "limit": PAGE_SIZE})
    return [record_from_graph(item) for item in items]


def sync_templates(tenant_id: str, graph: GraphClient, waba_id: str) -> int:
    """Fetch all pages first, then replace the stored set in one transaction."""
    records = fetch_templates(graph, waba_id)
    with tenant_tx(tenant_id) as conn:
        sender = senders.get(conn, for_update=True)  # one writer per tenant at a time
        if sender is None or sender.waba_id != waba_id:
            raise WhatsAppNotConnected()
        count = store.replace_all(conn, tenant_id, waba_id, records)
    metrics.add_metric(name="WhatsAppTemplateSyncs", unit="Count", value=1)
    logger.info("whatsapp_templates_synced", extra={"tenant_id": tenant_id, "templates": count})
    return count


def ensure_fresh_templates(tenant_id: str, graph: GraphClient | None = None,
                           max_age: timedelta = DEFAULT_MAX_AGE) -> bool:
    """Re-sync the tenant's templates when the last sync is older than `max_age` (or was
    invalidated by a template webhook). Returns True when a sync ran.

    `graph` is a sync GraphClient with the tenant's token; without one, the tenant's stored
    token is used (shared.connection.session). Raises WhatsAppNotConnected without a sender. When
    Meta is throttling or down, the stored templates are kept and False is returned: sending
    on a slightly stale list is safe, because Meta itself refuses a template that stopped being
    approved (132001/132015/132016). Token errors propagate.
    """
    with tenant_tx(tenant_id) as conn:
        sender = senders.get(conn)
    if sender is None:
        raise WhatsAppNotConnected()
    synced = sender.templates_synced_at
    if synced is not None and datetime.now(UTC) - synced < max_age:
        return False
    if graph is not None:
        return _sync_or_keep(tenant_id, graph, sender.waba_id)
    # Imported on use: the template list and the rules API import this module and never call
    # Meta, so their cold start skips the session and credential modules.
    from shared.connection.session import tenant_graph

    with tenant_graph(tenant_id, on_click=False) as own:
        return _sync_or_keep(tenant_id, own, sender.waba_id)


def _sync_or_keep(tenant_id: str, graph: GraphClient, waba_id: str) -> bool:
    try:
        sync_templates(tenant_id, graph, waba_id)
    except (MetaRateLimited, MetaTransient) as exc:
        logger.warning("whatsapp_templates_stale", extra={"tenant_id": tenant_id,
                                                          "meta_code": exc.code})
        return False
    return True


# -- for the API --------------------------------------------------------------------------------
def public_template(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["template_id"],
        "name": row["name"],
        "language": row["language"],
        "category": row["category"],
        "status": row["status"],
        "rejection_reason": row["rejection_reason"],
        "quality_score": row["quality_score"],
        "placeholders": placeholder_count(row["components"]),
        "usable_in_rules": (row["status"] not in UNUSABLE_STATUSES
                            and not unfillable_parts(row["components"])),
        "components": row["components"],
        "synced_at": row["synced_at"].isoformat() if row["synced_at"] else None,
    }


def list_templates(tenant_id: str, status: str | None = None) -> dict[str, Any]:
    with tenant_tx(tenant_id) as conn:
        sender = senders.get(conn)
        rows = store.list_all(conn, status)
    return {
        "templates": [public_template(r) for r in rows],
        "synced_at": (sender.templates_synced_at.isoformat()
                      if sender and sender.templates_synced_at else None),
        "connected": sender is not None,
    }

"""Meta's leadgen notifications (`object: "page"`), after the webhook checked size, signature and
repeats (shared.whatsapp.webhook.receive hands the payload here).

For each leadgen change on a connected Page: the read is recorded as pending in the Page's
tenant, then queued on the lead-read queue, one message per lead. Nothing is read from Meta
here, so the webhook answers at once (CONTRACT: within a second). A lead already stored is not
queued again. If the queue refuses a message this raises, the webhook answers 500 and Meta
delivers the batch again: the pending rows are found again and queued then.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from shared.leads import leads_store, pages_store
from shared.platform import queues
from shared.platform.db import system_tx, tenant_tx
from shared.platform.observability import logger, metrics
from shared.platform.settings import get_settings

_ID = re.compile(r"^\d{1,32}$")
SUMMARY_KEYS = ("leads_queued", "leads_known", "unknown_page", "ignored")


class LeadQueueUnavailable(RuntimeError):
    """SQS refused some of the reads: the webhook fails, and Meta delivers the batch again."""


def _id(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    text = str(value)
    return text if _ID.match(text) else None


def _items(value: Any, counts: Counter) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        if value is not None:
            counts["ignored"] += 1
        return []
    good = [item for item in value if isinstance(item, dict)]
    counts["ignored"] += len(value) - len(good)
    return good


def collect(payload: dict[str, Any], counts: Counter) -> dict[str, list[dict[str, Any]]]:
    """tenant -> the reads its connected Pages were notified of (one per leadgen id)."""
    tenants: dict[str, str | None] = {}
    work: dict[str, dict[str, dict[str, Any]]] = {}
    for entry in _items(payload.get("entry"), counts):
        for change in _items(entry.get("changes"), counts):
            value = change.get("value")
            if change.get("field") != "leadgen" or not isinstance(value, dict):
                counts["ignored"] += 1
                continue
            leadgen_id = _id(value.get("leadgen_id"))
            page_id = _id(value.get("page_id")) or _id(entry.get("id"))
            if leadgen_id is None or page_id is None:
                counts["ignored"] += 1
                continue
            if page_id not in tenants:
                with system_tx() as conn:
                    tenants[page_id] = pages_store.tenant_for_page(conn, page_id)
            tenant_id = tenants[page_id]
            if tenant_id is None:
                counts["unknown_page"] += 1
                continue
            work.setdefault(tenant_id, {})[leadgen_id] = {
                "leadgen_id": leadgen_id, "page_id": page_id,
                "form_id": _id(value.get("form_id"))}
    return {tenant: list(reads.values()) for tenant, reads in work.items()}


def receive(payload: dict[str, Any]) -> dict[str, int]:
    counts: Counter = Counter()
    queue_url = get_settings().lead_read_queue_url
    for tenant_id, reads in collect(payload, counts).items():
        with tenant_tx(tenant_id) as conn:
            to_read = set(leads_store.announce(conn, tenant_id, reads))
        # The reader's LeadReadRequest; a lead already stored is not queued again.
        messages = [{"tenant_id": tenant_id, "reason": "webhook",
                     **{k: v for k, v in read.items() if v is not None}}
                    for read in reads if read["leadgen_id"] in to_read]
        sent = queues.send(queue_url, messages) if messages else []
        if len(sent) < len(messages):
            metrics.add_metric(name="LeadReadsNotQueued", unit="Count",
                               value=len(messages) - len(sent))
            raise LeadQueueUnavailable("the lead-read queue refused messages")
        counts["leads_queued"] += len(sent)
        counts["leads_known"] += len(reads) - len(messages)
    summary = {key: counts.get(key, 0) for key in SUMMARY_KEYS}
    metrics.add_metric(name="LeadNotificationsQueued", unit="Count",
                       value=summary["leads_queued"])
    logger.info("leadgen_webhook_processed", extra=summary)
    return summary

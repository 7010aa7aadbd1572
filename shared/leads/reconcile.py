"""Reconciliation: the leads no notification announced (the app was unsubscribed, an outage, a
notification Meta never sent) are read from each connected Page's forms.

The hourly planner queues one message per Page whose last complete read is older than
RECONCILE_EVERY (ids only, a SECURITY DEFINER page at a time); the consumer reads that Page's
forms' leads created since its last run, minus an overlap, and stores the missing ones (one row
per leadgen_id, so a lead read twice, or by two runs at once, is stored once). A Page's time
moves forward only when its read completed. The connect's 90-day import is the same read
(`reconcile_page(..., since=...)`).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.leads import leads_store, pages_store
from shared.leads.reading import LEAD_FIELDS, failure_reason, graph_for, page_lost, store_raw
from shared.meta.errors import MetaError, MetaTokenInvalid
from shared.platform import queues
from shared.platform.db import tenant_tx
from shared.platform.observability import logger, metrics
from shared.platform.settings import get_settings

RECONCILE_EVERY = timedelta(minutes=50)  # the schedule is hourly: every Page once a run
IMPORT_DAYS = 90  # Meta keeps leads for 90 days
DUE_PAGE = 1000
PAGE_SIZE = 100
# Stop reading this long before the deadline: the Page's time is then left as it was.
STOP_BEFORE_DEADLINE_SECONDS = 3.0


class ReconcileRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tenant_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    page_id: str = Field(pattern=r"^\d{1,32}$")
    reason: Literal["due", "connected"] = "due"


def plan_reconciliation(now: datetime | None = None) -> dict[str, int]:
    """The scheduled run: one message per Page due for a read."""
    before = (now or datetime.now(UTC)) - RECONCILE_EVERY
    due, queued = queues.send_paged(
        get_settings().lead_reconcile_queue_url,
        lambda conn, after: pages_store.due_pages(conn, before, after, DUE_PAGE),
        lambda tenant_id, page_id: {"tenant_id": tenant_id, "page_id": page_id, "reason": "due"},
        DUE_PAGE)
    summary = {"due": due, "queued": queued, "failed": due - queued}
    metrics.add_metric(name="LeadPagesQueued", unit="Count", value=queued)
    logger.info("lead_reconcile_planned", extra=summary)
    return summary


def _out_of_time(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() > deadline - STOP_BEFORE_DEADLINE_SECONDS


def reconcile_page(tenant_id: str, page_id: str, *, deadline: float | None = None,
                   since: datetime | None = None) -> dict[str, Any]:
    """Read the Page's forms for leads created after `since` (default: its last complete read
    minus the overlap; 90 days for a Page never read) and store the missing ones. Counts:
    forms, read, stored (new rows), complete (the Page's time moved)."""
    started = datetime.now(UTC)
    counts: Counter[str] = Counter()
    with tenant_tx(tenant_id) as conn:
        page = pages_store.get(conn, page_id)
    if page is None or page.status != "active":
        return {"forms": 0, "read": 0, "stored": 0, "complete": False, "error": None,
                "skipped": True}
    if since is None:
        overlap = timedelta(minutes=get_settings().lead_reconcile_overlap_minutes)
        since = (page.reconciled_at - overlap if page.reconciled_at
                 else started - timedelta(days=IMPORT_DAYS))
    filtering = json.dumps([{"field": "time_created", "operator": "GREATER_THAN",
                             "value": int(since.timestamp())}])
    complete = False
    error = None
    from shared.platform.crypto import TokenDecryptError  # on use (cold start)

    try:
        token = page.token()
    except TokenDecryptError:
        page_lost(tenant_id, page_id, "page_token_undecryptable")
        return {"forms": 0, "read": 0, "stored": 0, "complete": False,
                "error": "page_token_undecryptable"}
    try:
        with graph_for(token, deadline) as graph:
            forms = [f for f in graph.paginate(f"{page_id}/leadgen_forms",
                                               {"fields": "id,name", "limit": PAGE_SIZE})
                     if isinstance(f, dict) and str(f.get("id") or "").isdigit()]
            for form in forms:
                counts["forms"] += 1
                if _read_form(graph, page, str(form["id"]), filtering, counts, deadline):
                    break
            else:
                complete = True
    except MetaError as exc:
        # What was stored stays; the Page's time does not move, so the next run reads again.
        error = failure_reason(exc)
        if isinstance(exc, MetaTokenInvalid):
            page_lost(tenant_id, page_id, error)
        logger.warning("lead_reconcile_failed", extra={"tenant_id": tenant_id,
                                                       "page_id": page_id, "reason": error})
    if complete:
        with tenant_tx(tenant_id) as conn:
            pages_store.mark_reconciled(conn, page_id, started)
    summary = {"forms": counts["forms"], "read": counts["read"], "stored": counts["stored"],
               "complete": complete, "error": error}
    metrics.add_metric(name="LeadsReconciled", unit="Count", value=counts["stored"])
    logger.info("lead_page_reconciled", extra={"tenant_id": tenant_id, "page_id": page_id,
                                               **summary})
    return summary


def _read_form(graph: Any, page: pages_store.StoredPage, form_id: str, filtering: str,
               counts: Counter, deadline: float | None) -> bool:
    """Store the form's leads that are missing; True when time ran out."""
    params = {"fields": f"id,{LEAD_FIELDS}", "filtering": filtering, "limit": PAGE_SIZE}
    batch: list[dict[str, Any]] = []
    for raw in graph.paginate(f"{form_id}/leads", params):
        if isinstance(raw, dict) and str(raw.get("id") or "").isdigit():
            batch.append(raw)
        if len(batch) >= PAGE_SIZE:
            _store_missing(page, form_id, batch, counts)
            batch = []
        if _out_of_time(deadline):
            _store_missing(page, form_id, batch, counts)
            return True
    _store_missing(page, form_id, batch, counts)
    return False


def _store_missing(page: pages_store.StoredPage, form_id: str, batch: list[dict[str, Any]],
                   counts: Counter) -> None:
    if not batch:
        return
    counts["read"] += len(batch)
    with tenant_tx(page.tenant_id) as conn:
        stored = leads_store.stored_leadgen_ids(conn, [str(raw["id"]) for raw in batch])
    for raw in batch:
        leadgen_id = str(raw["id"])
        if leadgen_id in stored:
            continue
        _lead_id, new = store_raw(page, raw, leadgen_id, form_id)
        counts["stored"] += int(new)


def reconcile_batch(event: dict[str, Any], context: Any, deadline: float | None,
                    wake: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """The consumer: each queued Page read within this invocation's time. A read that Meta
    interrupted, or that ran out of time, keeps what it stored and leaves the Page's time as it
    was: the next hourly run reads it again, so the record is done either way (only an error
    of ours, e.g. the database, fails it for SQS to deliver again)."""
    totals: Counter[str] = Counter()

    async def handle(body: dict[str, Any]) -> None:
        request = ReconcileRequest.model_validate(body)
        # In this thread: one database connection (template.yaml's BatchSize is 1).
        summary = reconcile_page(request.tenant_id, request.page_id, deadline=deadline)
        totals["pages"] += 1
        totals["stored"] += summary["stored"]
        totals["incomplete"] += int(not summary["complete"])
        if summary["stored"] and wake is not None:
            wake(request.tenant_id)

    response = queues.consume(event, context, handle)
    logger.info("lead_reconcile_finished", extra=dict(totals))
    return response

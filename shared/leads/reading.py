"""Reading one lead from Meta with its Page's token, and storing it once.

A read either stores the lead (one row per leadgen_id), or is counted as a failed attempt with
its reason. Meta's refusals that a retry cannot change (the lead is gone, the token lost access)
end the read at once; a hiccup or throttling is retried by the queue until
LEAD_READ_MAX_ATTEMPTS, after which the read is recorded as failed. Either way the
`lead_reads` row says what happened: a lead that cannot be read is recorded, never lost, and a
reconciliation run that later reads the Page's forms stores it when Meta serves it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.leads import leads_store, pages_store
from shared.leads.parsing import parse_lead
from shared.meta.errors import (
    MetaError,
    MetaPermissionDenied,
    MetaRateLimited,
    MetaRequestError,
    MetaTokenInvalid,
)
from shared.platform.db import tenant_tx
from shared.platform.observability import logger, metrics
from shared.platform.settings import get_settings

if TYPE_CHECKING:
    from shared.meta.graph import GraphClient

LEAD_FIELDS = "created_time,field_data,ad_id,adset_id,campaign_id,form_id,is_organic,platform"


class ReadRetry(Exception):
    """The read failed for now and has attempts left: the queue delivers it again."""


@dataclass(frozen=True)
class ReadOutcome:
    state: str  # stored | failed | skipped (already stored)
    new: bool = False


def failure_reason(error: MetaError) -> str:
    """Our words for a failed read: the kind, and Meta's code and subcode when there are."""
    if isinstance(error, MetaTokenInvalid):
        kind = "page_token_invalid"
    elif isinstance(error, MetaRateLimited):
        kind = "meta_rate_limited"
    elif isinstance(error, (MetaPermissionDenied, MetaRequestError)):
        kind = "meta_refused"
    else:
        kind = "meta_unavailable"
    codes = "_".join(str(c) for c in (error.code, error.subcode) if c is not None)
    return f"{kind}:{codes}" if codes else kind


def graph_for(token: str, deadline: float | None) -> GraphClient:
    from shared.meta.graph import GraphClient  # on use (cold start)

    return GraphClient.for_token(token, deadline,
                                 timeout=get_settings().lead_read_timeout_seconds)


def store_raw(page: pages_store.StoredPage, raw: dict[str, Any], leadgen_id: str,
              form_id: str | None = None) -> tuple[str, bool]:
    """Parse Meta's lead and store it with its read record, in one transaction."""
    lead = parse_lead(raw, leadgen_id=leadgen_id, page_id=page.page_id,
                      default_country=page.default_country, form_id=form_id)
    with tenant_tx(page.tenant_id) as conn:
        lead_id, new = leads_store.insert_lead(conn, page.tenant_id, lead)
        leads_store.mark_stored(conn, page.tenant_id, leadgen_id, page.page_id, lead.form_id,
                                lead_id)
    if new:
        metrics.add_metric(name="LeadsStored", unit="Count", value=1)
    return lead_id, new


def page_lost(tenant_id: str, page_id: str, reason: str) -> None:
    """The Page's token no longer works: its notifications stop being read until a connect
    again (which re-imports what was missed)."""
    with tenant_tx(tenant_id) as conn:
        if pages_store.mark_needs_reconnect(conn, page_id, reason):
            metrics.add_metric(name="LeadPagesNeedReconnect", unit="Count", value=1)
    logger.warning("lead_page_needs_reconnect", extra={"tenant_id": tenant_id,
                                                       "page_id": page_id, "reason": reason})


def _fail(tenant_id: str, page_id: str, leadgen_id: str, reason: str, *, final: bool
          ) -> ReadOutcome:
    settings = get_settings()
    with tenant_tx(tenant_id) as conn:
        state = leads_store.mark_attempt(conn, tenant_id, leadgen_id, page_id, reason,
                                         final=final, max_attempts=settings.lead_read_max_attempts)
    logger.warning("lead_read_failed", extra={"tenant_id": tenant_id, "leadgen_id": leadgen_id,
                                              "reason": reason, "state": state})
    if state == "failed":
        metrics.add_metric(name="LeadReadsFailed", unit="Count", value=1)
        return ReadOutcome("failed")
    if state == "stored":  # another read stored it meanwhile
        return ReadOutcome("skipped")
    raise ReadRetry(reason)


def read_lead(tenant_id: str, page_id: str, leadgen_id: str, form_id: str | None = None, *,
              deadline: float | None = None) -> ReadOutcome:
    """Read and store one announced lead. Raises ReadRetry when the queue should try again."""
    with tenant_tx(tenant_id) as conn:
        record = leads_store.read_state(conn, leadgen_id)
        page = pages_store.get(conn, page_id)
    if record is not None and record["state"] == "stored":
        return ReadOutcome("skipped")
    if page is None or page.status != "active":
        return _fail(tenant_id, page_id, leadgen_id, "page_not_connected", final=True)
    from shared.platform.crypto import TokenDecryptError  # on use (cold start)

    try:
        token = page.token()
    except TokenDecryptError:
        page_lost(tenant_id, page_id, "page_token_undecryptable")
        return _fail(tenant_id, page_id, leadgen_id, "page_token_undecryptable", final=True)
    try:
        with graph_for(token, deadline) as graph:
            raw = graph.get(leadgen_id, {"fields": LEAD_FIELDS})
    except MetaTokenInvalid as exc:
        page_lost(tenant_id, page_id, failure_reason(exc))
        return _fail(tenant_id, page_id, leadgen_id, failure_reason(exc), final=True)
    except (MetaPermissionDenied, MetaRequestError) as exc:
        return _fail(tenant_id, page_id, leadgen_id, failure_reason(exc), final=True)
    except MetaError as exc:  # transient or throttled: the queue tries again
        return _fail(tenant_id, page_id, leadgen_id, failure_reason(exc), final=False)
    if not isinstance(raw, dict):
        return _fail(tenant_id, page_id, leadgen_id, "meta_unreadable_answer", final=False)
    _lead_id, new = store_raw(page, raw, leadgen_id, form_id)
    return ReadOutcome("stored", new=new)

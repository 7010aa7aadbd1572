"""Keeping templates current without any send waiting for Meta.

Meta's template status webhooks apply each change as it happens (shared.whatsapp.webhook); a
template new to us marks its sender's list stale. This periodic refresh catches what webhooks
missed, fanned out like the dispatcher: a planner (every 15 minutes) queues one SQS message per
sender whose list is stale or older than MAX_AGE, and the template_sync worker re-reads those
lists from Meta. At most one read per WABA an hour stays far inside Meta's 200 calls an hour per
WABA for management endpoints (META_API.md §8).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.platform import queues
from shared.platform.db import system_tx
from shared.platform.errors import AppError
from shared.platform.observability import logger, metrics
from shared.platform.settings import get_settings
from shared.whatsapp.templates import ensure_fresh_templates

MAX_AGE = timedelta(hours=1)


class TemplateSyncRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tenant_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")


def plan_template_sync() -> dict[str, int]:
    """Queue every sender whose templates are due for a read; ids only."""
    with system_tx() as conn:
        due = [r["tenant_id"] for r in conn.execute(
            "SELECT whatsapp_templates_due(%s) AS tenant_id",
            (datetime.now(UTC) - MAX_AGE,)).fetchall()]
    queued = queues.send(get_settings().template_sync_queue_url,
                         [{"tenant_id": tenant_id} for tenant_id in due])
    summary = {"due": len(due), "queued": len(queued), "failed": len(due) - len(queued)}
    metrics.add_metric(name="TemplateSyncsQueued", unit="Count", value=len(queued))
    logger.info("template_sync_planned", extra=summary)
    return summary


def refresh_batch(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The worker: re-read each queued sender's templates unless a webhook or another worker
    did since it was queued. A sender that is gone or disconnected has nothing to refresh;
    when Meta throttles or fails, the stored list stays and the next plan queues it again."""

    async def handle(body: dict[str, Any]) -> None:
        request = TemplateSyncRequest.model_validate(body)
        await asyncio.to_thread(_refresh, request.tenant_id)

    return queues.consume(event, context, handle)


def _refresh(tenant_id: str) -> None:
    try:
        ensure_fresh_templates(tenant_id, max_age=MAX_AGE)
    except AppError as exc:  # not connected, or the token needs a reconnect: nothing to do
        logger.info("template_sync_skipped", extra={"tenant_id": tenant_id, "reason": exc.code})

"""Campaign sync fanned out through SQS: the hourly planner queues every account due for a sync,
and the campaign_sync worker syncs each in its own invocation, at most the queue's maximum
concurrency at once (template.yaml). A connect puts MetaAdAccountConnected on the bus, whose rule
queues the same message for the new account.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.ads import store
from shared.ads.accounts import normalize_account_id
from shared.ads.sync import RESYNC_AFTER, sync_account
from shared.platform import queues
from shared.platform.observability import logger, metrics
from shared.platform.settings import get_settings

DUE_PAGE = 1000  # due accounts read (and queued) per page


class SyncRequest(BaseModel):
    """A campaign-sync queue message: from the schedule's planner ("due"), or from EventBridge's
    MetaAdAccountConnected rule, whose input transformer writes the same fields ("connected")."""

    model_config = ConfigDict(extra="ignore")

    tenant_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    account_id: str
    reason: Literal["due", "connected"] = "due"

    @field_validator("account_id")
    @classmethod
    def _account_id(cls, value: str) -> str:
        return normalize_account_id(value)


def enqueue_due_syncs() -> dict[str, int]:
    """Find every account due for a sync (ids only, a page at a time) and queue one message per
    account: each syncs in its own worker invocation, at most the queue's maximum concurrency
    at once (template.yaml), however many are due."""
    synced_before = datetime.now(UTC) - RESYNC_AFTER
    due, queued = queues.send_paged(
        get_settings().campaign_sync_queue_url,
        lambda conn, after: store.due_accounts(conn, synced_before, after, DUE_PAGE),
        lambda tenant_id, account_id: {"tenant_id": tenant_id, "account_id": account_id,
                                       "reason": "due"},
        DUE_PAGE)
    summary = {"due": due, "queued": queued, "failed": due - queued}
    logger.info("campaign_sync_scheduled", extra=summary)
    metrics.add_metric(name="CampaignSyncsQueued", unit="Count", value=queued)
    return summary


def sync_batch(event: dict[str, Any], context: Any, deadline: float) -> dict[str, Any]:
    """The worker: each queued account synced within this invocation's time. A run that raised
    fails its record alone (SQS retries it); every outcome the sync decides itself (throttled,
    not connected, already running...) is recorded on the account, and the record is done."""

    async def handle(body: dict[str, Any]) -> None:
        request = SyncRequest.model_validate(body)
        await asyncio.to_thread(sync_account, request.tenant_id, request.account_id,
                                deadline=deadline, due_only=request.reason == "due")

    return queues.consume(event, context, handle)

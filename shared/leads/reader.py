"""The lead reader: Lambda's SQS batch from the lead-read queue, one announced lead per message.

Each message is read and stored (shared.leads.reading). A read with attempts left fails its
record alone, so SQS delivers it again after the visibility timeout; every other outcome
(stored, already stored, recorded as failed) is done. A message delivered twice stores nothing
twice: one row per leadgen_id. After each new lead, `wake(tenant_id)` tells the tenant's HSM
work that a lead is waiting (the handler passes shared.hsm's wake-up: this package cannot import
hsm). Records run one after another on one database connection.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.leads.reading import ReadRetry, read_lead
from shared.platform import queues
from shared.platform.observability import logger

MetaId = Field(pattern=r"^\d{1,32}$")


class LeadReadRequest(BaseModel):
    """A lead-read queue message, written by the webhook (shared.leads.notifications)."""

    model_config = ConfigDict(extra="ignore")

    tenant_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    page_id: str = MetaId
    leadgen_id: str = MetaId
    form_id: str | None = Field(default=None, pattern=r"^\d{1,32}$")
    reason: str = Field(default="webhook", max_length=32)


def read_batch(event: dict[str, Any], context: Any, deadline: float | None,
               wake: Callable[[str], Any] | None = None) -> dict[str, Any]:
    counts: Counter[str] = Counter()

    async def handle(body: dict[str, Any]) -> None:
        request = LeadReadRequest.model_validate(body)
        try:
            outcome = read_lead(request.tenant_id, request.page_id, request.leadgen_id,
                                request.form_id, deadline=deadline)
        except ReadRetry:
            counts["retried"] += 1
            raise
        counts[outcome.state] += 1
        if outcome.new:
            counts["new"] += 1
            if wake is not None:
                wake(request.tenant_id)

    response = queues.consume(event, context, handle)
    failed = len(response.get("batchItemFailures") or [])
    logger.info("lead_reader_finished", extra={**counts, "failed_records": failed})
    return response

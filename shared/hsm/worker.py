"""The dispatch worker: an SQS batch of tenants with due work (from the planner, a continuation,
or a freshly stored lead), run side by side until the invocation's deadline.

Each message names one tenant. Its run keeps every guarantee of the dispatcher (shared.hsm.
dispatch): one run per tenant at a time under its lease, pacing at the number's cap, at most one
send per (rule, lead) through the claim ledger. So a message delivered twice, or to two workers
at once, sends nothing twice: the second finds the lease held, or nothing due, and lets go.

A tenant whose backlog outlasts the invocation is queued again at once (a continuation), after
its lease is given back, so the next worker can take it. A run that raised fails its record
alone: SQS delivers it again after the visibility timeout, and dead-letters it after the
queue's maxReceiveCount.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.hsm.dispatch import Dispatcher, TenantResult, emit_message_metrics, total
from shared.hsm.planner import dispatch_message
from shared.hsm.tenant_run import DispatchHooks
from shared.platform import queues
from shared.platform.observability import logger, metrics
from shared.platform.settings import get_settings


class DispatchRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tenant_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    reason: str = Field(default="due", max_length=32)


def work_batch(event: dict[str, Any], context: Any, deadline: float, *,
               hooks: DispatchHooks | None = None) -> dict[str, Any]:
    """Lambda's SQS batch event -> {"batchItemFailures": [...]}; logs the batch's counts."""
    dispatcher = Dispatcher(deadline, hooks)
    results: list[TenantResult] = []

    async def handle(body: dict[str, Any]) -> None:
        request = DispatchRequest.model_validate(body)
        result = await dispatcher.dispatch(request.tenant_id)
        results.append(result)
        if result.error is not None:
            raise result.error  # this record alone fails: SQS delivers it again later

    response = queues.consume(event, context, handle)
    continued = _continue(results)
    summary, statuses = total(results)
    emit_message_metrics(statuses)
    failures = len(response.get("batchItemFailures") or [])
    logger.info("hsm_worker_finished", extra={
        **summary.as_dict(), "tenants": len(results), "continued": continued,
        "failed_records": failures, "statuses": dict(statuses)})
    return response


def _continue(results: list[TenantResult]) -> int:
    """Queue again, now, the tenants whose time ran out with work left."""
    left = [r.tenant_id for r in results if r.backlog_left]
    if not left:
        return 0
    queued = queues.send(get_settings().hsm_dispatch_queue_url,
                         [dispatch_message(t, "continuation") for t in left])
    if len(queued) < len(left):
        # Not lost: the tenant's work stays due, and the next plan (a minute away) finds it.
        logger.warning("hsm_continuation_not_queued", extra={"tenants": len(left) - len(queued)})
    metrics.add_metric(name="HsmContinuations", unit="Count", value=len(queued))
    return len(queued)

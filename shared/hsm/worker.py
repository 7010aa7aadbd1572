"""The dispatch worker: an SQS batch of tenants with due work (from the planner, a continuation,
or a freshly stored lead), run side by side until the invocation's deadline.

Each message names one tenant. Its run keeps every guarantee of the dispatcher (shared.hsm.
dispatch): one run per tenant at a time under its lease, pacing at the number's cap, at most one
send per (rule, lead) through the claim ledger. So a message delivered twice, or to two workers
at once, sends nothing twice: the second finds the lease held, or nothing due, and lets go.

A tenant whose backlog outlasts the invocation is queued again at once (a continuation), after
its lease is given back, so the next worker can take it; so is a tenant that a wake (a stored
lead) reached while its run held the lease (shared.hsm.leases). A run that leaves a lead of a
delayed lead_created rule due within 15 minutes queues a wake for that moment (SQS DelaySeconds);
later ones, and any wake lost, are the planner's, a minute at most after they fall due.
A run that raised fails its record alone: SQS delivers it again after the visibility timeout,
and dead-letters it after the queue's maxReceiveCount.
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
    seen: set[str] = set()

    async def handle(body: dict[str, Any]) -> None:
        request = DispatchRequest.model_validate(body)
        # Wakes come in bursts: a batch may name a tenant twice. One run serves them all (it
        # starts after every message of the batch was sent); a second run under the same
        # invocation's lease would give back the first's reservations as it ended.
        if request.tenant_id in seen:
            return
        seen.add(request.tenant_id)
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
    """Queue again, now, the tenants whose time ran out with work left or that a wake reached
    mid-run; and, later, those with a delayed lead falling due soon."""
    url = get_settings().hsm_dispatch_queue_url
    now = [dispatch_message(r.tenant_id, "continuation" if r.backlog_left else "wake")
           for r in results if r.backlog_left or r.woken]
    later: dict[int, list[dict[str, str]]] = {}
    for r in results:
        if r.wake_in is not None and not (r.backlog_left or r.woken):
            later.setdefault(r.wake_in, []).append(dispatch_message(r.tenant_id, "lead_due"))
    wanted = len(now) + sum(len(bodies) for bodies in later.values())
    queued = len(queues.send(url, now)) if now else 0
    for delay, bodies in later.items():
        queued += len(queues.send(url, bodies, delay_seconds=delay))
    if queued < wanted:
        # Not lost: the tenant's work stays due, and the next plan (a minute away) finds it.
        logger.warning("hsm_continuation_not_queued", extra={"tenants": wanted - queued})
    metrics.add_metric(name="HsmContinuations", unit="Count", value=len(now))
    return queued

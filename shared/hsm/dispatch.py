"""The HSM dispatcher: every enabled `lead_followup` rule's template, once per lead, at the
sender's throughput cap. No HTTP edge here.

Who runs it: every minute the planner (shared.hsm.planner, functions/hsm_dispatch) queues one
SQS message per tenant with due work; dispatch workers (shared.hsm.worker, functions/hsm_worker)
run the tenants of a batch side by side with `dispatch_tenants`. `run_dispatch` is the same
work in one call for given tenants (tests, and the bench's single-invocation baseline).

Per tenant (= per phone number), under a lease so overlapping runs never pace one number twice:

1. Recover: permitted sends that never got a result time out to UNKNOWN (never re-sent);
   reservations of dead runs are released. A tenant with nothing due stops here, before its
   token is decrypted. Templates are read as stored, never fetched on the way to a send.
   (shared.hsm.planning)
2. For each rule inside its send window: a template that is not APPROVED gets its eligible leads
   logged SKIPPED with the reason. Otherwise the producer reserves batches (released rows due for
   another attempt first, then new eligible leads) within the messaging tier's 24-hour budget.
   (shared.hsm.reserving)
3. The sender permits reserved rows in small chunks (the permit is what makes a send
   at-most-once: shared.hsm.claims), then releases them to Meta through a token bucket just
   under the cap, with up to rate x latency requests in flight (shared.hsm.sending, .pacing).
4. Results are written in small batches; each error class decides the row's fate and whether the
   rule or the tenant stops (shared.hsm.recording, .outcomes).
5. When time runs short it stops claiming, lets sends in flight finish, and releases what it
   reserved but never sent (shared.hsm.tenant_run).

DB work runs on a few threads (shared.hsm.threads; each with its own connection, every
statement inside tenant_tx), so the event loop keeps sending while claims and results are
written. An unexpected error in a tenant's run winds it down the same careful way (in-flight
sends finish and are recorded, unsent reservations released); only a hard kill leaves rows
behind, and those are recovered by step 1 of a later run.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from shared.hsm.tenant_run import (
    DispatchHooks,
    DispatchSummary,
    TenantDispatch,
    send_reserve_seconds,
)
from shared.hsm.threads import container_threads
from shared.platform.observability import logger, metrics

CONCURRENT_TENANTS = 10  # numbers paced side by side (a worker's whole batch); each has its own cap
MIN_TENANT_SECONDS = 2.0  # don't start a tenant with less sending time than this


@dataclass
class TenantResult:
    tenant_id: str
    summary: DispatchSummary = field(default_factory=DispatchSummary)
    statuses: Counter[str] = field(default_factory=Counter)
    backlog_left: bool = False  # its time ran out (or never came) with work left: run it now
    error: Exception | None = None  # the run failed (after winding down): retry it later
    woken: bool = False  # a wake came while it ran (shared.hsm.leases): run it again now
    wake_in: int | None = None  # a delayed lead falls due in this many seconds: wake it then


class Dispatcher:
    """The tenants of one invocation, at most CONCURRENT_TENANTS at a time, on shared threads."""

    def __init__(self, deadline: float, hooks: DispatchHooks | None = None) -> None:
        self.deadline = deadline
        self.hooks = hooks or DispatchHooks()
        self.run_id = uuid.uuid4()
        self.threads = container_threads()
        self._gate: asyncio.Semaphore | None = None

    async def dispatch(self, tenant_id: str) -> TenantResult:
        """One tenant's run. A run that raised has wound down first (results stored, unsent
        reservations released, lease given back); its result carries the error and what it
        did before it."""
        if self._gate is None:
            self._gate = asyncio.Semaphore(CONCURRENT_TENANTS)
        async with self._gate:
            # Sends stop at the soft deadline (a send's timeout before the end): don't start a
            # tenant that would have almost no time to send.
            if self.deadline - time.monotonic() < send_reserve_seconds() + MIN_TENANT_SECONDS:
                return TenantResult(tenant_id, backlog_left=True)
            job = TenantDispatch(tenant_id, self.run_id, self.deadline, self.hooks, self.threads)
            try:
                await job.run()
            except Exception as exc:
                logger.exception("hsm_dispatch_tenant_failed", extra={"tenant_id": tenant_id})
                metrics.add_metric(name="HsmDispatchErrors", unit="Count", value=1)
                return TenantResult(tenant_id, job.summary, job.statuses, error=exc,
                                    woken=job.lease_end.woken)
            return TenantResult(tenant_id, job.summary, job.statuses,
                                backlog_left=job.backlog_left, woken=job.lease_end.woken,
                                wake_in=job.lease_end.wake_in)


def total(results: list[TenantResult]) -> tuple[DispatchSummary, Counter[str]]:
    summary, statuses = DispatchSummary(), Counter()
    for result in results:
        summary.add(result.summary)
        statuses.update(result.statuses)
    return summary, statuses


def emit_message_metrics(statuses: Counter[str]) -> None:
    """HsmMessagesSent by status: the HSM failure-rate alarm's inputs (template.yaml)."""
    for status, count in sorted(statuses.items()):
        if not count:
            continue
        with single_metric(name="HsmMessagesSent", unit=MetricUnit.Count, value=count,
                           namespace=metrics.namespace,
                           default_dimensions=metrics.default_dimensions) as metric:
            metric.add_dimension(name="status", value=status)


def run_dispatch(deadline: float, tenant_ids: list[str], *,
                 hooks: DispatchHooks | None = None) -> DispatchSummary:
    """These tenants in one invocation, until `deadline` (time.monotonic()). A tenant whose run
    fails is logged and counted and the others go on. Running it twice at once, or for a
    tenant another worker is serving, sends nothing twice."""
    dispatcher = Dispatcher(deadline, hooks)

    async def every() -> list[TenantResult]:
        return await asyncio.gather(*(dispatcher.dispatch(t) for t in dict.fromkeys(tenant_ids)))

    results = asyncio.run(every())
    summary, statuses = total(results)
    emit_message_metrics(statuses)
    logger.info("hsm_dispatch_finished", extra={**summary.as_dict(), "tenants": len(results)})
    return summary

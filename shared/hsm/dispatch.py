"""The HSM dispatcher: every enabled `lead_followup` rule's template, once per lead, at the
sender's throughput cap (issue 6, part B). No HTTP edge here; functions/hsm_dispatch calls
`run_dispatch`.

Per tenant (= per phone number), under a lease so overlapping runs never pace one number twice:

1. Recover: permitted sends that never got a result time out to UNKNOWN (never re-sent);
   reservations of dead runs are released. Templates are refreshed when older than 15 minutes.
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

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from shared.hsm import claims
from shared.hsm.tenant_run import (
    DispatchHooks,
    DispatchSummary,
    TenantDispatch,
    send_reserve_seconds,
)
from shared.hsm.threads import RunThreads
from shared.platform.db import system_tx
from shared.platform.observability import logger, metrics

CONCURRENT_TENANTS = 8  # numbers paced side by side; each has its own cap at Meta
MIN_TENANT_SECONDS = 2.0  # don't start a tenant with less sending time than this


async def _dispatch_tenants(tenants: list[str], run_id: uuid.UUID, deadline: float,
                            hooks: DispatchHooks, threads: RunThreads
                            ) -> tuple[DispatchSummary, Counter[str]]:
    gate = asyncio.Semaphore(CONCURRENT_TENANTS)
    send_margin = send_reserve_seconds()
    total = DispatchSummary()
    statuses: Counter[str] = Counter()

    async def one(tenant_id: str) -> None:
        async with gate:
            # Sends stop at the soft deadline (a send's timeout before the end): don't start a
            # tenant that would have almost no time to send.
            if deadline - time.monotonic() < send_margin + MIN_TENANT_SECONDS:
                return
            job = TenantDispatch(tenant_id, run_id, deadline, hooks, threads)
            try:
                await job.run()
            except Exception:
                logger.exception("hsm_dispatch_tenant_failed", extra={"tenant_id": tenant_id})
                metrics.add_metric(name="HsmDispatchErrors", unit="Count", value=1)
            total.add(job.summary)
            statuses.update(job.statuses)

    await asyncio.gather(*(one(t) for t in tenants))
    return total, statuses


def run_dispatch(deadline: float, *, tenant_ids: list[str] | None = None,
                 hooks: DispatchHooks | None = None) -> DispatchSummary:
    """One scheduled run over every tenant with work (or only `tenant_ids`), until `deadline`
    (time.monotonic()). Running it twice at once, or on a duplicated event, sends nothing twice.
    """
    run_id = uuid.uuid4()
    with system_tx() as conn:
        tenants = claims.dispatch_tenants(conn)
    if tenant_ids is not None:
        wanted = set(tenant_ids)
        tenants = [t for t in tenants if t in wanted]
    threads = RunThreads()
    try:
        summary, statuses = asyncio.run(
            _dispatch_tenants(tenants, run_id, deadline, hooks or DispatchHooks(), threads))
    finally:
        threads.close()
    for status, count in sorted(statuses.items()):
        if not count:
            continue
        with single_metric(name="HsmMessagesSent", unit=MetricUnit.Count, value=count,
                           namespace=metrics.namespace) as metric:
            metric.add_dimension(name="status", value=status)
    logger.info("hsm_dispatch_finished", extra={**summary.as_dict(), "tenants": len(tenants)})
    return summary

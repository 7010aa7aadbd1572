"""One tenant's dispatch run: producer (reservations) -> sender (permit, pace, send) -> flusher
(results), and the careful wind-down that stores every result and gives back what was reserved
but never sent. The three parts live in shared.hsm.reserving, .sending and .recording."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.connection.session import record_token_invalid
from shared.hsm import claims, leases
from shared.hsm.claims import Result
from shared.hsm.leases import LeaseEnd
from shared.hsm.outcomes import Outcome
from shared.hsm.pacing import TokenBucketPacer, in_flight_bound, pacing_rate
from shared.hsm.planning import TenantPlan, prepare_tenant
from shared.hsm.recording import Recording
from shared.hsm.reserving import QUEUE_END, Reserving
from shared.hsm.sending import Sending
from shared.hsm.threads import RunThreads
from shared.meta.errors import MetaError
from shared.platform.db import tenant_tx
from shared.platform.observability import logger
from shared.platform.settings import get_settings

PERMIT_SECONDS = 0.05  # a permit chunk covers this much sending (at most 50 rows)
RESERVE_SECONDS = 2.0  # a reservation batch covers this much sending (20..1000 rows)


@dataclass
class DispatchSummary:
    rules: int = 0
    sent: int = 0
    failed: int = 0  # FAILED and UNKNOWN results of this run
    skipped: int = 0  # SKIPPED rows written by this run

    def add(self, other: DispatchSummary) -> None:
        self.rules += other.rules
        self.sent += other.sent
        self.failed += other.failed
        self.skipped += other.skipped

    def as_dict(self) -> dict[str, int]:
        return {"rules": self.rules, "sent": self.sent, "failed": self.failed,
                "skipped": self.skipped}


@dataclass
class DispatchHooks:
    """Test seams. `after_result(n)` runs once the n-th send result of a tenant's run is known
    (kept in memory, not stored yet); raising there is a crash at that point. `on_send(t)` is
    told the time.monotonic() at which each send leaves for Meta (the pacer's departures)."""

    after_result: Callable[[int], None] | None = None
    on_send: Callable[[float], None] | None = None


def send_reserve_seconds() -> float:
    """No send starts later than this before the deadline: its answer must still fit."""
    return get_settings().meta_timeout_seconds + 1.0


class TenantDispatch(Reserving, Sending, Recording):
    """Producer (reservations) -> sender (permit, pace, send) -> flusher (results)."""

    def __init__(self, tenant_id: str, run_id: uuid.UUID, deadline: float,
                 hooks: DispatchHooks, threads: RunThreads) -> None:
        self.tenant_id = tenant_id
        self.threads = threads
        self.run_id = run_id
        self.deadline = deadline
        self.soft_deadline = deadline - send_reserve_seconds()
        self.hooks = hooks
        self.summary = DispatchSummary()
        self.statuses: Counter[str] = Counter()
        self.plan: TenantPlan | None = None
        self.failure: BaseException | None = None  # first error of a send task or the producer
        self.stop_reason: str | None = None  # tenant-wide stop (token, account, throttling)
        self.stopped_rules: set[str] = set()
        self.token_error: MetaError | None = None
        self.closing = False
        self.tier_reached = False
        self.cut_short = False  # time ran out before every rule's work was reserved
        self.unsent: list[str] = []  # reserved (maybe permitted) but never handed to Meta
        self.results: list[Result] = []
        self.result_count = 0
        self.tasks: set[asyncio.Task] = set()
        self.producer: asyncio.Task | None = None
        self.flusher: asyncio.Task | None = None
        self.prefetch: asyncio.Task | None = None
        self.done_seen = False
        self.first_send: float | None = None
        self.last_send: float | None = None
        self.lease_end = LeaseEnd()  # what letting go of the lease said (wakes to queue)

    # -- lifecycle ------------------------------------------------------------------------------
    async def run(self) -> DispatchSummary:
        self.plan, self.lease_end = await self.threads.run(prepare_tenant, self.tenant_id,
                                                           self.run_id, self.deadline)
        if self.plan is None:
            return self.summary
        self.rules = {p.rule.id: p for p in self.plan.rules}
        cap = self.plan.sender.max_per_second
        rate = pacing_rate(cap)
        bound = in_flight_bound(rate)
        self.pacer = TokenBucketPacer.for_cap(cap)
        self.slots = asyncio.Semaphore(bound)
        self.chunk_size = max(1, min(50, math.ceil(rate * PERMIT_SECONDS)))
        self.batch_size = max(20, min(1000, int(rate * RESERVE_SECONDS)))
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=self.batch_size * 2)
        self.flush_now = asyncio.Event()
        self.flush_lock = asyncio.Lock()
        import httpx  # on use: a run without a tenant to send for never loads it (cold start)

        from shared.meta.graph import AsyncGraphClient

        self.graph = AsyncGraphClient.for_token(
            self.plan.token, deadline=self.deadline,
            max_attempts=1,  # a second attempt only ever comes from a later re-claim
            limits=httpx.Limits(max_connections=bound, max_keepalive_connections=bound))
        self.summary.rules = len(self.plan.rules)
        started = time.monotonic()
        try:
            await self._pump()
        except Exception:
            try:
                await self._wind_down()
            finally:
                await self.graph.aclose()
            raise
        # (Anything that is not an Exception, like a simulated hard kill, leaves right away.)
        try:
            await self._wind_down()
        finally:
            await self.graph.aclose()
        self._log_finished(time.monotonic() - started)
        return self.summary

    async def _pump(self) -> None:
        self.producer = asyncio.create_task(self._produce())
        self.flusher = asyncio.create_task(self._flush_periodically())
        self.prefetch = asyncio.create_task(self._next_chunk())
        while True:
            chunk = await self.prefetch
            if chunk is None:
                break
            # Permit the next chunk while this one is being paced out.
            self.prefetch = asyncio.create_task(self._next_chunk())
            for claim in chunk:
                await self._launch(claim)
        self._raise_hard_failure()
        if self.failure is not None:
            raise self.failure

    async def _wind_down(self) -> None:
        """Stop claiming, finish what is in flight, store every result, give back the rest."""
        self.closing = True
        while self.producer is not None and not self.producer.done():
            self._drain_queue()
            await asyncio.wait({self.producer}, timeout=0.05)
        self._drain_queue()
        if self.prefetch is not None:
            if not self.prefetch.done():
                self.queue.put_nowait(QUEUE_END)  # it waits on an empty queue: wake it
            chunk = (await asyncio.gather(self.prefetch, return_exceptions=True))[0]
            if isinstance(chunk, list):
                self.unsent.extend(c.log_id for c in chunk)
        if self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)
        if self.flusher is not None:
            self.flush_now.set()
            await asyncio.gather(self.flusher, return_exceptions=True)
        await self._flush()
        await self.threads.run(self._finish_tx)

    def _finish_tx(self) -> None:
        with tenant_tx(self.tenant_id) as conn:
            released = claims.release(conn, self.run_id, self.unsent)
            self.lease_end = leases.let_go(conn, self.run_id)
        if released:
            logger.info("hsm_claims_released", extra={"tenant_id": self.tenant_id,
                                                      "released": released,
                                                      "reason": self._stop_label()})
        if self.token_error is not None:
            record_token_invalid(self.tenant_id, self.token_error)

    @property
    def backlog_left(self) -> bool:
        """The run ended because its time did, with work it had not reached or had reserved
        and not sent: the tenant should run again now, not at the next plan."""
        return (self._stop_label() == "deadline"
                and (self.cut_short or bool(self.unsent)))

    def _stop_label(self) -> str:
        if self.failure is not None:
            return "error"
        if self.stop_reason:
            return f"stopped_{self.stop_reason}"
        if self.tier_reached:
            return "messaging_tier_reached"
        return "deadline" if time.monotonic() >= self.soft_deadline else "done"

    # -- producer: reservations -----------------------------------------------------------------
    def _stopping(self) -> bool:
        """No more sends (and so no more claims) in this run."""
        return (self.closing or self.failure is not None or self.stop_reason is not None
                or time.monotonic() >= self.soft_deadline)


    def _raise_hard_failure(self) -> None:
        # Not an Exception (a simulated hard kill): stop dead, no cleanup, like a killed Lambda.
        if self.failure is not None and not isinstance(self.failure, Exception):
            raise self.failure

    def _drain_queue(self) -> None:
        while True:
            try:
                item = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if item is not QUEUE_END:
                self.unsent.append(item.log_id)


    def _log_finished(self, seconds: float) -> None:
        span = (self.last_send - self.first_send) if self.first_send and self.last_send else 0
        logger.info("hsm_dispatch_tenant", extra={
            "tenant_id": self.tenant_id, **self.summary.as_dict(),
            "retries": self.statuses.get(Outcome.RETRY.value, 0),
            "max_per_second": self.plan.sender.max_per_second,
            "send_rate": round(self.summary.sent / span, 1) if span > 0 else None,
            "seconds": round(seconds, 3), "stop": self._stop_label()})

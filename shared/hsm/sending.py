"""The sender of a tenant's run: permit reserved rows in small chunks (the permit is what makes a
send at-most-once, shared.hsm.claims), then hand them to Meta through the token bucket, with at
most rate x latency requests in flight."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from shared.hsm import claims
from shared.hsm.claims import Claim, Result
from shared.hsm.message import build_payload, wamid_of
from shared.hsm.outcomes import Outcome, Verdict, classify_send_error
from shared.hsm.pacing import TokenBucketPacer
from shared.hsm.planning import RulePlan, TenantPlan
from shared.hsm.reserving import QUEUE_END
from shared.hsm.threads import RunThreads
from shared.meta.errors import MetaError
from shared.platform.db import tenant_tx


class Sending:
    """Part of shared.hsm.tenant_run.TenantDispatch: the state it reads is set up there."""

    tenant_id: str
    run_id: uuid.UUID
    plan: TenantPlan
    rules: dict[str, RulePlan]
    threads: RunThreads
    queue: asyncio.Queue[Any]
    graph: Any
    pacer: TokenBucketPacer
    slots: asyncio.Semaphore
    chunk_size: int
    tasks: set[asyncio.Task]
    unsent: list[str]
    stopped_rules: set[str]
    failure: BaseException | None
    done_seen: bool
    first_send: float | None
    last_send: float | None
    result_count: int
    hooks: Any

    def _must_hold(self, claim: Claim) -> bool:
        return self._stopping() or claim.rule_id in self.stopped_rules


    async def _next_chunk(self) -> list[Claim] | None:
        if self.done_seen:
            return None
        first = await self.queue.get()
        if first is QUEUE_END:
            self.done_seen = True
            return None
        items = [first]
        while len(items) < self.chunk_size:
            try:
                item = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            if item is QUEUE_END:
                self.done_seen = True
                break
            items.append(item)
        held = [c for c in items if self._must_hold(c)]
        self.unsent.extend(c.log_id for c in held)
        wanted = [c for c in items if not self._must_hold(c)]
        if not wanted:
            return []
        allowed = await self.threads.run(self._permit_tx, [c.log_id for c in wanted])
        return [c for c in wanted if c.log_id in allowed]

    def _permit_tx(self, log_ids: list[str]) -> set[str]:
        with tenant_tx(self.tenant_id) as conn:
            return claims.permit(conn, self.run_id, log_ids)

    async def _launch(self, claim: Claim) -> None:
        self._raise_hard_failure()
        if self._must_hold(claim):
            self.unsent.append(claim.log_id)
            return
        await self.slots.acquire()
        try:
            await self.pacer.wait()
        except BaseException:
            self.slots.release()
            raise
        self._raise_hard_failure()
        if self._must_hold(claim):
            self.slots.release()
            self.unsent.append(claim.log_id)
            return
        task = asyncio.create_task(self._send(claim))
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self.failure is None:
            self.failure = task.exception()

    async def _send(self, claim: Claim) -> None:
        try:
            result, verdict, error = await self._attempt(claim)
        finally:
            self.slots.release()
        self._record(claim, result, verdict, error)
        self.result_count += 1
        if self.hooks.after_result is not None:
            self.hooks.after_result(self.result_count)

    async def _attempt(self, claim: Claim) -> tuple[Result, Verdict | None, MetaError | None]:
        plan = self.rules[claim.rule_id]
        payload = build_payload(claim, plan)
        now = time.monotonic()
        self.first_send = self.first_send or now
        self.last_send = now
        if self.hooks.on_send is not None:
            self.hooks.on_send(now)
        try:
            body = await self.graph.post(f"{self.plan.sender.phone_number_id}/messages",
                                         json=payload)
        except MetaError as exc:
            verdict = classify_send_error(exc, claim.attempts + 1)
            return (Result(claim.log_id, claim.lead_id, verdict.outcome.value,
                           error_code=verdict.code, error_message=verdict.message,
                           retry_in_seconds=verdict.retry_in_seconds, opt_out=verdict.opt_out),
                    verdict, exc)
        wamid = wamid_of(body)
        if wamid is None:
            return (Result(claim.log_id, claim.lead_id, Outcome.UNKNOWN.value,
                           error_code="no_wamid",
                           error_message="Meta answered without a message id."), None, None)
        return Result(claim.log_id, claim.lead_id, Outcome.SENT.value, wamid=wamid), None, None

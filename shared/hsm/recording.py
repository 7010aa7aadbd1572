"""The results of a tenant's run: each send's outcome counted and logged, the rule or tenant
stopped when the error says so, and results written in small idempotent batches."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from typing import Any

from shared.hsm import claims
from shared.hsm.claims import Claim, Result
from shared.hsm.outcomes import Outcome, Stop, Verdict
from shared.hsm.pacing import TokenBucketPacer
from shared.hsm.planning import RulePlan
from shared.hsm.threads import RunThreads
from shared.meta.errors import MetaError
from shared.platform.db import retry_conflicts, tenant_tx
from shared.platform.observability import logger

FLUSH_INTERVAL_SECONDS = 0.25
FLUSH_AT = 200


class Recording:
    """Part of shared.hsm.tenant_run.TenantDispatch: the state it reads is set up there."""

    tenant_id: str
    run_id: uuid.UUID
    rules: dict[str, RulePlan]
    threads: RunThreads
    pacer: TokenBucketPacer
    summary: Any
    statuses: Counter[str]
    results: list[Result]
    stopped_rules: set[str]
    stop_reason: str | None
    token_error: MetaError | None
    failure: BaseException | None
    closing: bool
    flush_now: asyncio.Event
    flush_lock: asyncio.Lock

    def _record(self, claim: Claim, result: Result, verdict: Verdict | None,
                error: MetaError | None) -> None:
        self.results.append(result)
        self.statuses[result.outcome] += 1
        if result.outcome == Outcome.SENT:
            self.summary.sent += 1
        elif result.outcome in (Outcome.FAILED, Outcome.UNKNOWN):
            self.summary.failed += 1
        logger.info("hsm_message", extra={
            "tenant_id": self.tenant_id, "rule_id": claim.rule_id, "log_id": claim.log_id,
            "template": self.rules[claim.rule_id].rule.template_name,
            "status": result.outcome, "error": result.error_code})
        if verdict is not None:
            if verdict.slow_down:
                self.pacer.slow_down()
            if verdict.stop is Stop.RULE:
                self.stopped_rules.add(claim.rule_id)
            elif verdict.stop is Stop.TENANT and self.stop_reason is None:
                self.stop_reason = verdict.code
                logger.warning("hsm_dispatch_tenant_stopped", extra={
                    "tenant_id": self.tenant_id, "error": verdict.code})
            if verdict.reconnect and self.token_error is None:
                self.token_error = error
        if len(self.results) >= FLUSH_AT:
            self.flush_now.set()

    # -- results --------------------------------------------------------------------------------
    async def _flush_periodically(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.flush_now.wait(), FLUSH_INTERVAL_SECONDS)
            self.flush_now.clear()
            try:
                await self._flush()
            except Exception as exc:
                if self.failure is None:
                    self.failure = exc
                return
            if self.closing:
                return

    async def _flush(self) -> None:
        async with self.flush_lock:
            batch, self.results = self.results, []
            if not batch:
                return
            try:
                await self.threads.run(self._write_tx, batch)
            except Exception:
                self.results = batch + self.results  # the final flush tries once more
                raise

    def _write_tx(self, batch: list[Result]) -> None:
        def write() -> None:
            with tenant_tx(self.tenant_id) as conn:
                claims.write_results(conn, self.run_id, batch)

        # Results must not be lost to a deadlock or serialization abort (Meta already has these
        # messages): the write is idempotent, so it simply runs again.
        retry_conflicts(write)

"""The producer of a tenant's run: for each rule inside its send window, SKIPPED rows for a
template that cannot send, then reservations (released rows due again first, then new eligible
leads) within the messaging tier's 24-hour budget, queued for the sender."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from shared.hsm import claims
from shared.hsm.claims import Claim, Rule
from shared.hsm.eligibility import send_window_open
from shared.hsm.planning import RulePlan, TenantPlan
from shared.hsm.threads import RunThreads
from shared.platform.db import tenant_tx
from shared.platform.observability import logger
from shared.whatsapp import senders

SKIP_BATCH = 1000  # SKIPPED rows written per rule and run
QUEUE_END = object()  # the producer's last item: nothing more will be reserved


class Reserving:
    """Part of shared.hsm.tenant_run.TenantDispatch: the state it reads is set up there."""

    tenant_id: str
    run_id: uuid.UUID
    plan: TenantPlan
    threads: RunThreads
    queue: asyncio.Queue[Any]
    summary: Any
    statuses: Counter[str]
    stopped_rules: set[str]
    failure: BaseException | None
    tier_reached: bool
    cut_short: bool
    batch_size: int
    soft_deadline: float

    async def _produce(self) -> None:
        try:
            for plan in self.plan.rules:
                if self._held_back(None):
                    break
                await self._produce_rule(plan)
        except Exception as exc:
            if self.failure is None:
                self.failure = exc
        finally:
            await self.queue.put(QUEUE_END)

    def _held_back(self, rule: Rule | None) -> bool:
        """No more reservations for this rule (or any, with None). When it is time that ran out,
        the run remembers that work may be left (`cut_short`): the worker queues the tenant
        again rather than leave it for the next plan."""
        if self._stopping():
            self.cut_short = True
            return True
        return self.tier_reached or (rule is not None and rule.id in self.stopped_rules)

    def _window_open(self, rule: Rule) -> bool:
        return send_window_open(rule.send_window, self.plan.sender.timezone, datetime.now(UTC))

    async def _produce_rule(self, plan: RulePlan) -> None:
        rule = plan.rule
        if not self._window_open(rule):
            logger.info("hsm_rule_outside_send_window",
                        extra={"tenant_id": self.tenant_id, "rule_id": rule.id})
            return
        if plan.skip_code is not None:
            skipped = await self.threads.run(self._skip_tx, plan)
            self.summary.skipped += skipped
            self.statuses["SKIPPED"] += skipped
            logger.info("hsm_message", extra={
                "tenant_id": self.tenant_id, "rule_id": rule.id, "template": rule.template_name,
                "status": "SKIPPED", "error": plan.skip_code, "count": skipped})
            return
        await self.threads.run(self._prepare_rule_tx, rule)
        for kind in ("released", "new"):
            cursor = claims.START_CURSOR
            while not self._held_back(rule):
                if not self._window_open(rule):
                    return
                room = max(1, min(self.batch_size,
                                  int(self.pacer.rate * (self.soft_deadline - time.monotonic()))))
                batch = await self.threads.run(self._reserve_tx, kind, rule, room, cursor)
                if batch is None:
                    self.tier_reached = True
                    logger.warning("hsm_messaging_tier_reached", extra={
                        "tenant_id": self.tenant_id,
                        "tier": self.plan.sender.messaging_limit_tier})
                    return
                if not batch:
                    break
                for claim in batch:
                    await self.queue.put(claim)
                last = batch[-1]
                cursor = (last.lead_created_at, uuid.UUID(last.lead_id))

    def _skip_tx(self, plan: RulePlan) -> int:
        with tenant_tx(self.tenant_id) as conn:
            return claims.insert_skipped(conn, self.tenant_id, plan.rule, plan.skip_code,
                                         plan.skip_message, SKIP_BATCH)

    def _prepare_rule_tx(self, rule: Rule) -> None:
        with tenant_tx(self.tenant_id) as conn:
            claims.revive_template_skips(conn, rule.id)
            claims.skip_unreachable_released(conn, rule)

    def _reserve_tx(self, kind: str, rule: Rule, limit: int, cursor: tuple[Any, Any]
                    ) -> list[Claim] | None:
        """A batch of claims, or None when the 24-hour unique-recipient budget is spent."""
        cap = senders.daily_recipient_limit(self.plan.sender.messaging_limit_tier)
        with tenant_tx(self.tenant_id) as conn:
            claims.lock_reservations(conn, self.tenant_id)
            if cap is not None:
                room = cap - claims.recent_recipients(conn)
                if room <= 0:
                    return None
                limit = min(limit, room)
            if kind == "released":
                return claims.reserve_released(conn, rule, self.run_id, limit)
            return claims.reserve_new(conn, self.tenant_id, rule, self.run_id, limit, cursor)

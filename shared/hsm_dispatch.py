"""The HSM dispatcher: every enabled `lead_followup` rule's template, once per lead, at the
sender's throughput cap (issue 6, part B). No HTTP edge here; functions/hsm_dispatch calls
`run_dispatch`.

Per tenant (= per phone number), under a lease so overlapping runs never pace one number twice:

1. Recover: permitted sends that never got a result time out to UNKNOWN (never re-sent);
   reservations of dead runs are released. Templates are refreshed when older than 15 minutes.
2. For each rule inside its send window: a template that is not APPROVED gets its eligible leads
   logged SKIPPED with the reason. Otherwise the producer reserves batches (released rows due for
   another attempt first, then new eligible leads) within the messaging tier's 24-hour budget.
3. The sender permits reserved rows in small chunks (the permit is what makes a send
   at-most-once: shared/hsm_claims.py), then releases them to Meta through a token bucket just
   under the cap, with up to rate x latency requests in flight (shared/hsm_pacing.py).
4. Results are written in small batches; each error class decides the row's fate and whether the
   rule or the tenant stops (shared/hsm_outcomes.py).
5. When time runs short it stops claiming, lets sends in flight finish, and releases what it
   reserved but never sent.

DB work runs on a few worker threads (each with its own connection from shared.db, every
statement inside tenant_tx), so the event loop keeps sending while claims and results are
written. An unexpected error in a tenant's run winds it down the same careful way (in-flight
sends finish and are recorded, unsent reservations released); only a hard kill leaves rows
behind, and those are recovered by step 1 of a later run.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from shared import credentials, whatsapp_senders, whatsapp_templates_store
from shared import hsm_claims as claims
from shared.db import reset_connection, retry_conflicts, system_tx, tenant_tx
from shared.errors import AppError
from shared.graph_errors import MetaError, MetaTokenInvalid
from shared.hsm_claims import Claim, Result, Rule
from shared.hsm_eligibility import send_window_open
from shared.hsm_outcomes import Outcome, Stop, Verdict, classify_send_error
from shared.hsm_pacing import TokenBucketPacer, in_flight_bound, pacing_rate
from shared.hsm_rules import lead_param_values
from shared.meta_session import record_token_invalid
from shared.observability import logger, metrics
from shared.settings import get_settings
from shared.whatsapp_templates import (
    SENDABLE_STATUS,
    ensure_fresh_templates,
    placeholder_count,
    unfillable_parts,
)

# A permitted send without a result for this long belongs to a run that died (Lambda's maximum
# run is 15 minutes): UNKNOWN.
STARTED_TIMEOUT_SECONDS = 20 * 60
LEASE_MARGIN_SECONDS = 60
CONCURRENT_TENANTS = 8  # numbers paced side by side; each has its own cap at Meta
DB_THREADS = 4
PREPARE_THREADS = 2
MIN_TENANT_SECONDS = 2.0  # don't start a tenant with less sending time than this
FLUSH_INTERVAL_SECONDS = 0.25
FLUSH_AT = 200
SKIP_BATCH = 1000  # SKIPPED rows written per rule and run
PERMIT_SECONDS = 0.05  # a permit chunk covers this much sending (at most 50 rows)
RESERVE_SECONDS = 2.0  # a reservation batch covers this much sending (20..1000 rows)
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_DONE = object()


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
    (kept in memory, not stored yet); raising there is a crash at that point."""

    after_result: Callable[[int], None] | None = None


@dataclass(frozen=True)
class RulePlan:
    rule: Rule
    skip_code: str | None = None
    skip_message: str | None = None
    parameter_names: list[str] | None = None  # named-parameter templates only


@dataclass(frozen=True)
class TenantPlan:
    sender: whatsapp_senders.Sender
    token: str = field(repr=False)
    rules: list[RulePlan] = field(default_factory=list)


def send_reserve_seconds() -> float:
    """No send starts later than this before the deadline: its answer must still fit."""
    return get_settings().meta_timeout_seconds + 1.0


# -- worker threads -------------------------------------------------------------------------------
_DB, _PREPARE = "db", "prepare"
_POOL_SIZES = {_DB: DB_THREADS, _PREPARE: PREPARE_THREADS}


class Workers:
    """The threads of one run: short DB transactions (claims, permits, results) on one pool, each
    tenant's preparation (which may sync templates from Meta) on another, so a slow sync never
    holds up another tenant's sends. Each thread uses its own connection (shared.db), closed when
    the run ends, so nothing outlives the invocation."""

    def __init__(self) -> None:
        self.pools = {name: ThreadPoolExecutor(size, thread_name_prefix=f"hsm-{name}")
                      for name, size in _POOL_SIZES.items()}

    async def run(self, fn: Callable[..., Any], *args: Any, pool: str = _DB) -> Any:
        return await asyncio.get_running_loop().run_in_executor(
            self.pools[pool], functools.partial(fn, *args))

    def close(self) -> None:
        for name, pool in self.pools.items():
            # One task per thread (a barrier keeps each thread to one) closes its connection.
            barrier = threading.Barrier(_POOL_SIZES[name])

            def close_connection(barrier: threading.Barrier = barrier) -> None:
                with contextlib.suppress(threading.BrokenBarrierError):
                    barrier.wait(timeout=5)
                reset_connection()

            for _ in range(_POOL_SIZES[name]):
                pool.submit(close_connection)
            pool.shutdown(wait=True)


# -- planning (sync, on a worker thread) --------------------------------------------------------
def _parameter_names(components: Any) -> list[str]:
    names: list[str] = []
    for component in components if isinstance(components, list) else []:
        if isinstance(component, dict) and str(component.get("type", "")).upper() == "BODY":
            for name in _PLACEHOLDER.findall(str(component.get("text") or "")):
                if name not in names:
                    names.append(name)
    return names


def plan_rule(conn: Any, rule: Rule) -> RulePlan:
    """Can the rule send now? Its template must be synced, APPROVED and fillable by it."""
    row = whatsapp_templates_store.get(conn, rule.template_name, rule.language)
    label = f"Template '{rule.template_name}' ({rule.language})"
    if row is None:
        return RulePlan(rule, "template_missing", f"{label} is not among the synced templates.")
    if row["status"] != SENDABLE_STATUS:
        reason = f": {row['rejection_reason']}" if row.get("rejection_reason") else ""
        return RulePlan(rule, "template_not_approved", f"{label} is {row['status']}{reason}.")
    expected = placeholder_count(row["components"])
    if unfillable_parts(row["components"]) or expected != len(rule.body_params):
        return RulePlan(rule, "template_mismatch", f"{label} needs {expected} body parameters "
                        f"and no header or button ones; the rule maps {len(rule.body_params)}.")
    named = str(row.get("parameter_format") or "").upper() == "NAMED"
    return RulePlan(rule, parameter_names=_parameter_names(row["components"]) if named else None)


def _release_lease(tenant_id: str, run_id: uuid.UUID) -> None:
    with tenant_tx(tenant_id) as conn:
        claims.release_lease(conn, run_id)


def prepare_tenant(tenant_id: str, run_id: uuid.UUID, deadline: float) -> TenantPlan | None:
    """Lease, recovery, sender, token, fresh templates, rule plans. None: nothing to send."""
    lease_seconds = max(0.0, deadline - time.monotonic()) + LEASE_MARGIN_SECONDS
    with tenant_tx(tenant_id) as conn:
        if not claims.acquire_lease(conn, tenant_id, run_id, lease_seconds):
            logger.info("hsm_dispatch_busy", extra={"tenant_id": tenant_id})
            return None
    try:
        return _prepare_leased(tenant_id, run_id, deadline)
    except Exception:
        _release_lease(tenant_id, run_id)
        raise


def _prepare_leased(tenant_id: str, run_id: uuid.UUID, deadline: float) -> TenantPlan | None:
    with tenant_tx(tenant_id) as conn:
        timed_out = claims.expire_started(conn, STARTED_TIMEOUT_SECONDS)
        orphans = claims.release_orphans(conn, run_id)
        sender = whatsapp_senders.get(conn)
        rules = claims.enabled_rules(conn)
        stored = credentials.load(conn)
    if timed_out or orphans:
        logger.warning("hsm_claims_recovered", extra={"tenant_id": tenant_id,
                                                      "unknown": timed_out, "released": orphans})
        if timed_out:
            metrics.add_metric(name="HsmClaimsTimedOut", unit="Count", value=timed_out)
    reason = ("no_rules" if not rules else "no_sender" if sender is None
              else "meta_not_connected" if stored is None
              else "needs_reconnect" if stored.status == "needs_reconnect" else None)
    if reason is not None:
        if rules:
            logger.info("hsm_dispatch_tenant_skipped", extra={"tenant_id": tenant_id,
                                                              "reason": reason})
        _release_lease(tenant_id, run_id)
        return None
    token = stored.token()
    # httpx and the Graph client are imported once a tenant has something to send: a run over
    # tenants without rules, sender or token never loads them (cold start).
    from shared.graph import GraphClient

    try:
        with GraphClient.for_token(token, deadline=deadline) as graph:
            ensure_fresh_templates(tenant_id, graph=graph)
    except MetaTokenInvalid as exc:
        record_token_invalid(tenant_id, exc)
        _release_lease(tenant_id, run_id)
        return None
    except (MetaError, AppError) as exc:
        # Keep going on the stored list: Meta itself refuses a template no longer approved.
        logger.warning("hsm_templates_not_refreshed",
                       extra={"tenant_id": tenant_id, "meta_code": getattr(exc, "code", None)})
    with tenant_tx(tenant_id) as conn:
        plans = [plan_rule(conn, rule) for rule in rules]
    return TenantPlan(sender, token, plans)


def build_payload(claim: Claim, plan: RulePlan) -> dict[str, Any]:
    """META_API.md §8's template send; biz_opaque_callback_data carries the log id back in
    status webhooks."""
    rule = plan.rule
    template: dict[str, Any] = {"name": rule.template_name, "language": {"code": rule.language}}
    values = lead_param_values(rule.body_params, claim.lead)
    if values:
        parameters = []
        for index, value in enumerate(values):
            parameter = {"type": "text", "text": value}
            if plan.parameter_names and index < len(plan.parameter_names):
                parameter["parameter_name"] = plan.parameter_names[index]
            parameters.append(parameter)
        template["components"] = [{"type": "body", "parameters": parameters}]
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": claim.phone,
            "type": "template", "template": template,
            "biz_opaque_callback_data": claim.log_id}


def _wamid(body: Any) -> str | None:
    messages = body.get("messages") if isinstance(body, dict) else None
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        wamid = messages[0].get("id")
        return str(wamid) if wamid else None
    return None


# -- one tenant's run (async) -------------------------------------------------------------------
class TenantDispatch:
    """Producer (reservations) -> sender (permit, pace, send) -> flusher (results)."""

    def __init__(self, tenant_id: str, run_id: uuid.UUID, deadline: float,
                 hooks: DispatchHooks, workers: Workers) -> None:
        self.tenant_id = tenant_id
        self.workers = workers
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

    # -- lifecycle ------------------------------------------------------------------------------
    async def run(self) -> DispatchSummary:
        # Its own threads: a template sync calls Meta and must not hold up other tenants' sends.
        self.plan = await self.workers.run(prepare_tenant, self.tenant_id, self.run_id,
                                           self.deadline, pool=_PREPARE)
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
        import httpx  # already loaded by shared.graph in _prepare_leased; named here for Limits

        from shared.graph import AsyncGraphClient

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
                self.queue.put_nowait(_DONE)  # it waits on an empty queue: wake it
            chunk = (await asyncio.gather(self.prefetch, return_exceptions=True))[0]
            if isinstance(chunk, list):
                self.unsent.extend(c.log_id for c in chunk)
        if self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)
        if self.flusher is not None:
            self.flush_now.set()
            await asyncio.gather(self.flusher, return_exceptions=True)
        await self._flush()
        await self.workers.run(self._finish_tx)

    def _finish_tx(self) -> None:
        with tenant_tx(self.tenant_id) as conn:
            released = claims.release(conn, self.run_id, self.unsent)
            claims.release_lease(conn, self.run_id)
        if released:
            logger.info("hsm_claims_released", extra={"tenant_id": self.tenant_id,
                                                      "released": released,
                                                      "reason": self._stop_label()})
        if self.token_error is not None:
            record_token_invalid(self.tenant_id, self.token_error)

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

    async def _produce(self) -> None:
        try:
            for plan in self.plan.rules:
                if self._stopping() or self.tier_reached:
                    break
                await self._produce_rule(plan)
        except Exception as exc:
            if self.failure is None:
                self.failure = exc
        finally:
            await self.queue.put(_DONE)

    def _window_open(self, rule: Rule) -> bool:
        return send_window_open(rule.send_window, self.plan.sender.timezone, datetime.now(UTC))

    async def _produce_rule(self, plan: RulePlan) -> None:
        rule = plan.rule
        if not self._window_open(rule):
            logger.info("hsm_rule_outside_send_window",
                        extra={"tenant_id": self.tenant_id, "rule_id": rule.id})
            return
        if plan.skip_code is not None:
            skipped = await self.workers.run(self._skip_tx, plan)
            self.summary.skipped += skipped
            self.statuses["SKIPPED"] += skipped
            logger.info("hsm_message", extra={
                "tenant_id": self.tenant_id, "rule_id": rule.id, "template": rule.template_name,
                "status": "SKIPPED", "error": plan.skip_code, "count": skipped})
            return
        await self.workers.run(self._prepare_rule_tx, rule.id)
        for kind in ("released", "new"):
            cursor = claims.START_CURSOR
            while not (self._stopping() or self.tier_reached or rule.id in self.stopped_rules):
                if not self._window_open(rule):
                    return
                room = max(1, min(self.batch_size,
                                  int(self.pacer.rate * (self.soft_deadline - time.monotonic()))))
                batch = await self.workers.run(self._reserve_tx, kind, rule, room, cursor)
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

    def _prepare_rule_tx(self, rule_id: str) -> None:
        with tenant_tx(self.tenant_id) as conn:
            claims.revive_template_skips(conn, rule_id)
            claims.skip_unreachable_released(conn, rule_id)

    def _reserve_tx(self, kind: str, rule: Rule, limit: int, cursor: tuple[Any, Any]
                    ) -> list[Claim] | None:
        """A batch of claims, or None when the 24-hour unique-recipient budget is spent."""
        cap = whatsapp_senders.daily_recipient_limit(self.plan.sender.messaging_limit_tier)
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

    # -- sender: permit, pace, send -------------------------------------------------------------
    def _must_hold(self, claim: Claim) -> bool:
        return self._stopping() or claim.rule_id in self.stopped_rules

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
            if item is not _DONE:
                self.unsent.append(item.log_id)

    async def _next_chunk(self) -> list[Claim] | None:
        if self.done_seen:
            return None
        first = await self.queue.get()
        if first is _DONE:
            self.done_seen = True
            return None
        items = [first]
        while len(items) < self.chunk_size:
            try:
                item = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            if item is _DONE:
                self.done_seen = True
                break
            items.append(item)
        held = [c for c in items if self._must_hold(c)]
        self.unsent.extend(c.log_id for c in held)
        wanted = [c for c in items if not self._must_hold(c)]
        if not wanted:
            return []
        allowed = await self.workers.run(self._permit_tx, [c.log_id for c in wanted])
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
        try:
            body = await self.graph.post(f"{self.plan.sender.phone_number_id}/messages",
                                         json=payload)
        except MetaError as exc:
            verdict = classify_send_error(exc, claim.attempts + 1)
            return (Result(claim.log_id, claim.lead_id, verdict.outcome.value,
                           error_code=verdict.code, error_message=verdict.message,
                           retry_in_seconds=verdict.retry_in_seconds, opt_out=verdict.opt_out),
                    verdict, exc)
        wamid = _wamid(body)
        if wamid is None:
            return (Result(claim.log_id, claim.lead_id, Outcome.UNKNOWN.value,
                           error_code="no_wamid",
                           error_message="Meta answered without a message id."), None, None)
        return Result(claim.log_id, claim.lead_id, Outcome.SENT.value, wamid=wamid), None, None

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
                await self.workers.run(self._write_tx, batch)
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

    def _log_finished(self, seconds: float) -> None:
        span = (self.last_send - self.first_send) if self.first_send and self.last_send else 0
        logger.info("hsm_dispatch_tenant", extra={
            "tenant_id": self.tenant_id, **self.summary.as_dict(),
            "retries": self.statuses.get(Outcome.RETRY.value, 0),
            "max_per_second": self.plan.sender.max_per_second,
            "send_rate": round(self.summary.sent / span, 1) if span > 0 else None,
            "seconds": round(seconds, 3), "stop": self._stop_label()})


# -- every tenant ---------------------------------------------------------------------------------
async def _dispatch_tenants(tenants: list[str], run_id: uuid.UUID, deadline: float,
                            hooks: DispatchHooks, workers: Workers
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
            job = TenantDispatch(tenant_id, run_id, deadline, hooks, workers)
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
    workers = Workers()
    try:
        summary, statuses = asyncio.run(
            _dispatch_tenants(tenants, run_id, deadline, hooks or DispatchHooks(), workers))
    finally:
        workers.close()
    for status, count in sorted(statuses.items()):
        if not count:
            continue
        with single_metric(name="HsmMessagesSent", unit=MetricUnit.Count, value=count,
                           namespace=metrics.namespace) as metric:
            metric.add_dimension(name="status", value=status)
    logger.info("hsm_dispatch_finished", extra={**summary.as_dict(), "tenants": len(tenants)})
    return summary

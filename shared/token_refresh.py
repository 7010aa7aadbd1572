"""Keep every tenant's Meta user token alive, or tell the tenant in time to reconnect.

No HTTP here (the handler maps the result); data access is in shared.token_refresh_store.

One run (hourly schedule, or an admin's "refresh now" for their own tenant):
1. List the tenants with work (SECURITY DEFINER lookup, ids only): a token or its data access
   expiring before the horizon (window + lead), an expiry already passed, or an alert not yet put.
2. Per tenant, concurrently with at most `token_refresh_concurrency` in flight:
   claim the row with a lease (one conditional UPDATE that re-checks "still due", so a row that
   another run handled meanwhile is not taken) -> decrypt -> fb_exchange_token -> debug_token
   for the real expiry -> seal the new token with a fresh data key -> one fenced UPDATE that
   swaps the ciphertext and records the outcome. No transaction is open while Meta is called.
3. Stop claiming when the invocation's remaining time runs short; the rest waits an hour.

Concurrency model: the Meta calls run on one asyncio loop (httpx, bounded by a semaphore). The
blocking steps run on two small thread pools: Postgres steps on DB_WORKERS threads, each owning
its own psycopg connection (shared.db.get_connection is per thread), so no connection is ever
shared between concurrent tasks and a run holds at most DB_WORKERS connections; KMS and
EventBridge calls on AWS_WORKERS threads that never touch the database.

Outcomes: 190 from the exchange or is_valid false -> needs_reconnect; throttled or unavailable ->
status kept, failure counted, retried next run; same expiry again (or the exchange refused) ->
expiring; expiry passed -> needs_reconnect. The MetaReconnectRequired event goes out once per
state ('expiring', then 'needs_reconnect') per connection, never once per run.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from shared import credentials, events
from shared import token_refresh_store as store
from shared.db import system_tx, tenant_tx
from shared.deadlines import deadline_from_context
from shared.errors import Conflict, MetaNotConnected
from shared.graph_errors import MetaError, MetaRateLimited, MetaTokenInvalid, MetaTransient
from shared.observability import counters, logger
from shared.settings import get_settings
from shared.token_health import (
    ACTIVE,
    EXPIRING,
    NEEDS_RECONNECT,
    REFRESH_FAILING,
    TOKEN_INVALID,
    TOKEN_NOT_EXTENDED,
    Horizons,
    classify,
    is_absent,
    iso,
    meta_time,
)

if TYPE_CHECKING:
    from shared.graph import AsyncGraphClient

RECONNECT_EVENT = "MetaReconnectRequired"
EXCHANGE_REFUSED = "exchange_refused"
# Consecutive failed renewals (one per hourly run) before a tenant whose token expires inside
# the window is told: one Meta blip is not worth an alert, a few hours of failures are.
FAILURES_BEFORE_TELLING = 3

DB_WORKERS = 8  # Postgres steps in parallel: one connection per worker thread
AWS_WORKERS = 10  # KMS/EventBridge calls in parallel (botocore's default pool: 10 connections)
DUE_LIMIT = 50_000  # tenants listed per run; more wait for the next run, most urgent first
META_ATTEMPTS = 2  # per call: the next hourly run is the real retry
MANUAL_BUDGET_SECONDS = 25.0  # "refresh now" answers inside HTTP API's 30 s
# A renewal counts only if Meta moved the expiry: it may hand back a new string with the same one.
MIN_EXTENSION = timedelta(hours=1)

# Per-tenant outcomes (the log's `outcome`); the contract's summary is derived from them.
REFRESHED = "refreshed"  # a new token with a later expiry is stored
NOT_EXTENDED = "not_extended"  # Meta would not renew it: expiring, tenant told
CHECKED = "checked"  # Meta confirmed the token; nothing to renew
ALERTED = "alerted"  # only the missing MetaReconnectRequired event was put
MARKED_RECONNECT = "needs_reconnect"  # broken: Meta said so, or the expiry passed
FAILED = "failed"  # throttled, unavailable, or our side failed: retried next run
SUPERSEDED = "superseded"  # replaced by a reconnect (or the lease lapsed) mid-run: nothing written

T = TypeVar("T")


@dataclass(frozen=True)
class TenantOutcome:
    tenant_id: str
    outcome: str
    status: str | None
    reason: str | None = None
    expires_at: datetime | None = None
    data_access_expires_at: datetime | None = None
    alerted: bool = False
    meta_code: int | None = None
    meta_subcode: int | None = None


def summarize(outcomes: list[TenantOutcome]) -> dict[str, int]:
    """CONTRACT.md's run summary: checked / refreshed / failed / needs_reconnect."""
    return {
        "checked": len(outcomes),
        "refreshed": sum(o.outcome == REFRESHED for o in outcomes),
        "failed": sum(o.outcome == FAILED for o in outcomes),
        "needs_reconnect": sum(o.status == NEEDS_RECONNECT for o in outcomes),
    }


# -- entry points ---------------------------------------------------------------------------
def run_scheduled(context: Any) -> dict[str, int]:
    """The hourly run over every tenant with work."""
    settings = get_settings()
    h = Horizons.from_settings(settings)
    with system_tx() as conn:
        tenant_ids = store.due_tenants(conn, h, DUE_LIMIT)
    reserve_ms = int((2 * settings.meta_timeout_seconds + 3) * 1000)
    outcomes, deferred = _run_to_completion(_run(
        tenant_ids, h, deadline=deadline_from_context(context), force=False,
        concurrency=settings.token_refresh_concurrency,
        may_start=lambda: context.get_remaining_time_in_millis() > reserve_ms))
    with system_tx() as conn:
        expiring_soon = store.expiring_count(conn, h)
    # The token-expiry alarm's gauge: what is still expiring after this run did its work.
    counters.incr("TokensExpiringSoon", expiring_soon)
    if deferred:
        counters.incr("TokenRefreshDeferred", deferred)
    summary = summarize(outcomes)
    logger.info("token_refresh_run", extra={**summary, "trigger": "schedule",
                                            "due": len(tenant_ids), "deferred": deferred,
                                            "expiring_soon": expiring_soon})
    return summary


def refresh_tenant_now(tenant_id: str, context: Any) -> dict[str, int]:
    """An admin's "refresh now": this tenant only, whatever its expiry (never-expiring tokens
    are only checked, never exchanged: an exchange could give them a 60-day expiry)."""
    settings = get_settings()
    with tenant_tx(tenant_id) as conn:
        if store.load_health(conn) is None:
            raise MetaNotConnected()
    deadline = min(deadline_from_context(context), time.monotonic() + MANUAL_BUDGET_SECONDS)
    outcomes, _ = _run_to_completion(_run([tenant_id], Horizons.from_settings(settings),
                                   deadline=deadline, force=True, concurrency=1,
                                   may_start=lambda: True))
    if not outcomes:
        raise Conflict("A refresh of this Meta connection is already running. Try again in a "
                       "minute.")
    summary = summarize(outcomes)
    logger.info("token_refresh_run", extra={**summary, "trigger": "manual", "due": 1,
                                            "deferred": 0})
    return summary


# -- the run --------------------------------------------------------------------------------
def _run_to_completion(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, also when the calling thread already runs an event loop (never in Lambda;
    in-process callers such as a test session driving a browser may): then on a fresh loop in a
    helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="token-refresh-loop") as pool:
        return pool.submit(asyncio.run, coro).result()


_executors: dict[str, ThreadPoolExecutor] = {}
_executor_lock = threading.Lock()


def _executor(kind: str) -> ThreadPoolExecutor:
    """Threads for blocking steps, created on first use and kept by the warm container (the
    db threads keep their connections, as shared.db does for every thread)."""
    with _executor_lock:
        if kind not in _executors:
            _executors[kind] = ThreadPoolExecutor(
                max_workers=DB_WORKERS if kind == "db" else AWS_WORKERS,
                thread_name_prefix=f"token-refresh-{kind}")
        return _executors[kind]


def _graph_client(deadline: float) -> AsyncGraphClient:
    # App-credential calls only (exchange, debug_token): no tenant token is bound to the client,
    # each call carries the token it is about; one pool serves the whole run.
    from shared.graph import AsyncGraphClient  # local: loads httpx only for a run that starts

    s = get_settings()
    return AsyncGraphClient(None, app_secret=s.app_secret(), base_url=s.meta_graph_url,
                            version=s.meta_graph_api_version, timeout=s.meta_timeout_seconds,
                            deadline=deadline, app_id=s.meta_app_id or None,
                            max_attempts=META_ATTEMPTS)


async def _run(tenant_ids: list[str], h: Horizons, *, deadline: float, force: bool,
               concurrency: int, may_start: Callable[[], bool]
               ) -> tuple[list[TenantOutcome], int]:
    """Process tenants with at most `concurrency` in flight; returns (outcomes, deferred)."""
    slots = asyncio.Semaphore(concurrency)
    tasks: list[asyncio.Task] = []
    deferred = 0
    async with _graph_client(deadline) as graph:
        worker = _TenantWorker(graph, h, force, _executor("db"), _executor("aws"))
        for index, tenant_id in enumerate(tenant_ids):
            await slots.acquire()
            if not may_start() or time.monotonic() >= deadline:
                slots.release()
                deferred = len(tenant_ids) - index
                break
            tasks.append(asyncio.create_task(worker.run(tenant_id, slots)))
        results = await asyncio.gather(*tasks)
    return [r for r in results if r is not None], deferred


class _TenantWorker:
    def __init__(self, graph: AsyncGraphClient, h: Horizons, force: bool,
                 db: ThreadPoolExecutor, aws: ThreadPoolExecutor) -> None:
        self.graph, self.h, self.force = graph, h, force
        self.db_pool, self.aws_pool = db, aws

    async def blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A Postgres step, on a db thread (its own connection)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.db_pool, functools.partial(fn, *args, **kwargs))

    async def aws(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A KMS or EventBridge call, on a thread that never opens a database connection."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.aws_pool, functools.partial(fn, *args, **kwargs))

    async def run(self, tenant_id: str, slots: asyncio.Semaphore) -> TenantOutcome | None:
        claimed: store.ClaimedCredential | None = None
        try:
            claimed = await self.blocking(_claim, tenant_id, None if self.force else self.h)
            if claimed is None:
                return None  # another run holds it, or handled it since it was listed
            outcome = await self.process(claimed)
        except Exception as exc:  # noqa: BLE001 - Postgres, KMS, EventBridge: retry next run
            # The type only: messages could echo values. The old ciphertext is untouched.
            logger.error("token_refresh_error", extra={"tenant_id": tenant_id,
                                                       "error_type": type(exc).__name__})
            if claimed is not None:
                await self._record_failure_quietly(claimed)
            outcome = TenantOutcome(
                tenant_id, FAILED, claimed.status if claimed else None, "internal_error",
                claimed.expires_at if claimed else None,
                claimed.data_access_expires_at if claimed else None)
        finally:
            slots.release()
        _report(outcome)
        return outcome

    async def _record_failure_quietly(self, claimed: store.ClaimedCredential) -> None:
        try:
            await self.blocking(_record_failure, claimed)
        except Exception as exc:  # noqa: BLE001 - the lease lapses on its own
            logger.error("token_refresh_release_failed",
                         extra={"tenant_id": claimed.tenant_id, "error_type": type(exc).__name__})

    # -- deciding ---------------------------------------------------------------------------
    async def process(self, claimed: store.ClaimedCredential) -> TenantOutcome:
        h = self.h
        if claimed.status == NEEDS_RECONNECT:
            if claimed.notified(NEEDS_RECONNECT):  # only an admin's "refresh now" gets here
                await self.blocking(_release, claimed)
                return TenantOutcome(claimed.tenant_id, CHECKED, NEEDS_RECONNECT,
                                     claimed.status_reason, claimed.expires_at,
                                     claimed.data_access_expires_at)
            # Marked elsewhere (e.g. a 190 on an API call) and not yet announced.
            return await self.alert_only(claimed, NEEDS_RECONNECT, claimed.status_reason)
        status, reason = classify(claimed.expires_at, claimed.data_access_expires_at, h)
        if status == NEEDS_RECONNECT:
            # "You can not use an expired token to request a long-lived token" (LL).
            return await self.conclude(claimed, _keep_facts(claimed, status, reason),
                                       MARKED_RECONNECT)
        recently_tried = (claimed.last_refresh_attempt_at is not None
                          and claimed.last_refresh_attempt_at >= h.recheck_before)
        if claimed.status == EXPIRING and recently_tried and not self.force:
            return await self.alert_only(claimed, EXPIRING, claimed.status_reason)
        renew = claimed.expires_at is not None and (self.force or claimed.expires_at <= h.horizon)
        token = await self.aws(credentials.unseal, claimed.tenant_id, claimed.ciphertext)
        return await self.ask_meta(claimed, token, renew)

    async def ask_meta(self, claimed: store.ClaimedCredential, token: str,
                       renew: bool) -> TenantOutcome:
        new_token: str | None = None
        expires_in: int | None = None
        refused = False
        if renew:
            try:
                grant = await self.graph.exchange_long_lived(token)
                new_token, expires_in = grant.access_token, grant.expires_in
            except MetaTokenInvalid as exc:  # 190, any subcode: the token is dead
                reason = f"meta_{exc.code}_{exc.subcode or 0}"
                return await self.conclude(
                    claimed, _keep_facts(claimed, NEEDS_RECONNECT, reason), MARKED_RECONNECT,
                    exc)
            except (MetaRateLimited, MetaTransient) as exc:
                return await self.failed(claimed, exc)
            except MetaError:
                # Meta will not exchange this token (not a 190): if it still works, the tenant
                # must reconnect before it expires. debug_token below decides which.
                refused = True
        try:
            info = await self.graph.debug_token(new_token or token)
        except MetaError as exc:
            # A debug_token error is about our app token as much as theirs (e.g. a wrong app
            # secret): never mark every tenant broken for it. Counted, retried next run.
            return await self.failed(claimed, exc)
        return await self.conclude_from_meta(claimed, info, new_token, expires_in, refused)

    async def conclude_from_meta(self, claimed: store.ClaimedCredential, info: dict[str, Any],
                                 new_token: str | None, expires_in: int | None,
                                 refused: bool) -> TenantOutcome:
        if info.get("is_valid") is not True:
            error = info.get("error") if isinstance(info.get("error"), dict) else {}
            reason = (f"meta_{error.get('code')}_{error.get('subcode') or 0}"
                      if error.get("code") else TOKEN_INVALID)
            return await self.conclude(claimed, _keep_facts(claimed, NEEDS_RECONNECT, reason),
                                       MARKED_RECONNECT)
        expires_at = meta_time(info.get("expires_at"))
        if is_absent(expires_at):
            expires_at = (self.h.now + timedelta(seconds=expires_in) if new_token and expires_in
                          else claimed.expires_at)
        data_access = meta_time(info.get("data_access_expires_at"))
        if is_absent(data_access):
            data_access = claimed.data_access_expires_at
        scopes = info.get("scopes")
        scopes = ([s for s in scopes if isinstance(s, str)] if isinstance(scopes, list)
                  else claimed.scopes)
        status, reason = classify(expires_at, data_access, self.h)
        if refused and reason == TOKEN_NOT_EXTENDED:
            reason = EXCHANGE_REFUSED
        sealed = (await self.aws(credentials.seal, claimed.tenant_id, new_token)
                  if new_token else None)
        result = store.Result(status=status, reason=reason, expires_at=expires_at,
                              data_access_expires_at=data_access, scopes=scopes,
                              meta_user_id=str(info.get("user_id") or "") or None,
                              new_ciphertext=sealed)
        if status == NEEDS_RECONNECT:
            kind = MARKED_RECONNECT
        elif new_token and _extended(expires_at, claimed.expires_at):
            kind = REFRESHED
        elif status == EXPIRING:
            kind = NOT_EXTENDED
        else:
            kind = CHECKED
        return await self.conclude(claimed, result, kind)

    # -- writing ----------------------------------------------------------------------------
    async def conclude(self, claimed: store.ClaimedCredential, result: store.Result, kind: str,
                       meta_error: MetaError | None = None) -> TenantOutcome:
        """Write the outcome (and new ciphertext); then, if the tenant has not been told about
        this state yet, put the event while still holding the lease."""
        alert = result.status in (EXPIRING, NEEDS_RECONNECT) and not claimed.notified(
            result.status)
        if not await self.blocking(_save, claimed, result, keep_lease=alert):
            return TenantOutcome(claimed.tenant_id, SUPERSEDED, None)
        alerted = await self._alert(claimed, result) if alert else False
        return TenantOutcome(
            claimed.tenant_id, kind if alerted or not alert else FAILED, result.status,
            result.reason, result.expires_at, result.data_access_expires_at, alerted,
            meta_error.code if meta_error else None, meta_error.subcode if meta_error else None)

    async def alert_only(self, claimed: store.ClaimedCredential, status: str,
                         reason: str | None) -> TenantOutcome:
        result = _keep_facts(claimed, status, reason)
        alerted = await self._alert(claimed, result)
        return TenantOutcome(claimed.tenant_id, ALERTED if alerted else FAILED, status, reason,
                             claimed.expires_at, claimed.data_access_expires_at, alerted)

    async def _alert(self, claimed: store.ClaimedCredential, result: store.Result) -> bool:
        """Put MetaReconnectRequired, then remember it (releasing the lease). At least once: a
        crash between the two repeats the event next run; a failed put is retried next run."""
        detail = {"tenant_id": claimed.tenant_id, "reason": result.reason or result.status,
                  "status": result.status, "expires_at": iso(result.expires_at),
                  "data_access_expires_at": iso(result.data_access_expires_at)}
        try:
            await self.aws(events.publish, RECONNECT_EVENT, detail)
        except Exception as exc:  # noqa: BLE001 - EventBridge down: retried next run
            logger.error("token_refresh_alert_failed", extra={
                "tenant_id": claimed.tenant_id, "error_type": type(exc).__name__})
            await self.blocking(_release, claimed)
            return False
        await self.blocking(_mark_notified, claimed, result.status)
        return True

    async def failed(self, claimed: store.ClaimedCredential, exc: MetaError) -> TenantOutcome:
        if self._must_tell_tenant(claimed):
            # Renewal has failed run after run and the expiry is now inside the promised window:
            # the tenant hears it now (expiring, refresh_failing) rather than at the expiry. A
            # later run that renews the token makes the connection active again.
            return await self.conclude(claimed, _keep_facts(claimed, EXPIRING, REFRESH_FAILING),
                                       FAILED, exc)
        await self.blocking(_record_failure, claimed)
        reason = "meta_rate_limited" if isinstance(exc, MetaRateLimited) else (
            "meta_unavailable" if isinstance(exc, MetaTransient) else "meta_refused")
        return TenantOutcome(claimed.tenant_id, FAILED, claimed.status, reason,
                             claimed.expires_at, claimed.data_access_expires_at,
                             meta_code=exc.code, meta_subcode=exc.subcode)

    def _must_tell_tenant(self, claimed: store.ClaimedCredential) -> bool:
        return (claimed.status == ACTIVE and not claimed.notified(EXPIRING)
                and claimed.expires_at is not None and claimed.expires_at <= self.h.promise
                and claimed.refresh_failures + 1 >= FAILURES_BEFORE_TELLING)


def _extended(new: datetime | None, old: datetime | None) -> bool:
    if old is None:
        return False
    return new is None or new >= old + MIN_EXTENSION


def _keep_facts(claimed: store.ClaimedCredential, status: str,
                reason: str | None) -> store.Result:
    return store.Result(status=status, reason=reason, expires_at=claimed.expires_at,
                        data_access_expires_at=claimed.data_access_expires_at,
                        scopes=claimed.scopes)


def _report(o: TenantOutcome) -> None:
    """The per-tenant `token_refresh` log event and the outcome counters. Never a token."""
    logger.info("token_refresh", extra={
        "tenant_id": o.tenant_id, "outcome": o.outcome, "status": o.status, "reason": o.reason,
        "expires_at": iso(o.expires_at), "data_access_expires_at": iso(o.data_access_expires_at),
        "alerted": o.alerted, "meta_code": o.meta_code, "meta_subcode": o.meta_subcode})
    metric = {REFRESHED: "TokensRefreshed", NOT_EXTENDED: "TokensNotExtended",
              FAILED: "TokenRefreshFailures", MARKED_RECONNECT: "TokensNeedReconnect"}.get(
                  o.outcome)
    if metric:
        counters.incr(metric)
    if o.alerted:
        counters.incr("ReconnectAlertsSent")


# -- blocking steps (db: on the db threads, each with its own connection; aws: KMS) -----------
def _claim(tenant_id: str, h: Horizons | None) -> store.ClaimedCredential | None:
    with tenant_tx(tenant_id) as conn:
        return store.claim(conn, h)


def _save(claimed: store.ClaimedCredential, result: store.Result, *, keep_lease: bool) -> bool:
    with tenant_tx(claimed.tenant_id) as conn:
        return store.save_result(conn, claimed, result, keep_lease=keep_lease)


def _record_failure(claimed: store.ClaimedCredential) -> int | None:
    with tenant_tx(claimed.tenant_id) as conn:
        return store.record_failure(conn, claimed)


def _mark_notified(claimed: store.ClaimedCredential, status: str) -> bool:
    with tenant_tx(claimed.tenant_id) as conn:
        return store.mark_notified(conn, claimed, status)


def _release(claimed: store.ClaimedCredential) -> None:
    with tenant_tx(claimed.tenant_id) as conn:
        store.release(conn, claimed)


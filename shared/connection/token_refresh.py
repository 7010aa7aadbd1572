"""Keep every tenant's Meta user token alive, or tell the tenant in time to reconnect.

No HTTP here (the handler maps the result); one tenant's renewal is
shared.connection.token_renewal, data access shared.connection.token_store.

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
its own psycopg connection (shared.platform.db.get_connection is per thread), so no connection
is ever shared between concurrent tasks and a run holds at most DB_WORKERS connections; KMS and
EventBridge calls on AWS_WORKERS threads that never touch the database.

Outcomes: 190 from the exchange or is_valid false -> needs_reconnect; throttled or unavailable ->
status kept, failure counted, retried next run; same expiry again (or the exchange refused) ->
expiring; expiry passed -> needs_reconnect. The MetaReconnectRequired event goes out once per
state ('expiring', then 'needs_reconnect') per connection, never once per run.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from shared.connection import budget
from shared.connection import token_store as store
from shared.connection.health import NEEDS_RECONNECT, Horizons
from shared.connection.token_renewal import (
    FAILED,
    REFRESHED,
    TenantOutcome,
    TenantRenewal,
)
from shared.platform.db import system_tx, tenant_tx
from shared.platform.deadlines import deadline_from_context
from shared.platform.errors import Conflict, MetaNotConnected
from shared.platform.observability import counters, logger
from shared.platform.settings import get_settings

if TYPE_CHECKING:
    from shared.meta.graph import AsyncGraphClient

DB_WORKERS = 8  # Postgres steps in parallel: one connection per worker thread
AWS_WORKERS = 10  # KMS/EventBridge calls in parallel (botocore's default pool: 10 connections)
DUE_LIMIT = 50_000  # tenants listed per run; more wait for the next run, most urgent first
META_ATTEMPTS = 2  # per call: the next hourly run is the real retry
MANUAL_BUDGET_SECONDS = 25.0  # "refresh now" answers inside HTTP API's 30 s

T = TypeVar("T")


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
        budget.spend(conn, tenant_id)
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
    db threads keep their connections, as shared.platform.db does for every thread)."""
    with _executor_lock:
        if kind not in _executors:
            _executors[kind] = ThreadPoolExecutor(
                max_workers=DB_WORKERS if kind == "db" else AWS_WORKERS,
                thread_name_prefix=f"token-refresh-{kind}")
        return _executors[kind]


def _graph_client(deadline: float) -> AsyncGraphClient:
    # App-credential calls only (exchange, debug_token): no tenant token is bound to the client,
    # each call carries the token it is about; one pool serves the whole run.
    from shared.meta.graph import AsyncGraphClient  # local: loads httpx only for a run that starts

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
        worker = TenantRenewal(graph, h, force, _executor("db"), _executor("aws"))
        for index, tenant_id in enumerate(tenant_ids):
            await slots.acquire()
            if not may_start() or time.monotonic() >= deadline:
                slots.release()
                deferred = len(tenant_ids) - index
                break
            tasks.append(asyncio.create_task(worker.run(tenant_id, slots)))
        results = await asyncio.gather(*tasks)
    return [r for r in results if r is not None], deferred



"""The threads of one dispatch run: short DB transactions on one pool, each tenant's preparation
(which may call Meta for templates) on another. The event loop keeps sending while they work."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.platform.db import reset_connection

DB_THREADS = 4
PREPARE_THREADS = 2
DB, PREPARE = "db", "prepare"
_POOL_SIZES = {DB: DB_THREADS, PREPARE: PREPARE_THREADS}


class RunThreads:
    """The threads of one run: short DB transactions (claims, permits, results) on one pool, each
    tenant's preparation (which may sync templates from Meta) on another, so a slow sync never
    holds up another tenant's sends. Each thread uses its own connection (shared.platform.db),
    closed when the run ends, so nothing outlives the invocation."""

    def __init__(self) -> None:
        self.pools = {name: ThreadPoolExecutor(size, thread_name_prefix=f"hsm-{name}")
                      for name, size in _POOL_SIZES.items()}

    async def run(self, fn: Callable[..., Any], *args: Any, pool: str = DB) -> Any:
        # In a copy of the caller's context: the invocation's log keys (function name, request
        # id) follow the work into the pool's threads (shared.platform.observability).
        return await asyncio.get_running_loop().run_in_executor(
            self.pools[pool], contextvars.copy_context().run, functools.partial(fn, *args))

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

"""The dispatch threads of a container: short DB transactions on one pool, each tenant's
preparation (lease, recovery, KMS decrypt) on another. The event loop keeps sending while they
work.

A warm container keeps them, and each thread its Postgres connection, from one invocation to
the next, as shared.platform.db keeps a handler's: a worker is invoked batch after batch, and
reconnecting five connections each time would cost more than a small batch's sends. What a
container can hold stays bounded: the queue's maximum concurrency times CONNECTIONS.
"""

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

DB_THREADS = 3
PREPARE_THREADS = 2  # tenants of a batch prepared side by side (each waits on Postgres and KMS)
DB, PREPARE = "db", "prepare"
_POOL_SIZES = {DB: DB_THREADS, PREPARE: PREPARE_THREADS}
CONNECTIONS = DB_THREADS + PREPARE_THREADS  # the most Postgres connections a container opens


class RunThreads:
    """Short DB transactions (claims, permits, results) on one pool, each tenant's preparation
    on another, so a slow preparation never holds up another tenant's sends. Each thread uses
    its own connection (shared.platform.db)."""

    def __init__(self) -> None:
        self.pools = {name: ThreadPoolExecutor(size, thread_name_prefix=f"hsm-{name}")
                      for name, size in _POOL_SIZES.items()}

    async def run(self, fn: Callable[..., Any], *args: Any, pool: str = DB) -> Any:
        # In a copy of the caller's context: the invocation's log keys (function name, request
        # id) follow the work into the pool's threads (shared.platform.observability).
        return await asyncio.get_running_loop().run_in_executor(
            self.pools[pool], contextvars.copy_context().run, functools.partial(fn, *args))

    def close(self) -> None:
        """Close every thread's connection and stop the threads (a container going away; the
        local stack moving to another database)."""
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


_threads: RunThreads | None = None
_threads_lock = threading.Lock()


def container_threads() -> RunThreads:
    """The container's dispatch threads, started on first use."""
    global _threads
    with _threads_lock:
        if _threads is None:
            _threads = RunThreads()
        return _threads


def close_container_threads() -> None:
    global _threads
    with _threads_lock:
        threads, _threads = _threads, None
    if threads is not None:
        threads.close()

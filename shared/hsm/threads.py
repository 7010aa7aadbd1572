"""The dispatch threads of a container: every blocking step of a run (a tenant's lease, recovery
and KMS decrypt; claims, permits, results) on one small pool, each thread with its own Postgres
connection (shared.platform.db), while the event loop keeps sending. Since templates left the
send path no step calls Meta, so one pool serves both: a tenant's preparation is a few short
transactions and a KMS call, and never holds a thread for long.

A warm container keeps the threads, and each its connection, from one invocation to the next,
as shared.platform.db keeps a handler's: a worker is invoked batch after batch, and reconnecting
each time would cost more than a small batch's sends. What a container can hold stays bounded:
the queue's maximum concurrency times CONNECTIONS.
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

CONNECTIONS = 5  # threads, so the most Postgres connections a container opens


class RunThreads:
    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(CONNECTIONS, thread_name_prefix="hsm-db")

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        # In a copy of the caller's context: the invocation's log keys (function name, request
        # id) follow the work into the pool's threads (shared.platform.observability).
        return await asyncio.get_running_loop().run_in_executor(
            self.pool, contextvars.copy_context().run, functools.partial(fn, *args))

    def close(self) -> None:
        """Close every thread's connection and stop the threads (a container going away; the
        local stack moving to another database)."""
        # One task per thread (a barrier keeps each thread to one) closes its connection.
        barrier = threading.Barrier(CONNECTIONS)

        def close_connection() -> None:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=5)
            reset_connection()

        for _ in range(CONNECTIONS):
            self.pool.submit(close_connection)
        self.pool.shutdown(wait=True)


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

"""The one place where logger, tracer and metrics are created (Powertools reads its env vars)."""

from __future__ import annotations

import contextlib
import functools
import gc
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.lambda_context import build_lambda_context_model

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="CrmVentas/MarketingHub")


class _CallCounters:
    """Per-invocation counts of high-volume events (one per Graph call), emitted as one metric
    value each at the end of the invocation instead of thousands of EMF data points."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def incr(self, name: str, value: int = 1) -> None:
        with self._lock:
            self._counts[name] += value

    def flush(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, Counter()
        for name, value in counts.items():
            metrics.add_metric(name=name, unit="Count", value=value)


counters = _CallCounters()


def resume_gc_after_imports() -> None:
    """Undo functions/__init__.py's pause, once the handler module has loaded. What the imports
    built lives as long as the container, so it is frozen first: no later collection, in this
    or any warm invocation, scans it again."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


_warm_functions: set[str] = set()
_warm_lock = threading.Lock()


@contextlib.contextmanager
def invocation_log_keys(context: Any) -> Iterator[None]:
    """The Lambda context's keys (function_name, request id, cold_start) on every log line of
    this invocation, and of no other.

    Powertools' `inject_lambda_context` keeps them in the one formatter that every thread shares.
    In Lambda one process runs one invocation at a time, so that is harmless; where functions run
    side by side in one process (the local API serves each request on its own thread) one
    function's lines carried another's name. These keys live in Powertools' context-local keys
    instead: the invoking thread and the asyncio tasks it starts see them; a worker thread sees
    them when its task runs in a copy of the caller's context (contextvars.copy_context).
    """
    fields = build_lambda_context_model(context).__dict__
    with _warm_lock:
        cold_start = fields["function_name"] not in _warm_functions
        _warm_functions.add(fields["function_name"])
    outer = dict(logger.thread_safe_get_current_keys())  # a handler may call another handler
    logger.thread_safe_clear_keys()
    logger.thread_safe_append_keys(cold_start=cold_start, **fields)
    try:
        yield
    finally:
        logger.thread_safe_clear_keys()
        if outer:
            logger.thread_safe_append_keys(**outer)


def entrypoint(handler: Callable[[dict, Any], Any]) -> Callable[[dict, Any], Any]:
    """The fixed decorator stack of every Lambda entry point.

    Events and responses are never logged or traced: they can hold OAuth codes and tokens.
    Applied last in each handler module, after its imports: it also resumes the collector.
    """
    resume_gc_after_imports()

    @tracer.capture_lambda_handler(capture_response=False, capture_error=False)
    @metrics.log_metrics(capture_cold_start_metric=True)
    @functools.wraps(handler)
    def wrapped(event: dict, context: Any) -> Any:
        with invocation_log_keys(context):
            try:
                return handler(event, context)
            finally:
                counters.flush()

    return wrapped

"""The one place where logger, tracer and metrics are created (Powertools reads its env vars)."""

from __future__ import annotations

import functools
import gc
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer

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


def entrypoint(handler: Callable[[dict, Any], Any]) -> Callable[[dict, Any], Any]:
    """The fixed decorator stack of every Lambda entry point.

    Events and responses are never logged or traced: they can hold OAuth codes and tokens.
    Applied last in each handler module, after its imports: it also resumes the collector.
    """
    resume_gc_after_imports()

    @logger.inject_lambda_context(log_event=False, clear_state=True)
    @tracer.capture_lambda_handler(capture_response=False, capture_error=False)
    @metrics.log_metrics(capture_cold_start_metric=True)
    @functools.wraps(handler)
    def wrapped(event: dict, context: Any) -> Any:
        try:
            return handler(event, context)
        finally:
            counters.flush()

    return wrapped

"""The one place where logger, tracer and metrics are created (Powertools reads its env vars)."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import gc
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.logging.lambda_context import build_lambda_context_model
from aws_lambda_powertools.metrics import MetricUnit, single_metric

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="CrmVentas/MarketingHub")

# Where an API request's id is (Powertools' path for HTTP API payload 2.0): every log line of the
# request carries it as correlation_id, as API Gateway's access log does as requestId.
API_CORRELATION_ID_PATH = correlation_paths.API_GATEWAY_HTTP
# The invocation's Lambda context: who is running, which version (the canary gate's dimension).
_invocation: contextvars.ContextVar[Any] = contextvars.ContextVar("invocation", default=None)


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
def invocation_log_keys(context: Any, event: Any = None) -> Iterator[None]:
    """The Lambda context's keys (function_name, request id, cold_start) on every log line of
    this invocation, and of no other; and what ties the lines together: an API request's
    correlation_id (its API Gateway request id), or a job's run_id (the schedule's execution id,
    the same across Lambda's retries of that run; else the invocation's request id).

    Powertools' `inject_lambda_context` keeps them in the one formatter that every thread shares.
    In Lambda one process runs one invocation at a time, so that is harmless; where functions run
    side by side in one process (the local API serves each request on its own thread) one
    function's lines carried another's name. These keys live in Powertools' context-local keys
    instead: the invoking thread and the asyncio tasks it starts see them; a worker thread sees
    them when its task runs in a copy of the caller's context (contextvars.copy_context).
    """
    fields = build_lambda_context_model(context).__dict__
    fields.update(_correlation(event, fields["function_request_id"]))
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


def _correlation(event: Any, request_id: str) -> dict[str, str]:
    if not isinstance(event, dict):
        return {"run_id": request_id}
    if isinstance(event.get("requestContext"), dict):
        from aws_lambda_powertools.utilities.jmespath_utils import query

        found = query(event, API_CORRELATION_ID_PATH)
        return {"correlation_id": str(found)} if found else {}
    run = event.get("id")
    return {"run_id": str(run) if isinstance(run, str) and run else request_id}


def set_stage_dimension() -> None:
    """Every metric of this container carries its stage: dev, staging and prod share one
    namespace and region, and their alarms must never read each other's figures."""
    from shared.platform.settings import get_settings

    stage = get_settings().stage
    if metrics.default_dimensions.get("stage") != stage:
        metrics.set_default_dimensions(stage=stage)


def count_unhandled_error() -> None:
    """An answer 500: counted for the stage (the UnhandledErrors alarm), and for this function's
    version, which is what a canary's gate looks at: the new version's errors only."""
    counters.incr("UnhandledErrors")
    context = _invocation.get()
    if context is None:
        return
    with single_metric(name="UnhandledErrors", unit=MetricUnit.Count, value=1,
                       namespace=metrics.namespace,
                       default_dimensions=metrics.default_dimensions) as metric:
        metric.add_dimension(name="function_name", value=context.function_name)
        metric.add_dimension(name="function_version", value=str(context.function_version))


# The event the deployment's PreTraffic hook invokes a new version with (shared/platform/smoke.py).
SMOKE_CHECK_KEY = "marketing_hub_smoke_check"


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
        set_stage_dimension()
        token = _invocation.set(context)
        try:
            with invocation_log_keys(context, event):
                if isinstance(event, dict) and event.get(SMOKE_CHECK_KEY) is True:
                    from shared.platform.smoke import smoke_check  # a deployment's hook only

                    answer = smoke_check(handler)
                    if answer["smoke"] != "ok":
                        logger.error("smoke_check_failed", extra=answer)
                    return answer
                try:
                    return handler(event, context)
                finally:
                    counters.flush()
        finally:
            _invocation.reset(token)

    return wrapped

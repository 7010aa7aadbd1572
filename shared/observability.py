"""The one place where logger, tracer and metrics are created (Powertools reads its env vars)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="CrmVentas/MarketingHub")


def entrypoint(handler: Callable[[dict, Any], Any]) -> Callable[[dict, Any], Any]:
    """The fixed decorator stack of every Lambda entry point.

    Events and responses are never logged or traced: they can hold OAuth codes and tokens.
    """

    @logger.inject_lambda_context(log_event=False, clear_state=True)
    @tracer.capture_lambda_handler(capture_response=False, capture_error=False)
    @metrics.log_metrics(capture_cold_start_metric=True)
    @functools.wraps(handler)
    def wrapped(event: dict, context: Any) -> Any:
        return handler(event, context)

    return wrapped

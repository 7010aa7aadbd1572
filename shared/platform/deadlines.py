"""The time an invocation may spend on outside calls, from its Lambda context.

Apart from shared.meta.graph so that a handler can take its deadline without importing the Graph
client (and httpx) on events that never call Meta.
"""

from __future__ import annotations

import time
from typing import Any


def deadline_from_context(context: Any, reserve_seconds: float = 2.0) -> float:
    """A time.monotonic() deadline that leaves `reserve_seconds` for the Lambda to wrap up."""
    remaining = context.get_remaining_time_in_millis() / 1000.0
    return time.monotonic() + max(0.0, remaining - reserve_seconds)

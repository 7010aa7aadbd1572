"""boto3 clients, created on first use (never at import) and reused by the warm container.

boto3 honours AWS_ENDPOINT_URL itself, so local runs point every client at the emulator.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3, read_timeout=5)


@cache
def client(service: str) -> Any:
    return boto3.client(service, config=_CONFIG)


def reset_clients() -> None:
    client.cache_clear()

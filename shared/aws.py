"""boto3 clients, created on first use (never at import) and reused by the warm container.

boto3 honours AWS_ENDPOINT_URL itself, so local runs point every client at the emulator.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def client(service: str) -> Any:
    # boto3 is imported here, on first use: importing it costs a cold start ~0.1 s, and many
    # functions import this module (through shared.events) without calling AWS on every event.
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3,
                    read_timeout=5)
    return boto3.client(service, config=config)


def reset_clients() -> None:
    client.cache_clear()

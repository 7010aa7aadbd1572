"""AWS clients, created on first use (never at import) and reused by the warm container.

botocore honours AWS_ENDPOINT_URL itself, so local runs point every client at the emulator.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

_lock = threading.Lock()  # a botocore session must not create clients in two threads at once


@cache
def session() -> Any:
    # botocore is imported here, on first use, and clients come from its session directly:
    # boto3.client() returns the same botocore client, but importing boto3 also imports
    # s3transfer and multiprocessing (~20 ms of a cold start) for S3 helpers we never use.
    import botocore.session

    return botocore.session.get_session()


def create_client(service: str, config: Any) -> Any:
    """A new client from the container's one session."""
    with _lock:
        return session().create_client(service, config=config)


@cache
def client(service: str) -> Any:
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3,
                    read_timeout=5)
    return create_client(service, config)


def reset_clients() -> None:
    with _lock:
        client.cache_clear()
        session.cache_clear()

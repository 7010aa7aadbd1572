"""Reusable AWS fixtures backed by moto's in-process HTTP server (real API calls over HTTP).

Wire into a conftest with ``pytest_plugins = ["tests.fixtures_aws"]`` or import the
fixtures into a test module. The server is a process-wide singleton, so registering these
fixtures from more than one place still starts a single server.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer

AWS_REGION = "us-east-1"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}

_server: ThreadedMotoServer | None = None
_endpoint: str | None = None
_lock = threading.Lock()


def start_moto_server() -> str:
    """Start (once per process) moto on 127.0.0.1 with a free port; return its endpoint URL."""
    global _server, _endpoint
    with _lock:
        if _endpoint is None:
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            host, port = server.get_host_and_port()
            _server, _endpoint = server, f"http://{host}:{port}"
            atexit.register(stop_moto_server)
        return _endpoint


def stop_moto_server() -> None:
    global _server, _endpoint
    with _lock:
        if _server is not None:
            _server.stop()
        _server, _endpoint = None, None


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """The endpoint URL of a moto server running in this process for the whole session."""
    yield start_moto_server()
    stop_moto_server()


@pytest.fixture
def aws_env(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point boto3 at moto for one test: endpoint, region and fake credentials only."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_DEFAULT_REGION", AWS_REGION)
    monkeypatch.setenv("AWS_REGION", AWS_REGION)
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return moto_server

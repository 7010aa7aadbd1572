"""Reusable fixtures: a real sandbox server on an ephemeral port (import these from conftest)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.control import SandboxControl
from sandbox.server import RunningSandbox, start
from sandbox.world import SEED_APP_ID, SEED_APP_SECRET
from shared.meta.graph import GraphClient


@pytest.fixture(scope="session")
def meta_sandbox() -> Iterator[RunningSandbox]:
    running = start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def _sandbox_control_session(meta_sandbox: RunningSandbox) -> Iterator[SandboxControl]:
    with SandboxControl(meta_sandbox.url) as control:
        yield control


@pytest.fixture
def sandbox_control(_sandbox_control_session: SandboxControl) -> SandboxControl:
    """Control client on a freshly reset world (faults, latency and log cleared)."""
    _sandbox_control_session.reset()
    return _sandbox_control_session


@pytest.fixture
def graph_factory(meta_sandbox: RunningSandbox, sandbox_control: SandboxControl):
    """Build GraphClients against the sandbox (fast backoff for tests); closed after the test."""
    clients: list[GraphClient] = []

    def make(token: str | None = None, *, timeout: float = 2.0, deadline: float | None = None,
             app_secret: str = SEED_APP_SECRET, version: str = "v26.0",
             backoff_base: float = 0.02) -> GraphClient:
        client = GraphClient(token, app_secret=app_secret, base_url=meta_sandbox.url,
                             version=version, timeout=timeout, deadline=deadline,
                             app_id=SEED_APP_ID, backoff_base=backoff_base)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()

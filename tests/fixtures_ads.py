"""Fixtures for the ads tests: a fresh sandbox ads user per test, a tenant connected to Meta with a
token of that user (stored as the OAuth callback would), and settings overrides. Helpers (handler
invocation, Postgres reads as the app role inside tenant_tx) live in tests/ads_support.py.

Load with `pytest_plugins = ["tests.fixtures_ads"]`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared.platform.settings import get_settings
from tests.ads_support import AdsControl, ConnectedTenant, connect_meta


@pytest.fixture
def ads_control(stack) -> Iterator[AdsControl]:
    """Control client of the stack's sandbox; faults and latency are cleared afterwards."""
    with AdsControl(stack.sandbox.url) as control:
        yield control
        control.clear_faults()
        control.clear_latency()


@pytest.fixture
def ads_world(stack):
    """The sandbox's ads state in this process (to compute expected values from the seed)."""
    return stack.sandbox.world.area("ads")


@pytest.fixture
def meta_tenant(ads_control, tenant_id) -> ConnectedTenant:
    """A tenant whose stored token belongs to a fresh sandbox user with the standard layout."""
    layout = ads_control.new_user()
    token = connect_meta(ads_control, tenant_id, layout["user_id"])
    return ConnectedTenant(tenant_id, layout["user_id"], token, layout)


@pytest.fixture
def ads_settings(monkeypatch):
    """Set ADS_* (or any) settings for this test: env + cache, restored afterwards."""

    def apply(**values: Any) -> None:
        for key, value in values.items():
            monkeypatch.setenv(key.upper(), str(value))
        get_settings.cache_clear()

    yield apply
    monkeypatch.undo()
    get_settings.cache_clear()

"""Browser end-to-end setup: Debian's Chromium driven by pytest-playwright, against the session's
local stack with the dev routes (the reference page at /, the demo sign-in) added to its API.

No browser is downloaded: the tests use /usr/bin/chromium and are skipped, with the reason, when
it is missing. A failing test leaves a screenshot in test-results/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from devstack.dev_routes import DevRoutes

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and quiet on the network: no Google services, updates, sync or QUIC probes.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
# The machine is shared: give the page's API round trips time before an assertion fails.
expect.set_options(timeout=10_000)
RESULTS_DIR = Path(__file__).resolve().parents[2] / "test-results"
E2E_DIR = Path(__file__).resolve().parent


@pytest.hookimpl(trylast=True)  # after pytest's own reordering by parametrized fixtures
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the browser tests, skip them without Chromium, and run them after every other test:
    Playwright's sync API keeps an asyncio loop running in the main thread for the rest of the
    session, so a later test calling asyncio.run() (the token refresh, the dispatcher) would
    fail with "asyncio.run() cannot be called from a running event loop"."""
    skip = pytest.mark.skip(reason=f"browser e2e tests need Chromium at {CHROMIUM} "
                                   "(apt-get install -y chromium)")
    browser, others = [], []
    for item in items:
        if E2E_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
            if not CHROMIUM.exists():
                item.add_marker(skip)
            browser.append(item)
        else:
            others.append(item)
    items[:] = others + browser


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "headless": True,
            "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser(launch_browser) -> Iterator[Browser]:
    """pytest-playwright's browser, declared here as well: another test module's plugin
    (tests/fixtures_oauth.py) has a fixture of the same name, which would otherwise win."""
    launched = launch_browser()
    yield launched
    launched.close()


@pytest.fixture(scope="session")
def hub(stack) -> Iterator:
    """The session's stack, also serving the reference page and the dev routes (local only).
    FRONTEND_URL is the local API's own origin, so the OAuth callback lands on the page."""
    added = {path: route for path, route in DevRoutes(stack).table().items()
             if path not in stack.api.extra_routes}
    stack.api.extra_routes.update(added)
    yield stack
    for path in added:
        stack.api.extra_routes.pop(path, None)


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict, hub) -> dict:
    return {**browser_context_args, "base_url": hub.api_url, "locale": "es-ES"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Screenshot a failed test's page while it is still open (before fixture teardown)."""
    outcome = yield
    report = outcome.get_result()
    page = getattr(item, "funcargs", {}).get("page")
    if report.when == "call" and report.failed and page is not None and not page.is_closed():
        RESULTS_DIR.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid)[-150:]
        path = RESULTS_DIR / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        report.sections.append(("screenshot", str(path)))

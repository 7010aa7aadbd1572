"""Per-tenant budgets for the routes that call Meta on a click (shared/connection/budget.py).

One tenant clicking the wizard, the WhatsApp accounts, the connects and "refresh now" again and
again gets 429 `rate_limited` with Retry-After once its bucket is empty, and Meta hears nothing
of those requests; another tenant is served as before. The bucket is a Postgres row, so every
container (here: every request thread, and this test's own connection) draws from the same one.
"""

from __future__ import annotations

import threading

import pytest

from shared.connection import budget
from shared.platform.db import tenant_tx
from shared.platform.errors import TooManyMetaRequests
from shared.platform.settings import get_settings
from tests.reliability.conftest import assert_error, bearer, populate

BURST = 3
PER_MINUTE = 6  # one request every 10 s

# Every route that calls Meta on a tenant admin's click, with a body where it takes one.
ON_CLICK = [("GET", "/crm/marketing/meta-accounts", None),
            ("GET", "/crm/marketing/whatsapp-accounts", None),
            ("POST", "/crm/marketing/connect", {"account_id": "act_1"}),
            ("POST", "/crm/auth/meta/refresh-tokens", None)]
WHATSAPP_ACCOUNTS = ON_CLICK[1]  # answers 200 for the populated tenants (WhatsApp scopes only)


@pytest.fixture
def small_budget(monkeypatch):
    monkeypatch.setenv("META_BUDGET_BURST", str(BURST))
    monkeypatch.setenv("META_BUDGET_PER_MINUTE", str(PER_MINUTE))
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def _click(api, tenant_id: str, method: str, path: str, body):
    return api.http.request(method, path, json=body, headers=bearer(tenant_id))


def test_one_tenant_clicking_again_and_again_gets_429_and_meta_hears_nothing_more(
        api, wa, meta, populated, other_tenant_id, owner, small_budget):
    a = populated
    b = populate(api, wa, meta, other_tenant_id)
    routes = [*ON_CLICK, ("POST", "/crm/marketing/whatsapp/connect",
                          {"waba_id": a.setup.waba_id,
                           "phone_number_id": a.setup.phone_number_id})]
    answers = [_click(api, a.tenant_id, *route) for route in routes[:BURST]]
    assert all(r.status_code != 429 for r in answers), [r.text for r in answers]
    heard = len(meta.requests())
    for route in routes:  # every one of them draws from the same, now empty, bucket
        refused = _click(api, a.tenant_id, *route)
        error = assert_error(refused, 429, "rate_limited")
        assert 1 <= int(refused.headers["retry-after"]) <= 60 // PER_MINUTE, route
        assert refused.headers["retry-after"] in error["message"]
    assert len(meta.requests()) == heard  # nothing of the refused requests reached Meta
    # Another tenant is served as before.
    assert _click(api, b.tenant_id, *WHATSAPP_ACCOUNTS).status_code == 200
    # The bucket is shared: a connection of another "container" finds it empty too ...
    with pytest.raises(TooManyMetaRequests), tenant_tx(a.tenant_id) as conn:
        budget.spend(conn, a.tenant_id)
    # ... and it refills with time (10 s here, moved back by hand rather than waited for).
    owner.execute("UPDATE meta_call_budgets SET refilled_at = refilled_at - interval '10 s'"
                  " WHERE tenant_id = %s", (a.tenant_id,))
    assert _click(api, a.tenant_id, *WHATSAPP_ACCOUNTS).status_code == 200
    assert _click(api, a.tenant_id, *WHATSAPP_ACCOUNTS).status_code == 429


def test_simultaneous_clicks_take_at_most_the_burst(api, populated, small_budget):
    start = threading.Barrier(8, timeout=30)
    codes: list[int] = []

    def click() -> None:
        start.wait()
        codes.append(_click(api, populated.tenant_id, *WHATSAPP_ACCOUNTS).status_code)

    threads = [threading.Thread(target=click) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(codes) == 8
    assert codes.count(429) == 8 - BURST, codes


def test_a_tenant_not_connected_is_told_so_without_spending(api, tenant_id, small_budget):
    for _ in range(BURST + 2):
        assert_error(_click(api, tenant_id, *ON_CLICK[0]), 409, "meta_not_connected")
    with tenant_tx(tenant_id) as conn:
        assert conn.execute("SELECT count(*) AS n FROM meta_call_budgets").fetchone()["n"] == 0

"""Stats answers are cached per container by the tenant's data version (migrations/0008,
shared/platform/answer_cache.py): a repeated read is served from the cache, and every kind of
write that can change an answer makes the next read build it again, for whole-month and partial
ranges."""

from __future__ import annotations

from datetime import UTC, date, datetime

import psycopg
import pytest

from shared.ads import stats
from shared.ads import stats_store as store
from shared.ads.store import InsightRow, upsert_insights
from shared.platform.answer_cache import VersionedAnswers
from shared.platform.db import tenant_tx
from shared.platform.settings import get_settings
from tests.ads_support import insert_account

MARCH = {"from": "2026-03-01", "to": "2026-03-31"}
MID_MARCH = {"from": "2026-03-10", "to": "2026-03-20"}


def _add_lead(tenant_id: str, created: str, campaign: str | None = "c1", **extra) -> None:
    with tenant_tx(tenant_id) as conn:
        conn.execute(
            "INSERT INTO leads (tenant_id, name, created_at, meta_campaign_id, lead_source,"
            " status, deal_value, deal_currency) VALUES (%s, 'x', %s, %s, 'meta_ads', %s, %s, %s)",
            (tenant_id, datetime.fromisoformat(created).replace(tzinfo=UTC), campaign,
             extra.get("status", "new"), extra.get("value"), extra.get("currency")))


@pytest.fixture
def stats_tenant(stack, tenant_id) -> str:
    insert_account(tenant_id, "act_1", currency="EUR", name="Cuenta")
    with tenant_tx(tenant_id) as conn:
        conn.execute("INSERT INTO meta_ads_campaigns (tenant_id, campaign_id, account_id, name,"
                     " status) VALUES (%s, 'c1', 'act_1', 'Primavera', 'ACTIVE')", (tenant_id,))
        upsert_insights(conn, tenant_id, "act_1", "EUR",
                        [InsightRow("c1", date(2026, 3, 12), 100, 1000, 10, 2)])
    _add_lead(tenant_id, "2026-03-12T10:00:00", status="won", value=300)
    return tenant_id


def _stats(api, tenant_id: str, params: dict | None = None, path: str = "/crm/marketing/stats"
           ) -> dict:
    response = api.get(path, tenant_id=tenant_id, role="member", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _version(tenant_id: str) -> int:
    with tenant_tx(tenant_id) as conn:
        return store.data_version(conn, tenant_id)[0]


def test_a_repeated_read_is_served_from_the_cache(api, stats_tenant):
    first = api.get("/crm/marketing/stats", tenant_id=stats_tenant, role="member")
    key = (stats_tenant, "stats", None, None)
    cached = stats._answers.get(key, _version(stats_tenant))

    assert cached == first.text
    second = api.get("/crm/marketing/stats", tenant_id=stats_tenant, role="member")
    assert second.text == first.text


@pytest.mark.parametrize("params", [None, MARCH, MID_MARCH])
def test_every_kind_of_write_shows_in_the_next_answer(api, stats_tenant, params):
    def c1() -> dict:
        return {c["campaign_id"]: c for c in _stats(api, stats_tenant, params)["campaigns"]}["c1"]

    assert (c1()["leads"], c1()["revenue"], c1()["spend"]) == (1, 300.0, 100.0)

    _add_lead(stats_tenant, "2026-03-15T09:00:00")                       # the CRM adds a lead
    assert c1()["leads"] == 2
    with tenant_tx(stats_tenant) as conn:                                # ... and wins a deal
        conn.execute("UPDATE leads SET status = 'won', deal_value = 50 WHERE created_at"
                     " = '2026-03-15T09:00:00Z'")
    assert c1()["revenue"] == 350.0
    with tenant_tx(stats_tenant) as conn:  # moved inside March: the month's rollup nets to 0
        conn.execute("UPDATE leads SET created_at = '2026-03-25T09:00:00Z' WHERE created_at"
                     " = '2026-03-15T09:00:00Z'")
    assert c1()["leads"] == (1 if params == MID_MARCH else 2)
    with tenant_tx(stats_tenant) as conn:                                # the sync's insights
        upsert_insights(conn, stats_tenant, "act_1", "EUR",
                        [InsightRow("c1", date(2026, 3, 14), 40, 100, 1, 0)])
    assert c1()["spend"] == 140.0
    with tenant_tx(stats_tenant) as conn:                                # campaign metadata
        conn.execute("UPDATE meta_ads_campaigns SET name = 'Otoño' WHERE campaign_id = 'c1'")
    assert c1()["name"] == "Otoño"
    with tenant_tx(stats_tenant) as conn:                                # the account currency
        conn.execute("UPDATE tenant_meta_accounts SET currency = 'USD'")
        conn.execute("UPDATE meta_ads_insights SET currency = NULL")
    assert c1()["currency"] == "USD"
    with tenant_tx(stats_tenant) as conn:
        conn.execute("DELETE FROM leads")
    assert c1()["leads"] == 0


def test_the_roi_view_is_cached_apart_and_invalidated_too(api, stats_tenant):
    assert _stats(api, stats_tenant, path="/crm/marketing/stats/roi")["campaigns"][0]["roi"] == 2.0
    _add_lead(stats_tenant, "2026-03-06T10:00:00", status="won", value=100)
    roi = _stats(api, stats_tenant, path="/crm/marketing/stats/roi")
    assert roi["campaigns"][0]["roi"] == 3.0
    assert "impressions" not in roi["campaigns"][0]


def test_the_version_moves_with_committed_writes_only(stats_tenant, other_tenant_id):
    before = _version(stats_tenant)
    with pytest.raises(RuntimeError), tenant_tx(stats_tenant) as conn:
        conn.execute("INSERT INTO leads (tenant_id, name) VALUES (%s, 'rolled back')",
                     (stats_tenant,))
        raise RuntimeError("abort")
    assert _version(stats_tenant) == before

    _add_lead(other_tenant_id, "2026-03-07T10:00:00")  # another tenant's write
    assert _version(stats_tenant) == before
    with tenant_tx(stats_tenant) as conn:  # a statement that changes no row
        conn.execute("UPDATE leads SET status = 'lost' WHERE false")
    assert _version(stats_tenant) == before

    _add_lead(stats_tenant, "2026-03-07T10:00:00")
    assert _version(stats_tenant) > before


def test_folding_the_log_keeps_the_version(stats_tenant):
    for day in range(1, 10):
        _add_lead(stats_tenant, f"2026-04-0{day}T10:00:00")
    with tenant_tx(stats_tenant) as conn:
        version, rows = store.data_version(conn, stats_tenant)
        assert rows > 1
        store.fold_version_log(conn)
        assert store.data_version(conn, stats_tenant) == (version, 1)
    _add_lead(stats_tenant, "2026-04-11T10:00:00")
    assert _version(stats_tenant) == version + 1


def test_a_long_rebuild_folds_the_log(api, stats_tenant):
    for day in range(70):
        _add_lead(stats_tenant, f"2026-05-{day % 28 + 1:02d}T10:00:00")
    with tenant_tx(stats_tenant) as conn:
        assert store.data_version(conn, stats_tenant)[1] > 64
    _stats(api, stats_tenant)
    with tenant_tx(stats_tenant) as conn:
        assert store.data_version(conn, stats_tenant)[1] == 1


def test_concurrent_lead_writes_of_one_tenant_do_not_wait_for_each_other(stats_tenant):
    """The version is an append-only log, not a counter row: two open transactions writing
    the same tenant's leads (of different campaigns, so that no rollup row is shared) never
    queue on it; a lock wait would fail at lock_timeout instead of hanging."""
    dsn = get_settings().database_dsn()
    with psycopg.connect(dsn) as first, psycopg.connect(dsn) as second:
        for conn, campaign in ((first, "c8"), (second, "c9")):
            conn.execute("SET lock_timeout = '2s'")
            conn.execute("SELECT set_config('app.tenant_id', %s, false)", (stats_tenant,))
            conn.execute("INSERT INTO leads (tenant_id, name, meta_campaign_id, lead_source)"
                         " VALUES (%s, 'open', %s, 'meta_ads')", (stats_tenant, campaign))
        first.commit()
        second.commit()


def test_tenants_see_only_their_own_change_log(stats_tenant, other_tenant_id):
    _add_lead(other_tenant_id, "2026-03-07T10:00:00")
    with tenant_tx(stats_tenant) as conn:
        seen = conn.execute("SELECT DISTINCT tenant_id FROM stats_changes").fetchall()
        assert [r["tenant_id"] for r in seen] == [stats_tenant]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO stats_changes (tenant_id) VALUES (%s)", (stats_tenant,))


def test_an_older_answer_never_replaces_a_newer_one():
    answers = VersionedAnswers(size=2)
    answers.put("k", 5, "new")
    answers.put("k", 4, "old")  # a slower request that read an earlier snapshot
    assert (answers.get("k", 5), answers.get("k", 4)) == ("new", None)
    answers.put("a", 1, "a")
    answers.put("b", 1, "b")  # the least recently used ("k") goes
    assert answers.get("k", 5) is None
    assert (answers.get("a", 1), answers.get("b", 1)) == ("a", "b")

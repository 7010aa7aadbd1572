"""The monthly rollups behind the stats (migrations/0007) stay exact under every kind of write,
and the stats reads (whole months from the rollups, edge days from the daily rows) give what a
brute-force aggregation of the raw rows gives, for ranges of every shape."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest

from shared.ads import stats_store as store
from shared.ads.store import InsightRow, upsert_insights
from shared.platform.db import tenant_tx

CAMPAIGNS = ["c1", "c2", "c3", "c4"]
SOURCES = ["meta_ads", "Facebook", "website", None, "IG"]
STATUSES = ["new", "won", "lost", "contacted"]
FIRST_DAY = date(2026, 1, 20)
DAYS = 120  # 2026-01-20 .. 2026-05-19: partial, whole and partial months


def _seed(tenant_id: str, rng: random.Random) -> None:
    with tenant_tx(tenant_id) as conn:
        for campaign in CAMPAIGNS:
            rows = [InsightRow(campaign, FIRST_DAY + timedelta(days=d),
                               Decimal(rng.randint(0, 9999)) / 100, rng.randint(0, 900),
                               rng.randint(0, 60), rng.randint(0, 5))
                    for d in range(DAYS) if rng.random() < 0.8]
            currency = "USD" if campaign == "c4" else "EUR"
            upsert_insights(conn, tenant_id, "act_1", currency, rows)  # the sync's own write
        leads = []
        for _ in range(400):
            created = datetime.combine(FIRST_DAY + timedelta(days=rng.randrange(DAYS)),
                                       time(rng.randrange(24), rng.randrange(60)), UTC)
            status = rng.choice(STATUSES)
            leads.append((tenant_id, rng.choice(CAMPAIGNS + [None, None]), rng.choice(SOURCES),
                          status, created, Decimal(rng.randint(1, 999)) if rng.random() < 0.7
                          else None, rng.choice(["EUR", "EUR", "USD", None])))
        with conn.cursor() as cur:  # one statement per row, as a CRM writing leads one by one
            cur.executemany("INSERT INTO leads (tenant_id, meta_campaign_id, lead_source, status,"
                            " created_at, deal_value, deal_currency)"
                            " VALUES (%s, %s, %s, %s, %s, %s, %s)", leads)


def _mutate(tenant_id: str, rng: random.Random) -> None:
    """Every kind of write that moves a figure between groups, or out of the stats."""
    with tenant_tx(tenant_id) as conn:
        ids = [r["id"] for r in conn.execute("SELECT id FROM leads ORDER BY id").fetchall()]
        pick = rng.sample(ids, 120)
        conn.execute("UPDATE leads SET status = 'won', deal_value = 42 WHERE id = ANY(%s)",
                     (pick[:30],))
        conn.execute("UPDATE leads SET meta_campaign_id = 'c2' WHERE id = ANY(%s)", (pick[30:50],))
        conn.execute("UPDATE leads SET created_at = created_at - interval '17 days'"
                     " WHERE id = ANY(%s)", (pick[50:70],))
        conn.execute("UPDATE leads SET deal_currency = 'MXN' WHERE id = ANY(%s)", (pick[70:80],))
        conn.execute("UPDATE leads SET lead_source = 'website', meta_campaign_id = NULL"
                     " WHERE id = ANY(%s)", (pick[80:90],))
        conn.execute("UPDATE leads SET last_contacted_at = now()")  # nets to nothing
        conn.execute("DELETE FROM leads WHERE id = ANY(%s)", (pick[90:120],))
        # Late attribution rewrites recent days; a currency correction; deleted days.
        rows = [InsightRow("c1", FIRST_DAY + timedelta(days=d), Decimal("12.34"), 7, 1, 1)
                for d in range(DAYS - 28, DAYS)]
        upsert_insights(conn, tenant_id, "act_1", "EUR", rows)
        conn.execute("UPDATE meta_ads_insights SET currency = 'GBP'"
                     " WHERE campaign_id = 'c2' AND date < %s", (date(2026, 2, 10),))
        conn.execute("DELETE FROM meta_ads_insights WHERE campaign_id = 'c3'"
                     " AND date BETWEEN %s AND %s", (date(2026, 3, 1), date(2026, 3, 31)))


def _brute_insights(conn, tenant_id: str, start: date, end: date) -> dict:
    rows = conn.execute(
        "SELECT campaign_id, currency, sum(spend) AS spend, sum(impressions) AS impressions,"
        " sum(clicks) AS clicks, sum(leads) AS meta_leads, min(date) AS first_date,"
        " max(date) AS last_date FROM meta_ads_insights WHERE tenant_id = %s"
        " AND date BETWEEN %s AND %s GROUP BY 1, 2", (tenant_id, start, end)).fetchall()
    return _keyed(rows)


def _brute_leads(conn, tenant_id: str, start: date, end: date) -> dict:
    rows = conn.execute(
        f"SELECT meta_campaign_id AS campaign_id, deal_currency, count(*) AS leads,"
        f" count(*) FILTER (WHERE status = 'won') AS won_leads,"
        f" coalesce(sum(deal_value) FILTER (WHERE status = 'won'), 0) AS revenue"
        f" FROM leads WHERE tenant_id = %s AND {store.META_LEAD_FILTER}"
        f" AND created_at >= %s AND created_at < %s GROUP BY 1, 2",  # noqa: S608 - constant
        (tenant_id, datetime.combine(start, time.min, UTC),
         datetime.combine(end + timedelta(days=1), time.min, UTC))).fetchall()
    return _keyed(rows)


def _keyed(rows: list[dict]) -> dict:
    out = {}
    for row in rows:
        key = (row["campaign_id"], row.get("currency", row.get("deal_currency")))
        values = {k: v for k, v in row.items() if k not in ("campaign_id", "currency",
                                                            "deal_currency")}
        if any(v for v in values.values() if not isinstance(v, date)):
            out[key] = {k: (Decimal(v) if isinstance(v, Decimal | int) and not
                            isinstance(v, bool) else v) for k, v in values.items()}
    return out


RANGES = [
    (date(2000, 1, 1), date(9999, 12, 30)),   # all time: rollups only
    (date(2026, 2, 1), date(2026, 4, 30)),    # whole months only
    (date(2026, 1, 25), date(2026, 5, 3)),    # edges on both sides
    (date(2026, 3, 5), date(2026, 3, 20)),    # inside one month: days only
    (date(2026, 2, 15), date(2026, 3, 14)),   # across a boundary, no whole month
    (date(2026, 3, 1), date(2026, 3, 31)),    # exactly one month
    (date(2026, 4, 30), date(2026, 4, 30)),   # one day
    (date(2026, 1, 1), date(2026, 1, 31)),    # data starts mid-month
]


@pytest.fixture
def rolled_up_tenant(stack, tenant_id):
    rng = random.Random(20261128)
    _seed(tenant_id, rng)
    _mutate(tenant_id, rng)
    return tenant_id


@pytest.mark.parametrize(("start", "end"), RANGES)
def test_stats_reads_equal_a_brute_force_aggregation(rolled_up_tenant, start, end):
    with tenant_tx(rolled_up_tenant) as conn:
        assert _keyed(store.insight_totals(conn, rolled_up_tenant, start, end)) == \
            _brute_insights(conn, rolled_up_tenant, start, end)
        assert _keyed(store.lead_totals(conn, rolled_up_tenant, start, end)) == \
            _brute_leads(conn, rolled_up_tenant, start, end)


def test_random_ranges_equal_a_brute_force_aggregation(rolled_up_tenant):
    rng = random.Random(7)
    with tenant_tx(rolled_up_tenant) as conn:
        for _ in range(40):
            start = FIRST_DAY - timedelta(days=30) + timedelta(days=rng.randrange(DAYS + 30))
            end = start + timedelta(days=rng.randrange(100))
            assert _keyed(store.insight_totals(conn, rolled_up_tenant, start, end)) == \
                _brute_insights(conn, rolled_up_tenant, start, end), (start, end)
            assert _keyed(store.lead_totals(conn, rolled_up_tenant, start, end)) == \
                _brute_leads(conn, rolled_up_tenant, start, end), (start, end)


def test_rollups_hold_one_row_per_month_and_nothing_for_emptied_months(rolled_up_tenant):
    with tenant_tx(rolled_up_tenant) as conn:
        months = conn.execute("SELECT campaign_id, currency, month FROM meta_ads_insights_monthly"
                              " ORDER BY 1, 2, 3").fetchall()
        assert ("c3", "EUR", date(2026, 3, 1)) not in {tuple(m.values()) for m in months}
        assert len(months) == len({tuple(m.values()) for m in months})
        # The rollup rows are a small fraction of what a stats answer used to read.
        days = conn.execute("SELECT count(*) AS n FROM meta_ads_insights").fetchone()["n"]
        assert len(months) * 10 < days


def test_tenants_see_only_their_own_rollups(rolled_up_tenant, other_tenant_id):
    with tenant_tx(other_tenant_id) as conn:
        assert conn.execute("SELECT count(*) AS n FROM meta_ads_insights_monthly"
                            ).fetchone()["n"] == 0
        assert conn.execute("SELECT count(*) AS n FROM leads_meta_monthly").fetchone()["n"] == 0
        assert store.lead_totals(conn, rolled_up_tenant, date(2000, 1, 1),
                                 date(9999, 12, 30)) == []


def test_the_application_role_cannot_write_rollups_directly(rolled_up_tenant):
    import psycopg

    with pytest.raises(psycopg.errors.InsufficientPrivilege), \
            tenant_tx(rolled_up_tenant) as conn:
        conn.execute("UPDATE leads_meta_monthly SET leads = leads + 1")


def test_rollups_work_when_the_owner_is_not_a_superuser(stack):
    """In RDS the schema owner is an ordinary role, subject to the FORCEd row-level security:
    the migrations (backfill included) and the SECURITY DEFINER triggers must work for it."""
    import uuid

    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from shared.platform.migrator import migrate

    suffix = uuid.uuid4().hex[:8]
    owner, name = f"mh_owner_{suffix}", f"mh_rollups_{suffix}"
    admin = stack.database.owner_dsn  # the local superuser
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {owner} LOGIN NOSUPERUSER NOBYPASSRLS")
        conn.execute(f"CREATE DATABASE {name} OWNER {owner}")
        # docs/DEPLOY.md: the master user lets the owner hand the lookups to marketing_lookup.
        conn.execute(f"GRANT marketing_lookup TO {owner} WITH INHERIT FALSE, SET TRUE")
    params = conninfo_to_dict(admin)
    try:
        owner_dsn = make_conninfo(**{**params, "dbname": name, "user": owner})
        migrate(owner_dsn)
        app_dsn = make_conninfo(**{**params, "dbname": name, "user": "marketing_app"})
        with psycopg.connect(owner_dsn, autocommit=True) as conn:
            conn.execute(f"GRANT CONNECT ON DATABASE {name} TO marketing_app")
        with psycopg.connect(app_dsn) as conn, conn.transaction():
            conn.execute("SELECT set_config('app.tenant_id', 't-rds', true)")
            conn.execute("INSERT INTO leads (tenant_id, meta_campaign_id, status, deal_value,"
                         " created_at) VALUES ('t-rds', 'c1', 'won', 10, '2026-03-05'),"
                         " ('t-rds', 'c1', 'new', NULL, '2026-03-06')")
            conn.execute("INSERT INTO meta_ads_insights (tenant_id, campaign_id, date,"
                         " account_id, currency, spend) VALUES ('t-rds', 'c1', '2026-03-05',"
                         " 'a', 'EUR', 5)")
            leads = conn.execute("SELECT leads, won_leads, revenue FROM leads_meta_monthly"
                                 ).fetchall()
            spend = conn.execute("SELECT spend FROM meta_ads_insights_monthly").fetchall()
        assert leads == [(2, 1, Decimal("10.00"))]
        assert spend == [(Decimal("5.0000"),)]
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"DROP ROLE IF EXISTS {owner}")

"""The stats and ROI answers Postgres builds (shared/ads/stats_json.py) equal the plain Python
reading of the rules (tests/stats_reference.py) on random tenants with messy data: several
currencies per campaign, insights and deals without a currency, campaigns without an account or
without insights, unattributed leads, tenants with no, one or several account currencies, and
ranges with whole and partial months."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest

from shared.ads import stats
from shared.ads.stats import DateRange
from shared.ads.store import InsightRow, upsert_insights
from shared.platform.db import tenant_tx
from tests import stats_reference as reference

CURRENCIES = ["EUR", "USD", "MXN", None]
FIRST_DAY = date(2026, 1, 20)
RANGES = [(None, None), (date(2026, 2, 1), date(2026, 3, 31)),
          (date(2026, 1, 25), date(2026, 4, 3)), (date(2026, 3, 5), date(2026, 3, 6))]
ACCOUNT_LAYOUTS = [[], ["EUR"], ["EUR", "USD"], ["EUR", None], ["USD", "USD"]]


def _seed(tenant_id: str, rng: random.Random) -> None:
    accounts = rng.choice(ACCOUNT_LAYOUTS)
    campaigns = [f"c{i}" for i in range(8)]
    with tenant_tx(tenant_id) as conn:
        for i, currency in enumerate(accounts):
            conn.execute("INSERT INTO tenant_meta_accounts (tenant_id, account_id, name, currency)"
                         " VALUES (%s, %s, 'a', %s)", (tenant_id, f"act_{i + 1}", currency))
        for i, campaign in enumerate(campaigns[:6]):  # c6, c7: not synced
            account = f"act_{i % len(accounts) + 1}" if accounts else "act_9"
            conn.execute("INSERT INTO meta_ads_campaigns (tenant_id, campaign_id, account_id,"
                         " name, status) VALUES (%s, %s, %s, %s, 'ACTIVE')",
                         (tenant_id, campaign, account, rng.choice(["Á", "b", "B", "", "ä"])))
        for campaign in campaigns[:7]:  # c7: leads only
            for currency in rng.sample(CURRENCIES, rng.randint(1, 2)):
                upsert_insights(conn, tenant_id, "act_1", currency, [
                    InsightRow(campaign, FIRST_DAY + timedelta(days=d),
                               Decimal(rng.randint(0, 99999)) / 100, rng.randint(0, 50),
                               rng.randint(0, 5), rng.randint(0, 3))
                    for d in range(0, 100, rng.randint(3, 9))])
        leads = [(tenant_id, rng.choice([*campaigns, None, None]),
                  rng.choice(["meta_ads", "web", "IG", None]), rng.choice(["won", "new", "lost"]),
                  datetime.combine(FIRST_DAY + timedelta(days=rng.randrange(100)),
                                   time(rng.randrange(24)), UTC),
                  Decimal(rng.randint(0, 999)) if rng.random() < 0.7 else None,
                  rng.choice(CURRENCIES))
                 for _ in range(300)]
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO leads (tenant_id, meta_campaign_id, lead_source, status,"
                            " created_at, deal_value, deal_currency)"
                            " VALUES (%s, %s, %s, %s, %s, %s, %s)", leads)


@pytest.mark.parametrize("seed", range(8))
def test_sql_answers_equal_the_reference(stack, seed):
    tenant_id = f"t-{uuid.uuid4().hex[:12]}"
    _seed(tenant_id, random.Random(seed))
    for start, end in RANGES:
        period = DateRange(start, end)
        expected = reference.compute(tenant_id, period)
        for view, want in (("stats", reference.stats_json(expected)),
                           ("roi", reference.roi_json(expected))):
            got = json.loads(stats.stats_body(tenant_id, period, view))
            assert got == json.loads(json.dumps(want)), (seed, start, end, view)

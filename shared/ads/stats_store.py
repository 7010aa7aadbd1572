"""Set-based reads behind the marketing stats. No HTTP here; callers pass a tenant_tx connection.

Each query aggregates in Postgres and returns at most one row per campaign (and currency), so the
Python side only joins a few thousand small rows, whatever the number of leads or insight days.
The whole calendar months of a range come from the monthly rollups that triggers keep
(migrations/0007_stats_rollups.up.sql): one row per campaign and month instead of one per day or
per lead. Only the partial months at the range's edges read the daily rows, through the
index-only scans of migrations/0004_ads.up.sql.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg

# Kept verbatim equal to the predicate of leads_meta_stats_idx (0004), so the planner proves the
# partial index applies. Which lead_source values mean "came from Meta" is decided here.
META_LEAD_SOURCES = ("meta", "meta_ads", "facebook", "facebook_ads", "instagram",
                     "instagram_ads", "fb", "ig", "meta_lead_ads", "facebook_lead_ads")
META_LEAD_FILTER = (
    "(meta_campaign_id IS NOT NULL"
    " OR lower(lead_source) IN ('meta', 'meta_ads', 'facebook', 'facebook_ads', 'instagram',"
    " 'instagram_ads', 'fb', 'ig', 'meta_lead_ads', 'facebook_lead_ads'))"
)


def campaigns(conn: psycopg.Connection, tenant_id: str, account_id: str | None = None
              ) -> list[dict[str, Any]]:
    return conn.execute(
        """
        SELECT c.campaign_id, c.name, c.account_id, c.status, c.effective_status, c.objective,
               a.currency AS account_currency, a.name AS account_name
        FROM meta_ads_campaigns c
        LEFT JOIN tenant_meta_accounts a
               ON a.tenant_id = c.tenant_id AND a.account_id = c.account_id
        WHERE c.tenant_id = %(tenant)s AND (%(account)s::text IS NULL OR c.account_id = %(account)s)
        """,
        {"tenant": tenant_id, "account": account_id},
    ).fetchall()


@dataclass(frozen=True)
class MonthSplit:
    """[start, end] (days, inclusive) as whole months [first_month, last_month] (first days of
    months, inclusive) plus the days before `first_month` and after the end of `last_month`.
    Without a whole month inside, first_month > last_month and the edges cover everything."""

    start: date
    end: date
    first_month: date
    last_month: date

    @classmethod
    def of(cls, start: date, end: date) -> MonthSplit:
        first = start if start.day == 1 else _next_month(start)
        day_after = end + timedelta(days=1)
        last = end.replace(day=1) if day_after.day == 1 else _previous_month(end.replace(day=1))
        if first > last:  # no whole month: nothing from the rollups, all from the days
            return cls(start, end, first_month=day_after, last_month=start)
        return cls(start, end, first, last)

    @property
    def after_last_month(self) -> date:
        """The first day after the last whole month (the second edge starts here)."""
        return _next_month(self.last_month) if self.first_month <= self.last_month else \
            self.end + timedelta(days=1)

    def params(self, tenant_id: str) -> dict[str, Any]:
        return {"tenant": tenant_id, "start": self.start, "end": self.end,
                "first_month": self.first_month, "last_month": self.last_month,
                "after": self.after_last_month}

    def instant_params(self, tenant_id: str) -> dict[str, Any]:
        """The same split in UTC instants, for leads (created_at): [start, end + 1 day)."""
        def at(day: date) -> datetime:
            return datetime.combine(day, time.min, UTC)

        return {**self.params(tenant_id), "start_at": at(self.start),
                "first_month_at": at(self.first_month), "after_at": at(self.after_last_month),
                "end_at": at(self.end + timedelta(days=1))}


def _next_month(day: date) -> date:
    """The first day of the next month. After December 9999 there is none (date's range ends):
    date.max then stands for "after every day", which is how the split uses the value."""
    if day.month == 12:
        return date(day.year + 1, 1, 1) if day.year < date.max.year else date.max
    return date(day.year, day.month + 1, 1)


def _previous_month(first_day: date) -> date:
    return (first_day - timedelta(days=1)).replace(day=1)


# Per (campaign, currency) insight sums over [start, end] (the insight's day, account time).
INSIGHT_TOTALS_SQL = """
        SELECT campaign_id, currency, sum(spend) AS spend, sum(impressions) AS impressions,
               sum(clicks) AS clicks, sum(leads) AS meta_leads,
               min(first_date) AS first_date, max(last_date) AS last_date
        FROM (
            SELECT campaign_id, currency, spend, impressions, clicks, leads, first_date,
                   last_date
            FROM meta_ads_insights_monthly
            WHERE tenant_id = %(tenant)s AND month >= %(first_month)s
              AND month <= %(last_month)s
            UNION ALL
            SELECT campaign_id, currency, spend, impressions, clicks, leads, date, date
            FROM meta_ads_insights
            WHERE tenant_id = %(tenant)s
              AND ((date >= %(start)s AND date < least(%(first_month)s, %(after)s))
                   OR (date >= greatest(%(after)s, %(start)s) AND date <= %(end)s))
        ) parts
        GROUP BY campaign_id, currency
        """

# Meta leads created in the UTC days [start, end], per (campaign or NULL, deal currency): counts
# and won revenue (deal_value of status 'won').
LEAD_TOTALS_SQL = f"""
        SELECT campaign_id, deal_currency, sum(leads) AS leads, sum(won_leads) AS won_leads,
               sum(revenue) AS revenue
        FROM (
            SELECT campaign_id, currency AS deal_currency, leads, won_leads, revenue
            FROM leads_meta_monthly
            WHERE tenant_id = %(tenant)s AND month >= %(first_month)s
              AND month <= %(last_month)s
            UNION ALL
            SELECT meta_campaign_id, deal_currency, count(*),
                   count(*) FILTER (WHERE status = 'won'),
                   coalesce(sum(deal_value) FILTER (WHERE status = 'won'), 0)
            FROM leads
            WHERE tenant_id = %(tenant)s AND {META_LEAD_FILTER}
              AND ((created_at >= %(start_at)s
                    AND created_at < least(%(first_month_at)s, %(after_at)s))
                   OR (created_at >= greatest(%(after_at)s, %(start_at)s)
                       AND created_at < %(end_at)s))
            GROUP BY meta_campaign_id, deal_currency
        ) parts
        GROUP BY campaign_id, deal_currency
        """  # noqa: S608 - a constant predicate, no input in it


def insight_totals(conn: psycopg.Connection, tenant_id: str, start: date, end: date
                   ) -> list[dict[str, Any]]:
    """INSIGHT_TOTALS_SQL's rows (campaigns_json reads them; the stats build on the SQL)."""
    return conn.execute(INSIGHT_TOTALS_SQL, MonthSplit.of(start, end).params(tenant_id)).fetchall()


def lead_totals(conn: psycopg.Connection, tenant_id: str, start: date, end: date
                ) -> list[dict[str, Any]]:
    """LEAD_TOTALS_SQL's rows, as the stats JSON query sees them."""
    return conn.execute(LEAD_TOTALS_SQL,
                        MonthSplit.of(start, end).instant_params(tenant_id)).fetchall()


# The tenant's stats data version (migrations/0008): it changes with every committed write to
# leads, insights, campaigns or ad accounts. `log_rows` says when to fold the log.
DATA_VERSION_SQL = """
    SELECT coalesce(sum(weight), 0) AS version, count(*) AS log_rows
    FROM stats_changes WHERE tenant_id = %(tenant)s
"""


def data_version(conn: psycopg.Connection, tenant_id: str) -> tuple[int, int]:
    row = conn.execute(DATA_VERSION_SQL, {"tenant": tenant_id}).fetchone()
    return int(row["version"]), int(row["log_rows"])


def fold_version_log(conn: psycopg.Connection) -> None:
    """Folds the current tenant's change log into one row; the version stays the same."""
    conn.execute("SELECT stats_compact_changes()")


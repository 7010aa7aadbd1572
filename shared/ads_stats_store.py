"""Set-based reads behind the marketing stats. No HTTP here; callers pass a tenant_tx connection.

Each query aggregates in Postgres and returns at most one row per campaign (and currency), so the
Python side only joins a few thousand small rows, whatever the number of leads or insight days.
Both big reads are index-only scans on indexes from migrations/0004_ads.up.sql.
"""

from __future__ import annotations

from datetime import date, datetime
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


def insight_totals(conn: psycopg.Connection, tenant_id: str, start: date, end: date
                   ) -> list[dict[str, Any]]:
    """Per (campaign, currency) sums over [start, end] (the insight's day, account time)."""
    return conn.execute(
        """
        SELECT campaign_id, currency, sum(spend) AS spend, sum(impressions) AS impressions,
               sum(clicks) AS clicks, sum(leads) AS meta_leads,
               min(date) AS first_date, max(date) AS last_date
        FROM meta_ads_insights
        WHERE tenant_id = %s AND date >= %s AND date <= %s
        GROUP BY campaign_id, currency
        """,
        (tenant_id, start, end),
    ).fetchall()


def lead_totals(conn: psycopg.Connection, tenant_id: str, start: datetime, end: datetime
                ) -> list[dict[str, Any]]:
    """Meta leads created in [start, end), per (campaign or NULL, deal currency): counts and
    won revenue (deal_value of status 'won')."""
    return conn.execute(
        f"""
        SELECT meta_campaign_id AS campaign_id, deal_currency,
               count(*) AS leads,
               count(*) FILTER (WHERE status = 'won') AS won_leads,
               coalesce(sum(deal_value) FILTER (WHERE status = 'won'), 0) AS revenue
        FROM leads
        WHERE tenant_id = %s AND created_at >= %s AND created_at < %s AND {META_LEAD_FILTER}
        GROUP BY meta_campaign_id, deal_currency
        """,  # noqa: S608 - a constant predicate, no input in it
        (tenant_id, start, end),
    ).fetchall()


def account_currencies(conn: psycopg.Connection, tenant_id: str) -> list[str]:
    rows = conn.execute(
        "SELECT DISTINCT currency FROM tenant_meta_accounts"
        " WHERE tenant_id = %s AND currency IS NOT NULL ORDER BY currency", (tenant_id,),
    ).fetchall()
    return [r["currency"] for r in rows]

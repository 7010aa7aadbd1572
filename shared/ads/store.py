"""Data access for connected ad accounts, their campaigns and daily insights. No HTTP here.

Every function takes an open connection from shared.platform.db.tenant_tx (row-level security
holds for each statement, and each names its tenant too: the id it is given, or the
transaction's `app_current_tenant()`), except `due_accounts`, which runs in system_tx and
returns ids only.
Upserts are one set-based statement each (unnest of arrays), so a page of 500 insight rows is one
round trip, and re-running a sync updates rows in place instead of duplicating them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg


@dataclass(frozen=True)
class AccountInfo:
    """What Meta told us about an ad account when it was connected."""

    account_id: str  # act_<digits>
    name: str
    currency: str | None
    timezone: str | None
    account_status: int | None
    business_id: str | None
    business_name: str | None


@dataclass(frozen=True)
class InsightRow:
    campaign_id: str
    day: date
    spend: Decimal
    impressions: int
    clicks: int
    leads: int


def upsert_account(conn: psycopg.Connection, tenant_id: str, info: AccountInfo,
                   connected_by: str | None) -> bool:
    """Insert or refresh the account; True when it was not connected before."""
    row = conn.execute(
        """
        INSERT INTO tenant_meta_accounts (tenant_id, account_id, name, currency, timezone,
                                          account_status, business_id, business_name,
                                          connected_by)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (tenant_id, account_id) DO UPDATE SET
            name = EXCLUDED.name, currency = EXCLUDED.currency, timezone = EXCLUDED.timezone,
            account_status = EXCLUDED.account_status, business_id = EXCLUDED.business_id,
            business_name = EXCLUDED.business_name, connected_by = EXCLUDED.connected_by
        RETURNING (xmax = 0) AS inserted
        """,
        (tenant_id, info.account_id, info.name, info.currency, info.timezone,
         info.account_status, info.business_id, info.business_name, connected_by),
    ).fetchone()
    return bool(row["inserted"])


def get_account(conn: psycopg.Connection, account_id: str) -> dict[str, Any] | None:
    return conn.execute("SELECT * FROM tenant_meta_accounts"
                        " WHERE tenant_id = app_current_tenant() AND account_id = %s",
                        (account_id,)).fetchone()


def claim_sync(conn: psycopg.Connection, account_id: str, lease_seconds: float, *,
               synced_before: datetime | None = None) -> dict[str, Any] | None:
    """Take the account's sync lease unless Meta blocked it or another run holds it. With
    `synced_before` (a scheduled sync), only if it is still due: a sync that ran since the
    account was queued leaves nothing to do."""
    return conn.execute(
        """
        UPDATE tenant_meta_accounts
        SET sync_lease_until = now() + make_interval(secs => %(lease)s),
            last_sync_started_at = now()
        WHERE tenant_id = app_current_tenant() AND account_id = %(account)s
          AND (blocked_until IS NULL OR blocked_until <= now())
          AND (sync_lease_until IS NULL OR sync_lease_until <= now())
          AND (%(before)s::timestamptz IS NULL OR last_sync_finished_at IS NULL
               OR last_sync_finished_at < %(before)s OR sync_resume_date IS NOT NULL
               OR report_run_id IS NOT NULL)
        RETURNING *
        """,
        {"lease": lease_seconds, "account": account_id, "before": synced_before},
    ).fetchone()


def save_progress(conn: psycopg.Connection, account_id: str, *, stored_until: date,
                  resume_date: date | None) -> None:
    """A chunk of days is stored: move the markers so an interrupted run resumes after it."""
    conn.execute(
        "UPDATE tenant_meta_accounts SET last_synced_date = %s, sync_resume_date = %s"
        " WHERE tenant_id = app_current_tenant() AND account_id = %s",
        (stored_until, resume_date, account_id),
    )


def save_report_run(conn: psycopg.Connection, account_id: str, run_id: str | None,
                    since: date | None = None, until: date | None = None) -> None:
    """Remember (or forget, with run_id None) the async report Meta is preparing."""
    conn.execute(
        """
        UPDATE tenant_meta_accounts
        SET report_run_id = %s, report_since = %s, report_until = %s,
            report_started_at = CASE WHEN %s::text IS NULL THEN NULL ELSE now() END,
            sync_resume_date = coalesce(%s, sync_resume_date)
        WHERE tenant_id = app_current_tenant() AND account_id = %s
        """,
        (run_id, since, until, run_id, since, account_id),
    )


def finish_sync(conn: psycopg.Connection, account_id: str, *, outcome: str, completed: bool,
                campaigns: int | None = None, blocked_until: datetime | None = None,
                error: str | None = None) -> None:
    """Release the lease and record how the run ended. `completed` also stamps
    last_sync_finished_at, which makes the account not due again until tomorrow."""
    conn.execute(
        """
        UPDATE tenant_meta_accounts
        SET sync_lease_until = NULL, last_sync_outcome = %s, sync_error = %s,
            blocked_until = %s,
            campaigns_synced = coalesce(%s, campaigns_synced),
            last_sync_finished_at = CASE WHEN %s THEN now() ELSE last_sync_finished_at END
        WHERE tenant_id = app_current_tenant() AND account_id = %s
        """,
        (outcome, error, blocked_until, campaigns, completed, account_id),
    )


def upsert_campaigns(conn: psycopg.Connection, tenant_id: str, account_id: str,
                     campaigns: list[dict[str, Any]]) -> int:
    if not campaigns:
        return 0

    def column(name: str) -> list[Any]:
        return [c.get(name) for c in campaigns]

    cur = conn.execute(
        """
        INSERT INTO meta_ads_campaigns AS c (tenant_id, campaign_id, account_id, name, status,
            effective_status, objective, daily_budget, lifetime_budget, start_time, stop_time,
            updated_time, synced_at)
        SELECT %s, u.id, %s, coalesce(u.name, ''), u.status, u.effective_status, u.objective,
               u.daily_budget, u.lifetime_budget, u.start_time::timestamptz,
               u.stop_time::timestamptz, u.updated_time::timestamptz, now()
        FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
                    %s::text[], %s::text[], %s::text[], %s::text[])
             AS u(id, name, status, effective_status, objective, daily_budget, lifetime_budget,
                  start_time, stop_time, updated_time)
        ON CONFLICT (tenant_id, campaign_id) DO UPDATE SET
            account_id = EXCLUDED.account_id, name = EXCLUDED.name, status = EXCLUDED.status,
            effective_status = EXCLUDED.effective_status, objective = EXCLUDED.objective,
            daily_budget = EXCLUDED.daily_budget, lifetime_budget = EXCLUDED.lifetime_budget,
            start_time = EXCLUDED.start_time, stop_time = EXCLUDED.stop_time,
            updated_time = EXCLUDED.updated_time, synced_at = now()
        """,
        (tenant_id, account_id, column("id"), column("name"), column("status"),
         column("effective_status"), column("objective"), column("daily_budget"),
         column("lifetime_budget"), column("start_time"), column("stop_time"),
         column("updated_time")),
    )
    return cur.rowcount


def upsert_insights(conn: psycopg.Connection, tenant_id: str, account_id: str,
                    currency: str | None, rows: list[InsightRow]) -> tuple[int, int]:
    """Upsert daily campaign rows keyed by (tenant, campaign, day).
    Returns (inserted, changed): unchanged rows are left alone and counted in neither."""
    if not rows:
        return 0, 0
    result = conn.execute(
        """
        INSERT INTO meta_ads_insights AS i (tenant_id, campaign_id, date, account_id, currency,
                                            spend, impressions, clicks, leads, synced_at)
        SELECT %s, u.campaign_id, u.day, %s, %s, u.spend, u.impressions, u.clicks, u.leads, now()
        FROM unnest(%s::text[], %s::date[], %s::numeric[], %s::bigint[], %s::bigint[],
                    %s::bigint[]) AS u(campaign_id, day, spend, impressions, clicks, leads)
        ON CONFLICT (tenant_id, campaign_id, date) DO UPDATE SET
            account_id = EXCLUDED.account_id, currency = EXCLUDED.currency,
            spend = EXCLUDED.spend, impressions = EXCLUDED.impressions,
            clicks = EXCLUDED.clicks, leads = EXCLUDED.leads, synced_at = now()
        WHERE (i.spend, i.impressions, i.clicks, i.leads, i.currency)
              IS DISTINCT FROM (EXCLUDED.spend, EXCLUDED.impressions, EXCLUDED.clicks,
                                EXCLUDED.leads, EXCLUDED.currency)
        RETURNING (xmax = 0) AS inserted
        """,
        (tenant_id, account_id, currency, [r.campaign_id for r in rows], [r.day for r in rows],
         [r.spend for r in rows], [r.impressions for r in rows], [r.clicks for r in rows],
         [r.leads for r in rows]),
    ).fetchall()
    inserted = sum(1 for r in result if r["inserted"])
    return inserted, len(result) - inserted


def due_accounts(conn: psycopg.Connection, synced_before: datetime,
                 after: tuple[str, str] = ("", ""), limit: int = 1000) -> list[tuple[str, str]]:
    """(tenant_id, account_id) pairs due for a sync, after the keyset cursor `after`: ids only
    (SECURITY DEFINER lookup). Page until a page comes back short."""
    rows = conn.execute(
        "SELECT tenant_id, account_id FROM ads_accounts_due_for_sync(%s, %s, %s, %s)",
        (synced_before, after[0], after[1], limit)).fetchall()
    return [(r["tenant_id"], r["account_id"]) for r in rows]

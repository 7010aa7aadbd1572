"""Helpers for the ads tests (no fixtures here: tests/fixtures_ads.py has those). Kept apart so
test modules can import them while pytest loads the fixtures module as a plugin."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from devstack.lambda_context import LocalContext
from sandbox.control import SandboxControl
from shared.connection import credentials
from shared.platform.db import tenant_tx
from shared.platform.settings import DEFAULT_SCOPES

EVENTS = Path(__file__).resolve().parent.parent / "events"


class AdsControl(SandboxControl):
    """The sandbox control client plus the ads area's endpoints (sandbox/ads.py)."""

    def new_user(self, layout: str = "standard", **extra: Any) -> dict[str, Any]:
        return self._call("POST", "/ads/users", {"layout": layout, **extra})

    def new_account(self, user_id: str, **options: Any) -> dict[str, Any]:
        return self._call("POST", "/ads/accounts", {"user_id": user_id, **options})

    def expected_accounts(self, user_id: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/ads/users/{user_id}/expected")["accounts"]

    def account_state(self, account_id: str) -> dict[str, Any]:
        return self._call("GET", f"/ads/accounts/{account_id}")

    def override_insight(self, account_id: str, campaign_id: str, day: date, **values: Any
                         ) -> None:
        self._call("POST", "/ads/insights", {"account_id": account_id, "campaign_id": campaign_id,
                                              "date": day.isoformat(), **values})

    def throttle(self, account_id: str, **options: Any) -> None:
        self._call("POST", f"/ads/accounts/{account_id}/throttle", options)

    def set_async(self, account_id: str, **options: Any) -> None:
        self._call("POST", f"/ads/accounts/{account_id}/async", options)


def connect_meta(control: SandboxControl, tenant_id: str, user_id: str,
                 scopes: list[str] | None = None) -> str:
    """Store a long-lived token of `user_id` for the tenant, as the OAuth callback would."""
    scopes = list(scopes or DEFAULT_SCOPES)
    token = control.issue_token(user_id, scopes=scopes)
    with tenant_tx(tenant_id) as conn:
        credentials.save(conn, tenant_id, token,
                         expires_at=datetime.now(UTC) + timedelta(days=59),
                         data_access_expires_at=datetime.now(UTC) + timedelta(days=89),
                         meta_user_id=user_id, scopes=scopes)
    return token


@dataclass
class ConnectedTenant:
    tenant_id: str
    user_id: str
    token: str
    layout: dict[str, Any]


def load_event(name: str, **detail: Any) -> dict[str, Any]:
    event = json.loads((EVENTS / name).read_text())
    if detail:
        event["detail"] = {**event.get("detail", {}), **detail}
    return event


def invoke_sync(event: dict[str, Any], timeout_seconds: float = 120.0) -> dict[str, Any]:
    """campaign_sync's handler on any event (the schedule's tick, or an SQS batch event)."""
    from functions.campaign_sync.app import lambda_handler

    return lambda_handler(event, LocalContext("CampaignSyncFunction", timeout_seconds))


def run_sync(tenant_id: str, account_id: str, *, due_only: bool = False,
             timeout_seconds: float = 120.0) -> dict[str, Any]:
    """What the campaign-sync worker does with one queued account (shared.ads.sync_queue),
    with the run's summary, which the worker logs and tests read here."""
    from shared.ads.sync import sync_account

    deadline = time.monotonic() + timeout_seconds - 10.0
    return sync_account(tenant_id, account_id, deadline=deadline, due_only=due_only).summary()


def query(tenant_id: str, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
    with tenant_tx(tenant_id) as conn:
        return conn.execute(sql, params).fetchall()


def account_row(tenant_id: str, account_id: str) -> dict[str, Any] | None:
    rows = query(tenant_id, "SELECT * FROM tenant_meta_accounts WHERE account_id = %s",
                 (account_id,))
    return rows[0] if rows else None


def insight_rows(tenant_id: str, account_id: str) -> dict[tuple[str, date], dict[str, Any]]:
    rows = query(tenant_id, "SELECT * FROM meta_ads_insights WHERE account_id = %s",
                 (account_id,))
    return {(r["campaign_id"], r["date"]): r for r in rows}


def insert_account(tenant_id: str, account_id: str, **values: Any) -> None:
    """An already connected account, without Meta (for tests that don't sync)."""
    with tenant_tx(tenant_id) as conn:
        conn.execute(
            "INSERT INTO tenant_meta_accounts (tenant_id, account_id, name, currency, timezone,"
            " account_status, last_sync_finished_at) VALUES (%s, %s, %s, %s, %s, 1, %s)",
            (tenant_id, account_id, values.get("name", account_id), values.get("currency"),
             values.get("timezone", "Etc/UTC"), values.get("finished_at", datetime.now(UTC))))


def expected_insights(world_ads: Any, account_id: str, since: date, until: date
                      ) -> dict[tuple[str, date], dict[str, Any]]:
    """What the sandbox serves for the account over [since, until] (its seed plus overrides)."""
    from sandbox.ads import daily_values

    account = world_ads.accounts[account_id.removeprefix("act_")]
    until = min(until, world_ads.today())
    out = {}
    day = since
    while day <= until:
        for campaign in account.campaigns:
            values = daily_values(account, campaign, day)
            if values is not None and int(values["impressions"]) > 0:
                out[(campaign.id, day)] = values
        day += timedelta(days=1)
    return out

"""Campaign and daily insights sync for one connected ad account, and its fan-out through SQS.

How a run goes (META_API.md §5, §7; PEERS.md §2 for what Airbyte gets wrong):
- One run per account at a time: a lease on the account row (duplicate events, overlapping
  schedule ticks and retries all end up as one run).
- Campaigns: every page of /act_{id}/campaigns, upserted.
- Insights: level=campaign, time_increment=1, in windows of `ads_insights_chunk_days`, oldest
  first. The window starts `ads_lookback_days` before the newest stored day (Meta revises recent
  days for late attribution), or `ads_initial_sync_days` ago on the first run, and ends today in
  the account's time zone. Rows are upserted by (tenant, campaign, day): a re-run never
  duplicates, and a revised day is updated in place.
- After each window is stored the account's markers move (last_synced_date, sync_resume_date),
  so a run that stops for any reason resumes at the first day not stored.
- Throttled (codes 4/17/613/80000-80014): record blocked_until from the usage headers of that
  answer (BUC minutes to regain access, ad-account reset seconds; 60 s when Meta gives neither)
  and stop at once, instead of retrying into the block as Airbyte #86316 did. Never sleep for
  minutes in a Lambda: the next scheduled tick after blocked_until resumes.
- Large windows (estimated rows = campaigns x days above `ads_async_threshold_rows`, or Meta
  answering "reduce the amount of data"): an async report job. Its id is stored before polling;
  polling stops within the invocation's deadline and `ads_async_max_wait_seconds`, and the next
  run picks the same report up instead of starting another.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.ads import store
from shared.ads.store import InsightRow
from shared.connection.session import (
    load_usable_credential,
    record_token_invalid,
    usable_token,
)
from shared.meta.errors import (
    MetaError,
    MetaPermissionDenied,
    MetaRateLimited,
    MetaRequestError,
    MetaTokenInvalid,
    MetaTransient,
)
from shared.platform.db import tenant_tx
from shared.platform.errors import MetaNotConnected, MetaReconnectRequired
from shared.platform.observability import logger, metrics
from shared.platform.settings import get_settings

if TYPE_CHECKING:
    from shared.meta.graph import GraphClient

CAMPAIGN_FIELDS = ("id,name,status,effective_status,objective,daily_budget,lifetime_budget,"
                   "start_time,stop_time,updated_time")
INSIGHT_FIELDS = "campaign_id,campaign_name,spend,impressions,clicks,actions"
INSIGHTS_PAGE_LIMIT = 500
CAMPAIGN_PAGE_LIMIT = 100
MAX_HISTORY_DAYS = 37 * 30  # Graph serves at most 37 months of insights
RESYNC_AFTER = timedelta(hours=20)  # the schedule ticks hourly; each account syncs once a day
DEADLINE_MARGIN_SECONDS = 5.0  # don't start a window with less time than this left

# Meta reports leads as `lead` (all leads) when it can; otherwise as its parts. Counting `lead`
# together with its parts would double count.
LEAD_TOTAL = "lead"
LEAD_PARTS = ("onsite_conversion.lead_grouped", "offsite_conversion.fb_pixel_lead")
# Graph's answer when a synchronous insights query is too large (code 1, subcode 99).
TOO_MUCH_DATA_SUBCODE = 99


@dataclass(frozen=True)
class SyncOptions:
    initial_days: int = 90
    lookback_days: int = 28
    chunk_days: int = 30
    async_threshold_rows: int = 5000
    poll_seconds: float = 5.0
    max_wait_seconds: float = 120.0

    @classmethod
    def from_settings(cls) -> SyncOptions:
        s = get_settings()
        return cls(s.ads_initial_sync_days, s.ads_lookback_days, s.ads_insights_chunk_days,
                   s.ads_async_threshold_rows, s.ads_async_poll_seconds,
                   s.ads_async_max_wait_seconds)


@dataclass
class SyncResult:
    tenant_id: str
    account_id: str
    outcome: str = "completed"
    campaigns: int = 0
    insight_rows: int = 0
    insights_inserted: int = 0
    insights_changed: int = 0
    since: str | None = None
    until: str | None = None
    resume_date: str | None = None
    blocked_until: str | None = None
    report_run_id: str | None = None
    graph_requests: int = 0
    duration_ms: int = 0

    def summary(self) -> dict[str, Any]:
        return asdict(self)


class _Stop(Exception):
    """End the run early with an outcome (throttled, report pending, out of time)."""

    def __init__(self, outcome: str, blocked_until: datetime | None = None) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.blocked_until = blocked_until


@dataclass
class _Run:
    tenant_id: str
    account_id: str
    account: dict[str, Any]
    graph: GraphClient
    options: SyncOptions
    deadline: float | None
    result: SyncResult
    sleep: Callable[[float], None] = time.sleep
    campaign_count: int = 0
    pending_report: dict[str, Any] | None = field(default=None)


# -- parsing ------------------------------------------------------------------------------------
def lead_count(actions: Any) -> int:
    values: dict[str, int] = {}
    for action in actions if isinstance(actions, list) else []:
        if isinstance(action, dict) and action.get("action_type"):
            try:
                values[str(action["action_type"])] = int(Decimal(str(action.get("value", 0))))
            except (InvalidOperation, ValueError):
                continue
    if LEAD_TOTAL in values:
        return values[LEAD_TOTAL]
    return sum(values.get(part, 0) for part in LEAD_PARTS)


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value)) if value not in (None, "") else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


def _int(value: Any) -> int:
    try:
        return int(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return 0


def parse_insight(raw: Any) -> InsightRow | None:
    if not isinstance(raw, dict) or not raw.get("campaign_id") or not raw.get("date_start"):
        return None
    try:
        day = date.fromisoformat(str(raw["date_start"]))
    except ValueError:
        return None
    return InsightRow(campaign_id=str(raw["campaign_id"]), day=day,
                      spend=_decimal(raw.get("spend")), impressions=_int(raw.get("impressions")),
                      clicks=_int(raw.get("clicks")), leads=lead_count(raw.get("actions")))


def account_today(timezone_name: str | None, now: datetime | None = None) -> date:
    """Meta's days are the ad account's days."""
    now = now or datetime.now(UTC)
    try:
        zone = ZoneInfo(timezone_name) if timezone_name else UTC
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC
    return now.astimezone(zone).date()


def sync_window(account: dict[str, Any], today: date, options: SyncOptions) -> tuple[date, date]:
    """[since, until] for this run: resume an interrupted window, else re-read the lookback."""
    oldest = today - timedelta(days=MAX_HISTORY_DAYS)
    if account.get("sync_resume_date"):
        since = account["sync_resume_date"]
    elif account.get("last_synced_date"):
        since = account["last_synced_date"] - timedelta(days=options.lookback_days)
    else:
        since = today - timedelta(days=options.initial_days - 1)
    return max(since, oldest), today


# -- one account --------------------------------------------------------------------------------
def sync_account(tenant_id: str, account_id: str, *, deadline: float | None,
                 options: SyncOptions | None = None, due_only: bool = False,
                 sleep: Callable[[float], None] = time.sleep) -> SyncResult:
    """Sync one account now; with `due_only` (the schedule's requests) only if it is still due
    when the run starts."""
    options = options or SyncOptions.from_settings()
    started = time.monotonic()
    result = SyncResult(tenant_id, account_id)
    lease = max(60.0, (deadline - time.monotonic()) + 60.0) if deadline else 900.0
    synced_before = datetime.now(UTC) - RESYNC_AFTER if due_only else None
    with tenant_tx(tenant_id) as conn:
        account = store.claim_sync(conn, account_id, lease, synced_before=synced_before)
        if account is None:
            known = store.get_account(conn, account_id)
    if account is None:
        now = datetime.now(UTC)
        result.outcome = ("not_found" if known is None
                          else "blocked" if known["blocked_until"]
                          and known["blocked_until"] > now
                          else "already_running" if known["sync_lease_until"]
                          and known["sync_lease_until"] > now else "not_due")
        if known is not None and known["blocked_until"]:
            result.blocked_until = known["blocked_until"].isoformat()
        return _report(result, started)

    # Until the run says otherwise, it failed (an unexpected error still releases the lease).
    outcome, blocked_until, error, completed = "failed", None, "unexpected_error", False
    graph: GraphClient | None = None
    try:
        stored = load_usable_credential(tenant_id)
        # Local: a tenant that is not connected is answered without loading httpx (cold start).
        from shared.meta.graph import GraphClient

        graph = GraphClient.for_token(usable_token(stored), deadline=deadline)
        run = _Run(tenant_id, account_id, account, graph, options, deadline, result, sleep)
        _sync_campaigns(run)
        _sync_insights(run)
        outcome, error, completed = "completed", None, True
    except _Stop as stop:
        outcome, blocked_until, error = stop.outcome, stop.blocked_until, None
    except MetaRateLimited as exc:
        outcome, blocked_until, error = "throttled", _blocked_until(exc), None
    except MetaNotConnected:
        outcome, error, completed = "not_connected", None, True  # nothing until a reconnect
    except MetaReconnectRequired:
        outcome, error, completed = "needs_reconnect", None, True
    except MetaTokenInvalid as exc:
        record_token_invalid(tenant_id, exc)
        outcome, error, completed = "needs_reconnect", None, True
    except (MetaPermissionDenied, MetaRequestError) as exc:
        outcome, error = "failed", f"meta_{exc.code}_{exc.subcode or 0}"
        logger.warning("campaign_sync_refused", extra={"tenant_id": tenant_id,
                                                       "account_id": account_id,
                                                       "code": exc.code, "subcode": exc.subcode})
    except MetaTransient as exc:
        outcome, error = "failed", f"meta_{exc.code or 'transient'}"
    finally:
        if graph is not None:
            result.graph_requests = graph.request_count
            graph.close()
        result.outcome = outcome
        with tenant_tx(tenant_id) as conn:
            store.finish_sync(conn, account_id, outcome=outcome, completed=completed,
                                  campaigns=result.campaigns if result.campaigns else None,
                                  blocked_until=blocked_until, error=error)
    if blocked_until is not None:
        result.blocked_until = blocked_until.isoformat()
        metrics.add_metric(name="CampaignSyncThrottled", unit="Count", value=1)
    return _report(result, started)


def _report(result: SyncResult, started: float) -> SyncResult:
    result.duration_ms = int((time.monotonic() - started) * 1000)
    logger.info("campaign_sync", extra={
        "tenant_id": result.tenant_id, "account_id": result.account_id,
        "outcome": result.outcome, "campaigns_synced": result.campaigns,
        "insight_rows": result.insight_rows, "insights_changed": result.insights_changed,
        "since": result.since, "until": result.until, "resume_date": result.resume_date,
        "blocked_until": result.blocked_until, "graph_requests": result.graph_requests,
        "duration_ms": result.duration_ms})
    metrics.add_metric(name="CampaignSyncDuration", unit="Milliseconds",
                       value=result.duration_ms)
    return result


def _blocked_until(exc: MetaError) -> datetime:
    """From the usage headers of the throttled answer (shared.meta.errors computes the wait)."""
    wait = exc.retry_after_seconds or 60.0
    return datetime.now(UTC) + timedelta(seconds=max(1.0, wait))


def _time_left(run: _Run) -> float:
    return float("inf") if run.deadline is None else run.deadline - time.monotonic()


def _sync_campaigns(run: _Run) -> None:
    campaigns = list(run.graph.paginate(f"{run.account_id}/campaigns", {
        "fields": CAMPAIGN_FIELDS, "limit": CAMPAIGN_PAGE_LIMIT}))
    unique = {str(c["id"]): c for c in campaigns if isinstance(c, dict) and c.get("id")}
    with tenant_tx(run.tenant_id) as conn:
        store.upsert_campaigns(conn, run.tenant_id, run.account_id, list(unique.values()))
    run.campaign_count = run.result.campaigns = len(unique)


def _sync_insights(run: _Run) -> None:
    account = run.account
    today = account_today(account.get("timezone"))
    since, until = sync_window(account, today, run.options)
    run.result.since, run.result.until = since.isoformat(), until.isoformat()
    if account.get("report_run_id"):
        # A report started by an earlier run: finish it first (never start a second one).
        report_since, report_until = account["report_since"], account["report_until"]
        rows = _await_report(run, account["report_run_id"], report_since, report_until)
        _store_window(run, rows, report_since, report_until, until)
        since = report_until + timedelta(days=1)
    start = since
    while start <= until:
        if _time_left(run) < DEADLINE_MARGIN_SECONDS:
            raise _Stop("out_of_time")
        end = min(start + timedelta(days=run.options.chunk_days - 1), until)
        rows = _fetch_window(run, start, end)
        _store_window(run, rows, start, end, until)
        start = end + timedelta(days=1)


def _store_window(run: _Run, raw_rows: list[Any], start: date, end: date, until: date) -> None:
    rows: dict[tuple[str, date], InsightRow] = {}
    for raw in raw_rows:
        row = parse_insight(raw)
        if row is not None:
            rows[(row.campaign_id, row.day)] = row  # one row per key, whatever Meta repeats
    resume = end + timedelta(days=1)
    with tenant_tx(run.tenant_id) as conn:
        inserted, changed = store.upsert_insights(
            conn, run.tenant_id, run.account_id, run.account.get("currency"), list(rows.values()))
        store.save_progress(conn, run.account_id, stored_until=max(end, start),
                                resume_date=resume if resume <= until else None)
    run.result.insight_rows += len(rows)
    run.result.insights_inserted += inserted
    run.result.insights_changed += changed
    run.result.resume_date = resume.isoformat() if resume <= until else None


def _insight_params(start: date, end: date) -> dict[str, Any]:
    return {"level": "campaign", "time_increment": 1, "fields": INSIGHT_FIELDS,
            "time_range": json.dumps({"since": start.isoformat(), "until": end.isoformat()}),
            "limit": INSIGHTS_PAGE_LIMIT}


def _fetch_window(run: _Run, start: date, end: date) -> list[Any]:
    days = (end - start).days + 1
    if run.campaign_count * days > run.options.async_threshold_rows:
        return _report_rows(run, start, end)
    try:
        return list(run.graph.paginate(f"{run.account_id}/insights", _insight_params(start, end)))
    except MetaTransient as exc:
        if exc.subcode != TOO_MUCH_DATA_SUBCODE:
            raise
        logger.info("campaign_sync_async_fallback", extra={"account_id": run.account_id})
        return _report_rows(run, start, end)


def _report_rows(run: _Run, start: date, end: date) -> list[Any]:
    created = run.graph.post(f"{run.account_id}/insights", _insight_params(start, end))
    run_id = str(created.get("report_run_id") or created.get("id") or "")
    if not run_id:
        raise MetaTransient("Meta did not return a report_run_id", is_transient=True)
    with tenant_tx(run.tenant_id) as conn:
        store.save_report_run(conn, run.account_id, run_id, start, end)
    return _await_report(run, run_id, start, end)


def _await_report(run: _Run, run_id: str, start: date, end: date) -> list[Any]:
    """Poll within this invocation's budget; rows when done, _Stop('report_pending') if not."""
    run.result.report_run_id = run_id
    waited_until = time.monotonic() + run.options.max_wait_seconds
    interval = run.options.poll_seconds
    while True:
        status = run.graph.get(run_id, {"fields": "async_status,async_percent_completion"})
        state = str(status.get("async_status") or "")
        if state == "Job Completed":
            rows = list(run.graph.paginate(f"{run_id}/insights", {"limit": INSIGHTS_PAGE_LIMIT}))
            with tenant_tx(run.tenant_id) as conn:
                store.save_report_run(conn, run.account_id, None)
            return rows
        if state in {"Job Failed", "Job Skipped"}:
            with tenant_tx(run.tenant_id) as conn:
                store.save_report_run(conn, run.account_id, None)
            logger.warning("campaign_sync_report_failed", extra={"account_id": run.account_id,
                                                                 "async_status": state})
            raise MetaTransient(f"async report ended as {state}", is_transient=True)
        next_poll = time.monotonic() + interval
        if next_poll > waited_until or _time_left(run) - interval < DEADLINE_MARGIN_SECONDS:
            raise _Stop("report_pending")
        run.sleep(interval)
        interval = min(interval * 1.5, 30.0) if interval else 0.0

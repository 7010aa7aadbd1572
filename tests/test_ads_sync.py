"""The campaign sync: its worker fed from the queue as the connect event and the schedule feed
it, and its sync logic run by hand, against the sandbox, moto and Postgres."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import boto3
import pytest

from devstack.queues import deliver_all, queue_url
from shared.ads import store
from shared.connection import credentials
from shared.platform.db import system_tx, tenant_tx
from tests.ads_support import (
    account_row,
    connect_meta,
    expected_insights,
    insert_account,
    insight_rows,
    invoke_sync,
    load_event,
    query,
    run_sync,
)

pytest_plugins = ["tests.fixtures_ads"]


@pytest.fixture
def ads_account(api, ads_control, tenant_id):
    """A connected account (through POST /connect) with 5 campaigns and 120 days of history."""
    user = ads_control.new_user(layout="empty")
    connect_meta(ads_control, tenant_id, user["user_id"])

    def create(**options):
        account = ads_control.new_account(user["user_id"], campaigns=5,
                                          timezone_name="Etc/UTC", **options)
        response = api.post("/crm/marketing/connect", tenant_id=tenant_id, role="admin",
                            json={"account_id": account["account_id"]})
        assert response.status_code == 200, response.text
        return account

    return create


def _window(result: dict) -> tuple[date, date]:
    return date.fromisoformat(result["since"]), date.fromisoformat(result["until"])


def _assert_stored_as_served(tenant_id, account_id, ads_world, since, until):
    stored = insight_rows(tenant_id, account_id)
    expected = expected_insights(ads_world, account_id, since, until)
    assert set(stored) == set(expected)
    for key, values in expected.items():
        row = stored[key]
        assert row["spend"] == Decimal(values["spend"])
        assert (row["impressions"], row["clicks"], row["leads"]) == (
            values["impressions"], values["clicks"], values["leads"])
        assert row["currency"] == "EUR"
    return stored


def drain_sync_queue() -> list[dict]:
    """Take every message off the campaign-sync queue (without syncing): their bodies."""
    url = queue_url("CampaignSyncQueue")
    sqs = boto3.client("sqs")
    bodies = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def _requests_since(ads_control, account_id, before: int) -> list[dict]:
    return ads_control.account_state(account_id)["insights_requests"][before:]


def test_a_connected_account_reaches_the_sync_queue_and_a_worker_syncs_it(
        ads_account, ads_control, event_capture, tenant_id):
    """The real path: connect puts MetaAdAccountConnected on the bus, the template's rule turns
    it into a campaign-sync queue message, and the worker syncs the account from it."""
    account = ads_account()
    account_id = account["account_id"]
    assert event_capture.of_type("MetaAdAccountConnected", tenant_id)
    assert account_row(tenant_id, account_id)["last_sync_finished_at"] is None

    delivered = deliver_all(queues={"CampaignSyncQueue"})

    assert delivered["CampaignSyncQueue"] >= 1 and delivered["CampaignSyncQueue:failed"] == 0
    row = account_row(tenant_id, account_id)
    assert row["last_sync_outcome"] == "completed" and row["campaigns_synced"] == 5
    assert row["last_sync_finished_at"] is not None and row["sync_lease_until"] is None
    assert len(insight_rows(tenant_id, account_id)) > 300


def test_connect_event_syncs_campaigns_and_insights_and_a_rerun_adds_nothing(
        ads_account, ads_control, ads_world, tenant_id):
    account = ads_account()
    account_id = account["account_id"]

    first = run_sync(tenant_id, account_id)

    assert first["outcome"] == "completed", first
    assert first["campaigns"] == 5
    since, until = _window(first)
    assert since == until - timedelta(days=89)  # the first sync reaches 90 days back
    campaigns = query(tenant_id, "SELECT campaign_id, name, status, account_id"
                                 " FROM meta_ads_campaigns ORDER BY campaign_id")
    assert [c["campaign_id"] for c in campaigns] == sorted(account["campaign_ids"])
    assert {c["account_id"] for c in campaigns} == {account_id}
    assert all(c["name"].startswith("Campaña") for c in campaigns)
    stored = _assert_stored_as_served(tenant_id, account_id, ads_world, since, until)
    assert first["insights_inserted"] == len(stored) > 300
    # Both of Meta's lead shapes are counted, neither twice: some days have leads of each.
    assert sum(r["leads"] for r in stored.values()) > 0
    row = account_row(tenant_id, account_id)
    assert row["last_synced_date"] == until and row["sync_resume_date"] is None
    assert row["last_sync_outcome"] == "completed" and row["sync_lease_until"] is None
    assert row["campaigns_synced"] == 5 and row["last_sync_finished_at"] is not None

    before = len(ads_control.account_state(account_id)["insights_requests"])
    second = run_sync(tenant_id, account_id)

    assert second["outcome"] == "completed"
    assert second["insights_inserted"] == 0 and second["insights_changed"] == 0
    assert len(insight_rows(tenant_id, account_id)) == len(stored)
    assert query(tenant_id, "SELECT count(*) AS n FROM meta_ads_campaigns")[0]["n"] == 5
    # The rerun reads only the lookback window, not the whole history again.
    requests = _requests_since(ads_control, account_id, before)
    assert requests[0]["since"] == (until - timedelta(days=28)).isoformat()


def test_lookback_updates_days_meta_changed(ads_account, ads_control, ads_world,
                                            event_capture, tenant_id):
    account = ads_account()
    account_id, campaign_id = account["account_id"], account["campaign_ids"][0]
    first = run_sync(tenant_id, account_id)
    since, until = _window(first)
    recent, old = until - timedelta(days=3), until - timedelta(days=40)
    before = insight_rows(tenant_id, account_id)
    assert (campaign_id, recent) in before and (campaign_id, old) in before

    # Late attribution: Meta revises a recent day, and (unusually) a day beyond the lookback.
    ads_control.override_insight(account_id, campaign_id, recent, spend="999.99", leads=42)
    ads_control.override_insight(account_id, campaign_id, old, spend="555.55")
    second = run_sync(tenant_id, account_id)

    assert second["outcome"] == "completed"
    assert second["insights_changed"] == 1 and second["insights_inserted"] == 0
    after = insight_rows(tenant_id, account_id)
    assert len(after) == len(before)
    assert after[(campaign_id, recent)]["spend"] == Decimal("999.99")
    assert after[(campaign_id, recent)]["leads"] == 42
    # Beyond the 28-day lookback the stored day is left as it was.
    assert after[(campaign_id, old)]["spend"] == before[(campaign_id, old)]["spend"]
    unchanged = {k for k in before if k != (campaign_id, recent)}
    assert all(after[k]["spend"] == before[k]["spend"] for k in unchanged)


def _due(tenant_id: str, account_id: str) -> bool:
    """Is the account in the schedule's due list (paged through, as the planner does)?"""
    after = ("", "")
    with system_tx() as conn:
        while True:
            page = store.due_accounts(conn, datetime.now(UTC) - timedelta(hours=20), after)
            if (tenant_id, account_id) in page:
                return True
            if len(page) < 1000:
                return False
            after = page[-1]


def test_throttled_sync_records_blocked_until_and_resumes_where_it_stopped(
        ads_account, ads_control, ads_world, tenant_id):
    account = ads_account()
    account_id = account["account_id"]
    # The first insights window passes, the second is refused with Meta's BUC throttle.
    ads_control.throttle(account_id, edge="insights", after_calls=1, count=1, code=80000,
                         regain_minutes=7, reset_seconds=120)

    first = run_sync(tenant_id, account_id)

    assert first["outcome"] == "throttled", first
    since, until = _window(first)
    first_end = since + timedelta(days=29)
    blocked = datetime.fromisoformat(first["blocked_until"])
    wait = (blocked - datetime.now(UTC)).total_seconds()
    assert 7 * 60 - 60 < wait <= 7 * 60  # BUC estimated_time_to_regain_access: 7 minutes
    row = account_row(tenant_id, account_id)
    assert row["blocked_until"] == blocked
    assert row["last_synced_date"] == first_end
    assert row["sync_resume_date"] == first_end + timedelta(days=1)
    stored = insight_rows(tenant_id, account_id)
    assert stored and max(day for _, day in stored) == first_end
    assert not _due(tenant_id, account_id)

    # Still blocked: the run does not call Meta at all.
    calls = ads_control.account_state(account_id)["calls"]
    blocked_run = run_sync(tenant_id, account_id)
    assert blocked_run["outcome"] == "blocked"
    assert ads_control.account_state(account_id)["calls"] == calls

    # Time passes (the block is over): the schedule finds it, and the run resumes there.
    with tenant_tx(tenant_id) as conn:
        conn.execute("UPDATE tenant_meta_accounts SET blocked_until = now() - interval '1 s'")
    assert _due(tenant_id, account_id)
    before = len(ads_control.account_state(account_id)["insights_requests"])
    resumed = run_sync(tenant_id, account_id)

    assert resumed["outcome"] == "completed", resumed
    requests = _requests_since(ads_control, account_id, before)
    assert requests[0]["since"] == (first_end + timedelta(days=1)).isoformat()
    assert [r["since"] for r in requests] == sorted({r["since"] for r in requests})
    _assert_stored_as_served(tenant_id, account_id, ads_world, since, until)
    row = account_row(tenant_id, account_id)
    assert row["sync_resume_date"] is None and row["blocked_until"] is None
    assert not _due(tenant_id, account_id)


def test_large_account_uses_an_async_report_and_a_later_run_picks_it_up(
        ads_account, ads_control, ads_world, ads_settings, tenant_id):
    # 5 campaigns x 30 days = 150 estimated rows per window, over the threshold of 100.
    ads_settings(ads_async_threshold_rows=100, ads_async_poll_seconds=0,
                 ads_async_max_wait_seconds=0)
    account = ads_account(sync_max_rows=10, async_polls=1000)  # sync reads would be refused
    account_id = account["account_id"]

    first = run_sync(tenant_id, account_id)

    assert first["outcome"] == "report_pending", first
    state = ads_control.account_state(account_id)
    [report] = state["report_runs"]
    assert report["status"] == "Job Running"
    row = account_row(tenant_id, account_id)
    assert row["report_run_id"] == report["id"] == first["report_run_id"]
    assert row["report_since"].isoformat() == report["since"]
    assert insight_rows(tenant_id, account_id) == {}

    ads_control.set_async(account_id, polls=0)  # Meta finishes the reports
    second = run_sync(tenant_id, account_id)

    assert second["outcome"] == "completed", second
    runs = ads_control.account_state(account_id)["report_runs"]
    assert runs[0]["id"] == report["id"]  # the pending report was reused, not started again
    assert len(runs) == 3 and all(r["status"] == "Job Completed" for r in runs)
    modes = {r["mode"] for r in ads_control.account_state(account_id)["insights_requests"]}
    assert modes == {"async"}
    since, until = _window(first)
    _assert_stored_as_served(tenant_id, account_id, ads_world, since, until)
    assert account_row(tenant_id, account_id)["report_run_id"] is None


def test_schedule_queues_one_message_per_due_account_and_a_late_copy_syncs_nothing(
        stack, tenant_id):
    insert_account(tenant_id, "act_111", currency="EUR", finished_at=None)  # never synced
    insert_account(tenant_id, "act_222", currency="EUR")  # synced just now
    drain_sync_queue()  # what earlier tests left there

    for name in ("campaign_sync_scheduled.json", "campaign_sync_scheduler.json"):
        summary = invoke_sync(load_event(name))
        assert summary["due"] >= 1 and summary["queued"] == summary["due"]
        assert summary["failed"] == 0

    mine = [m for m in drain_sync_queue() if m["tenant_id"] == tenant_id]
    # Each tick queued the due account, never the one synced just now. (A send that botocore
    # retried after a read timeout on a busy machine may have landed twice: SQS is at least once,
    # and a copy finds nothing more to do, as below.)
    assert len(mine) >= 2
    assert all(m == {"tenant_id": tenant_id, "account_id": "act_111", "reason": "due"}
               for m in mine)
    # Two ticks queued it twice; once synced, the second copy finds it no longer due.
    with tenant_tx(tenant_id) as conn:
        conn.execute("UPDATE tenant_meta_accounts SET last_sync_finished_at = now()")
    assert run_sync(tenant_id, "act_111", due_only=True)["outcome"] == "not_due"


def test_the_due_list_has_no_cap(stack, tenant_id):
    """The due query used to stop at 10,000 accounts a tick; now it pages through them all."""
    ids = [f"act_{9_000_000 + i}" for i in range(25)]
    for account_id in ids:
        insert_account(tenant_id, account_id, finished_at=None)
    seen, after = [], ("", "")
    with system_tx() as conn:
        while True:
            page = store.due_accounts(conn, datetime.now(UTC), after, limit=7)
            seen += [a for t, a in page if t == tenant_id]
            if len(page) < 7:
                break
            after = page[-1]
    assert sorted(seen) == sorted(ids)


def test_invalid_token_during_sync_marks_the_connection(ads_account, ads_control, tenant_id):
    account = ads_account()
    with tenant_tx(tenant_id) as conn:
        token = credentials.load(conn).token()
    ads_control.revoke_token(token, subcode=463)

    result = run_sync(tenant_id, account["account_id"])

    assert result["outcome"] == "needs_reconnect"
    assert [r["status"] for r in query(tenant_id, "SELECT status FROM credentials")] == [
        "needs_reconnect"]
    row = account_row(tenant_id, account["account_id"])
    assert row["last_sync_outcome"] == "needs_reconnect" and row["sync_lease_until"] is None
    assert insight_rows(tenant_id, account["account_id"]) == {}


def test_a_second_delivery_while_a_sync_runs_does_nothing(ads_account, ads_control, tenant_id):
    account = ads_account()
    with tenant_tx(tenant_id) as conn:  # a run in progress holds the lease
        conn.execute("UPDATE tenant_meta_accounts SET sync_lease_until = now() + interval '5 min'")

    result = run_sync(tenant_id, account["account_id"])

    assert result["outcome"] == "already_running"
    assert ads_control.account_state(account["account_id"])["calls"] == 0
    assert insight_rows(tenant_id, account["account_id"]) == {}


def test_event_for_an_account_the_tenant_has_not_connected_stores_nothing(ads_control,
                                                                          tenant_id):
    result = run_sync(tenant_id, "act_1000000000000001")
    assert result["outcome"] == "not_found"
    assert query(tenant_id, "SELECT count(*) AS n FROM meta_ads_insights")[0]["n"] == 0

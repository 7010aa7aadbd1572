"""Races: 2-4 runs at once of dispatch, refresh and sync, duplicated scheduled events and
duplicated deliveries, double clicks on the API. In every case the end state equals that of one
run: the sandbox saw each send and each token exchange once, and the stored rows are the rows a
single run stores.

Runs start together on a barrier, each on its own thread (each with its own database connection,
as separate Lambda containers would have).
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devstack.lambda_context import LocalContext
from devstack.queues import deliver_all
from sandbox.whatsapp_send import SendControl
from shared.connection import credentials
from shared.hsm.claims import Result, write_results
from shared.platform.db import tenant_tx
from shared.platform.settings import get_settings
from tests.ads_support import AdsControl, connect_meta, insight_rows, run_sync
from tests.fixtures_dispatch import HIGH_CAP, add_leads, add_rule, dispatch
from tests.fixtures_whatsapp import (
    connect,
    fetch,
    new_account,
    post_webhook,
    status,
    status_payload,
)
from tests.reliability.conftest import tenant_rows

EVENTS = Path(__file__).resolve().parents[2] / "events"


def together(n: int, fn, *args):
    """Run fn(*args) n times at once; returns the results (re-raises the first error)."""
    gate = threading.Barrier(n)

    def one(_):
        gate.wait(timeout=30)
        return fn(*args)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n)))


def _event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


# -- dispatch ---------------------------------------------------------------------------------
@pytest.fixture
def sender(stack, wa, _control, tenant_id):
    send = SendControl(stack.sandbox.url)
    setup = new_account(wa, _control, tenant_id)
    send.configure_number(setup.phone_number_id, max_per_second=HIGH_CAP)
    connect(setup, max_per_second=HIGH_CAP)
    add_rule(tenant_id)
    yield {"setup": setup, "send": send}
    send.close()


def _accepted(sender) -> list[str]:
    stats = sender["send"].stats(sender["setup"].phone_number_id, messages=True)
    return [m["wa_id"] for m in stats["messages"]]


LEADS = 60


@pytest.mark.parametrize("runs", [2, 4])
def test_parallel_dispatch_runs_send_each_lead_once(sender, tenant_id, runs):
    leads = add_leads(tenant_id, LEADS)
    summaries = together(runs, dispatch, tenant_id)
    assert sum(s.sent for s in summaries) == LEADS
    accepted = _accepted(sender)
    assert len(accepted) == len(set(accepted)) == LEADS
    rows = fetch(tenant_id, "SELECT lead_id, status FROM automation_logs")
    assert sorted(str(r["lead_id"]) for r in rows) == sorted(leads)
    assert {r["status"] for r in rows} == {"SENT"}
    assert dispatch(tenant_id).sent == 0  # and a later run finds nothing left


def test_duplicated_scheduled_dispatch_events_send_each_lead_once(sender, tenant_id):
    """The same EventBridge tick delivered three times, two of them at the same moment."""
    from functions.hsm_dispatch.app import lambda_handler

    add_leads(tenant_id, 20)
    event = _event("hsm_dispatch_scheduled.json")

    def tick():
        return lambda_handler(copy.deepcopy(event), LocalContext("hsm_dispatch", 60))

    together(2, tick)
    tick()
    deliver_all(queues={"HsmDispatchQueue"})  # the workers, fed as Lambda feeds them
    accepted = _accepted(sender)
    assert len(accepted) == len(set(accepted)) == 20
    rows = fetch(tenant_id, "SELECT status, count(*) AS n FROM automation_logs GROUP BY status")
    assert [(r["status"], r["n"]) for r in rows] == [("SENT", 20)]


# -- token refresh --------------------------------------------------------------------------------
def _expiring(meta, tenant_id: str) -> str:
    token = meta.issue_token("10001", scopes=list(get_settings().scopes),
                             expires_at=int(time.time() + 2 * 86400))
    with tenant_tx(tenant_id) as conn:
        credentials.save(conn, tenant_id, token,
                         expires_at=datetime.now(UTC) + timedelta(days=2),
                         data_access_expires_at=None, meta_user_id="10001",
                         scopes=list(get_settings().scopes))
    return token


def _stored(tenant_id: str) -> str:
    with tenant_tx(tenant_id) as conn:
        return credentials.load(conn).token()


@pytest.mark.parametrize("runs", [2, 3])
def test_parallel_scheduled_refresh_runs_exchange_each_token_once(meta, tenant_id, runs):
    """The hourly run started `runs` times at once (and its event delivered again after)."""
    from functions.token_refresh.app import lambda_handler

    tenants = [f"{tenant_id}-{i}" for i in range(3)]
    old = {t: _expiring(meta, t) for t in tenants}
    event = _event("token_refresh_scheduled.json")

    def run():
        return lambda_handler(copy.deepcopy(event), LocalContext("token_refresh", 300))

    together(runs, run)
    run()  # the same event once more, after the others
    for tenant in tenants:
        assert meta.exchange_count(old[tenant]) == 1, tenant
        new = _stored(tenant)
        assert new != old[tenant] and meta.exchange_count(new) == 0
        with tenant_tx(tenant) as conn:
            assert credentials.load(conn).status == "active"


def test_refresh_now_double_clicked_exchanges_once(api, meta, tenant_id):
    old = _expiring(meta, tenant_id)
    answers = together(3, lambda: api.post("/crm/auth/meta/refresh-tokens",
                                           tenant_id=tenant_id))
    assert all(a.status_code in (200, 409) for a in answers), [a.text for a in answers]
    assert sum(a.json().get("refreshed", 0) for a in answers if a.status_code == 200) == 1
    assert meta.exchange_count(old) == 1
    assert all(a.json()["error"]["code"] == "conflict" for a in answers if a.status_code == 409)


# -- campaign sync --------------------------------------------------------------------------------
@pytest.fixture
def ads_pair(api, stack, tenant_id, other_tenant_id):
    with AdsControl(stack.sandbox.url) as ads:
        user = ads.new_user(layout="empty")
        account = ads.new_account(user["user_id"], campaigns=4, timezone_name="Etc/UTC")
        for tenant in (tenant_id, other_tenant_id):
            connect_meta(ads, tenant, user["user_id"])
            assert api.post("/crm/marketing/connect", tenant_id=tenant,
                            json={"account_id": account["account_id"]}).status_code == 200
    account_id = account["account_id"]
    assert run_sync(other_tenant_id, account_id)["outcome"] == "completed"
    return {"raced": tenant_id, "clean": other_tenant_id, "account_id": account_id}


def _synced(tenant_id: str, account_id: str) -> tuple:
    insights = {k: (r["spend"], r["impressions"], r["clicks"], r["leads"])
                for k, r in insight_rows(tenant_id, account_id).items()}
    campaigns = fetch(tenant_id, "SELECT campaign_id, name, status, effective_status, objective"
                                 " FROM meta_ads_campaigns ORDER BY campaign_id")
    return insights, [tuple(c.values()) for c in campaigns]


@pytest.mark.parametrize("runs", [2, 4])
def test_duplicated_sync_events_at_once_store_what_one_run_stores(ads_pair, runs):
    """The connect event delivered `runs` times at once (EventBridge delivers at least once)."""
    tenant, account_id = ads_pair["raced"], ads_pair["account_id"]
    results = together(runs, lambda: run_sync(tenant, account_id))
    outcomes = sorted(r["outcome"] for r in results)
    assert "completed" in outcomes
    assert set(outcomes) <= {"completed", "already_running"}, outcomes
    assert _synced(tenant, account_id) == _synced(ads_pair["clean"], account_id)
    # A late duplicate after the others finished changes nothing either.
    run_sync(tenant, account_id)
    assert _synced(tenant, account_id) == _synced(ads_pair["clean"], account_id)


# -- the API: double clicks and duplicated webhooks ---------------------------------------------
def test_the_same_rule_created_four_times_at_once_is_stored_once(api, owner, populated):
    body = {"name": "Doble clic", "delay_hours": 24, "template_name": "lead_followup_es",
            "language": "es", "body_params": ["first_name"]}
    answers = together(4, lambda: api.post("/crm/marketing/hsm/rules",
                                           tenant_id=populated.tenant_id, json=body))
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409]
    rules = tenant_rows(owner, populated.tenant_id)["automation_rules"]
    assert [r["name"] for r in rules].count("Doble clic") == 1


def test_the_same_webhook_delivered_four_times_at_once_applies_once(api, owner, populated):
    log = fetch(populated.tenant_id, "SELECT wamid FROM automation_logs WHERE id = %s",
                (populated.log_id,))[0]
    payload = status_payload(populated.setup.phone_number_id, [
        status(log["wamid"], "read", timestamp=1_760_000_500, log_id=populated.log_id)])
    answers = together(4, lambda: post_webhook(api, payload))
    assert all(a.status_code == 200 for a in answers)
    row = fetch(populated.tenant_id, "SELECT status, read_at FROM automation_logs WHERE id = %s",
                (populated.log_id,))[0]
    assert row["status"] == "READ"
    assert row["read_at"] == datetime.fromtimestamp(1_760_000_500, UTC)


def test_connect_double_clicked_stores_one_account(api, stack, owner, tenant_id):
    with AdsControl(stack.sandbox.url) as ads:
        layout = ads.new_user()
        connect_meta(ads, tenant_id, layout["user_id"])
    account_id = layout["demo_account_id"]
    answers = together(3, lambda: api.post("/crm/marketing/connect", tenant_id=tenant_id,
                                           json={"account_id": account_id}))
    assert [a.status_code for a in answers] == [200, 200, 200]
    accounts = tenant_rows(owner, tenant_id)["tenant_meta_accounts"]
    assert [a["account_id"] for a in accounts] == [account_id]


def test_status_webhooks_racing_the_dispatch_never_downgrade(api, stack, sender, tenant_id):
    """Meta's signed status webhooks (sent, delivered, read) reach the API while the dispatch
    that caused them is still sending and before it has written its results: every log ends
    READ, with its wamid, and every delivery was answered 200."""
    send, phone_id = sender["send"], sender["setup"].phone_number_id
    earlier = len(send.webhook_log()["deliveries"])  # other tests' deliveries, if any
    send.configure_webhooks(url=f"{stack.api_url}/crm/webhooks/meta", enabled=True,
                            numbers=[phone_id], batch_size=5)
    try:
        add_leads(tenant_id, 40)
        assert dispatch(tenant_id).sent == 40
        deadline = time.monotonic() + 30  # bounded wait for the sandbox's delivery thread
        while time.monotonic() < deadline:
            log = send.webhook_log()
            ours = log["deliveries"][earlier:]
            delivered = sum(d["statuses"] for d in ours)
            rows = fetch(tenant_id, "SELECT status, wamid FROM automation_logs")
            # The sandbox logs a delivery only after our answer to it, so the rows can be READ
            # a moment before the last delivery is counted: wait for both.
            if (log["queued"] == 0 and {r["status"] for r in rows} == {"READ"}
                    and delivered >= 120):
                break
            time.sleep(0.1)
    finally:
        send.configure_webhooks(enabled=False, numbers=None)
    assert {r["status"] for r in rows} == {"READ"}, sorted(r["status"] for r in rows)
    assert all(r["wamid"] for r in rows) and len({r["wamid"] for r in rows}) == 40
    assert delivered >= 120  # 3 statuses per message
    assert {d["status_code"] for d in ours} == {200}


def _lock_waiters() -> int:
    with tenant_tx("t-observer") as conn:  # pg_locks is not under RLS: every session's waits
        return conn.execute("SELECT count(DISTINCT pid) AS n FROM pg_locks "
                            "WHERE NOT granted").fetchone()["n"]


def _wait_for_lock_waiters(count: int) -> None:
    deadline = time.monotonic() + 30
    while _lock_waiters() < count:
        assert time.monotonic() < deadline, f"never saw {count} sessions waiting on a lock"
        time.sleep(0.02)


def test_result_writes_and_status_webhooks_over_the_same_messages_never_deadlock(
        api, sender, tenant_id):
    """A dispatch run's result flush and a status webhook batch for the same 100 messages, each
    visiting the rows in the opposite order to the other, made to overlap: a third session holds
    the middle row until both are waiting for it. Both lock their rows in id order first, so
    they queue instead of deadlocking: the flush (written here without the dispatcher's retry)
    does not fail, and the webhook is answered 200."""
    phone_id = sender["setup"].phone_number_id
    add_leads(tenant_id, 100)
    holder = uuid.uuid4()
    with tenant_tx(tenant_id) as conn:  # 100 permitted sends waiting for their results
        ids = sorted(str(r["id"]) for r in conn.execute(
            "INSERT INTO automation_logs (tenant_id, rule_id, lead_id, template_name, language, "
            "phone, status, claimed_by, attempt_started_at, attempts) "
            "SELECT l.tenant_id, r.id, l.id, r.template_name, r.language, l.phone, 'PENDING', "
            "%s, now(), 1 FROM leads l CROSS JOIN automation_rules r RETURNING id",
            (holder,)).fetchall())
    # wamid order is the reverse of id order and the results come in id order: a webhook
    # applied by wamid and a flush applied in result order meet the rows in opposite orders.
    wamid = {log_id: f"wamid.race.{999 - n:03d}" for n, log_id in enumerate(ids)}
    results = [Result(log_id=log_id, lead_id="", outcome="SENT", wamid=wamid[log_id])
               for log_id in ids]
    statuses = [status(wamid[log_id], kind, log_id=log_id, timestamp=1_760_000_000 + n)
                for n, kind in enumerate(("sent", "delivered", "read")) for log_id in ids]

    def flush() -> None:
        with tenant_tx(tenant_id) as conn:
            write_results(conn, holder, results)

    locked, release = threading.Event(), threading.Event()

    def hold_the_middle_row() -> None:
        with tenant_tx(tenant_id) as conn:
            conn.execute("SELECT 1 FROM automation_logs WHERE id = %s FOR UPDATE", (ids[50],))
            locked.set()
            release.wait(timeout=60)

    with ThreadPoolExecutor(max_workers=3) as pool:
        held = pool.submit(hold_the_middle_row)
        assert locked.wait(timeout=30)
        webhook = pool.submit(post_webhook, api, status_payload(phone_id, statuses))
        _wait_for_lock_waiters(1)
        flushed = pool.submit(flush)
        _wait_for_lock_waiters(2)
        release.set()  # both go on; without the fix each would hold rows the other needs
        held.result(timeout=60)
        assert webhook.result(timeout=60).status_code == 200
        flushed.result(timeout=60)  # a deadlock victim would raise DeadlockDetected here

    rows = fetch(tenant_id, "SELECT id, status, wamid FROM automation_logs")
    assert {str(r["id"]): (r["status"], r["wamid"]) for r in rows} == {
        log_id: ("READ", wamid[log_id]) for log_id in ids}

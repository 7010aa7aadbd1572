"""The token lifecycle job against the real parts: the Meta sandbox over HTTP, Postgres with
row-level security (as marketing_app), KMS/EventBridge/SQS in moto. Connections are made
directly (sandbox control API + shared.connection.credentials.save), not through the OAuth flow."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import struct
import threading
from datetime import UTC, datetime, timedelta

import pytest

from devstack.lambda_context import LocalContext
from devstack.template import load_template
from functions.token_refresh.app import lambda_handler
from shared.connection import credentials, token_store
from shared.connection.token_renewal import RECONNECT_EVENT
from shared.meta.graph import GraphClient
from shared.platform.db import tenant_tx
from shared.platform.settings import get_settings

pytest.register_assert_rewrite("tests.fixtures_tokens")

from tests.fixtures_tokens import (  # noqa: E402
    DAY,
    ScriptedContext,
    age_last_attempt,
    load_event,
    log_records,
    near,
    row_of,
    run_schedule,
    stored_token,
)

pytest_plugins = ["tests.fixtures_tokens"]

REFRESH_PATH = "/crm/auth/meta/refresh-tokens"
SIXTY_DAYS = timedelta(seconds=5183944)


def _summary(checked=0, refreshed=0, failed=0, needs_reconnect=0) -> dict:
    return {"checked": checked, "refreshed": refreshed, "failed": failed,
            "needs_reconnect": needs_reconnect}


def _works_at_meta(token: str) -> dict:
    """Call the sandbox with the token as any API function would (GET /me)."""
    with GraphClient.for_token(token) as graph:
        return graph.get("me")


def _debug(token: str) -> dict:
    with GraphClient.for_token(None) as graph:
        return graph.debug_token(token)


def _data_key(blob: bytes) -> bytes:
    """The KMS-encrypted data key inside a sealed token (the blob layout of
    shared/platform/crypto.py)."""
    (length,) = struct.unpack_from(">H", blob, 1)
    return blob[3:3 + length]


def _emf(stdout: str) -> dict[str, float]:
    """Metric values in the EMF records printed by the invocations (summed per name)."""
    found: dict[str, float] = {}
    for line in stdout.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        for directive in record.get("_aws", {}).get("CloudWatchMetrics", []):
            for metric in directive["Metrics"]:
                value = record[metric["Name"]]
                value = sum(value) if isinstance(value, list) else value
                found[metric["Name"]] = found.get(metric["Name"], 0) + value
    return found


# -- one run over every kind of connection ----------------------------------------------------
def test_a_run_over_expiring_fresh_never_expiring_and_revoked_tokens(
        drained, connections, meta_control, owner_conn, event_capture, tenant_id, capsys):
    expiring = connections.make(f"{tenant_id}-exp", expires_in=3 * DAY)
    fresh = connections.make(f"{tenant_id}-fresh")  # 60 days
    never = connections.make(f"{tenant_id}-never", expires_in=None, data_access_in=None)
    revoked = connections.make(f"{tenant_id}-rev", expires_in=2 * DAY)
    meta_control.revoke_token(revoked.token, subcode=460)
    before = {c.tenant_id: row_of(owner_conn, c.tenant_id)
              for c in (expiring, fresh, never, revoked)}
    requests_before = len(meta_control.requests())
    capsys.readouterr()

    summary = run_schedule()
    calls = meta_control.requests()[requests_before:]
    metrics = _emf(capsys.readouterr().out)

    assert summary == _summary(checked=2, refreshed=1, needs_reconnect=1)
    now = datetime.now(UTC)

    # Expiring: exchanged once, the real expiry read back with debug_token, re-sealed.
    row = row_of(owner_conn, expiring.tenant_id)
    assert (row["status"], row["status_reason"], row["refresh_failures"]) == ("active", None, 0)
    assert near(row["expires_at"], now + SIXTY_DAYS)
    assert row["last_refreshed_at"] is not None and row["refresh_lease_id"] is None
    assert meta_control.exchange_count(expiring.token) == 1
    renewed = stored_token(expiring.tenant_id)
    assert renewed != expiring.token
    info = _debug(renewed)
    assert info["is_valid"] is True
    assert row["expires_at"] == datetime.fromtimestamp(info["expires_at"], UTC)
    # Re-sealed under a fresh KMS data key, not the old one.
    assert _data_key(row["ciphertext"]) != _data_key(before[expiring.tenant_id]["ciphertext"])

    # Fresh and never-expiring: not touched at all (no Meta call, same ciphertext).
    for conn in (fresh, never):
        assert meta_control.exchange_count(conn.token) == 0
        after = row_of(owner_conn, conn.tenant_id)
        assert after["ciphertext"] == before[conn.tenant_id]["ciphertext"]
        assert after["status"] == "active" and after["last_refresh_attempt_at"] is None
    assert row_of(owner_conn, never.tenant_id)["expires_at"] is None

    # Revoked (190/460): needs_reconnect, and the CRM is told once.
    row = row_of(owner_conn, revoked.tenant_id)
    assert (row["status"], row["status_reason"]) == ("needs_reconnect", "meta_190_460")
    assert row["ciphertext"] == before[revoked.tenant_id]["ciphertext"]
    [event] = event_capture.of_type(RECONNECT_EVENT, revoked.tenant_id)
    assert event["source"] == "crm.marketing-hub"
    assert event["detail"]["reason"] == "meta_190_460"
    assert event["detail"]["status"] == "needs_reconnect"
    for other in (expiring, fresh, never):
        assert event_capture.of_type(RECONNECT_EVENT, other.tenant_id) == []

    # Two Meta calls per refreshed token, one for the revoked; no credential in any URL.
    assert len(calls) == 3
    assert not [c for c in calls if c["credential_in_url"]]
    # Outcome metrics, and the gauge (nothing left expiring: the one due token was renewed).
    assert {k: metrics.get(k) for k in ("TokensRefreshed", "TokensNeedReconnect",
                                        "ReconnectAlertsSent", "TokenRefreshFailures",
                                        "TokensExpiringSoon", "MetaApiCalls")} == {
        "TokensRefreshed": 1, "TokensNeedReconnect": 1, "ReconnectAlertsSent": 1,
        "TokenRefreshFailures": None, "TokensExpiringSoon": 0, "MetaApiCalls": 3}


def test_expired_token_and_expiring_or_expired_data_access(
        drained, connections, meta_control, owner_conn, event_capture, tenant_id):
    expired = connections.make(f"{tenant_id}-gone", expires_in=-3600)
    data_soon = connections.make(f"{tenant_id}-da", data_access_in=3 * DAY)
    data_gone = connections.make(f"{tenant_id}-dagone", data_access_in=-60)

    summary = run_schedule()

    assert summary == _summary(checked=3, needs_reconnect=2)
    # Expired without a successful refresh: broken, and no exchange tried (Meta refuses those).
    row = row_of(owner_conn, expired.tenant_id)
    assert (row["status"], row["status_reason"]) == ("needs_reconnect", "token_expired")
    assert meta_control.exchange_count(expired.token) == 0
    # Data access running out in 3 days: an exchange cannot renew it, so the tenant is told now.
    row = row_of(owner_conn, data_soon.tenant_id)
    assert (row["status"], row["status_reason"]) == ("expiring", "data_access_expiring")
    assert row["data_access_expires_at"] == data_soon.data_access_expires_at
    row = row_of(owner_conn, data_gone.tenant_id)
    assert (row["status"], row["status_reason"]) == ("needs_reconnect", "data_access_expired")
    reasons = {c.tenant_id: [e["detail"]["reason"] for e in
                             event_capture.of_type(RECONNECT_EVENT, c.tenant_id)]
               for c in (expired, data_soon, data_gone)}
    assert reasons == {expired.tenant_id: ["token_expired"],
                       data_soon.tenant_id: ["data_access_expiring"],
                       data_gone.tenant_id: ["data_access_expired"]}


# -- concurrency ------------------------------------------------------------------------------
def test_two_runs_started_together_refresh_each_token_exactly_once(
        drained, connections, meta_control, owner_conn, tenant_id):
    made = [connections.make(f"{tenant_id}-{i}", expires_in=(1 + i % 5) * DAY)
            for i in range(12)]
    # Slow exchanges keep both runs in flight over the same rows at the same time.
    meta_control.set_latency("/oauth/access_token", 150)
    start = threading.Barrier(2)
    summaries: list[dict] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            start.wait()
            summaries.append(run_schedule())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    assert errors == [] and len(summaries) == 2
    assert {c.token: meta_control.exchange_count(c.token) for c in made} == {
        c.token: 1 for c in made}
    total = {k: sum(s[k] for s in summaries) for k in summaries[0]}
    assert total == _summary(checked=12, refreshed=12)
    for c in made:
        row = row_of(owner_conn, c.tenant_id)
        assert row["status"] == "active" and row["refresh_lease_id"] is None
        assert stored_token(c.tenant_id) != c.token

    # The same scheduled event delivered again changes nothing.
    assert run_schedule() == _summary()
    assert all(meta_control.exchange_count(c.token) == 1 for c in made)


def test_a_run_stops_claiming_when_the_remaining_time_runs_short(
        drained, connections, meta_control, owner_conn, tenant_id):
    made = [connections.make(f"{tenant_id}-{i}", expires_in=(i + 1) * DAY) for i in range(5)]
    # Remaining time: plenty when the run sets its Meta deadline and starts two tenants, then
    # too short to start another.
    context = ScriptedContext(plenty_calls=3)

    summary = lambda_handler(load_event("token_refresh_scheduled.json"), context)

    assert summary == _summary(checked=2, refreshed=2)
    # The two most urgent were done; the rest are untouched and not held by a lease.
    assert [meta_control.exchange_count(c.token) for c in made] == [1, 1, 0, 0, 0]
    for c in made[2:]:
        row = row_of(owner_conn, c.tenant_id)
        assert row["refresh_lease_id"] is None and row["last_refresh_attempt_at"] is None
    # The next run picks them up.
    assert run_schedule() == _summary(checked=3, refreshed=3)


def test_a_run_works_when_the_calling_thread_already_runs_an_event_loop(
        drained, connections, meta_control, tenant_id):
    """Never so in Lambda, but in-process callers (a test session driving a browser through
    Playwright's sync API) keep a loop running in the main thread."""
    conn = connections.make(tenant_id, expires_in=2 * DAY)

    async def caller() -> dict:
        return run_schedule()  # a blocking call from inside the running loop

    assert asyncio.run(caller()) == _summary(checked=1, refreshed=1)
    assert meta_control.exchange_count(conn.token) == 1


# -- failures ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", [{"kind": "transient"}, {"kind": "rate_limit", "code": 4}])
def test_a_meta_failure_keeps_the_connection_active_and_the_next_run_succeeds(
        drained, connections, meta_control, owner_conn, event_capture, tenant_id, fault):
    conn = connections.make(tenant_id, expires_in=4 * DAY)
    before = row_of(owner_conn, tenant_id)
    meta_control.inject_fault(path="/oauth/access_token", count=10, **fault)

    assert run_schedule() == _summary(checked=1, failed=1)

    row = row_of(owner_conn, tenant_id)
    assert (row["status"], row["refresh_failures"]) == ("active", 1)
    assert row["ciphertext"] == before["ciphertext"] and row["refresh_lease_id"] is None
    assert row["last_refresh_attempt_at"] is not None
    assert stored_token(tenant_id) == conn.token
    assert event_capture.of_type(RECONNECT_EVENT, tenant_id) == []

    meta_control.clear_faults()
    assert run_schedule() == _summary(checked=1, refreshed=1)
    row = row_of(owner_conn, tenant_id)
    assert (row["status"], row["refresh_failures"]) == ("active", 0)
    assert near(row["expires_at"], datetime.now(UTC) + SIXTY_DAYS)
    assert event_capture.of_type(RECONNECT_EVENT, tenant_id) == []


def test_a_crash_between_the_exchange_and_the_commit_leaves_the_old_token_usable(
        drained, connections, meta_control, owner_conn, tenant_id, monkeypatch):
    conn = connections.make(tenant_id, expires_in=2 * DAY)
    before = row_of(owner_conn, tenant_id)
    real_save = token_store.save_result

    def crash_before_commit(db, *args, **kwargs):
        real_save(db, *args, **kwargs)  # the UPDATE ran inside the transaction...
        raise RuntimeError("injected crash")  # ...which never commits

    monkeypatch.setattr(token_store, "save_result", crash_before_commit)

    assert run_schedule() == _summary(checked=1, failed=1)

    assert meta_control.exchange_count(conn.token) == 1  # Meta did hand out a new token
    row = row_of(owner_conn, tenant_id)
    assert row["ciphertext"] == before["ciphertext"]
    assert (row["status"], row["expires_at"]) == ("active", before["expires_at"])
    assert row["refresh_lease_id"] is None  # released: the next run may retry at once
    old = stored_token(tenant_id)  # still decrypts...
    assert old == conn.token
    assert _works_at_meta(old)["id"] == "10001"  # ...and still works at Meta

    monkeypatch.setattr(token_store, "save_result", real_save)
    assert run_schedule() == _summary(checked=1, refreshed=1)
    assert stored_token(tenant_id) != conn.token


# -- alerts: once per connection, never once per run -----------------------------------------
def test_same_expiry_again_alerts_once_at_least_seven_days_ahead_not_once_per_run(
        drained, connections, meta_control, owner_conn, event_capture, tenant_id, capsys):
    meta_control.configure_oauth(extend_on_exchange=False)  # Meta does not extend the token
    capsys.readouterr()
    run_schedule()
    gauge_before = _emf(capsys.readouterr().out)["TokensExpiringSoon"]
    conn = connections.make(tenant_id, expires_in=7.5 * DAY)

    assert run_schedule() == _summary(checked=1)
    metrics = _emf(capsys.readouterr().out)
    assert metrics["TokensExpiringSoon"] == gauge_before + 1  # the gauge the alarm watches
    assert (metrics["TokensNotExtended"], metrics["ReconnectAlertsSent"]) == (1, 1)

    row = row_of(owner_conn, tenant_id)
    assert (row["status"], row["status_reason"]) == ("expiring", "token_not_extended")
    assert row["expires_at"] == conn.expires_at
    [event] = event_capture.of_type(RECONNECT_EVENT, tenant_id)
    detail = event["detail"]
    assert (detail["tenant_id"], detail["reason"], detail["status"]) == (
        tenant_id, "token_not_extended", "expiring")
    notice = datetime.fromisoformat(detail["expires_at"]) - datetime.now(UTC)
    assert notice >= timedelta(days=7)

    # The next hourly runs leave it alone; a day later it is tried again, with no new alert.
    assert run_schedule() == _summary()
    age_last_attempt(owner_conn, tenant_id, hours=25)
    second_token = stored_token(tenant_id)
    assert run_schedule() == _summary(checked=1)
    assert meta_control.exchange_count(second_token) == 1
    assert row_of(owner_conn, tenant_id)["status"] == "expiring"
    assert len(event_capture.of_type(RECONNECT_EVENT, tenant_id)) == 1  # still the one

    # When the expiry passes, it is broken: that is a new state, told once more.
    owner_conn.execute("UPDATE credentials SET expires_at = now() - interval '1 minute'"
                       " WHERE tenant_id = %s", (tenant_id,))
    assert run_schedule() == _summary(checked=1, needs_reconnect=1)
    assert row_of(owner_conn, tenant_id)["status"] == "needs_reconnect"
    told = [(e["detail"]["reason"], e["detail"]["status"])
            for e in event_capture.of_type(RECONNECT_EVENT, tenant_id)]
    assert told == [("token_not_extended", "expiring"), ("token_expired", "needs_reconnect")]
    assert run_schedule() == _summary()
    assert len(event_capture.of_type(RECONNECT_EVENT, tenant_id)) == 2


def test_an_exchange_meta_refuses_means_expiring_and_one_alert(
        drained, connections, meta_control, owner_conn, event_capture, tenant_id):
    meta_control.configure_oauth(refuse_exchange=True)
    conn = connections.make(tenant_id, expires_in=5 * DAY)

    assert run_schedule() == _summary(checked=1)
    assert run_schedule() == _summary()

    row = row_of(owner_conn, tenant_id)
    assert (row["status"], row["status_reason"]) == ("expiring", "exchange_refused")
    assert stored_token(tenant_id) == conn.token  # still the working token
    assert [e["detail"]["reason"] for e in event_capture.of_type(RECONNECT_EVENT, tenant_id)] == [
        "exchange_refused"]


def test_a_connection_marked_broken_elsewhere_is_announced_once(
        drained, connections, owner_conn, event_capture, tenant_id):
    connections.make(tenant_id)  # a fresh token, that an API call then found revoked
    with tenant_tx(tenant_id) as conn:
        assert credentials.mark_needs_reconnect(conn, "meta_190_467")

    assert run_schedule() == _summary(checked=1, needs_reconnect=1)
    assert run_schedule() == _summary()

    [event] = event_capture.of_type(RECONNECT_EVENT, tenant_id)
    assert (event["detail"]["reason"], event["detail"]["status"]) == (
        "meta_190_467", "needs_reconnect")
    assert row_of(owner_conn, tenant_id)["reconnect_notified_status"] == "needs_reconnect"


# -- the admin's "refresh now" ------------------------------------------------------------------
def test_an_admin_refreshes_their_own_token_now(api, connections, meta_control, owner_conn,
                                                tenant_id):
    conn = connections.make(tenant_id, expires_in=40 * DAY)  # not due: refreshed on request

    response = api.post(REFRESH_PATH, tenant_id=tenant_id, role="admin")

    assert response.status_code == 200, response.text
    assert response.json() == _summary(checked=1, refreshed=1)
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert meta_control.exchange_count(conn.token) == 1
    row = row_of(owner_conn, tenant_id)
    assert row["status"] == "active" and near(row["expires_at"], datetime.now(UTC) + SIXTY_DAYS)
    assert conn.token not in response.text


def test_refresh_now_of_a_never_expiring_token_only_checks_it(api, connections, meta_control,
                                                              owner_conn, tenant_id):
    conn = connections.make(tenant_id, expires_in=None)
    before = row_of(owner_conn, tenant_id)

    response = api.post(REFRESH_PATH, tenant_id=tenant_id, role="admin")

    assert response.status_code == 200 and response.json() == _summary(checked=1)
    assert meta_control.exchange_count(conn.token) == 0  # an exchange could give it an expiry
    row = row_of(owner_conn, tenant_id)
    assert row["ciphertext"] == before["ciphertext"] and row["expires_at"] is None


def test_refresh_now_of_a_revoked_token_reports_needs_reconnect(
        api, connections, meta_control, owner_conn, event_capture, tenant_id):
    conn = connections.make(tenant_id)
    meta_control.revoke_token(conn.token, subcode=467)

    response = api.post(REFRESH_PATH, tenant_id=tenant_id, role="admin")

    assert response.json() == _summary(checked=1, needs_reconnect=1)
    assert row_of(owner_conn, tenant_id)["status_reason"] == "meta_190_467"
    assert len(event_capture.of_type(RECONNECT_EVENT, tenant_id)) == 1
    # Asking again: still broken, no second alert.
    assert api.post(REFRESH_PATH, tenant_id=tenant_id, role="admin").json() == _summary(
        checked=1, needs_reconnect=1)
    assert len(event_capture.of_type(RECONNECT_EVENT, tenant_id)) == 1


def test_a_member_cannot_trigger_the_manual_refresh(api, connections, meta_control, owner_conn,
                                                    tenant_id):
    conn = connections.make(tenant_id, expires_in=2 * DAY)
    before = row_of(owner_conn, tenant_id)

    response = api.post(REFRESH_PATH, tenant_id=tenant_id, role="member")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert meta_control.exchange_count(conn.token) == 0
    assert row_of(owner_conn, tenant_id) == before
    assert api.post(REFRESH_PATH).status_code == 401  # no sign-in at all


def test_tenant_b_cannot_touch_tenant_a_token(api, connections, meta_control, owner_conn,
                                              tenant_id, other_tenant_id):
    a = connections.make(tenant_id, expires_in=2 * DAY)
    before = row_of(owner_conn, tenant_id)

    # B is an admin of its own tenant and names A in a header: the claims decide, not headers.
    response = api.post(REFRESH_PATH, tenant_id=other_tenant_id, role="admin",
                        headers={"X-Tenant-ID": tenant_id})

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "meta_not_connected"
    assert meta_control.exchange_count(a.token) == 0
    assert row_of(owner_conn, tenant_id) == before
    assert row_of(owner_conn, other_tenant_id) is None


def test_refresh_now_while_a_run_holds_the_token_is_a_conflict(api, connections, meta_control,
                                                               owner_conn, tenant_id):
    conn = connections.make(tenant_id, expires_in=2 * DAY)
    owner_conn.execute("UPDATE credentials SET refresh_lease_id = gen_random_uuid(),"
                       " refresh_lease_until = now() + interval '5 minutes' WHERE tenant_id = %s",
                       (tenant_id,))

    response = api.post(REFRESH_PATH, tenant_id=tenant_id, role="admin")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert meta_control.exchange_count(conn.token) == 0


# -- events and logs --------------------------------------------------------------------------
def test_the_sample_events_drive_the_handler(connections, meta_control, owner_conn, tenant_id):
    """events/*.json work as `sam local invoke -e` inputs: the manual route (its tenant claim
    set to this test's tenant) and both scheduled forms (EventBridge and Scheduler's input)."""
    conn = connections.make(tenant_id, expires_in=30 * DAY)
    manual = load_event("token_refresh_manual.json")
    manual["requestContext"]["authorizer"]["jwt"]["claims"]["custom:tenant_id"] = tenant_id
    response = lambda_handler(manual, LocalContext("token_refresh", 29))
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == _summary(checked=1, refreshed=1)
    assert meta_control.exchange_count(conn.token) == 1

    schedule_input = load_template()["Resources"]["TokenRefreshFunction"]["Properties"][
        "Events"]["Hourly"]["Properties"]["Input"]
    for event in (load_event("token_refresh_scheduled.json"), json.loads(schedule_input)):
        summary = lambda_handler(copy.deepcopy(event), LocalContext("token_refresh", 300))
        assert set(summary) == {"checked", "refreshed", "failed", "needs_reconnect"}


def test_no_token_or_ciphertext_appears_in_logs_or_output(
        drained, connections, meta_control, owner_conn, captured_logs, capsys, api, tenant_id):
    refreshed = connections.make(f"{tenant_id}-a", expires_in=2 * DAY)
    revoked = connections.make(f"{tenant_id}-b", expires_in=2 * DAY)
    failing = connections.make(f"{tenant_id}-c", expires_in=3 * DAY)
    manual = connections.make(f"{tenant_id}-d")
    meta_control.revoke_token(revoked.token)
    meta_control.inject_fault("transient", path="/oauth/access_token", count=100)
    capsys.readouterr()

    first = run_schedule()  # every exchange fails
    meta_control.clear_faults()
    second = run_schedule()
    response = api.post(REFRESH_PATH, tenant_id=manual.tenant_id, role="admin")

    assert first == _summary(checked=3, failed=3)
    assert second == _summary(checked=3, refreshed=2, needs_reconnect=1)
    assert response.status_code == 200
    out = capsys.readouterr()
    text = captured_logs.getvalue() + out.out + out.err + response.text
    made = (refreshed, revoked, failing, manual)
    secrets = {c.token for c in made} | {stored_token(c.tenant_id) for c in made}
    rows = [row_of(owner_conn, c.tenant_id) for c in made]
    secrets |= {r["ciphertext"].hex() for r in rows}
    secrets |= {base64.b64encode(r["ciphertext"]).decode() for r in rows}
    secrets.add(get_settings().app_secret())
    assert len(secrets) >= 10
    assert [s[:8] for s in secrets if s in text] == []
    # The capture did see the run: one token_refresh record per tenant and attempt.
    records = log_records(captured_logs, "token_refresh")
    assert {r["tenant_id"] for r in records} >= {c.tenant_id for c in made}
    assert {r["outcome"] for r in records} >= {"refreshed", "needs_reconnect", "failed"}
    assert "TokensExpiringSoon" in out.out  # the gauge went out as EMF


def test_renewal_failing_for_hours_inside_the_window_tells_the_tenant_once(
        drained, connections, meta_control, owner_conn, event_capture, tenant_id):
    """A token must not expire silently: when Meta fails the renewal run after run and the
    expiry is inside the 7-day window, the tenant is told (once), and a later success makes
    the connection active again."""
    connections.make(tenant_id, expires_in=4 * DAY)
    meta_control.inject_fault(path="/oauth/access_token", count=100, kind="transient")
    for _ in range(2):  # one or two failed hours: not yet worth an alert
        assert run_schedule() == _summary(checked=1, failed=1)
        assert row_of(owner_conn, tenant_id)["status"] == "active"
        assert event_capture.of_type(RECONNECT_EVENT, tenant_id) == []

    assert run_schedule() == _summary(checked=1, failed=1)
    row = row_of(owner_conn, tenant_id)
    assert (row["status"], row["status_reason"]) == ("expiring", "refresh_failing")
    [event] = event_capture.of_type(RECONNECT_EVENT, tenant_id)
    assert event["detail"]["reason"] == "refresh_failing"

    age_last_attempt(owner_conn, tenant_id, 25)  # the daily retry of an expiring connection
    assert run_schedule() == _summary(checked=1, failed=1)
    assert len(event_capture.of_type(RECONNECT_EVENT, tenant_id)) == 1  # once, not per run

    meta_control.clear_faults()
    age_last_attempt(owner_conn, tenant_id, 25)
    assert run_schedule() == _summary(checked=1, refreshed=1)
    row = row_of(owner_conn, tenant_id)
    assert (row["status"], row["status_reason"]) == ("active", None)
    assert near(row["expires_at"], datetime.now(UTC) + SIXTY_DAYS)

"""Faults through the Meta sandbox across every flow, and a database connection killed between
invocations.

For each flow (OAuth callback, ad-account wizard and connect, WhatsApp accounts and connect,
campaign sync, token refresh, HSM dispatch): bursts of 5xx, timeouts and dropped connections,
rate-limit errors carrying usage headers, and a token revoked in the middle of a run. Each case
checks the answer (status and error code, or the run's summary), that nothing was stored that
should not be, and that after the fault clears the next run ends exactly where one clean run
would: nothing lost, nothing duplicated.

Bursts shorter than the Graph client's 4 attempts are absorbed by its retries (idempotent calls
only); longer ones reach the caller.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from devstack.lambda_context import LocalContext
from sandbox.whatsapp_send import SendControl
from shared.connection import credentials
from shared.hsm.tenant_run import DispatchHooks
from shared.platform.db import tenant_tx
from shared.platform.settings import get_settings
from tests.ads_support import AdsControl, connect_meta, insight_rows, run_sync
from tests.fixtures_dispatch import HIGH_CAP, add_leads, add_rule, dispatch, make_retries_due
from tests.fixtures_oauth import Browser, credential_rows
from tests.fixtures_whatsapp import connect, fetch, new_account
from tests.reliability.conftest import assert_error, tenant_rows

EVENTS = Path(__file__).resolve().parents[2] / "events"
EXHAUSTING = 6  # more failures in a row than the client's 4 attempts


@pytest.fixture
def ads(stack):
    with AdsControl(stack.sandbox.url) as control:
        yield control


def _inject(meta, kind: str, path: str = ".*", count: int = EXHAUSTING, **opts) -> None:
    if kind == "rate_limit":
        opts = {"code": 80004, "regain_minutes": 3, "reset_seconds": 120, **opts}
    if kind == "timeout":
        opts = {"seconds": 1.0, **opts}
    meta.inject_fault(kind, path, count=count, **opts)


def _stored_token(tenant_id: str) -> str:
    with tenant_tx(tenant_id) as conn:
        return credentials.load(conn).token()


def _credential_status(tenant_id: str) -> str:
    with tenant_tx(tenant_id) as conn:
        return credentials.load(conn).status


# -- API flows that call Meta on a tenant's behalf -------------------------------------------------
API_FAULTS = ["burst_5xx", "timeout", "drop", "rate_limit", "revoked"]


def _break(meta, fault: str, tenant_id: str) -> None:
    if fault == "revoked":
        meta.revoke_token(_stored_token(tenant_id), subcode=460)
    else:
        _inject(meta, {"burst_5xx": "transient"}.get(fault, fault))


def _expect(response, fault: str, tenant_id: str) -> None:
    if fault == "rate_limit":
        assert_error(response, 429, "meta_rate_limited")
        assert int(response.headers["retry-after"]) >= 60  # from the usage headers' minutes
    elif fault == "revoked":
        assert_error(response, 409, "meta_reconnect_required")
        assert _credential_status(tenant_id) == "needs_reconnect"
    else:
        assert_error(response, 502, "meta_error")


@pytest.mark.parametrize("fault", API_FAULTS)
def test_wizard_under_faults(api, ads, meta, owner, short_meta_timeout, tenant_id, fault):
    layout = ads.new_user()
    connect_meta(ads, tenant_id, layout["user_id"])
    clean = api.get("/crm/marketing/meta-accounts", tenant_id=tenant_id)
    assert clean.status_code == 200, clean.text
    before = tenant_rows(owner, tenant_id)

    _break(meta, fault, tenant_id)
    _expect(api.get("/crm/marketing/meta-accounts", tenant_id=tenant_id), fault, tenant_id)
    meta.clear_faults()

    after = tenant_rows(owner, tenant_id)
    if fault != "revoked":
        assert after == before  # nothing stored, the connection still active
        again = api.get("/crm/marketing/meta-accounts", tenant_id=tenant_id)
        assert again.status_code == 200 and again.json() == clean.json()


def test_wizard_absorbs_a_short_burst(api, ads, meta, tenant_id):
    layout = ads.new_user()
    connect_meta(ads, tenant_id, layout["user_id"])
    clean = api.get("/crm/marketing/meta-accounts", tenant_id=tenant_id).json()
    _inject(meta, "transient", count=2)
    answer = api.get("/crm/marketing/meta-accounts", tenant_id=tenant_id)
    assert answer.status_code == 200 and answer.json() == clean
    assert meta.faults() == [] or all(f["remaining"] == 0 for f in meta.faults())


@pytest.mark.parametrize("fault", API_FAULTS)
def test_connect_under_faults_stores_nothing_then_connects_once(api, ads, meta, owner,
                                                                 event_capture,
                                                                 short_meta_timeout, tenant_id,
                                                                 fault):
    layout = ads.new_user()
    connect_meta(ads, tenant_id, layout["user_id"])
    account_id = layout["demo_account_id"]
    before = tenant_rows(owner, tenant_id)

    _break(meta, fault, tenant_id)
    failed = api.post("/crm/marketing/connect", tenant_id=tenant_id,
                      json={"account_id": account_id})
    _expect(failed, fault, tenant_id)
    meta.clear_faults()
    after = tenant_rows(owner, tenant_id)
    assert after["tenant_meta_accounts"] == before["tenant_meta_accounts"] == []
    assert event_capture.of_type("MetaAdAccountConnected", tenant_id) == []

    if fault == "revoked":
        connect_meta(ads, tenant_id, layout["user_id"])  # the admin reconnects Meta
    for _ in range(2):  # the retry, and a double click
        ok = api.post("/crm/marketing/connect", tenant_id=tenant_id,
                      json={"account_id": account_id})
        assert ok.status_code == 200, ok.text
    assert [r["account_id"] for r in tenant_rows(owner, tenant_id)["tenant_meta_accounts"]] == [
        account_id]


@pytest.mark.parametrize("fault", ["burst_5xx", "rate_limit", "revoked"])
def test_whatsapp_accounts_under_faults(api, wa, meta, owner, tenant_id, fault):
    setup = new_account(wa, meta, tenant_id)
    clean = api.get("/crm/marketing/whatsapp-accounts", tenant_id=tenant_id)
    assert clean.status_code == 200, clean.text
    _break(meta, fault, tenant_id)
    _expect(api.get("/crm/marketing/whatsapp-accounts", tenant_id=tenant_id), fault, tenant_id)
    meta.clear_faults()
    if fault != "revoked":
        assert api.get("/crm/marketing/whatsapp-accounts", tenant_id=tenant_id).json() == (
            clean.json())
    assert setup.waba_id in clean.text


@pytest.mark.parametrize("count", [EXHAUSTING, 1], ids=["burst", "blip"])
def test_whatsapp_connect_under_5xx(api, wa, meta, owner, tenant_id, count):
    setup = new_account(wa, meta, tenant_id)
    body = {"waba_id": setup.waba_id, "phone_number_id": setup.phone_number_id}
    _inject(meta, "transient", count=count)
    response = api.post("/crm/marketing/whatsapp/connect", tenant_id=tenant_id, json=body)
    meta.clear_faults()
    rows = tenant_rows(owner, tenant_id)
    if count == EXHAUSTING:
        assert_error(response, 502, "meta_error")
        assert rows["whatsapp_senders"] == [] and rows["meta_templates"] == []
        response = api.post("/crm/marketing/whatsapp/connect", tenant_id=tenant_id, json=body)
    assert response.status_code == 200, response.text
    rows = tenant_rows(owner, tenant_id)
    assert [s["phone_number_id"] for s in rows["whatsapp_senders"]] == [setup.phone_number_id]
    names = [(t["name"], t["language"]) for t in rows["meta_templates"]]
    assert len(names) == len(set(names)) == len(setup.templates)


# -- OAuth callback ---------------------------------------------------------------------------
OAUTH_FAULTS = [
    ("transient", "/oauth/access_token", 1),  # the code exchange: never retried (single-use)
    ("drop", "/oauth/access_token", 1),
    ("timeout", "/oauth/access_token", 1),
    ("rate_limit", "/oauth/access_token", 1),
    ("transient", "/debug_token", EXHAUSTING),
    ("rate_limit", "/debug_token", 1),
]


@pytest.mark.parametrize(("kind", "path", "count"), OAUTH_FAULTS,
                         ids=[f"{k}-{p.rsplit('/', 1)[-1]}" for k, p, _ in OAUTH_FAULTS])
def test_callback_under_faults_is_meta_error_then_a_new_flow_connects_once(
        api, stack, meta, owner, short_meta_timeout, tenant_id, kind, path, count):
    browser = Browser(api, stack.sandbox.url)
    try:
        flow = browser.start(tenant_id)
        url = browser.consent(flow)
        _inject(meta, kind, path, count=count)
        response = browser.callback(url, bindings=(flow.binding,))
        meta.clear_faults()
        assert response.status_code == 302
        assert response.headers["location"].endswith("/crm/marketing?error=meta_error")
        assert credential_rows(owner, tenant_id) == []
        replay = browser.callback(url, bindings=(flow.binding,))  # the state was consumed
        assert replay.headers["location"].endswith("error=invalid_state")
        again = browser.connect(browser.start(tenant_id))
        assert again.headers["location"].endswith("success=connected")
        assert len(credential_rows(owner, tenant_id)) == 1
    finally:
        browser.close()


def test_callback_absorbs_a_blip_on_debug_token(api, stack, meta, owner, tenant_id):
    browser = Browser(api, stack.sandbox.url)
    try:
        flow = browser.start(tenant_id)
        url = browser.consent(flow)
        code = parse_qs(urlsplit(url).query)["code"][0]
        _inject(meta, "transient", "/debug_token", count=1)
        response = browser.callback(url, bindings=(flow.binding,))
        assert response.headers["location"].endswith("success=connected")
        assert len(credential_rows(owner, tenant_id)) == 1
        assert code not in response.headers["location"]
    finally:
        browser.close()


# -- campaign sync ------------------------------------------------------------------------------
@pytest.fixture
def ads_pair(api, ads, tenant_id, other_tenant_id):
    """Two tenants connected to the same sandbox ad account: `clean` is synced without faults,
    `faulty` is the one the test breaks; their stored insights must end up equal."""
    user = ads.new_user(layout="empty")
    account = ads.new_account(user["user_id"], campaigns=4, timezone_name="Etc/UTC")
    for tenant in (tenant_id, other_tenant_id):
        connect_meta(ads, tenant, user["user_id"])
        response = api.post("/crm/marketing/connect", tenant_id=tenant,
                            json={"account_id": account["account_id"]})
        assert response.status_code == 200, response.text
    account_id = account["account_id"]
    assert run_sync(other_tenant_id, account_id)["outcome"] == "completed"
    return {"faulty": tenant_id, "clean": other_tenant_id, "account_id": account_id,
            "user_id": user["user_id"]}


def _insights(tenant_id: str, account_id: str) -> dict:
    return {key: (row["spend"], row["impressions"], row["clicks"], row["leads"])
            for key, row in insight_rows(tenant_id, account_id).items()}


def _unblock(tenant_id: str, account_id: str) -> None:
    """Time passes: the account's blocked_until (from Meta's usage headers) is behind us."""
    with tenant_tx(tenant_id) as conn:
        conn.execute("UPDATE tenant_meta_accounts SET blocked_until = now() - interval '1 s'"
                     " WHERE account_id = %s", (account_id,))


@pytest.mark.parametrize("fault", ["burst_5xx", "timeout", "drop", "rate_limit", "revoked"])
def test_sync_under_faults_resumes_to_the_same_rows_as_a_clean_sync(ads_pair, ads, meta,
                                                                    short_meta_timeout, fault):
    tenant, account_id = ads_pair["faulty"], ads_pair["account_id"]
    insights = rf"/{account_id}/insights"
    if fault == "revoked":
        # Campaigns are read with a good token; Meta invalidates it before the insights.
        meta.inject_fault("token_error", insights, count=EXHAUSTING, subcode=460)
    else:
        _inject(meta, {"burst_5xx": "transient"}.get(fault, fault), insights)
    first = run_sync(tenant, account_id)
    meta.clear_faults()

    expected_outcome = {"rate_limit": "throttled", "revoked": "needs_reconnect"}.get(fault,
                                                                                   "failed")
    assert first["outcome"] == expected_outcome, first
    if fault == "rate_limit":
        assert first["blocked_until"]
        assert run_sync(tenant, account_id)["outcome"] == "blocked"
        _unblock(tenant, account_id)
    if fault == "revoked":
        assert _credential_status(tenant) == "needs_reconnect"
        connect_meta(ads, tenant, ads_pair["user_id"])  # the admin reconnects
    second = run_sync(tenant, account_id)
    assert second["outcome"] == "completed", second
    assert _insights(tenant, account_id) == _insights(ads_pair["clean"], account_id)


# -- token refresh ------------------------------------------------------------------------------
def _expiring_connection(meta, tenant_id: str, days: float = 2.0) -> str:
    token = meta.issue_token("10001", scopes=list(get_settings().scopes),
                             expires_at=int(time.time() + days * 86400))
    with tenant_tx(tenant_id) as conn:
        credentials.save(conn, tenant_id, token,
                         expires_at=datetime.now(UTC) + timedelta(days=days),
                         data_access_expires_at=None, meta_user_id="10001",
                         scopes=list(get_settings().scopes))
    return token


@pytest.mark.parametrize("fault", ["burst_5xx", "timeout", "drop", "rate_limit"])
def test_refresh_under_faults_keeps_the_old_token_then_refreshes_once(api, meta, owner,
                                                                      short_meta_timeout,
                                                                      tenant_id, fault):
    old = _expiring_connection(meta, tenant_id)
    before = credential_rows(owner, tenant_id)[0]
    _inject(meta, {"burst_5xx": "transient"}.get(fault, fault), "/oauth/access_token")
    response = api.post("/crm/auth/meta/refresh-tokens", tenant_id=tenant_id)
    meta.clear_faults()
    assert response.status_code == 200, response.text
    assert response.json() == {"checked": 1, "refreshed": 0, "failed": 1, "needs_reconnect": 0}
    row = credential_rows(owner, tenant_id)[0]
    assert (row["status"], bytes(row["ciphertext"])) == ("active", bytes(before["ciphertext"]))
    assert _stored_token(tenant_id) == old  # still the working token

    again = api.post("/crm/auth/meta/refresh-tokens", tenant_id=tenant_id)
    assert again.json() == {"checked": 1, "refreshed": 1, "failed": 0, "needs_reconnect": 0}
    assert meta.exchange_count(old) == 1  # one exchange reached Meta's token endpoint
    assert _stored_token(tenant_id) != old


def test_token_revoked_while_the_scheduled_refresh_runs(meta, event_capture, tenant_id):
    """Three expiring connections; while the hourly run is on its way to Meta (0.8 s of latency
    on the token endpoint), the first person revokes the app. That connection ends
    needs_reconnect with one alert; the other two are refreshed once; a second run adds
    nothing."""
    from functions.token_refresh.app import lambda_handler

    tenants = [f"{tenant_id}-{i}" for i in range(3)]
    old = {t: _expiring_connection(meta, t) for t in tenants}
    event = json.loads((EVENTS / "token_refresh_scheduled.json").read_text())
    meta.set_latency("/oauth/access_token", 800)
    revoker = threading.Timer(0.2, meta.revoke_token, args=(old[tenants[0]],),
                              kwargs={"subcode": 460})
    revoker.start()
    try:
        lambda_handler(copy.deepcopy(event), LocalContext("token_refresh", 300))
    finally:
        revoker.join()
        meta.clear_latency()
    lambda_handler(copy.deepcopy(event), LocalContext("token_refresh", 300))

    assert _credential_status(tenants[0]) == "needs_reconnect"
    alerts = event_capture.of_type("MetaReconnectRequired", tenants[0])
    assert [a["detail"]["status"] for a in alerts] == ["needs_reconnect"]
    for tenant in tenants[1:]:
        assert meta.exchange_count(old[tenant]) == 1, tenant
        assert _stored_token(tenant) != old[tenant]
        assert _credential_status(tenant) == "active"
        assert event_capture.of_type("MetaReconnectRequired", tenant) == []


# -- HSM dispatch ---------------------------------------------------------------------------------
@pytest.fixture
def sender(stack, wa, _control, tenant_id):
    send = SendControl(stack.sandbox.url)
    setup = new_account(wa, _control, tenant_id)
    send.configure_number(setup.phone_number_id, max_per_second=HIGH_CAP)
    connect(setup, max_per_second=HIGH_CAP)
    rule_id = add_rule(tenant_id)
    yield {"setup": setup, "rule_id": rule_id, "send": send}
    send.clear_errors(setup.phone_number_id)
    send.close()


def _accepted(sender) -> list[str]:
    """Recipients of every message Meta accepted for this number (one entry per message)."""
    stats = sender["send"].stats(sender["setup"].phone_number_id, messages=True)
    return [m["wa_id"] for m in stats["messages"]]


def _finish(tenant_id: str, runs: int = 4) -> None:
    """Later runs, with the retry backoff elapsed before each (time passing, no sleeping)."""
    for _ in range(runs):
        make_retries_due(tenant_id)
        dispatch(tenant_id)


LEADS = 30


@pytest.mark.parametrize("fault", ["burst_5xx", "rate_limit_130429", "timeout", "drop"])
def test_dispatch_under_faults_never_sends_twice_and_loses_nothing_it_may_retry(
        sender, meta, short_meta_timeout, tenant_id, fault):
    add_leads(tenant_id, LEADS)
    phone_id = sender["setup"].phone_number_id
    if fault == "rate_limit_130429":
        sender["send"].inject_error(phone_id, 130429, count=8)
    else:
        _inject(meta, {"burst_5xx": "transient"}.get(fault, fault), rf"/{phone_id}/messages",
                count=8)
    first = dispatch(tenant_id)
    meta.clear_faults()
    sender["send"].clear_errors(phone_id)
    assert first.sent < LEADS
    _finish(tenant_id)

    accepted = _accepted(sender)
    assert len(accepted) == len(set(accepted))  # nobody got the template twice
    rows = fetch(tenant_id, "SELECT lead_id, status FROM automation_logs")
    assert len(rows) == len({r["lead_id"] for r in rows}) == LEADS  # one log per lead
    sent = [r for r in rows if r["status"] == "SENT"]
    assert len(sent) == len(accepted)
    if fault in ("burst_5xx", "rate_limit_130429"):
        # Meta refused those sends outright: they are retried, and everyone gets one message.
        assert len(accepted) == LEADS
    else:
        # A timeout or a dropped answer may hide an accepted message: those sends are never
        # repeated blindly (the webhook or the reconciliation settles them).
        assert len(accepted) >= LEADS - 8


def test_dispatch_token_revoked_mid_run_stops_then_completes_after_reconnect(
        sender, meta, tenant_id):
    add_leads(tenant_id, LEADS)
    setup = sender["setup"]
    # Paced at 5/s, 20 sends (4 s) remain when the 10th answer comes back: even on a loaded
    # machine (where 20/s once let all 30 leave before the revocation) the run is mid-way.
    with tenant_tx(tenant_id) as conn:
        conn.execute("UPDATE whatsapp_senders SET max_per_second = 5")

    def revoke_after_ten(n: int) -> None:
        if n == 10:
            meta.revoke_token(_stored_token(tenant_id), subcode=460)

    first = dispatch(tenant_id, hooks=DispatchHooks(after_result=revoke_after_ten))
    assert 10 <= first.sent < LEADS
    assert _credential_status(tenant_id) == "needs_reconnect"
    assert dispatch(tenant_id).sent == 0  # nothing goes out while the connection is broken

    from tests.fixtures_whatsapp import connect_meta as reconnect

    reconnect(meta, tenant_id, setup.user_id)
    _finish(tenant_id)
    accepted = _accepted(sender)
    assert len(accepted) == len(set(accepted)) == LEADS


# -- the database connection killed between invocations ------------------------------------------
def _kill_app_connections(owner) -> int:
    rows = owner.execute(
        "SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity"
        " WHERE usename = 'marketing_app' AND pid <> pg_backend_pid()").fetchall()
    return sum(1 for r in rows if r["killed"])


def _status_event(tenant_id: str) -> dict:
    event = json.loads((EVENTS / "token_status_member.json").read_text())
    claims = event["requestContext"]["authorizer"]["jwt"]["claims"]
    claims["custom:tenant_id"] = tenant_id
    return event


def test_api_invocation_after_the_connection_was_killed_recovers(owner, tenant_id):
    """The warm container's connection dies (RDS failover, idle kill) between invocations."""
    from functions.token_status.app import lambda_handler

    context = LocalContext("token_status", 10)
    assert lambda_handler(_status_event(tenant_id), context)["statusCode"] == 200
    assert _kill_app_connections(owner) >= 1
    for _ in range(2):
        answer = lambda_handler(copy.deepcopy(_status_event(tenant_id)), context)
        assert answer["statusCode"] == 200, answer
        assert json.loads(answer["body"])["status"] == "not_connected"


def test_scheduled_runs_after_the_connections_were_killed_recover(api, sender, meta, owner,
                                                                   tenant_id, other_tenant_id):
    # Warm every pool: the dispatcher's and the refresher's worker threads keep connections.
    add_leads(tenant_id, 5)
    assert dispatch(tenant_id).sent == 5
    _expiring_connection(meta, other_tenant_id)
    assert api.post("/crm/auth/meta/refresh-tokens",
                    tenant_id=other_tenant_id).json()["refreshed"] == 1

    assert _kill_app_connections(owner) >= 1

    add_leads(tenant_id, 5, start=5)
    assert dispatch(tenant_id).sent == 5
    accepted = _accepted(sender)
    assert len(accepted) == len(set(accepted)) == 10
    from functions.token_refresh.app import lambda_handler

    summary = lambda_handler(json.loads((EVENTS / "token_refresh_scheduled.json").read_text()),
                             LocalContext("token_refresh", 300))
    assert set(summary) == {"checked", "refreshed", "failed", "needs_reconnect"}
    assert summary["failed"] == 0

"""Demo step: the token lifecycle. The demo tenant's token is made to expire in 3 days, the hourly
job runs (the real handler, with a scheduled event) and renews it; a second tenant whose token
Meta will not extend is warned to reconnect (one MetaReconnectRequired event, read back from the
bus), though its token still works; the admin's "refresh now" route; token-status before and
after. No token is ever printed."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from devstack import jwt_tokens
from devstack.aws_local import BusCapture
from devstack.dev_routes import invoke_function
from sandbox.control import SandboxControl
from shared.connection import credentials
from shared.platform.db import tenant_tx
from shared.platform.settings import get_settings

EVENT = Path(__file__).resolve().parent.parent / "events" / "token_refresh_scheduled.json"
DAY = 86400


def _connect(control: SandboxControl, tenant_id: str, expires_in: int) -> None:
    """A connection as the OAuth callback would store it, with a token expiring soon."""
    now = int(time.time())
    scopes = get_settings().scopes
    token = control.issue_token("10001", scopes=scopes, expires_at=now + expires_in,
                                data_access_expires_at=now + 90 * DAY)
    with tenant_tx(tenant_id) as conn:
        credentials.save(conn, tenant_id, token, expires_at=datetime.fromtimestamp(
            now + expires_in, UTC), data_access_expires_at=datetime.fromtimestamp(
            now + 90 * DAY, UTC), meta_user_id="10001", scopes=scopes)


def _status(ctx, tenant_id: str) -> str:
    headers = {"Authorization": f"Bearer {jwt_tokens.sign(tenant_id, role='member')}"}
    body = ctx.http.get("/crm/marketing/token-status", headers=headers).json()
    return (f"status={body['status']} expires_at={body['expires_at']} "
            f"reason={body.get('reason')} missing_scopes={body['missing_scopes']}")


def _scheduled_run() -> dict:
    return invoke_function("token_refresh", json.loads(EVENT.read_text()))


def _reconnect_events(bus: BusCapture, tenant_id: str) -> list[str]:
    return [event["detail"].get("reason", "?") for event in bus.drain()
            if event["detail-type"] == "MetaReconnectRequired"
            and event["detail"].get("tenant_id") == tenant_id]


def run(ctx) -> None:
    with SandboxControl(ctx.stack.sandbox.url) as control:
        # 1. The demo tenant's token expires in 3 days (inside the 7-day window).
        _connect(control, ctx.tenant_id, 3 * DAY)
        ctx.say("Tokens: the demo tenant's Meta token now expires in 3 days",
                f"  token-status (member): {_status(ctx, ctx.tenant_id)}")

        # 2. The hourly EventBridge Scheduler run: fb_exchange_token, debug_token, re-seal.
        started = time.monotonic()
        summary = _scheduled_run()
        ctx.say("Tokens: scheduled token_refresh run (events/token_refresh_scheduled.json)",
                f"  summary: {summary}  ({time.monotonic() - started:.2f} s)\n"
                f"  token-status (member): {_status(ctx, ctx.tenant_id)}")

        # 3. Meta keeps the same expiry for another tenant: 'expiring', one alert, not one per run.
        other = f"{ctx.tenant_id}-b"
        bus = BusCapture(ctx.stack.aws_endpoint, ctx.stack.env["EVENT_BUS_NAME"])
        control.configure_oauth(extend_on_exchange=False)
        try:
            _connect(control, other, 5 * DAY)
            first = _scheduled_run()
            first_events = _reconnect_events(bus, other)
            second = _scheduled_run()
            second_events = _reconnect_events(bus, other)
        finally:
            control.configure_oauth(extend_on_exchange=True)
        ctx.say("Tokens: a tenant whose token Meta will not extend",
                f"  first run: {first}\n  second run: {second}\n"
                f"  token-status: {_status(ctx, other)}\n"
                "  needs_reconnect is 0: it counts tokens that no longer work, and this one still\n"
                "  works for 5 days ('expiring'). Because Meta would not extend it, the first run\n"
                f"  warned the CRM ahead: MetaReconnectRequired events on the bus: "
                f"{len(first_events)} ({', '.join(first_events) or '-'});\n"
                f"  after the second run: {len(second_events)} more (re-tried once a day, "
                "alerted once)")

        # 4. The admin's "refresh now" (a member is refused).
        member = ctx.http.post("/crm/auth/meta/refresh-tokens", headers=ctx.headers("member"))
        admin = ctx.http.post("/crm/auth/meta/refresh-tokens", headers=ctx.headers("admin"))
        ctx.say("Tokens: POST /crm/auth/meta/refresh-tokens",
                f"  as member: {member.status_code} {member.json()['error']['code']}\n"
                f"  as admin:  {admin.status_code} {admin.json()}\n"
                "  (renewed a moment ago: Meta's new token has the same ~60-day expiry, so the\n"
                "  run stores it but counts it as checked, not refreshed)\n"
                f"  token-status (member): {_status(ctx, ctx.tenant_id)}")

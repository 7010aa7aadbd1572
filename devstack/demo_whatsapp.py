"""Demo step: WhatsApp follow-ups end to end.

Connect the tenant's WhatsApp number, create a `lead_followup` rule through the rules API, add a
few leads, run hsm_dispatch with a scheduled event (as EventBridge Scheduler would), let the
sandbox deliver Meta's signed status webhooks to the local API, and read the message logs with
their delivered/read statuses. A second run shows that nobody is messaged twice.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from devstack.dev_routes import invoke_function

WABA_ID, PHONE_NUMBER_ID = "8001", "9001"  # Ana Demo's seeded WABA and first number
SCHEDULED_EVENT = {"version": "0", "detail-type": "Scheduled Event", "source": "aws.events",
                   "detail": {}}
LEADS = [  # name, phone, hours old, opted out, contacted
    ("Lucía Fernández", "+34611000001", 30, False, False),
    ("Marcos Ruiz", "+34611000002", 50, False, False),
    ("Carmen Gil", "+34611000003", 26, False, False),
    ("Javier Soto", "+34611000004", 72, False, False),
    ("Elena Mora", "+34611000005", 40, True, False),  # opted out of WhatsApp
    ("Pablo Vega", "+34611000006", 40, False, True),  # a salesperson already called
    ("Sara León", "+34611000007", 2, False, False),  # too recent for a 24 h follow-up
]


def _ensure_connected(ctx) -> str:
    """Earlier steps normally connected Ana Demo through OAuth; if not, store a sandbox token
    of hers the way the callback would."""
    if ctx.data.get("meta_connected"):
        return "Meta connected through the OAuth step"
    from sandbox.control import SandboxControl
    from shared.connection import credentials
    from shared.platform.db import tenant_tx
    from shared.platform.settings import DEFAULT_SCOPES

    with SandboxControl(ctx.stack.sandbox.url) as control:
        token = control.issue_token("10001", scopes=list(DEFAULT_SCOPES))
    with tenant_tx(ctx.tenant_id) as conn:
        credentials.save(conn, ctx.tenant_id, token,
                         expires_at=datetime.now(UTC) + timedelta(days=59),
                         data_access_expires_at=datetime.now(UTC) + timedelta(days=89),
                         meta_user_id="10001", scopes=list(DEFAULT_SCOPES))
    return "the OAuth step did not connect; stored a sandbox token for Ana Demo instead"


def _add_leads(ctx) -> None:
    from shared.platform.db import tenant_tx

    now = datetime.now(UTC)
    with tenant_tx(ctx.tenant_id) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO leads (tenant_id, name, phone, created_at, whatsapp_opt_out,"
            " last_contacted_at, lead_source) VALUES (%s, %s, %s, %s, %s, %s, 'meta_ads')",
            [(ctx.tenant_id, name, phone, now - timedelta(hours=hours), opted_out,
              now - timedelta(hours=1) if contacted else None)
             for name, phone, hours, opted_out, contacted in LEADS])


def _dispatch(ctx) -> str:
    """A tick as AWS runs it: the planner queues each tenant with due work, then Lambda's SQS
    event source hands the messages to the workers (devstack.queues)."""
    from devstack.queues import deliver_all
    from sandbox.whatsapp_send import SendControl

    planned = invoke_function("hsm_dispatch", SCHEDULED_EVENT)
    delivered = deliver_all(queues={"HsmDispatchQueue"})["HsmDispatchQueue"]
    control = SendControl(ctx.stack.sandbox.url)
    accepted = control.stats(PHONE_NUMBER_ID)["sent"]
    control.close()
    return (f"  planner: {planned}\n  workers: {delivered} message(s) taken off "
            f"HsmDispatchQueue; Meta has accepted {accepted} messages")


def _logs(ctx) -> list[dict]:
    response = ctx.http.get("/crm/marketing/hsm/logs", headers=ctx.headers("member"))
    response.raise_for_status()
    return response.json()["logs"]


def run(ctx) -> None:
    from sandbox.whatsapp_send import SendControl

    how = _ensure_connected(ctx)
    admin = ctx.headers("admin")

    response = ctx.http.get("/crm/marketing/whatsapp-accounts", headers=admin)
    response.raise_for_status()
    # The person's own business's numbers first (as the reference page lists them).
    wabas = sorted(response.json()["accounts"], key=lambda w: w["ownership"] != "owned")
    numbers = [f"  WABA {w['id']} {w['name']} ({w['ownership']}): " + ", ".join(
        f"{p['display_phone_number']} ({p['quality_rating']}, {p['messaging_limit_tier']})"
        for p in w["phone_numbers"]) for w in wabas]
    ctx.say("WhatsApp: GET /crm/marketing/whatsapp-accounts (admin)",
            f"({how})\n" + "\n".join(numbers))

    response = ctx.http.post("/crm/marketing/whatsapp/connect", headers=admin,
                             json={"waba_id": WABA_ID, "phone_number_id": PHONE_NUMBER_ID})
    response.raise_for_status()
    sender = response.json()
    ctx.say("WhatsApp: POST /crm/marketing/whatsapp/connect",
            f"  {sender['message']} Pace: {sender['max_per_second']} messages/s.")

    response = ctx.http.get("/crm/marketing/hsm/templates", headers=ctx.headers("member"))
    response.raise_for_status()
    templates = response.json()["templates"]
    ctx.say("WhatsApp: GET /crm/marketing/hsm/templates", "\n".join(
        f"  {t['name']:<22} {t['language']:<6} {t['status']:<9}"
        f"{' (' + t['rejection_reason'] + ')' if t['rejection_reason'] else ''}"
        for t in templates))

    rules = {}
    for name, template in (("Seguimiento 24h", "lead_followup_es"),
                           ("Recordatorio 24h", "recordatorio_pausado")):
        response = ctx.http.post("/crm/marketing/hsm/rules", headers=admin, json={
            "name": name, "trigger_type": "lead_followup", "delay_hours": 24,
            "template_name": template, "language": "es", "body_params": ["first_name"],
            "enabled": True})
        response.raise_for_status()
        rules[name] = response.json()
    ctx.say("WhatsApp: POST /crm/marketing/hsm/rules (twice)", "\n".join(
        f"  {r['name']}: {r['template_name']} ({r['template_status']}), after "
        f"{r['delay_hours']} h, body = {r['body_params']}" for r in rules.values()))

    _add_leads(ctx)
    ctx.say("WhatsApp: Leads in the CRM", "\n".join(
        f"  {name:<16} {phone}  created {hours} h ago"
        f"{', opted out' if out else ''}{', already contacted' if called else ''}"
        for name, phone, hours, out, called in LEADS))

    control = SendControl(ctx.stack.sandbox.url)
    control.configure_webhooks(url=f"{ctx.stack.api_url}/crm/webhooks/meta", enabled=True,
                               numbers=[PHONE_NUMBER_ID], statuses=["sent", "delivered", "read"])
    try:
        ctx.say("WhatsApp: hsm_dispatch (the planner, every minute in AWS) and hsm_worker",
                _dispatch(ctx))
        # Meta reports sent, delivered and read through signed webhooks, a moment later.
        end = time.monotonic() + 15
        logs = _logs(ctx)
        while time.monotonic() < end and any(
                log["status"] in ("PENDING", "SENT", "DELIVERED") for log in logs):
            time.sleep(0.2)
            logs = _logs(ctx)
    finally:
        control.configure_webhooks(enabled=False, numbers=None)
    stats = control.stats(PHONE_NUMBER_ID)
    control.close()
    ctx.say("WhatsApp: GET /crm/marketing/hsm/logs (member), after the status webhooks",
            "\n".join(
                f"  {log['lead']['name']:<16} {log['phone']}  {log['rule']['name']:<16} "
                f"{log['status']:<8}"
                f"{' ' + log['error']['message'] if log['error'] else ''}" for log in logs)
            + f"\n  Meta (sandbox) accepted {stats['sent']} messages for "
              f"{stats['distinct_recipients']} people; most in any second: "
              f"{stats['max_in_any_second']} (cap {stats['max_per_second']}).")

    ctx.say("WhatsApp: hsm_dispatch again", _dispatch(ctx) + " (nobody is messaged twice)")

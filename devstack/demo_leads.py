"""Demo step: a lead from a Facebook lead form gets its WhatsApp message seconds later.

Runs after the WhatsApp step (the sender is connected, its templates synced). Connect one of the
person's Pages, create a `lead_created` rule through the rules API, and let the queues run the
way Lambda's event sources do (devstack.queues.QueuePump). Then someone fills the lead form: the
sandbox posts Meta's signed leadgen notification to the webhook, the lead reader stores the lead
and wakes the tenant, a dispatch worker sends the template. The step prints the seconds from the
notification's POST to Meta accepting the message, both as the sandbox recorded them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from devstack.demo_whatsapp import PHONE_NUMBER_ID

PERSON = "10001"  # Ana Demo
LEAD = {"name": "Rocío Navarro", "phone": "+34 612 345 678", "email": "rocio@example.com"}
WAIT_SECONDS = 30


def _ensure_lead_scopes(ctx) -> str:
    """The pages routes need the optional Lead Ads scopes; a connect that declined them gets a
    sandbox token of Ana's with them, as a reconnect that granted them would leave."""
    response = ctx.http.get("/crm/marketing/pages", headers=ctx.headers("admin"))
    if response.status_code != 409:
        response.raise_for_status()
        return "the connection already has the Lead Ads scopes"
    from sandbox.control import SandboxControl
    from shared.connection import credentials
    from shared.platform.db import tenant_tx
    from shared.platform.settings import DEFAULT_SCOPES, LEAD_ADS_SCOPES

    scopes = [*DEFAULT_SCOPES, *LEAD_ADS_SCOPES]
    with SandboxControl(ctx.stack.sandbox.url) as control:
        token = control.issue_token(PERSON, scopes=scopes)
    with tenant_tx(ctx.tenant_id) as conn:
        credentials.save(conn, ctx.tenant_id, token,
                         expires_at=datetime.now(UTC) + timedelta(days=59),
                         data_access_expires_at=datetime.now(UTC) + timedelta(days=89),
                         meta_user_id=PERSON, scopes=scopes)
    return "reconnected with the Lead Ads scopes"


def _wait_for_message(control, to: str) -> dict | None:
    end = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < end:
        sent = [m for m in control.stats(PHONE_NUMBER_ID, messages=True)["messages"]
                if m["to"] == to]
        if sent:
            return sent[0]
        time.sleep(0.05)
    return None


def run(ctx) -> None:
    from devstack.queues import QueuePump
    from sandbox.pages import PagesControl
    from sandbox.whatsapp_send import SendControl

    admin = ctx.headers("admin")
    how = _ensure_lead_scopes(ctx)
    pages = PagesControl(ctx.stack.sandbox.url)
    sends = SendControl(ctx.stack.sandbox.url)
    created = pages.create_page(PERSON, name="Ventas Demo Formularios", forms=1)
    page_id, form_id = created["page_id"], created["form_ids"][0]

    response = ctx.http.get("/crm/marketing/pages", headers=admin)
    response.raise_for_status()
    ctx.say("Lead Ads: GET /crm/marketing/pages (admin)", f"  ({how})\n" + "\n".join(
        f"  {p['id']} {p['name']}{' (connected)' if p['connected'] else ''}"
        for p in response.json()["pages"]))

    response = ctx.http.post("/crm/marketing/pages/connect", headers=admin,
                             json={"page_id": page_id})
    response.raise_for_status()
    connected = response.json()
    ctx.say("Lead Ads: POST /crm/marketing/pages/connect",
            f"  {connected['page_name']}: subscribed to leadgen, {connected['imported']} "
            "leads of the last 90 days imported")

    response = ctx.http.post("/crm/marketing/hsm/rules", headers=admin, json={
        "name": "Bienvenida al instante", "trigger_type": "lead_created",
        "template_name": "lead_followup_es", "language": "es", "body_params": ["first_name"],
        "delay_minutes": 0, "enabled": True})
    response.raise_for_status()
    rule = response.json()
    ctx.say("Lead Ads: POST /crm/marketing/hsm/rules (trigger lead_created)",
            f"  {rule['name']}: {rule['template_name']} ({rule['template_status']}), "
            f"{rule['delay_minutes']} minutes after the lead arrives")

    pages.configure_webhooks(url=f"{ctx.stack.api_url}/crm/webhooks/meta", enabled=True,
                             batch_size=1)
    pump = QueuePump(interval=0.05).start()  # the template's SQS event sources
    try:
        [lead] = pages.create_leads(page_id, form_id=form_id, deliver="async", **LEAD)
        message = _wait_for_message(sends, "+34612345678")
    finally:
        pump.stop()
        pages.configure_webhooks(enabled=False)
    [delivery] = [d for d in pages.webhook_log()["deliveries"] if lead["id"] in d["leadgen_ids"]]
    pages.close()
    sends.close()
    if message is None:
        raise RuntimeError(f"no WhatsApp message to the lead within {WAIT_SECONDS} s")
    seconds = message["ts"] - delivery["sent_at"]
    ctx.say("Lead Ads: someone fills the lead form", "\n".join([
        f"  {LEAD['name']} ({LEAD['phone']}) submits form {form_id}; Meta (sandbox) posts the "
        "signed leadgen notification to /crm/webhooks/meta",
        f"  webhook answered {delivery['status_code']}; lead_reader stored the lead and woke "
        "the tenant; hsm_worker sent the template",
        f"  WhatsApp message accepted by Meta {seconds:.2f} s after the notification "
        f"(template {message['template']}, body {message['params']})"]))

    response = ctx.http.get("/crm/marketing/leads/ads", headers=ctx.headers("member"))
    response.raise_for_status()
    ctx.say("Lead Ads: GET /crm/marketing/leads/ads (member)", "\n".join(
        f"  {row['name']:<16} {row['phone']}  form {row['form_id']}  "
        f"follow-up sent: {'yes' if row['followup_sent'] else 'no'}"
        f"{', contacted ' + row['last_contacted_at'] if row['last_contacted_at'] else ''}"
        for row in response.json()["leads"][:5]))

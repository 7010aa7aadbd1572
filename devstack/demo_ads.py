"""Demo step: the ad account wizard, connecting one account, its campaign sync, and the stats.

The sync runs as AWS runs it: the connect call puts `MetaAdAccountConnected` on the bus, the
template's rule (created in moto) turns it into a message on the campaign-sync queue, and the
queue is delivered to the campaign_sync worker; then the CRM's marketing screens are read as a
member.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

DEMO_ACCOUNT_NAME = "Ventas Demo 01"  # the seeded account with 30 campaigns (sandbox/ads.py)


def percent(ratio: float | None) -> str:
    """ROI as the page shows it: (revenue - spend) / spend as a percentage."""
    return "—" if ratio is None else f"{ratio * 100:+.1f} %"


def _ensure_connected(ctx) -> str:
    """The OAuth step normally connected Ana Demo; if it could not, store a sandbox token of
    hers the way the callback would, so this step still shows the ads part."""
    if ctx.data.get("meta_connected"):
        return "connected through the OAuth step"
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
    return "OAuth step did not connect; stored a sandbox token for Ana Demo instead"


def _synced(tenant_id: str, account_id: str) -> tuple[dict, int]:
    from shared.platform.db import tenant_tx

    with tenant_tx(tenant_id) as conn:
        account = conn.execute("SELECT * FROM tenant_meta_accounts WHERE account_id = %s",
                               (account_id,)).fetchone()
        rows = conn.execute("SELECT count(*) AS n FROM meta_ads_insights WHERE account_id = %s",
                            (account_id,)).fetchone()["n"]
    return account, rows


def _requeue_connected(tenant_id: str, account_id: str) -> None:
    """The message AccountConnectedRule wrote, sent once more."""
    import json

    from devstack.queues import queue_url
    from shared.platform.aws import client

    client("sqs").send_message(QueueUrl=queue_url("CampaignSyncQueue"), MessageBody=json.dumps(
        {"tenant_id": tenant_id, "account_id": account_id, "reason": "connected"}))


def _crm_leads(ctx, campaign_ids: list[str]) -> int:
    """Leads the CRM would hold for those campaigns: some won with a deal value."""
    from shared.platform.db import tenant_tx

    rng = random.Random(5)  # noqa: S311 - demo data
    now = datetime.now(UTC)
    rows = []
    for n in range(300):
        won = n % 4 == 0
        rows.append((ctx.tenant_id, f"Lead demo {n + 1}", rng.choice(campaign_ids),
                     "meta_ads", "won" if won else rng.choice(["new", "contacted", "lost"]),
                     rng.choice([150, 300, 450, 900]) if won else None,
                     "EUR" if won else None, now - timedelta(days=rng.randint(0, 60))))
    with tenant_tx(ctx.tenant_id) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO leads (tenant_id, name, meta_campaign_id, lead_source, status,"
            " deal_value, deal_currency, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            rows)
    return len(rows)


def run(ctx) -> None:
    how = _ensure_connected(ctx)

    # 1. The wizard: every ad account the token can use, once each.
    response = ctx.http.get("/crm/marketing/meta-accounts", headers=ctx.headers("admin"))
    response.raise_for_status()
    accounts = response.json()["accounts"]
    businesses = sorted({a["business_manager_name"] or "(no business)" for a in accounts})
    sample = "\n".join(
        f"  {a['id']:<24} {a['name'][:26]:<26} {a['status']:<18} "
        f"{a['currency']} {'can run ads' if a['can_run_ads'] else 'cannot run ads'}"
        for a in accounts[:4] + [a for a in accounts if not a["can_run_ads"]][:2])
    ctx.say("Ads: GET /crm/marketing/meta-accounts (admin)",
            f"({how})\n  {len(accounts)} ad accounts, each once, from businesses: "
            f"{', '.join(businesses)}\n{sample}\n  ...")

    # 2. Connect one of them.
    chosen = next(a for a in accounts if a["name"] == DEMO_ACCOUNT_NAME)
    response = ctx.http.post("/crm/marketing/connect", headers=ctx.headers("admin"),
                             json={"account_id": chosen["id"]})
    response.raise_for_status()
    body = response.json()
    ctx.data["ads_account_id"] = body["account_id"]
    ctx.say("Ads: POST /crm/marketing/connect (admin)",
            f"status {response.status_code}: {body}\n"
            "  event MetaAdAccountConnected put on the bus for the campaign sync")

    # The campaign sync: the event's rule puts the account on CampaignSyncQueue, and Lambda's SQS
    # event source hands it to the sync worker (devstack.queues does that part locally).
    from devstack.queues import deliver_all

    delivered = deliver_all(queues={"CampaignSyncQueue"})["CampaignSyncQueue"]
    account, rows = _synced(ctx.tenant_id, body["account_id"])
    ctx.say("Ads: campaign_sync (EventBridge rule -> CampaignSyncQueue -> worker)",
            f"{delivered} message(s); outcome {account['last_sync_outcome']}: "
            f"{account['campaigns_synced']} campaigns, {rows} daily insight rows up to "
            f"{account['last_synced_date']}")
    _requeue_connected(ctx.tenant_id, body["account_id"])
    deliver_all(queues={"CampaignSyncQueue"})
    _, again = _synced(ctx.tenant_id, body["account_id"])
    ctx.more("...and the same message delivered again (SQS delivers at least once)",
             f"{again - rows} new daily rows: the rerun reads only the lookback window and "
             "upserts")

    # 4. The CRM's marketing screens (member).
    campaigns = ctx.http.get("/crm/marketing/campaigns", headers=ctx.headers("member")).json()
    top = "\n".join(f"  {c['name'][:34]:<34} {c['status']:<7} spend {c['spend']:>9.2f} "
                    f"{c['currency']}  Meta leads {c['leads']:>4}"
                    for c in campaigns["campaigns"][:5])
    ctx.say("Ads: GET /crm/marketing/campaigns (member)",
            f"{len(campaigns['campaigns'])} campaigns; top by spend:\n{top}")

    leads = _crm_leads(ctx, [c["campaign_id"] for c in campaigns["campaigns"]])
    stats = ctx.http.get("/crm/marketing/stats", headers=ctx.headers("member")).json()
    totals = "\n".join(
        f"  {t['currency']}: spend {t['spend']:.2f}, CRM leads {t['leads']} "
        f"(Meta reported {t['meta_leads']}), cost per lead {t['cost_per_lead']}, "
        f"won {t['won_leads']} for {t['revenue']:.2f}, ROI {percent(t['roi'])}"
        for t in stats["totals"])
    ctx.say("Ads: GET /crm/marketing/stats (member)",
            f"with {leads} CRM leads attributed to those campaigns:\n{totals}")
    roi = ctx.http.get("/crm/marketing/stats/roi", headers=ctx.headers("member")).json()
    best = "\n".join(f"  {c['name'][:34]:<34} spend {c['spend']:>9.2f} revenue "
                     f"{c['revenue']:>8.2f} ROI {percent(c['roi']):>8}"
                     for c in roi["campaigns"][:3])
    ctx.say("Ads: GET /crm/marketing/stats/roi (member): best return first", best)

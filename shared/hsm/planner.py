"""The dispatch planner: every minute, which tenants have HSM work now, one SQS message each.

It reads only ids and send windows (migrations/0009's hsm_due_work): a due lead for a rule,
a retry whose time has come, skipped leads whose template is approved now, or a dead run's rows
to recover. Rules in their quiet hours wait, and tenants whose run is under way or that were
queued a moment ago are left out. An idle tenant therefore costs one indexed look: no lease,
no KMS call, no Graph call. The workers (shared.hsm.worker) do the rest.

Running it twice at once, or on a duplicated tick, only queues a tenant twice, and a worker
that finds the tenant's lease held or nothing due any more lets the message go.
"""

from __future__ import annotations

from datetime import UTC, datetime

from shared.hsm import claims
from shared.hsm.eligibility import send_window_open
from shared.hsm.planning import STARTED_TIMEOUT_SECONDS
from shared.platform import queues
from shared.platform.db import system_tx
from shared.platform.observability import logger, metrics
from shared.platform.settings import get_settings

# A tenant queued this recently, and not run since, is not queued again: a worker will get to
# it. After this long the message is taken as lost (a dead-lettered batch), and queued anew.
REQUEUE_AFTER_SECONDS = 10 * 60


def due_tenants(now: datetime | None = None) -> tuple[list[str], int]:
    """Tenants to queue now, and the number of rules that are due for them."""
    now = now or datetime.now(UTC)
    with system_tx() as conn:
        work = claims.due_work(conn, STARTED_TIMEOUT_SECONDS, REQUEUE_AFTER_SECONDS)
    tenants: dict[str, None] = {}
    rules = 0
    for item in work:
        if item.rule_id is None:  # recovery: whatever the hour
            tenants.setdefault(item.tenant_id)
        elif send_window_open(item.send_window, item.timezone, now):
            tenants.setdefault(item.tenant_id)
            rules += 1
    return list(tenants), rules


def dispatch_message(tenant_id: str, reason: str) -> dict[str, str]:
    """The body a worker reads (shared.hsm.worker.DispatchRequest)."""
    return {"tenant_id": tenant_id, "reason": reason,
            "queued_at": datetime.now(UTC).isoformat()}


def plan_dispatch() -> dict[str, int]:
    """Queue every tenant with due work. The contract's summary: `tenants_queued` is what this
    run handed out; the planner sends nothing itself, so `sent`, `failed` and `skipped` are 0
    and `rules` counts the due rules it found."""
    tenants, rules = due_tenants()
    queued = queues.send(get_settings().hsm_dispatch_queue_url,
                         [dispatch_message(t, "due") for t in tenants])
    queued_ids = [body["tenant_id"] for body in queued]
    with system_tx() as conn:
        claims.mark_queued(conn, queued_ids)
    summary = {"rules": rules, "sent": 0, "failed": 0, "skipped": 0,
               "tenants_queued": len(queued_ids)}
    metrics.add_metric(name="HsmTenantsQueued", unit="Count", value=len(queued_ids))
    if len(queued_ids) < len(tenants):
        metrics.add_metric(name="HsmQueueSendFailures", unit="Count",
                           value=len(tenants) - len(queued_ids))
    logger.info("hsm_dispatch_planned", extra={**summary, "due_tenants": len(tenants)})
    return summary


def wake(tenant_id: str, reason: str = "lead_stored") -> bool:
    """Queue the tenant for a dispatch now, e.g. because a lead was just stored: a worker takes
    it within seconds instead of at the next tick. False when SQS refused: nothing is lost, the
    next plan (a minute away) finds the same work."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        sent = queues.send(get_settings().hsm_dispatch_queue_url,
                           [dispatch_message(tenant_id, reason)])
    except (BotoCoreError, ClientError) as exc:
        sent = []
        logger.warning("hsm_wake_failed", extra={"tenant_id": tenant_id,
                                                 "error_type": type(exc).__name__})
    metrics.add_metric(name="HsmWakeUps", unit="Count", value=len(sent))
    return bool(sent)

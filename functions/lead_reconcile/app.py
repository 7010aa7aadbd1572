"""lead_reconcile: finds the leads no notification announced.

Two kinds of event reach this function:
- the hourly schedule (EventBridge Scheduler's input): queue one message per connected Page due
  for a read (shared.leads.reconcile.plan_reconciliation), summary {"due", "queued", "failed"};
- Lambda's SQS batch event from the reconcile queue: each Page's forms read for leads created
  since its last run, the missing ones stored (shared.leads.reconcile.reconcile_batch); the
  answer is the partial batch response. New leads wake their tenant's follow-ups.
Events are never logged.
"""

from shared.hsm.planner import wake
from shared.leads.reconcile import plan_reconciliation, reconcile_batch
from shared.platform.deadlines import deadline_from_context
from shared.platform.events import is_scheduled
from shared.platform.observability import entrypoint, logger

# Postgres connections a container opens (tests/test_connection_budget.py): the
# handler's thread only.
DB_CONNECTIONS = 1

RESERVE_SECONDS = 5.0


@entrypoint
def lambda_handler(event: dict, context) -> dict:
    if isinstance(event.get("Records"), list):
        deadline = deadline_from_context(context, reserve_seconds=RESERVE_SECONDS)
        return reconcile_batch(event, context, deadline, wake=wake)
    if is_scheduled(event):
        return plan_reconciliation()
    logger.warning("lead_reconcile_ignored_event", extra={"detail_type": event.get("detail-type")})
    return {"outcome": "ignored"}

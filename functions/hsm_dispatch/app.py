"""hsm_dispatch: the planner of the WhatsApp follow-ups. Every minute (EventBridge Scheduler) it
queues one SQS message per tenant with due work; hsm_worker sends (shared.hsm.worker).

The work is shared.hsm.planner.plan_dispatch; this handler answers the contract's summary
{"rules", "sent", "failed", "skipped", "tenants_queued"} (the planner sends nothing itself). A
tick carries no parameters (EventBridge's "Scheduled Event" and the Scheduler's input alike), so
nothing in the event is read beyond its source for the log; a duplicated or overlapping tick
queues nothing that a worker would send twice.
"""

from shared.hsm.planner import plan_dispatch
from shared.platform.observability import entrypoint, logger

# Postgres connections a container opens (tests/test_connection_budget.py): the
# handler's thread only.
DB_CONNECTIONS = 1


@entrypoint
def lambda_handler(event: dict, context) -> dict:
    source = event.get("source") if isinstance(event, dict) else None
    logger.info("hsm_dispatch_triggered", extra={"source": str(source)[:64] if source else None})
    return plan_dispatch()

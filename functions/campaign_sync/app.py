"""Campaign and insights sync.

Two kinds of event reach this function:
- Lambda's SQS batch event from the campaign-sync queue: each message names one account, put
  there by the schedule below or by EventBridge when an account is connected
  (MetaAdAccountConnected). Each account syncs within this invocation's time
  (shared.ads.sync_queue.sync_batch); the answer is the partial batch response.
- The schedule (EventBridge `Scheduled Event`, or EventBridge Scheduler's input): queue every
  account due for a sync (shared.ads.sync_queue.enqueue_due_syncs).
Events are never logged (STYLE: they may carry tenant data).
"""

from shared.ads.sync_queue import enqueue_due_syncs, sync_batch
from shared.platform.deadlines import deadline_from_context
from shared.platform.events import is_scheduled
from shared.platform.observability import entrypoint, logger

# Postgres connections a container opens (tests/test_connection_budget.py): the
# handler's thread only.
DB_CONNECTIONS = 1

# The sync's own lease and windows handle the time left; this reserve lets it record where it
# stopped before Lambda's timeout.
RESERVE_SECONDS = 10.0


@entrypoint
def lambda_handler(event: dict, context) -> dict:
    if isinstance(event.get("Records"), list):
        deadline = deadline_from_context(context, reserve_seconds=RESERVE_SECONDS)
        return sync_batch(event, context, deadline)
    if is_scheduled(event):
        return enqueue_due_syncs()
    logger.warning("campaign_sync_ignored_event", extra={"detail_type": event.get("detail-type")})
    return {"outcome": "ignored"}

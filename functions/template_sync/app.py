"""template_sync: the periodic refresh of WhatsApp templates that webhooks did not bring.

- The schedule (every 15 minutes): queue every sender whose template list is stale or older
  than an hour (shared.whatsapp.template_sync.plan_template_sync).
- Lambda's SQS batch event from the template-sync queue: re-read each queued sender's list from
  Meta; the answer is the partial batch response.
Events are never logged.
"""

from shared.platform.events import is_scheduled
from shared.platform.observability import entrypoint, logger
from shared.whatsapp.template_sync import plan_template_sync, refresh_batch

# Postgres connections a container opens (tests/test_connection_budget.py): the
# handler's thread only.
DB_CONNECTIONS = 1


@entrypoint
def lambda_handler(event: dict, context) -> dict:
    if isinstance(event.get("Records"), list):
        return refresh_batch(event, context)
    if is_scheduled(event):
        return plan_template_sync()
    logger.warning("template_sync_ignored_event", extra={"detail_type": event.get("detail-type")})
    return {"outcome": "ignored"}

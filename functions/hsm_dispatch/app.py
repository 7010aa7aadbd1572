"""hsm_dispatch: every 5 minutes (EventBridge Scheduler), sends each enabled rule's WhatsApp
template to the leads it is due for, once per (rule, lead), at each sender's throughput cap.

The work is shared.hsm.dispatch.run_dispatch; this handler only sets its deadline from the
invocation's remaining time and answers the contract's summary
{"rules", "sent", "failed", "skipped"}. A tick carries no parameters (EventBridge's "Scheduled
Event" and the Scheduler's input alike), so nothing in the event is read beyond its source for
the log; a duplicated or overlapping tick changes nothing more than one run.
"""

from shared.hsm.dispatch import run_dispatch
from shared.platform.deadlines import deadline_from_context
from shared.platform.observability import entrypoint, logger

# Left at the end of the invocation for the last result writes and releasing the leases.
RESERVE_SECONDS = 5.0


@entrypoint
def lambda_handler(event: dict, context) -> dict:
    source = event.get("source") if isinstance(event, dict) else None
    logger.info("hsm_dispatch_triggered", extra={"source": str(source)[:64] if source else None})
    deadline = deadline_from_context(context, reserve_seconds=RESERVE_SECONDS)
    return run_dispatch(deadline).as_dict()

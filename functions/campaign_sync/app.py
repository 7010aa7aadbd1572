"""Campaign and insights sync.

Two kinds of event reach this function:
- `MetaAdAccountConnected` (put by connect) and `MetaAdAccountSyncRequested` (put by the
  scheduled run): sync that one account now, within this invocation's time.
- The schedule (EventBridge `Scheduled Event`, or EventBridge Scheduler's input): list the
  accounts due for a sync and put one `MetaAdAccountSyncRequested` per account.
Each returns a JSON summary. Events are never logged (STYLE: they may carry tenant data).
"""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError, field_validator

from shared.ads.accounts import CONNECTED_EVENT, normalize_account_id
from shared.ads.sync import SYNC_REQUESTED_EVENT, enqueue_due_syncs, sync_account
from shared.platform.deadlines import deadline_from_context
from shared.platform.observability import entrypoint, logger

SYNC_EVENTS = {CONNECTED_EVENT, SYNC_REQUESTED_EVENT}
SCHEDULE_EVENTS = {"Scheduled Event"}
SCHEDULE_SOURCES = {"aws.events", "aws.scheduler"}
# The sync's own lease and windows handle the time left; this reserve lets it record where it
# stopped before Lambda's timeout.
RESERVE_SECONDS = 10.0


class SyncDetail(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tenant_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
    account_id: str

    @field_validator("account_id")
    @classmethod
    def _account_id(cls, value: str) -> str:
        return normalize_account_id(value)


def _is_schedule(event: dict) -> bool:
    return (event.get("detail-type") in SCHEDULE_EVENTS
            or event.get("source") in SCHEDULE_SOURCES and "detail-type" not in event)


@entrypoint
def lambda_handler(event: dict, context) -> dict:
    detail_type = event.get("detail-type")
    if detail_type in SYNC_EVENTS:
        try:
            detail = SyncDetail.model_validate(event.get("detail") or {})
        except ValidationError:
            logger.error("campaign_sync_bad_event", extra={"detail_type": detail_type})
            return {"outcome": "invalid_event"}
        deadline = deadline_from_context(context, reserve_seconds=RESERVE_SECONDS)
        return sync_account(detail.tenant_id, detail.account_id, deadline=deadline).summary()
    if _is_schedule(event):
        return enqueue_due_syncs()
    logger.warning("campaign_sync_ignored_event", extra={"detail_type": detail_type})
    return {"outcome": "ignored"}

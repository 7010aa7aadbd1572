"""Domain events on EventBridge: how one function starts another's work, and how the CRM hears
about things it must show a person (e.g. a Meta connection that needs reconnecting)."""

from __future__ import annotations

import json
from typing import Any

from shared.platform.aws import client
from shared.platform.observability import logger
from shared.platform.settings import get_settings

SOURCE = "crm.marketing-hub"
_SCHEDULE_SOURCES = {"aws.events", "aws.scheduler"}


def is_scheduled(event: Any) -> bool:
    """A schedule's tick: EventBridge's `Scheduled Event`, or the input our EventBridge
    Scheduler schedules send (template.yaml: source aws.scheduler, no detail-type needed)."""
    if not isinstance(event, dict):
        return False
    return (event.get("detail-type") == "Scheduled Event"
            or (event.get("source") in _SCHEDULE_SOURCES and "detail-type" not in event))


class EventPublishError(RuntimeError):
    pass


def publish(detail_type: str, detail: dict[str, Any]) -> None:
    """Put one event; raises EventPublishError when EventBridge did not accept it."""
    result = client("events").put_events(Entries=[{
        "Source": SOURCE,
        "DetailType": detail_type,
        "Detail": json.dumps(detail, default=str),
        "EventBusName": get_settings().event_bus_name,
    }])
    if result.get("FailedEntryCount"):
        code = result["Entries"][0].get("ErrorCode")
        logger.error("event_publish_failed", extra={"detail_type": detail_type, "code": code})
        raise EventPublishError(f"EventBridge refused {detail_type}: {code}")


PUT_EVENTS_LIMIT = 10  # PutEvents takes at most 10 entries per call


def publish_many(detail_type: str, details: list[dict[str, Any]]) -> int:
    """Put many events of one type, 10 per call; returns how many EventBridge accepted.
    Entries it refuses are logged (by error code only) and not raised: the caller decides."""
    accepted = 0
    bus = get_settings().event_bus_name
    for start in range(0, len(details), PUT_EVENTS_LIMIT):
        chunk = details[start : start + PUT_EVENTS_LIMIT]
        result = client("events").put_events(Entries=[{
            "Source": SOURCE, "DetailType": detail_type,
            "Detail": json.dumps(detail, default=str), "EventBusName": bus,
        } for detail in chunk])
        failed = int(result.get("FailedEntryCount") or 0)
        accepted += len(chunk) - failed
        if failed:
            codes = sorted({e.get("ErrorCode") for e in result.get("Entries", [])
                            if e.get("ErrorCode")})
            logger.error("event_publish_failed", extra={"detail_type": detail_type,
                                                        "failed": failed, "codes": codes})
    return accepted

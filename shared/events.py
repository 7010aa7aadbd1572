"""Domain events on EventBridge: how one function starts another's work, and how the CRM hears
about things it must show a person (e.g. a Meta connection that needs reconnecting)."""

from __future__ import annotations

import json
from typing import Any

from shared.aws import client
from shared.observability import logger
from shared.settings import get_settings

SOURCE = "crm.marketing-hub"


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

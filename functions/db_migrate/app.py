"""CloudFormation custom resource: applies pending migrations during every `sam deploy`.

The functions' new versions depend on this resource, so the schema is migrated before new code
takes traffic. The resource's properties name this function's published version, and
migrations/ is part of its package: whatever path deploys a changed migration (make deploy,
a plain or --guided sam deploy, a pipeline) publishes a new version, so CloudFormation updates
the resource and this runs. Migrations are expand/contract (additive first, removals a release
later), so rolling code back never needs a schema rollback: Delete therefore changes nothing.

It answers before its own timeout (the migrator's deadline keeps RESERVE_SECONDS for that), which
is below the resource's ServiceTimeout: CloudFormation always hears back.
"""

from __future__ import annotations

import json
import time

import httpx

from shared.platform.migrator import migrate
from shared.platform.observability import entrypoint, logger
from shared.platform.settings import get_settings

# Kept at the end of the invocation to answer CloudFormation.
RESERVE_SECONDS = 20.0

# The migrator's one connection (as the schema owner, through the proxy).
DB_CONNECTIONS = 1


def _respond(event: dict, status: str, reason: str = "", data: dict | None = None) -> None:
    body = {
        "Status": status,
        "Reason": reason[:200] or status,
        "PhysicalResourceId": event.get("PhysicalResourceId") or "schema-migrations",
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "Data": data or {},
    }
    # The pre-signed S3 URL takes a body with an empty content type.
    httpx.put(event["ResponseURL"], content=json.dumps(body), headers={"content-type": ""},
              timeout=10).raise_for_status()


@entrypoint
def lambda_handler(event: dict, context) -> None:
    request = event.get("RequestType")
    try:
        if request in ("Create", "Update"):
            remaining = context.get_remaining_time_in_millis() / 1000
            deadline = time.monotonic() + max(remaining - RESERVE_SECONDS, 1.0)
            applied = migrate(get_settings().migrations_dsn(), deadline=deadline)
            logger.info("schema_migrated", extra={"applied": applied})
            _respond(event, "SUCCESS", data={"Applied": ",".join(applied) or "none"})
        else:
            _respond(event, "SUCCESS", "Delete leaves the schema as it is")
    except Exception as exc:  # noqa: BLE001 - CloudFormation must hear back, or it waits an hour
        logger.exception("schema_migration_failed", extra={"error_type": type(exc).__name__})
        _respond(event, "FAILED", f"Migration failed: {type(exc).__name__}")

"""What was sent to whom, by which rule, with its delivery status: filters and cursor paging.

Newest first, paged by keyset on (created_at, id): the cursor is an opaque token for the last
row of a page, so pages never skip or repeat rows while new logs keep arriving.

Phone numbers are masked ("+34*******789"): the log is an audit of deliveries, open to every
member; the lead's full number stays on the lead record, and a masked number is still enough to
tell leads apart when talking with support. Errors are a code and our own message
(shared/hsm/log_errors.py), never Meta's text.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from shared.hsm import logs_store as store
from shared.hsm.log_errors import describe
from shared.hsm.logs_store import LogFilters
from shared.platform.cursors import decode_cursor, encode_cursor
from shared.platform.db import tenant_tx
from shared.platform.errors import InvalidInput

STATUSES = ("PENDING", "SENT", "DELIVERED", "READ", "FAILED", "SKIPPED", "UNKNOWN")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def _invalid(field: str, problem: str) -> InvalidInput:
    return InvalidInput(f"Invalid input: {field}.", details=[{"field": field, "problem": problem}])


def parse_instant(value: str | None, field: str, *, end: bool) -> datetime | None:
    """A date (whole day, UTC) or an ISO datetime. For `to`, a date includes that whole day."""
    if value is None or value == "":
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        day = None
    try:
        if day is not None:
            moment = datetime.combine(day, time.min, tzinfo=UTC)
            return moment + timedelta(days=1) if end else moment
        moment = datetime.fromisoformat(value)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        moment.astimezone(UTC)  # out of range once normalised (year 1 / 9999 edges)
        return moment
    except (ValueError, OverflowError):
        raise _invalid(field, "must be a date (YYYY-MM-DD) or an ISO 8601 datetime") from None


def build_filters(rule_id: str | None, status: str | None, date_from: str | None,
                  date_to: str | None) -> LogFilters:
    if rule_id:
        try:
            rule_id = str(uuid.UUID(rule_id))
        except ValueError:
            raise _invalid("rule_id", "must be a rule id") from None
    if status:
        status = status.strip().upper()
        if status not in STATUSES:
            raise _invalid("status", f"must be one of {', '.join(s.lower() for s in STATUSES)}")
    start = parse_instant(date_from, "from", end=False)
    before = parse_instant(date_to, "to", end=True)
    if start and before and start >= before:
        raise _invalid("to", "must be after from")
    return LogFilters(rule_id or None, status or None, start, before)


def mask_phone(phone: str | None) -> str | None:
    if not phone:
        return None
    keep_head, keep_tail = 3, 3
    if len(phone) <= keep_head + keep_tail:
        return phone[:1] + "*" * (len(phone) - 1)
    return phone[:keep_head] + "*" * (len(phone) - keep_head - keep_tail) + phone[-keep_tail:]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def public_log(row: dict[str, Any]) -> dict[str, Any]:
    error = describe(row["error_code"] or ("unknown" if row["error_message"] else None))
    return {
        "id": str(row["id"]),
        "lead": {"id": str(row["lead_id"]), "name": row["lead_name"]},
        "phone": mask_phone(row["phone"]),
        "rule": {"id": str(row["rule_id"]), "name": row["rule_name"],
                 "deleted": row["rule_deleted_at"] is not None},
        "template": {"name": row["template_name"], "language": row["language"]},
        "status": row["status"],
        "wamid": row["wamid"],
        "error": error,
        "attempts": row["attempts"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
        "sent_at": _iso(row["sent_at"]),
        "delivered_at": _iso(row["delivered_at"]),
        "read_at": _iso(row["read_at"]),
        "failed_at": _iso(row["failed_at"]),
    }


def list_logs(tenant_id: str, filters: LogFilters, *, limit: int = DEFAULT_LIMIT,
              cursor: str | None = None) -> dict[str, Any]:
    after = decode_cursor(cursor) if cursor else None
    with tenant_tx(tenant_id) as conn:
        rows = store.page(conn, filters, after=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if more else None
    return {"logs": [public_log(r) for r in rows], "next_cursor": next_cursor}

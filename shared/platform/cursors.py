"""Opaque keyset cursors for newest-first listings: the last row's (created_at, id), so the next
page starts strictly after it however many rows arrive meanwhile."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime

from shared.platform.errors import InvalidInput


def encode_cursor(created_at: datetime, row_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), str(row_id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(created_at, id) from a cursor a previous page gave out; anything else is the contract's
    invalid input on `cursor`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, row_id = json.loads(raw)
        moment = datetime.fromisoformat(created_at)
        if moment.tzinfo is None:
            raise ValueError("naive cursor time")
        return moment, str(uuid.UUID(row_id))
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("Invalid input: cursor.", details=[
            {"field": "cursor", "problem": "is not a cursor from a previous page"}]) from None

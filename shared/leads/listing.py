"""GET /crm/marketing/leads/ads: the leads that came from lead forms, newest first, with their
campaign, ad, form and whether a follow-up was sent; cursor paging as the logs API does."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Any

from shared.leads import leads_store
from shared.platform.db import tenant_tx
from shared.platform.errors import InvalidInput

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def encode_cursor(created_at: datetime, lead_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), str(lead_id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, lead_id = json.loads(raw)
        moment = datetime.fromisoformat(created_at)
        if moment.tzinfo is None:
            raise ValueError("naive cursor time")
        return moment, str(uuid.UUID(lead_id))
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("Invalid input: cursor.", details=[
            {"field": "cursor", "problem": "is not a cursor from a previous page"}]) from None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def public_lead(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "phone": row["phone"],
        "email": row["email"],
        "created_at": _iso(row["created_at"]),
        "campaign": {"id": row["meta_campaign_id"], "name": row["campaign_name"]}
        if row["meta_campaign_id"] else None,
        "ad_id": row["meta_ad_id"],
        "form_id": row["meta_form_id"],
        "page_id": row["meta_page_id"],
        "leadgen_id": row["meta_leadgen_id"],
        "followup_sent": row["followup_status"] is not None,  # a send Meta accepted
        "followup_sent_at": _iso(row["followup_sent_at"]),
        "last_contacted_at": _iso(row["last_contacted_at"]),
        "whatsapp_opt_out": row["whatsapp_opt_out"],
    }


def list_lead_ads(tenant_id: str, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None
                  ) -> dict[str, Any]:
    after = decode_cursor(cursor) if cursor else None
    with tenant_tx(tenant_id) as conn:
        rows = leads_store.lead_page(conn, after=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if more else None
    return {"leads": [public_lead(r) for r in rows], "next_cursor": next_cursor}

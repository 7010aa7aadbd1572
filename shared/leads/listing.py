"""GET /crm/marketing/leads/ads: the leads that came from lead forms, newest first, with their
campaign, ad, form and whether a follow-up was sent; cursor paging as the logs API does."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.leads import leads_store
from shared.platform.cursors import decode_cursor, encode_cursor
from shared.platform.db import tenant_tx

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


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

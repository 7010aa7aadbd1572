"""Connection health for GET /crm/marketing/token-status: a database read, no Meta call."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.connection import token_store as store
from shared.connection.health import (
    DATA_ACCESS_EXPIRED,
    NEEDS_RECONNECT,
    NOT_CONNECTED,
    TOKEN_EXPIRED,
    effective_status,
    iso,
    missing_scopes,
)
from shared.platform.db import tenant_tx
from shared.platform.settings import get_settings


def token_status(tenant_id: str, now: datetime | None = None) -> dict[str, Any]:
    settings = get_settings()
    # Optional scopes are listed as missing too: the Lead Ads screens ask for a reconnect.
    required = [*settings.scopes, *settings.optional_scopes]
    with tenant_tx(tenant_id) as conn:
        row = store.load_health(conn)
    if row is None:
        return {"status": NOT_CONNECTED, "expires_at": None, "data_access_expires_at": None,
                "scopes": [], "missing_scopes": list(required), "reason": None}
    now = now or datetime.now(UTC)
    scopes = list(row["scopes"] or [])
    status = effective_status(row["status"], row["expires_at"], row["data_access_expires_at"],
                              now)
    reason = row["status_reason"]
    if status == NEEDS_RECONNECT and row["status"] != NEEDS_RECONNECT:
        # Expired since the last refresh run: report it now, the run will record it.
        expired = row["expires_at"] is not None and row["expires_at"] <= now
        reason = TOKEN_EXPIRED if expired else DATA_ACCESS_EXPIRED
    return {
        "status": status,
        "expires_at": iso(row["expires_at"]),  # null: the token never expires
        "data_access_expires_at": iso(row["data_access_expires_at"]),
        "scopes": scopes,
        "missing_scopes": missing_scopes(scopes, required),
        "reason": reason,
    }

"""The tenant's WhatsApp sender (one phone number per tenant): data access and Meta's limits.

Data access only, on a connection from shared.platform.db.tenant_tx (row-level security holds, and
each statement names the transaction's tenant too: `app_current_tenant()`). The
dispatcher reads `max_per_second` for pacing and `daily_recipient_limit(messaging_limit_tier)` for
the 24-hour unique-recipient cap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

DEFAULT_MAX_PER_SECOND = 80  # throughput.mdx: every number starts at 80 messages/s
HIGH_THROUGHPUT_PER_SECOND = 1000  # throughput level HIGH: upgraded numbers
# Unknown or missing tier: assume the smallest portfolio limit rather than none.
FALLBACK_DAILY_RECIPIENTS = 250
_TIER = re.compile(r"^TIER_(\d+)(K)?$")


@dataclass(frozen=True)
class Sender:
    tenant_id: str
    waba_id: str
    phone_number_id: str
    display_phone_number: str | None
    verified_name: str | None
    quality_rating: str | None
    messaging_limit_tier: str | None
    throughput_level: str | None
    max_per_second: int
    timezone: str
    templates_synced_at: datetime | None
    webhooks_subscribed_at: datetime | None
    connected_at: datetime

    def public(self) -> dict[str, Any]:
        return {
            "waba_id": self.waba_id,
            "phone_number_id": self.phone_number_id,
            "display_phone_number": self.display_phone_number,
            "verified_name": self.verified_name,
            "quality_rating": self.quality_rating,
            "messaging_limit_tier": self.messaging_limit_tier,
            "max_per_second": self.max_per_second,
            "timezone": self.timezone,
            "templates_synced_at": _iso(self.templates_synced_at),
            "connected_at": _iso(self.connected_at),
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def daily_recipient_limit(tier: str | None) -> int | None:
    """Unique recipients per moving 24 h for Meta's tier name; None means unlimited.

    TIER_250 -> 250, TIER_1K -> 1000, TIER_10K -> 10000, TIER_UNLIMITED -> None.
    """
    if tier and tier.upper() == "TIER_UNLIMITED":
        return None
    match = _TIER.match((tier or "").upper())
    if not match:
        return FALLBACK_DAILY_RECIPIENTS
    return int(match.group(1)) * (1000 if match.group(2) else 1)


def max_per_second_for(throughput_level: str | None) -> int:
    return HIGH_THROUGHPUT_PER_SECOND if throughput_level == "HIGH" else DEFAULT_MAX_PER_SECOND


_COLUMNS = ("tenant_id, waba_id, phone_number_id, display_phone_number, verified_name, "
            "quality_rating, messaging_limit_tier, throughput_level, max_per_second, timezone, "
            "templates_synced_at, webhooks_subscribed_at, connected_at")


def get(conn: psycopg.Connection, *, for_update: bool = False) -> Sender | None:
    lock = " FOR UPDATE" if for_update else ""
    row = conn.execute(f"SELECT {_COLUMNS} FROM whatsapp_senders"  # noqa: S608
                       f" WHERE tenant_id = app_current_tenant(){lock}").fetchone()
    return Sender(**row) if row else None


def upsert(conn: psycopg.Connection, tenant_id: str, *, waba_id: str, phone_number_id: str,
           display_phone_number: str | None, verified_name: str | None,
           quality_rating: str | None, messaging_limit_tier: str | None,
           throughput_level: str | None, max_per_second: int, timezone: str,
           connected_by: str | None) -> None:
    """Connect (or re-connect) the tenant's one sender. Raises psycopg UniqueViolation when
    another tenant already holds the phone number."""
    conn.execute(
        """
        INSERT INTO whatsapp_senders (tenant_id, waba_id, phone_number_id, display_phone_number,
            verified_name, quality_rating, messaging_limit_tier, throughput_level, max_per_second,
            timezone, webhooks_subscribed_at, connected_by, connected_at, updated_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now(), %s, now(), now())
        ON CONFLICT (tenant_id) DO UPDATE SET
            waba_id = EXCLUDED.waba_id, phone_number_id = EXCLUDED.phone_number_id,
            display_phone_number = EXCLUDED.display_phone_number,
            verified_name = EXCLUDED.verified_name, quality_rating = EXCLUDED.quality_rating,
            messaging_limit_tier = EXCLUDED.messaging_limit_tier,
            throughput_level = EXCLUDED.throughput_level,
            max_per_second = EXCLUDED.max_per_second, timezone = EXCLUDED.timezone,
            webhooks_subscribed_at = now(), connected_by = EXCLUDED.connected_by,
            connected_at = now(), updated_at = now()
        """,
        (tenant_id, waba_id, phone_number_id, display_phone_number, verified_name,
         quality_rating, messaging_limit_tier, throughput_level, max_per_second, timezone,
         connected_by),
    )


def tenant_for_phone(conn: psycopg.Connection, phone_number_id: str) -> str | None:
    """Which tenant owns this number (SECURITY DEFINER lookup: works without a tenant)."""
    row = conn.execute("SELECT whatsapp_tenant_for_phone(%s) AS tenant_id",
                       (phone_number_id,)).fetchone()
    return row["tenant_id"] if row else None


def tenants_for_waba(conn: psycopg.Connection, waba_id: str) -> list[str]:
    rows = conn.execute("SELECT whatsapp_tenants_for_waba(%s) AS tenant_id", (waba_id,))
    return [r["tenant_id"] for r in rows]

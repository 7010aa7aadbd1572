"""Data access for the token lifecycle: the lease, the refresh result, alerts, the health read.

No HTTP and no Meta here. Every tenant statement runs on a connection the caller opened with
shared.platform.db.tenant_tx (row-level security) and names its tenant itself too (the claimed
row's, or the transaction's: `app_current_tenant()`); the two cross-tenant lookups are SECURITY
DEFINER functions (migrations/0003) that return tenant ids or a count and run in
shared.platform.db.system_tx.
Every write after a claim is fenced by the lease id AND the ciphertext the claim read: a run
whose lease lapsed, or a connection replaced by a reconnect meanwhile, writes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from shared.connection.credentials import META_TOKEN
from shared.connection.health import Horizons

# Longer than any Lambda invocation (15 min): a lease only lapses after its run is surely gone.
LEASE_SECONDS = 16 * 60


@dataclass(frozen=True)
class ClaimedCredential:
    tenant_id: str
    status: str
    status_reason: str | None
    expires_at: datetime | None
    data_access_expires_at: datetime | None
    meta_user_id: str | None
    scopes: list[str]
    refresh_failures: int
    last_refresh_attempt_at: datetime | None
    reconnect_notified_at: datetime | None
    reconnect_notified_status: str | None
    lease_id: uuid.UUID
    ciphertext: bytes = field(repr=False)

    def notified(self, status: str) -> bool:
        """Mirrors SQL token_reconnect_notified(): was the tenant told about `status` already?"""
        if self.reconnect_notified_at is None:
            return False
        told = self.reconnect_notified_status
        return told == status or (status == "expiring" and told == "needs_reconnect")


_CLAIMED = """tenant_id, status, status_reason, expires_at, data_access_expires_at, meta_user_id,
    scopes, refresh_failures, last_refresh_attempt_at, reconnect_notified_at,
    reconnect_notified_status, refresh_lease_id AS lease_id, ciphertext"""


def due_tenants(conn: psycopg.Connection, h: Horizons, limit: int) -> list[str]:
    """Tenant ids with refresh work and no live lease, most urgent first (system_tx)."""
    rows = conn.execute("SELECT t FROM token_refresh_due_tenants(%s, %s, %s) AS t",
                        (h.horizon, h.recheck_before, limit)).fetchall()
    return [r["t"] for r in rows]


def expiring_count(conn: psycopg.Connection, h: Horizons) -> int:
    """Connections, not already broken, that expire before the horizon (system_tx)."""
    row = conn.execute("SELECT token_refresh_expiring_count(%s) AS n", (h.horizon,)).fetchone()
    return int(row["n"])


def claim(conn: psycopg.Connection, h: Horizons | None) -> ClaimedCredential | None:
    """Take this tenant's token for one refresh: one conditional UPDATE, in the caller's short
    tenant transaction. `h=None` (the admin's "refresh now") skips the due test, not the lease.

    The row comes back as it is now: if another run refreshed it since the tenant was listed,
    it is no longer due and nothing is claimed."""
    row = conn.execute(
        f"""
        UPDATE credentials c
        SET refresh_lease_id = %(lease)s,
            refresh_lease_until = now() + make_interval(secs => %(secs)s)
        WHERE c.tenant_id = app_current_tenant() AND c.name = %(name)s
          AND (c.refresh_lease_until IS NULL OR c.refresh_lease_until < now())
          AND (%(force)s::boolean
               OR token_refresh_is_due(c, %(horizon)s::timestamptz, %(recheck)s::timestamptz))
        RETURNING {_CLAIMED}
        """,  # noqa: S608 - column list is a constant
        {"lease": uuid.uuid4(), "secs": LEASE_SECONDS, "name": META_TOKEN, "force": h is None,
         "horizon": h.horizon if h else None, "recheck": h.recheck_before if h else None},
    ).fetchone()
    if row is None:
        return None
    return ClaimedCredential(**{**row, "ciphertext": bytes(row["ciphertext"]),
                                "scopes": list(row["scopes"] or [])})


def is_leased(conn: psycopg.Connection) -> bool | None:
    """None: no connection; else whether a live lease holds it (tenant_tx)."""
    row = conn.execute(
        "SELECT refresh_lease_until IS NOT NULL AND refresh_lease_until >= now() AS leased"
        " FROM credentials WHERE tenant_id = app_current_tenant() AND name = %s",
        (META_TOKEN,)).fetchone()
    return None if row is None else bool(row["leased"])


@dataclass(frozen=True)
class Result:
    """What a run learnt about the token; written in one statement."""

    status: str
    reason: str | None
    expires_at: datetime | None
    data_access_expires_at: datetime | None
    scopes: list[str]
    meta_user_id: str | None = None
    new_ciphertext: bytes | None = field(default=None, repr=False)  # a renewed token, sealed


def save_result(conn: psycopg.Connection, claimed: ClaimedCredential, result: Result, *,
                keep_lease: bool) -> bool:
    """Store the outcome (and the renewed token, if any); False when the claim is no longer ours.

    The old ciphertext is replaced here and only here, in the same statement that records the
    new expiry: until this commits, the old token stays stored and usable."""
    cur = conn.execute(
        """
        UPDATE credentials SET
            ciphertext = coalesce(%(blob)s::bytea, ciphertext),
            expires_at = %(expires_at)s,
            data_access_expires_at = %(data_access)s,
            scopes = %(scopes)s,
            meta_user_id = coalesce(%(meta_user_id)s, meta_user_id),
            status = %(status)s,
            status_reason = %(reason)s,
            refresh_failures = 0,
            last_refresh_attempt_at = now(),
            last_refreshed_at = CASE WHEN %(blob)s::bytea IS NULL THEN last_refreshed_at
                                     ELSE now() END,
            reconnect_notified_at = CASE WHEN %(status)s = 'active' THEN NULL
                                         ELSE reconnect_notified_at END,
            reconnect_notified_status = CASE WHEN %(status)s = 'active' THEN NULL
                                             ELSE reconnect_notified_status END,
            refresh_lease_id = CASE WHEN %(keep)s::boolean THEN refresh_lease_id END,
            refresh_lease_until = CASE WHEN %(keep)s::boolean THEN refresh_lease_until END,
            updated_at = now()
        WHERE tenant_id = %(tenant)s AND name = %(name)s AND refresh_lease_id = %(lease)s
          AND ciphertext = %(old)s
        """,
        {"blob": result.new_ciphertext, "expires_at": result.expires_at,
         "data_access": result.data_access_expires_at, "scopes": list(result.scopes),
         "meta_user_id": result.meta_user_id, "status": result.status,
         "reason": (result.reason or None) and result.reason[:200], "keep": keep_lease,
         "tenant": claimed.tenant_id, "name": META_TOKEN, "lease": claimed.lease_id,
         "old": claimed.ciphertext},
    )
    return cur.rowcount == 1


def record_failure(conn: psycopg.Connection, claimed: ClaimedCredential) -> int | None:
    """A failed attempt (Meta throttling or down, KMS, ...): status kept, failure counted, lease
    released so the next run retries. Returns the failure count, None if the claim was lost."""
    row = conn.execute(
        """
        UPDATE credentials SET refresh_failures = refresh_failures + 1,
            last_refresh_attempt_at = now(), refresh_lease_id = NULL, refresh_lease_until = NULL
        WHERE tenant_id = %s AND name = %s AND refresh_lease_id = %s
        RETURNING refresh_failures
        """, (claimed.tenant_id, META_TOKEN, claimed.lease_id)).fetchone()
    return None if row is None else int(row["refresh_failures"])


def mark_notified(conn: psycopg.Connection, claimed: ClaimedCredential, status: str) -> bool:
    """The MetaReconnectRequired event for `status` was put: remember it, release the lease."""
    cur = conn.execute(
        """
        UPDATE credentials SET reconnect_notified_at = now(), reconnect_notified_status = %s,
            refresh_lease_id = NULL, refresh_lease_until = NULL
        WHERE tenant_id = %s AND name = %s AND refresh_lease_id = %s
        """, (status, claimed.tenant_id, META_TOKEN, claimed.lease_id))
    return cur.rowcount == 1


def release(conn: psycopg.Connection, claimed: ClaimedCredential) -> None:
    conn.execute(
        "UPDATE credentials SET refresh_lease_id = NULL, refresh_lease_until = NULL"
        " WHERE tenant_id = %s AND name = %s AND refresh_lease_id = %s",
        (claimed.tenant_id, META_TOKEN, claimed.lease_id))


def load_health(conn: psycopg.Connection) -> dict | None:
    """The connection's health columns (never the ciphertext), for token-status (tenant_tx)."""
    return conn.execute(
        "SELECT status, status_reason, expires_at, data_access_expires_at, scopes"
        " FROM credentials WHERE tenant_id = app_current_tenant() AND name = %s",
        (META_TOKEN,)).fetchone()

"""The tenant's Meta user token: stored encrypted in `credentials`, read back for Graph calls.

Data access only: callers pass an open tenant-scoped connection (shared.platform.db.tenant_tx), so
row-level security holds for every statement here, and each statement names the transaction's
tenant itself as well (`app_current_tenant()`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

META_TOKEN = "META_USER_LONG_TOKEN"
META_CATEGORY = "meta_ads"


def seal(tenant_id: str, token: str) -> bytes:
    """The token encrypted under a fresh data key, bound to the tenant and this credential."""
    # Imported on use: most functions load credential rows (status, expiry) on their first
    # event without encrypting or decrypting anything (cold start).
    from shared.platform.crypto import get_token_cipher

    return get_token_cipher().encrypt(token, tenant_id=tenant_id, credential=META_TOKEN)


def unseal(tenant_id: str, ciphertext: bytes) -> str:
    from shared.platform.crypto import get_token_cipher  # on use, as in seal

    return get_token_cipher().decrypt(ciphertext, tenant_id=tenant_id, credential=META_TOKEN)


@dataclass(frozen=True)
class StoredCredential:
    tenant_id: str
    status: str
    expires_at: datetime | None
    data_access_expires_at: datetime | None
    meta_user_id: str | None
    scopes: list[str]
    ciphertext: bytes

    def token(self) -> str:
        """Decrypt on demand: the plaintext lives only as long as the caller's Graph call."""
        return unseal(self.tenant_id, self.ciphertext)


_COLUMNS = ("tenant_id, status, expires_at, data_access_expires_at, meta_user_id, scopes, "
            "ciphertext")


def load(conn: psycopg.Connection, *, for_update: bool = False,
         skip_locked: bool = False) -> StoredCredential | None:
    lock = " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE" if for_update else ""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM credentials"  # noqa: S608 - constant fragments only
        f" WHERE tenant_id = app_current_tenant() AND name = %s{lock}", (META_TOKEN,)
    ).fetchone()
    if row is None:
        return None
    return StoredCredential(**{**row, "ciphertext": bytes(row["ciphertext"]),
                               "scopes": list(row["scopes"] or [])})


def save(conn: psycopg.Connection, tenant_id: str, token: str, *, expires_at: datetime | None,
         data_access_expires_at: datetime | None, meta_user_id: str | None,
         scopes: list[str]) -> None:
    """Upsert the token with a fresh data key; a reconnect clears any needs_reconnect state."""
    blob = seal(tenant_id, token)
    conn.execute(
        """
        INSERT INTO credentials (tenant_id, name, category, ciphertext, status, expires_at,
                                 data_access_expires_at, meta_user_id, scopes)
        VALUES (%s, %s, %s, %s, 'active', %s, %s, %s, %s)
        ON CONFLICT (tenant_id, name) DO UPDATE SET
            ciphertext = EXCLUDED.ciphertext, status = 'active', status_reason = NULL,
            expires_at = EXCLUDED.expires_at,
            data_access_expires_at = EXCLUDED.data_access_expires_at,
            meta_user_id = EXCLUDED.meta_user_id, scopes = EXCLUDED.scopes,
            refresh_failures = 0, reconnect_notified_at = NULL, updated_at = now()
        """,
        (tenant_id, META_TOKEN, META_CATEGORY, blob, expires_at, data_access_expires_at,
         meta_user_id, scopes),
    )


def mark_needs_reconnect(conn: psycopg.Connection, reason: str) -> bool:
    """Flag the connection as broken; True when this call changed it (alert once)."""
    cur = conn.execute(
        "UPDATE credentials SET status = 'needs_reconnect', status_reason = %s, updated_at = now()"
        " WHERE tenant_id = app_current_tenant() AND name = %s AND status <> 'needs_reconnect'",
        (reason[:200], META_TOKEN),
    )
    return cur.rowcount > 0

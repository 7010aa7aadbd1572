"""Data access for `meta_pages`: a tenant's connected Pages and their encrypted Page tokens.

Callers pass a connection opened with `tenant_tx` (every statement also names its tenant), or
`system_tx` for the two SECURITY DEFINER lookups, which return ids only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg


def credential_name(page_id: str) -> str:
    """The encryption context's credential for a Page token: a ciphertext copied to another
    Page's row, or another tenant's, does not open."""
    return f"meta_page:{page_id}"


def seal(tenant_id: str, page_id: str, token: str) -> bytes:
    from shared.platform.crypto import get_token_cipher  # on use (cold start)

    return get_token_cipher().encrypt(token, tenant_id=tenant_id,
                                      credential=credential_name(page_id))


def unseal(tenant_id: str, page_id: str, ciphertext: bytes) -> str:
    from shared.platform.crypto import get_token_cipher  # on use (cold start)

    return get_token_cipher().decrypt(ciphertext, tenant_id=tenant_id,
                                      credential=credential_name(page_id))


@dataclass(frozen=True)
class StoredPage:
    tenant_id: str
    page_id: str
    name: str
    status: str
    default_country: str
    reconciled_at: datetime | None
    ciphertext: bytes

    def token(self) -> str:
        """Decrypted on demand, for the Graph calls of one read."""
        return unseal(self.tenant_id, self.page_id, self.ciphertext)


_COLUMNS = "tenant_id, page_id, name, status, default_country, reconciled_at, ciphertext"


def get(conn: psycopg.Connection, page_id: str) -> StoredPage | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM meta_pages"  # noqa: S608 - constant fragment
        " WHERE tenant_id = app_current_tenant() AND page_id = %s", (page_id,)).fetchone()
    return None if row is None else StoredPage(**{**row, "ciphertext": bytes(row["ciphertext"])})


def connected_ids(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute("SELECT page_id FROM meta_pages WHERE tenant_id = app_current_tenant()"
                        " AND status = 'active'").fetchall()
    return {r["page_id"] for r in rows}


def upsert(conn: psycopg.Connection, tenant_id: str, *, page_id: str, name: str, token: str,
           default_country: str, connected_by: str | None) -> None:
    """Store (or refresh) the Page with a freshly sealed token. A Page another tenant holds
    fails on meta_pages_page_idx (UniqueViolation): the caller answers page_unavailable."""
    conn.execute(
        """
        INSERT INTO meta_pages (tenant_id, page_id, name, ciphertext, default_country,
                                connected_by, subscribed_at)
        VALUES (%s, %s, %s, %s, %s, %s, now())
        ON CONFLICT (tenant_id, page_id) DO UPDATE SET
            name = EXCLUDED.name, ciphertext = EXCLUDED.ciphertext, status = 'active',
            status_reason = NULL, default_country = EXCLUDED.default_country,
            connected_by = EXCLUDED.connected_by, subscribed_at = now(), updated_at = now()
        """,
        (tenant_id, page_id, name[:300], seal(tenant_id, page_id, token), default_country,
         connected_by))


def mark_reconciled(conn: psycopg.Connection, page_id: str, at: datetime) -> None:
    """Never backwards: two overlapping runs leave the later start."""
    conn.execute(
        "UPDATE meta_pages SET reconciled_at = greatest(coalesce(reconciled_at, %s), %s),"
        " updated_at = now() WHERE tenant_id = app_current_tenant() AND page_id = %s",
        (at, at, page_id))


def mark_needs_reconnect(conn: psycopg.Connection, page_id: str, reason: str) -> bool:
    cur = conn.execute(
        "UPDATE meta_pages SET status = 'needs_reconnect', status_reason = %s, updated_at = now()"
        " WHERE tenant_id = app_current_tenant() AND page_id = %s"
        " AND status <> 'needs_reconnect'", (reason[:200], page_id))
    return cur.rowcount > 0


# -- lookups without a tenant (system_tx) ---------------------------------------------------------
def tenant_for_page(conn: psycopg.Connection, page_id: str) -> str | None:
    row = conn.execute("SELECT lead_page_tenant(%s) AS tenant_id", (page_id,)).fetchone()
    return row["tenant_id"] if row else None


def due_pages(conn: psycopg.Connection, reconciled_before: datetime, after: tuple[str, str],
              limit: int) -> list[tuple[str, str]]:
    rows = conn.execute("SELECT tenant_id, page_id FROM lead_pages_due(%s, %s, %s, %s)",
                        (reconciled_before, after[0], after[1], limit)).fetchall()
    return [(r["tenant_id"], r["page_id"]) for r in rows]


def sender_number(conn: psycopg.Connection) -> str | None:
    """The tenant's WhatsApp sender's number (its country is the Pages' default country). Read
    here rather than through shared.whatsapp, which this package may not import."""
    row = conn.execute("SELECT display_phone_number FROM whatsapp_senders"
                       " WHERE tenant_id = app_current_tenant()").fetchone()
    return row["display_phone_number"] if row else None

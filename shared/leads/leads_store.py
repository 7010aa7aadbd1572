"""Data access for the leads that come from lead forms and for `lead_reads`, the record of each
read a notification or a reconciliation asked for. Every statement runs in the caller's
`tenant_tx` and names its tenant.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg

from shared.leads.parsing import ParsedLead

LEAD_SOURCE = "meta_lead_ads"
REASON_LIMIT = 300


def insert_lead(conn: psycopg.Connection, tenant_id: str, lead: ParsedLead) -> tuple[str, bool]:
    """One row per leadgen_id, however often it is read: (lead id, whether this call created
    it). A lead already stored is left as it is (the CRM may have edited it since)."""
    external = {"meta_leadgen_id": lead.leadgen_id, "meta_form_id": lead.form_id,
                "meta_page_id": lead.page_id}
    row = conn.execute(
        """
        INSERT INTO leads (tenant_id, name, phone, email, created_at, lead_source,
                           meta_campaign_id, meta_ad_id, external_ids, meta_leadgen_id,
                           meta_form_id, meta_page_id)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (tenant_id, meta_leadgen_id) DO NOTHING
        RETURNING id
        """,
        (tenant_id, lead.name, lead.phone, lead.email, lead.created_at, LEAD_SOURCE,
         lead.campaign_id, lead.ad_id, json.dumps(external), lead.leadgen_id, lead.form_id,
         lead.page_id)).fetchone()
    if row is not None:
        return str(row["id"]), True
    existing = conn.execute(
        "SELECT id FROM leads WHERE tenant_id = app_current_tenant() AND meta_leadgen_id = %s",
        (lead.leadgen_id,)).fetchone()
    return str(existing["id"]), False


# -- lead_reads -----------------------------------------------------------------------------------
def announce(conn: psycopg.Connection, tenant_id: str, reads: list[dict[str, Any]]) -> list[str]:
    """Record announced reads as pending (a read already recorded keeps its state); returns
    the leadgen ids still to read (pending or failed: a new notification is a new chance)."""
    if not reads:
        return []
    conn.execute(
        """
        INSERT INTO lead_reads (tenant_id, leadgen_id, page_id, form_id)
        SELECT %s, r->>'leadgen_id', r->>'page_id', r->>'form_id'
        FROM jsonb_array_elements(%s::jsonb) AS r
        ON CONFLICT (tenant_id, leadgen_id) DO NOTHING
        """, (tenant_id, json.dumps(reads)))
    rows = conn.execute(
        "SELECT leadgen_id FROM lead_reads WHERE tenant_id = app_current_tenant()"
        " AND leadgen_id = ANY(%s) AND state <> 'stored'",
        ([r["leadgen_id"] for r in reads],)).fetchall()
    return [r["leadgen_id"] for r in rows]


def read_state(conn: psycopg.Connection, leadgen_id: str) -> dict[str, Any] | None:
    return conn.execute(
        "SELECT state, attempts FROM lead_reads WHERE tenant_id = app_current_tenant()"
        " AND leadgen_id = %s", (leadgen_id,)).fetchone()


def mark_stored(conn: psycopg.Connection, tenant_id: str, leadgen_id: str, page_id: str,
                form_id: str | None, lead_id: str) -> None:
    conn.execute(
        """
        INSERT INTO lead_reads (tenant_id, leadgen_id, page_id, form_id, state, lead_id)
        VALUES (%s, %s, %s, %s, 'stored', %s)
        ON CONFLICT (tenant_id, leadgen_id) DO UPDATE SET
            state = 'stored', lead_id = EXCLUDED.lead_id, failure_reason = NULL,
            form_id = coalesce(lead_reads.form_id, EXCLUDED.form_id), updated_at = now()
        """, (tenant_id, leadgen_id, page_id, form_id, lead_id))


def mark_attempt(conn: psycopg.Connection, tenant_id: str, leadgen_id: str, page_id: str,
                 reason: str, *, final: bool, max_attempts: int) -> str:
    """Count a failed read; the read becomes 'failed' when `final` or at `max_attempts`.
    Returns the state it is left in."""
    row = conn.execute(
        """
        INSERT INTO lead_reads (tenant_id, leadgen_id, page_id, attempts, failure_reason, state)
        VALUES (%(tenant)s, %(leadgen)s, %(page)s, 1, %(reason)s,
                CASE WHEN %(final)s OR %(max)s <= 1 THEN 'failed' ELSE 'pending' END)
        ON CONFLICT (tenant_id, leadgen_id) DO UPDATE SET
            attempts = lead_reads.attempts + 1, failure_reason = EXCLUDED.failure_reason,
            state = CASE WHEN lead_reads.state = 'stored' THEN 'stored'
                         WHEN %(final)s OR lead_reads.attempts + 1 >= %(max)s THEN 'failed'
                         ELSE 'pending' END,
            updated_at = now()
        RETURNING state
        """, {"tenant": tenant_id, "leadgen": leadgen_id, "page": page_id,
              "reason": reason[:REASON_LIMIT], "final": final, "max": max_attempts}).fetchone()
    return row["state"]


def stored_leadgen_ids(conn: psycopg.Connection, leadgen_ids: list[str]) -> set[str]:
    rows = conn.execute(
        "SELECT meta_leadgen_id FROM leads WHERE tenant_id = app_current_tenant()"
        " AND meta_leadgen_id = ANY(%s)", (leadgen_ids,)).fetchall()
    return {r["meta_leadgen_id"] for r in rows}


# -- the listing ----------------------------------------------------------------------------------
_LISTING = """
    SELECT l.id, l.name, l.phone, l.email, l.created_at, l.meta_campaign_id,
           c.name AS campaign_name, l.meta_ad_id, l.meta_form_id, l.meta_page_id,
           l.meta_leadgen_id, l.last_contacted_at, l.whatsapp_opt_out,
           f.sent_at AS followup_sent_at, f.status AS followup_status
    FROM leads l
    LEFT JOIN meta_ads_campaigns c ON c.tenant_id = l.tenant_id
                                  AND c.campaign_id = l.meta_campaign_id
    LEFT JOIN LATERAL (
        SELECT a.sent_at, a.status FROM automation_logs a
        WHERE a.tenant_id = l.tenant_id AND a.lead_id = l.id
          AND a.status IN ('SENT', 'DELIVERED', 'READ')
        ORDER BY a.sent_at NULLS LAST LIMIT 1) f ON true
    WHERE l.tenant_id = app_current_tenant() AND l.lead_source = %s
"""


def lead_page(conn: psycopg.Connection, *, after: tuple[Any, str] | None, limit: int
              ) -> list[dict[str, Any]]:
    """Newest first, keyset on (created_at, id); a follow-up is any send Meta accepted."""
    params: list[Any] = [LEAD_SOURCE]
    clause = ""
    if after:
        clause = " AND (l.created_at, l.id) < (%s, %s)"
        params += [after[0], after[1]]
    return conn.execute(
        f"{_LISTING}{clause} ORDER BY l.created_at DESC, l.id DESC LIMIT %s",  # noqa: S608
        (*params, limit)).fetchall()

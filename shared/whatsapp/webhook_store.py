"""Writes the Meta webhook makes, each inside the owning tenant's transaction (RLS holds, and every
statement names that tenant itself too: `app_current_tenant()`).

Every statement is idempotent and monotonic, decided by the database on the locked row, so
duplicates, retries, out-of-order batches and concurrent deliveries all end in the same state:
- a delivery status only moves forward: PENDING/UNKNOWN < SENT < DELIVERED < READ;
- between a failure and a delivery (or read), the later by Meta's timestamp is the status, a tie
  going to the failure: a FAILED older than the DELIVERED or READ already stored changes nothing
  (Meta retries for days, so an old FAILED can arrive last), and a DELIVERED or READ newer than
  a stored failure replaces it and its error. Delivery times are recorded either way, so the end
  state does not depend on the order Meta delivers a message's statuses in;
- a template's status changes only for an event at least as new as the last change;
- an opt-out change applies only when newer than the lead's last one;
- a message Meta accepted (the log has its send time) moves its lead's last_contacted_at to that
  time, never backwards (CONTRACT.md "Lead Ads"): here for a row whose result the dispatcher
  never stored (UNKNOWN), in shared.hsm.claims for the dispatcher's own results.
"""

from __future__ import annotations

from datetime import datetime

import psycopg

OPT_OUT_PREFERENCES = "whatsapp_preferences"  # user_preferences webhook: "stop"
OPT_OUT_KEYWORD = "whatsapp_keyword"  # the person wrote STOP / BAJA
OPT_OUT_131050 = "meta_131050"  # Meta: "user stopped marketing messages"
# Opt-outs WhatsApp itself reported; a "resume" clears only these, never one set in the CRM.
WHATSAPP_OPT_OUT_SOURCES = [OPT_OUT_PREFERENCES, OPT_OUT_KEYWORD, OPT_OUT_131050]

STATUS_RANK = {"SENT": 1, "DELIVERED": 2, "READ": 3}

_MATCH = ("tenant_id = app_current_tenant()"
          " AND (wamid = %(wamid)s OR (wamid IS NULL AND id = %(log_id)s))")
# Setting a wamid found by log id must never collide with the unique index (one row per wamid).
_WAMID = ("COALESCE(wamid, CASE WHEN NOT EXISTS (SELECT 1 FROM automation_logs x "
          "WHERE x.wamid = %(wamid)s) THEN %(wamid)s END)")

# A delivery or read strictly newer than the stored failure supersedes it.
_SUPERSEDES_FAILURE = "(status = 'FAILED' AND %(rank)s >= 2 AND %(at)s > failed_at)"

# A lead's last contact moves forward only, to the send time of a message Meta accepted.
_CONTACTED = """
    UPDATE leads l SET last_contacted_at = {logs}.sent_at
    FROM {source}
    WHERE l.tenant_id = app_current_tenant() AND l.id = {logs}.lead_id
      AND {logs}.sent_at IS NOT NULL
      AND (l.last_contacted_at IS NULL OR l.last_contacted_at < {logs}.sent_at)
"""

_ADVANCE = f"""
    WITH advanced AS (
    UPDATE automation_logs SET
        status = CASE WHEN status = 'FAILED' AND NOT {_SUPERSEDES_FAILURE} THEN status
                      WHEN %(rank)s > (CASE status WHEN 'SENT' THEN 1 WHEN 'DELIVERED' THEN 2
                                                    WHEN 'READ' THEN 3 ELSE 0 END)
                      THEN %(status)s ELSE status END,
        wamid = {_WAMID},
        sent_at = COALESCE(sent_at, %(at)s),
        delivered_at = CASE WHEN %(rank)s >= 2 THEN COALESCE(delivered_at, %(at)s)
                            ELSE delivered_at END,
        read_at = CASE WHEN %(rank)s >= 3 THEN COALESCE(read_at, %(at)s) ELSE read_at END,
        failed_at = CASE WHEN {_SUPERSEDES_FAILURE} THEN NULL ELSE failed_at END,
        error_code = CASE WHEN {_SUPERSEDES_FAILURE} THEN NULL ELSE error_code END,
        error_message = CASE WHEN {_SUPERSEDES_FAILURE} THEN NULL ELSE error_message END,
        updated_at = now()
    WHERE {_MATCH} AND status IN ('PENDING', 'UNKNOWN', 'SENT', 'DELIVERED', 'READ', 'FAILED')
    RETURNING id, lead_id, sent_at),
    contacted AS ({_CONTACTED.format(logs="advanced", source="advanced")})
    SELECT id FROM advanced
"""  # noqa: S608 - constant fragments only

_FAIL = f"""
    UPDATE automation_logs SET
        status = 'FAILED', wamid = {_WAMID}, failed_at = COALESCE(failed_at, %(at)s),
        error_code = %(code)s, error_message = %(message)s, updated_at = now()
    WHERE {_MATCH} AND status IN ('PENDING', 'UNKNOWN', 'SENT', 'DELIVERED', 'READ')
      AND %(at)s >= COALESCE(GREATEST(delivered_at, read_at), '-infinity')
    RETURNING id, lead_id
"""  # noqa: S608 - constant fragments only


def lock_logs(conn: psycopg.Connection, matches: list[tuple[str, str | None]]) -> None:
    """Lock every log row these (wamid, log id) pairs match, in id order, before changing any:
    the dispatcher's result writes lock in the same order (shared.hsm.claims.write_results), so
    the two never deadlock over a batch of the same messages."""
    if not matches:
        return
    conn.execute(
        "SELECT 1 FROM automation_logs WHERE tenant_id = app_current_tenant() AND (wamid = ANY(%s)"
        " OR (wamid IS NULL AND id = ANY(%s::uuid[]))) ORDER BY id FOR UPDATE",
        ([wamid for wamid, _ in matches], [log_id for _, log_id in matches if log_id]),
    )


def apply_delivery(conn: psycopg.Connection, *, wamid: str, log_id: str | None, status: str,
                   at: datetime) -> bool:
    """sent / delivered / read. True when a log row took it (even if it was already ahead)."""
    row = conn.execute(_ADVANCE, {"wamid": wamid, "log_id": log_id, "status": status,
                                  "rank": STATUS_RANK[status], "at": at}).fetchone()
    return row is not None


def mark_contacted(conn: psycopg.Connection, log_ids: list[str]) -> None:
    """The leads of these logs were reached at the logs' send times (Meta accepted them)."""
    if log_ids:
        conn.execute(_CONTACTED.format(  # noqa: S608 - constant fragments only
            logs="a", source="automation_logs a") + " AND a.tenant_id = app_current_tenant()"
            " AND a.id = ANY(%s::uuid[])", (log_ids,))


def apply_failure(conn: psycopg.Connection, *, wamid: str, log_id: str | None, at: datetime,
                  code: str | None, message: str | None) -> str | None:
    """failed, unless a delivery or read newer than it is stored. Returns the lead id when
    this call failed the row, else None."""
    row = conn.execute(_FAIL, {"wamid": wamid, "log_id": log_id, "at": at, "code": code,
                               "message": message}).fetchone()
    return str(row["lead_id"]) if row else None


def log_exists(conn: psycopg.Connection, wamid: str, log_id: str | None) -> bool:
    return conn.execute(f"SELECT 1 FROM automation_logs WHERE {_MATCH}",  # noqa: S608
                        {"wamid": wamid, "log_id": log_id}).fetchone() is not None


def apply_template_status(conn: psycopg.Connection, *, waba_id: str, template_id: str | None,
                          name: str | None, language: str | None, status: str,
                          reason: str | None, at: datetime) -> int:
    cur = conn.execute(
        """
        UPDATE meta_templates SET status = %(status)s, rejection_reason = %(reason)s,
            status_changed_at = %(at)s
        WHERE tenant_id = app_current_tenant() AND waba_id = %(waba)s
          AND (template_id = %(id)s OR (name = %(name)s AND language = %(language)s))
          AND (status_changed_at IS NULL OR status_changed_at <= %(at)s)
        """,
        {"status": status, "reason": reason, "at": at, "waba": waba_id, "id": template_id,
         "name": name, "language": language},
    )
    return cur.rowcount


def mark_templates_stale(conn: psycopg.Connection, waba_id: str) -> None:
    """The periodic template sync reads this list again soon (e.g. a template new to us)."""
    conn.execute("UPDATE whatsapp_senders SET templates_synced_at = NULL"
                 " WHERE tenant_id = app_current_tenant() AND waba_id = %s", (waba_id,))


def opt_out_phone(conn: psycopg.Connection, phone: str, source: str, at: datetime) -> int:
    """Opt the tenant's leads with this number out (an opt-out set in the CRM keeps its
    source, so a later "resume" from WhatsApp cannot undo it)."""
    cur = conn.execute(
        """
        UPDATE leads SET whatsapp_opt_out = true,
            whatsapp_opt_out_source = CASE WHEN whatsapp_opt_out
                AND NOT COALESCE(whatsapp_opt_out_source = ANY(%(sources)s), false)
                THEN whatsapp_opt_out_source ELSE %(source)s END,
            whatsapp_opt_out_changed_at = %(at)s
        WHERE tenant_id = app_current_tenant() AND phone = %(phone)s
          AND (whatsapp_opt_out_changed_at IS NULL OR whatsapp_opt_out_changed_at <= %(at)s)
        """,
        {"phone": phone, "source": source, "at": at, "sources": WHATSAPP_OPT_OUT_SOURCES},
    )
    return cur.rowcount


def opt_out_lead(conn: psycopg.Connection, lead_id: str, source: str, at: datetime) -> int:
    cur = conn.execute(
        """
        UPDATE leads SET whatsapp_opt_out = true,
            whatsapp_opt_out_source = COALESCE(whatsapp_opt_out_source, %(source)s),
            whatsapp_opt_out_changed_at = GREATEST(whatsapp_opt_out_changed_at, %(at)s)
        WHERE tenant_id = app_current_tenant() AND id = %(lead_id)s AND NOT whatsapp_opt_out
        """,
        {"lead_id": lead_id, "source": source, "at": at},
    )
    return cur.rowcount


def opt_in_phone(conn: psycopg.Connection, phone: str, at: datetime) -> int:
    """A "resume": clears WhatsApp-reported opt-outs only, and records the change time so an
    older "stop" retried later cannot apply."""
    cur = conn.execute(
        """
        UPDATE leads SET whatsapp_opt_out = false, whatsapp_opt_out_source = NULL,
            whatsapp_opt_out_changed_at = %(at)s
        WHERE tenant_id = app_current_tenant() AND phone = %(phone)s
          AND (whatsapp_opt_out_changed_at IS NULL OR whatsapp_opt_out_changed_at <= %(at)s)
          AND (NOT whatsapp_opt_out OR whatsapp_opt_out_source = ANY(%(sources)s))
        """,
        {"phone": phone, "at": at, "sources": WHATSAPP_OPT_OUT_SOURCES},
    )
    return cur.rowcount


# -- deliveries already applied (migrations/0010): no tenant, so no tenant transaction ----------
# Meta retries a delivery for up to 7 days (META_API.md §9); a day more covers its clock.
DELIVERY_MEMORY = "8 days"


def delivery_seen(conn: psycopg.Connection, body_sha256: bytes) -> bool:
    return conn.execute("SELECT 1 FROM webhook_deliveries WHERE body_sha256 = %s",
                        (body_sha256,)).fetchone() is not None


def remember_delivery(conn: psycopg.Connection, body_sha256: bytes) -> None:
    """Record an applied delivery, and forget a batch of those older than any retry."""
    conn.execute(
        f"""
        WITH forgotten AS (
            DELETE FROM webhook_deliveries WHERE body_sha256 IN (
                SELECT body_sha256 FROM webhook_deliveries
                WHERE received_at < now() - interval '{DELIVERY_MEMORY}' LIMIT 500))
        INSERT INTO webhook_deliveries (body_sha256) VALUES (%s) ON CONFLICT DO NOTHING
        """,  # noqa: S608 - a constant interval
        (body_sha256,))

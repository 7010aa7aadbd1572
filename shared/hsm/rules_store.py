"""automation_rules data access, on a connection from shared.platform.db.tenant_tx (RLS holds, and
every statement names the transaction's tenant too: `app_current_tenant()`).

Rules are deleted softly (deleted_at set, enabled cleared) so their logs stay readable.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

_SELECT = """
    SELECT r.id, r.name, r.trigger_type, r.delay_hours, r.delay_minutes, r.template_name,
           r.language,
           r.body_params, r.send_window, r.enabled, r.created_by, r.created_at, r.updated_at,
           t.status AS template_status, t.rejection_reason AS template_rejection_reason
    FROM automation_rules r
    LEFT JOIN meta_templates t ON t.tenant_id = r.tenant_id AND t.name = r.template_name
                              AND t.language = r.language
    WHERE r.tenant_id = app_current_tenant()
"""

EDITABLE = ("name", "trigger_type", "delay_hours", "delay_minutes", "template_name", "language",
            "body_params", "send_window", "enabled")
_JSON = {"body_params", "send_window"}
# A lead_created rule messages the leads created since it was enabled, and a Meta lead's
# created_at is Meta's created_time, in whole seconds: the rule's enabled_at is kept in whole
# seconds too, so a lead submitted just after the rule was switched on is not taken for older.
_ENABLED_NOW = "date_trunc('second', now())"


def _value(column: str, value: Any) -> Any:
    return Jsonb(value) if column in _JSON and value is not None else value


def list_live(conn: psycopg.Connection) -> list[dict[str, Any]]:
    return conn.execute(
        _SELECT + " AND r.deleted_at IS NULL ORDER BY r.created_at, r.id").fetchall()


def get_live(conn: psycopg.Connection, rule_id: str, *, for_update: bool = False
             ) -> dict[str, Any] | None:
    if for_update:
        # Lock the rule row only (FOR UPDATE cannot apply to the nullable side of the join).
        found = conn.execute("SELECT id FROM automation_rules"
                             " WHERE tenant_id = app_current_tenant() AND id = %s"
                             " AND deleted_at IS NULL FOR UPDATE", (rule_id,)).fetchone()
        if found is None:
            return None
    return conn.execute(_SELECT + " AND r.id = %s AND r.deleted_at IS NULL",
                        (rule_id,)).fetchone()


def insert(conn: psycopg.Connection, tenant_id: str, created_by: str | None,
           fields: dict[str, Any]) -> str:
    """Raises psycopg UniqueViolation when a live rule already has the name. An enabled rule
    is enabled as of now (enabled_at, see _ENABLED_NOW)."""
    columns = list(EDITABLE)
    row = conn.execute(
        f"INSERT INTO automation_rules (tenant_id, created_by, enabled_at, "  # noqa: S608
        f"{', '.join(columns)}) VALUES (%s, %s, CASE WHEN %s THEN {_ENABLED_NOW} END, "
        f"{', '.join(['%s'] * len(columns))}) RETURNING id",
        (tenant_id, created_by, fields["enabled"], *[_value(c, fields[c]) for c in columns]),
    ).fetchone()
    return str(row["id"])


def update(conn: psycopg.Connection, rule_id: str, changes: dict[str, Any]) -> None:
    columns = [c for c in EDITABLE if c in changes]
    if not columns:
        return
    assignments = ", ".join(f"{c} = %s" for c in columns)
    # Turned on (off before): enabled as of now. enabled_at on the right is the old value.
    if "enabled" in columns:
        assignments += (", enabled_at = CASE WHEN NOT enabled AND %s "
                        f"THEN {_ENABLED_NOW} ELSE enabled_at END")
        columns.append("enabled")
    conn.execute(
        f"UPDATE automation_rules SET {assignments}, updated_at = now() "  # noqa: S608
        "WHERE tenant_id = app_current_tenant() AND id = %s AND deleted_at IS NULL",
        (*[_value(c, changes[c]) for c in columns], rule_id),
    )


def soft_delete(conn: psycopg.Connection, rule_id: str) -> bool:
    cur = conn.execute(
        "UPDATE automation_rules SET deleted_at = now(), enabled = false, updated_at = now() "
        "WHERE tenant_id = app_current_tenant() AND id = %s AND deleted_at IS NULL", (rule_id,))
    return cur.rowcount > 0


def sender_timezone(conn: psycopg.Connection) -> str | None:
    row = conn.execute("SELECT timezone FROM whatsapp_senders"
                       " WHERE tenant_id = app_current_tenant()").fetchone()
    return row["timezone"] if row else None

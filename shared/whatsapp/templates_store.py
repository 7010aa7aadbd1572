"""meta_templates data access, on a connection from shared.platform.db.tenant_tx (RLS holds, and
each statement names its tenant too)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


@dataclass(frozen=True)
class TemplateRecord:
    """One template as Meta describes it, normalised for storage."""

    template_id: str
    name: str
    language: str
    category: str | None
    status: str
    components: list[dict[str, Any]]
    quality_score: str | None
    rejection_reason: str | None
    parameter_format: str | None


_COLUMNS = ("template_id, waba_id, name, language, category, status, components, quality_score, "
            "rejection_reason, parameter_format, synced_at, status_changed_at")


def replace_all(conn: psycopg.Connection, tenant_id: str, waba_id: str,
                templates: list[TemplateRecord]) -> int:
    """Make the tenant's rows exactly Meta's list for `waba_id` (all pages, already fetched).

    Rows of another WABA (a previous sender) and templates Meta no longer lists go first, so a
    template deleted and re-created under the same name and language gets its new id cleanly.
    """
    ids = [t.template_id for t in templates]
    # The tenant predicate is what keeps this from deleting every other tenant's templates
    # wherever row-level security does not apply (a role that bypasses it).
    conn.execute("DELETE FROM meta_templates WHERE tenant_id = %s"
                 " AND NOT (waba_id = %s AND template_id = ANY(%s))", (tenant_id, waba_id, ids))
    if templates:
        with conn.cursor() as cur:
            cur.executemany(
                """
                INSERT INTO meta_templates (tenant_id, template_id, waba_id, name, language,
                    category, status, components, quality_score, rejection_reason,
                    parameter_format, synced_at, status_changed_at)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now(), now())
                ON CONFLICT (tenant_id, template_id) DO UPDATE SET
                    waba_id = EXCLUDED.waba_id, name = EXCLUDED.name,
                    language = EXCLUDED.language, category = EXCLUDED.category,
                    status = EXCLUDED.status, components = EXCLUDED.components,
                    quality_score = EXCLUDED.quality_score,
                    rejection_reason = EXCLUDED.rejection_reason,
                    parameter_format = EXCLUDED.parameter_format,
                    synced_at = now(), status_changed_at = now()
                """,
                [(tenant_id, t.template_id, waba_id, t.name, t.language, t.category, t.status,
                  Jsonb(t.components), t.quality_score, t.rejection_reason, t.parameter_format)
                 for t in templates],
            )
    conn.execute("UPDATE whatsapp_senders SET templates_synced_at = now(), updated_at = now()"
                 " WHERE tenant_id = %s", (tenant_id,))
    return len(templates)


def list_all(conn: psycopg.Connection, status: str | None = None) -> list[dict[str, Any]]:
    where, params = ("AND status = %s", (status,)) if status else ("", ())
    return conn.execute(
        f"SELECT {_COLUMNS} FROM meta_templates"  # noqa: S608 - constant fragments only
        f" WHERE tenant_id = app_current_tenant() {where} ORDER BY name, language",
        params,
    ).fetchall()


def get(conn: psycopg.Connection, name: str, language: str) -> dict[str, Any] | None:
    return conn.execute(
        f"SELECT {_COLUMNS} FROM meta_templates"  # noqa: S608 - constant fragments only
        " WHERE tenant_id = app_current_tenant() AND name = %s AND language = %s",
        (name, language),
    ).fetchone()

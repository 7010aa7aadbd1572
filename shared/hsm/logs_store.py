"""automation_logs reads for the logs API, on a connection from shared.platform.db.tenant_tx (the
statement names the transaction's tenant too, in the joins as well)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg


@dataclass(frozen=True)
class LogFilters:
    """What a page of the logs is narrowed to; every field is optional."""

    rule_id: str | None = None
    status: str | None = None
    created_from: datetime | None = None  # inclusive
    created_before: datetime | None = None  # exclusive

_SELECT = """
    SELECT l.id, l.lead_id, ld.name AS lead_name, l.phone, l.rule_id, r.name AS rule_name,
           r.deleted_at AS rule_deleted_at, l.template_name, l.language, l.status, l.wamid,
           l.error_code, l.error_message, l.attempts, l.created_at, l.updated_at, l.sent_at,
           l.delivered_at, l.read_at, l.failed_at
    FROM automation_logs l
    LEFT JOIN leads ld ON ld.tenant_id = l.tenant_id AND ld.id = l.lead_id
    LEFT JOIN automation_rules r ON r.tenant_id = l.tenant_id AND r.id = l.rule_id
    WHERE l.tenant_id = app_current_tenant()
"""


def page(conn: psycopg.Connection, filters: LogFilters, *, after: tuple[datetime, str] | None,
         limit: int) -> list[dict[str, Any]]:
    where: list[str] = []  # more conditions after _SELECT's tenant
    params: list[Any] = []
    if filters.rule_id:
        where.append("l.rule_id = %s")
        params.append(filters.rule_id)
    if filters.status:
        where.append("l.status = %s")
        params.append(filters.status)
    if filters.created_from:
        where.append("l.created_at >= %s")
        params.append(filters.created_from)
    if filters.created_before:
        where.append("l.created_at < %s")
        params.append(filters.created_before)
    if after:
        where.append("(l.created_at, l.id) < (%s, %s)")
        params += [after[0], after[1]]
    clause = "".join(f" AND {condition}" for condition in where)
    return conn.execute(
        f"{_SELECT} {clause} ORDER BY l.created_at DESC, l.id DESC LIMIT %s",  # noqa: S608
        (*params, limit),
    ).fetchall()

"""Before a tenant sends: its lease, the recovery of what dead runs left behind, whether it still
has due work, its sender and token, and a plan per rule saying whether the rule can send now and
why not. Nothing here calls Meta; the token is decrypted (KMS) only for a tenant with due work.

Runs on the container's dispatch threads (shared.hsm.threads).
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from shared.connection import credentials
from shared.connection.session import usable_token
from shared.hsm import claims, leases
from shared.hsm.claims import Rule
from shared.hsm.leases import LeaseEnd
from shared.platform.db import tenant_tx
from shared.platform.errors import MetaReconnectRequired
from shared.platform.observability import logger, metrics
from shared.whatsapp import senders, templates_store
from shared.whatsapp.templates import (
    SENDABLE_STATUS,
    placeholder_count,
    unfillable_parts,
)

# A permitted send without a result for this long belongs to a run that died (Lambda's maximum
# run is 15 minutes): UNKNOWN.
STARTED_TIMEOUT_SECONDS = 20 * 60
LEASE_MARGIN_SECONDS = 60
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


@dataclass(frozen=True)
class RulePlan:
    rule: Rule
    skip_code: str | None = None
    skip_message: str | None = None
    parameter_names: list[str] | None = None  # named-parameter templates only


@dataclass(frozen=True)
class TenantPlan:
    sender: senders.Sender
    token: str = field(repr=False)
    rules: list[RulePlan] = field(default_factory=list)


def _parameter_names(components: Any) -> list[str]:
    names: list[str] = []
    for component in components if isinstance(components, list) else []:
        if isinstance(component, dict) and str(component.get("type", "")).upper() == "BODY":
            for name in _PLACEHOLDER.findall(str(component.get("text") or "")):
                if name not in names:
                    names.append(name)
    return names


def plan_rule(conn: Any, rule: Rule) -> RulePlan:
    """Can the rule send now? Its template must be synced, APPROVED and fillable by it."""
    row = templates_store.get(conn, rule.template_name, rule.language)
    label = f"Template '{rule.template_name}' ({rule.language})"
    if row is None:
        return RulePlan(rule, "template_missing", f"{label} is not among the synced templates.")
    if row["status"] != SENDABLE_STATUS:
        reason = f": {row['rejection_reason']}" if row.get("rejection_reason") else ""
        return RulePlan(rule, "template_not_approved", f"{label} is {row['status']}{reason}.")
    expected = placeholder_count(row["components"])
    if unfillable_parts(row["components"]) or expected != len(rule.body_params):
        return RulePlan(rule, "template_mismatch", f"{label} needs {expected} body parameters "
                        f"and no header or button ones; the rule maps {len(rule.body_params)}.")
    named = str(row.get("parameter_format") or "").upper() == "NAMED"
    return RulePlan(rule, parameter_names=_parameter_names(row["components"]) if named else None)


@dataclass
class _Visit:
    """What a tenant visit read under its newly taken lease."""

    sender: senders.Sender | None
    rules: list[Rule]
    stored: credentials.StoredCredential | None
    plans: list[RulePlan]
    reason: str | None  # why there is nothing to send now; None: send
    timed_out: int = 0
    orphans: int = 0
    lease_end: LeaseEnd = field(default_factory=LeaseEnd)


def _release_lease(tenant_id: str, run_id: uuid.UUID) -> LeaseEnd:
    with tenant_tx(tenant_id) as conn:
        return leases.let_go(conn, run_id)


def prepare_tenant(tenant_id: str, run_id: uuid.UUID, deadline: float
                   ) -> tuple[TenantPlan | None, LeaseEnd]:
    """Lease, recovery, sender, token, rule plans. (None, how the lease ended): nothing to send
    now. With a plan, the lease is still held and its LeaseEnd empty.

    The lease is taken in the transaction that reads the rest, so a visit costs one transaction
    (and a visit with nothing to send lets go in it too). While another run holds the lease, a
    mark that run reads as it lets go (leases.mark_woken) keeps what woke this one; a lease let
    go between the two statements is tried again."""
    for _ in range(3):
        lease_seconds = max(0.0, deadline - time.monotonic()) + LEASE_MARGIN_SECONDS
        with tenant_tx(tenant_id) as conn:
            if leases.acquire(conn, tenant_id, run_id, lease_seconds):
                visit = _read_leased(conn, tenant_id, run_id)
                if visit.reason is not None:
                    visit.lease_end = leases.let_go(conn, run_id)
                break
            if leases.mark_woken(conn):
                logger.info("hsm_dispatch_busy", extra={"tenant_id": tenant_id})
                return None, LeaseEnd()
    else:
        return None, LeaseEnd()  # taken and let go twice meanwhile: those runs saw what we would
    _log_visit(tenant_id, visit)
    if visit.reason is not None:
        return None, visit.lease_end
    try:
        token = usable_token(visit.stored)  # marks the connection when its ciphertext is unusable
    except MetaReconnectRequired:
        return None, _release_lease(tenant_id, run_id)
    except Exception:
        _release_lease(tenant_id, run_id)
        raise
    return TenantPlan(visit.sender, token, visit.plans), LeaseEnd()


def _read_leased(conn: Any, tenant_id: str, run_id: uuid.UUID) -> _Visit:
    timed_out = claims.expire_started(conn, STARTED_TIMEOUT_SECONDS)
    orphans = claims.release_orphans(conn, run_id)
    # Asked again here, under the lease: a duplicated or late message must not cost a KMS call
    # (or a send) when the planner's reason to queue the tenant is gone.
    due = claims.due_work(conn, STARTED_TIMEOUT_SECONDS, 0, tenant_id)
    sender = senders.get(conn)
    rules = claims.enabled_rules(conn)
    stored = credentials.load(conn)
    reason = ("no_rules" if not rules else "no_sender" if sender is None
              else "meta_not_connected" if stored is None
              else "needs_reconnect" if stored.status == "needs_reconnect"
              else "nothing_due" if not any(d.rule_id for d in due) else None)
    # Templates are read as stored: webhooks and the periodic template sync keep them current
    # (shared.whatsapp.template_sync), so no send waits for a Graph read. A template that
    # stopped being approved since is refused by Meta itself (132001/132015/132016).
    plans = [plan_rule(conn, rule) for rule in rules] if reason is None else []
    return _Visit(sender, rules, stored, plans, reason, timed_out, orphans)


def _log_visit(tenant_id: str, visit: _Visit) -> None:
    if visit.timed_out or visit.orphans:
        logger.warning("hsm_claims_recovered", extra={
            "tenant_id": tenant_id, "unknown": visit.timed_out, "released": visit.orphans})
        if visit.timed_out:
            metrics.add_metric(name="HsmClaimsTimedOut", unit="Count", value=visit.timed_out)
    if visit.reason is not None and visit.rules:
        logger.info("hsm_dispatch_tenant_skipped", extra={"tenant_id": tenant_id,
                                                          "reason": visit.reason})

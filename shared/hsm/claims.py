"""automation_logs as the dispatcher's claim ledger: data access only, no HTTP, no Meta.

Every function takes a connection from shared.platform.db.tenant_tx (row-level security holds,
and every statement names the transaction's tenant too: `tenant_id = app_current_tenant()`, or
the id it is given) or, for the planner's `due_work` and `mark_queued`, from system_tx. The row
life cycle is described in migrations/0006_hsm_dispatch.up.sql; in short:

    reserve (PENDING, claimed_by=run)  ->  permit (attempt_started_at)  ->  Meta  ->  result
                                            ^ the only gate before a send

- `reserve_new` inserts the row under UNIQUE (tenant_id, rule_id, lead_id) with ON CONFLICT DO
  NOTHING, so a pair is claimed once, ever.
- `reserve_released` is the only way back to a send for a row that was released (never sent, or
  refused by Meta without being accepted): UPDATE ... WHERE status = 'PENDING' AND
  claimed_by IS NULL AND next_attempt_at <= now() ... RETURNING, with SKIP LOCKED.
- `permit` moves reserved rows to "Meta may have it", conditionally on still holding them.
  Only rows it returns may be sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from shared.hsm.eligibility import LEAD_CREATED, LEAD_FOLLOWUP, due_for_rule, reachable
from shared.whatsapp.webhook_store import OPT_OUT_131050, mark_contacted

LEAD_FIELDS = "l.phone, l.name, l.email, l.lead_source, l.meta_ad_headline, l.created_at"
# Before every lead: the keyset cursor of a rule's first batch.
START_CURSOR = (datetime(1970, 1, 1, tzinfo=UTC), uuid.UUID(int=0))


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    delay_hours: int | None  # lead_followup
    template_name: str
    language: str
    body_params: list[str]
    send_window: dict[str, Any] | None
    trigger_type: str = LEAD_FOLLOWUP
    delay_minutes: int | None = None  # lead_created
    enabled_at: datetime | None = None  # lead_created: leads created since then

    def due_params(self) -> dict[str, Any]:
        """The parameters of eligibility.due_for_rule's age test."""
        return {"delay_hours": self.delay_hours, "delay_minutes": self.delay_minutes,
                "enabled_at": self.enabled_at}


@dataclass(frozen=True)
class Claim:
    """One reserved (rule, lead) pair, with what the send needs from the lead."""

    log_id: str
    rule_id: str
    lead_id: str
    phone: str
    attempts: int  # permits granted before this one
    lead: dict[str, Any] = field(repr=False)  # name, email, phone... for template parameters
    lead_created_at: datetime | None = None


@dataclass(frozen=True)
class Result:
    """What happened to one permitted send (see shared/hsm/outcomes.py)."""

    log_id: str
    lead_id: str
    outcome: str  # SENT | FAILED | RETRY | UNKNOWN
    wamid: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    retry_in_seconds: float = 0.0
    opt_out: bool = False


# -- which tenants have work (SECURITY DEFINER functions of 0009, ids and windows only) -------
@dataclass(frozen=True)
class DueWork:
    """A rule of the tenant can act now (rule_id set), or a dead run's rows wait for recovery
    (rule_id None). The send window and the sender's time zone let the planner hold a rule
    during its quiet hours."""

    tenant_id: str
    rule_id: str | None
    send_window: dict[str, Any] | None
    timezone: str | None


def due_work(conn: psycopg.Connection, started_timeout_seconds: float,
             requeue_after_seconds: float, tenant_id: str | None = None) -> list[DueWork]:
    """Every tenant's due work (system_tx), leaving out tenants whose run is under way or that
    were queued a moment ago; or, with `tenant_id`, that one tenant's, whatever its lease."""
    rows = conn.execute("SELECT * FROM hsm_due_work(%s, %s, %s)",
                        (int(started_timeout_seconds), int(requeue_after_seconds),
                         tenant_id)).fetchall()
    return [DueWork(r["tenant_id"], str(r["rule_id"]) if r["rule_id"] else None,
                    r["send_window"], r["timezone"]) for r in rows]


def mark_queued(conn: psycopg.Connection, tenant_ids: list[str]) -> None:
    if tenant_ids:
        conn.execute("SELECT hsm_mark_queued(%s)", (tenant_ids,))


# -- recovery at the start of a run -----------------------------------------------------------
def expire_started(conn: psycopg.Connection, older_than_seconds: float) -> int:
    """Permitted sends with no result for too long (the run died after the permit): Meta may or
    may not have them, so they are never sent again. UNKNOWN, once; a late webhook still
    upgrades them to SENT/DELIVERED."""
    cur = conn.execute(
        "UPDATE automation_logs SET status = 'UNKNOWN', claimed_by = NULL, "
        "error_code = COALESCE(error_code, 'no_result'), "
        "error_message = COALESCE(error_message, 'The dispatcher stopped before Meta answered; "
        "the message may or may not have been sent.'), updated_at = now() "
        "WHERE tenant_id = app_current_tenant() AND status = 'PENDING' "
        "AND attempt_started_at IS NOT NULL "
        "AND attempt_started_at < now() - make_interval(secs => %s)",
        (older_than_seconds,),
    )
    return cur.rowcount


def release_orphans(conn: psycopg.Connection, holder: uuid.UUID) -> int:
    """Reservations of runs that are gone (we hold the tenant's lease), never permitted: never
    sent, so they are released for re-claiming."""
    cur = conn.execute(
        "UPDATE automation_logs SET claimed_by = NULL, next_attempt_at = now(), "
        "updated_at = now() WHERE tenant_id = app_current_tenant() AND status = 'PENDING' "
        "AND attempt_started_at IS NULL "
        "AND claimed_by IS NOT NULL AND claimed_by <> %s",
        (holder,),
    )
    return cur.rowcount


def revive_template_skips(conn: psycopg.Connection, rule_id: str) -> int:
    """Leads skipped while the rule's template was not approved, never attempted: released, so
    they get the message now that it is approved."""
    cur = conn.execute(
        "UPDATE automation_logs SET status = 'PENDING', claimed_by = NULL, "
        "next_attempt_at = now(), error_code = NULL, error_message = NULL, updated_at = now() "
        "WHERE tenant_id = app_current_tenant() AND rule_id = %s AND status = 'SKIPPED' "
        "AND attempts = 0 "
        "AND error_code LIKE 'template\\_%%'",
        (rule_id,),
    )
    return cur.rowcount


def skip_unreachable_released(conn: psycopg.Connection, rule: Rule) -> int:
    """Released rows whose lead opted out, got contacted (lead_followup) or lost its phone
    meanwhile."""
    cur = conn.execute(
        f"""
        UPDATE automation_logs a SET status = 'SKIPPED', error_code = 'lead_not_eligible',
            error_message = 'The lead opted out, was contacted or has no phone any more.',
            updated_at = now()
        FROM leads l
        WHERE a.tenant_id = app_current_tenant() AND a.rule_id = %s AND a.status = 'PENDING'
          AND a.claimed_by IS NULL AND a.attempt_started_at IS NULL
          AND l.tenant_id = a.tenant_id AND l.id = a.lead_id
          AND NOT ({reachable(rule.trigger_type)})
        """,  # noqa: S608 - constant fragments only
        (rule.id,),
    )
    return cur.rowcount


# -- rules ---------------------------------------------------------------------------------------
def enabled_rules(conn: psycopg.Connection) -> list[Rule]:
    """lead_created rules first: a run reaches its new leads before any follow-up backlog."""
    rows = conn.execute(
        "SELECT id, name, delay_hours, template_name, language, body_params, send_window, "
        "trigger_type, delay_minutes, enabled_at "
        "FROM automation_rules WHERE tenant_id = app_current_tenant() AND enabled "
        "AND deleted_at IS NULL ORDER BY trigger_type <> %s, created_at, id", (LEAD_CREATED,)
    ).fetchall()
    return [Rule(str(r["id"]), r["name"], r["delay_hours"], r["template_name"], r["language"],
                 list(r["body_params"] or []), r["send_window"], r["trigger_type"],
                 r["delay_minutes"], r["enabled_at"]) for r in rows]


# -- the messaging tier --------------------------------------------------------------------------
def lock_reservations(conn: psycopg.Connection, tenant_id: str) -> None:
    """Serialise reservations of one tenant until commit, so the 24-hour recipient count and the
    claims taken against it cannot race between overlapping runs."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                 (f"hsm_reserve:{tenant_id}",))


def recent_recipients(conn: psycopg.Connection) -> int:
    """Distinct phones messaged (or about to be) in the last 24 hours."""
    row = conn.execute(
        """
        SELECT count(DISTINCT phone) AS n FROM automation_logs
        WHERE tenant_id = app_current_tenant()
          AND claimed_at > now() - interval '25 hours' AND phone IS NOT NULL AND (
            (status IN ('SENT', 'DELIVERED', 'READ', 'UNKNOWN')
             AND COALESCE(sent_at, attempt_started_at, claimed_at) > now() - interval '24 hours')
            OR (status = 'FAILED' AND wamid IS NOT NULL
                AND COALESCE(sent_at, claimed_at) > now() - interval '24 hours')
            OR (status = 'PENDING' AND (claimed_by IS NOT NULL OR attempt_started_at IS NOT NULL)))
        """
    ).fetchone()
    return int(row["n"])


# -- reserving -----------------------------------------------------------------------------------
def _claims(rows: Iterable[dict[str, Any]], rule_id: str) -> list[Claim]:
    return [Claim(log_id=str(r["log_id"]), rule_id=rule_id, lead_id=str(r["lead_id"]),
                  phone=r["phone"], attempts=r["attempts"],
                  lead={k: r[k] for k in ("name", "email", "phone", "lead_source",
                                          "meta_ad_headline")},
                  lead_created_at=r["created_at"]) for r in rows]


def reserve_released(conn: psycopg.Connection, rule: Rule, holder: uuid.UUID,
                     limit: int) -> list[Claim]:
    """Released rows of `rule` whose next attempt is due, for a lead still reachable."""
    rows = conn.execute(
        f"""
        UPDATE automation_logs a SET claimed_by = %(holder)s, claimed_at = now(),
            phone = l.phone, template_name = %(template)s, language = %(language)s,
            updated_at = now()
        FROM leads l
        WHERE a.id IN (SELECT x.id FROM automation_logs x
                       WHERE x.tenant_id = app_current_tenant() AND x.rule_id = %(rule_id)s
                         AND x.status = 'PENDING'
                         AND x.claimed_by IS NULL AND x.attempt_started_at IS NULL
                         AND x.next_attempt_at <= now()
                       ORDER BY x.next_attempt_at, x.id
                       LIMIT %(limit)s
                       FOR UPDATE SKIP LOCKED)
          AND l.tenant_id = a.tenant_id AND l.id = a.lead_id AND {reachable(rule.trigger_type)}
        RETURNING a.id AS log_id, a.lead_id, a.attempts, {LEAD_FIELDS}
        """,  # noqa: S608 - constant fragments only
        {"holder": holder, "rule_id": rule.id, "limit": limit,
         "template": rule.template_name, "language": rule.language},
    ).fetchall()
    return _claims(rows, rule.id)


def reserve_new(conn: psycopg.Connection, tenant_id: str, rule: Rule, holder: uuid.UUID,
                limit: int, after: tuple[Any, Any] = START_CURSOR) -> list[Claim]:
    """Claim up to `limit` eligible leads never logged for `rule` (after the keyset cursor)."""
    rows = conn.execute(
        f"""
        WITH due AS ({due_for_rule(rule.trigger_type)}),
        claimed AS (
            INSERT INTO automation_logs (tenant_id, rule_id, lead_id, template_name, language,
                                         phone, status, claimed_by, claimed_at)
            SELECT %(tenant)s, %(rule_id)s, due.id, %(template)s, %(language)s, due.phone,
                   'PENDING', %(holder)s, now()
            FROM due
            ON CONFLICT (tenant_id, rule_id, lead_id) DO NOTHING
            RETURNING id, lead_id, attempts)
        SELECT c.id AS log_id, c.lead_id, c.attempts, {LEAD_FIELDS}
        FROM claimed c JOIN leads l ON l.tenant_id = %(tenant)s AND l.id = c.lead_id
        ORDER BY l.created_at, l.id
        """,  # noqa: S608 - constant fragments only
        {"tenant": tenant_id, "rule_id": rule.id, **rule.due_params(),
         "template": rule.template_name, "language": rule.language, "holder": holder,
         "limit": limit, "after_created_at": after[0], "after_id": after[1]},
    ).fetchall()
    return _claims(rows, rule.id)


def insert_skipped(conn: psycopg.Connection, tenant_id: str, rule: Rule, code: str,
                   message: str, limit: int) -> int:
    """Eligible leads the rule cannot message now (its template is not approved): one SKIPPED
    row each, with the reason. `revive_template_skips` releases them once it is approved."""
    cur = conn.execute(
        f"""
        WITH due AS ({due_for_rule(rule.trigger_type)})
        INSERT INTO automation_logs (tenant_id, rule_id, lead_id, template_name, language, phone,
                                     status, error_code, error_message)
        SELECT %(tenant)s, %(rule_id)s, due.id, %(template)s, %(language)s, due.phone,
               'SKIPPED', %(code)s, %(message)s
        FROM due
        ON CONFLICT (tenant_id, rule_id, lead_id) DO NOTHING
        """,  # noqa: S608 - constant fragments only
        {"tenant": tenant_id, "rule_id": rule.id, **rule.due_params(),
         "template": rule.template_name, "language": rule.language, "code": code,
         "message": message[:500], "limit": limit, "after_created_at": START_CURSOR[0],
         "after_id": START_CURSOR[1]},
    )
    return cur.rowcount


# -- the permit: the last step before Meta -----------------------------------------------------
def permit(conn: psycopg.Connection, holder: uuid.UUID, log_ids: list[str]) -> set[str]:
    """Allow sending these reserved rows; returns the ids this run may send (rows another run
    took over meanwhile are left out).

    A lead_followup row is held back too when its lead was reached since it was reserved: the
    lead was contacted, or another rule's send to it is with Meta right now (a lead_created
    message of the same run, say). Held back, it stays reserved, is released when the run ends
    and is then skipped as `lead_not_eligible` (or sent, if that other send failed)."""
    if not log_ids:
        return set()
    rows = conn.execute(
        f"""
        UPDATE automation_logs a SET attempt_started_at = now(), attempts = a.attempts + 1,
            updated_at = now()
        FROM automation_rules r, leads l
        WHERE a.tenant_id = app_current_tenant() AND a.id = ANY(%s::uuid[])
          AND a.claimed_by = %s AND a.status = 'PENDING' AND a.attempt_started_at IS NULL
          AND r.tenant_id = a.tenant_id AND r.id = a.rule_id
          AND l.tenant_id = a.tenant_id AND l.id = a.lead_id
          AND (r.trigger_type <> '{LEAD_FOLLOWUP}' OR (
               l.last_contacted_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM automation_logs o
                               WHERE o.tenant_id = a.tenant_id AND o.lead_id = a.lead_id
                                 AND o.id <> a.id AND o.status = 'PENDING'
                                 AND o.attempt_started_at IS NOT NULL)))
        RETURNING a.id
        """,  # noqa: S608 - constant fragments only
        (log_ids, holder),
    ).fetchall()
    return {str(r["id"]) for r in rows}


def release(conn: psycopg.Connection, holder: uuid.UUID, unsent_ids: list[str]) -> int:
    """Give back what this run reserved but never sent: its unpermitted reservations, and the
    permitted rows in `unsent_ids` that never reached Meta. They become re-claimable now."""
    cur = conn.execute(
        "UPDATE automation_logs SET claimed_by = NULL, next_attempt_at = now(), "
        "attempts = attempts - CASE WHEN attempt_started_at IS NULL THEN 0 ELSE 1 END, "
        "attempt_started_at = NULL, updated_at = now() "
        "WHERE tenant_id = app_current_tenant() AND claimed_by = %s AND status = 'PENDING' "
        "AND (attempt_started_at IS NULL OR id = ANY(%s::uuid[]))",
        (holder, unsent_ids),
    )
    return cur.rowcount


# -- results -------------------------------------------------------------------------------------
_SENT = """
    UPDATE automation_logs SET
        wamid = COALESCE(wamid, %(wamid)s),
        status = CASE WHEN status IN ('PENDING', 'UNKNOWN') THEN 'SENT' ELSE status END,
        error_code = CASE WHEN status IN ('PENDING', 'UNKNOWN') THEN NULL ELSE error_code END,
        error_message = CASE WHEN status IN ('PENDING', 'UNKNOWN') THEN NULL
                             ELSE error_message END,
        sent_at = COALESCE(sent_at, now()), claimed_by = NULL, updated_at = now()
    WHERE tenant_id = app_current_tenant() AND id = %(id)s
"""
_FAILED = """
    UPDATE automation_logs SET status = 'FAILED', error_code = %(code)s,
        error_message = %(message)s, failed_at = now(), claimed_by = NULL, updated_at = now()
    WHERE tenant_id = app_current_tenant() AND id = %(id)s AND status = 'PENDING'
"""
_UNKNOWN = """
    UPDATE automation_logs SET status = 'UNKNOWN', error_code = %(code)s,
        error_message = %(message)s, claimed_by = NULL, updated_at = now()
    WHERE tenant_id = app_current_tenant() AND id = %(id)s AND status = 'PENDING'
"""
# Meta refused without accepting: released with a backoff. Only this run's permitted rows.
_RETRY = """
    UPDATE automation_logs SET claimed_by = NULL, attempt_started_at = NULL,
        next_attempt_at = now() + make_interval(secs => %(delay)s),
        error_code = %(code)s, error_message = %(message)s, updated_at = now()
    WHERE tenant_id = app_current_tenant() AND id = %(id)s AND status = 'PENDING'
      AND claimed_by = %(holder)s
"""
_BY_OUTCOME = {"SENT": _SENT, "FAILED": _FAILED, "UNKNOWN": _UNKNOWN, "RETRY": _RETRY}


# Row locks in id order before any update. The status webhook locks the rows it touches the
# same way (shared.whatsapp.webhook_store.lock_logs), so a flush and a webhook batch over the
# same messages queue behind each other instead of deadlocking (each would otherwise lock in its
# own order).
_LOCK_BY_ID = ("SELECT 1 FROM automation_logs WHERE tenant_id = app_current_tenant()"
               " AND id = ANY(%s::uuid[]) ORDER BY id FOR UPDATE")


def write_results(conn: psycopg.Connection, holder: uuid.UUID, results: list[Result]) -> None:
    """One transaction per flush: every result, and the opt-outs Meta reported (131050).
    Idempotent as a whole, so a transaction Postgres aborted can simply run again."""
    conn.execute(_LOCK_BY_ID, ([r.log_id for r in results],))
    with conn.cursor() as cur:
        for outcome, sql in _BY_OUTCOME.items():
            params = [{"id": r.log_id, "wamid": r.wamid, "code": r.error_code,
                       "message": (r.error_message or "")[:500] or None,
                       "delay": r.retry_in_seconds, "holder": holder}
                      for r in results if r.outcome == outcome]
            if params:
                cur.executemany(sql, params)
    # Meta accepted these: their leads count as contacted (CONTRACT.md "Lead Ads").
    mark_contacted(conn, [r.log_id for r in results if r.outcome == "SENT"])
    opted_out = [r.lead_id for r in results if r.opt_out]
    if opted_out:
        conn.execute(
            "UPDATE leads SET whatsapp_opt_out = true, whatsapp_opt_out_source = %s, "
            "whatsapp_opt_out_changed_at = now() WHERE tenant_id = app_current_tenant() "
            "AND id = ANY(%s::uuid[]) "
            "AND NOT whatsapp_opt_out",
            (OPT_OUT_131050, opted_out),
        )

"""The per-tenant dispatch lease (hsm_dispatch_leases) and the wake-ups that ride on it: data
access only, on a connection from shared.platform.db.tenant_tx.

One run per tenant (= per phone number) at a time, so overlapping runs never pace one number
twice. A lease, not a lock: a run that dies keeps it only until it expires. Correctness never
depends on it (the permit in shared.hsm.claims does); pacing and wake-ups do.

Wake-ups (rule lead_created, migrations/0012): a stored lead wakes its tenant with an SQS
message. When that message finds the lease held, it must not be lost, since the running run may
already have passed the point where it would see the lead: `mark_woken` leaves a mark on the
lease row under its row lock, and the holder, letting go, reads it (`let_go`) and queues the
tenant again at once. The two statements serialise on the row, so the mark is either seen by the
holder or finds the lease free (and the waker takes it itself). `let_go` also says when the next
lead of a delayed lead_created rule falls due, so the worker can queue a delayed wake for it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg

WAKE_HORIZON_SECONDS = 900  # SQS DelaySeconds' maximum; later leads are the planner's


@dataclass(frozen=True)
class LeaseEnd:
    """What the holder learnt as it let go of the lease."""

    woken: bool = False  # a wake arrived during the run: run the tenant again now
    wake_in: int | None = None  # seconds until a lead falls due (a delayed wake to queue)


def acquire(conn: psycopg.Connection, tenant_id: str, holder: uuid.UUID,
            seconds: float) -> bool:
    row = conn.execute(
        """
        INSERT INTO hsm_dispatch_leases (tenant_id, holder, expires_at)
        VALUES (%(tenant)s, %(holder)s, now() + make_interval(secs => %(secs)s))
        ON CONFLICT (tenant_id) DO UPDATE SET holder = EXCLUDED.holder,
            expires_at = EXCLUDED.expires_at, acquired_at = now(), woken = false
        WHERE hsm_dispatch_leases.expires_at <= now()
           OR hsm_dispatch_leases.holder = EXCLUDED.holder
        RETURNING holder
        """,
        {"tenant": tenant_id, "holder": holder, "secs": seconds},
    ).fetchone()
    return row is not None


def mark_woken(conn: psycopg.Connection) -> bool:
    """Tell the lease's holder that a wake came. False when no run holds it any more (it let go
    since `acquire` failed): the caller tries to take it instead. clock_timestamp(), not now():
    a holder that let go after this transaction began must count as gone."""
    row = conn.execute(
        "UPDATE hsm_dispatch_leases SET woken = true WHERE tenant_id = app_current_tenant() "
        "AND expires_at > clock_timestamp() RETURNING 1").fetchone()
    return row is not None


def let_go(conn: psycopg.Connection, holder: uuid.UUID) -> LeaseEnd:
    """Give the lease back; whether a wake came meanwhile, and when the next delayed lead falls
    due (within the wake horizon, and only when no wake is queued for that moment already)."""
    row = conn.execute(
        "UPDATE hsm_dispatch_leases SET expires_at = now(), last_finished_at = now() "
        "WHERE tenant_id = app_current_tenant() AND holder = %s RETURNING woken",
        (holder,)).fetchone()
    woken = bool(row and row["woken"])
    return LeaseEnd(woken=woken, wake_in=None if woken else _claim_next_wake(conn))


def _claim_next_wake(conn: psycopg.Connection) -> int | None:
    """Seconds until the next lead of a delayed lead_created rule falls due, if a wake must be
    queued for it: the lease row remembers the wake already queued (wake_at), so a burst of
    leads queues one wake per due moment, not one per lead."""
    row = conn.execute(
        """
        WITH next AS (
            SELECT min(l.created_at + make_interval(mins => r.delay_minutes)) AS due_at
            FROM automation_rules r
            JOIN leads l ON l.tenant_id = r.tenant_id
            WHERE r.tenant_id = app_current_tenant() AND r.enabled AND r.deleted_at IS NULL
              AND r.trigger_type = 'lead_created' AND r.delay_minutes > 0
              AND l.created_at >= r.enabled_at
              AND l.created_at > now() - make_interval(mins => r.delay_minutes)
              AND l.created_at <= now() - make_interval(mins => r.delay_minutes)
                                        + make_interval(secs => %(horizon)s)
              AND l.phone IS NOT NULL AND NOT l.whatsapp_opt_out
              AND NOT EXISTS (SELECT 1 FROM automation_logs a
                              WHERE a.tenant_id = l.tenant_id AND a.rule_id = r.id
                                AND a.lead_id = l.id))
        UPDATE hsm_dispatch_leases d SET wake_at = next.due_at
        FROM next
        WHERE d.tenant_id = app_current_tenant() AND next.due_at IS NOT NULL
          AND (d.wake_at IS NULL OR d.wake_at <= now() OR d.wake_at > next.due_at)
        RETURNING ceil(extract(epoch FROM next.due_at - now()))::int AS seconds
        """,  # a wake queued for later than this lead is replaced by an earlier one
        {"horizon": WAKE_HORIZON_SECONDS}).fetchone()
    if row is None:
        return None
    return max(1, min(WAKE_HORIZON_SECONDS, row["seconds"]))

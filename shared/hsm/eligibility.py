"""Who a rule may message, and when (CONTRACT.md "Rule semantics" and "Lead Ads").

A rule sends its approved template once, ever, to each lead of the tenant that it finds due:
- `lead_followup`: a phone, not opted out, never contacted (an accepted automation message
  counts as contact too), created at least `delay_hours` ago;
- `lead_created`: a phone, not opted out, created since the rule was (last) enabled and at
  least `delay_minutes` ago. Contact by anyone else does not hold it back.
"Once, ever" is the automation_logs row per (rule, lead): a lead with any row for the rule is no
longer eligible for it, whatever that row's status. Quiet hours: outside the rule's send window
no lead is claimed at all (they simply wait for the window).

These are SQL fragments over `leads l` and `automation_logs`, run by shared/hsm/claims.py inside
the tenant's transaction (row-level security adds the tenant, and the fragments name it too).
migrations/0012's hsm_due_work asks the same questions for the planner.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfoNotFoundError

from shared.hsm.rules import in_send_window
from shared.platform.observability import logger

LEAD_FOLLOWUP = "lead_followup"
LEAD_CREATED = "lead_created"

# A lead a rule of the type may message at all. lead_followup's is the same predicate as 0001's
# partial index leads_followup_idx, so the planner can use it.
LEAD_REACHABLE = ("l.phone IS NOT NULL AND NOT l.whatsapp_opt_out "
                  "AND l.last_contacted_at IS NULL")
_REACHABLE = {LEAD_FOLLOWUP: LEAD_REACHABLE,
              LEAD_CREATED: "l.phone IS NOT NULL AND NOT l.whatsapp_opt_out"}
# Old enough for the rule (and, for lead_created, new enough: created since it was enabled).
_AGE = {LEAD_FOLLOWUP: "l.created_at <= now() - make_interval(hours => %(delay_hours)s)",
        LEAD_CREATED: ("l.created_at >= %(enabled_at)s"
                       " AND l.created_at <= now() - make_interval(mins => %(delay_minutes)s)")}


def reachable(trigger_type: str) -> str:
    """The SQL predicate over `leads l` for a lead a rule of this type may message."""
    return _REACHABLE[trigger_type]


def due_for_rule(trigger_type: str) -> str:
    """New work for one rule: reachable, due by age, and never logged for this rule. Keyset-paged
    on (created_at, id) so one run never re-reads the leads it already claimed. Parameters:
    tenant, rule_id, delay_hours, delay_minutes, enabled_at, after_created_at, after_id, limit."""
    return _DUE_FOR_RULE.format(reachable=_REACHABLE[trigger_type], age=_AGE[trigger_type])


_DUE_FOR_RULE = """
    SELECT l.id, l.phone, l.created_at FROM leads l
    WHERE l.tenant_id = %(tenant)s AND {reachable}
      AND {age}
      AND (l.created_at, l.id) > (%(after_created_at)s, %(after_id)s)
      AND NOT EXISTS (SELECT 1 FROM automation_logs a
                      WHERE a.tenant_id = l.tenant_id AND a.rule_id = %(rule_id)s
                        AND a.lead_id = l.id)
    ORDER BY l.created_at, l.id
    LIMIT %(limit)s
"""  # noqa: S608 - constant fragments only


def send_window_open(send_window: Mapping[str, Any] | None, sender_timezone: str | None,
                     now: datetime) -> bool:
    """Quiet hours: True when `now` is inside the rule's window (no window: always).

    A window without a time zone is in the sender's. A window that cannot be read counts as
    closed: better a late message than one at 3 a.m.
    """
    if not send_window:
        return True
    window = dict(send_window)
    window["timezone"] = window.get("timezone") or sender_timezone or "UTC"
    try:
        return in_send_window(window, now)
    except (KeyError, ValueError, TypeError, ZoneInfoNotFoundError):
        logger.warning("hsm_send_window_invalid")
        return False

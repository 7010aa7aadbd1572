"""A tenant's budget of Meta calls made on a click: the ad-account wizard, the connects, the
WhatsApp accounts and the manual token refresh.

Meta limits the app as a whole (200 calls per user per hour, plus business-use-case limits), so
one tenant clicking again and again could leave every other tenant rate-limited. Each tenant
gets a token bucket instead: `meta_budget_burst` requests at once, refilled at
`meta_budget_per_minute`; past it, 429 `rate_limited` with Retry-After, and nothing is sent to
Meta. Scheduled jobs (sync, refresh, dispatch) are paced on their own and spend nothing here.

The bucket is a row of meta_call_budgets (migrations/0010), taken in one statement on the row
lock, so every Lambda container of every function draws from the same bucket, and two requests
at the same moment cannot both take the last token. Postgres rather than DynamoDB: each of these
routes opens a tenant transaction to load the credential anyway, and the take rides on it.
"""

from __future__ import annotations

import math

import psycopg

from shared.platform.errors import TooManyMetaRequests
from shared.platform.observability import counters
from shared.platform.settings import get_settings

# The bucket refilled up to now, capped at the burst: what is left to take.
_AVAILABLE = ("LEAST(%(burst)s, b.tokens + %(per_second)s"
              " * EXTRACT(EPOCH FROM clock_timestamp() - b.refilled_at))")

_TAKE = f"""
    INSERT INTO meta_call_budgets AS b (tenant_id, tokens, refilled_at)
    VALUES (%(tenant)s, %(burst)s - 1, clock_timestamp())
    ON CONFLICT (tenant_id) DO UPDATE SET tokens = {_AVAILABLE} - 1,
                                          refilled_at = clock_timestamp()
    WHERE {_AVAILABLE} >= 1
    RETURNING tokens
"""  # noqa: S608 - constant fragments only

_LEFT = f"""
    SELECT {_AVAILABLE} AS tokens FROM meta_call_budgets b WHERE b.tenant_id = %(tenant)s
"""  # noqa: S608 - constant fragments only


def spend(conn: psycopg.Connection, tenant_id: str) -> None:
    """Take one request from the tenant's bucket (inside its tenant_tx), or raise
    TooManyMetaRequests with the seconds until the next one is there."""
    settings = get_settings()
    params = {"tenant": tenant_id, "burst": settings.meta_budget_burst,
              "per_second": settings.meta_budget_per_minute / 60.0}
    if conn.execute(_TAKE, params).fetchone() is not None:
        return
    row = conn.execute(_LEFT, params).fetchone()
    left = float(row["tokens"]) if row else 0.0
    counters.incr("MetaBudgetRefusals")
    raise TooManyMetaRequests(math.ceil((1.0 - left) / params["per_second"]))

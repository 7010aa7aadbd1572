"""Marketing figures: campaigns with insight totals, leads, cost per lead, won revenue and ROI.

Definitions (what the CRM screens show):
- leads: CRM leads attributed to Meta, created in the range. A lead belongs to the campaign in
  `leads.meta_campaign_id`; a lead whose `lead_source` says Meta but has no campaign counts in
  the totals (and in `unattributed`), not in any campaign.
- meta_leads: what Meta reported (insights `actions`), for comparison.
- spend, impressions, clicks: insights of the days in the range (the ad account's days).
- revenue: `deal_value` of those leads whose status is exactly 'won' (the CRM's value); won_leads
  counts them.
- cost_per_lead = spend / leads; roi = (revenue - spend) / spend. Null when the divisor is 0.
- Money is never summed across currencies. A campaign's currency is its ad account's; a deal
  without `deal_currency` is in its campaign's currency (or, for unattributed leads, in the
  tenant's only ad account currency when it has exactly one). Revenue in another currency than
  the campaign's is listed apart (`revenue_other_currencies`) and stays out of its ROI. Totals
  are one entry per currency.
- Range: `from`/`to` inclusive dates; leads by created_at in UTC days. Both optional.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from shared.ads import stats_json
from shared.ads import stats_store as store
from shared.ads.stats_json import View
from shared.platform.answer_cache import VersionedAnswers
from shared.platform.db import tenant_tx
from shared.platform.errors import InvalidInput

_answers = VersionedAnswers()
_FOLD_LOG_ABOVE = 64  # change-log rows of a tenant before a rebuild folds them into one

MAX_RANGE_DAYS = 37 * 31  # Meta keeps 37 months of insights
_EARLIEST = date(2000, 1, 1)
_LATEST = date(9999, 12, 30)
_CENTS = Decimal("0.01")


@dataclass(frozen=True)
class DateRange:
    start: date | None = None
    end: date | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.start and self.end and self.start > self.end:
            problems.append({"field": "from", "problem": "must not be after 'to'"})
        elif self.start and self.end and (self.end - self.start).days >= MAX_RANGE_DAYS:
            problems.append({"field": "to", "problem": f"range must be under {MAX_RANGE_DAYS} "
                             "days"})
        for name, value in (("from", self.start), ("to", self.end)):
            if value is not None and not _EARLIEST <= value <= _LATEST:
                problems.append({"field": name, "problem": "date out of range"})
        if problems:
            fields = ", ".join(p["field"] for p in problems)
            raise InvalidInput(f"Invalid input: {fields}.", details=problems)

    @property
    def days(self) -> tuple[date, date]:
        return self.start or _EARLIEST, self.end or _LATEST

    def as_json(self) -> dict[str, str | None]:
        return {"from": self.start.isoformat() if self.start else None,
                "to": self.end.isoformat() if self.end else None}


def money(value: Decimal) -> float:
    return float(value.quantize(_CENTS, rounding=ROUND_HALF_UP))


def ratio(numerator: Decimal, denominator: Decimal) -> float | None:
    if not denominator:
        return None
    return float((numerator / denominator).quantize(_CENTS, rounding=ROUND_HALF_UP))


def stats_body(tenant_id: str, period: DateRange, view: View) -> str:
    """The stats or ROI answer as JSON text: built by Postgres (shared/ads/stats_json.py), and
    kept by the container until the tenant's data version changes."""
    key = (tenant_id, view, period.start, period.end)
    start_day, end_day = period.days
    with tenant_tx(tenant_id) as conn:
        version, log_rows = store.data_version(conn, tenant_id)
        body = _answers.get(key, version)
        if body is None:
            if log_rows > _FOLD_LOG_ABOVE:
                store.fold_version_log(conn)
            version, body = stats_json.answer(conn, tenant_id, start_day, end_day, view,
                                                  period.as_json())
            _answers.put(key, version, body)
    return body


def forget_answers() -> None:
    _answers.clear()


def campaigns_json(tenant_id: str, period: DateRange, account_id: str | None
                   ) -> dict[str, Any]:
    """Synced campaigns with their insight totals in the range (Meta's figures only)."""
    start_day, end_day = period.days
    with tenant_tx(tenant_id) as conn:
        meta_rows = store.campaigns(conn, tenant_id, account_id)
        insight_rows = store.insight_totals(conn, tenant_id, start_day, end_day)
    sums: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in insight_rows:
        sums[row["campaign_id"]].append(row)
    items = []
    for campaign in meta_rows:
        rows = sums.get(campaign["campaign_id"], [])
        currency = campaign["account_currency"]
        own = [r for r in rows if (r["currency"] or currency) == currency] or rows
        spend = sum((r["spend"] for r in own), Decimal(0))
        meta_leads = sum(int(r["meta_leads"]) for r in own)
        items.append({
            "campaign_id": campaign["campaign_id"], "name": campaign["name"],
            "account_id": campaign["account_id"], "account_name": campaign["account_name"],
            "status": campaign["status"], "effective_status": campaign["effective_status"],
            "objective": campaign["objective"], "currency": currency,
            "spend": money(spend),
            "impressions": sum(int(r["impressions"]) for r in own),
            "clicks": sum(int(r["clicks"]) for r in own),
            "leads": meta_leads,
            "cost_per_lead": ratio(spend, Decimal(meta_leads)),
            "first_date": min((r["first_date"] for r in own), default=None),
            "last_date": max((r["last_date"] for r in own), default=None),
        })
    items.sort(key=lambda c: (-c["spend"], c["name"] or "", c["campaign_id"]))
    for item in items:
        for key in ("first_date", "last_date"):
            item[key] = item[key].isoformat() if item[key] else None
    return {**period.as_json(), "campaigns": items}

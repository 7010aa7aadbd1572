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

from shared import ads_stats_store as store
from shared.db import tenant_tx
from shared.errors import InvalidInput

MAX_RANGE_DAYS = 37 * 31  # Meta keeps 37 months of insights
_EARLIEST = date(2000, 1, 1)
_LATEST = date(9999, 12, 30)
_CENTS = Decimal("0.01")
_ROI = Decimal("0.0001")


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


def ratio(numerator: Decimal, denominator: Decimal, quantum: Decimal = _CENTS) -> float | None:
    if not denominator:
        return None
    return float((numerator / denominator).quantize(quantum, rounding=ROUND_HALF_UP))


@dataclass
class _Figures:
    spend: Decimal = Decimal(0)
    impressions: int = 0
    clicks: int = 0
    meta_leads: int = 0
    leads: int = 0
    won_leads: int = 0
    revenue: Decimal = Decimal(0)

    def add(self, other: _Figures) -> None:
        self.spend += other.spend
        self.impressions += other.impressions
        self.clicks += other.clicks
        self.meta_leads += other.meta_leads
        self.leads += other.leads
        self.won_leads += other.won_leads
        self.revenue += other.revenue

    def as_json(self) -> dict[str, Any]:
        return {
            "spend": money(self.spend), "impressions": self.impressions, "clicks": self.clicks,
            "meta_leads": self.meta_leads, "leads": self.leads, "won_leads": self.won_leads,
            "revenue": money(self.revenue),
            "cost_per_lead": ratio(self.spend, Decimal(self.leads)),
            "roi": ratio(self.revenue - self.spend, self.spend, _ROI),
        }


@dataclass
class _CampaignEntry:
    campaign_id: str
    currency: str | None
    meta: dict[str, Any] | None
    figures: _Figures
    other_revenue: dict[str, Decimal] | None = None

    def as_json(self) -> dict[str, Any]:
        meta = self.meta or {}
        out = {"campaign_id": self.campaign_id, "name": meta.get("name"),
               "account_id": meta.get("account_id"), "status": meta.get("status"),
               "effective_status": meta.get("effective_status"),
               "objective": meta.get("objective"), "currency": self.currency,
               **self.figures.as_json()}
        out["revenue_other_currencies"] = [
            {"currency": c, "amount": money(a)} for c, a in sorted((self.other_revenue or {})
                                                                   .items())]
        return out


@dataclass
class MarketingStats:
    range: DateRange
    campaigns: list[_CampaignEntry]
    unattributed: dict[str | None, _Figures]
    totals: dict[str | None, _Figures]


def _sort_currency(item: tuple[str | None, Any]) -> tuple[bool, str]:
    return item[0] is None, item[0] or ""


def compute(tenant_id: str, period: DateRange) -> MarketingStats:
    start_day, end_day = period.days
    with tenant_tx(tenant_id) as conn:
        meta_rows = store.campaigns(conn, tenant_id)
        insight_rows = store.insight_totals(conn, tenant_id, start_day, end_day)
        lead_rows = store.lead_totals(conn, tenant_id, start_day, end_day)
        currencies = store.account_currencies(conn, tenant_id)
    default_currency = currencies[0] if len(currencies) == 1 else None
    meta = {r["campaign_id"]: r for r in meta_rows}

    entries: dict[tuple[str, str | None], _CampaignEntry] = {}
    primary: dict[str, _CampaignEntry] = {}  # the entry leads attach to, per campaign

    def entry_for(campaign_id: str, currency: str | None) -> _CampaignEntry:
        key = (campaign_id, currency)
        if key not in entries:
            entries[key] = _CampaignEntry(campaign_id, currency, meta.get(campaign_id),
                                          _Figures())
        return entries[key]

    for row in insight_rows:
        account_currency = (meta.get(row["campaign_id"]) or {}).get("account_currency")
        entry = entry_for(row["campaign_id"], row["currency"] or account_currency)
        entry.figures.add(_Figures(spend=row["spend"], impressions=int(row["impressions"]),
                                   clicks=int(row["clicks"]), meta_leads=int(row["meta_leads"])))
        if entry.currency == account_currency or row["campaign_id"] not in primary:
            primary[row["campaign_id"]] = entry

    unattributed: dict[str | None, _Figures] = defaultdict(_Figures)
    revenue_by_currency: dict[str | None, Decimal] = defaultdict(Decimal)
    leads_by_currency: dict[str | None, list[int]] = defaultdict(lambda: [0, 0])
    for row in lead_rows:
        leads, won, revenue = int(row["leads"]), int(row["won_leads"]), row["revenue"]
        campaign_id = row["campaign_id"]
        if campaign_id is None:
            currency = row["deal_currency"] or default_currency
            figures = unattributed[currency]
            figures.leads += leads
            figures.won_leads += won
            figures.revenue += revenue
            leads_by_currency[currency][0] += leads
            leads_by_currency[currency][1] += won
            revenue_by_currency[currency] += revenue
            continue
        entry = primary.get(campaign_id)
        if entry is None:
            account_currency = (meta.get(campaign_id) or {}).get("account_currency")
            entry = entry_for(campaign_id, account_currency or default_currency)
            primary[campaign_id] = entry
        entry.figures.leads += leads
        entry.figures.won_leads += won
        deal_currency = row["deal_currency"] or entry.currency
        revenue_by_currency[deal_currency] += revenue
        if deal_currency == entry.currency:
            entry.figures.revenue += revenue
        elif revenue:
            entry.other_revenue = entry.other_revenue or {}
            entry.other_revenue[deal_currency] = (entry.other_revenue.get(deal_currency,
                                                                          Decimal(0)) + revenue)

    totals: dict[str | None, _Figures] = defaultdict(_Figures)
    for entry in entries.values():
        f = entry.figures
        totals[entry.currency].add(_Figures(spend=f.spend, impressions=f.impressions,
                                            clicks=f.clicks, meta_leads=f.meta_leads,
                                            leads=f.leads, won_leads=f.won_leads))
    for currency, (leads, won) in leads_by_currency.items():
        totals[currency].leads += leads
        totals[currency].won_leads += won
    for currency, revenue in revenue_by_currency.items():
        totals[currency].revenue += revenue
    ordered = sorted(entries.values(), key=lambda e: (-e.figures.spend, -e.figures.leads,
                                                      (e.meta or {}).get("name") or "",
                                                      e.campaign_id))
    return MarketingStats(period, ordered, dict(unattributed), dict(totals))


def stats_json(stats: MarketingStats) -> dict[str, Any]:
    return {
        **stats.range.as_json(),
        "campaigns": [e.as_json() for e in stats.campaigns],
        "unattributed": [{"currency": c, "leads": f.leads, "won_leads": f.won_leads,
                          "revenue": money(f.revenue)}
                         for c, f in sorted(stats.unattributed.items(), key=_sort_currency)],
        "totals": [{"currency": c, **f.as_json()}
                   for c, f in sorted(stats.totals.items(), key=_sort_currency)],
    }


_ROI_FIELDS = ("campaign_id", "name", "account_id", "currency", "spend", "leads", "won_leads",
               "revenue", "revenue_other_currencies", "roi")
_ROI_TOTAL_FIELDS = ("currency", "spend", "leads", "won_leads", "revenue", "roi")


def roi_json(stats: MarketingStats) -> dict[str, Any]:
    """The ROI view: best return first; campaigns without spend (no ROI) last."""
    full = stats_json(stats)
    campaigns = [{k: c[k] for k in _ROI_FIELDS} for c in full["campaigns"]]
    campaigns.sort(key=lambda c: (c["roi"] is None, -(c["roi"] or 0), c["campaign_id"]))
    return {"from": full["from"], "to": full["to"], "campaigns": campaigns,
            "totals": [{k: t[k] for k in _ROI_TOTAL_FIELDS} for t in full["totals"]]}


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

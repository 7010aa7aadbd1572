"""The marketing stats rules written plainly in Python, over the store's per-campaign sums: the
reference that tests/test_stats_json.py holds the SQL answers (shared/ads/stats_json.py) to.

This was the production implementation until the answers moved into Postgres (issue 9: it cost
~35 ms of interpreter time per request). It is kept as an independent second reading of the
rules in shared/ads/stats.py's docstring; only ties it left to dict order are made explicit.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from shared.ads import stats_store as store
from shared.ads.stats import DateRange, money, ratio
from shared.platform.db import tenant_tx

_ROI = Decimal("0.0001")


def _roi(revenue: Decimal, spend: Decimal) -> float | None:
    if not spend:
        return None
    return float(((revenue - spend) / spend).quantize(_ROI, rounding=ROUND_HALF_UP))


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
            "roi": _roi(self.revenue, self.spend),
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
        currencies = [r["currency"] for r in conn.execute(
            "SELECT DISTINCT currency FROM tenant_meta_accounts WHERE currency IS NOT NULL"
            " ORDER BY currency").fetchall()]
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
    # The entry in the account's currency, else the first by currency.
    for entry in sorted(entries.values(), key=lambda e: (e.currency is None, e.currency or "")):
        account_currency = (entry.meta or {}).get("account_currency")
        if entry.currency == account_currency or entry.campaign_id not in primary:
            primary[entry.campaign_id] = entry

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
                                                      e.campaign_id, e.currency is None,
                                                      e.currency or ""))
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

"""The stats and ROI answers, built as JSON text by Postgres in one statement.

Why in SQL: an answer covers every campaign of the tenant (1,000 in the benchmark). Doing the
joins, currency rules, rounding and serialisation in Python cost ~35 ms of interpreter time per
request, which under load queued every other request of the container behind it
(`make bench ONLY=api_load`). Postgres does the same work in C, in its own process, and hands back
one string that the handler returns as the body.

The rules are the ones documented in shared/ads/stats.py. In SQL terms:
- An entry is one (campaign, currency). Insight rows without a currency take their ad account's.
- A campaign's leads attach to its "primary" entry: the one in the ad account's currency, else
  the first by currency; a campaign with leads and no insights gets an entry in its account's
  currency, or the tenant's only currency.
- A lead's revenue is in `deal_currency`, or its entry's currency when unset. Revenue in another
  currency than its entry's stays out of the entry's ROI and is listed in
  `revenue_other_currencies`.
- Unattributed Meta leads (no campaign) are grouped by deal currency (or the tenant's only one).
- Totals are per currency: the entries' insight figures and leads, the unattributed leads, and all
  revenue by its own currency.
- Rounding: money to cents, ROI to 4 decimals, half away from zero (as Decimal's ROUND_HALF_UP).
- Text sorts use COLLATE "C": code point order, whatever the database's collation.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

import psycopg

from shared.ads.stats_store import INSIGHT_TOTALS_SQL, LEAD_TOTALS_SQL, MonthSplit

View = Literal["stats", "roi"]

# The figures every view is built from. `dflt` is the tenant's only ad-account currency (NULL
# when it has none or several).
_FIGURES = f"""
WITH ins AS ({INSIGHT_TOTALS_SQL}),
lds AS ({LEAD_TOTALS_SQL}),
meta AS (
    SELECT c.campaign_id, c.name, c.account_id, c.status, c.effective_status, c.objective,
           a.currency AS account_currency
    FROM meta_ads_campaigns c
    LEFT JOIN tenant_meta_accounts a
           ON a.tenant_id = c.tenant_id AND a.account_id = c.account_id
    WHERE c.tenant_id = %(tenant)s
),
dflt AS (
    SELECT CASE WHEN count(DISTINCT currency) = 1 THEN min(currency) END AS currency
    FROM tenant_meta_accounts WHERE tenant_id = %(tenant)s
),
ins_entries AS (
    SELECT i.campaign_id, coalesce(i.currency, m.account_currency) AS currency,
           m.account_currency, sum(i.spend) AS spend, sum(i.impressions) AS impressions,
           sum(i.clicks) AS clicks, sum(i.meta_leads) AS meta_leads
    FROM ins i LEFT JOIN meta m ON m.campaign_id = i.campaign_id
    GROUP BY 1, 2, 3
),
primary_entry AS (
    SELECT DISTINCT ON (campaign_id) campaign_id, currency
    FROM ins_entries
    ORDER BY campaign_id, (currency IS NOT DISTINCT FROM account_currency) DESC,
             currency COLLATE "C"
),
attributed AS (
    SELECT l.campaign_id, e.currency AS entry_currency,
           coalesce(l.deal_currency, e.currency) AS deal_currency, l.leads, l.won_leads,
           l.revenue
    FROM lds l
    LEFT JOIN primary_entry p ON p.campaign_id = l.campaign_id
    LEFT JOIN meta m ON m.campaign_id = l.campaign_id
    CROSS JOIN dflt d
    CROSS JOIN LATERAL (SELECT CASE WHEN p.campaign_id IS NOT NULL THEN p.currency
                                    ELSE coalesce(m.account_currency, d.currency) END)
                   e(currency)
    WHERE l.campaign_id IS NOT NULL
),
entries AS (
    SELECT campaign_id, currency, sum(spend) AS spend, sum(impressions) AS impressions,
           sum(clicks) AS clicks, sum(meta_leads) AS meta_leads, sum(leads) AS leads,
           sum(won_leads) AS won_leads, sum(revenue) AS revenue
    FROM (
        SELECT campaign_id, currency, spend, impressions, clicks, meta_leads,
               0 AS leads, 0 AS won_leads, 0 AS revenue
        FROM ins_entries
        UNION ALL
        SELECT campaign_id, entry_currency, 0, 0, 0, 0, leads, won_leads,
               CASE WHEN deal_currency IS NOT DISTINCT FROM entry_currency THEN revenue
                    ELSE 0 END
        FROM attributed
    ) parts
    GROUP BY campaign_id, currency
),
other_revenue AS (
    SELECT campaign_id, currency,
           json_agg(json_build_object('currency', deal_currency, 'amount', round(amount, 2))
                    ORDER BY deal_currency COLLATE "C") AS items
    FROM (
        SELECT campaign_id, entry_currency AS currency, deal_currency, sum(revenue) AS amount
        FROM attributed
        WHERE deal_currency IS DISTINCT FROM entry_currency AND revenue <> 0
        GROUP BY 1, 2, 3
    ) other
    GROUP BY campaign_id, currency
),
unattributed AS (
    SELECT coalesce(l.deal_currency, d.currency) AS currency, sum(l.leads) AS leads,
           sum(l.won_leads) AS won_leads, sum(l.revenue) AS revenue
    FROM lds l CROSS JOIN dflt d
    WHERE l.campaign_id IS NULL
    GROUP BY 1
),
totals AS (
    SELECT currency, sum(spend) AS spend, sum(impressions) AS impressions,
           sum(clicks) AS clicks, sum(meta_leads) AS meta_leads, sum(leads) AS leads,
           sum(won_leads) AS won_leads, sum(revenue) AS revenue
    FROM (
        SELECT currency, spend, impressions, clicks, meta_leads, leads, won_leads,
               0 AS revenue
        FROM entries
        UNION ALL
        SELECT currency, 0, 0, 0, 0, leads, won_leads, revenue FROM unattributed
        UNION ALL
        SELECT deal_currency, 0, 0, 0, 0, 0, 0, revenue FROM attributed
    ) parts
    GROUP BY currency
),
figures AS (
    SELECT e.*, m.name, m.account_id, m.status, m.effective_status, m.objective,
           coalesce(o.items, '[]'::json) AS revenue_other_currencies,
           round(e.spend / nullif(e.leads, 0), 2) AS cost_per_lead,
           round((e.revenue - e.spend) / nullif(e.spend, 0), 4) AS roi
    FROM entries e
    LEFT JOIN meta m ON m.campaign_id = e.campaign_id
    LEFT JOIN other_revenue o
           ON o.campaign_id = e.campaign_id AND o.currency IS NOT DISTINCT FROM e.currency
),
total_figures AS (
    SELECT t.*, round(t.spend / nullif(t.leads, 0), 2) AS cost_per_lead,
           round((t.revenue - t.spend) / nullif(t.spend, 0), 4) AS roi
    FROM totals t
)
"""  # noqa: S608 - constant fragments, no input in them

# Both answers: the tenant's data version and the body, read in one statement (one snapshot).
_ANSWER_HEAD = """
SELECT (SELECT coalesce(sum(weight), 0) FROM stats_changes WHERE tenant_id = %(tenant)s)
       AS version,
       json_build_object(
    'from', %(from)s::text, 'to', %(to)s::text,
"""

_STATS = _FIGURES + _ANSWER_HEAD + """
    'campaigns', (SELECT coalesce(json_agg(json_build_object(
            'campaign_id', campaign_id, 'name', name, 'account_id', account_id,
            'status', status, 'effective_status', effective_status, 'objective', objective,
            'currency', currency, 'spend', round(spend, 2), 'impressions', impressions,
            'clicks', clicks, 'meta_leads', meta_leads, 'leads', leads, 'won_leads', won_leads,
            'revenue', round(revenue, 2), 'cost_per_lead', cost_per_lead, 'roi', roi,
            'revenue_other_currencies', revenue_other_currencies)
        ORDER BY spend DESC, leads DESC, coalesce(name, '') COLLATE "C",
                 campaign_id COLLATE "C", currency COLLATE "C"
        ), '[]'::json) FROM figures),
    'unattributed', (SELECT coalesce(json_agg(json_build_object(
            'currency', currency, 'leads', leads, 'won_leads', won_leads,
            'revenue', round(revenue, 2))
        ORDER BY currency COLLATE "C" NULLS LAST), '[]'::json) FROM unattributed),
    'totals', (SELECT coalesce(json_agg(json_build_object(
            'currency', currency, 'spend', round(spend, 2), 'impressions', impressions,
            'clicks', clicks, 'meta_leads', meta_leads, 'leads', leads, 'won_leads', won_leads,
            'revenue', round(revenue, 2), 'cost_per_lead', cost_per_lead, 'roi', roi)
        ORDER BY currency COLLATE "C" NULLS LAST), '[]'::json) FROM total_figures)
)::text AS body
"""  # noqa: S608 - constant fragments, no input in them

# Best return first; campaigns without spend (no ROI) last.
_ROI = _FIGURES + _ANSWER_HEAD + """
    'campaigns', (SELECT coalesce(json_agg(json_build_object(
            'campaign_id', campaign_id, 'name', name, 'account_id', account_id,
            'currency', currency, 'spend', round(spend, 2), 'leads', leads,
            'won_leads', won_leads, 'revenue', round(revenue, 2),
            'revenue_other_currencies', revenue_other_currencies, 'roi', roi)
        ORDER BY roi IS NULL, roi DESC, campaign_id COLLATE "C", spend DESC, leads DESC,
                 currency COLLATE "C"), '[]'::json) FROM figures),
    'totals', (SELECT coalesce(json_agg(json_build_object(
            'currency', currency, 'spend', round(spend, 2), 'leads', leads,
            'won_leads', won_leads, 'revenue', round(revenue, 2), 'roi', roi)
        ORDER BY currency COLLATE "C" NULLS LAST), '[]'::json) FROM total_figures)
)::text AS body
"""  # noqa: S608 - constant fragments, no input in them


def answer(conn: psycopg.Connection, tenant_id: str, start: date, end: date, view: View,
           range_json: dict[str, str | None]) -> tuple[int, str]:
    """The view's JSON body for the days [start, end] (`range_json` is echoed as from/to), and
    the data version it was built from: one statement, so both come from the same snapshot."""
    params = {**MonthSplit.of(start, end).instant_params(tenant_id), **range_json}
    row = conn.execute(_STATS if view == "stats" else _ROI, params).fetchone()
    return int(row["version"]), row["body"]

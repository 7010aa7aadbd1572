"""Marketing figures for CRM members:

GET /crm/marketing/campaigns     synced campaigns with their insight totals (?account_id, range)
GET /crm/marketing/stats         leads, spend, cost per lead, revenue and ROI per campaign/total
GET /crm/marketing/stats/roi     the same figures ranked by ROI
All take an optional `from`/`to` (YYYY-MM-DD, inclusive); bad values are a 422.
"""

from datetime import date
from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query

from shared.ads.accounts import normalize_account_id
from shared.ads.stats import DateRange, campaigns_json, stats_body
from shared.platform.errors import InvalidInput
from shared.platform.http import (
    build_resolver,
    current_principal,
    http_response,
    json_response,
    raw_json,
)
from shared.platform.observability import entrypoint

# Postgres connections a container opens (tests/test_connection_budget.py): the
# handler's thread only.
DB_CONNECTIONS = 1

app = build_resolver()

FromDate = Annotated[date | None, Query(alias="from")]
ToDate = Annotated[date | None, Query(alias="to")]


@app.get("/crm/marketing/campaigns")
def list_campaigns(start: FromDate = None, end: ToDate = None,
                   account_id: Annotated[str | None, Query(max_length=32)] = None):
    principal = current_principal(app)
    period = DateRange(start, end)
    account = None
    if account_id is not None:
        try:
            account = normalize_account_id(account_id)
        except ValueError as exc:
            raise InvalidInput("Invalid input: account_id.", details=[
                {"field": "account_id", "problem": str(exc)}]) from None
    return json_response(campaigns_json(principal.tenant_id, period, account))


@app.get("/crm/marketing/stats")
def marketing_stats(start: FromDate = None, end: ToDate = None):
    principal = current_principal(app)
    return raw_json(stats_body(principal.tenant_id, DateRange(start, end), "stats"))


@app.get("/crm/marketing/stats/roi")
def marketing_roi(start: FromDate = None, end: ToDate = None):
    principal = current_principal(app)
    return raw_json(stats_body(principal.tenant_id, DateRange(start, end), "roi"))


@entrypoint
def lambda_handler(event: dict, context) -> dict:
    return http_response(app, event, context)

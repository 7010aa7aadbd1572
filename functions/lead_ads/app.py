"""GET /crm/marketing/leads/ads (member): the leads that came from lead forms, newest first, with
campaign, ad, form and whether a follow-up was sent; cursor paging."""

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query

from shared.leads.listing import DEFAULT_LIMIT, MAX_LIMIT, list_lead_ads
from shared.platform.http import build_resolver, current_principal, http_response
from shared.platform.observability import entrypoint

# Postgres connections a container opens (tests/test_connection_budget.py): the
# handler's thread only.
DB_CONNECTIONS = 1

app = build_resolver()


@app.get("/crm/marketing/leads/ads")
def get_lead_ads(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
):
    principal = current_principal(app)
    return list_lead_ads(principal.tenant_id, limit=limit, cursor=cursor)


@entrypoint
def lambda_handler(event: dict, context) -> dict:
    return http_response(app, event, context)

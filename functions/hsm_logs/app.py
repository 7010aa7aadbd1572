"""GET /crm/marketing/hsm/logs (member): sends by rule, with delivery status; cursor paging."""

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query

from shared.hsm.logs import DEFAULT_LIMIT, MAX_LIMIT, build_filters, list_logs
from shared.platform.http import build_resolver, current_principal, http_response
from shared.platform.observability import entrypoint

# Postgres connections a container opens (tests/test_connection_budget.py): the
# handler's thread only.
DB_CONNECTIONS = 1

app = build_resolver()


@app.get("/crm/marketing/hsm/logs")
def get_logs(
    rule_id: Annotated[str | None, Query()] = None,
    status: Annotated[str | None, Query()] = None,
    date_from: Annotated[str | None, Query(alias="from")] = None,
    date_to: Annotated[str | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
):
    principal = current_principal(app)
    filters = build_filters(rule_id, status, date_from, date_to)
    return list_logs(principal.tenant_id, filters, limit=limit, cursor=cursor)


@entrypoint
def lambda_handler(event: dict, context) -> dict:
    return http_response(app, event, context)

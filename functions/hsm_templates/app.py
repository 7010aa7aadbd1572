"""GET /crm/marketing/hsm/templates (member): synced templates with status and reason."""

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler.openapi.params import Query

from shared.platform.http import build_resolver, current_principal, http_response
from shared.platform.observability import entrypoint
from shared.whatsapp.templates import list_templates

# Postgres connections a container opens (tests/test_connection_budget.py): the
# handler's thread only.
DB_CONNECTIONS = 1

app = build_resolver()

# Meta's template statuses, plus the states its status webhooks report (FLAGGED, LOCKED...).
Status = Literal["APPROVED", "PENDING", "REJECTED", "PAUSED", "DISABLED", "IN_APPEAL",
                 "PENDING_DELETION", "DELETED", "FLAGGED", "LIMIT_EXCEEDED", "ARCHIVED",
                 "LOCKED"]


@app.get("/crm/marketing/hsm/templates")
def get_templates(status: Annotated[Status | None, Query()] = None):
    principal = current_principal(app)
    return list_templates(principal.tenant_id, status)


@entrypoint
def lambda_handler(event: dict, context) -> dict:
    return http_response(app, event, context)

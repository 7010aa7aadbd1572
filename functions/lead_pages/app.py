"""GET /crm/marketing/pages and POST /crm/marketing/pages/connect (admin): the Facebook Pages the
person can advertise on, and connecting one for Lead Ads (shared.leads.pages)."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from shared.leads.pages import connect_page, list_pages
from shared.platform.deadlines import deadline_from_context
from shared.platform.http import build_resolver, current_principal, http_response
from shared.platform.observability import entrypoint

# Postgres connections a container opens (tests/test_connection_budget.py): the
# handler's thread only.
DB_CONNECTIONS = 1

app = build_resolver()
# Checked before the body is validated: a member gets 403, never a 422 about the body.
ADMIN_METHODS = frozenset({"GET", "POST"})


class PageConnectBody(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    page_id: Annotated[str, Field(pattern=r"^\d{1,32}$", description="The Page's numeric id")]


@app.get("/crm/marketing/pages")
def get_pages():
    principal = current_principal(app, admin=True)
    return {"pages": list_pages(principal.tenant_id, deadline_from_context(app.lambda_context))}


@app.post("/crm/marketing/pages/connect")
def post_connect(body: PageConnectBody):
    principal = current_principal(app, admin=True)
    return connect_page(principal.tenant_id, principal.user_id, body.page_id,
                        deadline_from_context(app.lambda_context))


@entrypoint
def lambda_handler(event: dict, context) -> dict:
    return http_response(app, event, context, admin_methods=ADMIN_METHODS)

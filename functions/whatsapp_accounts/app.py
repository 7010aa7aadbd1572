"""GET /crm/marketing/whatsapp-accounts (admin): WABAs and phone numbers the token can use."""

from shared.connection.session import tenant_graph
from shared.platform.deadlines import deadline_from_context
from shared.platform.http import build_resolver, current_principal, http_response
from shared.platform.observability import entrypoint, logger
from shared.whatsapp.accounts import list_accounts

# Postgres connections a container opens (tests/test_connection_budget.py): the
# handler's thread only.
DB_CONNECTIONS = 1

app = build_resolver()


@app.get("/crm/marketing/whatsapp-accounts")
def get_whatsapp_accounts():
    principal = current_principal(app, admin=True)
    with tenant_graph(principal.tenant_id, deadline_from_context(app.lambda_context)) as graph:
        accounts = list_accounts(graph)
    logger.info("whatsapp_accounts_listed", extra={"tenant_id": principal.tenant_id,
                                                   "accounts": len(accounts)})
    return {"accounts": accounts}


@entrypoint
def lambda_handler(event: dict, context) -> dict:
    return http_response(app, event, context)

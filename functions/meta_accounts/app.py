"""GET /crm/marketing/meta-accounts: every ad account the tenant's Meta token can use (admin)."""

from shared.ads.accounts import wizard_accounts
from shared.platform.deadlines import deadline_from_context
from shared.platform.http import build_resolver, current_principal, http_response
from shared.platform.observability import entrypoint

# Postgres connections a container opens (tests/test_connection_budget.py): the
# handler's thread only.
DB_CONNECTIONS = 1

app = build_resolver()


@app.get("/crm/marketing/meta-accounts")
def list_meta_accounts():
    principal = current_principal(app, admin=True)
    deadline = deadline_from_context(app.lambda_context)
    return {"accounts": wizard_accounts(principal.tenant_id, deadline)}


@entrypoint
def lambda_handler(event: dict, context) -> dict:
    return http_response(app, event, context)

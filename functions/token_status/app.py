"""GET /crm/marketing/token-status (member): the Meta connection's health, from the database
only (no Meta call): status, expires_at, scopes, missing_scopes. Never the token."""

from shared.connection.status import token_status
from shared.platform.http import build_resolver, current_principal, http_response
from shared.platform.observability import entrypoint

# Postgres connections a container opens (tests/test_connection_budget.py): the
# handler's thread only.
DB_CONNECTIONS = 1

app = build_resolver()


@app.get("/crm/marketing/token-status")
def get_token_status():
    principal = current_principal(app)
    return token_status(principal.tenant_id)


@entrypoint
def lambda_handler(event: dict, context) -> dict:
    return http_response(app, event, context)

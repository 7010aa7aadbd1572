"""Token refresh: the hourly EventBridge Scheduler run over every tenant, and
POST /crm/auth/meta/refresh-tokens (admin: this tenant only, now).

One function serves both because both are the same job (shared.connection.token_refresh) with
the same permissions (KMS, the database, Meta, EventBridge); the event's shape says which: an API
Gateway payload 2.0 carries requestContext.http, a scheduled event (EventBridge "Scheduled Event"
or the Scheduler's input) does not. Both answer the contract's summary
{"checked", "refreshed", "failed", "needs_reconnect"}. Events are never logged.
"""

from shared.connection.token_refresh import DB_WORKERS, refresh_tenant_now, run_scheduled
from shared.platform.http import build_resolver, current_principal, http_response
from shared.platform.observability import entrypoint, logger

# A run's Postgres threads, and the handler's own thread (the listing, a manual refresh).
DB_CONNECTIONS = DB_WORKERS + 1

app = build_resolver()


@app.post("/crm/auth/meta/refresh-tokens")
def refresh_now():
    principal = current_principal(app, admin=True)
    return refresh_tenant_now(principal.tenant_id, app.lambda_context)


def is_http_event(event: object) -> bool:
    context = event.get("requestContext") if isinstance(event, dict) else None
    return isinstance(context, dict) and "http" in context


@entrypoint
def lambda_handler(event: dict, context) -> dict:
    if is_http_event(event):
        return http_response(app, event, context)
    # A schedule tick carries no parameters: there is nothing in it to trust or validate.
    source = event.get("source") if isinstance(event, dict) else None
    logger.info("token_refresh_triggered", extra={"source": str(source)[:64] if source else None})
    return run_scheduled(context)

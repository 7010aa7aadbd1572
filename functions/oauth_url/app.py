"""GET /crm/auth/meta/url: the Meta login dialog URL for this tenant (admin only)."""

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.shared.cookies import Cookie, SameSite

from shared.connection.oauth_dialog import dialog_url
from shared.connection.oauth_state import (
    BINDING_COOKIE,
    BINDING_COOKIE_PATH,
    STATE_TTL_SECONDS,
    create_state,
)
from shared.platform.http import build_resolver, current_principal, http_response
from shared.platform.observability import entrypoint, logger

# OAuth state lives in DynamoDB: this function never connects to Postgres.
DB_CONNECTIONS = 0

app = build_resolver()


@app.get("/crm/auth/meta/url")
def get_dialog_url():
    principal = current_principal(app, admin=True)
    new = create_state(principal.tenant_id, principal.user_id)
    logger.info("oauth_started", extra={"tenant_id": principal.tenant_id})
    cookie = Cookie(
        name=BINDING_COOKIE,
        value=new.binding,
        path=BINDING_COOKIE_PATH,
        secure=True,
        http_only=True,
        same_site=SameSite.LAX_MODE,
        max_age=STATE_TTL_SECONDS,
    )
    return Response(
        status_code=200,
        content_type="application/json",
        body={"url": dialog_url(new.state, new.code_challenge), "state": new.state},
        cookies=[cookie],
    )


@entrypoint
def lambda_handler(event: dict, context) -> dict:
    return http_response(app, event, context)

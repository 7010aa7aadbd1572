"""GET /crm/auth/meta/callback: Meta sends the browser here after the login dialog.

Always a 302 to FRONTEND_URL (success=connected or error=<code>), never a 5xx, never anywhere
else; the browser-binding cookie is cleared whatever happened. The event is never logged: its
query string holds the OAuth code and state.
"""

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.shared.cookies import Cookie, SameSite

from shared.connection.oauth_connect import CallbackInput, complete_connection
from shared.connection.oauth_dialog import result_url
from shared.connection.oauth_state import BINDING_COOKIE, BINDING_COOKIE_PATH
from shared.platform.deadlines import deadline_from_context
from shared.platform.http import build_resolver, http_response
from shared.platform.observability import entrypoint

# Postgres connections a container opens (tests/test_connection_budget.py): the
# handler's thread only.
DB_CONNECTIONS = 1

app = build_resolver()

_EXPIRED_BINDING = Cookie(
    name=BINDING_COOKIE,
    value="",
    path=BINDING_COOKIE_PATH,
    secure=True,
    http_only=True,
    same_site=SameSite.LAX_MODE,
    max_age=0,
)


def binding_values(cookies: list[str] | None) -> tuple[str, ...]:
    """Every binding cookie value the browser sent (payload 2.0 lists cookies as name=value)."""
    values = []
    for cookie in cookies or []:
        name, sep, value = cookie.strip().partition("=")
        if sep and name.strip() == BINDING_COOKIE:
            values.append(value.strip())
    return tuple(values)


@app.get("/crm/auth/meta/callback")
def meta_callback():
    event = app.current_event
    # Untyped on purpose: whatever arrives, the answer is a redirect, not a 422.
    query = event.query_string_parameters or {}
    outcome = complete_connection(
        CallbackInput(
            state=query.get("state"),
            code=query.get("code"),
            error=query.get("error"),
            bindings=binding_values(event.cookies),
        ),
        # Meta gets the time left minus 5 s, so KMS, Postgres and the 302 always fit after it.
        deadline=deadline_from_context(app.lambda_context, reserve_seconds=5.0),
    )
    return Response(
        status_code=302,
        headers={
            "Location": result_url(outcome.error, outcome.missing),
            "Cache-Control": "no-store",
        },
        cookies=[_EXPIRED_BINDING],
    )


@entrypoint
def lambda_handler(event: dict, context) -> dict:
    return http_response(app, event, context)

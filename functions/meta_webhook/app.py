"""GET/POST /crm/webhooks/meta: Meta's verification handshake, signed WhatsApp updates and Lead
Ads notifications (`object: "page"`, queued for the lead reader: shared.leads.notifications).

No JWT here (Meta calls it): the GET is gated by the verify token (META_VERIFY_TOKEN locally,
the META_VERIFY_TOKEN_ARN secret in AWS), every POST by its X-Hub-Signature-256 over the raw
body. The event is never logged.
"""

from aws_lambda_powertools.event_handler import Response

from shared.leads import notifications
from shared.platform.http import build_resolver, http_response
from shared.platform.observability import entrypoint
from shared.platform.settings import get_settings
from shared.whatsapp import webhook

# Postgres connections a container opens (tests/test_connection_budget.py): the
# handler's thread only.
DB_CONNECTIONS = 1

app = build_resolver()


@app.get("/crm/webhooks/meta")
def verify():
    params = app.current_event.query_string_parameters or {}
    challenge = webhook.verify_subscription(params, get_settings().verify_token())
    return Response(status_code=200, content_type="text/plain", body=challenge)


@app.post("/crm/webhooks/meta")
def receive():
    event = app.current_event.raw_event
    raw = webhook.raw_body(event)
    webhook.check_size(raw)
    webhook.check_signature(raw, webhook.header(event, webhook.SIGNATURE_HEADER),
                                 get_settings().app_secret())
    return {"received": webhook.receive(raw, routes={"page": notifications.receive})}


@entrypoint
def lambda_handler(event: dict, context) -> dict:
    # The body is read by `receive` itself, after its signature over the raw bytes is checked.
    return http_response(app, event, context, read_body=False)

"""GET/POST /crm/webhooks/meta: Meta's verification handshake and signed WhatsApp updates.

No JWT here (Meta calls it): the GET is gated by META_VERIFY_TOKEN, every POST by its
X-Hub-Signature-256 over the raw body. The event is never logged.
"""

from aws_lambda_powertools.event_handler import Response

from shared import webhook_meta
from shared.api import build_resolver, http_response
from shared.observability import entrypoint
from shared.settings import get_settings

app = build_resolver()


@app.get("/crm/webhooks/meta")
def verify():
    token = get_settings().meta_verify_token
    params = app.current_event.query_string_parameters or {}
    challenge = webhook_meta.verify_subscription(
        params, token.get_secret_value() if token else None)
    return Response(status_code=200, content_type="text/plain", body=challenge)


@app.post("/crm/webhooks/meta")
def receive():
    event = app.current_event.raw_event
    raw = webhook_meta.raw_body(event)
    webhook_meta.check_size(raw)
    webhook_meta.check_signature(raw, webhook_meta.header(event, webhook_meta.SIGNATURE_HEADER),
                                 get_settings().app_secret())
    return {"received": webhook_meta.process(webhook_meta.parse(raw))}


@entrypoint
def lambda_handler(event: dict, context) -> dict:
    return http_response(app, event, context)

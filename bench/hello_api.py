"""GET /crm/bench/hello (served only by bench/serve.py): the API-load baseline.

The same edge as every real route (resolver with validation, claims, the one error mapping,
security headers, the entrypoint decorator stack) and no work behind it: its latency under the
same load is what the platform costs before any query runs.
"""

from shared.platform.http import build_resolver, current_principal, http_response
from shared.platform.observability import entrypoint

app = build_resolver()


@app.get("/crm/bench/hello")
def hello():
    principal = current_principal(app)
    return {"hello": principal.tenant_id}


@entrypoint
def lambda_handler(event: dict, context) -> dict:
    return http_response(app, event, context)

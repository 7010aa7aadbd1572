"""One OpenAPI document for the whole HTTP API, built from the code: the functions' Powertools
resolvers, template.yaml's HttpApi routes and devstack/openapi_schemas.py.

Every function module that template.yaml routes to (its HttpApi events) is imported, and its
module-level `app` resolver describes its own routes (`app.get_openapi_schema()`: paths,
parameters, request bodies). The paths are merged, then each operation is completed with what
the resolvers cannot know:

- from devstack/openapi_schemas.py: a summary and description, its area (tag), the success
  status and body schema with an example (201/204 where a route answers so), who may call it;
- security: the bearer JWT scheme on every route behind the authorizer, none on the routes Meta
  calls (the OAuth callback and the webhook);
- responses: only the errors the operation can give, in the contract's error body
  (`{"error": {"code", "message"}}`), with API Gateway's own `{"message"}` where the gateway
  itself answers (401 from the JWT authorizer, 413); body errors (413, 415) only where there is
  a body; `default` everywhere;
- the parameters a handler reads untyped from the raw event (Meta's redirect and webhook query
  strings, the webhook's signature header and body).

Only operations that template.yaml actually routes are published: a resolver route without an
HttpApi event is unreachable behind API Gateway, and a template route without a resolver
operation is published bare, so a fuzzer finds the hole.

The document is committed as docs/openapi.json: `make openapi` writes it (`python -m
devstack.openapi`), tests/test_openapi_document.py fails when it is out of date. The local API
serves it at GET /openapi.json and renders it at /docs (devstack/api_docs.py).
"""

from __future__ import annotations

import copy
import importlib
import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from werkzeug.wrappers import Request, Response

from devstack import api_docs
from devstack.openapi_schemas import ADMIN_ONLY, OPERATIONS, TAGS, Operation
from devstack.template import HttpRoute, http_routes

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "docs" / "openapi.json"
STALE_MESSAGE = ("docs/openapi.json is out of date with the code (a route, a resolver's "
                 "parameters or body, template.yaml or devstack/openapi_schemas.py changed): run "
                 "`make openapi` and commit docs/openapi.json.")
DESCRIPTION = (
    "The Marketing Hub's HTTP API for the CRM Ventas frontend: connect Meta by OAuth, pick an "
    "ad account and read campaign results and ROI, connect a WhatsApp number, and automate "
    "template messages (HSM) with rules.\n\n"
    "Every route but Meta's (the OAuth callback and the webhook) needs the CRM's JWT in "
    "`Authorization: Bearer`; the tenant and role come only from its claims. Errors are "
    "`{\"error\": {\"code\", \"message\"}}` (422 adds `details`). CORS allows the CRM "
    "frontend's origin (template parameter FrontendUrl) with credentials.\n\n"
    "Generated from the code (devstack/openapi.py); locally, `make dev` serves it at "
    "/openapi.json and renders it at /docs.")
OPENAPI_PATH = "/openapi.json"
TITLE = "CRM Ventas Marketing Hub API"
VERSION = "1.0.0"

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
GATEWAY_REF = {"$ref": "#/components/schemas/GatewayMessage"}
ERROR_OR_GATEWAY = {"anyOf": [ERROR_REF, GATEWAY_REF]}

COMPONENT_SCHEMAS: dict[str, Any] = {
    "ErrorBody": {
        "title": "ErrorBody",
        "description": "The contract's error body. `details` lists the offending fields of a "
                       "422.",
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "additionalProperties": False,
                "properties": {
                    "code": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
                    "message": {"type": "string", "minLength": 1},
                    "details": {"type": "array", "items": {"type": "object"}},
                },
            },
        },
    },
    "GatewayMessage": {
        "title": "GatewayMessage",
        "description": "API Gateway's own answer (JWT authorizer 401, unroutable path 404, "
                       "payload over 10 MB 413), given before any function runs.",
        "type": "object",
        "required": ["message"],
        "additionalProperties": False,
        "properties": {"message": {"type": "string"}},
    },
}

# Parameters the handlers read from the raw event (untyped on purpose: Meta sends them).
_OPTIONAL_QUERY = {"in": "query", "required": False, "schema": {"type": "string"}}
EXTRA_PARAMETERS: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("GET", "/crm/auth/meta/callback"): [
        {**_OPTIONAL_QUERY, "name": name}
        for name in ("code", "state", "error", "error_reason", "error_description",
                     "error_code")
    ],
    ("GET", "/crm/webhooks/meta"): [
        {**_OPTIONAL_QUERY, "name": name}
        for name in ("hub.mode", "hub.verify_token", "hub.challenge")
    ],
    ("POST", "/crm/webhooks/meta"): [
        {"name": "X-Hub-Signature-256", "in": "header", "required": False,
         "schema": {"type": "string"},
         "description": "sha256=<hex HMAC-SHA256 of the raw body with the app secret>"},
    ],
}
EXTRA_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/crm/webhooks/meta"): {
        "required": False,
        "content": {"application/json": {"schema": {
            "type": "object",
            "properties": {"object": {"type": "string"}, "entry": {"type": "array"}},
        }}},
    },
}


# OpenAPI links: where a created resource's id is used next (documents the flow, and lets a
# stateful fuzzer chain the calls). (METHOD, path, status) -> {link name: (METHOD, path, params)}.
LINKS: dict[tuple[str, str, str], dict[str, tuple[str, str, dict[str, str]]]] = {
    ("POST", "/crm/marketing/hsm/rules", "201"): {
        "UpdateRule": ("PATCH", "/crm/marketing/hsm/rules/{rule_id}",
                       {"rule_id": "$response.body#/id"}),
        "DeleteRule": ("DELETE", "/crm/marketing/hsm/rules/{rule_id}",
                       {"rule_id": "$response.body#/id"}),
    },
}

# Request examples (the contract's own example rule), so a fuzzer's first case is a real one.
REQUEST_EXAMPLES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/crm/marketing/hsm/rules"): {
        "name": "Follow-up Leads 24h", "trigger_type": "lead_followup", "delay_hours": 24,
        "template_name": "lead_followup_es", "language": "es", "body_params": ["first_name"],
        "enabled": True,
    },
    ("PATCH", "/crm/marketing/hsm/rules/{rule_id}"): {"enabled": False},
    ("POST", "/crm/marketing/whatsapp/connect"): {"waba_id": "8001", "phone_number_id": "9001"},
    # A delivery status for a number no tenant connected (webhooks/reference/messages/status).
    ("POST", "/crm/webhooks/meta"): {
        "object": "whatsapp_business_account",
        "entry": [{"id": "0", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": "0"},
            "statuses": [{"id": "wamid.example", "status": "delivered",
                          "timestamp": "1760000000", "recipient_id": "15550000001"}]}}]}],
    },
}

SERVERS = [
    {"url": "http://127.0.0.1:3000",
     "description": "make dev: the local stack (PORT=... picks another port)"},
    {"url": "https://{apiId}.execute-api.{region}.amazonaws.com",
     "description": "A deployed stack: its ApiUrl output",
     "variables": {"apiId": {"default": "abcde12345", "description": "The HttpApi's id"},
                   "region": {"default": "us-east-1"}}},
]

# status -> (description, schema, example error code, example message)
ERRORS: dict[str, tuple[str, dict[str, Any], str, str]] = {
    "400": ("Meta denies this account, number or Page to the tenant's token "
            "(account_not_accessible, page_not_accessible)", ERROR_REF, "account_not_accessible",
            "Meta does not let this connection use that account."),
    "401": ("No valid sign-in: the gateway's JWT authorizer ({\"message\": \"Unauthorized\"}) "
            "or no usable tenant claim", ERROR_OR_GATEWAY, "unauthorized",
            "A valid sign-in is required."),
    "403": ("Not allowed: the route needs the admin role (the webhook: a wrong verify token)",
            ERROR_REF, "forbidden",
            "This action needs the admin role."),
    "404": ("No such rule for this tenant (another tenant's ids are not found either)",
            ERROR_REF, "not_found", "Rule not found."),
    "409": ("Conflicts with the current state: meta_not_connected, meta_reconnect_required, "
            "whatsapp_not_connected, missing_scopes (Lead Ads' permissions not granted), "
            "page_unavailable, or conflict (e.g. the name is taken)", ERROR_REF,
            "meta_not_connected", "Connect Meta first."),
    "413": ("Body too large (API Gateway's limit answers {\"message\"})", ERROR_OR_GATEWAY,
            "payload_too_large", "The body is too large."),
    "415": ("The body is not JSON (send Content-Type: application/json)", ERROR_REF,
            "unsupported_media_type", "Send the body as JSON (Content-Type: application/json)."),
    "422": ("Invalid input; `details` lists each field and its problem", ERROR_REF,
            "validation_error", "Invalid input: delay_hours."),
    "429": ("Meta is rate limiting this account: retry after Retry-After seconds", ERROR_REF,
            "meta_rate_limited", "Meta is limiting requests. Try again in a few minutes."),
    "502": ("Meta could not be reached or failed (meta_error)", ERROR_REF, "meta_error",
            "Meta did not answer. Try again later."),
}


def _error(status: str) -> dict[str, Any]:
    description, schema, code, message = ERRORS[status]
    example: dict[str, Any] = {"error": {"code": code, "message": message}}
    if status == "422":
        example["error"]["details"] = [{"field": "delay_hours",
                                        "problem": "Input should be less than or equal to 720"}]
    response = {"description": description,
                "content": {"application/json": {"schema": schema, "example": example}}}
    if status == "429":
        response["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
    return response


def _success(route: HttpRoute, op: Operation | None) -> tuple[str, dict[str, Any]]:
    if op is None:  # a route nobody described yet: tests/test_openapi_document.py says so
        return "200", {"description": "Success (undescribed: add this route to "
                                      "devstack/openapi_schemas.py)",
                       "content": {"application/json": {"schema": {"type": "object"}}}}
    if op.status == "302":
        return "302", {"description": "Back to the frontend with success=connected or "
                                      "error=<code>",
                       "headers": {"Location": {"required": True,
                                                "schema": {"type": "string"},
                                                "example": "https://crm.example.com/crm/"
                                                           "marketing?success=connected"}}}
    if op.schema is None:
        return op.status, {"description": "Done (no body)"}
    media: dict[str, Any] = {"schema": op.schema}
    if op.example is not None:
        media["example"] = op.example
    return op.status, {"description": op.summary, "content": {op.media: media}}


def _responses(route: HttpRoute, op: Operation | None, *, has_input: bool,
               has_body: bool) -> dict[str, Any]:
    """The success answer, then only the errors this operation can give: a GET has no body
    errors (413, 415), a route without input no 422, a member route no 403."""
    status, success = _success(route, op)
    codes = set(op.errors if op else ())
    if route.authorized:
        codes.add("401")
    if (route.method, route.path) in ADMIN_ONLY:
        codes.add("403")
    if has_input and status != "302":  # the OAuth callback redirects, whatever arrives
        codes.add("422")
    if has_body:
        codes.update({"413", "415"})
    responses = {status: success, **{code: _error(code) for code in sorted(codes)}}
    responses["default"] = {"description": "Any other error, in the contract's body",
                            "content": {"application/json": {"schema": ERROR_REF}}}
    return responses


def _complete(operation: dict[str, Any], route: HttpRoute) -> dict[str, Any]:
    op = copy.deepcopy(operation)
    key = (route.method, route.path)
    described = OPERATIONS.get(key)
    op["security"] = [{"bearerAuth": []}] if route.authorized else []
    known = {(p["name"], p["in"]) for p in op.get("parameters", [])}
    extra = [p for p in EXTRA_PARAMETERS.get(key, []) if (p["name"], p["in"]) not in known]
    if extra:
        op["parameters"] = [*op.get("parameters", []), *extra]
    if described is not None:
        for name, value in described.extra.items():
            op.setdefault(name, copy.deepcopy(value))
    if key in EXTRA_BODIES and "requestBody" not in op:
        op["requestBody"] = copy.deepcopy(EXTRA_BODIES[key])
    example = REQUEST_EXAMPLES.get(key)
    media = op.get("requestBody", {}).get("content", {}).get("application/json")
    if example is not None and media is not None:
        media["example"] = example
    op["responses"] = _responses(route, described, has_input=bool(op.get("parameters"))
                                 or "requestBody" in op, has_body="requestBody" in op)
    if described is not None:
        op["operationId"] = described.operation_id
        op["tags"] = [described.tag]
        op["summary"] = described.summary
        op["description"] = described.description
    else:
        op["operationId"] = f"{route.function}_{route.method.lower()}"
        op["tags"] = ["Undescribed"]
        op["summary"] = f"{route.method} {route.path}"
    if (route.method, route.path) in ADMIN_ONLY:
        op["description"] = f"{op.get('description', '')}\n\nAdmin only.".strip()
    return op


def _resolver_document(module: str) -> dict[str, Any]:
    app = importlib.import_module(module).app
    schema = app.get_openapi_schema(title=TITLE, version=VERSION)
    return schema.model_dump(mode="json", by_alias=True, exclude_none=True)


_POWERTOOLS_ERRORS = frozenset({"HTTPValidationError", "ValidationError",
                                "ResponseValidationError"})


def build_document(routes: list[HttpRoute] | None = None) -> dict[str, Any]:
    """The merged document for template.yaml's HttpApi routes (see the module docstring)."""
    routes = http_routes() if routes is None else routes
    parts = {module: _resolver_document(module) for module in sorted({r.module for r in routes})}
    schemas: dict[str, Any] = {}
    for module, part in parts.items():
        for name, schema in part.get("components", {}).get("schemas", {}).items():
            if name in _POWERTOOLS_ERRORS:
                continue  # replaced by the contract's error body
            if name in schemas and schemas[name] != schema:
                raise ValueError(f"{module}: schema {name!r} differs from another function's")
            schemas[name] = schema
    paths: dict[str, dict[str, Any]] = {}
    # In the order a frontend meets them (OPERATIONS' order), routes not described yet last.
    order = {key: n for n, key in enumerate(OPERATIONS)}
    for route in sorted(routes, key=lambda r: (order.get((r.method, r.path), len(order)),
                                               r.path, r.method)):
        resolver_paths = parts[route.module].get("paths", {})
        operation = resolver_paths.get(route.path, {}).get(route.method.lower(), {})
        paths.setdefault(route.path, {})[route.method.lower()] = _complete(operation, route)
    _add_links(paths)
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION, "description": DESCRIPTION},
        "servers": SERVERS,
        "tags": TAGS,
        "paths": paths,
        "components": {
            "schemas": dict(sorted({**schemas, **COMPONENT_SCHEMAS}.items())),
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "The CRM's sign-in token, with the claims custom:tenant_id and "
                               "custom:role. Locally: POST /__dev/session (docs/LOCAL_DEV.md)."}},
        },
        "security": [{"bearerAuth": []}],
    }


def _add_links(paths: dict[str, dict[str, Any]]) -> None:
    for (method, path, status), links in LINKS.items():
        response = paths.get(path, {}).get(method.lower(), {}).get("responses", {}).get(status)
        if response is None:
            continue
        for name, (target_method, target_path, parameters) in links.items():
            target = paths.get(target_path, {}).get(target_method.lower())
            if target is not None:
                response.setdefault("links", {})[name] = {
                    "operationId": target["operationId"], "parameters": parameters}


def document_text(document: dict[str, Any] | None = None) -> str:
    """The document as committed in docs/openapi.json (stable key order, one trailing newline)."""
    return json.dumps(build_document() if document is None else document, indent=2,
                      ensure_ascii=False) + "\n"


_cache: dict[str, dict[str, Any]] = {}
_lock = threading.Lock()


def serve(request: Request) -> Response:
    """The document, built once per process (the template and the resolvers do not change
    while a stack runs), with this local API as its first server."""
    with _lock:
        if "doc" not in _cache:
            _cache["doc"] = build_document()
        document = dict(_cache["doc"])
    here = f"{request.scheme}://{request.host}"
    document["servers"] = [{"url": here, "description": "This local stack (make dev)"},
                           *SERVERS[1:]]
    return Response(json.dumps(document, indent=1, ensure_ascii=False), status=200,
                    content_type="application/json", headers={"Cache-Control": "no-store"})


def routes() -> dict[str, Callable[[Request], Response]]:
    """The local API's extra routes: the document and its rendered reference (/docs)."""
    return {OPENAPI_PATH: serve, **api_docs.routes()}


def main(argv: list[str]) -> int:
    """`make openapi`: write docs/openapi.json; `--check`: exit 1 when it is out of date."""
    text = document_text()
    if "--check" in argv:
        if not COMMITTED.is_file() or COMMITTED.read_text() != text:
            print(STALE_MESSAGE, file=sys.stderr)
            return 1
        return 0
    if "--stdout" in argv:
        sys.stdout.write(text)
        return 0
    COMMITTED.write_text(text)
    print(f"wrote {COMMITTED} ({len(json.loads(text)['paths'])} paths)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

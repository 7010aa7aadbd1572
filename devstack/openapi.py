"""One OpenAPI document for the whole HTTP API, built from the functions' Powertools resolvers.

Every function module that template.yaml routes to (its HttpApi events) is imported, and its
module-level `app` resolver describes its own routes (`app.get_openapi_schema()`: paths,
parameters, request bodies). The paths are merged, then each operation is completed with what
the resolvers cannot know:

- security: the bearer JWT scheme on every route behind the authorizer, none on the routes Meta
  calls (the OAuth callback and the webhook);
- responses: the contract's error body (`{"error": {"code", "message"}}`) for 401, 403, 404,
  409, 413, 422, 429 and as the `default`; API Gateway's own `{"message"}` answers where the
  gateway itself can answer (401 from the JWT authorizer, 404 for a path it cannot route, 413);
  the success status and body shape the contract defines (201/204 where a route answers so);
- the parameters a handler reads untyped from the raw event (Meta's redirect and webhook query
  strings, the webhook's signature header and body).

Only operations that template.yaml actually routes are published: a resolver route without an
HttpApi event is unreachable behind API Gateway, and a template route without a resolver
operation is published bare, so a fuzzer finds the hole.

The local API serves the document at GET /openapi.json (`routes()`); `python -m devstack.openapi`
prints it.
"""

from __future__ import annotations

import copy
import importlib
import json
import threading
from collections.abc import Callable
from typing import Any

from werkzeug.wrappers import Request, Response

from devstack.template import HttpRoute, http_routes

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

_NULLABLE_STRING = {"type": ["string", "null"]}
_STRINGS = {"type": "array", "items": {"type": "string"}}

RULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "name", "trigger_type", "delay_hours", "template_name", "language",
                 "enabled"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "name": {"type": "string"},
        "trigger_type": {"const": "lead_followup"},
        "delay_hours": {"type": "integer", "minimum": 1, "maximum": 720},
        "template_name": {"type": "string"},
        "language": {"type": "string"},
        "enabled": {"type": "boolean"},
    },
}

# Success answers as CONTRACT.md defines them, by (METHOD, path): (status, schema or None for
# an empty body). Routes not listed answer 200 with a JSON object.
SUCCESS: dict[tuple[str, str], tuple[str, dict[str, Any] | None]] = {
    ("GET", "/crm/auth/meta/url"): ("200", {
        "type": "object", "required": ["url", "state"],
        "properties": {"url": {"type": "string", "minLength": 1},
                       "state": {"type": "string", "minLength": 1}},
    }),
    ("GET", "/crm/marketing/meta-accounts"): ("200", {
        "type": "object", "required": ["accounts"],
        "properties": {"accounts": {"type": "array", "items": {
            "type": "object",
            "required": ["id", "name", "type", "business_manager_id", "business_manager_name",
                         "currency", "timezone", "status", "can_run_ads", "amount_spent",
                         "balance"],
            "properties": {
                "id": {"type": "string", "pattern": "^act_[0-9]+$"},
                "name": {"type": "string"},
                "type": {"const": "AD_ACCOUNT"},
                "business_manager_id": _NULLABLE_STRING,
                "business_manager_name": _NULLABLE_STRING,
                "can_run_ads": {"type": "boolean"},
            },
        }}},
    }),
    ("POST", "/crm/marketing/connect"): ("200", {
        "type": "object", "required": ["status", "account_id", "account_name", "message"],
        "properties": {"status": {"const": "connected"},
                       "account_id": {"type": "string"},
                       "account_name": {"type": "string"},
                       "message": {"type": "string"}},
    }),
    ("GET", "/crm/marketing/token-status"): ("200", {
        "type": "object", "required": ["status", "expires_at", "scopes", "missing_scopes"],
        "properties": {
            "status": {"enum": ["not_connected", "active", "expiring", "needs_reconnect"]},
            "expires_at": _NULLABLE_STRING,
            "scopes": _STRINGS,
            "missing_scopes": _STRINGS,
        },
    }),
    ("POST", "/crm/auth/meta/refresh-tokens"): ("200", {
        "type": "object", "required": ["checked", "refreshed", "failed", "needs_reconnect"],
        "properties": {name: {"type": "integer", "minimum": 0}
                       for name in ("checked", "refreshed", "failed", "needs_reconnect")},
    }),
    ("GET", "/crm/marketing/whatsapp-accounts"): ("200", {
        "type": "object", "required": ["accounts"],
        "properties": {"accounts": {"type": "array"}},
    }),
    ("GET", "/crm/marketing/hsm/rules"): ("200", {
        "type": "object", "required": ["rules"],
        "properties": {"rules": {"type": "array", "items": RULE_SCHEMA}},
    }),
    ("POST", "/crm/marketing/hsm/rules"): ("201", RULE_SCHEMA),
    ("PATCH", "/crm/marketing/hsm/rules/{rule_id}"): ("200", RULE_SCHEMA),
    ("DELETE", "/crm/marketing/hsm/rules/{rule_id}"): ("204", None),
    ("GET", "/crm/webhooks/meta"): ("200", {"type": "string"}),
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


def _error(description: str, schema: dict[str, Any] = ERROR_REF) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _responses(route: HttpRoute) -> dict[str, Any]:
    key = (route.method, route.path)
    if key == ("GET", "/crm/auth/meta/callback"):
        # Always a redirect to FRONTEND_URL, whatever arrives (CONTRACT.md).
        return {"302": {"description": "Back to the frontend with success=connected or "
                                       "error=<code>",
                        "headers": {"Location": {"required": True,
                                                 "schema": {"type": "string"}}}}}
    status, schema = SUCCESS.get(key, ("200", {"type": "object"}))
    if schema is None:
        success: dict[str, Any] = {"description": "Done (no body)"}
    else:
        media = "text/plain" if schema.get("type") == "string" else "application/json"
        success = {"description": "Success", "content": {media: {"schema": schema}}}
    unauthorized = ERROR_OR_GATEWAY if route.authorized else ERROR_REF
    return {
        status: success,
        "401": _error("No valid sign-in (or a bad webhook signature)", unauthorized),
        "403": _error("Not allowed (admin route, wrong verify token)"),
        "404": _error("Not found, or another tenant's", ERROR_OR_GATEWAY),
        "409": _error("Conflicts with the current state (e.g. meta_not_connected)"),
        "413": _error("Body too large", ERROR_OR_GATEWAY),
        "415": _error("The body is not JSON"),
        "422": _error("Invalid input; details lists the fields"),
        "429": {**_error("Meta is rate limiting this account"),
                "headers": {"Retry-After": {"schema": {"type": "string"}}}},
        "default": _error("Any other error, in the contract's body"),
    }


def _complete(operation: dict[str, Any], route: HttpRoute) -> dict[str, Any]:
    op = copy.deepcopy(operation)
    key = (route.method, route.path)
    op["security"] = [{"bearerAuth": []}] if route.authorized else []
    known = {(p["name"], p["in"]) for p in op.get("parameters", [])}
    extra = [p for p in EXTRA_PARAMETERS.get(key, []) if (p["name"], p["in"]) not in known]
    if extra:
        op["parameters"] = [*op.get("parameters", []), *extra]
    if key in EXTRA_BODIES and "requestBody" not in op:
        op["requestBody"] = copy.deepcopy(EXTRA_BODIES[key])
    example = REQUEST_EXAMPLES.get(key)
    media = op.get("requestBody", {}).get("content", {}).get("application/json")
    if example is not None and media is not None:
        media["example"] = example
    op["responses"] = _responses(route)
    op.setdefault("operationId", f"{route.function}_{route.method.lower()}")
    op.setdefault("summary", f"{route.method} {route.path}")
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
    for route in sorted(routes, key=lambda r: (r.path, r.method)):
        resolver_paths = parts[route.module].get("paths", {})
        operation = resolver_paths.get(route.path, {}).get(route.method.lower(), {})
        paths.setdefault(route.path, {})[route.method.lower()] = _complete(operation, route)
    _add_links(paths)
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION,
                 "description": "Generated from the functions' Powertools resolvers and "
                                "template.yaml's HttpApi routes (devstack/openapi.py)."},
        "paths": paths,
        "components": {
            "schemas": {**schemas, **COMPONENT_SCHEMAS},
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "bearerFormat": "JWT"}},
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


_cache: dict[str, str] = {}
_lock = threading.Lock()


def document_json() -> str:
    """The document, built once per process (the template and the resolvers do not change
    while a stack runs)."""
    with _lock:
        if "doc" not in _cache:
            _cache["doc"] = json.dumps(build_document(), indent=1)
        return _cache["doc"]


def serve(_request: Request) -> Response:
    return Response(document_json(), status=200, content_type="application/json",
                    headers={"Cache-Control": "no-store"})


def routes() -> dict[str, Callable[[Request], Response]]:
    """The local API's extra route serving the document."""
    return {OPENAPI_PATH: serve}


if __name__ == "__main__":
    print(json.dumps(build_document(), indent=2))

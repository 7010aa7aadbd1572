"""The HTTP edge every API function shares: resolver, principal, error mapping, headers.

Errors become the contract's body `{"error": {"code", "message"}}` here and nowhere else.
Security headers and CORS are added to the final response (`http_response`), so errors, 404s and
validation failures carry them too.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from shared.platform.auth import Principal, principal_from_claims, require_admin
from shared.platform.errors import AppError, MetaUnavailable, NotFound, UpstreamError
from shared.platform.json_input import UnreadableJson, loads
from shared.platform.observability import count_unhandled_error, logger
from shared.platform.settings import get_settings

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "Referrer-Policy": "no-referrer",
}


def error_response(status: int, code: str, message: str, *, details: list | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return Response(status_code=status, content_type="application/json",
                    body=json.dumps({"error": error}), headers=headers or {})


def json_response(payload: Any, status: int = 200) -> Response:
    """A large JSON answer serialized once, by the C encoder. A route returning a dict has
    Powertools walk it with its Python `jsonable_encoder` first (validation mode): ~25 ms for
    a 1,000-campaign answer, more than computing it (`make bench ONLY=api_load`)."""
    return Response(status_code=status, content_type="application/json",
                    body=json.dumps(payload, separators=(",", ":"), default=str))


def raw_json(body: str, status: int = 200) -> Response:
    """An answer already serialised (by Postgres, for the stats): passed through untouched."""
    return Response(status_code=status, content_type="application/json", body=body)


def _validation_details(exc: RequestValidationError) -> list[dict]:
    details = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            # Powertools puts the parser's character offset where a field name would be.
            reason = (err.get("ctx") or {}).get("error") or "malformed"
            details.append({"field": "body", "problem": f"not valid JSON: {reason}"})
            continue
        loc = [str(part) for part in err.get("loc", ()) if part not in ("body", "query")]
        details.append({"field": ".".join(loc) or "body", "problem": err.get("msg", "invalid")})
    return details


def build_resolver() -> APIGatewayHttpResolver:
    """A resolver with typed validation and the one error mapping. Reads no config."""
    app = APIGatewayHttpResolver(enable_validation=True)

    @app.exception_handler(AppError)
    def _app_error(exc: AppError) -> Response:
        return error_response(exc.status, exc.code, exc.message, details=exc.details,
                              headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> Response:
        details = _validation_details(exc)
        if any(err.get("type") == "json_invalid" for err in exc.errors()):
            return error_response(422, "validation_error", "The request body is not valid JSON.",
                                  details=details)
        fields = ", ".join(d["field"] for d in details)
        return error_response(422, "validation_error", f"Invalid input: {fields}.", details=details)

    @app.exception_handler(UnicodeDecodeError)
    def _not_utf8(_exc: UnicodeDecodeError) -> Response:
        # A body that is not UTF-8 reaches us base64-encoded; Powertools' body decoding raises
        # this before validation runs. It is bad input (422), not a server error.
        details = [{"field": "body", "problem": "not UTF-8 encoded JSON"}]
        return error_response(422, "validation_error", "Invalid input: body.", details=details)

    @app.exception_handler(UpstreamError)
    def _upstream_error(exc: UpstreamError) -> Response:
        # A Meta failure the logic did not map itself: the client gets no Meta payload.
        logger.warning("meta_error", extra={"code": exc.code, "subcode": exc.subcode})
        return error_response(MetaUnavailable.status, MetaUnavailable.code,
                              MetaUnavailable.default_message)

    @app.not_found
    def _not_found(_exc: Exception) -> Response:
        return error_response(NotFound.status, NotFound.code, NotFound.default_message)

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # The client learns nothing about the failure; the log has the type, never the payload.
        logger.exception("unhandled_error", extra={"error_type": type(exc).__name__})
        count_unhandled_error()  # the alarms, and the canary gate of this version (template.yaml)
        return error_response(500, "internal_error", AppError.default_message)

    return app


def current_principal(app: APIGatewayHttpResolver, *, admin: bool = False) -> Principal:
    claims = app.current_event.request_context.authorizer.jwt_claim
    principal = principal_from_claims(claims)
    return require_admin(principal) if admin else principal


def _with_edge_headers(response: dict, event: dict) -> dict:
    headers = response.setdefault("headers", {}) or {}
    response["headers"] = headers
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)
    # Tenant data and auth answers must never sit in a shared or browser cache.
    headers.setdefault("Cache-Control", "no-store")
    origin = (event.get("headers") or {}).get("origin")
    frontend = get_settings().frontend_url
    if origin and origin == frontend:
        headers["Access-Control-Allow-Origin"] = frontend
        headers["Access-Control-Allow-Credentials"] = "true"
        headers["Vary"] = "Origin"
    return response


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _non_json_body(event: dict) -> bool:
    """A body sent as something other than JSON. Every body this API takes is JSON; Powertools
    answered other types with exceptions that surfaced as 500s (text/plain: unsupported content
    type; multipart/form-data without a boundary: a bare ValueError)."""
    method = ((event.get("requestContext") or {}).get("http") or {}).get("method", "")
    if method.upper() not in _BODY_METHODS or not event.get("body"):
        return False
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return bool(media) and media != "application/json" and not media.endswith("+json")


def _unreadable_body(event: dict) -> str | None:
    """Why a JSON body cannot be read, or None. Checked before Powertools parses it: a body
    nested thousands of levels deep raised RecursionError inside its validation (a 500), and
    text with an unpaired surrogate passed it only to fail in the database driver. A plain
    syntax error is left to the route, which describes it the same way whatever the route."""
    method = ((event.get("requestContext") or {}).get("http") or {}).get("method", "")
    body = event.get("body")
    if method.upper() not in _BODY_METHODS or not body:
        return None
    if event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return "not base64 as API Gateway sends it"
    try:
        loads(body)
    except UnreadableJson as exc:
        return None if exc.malformed else exc.problem
    return None


def _early_error(status: int, code: str, message: str, event: dict, *,
                 details: list | None = None) -> dict:
    """An error answered before routing (so before Powertools' body validation)."""
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if details:
        body["error"]["details"] = details
    return _with_edge_headers({"statusCode": status, "body": json.dumps(body),
                               "headers": {"Content-Type": "application/json"},
                               "isBase64Encoded": False}, event)


def _refused_caller(event: dict, admin_methods: frozenset[str]) -> AppError | None:
    """401/403 for an admin-only method, decided before the body is validated: Powertools
    validates typed bodies before the route runs, which would tell a member a 422 (and what the
    body should look like) where the contract says 403."""
    method = ((event.get("requestContext") or {}).get("http") or {}).get("method", "").upper()
    if method not in admin_methods:
        return None
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    try:
        require_admin(principal_from_claims((authorizer.get("jwt") or {}).get("claims")))
    except AppError as exc:
        return exc
    return None


def http_response(app: APIGatewayHttpResolver, event: dict, context: Any, *,
                  admin_methods: frozenset[str] = frozenset(), read_body: bool = True) -> dict:
    """Resolve the event and add the headers the contract puts on every response.

    `admin_methods`: the methods of this function's routes that only a tenant admin may call;
    the caller is checked before anything about the request body. `read_body=False` leaves
    reading the body to the route (the webhook checks its signature over the raw bytes first)."""
    refused = _refused_caller(event, admin_methods)
    if refused is not None:
        return _early_error(refused.status, refused.code, refused.message, event)
    if _non_json_body(event):
        return _early_error(415, "unsupported_media_type",
                            "Send the body as JSON (Content-Type: application/json).", event)
    problem = _unreadable_body(event) if read_body else None
    if problem is not None:
        return _early_error(422, "validation_error", "Invalid input: body.", event,
                            details=[{"field": "body", "problem": problem}])
    return _with_edge_headers(app.resolve(event, context), event)

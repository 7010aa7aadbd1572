"""A local HTTP API: serves template.yaml's HttpApi routes by calling the handlers in-process
with API Gateway payload-2.0 events, and verifies bearer JWTs as the JWT authorizer does."""

from __future__ import annotations

import base64
import importlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import jwt
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from devstack import jwt_tokens
from devstack.cors import CorsPolicy
from devstack.lambda_context import LocalContext
from devstack.template import HttpRoute, http_routes

MAX_BODY = 10 * 1024 * 1024  # API Gateway's payload limit
STATIC_DIR = Path(__file__).resolve().parent.parent / "web"


def build_event(request: Request, route: HttpRoute, path_params: dict, claims: dict | None) -> dict:
    body = request.get_data(cache=True)
    text = None
    is_b64 = False
    if body:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text, is_b64 = base64.b64encode(body).decode(), True
    headers: dict[str, str] = {}
    for key, value in request.headers.items():
        key = key.lower()
        if key == "cookie":
            continue
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    query: dict[str, str] = {}
    for key in request.args:
        query[key] = ",".join(request.args.getlist(key))
    cookies = [c.strip() for c in request.headers.get("Cookie", "").split(";") if c.strip()]
    now = time.time()
    event = {
        "version": "2.0",
        "routeKey": f"{route.method} {route.path}",
        "rawPath": request.path,
        "rawQueryString": request.query_string.decode("latin-1"),
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": request.host,
            "domainPrefix": "local",
            "http": {"method": request.method, "path": request.path, "protocol": "HTTP/1.1",
                     "sourceIp": request.remote_addr or "127.0.0.1",
                     "userAgent": request.headers.get("User-Agent", "")},
            "requestId": str(uuid.uuid4()),
            "routeKey": f"{route.method} {route.path}",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": is_b64,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_params:
        event["pathParameters"] = path_params
    if text is not None:
        event["body"] = text
    if claims is not None:
        # API Gateway hands every claim to the function as a string.
        flat = {k: v if isinstance(v, str) else json.dumps(v) if isinstance(v, list | dict)
                else str(v) for k, v in claims.items()}
        event["requestContext"]["authorizer"] = {"jwt": {"claims": flat, "scopes": None}}
    return event


def _unauthorized() -> Response:
    # API Gateway's own JWT-authorizer answer.
    return Response(json.dumps({"message": "Unauthorized"}), status=401,
                    content_type="application/json", headers={"www-authenticate": "Bearer"})


class LocalApi:
    def __init__(self, extra_routes: dict[str, Callable[[Request], Response]] | None = None,
                 cors: CorsPolicy | None = None):
        self.routes = http_routes()
        self.extra_routes = extra_routes or {}
        # As API Gateway: preflights answered here, CORS headers on every answer (devstack/cors).
        self.cors = cors
        self._modules: dict[str, object] = {}
        self._lock = threading.Lock()

    def _handler(self, route: HttpRoute):
        with self._lock:
            module = self._modules.get(route.module)
            if module is None:
                module = importlib.import_module(route.module)
                self._modules[route.module] = module
        return module.lambda_handler

    def find(self, method: str, path: str) -> tuple[HttpRoute, dict] | None:
        for route in self.routes:
            params = route.match(method, path)
            if params is not None:
                return route, params
        return None

    def invoke(self, request: Request) -> Response:
        if request.content_length and request.content_length > MAX_BODY:
            return Response(json.dumps({"message": "Request Entity Too Large"}), status=413,
                            content_type="application/json")
        found = self.find(request.method, request.path)
        if found is None:
            return Response(json.dumps({"message": "Not Found"}), status=404,
                            content_type="application/json")
        route, params = found
        claims = None
        if route.authorized:
            auth = request.headers.get("Authorization", "")
            if not auth.lower().startswith("bearer "):
                return _unauthorized()
            try:
                claims = jwt_tokens.verify(auth[7:].strip())
            except jwt.InvalidTokenError:
                return _unauthorized()
        event = build_event(request, route, params, claims)
        context = LocalContext(function_name=route.function, timeout_seconds=route.timeout)
        result = self._handler(route)(event, context)
        return to_response(result)

    def wsgi(self, environ, start_response):
        request = Request(environ)
        response = self.cors.preflight(request) if self.cors else None
        if response is None:
            extra = self.extra_routes.get(request.path)
            if extra is None and request.method == "GET" and not request.path.startswith("/crm/"):
                extra = self.extra_routes.get("*")
            response = extra(request) if extra else self.invoke(request)
            if self.cors:
                self.cors.apply(request, response)
        return response(environ, start_response)


def to_response(result: dict) -> Response:
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
    response = Response(data, status=int(result.get("statusCode", 200)))
    response.headers.clear()
    for key, value in (result.get("headers") or {}).items():
        response.headers[key] = value
    for values in (result.get("multiValueHeaders") or {}).items():
        for value in values[1]:
            response.headers.add(values[0], value)
    for cookie in result.get("cookies") or []:
        response.headers.add("Set-Cookie", cookie)
    return response


class _PathOnlyLog(WSGIRequestHandler):
    """Access log without query strings: the OAuth callback's query carries a code and state."""

    def log_request(self, code="-", size="-") -> None:
        path = self.path.split("?", 1)[0]
        self.log("info", '"%s %s" %s', self.command, path, code)


class ServerThread:
    """A threaded WSGI server on 127.0.0.1 in a background thread."""

    def __init__(self, app, port: int = 0, host: str = "127.0.0.1"):
        self.server = make_server(host, port, app, threaded=True, request_handler=_PathOnlyLog)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        self.url = f"http://{host}:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

"""The sandbox's WSGI core: routing, Graph-style auth, versioning, faults, latency, request log.

Areas (oauth, ads, whatsapp, ...) never edit this file. Each area module exposes
`area = Area("name")` and registers on it:

    @area.route("GET", "/{node_id}/campaigns", auth="user")
    def campaigns(ctx: Ctx) -> dict: ...          # dict -> JSON 200; raise GraphError for errors

    @area.control("POST", "/ads/accounts")         # served at /__sandbox/ads/accounts, JSON body
    def add_account(ctx: Ctx) -> dict: ...

    @area.seed                                     # builds the area's state on start and reset
    def seed(world: World) -> AdsState: ...        # later: ctx.world.area("ads")

Paths are written without the version: "/me" serves /v26.0/me and the unversioned /me alike.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus, urlencode

from werkzeug.exceptions import HTTPException
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from sandbox.world import App, Token, World

DEFAULT_VERSION = "v26.0"  # what an app's dashboard default would be for unversioned calls
SUPPORTED_MAJORS = range(21, 28)  # VER/MVER: v21.0 .. v27.0 are live in 2026
CONTROL_PREFIX = "/__sandbox"
_VERSION = re.compile(r"v\d+\.\d+")
_VERSIONISH = re.compile(r"v\d.*")

TOKEN_SUBCODE_MESSAGES = {
    458: "Error validating access token: User {user} has not authorized application {app}.",
    459: "Error validating access token: You cannot access the app till you log in to "
    "www.facebook.com and follow the instructions given.",
    460: "Error validating access token: The session has been invalidated because the user "
    "changed their password or Facebook has changed the session for security reasons.",
    463: "Error validating access token: Session has expired on {expired}. The current time is "
    "{now}.",
    464: "Error validating access token: Sessions for the user are not allowed because the user "
    "is not a confirmed user.",
    467: "Error validating access token: The session is invalid because the user logged out.",
    492: "Error validating access token: The user associated with the Page access token does not "
    "have an appropriate role on the Page.",
}


def fbtrace_id() -> str:
    return "A" + secrets.token_urlsafe(16)[:22]


class GraphError(Exception):
    """Raise from a handler to answer with Meta's error envelope (ERR shape)."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        subcode: int | None = None,
        status: int = 400,
        error_type: str = "OAuthException",
        is_transient: bool | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.subcode = code, message, subcode
        self.status, self.error_type, self.is_transient = status, error_type, is_transient
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"message": self.message, "type": self.error_type, "code": self.code}
        if self.subcode is not None:
            err["error_subcode"] = self.subcode
        if self.is_transient is not None:
            err["is_transient"] = self.is_transient
        err.update(self.extra)
        err["fbtrace_id"] = fbtrace_id()
        return {"error": err}


def token_error(token: Token | None, subcode: int | None, now: float) -> GraphError:
    if subcode is None:
        return GraphError(190, "Invalid OAuth access token - Cannot parse access token")
    template = TOKEN_SUBCODE_MESSAGES.get(subcode, "Error validating access token: The session "
                                          "has been invalidated.")
    fmt = "%A, %d-%b-%y %H:%M:%S UTC"
    expired = time.strftime(fmt, time.gmtime(token.expires_at if token else now))
    message = template.format(user=token.user_id if token else "", app=token.app_id if token
                              else "", expired=expired, now=time.strftime(fmt, time.gmtime(now)))
    return GraphError(190, message, subcode=subcode)


@dataclass
class Route:
    method: str
    pattern: str
    regex: re.Pattern[str]
    handler: Callable[[Ctx], Any]
    auth: str  # none | user | app | any
    area: str


def _compile(pattern: str) -> re.Pattern[str]:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern.rstrip("/") or "/")
    return re.compile(regex)


@dataclass
class Area:
    """A bundle of routes, control endpoints and seeded state; see the module docstring."""

    name: str
    routes: list[Route] = field(default_factory=list)
    controls: list[Route] = field(default_factory=list)
    seed_hook: Callable[[World], Any] | None = None

    def route(self, method: str, pattern: str, *, auth: str = "user") -> Callable:
        def register(fn: Callable[[Ctx], Any]) -> Callable[[Ctx], Any]:
            for m in method.upper().split("|"):
                self.routes.append(Route(m, pattern, _compile(pattern), fn, auth, self.name))
            return fn

        return register

    def control(self, method: str, pattern: str) -> Callable:
        def register(fn: Callable[[Ctx], Any]) -> Callable[[Ctx], Any]:
            for m in method.upper().split("|"):
                self.controls.append(Route(m, pattern, _compile(pattern), fn, "none", self.name))
            return fn

        return register

    def seed(self, fn: Callable[[World], Any]) -> Callable[[World], Any]:
        self.seed_hook = fn
        return fn


@dataclass
class Ctx:
    """What a handler sees: the request, the world, and the resolved caller."""

    request: Request
    world: World
    sandbox: SandboxApp
    version: str
    path_params: dict[str, str]
    method: str
    token: Token | None = None  # user token, when one was presented and valid
    app: App | None = None  # the app behind the app token or the user token
    internal: bool = False  # True inside a batch

    @property
    def params(self) -> dict[str, str]:
        """Query and form merged (Graph treats them alike); JSON bodies merged too."""
        out = dict(self.request.args.items())
        out.update(self.request.form.items())
        if self.request.is_json:
            body = self.request.get_json(silent=True)
            if isinstance(body, dict):
                out.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()})
        return out

    def param_list(self, name: str) -> list[str]:
        return self.request.args.getlist(name) + self.request.form.getlist(name)

    def json_body(self) -> dict[str, Any]:
        body = self.request.get_json(silent=True)
        return body if isinstance(body, dict) else {}

    @property
    def base_url(self) -> str:
        return self.request.host_url.rstrip("/")

    def user_id(self, node: str) -> str:
        """Resolve "me" (or the caller's own id) to the token's user."""
        if node == "me":
            if self.token is None:
                raise GraphError(2500, "An active access token must be used to query "
                                 "information about the current user.")
            return self.token.user_id
        return node

    def page(self, items: list[Any], default_limit: int = 25) -> dict[str, Any]:
        """Cursor paging in PAG's shape: next only while more items remain."""
        params = self.params
        limit = max(1, min(int(params.get("limit", default_limit)), 5000))
        start = decode_cursor(params["after"]) + 1 if params.get("after") else 0
        chunk = items[start : start + limit]
        body: dict[str, Any] = {"data": chunk}
        if chunk:
            last = start + len(chunk) - 1
            cursors = {"before": encode_cursor(start), "after": encode_cursor(last)}
            body["paging"] = {"cursors": cursors}
            if start + len(chunk) < len(items):
                body["paging"]["next"] = self.url_with(after=cursors["after"])
            if start > 0:
                body["paging"]["previous"] = self.url_with(before=cursors["before"], after=None)
        return body

    def url_with(self, **changes: str | None) -> str:
        query = dict(self.request.args.items())
        for key, value in changes.items():
            if value is None:
                query.pop(key, None)
            else:
                query[key] = value
        return f"{self.base_url}{self.request.path}?{urlencode(query)}"


def encode_cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"idx:{index}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        return int(raw.split(":", 1)[1])
    except (ValueError, IndexError) as exc:
        raise GraphError(100, "(#100) The After Cursor specified is invalid") from exc


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers or {},
                    content_type="application/json; charset=UTF-8")


@dataclass
class Fault:
    kind: str  # transient | timeout | drop | rate_limit | token_error | error
    path: str
    method: str | None
    remaining: int
    opts: dict[str, Any]

    def matches(self, method: str, path: str) -> bool:
        return (self.remaining > 0 and (self.method is None or self.method == method)
                and re.search(self.path, path) is not None)


RATE_LIMIT_MESSAGES = {
    4: "(#4) Application request limit reached",
    17: "(#17) User request limit reached",
    32: "(#32) Page request limit reached",
    613: "(#613) Calls to this api have exceeded the rate limit.",
    80004: "(#80004) There have been too many calls to this ad-account. Wait a bit and try again. "
    "For more info, please refer to "
    "https://developers.facebook.com/docs/graph-api/overview/rate-limiting#ads-management.",
    130429: "(#130429) Rate limit hit",
}
BUC_TYPES = {80000: "ads_insights", 80001: "pages", 80002: "instagram", 80003: "custom_audience",
             80004: "ads_management", 80005: "leadgen", 80006: "messenger",
             80008: "whatsapp_business_management"}


class SandboxApp:
    """The WSGI application. Thread-safe: every mutable piece sits behind world.lock."""

    def __init__(self, world: World, areas: list[Area]) -> None:
        self.world = world
        self.areas = areas
        self.routes: list[Route] = []
        self.controls: list[Route] = []
        for area in [builtin, *areas]:
            self.routes += area.routes
            self.controls += area.controls
            if area.seed_hook is not None:
                world.add_seed_hook(area.name, area.seed_hook)
        # Literal segments win over {params}: "/me/permissions" before "/{node}/permissions".
        self.routes.sort(key=lambda r: r.pattern.count("{"))
        self.faults: list[Fault] = []
        self.latency: list[dict[str, Any]] = []
        self.app_usage = {"call_count": 2, "total_cputime": 1, "total_time": 1}
        self.stopping = threading.Event()

    def reset(self) -> None:
        with self.world.lock:
            self.faults.clear()
            self.latency.clear()
            self.app_usage = {"call_count": 2, "total_cputime": 1, "total_time": 1}
            self.world.reset()

    # -- WSGI -------------------------------------------------------------------------------
    def __call__(self, environ: dict, start_response: Callable) -> Any:
        request = Request(environ)
        if request.path.startswith(CONTROL_PREFIX + "/") or request.path == CONTROL_PREFIX:
            response = self._control(request)
        else:
            response = self._graph(request, internal=False)
        return response(environ, start_response)

    def _control(self, request: Request) -> Response:
        path = request.path[len(CONTROL_PREFIX) :] or "/"
        ctx = Ctx(request, self.world, self, "", {}, request.method)
        for route in self.controls:
            match = route.regex.fullmatch(path)
            if match and route.method == request.method:
                ctx.path_params = match.groupdict()
                try:
                    result = route.handler(ctx)
                except GraphError as exc:
                    return json_response(exc.body(), exc.status)
                except (KeyError, ValueError, TypeError) as exc:
                    return json_response({"error": f"bad control request: {exc!r}"}, 400)
                return result if isinstance(result, Response) else json_response(result)
        return json_response({"error": f"no control endpoint {request.method} {path}"}, 404)

    def _graph(self, request: Request, *, internal: bool) -> Response:
        entry = self._log(request, internal)
        try:
            if not internal:
                self._apply_latency(request)
                fault = self._take_fault(request)
                if fault is not None:
                    response = self._fault_response(fault, request)
                    entry["status"] = response.status_code
                    entry["fault"] = fault.kind
                    return response
            response = self._dispatch(request, internal, entry)
        except GraphError as exc:
            headers = {**self._usage_headers(), **exc.headers}
            response = json_response(exc.body(), exc.status, headers)
        except HTTPException as exc:
            response = exc.get_response()
        entry["status"] = response.status_code
        return response

    def _dispatch(self, request: Request, internal: bool, entry: dict[str, Any]) -> Response:
        version, rest = self._split_version(request.path)
        entry["version"] = version
        method = request.method
        override = request.values.get("method", "").upper()
        if method == "POST" and override in {"GET", "DELETE"}:
            method = override  # Graph's method override, used to keep reads out of URLs
        for route in self.routes:
            match = route.regex.fullmatch(rest)
            if match and route.method == method:
                entry["route"] = route.pattern
                ctx = Ctx(request, self.world, self, version, match.groupdict(), method,
                          internal=internal)
                self._authenticate(ctx, route.auth)
                result = route.handler(ctx)
                if isinstance(result, Response):
                    for name, value in self._usage_headers().items():
                        result.headers.setdefault(name, value)
                    return result
                return json_response(result, 200, self._usage_headers())
        raise unsupported_object(method, rest.strip("/").split("/")[0] or "/")

    @staticmethod
    def _split_version(path: str) -> tuple[str, str]:
        parts = path.split("/", 2)  # ["", first, rest]
        first = parts[1] if len(parts) > 1 else ""
        if _VERSION.fullmatch(first):
            if int(first[1:].split(".")[0]) not in SUPPORTED_MAJORS:
                raise GraphError(2635, f"(#2635) You are calling a deprecated or unknown version "
                                 f"of the Graph API ({first}). Please update to the latest "
                                 f"version: {DEFAULT_VERSION}.")
            return first, "/" + (parts[2] if len(parts) > 2 else "")
        if _VERSIONISH.fullmatch(first):
            raise GraphError(2635, f"(#2635) Unknown API version '{first}': versions look like "
                             f"{DEFAULT_VERSION}.")
        return DEFAULT_VERSION, path

    # -- auth -------------------------------------------------------------------------------
    def _authenticate(self, ctx: Ctx, mode: str) -> None:
        header = ctx.request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        raw = value.strip() if scheme.lower() in {"bearer", "oauth"} else ""
        raw = raw or ctx.params.get("access_token", "")
        if mode == "none" or (not raw and mode == "optional"):
            return
        if not raw:
            if mode == "app":
                raise GraphError(100, "(#100) You must provide an app access token, or a user "
                                 "access token that is an owner or developer of the app")
            raise GraphError(104, "An access token is required to request this resource.")
        world = self.world
        if "|" in raw:
            app_id, _, secret = raw.partition("|")
            app = world.apps.get(app_id)
            if app is None or not hmac.compare_digest(app.secret, secret):
                raise GraphError(190, "Invalid OAuth access token signature.")
            if mode == "user":
                raise GraphError(2500, "An active access token must be used to query "
                                 "information about the current user.")
            ctx.app = app
            return
        token = world.tokens.get(raw)
        if token is None:
            raise token_error(None, None, world.now())
        if token.revoked_subcode is not None:
            raise token_error(token, token.revoked_subcode, world.now())
        if world.is_expired(token):
            raise token_error(token, 463, world.now())
        app = world.apps[token.app_id]
        if app.require_appsecret_proof:
            proof = ctx.params.get("appsecret_proof")
            if not proof:
                raise GraphError(100, "API calls from the server require an appsecret_proof "
                                 "argument", error_type="GraphMethodException")
            expected = hmac.new(app.secret.encode(), raw.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, proof):
                raise GraphError(100, "Invalid appsecret_proof provided in the API argument",
                                 error_type="GraphMethodException")
        if mode == "app":
            raise GraphError(100, "(#100) You must provide an app access token, or a user "
                             "access token that is an owner or developer of the app")
        ctx.token, ctx.app = token, app

    # -- usage, latency, faults -------------------------------------------------------------
    def _usage_headers(self) -> dict[str, str]:
        return {"x-app-usage": json.dumps(self.app_usage)}

    def _apply_latency(self, request: Request) -> None:
        with self.world.lock:
            delay = sum(rule["ms"] for rule in self.latency
                        if (rule["method"] in (None, request.method))
                        and re.search(rule["path"], request.path))
        if delay:
            # Sleeping in this request's own thread keeps concurrent requests concurrent.
            self.stopping.wait(delay / 1000.0)

    def _take_fault(self, request: Request) -> Fault | None:
        with self.world.lock:
            for fault in self.faults:
                if fault.matches(request.method, request.path):
                    fault.remaining -= 1
                    return fault
        return None

    def _fault_response(self, fault: Fault, request: Request) -> Response:
        opts = fault.opts
        if fault.kind == "drop":
            sock = request.environ.get("werkzeug.socket")
            if sock is not None:
                # Close our side without a byte of response; werkzeug's later write fails
                # quietly (BrokenPipe), and the client sees "server disconnected".
                sock.shutdown(socket.SHUT_RDWR)
            return Response(b"", status=500)
        if fault.kind == "timeout":
            self.stopping.wait(float(opts.get("seconds", 5.0)))
            fault = Fault("transient", fault.path, fault.method, 0, {})
        error = fault_error(fault.kind, opts)
        return json_response(error.body(), error.status, {**self._usage_headers(), **error.headers})

    # -- request log ------------------------------------------------------------------------
    def _log(self, request: Request, internal: bool) -> dict[str, Any]:
        query = unquote_plus(request.query_string.decode("latin-1"))
        secrets_in_world = self.world.known_secrets()
        auth = ("header" if request.headers.get("Authorization")
                else "param" if "access_token" in request.values else None)
        entry = {
            "ts": time.time(),
            "method": request.method,
            "path": request.path,
            "query_keys": sorted(request.args.keys()),
            "body_keys": sorted(request.form.keys()),
            # Never the values: the log is safe to print. This flag answers "did a credential
            # land in a URL (and so in access logs)?".
            "credential_in_url": any(s and s in query for s in secrets_in_world),
            "auth": auth,
            "batch": internal,
            "status": None,
        }
        with self.world.lock:
            self.world.request_log.append(entry)
        return entry

    # -- batch ------------------------------------------------------------------------------
    def run_batch(self, ctx: Ctx) -> list[Any]:
        try:
            requests = json.loads(ctx.params.get("batch", ""))
        except ValueError as exc:
            raise GraphError(100, "(#100) The parameter batch must be a JSON array") from exc
        if not isinstance(requests, list):
            raise GraphError(100, "(#100) The parameter batch must be a JSON array")
        if len(requests) > 50:
            raise GraphError(100, "(#100) Too many requests in batch message. Maximum batch "
                             "size is 50")
        auth = ctx.request.headers.get("Authorization")
        outer = {k: v for k, v in ctx.params.items() if k in {"access_token", "appsecret_proof"}}
        results = []
        for item in requests:
            method = str(item.get("method", "GET")).upper()
            relative = str(item.get("relative_url", "")).lstrip("/")
            path, _, query = relative.partition("?")
            if not _VERSION.fullmatch(path.split("/")[0]):
                path = f"{ctx.version}/{path}"
            query = "&".join(q for q in (query, urlencode(outer)) if q)
            builder = EnvironBuilder(
                path="/" + path, method=method, query_string=query,
                data=item.get("body", "") if method != "GET" else None,
                headers={"Authorization": auth} if auth else {},
                content_type="application/x-www-form-urlencoded" if method != "GET" else None,
                base_url=ctx.base_url,
            )
            sub = self._graph(Request(builder.get_environ()), internal=True)
            results.append({
                "code": sub.status_code,
                "headers": [{"name": "Content-Type", "value": "text/javascript; charset=UTF-8"}],
                "body": sub.get_data(as_text=True),
            })
        return results


def fault_error(kind: str, opts: dict[str, Any]) -> GraphError:
    code = opts.get("code")
    subcode = opts.get("subcode")
    if kind == "transient":
        code = code or 2
        message = opts.get("message") or (
            "An unexpected error has occurred. Please retry your request later." if code == 2
            else "An unknown error occurred" if code == 1 else f"(#{code}) Service unavailable")
        return GraphError(code, message, subcode=subcode, status=int(opts.get("status", 500)),
                          is_transient=True)
    if kind == "rate_limit":
        code = code or 4
        message = opts.get("message") or RATE_LIMIT_MESSAGES.get(code, f"(#{code}) Rate limit")
        regain = opts.get("regain_minutes", 1)
        buc = {str(opts.get("object_id", "1001")): [{
            "type": BUC_TYPES.get(code, "ads_management"), "call_count": 100,
            "total_cputime": 30, "total_time": 40, "estimated_time_to_regain_access": regain,
            "ads_api_access_tier": "development_access"}]}
        headers = {
            "x-app-usage": json.dumps({"call_count": 100 if code == 4 else 40,
                                       "total_cputime": 20, "total_time": 25}),
            "x-business-use-case-usage": json.dumps(buc),
        }
        if "reset_seconds" in opts:
            headers["x-ad-account-usage"] = json.dumps({
                "acc_id_util_pct": 100, "reset_time_duration": opts["reset_seconds"],
                "ads_api_access_tier": "standard_access"})
        return GraphError(code, message, subcode=subcode, status=int(opts.get("status", 400)),
                          is_transient=False, headers=headers)
    if kind == "token_error":
        error = token_error(None, subcode or 463, time.time())
        error.status = int(opts.get("status", 400))
        return error
    if kind == "error":
        return GraphError(code or 100, opts.get("message") or "(#100) Invalid parameter",
                          subcode=subcode, status=int(opts.get("status", 400)),
                          error_type=opts.get("type", "OAuthException"))
    raise ValueError(f"unknown fault kind {kind!r}")


# -- built-in area: batch endpoint and the generic control API --------------------------------
builtin = Area("core")


@builtin.route("POST", "/", auth="any")
def batch(ctx: Ctx) -> Any:
    if "batch" not in ctx.params:
        raise GraphError(100, "(#100) Missing parameter: batch")
    return json_response(ctx.sandbox.run_batch(ctx))


@builtin.route("GET", "/__test/items", auth="user")
def test_items(ctx: Ctx) -> dict[str, Any]:
    """TEST-ONLY generic paged edge: `count` items, `limit` per page, `empty_pages` (comma list
    of page numbers answered with data=[] but still a next link, as Meta sometimes does)."""
    params = ctx.params
    count, limit = int(params.get("count", 10)), int(params.get("limit", 25))
    empty = {int(p) for p in params.get("empty_pages", "").split(",") if p.strip()}
    page_no = decode_cursor(params["after"]) + 1 if params.get("after") else 0
    data_pages_before = page_no - len([p for p in empty if p < page_no])
    start = data_pages_before * limit
    items = [] if page_no in empty else [
        {"id": str(i), "name": f"item {i}"} for i in range(start, min(start + limit, count))]
    consumed = start + len(items)
    more = consumed < count or any(p > page_no for p in empty)
    body: dict[str, Any] = {"data": items, "paging": {"cursors": {
        "before": encode_cursor(page_no - 1), "after": encode_cursor(page_no)}}}
    if more:
        body["paging"]["next"] = ctx.url_with(after=encode_cursor(page_no))
    return body


@builtin.control("POST", "/reset")
def control_reset(ctx: Ctx) -> dict[str, Any]:
    ctx.sandbox.reset()
    return {"success": True}


@builtin.control("POST", "/latency")
def control_latency(ctx: Ctx) -> dict[str, Any]:
    body = ctx.json_body()
    rule = {"path": body["path"], "method": body.get("method"), "ms": float(body["ms"])}
    with ctx.world.lock:
        ctx.sandbox.latency.append(rule)
    return {"success": True, "rule": rule}


@builtin.control("DELETE", "/latency")
def control_latency_clear(ctx: Ctx) -> dict[str, Any]:
    with ctx.world.lock:
        ctx.sandbox.latency.clear()
    return {"success": True}


@builtin.control("POST", "/faults")
def control_fault(ctx: Ctx) -> dict[str, Any]:
    body = dict(ctx.json_body())
    kind = body.pop("kind")
    if kind not in {"transient", "timeout", "drop", "rate_limit", "token_error", "error"}:
        raise ValueError(f"unknown fault kind {kind!r}")
    fault = Fault(kind, body.pop("path", ".*"), body.pop("method", None),
                  int(body.pop("count", 1)), body)
    with ctx.world.lock:
        ctx.sandbox.faults.append(fault)
    return {"success": True}


@builtin.control("GET", "/faults")
def control_faults_list(ctx: Ctx) -> dict[str, Any]:
    with ctx.world.lock:
        return {"faults": [{"kind": f.kind, "path": f.path, "method": f.method,
                            "remaining": f.remaining} for f in ctx.sandbox.faults]}


@builtin.control("DELETE", "/faults")
def control_faults_clear(ctx: Ctx) -> dict[str, Any]:
    with ctx.world.lock:
        ctx.sandbox.faults.clear()
    return {"success": True}


@builtin.control("GET", "/requests")
def control_requests(ctx: Ctx) -> dict[str, Any]:
    with ctx.world.lock:
        log = list(ctx.world.request_log)
    counts: dict[str, int] = {}
    for entry in log:
        key = f"{entry['method']} {entry['path']}"
        counts[key] = counts.get(key, 0) + 1
    return {"requests": log, "counts": counts}


@builtin.control("DELETE", "/requests")
def control_requests_clear(ctx: Ctx) -> dict[str, Any]:
    with ctx.world.lock:
        ctx.world.request_log.clear()
    return {"success": True}


@builtin.control("POST", "/usage")
def control_usage(ctx: Ctx) -> dict[str, Any]:
    with ctx.world.lock:
        ctx.sandbox.app_usage = {k: int(v) for k, v in ctx.json_body().items()}
    return {"success": True}


@builtin.control("POST", "/clock")
def control_clock(ctx: Ctx) -> dict[str, Any]:
    with ctx.world.lock:
        ctx.world.clock_offset += float(ctx.json_body()["advance_seconds"])
        return {"now": ctx.world.now()}


def unsupported_object(method: str, node: str) -> GraphError:
    """Meta's answer for a node that does not exist, is not the caller's to see, or has no such
    edge: the same words whichever it is."""
    verb = "get" if method == "GET" else method.lower()
    return GraphError(100, f"Unsupported {verb} request. Object with ID '{node}' does not exist, "
                      "cannot be loaded due to missing permissions, or does not support this "
                      "operation. Please read the Graph API documentation at "
                      "https://developers.facebook.com/docs/graph-api",
                      subcode=33, error_type="GraphMethodException")


def select_fields(item: dict[str, Any], fields: list[str] | None, default: tuple[str, ...]
                  ) -> dict[str, Any]:
    """The node's `id` and the fields asked for (`default` when none were), those it has."""
    wanted = fields or list(default)
    return {k: item[k] for k in ["id", *wanted] if k in item}


def requested_fields(raw: str | None) -> list[str] | None:
    """Top-level names of a Graph `fields` list: "a,b{c,d},e.limit(5)" -> [a, b, e]."""
    if not raw:
        return None
    names, depth, current = [], 0, ""
    for char in raw:
        if char in "{(":
            depth += 1
        elif char in "})":
            depth -= 1
        elif char == "," and depth == 0:
            names.append(current)
            current = ""
        elif depth == 0:
            current += char
    names.append(current)
    return [re.split(r"[.{(]", n.strip())[0] for n in names if n.strip()]

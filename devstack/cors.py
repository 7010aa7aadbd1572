"""CORS as API Gateway answers it for template.yaml's HttpApi (its `CorsConfiguration`).

API Gateway, not the functions, does CORS for an HTTP API: it answers a browser's preflight
(`OPTIONS` with `Origin` and `Access-Control-Request-Method`) itself, whatever the routes, and on
every other answer to an allowed origin it sets `Access-Control-Allow-Origin` and
`-Allow-Credentials`, replacing any CORS header a function returned. The local API does the same
with the template's own settings, so a frontend on another origin meets locally what it meets in
AWS. `AllowOrigins: [!Ref FrontendUrl]` resolves against the local stack's parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from werkzeug.wrappers import Request, Response

from devstack.template import load_template

_CORS_HEADER_PREFIX = "access-control-"


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a URL; ValueError when it is not an http(s) origin."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an origin such as http://localhost:5173")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{url!r} is not an origin: drop the path (e.g. http://localhost:5173)")
    parts.port  # noqa: B018 - raises ValueError for a port out of range
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _resolve(value: Any, parameters: dict[str, str]) -> Any:
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return parameters[value["Ref"]]
    if isinstance(value, dict):
        return {key: _resolve(item, parameters) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, parameters) for item in value]
    return value


def template_cors() -> dict[str, Any]:
    """The CorsConfiguration of template.yaml's one AWS::Serverless::HttpApi (unresolved)."""
    apis = [res for res in load_template()["Resources"].values()
            if isinstance(res, dict) and res.get("Type") == "AWS::Serverless::HttpApi"]
    if len(apis) != 1:
        raise LookupError(f"template.yaml has {len(apis)} HttpApi resources, expected one")
    return apis[0].get("Properties", {}).get("CorsConfiguration") or {}


@dataclass(frozen=True)
class CorsPolicy:
    allow_origins: tuple[str, ...]
    allow_methods: tuple[str, ...]
    allow_headers: tuple[str, ...]
    expose_headers: tuple[str, ...] = ()
    allow_credentials: bool = False
    max_age: int | None = None

    @classmethod
    def from_template(cls, parameters: dict[str, str]) -> CorsPolicy:
        """The template's settings, `!Ref`s resolved against `parameters` (e.g. FrontendUrl)."""
        config = _resolve(template_cors(), parameters)
        return cls(
            allow_origins=tuple(origin_of(o) if o != "*" else o
                                for o in config.get("AllowOrigins", [])),
            allow_methods=tuple(m.upper() for m in config.get("AllowMethods", [])),
            allow_headers=tuple(h.lower() for h in config.get("AllowHeaders", [])),
            expose_headers=tuple(config.get("ExposeHeaders", [])),
            allow_credentials=bool(config.get("AllowCredentials", False)),
            max_age=config.get("MaxAge"),
        )

    def allows(self, origin: str | None) -> bool:
        return bool(origin) and ("*" in self.allow_origins or origin in self.allow_origins)

    def _origin_headers(self, origin: str) -> dict[str, str]:
        headers = {"Access-Control-Allow-Origin": origin}
        if self.allow_credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        return headers

    def preflight(self, request: Request) -> Response | None:
        """API Gateway's own answer to a preflight, or None when the request is not one."""
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        response = Response(status=204, headers={"Vary": "Origin"})
        origin = request.headers.get("Origin")
        if self.allows(origin):
            response.headers.update(self._origin_headers(origin))
            response.headers["Access-Control-Allow-Methods"] = ",".join(self.allow_methods)
            response.headers["Access-Control-Allow-Headers"] = ",".join(self.allow_headers)
            if self.max_age is not None:
                response.headers["Access-Control-Max-Age"] = str(self.max_age)
        return response

    def apply(self, request: Request, response: Response) -> Response:
        """The gateway's CORS headers on an answer: the function's own ones never pass."""
        for name in {n for n, _ in response.headers.items()
                     if n.lower().startswith(_CORS_HEADER_PREFIX)}:
            del response.headers[name]
        origin = request.headers.get("Origin")
        if self.allows(origin):
            response.headers.update(self._origin_headers(origin))
            if self.expose_headers:
                response.headers["Access-Control-Expose-Headers"] = ",".join(self.expose_headers)
            if "origin" not in response.vary:
                response.vary.add("Origin")
        return response

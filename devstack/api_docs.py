"""/docs on the local API: the OpenAPI document rendered by Swagger UI, offline.

The renderer is Swagger UI's dist build as the PyPI package drf-spectacular-sidecar ships it
(pinned by version and hash in docs-ui-requirements.txt; `make install` puts it in
.cache/docs-ui with --no-deps: only its static files are read, the package is never imported).
Nothing is loaded from a CDN, so it works where only the package registries are reachable, and
the page keeps a strict Content-Security-Policy: scripts only from this origin (the start-up
script is a file, not inline), styles from this origin plus the inline styles Swagger UI sets,
images from this origin and data: URIs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from werkzeug.wrappers import Request, Response

ROOT = Path(__file__).resolve().parent.parent
RENDERER = (ROOT / ".cache" / "docs-ui" / "drf_spectacular_sidecar" / "static"
            / "drf_spectacular_sidecar" / "swagger-ui-dist")
DOCS_PATH = "/docs"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' data:; "
                                "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"),
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>CRM Ventas Marketing Hub API</title>
  <link rel="icon" href="/docs/swagger-ui/favicon-32x32.png">
  <link rel="stylesheet" href="/docs/swagger-ui/swagger-ui.css">
  <script src="/docs/swagger-ui/swagger-ui-bundle.js" defer></script>
  <script src="/docs/init.js" defer></script>
</head>
<body>
  <p style="font: 14px sans-serif; margin: 12px 20px">
    Local reference (<code>make dev</code>). To try a call: get a token with
    <code>curl -s -X POST -H 'Content-Type: application/json' -d '{"role": "admin"}'
    ORIGIN/__dev/session</code>, then <b>Authorize</b> with its <code>token</code>.
    The document itself: <a href="/openapi.json">/openapi.json</a> (committed as
    docs/openapi.json).
  </p>
  <div id="swagger-ui" data-testid="api-docs"></div>
</body>
</html>
"""

INIT = """"use strict";
// Starts Swagger UI on this origin's document (a file, so the page's CSP needs no inline script).
window.addEventListener("DOMContentLoaded", () => {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: true,
    defaultModelsExpandDepth: 0,
    presets: [SwaggerUIBundle.presets.apis],
  });
});
"""

MISSING = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>API reference not installed</title></head><body>
<p>The API reference's renderer (Swagger UI, from docs-ui-requirements.txt) is not installed
here: run <code>make install</code>, or read <a href="/openapi.json">/openapi.json</a>.</p>
</body></html>
"""


def installed() -> bool:
    return all((RENDERER / name).is_file() for name in ASSETS)


def page(request: Request) -> Response:
    if not installed():
        return Response(MISSING, status=503, content_type="text/html; charset=utf-8",
                        headers=HEADERS)
    origin = f"{request.scheme}://{request.host}"
    return Response(PAGE.replace("ORIGIN", origin), content_type="text/html; charset=utf-8",
                    headers=HEADERS)


def init_script(_request: Request) -> Response:
    return Response(INIT, content_type="text/javascript; charset=utf-8", headers=HEADERS)


def _asset(name: str) -> Callable[[Request], Response]:
    def serve(_request: Request) -> Response:
        path = RENDERER / name
        if not path.is_file():
            return Response("not installed: run make install", status=404, headers=HEADERS)
        return Response(path.read_bytes(), content_type=ASSETS[name], headers=HEADERS)

    return serve


def routes() -> dict[str, Callable[[Request], Response]]:
    table: dict[str, Callable[[Request], Response]] = {
        DOCS_PATH: page, f"{DOCS_PATH}/": page, f"{DOCS_PATH}/init.js": init_script}
    table.update({f"{DOCS_PATH}/swagger-ui/{name}": _asset(name) for name in ASSETS})
    return table

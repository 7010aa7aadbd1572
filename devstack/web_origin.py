"""The reference page (web/) served from an origin of its own, talking to the local API through
CORS: what the CRM's own frontend dev server does (e.g. on http://localhost:5173).

The page learns the API's origin from `<meta name="marketing-hub-api">`; its Content-Security-
Policy lets it connect to that origin and nothing else. Start the stack with this origin as its
frontend (LocalStack(frontend_url=...), or CORS_ORIGIN for `make dev`) so CORS allows it and the
OAuth callback comes back here. Used by tests/e2e.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from werkzeug.wrappers import Request, Response

from devstack.dev_routes import PAGE_HEADERS, PAGE_PATHS, STATIC_TYPES, WEB_DIR
from devstack.local_api import ServerThread

API_META = '<meta name="marketing-hub-api" content="">'


class WebOrigin:
    """A WSGI app serving web/ for an API at `api_url`."""

    def __init__(self, api_url: str):
        self.api_url = api_url.rstrip("/")
        self.headers = {**PAGE_HEADERS, "Content-Security-Policy": (
            f"default-src 'self'; connect-src 'self' {self.api_url}; frame-ancestors 'none'")}

    def page(self) -> bytes:
        text = (WEB_DIR / "index.html").read_text()
        if API_META not in text:
            raise RuntimeError("web/index.html lost its marketing-hub-api meta tag")
        return text.replace(API_META, f'<meta name="marketing-hub-api" '
                                      f'content="{html.escape(self.api_url)}">').encode()

    def respond(self, request: Request) -> Response:
        if request.method != "GET":
            return Response(json.dumps({"error": {"code": "method_not_allowed",
                                                  "message": "Only GET is served here."}}),
                            status=405, content_type="application/json", headers=self.headers)
        if request.path in PAGE_PATHS:
            return Response(self.page(), content_type=STATIC_TYPES[".html"],
                            headers=self.headers)
        path = (WEB_DIR / request.path.lstrip("/")).resolve()
        content_type = STATIC_TYPES.get(path.suffix)
        if path.parent != WEB_DIR or content_type is None or not path.is_file():
            return Response("Not found", status=404, headers=self.headers)
        return Response(Path(path).read_bytes(), content_type=content_type, headers=self.headers)

    def wsgi(self, environ, start_response):
        return self.respond(Request(environ))(environ, start_response)


def serve(api_url: str, port: int = 0) -> ServerThread:
    """The page on http://127.0.0.1:<port> (a free port by default); `.stop()` ends it."""
    return ServerThread(WebOrigin(api_url).wsgi, port=port)

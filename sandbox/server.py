"""Run the sandbox: in a background thread for tests and the devstack, or standalone."""

from __future__ import annotations

import importlib
import pkgutil
import threading
from dataclasses import dataclass

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

import sandbox
from sandbox.core import Area, SandboxApp
from sandbox.world import World


def discover_areas() -> list[Area]:
    """Every sandbox module exposing `area = Area(...)`: a new area is just a new file."""
    areas = []
    for info in sorted(pkgutil.iter_modules(sandbox.__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name in {"core", "server", "world", "control"}:
            continue
        module = importlib.import_module(f"sandbox.{info.name}")
        if isinstance(getattr(module, "area", None), Area):
            areas.append(module.area)
    return areas


def create_app(world: World | None = None, areas: list[Area] | None = None) -> SandboxApp:
    return SandboxApp(world or World(), discover_areas() if areas is None else areas)


class _QuietHandler(WSGIRequestHandler):
    """Keeps test output clean; the sandbox's own request log is the record."""

    def log_request(self, *args: object, **kwargs: object) -> None:
        pass


@dataclass
class RunningSandbox:
    url: str
    app: SandboxApp
    server: BaseWSGIServer
    thread: threading.Thread

    @property
    def world(self) -> World:
        return self.app.world

    def stop(self) -> None:
        self.app.stopping.set()  # wake handlers sleeping in latency/timeout faults
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start(host: str = "127.0.0.1", port: int = 0, *, world: World | None = None,
          areas: list[Area] | None = None, quiet: bool = True) -> RunningSandbox:
    """Serve on an ephemeral port (port=0) in a daemon thread; threaded, so latency injected
    into one request never delays another."""
    app = create_app(world, areas)
    handler = _QuietHandler if quiet else WSGIRequestHandler
    server = make_server(host, port, app, threaded=True, request_handler=handler)
    thread = threading.Thread(target=server.serve_forever, name="meta-sandbox", daemon=True)
    thread.start()
    return RunningSandbox(f"http://{host}:{server.server_port}", app, server, thread)

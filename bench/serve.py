"""`python -m bench.serve ROLE --ready-file F`: one piece of the benchmark stack in its own process.

Roles: `moto` (AWS), `sandbox` (the Meta sandbox, plus bench/sandbox_bench.py's bulk set-ups) and
`api` (the local API, configured by its environment). In production Meta, KMS and Lambda are
separate machines; here each gets its own interpreter, so none of them (nor the load generator
or the function under test, in the bench driver) waits on another's GIL. They still share this
machine's cores, which the report says where it matters.

The API is served from a fixed pool of worker threads: each keeps its own Postgres connection
for the whole run, as a warm Lambda container does (devstack's thread-per-request server would
open a new connection per request and measure that instead). Each role writes {"url": ...} to
its ready file, then runs until its standard input closes (the driver exiting) or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler

HELLO_PATH = "/crm/bench/hello"


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: object, **kwargs: object) -> None:
        pass


class PooledWSGIServer(BaseWSGIServer):
    """HTTP/1.0 (one request per connection) served by `workers` long-lived threads."""

    request_queue_size = 1024  # 100 simultaneous users must not overflow the listen backlog

    def __init__(self, host: str, port: int, app, workers: int) -> None:
        super().__init__(host, port, app, handler=_QuietHandler)
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="warm-container")

    def process_request(self, request, client_address) -> None:
        self.pool.submit(self._serve_one, request, client_address)

    def _serve_one(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)


def serve_moto(port: int):
    from moto.server import ThreadedMotoServer

    from devstack import moto_sqs

    moto_sqs.apply()  # SQS's cost at depth, not moto's (devstack/moto_sqs.py)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return f"http://127.0.0.1:{port}", server.stop


def serve_sandbox(port: int):
    from bench.sandbox_bench import attach
    from sandbox.server import start

    running = start(port=port)
    attach(running.app)
    return running.url, running.stop


def serve_api(port: int, workers: int):
    from devstack.local_api import LocalApi
    from devstack.template import HttpRoute

    api = LocalApi()
    api.routes.insert(0, HttpRoute(method="GET", path=HELLO_PATH,
                                   handler="bench/hello_api.lambda_handler",
                                   function="BenchHello", authorized=True, timeout=29))
    server = PooledWSGIServer("127.0.0.1", port, api.wsgi, workers)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop() -> None:
        server.shutdown()
        server.pool.shutdown(wait=False, cancel_futures=True)

    return f"http://127.0.0.1:{server.server_port}", stop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["moto", "sandbox", "api"])
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()

    if args.role == "moto":
        url, stop_role = serve_moto(args.port)
    elif args.role == "sandbox":
        url, stop_role = serve_sandbox(args.port)
    else:
        url, stop_role = serve_api(args.port, args.workers)
    ready = Path(args.ready_file)
    ready.with_suffix(".tmp").write_text(json.dumps({"url": url}))
    ready.with_suffix(".tmp").rename(ready)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def watch_stdin() -> None:
        sys.stdin.read()  # EOF: the bench driver is done or gone
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    stop.wait()
    stop_role()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make dev`: the local stack, kept running, with the reference Marketing Hub page.

Starts moto, Postgres (embedded unless $DATABASE_URL is set), the Meta sandbox and the local API
on a fixed port (3000, or $PORT), adds the local-only routes of devstack/dev_routes.py (the page,
a demo sign-in, "run now" for the scheduled jobs), seeds the demo tenant's leads, prints what to
open and waits. Ctrl-C or SIGTERM stops every part; nothing is left running.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading

from devstack.dev_routes import DEMO_TENANT, DevRoutes, demo_campaign_ids, seed_tenant
from devstack.queues import QueuePump
from devstack.stack import LocalStack
from sandbox.whatsapp_send import SendControl


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # As the API server binds: connections of a previous run in TIME_WAIT do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def deliver_status_webhooks(stack: LocalStack) -> None:
    """Let the sandbox POST signed delivery statuses (sent, delivered, read) of every message
    to the local API's webhook route, as Meta would: the message log then shows them."""
    control = SendControl(stack.sandbox.url)
    try:
        control.configure_webhooks(url=f"{stack.api_url}/crm/webhooks/meta", enabled=True,
                                   numbers=None)
    finally:
        control.close()


def banner(stack: LocalStack, seeded: int) -> str:
    url = stack.api_url
    return f"""
Marketing Hub is running locally.

  Open  {url}/            the reference Marketing Hub page
        Sign in as the demo admin (or member) of tenant "{DEMO_TENANT}" ({seeded} demo leads
        seeded now), then: Marketing -> "Conectar Meta Ads" -> the sandbox's consent page ->
        pick an ad account -> results; HSM WhatsApp -> connect a number -> "Nueva regla" ->
        "Ejecutar envío ahora (local)" -> the message log.

  Local API   {url}   (the routes of template.yaml; JWTs signed by devstack/jwt_tokens)
  Meta        {stack.sandbox.url}   (the sandbox: consent page, Graph, WhatsApp)
  OpenAPI     {url}/openapi.json

Use this exact address: the OAuth binding cookie belongs to its host, so mixing
127.0.0.1 and localhost ends in "invalid_state". Press Ctrl-C to stop.
"""


def main() -> int:
    port = int(os.environ.get("PORT", "3000"))
    if not port_is_free(port):
        print(f"Port {port} is in use: stop what runs there or choose another, e.g. "
              f"PORT=3001 make dev", file=sys.stderr)
        return 1
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        stop.set()

    # Set before anything starts, so a signal during start-up still stops cleanly.
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    # One line per HTTP request of moto and the local API would bury the functions' own logs.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    print("Starting the local stack (moto, Postgres, Meta sandbox, local API)...", flush=True)
    stack = LocalStack(api_port=port)
    stack.extra_routes = DevRoutes(stack).table()
    with stack:
        seeded = seed_tenant(DEMO_TENANT, demo_campaign_ids(stack.sandbox))
        deliver_status_webhooks(stack)
        # Lambda's SQS event sources: queued work (a connected account's sync, the dispatch
        # workers' tenants) reaches its function within a second, as in AWS.
        pump = QueuePump().start()
        print(banner(stack, seeded), flush=True)
        while not stop.wait(0.5):
            pass
        print("\nStopping the local stack...", flush=True)
        pump.stop()
    print("Stopped: no local services are left running.", flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    # Every service was stopped above. Skip the interpreter's final garbage collection of
    # moto's and botocore's object graphs: it alone took ~5 s after Ctrl-C on a 2-core machine.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

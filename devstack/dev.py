"""`make dev`: the local stack, kept running, with the reference Marketing Hub page.

Starts moto, Postgres (embedded unless $DATABASE_URL is set), the Meta sandbox and the local API
on a fixed port (3000, or $PORT), adds the local-only routes of devstack/dev_routes.py (the page,
a demo sign-in, "run now" for the scheduled jobs), seeds the demo tenant's leads, prints what to
open and waits. Ctrl-C or SIGTERM stops every part, during start-up too; nothing is left running.

$CORS_ORIGIN is the CRM frontend's origin (e.g. http://localhost:5173), what template.yaml's
FrontendUrl parameter is in AWS: the origin CORS allows and where the OAuth callback returns.
Unset, it is the local API's own origin, where the reference page runs.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import warnings

from devstack.dev_config import ConfigError, DevConfig, check_database, from_environment
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
    """Let the sandbox POST signed delivery statuses (sent, delivered, read) of every message,
    and the leadgen notifications of subscribed Pages, to the local API's webhook route, as
    Meta would: the message log and the Lead Ads leads then show them."""
    from sandbox.pages import PagesControl

    control = SendControl(stack.sandbox.url)
    pages = PagesControl(stack.sandbox.url)
    try:
        control.configure_webhooks(url=f"{stack.api_url}/crm/webhooks/meta", enabled=True,
                                   numbers=None)
        pages.configure_webhooks(url=f"{stack.api_url}/crm/webhooks/meta", enabled=True)
    finally:
        control.close()
        pages.close()


def banner(stack: LocalStack, seeded: int) -> str:
    url = stack.api_url
    frontend = stack.env["FRONTEND_URL"]
    if frontend == url:
        frontend_lines = (f"{frontend}   the page above: CORS allows it (with credentials) and\n"
                          "              Meta's consent returns to it. Your own dev server "
                          "instead:\n              CORS_ORIGIN=http://localhost:5173 make dev")
    else:
        frontend_lines = (f"{frontend}   CORS allows it (with credentials), and Meta's "
                          f"consent\n              returns to {frontend}/crm/marketing (the "
                          "page above works too, but for that)")
    return f"""
Marketing Hub is running locally.

  Open        {url}/   the reference Marketing Hub page
              Sign in as the demo admin (or member) of tenant "{DEMO_TENANT}" ({seeded} demo
              leads seeded now), then: Marketing -> "Conectar Meta Ads" -> the sandbox's consent
              page -> pick an ad account -> results; HSM WhatsApp -> connect a number ->
              "Nueva regla" -> "Ejecutar envío ahora (local)" -> the message log.

  API docs    {url}/docs   (the OpenAPI document: /openapi.json, as docs/openapi.json)
  Local API   {url}   template.yaml's routes; a token: POST {url}/__dev/session
  Frontend    {frontend_lines}
  Meta        {stack.sandbox.url}   the sandbox: consent page, Graph, WhatsApp

Use {url} as printed: the OAuth cookie belongs to one host name, so the page sends a
browser that came by another (localhost, 127.0.0.1) here before it signs in. Ctrl-C stops it all.
"""


def quiet_local_noise() -> None:
    """What only clutters a terminal: one line per HTTP request of moto and the local API, and
    Powertools' warning for every invocation that published no metric."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # pgserver logs a failed initdb or pg_ctl at length (Ctrl-C during start-up kills them too);
    # start-up failures are reported in one line below instead.
    logging.getLogger("pgserver").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", message="No application metrics to publish")


def check(config: DevConfig) -> None:
    if not port_is_free(config.port):
        raise ConfigError(f"Port {config.port} is in use: stop what runs there or choose another, "
                          f"e.g. PORT={config.port + 1} make dev")
    if config.database_url:
        check_database(config.database_url)


def main() -> int:
    try:
        config = from_environment()
        check(config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        stop.set()

    # Set before anything starts, so a signal during start-up still stops cleanly.
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    quiet_local_noise()
    print("Starting the local stack (moto, Postgres, Meta sandbox, local API)...", flush=True)
    stack = LocalStack(api_port=config.port, frontend_url=config.frontend_url)
    stack.extra_routes = DevRoutes(stack).table()
    try:
        stack.start()
    except Exception as exc:
        # Ctrl-C reaches initdb and Postgres as well (one process group): they die, the start
        # fails, and LocalStack.start has already removed what it had started.
        if stop.is_set():
            print("Stopped during start-up: no local services are left running.", flush=True)
            return 130
        reason = " ".join(str(exc).split()) or type(exc).__name__
        print(f"The local stack did not start ({type(exc).__name__}: {reason[:300]}); "
              "nothing is left running.", file=sys.stderr, flush=True)
        return 1
    # Lambda's SQS event sources: queued work (a connected account's sync, the dispatch
    # workers' tenants) reaches its function within a second, as in AWS.
    pump = QueuePump()
    try:
        if not stop.is_set():
            seeded = seed_tenant(DEMO_TENANT, demo_campaign_ids(stack.sandbox))
            deliver_status_webhooks(stack)
            pump.start()
            print(banner(stack, seeded), flush=True)
        while not stop.wait(0.5):
            pass
        print("\nStopping the local stack...", flush=True)
    finally:
        pump.stop()
        stack.stop()
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

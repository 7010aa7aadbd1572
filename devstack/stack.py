"""The local stack in one object: moto (AWS), Postgres, the Meta sandbox and the local API.

Tests, `make demo` and `make dev` all start it the same way, then call the same handlers with the
same events as API Gateway and EventBridge would.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from devstack import aws_local, openapi, pgbouncer, template
from devstack.cors import CorsPolicy
from devstack.local_api import LocalApi, ServerThread
from devstack.postgres import LocalDatabase, provision

SANDBOX_APP_ID = "1234567890"
SANDBOX_APP_SECRET = "sandbox-app-secret"
VERIFY_TOKEN = "local-verify-token"


def reset_caches() -> None:
    """Forget cached settings, clients and connections after the environment changed."""
    from shared.ads import stats
    from shared.hsm import threads
    from shared.platform import aws, db, settings

    settings.get_settings.cache_clear()
    aws.reset_clients()
    db.reset_connection()
    threads.close_container_threads()  # their connections belong to the previous database
    stats.forget_answers()  # a new database starts its data versions again
    try:
        from shared.platform import crypto

        crypto.reset_token_cipher()
    except ImportError:  # pragma: no cover - crypto lands with the foundation
        pass


def local_env(*, aws_endpoint: str, sandbox_url: str, api_url: str, frontend_url: str,
              database: LocalDatabase, tables: dict[str, str]) -> dict[str, str]:
    """The variables a function sees on the local stack (the template's, pointed at moto, the
    sandbox and the local database); creates the stack's KMS key, event bus, work queues and
    the rules that feed them in moto."""
    bus = aws_local.create_event_bus(aws_endpoint)
    queues = aws_local.create_queues(aws_endpoint)
    aws_local.create_queue_rules(aws_endpoint, bus, queues)
    queue_env = {var: queues[logical] for var, logical in
                 template.global_env_refs("AWS::SQS::Queue").items()}
    return {
        **queue_env,
        "AWS_ENDPOINT_URL": aws_endpoint,
        "AWS_DEFAULT_REGION": aws_local.REGION,
        "AWS_REGION": aws_local.REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_SERVICE_NAME": "marketing-hub",
        "POWERTOOLS_METRICS_NAMESPACE": "CrmVentas/MarketingHub",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "META_APP_ID": SANDBOX_APP_ID,
        "META_APP_SECRET": SANDBOX_APP_SECRET,
        "META_VERIFY_TOKEN": VERIFY_TOKEN,
        "META_GRAPH_URL": sandbox_url,
        "META_DIALOG_URL": sandbox_url,
        "META_REDIRECT_URI": f"{api_url}/crm/auth/meta/callback",
        "FRONTEND_URL": frontend_url,
        "DATABASE_URL": database.app_dsn,
        "MIGRATIONS_DATABASE_URL": database.owner_dsn,
        "OAUTH_STATE_TABLE": tables["OAuthStateTable"],
        "TOKEN_KMS_KEY_ID": aws_local.create_key(aws_endpoint),
        "EVENT_BUS_NAME": bus,
    }


def api_host_for(frontend_url: str | None) -> str:
    """The one host name the local API goes by. The OAuth binding cookie belongs to a host, and
    `localhost` and `127.0.0.1` are different sites to a browser: a frontend on localhost must
    call the API, and be sent back by Meta, on localhost too. Otherwise 127.0.0.1."""
    host = urlsplit(frontend_url).hostname if frontend_url else None
    return "localhost" if host == "localhost" else "127.0.0.1"


@dataclass
class LocalStack:
    api_port: int = 0
    # Template parameter FrontendUrl: where the OAuth callback sends the browser, and the origin
    # CORS allows (template.yaml's CorsConfiguration). Default: the local API's own origin.
    frontend_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    database: LocalDatabase | None = None
    # More local-only routes for LocalApi (e.g. devstack/dev_routes.py: the reference page).
    extra_routes: dict | None = None

    @property
    def environment_before(self) -> dict[str, str]:
        """The process environment from before this stack set its own, for a child process
        that must start a stack of its own (e.g. the demo run by a test)."""
        return dict(self._saved_env)

    def start(self) -> LocalStack:
        self._saved_env = dict(os.environ)
        try:
            self._start_parts()
        except BaseException:  # a failed or interrupted start leaves nothing running either
            self.stop()
            raise
        return self

    def _start_parts(self) -> None:
        from sandbox.server import start as start_sandbox

        self.moto, self.aws_endpoint = aws_local.start_moto()
        self.sandbox = start_sandbox()
        self.database = provision()
        if pgbouncer.requested():  # DB_POOLER=pgbouncer: the app role through a pooler
            self.pooler = pgbouncer.start(self.database.app_dsn)
            self.database.app_dsn = self.pooler.dsn
        # GET /openapi.json: the whole HTTP API's OpenAPI document (devstack/openapi.py).
        self.api = LocalApi(extra_routes={**openapi.routes(), **(self.extra_routes or {})})
        self.api_server = ServerThread(self.api.wsgi, port=self.api_port,
                                       host=api_host_for(self.frontend_url))
        frontend_url = self.frontend_url or self.api_server.url
        self.api.cors = CorsPolicy.from_template({"FrontendUrl": frontend_url})
        tables = aws_local.create_tables(self.aws_endpoint)
        self.env = local_env(aws_endpoint=self.aws_endpoint, sandbox_url=self.sandbox.url,
                             api_url=self.api_server.url, frontend_url=frontend_url,
                             database=self.database, tables=tables)
        os.environ.update(self.env)
        reset_caches()

    @property
    def api_url(self) -> str:
        return self.api_server.url

    @contextlib.contextmanager
    def serving_frontend(self, url: str) -> Iterator[None]:
        """For a while, `url` is the frontend (template parameter FrontendUrl): CORS allows it
        and the OAuth callback returns there. E.g. the reference page on another origin."""
        from shared.platform.settings import get_settings

        saved = self.env["FRONTEND_URL"], self.api.cors

        def use(frontend: str, cors: CorsPolicy) -> None:
            self.env["FRONTEND_URL"] = os.environ["FRONTEND_URL"] = frontend
            self.api.cors = cors
            get_settings.cache_clear()

        use(url, CorsPolicy.from_template({"FrontendUrl": url}))
        try:
            yield
        finally:
            use(*saved)

    def stop(self) -> None:
        # Whatever part started (stop also runs after a start that failed half-way).
        for part in ("api_server", "sandbox", "moto", "pooler"):
            running = getattr(self, part, None)
            if running is not None:
                with contextlib.suppress(Exception):  # best effort shutdown of local services
                    running.stop()
        reset_caches()
        if self.database is not None:
            self.database.drop()
        os.environ.clear()
        os.environ.update(self._saved_env)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

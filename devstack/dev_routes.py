"""Local-only routes of `make dev` and the browser tests, served by LocalApi's `extra_routes`.

- the reference Marketing Hub page (web/) at `/` and at `/crm/marketing`, where the OAuth
  callback sends the browser back (FRONTEND_URL is the local API's own origin);
- POST /__dev/session: a locally signed JWT for a demo admin or member of a demo tenant (the
  tenant's demo leads are seeded on first sign-in), standing in for the CRM's sign-in;
- POST /__dev/jobs/dispatch and /__dev/jobs/sync: "run now" for what EventBridge runs in AWS
  (the HSM dispatcher's schedule; the campaign sync that MetaAdAccountConnected triggers).

None of this exists in template.yaml, so none of it is ever deployed.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
from werkzeug.wrappers import Request, Response

from devstack import jwt_tokens
from devstack.lambda_context import LocalContext
from devstack.template import function_handlers, load_template

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
PAGE_PATHS = ("/", "/crm/marketing")
STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".html": "text/html; charset=utf-8",
}
DEMO_TENANT = "demo-ventas"
DEMO_USERS = {"admin": ("demo-admin", "Ana Admin"), "member": ("demo-member", "Mario Miembro")}
_TENANT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
# The page's own headers: the contract's security headers, and nothing cached.
PAGE_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, default=str), status=status, content_type="application/json",
                    headers=PAGE_HEADERS)


def _error(status: int, code: str, message: str) -> Response:
    return _json({"error": {"code": code, "message": message}}, status)


def _static(name: str) -> Response:
    path = (WEB_DIR / name).resolve()
    content_type = STATIC_TYPES.get(path.suffix)
    if path.parent != WEB_DIR or content_type is None or not path.is_file():
        return _error(404, "not_found", "Not found.")
    return Response(path.read_bytes(), content_type=content_type, headers=PAGE_HEADERS)


def _body(request: Request) -> dict[str, Any]:
    data = request.get_json(silent=True)
    return data if isinstance(data, dict) else {}


# -- demo data ---------------------------------------------------------------------------------
FIRST_NAMES = ("Lucía", "Mateo", "Sofía", "Hugo", "Martina", "Leo", "Valeria", "Daniel",
               "Camila", "Pablo", "Elena", "Álvaro", "Carmen", "Diego", "Paula", "Javier")
LAST_NAMES = ("García", "Rodríguez", "López", "Martínez", "Sánchez", "Pérez", "Gómez",
              "Fernández", "Díaz", "Moreno", "Romero", "Navarro")
DEMO_LEADS = 48


def demo_campaign_ids(sandbox: Any, limit: int = 12) -> list[str]:
    """Campaign ids of the sandbox's demo ad account (Ana Demo's "Ventas Demo 01"), read from the
    in-process sandbox, so the demo leads are attributed to campaigns the sync will bring in."""
    ads = sandbox.world.areas.get("ads")
    if ads is None:
        return []
    with sandbox.world.lock:
        account = ads.accounts.get(ads.layout["demo_account_id"].removeprefix("act_"))
        return [c.id for c in account.campaigns[:limit]] if account else []


def demo_leads(tenant_id: str, campaign_ids: list[str], now: datetime) -> list[dict[str, Any]]:
    """A deterministic set of leads for one tenant: most from Meta campaigns, some won deals,
    some contacted or opted out, a few too recent for a 24-hour follow-up."""
    rng = random.Random(hashlib.sha256(tenant_id.encode()).digest())
    # Distinct phones per tenant: the sandbox's pair limit is per recipient.
    base = 600_000_000 + int(hashlib.sha256(tenant_id.encode()).hexdigest()[:6], 16) % 300_000_000
    leads = []
    for i in range(DEMO_LEADS):
        campaign = rng.choice(campaign_ids) if campaign_ids and i % 4 != 3 else None
        won = campaign is not None and i % 3 == 0
        contacted = i % 7 == 6
        hours_ago = 2 + 3 * i if i < 6 else 30 + rng.randint(0, 24 * 40)
        leads.append({
            "name": f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
            "phone": f"+34{base + i * 7919 % 1_000_000:09d}",
            "email": f"lead{i + 1}@example.com",
            "status": "won" if won else "contacted" if contacted else "new",
            "created_at": now - timedelta(hours=hours_ago),
            "last_contacted_at": now - timedelta(hours=1) if contacted or won else None,
            "whatsapp_opt_out": i % 11 == 10,
            "lead_source": "meta_ads" if campaign else rng.choice(("web", "referido")),
            "meta_campaign_id": campaign,
            "deal_value": rng.choice((1500, 2800, 4200, 6500)) if won else None,
            # As most CRM deals: no currency of their own, so a deal counts in its campaign's
            # (the ad account's). Before an account is connected the figures then stay one
            # story, in one (not yet known) currency, instead of a EUR row of revenue beside a
            # currency-less row of leads.
            "deal_currency": None,
        })
    return leads


def seed_tenant(tenant_id: str, campaign_ids: list[str]) -> int:
    """Insert the demo leads once per tenant (as the app role, under row-level security);
    returns how many were inserted (0 when the tenant already has leads)."""
    from shared.platform.db import tenant_tx

    with tenant_tx(tenant_id) as conn:
        # Two first sign-ins at once must not seed twice.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"demo-seed:{tenant_id}",))
        if conn.execute("SELECT 1 FROM leads LIMIT 1").fetchone():
            return 0
        leads = demo_leads(tenant_id, campaign_ids, datetime.now(UTC))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO leads (tenant_id, name, phone, email, status, created_at,"
                " last_contacted_at, whatsapp_opt_out, lead_source, meta_campaign_id,"
                " deal_value, deal_currency) VALUES (%(tenant_id)s, %(name)s, %(phone)s,"
                " %(email)s, %(status)s, %(created_at)s, %(last_contacted_at)s,"
                " %(whatsapp_opt_out)s, %(lead_source)s, %(meta_campaign_id)s, %(deal_value)s,"
                " %(deal_currency)s)",
                [{"tenant_id": tenant_id, **lead} for lead in leads],
            )
        return len(leads)


# -- jobs --------------------------------------------------------------------------------------
def scheduled_event() -> dict[str, Any]:
    """What EventBridge Scheduler/rules hand a scheduled function."""
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
        "source": "aws.scheduler", "account": "000000000000",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "region": "us-east-1",
        "resources": ["arn:aws:scheduler:us-east-1:000000000000:schedule/default/local"],
        "detail": {},
    }


def _dispatch_counts(tenant_id: str, since: datetime) -> dict[str, int]:
    """What the workers did for this tenant since `since`, from its message log."""
    from shared.platform.db import tenant_tx

    with tenant_tx(tenant_id) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT rule_id) FILTER (WHERE updated_at >= %(t)s) AS rules,"
            " count(*) FILTER (WHERE sent_at >= %(t)s) AS sent,"
            " count(*) FILTER (WHERE status IN ('FAILED', 'UNKNOWN') AND updated_at >= %(t)s)"
            " AS failed,"
            " count(*) FILTER (WHERE status = 'SKIPPED' AND created_at >= %(t)s) AS skipped"
            " FROM automation_logs", {"t": since}).fetchone()
    return dict(row)


def invoke_function(folder: str, event: dict[str, Any]) -> Any:
    """Call functions/<folder>/app.lambda_handler as Lambda would, with its template timeout.
    Raises LookupError when template.yaml has no such function (not built yet)."""
    handler = f"functions/{folder}/app.lambda_handler"
    logical = next((name for name, h in function_handlers().items() if h == handler), None)
    if logical is None:
        raise LookupError(folder)
    template = load_template()
    props = template["Resources"][logical].get("Properties", {})
    timeout = props.get("Timeout", template.get("Globals", {}).get("Function", {})
                        .get("Timeout", 3))
    module = importlib.import_module(f"functions.{folder}.app")
    return module.lambda_handler(event, LocalContext(function_name=logical,
                                                     timeout_seconds=float(timeout)))


@dataclass
class DevRoutes:
    """The routes, bound to a LocalStack whose parts they read at request time."""

    stack: Any  # devstack.stack.LocalStack (started before the first request)

    def table(self) -> dict[str, Callable[[Request], Response]]:
        routes: dict[str, Callable[[Request], Response]] = {p: self.page for p in PAGE_PATHS}
        routes.update({
            "*": self.static,
            "/__dev/config": self.config,
            "/__dev/session": self.session,
            "/__dev/jobs/dispatch": self.run_dispatch,
            "/__dev/jobs/sync": self.run_sync,
        })
        return routes

    # -- page ----------------------------------------------------------------------------------
    def page(self, request: Request) -> Response:
        if request.method != "GET":
            return _error(405, "method_not_allowed", "Only GET is served here.")
        api = urlsplit(self.stack.api_url)
        if request.host != api.netloc:
            # localhost and 127.0.0.1 are two sites to a browser: a sign-in or an OAuth binding
            # cookie made under one is not there under the other. Move before anything starts.
            query = f"?{request.query_string.decode('latin-1')}" if request.query_string else ""
            return Response(status=302, headers={
                **PAGE_HEADERS, "Location": f"{api.scheme}://{api.netloc}{request.path}{query}"})
        return _static("index.html")

    def static(self, request: Request) -> Response:
        return _static(request.path.lstrip("/"))

    def config(self, request: Request) -> Response:
        return _json({"demo_tenant": DEMO_TENANT, "local": True,
                      "sandbox_url": self.stack.sandbox.url})

    # -- sign-in -------------------------------------------------------------------------------
    def session(self, request: Request) -> Response:
        if request.method != "POST":
            return _error(405, "method_not_allowed", "Use POST.")
        body = _body(request)
        role = body.get("role", "admin")
        tenant_id = body.get("tenant_id") or DEMO_TENANT
        if role not in DEMO_USERS:
            return _error(422, "validation_error", "role must be admin or member.")
        if not isinstance(tenant_id, str) or not _TENANT_ID.match(tenant_id):
            return _error(422, "validation_error", "tenant_id: letters, digits and _.:- only.")
        sub, name = DEMO_USERS[role]
        seeded = seed_tenant(tenant_id, demo_campaign_ids(self.stack.sandbox))
        token = jwt_tokens.sign(tenant_id, role=role, sub=sub, ttl=8 * 3600,
                                extra={"name": name})
        return _json({"token": token, "tenant_id": tenant_id, "role": role, "user_id": sub,
                      "name": name, "seeded_leads": seeded})

    # -- jobs ----------------------------------------------------------------------------------
    def _admin_claims(self, request: Request) -> dict[str, Any] | Response:
        if request.method != "POST":
            return _error(405, "method_not_allowed", "Use POST.")
        auth = request.headers.get("Authorization", "")
        try:
            claims = jwt_tokens.verify(auth[7:].strip()) if auth.lower().startswith(
                "bearer ") else None
        except jwt.InvalidTokenError:
            claims = None
        if not claims or not claims.get("custom:tenant_id"):
            return _error(401, "unauthorized", "A valid sign-in is required.")
        if claims.get("custom:role") != "admin":
            return _error(403, "forbidden", "This action needs the admin role.")
        return claims

    def run_dispatch(self, request: Request) -> Response:
        claims = self._admin_claims(request)
        if isinstance(claims, Response):
            return claims
        from devstack.queues import deliver_all

        started = datetime.now(UTC)
        try:
            planned = invoke_function("hsm_dispatch", scheduled_event())
        except LookupError:
            return _error(501, "not_available", "El envío automático (hsm_dispatch) aún no "
                          "existe en template.yaml.")
        deliver_all(queues={"HsmDispatchQueue"})  # the workers, as Lambda's SQS source runs them
        done = _dispatch_counts(claims["custom:tenant_id"], started)
        return _json({"summary": {**done, "tenants_queued": planned["tenants_queued"]}})

    def run_sync(self, request: Request) -> Response:
        claims = self._admin_claims(request)
        if isinstance(claims, Response):
            return claims
        from shared.platform.db import tenant_tx

        tenant_id = claims["custom:tenant_id"]
        with tenant_tx(tenant_id) as conn:
            accounts = [r["account_id"] for r in conn.execute(
                "SELECT account_id FROM tenant_meta_accounts ORDER BY account_id").fetchall()]
        from devstack.queues import deliver_all, queue_url
        from shared.platform import queues

        # What MetaAdAccountConnected's rule puts on the queue, then the sync worker.
        queues.send(queue_url("CampaignSyncQueue"), [
            {"tenant_id": tenant_id, "account_id": account_id, "reason": "connected"}
            for account_id in accounts])
        deliver_all(queues={"CampaignSyncQueue"})
        with tenant_tx(tenant_id) as conn:
            results = [{"account_id": r["account_id"], "result": {
                "outcome": r["last_sync_outcome"], "campaigns": r["campaigns_synced"]}}
                for r in conn.execute("SELECT account_id, last_sync_outcome, campaigns_synced "
                                      "FROM tenant_meta_accounts ORDER BY account_id")]
        return _json({"accounts": len(accounts), "results": results})

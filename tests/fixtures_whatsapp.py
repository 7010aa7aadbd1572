"""WhatsApp fixtures: sandbox accounts, a Meta connection, a connected sender with synced
templates, and small row builders (leads, rules, logs) written as the app role under RLS.

Load with `pytest_plugins = ["tests.fixtures_whatsapp"]`. Every setup gets fresh sandbox ids
(a new sandbox user, business, WABA and number), so tests never share a phone number and never
need a sandbox reset.

    whatsapp_setup   -> WhatsAppSetup (tenant, user, token, waba, phone, template ids)
    whatsapp_tenant  -> its tenant id: a connected sender whose synced templates include
                        lead_followup_es (es, APPROVED, 1 body variable), promo_rechazada
                        (REJECTED, PROMOTIONAL) and recordatorio_pausado (PAUSED)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest
from psycopg.types.json import Jsonb

from devstack.stack import SANDBOX_APP_SECRET
from sandbox.control import SandboxControl
from shared.connection import credentials
from shared.platform.db import tenant_tx
from shared.whatsapp.connect import ConnectRequest, connect_sender

WHATSAPP_SCOPES = ["business_management", "whatsapp_business_management",
                   "whatsapp_business_messaging"]


class WhatsAppSandbox:
    """Client for the sandbox's /__sandbox/whatsapp control endpoints."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url.rstrip("/") + "/__sandbox/whatsapp", timeout=10)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.request(method, path, json=body)
        response.raise_for_status()
        return response.json()

    def create_account(self, **body: Any) -> dict[str, Any]:
        """user_id (default: a new user), phones (count or list of overrides), templates
        ("default" | "none" | list), client_of (a business id), waba_name."""
        return self._call("POST", "/accounts", body)

    def waba(self, waba_id: str) -> dict[str, Any]:
        return self._call("GET", f"/wabas/{waba_id}")

    def set_access(self, waba_id: str, user_id: str, grant: bool) -> None:
        self._call("POST", f"/wabas/{waba_id}/access", {"user_id": user_id, "grant": grant})

    def upsert_template(self, waba_id: str, name: str, **fields: Any) -> dict[str, Any]:
        return self._call("POST", "/templates", {"waba_id": waba_id, "name": name, **fields})

    def bulk_templates(self, waba_id: str, count: int, prefix: str = "aviso") -> int:
        return self._call("POST", "/templates/bulk", {"waba_id": waba_id, "count": count,
                                                      "prefix": prefix})["count"]

    def set_template_status(self, template_id: str, status: str,
                            rejected_reason: str = "NONE") -> dict[str, Any]:
        return self._call("POST", f"/templates/{template_id}/status",
                          {"status": status, "rejected_reason": rejected_reason})

    def delete_template(self, template_id: str) -> None:
        self._call("DELETE", f"/templates/{template_id}")

    def update_phone(self, phone_id: str, **fields: Any) -> dict[str, Any]:
        return self._call("POST", f"/phones/{phone_id}", fields)


@dataclass
class WhatsAppSetup:
    tenant_id: str
    user_id: str
    token: str
    business_id: str
    waba_id: str
    phone_number_ids: list[str]
    templates: dict[str, str] = field(default_factory=dict)  # "name:language" -> template id

    @property
    def phone_number_id(self) -> str:
        return self.phone_number_ids[0]


@pytest.fixture(scope="session")
def wa_sandbox(stack) -> WhatsAppSandbox:
    client = WhatsAppSandbox(stack.sandbox.url)
    yield client
    client.http.close()


@pytest.fixture(scope="session")
def stack_sandbox(stack) -> SandboxControl:
    """Control client for the sandbox the functions call (never reset here)."""
    with SandboxControl(stack.sandbox.url) as control:
        yield control


def connect_meta(control: SandboxControl, tenant_id: str, user_id: str,
                 scopes: list[str] | None = None) -> str:
    """What a finished OAuth connect leaves behind: the tenant's stored Meta token."""
    token = control.issue_token(user_id, scopes=scopes or WHATSAPP_SCOPES)
    with tenant_tx(tenant_id) as conn:
        credentials.save(conn, tenant_id, token, expires_at=None, data_access_expires_at=None,
                         meta_user_id=user_id, scopes=scopes or WHATSAPP_SCOPES)
    return token


def new_account(wa: WhatsAppSandbox, control: SandboxControl, tenant_id: str,
                **account: Any) -> WhatsAppSetup:
    """A fresh sandbox WABA for a fresh user, and the tenant's Meta connection for that user
    (the sender is not connected yet)."""
    created = wa.create_account(**account)
    token = connect_meta(control, tenant_id, created["user_id"])
    return WhatsAppSetup(tenant_id, created["user_id"], token, created["business_id"],
                         created["waba_id"], created["phone_number_ids"], created["templates"])


def connect(setup: WhatsAppSetup, phone_number_id: str | None = None, **options: Any
            ) -> dict[str, Any]:
    return connect_sender(setup.tenant_id, setup.user_id,
                          ConnectRequest(setup.waba_id, phone_number_id or setup.phone_number_id,
                                         **options))


@pytest.fixture
def whatsapp_setup(stack, wa_sandbox, stack_sandbox, tenant_id) -> WhatsAppSetup:
    setup = new_account(wa_sandbox, stack_sandbox, tenant_id)
    connect(setup)
    return setup


@pytest.fixture
def whatsapp_tenant(whatsapp_setup) -> str:
    return whatsapp_setup.tenant_id


# -- rows --------------------------------------------------------------------------------------
def insert_lead(tenant_id: str, *, name: str = "Ana Pérez", phone: str | None = None,
                created_at: datetime | None = None, **columns: Any) -> str:
    phone = phone or f"+3461{uuid.uuid4().int % 10**7:07d}"
    values = {"tenant_id": tenant_id, "name": name, "phone": phone, **columns}
    if created_at is not None:
        values["created_at"] = created_at
    names = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    with tenant_tx(tenant_id) as conn:
        row = conn.execute(f"INSERT INTO leads ({names}) VALUES ({marks}) RETURNING id",
                           list(values.values())).fetchone()
    return str(row["id"])


def insert_rule(tenant_id: str, *, name: str | None = None,
                template_name: str = "lead_followup_es", language: str = "es",
                body_params: list[str] | None = None, delay_hours: int = 24,
                enabled: bool = True) -> str:
    with tenant_tx(tenant_id) as conn:
        row = conn.execute(
            "INSERT INTO automation_rules (tenant_id, name, trigger_type, delay_hours, "
            "template_name, language, body_params, enabled) "
            "VALUES (%s, %s, 'lead_followup', %s, %s, %s, %s, %s) RETURNING id",
            (tenant_id, name or f"rule {uuid.uuid4().hex[:6]}", delay_hours, template_name,
             language, Jsonb(body_params if body_params is not None else ["first_name"]),
             enabled),
        ).fetchone()
    return str(row["id"])


def insert_log(tenant_id: str, rule_id: str, lead_id: str, *, status: str = "SENT",
               wamid: str | None = None, phone: str | None = "+34611222333",
               created_at: datetime | None = None, **columns: Any) -> str:
    values = {"tenant_id": tenant_id, "rule_id": rule_id, "lead_id": lead_id,
              "template_name": "lead_followup_es", "language": "es", "phone": phone,
              "status": status, "wamid": wamid, **columns}
    if created_at is not None:
        values["created_at"] = created_at
    names = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    with tenant_tx(tenant_id) as conn:
        row = conn.execute(f"INSERT INTO automation_logs ({names}) VALUES ({marks}) RETURNING id",
                           list(values.values())).fetchone()
    return str(row["id"])


def fetch(tenant_id: str, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
    """Read as the app role inside the tenant's transaction (RLS applies)."""
    with tenant_tx(tenant_id) as conn:
        return conn.execute(sql, params).fetchall()


# -- webhooks -----------------------------------------------------------------------------------
def sign(body: bytes, secret: str = SANDBOX_APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def status_payload(phone_number_id: str, statuses: list[dict[str, Any]],
                   waba_id: str = "0") -> dict[str, Any]:
    """Meta's `messages` change carrying statuses (META_API.md §9)."""
    return {"object": "whatsapp_business_account", "entry": [{"id": waba_id, "changes": [{
        "field": "messages",
        "value": {"messaging_product": "whatsapp",
                  "metadata": {"display_phone_number": "34600000001",
                               "phone_number_id": phone_number_id},
                  "statuses": statuses}}]}]}


def status(wamid: str, kind: str, *, timestamp: int = 1_760_000_000, log_id: str | None = None,
           recipient: str = "34611222333", errors: list[dict[str, Any]] | None = None
           ) -> dict[str, Any]:
    item: dict[str, Any] = {"id": wamid, "status": kind, "timestamp": str(timestamp),
                            "recipient_id": recipient,
                            "pricing": {"billable": True, "pricing_model": "PMP",
                                        "category": "marketing", "type": "regular"}}
    if log_id:
        item["biz_opaque_callback_data"] = log_id
    if errors:
        item["errors"] = errors
    return item


def post_webhook(api, payload: dict[str, Any] | bytes, *, signature: str | None = "valid",
                 headers: dict[str, str] | None = None) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if signature == "valid":
        all_headers["X-Hub-Signature-256"] = sign(body)
    elif signature is not None:
        all_headers["X-Hub-Signature-256"] = signature
    return api.http.post("/crm/webhooks/meta", content=body, headers=all_headers)

"""Pages and Lead Ads area: a person's Pages and Page tokens, lead forms, leads, and signed
leadgen notifications (META_API.md §12).

What this models:
- `GET /{user-id}/accounts?fields=id,name,access_token,tasks` lists the Pages the person has a
  task on, each with a Page token (needs `pages_show_list`). A Page token acts for its Page
  only, never expires, carries the user token's scopes, and stops working (190/492) once the
  person loses their tasks on the Page;
- `POST|GET /{page-id}/subscribed_apps` with the Page token (`subscribed_fields=leadgen`; the
  POST needs `pages_manage_metadata`). The WABA edge of the same name (sandbox/whatsapp.py)
  answers for ids that are not Pages;
- `GET /{page-id}/leadgen_forms`, `GET /{form-id}/leads` (cursor-paged, `filtering` on
  `time_created` GREATER_THAN / LESS_THAN) and `GET /{leadgen-id}?fields=...`, all with the
  Page token and `leads_retrieval`;
- what a person cannot reach answers Meta's (#100) subcode 33 "does not exist, cannot be loaded
  due to missing permissions"; a user token where a Page token is needed answers (#190);
- a lead created through the control API is announced, when its Page has the app subscribed,
  by a POST of `{"object": "page", "entry": [...leadgen changes]}` signed with the app secret
  (X-Hub-Signature-256) to the configured URL: from a background thread (as Meta does), or
  inside the control call (`"deliver": "sync"`), or not at all (`"deliver": "none"`: the
  reconciliation's case). Latency and faults on every route come from the core's controls.

Control API (under /__sandbox/), wrapped by `PagesControl` below:
    POST /pages                          {"user_id"?, "name"?, "tasks"?, "forms"?} -> ids
    POST /pages/{id}/access              {"user_id", "tasks"} ([] removes the person)
    GET  /pages/{id}                     state: subscribed apps, forms, lead count
    POST /pages/{id}/leads               {"form_id"?, "count"?, "field_data"?, "phone"?, "ad_id"?,
                                          "campaign_id"?, "created_time"?, "deliver"?} -> leads
    POST /pages/{id}/notify              {"leadgen_ids", "deliver"?}: announce again (repeats)
    POST /pages/webhooks                 {"url", "enabled", "batch_size"}
    GET  /pages/webhooks                 config, deliveries, queued
"""

from __future__ import annotations

import itertools
import json
import queue
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from sandbox import webhook_delivery, whatsapp
from sandbox.core import (
    Area,
    Ctx,
    GraphError,
    requested_fields,
    select_fields,
    token_error,
    unsupported_object,
)
from sandbox.world import Token, World

area = Area("pages")

LIST_SCOPE = "pages_show_list"
SUBSCRIBE_SCOPE = "pages_manage_metadata"
LEADS_SCOPE = "leads_retrieval"
DEFAULT_TASKS = ["ADVERTISE", "ANALYZE", "CREATE_CONTENT", "MESSAGING", "MODERATE", "MANAGE"]
LEAD_DEFAULT_FIELDS = ("created_time", "id")


@dataclass
class Lead:
    id: str
    page_id: str
    form_id: str
    created_time: int
    field_data: list[dict[str, Any]]
    ad_id: str | None = None
    adset_id: str | None = None
    campaign_id: str | None = None
    platform: str = "fb"

    def graph(self) -> dict[str, Any]:
        created = datetime.fromtimestamp(self.created_time, UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")
        item: dict[str, Any] = {"id": self.id, "created_time": created,
                                "field_data": self.field_data, "form_id": self.form_id,
                                "is_organic": self.ad_id is None, "platform": self.platform}
        for key in ("ad_id", "adset_id", "campaign_id"):
            if getattr(self, key) is not None:
                item[key] = getattr(self, key)
        return item


@dataclass
class Form:
    id: str
    page_id: str
    name: str
    status: str = "ACTIVE"
    lead_ids: list[str] = field(default_factory=list)


@dataclass
class Page:
    id: str
    name: str
    tasks: dict[str, list[str]] = field(default_factory=dict)  # user id -> tasks
    subscribed: dict[str, list[str]] = field(default_factory=dict)  # app id -> fields
    form_ids: list[str] = field(default_factory=list)
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)  # (user, app) -> token


@dataclass
class WebhookConfig:
    url: str | None = None
    enabled: bool = False
    batch_size: int = 1


class PagesState:
    def __init__(self) -> None:
        self.pages: dict[str, Page] = {}
        self.forms: dict[str, Form] = {}
        self.leads: dict[str, Lead] = {}
        self.webhook = WebhookConfig()
        self.outbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self.deliveries: list[dict[str, Any]] = []
        self.worker: threading.Thread | None = None
        # Fresh ids per call, never reused across resets: tests never share a Page or a lead.
        self._ids = itertools.count(int(time.time() * 1000) * 1000 + secrets.randbelow(1000))

    def new_id(self) -> str:
        return str(next(self._ids))


@area.seed
def seed(world: World) -> PagesState:
    return PagesState()


def _state(ctx: Ctx) -> PagesState:
    return ctx.world.area("pages")


def _require_scope(token: Token, scope: str) -> None:
    if scope not in token.scopes:
        raise GraphError(200, f"(#200) Requires {scope} permission to access this resource")


def _page_token_for(ctx: Ctx, page: Page) -> Token:
    """The caller must present this Page's token, and its person must still have a task on it."""
    token = ctx.token
    if token.page_id is None:
        if page.tasks.get(token.user_id):
            raise GraphError(190, "(#190) This method must be called with a Page Access Token")
        raise unsupported_object(ctx.method, page.id)
    if token.page_id != page.id:
        raise unsupported_object(ctx.method, page.id)
    if not page.tasks.get(token.user_id):
        raise token_error(token, 492, ctx.world.now())
    return token


def _page(ctx: Ctx, page_id: str) -> Page:
    page = _state(ctx).pages.get(page_id)
    if page is None:
        raise unsupported_object(ctx.method, page_id)
    return page


# -- Graph routes -------------------------------------------------------------------------------
@area.route("GET", "/{user_id}/accounts", auth="user")
def accounts(ctx: Ctx) -> dict[str, Any]:
    user_id = ctx.user_id(ctx.path_params["user_id"])
    if user_id != ctx.token.user_id or ctx.token.page_id is not None:
        raise unsupported_object(ctx.method, ctx.path_params["user_id"])
    _require_scope(ctx.token, LIST_SCOPE)
    fields = requested_fields(ctx.params.get("fields"))
    state = _state(ctx)
    items = []
    with ctx.world.lock:
        for page in state.pages.values():
            tasks = page.tasks.get(user_id)
            if not tasks:
                continue
            key = (user_id, ctx.token.app_id)
            value = page.tokens.get(key)
            if value is None or value not in ctx.world.tokens:
                issued = ctx.world.issue_token(user_id, ctx.token.app_id, ctx.token.scopes,
                                               kind="long", expires_at=0)
                issued.page_id = page.id
                page.tokens[key] = value = issued.value
            items.append({"id": page.id, "name": page.name, "access_token": value,
                          "category": "Local business", "tasks": list(tasks)})
    return ctx.page([select_fields(i, fields, ("name", "access_token", "category", "tasks"))
                     for i in items])


@area.route("POST", "/{node_id}/subscribed_apps", auth="user")
def subscribe_app(ctx: Ctx) -> dict[str, Any]:
    page = _state(ctx).pages.get(ctx.path_params["node_id"])
    if page is None:  # a WABA's edge of the same name
        ctx.path_params = {"waba_id": ctx.path_params["node_id"]}
        return whatsapp.subscribe_app(ctx)
    token = _page_token_for(ctx, page)
    _require_scope(token, SUBSCRIBE_SCOPE)
    fields = [f for f in ctx.params.get("subscribed_fields", "").split(",") if f.strip()]
    if not fields:
        raise GraphError(100, "(#100) The parameter subscribed_fields is required")
    with ctx.world.lock:
        page.subscribed[token.app_id] = sorted(set(page.subscribed.get(token.app_id, [])) |
                                               {f.strip() for f in fields})
    return {"success": True}


@area.route("GET", "/{node_id}/subscribed_apps", auth="user")
def subscribed_apps(ctx: Ctx) -> dict[str, Any]:
    page = _state(ctx).pages.get(ctx.path_params["node_id"])
    if page is None:
        ctx.path_params = {"waba_id": ctx.path_params["node_id"]}
        return whatsapp.subscribed_apps(ctx)
    _page_token_for(ctx, page)
    with ctx.world.lock:
        data = [{"id": app_id, "name": ctx.world.apps[app_id].name, "subscribed_fields": fields}
                for app_id, fields in page.subscribed.items()]
    return {"data": data}


@area.route("GET", "/{page_id}/leadgen_forms", auth="user")
def leadgen_forms(ctx: Ctx) -> dict[str, Any]:
    page = _page(ctx, ctx.path_params["page_id"])
    _require_scope(_page_token_for(ctx, page), LEADS_SCOPE)
    state = _state(ctx)
    fields = requested_fields(ctx.params.get("fields"))
    with ctx.world.lock:
        items = [{"id": f.id, "name": f.name, "status": f.status, "leads_count": len(f.lead_ids)}
                 for f in (state.forms[i] for i in page.form_ids)]
    return ctx.page([select_fields(i, fields, ("name", "status")) for i in items])


def _time_filter(raw: str | None) -> list[tuple[str, int]]:
    if not raw:
        return []
    try:
        rules = json.loads(raw)
    except ValueError as exc:
        raise GraphError(100, "(#100) param filtering must be an array") from exc
    out = []
    for rule in rules if isinstance(rules, list) else [None]:
        if not isinstance(rule, dict) or rule.get("field") != "time_created" or rule.get(
                "operator") not in ("GREATER_THAN", "LESS_THAN"):
            raise GraphError(100, "(#100) Filtering field time_created with operator "
                             "GREATER_THAN or LESS_THAN is supported")
        out.append((rule["operator"], int(rule["value"])))
    return out


@area.route("GET", "/{form_id}/leads", auth="user")
def form_leads(ctx: Ctx) -> dict[str, Any]:
    state = _state(ctx)
    form = state.forms.get(ctx.path_params["form_id"])
    if form is None:
        raise unsupported_object(ctx.method, ctx.path_params["form_id"])
    _require_scope(_page_token_for(ctx, state.pages[form.page_id]), LEADS_SCOPE)
    rules = _time_filter(ctx.params.get("filtering"))
    fields = requested_fields(ctx.params.get("fields"))
    with ctx.world.lock:
        leads = [state.leads[i] for i in form.lead_ids]
    kept = [lead for lead in leads if all(
        lead.created_time > value if op == "GREATER_THAN" else lead.created_time < value
        for op, value in rules)]
    kept.sort(key=lambda lead: (-lead.created_time, lead.id))  # newest first, as Meta
    return ctx.page([select_fields(lead.graph(), fields, LEAD_DEFAULT_FIELDS) for lead in kept])


@area.route("GET", r"/(?P<leadgen_id>\d+)", auth="user")
def read_lead(ctx: Ctx) -> dict[str, Any]:
    state = _state(ctx)
    lead = state.leads.get(ctx.path_params["leadgen_id"])
    if lead is None:
        raise unsupported_object(ctx.method, ctx.path_params["leadgen_id"])
    _require_scope(_page_token_for(ctx, state.pages[lead.page_id]), LEADS_SCOPE)
    fields = requested_fields(ctx.params.get("fields"))
    return select_fields(lead.graph(), fields, LEAD_DEFAULT_FIELDS)


# -- leadgen notifications ------------------------------------------------------------------------
def notification(items: list[dict[str, Any]]) -> dict[str, Any]:
    """One payload for many leads: an entry per Page, a change per lead (Meta batches)."""
    entries: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        entries.setdefault(item["page_id"], []).append({"field": "leadgen", "value": item})
    return {"object": "page", "entry": [
        {"id": page_id, "time": int(time.time()), "changes": changes}
        for page_id, changes in entries.items()]}


def _change(lead: Lead) -> dict[str, Any]:
    value: dict[str, Any] = {"leadgen_id": lead.id, "page_id": lead.page_id,
                             "form_id": lead.form_id, "created_time": lead.created_time}
    if lead.ad_id is not None:
        value.update({"ad_id": lead.ad_id, "adgroup_id": lead.ad_id})
    return value


def _announce(ctx: Ctx, leads: list[Lead], deliver: str) -> int:
    """Queue (or post now) the notification of each lead whose Page has an app subscribed to
    leadgen; returns how many were announced."""
    if deliver == "none":
        return 0
    state = _state(ctx)
    items = []
    with ctx.world.lock:
        config = state.webhook
        if not (config.enabled and config.url):
            return 0
        for lead in leads:
            page = state.pages[lead.page_id]
            for app_id, fields in page.subscribed.items():
                if "leadgen" in fields:
                    items.append({"secret": ctx.world.apps[app_id].secret,
                                  "change": _change(lead)})
    if deliver == "sync":
        with httpx.Client(timeout=10) as client:
            webhook_delivery.deliver(client, ctx.world, state, items, ctx.sandbox.stopping,
                                     _batch_body, stamp_answers=True)
    else:
        _start_worker(ctx, state)
        for item in items:
            state.outbox.put(item)
    return len(items)


def _start_worker(ctx: Ctx, state: PagesState) -> None:
    with ctx.world.lock:
        webhook_delivery.ensure_worker(ctx.world, "pages", state, ctx.sandbox.stopping,
                                       _batch_body, name="sandbox-leadgen-webhooks",
                                       stamp_answers=True)


def _batch_body(items: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    changes = [i["change"] for i in items]
    return notification(changes), {"leadgen_ids": [c["leadgen_id"] for c in changes],
                                    "attempts": 0, "status_code": None, "sent_at": time.time()}


# -- control endpoints (served under /__sandbox/) -----------------------------------------------
def _field_data(body: dict[str, Any], number: int) -> list[dict[str, Any]]:
    if isinstance(body.get("field_data"), list):
        return body["field_data"]
    suffix = f" {number}" if number else ""
    email = body.get("email", f"lead{secrets.token_hex(3)}@example.com")
    data = [{"name": "full_name", "values": [body.get("name", "Lead Demo") + suffix]},
            {"name": "email", "values": [email]}]
    phone = body.get("phone", f"+5491155{secrets.randbelow(10**6):06d}")
    if phone is not None:
        data.append({"name": "phone_number", "values": [phone]})
    return data


@area.control("POST", "/pages")
def control_create_page(ctx: Ctx) -> dict[str, Any]:
    body = ctx.json_body()
    state = _state(ctx)
    user_id = str(body.get("user_id", "10001"))
    with ctx.world.lock:
        page = Page(id=state.new_id(), name=str(body.get("name", "Página Demo")))
        page.tasks[user_id] = list(body.get("tasks", DEFAULT_TASKS))
        for number in range(int(body.get("forms", 1))):
            form = Form(id=state.new_id(), page_id=page.id, name=f"Formulario {number + 1}")
            state.forms[form.id] = form
            page.form_ids.append(form.id)
        state.pages[page.id] = page
    return {"page_id": page.id, "form_ids": list(page.form_ids)}


@area.control("POST", "/pages/webhooks")
def control_webhooks(ctx: Ctx) -> dict[str, Any]:
    body = ctx.json_body()
    state = _state(ctx)
    with ctx.world.lock:
        webhook_delivery.apply_settings(state.webhook, body)
        return {"success": True, "config": vars(state.webhook).copy()}


@area.control("GET", "/pages/webhooks")
def control_webhook_log(ctx: Ctx) -> dict[str, Any]:
    state = _state(ctx)
    with ctx.world.lock:
        return {"config": vars(state.webhook).copy(), "deliveries": list(state.deliveries),
                "queued": state.outbox.qsize()}


@area.control("GET", "/pages/{page_id}")
def control_page(ctx: Ctx) -> dict[str, Any]:
    state = _state(ctx)
    with ctx.world.lock:
        page = state.pages[ctx.path_params["page_id"]]
        return {"id": page.id, "name": page.name, "tasks": dict(page.tasks),
                "subscribed": dict(page.subscribed), "form_ids": list(page.form_ids),
                "leads": sum(len(state.forms[f].lead_ids) for f in page.form_ids)}


@area.control("POST", "/pages/{page_id}/access")
def control_access(ctx: Ctx) -> dict[str, Any]:
    body = ctx.json_body()
    state = _state(ctx)
    with ctx.world.lock:
        page = state.pages[ctx.path_params["page_id"]]
        tasks = list(body.get("tasks", DEFAULT_TASKS))
        if tasks:
            page.tasks[str(body["user_id"])] = tasks
        else:
            page.tasks.pop(str(body["user_id"]), None)
    return {"success": True}


@area.control("POST", "/pages/{page_id}/leads")
def control_create_leads(ctx: Ctx) -> dict[str, Any]:
    body = ctx.json_body()
    state = _state(ctx)
    deliver = str(body.get("deliver", "async"))
    if deliver not in ("async", "sync", "none"):
        raise ValueError(f"unknown delivery {deliver!r}")
    created: list[Lead] = []
    with ctx.world.lock:
        page = state.pages[ctx.path_params["page_id"]]
        form = state.forms[str(body.get("form_id") or page.form_ids[0])]
        if form.page_id != page.id:
            raise ValueError("that form is not this Page's")
        count = int(body.get("count", 1))
        for number in range(count):
            lead = Lead(id=state.new_id(), page_id=page.id, form_id=form.id,
                        created_time=int(body.get("created_time") or ctx.world.now()),
                        field_data=_field_data(body, number if count > 1 else 0),
                        ad_id=body.get("ad_id"), adset_id=body.get("adset_id"),
                        campaign_id=body.get("campaign_id"))
            state.leads[lead.id] = lead
            form.lead_ids.append(lead.id)
            created.append(lead)
    announced = _announce(ctx, created, deliver)
    return {"leads": [lead.graph() for lead in created], "announced": announced}


@area.control("POST", "/pages/{page_id}/notify")
def control_notify(ctx: Ctx) -> dict[str, Any]:
    body = ctx.json_body()
    state = _state(ctx)
    with ctx.world.lock:
        leads = [state.leads[str(i)] for i in body["leadgen_ids"]]
    return {"announced": _announce(ctx, leads, str(body.get("deliver", "async")))}


class PagesControl:
    """Client for the control endpoints above (tests, the demo and the bench)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self._http = httpx.Client(base_url=url.rstrip("/") + "/__sandbox", timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._http.request(method, "/pages" + path, json=body)
        response.raise_for_status()
        return response.json()

    def create_page(self, user_id: str = "10001", **body: Any) -> dict[str, Any]:
        """name, tasks, forms (how many lead forms, default 1) -> {"page_id", "form_ids"}."""
        return self._call("POST", "", {"user_id": user_id, **body})

    def page(self, page_id: str) -> dict[str, Any]:
        return self._call("GET", f"/{page_id}")

    def set_access(self, page_id: str, user_id: str, tasks: list[str] | None = None) -> None:
        self._call("POST", f"/{page_id}/access", {"user_id": user_id,
                                                  "tasks": DEFAULT_TASKS if tasks is None
                                                  else tasks})

    def create_leads(self, page_id: str, **body: Any) -> list[dict[str, Any]]:
        """form_id, count, field_data, name, phone, email, ad_id, adset_id, campaign_id,
        created_time (unix), deliver (async | sync | none)."""
        return self._call("POST", f"/{page_id}/leads", body)["leads"]

    def notify(self, page_id: str, leadgen_ids: list[str], deliver: str = "sync") -> int:
        return self._call("POST", f"/{page_id}/notify", {"leadgen_ids": leadgen_ids,
                                                         "deliver": deliver})["announced"]

    def configure_webhooks(self, **settings: Any) -> dict[str, Any]:
        """url, enabled, batch_size."""
        return self._call("POST", "/webhooks", settings)["config"]

    def webhook_log(self) -> dict[str, Any]:
        return self._call("GET", "/webhooks")


"""WhatsApp management area: businesses' WABAs, phone numbers, templates, app subscriptions.

Shapes follow META_API.md §8 and Meta's reference pages: a business lists its WABAs on
`/{business-id}/owned_whatsapp_business_accounts` and
`/{business-id}/client_whatsapp_business_accounts`; a WABA has `/phone_numbers`,
`/message_templates` (cursor-paged, status filter) and `/subscribed_apps`. Unrequested fields
are left out, as Graph does, so callers must ask for them.

Sending messages (`/{phone-number-id}/messages`) is another area (whatsapp_send). It reads this
area's state through `world.area("whatsapp")`: `phone(id)`, `waba_of_phone(id)` and
`find_template(phone_number_id, name, language)` tell it whether a template exists and is
APPROVED in that language.

Tests create their own accounts through the control API (fresh ids per call), so they never
share a phone number or depend on a reset:

    POST /__sandbox/whatsapp/accounts    {"user_id"?, "phones"?, "templates"?} -> ids
    POST /__sandbox/whatsapp/templates   upsert one template (by waba, name, language)
    POST /__sandbox/whatsapp/templates/bulk            {"waba_id", "count"}
    POST /__sandbox/whatsapp/templates/{id}/status     {"status", "rejected_reason"?}
    DELETE /__sandbox/whatsapp/templates/{id}
    POST /__sandbox/whatsapp/phones/{id}               change quality, limit tier, throughput
    POST /__sandbox/whatsapp/wabas/{id}/access         {"user_id", "grant"}
    GET  /__sandbox/whatsapp/wabas/{id}                full state, incl. subscribed apps
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

from sandbox.core import (
    Area,
    Ctx,
    GraphError,
    requested_fields,
    select_fields,
    unsupported_object,
)
from sandbox.world import User, World

area = Area("whatsapp")

MANAGEMENT_SCOPE = "whatsapp_business_management"
TEMPLATE_STATUSES = {"APPROVED", "IN_APPEAL", "PENDING", "REJECTED", "PENDING_DELETION",
                     "DELETED", "DISABLED", "PAUSED", "LIMIT_EXCEEDED"}


@dataclass
class Business:
    id: str
    name: str
    user_ids: set[str] = field(default_factory=set)


@dataclass
class PhoneNumber:
    id: str
    waba_id: str
    display_phone_number: str
    verified_name: str
    quality_rating: str = "GREEN"
    messaging_limit: str = "TIER_1K"  # whatsapp_business_manager_messaging_limit
    throughput_level: str = "STANDARD"  # HIGH = upgraded to 1,000 mps
    code_verification_status: str = "VERIFIED"
    name_status: str = "APPROVED"
    status: str = "CONNECTED"
    platform_type: str = "CLOUD_API"

    def graph(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "display_phone_number": self.display_phone_number,
            "verified_name": self.verified_name,
            "quality_rating": self.quality_rating,
            "code_verification_status": self.code_verification_status,
            "name_status": self.name_status,
            "status": self.status,
            "platform_type": self.platform_type,
            "throughput": {"level": self.throughput_level},
            "whatsapp_business_manager_messaging_limit": self.messaging_limit,
            # Deprecated by Meta but still served; same value.
            "messaging_limit_tier": self.messaging_limit,
        }


@dataclass
class Template:
    id: str
    name: str
    language: str
    status: str
    category: str
    components: list[dict[str, Any]]
    quality_score: str = "UNKNOWN"
    rejected_reason: str = "NONE"
    parameter_format: str = "POSITIONAL"

    def graph(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "language": self.language,
            "status": self.status,
            "category": self.category,
            "parameter_format": self.parameter_format,
            "components": self.components,
            "quality_score": {"score": self.quality_score},
            "rejected_reason": self.rejected_reason,
        }


@dataclass
class Waba:
    id: str
    name: str
    owner_business_id: str
    user_ids: set[str] = field(default_factory=set)
    client_business_ids: set[str] = field(default_factory=set)
    timezone_id: str = "1"
    currency: str = "EUR"
    phone_ids: list[str] = field(default_factory=list)
    templates: list[Template] = field(default_factory=list)
    subscribed_apps: dict[str, str] = field(default_factory=dict)  # app id -> app name

    def graph(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "timezone_id": self.timezone_id,
                "currency": self.currency,
                "message_template_namespace": f"ns_{self.id}",
                "owner_business_info": {"id": self.owner_business_id}}


def body_component(text: str, examples: list[str] | None = None) -> dict[str, Any]:
    component: dict[str, Any] = {"type": "BODY", "text": text}
    if examples:
        component["example"] = {"body_text": [examples]}
    return component


def default_templates(new_id) -> list[Template]:
    """Approved, rejected, paused and pending templates, in Spanish and English."""
    stop = {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Stop promotions"}]}
    return [
        Template(new_id(), "lead_followup_es", "es", "APPROVED", "MARKETING", [
            body_component("Hola {{1}}, gracias por tu interés. ¿Te llamamos hoy?", ["Ana"]),
            {"type": "FOOTER", "text": "Responde STOP para no recibir más mensajes"}, stop],
            quality_score="GREEN"),
        Template(new_id(), "lead_followup_en", "en_US", "APPROVED", "MARKETING", [
            body_component("Hi {{1}}, thanks for your interest. Can we call you today?",
                           ["Ana"]), stop], quality_score="GREEN"),
        Template(new_id(), "cita_confirmacion", "es", "APPROVED", "UTILITY", [
            {"type": "HEADER", "format": "TEXT", "text": "Tu cita"},
            body_component("Hola {{1}}, tu cita es el {{2}}.", ["Ana", "lunes"])],
            quality_score="GREEN"),
        Template(new_id(), "promo_rechazada", "es", "REJECTED", "MARKETING", [
            body_component("¡{{1}}, 50% de descuento solo hoy!", ["Ana"])],
            rejected_reason="PROMOTIONAL"),
        Template(new_id(), "recordatorio_pausado", "es", "PAUSED", "MARKETING", [
            body_component("{{1}}, ¿sigues interesado?", ["Ana"]), stop],
            quality_score="RED"),
        Template(new_id(), "bienvenida_pendiente", "es", "PENDING", "MARKETING", [
            body_component("Bienvenido {{1}}", ["Ana"])]),
    ]


class WhatsAppState:
    """Everything this area knows. Mutate only under world.lock."""

    def __init__(self) -> None:
        self.businesses: dict[str, Business] = {}
        self.wabas: dict[str, Waba] = {}
        self.phones: dict[str, PhoneNumber] = {}

    @staticmethod
    def new_id() -> str:
        # 15 digits like Meta's ids, random so ids created by one test never meet another's.
        return str(100_000_000_000_000 + secrets.randbelow(899_999_999_999_999))

    # -- read by other areas (whatsapp_send) ----------------------------------------------------
    def phone(self, phone_number_id: str) -> PhoneNumber | None:
        return self.phones.get(phone_number_id)

    def waba_of_phone(self, phone_number_id: str) -> Waba | None:
        phone = self.phones.get(phone_number_id)
        return self.wabas.get(phone.waba_id) if phone else None

    def find_template(self, phone_number_id: str, name: str, language: str) -> Template | None:
        waba = self.waba_of_phone(phone_number_id)
        if waba is None:
            return None
        return next((t for t in waba.templates if t.name == name and t.language == language),
                    None)

    def template_by_id(self, template_id: str) -> tuple[Waba, Template] | None:
        for waba in self.wabas.values():
            for template in waba.templates:
                if template.id == template_id:
                    return waba, template
        return None

    # -- building ---------------------------------------------------------------------------
    def add_business(self, name: str, user_ids: set[str], business_id: str | None = None
                     ) -> Business:
        business = Business(business_id or self.new_id(), name, set(user_ids))
        self.businesses[business.id] = business
        return business

    def add_waba(self, business: Business, name: str, *, waba_id: str | None = None,
                 user_ids: set[str] | None = None) -> Waba:
        waba = Waba(waba_id or self.new_id(), name, business.id,
                    set(user_ids if user_ids is not None else business.user_ids))
        self.wabas[waba.id] = waba
        return waba

    def add_phone(self, waba: Waba, *, phone_id: str | None = None, **fields: Any) -> PhoneNumber:
        phone_id = phone_id or self.new_id()
        number = fields.pop("display_phone_number", None) or (
            f"+34 6{phone_id[-8:-6]} {phone_id[-6:-3]} {phone_id[-3:]}")
        phone = PhoneNumber(phone_id, waba.id, number,
                            fields.pop("verified_name", None) or waba.name, **fields)
        self.phones[phone.id] = phone
        waba.phone_ids.append(phone.id)
        return phone


def seed(world: World) -> WhatsAppState:
    """A deterministic demo: user 10001 reaches WABA 8001 (owned, two numbers) and WABA 8002
    (a client's, shared with its business too); WABA 8003 belongs to user 10002 only."""
    state = WhatsAppState()
    own = state.add_business("Ventas Demo S.L.", {"10001"}, "7001")
    client = state.add_business("Agencia Cliente S.A.", {"10002"}, "7002")
    other = state.add_business("Bruno Store", {"10002"}, "7003")
    demo = state.add_waba(own, "Ventas Demo WhatsApp", waba_id="8001")
    state.add_phone(demo, phone_id="9001", display_phone_number="+34 600 000 001",
                    verified_name="Ventas Demo")
    state.add_phone(demo, phone_id="9002", display_phone_number="+34 600 000 002",
                    verified_name="Ventas Demo Soporte", quality_rating="YELLOW",
                    messaging_limit="TIER_250")
    demo.templates = default_templates(state.new_id)
    shared = state.add_waba(client, "Cliente Agencia WhatsApp", waba_id="8002",
                            user_ids={"10001", "10002"})
    shared.client_business_ids.add(own.id)
    state.add_phone(shared, phone_id="9003", display_phone_number="+52 55 0000 0003",
                    verified_name="Cliente Agencia", throughput_level="HIGH",
                    messaging_limit="TIER_UNLIMITED")
    shared.templates = default_templates(state.new_id)
    hidden = state.add_waba(other, "Bruno WhatsApp", waba_id="8003")
    state.add_phone(hidden, phone_id="9004", display_phone_number="+34 600 000 004",
                    verified_name="Bruno Store")
    return state


area.seed(seed)


# -- helpers ------------------------------------------------------------------------------------
def _state(ctx: Ctx) -> WhatsAppState:
    return ctx.world.area("whatsapp")


def _require_scope(ctx: Ctx) -> None:
    if MANAGEMENT_SCOPE not in ctx.token.scopes:
        raise GraphError(200, f"(#200) Requires {MANAGEMENT_SCOPE} permission to manage the "
                         "object")


def _waba(ctx: Ctx) -> Waba:
    _require_scope(ctx)
    waba_id = ctx.path_params["waba_id"]
    waba = _state(ctx).wabas.get(waba_id)
    if waba is None or ctx.token.user_id not in waba.user_ids:
        raise unsupported_object(ctx.method, waba_id)
    return waba


def _business(ctx: Ctx) -> Any:
    """A business the caller belongs to: this area's, or the ads area's (which serves the
    person's businesses, this area's included, and simply owns no WABA here)."""
    business_id = ctx.path_params["business_id"]
    business = _state(ctx).businesses.get(business_id)
    if business is None:
        business = getattr(ctx.world.areas.get("ads"), "businesses", {}).get(business_id)
    if business is None or ctx.token.user_id not in business.user_ids:
        raise unsupported_object(ctx.method, business_id)
    return business


# -- Graph routes -------------------------------------------------------------------------------
@area.route("GET", "/{user_id}/businesses", auth="user")
def businesses(ctx: Ctx) -> dict[str, Any]:
    """A stand-in for when the ads area is absent; when present, its route (registered first)
    answers instead and lists this area's businesses too."""
    user_id = ctx.user_id(ctx.path_params["user_id"])
    if user_id != ctx.token.user_id:
        raise unsupported_object(ctx.method, ctx.path_params["user_id"])
    with ctx.world.lock:
        rows = [{"id": b.id, "name": b.name} for b in _state(ctx).businesses.values()
                if user_id in b.user_ids]
    return ctx.page(rows)


WABA_DEFAULT_FIELDS = ("name", "timezone_id", "message_template_namespace")


@area.route("GET", "/{business_id}/owned_whatsapp_business_accounts", auth="user")
def owned_wabas(ctx: Ctx) -> dict[str, Any]:
    _require_scope(ctx)
    fields = requested_fields(ctx.params.get("fields"))
    with ctx.world.lock:
        business = _business(ctx)
        rows = [select_fields(w.graph(), fields, WABA_DEFAULT_FIELDS)
                for w in _state(ctx).wabas.values()
                if w.owner_business_id == business.id and ctx.token.user_id in w.user_ids]
    return ctx.page(rows)


@area.route("GET", "/{business_id}/client_whatsapp_business_accounts", auth="user")
def client_wabas(ctx: Ctx) -> dict[str, Any]:
    _require_scope(ctx)
    fields = requested_fields(ctx.params.get("fields"))
    with ctx.world.lock:
        business = _business(ctx)
        rows = [select_fields(w.graph(), fields, WABA_DEFAULT_FIELDS)
                for w in _state(ctx).wabas.values()
                if business.id in w.client_business_ids and ctx.token.user_id in w.user_ids]
    return ctx.page(rows)


PHONE_DEFAULT_FIELDS = ("display_phone_number", "verified_name", "quality_rating",
                        "code_verification_status")


@area.route("GET", "/{waba_id}/phone_numbers", auth="user")
def phone_numbers(ctx: Ctx) -> dict[str, Any]:
    fields = requested_fields(ctx.params.get("fields"))
    with ctx.world.lock:
        waba = _waba(ctx)
        rows = [select_fields(_state(ctx).phones[p].graph(), fields, PHONE_DEFAULT_FIELDS)
                for p in waba.phone_ids]
    return ctx.page(rows)


TEMPLATE_DEFAULT_FIELDS = ("name", "parameter_format", "components", "language", "status",
                           "category")


@area.route("GET", "/{waba_id}/message_templates", auth="user")
def message_templates(ctx: Ctx) -> dict[str, Any]:
    params = ctx.params
    fields = requested_fields(params.get("fields"))
    statuses = {s.strip().upper() for s in params.get("status", "").split(",") if s.strip()}
    with ctx.world.lock:
        waba = _waba(ctx)
        rows = [select_fields(t.graph(), fields, TEMPLATE_DEFAULT_FIELDS) for t in waba.templates
                if (not statuses or t.status in statuses)
                and params.get("name") in (None, t.name)
                and params.get("language") in (None, t.language)]
    body = ctx.page(rows)
    if "total_count" in params.get("summary", ""):
        body["summary"] = {"total_count": len(rows), "message_template_count": len(rows),
                           "message_template_limit": 250}
    return body


@area.route("POST", "/{waba_id}/subscribed_apps", auth="user")
def subscribe_app(ctx: Ctx) -> dict[str, Any]:
    with ctx.world.lock:
        waba = _waba(ctx)
        waba.subscribed_apps[ctx.app.id] = ctx.app.name
    return {"success": True}


@area.route("GET", "/{waba_id}/subscribed_apps", auth="user")
def subscribed_apps(ctx: Ctx) -> dict[str, Any]:
    with ctx.world.lock:
        waba = _waba(ctx)
        rows = [{"whatsapp_business_api_data": {"id": app_id, "name": name}}
                for app_id, name in waba.subscribed_apps.items()]
    return {"data": rows}


@area.route("DELETE", "/{waba_id}/subscribed_apps", auth="user")
def unsubscribe_app(ctx: Ctx) -> dict[str, Any]:
    with ctx.world.lock:
        waba = _waba(ctx)
        waba.subscribed_apps.pop(ctx.app.id, None)
    return {"success": True}


# -- control endpoints (served under /__sandbox/) ---------------------------------------------
def _template_from(state: WhatsAppState, body: dict[str, Any]) -> Template:
    components = body.get("components")
    if components is None:
        components = [body_component(body.get("body", "Hola {{1}}"), body.get("examples"))]
    status = str(body.get("status", "APPROVED")).upper()
    if status not in TEMPLATE_STATUSES:
        raise ValueError(f"unknown template status {status!r}")
    return Template(str(body.get("id") or state.new_id()), body["name"],
                    body.get("language", "es"), status, body.get("category", "MARKETING"),
                    components, quality_score=body.get("quality_score", "UNKNOWN"),
                    rejected_reason=body.get("rejected_reason", "NONE"),
                    parameter_format=body.get("parameter_format", "POSITIONAL"))


def _waba_state(waba: Waba, state: WhatsAppState) -> dict[str, Any]:
    return {
        **waba.graph(),
        "owner_business_id": waba.owner_business_id,
        "user_ids": sorted(waba.user_ids),
        "client_business_ids": sorted(waba.client_business_ids),
        "subscribed_apps": sorted(waba.subscribed_apps),
        "phone_numbers": [asdict(state.phones[p]) for p in waba.phone_ids],
        "templates": [t.graph() for t in waba.templates],
    }


@area.control("POST", "/whatsapp/accounts")
def control_create_account(ctx: Ctx) -> dict[str, Any]:
    """A fresh business + WABA + numbers (+ the default templates) for one user. Without a
    user_id a new sandbox user is created, so the caller sees only what it made."""
    b = ctx.json_body()
    state = _state(ctx)
    with ctx.world.lock:
        user_id = str(b.get("user_id") or state.new_id())
        if user_id not in ctx.world.users:
            ctx.world.users[user_id] = User(user_id, b.get("user_name", f"WhatsApp {user_id}"))
        business = (state.businesses[b["business_id"]] if b.get("business_id")
                    else state.add_business(b.get("business_name", "Negocio de prueba"),
                                            {user_id}))
        business.user_ids.add(user_id)
        waba = state.add_waba(business, b.get("waba_name", "WhatsApp de prueba"),
                              user_ids={user_id})
        if b.get("client_of"):
            waba.client_business_ids.add(str(b["client_of"]))
        phones = b.get("phones", 1)
        for spec in ([{}] * phones if isinstance(phones, int) else phones):
            state.add_phone(waba, **spec)
        templates = b.get("templates", "default")
        if templates == "default":
            waba.templates = default_templates(state.new_id)
        elif isinstance(templates, list):
            waba.templates = [_template_from(state, t) for t in templates]
        return {"user_id": user_id, "business_id": business.id, "waba_id": waba.id,
                "phone_number_ids": list(waba.phone_ids),
                "templates": {f"{t.name}:{t.language}": t.id for t in waba.templates}}


@area.control("GET", "/whatsapp/wabas/{waba_id}")
def control_waba(ctx: Ctx) -> dict[str, Any]:
    state = _state(ctx)
    with ctx.world.lock:
        return _waba_state(state.wabas[ctx.path_params["waba_id"]], state)


@area.control("POST", "/whatsapp/wabas/{waba_id}/access")
def control_access(ctx: Ctx) -> dict[str, Any]:
    b = ctx.json_body()
    with ctx.world.lock:
        waba = _state(ctx).wabas[ctx.path_params["waba_id"]]
        user_id = str(b["user_id"])
        if b.get("grant", True):
            waba.user_ids.add(user_id)
        else:
            waba.user_ids.discard(user_id)
        return {"success": True, "user_ids": sorted(waba.user_ids)}


@area.control("POST", "/whatsapp/templates")
def control_upsert_template(ctx: Ctx) -> dict[str, Any]:
    b = ctx.json_body()
    state = _state(ctx)
    with ctx.world.lock:
        waba = state.wabas[b["waba_id"]]
        template = _template_from(state, b)
        for i, existing in enumerate(waba.templates):
            if existing.name == template.name and existing.language == template.language:
                template.id = existing.id
                waba.templates[i] = template
                break
        else:
            waba.templates.append(template)
        return template.graph()


@area.control("POST", "/whatsapp/templates/bulk")
def control_bulk_templates(ctx: Ctx) -> dict[str, Any]:
    b = ctx.json_body()
    state = _state(ctx)
    prefix = b.get("prefix", "aviso")
    with ctx.world.lock:
        waba = state.wabas[b["waba_id"]]
        for i in range(int(b["count"])):
            waba.templates.append(Template(state.new_id(), f"{prefix}_{i:04d}", "es", "APPROVED",
                                           "UTILITY", [body_component(f"Aviso {i}")]))
        return {"count": len(waba.templates)}


@area.control("POST", "/whatsapp/templates/{template_id}/status")
def control_template_status(ctx: Ctx) -> dict[str, Any]:
    b = ctx.json_body()
    status = str(b["status"]).upper()
    if status not in TEMPLATE_STATUSES:
        raise ValueError(f"unknown template status {status!r}")
    with ctx.world.lock:
        found = _state(ctx).template_by_id(ctx.path_params["template_id"])
        if found is None:
            raise KeyError(ctx.path_params["template_id"])
        _, template = found
        template.status = status
        template.rejected_reason = b.get("rejected_reason", "NONE")
        return template.graph()


@area.control("DELETE", "/whatsapp/templates/{template_id}")
def control_delete_template(ctx: Ctx) -> dict[str, Any]:
    with ctx.world.lock:
        found = _state(ctx).template_by_id(ctx.path_params["template_id"])
        if found is None:
            raise KeyError(ctx.path_params["template_id"])
        waba, template = found
        waba.templates.remove(template)
        return {"success": True}


@area.control("POST", "/whatsapp/phones/{phone_id}")
def control_phone(ctx: Ctx) -> dict[str, Any]:
    b = ctx.json_body()
    with ctx.world.lock:
        phone = _state(ctx).phones[ctx.path_params["phone_id"]]
        for key, value in b.items():
            if key in {"id", "waba_id"} or not hasattr(phone, key):
                raise ValueError(f"cannot set {key!r} on a phone number")
            setattr(phone, key, value)
        return asdict(phone)


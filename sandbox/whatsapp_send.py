"""WhatsApp sending area: POST /{phone-number-id}/messages with Meta's limits, and status webhooks.

Meta's behaviour (META_API.md §8-§9) that this models:
- a template send is answered `{"messaging_product", "contacts": [{"input", "wa_id"}],
  "messages": [{"id": "wamid...", "message_status": "accepted"}]}`; accepted is not delivered;
- the template must exist and be APPROVED in that language (132001; PAUSED 132015, DISABLED
  132016) and get as many body parameters as it has variables (132000);
- a per-number throughput cap: 80 messages/s, 1,000 for numbers whose throughput level is HIGH,
  or what a test configures. More accepted sends than the cap within any one second (a sliding
  window, the strictest reading) are refused with 130429;
- the pair limit: one message to the same recipient per `pair_window_seconds` (6 s) from a
  number, else 131056;
- errors a test injects (131026, 131049, 131050, 368, 190, 130429...), for a number and
  optionally one recipient;
- status webhooks (sent, delivered, read) signed with X-Hub-Signature-256 (HMAC-SHA256 of the raw
  body with the app secret), POSTed in batches to a configured URL from a background thread.

Every accepted send is recorded (recipient, template, parameters, wamid, time) so tests can count
sends, distinct recipients and the most sends in any one-second window. State is per phone
number, and tests use fresh numbers (sandbox/whatsapp.py's control API), so nothing here needs a
global reset. Templates and numbers are read from the whatsapp area's state.

Control API (under /__sandbox/), also wrapped by `SendControl` below:
    POST   /whatsapp/send/numbers/{id}   {"max_per_second", "pair_window_seconds", "latency_ms"}
    GET    /whatsapp/send/numbers/{id}   counts (+ "messages" with ?messages=1)
    POST   /whatsapp/send/errors         {"phone_number_id", "code", "count", "to"?}
    DELETE /whatsapp/send/errors         ?phone_number_id=
    POST   /whatsapp/send/webhooks       {"url", "enabled", "statuses", "batch_size", "numbers"}
    GET    /whatsapp/send/webhooks       config, deliveries, queued
"""

from __future__ import annotations

import queue
import re
import secrets
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from sandbox import webhook_delivery
from sandbox.core import Area, Ctx, GraphError, token_error
from sandbox.world import World

area = Area("whatsapp_send")

MESSAGING_SCOPE = "whatsapp_business_messaging"
STANDARD_MPS = 80  # throughput.mdx: every number starts here
HIGH_MPS = 1000  # throughput level HIGH
PAIR_WINDOW_SECONDS = 6.0  # about-the-platform.mdx: 1 message / 6 s to the same user
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_DIGITS = re.compile(r"^\d{7,15}$")
STATUS_ORDER = ("sent", "delivered", "read")

# error-codes.mdx: (message, details, HTTP status)
ERRORS: dict[int, tuple[str, str, int]] = {
    130429: ("(#130429) Rate limit hit",
             "Cloud API message throughput has been reached.", 400),
    131056: ("(#131056) (Business Account, Consumer Account) pair rate limit hit",
             "Too many messages sent from the sender phone number to the same recipient phone "
             "number in a short period of time.", 400),
    131026: ("(#131026) Message undeliverable",
             "Unable to deliver message. The recipient may not be a WhatsApp user, or has not "
             "accepted the latest terms.", 400),
    131049: ("(#131049) This message was not delivered to maintain healthy ecosystem "
             "engagement.", "In order to maintain a healthy ecosystem engagement, the message "
             "failed to be delivered.", 400),
    131050: ("(#131050) Unable to deliver the message. This recipient has chosen to stop "
             "receiving marketing messages on WhatsApp from your business.",
             "The user has stopped marketing messages.", 400),
    131048: ("(#131048) Spam rate limit hit", "Message failed to send because there are "
             "restrictions on how many messages can be sent from this phone number.", 400),
    368: ("(#368) Temporarily blocked for policies violations",
          "The WhatsApp Business Account is restricted from messaging.", 400),
    131000: ("(#131000) Something went wrong", "Message failed to send due to an unknown "
             "error.", 500),
    133004: ("(#133004) Server is temporarily unavailable", "Try again later.", 503),
    132000: ("(#132000) Number of parameters does not match the expected number of params",
             "The number of parameters does not match the template.", 400),
    132001: ("(#132001) Template name does not exist in the translation",
             "The template does not exist in this language.", 404),
    132015: ("(#132015) Template is Paused", "The template is paused for low quality.", 400),
    132016: ("(#132016) Template is Disabled", "The template has been disabled.", 400),
}


def wa_error(code: int, details: str | None = None, *, subcode: int | None = None
             ) -> GraphError:
    if code == 190:
        return token_error(None, subcode or 463, time.time())
    message, default_details, status = ERRORS.get(
        code, (f"(#{code}) Injected error", "Injected by the sandbox.", 400))
    return GraphError(code, message, subcode=subcode, status=status,
                      is_transient=True if status >= 500 else None,
                      extra={"error_data": {"messaging_product": "whatsapp",
                                            "details": details or default_details}})


@dataclass
class NumberConfig:
    max_per_second: int | None = None  # None: from the number's throughput level
    pair_window_seconds: float = PAIR_WINDOW_SECONDS
    latency_ms: float = 0.0  # Meta's answer time, slept per request (concurrently)


@dataclass
class SentMessage:
    phone_number_id: str
    to: str
    wa_id: str
    template: str
    language: str
    params: list[str]
    wamid: str
    biz_opaque_callback_data: str | None
    ts: float  # world clock
    mono: float  # time.monotonic(), for one-second windows


@dataclass
class InjectedError:
    phone_number_id: str
    code: int
    remaining: int
    to: str | None = None  # wa_id digits; None: any recipient
    subcode: int | None = None
    details: str | None = None


@dataclass
class WebhookConfig:
    url: str | None = None
    enabled: bool = False
    statuses: tuple[str, ...] = STATUS_ORDER
    batch_size: int = 50
    numbers: list[str] | None = None  # only these phone number ids; None: every number


@dataclass
class NumberStats:
    in_flight: int = 0
    max_in_flight: int = 0
    rejected: Counter = field(default_factory=Counter)


class SendState:
    """Mutate only under world.lock."""

    def __init__(self) -> None:
        self.configs: dict[str, NumberConfig] = {}
        self.sent: dict[str, list[SentMessage]] = {}
        self.windows: dict[str, deque[float]] = {}
        self.pairs: dict[tuple[str, str], float] = {}
        self.errors: list[InjectedError] = []
        self.stats: dict[str, NumberStats] = {}
        self.webhook = WebhookConfig()
        self.outbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self.deliveries: list[dict[str, Any]] = []
        self.worker: threading.Thread | None = None

    def config(self, phone_number_id: str) -> NumberConfig:
        return self.configs.setdefault(phone_number_id, NumberConfig())

    def number_stats(self, phone_number_id: str) -> NumberStats:
        return self.stats.setdefault(phone_number_id, NumberStats())

    def take_error(self, phone_number_id: str, wa_id: str) -> InjectedError | None:
        for injected in self.errors:
            if (injected.phone_number_id == phone_number_id and injected.remaining > 0
                    and injected.to in (None, wa_id)):
                injected.remaining -= 1
                return injected
        return None


@area.seed
def seed(world: World) -> SendState:
    return SendState()


def _state(ctx: Ctx) -> SendState:
    return ctx.world.area("whatsapp_send")


def _numbers(ctx: Ctx) -> Any:
    return ctx.world.area("whatsapp")


def max_in_any_second(monos: list[float]) -> int:
    """The most timestamps inside any one-second window (start, start + 1s)."""
    times = sorted(monos)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def _placeholders(components: list[dict[str, Any]], kind: str) -> int:
    names: set[str] = set()
    for component in components:
        if str(component.get("type", "")).upper() == kind:
            names |= set(_PLACEHOLDER.findall(str(component.get("text") or "")))
    return len(names)


def _given(components: Any, kind: str) -> list[Any]:
    for component in components if isinstance(components, list) else []:
        if isinstance(component, dict) and str(component.get("type", "")).lower() == kind:
            params = component.get("parameters")
            return params if isinstance(params, list) else []
    return []


def _param_text(param: Any) -> str:
    if isinstance(param, dict):
        return str(param.get("text", param.get(param.get("type", ""), "")))
    return str(param)


def _cap(state: SendState, numbers: Any, phone_number_id: str) -> int:
    configured = state.config(phone_number_id).max_per_second
    if configured:
        return int(configured)
    phone = numbers.phone(phone_number_id)
    return HIGH_MPS if phone is not None and phone.throughput_level == "HIGH" else STANDARD_MPS


def _check_template(numbers: Any, phone_number_id: str, template: dict[str, Any]) -> list[str]:
    """Validate the template part of a send; returns the body parameter texts."""
    name = str(template.get("name") or "")
    language = template.get("language")
    code = str(language.get("code") if isinstance(language, dict) else language or "")
    found = numbers.find_template(phone_number_id, name, code)
    if found is None or found.status not in {"APPROVED", "PAUSED", "DISABLED"}:
        raise wa_error(132001, f"template name ({name}) does not exist in {code}")
    if found.status == "PAUSED":
        raise wa_error(132015)
    if found.status == "DISABLED":
        raise wa_error(132016)
    components = template.get("components")
    body = _given(components, "body")
    header = _given(components, "header")
    expected_body = _placeholders(found.components, "BODY")
    expected_header = _placeholders(found.components, "HEADER")
    if len(body) != expected_body or len(header) != expected_header:
        raise wa_error(132000, f"body: number of localizable_params ({len(body)}) does not "
                       f"match the expected number of params ({expected_body})")
    if any(not _param_text(p).strip() for p in body):
        raise GraphError(131008, "(#131008) Required parameter is missing",
                         extra={"error_data": {"messaging_product": "whatsapp",
                                               "details": "Parameter text cannot be empty"}})
    return [_param_text(p) for p in body]


@area.route("POST", "/{phone_number_id}/messages", auth="user")
def send_message(ctx: Ctx) -> dict[str, Any]:
    if MESSAGING_SCOPE not in ctx.token.scopes:
        raise GraphError(200, f"(#200) Requires {MESSAGING_SCOPE} permission")
    phone_number_id = ctx.path_params["phone_number_id"]
    body = ctx.json_body()
    state, numbers = _state(ctx), _numbers(ctx)
    with ctx.world.lock:
        waba = numbers.waba_of_phone(phone_number_id)
        allowed = waba is not None and ctx.token.user_id in waba.user_ids
    if not allowed:
        raise GraphError(100, f"Unsupported post request. Object with ID '{phone_number_id}' "
                         "does not exist, cannot be loaded due to missing permissions, or does "
                         "not support this operation.", subcode=33,
                         error_type="GraphMethodException")
    if body.get("messaging_product") != "whatsapp":
        raise GraphError(100, "(#100) The parameter messaging_product is required.")
    to = str(body.get("to") or "")
    wa_id = to.lstrip("+")
    if not _DIGITS.match(wa_id):
        raise GraphError(100, "(#100) Invalid parameter", extra={"error_data": {
            "messaging_product": "whatsapp", "details": "Parameter 'to' is not a phone number"}})
    if body.get("type") != "template" or not isinstance(body.get("template"), dict):
        raise GraphError(100, "(#100) This sandbox sends template messages only")
    template = body["template"]
    opaque = body.get("biz_opaque_callback_data")
    now_mono = time.monotonic()
    with ctx.world.lock:
        stats = state.number_stats(phone_number_id)
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        latency = state.config(phone_number_id).latency_ms
        try:
            message: SentMessage | GraphError = _accept(
                ctx, state, numbers, phone_number_id, to, wa_id, template, opaque, now_mono, stats)
        except GraphError as exc:
            message = exc
    try:
        if latency:
            # Meta's answer time; the decision above was taken on arrival, as Meta's would be.
            ctx.sandbox.stopping.wait(latency / 1000.0)
    finally:
        with ctx.world.lock:
            stats.in_flight -= 1
    if isinstance(message, GraphError):
        raise message
    _queue_statuses(ctx, state, waba.id, message)
    return {"messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": wa_id}],
            "messages": [{"id": message.wamid, "message_status": "accepted"}]}


def _accept(ctx: Ctx, state: SendState, numbers: Any, phone_number_id: str, to: str,
            wa_id: str, template: dict[str, Any], opaque: Any, now_mono: float,
            stats: NumberStats) -> SentMessage:
    """Every check and the record, under world.lock (so the cap holds across threads)."""
    try:
        injected = state.take_error(phone_number_id, wa_id)
        if injected is not None:
            raise wa_error(injected.code, injected.details, subcode=injected.subcode)
        params = _check_template(numbers, phone_number_id, template)
        window = state.windows.setdefault(phone_number_id, deque())
        while window and now_mono - window[0] >= 1.0:
            window.popleft()
        if len(window) >= _cap(state, numbers, phone_number_id):
            raise wa_error(130429)
        last = state.pairs.get((phone_number_id, wa_id))
        pair_window = state.config(phone_number_id).pair_window_seconds
        if last is not None and now_mono - last < pair_window:
            raise wa_error(131056)
    except GraphError as exc:
        stats.rejected[exc.code] += 1
        raise
    window.append(now_mono)
    state.pairs[(phone_number_id, wa_id)] = now_mono
    language = template.get("language")
    message = SentMessage(
        phone_number_id=phone_number_id, to=to, wa_id=wa_id, template=str(template["name"]),
        language=str(language.get("code") if isinstance(language, dict) else language),
        params=params, wamid="wamid." + secrets.token_urlsafe(24),
        biz_opaque_callback_data=str(opaque) if opaque is not None else None,
        ts=ctx.world.now(), mono=now_mono)
    state.sent.setdefault(phone_number_id, []).append(message)
    return message


# -- status webhooks ----------------------------------------------------------------------------
def _queue_statuses(ctx: Ctx, state: SendState, waba_id: str, message: SentMessage) -> None:
    with ctx.world.lock:
        config = state.webhook
        if not (config.enabled and config.url) or (
                config.numbers is not None and message.phone_number_id not in config.numbers):
            return
        display = _numbers(ctx).phone(message.phone_number_id).display_phone_number
    for offset, kind in enumerate(s for s in STATUS_ORDER if s in config.statuses):
        status: dict[str, Any] = {
            "id": message.wamid, "status": kind, "timestamp": str(int(message.ts) + offset),
            "recipient_id": message.wa_id,
            "pricing": {"billable": True, "pricing_model": "PMP", "category": "marketing",
                        "type": "regular"}}
        if message.biz_opaque_callback_data is not None:
            status["biz_opaque_callback_data"] = message.biz_opaque_callback_data
        state.outbox.put({"waba_id": waba_id, "phone_number_id": message.phone_number_id,
                          "display": re.sub(r"\D", "", display or ""), "status": status,
                          "secret": ctx.app.secret})


def webhook_body(items: list[dict[str, Any]]) -> dict[str, Any]:
    """One payload for many statuses: an entry per WABA, a change per number (Meta batches)."""
    entries: dict[str, dict[str, dict[str, Any]]] = {}
    for item in items:
        changes = entries.setdefault(item["waba_id"], {})
        change = changes.setdefault(item["phone_number_id"], {
            "field": "messages",
            "value": {"messaging_product": "whatsapp",
                      "metadata": {"display_phone_number": item["display"],
                                   "phone_number_id": item["phone_number_id"]},
                      "statuses": []}})
        change["value"]["statuses"].append(item["status"])
    return {"object": "whatsapp_business_account",
            "entry": [{"id": waba, "changes": list(changes.values())}
                      for waba, changes in entries.items()]}


def _batch_body(items: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    return webhook_body(items), {"statuses": len(items), "attempts": 0, "status_code": None}


# -- control endpoints (served under /__sandbox/) ---------------------------------------------
@area.control("POST", "/whatsapp/send/numbers/{phone_id}")
def control_number(ctx: Ctx) -> dict[str, Any]:
    body = ctx.json_body()
    casts = {"max_per_second": int, "pair_window_seconds": float, "latency_ms": float}
    unknown = set(body) - set(casts)
    if unknown:
        raise ValueError(f"unknown number settings {sorted(unknown)}")
    with ctx.world.lock:
        config = _state(ctx).config(ctx.path_params["phone_id"])
        for key, value in body.items():
            setattr(config, key, None if value is None else casts[key](value))
        return asdict(config)


@area.control("GET", "/whatsapp/send/numbers/{phone_id}")
def control_number_stats(ctx: Ctx) -> dict[str, Any]:
    phone_id = ctx.path_params["phone_id"]
    state = _state(ctx)
    with ctx.world.lock:
        sent = list(state.sent.get(phone_id, []))
        stats = state.number_stats(phone_id)
        answer = {
            "phone_number_id": phone_id,
            "max_per_second": _cap(state, _numbers(ctx), phone_id),
            "sent": len(sent),
            "distinct_recipients": len({m.wa_id for m in sent}),
            "max_in_any_second": max_in_any_second([m.mono for m in sent]),
            "max_in_flight": stats.max_in_flight,
            "rejected": {str(code): n for code, n in stats.rejected.items()},
        }
    if ctx.request.args.get("messages"):
        answer["messages"] = [asdict(m) for m in sent]
    return answer


@area.control("POST", "/whatsapp/send/errors")
def control_inject(ctx: Ctx) -> dict[str, Any]:
    body = ctx.json_body()
    to = body.get("to")
    injected = InjectedError(str(body["phone_number_id"]), int(body["code"]),
                             int(body.get("count", 1)),
                             to=str(to).lstrip("+") if to else None,
                             subcode=body.get("subcode"), details=body.get("details"))
    with ctx.world.lock:
        _state(ctx).errors.append(injected)
    return {"success": True}


@area.control("DELETE", "/whatsapp/send/errors")
def control_clear_errors(ctx: Ctx) -> dict[str, Any]:
    phone_id = ctx.request.args.get("phone_number_id")
    state = _state(ctx)
    with ctx.world.lock:
        state.errors = [e for e in state.errors
                        if phone_id is not None and e.phone_number_id != phone_id]
    return {"success": True}


@area.control("POST", "/whatsapp/send/webhooks")
def control_webhooks(ctx: Ctx) -> dict[str, Any]:
    body = ctx.json_body()
    state = _state(ctx)
    with ctx.world.lock:
        config = state.webhook
        unknown = set(body.get("statuses") or ()) - set(STATUS_ORDER)
        if unknown:  # refused before anything changes
            raise ValueError(f"unknown statuses {sorted(unknown)}")
        webhook_delivery.apply_settings(config, body)
        if "statuses" in body:
            config.statuses = tuple(body["statuses"])
        if "numbers" in body:
            config.numbers = None if body["numbers"] is None else [str(n) for n in body["numbers"]]
        if config.enabled:
            webhook_delivery.ensure_worker(ctx.world, "whatsapp_send", state,
                                           ctx.sandbox.stopping, _batch_body,
                                           name="sandbox-wa-webhooks")
        return {"success": True, "config": asdict(config)}


@area.control("GET", "/whatsapp/send/webhooks")
def control_webhook_log(ctx: Ctx) -> dict[str, Any]:
    state = _state(ctx)
    with ctx.world.lock:
        return {"config": asdict(state.webhook), "deliveries": list(state.deliveries),
                "queued": state.outbox.qsize()}


class SendControl:
    """Client for the control endpoints above (tests and the demo)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self._http = httpx.Client(base_url=url.rstrip("/") + "/__sandbox/whatsapp/send",
                                  timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
              params: dict[str, Any] | None = None) -> Any:
        response = self._http.request(method, path, json=body, params=params)
        response.raise_for_status()
        return response.json()

    def configure_number(self, phone_number_id: str, **settings: Any) -> dict[str, Any]:
        """max_per_second, pair_window_seconds, latency_ms."""
        return self._call("POST", f"/numbers/{phone_number_id}", settings)

    def stats(self, phone_number_id: str, *, messages: bool = False) -> dict[str, Any]:
        return self._call("GET", f"/numbers/{phone_number_id}",
                          params={"messages": 1} if messages else None)

    def inject_error(self, phone_number_id: str, code: int, *, count: int = 1,
                     to: str | None = None, **extra: Any) -> None:
        self._call("POST", "/errors", {"phone_number_id": phone_number_id, "code": code,
                                       "count": count, "to": to, **extra})

    def clear_errors(self, phone_number_id: str) -> None:
        self._call("DELETE", "/errors", params={"phone_number_id": phone_number_id})

    def configure_webhooks(self, **settings: Any) -> dict[str, Any]:
        """url, enabled, statuses, batch_size, numbers (phone number ids; None: all)."""
        return self._call("POST", "/webhooks", settings)["config"]

    def webhook_log(self) -> dict[str, Any]:
        return self._call("GET", "/webhooks")

"""Meta's WhatsApp webhook: subscription handshake, signature check, and processing.

Order of checks on a POST: size (413), signature over the raw bytes (401), JSON (400). Only then
is anything read, and every entry, change, status and preference in the batch is processed. A
part of an unexpected shape (a list where an object belongs, a number for a string) is skipped
and counted as ignored, never a 500: Meta would retry the whole batch, and the rest of it is
good.
Webhooks carry no tenant claim: the tenant comes from the phone number (statuses, opt-outs) or
the WABA (template updates) through SECURITY DEFINER lookups, and each tenant's writes run in
one tenant transaction. A failure raises (500) so Meta retries the batch; every write is
idempotent (shared/whatsapp/webhook_store.py), so the retry is harmless.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.platform.db import retry_conflicts, system_tx, tenant_tx
from shared.platform.errors import BadRequest, Forbidden, PayloadTooLarge, Unauthorized
from shared.platform.json_input import UnreadableJson, loads
from shared.platform.observability import logger, metrics
from shared.whatsapp import senders
from shared.whatsapp import webhook_store as store

MAX_BODY_BYTES = 1024 * 1024
SIGNATURE_HEADER = "x-hub-signature-256"
_CHALLENGE = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")
# What a person writes (or taps) to stop marketing messages; compared after normalising.
STOP_WORDS = frozenset({"stop", "baja", "parar", "stop promotions", "detener promociones",
                        "unsubscribe", "darme de baja"})
TEMPLATE_EVENT_STATUS = {"REINSTATED": "APPROVED"}


# -- edge checks ----------------------------------------------------------------------------
def raw_body(event: dict[str, Any]) -> bytes:
    """The bytes Meta signed: API Gateway hands binary bodies over base64-encoded."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest() from None
    return body.encode("utf-8")


def header(event: dict[str, Any], name: str) -> str | None:
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name:
            return value
    return None


def check_size(raw: bytes) -> None:
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge()


def check_signature(raw: bytes, signature: str | None, app_secret: str) -> None:
    expected = "sha256=" + hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest()
    if not signature or not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise Unauthorized("The webhook signature is missing or wrong.")


def parse(raw: bytes) -> dict[str, Any]:
    try:
        payload = loads(raw)
    except UnreadableJson:
        raise BadRequest("The webhook body is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise BadRequest("The webhook body is not a JSON object.")
    return payload


def verify_subscription(params: dict[str, str], verify_token: str | None) -> str:
    """GET handshake: echo hub.challenge when hub.verify_token matches ours."""
    mode = params.get("hub.mode")
    given = params.get("hub.verify_token") or ""
    challenge = params.get("hub.challenge") or ""
    if (not verify_token or mode != "subscribe"
            or not hmac.compare_digest(given.encode(), verify_token.encode())):
        raise Forbidden("The verification token does not match.")
    if not _CHALLENGE.match(challenge):
        raise BadRequest("hub.challenge is missing or malformed.")
    return challenge


# -- reading the payload ------------------------------------------------------------------------
def _obj(value: Any) -> dict[str, Any]:
    """An object of the payload, or {} when Meta (or anyone signing with our secret) sent
    something else there."""
    return value if isinstance(value, dict) else {}


def _objects(value: Any) -> list[dict[str, Any]]:
    """The objects of a list in the payload; anything else there reads as no items."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _listed(value: Any, counts: Counter) -> list[Any]:
    """A list of the payload; anything else there is counted as ignored and reads as empty."""
    if isinstance(value, list):
        return value
    if value is not None:
        counts["ignored"] += 1
    return []


def _at(value: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.now(UTC)


def _text(value: Any, limit: int = 256) -> str | None:
    """A string fit for storage: Postgres refuses NUL bytes; Meta's ids are short."""
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).replace("\x00", "")
    return text[:limit] or None


def _uuid(value: Any) -> str | None:
    try:
        return str(uuid.UUID(str(value))) if value else None
    except ValueError:
        return None


def _phone(wa_id: Any) -> str | None:
    digits = re.sub(r"\D", "", str(wa_id or ""))
    return f"+{digits}" if 7 <= len(digits) <= 15 else None


def _text_of(message: dict[str, Any]) -> str:
    kind = message.get("type")
    if kind == "text":
        return _text(_obj(message.get("text")).get("body"), 200) or ""
    if kind == "button":
        button = _obj(message.get("button"))
        return _text(button.get("text") or button.get("payload"), 200) or ""
    if kind == "interactive":
        reply = _obj(_obj(message.get("interactive")).get("button_reply"))
        return _text(reply.get("title"), 200) or ""
    return ""


def is_stop(text: str) -> bool:
    return re.sub(r"[^\w ]+", "", text).strip().casefold() in STOP_WORDS


@dataclass
class TenantWork:
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    templates: list[dict[str, Any]] = field(default_factory=list)
    opt_outs: list[tuple[str, str, datetime]] = field(default_factory=list)  # phone, source, at
    opt_ins: list[tuple[str, datetime]] = field(default_factory=list)


class _Tenants:
    """Cached lookups for one payload: phone number id / WABA id -> tenant ids."""

    def __init__(self) -> None:
        self._phones: dict[str, str | None] = {}
        self._wabas: dict[str, list[str]] = {}

    def for_phone(self, phone_number_id: Any) -> str | None:
        key = _text(phone_number_id, 64) or ""
        if not key:
            return None
        if key not in self._phones:
            with system_tx() as conn:
                self._phones[key] = senders.tenant_for_phone(conn, key)
        return self._phones[key]

    def for_waba(self, waba_id: Any) -> list[str]:
        key = _text(waba_id, 64) or ""
        if not key:
            return []
        if key not in self._wabas:
            with system_tx() as conn:
                self._wabas[key] = senders.tenants_for_waba(conn, key)
        return self._wabas[key]


def _collect_messages(value: dict[str, Any], work: TenantWork, counts: Counter) -> None:
    for status in _objects(value.get("statuses")):
        wamid = _text(status.get("id"))
        if wamid is None:
            counts["ignored"] += 1
            continue
        kind = (_text(status.get("status"), 32) or "").upper()
        item = {"wamid": wamid, "log_id": _uuid(status.get("biz_opaque_callback_data")),
                "at": _at(status.get("timestamp"))}
        if kind in store.STATUS_RANK:
            work.deliveries.append({**item, "status": kind})
        elif kind == "FAILED":
            errors = _objects(status.get("errors"))
            first = errors[0] if errors else {}
            details = _text(_obj(first.get("error_data")).get("details"), 500)
            message = _text(first.get("title"), 500) or _text(first.get("message"), 500)
            if details and details != message:
                message = f"{message}: {details}" if message else details
            work.failures.append({**item, "code": _text(first.get("code"), 32),
                                  "message": _text(message, 500)})
        else:
            counts["ignored"] += 1  # "played", "deleted", ...: nothing to track
            logger.info("webhook_status_ignored", extra={"status": _text(kind, 32)})
    for message in _objects(value.get("messages")):
        if is_stop(_text_of(message)):
            phone = _phone(message.get("from"))
            if phone:
                work.opt_outs.append((phone, store.OPT_OUT_KEYWORD, _at(message.get("timestamp"))))


def _collect_preferences(value: dict[str, Any], work: TenantWork, counts: Counter) -> None:
    for pref in _objects(value.get("user_preferences")):
        if pref.get("category") != "marketing_messages":
            counts["ignored"] += 1
            continue
        phone = _phone(pref.get("wa_id"))
        choice = (_text(pref.get("value"), 32) or "").lower()
        at = _at(pref.get("timestamp"))
        if phone and choice == "stop":
            work.opt_outs.append((phone, store.OPT_OUT_PREFERENCES, at))
        elif phone and choice == "resume":
            work.opt_ins.append((phone, at))
        else:
            counts["ignored"] += 1


def _template_change(entry: dict[str, Any], value: dict[str, Any]) -> dict[str, Any] | None:
    event = (_text(value.get("event"), 32) or "").upper()
    if not event:
        return None
    status = TEMPLATE_EVENT_STATUS.get(event, event)
    reason = (_text(_obj(value.get("rejection_info")).get("reason"), 500)
              or _text(value.get("reason"), 500)
              or _text(_obj(value.get("other_info")).get("title"), 500))
    return {
        "waba_id": _text(entry.get("id"), 64),
        "template_id": _text(value.get("message_template_id"), 64),
        "name": _text(value.get("message_template_name"), 512),
        "language": _text(value.get("message_template_language"), 16),
        "status": _text(status, 32),
        "reason": None if status == "APPROVED" or reason in (None, "", "NONE")
        else _text(reason, 500),
        "at": _at(entry.get("time")) if entry.get("time") else datetime.now(UTC),
    }


def collect(payload: dict[str, Any], tenants: _Tenants, counts: Counter
            ) -> dict[str, TenantWork]:
    work: dict[str, TenantWork] = {}
    if payload.get("object") != "whatsapp_business_account":
        counts["ignored"] += 1
        logger.info("webhook_object_ignored", extra={"object": str(payload.get("object"))[:64]})
        return work
    for entry in _listed(payload.get("entry"), counts):
        if not isinstance(entry, dict):
            counts["ignored"] += 1
            continue
        for change in _listed(entry.get("changes"), counts):
            if not isinstance(change, dict) or not isinstance(change.get("value"), dict):
                counts["ignored"] += 1
                continue
            kind, value = change.get("field"), change["value"]
            if kind == "message_template_status_update":
                update = _template_change(entry, value)
                targets = tenants.for_waba(entry.get("id")) if update else []
                for tenant_id in targets:
                    work.setdefault(tenant_id, TenantWork()).templates.append(update)
                counts["ignored" if not targets else "template_changes"] += 1
                continue
            if kind not in ("messages", "user_preferences"):
                counts["ignored"] += 1
                logger.info("webhook_field_ignored", extra={"field": str(kind)[:64]})
                continue
            tenant_id = tenants.for_phone(_obj(value.get("metadata")).get("phone_number_id"))
            if tenant_id is None:
                counts["unknown_number"] += 1
                continue
            tenant_work = work.setdefault(tenant_id, TenantWork())
            if kind == "messages":
                _collect_messages(value, tenant_work, counts)
            else:
                _collect_preferences(value, tenant_work, counts)
    return work


def apply(tenant_id: str, work: TenantWork, counts: Counter) -> None:
    """One transaction for the tenant's part of the payload. A dispatch run updating the same
    log rows can deadlock with it; Postgres then aborts one side and this runs again, which is
    safe because statuses only move forward and every other change is a set, not an add."""
    def attempt() -> Counter:
        applied: Counter = Counter()
        _apply_once(tenant_id, work, applied)
        return applied

    counts.update(retry_conflicts(attempt))


def _apply_once(tenant_id: str, work: TenantWork, counts: Counter) -> None:
    with tenant_tx(tenant_id) as conn:
        # Every row this payload touches is locked up front, in one order (by id), so neither
        # another webhook delivery nor a dispatch run writing results can deadlock with it.
        store.lock_logs(conn, [(item["wamid"], item["log_id"])
                               for item in (*work.deliveries, *work.failures)])
        # In time order per message, so each status is applied after the one before it.
        for item in sorted(work.deliveries, key=lambda d: (d["wamid"] or "", d["at"])):
            applied = store.apply_delivery(conn, wamid=item["wamid"], log_id=item["log_id"],
                                           status=item["status"], at=item["at"])
            counts["statuses" if applied else "statuses_unmatched"] += 1
        for item in work.failures:
            lead_id = store.apply_failure(conn, wamid=item["wamid"], log_id=item["log_id"],
                                          at=item["at"], code=item["code"],
                                          message=item["message"])
            if lead_id is not None:
                counts["statuses"] += 1
                if item["code"] == "131050":  # the person stopped marketing messages
                    counts["opt_outs"] += store.opt_out_lead(conn, lead_id, store.OPT_OUT_131050,
                                                             item["at"])
            elif store.log_exists(conn, item["wamid"], item["log_id"]):
                counts["statuses"] += 1  # already final or delivered: nothing to change
            else:
                counts["statuses_unmatched"] += 1
        stale: set[str] = set()
        for item in work.templates:
            applied = store.apply_template_status(
                conn, waba_id=item["waba_id"], template_id=item["template_id"],
                name=item["name"], language=item["language"], status=item["status"],
                reason=item["reason"], at=item["at"])
            counts["templates"] += applied
            if not applied:  # new to us (or older than what we have): read the list again
                stale.add(item["waba_id"])
        for waba_id in stale:
            store.mark_templates_stale(conn, waba_id)
        for phone, source, at in work.opt_outs:
            counts["opt_outs"] += store.opt_out_phone(conn, phone, source, at)
        for phone, at in work.opt_ins:
            counts["opt_ins"] += store.opt_in_phone(conn, phone, at)


SUMMARY_KEYS = ("statuses", "statuses_unmatched", "template_changes", "templates", "opt_outs",
                "opt_ins", "unknown_number", "ignored", "duplicate")


def receive(raw: bytes, routes: Mapping[str, Callable[[dict[str, Any]], dict[str, int]]]
            | None = None) -> dict[str, int]:
    """A signed delivery: applied once. Meta retries a delivery it did not see answered with 200
    (and a captured one could be replayed): a body already applied is answered without being
    applied again. It is remembered only once every tenant's part is applied, so a delivery
    that failed half-way is applied in full by Meta's retry (every write is idempotent).

    `routes` hands the payloads of other webhook objects (e.g. "page": Lead Ads, which this
    package cannot import) to their own processing, after the same checks."""
    payload = parse(raw)
    digest = hashlib.sha256(raw).digest()
    with system_tx() as conn:
        seen = store.delivery_seen(conn, digest)
    if seen:
        metrics.add_metric(name="WebhookDuplicates", unit="Count", value=1)
        logger.info("webhook_duplicate")
        return {key: int(key == "duplicate") for key in SUMMARY_KEYS}
    kind = payload.get("object")
    route = (routes or {}).get(kind) if isinstance(kind, str) else None
    summary = route(payload) if route is not None else process(payload)
    with system_tx() as conn:
        store.remember_delivery(conn, digest)
    return summary


def process(payload: dict[str, Any]) -> dict[str, int]:
    counts: Counter = Counter()
    work = collect(payload, _Tenants(), counts)
    for tenant_id, tenant_work in work.items():
        apply(tenant_id, tenant_work, counts)
    summary = {key: counts.get(key, 0) for key in SUMMARY_KEYS}
    metrics.add_metric(name="WebhookStatusesApplied", unit="Count", value=summary["statuses"])
    logger.info("webhook_processed", extra={"tenants": len(work), **summary})
    return summary
